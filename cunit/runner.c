/* The unit-test runner: runs every registered CUnit suite, or the ones
 * named on the command line (`unit buf strarray`, `unit buf:append`). */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>

extern CU_SuiteInfo *cunit_all_suites[];

/* Register one suite, keeping only the test named by `only` if given. */
static int register_suite(const CU_SuiteInfo *si, const char *only)
{
    CU_pSuite s = CU_add_suite(si->pName, si->pInitFunc, si->pCleanupFunc);
    const CU_TestInfo *t;

    if (!s)
        return -1;
    for (t = si->pTests; t->pName; t++) {
        if (only && strcmp(only, t->pName))
            continue;
        if (!CU_add_test(s, t->pName, t->pTestFunc))
            return -1;
    }
    return 0;
}

/* Does the command-line argument `arg` select suite `name`?  Sets
 * *only_r to the test part of "suite:test". */
static int selects(const char *arg, const char *name, const char **only_r)
{
    const char *colon = strchr(arg, ':');
    size_t len = colon ? (size_t)(colon - arg) : strlen(arg);

    *only_r = colon ? colon + 1 : NULL;
    return strlen(name) == len && !strncmp(arg, name, len);
}

int main(int argc, char **argv)
{
    int i, n, failures;
    int verbose = 0;

    if (argc > 1 && !strcmp(argv[1], "-v")) {
        verbose = 1;
        argv++;
        argc--;
    }
    if (CU_initialize_registry() != CUE_SUCCESS) {
        fprintf(stderr, "unit: cannot initialise CUnit\n");
        return 2;
    }

    for (n = 0; cunit_all_suites[n]; n++) {
        const CU_SuiteInfo *si = cunit_all_suites[n];
        const char *only = NULL;
        int wanted = argc < 2;

        for (i = 1; i < argc && !wanted; i++)
            wanted = selects(argv[i], si->pName, &only);
        if (wanted && register_suite(si, only) < 0) {
            fprintf(stderr, "unit: cannot register suite %s\n", si->pName);
            return 2;
        }
    }

    CU_basic_set_mode(verbose ? CU_BRM_VERBOSE : CU_BRM_NORMAL);
    CU_basic_run_tests();
    failures = CU_get_number_of_failures()
               + CU_get_number_of_suites_failed();
    CU_cleanup_registry();
    return failures ? 1 : 0;
}

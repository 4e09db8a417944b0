/* cyr_buildinfo: print the components, dependencies and database
 * backends this build was compiled with, as JSON (or flat key=value). */
/* Columba is free software; see COPYING for the licence. */

/*
 * Output (default, "pretty"):
 *   {
 *     "version": {"columba": "<ver>", "cyrus_compat": "3.12.0"},
 *     "component": {"<name>": true|false, ...},
 *     "dependency": {...}, "database": {...}, "search": {...},
 *     "hardware": {...}
 *   }
 * "json" prints the same object on one line; "flat" prints one
 * "<group>.<name>=<0|1|string>" line per value, sorted as listed.
 */

#include "config.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lib/buf.h"

#ifdef HAVE_PGSQL
#define B_PGSQL 1
#else
#define B_PGSQL 0
#endif
#ifdef HAVE_ICAL
#define B_ICAL 1
#else
#define B_ICAL 0
#endif
#ifdef HAVE_XML
#define B_XML 1
#else
#define B_XML 0
#endif
#ifdef HAVE_JANSSON
#define B_JANSSON 1
#else
#define B_JANSSON 0
#endif
#ifdef HAVE_LMDB
#define B_LMDB 1
#else
#define B_LMDB 0
#endif
#ifdef HAVE_XAPIAN
#define B_XAPIAN 1
#else
#define B_XAPIAN 0
#endif
#ifdef HAVE_SANITIZERS
#define B_SANITIZERS 1
#else
#define B_SANITIZERS 0
#endif

struct item {
    const char *group;
    const char *name;
    int value;
    const char *text;           /* a string value instead of a boolean */
};

/* The one list everything is printed from.  Required libraries are
 * always present (configure stops without them).  A component or
 * backend is true only once its code is in the build: each daemon's
 * issue flips its own line when it lands. */
static const struct item items[] = {
    { "version", "columba", 0, PACKAGE_VERSION },
    { "version", "cyrus_compat", 0, CYRUS_COMPAT_VERSION },
    { "component", "imap", 0, NULL },
    { "component", "pop3", 0, NULL },
    { "component", "lmtp", 0, NULL },
    { "component", "sieve", 0, NULL },
    { "component", "http", 0, NULL },
    { "component", "jmap", 0, NULL },
    { "component", "replication", 0, NULL },
    { "component", "murder", 0, NULL },
    { "component", "nntp", 0, NULL },
    { "component", "objectstore", 0, NULL },
    { "component", "backup", 0, NULL },
    { "dependency", "openssl", 1, NULL },
    { "dependency", "sasl", 1, NULL },
    { "dependency", "zlib", 1, NULL },
    { "dependency", "icu4c", 1, NULL },
    { "dependency", "sqlite", 1, NULL },
    { "dependency", "ical", B_ICAL, NULL },
    { "dependency", "xml2", B_XML, NULL },
    { "dependency", "jansson", B_JANSSON, NULL },
    { "dependency", "xapian", B_XAPIAN, NULL },
    { "dependency", "lmdb", B_LMDB, NULL },
    { "dependency", "ldap", 0, NULL },
    { "database", "twoskip", 1, NULL },
    { "database", "flat", 1, NULL },
    { "database", "skiplist", 0, NULL },
    { "database", "quotalegacy", 1, NULL },
    { "database", "sql", 1, NULL },
    { "database", "sqlite", 1, NULL },
    { "database", "pgsql", B_PGSQL, NULL },
    { "database", "mysql", 0, NULL },
    { "database", "lmdb", 0, NULL },
    { "search", "squat", 0, NULL },
    { "search", "xapian", 0, NULL },
    { "hardware", "sanitizers", B_SANITIZERS, NULL },
};

#define NITEMS (sizeof(items) / sizeof(*items))

static void usage(void)
{
    fprintf(stderr,
            "usage: cyr_buildinfo [-C imapd.conf] [pretty|json|flat]\n");
}

static void print_json(int pretty)
{
    struct buf out = BUF_INITIALIZER;
    const char *nl = pretty ? "\n" : "";
    const char *ind1 = pretty ? "  " : "";
    const char *ind2 = pretty ? "    " : "";
    const char *sp = pretty ? " " : "";
    size_t i;

    buf_printf(&out, "{%s", nl);
    for (i = 0; i < NITEMS; i++) {
        int first = i == 0 || strcmp(items[i].group, items[i - 1].group);
        int last = i + 1 == NITEMS ||
                   strcmp(items[i].group, items[i + 1].group);

        if (first)
            buf_printf(&out, "%s\"%s\":%s{%s", ind1, items[i].group, sp, nl);
        buf_printf(&out, "%s\"%s\":%s", ind2, items[i].name, sp);
        if (items[i].text)
            buf_printf(&out, "\"%s\"", items[i].text);
        else
            buf_appendcstr(&out, items[i].value ? "true" : "false");
        if (!last)
            buf_printf(&out, ",%s", nl);
        else
            buf_printf(&out, "%s%s}%s%s", nl, ind1,
                       i + 1 == NITEMS ? "" : ",", nl);
    }
    buf_appendcstr(&out, "}\n");
    fputs(buf_cstring(&out), stdout);
    buf_free(&out);
}

static void print_flat(void)
{
    size_t i;

    for (i = 0; i < NITEMS; i++) {
        if (items[i].text)
            printf("%s.%s=%s\n", items[i].group, items[i].name,
                   items[i].text);
        else
            printf("%s.%s=%d\n", items[i].group, items[i].name,
                   items[i].value);
    }
}

int main(int argc, char **argv)
{
    const char *format = "pretty";
    int opt;

    /* -C is accepted for symmetry with every other tool; nothing here
     * depends on imapd.conf. */
    while ((opt = getopt(argc, argv, "C:")) != -1) {
        if (opt != 'C') {
            usage();
            return 64;
        }
    }
    if (optind < argc)
        format = argv[optind++];
    if (optind < argc) {
        usage();
        return 64;
    }

    if (!strcmp(format, "pretty"))
        print_json(1);
    else if (!strcmp(format, "json"))
        print_json(0);
    else if (!strcmp(format, "flat"))
        print_flat();
    else {
        usage();
        return 64;
    }
    return fflush(stdout) ? 1 : 0;
}

/* sievec: compile a Sieve script to bytecode and report its errors, as
 * timsieved does on PUTSCRIPT (Cyrus's tool name and usage). */
/* Columba is free software; see COPYING for the licence. */

/*
 * Usage: sievec [-C imapd.conf] script.sieve out.bc
 *
 * The extensions enabled by sieve_extensions are allowed.  Errors go to
 * stderr, one "line N: ..." each; the output file is then not written.
 * Exit status 0 on success, 1 for a script with errors or an I/O
 * failure, 64 for usage errors.
 */

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/error.h"
#include "lib/imapopts.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/util.h"

#include "sieve/sieve.h"

#define EX_USAGE_CODE 64

static const char *progname = "sievec";

static void usage(void)
{
    fprintf(stderr, "usage: %s [-C imapd.conf] script.sieve out.bc\n",
            progname);
    exit(EX_USAGE_CODE);
}

int main(int argc, char **argv)
{
    const char *conf = NULL, *err = NULL;
    struct buf text = BUF_INITIALIZER, bc = BUF_INITIALIZER;
    struct buf errors = BUF_INITIALIZER;
    int opt, r, status = 1;

    while ((opt = getopt(argc, argv, "C:")) != -1) {
        switch (opt) {
        case 'C': conf = optarg; break;
        default: usage();
        }
    }
    if (argc - optind != 2)
        usage();

    /* without -C the default file is read only if it exists, so the
     * tool also works on a machine that is not a mail server */
    if (!conf && access(SYSCONFDIR "/imapd.conf", R_OK) == 0)
        conf = SYSCONFDIR "/imapd.conf";
    if (conf) {
        r = config_read(conf, NULL, &err);
        if (r) {
            fprintf(stderr, "%s: cannot read configuration: %s\n",
                    progname, err ? err : error_message(r));
            return EX_USAGE_CODE;
        }
    }
    log_open(config_getstring(IMAPOPT_SYSLOG_PREFIX), progname, 0, 0);

    r = util_read_file(argv[optind], &text, SIEVE_MAX_SCRIPT + 1);
    if (r) {
        fprintf(stderr, "%s: cannot read %s: %s\n", progname, argv[optind],
                error_message(r));
        goto done;
    }
    r = sieve_compile(text.s ? text.s : "", text.len, &bc, &errors);
    if (r) {
        fprintf(stderr, "%s: %s: %s\n%s", progname, argv[optind],
                error_message(r), buf_cstring(&errors));
        goto done;
    }
    r = util_write_file_atomic(argv[optind + 1], bc.s, bc.len);
    if (r) {
        fprintf(stderr, "%s: cannot write %s: %s\n", progname,
                argv[optind + 1], error_message(r));
        goto done;
    }
    status = 0;

done:
    buf_free(&text);
    buf_free(&bc);
    buf_free(&errors);
    return status;
}

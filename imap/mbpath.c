/* mbpath: print where mailboxes live on disk (data directory, metadata
 * directory), looked up in mailboxes.db. */
/* Columba is free software; see COPYING for the licence. */

/*
 * Usage: mbpath [-C imapd.conf] [-j] [-q] [-s] [-l] [-u | -p] [-m]
 *               mailbox...
 *
 * Arguments are external names in the admin namespace; with -u they are
 * user ids (their INBOX is shown), with -p UNIX-style paths ("user/bob/
 * Sent": '/' separates levels whatever unixhierarchysep says).  Prints
 * the data directory of each, or with -m the metadata directory.  -j
 * prints one JSON object per mailbox instead: {"mailbox", "intname",
 * "partition", "uniqueid", "type", "datapath", "metapath"}.  -q keeps
 * errors quiet, -s stops at the first, -l refuses remote mailboxes.
 * Exit status 1 when any mailbox failed, 64 for usage errors.
 */

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/cyrusdb.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/privs.h"
#include "lib/xmalloc.h"

#include "imap/mailbox.h"
#include "imap/mboxlist.h"
#include "imap/mboxname.h"

#define EX_USAGE_CODE 64

static const char *progname = "mbpath";

enum argkind { ARG_MAILBOX, ARG_USERID, ARG_PATH };

struct options {
    int json;
    int quiet;
    int stop;
    int local_only;
    int meta;
    enum argkind kind;
};

static struct options opts;
static struct namespace admin_ns;

static void usage(void)
{
    fprintf(stderr, "usage: %s [-C imapd.conf] [-j] [-q] [-s] [-l] "
            "[-u | -p] [-m] mailbox...\n", progname);
    exit(EX_USAGE_CODE);
}

/* Append `s` to `out` as a JSON string. */
static void json_string(struct buf *out, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");

    buf_putc(out, '"');
    for (; *p; p++) {
        if (*p == '"' || *p == '\\')
            buf_printf(out, "\\%c", *p);
        else if (*p < 0x20)
            buf_printf(out, "\\u%04x", *p);
        else
            buf_putc(out, (char)*p);
    }
    buf_putc(out, '"');
}

/* The internal name an argument stands for. */
static int arg_to_intname(const char *arg, char **intname_r)
{
    struct namespace ns;

    if (opts.kind == ARG_USERID)
        return mboxname_user_mbox(arg, NULL, intname_r);
    if (opts.kind == ARG_PATH) {
        ns = admin_ns;
        ns.hier_sep = '/';
        return mboxname_from_external(arg, &ns, NULL, intname_r);
    }
    return mboxname_from_external(arg, &admin_ns, NULL, intname_r);
}

static void print_json(const char *arg, const struct mboxlist_entry *e,
                       const char *data, const char *meta)
{
    struct buf out = BUF_INITIALIZER;

    buf_appendcstr(&out, "{\"mailbox\": ");
    json_string(&out, arg);
    buf_appendcstr(&out, ", \"intname\": ");
    json_string(&out, e->name);
    buf_appendcstr(&out, ", \"partition\": ");
    json_string(&out, e->partition);
    buf_appendcstr(&out, ", \"uniqueid\": ");
    json_string(&out, e->uniqueid);
    buf_appendcstr(&out, ", \"type\": ");
    json_string(&out, mailbox_type_name(e->type));
    buf_appendcstr(&out, ", \"datapath\": ");
    json_string(&out, data);
    buf_appendcstr(&out, ", \"metapath\": ");
    json_string(&out, meta);
    buf_appendcstr(&out, "}\n");
    fputs(buf_cstring(&out), stdout);
    buf_free(&out);
}

static int show_one(const char *arg)
{
    struct mboxlist_entry *e = NULL;
    struct buf data = BUF_INITIALIZER, meta = BUF_INITIALIZER;
    char *intname = NULL;
    int r;

    r = arg_to_intname(arg, &intname);
    if (!r)
        r = mboxlist_lookup(intname, &e);
    if (!r && e->server && opts.local_only)
        r = ERR_MAILBOX_NOTSUPPORTED;
    if (!r)
        r = mboxname_datapath(e->partition, e->name, 0, &data);
    if (!r)
        r = mboxname_metapath(e->partition, e->name, MBOXNAME_META_DIR, 0,
                              &meta);
    if (r) {
        if (!opts.quiet)
            fprintf(stderr, "%s: %s: %s\n", progname, arg,
                    error_message(r));
        goto done;
    }
    if (opts.json)
        print_json(arg, e, buf_cstring(&data), buf_cstring(&meta));
    else
        printf("%s\n", buf_cstring(opts.meta ? &meta : &data));

done:
    mboxlist_entry_free(&e);
    buf_free(&data);
    buf_free(&meta);
    free(intname);
    return r;
}

int main(int argc, char **argv)
{
    const char *conf = NULL, *err = NULL;
    struct buf why = BUF_INITIALIZER;
    int opt, i, r, failed = 0;

    while ((opt = getopt(argc, argv, "C:jqslupmMD")) != -1) {
        switch (opt) {
        case 'C': conf = optarg; break;
        case 'j': opts.json = 1; break;
        case 'q': opts.quiet = 1; break;
        case 's': opts.stop = 1; break;
        case 'l': opts.local_only = 1; break;
        case 'u': opts.kind = ARG_USERID; break;
        case 'p': opts.kind = ARG_PATH; break;
        case 'm':
        case 'M': opts.meta = 1; break;
        case 'D': opts.meta = 0; break;
        default: usage();
        }
    }
    if (optind == argc)
        usage();

    r = config_read(conf, NULL, &err);
    if (r) {
        fprintf(stderr, "%s: cannot read configuration: %s\n", progname,
                err ? err : error_message(r));
        return EX_USAGE_CODE;
    }
    log_open(config_getstring(IMAPOPT_SYSLOG_PREFIX), progname, 0, 0);
    if (privs_become_cyrus(&why)) {
        fprintf(stderr, "%s: %s\n", progname, buf_cstring(&why));
        return EX_USAGE_CODE;
    }
    r = mboxname_init_namespace(&admin_ns, 1);
    if (r) {
        fprintf(stderr, "%s: bad namespace configuration: %s\n", progname,
                error_message(r));
        return EX_USAGE_CODE;
    }
    cyrusdb_init();
    r = mboxlist_open();
    if (r) {
        if (!opts.quiet)
            fprintf(stderr, "%s: cannot open mailboxes.db: %s\n", progname,
                    error_message(r));
        cyrusdb_done();
        return 1;
    }
    for (i = optind; i < argc; i++) {
        if (show_one(argv[i])) {
            failed++;
            if (opts.stop)
                break;
        }
    }
    mboxlist_close();
    cyrusdb_done();
    buf_free(&why);
    return failed ? 1 : 0;
}

/* mkmbox: create a mailbox (when missing) and append message files to it
 * without a server; a helper for the end-to-end tests of the store
 * tools. */
/* Columba is free software; see COPYING for the licence. */

/*
 * Usage: mkmbox [-C imapd.conf] [-p partition] [-F flags] [-d time]
 *               mailbox [message-file...]
 *
 * `mailbox` is an internal name (user.alice.Sent).  -F gives the system
 * flags of the appended messages as a number (MAILBOX_FLAG_* bits), -d
 * their internal date (seconds since the epoch).  Prints the UID of
 * each appended message, one per line.
 */

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/cyrusdb.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/privs.h"
#include "lib/util.h"

#include "imap/mailbox.h"
#include "imap/mboxlist.h"
#include "imap/mboxname.h"

#define EX_USAGE_CODE 64

static const char *progname = "mkmbox";

static void usage(void)
{
    fprintf(stderr, "usage: %s [-C imapd.conf] [-p partition] [-F flags] "
            "[-d time] mailbox [message-file...]\n", progname);
    exit(EX_USAGE_CODE);
}

/* The entry of `name`, created when missing. */
static int get_entry(const char *name, const char *partition,
                     struct mboxlist_entry **e_r)
{
    int r = mboxlist_lookup(name, e_r);

    if (r == ERR_MAILBOX_NONEXISTENT)
        r = mboxlist_create(name, MAILBOX_TYPE_MAIL, partition, NULL, 1,
                            e_r);
    return r;
}

static int append_files(const char *name, const char *partition,
                        uint32_t flags, time_t date, char **files, int n)
{
    struct mboxlist_entry *e = NULL;
    struct mailbox *mb = NULL;
    struct buf path = BUF_INITIALIZER;
    uint32_t uid;
    int i, r;

    r = get_entry(name, partition, &e);
    if (!r)
        r = mboxname_datapath(e->partition, e->name, 0, &path);
    if (!r && n)
        r = mailbox_open_iwrite(buf_cstring(&path), &mb);
    for (i = 0; !r && i < n; i++) {
        r = mailbox_append(mb, files[i], NULL, 0, date, flags, NULL, &uid);
        if (!r)
            printf("%u\n", uid);
    }
    mailbox_close(&mb);
    mboxlist_entry_free(&e);
    buf_free(&path);
    return r;
}

int main(int argc, char **argv)
{
    const char *conf = NULL, *err = NULL, *partition = NULL;
    struct buf why = BUF_INITIALIZER;
    uint32_t flags = 0;
    int64_t date = 0;
    int opt, r;

    while ((opt = getopt(argc, argv, "C:p:F:d:")) != -1) {
        switch (opt) {
        case 'C': conf = optarg; break;
        case 'p': partition = optarg; break;
        case 'F':
            if (parse_uint32(optarg, NULL, &flags))
                usage();
            break;
        case 'd':
            if (parse_int64(optarg, NULL, &date))
                usage();
            break;
        default: usage();
        }
    }
    if (optind >= argc)
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
    cyrusdb_init();
    r = mboxlist_open();
    if (!r)
        r = append_files(argv[optind], partition, flags, (time_t)date,
                         argv + optind + 1, argc - optind - 1);
    mboxlist_close();
    cyrusdb_done();
    if (r) {
        fprintf(stderr, "%s: %s: %s\n", progname, argv[optind],
                error_message(r));
        return 1;
    }
    return 0;
}

/* cvt_cyrusdb: copy every record of a database into a new database of
 * another (or the same) backend, e.g. to move mailboxes.db to sql. */
/* Columba is free software; see COPYING for the licence. */

/*
 * Usage: cvt_cyrusdb [-C imapd.conf] [-M] OLD OLDBACKEND NEW NEWBACKEND
 *
 * OLD is opened read-only as OLDBACKEND (never converted in place); NEW
 * must not exist and is created as NEWBACKEND, in mailbox order when OLD
 * records that it is, or with -M (needed for backends whose files do not
 * record their order, like flat), and filled in one transaction: on any
 * failure NEW is removed again, so it is either a full copy or absent.
 */

#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/cyrusdb.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/privs.h"

#define EX_USAGE_CODE 64

static const char *progname = "cvt_cyrusdb";

/* Where the copy stands. */
struct copy {
    struct db *to;
    struct txn *tid;
    unsigned long count;
};

static void usage(void)
{
    fprintf(stderr, "usage: %s [-C imapd.conf] [-M] <old db> <old backend>"
            " <new db> <new backend>\n", progname);
    exit(EX_USAGE_CODE);
}

static int copy_cb(void *rock, const char *key, size_t keylen,
                   const char *data, size_t datalen)
{
    struct copy *c = rock;

    c->count++;
    return cyrusdb_store(c->to, key, keylen, data, datalen, &c->tid);
}

/* Does `db` use mailbox order? There '.' sorts before '-'; in raw byte
 * order it sorts after. */
static int is_mbox_ordered(struct db *db)
{
    return cyrusdb_compar(db, "a.", 2, "a-", 2) < 0;
}

static int convert(const char *old, const char *oldbe, const char *new,
                   const char *newbe, int flags)
{
    struct db *from = NULL;
    struct copy c = { NULL, NULL, 0 };
    int r;

    r = cyrusdb_open(oldbe, old, (flags & CYRUSDB_MBOXSORT)
                     | CYRUSDB_RDONLY | CYRUSDB_NOCONVERT, &from);
    if (r) {
        fprintf(stderr, "%s: %s: cannot open as %s: %s\n", progname, old,
                oldbe, error_message(r));
        return r;
    }
    if (is_mbox_ordered(from))
        flags |= CYRUSDB_MBOXSORT;
    r = cyrusdb_open(newbe, new, flags | CYRUSDB_CREATE | CYRUSDB_NOCONVERT,
                     &c.to);
    if (r) {
        fprintf(stderr, "%s: %s: cannot create as %s: %s\n", progname, new,
                newbe, error_message(r));
        cyrusdb_close(from);
        return r;
    }

    r = cyrusdb_foreach(from, "", 0, NULL, copy_cb, &c, NULL);
    if (!r && c.tid)
        r = cyrusdb_commit(c.to, c.tid);
    else if (c.tid)
        cyrusdb_abort(c.to, c.tid);
    cyrusdb_close(c.to);
    cyrusdb_close(from);

    if (r) {
        fprintf(stderr, "%s: copying %s to %s failed: %s\n", progname, old,
                new, error_message(r));
        cyrusdb_unlink(newbe, new, 0);
        return r;
    }
    xsyslog(LOG_NOTICE, "cvt_cyrusdb: converted",
            "from=%s from_backend=%s to=%s to_backend=%s records=%lu",
            old, oldbe, new, newbe, c.count);
    printf("converted %lu records from %s (%s) to %s (%s)\n", c.count, old,
           oldbe, new, newbe);
    return 0;
}

int main(int argc, char **argv)
{
    const char *conf = NULL, *err = NULL;
    struct buf why = BUF_INITIALIZER;
    const char *old, *oldbe, *new, *newbe;
    struct stat st;
    int opt, flags = 0, r;

    while ((opt = getopt(argc, argv, "C:Mh")) != -1) {
        switch (opt) {
        case 'C': conf = optarg; break;
        case 'M': flags |= CYRUSDB_MBOXSORT; break;
        default: usage();
        }
    }
    if (argc - optind != 4)
        usage();
    old = argv[optind];
    oldbe = argv[optind + 1];
    new = argv[optind + 2];
    newbe = argv[optind + 3];

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

    if (!cyrusdb_backend_exists(oldbe) || !cyrusdb_backend_exists(newbe)) {
        fprintf(stderr, "%s: unknown database backend '%s'\n", progname,
                cyrusdb_backend_exists(oldbe) ? newbe : oldbe);
        return 1;
    }
    if (!strcmp(old, new)) {
        fprintf(stderr, "%s: old and new database are the same file\n",
                progname);
        return 1;
    }
    if (lstat(new, &st) == 0) {
        fprintf(stderr, "%s: %s already exists; remove it first\n",
                progname, new);
        return 1;
    }

    cyrusdb_init();
    r = convert(old, oldbe, new, newbe, flags);
    cyrusdb_done();
    return r ? 1 : 0;
}

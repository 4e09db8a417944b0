/* cyr_expire: periodic clean-up run from the EVENTS section: prune old
 * duplicate marks, remove the files of old delayed expunges, and remove
 * old delayed-deleted mailboxes for good. */
/* Columba is free software; see COPYING for the licence. */

/*
 * Usage: cyr_expire [-C imapd.conf] [-E dur] [-X dur] [-D dur] [-x]
 *                   [-p mailbox-prefix] [-v]
 *
 * Durations are as in imapd.conf: "7d", "12h", "1h30m", or a bare number
 * of days ("3" is three days).
 *
 * -E  duplicate_prune(): forget duplicate delivery marks older than dur
 *     (whole days, rounded up, as the duplicate module counts them).
 * -X  in every mailbox (below -p when given) remove the files of
 *     messages expunged more than dur ago (mailbox_unlink_expunged),
 *     then repack the mailbox so the records go too.  Mailboxes whose
 *     oldest pending expunge is younger are not locked at all.
 * -D  remove delayed-deleted mailboxes (deletedprefix, e.g.
 *     DELETED.user.alice.Sent.5F3A2B1C) deleted more than dur ago, by
 *     the hex time in the name, with mboxlist_delete(force) deepest
 *     first.
 * -x  skip the -X work (so a frequent run can prune only duplicates).
 * -v  print what was done, as counts.
 *
 * At least one of -E, -X, -D is required.  A failure in one mailbox is
 * reported and the run goes on; the exit status is 1 if any failed.
 */

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/cyrusdb.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/privs.h"
#include "lib/strarray.h"
#include "lib/times.h"
#include "lib/xmalloc.h"

#include "imap/acl.h"
#include "imap/duplicate.h"
#include "imap/mailbox.h"
#include "imap/mboxlist.h"
#include "imap/mboxname.h"

#define EX_USAGE_CODE 64
#define DAY 86400

static const char *progname = "cyr_expire";

struct options {
    int64_t expire_secs, expunge_secs, delete_secs;   /* -1: not asked */
    int skip_expunge, verbose;
    const char *prefix;
};

struct expunge_walk {
    time_t before;
    unsigned long mailboxes, unlinked;
    int errors;
};

static void usage(void)
{
    fprintf(stderr, "usage: %s [-C imapd.conf] [-E dur] [-X dur] [-D dur]"
            " [-x] [-p mailbox-prefix] [-v]\n", progname);
    exit(EX_USAGE_CODE);
}

/* Parse a duration option (bare number: days). */
static int64_t duration_arg(int opt, const char *arg)
{
    int64_t secs;

    if (times_parse_duration(arg, 'd', &secs) || secs < 0) {
        fprintf(stderr, "%s: -%c: bad duration \"%s\"\n", progname, opt,
                arg);
        exit(EX_USAGE_CODE);
    }
    return secs;
}

/* ---------------------------------------------------------------- */
/* -E                                                                 */

static int expire_duplicates(const struct options *o)
{
    unsigned long deleted = 0, kept = 0;
    int days = (int)((o->expire_secs + DAY - 1) / DAY);
    int r;

    r = duplicate_prune(days, 0, &deleted, &kept);
    duplicate_close();
    if (r) {
        fprintf(stderr, "%s: pruning the duplicate db failed: %s\n",
                progname, error_message(r));
        return r;
    }
    if (o->verbose)
        printf("expired %lu of %lu duplicate entries\n", deleted,
               deleted + kept);
    xsyslog(LOG_NOTICE, "cyr_expire: duplicates pruned", "deleted=%lu "
            "kept=%lu", deleted, kept);
    return 0;
}

/* ---------------------------------------------------------------- */
/* -X                                                                 */

static int expunge_one(const struct mboxlist_entry *e, void *rock)
{
    struct expunge_walk *w = rock;
    struct buf path = BUF_INITIALIZER;
    struct mailbox *mb = NULL;
    time_t first;
    unsigned count = 0;
    int r;

    if (e->server)
        return 0;
    w->mailboxes++;
    r = mboxname_datapath(e->partition, e->name, 0, &path);

    /* Look with a shared lock first: most mailboxes have nothing due. */
    if (!r)
        r = mailbox_open_iread(buf_cstring(&path), &mb);
    if (!r) {
        first = mailbox_index(mb)->first_expunged;
        mailbox_close(&mb);
        if (!first || first > w->before)
            goto done;
        r = mailbox_open_iwrite(buf_cstring(&path), &mb);
    }
    if (!r)
        r = mailbox_unlink_expunged(mb, w->before, &count);
    if (!r && count)
        r = mailbox_repack(mb);
    mailbox_close(&mb);
    if (!r && count) {
        w->unlinked += count;
        xsyslog(LOG_INFO, "cyr_expire: expunged files removed",
                "mailbox=%s count=%u", log_escape(e->name, 0), count);
    }

done:
    if (r && r != ERR_MAILBOX_NONEXISTENT) {
        fprintf(stderr, "%s: %s: %s\n", progname, e->name,
                error_message(r));
        xsyslog(LOG_ERR, "cyr_expire: expunge clean-up failed", "mailbox=%s"
                " error=%s", log_escape(e->name, 0), error_message(r));
        w->errors++;
    }
    buf_free(&path);
    return 0;
}

static int expunge_messages(const struct options *o)
{
    struct expunge_walk w = { time(NULL) - (time_t)o->expunge_secs, 0, 0,
                              0 };
    int r = mboxlist_foreach(o->prefix, expunge_one, &w);

    if (o->verbose)
        printf("removed %lu expunged messages from %lu mailboxes\n",
               w.unlinked, w.mailboxes);
    xsyslog(LOG_NOTICE, "cyr_expire: expunge pass done", "mailboxes=%lu "
            "unlinked=%lu errors=%d", w.mailboxes, w.unlinked, w.errors);
    return r ? r : (w.errors ? ERR_IO : 0);
}

/* ---------------------------------------------------------------- */
/* -D                                                                 */

struct delete_walk {
    time_t before;
    strarray_t names;
};

static int collect_deleted(const struct mboxlist_entry *e, void *rock)
{
    struct delete_walk *w = rock;
    time_t when = 0;

    if (mboxname_isdeletedmailbox(e->name, &when) && when <= w->before)
        strarray_append(&w->names, e->name);
    return 0;
}

static int delete_mailboxes(const struct options *o)
{
    struct delete_walk w = { time(NULL) - (time_t)o->delete_secs,
                             STRARRAY_INITIALIZER };
    struct auth_state *admin = acl_auth_new("admin", 1);
    unsigned long removed = 0;
    int i, r, errors = 0;

    /* The whole list: with virtdomains deleted names start with the
     * domain, not with deletedprefix. */
    r = mboxlist_foreach(NULL, collect_deleted, &w);
    /* Children follow their parent in the list: go backwards so each
     * directory is empty by the time it is removed. */
    for (i = w.names.count - 1; !r && i >= 0; i--) {
        const char *name = strarray_nth(&w.names, i);
        int r2 = mboxlist_delete(name, admin, 1);

        if (r2 && r2 != ERR_MAILBOX_NONEXISTENT) {
            fprintf(stderr, "%s: removing %s: %s\n", progname, name,
                    error_message(r2));
            errors++;
            continue;
        }
        removed++;
        if (o->verbose > 1)
            printf("removed %s\n", name);
    }
    if (o->verbose)
        printf("removed %lu deleted mailboxes\n", removed);
    xsyslog(LOG_NOTICE, "cyr_expire: deleted mailboxes removed",
            "count=%lu errors=%d", removed, errors);
    strarray_fini(&w.names);
    acl_auth_free(&admin);
    return r ? r : (errors ? ERR_IO : 0);
}

int main(int argc, char **argv)
{
    struct options o = { -1, -1, -1, 0, 0, NULL };
    const char *conf = NULL, *err = NULL;
    struct buf why = BUF_INITIALIZER;
    int opt, r, failed = 0;

    while ((opt = getopt(argc, argv, "C:E:X:D:xp:vh")) != -1) {
        switch (opt) {
        case 'C': conf = optarg; break;
        case 'E': o.expire_secs = duration_arg(opt, optarg); break;
        case 'X': o.expunge_secs = duration_arg(opt, optarg); break;
        case 'D': o.delete_secs = duration_arg(opt, optarg); break;
        case 'x': o.skip_expunge = 1; break;
        case 'p': o.prefix = optarg; break;
        case 'v': o.verbose++; break;
        default: usage();
        }
    }
    if (optind != argc
        || (o.expire_secs < 0 && o.expunge_secs < 0 && o.delete_secs < 0))
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
    if (o.expire_secs >= 0 && expire_duplicates(&o))
        failed++;
    if (o.expunge_secs >= 0 && !o.skip_expunge) {
        r = mboxlist_open();
        if (!r)
            r = expunge_messages(&o);
        if (r)
            failed++;
    }
    if (o.delete_secs >= 0) {
        r = mboxlist_open();
        if (!r)
            r = delete_mailboxes(&o);
        if (r)
            failed++;
    }
    if (r)
        fprintf(stderr, "%s: %s\n", progname, error_message(r));
    mboxlist_close();
    cyrusdb_done();
    buf_free(&why);
    return failed ? 1 : 0;
}

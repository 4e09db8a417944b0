/* ipurge: delete messages by age or size from the mailboxes matching
 * one or more patterns (a site's retention policy, run by hand or from
 * cron). */
/* Columba is free software; see COPYING for the licence. */

/*
 * Usage: ipurge [-C imapd.conf] [-f] [-d days | -b bytes | -k KiB |
 *               -m MiB] [-X] [-i] [-s] [-o] [-n] [mailbox-pattern...]
 *
 * Patterns are internal mailbox names with '*' and '%' as in LIST
 * ("shared.*", "user.%.Trash"); none means "*".  User mailboxes
 * (user.*) are skipped unless -f is given, as in Cyrus; delayed-deleted
 * mailboxes are always skipped.
 *
 * A message matches when it is older than `days` days (by its internal
 * date, or with -X by the time it was saved into the mailbox) or larger
 * than the size given.  -i inverts the match (younger, or not larger),
 * -s never touches \Flagged messages, -o considers only messages with
 * \Deleted.  Matching messages are expunged as expunge_mode says:
 * immediate removes the files, every other mode marks them expunged for
 * cyr_expire.  -n only reports what would go.
 *
 * Output: per mailbox a line
 *     <mailbox>: deleted <n> of <total> messages (<bytes> bytes)
 * ("would delete" with -n), and with -n one line per matching message
 *     <mailbox>: uid <uid> size <bytes> date <internal date, epoch>
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
#include "lib/util.h"
#include "lib/xmalloc.h"

#include "imap/acl.h"
#include "imap/mailbox.h"
#include "imap/mboxlist.h"
#include "imap/mboxname.h"

#define EX_USAGE_CODE 64
#define DAY 86400
/* expunge_mode's choices: "default immediate semidelayed delayed". */
#define EXPUNGE_MODE_IMMEDIATE 1

static const char *progname = "ipurge";

struct options {
    int by_age;                 /* else by size */
    time_t cutoff;              /* -d: older than this matches */
    uint64_t size;              /* -b/-k/-m: larger than this matches */
    int use_savedate, invert, skip_flagged, only_deleted, dryrun;
    int force_user;
    enum mailbox_expunge_mode mode;
};

struct purge {
    const struct options *o;
    const char *mboxname;
    unsigned matched;
    uint64_t bytes;
};

static void usage(void)
{
    fprintf(stderr, "usage: %s [-C imapd.conf] [-f] [-d days | -b bytes | "
            "-k KiB | -m MiB] [-X] [-i] [-s] [-o] [-n] "
            "[mailbox-pattern...]\n", progname);
    exit(EX_USAGE_CODE);
}

/* Does `rec` go, by the options? */
static int decide(struct mailbox *mb, const struct mailbox_record *rec,
                  void *rock)
{
    struct purge *p = rock;
    const struct options *o = p->o;
    int match;

    (void)mb;
    if (o->skip_flagged && (rec->system_flags & MAILBOX_FLAG_FLAGGED))
        return 0;
    if (o->only_deleted && !(rec->system_flags & MAILBOX_FLAG_DELETED))
        return 0;
    if (o->by_age)
        match = (o->use_savedate ? rec->savedate : rec->internaldate)
                < o->cutoff;
    else
        match = rec->size > o->size;
    if (o->invert)
        match = !match;
    if (!match)
        return 0;
    p->matched++;
    p->bytes += rec->size;
    if (o->dryrun)
        printf("%s: uid %u size %llu date %lld\n", p->mboxname, rec->uid,
               (unsigned long long)rec->size, (long long)rec->internaldate);
    return !o->dryrun;
}

/* Dry run: walk the live records with the same decision. */
static int scan_only(struct mailbox *mb, struct purge *p)
{
    struct mailbox_record rec;
    uint32_t recno;
    int r = 0;

    for (recno = 1; !r && recno <= mailbox_index(mb)->num_records;
         recno++) {
        r = mailbox_read_record(mb, recno, &rec);
        if (!r && !(rec.system_flags & MAILBOX_FLAG_EXPUNGED))
            decide(mb, &rec, p);
    }
    return r;
}

static int purge_one(const struct mboxlist_entry *e, void *rock)
{
    const struct options *o = rock;
    struct purge p = { o, e->name, 0, 0 };
    struct buf path = BUF_INITIALIZER;
    struct mailbox *mb = NULL;
    uint32_t total = 0;
    int r;

    if (e->server || e->type != MAILBOX_TYPE_MAIL
        || mboxname_isdeletedmailbox(e->name, NULL))
        return 0;
    if (!o->force_user && mboxname_isusermailbox(e->name, 0))
        return 0;

    r = mboxname_datapath(e->partition, e->name, 0, &path);
    if (!r)
        r = o->dryrun ? mailbox_open_iread(buf_cstring(&path), &mb)
                      : mailbox_open_iwrite(buf_cstring(&path), &mb);
    if (!r) {
        total = mailbox_index(mb)->exists;
        r = o->dryrun ? scan_only(mb, &p)
                      : mailbox_expunge(mb, decide, &p, o->mode, NULL);
    }
    mailbox_close(&mb);
    buf_free(&path);
    if (r) {
        fprintf(stderr, "%s: %s: %s\n", progname, e->name,
                error_message(r));
        xsyslog(LOG_ERR, "ipurge: mailbox failed", "mailbox=%s error=%s",
                log_escape(e->name, 0), error_message(r));
        return 0;
    }
    printf("%s: %s %u of %u messages (%llu bytes)\n", e->name,
           o->dryrun ? "would delete" : "deleted", p.matched, total,
           (unsigned long long)p.bytes);
    if (!o->dryrun && p.matched)
        xsyslog(LOG_NOTICE, "ipurge: expunged", "mailbox=%s count=%u "
                "bytes=%llu", log_escape(e->name, 0), p.matched,
                (unsigned long long)p.bytes);
    return 0;
}

/* A non-negative decimal argument of an option. */
static uint64_t num_opt(int opt, const char *arg, uint64_t max)
{
    uint64_t v;

    if (parse_uint64(arg, NULL, &v) || v > max) {
        fprintf(stderr, "%s: -%c needs a number, not \"%s\"\n", progname,
                opt, arg);
        exit(EX_USAGE_CODE);
    }
    return v;
}

static void parse_args(int argc, char **argv, struct options *o,
                       const char **conf_r)
{
    int opt, limits = 0;
    uint64_t v;

    while ((opt = getopt(argc, argv, "C:fd:b:k:m:Xisonh")) != -1) {
        switch (opt) {
        case 'C': *conf_r = optarg; break;
        case 'f': o->force_user = 1; break;
        case 'd':
            v = num_opt(opt, optarg, 100000);
            o->by_age = 1;
            o->cutoff = time(NULL) - (time_t)v * DAY;
            limits++;
            break;
        case 'b': o->size = num_opt(opt, optarg, UINT64_MAX); limits++;
            break;
        case 'k': o->size = num_opt(opt, optarg, UINT64_MAX >> 10) << 10;
            limits++;
            break;
        case 'm': o->size = num_opt(opt, optarg, UINT64_MAX >> 20) << 20;
            limits++;
            break;
        case 'X': o->use_savedate = 1; break;
        case 'i': o->invert = 1; break;
        case 's': o->skip_flagged = 1; break;
        case 'o': o->only_deleted = 1; break;
        case 'n': o->dryrun = 1; break;
        default: usage();
        }
    }
    if (limits != 1) {
        fprintf(stderr, "%s: give exactly one of -d, -b, -k, -m\n",
                progname);
        usage();
    }
}

int main(int argc, char **argv)
{
    struct options o;
    const char *conf = NULL, *err = NULL;
    struct buf why = BUF_INITIALIZER;
    struct auth_state *admin = NULL;
    int r = 0, i;

    memset(&o, 0, sizeof(o));
    parse_args(argc, argv, &o, &conf);

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
    o.mode = config_getenum(IMAPOPT_EXPUNGE_MODE) == EXPUNGE_MODE_IMMEDIATE
             ? MAILBOX_EXPUNGE_IMMEDIATE : MAILBOX_EXPUNGE_DELAYED;

    cyrusdb_init();
    admin = acl_auth_new("admin", 1);
    r = mboxlist_open();
    if (r)
        fprintf(stderr, "%s: cannot open the mailbox list: %s\n", progname,
                error_message(r));
    for (i = optind; !r && (i < argc || i == optind); i++) {
        const char *pattern = i < argc ? argv[i] : "*";

        r = mboxlist_findall(pattern, admin, purge_one, &o);
        if (r)
            fprintf(stderr, "%s: pattern %s: %s\n", progname, pattern,
                    error_message(r));
    }
    mboxlist_close();
    acl_auth_free(&admin);
    cyrusdb_done();
    buf_free(&why);
    return r ? 1 : 0;
}

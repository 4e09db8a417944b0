/* unexpunge: list the delayed-expunged messages of a mailbox, or bring
 * them back. */
/* Columba is free software; see COPYING for the licence. */

/*
 * Usage: unexpunge [-C imapd.conf] -l mailbox
 *        unexpunge [-C imapd.conf] -a [-d] [-v] mailbox
 *        unexpunge [-C imapd.conf] -u [-d] [-v] mailbox uid...
 *        unexpunge [-C imapd.conf] -t dur [-d] [-v] mailbox
 *
 * The mailbox is named as an admin names it (external form, standard
 * namespace) or by its internal name.
 *
 * -l lists every expunged message whose file is still there (not yet
 *    removed by cyr_expire), as Cyrus's tool does:
 *        UID: 12
 *                Size: 2048
 *                Sent: <date>
 *                Recv: <internal date>
 *                Expg: <when expunged>
 *                From: ...  To  : ...  Subj: ...   (from the cache)
 * -a restores all of them, -u those with the given (old) UIDs, -t those
 *    expunged within the last `dur` ("2h", "1d", bare number: seconds,
 *    as Cyrus counts it).  -d also clears \Deleted on the restored
 *    copies; -v prints each "restored uid OLD as uid NEW".
 *
 * Restoring re-appends the message file (hard-linked, so no copy is
 * made) with its internal date, flags and user flags: the copy gets a
 * new UID above UIDNEXT.  IMAP never lets a UID come back once a client
 * may have seen it expunged, so the old UID stays expunged; once the
 * copy is durable the old record is retired at once
 * (mailbox_unlink_record: its link to the file goes, it is no longer
 * listed), so a message is restored at most once.
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
#include "lib/times.h"
#include "lib/util.h"
#include "lib/xmalloc.h"

#include "imap/mailbox.h"
#include "imap/mboxlist.h"
#include "imap/mboxname.h"

#define EX_USAGE_CODE 64

static const char *progname = "unexpunge";

enum mode { MODE_NONE, MODE_LIST, MODE_ALL, MODE_UIDS, MODE_TIME };

struct options {
    enum mode mode;
    time_t since;               /* -t: expunged at or after this */
    int undelete, verbose;
    uint32_t *uids;
    int nuids;
};

static void usage(void)
{
    fprintf(stderr, "usage: %s [-C imapd.conf] -l | -a | -u | -t dur "
            "[-d] [-v] mailbox [uid...]\n", progname);
    exit(EX_USAGE_CODE);
}

/* Is `rec` an expunged message whose file is still there? */
static int is_restorable(const struct mailbox_record *rec)
{
    return (rec->system_flags & MAILBOX_FLAG_EXPUNGED)
           && !(rec->system_flags & MAILBOX_FLAG_UNLINKED);
}

static void print_time(const char *label, time_t t)
{
    char buf[TIMES_RFC5322_SIZE];

    if (times_format_rfc5322_local(buf, sizeof(buf), t))
        snprintf(buf, sizeof(buf), "%lld", (long long)t);
    printf("\t%s: %s\n", label, buf);
}

/* Print a cached header field without its name and line ends. */
static void print_header(struct mailbox *mb, const struct mailbox_record *rec,
                         enum mailbox_cache_field field, const char *label)
{
    struct buf val = BUF_INITIALIZER;
    const char *colon;
    size_t i;

    if (!mailbox_cache_get(mb, rec, field, &val) && val.len) {
        colon = memchr(val.s, ':', val.len);
        i = colon ? (size_t)(colon - val.s) + 1 : 0;
        printf("\t%s:", label);
        for (; i < val.len; i++) {
            char c = val.s[i];

            if (c != '\r' && c != '\n')
                putchar((unsigned char)c < 0x20 && c != '\t' ? '?' : c);
        }
        putchar('\n');
    }
    buf_free(&val);
}

static int list_messages(struct mailbox *mb)
{
    struct mailbox_record rec;
    uint32_t recno;
    int r = 0;

    for (recno = 1; !r && recno <= mailbox_index(mb)->num_records;
         recno++) {
        r = mailbox_read_record(mb, recno, &rec);
        if (r || !is_restorable(&rec))
            continue;
        printf("UID: %u\n", rec.uid);
        printf("\tSize: %llu\n", (unsigned long long)rec.size);
        print_time("Sent", rec.sentdate);
        print_time("Recv", rec.internaldate);
        print_time("Expg", rec.last_updated);
        print_header(mb, &rec, MAILBOX_CACHE_HDR_FROM, "From");
        print_header(mb, &rec, MAILBOX_CACHE_HDR_TO, "To  ");
        print_header(mb, &rec, MAILBOX_CACHE_HDR_CC, "Cc  ");
        print_header(mb, &rec, MAILBOX_CACHE_HDR_SUBJECT, "Subj");
        putchar('\n');
    }
    return r;
}

/* Does the selection pick `rec`? */
static int is_selected(const struct options *o,
                       const struct mailbox_record *rec)
{
    int i;

    switch (o->mode) {
    case MODE_ALL: return 1;
    case MODE_TIME: return rec->last_updated >= o->since;
    case MODE_UIDS:
        for (i = 0; i < o->nuids; i++) {
            if (o->uids[i] == rec->uid)
                return 1;
        }
        return 0;
    default: return 0;
    }
}

/* Append a copy of expunged record `rec`; sets *uid_r. */
static int restore_one(struct mailbox *mb, const struct options *o,
                       const struct mailbox_record *rec, uint32_t *uid_r)
{
    struct buf file = BUF_INITIALIZER;
    uint32_t flags = rec->system_flags & MAILBOX_FLAGS_IMAP;
    int r;

    if (o->undelete)
        flags &= ~MAILBOX_FLAG_DELETED;
    mailbox_message_path(mb, rec->uid, &file);
    r = mailbox_append(mb, buf_cstring(&file), NULL, 0, rec->internaldate,
                       flags, rec->user_flags, uid_r);
    buf_free(&file);
    return r;
}

static int restore_messages(struct mailbox *mb, const struct options *o,
                            unsigned *count_r)
{
    struct mailbox_record rec;
    uint32_t recno, last, uid = 0;
    int r = 0;

    /* Only the records there before we start: our own appends follow. */
    last = mailbox_index(mb)->num_records;
    for (recno = 1; !r && recno <= last; recno++) {
        r = mailbox_read_record(mb, recno, &rec);
        if (r || !is_restorable(&rec) || !is_selected(o, &rec))
            continue;
        r = restore_one(mb, o, &rec, &uid);

        /* The copy is durable (its own commit); now the old record. */
        if (!r)
            r = mailbox_unlink_record(mb, rec.uid);
        if (!r)
            r = mailbox_commit(mb);
        if (r)
            break;
        (*count_r)++;
        if (o->verbose)
            printf("restored uid %u as uid %u\n", rec.uid, uid);
    }
    return r;
}

/* Open the mailbox named `arg` (external or internal name). */
static int open_mailbox(const char *arg, int is_write, char **name_r,
                        struct mailbox **mb_r)
{
    struct mboxlist_entry *e = NULL;
    struct buf path = BUF_INITIALIZER;
    struct namespace ns;
    char *name = NULL;
    int r;

    if (mboxname_init_namespace(&ns, 1)
        || mboxname_from_external(arg, &ns, NULL, &name))
        name = xstrdup(arg);
    r = mboxlist_lookup(name, &e);
    if (r == ERR_MAILBOX_NONEXISTENT && strcmp(name, arg)) {
        free(name);
        name = xstrdup(arg);
        r = mboxlist_lookup(name, &e);
    }
    if (!r)
        r = mboxname_datapath(e->partition, e->name, 0, &path);
    if (!r)
        r = is_write ? mailbox_open_iwrite(buf_cstring(&path), mb_r)
                     : mailbox_open_iread(buf_cstring(&path), mb_r);
    mboxlist_entry_free(&e);
    buf_free(&path);
    if (r)
        free(name);
    else
        *name_r = name;
    return r;
}

static void parse_args(int argc, char **argv, struct options *o,
                       const char **conf_r)
{
    int64_t secs;
    int opt, i;

    while ((opt = getopt(argc, argv, "C:laut:dvh")) != -1) {
        enum mode m = MODE_NONE;

        switch (opt) {
        case 'C': *conf_r = optarg; break;
        case 'l': m = MODE_LIST; break;
        case 'a': m = MODE_ALL; break;
        case 'u': m = MODE_UIDS; break;
        case 't':
            if (times_parse_duration(optarg, 's', &secs) || secs < 0) {
                fprintf(stderr, "%s: bad time \"%s\"\n", progname, optarg);
                exit(EX_USAGE_CODE);
            }
            o->since = time(NULL) - (time_t)secs;
            m = MODE_TIME;
            break;
        case 'd': o->undelete = 1; break;
        case 'v': o->verbose = 1; break;
        default: usage();
        }
        if (m != MODE_NONE) {
            if (o->mode != MODE_NONE)
                usage();
            o->mode = m;
        }
    }
    if (o->mode == MODE_NONE || optind >= argc
        || (o->mode != MODE_UIDS && optind + 1 != argc)
        || (o->mode == MODE_UIDS && optind + 1 == argc))
        usage();
    o->nuids = argc - optind - 1;
    o->uids = xzmalloc(sizeof(*o->uids) * (size_t)(o->nuids + 1));
    for (i = 0; i < o->nuids; i++) {
        if (parse_uint32(argv[optind + 1 + i], NULL, &o->uids[i])
            || !o->uids[i]) {
            fprintf(stderr, "%s: bad uid \"%s\"\n", progname,
                    argv[optind + 1 + i]);
            exit(EX_USAGE_CODE);
        }
    }
}

int main(int argc, char **argv)
{
    struct options o = { MODE_NONE, 0, 0, 0, NULL, 0 };
    const char *conf = NULL, *err = NULL;
    struct buf why = BUF_INITIALIZER;
    struct mailbox *mb = NULL;
    char *name = NULL;
    unsigned count = 0;
    int r;

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

    cyrusdb_init();
    r = mboxlist_open();
    if (!r)
        r = open_mailbox(argv[optind], o.mode != MODE_LIST, &name, &mb);
    if (!r && o.mode == MODE_LIST) {
        r = list_messages(mb);
    }
    else if (!r) {
        r = restore_messages(mb, &o, &count);
        printf("restored %u messages to %s\n", count, name);
        if (count)
            xsyslog(LOG_NOTICE, "unexpunge: restored", "mailbox=%s "
                    "count=%u", log_escape(name, 0), count);
    }
    if (r)
        fprintf(stderr, "%s: %s: %s\n", progname, argv[optind],
                error_message(r));
    mailbox_close(&mb);
    mboxlist_close();
    cyrusdb_done();
    free(name);
    free(o.uids);
    buf_free(&why);
    return r ? 1 : 0;
}

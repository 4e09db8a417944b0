/* mkstore_admin: a test helper that builds a mail store without a server
 * (mailboxes, messages, delayed expunges, quota roots, duplicate marks)
 * for the admin tool tests, and prints what a test needs to check. */
/* Columba is free software; see COPYING for the licence. */

/*
 * Usage: mkstore_admin -C imapd.conf COMMAND ARGS...
 *
 *   create MAILBOX [PARTITION]         mboxlist_create as admin
 *   rename OLD NEW                     mboxlist_rename as admin
 *   delete MAILBOX                     mboxlist_delete as admin
 *   append MAILBOX AGE-DAYS BODYBYTES [FLAGS]
 *                                      append one generated message with
 *                                      an internal date AGE-DAYS ago and
 *                                      a body of BODYBYTES bytes; FLAGS is
 *                                      a comma list of seen, flagged,
 *                                      deleted, answered, draft; prints
 *                                      the new UID
 *   expunge MAILBOX UID...             delayed expunge of those UIDs
 *   records MAILBOX                    one line per index record:
 *                                      "uid size flags" where flags holds
 *                                      letters E (expunged), U (unlinked),
 *                                      D (deleted), F (flagged), S (seen)
 *   path MAILBOX                       the mailbox directory
 *   setquota ROOT STORAGE-KIB [USED-BYTES]
 *                                      create or change a quota root
 *   dupmark ID TO AGE-DAYS             a duplicate mark AGE-DAYS old
 *   dupcount                           number of duplicate marks
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
#include "lib/xmalloc.h"

#include "imap/acl.h"
#include "imap/duplicate.h"
#include "imap/mailbox.h"
#include "imap/mboxlist.h"
#include "imap/mboxname.h"
#include "imap/quota.h"

#define DAY 86400
#define BODY_MAX (64 * 1024 * 1024)

static struct auth_state *admin;

static void usage(void)
{
    fprintf(stderr, "usage: mkstore_admin -C imapd.conf COMMAND ARGS...\n");
    exit(64);
}

static long num_arg(const char *s)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);

    if (!*s || *end || v < 0)
        usage();
    return v;
}

/* Open the directory of mailbox `name` for writing. */
static int open_box(const char *name, struct mailbox **mb_r)
{
    struct mboxlist_entry *e = NULL;
    struct buf path = BUF_INITIALIZER;
    int r = mboxlist_lookup(name, &e);

    if (!r)
        r = mboxname_datapath(e->partition, e->name, 0, &path);
    if (!r)
        r = mailbox_open_iwrite(buf_cstring(&path), mb_r);
    mboxlist_entry_free(&e);
    buf_free(&path);
    return r;
}

static uint32_t parse_flags(const char *s)
{
    static const struct { const char *name; uint32_t bit; } names[] = {
        { "seen", MAILBOX_FLAG_SEEN }, { "flagged", MAILBOX_FLAG_FLAGGED },
        { "deleted", MAILBOX_FLAG_DELETED },
        { "answered", MAILBOX_FLAG_ANSWERED },
        { "draft", MAILBOX_FLAG_DRAFT }
    };
    uint32_t flags = 0;
    size_t i;

    for (i = 0; s && i < sizeof(names) / sizeof(names[0]); i++) {
        if (strstr(s, names[i].name))
            flags |= names[i].bit;
    }
    return flags;
}

static int cmd_append(char **argv, int argc)
{
    struct mailbox *mb = NULL;
    struct buf msg = BUF_INITIALIZER;
    long age, size, i;
    uint32_t uid = 0;
    int r;

    if (argc < 3)
        usage();
    age = num_arg(argv[1]);
    size = num_arg(argv[2]);
    if (size > BODY_MAX)
        usage();
    buf_printf(&msg, "From: tester@example.com\r\nTo: %s@example.com\r\n"
               "Subject: test message of %ld bytes\r\n"
               "Message-ID: <%ld.%ld@example.com>\r\n\r\n", argv[0], size,
               (long)time(NULL), (long)getpid());
    for (i = 0; i < size; i++)
        buf_putc(&msg, (i % 64 == 63) ? '\n' : 'x');
    r = open_box(argv[0], &mb);
    if (!r)
        r = mailbox_append(mb, NULL, msg.s, msg.len,
                           time(NULL) - (time_t)age * DAY,
                           parse_flags(argc > 3 ? argv[3] : NULL), NULL,
                           &uid);
    if (!r)
        printf("%u\n", uid);
    mailbox_close(&mb);
    buf_free(&msg);
    return r;
}

struct uidlist {
    char **uids;
    int n;
};

static int decide_uids(struct mailbox *mb, const struct mailbox_record *rec,
                       void *rock)
{
    const struct uidlist *l = rock;
    int i;

    (void)mb;
    for (i = 0; i < l->n; i++) {
        if (strtoul(l->uids[i], NULL, 10) == rec->uid)
            return 1;
    }
    return 0;
}

static int cmd_expunge(char **argv, int argc)
{
    struct uidlist l = { argv + 1, argc - 1 };
    struct mailbox *mb = NULL;
    int r;

    if (argc < 2)
        usage();
    r = open_box(argv[0], &mb);
    if (!r)
        r = mailbox_expunge(mb, decide_uids, &l, MAILBOX_EXPUNGE_DELAYED,
                            NULL);
    mailbox_close(&mb);
    return r;
}

static int cmd_records(const char *name)
{
    struct mailbox *mb = NULL;
    struct mailbox_record rec;
    uint32_t recno;
    int r = open_box(name, &mb);

    for (recno = 1; !r && recno <= mailbox_index(mb)->num_records; recno++) {
        r = mailbox_read_record(mb, recno, &rec);
        if (r)
            break;
        printf("%u %llu %s%s%s%s%s\n", rec.uid,
               (unsigned long long)rec.size,
               rec.system_flags & MAILBOX_FLAG_EXPUNGED ? "E" : "",
               rec.system_flags & MAILBOX_FLAG_UNLINKED ? "U" : "",
               rec.system_flags & MAILBOX_FLAG_DELETED ? "D" : "",
               rec.system_flags & MAILBOX_FLAG_FLAGGED ? "F" : "",
               rec.system_flags & MAILBOX_FLAG_SEEN ? "S" : "");
    }
    mailbox_close(&mb);
    return r;
}

static int cmd_path(const char *name)
{
    struct mboxlist_entry *e = NULL;
    struct buf path = BUF_INITIALIZER;
    int r = mboxlist_lookup(name, &e);

    if (!r)
        r = mboxname_datapath(e->partition, e->name, 0, &path);
    if (!r)
        printf("%s\n", buf_cstring(&path));
    mboxlist_entry_free(&e);
    buf_free(&path);
    return r;
}

static int cmd_setquota(char **argv, int argc)
{
    struct quota q;
    struct txn *tid = NULL;
    int r;

    if (argc < 2)
        usage();
    r = quota_read(argv[0], &q, &tid, 1);
    if (r == ERR_QUOTA_ROOT_NONEXISTENT) {
        quota_fini(&q);
        quota_init(&q, argv[0]);
        r = 0;
    }
    if (!r) {
        q.limits[QUOTA_STORAGE] = num_arg(argv[1]);
        if (argc > 2)
            q.useds[QUOTA_STORAGE] = num_arg(argv[2]);
        r = quota_write(&q, &tid);
    }
    if (!r && tid)
        r = quota_commit(&tid);
    else if (tid)
        quota_abort(&tid);
    quota_fini(&q);
    return r;
}

static int count_cb(const struct duplicate_key *key, time_t mark,
                    uint32_t uid, void *rock)
{
    (void)key;
    (void)mark;
    (void)uid;
    (*(unsigned long *)rock)++;
    return 0;
}

static int run(const char *cmd, char **argv, int argc)
{
    if (!strcmp(cmd, "create") && argc >= 1)
        return mboxlist_create(argv[0], MAILBOX_TYPE_MAIL,
                               argc > 1 ? argv[1] : NULL, admin, 1, NULL);
    if (!strcmp(cmd, "rename") && argc == 2)
        return mboxlist_rename(argv[0], argv[1], NULL, admin);
    if (!strcmp(cmd, "delete") && argc == 1)
        return mboxlist_delete(argv[0], admin, 0);
    if (!strcmp(cmd, "append"))
        return cmd_append(argv, argc);
    if (!strcmp(cmd, "expunge"))
        return cmd_expunge(argv, argc);
    if (!strcmp(cmd, "records") && argc == 1)
        return cmd_records(argv[0]);
    if (!strcmp(cmd, "path") && argc == 1)
        return cmd_path(argv[0]);
    if (!strcmp(cmd, "setquota"))
        return cmd_setquota(argv, argc);
    if (!strcmp(cmd, "dupmark") && argc == 3) {
        struct duplicate_key key = DUPLICATE_KEY_INIT(argv[0], argv[1], "");

        return duplicate_mark(&key, time(NULL) - num_arg(argv[2]) * DAY, 0);
    }
    if (!strcmp(cmd, "dupcount") && argc == 0) {
        unsigned long n = 0;
        int r = duplicate_foreach(NULL, count_cb, &n);

        printf("%lu\n", n);
        return r;
    }
    usage();
    return 0;
}

int main(int argc, char **argv)
{
    const char *conf = NULL, *err = NULL;
    struct buf why = BUF_INITIALIZER;
    int opt, r;

    while ((opt = getopt(argc, argv, "+C:")) != -1) {
        if (opt == 'C')
            conf = optarg;
        else
            usage();
    }
    if (optind >= argc)
        usage();
    r = config_read(conf, NULL, &err);
    if (r) {
        fprintf(stderr, "mkstore_admin: %s\n", err ? err : error_message(r));
        return 64;
    }
    log_open(config_getstring(IMAPOPT_SYSLOG_PREFIX), "mkstore_admin", 0, 0);
    if (privs_become_cyrus(&why)) {
        fprintf(stderr, "mkstore_admin: %s\n", buf_cstring(&why));
        return 64;
    }
    cyrusdb_init();
    admin = acl_auth_new("admin", 1);
    r = mboxlist_open();
    if (!r)
        r = run(argv[optind], argv + optind + 1, argc - optind - 1);
    mboxlist_close();
    quota_close();
    duplicate_close();
    acl_auth_free(&admin);
    cyrusdb_done();
    if (r)
        fprintf(stderr, "mkstore_admin: %s: %s\n", argv[optind],
                error_message(r));
    return r ? 1 : 0;
}

/* The one path by which messages enter the mail store: rights and quota
 * checks, the append itself, quota accounting, and multi-recipient
 * delivery with single-instance store. */
/* Columba is free software; see COPYING for the licence. */

/*
 * Order of an append and what a crash leaves
 * ==========================================
 * append_setup:  mailboxes.db lookup, rights, quota root read (no lock),
 *                mailbox opened with its exclusive lock.
 * append_add:    message file written or hard-linked, cache record
 *                appended (invisible: see imap/mailbox.c).
 * append_commit: (1) mailbox_append_commit(): files, cache, records and
 *                index header fsynced, in that order; from here the
 *                message exists and the caller may acknowledge it.
 *                (2) mailbox lock released, and with it (imap/mailbox.c)
 *                the bytes and message count added to the quota root.
 *
 * A crash before (1) completes loses nothing that was acknowledged: the
 * client was not told, and the next writer of the mailbox drops the
 * leftovers.  A crash between (1) and (2) leaves a stored message that
 * its quota root does not count yet: usage is under-counted until
 * `quota -f` recounts from the mailboxes.  Counting the quota first
 * would instead over-count on a crash (also repaired by `quota -f`),
 * but would make a quota database failure able to refuse, or worse
 * undo, a message the mailbox already holds; the message always wins.
 * The mailbox layer counts every change of its records the same way,
 * so expunges (either mode) give the usage back.
 *
 * Quota semantics
 * ===============
 * append_setup() refuses a mailbox whose root is already over its
 * STORAGE or MESSAGE limit.  Each append_add() is then checked against
 * the limits with everything pending in this append counted, unless the
 * append is lenient: a delivery (APPEND_DELIVERY) with lmtp_strict_quota
 * off (the default), where, as in Cyrus, a message is accepted as long
 * as the mailbox was not over quota before it, so one large message may
 * take a user over the limit and only the next delivery is refused.
 * IMAP APPEND and COPY are always strict.  The root is read without a
 * lock: two concurrent appends may together pass a limit by one
 * message each; the usage update itself never loses a count.
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/util.h"
#include "lib/xmalloc.h"

#include "imap/append.h"
#include "imap/mailbox.h"
#include "imap/mboxlist.h"
#include "imap/mboxname.h"
#include "imap/quota.h"

struct append_state {
    char *mboxname;
    char *partition;
    char *userid;               /* for log lines */
    unsigned flags;             /* APPEND_* */
    int is_strict;              /* check each message against limits */
    int has_root;               /* quota.root is valid */
    struct quota quota;         /* the root as read at setup */
    int64_t pending_bytes;
    int64_t pending_msgs;
    struct mailbox *mb;
    struct mailbox_append *txn;
};

static const struct {
    const char *name;
    uint32_t flag;
} system_flags[] = {
    { "\\Answered", MAILBOX_FLAG_ANSWERED },
    { "\\Flagged", MAILBOX_FLAG_FLAGGED },
    { "\\Deleted", MAILBOX_FLAG_DELETED },
    { "\\Draft", MAILBOX_FLAG_DRAFT },
    { "\\Seen", MAILBOX_FLAG_SEEN },
};

/* ---------------------------------------------------------------- */
/* Setup                                                              */

static void state_free(struct append_state **asp)
{
    struct append_state *as = *asp;

    if (!as)
        return;
    mailbox_append_abort(&as->txn);
    mailbox_close(&as->mb);
    quota_fini(&as->quota);
    free(as->mboxname);
    free(as->partition);
    free(as->userid);
    free(as);
    *asp = NULL;
}

/* May `auth` append to `e`?  Admins may, and the override is logged. */
static int check_rights(const struct append_state *as,
                        const struct auth_state *auth,
                        const struct mboxlist_entry *e)
{
    uint32_t need = (as->flags & APPEND_DELIVERY) ? ACL_POST : ACL_INSERT;
    uint32_t rights = 0;

    if (as->flags & APPEND_IGNORE_ACL)
        return 0;
    acl_myrights(auth, e->acl, e->name, &rights);
    if (rights & need)
        return 0;
    if (auth && auth->is_admin) {
        xsyslog(LOG_NOTICE, "admin override", "user=%s mailbox=%s op=%s",
                log_escape(as->userid, 0), log_escape(e->name, 0),
                (as->flags & APPEND_DELIVERY) ? "deliver" : "append");
        return 0;
    }
    return ERR_ACL_DENIED;
}

/* Read the quota root of the mailbox; refuse one already over. */
static int check_quota_root(struct append_state *as)
{
    char *root = NULL;
    int r;

    r = quota_find_root(as->mboxname, &root);
    if (r == ERR_QUOTA_ROOT_NONEXISTENT)
        return 0;
    if (!r)
        r = quota_read(root, &as->quota, NULL, 0);
    free(root);
    if (r == ERR_QUOTA_ROOT_NONEXISTENT)
        return 0;       /* removed under us: no quota */
    if (r)
        return r;
    as->has_root = 1;
    if (as->flags & APPEND_IGNORE_QUOTA)
        return 0;
    return quota_check(&as->quota, NULL);
}

int append_setup(const char *mboxname, const struct auth_state *auth,
                 unsigned flags, struct append_state **as_r)
{
    struct append_state *as = xzmalloc(sizeof(*as));
    struct mboxlist_entry *e = NULL;
    struct buf path = BUF_INITIALIZER;
    int r;

    *as_r = NULL;
    as->flags = flags;
    as->userid = xstrdup(auth && auth->userid ? auth->userid : "anonymous");
    as->is_strict = !(flags & APPEND_DELIVERY)
                    || config_getswitch(IMAPOPT_LMTP_STRICT_QUOTA);
    quota_init(&as->quota, NULL);
    r = mboxlist_lookup(mboxname, &e);
    if (r)
        goto done;
    as->mboxname = xstrdup(e->name);
    as->partition = xstrdup(e->partition);
    r = check_rights(as, auth, e);
    if (!r)
        r = check_quota_root(as);
    if (!r)
        r = mboxname_datapath(e->partition, e->name, 0, &path);
    if (!r)
        r = mailbox_open_iwrite(buf_cstring(&path), &as->mb);
    if (!r)
        r = mailbox_append_begin(as->mb, &as->txn);

done:
    if (r) {
        if (r != ERR_MAILBOX_NONEXISTENT)
            xsyslog(LOG_INFO, "append refused", "user=%s mailbox=%s "
                    "error=%s", log_escape(as->userid, 0),
                    log_escape(mboxname, 0), error_message(r));
        state_free(&as);
    }
    *as_r = as;
    mboxlist_entry_free(&e);
    buf_free(&path);
    return r;
}

/* ---------------------------------------------------------------- */
/* Adding messages                                                    */

/* Turn flag names into system flags and user-flag bits, allocating
 * user-flag slots for new keywords. */
static int parse_flags(struct append_state *as, const strarray_t *flags,
                       uint32_t *system_r, uint32_t *user_r)
{
    int i, r = 0;

    *system_r = 0;
    memset(user_r, 0, MAILBOX_USERFLAG_WORDS * sizeof(*user_r));
    for (i = 0; !r && flags && i < flags->count; i++) {
        const char *name = flags->data[i];
        unsigned idx = 0;
        size_t k;

        if (name[0] != '\\') {
            r = mailbox_set_userflag(as->mb, name, &idx);
            if (!r)
                user_r[idx / 32] |= 1u << (idx % 32);
            continue;
        }
        for (k = 0; k < sizeof(system_flags) / sizeof(system_flags[0]); k++)
            if (!strcasecmp(name, system_flags[k].name))
                break;
        if (k == sizeof(system_flags) / sizeof(system_flags[0]))
            r = ERR_INVALID;
        else
            *system_r |= system_flags[k].flag;
    }
    return r;
}

/* The size of the message about to be added. */
static int message_size(const char *msgfile, size_t len, int64_t *size_r)
{
    struct stat sb;

    if (!msgfile) {
        *size_r = (int64_t)len;
        return 0;
    }
    if (stat(msgfile, &sb) < 0) {
        xsyslog_syscall("stat", "path", msgfile);
        return ERR_IO;
    }
    *size_r = (int64_t)sb.st_size;
    return 0;
}

/* Strict quota: would this message take the root over a limit? */
static int check_room(const struct append_state *as, int64_t size)
{
    int64_t deltas[QUOTA_NUMRESOURCES] = { 0 };

    if (!as->has_root || !as->is_strict
        || (as->flags & APPEND_IGNORE_QUOTA))
        return 0;
    deltas[QUOTA_STORAGE] = as->pending_bytes + size;
    deltas[QUOTA_MESSAGE] = as->pending_msgs + 1;
    return quota_check(&as->quota, deltas);
}

/* Add from a copy of the file's bytes (no hard link). */
static int add_copy(struct append_state *as, const char *msgfile,
                    time_t internaldate, uint32_t sysflags,
                    const uint32_t *userflags, uint32_t *uid_r)
{
    struct buf data = BUF_INITIALIZER;
    int r = util_read_file(msgfile, &data, UINT32_MAX - 1);

    if (!r)
        r = mailbox_append_add(as->txn, NULL, data.s ? data.s : "",
                               data.len, internaldate, sysflags, userflags,
                               uid_r);
    buf_free(&data);
    return r;
}

int append_add(struct append_state *as, const char *msgfile,
               const char *base, size_t len, time_t internaldate,
               const strarray_t *flags, uint32_t *uid_r)
{
    uint32_t userflags[MAILBOX_USERFLAG_WORDS];
    uint32_t sysflags = 0, uid = 0;
    int64_t size = 0;
    int r;

    if (!as || !as->txn || (!msgfile && !base && len))
        return ERR_INVALID;
    r = message_size(msgfile, len, &size);
    if (!r)
        r = check_room(as, size);
    if (!r)
        r = parse_flags(as, flags, &sysflags, userflags);
    if (r)
        goto done;
    if (msgfile && !config_getswitch(IMAPOPT_SINGLEINSTANCESTORE))
        r = add_copy(as, msgfile, internaldate, sysflags, userflags, &uid);
    else
        r = mailbox_append_add(as->txn, msgfile, base, len, internaldate,
                               sysflags, userflags, &uid);
    if (r)
        goto done;
    as->pending_bytes += size;
    as->pending_msgs++;
    if (uid_r)
        *uid_r = uid;

done:
    if (r == ERR_QUOTA_EXCEEDED)
        xsyslog(LOG_INFO, "append over quota", "user=%s mailbox=%s "
                "size=%lld", log_escape(as->userid, 0),
                log_escape(as->mboxname, 0), (long long)size);
    return r;
}

unsigned append_count(const struct append_state *as)
{
    return as ? (unsigned)as->pending_msgs : 0;
}

/* ---------------------------------------------------------------- */
/* Commit and abort                                                   */

int append_commit(struct append_state **asp)
{
    struct append_state *as = asp ? *asp : NULL;
    int r;

    if (!as)
        return 0;

    /* (1) durable, (2) unlocked and counted: see the design comment. */
    r = mailbox_append_commit(&as->txn);
    mailbox_close(&as->mb);
    if (r)
        goto done;
    xsyslog(LOG_DEBUG, "append committed", "user=%s mailbox=%s count=%lld",
            log_escape(as->userid, 0), log_escape(as->mboxname, 0),
            (long long)as->pending_msgs);

done:
    state_free(asp);
    return r;
}

void append_abort(struct append_state **asp)
{
    state_free(asp);
}

/* ---------------------------------------------------------------- */
/* Delivery to several mailboxes                                      */

/* The first stored copy on each partition: the link source for the
 * next mailbox there. */
struct instance {
    char *partition;
    char *path;
};

static const char *instance_find(struct instance *inst, size_t n,
                                 const char *partition)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (!strcmp(inst[i].partition, partition))
            return inst[i].path;
    return NULL;
}

/* Deliver to one target.  `source` is the preferred link source; when
 * it cannot be used (removed meanwhile) the staging file is. */
static int deliver_one(const char *msgfile, const char *source,
                       time_t internaldate, const strarray_t *flags,
                       const struct auth_state *auth,
                       struct append_target *t, struct buf *stored)
{
    struct append_state *as = NULL;
    int r;

    r = append_setup(t->mboxname, auth, t->flags, &as);
    if (r)
        return r;
    r = append_add(as, source ? source : msgfile, NULL, 0, internaldate,
                   flags, &t->uid);
    if (r && source)
        r = append_add(as, msgfile, NULL, 0, internaldate, flags, &t->uid);
    if (r) {
        append_abort(&as);
        return r;
    }
    mailbox_message_path(as->mb, t->uid, stored);
    return append_commit(&as);
}

int append_deliver_many(const char *msgfile, time_t internaldate,
                        const strarray_t *flags,
                        const struct auth_state *auth,
                        struct append_target *targets, size_t ntargets)
{
    struct instance *inst = xzmalloc((ntargets + 1) * sizeof(*inst));
    struct buf stored = BUF_INITIALIZER;
    int sis = config_getswitch(IMAPOPT_SINGLEINSTANCESTORE);
    size_t i, ninst = 0;
    int first_r = 0;

    for (i = 0; i < ntargets; i++) {
        struct append_target *t = &targets[i];
        struct mboxlist_entry *e = NULL;
        const char *source = NULL;

        t->uid = 0;
        t->r = mboxlist_lookup(t->mboxname, &e);
        if (!t->r && sis)
            source = instance_find(inst, ninst, e->partition);
        buf_reset(&stored);
        if (!t->r)
            t->r = deliver_one(msgfile, source, internaldate, flags, auth,
                               t, &stored);
        if (!t->r && sis && !source) {
            inst[ninst].partition = xstrdup(e->partition);
            inst[ninst].path = buf_release(&stored);
            ninst++;
        }
        if (t->r && !first_r)
            first_r = t->r;
        mboxlist_entry_free(&e);
    }
    for (i = 0; i < ninst; i++) {
        free(inst[i].partition);
        free(inst[i].path);
    }
    free(inst);
    buf_free(&stored);
    return first_r;
}

int append_stage_path(const char *partition, struct buf *out)
{
    static unsigned long counter;
    const char *root = partition ? config_partitiondir(partition) : NULL;
    unsigned char rnd[6];
    struct buf hex = BUF_INITIALIZER;
    int r;

    buf_reset(out);
    if (!root)
        return ERR_PARTITION_UNKNOWN;
    buf_printf(out, "%s/stage.", root);
    r = util_mkdir_p(buf_cstring(out));
    if (!r)
        r = util_random_bytes(rnd, sizeof(rnd));
    if (r)
        return r;
    util_hex_encode(rnd, sizeof(rnd), &hex);
    buf_printf(out, "/%ld-%lu-%s", (long)getpid(), ++counter,
               buf_cstring(&hex));
    buf_free(&hex);
    return 0;
}

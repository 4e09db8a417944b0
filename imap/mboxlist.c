/* The mailbox list (mailboxes.db): entries, lookups, LIST, and the hub
 * through which every mailbox create, delete, rename and ACL change goes. */
/* Columba is free software; see COPYING for the licence. */

/*
 * mailboxes.db
 * ============
 * Opened with CYRUSDB_MBOXSORT, so a mailbox's children follow it and
 * LIST is a range scan.  Three kinds of key:
 *
 *   <internal name>      -> entry value (below)
 *   "$I" <uniqueid>      -> internal name (index by stable id)
 *   "$M"                 -> decimal highest list modseq
 *
 * Mailbox names never start with '$' (mboxname_policycheck), so the
 * kinds cannot collide.  Every change writes the entry, its "$I" key and
 * "$M" in one transaction.
 *
 * Entry value, version 1: the byte '1', then fields, each
 *
 *   <tag byte> <decimal length, 1-7 digits> ':' <length bytes>
 *
 *   T type name ("mail", ...)     P partition     I unique id
 *   A ACL string                  S murder server (absent when local)
 *   R old name of a reserved rename target
 *   C createdmodseq   M foldermodseq   V UIDVALIDITY   F flags (decimal)
 *
 * T, P and I are required.  Unknown tags are skipped (a later version
 * may add fields); a repeated tag, a length past the end, a missing ':'
 * or an over-long number is ERR_CORRUPT.  A value is at most
 * MBOXLIST_MAX_VALUE bytes.
 *
 * Write order and crashes
 * -----------------------
 * create:  (1) commit the entry with RESERVED, (2) create the mailbox
 *          files, (3) commit the entry without RESERVED.  A crash after
 *          (1) leaves a reserved entry nobody sees; mboxlist_recover()
 *          removes it and any files (2) made.
 * rename:  (1) commit reserved entries for every new name, carrying the
 *          old name (R), (2) per mailbox move the files, cyrus.header
 *          last, then rewrite the header's name, (3) commit: old entries
 *          gone, new ones active, "$I" pointing at the new names.  After
 *          a crash, recovery rolls a mailbox forward when its header is in
 *          the new directory, else moves any moved files back.
 * delete:  (1) commit the entry with DELETING, (2) mailbox_delete,
 *          (3) remove the entry.  Recovery finishes (2) and (3).
 * Delayed delete is a rename to the DELETED.* name.
 * setacl:  the entry is committed first (mailboxes.db is the authority),
 *          then the ACL copy in cyrus.header is refreshed.
 */

#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/cyrusdb.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/strarray.h"
#include "lib/util.h"
#include "lib/xmalloc.h"

#include "imap/mailbox_internal.h"
#include "imap/mboxlist.h"
#include "imap/mboxname.h"
#include "imap/partlist.h"
#include "imap/quota.h"

#define MBOXLIST_VERSION '1'
#define MBOXLIST_MAX_VALUE (ACL_STRING_MAX + 4096)
#define MBOXLIST_MAX_FIELDLEN 9999999
#define ID_PREFIX "$I"
#define MODSEQ_KEY "$M"

static struct db *mbdb;
static struct mboxlist_hooks hooks;
static int has_hooks;
static void (*test_hook)(const char *point);

/* ---------------------------------------------------------------- */
/* Entries                                                            */

void mboxlist_entry_free(struct mboxlist_entry **entryp)
{
    struct mboxlist_entry *e = entryp ? *entryp : NULL;

    if (!e)
        return;
    free(e->name);
    free(e->partition);
    free(e->uniqueid);
    free(e->acl);
    free(e->server);
    free(e->source);
    free(e);
    *entryp = NULL;
}

static struct mboxlist_entry *entry_dup(const struct mboxlist_entry *e)
{
    struct mboxlist_entry *n = xmemdup(e, sizeof(*e));

    n->name = e->name ? xstrdup(e->name) : NULL;
    n->partition = e->partition ? xstrdup(e->partition) : NULL;
    n->uniqueid = e->uniqueid ? xstrdup(e->uniqueid) : NULL;
    n->acl = e->acl ? xstrdup(e->acl) : NULL;
    n->server = e->server ? xstrdup(e->server) : NULL;
    n->source = e->source ? xstrdup(e->source) : NULL;
    return n;
}

static void put_field(struct buf *out, char tag, const char *s)
{
    if (!s)
        return;
    buf_printf(out, "%c%zu:", tag, strlen(s));
    buf_appendcstr(out, s);
}

static void put_num(struct buf *out, char tag, uint64_t v)
{
    char num[32];

    snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
    put_field(out, tag, num);
}

void mboxlist_entry_encode(const struct mboxlist_entry *e, struct buf *out)
{
    buf_putc(out, MBOXLIST_VERSION);
    put_field(out, 'T', mailbox_type_name(e->type));
    put_field(out, 'P', e->partition);
    put_field(out, 'I', e->uniqueid);
    put_field(out, 'A', e->acl ? e->acl : "");
    put_field(out, 'S', e->server);
    put_field(out, 'R', e->source);
    put_num(out, 'C', e->createdmodseq);
    put_num(out, 'M', e->foldermodseq);
    put_num(out, 'V', e->uidvalidity);
    put_num(out, 'F', e->flags);
}

/* Parse a decimal field of `len` bytes into *v_r (at most `max`). */
static int parse_num(const char *s, size_t len, uint64_t max, uint64_t *v_r)
{
    uint64_t v = 0;
    size_t i;

    if (!len || len > 20)
        return ERR_CORRUPT;
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return ERR_CORRUPT;
        if (v > (max - (uint64_t)(s[i] - '0')) / 10)
            return ERR_CORRUPT;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *v_r = v;
    return 0;
}

/* Store one decoded field into `e`. */
static int decode_field(struct mboxlist_entry *e, char tag, const char *v,
                        size_t len)
{
    char **str = NULL;
    uint64_t n = 0;
    int r = 0;

    if (memchr(v, '\0', len))
        return ERR_CORRUPT;
    switch (tag) {
    case 'T': {
        char *s = xstrndup(v, len);

        r = mailbox_type_parse(s, &e->type) ? ERR_CORRUPT : 0;
        free(s);
        return r;
    }
    case 'P': str = &e->partition; break;
    case 'I': str = &e->uniqueid; break;
    case 'A': str = &e->acl; break;
    case 'S': str = &e->server; break;
    case 'R': str = &e->source; break;
    case 'C':
        r = parse_num(v, len, UINT64_MAX, &n);
        e->createdmodseq = n;
        return r;
    case 'M':
        r = parse_num(v, len, UINT64_MAX, &n);
        e->foldermodseq = n;
        return r;
    case 'V':
        r = parse_num(v, len, UINT32_MAX, &n);
        e->uidvalidity = (uint32_t)n;
        return r;
    case 'F':
        r = parse_num(v, len, UINT32_MAX, &n);
        e->flags = (uint32_t)n;
        return r;
    default:
        return 0;       /* a field of a later version */
    }
    if (*str)
        return ERR_CORRUPT;
    *str = xstrndup(v, len);
    return 0;
}

int mboxlist_entry_decode(const char *name, const char *data, size_t len,
                          struct mboxlist_entry **entry_r)
{
    struct mboxlist_entry *e = xzmalloc(sizeof(*e));
    const char *p = data, *end = data + len;
    uint32_t seen = 0;
    int r = 0;

    *entry_r = NULL;
    e->type = MAILBOX_TYPE_COUNT_;
    if (!len || len > MBOXLIST_MAX_VALUE || *p++ != MBOXLIST_VERSION) {
        r = ERR_CORRUPT;
        goto done;
    }
    while (!r && p < end) {
        char tag = *p++;
        size_t flen = 0, digits = 0;

        while (p < end && *p >= '0' && *p <= '9' && digits < 7) {
            flen = flen * 10 + (size_t)(*p++ - '0');
            digits++;
        }
        if (!digits || p >= end || *p++ != ':'
            || flen > (size_t)(end - p)) {
            r = ERR_CORRUPT;
            break;
        }
        if (tag >= 'A' && tag <= 'Z') {
            uint32_t bit = 1u << (tag - 'A');

            if (seen & bit)
                r = ERR_CORRUPT;
            seen |= bit;
        }
        if (!r)
            r = decode_field(e, tag, p, flen);
        p += flen;
    }
    if (!r && (e->type == MAILBOX_TYPE_COUNT_ || !e->partition
               || !e->uniqueid))
        r = ERR_CORRUPT;
    if (!r && !e->acl)
        e->acl = xstrdup("");

done:
    if (r) {
        mboxlist_entry_free(&e);
        return r;
    }
    e->name = xstrdup(name);
    *entry_r = e;
    return 0;
}

/* ---------------------------------------------------------------- */
/* Opening and lookups                                                */

int mboxlist_open(void)
{
    const char *path = config_getstring(IMAPOPT_MBOXLIST_DB_PATH);
    struct buf fname = BUF_INITIALIZER;
    int r;

    if (mbdb)
        return 0;
    if (path)
        buf_setcstr(&fname, path);
    else
        buf_printf(&fname, "%s/mailboxes.db", config_dir());
    r = cyrusdb_open(config_getstring(IMAPOPT_MBOXLIST_DB),
                     buf_cstring(&fname), CYRUSDB_CREATE | CYRUSDB_MBOXSORT,
                     &mbdb);
    if (r) {
        xsyslog(LOG_ERR, "mailbox list open failed", "path=%s error=%s",
                buf_cstring(&fname), error_message(r));
        mbdb = NULL;
    }
    buf_free(&fname);
    return r;
}

void mboxlist_close(void)
{
    if (mbdb)
        cyrusdb_close(mbdb);
    mbdb = NULL;
}

/* Fetch and decode the raw entry of `name` (reserved ones too). */
static int read_entry(const char *name, struct mboxlist_entry **entry_r,
                      struct txn **tid)
{
    const char *data;
    size_t len;
    int r;

    *entry_r = NULL;
    if (!mbdb)
        return ERR_INVALID;
    if (!name || !*name || *name == '$' || strlen(name) > MBOXNAME_MAX)
        return ERR_MAILBOX_NONEXISTENT;
    r = cyrusdb_fetch(mbdb, name, strlen(name), &data, &len, tid);
    if (r == ERR_NOTFOUND)
        return ERR_MAILBOX_NONEXISTENT;
    if (r)
        return r;
    r = mboxlist_entry_decode(name, data, len, entry_r);
    if (r)
        xsyslog(LOG_ERR, "mailbox list entry corrupt", "mailbox=%s",
                log_escape(name, 0));
    return r;
}

static int is_active(const struct mboxlist_entry *e)
{
    return !(e->flags & (MBOXLIST_FLAG_RESERVED | MBOXLIST_FLAG_DELETING));
}

int mboxlist_lookup(const char *name, struct mboxlist_entry **entry_r)
{
    int r = read_entry(name, entry_r, NULL);

    if (!r && !is_active(*entry_r)) {
        mboxlist_entry_free(entry_r);
        r = ERR_MAILBOX_NONEXISTENT;
    }
    return r;
}

int mboxlist_lookup_by_id(const char *uniqueid,
                          struct mboxlist_entry **entry_r)
{
    struct buf key = BUF_INITIALIZER;
    const char *data;
    size_t len;
    char *name = NULL;
    int r;

    *entry_r = NULL;
    if (!mbdb)
        return ERR_INVALID;
    if (!uniqueid || !*uniqueid || strlen(uniqueid) > MAILBOX_MAX_UNIQUEID)
        return ERR_MAILBOX_NONEXISTENT;
    buf_printf(&key, ID_PREFIX "%s", uniqueid);
    r = cyrusdb_fetch(mbdb, key.s, key.len, &data, &len, NULL);
    if (r == ERR_NOTFOUND)
        r = ERR_MAILBOX_NONEXISTENT;
    if (!r) {
        name = xstrndup(data, len);
        r = mboxlist_lookup(name, entry_r);
    }
    if (!r && strcmp((*entry_r)->uniqueid, uniqueid)) {
        mboxlist_entry_free(entry_r);
        r = ERR_MAILBOX_NONEXISTENT;
    }
    free(name);
    buf_free(&key);
    return r;
}

/* ---------------------------------------------------------------- */
/* Walking and LIST                                                   */

struct walk {
    const char *prefix;         /* name the walk is below, or NULL */
    const char *pattern;        /* findall pattern, or NULL */
    const struct auth_state *auth;
    int want_reserved;          /* recovery wants every entry */
    mboxlist_cb_t *cb;
    void *rock;
};

/* Does `name` match the LIST `pattern`?  Dynamic programming over the
 * pattern, so hostile patterns with many wildcards stay O(n * m). */
static int pattern_match(const char *pattern, const char *name)
{
    size_t plen = strlen(pattern), nlen = strlen(name), i, j;
    unsigned char *cur = xzmalloc(nlen + 1), *next = xzmalloc(nlen + 1);
    unsigned char *tmp;
    int match;

    cur[0] = 1;                 /* empty pattern matches empty name */
    for (i = 0; i < plen; i++) {
        char pc = pattern[i];

        memset(next, 0, nlen + 1);
        for (j = 0; j <= nlen; j++) {
            if (pc == '*' || pc == '%') {
                /* zero bytes, or extend a match by one byte */
                next[j] = cur[j]
                          || (j > 0 && next[j - 1]
                              && (pc == '*' || name[j - 1] != '.'));
            }
            else if (j > 0 && cur[j - 1] && name[j - 1] == pc) {
                next[j] = 1;
            }
        }
        tmp = cur;
        cur = next;
        next = tmp;
    }
    match = cur[nlen];
    free(cur);
    free(next);
    return match;
}

static int walk_cb(void *rock, const char *key, size_t keylen,
                   const char *data, size_t datalen)
{
    struct walk *w = rock;
    struct mboxlist_entry *e = NULL;
    char *name;
    int r = 0;

    if (keylen && key[0] == '$')
        return 0;
    name = xstrndup(key, keylen);
    if (strlen(name) != keylen)
        goto done;              /* embedded NUL: not a mailbox */
    if (w->prefix && *w->prefix && !mboxname_is_prefix(name, w->prefix))
        goto done;
    if (w->pattern && !pattern_match(w->pattern, name))
        goto done;
    if (mboxlist_entry_decode(name, data, datalen, &e)) {
        xsyslog(LOG_ERR, "mailbox list entry corrupt", "mailbox=%s",
                log_escape(name, 0));
        goto done;
    }
    if (!w->want_reserved && !is_active(e))
        goto done;
    if (w->pattern) {
        uint32_t rights = 0;
        int is_admin = w->auth && w->auth->is_admin;

        if (!is_admin && mboxname_isdeletedmailbox(name, NULL))
            goto done;
        acl_myrights(w->auth, e->acl, name, &rights);
        if (!(rights & ACL_LOOKUP))
            goto done;
    }
    r = w->cb(e, w->rock);

done:
    mboxlist_entry_free(&e);
    free(name);
    return r;
}

int mboxlist_foreach(const char *prefix, mboxlist_cb_t *cb, void *rock)
{
    struct walk w = { prefix, NULL, NULL, 0, cb, rock };
    size_t len = prefix ? strlen(prefix) : 0;

    if (!mbdb)
        return ERR_INVALID;
    return cyrusdb_foreach(mbdb, prefix ? prefix : "", len, NULL, walk_cb,
                           &w, NULL);
}

int mboxlist_findall(const char *pattern, const struct auth_state *auth,
                     mboxlist_cb_t *cb, void *rock)
{
    struct walk w = { NULL, pattern, auth, 0, cb, rock };
    size_t head;

    if (!mbdb || !pattern || strlen(pattern) > 2 * MBOXNAME_MAX)
        return ERR_INVALID;
    head = strcspn(pattern, "*%");
    return cyrusdb_foreach(mbdb, pattern, head, NULL, walk_cb, &w, NULL);
}

static int first_child_cb(const struct mboxlist_entry *e, void *rock)
{
    const char *name = rock;

    return strcmp(e->name, name) ? 1 : 0;
}

int mboxlist_haschildren(const char *name)
{
    if (!mbdb || !name || !*name)
        return 0;
    return mboxlist_foreach(name, first_child_cb, (void *)name) == 1;
}

/* ---------------------------------------------------------------- */
/* Hooks and the audit log                                            */

const char *mboxlist_op_name(enum mboxlist_op op)
{
    static const char *const names[] = {
        "create", "delete", "rename", "setacl"
    };

    return (unsigned)op < 4 ? names[op] : "unknown";
}

void mboxlist_set_hooks(const struct mboxlist_hooks *h)
{
    memset(&hooks, 0, sizeof(hooks));
    has_hooks = h != NULL;
    if (h)
        hooks = *h;
}

void mboxlist_set_test_hook(void (*hook)(const char *point))
{
    test_hook = hook;
}

static void run_test_hook(const char *point)
{
    if (test_hook)
        test_hook(point);
}

static int hook_before(enum mboxlist_op op, const char *name,
                       const char *newname, const struct mboxlist_entry *e)
{
    int r;

    if (!has_hooks || !hooks.before)
        return 0;
    r = hooks.before(op, name, newname, e, hooks.rock);
    if (r)
        xsyslog(LOG_INFO, "mailbox change vetoed", "op=%s mailbox=%s "
                "error=%s", mboxlist_op_name(op), log_escape(name, 0),
                error_message(r));
    return r;
}

static void hook_after(enum mboxlist_op op, const char *name,
                       const char *newname, const struct mboxlist_entry *e)
{
    if (has_hooks && hooks.after)
        hooks.after(op, name, newname, e, hooks.rock);
}

static const char *auth_user(const struct auth_state *auth)
{
    return auth && auth->userid ? auth->userid : "anonymous";
}

static int auth_is_admin(const struct auth_state *auth)
{
    return auth && auth->is_admin;
}

/* Decide a rights check: allowed when `has_right`; else an admin passes
 * and the override is logged as an audit event. */
static int admin_may(const struct auth_state *auth, int is_admin,
                     int has_right, const char *name, enum mboxlist_op op)
{
    if (has_right)
        return 1;
    if (!is_admin)
        return 0;
    xsyslog(LOG_NOTICE, "admin override", "user=%s mailbox=%s op=%s",
            log_escape(auth_user(auth), 0), log_escape(name, 0),
            mboxlist_op_name(op));
    return 1;
}

/* ---------------------------------------------------------------- */
/* Transactions                                                       */

/* The next list modseq, stored in "$M" inside `tid`. */
static int next_modseq(struct txn **tid, uint64_t *modseq_r)
{
    const char *data;
    size_t len;
    uint64_t v = 0;
    char num[32];
    int r;

    r = cyrusdb_fetch(mbdb, MODSEQ_KEY, 2, &data, &len, tid);
    if (r == ERR_NOTFOUND)
        r = 0;
    else if (!r && parse_num(data, len, UINT64_MAX - 1, &v))
        v = 0;
    if (r)
        return r;
    v++;
    snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
    *modseq_r = v;
    return cyrusdb_store(mbdb, MODSEQ_KEY, 2, num, strlen(num), tid);
}

/* Store entry `e` and, when `with_id`, its "$I" key, inside `tid`. */
static int put_entry(const struct mboxlist_entry *e, int with_id,
                     struct txn **tid)
{
    struct buf val = BUF_INITIALIZER, key = BUF_INITIALIZER;
    int r;

    mboxlist_entry_encode(e, &val);
    r = cyrusdb_store(mbdb, e->name, strlen(e->name), val.s, val.len, tid);
    if (!r && with_id) {
        buf_printf(&key, ID_PREFIX "%s", e->uniqueid);
        r = cyrusdb_store(mbdb, key.s, key.len, e->name, strlen(e->name),
                          tid);
    }
    buf_free(&val);
    buf_free(&key);
    return r;
}

/* Remove entry `e` and its "$I" key when it points at `e`. */
static int drop_entry(const struct mboxlist_entry *e, struct txn **tid)
{
    struct buf key = BUF_INITIALIZER;
    const char *data;
    size_t len;
    int r;

    r = cyrusdb_delete(mbdb, e->name, strlen(e->name), tid, 1);
    if (!r) {
        buf_printf(&key, ID_PREFIX "%s", e->uniqueid);
        r = cyrusdb_fetch(mbdb, key.s, key.len, &data, &len, tid);
        if (!r && len == strlen(e->name) && !memcmp(data, e->name, len))
            r = cyrusdb_delete(mbdb, key.s, key.len, tid, 1);
        else if (r == ERR_NOTFOUND || !r)
            r = 0;
    }
    buf_free(&key);
    return r;
}

static int finish_txn(struct txn *tid, int r)
{
    if (!tid)
        return r;
    if (r) {
        cyrusdb_abort(mbdb, tid);
        return r;
    }
    return cyrusdb_commit(mbdb, tid);
}

/* Write one entry (and its id key) in its own transaction. */
static int write_one(const struct mboxlist_entry *e, int with_id)
{
    struct txn *tid = NULL;
    int r = put_entry(e, with_id, &tid);

    return finish_txn(tid, r);
}

static int remove_one(const struct mboxlist_entry *e)
{
    struct txn *tid = NULL;
    int r = drop_entry(e, &tid);

    return finish_txn(tid, r);
}


/* ---------------------------------------------------------------- */
/* Lists of entries                                                   */

struct entry_list {
    struct mboxlist_entry **v;
    int n;
    int alloc;
};

static int collect_cb(const struct mboxlist_entry *e, void *rock)
{
    struct entry_list *l = rock;

    if (l->n == l->alloc) {
        l->alloc = l->alloc ? l->alloc * 2 : 8;
        l->v = xrealloc(l->v, (size_t)l->alloc * sizeof(*l->v));
    }
    l->v[l->n++] = entry_dup(e);
    return 0;
}

static void entry_list_fini(struct entry_list *l)
{
    int i;

    for (i = 0; i < l->n; i++)
        mboxlist_entry_free(&l->v[i]);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

/* ---------------------------------------------------------------- */
/* Mailbox files                                                      */

static int entry_path(const struct mboxlist_entry *e, struct buf *out)
{
    return mboxname_datapath(e->partition, e->name, 0, out);
}

/* The metapartition directory of `e` into `out`; empty when the
 * mailbox keeps its metadata in its data directory. */
static int entry_metadir(const struct mboxlist_entry *e, struct buf *out)
{
    struct buf data = BUF_INITIALIZER;
    int r = entry_path(e, &data);

    buf_reset(out);
    if (!r) {
        r = mboxname_datapath_to_metadir(buf_cstring(&data), out);
        if (r == ERR_NOTFOUND || (!r && !strcmp(buf_cstring(out),
                                                buf_cstring(&data)))) {
            buf_reset(out);
            r = 0;
        }
    }
    buf_free(&data);
    return r;
}

/* The directory holding the cyrus.header of `e`. */
static int entry_header_dir(const struct mboxlist_entry *e, struct buf *out)
{
    int r = 0;

    buf_reset(out);
    if (mboxname_is_metafile(MAILBOX_FNAME_HEADER))
        r = entry_metadir(e, out);
    if (!r && !buf_len(out))
        r = entry_path(e, out);
    return r;
}

static int has_header(const char *dir)
{
    struct buf p = BUF_INITIALIZER;
    struct stat sb;
    int found;

    buf_printf(&p, "%s/" MAILBOX_FNAME_HEADER, dir);
    found = lstat(buf_cstring(&p), &sb) == 0;
    buf_free(&p);
    return found;
}

static int move_one(const char *src, const char *dst)
{
    if (rename(src, dst) == 0)
        return 0;
    if (errno == EXDEV) {
        /* XXX: moving a mailbox to a partition on another file system
         * needs a copy of every file; rename(2) is all we do so far. */
        xsyslog(LOG_WARNING, "mailbox move across file systems refused",
                "path=%s", src);
        return ERR_UNSUPPORTED;
    }
    xsyslog_syscall("rename", "path", src);
    return ERR_IO;
}

/* Move every regular file of directory `from` into `to` (created),
 * cyrus.header last: its arrival is what makes the mailbox live there.
 * Child mailbox directories stay.  A missing `from` moves nothing. */
static int move_files(const char *from, const char *to)
{
    struct buf src = BUF_INITIALIZER, dst = BUF_INITIALIZER;
    struct dirent *de;
    struct stat sb;
    int found_header = 0;
    DIR *dir;
    int r;

    r = util_mkdir_p(to);
    if (r)
        return r;
    dir = opendir(from);
    if (!dir) {
        if (errno == ENOENT)
            return 0;
        xsyslog_syscall("opendir", "path", from);
        return ERR_IO;
    }
    while (!r && (de = readdir(dir))) {
        if (!strcmp(de->d_name, MAILBOX_FNAME_HEADER)) {
            found_header = 1;
            continue;
        }
        buf_reset(&src);
        buf_printf(&src, "%s/%s", from, de->d_name);
        if (lstat(buf_cstring(&src), &sb) < 0 || !S_ISREG(sb.st_mode))
            continue;
        buf_reset(&dst);
        buf_printf(&dst, "%s/%s", to, de->d_name);
        r = move_one(buf_cstring(&src), buf_cstring(&dst));
    }
    closedir(dir);
    if (!r && found_header) {
        buf_reset(&src);
        buf_reset(&dst);
        buf_printf(&src, "%s/" MAILBOX_FNAME_HEADER, from);
        buf_printf(&dst, "%s/" MAILBOX_FNAME_HEADER, to);
        r = move_one(buf_cstring(&src), buf_cstring(&dst));
    }
    if (!r)
        r = mailbox_fsync_path(to, 1);
    if (!r)
        r = mailbox_fsync_path(from, 1);
    buf_free(&src);
    buf_free(&dst);
    return r;
}

/* Make the header in `path` carry `name` and `acl`. */
static int set_header(const char *path, const char *name, const char *acl)
{
    struct mailbox *mb = NULL;
    int r = mailbox_open_iwrite(path, &mb);

    if (r)
        return r;
    r = mailbox_set_name(mb, name);
    if (!r)
        r = mailbox_set_acl(mb, acl);
    mailbox_close(&mb);
    return r;
}

/* Remove the mailbox files of `e`; a mailbox that is not there is fine.
 * With `force`, failures are logged and ignored. */
static int remove_files(const struct mboxlist_entry *e, int force)
{
    struct buf path = BUF_INITIALIZER;
    struct mailbox *mb = NULL;
    int r;

    r = entry_path(e, &path);
    if (!r)
        r = mailbox_open_iwrite(buf_cstring(&path), &mb);
    if (!r)
        r = mailbox_delete(&mb);
    else if (r == ERR_MAILBOX_NONEXISTENT)
        r = 0;
    if (r && force) {
        xsyslog(LOG_WARNING, "mailbox files not removed", "mailbox=%s "
                "error=%s", log_escape(e->name, 0), error_message(r));
        r = 0;
    }
    buf_free(&path);
    return r;
}

static int make_uniqueid(char **id_r)
{
    unsigned char raw[16];
    struct buf hex = BUF_INITIALIZER;
    int r = util_random_bytes(raw, sizeof(raw));

    if (r)
        return r;
    util_hex_encode(raw, sizeof(raw), &hex);
    *id_r = buf_release(&hex);
    return 0;
}

/* ---------------------------------------------------------------- */
/* Rights and names                                                   */

static uint32_t rights_of(const struct auth_state *auth,
                          const struct mboxlist_entry *e)
{
    uint32_t rights = 0;

    acl_myrights(auth, e->acl, e->name, &rights);
    return rights;
}

/* The nearest existing ancestor of `name` into *parent_r (NULL when
 * there is none). */
static int find_parent(const char *name, struct mboxlist_entry **parent_r)
{
    char *s = xstrdup(name);
    const char *bang = strchr(s, '!');
    char *dot;
    int r = 0;

    *parent_r = NULL;
    while ((dot = strrchr(s, '.')) && (!bang || dot > bang)) {
        *dot = '\0';
        r = mboxlist_lookup(s, parent_r);
        if (r != ERR_MAILBOX_NONEXISTENT)
            break;
        r = 0;
    }
    free(s);
    return r;
}

/* May `auth` create `name`?  Also checks the name and that it is free;
 * sets *parent_r (may be NULL: top level). */
static int create_check(const char *name, const struct auth_state *auth,
                        int is_admin, enum mboxlist_op op,
                        struct mboxlist_entry **parent_r)
{
    struct mboxlist_entry *old = NULL;
    int may;
    int r;

    *parent_r = NULL;
    r = mboxname_policycheck(name);
    if (r)
        return r;
    r = read_entry(name, &old, NULL);
    mboxlist_entry_free(&old);
    if (!r)
        return ERR_MAILBOX_EXISTS;
    if (r != ERR_MAILBOX_NONEXISTENT)
        return r;
    r = find_parent(name, parent_r);
    if (r)
        return r;
    may = !mboxname_isusermailbox(name, 1)
          && !mboxname_isdeletedmailbox(name, NULL)
          && *parent_r && (rights_of(auth, *parent_r) & ACL_CREATE);
    return admin_may(auth, is_admin, may, name, op) ? 0 : ERR_ACL_DENIED;
}

/* Add the `defaultacl` pairs ("identifier rights ...") to `acl`, for a
 * new top-level mailbox; a malformed pair is logged and skipped. */
static void default_acl(char **acl)
{
    const char *spec = config_getstring(IMAPOPT_DEFAULTACL);
    char *copy, *id, *rights, *save = NULL;

    if (!spec)
        return;
    copy = xstrdup(spec);
    for (id = strtok_r(copy, " \t", &save); id;
         id = strtok_r(NULL, " \t", &save)) {
        rights = strtok_r(NULL, " \t", &save);
        if (!rights || acl_setacl_string(acl, id, rights)) {
            xsyslog(LOG_WARNING, "bad defaultacl entry", "identifier=%s",
                    log_escape(id, 0));
            if (!rights)
                break;
        }
    }
    free(copy);
}

/* The ACL of a new mailbox. */
static char *initial_acl(const char *name,
                         const struct mboxlist_entry *parent,
                         const struct auth_state *auth, int is_admin)
{
    char *acl = xstrdup("");
    char *owner = NULL;

    if (mboxname_isusermailbox(name, 1)
        && !mboxname_to_userid(name, &owner)) {
        acl_setacl_string(&acl, owner, "lrswipkxtean");
    }
    else if (parent) {
        free(acl);
        acl = xstrdup(parent->acl);
    }
    else {
        default_acl(&acl);
        if (!is_admin && auth && auth->userid)
            acl_setacl_string(&acl, auth->userid, "lrswipkxtean");
    }
    free(owner);
    return acl;
}

/* ---------------------------------------------------------------- */
/* Quota of mailboxes                                                 */

/* Take one MAILBOX (X-NUM-FOLDERS) of the quota root of `name`, under
 * the root's lock so two creates cannot both take the last one.  Sets
 * *root_r to the root (caller frees; NULL when `name` has none).
 * Returns 0, ERR_QUOTA_EXCEEDED or a quota database error. */
static int folder_quota_take(const char *name, char **root_r)
{
    int64_t deltas[QUOTA_NUMRESOURCES] = { 0 };
    struct txn *tid = NULL;
    struct quota q;
    int r;

    *root_r = NULL;
    quota_init(&q, NULL);
    r = quota_find_root(name, root_r);
    if (r == ERR_QUOTA_ROOT_NONEXISTENT)
        return 0;
    if (!r) {
        quota_fini(&q);
        r = quota_read(*root_r, &q, &tid, 1);
    }
    deltas[QUOTA_NUMFOLDERS] = 1;
    if (!r)
        r = quota_check(&q, deltas);
    if (!r) {
        q.useds[QUOTA_NUMFOLDERS]++;
        r = quota_write(&q, &tid);
    }
    if (!r)
        r = quota_commit(&tid);
    quota_abort(&tid);
    quota_fini(&q);
    if (r == ERR_QUOTA_ROOT_NONEXISTENT)
        r = 0;          /* the root went away meanwhile */
    if (r) {
        free(*root_r);
        *root_r = NULL;
    }
    return r;
}

/* What mailbox `e` counts against its quota root: itself, its messages
 * and their bytes (0 for what cannot be read). */
static void mailbox_usage(const struct mboxlist_entry *e,
                          int64_t deltas[QUOTA_NUMRESOURCES])
{
    struct buf path = BUF_INITIALIZER;
    struct mailbox *mb = NULL;

    memset(deltas, 0, QUOTA_NUMRESOURCES * sizeof(*deltas));
    deltas[QUOTA_NUMFOLDERS] = 1;
    if (!entry_path(e, &path)
        && !mailbox_open_iread(buf_cstring(&path), &mb)) {
        deltas[QUOTA_STORAGE] = (int64_t)mailbox_index(mb)->quota_used;
        deltas[QUOTA_MESSAGE] = mailbox_index(mb)->exists;
    }
    mailbox_close(&mb);
    buf_free(&path);
}

/* Add (sign 1) or remove (sign -1) `deltas` to the root of `name`, if
 * it has one.  A failure is logged: usage is then off until quota -f. */
static void quota_apply(const char *name,
                        const int64_t deltas[QUOTA_NUMRESOURCES], int sign)
{
    int64_t d[QUOTA_NUMRESOURCES];
    char *root = NULL;
    int res, r;

    if (mboxname_isdeletedmailbox(name, NULL))
        return;         /* deleted mailboxes count against nothing */
    r = quota_find_root(name, &root);
    for (res = 0; res < QUOTA_NUMRESOURCES; res++)
        d[res] = sign * deltas[res];
    if (!r)
        r = quota_update_usage(root, d, NULL);
    if (r && r != ERR_QUOTA_ROOT_NONEXISTENT)
        xsyslog(LOG_ERR, "quota usage not updated; run quota -f",
                "mailbox=%s error=%s", log_escape(name, 0),
                error_message(r));
    free(root);
}

/* After mailbox `from` became `to` (same contents): move its usage when
 * the two names have different quota roots; the folder itself only
 * when `with_folder`. */
static void quota_move(const struct mboxlist_entry *from,
                       const struct mboxlist_entry *to, int with_folder)
{
    int64_t deltas[QUOTA_NUMRESOURCES];
    char *r1 = NULL, *r2 = NULL;

    quota_find_root(from->name, &r1);
    quota_find_root(to->name, &r2);
    if ((r1 || r2) && (!r1 || !r2 || strcmp(r1, r2))) {
        /* XXX: limits of the new root are not checked on rename (Cyrus
         * refuses a move over quota); checking needs the usage before
         * the move, i.e. opening every mailbox first. */
        mailbox_usage(to, deltas);
        if (!with_folder)
            deltas[QUOTA_NUMFOLDERS] = 0;
        quota_apply(from->name, deltas, -1);
        quota_apply(to->name, deltas, 1);
    }
    free(r1);
    free(r2);
}

/* ---------------------------------------------------------------- */
/* Create                                                             */

/* Step (1): commit `e` as a new reserved entry, with its "$I" key when
 * `with_id`; fills its modseqs. */
static int reserve_entry(struct mboxlist_entry *e, int with_id,
                         struct txn **tid)
{
    struct buf val = BUF_INITIALIZER, key = BUF_INITIALIZER;
    uint64_t modseq = 0;
    int r;

    e->flags |= MBOXLIST_FLAG_RESERVED;
    r = next_modseq(tid, &modseq);
    if (!r) {
        if (!e->createdmodseq)
            e->createdmodseq = modseq;
        e->foldermodseq = modseq;
        mboxlist_entry_encode(e, &val);
        r = cyrusdb_create(mbdb, e->name, strlen(e->name), val.s, val.len,
                           tid);
        if (r == ERR_EXISTS)
            r = ERR_MAILBOX_EXISTS;
    }
    if (!r && with_id) {
        buf_printf(&key, ID_PREFIX "%s", e->uniqueid);
        r = cyrusdb_store(mbdb, key.s, key.len, e->name, strlen(e->name),
                          tid);
    }
    buf_free(&val);
    buf_free(&key);
    return r;
}

/* Step (2): the mailbox files; fills UIDVALIDITY. */
static int create_files(struct mboxlist_entry *e)
{
    struct buf path = BUF_INITIALIZER;
    struct mailbox *mb = NULL;
    int r;

    r = entry_path(e, &path);
    if (!r)
        r = mailbox_create(e->name, buf_cstring(&path), e->type,
                           e->uniqueid, &mb);
    if (!r)
        r = mailbox_set_acl(mb, e->acl);
    if (!r)
        e->uidvalidity = mailbox_index(mb)->uidvalidity;
    if (r && mb)
        mailbox_delete(&mb);
    mailbox_close(&mb);
    buf_free(&path);
    return r;
}

static struct mboxlist_entry *new_entry(const char *name,
                                        enum mailbox_type type,
                                        const char *partition, char *aclm)
{
    struct mboxlist_entry *e = xzmalloc(sizeof(*e));

    e->name = xstrdup(name);
    e->type = type;
    e->partition = xstrdup(partition);
    e->acl = aclm;
    return e;
}

int mboxlist_create(const char *name, enum mailbox_type type,
                    const char *partition, const struct auth_state *auth,
                    int is_admin, struct mboxlist_entry **entry_r)
{
    struct mboxlist_entry *parent = NULL, *e = NULL;
    struct txn *tid = NULL;
    const char *part = partition;
    char *qroot = NULL;
    int r;

    if (entry_r)
        *entry_r = NULL;
    if (!mbdb || !name || (unsigned)type >= MAILBOX_TYPE_COUNT_)
        return ERR_INVALID;
    is_admin = is_admin || auth_is_admin(auth);
    r = create_check(name, auth, is_admin, MBOXLIST_OP_CREATE, &parent);
    if (r)
        goto done;
    if (!part && parent)
        part = parent->partition;
    if (!part && (r = partlist_choose_partition(&part)))
        goto done;
    if (!config_partitiondir(part)) {
        r = ERR_PARTITION_UNKNOWN;
        goto done;
    }
    e = new_entry(name, type, part,
                  initial_acl(name, parent, auth, is_admin));
    r = make_uniqueid(&e->uniqueid);
    if (!r)
        r = hook_before(MBOXLIST_OP_CREATE, name, NULL, e);
    if (!r)
        r = folder_quota_take(name, &qroot);
    if (r)
        goto done;

    /* (1) reserve, (2) files, (3) activate: see the design comment. */
    r = finish_txn(tid, reserve_entry(e, 1, &tid));
    if (r)
        goto done;
    run_test_hook("create:after-reserve");
    r = create_files(e);
    if (r) {
        remove_one(e);
        goto done;
    }
    run_test_hook("create:after-files");
    e->flags &= ~MBOXLIST_FLAG_RESERVED;
    r = write_one(e, 0);
    if (r)
        goto done;      /* left reserved: mboxlist_recover() cleans up */
    free(qroot);
    qroot = NULL;       /* the folder is taken for good */

    xsyslog(LOG_NOTICE, "mailbox create", "mailbox=%s user=%s type=%s "
            "partition=%s uniqueid=%s", log_escape(name, 0),
            log_escape(auth_user(auth), 0), mailbox_type_name(type),
            log_escape(part, 0), e->uniqueid);
    hook_after(MBOXLIST_OP_CREATE, name, NULL, e);
    if (entry_r) {
        *entry_r = e;
        e = NULL;
    }

done:
    if (qroot) {
        int64_t deltas[QUOTA_NUMRESOURCES] = { 0 };

        deltas[QUOTA_NUMFOLDERS] = -1;
        quota_update_usage(qroot, deltas, NULL);
        free(qroot);
    }
    mboxlist_entry_free(&parent);
    mboxlist_entry_free(&e);
    return r;
}

/* ---------------------------------------------------------------- */
/* Insert (files already there)                                       */

/* May `e` be entered as it is?  The name and partition must be valid,
 * the name and the unique id both free. */
static int insert_check(const struct mboxlist_entry *e)
{
    struct mboxlist_entry *old = NULL;
    int r;

    if (!e->name || !e->partition || !e->uniqueid
        || (unsigned)e->type >= MAILBOX_TYPE_COUNT_)
        return ERR_INVALID;
    r = mboxname_policycheck(e->name);
    if (r)
        return r;
    if (!e->server && !config_partitiondir(e->partition))
        return ERR_PARTITION_UNKNOWN;
    r = read_entry(e->name, &old, NULL);
    mboxlist_entry_free(&old);
    if (!r)
        return ERR_MAILBOX_EXISTS;
    if (r != ERR_MAILBOX_NONEXISTENT)
        return r;
    r = mboxlist_lookup_by_id(e->uniqueid, &old);
    mboxlist_entry_free(&old);
    if (!r)
        return ERR_MAILBOX_EXISTS;
    return r == ERR_MAILBOX_NONEXISTENT ? 0 : r;
}

int mboxlist_insert(const struct mboxlist_entry *entry)
{
    struct mboxlist_entry *e = NULL;
    int64_t deltas[QUOTA_NUMRESOURCES];
    struct txn *tid = NULL;
    uint64_t modseq = 0;
    int r;

    if (!mbdb || !entry)
        return ERR_INVALID;
    r = insert_check(entry);
    if (r)
        return r;
    e = entry_dup(entry);
    e->flags &= ~(MBOXLIST_FLAG_RESERVED | MBOXLIST_FLAG_DELETING);
    free(e->source);
    e->source = NULL;
    if (!e->acl)
        e->acl = xstrdup("");
    r = hook_before(MBOXLIST_OP_CREATE, e->name, NULL, e);
    if (r)
        goto done;

    /* Entry, "$I" and "$M" in one transaction, as a create's last step. */
    r = next_modseq(&tid, &modseq);
    if (!r) {
        if (!e->createdmodseq)
            e->createdmodseq = modseq;
        e->foldermodseq = modseq;
        r = put_entry(e, 1, &tid);
    }
    r = finish_txn(tid, r);
    if (r)
        goto done;

    /* The mailbox and what it holds now count against its root. */
    if (!e->server) {
        mailbox_usage(e, deltas);
        quota_apply(e->name, deltas, 1);
    }
    xsyslog(LOG_NOTICE, "mailbox inserted", "mailbox=%s partition=%s "
            "uniqueid=%s", log_escape(e->name, 0),
            log_escape(e->partition, 0), e->uniqueid);
    hook_after(MBOXLIST_OP_CREATE, e->name, NULL, e);

done:
    mboxlist_entry_free(&e);
    return r;
}

/* ---------------------------------------------------------------- */
/* Moving mailboxes (rename, delayed delete)                          */

/* One mailbox moving: the active entry and its reserved successor. */
struct move {
    struct mboxlist_entry *from;
    struct mboxlist_entry *to;
};

/* Move the files of mailbox `from` to where `to` keeps them: the data
 * directory and, with a metapartition, the metadata directory.  The
 * directory holding cyrus.header moves last, header last within it, so
 * the header's arrival still says the move is complete. */
static int move_mailbox_files(const struct mboxlist_entry *from,
                              const struct mboxlist_entry *to)
{
    struct buf d1 = BUF_INITIALIZER, d2 = BUF_INITIALIZER;
    struct buf m1 = BUF_INITIALIZER, m2 = BUF_INITIALIZER;
    int r;

    r = entry_path(from, &d1);
    if (!r)
        r = entry_path(to, &d2);
    if (!r)
        r = entry_metadir(from, &m1);
    if (!r)
        r = entry_metadir(to, &m2);
    if (r)
        goto done;
    if (!buf_len(&m1) || !buf_len(&m2)) {
        r = move_files(buf_cstring(&d1), buf_cstring(&d2));
    }
    else if (mboxname_is_metafile(MAILBOX_FNAME_HEADER)) {
        r = move_files(buf_cstring(&d1), buf_cstring(&d2));
        if (!r)
            r = move_files(buf_cstring(&m1), buf_cstring(&m2));
    }
    else {
        r = move_files(buf_cstring(&m1), buf_cstring(&m2));
        if (!r)
            r = move_files(buf_cstring(&d1), buf_cstring(&d2));
    }

done:
    buf_free(&d1);
    buf_free(&d2);
    buf_free(&m1);
    buf_free(&m2);
    return r;
}

/* Remove the (empty) directories of `e`: data, then metadata. */
static void remove_entry_dirs(const struct mboxlist_entry *e)
{
    struct buf path = BUF_INITIALIZER;

    if (!entry_path(e, &path))
        rmdir(buf_cstring(&path));
    if (!entry_metadir(e, &path) && buf_len(&path))
        rmdir(buf_cstring(&path));
    buf_free(&path);
}

/* Move the files of one mailbox and name it in its header. */
static int move_mailbox(const struct move *m)
{
    struct buf to = BUF_INITIALIZER, hdir = BUF_INITIALIZER;
    int r;

    r = move_mailbox_files(m->from, m->to);
    if (!r)
        r = entry_path(m->to, &to);
    if (!r)
        r = entry_header_dir(m->to, &hdir);
    if (!r && has_header(buf_cstring(&hdir)))
        r = set_header(buf_cstring(&to), m->to->name, m->to->acl);
    buf_free(&to);
    buf_free(&hdir);
    return r;
}

/* Undo move_mailbox() as far as it got, and drop the reserved entry. */
static int unmove_mailbox(const struct move *m)
{
    struct buf from = BUF_INITIALIZER, hdir = BUF_INITIALIZER;
    int r;

    r = move_mailbox_files(m->to, m->from);
    if (!r)
        r = entry_path(m->from, &from);
    if (!r)
        r = entry_header_dir(m->from, &hdir);
    if (!r && has_header(buf_cstring(&hdir)))
        r = set_header(buf_cstring(&from), m->from->name, m->from->acl);
    if (!r) {
        remove_entry_dirs(m->to);
        r = remove_one(m->to);
    }
    buf_free(&from);
    buf_free(&hdir);
    return r;
}

/* Step (3): old entries out, new ones active, in one transaction. */
static int activate_moves(struct move *mv, int n)
{
    struct txn *tid = NULL;
    int i, r = 0;

    for (i = 0; !r && i < n; i++) {
        mv[i].to->flags &= ~MBOXLIST_FLAG_RESERVED;
        free(mv[i].to->source);
        mv[i].to->source = NULL;
        r = cyrusdb_delete(mbdb, mv[i].from->name, strlen(mv[i].from->name),
                           &tid, 1);
        if (!r)
            r = put_entry(mv[i].to, 1, &tid);
    }
    return finish_txn(tid, r);
}

/* Remove the old directories, deepest first, once they are empty. */
static void remove_old_dirs(struct move *mv, int n)
{
    int i;

    for (i = n - 1; i >= 0; i--)
        remove_entry_dirs(mv[i].from);
}

/* Move every mailbox of `mv` (names in order) as the design comment
 * says.  On failure everything moved so far is moved back. */
static int do_moves(struct move *mv, int n)
{
    struct txn *tid = NULL;
    int i, r = 0, moved = 0;

    for (i = 0; !r && i < n; i++) {
        free(mv[i].to->source);
        mv[i].to->source = xstrdup(mv[i].from->name);
        r = reserve_entry(mv[i].to, 0, &tid);
    }
    r = finish_txn(tid, r);
    if (r)
        return r;
    run_test_hook("rename:after-reserve");
    for (moved = 0; !r && moved < n; moved++)
        r = move_mailbox(&mv[moved]);
    if (!r) {
        run_test_hook("rename:after-move");
        r = activate_moves(mv, n);
    }
    if (r) {
        for (i = n - 1; i >= 0; i--)
            unmove_mailbox(&mv[i]);
        return r;
    }
    remove_old_dirs(mv, n);
    return 0;
}

static void moves_free(struct move *mv, int n)
{
    int i;

    for (i = 0; i < n; i++)
        mboxlist_entry_free(&mv[i].to);
    free(mv);
}

/* The DELETED.* name of `name`, deleted at `now`.  The name carries the
 * time in seconds, so deleting, re-creating and deleting the same name
 * within one second would collide: the time is then bumped until the
 * name is free (the stamp may run a few seconds ahead; cyr_expire only
 * uses it for the age of the mailbox). */
static int deleted_name(const char *name, time_t now, char **name_r)
{
    struct mboxlist_entry *old = NULL;
    int tries, r = 0;

    *name_r = NULL;
    for (tries = 0; tries < 1000; tries++) {
        r = mboxname_to_deleted(name, now + tries, name_r);
        if (r)
            return r;
        r = read_entry(*name_r, &old, NULL);
        mboxlist_entry_free(&old);
        if (r == ERR_MAILBOX_NONEXISTENT)
            return 0;
        free(*name_r);
        *name_r = NULL;
        if (r)
            return r;
    }
    return ERR_MAILBOX_EXISTS;
}

/* Build the moves for `list`: each name gets `newname` in place of its
 * `oldname` head, or with `to_deleted` its DELETED.* form. */
static int build_moves(const struct entry_list *list, const char *oldname,
                       const char *newname, const char *partition,
                       int to_deleted, struct move **mv_r)
{
    struct move *mv = xzmalloc((size_t)(list->n ? list->n : 1)
                               * sizeof(*mv));
    time_t now = time(NULL);
    int i, r = 0;

    for (i = 0; !r && i < list->n; i++) {
        struct mboxlist_entry *to = entry_dup(list->v[i]);
        char *name = NULL;

        if (to_deleted) {
            r = deleted_name(list->v[i]->name, now, &name);
        }
        else {
            struct buf b = BUF_INITIALIZER;

            buf_printf(&b, "%s%s", newname,
                       list->v[i]->name + strlen(oldname));
            name = buf_release(&b);
            if (strlen(name) > MBOXNAME_MAX)
                r = ERR_MAILBOX_BADNAME;
            if (!r)
                r = mboxname_policycheck(name);
        }
        free(to->name);
        to->name = name;
        if (partition) {
            free(to->partition);
            to->partition = xstrdup(partition);
        }
        mv[i].from = list->v[i];
        mv[i].to = to;
    }
    if (r) {
        moves_free(mv, list->n);
        return r;
    }
    *mv_r = mv;
    return 0;
}

/* Vetoes for every move, then the moves. */
static int run_moves(enum mboxlist_op op, struct move *mv, int n)
{
    int i, r = 0;

    for (i = 0; !r && i < n; i++)
        r = hook_before(op, mv[i].from->name, mv[i].to->name, mv[i].to);
    if (!r)
        r = do_moves(mv, n);
    for (i = 0; !r && i < n; i++)
        quota_move(mv[i].from, mv[i].to, 1);
    return r;
}

static void log_moves(enum mboxlist_op op, const struct move *mv, int n,
                      const struct auth_state *auth)
{
    int i;

    for (i = 0; i < n; i++) {
        xsyslog(LOG_NOTICE, op == MBOXLIST_OP_DELETE ? "mailbox delete"
                                                     : "mailbox rename",
                "mailbox=%s newname=%s user=%s uniqueid=%s",
                log_escape(mv[i].from->name, 0),
                log_escape(mv[i].to->name, 0),
                log_escape(auth_user(auth), 0), mv[i].to->uniqueid);
        hook_after(op, mv[i].from->name, mv[i].to->name, mv[i].to);
    }
}

/* Copy one record of `src` into the append transaction `txn` of
 * `dst`: the file is hard-linked, flags (user flags by name) and the
 * internal date kept. */
static int copy_record(struct mailbox *src, struct mailbox *dst,
                       struct mailbox_append *txn,
                       const struct mailbox_record *rec)
{
    uint32_t uflags[MAILBOX_USERFLAG_WORDS] = { 0 };
    struct buf path = BUF_INITIALIZER;
    unsigned i, idx;
    int r = 0;

    for (i = 0; !r && i < MAILBOX_MAX_USERFLAGS; i++) {
        const char *flag = mailbox_userflag_name(src, i);

        if (!flag || !(rec->user_flags[i / 32] & (1u << (i % 32))))
            continue;
        r = mailbox_set_userflag(dst, flag, &idx);
        if (!r)
            uflags[idx / 32] |= 1u << (idx % 32);
    }
    mailbox_message_path(src, rec->uid, &path);
    if (!r)
        r = mailbox_append_add(txn, buf_cstring(&path), NULL, 0,
                               rec->internaldate,
                               rec->system_flags & MAILBOX_FLAGS_IMAP,
                               uflags, NULL);
    buf_free(&path);
    return r;
}

static int expunge_all_cb(struct mailbox *mb,
                          const struct mailbox_record *rec, void *rock)
{
    (void)mb;
    (void)rec;
    (void)rock;
    return 1;
}

/* Move every message of `from` into the new mailbox `to`: one durable
 * append of them all, then an immediate expunge from `from`.  A crash
 * between the two leaves the messages in both mailboxes, never in
 * neither.  Sets *count_r. */
static int move_messages(const struct mboxlist_entry *from,
                         const struct mboxlist_entry *to, unsigned *count_r)
{
    struct buf p1 = BUF_INITIALIZER, p2 = BUF_INITIALIZER;
    struct mailbox *src = NULL, *dst = NULL;
    struct mailbox_append *txn = NULL;
    struct mailbox_record rec;
    uint32_t recno;
    int r;

    *count_r = 0;
    r = entry_path(from, &p1);
    if (!r)
        r = entry_path(to, &p2);
    if (!r)
        r = mailbox_open_iwrite(buf_cstring(&p1), &src);
    if (!r)
        r = mailbox_open_iwrite(buf_cstring(&p2), &dst);
    if (!r)
        r = mailbox_append_begin(dst, &txn);
    for (recno = 1; !r && recno <= mailbox_index(src)->num_records;
         recno++) {
        r = mailbox_read_record(src, recno, &rec);
        if (!r && !(rec.system_flags & MAILBOX_FLAG_EXPUNGED))
            r = copy_record(src, dst, txn, &rec);
    }
    if (!r)
        r = mailbox_append_commit(&txn);
    mailbox_append_abort(&txn);
    if (!r)
        r = mailbox_expunge(src, expunge_all_cb, NULL,
                            MAILBOX_EXPUNGE_IMMEDIATE, count_r);
    mailbox_close(&dst);
    mailbox_close(&src);
    buf_free(&p1);
    buf_free(&p2);
    return r;
}

/* RENAME of a user's INBOX (RFC 3501 6.3.5): create `newname`, move
 * every message into it, leave the INBOX empty in place.  Its child
 * mailboxes stay where they are. */
static int rename_inbox(const struct mboxlist_entry *inbox,
                        const char *newname, const char *partition,
                        const struct auth_state *auth)
{
    struct mboxlist_entry *ne = NULL;
    unsigned count = 0;
    int r;

    r = mboxlist_create(newname, inbox->type, partition, auth, 0, &ne);
    if (r)
        return r;
    r = move_messages(inbox, ne, &count);
    if (r) {
        xsyslog(LOG_ERR, "inbox rename failed", "mailbox=%s newname=%s "
                "error=%s", log_escape(inbox->name, 0),
                log_escape(newname, 0), error_message(r));
    }
    else {
        /* The append to the new mailbox and the expunge from the INBOX
         * each moved their usage (imap/mailbox.c). */
        xsyslog(LOG_NOTICE, "mailbox rename", "mailbox=%s newname=%s "
                "user=%s uniqueid=%s mode=inbox messages=%u",
                log_escape(inbox->name, 0), log_escape(newname, 0),
                log_escape(auth_user(auth), 0), ne->uniqueid, count);
    }
    mboxlist_entry_free(&ne);
    return r;
}

int mboxlist_rename(const char *oldname, const char *newname,
                    const char *partition, const struct auth_state *auth)
{
    struct mboxlist_entry *e = NULL, *parent = NULL;
    struct entry_list list = { NULL, 0, 0 };
    struct move *mv = NULL;
    int is_admin = auth_is_admin(auth);
    int r;

    if (!mbdb || !newname)
        return ERR_INVALID;
    r = mboxlist_lookup(oldname, &e);
    if (r)
        goto done;
    if (!admin_may(auth, is_admin, rights_of(auth, e) & ACL_DELETEMBOX,
                   oldname, MBOXLIST_OP_RENAME)) {
        r = ERR_ACL_DENIED;
        goto done;
    }
    /* RFC 3501 6.3.5: a user's INBOX, or an INBOX moved into its own
     * hierarchy, keeps its place and gives up its messages. */
    if (mboxname_isusermailbox(oldname, 1)
        && (!is_admin || mboxname_is_prefix(newname, oldname))) {
        r = rename_inbox(e, newname, partition, auth);
        goto done;
    }
    if (mboxname_is_prefix(newname, oldname)) {
        r = ERR_INVALID;
        goto done;
    }
    r = create_check(newname, auth, is_admin, MBOXLIST_OP_RENAME,
                     &parent);
    if (!r && partition && !config_partitiondir(partition))
        r = ERR_PARTITION_UNKNOWN;
    if (!r)
        r = mboxlist_foreach(oldname, collect_cb, &list);
    if (!r)
        r = build_moves(&list, oldname, newname, partition, 0, &mv);
    if (!r)
        r = run_moves(MBOXLIST_OP_RENAME, mv, list.n);
    if (!r)
        log_moves(MBOXLIST_OP_RENAME, mv, list.n, auth);

done:
    if (mv)
        moves_free(mv, list.n);
    entry_list_fini(&list);
    mboxlist_entry_free(&e);
    mboxlist_entry_free(&parent);
    return r;
}

/* ---------------------------------------------------------------- */
/* Delete                                                             */

/* Immediate delete of one mailbox: (1) mark, (2) files, (3) entry. */
static int delete_now(struct mboxlist_entry *e, int force)
{
    int r;

    e->flags |= MBOXLIST_FLAG_DELETING;
    r = write_one(e, 0);
    if (r)
        return r;
    run_test_hook("delete:after-mark");
    r = remove_files(e, force);
    if (!r)
        r = remove_one(e);
    return r;
}

static int is_delayed_delete(const char *name)
{
    const char *dp = config_getstring(IMAPOPT_DELETEDPREFIX);
    const char *mode = config_getstring(IMAPOPT_DELETE_MODE);

    return mode && !strcmp(mode, "delayed") && dp && *dp
           && !mboxname_isdeletedmailbox(name, NULL);
}

static int delete_list(const struct entry_list *list, int force,
                       const struct auth_state *auth)
{
    int i, r = 0;

    for (i = 0; !r && i < list->n; i++)
        r = hook_before(MBOXLIST_OP_DELETE, list->v[i]->name, NULL,
                        list->v[i]);
    /* Deepest first, so each directory is empty when it goes. */
    for (i = list->n - 1; !r && i >= 0; i--) {
        int64_t deltas[QUOTA_NUMRESOURCES];

        mailbox_usage(list->v[i], deltas);
        r = delete_now(list->v[i], force);
        if (r)
            break;
        quota_apply(list->v[i]->name, deltas, -1);
        xsyslog(LOG_NOTICE, "mailbox delete", "mailbox=%s user=%s "
                "uniqueid=%s mode=immediate",
                log_escape(list->v[i]->name, 0),
                log_escape(auth_user(auth), 0), list->v[i]->uniqueid);
        hook_after(MBOXLIST_OP_DELETE, list->v[i]->name, NULL, list->v[i]);
    }
    return r;
}

int mboxlist_delete(const char *name, const struct auth_state *auth,
                    int force)
{
    struct mboxlist_entry *e = NULL;
    struct entry_list list = { NULL, 0, 0 };
    struct move *mv = NULL;
    int is_admin = auth_is_admin(auth);
    int is_inbox;
    int r;

    if (!mbdb)
        return ERR_INVALID;
    r = mboxlist_lookup(name, &e);
    if (r)
        goto done;
    is_inbox = mboxname_isusermailbox(name, 1);
    if (!admin_may(auth, is_admin,
                   !is_inbox && (rights_of(auth, e) & ACL_DELETEMBOX), name,
                   MBOXLIST_OP_DELETE)) {
        r = ERR_ACL_DENIED;
        goto done;
    }

    /* A user's INBOX takes the whole user with it. */
    if (is_inbox)
        r = mboxlist_foreach(name, collect_cb, &list);
    else
        collect_cb(e, &list);
    if (r)
        goto done;

    if (is_delayed_delete(name)) {
        r = build_moves(&list, name, NULL, NULL, 1, &mv);
        if (!r)
            r = run_moves(MBOXLIST_OP_DELETE, mv, list.n);
        if (!r)
            log_moves(MBOXLIST_OP_DELETE, mv, list.n, auth);
    }
    else {
        r = delete_list(&list, force, auth);
    }

done:
    if (mv)
        moves_free(mv, list.n);
    entry_list_fini(&list);
    mboxlist_entry_free(&e);
    return r;
}

/* ---------------------------------------------------------------- */
/* SETACL                                                             */

int mboxlist_setacl(const char *name, const char *identifier,
                    const char *rights, const struct auth_state *auth)
{
    struct mboxlist_entry *e = NULL;
    struct buf path = BUF_INITIALIZER;
    struct txn *tid = NULL;
    uint64_t modseq = 0;
    char *acl = NULL;
    int r;

    if (!mbdb || !identifier || !rights)
        return ERR_INVALID;
    r = mboxlist_lookup(name, &e);
    if (r)
        goto done;
    if (!admin_may(auth, auth_is_admin(auth),
                   rights_of(auth, e) & ACL_ADMIN, name,
                   MBOXLIST_OP_SETACL)) {
        r = ERR_ACL_DENIED;
        goto done;
    }
    acl = xstrdup(e->acl);
    r = acl_setacl_string(&acl, identifier, rights);
    if (r)
        goto done;
    free(e->acl);
    e->acl = acl;
    acl = NULL;
    r = hook_before(MBOXLIST_OP_SETACL, name, NULL, e);
    if (r)
        goto done;

    /* mailboxes.db is the authority; the header copy follows. */
    r = next_modseq(&tid, &modseq);
    e->foldermodseq = modseq;
    if (!r)
        r = put_entry(e, 0, &tid);
    r = finish_txn(tid, r);
    if (r)
        goto done;
    if (entry_path(e, &path) || set_header(buf_cstring(&path), name, e->acl))
        xsyslog(LOG_WARNING, "mailbox header ACL not updated", "mailbox=%s",
                log_escape(name, 0));
    xsyslog(LOG_NOTICE, "mailbox acl change", "mailbox=%s user=%s "
            "identifier=%s rights=%s", log_escape(name, 0),
            log_escape(auth_user(auth), 0), log_escape(identifier, 0),
            log_escape(rights, 0));
    hook_after(MBOXLIST_OP_SETACL, name, NULL, e);

done:
    free(acl);
    buf_free(&path);
    mboxlist_entry_free(&e);
    return r;
}

/* ---------------------------------------------------------------- */
/* Recovery                                                           */

static int collect_broken_cb(const struct mboxlist_entry *e, void *rock)
{
    return is_active(e) ? 0 : collect_cb(e, rock);
}

/* A reserved rename target: forward when its header arrived. */
static int recover_move(struct mboxlist_entry *to)
{
    struct move m = { NULL, to };
    struct buf path = BUF_INITIALIZER;
    int r;

    r = read_entry(to->source, &m.from, NULL);
    if (r == ERR_MAILBOX_NONEXISTENT) {
        /* The source is gone: nothing to go back to. */
        to->flags &= ~MBOXLIST_FLAG_RESERVED;
        free(to->source);
        to->source = NULL;
        return write_one(to, 1);
    }
    if (!r)
        r = entry_header_dir(to, &path);
    if (!r && has_header(buf_cstring(&path))) {
        r = move_mailbox(&m);
        if (!r)
            r = activate_moves(&m, 1);
        if (!r)
            remove_old_dirs(&m, 1);
    }
    else if (!r) {
        r = unmove_mailbox(&m);
    }
    mboxlist_entry_free(&m.from);
    buf_free(&path);
    return r;
}

static int recover_one(struct mboxlist_entry *e)
{
    xsyslog(LOG_WARNING, "mailbox list repair", "mailbox=%s flags=%u",
            log_escape(e->name, 0), e->flags);
    if (e->flags & MBOXLIST_FLAG_DELETING) {
        remove_files(e, 1);
        return remove_one(e);
    }
    if (e->source)
        return recover_move(e);
    remove_files(e, 1);
    return remove_one(e);
}

int mboxlist_recover(unsigned *count_r)
{
    struct entry_list list = { NULL, 0, 0 };
    struct walk w = { NULL, NULL, NULL, 1, collect_broken_cb, &list };
    int i, r, r2;

    if (count_r)
        *count_r = 0;
    if (!mbdb)
        return ERR_INVALID;
    r = cyrusdb_foreach(mbdb, "", 0, NULL, walk_cb, &w, NULL);
    for (i = 0; i < list.n; i++) {
        r2 = recover_one(list.v[i]);
        if (r2 && !r)
            r = r2;
        if (!r2 && count_r)
            (*count_r)++;
    }
    entry_list_fini(&list);
    return r;
}

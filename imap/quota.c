/* Quota roots: per-resource usage and limits kept in the quota database
 * (quota_db), found for a mailbox by walking up its name. */
/* Columba is free software; see COPYING for the licence. */

/*
 * THE QUOTA DATABASE
 *
 * One record per quota root, keyed by the root's internal name
 * ("user.alice", "example.com!user.bob", or "example.com!" for the
 * quota of a whole domain), in mailbox-name order.  The backend is
 * quota_db (default quotalegacy: one file per root below
 * {configdirectory}/quota/), the location quota_db_path or
 * {configdirectory}/quotas.db.
 *
 * VALUE FORMAT, version 1: one line of ASCII, no newline:
 *
 *   value    = "Q1" *(" " resource "=" used "/" limit)
 *   resource = "STORAGE" / "MESSAGE" / "X-ANNOTATION-STORAGE"
 *              / "X-NUM-FOLDERS"
 *   used     = 1*DIGIT                  ; bytes or a count, >= 0
 *   limit    = 1*DIGIT / "-"            ; KiB or a count; "-" unlimited
 *
 *   e.g. "Q1 STORAGE=5242880/10240 MESSAGE=42/- X-ANNOTATION-STORAGE=0/-
 *         X-NUM-FOLDERS=3/-"            (one line)
 *
 * We always write every resource.  On reading, a resource that is absent
 * has usage 0 and no limit, so a later version may add resources; a
 * resource listed twice, an unknown name, a number out of range or any
 * stray byte is ERR_CORRUPT.  The leading "Q<n>" carries the version: a
 * value with n > 1 was written by a newer server and is refused with
 * ERR_DB_BADFORMAT rather than misread.  Values are at most
 * QUOTA_VALUE_MAX bytes.
 *
 * LOCKING
 *
 * A usage update is a read-modify-write inside one cyrusdb transaction
 * begun with a locking fetch, so two processes delivering to the same
 * root serialise on it and neither update is lost.  Plain reads take no
 * lock and see the last committed value.
 */

#include "config.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/cyrusdb.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/util.h"
#include "lib/xmalloc.h"

#include "imap/quota.h"
#include "imap/userdb.h"

#define QUOTA_VALUE_MAX 1024
#define QUOTA_VERSION 1

static const char *const cyrus_names[QUOTA_NUMRESOURCES] = {
    "STORAGE", "MESSAGE", "X-ANNOTATION-STORAGE", "X-NUM-FOLDERS"
};
static const char *const rfc_names[QUOTA_NUMRESOURCES] = {
    "STORAGE", "MESSAGE", "ANNOTATION-STORAGE", "MAILBOX"
};

/* The open database, the file it came from and the process that opened
 * it (a forked child must not use its parent's handle). */
static struct db *qdb;
static char *qdb_path;
static pid_t qdb_pid;

void quota_init(struct quota *q, const char *root)
{
    int res;

    memset(q, 0, sizeof(*q));
    q->root = root ? xstrdup(root) : NULL;
    for (res = 0; res < QUOTA_NUMRESOURCES; res++)
        q->limits[res] = QUOTA_UNLIMITED;
}

void quota_fini(struct quota *q)
{
    if (!q)
        return;
    free(q->root);
    q->root = NULL;
}

const char *quota_resource_name(enum quota_resource res)
{
    return (unsigned)res < QUOTA_NUMRESOURCES ? cyrus_names[res] : NULL;
}

const char *quota_resource_rfcname(enum quota_resource res)
{
    return (unsigned)res < QUOTA_NUMRESOURCES ? rfc_names[res] : NULL;
}

int quota_resource_lookup(const char *name, enum quota_resource *res_r)
{
    int res;

    if (!name)
        return ERR_NOTFOUND;
    for (res = 0; res < QUOTA_NUMRESOURCES; res++) {
        if (!util_strcasecmp_ascii(name, cyrus_names[res])
            || !util_strcasecmp_ascii(name, rfc_names[res])) {
            *res_r = (enum quota_resource)res;
            return 0;
        }
    }
    return ERR_NOTFOUND;
}

/* Is the resource measured in bytes with its limit in KiB? */
static int is_kib_resource(int res)
{
    return res == QUOTA_STORAGE || res == QUOTA_ANNOTSTORAGE;
}

/* ---- value encoding ---- */

void quota_encode(const struct quota *q, struct buf *out)
{
    int res;

    buf_printf(out, "Q%d", QUOTA_VERSION);
    for (res = 0; res < QUOTA_NUMRESOURCES; res++) {
        buf_printf(out, " %s=%lld/", cyrus_names[res],
                   (long long)q->useds[res]);
        if (q->limits[res] < 0)
            buf_putc(out, '-');
        else
            buf_printf(out, "%lld", (long long)q->limits[res]);
    }
}

/* Parse a decimal at *p (up to `end`) no greater than `max`. */
static int decode_number(const char **p, const char *end, int64_t max,
                         int64_t *val_r)
{
    const char *s = *p;
    uint64_t v = 0;

    if (s >= end || *s < '0' || *s > '9')
        return ERR_CORRUPT;
    for (; s < end && *s >= '0' && *s <= '9'; s++) {
        v = v * 10 + (uint64_t)(*s - '0');
        if (v > (uint64_t)max)
            return ERR_CORRUPT;
    }
    *val_r = (int64_t)v;
    *p = s;
    return 0;
}

/* Parse one " NAME=used/limit" item at *p into q; `seen` marks
 * resources already read. */
static int decode_item(struct quota *q, const char **p, const char *end,
                       unsigned *seen)
{
    const char *s = *p, *eq;
    int res;
    int r;

    if (s >= end || *s++ != ' ')
        return ERR_CORRUPT;
    eq = memchr(s, '=', (size_t)(end - s));
    if (!eq)
        return ERR_CORRUPT;
    for (res = 0; res < QUOTA_NUMRESOURCES; res++) {
        if (strlen(cyrus_names[res]) == (size_t)(eq - s)
            && !memcmp(cyrus_names[res], s, (size_t)(eq - s)))
            break;
    }
    if (res == QUOTA_NUMRESOURCES || (*seen & (1u << res)))
        return ERR_CORRUPT;
    *seen |= 1u << res;

    s = eq + 1;
    r = decode_number(&s, end, INT64_MAX, &q->useds[res]);
    if (r)
        return r;
    if (s >= end || *s++ != '/')
        return ERR_CORRUPT;
    if (s < end && *s == '-') {
        q->limits[res] = QUOTA_UNLIMITED;
        s++;
    }
    else {
        r = decode_number(&s, end, QUOTA_LIMIT_MAX, &q->limits[res]);
        if (r)
            return r;
    }
    *p = s;
    return 0;
}

int quota_decode(struct quota *q, const char *data, size_t len)
{
    const char *p = data, *end = data + len;
    unsigned seen = 0;
    int64_t version;
    int res;
    int r;

    for (res = 0; res < QUOTA_NUMRESOURCES; res++) {
        q->useds[res] = 0;
        q->limits[res] = QUOTA_UNLIMITED;
    }
    if (!data || len < 2 || len > QUOTA_VALUE_MAX || *p++ != 'Q')
        return ERR_CORRUPT;
    r = decode_number(&p, end, INT_MAX, &version);
    if (r)
        return r;
    if (version > QUOTA_VERSION)
        return ERR_DB_BADFORMAT;
    if (version < 1)
        return ERR_CORRUPT;

    while (p < end) {
        r = decode_item(q, &p, end, &seen);
        if (r)
            return r;
    }
    return 0;
}

/* ---- the database ---- */

/* Open the quota database (again, if the configured file changed or we
 * are a forked child).  Returns 0 or a database error (logged). */
static int open_db(void)
{
    struct buf path = BUF_INITIALIZER;
    const char *backend = config_getstring(IMAPOPT_QUOTA_DB);
    int r;

    r = userdb_system_path(IMAPOPT_QUOTA_DB_PATH, "quotas.db", &path);
    if (r)
        goto done;
    if (qdb && qdb_pid != getpid()) {
        /* The parent's handle: leave it to the parent. */
        qdb = NULL;
    }
    if (qdb && !strcmp(qdb_path, buf_cstring(&path)))
        goto done;
    quota_close();

    r = userdb_mkparents(buf_cstring(&path));
    if (!r) {
        r = cyrusdb_open(backend, buf_cstring(&path),
                         CYRUSDB_CREATE | CYRUSDB_MBOXSORT, &qdb);
    }
    if (r) {
        xsyslog(LOG_ERR, "quota db open failed", "path=%s error=%s",
                buf_cstring(&path), error_message(r));
        qdb = NULL;
        goto done;
    }
    free(qdb_path);
    qdb_path = buf_release(&path);
    qdb_pid = getpid();

done:
    buf_free(&path);
    return r;
}

void quota_close(void)
{
    if (qdb && qdb_pid == getpid())
        cyrusdb_close(qdb);
    qdb = NULL;
    free(qdb_path);
    qdb_path = NULL;
}

/* Is `root` a name we store?  Any byte but controls and '/', no leading
 * '.', at most QUOTA_ROOT_MAX bytes. */
static int root_ok(const char *root)
{
    size_t len, i;

    if (!root)
        return 0;
    len = strlen(root);
    if (!len || len > QUOTA_ROOT_MAX || root[0] == '.')
        return 0;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)root[i];

        if (c < 0x20 || c == 0x7f || c == '/')
            return 0;
    }
    return 1;
}

/* Decode a fetched value, logging corruption. */
static int decode_logged(struct quota *q, const char *data, size_t len)
{
    int r = quota_decode(q, data, len);

    if (r) {
        xsyslog(LOG_ERR, "quota record unreadable", "root=%s error=%s",
                log_escape(q->root, 0), error_message(r));
    }
    return r;
}

int quota_read(const char *root, struct quota *q, struct txn **tid,
               int wrlock)
{
    const char *data = NULL;
    size_t len = 0;
    int r;

    quota_init(q, root);
    if (!root_ok(root) || (wrlock && !tid))
        return ERR_INVALID;
    r = open_db();
    if (r)
        return r;

    if (wrlock)
        r = cyrusdb_fetchlock(qdb, root, strlen(root), &data, &len, tid);
    else
        r = cyrusdb_fetch(qdb, root, strlen(root), &data, &len, tid);
    if (r == ERR_NOTFOUND)
        return ERR_QUOTA_ROOT_NONEXISTENT;
    if (r)
        return r;
    return decode_logged(q, data, len);
}

int quota_write(const struct quota *q, struct txn **tid)
{
    struct buf val = BUF_INITIALIZER;
    int res;
    int r;

    if (!q || !root_ok(q->root))
        return ERR_INVALID;
    for (res = 0; res < QUOTA_NUMRESOURCES; res++) {
        if (q->useds[res] < 0 || q->limits[res] < QUOTA_UNLIMITED
            || q->limits[res] > QUOTA_LIMIT_MAX)
            return ERR_INVALID;
    }
    r = open_db();
    if (r)
        return r;

    quota_encode(q, &val);
    r = cyrusdb_store(qdb, q->root, strlen(q->root), val.s, val.len, tid);
    if (r) {
        xsyslog(LOG_ERR, "quota write failed", "root=%s error=%s",
                log_escape(q->root, 0), error_message(r));
    }
    buf_free(&val);
    return r;
}

int quota_commit(struct txn **tid)
{
    int r = 0;

    if (!tid || !*tid)
        return 0;
    r = qdb ? cyrusdb_commit(qdb, *tid) : ERR_DB_TXN;
    *tid = NULL;
    return r;
}

int quota_abort(struct txn **tid)
{
    int r = 0;

    if (!tid || !*tid)
        return 0;
    r = qdb ? cyrusdb_abort(qdb, *tid) : ERR_DB_TXN;
    *tid = NULL;
    return r;
}

/* Add `delta` to *used, clamping at 0 and INT64_MAX; returns 1 when it
 * had to clamp below 0. */
static int add_usage(int64_t *used, int64_t delta)
{
    if (delta < 0 && *used < -delta) {
        *used = 0;
        return 1;
    }
    if (delta > 0 && *used > INT64_MAX - delta)
        *used = INT64_MAX;
    else
        *used += delta;
    return 0;
}

int quota_update_usage(const char *root,
                       const int64_t deltas[QUOTA_NUMRESOURCES],
                       struct txn **tid)
{
    struct txn *mytid = NULL;
    struct txn **t = tid ? tid : &mytid;
    struct quota q;
    int res;
    int r;

    r = quota_read(root, &q, t, 1);
    if (r)
        goto done;
    for (res = 0; res < QUOTA_NUMRESOURCES; res++) {
        if (add_usage(&q.useds[res], deltas[res])) {
            xsyslog(LOG_WARNING, "quota usage would go negative",
                    "root=%s resource=%s delta=%lld",
                    log_escape(root, 0), cyrus_names[res],
                    (long long)deltas[res]);
        }
    }
    r = quota_write(&q, t);

done:
    if (!tid) {
        if (r)
            quota_abort(&mytid);
        else
            r = quota_commit(&mytid);
    }
    quota_fini(&q);
    return r;
}

int quota_check(const struct quota *q,
                const int64_t deltas[QUOTA_NUMRESOURCES])
{
    int res;

    for (res = 0; res < QUOTA_NUMRESOURCES; res++) {
        int64_t d = deltas ? deltas[res] : 0;
        int64_t lim = q->limits[res];

        if (lim < 0 || d < 0)
            continue;
        if (is_kib_resource(res))
            lim *= 1024;
        /* used + d > lim, written so that nothing overflows */
        if (d > lim - q->useds[res])
            return ERR_QUOTA_EXCEEDED;
    }
    return 0;
}

int quota_find_root(const char *mboxname, char **root_r)
{
    struct buf name = BUF_INITIALIZER;
    const char *bang, *data;
    size_t start, len;
    int r;

    *root_r = NULL;
    if (!root_ok(mboxname))
        return ERR_INVALID;
    r = open_db();
    if (r)
        return r;

    /* Try the name, then each parent, then the domain root. */
    buf_setcstr(&name, mboxname);
    bang = strchr(mboxname, '!');
    start = bang ? (size_t)(bang - mboxname) + 1 : 0;
    for (;;) {
        char *dot;

        r = cyrusdb_fetch(qdb, name.s, name.len, &data, &len, NULL);
        if (r != ERR_NOTFOUND)
            break;
        if (name.len <= start) {
            r = ERR_QUOTA_ROOT_NONEXISTENT;
            break;
        }
        dot = memrchr(name.s + start, '.', name.len - start);
        buf_truncate(&name, dot ? (size_t)(dot - name.s) : start);
        if (!name.len) {
            r = ERR_QUOTA_ROOT_NONEXISTENT;
            break;
        }
    }
    if (!r)
        *root_r = buf_release(&name);
    buf_free(&name);
    return r;
}

int quota_delete_root(const char *root, struct txn **tid)
{
    int r;

    if (!root_ok(root))
        return ERR_INVALID;
    r = open_db();
    if (r)
        return r;
    r = cyrusdb_delete(qdb, root, strlen(root), tid, 0);
    if (r == ERR_NOTFOUND)
        return ERR_QUOTA_ROOT_NONEXISTENT;
    if (!r)
        xsyslog(LOG_NOTICE, "quota root deleted", "root=%s",
                log_escape(root, 0));
    return r;
}

struct foreach_rock {
    quota_foreach_cb *cb;
    void *rock;
};

static int foreach_one(void *rock, const char *key, size_t keylen,
                       const char *data, size_t datalen)
{
    struct foreach_rock *fr = rock;
    struct quota q;
    int r;

    quota_init(&q, NULL);
    q.root = xstrndup(key, keylen);
    r = decode_logged(&q, data, datalen);
    if (!r)
        r = fr->cb(&q, fr->rock);
    else
        r = 0;
    quota_fini(&q);
    return r;
}

int quota_foreach(const char *prefix, quota_foreach_cb *cb, void *rock,
                  struct txn **tid)
{
    struct foreach_rock fr = { cb, rock };
    int r;

    r = open_db();
    if (r)
        return r;
    return cyrusdb_foreach(qdb, prefix ? prefix : "",
                           prefix ? strlen(prefix) : 0, NULL,
                           foreach_one, &fr, tid);
}

/* ---- warnings ---- */

int quota_usage_percent(const struct quota *q, enum quota_resource res)
{
    long double lim, pct;

    if ((unsigned)res >= QUOTA_NUMRESOURCES || q->limits[res] < 0)
        return -1;
    lim = (long double)q->limits[res];
    if (is_kib_resource(res))
        lim *= 1024;
    if (lim <= 0)
        return q->useds[res] > 0 ? INT_MAX : 0;
    pct = (long double)q->useds[res] * 100 / lim;
    return pct >= (long double)INT_MAX ? INT_MAX : (int)pct;
}

/* quotawarnpercent, or the older quotawarn when it is not set. */
static int64_t warn_percent(void)
{
    return config_getint(config_isset(IMAPOPT_QUOTAWARNPERCENT)
                         ? IMAPOPT_QUOTAWARNPERCENT : IMAPOPT_QUOTAWARN);
}

int quota_should_warn(const struct quota *q, enum quota_resource res)
{
    int64_t threshold = 0, lim, remaining;
    int pct = quota_usage_percent(q, res);

    if (pct < 0 || pct <= warn_percent())
        return 0;
    if (res == QUOTA_STORAGE)
        threshold = config_getint(config_isset(IMAPOPT_QUOTAWARNSIZE)
                                  ? IMAPOPT_QUOTAWARNSIZE
                                  : IMAPOPT_QUOTAWARNKB);
    else if (res == QUOTA_MESSAGE)
        threshold = config_getint(IMAPOPT_QUOTAWARNMSG);
    if (threshold <= 0)
        return 1;

    /* Remaining room in the limit's unit (KiB for storage). */
    lim = q->limits[res];
    remaining = is_kib_resource(res) ? lim - q->useds[res] / 1024
                                     : lim - q->useds[res];
    return lim < threshold || remaining < threshold;
}

int quota_warning_check(const char *mboxname, struct quota_warning *w_r)
{
    static const enum quota_resource order[] = {
        QUOTA_STORAGE, QUOTA_MESSAGE, QUOTA_NUMFOLDERS, QUOTA_ANNOTSTORAGE
    };
    struct quota q;
    char *root = NULL;
    size_t i;
    int r;

    memset(w_r, 0, sizeof(*w_r));
    quota_init(&q, NULL);
    r = quota_find_root(mboxname, &root);
    if (r == ERR_QUOTA_ROOT_NONEXISTENT)
        r = ERR_NOTFOUND;
    if (!r) {
        quota_fini(&q);
        r = quota_read(root, &q, NULL, 0);
    }
    if (r == ERR_QUOTA_ROOT_NONEXISTENT)
        r = ERR_NOTFOUND;

    /* The fullest resource that is due a warning speaks for the root. */
    w_r->percent = -1;
    for (i = 0; !r && i < sizeof(order) / sizeof(order[0]); i++) {
        int pct = quota_usage_percent(&q, order[i]);

        if (quota_should_warn(&q, order[i]) && pct > w_r->percent) {
            w_r->res = order[i];
            w_r->percent = pct;
        }
    }
    if (!r && w_r->percent < 0)
        r = ERR_NOTFOUND;
    if (!r) {
        w_r->root = root;
        root = NULL;
        w_r->used = q.useds[w_r->res];
        w_r->limit = q.limits[w_r->res];
    }
    else {
        memset(w_r, 0, sizeof(*w_r));
    }
    free(root);
    quota_fini(&q);
    return r;
}

void quota_warning_fini(struct quota_warning *w)
{
    if (!w)
        return;
    free(w->root);
    memset(w, 0, sizeof(*w));
}

/* Duplicate delivery suppression: remembers which message (by
 * Message-ID) went to which recipient or mailbox, and when. */
/* Columba is free software; see COPYING for the licence. */

/*
 * THE DUPLICATE DATABASE ("deliver.db")
 *
 * Backend duplicate_db (default twoskip), file duplicate_db_path or
 * {configdirectory}/deliver.db.  One record per mark:
 *
 *   key   = id NUL to NUL date        (date may be empty; the key always
 *                                      holds exactly two NULs)
 *   value = "1" SP mark SP uid        (ASCII decimals: version 1, the
 *                                      mark time in seconds since the
 *                                      epoch, the UID or 0)
 *
 * Because the id comes first, all marks of one message sort together,
 * which lets duplicate_foreach() look one message up by prefix.  A value
 * with a version above 1 was written by a newer server: it counts as
 * marked (so we do not deliver twice) and prune keeps it.  Any other
 * malformed value is logged, treated as unmarked, and removed by prune.
 *
 * Whether delivery consults this database is decided by the caller
 * (duplicatesuppression); Sieve's vacation and redirect tracking use it
 * either way.
 */

#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/cyrusdb.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#include "imap/duplicate.h"
#include "imap/userdb.h"

#define DUPLICATE_VERSION 1
#define DUPLICATE_VALUE_MAX 64
/* Keys deleted per transaction while pruning, so delivery is never
 * kept waiting for the whole walk. */
#define PRUNE_BATCH 256

static struct db *ddb;
static char *ddb_path;
static pid_t ddb_pid;

/* Open the database (again if the configured file changed or we are a
 * forked child).  Returns 0 or a database error (logged). */
static int open_db(void)
{
    struct buf path = BUF_INITIALIZER;
    int r;

    r = userdb_system_path(IMAPOPT_DUPLICATE_DB_PATH, "deliver.db", &path);
    if (r)
        goto done;
    if (ddb && ddb_pid != getpid())
        ddb = NULL;    /* the parent's handle: leave it to the parent */
    if (ddb && !strcmp(ddb_path, buf_cstring(&path)))
        goto done;
    duplicate_close();

    r = userdb_mkparents(buf_cstring(&path));
    if (!r) {
        r = cyrusdb_open(config_getstring(IMAPOPT_DUPLICATE_DB),
                         buf_cstring(&path), CYRUSDB_CREATE, &ddb);
    }
    if (r) {
        xsyslog(LOG_ERR, "duplicate db open failed", "path=%s error=%s",
                buf_cstring(&path), error_message(r));
        ddb = NULL;
        goto done;
    }
    free(ddb_path);
    ddb_path = buf_release(&path);
    ddb_pid = getpid();

done:
    buf_free(&path);
    return r;
}

void duplicate_close(void)
{
    if (ddb && ddb_pid == getpid())
        cyrusdb_close(ddb);
    ddb = NULL;
    free(ddb_path);
    ddb_path = NULL;
}

/* Build the key; ERR_INVALID for an empty id or an over-long part. */
static int make_key(const struct duplicate_key *key, struct buf *out)
{
    const char *date;
    size_t idlen, tolen, datelen;

    if (!key || !key->id || !key->to)
        return ERR_INVALID;
    date = key->date ? key->date : "";
    idlen = strlen(key->id);
    tolen = strlen(key->to);
    datelen = strlen(date);
    if (!idlen || idlen > DUPLICATE_ID_MAX || tolen > DUPLICATE_TO_MAX
        || datelen > DUPLICATE_DATE_MAX)
        return ERR_INVALID;

    buf_reset(out);
    buf_appendmap(out, key->id, idlen);
    buf_putc(out, '\0');
    buf_appendmap(out, key->to, tolen);
    buf_putc(out, '\0');
    buf_appendmap(out, date, datelen);
    return 0;
}

/* Parse one decimal at *p; `last` says whether it ends the value. */
static int take_number(const char **p, const char *end, uint64_t max,
                       int last, uint64_t *val_r)
{
    const char *s = *p;
    uint64_t v = 0;

    if (s >= end || *s < '0' || *s > '9')
        return ERR_CORRUPT;
    for (; s < end && *s >= '0' && *s <= '9'; s++) {
        v = v * 10 + (uint64_t)(*s - '0');
        if (v > max)
            return ERR_CORRUPT;
    }
    if (last ? s != end : (s >= end || *s++ != ' '))
        return ERR_CORRUPT;
    *val_r = v;
    *p = s;
    return 0;
}

/* Decode a value.  ERR_DB_BADFORMAT for a newer version (then *mark_r is
 * set to 1 so that it still counts as marked), ERR_CORRUPT otherwise. */
static int decode_value(const char *data, size_t len, time_t *mark_r,
                        uint32_t *uid_r)
{
    const char *p = data, *end = data + len;
    uint64_t version, mark = 0, uid = 0;
    int r;

    *mark_r = 0;
    *uid_r = 0;
    if (len > DUPLICATE_VALUE_MAX)
        return ERR_CORRUPT;
    /* The version decides how to read the rest, so look at it alone. */
    for (version = 0; p < end && *p >= '0' && *p <= '9'; p++) {
        version = version * 10 + (uint64_t)(*p - '0');
        if (version > DUPLICATE_VERSION) {
            *mark_r = 1;
            return ERR_DB_BADFORMAT;
        }
    }
    if (version != DUPLICATE_VERSION || p >= end || *p++ != ' ')
        return ERR_CORRUPT;
    r = take_number(&p, end, INT64_MAX, 0, &mark);
    if (!r)
        r = take_number(&p, end, UINT32_MAX, 1, &uid);
    if (r)
        return r;
    *mark_r = (time_t)mark;
    *uid_r = (uint32_t)uid;
    return 0;
}

time_t duplicate_check(const struct duplicate_key *key, uint32_t *uid_r)
{
    struct buf k = BUF_INITIALIZER;
    const char *data;
    size_t len;
    time_t mark = 0;
    uint32_t uid = 0;
    int r;

    if (uid_r)
        *uid_r = 0;
    r = make_key(key, &k);
    if (!r)
        r = open_db();
    if (!r)
        r = cyrusdb_fetch(ddb, k.s, k.len, &data, &len, NULL);
    if (r)
        goto done;

    r = decode_value(data, len, &mark, &uid);
    if (r == ERR_CORRUPT) {
        xsyslog(LOG_ERR, "duplicate record unreadable", "id=%s to=%s",
                log_escape(key->id, 0), log_escape(key->to, 0));
    }
    if (uid_r)
        *uid_r = uid;

done:
    if (r && r != ERR_NOTFOUND && r != ERR_INVALID
        && r != ERR_CORRUPT && r != ERR_DB_BADFORMAT) {
        xsyslog(LOG_ERR, "duplicate check failed", "id=%s error=%s",
                log_escape(key->id, 0), error_message(r));
    }
    buf_free(&k);
    return mark;
}

int duplicate_mark(const struct duplicate_key *key, time_t mark,
                   uint32_t uid)
{
    struct buf k = BUF_INITIALIZER, val = BUF_INITIALIZER;
    int r;

    r = make_key(key, &k);
    if (r)
        goto done;
    r = open_db();
    if (r)
        goto done;

    buf_printf(&val, "%d %lld %u", DUPLICATE_VERSION,
               (long long)(mark < 0 ? 0 : mark), uid);
    r = cyrusdb_store(ddb, k.s, k.len, val.s, val.len, NULL);
    if (r) {
        xsyslog(LOG_ERR, "duplicate mark failed", "id=%s error=%s",
                log_escape(key->id, 0), error_message(r));
    }

done:
    buf_free(&k);
    buf_free(&val);
    return r;
}

/* Delete the `n` keys of `batch` in one transaction. */
static int delete_batch(struct buf *batch, size_t n)
{
    struct txn *tid = NULL;
    size_t i;
    int r = 0;

    for (i = 0; i < n && !r; i++)
        r = cyrusdb_delete(ddb, batch[i].s, batch[i].len, &tid, 1);
    if (tid) {
        if (r)
            cyrusdb_abort(ddb, tid);
        else
            r = cyrusdb_commit(ddb, tid);
    }
    return r;
}

int duplicate_prune(int days, time_t now, unsigned long *deleted_r,
                    unsigned long *kept_r)
{
    struct buf last = BUF_INITIALIZER;
    struct buf batch[PRUNE_BATCH];
    unsigned long deleted = 0, kept = 0;
    size_t n = 0, i;
    time_t cutoff;
    int r;

    memset(batch, 0, sizeof(batch));
    if (!now)
        now = time(NULL);
    cutoff = now - (time_t)(days < 0 ? 0 : days) * 86400;
    r = open_db();

    /* Walk without a lock, collecting expired keys; delete them a batch
     * at a time so deliveries can get in between. */
    while (!r) {
        const char *k, *data;
        size_t klen, dlen;
        time_t mark;
        uint32_t uid;
        int dr;

        r = cyrusdb_fetchnext(ddb, last.s, last.len, &k, &klen, &data, &dlen,
                              NULL);
        if (r)
            break;
        buf_setmap(&last, k, klen);
        dr = decode_value(data, dlen, &mark, &uid);
        if (dr == ERR_DB_BADFORMAT || (!dr && mark >= cutoff)) {
            kept++;
            continue;
        }
        buf_setmap(&batch[n++], k, klen);
        if (n == PRUNE_BATCH) {
            r = delete_batch(batch, n);
            deleted += r ? 0 : n;
            n = 0;
        }
    }
    if (r == ERR_NOTFOUND)
        r = 0;
    if (!r && n) {
        r = delete_batch(batch, n);
        deleted += r ? 0 : n;
    }
    if (r) {
        xsyslog(LOG_ERR, "duplicate prune failed", "error=%s",
                error_message(r));
    }
    else {
        xsyslog(LOG_INFO, "duplicate prune done",
                "deleted=%lu kept=%lu days=%d", deleted, kept, days);
    }

    for (i = 0; i < PRUNE_BATCH; i++)
        buf_free(&batch[i]);
    buf_free(&last);
    if (deleted_r)
        *deleted_r = deleted;
    if (kept_r)
        *kept_r = kept;
    return r;
}

struct foreach_rock {
    duplicate_foreach_cb *cb;
    void *rock;
    struct buf copy;
};

static int foreach_one(void *rock, const char *key, size_t keylen,
                       const char *data, size_t datalen)
{
    struct foreach_rock *fr = rock;
    struct duplicate_key dk;
    const char *nul1, *nul2;
    time_t mark;
    uint32_t uid;

    /* Keys without both NULs were not written by us: skip them. */
    nul1 = memchr(key, '\0', keylen);
    nul2 = nul1 ? memchr(nul1 + 1, '\0', keylen - (size_t)(nul1 - key) - 1)
                : NULL;
    if (!nul2)
        return 0;
    if (decode_value(data, datalen, &mark, &uid) == ERR_CORRUPT)
        return 0;

    /* One copy with its NULs gives three C strings. */
    buf_setmap(&fr->copy, key, keylen);
    buf_cstring(&fr->copy);
    dk.id = fr->copy.s;
    dk.to = fr->copy.s + (nul1 - key) + 1;
    dk.date = fr->copy.s + (nul2 - key) + 1;
    return fr->cb(&dk, mark, uid, fr->rock);
}

int duplicate_foreach(const char *idprefix, duplicate_foreach_cb *cb,
                      void *rock)
{
    struct foreach_rock fr = { cb, rock, BUF_INITIALIZER };
    int r;

    r = open_db();
    if (!r) {
        r = cyrusdb_foreach(ddb, idprefix ? idprefix : "",
                            idprefix ? strlen(idprefix) : 0, NULL,
                            foreach_one, &fr, NULL);
    }
    buf_free(&fr.copy);
    return r;
}

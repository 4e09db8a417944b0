/* Seen state: which messages of each mailbox a user has read, kept in a
 * per-user database ({configdirectory}/user/<h>/<user>.seen). */
/* Columba is free software; see COPYING for the licence. */

/*
 * THE SEEN DATABASE
 *
 * One file per user (path in imap/userdb.h, suffix ".seen", backend
 * seenstate_db, default twoskip).  One record per mailbox the user has
 * looked at, keyed by the mailbox's unique id (so a rename keeps the
 * seen state), raw byte order.
 *
 * VALUE FORMAT, version 1: one line of ASCII:
 *
 *   value = "1" SP lastread SP lastuid SP lastchange SP seenuids
 *
 * lastread and lastchange are seconds since the epoch (>= 0), lastuid a
 * 32-bit UID, seenuids a sequence set without "*" (imap/seqset.h), empty
 * when nothing is seen: "1 1700000000 12 1700000000 1:5,7,9:12".  A
 * leading version above 1 is ERR_DB_BADFORMAT (a newer server wrote it);
 * anything else malformed is ERR_CORRUPT.  seen_write() checks the set
 * fully; reading only checks its bytes, since a large mailbox's set is
 * long and parsing it on every SELECT would cost more than it saves.
 */

#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/cyrusdb.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/util.h"
#include "lib/xmalloc.h"

#include "imap/seen.h"
#include "imap/seqset.h"
#include "imap/userdb.h"

#define SEEN_VERSION 1

struct seen {
    char *userid;
    struct db *db;
    struct txn *tid;        /* held between seen_lockread and write */
};

void seen_freedata(struct seendata *sd)
{
    if (!sd)
        return;
    free(sd->seenuids);
    memset(sd, 0, sizeof(*sd));
}

static const char *backend(void)
{
    return config_getstring(IMAPOPT_SEENSTATE_DB);
}

int seen_open(const char *userid, int flags, struct seen **seendb_r)
{
    struct buf path = BUF_INITIALIZER;
    struct seen *s = NULL;
    int r;

    *seendb_r = NULL;
    r = userdb_path(userid, ".seen", &path);
    if (r)
        goto done;
    if (flags & SEEN_CREATE) {
        r = userdb_mkparents(buf_cstring(&path));
        if (r)
            goto done;
    }

    s = xzmalloc(sizeof(*s));
    s->userid = xstrdup(userid);
    r = cyrusdb_open(backend(), buf_cstring(&path),
                     (flags & SEEN_CREATE) ? CYRUSDB_CREATE : 0, &s->db);
    if (r) {
        if (r != ERR_NOTFOUND) {
            xsyslog(LOG_ERR, "seen db open failed", "user=%s path=%s error=%s",
                    log_escape(userid, 0), buf_cstring(&path),
                    error_message(r));
        }
        goto done;
    }
    *seendb_r = s;
    s = NULL;

done:
    if (s) {
        free(s->userid);
        free(s);
    }
    buf_free(&path);
    return r;
}

int seen_unlock(struct seen *seendb)
{
    int r = 0;

    if (seendb && seendb->tid) {
        r = cyrusdb_commit(seendb->db, seendb->tid);
        seendb->tid = NULL;
    }
    return r;
}

int seen_close(struct seen **seendb)
{
    int r;

    if (!seendb || !*seendb)
        return 0;
    r = seen_unlock(*seendb);
    cyrusdb_close((*seendb)->db);
    free((*seendb)->userid);
    free(*seendb);
    *seendb = NULL;
    return r;
}

/* Is `uniqueid` a key we accept? */
static int uniqueid_ok(const char *uniqueid)
{
    size_t len = uniqueid ? strlen(uniqueid) : 0;

    return len > 0 && len <= SEEN_UNIQUEID_MAX;
}

/* ---- value encoding ---- */

/* Parse an unsigned decimal ending at a space; advance *p past it. */
static int take_number(const char **p, const char *end, uint64_t max,
                       uint64_t *val_r)
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
    if (s >= end || *s != ' ')
        return ERR_CORRUPT;
    *val_r = v;
    *p = s + 1;
    return 0;
}

/* Decode a stored value into `sd` (zeroed first). */
static int decode_value(const char *data, size_t len, struct seendata *sd)
{
    const char *p = data, *end = data + len, *q;
    uint64_t version, lastread, lastuid, lastchange;
    int r;

    seen_freedata(sd);
    if (len > SEEN_SEQ_MAX + 64)
        return ERR_CORRUPT;
    r = take_number(&p, end, UINT32_MAX, &version);
    if (r)
        return r;
    if (version > SEEN_VERSION)
        return ERR_DB_BADFORMAT;
    if (version < 1)
        return ERR_CORRUPT;
    r = take_number(&p, end, INT64_MAX, &lastread);
    if (!r)
        r = take_number(&p, end, UINT32_MAX, &lastuid);
    if (!r)
        r = take_number(&p, end, INT64_MAX, &lastchange);
    if (r)
        return r;
    for (q = p; q < end; q++) {
        if ((*q < '0' || *q > '9') && *q != ':' && *q != ',')
            return ERR_CORRUPT;
    }

    sd->lastread = (time_t)lastread;
    sd->lastuid = (uint32_t)lastuid;
    sd->lastchange = (time_t)lastchange;
    sd->seenuids = xstrndup(p, (size_t)(end - p));
    return 0;
}

static void encode_value(const struct seendata *sd, struct buf *out)
{
    buf_printf(out, "%d %lld %u %lld %s", SEEN_VERSION,
               (long long)(sd->lastread < 0 ? 0 : sd->lastread),
               sd->lastuid,
               (long long)(sd->lastchange < 0 ? 0 : sd->lastchange),
               sd->seenuids ? sd->seenuids : "");
}

/* ---- records ---- */

/* Fetch (with the write lock when `lock`) and decode. */
static int read_record(struct seen *seendb, const char *uniqueid,
                       struct seendata *sd, int lock)
{
    const char *data = NULL;
    size_t len = 0;
    int r;

    seen_freedata(sd);
    if (!seendb || !uniqueid_ok(uniqueid))
        return ERR_INVALID;

    if (lock) {
        r = cyrusdb_fetchlock(seendb->db, uniqueid, strlen(uniqueid),
                              &data, &len, &seendb->tid);
    }
    else {
        r = cyrusdb_fetch(seendb->db, uniqueid, strlen(uniqueid), &data,
                          &len, seendb->tid ? &seendb->tid : NULL);
    }
    if (r == ERR_NOTFOUND) {
        sd->seenuids = xstrdup("");
        return 0;
    }
    if (r)
        return r;

    r = decode_value(data, len, sd);
    if (r) {
        xsyslog(LOG_ERR, "seen record unreadable",
                "user=%s uniqueid=%s error=%s",
                log_escape(seendb->userid, 0), log_escape(uniqueid, 0),
                error_message(r));
        seen_freedata(sd);
    }
    return r;
}

int seen_read(struct seen *seendb, const char *uniqueid,
              struct seendata *sd)
{
    return read_record(seendb, uniqueid, sd, 0);
}

int seen_lockread(struct seen *seendb, const char *uniqueid,
                  struct seendata *sd)
{
    return read_record(seendb, uniqueid, sd, 1);
}

int seen_write(struct seen *seendb, const char *uniqueid,
               const struct seendata *sd)
{
    struct buf val = BUF_INITIALIZER;
    struct seqset set = SEQSET_INITIALIZER;
    const char *uids = sd->seenuids ? sd->seenuids : "";
    size_t ulen = strlen(uids);
    int r;

    if (!seendb || !uniqueid_ok(uniqueid) || ulen > SEEN_SEQ_MAX)
        return ERR_INVALID;
    r = seqset_parse(&set, uids, ulen, 0, SEQSET_NOSTAR | SEQSET_ALLOW_EMPTY);
    seqset_fini(&set);
    if (r)
        return ERR_INVALID;

    encode_value(sd, &val);
    r = cyrusdb_store(seendb->db, uniqueid, strlen(uniqueid), val.s, val.len,
                      seendb->tid ? &seendb->tid : NULL);
    if (r) {
        xsyslog(LOG_ERR, "seen write failed", "user=%s uniqueid=%s error=%s",
                log_escape(seendb->userid, 0), log_escape(uniqueid, 0),
                error_message(r));
        if (seendb->tid) {
            cyrusdb_abort(seendb->db, seendb->tid);
            seendb->tid = NULL;
        }
    }
    else {
        r = seen_unlock(seendb);
    }
    buf_free(&val);
    return r;
}

struct foreach_rock {
    struct seen *seendb;
    seen_foreach_cb *cb;
    void *rock;
};

static int foreach_one(void *rock, const char *key, size_t keylen,
                       const char *data, size_t datalen)
{
    struct foreach_rock *fr = rock;
    struct seendata sd = SEENDATA_INITIALIZER;
    char *uniqueid = xstrndup(key, keylen);
    int r;

    r = decode_value(data, datalen, &sd);
    if (r) {
        xsyslog(LOG_ERR, "seen record unreadable",
                "user=%s uniqueid=%s error=%s",
                log_escape(fr->seendb->userid, 0), log_escape(uniqueid, 0),
                error_message(r));
        r = 0;
    }
    else {
        r = fr->cb(uniqueid, &sd, fr->rock);
    }
    seen_freedata(&sd);
    free(uniqueid);
    return r;
}

int seen_foreach(struct seen *seendb, seen_foreach_cb *cb, void *rock)
{
    struct foreach_rock fr = { seendb, cb, rock };

    if (!seendb || !cb)
        return ERR_INVALID;
    return cyrusdb_foreach(seendb->db, "", 0, NULL, foreach_one, &fr,
                           seendb->tid ? &seendb->tid : NULL);
}

/* ---- whole-mailbox and whole-user operations ---- */

int seen_delete_mailbox(const char *userid, const char *uniqueid)
{
    struct seen *s = NULL;
    int r;

    if (!uniqueid_ok(uniqueid))
        return ERR_INVALID;
    r = seen_open(userid, 0, &s);
    if (r == ERR_NOTFOUND)
        return 0;
    if (r)
        return r;
    r = cyrusdb_delete(s->db, uniqueid, strlen(uniqueid), NULL, 1);
    seen_close(&s);
    return r;
}

struct copy_rock {
    struct db *to;
    struct txn **tid;
};

static int copy_one(void *rock, const char *key, size_t keylen,
                    const char *data, size_t datalen)
{
    struct copy_rock *cr = rock;

    return cyrusdb_store(cr->to, key, keylen, data, datalen, cr->tid);
}

int seen_rename_user(const char *olduser, const char *newuser)
{
    struct buf newpath = BUF_INITIALIZER;
    struct seen *from = NULL;
    struct db *to = NULL;
    struct txn *fromtid = NULL, *totid = NULL;
    struct copy_rock cr = { NULL, &totid };
    int r;

    r = userdb_path(newuser, ".seen", &newpath);
    if (r)
        goto done;
    r = seen_open(olduser, 0, &from);
    if (r == ERR_NOTFOUND) {
        r = 0;
        goto done;
    }
    if (r)
        goto done;
    if (userdb_exists(buf_cstring(&newpath))) {
        r = ERR_EXISTS;
        goto done;
    }

    r = userdb_mkparents(buf_cstring(&newpath));
    if (!r)
        r = cyrusdb_open(backend(), buf_cstring(&newpath), CYRUSDB_CREATE,
                         &to);
    if (r)
        goto done;
    cr.to = to;
    /* Hold the old database's lock so the copy is one snapshot. */
    r = cyrusdb_foreach(from->db, "", 0, NULL, copy_one, &cr, &fromtid);
    if (!r && totid)
        r = cyrusdb_commit(to, totid);
    else if (totid)
        cyrusdb_abort(to, totid);
    totid = NULL;

    if (!r) {
        xsyslog(LOG_NOTICE, "seen state copied", "user=%s newuser=%s",
                log_escape(olduser, 0), log_escape(newuser, 0));
    }

done:
    if (fromtid)
        cyrusdb_abort(from->db, fromtid);
    if (to)
        cyrusdb_close(to);
    if (r && to)
        cyrusdb_unlink(backend(), buf_cstring(&newpath), 0);
    seen_close(&from);
    buf_free(&newpath);
    return r;
}

int seen_delete_user(const char *userid)
{
    struct buf path = BUF_INITIALIZER;
    int r;

    r = userdb_path(userid, ".seen", &path);
    if (!r)
        r = userdb_remove(backend(), buf_cstring(&path));
    buf_free(&path);
    return r;
}

/* The sql cyrusdb backend: the same keys and values as every other
 * backend, kept in an embedded SQLite file or in a PostgreSQL table. */
/* Columba is free software; see COPYING for the licence. */

/*
 * Design
 * ======
 *
 * Engine.  imapd.conf's `sql_engine` picks the engine for every sql
 * database of the server: "sqlite" (also the default when unset) or
 * "pgsql".  The engines live in cyrusdb_sql_sqlite.c and
 * cyrusdb_sql_pg.c behind struct sql_engine (cyrusdb_sql_int.h); this
 * file holds what both share: transactions, key order, foreach, dump.
 *
 * Stored keys.  Each database is one table of (k, v) pairs, both binary
 * (SQLite BLOB, PostgreSQL bytea), k the primary key.  Both engines
 * order such keys bytewise with shorter first on a common prefix, which
 * is the raw order of lib/cyrusdb.h.  Mailbox order (CYRUSDB_MBOXSORT)
 * differs only in where '.' and '/' sort, so a mailbox-ordered database
 * stores each key through a byte-for-byte substitution that keeps
 * lengths and turns mailbox order into byte order:
 *
 *     NUL -> 0x00    '.' -> 0x01    '/' -> 0x02
 *     0x01..0x2d -> 0x03..0x2f      0x30..0xff unchanged
 *
 * The substitution is a bijection, so the stored key is both the sort
 * key and, decoded, the key; a prefix stays a prefix, so a prefix scan
 * is a range scan.  Which order a database uses is written next to its
 * table when it is created (SQLite: table `columba_meta`; PostgreSQL:
 * one row of the shared table `columba_meta`) and is the one used on
 * every later open, whatever the caller's flags say.
 *
 * Transactions.  A cyrusdb transaction is one SQL transaction on the
 * handle's own connection.  SQLite begins it with BEGIN IMMEDIATE, so
 * writers of one file serialise across processes while readers go on
 * reading the last commit (WAL).  PostgreSQL takes the table's
 * EXCLUSIVE lock, which blocks other writers but not readers.  An
 * operation without a transaction is one autocommitted statement.
 *
 * foreach.  Records are fetched in batches of SQL_BATCH and copied out,
 * so the callback may use the same handle.  Every write bumps db->gen;
 * when the callback wrote, the walk asks again for the first key after
 * the current one, so it sees the database as the callback left it.
 */

#include "config.h"

#include <stdio.h>
#include <string.h>

#include "lib/cyrusdb.h"
#include "lib/cyrusdb_sql.h"
#include "lib/cyrusdb_sql_int.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

/* A transaction handle: it only names the db it belongs to. */
struct txn {
    struct db *db;
};

extern const struct sql_engine sql_engine_sqlite;

/* ------------------------------------------------------------------
 * Mailbox-order key substitution.
 * ------------------------------------------------------------------ */

static unsigned char mbox_enc_byte(unsigned char c)
{
    if (c == '.')
        return 0x01;
    if (c == '/')
        return 0x02;
    if (c >= 0x01 && c <= 0x2d)
        return (unsigned char)(c + 2);
    return c;
}

static unsigned char mbox_dec_byte(unsigned char c)
{
    if (c == 0x01)
        return '.';
    if (c == 0x02)
        return '/';
    if (c >= 0x03 && c <= 0x2f)
        return (unsigned char)(c - 2);
    return c;
}

/* The stored form of `key` in this db, valid until the next encode. */
static const char *key_encode(struct db *db, const char *key, size_t len)
{
    size_t i;

    if (!db->is_mboxsort || !len)
        return len ? key : "";
    buf_setmap(&db->enc, key, len);
    for (i = 0; i < len; i++)
        db->enc.s[i] = (char)mbox_enc_byte((unsigned char)key[i]);
    return db->enc.s;
}

/* Turn a stored key back into the key, in place. */
static void key_decode(struct db *db, char *key, size_t len)
{
    size_t i;

    if (!db->is_mboxsort)
        return;
    for (i = 0; i < len; i++)
        key[i] = (char)mbox_dec_byte((unsigned char)key[i]);
}

void cyrusdb_sql_mbox_sortkey(const char *key, size_t len, struct buf *out)
{
    size_t i;

    buf_setmap(out, key, len);
    for (i = 0; i < len; i++)
        out->s[i] = (char)mbox_enc_byte((unsigned char)key[i]);
}

/* ------------------------------------------------------------------
 * Batches.
 * ------------------------------------------------------------------ */

void sql_batch_add(struct sql_batch *b, const void *k, size_t klen,
                   const void *v, size_t vlen)
{
    struct sql_rec *rec;

    if (b->n == b->alloc) {
        b->alloc = b->alloc ? 2 * b->alloc : 16;
        b->rec = xreallocarray(b->rec, b->alloc, sizeof(*b->rec));
    }
    rec = &b->rec[b->n++];
    rec->koff = b->data.len;
    rec->klen = klen;
    if (klen)
        buf_appendmap(&b->data, k, klen);
    rec->voff = b->data.len;
    rec->vlen = vlen;
    if (vlen)
        buf_appendmap(&b->data, v, vlen);
}

static void batch_reset(struct sql_batch *b)
{
    buf_reset(&b->data);
    b->n = 0;
}

static void batch_fini(struct sql_batch *b)
{
    buf_free(&b->data);
    free(b->rec);
    memset(b, 0, sizeof(*b));
}

/* ------------------------------------------------------------------
 * Engine choice and transactions.
 * ------------------------------------------------------------------ */

/* The engine named by sql_engine; ERR_CONFIG for an unknown name. */
static int engine_choose(const struct sql_engine **engine_r)
{
    const char *name = config_getstring(IMAPOPT_SQL_ENGINE);

    if (!name || !*name || !strcmp(name, "sqlite")
        || !strcmp(name, "sqlite3")) {
        *engine_r = &sql_engine_sqlite;
        return 0;
    }
#ifdef HAVE_PGSQL
    if (!strcmp(name, "pgsql") || !strcmp(name, "postgresql")) {
        *engine_r = &sql_engine_pgsql;
        return 0;
    }
#endif
    xsyslog(LOG_ERR, "sql: unsupported sql_engine", "engine=%s",
            log_escape(name, 64));
    return ERR_CONFIG;
}

/* Resolve `tid` for a call: NULL runs outside any transaction (or inside
 * the handle's open one), *tid == NULL begins one, otherwise *tid must
 * be this handle's open transaction. */
static int txn_use(struct db *db, struct txn **tid)
{
    int r;

    if (!tid)
        return 0;
    if (*tid) {
        if (*tid != db->txn || (*tid)->db != db)
            return ERR_DB_TXN;
        return 0;
    }
    if (db->txn)
        return ERR_LOCKED;
    r = db->engine->begin(db);
    if (r)
        return r;
    db->txn = xzmalloc(sizeof(*db->txn));
    db->txn->db = db;
    *tid = db->txn;
    return 0;
}

/* Finish the open transaction `tid`. */
static int txn_finish(struct db *db, struct txn *tid, int commit)
{
    int r;

    if (!db || !tid || tid != db->txn)
        return ERR_DB_TXN;
    r = db->engine->end(db, commit);
    free(db->txn);
    db->txn = NULL;
    return r;
}

/* Argument checks shared by the record calls. */
static int check_key(const char *key, size_t keylen, int need_key)
{
    if (keylen && !key)
        return ERR_INVALID;
    if (need_key && !keylen)
        return ERR_INVALID;
    if (keylen > SQL_MAX_KEY)
        return ERR_TOOBIG;
    return 0;
}

static int check_write(struct db *db)
{
    return (db->flags & CYRUSDB_RDONLY) ? ERR_DB_READONLY : 0;
}

/* ------------------------------------------------------------------
 * The backend functions.
 * ------------------------------------------------------------------ */

static int sql_detect(const char *header, size_t len)
{
    return len >= 16 && !memcmp(header, "SQLite format 3", 16);
}

static void db_free(struct db *db)
{
    buf_free(&db->keybuf);
    buf_free(&db->databuf);
    buf_free(&db->enc);
    free(db->fname);
    free(db);
}

static int sql_open(const char *fname, int flags, struct db **dbp,
                    struct txn **tid)
{
    struct db *db = NULL;
    int r;

    if (!fname || !*fname || !dbp)
        return ERR_INVALID;
    *dbp = NULL;
    db = xzmalloc(sizeof(*db));
    db->fname = xstrdup(fname);
    db->flags = flags;
    r = engine_choose(&db->engine);
    if (!r)
        r = db->engine->open(db);
    if (r) {
        db_free(db);
        return r;
    }
    if (tid) {
        *tid = NULL;
        r = txn_use(db, tid);
        if (r) {
            db->engine->close(db);
            db_free(db);
            return r;
        }
    }
    *dbp = db;
    return 0;
}

static int sql_close(struct db *db)
{
    if (!db)
        return 0;
    if (db->txn) {
        xsyslog(LOG_WARNING, "sql: closing with open transaction, aborted",
                "path=%s", db->fname);
        txn_finish(db, db->txn, 0);
    }
    db->engine->close(db);
    db_free(db);
    return 0;
}

static int fetch_common(struct db *db, const char *key, size_t keylen,
                        const char **data, size_t *datalen,
                        struct txn **tid)
{
    const char *k;
    int r;

    if (!db)
        return ERR_INVALID;
    r = check_key(key, keylen, 1);
    if (!r)
        r = txn_use(db, tid);
    if (r)
        return r;
    k = key_encode(db, key, keylen);
    r = db->engine->get(db, k, keylen, &db->databuf);
    if (r)
        return r;
    if (data)
        *data = db->databuf.s ? db->databuf.s : "";
    if (datalen)
        *datalen = db->databuf.len;
    return 0;
}

static int sql_fetch(struct db *db, const char *key, size_t keylen,
                     const char **data, size_t *datalen, struct txn **tid)
{
    return fetch_common(db, key, keylen, data, datalen, tid);
}

/* The write lock is the transaction's: beginning one is taking it. */
static int sql_fetchlock(struct db *db, const char *key, size_t keylen,
                         const char **data, size_t *datalen,
                         struct txn **tid)
{
    return fetch_common(db, key, keylen, data, datalen, tid);
}

static int sql_fetchnext(struct db *db, const char *key, size_t keylen,
                         const char **foundkey, size_t *fklen,
                         const char **data, size_t *datalen,
                         struct txn **tid)
{
    struct sql_batch b = { BUF_INITIALIZER, NULL, 0, 0 };
    struct sql_range rq;
    int r;

    if (!db)
        return ERR_INVALID;
    r = check_key(key, keylen, 0);
    if (!r)
        r = txn_use(db, tid);
    if (r)
        return r;

    memset(&rq, 0, sizeof(rq));
    rq.start = key_encode(db, key, keylen);
    rq.startlen = keylen;
    rq.limit = 1;
    r = db->engine->range(db, &rq, &b);
    if (!r && !b.n)
        r = ERR_NOTFOUND;
    if (r)
        goto done;

    buf_setmap(&db->keybuf, b.data.s + b.rec[0].koff, b.rec[0].klen);
    key_decode(db, db->keybuf.s, db->keybuf.len);
    buf_setmap(&db->databuf, b.data.s + b.rec[0].voff, b.rec[0].vlen);
    if (foundkey)
        *foundkey = buf_cstring(&db->keybuf);
    if (fklen)
        *fklen = db->keybuf.len;
    if (data)
        *data = buf_cstring(&db->databuf);
    if (datalen)
        *datalen = db->databuf.len;

done:
    batch_fini(&b);
    return r;
}

/* The smallest stored key greater than every key starting with `p`:
 * `p` with its last byte below 0xff incremented and the rest cut.
 * Returns 0 (no such bound: every key from `p` on qualifies) or 1. */
static int prefix_successor(const char *p, size_t len, struct buf *out)
{
    while (len && (unsigned char)p[len - 1] == 0xff)
        len--;
    if (!len)
        return 0;
    buf_setmap(out, p, len);
    out->s[len - 1] = (char)((unsigned char)out->s[len - 1] + 1);
    return 1;
}

/* Walk one batch; sets *again when the callback wrote, so the caller
 * asks again after `last` (the stored key of the last record seen). */
static int foreach_batch(struct db *db, struct sql_batch *b,
                         cyrusdb_filter_t *filter, cyrusdb_cb_t *cb,
                         void *rock, struct buf *last, int *again)
{
    unsigned long gen = db->gen;
    size_t i;
    int r = 0;

    *again = 0;
    for (i = 0; i < b->n; i++) {
        char *k = b->data.s + b->rec[i].koff;
        const char *v = b->data.s + b->rec[i].voff;
        size_t klen = b->rec[i].klen, vlen = b->rec[i].vlen;

        buf_setmap(last, k, klen);
        key_decode(db, k, klen);
        if (!filter || filter(rock, k, klen, v, vlen))
            r = cb ? cb(rock, k, klen, v, vlen) : 0;
        if (r)
            return r;
        if (db->gen != gen) {
            *again = 1;
            return 0;
        }
    }
    return 0;
}

static int sql_foreach(struct db *db, const char *prefix, size_t prefixlen,
                       cyrusdb_filter_t *filter, cyrusdb_cb_t *cb,
                       void *rock, struct txn **tid)
{
    struct sql_batch b = { BUF_INITIALIZER, NULL, 0, 0 };
    struct buf pfx = BUF_INITIALIZER, end = BUF_INITIALIZER;
    struct buf last = BUF_INITIALIZER;
    struct sql_range rq;
    int r, again;

    if (!db)
        return ERR_INVALID;
    r = check_key(prefix, prefixlen, 0);
    if (!r)
        r = txn_use(db, tid);
    if (r)
        return r;

    buf_setmap(&pfx, key_encode(db, prefix, prefixlen), prefixlen);
    memset(&rq, 0, sizeof(rq));
    rq.start = pfx.s ? pfx.s : "";
    rq.startlen = pfx.len;
    rq.inclusive = 1;
    if (prefix_successor(pfx.s, pfx.len, &end)) {
        rq.end = end.s;
        rq.endlen = end.len;
    }
    rq.limit = SQL_BATCH;

    for (;;) {
        batch_reset(&b);
        r = db->engine->range(db, &rq, &b);
        if (r || !b.n)
            break;
        r = foreach_batch(db, &b, filter, cb, rock, &last, &again);
        if (r || (!again && b.n < rq.limit))
            break;
        rq.start = last.s;
        rq.startlen = last.len;
        rq.inclusive = 0;
    }

    batch_fini(&b);
    buf_free(&pfx);
    buf_free(&end);
    buf_free(&last);
    return r;
}

static int put_common(struct db *db, const char *key, size_t keylen,
                      const char *data, size_t datalen, struct txn **tid,
                      int replace)
{
    const char *k;
    int r;

    if (!db || (datalen && !data))
        return ERR_INVALID;
    if (datalen > SQL_MAX_VALUE)
        return ERR_TOOBIG;
    r = check_key(key, keylen, 1);
    if (!r)
        r = check_write(db);
    if (!r)
        r = txn_use(db, tid);
    if (r)
        return r;
    k = key_encode(db, key, keylen);
    r = db->engine->put(db, k, keylen, datalen ? data : "", datalen,
                        replace);
    if (!r)
        db->gen++;
    return r;
}

static int sql_create(struct db *db, const char *key, size_t keylen,
                      const char *data, size_t datalen, struct txn **tid)
{
    return put_common(db, key, keylen, data, datalen, tid, 0);
}

static int sql_store(struct db *db, const char *key, size_t keylen,
                     const char *data, size_t datalen, struct txn **tid)
{
    return put_common(db, key, keylen, data, datalen, tid, 1);
}

static int sql_delete(struct db *db, const char *key, size_t keylen,
                      struct txn **tid, int force)
{
    const char *k;
    int found = 0;
    int r;

    if (!db)
        return ERR_INVALID;
    r = check_key(key, keylen, 1);
    if (!r)
        r = check_write(db);
    if (!r)
        r = txn_use(db, tid);
    if (r)
        return r;
    k = key_encode(db, key, keylen);
    r = db->engine->del(db, k, keylen, &found);
    if (r)
        return r;
    if (!found)
        return force ? 0 : ERR_NOTFOUND;
    db->gen++;
    return 0;
}

static int sql_commit(struct db *db, struct txn *tid)
{
    return txn_finish(db, tid, 1);
}

static int sql_abort(struct db *db, struct txn *tid)
{
    return txn_finish(db, tid, 0);
}

static int dump_cb(void *rock, const char *key, size_t keylen,
                   const char *data, size_t datalen)
{
    struct buf *line = rock;

    buf_reset(line);
    cyrusdb_escape(line, key, keylen);
    buf_putc(line, '\t');
    cyrusdb_escape(line, data, datalen);
    buf_putc(line, '\n');
    return fwrite(line->s, 1, line->len, stdout) == line->len ? 0 : ERR_IO;
}

static int sql_dump(struct db *db, int detail)
{
    struct buf desc = BUF_INITIALIZER, line = BUF_INITIALIZER;
    int r;

    if (!db)
        return ERR_INVALID;
    if (detail > 0) {
        db->engine->describe(db, &desc);
        printf("# sql engine=%s order=%s path=%s %s\n", db->engine->name,
               db->is_mboxsort ? "mailbox" : "raw", db->fname,
               buf_cstring(&desc));
    }
    r = sql_foreach(db, "", 0, NULL, dump_cb, &line, NULL);
    if (fflush(stdout) == EOF && !r)
        r = ERR_IO;
    buf_free(&desc);
    buf_free(&line);
    return r;
}

/* State of the order check: the previous stored key, if any. */
struct order_check {
    struct buf prev;
    int has_prev;
};

/* Byte order with shorter first on a common prefix. */
static int stored_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int cmp = memcmp(a, b, alen < blen ? alen : blen);

    if (cmp)
        return cmp;
    return alen < blen ? -1 : alen > blen;
}

static int order_cb(void *rock, const char *key, size_t keylen,
                    const char *data, size_t datalen)
{
    struct order_check *oc = rock;

    (void)data;
    (void)datalen;
    if (oc->has_prev
        && stored_cmp(oc->prev.s, oc->prev.len, key, keylen) >= 0)
        return ERR_CORRUPT;
    buf_setmap(&oc->prev, key, keylen);
    oc->has_prev = 1;
    return 0;
}

static int sql_consistent(struct db *db)
{
    struct order_check oc = { BUF_INITIALIZER, 0 };
    int is_mbox;
    int r;

    if (!db)
        return ERR_INVALID;
    r = db->engine->check(db);
    if (r)
        return r;

    /* Walk in stored form: the engine must return strictly ascending
     * byte order, whichever order the db uses. */
    is_mbox = db->is_mboxsort;
    db->is_mboxsort = 0;
    r = sql_foreach(db, "", 0, NULL, order_cb, &oc, NULL);
    db->is_mboxsort = is_mbox;
    buf_free(&oc.prev);
    if (r == ERR_CORRUPT)
        xsyslog(LOG_ERR, "sql: keys out of order", "path=%s", db->fname);
    return r;
}

static int sql_checkpoint(struct db *db)
{
    if (!db)
        return ERR_INVALID;
    if (db->txn)
        return ERR_LOCKED;
    if (db->flags & CYRUSDB_RDONLY)
        return ERR_DB_READONLY;
    return db->engine->repack(db);
}

/* The db's own order, which its file records (not the open flags). */
static int sql_compar(struct db *db, const char *a, size_t alen,
                      const char *b, size_t blen)
{
    if (db->is_mboxsort)
        return cyrusdb_mboxcmp(a, alen, b, blen);
    return cyrusdb_rawcmp(a, alen, b, blen);
}

static int sql_archive(const strarray_t *fnames, const char *dirname)
{
    const struct sql_engine *engine = NULL;
    struct buf dest = BUF_INITIALIZER;
    int i, r;

    if (!fnames || !dirname)
        return ERR_INVALID;
    r = engine_choose(&engine);
    for (i = 0; !r && i < fnames->count; i++) {
        const char *base = strrchr(fnames->data[i], '/');

        base = base ? base + 1 : fnames->data[i];
        buf_reset(&dest);
        buf_printf(&dest, "%s/%s", dirname, base);
        r = engine->archive(fnames->data[i], buf_cstring(&dest));
    }
    buf_free(&dest);
    return r;
}

static int sql_unlink(const char *fname, int flags)
{
    const struct sql_engine *engine = NULL;
    int r;

    (void)flags;
    if (!fname)
        return ERR_INVALID;
    r = engine_choose(&engine);
    if (!r)
        r = engine->unlink(fname);
    return r;
}

const struct cyrusdb_backend cyrusdb_sql = {
    "sql",
    sql_detect,
    sql_open,
    sql_close,
    sql_fetch,
    sql_fetchlock,
    sql_fetchnext,
    sql_foreach,
    sql_create,
    sql_store,
    sql_delete,
    sql_commit,
    sql_abort,
    sql_dump,
    sql_consistent,
    sql_checkpoint,
    sql_archive,
    sql_unlink,
    sql_compar
};

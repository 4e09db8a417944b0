/* The SQLite engine of the sql cyrusdb backend: one SQLite file per
 * database, in WAL mode, every commit synced (synchronous=FULL). */
/* Columba is free software; see COPYING for the licence. */

/*
 * The file at the database's path is an ordinary SQLite 3 file, so
 * sqlite3(1) can read it.  It holds two tables:
 *
 *     kv(k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID
 *         the records, k in stored form (see cyrusdb_sql.c); a
 *         WITHOUT ROWID table is the primary-key B-tree itself, so a
 *         lookup or a range scan touches one tree
 *     columba_meta(name TEXT PRIMARY KEY, value TEXT NOT NULL)
 *         format = "1"; order = "raw" or "mailbox"
 *
 * Crash safety is SQLite's: a commit is durable once COMMIT returns
 * (WAL, synchronous=FULL; CYRUSDB_NOSYNC turns syncing off), and the
 * next open replays or discards the write-ahead log.  The -wal and
 * -shm files beside the database belong to it.
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "lib/buf.h"
#include "lib/cyrusdb.h"
#include "lib/cyrusdb_sql_int.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

/* How long a writer waits for another process's transaction. */
#define LITE_BUSY_TIMEOUT_MS 20000

enum {
    ST_GET,
    ST_INSERT,
    ST_UPSERT,
    ST_DELETE,
    ST_RANGE_GT,        /* k > ?1 */
    ST_RANGE_GE,        /* k >= ?1 */
    ST_RANGE_GT_LT,     /* k > ?1 AND k < ?2 */
    ST_RANGE_GE_LT,     /* k >= ?1 AND k < ?2 */
    ST_COUNT
};

static const char *const lite_sql[ST_COUNT] = {
    "SELECT v FROM kv WHERE k = ?1",
    "INSERT INTO kv(k, v) VALUES (?1, ?2)",
    "INSERT INTO kv(k, v) VALUES (?1, ?2)"
    " ON CONFLICT(k) DO UPDATE SET v = excluded.v",
    "DELETE FROM kv WHERE k = ?1",
    "SELECT k, v FROM kv WHERE k > ?1 ORDER BY k LIMIT ?3",
    "SELECT k, v FROM kv WHERE k >= ?1 ORDER BY k LIMIT ?3",
    "SELECT k, v FROM kv WHERE k > ?1 AND k < ?2 ORDER BY k LIMIT ?3",
    "SELECT k, v FROM kv WHERE k >= ?1 AND k < ?2 ORDER BY k LIMIT ?3"
};

static const char lite_schema[] =
    "CREATE TABLE IF NOT EXISTS columba_meta"
    " (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS kv"
    " (k BLOB PRIMARY KEY NOT NULL, v BLOB NOT NULL) WITHOUT ROWID;"
    "INSERT OR IGNORE INTO columba_meta VALUES ('format', '1');";

struct lite {
    sqlite3 *h;
    sqlite3_stmt *st[ST_COUNT];
};

/* Map an SQLite result code to a project code and log the failure
 * (a lock wait running out is a warning, not an error). */
static int lite_error(sqlite3 *h, const char *path, int rc, const char *what)
{
    const char *msg = h ? sqlite3_errmsg(h) : sqlite3_errstr(rc);

    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        xsyslog(LOG_WARNING, "sql: sqlite database busy",
                "path=%s op=%s", path, what);
        return ERR_LOCKED;
    case SQLITE_CONSTRAINT:
        return ERR_EXISTS;
    default:
        break;
    }
    xsyslog(LOG_ERR, "sql: sqlite call failed", "path=%s op=%s error=\"%s\"",
            path, what, msg);
    switch (rc & 0xff) {
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return ERR_CORRUPT;
    case SQLITE_READONLY:
        return ERR_DB_READONLY;
    case SQLITE_NOMEM:
        return ERR_NOMEM;
    case SQLITE_TOOBIG:
        return ERR_TOOBIG;
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return ERR_PERMISSION;
    default:
        return ERR_IO;
    }
}

static int lite_exec(struct db *db, const char *sql, const char *what)
{
    struct lite *l = db->engine_state;
    int rc = sqlite3_exec(l->h, sql, NULL, NULL, NULL);

    return rc == SQLITE_OK ? 0 : lite_error(l->h, db->fname, rc, what);
}

/* Bind `len` bytes as a blob, never as NULL (a zero-length pointer may
 * be NULL, which SQLite would store as SQL NULL). */
static int lite_bind(sqlite3_stmt *st, int idx, const char *p, size_t len)
{
    if (!len)
        return sqlite3_bind_zeroblob(st, idx, 0);
    return sqlite3_bind_blob64(st, idx, p, len, SQLITE_STATIC);
}

/* Check the first bytes of an existing file: an SQLite file, or empty. */
static int lite_check_header(const char *path, int *exists_r)
{
    char header[16];
    ssize_t n;
    int fd, r = 0;

    *exists_r = 0;
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        xsyslog_syscall("open", "path", path);
        return errno == EACCES ? ERR_PERMISSION : ERR_IO;
    }
    *exists_r = 1;
    n = read(fd, header, sizeof(header));
    if (n < 0) {
        xsyslog_syscall("read", "path", path);
        r = ERR_IO;
    }
    else if (n > 0 && (n < (ssize_t)sizeof(header)
                       || memcmp(header, "SQLite format 3", 16))) {
        xsyslog(LOG_ERR, "sql: not an SQLite database", "path=%s", path);
        r = ERR_DB_BADFORMAT;
    }
    close(fd);
    return r;
}

/* Set the connection up: lock wait, WAL, syncing, schema. */
static int lite_setup(struct db *db)
{
    struct lite *l = db->engine_state;
    int r;

    sqlite3_busy_timeout(l->h, LITE_BUSY_TIMEOUT_MS);
    sqlite3_extended_result_codes(l->h, 1);
    if (db->flags & CYRUSDB_RDONLY)
        return 0;

    r = lite_exec(db, "PRAGMA journal_mode=WAL", "journal_mode");
    if (!r)
        r = lite_exec(db, (db->flags & CYRUSDB_NOSYNC)
                              ? "PRAGMA synchronous=OFF"
                              : "PRAGMA synchronous=FULL", "synchronous");
    if (r || !(db->flags & CYRUSDB_CREATE))
        return r;

    r = lite_exec(db, "BEGIN IMMEDIATE", "begin");
    if (r)
        return r;
    r = lite_exec(db, lite_schema, "schema");
    if (!r)
        r = lite_exec(db, (db->flags & CYRUSDB_MBOXSORT)
                      ? "INSERT OR IGNORE INTO columba_meta"
                        " VALUES ('order', 'mailbox')"
                      : "INSERT OR IGNORE INTO columba_meta"
                        " VALUES ('order', 'raw')", "schema");
    if (!r)
        return lite_exec(db, "COMMIT", "commit");
    lite_exec(db, "ROLLBACK", "rollback");
    return r;
}

/* Read the stored order; a file without our tables is not ours. */
static int lite_read_order(struct db *db)
{
    struct lite *l = db->engine_state;
    sqlite3_stmt *st = NULL;
    const unsigned char *v;
    int rc, r = 0;

    rc = sqlite3_prepare_v2(l->h,
                            "SELECT value FROM columba_meta"
                            " WHERE name = 'order'", -1, &st, NULL);
    if (rc == SQLITE_ERROR) {
        xsyslog(LOG_ERR, "sql: not a columba sql database",
                "path=%s error=\"%s\"", db->fname, sqlite3_errmsg(l->h));
        return ERR_DB_BADFORMAT;
    }
    if (rc != SQLITE_OK)
        return lite_error(l->h, db->fname, rc, "meta");

    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        v = sqlite3_column_text(st, 0);
        db->is_mboxsort = v && !strcmp((const char *)v, "mailbox");
    }
    else if (rc == SQLITE_DONE) {
        /* A file made by another program, or by a crashed create:
         * fall back to the caller's order. */
        db->is_mboxsort = !!(db->flags & CYRUSDB_MBOXSORT);
    }
    else {
        r = lite_error(l->h, db->fname, rc, "meta");
    }
    sqlite3_finalize(st);
    return r;
}

static int lite_prepare_all(struct db *db)
{
    struct lite *l = db->engine_state;
    int i, rc;

    for (i = 0; i < ST_COUNT; i++) {
        rc = sqlite3_prepare_v3(l->h, lite_sql[i], -1,
                                SQLITE_PREPARE_PERSISTENT, &l->st[i], NULL);
        if (rc == SQLITE_ERROR) {
            xsyslog(LOG_ERR, "sql: not a columba sql database",
                    "path=%s error=\"%s\"", db->fname,
                    sqlite3_errmsg(l->h));
            return ERR_DB_BADFORMAT;
        }
        if (rc != SQLITE_OK)
            return lite_error(l->h, db->fname, rc, "prepare");
    }
    return 0;
}

static void lite_close(struct db *db)
{
    struct lite *l = db->engine_state;
    int i;

    if (!l)
        return;
    for (i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(l->st[i]);
    if (l->h && sqlite3_close(l->h) != SQLITE_OK)
        xsyslog(LOG_ERR, "sql: sqlite close failed", "path=%s error=\"%s\"",
                db->fname, sqlite3_errmsg(l->h));
    free(l);
    db->engine_state = NULL;
}

static int lite_open(struct db *db)
{
    struct lite *l;
    int oflags = SQLITE_OPEN_NOMUTEX;
    int exists, rc, r;

    r = lite_check_header(db->fname, &exists);
    if (r)
        return r;
    if (!exists && !(db->flags & CYRUSDB_CREATE))
        return ERR_NOTFOUND;
    if (!exists && (db->flags & CYRUSDB_RDONLY))
        return ERR_NOTFOUND;

    if (db->flags & CYRUSDB_RDONLY)
        oflags |= SQLITE_OPEN_READONLY;
    else if (db->flags & CYRUSDB_CREATE)
        oflags |= SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    else
        oflags |= SQLITE_OPEN_READWRITE;

    l = xzmalloc(sizeof(*l));
    db->engine_state = l;
    rc = sqlite3_open_v2(db->fname, &l->h, oflags, NULL);
    if (rc != SQLITE_OK) {
        r = lite_error(l->h, db->fname, rc, "open");
        goto done;
    }
    r = lite_setup(db);
    if (!r)
        r = lite_read_order(db);
    if (!r)
        r = lite_prepare_all(db);

done:
    if (r)
        lite_close(db);
    return r;
}

static int lite_begin(struct db *db)
{
    if (db->flags & CYRUSDB_RDONLY)
        return lite_exec(db, "BEGIN DEFERRED", "begin");
    return lite_exec(db, "BEGIN IMMEDIATE", "begin");
}

static int lite_end(struct db *db, int commit)
{
    int r;

    if (!commit)
        return lite_exec(db, "ROLLBACK", "rollback");
    r = lite_exec(db, "COMMIT", "commit");
    if (r && sqlite3_get_autocommit(((struct lite *)db->engine_state)->h)
             == 0)
        lite_exec(db, "ROLLBACK", "rollback");
    return r;
}

static int lite_get(struct db *db, const char *k, size_t klen,
                    struct buf *val)
{
    struct lite *l = db->engine_state;
    sqlite3_stmt *st = l->st[ST_GET];
    int rc, r = 0;

    lite_bind(st, 1, k, klen);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        buf_reset(val);
        buf_appendmap(val, sqlite3_column_blob(st, 0),
                      (size_t)sqlite3_column_bytes(st, 0));
        buf_cstring(val);
    }
    else if (rc == SQLITE_DONE) {
        r = ERR_NOTFOUND;
    }
    else {
        r = lite_error(l->h, db->fname, rc, "fetch");
    }
    sqlite3_reset(st);
    return r;
}

static int lite_range(struct db *db, const struct sql_range *rq,
                      struct sql_batch *out)
{
    struct lite *l = db->engine_state;
    sqlite3_stmt *st;
    int idx = ST_RANGE_GT + (rq->inclusive ? 1 : 0) + (rq->end ? 2 : 0);
    int rc, r = 0;

    st = l->st[idx];
    lite_bind(st, 1, rq->start, rq->startlen);
    if (rq->end)
        lite_bind(st, 2, rq->end, rq->endlen);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)rq->limit);

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const void *k = sqlite3_column_blob(st, 0);
        size_t klen = (size_t)sqlite3_column_bytes(st, 0);
        const void *v = sqlite3_column_blob(st, 1);
        size_t vlen = (size_t)sqlite3_column_bytes(st, 1);

        sql_batch_add(out, k, klen, v, vlen);
    }
    if (rc != SQLITE_DONE)
        r = lite_error(l->h, db->fname, rc, "range");
    sqlite3_reset(st);
    return r;
}

static int lite_put(struct db *db, const char *k, size_t klen,
                    const char *v, size_t vlen, int replace)
{
    struct lite *l = db->engine_state;
    sqlite3_stmt *st = l->st[replace ? ST_UPSERT : ST_INSERT];
    int rc, r = 0;

    lite_bind(st, 1, k, klen);
    lite_bind(st, 2, v, vlen);
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        r = lite_error(l->h, db->fname, rc, "store");
    sqlite3_reset(st);
    return r;
}

static int lite_del(struct db *db, const char *k, size_t klen, int *found_r)
{
    struct lite *l = db->engine_state;
    sqlite3_stmt *st = l->st[ST_DELETE];
    int rc, r = 0;

    lite_bind(st, 1, k, klen);
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        r = lite_error(l->h, db->fname, rc, "delete");
    else
        *found_r = sqlite3_changes(l->h) > 0;
    sqlite3_reset(st);
    return r;
}

/* Run a one-row, one-column query into `out` (reset first). */
static int lite_query_text(struct db *db, const char *sql, struct buf *out)
{
    struct lite *l = db->engine_state;
    sqlite3_stmt *st = NULL;
    int rc, r = 0;

    buf_reset(out);
    rc = sqlite3_prepare_v2(l->h, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return lite_error(l->h, db->fname, rc, "query");
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);

        buf_appendcstr(out, t ? (const char *)t : "");
    }
    else if (rc != SQLITE_DONE) {
        r = lite_error(l->h, db->fname, rc, "query");
    }
    sqlite3_finalize(st);
    buf_cstring(out);
    return r;
}

static int lite_check(struct db *db)
{
    struct buf res = BUF_INITIALIZER;
    int r;

    r = lite_query_text(db, "PRAGMA integrity_check", &res);
    if (!r && strcmp(buf_cstring(&res), "ok")) {
        xsyslog(LOG_ERR, "sql: sqlite integrity check failed",
                "path=%s error=\"%s\"", db->fname,
                log_escape(buf_cstring(&res), 200));
        r = ERR_CORRUPT;
    }
    buf_free(&res);
    return r;
}

static int lite_repack(struct db *db)
{
    int r;

    r = lite_exec(db, "VACUUM", "vacuum");
    if (!r)
        r = lite_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", "checkpoint");
    if (!r)
        xsyslog(LOG_INFO, "sql: repacked", "path=%s", db->fname);
    return r;
}

static void lite_describe(struct db *db, struct buf *out)
{
    struct buf v = BUF_INITIALIZER;

    lite_query_text(db, "SELECT count(*) FROM kv", &v);
    buf_printf(out, "records=%s", buf_cstring(&v));
    lite_query_text(db, "PRAGMA page_count", &v);
    buf_printf(out, " pages=%s", buf_cstring(&v));
    lite_query_text(db, "PRAGMA freelist_count", &v);
    buf_printf(out, " free_pages=%s", buf_cstring(&v));
    lite_query_text(db, "PRAGMA journal_mode", &v);
    buf_printf(out, " journal=%s", buf_cstring(&v));
    buf_free(&v);
}

/* A consistent copy through VACUUM INTO, which reads one snapshot. */
static int lite_archive(const char *fname, const char *destpath)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    int rc, r = 0;

    if (unlink(destpath) < 0 && errno != ENOENT) {
        xsyslog_syscall("unlink", "path", destpath);
        return ERR_IO;
    }
    rc = sqlite3_open_v2(fname, &h, SQLITE_OPEN_READONLY, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_busy_timeout(h, LITE_BUSY_TIMEOUT_MS);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(h, "VACUUM INTO ?1", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, destpath, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
            rc = SQLITE_OK;
    }
    if (rc != SQLITE_OK)
        r = lite_error(h, fname, rc, "archive");
    sqlite3_finalize(st);
    sqlite3_close(h);
    return r;
}

static int lite_unlink(const char *fname)
{
    static const char *const sides[] = { "", "-wal", "-shm", "-journal" };
    struct buf path = BUF_INITIALIZER;
    size_t i;
    int r = 0;

    for (i = 0; i < sizeof(sides) / sizeof(sides[0]); i++) {
        buf_setcstr(&path, fname);
        buf_appendcstr(&path, sides[i]);
        if (unlink(buf_cstring(&path)) < 0 && errno != ENOENT) {
            xsyslog_syscall("unlink", "path", buf_cstring(&path));
            r = ERR_IO;
        }
    }
    buf_free(&path);
    return r;
}

const struct sql_engine sql_engine_sqlite = {
    "sqlite",
    lite_open,
    lite_close,
    lite_begin,
    lite_end,
    lite_get,
    lite_range,
    lite_put,
    lite_del,
    lite_check,
    lite_repack,
    lite_describe,
    lite_archive,
    lite_unlink
};

/* Internals shared by the sql cyrusdb backend (lib/cyrusdb_sql.c) and its
 * engines: SQLite (in cyrusdb_sql.c) and PostgreSQL (cyrusdb_sql_pg.c). */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_LIB_CYRUSDB_SQL_INT_H
#define COLUMBA_LIB_CYRUSDB_SQL_INT_H

#include <stddef.h>

#include "lib/buf.h"
#include "lib/strarray.h"

/* Bounds on what one record may hold. */
#define SQL_MAX_KEY (1024 * 1024)
#define SQL_MAX_VALUE (512 * 1024 * 1024)

/* Records fetched per range query during a foreach. */
#define SQL_BATCH 256

/* A range query: stored-form keys k with start < k (start <= k when
 * `inclusive`) and, when `end` is not NULL, k < end; in key order, at
 * most `limit` of them. */
struct sql_range {
    const char *start;
    size_t startlen;
    int inclusive;
    const char *end;
    size_t endlen;
    size_t limit;
};

/* One record of a batch: offsets into sql_batch.data. */
struct sql_rec {
    size_t koff, klen, voff, vlen;
};

/* The records returned by a range query, copied out of the engine so the
 * engine may be used again (a foreach callback writing to the db). */
struct sql_batch {
    struct buf data;
    struct sql_rec *rec;
    size_t n;
    size_t alloc;
};

struct db;

/* An SQL engine.  Keys handed to and returned by these are in stored
 * form (see the design comment in cyrusdb_sql.c).  Every function
 * returns 0 or a lib/error.h code, having logged any engine failure. */
struct sql_engine {
    const char *name;
    /* Connect/open for db->fname with db->flags; set db->engine_state
     * and db->is_mboxsort (from the stored order, or from the flags for
     * a new db).  ERR_NOTFOUND when absent without CYRUSDB_CREATE. */
    int (*open)(struct db *db);
    void (*close)(struct db *db);
    /* Begin a write transaction holding the db's writer lock (a read
     * transaction for a read-only db); end one (commit or roll back). */
    int (*begin)(struct db *db);
    int (*end)(struct db *db, int commit);
    /* Value of one key into `val` (reset first); ERR_NOTFOUND. */
    int (*get)(struct db *db, const char *k, size_t klen, struct buf *val);
    /* Append the records of `rq` to `out`. */
    int (*range)(struct db *db, const struct sql_range *rq,
                 struct sql_batch *out);
    /* Insert (ERR_EXISTS when present unless `replace`). */
    int (*put)(struct db *db, const char *k, size_t klen,
               const char *v, size_t vlen, int replace);
    /* Delete; *found_r tells whether a record went. */
    int (*del)(struct db *db, const char *k, size_t klen, int *found_r);
    /* Engine-level consistency check and repack. */
    int (*check)(struct db *db);
    int (*repack)(struct db *db);
    /* Describe the storage for dump(detail > 0). */
    void (*describe)(struct db *db, struct buf *out);
    /* Snapshot db file `fname` into `destpath`. */
    int (*archive)(const char *fname, const char *destpath);
    /* Remove the storage of `fname`. */
    int (*unlink)(const char *fname);
};

/* An open sql database. */
struct db {
    char *fname;
    int flags;
    int is_mboxsort;
    const struct sql_engine *engine;
    void *engine_state;
    struct txn *txn;           /* the open transaction, or NULL */
    unsigned long gen;         /* bumped by every write (foreach) */
    struct buf keybuf;         /* key returned by fetchnext */
    struct buf databuf;        /* value returned by fetch/fetchnext */
    struct buf enc;            /* scratch: a key in stored form */
};

/* Append one record to a batch. */
void sql_batch_add(struct sql_batch *b, const void *k, size_t klen,
                   const void *v, size_t vlen);

#ifdef HAVE_PGSQL
extern const struct sql_engine sql_engine_pgsql;
/* Map a db file name to its PostgreSQL table name into `out`. */
void sql_pg_tablename(const char *fname, struct buf *out);
#endif

#endif /* COLUMBA_LIB_CYRUSDB_SQL_INT_H */

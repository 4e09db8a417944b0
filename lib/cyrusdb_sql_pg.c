/* The PostgreSQL engine of the sql cyrusdb backend: one table per
 * database in the configured PostgreSQL database, through libpq. */
/* Columba is free software; see COPYING for the licence. */

/*
 * Where the records live.  imapd.conf names the server: `sql_hostnames`
 * (comma-separated, tried in turn; a name starting with '/' is the
 * directory of a Unix socket), `sql_database`, `sql_user`, `sql_passwd`
 * and `sql_usessl`.  Each database file name maps to one table,
 *
 *     cdb_<basename, [a-z0-9_] only, at most 40 bytes>_<fnv1a32 of path>
 *
 * e.g. /var/lib/columba/mailboxes.db -> cdb_mailboxes_db_1f2e3d4c, so two
 * configuration directories sharing one PostgreSQL database never meet.
 * The table is
 *
 *     (k bytea PRIMARY KEY, v bytea NOT NULL)
 *
 * with k in stored form (see cyrusdb_sql.c); bytea compares bytewise,
 * shorter first, so ORDER BY k is the database's order.  The shared table
 *
 *     columba_meta(tbl text PRIMARY KEY, path text, mboxsort boolean)
 *
 * names every such table, the file name it stands for, and its order;
 * a database exists when its row does.  No file is made at the path.
 *
 * Statements travel with binary parameters and results, so keys and
 * values are never quoted or escaped.  A cyrusdb transaction holds the
 * table's EXCLUSIVE lock (writers wait, readers do not); waits are
 * bounded by lock_timeout.
 */

#include "config.h"

#include <stdio.h>
#include <stdint.h>
#include <string.h>

#include <libpq-fe.h>

#include "lib/buf.h"
#include "lib/cyrusdb.h"
#include "lib/cyrusdb_sql_int.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/strarray.h"
#include "lib/xmalloc.h"

#define PG_CONNECT_TIMEOUT "10"
#define PG_SESSION_SETUP \
    "SET lock_timeout = '20s'; SET statement_timeout = '10min';" \
    " SET client_min_messages = warning"
#define PG_TABLE_BASE_MAX 40

struct pg {
    PGconn *conn;
    char *table;
    struct buf sql;
};

void sql_pg_tablename(const char *fname, struct buf *out)
{
    const char *base = strrchr(fname, '/');
    uint32_t h = 2166136261u;
    size_t i, n = 0;

    for (i = 0; fname[i]; i++) {
        h ^= (unsigned char)fname[i];
        h *= 16777619u;
    }
    base = base ? base + 1 : fname;
    buf_setcstr(out, "cdb_");
    for (i = 0; base[i] && n < PG_TABLE_BASE_MAX; i++, n++) {
        char c = base[i];

        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
            c = '_';
        buf_putc(out, c);
    }
    buf_printf(out, "_%08x", (unsigned)h);
}

/* libpq notices go to the debug log, never to stderr. */
static void pg_notice(void *arg, const char *message)
{
    (void)arg;
    xsyslog(LOG_DEBUG, "sql: pgsql notice", "text=\"%s\"",
            log_escape(message, 200));
}

/* The first line of libpq's error text, for a log line. */
static const char *pg_errtext(const char *msg)
{
    static char line[256];
    size_t n = strcspn(msg ? msg : "", "\n");

    if (n >= sizeof(line))
        n = sizeof(line) - 1;
    memcpy(line, msg ? msg : "", n);
    line[n] = '\0';
    return line;
}

/* Split "host", "host:port", "[v6addr]:port" or a socket directory
 * ("/run/postgresql") into host and port (port "" when absent). */
static void pg_split_host(const char *spec, struct buf *host,
                          struct buf *port)
{
    const char *colon;

    buf_reset(host);
    buf_reset(port);
    if (spec[0] == '[' && (colon = strchr(spec, ']'))) {
        buf_appendmap(host, spec + 1, (size_t)(colon - spec - 1));
        if (colon[1] == ':')
            buf_appendcstr(port, colon + 2);
    }
    else if (spec[0] != '/' && (colon = strrchr(spec, ':'))
             && colon == strchr(spec, ':')) {
        buf_appendmap(host, spec, (size_t)(colon - spec));
        buf_appendcstr(port, colon + 1);
    }
    else {
        buf_appendcstr(host, spec);
    }
    buf_cstring(host);
    buf_cstring(port);
}

/* Connect to one server of sql_hostnames ("" for libpq's default). */
static PGconn *pg_connect_host(const char *spec)
{
    const char *kw[] = { "host", "port", "dbname", "user", "password",
                         "sslmode", "connect_timeout", "application_name",
                         NULL };
    const char *val[9];
    struct buf host = BUF_INITIALIZER, port = BUF_INITIALIZER;
    const char *s;
    PGconn *conn;

    pg_split_host(spec, &host, &port);
    val[0] = buf_cstring(&host);
    val[1] = buf_cstring(&port);
    s = config_getstring(IMAPOPT_SQL_DATABASE);
    val[2] = s ? s : "";
    s = config_getstring(IMAPOPT_SQL_USER);
    val[3] = s ? s : "";
    s = config_getstring(IMAPOPT_SQL_PASSWD);
    val[4] = s ? s : "";
    val[5] = config_getswitch(IMAPOPT_SQL_USESSL) ? "require" : "disable";
    val[6] = PG_CONNECT_TIMEOUT;
    val[7] = "columba";
    val[8] = NULL;

    conn = PQconnectdbParams(kw, val, 0);
    if (!conn || PQstatus(conn) != CONNECTION_OK) {
        xsyslog(LOG_WARNING, "sql: pgsql connect failed",
                "host=%s error=\"%s\"", *spec ? spec : "(default)",
                pg_errtext(conn ? PQerrorMessage(conn) : "out of memory"));
        PQfinish(conn);
        conn = NULL;
    }
    buf_free(&host);
    buf_free(&port);
    return conn;
}

/* Connect to the first reachable host of sql_hostnames. */
static int pg_connect(const char *path, PGconn **conn_r)
{
    strarray_t *list = config_getstrarray(IMAPOPT_SQL_HOSTNAMES);
    struct buf host = BUF_INITIALIZER;
    PGconn *conn = NULL;
    PGresult *res;
    int i;

    if (!list)
        list = strarray_new();
    if (!list->count)
        strarray_append(list, "");
    for (i = 0; !conn && i < list->count; i++) {
        buf_setcstr(&host, list->data[i]);
        buf_trim(&host);
        conn = pg_connect_host(buf_cstring(&host));
    }
    buf_free(&host);
    strarray_free(&list);
    if (!conn) {
        xsyslog(LOG_ERR, "sql: no pgsql server reachable", "path=%s", path);
        return ERR_IO;
    }

    PQsetNoticeProcessor(conn, pg_notice, NULL);
    res = PQexec(conn, PG_SESSION_SETUP);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        xsyslog(LOG_WARNING, "sql: pgsql session setup failed",
                "path=%s error=\"%s\"", path,
                pg_errtext(PQerrorMessage(conn)));
    PQclear(res);
    *conn_r = conn;
    return 0;
}

/* Map a failed result to a project code, logging what is not routine. */
static int pg_error(const char *path, PGconn *conn, PGresult *res,
                    const char *what)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE)
                            : NULL;

    state = state ? state : "";
    if (!strcmp(state, "55P03") || !strcmp(state, "40P01")
        || !strcmp(state, "40001")) {
        xsyslog(LOG_WARNING, "sql: pgsql table busy", "path=%s op=%s",
                path, what);
        return ERR_LOCKED;
    }
    xsyslog(LOG_ERR, "sql: pgsql query failed",
            "path=%s op=%s sqlstate=%s error=\"%s\"", path, what, state,
            pg_errtext(PQerrorMessage(conn)));
    if (!strcmp(state, "42P01"))
        return ERR_NOTFOUND;
    if (!strcmp(state, "25P02"))
        return ERR_DB_TXN;
    if (!strcmp(state, "42501"))
        return ERR_PERMISSION;
    if (!strcmp(state, "57014"))
        return ERR_TIMEOUT;
    if (!strcmp(state, "25006"))
        return ERR_DB_READONLY;
    if (!strcmp(state, "54000"))
        return ERR_TOOBIG;
    return ERR_IO;
}

/* Run `sql` with binary parameters; *res_r (when not NULL) gets the
 * result on success, which the caller clears. */
static int pg_run(struct db *db, const char *sql, int nparams,
                  const char *const *vals, const int *lens,
                  int binary_result, const char *what, PGresult **res_r)
{
    static const int formats[3] = { 1, 1, 1 };
    struct pg *pg = db->engine_state;
    PGresult *res;
    ExecStatusType st;

    res = PQexecParams(pg->conn, sql, nparams, NULL, vals, lens, formats,
                       binary_result);
    st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        int r = pg_error(db->fname, pg->conn, res, what);

        PQclear(res);
        return r;
    }
    if (res_r)
        *res_r = res;
    else
        PQclear(res);
    return 0;
}

/* The statement text with the table name put in (in pg->sql). */
static const char *pg_sql(struct db *db, const char *pre, const char *post)
{
    struct pg *pg = db->engine_state;

    buf_setcstr(&pg->sql, pre);
    buf_printf(&pg->sql, "\"%s\"", pg->table);
    buf_appendcstr(&pg->sql, post);
    return buf_cstring(&pg->sql);
}

/* Make the table and its meta row, serialised by an advisory lock so two
 * processes creating at once do not collide in the catalogue. */
static int pg_create_table(struct db *db)
{
    struct pg *pg = db->engine_state;
    const char *vals[3];
    int lens[3];
    int r;

    r = pg_run(db, "BEGIN", 0, NULL, NULL, 0, "create", NULL);
    if (!r)
        r = pg_run(db, "SELECT pg_advisory_xact_lock(7406121)", 0, NULL,
                   NULL, 0, "create", NULL);
    if (!r)
        r = pg_run(db, "CREATE TABLE IF NOT EXISTS columba_meta"
                   " (tbl text PRIMARY KEY, path text NOT NULL,"
                   " mboxsort boolean NOT NULL)", 0, NULL, NULL, 0,
                   "create", NULL);
    if (!r)
        r = pg_run(db, pg_sql(db, "CREATE TABLE IF NOT EXISTS ",
                              " (k bytea PRIMARY KEY, v bytea NOT NULL)"),
                   0, NULL, NULL, 0, "create", NULL);
    if (!r) {
        vals[0] = pg->table;
        lens[0] = (int)strlen(pg->table);
        vals[1] = db->fname;
        lens[1] = (int)strlen(db->fname);
        vals[2] = (db->flags & CYRUSDB_MBOXSORT) ? "\1" : "\0";
        lens[2] = 1;
        r = pg_run(db, "INSERT INTO columba_meta VALUES"
                   " ($1::text, $2::text, $3::boolean)"
                   " ON CONFLICT (tbl) DO NOTHING", 3, vals, lens, 0,
                   "create", NULL);
    }
    if (!r)
        return pg_run(db, "COMMIT", 0, NULL, NULL, 0, "create", NULL);
    pg_run(db, "ROLLBACK", 0, NULL, NULL, 0, "create", NULL);
    return r;
}

/* Read the table's order from its meta row; ERR_NOTFOUND without one. */
static int pg_read_meta(struct db *db)
{
    struct pg *pg = db->engine_state;
    PGresult *res = NULL;
    const char *vals[1];
    int lens[1];
    int r;

    vals[0] = pg->table;
    lens[0] = (int)strlen(pg->table);
    res = PQexecParams(pg->conn, "SELECT to_regclass('columba_meta')", 0,
                       NULL, NULL, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        r = pg_error(db->fname, pg->conn, res, "meta");
    else
        r = PQgetisnull(res, 0, 0) ? ERR_NOTFOUND : 0;
    PQclear(res);
    res = NULL;
    if (!r)
        r = pg_run(db, "SELECT mboxsort FROM columba_meta"
                   " WHERE tbl = $1::text", 1, vals, lens, 1, "meta", &res);
    if (!r && PQntuples(res) != 1)
        r = ERR_NOTFOUND;
    if (!r)
        db->is_mboxsort = PQgetlength(res, 0, 0) == 1
                          && PQgetvalue(res, 0, 0)[0] != 0;
    PQclear(res);
    return r;
}

static void pg_close(struct db *db)
{
    struct pg *pg = db->engine_state;

    if (!pg)
        return;
    PQfinish(pg->conn);
    free(pg->table);
    buf_free(&pg->sql);
    free(pg);
    db->engine_state = NULL;
}

static int pg_open(struct db *db)
{
    struct pg *pg = xzmalloc(sizeof(*pg));
    struct buf name = BUF_INITIALIZER;
    int r;

    db->engine_state = pg;
    sql_pg_tablename(db->fname, &name);
    pg->table = buf_release(&name);
    r = pg_connect(db->fname, &pg->conn);
    if (!r && (db->flags & CYRUSDB_NOSYNC))
        r = pg_run(db, "SET synchronous_commit = off", 0, NULL, NULL, 0,
                   "open", NULL);
    if (!r && (db->flags & CYRUSDB_RDONLY))
        r = pg_run(db, "SET default_transaction_read_only = on", 0, NULL,
                   NULL, 0, "open", NULL);
    if (!r && (db->flags & CYRUSDB_CREATE) && !(db->flags & CYRUSDB_RDONLY))
        r = pg_create_table(db);
    if (!r)
        r = pg_read_meta(db);
    if (r)
        pg_close(db);
    return r;
}

static int pg_begin(struct db *db)
{
    int r = pg_run(db, "BEGIN", 0, NULL, NULL, 0, "begin", NULL);

    if (r || (db->flags & CYRUSDB_RDONLY))
        return r;
    r = pg_run(db, pg_sql(db, "LOCK TABLE ", " IN EXCLUSIVE MODE"), 0,
               NULL, NULL, 0, "lock", NULL);
    if (r)
        pg_run(db, "ROLLBACK", 0, NULL, NULL, 0, "rollback", NULL);
    return r;
}

static int pg_end(struct db *db, int commit)
{
    PGresult *res = NULL;
    int r;

    if (!commit)
        return pg_run(db, "ROLLBACK", 0, NULL, NULL, 0, "rollback", NULL);
    r = pg_run(db, "COMMIT", 0, NULL, NULL, 0, "commit", &res);
    /* COMMIT of a transaction that already failed answers ROLLBACK. */
    if (!r && strcmp(PQcmdStatus(res), "COMMIT")) {
        xsyslog(LOG_ERR, "sql: pgsql transaction rolled back",
                "path=%s", db->fname);
        r = ERR_DB_TXN;
    }
    PQclear(res);
    return r;
}

static int pg_get(struct db *db, const char *k, size_t klen,
                  struct buf *val)
{
    PGresult *res = NULL;
    const char *vals[1] = { k };
    int lens[1] = { (int)klen };
    int r;

    r = pg_run(db, pg_sql(db, "SELECT v FROM ", " WHERE k = $1::bytea"), 1,
               vals, lens, 1, "fetch", &res);
    if (!r && PQntuples(res) == 0)
        r = ERR_NOTFOUND;
    if (!r) {
        buf_reset(val);
        buf_appendmap(val, PQgetvalue(res, 0, 0),
                      (size_t)PQgetlength(res, 0, 0));
        buf_cstring(val);
    }
    PQclear(res);
    return r;
}

static int pg_range(struct db *db, const struct sql_range *rq,
                    struct sql_batch *out)
{
    struct pg *pg = db->engine_state;
    PGresult *res = NULL;
    const char *vals[2] = { rq->start, rq->end };
    int lens[2] = { (int)rq->startlen, (int)rq->endlen };
    int i, n, r;

    pg_sql(db, "SELECT k, v FROM ", "");
    buf_printf(&pg->sql, " WHERE k %s $1::bytea%s ORDER BY k LIMIT %zu",
               rq->inclusive ? ">=" : ">",
               rq->end ? " AND k < $2::bytea" : "", rq->limit);
    r = pg_run(db, buf_cstring(&pg->sql), rq->end ? 2 : 1, vals, lens, 1,
               "range", &res);
    if (r)
        return r;
    n = PQntuples(res);
    for (i = 0; i < n; i++)
        sql_batch_add(out, PQgetvalue(res, i, 0),
                      (size_t)PQgetlength(res, i, 0),
                      PQgetvalue(res, i, 1), (size_t)PQgetlength(res, i, 1));
    PQclear(res);
    return 0;
}

static int pg_put(struct db *db, const char *k, size_t klen,
                  const char *v, size_t vlen, int replace)
{
    PGresult *res = NULL;
    const char *vals[2] = { k, v };
    int lens[2] = { (int)klen, (int)vlen };
    int r;

    r = pg_run(db, pg_sql(db, "INSERT INTO ",
                          replace
                          ? " (k, v) VALUES ($1::bytea, $2::bytea)"
                            " ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v"
                          : " (k, v) VALUES ($1::bytea, $2::bytea)"
                            " ON CONFLICT (k) DO NOTHING"),
               2, vals, lens, 0, "store", &res);
    if (!r && !replace && !strcmp(PQcmdTuples(res), "0"))
        r = ERR_EXISTS;
    PQclear(res);
    return r;
}

static int pg_del(struct db *db, const char *k, size_t klen, int *found_r)
{
    PGresult *res = NULL;
    const char *vals[1] = { k };
    int lens[1] = { (int)klen };
    int r;

    r = pg_run(db, pg_sql(db, "DELETE FROM ", " WHERE k = $1::bytea"), 1,
               vals, lens, 0, "delete", &res);
    if (!r)
        *found_r = strcmp(PQcmdTuples(res), "0") != 0;
    PQclear(res);
    return r;
}

/* The server keeps its own pages consistent; check that the table and
 * its meta row are there and every value is present. */
static int pg_check(struct db *db)
{
    PGresult *res = NULL;
    int r;

    r = pg_read_meta(db);
    if (!r)
        r = pg_run(db, pg_sql(db, "SELECT count(*) FROM ",
                              " WHERE v IS NULL OR k IS NULL"),
                   0, NULL, NULL, 0, "check", &res);
    if (!r && strcmp(PQgetvalue(res, 0, 0), "0")) {
        xsyslog(LOG_ERR, "sql: pgsql table has NULL records", "path=%s",
                db->fname);
        r = ERR_CORRUPT;
    }
    PQclear(res);
    return r;
}

static int pg_repack(struct db *db)
{
    int r = pg_run(db, pg_sql(db, "VACUUM (ANALYZE) ", ""), 0, NULL, NULL,
                   0, "vacuum", NULL);

    if (!r)
        xsyslog(LOG_INFO, "sql: repacked", "path=%s", db->fname);
    return r;
}

static void pg_describe(struct db *db, struct buf *out)
{
    struct pg *pg = db->engine_state;
    PGresult *res = NULL;

    buf_printf(out, "table=%s", pg->table);
    if (!pg_run(db, pg_sql(db, "SELECT count(*) FROM ", ""), 0, NULL, NULL,
                0, "describe", &res))
        buf_printf(out, " records=%s", PQgetvalue(res, 0, 0));
    PQclear(res);
}

static int pg_archive(const char *fname, const char *destpath)
{
    xsyslog(LOG_ERR, "sql: archive of a pgsql database is pg_dump's job",
            "path=%s dest=%s", fname, destpath);
    return ERR_UNSUPPORTED;
}

static int pg_unlink(const char *fname)
{
    struct db db;
    struct pg *pg = xzmalloc(sizeof(*pg));
    struct buf name = BUF_INITIALIZER;
    const char *vals[1];
    int lens[1];
    int r;

    memset(&db, 0, sizeof(db));
    db.fname = (char *)fname;
    db.engine_state = pg;
    sql_pg_tablename(fname, &name);
    pg->table = buf_release(&name);
    r = pg_connect(fname, &pg->conn);
    if (!r)
        r = pg_run(&db, pg_sql(&db, "DROP TABLE IF EXISTS ", ""), 0, NULL,
                   NULL, 0, "unlink", NULL);
    if (!r) {
        vals[0] = pg->table;
        lens[0] = (int)strlen(pg->table);
        r = pg_run(&db, "DELETE FROM columba_meta WHERE tbl = $1::text", 1,
                   vals, lens, 0, "unlink", NULL);
        if (r == ERR_NOTFOUND)
            r = 0;
    }
    pg_close(&db);
    return r;
}

const struct sql_engine sql_engine_pgsql = {
    "pgsql",
    pg_open,
    pg_close,
    pg_begin,
    pg_end,
    pg_get,
    pg_range,
    pg_put,
    pg_del,
    pg_check,
    pg_repack,
    pg_describe,
    pg_archive,
    pg_unlink
};

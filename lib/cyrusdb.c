/* The cyrusdb dispatcher: picks the backend for each open, recognises
 * and converts files written by another backend, and checks arguments
 * once for every backend. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/cyrusdb.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/mappedfile.h"
#include "lib/xmalloc.h"

extern const struct cyrusdb_backend cyrusdb_twoskip, cyrusdb_flat,
    cyrusdb_quotalegacy;
#ifdef HAVE_CYRUSDB_SQL
extern const struct cyrusdb_backend cyrusdb_sql;
#endif

/* Detection tries the backends in this order; flat, whose test is the
 * weakest (plain text), comes last. */
static const struct cyrusdb_backend *const backends[] = {
    &cyrusdb_twoskip,
#ifdef HAVE_CYRUSDB_SQL
    &cyrusdb_sql,
#endif
    &cyrusdb_quotalegacy,
    &cyrusdb_flat,
    NULL
};

#define DEFAULT_BACKEND "twoskip"
#define DETECT_LEN 512

/* The handle callers hold: one per cyrusdb_open, wrapping the
 * backend's own handle (which a backend may share between opens of the
 * same file in one process). */
struct db {
    const struct cyrusdb_backend *backend;
    struct db *engine;
    char *fname;
    int flags;
    struct txn *txn;   /* transaction begun through this handle */
};

/* ---- backends ---- */

static const struct cyrusdb_backend *backend_get(const char *name)
{
    int i;

    if (!name)
        name = DEFAULT_BACKEND;
    for (i = 0; backends[i]; i++) {
        if (!strcmp(backends[i]->name, name))
            return backends[i];
    }
    return NULL;
}

const char *const *cyrusdb_backend_names(void)
{
    static const char *names[sizeof(backends) / sizeof(backends[0])];
    int i;

    for (i = 0; backends[i]; i++)
        names[i] = backends[i]->name;
    names[i] = NULL;
    return names;
}

int cyrusdb_backend_exists(const char *name)
{
    return name && backend_get(name) != NULL;
}

int cyrusdb_init(void)
{
    return 0;
}

void cyrusdb_done(void)
{
}

/* ---- detection ---- */

static const struct cyrusdb_backend *detect_backend(const char *fname)
{
    char header[DETECT_LEN];
    ssize_t n;
    int fd, i;

    fd = open(fname, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    do {
        n = pread(fd, header, sizeof(header), 0);
    } while (n < 0 && errno == EINTR);
    close(fd);
    if (n <= 0)
        return NULL;
    for (i = 0; backends[i]; i++) {
        if (backends[i]->detect && backends[i]->detect(header, (size_t)n))
            return backends[i];
    }
    return NULL;
}

const char *cyrusdb_detect(const char *fname)
{
    const struct cyrusdb_backend *be = fname ? detect_backend(fname) : NULL;

    return be ? be->name : NULL;
}

/* ---- conversion ---- */

struct copy_rock {
    const struct cyrusdb_backend *to;
    struct db *dst;        /* backend handle */
    struct txn *dtid;
    size_t count;
};

static int copy_one(void *rock, const char *key, size_t keylen,
                    const char *data, size_t datalen)
{
    struct copy_rock *cr = rock;

    cr->count++;
    return cr->to->store(cr->dst, key, keylen, data, datalen, &cr->dtid);
}

static int fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC), r = 0;

    if (fd < 0)
        return 0; /* a backend without a file at this path */
    if (fsync(fd) < 0) {
        xsyslog_syscall("fsync", "path", path);
        r = ERR_IO;
    }
    close(fd);
    return r;
}

/* Copy every record of the open `src` (inside `stid`) into a new db
 * `tofname` of backend `to`. */
static int copy_all(const struct cyrusdb_backend *from, struct db *src,
                    struct txn **stid, const struct cyrusdb_backend *to,
                    const char *tofname, int toflags, size_t *count_r)
{
    struct copy_rock cr;
    int r;

    memset(&cr, 0, sizeof(cr));
    cr.to = to;
    r = to->open(tofname, toflags | CYRUSDB_CREATE | CYRUSDB_NOSYNC
                 | CYRUSDB_NOCOMPACT, &cr.dst, &cr.dtid);
    if (r)
        return r;
    r = from->foreach(src, "", 0, NULL, copy_one, &cr, stid);
    if (r)
        to->abort(cr.dst, cr.dtid);
    else
        r = to->commit(cr.dst, cr.dtid);
    to->close(cr.dst);
    if (!r)
        r = fsync_path(tofname);
    *count_r = cr.count;
    return r;
}

/* Rewrite `fname` from backend `from` to backend `to`, holding the
 * source's write lock throughout so no commit can slip in between the
 * copy and the rename. */
static int convert_in_place(const struct cyrusdb_backend *from,
                            const struct cyrusdb_backend *to,
                            const char *fname, int flags)
{
    struct buf tmp = BUF_INITIALIZER;
    struct db *src = NULL;
    struct txn *stid = NULL;
    size_t count = 0;
    int keep = flags & (CYRUSDB_MBOXSORT | CYRUSDB_NOSYNC);
    int r;

    r = from->open(fname, keep, &src, &stid);
    if (r)
        goto done;
    buf_printf(&tmp, "%s.CONVERT", fname);
    to->unlink(buf_cstring(&tmp), 0);
    r = copy_all(from, src, &stid, to, buf_cstring(&tmp), keep, &count);
    if (!r && rename(buf_cstring(&tmp), fname) < 0) {
        xsyslog_syscall("rename", "path", buf_cstring(&tmp));
        r = ERR_IO;
    }
    if (!r)
        r = mappedfile_syncdir(fname);
    if (r) {
        to->unlink(buf_cstring(&tmp), 0);
        xsyslog(LOG_ERR, "cyrusdb: conversion failed",
                "path=%s from=%s to=%s error=%s", fname, from->name,
                to->name, error_message(r));
    }
    else {
        xsyslog(LOG_NOTICE, "cyrusdb: converted database",
                "path=%s from=%s to=%s records=%zu", fname, from->name,
                to->name, count);
    }

done:
    if (src) {
        if (stid)
            from->abort(src, stid);
        from->close(src);
    }
    buf_free(&tmp);
    return r;
}

/* ---- open and close ---- */

static int open_common(const char *backend, const char *fname, int flags,
                       struct db **dbp, struct txn **tid)
{
    const struct cyrusdb_backend *be, *use, *found;
    struct db *engine = NULL;
    int attempt, r = 0;

    if (!fname || !*fname || !dbp)
        return ERR_INVALID;
    *dbp = NULL;
    be = backend_get(backend);
    if (!be) {
        xsyslog(LOG_ERR, "cyrusdb: unknown backend", "backend=%s",
                backend);
        return ERR_DB_BADBACKEND;
    }
    if ((flags & CYRUSDB_RDONLY) && tid)
        return ERR_DB_READONLY;

    /* A file converted by another process between our look and our
     * open shows up as ERR_DB_BADFORMAT: look again. */
    for (attempt = 0; attempt < 3; attempt++) {
        use = be;
        found = be->detect ? detect_backend(fname) : NULL;
        if (found && found != be) {
            if (flags & CYRUSDB_NOCONVERT) {
                xsyslog(LOG_ERR, "cyrusdb: file has another format",
                        "path=%s backend=%s found=%s", fname, be->name,
                        found->name);
                return ERR_DB_BADFORMAT;
            }
            if (flags & CYRUSDB_RDONLY) {
                use = found;
            }
            else {
                r = convert_in_place(found, be, fname, flags);
                if (r == ERR_DB_BADFORMAT)
                    continue;
                if (r)
                    return r;
            }
        }
        r = use->open(fname, flags, &engine, tid);
        if (r != ERR_DB_BADFORMAT)
            break;
    }
    if (r)
        return r;

    *dbp = xzmalloc(sizeof(**dbp));
    (*dbp)->backend = use;
    (*dbp)->engine = engine;
    (*dbp)->fname = xstrdup(fname);
    (*dbp)->flags = flags;
    (*dbp)->txn = tid ? *tid : NULL;
    return 0;
}

int cyrusdb_open(const char *backend, const char *fname, int flags,
                 struct db **dbp)
{
    return open_common(backend, fname, flags, dbp, NULL);
}

int cyrusdb_lockopen(const char *backend, const char *fname, int flags,
                     struct db **dbp, struct txn **tid)
{
    if (!tid)
        return ERR_INVALID;
    *tid = NULL;
    return open_common(backend, fname, flags, dbp, tid);
}

int cyrusdb_close(struct db *db)
{
    int r;

    if (!db)
        return 0;
    if (db->txn) {
        xsyslog(LOG_WARNING, "cyrusdb: closed with a transaction open, "
                "aborting it", "path=%s", db->fname);
        db->backend->abort(db->engine, db->txn);
    }
    r = db->backend->close(db->engine);
    free(db->fname);
    free(db);
    return r;
}

/* ---- argument checks ---- */

static int check_key(const char *key, size_t keylen)
{
    if (!key || !keylen)
        return ERR_INVALID;
    if (keylen > CYRUSDB_MAXKEYLEN)
        return ERR_TOOBIG;
    return 0;
}

static int check_tid(struct db *db, struct txn **tid)
{
    if (!db)
        return ERR_INVALID;
    if (tid && *tid && db->txn && *tid != db->txn)
        return ERR_DB_TXN;
    return 0;
}

static int check_write(struct db *db, struct txn **tid, const char *key,
                       size_t keylen, const char *data, size_t datalen)
{
    int r = check_tid(db, tid);

    if (r)
        return r;
    if (db->flags & CYRUSDB_RDONLY)
        return ERR_DB_READONLY;
    r = check_key(key, keylen);
    if (r)
        return r;
    if (datalen && !data)
        return ERR_INVALID;
    return datalen > CYRUSDB_MAXDATALEN ? ERR_TOOBIG : 0;
}

/* Remember a transaction the backend began through this handle. */
static int track(struct db *db, struct txn **tid, int r)
{
    if (tid && *tid && !db->txn)
        db->txn = *tid;
    return r;
}

/* ---- records ---- */

int cyrusdb_fetch(struct db *db, const char *key, size_t keylen,
                  const char **data, size_t *datalen, struct txn **tid)
{
    int r = check_tid(db, tid);

    if (!r)
        r = check_key(key, keylen);
    if (r)
        return r;
    r = db->backend->fetch(db->engine, key, keylen, data, datalen, tid);
    return track(db, tid, r);
}

int cyrusdb_fetchlock(struct db *db, const char *key, size_t keylen,
                      const char **data, size_t *datalen,
                      struct txn **tid)
{
    int r = check_tid(db, tid);

    if (!r)
        r = check_key(key, keylen);
    if (!r && tid && (db->flags & CYRUSDB_RDONLY))
        r = ERR_DB_READONLY;
    if (r)
        return r;
    r = db->backend->fetchlock(db->engine, key, keylen, data, datalen,
                               tid);
    return track(db, tid, r);
}

int cyrusdb_fetchnext(struct db *db, const char *key, size_t keylen,
                      const char **foundkey, size_t *fklen,
                      const char **data, size_t *datalen,
                      struct txn **tid)
{
    int r = check_tid(db, tid);

    if (r)
        return r;
    if ((keylen && !key) || keylen > CYRUSDB_MAXKEYLEN)
        return ERR_INVALID;
    r = db->backend->fetchnext(db->engine, keylen ? key : "", keylen,
                               foundkey, fklen, data, datalen, tid);
    return track(db, tid, r);
}

int cyrusdb_foreach(struct db *db, const char *prefix, size_t prefixlen,
                    cyrusdb_filter_t *filter, cyrusdb_cb_t *cb, void *rock,
                    struct txn **tid)
{
    int r = check_tid(db, tid);

    if (r)
        return r;
    if (!cb || (prefixlen && !prefix) || prefixlen > CYRUSDB_MAXKEYLEN)
        return ERR_INVALID;
    r = db->backend->foreach(db->engine, prefixlen ? prefix : "",
                             prefixlen, filter, cb, rock, tid);
    return track(db, tid, r);
}

int cyrusdb_create(struct db *db, const char *key, size_t keylen,
                   const char *data, size_t datalen, struct txn **tid)
{
    int r = check_write(db, tid, key, keylen, data, datalen);

    if (r)
        return r;
    r = db->backend->create(db->engine, key, keylen, datalen ? data : "",
                            datalen, tid);
    return track(db, tid, r);
}

int cyrusdb_store(struct db *db, const char *key, size_t keylen,
                  const char *data, size_t datalen, struct txn **tid)
{
    int r = check_write(db, tid, key, keylen, data, datalen);

    if (r)
        return r;
    r = db->backend->store(db->engine, key, keylen, datalen ? data : "",
                           datalen, tid);
    return track(db, tid, r);
}

int cyrusdb_delete(struct db *db, const char *key, size_t keylen,
                   struct txn **tid, int force)
{
    int r = check_write(db, tid, key, keylen, NULL, 0);

    if (r)
        return r;
    r = db->backend->delete(db->engine, key, keylen, tid, force);
    return track(db, tid, r);
}

int cyrusdb_commit(struct db *db, struct txn *tid)
{
    int r;

    if (!db || !tid)
        return ERR_INVALID;
    r = db->backend->commit(db->engine, tid);
    if (tid == db->txn)
        db->txn = NULL;
    return r;
}

int cyrusdb_abort(struct db *db, struct txn *tid)
{
    int r;

    if (!db || !tid)
        return ERR_INVALID;
    r = db->backend->abort(db->engine, tid);
    if (tid == db->txn)
        db->txn = NULL;
    return r;
}

/* ---- whole-file operations ---- */

int cyrusdb_dump(struct db *db, int detail)
{
    if (!db)
        return ERR_INVALID;
    return db->backend->dump(db->engine, detail);
}

int cyrusdb_consistent(struct db *db)
{
    if (!db)
        return ERR_INVALID;
    return db->backend->consistent(db->engine);
}

int cyrusdb_checkpoint(struct db *db)
{
    if (!db)
        return ERR_INVALID;
    if (db->flags & CYRUSDB_RDONLY)
        return ERR_DB_READONLY;
    return db->backend->checkpoint(db->engine);
}

int cyrusdb_compar(struct db *db, const char *a, size_t alen,
                   const char *b, size_t blen)
{
    if (db->backend->compar)
        return db->backend->compar(db->engine, a, alen, b, blen);
    return (db->flags & CYRUSDB_MBOXSORT) ? cyrusdb_mboxcmp(a, alen, b, blen)
                                          : cyrusdb_rawcmp(a, alen, b, blen);
}

int cyrusdb_archive(const char *backend, const strarray_t *fnames,
                    const char *dirname)
{
    const struct cyrusdb_backend *be = backend_get(backend);

    if (!be)
        return ERR_DB_BADBACKEND;
    if (!fnames || !dirname)
        return ERR_INVALID;
    return be->archive(fnames, dirname);
}

int cyrusdb_unlink(const char *backend, const char *fname, int flags)
{
    const struct cyrusdb_backend *be = backend_get(backend);

    if (!be)
        return ERR_DB_BADBACKEND;
    if (!fname)
        return ERR_INVALID;
    return be->unlink(fname, flags);
}

/* Is the open db in mailbox order?  Asked of the db itself, for files
 * that record their order. */
static int is_mbox_order(struct db *db)
{
    return cyrusdb_compar(db, "a.", 2, "a-", 2) < 0;
}

int cyrusdb_convert_ext(const char *fromfname, const char *frombackend,
                        const char *tofname, const char *tobackend,
                        int flags)
{
    struct db *src = NULL;
    struct txn *stid = NULL;
    const struct cyrusdb_backend *to = backend_get(tobackend);
    size_t count = 0;
    int r;

    if (!to)
        return ERR_DB_BADBACKEND;
    if (!frombackend)
        frombackend = cyrusdb_detect(fromfname);
    r = cyrusdb_lockopen(frombackend, fromfname,
                         (flags & CYRUSDB_MBOXSORT) | CYRUSDB_NOCONVERT,
                         &src, &stid);
    if (r)
        return r;
    if (is_mbox_order(src))
        flags |= CYRUSDB_MBOXSORT;
    r = copy_all(src->backend, src->engine, &stid, to, tofname,
                 flags & CYRUSDB_MBOXSORT, &count);
    if (!r)
        xsyslog(LOG_NOTICE, "cyrusdb: copied database",
                "from=%s to=%s backend=%s records=%zu", fromfname, tofname,
                to->name, count);
    cyrusdb_abort(src, stid);
    cyrusdb_close(src);
    return r;
}

int cyrusdb_convert(const char *fromfname, const char *frombackend,
                    const char *tofname, const char *tobackend)
{
    return cyrusdb_convert_ext(fromfname, frombackend, tofname, tobackend,
                               0);
}

/* ---- key order ---- */

int cyrusdb_rawcmp(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;

    if (c)
        return c;
    return (alen > blen) - (alen < blen);
}

/* Rank of a byte in mailbox order: NUL, '.', '/', then the rest. */
static unsigned mbox_rank(unsigned char c)
{
    if (c == 0)
        return 0;
    if (c == '.')
        return 1;
    if (c == '/')
        return 2;
    return (unsigned)c + 3;
}

int cyrusdb_mboxcmp(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t i, n = alen < blen ? alen : blen;

    for (i = 0; i < n; i++) {
        if (a[i] != b[i]) {
            unsigned ra = mbox_rank((unsigned char)a[i]);
            unsigned rb = mbox_rank((unsigned char)b[i]);

            return ra < rb ? -1 : 1;
        }
    }
    return (alen > blen) - (alen < blen);
}

/* ---- text escaping for flat files and dumps ---- */

void cyrusdb_escape(struct buf *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t i;

    buf_ensure(out, len);
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        switch (c) {
        case '\t': buf_appendmap(out, "\\t", 2); break;
        case '\n': buf_appendmap(out, "\\n", 2); break;
        case '\r': buf_appendmap(out, "\\r", 2); break;
        case '\\': buf_appendmap(out, "\\\\", 2); break;
        default:
            if (c >= 0x20 && c < 0x7f) {
                buf_putc(out, (char)c);
            }
            else {
                char e[4] = { '\\', 'x', hex[c >> 4], hex[c & 15] };

                buf_appendmap(out, e, 4);
            }
        }
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int cyrusdb_unescape(struct buf *out, const char *s, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        int hi, lo;

        if (s[i] != '\\') {
            buf_putc(out, s[i]);
            continue;
        }
        if (++i >= len)
            return ERR_CORRUPT;
        switch (s[i]) {
        case 't': buf_putc(out, '\t'); break;
        case 'n': buf_putc(out, '\n'); break;
        case 'r': buf_putc(out, '\r'); break;
        case '\\': buf_putc(out, '\\'); break;
        case 'x':
            if (len - i < 3)
                return ERR_CORRUPT;
            hi = hexval(s[i + 1]);
            lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return ERR_CORRUPT;
            buf_putc(out, (char)(hi << 4 | lo));
            i += 2;
            break;
        default:
            return ERR_CORRUPT;
        }
    }
    return 0;
}

int cyrusdb_unlink_file(const char *fname)
{
    struct buf newname = BUF_INITIALIZER;
    int r = 0;

    buf_printf(&newname, "%s.NEW", fname);
    unlink(buf_cstring(&newname));
    if (unlink(fname) < 0 && errno != ENOENT) {
        xsyslog_syscall("unlink", "path", fname);
        r = ERR_IO;
    }
    buf_free(&newname);
    return r;
}

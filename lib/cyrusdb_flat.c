/* flat: a cyrusdb backend keeping a small database as a sorted,
 * human-readable text file that is rewritten whole on every commit. */
/* Columba is free software; see COPYING for the licence. */

/*
 * FILE FORMAT
 *
 * One record per line: the key, a TAB, the value, a LF.  Key and value
 * are escaped with cyrusdb_escape(): TAB, LF, CR and backslash become
 * \t, \n, \r and \\, every other byte outside printable ASCII becomes
 * \xHH, so the file is plain printable ASCII plus TAB and LF and binary
 * keys and values survive.  Lines are sorted in the db's order (raw, or
 * mailbox order with CYRUSDB_MBOXSORT; the file does not record which,
 * and a file found out of order is sorted on load).  A file with
 * anything else in it is not a flat file (ERR_DB_BADFORMAT); a bad
 * escape, a line without TAB, an empty key or a repeated key is
 * ERR_CORRUPT.
 *
 * The whole file is loaded into memory under a shared fcntl lock and
 * kept while its inode stays the same.  A write transaction holds the
 * exclusive lock, changes the in-memory copy, and on commit writes
 * fname.NEW, syncs it and renames it over the file; a crash leaves
 * either the old or the new file.  A waiting process notices the new
 * inode when it gets the lock and reloads.  Meant for small databases:
 * each commit costs a rewrite of the whole file.
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/cyrusdb.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/mappedfile.h"
#include "lib/xmalloc.h"

/* A record: one allocation holding key, NUL, value, NUL. */
struct flatrec {
    char *key;
    size_t keylen;
    size_t vallen;
};

#define VALPTR(rec) ((rec)->key + (rec)->keylen + 1)

struct txn {
    int is_dirty;
};

struct flatdb {
    struct flatdb *next;
    char *fname;
    pid_t pid;
    int refcount;
    int flags;
    struct mappedfile *mf;
    int is_loaded;
    ino_t loaded_ino;
    int was_sorted;         /* the file on disk was in order */
    struct flatrec *recs;
    size_t n, alloc;
    struct txn *txn;
    uint64_t changes;
};

static struct flatdb *open_dbs;

static int keycmp(const struct flatdb *db, const char *a, size_t alen,
                  const char *b, size_t blen)
{
    return (db->flags & CYRUSDB_MBOXSORT) ? cyrusdb_mboxcmp(a, alen, b, blen)
                                          : cyrusdb_rawcmp(a, alen, b, blen);
}

static void rec_set(struct flatrec *rec, const char *key, size_t keylen,
                    const char *val, size_t vallen)
{
    rec->key = xmalloc(keylen + vallen + 2);
    memcpy(rec->key, key, keylen);
    rec->key[keylen] = '\0';
    memcpy(rec->key + keylen + 1, val, vallen);
    rec->key[keylen + 1 + vallen] = '\0';
    rec->keylen = keylen;
    rec->vallen = vallen;
}

static void recs_free(struct flatdb *db)
{
    size_t i;

    for (i = 0; i < db->n; i++)
        free(db->recs[i].key);
    db->n = 0;
    db->is_loaded = 0;
}

/* First index whose key is >= key. */
static size_t lower_bound(const struct flatdb *db, const char *key,
                          size_t keylen)
{
    size_t lo = 0, hi = db->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (keycmp(db, db->recs[mid].key, db->recs[mid].keylen,
                   key, keylen) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int is_found(const struct flatdb *db, size_t i, const char *key,
                    size_t keylen)
{
    return i < db->n && !keycmp(db, db->recs[i].key, db->recs[i].keylen,
                                key, keylen);
}

static int corrupt(const struct flatdb *db, size_t line, const char *why)
{
    xsyslog(LOG_ERR, "flat: database corrupt", "path=%s line=%zu reason=%s",
            db->fname, line, why);
    return ERR_CORRUPT;
}

static const struct flatdb *sort_db; /* for qsort's comparison */

static int rec_qcmp(const void *a, const void *b)
{
    const struct flatrec *ra = a, *rb = b;

    return keycmp(sort_db, ra->key, ra->keylen, rb->key, rb->keylen);
}

/* Parse one line into a new record at the end of db->recs. */
static int parse_line(struct flatdb *db, const char *p, size_t len,
                      size_t lineno, struct buf *k, struct buf *v)
{
    const char *tab = memchr(p, '\t', len);

    if (!tab)
        return corrupt(db, lineno, "no TAB");
    buf_reset(k);
    buf_reset(v);
    if (cyrusdb_unescape(k, p, (size_t)(tab - p))
        || cyrusdb_unescape(v, tab + 1, len - (size_t)(tab - p) - 1))
        return corrupt(db, lineno, "bad escape");
    if (!k->len)
        return corrupt(db, lineno, "empty key");
    if (db->n == db->alloc) {
        db->alloc = db->alloc ? db->alloc * 2 : 64;
        db->recs = xreallocarray(db->recs, db->alloc, sizeof(*db->recs));
    }
    rec_set(&db->recs[db->n], k->s, k->len, v->s ? v->s : "", v->len);
    if (db->n && keycmp(db, db->recs[db->n - 1].key,
                        db->recs[db->n - 1].keylen, k->s, k->len) >= 0)
        db->was_sorted = 0;
    db->n++;
    return 0;
}

/* Load the locked file into memory unless already loaded. */
static int load(struct flatdb *db)
{
    const char *base = mappedfile_base(db->mf), *p, *nl;
    size_t size = mappedfile_size(db->mf), i, lineno = 0;
    struct buf k = BUF_INITIALIZER, v = BUF_INITIALIZER;
    int r = 0;

    if (db->is_loaded && db->loaded_ino == mappedfile_ino(db->mf))
        return 0;
    recs_free(db);
    for (i = 0; i < size; i++) {
        unsigned char c = (unsigned char)base[i];

        if (c != '\t' && c != '\n' && (c < 0x20 || c >= 0x7f)) {
            xsyslog(LOG_ERR, "flat: not a flat file", "path=%s", db->fname);
            return ERR_DB_BADFORMAT;
        }
    }
    db->was_sorted = 1;
    for (p = base; !r && p < base + size; p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(base + size - p));
        if (!nl)
            nl = base + size;
        lineno++;
        r = parse_line(db, p, (size_t)(nl - p), lineno, &k, &v);
    }
    if (!r && !db->was_sorted) {
        sort_db = db;
        qsort(db->recs, db->n, sizeof(*db->recs), rec_qcmp);
        for (i = 1; !r && i < db->n; i++) {
            if (!rec_qcmp(&db->recs[i - 1], &db->recs[i]))
                r = corrupt(db, 0, "repeated key");
        }
    }
    buf_free(&k);
    buf_free(&v);
    if (r) {
        recs_free(db);
        return r;
    }
    db->is_loaded = 1;
    db->loaded_ino = mappedfile_ino(db->mf);
    return 0;
}

static int lock_and_load(struct flatdb *db, int how)
{
    int replaced = 0, r;

    if (how == MAPPEDFILE_EXCLUSIVE && (db->flags & CYRUSDB_RDONLY))
        return ERR_DB_READONLY;
    r = mappedfile_lock(db->mf, how, &replaced);
    /* A replaced file may reuse the inode number of the one we loaded
     * from once that is closed: only a file held open since the load
     * proves the copy current. */
    if (replaced)
        db->is_loaded = 0;
    if (!r)
        r = load(db);
    if (r)
        mappedfile_unlock(db->mf);
    return r;
}

static int write_all(int fd, const char *p, size_t len, const char *fname)
{
    while (len) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            xsyslog_syscall("write", "path", fname);
            return ERR_IO;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Write the whole db to fname.NEW and rename it into place. */
static int write_file(struct flatdb *db)
{
    struct buf out = BUF_INITIALIZER, tmp = BUF_INITIALIZER;
    size_t i;
    int fd, r = 0;

    buf_printf(&tmp, "%s.NEW", db->fname);
    fd = open(buf_cstring(&tmp), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW
              | O_CLOEXEC, 0600);
    if (fd < 0) {
        xsyslog_syscall("open", "path", buf_cstring(&tmp));
        r = ERR_IO;
        goto done;
    }
    for (i = 0; !r && i < db->n; i++) {
        cyrusdb_escape(&out, db->recs[i].key, db->recs[i].keylen);
        buf_putc(&out, '\t');
        cyrusdb_escape(&out, VALPTR(&db->recs[i]), db->recs[i].vallen);
        buf_putc(&out, '\n');
        if (out.len > 256 * 1024 || i + 1 == db->n) {
            r = write_all(fd, out.s, out.len, buf_cstring(&tmp));
            buf_reset(&out);
        }
    }
    if (!r && !(db->flags & CYRUSDB_NOSYNC) && fsync(fd) < 0) {
        xsyslog_syscall("fsync", "path", buf_cstring(&tmp));
        r = ERR_IO;
    }
    if (!r && rename(buf_cstring(&tmp), db->fname) < 0) {
        xsyslog_syscall("rename", "path", buf_cstring(&tmp));
        r = ERR_IO;
    }
    if (!r && !(db->flags & CYRUSDB_NOSYNC))
        r = mappedfile_syncdir(db->fname);
    if (r)
        unlink(buf_cstring(&tmp));
    /* Our copy matches the new file, but we do not hold that file open,
     * so its inode number may be reused by a later file before we look
     * again: forget the identity and reload at the next lock. */
    db->loaded_ino = 0;

done:
    if (fd >= 0)
        close(fd);
    buf_free(&out);
    buf_free(&tmp);
    return r;
}

/* ---- transactions ---- */

static void txn_end(struct flatdb *db)
{
    xfree(db->txn);
    mappedfile_unlock(db->mf);
}

static int flat_commit(struct db *db_, struct txn *tid)
{
    struct flatdb *db = (struct flatdb *)db_;
    int r = 0;

    if (!tid || tid != db->txn)
        return ERR_DB_TXN;
    if (tid->is_dirty)
        r = write_file(db);
    if (r)
        recs_free(db);
    txn_end(db);
    return r;
}

static int flat_abort(struct db *db_, struct txn *tid)
{
    struct flatdb *db = (struct flatdb *)db_;

    if (!tid || tid != db->txn)
        return ERR_DB_TXN;
    if (tid->is_dirty)
        recs_free(db); /* reload the committed file next time */
    txn_end(db);
    return 0;
}

/* See the twoskip backend: mode 1 shared lock taken, 2 own txn. */
static int op_begin(struct flatdb *db, struct txn **tid, int is_write,
                    int *mode_r)
{
    int r;

    *mode_r = 0;
    if (tid && *tid)
        return (*tid == db->txn) ? 0 : ERR_DB_TXN;
    if (tid || (is_write && !db->txn)) {
        if (db->txn)
            return ERR_LOCKED;
        r = lock_and_load(db, MAPPEDFILE_EXCLUSIVE);
        if (r)
            return r;
        db->txn = xzmalloc(sizeof(*db->txn));
        if (tid)
            *tid = db->txn;
        else
            *mode_r = 2;
        return 0;
    }
    if (db->txn)
        return is_write ? ERR_LOCKED : 0;
    r = lock_and_load(db, MAPPEDFILE_SHARED);
    if (!r)
        *mode_r = 1;
    return r;
}

static int op_end(struct flatdb *db, int mode, int r)
{
    if (mode == 1) {
        mappedfile_unlock(db->mf);
    }
    else if (mode == 2) {
        int r2 = r ? flat_abort((struct db *)db, db->txn)
                   : flat_commit((struct db *)db, db->txn);
        if (!r)
            r = r2;
    }
    return r;
}

/* ---- the backend interface ---- */

static int flat_detect(const char *header, size_t len)
{
    size_t i;
    int has_tab = 0;

    if (!len)
        return 0;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)header[i];

        if (c == '\t')
            has_tab = 1;
        else if (c == '\n' && !has_tab)
            return 0;
        else if (c != '\n' && (c < 0x20 || c >= 0x7f))
            return 0;
    }
    return has_tab || len >= 512;
}

static struct flatdb *find_open(const char *fname)
{
    struct flatdb *db;
    pid_t pid = getpid();

    for (db = open_dbs; db; db = db->next) {
        if (db->pid == pid && !strcmp(db->fname, fname))
            return db;
    }
    return NULL;
}

static void db_free(struct flatdb *db)
{
    struct flatdb **pp;

    for (pp = &open_dbs; *pp; pp = &(*pp)->next) {
        if (*pp == db) {
            *pp = db->next;
            break;
        }
    }
    recs_free(db);
    free(db->recs);
    mappedfile_close(&db->mf);
    free(db->fname);
    free(db);
}

static int flat_open(const char *fname, int flags, struct db **dbp,
                     struct txn **tid)
{
    struct flatdb *db = find_open(fname);
    int mfflags, mode, r;

    if (db) {
        if ((db->flags & CYRUSDB_RDONLY) && !(flags & CYRUSDB_RDONLY))
            return ERR_LOCKED; /* XXX: cannot upgrade a shared read-only
                                  handle; open read-write first */
        db->refcount++;
    }
    else {
        db = xzmalloc(sizeof(*db));
        db->fname = xstrdup(fname);
        db->pid = getpid();
        db->refcount = 1;
        db->flags = flags;
        mfflags = (flags & CYRUSDB_RDONLY) ? 0 : MAPPEDFILE_RW;
        if ((flags & CYRUSDB_CREATE) && !(flags & CYRUSDB_RDONLY))
            mfflags |= MAPPEDFILE_CREATE;
        r = mappedfile_open(fname, mfflags, &db->mf);
        if (r) {
            free(db->fname);
            free(db);
            return r;
        }
        db->next = open_dbs;
        open_dbs = db;
        r = lock_and_load(db, MAPPEDFILE_SHARED);
        if (r) {
            db_free(db);
            return r;
        }
        mappedfile_unlock(db->mf);
    }
    r = tid ? op_begin(db, tid, 1, &mode) : 0;
    if (r) {
        if (--db->refcount == 0)
            db_free(db);
        return r;
    }
    *dbp = (struct db *)db;
    return 0;
}

static int flat_close(struct db *db_)
{
    struct flatdb *db = (struct flatdb *)db_;

    if (--db->refcount > 0)
        return 0;
    if (db->txn) {
        xsyslog(LOG_WARNING, "flat: closed with a transaction open",
                "path=%s", db->fname);
        flat_abort(db_, db->txn);
    }
    db_free(db);
    return 0;
}

static int flat_fetch(struct db *db_, const char *key, size_t keylen,
                      const char **data, size_t *datalen, struct txn **tid)
{
    struct flatdb *db = (struct flatdb *)db_;
    size_t i;
    int mode, r;

    r = op_begin(db, tid, 0, &mode);
    if (r)
        return r;
    i = lower_bound(db, key, keylen);
    if (!is_found(db, i, key, keylen)) {
        r = ERR_NOTFOUND;
    }
    else {
        if (data)
            *data = VALPTR(&db->recs[i]);
        if (datalen)
            *datalen = db->recs[i].vallen;
    }
    return op_end(db, mode, r);
}

static int flat_fetchlock(struct db *db_, const char *key, size_t keylen,
                          const char **data, size_t *datalen,
                          struct txn **tid)
{
    struct flatdb *db = (struct flatdb *)db_;
    int mode, r;

    if (tid) {
        r = op_begin(db, tid, 1, &mode);
        if (r)
            return r;
    }
    return flat_fetch(db_, key, keylen, data, datalen, tid);
}

static int flat_fetchnext(struct db *db_, const char *key, size_t keylen,
                          const char **foundkey, size_t *fklen,
                          const char **data, size_t *datalen,
                          struct txn **tid)
{
    struct flatdb *db = (struct flatdb *)db_;
    size_t i;
    int mode, r;

    r = op_begin(db, tid, 0, &mode);
    if (r)
        return r;
    i = lower_bound(db, key, keylen);
    if (is_found(db, i, key, keylen))
        i++;
    if (i >= db->n) {
        r = ERR_NOTFOUND;
    }
    else {
        if (foundkey)
            *foundkey = db->recs[i].key;
        if (fklen)
            *fklen = db->recs[i].keylen;
        if (data)
            *data = VALPTR(&db->recs[i]);
        if (datalen)
            *datalen = db->recs[i].vallen;
    }
    return op_end(db, mode, r);
}

static int flat_foreach(struct db *db_, const char *prefix, size_t prefixlen,
                        cyrusdb_filter_t *filter, cyrusdb_cb_t *cb,
                        void *rock, struct txn **tid)
{
    struct flatdb *db = (struct flatdb *)db_;
    struct buf cur = BUF_INITIALIZER;
    size_t i;
    int mode, r;

    r = op_begin(db, tid, 0, &mode);
    if (r)
        return r;
    i = lower_bound(db, prefix, prefixlen);
    while (!r && i < db->n) {
        struct flatrec *rec = &db->recs[i];
        uint64_t changes = db->changes;
        ino_t ino = db->loaded_ino;

        if (rec->keylen < prefixlen || memcmp(rec->key, prefix, prefixlen))
            break;
        if (filter && !filter(rock, rec->key, rec->keylen, VALPTR(rec),
                              rec->vallen)) {
            i++;
            continue;
        }
        buf_setmap(&cur, rec->key, rec->keylen);
        if (mode == 1)
            mappedfile_unlock(db->mf);
        r = cb(rock, rec->key, rec->keylen, VALPTR(rec), rec->vallen);
        if (mode == 1) {
            int r2 = lock_and_load(db, MAPPEDFILE_SHARED);

            if (r2) {
                mode = 0;
                r = r ? r : r2;
            }
        }
        if (r)
            break;
        if (changes != db->changes || ino != db->loaded_ino) {
            i = lower_bound(db, cur.s, cur.len);
            if (is_found(db, i, cur.s, cur.len))
                i++;
        }
        else {
            i++;
        }
    }
    buf_free(&cur);
    return op_end(db, mode, r);
}

enum { OP_STORE, OP_CREATE, OP_DELETE };

static int write_op(struct flatdb *db, int op, const char *key,
                    size_t keylen, const char *val, size_t vallen, int force)
{
    size_t i = lower_bound(db, key, keylen);
    int found = is_found(db, i, key, keylen);

    if (op == OP_DELETE && !found)
        return force ? 0 : ERR_NOTFOUND;
    if (op == OP_CREATE && found)
        return ERR_EXISTS;
    db->txn->is_dirty = 1;
    db->changes++;
    if (op == OP_DELETE) {
        free(db->recs[i].key);
        memmove(&db->recs[i], &db->recs[i + 1],
                (db->n - i - 1) * sizeof(*db->recs));
        db->n--;
        return 0;
    }
    if (found) {
        free(db->recs[i].key);
    }
    else {
        if (db->n == db->alloc) {
            db->alloc = db->alloc ? db->alloc * 2 : 64;
            db->recs = xreallocarray(db->recs, db->alloc, sizeof(*db->recs));
        }
        memmove(&db->recs[i + 1], &db->recs[i],
                (db->n - i) * sizeof(*db->recs));
        db->n++;
    }
    rec_set(&db->recs[i], key, keylen, val, vallen);
    return 0;
}

static int flat_write(struct db *db_, int op, const char *key, size_t keylen,
                      const char *data, size_t datalen, struct txn **tid,
                      int force)
{
    struct flatdb *db = (struct flatdb *)db_;
    int mode, r;

    r = op_begin(db, tid, 1, &mode);
    if (r)
        return r;
    r = write_op(db, op, key, keylen, data, datalen, force);
    return op_end(db, mode, r);
}

static int flat_create(struct db *db, const char *key, size_t keylen,
                       const char *data, size_t datalen, struct txn **tid)
{
    return flat_write(db, OP_CREATE, key, keylen, data, datalen, tid, 0);
}

static int flat_store(struct db *db, const char *key, size_t keylen,
                      const char *data, size_t datalen, struct txn **tid)
{
    return flat_write(db, OP_STORE, key, keylen, data, datalen, tid, 0);
}

static int flat_delete(struct db *db, const char *key, size_t keylen,
                       struct txn **tid, int force)
{
    return flat_write(db, OP_DELETE, key, keylen, NULL, 0, tid, force);
}

static int flat_dump(struct db *db_, int detail)
{
    struct flatdb *db = (struct flatdb *)db_;
    struct buf line = BUF_INITIALIZER;
    size_t i;
    int mode, r;

    r = op_begin(db, NULL, 0, &mode);
    if (r)
        return r;
    if (detail > 0)
        printf("flat %s records=%zu\n", db->fname, db->n);
    for (i = 0; !r && i < db->n; i++) {
        buf_reset(&line);
        cyrusdb_escape(&line, db->recs[i].key, db->recs[i].keylen);
        buf_putc(&line, '\t');
        cyrusdb_escape(&line, VALPTR(&db->recs[i]), db->recs[i].vallen);
        buf_putc(&line, '\n');
        if (fwrite(line.s, 1, line.len, stdout) != line.len)
            r = ERR_IO;
    }
    buf_free(&line);
    return op_end(db, mode, r);
}

static int flat_consistent(struct db *db_)
{
    struct flatdb *db = (struct flatdb *)db_;
    int mode, r;

    r = op_begin(db, NULL, 0, &mode);
    if (r)
        return r;
    if (db->txn) {
        r = ERR_LOCKED;
    }
    else {
        /* Parse the file afresh: the check is of the file, not of us. */
        recs_free(db);
        r = load(db);
        if (!r && !db->was_sorted)
            r = corrupt(db, 0, "lines out of order");
    }
    return op_end(db, mode, r);
}

static int flat_checkpoint(struct db *db_)
{
    return 0; /* every commit already writes a compact file */
}

static int flat_compar(struct db *db_, const char *a, size_t alen,
                       const char *b, size_t blen)
{
    return keycmp((struct flatdb *)db_, a, alen, b, blen);
}

static int archive_one(const char *fname, const char *dirname)
{
    struct buf dest = BUF_INITIALIZER;
    struct mappedfile *mf = NULL;
    const char *base = strrchr(fname, '/');
    int fd = -1, r;

    buf_printf(&dest, "%s/%s", dirname, base ? base + 1 : fname);
    r = mappedfile_open(fname, 0, &mf);
    if (!r)
        r = mappedfile_lock(mf, MAPPEDFILE_SHARED, NULL);
    if (r)
        goto done;
    fd = open(buf_cstring(&dest), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW
              | O_CLOEXEC, 0600);
    if (fd < 0) {
        xsyslog_syscall("open", "path", buf_cstring(&dest));
        r = ERR_IO;
        goto done;
    }
    r = write_all(fd, mappedfile_base(mf), mappedfile_size(mf),
                  buf_cstring(&dest));
    if (!r && fsync(fd) < 0) {
        xsyslog_syscall("fsync", "path", buf_cstring(&dest));
        r = ERR_IO;
    }

done:
    if (fd >= 0)
        close(fd);
    mappedfile_close(&mf);
    buf_free(&dest);
    return r;
}

static int flat_archive(const strarray_t *fnames, const char *dirname)
{
    int i, r = 0;

    for (i = 0; !r && i < fnames->count; i++)
        r = archive_one(strarray_nth(fnames, i), dirname);
    return r;
}

static int flat_unlink(const char *fname, int flags)
{
    (void)flags;
    return cyrusdb_unlink_file(fname);
}

const struct cyrusdb_backend cyrusdb_flat = {
    .name = "flat",
    .detect = flat_detect,
    .open = flat_open,
    .close = flat_close,
    .fetch = flat_fetch,
    .fetchlock = flat_fetchlock,
    .fetchnext = flat_fetchnext,
    .foreach = flat_foreach,
    .create = flat_create,
    .store = flat_store,
    .delete = flat_delete,
    .commit = flat_commit,
    .abort = flat_abort,
    .dump = flat_dump,
    .consistent = flat_consistent,
    .checkpoint = flat_checkpoint,
    .archive = flat_archive,
    .unlink = flat_unlink,
    .compar = flat_compar,
};

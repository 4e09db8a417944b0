/* quotalegacy: a cyrusdb backend keeping one small file per quota root,
 * laid out as Cyrus administrators know it (config/quota/<h>/<root>). */
/* Columba is free software; see COPYING for the licence. */

/*
 * LAYOUT
 *
 * The db "file" name only names a directory: with fname
 * /var/lib/columba/quotas.db the records live under /var/lib/columba:
 *
 *   quota/<h>/<root>                       key "<root>"
 *   domain/<h>/<domain>/quota/<h>/<root>   key "<domain>!<root>"
 *   domain/<h>/<domain>/root               key "<domain>!"
 *
 * <h> is the hash letter of a name: for "user.X..." the first letter
 * of X, otherwise the first letter of the name, lower-cased; 'q' when
 * that is not an ASCII letter.  Each file holds the value, byte for
 * byte.
 *
 * KEYS
 *
 * Only keys that make safe file names are accepted: no NUL, no '/', no
 * leading '.', at most 255 bytes per file name, at most one '!' (the
 * domain separator) and a non-empty domain before it.  Values must not
 * be empty, because an empty file is a lock placeholder (below).
 * Anything else is ERR_INVALID.
 *
 * LOCKING
 *
 * A reader outside a transaction takes no lock: files are only ever
 * replaced whole by rename, so a read sees one committed value.  A
 * transaction locks each file it touches with an exclusive fcntl lock
 * (creating an empty placeholder for a key that does not exist yet; an
 * empty file means "absent"), and keeps the lock until the end.  After
 * taking a lock it checks that the path still names the locked file,
 * since a committing writer replaces it.  Commit writes each changed
 * value to a temporary file, syncs it and renames it over the root's
 * file, or unlinks the file for a delete, then syncs the directories.
 * The files of a multi-key transaction are replaced one after another:
 * a reader or a crash may see some of them changed and not others.
 */

#include "config.h"

#include <dirent.h>
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

#define NAME_MAXLEN 255

/* One key touched by the transaction, locked through `fd`. */
struct qlentry {
    char *key;
    size_t keylen;
    char *path;
    int fd;
    int is_present;
    int is_dirty;
    struct buf val;
};

struct txn {
    struct qlentry *e;
    size_t n, alloc;
};

struct qldb {
    struct qldb *next;
    char *fname;
    char *base;             /* dirname(fname) */
    pid_t pid;
    int refcount;
    int flags;
    struct txn *txn;
    uint64_t changes;
    struct buf val;         /* last value read outside a transaction */
    struct buf path;        /* scratch */
};

static struct qldb *open_dbs;

static int keycmp(const struct qldb *db, const char *a, size_t alen,
                  const char *b, size_t blen)
{
    return (db->flags & CYRUSDB_MBOXSORT) ? cyrusdb_mboxcmp(a, alen, b, blen)
                                          : cyrusdb_rawcmp(a, alen, b, blen);
}

static char hash_letter(const char *name, size_t len)
{
    char c;

    if (len > 5 && !memcmp(name, "user", 4)
        && (name[4] == '.' || name[4] == '/'))
        name += 5;
    c = name[0];
    if (c >= 'A' && c <= 'Z')
        c = (char)(c - 'A' + 'a');
    return (c >= 'a' && c <= 'z') ? c : 'q';
}

static int name_ok(const char *s, size_t len)
{
    return len > 0 && len <= NAME_MAXLEN && s[0] != '.'
           && !memchr(s, '/', len) && !memchr(s, '\0', len)
           && !memchr(s, '!', len);
}

/* Build the file path of `key` into `path`.  ERR_INVALID when the key
 * cannot be a file name. */
static int key_path(const struct qldb *db, const char *key, size_t keylen,
                    struct buf *path)
{
    const char *bang = memchr(key, '!', keylen);
    const char *root = key;
    size_t rootlen = keylen;

    buf_reset(path);
    buf_appendcstr(path, db->base);
    if (bang) {
        size_t dlen = (size_t)(bang - key);

        if (!name_ok(key, dlen))
            return ERR_INVALID;
        root = bang + 1;
        rootlen = keylen - dlen - 1;
        buf_printf(path, "/domain/%c/", hash_letter(key, dlen));
        buf_appendmap(path, key, dlen);
        if (!rootlen) {
            buf_appendcstr(path, "/root");
            return 0;
        }
    }
    if (!name_ok(root, rootlen))
        return ERR_INVALID;
    buf_printf(path, "/quota/%c/", hash_letter(root, rootlen));
    buf_appendmap(path, root, rootlen);
    return 0;
}

/* mkdir -p of the directory part of `path`. */
static int make_parents(const char *path)
{
    char *copy = xstrdup(path), *p;
    int r = 0;

    for (p = copy + 1; *p && !r; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(copy, 0700) < 0 && errno != EEXIST) {
            xsyslog_syscall("mkdir", "path", copy);
            r = ERR_IO;
        }
        *p = '/';
    }
    free(copy);
    return r;
}

/* Read a whole file (bounded) into `out`.  ERR_NOTFOUND for a missing
 * or empty file. */
static int read_fd(int fd, const char *path, struct buf *out)
{
    struct stat sb;
    size_t done = 0;

    buf_reset(out);
    if (fstat(fd, &sb) < 0) {
        xsyslog_syscall("fstat", "path", path);
        return ERR_IO;
    }
    if (!S_ISREG(sb.st_mode) || (uint64_t)sb.st_size > CYRUSDB_MAXDATALEN) {
        xsyslog(LOG_ERR, "quotalegacy: bad quota file", "path=%s", path);
        return ERR_CORRUPT;
    }
    if (sb.st_size == 0)
        return ERR_NOTFOUND;
    buf_ensure(out, (size_t)sb.st_size);
    while (done < (size_t)sb.st_size) {
        ssize_t n = pread(fd, out->s + done, (size_t)sb.st_size - done,
                          (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            xsyslog_syscall("pread", "path", path);
            return ERR_IO;
        }
        if (n == 0)
            break;
        done += (size_t)n;
    }
    out->len = done;
    return done ? 0 : ERR_NOTFOUND;
}

static int read_path(const char *path, struct buf *out)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC), r;

    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return ERR_NOTFOUND;
        xsyslog_syscall("open", "path", path);
        return ERR_IO;
    }
    r = read_fd(fd, path, out);
    close(fd);
    return r;
}

/* ---- transactions ---- */

static struct qlentry *txn_lookup(struct txn *t, const char *key,
                                  size_t keylen)
{
    size_t i;

    for (i = 0; t && i < t->n; i++) {
        if (t->e[i].keylen == keylen && !memcmp(t->e[i].key, key, keylen))
            return &t->e[i];
    }
    return NULL;
}

/* Open and lock the file of `path`, creating a placeholder if needed,
 * until the lock is on the file the path names. */
static int lock_path(const char *path, int *fd_r)
{
    struct flock fl;
    struct stat a, b;
    int fd, r;

    r = make_parents(path);
    if (r)
        return r;
    for (;;) {
        fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) {
            xsyslog_syscall("open", "path", path);
            return ERR_IO;
        }
        memset(&fl, 0, sizeof(fl));
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET;
        while (fcntl(fd, F_SETLKW, &fl) < 0) {
            if (errno == EINTR)
                continue;
            xsyslog(LOG_WARNING, "quotalegacy: lock refused",
                    "path=%s error=%s", path, strerror(errno));
            close(fd);
            return errno == EDEADLK ? ERR_LOCKED : ERR_IO;
        }
        if (fstat(fd, &a) == 0 && stat(path, &b) == 0
            && a.st_ino == b.st_ino && a.st_dev == b.st_dev)
            break;
        close(fd); /* replaced or removed meanwhile: try again */
    }
    *fd_r = fd;
    return 0;
}

/* The transaction's entry for `key`, locking the key on first use. */
static int txn_entry(struct qldb *db, const char *key, size_t keylen,
                     struct qlentry **e_r)
{
    struct txn *t = db->txn;
    struct qlentry *e = txn_lookup(t, key, keylen);
    int r, fd;

    if (e) {
        *e_r = e;
        return 0;
    }
    r = key_path(db, key, keylen, &db->path);
    if (!r)
        r = lock_path(buf_cstring(&db->path), &fd);
    if (r)
        return r;
    if (t->n == t->alloc) {
        t->alloc = t->alloc ? t->alloc * 2 : 8;
        t->e = xreallocarray(t->e, t->alloc, sizeof(*t->e));
    }
    e = &t->e[t->n++];
    memset(e, 0, sizeof(*e));
    e->key = xmemdup(key, keylen);
    e->keylen = keylen;
    e->path = xstrdup(buf_cstring(&db->path));
    e->fd = fd;
    r = read_fd(fd, e->path, &e->val);
    e->is_present = (r == 0);
    if (r == ERR_NOTFOUND)
        r = 0;
    *e_r = e;
    return r;
}

/* Write one changed entry into place (lock held). */
static int entry_commit(struct qldb *db, struct qlentry *e, unsigned idx)
{
    struct buf tmp = BUF_INITIALIZER;
    const char *slash = strrchr(e->path, '/');
    int fd = -1, r = 0;

    if (!e->is_present) {
        if (unlink(e->path) < 0 && errno != ENOENT) {
            xsyslog_syscall("unlink", "path", e->path);
            r = ERR_IO;
        }
        goto done;
    }
    buf_appendmap(&tmp, e->path, (size_t)(slash - e->path));
    buf_printf(&tmp, "/.tmp.%d.%u", (int)getpid(), idx);
    fd = open(buf_cstring(&tmp), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW
              | O_CLOEXEC, 0600);
    if (fd < 0) {
        xsyslog_syscall("open", "path", buf_cstring(&tmp));
        r = ERR_IO;
        goto done;
    }
    if (write(fd, e->val.s, e->val.len) != (ssize_t)e->val.len
        || (!(db->flags & CYRUSDB_NOSYNC) && fsync(fd) < 0)) {
        xsyslog_syscall("write", "path", buf_cstring(&tmp));
        r = ERR_IO;
    }
    if (!r && rename(buf_cstring(&tmp), e->path) < 0) {
        xsyslog_syscall("rename", "path", buf_cstring(&tmp));
        r = ERR_IO;
    }
    if (r)
        unlink(buf_cstring(&tmp));

done:
    if (fd >= 0)
        close(fd);
    if (!r && !(db->flags & CYRUSDB_NOSYNC))
        r = mappedfile_syncdir(e->path);
    buf_free(&tmp);
    return r;
}

/* Drop placeholders of absent keys, release every lock, free. */
static void txn_finish(struct qldb *db)
{
    struct txn *t = db->txn;
    struct stat sb;
    size_t i;

    for (i = 0; i < t->n; i++) {
        struct qlentry *e = &t->e[i];

        if (fstat(e->fd, &sb) == 0 && sb.st_size == 0 && sb.st_nlink > 0)
            unlink(e->path);
        close(e->fd);
        free(e->key);
        free(e->path);
        buf_free(&e->val);
    }
    free(t->e);
    xfree(db->txn);
}

static int ql_commit(struct db *db_, struct txn *tid)
{
    struct qldb *db = (struct qldb *)db_;
    size_t i;
    int r = 0;

    if (!tid || tid != db->txn)
        return ERR_DB_TXN;
    for (i = 0; !r && i < tid->n; i++) {
        if (tid->e[i].is_dirty)
            r = entry_commit(db, &tid->e[i], (unsigned)i);
    }
    if (r)
        xsyslog(LOG_ERR, "quotalegacy: commit failed", "path=%s error=%s",
                db->fname, error_message(r));
    txn_finish(db);
    return r;
}

static int ql_abort(struct db *db_, struct txn *tid)
{
    struct qldb *db = (struct qldb *)db_;

    if (!tid || tid != db->txn)
        return ERR_DB_TXN;
    txn_finish(db);
    return 0;
}

/* mode_r: 0 nothing to do at the end, 2 own one-shot transaction. */
static int op_begin(struct qldb *db, struct txn **tid, int is_write,
                    int *mode_r)
{
    *mode_r = 0;
    if (tid && *tid)
        return (*tid == db->txn) ? 0 : ERR_DB_TXN;
    if (tid || is_write) {
        if (db->txn)
            return ERR_LOCKED;
        if (is_write && (db->flags & CYRUSDB_RDONLY))
            return ERR_DB_READONLY;
        db->txn = xzmalloc(sizeof(*db->txn));
        if (tid)
            *tid = db->txn;
        else
            *mode_r = 2;
    }
    return 0;
}

static int op_end(struct qldb *db, int mode, int r)
{
    if (mode == 2) {
        int r2 = r ? ql_abort((struct db *)db, db->txn)
                   : ql_commit((struct db *)db, db->txn);
        if (!r)
            r = r2;
    }
    return r;
}

/* ---- reading ---- */

/* Current value of `key`: through the transaction when it holds the
 * key (or when `lock` asks to take it), from the file otherwise.  The
 * pointer is valid until the next call. */
static int get_value(struct qldb *db, const char *key, size_t keylen,
                     int lock, const char **data, size_t *datalen)
{
    struct qlentry *e = txn_lookup(db->txn, key, keylen);
    struct buf *v = &db->val;
    int r;

    if (!e && lock && db->txn) {
        r = txn_entry(db, key, keylen, &e);
        if (r)
            return r;
    }
    if (e) {
        if (!e->is_present)
            return ERR_NOTFOUND;
        v = &e->val;
    }
    else {
        r = key_path(db, key, keylen, &db->path);
        if (!r)
            r = read_path(buf_cstring(&db->path), v);
        if (r)
            return r;
    }
    if (data)
        *data = v->s;
    if (datalen)
        *datalen = v->len;
    return 0;
}

/* ---- listing ---- */

struct keylist {
    char **keys;
    size_t *lens;
    size_t n, alloc;
};

static void keylist_add(struct keylist *kl, const char *key, size_t len)
{
    if (kl->n == kl->alloc) {
        kl->alloc = kl->alloc ? kl->alloc * 2 : 64;
        kl->keys = xreallocarray(kl->keys, kl->alloc, sizeof(char *));
        kl->lens = xreallocarray(kl->lens, kl->alloc, sizeof(size_t));
    }
    kl->keys[kl->n] = xmemdup(key, len);
    kl->lens[kl->n] = len;
    kl->n++;
}

static void keylist_free(struct keylist *kl)
{
    size_t i;

    for (i = 0; i < kl->n; i++)
        free(kl->keys[i]);
    free(kl->keys);
    free(kl->lens);
    memset(kl, 0, sizeof(*kl));
}

/* Add every root file under `dir`/<h>/ with the key prefix `kp`, if it
 * is where its name hashes to; *bad_r counts the ones that are not. */
static void scan_quota_dir(struct qldb *db, const char *dir, const char *kp,
                           struct keylist *kl, size_t *bad_r)
{
    struct buf sub = BUF_INITIALIZER, key = BUF_INITIALIZER;
    DIR *d = opendir(dir), *d2;
    struct dirent *de, *de2;

    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.' || de->d_name[1])
            continue;
        buf_reset(&sub);
        buf_printf(&sub, "%s/%s", dir, de->d_name);
        d2 = opendir(buf_cstring(&sub));
        while (d2 && (de2 = readdir(d2))) {
            if (de2->d_name[0] == '.')
                continue;
            buf_setcstr(&key, kp);
            buf_appendcstr(&key, de2->d_name);
            if (key_path(db, key.s, key.len, &db->path)
                || hash_letter(de2->d_name, strlen(de2->d_name))
                       != de->d_name[0]) {
                (*bad_r)++;
                continue;
            }
            keylist_add(kl, key.s, key.len);
        }
        if (d2)
            closedir(d2);
    }
    if (d)
        closedir(d);
    buf_free(&sub);
    buf_free(&key);
}

static const struct qldb *sort_db;

static int key_qcmp(const void *a, const void *b)
{
    const char *const *ka = a, *const *kb = b;

    /* Keys hold no NUL (name_ok), so strlen gives their length. */
    return keycmp(sort_db, *ka, strlen(*ka), *kb, strlen(*kb));
}

/* All keys, in the db's order. */
static void list_keys(struct qldb *db, struct keylist *kl, size_t *bad_r)
{
    struct buf dir = BUF_INITIALIZER, kp = BUF_INITIALIZER;
    DIR *d, *d2;
    struct dirent *de, *de2;
    size_t i;

    *bad_r = 0;
    buf_printf(&dir, "%s/quota", db->base);
    scan_quota_dir(db, buf_cstring(&dir), "", kl, bad_r);

    buf_reset(&dir);
    buf_printf(&dir, "%s/domain", db->base);
    d = opendir(buf_cstring(&dir));
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        buf_reset(&dir);
        buf_printf(&dir, "%s/domain/%s", db->base, de->d_name);
        d2 = opendir(buf_cstring(&dir));
        while (d2 && (de2 = readdir(d2))) {
            if (de2->d_name[0] == '.')
                continue;
            buf_reset(&kp);
            buf_printf(&kp, "%s!", de2->d_name);
            if (!key_path(db, kp.s, kp.len, &db->path)
                && !access(buf_cstring(&db->path), F_OK))
                keylist_add(kl, kp.s, kp.len);
            buf_reset(&dir);
            buf_printf(&dir, "%s/domain/%s/%s/quota", db->base, de->d_name,
                       de2->d_name);
            scan_quota_dir(db, buf_cstring(&dir), buf_cstring(&kp), kl,
                           bad_r);
        }
        if (d2)
            closedir(d2);
    }
    if (d)
        closedir(d);

    /* NUL-terminate copies for the sort (keys hold no NUL). */
    for (i = 0; i < kl->n; i++) {
        kl->keys[i] = xrealloc(kl->keys[i], kl->lens[i] + 1);
        kl->keys[i][kl->lens[i]] = '\0';
    }
    sort_db = db;
    if (kl->n > 1)
        qsort(kl->keys, kl->n, sizeof(char *), key_qcmp);
    for (i = 0; i < kl->n; i++)
        kl->lens[i] = strlen(kl->keys[i]);
    buf_free(&dir);
    buf_free(&kp);
}

/* First index of `kl` strictly after `key` (at it when inclusive). */
static size_t keylist_seek(const struct qldb *db, const struct keylist *kl,
                           const char *key, size_t keylen, int inclusive)
{
    size_t i;

    for (i = 0; i < kl->n; i++) {
        int c = keycmp(db, kl->keys[i], kl->lens[i], key, keylen);

        if (c > 0 || (c == 0 && inclusive))
            break;
    }
    return i;
}

/* ---- the backend interface ---- */

static struct qldb *find_open(const char *fname)
{
    struct qldb *db;
    pid_t pid = getpid();

    for (db = open_dbs; db; db = db->next) {
        if (db->pid == pid && !strcmp(db->fname, fname))
            return db;
    }
    return NULL;
}

static int ql_open(const char *fname, int flags, struct db **dbp,
                   struct txn **tid)
{
    struct qldb *db = find_open(fname);
    const char *slash;
    struct stat sb;
    int mode, r;

    if (!db) {
        db = xzmalloc(sizeof(*db));
        db->fname = xstrdup(fname);
        slash = strrchr(fname, '/');
        db->base = slash ? xstrndup(fname, (size_t)(slash - fname))
                         : xstrdup(".");
        if (!*db->base) {
            free(db->base);
            db->base = xstrdup("/");
        }
        db->pid = getpid();
        db->flags = flags;
        if ((flags & CYRUSDB_CREATE) && !(flags & CYRUSDB_RDONLY))
            mkdir(db->base, 0700);
        if (stat(db->base, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
            free(db->fname);
            free(db->base);
            free(db);
            return ERR_NOTFOUND;
        }
        db->next = open_dbs;
        open_dbs = db;
    }
    db->refcount++;
    r = tid ? op_begin(db, tid, 1, &mode) : 0;
    if (r) {
        db->refcount--;
        return r;
    }
    *dbp = (struct db *)db;
    return 0;
}

static int ql_close(struct db *db_)
{
    struct qldb *db = (struct qldb *)db_, **pp;

    if (--db->refcount > 0)
        return 0;
    if (db->txn) {
        xsyslog(LOG_WARNING, "quotalegacy: closed with a transaction open",
                "path=%s", db->fname);
        txn_finish(db);
    }
    for (pp = &open_dbs; *pp; pp = &(*pp)->next) {
        if (*pp == db) {
            *pp = db->next;
            break;
        }
    }
    buf_free(&db->val);
    buf_free(&db->path);
    free(db->fname);
    free(db->base);
    free(db);
    return 0;
}

static int ql_fetch(struct db *db_, const char *key, size_t keylen,
                    const char **data, size_t *datalen, struct txn **tid)
{
    struct qldb *db = (struct qldb *)db_;
    int mode, r;

    r = op_begin(db, tid, 0, &mode);
    if (!r)
        r = get_value(db, key, keylen, tid != NULL, data, datalen);
    return op_end(db, mode, r);
}

static int ql_fetchlock(struct db *db_, const char *key, size_t keylen,
                        const char **data, size_t *datalen,
                        struct txn **tid)
{
    return ql_fetch(db_, key, keylen, data, datalen, tid);
}

static int ql_fetchnext(struct db *db_, const char *key, size_t keylen,
                        const char **foundkey, size_t *fklen,
                        const char **data, size_t *datalen,
                        struct txn **tid)
{
    struct qldb *db = (struct qldb *)db_;
    struct keylist kl;
    size_t i, bad;
    int mode, r;

    r = op_begin(db, tid, 0, &mode);
    if (r)
        return r;
    memset(&kl, 0, sizeof(kl));
    list_keys(db, &kl, &bad);
    r = ERR_NOTFOUND;
    for (i = keylist_seek(db, &kl, key, keylen, 0); i < kl.n; i++) {
        r = get_value(db, kl.keys[i], kl.lens[i], 0, data, datalen);
        if (r != ERR_NOTFOUND)
            break;
    }
    if (!r) {
        /* Hand out a key that outlives the list. */
        buf_setmap(&db->path, kl.keys[i], kl.lens[i]);
        if (foundkey)
            *foundkey = db->path.s;
        if (fklen)
            *fklen = db->path.len;
    }
    keylist_free(&kl);
    return op_end(db, mode, r);
}

static int ql_foreach(struct db *db_, const char *prefix, size_t prefixlen,
                      cyrusdb_filter_t *filter, cyrusdb_cb_t *cb,
                      void *rock, struct txn **tid)
{
    struct qldb *db = (struct qldb *)db_;
    struct keylist kl;
    struct buf cur = BUF_INITIALIZER;
    const char *data;
    size_t i, datalen, bad;
    uint64_t changes;
    int mode, r;

    r = op_begin(db, tid, 0, &mode);
    if (r)
        return r;
    memset(&kl, 0, sizeof(kl));
    list_keys(db, &kl, &bad);
    i = keylist_seek(db, &kl, prefix, prefixlen, 1);
    for (; !r && i < kl.n; i++) {
        if (kl.lens[i] < prefixlen || memcmp(kl.keys[i], prefix, prefixlen))
            break;
        r = get_value(db, kl.keys[i], kl.lens[i], 0, &data, &datalen);
        if (r == ERR_NOTFOUND) {
            r = 0;
            continue;
        }
        if (r || (filter && !filter(rock, kl.keys[i], kl.lens[i], data,
                                    datalen)))
            continue;
        changes = db->changes;
        buf_setmap(&cur, kl.keys[i], kl.lens[i]);
        r = cb(rock, cur.s, cur.len, data, datalen);
        if (!r && changes != db->changes) {
            /* The callback wrote: list again, carry on after cur. */
            keylist_free(&kl);
            list_keys(db, &kl, &bad);
            i = keylist_seek(db, &kl, cur.s, cur.len, 0) - 1;
        }
    }
    keylist_free(&kl);
    buf_free(&cur);
    return op_end(db, mode, r);
}

enum { OP_STORE, OP_CREATE, OP_DELETE };

static int ql_write(struct db *db_, int op, const char *key, size_t keylen,
                    const char *data, size_t datalen, struct txn **tid,
                    int force)
{
    struct qldb *db = (struct qldb *)db_;
    struct qlentry *e;
    int mode, r;

    if (op != OP_DELETE && !datalen)
        return ERR_INVALID;
    r = key_path(db, key, keylen, &db->path);
    if (!r)
        r = op_begin(db, tid, 1, &mode);
    if (r)
        return r;
    r = txn_entry(db, key, keylen, &e);
    if (!r && op == OP_DELETE && !e->is_present && !force)
        r = ERR_NOTFOUND;
    if (!r && op == OP_CREATE && e->is_present)
        r = ERR_EXISTS;
    if (!r) {
        e->is_present = (op != OP_DELETE);
        buf_setmap(&e->val, data, op == OP_DELETE ? 0 : datalen);
        e->is_dirty = 1;
        db->changes++;
    }
    return op_end(db, mode, r);
}

static int ql_create(struct db *db, const char *key, size_t keylen,
                     const char *data, size_t datalen, struct txn **tid)
{
    return ql_write(db, OP_CREATE, key, keylen, data, datalen, tid, 0);
}

static int ql_store(struct db *db, const char *key, size_t keylen,
                    const char *data, size_t datalen, struct txn **tid)
{
    return ql_write(db, OP_STORE, key, keylen, data, datalen, tid, 0);
}

static int ql_delete(struct db *db, const char *key, size_t keylen,
                     struct txn **tid, int force)
{
    return ql_write(db, OP_DELETE, key, keylen, NULL, 0, tid, force);
}

static int dump_one(void *rock, const char *key, size_t keylen,
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

static int ql_dump(struct db *db_, int detail)
{
    struct buf line = BUF_INITIALIZER;
    int r;

    if (detail > 0)
        printf("quotalegacy %s\n", ((struct qldb *)db_)->base);
    r = ql_foreach(db_, "", 0, NULL, dump_one, &line, NULL);
    buf_free(&line);
    return r;
}

static int ql_consistent(struct db *db_)
{
    struct qldb *db = (struct qldb *)db_;
    struct keylist kl;
    size_t bad, i;
    int r = 0;

    memset(&kl, 0, sizeof(kl));
    list_keys(db, &kl, &bad);
    if (bad) {
        xsyslog(LOG_ERR, "quotalegacy: misplaced quota files",
                "path=%s count=%zu", db->base, bad);
        r = ERR_CORRUPT;
    }
    for (i = 0; !r && i < kl.n; i++) {
        int r2 = get_value(db, kl.keys[i], kl.lens[i], 0, NULL, NULL);

        if (r2 && r2 != ERR_NOTFOUND)
            r = r2;
    }
    keylist_free(&kl);
    return r;
}

static int ql_checkpoint(struct db *db_)
{
    return 0; /* nothing accumulates */
}

static int ql_compar(struct db *db_, const char *a, size_t alen,
                     const char *b, size_t blen)
{
    return keycmp((struct qldb *)db_, a, alen, b, blen);
}

struct archive_rock {
    struct qldb *db;
    const char *dirname;
    struct buf dest;
};

static int archive_cb(void *rock, const char *key, size_t keylen,
                      const char *data, size_t datalen)
{
    struct archive_rock *ar = rock;
    int fd, r = 0;

    key_path(ar->db, key, keylen, &ar->db->path);
    buf_reset(&ar->dest);
    buf_printf(&ar->dest, "%s%s", ar->dirname,
               buf_cstring(&ar->db->path) + strlen(ar->db->base));
    r = make_parents(buf_cstring(&ar->dest));
    if (r)
        return r;
    fd = open(buf_cstring(&ar->dest), O_WRONLY | O_CREAT | O_TRUNC
              | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, data, datalen) != (ssize_t)datalen
        || fsync(fd) < 0) {
        xsyslog_syscall("write", "path", buf_cstring(&ar->dest));
        r = ERR_IO;
    }
    if (fd >= 0)
        close(fd);
    return r;
}

static int ql_archive(const strarray_t *fnames, const char *dirname)
{
    struct archive_rock ar;
    struct db *db = NULL;
    int i, r = 0;

    memset(&ar, 0, sizeof(ar));
    ar.dirname = dirname;
    for (i = 0; !r && i < fnames->count; i++) {
        r = ql_open(strarray_nth(fnames, i), CYRUSDB_RDONLY, &db, NULL);
        if (r)
            break;
        ar.db = (struct qldb *)db;
        r = ql_foreach(db, "", 0, NULL, archive_cb, &ar, NULL);
        ql_close(db);
    }
    buf_free(&ar.dest);
    return r;
}

static int unlink_cb(void *rock, const char *key, size_t keylen,
                     const char *data, size_t datalen)
{
    struct qldb *db = rock;

    if (!key_path(db, key, keylen, &db->path))
        unlink(buf_cstring(&db->path));
    return 0;
}

static int ql_unlink(const char *fname, int flags)
{
    struct db *db = NULL;
    int r;

    r = ql_open(fname, 0, &db, NULL);
    if (r)
        return r == ERR_NOTFOUND ? 0 : r;
    r = ql_foreach(db, "", 0, NULL, unlink_cb, db, NULL);
    ql_close(db);
    return r;
}

const struct cyrusdb_backend cyrusdb_quotalegacy = {
    .name = "quotalegacy",
    .detect = NULL, /* a directory tree, not a file with a header */
    .open = ql_open,
    .close = ql_close,
    .fetch = ql_fetch,
    .fetchlock = ql_fetchlock,
    .fetchnext = ql_fetchnext,
    .foreach = ql_foreach,
    .create = ql_create,
    .store = ql_store,
    .delete = ql_delete,
    .commit = ql_commit,
    .abort = ql_abort,
    .dump = ql_dump,
    .consistent = ql_consistent,
    .checkpoint = ql_checkpoint,
    .archive = ql_archive,
    .unlink = ql_unlink,
    .compar = ql_compar,
};

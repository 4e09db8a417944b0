/* A database file mapped read-only into memory, with fcntl locking that
 * follows the file when it is replaced by rename, and size tracking. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/error.h"
#include "lib/log.h"
#include "lib/mappedfile.h"
#include "lib/xmalloc.h"

/* The map is made larger than the file, so appends by a writer (ours or
 * another process's) usually need no remap: pages past the end of the
 * file become readable once the file grows to cover them.  Callers
 * never read past mappedfile_size(). */
#define MAP_SLACK_MIN (256 * 1024)

struct mappedfile {
    char *fname;
    int fd;
    int is_rw;
    int lockstate;
    ino_t ino;
    dev_t dev;
    char *base;       /* MAP_FAILED-free: NULL when not mapped */
    size_t map_len;   /* bytes mapped */
    size_t size;      /* file size as last seen */
    time_t checked;   /* monotonic second of the last path check */
};

/* A monotonic clock in seconds, cheap enough for every lock. */
static time_t now_coarse(void)
{
    struct timespec ts;

#ifdef CLOCK_MONOTONIC_COARSE
    if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) == 0)
        return ts.tv_sec;
#endif
    if (clock_gettime(CLOCK_MONOTONIC, &ts) == 0)
        return ts.tv_sec;
    return time(NULL);
}

static size_t page_round(size_t len)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);

    return (len + pg - 1) / pg * pg;
}

static void map_release(struct mappedfile *mf)
{
    if (mf->base)
        munmap(mf->base, mf->map_len);
    mf->base = NULL;
    mf->map_len = 0;
}

/* Make sure the map covers `size` bytes. */
static int map_ensure(struct mappedfile *mf, size_t size)
{
    size_t want;
    void *p;

    if (mf->base && size <= mf->map_len)
        return 0;
    want = page_round(size + size / 4 + MAP_SLACK_MIN);
    map_release(mf);
    p = mmap(NULL, want, PROT_READ, MAP_SHARED, mf->fd, 0);
    if (p == MAP_FAILED) {
        xsyslog_syscall("mmap", "path", mf->fname);
        return ERR_IO;
    }
    mf->base = p;
    mf->map_len = want;
    return 0;
}

/* Open the path into mf->fd and record its identity. */
static int file_open(struct mappedfile *mf, int create)
{
    int oflags = (mf->is_rw ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC;
    struct stat sb;

    if (create)
        oflags |= O_CREAT;
    mf->fd = open(mf->fname, oflags, 0600);
    if (mf->fd < 0) {
        if (errno == ENOENT)
            return ERR_NOTFOUND;
        xsyslog_syscall("open", "path", mf->fname);
        return ERR_IO;
    }
    if (fstat(mf->fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        xsyslog(LOG_ERR, "database is not a regular file",
                "path=%s", mf->fname);
        close(mf->fd);
        mf->fd = -1;
        return ERR_IO;
    }
    mf->ino = sb.st_ino;
    mf->dev = sb.st_dev;
    mf->size = (size_t)sb.st_size;
    return map_ensure(mf, mf->size);
}

int mappedfile_open(const char *fname, int flags, struct mappedfile **mfp)
{
    struct mappedfile *mf = xzmalloc(sizeof(*mf));
    int r;

    mf->fname = xstrdup(fname);
    mf->fd = -1;
    mf->is_rw = !!(flags & MAPPEDFILE_RW);
    r = file_open(mf, flags & MAPPEDFILE_CREATE);
    if (r) {
        mappedfile_close(&mf);
        return r;
    }
    *mfp = mf;
    return 0;
}

void mappedfile_close(struct mappedfile **mfp)
{
    struct mappedfile *mf = *mfp;

    if (!mf)
        return;
    map_release(mf);
    if (mf->fd >= 0)
        close(mf->fd);
    free(mf->fname);
    free(mf);
    *mfp = NULL;
}

static int set_lock(struct mappedfile *mf, short type, int wait)
{
    struct flock fl;

    memset(&fl, 0, sizeof(fl));
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    for (;;) {
        if (fcntl(mf->fd, wait ? F_SETLKW : F_SETLK, &fl) == 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno == EDEADLK || errno == EAGAIN || errno == EACCES) {
            xsyslog(LOG_WARNING, "database lock refused",
                    "path=%s error=%s", mf->fname, strerror(errno));
            return ERR_LOCKED;
        }
        xsyslog_syscall("fcntl", "path", mf->fname);
        return ERR_IO;
    }
}

/* After taking a lock: does the path still name the file we locked? */
static int still_current(struct mappedfile *mf)
{
    struct stat sb;

    if (stat(mf->fname, &sb) < 0)
        return 1; /* removed: keep working on the file we have */
    return sb.st_ino == mf->ino && sb.st_dev == mf->dev;
}

int mappedfile_lock(struct mappedfile *mf, int how, int *replaced_r)
{
    short type = (how == MAPPEDFILE_EXCLUSIVE) ? F_WRLCK : F_RDLCK;
    int r;

    if (replaced_r)
        *replaced_r = 0;
    if (mf->lockstate == how)
        return 0;
    if (how == MAPPEDFILE_SHARED && mf->lockstate == MAPPEDFILE_EXCLUSIVE) {
        /* Downgrade in place: nobody can replace the file meanwhile. */
        r = set_lock(mf, F_RDLCK, 1);
        if (!r)
            mf->lockstate = MAPPEDFILE_SHARED;
        return r;
    }

    for (;;) {
        r = set_lock(mf, type, 1);
        if (r)
            return r;
        mf->checked = now_coarse();
        if (still_current(mf))
            break;
        /* Replaced by rename (repack, flat commit): follow it. */
        set_lock(mf, F_UNLCK, 0);
        mf->lockstate = MAPPEDFILE_UNLOCKED;
        map_release(mf);
        close(mf->fd);
        mf->fd = -1;
        r = file_open(mf, 0);
        if (r)
            return r;
        if (replaced_r)
            *replaced_r = 1;
    }
    mf->lockstate = how;
    return mappedfile_refresh(mf);
}

int mappedfile_lock_quick(struct mappedfile *mf, int how, int *replaced_r)
{
    int r;

    /* The safety net: look at the path about once a second anyway, for
     * replacements the caller's file format does not announce. */
    if (mf->lockstate != MAPPEDFILE_UNLOCKED || !mf->size
        || now_coarse() != mf->checked)
        return mappedfile_lock(mf, how, replaced_r);
    if (replaced_r)
        *replaced_r = 0;
    r = set_lock(mf, how == MAPPEDFILE_EXCLUSIVE ? F_WRLCK : F_RDLCK, 1);
    if (!r)
        mf->lockstate = how;
    return r;
}

int mappedfile_unlock(struct mappedfile *mf)
{
    int r;

    if (mf->lockstate == MAPPEDFILE_UNLOCKED)
        return 0;
    r = set_lock(mf, F_UNLCK, 0);
    mf->lockstate = MAPPEDFILE_UNLOCKED;
    return r;
}

int mappedfile_lockstate(const struct mappedfile *mf)
{
    return mf->lockstate;
}

int mappedfile_refresh(struct mappedfile *mf)
{
    struct stat sb;

    if (fstat(mf->fd, &sb) < 0) {
        xsyslog_syscall("fstat", "path", mf->fname);
        return ERR_IO;
    }
    mf->size = (size_t)sb.st_size;
    return map_ensure(mf, mf->size);
}

const char *mappedfile_base(const struct mappedfile *mf)
{
    return mf->base;
}

size_t mappedfile_size(const struct mappedfile *mf)
{
    return mf->size;
}

char *const *mappedfile_base_ref(const struct mappedfile *mf)
{
    return &mf->base;
}

int mappedfile_pwrite(struct mappedfile *mf, const void *data, size_t len,
                      size_t off)
{
    const char *p = data;
    size_t done = 0;

    if (!mf->is_rw)
        return ERR_DB_READONLY;
    while (done < len) {
        ssize_t n = pwrite(mf->fd, p + done, len - done,
                           (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            xsyslog_syscall("pwrite", "path", mf->fname);
            return ERR_IO;
        }
        done += (size_t)n;
    }
    if (off + len > mf->size)
        mf->size = off + len;
    return map_ensure(mf, mf->size);
}

int mappedfile_truncate(struct mappedfile *mf, size_t len)
{
    if (ftruncate(mf->fd, (off_t)len) < 0) {
        xsyslog_syscall("ftruncate", "path", mf->fname);
        return ERR_IO;
    }
    mf->size = len;
    return 0;
}

int mappedfile_sync(struct mappedfile *mf)
{
    if (fdatasync(mf->fd) < 0) {
        xsyslog_syscall("fdatasync", "path", mf->fname);
        return ERR_IO;
    }
    return 0;
}

int mappedfile_syncdir(const char *path)
{
    char *copy = xstrdup(path);
    int fd, r = 0;

    fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0) {
        xsyslog_syscall(fd < 0 ? "open" : "fsync", "path", path);
        r = ERR_IO;
    }
    if (fd >= 0)
        close(fd);
    free(copy);
    return r;
}

int mappedfile_rename(struct mappedfile *mf, const char *newname)
{
    if (rename(mf->fname, newname) < 0) {
        xsyslog_syscall("rename", "path", mf->fname);
        return ERR_IO;
    }
    free(mf->fname);
    mf->fname = xstrdup(newname);
    return mappedfile_syncdir(newname);
}

const char *mappedfile_fname(const struct mappedfile *mf)
{
    return mf->fname;
}

int mappedfile_fd(const struct mappedfile *mf)
{
    return mf->fd;
}

ino_t mappedfile_ino(const struct mappedfile *mf)
{
    return mf->ino;
}

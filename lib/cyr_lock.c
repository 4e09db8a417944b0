/* Whole-file fcntl() locks: shared for readers, exclusive for writers,
 * blocking, non-blocking or bounded by a timeout, and a lock-by-path that
 * survives the file being replaced by rename() while we waited. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/cyr_lock.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/times.h"

/* Polling interval while waiting with a deadline: it starts short, for
 * the common brief contention, and backs off to this ceiling. */
#define LOCK_POLL_MIN_USEC 1000
#define LOCK_POLL_MAX_USEC 50000

/* How many times lock_reopen() follows a replaced file before deciding
 * something keeps swapping it under us. */
#define LOCK_REOPEN_TRIES 100

static int fail_syscall(const char *call, const char *filename)
{
    xsyslog_syscall(call, "path", filename ? filename : "(unknown)");
    return ERR_IO;
}

/* One fcntl() call on the whole file; returns the fcntl() result. */
static int set_lock(int fd, short type, int cmd)
{
    struct flock fl;

    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 0;
    fl.l_pid = 0;
    return fcntl(fd, cmd, &fl);
}

/* Block until locked.  EINTR restarts the wait: a signal's work is done
 * by whoever polls signals later, not by abandoning the lock. */
static int lock_wait(int fd, short type, const char *filename)
{
    while (set_lock(fd, type, F_SETLKW) < 0) {
        if (errno == EINTR)
            continue;
        if (errno == EDEADLK) {
            xsyslog(LOG_ERR, "lock deadlock", "path=%s",
                    filename ? filename : "(unknown)");
            return ERR_LOCKED;
        }
        return fail_syscall("fcntl", filename);
    }
    return 0;
}

static void sleep_usec(int64_t usec)
{
    struct timespec ts;

    ts.tv_sec = (time_t)(usec / 1000000);
    ts.tv_nsec = (long)(usec % 1000000) * 1000;
    nanosleep(&ts, NULL);
}

/* Try until locked or `deadline` (monotonic usec) passes; a deadline of
 * 0 tries exactly once. */
static int lock_until(int fd, short type, int64_t deadline,
                      const char *filename)
{
    int64_t pause = LOCK_POLL_MIN_USEC;
    int64_t now;

    for (;;) {
        if (set_lock(fd, type, F_SETLK) == 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EACCES)
            return fail_syscall("fcntl", filename);
        if (!deadline)
            return ERR_LOCKED;
        now = times_monotonic_usec();
        if (now >= deadline)
            return ERR_TIMEOUT;
        sleep_usec(pause < deadline - now ? pause : deadline - now);
        if (pause < LOCK_POLL_MAX_USEC)
            pause *= 2;
    }
}

/* Deadline for a timeout in ms: -1 for none (block), 0 for one try. */
static int64_t deadline_for(int timeout_ms)
{
    if (timeout_ms < 0)
        return -1;
    if (timeout_ms == 0)
        return 0;
    return times_monotonic_usec() + (int64_t)timeout_ms * 1000;
}

/* Lock with a deadline as made by deadline_for().  A deadline already
 * in the past still gets one try. */
static int lock_deadline(int fd, int exclusive, int64_t deadline,
                         const char *filename)
{
    short type = exclusive ? F_WRLCK : F_RDLCK;

    if (deadline < 0)
        return lock_wait(fd, type, filename);
    return lock_until(fd, type, deadline, filename);
}

int lock_shared(int fd, const char *filename)
{
    return lock_wait(fd, F_RDLCK, filename);
}

int lock_exclusive(int fd, const char *filename)
{
    return lock_wait(fd, F_WRLCK, filename);
}

int lock_nonblocking(int fd, const char *filename)
{
    return lock_until(fd, F_WRLCK, 0, filename);
}

int lock_shared_nonblocking(int fd, const char *filename)
{
    return lock_until(fd, F_RDLCK, 0, filename);
}

int lock_timeout(int fd, int exclusive, int timeout_ms, const char *filename)
{
    return lock_deadline(fd, exclusive, deadline_for(timeout_ms), filename);
}

int lock_unlock(int fd, const char *filename)
{
    while (set_lock(fd, F_UNLCK, F_SETLK) < 0) {
        if (errno != EINTR)
            return fail_syscall("fcntl", filename);
    }
    return 0;
}

/* Is the file behind `fd` still the one `path` names?  1 yes, 0 no
 * (replaced or removed), -1 on error.  Fills *sb_r from fstat. */
static int still_same(int fd, const char *path, struct stat *sb_r)
{
    struct stat psb;

    if (fstat(fd, sb_r) < 0) {
        fail_syscall("fstat", path);
        return -1;
    }
    if (stat(path, &psb) < 0) {
        if (errno == ENOENT)
            return 0;
        fail_syscall("stat", path);
        return -1;
    }
    return psb.st_dev == sb_r->st_dev && psb.st_ino == sb_r->st_ino;
}

int lock_reopen_timeout(int *fdp, const char *path, int exclusive,
                        int timeout_ms, struct stat *sb_r)
{
    int64_t deadline = deadline_for(timeout_ms);
    int accmode = exclusive ? O_RDWR : O_RDONLY;
    struct stat sb;
    int tries, same, flags, r;

    for (tries = 0; tries < LOCK_REOPEN_TRIES; tries++) {
        if (*fdp < 0) {
            *fdp = open(path, accmode | O_CLOEXEC);
            if (*fdp < 0) {
                if (errno == ENOENT)
                    return ERR_NOTFOUND;
                return fail_syscall("open", path);
            }
        }

        /* Every round shares the one deadline; once it has passed,
         * each round still gets a single try. */
        r = lock_deadline(*fdp, exclusive, deadline, path);
        if (r)
            return r;

        same = still_same(*fdp, path, &sb);
        if (same < 0) {
            lock_unlock(*fdp, path);
            return ERR_IO;
        }
        if (same) {
            if (sb_r)
                *sb_r = sb;
            return 0;
        }

        /* Replaced while we waited: our lock guards a dead inode.  Keep
         * the caller's access mode for the fresh descriptor. */
        flags = fcntl(*fdp, F_GETFL);
        if (flags >= 0)
            accmode = flags & O_ACCMODE;
        close(*fdp);
        *fdp = -1;
    }
    xsyslog(LOG_ERR, "lock file keeps being replaced", "path=%s", path);
    return ERR_AGAIN;
}

int lock_reopen(int *fdp, const char *path, int exclusive, struct stat *sb_r)
{
    return lock_reopen_timeout(fdp, path, exclusive, -1, sb_r);
}

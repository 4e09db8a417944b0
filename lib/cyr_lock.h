/* Whole-file fcntl() locks: shared for readers, exclusive for writers,
 * blocking, non-blocking or bounded by a timeout, and a lock-by-path that
 * survives the file being replaced by rename() while we waited. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_LIB_CYR_LOCK_H
#define COLUMBA_LIB_CYR_LOCK_H

#include <sys/stat.h>

/* fcntl() locks belong to the process, not the descriptor: a second
 * lock call from the same process always succeeds (it converts the
 * lock), and closing ANY descriptor of the file drops the process's
 * lock on it.  Keep one descriptor per locked file.
 *
 * `filename` arguments are used only in log lines and may be NULL.
 * Failures other than contention are logged. */

/* Wait as long as needed for a shared (read) lock on all of `fd`, which
 * must be open for reading.  Returns 0, ERR_LOCKED on deadlock, or
 * ERR_IO. */
int lock_shared(int fd, const char *filename);

/* Wait for an exclusive (write) lock; `fd` must be open for writing.
 * Returns as lock_shared(). */
int lock_exclusive(int fd, const char *filename);

/* Try once for an exclusive lock: 0, ERR_LOCKED when another process
 * holds a conflicting lock, or ERR_IO. */
int lock_nonblocking(int fd, const char *filename);

/* Try once for a shared lock: 0, ERR_LOCKED, or ERR_IO. */
int lock_shared_nonblocking(int fd, const char *filename);

/* Try for a lock for up to `timeout_ms` milliseconds, polling with
 * short sleeps (no alarm(), so no signal handler is disturbed).  A
 * negative timeout waits forever, 0 tries once.  Returns 0, ERR_TIMEOUT
 * (ERR_LOCKED when timeout_ms is 0), or ERR_IO. */
int lock_timeout(int fd, int exclusive, int timeout_ms, const char *filename);

/* Release this process's lock on `fd`.  Returns 0 or ERR_IO. */
int lock_unlock(int fd, const char *filename);

/* Lock the file at `path` and make sure the lock is on the file that is
 * at `path` now.  *fdp is an open descriptor of `path`, or -1 to have it
 * opened here (read-write for exclusive, read-only for shared).  After
 * locking, the inode of *fdp is compared with the one `path` names; if
 * another process replaced the file (rename over it) while we waited,
 * the stale descriptor is closed, `path` is opened again with the same
 * access mode, and the lock is retried.  On success *fdp is the locked
 * descriptor and *sb_r (if not NULL) its fstat().  Returns 0,
 * ERR_NOTFOUND when `path` is gone, ERR_AGAIN when the file kept being
 * replaced, or as lock_shared().  On failure *fdp is -1 or an open,
 * unlocked descriptor; the caller closes it in either case. */
int lock_reopen(int *fdp, const char *path, int exclusive,
                struct stat *sb_r);

/* lock_reopen() giving up with ERR_TIMEOUT after `timeout_ms`
 * milliseconds in total (negative: wait forever). */
int lock_reopen_timeout(int *fdp, const char *path, int exclusive,
                        int timeout_ms, struct stat *sb_r);

#endif /* COLUMBA_LIB_CYR_LOCK_H */

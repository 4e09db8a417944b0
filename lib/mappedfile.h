/* A database file mapped read-only into memory, with fcntl locking that
 * follows the file when it is replaced by rename, and size tracking. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_LIB_MAPPEDFILE_H
#define COLUMBA_LIB_MAPPEDFILE_H

#include <stddef.h>
#include <sys/types.h>

struct mappedfile;

/* Flags for mappedfile_open(). */
enum {
    MAPPEDFILE_CREATE = 0x01, /* create the file (mode 0600) if missing */
    MAPPEDFILE_RW = 0x02      /* open for writing as well as reading */
};

/* Lock states. */
enum {
    MAPPEDFILE_UNLOCKED = 0,
    MAPPEDFILE_SHARED = 1,
    MAPPEDFILE_EXCLUSIVE = 2
};

/* Open `fname` (O_NOFOLLOW; must be a regular file) and map it.
 * Returns 0, ERR_NOTFOUND when missing without MAPPEDFILE_CREATE, or
 * ERR_IO (logged).  The caller closes *mfp with mappedfile_close(). */
int mappedfile_open(const char *fname, int flags, struct mappedfile **mfp);

/* Unmap, unlock and close; sets *mfp to NULL.  NULL accepted. */
void mappedfile_close(struct mappedfile **mfp);

/* Take a shared or exclusive lock (waiting for it), a no-op when the
 * lock held is already at least as strong, except that asking for a
 * shared lock while holding an exclusive one downgrades it.  If the
 * path now names a different file (it was replaced by rename), the
 * new file is opened and locked instead and *replaced_r (may be NULL)
 * is set to 1.  The map is refreshed to the current file size.
 * Returns 0, ERR_LOCKED (deadlock detected) or ERR_IO. */
int mappedfile_lock(struct mappedfile *mf, int how, int *replaced_r);

/* The same as mappedfile_lock() without its stat(2) and fstat(2) when
 * the path was last checked within the current second: the path is
 * assumed to name the open file still, and the size last seen is kept,
 * though the file may since have grown (call mappedfile_refresh() to
 * read past it) or shrunk (read only what the file's own contents say
 * is there).  For callers whose file announces its own replacement in
 * its contents: they check that after locking, and unlock and call
 * mappedfile_lock() when it says so.  Any other replacement is noticed
 * at the first lock in a later second.  Returns 0, ERR_LOCKED or
 * ERR_IO. */
int mappedfile_lock_quick(struct mappedfile *mf, int how, int *replaced_r);

/* Release the lock.  Returns 0 or ERR_IO. */
int mappedfile_unlock(struct mappedfile *mf);

/* The lock currently held (MAPPEDFILE_UNLOCKED/SHARED/EXCLUSIVE). */
int mappedfile_lockstate(const struct mappedfile *mf);

/* Re-read the file size and extend the map when the file grew. */
int mappedfile_refresh(struct mappedfile *mf);

/* The mapped bytes (valid up to mappedfile_size()) until the next call
 * that may remap: lock, refresh, write, truncate, close. */
const char *mappedfile_base(const struct mappedfile *mf);
size_t mappedfile_size(const struct mappedfile *mf);

/* Where mappedfile_base() is kept: *ref is always the current base, so
 * a caller reading the map in a tight loop need not call out for it.
 * Valid until mappedfile_close(). */
char *const *mappedfile_base_ref(const struct mappedfile *mf);

/* Write `len` bytes at `off` (extending the file and the map if
 * needed).  Requires MAPPEDFILE_RW.  Returns 0 or ERR_IO (logged). */
int mappedfile_pwrite(struct mappedfile *mf, const void *data, size_t len,
                      size_t off);

/* Cut the file to `len` bytes.  Returns 0 or ERR_IO (logged). */
int mappedfile_truncate(struct mappedfile *mf, size_t len);

/* fdatasync the file.  Returns 0 or ERR_IO (logged). */
int mappedfile_sync(struct mappedfile *mf);

/* Rename the file to `newname` (same directory) and make the rename
 * durable (fsync of the directory).  Returns 0 or ERR_IO (logged). */
int mappedfile_rename(struct mappedfile *mf, const char *newname);

const char *mappedfile_fname(const struct mappedfile *mf);
int mappedfile_fd(const struct mappedfile *mf);
/* Inode of the open file, to notice a replacement by another process. */
ino_t mappedfile_ino(const struct mappedfile *mf);

/* fsync the directory holding `path`, making a rename or create durable.
 * Returns 0 or ERR_IO (logged). */
int mappedfile_syncdir(const char *path);

#endif /* COLUMBA_LIB_MAPPEDFILE_H */

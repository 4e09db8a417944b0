/* Whole-buffer read and write that survive EINTR, short transfers and
 * non-blocking descriptors. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_LIB_RETRY_H
#define COLUMBA_LIB_RETRY_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

/* Read exactly `n` bytes from `fd` into `buf` unless end of file comes
 * first.  Returns the number of bytes read (less than `n` only at EOF),
 * or -1 with errno set on error.  Interrupted calls are restarted; on a
 * non-blocking descriptor it waits with poll() for more data. */
ssize_t retry_read(int fd, void *buf, size_t n);

/* Write all `n` bytes of `buf` to `fd`.  Returns n, or -1 with errno
 * set (a partial write may have happened).  Same retry rules as
 * retry_read(). */
ssize_t retry_write(int fd, const void *buf, size_t n);

/* Write every byte of the `iovcnt` buffers in `iov` (any count: more
 * than IOV_MAX is split).  The caller's array is not modified.  Returns
 * the total written, or -1 with errno set (EINVAL when the total does
 * not fit in ssize_t or iovcnt is negative). */
ssize_t retry_writev(int fd, const struct iovec *iov, int iovcnt);

#endif /* COLUMBA_LIB_RETRY_H */

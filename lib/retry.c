/* Whole-buffer read and write that survive EINTR, short transfers and
 * non-blocking descriptors. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "lib/retry.h"
#include "lib/xmalloc.h"

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

/* The largest single transfer we ask of the kernel; it keeps each
 * result representable in ssize_t. */
#define RETRY_CHUNK ((size_t)1 << 30)

/* After an error from read/write: should we try again?  EINTR always;
 * EAGAIN after waiting for the descriptor to become ready. */
static int should_retry(int fd, short events)
{
    struct pollfd pfd;
    int saved;

    if (errno == EINTR)
        return 1;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
        return 0;
    saved = errno;
    pfd.fd = fd;
    pfd.events = events;
    while (poll(&pfd, 1, -1) < 0) {
        if (errno != EINTR)
            return 0;
    }
    errno = saved;
    return 1;
}

ssize_t retry_read(int fd, void *buf, size_t n)
{
    char *p = buf;
    size_t done = 0;

    if (n > SSIZE_MAX) {
        errno = EINVAL;
        return -1;
    }
    while (done < n) {
        size_t want = n - done < RETRY_CHUNK ? n - done : RETRY_CHUNK;
        ssize_t got = read(fd, p + done, want);
        if (got == 0)
            break;
        if (got < 0) {
            if (should_retry(fd, POLLIN))
                continue;
            return -1;
        }
        done += (size_t)got;
    }
    return (ssize_t)done;
}

ssize_t retry_write(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    size_t done = 0;

    if (n > SSIZE_MAX) {
        errno = EINVAL;
        return -1;
    }
    while (done < n) {
        size_t want = n - done < RETRY_CHUNK ? n - done : RETRY_CHUNK;
        ssize_t put = write(fd, p + done, want);
        if (put < 0) {
            if (should_retry(fd, POLLOUT))
                continue;
            return -1;
        }
        if (put == 0) {
            /* A write of a non-empty buffer that moves nothing would
             * loop forever; treat it as an I/O error. */
            errno = EIO;
            return -1;
        }
        done += (size_t)put;
    }
    return (ssize_t)done;
}

/* Sum of the iovec lengths; -1 if it would not fit in ssize_t. */
static ssize_t iov_total(const struct iovec *iov, int iovcnt)
{
    size_t total = 0;
    int i;

    for (i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > SSIZE_MAX - total)
            return -1;
        total += iov[i].iov_len;
    }
    return (ssize_t)total;
}

ssize_t retry_writev(int fd, const struct iovec *iov, int iovcnt)
{
    struct iovec *work;
    ssize_t total;
    int first = 0;

    if (iovcnt < 0 || (iovcnt && !iov)) {
        errno = EINVAL;
        return -1;
    }
    total = iov_total(iov, iovcnt);
    if (total < 0) {
        errno = EINVAL;
        return -1;
    }
    if (!iovcnt)
        return 0;

    /* A private copy we can advance past partial writes. */
    work = xmemdup(iov, sizeof(*iov) * (size_t)iovcnt);
    while (first < iovcnt) {
        int cnt = iovcnt - first < IOV_MAX ? iovcnt - first : IOV_MAX;
        ssize_t put;
        size_t left;

        if (!work[first].iov_len) {
            first++;
            continue;
        }
        put = writev(fd, work + first, cnt);
        if (put < 0) {
            if (should_retry(fd, POLLOUT))
                continue;
            total = -1;
            break;
        }
        if (put == 0) {
            errno = EIO;
            total = -1;
            break;
        }

        /* Skip the buffers written whole, then trim the partial one. */
        left = (size_t)put;
        while (first < iovcnt && left >= work[first].iov_len)
            left -= work[first++].iov_len;
        if (left) {
            work[first].iov_base = (char *)work[first].iov_base + left;
            work[first].iov_len -= left;
        }
    }
    if (total < 0) {
        int e = errno;
        free(work);
        errno = e;
        return -1;
    }
    free(work);
    return total;
}

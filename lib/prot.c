/* Buffered network I/O for the protocol daemons, with TLS and
 * COMPRESS=DEFLATE layers. */
/* Columba is free software; see COPYING for the licence. */

/*
 * Layering
 * --------
 * A protstream is one direction of a connection.  Its plaintext buffer
 * `buf` (PROT_BUFSIZE bytes) holds exactly what the protocol code reads
 * or writes.  Between that buffer and the descriptor sit up to two
 * layers, innermost first:
 *
 *     protocol code  <->  buf  <->  [DEFLATE]  <->  [TLS]  <->  fd
 *
 *   write:  prot_write -> buf --deflate--> zbuf --SSL_write/send--> fd
 *   read:   fd --SSL_read/read--> zbuf --inflate--> buf -> prot_getc
 *
 * Without DEFLATE, the transport reads straight into `buf` and writes
 * straight from it; without TLS, the transport is read()/send() on the
 * descriptor.  So with both on, compression is inside TLS, as RFC 4978
 * requires when COMPRESS follows STARTTLS.
 *
 * Read buffer: unread bytes are buf[start, len).  A refill happens only
 * when start == len, after which start is 0; so after any successful
 * getc, start >= 1 and one byte can always be pushed back.
 * Write buffer: queued bytes are buf[0, len); a full buffer is pushed
 * through the layers with Z_NO_FLUSH, and prot_flush() pushes the rest
 * with Z_SYNC_FLUSH so the peer can decode everything sent so far.
 *
 * DEFLATE is raw (windowBits -15, no zlib header), one stream per
 * direction for the rest of the connection.  Switching it on mid-stream
 * moves any input already buffered into the inflater, because a client
 * may send compressed data right after its COMPRESS command.  Switching
 * TLS on drops buffered plaintext input instead: bytes that arrived
 * before the handshake must not be taken as protected commands.
 *
 * Waiting: the descriptor is non-blocking and every wait is a poll()
 * bounded by the stream's timeout, including the waits OpenSSL asks for
 * (WANT_READ/WANT_WRITE).  So a peer that sends half a TLS record still
 * hits the idle timeout.  Errors (including timeouts) are sticky: once
 * set, reads return EOF and writes are discarded, and prot_error() says
 * why.  Plain sockets are written with MSG_NOSIGNAL; daemons must still
 * ignore SIGPIPE for pipes and for OpenSSL's own socket writes.
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <zlib.h>

#include "lib/buf.h"
#include "lib/error.h"
#include "lib/xmalloc.h"
#include "lib/prot.h"

/* prot_printf keeps a scratch buffer up to this size between calls. */
#define SCRATCH_KEEP (64 * 1024)

struct protstream {
    int fd;
    int is_write;
    int is_socket;              /* use send(MSG_NOSIGNAL) */

    unsigned char *buf;         /* plaintext, PROT_BUFSIZE bytes */
    size_t start;               /* read: first unread byte */
    size_t len;                 /* read: end of data; write: queued */

    int is_eof;
    int error_code;             /* 0 or ERR_* */
    char error[160];            /* text when error_code != 0 */

    int timeout_sec;            /* read wait bound, 0 = none */
    int write_timeout_sec;      /* write wait bound, 0 = none */
    struct protstream *flush_out;
    int log_fd;

    SSL *ssl;
    z_stream *zs;               /* inflater or deflater, or NULL */
    unsigned char *zbuf;        /* compressed data, PROT_BUFSIZE bytes */
    int z_dirty;                /* deflated without a sync flush since */
    int z_ended;                /* peer finished its deflate stream */

    uint64_t bytes;
    uint64_t wire_bytes;
    struct buf scratch;         /* prot_printf formatting */
};

/* ---- Errors ---- */

/* Put the stream into its sticky error state (the first error wins). */
static void set_error(struct protstream *p, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_error(struct protstream *p, int code, const char *fmt, ...)
{
    va_list ap;

    if (p->error_code)
        return;
    p->error_code = code;
    va_start(ap, fmt);
    vsnprintf(p->error, sizeof(p->error), fmt, ap);
    va_end(ap);
}

/* Record the OpenSSL error queue's first entry (or errno) as the error. */
static void set_tls_error(struct protstream *p, int sslerr, int saved_errno)
{
    unsigned long e = ERR_get_error();
    char text[120];

    if (e) {
        ERR_error_string_n(e, text, sizeof(text));
        set_error(p, ERR_PROTOCOL, "TLS error: %s", text);
    }
    else if (sslerr == SSL_ERROR_SYSCALL && saved_errno) {
        set_error(p, ERR_IO, "%s", strerror(saved_errno));
    }
    else {
        set_error(p, ERR_PROTOCOL, "TLS error %d", sslerr);
    }
    ERR_clear_error();
}

/* ---- Waiting ---- */

/* Milliseconds on the monotonic clock, for deadlines. */
static long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until the descriptor is ready for `events`, at most the
 * stream's timeout for this direction.  Returns 0, or -1 with the
 * error set (timeout or poll failure). */
static int wait_fd(struct protstream *p, short events)
{
    int timeout_sec = p->is_write ? p->write_timeout_sec : p->timeout_sec;
    long deadline = timeout_sec > 0 ? now_ms() + timeout_sec * 1000L : 0;
    struct pollfd pfd;
    int n, wait_ms;

    for (;;) {
        wait_ms = -1;
        if (deadline) {
            long left = deadline - now_ms();
            wait_ms = left > 0 ? (int)left : 0;
        }
        pfd.fd = p->fd;
        pfd.events = events;
        pfd.revents = 0;
        n = poll(&pfd, 1, wait_ms);
        if (n > 0) {
            if (pfd.revents & POLLNVAL) {
                set_error(p, ERR_IO, "%s", strerror(EBADF));
                return -1;
            }
            /* POLLHUP and POLLERR: the next system call tells what. */
            return 0;
        }
        if (n == 0) {
            set_error(p, ERR_TIMEOUT, p->is_write ? "write timeout"
                                                  : "idle timeout");
            return -1;
        }
        if (errno != EINTR) {
            set_error(p, ERR_IO, "poll: %s", strerror(errno));
            return -1;
        }
    }
}

/* ---- Transport: TLS or the descriptor ---- */

/* One SSL_read/SSL_write outcome that did not move data.  Returns 0 to
 * retry (after waiting as OpenSSL asked), or -1 with EOF or the error
 * set. */
static int ssl_retry(struct protstream *p, int ret)
{
    int saved_errno = errno;
    int sslerr = SSL_get_error(p->ssl, ret);

    switch (sslerr) {
    case SSL_ERROR_WANT_READ:
        return wait_fd(p, POLLIN);
    case SSL_ERROR_WANT_WRITE:
        return wait_fd(p, POLLOUT);
    case SSL_ERROR_ZERO_RETURN:
        p->is_eof = 1;
        return -1;
    case SSL_ERROR_SYSCALL:
        if (saved_errno == EINTR)
            return 0;
        if (!saved_errno && !ERR_peek_error()) {
            /* The peer closed without close_notify: plain EOF to us. */
            p->is_eof = 1;
            return -1;
        }
        break;
    case SSL_ERROR_SSL:
        if (ERR_GET_REASON(ERR_peek_error())
            == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
            /* Same as above, reported this way when the SSL was made
             * without SSL_OP_IGNORE_UNEXPECTED_EOF.  Our protocols
             * delimit their own data, so truncation shows anyway. */
            ERR_clear_error();
            p->is_eof = 1;
            return -1;
        }
        break;
    default:
        break;
    }
    set_tls_error(p, sslerr, saved_errno);
    return -1;
}

/* Read at most n bytes from the transport, waiting within the timeout.
 * Returns the count, 0 at EOF (is_eof set), or -1 (error set). */
static ssize_t transport_read(struct protstream *p, void *dst, size_t n)
{
    ssize_t got;
    int chunk = n > INT_MAX ? INT_MAX : (int)n;

    for (;;) {
        if (p->ssl) {
            ERR_clear_error();
            errno = 0;
            got = SSL_read(p->ssl, dst, chunk);
            if (got > 0)
                break;
            if (ssl_retry(p, (int)got) < 0)
                return p->is_eof && !p->error_code ? 0 : -1;
            continue;
        }
        got = read(p->fd, dst, n);
        if (got > 0)
            break;
        if (got == 0) {
            p->is_eof = 1;
            return 0;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (wait_fd(p, POLLIN) < 0)
                return -1;
        }
        else if (errno != EINTR) {
            set_error(p, ERR_IO, "%s", strerror(errno));
            return -1;
        }
    }
    p->wire_bytes += (uint64_t)got;
    return got;
}

/* Write all n bytes to the transport.  Returns 0 or the error code. */
static int transport_write(struct protstream *p, const void *src, size_t n)
{
    const unsigned char *s = src;
    ssize_t put;

    while (n > 0 && !p->error_code) {
        if (p->ssl) {
            int chunk = n > INT_MAX ? INT_MAX : (int)n;

            ERR_clear_error();
            errno = 0;
            put = SSL_write(p->ssl, s, chunk);
            if (put <= 0) {
                if (ssl_retry(p, (int)put) < 0 && !p->error_code)
                    set_error(p, ERR_IO, "connection closed by peer");
                continue;
            }
        }
        else {
            put = p->is_socket ? send(p->fd, s, n, MSG_NOSIGNAL)
                               : write(p->fd, s, n);
            if (put < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    wait_fd(p, POLLOUT);
                else if (errno != EINTR)
                    set_error(p, ERR_IO, "%s", strerror(errno));
                continue;
            }
        }
        s += put;
        n -= (size_t)put;
        p->wire_bytes += (uint64_t)put;
    }
    return p->error_code;
}

/* Copy application data to the telemetry descriptor, if any. */
static void log_copy(struct protstream *p, const unsigned char *s, size_t n)
{
    ssize_t w;

    while (p->log_fd >= 0 && n > 0) {
        w = write(p->log_fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

/* ---- Read side ---- */

/* Account for n fresh plaintext bytes at buf[0, n). */
static void got_plain(struct protstream *p, size_t n)
{
    p->start = 0;
    p->len = n;
    p->bytes += n;
    log_copy(p, p->buf, n);
}

/* Inflate what is already in zbuf into the (empty) buffer, reading
 * nothing.  Returns the bytes produced (0 if it needs more input), or
 * -1 with the error set. */
static ssize_t inflate_step(struct protstream *p)
{
    z_stream *zs = p->zs;
    size_t produced;
    int zr;

    if (p->z_ended)
        return 0;
    zs->next_out = p->buf;
    zs->avail_out = PROT_BUFSIZE;
    zr = inflate(zs, Z_SYNC_FLUSH);
    produced = PROT_BUFSIZE - zs->avail_out;
    if (zr == Z_STREAM_END) {
        p->z_ended = 1;
    }
    else if (zr == Z_BUF_ERROR && zs->avail_in > 0) {
        set_error(p, ERR_PROTOCOL, "decompression stalled");
        return -1;
    }
    else if (zr != Z_OK && zr != Z_BUF_ERROR) {
        set_error(p, ERR_PROTOCOL, "decompression error: %s",
                  zs->msg ? zs->msg : "bad data");
        return -1;
    }
    if (produced)
        got_plain(p, produced);
    return (ssize_t)produced;
}

/* Refill zbuf from the transport when the inflater has consumed it. */
static ssize_t inflate_fill(struct protstream *p)
{
    ssize_t n;

    for (;;) {
        n = inflate_step(p);
        if (n != 0)
            return n;
        if (p->z_ended) {
            /* A peer that ends its DEFLATE stream has nothing more to
             * say in this session. */
            p->is_eof = 1;
            return 0;
        }
        if (p->zs->avail_in > 0)
            continue;
        n = transport_read(p, p->zbuf, PROT_BUFSIZE);
        if (n <= 0)
            return n;
        p->zs->next_in = p->zbuf;
        p->zs->avail_in = (uInt)n;
    }
}

/* Refill the empty read buffer.  Returns bytes now buffered, 0 at EOF,
 * -1 on error. */
static ssize_t fill(struct protstream *p)
{
    ssize_t n;

    if (p->error_code)
        return -1;
    if (p->is_eof)
        return 0;
    p->start = p->len = 0;
    if (p->flush_out)
        prot_flush(p->flush_out);

    if (p->zs)
        return inflate_fill(p);
    n = transport_read(p, p->buf, PROT_BUFSIZE);
    if (n > 0)
        got_plain(p, (size_t)n);
    return n;
}

/* Decode whatever can be decoded without waiting.  Returns 1 if a read
 * now would not wait, 0 otherwise. */
static int decode_ready(struct protstream *p)
{
    unsigned char *s;
    int n;

    if (p->start < p->len || p->is_eof || p->error_code)
        return 1;
    /* SSL_has_pending also counts a record read but not yet decrypted:
     * poll() cannot see it, and missing it could stall an IDLE wait.
     * If that record turns out incomplete, the read that follows waits
     * within the timeout like any other. */
    if (!p->zs)
        return p->ssl && SSL_has_pending(p->ssl);

    p->start = p->len = 0;
    for (;;) {
        if (inflate_step(p) != 0 || p->z_ended)
            return 1;
        if (!p->ssl || p->zs->avail_in > 0 || !SSL_has_pending(p->ssl))
            return 0;
        /* Bytes wait inside OpenSSL; on the non-blocking descriptor
         * this SSL_read returns at once either way. */
        s = p->zbuf;
        ERR_clear_error();
        n = SSL_read(p->ssl, s, PROT_BUFSIZE);
        if (n <= 0)
            return 1;   /* let the real read report what happened */
        p->wire_bytes += (uint64_t)n;
        p->zs->next_in = s;
        p->zs->avail_in = (uInt)n;
    }
}

/* ---- Write side ---- */

/* Push the queued plaintext through the layers with `zflush`. */
static int write_out(struct protstream *p, int zflush)
{
    z_stream *zs = p->zs;
    size_t have;
    int zr;

    if (p->error_code) {
        p->len = 0;
        return p->error_code;
    }
    log_copy(p, p->buf, p->len);
    if (!zs) {
        transport_write(p, p->buf, p->len);
        p->len = 0;
        return p->error_code;
    }

    zs->next_in = p->buf;
    zs->avail_in = (uInt)p->len;
    do {
        zs->next_out = p->zbuf;
        zs->avail_out = PROT_BUFSIZE;
        zr = deflate(zs, zflush);
        if (zr != Z_OK && zr != Z_BUF_ERROR) {
            set_error(p, ERR_INTERNAL, "compression error %d", zr);
            break;
        }
        have = PROT_BUFSIZE - zs->avail_out;
        if (have && transport_write(p, p->zbuf, have))
            break;
    } while (zs->avail_out == 0);
    p->z_dirty = zflush == Z_NO_FLUSH;
    p->len = 0;
    return p->error_code;
}

/* ---- Public: set-up ---- */

struct protstream *prot_new(int fd, int is_write)
{
    struct protstream *p = xzmalloc(sizeof(*p));
    struct stat st;
    int flags;

    p->fd = fd;
    p->is_write = is_write;
    p->log_fd = -1;
    p->buf = xmalloc(PROT_BUFSIZE);
    if (fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode))
        p->is_socket = 1;
    flags = fcntl(fd, F_GETFL);
    if (flags >= 0 && !(flags & O_NONBLOCK))
        fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    return p;
}

void prot_free(struct protstream **pp)
{
    struct protstream *p;

    if (!pp || !*pp)
        return;
    p = *pp;
    if (p->zs) {
        if (p->is_write)
            deflateEnd(p->zs);
        else
            inflateEnd(p->zs);
        free(p->zs);
    }
    free(p->zbuf);
    free(p->buf);
    buf_free(&p->scratch);
    free(p);
    *pp = NULL;
}

int prot_fd(const struct protstream *p)
{
    return p->fd;
}

void prot_settimeout(struct protstream *p, int seconds)
{
    p->timeout_sec = seconds > 0 ? seconds : 0;
}

void prot_setwritetimeout(struct protstream *p, int seconds)
{
    p->write_timeout_sec = seconds > 0 ? seconds : 0;
}

void prot_setflushonread(struct protstream *in, struct protstream *out)
{
    in->flush_out = out;
}

void prot_setlog(struct protstream *p, int fd)
{
    p->log_fd = fd;
}

int prot_settls(struct protstream *in, struct protstream *out,
                struct ssl_st *ssl)
{
    int r = 0;

    if (out) {
        prot_flush(out);
        out->ssl = ssl;
    }
    if (in) {
        if (in->start < in->len || (in->zs && in->zs->avail_in))
            r = ERR_PROTOCOL;
        in->start = in->len = 0;
        if (in->zs)
            in->zs->avail_in = 0;
        in->ssl = ssl;
    }
    return r;
}

struct ssl_st *prot_gettls(const struct protstream *p)
{
    return p->ssl;
}

/* Set up the inflater on a reading stream, taking over buffered input. */
static int start_inflate(struct protstream *p)
{
    size_t pending = p->len - p->start;

    p->zs = xzmalloc(sizeof(*p->zs));
    if (inflateInit2(p->zs, -15) != Z_OK) {
        xfree(p->zs);
        return ERR_INTERNAL;
    }
    if (!p->zbuf)
        p->zbuf = xmalloc(PROT_BUFSIZE);
    memcpy(p->zbuf, p->buf + p->start, pending);
    p->zs->next_in = p->zbuf;
    p->zs->avail_in = (uInt)pending;
    p->start = p->len = 0;
    p->z_ended = 0;
    return 0;
}

/* Set up the deflater on a writing stream after flushing it. */
static int start_deflate(struct protstream *p)
{
    prot_flush(p);
    p->zs = xzmalloc(sizeof(*p->zs));
    if (deflateInit2(p->zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
        xfree(p->zs);
        return ERR_INTERNAL;
    }
    if (!p->zbuf)
        p->zbuf = xmalloc(PROT_BUFSIZE);
    p->z_dirty = 0;
    return 0;
}

int prot_setcompress(struct protstream *in, struct protstream *out)
{
    int r = 0;

    if ((in && in->zs) || (out && out->zs))
        return ERR_EXISTS;
    if (out)
        r = start_deflate(out);
    if (!r && in)
        r = start_inflate(in);
    return r;
}

int prot_is_compressed(const struct protstream *p)
{
    return p->zs != NULL;
}

/* ---- Public: reading ---- */

int prot_getc(struct protstream *p)
{
    if (p->start == p->len && fill(p) <= 0)
        return EOF;
    return p->buf[p->start++];
}

int prot_ungetc(struct protstream *p, int c)
{
    if (c == EOF || p->start == 0)
        return EOF;
    p->buf[--p->start] = (unsigned char)c;
    return c;
}

int prot_peek(struct protstream *p)
{
    if (p->start == p->len && fill(p) <= 0)
        return EOF;
    return p->buf[p->start];
}

ssize_t prot_read(struct protstream *p, void *dst, size_t n)
{
    size_t take;
    ssize_t got;

    if (n == 0)
        return 0;
    if (p->start == p->len) {
        got = fill(p);
        if (got <= 0)
            return got;
    }
    take = p->len - p->start;
    if (take > n)
        take = n;
    memcpy(dst, p->buf + p->start, take);
    p->start += take;
    return (ssize_t)take;
}

int prot_readfull(struct protstream *p, void *dst, size_t n)
{
    unsigned char *d = dst;
    ssize_t got;

    while (n > 0) {
        got = prot_read(p, d, n);
        if (got < 0)
            return p->error_code ? p->error_code : ERR_IO;
        if (got == 0)
            return ERR_EOF;
        d += got;
        n -= (size_t)got;
    }
    return 0;
}

int prot_getline(struct protstream *p, struct buf *line, size_t maxlen,
                 int *toolong_r)
{
    size_t cap = maxlen && maxlen < SIZE_MAX ? maxlen + 1 : SIZE_MAX;
    int dropped = 0;
    int last_cr = 0;
    unsigned char *seg, *lf;
    size_t seglen, take;
    ssize_t n;

    /* One byte beyond maxlen is kept so a CR that ends a full-length
     * line is not mistaken for excess content. */
    buf_reset(line);
    if (toolong_r)
        *toolong_r = 0;
    for (;;) {
        if (p->start == p->len) {
            n = fill(p);
            if (n < 0)
                return p->error_code;
            if (n == 0) {
                /* An unterminated remainder obeys maxlen too; up to
                 * here it may hold the one spare byte. */
                if (maxlen && line->len > maxlen) {
                    line->len = maxlen;
                    dropped = 1;
                }
                if (toolong_r)
                    *toolong_r = dropped;
                return ERR_EOF;
            }
        }
        seg = p->buf + p->start;
        lf = memchr(seg, '\n', p->len - p->start);
        seglen = lf ? (size_t)(lf - seg) : p->len - p->start;
        if (seglen) {
            last_cr = seg[seglen - 1] == '\r';
            take = cap - line->len < seglen ? cap - line->len : seglen;
            buf_appendmap(line, seg, take);
            if (take < seglen)
                dropped = 1;
        }
        p->start += seglen;
        if (lf)
            break;
    }

    p->start++;    /* the LF */
    if (last_cr && !dropped)
        line->len--;
    if (maxlen && line->len > maxlen) {
        line->len = maxlen;
        dropped = 1;
    }
    if (toolong_r)
        *toolong_r = dropped;
    return 0;
}

size_t prot_bytes_available(const struct protstream *p)
{
    return p->len - p->start;
}

int prot_has_buffered_input(struct protstream *p)
{
    if (p->is_write)
        return 0;
    return decode_ready(p);
}

int prot_eof(const struct protstream *p)
{
    return p->is_eof && p->start == p->len;
}

const char *prot_error(const struct protstream *p)
{
    return p->error_code ? p->error : NULL;
}

int prot_error_code(const struct protstream *p)
{
    return p->error_code;
}

/* ---- Public: writing ---- */

int prot_write(struct protstream *p, const void *data, size_t len)
{
    const unsigned char *s = data;
    size_t room;

    if (p->error_code)
        return p->error_code;
    p->bytes += len;
    while (len > 0) {
        if (p->len == PROT_BUFSIZE && write_out(p, Z_NO_FLUSH))
            return p->error_code;
        room = PROT_BUFSIZE - p->len;
        if (room > len)
            room = len;
        memcpy(p->buf + p->len, s, room);
        p->len += room;
        s += room;
        len -= room;
    }
    return 0;
}

int prot_putc(struct protstream *p, int c)
{
    unsigned char ch = (unsigned char)c;

    return prot_write(p, &ch, 1);
}

int prot_puts(struct protstream *p, const char *s)
{
    return prot_write(p, s, strlen(s));
}

int prot_printf(struct protstream *p, const char *fmt, ...)
{
    va_list ap;
    int r;

    if (p->error_code)
        return p->error_code;
    buf_reset(&p->scratch);
    va_start(ap, fmt);
    buf_vprintf(&p->scratch, fmt, ap);
    va_end(ap);
    r = prot_write(p, p->scratch.s, p->scratch.len);
    if (p->scratch.alloc > SCRATCH_KEEP)
        buf_free(&p->scratch);
    return r;
}

int prot_flush(struct protstream *p)
{
    if (!p || !p->is_write)
        return 0;
    if (p->error_code)
        return p->error_code;
    if (!p->len && !p->z_dirty)
        return 0;
    return write_out(p, p->zs ? Z_SYNC_FLUSH : Z_NO_FLUSH);
}

uint64_t prot_bytes(const struct protstream *p)
{
    return p->bytes;
}

uint64_t prot_wire_bytes(const struct protstream *p)
{
    return p->wire_bytes;
}

/* ---- Public: waiting on several streams ---- */

int prot_select(struct protstream *const *streams, size_t n, int extra_fd,
                int timeout_ms, int *ready_r, int *extra_ready_r)
{
    struct pollfd *pfds = xcalloc(n + 1, sizeof(*pfds));
    int any_ready = 0;
    size_t i, npfd = 0;
    int r = 0;
    int got;

    /* Input already decoded, or decodable without waiting, counts
     * first: poll() cannot see it. */
    for (i = 0; i < n; i++) {
        ready_r[i] = prot_has_buffered_input(streams[i]);
        any_ready |= ready_r[i];
    }
    if (extra_ready_r)
        *extra_ready_r = 0;
    if (!any_ready) {
        for (i = 0; i < n; i++)
            prot_flush(streams[i]->flush_out);
    }

    for (i = 0; i < n; i++) {
        pfds[npfd].fd = streams[i]->fd;
        pfds[npfd++].events = POLLIN;
    }
    if (extra_fd >= 0) {
        pfds[npfd].fd = extra_fd;
        pfds[npfd++].events = POLLIN;
    }

    got = poll(pfds, npfd, any_ready ? 0 : timeout_ms);
    if (got < 0) {
        if (errno != EINTR)
            r = ERR_IO;
        goto done;
    }
    for (i = 0; i < n; i++) {
        if (pfds[i].revents)
            ready_r[i] = 1;
    }
    if (extra_fd >= 0 && extra_ready_r && pfds[n].revents)
        *extra_ready_r = 1;

done:
    free(pfds);
    return r;
}

/* Buffered network I/O for the protocol daemons: line reading with
 * limits, timeouts, and TLS and COMPRESS=DEFLATE layers under the
 * buffer.  The layering is described at the top of prot.c. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_LIB_PROT_H
#define COLUMBA_LIB_PROT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct buf;
struct ssl_st;      /* OpenSSL's SSL; callers that use TLS include it */

/* One direction of a connection: a descriptor for reading or one for
 * writing, with its own buffer.  A session normally has two (often on
 * the same socket).  Opaque. */
struct protstream;

/* Size of each stream's plaintext buffer; writes flush when it fills. */
#define PROT_BUFSIZE 16384

/* Wrap `fd` for reading (is_write 0) or writing (is_write 1).  The
 * descriptor is switched to non-blocking mode (all waiting is done with
 * poll(), so timeouts also hold under TLS) and stays owned by the
 * caller: prot_free() does not close it.  Never NULL. */
struct protstream *prot_new(int fd, int is_write);

/* Free the stream and set *p to NULL; NULL and *p == NULL are accepted.
 * Pending output is NOT flushed (call prot_flush() first if wanted);
 * the descriptor and any SSL are left to their owners. */
void prot_free(struct protstream **p);

/* The wrapped descriptor. */
int prot_fd(const struct protstream *p);

/* Bound each wait for input to `seconds` (0: wait forever, the
 * default).  When it expires the read fails with ERR_TIMEOUT and
 * prot_error() says "idle timeout". */
void prot_settimeout(struct protstream *p, int seconds);

/* Bound each wait for the peer to accept output (0: forever).  When it
 * expires the stream fails with ERR_TIMEOUT, "write timeout". */
void prot_setwritetimeout(struct protstream *p, int seconds);

/* Before `in` waits for input, flush `out` (NULL to stop), so replies
 * are always on the wire before the server waits for the next command. */
void prot_setflushonread(struct protstream *in, struct protstream *out);

/* Copy all application data (after TLS and decompression, i.e. what
 * the protocol code sees) to `fd`, -1 to stop.  Write errors on the
 * copy are ignored; the fd stays the caller's.  For telemetry logs. */
void prot_setlog(struct protstream *p, int fd);

/* Make `in` and `out` (either may be NULL) read and write through
 * `ssl`, whose handshake is already done (tls_start_server()).  The SSL
 * stays the caller's.  Unread plaintext already buffered on `in` is
 * discarded: it was sent before the handshake and must not be taken as
 * protected commands.  Pending output on `out` is flushed in plaintext
 * first.  Returns 0, or ERR_PROTOCOL when plaintext input was
 * discarded (TLS is still switched on; the caller may log it). */
int prot_settls(struct protstream *in, struct protstream *out,
                struct ssl_st *ssl);

/* The SSL a stream uses, or NULL. */
struct ssl_st *prot_gettls(const struct protstream *p);

/* Turn on raw DEFLATE (RFC 4978 COMPRESS) on `in` and `out` (either may
 * be NULL) from the next byte: pending output on `out` is flushed
 * uncompressed first, and input already buffered on `in` is treated as
 * compressed.  Each prot_flush() ends with a sync flush.  Returns 0,
 * ERR_EXISTS if compression is already on, or ERR_INTERNAL if zlib
 * cannot be set up. */
int prot_setcompress(struct protstream *in, struct protstream *out);

/* Is compression on? */
int prot_is_compressed(const struct protstream *p);

/* ---- Reading ---- */

/* The next byte (0..255), or EOF at end of data or on error (tell them
 * apart with prot_eof() and prot_error()). */
int prot_getc(struct protstream *p);

/* Push back the byte just read by prot_getc(); one byte is always
 * possible after a successful prot_getc().  Returns c, or EOF if `c`
 * is EOF or nothing can be pushed back. */
int prot_ungetc(struct protstream *p, int c);

/* The next byte without consuming it, or EOF. */
int prot_peek(struct protstream *p);

/* Read up to `n` bytes (at least one, waiting if needed).  Returns the
 * count, 0 at end of data or for n == 0, -1 on error. */
ssize_t prot_read(struct protstream *p, void *buf, size_t n);

/* Read exactly `n` bytes.  Returns 0, ERR_EOF if the data ended first,
 * or the stream's error code. */
int prot_readfull(struct protstream *p, void *buf, size_t n);

/* Read one line ending in LF (a CR before it is dropped too) into
 * `line`, which is reset first and gets no terminator; NULs inside the
 * line are kept.  With maxlen > 0, a line longer than maxlen bytes is
 * read to its end but only its first maxlen bytes are kept and
 * *toolong_r (if given) is set, so the session stays in step; it is
 * cleared otherwise.  Returns 0 for a line, ERR_EOF when the data ends
 * (`line` then holds any unterminated remainder, bounded and flagged
 * the same way), or the stream's error code (ERR_TIMEOUT, ERR_IO,
 * ERR_PROTOCOL). */
int prot_getline(struct protstream *p, struct buf *line, size_t maxlen,
                 int *toolong_r);

/* Bytes already decoded and waiting in the buffer. */
size_t prot_bytes_available(const struct protstream *p);

/* Would the next read return without waiting?  True when decoded bytes
 * are buffered, or TLS or DEFLATE hold data that decodes without more
 * input (that data is decoded now), or the stream is at EOF or in
 * error.  Used to decide on pipelining and before IDLE waits. */
int prot_has_buffered_input(struct protstream *p);

/* Has the peer closed its side (and everything been read)? */
int prot_eof(const struct protstream *p);

/* The error text ("idle timeout", "write timeout", an errno or TLS
 * text), or NULL when there is no error.  Static or owned by p. */
const char *prot_error(const struct protstream *p);

/* The error as a project code (ERR_TIMEOUT, ERR_IO, ERR_PROTOCOL), or
 * 0. */
int prot_error_code(const struct protstream *p);

/* ---- Writing ---- */

/* Queue output; the buffer is flushed automatically when full.  Each
 * returns 0 or the stream's error code; a write error or timeout is
 * sticky: later writes are discarded and return it too. */
int prot_putc(struct protstream *p, int c);
int prot_write(struct protstream *p, const void *data, size_t len);
int prot_puts(struct protstream *p, const char *s);
int prot_printf(struct protstream *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Send everything queued (ending the DEFLATE block with a sync flush).
 * Returns 0 or the stream's error code.  NULL is accepted (returns 0). */
int prot_flush(struct protstream *p);

/* Bytes of application data read or written so far (before
 * compression and encryption). */
uint64_t prot_bytes(const struct protstream *p);

/* Bytes handed to or taken from the transport (TLS or the descriptor)
 * so far: after compression, before encryption. */
uint64_t prot_wire_bytes(const struct protstream *p);

/* ---- Waiting on several streams ---- */

/* Wait until one of the `n` reading streams has input (buffered,
 * TLS-buffered, decodable DEFLATE, or on its descriptor), or
 * `extra_fd` (-1 for none; e.g. an IDLE notification socket or a
 * signal self-pipe) is readable, or `timeout_ms` passes (-1: forever).
 * Streams set up with prot_setflushonread() flush their output first.
 * ready_r[i] (n entries) and *extra_ready_r (may be NULL) report what
 * is ready; a stream at EOF or in error counts as ready.  Returns 0,
 * also on timeout or when interrupted by a signal (nothing marked
 * ready), or ERR_IO if poll() fails otherwise. */
int prot_select(struct protstream *const *streams, size_t n, int extra_fd,
                int timeout_ms, int *ready_r, int *extra_ready_r);

#endif /* COLUMBA_LIB_PROT_H */

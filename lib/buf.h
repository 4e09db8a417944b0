/* Growable byte buffers: the one way Columba builds strings and blobs. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_LIB_BUF_H
#define COLUMBA_LIB_BUF_H

#include <stdarg.h>
#include <stddef.h>

/* A buffer owns `s` (len bytes used, alloc bytes allocated).  The bytes
 * may hold NULs; buf_cstring() adds a terminating NUL without counting
 * it.  An all-zero struct is a valid empty buffer. */
struct buf {
    char *s;
    size_t len;
    size_t alloc;
};

#define BUF_INITIALIZER { NULL, 0, 0 }

/* Make room for at least `more` further bytes. */
void buf_ensure(struct buf *buf, size_t more);

/* Return the contents NUL-terminated (never NULL; "" when empty).  The
 * pointer is valid until the buffer next changes. */
const char *buf_cstring(struct buf *buf);

/* Like buf_cstring but returns NULL for an empty buffer. */
const char *buf_cstringnull(struct buf *buf);

/* Empty the buffer, keeping its allocation. */
void buf_reset(struct buf *buf);

/* Release the allocation and empty the buffer; NULL is accepted. */
void buf_free(struct buf *buf);

/* Hand the NUL-terminated contents to the caller (who frees them) and
 * leave the buffer empty.  Never NULL. */
char *buf_release(struct buf *buf);

/* Shorten to `len` bytes (no effect if already shorter). */
void buf_truncate(struct buf *buf, size_t len);

void buf_putc(struct buf *buf, char c);
void buf_appendcstr(struct buf *buf, const char *s);
void buf_appendmap(struct buf *buf, const void *p, size_t len);
void buf_appendbuf(struct buf *buf, const struct buf *other);
void buf_printf(struct buf *buf, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *buf, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* Replace the contents. */
void buf_setcstr(struct buf *buf, const char *s);
void buf_setmap(struct buf *buf, const void *p, size_t len);

/* Insert `len` bytes at offset `off` (clamped to the end). */
void buf_insertmap(struct buf *buf, size_t off, const void *p, size_t len);

/* Remove `len` bytes starting at `off` (clamped). */
void buf_remove(struct buf *buf, size_t off, size_t len);

/* Compare contents as bytes; shorter sorts first on a common prefix. */
int buf_cmp(const struct buf *a, const struct buf *b);

/* Lowercase or uppercase ASCII letters in place. */
void buf_tolower(struct buf *buf);
void buf_toupper(struct buf *buf);

/* Strip ASCII whitespace at both ends. */
void buf_trim(struct buf *buf);

static inline size_t buf_len(const struct buf *buf) { return buf->len; }
static inline const char *buf_base(const struct buf *buf) { return buf->s; }

#endif /* COLUMBA_LIB_BUF_H */

/* Growable byte buffers: the one way Columba builds strings and blobs. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <ctype.h>
#include <stdlib.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/xmalloc.h"

void buf_ensure(struct buf *buf, size_t more)
{
    size_t need;

    /* One byte beyond len is always kept for buf_cstring's NUL. */
    if (more > SIZE_MAX - buf->len - 1)
        fatal("buffer size overflow", EX_FATAL_SOFTWARE);
    need = buf->len + more + 1;
    if (need <= buf->alloc)
        return;
    if (need < 64)
        need = 64;
    if (need < buf->alloc * 2 && buf->alloc < SIZE_MAX / 2)
        need = buf->alloc * 2;
    buf->s = xrealloc(buf->s, need);
    buf->alloc = need;
}

const char *buf_cstring(struct buf *buf)
{
    buf_ensure(buf, 0);
    buf->s[buf->len] = '\0';
    return buf->s;
}

const char *buf_cstringnull(struct buf *buf)
{
    return buf->len ? buf_cstring(buf) : NULL;
}

void buf_reset(struct buf *buf)
{
    buf->len = 0;
}

void buf_free(struct buf *buf)
{
    if (!buf)
        return;
    free(buf->s);
    buf->s = NULL;
    buf->len = buf->alloc = 0;
}

char *buf_release(struct buf *buf)
{
    char *s;

    buf_cstring(buf);
    s = buf->s;
    buf->s = NULL;
    buf->len = buf->alloc = 0;
    return s;
}

void buf_truncate(struct buf *buf, size_t len)
{
    if (len < buf->len)
        buf->len = len;
}

void buf_putc(struct buf *buf, char c)
{
    buf_ensure(buf, 1);
    buf->s[buf->len++] = c;
}

void buf_appendmap(struct buf *buf, const void *p, size_t len)
{
    if (!len)
        return;
    buf_ensure(buf, len);
    memcpy(buf->s + buf->len, p, len);
    buf->len += len;
}

void buf_appendcstr(struct buf *buf, const char *s)
{
    buf_appendmap(buf, s, strlen(s));
}

void buf_appendbuf(struct buf *buf, const struct buf *other)
{
    buf_appendmap(buf, other->s, other->len);
}

void buf_vprintf(struct buf *buf, const char *fmt, va_list ap)
{
    va_list ap2;
    int n;

    va_copy(ap2, ap);
    buf_ensure(buf, 64);
    n = vsnprintf(buf->s + buf->len, buf->alloc - buf->len, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        fatal("buf_vprintf: bad format", EX_FATAL_SOFTWARE);
    if ((size_t)n >= buf->alloc - buf->len) {
        buf_ensure(buf, (size_t)n);
        n = vsnprintf(buf->s + buf->len, buf->alloc - buf->len, fmt, ap);
    }
    buf->len += (size_t)n;
}

void buf_printf(struct buf *buf, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    buf_vprintf(buf, fmt, ap);
    va_end(ap);
}

void buf_setcstr(struct buf *buf, const char *s)
{
    buf_reset(buf);
    buf_appendcstr(buf, s);
}

void buf_setmap(struct buf *buf, const void *p, size_t len)
{
    buf_reset(buf);
    buf_appendmap(buf, p, len);
}

void buf_insertmap(struct buf *buf, size_t off, const void *p, size_t len)
{
    if (off > buf->len)
        off = buf->len;
    buf_ensure(buf, len);
    memmove(buf->s + off + len, buf->s + off, buf->len - off);
    memcpy(buf->s + off, p, len);
    buf->len += len;
}

void buf_remove(struct buf *buf, size_t off, size_t len)
{
    if (off >= buf->len)
        return;
    if (len > buf->len - off)
        len = buf->len - off;
    memmove(buf->s + off, buf->s + off + len, buf->len - off - len);
    buf->len -= len;
}

int buf_cmp(const struct buf *a, const struct buf *b)
{
    size_t n = a->len < b->len ? a->len : b->len;
    int r = n ? memcmp(a->s, b->s, n) : 0;

    if (r)
        return r;
    return (a->len > b->len) - (a->len < b->len);
}

void buf_tolower(struct buf *buf)
{
    size_t i;

    for (i = 0; i < buf->len; i++)
        buf->s[i] = (char)tolower((unsigned char)buf->s[i]);
}

void buf_toupper(struct buf *buf)
{
    size_t i;

    for (i = 0; i < buf->len; i++)
        buf->s[i] = (char)toupper((unsigned char)buf->s[i]);
}

void buf_trim(struct buf *buf)
{
    size_t start = 0;

    while (buf->len && isspace((unsigned char)buf->s[buf->len - 1]))
        buf->len--;
    while (start < buf->len && isspace((unsigned char)buf->s[start]))
        start++;
    buf_remove(buf, 0, start);
}

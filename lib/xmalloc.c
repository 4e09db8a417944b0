/* Allocation wrappers that never return NULL, and the fatal-exit hook. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "lib/xmalloc.h"

static void (*fatal_hook)(const char *, int);
static int in_fatal;

void fatal_set_hook(void (*hook)(const char *msg, int code))
{
    fatal_hook = hook;
}

void fatal(const char *msg, int code)
{
    /* A hook that itself fails must not recurse forever. */
    if (!in_fatal) {
        in_fatal = 1;
        syslog(LOG_CRIT, "fatal error: %s", msg);
        if (fatal_hook)
            fatal_hook(msg, code);
    }
    exit(code);
}

static void *checked(void *p)
{
    if (!p)
        fatal("virtual memory exhausted", EX_FATAL_TEMPFAIL);
    return p;
}

void *xmalloc(size_t size)
{
    return checked(malloc(size ? size : 1));
}

void *xzmalloc(size_t size)
{
    return checked(calloc(1, size ? size : 1));
}

void *xcalloc(size_t nmemb, size_t size)
{
    return checked(calloc(nmemb ? nmemb : 1, size ? size : 1));
}

void *xrealloc(void *ptr, size_t size)
{
    return checked(realloc(ptr, size ? size : 1));
}

void *xreallocarray(void *ptr, size_t nmemb, size_t size)
{
    if (size && nmemb > SIZE_MAX / size)
        fatal("allocation size overflow", EX_FATAL_SOFTWARE);
    return xrealloc(ptr, nmemb * size);
}

char *xstrdup(const char *s)
{
    return checked(strdup(s));
}

char *xstrdupnull(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

char *xstrndup(const char *s, size_t len)
{
    return checked(strndup(s, len));
}

void *xmemdup(const void *p, size_t len)
{
    void *q = xmalloc(len);

    if (len)
        memcpy(q, p, len);
    return q;
}

size_t xstrlcpy(char *dst, const char *src, size_t size)
{
    size_t len = strlen(src);

    if (size) {
        size_t n = (len >= size) ? size - 1 : len;
        memcpy(dst, src, n);
        dst[n] = '\0';
    }
    return len;
}

size_t xstrlcat(char *dst, const char *src, size_t size)
{
    size_t have = strnlen(dst, size);

    if (have == size)
        return size + strlen(src);
    return have + xstrlcpy(dst + have, src, size - have);
}

void xzero_secret(void *p, size_t len)
{
#ifdef HAVE_EXPLICIT_BZERO
    explicit_bzero(p, len);
#else
    volatile unsigned char *v = p;
    while (len--)
        *v++ = 0;
#endif
}

int xsecret_cmp(const void *a, const void *b, size_t len)
{
    const unsigned char *x = a, *y = b;
    unsigned char diff = 0;
    size_t i;

    for (i = 0; i < len; i++)
        diff |= x[i] ^ y[i];
    return diff != 0;
}

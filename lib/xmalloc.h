/* Allocation wrappers that never return NULL, and the fatal-exit hook. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_LIB_XMALLOC_H
#define COLUMBA_LIB_XMALLOC_H

#include <stddef.h>
#include <stdlib.h>

/* Exit codes for fatal(), as sysexits(3) names them. */
#define EX_FATAL_CONFIG 78   /* EX_CONFIG */
#define EX_FATAL_SOFTWARE 70 /* EX_SOFTWARE */
#define EX_FATAL_TEMPFAIL 75 /* EX_TEMPFAIL */
#define EX_FATAL_OSERR 71    /* EX_OSERR */

/* Log `msg` at LOG_CRIT and exit with `code`.  Programs may install a
 * hook with fatal_set_hook() to clean up first (the hook must not
 * return into the caller: it is called, then exit() follows). */
void fatal(const char *msg, int code) __attribute__((noreturn));

/* Install a function called by fatal() before it exits, or NULL. */
void fatal_set_hook(void (*hook)(const char *msg, int code));

/* Allocate; exit through fatal() on out-of-memory.  Callers free. */
void *xmalloc(size_t size);
void *xzmalloc(size_t size);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *ptr, size_t size);
/* Grow an array of nmemb elements of `size` bytes, checking overflow. */
void *xreallocarray(void *ptr, size_t nmemb, size_t size);
char *xstrdup(const char *s);
/* Like xstrdup, but returns NULL for NULL. */
char *xstrdupnull(const char *s);
char *xstrndup(const char *s, size_t len);
void *xmemdup(const void *p, size_t len);

/* Free *p and set it to NULL. */
#define xfree(p) do { free(p); (p) = NULL; } while (0)

/* Copy at most size-1 bytes of src into dst and NUL-terminate; returns
 * strlen(src) so a result >= size means truncation. */
size_t xstrlcpy(char *dst, const char *src, size_t size);
size_t xstrlcat(char *dst, const char *src, size_t size);

/* Wipe a secret so the compiler cannot optimise the wipe away. */
void xzero_secret(void *p, size_t len);

/* Compare two byte strings in constant time; returns 0 when equal. */
int xsecret_cmp(const void *a, const void *b, size_t len);

#endif /* COLUMBA_LIB_XMALLOC_H */

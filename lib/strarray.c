/* Growable arrays of owned C strings. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/buf.h"
#include "lib/strarray.h"
#include "lib/xmalloc.h"

strarray_t *strarray_new(void)
{
    return xzmalloc(sizeof(strarray_t));
}

void strarray_fini(strarray_t *sa)
{
    int i;

    if (!sa)
        return;
    for (i = 0; i < sa->count; i++)
        free(sa->data[i]);
    free(sa->data);
    sa->data = NULL;
    sa->count = sa->alloc = 0;
}

void strarray_free(strarray_t **sap)
{
    if (!sap || !*sap)
        return;
    strarray_fini(*sap);
    free(*sap);
    *sap = NULL;
}

void strarray_truncate(strarray_t *sa, int count)
{
    if (count < 0)
        count = 0;
    while (sa->count > count)
        free(sa->data[--sa->count]);
    if (sa->data)
        sa->data[sa->count] = NULL;
}

/* Room for one more string plus the NULL terminator. */
static void grow(strarray_t *sa)
{
    if (sa->count + 2 <= sa->alloc)
        return;
    if (sa->alloc > (1 << 28))
        fatal("strarray too large", EX_FATAL_SOFTWARE);
    sa->alloc = sa->alloc ? sa->alloc * 2 : 8;
    sa->data = xreallocarray(sa->data, (size_t)sa->alloc, sizeof(char *));
    /* A fresh allocation has no terminator yet; insert moves it. */
    sa->data[sa->count] = NULL;
}

int strarray_appendm(strarray_t *sa, char *s)
{
    grow(sa);
    sa->data[sa->count++] = s;
    sa->data[sa->count] = NULL;
    return sa->count - 1;
}

int strarray_append(strarray_t *sa, const char *s)
{
    return strarray_appendm(sa, xstrdup(s));
}

int strarray_add(strarray_t *sa, const char *s)
{
    int idx = strarray_find(sa, s, 0);

    return idx >= 0 ? idx : strarray_append(sa, s);
}

void strarray_insert(strarray_t *sa, int idx, const char *s)
{
    if (idx < 0)
        idx = 0;
    if (idx > sa->count)
        idx = sa->count;
    grow(sa);
    memmove(sa->data + idx + 1, sa->data + idx,
            sizeof(char *) * (size_t)(sa->count - idx + 1));
    sa->data[idx] = xstrdup(s);
    sa->count++;
}

static int adjust(const strarray_t *sa, int idx)
{
    if (idx < 0)
        idx += sa->count;
    return (idx < 0 || idx >= sa->count) ? -1 : idx;
}

void strarray_set(strarray_t *sa, int idx, const char *s)
{
    idx = adjust(sa, idx);
    if (idx < 0)
        fatal("strarray_set: index out of range", EX_FATAL_SOFTWARE);
    free(sa->data[idx]);
    sa->data[idx] = xstrdup(s);
}

const char *strarray_nth(const strarray_t *sa, int idx)
{
    idx = adjust(sa, idx);
    return idx < 0 ? NULL : sa->data[idx];
}

char *strarray_remove(strarray_t *sa, int idx)
{
    char *s;

    idx = adjust(sa, idx);
    if (idx < 0)
        return NULL;
    s = sa->data[idx];
    memmove(sa->data + idx, sa->data + idx + 1,
            sizeof(char *) * (size_t)(sa->count - idx));
    sa->count--;
    return s;
}

int strarray_remove_all(strarray_t *sa, const char *s)
{
    int n = 0, idx;

    while ((idx = strarray_find(sa, s, 0)) >= 0) {
        free(strarray_remove(sa, idx));
        n++;
    }
    return n;
}

int strarray_find(const strarray_t *sa, const char *s, int start)
{
    int i;

    for (i = start < 0 ? 0 : start; i < sa->count; i++)
        if (!strcmp(sa->data[i], s))
            return i;
    return -1;
}

int strarray_find_case(const strarray_t *sa, const char *s, int start)
{
    int i;

    for (i = start < 0 ? 0 : start; i < sa->count; i++)
        if (!strcasecmp(sa->data[i], s))
            return i;
    return -1;
}

static int cmp_strcmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void strarray_sort(strarray_t *sa, int (*cmp)(const void *, const void *))
{
    if (sa->count > 1)
        qsort(sa->data, (size_t)sa->count, sizeof(char *),
              cmp ? cmp : cmp_strcmp);
}

void strarray_uniq(strarray_t *sa)
{
    int i = 1;

    while (i < sa->count) {
        if (!strcmp(sa->data[i], sa->data[i - 1]))
            free(strarray_remove(sa, i));
        else
            i++;
    }
}

strarray_t *strarray_split(const char *s, const char *sep, int skip_empty)
{
    strarray_t *sa = strarray_new();
    const char *p = s;

    if (!s)
        return sa;
    for (;;) {
        size_t n = strcspn(p, sep);
        if (n || !skip_empty)
            strarray_appendm(sa, xstrndup(p, n));
        if (!p[n])
            break;
        p += n + 1;
    }
    return sa;
}

char *strarray_join(const strarray_t *sa, const char *sep)
{
    struct buf b = BUF_INITIALIZER;
    int i;

    for (i = 0; i < sa->count; i++) {
        if (i)
            buf_appendcstr(&b, sep);
        buf_appendcstr(&b, sa->data[i]);
    }
    return buf_release(&b);
}

strarray_t *strarray_dup(const strarray_t *sa)
{
    strarray_t *copy = strarray_new();
    int i;

    for (i = 0; sa && i < sa->count; i++)
        strarray_append(copy, sa->data[i]);
    return copy;
}

/* IMAP sequence sets ("1:5,7,9:*"): parsing with bounds, formatting, and
 * set operations on UIDs or message numbers. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/error.h"
#include "lib/xmalloc.h"

#include "imap/seqset.h"

void seqset_init(struct seqset *set)
{
    memset(set, 0, sizeof(*set));
}

void seqset_fini(struct seqset *set)
{
    if (!set)
        return;
    free(set->ranges);
    memset(set, 0, sizeof(*set));
}

struct seqset *seqset_new(void)
{
    return xzmalloc(sizeof(struct seqset));
}

void seqset_free(struct seqset **set)
{
    if (!set || !*set)
        return;
    seqset_fini(*set);
    free(*set);
    *set = NULL;
}

void seqset_clear(struct seqset *set)
{
    set->count = 0;
}

/* Make room for `n` ranges in total. */
static void ensure_alloc(struct seqset *set, size_t n)
{
    size_t want;

    if (n <= set->alloc)
        return;
    want = set->alloc ? set->alloc : 8;
    while (want < n)
        want *= 2;
    set->ranges = xreallocarray(set->ranges, want, sizeof(*set->ranges));
    set->alloc = want;
}

/* ---- parsing ---- */

/* Parse one number or "*" at s[*pos]; *val_r = 0 for a "*" with maxval
 * 0.  Returns 0 or ERR_INVALID. */
static int parse_number(const char *s, size_t len, size_t *pos,
                        uint32_t maxval, unsigned flags, uint32_t *val_r)
{
    uint64_t v = 0;
    size_t i = *pos;

    if (i < len && s[i] == '*') {
        if (flags & SEQSET_NOSTAR)
            return ERR_INVALID;
        *val_r = maxval;
        *pos = i + 1;
        return 0;
    }
    if (i >= len || s[i] < '0' || s[i] > '9')
        return ERR_INVALID;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        v = v * 10 + (uint64_t)(s[i] - '0');
        if (v > UINT32_MAX)
            return ERR_INVALID;
    }
    if (v == 0)
        return ERR_INVALID;
    *val_r = (uint32_t)v;
    *pos = i;
    return 0;
}

static int range_cmp(const void *a, const void *b)
{
    const struct seqset_range *x = a, *y = b;

    if (x->low != y->low)
        return x->low < y->low ? -1 : 1;
    if (x->high != y->high)
        return x->high < y->high ? -1 : 1;
    return 0;
}

/* Sort and merge overlapping or adjacent ranges in place. */
static void normalise(struct seqset *set)
{
    size_t i, out = 0;

    if (set->count < 2)
        return;
    qsort(set->ranges, set->count, sizeof(*set->ranges), range_cmp);
    for (i = 1; i < set->count; i++) {
        struct seqset_range *last = &set->ranges[out];
        const struct seqset_range *cur = &set->ranges[i];

        if ((uint64_t)cur->low <= (uint64_t)last->high + 1) {
            if (cur->high > last->high)
                last->high = cur->high;
        }
        else {
            set->ranges[++out] = *cur;
        }
    }
    set->count = out + 1;
}

/* Is the set already ascending with no touching ranges?  Then parsing
 * needs no sort (the usual case for stored sets). */
static int is_sorted(const struct seqset *set)
{
    size_t i;

    for (i = 1; i < set->count; i++) {
        if ((uint64_t)set->ranges[i].low
            <= (uint64_t)set->ranges[i - 1].high + 1)
            return 0;
    }
    return 1;
}

int seqset_parse(struct seqset *set, const char *s, size_t len,
                 uint32_t maxval, unsigned flags)
{
    size_t pos = 0, terms = 0;
    int r = 0;

    seqset_clear(set);
    if (!s || !len)
        return (s && (flags & SEQSET_ALLOW_EMPTY)) ? 0 : ERR_INVALID;

    while (pos < len) {
        uint32_t a, b;

        if (++terms > SEQSET_MAX_TERMS) {
            r = ERR_TOOBIG;
            goto done;
        }
        r = parse_number(s, len, &pos, maxval, flags, &a);
        if (r)
            goto done;
        b = a;
        if (pos < len && s[pos] == ':') {
            pos++;
            r = parse_number(s, len, &pos, maxval, flags, &b);
            if (r)
                goto done;
        }
        if (pos < len) {
            /* After a term only "," followed by another term may come. */
            if (s[pos] != ',' || pos + 1 == len) {
                r = ERR_INVALID;
                goto done;
            }
            pos++;
        }

        /* A "*" with no messages contributes nothing. */
        if (!a || !b)
            continue;
        ensure_alloc(set, set->count + 1);
        set->ranges[set->count].low = a < b ? a : b;
        set->ranges[set->count].high = a < b ? b : a;
        set->count++;
    }
    if (!is_sorted(set))
        normalise(set);

done:
    if (r)
        seqset_clear(set);
    return r;
}

/* ---- formatting ---- */

void seqset_format(const struct seqset *set, struct buf *out)
{
    size_t i;

    for (i = 0; i < set->count; i++) {
        const struct seqset_range *rg = &set->ranges[i];

        if (i)
            buf_putc(out, ',');
        if (rg->low == rg->high)
            buf_printf(out, "%u", rg->low);
        else
            buf_printf(out, "%u:%u", rg->low, rg->high);
    }
}

/* ---- changes ---- */

/* Index of the first range whose high + 1 >= n (it may touch n). */
static size_t first_touching(const struct seqset *set, uint64_t n)
{
    size_t lo = 0, hi = set->count;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if ((uint64_t)set->ranges[mid].high + 1 < n)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Replace ranges [i, j) by the `n` ranges in `with`. */
static void splice(struct seqset *set, size_t i, size_t j,
                   const struct seqset_range *with, size_t n)
{
    size_t tail = set->count - j;

    ensure_alloc(set, set->count - (j - i) + n);
    memmove(&set->ranges[i + n], &set->ranges[j],
            tail * sizeof(*set->ranges));
    if (n)
        memcpy(&set->ranges[i], with, n * sizeof(*with));
    set->count = i + n + tail;
}

/* Order low..high and map 0 to 1; returns 0 when nothing is left. */
static int fix_range(uint32_t *low, uint32_t *high)
{
    if (*low > *high) {
        uint32_t t = *low;

        *low = *high;
        *high = t;
    }
    if (!*high)
        return 0;
    if (!*low)
        *low = 1;
    return 1;
}

void seqset_add(struct seqset *set, uint32_t low, uint32_t high)
{
    struct seqset_range merged;
    size_t i, j;

    if (!fix_range(&low, &high))
        return;

    /* Every range from i to j-1 overlaps or touches low..high. */
    i = first_touching(set, low);
    j = i;
    merged.low = low;
    merged.high = high;
    while (j < set->count
           && (uint64_t)set->ranges[j].low <= (uint64_t)high + 1) {
        if (set->ranges[j].low < merged.low)
            merged.low = set->ranges[j].low;
        if (set->ranges[j].high > merged.high)
            merged.high = set->ranges[j].high;
        j++;
    }
    splice(set, i, j, &merged, 1);
}

void seqset_remove(struct seqset *set, uint32_t low, uint32_t high)
{
    struct seqset_range keep[2];
    size_t i, j, n = 0;

    if (!fix_range(&low, &high))
        return;

    /* Ranges i..j-1 intersect low..high. */
    i = first_touching(set, (uint64_t)low + 1);
    j = i;
    while (j < set->count && set->ranges[j].low <= high)
        j++;
    if (i == j)
        return;

    /* Keep what sticks out on either side. */
    if (set->ranges[i].low < low) {
        keep[n].low = set->ranges[i].low;
        keep[n++].high = low - 1;
    }
    if (set->ranges[j - 1].high > high) {
        keep[n].low = high + 1;
        keep[n++].high = set->ranges[j - 1].high;
    }
    splice(set, i, j, keep, n);
}

void seqset_union(struct seqset *set, const struct seqset *other)
{
    size_t i;

    if (set == other)
        return;
    for (i = 0; i < other->count; i++)
        seqset_add(set, other->ranges[i].low, other->ranges[i].high);
}

/* ---- queries ---- */

int seqset_contains(const struct seqset *set, uint32_t n)
{
    size_t i;

    if (!n)
        return 0;
    i = first_touching(set, (uint64_t)n + 1);
    return i < set->count && set->ranges[i].low <= n;
}

int seqset_is_empty(const struct seqset *set)
{
    return set->count == 0;
}

uint64_t seqset_cardinality(const struct seqset *set)
{
    uint64_t total = 0;
    size_t i;

    for (i = 0; i < set->count; i++)
        total += (uint64_t)set->ranges[i].high - set->ranges[i].low + 1;
    return total;
}

uint32_t seqset_first(const struct seqset *set)
{
    return set->count ? set->ranges[0].low : 0;
}

uint32_t seqset_last(const struct seqset *set)
{
    return set->count ? set->ranges[set->count - 1].high : 0;
}

uint32_t seqset_next(const struct seqset *set, uint32_t n)
{
    size_t i;

    if (n == UINT32_MAX)
        return 0;
    /* The first range with high >= n + 1 holds the answer. */
    i = first_touching(set, (uint64_t)n + 2);
    if (i >= set->count)
        return 0;
    return set->ranges[i].low > n ? set->ranges[i].low : n + 1;
}

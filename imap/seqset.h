/* IMAP sequence sets ("1:5,7,9:*"): parsing with bounds, formatting, and
 * set operations on UIDs or message numbers. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_IMAP_SEQSET_H
#define COLUMBA_IMAP_SEQSET_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

/*
 * TEXT FORM (RFC 9051 sequence-set, as stored in the seen database):
 *
 *   sequence-set = term *("," term)
 *   term         = number [":" number]
 *   number       = 1*DIGIT (value 1..4294967295) / "*"
 *
 * A range may be written either way round ("5:3" is 3:5).  "*" stands
 * for `maxval`, the largest number in use; when maxval is 0 (an empty
 * mailbox) a term holding "*" selects nothing.  Leading zeros are
 * tolerated; the value 0, numbers above 4294967295, empty terms,
 * spaces and any other byte are refused.  The "$" of SEARCHRES and the
 * meaning of numbers beyond maxval are the caller's business.
 *
 * A set is always normalised: sorted, disjoint, non-adjacent ranges, so
 * "3,1:2,5,4" formats as "1:5".  Parsing keeps at most SEQSET_MAX_TERMS
 * terms so a hostile command line cannot make us allocate without end.
 */

/* Most terms seqset_parse() accepts. */
#define SEQSET_MAX_TERMS (1024 * 1024)

/* seqset_parse() flags. */
enum {
    SEQSET_NOSTAR = 0x01,     /* refuse "*" (stored sets never hold it) */
    SEQSET_ALLOW_EMPTY = 0x02 /* "" is the empty set, not an error */
};

struct seqset_range {
    uint32_t low;
    uint32_t high;            /* low <= high, both >= 1 */
};

/* Read the ranges directly (ranges[0..count-1], ascending); change the
 * set only through the functions below. */
struct seqset {
    struct seqset_range *ranges;
    size_t count;
    size_t alloc;
};

#define SEQSET_INITIALIZER { NULL, 0, 0 }

/* Embedded sets: init to empty / release the ranges. */
void seqset_init(struct seqset *set);
void seqset_fini(struct seqset *set);

/* Heap sets: a new empty set; free one and clear the pointer (NULL and
 * *set == NULL accepted). */
struct seqset *seqset_new(void);
void seqset_free(struct seqset **set);

/* Empty the set, keeping its allocation. */
void seqset_clear(struct seqset *set);

/* Parse `len` bytes of `s` (no NUL needed; an embedded NUL is an error)
 * and replace the contents of `set`.  Returns 0, ERR_INVALID for a
 * syntax error or a number out of range, or ERR_TOOBIG past
 * SEQSET_MAX_TERMS terms; on failure the set is left empty. */
int seqset_parse(struct seqset *set, const char *s, size_t len,
                 uint32_t maxval, unsigned flags);

/* Append the text form to `out` ("" for the empty set). */
void seqset_format(const struct seqset *set, struct buf *out);

/* Add or remove low..high (either order; 0 counts as 1, and a range of
 * only 0 does nothing). */
void seqset_add(struct seqset *set, uint32_t low, uint32_t high);
void seqset_remove(struct seqset *set, uint32_t low, uint32_t high);

/* Add every member of `other` to `set`. */
void seqset_union(struct seqset *set, const struct seqset *other);

/* Is `n` a member? */
int seqset_contains(const struct seqset *set, uint32_t n);

/* Is the set empty? */
int seqset_is_empty(const struct seqset *set);

/* Number of members (up to 2^32 - 1). */
uint64_t seqset_cardinality(const struct seqset *set);

/* Smallest / largest member; 0 when empty. */
uint32_t seqset_first(const struct seqset *set);
uint32_t seqset_last(const struct seqset *set);

/* The smallest member greater than `n` (0 gives the first member); 0
 * when there is none.  Walk a set with
 * for (n = seqset_next(s, 0); n; n = seqset_next(s, n)). */
uint32_t seqset_next(const struct seqset *set, uint32_t n);

#endif /* COLUMBA_IMAP_SEQSET_H */

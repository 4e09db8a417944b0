/* String-keyed hash tables of void * values, growing as they fill, with
 * a per-process random hash key so clients cannot force collisions. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_LIB_HASH_H
#define COLUMBA_LIB_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "lib/strarray.h"

struct hash_entry;

/* The table owns copies of its keys; values belong to the caller unless
 * a free function is passed to hash_fini()/hash_free().  An all-zero
 * struct (HASH_TABLE_INITIALIZER) is a valid empty table. */
struct hash_table {
    size_t size;                 /* buckets, a power of two (or 0) */
    size_t count;                /* entries */
    struct hash_entry **buckets;
};

#define HASH_TABLE_INITIALIZER { 0, 0, NULL }

/* Initialise an embedded table sized for about `size_hint` entries (0
 * for a small default; huge hints are capped).  Release with
 * hash_fini(). */
void hash_init(struct hash_table *h, size_t size_hint);

/* A heap-allocated table, as hash_init(); release with hash_free(). */
struct hash_table *hash_new(size_t size_hint);

/* Free every entry (calling `free_data` on each value when not NULL)
 * and the buckets, leaving an empty table.  NULL is accepted. */
void hash_fini(struct hash_table *h, void (*free_data)(void *));

/* hash_fini() then free the table and set *hp to NULL.  NULL or a NULL
 * *hp is accepted. */
void hash_free(struct hash_table **hp, void (*free_data)(void *));

/* Store `data` under a copy of `key`.  Returns the value previously
 * stored under that key (the caller now owns it), or NULL when the key
 * is new.  A NULL `data` is stored like any other value. */
void *hash_insert(struct hash_table *h, const char *key, void *data);

/* The value stored under `key`, or NULL when absent. */
void *hash_lookup(const struct hash_table *h, const char *key);

/* Does the table hold `key` (useful when NULL values are stored)? */
int hash_has_key(const struct hash_table *h, const char *key);

/* Remove `key`; returns its value (the caller now owns it) or NULL. */
void *hash_del(struct hash_table *h, const char *key);

/* Number of entries. */
size_t hash_count(const struct hash_table *h);

/* Call `cb` for every entry, in no particular order.  The callback may
 * hash_del() the key it was called with, but must not otherwise insert
 * into or delete from the table. */
void hash_enumerate(struct hash_table *h,
                    void (*cb)(const char *key, void *data, void *rock),
                    void *rock);

/* A new array of copies of every key, sorted with strcmp (caller frees
 * with strarray_free()). */
strarray_t *hash_keys(const struct hash_table *h);

/* The keyed 64-bit hash the tables use (SipHash-1-3 under this
 * process's random key); exposed for tests and for other tables. */
uint64_t hash_string(const char *s, size_t len);

#endif /* COLUMBA_LIB_HASH_H */

/* String-keyed hash tables of void * values, growing as they fill, with
 * a per-process random hash key so clients cannot force collisions. */
/* Columba is free software; see COPYING for the licence. */

/*
 * Layout: an array of `size` buckets (a power of two), each a singly
 * linked chain of entries.  An entry holds its key inline after the
 * struct (one allocation) and caches the full 64-bit hash, so growing
 * never rehashes strings and a chain walk compares strings only when
 * hashes match.  The table doubles whenever the entry count would pass
 * the bucket count, keeping chains short on average.
 *
 * The hash is SipHash-1-3 keyed with 128 random bits drawn once per
 * process: keys often come from clients (header names, flag names), and
 * an unkeyed hash would let one craft a chain of colliding keys.
 */

#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/hash.h"
#include "lib/util.h"
#include "lib/xmalloc.h"

#define HASH_MIN_SIZE 16
/* Beyond this many buckets the table stops growing (chains lengthen
 * instead); it also caps a caller's size hint. */
#define HASH_MAX_SIZE ((size_t)1 << 26)

struct hash_entry {
    struct hash_entry *next;
    void *data;
    uint64_t hash;
    char key[];
};

static uint64_t sip_key[2];
static int sip_keyed;

/* ---------------------------------------------------------------------
 * SipHash-1-3 (Aumasson and Bernstein), written from the paper.
 */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static inline void sip_round(uint64_t v[4])
{
    v[0] += v[1]; v[1] = ROTL(v[1], 13); v[1] ^= v[0]; v[0] = ROTL(v[0], 32);
    v[2] += v[3]; v[3] = ROTL(v[3], 16); v[3] ^= v[2];
    v[0] += v[3]; v[3] = ROTL(v[3], 21); v[3] ^= v[0];
    v[2] += v[1]; v[1] = ROTL(v[1], 17); v[1] ^= v[2]; v[2] = ROTL(v[2], 32);
}

static uint64_t load_le64(const unsigned char *p, size_t n)
{
    uint64_t m = 0;
    size_t i;

    for (i = 0; i < n; i++)
        m |= (uint64_t)p[i] << (8 * i);
    return m;
}

static void ensure_key(void)
{
    if (sip_keyed)
        return;
    if (util_random_bytes(sip_key, sizeof(sip_key))) {
        /* No kernel randomness: still vary per process and boot. */
        sip_key[0] = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ULL;
        sip_key[1] = (uint64_t)getpid() ^ (uint64_t)(uintptr_t)&sip_key;
    }
    sip_keyed = 1;
}

uint64_t hash_string(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    uint64_t v[4];
    uint64_t m;
    size_t left = len;

    ensure_key();
    v[0] = sip_key[0] ^ 0x736f6d6570736575ULL;
    v[1] = sip_key[1] ^ 0x646f72616e646f6dULL;
    v[2] = sip_key[0] ^ 0x6c7967656e657261ULL;
    v[3] = sip_key[1] ^ 0x7465646279746573ULL;

    for (; left >= 8; p += 8, left -= 8) {
        m = load_le64(p, 8);
        v[3] ^= m;
        sip_round(v);
        v[0] ^= m;
    }
    m = load_le64(p, left) | ((uint64_t)len << 56);
    v[3] ^= m;
    sip_round(v);
    v[0] ^= m;

    v[2] ^= 0xff;
    sip_round(v);
    sip_round(v);
    sip_round(v);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}

/* ---------------------------------------------------------------------
 * Tables
 */

static size_t size_for(size_t hint)
{
    size_t size = HASH_MIN_SIZE;

    while (size < hint && size < HASH_MAX_SIZE)
        size *= 2;
    return size;
}

void hash_init(struct hash_table *h, size_t size_hint)
{
    h->size = size_for(size_hint);
    h->count = 0;
    h->buckets = xcalloc(h->size, sizeof(struct hash_entry *));
}

struct hash_table *hash_new(size_t size_hint)
{
    struct hash_table *h = xmalloc(sizeof(*h));

    hash_init(h, size_hint);
    return h;
}

void hash_fini(struct hash_table *h, void (*free_data)(void *))
{
    size_t i;

    if (!h)
        return;
    for (i = 0; i < h->size; i++) {
        struct hash_entry *e = h->buckets[i];
        while (e) {
            struct hash_entry *next = e->next;
            if (free_data)
                free_data(e->data);
            free(e);
            e = next;
        }
    }
    free(h->buckets);
    h->buckets = NULL;
    h->size = h->count = 0;
}

void hash_free(struct hash_table **hp, void (*free_data)(void *))
{
    if (!hp || !*hp)
        return;
    hash_fini(*hp, free_data);
    free(*hp);
    *hp = NULL;
}

/* Double the bucket array, relinking entries by their cached hash. */
static void grow(struct hash_table *h)
{
    size_t newsize = h->size * 2;
    struct hash_entry **nb = xcalloc(newsize, sizeof(*nb));
    size_t i;

    for (i = 0; i < h->size; i++) {
        struct hash_entry *e = h->buckets[i];
        while (e) {
            struct hash_entry *next = e->next;
            size_t b = (size_t)(e->hash & (newsize - 1));
            e->next = nb[b];
            nb[b] = e;
            e = next;
        }
    }
    free(h->buckets);
    h->buckets = nb;
    h->size = newsize;
}

/* The link that points at the entry for `key` (or at the NULL ending its
 * chain); *hash_r gets the key's hash.  The table must have buckets. */
static struct hash_entry **find_link(const struct hash_table *h,
                                     const char *key, size_t len,
                                     uint64_t *hash_r)
{
    uint64_t hv = hash_string(key, len);
    struct hash_entry **link = &h->buckets[hv & (h->size - 1)];

    while (*link) {
        if ((*link)->hash == hv && !strcmp((*link)->key, key))
            break;
        link = &(*link)->next;
    }
    *hash_r = hv;
    return link;
}

void *hash_insert(struct hash_table *h, const char *key, void *data)
{
    size_t len = strlen(key);
    struct hash_entry **link;
    struct hash_entry *e;
    uint64_t hv;
    void *old;

    if (!h->buckets)
        hash_init(h, 0);
    link = find_link(h, key, len, &hv);
    if (*link) {
        old = (*link)->data;
        (*link)->data = data;
        return old;
    }

    e = xmalloc(sizeof(*e) + len + 1);
    memcpy(e->key, key, len + 1);
    e->hash = hv;
    e->data = data;
    e->next = h->buckets[hv & (h->size - 1)];
    h->buckets[hv & (h->size - 1)] = e;
    h->count++;
    if (h->count > h->size && h->size < HASH_MAX_SIZE)
        grow(h);
    return NULL;
}

void *hash_lookup(const struct hash_table *h, const char *key)
{
    struct hash_entry **link;
    uint64_t hv;

    if (!h || !h->buckets)
        return NULL;
    link = find_link(h, key, strlen(key), &hv);
    return *link ? (*link)->data : NULL;
}

int hash_has_key(const struct hash_table *h, const char *key)
{
    uint64_t hv;

    if (!h || !h->buckets)
        return 0;
    return *find_link(h, key, strlen(key), &hv) != NULL;
}

void *hash_del(struct hash_table *h, const char *key)
{
    struct hash_entry **link;
    struct hash_entry *e;
    uint64_t hv;
    void *data;

    if (!h || !h->buckets)
        return NULL;
    link = find_link(h, key, strlen(key), &hv);
    e = *link;
    if (!e)
        return NULL;
    *link = e->next;
    data = e->data;
    free(e);
    h->count--;
    return data;
}

size_t hash_count(const struct hash_table *h)
{
    return h ? h->count : 0;
}

void hash_enumerate(struct hash_table *h,
                    void (*cb)(const char *key, void *data, void *rock),
                    void *rock)
{
    size_t i;

    if (!h)
        return;
    for (i = 0; i < h->size; i++) {
        struct hash_entry *e = h->buckets[i];
        while (e) {
            /* Fetch the successor first: cb may delete e. */
            struct hash_entry *next = e->next;
            cb(e->key, e->data, rock);
            e = next;
        }
    }
}

strarray_t *hash_keys(const struct hash_table *h)
{
    strarray_t *keys = strarray_new();
    size_t i;

    for (i = 0; h && i < h->size; i++) {
        struct hash_entry *e;
        for (e = h->buckets[i]; e; e = e->next)
            strarray_append(keys, e->key);
    }
    strarray_sort(keys, NULL);
    return keys;
}

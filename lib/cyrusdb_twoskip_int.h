/* twoskip internals shared by lib/cyrusdb_twoskip.c (lookups, writes,
 * the backend interface) and lib/cyrusdb_twoskip_recover.c (recovery and
 * repack).  The file format is described in lib/cyrusdb_twoskip.c. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_LIB_CYRUSDB_TWOSKIP_INT_H
#define COLUMBA_LIB_CYRUSDB_TWOSKIP_INT_H

#include <endian.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <zlib.h>

#include "lib/buf.h"
#include "lib/cyrusdb.h"
#include "lib/mappedfile.h"

#define TS_MAGIC "\241\002\213\015ColumbaSkip\n"
#define TS_MAGIC_LEN 16
#define TS_VERSION 3          /* written by this code */
#define TS_VERSION_OLD 2      /* read, and upgraded by the next write */
#define HEADER_SIZE 96
#define BOOTID_LEN 16
#define COMMIT_VALLEN 16
#define DUMMY_OFFSET HEADER_SIZE
#define MAXLEVEL 24
#define MAXPTRS (MAXLEVEL + 1)
#define MIN_REPACK (16 * 1024)
#define PREALLOC_MIN (16 * 1024)
#define PREALLOC_MAX (4 * 1024 * 1024)
/* The change counter: the last 4 bytes of the DUMMY's head, outside
 * its head CRC (see LOCK-FREE READS in lib/cyrusdb_twoskip.c). */
#define SEQ_OFFSET (DUMMY_OFFSET + HEADLEN(MAXPTRS) - 4)
/* Record heads verified by one lock-free lookup, kept until it is known
 * to have read a consistent file. */
#define LF_PENDING 64

#define TS_F_MBOXSORT 1
#define TS_F_DIRTY 2
#define TS_F_REPLACED 4

enum { REC_DUMMY = 1, REC_RECORD = 2, REC_DELETE = 3, REC_COMMIT = 4 };

#define HEADLEN(nptrs) (16 + 8 * (size_t)(nptrs) + 8)
#define PAD8(n) (((n) + 7) & ~(size_t)7)
#define COMMIT_LEN (HEADLEN(1) + COMMIT_VALLEN)
#define SEQ_LEN ((size_t)SEQ_OFFSET + 4)

struct tsheader {
    uint32_t version;
    uint32_t flags;
    uint64_t generation;
    uint64_t num_records;
    uint64_t current_size;
    uint64_t repack_size;
    unsigned char bootid[BOOTID_LEN];
};

/* One parsed record.  Only offsets are kept, so a remap of the file
 * never leaves a dangling pointer behind. */
struct rec {
    size_t off;
    uint8_t type;
    uint8_t nptrs;
    uint32_t keylen;
    uint32_t vallen;
    uint32_t datacrc;
    size_t len;         /* whole record including padding */
};

struct tsidx;

struct undo {
    size_t off;
    unsigned slot;
    uint64_t oldval;
};

struct txn {
    size_t start;           /* committed size when the txn began */
    uint32_t rangecrc;      /* over the fixed heads appended so far */
    struct tsheader saved;  /* header to restore on abort */
    int is_dirty;           /* counter made odd: something changed */
    struct undo *undo;
    size_t nundo, undo_alloc;
    struct buf pend;        /* records appended by the current change,
                               not written yet (see append_write) */
    size_t pend_off;        /* where they go */
};

struct tsdb {
    struct tsdb *next;      /* list of open files of this process */
    char *fname;
    pid_t pid;
    int refcount;
    int flags;              /* CYRUSDB_* open flags */
    int is_mbox;            /* the file's order */
    struct mappedfile *mf;
    char *const *basep;     /* mappedfile_base_ref(mf) */
    struct tsheader hdr;
    size_t end;             /* end of valid data for lookups */
    int is_lax;             /* dirty file read-only: level 0, data CRC */
    size_t *scan;           /* read-only after a power loss: live records
                               in key order, from a sequential scan */
    size_t nscan;
    int is_quiet;           /* scanning a tail: damage is expected */
    struct txn *txn;
    uint64_t changes;       /* bumped by every write, for foreach */
    struct buf wbuf;        /* record being appended */
    /* One bit per 8-byte offset: the head CRC of the record there was
     * verified (see rec_read); valid for this inode and generation. */
    uint64_t *vbits;
    size_t vwords;
    ino_t v_ino;
    uint64_t v_gen;
    /* Lock-free reads (see LOCK-FREE READS). */
    int is_lockfree;        /* inside one: damage is quiet, and verified
                               heads wait in lf_pending */
    size_t lf_pending[LF_PENDING];
    size_t lf_npending;
    long lf_second;         /* coarse second of the last locked access */
    uint32_t lf_seq;        /* the counter a lock-free read started at */
    struct tsidx *idx;      /* lookup index (see LOOKUP INDEX) */
    uint64_t idx_misses;    /* lock-free lookups since it went stale */
};

/* How often lock-free reads succeeded or fell back to the lock, for
 * tests and benchmarks (per process). */
struct twoskip_lf_stats {
    unsigned long hits;
    unsigned long fallbacks;
    unsigned long index_builds;     /* lookup indexes put in place */
};
extern struct twoskip_lf_stats twoskip_lf_stats;

/* ---- small helpers ---- */

static inline uint32_t get32(const char *p)
{
    uint32_t v;

    memcpy(&v, p, 4);
    return le32toh(v);
}

static inline uint64_t get64(const char *p)
{
    uint64_t v;

    memcpy(&v, p, 8);
    return le64toh(v);
}

/* Loads from the map that a writer may be changing at the same time
 * (pointers, the change counter): one aligned access each, so that a
 * value checked is the value used. */
static inline uint64_t load64(const char *p)
{
    return le64toh(__atomic_load_n((const uint64_t *)(const void *)p,
                                   __ATOMIC_RELAXED));
}

static inline uint32_t load32(const char *p)
{
    return le32toh(__atomic_load_n((const uint32_t *)(const void *)p,
                                   __ATOMIC_RELAXED));
}

static inline void put32(char *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, 4);
}

static inline void put64(char *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, 8);
}

static inline uint32_t crc_of(const char *p, size_t len)
{
    return len ? (uint32_t)crc32(0L, (const Bytef *)p, (uInt)len) : 0;
}

static inline uint32_t crc_of2(const char *a, size_t alen,
                        const char *b, size_t blen)
{
    uLong c = crc32(0L, (const Bytef *)a, (uInt)alen);

    /* crc32() with a NULL buffer restarts the CRC: skip empty parts. */
    if (blen)
        c = crc32(c, (const Bytef *)b, (uInt)blen);
    return (uint32_t)c;
}

/* CRC of a record head (without its CRC field) and the key after it. */
static inline uint32_t head_crc(const char *head, size_t headlen_nocrc,
                         const char *key, size_t keylen)
{
    return crc_of2(head, headlen_nocrc, key, keylen);
}

static inline const char *BASE(const struct tsdb *db)
{
    return *db->basep;
}

static inline const char *KEY(const struct tsdb *db, const struct rec *r)
{
    return BASE(db) + r->off + HEADLEN(r->nptrs);
}

/* Key of the record at `off` (whose head has been bounds-checked). */
static inline const char *KEY_AT(const struct tsdb *db, size_t off)
{
    return BASE(db) + off + HEADLEN((uint8_t)BASE(db)[off + 1]);
}

static inline const char *VAL(const struct tsdb *db, const struct rec *r)
{
    return KEY(db, r) + r->keylen;
}

static inline uint64_t PTR(const struct tsdb *db, const struct rec *r,
                           unsigned i)
{
    return load64(BASE(db) + r->off + 16 + 8 * (size_t)i);
}

/* cyrusdb_rawcmp() (the sign of it), inline for lookups: 8 bytes at a
 * time, as big-endian numbers. */
static inline int raw_keycmp(const char *a, size_t alen, const char *b,
                             size_t blen)
{
    size_t n = alen < blen ? alen : blen, i;

    for (i = 0; i + 8 <= n; i += 8) {
        uint64_t x, y;

        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        if (x != y)
            return be64toh(x) < be64toh(y) ? -1 : 1;
    }
    for (; i < n; i++) {
        if (a[i] != b[i])
            return (unsigned char)a[i] < (unsigned char)b[i] ? -1 : 1;
    }
    return (alen > blen) - (alen < blen);
}

static inline int keycmp(const struct tsdb *db, const char *a, size_t alen,
                  const char *b, size_t blen)
{
    return db->is_mbox ? cyrusdb_mboxcmp(a, alen, b, blen)
                       : raw_keycmp(a, alen, b, blen);
}

/* ---- lib/cyrusdb_twoskip.c ---- */

/* Log damage at `off` (unless scanning quietly); returns ERR_CORRUPT. */
int twoskip_corrupt(const struct tsdb *db, size_t off, const char *why);
/* A random skip level, 1..MAXLEVEL. */
unsigned twoskip_random_level(void);
/* The boot id of this system (all zero when unknown). */
const unsigned char *twoskip_this_boot(void);
/* Is a boot id available? */
int twoskip_has_boot_id(void);
/* Encode `h` as a HEADER_SIZE header carrying this boot's id. */
void twoskip_header_encode(const struct tsheader *h, char *p);
/* Write db->hdr to the file (not synced). */
int twoskip_header_write(struct tsdb *db);
/* fdatasync unless CYRUSDB_NOSYNC. */
int twoskip_sync_file(struct tsdb *db);
/* Forget which record heads were verified (the file changed). */
void twoskip_forget_verified(struct tsdb *db);
/* Parse and check the record at `off` below db->end. */
int twoskip_rec_read(struct tsdb *db, size_t off, struct rec *r);
/* Check the data CRC of a record about to be handed out. */
int twoskip_check_data(struct tsdb *db, const struct rec *r);
/* Effective level-0 successor of `r` (0: none). */
int twoskip_next0(struct tsdb *db, const struct rec *r, size_t *next_r);
/* Rewrite one pointer and the head CRC, without undo. */
int twoskip_set_ptr_raw(struct tsdb *db, size_t off, unsigned slot,
                        uint64_t val, uint64_t *old_r);
/* The change counter as stored, Gray-coded (0 for a file too short to
 * hold one); its bit parity is the parity of the count. */
uint32_t twoskip_seq(const struct tsdb *db);
/* Make the change count odd before changing anything a lock-free
 * reader may look at (exclusive lock; a no-op when it is odd). */
int twoskip_seq_begin(struct tsdb *db);
/* Make it even again once the file is consistent (a no-op when it is
 * even). */
void twoskip_seq_end(struct tsdb *db);

/* ---- lib/cyrusdb_twoskip_recover.c ---- */

/* Was the header written in another boot (power loss possible)? */
int twoskip_boot_changed(const struct tsdb *db);
/* Index into db->scan of the first key >= `key` (> when `after`). */
size_t twoskip_scan_search(const struct tsdb *db, const char *key,
                           size_t keylen, int after);
/* Read-only: index the file by a sequential scan (db->scan). */
int twoskip_scan_mode_begin(struct tsdb *db);
/* Rebuild from a sequential scan after a possible power loss
 * (exclusive lock; the caller locks again to follow the rename). */
int twoskip_power_recover(struct tsdb *db);
/* Finish or undo what a dead writer of this boot left (exclusive
 * lock, DIRTY set). */
int twoskip_recover_same_boot(struct tsdb *db);
/* Repack into fname.NEW and rename it over the file (exclusive lock,
 * no transaction).  The lock stays on the old file. */
int twoskip_repack(struct tsdb *db, int from_scan);
/* write(2) all of `p`; ERR_IO (logged) on failure. */
int twoskip_write_all(int fd, const char *p, size_t len, const char *fname);

#endif /* COLUMBA_LIB_CYRUSDB_TWOSKIP_INT_H */

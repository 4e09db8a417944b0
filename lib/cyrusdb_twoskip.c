/* twoskip: the default cyrusdb backend, a single-file skip list that is
 * appended to on write and survives a crash at any point. */
/* Columba is free software; see COPYING for the licence. */

/*
 * FILE FORMAT
 *
 * All integers are little-endian.  The file is a 96-byte header
 * followed by records, each starting at a multiple of 8 bytes, then
 * possibly zeros reserved for later appends (a zero type byte is "no
 * record").
 *
 * Header (96 bytes):
 *    0  16  magic "\241\002\213\015ColumbaSkip\n"
 *   16   4  version (2)
 *   20   4  flags: 1 = mailbox-name order, 2 = DIRTY (a writer may have
 *           changed pointers of committed records and not finished)
 *   24   8  generation, incremented by every repack
 *   32   8  number of live records
 *   40   8  current size: the end of committed data
 *   48   8  repack size: the current size right after the last repack
 *   56  16  boot id (Linux /proc/sys/kernel/random/boot_id) of the
 *           system that wrote this header
 *   72  20  zero
 *   92   4  CRC32 of bytes 0-91
 *
 * Record:
 *    0   1  type: 1 DUMMY, 2 RECORD, 3 DELETE, 4 COMMIT
 *    1   1  nptrs, the number of 8-byte pointers that follow
 *    2   2  zero
 *    4   4  key length
 *    8   4  value length
 *   12   4  CRC32 of the key bytes followed by the value bytes
 *   16  8n  pointers (file offsets; 0 is "none")
 *    .   4  CRC32 of everything above (the "head") followed by the key
 *    .   4  zero
 *    .      key, value, zero padding to a multiple of 8
 * Bytes 0-15 (the "fixed head"), key and value never change once
 * written; pointers and the head CRC are rewritten in place.
 *
 * A DUMMY (always at offset 96, empty key, the maximum level) heads the
 * list.  A RECORD of skip level L (1..24) has nptrs = L + 1: pointers 0
 * and 1 are two slots for the next record at level 0, pointer l + 1 the
 * next record at level l.  A DELETE has one pointer (the record that
 * follows the deleted one) and carries the deleted key.  A COMMIT ends
 * each transaction: its one pointer is the offset where the transaction
 * began, its 16-byte value the number of live records after it (8), the
 * CRC32 of the fixed heads of the transaction's records in file order
 * (4) and zero (4).
 *
 * LOOKUP
 *
 * A lookup starts at the DUMMY on the top level, moves right while the
 * next key is smaller than the one sought and drops a level when it is
 * not, as in any skip list.  At level 0 the "next" pointer is whichever
 * of the two slots is larger but still below the end of valid data (the
 * committed size for readers; the current end for the writer inside its
 * transaction); a DELETE reached this way is stepped over.  Every
 * record read is bounds-checked and its head CRC (which covers the key
 * too, so a damaged key cannot steer a search) verified, and a record
 * handed to a caller has its data CRC checked as well, so a damaged
 * file yields ERR_CORRUPT and a log line, never a wild read or a wrong
 * answer; a step counter bounded by the file size stops a pointer
 * cycle.
 *
 * WRITING
 *
 * A writer holds an exclusive fcntl lock for its whole transaction
 * (readers take a shared lock per operation).  Before its first change
 * it sets DIRTY in the header (written, not synced).  Each change
 * appends one record: an insert or replace appends the new RECORD, a
 * delete appends a DELETE pointing past the deleted record, and the
 * level-0 pointer of the preceding record is then pointed at the
 * appended record; upper levels are relinked in place.  Level-0
 * pointers therefore only ever grow.  A level-0 update overwrites a
 * slot that already holds a value written in this transaction if there
 * is one, and otherwise the smaller (older) slot: the slot holding the
 * committed successor is never overwritten.  Commit appends the COMMIT,
 * makes ONE fdatasync, then writes the header (new current size and
 * count, DIRTY clear, this boot's id) without syncing it: other
 * processes see it through the page cache.  Appends go into zeros
 * reserved ahead of the end (released at close), so that the sync need
 * not journal a new file size.  Abort replays an in-memory undo log of
 * the in-place changes, truncates the tail and clears DIRTY.
 *
 * CRASH SAFETY
 *
 * Process crash (the page cache survives, so everything written is
 * seen).  A writer killed before its COMMIT leaves DIRTY set and its
 * records past the current size; the committed level-0 chain is intact
 * because the committed slot of every record was left alone, upper
 * pointers may be changed.  One killed after the COMMIT but before the
 * header write had made every in-place change before appending the
 * COMMIT.  Whoever next takes the lock and finds DIRTY scans the tail
 * (see below): a transaction whose COMMIT verifies is taken in, after a
 * sync since its own may not have finished.  Then it truncates what
 * follows, walks the committed level-0 chain (checking each record's
 * data CRC rather than its head CRC, since a head may have been
 * rewritten by the lost transaction), rewrites both level-0 slots of
 * every record to the committed successor (the slot that does not
 * decide first, so that a recovery killed half-way is itself
 * recoverable), rebuilds every upper level from that walk, recounts,
 * syncs and clears DIRTY.  A reader that may not write (CYRUSDB_RDONLY)
 * searches a dirty file by level 0 alone instead.
 *
 * Power loss (the page cache is lost; the disk holds an unknown mix of
 * the writes since the last sync).  The last completed fdatasync made
 * every acknowledged commit durable, including its in-place pointer
 * changes.  The unsynced header may be older than that (its current
 * size too small), and writes of a transaction in progress, or of one
 * whose sync was cut short, may be on disk in part: among them in-place
 * pointers to offsets past the committed end, which would point into
 * the records of later commits once the file grows, and are outside
 * anything a CRC can check.  Not even a clean header proves their
 * absence (DIRTY was not synced), so instead every header carries the
 * boot id: a header of another boot means a power loss may lie in
 * between, and the next locker trusts no pointer.  It scans the tail
 * from the header's current size: each run of records closed by a
 * COMMIT that names the run's start and carries the CRC of the run's
 * fixed heads (all of which, with each record's data CRC, lie outside
 * what in-place writes touch) is committed and taken in; the first run
 * that does not verify, and all after it, is dropped (no later commit
 * can have been acknowledged, as its sync would have made this one
 * durable).  Then it rebuilds the file by a repack fed from a
 * sequential scan of every RECORD and DELETE up to that end (later in
 * the file supersedes earlier; a DELETE removes its key), not from
 * pointers.  The repacked file carries this boot's id, and every header
 * is written only after that check, so a header of this boot proves
 * the file has no stale pointers.  A torn header is caught by its CRC
 * (sector writes are atomic on the devices we support, so this does
 * not happen in practice).  A read-only opener that finds another
 * boot's header builds the same scan as a sorted index in memory and
 * looks records up in it.  Where no boot id is available DIRTY is
 * synced before the first change (two syncs per commit) and a dirty
 * file is always rebuilt from a scan.
 *
 * REPACK
 *
 * Checkpoint writes the live records in order to fname.NEW with fresh
 * levels (two passes: lay out, then write sequentially), syncs it and
 * renames it over the file.  Other processes notice at their next lock
 * that the path names a new inode and reopen; one holding the old file
 * mapped keeps reading it meanwhile.  A commit repacks automatically
 * when the file has grown past twice its size after the last repack
 * (and past 16 KiB), unless opened with CYRUSDB_NOCOMPACT.
 *
 * ORDER
 *
 * The key order (raw or mailbox, see cyrusdb.h) is chosen when the file
 * is created (CYRUSDB_MBOXSORT) and recorded in the header.  Every later
 * open uses the file's order whatever its flags say (a line is logged
 * when they disagree), so a tool that does not know a database's order
 * can neither misread nor damage it; cyrusdb_compar() reports it.  The
 * sql backend does the same.
 */

#include "config.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>
#include <zlib.h>

#include "lib/buf.h"
#include "lib/cyrusdb.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/mappedfile.h"
#include "lib/xmalloc.h"

#define TS_MAGIC "\241\002\213\015ColumbaSkip\n"
#define TS_MAGIC_LEN 16
#define TS_VERSION 2
#define HEADER_SIZE 96
#define BOOTID_LEN 16
#define COMMIT_VALLEN 16
#define DUMMY_OFFSET HEADER_SIZE
#define MAXLEVEL 24
#define MAXPTRS (MAXLEVEL + 1)
#define MIN_REPACK (16 * 1024)
#define VCACHE_SIZE 1024
#define PREALLOC_MIN (16 * 1024)
#define PREALLOC_MAX (4 * 1024 * 1024)

#define TS_F_MBOXSORT 1
#define TS_F_DIRTY 2
#define TS_F_REPLACED 4

enum { REC_DUMMY = 1, REC_RECORD = 2, REC_DELETE = 3, REC_COMMIT = 4 };

#define HEADLEN(nptrs) (16 + 8 * (size_t)(nptrs) + 8)
#define PAD8(n) (((n) + 7) & ~(size_t)7)
#define COMMIT_LEN (HEADLEN(1) + COMMIT_VALLEN)

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

struct undo {
    size_t off;
    unsigned slot;
    uint64_t oldval;
};

struct txn {
    size_t start;           /* committed size when the txn began */
    uint32_t rangecrc;      /* over the fixed heads appended so far */
    struct tsheader saved;  /* header to restore on abort */
    int is_dirty;           /* DIRTY written: something changed */
    struct undo *undo;
    size_t nundo, undo_alloc;
};

struct tsdb {
    struct tsdb *next;      /* list of open files of this process */
    char *fname;
    pid_t pid;
    int refcount;
    int flags;              /* CYRUSDB_* open flags */
    int is_mbox;            /* the file's order */
    struct mappedfile *mf;
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
    /* Offsets whose head CRC was verified since the file last changed
     * (see rec_read); valid for this inode, generation and size. */
    size_t verified[VCACHE_SIZE];
    ino_t v_ino;
    uint64_t v_gen, v_size;
};

static struct tsdb *open_dbs;

/* ---- small helpers ---- */

static uint32_t get32(const char *p)
{
    uint32_t v;

    memcpy(&v, p, 4);
    return le32toh(v);
}

static uint64_t get64(const char *p)
{
    uint64_t v;

    memcpy(&v, p, 8);
    return le64toh(v);
}

static void put32(char *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, 4);
}

static void put64(char *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, 8);
}

static uint32_t crc_of(const char *p, size_t len)
{
    return len ? (uint32_t)crc32(0L, (const Bytef *)p, (uInt)len) : 0;
}

static uint32_t crc_of2(const char *a, size_t alen,
                        const char *b, size_t blen)
{
    uLong c = crc32(0L, (const Bytef *)a, (uInt)alen);

    /* crc32() with a NULL buffer restarts the CRC: skip empty parts. */
    if (blen)
        c = crc32(c, (const Bytef *)b, (uInt)blen);
    return (uint32_t)c;
}

/* CRC of a record head (without its CRC field) and the key after it. */
static uint32_t head_crc(const char *head, size_t headlen_nocrc,
                         const char *key, size_t keylen)
{
    return crc_of2(head, headlen_nocrc, key, keylen);
}

static const char *BASE(const struct tsdb *db)
{
    return mappedfile_base(db->mf);
}

static const char *KEY(const struct tsdb *db, const struct rec *r)
{
    return BASE(db) + r->off + HEADLEN(r->nptrs);
}

/* Key of the record at `off` (whose head has been bounds-checked). */
static const char *KEY_AT(const struct tsdb *db, size_t off)
{
    return BASE(db) + off + HEADLEN((uint8_t)BASE(db)[off + 1]);
}

static const char *VAL(const struct tsdb *db, const struct rec *r)
{
    return KEY(db, r) + r->keylen;
}

static uint64_t PTR(const struct tsdb *db, const struct rec *r, unsigned i)
{
    return get64(BASE(db) + r->off + 16 + 8 * (size_t)i);
}

static int keycmp(const struct tsdb *db, const char *a, size_t alen,
                  const char *b, size_t blen)
{
    return db->is_mbox ? cyrusdb_mboxcmp(a, alen, b, blen)
                       : cyrusdb_rawcmp(a, alen, b, blen);
}

static int corrupt(const struct tsdb *db, size_t off, const char *why)
{
    if (db->is_quiet)
        return ERR_CORRUPT;
    xsyslog(LOG_ERR, "twoskip: database corrupt",
            "path=%s offset=%zu reason=%s", db->fname, off, why);
    return ERR_CORRUPT;
}

/* Skip levels: each level is a quarter as likely as the one below. */
static unsigned random_level(void)
{
    static uint64_t state;
    unsigned level = 1;
    uint64_t x;

    if (!state) {
        struct timeval tv;

        gettimeofday(&tv, NULL);
        state = (((uint64_t)tv.tv_usec << 20) ^ (uint64_t)getpid()
                 ^ (uint64_t)tv.tv_sec) | 1;
    }
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    x = state;
    while (level < MAXLEVEL && (x & 3) == 0) {
        level++;
        x >>= 2;
    }
    return level;
}

/* ---- boot identity ---- */

static unsigned char boot_id[BOOTID_LEN];
static int boot_id_state;   /* 0 unread, 1 known, -1 unavailable */

/* Read the kernel's per-boot UUID once: 32 hex digits and dashes. */
static void boot_id_load(void)
{
    char text[64];
    size_t i, n = 0;
    FILE *f;

    boot_id_state = -1;
    f = fopen("/proc/sys/kernel/random/boot_id", "re");
    if (!f)
        return;
    if (!fgets(text, sizeof(text), f)) {
        fclose(f);
        return;
    }
    fclose(f);
    memset(boot_id, 0, sizeof(boot_id));
    for (i = 0; text[i] && text[i] != '\n' && n < 2 * BOOTID_LEN; i++) {
        int v;

        if (text[i] == '-')
            continue;
        if (text[i] >= '0' && text[i] <= '9')
            v = text[i] - '0';
        else if (text[i] >= 'a' && text[i] <= 'f')
            v = text[i] - 'a' + 10;
        else
            break;
        boot_id[n / 2] |= (unsigned char)(n % 2 ? v : v << 4);
        n++;
    }
    if (n == 2 * BOOTID_LEN)
        boot_id_state = 1;
    else
        memset(boot_id, 0, sizeof(boot_id));
}

/* The boot we run in (all zero when the system does not say). */
static const unsigned char *this_boot(void)
{
    if (!boot_id_state)
        boot_id_load();
    return boot_id;
}

static int has_boot_id(void)
{
    this_boot();
    return boot_id_state == 1;
}

/* ---- header ---- */

static void header_encode(const struct tsheader *h, char *p)
{
    memset(p, 0, HEADER_SIZE);
    memcpy(p, TS_MAGIC, TS_MAGIC_LEN);
    put32(p + 16, h->version);
    put32(p + 20, h->flags);
    put64(p + 24, h->generation);
    put64(p + 32, h->num_records);
    put64(p + 40, h->current_size);
    put64(p + 48, h->repack_size);
    memcpy(p + 56, this_boot(), BOOTID_LEN);
    put32(p + HEADER_SIZE - 4, crc_of(p, HEADER_SIZE - 4));
}

static int header_write(struct tsdb *db)
{
    char buf[HEADER_SIZE];

    header_encode(&db->hdr, buf);
    return mappedfile_pwrite(db->mf, buf, HEADER_SIZE, 0);
}

static int sync_file(struct tsdb *db)
{
    if (db->flags & CYRUSDB_NOSYNC)
        return 0;
    return mappedfile_sync(db->mf);
}

static void forget_verified(struct tsdb *db)
{
    memset(db->verified, 0, sizeof(db->verified));
}

/* Parse the header from the map into db->hdr. */
static int header_read(struct tsdb *db)
{
    const char *p = BASE(db);
    size_t size = mappedfile_size(db->mf);

    if (size < HEADER_SIZE)
        return corrupt(db, 0, "file shorter than its header");
    if (memcmp(p, TS_MAGIC, TS_MAGIC_LEN)) {
        xsyslog(LOG_ERR, "twoskip: not a twoskip file", "path=%s",
                db->fname);
        return ERR_DB_BADFORMAT;
    }
    if (get32(p + HEADER_SIZE - 4) != crc_of(p, HEADER_SIZE - 4))
        return corrupt(db, 0, "header checksum mismatch");
    db->hdr.version = get32(p + 16);
    if (db->hdr.version != TS_VERSION) {
        xsyslog(LOG_ERR, "twoskip: unsupported version",
                "path=%s version=%u", db->fname, db->hdr.version);
        return ERR_DB_BADFORMAT;
    }
    db->hdr.flags = get32(p + 20);
    db->hdr.generation = get64(p + 24);
    db->hdr.num_records = get64(p + 32);
    db->hdr.current_size = get64(p + 40);
    db->hdr.repack_size = get64(p + 48);
    memcpy(db->hdr.bootid, p + 56, BOOTID_LEN);
    if (db->hdr.current_size < HEADER_SIZE + HEADLEN(MAXPTRS)
        || db->hdr.current_size % 8)
        return corrupt(db, 0, "bad current size in header");
    if (db->hdr.current_size > size)
        return corrupt(db, 0, "file truncated below its committed size");
    db->is_mbox = !!(db->hdr.flags & TS_F_MBOXSORT);
    db->end = db->hdr.current_size;
    if (db->v_ino != mappedfile_ino(db->mf)
        || db->v_gen != db->hdr.generation
        || db->v_size != db->hdr.current_size) {
        forget_verified(db);
        db->v_ino = mappedfile_ino(db->mf);
        db->v_gen = db->hdr.generation;
        db->v_size = db->hdr.current_size;
    }
    return 0;
}

/* DIRTY is set before anything is appended or changed, and cleared
 * only by a finished commit, abort or recovery. */
static int needs_recovery(struct tsdb *db)
{
    return !!(db->hdr.flags & TS_F_DIRTY);
}

/* ---- records ---- */

/* Parse and check the record at `off`. */
static int rec_read(struct tsdb *db, size_t off, struct rec *r)
{
    const char *p;
    size_t head;

    if (off % 8 || off < DUMMY_OFFSET || off > db->end
        || db->end - off < HEADLEN(0))
        return corrupt(db, off, "record offset out of range");
    p = BASE(db) + off;
    r->off = off;
    r->type = (uint8_t)p[0];
    r->nptrs = (uint8_t)p[1];
    r->keylen = get32(p + 4);
    r->vallen = get32(p + 8);
    r->datacrc = get32(p + 12);
    if (r->nptrs > MAXPTRS)
        return corrupt(db, off, "too many pointers");
    head = HEADLEN(r->nptrs);
    if (db->end - off < head
        || (db->end - off - head) < (size_t)r->keylen + r->vallen)
        return corrupt(db, off, "record runs past the end");
    r->len = head + PAD8((size_t)r->keylen + r->vallen);

    switch (r->type) {
    case REC_DUMMY:
        if (off != DUMMY_OFFSET || r->nptrs != MAXPTRS || r->keylen)
            return corrupt(db, off, "bad dummy record");
        break;
    case REC_RECORD:
        if (r->nptrs < 2 || off == DUMMY_OFFSET)
            return corrupt(db, off, "bad record level");
        break;
    case REC_DELETE:
        if (r->nptrs != 1 || !r->keylen || r->vallen)
            return corrupt(db, off, "bad delete record");
        break;
    case REC_COMMIT:
        if (r->nptrs != 1 || r->keylen || r->vallen != COMMIT_VALLEN)
            return corrupt(db, off, "bad commit record");
        break;
    default:
        return corrupt(db, off, "unknown record type");
    }

    if (db->is_lax) {
        if (crc_of(p + head, (size_t)r->keylen + r->vallen) != r->datacrc)
            return corrupt(db, off, "data checksum mismatch");
    }
    else if (db->verified[(off / 8) % VCACHE_SIZE] != off) {
        /* Lookups pass the same few upper nodes again and again: check
         * each head once per version of the file, not once per visit. */
        if (get32(p + head - 8) != head_crc(p, head - 8, p + head,
                                            r->keylen))
            return corrupt(db, off, "head checksum mismatch");
        db->verified[(off / 8) % VCACHE_SIZE] = off;
    }
    return 0;
}

/* Check the data CRC of a record about to be handed to a caller. */
static int check_data(struct tsdb *db, const struct rec *r)
{
    if (crc_of(KEY(db, r), (size_t)r->keylen + r->vallen) != r->datacrc)
        return corrupt(db, r->off, "data checksum mismatch");
    return 0;
}

static size_t scan_search(const struct tsdb *db, const char *key,
                          size_t keylen, int after);

/* Effective level-0 successor of `r` (DELETE records stepped over). */
static int next0(struct tsdb *db, const struct rec *r, size_t *next_r)
{
    struct rec d;
    uint64_t a, b, n;
    int hops, ret;

    if (db->scan) {
        size_t i = r->type == REC_DUMMY ? 0
                   : scan_search(db, KEY(db, r), r->keylen, 1);

        *next_r = i < db->nscan ? db->scan[i] : 0;
        return 0;
    }
    if (r->type == REC_DELETE) {
        n = PTR(db, r, 0);
    }
    else {
        a = PTR(db, r, 0);
        b = PTR(db, r, 1);
        if (a >= db->end)
            a = 0;
        if (b >= db->end)
            b = 0;
        n = a > b ? a : b;
    }
    for (hops = 0; n; hops++) {
        if (hops > 4)
            return corrupt(db, r->off, "chain of delete records");
        /* Peek at the type only: the caller reads (and checks) a
         * RECORD itself, so it is not checked twice. */
        if (n % 8 || n < DUMMY_OFFSET || n >= db->end)
            return corrupt(db, r->off, "level 0 pointer out of range");
        if (BASE(db)[n] == REC_RECORD)
            break;
        ret = rec_read(db, (size_t)n, &d);
        if (ret)
            return ret;
        if (d.type != REC_DELETE)
            return corrupt(db, (size_t)n, "level 0 points to non-record");
        n = PTR(db, &d, 0);
    }
    *next_r = (size_t)n;
    return 0;
}

static int next_at(struct tsdb *db, const struct rec *r, unsigned level,
                   size_t *next_r)
{
    if (level == 0)
        return next0(db, r, next_r);
    if ((unsigned)r->nptrs <= level + 1)
        return corrupt(db, r->off, "level above the record's own");
    *next_r = (size_t)PTR(db, r, level + 1);
    return 0;
}

/* Find `key`: loc[l] gets the last record before it at each level,
 * *ge_r the first record at or after it (0: none), *found_r whether
 * that one has the key. */
static int find(struct tsdb *db, const char *key, size_t keylen,
                size_t *loc, size_t *ge_r, int *found_r)
{
    struct rec node, next;
    size_t nextoff = 0, cached = 0, steps = 0;
    size_t maxsteps = db->end / 24 + MAXLEVEL * 2;
    int level, c = 1, r;

    if (db->scan) {
        size_t i = scan_search(db, key, keylen, 0);

        if (loc)
            for (level = 0; level < MAXLEVEL; level++)
                loc[level] = DUMMY_OFFSET;
        *ge_r = i < db->nscan ? db->scan[i] : 0;
        *found_r = *ge_r && !keycmp(db, KEY_AT(db, *ge_r),
                                    get32(BASE(db) + *ge_r + 4),
                                    key, keylen);
        return 0;
    }
    r = rec_read(db, DUMMY_OFFSET, &node);
    if (r)
        return r;
    for (level = db->is_lax ? 0 : MAXLEVEL - 1; level >= 0; level--) {
        for (;;) {
            r = next_at(db, &node, (unsigned)level, &nextoff);
            if (r)
                return r;
            if (!nextoff)
                break;
            if (nextoff != cached) {
                r = rec_read(db, nextoff, &next);
                if (r)
                    return r;
                if (next.type != REC_RECORD
                    || (!db->is_lax && next.nptrs <= (unsigned)level + 1))
                    return corrupt(db, nextoff, "bad link");
                c = keycmp(db, KEY(db, &next), next.keylen, key, keylen);
                cached = nextoff;
            }
            if (c >= 0)
                break;
            node = next;
            if (++steps > maxsteps)
                return corrupt(db, nextoff, "pointer cycle");
        }
        if (loc)
            loc[level] = node.off;
    }
    *ge_r = nextoff;
    *found_r = nextoff && c == 0;
    return 0;
}

/* ---- writing ---- */

/* Make the file reach past db->end + need, in zeros written ahead of
 * time: a commit's sync then flushes data into blocks the file already
 * owns and need not journal a new size (ext4 and the like), which
 * halves its cost.  Zeros past the end read as "no record". */
static int reserve_space(struct tsdb *db, size_t need)
{
    static const char zeros[64 * 1024];
    size_t size = mappedfile_size(db->mf), want;
    int r = 0;

    if (db->end + need <= size)
        return 0;
    want = db->end / 8;
    if (want < PREALLOC_MIN)
        want = PREALLOC_MIN;
    else if (want > PREALLOC_MAX)
        want = PREALLOC_MAX;
    want += db->end + need;
    while (!r && size < want) {
        size_t n = want - size < sizeof(zeros) ? want - size
                                                : sizeof(zeros);

        r = mappedfile_pwrite(db->mf, zeros, n, size);
        size += n;
    }
    return r;
}

/* Append one record at db->end; *off_r gets its offset. */
static int append_rec(struct tsdb *db, uint8_t type, unsigned nptrs,
                      const uint64_t *ptrs, const char *key, size_t keylen,
                      const char *val, size_t vallen, size_t *off_r)
{
    size_t head = HEADLEN(nptrs), total;
    static const char zeros[8];
    char *p;
    unsigned i;
    int r;

    buf_reset(&db->wbuf);
    buf_ensure(&db->wbuf, head);
    p = db->wbuf.s;
    memset(p, 0, head);
    p[0] = (char)type;
    p[1] = (char)nptrs;
    put32(p + 4, (uint32_t)keylen);
    put32(p + 8, (uint32_t)vallen);
    put32(p + 12, crc_of2(key, keylen, val, vallen));
    for (i = 0; i < nptrs; i++)
        put64(p + 16 + 8 * i, ptrs[i]);
    put32(p + head - 8, head_crc(p, head - 8, key, keylen));
    db->wbuf.len = head;
    buf_appendmap(&db->wbuf, key, keylen);
    buf_appendmap(&db->wbuf, val, vallen);
    total = PAD8(db->wbuf.len);
    buf_appendmap(&db->wbuf, zeros, total - db->wbuf.len);

    r = reserve_space(db, total);
    if (!r)
        r = mappedfile_pwrite(db->mf, db->wbuf.s, total, db->end);
    if (r)
        return r;
    if (db->txn && type != REC_COMMIT)
        db->txn->rangecrc = (uint32_t)crc32(db->txn->rangecrc,
                                            (const Bytef *)db->wbuf.s,
                                            16);
    *off_r = db->end;
    db->end += total;
    return 0;
}

/* Rewrite pointer `slot` of the record at `off` (and its head CRC). */
static int set_ptr_raw(struct tsdb *db, size_t off, unsigned slot,
                       uint64_t val, uint64_t *old_r)
{
    char head[HEADLEN(MAXPTRS)];
    size_t len;
    unsigned nptrs = (uint8_t)BASE(db)[off + 1];
    uint32_t keylen = get32(BASE(db) + off + 4);

    if (slot >= nptrs || nptrs > MAXPTRS)
        return corrupt(db, off, "pointer slot out of range");
    len = HEADLEN(nptrs);
    memcpy(head, BASE(db) + off, len);
    if (old_r)
        *old_r = get64(head + 16 + 8 * slot);
    put64(head + 16 + 8 * slot, val);
    put32(head + len - 8, head_crc(head, len - 8, BASE(db) + off + len,
                                   keylen));
    return mappedfile_pwrite(db->mf, head, len, off);
}

static int set_ptr(struct tsdb *db, size_t off, unsigned slot, uint64_t val)
{
    struct txn *t = db->txn;
    uint64_t old;
    int r;

    r = set_ptr_raw(db, off, slot, val, &old);
    if (r || old == val)
        return r;
    if (t->nundo == t->undo_alloc) {
        t->undo_alloc = t->undo_alloc ? t->undo_alloc * 2 : 16;
        t->undo = xreallocarray(t->undo, t->undo_alloc, sizeof(*t->undo));
    }
    t->undo[t->nundo].off = off;
    t->undo[t->nundo].slot = slot;
    t->undo[t->nundo].oldval = old;
    t->nundo++;
    return 0;
}

/* Point the level-0 link of `off` at `val`, never overwriting the slot
 * that holds the committed successor. */
static int set_next0(struct tsdb *db, size_t off, uint64_t val)
{
    struct rec r;
    uint64_t a, b;
    unsigned slot;
    int ret;

    ret = rec_read(db, off, &r);
    if (ret)
        return ret;
    a = PTR(db, &r, 0);
    b = PTR(db, &r, 1);
    if (a >= db->txn->start)
        slot = 0;
    else if (b >= db->txn->start)
        slot = 1;
    else
        slot = (a < b) ? 0 : 1;
    return set_ptr(db, off, slot, val);
}

/* Before the first change of a transaction: mark the file DIRTY. */
static int mark_dirty(struct tsdb *db)
{
    int r;

    if (db->txn->is_dirty)
        return 0;
    db->hdr.flags |= TS_F_DIRTY;
    r = header_write(db);
    if (!r && !has_boot_id())
        r = sync_file(db);
    if (!r)
        db->txn->is_dirty = 1;
    return r;
}

enum { OP_STORE, OP_CREATE, OP_DELETE };

static int do_delete(struct tsdb *db, const size_t *loc, const struct rec *f)
{
    uint64_t ptr;
    size_t next, doff;
    unsigned l;
    int r;

    r = next0(db, f, &next);
    if (!r) {
        ptr = next;
        r = append_rec(db, REC_DELETE, 1, &ptr, KEY(db, f), f->keylen,
                       NULL, 0, &doff);
    }
    if (!r)
        r = set_next0(db, loc[0], doff);
    for (l = 1; !r && l + 1 < f->nptrs; l++) {
        struct rec f2;

        r = rec_read(db, f->off, &f2); /* the map may have moved */
        if (!r)
            r = set_ptr(db, loc[l], l + 1, PTR(db, &f2, l + 1));
    }
    if (!r)
        db->hdr.num_records--;
    return r;
}

/* Insert a new record, or replace `f` (NULL for an insert). */
static int do_insert(struct tsdb *db, const size_t *loc, const struct rec *f,
                     const char *key, size_t keylen,
                     const char *val, size_t vallen)
{
    uint64_t ptrs[MAXPTRS];
    unsigned level, l;
    struct rec pred;
    size_t next, noff;
    int r;

    level = f ? (unsigned)f->nptrs - 1 : random_level();
    memset(ptrs, 0, sizeof(ptrs));
    if (f) {
        r = next0(db, f, &next);
        for (l = 1; l < level; l++)
            ptrs[l + 1] = PTR(db, f, l + 1);
    }
    else {
        r = rec_read(db, loc[0], &pred);
        if (!r)
            r = next0(db, &pred, &next);
        for (l = 1; !r && l < level; l++) {
            r = rec_read(db, loc[l], &pred);
            if (!r)
                ptrs[l + 1] = PTR(db, &pred, l + 1);
        }
    }
    if (r)
        return r;
    ptrs[0] = next;

    r = append_rec(db, REC_RECORD, level + 1, ptrs, key, keylen,
                   val, vallen, &noff);
    if (!r)
        r = set_next0(db, loc[0], noff);
    for (l = 1; !r && l < level; l++)
        r = set_ptr(db, loc[l], l + 1, noff);
    if (!r && !f)
        db->hdr.num_records++;
    return r;
}

/* One write inside the current transaction. */
static int write_op(struct tsdb *db, int op, const char *key, size_t keylen,
                    const char *val, size_t vallen, int force)
{
    size_t loc[MAXLEVEL], ge;
    struct rec f;
    int found, r;

    r = find(db, key, keylen, loc, &ge, &found);
    if (r)
        return r;
    if (op == OP_DELETE && !found)
        return force ? 0 : ERR_NOTFOUND;
    if (op == OP_CREATE && found)
        return ERR_EXISTS;
    r = mark_dirty(db);
    if (!r && found)
        r = rec_read(db, ge, &f);
    if (r)
        return r;
    db->changes++;
    if (op == OP_DELETE)
        return do_delete(db, loc, &f);
    return do_insert(db, loc, found ? &f : NULL, key, keylen, val, vallen);
}

/* ---- recovery ---- */

/* Was the header last written in another boot?  Then a power loss may
 * lie in between, and no pointer can be trusted (see CRASH SAFETY). */
static int boot_changed(const struct tsdb *db)
{
    return has_boot_id() && memcmp(db->hdr.bootid, this_boot(), BOOTID_LEN);
}

/* Does the COMMIT `c` close the run [start, c) whose fixed heads have
 * CRC `crc`? */
static int commit_verifies(struct tsdb *db, const struct rec *c,
                           size_t start, uint32_t crc)
{
    const char *p = BASE(db) + c->off;

    if (c->type != REC_COMMIT || PTR(db, c, 0) != start)
        return 0;
    if (get32(p + HEADLEN(1) - 8) != head_crc(p, HEADLEN(1) - 8, NULL, 0))
        return 0;
    return get32(VAL(db, c) + 8) == crc;
}

/* Find the transactions committed past the header's committed size:
 * each a run of records closed by a COMMIT naming the run's start and
 * carrying the CRC of the run's fixed heads.  Stops at the first run
 * that does not verify.  *end_r: the end of the last good COMMIT (the
 * header's size if none); *count_r: its record count.  Leaves db->end
 * at the file size and is_lax set; the caller resets them. */
static void tail_scan(struct tsdb *db, size_t *end_r, uint64_t *count_r)
{
    size_t off = db->hdr.current_size, start = off;
    uint32_t crc = 0;
    struct rec r;

    *end_r = off;
    *count_r = db->hdr.num_records;
    db->end = mappedfile_size(db->mf) & ~(size_t)7;
    db->is_lax = 1;
    db->is_quiet = 1;
    while (off < db->end && !rec_read(db, off, &r)) {
        if (r.type == REC_RECORD || r.type == REC_DELETE) {
            crc = (uint32_t)crc32(crc, (const Bytef *)BASE(db) + off, 16);
        }
        else if (commit_verifies(db, &r, start, crc)) {
            *end_r = start = off + r.len;
            *count_r = get64(VAL(db, &r));
            crc = 0;
        }
        else {
            break;
        }
        off += r.len;
    }
    db->is_quiet = 0;
}

static const struct tsdb *sort_db;

/* qsort order for scan_live: by key, then by file offset. */
static int scan_cmp(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    const char *base = BASE(sort_db), *px = base + x, *py = base + y;
    int c;

    c = keycmp(sort_db, px + HEADLEN((uint8_t)px[1]), get32(px + 4),
               py + HEADLEN((uint8_t)py[1]), get32(py + 4));
    if (c)
        return c;
    return x < y ? -1 : x > y;
}

/* Sequential scan of the records up to db->end, trusting no pointer:
 * the live records in key order (of several with one key the last in
 * the file wins; a DELETE removes the key).  Needs is_lax, so that
 * data CRCs are checked and the head CRCs, which in-place pointer
 * writes may have left torn, are not.  Caller frees *offs_r. */
static int scan_live(struct tsdb *db, size_t **offs_r, size_t *n_r)
{
    size_t off = DUMMY_OFFSET, n = 0, alloc = 0, i, out = 0;
    size_t *offs = NULL;
    struct rec r;
    int ret = 0;

    while (!ret && off < db->end) {
        ret = rec_read(db, off, &r);
        if (ret)
            break;
        if (r.type == REC_RECORD || r.type == REC_DELETE) {
            if (n == alloc) {
                alloc = alloc ? alloc * 2 : 1024;
                offs = xreallocarray(offs, alloc, sizeof(*offs));
            }
            offs[n++] = off;
        }
        off += r.len;
    }
    if (!ret && off != db->end)
        ret = corrupt(db, off, "records do not end at the committed size");
    if (ret) {
        free(offs);
        return ret;
    }
    sort_db = db;
    if (n)
        qsort(offs, n, sizeof(*offs), scan_cmp);
    for (i = 0; i < n; i++) {
        if (i + 1 < n && !keycmp(db, KEY_AT(db, offs[i]),
                                 get32(BASE(db) + offs[i] + 4),
                                 KEY_AT(db, offs[i + 1]),
                                 get32(BASE(db) + offs[i + 1] + 4)))
            continue;
        if (BASE(db)[offs[i]] == REC_RECORD)
            offs[out++] = offs[i];
    }
    *offs_r = offs;
    *n_r = out;
    return 0;
}

/* Index of the first scanned record whose key is >= `key` (> when
 * `after`). */
static size_t scan_search(const struct tsdb *db, const char *key,
                          size_t keylen, int after)
{
    size_t lo = 0, hi = db->nscan;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2, o = db->scan[mid];
        int c = keycmp(db, KEY_AT(db, o), get32(BASE(db) + o + 4),
                       key, keylen);

        if (c < 0 || (after && c == 0))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Read-only use of a file that may have lost in-place writes: look
 * records up in a sorted index built from a sequential scan. */
static int scan_mode_begin(struct tsdb *db)
{
    size_t end;
    uint64_t count;
    int r;

    tail_scan(db, &end, &count);
    db->end = end;
    r = scan_live(db, &db->scan, &db->nscan);
    if (!r && !db->scan)
        db->scan = xmalloc(sizeof(size_t)); /* marks the mode */
    return r;
}

static int repack(struct tsdb *db, int from_scan);

/* Power loss possible (the header was written in another boot, or the
 * boot cannot be told and the file is dirty): take in the committed
 * tail, then rebuild from a sequential scan into a fresh file.  The
 * caller must then lock again to follow the rename. */
static int power_recover(struct tsdb *db)
{
    size_t end;
    uint64_t count;
    int r;

    tail_scan(db, &end, &count);
    db->end = end;
    xsyslog(LOG_WARNING, "twoskip: rebuilding after a system restart",
            "path=%s committed=%llu recovered=%zu size=%zu", db->fname,
            (unsigned long long)db->hdr.current_size, end,
            mappedfile_size(db->mf));
    forget_verified(db);
    r = repack(db, 1);
    db->is_lax = 0;
    return r;
}

/* Set both level-0 slots of `r` to its committed successor `next`.
 * The slot that does not decide the successor is written first: were
 * we killed in between, the deciding slot still leads to `next` (maybe
 * through a DELETE), where writing it first could leave an older, larger
 * pointer in the other slot to win. */
static int recover_slots(struct tsdb *db, const struct rec *r, size_t next)
{
    uint64_t a = PTR(db, r, 0), b = PTR(db, r, 1);
    unsigned first;
    int ret;

    if (a >= db->end)
        a = 0;
    if (b >= db->end)
        b = 0;
    first = (a > b) ? 1 : 0;
    ret = set_ptr_raw(db, r->off, first, next, NULL);
    if (!ret)
        ret = set_ptr_raw(db, r->off, 1 - first, next, NULL);
    return ret;
}

/* Rebuild the list from the committed level-0 chain (exclusive lock). */
static int recover(struct tsdb *db)
{
    size_t last[MAXLEVEL], off, next, count = 0, steps = 0;
    struct rec r;
    unsigned l;
    int ret;

    xsyslog(LOG_WARNING, "twoskip: recovering after an unfinished write",
            "path=%s committed=%llu size=%zu", db->fname,
            (unsigned long long)db->hdr.current_size,
            mappedfile_size(db->mf));
    db->end = db->hdr.current_size;
    forget_verified(db);
    ret = mappedfile_truncate(db->mf, db->end);
    if (ret)
        return ret;

    db->is_lax = 1;
    for (l = 0; l < MAXLEVEL; l++)
        last[l] = DUMMY_OFFSET;
    off = DUMMY_OFFSET;
    while (off) {
        ret = rec_read(db, off, &r);
        if (!ret)
            ret = next0(db, &r, &next);
        if (!ret)
            ret = recover_slots(db, &r, next);
        for (l = 1; !ret && off != DUMMY_OFFSET && l + 1 < r.nptrs; l++) {
            ret = set_ptr_raw(db, last[l], l + 1, off, NULL);
            last[l] = off;
        }
        if (ret)
            goto done;
        if (off != DUMMY_OFFSET)
            count++;
        if (++steps > db->end / 24 + 2) {
            ret = corrupt(db, off, "pointer cycle");
            goto done;
        }
        off = next;
    }
    for (l = 1; !ret && l < MAXLEVEL; l++)
        ret = set_ptr_raw(db, last[l], l + 1, 0, NULL);
    if (ret)
        goto done;

    db->hdr.num_records = count;
    ret = sync_file(db);
    if (ret)
        goto done;
    db->hdr.flags &= ~(uint32_t)TS_F_DIRTY;
    ret = header_write(db);
    if (!ret)
        ret = sync_file(db);
    if (!ret)
        xsyslog(LOG_NOTICE, "twoskip: recovered", "path=%s records=%zu",
                db->fname, count);

done:
    db->is_lax = 0;
    return ret;
}

/* A writer of this boot died (the page cache holds all it wrote).  A
 * transaction whose COMMIT verifies finished every in-place change
 * before appending it, so only the header is behind: bring it forward
 * once the data is durable.  Anything else unfinished is undone by
 * recover(). */
static int recover_same_boot(struct tsdb *db)
{
    size_t end;
    uint64_t count;
    int r = 0;

    tail_scan(db, &end, &count);
    db->is_lax = 0;
    db->end = db->hdr.current_size;
    if (end > db->hdr.current_size) {
        xsyslog(LOG_NOTICE, "twoskip: taking in a finished commit",
                "path=%s committed=%llu end=%zu", db->fname,
                (unsigned long long)db->hdr.current_size, end);
        r = sync_file(db);
        if (!r) {
            db->hdr.current_size = end;
            db->hdr.num_records = count;
            db->end = end;
        }
    }
    return r ? r : recover(db);
}

/* ---- locking ---- */

/* Fresh file: write the header and the DUMMY. */
static int init_file(struct tsdb *db)
{
    uint64_t ptrs[MAXPTRS];
    size_t off;
    int r;

    memset(&db->hdr, 0, sizeof(db->hdr));
    memset(ptrs, 0, sizeof(ptrs));
    db->hdr.version = TS_VERSION;
    db->hdr.flags = (db->flags & CYRUSDB_MBOXSORT) ? TS_F_MBOXSORT : 0;
    db->end = HEADER_SIZE;
    r = append_rec(db, REC_DUMMY, MAXPTRS, ptrs, NULL, 0, NULL, 0, &off);
    if (r)
        return r;
    db->hdr.current_size = db->end;
    db->hdr.repack_size = db->end;
    r = header_write(db);
    if (!r)
        r = sync_file(db);
    if (!r)
        r = mappedfile_syncdir(db->fname);
    db->is_mbox = !!(db->hdr.flags & TS_F_MBOXSORT);
    return r;
}

static int lock_exclusive(struct tsdb *db)
{
    int r;

    if (db->flags & CYRUSDB_RDONLY)
        return ERR_DB_READONLY;
    for (;;) {
        r = mappedfile_lock(db->mf, MAPPEDFILE_EXCLUSIVE, NULL);
        if (r)
            return r;
        if (mappedfile_size(db->mf) == 0)
            r = init_file(db);
        else
            r = header_read(db);
        if (r || !(boot_changed(db)
                   || (needs_recovery(db) && !has_boot_id())))
            break;
        /* Rebuilt into a new file: lock again to follow it. */
        r = power_recover(db);
        mappedfile_unlock(db->mf);
        if (r)
            return r;
    }
    if (!r && needs_recovery(db))
        r = recover_same_boot(db);
    if (r)
        mappedfile_unlock(db->mf);
    return r;
}

static int lock_shared(struct tsdb *db)
{
    int r;

    r = mappedfile_lock(db->mf, MAPPEDFILE_SHARED, NULL);
    if (r)
        return r;
    db->is_lax = 0;
    if (mappedfile_size(db->mf) == 0 && (db->flags & CYRUSDB_RDONLY))
        r = ERR_NOTFOUND;
    else if (mappedfile_size(db->mf) > 0)
        r = header_read(db);
    if (r || (mappedfile_size(db->mf) > 0 && !needs_recovery(db)
              && !boot_changed(db)))
        goto done;

    if (db->flags & CYRUSDB_RDONLY) {
        db->is_lax = 1;
        if (boot_changed(db) || !has_boot_id())
            r = scan_mode_begin(db);
        goto done;
    }
    /* Recover (or initialise) under the exclusive lock, then step down. */
    mappedfile_unlock(db->mf);
    r = lock_exclusive(db);
    if (!r)
        r = mappedfile_lock(db->mf, MAPPEDFILE_SHARED, NULL);

done:
    if (r)
        mappedfile_unlock(db->mf);
    return r;
}

static int unlock(struct tsdb *db)
{
    db->is_lax = 0;
    free(db->scan);
    db->scan = NULL;
    db->nscan = 0;
    return mappedfile_unlock(db->mf);
}

/* ---- transactions ---- */

static int txn_begin(struct tsdb *db)
{
    int r = lock_exclusive(db);

    if (r)
        return r;
    db->txn = xzmalloc(sizeof(*db->txn));
    db->txn->start = db->end;
    db->txn->saved = db->hdr;
    return 0;
}

static void txn_free(struct tsdb *db)
{
    if (!db->txn)
        return;
    free(db->txn->undo);
    xfree(db->txn);
}


static int ts_commit(struct db *db_, struct txn *tid)
{
    struct tsdb *db = (struct tsdb *)db_;
    uint64_t ptr;
    size_t off;
    char val[COMMIT_VALLEN];
    int r = 0;

    if (!tid || tid != db->txn)
        return ERR_DB_TXN;
    if (tid->is_dirty) {
        /* The one sync: records, in-place pointer changes and the
         * COMMIT reach the disk together.  The header is only a hint
         * after that (see CRASH SAFETY), so it is not synced. */
        ptr = tid->start;
        put64(val, db->hdr.num_records);
        put32(val + 8, tid->rangecrc);
        put32(val + 12, 0);
        r = append_rec(db, REC_COMMIT, 1, &ptr, NULL, 0, val, sizeof(val),
                       &off);
        if (!r)
            r = sync_file(db);
        if (!r) {
            db->hdr.current_size = db->end;
            db->hdr.flags &= ~(uint32_t)TS_F_DIRTY;
            r = header_write(db);
        }
        if (r) {
            xsyslog(LOG_ERR, "twoskip: commit failed", "path=%s error=%s",
                    db->fname, error_message(r));
            /* The header was not updated: the next locker recovers. */
        }
    }
    txn_free(db);
    if (!r && !(db->flags & CYRUSDB_NOCOMPACT) && db->end > MIN_REPACK
        && db->end > 2 * db->hdr.repack_size) {
        if (repack(db, 0))
            xsyslog(LOG_WARNING, "twoskip: automatic repack failed",
                    "path=%s", db->fname);
    }
    unlock(db);
    return r;
}

static int ts_abort(struct db *db_, struct txn *tid)
{
    struct tsdb *db = (struct tsdb *)db_;
    size_t i;
    int r = 0;

    if (!tid || tid != db->txn)
        return ERR_DB_TXN;
    if (tid->is_dirty) {
        for (i = tid->nundo; !r && i-- > 0;)
            r = set_ptr_raw(db, tid->undo[i].off, tid->undo[i].slot,
                            tid->undo[i].oldval, NULL);
        forget_verified(db);
        if (!r)
            r = mappedfile_truncate(db->mf, tid->start);
        if (!r)
            r = sync_file(db);
        if (!r) {
            db->hdr = tid->saved;
            db->hdr.flags &= ~(uint32_t)TS_F_DIRTY;
            db->end = tid->start;
            r = header_write(db);
        }
    }
    txn_free(db);
    unlock(db);
    return r;
}

/* Start of an operation: join, begin, or take a one-shot lock.
 * *mode_r: 0 nothing to undo, 1 shared lock taken, 2 own transaction. */
static int op_begin(struct tsdb *db, struct txn **tid, int is_write,
                    int *mode_r)
{
    int r;

    *mode_r = 0;
    if (tid && *tid)
        return (*tid == db->txn) ? 0 : ERR_DB_TXN;
    if (tid || (is_write && !db->txn)) {
        if (db->txn)
            return ERR_LOCKED;
        r = txn_begin(db);
        if (r)
            return r;
        if (tid)
            *tid = db->txn;
        else
            *mode_r = 2;
        return 0;
    }
    if (db->txn)
        return is_write ? ERR_LOCKED : 0; /* read our own transaction */
    r = lock_shared(db);
    if (!r)
        *mode_r = 1;
    return r;
}

static int op_end(struct tsdb *db, int mode, int r)
{
    if (mode == 1) {
        unlock(db);
    }
    else if (mode == 2) {
        int r2 = r ? ts_abort((struct db *)db, db->txn)
                   : ts_commit((struct db *)db, db->txn);
        if (!r)
            r = r2;
    }
    return r;
}

/* ---- repack ---- */

struct layout {
    size_t *old;      /* offsets of live records in the old file */
    size_t *newoff;
    uint8_t *level;
    size_t n, alloc;
};

/* Add the live record `r` to the layout at *pos_r. */
static void layout_add(struct layout *lay, const struct rec *r,
                       size_t *pos_r)
{
    if (lay->n == lay->alloc) {
        lay->alloc = lay->alloc ? lay->alloc * 2 : 1024;
        lay->old = xreallocarray(lay->old, lay->alloc, sizeof(size_t));
        lay->newoff = xreallocarray(lay->newoff, lay->alloc,
                                    sizeof(size_t));
        lay->level = xreallocarray(lay->level, lay->alloc, 1);
    }
    lay->old[lay->n] = r->off;
    lay->level[lay->n] = (uint8_t)random_level();
    lay->newoff[lay->n] = *pos_r;
    *pos_r += HEADLEN(lay->level[lay->n] + 1)
              + PAD8((size_t)r->keylen + r->vallen);
    lay->n++;
}

/* Pass 1: list the live records and give each a level and new place,
 * by the level-0 chain or (`from_scan`, trusting no pointer) by a
 * sequential scan. */
static int repack_layout(struct tsdb *db, struct layout *lay, int from_scan,
                         size_t *end_r)
{
    size_t off, pos = HEADER_SIZE + HEADLEN(MAXPTRS), *offs = NULL, n, i;
    struct rec r;
    int ret;

    if (from_scan) {
        ret = scan_live(db, &offs, &n);
        for (i = 0; !ret && i < n; i++) {
            ret = rec_read(db, offs[i], &r);
            if (!ret)
                layout_add(lay, &r, &pos);
        }
        free(offs);
        *end_r = pos;
        return ret;
    }
    ret = rec_read(db, DUMMY_OFFSET, &r);
    if (!ret)
        ret = next0(db, &r, &off);
    while (!ret && off) {
        ret = rec_read(db, off, &r);
        if (ret)
            break;
        if (check_data(db, &r))
            return ERR_CORRUPT;
        layout_add(lay, &r, &pos);
        ret = next0(db, &r, &off);
    }
    *end_r = pos;
    return ret;
}

/* Encode one record head into `out` (HEADLEN(nptrs) bytes). */
static void head_encode(char *out, uint8_t type, unsigned nptrs,
                        const uint64_t *ptrs, const char *key,
                        uint32_t keylen, uint32_t vallen, uint32_t datacrc)
{
    size_t head = HEADLEN(nptrs);
    unsigned i;

    memset(out, 0, head);
    out[0] = (char)type;
    out[1] = (char)nptrs;
    put32(out + 4, keylen);
    put32(out + 8, vallen);
    put32(out + 12, datacrc);
    for (i = 0; i < nptrs; i++)
        put64(out + 16 + 8 * i, ptrs[i]);
    put32(out + head - 8, head_crc(out, head - 8, key, keylen));
}

static int write_all(int fd, const char *p, size_t len, const char *fname)
{
    while (len) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            xsyslog_syscall("write", "path", fname);
            return ERR_IO;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Pass 2: write the new file sequentially.  nextat[l] holds, walking
 * backwards, the next record whose level exceeds l. */
static int repack_write(struct tsdb *db, const struct layout *lay, int fd,
                        const char *newname, size_t end)
{
    uint64_t nextat[MAXLEVEL], ptrs[MAXPTRS];
    uint64_t *links;        /* per record: its upper-level successors */
    size_t *first, i, nl = 0;
    struct buf out = BUF_INITIALIZER;
    char head[HEADLEN(MAXPTRS)];
    struct tsheader h;
    uint32_t rangecrc;
    unsigned l;
    int r = 0;

    first = xcalloc(lay->n + 1, sizeof(size_t));
    for (i = 0; i < lay->n; i++) {
        first[i] = nl;
        nl += lay->level[i];
    }
    links = xcalloc(nl + 1, sizeof(uint64_t));
    memset(nextat, 0, sizeof(nextat));
    for (i = lay->n; i-- > 0;) {
        for (l = 0; l < lay->level[i]; l++) {
            links[first[i] + l] = nextat[l];
            nextat[l] = lay->newoff[i];
        }
    }

    memset(&h, 0, sizeof(h));
    h.version = TS_VERSION;
    h.flags = db->hdr.flags & TS_F_MBOXSORT;
    h.generation = db->hdr.generation + 1;
    h.num_records = lay->n;
    h.current_size = end + COMMIT_LEN;
    h.repack_size = h.current_size;
    buf_ensure(&out, HEADER_SIZE);
    header_encode(&h, out.s);
    out.len = HEADER_SIZE;

    memset(ptrs, 0, sizeof(ptrs));
    for (l = 0; l < MAXLEVEL; l++)
        ptrs[l ? l + 1 : 0] = nextat[l];
    head_encode(head, REC_DUMMY, MAXPTRS, ptrs, NULL, 0, 0, 0);
    buf_appendmap(&out, head, HEADLEN(MAXPTRS));
    rangecrc = (uint32_t)crc32(0L, (const Bytef *)head, 16);

    for (i = 0; !r && i < lay->n; i++) {
        struct rec rec;
        static const char zeros[8];
        size_t dlen;

        r = rec_read(db, lay->old[i], &rec);
        if (r)
            break;
        memset(ptrs, 0, sizeof(ptrs));
        for (l = 0; l < lay->level[i]; l++)
            ptrs[l ? l + 1 : 0] = links[first[i] + l];
        head_encode(head, REC_RECORD, lay->level[i] + 1u, ptrs,
                    KEY(db, &rec), rec.keylen, rec.vallen, rec.datacrc);
        buf_appendmap(&out, head, HEADLEN(lay->level[i] + 1u));
        rangecrc = (uint32_t)crc32(rangecrc, (const Bytef *)head, 16);
        dlen = (size_t)rec.keylen + rec.vallen;
        buf_appendmap(&out, KEY(db, &rec), dlen);
        buf_appendmap(&out, zeros, PAD8(dlen) - dlen);
        if (out.len >= 1024 * 1024) {
            r = write_all(fd, out.s, out.len, newname);
            buf_reset(&out);
        }
    }
    if (!r) {
        char val[COMMIT_VALLEN];

        ptrs[0] = HEADER_SIZE;
        put64(val, lay->n);
        put32(val + 8, rangecrc);
        put32(val + 12, 0);
        head_encode(head, REC_COMMIT, 1, ptrs, NULL, 0, COMMIT_VALLEN,
                    crc_of(val, COMMIT_VALLEN));
        buf_appendmap(&out, head, HEADLEN(1));
        buf_appendmap(&out, val, COMMIT_VALLEN);
        r = write_all(fd, out.s, out.len, newname);
    }
    buf_free(&out);
    free(links);
    free(first);
    return r;
}

/* Write the live records to fname.NEW and rename it over the file.
 * Called with the exclusive lock held and no transaction open; the
 * lock is left on the old file (released by the caller). */
static int repack(struct tsdb *db, int from_scan)
{
    struct layout lay;
    struct buf newname = BUF_INITIALIZER;
    size_t end = 0;
    int fd = -1, r;

    memset(&lay, 0, sizeof(lay));
    buf_printf(&newname, "%s.NEW", db->fname);
    r = repack_layout(db, &lay, from_scan, &end);
    if (r)
        goto done;
    fd = open(buf_cstring(&newname),
              O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        xsyslog_syscall("open", "path", buf_cstring(&newname));
        r = ERR_IO;
        goto done;
    }
    r = repack_write(db, &lay, fd, buf_cstring(&newname), end);
    if (!r && !(db->flags & CYRUSDB_NOSYNC) && fdatasync(fd) < 0) {
        xsyslog_syscall("fdatasync", "path", buf_cstring(&newname));
        r = ERR_IO;
    }
    if (!r && rename(buf_cstring(&newname), db->fname) < 0) {
        xsyslog_syscall("rename", "path", buf_cstring(&newname));
        r = ERR_IO;
    }
    if (!r && !(db->flags & CYRUSDB_NOSYNC))
        r = mappedfile_syncdir(db->fname);
    if (!r)
        xsyslog(LOG_INFO, "twoskip: repacked", "path=%s records=%zu "
                "oldsize=%zu newsize=%zu", db->fname, lay.n, db->end,
                end + COMMIT_LEN);

done:
    if (fd >= 0)
        close(fd);
    if (r && fd >= 0)
        unlink(buf_cstring(&newname));
    free(lay.old);
    free(lay.newoff);
    free(lay.level);
    buf_free(&newname);
    return r;
}

/* ---- the backend interface ---- */

static int ts_detect(const char *header, size_t len)
{
    return len >= TS_MAGIC_LEN && !memcmp(header, TS_MAGIC, TS_MAGIC_LEN);
}

static struct tsdb *find_open(const char *fname)
{
    struct tsdb *db;
    pid_t pid = getpid();

    for (db = open_dbs; db; db = db->next) {
        if (db->pid == pid && !strcmp(db->fname, fname))
            return db;
    }
    return NULL;
}

static void db_free(struct tsdb *db)
{
    struct tsdb **pp;

    for (pp = &open_dbs; *pp; pp = &(*pp)->next) {
        if (*pp == db) {
            *pp = db->next;
            break;
        }
    }
    mappedfile_close(&db->mf);
    buf_free(&db->wbuf);
    free(db->fname);
    free(db);
}

/* The file's order wins over the flags; say so when they differ. */
static int check_order(struct tsdb *db, int flags)
{
    int want = !!(flags & CYRUSDB_MBOXSORT);

    if (want != db->is_mbox)
        xsyslog(LOG_INFO, "twoskip: using the file's key order",
                "path=%s order=%s", db->fname,
                db->is_mbox ? "mailbox" : "raw");
    return 0;
}

static int ts_open(const char *fname, int flags, struct db **dbp,
                   struct txn **tid)
{
    struct tsdb *db = find_open(fname);
    int mfflags, r;

    if (db) {
        if ((db->flags & CYRUSDB_RDONLY) && !(flags & CYRUSDB_RDONLY))
            return ERR_LOCKED; /* XXX: cannot upgrade a shared read-only
                                  handle; open read-write first */
        r = check_order(db, flags);
        if (r)
            return r;
        db->refcount++;
        r = tid ? op_begin(db, tid, 1, &mfflags) : 0;
        if (r) {
            db->refcount--;
            return r;
        }
        *dbp = (struct db *)db;
        return 0;
    }

    db = xzmalloc(sizeof(*db));
    db->fname = xstrdup(fname);
    db->pid = getpid();
    db->refcount = 1;
    db->flags = flags;
    mfflags = (flags & CYRUSDB_RDONLY) ? 0 : MAPPEDFILE_RW;
    if ((flags & CYRUSDB_CREATE) && !(flags & CYRUSDB_RDONLY))
        mfflags |= MAPPEDFILE_CREATE;
    r = mappedfile_open(fname, mfflags, &db->mf);
    if (r) {
        free(db->fname);
        free(db);
        return r;
    }
    db->next = open_dbs;
    open_dbs = db;

    r = lock_shared(db);
    if (!r) {
        r = check_order(db, flags);
        unlock(db);
    }
    if (!r && tid)
        r = op_begin(db, tid, 1, &mfflags);
    if (r) {
        db_free(db);
        return r;
    }
    *dbp = (struct db *)db;
    return 0;
}

/* Give back the zeros reserved past the committed end (see
 * reserve_space) when the last handle of this process goes. */
static void trim_reserve(struct tsdb *db)
{
    if ((db->flags & CYRUSDB_RDONLY) || db->txn || lock_exclusive(db))
        return;
    if (mappedfile_size(db->mf) > db->hdr.current_size)
        mappedfile_truncate(db->mf, db->hdr.current_size);
    unlock(db);
}

static int ts_close(struct db *db_)
{
    struct tsdb *db = (struct tsdb *)db_;

    if (--db->refcount > 0)
        return 0;
    if (db->txn) {
        xsyslog(LOG_WARNING, "twoskip: closed with a transaction open",
                "path=%s", db->fname);
        ts_abort(db_, db->txn);
    }
    trim_reserve(db);
    db_free(db);
    return 0;
}

static int ts_fetch(struct db *db_, const char *key, size_t keylen,
                    const char **data, size_t *datalen, struct txn **tid)
{
    struct tsdb *db = (struct tsdb *)db_;
    struct rec f;
    size_t ge;
    int mode, found, r;

    r = op_begin(db, tid, 0, &mode);
    if (r)
        return r;
    r = find(db, key, keylen, NULL, &ge, &found);
    if (!r && !found)
        r = ERR_NOTFOUND;
    if (!r)
        r = rec_read(db, ge, &f);
    if (!r)
        r = check_data(db, &f);
    if (!r) {
        if (data)
            *data = VAL(db, &f);
        if (datalen)
            *datalen = f.vallen;
    }
    return op_end(db, mode, r);
}

static int ts_fetchlock(struct db *db_, const char *key, size_t keylen,
                        const char **data, size_t *datalen,
                        struct txn **tid)
{
    struct tsdb *db = (struct tsdb *)db_;
    int mode, r;

    if (!tid)
        return ts_fetch(db_, key, keylen, data, datalen, NULL);
    r = op_begin(db, tid, 1, &mode);
    if (r)
        return r;
    return ts_fetch(db_, key, keylen, data, datalen, tid);
}

static int ts_fetchnext(struct db *db_, const char *key, size_t keylen,
                        const char **foundkey, size_t *fklen,
                        const char **data, size_t *datalen,
                        struct txn **tid)
{
    struct tsdb *db = (struct tsdb *)db_;
    struct rec f;
    size_t ge;
    int mode, found, r;

    r = op_begin(db, tid, 0, &mode);
    if (r)
        return r;
    r = find(db, key, keylen, NULL, &ge, &found);
    if (!r && found) {
        r = rec_read(db, ge, &f);
        if (!r)
            r = next0(db, &f, &ge);
    }
    if (!r && !ge)
        r = ERR_NOTFOUND;
    if (!r)
        r = rec_read(db, ge, &f);
    if (!r)
        r = check_data(db, &f);
    if (!r) {
        if (foundkey)
            *foundkey = KEY(db, &f);
        if (fklen)
            *fklen = f.keylen;
        if (data)
            *data = VAL(db, &f);
        if (datalen)
            *datalen = f.vallen;
    }
    return op_end(db, mode, r);
}

/* Position after `key` (at it when `inclusive`). */
static int seek_after(struct tsdb *db, const char *key, size_t keylen,
                      int inclusive, size_t *off_r)
{
    struct rec f;
    int found, r;

    r = find(db, key, keylen, NULL, off_r, &found);
    if (r || !found || inclusive)
        return r;
    r = rec_read(db, *off_r, &f);
    return r ? r : next0(db, &f, off_r);
}

/* Call cb for one record; handles the unlock around it for one-shot
 * walks and tells the caller whether to re-find its position. */
static int foreach_call(struct tsdb *db, int mode, const struct rec *f,
                        cyrusdb_cb_t *cb, void *rock, int *refind_r)
{
    uint64_t changes = db->changes, gen = db->hdr.generation;
    size_t end = db->end;
    int r, r2;

    if (mode == 1)
        unlock(db);
    r = cb(rock, KEY(db, f), f->keylen, VAL(db, f), f->vallen);
    if (mode == 1) {
        r2 = lock_shared(db);
        if (r2)
            return r ? r : r2;
    }
    *refind_r = changes != db->changes || gen != db->hdr.generation
                || end != db->end;
    return r;
}

static int ts_foreach(struct db *db_, const char *prefix, size_t prefixlen,
                      cyrusdb_filter_t *filter, cyrusdb_cb_t *cb,
                      void *rock, struct txn **tid)
{
    struct tsdb *db = (struct tsdb *)db_;
    struct buf cur = BUF_INITIALIZER;
    struct rec f;
    size_t off;
    int mode, refind, r;

    r = op_begin(db, tid, 0, &mode);
    if (r)
        return r;
    r = seek_after(db, prefix, prefixlen, 1, &off);
    while (!r && off) {
        r = rec_read(db, off, &f);
        if (r)
            break;
        if (f.keylen < prefixlen || memcmp(KEY(db, &f), prefix, prefixlen))
            break;
        r = check_data(db, &f);
        if (r)
            break;
        if (filter && !filter(rock, KEY(db, &f), f.keylen,
                              VAL(db, &f), f.vallen)) {
            r = next0(db, &f, &off);
            continue;
        }
        buf_setmap(&cur, KEY(db, &f), f.keylen);
        refind = 0;
        r = foreach_call(db, mode, &f, cb, rock, &refind);
        if (r)
            break;
        if (refind) {
            r = seek_after(db, cur.s, cur.len, 0, &off);
        }
        else {
            r = rec_read(db, off, &f);
            if (!r)
                r = next0(db, &f, &off);
        }
    }
    buf_free(&cur);
    return op_end(db, mode, r);
}

static int ts_write(struct db *db_, int op, const char *key, size_t keylen,
                    const char *data, size_t datalen, struct txn **tid,
                    int force)
{
    struct tsdb *db = (struct tsdb *)db_;
    int mode, r;

    r = op_begin(db, tid, 1, &mode);
    if (r)
        return r;
    r = write_op(db, op, key, keylen, data, datalen, force);
    return op_end(db, mode, r);
}

static int ts_create(struct db *db, const char *key, size_t keylen,
                     const char *data, size_t datalen, struct txn **tid)
{
    return ts_write(db, OP_CREATE, key, keylen, data, datalen, tid, 0);
}

static int ts_store(struct db *db, const char *key, size_t keylen,
                    const char *data, size_t datalen, struct txn **tid)
{
    return ts_write(db, OP_STORE, key, keylen, data, datalen, tid, 0);
}

static int ts_delete(struct db *db, const char *key, size_t keylen,
                     struct txn **tid, int force)
{
    return ts_write(db, OP_DELETE, key, keylen, NULL, 0, tid, force);
}

static int dump_records(struct tsdb *db, int detail)
{
    struct buf line = BUF_INITIALIZER;
    size_t off = DUMMY_OFFSET;
    struct rec r;
    int ret = 0;
    unsigned i;

    while (!ret && off < db->end) {
        ret = rec_read(db, off, &r);
        if (ret)
            break;
        buf_reset(&line);
        buf_printf(&line, "%08zx type=%u nptrs=%u", off, r.type, r.nptrs);
        for (i = 0; i < r.nptrs; i++)
            buf_printf(&line, " %llx", (unsigned long long)PTR(db, &r, i));
        if (r.type == REC_RECORD) {
            buf_appendcstr(&line, " ");
            cyrusdb_escape(&line, KEY(db, &r), r.keylen);
            if (detail > 1) {
                buf_appendcstr(&line, "\t");
                cyrusdb_escape(&line, VAL(db, &r), r.vallen);
            }
        }
        printf("%s\n", buf_cstring(&line));
        off += r.len;
    }
    buf_free(&line);
    return ret;
}

static int dump_one(void *rock, const char *key, size_t keylen,
                    const char *data, size_t datalen)
{
    struct buf *line = rock;

    buf_reset(line);
    cyrusdb_escape(line, key, keylen);
    buf_putc(line, '\t');
    cyrusdb_escape(line, data, datalen);
    buf_putc(line, '\n');
    return fwrite(line->s, 1, line->len, stdout) == line->len ? 0 : ERR_IO;
}

static int ts_dump(struct db *db_, int detail)
{
    struct tsdb *db = (struct tsdb *)db_;
    struct buf line = BUF_INITIALIZER;
    int mode, r;

    if (detail <= 0) {
        r = ts_foreach(db_, "", 0, NULL, dump_one, &line, NULL);
        buf_free(&line);
        return r;
    }
    r = op_begin(db, NULL, 0, &mode);
    if (r)
        return r;
    printf("twoskip %s generation=%llu records=%llu size=%llu "
           "repack=%llu flags=%u\n", db->fname,
           (unsigned long long)db->hdr.generation,
           (unsigned long long)db->hdr.num_records,
           (unsigned long long)db->hdr.current_size,
           (unsigned long long)db->hdr.repack_size, db->hdr.flags);
    r = dump_records(db, detail);
    return op_end(db, mode, r);
}

/* Every record tiles the file up to the committed end, the last is a
 * COMMIT, and every data CRC matches. */
static int check_tiling(struct tsdb *db)
{
    size_t off = DUMMY_OFFSET;
    struct rec r;
    int ret;

    r.type = REC_DUMMY;
    while (off < db->end) {
        ret = rec_read(db, off, &r);
        if (ret)
            return ret;
        if (check_data(db, &r))
            return ERR_CORRUPT;
        off += r.len;
    }
    if (off != db->end)
        return corrupt(db, off, "records do not end at the committed size");
    if (r.type != REC_COMMIT && db->end != DUMMY_OFFSET + HEADLEN(MAXPTRS))
        return corrupt(db, off, "last record is not a commit");
    return 0;
}

/* The level-0 chain is ordered and counted; each upper level links
 * exactly the records of higher level, in order. */
static int check_links(struct tsdb *db)
{
    size_t prev[MAXLEVEL], off, count = 0, prevoff = 0;
    struct rec r, p;
    unsigned l;
    int ret;

    for (l = 0; l < MAXLEVEL; l++)
        prev[l] = DUMMY_OFFSET;
    ret = rec_read(db, DUMMY_OFFSET, &r);
    if (!ret)
        ret = next0(db, &r, &off);
    while (!ret && off) {
        ret = rec_read(db, off, &r);
        if (ret)
            return ret;
        if (prevoff && keycmp(db, KEY(db, &p), p.keylen,
                              KEY(db, &r), r.keylen) >= 0)
            return corrupt(db, off, "keys out of order");
        for (l = 1; l + 1 < r.nptrs; l++) {
            struct rec q;

            ret = rec_read(db, prev[l], &q);
            if (ret)
                return ret;
            if (PTR(db, &q, l + 1) != off)
                return corrupt(db, prev[l], "upper level link broken");
            prev[l] = off;
        }
        if (++count > db->end / 24)
            return corrupt(db, off, "pointer cycle");
        p = r;
        prevoff = off;
        ret = next0(db, &r, &off);
    }
    for (l = 1; !ret && l < MAXLEVEL; l++) {
        ret = rec_read(db, prev[l], &r);
        if (!ret && PTR(db, &r, l + 1))
            ret = corrupt(db, prev[l], "upper level does not end");
    }
    if (!ret && count != db->hdr.num_records)
        ret = corrupt(db, 0, "record count mismatch");
    return ret;
}

static int ts_consistent(struct db *db_)
{
    struct tsdb *db = (struct tsdb *)db_;
    int mode, r;

    r = op_begin(db, NULL, 0, &mode);
    if (r)
        return r;
    if (db->txn)
        r = ERR_LOCKED;
    forget_verified(db);
    if (!r)
        r = check_tiling(db);
    if (!r && !db->is_lax)
        r = check_links(db);
    return op_end(db, mode, r);
}

static int ts_checkpoint(struct db *db_)
{
    struct tsdb *db = (struct tsdb *)db_;
    int r;

    if (db->txn)
        return ERR_LOCKED;
    r = lock_exclusive(db);
    if (r)
        return r;
    r = repack(db, 0);
    unlock(db);
    return r;
}

static int ts_compar(struct db *db_, const char *a, size_t alen,
                     const char *b, size_t blen)
{
    return keycmp((struct tsdb *)db_, a, alen, b, blen);
}

/* Copy the committed part of one file under its shared lock. */
static int archive_one(const char *fname, const char *dirname)
{
    struct buf dest = BUF_INITIALIZER;
    struct db *db_ = NULL;
    struct tsdb *db;
    const char *base = strrchr(fname, '/');
    int fd = -1, r;

    buf_printf(&dest, "%s/%s", dirname, base ? base + 1 : fname);
    r = ts_open(fname, CYRUSDB_RDONLY, &db_, NULL);
    if (r)
        goto done;
    db = (struct tsdb *)db_;
    r = db->txn ? ERR_LOCKED : lock_shared(db);
    if (r)
        goto done;
    fd = open(buf_cstring(&dest), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW
              | O_CLOEXEC, 0600);
    if (fd < 0) {
        xsyslog_syscall("open", "path", buf_cstring(&dest));
        r = ERR_IO;
    }
    if (!r)
        r = write_all(fd, BASE(db), db->end, buf_cstring(&dest));
    if (!r && fsync(fd) < 0) {
        xsyslog_syscall("fsync", "path", buf_cstring(&dest));
        r = ERR_IO;
    }
    unlock(db);

done:
    if (fd >= 0)
        close(fd);
    if (db_)
        ts_close(db_);
    buf_free(&dest);
    return r;
}

static int ts_archive(const strarray_t *fnames, const char *dirname)
{
    int i, r = 0;

    for (i = 0; !r && i < fnames->count; i++)
        r = archive_one(strarray_nth(fnames, i), dirname);
    return r;
}

static int ts_unlink(const char *fname, int flags)
{
    struct buf newname = BUF_INITIALIZER;
    int r = 0;

    buf_printf(&newname, "%s.NEW", fname);
    unlink(buf_cstring(&newname));
    if (unlink(fname) < 0 && errno != ENOENT) {
        xsyslog_syscall("unlink", "path", fname);
        r = ERR_IO;
    }
    buf_free(&newname);
    return r;
}

const struct cyrusdb_backend cyrusdb_twoskip = {
    .name = "twoskip",
    .detect = ts_detect,
    .open = ts_open,
    .close = ts_close,
    .fetch = ts_fetch,
    .fetchlock = ts_fetchlock,
    .fetchnext = ts_fetchnext,
    .foreach = ts_foreach,
    .create = ts_create,
    .store = ts_store,
    .delete = ts_delete,
    .commit = ts_commit,
    .abort = ts_abort,
    .dump = ts_dump,
    .consistent = ts_consistent,
    .checkpoint = ts_checkpoint,
    .archive = ts_archive,
    .unlink = ts_unlink,
    .compar = ts_compar,
};

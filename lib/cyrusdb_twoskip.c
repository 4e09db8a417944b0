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
 *   16   4  version (3; a version 2 file, which has no change counter,
 *           is read, and written as version 3 from its next change on)
 *   20   4  flags: 1 = mailbox-name order, 2 = DIRTY (a writer may have
 *           changed pointers of committed records and not finished),
 *           4 = REPLACED (a repack renamed a new file over this one)
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
 * written; pointers and the head CRC are rewritten in place.  The last
 * 4 bytes of the DUMMY's head (offset 316, outside its head CRC) are
 * the change counter, a count stored Gray-coded (see LOCK-FREE READS);
 * every other record has zero there.
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
 * cycle.  A head is verified once per file (inode and generation: a
 * commit changes no committed record but by rewriting whole heads with
 * a fresh CRC, and what an abort or a recovery cuts off was never below
 * the committed size, where readers verify), remembered in a bitmap
 * with one bit per 8-byte offset, so repeated lookups cost no CRC but
 * that of the record returned.  Lookups read ahead (prefetch) the
 * records they may visit next.
 *
 * A one-shot foreach copies up to 256 records (or 64 KiB) at a time,
 * without the lock (see LOCK-FREE READS) or under one shared lock, and
 * runs the callbacks on the copies with no lock held.  The next copy
 * goes on from where the last ended if the file is the same version
 * and this process wrote nothing meanwhile; otherwise (a callback
 * wrote, another process committed or repacked) it drops the rest of
 * the copy and searches again for the first key after the last one
 * handed out, so a callback's writes are seen as the documented
 * semantics ask.  Inside a transaction the walk reads the map directly.
 *
 * LOCK-FREE READS
 *
 * A one-shot fetch, fetchnext or foreach batch is first tried without
 * the lock.  The change counter is a seqlock: a writer makes it odd
 * (a pwrite that changes one byte, see "the change counter" below)
 * before it changes anything a reader may look at, in place or in the
 * header, and
 * even again once the file is consistent: after the header of a commit
 * or abort, at the end of a recovery, around the REPLACED flag of a
 * repack.  A reader loads it (acquire) before the lookup and again
 * after it (behind an acquire fence); it trusts what it read only when
 * both loads saw the same even value, and otherwise uses the locked
 * path.  In between it takes the committed size from the header and
 * checks every offset it follows against it and against the mapped
 * size, so a lookup racing a writer reads nothing outside the map and
 * ends; damage it sees is not logged but sends it to the locked path,
 * which decides.  Pointers are read with single aligned loads, so that
 * an offset checked is the offset used, and record heads verified
 * during such a lookup are remembered only once it is known to have
 * read a consistent file.  The lock is used instead when the counter is
 * odd (a writer is busy, or died: only a locker recovers), when the
 * header says DIRTY or REPLACED or another boot or version 2, when its
 * committed size is beyond the size this process has mapped (the
 * locked path maps again), inside a transaction, and for the first
 * access in each second (so the path is still looked at about once a
 * second, see REPACK).  The counter is 32 bits: a reader is misled only
 * if it stalls for exactly a multiple of 2^31 transactions.  A version
 * 2 file is read with the lock only: a writer of that version would not
 * keep the counter, and writing version 3 shuts such writers out.
 *
 * LOOKUP INDEX
 *
 * A lookup in a large file spends its time waiting for memory: some 35
 * records, most on pages of their own.  A process that does many
 * lock-free lookups on one version of the file (same inode and counter)
 * builds, in its own memory, a sorted copy of the keys and offsets of
 * the records on level 2 (one in 16); a lock-free lookup then finds by
 * binary search the last of them before its key and goes on from there
 * through levels 1 and 0 only.  The index is built inside a lock-free
 * read and kept only if that read turns out consistent, is used only by
 * lock-free reads that started at the same counter, and is built again
 * only after as many lookups without it as make the cost of building it
 * small beside theirs.  Writers and locked readers never use it.
 *
 * WRITING
 *
 * A writer holds an exclusive fcntl lock for its whole transaction
 * (locked readers take a shared lock per operation).  Before its first
 * change it makes the change counter odd, which also marks the file as
 * needing recovery should the writer die (DIRTY in the header does the
 * same for a version 2 file, and where no boot id is known; see below).
 * Each change
 * appends one record: an insert or replace appends the new RECORD, a
 * delete appends a DELETE pointing past the deleted record, and the
 * level-0 pointer of the preceding record is then pointed at the
 * appended record; upper levels are relinked in place.  Level-0
 * pointers therefore only ever grow.  A level-0 update overwrites a
 * slot that already holds a value written in this transaction if there
 * is one, and otherwise the smaller (older) slot: the slot holding the
 * committed successor is never overwritten.  Commit appends the COMMIT,
 * makes ONE fdatasync, then writes the header (new current size and
 * count, DIRTY clear, this boot's id) without syncing it, and makes the
 * counter even: other processes see both through the page cache.  The
 * header and the counter are written with pwrite, so a writer killed
 * in the middle cannot leave them half written.  Appends go into zeros
 * reserved ahead of the end (released at close), so that the sync need
 * not journal a new file size.  Abort replays an in-memory undo log of
 * the in-place changes, truncates the tail and clears DIRTY.
 *
 * CRASH SAFETY
 *
 * Process crash (the page cache survives, so everything written is
 * seen).  A writer killed before its COMMIT leaves the counter odd and
 * its
 * records past the current size; the committed level-0 chain is intact
 * because the committed slot of every record was left alone, upper
 * pointers may be changed.  One killed after the COMMIT but before the
 * header write had made every in-place change before appending the
 * COMMIT.  Whoever next takes the lock and finds the counter odd (or
 * DIRTY) scans the tail
 * (see below): a transaction whose COMMIT verifies is taken in, after a
 * sync since its own may not have finished.  Then it truncates what
 * follows, walks the committed level-0 chain (checking each record's
 * data CRC rather than its head CRC, since a head may have been
 * rewritten by the lost transaction), rewrites both level-0 slots of
 * every record to the committed successor (the slot that does not
 * decide first, so that a recovery killed half-way is itself
 * recoverable), rebuilds every upper level from that walk, recounts,
 * syncs, clears DIRTY and makes the counter even.  A reader that may
 * not write (CYRUSDB_RDONLY)
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
 * renames it over the file.  Just before the rename it sets REPLACED in
 * the old file's header (changing nothing else there; a rename that
 * fails puts the header back).  A shared lock looks at nothing but the
 * mapped header: the path is stat()ed again only when REPLACED is set,
 * and otherwise about once a second as a safety net against other ways
 * of replacing the file, and the file size is read again only when the
 * header's committed size is beyond it.  An exclusive lock always
 * checks the path, so nothing is ever written to a replaced file.  A
 * process holding the old file keeps reading it until its next lock,
 * then follows the rename.  REPLACED left by a repack that died before
 * its rename only costs readers the stat until the next commit, whose
 * header write clears it.  A commit repacks automatically
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

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/cyrusdb.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/mappedfile.h"
#include "lib/xmalloc.h"

#include "lib/cyrusdb_twoskip_int.h"

static struct tsdb *open_dbs;

struct twoskip_lf_stats twoskip_lf_stats;

/* A lock-free read could not decide: use the locked path. */
#define LF_RETRY (-1)

int twoskip_corrupt(const struct tsdb *db, size_t off, const char *why)
{
    if (db->is_quiet)
        return ERR_CORRUPT;
    xsyslog(LOG_ERR, "twoskip: database corrupt",
            "path=%s offset=%zu reason=%s", db->fname, off, why);
    return ERR_CORRUPT;
}

/* Skip levels: each level is a quarter as likely as the one below. */
unsigned twoskip_random_level(void)
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
const unsigned char *twoskip_this_boot(void)
{
    if (!boot_id_state)
        boot_id_load();
    return boot_id;
}

int twoskip_has_boot_id(void)
{
    twoskip_this_boot();
    return boot_id_state == 1;
}

/* ---- header ---- */

void twoskip_header_encode(const struct tsheader *h, char *p)
{
    memset(p, 0, HEADER_SIZE);
    memcpy(p, TS_MAGIC, TS_MAGIC_LEN);
    put32(p + 16, TS_VERSION);
    put32(p + 20, h->flags);
    put64(p + 24, h->generation);
    put64(p + 32, h->num_records);
    put64(p + 40, h->current_size);
    put64(p + 48, h->repack_size);
    memcpy(p + 56, twoskip_this_boot(), BOOTID_LEN);
    put32(p + HEADER_SIZE - 4, crc_of(p, HEADER_SIZE - 4));
}

int twoskip_header_write(struct tsdb *db)
{
    char buf[HEADER_SIZE];
    int r;

    twoskip_header_encode(&db->hdr, buf);
    r = mappedfile_pwrite(db->mf, buf, HEADER_SIZE, 0);
    if (!r) {
        db->hdr.version = TS_VERSION;
        /* The file now says this boot wrote it: so must our copy, or the
         * next lock takes a fresh file for one left by another boot. */
        memcpy(db->hdr.bootid, buf + 56, BOOTID_LEN);
    }
    return r;
}

int twoskip_sync_file(struct tsdb *db)
{
    if (db->flags & CYRUSDB_NOSYNC)
        return 0;
    return mappedfile_sync(db->mf);
}

void twoskip_forget_verified(struct tsdb *db)
{
    if (db->vbits)
        memset(db->vbits, 0, db->vwords * sizeof(*db->vbits));
}

/* Key the verified-heads bitmap to one version of the file (inode and
 * generation) and make it cover `size` bytes.  A commit does not make
 * the bits stale: records below the committed size never move, and
 * their heads are rewritten only whole, with a fresh CRC. */
static void verified_fit(struct tsdb *db, ino_t ino, uint64_t gen,
                         size_t size)
{
    size_t words = size / 512 + 1;

    if (words > db->vwords) {
        size_t n = words + words / 4 + 64;

        db->vbits = xreallocarray(db->vbits, n, sizeof(*db->vbits));
        memset(db->vbits + db->vwords, 0,
               (n - db->vwords) * sizeof(*db->vbits));
        db->vwords = n;
    }
    if (db->v_ino != ino || db->v_gen != gen) {
        twoskip_forget_verified(db);
        db->v_ino = ino;
        db->v_gen = gen;
    }
}

/* ---- the change counter ----
 *
 * The counter is kept Gray-coded: one more step flips exactly one bit,
 * so the 4-byte pwrite that stores it changes one byte, which a reader
 * of the map sees whole, however the kernel copies the bytes around
 * it.  Its parity (of the count, the parity of the stored bits) says
 * whether a writer is at work.  The stores are pwrites, not stores
 * through a writable map: a write fault on the first page at every
 * commit costs more than the system call. */

static uint32_t gray_decode(uint32_t g)
{
    g ^= g >> 1;
    g ^= g >> 2;
    g ^= g >> 4;
    g ^= g >> 8;
    g ^= g >> 16;
    return g;
}

static const uint32_t *seq_ptr(const struct tsdb *db)
{
    return (const uint32_t *)(const void *)(BASE(db) + SEQ_OFFSET);
}

uint32_t twoskip_seq(const struct tsdb *db)
{
    if (!BASE(db) || mappedfile_size(db->mf) < SEQ_LEN)
        return 0;
    return le32toh(__atomic_load_n(seq_ptr(db), __ATOMIC_ACQUIRE));
}

/* Is a writer at work (or dead at work)? */
static int seq_is_odd(uint32_t seq)
{
    return __builtin_parity(seq);
}

/* Store the next count. */
static int seq_step(struct tsdb *db, uint32_t seq)
{
    uint32_t c = gray_decode(seq) + 1;
    char v[4];

    put32(v, c ^ (c >> 1));
    return mappedfile_pwrite(db->mf, v, sizeof(v), SEQ_OFFSET);
}

int twoskip_seq_begin(struct tsdb *db)
{
    uint32_t seq = twoskip_seq(db);
    int r;

    if (mappedfile_size(db->mf) < SEQ_LEN)
        return twoskip_corrupt(db, 0, "file too short for its counter");
    if (seq_is_odd(seq))
        return 0;
    r = seq_step(db, seq);
    /* Nothing the writer does next may become visible before it. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return r;
}

void twoskip_seq_end(struct tsdb *db)
{
    uint32_t seq = twoskip_seq(db);

    if (!seq_is_odd(seq))
        return;
    /* Everything the writer did must be visible first. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (seq_step(db, seq))
        xsyslog(LOG_WARNING, "twoskip: change counter left odd",
                "path=%s", db->fname);
}

/* Parse the header from the map into db->hdr. */
static int header_read(struct tsdb *db)
{
    const char *p = BASE(db);
    size_t size = mappedfile_size(db->mf);

    if (size < HEADER_SIZE)
        return twoskip_corrupt(db, 0, "file shorter than its header");
    if (memcmp(p, TS_MAGIC, TS_MAGIC_LEN)) {
        xsyslog(LOG_ERR, "twoskip: not a twoskip file", "path=%s",
                db->fname);
        return ERR_DB_BADFORMAT;
    }
    if (get32(p + HEADER_SIZE - 4) != crc_of(p, HEADER_SIZE - 4))
        return twoskip_corrupt(db, 0, "header checksum mismatch");
    db->hdr.version = get32(p + 16);
    if (db->hdr.version != TS_VERSION && db->hdr.version != TS_VERSION_OLD) {
        xsyslog(LOG_ERR, "twoskip: unsupported version",
                "path=%s version=%u", db->fname, db->hdr.version);
        return ERR_DB_BADFORMAT;
    }
    /* REPLACED is only ever meant for the file it was written to: the
     * file we lock from now on is the current one, and the next header
     * written clears a flag left by a repack that died before its
     * rename. */
    db->hdr.flags = get32(p + 20) & ~(uint32_t)TS_F_REPLACED;
    db->hdr.generation = get64(p + 24);
    db->hdr.num_records = get64(p + 32);
    db->hdr.current_size = get64(p + 40);
    db->hdr.repack_size = get64(p + 48);
    memcpy(db->hdr.bootid, p + 56, BOOTID_LEN);
    if (db->hdr.current_size < HEADER_SIZE + HEADLEN(MAXPTRS)
        || db->hdr.current_size % 8)
        return twoskip_corrupt(db, 0, "bad current size in header");
    if (db->hdr.current_size > size)
        return twoskip_corrupt(db, 0,
                               "file truncated below its committed size");
    db->is_mbox = !!(db->hdr.flags & TS_F_MBOXSORT);
    db->end = db->hdr.current_size;
    verified_fit(db, mappedfile_ino(db->mf), db->hdr.generation,
                 db->hdr.current_size);
    return 0;
}

/* The counter is odd (or, for version 2 and without a boot id, DIRTY
 * set) from before anything is appended or changed until a finished
 * commit, abort or recovery.  Under a lock, that means a writer died. */
static int needs_recovery(struct tsdb *db)
{
    return (db->hdr.flags & TS_F_DIRTY) || seq_is_odd(twoskip_seq(db));
}

/* ---- records ---- */

static int is_verified(const struct tsdb *db, size_t off)
{
    size_t bit = off / 8;

    return bit / 64 < db->vwords
           && (db->vbits[bit / 64] & ((uint64_t)1 << (bit % 64)));
}

static void set_verified(struct tsdb *db, size_t off)
{
    size_t bit = off / 8;

    if (db->is_lockfree) {
        /* Kept only if the lookup turns out to have read a consistent
         * file (lf_end). */
        if (db->lf_npending < LF_PENDING)
            db->lf_pending[db->lf_npending++] = off;
        return;
    }
    if (bit / 64 < db->vwords)
        db->vbits[bit / 64] |= (uint64_t)1 << (bit % 64);
}

/* Parse and check the record at `off` (inline for lookups). */
static inline int rec_read(struct tsdb *db, size_t off, struct rec *r)
{
    const char *p;
    size_t head;
    uint64_t w0, w1;

    if (off % 8 || off < DUMMY_OFFSET || off > db->end
        || db->end - off < HEADLEN(0))
        return twoskip_corrupt(db, off, "record offset out of range");
    p = BASE(db) + off;
    /* Two loads, so that a lock-free reader checks what it uses. */
    w0 = load64(p);
    w1 = load64(p + 8);
    r->off = off;
    r->type = (uint8_t)w0;
    r->nptrs = (uint8_t)(w0 >> 8);
    r->keylen = (uint32_t)(w0 >> 32);
    r->vallen = (uint32_t)w1;
    r->datacrc = (uint32_t)(w1 >> 32);
    if (r->nptrs > MAXPTRS)
        return twoskip_corrupt(db, off, "too many pointers");
    head = HEADLEN(r->nptrs);
    if (db->end - off < head
        || (db->end - off - head) < (size_t)r->keylen + r->vallen)
        return twoskip_corrupt(db, off, "record runs past the end");
    r->len = head + PAD8((size_t)r->keylen + r->vallen);

    switch (r->type) {
    case REC_DUMMY:
        if (off != DUMMY_OFFSET || r->nptrs != MAXPTRS || r->keylen)
            return twoskip_corrupt(db, off, "bad dummy record");
        break;
    case REC_RECORD:
        if (r->nptrs < 2 || off == DUMMY_OFFSET)
            return twoskip_corrupt(db, off, "bad record level");
        break;
    case REC_DELETE:
        if (r->nptrs != 1 || !r->keylen || r->vallen)
            return twoskip_corrupt(db, off, "bad delete record");
        break;
    case REC_COMMIT:
        if (r->nptrs != 1 || r->keylen || r->vallen != COMMIT_VALLEN)
            return twoskip_corrupt(db, off, "bad commit record");
        break;
    default:
        return twoskip_corrupt(db, off, "unknown record type");
    }

    if (db->is_lax) {
        if (crc_of(p + head, (size_t)r->keylen + r->vallen) != r->datacrc)
            return twoskip_corrupt(db, off, "data checksum mismatch");
    }
    else if (!is_verified(db, off)) {
        /* Lookups pass the same nodes again and again: check each head
         * once per version of the file, not once per visit. */
        if (get32(p + head - 8) != head_crc(p, head - 8, p + head,
                                            r->keylen))
            return twoskip_corrupt(db, off, "head checksum mismatch");
        set_verified(db, off);
    }
    return 0;
}

int twoskip_rec_read(struct tsdb *db, size_t off, struct rec *r)
{
    return rec_read(db, off, r);
}

/* Check the data CRC of a record about to be handed to a caller. */
int twoskip_check_data(struct tsdb *db, const struct rec *r)
{
    if (crc_of(KEY(db, r), (size_t)r->keylen + r->vallen) != r->datacrc)
        return twoskip_corrupt(db, r->off, "data checksum mismatch");
    return 0;
}

/* Effective level-0 successor of `r` (DELETE records stepped over). */
int twoskip_next0(struct tsdb *db, const struct rec *r, size_t *next_r)
{
    struct rec d;
    uint64_t a, b, n;
    int hops, ret;

    if (db->scan) {
        size_t i = r->type == REC_DUMMY ? 0
                   : twoskip_scan_search(db, KEY(db, r), r->keylen, 1);

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
            return twoskip_corrupt(db, r->off, "chain of delete records");
        /* Peek at the type only: the caller reads (and checks) a
         * RECORD itself, so it is not checked twice. */
        if (n % 8 || n < DUMMY_OFFSET || n >= db->end)
            return twoskip_corrupt(db, r->off, "level 0 pointer out of range");
        if (BASE(db)[n] == REC_RECORD)
            break;
        ret = twoskip_rec_read(db, (size_t)n, &d);
        if (ret)
            return ret;
        if (d.type != REC_DELETE)
            return twoskip_corrupt(db, (size_t)n,
                                   "level 0 points to non-record");
        n = PTR(db, &d, 0);
    }
    *next_r = (size_t)n;
    return 0;
}

static int next_at(struct tsdb *db, const struct rec *r, unsigned level,
                   size_t *next_r)
{
    if (level == 0) {
        uint64_t a, b;

        /* The common case inline: the larger slot is a RECORD. */
        if (db->scan || r->type == REC_DELETE)
            return twoskip_next0(db, r, next_r);
        a = PTR(db, r, 0);
        b = PTR(db, r, 1);
        if (a >= db->end)
            a = 0;
        if (b >= db->end)
            b = 0;
        if (b > a)
            a = b;
        if (!a) {
            *next_r = 0;
            return 0;
        }
        if (a % 8 == 0 && a >= DUMMY_OFFSET && BASE(db)[a] == REC_RECORD) {
            *next_r = (size_t)a;
            return 0;
        }
        return twoskip_next0(db, r, next_r);
    }
    if ((unsigned)r->nptrs <= level + 1)
        return twoskip_corrupt(db, r->off, "level above the record's own");
    *next_r = (size_t)PTR(db, r, level + 1);
    return 0;
}

/* ---- the lookup index (see LOOKUP INDEX) ---- */

#define IDX_PREFIX 16

/* One record on level 2: a binary search mostly decides on the key's
 * first bytes, kept here, so that each step touches one cache line. */
struct idxent {
    uint64_t off;
    uint32_t kpos;          /* the whole key in tsidx.keys */
    uint32_t klen;
    char prefix[IDX_PREFIX];
};

struct tsidx {
    ino_t ino;
    uint64_t gen;
    uint32_t seq;
    size_t n, alloc;
    struct idxent *ent;     /* in key order */
    struct buf keys;
};

static void idx_free(struct tsidx **idxp)
{
    struct tsidx *idx = *idxp;

    if (!idx)
        return;
    free(idx->ent);
    buf_free(&idx->keys);
    free(idx);
    *idxp = NULL;
}

/* Is db->idx the index of the version a lock-free read is looking at? */
static int idx_is_current(const struct tsdb *db)
{
    return db->idx && db->is_lockfree && db->idx->seq == db->lf_seq
           && db->idx->ino == mappedfile_ino(db->mf)
           && db->idx->gen == db->hdr.generation;
}

/* Inside a lock-free read: walk level 2 into a new index (*idx_r), or
 * fail (damage, or the file changing under us: the read is then
 * retried anyway).  The caller installs it once the read is known to
 * have been consistent. */
static int idx_build(struct tsdb *db, struct tsidx **idx_r)
{
    struct tsidx *idx = xzmalloc(sizeof(*idx));
    size_t off, steps = 0, maxsteps = db->end / 24 + 2;
    struct idxent *e;
    struct rec node;
    int r;

    r = rec_read(db, DUMMY_OFFSET, &node);
    off = r ? 0 : (size_t)PTR(db, &node, 3);
    while (!r && off) {
        r = rec_read(db, off, &node);
        if (!r && (node.type != REC_RECORD || node.nptrs < 4))
            r = twoskip_corrupt(db, off, "bad link");
        if (!r && ++steps > maxsteps)
            r = twoskip_corrupt(db, off, "pointer cycle");
        if (r)
            break;
        if (idx->keys.len > UINT32_MAX - node.keylen) {
            r = ERR_TOOBIG;
            break;
        }
        if (idx->n == idx->alloc) {
            idx->alloc = idx->alloc ? idx->alloc * 2 : 1024;
            idx->ent = xreallocarray(idx->ent, idx->alloc,
                                     sizeof(*idx->ent));
        }
        e = &idx->ent[idx->n++];
        memset(e, 0, sizeof(*e));
        e->off = off;
        e->kpos = (uint32_t)idx->keys.len;
        e->klen = node.keylen;
        memcpy(e->prefix, KEY(db, &node),
               node.keylen < IDX_PREFIX ? node.keylen : IDX_PREFIX);
        buf_appendmap(&idx->keys, KEY(db, &node), node.keylen);
        off = (size_t)PTR(db, &node, 3);
    }
    /* Out of order means it was read while changing (or is damaged). */
    for (steps = 1; !r && steps < idx->n; steps++) {
        const struct idxent *a = &idx->ent[steps - 1], *b = a + 1;

        if (keycmp(db, idx->keys.s + a->kpos, a->klen,
                   idx->keys.s + b->kpos, b->klen) >= 0)
            r = twoskip_corrupt(db, b->off, "keys out of order");
    }
    if (r) {
        idx_free(&idx);
        return r;
    }
    idx->ino = mappedfile_ino(db->mf);
    idx->gen = db->hdr.generation;
    idx->seq = db->lf_seq;
    *idx_r = idx;
    return 0;
}

/* Inside a lock-free read: when the index is stale and enough lookups
 * went without it, build it and put it in place for this read; the old
 * one goes to *old_r.  Returns whether it did (see idx_settle). */
static int idx_refresh(struct tsdb *db, struct tsidx **old_r)
{
    struct tsidx *fresh = NULL;

    if (idx_is_current(db) || ++db->idx_misses < 64 + db->end / 8192)
        return 0;
    db->idx_misses = 0;
    if (idx_build(db, &fresh))
        return 0;
    *old_r = db->idx;
    db->idx = fresh;
    return 1;
}

/* After the lock-free read that built an index ended with `r`: keep
 * the new index if the read was consistent, else put the old back. */
static void idx_settle(struct tsdb *db, int is_new, struct tsidx *old,
                       int r)
{
    if (!is_new)
        return;
    if (r == LF_RETRY) {
        idx_free(&db->idx);
        db->idx = old;
    }
    else {
        idx_free(&old);
        twoskip_lf_stats.index_builds++;
    }
}

/* The offset of the last indexed record with a key before `key`; 0
 * when there is none. */
static size_t idx_search(const struct tsdb *db, const char *key,
                         size_t keylen)
{
    const struct tsidx *idx = db->idx;
    size_t lo = 0, hi = idx->n;
    size_t kcut = keylen < IDX_PREFIX ? keylen : IDX_PREFIX;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct idxent *e = &idx->ent[mid];
        int c;

        /* Both orders compare byte by byte, shorter first: the cut
         * keys decide unless they are equal. */
        c = keycmp(db, e->prefix, e->klen < IDX_PREFIX ? e->klen
                                                        : IDX_PREFIX,
                   key, kcut);
        if (!c)
            c = keycmp(db, idx->keys.s + e->kpos, e->klen, key, keylen);
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo ? (size_t)idx->ent[lo - 1].off : 0;
}

/* ---- lookups ---- */

/* Start loading the records that `node` links to at `level` and the
 * level below: a lookup reads one of them next, and when it drops a
 * level the other is on its way already (a lookup in a large file is
 * mostly waiting for memory). */
static void prefetch_links(const struct tsdb *db, const struct rec *node,
                           int level)
{
    uint64_t n, b;
    int l;

    for (l = level; l >= 0 && l + 2 >= level; l--) {
        if (l == 0) {
            n = PTR(db, node, 0);
            b = PTR(db, node, 1);
            if (n >= db->end)
                n = 0;
            if (b < db->end && b > n)
                n = b;
        }
        else if ((unsigned)node->nptrs > (unsigned)l + 1) {
            n = PTR(db, node, (unsigned)l + 1);
        }
        else {
            continue;
        }
        if (n >= DUMMY_OFFSET && n < db->end && db->end - n >= 128) {
            size_t word = n / 8 / 64;

            __builtin_prefetch(BASE(db) + n);
            __builtin_prefetch(BASE(db) + n + 64);
            if (word < db->vwords)
                __builtin_prefetch(db->vbits + word);
        }
    }
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
    int level, c = 1, is_indexed = 0, r;

    if (db->scan) {
        size_t i = twoskip_scan_search(db, key, keylen, 0);

        if (loc)
            for (level = 0; level < MAXLEVEL; level++)
                loc[level] = DUMMY_OFFSET;
        *ge_r = i < db->nscan ? db->scan[i] : 0;
        *found_r = *ge_r && !keycmp(db, KEY_AT(db, *ge_r),
                                    get32(BASE(db) + *ge_r + 4),
                                    key, keylen);
        return 0;
    }
    level = db->is_lax ? 0 : MAXLEVEL - 1;
    if (!loc && idx_is_current(db)) {
        size_t start = idx_search(db, key, keylen);

        if (start) {
            /* A level-2 record before the key: go on from it on
             * level 1. */
            r = rec_read(db, start, &node);
            if (!r && (node.type != REC_RECORD || node.nptrs < 4))
                r = twoskip_corrupt(db, start, "bad link");
            if (r)
                return r;
            level = 1;
            is_indexed = 1;
        }
    }
    if (!is_indexed) {
        r = rec_read(db, DUMMY_OFFSET, &node);
        if (r)
            return r;
        /* The levels above the highest record lead nowhere. */
        while (level > 0 && !PTR(db, &node, (unsigned)level + 1)) {
            if (loc)
                loc[level] = DUMMY_OFFSET;
            level--;
        }
    }
    for (; level >= 0; level--) {
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
                    return twoskip_corrupt(db, nextoff, "bad link");
                c = keycmp(db, KEY(db, &next), next.keylen, key, keylen);
                cached = nextoff;
            }
            if (c >= 0)
                break;
            node = next;
            prefetch_links(db, &node, level);
            if (++steps > maxsteps)
                return twoskip_corrupt(db, nextoff, "pointer cycle");
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
    /* Another process may have reserved already: writing its zeros
     * again would only give the next sync more to do. */
    r = mappedfile_refresh(db->mf);
    size = mappedfile_size(db->mf);
    if (r || db->end + need <= size)
        return r;
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

/* Write what the current change appended (see append_write). */
static int flush_pending(struct tsdb *db)
{
    struct txn *t = db->txn;
    int r;

    if (!t || !t->pend.len)
        return 0;
    r = mappedfile_pwrite(db->mf, t->pend.s, t->pend.len, t->pend_off);
    buf_reset(&t->pend);
    return r;
}

/* Write the record in db->wbuf (`total` bytes) at db->end.  Inside a
 * transaction, the records of one change wait in memory until the
 * change is done (ts_write), or, for a one-shot write, go out with the
 * COMMIT in one write: nothing reads them before (a change reads only
 * records before it), and a crash before they are written is the same
 * as one before they were complete (all of it lies past the committed
 * size). */
static int append_write(struct tsdb *db, uint8_t type, size_t total)
{
    struct txn *t = db->txn;

    if (!t)
        return mappedfile_pwrite(db->mf, db->wbuf.s, total, db->end);
    if (!t->pend.len)
        t->pend_off = db->end;
    buf_appendmap(&t->pend, db->wbuf.s, total);
    return type == REC_COMMIT ? flush_pending(db) : 0;
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
        r = append_write(db, type, total);
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
int twoskip_set_ptr_raw(struct tsdb *db, size_t off, unsigned slot,
                        uint64_t val, uint64_t *old_r)
{
    char head[HEADLEN(MAXPTRS)];
    size_t len;
    unsigned nptrs = (uint8_t)BASE(db)[off + 1];
    uint32_t keylen = get32(BASE(db) + off + 4);

    if (slot >= nptrs || nptrs > MAXPTRS)
        return twoskip_corrupt(db, off, "pointer slot out of range");
    len = HEADLEN(nptrs);
    memcpy(head, BASE(db) + off, len);
    if (old_r)
        *old_r = get64(head + 16 + 8 * slot);
    put64(head + 16 + 8 * slot, val);
    put32(head + len - 8, head_crc(head, len - 8, BASE(db) + off + len,
                                   keylen));
    /* Not the last 4 bytes: the DUMMY keeps the change counter there,
     * which only its own one-byte-changing pwrite may touch. */
    return mappedfile_pwrite(db->mf, head, len - 4, off);
}

static int set_ptr(struct tsdb *db, size_t off, unsigned slot, uint64_t val)
{
    struct txn *t = db->txn;
    uint64_t old;
    int r;

    r = twoskip_set_ptr_raw(db, off, slot, val, &old);
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

    ret = twoskip_rec_read(db, off, &r);
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

/* Before the first change of a transaction: make the counter odd.
 * That alone marks the file for recovery; DIRTY is written too (one
 * more header write) where the counter cannot do it: for a version 2
 * file, which readers of that version check only for DIRTY (the write
 * makes it version 3 and shuts them out), and without a boot id, where
 * it is synced (see CRASH SAFETY). */
static int mark_dirty(struct tsdb *db)
{
    int r;

    if (db->txn->is_dirty)
        return 0;
    r = twoskip_seq_begin(db);
    if (!r && (db->hdr.version != TS_VERSION || !twoskip_has_boot_id())) {
        db->hdr.flags |= TS_F_DIRTY;
        r = twoskip_header_write(db);
        if (!r && !twoskip_has_boot_id())
            r = twoskip_sync_file(db);
    }
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

    r = twoskip_next0(db, f, &next);
    if (!r) {
        ptr = next;
        r = append_rec(db, REC_DELETE, 1, &ptr, KEY(db, f), f->keylen,
                       NULL, 0, &doff);
    }
    if (!r)
        r = set_next0(db, loc[0], doff);
    for (l = 1; !r && l + 1 < f->nptrs; l++) {
        struct rec f2;

        r = twoskip_rec_read(db, f->off, &f2); /* the map may have moved */
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

    level = f ? (unsigned)f->nptrs - 1 : twoskip_random_level();
    memset(ptrs, 0, sizeof(ptrs));
    if (f) {
        r = twoskip_next0(db, f, &next);
        for (l = 1; l < level; l++)
            ptrs[l + 1] = PTR(db, f, l + 1);
    }
    else {
        r = twoskip_rec_read(db, loc[0], &pred);
        if (!r)
            r = twoskip_next0(db, &pred, &next);
        for (l = 1; !r && l < level; l++) {
            r = twoskip_rec_read(db, loc[l], &pred);
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
        r = twoskip_rec_read(db, ge, &f);
    if (r)
        return r;
    db->changes++;
    if (op == OP_DELETE)
        return do_delete(db, loc, &f);
    return do_insert(db, loc, found ? &f : NULL, key, keylen, val, vallen);
}

/* ---- locking ---- */

/* A monotonic clock in seconds, cheap enough for every read. */
static long now_second(void)
{
    struct timespec ts;

#ifdef CLOCK_MONOTONIC_COARSE
    if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) == 0)
        return (long)ts.tv_sec;
#endif
    if (clock_gettime(CLOCK_MONOTONIC, &ts) == 0)
        return (long)ts.tv_sec;
    return (long)time(NULL);
}

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
    r = twoskip_header_write(db);
    if (!r)
        r = twoskip_sync_file(db);
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
        if (r || !(twoskip_boot_changed(db)
                   || (needs_recovery(db) && !twoskip_has_boot_id())))
            break;
        /* Rebuilt into a new file: lock again to follow it. */
        r = twoskip_power_recover(db);
        mappedfile_unlock(db->mf);
        if (r)
            return r;
    }
    if (!r && needs_recovery(db))
        r = twoskip_recover_same_boot(db);
    if (r)
        mappedfile_unlock(db->mf);
    else
        db->lf_second = now_second();
    return r;
}

/* Shared lock on the current file.  The path is looked at only when
 * the header says the file was replaced (see REPACK), and the size only
 * when the header's committed size is beyond the size known. */
static int lock_shared_file(struct tsdb *db)
{
    const char *p;
    int r;

    r = mappedfile_lock_quick(db->mf, MAPPEDFILE_SHARED, NULL);
    if (r || mappedfile_size(db->mf) < HEADER_SIZE)
        return r;
    p = BASE(db);
    if (get32(p + HEADER_SIZE - 4) != crc_of(p, HEADER_SIZE - 4))
        return 0; /* header_read() reports it */
    if (get32(p + 20) & TS_F_REPLACED) {
        mappedfile_unlock(db->mf);
        return mappedfile_lock(db->mf, MAPPEDFILE_SHARED, NULL);
    }
    if (get64(p + 40) > mappedfile_size(db->mf))
        return mappedfile_refresh(db->mf);
    return 0;
}

static int lock_shared(struct tsdb *db)
{
    int r;

    r = lock_shared_file(db);
    if (r)
        return r;
    db->is_lax = 0;
    if (mappedfile_size(db->mf) == 0 && (db->flags & CYRUSDB_RDONLY))
        r = ERR_NOTFOUND;
    else if (mappedfile_size(db->mf) > 0)
        r = header_read(db);
    if (r || (mappedfile_size(db->mf) > 0 && !needs_recovery(db)
              && !twoskip_boot_changed(db)))
        goto done;

    if (db->flags & CYRUSDB_RDONLY) {
        db->is_lax = 1;
        /* The scan reads to the end of the file: know where it is. */
        if (twoskip_boot_changed(db) || !twoskip_has_boot_id())
            r = mappedfile_refresh(db->mf);
        if (!r && (twoskip_boot_changed(db) || !twoskip_has_boot_id()))
            r = twoskip_scan_mode_begin(db);
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
    else
        db->lf_second = now_second();
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
    buf_free(&db->txn->pend);
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
            r = twoskip_sync_file(db);
        if (!r) {
            db->hdr.current_size = db->end;
            db->hdr.flags &= ~(uint32_t)TS_F_DIRTY;
            r = twoskip_header_write(db);
        }
        if (!r) {
            twoskip_seq_end(db);
        }
        else {
            xsyslog(LOG_ERR, "twoskip: commit failed", "path=%s error=%s",
                    db->fname, error_message(r));
            /* The counter stays odd: the next locker recovers.  Heads
             * verified past the committed size may be cut off. */
            twoskip_forget_verified(db);
        }
    }
    txn_free(db);
    if (!r && !(db->flags & CYRUSDB_NOCOMPACT) && db->end > MIN_REPACK
        && db->end > 2 * db->hdr.repack_size) {
        if (twoskip_repack(db, 0))
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
            r = twoskip_set_ptr_raw(db, tid->undo[i].off, tid->undo[i].slot,
                                    tid->undo[i].oldval, NULL);
        twoskip_forget_verified(db);
        if (!r)
            r = mappedfile_truncate(db->mf, tid->start);
        if (!r)
            r = twoskip_sync_file(db);
        if (!r) {
            db->hdr = tid->saved;
            db->hdr.flags &= ~(uint32_t)TS_F_DIRTY;
            db->end = tid->start;
            r = twoskip_header_write(db);
        }
        if (!r)
            twoskip_seq_end(db);
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
        return (*tid == db->txn) ? flush_pending(db) : ERR_DB_TXN;
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
    if (db->txn) /* read our own transaction */
        return is_write ? ERR_LOCKED : flush_pending(db);
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
    idx_free(&db->idx);
    buf_free(&db->wbuf);
    free(db->vbits);
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
    db->basep = mappedfile_base_ref(db->mf);
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

/* ---- lock-free reads (see LOCK-FREE READS) ---- */

static int lf_try(struct tsdb *db, uint32_t *seq_r);

/* Start a lock-free read: snapshot the header between the counter
 * loads and set db->end to its committed size.  *seq_r gets the
 * counter.  Returns 0, or LF_RETRY (counted) when the locked path must
 * serve. */
static int lf_begin(struct tsdb *db, uint32_t *seq_r)
{
    if (db->txn)
        return LF_RETRY;
    if (lf_try(db, seq_r)) {
        twoskip_lf_stats.fallbacks++;
        return LF_RETRY;
    }
    return 0;
}

static int lf_try(struct tsdb *db, uint32_t *seq_r)
{
    const char *p = BASE(db);
    size_t size = mappedfile_size(db->mf);
    uint64_t cur, gen;
    uint32_t seq, flags;

    if (db->txn || !p || size < SEQ_LEN || now_second() != db->lf_second)
        return LF_RETRY;
    seq = le32toh(__atomic_load_n(seq_ptr(db), __ATOMIC_ACQUIRE));
    if (seq_is_odd(seq))
        return LF_RETRY;
    flags = load32(p + 20);
    if (load32(p + 16) != TS_VERSION
        || (flags & (TS_F_DIRTY | TS_F_REPLACED))
        || !!(flags & TS_F_MBOXSORT) != db->is_mbox)
        return LF_RETRY;
    gen = load64(p + 24);
    cur = load64(p + 40);
    if (cur % 8 || cur < SEQ_LEN || cur > size)
        return LF_RETRY;
    if (twoskip_has_boot_id()
        && memcmp(p + 56, twoskip_this_boot(), BOOTID_LEN))
        return LF_RETRY;

    verified_fit(db, mappedfile_ino(db->mf), gen, (size_t)cur);
    /* The header as last seen (batch_is_stale compares with it). */
    db->hdr.generation = gen;
    db->hdr.current_size = cur;
    db->end = (size_t)cur;
    db->is_lockfree = 1;
    db->is_quiet = 1;
    db->lf_npending = 0;
    db->lf_seq = seq;
    *seq_r = seq;
    return 0;
}

/* End a lock-free read that came to `r`: r if the counter did not move
 * meanwhile (and r is an answer, not damage), otherwise LF_RETRY. */
static int lf_end(struct tsdb *db, uint32_t seq, int r)
{
    uint32_t now;
    size_t i;

    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    now = le32toh(__atomic_load_n(seq_ptr(db), __ATOMIC_RELAXED));
    db->is_lockfree = 0;
    db->is_quiet = 0;
    if (now != seq || (r && r != ERR_NOTFOUND)) {
        twoskip_lf_stats.fallbacks++;
        return LF_RETRY;
    }
    for (i = 0; i < db->lf_npending; i++)
        set_verified(db, db->lf_pending[i]);
    twoskip_lf_stats.hits++;
    return r;
}

/* ---- reading ---- */

/* The record with `key` (`is_next`: the first one after it; keylen 0
 * then means from the start), data CRC checked; ERR_NOTFOUND. */
static int lookup(struct tsdb *db, const char *key, size_t keylen,
                  int is_next, struct rec *f)
{
    size_t ge;
    int found, r;

    r = find(db, key, keylen, NULL, &ge, &found);
    if (!r && is_next && found) {
        r = twoskip_rec_read(db, ge, f);
        if (!r)
            r = twoskip_next0(db, f, &ge);
    }
    if (!r && (!ge || (!is_next && !found)))
        r = ERR_NOTFOUND;
    if (!r)
        r = twoskip_rec_read(db, ge, f);
    if (!r)
        r = twoskip_check_data(db, f);
    return r;
}

/* fetch and fetchnext: lock-free when possible, else under the lock
 * or inside the transaction. */
static int fetch_common(struct tsdb *db, const char *key, size_t keylen,
                        int is_next, const char **foundkey, size_t *fklen,
                        const char **data, size_t *datalen,
                        struct txn **tid)
{
    struct tsidx *old = NULL;
    struct rec f;
    uint32_t seq;
    int mode = 0, is_new, r = LF_RETRY;

    if (!tid && !db->txn && !lf_begin(db, &seq)) {
        is_new = idx_refresh(db, &old);
        r = lf_end(db, seq, lookup(db, key, keylen, is_next, &f));
        idx_settle(db, is_new, old, r);
    }
    if (r == LF_RETRY) {
        r = op_begin(db, tid, 0, &mode);
        if (r)
            return r;
        r = lookup(db, key, keylen, is_next, &f);
    }
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

static int ts_fetch(struct db *db_, const char *key, size_t keylen,
                    const char **data, size_t *datalen, struct txn **tid)
{
    return fetch_common((struct tsdb *)db_, key, keylen, 0, NULL, NULL,
                        data, datalen, tid);
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
    return fetch_common((struct tsdb *)db_, key, keylen, 1, foundkey, fklen,
                        data, datalen, tid);
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
    r = twoskip_rec_read(db, *off_r, &f);
    return r ? r : twoskip_next0(db, &f, off_r);
}

/* Inside a transaction (the lock is held throughout): walk the map
 * directly, re-finding the position after a callback that wrote. */
static int foreach_locked(struct tsdb *db, const char *prefix,
                          size_t prefixlen, cyrusdb_filter_t *filter,
                          cyrusdb_cb_t *cb, void *rock)
{
    struct buf cur = BUF_INITIALIZER;
    struct rec f;
    uint64_t changes;
    size_t off;
    int r;

    r = seek_after(db, prefix, prefixlen, 1, &off);
    while (!r && off) {
        r = twoskip_rec_read(db, off, &f);
        if (r || f.keylen < prefixlen
            || memcmp(KEY(db, &f), prefix, prefixlen))
            break;
        r = twoskip_check_data(db, &f);
        if (r)
            break;
        if (filter && !filter(rock, KEY(db, &f), f.keylen,
                              VAL(db, &f), f.vallen)) {
            r = twoskip_next0(db, &f, &off);
            continue;
        }
        buf_setmap(&cur, KEY(db, &f), f.keylen);
        changes = db->changes;
        r = cb(rock, KEY(db, &f), f.keylen, VAL(db, &f), f.vallen);
        if (r)
            break;
        if (changes != db->changes) {
            r = seek_after(db, cur.s, cur.len, 0, &off);
        }
        else {
            r = twoskip_rec_read(db, off, &f);
            if (!r)
                r = twoskip_next0(db, &f, &off);
        }
    }
    buf_free(&cur);
    return r;
}

#define BATCH_RECORDS 256
#define BATCH_BYTES (64 * 1024)

/* Records copied out of the file in one go (lock-free or under one
 * lock hold), for callbacks run without the lock. */
struct batch {
    struct buf data;        /* keys and values back to back */
    struct {
        size_t pos;
        uint32_t keylen, vallen;
    } ent[BATCH_RECORDS];
    size_t n;
    size_t next;            /* offset of the record after the batch */
    int is_last;            /* nothing (with the prefix) follows */
    ino_t ino;              /* the file as the batch was read */
    uint64_t gen, changes;
    uint32_t seq;
    size_t end;
    struct buf last;        /* the last key handed out */
    int is_first;           /* no batch read yet */
    int is_whole;           /* every entry of the batch was used */
};

/* Copy records from `off` on into `b`. */
static int batch_fill(struct tsdb *db, size_t off, const char *prefix,
                      size_t prefixlen, cyrusdb_filter_t *filter,
                      void *rock, struct batch *b)
{
    struct rec f;
    int r = 0;

    buf_reset(&b->data);
    b->n = 0;
    b->is_last = 0;
    while (off && b->n < BATCH_RECORDS && b->data.len < BATCH_BYTES) {
        r = twoskip_rec_read(db, off, &f);
        if (r)
            return r;
        if (f.keylen < prefixlen || memcmp(KEY(db, &f), prefix, prefixlen))
            break;
        r = twoskip_check_data(db, &f);
        if (r)
            return r;
        if (!filter || filter(rock, KEY(db, &f), f.keylen,
                              VAL(db, &f), f.vallen)) {
            b->ent[b->n].pos = b->data.len;
            b->ent[b->n].keylen = f.keylen;
            b->ent[b->n].vallen = f.vallen;
            buf_appendmap(&b->data, KEY(db, &f),
                          (size_t)f.keylen + f.vallen);
            b->n++;
        }
        r = twoskip_next0(db, &f, &off);
        if (r)
            return r;
    }
    if (!off || (b->n < BATCH_RECORDS && b->data.len < BATCH_BYTES))
        b->is_last = 1;
    b->next = off;
    b->ino = mappedfile_ino(db->mf);
    b->gen = db->hdr.generation;
    b->seq = twoskip_seq(db);
    b->end = db->end;
    b->changes = db->changes;
    return 0;
}

/* Has anything changed the file since the batch was read? */
static int batch_is_stale(const struct tsdb *db, const struct batch *b)
{
    return b->ino != mappedfile_ino(db->mf) || b->gen != db->hdr.generation
           || b->end != db->end || b->changes != db->changes
           || b->seq != twoskip_seq(db);
}

/* Where the next batch starts: at the prefix, where the last batch
 * ended if the file is as it was then, or else after the last key
 * handed out. */
static int batch_fill_next(struct tsdb *db, const char *prefix,
                           size_t prefixlen, cyrusdb_filter_t *filter,
                           void *rock, struct batch *b)
{
    size_t off;
    int r;

    if (b->is_first)
        r = seek_after(db, prefix, prefixlen, 1, &off);
    else if (b->is_whole && !batch_is_stale(db, b)) {
        off = b->next;
        r = 0;
    }
    else
        r = seek_after(db, b->last.s, b->last.len, 0, &off);
    return r ? r : batch_fill(db, off, prefix, prefixlen, filter, rock, b);
}

/* Read the next batch, lock-free when possible. */
static int batch_load(struct tsdb *db, const char *prefix,
                      size_t prefixlen, cyrusdb_filter_t *filter,
                      void *rock, struct batch *b)
{
    struct tsidx *old = NULL;
    uint32_t seq;
    int is_new, r;

    if (!lf_begin(db, &seq)) {
        is_new = idx_refresh(db, &old);
        r = lf_end(db, seq, batch_fill_next(db, prefix, prefixlen, filter,
                                            rock, b));
        idx_settle(db, is_new, old, r);
        if (r != LF_RETRY)
            return r;
    }
    r = lock_shared(db);
    if (r)
        return r;
    r = batch_fill_next(db, prefix, prefixlen, filter, rock, b);
    unlock(db);
    return r;
}

/* Run cb over the batch without the lock.  A callback that wrote to
 * the db makes the rest of the batch stale: *used_r gets the number of
 * entries used, and the caller continues after the last of them. */
static int batch_run(struct tsdb *db, struct batch *b, cyrusdb_cb_t *cb,
                     void *rock, size_t *used_r)
{
    size_t i;
    int r = 0;

    for (i = 0; i < b->n; i++) {
        const char *k = b->data.s + b->ent[i].pos;

        r = cb(rock, k, b->ent[i].keylen, k + b->ent[i].keylen,
               b->ent[i].vallen);
        if (r || db->changes != b->changes) {
            i++;
            break;
        }
    }
    *used_r = i;
    return r;
}

/* A one-shot walk: copy a batch (lock-free, or under the shared lock),
 * run the callbacks on the copy without the lock, and go on from where
 * the batch ended, or, when the file changed meanwhile, from after the
 * last key handed out (so a callback may write, and sees the walk go
 * on after the current key as it is then). */
static int foreach_oneshot(struct tsdb *db, const char *prefix,
                           size_t prefixlen, cyrusdb_filter_t *filter,
                           cyrusdb_cb_t *cb, void *rock)
{
    struct batch *b = xzmalloc(sizeof(*b));
    size_t used;
    int r;

    b->is_first = 1;
    for (;;) {
        r = batch_load(db, prefix, prefixlen, filter, rock, b);
        if (r)
            break;
        r = batch_run(db, b, cb, rock, &used);
        if (r || (b->is_last && used == b->n && db->changes == b->changes))
            break;
        /* used > 0: an empty batch is always the last. */
        buf_setmap(&b->last, b->data.s + b->ent[used - 1].pos,
                   b->ent[used - 1].keylen);
        b->is_whole = used == b->n;
        b->is_first = 0;
    }
    buf_free(&b->data);
    buf_free(&b->last);
    free(b);
    return r;
}

static int ts_foreach(struct db *db_, const char *prefix, size_t prefixlen,
                      cyrusdb_filter_t *filter, cyrusdb_cb_t *cb,
                      void *rock, struct txn **tid)
{
    struct tsdb *db = (struct tsdb *)db_;
    int mode, r;

    if (!tid && !db->txn)
        return foreach_oneshot(db, prefix, prefixlen, filter, cb, rock);
    r = op_begin(db, tid, 0, &mode);
    if (r)
        return r;
    r = foreach_locked(db, prefix, prefixlen, filter, cb, rock);
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
    /* A one-shot write's record goes out with its COMMIT; in a longer
     * transaction, now (a foreach may read it right away). */
    if (!r && mode != 2)
        r = flush_pending(db);
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
        ret = twoskip_rec_read(db, off, &r);
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
        ret = twoskip_rec_read(db, off, &r);
        if (ret)
            return ret;
        if (twoskip_check_data(db, &r))
            return ERR_CORRUPT;
        off += r.len;
    }
    if (off != db->end)
        return twoskip_corrupt(db, off,
                               "records do not end at the committed size");
    if (r.type != REC_COMMIT && db->end != DUMMY_OFFSET + HEADLEN(MAXPTRS))
        return twoskip_corrupt(db, off, "last record is not a commit");
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
    ret = twoskip_rec_read(db, DUMMY_OFFSET, &r);
    if (!ret)
        ret = twoskip_next0(db, &r, &off);
    while (!ret && off) {
        ret = twoskip_rec_read(db, off, &r);
        if (ret)
            return ret;
        if (prevoff && keycmp(db, KEY(db, &p), p.keylen,
                              KEY(db, &r), r.keylen) >= 0)
            return twoskip_corrupt(db, off, "keys out of order");
        for (l = 1; l + 1 < r.nptrs; l++) {
            struct rec q;

            ret = twoskip_rec_read(db, prev[l], &q);
            if (ret)
                return ret;
            if (PTR(db, &q, l + 1) != off)
                return twoskip_corrupt(db, prev[l], "upper level link broken");
            prev[l] = off;
        }
        if (++count > db->end / 24)
            return twoskip_corrupt(db, off, "pointer cycle");
        p = r;
        prevoff = off;
        ret = twoskip_next0(db, &r, &off);
    }
    for (l = 1; !ret && l < MAXLEVEL; l++) {
        ret = twoskip_rec_read(db, prev[l], &r);
        if (!ret && PTR(db, &r, l + 1))
            ret = twoskip_corrupt(db, prev[l], "upper level does not end");
    }
    if (!ret && count != db->hdr.num_records)
        ret = twoskip_corrupt(db, 0, "record count mismatch");
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
    twoskip_forget_verified(db);
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
    r = twoskip_repack(db, 0);
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
        r = twoskip_write_all(fd, BASE(db), db->end, buf_cstring(&dest));
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
    (void)flags;
    return cyrusdb_unlink_file(fname);
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

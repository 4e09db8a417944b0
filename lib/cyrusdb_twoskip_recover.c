/* twoskip recovery (after a crash or a power loss) and repack; the
 * format and the safety argument are in lib/cyrusdb_twoskip.c. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/cyrusdb.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/mappedfile.h"
#include "lib/xmalloc.h"

#include "lib/cyrusdb_twoskip_int.h"

/* ---- recovery ---- */

/* Was the header last written in another boot?  Then a power loss may
 * lie in between, and no pointer can be trusted (see CRASH SAFETY). */
int twoskip_boot_changed(const struct tsdb *db)
{
    return twoskip_has_boot_id()
           && memcmp(db->hdr.bootid, twoskip_this_boot(), BOOTID_LEN);
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
    while (off < db->end && !twoskip_rec_read(db, off, &r)) {
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
        ret = twoskip_rec_read(db, off, &r);
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
        ret = twoskip_corrupt(db, off,
                              "records do not end at the committed size");
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
size_t twoskip_scan_search(const struct tsdb *db, const char *key,
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
int twoskip_scan_mode_begin(struct tsdb *db)
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

/* Power loss possible (the header was written in another boot, or the
 * boot cannot be told and the file is dirty): take in the committed
 * tail, then rebuild from a sequential scan into a fresh file.  The
 * caller must then lock again to follow the rename. */
int twoskip_power_recover(struct tsdb *db)
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
    twoskip_forget_verified(db);
    r = twoskip_repack(db, 1);
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
    ret = twoskip_set_ptr_raw(db, r->off, first, next, NULL);
    if (!ret)
        ret = twoskip_set_ptr_raw(db, r->off, 1 - first, next, NULL);
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
    twoskip_forget_verified(db);
    /* Odd already if a writer died; a recovery for DIRTY alone (a
     * version 2 file) must keep lock-free readers out too. */
    ret = twoskip_seq_begin(db);
    if (!ret)
        ret = mappedfile_truncate(db->mf, db->end);
    if (ret)
        return ret;

    db->is_lax = 1;
    for (l = 0; l < MAXLEVEL; l++)
        last[l] = DUMMY_OFFSET;
    off = DUMMY_OFFSET;
    while (off) {
        ret = twoskip_rec_read(db, off, &r);
        if (!ret)
            ret = twoskip_next0(db, &r, &next);
        if (!ret)
            ret = recover_slots(db, &r, next);
        for (l = 1; !ret && off != DUMMY_OFFSET && l + 1 < r.nptrs; l++) {
            ret = twoskip_set_ptr_raw(db, last[l], l + 1, off, NULL);
            last[l] = off;
        }
        if (ret)
            goto done;
        if (off != DUMMY_OFFSET)
            count++;
        if (++steps > db->end / 24 + 2) {
            ret = twoskip_corrupt(db, off, "pointer cycle");
            goto done;
        }
        off = next;
    }
    for (l = 1; !ret && l < MAXLEVEL; l++)
        ret = twoskip_set_ptr_raw(db, last[l], l + 1, 0, NULL);
    if (ret)
        goto done;

    db->hdr.num_records = count;
    ret = twoskip_sync_file(db);
    if (ret)
        goto done;
    db->hdr.flags &= ~(uint32_t)TS_F_DIRTY;
    ret = twoskip_header_write(db);
    if (!ret)
        ret = twoskip_sync_file(db);
    if (!ret) {
        twoskip_seq_end(db);
        xsyslog(LOG_NOTICE, "twoskip: recovered", "path=%s records=%zu",
                db->fname, count);
    }

done:
    db->is_lax = 0;
    return ret;
}

/* A writer of this boot died (the page cache holds all it wrote).  A
 * transaction whose COMMIT verifies finished every in-place change
 * before appending it, so only the header is behind: bring it forward
 * once the data is durable.  Anything else unfinished is undone by
 * recover(). */
int twoskip_recover_same_boot(struct tsdb *db)
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
        r = twoskip_sync_file(db);
        if (!r) {
            db->hdr.current_size = end;
            db->hdr.num_records = count;
            db->end = end;
        }
    }
    return r ? r : recover(db);
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
    lay->level[lay->n] = (uint8_t)twoskip_random_level();
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
            ret = twoskip_rec_read(db, offs[i], &r);
            if (!ret)
                layout_add(lay, &r, &pos);
        }
        free(offs);
        *end_r = pos;
        return ret;
    }
    ret = twoskip_rec_read(db, DUMMY_OFFSET, &r);
    if (!ret)
        ret = twoskip_next0(db, &r, &off);
    while (!ret && off) {
        ret = twoskip_rec_read(db, off, &r);
        if (ret)
            break;
        if (twoskip_check_data(db, &r))
            return ERR_CORRUPT;
        layout_add(lay, &r, &pos);
        ret = twoskip_next0(db, &r, &off);
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

int twoskip_write_all(int fd, const char *p, size_t len, const char *fname)
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
    twoskip_header_encode(&h, out.s);
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

        r = twoskip_rec_read(db, lay->old[i], &rec);
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
            r = twoskip_write_all(fd, out.s, out.len, newname);
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
        r = twoskip_write_all(fd, out.s, out.len, newname);
    }
    buf_free(&out);
    free(links);
    free(first);
    return r;
}

/* Write the raw header `h` inside a change of the counter, so that no
 * lock-free reader takes a half-written header for a whole one.  An
 * odd counter (a writer died) is left odd. */
static int header_put(struct tsdb *db, const char *h)
{
    int was_odd = __builtin_parity(twoskip_seq(db)), r;

    r = twoskip_seq_begin(db);
    if (!r)
        r = mappedfile_pwrite(db->mf, h, HEADER_SIZE, 0);
    if (!was_odd)
        twoskip_seq_end(db);
    return r;
}

/* Announce in the old file's header that a rename is about to replace
 * it, so that a reader holding it looks at the path again (see REPACK).
 * Only the flag and the CRC change: the boot id and sizes stay as they
 * were, for the file may be rebuilt because it is not to be trusted.
 * `saved` gets the old header, for header_restore(). */
static int header_set_replaced(struct tsdb *db, char *saved)
{
    char h[HEADER_SIZE];

    memcpy(saved, BASE(db), HEADER_SIZE);
    memcpy(h, saved, HEADER_SIZE);
    put32(h + 20, get32(h + 20) | TS_F_REPLACED);
    put32(h + HEADER_SIZE - 4, crc_of(h, HEADER_SIZE - 4));
    return header_put(db, h);
}

/* After a failed rename: the file stays current, take the flag away. */
static void header_restore(struct tsdb *db, const char *saved)
{
    if (header_put(db, saved))
        xsyslog(LOG_WARNING, "twoskip: replaced flag left set",
                "path=%s", db->fname);
}

/* Write the live records to fname.NEW and rename it over the file.
 * Called with the exclusive lock held and no transaction open; the
 * lock is left on the old file (released by the caller). */
int twoskip_repack(struct tsdb *db, int from_scan)
{
    struct layout lay;
    struct buf newname = BUF_INITIALIZER;
    size_t end = 0;
    char saved[HEADER_SIZE];
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
    if (!r)
        r = header_set_replaced(db, saved);
    if (!r && rename(buf_cstring(&newname), db->fname) < 0) {
        xsyslog_syscall("rename", "path", buf_cstring(&newname));
        header_restore(db, saved);
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

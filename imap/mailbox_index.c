/* Mailbox index (cyrus.index): header and record encoding, loading with
 * crash recovery, record lookup, in-place changes, expunge and repack.
 * The format and its crash argument are described in imap/mailbox.c. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/error.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#include "imap/mailbox.h"
#include "imap/mailbox_internal.h"

#define INDEX_MAGIC "ColIndex"
#define CRC_OFFSET 124

/* Bytes of buffered output during repack before each write. */
#define REPACK_FLUSH (1024 * 1024)

/* ---------------------------------------------------------------- */
/* Encoding                                                           */

void index_header_encode(const struct mailbox_index_header *ih,
                         unsigned char out[INDEX_HEADER_SIZE])
{
    memset(out, 0, INDEX_HEADER_SIZE);
    memcpy(out, INDEX_MAGIC, 8);
    mb_put32(out + 8, ih->version);
    mb_put32(out + 12, ih->generation);
    mb_put32(out + 16, ih->format_flags);
    mb_put32(out + 20, INDEX_HEADER_SIZE);
    mb_put32(out + 24, INDEX_RECORD_SIZE);
    mb_put32(out + 28, ih->uidvalidity);
    mb_put32(out + 32, ih->uidnext);
    mb_put32(out + 36, ih->num_records);
    mb_put64(out + 40, ih->highestmodseq);
    mb_put32(out + 48, ih->exists);
    mb_put32(out + 52, ih->deleted);
    mb_put32(out + 56, ih->answered);
    mb_put32(out + 60, ih->flagged);
    mb_put64(out + 64, ih->quota_used);
    mb_put64(out + 72, (uint64_t)ih->last_appenddate);
    mb_put64(out + 80, (uint64_t)ih->pop3_last_login);
    mb_put64(out + 88, (uint64_t)ih->first_expunged);
    mb_put64(out + 96, ih->deletedmodseq);
    mb_put64(out + 104, ih->cache_size);
    mb_put32(out + CRC_OFFSET, mailbox_crc32(out, CRC_OFFSET));
}

/* Log why an index is refused and return ERR_CORRUPT. */
static int corrupt(const char *path, const char *why, uint32_t uid)
{
    xsyslog(LOG_ERR, "mailbox index corrupt", "path=%s uid=%u error=%s",
            path, uid, why);
    return ERR_CORRUPT;
}

int index_header_decode(const char *path, const unsigned char *p,
                        size_t filesize, struct mailbox_index_header *ih)
{
    memset(ih, 0, sizeof(*ih));
    if (filesize < INDEX_HEADER_SIZE)
        return corrupt(path, "truncated header", 0);
    if (memcmp(p, INDEX_MAGIC, 8))
        return corrupt(path, "bad magic", 0);
    if (mb_get32(p + CRC_OFFSET) != mailbox_crc32(p, CRC_OFFSET))
        return corrupt(path, "header checksum mismatch", 0);
    ih->version = mb_get32(p + 8);
    if (ih->version != MAILBOX_INDEX_VERSION) {
        xsyslog(LOG_ERR, "mailbox index has unknown version",
                "path=%s version=%u", path, ih->version);
        return ERR_DB_BADFORMAT;
    }
    if (mb_get32(p + 20) != INDEX_HEADER_SIZE
        || mb_get32(p + 24) != INDEX_RECORD_SIZE)
        return corrupt(path, "unexpected header or record size", 0);

    ih->generation = mb_get32(p + 12);
    ih->format_flags = mb_get32(p + 16);
    ih->uidvalidity = mb_get32(p + 28);
    ih->uidnext = mb_get32(p + 32);
    ih->num_records = mb_get32(p + 36);
    ih->highestmodseq = mb_get64(p + 40);
    ih->exists = mb_get32(p + 48);
    ih->deleted = mb_get32(p + 52);
    ih->answered = mb_get32(p + 56);
    ih->flagged = mb_get32(p + 60);
    ih->quota_used = mb_get64(p + 64);
    ih->last_appenddate = (time_t)mb_get64(p + 72);
    ih->pop3_last_login = (time_t)mb_get64(p + 80);
    ih->first_expunged = (time_t)mb_get64(p + 88);
    ih->deletedmodseq = mb_get64(p + 96);
    ih->cache_size = mb_get64(p + 104);

    if ((uint64_t)ih->num_records * INDEX_RECORD_SIZE
        > filesize - INDEX_HEADER_SIZE)
        return corrupt(path, "records past end of file", 0);
    if (ih->exists > ih->num_records || ih->deleted > ih->exists
        || ih->answered > ih->exists || ih->flagged > ih->exists
        || ih->num_records >= ih->uidnext)
        return corrupt(path, "inconsistent counts", 0);
    if (!ih->uidvalidity || !ih->uidnext || !ih->generation
        || ih->cache_size < CACHE_HEADER_SIZE)
        return corrupt(path, "zero field", 0);
    return 0;
}

void index_record_encode(const struct mailbox_record *rec,
                         unsigned char out[INDEX_RECORD_SIZE])
{
    int i;

    memset(out, 0, INDEX_RECORD_SIZE);
    mb_put32(out, rec->uid);
    mb_put32(out + 4, rec->system_flags);
    mb_put64(out + 8, (uint64_t)rec->internaldate);
    mb_put64(out + 16, (uint64_t)rec->sentdate);
    mb_put64(out + 24, (uint64_t)rec->savedate);
    mb_put64(out + 32, (uint64_t)rec->last_updated);
    mb_put64(out + 40, rec->size);
    mb_put32(out + 48, rec->header_size);
    mb_put32(out + 52, rec->cache_version);
    mb_put64(out + 56, rec->cache_offset);
    for (i = 0; i < MAILBOX_USERFLAG_WORDS; i++)
        mb_put32(out + 64 + 4 * i, rec->user_flags[i]);
    mb_put64(out + 80, rec->modseq);
    mb_put64(out + 88, rec->createdmodseq);
    memcpy(out + 96, rec->guid, MAILBOX_GUID_SIZE);
    mb_put32(out + CRC_OFFSET, mailbox_crc32(out, CRC_OFFSET));
}

int index_record_decode(const char *path, const unsigned char *p,
                        uint32_t recno, uint32_t uidnext,
                        struct mailbox_record *rec)
{
    int i;

    memset(rec, 0, sizeof(*rec));
    rec->uid = mb_get32(p);
    if (mb_get32(p + CRC_OFFSET) != mailbox_crc32(p, CRC_OFFSET))
        return corrupt(path, "record checksum mismatch", rec->uid);
    if (!rec->uid || rec->uid >= uidnext)
        return corrupt(path, "record uid out of range", rec->uid);
    rec->recno = recno;
    rec->system_flags = mb_get32(p + 4);
    rec->internaldate = (time_t)mb_get64(p + 8);
    rec->sentdate = (time_t)mb_get64(p + 16);
    rec->savedate = (time_t)mb_get64(p + 24);
    rec->last_updated = (time_t)mb_get64(p + 32);
    rec->size = mb_get64(p + 40);
    rec->header_size = mb_get32(p + 48);
    rec->cache_version = mb_get32(p + 52);
    rec->cache_offset = mb_get64(p + 56);
    for (i = 0; i < MAILBOX_USERFLAG_WORDS; i++)
        rec->user_flags[i] = mb_get32(p + 64 + 4 * i);
    rec->modseq = mb_get64(p + 80);
    rec->createdmodseq = mb_get64(p + 88);
    memcpy(rec->guid, p + 96, MAILBOX_GUID_SIZE);
    return 0;
}

/* Add (`sign` 1) or remove (-1) a record's share of the counts. */
void index_count_record(struct mailbox_index_header *ih,
                        const struct mailbox_record *rec, int sign)
{
    uint32_t f = rec->system_flags;
    uint32_t d = (uint32_t)sign;

    if (f & MAILBOX_FLAG_EXPUNGED)
        return;
    ih->exists += d;
    if (f & MAILBOX_FLAG_DELETED)
        ih->deleted += d;
    if (f & MAILBOX_FLAG_ANSWERED)
        ih->answered += d;
    if (f & MAILBOX_FLAG_FLAGGED)
        ih->flagged += d;
    ih->quota_used += (uint64_t)(int64_t)sign * rec->size;
}

/* ---------------------------------------------------------------- */
/* Loading and recovery                                               */

/* Record `recno` of the mapped index, or NULL beyond the map. */
static const unsigned char *record_at(struct mailbox *mb, uint32_t recno)
{
    size_t off = INDEX_HEADER_SIZE + (size_t)(recno - 1) * INDEX_RECORD_SIZE;

    if (off + INDEX_RECORD_SIZE > mappedfile_size(mb->index))
        return NULL;
    return (const unsigned char *)mappedfile_base(mb->index) + off;
}

int index_recount(struct mailbox *mb, struct mailbox_index_header *ih)
{
    struct mailbox_record rec;
    uint32_t recno, last_uid = 0;
    const unsigned char *p;
    int r;

    ih->exists = ih->deleted = ih->answered = ih->flagged = 0;
    ih->quota_used = 0;
    ih->first_expunged = 0;
    for (recno = 1; recno <= ih->num_records; recno++) {
        p = record_at(mb, recno);
        if (!p)
            return corrupt(mappedfile_fname(mb->index), "short file", 0);
        r = index_record_decode(mappedfile_fname(mb->index), p, recno,
                          ih->uidnext, &rec);
        if (r)
            return r;
        if (rec.uid <= last_uid)
            return corrupt(mappedfile_fname(mb->index), "uid order",
                           rec.uid);
        last_uid = rec.uid;
        index_count_record(ih, &rec, 1);
        if (rec.modseq > ih->highestmodseq)
            ih->highestmodseq = rec.modseq;
        if ((rec.system_flags & MAILBOX_FLAG_EXPUNGED)
            && !(rec.system_flags & MAILBOX_FLAG_UNLINKED)
            && (!ih->first_expunged || rec.last_updated < ih->first_expunged))
            ih->first_expunged = rec.last_updated;
    }
    return 0;
}

/* Replace our locked index with the locked, complete file `newmf`
 * (cyrus.index.NEW), renaming it into place; the old lock goes when the
 * old descriptor closes, and waiters then follow the rename. */
static int index_swap_in(struct mailbox *mb, struct mappedfile **newmf)
{
    struct buf path = BUF_INITIALIZER;
    int r;

    mailbox_file_path(mb, MAILBOX_FNAME_INDEX, &path);
    r = mappedfile_rename(*newmf, buf_cstring(&path));
    buf_free(&path);
    if (r)
        return r;
    mappedfile_close(&mb->index);
    mb->index = *newmf;
    *newmf = NULL;
    return 0;
}

/* Finish a repack that crashed between its two renames: the cache has
 * generation `cache_gen`, and cyrus.index.NEW must have it too. */
static int index_roll_forward(struct mailbox *mb, uint32_t cache_gen)
{
    struct mappedfile *newmf = NULL;
    struct mailbox_index_header nih;
    struct buf path = BUF_INITIALIZER;
    int r;

    mailbox_file_path(mb, MAILBOX_FNAME_INDEX ".NEW", &path);
    r = mappedfile_open(buf_cstring(&path), MAPPEDFILE_RW, &newmf);
    if (!r)
        r = mappedfile_lock(newmf, MAPPEDFILE_EXCLUSIVE, NULL);
    if (!r)
        r = index_header_decode(buf_cstring(&path),
                                (const unsigned char *)mappedfile_base(newmf),
                                mappedfile_size(newmf), &nih);
    if (!r && nih.generation != cache_gen)
        r = ERR_CORRUPT;
    if (r) {
        xsyslog(LOG_ERR, "mailbox index and cache generations differ",
                "path=%s error=%s", mb->path, error_message(r));
        r = ERR_CORRUPT;
        goto done;
    }
    r = index_swap_in(mb, &newmf);
    if (!r)
        xsyslog(LOG_WARNING, "mailbox repack rolled forward", "path=%s",
                mb->path);

done:
    mappedfile_close(&newmf);
    buf_free(&path);
    return r;
}

/* Remove the message files a crashed append left: "<uid>." at or
 * above UIDNEXT belongs to no record and no client was told of it. */
static int remove_orphans(struct mailbox *mb, uint32_t uidnext)
{
    struct buf path = BUF_INITIALIZER;
    struct dirent *de;
    unsigned count = 0;
    DIR *dir;
    int r = 0;

    dir = opendir(mb->path);
    if (!dir)
        return errno == ENOENT ? 0 : ERR_IO;
    while ((de = readdir(dir))) {
        size_t n = strspn(de->d_name, "0123456789");
        unsigned long uid;

        if (!n || n > 10 || de->d_name[n] != '.' || de->d_name[n + 1])
            continue;
        uid = strtoul(de->d_name, NULL, 10);
        if (uid < uidnext)
            continue;
        buf_reset(&path);
        buf_printf(&path, "%s/%s", mb->path, de->d_name);
        if (unlink(buf_cstring(&path)) < 0 && errno != ENOENT) {
            xsyslog_syscall("unlink", "path", buf_cstring(&path));
            r = ERR_IO;
        }
        else {
            count++;
        }
    }
    closedir(dir);
    if (count)
        xsyslog(LOG_WARNING, "mailbox append leftovers removed",
                "path=%s count=%u", mb->path, count);
    buf_free(&path);
    return r;
}

/* Drop what a crashed writer left past the committed data, and redo
 * the counts after a crash in the middle of in-place changes.  An
 * append writes its cache record before its message file, so a file
 * left by a crashed append always comes with cache bytes past the
 * committed size: only then is the directory scanned for it. */
static int index_recover(struct mailbox *mb,
                         struct mailbox_index_header *ih)
{
    size_t want = INDEX_HEADER_SIZE
                  + (size_t)ih->num_records * INDEX_RECORD_SIZE;
    int crashed_append = 0;
    int r = 0;

    if (mappedfile_size(mb->index) > want) {
        crashed_append = 1;
        r = mappedfile_truncate(mb->index, want);
    }
    if (!r && mappedfile_size(mb->cache) > ih->cache_size) {
        crashed_append = 1;
        r = mappedfile_truncate(mb->cache, (size_t)ih->cache_size);
    }
    if (!r && crashed_append)
        r = remove_orphans(mb, ih->uidnext);
    if (r || !(ih->format_flags & MAILBOX_INDEX_DIRTY))
        return r;

    r = index_recount(mb, ih);
    if (r)
        return r;
    ih->format_flags &= ~MAILBOX_INDEX_DIRTY;
    mb->ih = *ih;
    r = index_write_header(mb);
    if (!r)
        r = mappedfile_sync(mb->index);
    if (!r)
        xsyslog(LOG_WARNING, "mailbox counts recovered", "path=%s",
                mb->path);
    return r;
}

int index_load(struct mailbox *mb)
{
    struct mailbox_index_header ih;
    uint32_t cache_gen;
    int r;

    r = index_header_decode(mappedfile_fname(mb->index),
                            (const unsigned char *)mappedfile_base(mb->index),
                            mappedfile_size(mb->index), &ih);
    if (!r)
        r = mappedfile_refresh(mb->cache);
    if (!r)
        r = cache_header_check(mappedfile_fname(mb->cache),
                               mappedfile_base(mb->cache),
                               mappedfile_size(mb->cache), &cache_gen);
    if (r)
        return r;

    if (cache_gen != ih.generation) {
        if (mb->lockstate != MBLOCK_EXCLUSIVE)
            return ERR_AGAIN;
        r = index_roll_forward(mb, cache_gen);
        if (r)
            return r;
        return index_load(mb);
    }
    if (ih.cache_size > mappedfile_size(mb->cache))
        return corrupt(mappedfile_fname(mb->index), "cache shorter than "
                       "its recorded size", 0);

    if (mb->lockstate == MBLOCK_EXCLUSIVE)
        r = index_recover(mb, &ih);
    else if (ih.format_flags & MAILBOX_INDEX_DIRTY)
        r = index_recount(mb, &ih);
    if (r)
        return r;
    mb->ih = ih;
    mb->is_changed = 0;
    mb->is_dirty_on_disk = 0;
    if (mb->lockstate == MBLOCK_EXCLUSIVE)
        mailbox_quota_rebase(mb);
    return 0;
}

int index_write_header(struct mailbox *mb)
{
    unsigned char hdr[INDEX_HEADER_SIZE];

    index_header_encode(&mb->ih, hdr);
    return mappedfile_pwrite(mb->index, hdr, sizeof(hdr), 0);
}

/* ---------------------------------------------------------------- */
/* Reading records                                                    */

int mailbox_read_record(struct mailbox *mb, uint32_t recno,
                        struct mailbox_record *rec_r)
{
    const unsigned char *p;

    if (mb->lockstate == MBLOCK_NONE)
        return ERR_MAILBOX_NOTLOCKED;
    if (!recno || recno > mb->ih.num_records)
        return ERR_NOTFOUND;
    p = record_at(mb, recno);
    if (!p)
        return corrupt(mappedfile_fname(mb->index), "short file", 0);
    return index_record_decode(mappedfile_fname(mb->index), p, recno,
                         mb->ih.uidnext, rec_r);
}

int mailbox_find_record(struct mailbox *mb, uint32_t uid,
                        struct mailbox_record *rec_r)
{
    uint32_t lo = 1, hi = mb->ih.num_records, mid, got;
    const unsigned char *p;

    if (mb->lockstate == MBLOCK_NONE)
        return ERR_MAILBOX_NOTLOCKED;
    while (lo <= hi) {
        mid = lo + (hi - lo) / 2;
        p = record_at(mb, mid);
        if (!p)
            return corrupt(mappedfile_fname(mb->index), "short file", 0);
        got = mb_get32(p);
        if (got == uid) {
            return mailbox_read_record(mb, mid, rec_r);
        }
        if (got < uid)
            lo = mid + 1;
        else if (mid == 1)
            break;
        else
            hi = mid - 1;
    }
    return ERR_NOTFOUND;
}

/* ---------------------------------------------------------------- */
/* Changing records in place                                          */

/* Before the first in-place write of this lock, make DIRTY durable, so
 * a crash part-way makes the next opener recount. */
static int mark_dirty(struct mailbox *mb)
{
    int r;

    if (mb->is_dirty_on_disk)
        return 0;
    mb->ih.format_flags |= MAILBOX_INDEX_DIRTY;
    r = index_write_header(mb);
    if (!r)
        r = mappedfile_sync(mb->index);
    if (r)
        return r;
    mb->is_dirty_on_disk = 1;
    mb->is_changed = 1;
    return 0;
}

/* Write `rec` over the record `old` it replaces, adjusting counts. */
static int store_record(struct mailbox *mb, const struct mailbox_record *old,
                        const struct mailbox_record *rec)
{
    unsigned char buf[INDEX_RECORD_SIZE];
    size_t off;
    int r;

    r = mark_dirty(mb);
    if (r)
        return r;
    index_record_encode(rec, buf);
    off = INDEX_HEADER_SIZE + (size_t)(rec->recno - 1) * INDEX_RECORD_SIZE;
    r = mappedfile_pwrite(mb->index, buf, sizeof(buf), off);
    if (r)
        return r;
    index_count_record(&mb->ih, old, -1);
    index_count_record(&mb->ih, rec, 1);
    mb->is_changed = 1;
    return 0;
}

/* Are all user flags set in `uf` allocated names? */
static int userflags_allocated(const struct mailbox *mb, const uint32_t *uf)
{
    unsigned i;

    for (i = 0; i < MAILBOX_MAX_USERFLAGS; i++) {
        if ((uf[i / 32] & (1u << (i % 32))) && !mb->flagname[i])
            return 0;
    }
    return 1;
}

int mailbox_rewrite_record(struct mailbox *mb, struct mailbox_record *rec)
{
    struct mailbox_record old, new;
    int r;

    if (mb->lockstate != MBLOCK_EXCLUSIVE)
        return ERR_MAILBOX_NOTLOCKED;
    r = mailbox_read_record(mb, rec->recno, &old);
    if (r)
        return r;
    if (old.uid != rec->uid || (old.system_flags & MAILBOX_FLAG_EXPUNGED)
        || (rec->system_flags & ~MAILBOX_FLAGS_IMAP)
        || !userflags_allocated(mb, rec->user_flags))
        return ERR_INVALID;

    new = old;
    new.system_flags = (old.system_flags & ~MAILBOX_FLAGS_IMAP)
                       | rec->system_flags;
    memcpy(new.user_flags, rec->user_flags, sizeof(new.user_flags));
    if (new.system_flags == old.system_flags
        && !memcmp(new.user_flags, old.user_flags, sizeof(new.user_flags))) {
        *rec = old;
        return 0;
    }
    new.modseq = mb->ih.highestmodseq + 1;
    new.last_updated = time(NULL);
    r = store_record(mb, &old, &new);
    if (r)
        return r;
    mb->ih.highestmodseq = new.modseq;
    mailbox_queue_event(mb, "flags", new.uid);
    *rec = new;
    return 0;
}

/* Remove the message file of `uid`; a missing file is fine. */
static int unlink_message(struct mailbox *mb, uint32_t uid)
{
    struct buf path = BUF_INITIALIZER;
    int r = 0;

    mailbox_message_path(mb, uid, &path);
    if (unlink(buf_cstring(&path)) < 0 && errno != ENOENT) {
        xsyslog_syscall("unlink", "path", buf_cstring(&path));
        r = ERR_IO;
    }
    buf_free(&path);
    return r;
}

/* Default expunge choice: the \Deleted messages. */
static int decide_deleted(struct mailbox *mb,
                          const struct mailbox_record *rec, void *rock)
{
    (void)mb;
    (void)rock;
    return !!(rec->system_flags & MAILBOX_FLAG_DELETED);
}

/* Remove the files of the `n` just-expunged records `uids` and mark the
 * records unlinked, then commit.  The expunge itself is already
 * durable, so the hook saw it; unlinking is no change IMAP can see. */
static int unlink_records(struct mailbox *mb, const uint32_t *uids,
                          unsigned n)
{
    struct mailbox_record old, new;
    unsigned i;
    int r = 0;

    for (i = 0; !r && i < n; i++) {
        r = mailbox_find_record(mb, uids[i], &old);
        if (!r)
            r = unlink_message(mb, old.uid);
        if (!r) {
            new = old;
            new.system_flags |= MAILBOX_FLAG_UNLINKED;
            r = store_record(mb, &old, &new);
        }
    }
    if (!r)
        r = mailbox_commit(mb);
    return r;
}

int mailbox_expunge(struct mailbox *mb, mailbox_expunge_decide_t *decide,
                    void *rock, enum mailbox_expunge_mode mode,
                    unsigned *count_r)
{
    struct mailbox_record old, new;
    uint32_t *uids = NULL;      /* expunged by this call */
    unsigned count = 0;
    uint32_t recno;
    int r = 0;

    if (mb->lockstate != MBLOCK_EXCLUSIVE)
        return ERR_MAILBOX_NOTLOCKED;
    if (!decide)
        decide = decide_deleted;
    for (recno = 1; !r && recno <= mb->ih.num_records; recno++) {
        r = mailbox_read_record(mb, recno, &old);
        if (r || (old.system_flags & MAILBOX_FLAG_EXPUNGED)
            || !decide(mb, &old, rock))
            continue;
        new = old;
        new.system_flags |= MAILBOX_FLAG_EXPUNGED;
        new.modseq = mb->ih.highestmodseq + 1;
        new.last_updated = time(NULL);
        if (!mb->ih.first_expunged)
            mb->ih.first_expunged = new.last_updated;
        r = store_record(mb, &old, &new);
        if (r)
            break;
        mb->ih.highestmodseq = new.modseq;
        mailbox_queue_event(mb, "expunge", new.uid);
        uids = xreallocarray(uids, count + 1, sizeof(*uids));
        uids[count++] = new.uid;
    }
    if (!r)
        r = mailbox_commit(mb);

    /* Immediate mode removes the files only once the records saying
     * they are expunged are durable: a crash in between leaves an
     * expunged record with its file (cleaned up later), never a live
     * record without one. */
    if (!r && count && mode == MAILBOX_EXPUNGE_IMMEDIATE)
        r = unlink_records(mb, uids, count);
    free(uids);
    if (count_r)
        *count_r = count;
    return r;
}

int mailbox_unlink_expunged(struct mailbox *mb, time_t before,
                            unsigned *count_r)
{
    struct mailbox_record old, new;
    unsigned count = 0;
    uint32_t recno;
    time_t first = 0;
    int r = 0;

    if (mb->lockstate != MBLOCK_EXCLUSIVE)
        return ERR_MAILBOX_NOTLOCKED;
    for (recno = 1; !r && recno <= mb->ih.num_records; recno++) {
        r = mailbox_read_record(mb, recno, &old);
        if (r || (old.system_flags & MAILBOX_FLAG_UNLINKED)
            || !(old.system_flags & MAILBOX_FLAG_EXPUNGED))
            continue;
        if (old.last_updated > before) {
            if (!first || old.last_updated < first)
                first = old.last_updated;
            continue;
        }
        /* Not a change IMAP can see, so the modseq stays. */
        r = unlink_message(mb, old.uid);
        new = old;
        new.system_flags |= MAILBOX_FLAG_UNLINKED;
        if (!r)
            r = store_record(mb, &old, &new);
        if (!r) {
            mailbox_queue_event(mb, "unlink", new.uid);
            count++;
        }
    }
    if (!r && mb->ih.first_expunged != first) {
        mb->ih.first_expunged = first;
        mb->is_changed = 1;
    }
    if (!r)
        r = mailbox_commit(mb);
    if (count_r)
        *count_r = count;
    return r;
}

int mailbox_unlink_record(struct mailbox *mb, uint32_t uid)
{
    struct mailbox_record old, new;
    int r;

    if (mb->lockstate != MBLOCK_EXCLUSIVE)
        return ERR_MAILBOX_NOTLOCKED;
    r = mailbox_find_record(mb, uid, &old);
    if (r)
        return r;
    if (!(old.system_flags & MAILBOX_FLAG_EXPUNGED))
        return ERR_INVALID;
    if (old.system_flags & MAILBOX_FLAG_UNLINKED)
        return 0;

    /* The file goes first: a crash before the record says so leaves an
     * expunged record whose file is missing, which cyr_expire and
     * reconstruct both accept. */
    r = unlink_message(mb, old.uid);
    new = old;
    new.system_flags |= MAILBOX_FLAG_UNLINKED;
    if (!r)
        r = store_record(mb, &old, &new);
    if (!r)
        mailbox_queue_event(mb, "unlink", new.uid);
    return r;
}

/* ---------------------------------------------------------------- */
/* Repack                                                             */

struct repack {
    struct mappedfile *index;   /* cyrus.index.NEW, locked */
    struct mappedfile *cache;   /* cyrus.cache.NEW */
    struct buf ibuf;            /* index bytes not yet written */
    size_t ioff;                /* where ibuf goes */
    struct mailbox_index_header ih;
};

static int repack_flush(struct repack *rp, int force)
{
    int r;

    if (!rp->ibuf.len || (!force && rp->ibuf.len < REPACK_FLUSH))
        return 0;
    r = mappedfile_pwrite(rp->index, rp->ibuf.s, rp->ibuf.len, rp->ioff);
    rp->ioff += rp->ibuf.len;
    buf_reset(&rp->ibuf);
    return r;
}

/* Create (empty) and open one of the .NEW files; a leftover from an
 * earlier crashed repack is emptied. */
static int repack_open(struct mailbox *mb, const char *fname,
                       struct mappedfile **mf_r)
{
    struct buf path = BUF_INITIALIZER;
    int r;

    mailbox_file_path(mb, fname, &path);
    r = mappedfile_open(buf_cstring(&path), MAPPEDFILE_RW | MAPPEDFILE_CREATE,
                        mf_r);
    if (!r)
        r = mappedfile_truncate(*mf_r, 0);
    buf_free(&path);
    return r;
}

/* Copy the kept records and their cache records into the new files. */
static int repack_copy(struct mailbox *mb, struct repack *rp)
{
    unsigned char rbuf[INDEX_RECORD_SIZE], chdr[CACHE_HEADER_SIZE];
    struct mailbox_record rec;
    const char *cbase;
    size_t clen;
    uint32_t recno;
    int r;

    cache_header_encode(rp->ih.generation, chdr);
    r = mappedfile_pwrite(rp->cache, chdr, sizeof(chdr), 0);
    rp->ih.cache_size = CACHE_HEADER_SIZE;
    for (recno = 1; !r && recno <= mb->ih.num_records; recno++) {
        r = mailbox_read_record(mb, recno, &rec);
        if (r)
            break;
        if (rec.system_flags & MAILBOX_FLAG_UNLINKED) {
            if (rec.modseq > rp->ih.deletedmodseq)
                rp->ih.deletedmodseq = rec.modseq;
            continue;
        }
        r = cache_record_span(mb, &rec, &cbase, &clen);
        if (!r)
            r = mappedfile_pwrite(rp->cache, cbase, clen,
                                  (size_t)rp->ih.cache_size);
        if (r)
            break;
        rec.cache_offset = rp->ih.cache_size;
        rp->ih.cache_size += clen;
        rec.recno = ++rp->ih.num_records;
        index_count_record(&rp->ih, &rec, 1);
        index_record_encode(&rec, rbuf);
        buf_appendmap(&rp->ibuf, rbuf, sizeof(rbuf));
        r = repack_flush(rp, 0);
    }
    return r;
}

/* Make the new files durable, then rename the cache and the index into
 * place (in that order: see the design comment) and switch to them. */
static int repack_install(struct mailbox *mb, struct repack *rp)
{
    struct buf path = BUF_INITIALIZER;
    unsigned char hdr[INDEX_HEADER_SIZE];
    int r;

    index_header_encode(&rp->ih, hdr);
    r = mappedfile_pwrite(rp->index, hdr, sizeof(hdr), 0);
    if (!r)
        r = mappedfile_sync(rp->index);
    if (!r)
        r = mappedfile_sync(rp->cache);
    mailbox_file_path(mb, MAILBOX_FNAME_CACHE, &path);
    if (!r)
        r = mappedfile_rename(rp->cache, buf_cstring(&path));
    buf_free(&path);
    if (r)
        return r;
    mailbox_run_test_hook("repack:before-index-rename");
    r = index_swap_in(mb, &rp->index);
    if (r)
        return r;
    mappedfile_close(&mb->cache);
    mb->cache = rp->cache;
    rp->cache = NULL;
    mb->ih = rp->ih;
    return 0;
}

int mailbox_repack(struct mailbox *mb)
{
    struct repack rp;
    int r;

    if (mb->lockstate != MBLOCK_EXCLUSIVE)
        return ERR_MAILBOX_NOTLOCKED;
    if (mb->txn)
        return ERR_LOCKED;
    r = mailbox_commit(mb);
    if (r)
        return r;

    memset(&rp, 0, sizeof(rp));
    rp.ioff = INDEX_HEADER_SIZE;
    rp.ih = mb->ih;
    rp.ih.generation = mb->ih.generation + 1;
    rp.ih.num_records = 0;
    rp.ih.exists = rp.ih.deleted = rp.ih.answered = rp.ih.flagged = 0;
    rp.ih.quota_used = 0;
    r = repack_open(mb, MAILBOX_FNAME_INDEX ".NEW", &rp.index);
    if (!r)
        r = mappedfile_lock(rp.index, MAPPEDFILE_EXCLUSIVE, NULL);
    if (!r)
        r = repack_open(mb, MAILBOX_FNAME_CACHE ".NEW", &rp.cache);
    if (!r)
        r = repack_copy(mb, &rp);
    if (!r)
        r = repack_flush(&rp, 1);
    if (r)
        goto done;

    r = repack_install(mb, &rp);
    if (r)
        goto done;
    xsyslog(LOG_INFO, "mailbox repacked", "path=%s records=%u",
            mb->path, mb->ih.num_records);
    mailbox_queue_event(mb, "repack", 0);
    r = mailbox_commit(mb);

done:
    mappedfile_close(&rp.index);
    mappedfile_close(&rp.cache);
    buf_free(&rp.ibuf);
    return r;
}

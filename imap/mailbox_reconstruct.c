/* Rebuilding a mailbox's metadata files from its message files and its
 * mailboxes.db entry: the engine of the reconstruct tool. */
/* Columba is free software; see COPYING for the licence. */

/*
 * How a reconstruct proceeds
 * ==========================
 * 1. An ordinary exclusive open is tried and closed first, so whatever a
 *    crashed writer left (a half-done repack, bytes past the committed
 *    data, DIRTY counts) is recovered the usual way before we judge.
 * 2. cyrus.header is locked exclusively (recreated first when missing
 *    or unreadable) and kept locked to the end.  Every reader and writer
 *    takes that lock before the index lock, so nobody sees the files
 *    while they are rebuilt.  A header rewrite replaces the file, so the
 *    lock is taken again on the new file before the old one is let go.
 * 3. The old cyrus.index and cyrus.cache are read whole.  A damaged
 *    index header does not lose the records: every record is salvaged
 *    whose own CRC holds and whose UID is above the previous one.  A
 *    cache whose header or generation is wrong is not used at all.
 * 4. Records and message files are merged in UID order (see
 *    mailbox_reconstruct_spec in the header for what each case gives).
 * 5. Only when something was fixed are new files written, in the order
 *    a repack uses: cyrus.index.NEW written and synced, cyrus.cache
 *    replaced, then cyrus.index.NEW renamed into place.  The generation
 *    goes up by one, so a crash between the two renames is finished by
 *    the next opener's roll forward.
 */

#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/error.h"
#include "lib/log.h"
#include "lib/util.h"
#include "lib/xmalloc.h"

#include "imap/mailbox.h"
#include "imap/mailbox_internal.h"
#include "imap/mailbox_reconstruct.h"
#include "imap/message.h"

/* Largest metadata file read into memory (index of 2^32 records). */
#define RECON_MAX_FILE ((size_t)1 << 40)

/* One record of the rebuilt index. */
struct rrec {
    struct mailbox_record rec;
    uint32_t file_uid;          /* name of its file, 0: none */
    const char *cache;          /* intact old cache record, or NULL */
    size_t cachelen;
    int is_new;                 /* from a file without a record */
    int check_content;          /* re-read the file and compare */
};

struct recon {
    struct mailbox *mb;
    const struct mailbox_reconstruct_spec *spec;
    unsigned flags;
    mailbox_reconstruct_report_t *report;
    void *rock;
    unsigned nfixes;
    int header_recreated;

    struct buf oindex;          /* old cyrus.index bytes */
    struct buf ocache;          /* old cyrus.cache bytes */
    int has_oih;                /* oih decoded from a good header */
    struct mailbox_index_header oih;
    int cache_ok;
    size_t cache_valid;         /* usable bytes of ocache */
    uint32_t cache_gen;

    struct mailbox_record *orecs;   /* old records, UID order */
    size_t norecs;
    uint32_t *files;            /* message file UIDs, ascending */
    size_t nfiles;

    struct rrec *recs;          /* the new index, UID order */
    size_t nrecs, recs_alloc;
    uint64_t dropped_modseq;    /* highest modseq of records dropped */
    int dropped_missing;        /* records removed for missing files */

    struct mailbox_index_header ih;
    struct buf nindex, ncache;
};

/* Record one fix: count it, log it, tell the caller. */
static void fix(struct recon *rc, uint32_t uid, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fix(struct recon *rc, uint32_t uid, const char *fmt, ...)
{
    struct buf what = BUF_INITIALIZER;
    va_list ap;

    va_start(ap, fmt);
    buf_vprintf(&what, fmt, ap);
    va_end(ap);
    rc->nfixes++;
    xsyslog(LOG_NOTICE, "mailbox reconstruct fixed", "mailbox=%s uid=%u "
            "fix=\"%s\"", log_escape(rc->spec->name, 0), uid,
            buf_cstring(&what));
    if (rc->report)
        rc->report(rc->spec->name, uid, buf_cstring(&what), rc->rock);
    buf_free(&what);
}

static int cmp_uid32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

static int cmp_rrec(const void *a, const void *b)
{
    return cmp_uid32(&((const struct rrec *)a)->rec.uid,
                     &((const struct rrec *)b)->rec.uid);
}

static struct rrec *add_rrec(struct recon *rc)
{
    if (rc->nrecs == rc->recs_alloc) {
        rc->recs_alloc = rc->recs_alloc ? 2 * rc->recs_alloc : 64;
        rc->recs = xreallocarray(rc->recs, rc->recs_alloc,
                                 sizeof(*rc->recs));
    }
    memset(&rc->recs[rc->nrecs], 0, sizeof(rc->recs[0]));
    return &rc->recs[rc->nrecs++];
}

/* ---------------------------------------------------------------- */
/* cyrus.header                                                       */

/* Lock the header now at the path, then let go of the old descriptor
 * (a rewrite replaced the file, and our lock was on the old one). */
static int relock_header(struct recon *rc)
{
    int oldfd = rc->mb->header_fd;
    int r = mailbox_header_lock(rc->mb, 1);

    if (oldfd >= 0)
        close(oldfd);
    return r;
}

/* Fill the header fields of rc->mb from the spec and write them. */
static int header_recreate(struct recon *rc, const char *why)
{
    struct mailbox *mb = rc->mb;
    int i, r;

    if (!rc->spec->uniqueid)
        return ERR_INVALID;
    free(mb->name);
    free(mb->uniqueid);
    free(mb->acl);
    for (i = 0; i < MAILBOX_MAX_USERFLAGS; i++) {
        free(mb->flagname[i]);
        mb->flagname[i] = NULL;
    }
    mb->name = xstrdup(rc->spec->name);
    mb->uniqueid = xstrdup(rc->spec->uniqueid);
    mb->acl = xstrdup(rc->spec->acl ? rc->spec->acl : "");
    mb->type = rc->spec->type;
    r = util_mkdir_p(mailbox_file_dir(mb, MAILBOX_FNAME_HEADER));
    if (!r)
        r = mailbox_header_write(mb);
    if (r)
        return r;
    rc->header_recreated = 1;
    fix(rc, 0, "cyrus.header %s: recreated", why);
    return relock_header(rc);
}

/* Replace string field *field with `want` when they differ. */
static int header_field_differs(char **field, const char *want)
{
    if (!want || (*field && !strcmp(*field, want)))
        return 0;
    free(*field);
    *field = xstrdup(want);
    return 1;
}

/* Make name, unique id, type and ACL agree with mailboxes.db. */
static int header_check(struct recon *rc)
{
    struct mailbox *mb = rc->mb;
    const struct mailbox_reconstruct_spec *spec = rc->spec;
    int changed = 0;

    if (header_field_differs(&mb->name, spec->name)) {
        fix(rc, 0, "name in cyrus.header corrected");
        changed = 1;
    }
    if (header_field_differs(&mb->uniqueid, spec->uniqueid)) {
        fix(rc, 0, "unique id in cyrus.header set to %s", spec->uniqueid);
        changed = 1;
    }
    if (mb->type != spec->type) {
        mb->type = spec->type;
        fix(rc, 0, "type in cyrus.header set to %s",
            mailbox_type_name(spec->type));
        changed = 1;
    }
    if (header_field_differs(&mb->acl, spec->acl)) {
        fix(rc, 0, "ACL in cyrus.header refreshed from mailboxes.db");
        changed = 1;
    }
    if (!changed)
        return 0;
    return mailbox_header_write(mb) ? ERR_IO : relock_header(rc);
}

static int header_step(struct recon *rc)
{
    int r = mailbox_header_lock(rc->mb, 1);

    if (r == ERR_MAILBOX_NONEXISTENT) {
        struct stat sb;

        return header_recreate(rc, stat(rc->mb->path, &sb) == 0
                                   ? "missing" : "and directory missing");
    }
    if (r == ERR_CORRUPT)
        return header_recreate(rc, "damaged");
    if (r)
        return r;
    return header_check(rc);
}

/* ---------------------------------------------------------------- */
/* Old index and cache                                                */

/* Read metadata file `fname` into `out`; 1 when present, 0 when
 * missing, or a negated error. */
static int read_meta(struct recon *rc, const char *fname, struct buf *out)
{
    struct buf path = BUF_INITIALIZER;
    int r;

    mailbox_file_path(rc->mb, fname, &path);
    r = util_read_file(buf_cstring(&path), out, RECON_MAX_FILE);
    buf_free(&path);
    if (r == ERR_NOTFOUND)
        return 0;
    return r ? -r : 1;
}

/* Decode the old records: the committed ones under a good header, else
 * every record that still checks out. */
static void load_records(struct recon *rc)
{
    const unsigned char *base = (const unsigned char *)rc->oindex.s;
    size_t avail = rc->oindex.len > INDEX_HEADER_SIZE
                   ? (rc->oindex.len - INDEX_HEADER_SIZE) / INDEX_RECORD_SIZE
                   : 0;
    size_t n = rc->has_oih ? rc->oih.num_records : avail, i;
    uint32_t uidnext = rc->has_oih ? rc->oih.uidnext : UINT32_MAX;
    uint32_t last = 0;
    struct mailbox_record rec;

    rc->orecs = xzmalloc((n ? n : 1) * sizeof(*rc->orecs));
    for (i = 0; i < n && i < avail; i++) {
        const unsigned char *p = base + INDEX_HEADER_SIZE
                                 + i * INDEX_RECORD_SIZE;

        if (index_record_decode(rc->mb->path, p, (uint32_t)i + 1, uidnext,
                                &rec) || rec.uid <= last) {
            fix(rc, mb_get32(p), "index record %zu damaged: dropped", i + 1);
            continue;
        }
        last = rec.uid;
        rc->orecs[rc->norecs++] = rec;
    }
}

static int load_index(struct recon *rc)
{
    struct buf path = BUF_INITIALIZER;
    int r = read_meta(rc, MAILBOX_FNAME_INDEX, &rc->oindex);

    if (r < 0)
        return -r;
    if (r == 0) {
        if (!rc->header_recreated)
            fix(rc, 0, "cyrus.index missing: rebuilt");
        return 0;
    }
    mailbox_file_path(rc->mb, MAILBOX_FNAME_INDEX, &path);
    r = index_header_decode(buf_cstring(&path),
                            (const unsigned char *)rc->oindex.s,
                            rc->oindex.len, &rc->oih);
    buf_free(&path);
    if (r == ERR_DB_BADFORMAT)
        return r;
    rc->has_oih = !r;
    if (r)
        fix(rc, 0, "cyrus.index header damaged: rebuilt");
    load_records(rc);
    return 0;
}

static int load_cache(struct recon *rc)
{
    struct buf path = BUF_INITIALIZER;
    int r = read_meta(rc, MAILBOX_FNAME_CACHE, &rc->ocache);

    if (r < 0)
        return -r;
    if (r == 0) {
        if (rc->norecs)
            fix(rc, 0, "cyrus.cache missing: rebuilt");
        return 0;
    }
    mailbox_file_path(rc->mb, MAILBOX_FNAME_CACHE, &path);
    r = cache_header_check(buf_cstring(&path), rc->ocache.s, rc->ocache.len,
                           &rc->cache_gen);
    buf_free(&path);
    if (r == ERR_DB_BADFORMAT)
        return r;
    rc->cache_ok = !r && (!rc->has_oih
                          || rc->cache_gen == rc->oih.generation);
    rc->cache_valid = rc->ocache.len;
    if (rc->has_oih && rc->oih.cache_size < rc->cache_valid)
        rc->cache_valid = (size_t)rc->oih.cache_size;
    if (!rc->cache_ok && rc->norecs)
        fix(rc, 0, "cyrus.cache damaged: rebuilt");
    return 0;
}

/* ---------------------------------------------------------------- */
/* Message files                                                      */

/* Is `name` "<uid>." with a UID in range?  Sets *uid_r. */
static int message_file_uid(const char *name, uint32_t *uid_r)
{
    const char *end;

    if (parse_uint32(name, &end, uid_r) || *uid_r == 0
        || strcmp(end, ".") || name[0] == '0')
        return 0;
    return 1;
}

static int scan_files(struct recon *rc)
{
    size_t alloc = 0;
    struct dirent *de;
    uint32_t uid;
    DIR *dir;

    dir = opendir(rc->mb->path);
    if (!dir) {
        xsyslog_syscall("opendir", "path", rc->mb->path);
        return errno == EACCES ? ERR_PERMISSION : ERR_IO;
    }
    while ((de = readdir(dir))) {
        if (!message_file_uid(de->d_name, &uid))
            continue;
        if (rc->nfiles == alloc) {
            alloc = alloc ? 2 * alloc : 64;
            rc->files = xreallocarray(rc->files, alloc, sizeof(uint32_t));
        }
        rc->files[rc->nfiles++] = uid;
    }
    closedir(dir);
    if (rc->nfiles)
        qsort(rc->files, rc->nfiles, sizeof(uint32_t), cmp_uid32);
    return 0;
}

/* stat() message file `uid`: 1 when it is a regular file, 0 if not. */
static int stat_message(struct recon *rc, uint32_t uid, struct stat *sb)
{
    struct buf path = BUF_INITIALIZER;
    int found;

    mailbox_message_path(rc->mb, uid, &path);
    found = lstat(buf_cstring(&path), sb) == 0 && S_ISREG(sb->st_mode);
    buf_free(&path);
    return found;
}

/* ---------------------------------------------------------------- */
/* Merging records and files                                          */

/* A record whose message file is present. */
static void merge_both(struct recon *rc, const struct mailbox_record *old)
{
    struct rrec *rr;
    struct stat sb;
    size_t len;

    if (old->system_flags & MAILBOX_FLAG_UNLINKED) {
        /* Expunged and unlinked, yet a file came back: it is not the
         * message any client knows under this UID, so it goes. */
        struct buf path = BUF_INITIALIZER;

        mailbox_message_path(rc->mb, old->uid, &path);
        if (unlink(buf_cstring(&path)) == 0)
            fix(rc, old->uid, "file of an unlinked message removed");
        buf_free(&path);
        if (old->modseq > rc->dropped_modseq)
            rc->dropped_modseq = old->modseq;
        return;
    }
    rr = add_rrec(rc);
    rr->rec = *old;
    rr->file_uid = old->uid;
    if (!stat_message(rc, old->uid, &sb) || (uint64_t)sb.st_size != old->size)
        rr->check_content = 1;
    if (rc->flags & MAILBOX_RECONSTRUCT_GUID)
        rr->check_content = 1;
    if (rc->cache_ok
        && !cache_record_check(rc->ocache.s, rc->cache_valid,
                               old->cache_offset, old->uid, &len)) {
        rr->cache = rc->ocache.s + old->cache_offset;
        rr->cachelen = len;
    }
    else if (rc->cache_ok) {
        fix(rc, old->uid, "cache record damaged: rebuilt from the message");
    }
}

/* A record without its message file. */
static void merge_record_only(struct recon *rc,
                              const struct mailbox_record *old)
{
    if (old->modseq > rc->dropped_modseq)
        rc->dropped_modseq = old->modseq;
    /* Nothing lost when the message had already left the mailbox: an
     * immediate expunge or cyr_expire removes the file before marking
     * the record unlinked, and a crash in between leaves just this. */
    if (old->system_flags & (MAILBOX_FLAG_UNLINKED | MAILBOX_FLAG_EXPUNGED))
        return;
    rc->dropped_missing = 1;
    fix(rc, old->uid, "message file missing: record removed");
}

/* A message file without a record: added under its own UID when that
 * UID was never handed out, else under a new one (renamed later). */
static void merge_file_only(struct recon *rc, uint32_t uid, uint32_t limit)
{
    struct rrec *rr = add_rrec(rc);
    struct stat sb;
    time_t now = time(NULL);

    rr->is_new = 1;
    rr->file_uid = uid;
    rr->rec.uid = uid >= limit ? uid : 0;
    rr->rec.internaldate = stat_message(rc, uid, &sb) ? sb.st_mtime : now;
    rr->rec.savedate = now;
    rr->rec.last_updated = now;
}

/* Walk the old records and the files together in UID order. */
static void merge(struct recon *rc)
{
    uint32_t limit = rc->has_oih ? rc->oih.uidnext : 0;
    size_t i = 0, j = 0;

    while (i < rc->norecs || j < rc->nfiles) {
        uint32_t ru = i < rc->norecs ? rc->orecs[i].uid : UINT32_MAX;
        uint32_t fu = j < rc->nfiles ? rc->files[j] : UINT32_MAX;

        if (i < rc->norecs && j < rc->nfiles && ru == fu) {
            merge_both(rc, &rc->orecs[i++]);
            j++;
        }
        else if (i < rc->norecs && ru < fu) {
            merge_record_only(rc, &rc->orecs[i++]);
        }
        else {
            merge_file_only(rc, rc->files[j++], limit);
        }
    }
}

/* Give the files that need one a new UID above every other, renaming
 * them, then sort the records into UID order. */
static int assign_uids(struct recon *rc)
{
    struct buf from = BUF_INITIALIZER, to = BUF_INITIALIZER;
    uint32_t next = rc->has_oih ? rc->oih.uidnext : 1;
    size_t i;
    int r = 0;

    for (i = 0; i < rc->nrecs; i++) {
        if (rc->recs[i].rec.uid >= next)
            next = rc->recs[i].rec.uid + 1;
    }
    for (i = 0; !r && i < rc->nrecs; i++) {
        struct rrec *rr = &rc->recs[i];

        if (!rr->is_new)
            continue;
        if (rr->rec.uid) {
            fix(rc, rr->rec.uid, "message file without a record: added");
            continue;
        }
        if (next == UINT32_MAX) {
            r = ERR_TOOBIG;
            break;
        }
        mailbox_message_path(rc->mb, rr->file_uid, &from);
        mailbox_message_path(rc->mb, next, &to);
        if (rename(buf_cstring(&from), buf_cstring(&to)) < 0) {
            xsyslog_syscall("rename", "path", buf_cstring(&from));
            r = ERR_IO;
            break;
        }
        fix(rc, next, "message file %u. without a record: added as "
            "uid %u", rr->file_uid, next);
        rr->rec.uid = next++;
        rr->file_uid = rr->rec.uid;
    }
    buf_free(&from);
    buf_free(&to);
    if (rc->nrecs)
        qsort(rc->recs, rc->nrecs, sizeof(*rc->recs), cmp_rrec);
    rc->ih.uidnext = next;
    return r;
}

/* ---------------------------------------------------------------- */
/* Building the new files                                             */

/* Map message file `uid` read-only into *base_r / *len_r. */
static int map_message(struct recon *rc, uint32_t uid, void **map_r,
                       size_t *len_r)
{
    struct buf path = BUF_INITIALIZER;
    struct stat sb;
    int fd = -1, r;

    *map_r = NULL;
    *len_r = 0;
    mailbox_message_path(rc->mb, uid, &path);
    r = util_open_nofollow(buf_cstring(&path), O_RDONLY, 0, &fd);
    if (!r && fstat(fd, &sb) < 0) {
        xsyslog_syscall("fstat", "path", buf_cstring(&path));
        r = ERR_IO;
    }
    if (!r && (uint64_t)sb.st_size >= UINT32_MAX)
        r = ERR_TOOBIG;
    if (!r && sb.st_size > 0) {
        *map_r = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd,
                      0);
        if (*map_r == MAP_FAILED) {
            *map_r = NULL;
            xsyslog_syscall("mmap", "path", buf_cstring(&path));
            r = ERR_IO;
        }
        else {
            *len_r = (size_t)sb.st_size;
        }
    }
    if (fd >= 0)
        close(fd);
    buf_free(&path);
    return r;
}

/* Parse the message file of `rr`, refresh what the record takes from
 * it (a changed file gets a new modseq), and append its cache record. */
static int rebuild_from_file(struct recon *rc, struct rrec *rr)
{
    struct mailbox_record fresh = rr->rec;
    struct message *msg = NULL;
    void *map = NULL;
    size_t len = 0;
    int r;

    r = map_message(rc, rr->file_uid, &map, &len);
    if (!r)
        r = message_parse(map ? map : "", len, &msg);
    if (!r)
        r = append_fill_record(&fresh, msg, map ? map : "", len);
    if (r)
        goto done;

    if (rr->is_new) {
        fresh.modseq = ++rc->ih.highestmodseq;
        fresh.createdmodseq = fresh.modseq;
    }
    else if (fresh.size != rr->rec.size
             || memcmp(fresh.guid, rr->rec.guid, MAILBOX_GUID_SIZE)) {
        fix(rc, fresh.uid, "message file changed (%s): record updated",
            fresh.size != rr->rec.size ? "size differs" : "GUID mismatch");
        fresh.modseq = ++rc->ih.highestmodseq;
        fresh.last_updated = time(NULL);
    }
    fresh.cache_offset = rc->ncache.len;
    cache_build_record(msg, fresh.uid, &rc->ncache);
    rr->rec = fresh;

done:
    if (r)
        xsyslog(LOG_ERR, "mailbox reconstruct cannot read message",
                "mailbox=%s uid=%u error=%s", log_escape(rc->spec->name, 0),
                rr->file_uid, error_message(r));
    message_free(&msg);
    if (map)
        munmap(map, len);
    return r;
}

/* Clear user flag bits that name no flag in cyrus.header. */
static void check_user_flags(struct recon *rc, struct mailbox_record *rec)
{
    unsigned i;
    int cleared = 0;

    for (i = 0; i < MAILBOX_MAX_USERFLAGS; i++) {
        uint32_t bit = 1u << (i % 32);

        if ((rec->user_flags[i / 32] & bit) && !rc->mb->flagname[i]) {
            rec->user_flags[i / 32] &= ~bit;
            cleared = 1;
        }
    }
    if (cleared)
        fix(rc, rec->uid, "keywords without a name in cyrus.header cleared");
}

/* The index header fields that do not come from counting. */
static void init_header(struct recon *rc)
{
    struct mailbox_index_header *ih = &rc->ih;
    uint64_t maxmodseq = 0;
    uint32_t gen = rc->has_oih ? rc->oih.generation : 0;
    time_t now = time(NULL);
    size_t i;

    if (rc->has_oih)
        *ih = rc->oih;
    else
        memset(ih, 0, sizeof(*ih));
    ih->version = MAILBOX_INDEX_VERSION;
    ih->format_flags = 0;
    ih->generation = (rc->cache_gen > gen ? rc->cache_gen : gen) + 1;
    if (!rc->has_oih) {
        ih->uidvalidity = rc->spec->uidvalidity ? rc->spec->uidvalidity
                          : now > 0 && (uint64_t)now < UINT32_MAX
                            ? (uint32_t)now : 1;
        ih->last_appenddate = now;
    }
    for (i = 0; i < rc->norecs; i++) {
        if (rc->orecs[i].modseq > maxmodseq)
            maxmodseq = rc->orecs[i].modseq;
    }
    if (maxmodseq > ih->highestmodseq) {
        if (rc->has_oih && !rc->nfixes)
            fix(rc, 0, "HIGHESTMODSEQ below a record's modseq: raised");
        ih->highestmodseq = maxmodseq;
    }
    if (!ih->highestmodseq)
        ih->highestmodseq = 1;
    if (rc->dropped_modseq > ih->deletedmodseq)
        ih->deletedmodseq = rc->dropped_modseq;
    if (rc->dropped_missing)
        ih->deletedmodseq = ++ih->highestmodseq;
}

/* Produce the new records and cache, and count them. */
static int assemble(struct recon *rc)
{
    unsigned char chdr[CACHE_HEADER_SIZE];
    size_t i;
    int r = 0;

    cache_header_encode(rc->ih.generation, chdr);
    buf_setmap(&rc->ncache, (const char *)chdr, sizeof(chdr));
    rc->ih.num_records = 0;
    rc->ih.exists = rc->ih.deleted = rc->ih.answered = rc->ih.flagged = 0;
    rc->ih.quota_used = 0;
    rc->ih.first_expunged = 0;
    for (i = 0; !r && i < rc->nrecs; i++) {
        struct rrec *rr = &rc->recs[i];

        if (rr->check_content || !rr->cache) {
            r = rebuild_from_file(rc, rr);
        }
        else {
            rr->rec.cache_offset = rc->ncache.len;
            buf_appendmap(&rc->ncache, rr->cache, rr->cachelen);
        }
        if (r)
            break;
        check_user_flags(rc, &rr->rec);
        rr->rec.recno = ++rc->ih.num_records;
        index_count_record(&rc->ih, &rr->rec, 1);
        if ((rr->rec.system_flags & MAILBOX_FLAG_EXPUNGED)
            && (!rc->ih.first_expunged
                || rr->rec.last_updated < rc->ih.first_expunged))
            rc->ih.first_expunged = rr->rec.last_updated;
    }
    rc->ih.cache_size = rc->ncache.len;
    return r;
}

/* With nothing else wrong, do the old header's counts hold? */
static void compare_counts(struct recon *rc)
{
    const struct mailbox_index_header *o = &rc->oih, *n = &rc->ih;

    if (!rc->has_oih || rc->nfixes)
        return;
    if (o->exists != n->exists || o->deleted != n->deleted
        || o->answered != n->answered || o->flagged != n->flagged
        || o->quota_used != n->quota_used || o->uidnext != n->uidnext
        || (o->format_flags & MAILBOX_INDEX_DIRTY))
        fix(rc, 0, "index counts or quota usage wrong: recomputed");
}

/* Write `len` bytes to a new file at `path` and fsync it. */
static int write_synced(const char *path, const char *data, size_t len)
{
    size_t done = 0;
    int fd, r = 0;

    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
              0600);
    if (fd < 0) {
        xsyslog_syscall("open", "path", path);
        return errno == EACCES ? ERR_PERMISSION : ERR_IO;
    }
    while (!r && done < len) {
        ssize_t n = write(fd, data + done, len - done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            xsyslog_syscall("write", "path", path);
            r = ERR_IO;
        }
        else {
            done += (size_t)n;
        }
    }
    if (!r && fsync(fd) < 0) {
        xsyslog_syscall("fsync", "path", path);
        r = ERR_IO;
    }
    close(fd);
    return r;
}

/* Install the new files in repack order (see the design comment). */
static int write_files(struct recon *rc)
{
    struct buf newpath = BUF_INITIALIZER, path = BUF_INITIALIZER;
    unsigned char block[INDEX_RECORD_SIZE];
    size_t i;
    int r;

    index_header_encode(&rc->ih, block);
    buf_setmap(&rc->nindex, (const char *)block, INDEX_HEADER_SIZE);
    for (i = 0; i < rc->nrecs; i++) {
        index_record_encode(&rc->recs[i].rec, block);
        buf_appendmap(&rc->nindex, (const char *)block, sizeof(block));
    }

    /* A lost metapartition directory comes back with its files. */
    r = util_mkdir_p(mailbox_file_dir(rc->mb, MAILBOX_FNAME_INDEX));
    if (!r)
        r = util_mkdir_p(mailbox_file_dir(rc->mb, MAILBOX_FNAME_CACHE));
    mailbox_file_path(rc->mb, MAILBOX_FNAME_INDEX ".NEW", &newpath);
    if (!r)
        r = write_synced(buf_cstring(&newpath), rc->nindex.s,
                         rc->nindex.len);
    mailbox_file_path(rc->mb, MAILBOX_FNAME_CACHE, &path);
    if (!r)
        r = util_write_file_atomic(buf_cstring(&path), rc->ncache.s,
                                   rc->ncache.len);
    mailbox_file_path(rc->mb, MAILBOX_FNAME_INDEX, &path);
    if (!r && rename(buf_cstring(&newpath), buf_cstring(&path)) < 0) {
        xsyslog_syscall("rename", "path", buf_cstring(&newpath));
        r = ERR_IO;
    }
    if (!r)
        r = mailbox_fsync_path(mailbox_file_dir(rc->mb, MAILBOX_FNAME_INDEX),
                               1);
    if (r)
        unlink(buf_cstring(&newpath));
    buf_free(&newpath);
    buf_free(&path);
    return r;
}

/* ---------------------------------------------------------------- */
/* The whole run                                                      */

static void recon_fini(struct recon *rc)
{
    if (rc->mb) {
        if (rc->mb->header_fd >= 0)
            close(rc->mb->header_fd);
        rc->mb->header_fd = -1;
        mailbox_close(&rc->mb);
    }
    buf_free(&rc->oindex);
    buf_free(&rc->ocache);
    buf_free(&rc->nindex);
    buf_free(&rc->ncache);
    free(rc->orecs);
    free(rc->files);
    free(rc->recs);
}

int mailbox_reconstruct(const char *path,
                        const struct mailbox_reconstruct_spec *spec,
                        unsigned flags, mailbox_reconstruct_report_t *report,
                        void *rock, unsigned *nfixes_r)
{
    struct mailbox *probe = NULL;
    struct recon rc;
    int r;

    if (nfixes_r)
        *nfixes_r = 0;
    if (!path || !*path || !spec || !spec->name)
        return ERR_INVALID;
    memset(&rc, 0, sizeof(rc));
    rc.spec = spec;
    rc.flags = flags;
    rc.report = report;
    rc.rock = rock;

    /* Step 1: let the ordinary recovery run first. */
    if (!mailbox_open_iwrite(path, &probe))
        mailbox_close(&probe);

    rc.mb = xzmalloc(sizeof(*rc.mb));
    mailbox_set_paths(rc.mb, path);
    rc.mb->header_fd = -1;
    r = header_step(&rc);
    if (!r)
        r = load_index(&rc);
    if (!r)
        r = load_cache(&rc);
    if (!r)
        r = scan_files(&rc);
    if (r)
        goto done;
    merge(&rc);
    init_header(&rc);
    r = assign_uids(&rc);
    if (!r)
        r = assemble(&rc);
    if (r)
        goto done;
    compare_counts(&rc);
    if (rc.nfixes)
        r = write_files(&rc);
    if (!r && rc.nfixes)
        xsyslog(LOG_NOTICE, "mailbox reconstructed", "mailbox=%s fixes=%u "
                "records=%u", log_escape(spec->name, 0), rc.nfixes,
                rc.ih.num_records);

done:
    if (r)
        xsyslog(LOG_ERR, "mailbox reconstruct failed", "mailbox=%s error=%s",
                log_escape(spec->name, 0), error_message(r));
    if (nfixes_r)
        *nfixes_r = rc.nfixes;
    recon_fini(&rc);
    return r;
}

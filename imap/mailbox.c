/* Mailboxes on disk: creating, opening, locking, committing and deleting
 * a mailbox, and its header file (name, unique id, type, flags, ACL). */
/* Columba is free software; see COPYING for the licence. */

/*
 * Files of a mailbox
 * ==================
 * A mailbox is a directory.  Each message is one file named "<uid>."
 * (decimal UID and a dot, as in Cyrus), stored in CRLF form.  Three
 * metadata files sit beside them.  All binary integers are big-endian.
 *
 * cyrus.header (text, replaced whole: temp file, fsync, rename)
 * ------------
 *   "Columba mailbox header 1\n"       magic and format version
 *   "name\t<mailbox name>\n"
 *   "uniqueid\t<id>\n"                 128 random bits as 32 hex digits
 *                                      at creation; kept for life (a
 *                                      rename keeps it, a new mailbox of
 *                                      the same name gets a new one)
 *   "type\t<mail|calendar|addressbook|collection|sieve|submission>\n"
 *   "acl\t<ACL string, tabs and all>\n"
 *   "flags\t<flag0> <flag1> ...\n"     user flag names; the position is
 *                                      the bit in a record's user-flag
 *                                      bitmap; "-" marks a free slot
 *   "crc\t<8 hex digits>\n"            CRC-32 of every byte before it
 * Values may not contain CR, LF or NUL; the whole file is at most
 * MAILBOX_MAX_HEADER_FILE bytes.
 *
 * cyrus.index (binary): a 128-byte header, then num_records 128-byte
 * -----------  records in ascending UID order.
 *   header                            record
 *     0  8 magic "ColIndex"             0  4 uid
 *     8  4 version (1)                  4  4 system flags
 *    12  4 generation                   8  8 internal date
 *    16  4 format flags (1 = DIRTY)    16  8 sent date
 *    20  4 header size (128)           24  8 save date
 *    24  4 record size (128)           32  8 last updated
 *    28  4 UIDVALIDITY                 40  8 size
 *    32  4 UIDNEXT                     48  4 header size
 *    36  4 num_records                 52  4 cache version
 *    40  8 HIGHESTMODSEQ               56  8 cache offset
 *    48  4 exists                      64 16 user flags, 4 words; flag
 *    52  4 deleted                           i is bit i%32 of word i/32
 *    56  4 answered                    80  8 modseq
 *    60  4 flagged                     88  8 createdmodseq
 *    64  8 quota used (bytes)          96 20 GUID (SHA-1 of the file)
 *    72  8 last append date           116  8 reserved (zero)
 *    80  8 POP3 last login            124  4 CRC-32 of bytes 0..123
 *    88  8 first expunged
 *    96  8 deleted modseq
 *   104  8 cache size (valid bytes)
 *   112 12 reserved (zero)
 *   124  4 CRC-32 of bytes 0..123
 * The counts cover records without \Expunged; quota used is the sum of
 * their sizes.  First expunged is the oldest last-updated time of a
 * record expunged but not yet unlinked (0: none), for cyr_expire.
 * Deleted modseq is the highest modseq of a record removed by repack:
 * QRESYNC cannot list VANISHED UIDs for modseqs below it.  Both sizes
 * are powers of two dividing 512, so no record or header straddles a
 * disk sector and a single in-place write is not torn.
 *
 * cyrus.cache (binary, append-only between repacks)
 * -----------
 *   header:  0 8 magic "ColCache", 8 4 version (1), 12 4 generation
 *            (equal to the index's), 16 12 reserved, 28 4 CRC-32 of 0..27
 *   records, at the offsets the index records name:
 *            0 4 total length, 4 4 uid, 8 4 field count, then per field
 *            4 field id, 4 length, 4 CRC-32 of the data, data
 *   Fields are enum mailbox_cache_field: ENVELOPE, BODYSTRUCTURE and BODY
 *   as FETCH sends them; SECTIONS, the part tree as a pre-order list of
 *   nodes of six words (header offset, header size, body offset, body
 *   size, subpart count, has-encapsulated-message) where a node is
 *   followed by its encapsulated message's node, then its subparts'; and
 *   the raw lines of the cached header fields From, Sender, Reply-To,
 *   To, Cc, Bcc, Subject, Date, Message-ID, In-Reply-To, References,
 *   Content-Type and List-Id.  Every length is checked against the
 *   record and the record against the cache size before use.
 *
 * Locking
 * -------
 * The order is always: cyrus.header, then cyrus.index; both are fcntl
 * locks, shared for readers, exclusive for writers, and both follow
 * their file when it is replaced by rename.  cyrus.cache is never
 * locked: the index lock covers it.  A session opens a mailbox with
 * mailbox_open_iread(), which locks, re-reads the header when its inode
 * changed, maps cyrus.index and cyrus.cache (mmap, read-only) and copies
 * the index header: that copy is the session's snapshot.  Records and
 * cache are read only under a lock, and only up to the snapshot's
 * num_records and cache size, so what a reader sees is what the last
 * commit wrote.  fcntl locks belong to the process: a process keeps one
 * handle per mailbox.
 *
 * Write order and crashes
 * -----------------------
 * Append: per message, its cache record is appended past the cache
 * size, then its file is written (hard-linked from the staging file
 * when possible); index records go past num_records.  Commit then
 * fdatasyncs the message files (from several threads at once: see
 * imap/mailbox_append.c), fsyncs the directory once, then the cache,
 * the index records, and only then writes the index header with the
 * new num_records, UIDNEXT, counts and cache size, and fsyncs it.  A
 * crash before the header write leaves bytes past num_records and past
 * the cache size that nothing refers to: the next writer truncates
 * them and, since cache bytes come before every file, then removes any
 * "<uid>." at or above UIDNEXT, so the UIDs are reused and reconstruct
 * finds nothing left over.  Before the header write no client was
 * told of them.
 *
 * In-place changes (flags, expunge, unlink): before the first one under
 * an exclusive lock, the header is written with the DIRTY flag and
 * fsynced.  Records are then rewritten in place; at commit the records
 * are fsynced and the header written with exact counts and DIRTY clear.
 * A crash in between leaves DIRTY set: the next writer recounts every
 * count, quota and HIGHESTMODSEQ from the records (readers recount in
 * memory).  A record whose CRC fails is reported as ERR_CORRUPT.
 *
 * Repack writes cyrus.cache.NEW and cyrus.index.NEW with the next
 * generation, fsyncs both, renames the cache, then the index.  A crash
 * between the renames leaves an index of generation g with a cache of
 * g+1; the next opener finds cyrus.index.NEW of generation g+1 and
 * renames it into place (roll forward).  The new index is locked before
 * it is renamed, so nobody sees it unlocked.
 *
 * Metapartition
 * -------------
 * With metapartition-<name> and metapartition_files set, the files
 * listed there (cyrus.header, cyrus.index, cyrus.cache and their .NEW
 * companions) live in the same relative directory below the
 * metapartition; message files stay in the data directory.  Callers
 * name a mailbox by its data directory only: the metadata directory is
 * derived from it at open (mboxname_datapath_to_metadir()).
 *
 * Quota
 * -----
 * The index header's quota_used and exists cover the non-expunged
 * records.  Each commit notes how far they moved since the exclusive
 * lock was taken; when the locks are released the sum goes to the
 * mailbox's quota root, so appends, expunges of either mode and
 * unexpunges keep the root right.  Whole-mailbox changes (create,
 * delete, rename) are imap/mboxlist's to account.
 *
 * Stable ids
 * ----------
 * The mailbox's uniqueid never changes.  A message's GUID is the SHA-1
 * of its bytes, the key of single-instance storage; its JMAP Email id is
 * "M" plus the first 24 hex digits of the GUID, shared by copies of the
 * same message.  A record's createdmodseq (the modseq of its append)
 * together with the uniqueid and UID names the copy in this mailbox,
 * and tells JMAP's changes calls "created" from "updated".
 */

#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "lib/cyr_lock.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/util.h"
#include "lib/xmalloc.h"

#include "imap/annotate.h"
#include "imap/mailbox.h"
#include "imap/mailbox_internal.h"
#include "imap/mboxname.h"
#include "imap/quota.h"

#define HEADER_MAGIC "Columba mailbox header"
#define HEADER_CRCLINE_LEN 13   /* "crc\t" 8 hex digits "\n" */

static int is_quota_tracked = 1;
static mailbox_change_hook_t *change_hook;
static void *change_hook_rock;
static void (*test_hook)(const char *point);

static const char *const type_names[MAILBOX_TYPE_COUNT_] = {
    "mail", "calendar", "addressbook", "collection", "sieve", "submission"
};

/* ---------------------------------------------------------------- */
/* Small helpers                                                      */

uint32_t mailbox_crc32(const void *p, size_t len)
{
    const Bytef *b = p;
    uLong crc = crc32(0L, Z_NULL, 0);

    while (len > 0) {
        uInt n = len > 0x40000000u ? 0x40000000u : (uInt)len;

        crc = crc32(crc, b, n);
        b += n;
        len -= n;
    }
    return (uint32_t)crc;
}

void mailbox_set_change_hook(mailbox_change_hook_t *hook, void *rock)
{
    change_hook = hook;
    change_hook_rock = rock;
}

void mailbox_set_test_hook(void (*hook)(const char *point))
{
    test_hook = hook;
}

void mailbox_run_test_hook(const char *point)
{
    if (test_hook)
        test_hook(point);
}

void mailbox_queue_event(struct mailbox *mb, const char *event,
                         uint32_t uid)
{
    if (!change_hook)
        return;
    if (mb->nevents == mb->events_alloc) {
        mb->events_alloc = mb->events_alloc ? mb->events_alloc * 2 : 16;
        mb->events = xreallocarray(mb->events, mb->events_alloc,
                                   sizeof(*mb->events));
    }
    mb->events[mb->nevents].event = event;
    mb->events[mb->nevents].uid = uid;
    mb->nevents++;
}

/* Tell the hook about every queued change, now that they are durable. */
static void flush_events(struct mailbox *mb)
{
    size_t i;

    for (i = 0; i < mb->nevents && change_hook; i++)
        change_hook(mb->events[i].event, mb->name, mb->uniqueid,
                    mb->events[i].uid, change_hook_rock);
    mb->nevents = 0;
}

const char *mailbox_type_name(enum mailbox_type type)
{
    if ((unsigned)type >= MAILBOX_TYPE_COUNT_)
        return "unknown";
    return type_names[type];
}

int mailbox_type_parse(const char *name, enum mailbox_type *type_r)
{
    int i;

    for (i = 0; name && i < MAILBOX_TYPE_COUNT_; i++) {
        if (!strcmp(name, type_names[i])) {
            *type_r = (enum mailbox_type)i;
            return 0;
        }
    }
    return ERR_INVALID;
}

void mailbox_set_paths(struct mailbox *mb, const char *path)
{
    struct buf meta = BUF_INITIALIZER;

    free(mb->path);
    free(mb->metapath);
    mb->path = xstrdup(path);
    mb->metapath = NULL;
    if (!mboxname_datapath_to_metadir(path, &meta)
        && strcmp(buf_cstring(&meta), path))
        mb->metapath = buf_release(&meta);
    buf_free(&meta);
}

const char *mailbox_file_dir(const struct mailbox *mb, const char *fname)
{
    if (mb->metapath && mboxname_is_metafile(fname))
        return mb->metapath;
    return mb->path;
}

void mailbox_file_path(const struct mailbox *mb, const char *fname,
                       struct buf *out)
{
    buf_reset(out);
    buf_printf(out, "%s/%s", mailbox_file_dir(mb, fname), fname);
}

const char *mailbox_metapath(const struct mailbox *mb)
{
    return mb->metapath ? mb->metapath : mb->path;
}

void mailbox_message_path(const struct mailbox *mb, uint32_t uid,
                          struct buf *out)
{
    buf_reset(out);
    buf_printf(out, "%s/%u.", mb->path, uid);
}

int mailbox_fsync_path(const char *path, int is_dir)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | (is_dir ? O_DIRECTORY : 0));
    int r = 0;

    if (fd < 0 || fsync(fd) < 0) {
        xsyslog_syscall(fd < 0 ? "open" : "fsync", "path", path);
        r = ERR_IO;
    }
    if (fd >= 0)
        close(fd);
    return r;
}

/* A header value: no CR, LF or NUL, at most `max` bytes, and when
 * `allow_empty` is 0, not empty. */
static int is_valid_value(const char *s, size_t max, int allow_empty)
{
    size_t len;

    if (!s)
        return 0;
    len = strlen(s);
    if ((!len && !allow_empty) || len > max)
        return 0;
    return strcspn(s, "\r\n") == len;
}

static int is_valid_uniqueid(const char *s)
{
    size_t len = s ? strlen(s) : 0;

    if (!len || len > MAILBOX_MAX_UNIQUEID)
        return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyz"
                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") == len;
}

/* An IMAP keyword: an atom without '\\', '"', ']', '(', ')', '{', '%'
 * or '*', printable ASCII, not "-" (our free-slot marker). */
static int is_valid_flagname(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len = s ? strlen(s) : 0;

    if (!len || len > MAILBOX_MAX_FLAGNAME || !strcmp(s, "-"))
        return 0;
    for (; *p; p++) {
        if (*p <= 0x20 || *p >= 0x7f || strchr("\\\"]{}()%*", *p))
            return 0;
    }
    return 1;
}

/* ---------------------------------------------------------------- */
/* cyrus.header                                                       */

static void header_render(const struct mailbox *mb, struct buf *out)
{
    int i, last = -1;

    buf_reset(out);
    buf_printf(out, "%s %d\n", HEADER_MAGIC, MAILBOX_HEADER_VERSION);
    buf_printf(out, "name\t%s\nuniqueid\t%s\ntype\t%s\nacl\t%s\nflags\t",
               mb->name, mb->uniqueid, mailbox_type_name(mb->type),
               mb->acl ? mb->acl : "");
    for (i = 0; i < MAILBOX_MAX_USERFLAGS; i++) {
        if (mb->flagname[i])
            last = i;
    }
    for (i = 0; i <= last; i++) {
        if (i)
            buf_putc(out, ' ');
        buf_appendcstr(out, mb->flagname[i] ? mb->flagname[i] : "-");
    }
    buf_putc(out, '\n');
    buf_printf(out, "crc\t%08x\n", mailbox_crc32(out->s, out->len));
}

static void header_clear(struct mailbox *mb)
{
    int i;

    free(mb->name);
    free(mb->uniqueid);
    free(mb->acl);
    mb->name = mb->uniqueid = mb->acl = NULL;
    for (i = 0; i < MAILBOX_MAX_USERFLAGS; i++) {
        free(mb->flagname[i]);
        mb->flagname[i] = NULL;
    }
}

/* Parse the "flags" value into mb->flagname. */
static int header_parse_flags(struct mailbox *mb, const char *v)
{
    strarray_t *words = strarray_split(v, " ", 1);
    int i, r = 0;

    if (words->count > MAILBOX_MAX_USERFLAGS)
        r = ERR_CORRUPT;
    for (i = 0; !r && i < words->count; i++) {
        const char *w = strarray_nth(words, i);

        if (!strcmp(w, "-"))
            continue;
        if (!is_valid_flagname(w)) {
            r = ERR_CORRUPT;
            break;
        }
        mb->flagname[i] = xstrdup(w);
    }
    strarray_free(&words);
    return r;
}

/* Store one "key\tvalue" line of the header. */
static int header_parse_line(struct mailbox *mb, const char *key,
                             const char *val)
{
    if (!strcmp(key, "name")) {
        if (mb->name || !is_valid_value(val, MAILBOX_MAX_NAME, 0))
            return ERR_CORRUPT;
        mb->name = xstrdup(val);
    }
    else if (!strcmp(key, "uniqueid")) {
        if (mb->uniqueid || !is_valid_uniqueid(val))
            return ERR_CORRUPT;
        mb->uniqueid = xstrdup(val);
    }
    else if (!strcmp(key, "type")) {
        if (mailbox_type_parse(val, &mb->type))
            return ERR_CORRUPT;
    }
    else if (!strcmp(key, "acl")) {
        free(mb->acl);
        mb->acl = xstrdup(val);
    }
    else if (!strcmp(key, "flags")) {
        return header_parse_flags(mb, val);
    }
    /* Other keys belong to a later writer of the same version. */
    return 0;
}

/* Parse the header text (NUL-terminated, `len` bytes) into mb. */
static int header_parse(struct mailbox *mb, const char *fname,
                        const char *data, size_t len)
{
    char magic[64];
    const char *crcline, *p, *nl;
    struct buf crcbuf = BUF_INITIALIZER;
    char *line = NULL;
    int r = 0;

    header_clear(mb);
    snprintf(magic, sizeof(magic), "%s %d\n", HEADER_MAGIC,
             MAILBOX_HEADER_VERSION);
    crcline = len > HEADER_CRCLINE_LEN ? data + len - HEADER_CRCLINE_LEN
                                       : NULL;
    if (strlen(data) != len || !crcline || strncmp(crcline, "crc\t", 4)
        || data[len - 1] != '\n'
        || util_hex_decode(crcline + 4, 8, &crcbuf)
        || mb_get32((const unsigned char *)crcbuf.s)
           != mailbox_crc32(data, len - HEADER_CRCLINE_LEN)) {
        r = ERR_CORRUPT;
        goto done;
    }
    if (strncmp(data, magic, strlen(magic))) {
        r = strncmp(data, HEADER_MAGIC, strlen(HEADER_MAGIC))
            ? ERR_CORRUPT : ERR_DB_BADFORMAT;
        goto done;
    }

    for (p = data + strlen(magic); !r && p < crcline; p = nl + 1) {
        char *tab;

        nl = memchr(p, '\n', (size_t)(crcline - p));
        if (!nl)
            nl = crcline - 1;
        free(line);
        line = xstrndup(p, (size_t)(nl - p));
        tab = strchr(line, '\t');
        if (!tab) {
            r = ERR_CORRUPT;
            break;
        }
        *tab = '\0';
        r = header_parse_line(mb, line, tab + 1);
    }
    if (!r && (!mb->name || !mb->uniqueid))
        r = ERR_CORRUPT;

done:
    free(line);
    buf_free(&crcbuf);
    if (r) {
        xsyslog(LOG_ERR, "mailbox header corrupt", "path=%s error=%s",
                fname, error_message(r));
        header_clear(mb);
    }
    return r;
}

/* Read and parse the header through the locked descriptor (opening the
 * path again would drop our fcntl lock when closed). */
static int header_read_fd(struct mailbox *mb, int fd, const char *fname)
{
    struct buf data = BUF_INITIALIZER;
    struct stat sb;
    size_t done = 0;
    int r = 0;

    if (fstat(fd, &sb) < 0) {
        xsyslog_syscall("fstat", "path", fname);
        return ERR_IO;
    }
    if (sb.st_size > MAILBOX_MAX_HEADER_FILE) {
        xsyslog(LOG_ERR, "mailbox header too large", "path=%s", fname);
        return ERR_CORRUPT;
    }
    buf_ensure(&data, (size_t)sb.st_size + 1);
    while (done < (size_t)sb.st_size) {
        ssize_t n = pread(fd, data.s + done, (size_t)sb.st_size - done,
                          (off_t)done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            xsyslog_syscall("pread", "path", fname);
            r = ERR_IO;
            goto done;
        }
        if (n == 0)
            break;
        done += (size_t)n;
    }
    data.len = done;
    r = header_parse(mb, fname, buf_cstring(&data), done);
    if (!r)
        mb->header_ino = sb.st_ino;

done:
    buf_free(&data);
    return r;
}

int mailbox_header_write(struct mailbox *mb)
{
    struct buf path = BUF_INITIALIZER, text = BUF_INITIALIZER;
    struct stat sb;
    int r;

    header_render(mb, &text);
    mailbox_file_path(mb, MAILBOX_FNAME_HEADER, &path);
    r = util_write_file_atomic(buf_cstring(&path), text.s, text.len);
    if (!r && stat(buf_cstring(&path), &sb) == 0)
        mb->header_ino = sb.st_ino;
    buf_free(&path);
    buf_free(&text);
    return r;
}

/* ---------------------------------------------------------------- */
/* Quota                                                              */

void mailbox_set_quota_tracking(int is_on)
{
    is_quota_tracked = is_on;
}

void mailbox_quota_rebase(struct mailbox *mb)
{
    mb->quota_base_used = mb->ih.quota_used;
    mb->quota_base_exists = mb->ih.exists;
}

/* A commit made the index header durable: remember how far its usage
 * moved since the last one. */
static void quota_note_commit(struct mailbox *mb)
{
    mb->quota_pending_used += (int64_t)mb->ih.quota_used
                              - (int64_t)mb->quota_base_used;
    mb->quota_pending_exists += (int64_t)mb->ih.exists
                                - (int64_t)mb->quota_base_exists;
    mailbox_quota_rebase(mb);
}

/* Hand the committed usage change to the quota root of the mailbox.
 * Called with the mailbox locks released, so the quota database lock
 * is never waited for while holding them.  A crash before this leaves
 * the root under- or over-counted until `quota -f`; the mailbox is
 * what counts. */
static void quota_flush(struct mailbox *mb)
{
    int64_t deltas[QUOTA_NUMRESOURCES] = { 0 };
    char *root = NULL;
    int r;

    if (!mb->quota_pending_used && !mb->quota_pending_exists)
        return;
    deltas[QUOTA_STORAGE] = mb->quota_pending_used;
    deltas[QUOTA_MESSAGE] = mb->quota_pending_exists;
    mb->quota_pending_used = mb->quota_pending_exists = 0;

    /* Deleted mailboxes count against nothing; without a configuration
     * directory (bare mailbox files, benchmarks) there is no quota. */
    if (!is_quota_tracked || !mb->name || !config_dir()
        || mboxname_isdeletedmailbox(mb->name, NULL))
        return;
    r = quota_find_root(mb->name, &root);
    if (!r)
        r = quota_update_usage(root, deltas, NULL);
    if (r && r != ERR_QUOTA_ROOT_NONEXISTENT && r != ERR_INVALID)
        xsyslog(LOG_ERR, "quota usage not updated; run quota -f",
                "mailbox=%s error=%s", log_escape(mb->name, 0),
                error_message(r));
    free(root);
}

/* ---------------------------------------------------------------- */
/* Locking                                                            */

int mailbox_header_lock(struct mailbox *mb, int is_exclusive)
{
    struct buf path = BUF_INITIALIZER;
    struct stat sb;
    int r;

    mailbox_file_path(mb, MAILBOX_FNAME_HEADER, &path);
    mb->header_fd = -1;
    r = lock_reopen(&mb->header_fd, buf_cstring(&path), is_exclusive, &sb);
    if (r == ERR_NOTFOUND)
        r = ERR_MAILBOX_NONEXISTENT;
    if (!r && (sb.st_ino != mb->header_ino || !mb->name))
        r = header_read_fd(mb, mb->header_fd, buf_cstring(&path));
    if (r && mb->header_fd >= 0) {
        close(mb->header_fd);
        mb->header_fd = -1;
    }
    buf_free(&path);
    return r;
}

/* Map cyrus.index and cyrus.cache if not done yet. */
static int open_files(struct mailbox *mb)
{
    struct buf path = BUF_INITIALIZER;
    int r = 0;

    if (!mb->index) {
        mailbox_file_path(mb, MAILBOX_FNAME_INDEX, &path);
        r = mappedfile_open(buf_cstring(&path), MAPPEDFILE_RW, &mb->index);
    }
    if (!r && !mb->cache) {
        mailbox_file_path(mb, MAILBOX_FNAME_CACHE, &path);
        r = mappedfile_open(buf_cstring(&path), MAPPEDFILE_RW, &mb->cache);
    }
    if (r == ERR_NOTFOUND) {
        xsyslog(LOG_ERR, "mailbox file missing", "path=%s",
                buf_cstring(&path));
        r = ERR_CORRUPT;
    }
    buf_free(&path);
    return r;
}

/* Reopen cyrus.cache after the index was replaced by a repack. */
static int reopen_cache(struct mailbox *mb)
{
    mappedfile_close(&mb->cache);
    return open_files(mb);
}

/* One attempt at taking both locks and loading the snapshot. */
static int lock_once(struct mailbox *mb, int is_exclusive)
{
    int replaced = 0, r;

    r = mailbox_header_lock(mb, is_exclusive);
    if (!r)
        r = open_files(mb);
    if (!r)
        r = mappedfile_lock(mb->index, is_exclusive ? MAPPEDFILE_EXCLUSIVE
                                                    : MAPPEDFILE_SHARED,
                            &replaced);
    if (!r && replaced)
        r = reopen_cache(mb);
    if (!r) {
        mb->lockstate = is_exclusive ? MBLOCK_EXCLUSIVE : MBLOCK_SHARED;
        r = index_load(mb);
    }
    if (r) {
        if (mb->index)
            mappedfile_unlock(mb->index);
        if (mb->header_fd >= 0)
            close(mb->header_fd);
        mb->header_fd = -1;
        mb->lockstate = MBLOCK_NONE;
    }
    return r;
}

int mailbox_lock(struct mailbox *mb, int is_exclusive)
{
    int want = is_exclusive ? MBLOCK_EXCLUSIVE : MBLOCK_SHARED;
    int r;

    if (mb->lockstate == want)
        return 0;
    if (mb->lockstate != MBLOCK_NONE) {
        r = mailbox_unlock(mb);
        if (r)
            return r;
    }
    r = lock_once(mb, is_exclusive);

    /* A reader found a half-finished repack: recover it as a writer,
     * then come back as a reader. */
    if (r == ERR_AGAIN && !is_exclusive) {
        r = lock_once(mb, 1);
        if (!r)
            r = mailbox_unlock(mb);
        if (!r)
            r = lock_once(mb, 0);
    }
    return r;
}

int mailbox_unlock(struct mailbox *mb)
{
    int r = 0;

    if (mb->lockstate == MBLOCK_NONE)
        return 0;
    if (mb->txn)
        mailbox_append_abort(&mb->txn);
    if (mb->lockstate == MBLOCK_EXCLUSIVE)
        r = mailbox_commit(mb);
    mappedfile_unlock(mb->index);
    if (mb->header_fd >= 0)
        close(mb->header_fd);
    mb->header_fd = -1;
    mb->lockstate = MBLOCK_NONE;
    quota_flush(mb);
    return r;
}

/* ---------------------------------------------------------------- */
/* Open, commit, close                                                */

static int open_common(const char *path, int is_exclusive,
                       struct mailbox **mb_r)
{
    struct mailbox *mb;
    int r;

    *mb_r = NULL;
    if (!path || !*path)
        return ERR_INVALID;
    mb = xzmalloc(sizeof(*mb));
    mailbox_set_paths(mb, path);
    mb->header_fd = -1;
    r = mailbox_lock(mb, is_exclusive);
    if (r) {
        mailbox_close(&mb);
        return r;
    }
    *mb_r = mb;
    return 0;
}

int mailbox_open_iread(const char *path, struct mailbox **mb_r)
{
    return open_common(path, 0, mb_r);
}

int mailbox_open_iwrite(const char *path, struct mailbox **mb_r)
{
    return open_common(path, 1, mb_r);
}

int mailbox_commit(struct mailbox *mb)
{
    int r;

    if (mb->lockstate != MBLOCK_EXCLUSIVE)
        return ERR_MAILBOX_NOTLOCKED;
    if (!mb->is_changed) {
        flush_events(mb);
        return 0;
    }

    /* Records first, durable, then the header that counts them. */
    r = mappedfile_sync(mb->index);
    if (r)
        return r;
    mailbox_run_test_hook("commit:before-header");
    mb->ih.format_flags &= ~MAILBOX_INDEX_DIRTY;
    r = index_write_header(mb);
    if (!r)
        r = mappedfile_sync(mb->index);
    if (r)
        return r;
    mb->is_changed = 0;
    mb->is_dirty_on_disk = 0;
    quota_note_commit(mb);
    flush_events(mb);
    return 0;
}

void mailbox_close(struct mailbox **mbp)
{
    struct mailbox *mb = *mbp;

    if (!mb)
        return;
    mailbox_unlock(mb);
    mappedfile_close(&mb->index);
    mappedfile_close(&mb->cache);
    header_clear(mb);
    free(mb->events);
    free(mb->path);
    free(mb->metapath);
    free(mb);
    *mbp = NULL;
}

/* ---------------------------------------------------------------- */
/* Accessors and header changes                                       */

const char *mailbox_name(const struct mailbox *mb)
{
    return mb->name;
}

const char *mailbox_path(const struct mailbox *mb)
{
    return mb->path;
}

const char *mailbox_uniqueid(const struct mailbox *mb)
{
    return mb->uniqueid;
}

const char *mailbox_acl(const struct mailbox *mb)
{
    return mb->acl ? mb->acl : "";
}

enum mailbox_type mailbox_type(const struct mailbox *mb)
{
    return mb->type;
}

const struct mailbox_index_header *mailbox_index(const struct mailbox *mb)
{
    return &mb->ih;
}

int mailbox_uses_sharedseen(const struct mailbox *mb)
{
    return mb && config_dir() && annotate_is_sharedseen(mb->uniqueid);
}

int mailbox_seen_in_index(const struct mailbox *mb, const char *userid)
{
    if (!mb)
        return 0;
    if (userid && mb->name && mboxname_userownsmailbox(userid, mb->name))
        return 1;
    return mailbox_uses_sharedseen(mb);
}

const char *mailbox_userflag_name(const struct mailbox *mb, unsigned idx)
{
    if (idx >= MAILBOX_MAX_USERFLAGS)
        return NULL;
    return mb->flagname[idx];
}

int mailbox_find_userflag(const struct mailbox *mb, const char *flag,
                          unsigned *idx_r)
{
    unsigned i;

    for (i = 0; flag && i < MAILBOX_MAX_USERFLAGS; i++) {
        if (mb->flagname[i]
            && !util_strcasecmp_ascii(mb->flagname[i], flag)) {
            *idx_r = i;
            return 0;
        }
    }
    return ERR_NOTFOUND;
}

int mailbox_set_userflag(struct mailbox *mb, const char *flag,
                         unsigned *idx_r)
{
    unsigned i;
    int r;

    if (mb->lockstate != MBLOCK_EXCLUSIVE)
        return ERR_MAILBOX_NOTLOCKED;
    if (!is_valid_flagname(flag))
        return ERR_INVALID;
    if (!mailbox_find_userflag(mb, flag, idx_r))
        return 0;
    for (i = 0; i < MAILBOX_MAX_USERFLAGS && mb->flagname[i]; i++)
        ;
    if (i == MAILBOX_MAX_USERFLAGS)
        return ERR_MAILBOX_USERFLAGS_FULL;

    mb->flagname[i] = xstrdup(flag);
    r = mailbox_header_write(mb);
    if (r) {
        free(mb->flagname[i]);
        mb->flagname[i] = NULL;
        return r;
    }
    mailbox_queue_event(mb, "header", 0);
    *idx_r = i;
    return 0;
}

int mailbox_set_acl(struct mailbox *mb, const char *acl)
{
    char *old;
    int r;

    if (mb->lockstate != MBLOCK_EXCLUSIVE)
        return ERR_MAILBOX_NOTLOCKED;
    if (!is_valid_value(acl, MAILBOX_MAX_HEADER_FILE / 2, 1))
        return ERR_INVALID;
    old = mb->acl;
    mb->acl = xstrdup(acl);
    r = mailbox_header_write(mb);
    if (r) {
        free(mb->acl);
        mb->acl = old;
        return r;
    }
    free(old);
    mailbox_queue_event(mb, "header", 0);
    return 0;
}

int mailbox_set_name(struct mailbox *mb, const char *name)
{
    char *old;
    int r;

    if (mb->lockstate != MBLOCK_EXCLUSIVE)
        return ERR_MAILBOX_NOTLOCKED;
    if (!is_valid_value(name, MAILBOX_MAX_NAME, 0))
        return ERR_MAILBOX_BADNAME;
    if (mb->name && !strcmp(mb->name, name))
        return 0;
    old = mb->name;
    mb->name = xstrdup(name);
    r = mailbox_header_write(mb);
    if (r) {
        free(mb->name);
        mb->name = old;
        return r;
    }
    free(old);
    mailbox_queue_event(mb, "header", 0);
    return 0;
}

int mailbox_set_pop3_last_login(struct mailbox *mb, time_t when)
{
    if (mb->lockstate != MBLOCK_EXCLUSIVE)
        return ERR_MAILBOX_NOTLOCKED;
    mb->ih.pop3_last_login = when;
    mb->is_changed = 1;
    return 0;
}

int mailbox_read_header_info(const char *path,
                             struct mailbox_header_info *info_r)
{
    struct mailbox *mb;
    int r;

    memset(info_r, 0, sizeof(*info_r));
    if (!path || !*path)
        return ERR_INVALID;
    mb = xzmalloc(sizeof(*mb));
    mailbox_set_paths(mb, path);
    mb->header_fd = -1;
    r = mailbox_header_lock(mb, 0);
    if (!r) {
        info_r->name = mb->name;
        info_r->uniqueid = mb->uniqueid;
        info_r->acl = mb->acl ? mb->acl : xstrdup("");
        info_r->type = mb->type;
        mb->name = mb->uniqueid = mb->acl = NULL;
        close(mb->header_fd);
        mb->header_fd = -1;
    }
    mailbox_close(&mb);
    return r;
}

void mailbox_header_info_fini(struct mailbox_header_info *info)
{
    if (!info)
        return;
    free(info->name);
    free(info->uniqueid);
    free(info->acl);
    memset(info, 0, sizeof(*info));
}

/* ---------------------------------------------------------------- */
/* Create and delete                                                  */

/* Write a fresh, empty cyrus.index and cyrus.cache (not yet visible:
 * the mailbox exists once cyrus.header is in place). */
static int create_index_files(struct mailbox *mb)
{
    struct mailbox_index_header ih;
    unsigned char hdr[INDEX_HEADER_SIZE], chdr[CACHE_HEADER_SIZE];
    struct buf path = BUF_INITIALIZER;
    time_t now = time(NULL);
    int r;

    memset(&ih, 0, sizeof(ih));
    ih.version = MAILBOX_INDEX_VERSION;
    ih.generation = 1;
    ih.uidvalidity = now > 0 && (uint64_t)now < UINT32_MAX
                     ? (uint32_t)now : 1;
    ih.uidnext = 1;
    ih.highestmodseq = 1;
    ih.cache_size = CACHE_HEADER_SIZE;
    index_header_encode(&ih, hdr);
    cache_header_encode(ih.generation, chdr);

    mailbox_file_path(mb, MAILBOX_FNAME_CACHE, &path);
    r = util_write_file_atomic(buf_cstring(&path), chdr, sizeof(chdr));
    if (!r) {
        mailbox_file_path(mb, MAILBOX_FNAME_INDEX, &path);
        r = util_write_file_atomic(buf_cstring(&path), hdr, sizeof(hdr));
    }
    buf_free(&path);
    return r;
}

/* A new 128-bit random unique id as 32 hex digits. */
static int make_uniqueid(char **id_r)
{
    unsigned char raw[16];
    struct buf hex = BUF_INITIALIZER;
    int r;

    r = util_random_bytes(raw, sizeof(raw));
    if (r)
        return r;
    util_hex_encode(raw, sizeof(raw), &hex);
    *id_r = buf_release(&hex);
    return 0;
}

int mailbox_create(const char *name, const char *path, enum mailbox_type type,
                   const char *uniqueid, struct mailbox **mb_r)
{
    struct mailbox *mb = NULL;
    struct buf hpath = BUF_INITIALIZER;
    struct stat sb;
    int r;

    *mb_r = NULL;
    if (!is_valid_value(name, MAILBOX_MAX_NAME, 0))
        return ERR_MAILBOX_BADNAME;
    if (!path || !*path || (unsigned)type >= MAILBOX_TYPE_COUNT_
        || (uniqueid && !is_valid_uniqueid(uniqueid)))
        return ERR_INVALID;

    mb = xzmalloc(sizeof(*mb));
    mailbox_set_paths(mb, path);
    mb->header_fd = -1;
    mb->name = xstrdup(name);
    mb->type = type;
    mb->acl = xstrdup("");
    if (uniqueid)
        mb->uniqueid = xstrdup(uniqueid);
    else if ((r = make_uniqueid(&mb->uniqueid)))
        goto done;

    r = util_mkdir_p(path);
    if (!r && mb->metapath)
        r = util_mkdir_p(mb->metapath);
    if (r)
        goto done;
    mailbox_file_path(mb, MAILBOX_FNAME_HEADER, &hpath);
    if (lstat(buf_cstring(&hpath), &sb) == 0) {
        r = ERR_MAILBOX_EXISTS;
        goto done;
    }

    /* Index and cache first: the header's arrival creates the mailbox. */
    r = create_index_files(mb);
    if (!r)
        r = mailbox_header_write(mb);
    if (!r)
        r = mailbox_lock(mb, 1);
    if (r)
        goto done;
    xsyslog(LOG_INFO, "mailbox created", "mailbox=%s uniqueid=%s",
            log_escape(name, 0), mb->uniqueid);
    mailbox_queue_event(mb, "create", 0);
    flush_events(mb);
    *mb_r = mb;
    mb = NULL;

done:
    mailbox_close(&mb);
    buf_free(&hpath);
    return r;
}

/* Is `name` a message file name "<digits>."? */
static int is_message_file(const char *name)
{
    size_t n = strspn(name, "0123456789");

    return n > 0 && name[n] == '.' && name[n + 1] == '\0';
}

/* Remove every message file in the mailbox directory. */
static int unlink_message_files(struct mailbox *mb)
{
    struct buf path = BUF_INITIALIZER;
    struct dirent *de;
    DIR *dir;
    int r = 0;

    dir = opendir(mb->path);
    if (!dir) {
        xsyslog_syscall("opendir", "path", mb->path);
        return ERR_IO;
    }
    while ((de = readdir(dir))) {
        if (!is_message_file(de->d_name))
            continue;
        mailbox_file_path(mb, de->d_name, &path);
        if (unlink(buf_cstring(&path)) < 0 && errno != ENOENT) {
            xsyslog_syscall("unlink", "path", buf_cstring(&path));
            r = ERR_IO;
        }
    }
    closedir(dir);
    buf_free(&path);
    return r;
}

int mailbox_delete(struct mailbox **mbp)
{
    static const char *const meta[] = {
        MAILBOX_FNAME_CACHE, MAILBOX_FNAME_INDEX,
        MAILBOX_FNAME_CACHE ".NEW", MAILBOX_FNAME_INDEX ".NEW",
        MAILBOX_FNAME_HEADER
    };
    struct mailbox *mb = *mbp;
    struct buf path = BUF_INITIALIZER;
    size_t i;
    int r;

    if (!mb)
        return ERR_INVALID;
    if (mb->lockstate != MBLOCK_EXCLUSIVE)
        return ERR_MAILBOX_NOTLOCKED;
    if (mb->txn)
        mailbox_append_abort(&mb->txn);

    /* Messages first: a crash part-way leaves a mailbox that still
     * opens (records whose files are missing), not orphaned files. */
    r = unlink_message_files(mb);
    for (i = 0; !r && i < sizeof(meta) / sizeof(meta[0]); i++) {
        mailbox_file_path(mb, meta[i], &path);
        if (unlink(buf_cstring(&path)) < 0 && errno != ENOENT) {
            xsyslog_syscall("unlink", "path", buf_cstring(&path));
            r = ERR_IO;
        }
    }
    if (!r && rmdir(mb->path) < 0 && errno != ENOTEMPTY && errno != EEXIST)
        xsyslog_syscall("rmdir", "path", mb->path);
    if (!r && mb->metapath && rmdir(mb->metapath) < 0 && errno != ENOTEMPTY
        && errno != EEXIST && errno != ENOENT)
        xsyslog_syscall("rmdir", "path", mb->metapath);
    if (!r) {
        xsyslog(LOG_NOTICE, "mailbox deleted", "mailbox=%s uniqueid=%s",
                log_escape(mb->name, 0), mb->uniqueid);
        mb->nevents = 0;
        mb->is_changed = 0;
        mailbox_queue_event(mb, "delete", 0);
        flush_events(mb);
    }
    buf_free(&path);
    mailbox_close(mbp);
    return r;
}

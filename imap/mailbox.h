/* Mailboxes on disk: one directory per mailbox holding one file per
 * message ("<uid>.") and the metadata files cyrus.header, cyrus.index and
 * cyrus.cache.  The file formats are described in imap/mailbox.c. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_IMAP_MAILBOX_H
#define COLUMBA_IMAP_MAILBOX_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "lib/buf.h"
#include "imap/message.h"

/* Versions of the three formats; a file with another version is refused
 * with ERR_DB_BADFORMAT. */
#define MAILBOX_HEADER_VERSION 1
#define MAILBOX_INDEX_VERSION 1
#define MAILBOX_CACHE_VERSION 1

/* File names inside a mailbox directory. */
#define MAILBOX_FNAME_HEADER "cyrus.header"
#define MAILBOX_FNAME_INDEX "cyrus.index"
#define MAILBOX_FNAME_CACHE "cyrus.cache"

/* Bounds. */
#define MAILBOX_MAX_USERFLAGS 128
#define MAILBOX_USERFLAG_WORDS (MAILBOX_MAX_USERFLAGS / 32)
#define MAILBOX_MAX_FLAGNAME 100
#define MAILBOX_MAX_NAME 1024
#define MAILBOX_MAX_UNIQUEID 64
#define MAILBOX_MAX_HEADER_FILE (1024 * 1024)
#define MAILBOX_GUID_SIZE 20

/* System flags of a record.  The first five are the IMAP flags; the
 * last two are internal: EXPUNGED means the message has left the
 * mailbox as IMAP sees it, UNLINKED that its file is gone too (the
 * record stays until mailbox_repack()). */
#define MAILBOX_FLAG_ANSWERED 0x01u
#define MAILBOX_FLAG_FLAGGED 0x02u
#define MAILBOX_FLAG_DELETED 0x04u
#define MAILBOX_FLAG_DRAFT 0x08u
#define MAILBOX_FLAG_SEEN 0x10u
#define MAILBOX_FLAG_EXPUNGED 0x40000000u
#define MAILBOX_FLAG_UNLINKED 0x80000000u
#define MAILBOX_FLAGS_IMAP 0x1Fu

/* Index header format flags. */
#define MAILBOX_INDEX_DIRTY 0x1u  /* records changed in place, counts
                                   * not yet rewritten: recount */

/* What a mailbox holds. */
enum mailbox_type {
    MAILBOX_TYPE_MAIL = 0,
    MAILBOX_TYPE_CALENDAR,
    MAILBOX_TYPE_ADDRESSBOOK,
    MAILBOX_TYPE_COLLECTION,
    MAILBOX_TYPE_SIEVE,
    MAILBOX_TYPE_SUBMISSION,
    MAILBOX_TYPE_COUNT_
};

/* Expunge modes. */
enum mailbox_expunge_mode {
    MAILBOX_EXPUNGE_DELAYED = 0,  /* mark \Expunged, keep the file */
    MAILBOX_EXPUNGE_IMMEDIATE     /* also remove the file */
};

/* Fields of a cache record.  The header fields hold the raw field
 * lines ("Name: value\r\n", folds kept, every instance in order), empty
 * when the message has none. */
enum mailbox_cache_field {
    MAILBOX_CACHE_ENVELOPE = 0,
    MAILBOX_CACHE_BODYSTRUCTURE,
    MAILBOX_CACHE_BODY,
    MAILBOX_CACHE_SECTIONS,     /* serialised part tree (binary) */
    MAILBOX_CACHE_HDR_FROM,
    MAILBOX_CACHE_HDR_SENDER,
    MAILBOX_CACHE_HDR_REPLY_TO,
    MAILBOX_CACHE_HDR_TO,
    MAILBOX_CACHE_HDR_CC,
    MAILBOX_CACHE_HDR_BCC,
    MAILBOX_CACHE_HDR_SUBJECT,
    MAILBOX_CACHE_HDR_DATE,
    MAILBOX_CACHE_HDR_MESSAGE_ID,
    MAILBOX_CACHE_HDR_IN_REPLY_TO,
    MAILBOX_CACHE_HDR_REFERENCES,
    MAILBOX_CACHE_HDR_CONTENT_TYPE,
    MAILBOX_CACHE_HDR_LIST_ID,
    MAILBOX_CACHE_NFIELDS
};

/* The counters of the index header, as held in memory. */
struct mailbox_index_header {
    uint32_t version;
    uint32_t generation;        /* bumped by every repack */
    uint32_t format_flags;      /* MAILBOX_INDEX_* */
    uint32_t uidvalidity;
    uint32_t uidnext;
    uint64_t highestmodseq;
    uint32_t num_records;       /* records in the file, expunged too */
    uint32_t exists;            /* records without \Expunged */
    uint32_t deleted;           /* ... of those, with \Deleted */
    uint32_t answered;
    uint32_t flagged;
    uint64_t quota_used;        /* bytes of the records counted in exists */
    time_t last_appenddate;
    time_t pop3_last_login;
    time_t first_expunged;      /* oldest delayed expunge not unlinked, 0 */
    uint64_t deletedmodseq;     /* highest modseq dropped by repack */
    uint64_t cache_size;        /* valid bytes of cyrus.cache */
};

/* One message as the index describes it. */
struct mailbox_record {
    uint32_t recno;             /* 1-based position (not stored) */
    uint32_t uid;
    uint32_t system_flags;      /* MAILBOX_FLAG_* */
    time_t internaldate;
    time_t sentdate;            /* Date: header, else internaldate */
    time_t savedate;            /* when it was stored here */
    time_t last_updated;
    uint64_t size;
    uint32_t header_size;
    uint32_t cache_version;
    uint64_t cache_offset;
    uint32_t user_flags[MAILBOX_USERFLAG_WORDS];
    uint64_t modseq;
    uint64_t createdmodseq;     /* modseq of the append */
    unsigned char guid[MAILBOX_GUID_SIZE];  /* SHA-1 of the message */
};

struct mailbox;
struct mailbox_append;

/* Callback for changes: `event` is one of "create", "append", "flags",
 * "expunge", "unlink", "repack", "header", "delete"; `uid` is 0 for
 * events about the whole mailbox.  Called after the change is durable. */
typedef void mailbox_change_hook_t(const char *event, const char *mboxname,
                                   const char *uniqueid, uint32_t uid,
                                   void *rock);

/* Register (or with NULL remove) the process-wide change hook. */
void mailbox_set_change_hook(mailbox_change_hook_t *hook, void *rock);

/* Quota accounting.  Every commit that changes the index header's
 * quota_used or exists (append, expunge in either mode, unexpunge)
 * records the change, and when the mailbox locks are released the
 * change is added to the quota root of the mailbox's name (nothing for
 * a deleted mailbox, a name under no root, or a process without a
 * configuration directory).  So a quota root counts the bytes and
 * messages of the non-expunged records of its mailboxes; creating,
 * deleting and renaming whole mailboxes is accounted by imap/mboxlist.
 * On by default; `is_on` 0 turns it off for this process (tools that
 * recount themselves). */
void mailbox_set_quota_tracking(int is_on);

/* Tests only: called with a point name ("append:before-commit",
 * "commit:before-header", "repack:before-index-rename") at crash-relevant
 * moments, so a test can kill the process there.  NULL removes it. */
void mailbox_set_test_hook(void (*hook)(const char *point));

/* The type's name ("mail", "calendar", ...); "unknown" when invalid. */
const char *mailbox_type_name(enum mailbox_type type);

/* Parse a type name.  Returns 0 or ERR_INVALID. */
int mailbox_type_parse(const char *name, enum mailbox_type *type_r);

/* Create the mailbox `name` in directory `path` (created with its
 * parents) with an empty index, and return it opened for writing (see
 * mailbox_open_iwrite()).  `uniqueid` NULL generates a new random one.
 * Returns 0, ERR_MAILBOX_EXISTS when `path` already holds a mailbox,
 * ERR_MAILBOX_BADNAME / ERR_INVALID for a bad name, id or type, or
 * ERR_IO.  The caller closes *mb_r with mailbox_close(). */
int mailbox_create(const char *name, const char *path, enum mailbox_type type,
                   const char *uniqueid, struct mailbox **mb_r);

/* Open the mailbox in directory `path` with shared locks (header, then
 * index) held until mailbox_unlock() or mailbox_close().  Returns 0,
 * ERR_MAILBOX_NONEXISTENT, ERR_CORRUPT (logged), ERR_DB_BADFORMAT, or
 * ERR_IO. */
int mailbox_open_iread(const char *path, struct mailbox **mb_r);

/* As mailbox_open_iread() with exclusive locks, after recovering from
 * any crashed writer (see the design comment). */
int mailbox_open_iwrite(const char *path, struct mailbox **mb_r);

/* Take the locks again (exclusive when `is_exclusive`) and re-read the
 * header and index header, following a repack or header rewrite.  A
 * no-op when already holding that lock.  Returns as the open calls. */
int mailbox_lock(struct mailbox *mb, int is_exclusive);

/* Commit pending changes (if exclusive) and release the locks; the
 * mailbox stays open and its last snapshot readable with
 * mailbox_index().  Returns 0 or the commit's error. */
int mailbox_unlock(struct mailbox *mb);

/* Commit pending changes, release locks, free; *mbp becomes NULL.  NULL
 * accepted.  An open append transaction is aborted. */
void mailbox_close(struct mailbox **mbp);

/* Make the changes made under the exclusive lock durable: fsync the
 * index records, write the index header (counts, HIGHESTMODSEQ), fsync,
 * then run the change hooks.  Returns 0, ERR_MAILBOX_NOTLOCKED or
 * ERR_IO. */
int mailbox_commit(struct mailbox *mb);

/* Accessors; strings belong to the mailbox. */
const char *mailbox_name(const struct mailbox *mb);
const char *mailbox_path(const struct mailbox *mb);
/* The directory holding the metadata files on the metapartition
 * (metapartition-<name> with metapartition_files set), else the same as
 * mailbox_path().  Every open and create takes it from the data path
 * given (mboxname_datapath_to_metadir()); the files listed in
 * metapartition_files (header, index, cache) live there. */
const char *mailbox_metapath(const struct mailbox *mb);
const char *mailbox_uniqueid(const struct mailbox *mb);
const char *mailbox_acl(const struct mailbox *mb);
enum mailbox_type mailbox_type(const struct mailbox *mb);
const struct mailbox_index_header *mailbox_index(const struct mailbox *mb);

/* Shared seen state: is the mailbox's /vendor/cmu/cyrus-imapd/sharedseen
 * annotation "true"?  Then \Seen is kept in the index records for every
 * user instead of in each reader's seen database.  Read from
 * annotations.db at each call (imapd asks once per SELECT).  Returns 1
 * or 0 (also when the annotation cannot be read). */
int mailbox_uses_sharedseen(const struct mailbox *mb);

/* Does `userid`'s \Seen live in the index records of `mb`?  True for
 * the owner of the mailbox (Cyrus keeps the owner's seen state there)
 * and for everyone when mailbox_uses_sharedseen(); otherwise the user's
 * seen database (imap/seen.h) holds it.  Returns 1 or 0. */
int mailbox_seen_in_index(const struct mailbox *mb, const char *userid);

/* The name of user flag `idx`, or NULL for a free slot. */
const char *mailbox_userflag_name(const struct mailbox *mb, unsigned idx);

/* Find user flag `flag` (compared without case) or allocate the next
 * free slot for it, rewriting cyrus.header.  Requires the exclusive
 * lock.  Returns 0 with *idx_r set, ERR_INVALID for a name that is not
 * an IMAP atom, ERR_MAILBOX_USERFLAGS_FULL, or ERR_IO. */
int mailbox_set_userflag(struct mailbox *mb, const char *flag,
                         unsigned *idx_r);

/* Look a user flag up without allocating: 0 with *idx_r or
 * ERR_NOTFOUND. */
int mailbox_find_userflag(const struct mailbox *mb, const char *flag,
                          unsigned *idx_r);

/* Replace the ACL copy in cyrus.header (exclusive lock).  Returns 0,
 * ERR_INVALID (CR or LF in it) or ERR_IO. */
int mailbox_set_acl(struct mailbox *mb, const char *acl);

/* Replace the mailbox name in cyrus.header (exclusive lock), as a rename
 * does.  Returns 0, ERR_MAILBOX_BADNAME (empty, too long, CR or LF),
 * ERR_MAILBOX_NOTLOCKED or ERR_IO. */
int mailbox_set_name(struct mailbox *mb, const char *name);

/* What cyrus.header says about a mailbox. */
struct mailbox_header_info {
    char *name;
    char *uniqueid;
    char *acl;
    enum mailbox_type type;
};

/* Read cyrus.header in directory `path` (under a shared lock, released
 * before returning) without touching the index, so it works when the
 * index is missing or damaged.  Fills *info_r (release with
 * mailbox_header_info_fini()).  Returns 0, ERR_MAILBOX_NONEXISTENT (no
 * header), ERR_CORRUPT, ERR_DB_BADFORMAT or ERR_IO. */
int mailbox_read_header_info(const char *path,
                             struct mailbox_header_info *info_r);

/* Free the strings of `info` and clear it; NULL accepted. */
void mailbox_header_info_fini(struct mailbox_header_info *info);

/* Record a POP3 login time in the index header (exclusive lock;
 * durable at the next commit). */
int mailbox_set_pop3_last_login(struct mailbox *mb, time_t when);

/* Path of the message file of `uid` into `out` (reset first). */
void mailbox_message_path(const struct mailbox *mb, uint32_t uid,
                          struct buf *out);

/* Read record number `recno` (1..num_records, expunged records
 * included) into *rec_r.  Requires a lock.  Returns 0, ERR_NOTFOUND
 * when out of range, ERR_MAILBOX_NOTLOCKED, or ERR_CORRUPT (logged). */
int mailbox_read_record(struct mailbox *mb, uint32_t recno,
                        struct mailbox_record *rec_r);

/* Find the record of `uid` (binary search; records are in UID order).
 * Returns as mailbox_read_record(). */
int mailbox_find_record(struct mailbox *mb, uint32_t uid,
                        struct mailbox_record *rec_r);

/* Store a changed record (flags, user flags) in place: the record at
 * rec->recno must have rec->uid; modseq becomes HIGHESTMODSEQ + 1 and
 * the counts follow.  Only MAILBOX_FLAGS_IMAP and user flags of
 * allocated slots may change here, and nothing on an expunged record.
 * Requires the exclusive lock; durable at mailbox_commit().  Returns 0,
 * ERR_INVALID, ERR_MAILBOX_NOTLOCKED, ERR_CORRUPT or ERR_IO. */
int mailbox_rewrite_record(struct mailbox *mb, struct mailbox_record *rec);

/* Decides whether a record goes: non-zero to expunge it. */
typedef int mailbox_expunge_decide_t(struct mailbox *mb,
                                     const struct mailbox_record *rec,
                                     void *rock);

/* Expunge every live record `decide` picks (NULL: every record with
 * \Deleted), then commit.  Delayed mode keeps the files for
 * cyr_expire; immediate mode removes them.  Sets *count_r (may be NULL)
 * to the number expunged.  Requires the exclusive lock. */
int mailbox_expunge(struct mailbox *mb, mailbox_expunge_decide_t *decide,
                    void *rock, enum mailbox_expunge_mode mode,
                    unsigned *count_r);

/* Remove the files of records expunged at or before `before` (by
 * last_updated) and mark them unlinked, then commit (cyr_expire's
 * job).  Sets *count_r (may be NULL). */
int mailbox_unlink_expunged(struct mailbox *mb, time_t before,
                            unsigned *count_r);

/* Retire the expunged record of `uid` now rather than at the next
 * cyr_expire: its message file is removed and it is marked unlinked
 * (unexpunge does this once it has restored a copy).  Already unlinked
 * is fine.  Requires the exclusive lock; durable at mailbox_commit().
 * Returns 0, ERR_NOTFOUND (no such record), ERR_INVALID (not
 * expunged), ERR_MAILBOX_NOTLOCKED, ERR_CORRUPT or ERR_IO. */
int mailbox_unlink_record(struct mailbox *mb, uint32_t uid);

/* Rewrite index and cache without the unlinked records, as a new
 * generation, replacing both files atomically.  Requires the exclusive
 * lock; pending changes are committed first. */
int mailbox_repack(struct mailbox *mb);

/* Delete the mailbox: its message files, metadata files and directory
 * (left in place if it still holds other entries, such as child
 * mailboxes).  Requires the exclusive lock; closes and frees *mbp. */
int mailbox_delete(struct mailbox **mbp);

/* Start an append transaction (exclusive lock required; one at a time).
 * Returns 0, ERR_MAILBOX_NOTLOCKED or ERR_LOCKED if one is open. */
int mailbox_append_begin(struct mailbox *mb, struct mailbox_append **txn_r);

/* Add one message: from the file at `msgfile` (hard-linked into the
 * mailbox when possible, else copied) or, with `msgfile` NULL, from
 * `len` bytes at `base`.  `internaldate` 0 means now; `flags` are
 * MAILBOX_FLAGS_IMAP bits; `user_flags` may be NULL.  Parses the
 * message, writes its file and cache record.  Sets *uid_r (may be
 * NULL).  Nothing is visible until mailbox_append_commit().  Returns 0,
 * ERR_TOOBIG (4 GiB or more), ERR_INVALID, or ERR_IO. */
int mailbox_append_add(struct mailbox_append *txn, const char *msgfile,
                       const char *base, size_t len, time_t internaldate,
                       uint32_t flags, const uint32_t *user_flags,
                       uint32_t *uid_r);

/* Make the transaction's messages durable and visible: fsync message
 * files and directory, then the cache, then the index records, then
 * write and fsync the index header.  Only after 0 may a delivery be
 * acknowledged.  Frees *txnp either way; on failure the messages are
 * discarded. */
int mailbox_append_commit(struct mailbox_append **txnp);

/* Discard the transaction: remove its message files, forget its cache
 * bytes.  Frees *txnp; NULL accepted. */
void mailbox_append_abort(struct mailbox_append **txnp);

/* One message in one transaction (begin, add, commit). */
int mailbox_append(struct mailbox *mb, const char *msgfile, const char *base,
                   size_t len, time_t internaldate, uint32_t flags,
                   const uint32_t *user_flags, uint32_t *uid_r);

/* Copy cache field `field` of `rec` into `out` (reset first).  Requires
 * a lock.  Returns 0, ERR_INVALID for a bad field, or ERR_CORRUPT
 * (logged) when the cache record fails its bounds or CRC checks. */
int mailbox_cache_get(struct mailbox *mb, const struct mailbox_record *rec,
                      enum mailbox_cache_field field, struct buf *out);

/* The cache field holding header `name` (any case), or -1 when that
 * header is not cached. */
int mailbox_cache_header_field(const char *name);

/* Resolve BODY[section] as message_section_find() does, from the
 * cached part tree, without reading the message.  Fills *sec_r (its
 * `part` is NULL).  Returns 0, ERR_INVALID, ERR_NOTFOUND or
 * ERR_CORRUPT. */
int mailbox_cache_section(struct mailbox *mb,
                          const struct mailbox_record *rec,
                          const char *section,
                          struct message_section *sec_r);

/* The JMAP Email id of a record: "M" and the first 24 hex digits of its
 * GUID, written to `out` (reset first).  Equal messages share it. */
void mailbox_record_emailid(const struct mailbox_record *rec,
                            struct buf *out);

#endif /* COLUMBA_IMAP_MAILBOX_H */

/* Shared internals of the mailbox module (mailbox*.c only): the open
 * mailbox, byte-order helpers and the functions the parts call across. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_IMAP_MAILBOX_INTERNAL_H
#define COLUMBA_IMAP_MAILBOX_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/buf.h"
#include "lib/mappedfile.h"
#include "imap/mailbox.h"

/* Sizes of the binary structures (see the design comment). */
#define INDEX_HEADER_SIZE 128
#define INDEX_RECORD_SIZE 128
#define CACHE_HEADER_SIZE 32

/* Lock states. */
enum { MBLOCK_NONE = 0, MBLOCK_SHARED = 1, MBLOCK_EXCLUSIVE = 2 };

/* A change waiting for its commit before the hook hears of it. */
struct mailbox_event {
    const char *event;          /* static string */
    uint32_t uid;
};

struct mailbox {
    char *path;                 /* the mailbox directory */
    char *metapath;             /* its metapartition twin, NULL: none */
    char *name;
    char *uniqueid;
    char *acl;
    enum mailbox_type type;
    char *flagname[MAILBOX_MAX_USERFLAGS];

    int header_fd;              /* locked cyrus.header, -1 unlocked */
    ino_t header_ino;           /* inode of the header last parsed */
    struct mappedfile *index;
    struct mappedfile *cache;
    int lockstate;              /* MBLOCK_* */

    struct mailbox_index_header ih;     /* the snapshot / working copy */
    int is_changed;             /* ih or records differ from disk */
    int is_dirty_on_disk;       /* MAILBOX_INDEX_DIRTY written */
    struct mailbox_append *txn; /* open append transaction */

    struct mailbox_event *events;
    size_t nevents;
    size_t events_alloc;

    /* Quota: usage of the last commit, and what commits since the
     * exclusive lock was taken changed, handed to the quota root
     * once the locks are released (see mailbox_quota_flush()). */
    uint64_t quota_base_used;
    uint32_t quota_base_exists;
    int64_t quota_pending_used;
    int64_t quota_pending_exists;
};

/* Big-endian fixed-width fields. */
static inline void mb_put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static inline uint32_t mb_get32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16)
           | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static inline void mb_put64(unsigned char *p, uint64_t v)
{
    mb_put32(p, (uint32_t)(v >> 32));
    mb_put32(p + 4, (uint32_t)v);
}

static inline uint64_t mb_get64(const unsigned char *p)
{
    return ((uint64_t)mb_get32(p) << 32) | mb_get32(p + 4);
}

/* CRC-32 (zlib's polynomial) of `len` bytes. */
uint32_t mailbox_crc32(const void *p, size_t len);

/* mailbox.c */
void mailbox_queue_event(struct mailbox *mb, const char *event,
                         uint32_t uid);
void mailbox_run_test_hook(const char *point);
/* Set mb->path to `path` and mb->metapath to the metapartition
 * directory that goes with it (mboxname_datapath_to_metadir()), if any. */
void mailbox_set_paths(struct mailbox *mb, const char *path);
/* The directory holding file `fname` (a metadata file listed in
 * metapartition_files lives in mb->metapath). */
const char *mailbox_file_dir(const struct mailbox *mb, const char *fname);
void mailbox_file_path(const struct mailbox *mb, const char *fname,
                       struct buf *out);
int mailbox_fsync_path(const char *path, int is_dir);
/* Lock cyrus.header (following a rename) and parse it when it changed;
 * on failure the descriptor is closed.  Returns 0,
 * ERR_MAILBOX_NONEXISTENT, ERR_CORRUPT, ERR_DB_BADFORMAT or ERR_IO. */
int mailbox_header_lock(struct mailbox *mb, int is_exclusive);
/* Replace cyrus.header with the fields of `mb` (temp file, rename). */
int mailbox_header_write(struct mailbox *mb);
/* Take the committed usage of the index header as the base the next
 * commit's quota change is measured from (exclusive lock taken). */
void mailbox_quota_rebase(struct mailbox *mb);

/* mailbox_index.c */
void index_header_encode(const struct mailbox_index_header *ih,
                         unsigned char out[INDEX_HEADER_SIZE]);
int index_header_decode(const char *path, const unsigned char *p,
                        size_t filesize, struct mailbox_index_header *ih);
void index_record_encode(const struct mailbox_record *rec,
                         unsigned char out[INDEX_RECORD_SIZE]);
/* Decode the record at `p` (number `recno`); checks its CRC and that
 * 0 < uid < uidnext.  Returns 0 or ERR_CORRUPT (logged against
 * `path`). */
int index_record_decode(const char *path, const unsigned char *p,
                        uint32_t recno, uint32_t uidnext,
                        struct mailbox_record *rec);
int index_write_header(struct mailbox *mb);
int index_load(struct mailbox *mb);
int index_recount(struct mailbox *mb, struct mailbox_index_header *ih);
void index_count_record(struct mailbox_index_header *ih,
                        const struct mailbox_record *rec, int sign);

/* mailbox_cache.c */
void cache_header_encode(uint32_t generation,
                         unsigned char out[CACHE_HEADER_SIZE]);
int cache_header_check(const char *path, const char *base, size_t size,
                       uint32_t *generation_r);
void cache_build_record(const struct message *msg, uint32_t uid,
                        struct buf *out);
int cache_record_span(struct mailbox *mb, const struct mailbox_record *rec,
                      const char **base_r, size_t *len_r);
/* Check the whole cache record of `uid` at `off` in the cache bytes
 * [base, base+size): bounds, owner, every field present once with a
 * good CRC.  Sets *len_r to its length.  Returns 0 or ERR_CORRUPT (not
 * logged: reconstruct reports it). */
int cache_record_check(const char *base, size_t size, uint64_t off,
                       uint32_t uid, size_t *len_r);

/* mailbox_append.c */
/* Fill GUID, size, header size, sent date and cache version of `rec`
 * from the parsed message `msg` of `len` bytes at `base` (internaldate
 * must be set).  Returns 0 or ERR_INTERNAL. */
int append_fill_record(struct mailbox_record *rec, const struct message *msg,
                       const char *base, size_t len);

#endif /* COLUMBA_IMAP_MAILBOX_INTERNAL_H */

/* The cyrusdb interface: every database of Columba (mailboxes.db, quotas,
 * seen state, subscriptions, annotations, ...) is a key-value store
 * behind this interface, with the backend chosen per database in
 * imapd.conf (twoskip, flat, sql, quotalegacy). */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_LIB_CYRUSDB_H
#define COLUMBA_LIB_CYRUSDB_H

#include <stddef.h>

#include "lib/strarray.h"

/* Opaque handles.  A `struct txn` is a write transaction; holding one
 * holds the database's exclusive lock until commit or abort. */
struct db;
struct txn;

/* Flags for cyrusdb_open(). */
enum {
    CYRUSDB_CREATE = 0x01,   /* create the file if missing */
    CYRUSDB_MBOXSORT = 0x02, /* mailbox-name order (see below) */
    CYRUSDB_NOCONVERT = 0x04, /* fail instead of converting a file whose
                                 backend differs from the requested one */
    CYRUSDB_RDONLY = 0x08,   /* never write (tools; `show`, `consistent`) */
    CYRUSDB_NOSYNC = 0x10,   /* skip fsync on commit (tests, rebuilds) */
    CYRUSDB_NOCOMPACT = 0x20 /* never repack automatically */
};

/* Return codes: 0, or ERR_NOTFOUND (fetch of a missing key; create of an
 * existing key gives ERR_EXISTS), ERR_IO, ERR_CORRUPT (damaged file:
 * logged), ERR_LOCKED, ERR_DB_BADFORMAT, ERR_DB_BADBACKEND,
 * ERR_DB_READONLY, ERR_DB_TXN, ERR_INVALID, from lib/error.h; a foreach
 * callback's non-zero return is passed back unchanged. */

/* Keys and values.  A key is 1 to CYRUSDB_MAXKEYLEN bytes of any value
 * (NUL included); an empty key is ERR_INVALID for every call except
 * fetchnext (where keylen 0 means "from the start") and foreach (empty
 * prefix: everything).  A value is 0 to CYRUSDB_MAXDATALEN bytes; empty
 * values are stored and fetched as such.  Longer keys or values are
 * ERR_TOOBIG.  The quotalegacy backend accepts only keys that are valid
 * quota root names (see lib/cyrusdb_quotalegacy.c) and non-empty
 * values; anything else is ERR_INVALID there. */
#define CYRUSDB_MAXKEYLEN 65535
#define CYRUSDB_MAXDATALEN (256 * 1024 * 1024)

/* Key order.  Raw order compares keys as unsigned bytes, shorter first
 * on a common prefix.  Mailbox-name order (CYRUSDB_MBOXSORT) is the same
 * except that the hierarchy separators '.' and '/' sort before every
 * other byte except NUL, so "user.alice" is followed by "user.alice.X"
 * before "user.alice-2": a mailbox's children follow it, and LIST is a
 * range scan.  twoskip and sql record the order in the file when it is
 * created and keep using it whatever later opens ask for (so a tool
 * cannot damage a database by guessing wrong); flat and quotalegacy
 * follow the flags of each open.  cyrusdb_compar() gives the order in
 * use. */

/* A filter called before `cb` in cyrusdb_foreach: return non-zero to
 * have cb called for the record.  Must be cheap; must not touch the db. */
typedef int cyrusdb_filter_t(void *rock, const char *key, size_t keylen,
                             const char *data, size_t datalen);
/* Called for each record; a non-zero return stops the walk and is
 * returned by cyrusdb_foreach.  It may write to the same db inside the
 * same transaction (including deleting the current record); the walk
 * continues after the current key as it is then. */
typedef int cyrusdb_cb_t(void *rock, const char *key, size_t keylen,
                         const char *data, size_t datalen);

/* Transactions: every call takes `struct txn **tid`.  tid == NULL means
 * a one-shot operation (its own lock, committed at once for writes).
 * *tid == NULL begins a transaction, stored into *tid; later calls with
 * the same tid run inside it until cyrusdb_commit or cyrusdb_abort.
 * Data pointers returned by fetch/foreach are valid until the next call
 * on the same db. */

/* Initialise/shut down the backends (recovery of an environment, etc). */
int cyrusdb_init(void);
void cyrusdb_done(void);

/* Open `fname` with backend `backend` ("twoskip", "flat", "sql",
 * "quotalegacy"; NULL means the default, twoskip).  A file written by a
 * different backend is recognised by its header and converted (logged)
 * unless CYRUSDB_NOCONVERT.  A missing file without CYRUSDB_CREATE is
 * ERR_NOTFOUND.  The caller closes *dbp with cyrusdb_close. */
int cyrusdb_open(const char *backend, const char *fname, int flags,
                 struct db **dbp);
/* Open and begin a transaction at once (lock held on return). */
int cyrusdb_lockopen(const char *backend, const char *fname, int flags,
                     struct db **dbp, struct txn **tid);
/* Close; aborts any open transaction (logged).  NULL accepted. */
int cyrusdb_close(struct db *db);

/* Fetch the value of `key`; ERR_NOTFOUND when absent. */
int cyrusdb_fetch(struct db *db, const char *key, size_t keylen,
                  const char **data, size_t *datalen, struct txn **tid);
/* Same but takes the write lock first (begins a transaction when
 * tid != NULL), for read-modify-write. */
int cyrusdb_fetchlock(struct db *db, const char *key, size_t keylen,
                      const char **data, size_t *datalen,
                      struct txn **tid);
/* The first record with key strictly after `key` in the db's order
 * (keylen 0: the first record); ERR_NOTFOUND at the end. */
int cyrusdb_fetchnext(struct db *db, const char *key, size_t keylen,
                      const char **foundkey, size_t *fklen,
                      const char **data, size_t *datalen,
                      struct txn **tid);
/* Walk records whose key starts with `prefix` in order. */
int cyrusdb_foreach(struct db *db, const char *prefix, size_t prefixlen,
                    cyrusdb_filter_t *filter, cyrusdb_cb_t *cb, void *rock,
                    struct txn **tid);

/* Insert a new record; ERR_EXISTS if present. */
int cyrusdb_create(struct db *db, const char *key, size_t keylen,
                   const char *data, size_t datalen, struct txn **tid);
/* Insert or replace. */
int cyrusdb_store(struct db *db, const char *key, size_t keylen,
                  const char *data, size_t datalen, struct txn **tid);
/* Delete; ERR_NOTFOUND when absent unless `force`. */
int cyrusdb_delete(struct db *db, const char *key, size_t keylen,
                   struct txn **tid, int force);

int cyrusdb_commit(struct db *db, struct txn *tid);
int cyrusdb_abort(struct db *db, struct txn *tid);

/* Write a human-readable dump to stdout (detail 0: key/value lines;
 * higher: backend structure). */
int cyrusdb_dump(struct db *db, int detail);
/* Check every invariant of the file; ERR_CORRUPT (logged) if broken. */
int cyrusdb_consistent(struct db *db);
/* Repack to a fresh file swapped in atomically (readers keep working). */
int cyrusdb_checkpoint(struct db *db);
/* Compare two keys in this db's order. */
int cyrusdb_compar(struct db *db, const char *a, size_t alen,
                   const char *b, size_t blen);

/* Make consistent copies of the named database files into `dirname`
 * (for backup), using each file's backend to take a stable snapshot. */
int cyrusdb_archive(const char *backend, const strarray_t *fnames,
                    const char *dirname);
/* Remove a database file (and any side files). */
int cyrusdb_unlink(const char *backend, const char *fname, int flags);

/* Copy every record of one database into another (cvt_cyrusdb). */
int cyrusdb_convert(const char *fromfname, const char *frombackend,
                    const char *tofname, const char *tobackend);
/* The same with open flags for the copy: CYRUSDB_MBOXSORT sets the key
 * order of the new file (for sources such as flat that do not record
 * their order; a twoskip source's own order is kept anyway).
 * frombackend NULL means "detect".  The source is read inside a write
 * transaction, so the copy is a consistent snapshot. */
int cyrusdb_convert_ext(const char *fromfname, const char *frombackend,
                        const char *tofname, const char *tobackend,
                        int flags);

/* Which backend wrote this file? Returns its name, or NULL when the file
 * is missing or unrecognised. */
const char *cyrusdb_detect(const char *fname);

/* NULL-terminated list of compiled-in backend names. */
const char *const *cyrusdb_backend_names(void);
/* Is `name` a known backend? */
int cyrusdb_backend_exists(const char *name);

/* Key comparison used for mailbox-name order, exposed for other modules
 * (mboxlist sorting, tests). */
int cyrusdb_mboxcmp(const char *a, size_t alen, const char *b, size_t blen);
/* Raw byte order. */
int cyrusdb_rawcmp(const char *a, size_t alen, const char *b, size_t blen);

/* ------------------------------------------------------------------
 * For backend implementations only (lib/cyrusdb_*.c).
 * ------------------------------------------------------------------ */

/* Remove a single-file database and its "<fname>.NEW" repack leftover;
 * a missing file is fine.  Returns 0 or ERR_IO (logged). */
int cyrusdb_unlink_file(const char *fname);

struct cyrusdb_backend {
    const char *name;
    /* Is `header` (the first `len` bytes of a file) this backend's? */
    int (*detect)(const char *header, size_t len);
    int (*open)(const char *fname, int flags, struct db **dbp,
                struct txn **tid);
    int (*close)(struct db *db);
    int (*fetch)(struct db *db, const char *key, size_t keylen,
                 const char **data, size_t *datalen, struct txn **tid);
    int (*fetchlock)(struct db *db, const char *key, size_t keylen,
                     const char **data, size_t *datalen, struct txn **tid);
    int (*fetchnext)(struct db *db, const char *key, size_t keylen,
                     const char **foundkey, size_t *fklen,
                     const char **data, size_t *datalen, struct txn **tid);
    int (*foreach)(struct db *db, const char *prefix, size_t prefixlen,
                   cyrusdb_filter_t *filter, cyrusdb_cb_t *cb, void *rock,
                   struct txn **tid);
    int (*create)(struct db *db, const char *key, size_t keylen,
                  const char *data, size_t datalen, struct txn **tid);
    int (*store)(struct db *db, const char *key, size_t keylen,
                 const char *data, size_t datalen, struct txn **tid);
    int (*delete)(struct db *db, const char *key, size_t keylen,
                  struct txn **tid, int force);
    int (*commit)(struct db *db, struct txn *tid);
    int (*abort)(struct db *db, struct txn *tid);
    int (*dump)(struct db *db, int detail);
    int (*consistent)(struct db *db);
    int (*checkpoint)(struct db *db);
    int (*archive)(const strarray_t *fnames, const char *dirname);
    int (*unlink)(const char *fname, int flags);
    /* Optional: the order of this open db (when the file, not the open
     * flags, decides it); NULL means the order given by the flags. */
    int (*compar)(struct db *db, const char *a, size_t alen,
                  const char *b, size_t blen);
};

struct buf;

/* Append `s` to `out` escaped for a one-line text form (flat files,
 * dumps): TAB, LF, CR, backslash and every byte outside printable
 * ASCII become "\t", "\n", "\r", "\\" or "\xHH". */
void cyrusdb_escape(struct buf *out, const char *s, size_t len);

/* Append the unescaped form of `s` to `out`.  Returns 0, or
 * ERR_CORRUPT for a malformed escape (nothing is appended then beyond
 * what was decoded). */
int cyrusdb_unescape(struct buf *out, const char *s, size_t len);

#endif /* COLUMBA_LIB_CYRUSDB_H */

/* Quota roots: per-resource usage and limits kept in the quota database
 * (quota_db), found for a mailbox by walking up its name. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_IMAP_QUOTA_H
#define COLUMBA_IMAP_QUOTA_H

#include <stdint.h>

#include "lib/buf.h"

struct txn;

/* Resources (RFC 9208).  Usage of the storage resources is counted in
 * bytes, their limits in KiB (1024 bytes), as IMAP GETQUOTA reports
 * them; MESSAGE and MAILBOX count messages and mailboxes. */
enum quota_resource {
    QUOTA_STORAGE = 0,      /* STORAGE */
    QUOTA_MESSAGE,          /* MESSAGE */
    QUOTA_ANNOTSTORAGE,     /* ANNOTATION-STORAGE, X-ANNOTATION-STORAGE */
    QUOTA_NUMFOLDERS,       /* MAILBOX, X-NUM-FOLDERS */
    QUOTA_NUMRESOURCES
};

/* A limit of QUOTA_UNLIMITED means "no limit on this resource". */
#define QUOTA_UNLIMITED ((int64_t)-1)

/* Largest limit accepted (so that limit * 1024 never overflows). */
#define QUOTA_LIMIT_MAX (INT64_MAX / 1024)

/* Longest quota root name, in bytes. */
#define QUOTA_ROOT_MAX 490

/* One quota root.  `root` is owned by the struct (quota_fini frees it). */
struct quota {
    char *root;
    int64_t useds[QUOTA_NUMRESOURCES];
    int64_t limits[QUOTA_NUMRESOURCES];
};

/* Set up `q` for root `root` (copied; may be NULL) with no usage and
 * every limit QUOTA_UNLIMITED. */
void quota_init(struct quota *q, const char *root);
/* Release what quota_init/quota_read put in `q`; NULL accepted. */
void quota_fini(struct quota *q);

/* The Cyrus name of a resource ("STORAGE", "MESSAGE",
 * "X-ANNOTATION-STORAGE", "X-NUM-FOLDERS"), or NULL when out of range. */
const char *quota_resource_name(enum quota_resource res);
/* The RFC 9208 name ("STORAGE", "MESSAGE", "ANNOTATION-STORAGE",
 * "MAILBOX"), or NULL. */
const char *quota_resource_rfcname(enum quota_resource res);
/* Look a resource name up (either spelling, any case).  Returns 0 and
 * sets *res_r, or ERR_NOTFOUND. */
int quota_resource_lookup(const char *name, enum quota_resource *res_r);

/* The value stored for `q` (format in imap/quota.c) appended to `out`. */
void quota_encode(const struct quota *q, struct buf *out);
/* Parse a stored value into `q` (already initialised; its root is kept).
 * Returns 0, ERR_CORRUPT for a malformed value, or ERR_DB_BADFORMAT for
 * a value written by a newer format version. */
int quota_decode(struct quota *q, const char *data, size_t len);

/* Close the quota database (it is opened on first use, at quota_db_path
 * or {configdirectory}/quotas.db with the quota_db backend).  Any
 * transaction still open is aborted. */
void quota_close(void);

/* Read quota root `root` into `q` (initialised here; quota_fini it even
 * on failure).  With `wrlock` the root is locked for writing: tid must
 * then be non-NULL, and *tid holds the transaction for quota_write and
 * quota_commit.  Returns 0, ERR_QUOTA_ROOT_NONEXISTENT, ERR_INVALID for
 * a bad root name, or a database error; after a failed locking read
 * *tid may still hold the transaction: end it with quota_abort. */
int quota_read(const char *root, struct quota *q, struct txn **tid,
               int wrlock);

/* Store `q` (creating its root if needed).  Limits must be
 * QUOTA_UNLIMITED or 0..QUOTA_LIMIT_MAX and usage >= 0, else
 * ERR_INVALID.  tid as for cyrusdb: NULL commits at once. */
int quota_write(const struct quota *q, struct txn **tid);

/* End a transaction begun by quota_read(wrlock), quota_write, ... */
int quota_commit(struct txn **tid);
int quota_abort(struct txn **tid);

/* Add deltas[res] (may be negative) to the usage of `root`, reading and
 * writing under the root's write lock so concurrent updates are never
 * lost.  Usage that would drop below 0 is clamped to 0 (logged).  With
 * tid NULL the change is committed at once.  Returns 0,
 * ERR_QUOTA_ROOT_NONEXISTENT, or a database error. */
int quota_update_usage(const char *root,
                       const int64_t deltas[QUOTA_NUMRESOURCES],
                       struct txn **tid);

/* Would adding deltas[] go over a limit?  A resource whose delta is
 * negative, or which has no limit, always passes; otherwise it fails
 * when usage + delta exceeds the limit (for STORAGE and
 * ANNOTATION-STORAGE the limit times 1024).  deltas NULL checks with
 * all deltas 0 (is any resource already over?).  Returns 0 or
 * ERR_QUOTA_EXCEEDED. */
int quota_check(const struct quota *q,
                const int64_t deltas[QUOTA_NUMRESOURCES]);

/* The quota root governing mailbox `mboxname`: the mailbox itself or
 * its nearest ancestor that is a quota root ("user.alice.Sent.2024"
 * finds "user.alice"), ending with the domain root "<domain>!" for a
 * name in a domain.  Returns 0 and a malloc'd root in *root_r, or
 * ERR_QUOTA_ROOT_NONEXISTENT, or a database error. */
int quota_find_root(const char *mboxname, char **root_r);

/* Remove quota root `root`.  Returns 0, ERR_QUOTA_ROOT_NONEXISTENT or a
 * database error. */
int quota_delete_root(const char *root, struct txn **tid);

/* Called by quota_foreach with each root in mailbox order; `q` is valid
 * for the call only.  A non-zero return stops the walk and is returned. */
typedef int quota_foreach_cb(const struct quota *q, void *rock);

/* Call `cb` for every quota root whose name starts with `prefix` (NULL
 * or "" for all).  Roots that fail to decode are logged and skipped. */
int quota_foreach(const char *prefix, quota_foreach_cb *cb, void *rock,
                  struct txn **tid);

/* Percent of the limit of `res` in use (rounded down, may exceed 100),
 * or -1 when the resource is unlimited. */
int quota_usage_percent(const struct quota *q, enum quota_resource res);

/* Should the client be warned about `res`?  True when usage is above
 * quotawarnpercent (else quotawarn) percent of the limit and, for
 * STORAGE, quotawarnsize (else quotawarnkb) is 0 or fewer than that
 * many KiB remain (or the limit is below it); for
 * MESSAGE the same with quotawarnmsg messages.  False when unlimited. */
int quota_should_warn(const struct quota *q, enum quota_resource res);

/* A quota warning that is due (quota_warning_check()). */
struct quota_warning {
    char *root;                 /* the quota root (owned) */
    enum quota_resource res;    /* the fullest resource due a warning */
    int percent;                /* its usage in percent of the limit */
    int64_t used;               /* its usage (bytes or a count) */
    int64_t limit;              /* its limit (KiB or a count) */
};

/* For the daemons, after an append to `mboxname` (IMAP APPEND/COPY,
 * LMTP delivery) or the creation of a mailbox: is a quota warning due
 * on its root?  The root is read afresh and every resource checked
 * with quota_should_warn(), so quotawarnpercent (else quotawarn),
 * quotawarnsize (else quotawarnkb) and quotawarnmsg apply.  Returns 0
 * with *w_r filled for the fullest resource due one (release it with
 * quota_warning_fini()), ERR_NOTFOUND when none is due or the mailbox
 * has no quota root, or a database error. */
int quota_warning_check(const char *mboxname, struct quota_warning *w_r);

/* Free what quota_warning_check() put in `w` and clear it; NULL
 * accepted. */
void quota_warning_fini(struct quota_warning *w);

#endif /* COLUMBA_IMAP_QUOTA_H */

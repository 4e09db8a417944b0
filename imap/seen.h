/* Seen state: which messages of each mailbox a user has read, kept in a
 * per-user database ({configdirectory}/user/<h>/<user>.seen). */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_IMAP_SEEN_H
#define COLUMBA_IMAP_SEEN_H

#include <stdint.h>
#include <time.h>

/* Longest mailbox unique id accepted as a key, in bytes. */
#define SEEN_UNIQUEID_MAX 255

/* Longest seen UID set stored, in bytes (bounds a hostile record); a
 * set must also fit in SEQSET_MAX_TERMS ranges to be written. */
#define SEEN_SEQ_MAX (16 * 1024 * 1024)

/* What the user has seen of one mailbox.  `seenuids` is a sequence set
 * (imap/seqset.h, no "*"), "" when nothing is seen; it is owned by the
 * struct and released with seen_freedata(). */
struct seendata {
    time_t lastread;        /* when the user last looked at the mailbox */
    uint32_t lastuid;       /* highest UID when it was last looked at */
    time_t lastchange;      /* when the seen set last changed */
    char *seenuids;
};

#define SEENDATA_INITIALIZER { 0, 0, 0, NULL }

/* Release sd->seenuids and zero the struct; NULL accepted. */
void seen_freedata(struct seendata *sd);

/* One user's open seen database. */
struct seen;

/* seen_open() flags. */
enum {
    SEEN_CREATE = 0x01      /* create the database if it is missing */
};

/* Open `userid`'s seen database (backend seenstate_db).  Without
 * SEEN_CREATE a missing database is ERR_NOTFOUND.  Returns 0 and a
 * handle in *seendb_r (close it with seen_close), ERR_INVALID for a bad
 * user id, or a database error. */
int seen_open(const char *userid, int flags, struct seen **seendb_r);

/* Commit any locked record and close; *seendb is set to NULL.  Returns
 * the commit's result.  NULL and *seendb == NULL accepted. */
int seen_close(struct seen **seendb);

/* Read the record of mailbox `uniqueid` into `sd` (any previous seenuids
 * is freed).  A mailbox with no record reads as all zero with an empty
 * set.  Returns 0, ERR_INVALID for a bad unique id, ERR_CORRUPT for a
 * damaged record (logged), or a database error. */
int seen_read(struct seen *seendb, const char *uniqueid,
              struct seendata *sd);

/* The same, but takes the database's write lock first and keeps it
 * until seen_write(), seen_unlock() or seen_close(): the way to change
 * a record without losing a concurrent change. */
int seen_lockread(struct seen *seendb, const char *uniqueid,
                  struct seendata *sd);

/* Write the record of `uniqueid` (inside the lock of seen_lockread when
 * held, which it then commits and releases).  sd->seenuids NULL means
 * "".  Returns 0, ERR_INVALID for a bad unique id or a seenuids that is
 * not a sequence set (a held lock is kept then: seen_unlock releases
 * it), or a database error (the lock is released). */
int seen_write(struct seen *seendb, const char *uniqueid,
               const struct seendata *sd);

/* Release the lock of seen_lockread without writing. */
int seen_unlock(struct seen *seendb);

/* Called for each record by seen_foreach; `sd` is valid for the call
 * only.  A non-zero return stops the walk and is returned. */
typedef int seen_foreach_cb(const char *uniqueid, const struct seendata *sd,
                            void *rock);

/* Call `cb` for every record in key order; damaged records are logged
 * and skipped. */
int seen_foreach(struct seen *seendb, seen_foreach_cb *cb, void *rock);

/* Remove the record of mailbox `uniqueid` from `userid`'s database
 * (mailbox deleted).  A missing database or record is success. */
int seen_delete_mailbox(const char *userid, const char *uniqueid);

/* Copy `olduser`'s records into a new database for `newuser` (user
 * rename).  The old database is left for the caller to remove with
 * seen_delete_user() once the rename is done.  A missing old database is
 * success (nothing to copy); an existing new one is ERR_EXISTS. */
int seen_rename_user(const char *olduser, const char *newuser);

/* Remove `userid`'s seen database.  Missing is success. */
int seen_delete_user(const char *userid);

#endif /* COLUMBA_IMAP_SEEN_H */

/* Duplicate delivery suppression: remembers which message (by
 * Message-ID) went to which recipient or mailbox, and when. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_IMAP_DUPLICATE_H
#define COLUMBA_IMAP_DUPLICATE_H

#include <stdint.h>
#include <time.h>

/* Longest accepted parts of a key, in bytes.  A Message-ID longer than
 * a header line may be (RFC 5322: 998) cannot come from a well-formed
 * message; such keys are never marked, so the message is delivered
 * again rather than refused. */
#define DUPLICATE_ID_MAX 998
#define DUPLICATE_TO_MAX 1024
#define DUPLICATE_DATE_MAX 256

/* What a mark is about.  `id` is the Message-ID (or another id, such as
 * a Sieve vacation or redirect tracking id); `to` the recipient address
 * or internal mailbox name; `date` an optional third part (NULL or "")
 * that keeps apart marks that must not collide, e.g. the date of the
 * message for vacation replies.  No part may hold a NUL. */
struct duplicate_key {
    const char *id;
    const char *to;
    const char *date;
};

#define DUPLICATE_KEY_INIT(id, to, date) { (id), (to), (date) }

/* Close the database (opened on first use at duplicate_db_path or
 * {configdirectory}/deliver.db with the duplicate_db backend). */
void duplicate_close(void);

/* When was `key` marked?  Returns the mark time, or 0 when never marked,
 * for an empty id, an over-long part, or a database error (logged): on
 * doubt we deliver again rather than lose a message.  With `uid_r` set,
 * it receives the UID stored with the mark (0 when none). */
time_t duplicate_check(const struct duplicate_key *key, uint32_t *uid_r);

/* Remember `key` as delivered at `mark` with `uid` (0 when there is no
 * mailbox message, e.g. a vacation reply).  An empty id is never marked:
 * returns ERR_INVALID, as does an over-long part.  Else 0 or a database
 * error. */
int duplicate_mark(const struct duplicate_key *key, time_t mark,
                   uint32_t uid);

/* Forget marks older than `days` days before `now` (cyr_expire -E;
 * `now` 0 means the current time).  Counts into *deleted_r and *kept_r
 * when not NULL.  Damaged records are removed too (logged).  Returns 0
 * or a database error. */
int duplicate_prune(int days, time_t now, unsigned long *deleted_r,
                    unsigned long *kept_r);

/* Called for each mark by duplicate_foreach; valid for the call only.
 * `date` is "" when the key has none.  Non-zero stops the walk. */
typedef int duplicate_foreach_cb(const struct duplicate_key *key,
                                 time_t mark, uint32_t uid, void *rock);

/* Call `cb` for every mark whose id starts with `idprefix` (NULL or ""
 * for all), in key order (tools, replication). */
int duplicate_foreach(const char *idprefix, duplicate_foreach_cb *cb,
                      void *rock);

#endif /* COLUMBA_IMAP_DUPLICATE_H */

/* The one path by which messages enter the mail store: rights and quota
 * checks, the append itself, quota accounting, and multi-recipient
 * delivery with single-instance store.  IMAP APPEND/COPY and LMTP call
 * it; nothing else appends to a mailbox on behalf of a client. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_IMAP_APPEND_H
#define COLUMBA_IMAP_APPEND_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "lib/buf.h"
#include "lib/strarray.h"
#include "imap/acl.h"

/* append_setup() flags. */
#define APPEND_IGNORE_QUOTA 0x01u   /* no quota check (usage still
                                     * counted): admin tools, moves */
#define APPEND_DELIVERY     0x02u   /* LMTP/Sieve delivery: needs 'p'
                                     * instead of 'i', and quota follows
                                     * lmtp_strict_quota */
#define APPEND_IGNORE_ACL   0x04u   /* the caller has authorised the
                                     * append (delivery to the owner's
                                     * own INBOX); no right is checked */

/* An append in progress to one mailbox (opaque). */
struct append_state;

/* Start appending to `mboxname` as `auth` (NULL: anonymous).  Looks the
 * mailbox up, checks the right ('i', or 'p' with APPEND_DELIVERY;
 * admins pass and the override is logged at LOG_NOTICE), finds the
 * quota root and refuses a mailbox already over its STORAGE or MESSAGE
 * limit, then opens the mailbox for writing (exclusive lock held until
 * append_commit() or append_abort()).  Returns 0 and *as_r, or
 * ERR_MAILBOX_NONEXISTENT, ERR_ACL_DENIED, ERR_QUOTA_EXCEEDED, or an
 * error of the mailbox list, quota database or mailbox. */
int append_setup(const char *mboxname, const struct auth_state *auth,
                 unsigned flags, struct append_state **as_r);

/* Add one message: the staging file `msgfile` (hard-linked into the
 * mailbox when singleinstancestore is on and the file system allows,
 * else copied) or, with `msgfile` NULL, `len` bytes at `base`.
 * `internaldate` 0 means now.  `flags` (may be NULL) are IMAP flag
 * names: "\Seen", "\Answered", "\Flagged", "\Deleted", "\Draft" (any
 * case) and keywords, which get a user-flag slot if they have none.
 * With strict quota (IMAP, or lmtp_strict_quota for deliveries) the
 * message is refused when it would take the root over its STORAGE or
 * MESSAGE limit.  Sets *uid_r (may be NULL).  Nothing is visible until
 * append_commit().  Returns 0, ERR_QUOTA_EXCEEDED, ERR_INVALID (bad
 * flag, "\Recent", unparsable message), ERR_MAILBOX_USERFLAGS_FULL,
 * ERR_TOOBIG or ERR_IO; a failed add leaves the earlier ones pending. */
int append_add(struct append_state *as, const char *msgfile,
               const char *base, size_t len, time_t internaldate,
               const strarray_t *flags, uint32_t *uid_r);

/* Number of messages added and not yet committed. */
unsigned append_count(const struct append_state *as);

/* Make the added messages durable (see the design comment in
 * imap/append.c for the order), count them into the quota root, close
 * the mailbox and free *asp (NULL accepted: 0).  Returns 0 once the
 * messages are durable (a quota update that fails afterwards is logged
 * and does not make the append fail), else the mailbox's error: then
 * nothing was stored. */
int append_commit(struct append_state **asp);

/* Discard everything added, close the mailbox, free *asp; NULL
 * accepted. */
void append_abort(struct append_state **asp);

/* One recipient mailbox of append_deliver_many(), with its outcome. */
struct append_target {
    const char *mboxname;       /* in: internal name */
    unsigned flags;             /* in: append_setup() flags */
    uint32_t uid;               /* out: UID given, when r is 0 */
    int r;                      /* out: 0 or this recipient's error */
};

/* Deliver the staging file `msgfile` to every target, each in its own
 * durable transaction and with its own result in targets[i].r.  With
 * singleinstancestore on, every mailbox on one partition gets a hard
 * link to the same file (the staging file when it is on that partition,
 * else the first copy made there); off, each gets its own copy.
 * Returns 0 when every target succeeded, else the first target's error
 * (every target is attempted either way). */
int append_deliver_many(const char *msgfile, time_t internaldate,
                        const strarray_t *flags,
                        const struct auth_state *auth,
                        struct append_target *targets, size_t ntargets);

/* The path for a new staging file on `partition`, in its "stage."
 * directory (created when missing), unique to this process, into `out`
 * (reset first).  The caller creates the file (O_EXCL) and removes it
 * after delivery.  Returns 0, ERR_PARTITION_UNKNOWN or ERR_IO. */
int append_stage_path(const char *partition, struct buf *out);

#endif /* COLUMBA_IMAP_APPEND_H */

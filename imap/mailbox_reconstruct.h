/* Rebuilding a mailbox's cyrus.header, cyrus.index and cyrus.cache from
 * its message files and what mailboxes.db says about it (reconstruct). */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_IMAP_MAILBOX_RECONSTRUCT_H
#define COLUMBA_IMAP_MAILBOX_RECONSTRUCT_H

#include <stdint.h>

#include "imap/mailbox.h"

/* Flags for mailbox_reconstruct(). */
#define MAILBOX_RECONSTRUCT_GUID 0x1u   /* re-read every message file and
                                         * check it against its GUID */

/* What the mailbox should be, from its mailboxes.db entry. */
struct mailbox_reconstruct_spec {
    const char *name;           /* internal name; required */
    const char *uniqueid;       /* required to recreate cyrus.header */
    enum mailbox_type type;
    const char *acl;            /* NULL: keep the header's copy */
    uint32_t uidvalidity;       /* used when the index is lost; 0: now */
};

/* Told about each fix as it is made: `uid` is 0 for a fix of the whole
 * mailbox; `what` is a short text ("message file missing: record
 * removed") valid during the call. */
typedef void mailbox_reconstruct_report_t(const char *name, uint32_t uid,
                                          const char *what, void *rock);

/* Reconstruct the mailbox in directory `path` (created when missing).
 * Holds the exclusive header lock throughout, so sessions wait.
 *
 * cyrus.header: recreated from `spec` when missing or unreadable (user
 * flag names are then lost and flag bits without a name cleared); name,
 * unique id, type and ACL made equal to `spec` (mailboxes.db is the
 * authority).  Index records whose message file is intact keep UID,
 * flags, dates and modseqs; a damaged cache record is rebuilt from the
 * file; a file whose size (or, with MAILBOX_RECONSTRUCT_GUID, GUID)
 * no longer matches is re-parsed and its record updated with a new
 * modseq; a record whose file is gone is removed (deleted modseq
 * raised, so QRESYNC clients resynchronise); a file without a record
 * is added, under its own UID when that is at or above UIDNEXT, else
 * renamed to a new UID.  UIDVALIDITY is kept (from `spec` when the
 * index is lost).  Counts and quota usage are recomputed.  The files
 * are rewritten only when something was fixed; each fix is logged and
 * passed to `report` (may be NULL).  Sets *nfixes_r (may be NULL).
 * Returns 0, ERR_INVALID (no name, or no unique id where one is
 * needed), ERR_DB_BADFORMAT (a file of an unknown newer version: left
 * alone), ERR_PERMISSION or ERR_IO. */
int mailbox_reconstruct(const char *path,
                        const struct mailbox_reconstruct_spec *spec,
                        unsigned flags, mailbox_reconstruct_report_t *report,
                        void *rock, unsigned *nfixes_r);

#endif /* COLUMBA_IMAP_MAILBOX_RECONSTRUCT_H */

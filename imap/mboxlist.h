/* The mailbox list (mailboxes.db): every mailbox's type, partition,
 * unique id and ACL, LIST over it, and the one place where mailboxes are
 * created, deleted, renamed and have their ACL changed. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_IMAP_MBOXLIST_H
#define COLUMBA_IMAP_MBOXLIST_H

#include <stdint.h>

#include "imap/acl.h"
#include "imap/mailbox.h"

/* Entry flags (struct mboxlist_entry.flags). */
#define MBOXLIST_FLAG_RESERVED 0x01u  /* being created or renamed: not
                                       * visible; see mboxlist_recover() */
#define MBOXLIST_FLAG_DELETING 0x02u  /* immediate delete in progress */
#define MBOXLIST_FLAG_REMOTE 0x04u    /* lives on `server` (murder) */

/* One mailbox as mailboxes.db describes it. */
struct mboxlist_entry {
    char *name;             /* internal name (the key) */
    enum mailbox_type type;
    char *partition;
    char *uniqueid;         /* stable for life, kept across renames */
    char *acl;              /* stored ACL string (imap/acl.h) */
    char *server;           /* murder backend, NULL when local */
    char *source;           /* reserved rename target: the old name */
    uint64_t createdmodseq; /* list modseq when created */
    uint64_t foldermodseq;  /* list modseq of the last change */
    uint32_t uidvalidity;
    uint32_t flags;         /* MBOXLIST_FLAG_* */
};

/* Free an entry and clear *entryp; NULL accepted. */
void mboxlist_entry_free(struct mboxlist_entry **entryp);

/* Encode `e` (all but its name) into the stored value form, appended
 * to `out`.  The format is described in imap/mboxlist.c. */
void mboxlist_entry_encode(const struct mboxlist_entry *e, struct buf *out);

/* Decode a stored value (`len` bytes) for mailbox `name`.  Returns 0
 * and a new entry (caller frees), or ERR_CORRUPT for anything malformed
 * or over its bounds. */
int mboxlist_entry_decode(const char *name, const char *data, size_t len,
                          struct mboxlist_entry **entry_r);

/* Open the process-wide mailbox list: mboxlist_db_path or
 * <configdirectory>/mailboxes.db with backend mboxlist_db (created when
 * missing).  A second open is a no-op.  Returns 0 or the cyrusdb
 * error (logged). */
int mboxlist_open(void);

/* Close it (no-op when closed). */
void mboxlist_close(void);

/* Look up the active mailbox `name`.  Returns 0 with a new entry in
 * *entry_r (caller frees), ERR_MAILBOX_NONEXISTENT (absent, reserved or
 * being deleted), ERR_CORRUPT, or ERR_INVALID when the list is closed. */
int mboxlist_lookup(const char *name, struct mboxlist_entry **entry_r);

/* The same, by unique id (the "$I" index). */
int mboxlist_lookup_by_id(const char *uniqueid,
                          struct mboxlist_entry **entry_r);

/* Called once per mailbox; a non-zero return stops the walk and is
 * returned.  The entry is valid during the call only. */
typedef int mboxlist_cb_t(const struct mboxlist_entry *entry, void *rock);

/* Call `cb` for every active mailbox whose name is `prefix` or below
 * it (`prefix` NULL or "": every mailbox), in name order. */
int mboxlist_foreach(const char *prefix, mboxlist_cb_t *cb, void *rock);

/* LIST: call `cb` in name order for every active mailbox whose internal
 * name matches `pattern` ('*' any bytes, '%' any bytes but the '.'
 * separator) and on which `auth` has the lookup right ('l'; admins see
 * everything; deleted mailboxes only admins).  The literal head of the
 * pattern bounds the scan.  Returns 0, ERR_INVALID for a pattern longer
 * than 2 * MBOXNAME_MAX, or the callback's return.
 * XXX: patterns are internal names; imapd turns an external LIST
 * reference and pattern into this form (mboxname.h) before calling. */
int mboxlist_findall(const char *pattern, const struct auth_state *auth,
                     mboxlist_cb_t *cb, void *rock);

/* Does `name` have at least one active child mailbox (for CHILDREN)?
 * Returns 1 or 0 (also 0 when the list is closed). */
int mboxlist_haschildren(const char *name);

/* The operations that pass through the hub below. */
enum mboxlist_op {
    MBOXLIST_OP_CREATE = 0,
    MBOXLIST_OP_DELETE,
    MBOXLIST_OP_RENAME,
    MBOXLIST_OP_SETACL
};

/* "create", "delete", "rename", "setacl". */
const char *mboxlist_op_name(enum mboxlist_op op);

/* Hooks around every change: the murder (mupdate) and the replication
 * log sit here.  `before` runs after the rights and name checks but
 * before anything is written; a non-zero return vetoes the change and
 * is returned to the caller.  `after` runs once the change is durable.
 * `newname` is the new name for a rename (also for a delayed delete,
 * where it is the DELETED.* name), NULL otherwise.  `entry` is the
 * entry as it will be (before) or is (after); for a delete, the entry
 * that was removed.  Either function may be NULL. */
struct mboxlist_hooks {
    int (*before)(enum mboxlist_op op, const char *name,
                  const char *newname, const struct mboxlist_entry *entry,
                  void *rock);
    void (*after)(enum mboxlist_op op, const char *name,
                  const char *newname, const struct mboxlist_entry *entry,
                  void *rock);
    void *rock;
};

/* Register the process-wide hooks (copied), NULL to remove them. */
void mboxlist_set_hooks(const struct mboxlist_hooks *hooks);

/* Tests only: called with a point name ("create:after-reserve",
 * "create:after-files", "rename:after-reserve", "rename:after-move",
 * "delete:after-mark") so a test can simulate a crash there. */
void mboxlist_set_test_hook(void (*hook)(const char *point));

/* Create mailbox `name` of `type`.  `partition` NULL means the parent's
 * partition, or partlist_choose_partition() for a top-level mailbox.
 * Rights: admins (is_admin or auth->is_admin) may create anything; a
 * user needs 'k' on the nearest existing ancestor, and never creates a
 * user INBOX.  (Here and below, an admin passing a check a user would
 * fail is logged at LOG_NOTICE as "admin override" with user=, mailbox=
 * and op=.)  When the new name has a quota root, one MAILBOX
 * (X-NUM-FOLDERS) is taken from it under its lock, for admins too.  The
 * new mailbox inherits its parent's ACL; a user INBOX gives its owner
 * every right.  Sets *entry_r (may be NULL; caller frees).  Returns 0,
 * ERR_MAILBOX_BADNAME, ERR_MAILBOX_EXISTS, ERR_ACL_DENIED,
 * ERR_QUOTA_EXCEEDED, ERR_PARTITION_UNKNOWN, a hook's veto, or ERR_IO. */
int mboxlist_create(const char *name, enum mailbox_type type,
                    const char *partition, const struct auth_state *auth,
                    int is_admin, struct mboxlist_entry **entry_r);

/* Enter an existing mailbox (its files are already in place) into the
 * list: reconstruct -f adopting a directory, restores, replication.
 * `entry` is copied; name, type, partition and unique id are required
 * (a NULL ACL is empty), the RESERVED and DELETING flags and `source`
 * are ignored, createdmodseq (0: now) is kept and foldermodseq set.  No
 * rights are checked (callers are admin tools).  The entry, its "$I"
 * key and the list modseq are written in one transaction, the create
 * hooks run (op MBOXLIST_OP_CREATE), and the mailbox, its messages and
 * bytes are added to its quota root.  Returns 0, ERR_INVALID,
 * ERR_MAILBOX_BADNAME, ERR_PARTITION_UNKNOWN, ERR_MAILBOX_EXISTS (the
 * name or the unique id is taken), a hook's veto, or a database
 * error. */
int mboxlist_insert(const struct mboxlist_entry *entry);

/* Delete mailbox `name` (needs 'x', or admin).  With delete_mode
 * delayed (default) and a deletedprefix, the mailbox is renamed to
 * mboxname_to_deleted(name, now), the time bumped by a second at a time
 * while that name is taken (the same name deleted twice within one
 * second); otherwise, or when it is already a
 * deleted mailbox, its files go at once (mailbox_delete).  Deleting a
 * user INBOX takes every mailbox of the user with it.  `force` removes
 * the entry even when the mailbox files cannot be opened (admin
 * clean-up).  The mailbox's folder, messages and bytes leave its quota
 * root.  Returns 0, ERR_MAILBOX_NONEXISTENT, ERR_ACL_DENIED, a hook's
 * veto, or ERR_IO. */
int mboxlist_delete(const char *name, const struct auth_state *auth,
                    int force);

/* Rename `oldname` and every mailbox below it to `newname`, keeping
 * unique ids and UIDVALIDITY.  `partition` NULL keeps each mailbox's
 * partition.  Needs 'x' on the old mailbox and 'k' on the new parent
 * (or admin).  Usage moves between quota roots when the roots differ.
 * A user INBOX renamed by a user, or by an admin into its own
 * hierarchy, follows RFC 3501: `newname` is created (as
 * mboxlist_create() with `partition`), every message moves into it
 * (hard-linked, flags and internal date kept) and is expunged from the
 * INBOX at once; the INBOX stays, empty, and its children stay too.  An
 * admin renaming a user INBOX elsewhere moves the whole user.  Returns
 * 0, ERR_MAILBOX_NONEXISTENT, ERR_MAILBOX_EXISTS, ERR_MAILBOX_BADNAME,
 * ERR_INVALID (into its own subtree), ERR_UNSUPPORTED (partition on
 * another file system), ERR_ACL_DENIED, ERR_QUOTA_EXCEEDED (INBOX
 * rename), a veto, ERR_IO. */
int mboxlist_rename(const char *oldname, const char *newname,
                    const char *partition, const struct auth_state *auth);

/* SETACL: apply `rights` ("lrs", "+lrs", "-lrs"; "" removes the entry)
 * for `identifier` on `name`.  Needs 'a' (owners have it implicitly).
 * Returns 0, ERR_MAILBOX_NONEXISTENT, ERR_ACL_DENIED, ERR_INVALID,
 * a veto, or ERR_IO. */
int mboxlist_setacl(const char *name, const char *identifier,
                    const char *rights, const struct auth_state *auth);

/* Finish or undo what a crash interrupted: a reserved create is undone
 * (its files removed); a reserved rename is rolled forward when the
 * mailbox header reached the new directory, else back; an interrupted
 * immediate delete is finished.  Sets *count_r (may be NULL) to the
 * number of entries repaired.  Meant for start-up (ctl_cyrusdb -r) and
 * tools, with no other process using the list.  Returns 0 or the first
 * error. */
int mboxlist_recover(unsigned *count_r);

#endif /* COLUMBA_IMAP_MBOXLIST_H */

/* Annotations and metadata (RFC 5464 METADATA): per-mailbox and server
 * entries, shared or private to one user, kept in annotations.db. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_IMAP_ANNOTATE_H
#define COLUMBA_IMAP_ANNOTATE_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

/* Longest entry name without its "/shared" or "/private" prefix. */
#define ANNOTATE_ENTRY_MAX 1024
/* Longest value in bytes.  There is no imapd.conf option for this (the
 * per-root ANNOTATION-STORAGE quota is the administrator's knob); it
 * bounds a single record so one SETMETADATA cannot bloat the db. */
#define ANNOTATE_VALUE_MAX (64 * 1024)

/* Whose value: one shared by everyone, or one per user. */
enum annotate_scope {
    ANNOTATE_SHARED = 0,
    ANNOTATE_PRIVATE
};

/* GETMETADATA DEPTH (RFC 5464 4.2.2): the entry itself only; it and its
 * immediate children; it and everything below it. */
enum annotate_depth {
    ANNOTATE_DEPTH_0 = 0,
    ANNOTATE_DEPTH_1,
    ANNOTATE_DEPTH_INFINITY
};

/* What kind of entry a permission check is about. */
enum annotate_kind {
    ANNOTATE_KIND_MAILBOX_SHARED = 0,
    ANNOTATE_KIND_MAILBOX_PRIVATE,
    ANNOTATE_KIND_SERVER_SHARED,
    ANNOTATE_KIND_SERVER_PRIVATE
};

/* One entry as annotate_foreach reports it; valid during the call. */
struct annotate_entry {
    const char *uniqueid;   /* mailbox unique id, "" for the server */
    const char *name;       /* full name: "/shared/comment" */
    const char *entry;      /* name without the scope prefix: "/comment" */
    enum annotate_scope scope;
    const char *userid;     /* owner of a private value, "" when shared */
    const char *value;      /* not NUL-terminated */
    size_t len;
    uint64_t modseq;
};

/* Called by annotate_foreach; a non-zero return stops the walk and is
 * returned.  The callback must not call other annotate_* functions. */
typedef int annotate_cb_t(const struct annotate_entry *entry, void *rock);

/* Close annotations.db (opened on first use at annotation_db_path or
 * <configdirectory>/annotations.db with backend annotation_db).  A no-op
 * when it is closed. */
void annotate_close(void);

/* Is `entry` (without "/shared" or "/private") a valid entry name: starts
 * with '/', 2 to ANNOTATE_ENTRY_MAX bytes of ASCII 0x20-0x7e, no '*' or
 * '%', no "//", no trailing '/'?  Returns 0 or ERR_INVALID. */
int annotate_check_entry(const char *entry);

/* Split a client's full name ("/shared/comment", "/PRIVATE/vendor/x")
 * into its scope and the entry ("/comment", lower-cased: entry names are
 * compared without regard to case) appended to `entry_r` (reset first).
 * Returns 0, or ERR_INVALID for a name without a scope prefix or with an
 * invalid entry. */
int annotate_parse_name(const char *name, enum annotate_scope *scope_r,
                        struct buf *entry_r);

/* Fetch the value of `entry` on mailbox `uniqueid` (NULL or "" for the
 * server) in `scope`; `userid` names the owner of a private value and is
 * ignored for shared ones.  The value replaces the contents of `value_r`;
 * *modseq_r (may be NULL) gets its modseq.  Returns 0, ERR_NOTFOUND,
 * ERR_INVALID (bad entry, unique id or user id) or a database error. */
int annotate_get(const char *uniqueid, const char *entry,
                 enum annotate_scope scope, const char *userid,
                 struct buf *value_r, uint64_t *modseq_r);

/* Store `len` bytes at `value` as `entry` (NULL value deletes; deleting
 * an absent entry succeeds).  The record gets the next database modseq.
 * *delta_r (may be NULL) gets the change in stored value bytes, which is
 * what ANNOTATION-STORAGE counts.  With `quotaroot` non-NULL the root's
 * ANNOTATION-STORAGE usage is updated under its lock, and a change that
 * grows the usage over the limit is refused with ERR_QUOTA_EXCEEDED and
 * nothing written; a root that does not exist means no accounting.
 * No name policy is applied here (see annotate_setmetadata) and the
 * entry is stored as given: pass names from annotate_parse_name, which
 * lower-cases them, so that walks find them.  Returns
 * 0, ERR_INVALID, ERR_TOOBIG (value over ANNOTATE_VALUE_MAX),
 * ERR_QUOTA_EXCEEDED or a database error. */
int annotate_set(const char *uniqueid, const char *entry,
                 enum annotate_scope scope, const char *userid,
                 const char *value, size_t len, const char *quotaroot,
                 int64_t *delta_r);

/* The client-facing GETMETADATA of one full name (see
 * annotate_parse_name) for `userid`.  "/private/specialuse" is the
 * mailbox's RFC 6154 attribute, the same for every user (see
 * imap/annotate.c); "/shared/specialuse" does not exist.  Returns as
 * annotate_get. */
int annotate_getmetadata(const char *uniqueid, const char *name,
                         const char *userid, struct buf *value_r);

/* The client-facing SETMETADATA of one full name: checks the name, that
 * the entry is known or annotation_allow_undefined is on, and the value
 * of "/private/specialuse" (canonicalised: "\sent" is stored "\Sent"),
 * then stores as annotate_set.  Returns 0, ERR_INVALID (bad name or
 * special-use value), ERR_PERMISSION (undefined entry, or an entry that
 * may not be set this way such as "/shared/specialuse"), ERR_TOOBIG,
 * ERR_QUOTA_EXCEEDED or a database error. */
int annotate_setmetadata(const char *uniqueid, const char *name,
                         const char *userid, const char *value, size_t len,
                         const char *quotaroot, int64_t *delta_r);

/* Call `cb` in entry order for every entry of mailbox `uniqueid` (NULL
 * or "" for the server) matching full name `pattern` at `depth` and
 * visible to `userid`: shared entries, and private entries of `userid`
 * only.  `pattern` may also be just "/shared" or "/private" (every
 * entry of that scope below it; depth 0 then matches nothing).  With
 * `userid` NULL private entries of every user are reported (admin
 * tools).  "/commentary" never matches "/comment".  Returns 0,
 * ERR_INVALID, a database error or the callback's return. */
int annotate_foreach(const char *uniqueid, const char *pattern,
                     enum annotate_depth depth, const char *userid,
                     annotate_cb_t *cb, void *rock);

/* Remove every entry of mailbox `uniqueid` (shared and private) in one
 * transaction, for a mailbox deleted for good.  *freed_r (may be NULL)
 * gets the value bytes removed, for the caller's quota.  Returns 0,
 * ERR_INVALID or a database error. */
int annotate_delete_mailbox(const char *uniqueid, int64_t *freed_r);

/* Copy every entry of mailbox `from` to mailbox `to` (replacing entries
 * of the same name there) in one transaction.  *added_r (may be NULL)
 * gets the change in value bytes of `to`.  With `quotaroot` set the
 * copy is refused with ERR_QUOTA_EXCEEDED when it would go over, and the
 * usage is updated otherwise.  Returns 0, ERR_INVALID, ERR_QUOTA_EXCEEDED
 * or a database error. */
int annotate_copy_mailbox(const char *from, const char *to,
                          const char *quotaroot, int64_t *added_r);

/* The highest modseq given to any record so far (0 for a new database). */
uint64_t annotate_highestmodseq(void);

/* Would adding `delta` value bytes go over the ANNOTATION-STORAGE limit
 * of `quotaroot`?  A NULL or missing root, or a delta <= 0, passes.
 * Returns 0, ERR_QUOTA_EXCEEDED or a database error. */
int annotate_quota_check(const char *quotaroot, int64_t delta);

/* Add `delta` (may be negative) to the ANNOTATION-STORAGE usage of
 * `quotaroot` with quota_update_usage.  A NULL or missing root, or a
 * delta of 0, is a no-op.  Returns 0 or a database error. */
int annotate_quota_apply(const char *quotaroot, int64_t delta);

/* May a session with rights `myrights` (imap/acl.h ACL_* bits of the
 * mailbox; for server entries pass ACL_ADMIN for an admin, else 0) read
 * an entry of `kind`?  The rules (RFC 5464 section 3.3) are listed in
 * imap/annotate.c.  Returns 1 or 0. */
int annotate_may_read(enum annotate_kind kind, uint32_t myrights);

/* The same for setting or deleting an entry of `kind`. */
int annotate_may_write(enum annotate_kind kind, uint32_t myrights);

/* Validate and canonicalise a "/private/specialuse" value: attributes
 * separated by single spaces, each one of \All \Archive \Drafts \Flagged
 * \Junk \Sent \Trash (any case) or listed in specialuse_extra, none
 * twice, at most ANNOTATE_ENTRY_MAX bytes.  The canonical spelling
 * replaces `out` (reset first).  Returns 0 or ERR_INVALID. */
int annotate_specialuse_check(const char *value, size_t len,
                              struct buf *out);

/* The special-use attributes of mailbox `uniqueid` ("\Sent", or several
 * separated by spaces) in `out` (reset first).  Returns 0, ERR_NOTFOUND
 * when it has none, or as annotate_get. */
int annotate_get_specialuse(const char *uniqueid, struct buf *out);

/* ---- Definitions (which entries clients may set) ----
 *
 * With annotation_allow_undefined off, SETMETADATA accepts only defined
 * entries: the built-in ones ("/comment"; "/admin" on the server;
 * "/specialuse"; ANNOTATE_SHAREDSEEN_ENTRY on mailboxes) and those of
 * the file named by annotation_definitions.  That file is read once per
 * process.  Each line that is not empty and does not start with '#'
 * defines one entry as six comma-separated fields (blanks around a
 * field ignored; keywords in any case):
 *
 *   name, scope, type, proxy, attributes, rights
 *
 *   name        the entry, e.g. "/vendor/example/color" (a "/shared" or
 *               "/private" prefix is dropped); compared without case
 *   scope       server | mailbox | message (message entries are kept
 *               but never match SETMETADATA)
 *   type        string | boolean | int | uint (content-type: string);
 *               a value set must fit it (boolean: "true" or "false")
 *   proxy       proxy | backend_only
 *   attributes  space-separated: value (both), value.shared,
 *               value.priv; size*, content-type* and none are accepted
 *               and add nothing
 *   rights      ACL letters the setter of a shared value needs beyond
 *               the usual ones (imap/acl.h), empty or "-" for none;
 *               reported in the definition for the daemons to check
 *
 * A line that does not parse is logged with its number and skipped. */

/* The entry of Cyrus's per-mailbox shared seen state switch (shared
 * scope, boolean): "true" keeps \Seen in the index for every user. */
#define ANNOTATE_SHAREDSEEN_ENTRY "/vendor/cmu/cyrus-imapd/sharedseen"

/* Bounds of the definitions file. */
#define ANNOTATE_DEFFILE_MAX (1024 * 1024)
#define ANNOTATE_DEFLINE_MAX 4096
#define ANNOTATE_DEFS_MAX 10000

/* Scopes a definition covers (bits). */
#define ANNOTATE_DEF_SERVER 0x1u
#define ANNOTATE_DEF_MAILBOX 0x2u
#define ANNOTATE_DEF_MESSAGE 0x4u

/* Attributes a definition allows (bits). */
#define ANNOTATE_ATTR_SHARED 0x1u
#define ANNOTATE_ATTR_PRIVATE 0x2u

enum annotate_type {
    ANNOTATE_TYPE_STRING = 0,
    ANNOTATE_TYPE_BOOLEAN,
    ANNOTATE_TYPE_INT,
    ANNOTATE_TYPE_UINT
};

/* One defined entry. */
struct annotate_def {
    char *entry;                /* lower case, no scope prefix */
    unsigned scopes;            /* ANNOTATE_DEF_* */
    enum annotate_type type;
    int is_proxied;             /* "proxy" (else backend_only) */
    unsigned attribs;           /* ANNOTATE_ATTR_* */
    uint32_t rights;            /* ACL_* bits needed; 0 none */
};

/* Parse `len` bytes of definitions (the format above; `fname` names
 * them in log lines).  Sets *defs_r (free with
 * annotate_definitions_free()) and *ndefs_r to the good lines.
 * Returns 0, or ERR_INVALID when some line was skipped (the good ones
 * are still returned). */
int annotate_definitions_parse(const char *text, size_t len,
                               const char *fname,
                               struct annotate_def **defs_r,
                               size_t *ndefs_r);

/* Free `n` definitions and clear *defsp; NULL accepted. */
void annotate_definitions_free(struct annotate_def **defsp, size_t n);

/* Forget the definitions read from annotation_definitions, so the next
 * lookup reads the file again (configuration reload, tests). */
void annotate_definitions_reset(void);

/* The definition of `entry` (lower case, no scope prefix) for the
 * server (`is_server`) or a mailbox: built-in first, then the site's;
 * NULL when undefined.  Owned by the module. */
const struct annotate_def *annotate_find_definition(const char *entry,
                                                    int is_server);

/* Does `len` bytes of `value` fit `def`'s type?  A NULL definition or
 * value, or a string type, always fits.  Returns 0 or ERR_INVALID. */
int annotate_check_value(const struct annotate_def *def, const char *value,
                         size_t len);

/* The value bytes stored for mailbox `uniqueid`, shared and private,
 * as ANNOTATION-STORAGE counts them (quota -f).  Returns 0 with
 * *bytes_r, ERR_INVALID, or a database error. */
int annotate_mailbox_usage(const char *uniqueid, int64_t *bytes_r);

/* Is ANNOTATE_SHAREDSEEN_ENTRY "true" on mailbox `uniqueid`?  1 or 0
 * (also 0 when it cannot be read). */
int annotate_is_sharedseen(const char *uniqueid);

#endif /* COLUMBA_IMAP_ANNOTATE_H */

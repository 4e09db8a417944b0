/* Mailbox names: the internal form stored in mailboxes.db, the external
 * form clients see in each namespace, validation, and directory paths. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_IMAP_MBOXNAME_H
#define COLUMBA_IMAP_MBOXNAME_H

#include <stdint.h>
#include <time.h>

#include "lib/buf.h"
#include "lib/strarray.h"

/*
 * Internal names (the keys of mailboxes.db, Cyrus-compatible):
 *
 *   [<domain> "!"] [<deletedprefix> "."] ("user." <localpart> | <top>)
 *       *("." <box>) ["." <HEX>]
 *
 *   user.alice                     alice's INBOX
 *   user.alice.Sent                a folder of alice
 *   example.com!user.bob.Work      bob@example.com's folder (virtdomains)
 *   shared.news                    a shared folder
 *   DELETED.user.alice.Sent.5F3A2B1C   delayed-deleted, with the time of
 *                                  deletion in upper-case hex
 *
 * The hierarchy separator is always '.'.  A '.' inside one component
 * (a user id "bob.smith", or a folder "v1.2" created with unixhierarchysep)
 * is stored as '^'.  The decoded components kept in struct mbname hold
 * the real '.', never '^'.
 *
 * External names are what a client sends and sees.  The separator is '/'
 * with unixhierarchysep (a '.' in a component is shown as is) or '.'
 * (a '.' in a component is shown as '^').  Standard namespace:
 *
 *   INBOX, INBOX.Sent       the user's own mailboxes
 *   user.bob, user.bob.Work  other users' mailboxes
 *   shared.news             shared mailboxes, at the root
 *
 * Alternate namespace (altnamespace, never for admins):
 *
 *   INBOX, Sent             own mailboxes at the top level
 *   Other Users/bob/Work    userprefix, then the user
 *   Shared Folders/news     sharedprefix, then the shared name
 *
 * In the alternate namespace a personal folder called "INBOX" (any case)
 * or named like userprefix/sharedprefix at the top cannot be shown; its
 * children "INBOX/x" are stored as user.alice.INBOX.x.  Deleted mailboxes
 * are shown (standard namespace only) as DELETED.user.alice.Sent.HEX and
 * accepted back from admins only.  With virtdomains an admin sees and
 * names other domains' mailboxes with "@domain" at the end:
 * "user.bob.Work@example.com"; ordinary users see only their own domain.
 *
 * Allowed in a decoded component: printable US-ASCII except
 * % * / ! " \ ^, and '&' only as valid modified UTF-7 (RFC 3501 5.1.3).
 * A component may not be empty, start or end with '.' or hold "..", in
 * either separator ("a..b", ".a" and "a." are refused even with '/', so
 * no path trick survives).  The whole internal name is at most
 * MBOXNAME_MAX bytes.
 */

/* Longest internal name, in bytes (as Cyrus's MAX_MAILBOX_NAME). */
#define MBOXNAME_MAX 490

/* Longest path built for a mailbox file or directory. */
#define MBOXNAME_PATH_MAX 4096

/* Longest user id accepted, in bytes. */
#define MBOXNAME_USERID_MAX 255

/* Longest namespace prefix (userprefix, sharedprefix) with separator. */
#define MBOXNAME_PREFIX_MAX 40

/* A name taken apart.  Build one with the mbname_from_* functions (they
 * validate everything), read the fields directly, change it only with the
 * mbname_* mutators so the cached strings stay right. */
struct mbname {
    char *localpart;   /* owner's local part, decoded; NULL: shared */
    char *domain;      /* lower case; NULL: no domain / defaultdomain */
    strarray_t boxes;  /* decoded components below INBOX or the root */
    time_t is_deleted; /* time of deletion, 0 when not deleted */
    char *intname;     /* cache of mbname_intname() */
    char *userid;      /* cache of mbname_userid() */
};

/* The three namespaces of RFC 2342, indexes of struct namespace.prefix. */
enum {
    NAMESPACE_INBOX = 0,
    NAMESPACE_USER = 1,
    NAMESPACE_SHARED = 2
};

/* How one session names mailboxes.  Fill with mboxname_init_namespace();
 * prefixes end with the separator, or are empty. */
struct namespace {
    char hier_sep;   /* '/' or '.' */
    int isalt;       /* alternate namespace in use */
    int isadmin;     /* the session is an admin: standard namespace, may
                      * name deleted mailboxes and other domains */
    char prefix[3][MBOXNAME_PREFIX_MAX + 2];
};

/* Fill `ns` from the configuration (unixhierarchysep, altnamespace,
 * userprefix, sharedprefix).  Admins always get the standard namespace.
 * Returns 0, or ERR_CONFIG when a prefix is empty, too long, holds the
 * separator or a forbidden character, starts with "INBOX", or both
 * prefixes are equal. */
int mboxname_init_namespace(struct namespace *ns, int isadmin);

/* Append the data of an RFC 2342 NAMESPACE response for `ns` to `out`:
 * three parenthesised lists (personal, other users, shared), e.g.
 * (("INBOX." ".")) (("user." ".")) (("" ".")).  No "* NAMESPACE ". */
void mboxname_namespace_response(const struct namespace *ns,
                                 struct buf *out);

/* Parse an internal name.  Returns 0 and a new mbname in *mbname_r
 * (free with mbname_free()), or ERR_MAILBOX_BADNAME for anything outside
 * the grammar above (empty or overlong name, empty component, bad
 * character or modified UTF-7, '!' without virtdomains, a deletedprefix
 * name without its hex time). */
int mbname_from_intname(const char *intname, struct mbname **mbname_r);

/* The INBOX of `userid` ("alice", "alice@example.com").  With virtdomains
 * the part after the last '@' is the domain (lower-cased; defaultdomain
 * is dropped); otherwise the whole id is the local part.  Returns 0 or
 * ERR_MAILBOX_BADNAME for an empty, overlong or ill-formed user id. */
int mbname_from_userid(const char *userid, struct mbname **mbname_r);

/* Parse an external name as seen by `userid` (NULL: no user, e.g. an
 * anonymous session) in namespace `ns`.  "INBOX" matches in any case.
 * Returns 0 and a new mbname, or ERR_MAILBOX_BADNAME (bad syntax, INBOX
 * without a user, a deleted name from a non-admin...). */
int mbname_from_extname(const char *extname, const struct namespace *ns,
                        const char *userid, struct mbname **mbname_r);

/* Free an mbname and set *mbname_r to NULL; NULL is accepted. */
void mbname_free(struct mbname **mbname_r);

/* The internal name, owned by `mb` and valid until it changes.  Never
 * NULL. */
const char *mbname_intname(struct mbname *mb);

/* The owner's user id ("alice", "bob@example.com"), owned by `mb`, or
 * NULL for a shared mailbox. */
const char *mbname_userid(struct mbname *mb);

/* Replace the contents of `out` with the external name of `mb` for
 * `userid` in `ns`.  Returns 0, or ERR_MAILBOX_BADNAME when the name has
 * no external form there (another domain for a non-admin, a deleted
 * mailbox in the alternate namespace, a folder hidden by a prefix); `out`
 * is then empty. */
int mbname_extname(struct mbname *mb, const struct namespace *ns,
                   const char *userid, struct buf *out);

/* Append decoded component `box` (checked like any component).  Returns
 * 0 or ERR_MAILBOX_BADNAME. */
int mbname_push_box(struct mbname *mb, const char *box);

/* Mark as deleted at `when` (0 to unmark). */
void mbname_set_deleted(struct mbname *mb, time_t when);

/* Is `mb` the mailbox of user `userid` (or below it)?  Compares the
 * canonical local part and domain; NULL userid gives 0. */
int mbname_is_owner(const struct mbname *mb, const char *userid);

/* Convenience forms on strings.  Each returns 0 and a malloc'd string
 * in *r (caller frees), or an error as the function it wraps. */
int mboxname_to_external(const char *intname, const struct namespace *ns,
                         const char *userid, char **extname_r);
int mboxname_from_external(const char *extname, const struct namespace *ns,
                           const char *userid, char **intname_r);
/* The owner of `intname`, or ERR_NOTFOUND for a shared mailbox. */
int mboxname_to_userid(const char *intname, char **userid_r);
/* The internal name of `userid`'s INBOX, or of its folder `subfolder`
 * (internal form below INBOX, e.g. "Sent" or "Lists.cyrus"; NULL for the
 * INBOX itself). */
int mboxname_user_mbox(const char *userid, const char *subfolder,
                       char **intname_r);
/* `intname` renamed under deletedprefix with time `when`. */
int mboxname_to_deleted(const char *intname, time_t when,
                        char **intname_r);

/* Is `intname` a (not deleted) user mailbox; with `isinbox` set, only
 * the INBOX itself counts.  Invalid names give 0. */
int mboxname_isusermailbox(const char *intname, int isinbox);

/* Does `userid` own `intname` (their INBOX or below it, not deleted)? */
int mboxname_userownsmailbox(const char *userid, const char *intname);

/* Is `intname` a deleted mailbox?  Sets *when_r (may be NULL) to the
 * time of deletion. */
int mboxname_isdeletedmailbox(const char *intname, time_t *when_r);

/* Is `name` equal to `prefix` or below it (internal names)? */
int mboxname_is_prefix(const char *name, const char *prefix);

/* Site policy for creating `intname` (checked before it becomes a path):
 * the grammar above plus no top-level "user" alone, no user mailbox of
 * "anyone"/"anonymous", no top-level name starting with '$' (reserved
 * database keys), no shared top-level "INBOX".  Deleted names pass when
 * well-formed.  Returns 0 or ERR_MAILBOX_BADNAME. */
int mboxname_policycheck(const char *intname);

/* Canonical form of a user id for mailbox naming: with virtdomains the
 * domain is lower-cased and defaultdomain removed.  Returns 0 and a
 * malloc'd id in *userid_r, or ERR_MAILBOX_BADNAME. */
int mboxname_canonical_userid(const char *userid, char **userid_r);

/* The one-letter directory of the hashed spool layout for `s` (up to its
 * first '.').  Without fulldirhash: its first letter in lower case, 'q'
 * when that is not an ASCII letter (as Cyrus).  With fulldirhash: an
 * upper-case letter 'A'..'W' from a 32-bit rolling hash h = ((h << 3) ^
 * (h >> 5)) ^ byte over the bytes, taken modulo 23, which gives the same
 * letters as a Cyrus spool. */
char mboxname_dir_hash(const char *s, int fulldirhash);

/* Append the directory of `mb` below `root` to `out` (reset first):
 *   <root>[/domain/[<h>/]<domain>][/<h>]/user/<localpart>/<box>...
 * where <h> are mboxname_dir_hash() letters present only with
 * hashimapspool: of the domain, and of the second component of the
 * internal name below the domain (the local part for user mailboxes),
 * or of the first when there is one component.  A '.' in a component is
 * written '^'.  Returns 0 or ERR_TOOBIG beyond MBOXNAME_PATH_MAX. */
int mboxname_hash_path(const char *root, struct mbname *mb, struct buf *out);

/* The directory of mailbox `intname` on `partition` (uid 0), or the path
 * of message file "<uid>." in it, into `out`.  The name is validated
 * first.  Returns 0, ERR_MAILBOX_BADNAME, ERR_PARTITION_UNKNOWN (no
 * partition-<name>) or ERR_TOOBIG. */
int mboxname_datapath(const char *partition, const char *intname,
                      uint32_t uid, struct buf *out);

/* Mailbox metadata files. */
enum mboxname_metafile {
    MBOXNAME_META_DIR = 0,   /* the directory itself */
    MBOXNAME_META_HEADER,    /* cyrus.header */
    MBOXNAME_META_INDEX,     /* cyrus.index */
    MBOXNAME_META_CACHE,     /* cyrus.cache */
    MBOXNAME_META_EXPUNGE,   /* cyrus.expunge */
    MBOXNAME_META_SQUAT,     /* cyrus.squat */
    MBOXNAME_META_ANNOTATIONS, /* cyrus.annotations */
    MBOXNAME_META_DAV        /* cyrus.dav */
};

/* The path of metadata file `file` of `intname` on `partition` (with
 * ".NEW" appended when `isnew`).  The metapartition (metapartition-<name>)
 * is used for files listed in metapartition_files, else the data
 * partition; MBOXNAME_META_DIR is the directory on the metapartition as
 * soon as any file is listed.  Returns as mboxname_datapath(), or
 * ERR_INVALID for an unknown `file`. */
int mboxname_metapath(const char *partition, const char *intname,
                      enum mboxname_metafile file, int isnew,
                      struct buf *out);

/* The metadata directory that goes with the mailbox data directory
 * `datapath`: when `datapath` lies below partition-<name> (the longest
 * such root), metapartition-<name> is set and metapartition_files names
 * any file, the same path below the metapartition, into `out` (reset
 * first).  So a caller holding only the data path (imapd opening a
 * mailbox) finds its metadata.  Returns 0, ERR_NOTFOUND (no
 * metapartition applies: the metadata is in `datapath`), ERR_INVALID or
 * ERR_TOOBIG. */
int mboxname_datapath_to_metadir(const char *datapath, struct buf *out);

/* Is the file named `fname` ("cyrus.index", "cyrus.cache.NEW", ...) one
 * that metapartition_files puts on the metapartition?  1 or 0. */
int mboxname_is_metafile(const char *fname);

/* The lock file of `intname`: the hashed layout below mboxname_lockpath
 * (default {configdirectory}/lock) with ".lock" added.  Returns 0,
 * ERR_MAILBOX_BADNAME or ERR_TOOBIG. */
int mboxname_lockpath(const char *intname, struct buf *out);

#endif /* COLUMBA_IMAP_MBOXNAME_H */

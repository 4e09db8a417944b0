/* Where the mail store's databases live: per-user files (seen state,
 * subscriptions) under the configuration directory, and the paths of the
 * system databases named by a *_db_path option. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_IMAP_USERDB_H
#define COLUMBA_IMAP_USERDB_H

#include "lib/buf.h"
#include "lib/imapopts.h"

/*
 * PER-USER FILE LAYOUT (as Cyrus lays it out, so an administrator finds
 * the files where they expect them):
 *
 *   <configdirectory>/user/<h>/<local><suffix>
 *   <configdirectory>/domain/<d>/<domain>/user/<h>/<local><suffix>
 *
 * e.g. alice's seen state is {configdirectory}/user/a/alice.seen and
 * bob@example.com's subscriptions (virtdomains on) are
 * {configdirectory}/domain/e/example.com/user/b/bob.sub.
 *
 * <local> is the user id's local part with every '.' written as '^' (the
 * internal-name convention, so "bob.smith" is "bob^smith.seen").  The
 * domain part is used only when virtdomains is not "off" and the user id
 * holds an '@'; it is lower-cased, and a domain equal to defaultdomain
 * is dropped (that user lives in the top-level tree).  <h> and <d> are
 * hash letters: the first byte in lower case, or 'q' when it is not an
 * ASCII letter; with fulldirhash an upper-case letter 'A'..'W' from the
 * 32-bit rolling hash h = ((h << 3) ^ (h >> 5)) ^ byte over the name up
 * to its first '.', modulo 23 (the letters a Cyrus server uses).
 *
 * A user id that could escape its directory is refused: empty, longer
 * than USERDB_USERID_MAX, holding a '/', a NUL or a control byte,
 * starting with '.', more than one '@', or an empty local part or domain.
 */

/* Longest user id accepted, in bytes. */
#define USERDB_USERID_MAX 255

/* Longest internal mailbox name handled by the per-user databases (the
 * same bound as mailboxes.db). */
#define USERDB_MBOXNAME_MAX 490

/* Check that `userid` is acceptable for the layout above.  Returns 0 or
 * ERR_INVALID. */
int userdb_check_userid(const char *userid);

/* The hash letter of `name` (see above), honouring fulldirhash. */
char userdb_hash_letter(const char *name);

/* Put the path of `userid`'s per-user file ending in `suffix` (".seen",
 * ".sub") into `out` (reset first).  Returns 0 or ERR_INVALID for a bad
 * user id; ERR_CONFIG when configdirectory is unset. */
int userdb_path(const char *userid, const char *suffix, struct buf *out);

/* Put the internal name of `userid`'s INBOX into `out` (reset first):
 * "user.alice", or "example.com!user.bob" with a domain (same domain
 * rules as the file layout; '.' in the local part becomes '^').
 * Returns 0 or ERR_INVALID. */
int userdb_inbox(const char *userid, struct buf *out);

/* Put the path of a system database into `out` (reset first): the value
 * of option `pathopt` when set, else "<configdirectory>/<basename>".
 * Returns 0, or ERR_CONFIG when neither is available. */
int userdb_system_path(enum imapopt pathopt, const char *basename,
                       struct buf *out);

/* Create the parent directories of a database file at `path` (mode
 * 0750).  Returns 0 or an error code (logged). */
int userdb_mkparents(const char *path);

/* Does a file (of any kind) exist at `path`? */
int userdb_exists(const char *path);

/* Remove the database file at `path` written by `backend`, if there is
 * one (missing is success).  Returns 0 or a database error (logged). */
int userdb_remove(const char *backend, const char *path);

#endif /* COLUMBA_IMAP_USERDB_H */

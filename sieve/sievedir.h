/* sievedir: where and how a user's Sieve scripts are stored, shared by
 * timsieved (which writes them) and lmtpd (which runs the active one). */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_SIEVE_SIEVEDIR_H
#define COLUMBA_SIEVE_SIEVEDIR_H

#include <stddef.h>

#include "lib/strarray.h"

struct buf;

/*
 * On-disk layout (the one Cyrus uses, so a Cyrus sievedir can be taken
 * over as it is):
 *
 *   <sievedir>/<h>/<user>/                    a user's directory
 *   <sievedir>/domain/<d>/<domain>/<h>/<user>/  with virtdomains, for
 *                                             "user@domain"
 *
 * <h> and <d> are the hash letters of the spool (mboxname_dir_hash():
 * the first letter in lower case, 'q' for anything else, or a letter
 * A..W with fulldirhash).  In a user's directory:
 *
 *   <name>.script   the script text exactly as uploaded
 *   <name>.bc       its compiled bytecode (sieve_compile())
 *   defaultbc       symbolic link to "<name>.bc" of the active script;
 *                   absent when no script is active
 *
 * <name> is the script name of RFC 5804 in UTF-8, byte for byte.  Names
 * never contain '/' and never start with '.', so temporary files (which
 * start with '.' or end in ".tmp.<pid>.<hex>") never look like scripts.
 * Every file is replaced by writing a temporary file, fsync and rename;
 * the link is replaced the same way, so lmtpd always finds either the
 * old or the new active script.
 */

/* Longest script name in bytes: leaves room in NAME_MAX (255) for the
 * ".script" suffix and the temporary-file suffix. */
#define SIEVEDIR_NAME_MAX 200

/* Name of the link to the active script's bytecode. */
#define SIEVEDIR_ACTIVE_LINK "defaultbc"

/* Is `name` (`len` bytes, not NUL-terminated) a valid script name?
 * RFC 5804 section 1.6: valid UTF-8 in Unicode normalization form C,
 * without control characters (U+0000-001F, U+007F, U+0080-009F) or
 * U+2028/U+2029; and for the file system: 1..SIEVEDIR_NAME_MAX bytes,
 * no '/', not starting with '.'.  Returns 0 or ERR_INVALID. */
int sievedir_check_name(const char *name, size_t len);

/* The sieve directory of `userid` ("alice", "bob@example.com") under the
 * sievedir option, into `out` (reset first).  Returns 0, ERR_INVALID for
 * a user id that cannot be a directory name (empty, '/', leading '.',
 * control characters) or ERR_CONFIG when sievedir is unset. */
int sievedir_user_dir(const char *userid, struct buf *out);

/* Append the names of the scripts in `dir` (each "<name>.script" with
 * a valid name) to `names`, sorted bytewise.  A missing directory holds
 * no scripts.  Returns 0 or ERR_IO (logged). */
int sievedir_list(const char *dir, strarray_t *names);

/* Does script `name` exist in `dir`? */
int sievedir_exists(const char *dir, const char *name);

/* The name of the active script of `dir` (malloc'd, the caller frees)
 * into *name_r.  Returns 0, ERR_NOTFOUND when none is active or the
 * link does not point at a "<name>.bc" of this directory, or ERR_IO. */
int sievedir_active_name(const char *dir, char **name_r);

/* The path of the active bytecode of `userid`, for delivery, into
 * `path_r` (reset first).  Returns 0, ERR_NOTFOUND when the user has no
 * active script (or its bytecode is missing), or an error of
 * sievedir_user_dir(). */
int sievedir_active_bytecode(const char *userid, struct buf *path_r);

/* Replace `out` with the text of script `name` in `dir`.  Returns 0,
 * ERR_NOTFOUND, ERR_TOOBIG beyond `maxlen` bytes, or ERR_IO. */
int sievedir_read_script(const char *dir, const char *name, size_t maxlen,
                         struct buf *out);

/* Store script `name` in `dir` (created when missing): its bytecode
 * first, then its text, each written durably and renamed into place.
 * Returns 0 or an error code (logged). */
int sievedir_put(const char *dir, const char *name, const void *script,
                 size_t scriptlen, const void *bc, size_t bclen);

/* Store only the bytecode of `name` (to recompile an existing script).
 * Returns 0 or an error code (logged). */
int sievedir_put_bytecode(const char *dir, const char *name, const void *bc,
                          size_t bclen);

/* Does "<name>.bc" exist in `dir`? */
int sievedir_has_bytecode(const char *dir, const char *name);

/* Make script `name` the active one by replacing the defaultbc link
 * atomically; NULL or "" deactivates (removes the link).  Returns 0,
 * ERR_NOTFOUND when the script does not exist, or ERR_IO (logged). */
int sievedir_activate(const char *dir, const char *name);

/* Remove script `name` and its bytecode.  Returns 0, ERR_NOTFOUND,
 * ERR_LOCKED when it is the active script (it is left alone), or ERR_IO
 * (logged). */
int sievedir_delete(const char *dir, const char *name);

/* Rename script `oldname` to `newname`, bytecode included; an active
 * script stays active under its new name.  Returns 0, ERR_NOTFOUND (no
 * `oldname`), ERR_EXISTS (`newname` is taken) or ERR_IO (logged). */
int sievedir_rename(const char *dir, const char *oldname,
                    const char *newname);

#endif /* COLUMBA_SIEVE_SIEVEDIR_H */

/* Small generic helpers: bounded number parsing, ASCII case, hex, random
 * bytes, directory creation and safe whole-file reads and writes. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_LIB_UTIL_H
#define COLUMBA_LIB_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct buf;

/* Parse an unsigned decimal number at the start of `s`.  Only the digits
 * 0-9 are accepted: no sign, no leading space, no "0x".  With `end_r`
 * set, parsing stops at the first non-digit and *end_r points there;
 * with `end_r` NULL the whole string must be digits.  Returns 0 and sets
 * *val_r, ERR_INVALID for an empty number, a sign or trailing bytes, or
 * ERR_TOOBIG when the value does not fit.  *val_r is untouched on
 * failure.  s may be NULL (ERR_INVALID). */
int parse_uint32(const char *s, const char **end_r, uint32_t *val_r);
int parse_uint64(const char *s, const char **end_r, uint64_t *val_r);

/* As above for a signed number: one optional leading '-' ('+' is
 * rejected); INT64_MIN is accepted. */
int parse_int64(const char *s, const char **end_r, int64_t *val_r);

/* Lower- or upper-case ASCII letters of `s` in place (other bytes are
 * kept whatever the locale); returns s. */
char *lcase(char *s);
char *ucase(char *s);

/* Locale-independent ASCII case-insensitive comparisons, with the sign
 * convention of strcmp(). */
int util_strcasecmp_ascii(const char *a, const char *b);
int util_strncasecmp_ascii(const char *a, const char *b, size_t n);

/* Append the lower-case hex form of `len` bytes at `p` to `out`. */
void util_hex_encode(const void *p, size_t len, struct buf *out);

/* Append the bytes encoded by `len` hex digits (either case) to `out`.
 * Returns 0, or ERR_INVALID for an odd length or a non-hex byte (then
 * `out` is left as it was). */
int util_hex_decode(const char *hex, size_t len, struct buf *out);

/* Fill `p` with `len` bytes from the kernel's random source
 * (getrandom(), else /dev/urandom).  Returns 0 or ERR_IO. */
int util_random_bytes(void *p, size_t len);

/* Create every missing parent directory of `path` (not the last
 * component) with `mode` (less the umask).  Existing directories are
 * fine; an existing non-directory in the way is an error.  Returns 0 or
 * ERR_IO / ERR_PERMISSION (logged). */
int util_mkdir_parents(const char *path, mode_t mode);

/* Create directory `dir` and any missing parents, mode 0755 less the
 * umask.  An existing directory is success.  Returns 0 or an error
 * code (logged). */
int util_mkdir_p(const char *dir);

/* Open `path` with `flags` (O_NOFOLLOW and O_CLOEXEC are added) and
 * `mode` for O_CREAT, then check with fstat() that it is a regular file.
 * Sets *fd_r (the caller closes it).  Returns 0, ERR_NOTFOUND when
 * missing, ERR_PERMISSION when access is denied or `path` is a symbolic
 * link, ERR_INVALID when it is not a regular file, or ERR_IO. */
int util_open_nofollow(const char *path, int flags, mode_t mode, int *fd_r);

/* Replace the contents of `out` with the file at `path` (opened with
 * util_open_nofollow()).  Returns 0, ERR_TOOBIG when the file holds more
 * than `maxlen` bytes (then `out` is emptied), or an error as for
 * util_open_nofollow() / ERR_IO. */
int util_read_file(const char *path, struct buf *out, size_t maxlen);

/* Atomically replace the file at `path` with `len` bytes of `data`:
 * write a temporary file in the same directory (mode 0666 less the
 * umask), fsync it, rename it over `path` and fsync the directory, so a
 * crash leaves either the old or the new contents.  Returns 0 or an
 * error code (logged); the temporary file is removed on failure. */
int util_write_file_atomic(const char *path, const void *data, size_t len);

#endif /* COLUMBA_LIB_UTIL_H */

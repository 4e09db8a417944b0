/* Character sets and transfer encodings: conversion to UTF-8 through ICU,
 * RFC 2047 encoded words, RFC 2231 parameters, quoted-printable, base64,
 * search normalisation and the modified UTF-7 of IMAP mailbox names. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_LIB_CHARSET_H
#define COLUMBA_LIB_CHARSET_H

#include <stddef.h>

#include "lib/buf.h"
#include "lib/strarray.h"

/* Longest charset name we pass to ICU; longer names are unknown. */
#define CHARSET_NAME_MAX 64

/* Does ICU know `name` (a MIME charset label such as "ISO-8859-1")?
 * NULL and "" count as unknown. */
int charset_is_known(const char *name);

/* Append `len` bytes of `src` in charset `charset`, converted to UTF-8,
 * to `dst`.  A NULL or empty charset, "us-ascii" and "utf-8" are read as
 * UTF-8.  Bytes that do not decode become U+FFFD.  Returns 0, or
 * ERR_NOTFOUND when the charset is unknown: `dst` then still receives the
 * bytes read as UTF-8 (with U+FFFD for invalid sequences), so callers
 * that only want text can ignore the code. */
int charset_to_utf8(const char *charset, const char *src, size_t len,
                    struct buf *dst);

/* Append `src` to `dst`, keeping valid UTF-8 sequences and replacing
 * each invalid byte by U+FFFD.  Never fails. */
void charset_utf8_sanitize(const char *src, size_t len, struct buf *dst);

/* Decode a header value (RFC 2047) to UTF-8 and append it to `dst`.
 * Folding line breaks are removed; encoded words of both encodings (B
 * and Q) are decoded, adjacent encoded words separated only by white
 * space are joined without it (bytes of the same charset are joined
 * before conversion, so a character split over two words survives),
 * malformed words are kept literally, unknown charsets are read as UTF-8,
 * raw 8-bit text is kept when it is valid UTF-8 and replaced by U+FFFD
 * otherwise.  Never fails. */
void charset_decode_mimeheader(const char *src, size_t len,
                               struct buf *dst);

/* Decode RFC 2231 parameters in place.  `attrs` and `values` are
 * parallel arrays of parameter names exactly as written ("title*0*")
 * and their values with quoting removed.  On return they hold one entry
 * per parameter: the bare name in its first spelling ("title") and its
 * value in UTF-8.  Continuations are joined in numeric order up to the
 * first missing section; extended values ("charset'lang'%XX") are
 * percent-decoded and converted; an RFC 2231 form of a parameter wins
 * over a plain one; plain values are RFC 2047 decoded (a common
 * violation).  Callers bound the number of parameters: the work is
 * quadratic in it. */
void charset_decode_params(strarray_t *attrs, strarray_t *values);

/* Append the quoted-printable decoding of `src` to `dst` (RFC 2045
 * 6.7).  Soft line breaks are removed, "=XX" (either case) gives a byte,
 * white space before a line break is dropped, anything malformed is kept
 * literally.  Output never exceeds the input length.  Never fails. */
void charset_decode_qp(const char *src, size_t len, struct buf *dst);

/* Append the base64 decoding of `src` to `dst`.  Line breaks and white
 * space are skipped; decoding goes on after padding (some mailers join
 * encoded blocks).  Returns 0, or ERR_CORRUPT if characters outside the
 * alphabet or a dangling final character were found (the output then
 * holds what could be decoded). */
int charset_decode_base64(const char *src, size_t len, struct buf *dst);

/* Append the search form of UTF-8 text `src` to `dst`: invalid bytes
 * become U+FFFD, then NFKC normalisation with Unicode case folding
 * (ICU's NFKC_Casefold), so that "Straße", "STRASSE" and "ﬆrasse" match
 * alike.  Used by SEARCH and SORT on both the needle and the haystack.
 * Returns 0, or ERR_INTERNAL if ICU fails (`dst` is then unchanged). */
int charset_search_normalise(const char *src, size_t len, struct buf *dst);

/* Convert a mailbox name in modified UTF-7 (RFC 3501 5.1.3) to UTF-8,
 * appending to `dst`.  Returns 0, or ERR_INVALID for anything the RFC
 * forbids: 8-bit or control characters, an unterminated or badly padded
 * shift sequence, printable ASCII or an unpaired surrogate encoded in
 * base64, an empty shift other than "&-", or two adjacent shifts.  On
 * error `dst` is left as it was. */
int charset_mutf7_to_utf8(const char *src, size_t len, struct buf *dst);

/* Convert a UTF-8 mailbox name to modified UTF-7, appending to `dst`.
 * Returns 0, or ERR_INVALID for invalid UTF-8 or a NUL byte (`dst` is
 * then left as it was). */
int charset_utf8_to_mutf7(const char *src, size_t len, struct buf *dst);

/* Release ICU's caches (converters, normalisation data) so a leak
 * checker sees a clean exit.  Call only when no thread uses ICU; later
 * calls into this module load the data again. */
void charset_cleanup(void);

#endif /* COLUMBA_LIB_CHARSET_H */

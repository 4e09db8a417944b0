/* The LMTP/SMTP DATA reader: reads a dot-stuffed message up to its
 * terminating CRLF.CRLF and spools it to a file, size-limited. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_IMAP_LMTP_SPOOL_H
#define COLUMBA_IMAP_LMTP_SPOOL_H

#include <stdint.h>

#include "lib/buf.h"

struct protstream;

/* Most header bytes kept in struct lmtp_spool.header. */
#define LMTP_SPOOL_HEADER_MAX (64 * 1024)

/* lmtp_spool_read() flags. */
#define LMTP_SPOOL_MUNGE_8BIT 0x01u  /* header bytes >= 0x80 become 'X'
                                      * (munge8bit) */

/* What one DATA block turned out to be. */
struct lmtp_spool {
    uint64_t size;          /* message bytes: unstuffed, line ends as
                             * CRLF, Return-Path fields counted, the
                             * prefix not */
    int is_toobig;          /* size went over the limit: the file is
                             * incomplete */
    int has_nul;            /* a NUL byte was seen */
    int has_bare_lf;        /* a line ended in LF alone (stored CRLF) */
    int has_8bit_header;    /* a header byte was >= 0x80 */
    int write_error;        /* errno of a failed write, or 0 */
    struct buf header;      /* the stored header (without the prefix),
                             * first LMTP_SPOOL_HEADER_MAX bytes */
};

/* Release what lmtp_spool_read() put in `sp`; NULL accepted. */
void lmtp_spool_fini(struct lmtp_spool *sp);

/* Read one DATA block from `in` (the 354 reply already sent) and write
 * it to `fd` (-1: read and discard), preceded by `prefix` (may be NULL;
 * e.g. our Return-Path and Received fields).  Per RFC 5321 4.5.2 and
 * RFC 2033: only CRLF "." CRLF (or "." CRLF as the very first line) ends
 * the data; a leading "." of a line is removed when more follows on that
 * line; a bare LF ends a line, is stored as CRLF, and is never part of
 * the terminator; any Return-Path fields in the message header are
 * dropped (RFC 5321 4.4: the final delivery adds its own).  With
 * `maxsize` > 0, writing stops once the message passes `maxsize` bytes,
 * but the data is still read to its end so the session stays in step.
 * With LMTP_SPOOL_MUNGE_8BIT in `flags`, 8-bit bytes in the header
 * are stored as 'X'.  `sp` is initialised here.  Returns 0 once the
 * terminator was read (check sp->is_toobig, has_nul, has_8bit_header
 * and write_error), or the stream's error (ERR_EOF, ERR_TIMEOUT,
 * ERR_IO) when the data did not end. */
int lmtp_spool_read(struct protstream *in, int fd, const char *prefix,
                    uint64_t maxsize, unsigned flags,
                    struct lmtp_spool *sp);

/* The first Message-ID field of `header` (a stored header as in struct
 * lmtp_spool), unfolded and trimmed, into `out` (reset first).  Returns
 * 0, or ERR_NOTFOUND when there is none or it is empty. */
int lmtp_spool_message_id(const struct buf *header, struct buf *out);

#endif /* COLUMBA_IMAP_LMTP_SPOOL_H */

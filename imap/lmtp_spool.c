/* The LMTP/SMTP DATA reader: reads a dot-stuffed message up to its
 * terminating CRLF.CRLF and spools it to a file, size-limited. */
/* Columba is free software; see COPYING for the licence. */

/*
 * How the byte stream is read
 * ===========================
 * The reader walks the input one byte at a time (prot buffers it) with
 * two bits of line state: `line_start` (the next byte begins a line:
 * the very first byte, or the byte after any LF) and `crlf_start` (that
 * line began after CR LF, or is the first line).  At a line start a "."
 * is looked at with up to two bytes of look-ahead:
 *
 *   "." CR LF   with crlf_start      end of data
 *   "." CR LF   after a bare LF      a line holding "." (kept: a bare LF
 *   "." LF                           never forms the terminator, which
 *                                    closes the "SMTP smuggling" hole)
 *   "." other                        the "." is removed (unstuffing)
 *
 * Every other byte goes through the line-end normaliser: CR LF and a
 * bare LF both become CR LF; a CR not followed by LF is kept as is.
 *
 * Normalised bytes then pass the header filter, which holds back each
 * header line (up to HEADER_LINE_MAX bytes) until it knows whether it
 * belongs to a Return-Path field (dropped, with its continuation lines)
 * and copies kept header lines into sp->header for the Message-ID; 8-bit
 * bytes in kept header lines are noted and, when asked, munged to 'X'.  The
 * header ends at the first empty line.  Output is buffered and written
 * in WRITE_CHUNK pieces; once the size limit is passed nothing more is
 * written, but the input is still consumed up to the terminator.
 */

#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "lib/error.h"
#include "lib/prot.h"

#include "imap/lmtp_spool.h"

/* Output is written in pieces of about this size. */
#define WRITE_CHUNK (64 * 1024)
/* A header line longer than this is decided on its first bytes. */
#define HEADER_LINE_MAX 8192

/* Reader state for one DATA block. */
struct reader {
    struct lmtp_spool *sp;
    int fd;
    uint64_t maxsize;
    unsigned flags;             /* LMTP_SPOOL_* */
    struct buf out;             /* not yet written */
    int in_header;
    int dropping;               /* current header field is dropped */
    int line_decided;           /* hline already flushed for this line */
    struct buf hline;           /* the header line being collected */
    int header_full;            /* sp->header stopped growing */
    int pending_cr;
};

static void flush_out(struct reader *rd)
{
    const char *p = rd->out.s;
    size_t n = rd->out.len;
    ssize_t w;

    while (n > 0 && rd->fd >= 0 && !rd->sp->write_error) {
        w = write(rd->fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rd->sp->write_error = w < 0 ? errno : EIO;
            break;
        }
        p += w;
        n -= (size_t)w;
    }
    buf_reset(&rd->out);
}

/* Queue stored bytes (after the header filter). */
static void store(struct reader *rd, const char *p, size_t n)
{
    if (rd->fd < 0 || rd->sp->is_toobig || rd->sp->write_error)
        return;
    buf_appendmap(&rd->out, p, n);
    if (rd->out.len >= WRITE_CHUNK)
        flush_out(rd);
}

/* Does the header line in `hl` start a Return-Path field? */
static int is_return_path(const struct buf *hl)
{
    static const char name[] = "Return-Path";
    size_t n = sizeof(name) - 1;
    size_t i = n;

    if (hl->len < n || strncasecmp(hl->s, name, n))
        return 0;
    while (i < hl->len && (hl->s[i] == ' ' || hl->s[i] == '\t'))
        i++;
    return i < hl->len && hl->s[i] == ':';
}

/* Decide what to do with the collected header line and pass it on. */
static void header_decide(struct reader *rd)
{
    struct buf *hl = &rd->hline;
    struct lmtp_spool *sp = rd->sp;

    if (!rd->line_decided) {
        if (hl->len && hl->s[0] != ' ' && hl->s[0] != '\t')
            rd->dropping = is_return_path(hl);
        rd->line_decided = 1;
    }
    if (!rd->dropping) {
        size_t i;

        for (i = 0; i < hl->len; i++) {
            if (!(hl->s[i] & 0x80))
                continue;
            sp->has_8bit_header = 1;
            if (rd->flags & LMTP_SPOOL_MUNGE_8BIT)
                hl->s[i] = 'X';
        }
        store(rd, hl->s, hl->len);
        if (!rd->header_full
            && sp->header.len + hl->len <= LMTP_SPOOL_HEADER_MAX)
            buf_appendmap(&sp->header, hl->s, hl->len);
        else
            rd->header_full = 1;
    }
    buf_reset(hl);
}

/* One normalised byte; `is_eol` marks the LF of a CR LF. */
static void emit(struct reader *rd, char c, int is_eol)
{
    struct lmtp_spool *sp = rd->sp;

    sp->size++;
    if (rd->maxsize && sp->size > rd->maxsize)
        sp->is_toobig = 1;
    if (c == '\0')
        sp->has_nul = 1;

    if (!rd->in_header) {
        store(rd, &c, 1);
        return;
    }
    buf_putc(&rd->hline, c);
    if (is_eol) {
        /* CR LF alone ends the header (it is part of the header). */
        if (!rd->line_decided && rd->hline.len == 2) {
            rd->in_header = 0;
            rd->dropping = 0;
            store(rd, rd->hline.s, 2);
            buf_appendmap(&sp->header, "\r\n", 2);
            buf_reset(&rd->hline);
            return;
        }
        header_decide(rd);
        rd->line_decided = 0;
    }
    else if (rd->hline.len >= HEADER_LINE_MAX) {
        header_decide(rd);
    }
}

static void emit_eol(struct reader *rd)
{
    emit(rd, '\r', 0);
    emit(rd, '\n', 1);
}

/* Feed one input byte through the line-end normaliser.  Sets the line
 * state in *line_start_r and *crlf_start_r. */
static void put(struct reader *rd, int c, int *line_start_r,
                int *crlf_start_r)
{
    if (rd->pending_cr) {
        rd->pending_cr = 0;
        if (c == '\n') {
            emit_eol(rd);
            *line_start_r = 1;
            *crlf_start_r = 1;
            return;
        }
        emit(rd, '\r', 0);
    }
    *line_start_r = 0;
    if (c == '\r') {
        rd->pending_cr = 1;
        return;
    }
    if (c == '\n') {
        rd->sp->has_bare_lf = 1;
        emit_eol(rd);
        *line_start_r = 1;
        *crlf_start_r = 0;
        return;
    }
    emit(rd, (char)c, 0);
}

/* The error that made prot_getc() return EOF. */
static int stream_error(struct protstream *in)
{
    int r = prot_error_code(in);

    return r ? r : ERR_EOF;
}

/* Handle a "." at the start of a line.  Returns 1 at the end of data, 0
 * to go on, or -1 on a stream error. */
static int dot_at_line_start(struct reader *rd, struct protstream *in,
                             int *line_start, int *crlf_start)
{
    int c2, c3;

    c2 = prot_getc(in);
    if (c2 == EOF)
        return -1;
    if (c2 == '\r') {
        c3 = prot_getc(in);
        if (c3 == EOF)
            return -1;
        if (c3 == '\n') {
            if (*crlf_start)
                return 1;
            /* "." CR LF after a bare LF: an ordinary line holding ".". */
            emit(rd, '.', 0);
            emit_eol(rd);
            *line_start = 1;
            *crlf_start = 1;
            return 0;
        }
        prot_ungetc(in, c3);
        put(rd, '\r', line_start, crlf_start);
        return 0;
    }
    if (c2 == '\n') {
        /* "." LF: a line holding ".", never the terminator. */
        rd->sp->has_bare_lf = 1;
        emit(rd, '.', 0);
        emit_eol(rd);
        *line_start = 1;
        *crlf_start = 0;
        return 0;
    }
    /* Unstuff: the "." goes, the next byte starts the line's content
     * (and is not itself looked at as a line start again). */
    *line_start = 0;
    put(rd, c2, line_start, crlf_start);
    return 0;
}

int lmtp_spool_read(struct protstream *in, int fd, const char *prefix,
                    uint64_t maxsize, unsigned flags, struct lmtp_spool *sp)
{
    struct reader rd;
    int line_start = 1;
    int crlf_start = 1;
    int c, r = 0, end;

    memset(sp, 0, sizeof(*sp));
    memset(&rd, 0, sizeof(rd));
    rd.sp = sp;
    rd.fd = fd;
    rd.maxsize = maxsize;
    rd.flags = flags;
    rd.in_header = 1;
    if (prefix)
        store(&rd, prefix, strlen(prefix));

    for (;;) {
        c = prot_getc(in);
        if (c == EOF) {
            r = stream_error(in);
            break;
        }
        if (line_start && c == '.') {
            end = dot_at_line_start(&rd, in, &line_start, &crlf_start);
            if (end < 0) {
                r = stream_error(in);
                break;
            }
            if (end)
                break;
            continue;
        }
        put(&rd, c, &line_start, &crlf_start);
    }

    /* A header cut short by the terminator still goes out. */
    if (!r && rd.hline.len)
        header_decide(&rd);
    if (!r)
        flush_out(&rd);
    buf_free(&rd.out);
    buf_free(&rd.hline);
    return r;
}

void lmtp_spool_fini(struct lmtp_spool *sp)
{
    if (!sp)
        return;
    buf_free(&sp->header);
}

/* Does the header line at `p` (to `end`) start field `name`?  Returns
 * the offset of the value after the colon, or 0. */
static size_t field_value_at(const char *p, const char *end,
                             const char *name)
{
    size_t n = strlen(name);
    const char *q;

    if ((size_t)(end - p) <= n || strncasecmp(p, name, n))
        return 0;
    q = p + n;
    while (q < end && (*q == ' ' || *q == '\t'))
        q++;
    if (q >= end || *q != ':')
        return 0;
    return (size_t)(q + 1 - p);
}

int lmtp_spool_message_id(const struct buf *header, struct buf *out)
{
    const char *p = header->s;
    const char *end = header->s + header->len;
    const char *nl;
    size_t off;

    buf_reset(out);
    while (p && p < end) {
        nl = memchr(p, '\n', (size_t)(end - p));
        off = field_value_at(p, nl ? nl : end, "Message-ID");
        if (off) {
            p += off;
            /* Collect the value and its continuation lines. */
            for (;;) {
                nl = memchr(p, '\n', (size_t)(end - p));
                buf_appendmap(out, p, (size_t)((nl ? nl : end) - p));
                if (!nl || nl + 1 >= end || (nl[1] != ' ' && nl[1] != '\t'))
                    break;
                p = nl + 1;
            }
            break;
        }
        p = nl ? nl + 1 : NULL;
    }

    /* Unfold and trim: CR and LF go, runs of blanks at the ends go. */
    {
        size_t i, j = 0;

        for (i = 0; i < out->len; i++) {
            if (out->s[i] != '\r' && out->s[i] != '\n')
                out->s[j++] = out->s[i];
        }
        buf_truncate(out, j);
        buf_trim(out);
    }
    return out->len ? 0 : ERR_NOTFOUND;
}

/* The IMAP command tokenizer; the grammar and the bounds are described
 * in imap/imap_parse.h. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "lib/error.h"
#include "lib/prot.h"
#include "lib/util.h"

#include "imap/imap_parse.h"

/* Longest decimal literal size we read ("4294967295" and a bit). */
#define LITERAL_DIGITS_MAX 12

/* How many bytes eatline() discards for a non-synchronizing literal
 * before giving up on the session. */
#define EATLINE_SKIP_MAX ((size_t)64 * 1024 * 1024)

void imap_parser_init(struct imap_parser *p, struct protstream *in,
                      struct protstream *out)
{
    memset(p, 0, sizeof(*p));
    p->in = in;
    p->out = out;
    p->max_word = IMAP_PARSE_DEFAULT_WORD;
    p->max_literal = IMAP_PARSE_DEFAULT_LITERAL;
    p->max_command = IMAP_PARSE_DEFAULT_COMMAND;
    p->literal_plus = 1;
    p->last = EOF;
}

void imap_parser_begin(struct imap_parser *p)
{
    p->used = 0;
    p->error = 0;
    p->errmsg = NULL;
    p->last = EOF;
}

int imap_parse_fail(struct imap_parser *p, const char *why)
{
    if (!p->error) {
        p->error = ERR_PROTOCOL;
        p->errmsg = why;
    }
    return EOF;
}

/* Record "too big" with a reason; returns EOF. */
static int fail_toobig(struct imap_parser *p, const char *why)
{
    if (!p->error) {
        p->error = ERR_TOOBIG;
        p->errmsg = why;
    }
    return EOF;
}

/* Record a failure of the stream itself; returns EOF. */
static int fail_stream(struct imap_parser *p)
{
    int r = prot_error_code(p->in);

    p->error = r ? r : ERR_EOF;
    p->errmsg = "Connection error";
    p->must_close = 1;
    p->last = EOF;
    return EOF;
}

int imap_parse_getc(struct imap_parser *p)
{
    int c;

    if (p->error)
        return EOF;
    c = prot_getc(p->in);
    if (c == EOF)
        return fail_stream(p);
    p->last = c;
    if (++p->used > p->max_command)
        return fail_toobig(p, "[TOOBIG] Command too long");
    return c;
}

void imap_parse_ungetc(struct imap_parser *p, int c)
{
    if (c == EOF)
        return;
    prot_ungetc(p->in, c);
    p->used--;
    p->last = EOF;
}

/* Character classes of RFC 9051's formal syntax. */
enum charclass {
    CLASS_ATOM,         /* ATOM-CHAR */
    CLASS_ASTRING,      /* ASTRING-CHAR: ATOM-CHAR and "]" */
    CLASS_TAG,          /* ASTRING-CHAR except "+" */
    CLASS_LIST          /* list-char: ATOM-CHAR, "%", "*", "]" */
};

static int is_class(int c, enum charclass cls)
{
    if (c <= 0x20 || c >= 0x7f)
        return 0;
    switch (c) {
    case '(': case ')': case '{': case '"': case '\\':
        return 0;
    case '%': case '*':
        return cls == CLASS_LIST;
    case ']':
        return cls != CLASS_ATOM;
    case '+':
        return cls != CLASS_TAG;
    default:
        return 1;
    }
}

/* Read 1*char of class `cls` into `out`; returns the next byte. */
static int read_atomish(struct imap_parser *p, struct buf *out,
                        enum charclass cls)
{
    int c;

    buf_reset(out);
    for (;;) {
        c = imap_parse_getc(p);
        if (c == EOF || !is_class(c, cls))
            break;
        if (out->len >= p->max_word)
            return fail_toobig(p, "[TOOBIG] Word too long");
        buf_putc(out, (char)c);
    }
    if (c != EOF && !out->len)
        return imap_parse_fail(p, c == '\r' || c == '\n'
                                  ? "Missing argument"
                                  : "Invalid character in argument");
    if (c == 0)
        return imap_parse_fail(p, "NUL byte in command");
    buf_cstring(out);
    return c;
}

int imap_parse_tag(struct imap_parser *p, struct buf *out)
{
    return read_atomish(p, out, CLASS_TAG);
}

int imap_parse_atom(struct imap_parser *p, struct buf *out)
{
    return read_atomish(p, out, CLASS_ATOM);
}

/* The body of a quoted string, after its opening quote. */
static int read_quoted(struct imap_parser *p, struct buf *out)
{
    int c;

    buf_reset(out);
    for (;;) {
        c = imap_parse_getc(p);
        if (c == EOF)
            return EOF;
        if (c == '"')
            break;
        if (c == '\\') {
            c = imap_parse_getc(p);
            if (c != '"' && c != '\\')
                return imap_parse_fail(p, "Invalid escape in quoted string");
        }
        else if (c == '\r' || c == '\n' || c == 0) {
            return imap_parse_fail(p, "Invalid character in quoted string");
        }
        if (out->len >= p->max_word)
            return fail_toobig(p, "[TOOBIG] Quoted string too long");
        buf_putc(out, (char)c);
    }
    buf_cstring(out);
    return imap_parse_getc(p);
}

/* Read "number [+] } CRLF" after "{"; sets *len_r and *is_plus_r. */
static int read_literal_header(struct imap_parser *p, uint64_t *len_r,
                               int *is_plus_r)
{
    char digits[LITERAL_DIGITS_MAX + 1];
    size_t n = 0;
    int c;

    *is_plus_r = 0;
    for (;;) {
        c = imap_parse_getc(p);
        if (c < '0' || c > '9')
            break;
        if (n >= LITERAL_DIGITS_MAX)
            return imap_parse_fail(p, "Invalid literal size");
        digits[n++] = (char)c;
    }
    digits[n] = '\0';
    if (c == '+' && p->literal_plus) {
        *is_plus_r = 1;
        c = imap_parse_getc(p);
    }
    if (c != '}' || !n || parse_uint64(digits, NULL, len_r))
        return imap_parse_fail(p, "Invalid literal");
    c = imap_parse_getc(p);
    if (c == '\r')
        c = imap_parse_getc(p);
    if (c != '\n')
        return imap_parse_fail(p, "Missing CRLF after literal");
    return 0;
}

/* The rest of a literal after "{"; at most `max` bytes. */
static int read_literal(struct imap_parser *p, struct buf *out, size_t max)
{
    uint64_t len;
    int is_plus;
    int r;

    buf_reset(out);
    if (read_literal_header(p, &len, &is_plus))
        return EOF;

    /* Refuse before reading or inviting the bytes.  A client that sent
     * {n+} is already sending them, and we will not swallow a hostile
     * amount, so that session has to end. */
    if (len > max || len > p->max_command - p->used) {
        if (is_plus)
            p->must_close = 1;
        return fail_toobig(p, "[TOOBIG] Literal too big");
    }
    if (!is_plus) {
        prot_puts(p->out, "+ go ahead\r\n");
        prot_flush(p->out);
    }
    buf_ensure(out, (size_t)len + 1);
    r = prot_readfull(p->in, out->s, (size_t)len);
    if (r)
        return fail_stream(p);
    out->len = (size_t)len;
    p->used += (size_t)len;
    buf_cstring(out);
    return imap_parse_getc(p);
}

int imap_parse_string_max(struct imap_parser *p, struct buf *out,
                          size_t max)
{
    int c = imap_parse_getc(p);

    if (c == '"')
        return read_quoted(p, out);
    if (c == '{')
        return read_literal(p, out, max);
    if (c == EOF)
        return EOF;
    return imap_parse_fail(p, "Expected a string");
}

int imap_parse_string(struct imap_parser *p, struct buf *out)
{
    return imap_parse_string_max(p, out, p->max_literal);
}

/* An astring-like token whose bare form has class `cls`. */
static int read_astringish(struct imap_parser *p, struct buf *out,
                           enum charclass cls)
{
    int c = imap_parse_getc(p);

    if (c == '"')
        return read_quoted(p, out);
    if (c == '{')
        return read_literal(p, out, p->max_literal);
    if (c == EOF)
        return EOF;
    imap_parse_ungetc(p, c);
    return read_atomish(p, out, cls);
}

int imap_parse_astring(struct imap_parser *p, struct buf *out)
{
    return read_astringish(p, out, CLASS_ASTRING);
}

int imap_parse_listmbox(struct imap_parser *p, struct buf *out)
{
    return read_astringish(p, out, CLASS_LIST);
}

int imap_parse_nstring(struct imap_parser *p, struct buf *out,
                       int *is_nil_r)
{
    int c = imap_parse_getc(p);

    *is_nil_r = 0;
    if (c == '"')
        return read_quoted(p, out);
    if (c == '{')
        return read_literal(p, out, p->max_literal);
    if (c == EOF)
        return EOF;
    imap_parse_ungetc(p, c);
    c = read_atomish(p, out, CLASS_ATOM);
    if (c == EOF)
        return EOF;
    if (strcasecmp(buf_cstring(out), "NIL"))
        return imap_parse_fail(p, "Expected NIL or a string");
    *is_nil_r = 1;
    buf_reset(out);
    return c;
}

int imap_parse_word(struct imap_parser *p, struct buf *out)
{
    int depth = 0;
    int c;

    buf_reset(out);
    for (;;) {
        c = imap_parse_getc(p);
        if (c == EOF)
            return EOF;
        if (c == '\r' || c == '\n' || c == 0 || c == '"' || c == '{')
            break;
        if (!depth && (c == ' ' || c == '(' || c == ')'))
            break;
        if (c == '[')
            depth++;
        else if (c == ']' && depth)
            depth--;
        if (out->len >= p->max_word)
            return fail_toobig(p, "[TOOBIG] Word too long");
        buf_putc(out, (char)c);
    }
    if (c == 0 || c == '"' || c == '{')
        return imap_parse_fail(p, "Invalid character in argument");
    if (!out->len || depth)
        return imap_parse_fail(p, "Missing or unbalanced argument");
    buf_cstring(out);
    return c;
}

int imap_parse_eol(struct imap_parser *p, int c)
{
    if (c == '\r')
        c = imap_parse_getc(p);
    if (c == '\n')
        return 0;
    if (c == EOF && p->error)
        return p->error;
    imap_parse_fail(p, "Unexpected extra arguments");
    return ERR_PROTOCOL;
}

/* Discard `n` bytes of a non-synchronizing literal; 0 or -1. */
static int skip_bytes(struct imap_parser *p, uint64_t n)
{
    char junk[4096];

    if (n > EATLINE_SKIP_MAX) {
        p->must_close = 1;
        return -1;
    }
    while (n) {
        size_t want = n < sizeof(junk) ? (size_t)n : sizeof(junk);

        if (prot_readfull(p->in, junk, want)) {
            p->must_close = 1;
            return -1;
        }
        n -= want;
    }
    return 0;
}

void imap_parser_eatline(struct imap_parser *p)
{
    uint64_t num = 0;
    int state = 0;      /* 0 text, 1 digits after "{", 2 "+" seen,
                         * 3 "}" after "+", 4 CR after that */
    int c;

    if (p->last == '\n' || imap_parser_is_fatal(p))
        return;
    for (;;) {
        c = prot_getc(p->in);
        if (c == EOF) {
            p->must_close = 1;
            return;
        }
        if (c == '\n') {
            if (state != 3 && state != 4)
                break;
            if (skip_bytes(p, num))
                return;
            state = 0;
            continue;
        }
        if (c == '{') {
            state = 1;
            num = 0;
        }
        else if (state == 1 && c >= '0' && c <= '9' && num < UINT32_MAX) {
            num = num * 10 + (uint64_t)(c - '0');
        }
        else if (state == 1 && c == '+') {
            state = 2;
        }
        else if (state == 2 && c == '}') {
            state = 3;
        }
        else if (state == 3 && c == '\r') {
            state = 4;
        }
        else {
            state = 0;
        }
    }
    p->last = '\n';
}

int imap_parser_is_fatal(const struct imap_parser *p)
{
    return p->must_close || p->error == ERR_EOF || p->error == ERR_TIMEOUT
           || p->error == ERR_IO;
}

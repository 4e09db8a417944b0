/* timsieved: reading ManageSieve commands (atoms, numbers, quoted
 * strings, literals) and writing responses (RFC 5804 section 4). */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <stdio.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/error.h"
#include "lib/prot.h"
#include "lib/xmalloc.h"

#include "sieve/timsieved.h"

/* Longest command line, literals not counted. */
#define LINE_MAX_BYTES (64 * 1024)
/* Digits in a number or a literal length (2^32 - 1 has 10). */
#define DIGITS_MAX 10

/* The state of reading one line. */
struct reader {
    struct timsieved *s;
    size_t linebytes;           /* bytes outside literals so far */
    int at_eol;                 /* the line's LF has been read */
    const char *error;          /* why the line is malformed */
};

void timsieved_cmd_clear(struct timsieved_cmd *cmd, int is_final)
{
    int i;

    cmd->word[0] = '\0';
    cmd->argc = 0;
    for (i = 0; i < TIMSIEVED_ARGS_MAX; i++) {
        cmd->args[i].is_number = 0;
        cmd->args[i].number = 0;
        cmd->args[i].is_toobig = 0;
        if (is_final)
            buf_free(&cmd->args[i].s);
        else
            buf_reset(&cmd->args[i].s);
    }
}

/* The bound on one string for the session's state. */
static size_t string_max(const struct timsieved *s)
{
    size_t script = timsieved_max_script_size();

    if (!s->userid)
        return TIMSIEVED_PREAUTH_STRING_MAX;
    return script > TIMSIEVED_STRING_MIN ? script : TIMSIEVED_STRING_MIN;
}

/* Next byte of the line, counted against LINE_MAX_BYTES; EOF at the end
 * of data. */
static int next(struct reader *rd)
{
    int c = prot_getc(rd->s->in);

    if (c == '\n')
        rd->at_eol = 1;
    rd->linebytes++;
    return c;
}

/* Mark the line malformed (the first reason wins). */
static int fail(struct reader *rd, const char *why)
{
    if (!rd->error)
        rd->error = why;
    return ERR_PROTOCOL;
}

/* The stream's error for an EOF from prot_getc. */
static int stream_error(struct reader *rd)
{
    int r = prot_error_code(rd->s->in);

    return r ? r : ERR_EOF;
}

/* Read the end of a line: CRLF or a bare LF. */
static int read_eol(struct reader *rd, int c)
{
    if (c == '\r')
        c = next(rd);
    if (c == EOF)
        return stream_error(rd);
    if (c != '\n')
        return fail(rd, "Expected end of line");
    return 0;
}

/* quoted = DQUOTE *QUOTED-CHAR DQUOTE, the opening quote read. */
static int read_quoted(struct reader *rd, size_t max, struct buf *out)
{
    int c;

    for (;;) {
        c = next(rd);
        if (c == EOF)
            return stream_error(rd);
        if (c == '"')
            return 0;
        if (c == '\\') {
            c = next(rd);
            if (c == EOF)
                return stream_error(rd);
            if (c != '"' && c != '\\')
                return fail(rd, "Invalid escape in quoted string");
        } else if (c == '\r' || c == '\n' || c == '\0') {
            return fail(rd, "Invalid character in quoted string");
        }
        if (out->len >= max || rd->linebytes > LINE_MAX_BYTES)
            return fail(rd, "Quoted string too long");
        buf_putc(out, (char)c);
    }
}

/* Up to DIGITS_MAX digits starting with `c` into *val_r; the first
 * byte after them in *c_r.  Returns 0 or ERR_PROTOCOL. */
static int read_digits(struct reader *rd, int c, uint32_t *val_r, int *c_r)
{
    uint64_t v = 0;
    int n = 0;

    while (c >= '0' && c <= '9') {
        if (++n > DIGITS_MAX)
            return fail(rd, "Number too large");
        v = v * 10 + (uint64_t)(c - '0');
        c = next(rd);
    }
    if (n == 0 || v > UINT32_MAX)
        return fail(rd, "Invalid number");
    *val_r = (uint32_t)v;
    *c_r = c;
    return 0;
}

/* Throw away `n` bytes of input. */
static int discard(struct reader *rd, size_t n)
{
    char chunk[4096];
    size_t k;
    int r;

    while (n > 0) {
        k = n < sizeof(chunk) ? n : sizeof(chunk);
        r = prot_readfull(rd->s->in, chunk, k);
        if (r)
            return r;
        n -= k;
    }
    return 0;
}

/* literal-c2s = "{" number ["+"] "}" CRLF *OCTET, the brace read.  A
 * synchronizing "{n}" is taken like "{n+}": ManageSieve has no
 * continuation request, and clients send the octets straight away. */
static int read_literal(struct reader *rd, size_t max, struct timsieved_arg *a)
{
    uint32_t len;
    int c;
    int r;

    r = read_digits(rd, next(rd), &len, &c);
    if (r)
        return r;
    if (c == '+')
        c = next(rd);
    if (c != '}')
        return fail(rd, "Invalid literal");
    r = read_eol(rd, next(rd));
    if (r)
        return r;
    rd->at_eol = 0;         /* the command goes on after the octets */

    if (len > max) {
        /* Refused before a byte of it is read when it is far too big
         * (or the client has not logged in); otherwise skipped so the
         * session stays in step and the command fails on its own. */
        if (!rd->s->userid || len - max > TIMSIEVED_DISCARD_MAX)
            return ERR_TOOBIG;
        a->is_toobig = 1;
        return discard(rd, len);
    }
    buf_ensure(&a->s, (size_t)len + 1);
    r = prot_readfull(rd->s->in, a->s.s, len);
    if (r)
        return r;
    a->s.len = len;
    return 0;
}

/* One argument, its first byte `c` read: string or number. */
static int read_arg(struct reader *rd, int c, struct timsieved_arg *a,
                    int *c_r)
{
    size_t max = string_max(rd->s);
    int r;

    if (c == '"')
        r = read_quoted(rd, max, &a->s);
    else if (c == '{')
        r = read_literal(rd, max, a);
    else if (c >= '0' && c <= '9') {
        a->is_number = 1;
        return read_digits(rd, c, &a->number, c_r);
    } else if (c == EOF)
        return stream_error(rd);
    else
        return fail(rd, "Expected a string or a number");
    if (r)
        return r;
    buf_cstring(&a->s);
    *c_r = next(rd);
    return 0;
}

/* Skip the rest of a malformed line. */
static int skip_line(struct reader *rd)
{
    struct buf rest = BUF_INITIALIZER;
    int r = 0;

    if (!rd->at_eol)
        r = prot_getline(rd->s->in, &rest, 1, NULL);
    buf_free(&rest);
    return r;
}

int timsieved_read_command(struct timsieved *s, struct timsieved_cmd *cmd,
                           const char **error_r)
{
    struct timsieved_arg extra;
    struct reader rd = { s, 0, 0, NULL };
    size_t n = 0;
    int c;
    int r = 0;

    *error_r = NULL;
    timsieved_cmd_clear(cmd, 0);
    memset(&extra, 0, sizeof(extra));

    /* The command word: letters only. */
    c = next(&rd);
    while ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) {
        if (n >= TIMSIEVED_WORD_MAX) {
            r = fail(&rd, "Unknown command");
            break;
        }
        cmd->word[n++] = (char)(c >= 'a' ? c - 'a' + 'A' : c);
        c = next(&rd);
    }
    cmd->word[n] = '\0';
    if (c == EOF)
        return stream_error(&rd);
    if (!r && n == 0)
        r = fail(&rd, c == '\r' || c == '\n' ? "Empty command"
                                             : "Invalid command");

    /* Arguments, each after one space; extra ones are read and dropped
     * so the line (and any literal in it) is consumed whole. */
    while (!r && c == ' ') {
        struct timsieved_arg *a = cmd->argc < TIMSIEVED_ARGS_MAX
                                  ? &cmd->args[cmd->argc] : &extra;

        if (a == &extra)
            buf_reset(&extra.s);
        r = read_arg(&rd, next(&rd), a, &c);
        if (!r && a == &extra)
            fail(&rd, "Too many arguments");
        else if (!r)
            cmd->argc++;
    }
    if (!r)
        r = read_eol(&rd, c);
    buf_free(&extra.s);

    if (r == ERR_PROTOCOL || (!r && rd.error)) {
        int e = skip_line(&rd);

        *error_r = rd.error;
        return e && e != ERR_EOF ? e : ERR_PROTOCOL;
    }
    return r;
}

int timsieved_read_auth_response(struct timsieved *s, struct buf *out)
{
    struct reader rd = { s, 0, 0, NULL };
    struct timsieved_arg a;
    int c;
    int r;

    memset(&a, 0, sizeof(a));
    buf_reset(out);
    r = read_arg(&rd, next(&rd), &a, &c);
    if (!r && (a.is_number || a.is_toobig))
        r = fail(&rd, "Expected a string");
    if (!r)
        r = read_eol(&rd, c);
    if (!r)
        buf_appendmap(out, a.s.s, a.s.len);
    if (a.s.s)
        xzero_secret(a.s.s, a.s.alloc);
    buf_free(&a.s);
    if (r == ERR_PROTOCOL)
        skip_line(&rd);
    return r;
}

void timsieved_put_string(struct timsieved *s, const char *p, size_t len)
{
    size_t i;

    if (len <= TIMSIEVED_QUOTED_MAX
        && !memchr(p, '\r', len) && !memchr(p, '\n', len)
        && !memchr(p, '\0', len)) {
        prot_putc(s->out, '"');
        for (i = 0; i < len; i++) {
            if (p[i] == '"' || p[i] == '\\')
                prot_putc(s->out, '\\');
            prot_putc(s->out, (unsigned char)p[i]);
        }
        prot_putc(s->out, '"');
        return;
    }
    prot_printf(s->out, "{%zu}\r\n", len);
    prot_write(s->out, p, len);
}

void timsieved_reply_text(struct timsieved *s, const char *status,
                          const char *code, const char *code_arg,
                          const char *text, size_t textlen)
{
    prot_puts(s->out, status);
    if (code) {
        prot_printf(s->out, " (%s", code);
        if (code_arg) {
            prot_putc(s->out, ' ');
            timsieved_put_string(s, code_arg, strlen(code_arg));
        }
        prot_putc(s->out, ')');
    }
    if (text) {
        prot_putc(s->out, ' ');
        timsieved_put_string(s, text, textlen);
    }
    prot_puts(s->out, "\r\n");
}

void timsieved_reply(struct timsieved *s, const char *status,
                     const char *code, const char *code_arg,
                     const char *text)
{
    timsieved_reply_text(s, status, code, code_arg, text,
                         text ? strlen(text) : 0);
}

void timsieved_ok(struct timsieved *s)
{
    prot_puts(s->out, "OK\r\n");
}

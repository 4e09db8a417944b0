/* Sieve lexer and recursive-descent parser (RFC 5228 section 8): script
 * text to a parse tree, with line and column for every error. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/strarray.h"
#include "lib/xmalloc.h"

#include "sieve/sieve.h"
#include "sieve/sieve_int.h"

enum tok {
    T_EOF, T_ERROR, T_IDENT, T_TAG, T_NUMBER, T_STRING, T_LBRACKET,
    T_RBRACKET, T_LPAREN, T_RPAREN, T_COMMA, T_SEMI, T_LBRACE, T_RBRACE
};

struct lexer {
    struct sieve_parser *p;
    const char *s;
    size_t len, pos;
    int line, col;
    /* the current token */
    enum tok tok;
    int tline, tcol;
    struct buf text;            /* identifier, tag or string */
    uint64_t number;
    int depth;
};

void sieve_error(struct sieve_parser *p, int line, int col,
                 const char *fmt, ...)
{
    va_list ap;

    p->nerrors++;
    if (p->nerrors > SIEVE_MAX_ERRORS)
        return;
    buf_printf(p->errors, "line %d: column %d: ", line, col);
    va_start(ap, fmt);
    buf_vprintf(p->errors, fmt, ap);
    va_end(ap);
    buf_putc(p->errors, '\n');
    if (p->nerrors == SIEVE_MAX_ERRORS)
        buf_printf(p->errors, "line %d: too many errors\n", line);
}

/* The byte `ahead` places on, or -1 past the end. */
static int peekc(struct lexer *lx, size_t ahead)
{
    if (lx->pos + ahead >= lx->len)
        return -1;
    return (unsigned char)lx->s[lx->pos + ahead];
}

/* Step over one byte, keeping line and column. */
static void advance(struct lexer *lx)
{
    if (lx->pos >= lx->len)
        return;
    if (lx->s[lx->pos] == '\n') {
        lx->line++;
        lx->col = 1;
    } else {
        lx->col++;
    }
    lx->pos++;
}

/* Report a lexical error at the token start; it ends the script. */
static enum tok lex_fail(struct lexer *lx, const char *msg)
{
    sieve_error(lx->p, lx->tline, lx->tcol, "%s", msg);
    lx->pos = lx->len;          /* one lexical error ends the script */
    return lx->tok = T_ERROR;
}

/* Skip white space and comments; returns -1 after reporting an error. */
static int skip_space(struct lexer *lx)
{
    for (;;) {
        int c = peekc(lx, 0);

        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            advance(lx);
        } else if (c == '#') {
            while (peekc(lx, 0) != -1 && peekc(lx, 0) != '\n')
                advance(lx);
        } else if (c == '/' && peekc(lx, 1) == '*') {
            int line = lx->line, col = lx->col;
            advance(lx);
            advance(lx);
            while (!(peekc(lx, 0) == '*' && peekc(lx, 1) == '/')) {
                if (peekc(lx, 0) == -1) {
                    sieve_error(lx->p, line, col, "unterminated comment");
                    return -1;
                }
                advance(lx);
            }
            advance(lx);
            advance(lx);
        } else {
            return 0;
        }
    }
}

/* A quoted string (RFC 5228 2.4.2): "\\" and "\"" escape, any other
 * backslash is dropped. */
static enum tok lex_quoted(struct lexer *lx)
{
    advance(lx);
    for (;;) {
        int c = peekc(lx, 0);

        if (c == -1)
            return lex_fail(lx, "unterminated quoted string");
        if (c == 0)
            return lex_fail(lx, "NUL character in string");
        if (c == '"') {
            advance(lx);
            return lx->tok = T_STRING;
        }
        if (c == '\\') {
            advance(lx);
            c = peekc(lx, 0);
            if (c == -1)
                return lex_fail(lx, "unterminated quoted string");
            if (c == 0)
                return lex_fail(lx, "NUL character in string");
        }
        if (lx->text.len >= SIEVE_MAX_STRING)
            return lex_fail(lx, "string too long");
        buf_putc(&lx->text, (char)c);
        advance(lx);
    }
}

/* "text:" was read: the rest of the line must be blank or a comment,
 * then lines up to one holding only ".". */
static enum tok lex_multiline(struct lexer *lx)
{
    while (peekc(lx, 0) == ' ' || peekc(lx, 0) == '\t')
        advance(lx);
    if (peekc(lx, 0) == '#') {
        while (peekc(lx, 0) != -1 && peekc(lx, 0) != '\n')
            advance(lx);
    }
    if (peekc(lx, 0) == '\r')
        advance(lx);
    if (peekc(lx, 0) != '\n')
        return lex_fail(lx, "expected end of line after \"text:\"");
    advance(lx);

    for (;;) {
        size_t start = lx->pos, end;

        if (lx->pos >= lx->len)
            return lex_fail(lx, "unterminated multi-line string");
        while (peekc(lx, 0) != -1 && peekc(lx, 0) != '\n')
            advance(lx);
        if (peekc(lx, 0) == -1)
            return lex_fail(lx, "unterminated multi-line string");
        end = lx->pos;
        advance(lx);
        if (end > start && lx->s[end - 1] == '\r')
            end--;
        if (end - start == 1 && lx->s[start] == '.')
            return lx->tok = T_STRING;
        if (lx->s[start] == '.' && end > start + 1 && lx->s[start + 1] == '.')
            start++;            /* dot-stuffing */
        if (lx->text.len + (end - start) + 2 > SIEVE_MAX_STRING)
            return lex_fail(lx, "string too long");
        buf_appendmap(&lx->text, lx->s + start, end - start);
        buf_appendcstr(&lx->text, "\r\n");
    }
}

static int is_ident_start(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_ident_char(int c)
{
    return is_ident_start(c) || (c >= '0' && c <= '9');
}

/* A number with an optional K, M or G quantifier (powers of 1024). */
static enum tok lex_number(struct lexer *lx)
{
    uint64_t n = 0;
    int c;

    while ((c = peekc(lx, 0)) >= '0' && c <= '9') {
        if (n > (UINT64_MAX - 9) / 10)
            return lex_fail(lx, "number too large");
        n = n * 10 + (uint64_t)(c - '0');
        advance(lx);
    }
    c = peekc(lx, 0);
    if (c == 'K' || c == 'k' || c == 'M' || c == 'm' || c == 'G' ||
        c == 'g') {
        int shift = (c == 'K' || c == 'k') ? 10 :
                    (c == 'M' || c == 'm') ? 20 : 30;
        if (n > (UINT64_MAX >> shift))
            return lex_fail(lx, "number too large");
        n <<= shift;
        advance(lx);
    }
    if (is_ident_char(peekc(lx, 0)))
        return lex_fail(lx, "bad number");
    lx->number = n;
    return lx->tok = T_NUMBER;
}

/* Read the next token into lx. */
static enum tok lex_next(struct lexer *lx)
{
    int c;

    buf_reset(&lx->text);
    if (lx->tok == T_ERROR)
        return T_ERROR;
    if (skip_space(lx) < 0) {
        lx->pos = lx->len;
        return lx->tok = T_ERROR;
    }
    lx->tline = lx->line;
    lx->tcol = lx->col;
    c = peekc(lx, 0);
    if (c == -1)
        return lx->tok = T_EOF;
    if (c == 0)
        return lex_fail(lx, "NUL character in script");
    if (c == '"')
        return lex_quoted(lx);
    if (c >= '0' && c <= '9')
        return lex_number(lx);
    if (c == ':' || is_ident_start(c)) {
        enum tok t = T_IDENT;

        if (c == ':') {
            advance(lx);
            if (!is_ident_start(peekc(lx, 0)))
                return lex_fail(lx, "bad tag");
            t = T_TAG;
        }
        while (is_ident_char(peekc(lx, 0))) {
            if (lx->text.len >= 256)
                return lex_fail(lx, "identifier too long");
            buf_putc(&lx->text, (char)peekc(lx, 0));
            advance(lx);
        }
        buf_tolower(&lx->text);
        if (t == T_IDENT && peekc(lx, 0) == ':' &&
            !strcmp(buf_cstring(&lx->text), "text")) {
            advance(lx);
            buf_reset(&lx->text);
            return lex_multiline(lx);
        }
        return lx->tok = t;
    }
    advance(lx);
    switch (c) {
    case '[': return lx->tok = T_LBRACKET;
    case ']': return lx->tok = T_RBRACKET;
    case '(': return lx->tok = T_LPAREN;
    case ')': return lx->tok = T_RPAREN;
    case ',': return lx->tok = T_COMMA;
    case ';': return lx->tok = T_SEMI;
    case '{': return lx->tok = T_LBRACE;
    case '}': return lx->tok = T_RBRACE;
    }
    return lex_fail(lx, "unexpected character");
}

/* The current token for an error message. */
static const char *tok_name(const struct lexer *lx)
{
    switch (lx->tok) {
    case T_EOF: return "end of script";
    case T_IDENT: return "identifier";
    case T_TAG: return "tag";
    case T_NUMBER: return "number";
    case T_STRING: return "string";
    case T_LBRACKET: return "\"[\"";
    case T_RBRACKET: return "\"]\"";
    case T_LPAREN: return "\"(\"";
    case T_RPAREN: return "\")\"";
    case T_COMMA: return "\",\"";
    case T_SEMI: return "\";\"";
    case T_LBRACE: return "\"{\"";
    case T_RBRACE: return "\"}\"";
    default: return "error";
    }
}

/* Report "expected X, found Y" (once) and stop parsing. */
static int expect_fail(struct lexer *lx, const char *what)
{
    if (lx->tok != T_ERROR)
        sieve_error(lx->p, lx->tline, lx->tcol, "expected %s, found %s",
                    what, tok_name(lx));
    lx->tok = T_ERROR;
    lx->pos = lx->len;
    return -1;
}

/* Free what an argument holds. */
static void arg_free(struct sieve_arg *a)
{
    free(a->tag);
    strarray_fini(&a->strings);
}

void sieve_node_free(struct sieve_node *n)
{
    while (n) {
        struct sieve_node *next = n->next;
        size_t i;

        for (i = 0; i < n->nargs; i++)
            arg_free(&n->args[i]);
        free(n->args);
        for (i = 0; i < n->ntests; i++)
            sieve_node_free(n->tests[i]);
        free(n->tests);
        sieve_node_free(n->block);
        free(n->name);
        free(n);
        n = next;
    }
}

/* test = identifier arguments */
static struct sieve_node *parse_test(struct lexer *lx);

/* Append an empty argument of type `t` at the current token. */
static struct sieve_arg *new_arg(struct sieve_node *n, enum sieve_argtype t,
                                 struct lexer *lx)
{
    struct sieve_arg *a;

    n->args = xreallocarray(n->args, n->nargs + 1, sizeof(*n->args));
    a = &n->args[n->nargs++];
    memset(a, 0, sizeof(*a));
    a->type = t;
    a->line = lx->tline;
    a->col = lx->tcol;
    return a;
}

/* string-list = "[" string *("," string) "]" */
static int parse_string_list(struct lexer *lx, struct sieve_arg *a)
{
    lex_next(lx);
    for (;;) {
        if (lx->tok != T_STRING)
            return expect_fail(lx, "string");
        if (a->strings.count >= SIEVE_MAX_LIST) {
            sieve_error(lx->p, lx->tline, lx->tcol, "string list too long");
            return expect_fail(lx, "shorter list");
        }
        strarray_append(&a->strings, buf_cstring(&lx->text));
        lex_next(lx);
        if (lx->tok == T_RBRACKET)
            break;
        if (lx->tok != T_COMMA)
            return expect_fail(lx, "\",\" or \"]\"");
        lex_next(lx);
    }
    lex_next(lx);
    return 0;
}

/* Append test `t` to n's tests. */
static int add_test(struct sieve_node *n, struct sieve_node *t)
{
    n->tests = xreallocarray(n->tests, n->ntests + 1, sizeof(*n->tests));
    n->tests[n->ntests++] = t;
    return 0;
}

/* arguments = *argument [ test / test-list ] */
static int parse_arguments(struct lexer *lx, struct sieve_node *n)
{
    for (;;) {
        struct sieve_arg *a;

        if (lx->tok == T_TAG) {
            a = new_arg(n, ARG_TAG, lx);
            a->tag = xstrdup(buf_cstring(&lx->text));
            lex_next(lx);
        } else if (lx->tok == T_NUMBER) {
            a = new_arg(n, ARG_NUMBER, lx);
            a->number = lx->number;
            lex_next(lx);
        } else if (lx->tok == T_STRING) {
            a = new_arg(n, ARG_STRING, lx);
            strarray_append(&a->strings, buf_cstring(&lx->text));
            lex_next(lx);
        } else if (lx->tok == T_LBRACKET) {
            a = new_arg(n, ARG_LIST, lx);
            if (parse_string_list(lx, a) < 0)
                return -1;
        } else {
            break;
        }
    }

    if (lx->tok == T_IDENT) {
        struct sieve_node *t = parse_test(lx);
        if (!t)
            return -1;
        add_test(n, t);
    } else if (lx->tok == T_LPAREN) {
        n->has_test_list = 1;
        lex_next(lx);
        for (;;) {
            struct sieve_node *t = parse_test(lx);
            if (!t)
                return -1;
            add_test(n, t);
            if (n->ntests > SIEVE_MAX_LIST) {
                sieve_error(lx->p, lx->tline, lx->tcol, "too many tests");
                return expect_fail(lx, "fewer tests");
            }
            if (lx->tok == T_RPAREN)
                break;
            if (lx->tok != T_COMMA)
                return expect_fail(lx, "\",\" or \")\"");
            lex_next(lx);
        }
        lex_next(lx);
    }
    return 0;
}

/* A node named by the current identifier, counted against the command limit. */
static struct sieve_node *new_node(struct lexer *lx)
{
    struct sieve_node *n = xzmalloc(sizeof(*n));

    n->name = xstrdup(buf_cstring(&lx->text));
    n->line = lx->tline;
    n->col = lx->tcol;
    if (++lx->p->ncommands > SIEVE_MAX_COMMANDS) {
        sieve_error(lx->p, lx->tline, lx->tcol, "too many commands");
        expect_fail(lx, "a shorter script");
    }
    return n;
}

static struct sieve_node *parse_test(struct lexer *lx)
{
    struct sieve_node *n;

    if (lx->tok != T_IDENT) {
        expect_fail(lx, "test");
        return NULL;
    }
    if (++lx->depth > SIEVE_MAX_DEPTH) {
        sieve_error(lx->p, lx->tline, lx->tcol, "tests nested too deeply");
        expect_fail(lx, "less nesting");
        return NULL;
    }
    n = new_node(lx);
    lex_next(lx);
    if (lx->tok == T_ERROR || parse_arguments(lx, n) < 0) {
        sieve_node_free(n);
        n = NULL;
    }
    lx->depth--;
    return n;
}

/* commands = *command, up to "}" in a block or the end. */
static struct sieve_node *parse_commands(struct lexer *lx, int in_block);

/* command = identifier arguments (";" / block) */
static struct sieve_node *parse_command(struct lexer *lx)
{
    struct sieve_node *n = new_node(lx);

    lex_next(lx);
    if (lx->tok == T_ERROR || parse_arguments(lx, n) < 0)
        goto fail;
    if (lx->tok == T_SEMI) {
        lex_next(lx);
        return n;
    }
    if (lx->tok != T_LBRACE) {
        expect_fail(lx, "\";\" or \"{\"");
        goto fail;
    }
    if (++lx->depth > SIEVE_MAX_DEPTH) {
        sieve_error(lx->p, lx->tline, lx->tcol, "blocks nested too deeply");
        expect_fail(lx, "less nesting");
        goto fail;
    }
    n->has_block = 1;
    lex_next(lx);
    n->block = parse_commands(lx, 1);
    lx->depth--;
    if (lx->tok != T_RBRACE) {
        expect_fail(lx, "\"}\"");
        goto fail;
    }
    lex_next(lx);
    return n;

fail:
    sieve_node_free(n);
    return NULL;
}

static struct sieve_node *parse_commands(struct lexer *lx, int in_block)
{
    struct sieve_node *head = NULL, **tail = &head;

    while (lx->tok == T_IDENT) {
        struct sieve_node *n = parse_command(lx);
        if (!n)
            break;
        *tail = n;
        tail = &n->next;
    }
    if (!in_block && lx->tok != T_EOF && lx->tok != T_ERROR)
        expect_fail(lx, "command");
    return head;
}

struct sieve_node *sieve_parse(struct sieve_parser *p, const char *text,
                               size_t len)
{
    struct lexer lx;
    struct sieve_node *script;

    memset(&lx, 0, sizeof(lx));
    lx.p = p;
    lx.s = text;
    lx.len = len;
    lx.line = lx.col = 1;
    lx.tok = T_EOF;
    if (len > SIEVE_MAX_SCRIPT) {
        sieve_error(p, 1, 1, "script too long (over %d bytes)",
                    SIEVE_MAX_SCRIPT);
        return NULL;
    }
    lex_next(&lx);
    script = parse_commands(&lx, 0);
    buf_free(&lx.text);
    return script;
}

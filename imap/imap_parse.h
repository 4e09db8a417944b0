/* The IMAP command tokenizer: tags, atoms, quoted strings, literals with
 * their continuation, astring/nstring and parenthesised lists, read
 * from a protstream with every length bounded. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_IMAP_IMAP_PARSE_H
#define COLUMBA_IMAP_IMAP_PARSE_H

#include <stddef.h>

#include "lib/buf.h"

struct protstream;

/*
 * Wire grammar handled here (RFC 9051 section 9, RFC 7888):
 *
 *   atom     = 1*ATOM-CHAR            (no SP, CTL, ( ) { % * " \ ])
 *   quoted   = DQUOTE *(QUOTED-CHAR / "\" DQUOTE / "\\") DQUOTE
 *   literal  = "{" number ["+"] "}" CRLF *OCTET
 *   astring  = 1*ASTRING-CHAR / string    (ASTRING-CHAR adds "]")
 *   nstring  = "NIL" / string
 *
 * Every reader returns the byte that follows the token (SP, "(", ")",
 * CR, LF...) or EOF.  EOF means the token could not be read: either the
 * stream failed (ERR_EOF, ERR_TIMEOUT, ERR_IO in `error`) or the input
 * is malformed or too big (ERR_PROTOCOL or ERR_TOOBIG, with a short
 * reason in `errmsg` suitable for "tag BAD <reason>").  The caller then
 * calls imap_parser_eatline() so the session stays in step.
 *
 * Bounds: an atom or quoted string holds at most max_word bytes; a
 * literal among the arguments at most max_literal bytes (APPEND passes
 * its own bound for the message); everything read for one command,
 * literals included, at most max_command bytes.  A synchronizing
 * literal over its bound is refused before anything is read and before
 * "+" is sent.  A non-synchronizing literal ({n+}) over its bound cannot
 * be skipped safely, so `must_close` is set: the session sends BYE.
 * NUL bytes are refused everywhere except inside literals.
 */

/* Defaults used when the configuration does not say otherwise. */
#define IMAP_PARSE_DEFAULT_WORD (128 * 1024)
#define IMAP_PARSE_DEFAULT_LITERAL (128 * 1024)
#define IMAP_PARSE_DEFAULT_COMMAND (1024 * 1024)

struct imap_parser {
    struct protstream *in;
    struct protstream *out;     /* "+ go ahead" is sent here */
    size_t max_word;
    size_t max_literal;
    size_t max_command;
    size_t used;                /* bytes of the current command */
    int last;                   /* last byte read, or EOF */
    int error;                  /* 0 or ERR_* of the current command */
    const char *errmsg;         /* static reason for BAD */
    int must_close;             /* the session cannot continue */
    int literal_plus;           /* accept {n+} (LITERAL+) */
};

/* Set up `p` on the two streams with the default bounds and LITERAL+
 * on. */
void imap_parser_init(struct imap_parser *p, struct protstream *in,
                      struct protstream *out);

/* Start a new command: clear the error and the byte count. */
void imap_parser_begin(struct imap_parser *p);

/* Read a tag (an astring-char atom without "+") into `out` (reset
 * first).  Returns the next byte or EOF (see above). */
int imap_parse_tag(struct imap_parser *p, struct buf *out);

/* Read an atom.  An empty atom is an error. */
int imap_parse_atom(struct imap_parser *p, struct buf *out);

/* Read an astring: atom (with "]" allowed), quoted or literal. */
int imap_parse_astring(struct imap_parser *p, struct buf *out);

/* Read a LIST mailbox pattern: an astring whose bare form may also hold
 * "%" and "*". */
int imap_parse_listmbox(struct imap_parser *p, struct buf *out);

/* Read a string (quoted or literal only). */
int imap_parse_string(struct imap_parser *p, struct buf *out);

/* Read an nstring: NIL sets *is_nil_r, else as a string. */
int imap_parse_nstring(struct imap_parser *p, struct buf *out,
                       int *is_nil_r);

/* Read a quoted string or a literal whose size may be up to `max`
 * bytes (APPEND's message), into `out`. */
int imap_parse_string_max(struct imap_parser *p, struct buf *out,
                          size_t max);

/* Read a "word": the bytes up to SP, CR, LF, "(" or ")" (fetch items,
 * sequence sets, flags with backslash, BODY[...] with its brackets
 * balanced so "BODY[HEADER.FIELDS (A B)]" is one word).  Bounded by
 * max_word. */
int imap_parse_word(struct imap_parser *p, struct buf *out);

/* Is `c` (just returned by a reader) the end of the line?  Reads the LF
 * after a CR.  Returns 0 at the end, else sets the error ("Unexpected
 * extra arguments") and returns ERR_PROTOCOL. */
int imap_parse_eol(struct imap_parser *p, int c);

/* Read the next byte of the command (counted against max_command). */
int imap_parse_getc(struct imap_parser *p);

/* Put `c` back (one byte). */
void imap_parse_ungetc(struct imap_parser *p, int c);

/* Record a syntax error with a static reason; returns EOF. */
int imap_parse_fail(struct imap_parser *p, const char *why);

/* Skip the rest of the current line so the next command starts in
 * step, skipping the bytes of non-synchronizing literals on the way.
 * A no-op when the last byte read was the LF. */
void imap_parser_eatline(struct imap_parser *p);

/* Is the stream itself finished (EOF, timeout, I/O error) rather than
 * the command malformed? */
int imap_parser_is_fatal(const struct imap_parser *p);

#endif /* COLUMBA_IMAP_IMAP_PARSE_H */

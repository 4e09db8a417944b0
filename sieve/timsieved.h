/* timsieved: the ManageSieve server (RFC 5804).  Shared between the
 * session code (timsieved.c), the command reader and reply writer
 * (timsieved_parse.c) and the script commands (timsieved_script.c). */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_SIEVE_TIMSIEVED_H
#define COLUMBA_SIEVE_TIMSIEVED_H

#include <stddef.h>
#include <stdint.h>

#include <sasl/sasl.h>
#include <openssl/ssl.h>

#include "lib/buf.h"

struct protstream;

/* Longest command word (RENAMESCRIPT, UNAUTHENTICATE). */
#define TIMSIEVED_WORD_MAX 32
/* Most arguments a command takes. */
#define TIMSIEVED_ARGS_MAX 2
/* Longest string before authentication (a SASL response included). */
#define TIMSIEVED_PREAUTH_STRING_MAX (32 * 1024)
/* Smallest bound on one string after authentication; scripts may be
 * larger when sieve_maxscriptsize allows. */
#define TIMSIEVED_STRING_MIN (32 * 1024)
/* An authenticated client's literal beyond the bound is read and thrown
 * away (the command then fails) when it is no larger than this over the
 * bound; a larger one ends the session without being read. */
#define TIMSIEVED_DISCARD_MAX (1024 * 1024)
/* Longest quoted string the server sends; longer text goes as a
 * literal (RFC 5804 section 4 limits quoted strings to 1024 octets). */
#define TIMSIEVED_QUOTED_MAX 1024

/* One ManageSieve session. */
struct timsieved {
    struct protstream *in;
    struct protstream *out;
    SSL *tls;
    sasl_conn_t *sasl;
    char *userid;               /* NULL until authenticated */
    char *dir;                  /* the user's sieve directory */
    int nfailures;              /* failed AUTHENTICATE attempts */
    int logout;                 /* end the session after this command */
};

/* One argument of a command. */
struct timsieved_arg {
    int is_number;              /* a number rather than a string */
    uint32_t number;
    struct buf s;               /* the string (NUL-terminated copy) */
    int is_toobig;              /* a literal over the bound, discarded */
};

/* One command as read from the client. */
struct timsieved_cmd {
    char word[TIMSIEVED_WORD_MAX + 1];  /* upper-cased */
    int argc;
    struct timsieved_arg args[TIMSIEVED_ARGS_MAX];
};

/* ---- timsieved_parse.c ---- */

/* Empty `cmd` (and release its strings when `is_final`). */
void timsieved_cmd_clear(struct timsieved_cmd *cmd, int is_final);

/* Read one command line (with its literals) into `cmd`.  Returns 0;
 * ERR_PROTOCOL for a malformed command (the rest of the line has been
 * skipped; *error_r says why); ERR_TOOBIG when a literal was offered
 * that is too large to skip (nothing of it was read: the session must
 * end); or the stream's error (ERR_EOF, ERR_TIMEOUT, ERR_IO). */
int timsieved_read_command(struct timsieved *s, struct timsieved_cmd *cmd,
                           const char **error_r);

/* Read one client response of an AUTHENTICATE exchange: a string and
 * CRLF, into `out`.  Returns 0, ERR_PROTOCOL (malformed; line skipped),
 * ERR_TOOBIG (session must end) or a stream error. */
int timsieved_read_auth_response(struct timsieved *s, struct buf *out);

/* Send `len` bytes as a string: quoted when short and free of CR, LF
 * and NUL, else as a literal {n}. */
void timsieved_put_string(struct timsieved *s, const char *p, size_t len);

/* Send a complete response line: `status` ("OK", "NO", "BYE"), then,
 * when `code` is set, " (<code>)" -- with " <code_arg>" as a string
 * inside the parentheses when `code_arg` is set (TAG, SASL) -- then
 * `text` as a string when not NULL, and CRLF. */
void timsieved_reply(struct timsieved *s, const char *status,
                     const char *code, const char *code_arg,
                     const char *text);

/* A bare "OK": no text, so that Cyrus's own client library (sieveshell,
 * cyradm), which rejects anything after OK but a SASL code, can follow.
 * RFC 5804 makes the text optional. */
void timsieved_ok(struct timsieved *s);

/* The same with `textlen` bytes of text (may hold CRLF; sent as a
 * literal then). */
void timsieved_reply_text(struct timsieved *s, const char *status,
                          const char *code, const char *code_arg,
                          const char *text, size_t textlen);

/* ---- timsieved_script.c ---- */

/* The script commands; each answers the client itself. */
void timsieved_cmd_havespace(struct timsieved *s, struct timsieved_cmd *c);
void timsieved_cmd_putscript(struct timsieved *s, struct timsieved_cmd *c);
void timsieved_cmd_checkscript(struct timsieved *s,
                               struct timsieved_cmd *c);
void timsieved_cmd_listscripts(struct timsieved *s,
                               struct timsieved_cmd *c);
void timsieved_cmd_setactive(struct timsieved *s, struct timsieved_cmd *c);
void timsieved_cmd_getscript(struct timsieved *s, struct timsieved_cmd *c);
void timsieved_cmd_deletescript(struct timsieved *s,
                                struct timsieved_cmd *c);
void timsieved_cmd_renamescript(struct timsieved *s,
                                struct timsieved_cmd *c);

/* The largest script accepted (sieve_maxscriptsize), in bytes. */
size_t timsieved_max_script_size(void);

#endif /* COLUMBA_SIEVE_TIMSIEVED_H */

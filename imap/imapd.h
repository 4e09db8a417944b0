/* imapd internals: the session every command handler works on, the
 * selected-mailbox state, and the reply helpers shared by the
 * imap_cmd_*.c files.  Not a public interface. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_IMAP_IMAPD_H
#define COLUMBA_IMAP_IMAPD_H

#include <stdint.h>

#include <sasl/sasl.h>
#include <openssl/ssl.h>

#include "lib/buf.h"
#include "lib/strarray.h"
#include "imap/acl.h"
#include "imap/imap_parse.h"
#include "imap/mailbox.h"
#include "imap/mboxname.h"
#include "imap/seqset.h"

/* Session states of RFC 9051 section 3, as bits for the command table. */
#define IMAPD_STATE_NOAUTH 0x1u
#define IMAPD_STATE_AUTH 0x2u
#define IMAPD_STATE_SELECTED 0x4u
#define IMAPD_STATE_ANY 0x7u

/* The mailbox of the SELECTED state.  Message sequence numbers are the
 * 1-based positions in `uids`, which holds the UIDs the client has been
 * told about, in ascending order. */
struct imapd_selected {
    struct mailbox *mb;         /* open, unlocked between commands */
    char *intname;
    char *extname;
    int is_readonly;
    uint32_t rights;
    uint32_t *uids;
    uint32_t exists;
    uint32_t alloc;
    uint64_t highestmodseq;     /* changes up to here are reported */
    uint32_t uidvalidity;
    unsigned nkeywords;         /* keywords in the last FLAGS sent */
    int use_seendb;             /* not the owner: \\Seen is per user */
    struct seqset seen;         /* ... the UIDs this user has seen */
    int seen_dirty;             /* `seen` changed, not yet written */
};

/* One client connection. */
struct imapd {
    struct protstream *in;
    struct protstream *out;
    struct imap_parser parser;
    struct buf tag;
    struct buf cmd;
    int is_uid;                 /* the command had the UID prefix */

    char *userid;               /* NULL until authenticated */
    struct auth_state *auth;
    int is_admin;
    struct namespace ns;

    SSL *tls;
    sasl_conn_t *sasl;
    int logout;                 /* end the session after this command */
    struct imapd_selected *sel;
    unsigned enabled;           /* IMAPD_ENABLED_* turned on by ENABLE */
};

/* Extensions a client turns on with ENABLE (RFC 5161). */
#define IMAPD_ENABLED_IMAP4REV2 0x1u
#define IMAPD_ENABLED_CONDSTORE 0x2u
#define IMAPD_ENABLED_QRESYNC 0x4u      /* implies CONDSTORE */
#define IMAPD_ENABLED_UTF8 0x8u         /* UTF8=ACCEPT */

/* Largest APPEND message accepted (maxmessagesize, or a default). */
extern size_t imapd_max_message;

/* ---- imapd.c: replies ---- */

/* Untagged or continuation output, as prot_printf on the session. */
void imapd_printf(struct imapd *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* "<tag> OK|NO|BAD <text>\r\n". */
void imapd_ok(struct imapd *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void imapd_no(struct imapd *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void imapd_bad(struct imapd *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* "<tag> NO [CODE] text" for a project error code from the store. */
void imapd_no_error(struct imapd *s, int r);

/* Check the end of the command after byte `c`.  Returns 0 at the end;
 * otherwise the parser holds the error and the dispatcher answers BAD. */
int imapd_eol(struct imapd *s, int c);

/* Expect one SP after an argument: returns 0, or records a syntax
 * error and returns -1. */
int imapd_sp(struct imapd *s, int c);

/* Append `s` to `out` as an IMAP string (quoted when possible, else a
 * literal). */
void imapd_buf_astring(struct buf *out, const char *str);

/* The CAPABILITY list for the current state into `out` (reset first). */
void imapd_capabilities(struct imapd *s, struct buf *out);

/* ---- imap_cmd_auth.c ---- */

/* servername, else the host name; static storage. */
const char *imapd_servername(void);

/* Process-wide SASL and TLS set-up (service_init).  Returns 0 or an
 * error (logged). */
int imapd_auth_init(void);
/* Per-connection SASL context; 0 or ERR_INTERNAL. */
int imapd_auth_session_start(struct imapd *s);
void imapd_auth_session_end(struct imapd *s);
/* Is STARTTLS available (a certificate is configured)? */
int imapd_tls_available(void);
/* Is a plaintext password allowed now (allowplaintext or TLS)? */
int imapd_plaintext_ok(const struct imapd *s);
/* Append " AUTH=X" for each mechanism offered now. */
void imapd_auth_capabilities(struct imapd *s, struct buf *out);
/* Run the TLS handshake on the connection (STARTTLS or implicit TLS).
 * Returns 0 or an error (logged). */
int imapd_tls_start(struct imapd *s);

void imapd_cmd_login(struct imapd *s, int c);
void imapd_cmd_authenticate(struct imapd *s, int c);
void imapd_cmd_starttls(struct imapd *s, int c);

/* ---- imap_cmd_mailbox.c ---- */

/* Turn a client's mailbox name into the internal one.  Returns 0 and a
 * malloc'd name, or ERR_MAILBOX_BADNAME. */
int imapd_intname(struct imapd *s, const char *extname, char **intname_r);
/* The external name of `intname` (malloc'd), or NULL. */
char *imapd_extname(struct imapd *s, const char *intname);

/* Look up `intname` and open it (shared, or exclusive with `is_write`;
 * `mb_r` NULL only looks up).  Sets *entry_r (may be NULL; caller
 * frees) and *mb_r (caller closes).  Returns 0,
 * ERR_MAILBOX_NONEXISTENT, ERR_MAILBOX_NOTSUPPORTED (not a mail
 * mailbox) or a mailbox error. */
struct mboxlist_entry;
int imapd_open_mailbox(const char *intname, int is_write,
                       struct mboxlist_entry **entry_r,
                       struct mailbox **mb_r);

/* Is `flag` one a client may set: a system flag other than \\Recent, or
 * a keyword atom? */
int imapd_flag_is_valid(const char *flag);

/* Read flags up to and including ")" (the "(" already read) into
 * `flags`, refusing \Recent, \* and non-atoms.  Returns the byte after
 * ")" or EOF. */
int imapd_parse_flaglist(struct imapd *s, strarray_t *flags);

void imapd_cmd_namespace(struct imapd *s, int c);
void imapd_cmd_create(struct imapd *s, int c);
void imapd_cmd_delete(struct imapd *s, int c);
void imapd_cmd_rename(struct imapd *s, int c);
void imapd_cmd_list(struct imapd *s, int c);
void imapd_cmd_lsub(struct imapd *s, int c);
void imapd_cmd_subscribe(struct imapd *s, int c);
void imapd_cmd_unsubscribe(struct imapd *s, int c);
void imapd_cmd_status(struct imapd *s, int c);
void imapd_cmd_append(struct imapd *s, int c);
void imapd_cmd_getacl(struct imapd *s, int c);
void imapd_cmd_setacl(struct imapd *s, int c);
void imapd_cmd_deleteacl(struct imapd *s, int c);
void imapd_cmd_myrights(struct imapd *s, int c);

/* ---- imap_cmd_quota.c ---- */

void imapd_cmd_getquotaroot(struct imapd *s, int c);
void imapd_cmd_getquota(struct imapd *s, int c);
void imapd_cmd_setquota(struct imapd *s, int c);

/* ---- imap_cmd_select.c ---- */

void imapd_cmd_select(struct imapd *s, int c);   /* SELECT and EXAMINE */
void imapd_cmd_close(struct imapd *s, int c);
void imapd_cmd_unselect(struct imapd *s, int c);
void imapd_cmd_expunge(struct imapd *s, int c);  /* and UID EXPUNGE */
void imapd_cmd_noop(struct imapd *s, int c);     /* NOOP and CHECK */

/* Leave the SELECTED state (no expunge). */
void imapd_deselect(struct imapd *s);

/* Report changes made by other sessions (or our own EXPUNGE) as
 * untagged EXPUNGE, EXISTS and FETCH FLAGS; with `allow_expunge` 0 the
 * expunges are held back (during FETCH, STORE, SEARCH). */
void imapd_sync(struct imapd *s, int allow_expunge);

/* Append the FLAGS list of `rec` to `out`. */
void imapd_format_flags(struct mailbox *mb,
                        const struct mailbox_record *rec, struct buf *out);

/* Show the session's own \\Seen in `rec` (a copy read from the index):
 * for a mailbox the user does not own, seen state comes from the
 * user's seen database, as in Cyrus. */
void imapd_apply_seen(struct imapd *s, struct mailbox_record *rec);

/* Record that the user has (or has not) seen `uid` (seen-database
 * sessions only); written by imapd_seen_save(). */
void imapd_set_seen(struct imapd *s, uint32_t uid, int is_seen);

/* Write changed seen state to the user's seen database. */
void imapd_seen_save(struct imapd *s);

/* Parse a sequence set argument (msgnos, or UIDs when `is_uid`) into
 * a set of UIDs of the selected mailbox.  Returns 0 or -1 (BAD sent
 * through the parser). */
int imapd_parse_uidset(struct imapd *s, const char *text, int is_uid,
                       struct seqset *uids);

/* The message number of `uid`, 0 when the client does not know it. */
uint32_t imapd_msgno(const struct imapd *s, uint32_t uid);

/* ---- imap_cmd_fetch.c, imap_cmd_search.c ---- */

void imapd_cmd_fetch(struct imapd *s, int c);
void imapd_cmd_store(struct imapd *s, int c);
void imapd_cmd_copy(struct imapd *s, int c);     /* COPY and MOVE */
void imapd_cmd_search(struct imapd *s, int c);

#endif /* COLUMBA_IMAP_IMAPD_H */

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
    /* ---- helper-search: SEARCHRES (RFC 5182) ---- */
    struct seqset searchres;    /* UIDs saved by SEARCH RETURN (SAVE),
                                 * "$"; freed by imapd_deselect() */
    /* ---- end helper-search ---- */
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
#define IMAPD_ENABLED_UIDONLY 0x10u     /* UIDONLY (RFC 9586) */

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
void imapd_cmd_unauthenticate(struct imapd *s, int c);

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
/* Send "* NO [ALERT] ..." when the quota root of `intname` is past
 * quotawarnpercent (quota_warning_check()); after SELECT and APPEND. */
void imapd_quota_alert(struct imapd *s, const char *intname);

/* ---- helper-admin: imap_cmd_metadata.c (metadata, admin commands)
 * and the LIST/ACL/APPEND additions of imap_cmd_mailbox.c ---- */

void imapd_cmd_getmetadata(struct imapd *s, int c);
void imapd_cmd_setmetadata(struct imapd *s, int c);
void imapd_cmd_getannotation(struct imapd *s, int c);
void imapd_cmd_setannotation(struct imapd *s, int c);
void imapd_cmd_xfer(struct imapd *s, int c);
void imapd_cmd_reconstruct(struct imapd *s, int c);
void imapd_cmd_listrights(struct imapd *s, int c);

/* The APPENDLIMIT (RFC 7889) advertised and enforced: the largest
 * message APPEND accepts, in bytes. */
size_t imapd_append_limit(void);

/* ---- end helper-admin ---- */

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

/* ---- imap_cmd_select.c, imap_cmd_fetch.c: CONDSTORE, QRESYNC and
 * object ids (helper-sync) ---- */

/* Are MODSEQ data items due in untagged FETCH responses (CONDSTORE
 * turned on by ENABLE or by a CONDSTORE enabling command)? */
int imapd_condstore_on(const struct imapd *s);

/* Turn CONDSTORE on for the rest of the session, as a CONDSTORE
 * enabling command (FETCH MODSEQ, CHANGEDSINCE, UNCHANGEDSINCE, SEARCH
 * MODSEQ, SELECT (CONDSTORE)) does (RFC 7162 3.1).  The first one in
 * the selected state sends "* OK [HIGHESTMODSEQ n]". */
void imapd_condstore_enable(struct imapd *s);

/* The EMAILID of `rec` (RFC 8474): written to `out` (reset first) and
 * returned as its C string, valid while `out` is unchanged. */
const char *imapd_emailid(const struct mailbox_record *rec, struct buf *out);

/* Report expunged records of the selected mailbox with a modseq above
 * `since` whose UIDs are in `uids` (all when NULL) as one
 * "* VANISHED (EARLIER) set" line (RFC 7162 3.2.10); nothing when
 * there are none.  When records at or below the mailbox's deleted
 * modseq were dropped by a repack, every UID of `uids` (or of
 * 1:UIDNEXT-1) that is not live is listed.  The mailbox is locked. */
void imapd_send_vanished(struct imapd *s, uint64_t since,
                         const struct seqset *uids);
/* ---- end helper-sync ---- */

/* ---- imap_cmd_fetch.c, imap_cmd_search.c ---- */

void imapd_cmd_fetch(struct imapd *s, int c);
void imapd_cmd_store(struct imapd *s, int c);
void imapd_cmd_copy(struct imapd *s, int c);     /* COPY and MOVE */
void imapd_cmd_search(struct imapd *s, int c);

/* ---- helper-search: search programs (imap_cmd_search.c), used by
 * SEARCH, SORT and THREAD; SORT and THREAD (imap_cmd_sort.c) ---- */

struct imapd_search;

/* Read "SP [CHARSET x SP] key *(SP key)" (CHARSET only when `charset`
 * is NULL; SORT and THREAD pass theirs) into a new program in *q_r
 * (free with imapd_search_free(), also after an error).  Returns the
 * byte after the last key, or EOF with the parser holding the error. */
int imapd_search_parse(struct imapd *s, int c, const char *charset,
                       struct imapd_search **q_r);

/* Is the program's charset one we cannot convert?  The command then
 * answers NO [BADCHARSET ...] (imapd_search_badcharset()). */
int imapd_search_is_badcharset(const struct imapd_search *q);
void imapd_search_badcharset(struct imapd *s);

/* Did the program use the MODSEQ key (the result then carries the
 * highest modseq, RFC 7162 3.1.5)? */
int imapd_search_uses_modseq(const struct imapd_search *q);

/* Called for each matching message, in mailbox order, with the
 * mailbox locked (the cache may be read); `msgno` is 1-based. */
typedef void imapd_search_hit_cb(struct imapd *s, uint32_t msgno,
                                 const struct mailbox_record *rec,
                                 void *rock);

/* Run the program over the selected mailbox.  Returns 0 or a mailbox
 * error (the caller answers NO). */
int imapd_search_run(struct imapd *s, const struct imapd_search *q,
                     imapd_search_hit_cb *cb, void *rock);

void imapd_search_free(struct imapd_search **qp);

void imapd_cmd_sort(struct imapd *s, int c);     /* SORT, UID SORT */
void imapd_cmd_thread(struct imapd *s, int c);   /* THREAD, UID THREAD */

/* ---- end helper-search ---- */

/* ---- helper-ext6: imap_cmd_urlauth.c (CATENATE, URLAUTH, REPLACE,
 * UIDONLY) ---- */

void imapd_cmd_genurlauth(struct imapd *s, int c);
void imapd_cmd_resetkey(struct imapd *s, int c);
void imapd_cmd_urlfetch(struct imapd *s, int c);

/* Read "CATENATE (" part *(SP part) ")" (RFC 4469) starting at byte
 * `c` and append the assembled message to `msg`.  A part that cannot
 * be used ([BADURL url], [TOOBIG]) leaves its response text in `err`
 * (the first one only) and the rest is still read, so the command ends
 * in step.  Returns the byte after ")" or EOF (parse error). */
int imapd_catenate_read(struct imapd *s, int c, struct buf *msg,
                        struct buf *err);

/* REPLACE (RFC 8508): check the message number (UID for UID REPLACE)
 * `number` of the selected mailbox and the rights to expunge it.
 * Returns 0 and its UID, or -1 with BAD or NO already sent. */
int imapd_replace_check(struct imapd *s, const char *number,
                        uint32_t *uid_r);

/* REPLACE: expunge the replaced message `uid` and report it. */
void imapd_replace_finish(struct imapd *s, uint32_t uid);

/* Start an untagged FETCH response for `uid` in `out`: "* n FETCH (",
 * or "* uid UIDFETCH (" once UIDONLY is on. */
void imapd_fetch_begin(struct imapd *s, uint32_t uid, struct buf *out);

/* Must command `cmd` be refused with [UIDREQUIRED] (UIDONLY on and a
 * command that takes message numbers without the UID prefix)? */
int imapd_uidonly_refuses(const struct imapd *s, const char *cmd);

/* ---- end helper-ext6 ---- */

#endif /* COLUMBA_IMAP_IMAPD_H */

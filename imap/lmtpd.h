/* lmtpd: the LMTP delivery server (RFC 2033).  The session state shared
 * by the protocol half (imap/lmtpd.c) and the recipient and delivery
 * half (imap/lmtpd_deliver.c). */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_IMAP_LMTPD_H
#define COLUMBA_IMAP_LMTPD_H

#include <stddef.h>
#include <stdint.h>

#include <sasl/sasl.h>
#include <openssl/ssl.h>

#include "lib/buf.h"
#include "imap/acl.h"

struct protstream;
struct lmtp_spool;

/* Longest command line accepted (RFC 5321 4.5.3.1.4 asks for 512; the
 * parameters of MAIL and RCPT need more). */
#define LMTPD_LINE_MAX 4096
/* Longest reverse or forward path, brackets excluded (RFC 5321: 256). */
#define LMTPD_PATH_MAX 512
/* Most recipients of one transaction (RFC 5321 asks for at least 100). */
#define LMTPD_RCPT_MAX 1000

/* One accepted recipient (RCPT answered 250). */
struct lmtpd_rcpt {
    char *addr;             /* the forward path as given, for logs */
    char *mboxname;         /* internal name of the target mailbox */
    char *userid;           /* owner of a personal mailbox, else NULL */
    char *partition;        /* partition of the target mailbox */
    unsigned flags;         /* APPEND_* flags for the append */
};

/* One LMTP session. */
struct lmtpd {
    struct protstream *in;
    struct protstream *out;
    SSL *tls;
    sasl_conn_t *sasl;
    char *authuser;             /* AUTH identity, NULL before AUTH */
    struct auth_state *auth;    /* whose rights deliveries use: the
                                 * AUTH user, else anonymous */
    int is_trusted;             /* may send mail without AUTH: -a, or a
                                 * Unix-socket connection */
    int is_unix;                /* connected over a Unix socket */
    char *lhlo;                 /* LHLO argument, NULL before LHLO */
    char *client_host;          /* "[192.0.2.1]", "unix socket" */
    /* The transaction. */
    int has_mail;
    char *from;                 /* reverse path without <>, "" for <> */
    uint64_t size_hint;         /* MAIL SIZE= value, 0 when not given */
    struct auth_state *txn_auth; /* MAIL AUTH= identity of a trusted
                                 * client (deliver -a), else NULL */
    struct lmtpd_rcpt *rcpts;
    size_t nrcpt;
    size_t rcpt_alloc;
    int logout;
};

/* Whose rights this transaction's deliveries use. */
const struct auth_state *lmtpd_auth(const struct lmtpd *s);

/* Largest message accepted: maxmessagesize, 0 for no limit. */
extern uint64_t lmtpd_max_message;

/* Queue one reply line; `fmt` gives the text without CRLF. */
void lmtpd_reply(struct lmtpd *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Check the forward path `addr` (without <>) for RCPT: resolve it to a
 * mailbox and check that it exists, that this session may post to it,
 * the deny list and (unless `ignorequota`) the quota.  On success fills
 * *rc (the caller frees it with lmtpd_rcpt_fini) and returns 0; else
 * puts a complete reply ("550 5.1.1 ...") into `reply` and returns
 * non-zero. */
int lmtpd_rcpt_check(struct lmtpd *s, const char *addr, int ignorequota,
                     struct lmtpd_rcpt *rc, struct buf *reply);

/* Release what lmtpd_rcpt_check put in `rc`. */
void lmtpd_rcpt_fini(struct lmtpd_rcpt *rc);

/* Deliver the spooled message `msgfile` (read into `sp`) to every
 * recipient of the transaction and send one reply per recipient, in
 * RCPT order, each 250 only once that recipient's copy is durable. */
void lmtpd_deliver(struct lmtpd *s, const char *msgfile,
                   const struct lmtp_spool *sp);

/*
 * THE SIEVE HOOK
 *
 * Called once per recipient after duplicate suppression and before the
 * append.  Returns LMTPD_SIEVE_KEEP to file the message into the
 * recipient's mailbox as resolved at RCPT (the implicit keep), or
 * LMTPD_SIEVE_HANDLED when the script took care of the message itself
 * (filed elsewhere, discarded, redirected), which answers the recipient
 * 250, or LMTPD_SIEVE_REPLY when the recipient must be answered with
 * the complete reply the hook put in `reply` (a Sieve reject: "550 5.7.1
 * ...", or the error of a keep the hook did itself).  NULL (the default
 * until the Sieve module sets it) means keep.
 *
 * Once the hook has run for every recipient of the transaction (before
 * any append or reply), lmtpd_sieve_done_hook (when set) is called;
 * until it returns, each `reply` passed to the hook stays valid and the
 * done hook may rewrite it (a reject is answered 550 only when every
 * recipient rejects; else it becomes a bounce and a 250).
 */
enum lmtpd_sieve_result {
    LMTPD_SIEVE_KEEP = 0,
    LMTPD_SIEVE_HANDLED = 1,
    LMTPD_SIEVE_REPLY = 2
};
typedef enum lmtpd_sieve_result
    lmtpd_sieve_hook_t(const struct lmtpd *s, const struct lmtpd_rcpt *rc,
                       const char *msgfile, const struct lmtp_spool *sp,
                       struct buf *reply);
extern lmtpd_sieve_hook_t *lmtpd_sieve_hook;
typedef void lmtpd_sieve_done_hook_t(const struct lmtpd *s);
extern lmtpd_sieve_done_hook_t *lmtpd_sieve_done_hook;

/* Install the Sieve hook (imap/lmtpd_sieve.c); called by service_init. */
void lmtpd_sieve_init(void);

#endif /* COLUMBA_IMAP_LMTPD_H */

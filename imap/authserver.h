/* authserver: the protocol-independent half of logging a client in,
 * shared by imapd, pop3d and lmtpd: Cyrus SASL set-up from imapd.conf,
 * TLS, the plaintext rule, admins, cyr_deny, the failed-login pause and
 * INBOX autocreation. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_IMAP_AUTHSERVER_H
#define COLUMBA_IMAP_AUTHSERVER_H

#include <sasl/sasl.h>
#include <openssl/ssl.h>

struct auth_state;
struct buf;
struct protstream;

/* Seconds a TLS handshake may take. */
#define AUTHSERVER_TLS_TIMEOUT 60

/* servername, else the host name; static storage. */
const char *authserver_servername(void);

/* Process-wide set-up, once from service_init: sasl_server_init with
 * callbacks that read sasl_* options from imapd.conf (SASL_CB_GETOPT),
 * log through xsyslog (SASL_CB_LOG) and apply the proxy policy below
 * (SASL_CB_PROXY_POLICY); then the TLS context when tls_server_cert is
 * set.  `sasl_service` is the SASL service name ("imap", "pop",
 * "lmtp"), kept for authserver_sasl_new.  A TLS context that cannot be
 * built is logged and leaves TLS unavailable, except with implicit TLS
 * (-s), where it (or a missing tls_server_cert) returns ERR_CONFIG.
 * Returns 0, ERR_INTERNAL (SASL failed; logged) or ERR_CONFIG. */
int authserver_init(const char *sasl_service);

/* Is a TLS context available (STARTTLS/STLS may be offered)? */
int authserver_tls_available(void);

/* A new SASL server context for the connection on `fd` (its local and
 * remote addresses are passed to SASL as "ip;port"; a socket that is
 * not TCP passes none), with security properties for `tls` (may be
 * NULL).  *conn_r is the caller's (sasl_dispose).  Returns 0 or
 * ERR_INTERNAL (logged). */
int authserver_sasl_new(int fd, SSL *tls, sasl_conn_t **conn_r);

/* Replace *conn (disposed; may be NULL) with a new context as
 * authserver_sasl_new.  Call after every AUTH exchange that did not end
 * in a login: Cyrus SASL remembers on a context that a mechanism already
 * sent its last step (SCRAM, DIGEST-MD5), and would answer the next
 * sasl_server_step on it with SASL_OK whatever the client sends.
 * Returns 0 or ERR_INTERNAL (logged; *conn is then NULL). */
int authserver_sasl_renew(int fd, SSL *tls, sasl_conn_t **conn);

/* Tell SASL what protects the connection now: the external SSF of
 * `tls` (NULL: none), no SASL security layer, no anonymous login, and
 * no plaintext mechanisms unless authserver_plaintext_ok(tls).  Call
 * again after a TLS handshake. */
void authserver_sasl_secure(sasl_conn_t *conn, SSL *tls);

/* Is a plaintext password allowed now: allowplaintext, or `tls` set? */
int authserver_plaintext_ok(SSL *tls);

/* The mechanisms `conn` offers now, as "PLAIN LOGIN ..." into `out`
 * (reset first): what the installed plugins support, limited by
 * sasl_mech_list and by the security properties (plaintext mechanisms
 * drop out without TLS unless allowplaintext).  Returns the count. */
int authserver_mechlist(sasl_conn_t *conn, struct buf *out);

/* Is `mech` (case-insensitive) among the mechanisms offered now? */
int authserver_mech_offered(sasl_conn_t *conn, const char *mech);

/* Turn a name that passed authentication into the canonical userid
 * (malloc'd, lower-cased with username_tolower).  Returns 0 or
 * ERR_MAILBOX_BADNAME. */
int authserver_canon_userid(const char *name, char **userid_r);

/* Is `userid` listed in admins? */
int authserver_is_admin(const char *userid);

/* Is `userid` allowed to act as another user (proxy authorization):
 * listed in proxyservers, or an admin?  (A proxyserver that is not an
 * admin may not act as an admin.) */
int authserver_is_proxy(const char *userid);

/* cyr_deny: may `userid` use `service`?  Returns 0, or ERR_PERMISSION
 * (logged as "login denied") with *msg_r the administrator's message
 * (malloc'd, may be NULL; the caller frees). */
int authserver_check_deny(const char *userid, const char *service,
                          char **msg_r);

/* failedloginpause: flush `out` (may be NULL) so earlier replies are
 * not held back, then sleep (at most a minute). */
void authserver_failed_pause(struct protstream *out);

/* Run the server side of a TLS handshake on the connection of `in` and
 * `out` and switch both to TLS (output pending on `out` is flushed in
 * plaintext first).  Logs the outcome.  *ssl_r is the caller's
 * (tls_shutdown).  Returns 0, ERR_UNSUPPORTED without a TLS context,
 * or the handshake's error. */
int authserver_tls_start(struct protstream *in, struct protstream *out,
                         SSL **ssl_r);

/* Create the INBOX of `userid` on first login when autocreate_quota is
 * set (>= 0), with a STORAGE quota when it is positive, as Cyrus does.
 * Failures are logged; the login goes on. */
void authserver_autocreate_inbox(const char *userid,
                                 const struct auth_state *auth);

#endif /* COLUMBA_IMAP_AUTHSERVER_H */

/* Server-side TLS through OpenSSL: building the SSL_CTX from
 * imapd.conf's tls_* options, the bounded handshake, and what the
 * session needs to know afterwards (description, client certificate,
 * strength for SASL, channel binding). */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_LIB_TLS_H
#define COLUMBA_LIB_TLS_H

#include <openssl/ssl.h>

struct buf;

/* What a server context is made from.  Strings may be NULL (unset);
 * key_file NULL means the key is in cert_file. */
struct tls_server_params {
    const char *cert_file;      /* PEM chain, leaf first */
    const char *key_file;       /* PEM private key */
    const char *ca_file;        /* CAs for client certificates */
    const char *ca_path;        /* hashed directory of the same */
    const char *versions;       /* "tls1_2 tls1_3" (NULL: that) */
    const char *ciphers;        /* TLS <= 1.2 cipher list */
    const char *ciphersuites;   /* TLS 1.3 suites */
    int prefer_server_ciphers;
    int require_client_cert;    /* else requested only with a CA */
    int session_timeout;        /* minutes; 0 disables resumption */
};

/* The default protocol list, as in Cyrus's tls_versions. */
#define TLS_DEFAULT_VERSIONS "tls1_2 tls1_3"

/* Parse a space- or comma-separated list of protocol names (tls1_0,
 * tls1_1, tls1_2, tls1_3; ssl2 and ssl3 are accepted but never
 * enabled) into the lowest and highest version to allow, as OpenSSL's
 * TLS1_x_VERSION constants, and the SSL_OP_NO_* options for versions
 * left out between them.  Returns 0, or ERR_CONFIG with *error_r set
 * (a static buffer, valid until the next call into this module) for an
 * unknown name or a list enabling nothing. */
int tls_parse_versions(const char *versions, int *min_r, int *max_r,
                       long *no_options_r, const char **error_r);

/* Make a server SSL_CTX from `params`: load the certificate chain and
 * key and check they match, set the protocol versions, ciphers, client
 * certificate policy and session cache.  On success *ctx_r is the
 * caller's (free with tls_server_ctx_free).  Returns 0, or ERR_CONFIG
 * with *error_r a message naming the file or option and OpenSSL's
 * reason (static buffer, valid until the next call into this
 * module). */
int tls_server_ctx_new(const struct tls_server_params *params,
                       SSL_CTX **ctx_r, const char **error_r);

/* Free a context made by tls_server_ctx_new and set *ctx to NULL;
 * NULL is accepted. */
void tls_server_ctx_free(SSL_CTX **ctx);

/* Fill `params` from imapd.conf (the tls_* options; strings point into
 * the configuration).  Defined in lib/tls_config.c. */
void tls_server_params_from_config(struct tls_server_params *params);

/* Run the server side of a handshake on `fd` (switched to non-blocking
 * mode), giving up after `timeout_sec` seconds in total (0: no bound).
 * On success logs the protocol and cipher and sets *ssl_r (the
 * caller's; end with tls_shutdown).  Returns 0, ERR_TIMEOUT, or
 * ERR_PROTOCOL/ERR_IO with *error_r set (static buffer, valid until the
 * next call into this module). */
int tls_start_server(SSL_CTX *ctx, int fd, int timeout_sec, SSL **ssl_r,
                     const char **error_r);

/* Describe the session into `out` (reset first), e.g. "TLSv1.3 with
 * cipher TLS_AES_256_GCM_SHA384 (256/256 bits)", with " reused"
 * appended to the bits when the session was resumed. */
void tls_get_info(SSL *ssl, struct buf *out);

/* The cipher's secret bits, for SASL's external SSF; 0 without TLS. */
int tls_get_cipher_bits(SSL *ssl);

/* The common name of a client certificate that verified against the
 * configured CAs, into `cn_r` (reset first), for SASL EXTERNAL.
 * Returns 0, or ERR_NOTFOUND when there is no verified certificate, or
 * ERR_PROTOCOL when it has no usable CN (none, several, or one with a
 * NUL inside). */
int tls_get_peer_cn(SSL *ssl, struct buf *cn_r);

/* The tls-exporter channel binding (RFC 9266: 32 bytes of keying
 * material labelled "EXPORTER-Channel-Binding") into `out` (reset
 * first), for SCRAM-*-PLUS.  Returns 0, or ERR_UNSUPPORTED when the session
 * is neither TLS 1.3 nor TLS 1.2 with extended master secret (the
 * binding would not be unique then). */
int tls_get_channel_binding(SSL *ssl, struct buf *out);

/* Send close_notify (without waiting for the peer's), free the SSL and
 * set *ssl to NULL; NULL is accepted. */
void tls_shutdown(SSL **ssl);

#endif /* COLUMBA_LIB_TLS_H */

/* Server-side TLS through OpenSSL: context set-up from the tls_*
 * options, the bounded handshake and per-session information. */
/* Columba is free software; see COPYING for the licence. */

/*
 * Policy choices made here for every context, whatever the options say:
 * TLS-level compression off (CRIME), client-initiated renegotiation off
 * (a cheap CPU attack, and it would break tls-exporter), a peer closing
 * without close_notify is plain EOF (IMAP clients do it all the time),
 * idle connections release their buffers (a server holds thousands of
 * IDLE sessions), and the key is never read with a passphrase prompt (a
 * daemon has no terminal).  An optional client certificate that fails
 * verification does not abort the handshake; it just isn't trusted for
 * EXTERNAL (tls_get_peer_cn checks the verification result).
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "lib/buf.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/xmalloc.h"
#include "lib/tls.h"

/* Session id context: any constant works, but it must be set when
 * client certificates are verified and sessions may be resumed. */
#define TLS_SID_CONTEXT "columba"

static char errbuf[512];

/* Format an error into errbuf, append OpenSSL's first queued reason if
 * there is one, clear the queue, and return `code`. */
static int tls_fail(int code, const char **error_r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int tls_fail(int code, const char **error_r, const char *fmt, ...)
{
    unsigned long e = ERR_get_error();
    va_list ap;
    size_t used;

    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
    va_end(ap);
    used = strlen(errbuf);
    if (e && used < sizeof(errbuf)) {
        const char *reason = ERR_reason_error_string(e);
        char code_text[120];

        if (!reason) {
            ERR_error_string_n(e, code_text, sizeof(code_text));
            reason = code_text;
        }
        snprintf(errbuf + used, sizeof(errbuf) - used, ": %s", reason);
    }
    ERR_clear_error();
    if (error_r)
        *error_r = errbuf;
    return code;
}

/* ---- Protocol versions ---- */

static const struct {
    const char *name;
    int version;                /* 0: recognised, never enabled */
    long no_option;
} tls_versions[] = {
    { "ssl2",   0,               0 },
    { "ssl3",   0,               0 },
    { "tls1_0", TLS1_VERSION,    SSL_OP_NO_TLSv1 },
    { "tls1_1", TLS1_1_VERSION,  SSL_OP_NO_TLSv1_1 },
    { "tls1_2", TLS1_2_VERSION,  SSL_OP_NO_TLSv1_2 },
    { "tls1_3", TLS1_3_VERSION,  SSL_OP_NO_TLSv1_3 },
};
#define N_TLS_VERSIONS (sizeof(tls_versions) / sizeof(tls_versions[0]))

/* Index into tls_versions of a name of `len` bytes, or -1. */
static int version_lookup(const char *name, size_t len)
{
    size_t i;

    for (i = 0; i < N_TLS_VERSIONS; i++) {
        if (strlen(tls_versions[i].name) == len
            && !strncmp(tls_versions[i].name, name, len))
            return (int)i;
    }
    return -1;
}

int tls_parse_versions(const char *versions, int *min_r, int *max_r,
                       long *no_options_r, const char **error_r)
{
    static const char seps[] = " \t,";
    int enabled[N_TLS_VERSIONS] = { 0 };
    int lo = -1, hi = -1, idx;
    const char *s = versions ? versions : TLS_DEFAULT_VERSIONS;
    size_t i, len;
    long no = 0;

    while (*(s += strspn(s, seps))) {
        len = strcspn(s, seps);
        idx = version_lookup(s, len);
        if (idx < 0) {
            return tls_fail(ERR_CONFIG, error_r,
                            "tls_versions: unknown protocol \"%.*s\"",
                            (int)(len > 40 ? 40 : len), s);
        }
        if (tls_versions[idx].version) {
            enabled[idx] = 1;
            if (lo < 0)
                lo = idx;
            if (idx < lo)
                lo = idx;
            if (idx > hi)
                hi = idx;
        }
        s += len;
    }
    if (lo < 0) {
        return tls_fail(ERR_CONFIG, error_r,
                        "tls_versions enables no supported protocol");
    }

    /* OpenSSL takes a range; holes in the list become SSL_OP_NO_*. */
    for (i = (size_t)lo; i <= (size_t)hi; i++) {
        if (!enabled[i])
            no |= tls_versions[i].no_option;
    }
    *min_r = tls_versions[lo].version;
    *max_r = tls_versions[hi].version;
    *no_options_r = no;
    return 0;
}

/* ---- Context ---- */

/* Refuse to prompt for a passphrase: a daemon has no one to ask. */
static int no_passphrase(char *buf, int size, int rwflag, void *rock)
{
    (void)buf; (void)size; (void)rwflag; (void)rock;
    return 0;
}

/* Accept any client certificate during the handshake; its verification
 * result is checked when it is used (tls_get_peer_cn). */
static int verify_optional(int ok, X509_STORE_CTX *store)
{
    (void)ok; (void)store;
    return 1;
}

/* Load the certificate chain and the key, and check they belong
 * together. */
static int load_cert_and_key(SSL_CTX *ctx, const char *cert_file,
                             const char *key_file, const char **error_r)
{
    EVP_PKEY *pkey = NULL;
    BIO *bio = NULL;
    int r = 0;

    if (!cert_file || !*cert_file) {
        return tls_fail(ERR_CONFIG, error_r,
                        "tls_server_cert is not set");
    }
    if (!key_file || !*key_file)
        key_file = cert_file;

    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        r = tls_fail(ERR_CONFIG, error_r,
                     "cannot load certificate chain from %s", cert_file);
        goto done;
    }
    bio = BIO_new_file(key_file, "r");
    if (bio)
        pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    if (!pkey) {
        r = tls_fail(ERR_CONFIG, error_r,
                     "cannot read private key from %s", key_file);
        goto done;
    }
    if (X509_check_private_key(SSL_CTX_get0_certificate(ctx), pkey) != 1) {
        r = tls_fail(ERR_CONFIG, error_r,
                     "private key %s does not match certificate %s",
                     key_file, cert_file);
        goto done;
    }
    if (SSL_CTX_use_PrivateKey(ctx, pkey) != 1) {
        r = tls_fail(ERR_CONFIG, error_r,
                     "cannot use private key from %s", key_file);
        goto done;
    }

done:
    EVP_PKEY_free(pkey);
    BIO_free(bio);
    return r;
}

/* Set up who may present client certificates and whether they must. */
static int setup_client_certs(SSL_CTX *ctx,
                              const struct tls_server_params *params,
                              const char **error_r)
{
    const char *file = params->ca_file && *params->ca_file
                       ? params->ca_file : NULL;
    const char *dir = params->ca_path && *params->ca_path
                      ? params->ca_path : NULL;
    STACK_OF(X509_NAME) *names;

    if (!file && !dir) {
        if (!params->require_client_cert)
            return 0;
        return tls_fail(ERR_CONFIG, error_r,
                        "client certificates are required but neither "
                        "tls_client_ca_file nor tls_client_ca_dir is set");
    }
    if (SSL_CTX_load_verify_locations(ctx, file, dir) != 1) {
        return tls_fail(ERR_CONFIG, error_r,
                        "cannot load client CAs from %s",
                        file ? file : dir);
    }

    /* The names sent in CertificateRequest, so clients pick the right
     * certificate. */
    names = file ? SSL_load_client_CA_file(file) : sk_X509_NAME_new_null();
    if (names && dir)
        SSL_add_dir_cert_subjects_to_stack(names, dir);
    if (names)
        SSL_CTX_set_client_CA_list(ctx, names);
    ERR_clear_error();

    if (params->require_client_cert) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER
                                | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_optional);
    }
    return 0;
}

/* Protocol range, ciphers and the fixed policy options. */
static int setup_protocol(SSL_CTX *ctx,
                          const struct tls_server_params *params,
                          const char **error_r)
{
    long no_options = 0;
    int min, max, r;

    r = tls_parse_versions(params->versions, &min, &max, &no_options,
                           error_r);
    if (r)
        return r;
    if (SSL_CTX_set_min_proto_version(ctx, min) != 1
        || SSL_CTX_set_max_proto_version(ctx, max) != 1) {
        return tls_fail(ERR_CONFIG, error_r,
                        "tls_versions \"%s\" is not supported here",
                        params->versions ? params->versions
                                         : TLS_DEFAULT_VERSIONS);
    }
    SSL_CTX_set_options(ctx, (uint64_t)no_options | SSL_OP_NO_COMPRESSION
                             | SSL_OP_NO_RENEGOTIATION
                             | SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (params->prefer_server_ciphers)
        SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS
                          | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);

    if (params->ciphers && *params->ciphers
        && SSL_CTX_set_cipher_list(ctx, params->ciphers) != 1) {
        return tls_fail(ERR_CONFIG, error_r,
                        "tls_ciphers \"%.100s\" selects no cipher",
                        params->ciphers);
    }
    if (params->ciphersuites && *params->ciphersuites
        && SSL_CTX_set_ciphersuites(ctx, params->ciphersuites) != 1) {
        return tls_fail(ERR_CONFIG, error_r,
                        "tls_ciphersuites \"%.100s\" is not valid",
                        params->ciphersuites);
    }
    SSL_CTX_set_dh_auto(ctx, 1);
    return 0;
}

/* Session resumption: cache and tickets live for session_timeout
 * minutes, or are off entirely. */
static void setup_sessions(SSL_CTX *ctx, int minutes)
{
    SSL_CTX_set_session_id_context(ctx,
                                   (const unsigned char *)TLS_SID_CONTEXT,
                                   sizeof(TLS_SID_CONTEXT) - 1);
    /* No TLS 1.3 session tickets: every service child has its own
     * ticket key, so a ticket would seldom resume, and tickets sent
     * right after the handshake race with the first command in clients
     * that read and write one connection from two threads (offlineimap's
     * imaplib2 hangs on them). */
    SSL_CTX_set_num_tickets(ctx, 0);
    if (minutes > 0) {
        SSL_CTX_set_timeout(ctx, (long)minutes * 60);
        return;
    }
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
}

int tls_server_ctx_new(const struct tls_server_params *params,
                       SSL_CTX **ctx_r, const char **error_r)
{
    SSL_CTX *ctx;
    int r;

    *ctx_r = NULL;
    ERR_clear_error();
    ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return tls_fail(ERR_INTERNAL, error_r, "SSL_CTX_new failed");

    r = setup_protocol(ctx, params, error_r);
    if (!r)
        r = load_cert_and_key(ctx, params->cert_file, params->key_file,
                              error_r);
    if (!r)
        r = setup_client_certs(ctx, params, error_r);
    if (r)
        goto done;
    setup_sessions(ctx, params->session_timeout);
    *ctx_r = ctx;
    ctx = NULL;

done:
    SSL_CTX_free(ctx);
    return r;
}

void tls_server_ctx_free(SSL_CTX **ctx)
{
    if (!ctx)
        return;
    SSL_CTX_free(*ctx);
    *ctx = NULL;
}

/* ---- Handshake ---- */

/* Milliseconds on the monotonic clock, for deadlines. */
static long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for `events` on fd until the deadline (0: none).  Returns 0,
 * ERR_TIMEOUT or ERR_IO. */
static int wait_until(int fd, short events, long deadline)
{
    struct pollfd pfd;
    int n, wait_ms;

    for (;;) {
        wait_ms = -1;
        if (deadline) {
            long left = deadline - now_ms();
            if (left <= 0)
                return ERR_TIMEOUT;
            wait_ms = (int)left;
        }
        pfd.fd = fd;
        pfd.events = events;
        pfd.revents = 0;
        n = poll(&pfd, 1, wait_ms);
        if (n > 0)
            return 0;
        if (n == 0)
            return ERR_TIMEOUT;
        if (errno != EINTR)
            return ERR_IO;
    }
}

/* Drive SSL_accept to the end on a non-blocking descriptor. */
static int run_handshake(SSL *ssl, int fd, long deadline,
                         const char **error_r)
{
    int ret, sslerr, saved_errno, r;

    for (;;) {
        ERR_clear_error();
        errno = 0;
        ret = SSL_accept(ssl);
        if (ret == 1)
            return 0;
        saved_errno = errno;
        sslerr = SSL_get_error(ssl, ret);
        if (sslerr == SSL_ERROR_WANT_READ || sslerr == SSL_ERROR_WANT_WRITE) {
            r = wait_until(fd, sslerr == SSL_ERROR_WANT_READ ? POLLIN
                                                             : POLLOUT,
                           deadline);
            if (r == ERR_TIMEOUT)
                return tls_fail(r, error_r, "TLS handshake timed out");
            if (r)
                return tls_fail(r, error_r, "poll: %s",
                                strerror(errno));
            continue;
        }
        if (sslerr == SSL_ERROR_SYSCALL && saved_errno == EINTR)
            continue;
        if (sslerr == SSL_ERROR_ZERO_RETURN
            || (sslerr == SSL_ERROR_SYSCALL && !ERR_peek_error())
            || ERR_GET_REASON(ERR_peek_error())
               == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
            ERR_clear_error();
            return tls_fail(ERR_IO, error_r,
                            "connection lost during TLS handshake%s%s",
                            saved_errno ? ": " : "",
                            saved_errno ? strerror(saved_errno) : "");
        }
        return tls_fail(ERR_PROTOCOL, error_r, "TLS handshake failed");
    }
}

int tls_start_server(SSL_CTX *ctx, int fd, int timeout_sec, SSL **ssl_r,
                     const char **error_r)
{
    long deadline = timeout_sec > 0 ? now_ms() + timeout_sec * 1000L : 0;
    SSL *ssl = NULL;
    int flags, r;

    *ssl_r = NULL;
    ERR_clear_error();
    flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        r = tls_fail(ERR_IO, error_r, "fcntl: %s", strerror(errno));
        goto done;
    }
    ssl = SSL_new(ctx);
    if (!ssl || SSL_set_fd(ssl, fd) != 1) {
        r = tls_fail(ERR_INTERNAL, error_r, "cannot set up TLS session");
        goto done;
    }

    r = run_handshake(ssl, fd, deadline, error_r);
    if (r) {
        xsyslog(LOG_INFO, "TLS handshake failed", "error=\"%s\"", errbuf);
        goto done;
    }
    xsyslog(LOG_INFO, "TLS started", "tls_version=%s cipher=%s bits=%d",
            SSL_get_version(ssl),
            SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)),
            tls_get_cipher_bits(ssl));
    *ssl_r = ssl;
    ssl = NULL;

done:
    SSL_free(ssl);
    return r;
}

/* ---- Session information ---- */

void tls_get_info(SSL *ssl, struct buf *out)
{
    const SSL_CIPHER *cipher = ssl ? SSL_get_current_cipher(ssl) : NULL;
    int bits, alg_bits = 0;

    buf_reset(out);
    if (!cipher) {
        buf_appendcstr(out, "no TLS");
        return;
    }
    bits = SSL_CIPHER_get_bits(cipher, &alg_bits);
    buf_printf(out, "%s with cipher %s (%d/%d bits%s)",
               SSL_get_version(ssl), SSL_CIPHER_get_name(cipher),
               bits, alg_bits, SSL_session_reused(ssl) ? " reused" : "");
}

int tls_get_cipher_bits(SSL *ssl)
{
    const SSL_CIPHER *cipher = ssl ? SSL_get_current_cipher(ssl) : NULL;

    return cipher ? SSL_CIPHER_get_bits(cipher, NULL) : 0;
}

int tls_get_peer_cn(SSL *ssl, struct buf *cn_r)
{
    X509 *cert = ssl ? SSL_get1_peer_certificate(ssl) : NULL;
    X509_NAME *name;
    unsigned char *utf8 = NULL;
    int idx, len, r = 0;

    buf_reset(cn_r);
    if (!cert || SSL_get_verify_result(ssl) != X509_V_OK) {
        r = ERR_NOTFOUND;
        goto done;
    }

    /* Exactly one CN, with no NUL hidden in it: anything else could
     * make two different certificates map to one user. */
    name = X509_get_subject_name(cert);
    idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    if (idx < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, idx) >= 0) {
        r = ERR_PROTOCOL;
        goto done;
    }
    len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(
                                  X509_NAME_get_entry(name, idx)));
    if (len <= 0 || memchr(utf8, '\0', (size_t)len)) {
        r = ERR_PROTOCOL;
        goto done;
    }
    buf_appendmap(cn_r, utf8, (size_t)len);

done:
    OPENSSL_free(utf8);
    X509_free(cert);
    return r;
}

int tls_get_channel_binding(SSL *ssl, struct buf *out)
{
    static const char label[] = "EXPORTER-Channel-Binding";
    unsigned char ekm[32];
    int version = ssl ? SSL_version(ssl) : 0;

    buf_reset(out);
    if (version != TLS1_3_VERSION
        && !(version == TLS1_2_VERSION && SSL_get_extms_support(ssl) == 1))
        return ERR_UNSUPPORTED;
    if (SSL_export_keying_material(ssl, ekm, sizeof(ekm), label,
                                   sizeof(label) - 1, NULL, 0, 1) != 1) {
        ERR_clear_error();
        return ERR_UNSUPPORTED;
    }
    buf_appendmap(out, ekm, sizeof(ekm));
    return 0;
}

void tls_shutdown(SSL **ssl)
{
    if (!ssl || !*ssl)
        return;
    /* One close_notify, no waiting: the peer may already be gone, and
     * SSL_shutdown must not be called after a fatal error. */
    if (SSL_is_init_finished(*ssl)
        && !(SSL_get_shutdown(*ssl) & SSL_SENT_SHUTDOWN))
        SSL_shutdown(*ssl);
    ERR_clear_error();
    SSL_free(*ssl);
    *ssl = NULL;
}

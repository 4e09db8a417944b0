/* imapd authentication: Cyrus SASL set-up fed from imapd.conf's sasl_*
 * options, LOGIN, AUTHENTICATE (with SASL-IR), STARTTLS, and what a
 * successful login sets up (auth state, namespace, INBOX). */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <sasl/sasl.h>
#include <sasl/saslutil.h>

#include "lib/buf.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/prot.h"
#include "lib/tls.h"
#include "lib/util.h"
#include "lib/xmalloc.h"
#include "master/service.h"
#include "imap/mboxlist.h"
#include "imap/mboxname.h"
#include "imap/quota.h"
#include "imap/userdeny.h"

#include "imap/imapd.h"

/* Longest line of a SASL exchange (base64 of a client response). */
#define AUTH_LINE_MAX (64 * 1024)
/* Seconds a TLS handshake may take. */
#define TLS_HANDSHAKE_TIMEOUT 60
/* Buffer for one decoded SASL response. */
#define AUTH_DECODED_MAX (AUTH_LINE_MAX / 4 * 3 + 4)

static SSL_CTX *tls_ctx;

const char *imapd_servername(void)
{
    static char host[256];
    const char *name = config_getstring(IMAPOPT_SERVERNAME);

    if (name && *name)
        return name;
    if (!host[0]) {
        if (gethostname(host, sizeof(host)) != 0)
            xstrlcpy(host, "localhost", sizeof(host));
        host[sizeof(host) - 1] = '\0';
    }
    return host;
}

/* SASL_CB_GETOPT: "sasl_<plugin>_<option>", then "sasl_<option>". */
static int sasl_getopt_cb(void *context, const char *plugin,
                          const char *option, const char **result,
                          unsigned *len)
{
    struct buf key = BUF_INITIALIZER;
    const char *v = NULL;

    (void)context;
    if (plugin) {
        buf_printf(&key, "sasl_%s_%s", plugin, option);
        v = config_getoverflowstring(buf_cstring(&key), NULL);
    }
    if (!v) {
        buf_reset(&key);
        buf_printf(&key, "sasl_%s", option);
        v = config_getoverflowstring(buf_cstring(&key), NULL);
    }
    buf_free(&key);
    if (!v)
        return SASL_FAIL;
    *result = v;
    if (len)
        *len = (unsigned)strlen(v);
    return SASL_OK;
}

/* SASL_CB_LOG: the library's own messages, never the exchange. */
static int sasl_log_cb(void *context, int level, const char *message)
{
    int pri;

    (void)context;
    switch (level) {
    case SASL_LOG_ERR: pri = LOG_ERR; break;
    case SASL_LOG_FAIL: pri = LOG_NOTICE; break;
    case SASL_LOG_WARN: pri = LOG_WARNING; break;
    case SASL_LOG_NOTE: pri = LOG_INFO; break;
    default: return SASL_OK;
    }
    xsyslog(pri, "sasl", "message=%s", log_escape(message, 256));
    return SASL_OK;
}

/* SASL wants int (*)(void); going through void (*)(void) keeps the
 * cast free of -Wcast-function-type warnings. */
#define SASL_CB(fn) ((int (*)(void))(void (*)(void))(fn))

static sasl_callback_t sasl_callbacks[] = {
    { SASL_CB_GETOPT, SASL_CB(sasl_getopt_cb), NULL },
    { SASL_CB_LOG, SASL_CB(sasl_log_cb), NULL },
    { SASL_CB_LIST_END, NULL, NULL }
};

int imapd_auth_init(void)
{
    struct tls_server_params params;
    const char *err = NULL;
    int r;

    r = sasl_server_init(sasl_callbacks, "Columba");
    if (r != SASL_OK) {
        xsyslog(LOG_ERR, "sasl_server_init failed", "error=%s",
                sasl_errstring(r, NULL, NULL));
        return ERR_INTERNAL;
    }

    /* Without a certificate there is simply no STARTTLS. */
    if (config_getstring(IMAPOPT_TLS_SERVER_CERT)) {
        tls_server_params_from_config(&params);
        if (tls_server_ctx_new(&params, &tls_ctx, &err)) {
            xsyslog(LOG_ERR, "TLS unavailable", "error=%s",
                    err ? err : "unknown");
            tls_ctx = NULL;
            if (service_implicit_tls)
                return ERR_CONFIG;
        }
    }
    return 0;
}

int imapd_tls_available(void)
{
    return tls_ctx != NULL;
}

int imapd_plaintext_ok(const struct imapd *s)
{
    return s->tls || config_getswitch(IMAPOPT_ALLOWPLAINTEXT);
}

/* Tell SASL what protects the connection now. */
static void set_security(struct imapd *s)
{
    sasl_security_properties_t sp;
    sasl_ssf_t ssf = s->tls ? (sasl_ssf_t)tls_get_cipher_bits(s->tls) : 0;

    memset(&sp, 0, sizeof(sp));
    /* No SASL security layer: TLS is the way to protect a session. */
    sp.max_ssf = 0;
    sp.maxbufsize = 0;
    sp.security_flags = SASL_SEC_NOANONYMOUS;
    if (!imapd_plaintext_ok(s))
        sp.security_flags |= SASL_SEC_NOPLAINTEXT;
    sasl_setprop(s->sasl, SASL_SSF_EXTERNAL, &ssf);
    sasl_setprop(s->sasl, SASL_SEC_PROPS, &sp);
}

int imapd_auth_session_start(struct imapd *s)
{
    int r = sasl_server_new("imap", imapd_servername(), NULL, NULL, NULL,
                            NULL, 0, &s->sasl);

    if (r != SASL_OK) {
        xsyslog(LOG_ERR, "sasl_server_new failed", "error=%s",
                sasl_errstring(r, NULL, NULL));
        s->sasl = NULL;
        return ERR_INTERNAL;
    }
    set_security(s);
    return 0;
}

void imapd_auth_session_end(struct imapd *s)
{
    if (s->sasl)
        sasl_dispose(&s->sasl);
}

void imapd_auth_capabilities(struct imapd *s, struct buf *out)
{
    const char *list = NULL;
    unsigned len = 0;
    int count = 0;

    if (!s->sasl)
        return;
    if (sasl_listmech(s->sasl, NULL, " AUTH=", " AUTH=", "", &list, &len,
                      &count) == SASL_OK && count > 0)
        buf_appendmap(out, list, len);
}

int imapd_tls_start(struct imapd *s)
{
    const char *err = NULL;
    struct buf info = BUF_INITIALIZER;
    SSL *ssl = NULL;
    int r;

    if (!tls_ctx)
        return ERR_UNSUPPORTED;
    prot_flush(s->out);
    r = tls_start_server(tls_ctx, prot_fd(s->in), TLS_HANDSHAKE_TIMEOUT,
                         &ssl, &err);
    if (r) {
        xsyslog(LOG_NOTICE, "TLS handshake failed", "error=%s",
                err ? err : error_message(r));
        return r;
    }
    if (prot_settls(s->in, s->out, ssl) == ERR_PROTOCOL)
        xsyslog(LOG_WARNING, "plaintext after STARTTLS discarded", NULL);
    s->tls = ssl;
    tls_get_info(ssl, &info);
    xsyslog(LOG_INFO, "starttls", "tls=%s", log_escape(buf_cstring(&info),
                                                       0));
    buf_free(&info);
    set_security(s);
    return 0;
}

/* STARTTLS */
void imapd_cmd_starttls(struct imapd *s, int c)
{
    if (imapd_eol(s, c))
        return;
    if (s->tls) {
        imapd_bad(s, "Already using TLS");
        return;
    }
    if (!tls_ctx) {
        imapd_no(s, "TLS is not available");
        return;
    }
    imapd_ok(s, "Begin TLS negotiation now");
    if (imapd_tls_start(s))
        s->logout = 1;
}

/* Is `userid` listed in admins? */
static int is_admin_user(const char *userid)
{
    strarray_t *admins = config_getstrarray(IMAPOPT_ADMINS);
    int found = strarray_find(admins, userid, 0) >= 0;

    strarray_free(&admins);
    return found;
}

/* A positive autocreate_quota (KiB) becomes a STORAGE limit on the new,
 * still empty INBOX. */
static int autocreate_quota_root(const char *inbox)
{
    int64_t limit = config_getint(IMAPOPT_AUTOCREATE_QUOTA);
    struct quota q;
    int r;

    if (limit <= 0)
        return 0;
    quota_init(&q, inbox);
    q.limits[QUOTA_STORAGE] = limit > QUOTA_LIMIT_MAX ? QUOTA_LIMIT_MAX
                                                      : limit;
    q.useds[QUOTA_NUMFOLDERS] = 1;
    r = quota_write(&q, NULL);
    quota_fini(&q);
    return r;
}

/* Create the user's INBOX on first login when autocreate_quota is set
 * (>= 0), as Cyrus does. */
static void autocreate_inbox(struct imapd *s)
{
    char *inbox = NULL;
    struct mboxlist_entry *e = NULL;
    int r;

    if (config_getint(IMAPOPT_AUTOCREATE_QUOTA) < 0)
        return;
    if (mboxname_user_mbox(s->userid, NULL, &inbox))
        return;
    if (mboxlist_lookup(inbox, &e) == ERR_MAILBOX_NONEXISTENT) {
        r = mboxlist_create(inbox, MAILBOX_TYPE_MAIL, NULL, s->auth, 1,
                            NULL);
        if (!r)
            r = autocreate_quota_root(inbox);
        if (r)
            xsyslog(LOG_ERR, "autocreate INBOX failed", "mailbox=%s error=%s",
                    log_escape(inbox, 0), error_message(r));
        else
            xsyslog(LOG_NOTICE, "autocreated INBOX", "mailbox=%s",
                    log_escape(inbox, 0));
    }
    mboxlist_entry_free(&e);
    free(inbox);
}

/* The session is authenticated as `name`: set up its state and answer
 * OK.  Returns 0, or an error after answering NO. */
static int login_finish(struct imapd *s, const char *name, const char *mech)
{
    struct buf caps = BUF_INITIALIZER;
    char *userid = NULL;
    char *denied = NULL;
    int r;

    r = mboxname_canonical_userid(name, &userid);
    if (r) {
        imapd_no(s, "[AUTHENTICATIONFAILED] Invalid user name");
        return r;
    }
    if (config_getswitch(IMAPOPT_USERNAME_TOLOWER))
        lcase(userid);

    /* cyr_deny: the password was right, but this user may not use us. */
    r = userdeny_check(userid, service_name(), &denied);
    if (r) {
        xsyslog(LOG_NOTICE, "login denied", "user=%s service=%s",
                log_escape(userid, 0), log_escape(service_name(), 0));
        imapd_no(s, "[AUTHORIZATIONFAILED] %s",
                 denied ? denied : "Access denied");
        free(denied);
        free(userid);
        return r;
    }
    s->userid = userid;
    s->is_admin = is_admin_user(userid);
    s->auth = acl_auth_new(userid, s->is_admin);
    r = mboxname_init_namespace(&s->ns, s->is_admin);
    if (r)
        xsyslog(LOG_ERR, "bad namespace configuration", "error=%s",
                error_message(r));
    autocreate_inbox(s);
    xsyslog(LOG_NOTICE, "login", "user=%s mech=%s tls=%d admin=%d",
            log_escape(userid, 0), mech, s->tls != NULL, s->is_admin);
    imapd_capabilities(s, &caps);
    imapd_ok(s, "[CAPABILITY %s] User logged in", buf_cstring(&caps));
    buf_free(&caps);
    return 0;
}

/* Answer a failed authentication after failedloginpause. */
static void login_failed(struct imapd *s, const char *name,
                         const char *mech)
{
    int64_t pause = config_getduration(IMAPOPT_FAILEDLOGINPAUSE, 's');

    xsyslog(LOG_NOTICE, "login failed", "user=%s mech=%s",
            log_escape(name, 64), mech);
    if (pause > 0) {
        prot_flush(s->out);
        sleep(pause > 60 ? 60 : (unsigned)pause);
    }
    imapd_no(s, "[AUTHENTICATIONFAILED] Authentication failed");
}

/* LOGIN user password */
void imapd_cmd_login(struct imapd *s, int c)
{
    struct buf user = BUF_INITIALIZER;
    struct buf pass = BUF_INITIALIZER;
    int r;

    if (imapd_sp(s, c))
        goto done;
    c = imap_parse_astring(&s->parser, &user);
    if (imapd_sp(s, c))
        goto done;
    c = imap_parse_astring(&s->parser, &pass);
    if (imapd_eol(s, c))
        goto done;

    if (!imapd_plaintext_ok(s)) {
        imapd_no(s, "[PRIVACYREQUIRED] LOGIN is disabled without TLS");
        goto done;
    }
    r = sasl_checkpass(s->sasl, buf_cstring(&user), (unsigned)user.len,
                       buf_cstring(&pass), (unsigned)pass.len);
    if (r != SASL_OK)
        login_failed(s, buf_cstring(&user), "LOGIN");
    else
        login_finish(s, buf_cstring(&user), "LOGIN");

done:
    if (pass.s)
        xzero_secret(pass.s, pass.alloc);
    buf_free(&pass);
    buf_free(&user);
}

/* Decode a base64 client response ("=" is empty) into `out` (at least
 * AUTH_DECODED_MAX bytes).  Returns 0 or -1. */
static int decode_response(const char *in, size_t inlen, char *out,
                           unsigned *outlen_r)
{
    if (inlen == 1 && in[0] == '=') {
        *outlen_r = 0;
        return 0;
    }
    if (inlen > AUTH_LINE_MAX)
        return -1;
    return sasl_decode64(in, (unsigned)inlen, out, AUTH_DECODED_MAX,
                         outlen_r) == SASL_OK ? 0 : -1;
}

/* Send a challenge and read the client's response line into `line`.
 * Returns 0, 1 when the client cancelled, -1 on a broken exchange. */
static int exchange(struct imapd *s, const char *out, unsigned outlen,
                    struct buf *line)
{
    char enc[AUTH_LINE_MAX + 4];
    unsigned enclen = 0;
    int toolong = 0;

    if (outlen && sasl_encode64(out, outlen, enc, sizeof(enc), &enclen)
                  != SASL_OK)
        return -1;
    enc[enclen] = '\0';
    imapd_printf(s, "+ %s\r\n", enc);
    if (prot_getline(s->in, line, AUTH_LINE_MAX, &toolong))
        return -1;
    if (toolong)
        return -1;
    if (line->len == 1 && line->s[0] == '*')
        return 1;
    return 0;
}

/* AUTHENTICATE mechanism [initial-response] */
void imapd_cmd_authenticate(struct imapd *s, int c)
{
    struct buf mech = BUF_INITIALIZER;
    struct buf resp = BUF_INITIALIZER;
    char *decoded = xmalloc(AUTH_DECODED_MAX);
    const char *serverout = NULL;
    unsigned serveroutlen = 0;
    unsigned declen = 0;
    const void *username = NULL;
    int has_ir = 0;
    int r;

    if (imapd_sp(s, c))
        goto done;
    c = imap_parse_atom(&s->parser, &mech);
    if (c == ' ') {
        c = imap_parse_atom(&s->parser, &resp);
        has_ir = 1;
    }
    if (imapd_eol(s, c))
        goto done;
    if (has_ir && decode_response(resp.s, resp.len, decoded, &declen)) {
        imapd_bad(s, "Invalid base64 in initial response");
        goto done;
    }

    r = sasl_server_start(s->sasl, buf_cstring(&mech),
                          has_ir ? decoded : NULL, declen,
                          &serverout, &serveroutlen);
    while (r == SASL_CONTINUE) {
        int e = exchange(s, serverout, serveroutlen, &resp);

        if (e == 1) {
            imapd_bad(s, "Authentication cancelled");
            goto done;
        }
        if (e < 0 || decode_response(resp.s, resp.len, decoded, &declen)) {
            imapd_bad(s, "Invalid authentication response");
            goto done;
        }
        r = sasl_server_step(s->sasl, decoded, declen, &serverout,
                             &serveroutlen);
    }
    if (r != SASL_OK
        || sasl_getprop(s->sasl, SASL_USERNAME, &username) != SASL_OK
        || !username) {
        if (r == SASL_NOMECH)
            imapd_no(s, "Unsupported authentication mechanism");
        else
            login_failed(s, "-", buf_cstring(&mech));
        goto done;
    }
    login_finish(s, (const char *)username, buf_cstring(&mech));

done:
    xzero_secret(decoded, AUTH_DECODED_MAX);
    free(decoded);
    if (resp.s)
        xzero_secret(resp.s, resp.alloc);
    buf_free(&resp);
    buf_free(&mech);
}

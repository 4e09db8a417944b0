/* imapd authentication: LOGIN, AUTHENTICATE (with SASL-IR and proxy
 * authorization), STARTTLS, UNAUTHENTICATE (RFC 8437), and what a
 * successful login sets up (auth state, namespace, INBOX).  The
 * protocol-independent part (SASL and TLS set-up, admins, cyr_deny,
 * the failed-login pause) is imap/authserver.c. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <sasl/sasl.h>
#include <sasl/saslutil.h>

#include "lib/buf.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/prot.h"
#include "lib/strarray.h"
#include "lib/xmalloc.h"
#include "master/service.h"
#include "imap/authserver.h"
#include "imap/mboxname.h"

#include "imap/imapd.h"

/* Longest line of a SASL exchange (base64 of a client response). */
#define AUTH_LINE_MAX (64 * 1024)
/* Buffer for one decoded SASL response. */
#define AUTH_DECODED_MAX (AUTH_LINE_MAX / 4 * 3 + 4)

const char *imapd_servername(void)
{
    return authserver_servername();
}

int imapd_auth_init(void)
{
    return authserver_init("imap");
}

int imapd_tls_available(void)
{
    return authserver_tls_available();
}

int imapd_plaintext_ok(const struct imapd *s)
{
    return authserver_plaintext_ok(s->tls);
}

int imapd_auth_session_start(struct imapd *s)
{
    return authserver_sasl_new(prot_fd(s->in), s->tls, &s->sasl);
}

void imapd_auth_session_end(struct imapd *s)
{
    if (s->sasl)
        sasl_dispose(&s->sasl);
}

void imapd_auth_capabilities(struct imapd *s, struct buf *out)
{
    struct buf list = BUF_INITIALIZER;
    strarray_t *mechs;
    int i;

    if (authserver_mechlist(s->sasl, &list) > 0) {
        mechs = strarray_split(buf_cstring(&list), " ", 1);
        for (i = 0; i < mechs->count; i++)
            buf_printf(out, " AUTH=%s", strarray_nth(mechs, i));
        strarray_free(&mechs);
    }
    buf_free(&list);
}

int imapd_tls_start(struct imapd *s)
{
    int r = authserver_tls_start(s->in, s->out, &s->tls);

    if (!r && s->sasl)
        authserver_sasl_secure(s->sasl, s->tls);
    return r;
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
    /* Reachable after COMPRESS and UNAUTHENTICATE: TLS would have to go
     * under the compression layer, which prot cannot stack. */
    if (prot_is_compressed(s->in)) {
        imapd_no(s, "[COMPRESSIONACTIVE] STARTTLS after COMPRESS");
        return;
    }
    if (!authserver_tls_available()) {
        imapd_no(s, "TLS is not available");
        return;
    }
    imapd_ok(s, "Begin TLS negotiation now");
    if (imapd_tls_start(s))
        s->logout = 1;
}

/* The session is authenticated as `name` (the authorization id; the
 * authentication id `authcid` differs for proxy logins, else NULL): set
 * up its state and answer OK.  Returns 0, or an error after answering
 * NO. */
static int login_finish(struct imapd *s, const char *name,
                        const char *authcid, const char *mech)
{
    struct buf caps = BUF_INITIALIZER;
    char *userid = NULL;
    char *denied = NULL;
    int r;

    r = authserver_canon_userid(name, &userid);
    if (r) {
        imapd_no(s, "[AUTHENTICATIONFAILED] Invalid user name");
        return r;
    }

    /* cyr_deny: the password was right, but this user may not use us. */
    r = authserver_check_deny(userid, service_name(), &denied);
    if (r) {
        imapd_no(s, "[AUTHORIZATIONFAILED] %s",
                 denied ? denied : "Access denied");
        free(denied);
        free(userid);
        return r;
    }
    s->userid = userid;
    s->is_admin = authserver_is_admin(userid);
    s->auth = acl_auth_new(userid, s->is_admin);
    r = mboxname_init_namespace(&s->ns, s->is_admin);
    if (r)
        xsyslog(LOG_ERR, "bad namespace configuration", "error=%s",
                error_message(r));
    authserver_autocreate_inbox(userid, s->auth);
    if (authcid)
        xsyslog(LOG_NOTICE, "login", "user=%s authcid=%s mech=%s tls=%d "
                "admin=%d", log_escape(userid, 0), log_escape(authcid, 0),
                log_escape(mech, 64), s->tls != NULL, s->is_admin);
    else
        xsyslog(LOG_NOTICE, "login", "user=%s mech=%s tls=%d admin=%d",
                log_escape(userid, 0), log_escape(mech, 64), s->tls != NULL,
                s->is_admin);
    imapd_capabilities(s, &caps);
    imapd_ok(s, "[CAPABILITY %s] User logged in", buf_cstring(&caps));
    buf_free(&caps);
    return 0;
}

/* Answer a failed authentication after failedloginpause. */
static void login_failed(struct imapd *s, const char *name,
                         const char *mech)
{
    xsyslog(LOG_NOTICE, "login failed", "user=%s mech=%s",
            log_escape(name, 64), log_escape(mech, 64));
    authserver_failed_pause(s->out);
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
        login_finish(s, buf_cstring(&user), NULL, "LOGIN");

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
    const void *authcid = NULL;
    int has_ir = 0;
    int is_started = 0;
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

    is_started = 1;
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
    /* A proxy login (authzid differs from authcid) got this far only
     * through the proxy policy of authserver. */
    if (sasl_getprop(s->sasl, SASL_AUTHUSER, &authcid) != SASL_OK
        || !authcid || !strcmp((const char *)authcid,
                               (const char *)username))
        authcid = NULL;
    login_finish(s, (const char *)username, (const char *)authcid,
                 buf_cstring(&mech));

done:
    /* A cancelled, failed or refused exchange must not leave SASL in a
     * state the next AUTHENTICATE could complete without credentials. */
    if (is_started && !s->userid
        && authserver_sasl_renew(prot_fd(s->in), s->tls, &s->sasl))
        s->logout = 1;
    xzero_secret(decoded, AUTH_DECODED_MAX);
    free(decoded);
    if (resp.s)
        xzero_secret(resp.s, resp.alloc);
    buf_free(&resp);
    buf_free(&mech);
}

/* UNAUTHENTICATE (RFC 8437): back to the not authenticated state on the
 * same connection.  A selected mailbox is left without expunge, ENABLEd
 * extensions end, and SASL starts afresh; TLS and COMPRESS stay. */
void imapd_cmd_unauthenticate(struct imapd *s, int c)
{
    sasl_conn_t *fresh = NULL;

    if (imapd_eol(s, c))
        return;
    if (authserver_sasl_new(prot_fd(s->in), s->tls, &fresh)) {
        imapd_no(s, "[SERVERBUG] Cannot reset authentication");
        return;
    }
    imapd_deselect(s);
    imapd_auth_session_end(s);
    s->sasl = fresh;
    xsyslog(LOG_NOTICE, "unauthenticate", "user=%s",
            log_escape(s->userid, 0));
    free(s->userid);
    s->userid = NULL;
    acl_auth_free(&s->auth);
    s->is_admin = 0;
    s->enabled = 0;
    memset(&s->ns, 0, sizeof(s->ns));
    imapd_ok(s, "Completed");
}

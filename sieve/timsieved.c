/* timsieved: the ManageSieve server (RFC 5804).  This file is the
 * service glue, the session loop, capabilities and the commands of the
 * non-authenticated state; the script commands live in
 * timsieved_script.c, the wire format in timsieved_parse.c. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

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
#include "imap/authserver.h"
#include "sieve/sieve.h"
#include "sieve/sievedir.h"

#include "sieve/timsieved.h"

/* Failed logins after which the session is closed. */
#define MAX_FAILURES 3
/* Buffer for one decoded SASL response. */
#define AUTH_DECODED_MAX (TIMSIEVED_PREAUTH_STRING_MAX / 4 * 3 + 4)
/* Shortest idle timeout, whatever "timeout" says. */
#define MIN_TIMEOUT 60

static int idle_timeout;

size_t timsieved_max_script_size(void)
{
    int64_t max = config_getbytesize(IMAPOPT_SIEVE_MAXSCRIPTSIZE, 'K');

    if (max <= 0)
        return 0;
    /* Beyond what the compiler takes it could never be stored anyway. */
    return max > SIEVE_MAX_SCRIPT ? SIEVE_MAX_SCRIPT : (size_t)max;
}

/* Does the SIEVE capability list the word `ext`? */
static int sieve_has_extension(const char *ext)
{
    const char *caps = sieve_capability_string();
    size_t len = strlen(ext);
    const char *p;

    for (p = caps; (p = strstr(p, ext)) != NULL; p += len) {
        if ((p == caps || p[-1] == ' ') && (p[len] == ' ' || !p[len]))
            return 1;
    }
    return 0;
}

/* One capability line: "KEY" or "KEY" "value". */
static void put_capability(struct timsieved *s, const char *key,
                           const char *value)
{
    timsieved_put_string(s, key, strlen(key));
    if (value) {
        prot_putc(s->out, ' ');
        timsieved_put_string(s, value, strlen(value));
    }
    prot_puts(s->out, "\r\n");
}

/* The capability response of RFC 5804 section 1.7 for the session's
 * state, without the final OK. */
static void send_capabilities(struct timsieved *s)
{
    struct buf v = BUF_INITIALIZER;
    int64_t redirects = config_getint(IMAPOPT_SIEVE_MAXREDIRECTS);

    if (config_getenum(IMAPOPT_SERVERINFO) == IMAP_ENUM_SERVERINFO_ON)
        buf_printf(&v, "Columba timsieved %s", PACKAGE_VERSION);
    else
        buf_setcstr(&v, "Columba timsieved");
    put_capability(s, "IMPLEMENTATION", buf_cstring(&v));

    /* After login nothing is left to authenticate with. */
    buf_reset(&v);
    if (!s->userid)
        authserver_mechlist(s->sasl, &v);
    put_capability(s, "SASL", buf_cstring(&v));
    put_capability(s, "SIEVE", sieve_capability_string());
    if (!s->userid && !s->tls && authserver_tls_available())
        put_capability(s, "STARTTLS", NULL);
    if (sieve_has_extension("enotify"))
        put_capability(s, "NOTIFY", "mailto");
    if (redirects > 0) {
        buf_reset(&v);
        buf_printf(&v, "%lld", (long long)redirects);
        put_capability(s, "MAXREDIRECTS", buf_cstring(&v));
    }
    if (s->userid)
        put_capability(s, "OWNER", s->userid);
    put_capability(s, "UNAUTHENTICATE", NULL);
    put_capability(s, "VERSION", "1.0");
    buf_free(&v);
}

/* The capability response and its (bare) OK. */
static void capability_response(struct timsieved *s)
{
    send_capabilities(s);
    timsieved_ok(s);
}

/* CAPABILITY */
static void cmd_capability(struct timsieved *s, struct timsieved_cmd *c)
{
    (void)c;
    capability_response(s);
}

/* NOOP [tag]: the tag comes back in a TAG response code. */
static void cmd_noop(struct timsieved *s, struct timsieved_cmd *c)
{
    if (c->argc == 1)
        timsieved_reply(s, "OK", "TAG", buf_cstring(&c->args[0].s),
                        "Done");
    else
        timsieved_ok(s);
}

/* LOGOUT */
static void cmd_logout(struct timsieved *s, struct timsieved_cmd *c)
{
    (void)c;
    timsieved_ok(s);
    s->logout = 1;
}

/* A fresh SASL context for the next AUTHENTICATE.  Returns 0 or ends
 * the session. */
static int sasl_renew(struct timsieved *s)
{
    if (s->sasl)
        sasl_dispose(&s->sasl);
    if (authserver_sasl_new(prot_fd(s->in), s->tls, &s->sasl)) {
        timsieved_reply(s, "BYE", "TRYLATER", NULL, "Server error");
        s->logout = 1;
        return ERR_INTERNAL;
    }
    return 0;
}

/* STARTTLS: the capabilities are sent again over TLS (section 2.2). */
static void cmd_starttls(struct timsieved *s, struct timsieved_cmd *c)
{
    (void)c;
    if (s->tls) {
        timsieved_reply(s, "NO", NULL, NULL, "TLS is already active");
        return;
    }
    if (!authserver_tls_available()) {
        timsieved_reply(s, "NO", NULL, NULL, "TLS is not available");
        return;
    }
    timsieved_ok(s);
    if (authserver_tls_start(s->in, s->out, &s->tls)) {
        s->logout = 1;
        return;
    }
    /* Nothing negotiated in plaintext survives the handshake. */
    if (sasl_renew(s))
        return;
    capability_response(s);
}

/* UNAUTHENTICATE (RFC 5804 section 2.14): back to the
 * non-authenticated state; TLS stays. */
static void cmd_unauthenticate(struct timsieved *s, struct timsieved_cmd *c)
{
    (void)c;
    xsyslog(LOG_NOTICE, "unauthenticate", "user=%s",
            log_escape(s->userid, 0));
    free(s->userid);
    s->userid = NULL;
    free(s->dir);
    s->dir = NULL;
    if (sasl_renew(s))
        return;
    timsieved_ok(s);
}

/* The credentials were right for `name` (the authorization id): check
 * the deny list and find the user's sieve directory.  Answers OK or
 * NO; `serverout` is sent in a SASL response code with the OK. */
static void login_finish(struct timsieved *s, const char *name,
                         const char *authcid, const char *mech,
                         const char *serverout, unsigned serveroutlen)
{
    struct buf dir = BUF_INITIALIZER;
    struct buf enc = BUF_INITIALIZER;
    char *userid = NULL;
    char *denied = NULL;
    unsigned enclen = 0;

    if (authserver_canon_userid(name, &userid)
        || sievedir_user_dir(userid, &dir)) {
        timsieved_reply(s, "NO", NULL, NULL, "Invalid user name");
        goto done;
    }
    if (authserver_check_deny(userid, service_name(), &denied)) {
        timsieved_reply(s, "NO", NULL, NULL,
                        denied ? denied : "Access denied");
        goto done;
    }
    s->userid = userid;
    userid = NULL;
    s->dir = buf_release(&dir);
    if (authcid)
        xsyslog(LOG_NOTICE, "login", "user=%s authcid=%s mech=%s tls=%d",
                log_escape(s->userid, 0), log_escape(authcid, 0),
                log_escape(mech, 64), s->tls != NULL);
    else
        xsyslog(LOG_NOTICE, "login", "user=%s mech=%s tls=%d",
                log_escape(s->userid, 0), log_escape(mech, 64),
                s->tls != NULL);

    if (serveroutlen) {
        buf_ensure(&enc, (size_t)serveroutlen / 3 * 4 + 8);
        if (sasl_encode64(serverout, serveroutlen, enc.s,
                          (unsigned)enc.alloc, &enclen) == SASL_OK) {
            enc.len = enclen;
            timsieved_reply(s, "OK", "SASL", buf_cstring(&enc), NULL);
            goto done;
        }
    }
    timsieved_ok(s);

done:
    free(userid);
    free(denied);
    buf_free(&dir);
    buf_free(&enc);
}

/* A failed authentication: pause, answer, and end the session after
 * too many. */
static void login_failed(struct timsieved *s, const char *mech)
{
    xsyslog(LOG_NOTICE, "login failed", "mech=%s", log_escape(mech, 64));
    authserver_failed_pause(s->out);
    timsieved_reply(s, "NO", NULL, NULL, "Authentication failed");
    if (++s->nfailures >= MAX_FAILURES) {
        timsieved_reply(s, "BYE", NULL, NULL, "Too many failed logins");
        s->logout = 1;
    }
}

/* Decode a base64 client response into `out` (AUTH_DECODED_MAX
 * bytes).  Returns 0 or -1. */
static int decode_response(const struct buf *in, char *out, unsigned *len_r)
{
    *len_r = 0;
    if (in->len == 0)
        return 0;
    if (in->len > TIMSIEVED_PREAUTH_STRING_MAX)
        return -1;
    return sasl_decode64(in->s, (unsigned)in->len, out, AUTH_DECODED_MAX,
                         len_r) == SASL_OK ? 0 : -1;
}

/* Send a challenge (base64 in a string) and read the client's answer
 * into `resp`.  Returns 0, 1 when the client aborted with "*", -1 when
 * the exchange broke (the session may have to end: s->logout). */
static int exchange(struct timsieved *s, const char *out, unsigned outlen,
                    struct buf *resp)
{
    struct buf enc = BUF_INITIALIZER;
    unsigned enclen = 0;
    int r;

    buf_ensure(&enc, (size_t)outlen / 3 * 4 + 8);
    if (outlen && sasl_encode64(out, outlen, enc.s, (unsigned)enc.alloc,
                                &enclen) != SASL_OK) {
        buf_free(&enc);
        return -1;
    }
    timsieved_put_string(s, enc.s ? enc.s : "", enclen);
    prot_puts(s->out, "\r\n");
    buf_free(&enc);

    r = timsieved_read_auth_response(s, resp);
    if (r && r != ERR_PROTOCOL) {
        if (r == ERR_TOOBIG)
            timsieved_reply(s, "BYE", NULL, NULL, "Literal too large");
        s->logout = 1;
        return -1;
    }
    if (r)
        return -1;
    if (resp->len == 1 && resp->s[0] == '*')
        return 1;
    return 0;
}

/* Is `mech` one of the plaintext mechanisms withheld without TLS? */
static int is_plaintext_mech(const char *mech)
{
    return !strcasecmp(mech, "PLAIN") || !strcasecmp(mech, "LOGIN");
}

/* AUTHENTICATE mechanism [initial-response] (RFC 5804 section 2.1) */
static void cmd_authenticate(struct timsieved *s, struct timsieved_cmd *c)
{
    const char *mech = buf_cstring(&c->args[0].s);
    struct buf resp = BUF_INITIALIZER;
    char *decoded = xmalloc(AUTH_DECODED_MAX);
    const char *serverout = NULL;
    unsigned serveroutlen = 0;
    unsigned declen = 0;
    const void *username = NULL;
    const void *authcid = NULL;
    int r;
    int e;

    if (c->args[0].is_number || (c->argc == 2 && c->args[1].is_number)) {
        timsieved_reply(s, "NO", NULL, NULL, "Syntax: AUTHENTICATE "
                        "\"mechanism\" [\"initial response\"]");
        goto done;
    }
    if (!authserver_mech_offered(s->sasl, mech)) {
        if (is_plaintext_mech(mech) && !authserver_plaintext_ok(s->tls))
            timsieved_reply(s, "NO", "ENCRYPT-NEEDED", NULL,
                            "Use STARTTLS first");
        else
            timsieved_reply(s, "NO", NULL, NULL,
                            "Unsupported authentication mechanism");
        goto done;
    }
    if (c->argc == 2 && decode_response(&c->args[1].s, decoded, &declen)) {
        timsieved_reply(s, "NO", NULL, NULL,
                        "Invalid base64 in initial response");
        goto done;
    }

    r = sasl_server_start(s->sasl, mech, c->argc == 2 ? decoded : NULL,
                          declen, &serverout, &serveroutlen);
    while (r == SASL_CONTINUE) {
        e = exchange(s, serverout, serveroutlen, &resp);
        if (s->logout)
            goto done;
        if (e == 1) {
            timsieved_reply(s, "NO", NULL, NULL,
                            "Authentication aborted");
            goto done;
        }
        if (e < 0 || decode_response(&resp, decoded, &declen)) {
            timsieved_reply(s, "NO", NULL, NULL,
                            "Invalid authentication response");
            goto done;
        }
        r = sasl_server_step(s->sasl, decoded, declen, &serverout,
                             &serveroutlen);
    }
    if (r != SASL_OK
        || sasl_getprop(s->sasl, SASL_USERNAME, &username) != SASL_OK
        || !username) {
        login_failed(s, mech);
        goto done;
    }
    if (sasl_getprop(s->sasl, SASL_AUTHUSER, &authcid) != SASL_OK
        || !authcid || !strcmp(authcid, username))
        authcid = NULL;
    login_finish(s, username, authcid, mech, serverout, serveroutlen);

done:
    /* A finished or abandoned exchange leaves the context unusable for
     * another attempt. */
    if (!s->userid && !s->logout)
        sasl_renew(s);
    xzero_secret(decoded, AUTH_DECODED_MAX);
    free(decoded);
    if (resp.s)
        xzero_secret(resp.s, resp.alloc);
    buf_free(&resp);
}

/* Where a command may be used. */
#define STATE_NONAUTH 0x1u
#define STATE_AUTH 0x2u
#define STATE_ANY 0x3u

/* One row of the command table. */
struct command {
    const char *word;
    unsigned states;
    int min_args;
    int max_args;
    void (*fn)(struct timsieved *s, struct timsieved_cmd *c);
};

static const struct command commands[] = {
    { "AUTHENTICATE", STATE_NONAUTH, 1, 2, cmd_authenticate },
    { "STARTTLS", STATE_NONAUTH, 0, 0, cmd_starttls },
    { "CAPABILITY", STATE_ANY, 0, 0, cmd_capability },
    { "LOGOUT", STATE_ANY, 0, 0, cmd_logout },
    { "NOOP", STATE_ANY, 0, 1, cmd_noop },
    { "UNAUTHENTICATE", STATE_AUTH, 0, 0, cmd_unauthenticate },
    { "HAVESPACE", STATE_AUTH, 2, 2, timsieved_cmd_havespace },
    { "PUTSCRIPT", STATE_AUTH, 2, 2, timsieved_cmd_putscript },
    { "CHECKSCRIPT", STATE_AUTH, 1, 1, timsieved_cmd_checkscript },
    { "LISTSCRIPTS", STATE_AUTH, 0, 0, timsieved_cmd_listscripts },
    { "SETACTIVE", STATE_AUTH, 1, 1, timsieved_cmd_setactive },
    { "GETSCRIPT", STATE_AUTH, 1, 1, timsieved_cmd_getscript },
    { "DELETESCRIPT", STATE_AUTH, 1, 1, timsieved_cmd_deletescript },
    { "RENAMESCRIPT", STATE_AUTH, 2, 2, timsieved_cmd_renamescript },
    { NULL, 0, 0, 0, NULL }
};

/* Read and run one command.  Returns 0 to go on, -1 to end. */
static int run_one_command(struct timsieved *s, struct timsieved_cmd *c)
{
    const struct command *cmd;
    const char *why = NULL;
    unsigned state = s->userid ? STATE_AUTH : STATE_NONAUTH;
    int r;

    r = timsieved_read_command(s, c, &why);
    if (r == ERR_PROTOCOL) {
        timsieved_reply(s, "NO", NULL, NULL, why ? why : "Syntax error");
        return 0;
    }
    if (r == ERR_TOOBIG) {
        xsyslog(LOG_NOTICE, "literal too large", "user=%s",
                s->userid ? log_escape(s->userid, 0) : "-");
        timsieved_reply(s, "BYE", NULL, NULL, "Literal too large");
        return -1;
    }
    if (r) {
        if (r == ERR_TIMEOUT)
            timsieved_reply(s, "BYE", NULL, NULL, "Idle timeout");
        return -1;
    }

    for (cmd = commands; cmd->word; cmd++) {
        if (!strcmp(cmd->word, c->word))
            break;
    }
    if (!cmd->word)
        timsieved_reply(s, "NO", NULL, NULL, "Unknown command");
    else if (!(cmd->states & state))
        timsieved_reply(s, "NO", NULL, NULL, s->userid
                        ? "Already authenticated"
                        : "Authenticate first");
    else if (c->argc < cmd->min_args || c->argc > cmd->max_args)
        timsieved_reply(s, "NO", NULL, NULL, "Wrong number of arguments");
    else
        cmd->fn(s, c);
    return s->logout ? -1 : 0;
}

/* shutdown_file: while it exists, every connection is refused with its
 * first line.  Returns 1 when the session must end. */
static int shutdown_refused(struct timsieved *s)
{
    const char *path = config_getstring(IMAPOPT_SHUTDOWN_FILE);
    struct buf text = BUF_INITIALIZER;
    char *nl;

    if (!path || util_read_file(path, &text, 4096))
        return 0;
    nl = memchr(buf_cstring(&text), '\n', text.len);
    if (nl)
        buf_truncate(&text, (size_t)(nl - text.s));
    timsieved_reply(s, "BYE", "TRYLATER", NULL,
                    text.len ? buf_cstring(&text) : "Server shutting down");
    buf_free(&text);
    return 1;
}

/* TCP_NODELAY: a reply must not wait for the client's delayed ACK. */
static void set_nodelay(int fd)
{
    int on = 1;

    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
}

int service_init(int argc, char **argv, char **envp)
{
    int64_t t;

    (void)argc;
    (void)argv;
    (void)envp;
    t = config_getduration(IMAPOPT_TIMEOUT, 'm');
    idle_timeout = t < MIN_TIMEOUT ? MIN_TIMEOUT
                   : t > 24 * 3600 ? 24 * 3600 : (int)t;
    return authserver_init("sieve");
}

int service_main(int argc, char **argv, char **envp)
{
    struct timsieved session;
    struct timsieved *s = &session;
    struct timsieved_cmd cmd;
    struct buf sid = BUF_INITIALIZER;

    (void)argc;
    (void)argv;
    (void)envp;
    memset(s, 0, sizeof(*s));
    memset(&cmd, 0, sizeof(cmd));
    log_new_session_id(&sid, "sieve");
    log_set_session(buf_cstring(&sid), service_client_addr());
    buf_free(&sid);

    s->in = prot_new(0, 0);
    s->out = prot_new(1, 1);
    prot_settimeout(s->in, idle_timeout);
    prot_setwritetimeout(s->out, idle_timeout);
    prot_setflushonread(s->in, s->out);
    set_nodelay(1);

    xsyslog(LOG_INFO, "connection", NULL);
    if (authserver_sasl_new(0, NULL, &s->sasl)) {
        timsieved_reply(s, "BYE", "TRYLATER", NULL, "Server error");
        goto done;
    }
    if (service_implicit_tls) {
        if (authserver_tls_start(s->in, s->out, &s->tls))
            goto done;
        authserver_sasl_secure(s->sasl, s->tls);
    }
    if (shutdown_refused(s))
        goto done;

    /* The greeting is the capability response (section 1.7). */
    capability_response(s);
    while (run_one_command(s, &cmd) == 0)
        ;

done:
    xsyslog(LOG_INFO, "disconnect", "user=%s",
            s->userid ? log_escape(s->userid, 0) : "-");
    timsieved_cmd_clear(&cmd, 1);
    if (s->sasl)
        sasl_dispose(&s->sasl);
    prot_flush(s->out);
    if (s->tls)
        tls_shutdown(&s->tls);
    prot_free(&s->in);
    prot_free(&s->out);
    free(s->userid);
    free(s->dir);
    log_set_session(NULL, NULL);
    return 0;
}

void service_abort(int code)
{
    exit(code);
}

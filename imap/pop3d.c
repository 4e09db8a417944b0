/* pop3d: the POP3 server (RFC 1939, with CAPA and response codes from
 * RFC 2449, AUTH from RFC 5034, STLS from RFC 2595).  This file is the
 * service glue, the session loop and the AUTHORIZATION state; the
 * maildrop commands live in pop3d_maildrop.c. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sasl/saslutil.h>

#include "lib/buf.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/prot.h"
#include "lib/strarray.h"
#include "lib/tls.h"
#include "lib/util.h"
#include "lib/xmalloc.h"
#include "master/service.h"
#include "imap/authserver.h"
#include "imap/mboxlist.h"

#include "imap/pop3d.h"

/* The shortest idle timeout RFC 1939 allows (section 3): 10 minutes. */
#define POP3D_MIN_TIMEOUT (10 * 60)
/* Longest line of a SASL exchange (base64 of one client response). */
#define POP3D_AUTH_LINE_MAX (32 * 1024)
/* Buffer for one decoded SASL response. */
#define POP3D_AUTH_DECODED_MAX (POP3D_AUTH_LINE_MAX / 4 * 3 + 4)
/* Failed logins after which the session is closed. */
#define POP3D_MAX_FAILURES 3

/* Process-wide settings read in service_init. */
static int idle_timeout;
static int has_apop;

/* The session states of RFC 1939, as bits for the command table. */
#define STATE_AUTHORIZATION 0x1u
#define STATE_TRANSACTION 0x2u
#define STATE_ANY 0x3u

/* "<status> <text>\r\n" in one piece, so a reply never straddles two
 * writes of its own. */
static void reply(struct pop3d *s, const char *status, const char *fmt,
                  va_list ap)
{
    struct buf b = BUF_INITIALIZER;

    buf_appendcstr(&b, status);
    buf_putc(&b, ' ');
    buf_vprintf(&b, fmt, ap);
    buf_appendcstr(&b, "\r\n");
    prot_write(s->out, b.s, b.len);
    buf_free(&b);
}

void pop3d_ok(struct pop3d *s, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    reply(s, "+OK", fmt, ap);
    va_end(ap);
}

void pop3d_err(struct pop3d *s, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    reply(s, "-ERR", fmt, ap);
    va_end(ap);
}

void pop3d_cork(struct pop3d *s, int is_on)
{
#ifdef TCP_CORK
    int v = is_on;

    if (!is_on)
        prot_flush(s->out);
    (void)setsockopt(prot_fd(s->out), IPPROTO_TCP, TCP_CORK, &v, sizeof(v));
#else
    (void)s;
    (void)is_on;
#endif
}

/* Is this session in the TRANSACTION state? */
static int is_transaction(const struct pop3d *s)
{
    return s->mb != NULL;
}

/* The capability lines of RFC 2449 for the current state, each ending
 * in CRLF, into `out`. */
static void capabilities(struct pop3d *s, struct buf *out)
{
    struct buf mechs = BUF_INITIALIZER;
    int64_t minpoll = config_getduration(IMAPOPT_POPMINPOLL, 'm');
    int64_t expire = config_getint(IMAPOPT_POPEXPIRETIME);
    int info = config_getenum(IMAPOPT_SERVERINFO);

    buf_appendcstr(out, "TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n"
                        "PIPELINING\r\n");
    if (expire < 0)
        buf_appendcstr(out, "EXPIRE NEVER\r\n");
    else
        buf_printf(out, "EXPIRE %lld\r\n", (long long)expire);
    if (minpoll > 0)
        buf_printf(out, "LOGIN-DELAY %lld\r\n", (long long)minpoll);
    if (!is_transaction(s)) {
        if (!s->tls && authserver_tls_available())
            buf_appendcstr(out, "STLS\r\n");
        if (authserver_plaintext_ok(s->tls))
            buf_appendcstr(out, "USER\r\n");
        if (authserver_mechlist(s->sasl, &mechs) > 0)
            buf_printf(out, "SASL %s\r\n", buf_cstring(&mechs));
    }
    if (info == IMAP_ENUM_SERVERINFO_ON)
        buf_printf(out, "IMPLEMENTATION Columba-%s\r\n", PACKAGE_VERSION);
    else if (info == IMAP_ENUM_SERVERINFO_MIN)
        buf_appendcstr(out, "IMPLEMENTATION Columba\r\n");
    buf_free(&mechs);
}

/* CAPA */
static void cmd_capa(struct pop3d *s, int argc, char **argv)
{
    struct buf b = BUF_INITIALIZER;

    (void)argc;
    (void)argv;
    buf_appendcstr(&b, "+OK List of capabilities follows\r\n");
    capabilities(s, &b);
    buf_appendcstr(&b, ".\r\n");
    prot_write(s->out, b.s, b.len);
    buf_free(&b);
}

/* NOOP */
static void cmd_noop(struct pop3d *s, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    pop3d_ok(s, "Nothing done");
}

/* QUIT: in the TRANSACTION state this is the UPDATE state, where the
 * messages deleted in this session are expunged. */
static void cmd_quit(struct pop3d *s, int argc, char **argv)
{
    uint32_t ndeleted = s->ndeleted;

    (void)argc;
    (void)argv;
    s->logout = 1;
    if (!is_transaction(s)) {
        pop3d_ok(s, "Columba POP3 server signing off");
        return;
    }
    if (pop3d_maildrop_close(s, 1))
        pop3d_err(s, "[SYS/TEMP] Deleted messages could not be removed");
    else
        pop3d_ok(s, "Columba POP3 server signing off (%u messages deleted)",
                 ndeleted);
}

/* STLS (RFC 2595) */
static void cmd_stls(struct pop3d *s, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    if (s->tls) {
        pop3d_err(s, "Already using TLS");
        return;
    }
    if (!authserver_tls_available()) {
        pop3d_err(s, "TLS is not available");
        return;
    }
    pop3d_ok(s, "Begin TLS negotiation now");
    if (authserver_tls_start(s->in, s->out, &s->tls)) {
        s->logout = 1;
        return;
    }
    authserver_sasl_secure(s->sasl, s->tls);
    /* Nothing learnt before the handshake may be trusted after it. */
    free(s->user);
    s->user = NULL;
}

/* The credentials were right for `name` (the authorization id): set up
 * the session and open the maildrop.  Answers +OK or -ERR.  Returns 0
 * on success. */
static int login_finish(struct pop3d *s, const char *name,
                        const char *authcid, const char *mech)
{
    char *denied = NULL;
    int r;

    r = authserver_canon_userid(name, &s->userid);
    if (r) {
        pop3d_err(s, "[AUTH] Invalid user name");
        return r;
    }
    r = authserver_check_deny(s->userid, service_name(), &denied);
    if (r) {
        pop3d_err(s, "[AUTH] %s", denied ? denied : "Access denied");
        free(denied);
        goto fail;
    }
    s->is_admin = authserver_is_admin(s->userid);
    s->auth = acl_auth_new(s->userid, s->is_admin);
    authserver_autocreate_inbox(s->userid, s->auth);
    r = pop3d_maildrop_open(s);
    if (r)
        goto fail;
    if (authcid)
        xsyslog(LOG_NOTICE, "login", "user=%s authcid=%s mech=%s tls=%d "
                "messages=%u", log_escape(s->userid, 0),
                log_escape(authcid, 0), log_escape(mech, 64),
                s->tls != NULL, s->nmsgs);
    else
        xsyslog(LOG_NOTICE, "login", "user=%s mech=%s tls=%d messages=%u",
                log_escape(s->userid, 0), log_escape(mech, 64),
                s->tls != NULL, s->nmsgs);
    pop3d_ok(s, "Mailbox ready, %u messages", s->nmsgs);
    return 0;

fail:
    acl_auth_free(&s->auth);
    free(s->userid);
    s->userid = NULL;
    s->is_admin = 0;
    return r ? r : ERR_PERMISSION;
}

/* Answer a failed authentication after failedloginpause; too many
 * failures end the session. */
static void login_failed(struct pop3d *s, const char *name,
                         const char *mech)
{
    xsyslog(LOG_NOTICE, "login failed", "user=%s mech=%s",
            log_escape(name, 64), log_escape(mech, 64));
    authserver_failed_pause(s->out);
    pop3d_err(s, "[AUTH] Authentication failed");
    if (++s->nfailures >= POP3D_MAX_FAILURES)
        s->logout = 1;
}

/* USER name */
static void cmd_user(struct pop3d *s, int argc, char **argv)
{
    if (argc != 2) {
        pop3d_err(s, "Syntax: USER name");
        return;
    }
    if (!authserver_plaintext_ok(s->tls)) {
        pop3d_err(s, "[AUTH] Plaintext passwords need TLS (use STLS)");
        return;
    }
    free(s->user);
    s->user = xstrdup(argv[1]);
    pop3d_ok(s, "Name is a valid mailbox");
}

/* PASS password: the whole rest of the line, spaces included (RFC
 * 1939 allows spaces in the password); argv[1] points at it. */
static void cmd_pass(struct pop3d *s, int argc, char **argv)
{
    const char *pass = argc > 1 ? argv[1] : "";
    int r;

    if (!s->user) {
        pop3d_err(s, "Must give USER command first");
        return;
    }
    r = sasl_checkpass(s->sasl, s->user, (unsigned)strlen(s->user), pass,
                       (unsigned)strlen(pass));
    if (r != SASL_OK)
        login_failed(s, s->user, "USER");
    else
        login_finish(s, s->user, NULL, "USER");
    free(s->user);
    s->user = NULL;
}

/* APOP name digest (RFC 1939 section 7), checked by SASL against the
 * plaintext password of its auxprop store. */
static void cmd_apop(struct pop3d *s, int argc, char **argv)
{
    struct buf resp = BUF_INITIALIZER;
    int r;

    if (!has_apop || !s->apop_stamp[0]) {
        pop3d_err(s, "APOP is not available");
        return;
    }
    if (argc != 3) {
        pop3d_err(s, "Syntax: APOP name digest");
        return;
    }
    buf_printf(&resp, "%s %s", argv[1], argv[2]);
    r = sasl_checkapop(s->sasl, s->apop_stamp,
                       (unsigned)strlen(s->apop_stamp),
                       buf_cstring(&resp), (unsigned)resp.len);
    if (r != SASL_OK)
        login_failed(s, argv[1], "APOP");
    else
        login_finish(s, argv[1], NULL, "APOP");
    buf_free(&resp);
}

/* Decode a base64 client response ("=" is empty) into `out` (at least
 * POP3D_AUTH_DECODED_MAX bytes).  Returns 0 or -1. */
static int decode_response(const char *in, size_t inlen, char *out,
                           unsigned *outlen_r)
{
    if (inlen == 1 && in[0] == '=') {
        *outlen_r = 0;
        return 0;
    }
    if (inlen > POP3D_AUTH_LINE_MAX)
        return -1;
    return sasl_decode64(in, (unsigned)inlen, out, POP3D_AUTH_DECODED_MAX,
                         outlen_r) == SASL_OK ? 0 : -1;
}

/* Send a challenge and read the client's response into `line`.
 * Returns 0, 1 when the client cancelled, -1 on a broken exchange. */
static int exchange(struct pop3d *s, const char *out, unsigned outlen,
                    struct buf *line)
{
    struct buf enc = BUF_INITIALIZER;
    unsigned enclen = 0;
    int toolong = 0;
    int r = 0;

    buf_ensure(&enc, (size_t)outlen / 3 * 4 + 8);
    if (outlen && sasl_encode64(out, outlen, enc.s, (unsigned)enc.alloc,
                                &enclen) != SASL_OK)
        r = -1;
    if (!r) {
        enc.len = enclen;
        prot_printf(s->out, "+ %s\r\n", buf_cstring(&enc));
        if (prot_getline(s->in, line, POP3D_AUTH_LINE_MAX, &toolong)
            || toolong)
            r = -1;
        else if (line->len == 1 && line->s[0] == '*')
            r = 1;
    }
    buf_free(&enc);
    return r;
}

/* AUTH without arguments: the mechanisms, one a line. */
static void list_mechanisms(struct pop3d *s)
{
    struct buf list = BUF_INITIALIZER;
    struct buf out = BUF_INITIALIZER;
    strarray_t *mechs;
    int i;

    authserver_mechlist(s->sasl, &list);
    mechs = strarray_split(buf_cstring(&list), " ", 1);
    buf_appendcstr(&out, "+OK List of supported mechanisms follows\r\n");
    for (i = 0; i < mechs->count; i++)
        buf_printf(&out, "%s\r\n", strarray_nth(mechs, i));
    buf_appendcstr(&out, ".\r\n");
    prot_write(s->out, out.s, out.len);
    strarray_free(&mechs);
    buf_free(&list);
    buf_free(&out);
}

/* AUTH mechanism [initial-response] (RFC 5034) */
static void cmd_auth(struct pop3d *s, int argc, char **argv)
{
    struct buf resp = BUF_INITIALIZER;
    char *decoded = NULL;
    const char *serverout = NULL;
    unsigned serveroutlen = 0;
    unsigned declen = 0;
    const void *username = NULL;
    const void *authcid = NULL;
    const char *mech;
    int r;
    int e;

    if (argc == 1) {
        list_mechanisms(s);
        return;
    }
    mech = argv[1];
    decoded = xmalloc(POP3D_AUTH_DECODED_MAX);
    if (argc == 3 && decode_response(argv[2], strlen(argv[2]), decoded,
                                     &declen)) {
        pop3d_err(s, "Invalid base64 in initial response");
        goto done;
    }

    r = sasl_server_start(s->sasl, mech, argc == 3 ? decoded : NULL,
                          declen, &serverout, &serveroutlen);
    while (r == SASL_CONTINUE) {
        e = exchange(s, serverout, serveroutlen, &resp);
        if (e == 1) {
            pop3d_err(s, "Authentication cancelled");
            goto done;
        }
        if (e < 0 || decode_response(resp.s, resp.len, decoded, &declen)) {
            pop3d_err(s, "Invalid authentication response");
            goto done;
        }
        r = sasl_server_step(s->sasl, decoded, declen, &serverout,
                             &serveroutlen);
    }
    /* Data with success goes out as one more challenge, answered with
     * an empty line (RFC 5034 section 4). */
    if (r == SASL_OK && serveroutlen > 0) {
        e = exchange(s, serverout, serveroutlen, &resp);
        if (e || resp.len) {
            pop3d_err(s, "Authentication cancelled");
            goto done;
        }
    }
    if (r != SASL_OK
        || sasl_getprop(s->sasl, SASL_USERNAME, &username) != SASL_OK
        || !username) {
        if (r == SASL_NOMECH)
            pop3d_err(s, "Unsupported authentication mechanism");
        else
            login_failed(s, "-", mech);
        goto done;
    }
    if (sasl_getprop(s->sasl, SASL_AUTHUSER, &authcid) != SASL_OK
        || !authcid || !strcmp(authcid, username))
        authcid = NULL;
    login_finish(s, username, authcid, mech);

done:
    /* A finished or abandoned exchange leaves the context unusable for
     * the next attempt; start each AUTH afresh. */
    if (!is_transaction(s) && !s->logout
        && authserver_sasl_renew(prot_fd(s->in), s->tls, &s->sasl))
        s->logout = 1;
    if (decoded) {
        xzero_secret(decoded, POP3D_AUTH_DECODED_MAX);
        free(decoded);
    }
    if (resp.s)
        xzero_secret(resp.s, resp.alloc);
    buf_free(&resp);
}

/* One row of the command table. */
struct command {
    const char *name;
    unsigned states;            /* STATE_* where it is allowed */
    int min_args;               /* arguments after the command word */
    int max_args;
    void (*fn)(struct pop3d *s, int argc, char **argv);
};

static const struct command commands[] = {
    { "CAPA", STATE_ANY, 0, 0, cmd_capa },
    { "QUIT", STATE_ANY, 0, 0, cmd_quit },
    { "STLS", STATE_AUTHORIZATION, 0, 0, cmd_stls },
    { "USER", STATE_AUTHORIZATION, 1, 1, cmd_user },
    { "PASS", STATE_AUTHORIZATION, 0, 1, cmd_pass },
    { "APOP", STATE_AUTHORIZATION, 2, 2, cmd_apop },
    { "AUTH", STATE_AUTHORIZATION, 0, 2, cmd_auth },
    { "NOOP", STATE_TRANSACTION, 0, 0, cmd_noop },
    { "STAT", STATE_TRANSACTION, 0, 0, pop3d_cmd_stat },
    { "LIST", STATE_TRANSACTION, 0, 1, pop3d_cmd_list },
    { "UIDL", STATE_TRANSACTION, 0, 1, pop3d_cmd_list },
    { "RETR", STATE_TRANSACTION, 1, 1, pop3d_cmd_retr },
    { "TOP", STATE_TRANSACTION, 2, 2, pop3d_cmd_retr },
    { "DELE", STATE_TRANSACTION, 1, 1, pop3d_cmd_dele },
    { "RSET", STATE_TRANSACTION, 0, 0, pop3d_cmd_rset },
    { NULL, 0, 0, 0, NULL }
};

/* Split `line` in place into the command word and up to
 * POP3D_ARGS_MAX arguments separated by single spaces.  PASS keeps the
 * rest of the line, spaces included, as one argument.  Returns argc,
 * or -1 when there are too many arguments. */
static int split_line(char *line, char **argv)
{
    int argc = 0;
    char *p = line;

    argv[argc++] = p;
    p = strchr(p, ' ');
    if (!p)
        return argc;
    *p++ = '\0';
    if (!strcasecmp(argv[0], "PASS")) {
        argv[argc++] = p;
        return argc;
    }
    /* A trailing space ends the arguments rather than adding an empty
     * one; some clients send "LIST " for LIST. */
    while (p && *p) {
        if (argc > POP3D_ARGS_MAX)
            return -1;
        argv[argc++] = p;
        p = strchr(p, ' ');
        if (p)
            *p++ = '\0';
    }
    return argc;
}

/* Read and run one command.  Returns 0 to go on, -1 to end the
 * session. */
static int run_one_command(struct pop3d *s)
{
    struct buf line = BUF_INITIALIZER;
    char *argv[POP3D_ARGS_MAX + 2];
    const struct command *cmd;
    unsigned state;
    int toolong = 0;
    int argc;
    int r;

    /* The bound counts the CRLF prot_getline() strips. */
    r = prot_getline(s->in, &line, POP3D_LINE_MAX - 2, &toolong);
    if (r) {
        if (r == ERR_TIMEOUT)
            pop3d_err(s, "Idle timeout, closing connection");
        goto end;
    }
    if (toolong) {
        pop3d_err(s, "Command line too long");
        goto next;
    }
    if (memchr(line.s ? line.s : "", '\0', line.len)) {
        pop3d_err(s, "Invalid character in command");
        goto next;
    }
    argc = split_line((char *)buf_cstring(&line), argv);
    if (argc < 0 || !argv[0][0]) {
        pop3d_err(s, argc < 0 ? "Too many arguments" : "Null command");
        goto next;
    }
    for (cmd = commands; cmd->name; cmd++) {
        if (!strcasecmp(cmd->name, argv[0]))
            break;
    }
    if (!cmd->name) {
        pop3d_err(s, "Unrecognized command");
        goto next;
    }
    state = is_transaction(s) ? STATE_TRANSACTION : STATE_AUTHORIZATION;
    if (!(cmd->states & state)) {
        pop3d_err(s, "Command not valid in this state");
        goto next;
    }
    if (argc - 1 < cmd->min_args || argc - 1 > cmd->max_args) {
        pop3d_err(s, "Wrong number of arguments");
        goto next;
    }
    cmd->fn(s, argc, argv);

next:
    if (line.s)
        xzero_secret(line.s, line.alloc);
    buf_free(&line);
    return s->logout ? -1 : 0;

end:
    buf_free(&line);
    return -1;
}

/* shutdown_file: while it exists, every connection is refused with its
 * first line.  Returns 1 when the session must end. */
static int shutdown_refused(struct pop3d *s)
{
    const char *path = config_getstring(IMAPOPT_SHUTDOWN_FILE);
    struct buf text = BUF_INITIALIZER;
    char *nl;

    if (!path || util_read_file(path, &text, 4096))
        return 0;
    nl = memchr(buf_cstring(&text), '\n', text.len);
    if (nl)
        buf_truncate(&text, (size_t)(nl - text.s));
    pop3d_err(s, "[SYS/TEMP] %s",
              text.len ? buf_cstring(&text) : "Server shutting down");
    buf_free(&text);
    return 1;
}

/* The greeting, with the APOP time stamp when APOP is on. */
static void send_greeting(struct pop3d *s)
{
    struct timespec now;

    s->apop_stamp[0] = '\0';
    if (has_apop) {
        clock_gettime(CLOCK_REALTIME, &now);
        snprintf(s->apop_stamp, sizeof(s->apop_stamp), "<%ld.%ld.%ld@%s>",
                 (long)getpid(), (long)now.tv_sec, (long)now.tv_nsec,
                 authserver_servername());
    }
    pop3d_ok(s, "%s Columba POP3 server ready%s%s",
             authserver_servername(), s->apop_stamp[0] ? " " : "",
             s->apop_stamp);
}

/* TCP_NODELAY: a reply must not wait for the client's delayed ACK of
 * the previous one. */
static void set_nodelay(int fd)
{
    int on = 1;

    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
}

/* Release everything of one session (no expunge). */
static void session_end(struct pop3d *s)
{
    pop3d_maildrop_close(s, 0);
    if (s->sasl)
        sasl_dispose(&s->sasl);
    prot_flush(s->out);
    if (s->tls)
        tls_shutdown(&s->tls);
    prot_free(&s->in);
    prot_free(&s->out);
    free(s->user);
    free(s->userid);
    acl_auth_free(&s->auth);
    log_set_session(NULL, NULL);
}

int service_init(int argc, char **argv, char **envp)
{
    int64_t t;
    int r;

    (void)argc;
    (void)argv;
    (void)envp;

    t = config_getduration(IMAPOPT_POPTIMEOUT, 'm');
    idle_timeout = t < POP3D_MIN_TIMEOUT ? POP3D_MIN_TIMEOUT
                   : t > 24 * 3600 ? 24 * 3600 : (int)t;

    r = mboxlist_open();
    if (r) {
        xsyslog(LOG_ERR, "cannot open mailbox list", "error=%s",
                error_message(r));
        return r;
    }
    r = authserver_init("pop");
    if (r)
        return r;

    /* APOP needs SASL built with it and a store of plaintext
     * passwords; sasl_checkapop with no arguments asks for the first. */
    has_apop = config_getswitch(IMAPOPT_ALLOWAPOP);
    if (has_apop) {
        sasl_conn_t *probe = NULL;

        if (authserver_sasl_new(-1, NULL, &probe)
            || sasl_checkapop(probe, NULL, 0, NULL, 0) != SASL_OK)
            has_apop = 0;
        if (probe)
            sasl_dispose(&probe);
    }
    return 0;
}

int service_main(int argc, char **argv, char **envp)
{
    struct pop3d session;
    struct pop3d *s = &session;
    struct buf sid = BUF_INITIALIZER;

    (void)argc;
    (void)argv;
    (void)envp;
    memset(s, 0, sizeof(*s));
    log_new_session_id(&sid, "pop3");
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
        pop3d_err(s, "[SYS/TEMP] Server error");
        goto done;
    }
    if (service_implicit_tls) {
        if (authserver_tls_start(s->in, s->out, &s->tls))
            goto done;
        authserver_sasl_secure(s->sasl, s->tls);
    }
    if (shutdown_refused(s))
        goto done;
    send_greeting(s);

    while (run_one_command(s) == 0)
        ;

done:
    xsyslog(LOG_INFO, "disconnect", "user=%s retr=%u top=%u",
            s->userid ? log_escape(s->userid, 0) : "-", s->nretr, s->ntop);
    session_end(s);
    return 0;
}

void service_abort(int code)
{
    mboxlist_close();
    exit(code);
}

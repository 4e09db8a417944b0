/* lmtpd: the LMTP delivery server (RFC 2033).  This file is the service
 * glue, the session loop and the protocol commands; recipients and the
 * delivery itself are in imap/lmtpd_deliver.c. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sasl/saslutil.h>

#include "lib/buf.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/prot.h"
#include "lib/times.h"
#include "lib/tls.h"
#include "lib/util.h"
#include "lib/xmalloc.h"
#include "master/service.h"
#include "imap/append.h"
#include "imap/authserver.h"
#include "imap/duplicate.h"
#include "imap/lmtp_spool.h"
#include "imap/mboxlist.h"
#include "imap/quota.h"

#include "imap/lmtpd.h"

/* Seconds to wait for a command or a piece of DATA (RFC 5321 4.5.3.2
 * asks for at least 5 and 10 minutes). */
#define LMTPD_TIMEOUT (10 * 60)
/* Syntax errors after which a session is dropped. */
#define LMTPD_MAX_ERRORS 20
/* Longest LHLO argument kept. */
#define LMTPD_LHLO_MAX 255
/* Longest line of a SASL exchange. */
#define LMTPD_AUTH_LINE_MAX (64 * 1024)

uint64_t lmtpd_max_message;

/* -a: connections on any socket are trusted (pre-authenticated). */
static int preauth_all;

static void sasl_setup(struct lmtpd *s);

void lmtpd_reply(struct lmtpd *s, const char *fmt, ...)
{
    struct buf b = BUF_INITIALIZER;
    va_list ap;

    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    buf_appendcstr(&b, "\r\n");
    prot_write(s->out, b.s, b.len);
    buf_free(&b);
}

/* Forget the transaction (MAIL, RCPTs). */
static void txn_reset(struct lmtpd *s)
{
    size_t i;

    for (i = 0; i < s->nrcpt; i++)
        lmtpd_rcpt_fini(&s->rcpts[i]);
    free(s->rcpts);
    s->rcpts = NULL;
    s->nrcpt = s->rcpt_alloc = 0;
    free(s->from);
    s->from = NULL;
    s->has_mail = 0;
    s->size_hint = 0;
    acl_auth_free(&s->txn_auth);
}

const struct auth_state *lmtpd_auth(const struct lmtpd *s)
{
    return s->txn_auth ? s->txn_auth : s->auth;
}

/* Decode RFC 3461 xtext ("+XX" hex escapes) from `p` up to a blank into
 * `out`.  Returns the end, or NULL for bad xtext. */
static const char *xtext_decode(const char *p, struct buf *out)
{
    static const char hex[] = "0123456789ABCDEF";
    const char *h1, *h2;

    buf_reset(out);
    for (; *p && *p != ' '; p++) {
        if (*p != '+') {
            if ((unsigned char)*p < 33 || (unsigned char)*p > 126
                || *p == '=')
                return NULL;
            buf_putc(out, *p);
            continue;
        }
        if (!p[1] || !p[2] || !(h1 = strchr(hex, p[1]))
            || !(h2 = strchr(hex, p[2])))
            return NULL;
        buf_putc(out, (char)(((h1 - hex) << 4) | (h2 - hex)));
        p += 2;
    }
    if (out->len > LMTPD_PATH_MAX || memchr(out->s ? out->s : "", '\0',
                                            out->len))
        return NULL;
    return p;
}

/* ---- Address and parameter parsing ---------------------------------- */

/* Read "<path>" at *pp into `out` (brackets removed, a source route
 * "@a,@b:" dropped, quoted local parts kept as sent).  Moves *pp past
 * the ">".  Returns 0, or -1 for bad syntax or a path over
 * LMTPD_PATH_MAX; 8-bit bytes are refused with lmtp_strict_rfc2821 and
 * otherwise become 'X'. */
static int parse_path(const char **pp, struct buf *out)
{
    const char *p = *pp;
    int in_quote = 0;

    buf_reset(out);
    if (*p != '<')
        return -1;
    p++;
    if (*p == '@') {
        /* Source route (RFC 5321 4.1.2): ignored, as 3.3 allows. */
        const char *colon = strchr(p, ':');
        const char *gt = strchr(p, '>');

        if (!colon || (gt && gt < colon))
            return -1;
        p = colon + 1;
    }
    for (; *p; p++) {
        unsigned char c = (unsigned char)*p;

        if (!in_quote && c == '>')
            break;
        if (c == '"')
            in_quote = !in_quote;
        else if (c == '\\' && in_quote && p[1]) {
            buf_putc(out, *p++);
            c = (unsigned char)*p;
        }
        if (c >= 0x80) {
            if (config_getswitch(IMAPOPT_LMTP_STRICT_RFC2821))
                return -1;
            c = 'X';
        }
        else if (c < 0x20 || c == 0x7f || (c == ' ' && !in_quote)) {
            return -1;
        }
        buf_putc(out, (char)c);
        if (out->len > LMTPD_PATH_MAX)
            return -1;
    }
    if (*p != '>')
        return -1;
    *pp = p + 1;
    return 0;
}

/* "FROM:" / "TO:" then optional blanks (some clients send one). */
static const char *skip_keyword(const char *args, const char *kw)
{
    size_t n = strlen(kw);

    if (strncasecmp(args, kw, n))
        return NULL;
    args += n;
    while (*args == ' ')
        args++;
    return args;
}

/* ---- Commands ---------------------------------------------------------- */

/* The EHLO-style keyword lines of the LHLO reply. */
static void cmd_lhlo(struct lmtpd *s, const char *args)
{
    struct buf mechs = BUF_INITIALIZER;
    const char *p;

    if (!*args) {
        lmtpd_reply(s, "501 5.5.4 LHLO needs a host name");
        return;
    }
    for (p = args; *p; p++) {
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f) {
            lmtpd_reply(s, "501 5.5.4 Bad host name");
            return;
        }
    }
    free(s->lhlo);
    s->lhlo = xstrndup(args, LMTPD_LHLO_MAX);
    txn_reset(s);

    lmtpd_reply(s, "250-%s", authserver_servername());
    lmtpd_reply(s, "250-8BITMIME");
    lmtpd_reply(s, "250-ENHANCEDSTATUSCODES");
    lmtpd_reply(s, "250-PIPELINING");
    if (lmtpd_max_message)
        lmtpd_reply(s, "250-SIZE %llu",
                    (unsigned long long)lmtpd_max_message);
    else
        lmtpd_reply(s, "250-SIZE");
    if (!s->tls && authserver_tls_available())
        lmtpd_reply(s, "250-STARTTLS");
    if (!s->authuser && s->sasl && authserver_mechlist(s->sasl, &mechs) > 0)
        lmtpd_reply(s, "250-AUTH %s", buf_cstring(&mechs));
    lmtpd_reply(s, "250 IGNOREQUOTA");
    buf_free(&mechs);
}

/* The parameters of MAIL after the path (at `p`): SIZE=n, BODY=7BIT or
 * 8BITMIME, AUTH=xtext (RFC 4954 5).  Returns 0, or -1 with the reply
 * queued. */
static int mail_params(struct lmtpd *s, const char *p, uint64_t *size_r,
                       struct buf *authid)
{
    const char *end;

    for (;;) {
        while (*p == ' ')
            p++;
        if (!*p)
            return 0;
        if (!strncasecmp(p, "SIZE=", 5)) {
            if (parse_uint64(p + 5, &end, size_r)
                || (*end && *end != ' ')) {
                lmtpd_reply(s, "501 5.5.4 Bad SIZE parameter");
                return -1;
            }
            p = end;
        }
        else if (!strncasecmp(p, "BODY=7BIT", 9)
                 && (!p[9] || p[9] == ' ')) {
            p += 9;
        }
        else if (!strncasecmp(p, "BODY=8BITMIME", 13)
                 && (!p[13] || p[13] == ' ')) {
            p += 13;
        }
        else if (!strncasecmp(p, "AUTH=", 5)) {
            end = xtext_decode(p + 5, authid);
            if (!end) {
                lmtpd_reply(s, "501 5.5.4 Bad AUTH parameter");
                return -1;
            }
            p = end;
        }
        else {
            lmtpd_reply(s, "555 5.5.4 Unsupported MAIL parameter");
            return -1;
        }
    }
}

/* MAIL FROM:<path> [SIZE=n] [BODY=7BIT|8BITMIME] [AUTH=...] */
static void cmd_mail(struct lmtpd *s, const char *args)
{
    struct buf path = BUF_INITIALIZER;
    struct buf authid = BUF_INITIALIZER;
    const char *p;
    uint64_t size = 0;

    if (!s->lhlo) {
        lmtpd_reply(s, "503 5.5.1 Send LHLO first");
        goto done;
    }
    if (s->has_mail) {
        lmtpd_reply(s, "503 5.5.1 Nested MAIL command");
        goto done;
    }
    if (!s->is_trusted && !s->authuser) {
        lmtpd_reply(s, "530 5.7.0 Authentication required");
        goto done;
    }
    p = skip_keyword(args, "FROM:");
    if (!p || parse_path(&p, &path) || (*p && *p != ' ')) {
        lmtpd_reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
        goto done;
    }
    if (mail_params(s, p, &size, &authid))
        goto done;
    if (lmtpd_max_message && size > lmtpd_max_message) {
        lmtpd_reply(s, "552 5.3.4 Message size exceeds fixed limit");
        goto done;
    }
    s->from = buf_release(&path);
    s->size_hint = size;
    s->has_mail = 1;

    /* A trusted client (deliver -a) names in AUTH= whose rights the
     * deliveries use; from others the parameter is only noted. */
    if (s->is_trusted && !s->authuser && authid.len
        && strcmp(buf_cstring(&authid), "<>")) {
        char *userid = NULL;

        if (!authserver_canon_userid(buf_cstring(&authid), &userid))
            s->txn_auth = acl_auth_new(userid,
                                       authserver_is_admin(userid));
        free(userid);
    }
    lmtpd_reply(s, "250 2.1.0 Ok");
done:
    buf_free(&path);
    buf_free(&authid);
}

/* RCPT TO:<path> [IGNOREQUOTA] */
static void cmd_rcpt(struct lmtpd *s, const char *args)
{
    struct buf path = BUF_INITIALIZER;
    struct buf reply = BUF_INITIALIZER;
    struct lmtpd_rcpt rc;
    const char *p;
    int ignorequota = 0;

    if (!s->has_mail) {
        lmtpd_reply(s, "503 5.5.1 Need MAIL command first");
        goto done;
    }
    p = skip_keyword(args, "TO:");
    if (!p || parse_path(&p, &path) || !path.len) {
        lmtpd_reply(s, "501 5.5.4 Syntax: RCPT TO:<address>");
        goto done;
    }
    while (*p == ' ') {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        if (!strncasecmp(p, "IGNOREQUOTA", 11)
            && (!p[11] || p[11] == ' ')) {
            ignorequota = 1;
            p += 11;
        }
        else {
            lmtpd_reply(s, "555 5.5.4 Unsupported RCPT parameter");
            goto done;
        }
    }
    if (*p) {
        lmtpd_reply(s, "501 5.5.4 Syntax: RCPT TO:<address>");
        goto done;
    }
    if (s->nrcpt >= LMTPD_RCPT_MAX) {
        lmtpd_reply(s, "452 4.5.3 Too many recipients");
        goto done;
    }
    memset(&rc, 0, sizeof(rc));
    if (lmtpd_rcpt_check(s, buf_cstring(&path), ignorequota, &rc,
                         &reply)) {
        xsyslog(LOG_INFO, "recipient refused", "rcpt=%s reply=%s",
                log_escape(buf_cstring(&path), 256),
                log_escape(buf_cstring(&reply), 128));
        lmtpd_reply(s, "%s", buf_cstring(&reply));
        goto done;
    }
    if (s->nrcpt == s->rcpt_alloc) {
        s->rcpt_alloc = s->rcpt_alloc ? 2 * s->rcpt_alloc : 8;
        s->rcpts = xrealloc(s->rcpts, s->rcpt_alloc * sizeof(*s->rcpts));
    }
    s->rcpts[s->nrcpt++] = rc;
    lmtpd_reply(s, "250 2.1.5 Ok");
done:
    buf_free(&path);
    buf_free(&reply);
}

/* The trace fields put above the message: Return-Path (RFC 5321 4.4)
 * and Received with the RFC 3848 protocol name and our session id. */
static void trace_fields(struct lmtpd *s, struct buf *out)
{
    char date[64];
    const char *with;

    if (s->tls)
        with = s->authuser ? "LMTPSA" : "LMTPS";
    else
        with = s->authuser ? "LMTPA" : "LMTP";
    if (times_format_rfc5322_local(date, sizeof(date), time(NULL)))
        date[0] = '\0';
    buf_printf(out, "Return-Path: <%s>\r\n", s->from);
    buf_printf(out, "Received: from %s (%s)\r\n"
                    "\tby %s (Columba lmtpd) with %s id %s;\r\n"
                    "\t%s\r\n",
               s->lhlo, s->client_host, authserver_servername(), with,
               log_session_id() ? log_session_id() : "-", date);
}

/* Create `path` for the spool.  Returns 0 with the descriptor. */
static int spool_open(const char *path, int *fd_r)
{
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);

    if (fd < 0) {
        xsyslog_syscall("open", "path", path);
        return ERR_IO;
    }
    *fd_r = fd;
    return 0;
}

/* Make the staging file for this transaction on the partition of the
 * first recipient (so hard links reach its mailboxes), else in
 * {configdirectory}/stage. (the append layer then copies).  Returns 0
 * with an open descriptor and the path. */
static int spool_create(struct lmtpd *s, struct buf *path, int *fd_r)
{
    static unsigned seq;
    int r;

    r = append_stage_path(s->rcpts[0].partition, path);
    if (!r)
        r = spool_open(buf_cstring(path), fd_r);
    if (!r)
        return 0;

    buf_reset(path);
    buf_printf(path, "%s/stage.", config_dir());
    r = util_mkdir_p(buf_cstring(path));
    if (r)
        return r;
    buf_printf(path, "/lmtp.%ld.%u.%ld", (long)getpid(), ++seq,
               (long)time(NULL));
    return spool_open(buf_cstring(path), fd_r);
}

/* Answer every recipient with the same reply. */
static void reply_all(struct lmtpd *s, const char *reply)
{
    size_t i;

    for (i = 0; i < s->nrcpt; i++)
        lmtpd_reply(s, "%s", reply);
}

/* DATA: spool once, then deliver per recipient. */
static void cmd_data(struct lmtpd *s)
{
    struct buf path = BUF_INITIALIZER;
    struct buf prefix = BUF_INITIALIZER;
    struct lmtp_spool sp;
    int fd = -1;
    int r;

    memset(&sp, 0, sizeof(sp));
    if (!s->has_mail) {
        lmtpd_reply(s, "503 5.5.1 Need MAIL command first");
        return;
    }
    if (!s->nrcpt) {
        lmtpd_reply(s, "503 5.5.1 No valid recipients");
        return;
    }
    r = spool_create(s, &path, &fd);
    if (r) {
        xsyslog(LOG_ERR, "cannot create spool file", "error=%s",
                error_message(r));
        lmtpd_reply(s, "451 4.3.0 Cannot create spool file");
        goto done;
    }
    trace_fields(s, &prefix);
    lmtpd_reply(s, "354 Go ahead, end with <CRLF>.<CRLF>");
    prot_flush(s->out);

    r = lmtp_spool_read(s->in, fd, buf_cstring(&prefix),
                        lmtpd_max_message,
                        config_getswitch(IMAPOPT_MUNGE8BIT)
                        ? LMTP_SPOOL_MUNGE_8BIT : 0, &sp);
    if (r) {
        xsyslog(LOG_INFO, "connection lost during DATA", "error=%s",
                error_message(r));
        s->logout = 1;
        goto done;
    }
    if (sp.is_toobig) {
        xsyslog(LOG_INFO, "message too big", "size=%llu max=%llu",
                (unsigned long long)sp.size,
                (unsigned long long)lmtpd_max_message);
        reply_all(s, "552 5.3.4 Message size exceeds fixed limit");
    }
    else if (sp.has_nul) {
        reply_all(s, "554 5.6.0 Message contains NUL characters");
    }
    else if (sp.has_8bit_header && config_getswitch(IMAPOPT_REJECT8BIT)) {
        reply_all(s, "554 5.6.0 Message contains 8-bit characters in the"
                     " header");
    }
    else if (sp.write_error) {
        errno = sp.write_error;
        xsyslog_syscall("write", "path", buf_cstring(&path));
        reply_all(s, "451 4.3.0 Cannot write spool file");
    }
    else {
        lmtpd_deliver(s, buf_cstring(&path), &sp);
    }

done:
    if (fd >= 0) {
        close(fd);
        if (unlink(buf_cstring(&path)) && errno != ENOENT)
            xsyslog_syscall("unlink", "path", buf_cstring(&path));
    }
    lmtp_spool_fini(&sp);
    buf_free(&path);
    buf_free(&prefix);
    txn_reset(s);
}

/* Finish a successful SASL exchange: set up the session's user. */
static void auth_success(struct lmtpd *s, const char *mech)
{
    const void *val = NULL;
    char *userid = NULL;
    char *msg = NULL;

    if (sasl_getprop(s->sasl, SASL_USERNAME, &val) != SASL_OK || !val
        || authserver_canon_userid(val, &userid)) {
        lmtpd_reply(s, "535 5.7.8 Authentication credentials invalid");
        return;
    }
    if (authserver_check_deny(userid, service_name(), &msg)) {
        lmtpd_reply(s, "535 5.7.8 %s", msg ? msg : "Access denied");
        free(msg);
        free(userid);
        return;
    }
    s->authuser = userid;
    acl_auth_free(&s->auth);
    s->auth = acl_auth_new(userid, authserver_is_admin(userid));
    xsyslog(LOG_NOTICE, "login", "user=%s mech=%s", log_escape(userid, 0),
            log_escape(mech, 32));
    lmtpd_reply(s, "235 2.7.0 Authentication successful");
}

/* Decode a base64 client response ("=" is an empty one) into a new
 * buffer.  Returns 0, or -1 with the reply queued. */
static int auth_decode(struct lmtpd *s, const char *b64, char **out_r,
                       unsigned *len_r)
{
    size_t len = strlen(b64);
    unsigned cap = (unsigned)(len / 4 * 3 + 4);

    if (len > LMTPD_AUTH_LINE_MAX) {
        lmtpd_reply(s, "500 5.5.6 Authentication exchange line too long");
        return -1;
    }
    *out_r = xzmalloc(cap);
    *len_r = 0;
    if (!strcmp(b64, "="))
        return 0;
    if (sasl_decode64(b64, (unsigned)len, *out_r, cap, len_r) != SASL_OK) {
        xzero_secret(*out_r, cap);
        free(*out_r);
        *out_r = NULL;
        lmtpd_reply(s, "501 5.5.2 Cannot decode response");
        return -1;
    }
    return 0;
}

/* Send a 334 challenge and read the client's answer into *in_r.
 * Returns 0, -1 (cancelled or bad; reply queued) or -2 (connection
 * gone). */
static int auth_challenge(struct lmtpd *s, const char *out, unsigned outlen,
                          char **in_r, unsigned *inlen_r)
{
    struct buf enc = BUF_INITIALIZER;
    struct buf line = BUF_INITIALIZER;
    unsigned cap = outlen / 3 * 4 + 8;
    unsigned enclen = 0;
    int toolong = 0;
    int r = -1;

    buf_ensure(&enc, cap);
    if (sasl_encode64(out ? out : "", outlen, enc.s, cap, &enclen)
        != SASL_OK) {
        lmtpd_reply(s, "454 4.7.0 Temporary authentication failure");
        goto done;
    }
    enc.len = enclen;
    lmtpd_reply(s, "334 %s", buf_cstring(&enc));
    if (prot_getline(s->in, &line, LMTPD_AUTH_LINE_MAX, &toolong)) {
        r = -2;
        goto done;
    }
    if (toolong) {
        lmtpd_reply(s, "500 5.5.6 Authentication exchange line too long");
        goto done;
    }
    if (!strcmp(buf_cstring(&line), "*")) {
        lmtpd_reply(s, "501 5.7.0 Authentication cancelled");
        goto done;
    }
    r = auth_decode(s, buf_cstring(&line), in_r, inlen_r);
done:
    buf_free(&enc);
    if (line.s)
        xzero_secret(line.s, line.alloc);
    buf_free(&line);
    return r;
}

/* AUTH mechanism [initial-response] (RFC 4954). */
static void cmd_auth(struct lmtpd *s, const char *args)
{
    struct buf mech = BUF_INITIALIZER;
    const char *sp = strchr(args, ' ');
    const char *out = NULL;
    unsigned outlen = 0;
    char *in = NULL;
    unsigned inlen = 0;
    int is_started = 0;
    int r;

    if (s->authuser || s->has_mail) {
        lmtpd_reply(s, s->authuser ? "503 5.5.1 Already authenticated"
                    : "503 5.5.1 AUTH not allowed during a transaction");
        goto done;
    }
    buf_setmap(&mech, args, sp ? (size_t)(sp - args) : strlen(args));
    if (!s->sasl || !mech.len
        || !authserver_mech_offered(s->sasl, buf_cstring(&mech))) {
        lmtpd_reply(s, "504 5.5.4 Unrecognized authentication type");
        goto done;
    }
    if (sp && auth_decode(s, sp + 1, &in, &inlen))
        goto done;

    is_started = 1;
    r = sasl_server_start(s->sasl, buf_cstring(&mech), in, inlen, &out,
                          &outlen);
    while (r == SASL_CONTINUE) {
        if (in)
            xzero_secret(in, inlen);
        free(in);
        in = NULL;
        r = auth_challenge(s, out, outlen, &in, &inlen);
        if (r == -2)
            s->logout = 1;
        if (r)
            goto done;
        r = sasl_server_step(s->sasl, in, inlen, &out, &outlen);
    }
    if (r != SASL_OK) {
        xsyslog(LOG_NOTICE, "authentication failed", "mech=%s error=%s",
                log_escape(buf_cstring(&mech), 32),
                sasl_errstring(r, NULL, NULL));
        authserver_failed_pause(s->out);
        lmtpd_reply(s, "535 5.7.8 Authentication credentials invalid");
        goto done;
    }
    auth_success(s, buf_cstring(&mech));
done:
    /* A cancelled, failed or refused exchange must not leave SASL in a
     * state the next AUTH could complete without credentials. */
    if (is_started && !s->authuser)
        sasl_setup(s);
    if (in)
        xzero_secret(in, inlen);
    free(in);
    buf_free(&mech);
}

/* A new SASL context for the connection's current protection. */
static void sasl_setup(struct lmtpd *s)
{
    if (s->sasl)
        sasl_dispose(&s->sasl);
    if (authserver_sasl_new(0, s->tls, &s->sasl)) {
        s->sasl = NULL;
        return;
    }
    authserver_sasl_secure(s->sasl, s->tls);
}

/* STARTTLS (RFC 3207): the session starts over after the handshake. */
static void cmd_starttls(struct lmtpd *s, const char *args)
{
    int r;

    if (*args) {
        lmtpd_reply(s, "501 5.5.4 STARTTLS takes no argument");
        return;
    }
    if (s->tls) {
        lmtpd_reply(s, "503 5.5.1 TLS already active");
        return;
    }
    if (!authserver_tls_available()) {
        lmtpd_reply(s, "454 4.7.0 TLS not available");
        return;
    }
    lmtpd_reply(s, "220 2.0.0 Ready to start TLS");
    r = authserver_tls_start(s->in, s->out, &s->tls);
    if (r) {
        s->logout = 1;
        return;
    }
    /* RFC 3207 4.2: nothing learnt before the handshake survives it,
     * the AUTH identity included. */
    txn_reset(s);
    free(s->lhlo);
    s->lhlo = NULL;
    free(s->authuser);
    s->authuser = NULL;
    acl_auth_free(&s->auth);
    s->auth = acl_auth_new(NULL, 0);
    sasl_setup(s);
}

/* Split a command line into its verb and arguments and run it. */
static void run_command(struct lmtpd *s, char *line)
{
    char *args = line + strcspn(line, " ");

    if (*args)
        *args++ = '\0';

    if (!strcasecmp(line, "LHLO"))
        cmd_lhlo(s, args);
    else if (!strcasecmp(line, "MAIL"))
        cmd_mail(s, args);
    else if (!strcasecmp(line, "RCPT"))
        cmd_rcpt(s, args);
    else if (!strcasecmp(line, "DATA") && !*args)
        cmd_data(s);
    else if (!strcasecmp(line, "RSET") && !*args) {
        txn_reset(s);
        lmtpd_reply(s, "250 2.0.0 Ok");
    }
    else if (!strcasecmp(line, "NOOP"))
        lmtpd_reply(s, "250 2.0.0 Ok");
    else if (!strcasecmp(line, "QUIT")) {
        lmtpd_reply(s, "221 2.0.0 Bye");
        s->logout = 1;
    }
    else if (!strcasecmp(line, "VRFY"))
        lmtpd_reply(s, "252 2.5.0 Send RCPT to find out");
    else if (!strcasecmp(line, "STARTTLS"))
        cmd_starttls(s, args);
    else if (!strcasecmp(line, "AUTH"))
        cmd_auth(s, args);
    else if (!strcasecmp(line, "HELO") || !strcasecmp(line, "EHLO"))
        lmtpd_reply(s, "500 5.5.1 This is LMTP: use LHLO");
    else if (!strcasecmp(line, "DATA") || !strcasecmp(line, "RSET"))
        lmtpd_reply(s, "501 5.5.4 No arguments allowed");
    else
        lmtpd_reply(s, "500 5.5.2 Unrecognized command");
}

/* Read and run one command.  Returns 0 to go on, -1 to end. */
static int run_one_command(struct lmtpd *s, int *errors)
{
    struct buf line = BUF_INITIALIZER;
    int toolong = 0;
    int r;

    r = prot_getline(s->in, &line, LMTPD_LINE_MAX, &toolong);
    if (r) {
        if (r == ERR_TIMEOUT)
            lmtpd_reply(s, "421 4.4.2 %s Idle timeout",
                        authserver_servername());
        buf_free(&line);
        return -1;
    }
    if (toolong) {
        lmtpd_reply(s, "500 5.5.2 Line too long");
        ++*errors;
    }
    else if (memchr(line.s ? line.s : "", '\0', line.len)) {
        lmtpd_reply(s, "500 5.5.2 NUL in command");
        ++*errors;
    }
    else {
        run_command(s, (char *)buf_cstring(&line));
    }
    /* It may have been AUTH with a password in its initial response. */
    if (line.s)
        xzero_secret(line.s, line.alloc);
    buf_free(&line);
    if (*errors >= LMTPD_MAX_ERRORS) {
        lmtpd_reply(s, "421 4.7.0 Too many errors");
        return -1;
    }
    return s->logout ? -1 : 0;
}

/* What the peer is, for Received; sets is_unix. */
static void peer_setup(struct lmtpd *s)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char host[INET6_ADDRSTRLEN];
    struct buf b = BUF_INITIALIZER;

    /* Trust follows from the listening socket's own family; a peer
     * that cannot be named (say, already gone) earns no trust. */
    memset(&ss, 0, sizeof(ss));
    if (getsockname(0, (struct sockaddr *)&ss, &len) == 0
        && ss.ss_family == AF_UNIX) {
        s->is_unix = 1;
        s->client_host = xstrdup("unix socket");
        return;
    }
    len = sizeof(ss);
    memset(&ss, 0, sizeof(ss));
    if (getpeername(0, (struct sockaddr *)&ss, &len) != 0)
        ss.ss_family = AF_UNSPEC;
    if (ss.ss_family == AF_INET
        && inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr,
                     host, sizeof(host))) {
        buf_printf(&b, "[%s]", host);
    }
    else if (ss.ss_family == AF_INET6
             && inet_ntop(AF_INET6,
                          &((struct sockaddr_in6 *)&ss)->sin6_addr,
                          host, sizeof(host))) {
        buf_printf(&b, "[IPv6:%s]", host);
    }
    else {
        buf_setcstr(&b, "unknown");
    }
    s->client_host = buf_release(&b);
}

int service_init(int argc, char **argv, char **envp)
{
    int64_t t;
    int opt, r;

    (void)envp;
    while ((opt = getopt(argc, argv, "C:U:sNa")) != -1) {
        if (opt == 'a')
            preauth_all = 1;
    }
    t = config_getbytesize(IMAPOPT_MAXMESSAGESIZE, 0);
    lmtpd_max_message = t > 0 ? (uint64_t)t : 0;
    lmtpd_sieve_init();

    r = mboxlist_open();
    if (r) {
        xsyslog(LOG_ERR, "cannot open mailbox list", "error=%s",
                error_message(r));
        return r;
    }
    return authserver_init("lmtp");
}

int service_main(int argc, char **argv, char **envp)
{
    struct lmtpd session;
    struct lmtpd *s = &session;
    struct buf sid = BUF_INITIALIZER;
    int errors = 0;

    (void)argc;
    (void)argv;
    (void)envp;
    memset(s, 0, sizeof(*s));
    log_new_session_id(&sid, "lmtp");
    log_set_session(buf_cstring(&sid), service_client_addr());
    buf_free(&sid);

    s->in = prot_new(0, 0);
    s->out = prot_new(1, 1);
    prot_settimeout(s->in, LMTPD_TIMEOUT);
    prot_setwritetimeout(s->out, LMTPD_TIMEOUT);
    prot_setflushonread(s->in, s->out);
    peer_setup(s);
    s->is_trusted = preauth_all || s->is_unix;
    s->auth = acl_auth_new(NULL, 0);

    xsyslog(LOG_INFO, "connection", "trusted=%d", s->is_trusted);
    if (service_implicit_tls
        && authserver_tls_start(s->in, s->out, &s->tls))
        goto done;
    sasl_setup(s);
    lmtpd_reply(s, "220 %s LMTP Columba lmtpd ready",
                authserver_servername());

    while (run_one_command(s, &errors) == 0)
        ;

done:
    xsyslog(LOG_INFO, "disconnect", "user=%s",
            s->authuser ? log_escape(s->authuser, 0) : "-");
    txn_reset(s);
    prot_flush(s->out);
    if (s->sasl)
        sasl_dispose(&s->sasl);
    if (s->tls)
        tls_shutdown(&s->tls);
    prot_free(&s->in);
    prot_free(&s->out);
    free(s->lhlo);
    free(s->client_host);
    free(s->authuser);
    acl_auth_free(&s->auth);
    duplicate_close();
    quota_close();
    log_set_session(NULL, NULL);
    return 0;
}

void service_abort(int code)
{
    duplicate_close();
    quota_close();
    mboxlist_close();
    exit(code);
}

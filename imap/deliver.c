/* deliver: the local delivery program for MTAs that pipe.  Reads one
 * message on standard input and hands it to lmtpd over the lmtpsocket
 * Unix socket; the exit code follows sysexits.h. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sysexits.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/prot.h"
#include "lib/strarray.h"
#include "lib/xmalloc.h"

static const char *progname = "deliver";

/* Seconds to wait for each reply of lmtpd (DATA replies wait for the
 * appends, so be generous). */
#define DELIVER_TIMEOUT 600
/* Longest reply line read. */
#define DELIVER_LINE_MAX 4096

/* What the command line asked for. */
struct options {
    const char *conf;
    const char *from;       /* -f / -r, NULL: <> */
    const char *authuser;   /* -a */
    const char *mailbox;    /* -m */
    int ignorequota;        /* -q */
};

/* The connection to lmtpd. */
struct lmtp_client {
    int fd;
    struct protstream *in;
    struct protstream *out;
    struct buf line;
};

static void usage(void)
{
    fprintf(stderr,
            "usage: %s [-C file] [-d] [-r address | -f address]"
            " [-m mailbox] [-a auth-id] [-q] [userid ...]\n", progname);
    exit(EX_USAGE);
}

/* Connect to the lmtpsocket.  Returns 0 or -1 (message printed). */
static int client_connect(struct lmtp_client *c)
{
    const char *path = config_getstring(IMAPOPT_LMTPSOCKET);
    struct sockaddr_un sun;

    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if (!path || strlen(path) >= sizeof(sun.sun_path)) {
        fprintf(stderr, "%s: lmtpsocket path unusable\n", progname);
        return -1;
    }
    memcpy(sun.sun_path, path, strlen(path) + 1);
    c->fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (c->fd < 0
        || connect(c->fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
        fprintf(stderr, "%s: cannot connect to %s: %s\n", progname, path,
                strerror(errno));
        return -1;
    }
    c->in = prot_new(c->fd, 0);
    c->out = prot_new(c->fd, 1);
    prot_settimeout(c->in, DELIVER_TIMEOUT);
    prot_setwritetimeout(c->out, DELIVER_TIMEOUT);
    prot_setflushonread(c->in, c->out);
    return 0;
}

/* Read one (possibly multi-line) reply; its last line stays in c->line.
 * Returns the reply code, or -1 when the connection failed. */
static int read_reply(struct lmtp_client *c)
{
    int toolong = 0;

    for (;;) {
        if (prot_getline(c->in, &c->line, DELIVER_LINE_MAX, &toolong))
            return -1;
        if (c->line.len < 3 || c->line.s[0] < '1' || c->line.s[0] > '5')
            return -1;
        if (c->line.len == 3 || c->line.s[3] != '-')
            break;
    }
    return atoi(buf_cstring(&c->line));
}

/* Send a command and read its reply code (-1 on failure). */
static int command(struct lmtp_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int command(struct lmtp_client *c, const char *fmt, ...)
{
    struct buf b = BUF_INITIALIZER;
    va_list ap;

    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    buf_appendcstr(&b, "\r\n");
    prot_write(c->out, b.s, b.len);
    buf_free(&b);
    return read_reply(c);
}

/* Write `s` as RFC 3461 xtext (for MAIL AUTH=). */
static void xtext(struct buf *out, const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;

        if (ch < 33 || ch > 126 || ch == '+' || ch == '=')
            buf_printf(out, "+%02X", ch);
        else
            buf_putc(out, (char)ch);
    }
}

/* Copy standard input as DATA: line ends become CRLF, lines starting
 * with "." get another, and the terminator follows.  Returns 0 or -1. */
static int send_body(struct lmtp_client *c)
{
    char buf[8192];
    int line_start = 1;
    int prev_cr = 0;
    ssize_t n, i;

    while ((n = read(0, buf, sizeof(buf))) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "%s: reading the message: %s\n", progname,
                    strerror(errno));
            return -1;
        }
        for (i = 0; i < n; i++) {
            char ch = buf[i];

            if (line_start && ch == '.')
                prot_putc(c->out, '.');
            if (ch == '\n' && !prev_cr)
                prot_putc(c->out, '\r');
            prot_putc(c->out, ch);
            line_start = ch == '\n';
            prev_cr = ch == '\r';
        }
    }
    if (!line_start) {
        if (!prev_cr)
            prot_putc(c->out, '\r');
        prot_putc(c->out, '\n');
    }
    prot_puts(c->out, ".\r\n");
    return prot_flush(c->out) ? -1 : 0;
}

/* The sysexits code for one negative recipient reply, and its rank
 * (higher wins when recipients fail differently). */
static int reply_exit(struct buf *line, int code, int *rank_r)
{
    const char *enh = line->len > 4 ? buf_cstring(line) + 4 : "";

    if (code >= 400 && code < 500) {
        *rank_r = 5;
        return EX_TEMPFAIL;
    }
    *rank_r = 4;
    if (!strncmp(enh, "5.1.", 4))
        return EX_NOUSER;
    if (!strncmp(enh, "5.7.", 4))
        return EX_NOPERM;
    if (!strncmp(enh, "5.6.", 4) || !strncmp(enh, "5.3.4", 5))
        return EX_DATAERR;
    return EX_UNAVAILABLE;
}

/* The exit code so far, updated with one negative recipient reply:
 * a temporary failure outranks a permanent one. */
struct outcome {
    int ex;
    int rank;
};

static void outcome_add(struct outcome *oc, const char *rcpt,
                        struct buf *line, int code)
{
    int rank, ex;

    fprintf(stderr, "%s: %s: %s\n", progname, rcpt,
            code < 0 ? "connection lost" : buf_cstring(line));
    if (code < 0) {
        rank = 6;
        ex = EX_TEMPFAIL;
    }
    else {
        ex = reply_exit(line, code, &rank);
    }
    if (rank > oc->rank) {
        oc->rank = rank;
        oc->ex = ex;
    }
}

/* Greeting, LHLO and MAIL.  Returns 0, or the exit code. */
static int start_transaction(struct lmtp_client *c, const struct options *o)
{
    struct buf mail = BUF_INITIALIZER;
    char host[256];
    int code;

    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    if (read_reply(c) != 220 || command(c, "LHLO %s", host) != 250) {
        fprintf(stderr, "%s: lmtpd refused the session: %s\n", progname,
                buf_cstring(&c->line));
        return EX_TEMPFAIL;
    }
    buf_printf(&mail, "MAIL FROM:<%s>", o->from ? o->from : "");
    if (o->authuser) {
        buf_appendcstr(&mail, " AUTH=");
        xtext(&mail, o->authuser);
    }
    code = command(c, "%s", buf_cstring(&mail));
    buf_free(&mail);
    if (code != 250) {
        fprintf(stderr, "%s: MAIL refused: %s\n", progname,
                buf_cstring(&c->line));
        return code >= 500 ? EX_DATAERR : EX_TEMPFAIL;
    }
    return 0;
}

/* Run the whole transaction.  Returns the exit code. */
static int deliver(const struct options *o, const strarray_t *rcpts)
{
    struct lmtp_client c;
    struct outcome oc = { EX_OK, 0 };
    int *accepted = xzmalloc(((size_t)rcpts->count + 1) * sizeof(int));
    int code, nacc = 0, i;

    memset(&c, 0, sizeof(c));
    c.fd = -1;
    if (client_connect(&c)) {
        oc.ex = EX_TEMPFAIL;
        goto done;
    }
    code = start_transaction(&c, o);
    if (code) {
        oc.ex = code;
        goto done;
    }
    for (i = 0; i < rcpts->count; i++) {
        code = command(&c, "RCPT TO:<%s>%s", strarray_nth(rcpts, i),
                       o->ignorequota ? " IGNOREQUOTA" : "");
        if (code == 250) {
            accepted[i] = 1;
            nacc++;
            continue;
        }
        outcome_add(&oc, strarray_nth(rcpts, i), &c.line, code);
        if (code < 0)
            goto done;
    }
    if (!nacc)
        goto done;
    if (command(&c, "DATA") != 354) {
        fprintf(stderr, "%s: DATA refused: %s\n", progname,
                buf_cstring(&c.line));
        oc.ex = EX_TEMPFAIL;
        goto done;
    }
    if (send_body(&c)) {
        oc.ex = EX_TEMPFAIL;
        goto done;
    }
    /* One reply per accepted recipient (RFC 2033 4.2). */
    for (i = 0; i < rcpts->count; i++) {
        if (!accepted[i])
            continue;
        code = read_reply(&c);
        if (code == 250)
            continue;
        outcome_add(&oc, strarray_nth(rcpts, i), &c.line, code);
        if (code < 0)
            goto done;
    }
    command(&c, "QUIT");

done:
    prot_free(&c.in);
    prot_free(&c.out);
    if (c.fd >= 0)
        close(c.fd);
    buf_free(&c.line);
    free(accepted);
    return oc.ex;
}

/* "user+mailbox" (malloc'd). */
static char *plus_address(const char *user, const char *mailbox)
{
    struct buf b = BUF_INITIALIZER;

    buf_printf(&b, "%s+%s", user, mailbox);
    return buf_release(&b);
}

/* May `s` go between < and > on a command line? */
static int is_path_safe(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s <= ' ' || *s == '<' || *s == '>'
            || (unsigned char)*s == 0x7f)
            return 0;
    }
    return 1;
}

int main(int argc, char **argv)
{
    struct options o;
    strarray_t rcpts = STRARRAY_INITIALIZER;
    const char *err = NULL;
    int opt, i, r;

    memset(&o, 0, sizeof(o));
    signal(SIGPIPE, SIG_IGN);
    while ((opt = getopt(argc, argv, "C:dDr:f:m:a:ql")) != -1) {
        switch (opt) {
        case 'C': o.conf = optarg; break;
        case 'd':
        case 'D': break;    /* ignored, as for /bin/mail */
        case 'r':
        case 'f': o.from = optarg; break;
        case 'm': o.mailbox = optarg; break;
        case 'a': o.authuser = optarg; break;
        case 'q': o.ignorequota = 1; break;
        case 'l':
            fprintf(stderr, "%s: -l (LMTP on standard input) is not"
                    " supported; connect to lmtpd instead\n", progname);
            return EX_USAGE;
        default: usage();
        }
    }
    r = config_read(o.conf, NULL, &err);
    if (r) {
        fprintf(stderr, "%s: cannot read configuration: %s\n", progname,
                err ? err : error_message(r));
        return EX_CONFIG;
    }
    log_open(config_getstring(IMAPOPT_SYSLOG_PREFIX), progname, 0, 0);
    if ((o.from && !is_path_safe(o.from))
        || (o.mailbox && !is_path_safe(o.mailbox))) {
        fprintf(stderr, "%s: bad address or mailbox\n", progname);
        return EX_USAGE;
    }

    /* user, user+mailbox (the folder, else the INBOX), or, with no
     * user, postuser+mailbox (a shared mailbox). */
    for (i = optind; i < argc; i++) {
        if (!argv[i][0] || !is_path_safe(argv[i]))
            usage();
        if (o.mailbox)
            strarray_appendm(&rcpts, plus_address(argv[i], o.mailbox));
        else
            strarray_append(&rcpts, argv[i]);
    }
    if (!rcpts.count) {
        if (!o.mailbox)
            usage();
        const char *postuser = config_getstring(IMAPOPT_POSTUSER);

        strarray_appendm(&rcpts, plus_address(postuser ? postuser : "",
                                              o.mailbox));
    }
    r = deliver(&o, &rcpts);
    strarray_fini(&rcpts);
    return r;
}

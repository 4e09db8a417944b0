/* Logging through syslog(3) in the project's form: a short event text
 * followed by key=value context, every line of a session tagged with its
 * session id.  A developer instance also copies lines to stderr. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/times.h"
#include "lib/util.h"
#include "lib/xmalloc.h"

#define DEFAULT_PREFIX "columba"
#define DEFAULT_FACILITY LOG_LOCAL6
/* syslog daemons cut long lines anyway; cut them ourselves, visibly. */
#define LOG_LINE_MAX 4096
/* log_escape() hands out this many buffers in turn, so one log call can
 * escape several values. */
#define ESCAPE_SLOTS 4
#define ESCAPE_BUF_SIZE (LOG_ESCAPE_MAX * 4 + sizeof("..."))

static char ident[128] = DEFAULT_PREFIX;
static char *session_id;
static char *session_addr;

void log_open(const char *syslog_prefix, const char *program,
              int facility, int to_stderr)
{
    const char *slash;

    if (!syslog_prefix || !*syslog_prefix)
        syslog_prefix = DEFAULT_PREFIX;
    if (!program || !*program)
        program = "unknown";
    slash = strrchr(program, '/');
    if (slash && slash[1])
        program = slash + 1;

    /* openlog() keeps our pointer: close before rewriting the ident.
     * An over-long ident is simply cut. */
    closelog();
    snprintf(ident, sizeof(ident), "%s/%s", syslog_prefix, program);
    openlog(ident, LOG_PID | LOG_NDELAY | (to_stderr ? LOG_PERROR : 0),
            facility ? facility : DEFAULT_FACILITY);
}

const char *log_ident(void)
{
    return ident;
}

void log_set_session(const char *id, const char *client_addr)
{
    xfree(session_id);
    xfree(session_addr);
    if (!id)
        return;
    session_id = xstrdup(id);
    session_addr = xstrdupnull(client_addr);
}

const char *log_session_id(void)
{
    return session_id;
}

void log_new_session_id(struct buf *buf, const char *program)
{
    static unsigned long counter;
    unsigned char rnd[6];
    const char *p;

    if (!program || !*program) {
        p = strchr(ident, '/');
        program = p ? p + 1 : ident;
    }
    buf_reset(buf);

    /* Keep ids one token: anything odd in the name becomes '_'. */
    for (p = program; *p; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
                 || (c >= '0' && c <= '9') || c == '_' || c == '.';
        buf_putc(buf, ok ? c : '_');
    }
    buf_printf(buf, "-%ld-%lu-", (long)getpid(), ++counter);

    if (util_random_bytes(rnd, sizeof(rnd))) {
        /* No kernel randomness: the clock still keeps ids apart. */
        int64_t t = times_monotonic_usec();
        memcpy(rnd, &t, sizeof(rnd));
    }
    util_hex_encode(rnd, sizeof(rnd), buf);
}

/* Replace control bytes so one event stays one line, and cut overlong
 * lines with a visible "...". */
static void sanitize_line(struct buf *line)
{
    size_t i;

    if (line->len > LOG_LINE_MAX) {
        buf_truncate(line, LOG_LINE_MAX - 3);
        buf_appendcstr(line, "...");
    }
    for (i = 0; i < line->len; i++) {
        unsigned char c = (unsigned char)line->s[i];
        if (c < 0x20 || c == 0x7f)
            line->s[i] = '?';
    }
}

void xvsyslog(int priority, const char *event, const char *fmt, va_list ap)
{
    struct buf line = BUF_INITIALIZER;
    int saved_errno = errno;

    buf_appendcstr(&line, event ? event : "(no event)");
    if (session_id) {
        buf_printf(&line, " session=%s", session_id);
        if (session_addr)
            buf_printf(&line, " addr=%s", session_addr);
    }
    if (fmt && *fmt) {
        size_t before = line.len;
        buf_putc(&line, ' ');
        errno = saved_errno;     /* so %m in fmt names the caller's error */
        buf_vprintf(&line, fmt, ap);
        if (line.len == before + 1)
            buf_truncate(&line, before);    /* context came out empty */
    }
    sanitize_line(&line);
    syslog(priority, "%s", buf_cstring(&line));
    buf_free(&line);
    errno = saved_errno;
}

void xsyslog(int priority, const char *event, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    xvsyslog(priority, event, fmt, ap);
    va_end(ap);
}

void xsyslog_syscall(const char *call, const char *key, const char *object)
{
    int saved_errno = errno;
    char event[64];

    snprintf(event, sizeof(event), "%s failed", call ? call : "system call");
    if (key && object)
        xsyslog(LOG_ERR, event, "%s=%s error=%s", key,
                log_escape(object, 0), strerror(saved_errno));
    else
        xsyslog(LOG_ERR, event, "error=%s", strerror(saved_errno));
    errno = saved_errno;
}

const char *log_escape(const char *s, size_t maxlen)
{
    static const char hex[] = "0123456789ABCDEF";
    static char slots[ESCAPE_SLOTS][ESCAPE_BUF_SIZE];
    static int next;
    char *out = slots[next];
    size_t i, o = 0;

    next = (next + 1) % ESCAPE_SLOTS;
    if (!s)
        return "(null)";
    if (!maxlen || maxlen > LOG_ESCAPE_MAX)
        maxlen = LOG_ESCAPE_MAX;

    for (i = 0; s[i] && i < maxlen; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c > 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '=') {
            out[o++] = (char)c;
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 0xf];
        }
    }
    if (s[i]) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

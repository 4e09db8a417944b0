/* echod: a tiny line-echo service for the master's end-to-end tests.  It
 * links the real service loop, so the tests exercise prefork, status
 * reporting, privilege dropping and maxuse exactly as daemons do. */
/* Columba is free software; see COPYING for the licence. */

/*
 * Protocol (one command per line, CRLF or LF, at most 1000 bytes):
 *   greeting   "+OK echod service=<name> pid=<pid>"
 *   PID        "PID <pid> <ppid>"
 *   UID        "UID <uid> <gid> <euid> <egid> <ngroups>"
 *   SLEEP n    sleeps n seconds (0-60), then "SLEPT n"
 *   CRASH      abort()s the child
 *   QUIT       "BYE", the child takes the next connection
 *   EXIT       "BYE", the child exits after this connection
 *   anything else is echoed back as "ECHO <line>"
 * Option -A makes service_init abort (a service that crashes on start).
 */

#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "lib/log.h"
#include "master/service.h"

#define LINE_MAX_LEN 1000

static int write_line(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static int write_line(const char *fmt, ...)
{
    char line[LINE_MAX_LEN + 64];
    va_list ap;
    size_t off = 0;
    int len;

    va_start(ap, fmt);
    len = vsnprintf(line, sizeof(line) - 2, fmt, ap);
    va_end(ap);
    if (len < 0)
        return -1;
    if ((size_t)len > sizeof(line) - 3)
        len = sizeof(line) - 3;
    line[len++] = '\r';
    line[len++] = '\n';
    while (off < (size_t)len) {
        ssize_t n = write(1, line + off, len - off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        off += n;
    }
    return 0;
}

/* Read one line into `line` (without CR/LF).  Returns its length, -1 at
 * end of input, -2 when it was longer than the limit (and discarded). */
static int read_line(char *buf, size_t *have, char *line)
{
    for (;;) {
        char *nl = memchr(buf, '\n', *have);
        ssize_t n;

        if (nl) {
            size_t len = nl - buf;
            int too_long = len > LINE_MAX_LEN;

            if (!too_long) {
                memcpy(line, buf, len);
                if (len && line[len - 1] == '\r')
                    len--;
                line[len] = '\0';
            }
            *have -= (nl + 1 - buf);
            memmove(buf, nl + 1, *have);
            return too_long ? -2 : (int)len;
        }
        if (*have > LINE_MAX_LEN) {
            *have = 0;          /* drop the overlong start */
            buf[0] = '\0';
            return -2;
        }
        n = read(0, buf + *have, LINE_MAX_LEN * 2 - *have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        *have += n;
    }
}

int service_init(int argc, char **argv, char **envp)
{
    int opt;

    (void)envp;
    while ((opt = getopt(argc, argv, "C:U:sNA")) != -1) {
        if (opt == 'A')
            abort();
    }
    return 0;
}

int service_main(int argc, char **argv, char **envp)
{
    char buf[LINE_MAX_LEN * 2 + 1];
    char line[LINE_MAX_LEN + 1];
    size_t have = 0;
    int len;

    (void)argc;
    (void)argv;
    (void)envp;
    write_line("+OK echod service=%s pid=%d", service_name(), (int)getpid());
    while ((len = read_line(buf, &have, line)) != -1) {
        if (len == -2) {
            write_line("ERR line too long");
            continue;
        }
        if (!strcasecmp(line, "PID"))
            write_line("PID %d %d", (int)getpid(), (int)getppid());
        else if (!strcasecmp(line, "UID"))
            write_line("UID %d %d %d %d %d", (int)getuid(), (int)getgid(),
                       (int)geteuid(), (int)getegid(), getgroups(0, NULL));
        else if (!strncasecmp(line, "SLEEP ", 6)) {
            int secs = atoi(line + 6);

            if (secs < 0 || secs > 60)
                secs = 0;
            sleep(secs);
            write_line("SLEPT %d", secs);
        }
        else if (!strcasecmp(line, "CRASH"))
            abort();
        else if (!strcasecmp(line, "QUIT") || !strcasecmp(line, "EXIT")) {
            write_line("BYE");
            return !strcasecmp(line, "EXIT");
        }
        else
            write_line("ECHO %s", line);
    }
    return 0;
}

void service_abort(int code)
{
    exit(code);
}

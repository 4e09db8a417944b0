/* The service-child loop every daemon links: main() reads the
 * configuration, calls the daemon's service_init(), then accepts one
 * connection at a time on the master's socket and calls service_main(),
 * reporting idle/busy to the master over the status pipe. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#include "lib/privs.h"
#include "master/service.h"

int service_implicit_tls = 0;

static const char *config_path;
static const char *prog_name = "service";
static char *svc_name;
static long maxuse = SERVICE_DEFAULT_MAXUSE;
static volatile sig_atomic_t got_sighup;
static char client_addr[INET6_ADDRSTRLEN + 16];
static int has_client;

const char *service_name(void)
{
    return svc_name ? svc_name : prog_name;
}

const char *service_config_path(void)
{
    return config_path;
}

const char *service_client_addr(void)
{
    return has_client ? client_addr : NULL;
}

/* Pick out the loop's own options, leaving argv untouched for the
 * daemon.  Only exact option words are recognised, so daemon options
 * with arguments are never mistaken for ours unless spelt the same. */
static void parse_loop_options(int argc, char **argv)
{
    int i;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (!strcmp(a, "--"))
            break;
        if (!strcmp(a, "-C") && i + 1 < argc)
            config_path = argv[++i];
        else if (!strncmp(a, "-C", 2) && a[2])
            config_path = a + 2;
        else if ((!strcmp(a, "-U") && i + 1 < argc) ||
                 (!strncmp(a, "-U", 2) && a[2])) {
            const char *v = a[2] ? a + 2 : argv[++i];
            char *end;
            long n = strtol(v, &end, 10);

            if (*end || n < 1)
                fatal("service: -U needs a positive number", EX_FATAL_CONFIG);
            maxuse = n;
        }
        else if (!strcmp(a, "-s"))
            service_implicit_tls = 1;
    }
}

static void sighup_handler(int sig)
{
    (void)sig;
    got_sighup = 1;
}

/* SIGHUP asks the child to exit once its current connection is done;
 * SA_RESTART keeps it from disturbing a session in progress. */
static void setup_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = sighup_handler;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGHUP, &sa, NULL);
}

static void loop_fatal_hook(const char *msg, int code)
{
    (void)msg;
    service_report_status(SERVICE_STATUS_EXITING);
    service_abort(code);
}

/* A daemon started as root by hand must not serve anyone as root. */
static void ensure_unprivileged(void)
{
    struct buf why = BUF_INITIALIZER;
    struct privs p;

    if (geteuid() != 0)
        return;
    if (privs_lookup(config_getstring(IMAPOPT_CYRUS_USER),
                     config_getstring(IMAPOPT_CYRUS_GROUP), &p, &why) ||
        privs_drop(&p, &why)) {
        xsyslog(LOG_ERR, "cannot drop privileges", "error=%s",
                buf_cstring(&why));
        fatal(buf_cstring(&why), EX_FATAL_CONFIG);
    }
    privs_fini(&p);
    buf_free(&why);
}

/* Wait for a connection on the listening socket.  Returns the accepted
 * descriptor, or -1 when the child should exit (idle timeout, SIGHUP,
 * the master went away). */
static int wait_for_connection(void)
{
    const struct timespec idle = { SERVICE_DEFAULT_IDLE_TIMEOUT, 0 };
    struct pollfd pfd[2];
    sigset_t hup, old;
    int saved_errno;
    int fd;
    int n;

    sigemptyset(&hup);
    sigaddset(&hup, SIGHUP);
    for (;;) {
        /* SIGHUP stays blocked from the check until ppoll() unblocks it
         * atomically: one landing in between would otherwise leave us
         * waiting (and accepting on a retired listener) until idle. */
        sigprocmask(SIG_BLOCK, &hup, &old);
        if (got_sighup) {
            sigprocmask(SIG_SETMASK, &old, NULL);
            return -1;
        }
        pfd[0].fd = SERVICE_LISTEN_FD;
        pfd[0].events = POLLIN;
        pfd[1].fd = SERVICE_STATUS_FD;
        pfd[1].events = 0;      /* POLLERR once the master closed its end */
        pfd[0].revents = pfd[1].revents = 0;
        n = ppoll(pfd, 2, &idle, &old);
        saved_errno = errno;
        sigprocmask(SIG_SETMASK, &old, NULL);
        errno = saved_errno;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            xsyslog_syscall("poll", "fd", "listen");
            return -1;
        }
        if (n == 0)
            return -1;
        if (pfd[1].revents & (POLLERR | POLLHUP))
            return -1;
        if (pfd[0].revents & POLLNVAL)
            fatal("service: no listening socket on fd 3", EX_FATAL_SOFTWARE);
        if (!(pfd[0].revents & (POLLIN | POLLERR | POLLHUP)))
            continue;

        /* The socket is non-blocking and shared: another child may
         * have taken this connection first. */
        fd = accept4(SERVICE_LISTEN_FD, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0)
            return fd;
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
            errno == ECONNABORTED || errno == EPROTO)
            continue;
        xsyslog_syscall("accept", "fd", "listen");
        return -1;
    }
}

/* Describe the peer of `fd` into client_addr. */
static void format_peer(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char host[INET6_ADDRSTRLEN];
    const void *addr = NULL;
    int port = 0;

    xstrlcpy(client_addr, "unknown", sizeof(client_addr));
    if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0)
        return;
    if (ss.ss_family == AF_INET) {
        addr = &((struct sockaddr_in *)&ss)->sin_addr;
        port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    else if (ss.ss_family == AF_INET6) {
        addr = &((struct sockaddr_in6 *)&ss)->sin6_addr;
        port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    else {
        xstrlcpy(client_addr, "unix", sizeof(client_addr));
        return;
    }
    if (!inet_ntop(ss.ss_family, addr, host, sizeof(host)))
        return;
    snprintf(client_addr, sizeof(client_addr),
             ss.ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d", host, port);
}

/* Put /dev/null on fds 0 and 1, closing any connection there. */
static void reset_stdio(void)
{
    int fd = open("/dev/null", O_RDWR);

    if (fd < 0)
        fatal("service: cannot open /dev/null", EX_FATAL_OSERR);
    dup2(fd, 0);
    dup2(fd, 1);
    if (fd > 1)
        close(fd);
}

/* Serve one connection; returns service_main's result. */
static int serve(int fd, int argc, char **argv, char **envp)
{
    struct buf sid = BUF_INITIALIZER;
    int one = 1;
    int r;

    format_peer(fd);
    has_client = 1;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    if (dup2(fd, 0) < 0 || dup2(fd, 1) < 0)
        fatal("service: dup2 of the connection failed", EX_FATAL_OSERR);
    close(fd);

    log_new_session_id(&sid, prog_name);
    log_set_session(buf_cstring(&sid), client_addr);
    xsyslog(LOG_DEBUG, "connection accepted", NULL);

    r = service_main(argc, argv, envp);

    fflush(stdout);
    reset_stdio();
    log_set_session(NULL, NULL);
    has_client = 0;
    buf_free(&sid);
    return r;
}

int main(int argc, char **argv, char **envp)
{
    const char *err = NULL;
    const char *slash;
    const char *env;
    long uses = 0;
    int fd;

    /* Step 1: who we are, and the options that belong to the loop. */
    if (argc > 0 && argv[0]) {
        slash = strrchr(argv[0], '/');
        prog_name = slash ? slash + 1 : argv[0];
    }
    env = getenv(SERVICE_ENV_NAME);
    if (env && *env)
        svc_name = xstrdup(env);
    parse_loop_options(argc, argv);
    setup_signals();

    /* Step 2: configuration and log, then shed root before any daemon
     * code runs. */
    if (config_read(config_path, svc_name, &err))
        fatal(err ? err : "cannot read configuration", EX_FATAL_CONFIG);
    env = getenv(SERVICE_ENV_LOG_STDERR);
    log_open(config_getstring(IMAPOPT_SYSLOG_PREFIX), prog_name, 0,
             env && !strcmp(env, "1"));
    ensure_unprivileged();
    fatal_set_hook(loop_fatal_hook);

    /* Step 3: the daemon's own set-up, with a fresh getopt. */
    optind = 1;
    if (service_init(argc, argv, envp) != 0)
        fatal("service_init failed", EX_FATAL_SOFTWARE);

    /* Step 4: one connection at a time until maxuse, idleness, SIGHUP or
     * the daemon asks to stop. */
    while (!got_sighup && uses < maxuse) {
        service_report_status(SERVICE_STATUS_IDLE);
        fd = wait_for_connection();
        if (fd < 0)
            break;
        service_report_status(SERVICE_STATUS_BUSY);
        uses++;
        if (serve(fd, argc, argv, envp) != 0)
            break;
    }

    service_report_status(SERVICE_STATUS_EXITING);
    service_abort(0);
}

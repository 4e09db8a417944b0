/* master: the supervisor.  Reads cyrus.conf, runs START, binds every
 * service, starts daemons and events, keeps each service's idle children
 * ready, and handles SIGHUP (reload) and SIGTERM/SIGINT (stop). */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#include "master/master.h"

#define DEFAULT_BACKLOG 32

struct master master;

static int sig_pipe[2] = { -1, -1 };
static pid_t master_pid;
static char *pid_file;
static char *ready_file;
static int pid_fd = -1;
static int wrote_ready;
static int log_opened;

static void usage(void)
{
    fprintf(stderr,
            "usage: master [-C imapd.conf] [-M cyrus.conf] [-p pidfile]\n"
            "              [-l backlog] [-L logfile] [-d | -D] [-V]\n");
    exit(EX_FATAL_CONFIG);
}

/* Signals only leave a byte in a pipe; the loop does the work. */
static void sig_handler(int sig)
{
    int saved = errno;
    unsigned char c = (unsigned char)sig;

    if (write(sig_pipe[1], &c, 1) < 0) {
        /* A full pipe already holds a wake-up; nothing is lost. */
    }
    errno = saved;
}

static void setup_signals(void)
{
    static const int sigs[] = { SIGCHLD, SIGHUP, SIGTERM, SIGINT };
    struct sigaction sa;
    size_t i;

    if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
        fatal("cannot create the signal pipe", EX_FATAL_OSERR);
    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = sig_handler;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    for (i = 0; i < sizeof(sigs) / sizeof(*sigs); i++)
        sigaction(sigs[i], &sa, NULL);
}

/* Remove the files this master created (never another master's). */
static void remove_files(void)
{
    if (ready_file && wrote_ready)
        unlink(ready_file);
    if (pid_file && pid_fd >= 0)
        unlink(pid_file);
}

/* fatal() in the master itself: leave no stale pid or ready file. */
static void master_fatal_hook(const char *msg, int code)
{
    (void)code;
    if (getpid() != master_pid)
        return;
    if (!log_opened)
        fprintf(stderr, "master: %s\n", msg);
    remove_files();
}

/* Write the pid file under a lock held for the master's lifetime, so a
 * second master on the same file refuses to start. */
static void write_pidfile(void)
{
    struct flock fl;
    char line[32];
    int len;

    if (!pid_file)
        return;
    pid_fd = open(pid_file, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (pid_fd < 0) {
        xsyslog_syscall("open", "path", pid_file);
        fatal("cannot open the pid file", EX_FATAL_OSERR);
    }
    memset(&fl, 0, sizeof(fl));
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (fcntl(pid_fd, F_SETLK, &fl) < 0) {
        close(pid_fd);
        pid_fd = -1;
        xsyslog(LOG_ERR, "another master holds the pid file", "path=%s",
                pid_file);
        fatal("another master is already running", EX_FATAL_TEMPFAIL);
    }
    len = snprintf(line, sizeof(line), "%d\n", (int)getpid());
    if (ftruncate(pid_fd, 0) < 0 || write(pid_fd, line, len) != len)
        xsyslog_syscall("write", "path", pid_file);

    /* We own the instance now: a ready file left by a master that died
     * must not announce services that are not there yet. */
    if (ready_file)
        unlink(ready_file);
}

static void write_ready_file(void)
{
    char line[32];
    int len;
    int fd;

    if (!ready_file)
        return;

    /* The file usually lives in configdirectory, which the cyrus user
     * owns: never open what may be there (a hard link to a file of
     * root's, a FIFO that would block us), but remove it and create a
     * new file, failing if something took the name in between. */
    (void)unlink(ready_file);
    fd = open(ready_file, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
                          O_CLOEXEC, 0644);
    if (fd < 0) {
        xsyslog_syscall("open", "path", ready_file);
        return;
    }
    wrote_ready = 1;
    len = snprintf(line, sizeof(line), "%d\n", (int)getpid());
    if (write(fd, line, len) != len)
        xsyslog_syscall("write", "path", ready_file);
    close(fd);
}

/* Collect every exited child and let its owner react. */
static void reap(time_t now)
{
    struct child *c;
    pid_t pid;
    int status;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        c = process_find(pid);
        if (!c)
            continue;
        switch (c->kind) {
        case CHILD_SERVICE:
            services_child_exited(c, status, now);
            break;
        case CHILD_DAEMON:
            daemons_child_exited(c, status, now);
            break;
        case CHILD_EVENT:
            if (!master.shutting_down)
                process_log_exit(c, status);
            break;
        }
        process_remove(c);
    }
}

static void log_warnings(const struct masterconf *conf)
{
    int i;

    for (i = 0; i < conf->warnings.count; i++)
        xsyslog(LOG_WARNING, "cyrus.conf warning", "error=%s",
                conf->warnings.data[i]);
}

/* SIGHUP: re-read cyrus.conf; a broken file leaves everything as is. */
static void reload(void)
{
    struct buf why = BUF_INITIALIZER;
    struct masterconf *newconf = NULL;

    if (masterconf_read(master.cyrus_conf, &newconf, &why)) {
        xsyslog(LOG_ERR, "cannot reload configuration", "error=%s",
                buf_cstring(&why));
        buf_free(&why);
        return;
    }
    log_warnings(newconf);
    services_reload(newconf);
    events_reload(newconf, time(NULL));
    daemons_reload(newconf);
    masterconf_free(&master.conf);
    master.conf = newconf;
    xsyslog(LOG_NOTICE, "configuration reloaded", "path=%s",
            master.cyrus_conf);
    buf_free(&why);
}

/* Read pending signal bytes into flags. */
static void drain_signals(int *got_chld, int *got_hup, int *got_term)
{
    unsigned char sigs[64];
    ssize_t n;
    ssize_t i;

    while ((n = read(sig_pipe[0], sigs, sizeof(sigs))) > 0) {
        for (i = 0; i < n; i++) {
            if (sigs[i] == SIGCHLD)
                *got_chld = 1;
            else if (sigs[i] == SIGHUP)
                *got_hup = 1;
            else if (sigs[i] == SIGTERM || sigs[i] == SIGINT)
                *got_term = 1;
        }
    }
}

/* SIGTERM/SIGINT: stop every child, SIGKILL what lingers past the grace
 * period, remove our files and exit 0. */
static void __attribute__((noreturn)) shutdown_master(void)
{
    time_t deadline = time(NULL) + MASTER_SHUTDOWN_GRACE;
    int dummy = 0;
    int status;
    pid_t pid;

    master.shutting_down = 1;
    xsyslog(LOG_NOTICE, "master shutting down", "children=%d",
            process_count());
    process_signal_all(SIGTERM);
    while (process_count() > 0 && time(NULL) < deadline) {
        struct pollfd pfd = { sig_pipe[0], POLLIN, 0 };

        reap(time(NULL));
        if (process_count() == 0)
            break;
        poll(&pfd, 1, 200);
        drain_signals(&dummy, &dummy, &dummy);
    }
    if (process_count() > 0) {
        xsyslog(LOG_WARNING, "children ignored SIGTERM, killing them",
                "children=%d", process_count());
        process_signal_all(SIGKILL);
        while ((pid = waitpid(-1, &status, 0)) > 0 || errno == EINTR) {
            struct child *c = pid > 0 ? process_find(pid) : NULL;

            if (c)
                process_remove(c);
        }
    }
    services_close_all();
    remove_files();
    xsyslog(LOG_NOTICE, "master exited", NULL);
    exit(0);
}

static void main_loop(void)
{
    struct pollfd *pfd = NULL;
    size_t npfd = 0;

    for (;;) {
        int got_chld = 0;
        int got_hup = 0;
        int got_term = 0;
        time_t now = time(NULL);
        size_t want = 1 + 2 * (size_t)services_count();
        int n;

        services_adjust(now);
        daemons_restart_due(now);
        events_run_due(now);

        if (want > npfd) {
            pfd = xreallocarray(pfd, want, sizeof(*pfd));
            npfd = want;
        }
        pfd[0].fd = sig_pipe[0];
        pfd[0].events = POLLIN;
        pfd[0].revents = 0;
        n = 1 + services_pollfds(pfd + 1, (int)npfd - 1, now);

        /* A one-second tick drives events, restarts and throttling. */
        if (poll(pfd, n, 1000) < 0 && errno != EINTR)
            xsyslog_syscall("poll", "what", "master loop");

        now = time(NULL);
        if (pfd[0].revents)
            drain_signals(&got_chld, &got_hup, &got_term);
        services_handle(pfd + 1, n - 1, now);
        if (got_chld)
            reap(now);
        if (got_term) {
            free(pfd);
            shutdown_master();
        }
        if (got_hup)
            reload();
    }
}

/* -L: send standard error (and so our log copy) to a file. */
static void open_logfile(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW |
                        O_CLOEXEC, 0640);

    if (fd < 0) {
        fprintf(stderr, "master: cannot open %s: %s\n", path,
                strerror(errno));
        exit(EX_FATAL_CONFIG);
    }
    if (dup2(fd, 2) < 0)
        exit(EX_FATAL_OSERR);
    close(fd);
}

static void daemonize(int keep_stderr)
{
    pid_t pid = fork();
    int fd;

    if (pid < 0) {
        perror("master: fork");
        exit(EX_FATAL_OSERR);
    }
    if (pid > 0)
        _exit(0);
    setsid();
    fd = open("/dev/null", O_RDWR);
    if (fd >= 0) {
        dup2(fd, 0);
        dup2(fd, 1);
        if (!keep_stderr)
            dup2(fd, 2);
        if (fd > 2)
            close(fd);
    }
}

/* Read imapd.conf and cyrus.conf; resolve the cyrus user when root. */
static void load_config(void)
{
    struct buf why = BUF_INITIALIZER;
    const char *err = NULL;

    if (config_read(master.imapd_conf, NULL, &err)) {
        fprintf(stderr, "master: %s\n", err ? err : "cannot read imapd.conf");
        exit(EX_FATAL_CONFIG);
    }
    if (!pid_file && config_getstring(IMAPOPT_MASTER_PID_FILE))
        pid_file = xstrdup(config_getstring(IMAPOPT_MASTER_PID_FILE));
    if (config_getstring(IMAPOPT_MASTER_READY_FILE))
        ready_file = xstrdup(config_getstring(IMAPOPT_MASTER_READY_FILE));

    if (masterconf_read(master.cyrus_conf, &master.conf, &why)) {
        fprintf(stderr, "master: %s\n", buf_cstring(&why));
        exit(EX_FATAL_CONFIG);
    }

    master.is_root = geteuid() == 0;
    if (master.is_root &&
        privs_lookup(config_getstring(IMAPOPT_CYRUS_USER),
                     config_getstring(IMAPOPT_CYRUS_GROUP), &master.privs,
                     &why)) {
        fprintf(stderr, "master: %s\n", buf_cstring(&why));
        exit(EX_FATAL_CONFIG);
    }
    buf_free(&why);
}

int main(int argc, char **argv)
{
    const char *logfile = NULL;
    int do_daemon = 0;
    int opt;

    master.cyrus_conf = MASTERCONF_DEFAULT_PATH;
    master.backlog = DEFAULT_BACKLOG;
    while ((opt = getopt(argc, argv, "C:M:p:l:L:dDV")) != -1) {
        switch (opt) {
        case 'C': master.imapd_conf = optarg; break;
        case 'M': master.cyrus_conf = optarg; break;
        case 'p': pid_file = xstrdup(optarg); break;
        case 'l':
            master.backlog = atoi(optarg);
            if (master.backlog < 1)
                usage();
            break;
        case 'L': logfile = optarg; break;
        case 'd': do_daemon = 1; break;
        case 'D': do_daemon = 0; break;
        case 'V':
            printf("columba %s (cyrus-imapd %s compatible)\n",
                   PACKAGE_VERSION, CYRUS_COMPAT_VERSION);
            return 0;
        default:
            usage();
        }
    }
    if (optind != argc)
        usage();

    /* Step 1: both configuration files, before anything is touched, so
     * a mistake is reported on the terminal that started us. */
    load_config();

    /* Step 2: where the log goes, then detach if asked. */
    if (logfile)
        open_logfile(logfile);
    if (do_daemon)
        daemonize(logfile != NULL);
    master.log_to_stderr = !do_daemon || logfile;
    master_pid = getpid();
    fatal_set_hook(master_fatal_hook);
    log_open(config_getstring(IMAPOPT_SYSLOG_PREFIX), "master", 0,
             master.log_to_stderr);
    log_opened = master.log_to_stderr;
    log_warnings(master.conf);
    xsyslog(LOG_NOTICE, "master starting", "version=%s pid=%d user=%s",
            PACKAGE_VERSION, (int)master_pid,
            master.is_root ? master.privs.user : "(current)");

    /* Step 3: pid file, START to completion, then listeners, daemons
     * (waiting for wait=y ones), and only then say we are ready. */
    setup_signals();
    write_pidfile();
    start_run_all();
    services_start(1);
    daemons_start();
    write_ready_file();
    xsyslog(LOG_NOTICE, "master ready", "services=%d", services_count());

    /* Step 4: supervise until told to stop. */
    events_init(time(NULL));
    main_loop();
    return 0;
}

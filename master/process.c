/* The master's process table: forking and exec'ing the commands of
 * cyrus.conf entries with the right descriptors, environment and user,
 * and logging how they end. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/strarray.h"
#include "lib/xmalloc.h"

#include "master/master.h"
#include "master/service.h"

static const char *kind_key(enum child_kind kind)
{
    switch (kind) {
    case CHILD_SERVICE: return "service";
    case CHILD_EVENT: return "event";
    case CHILD_DAEMON: return "daemon";
    }
    return "process";
}

/* The program to exec: absolute paths as written, anything else is
 * looked up in LIBEXECDIR. */
static char *resolve_program(const char *word)
{
    struct buf path = BUF_INITIALIZER;

    if (word[0] == '/')
        return xstrdup(word);
    buf_printf(&path, "%s/%s", LIBEXECDIR, word);
    return buf_release(&path);
}

/* argv for the child: the command's first word, then -C <imapd.conf>
 * when the master was given one (so every child reads the same file),
 * then the command's remaining words. */
static void build_argv(const struct masterconf_entry *e, strarray_t *argv)
{
    int i;

    strarray_append(argv, strarray_nth(&e->argv, 0));
    if (master.imapd_conf) {
        strarray_append(argv, "-C");
        strarray_append(argv, master.imapd_conf);
    }
    for (i = 1; i < e->argv.count; i++)
        strarray_append(argv, strarray_nth(&e->argv, i));
}

/* In the child: put `fd` on descriptor `target`, or close `target`
 * when fd is -1.  The caller moved fd above 9 first so the two
 * targets cannot clobber each other. */
static void place_fd(int fd, int target)
{
    if (fd < 0) {
        close(target);
        return;
    }
    if (dup2(fd, target) < 0)
        _exit(EX_FATAL_OSERR);
}

static void reset_signals(void)
{
    static const int sigs[] = { SIGCHLD, SIGHUP, SIGTERM, SIGINT, SIGPIPE,
                                SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM };
    struct sigaction sa;
    sigset_t none;
    size_t i;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    for (i = 0; i < sizeof(sigs) / sizeof(*sigs); i++)
        sigaction(sigs[i], &sa, NULL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/* In the forked child: set up descriptors, limits, user and environment,
 * then exec.  Never returns. */
static void __attribute__((noreturn))
child_exec(const struct masterconf_entry *e, int listen_fd, int status_fd)
{
    struct buf why = BUF_INITIALIZER;
    strarray_t argv = STRARRAY_INITIALIZER;
    char *path;
    int null_fd;

    reset_signals();

    /* Step 1: descriptors.  Every other master descriptor is close-on-
     * exec, so after this the child holds exactly 0-2 and 3/4. */
    if (listen_fd >= 0 && (listen_fd = fcntl(listen_fd, F_DUPFD, 10)) < 0)
        _exit(EX_FATAL_OSERR);
    if (status_fd >= 0 && (status_fd = fcntl(status_fd, F_DUPFD, 10)) < 0)
        _exit(EX_FATAL_OSERR);
    null_fd = open("/dev/null", O_RDWR);
    if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(null_fd, 1) < 0)
        _exit(EX_FATAL_OSERR);
    if (null_fd > 2)
        close(null_fd);
    place_fd(listen_fd, SERVICE_LISTEN_FD);
    place_fd(status_fd, SERVICE_STATUS_FD);
    if (listen_fd > SERVICE_STATUS_FD)
        close(listen_fd);
    if (status_fd > SERVICE_STATUS_FD)
        close(status_fd);

    if (e->maxfds > 0) {
        struct rlimit rl;

        rl.rlim_cur = rl.rlim_max = (rlim_t)e->maxfds;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            xsyslog_syscall("setrlimit", "name", e->name);
    }

    /* Step 2: become the cyrus user before a single byte from a client
     * or a line of the daemon's code is seen. */
    if (master.is_root && privs_drop(&master.privs, &why)) {
        xsyslog(LOG_ERR, "cannot drop privileges", "name=%s error=%s",
                e->name, buf_cstring(&why));
        _exit(EX_FATAL_CONFIG);
    }

    /* Step 3: environment and exec. */
    setenv(SERVICE_ENV_NAME, e->name, 1);
    if (master.log_to_stderr)
        setenv(SERVICE_ENV_LOG_STDERR, "1", 1);
    else
        unsetenv(SERVICE_ENV_LOG_STDERR);
    build_argv(e, &argv);
    path = resolve_program(strarray_nth(&e->argv, 0));
    execv(path, argv.data);
    xsyslog(LOG_ERR, "exec failed", "name=%s path=%s error=%s", e->name,
            path, strerror(errno));
    _exit(EX_FATAL_OSERR);
}

/* Fork and exec; returns the pid, or -1 (logged). */
static pid_t fork_exec(const struct masterconf_entry *e, int listen_fd,
                       int status_fd)
{
    pid_t pid = fork();

    if (pid < 0) {
        xsyslog_syscall("fork", "name", e->name);
        return -1;
    }
    if (pid == 0)
        child_exec(e, listen_fd, status_fd);
    return pid;
}

struct child *process_spawn(const struct masterconf_entry *e,
                            enum child_kind kind, int listen_fd,
                            int status_fd)
{
    struct child *c;
    pid_t pid = fork_exec(e, listen_fd, status_fd);

    if (pid < 0)
        return NULL;
    c = xzmalloc(sizeof(*c));
    c->pid = pid;
    c->kind = kind;
    c->state = CHILD_IDLE;
    xstrlcpy(c->name, e->name, sizeof(c->name));
    c->started = time(NULL);
    c->next = master.children;
    master.children = c;
    xsyslog(LOG_DEBUG, "process started", "%s=%s pid=%d", kind_key(kind),
            e->name, (int)pid);
    return c;
}

int process_run_sync(const struct masterconf_entry *e)
{
    pid_t pid = fork_exec(e, -1, -1);
    int status;

    if (pid < 0)
        return -1;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            xsyslog_syscall("waitpid", "name", e->name);
            return -1;
        }
    }
    return status;
}

struct child *process_find(pid_t pid)
{
    struct child *c;

    for (c = master.children; c; c = c->next) {
        if (c->pid == pid)
            return c;
    }
    return NULL;
}

void process_remove(struct child *c)
{
    struct child **pp;

    for (pp = &master.children; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            free(c);
            return;
        }
    }
}

void process_signal_all(int sig)
{
    struct child *c;

    for (c = master.children; c; c = c->next)
        kill(c->pid, sig);
}

int process_count(void)
{
    struct child *c;
    int n = 0;

    for (c = master.children; c; c = c->next)
        n++;
    return n;
}

int process_log_exit(const struct child *c, int status)
{
    const char *key = kind_key(c->kind);

    if (WIFSIGNALED(status)) {
        xsyslog(LOG_ERR, "process killed by signal",
                "%s=%s pid=%d signal=%d (%s)", key, c->name, (int)c->pid,
                WTERMSIG(status), strsignal(WTERMSIG(status)));
        return 1;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
        xsyslog(LOG_ERR, "process exited with error",
                "%s=%s pid=%d status=%d", key, c->name, (int)c->pid,
                WEXITSTATUS(status));
        return 1;
    }
    xsyslog(LOG_DEBUG, "process exited", "%s=%s pid=%d", key, c->name,
            (int)c->pid);
    return 0;
}

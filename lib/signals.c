/* Signal handling for daemons: handlers only record that a signal came
 * and poke a self-pipe; the main loop polls and acts in normal context. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "lib/error.h"
#include "lib/log.h"
#include "lib/signals.h"

/* The signals we catch, shutdown signals first: signals_poll() reports
 * in this order. */
static const int caught[] = {
    SIGTERM, SIGINT, SIGQUIT, SIGCHLD, SIGHUP, SIGALRM, SIGUSR1, SIGUSR2
};
#define N_CAUGHT (int)(sizeof(caught) / sizeof(caught[0]))

/* Written by the handler, read and cleared by signals_poll(). */
static volatile sig_atomic_t pending[N_CAUGHT];
static volatile sig_atomic_t shutdown_sig;
static volatile sig_atomic_t pipe_wr = -1;
static int pipe_rd = -1;

static int installed;
static struct sigaction saved[N_CAUGHT];
static struct sigaction saved_pipe;

static void (*shutdown_hook)(int);
static void (*child_handler)(void);

static int is_shutdown(int sig)
{
    return sig == SIGTERM || sig == SIGINT || sig == SIGQUIT;
}

/* Async-signal-safe: flags, one write(), errno preserved. */
static void on_signal(int sig)
{
    int saved_errno = errno;
    unsigned char c = (unsigned char)sig;
    int i;

    for (i = 0; i < N_CAUGHT; i++) {
        if (caught[i] == sig)
            pending[i] = 1;
    }
    if (is_shutdown(sig) && !shutdown_sig)
        shutdown_sig = sig;

    /* A full pipe already guarantees a wake-up; the byte can be lost. */
    if (pipe_wr >= 0) {
        ssize_t n = write(pipe_wr, &c, 1);
        (void)n;
    }
    errno = saved_errno;
}

static void close_pipe(void)
{
    int wr = pipe_wr;

    pipe_wr = -1;
    if (wr >= 0)
        close(wr);
    if (pipe_rd >= 0)
        close(pipe_rd);
    pipe_rd = -1;
}

static int open_pipe(void)
{
    int fds[2];

    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
        xsyslog_syscall("pipe2", "path", "signal pipe");
        return ERR_IO;
    }
    pipe_rd = fds[0];
    pipe_wr = fds[1];
    return 0;
}

int signals_install(void)
{
    struct sigaction sa;
    sigset_t all, old;
    int i;

    /* Block our signals while the pipe is swapped so no handler writes
     * to a descriptor being closed. */
    sigemptyset(&all);
    for (i = 0; i < N_CAUGHT; i++)
        sigaddset(&all, caught[i]);
    sigprocmask(SIG_BLOCK, &all, &old);

    close_pipe();
    for (i = 0; i < N_CAUGHT; i++)
        pending[i] = 0;
    shutdown_sig = 0;
    if (open_pipe()) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        return ERR_IO;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    for (i = 0; i < N_CAUGHT; i++) {
        int sig = caught[i];
        sa.sa_flags = (is_shutdown(sig) || sig == SIGALRM) ? 0 : SA_RESTART;
        if (sig == SIGCHLD)
            sa.sa_flags |= SA_NOCLDSTOP;
        sigaction(sig, &sa, installed ? NULL : &saved[i]);
    }
    sa.sa_handler = SIG_IGN;
    sa.sa_flags = 0;
    sigaction(SIGPIPE, &sa, installed ? NULL : &saved_pipe);
    installed = 1;

    sigprocmask(SIG_SETMASK, &old, NULL);
    return 0;
}

void signals_uninstall(void)
{
    int i;

    if (!installed)
        return;
    for (i = 0; i < N_CAUGHT; i++)
        sigaction(caught[i], &saved[i], NULL);
    sigaction(SIGPIPE, &saved_pipe, NULL);
    installed = 0;
    close_pipe();
    for (i = 0; i < N_CAUGHT; i++)
        pending[i] = 0;
    shutdown_sig = 0;
}

int signals_fd(void)
{
    return pipe_rd;
}

static void drain_pipe(void)
{
    char junk[64];

    if (pipe_rd < 0)
        return;
    while (read(pipe_rd, junk, sizeof(junk)) > 0)
        ;
}

int signals_poll(void)
{
    int i;

    /* Drain before reading the flags: a signal arriving after the drain
     * sets its flag and writes a fresh byte, so no wake-up is lost. */
    drain_pipe();
    for (i = 0; i < N_CAUGHT; i++) {
        int sig = caught[i];
        if (!pending[i])
            continue;
        pending[i] = 0;
        if (is_shutdown(sig) && shutdown_hook)
            shutdown_hook(sig);
        else if (sig == SIGCHLD && child_handler)
            child_handler();
        return sig;
    }
    return 0;
}

int signals_shutdown_requested(void)
{
    return shutdown_sig;
}

void signals_set_shutdown(void (*hook)(int sig))
{
    shutdown_hook = hook;
}

void signals_set_child_handler(void (*handler)(void))
{
    child_handler = handler;
}

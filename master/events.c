/* The master's START, EVENTS and DAEMON sections: commands run once
 * before services, periodic and timed jobs, and supervised long-running
 * processes restarted with backoff. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/xmalloc.h"

#include "master/master.h"
#include "master/service.h"

/* ---- START ---- */

void start_run_all(void)
{
    size_t i;

    for (i = 0; i < master.conf->count && !master.shutting_down; i++) {
        const struct masterconf_entry *e = &master.conf->entries[i];
        int status;

        if (e->section != MASTERCONF_START)
            continue;
        xsyslog(LOG_INFO, "running START command", "name=%s cmd=%s",
                e->name, e->cmdline);
        status = process_run_sync(e);
        if (status == -1)
            xsyslog(LOG_ERR, "START command failed", "name=%s error=%s",
                    e->name, "could not run");
        else if (WIFSIGNALED(status))
            xsyslog(LOG_ERR, "START command failed", "name=%s signal=%d",
                    e->name, WTERMSIG(status));
        else if (WEXITSTATUS(status) != 0)
            xsyslog(LOG_ERR, "START command failed", "name=%s status=%d",
                    e->name, WEXITSTATUS(status));
    }
}

/* ---- EVENTS ---- */

/* The next time of day `minutes` after midnight that is later than
 * `after`, in local time. */
static time_t next_at(int minutes, time_t after)
{
    struct tm tm;
    time_t t;

    localtime_r(&after, &tm);
    tm.tm_hour = minutes / 60;
    tm.tm_min = minutes % 60;
    tm.tm_sec = 0;
    tm.tm_isdst = -1;
    t = mktime(&tm);
    if (t <= after) {
        tm.tm_mday++;
        tm.tm_isdst = -1;
        t = mktime(&tm);
    }
    return t;
}

/* When an event first runs: at= events at their time of day; period
 * events and events with neither setting run at start-up (period ones
 * then repeat). */
static time_t first_run(const struct masterconf_entry *e, time_t now)
{
    if (e->at >= 0)
        return next_at(e->at, now);
    return now;
}

static time_t following_run(const struct masterconf_entry *e, time_t now)
{
    if (e->at >= 0)
        return next_at(e->at, now);
    if (e->period > 0)
        return now + e->period;
    return 0;
}

static struct event *event_new(const struct masterconf_entry *e, time_t now)
{
    struct event *ev = xzmalloc(sizeof(*ev));

    ev->e = e;
    ev->name = xstrdup(e->name);
    ev->next_run = first_run(e, now);
    ev->next = master.events;
    master.events = ev;
    return ev;
}

void events_init(time_t now)
{
    size_t i;

    for (i = 0; i < master.conf->count; i++) {
        if (master.conf->entries[i].section == MASTERCONF_EVENTS)
            event_new(&master.conf->entries[i], now);
    }
}

void events_run_due(time_t now)
{
    struct event *ev;

    if (master.shutting_down)
        return;
    for (ev = master.events; ev; ev = ev->next) {
        if (!ev->next_run || now < ev->next_run)
            continue;
        xsyslog(LOG_INFO, "running event", "event=%s cmd=%s", ev->name,
                ev->e->cmdline);
        process_spawn(ev->e, CHILD_EVENT, -1, -1);
        ev->next_run = following_run(ev->e, now);
    }
}

void events_reload(struct masterconf *newconf, time_t now)
{
    struct event **pp = &master.events;
    size_t i;

    while (*pp) {
        struct event *ev = *pp;
        const struct masterconf_entry *ne =
            masterconf_find(newconf, MASTERCONF_EVENTS, ev->name);

        if (!ne) {
            *pp = ev->next;
            free(ev->name);
            free(ev);
            continue;
        }
        if (!masterconf_same_entry(ev->e, ne))
            ev->next_run = first_run(ne, now);
        ev->e = ne;
        pp = &ev->next;
    }
    for (i = 0; i < newconf->count; i++) {
        const struct masterconf_entry *e = &newconf->entries[i];
        struct event *ev;

        if (e->section != MASTERCONF_EVENTS)
            continue;
        for (ev = master.events; ev; ev = ev->next) {
            if (!strcmp(ev->name, e->name))
                break;
        }
        if (!ev)
            event_new(e, now);
    }
}

/* ---- DAEMON ---- */

/* Wait (bounded) until a wait=y daemon reports READY on its pipe, closes
 * it, or dies (which closes it too). */
static void wait_ready(struct daemon *d, int fd)
{
    struct service_status_msg msg;
    struct pollfd pfd;
    time_t deadline = time(NULL) + MASTER_DAEMON_WAIT;
    ssize_t n;

    for (;;) {
        time_t now = time(NULL);

        if (now >= deadline) {
            xsyslog(LOG_WARNING, "daemon did not report ready",
                    "daemon=%s pid=%d waited=%ds", d->name, (int)d->pid,
                    MASTER_DAEMON_WAIT);
            return;
        }
        pfd.fd = fd;
        pfd.events = POLLIN;
        /* poll() leaves revents alone when a signal interrupts it. */
        pfd.revents = 0;
        if (poll(&pfd, 1, (int)(deadline - now) * 1000) < 0 &&
            errno != EINTR)
            return;
        if (!pfd.revents)
            continue;
        n = read(fd, &msg, sizeof(msg));
        if (n < 0 && errno == EINTR)
            continue;
        if (n == (ssize_t)sizeof(msg) && msg.magic == SERVICE_STATUS_MAGIC &&
            msg.status != SERVICE_STATUS_READY)
            continue;
        xsyslog(LOG_INFO, "daemon ready", "daemon=%s pid=%d", d->name,
                (int)d->pid);
        return;
    }
}

/* Start d's process; with `block` and wait=y, wait until it is ready. */
static void daemon_launch(struct daemon *d, int block)
{
    struct child *c;
    int fds[2] = { -1, -1 };
    int want_wait = block && d->e->wait;

    if (want_wait && pipe2(fds, O_CLOEXEC) < 0) {
        xsyslog_syscall("pipe", "daemon", d->name);
        want_wait = 0;
    }
    c = process_spawn(d->e, CHILD_DAEMON, -1, want_wait ? fds[1] : -1);
    if (fds[1] >= 0)
        close(fds[1]);
    d->restart_at = 0;
    d->started = time(NULL);
    if (c) {
        c->dmn = d;
        d->pid = c->pid;
        if (want_wait)
            wait_ready(d, fds[0]);
    }
    else {
        d->restart_at = d->started + MASTER_DAEMON_MAX_BACKOFF;
    }
    if (fds[0] >= 0)
        close(fds[0]);
}

static struct daemon *daemon_new(const struct masterconf_entry *e)
{
    struct daemon *d = xzmalloc(sizeof(*d));
    struct daemon **pp = &master.daemons;

    d->e = e;
    d->name = xstrdup(e->name);
    d->backoff = 1;
    /* Keep file order: wait=y daemons are started in sequence. */
    while (*pp)
        pp = &(*pp)->next;
    *pp = d;
    return d;
}

void daemons_start(void)
{
    size_t i;

    for (i = 0; i < master.conf->count && !master.shutting_down; i++) {
        if (master.conf->entries[i].section == MASTERCONF_DAEMON)
            daemon_launch(daemon_new(&master.conf->entries[i]), 1);
    }
}

void daemons_child_exited(struct child *c, int status, time_t now)
{
    struct daemon *d = c->dmn;

    if (!master.shutting_down)
        process_log_exit(c, status);
    if (!d || master.shutting_down)
        return;
    d->pid = 0;
    if (now - d->started >= MASTER_DAEMON_STABLE)
        d->backoff = 1;
    d->restart_at = now + d->backoff;
    xsyslog(LOG_NOTICE, "daemon will be restarted", "daemon=%s delay=%ds",
            d->name, d->backoff);
    d->backoff *= 2;
    if (d->backoff > MASTER_DAEMON_MAX_BACKOFF)
        d->backoff = MASTER_DAEMON_MAX_BACKOFF;
}

void daemons_restart_due(time_t now)
{
    struct daemon *d;

    if (master.shutting_down)
        return;
    for (d = master.daemons; d; d = d->next) {
        if (!d->pid && d->restart_at && now >= d->restart_at)
            daemon_launch(d, 0);
    }
}

/* Stop d's process and forget that it belongs to d. */
static void daemon_stop(struct daemon *d)
{
    struct child *c = d->pid ? process_find(d->pid) : NULL;

    if (c) {
        c->dmn = NULL;
        kill(c->pid, SIGTERM);
    }
    d->pid = 0;
    d->restart_at = 0;
}

void daemons_reload(struct masterconf *newconf)
{
    struct daemon **pp = &master.daemons;
    struct daemon *d;
    size_t i;

    while (*pp) {
        const struct masterconf_entry *ne;

        d = *pp;
        ne = masterconf_find(newconf, MASTERCONF_DAEMON, d->name);
        if (!ne) {
            xsyslog(LOG_NOTICE, "daemon removed", "daemon=%s", d->name);
            daemon_stop(d);
            *pp = d->next;
            free(d->name);
            free(d);
            continue;
        }
        if (!masterconf_same_entry(d->e, ne)) {
            xsyslog(LOG_NOTICE, "daemon changed", "daemon=%s", d->name);
            daemon_stop(d);
            d->e = ne;
            d->backoff = 1;
            daemon_launch(d, 0);
        }
        d->e = ne;
        pp = &d->next;
    }
    for (i = 0; i < newconf->count; i++) {
        const struct masterconf_entry *e = &newconf->entries[i];

        if (e->section != MASTERCONF_DAEMON ||
            masterconf_find(master.conf, MASTERCONF_DAEMON, e->name))
            continue;
        xsyslog(LOG_NOTICE, "daemon added", "daemon=%s", e->name);
        daemon_launch(daemon_new(e), 0);
    }
}

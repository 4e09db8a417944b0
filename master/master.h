/* The master's internal interfaces: process table, services, events and
 * daemons, shared by the files of master/.  Not for use outside master/. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_MASTER_MASTER_H
#define COLUMBA_MASTER_MASTER_H

#include <poll.h>
#include <sys/types.h>
#include <time.h>

#include "master/masterconf.h"
#include "lib/privs.h"

/* A service is throttled after this many abnormal exits inside the
 * window, for the backoff period (shorter with babysit=y). */
#define MASTER_CRASH_LIMIT 10
#define MASTER_CRASH_WINDOW 10
#define MASTER_THROTTLE_BACKOFF 60
#define MASTER_BABYSIT_BACKOFF 10

/* How long SIGTERM may take before SIGKILL, at shutdown. */
#define MASTER_SHUTDOWN_GRACE 10

/* A DAEMON restarts after 1 s, doubling up to this while it keeps dying
 * young (under MASTER_DAEMON_STABLE seconds of life). */
#define MASTER_DAEMON_MAX_BACKOFF 60
#define MASTER_DAEMON_STABLE 30
/* How long start-up waits for a wait=y DAEMON. */
#define MASTER_DAEMON_WAIT 30

enum child_kind {
    CHILD_SERVICE,
    CHILD_EVENT,
    CHILD_DAEMON
};

enum child_state {
    CHILD_IDLE,     /* counted in the service's nready */
    CHILD_BUSY,
    CHILD_EXITING   /* said it is leaving; no longer ready */
};

struct service;
struct daemon;

/* One process the master started and has not yet reaped. */
struct child {
    pid_t pid;
    enum child_kind kind;
    enum child_state state;
    struct service *svc;        /* CHILD_SERVICE; NULL once retired */
    struct daemon *dmn;         /* CHILD_DAEMON; NULL once retired */
    char name[MASTERCONF_MAX_NAME + 1];
    time_t started;
    struct child *next;
};

/* A SERVICES entry at run time. */
struct service {
    const struct masterconf_entry *e;   /* points into master.conf */
    char *name;
    int listen_fd;              /* -1 while not bound */
    int status_rd;              /* status pipe, our end */
    int status_wr;              /* status pipe, the children's end */
    int nready;                 /* children idle in accept() */
    int nactive;                /* children alive and not retired */
    time_t crashes[MASTER_CRASH_LIMIT];  /* ring of abnormal exit times */
    int ncrash;
    time_t throttled_until;     /* 0 when not throttled */
    time_t fork_second;         /* maxforkrate accounting */
    int forks_in_second;
    time_t bind_retry;          /* next bind attempt when unbound */
    int bind_backoff;           /* seconds until the attempt after that */
    struct service *next;
};

/* An EVENTS entry. */
struct event {
    const struct masterconf_entry *e;
    char *name;
    time_t next_run;            /* 0: never again */
    struct event *next;
};

/* A DAEMON entry. */
struct daemon {
    const struct masterconf_entry *e;
    char *name;
    pid_t pid;                  /* 0 when not running */
    time_t started;
    time_t restart_at;          /* 0: no restart pending */
    int backoff;
    struct daemon *next;
};

/* The master's whole state. */
struct master {
    const char *imapd_conf;     /* -C, or NULL */
    const char *cyrus_conf;     /* -M, or the default */
    struct masterconf *conf;
    int backlog;
    int is_root;
    struct privs privs;         /* valid when is_root */
    int log_to_stderr;
    int shutting_down;
    struct child *children;
    struct service *services;
    struct event *events;
    struct daemon *daemons;
};

extern struct master master;

/* process.c: starting and tracking children. */

/* Fork and exec entry `e`'s command.  `listen_fd`/`status_fd` become the
 * child's fds 3 and 4 (-1: none).  On success returns the new child
 * (already in the table) ; NULL when fork failed (logged). */
struct child *process_spawn(const struct masterconf_entry *e,
                            enum child_kind kind, int listen_fd,
                            int status_fd);

/* Run `e` to completion (START); returns its wait status, or -1. */
int process_run_sync(const struct masterconf_entry *e);

struct child *process_find(pid_t pid);
/* Unlink and free a child record. */
void process_remove(struct child *c);
/* Signal every child; with `kind_only` >= 0 only that kind. */
void process_signal_all(int sig);
int process_count(void);
/* Log a child's exit if abnormal; returns 1 when it was abnormal. */
int process_log_exit(const struct child *c, int status);

/* service_table.c: SERVICES. */

/* Create run-time services for every SERVICES entry of master.conf and
 * bind them.  At start-up (is_startup) a bind failure is fatal. */
void services_start(int is_startup);
/* Start children where prefork or a waiting connection needs them. */
void services_adjust(time_t now);
/* Add the services' fds to a poll set; returns the count added. */
int services_pollfds(struct pollfd *pfd, int max, time_t now);
/* Handle poll results for the fds services_pollfds() added. */
void services_handle(const struct pollfd *pfd, int n, time_t now);
/* A service child exited. */
void services_child_exited(struct child *c, int status, time_t now);
/* Apply a new configuration: keep, change, add, remove. */
void services_reload(struct masterconf *newconf);
/* Close listeners and pipes; used at shutdown. */
void services_close_all(void);
int services_count(void);

/* events.c: START, EVENTS and DAEMON. */

void start_run_all(void);
void events_init(time_t now);
void events_run_due(time_t now);
void events_reload(struct masterconf *newconf, time_t now);
void daemons_start(void);
void daemons_child_exited(struct child *c, int status, time_t now);
void daemons_restart_due(time_t now);
void daemons_reload(struct masterconf *newconf);

#endif /* COLUMBA_MASTER_MASTER_H */

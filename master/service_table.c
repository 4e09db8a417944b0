/* SERVICES at run time: listening sockets, the idle/busy count of each
 * service's children learnt over its status pipe, prefork and maxchild,
 * crash throttling, and applying a re-read cyrus.conf. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#include "master/master.h"
#include "master/service.h"

/* Seconds before retrying a listener that failed to bind, doubling up to
 * the maximum: the first retry is quick because the usual cause after a
 * reload is an old child that still holds the port for a moment. */
#define BIND_RETRY 1
#define BIND_RETRY_MAX 60

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Bind a Unix socket, replacing a stale socket file (and only that). */
static int listen_unix(const char *path, int backlog, int *fd_r,
                       struct buf *why)
{
    struct sockaddr_un sun;
    struct stat st;
    int fd;
    int rc = -1;
    int saved;

    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if (xstrlcpy(sun.sun_path, path, sizeof(sun.sun_path))
            >= sizeof(sun.sun_path)) {
        buf_setcstr(why, "socket path too long");
        return ERR_INVALID;
    }
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);

    /* Delivery agents (e.g. the MTA's lmtp client) run as other users;
     * access is meant to be controlled by the directory.  The mode is
     * set through the umask at bind() time: a chmod() by path after it
     * would follow a symbolic link that the (unprivileged) owner of the
     * directory swapped in meanwhile, as root. */
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        mode_t oldmask = umask(0);

        rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
        saved = errno;
        umask(oldmask);
        errno = saved;
    }
    if (fd < 0 || rc < 0 || listen(fd, backlog) < 0 || set_nonblock(fd) < 0) {
        buf_printf(why, "bind %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return ERR_IO;
    }
    *fd_r = fd;
    return 0;
}

/* Try one address; returns the listening fd or -1 with errno set. */
static int listen_addr(const struct addrinfo *ai, enum masterconf_proto proto,
                       int backlog)
{
    int one = 1;
    int v6only = proto == MASTERCONF_PROTO_TCP6;
    int fd;
    int saved;

    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                ai->ai_protocol);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ai->ai_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only,
                   sizeof(v6only)) < 0)
        goto fail;
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
        listen(fd, backlog) < 0 || set_nonblock(fd) < 0)
        goto fail;
    return fd;

fail:
    saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

/* Bind a TCP listener.  With proto=tcp and no host, one dual-stack IPv6
 * socket serves both families (falling back to IPv4 without IPv6), so a
 * service still has exactly one socket to hand its children. */
static int listen_inet(const struct masterconf_entry *e, int backlog,
                       int *fd_r, struct buf *why)
{
    struct addrinfo hints;
    struct addrinfo *res = NULL;
    struct addrinfo *ai;
    int pass;
    int fd = -1;
    int err = 0;
    int r;

    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    hints.ai_family = e->proto == MASTERCONF_PROTO_TCP4 ? AF_INET :
                      e->proto == MASTERCONF_PROTO_TCP6 ? AF_INET6 : AF_UNSPEC;
    r = getaddrinfo(e->listen.host, e->listen.port, &hints, &res);
    if (r) {
        buf_printf(why, "%s: %s", e->listen_raw, gai_strerror(r));
        return ERR_INVALID;
    }

    /* IPv6 results first, so a wildcard listener is dual-stack. */
    for (pass = 0; pass < 2 && fd < 0; pass++) {
        for (ai = res; ai && fd < 0; ai = ai->ai_next) {
            if ((ai->ai_family == AF_INET6) != (pass == 0))
                continue;
            fd = listen_addr(ai, e->proto, backlog);
            if (fd < 0)
                err = errno;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        buf_printf(why, "bind %s: %s", e->listen_raw,
                   strerror(err ? err : EADDRNOTAVAIL));
        return ERR_IO;
    }
    *fd_r = fd;
    return 0;
}

/* Bind s's listener if it has none; logs failures. */
static int service_bind(struct service *s, time_t now)
{
    struct buf why = BUF_INITIALIZER;
    int r;

    if (s->listen_fd >= 0)
        return 0;
    if (s->e->listen.is_unix)
        r = listen_unix(s->e->listen.path, master.backlog, &s->listen_fd,
                        &why);
    else
        r = listen_inet(s->e, master.backlog, &s->listen_fd, &why);
    if (r) {
        if (s->bind_backoff < BIND_RETRY)
            s->bind_backoff = BIND_RETRY;
        xsyslog(LOG_ERR, "cannot listen", "service=%s error=%s retry=%ds",
                s->name, buf_cstring(&why), s->bind_backoff);
        s->bind_retry = now + s->bind_backoff;
        s->bind_backoff *= 2;
        if (s->bind_backoff > BIND_RETRY_MAX)
            s->bind_backoff = BIND_RETRY_MAX;
    }
    else {
        s->bind_backoff = 0;
        xsyslog(LOG_INFO, "service listening", "service=%s listen=%s",
                s->name, s->e->listen_raw);
    }
    buf_free(&why);
    return r;
}

static void service_unbind(struct service *s)
{
    if (s->listen_fd < 0)
        return;
    close(s->listen_fd);
    s->listen_fd = -1;
    if (s->e->listen.is_unix)
        unlink(s->e->listen.path);
}

static struct service *service_new(const struct masterconf_entry *e)
{
    struct service *s = xzmalloc(sizeof(*s));
    int fds[2];

    s->e = e;
    s->name = xstrdup(e->name);
    s->listen_fd = -1;

    /* Children write whole messages with blocking writes; only our end
     * is non-blocking. */
    if (pipe2(fds, O_CLOEXEC) < 0 || set_nonblock(fds[0]) < 0)
        fatal("cannot create a status pipe", EX_FATAL_OSERR);
    s->status_rd = fds[0];
    s->status_wr = fds[1];
    s->next = master.services;
    master.services = s;
    return s;
}

/* Detach s's children from it and ask them to leave once idle. */
static void service_retire_children(struct service *s)
{
    struct child *c;

    for (c = master.children; c; c = c->next) {
        if (c->kind == CHILD_SERVICE && c->svc == s) {
            c->svc = NULL;
            kill(c->pid, SIGHUP);
        }
    }
    s->nready = 0;
    s->nactive = 0;
}

static void service_free(struct service *s)
{
    struct service **pp;

    for (pp = &master.services; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    service_retire_children(s);
    service_unbind(s);
    close(s->status_rd);
    close(s->status_wr);
    free(s->name);
    free(s);
}

void services_start(int is_startup)
{
    time_t now = time(NULL);
    size_t i;

    for (i = 0; i < master.conf->count; i++) {
        const struct masterconf_entry *e = &master.conf->entries[i];
        struct service *s;

        if (e->section != MASTERCONF_SERVICES)
            continue;
        s = service_new(e);
        if (service_bind(s, now) && is_startup)
            fatal("cannot bind a service listener", EX_FATAL_OSERR);
    }
}

static int is_throttled(const struct service *s, time_t now)
{
    return s->throttled_until && now < s->throttled_until;
}

/* May s start one more child now? */
static int can_fork(struct service *s, time_t now)
{
    if (master.shutting_down || s->listen_fd < 0 || is_throttled(s, now))
        return 0;
    if (s->e->maxchild >= 0 && s->nactive >= s->e->maxchild)
        return 0;
    if (s->e->maxforkrate > 0) {
        if (s->fork_second != now) {
            s->fork_second = now;
            s->forks_in_second = 0;
        }
        if (s->forks_in_second >= s->e->maxforkrate)
            return 0;
    }
    return 1;
}

static int spawn_child(struct service *s, time_t now)
{
    struct child *c = process_spawn(s->e, CHILD_SERVICE, s->listen_fd,
                                    s->status_wr);

    if (!c)
        return ERR_AGAIN;
    c->svc = s;
    s->nready++;
    s->nactive++;
    if (s->fork_second != now) {
        s->fork_second = now;
        s->forks_in_second = 0;
    }
    s->forks_in_second++;
    return 0;
}

void services_adjust(time_t now)
{
    struct service *s;

    for (s = master.services; s; s = s->next) {
        int want = s->e->prefork;

        if (s->throttled_until && now >= s->throttled_until) {
            s->throttled_until = 0;
            s->ncrash = 0;
            xsyslog(LOG_NOTICE, "service re-enabled", "service=%s", s->name);
        }
        if (s->listen_fd < 0 && now >= s->bind_retry)
            service_bind(s, now);
        if (s->e->babysit && want < 1)
            want = 1;
        while (s->nready < want && can_fork(s, now)) {
            if (spawn_child(s, now))
                break;
        }
    }
}

int services_pollfds(struct pollfd *pfd, int max, time_t now)
{
    struct service *s;
    int n = 0;

    for (s = master.services; s && n + 2 <= max; s = s->next) {
        pfd[n].fd = s->status_rd;
        pfd[n].events = POLLIN;
        pfd[n++].revents = 0;

        /* Watch the socket only when nobody could take a connection:
         * then a waiting client is the signal to start a child. */
        if (s->nready == 0 && can_fork(s, now)) {
            pfd[n].fd = s->listen_fd;
            pfd[n].events = POLLIN;
            pfd[n++].revents = 0;
        }
    }
    return n;
}

/* Apply one status message to the child it names. */
static void apply_status(struct service *s,
                         const struct service_status_msg *m)
{
    struct child *c;

    if (m->magic != SERVICE_STATUS_MAGIC)
        return;
    c = process_find((pid_t)m->pid);
    if (!c || c->svc != s)
        return;
    switch (m->status) {
    case SERVICE_STATUS_IDLE:
        if (c->state == CHILD_BUSY) {
            c->state = CHILD_IDLE;
            s->nready++;
        }
        break;
    case SERVICE_STATUS_BUSY:
        if (c->state == CHILD_IDLE)
            s->nready--;
        c->state = CHILD_BUSY;
        break;
    case SERVICE_STATUS_EXITING:
        if (c->state == CHILD_IDLE)
            s->nready--;
        c->state = CHILD_EXITING;
        break;
    default:
        xsyslog(LOG_WARNING, "unknown status from child",
                "service=%s pid=%d status=%d", s->name, (int)m->pid,
                (int)m->status);
        break;
    }
}

static void read_status(struct service *s)
{
    struct service_status_msg msgs[64];
    ssize_t n;
    size_t i;

    for (;;) {
        n = read(s->status_rd, msgs, sizeof(msgs));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        for (i = 0; i < (size_t)n / sizeof(*msgs); i++)
            apply_status(s, &msgs[i]);
    }
}

void services_handle(const struct pollfd *pfd, int n, time_t now)
{
    struct service *s;
    int i;

    for (i = 0; i < n; i++) {
        if (!pfd[i].revents)
            continue;
        for (s = master.services; s; s = s->next) {
            if (pfd[i].fd == s->status_rd) {
                read_status(s);
                break;
            }
            if (pfd[i].fd == s->listen_fd) {
                if (s->nready == 0 && can_fork(s, now))
                    spawn_child(s, now);
                break;
            }
        }
    }
}

/* Count an abnormal exit; throttle s when they come too fast. */
static void record_crash(struct service *s, time_t now)
{
    time_t oldest;
    int backoff;

    s->crashes[s->ncrash % MASTER_CRASH_LIMIT] = now;
    s->ncrash++;
    if (s->ncrash < MASTER_CRASH_LIMIT || is_throttled(s, now))
        return;
    oldest = s->crashes[s->ncrash % MASTER_CRASH_LIMIT];
    if (now - oldest > MASTER_CRASH_WINDOW)
        return;
    backoff = s->e->babysit ? MASTER_BABYSIT_BACKOFF : MASTER_THROTTLE_BACKOFF;
    s->throttled_until = now + backoff;
    s->ncrash = 0;
    xsyslog(LOG_ERR, "service throttled",
            "service=%s crashes=%d window=%ds backoff=%ds", s->name,
            MASTER_CRASH_LIMIT, MASTER_CRASH_WINDOW, backoff);
}

void services_child_exited(struct child *c, int status, time_t now)
{
    struct service *s = c->svc;
    int abnormal = 0;

    if (!master.shutting_down)
        abnormal = process_log_exit(c, status);
    if (!s)
        return;
    if (c->state == CHILD_IDLE)
        s->nready--;
    s->nactive--;
    if (abnormal)
        record_crash(s, now);
}

void services_reload(struct masterconf *newconf)
{
    struct service *s;
    struct service *next;
    time_t now = time(NULL);
    size_t i;

    /* Step 1: keep, change or remove what runs now. */
    for (s = master.services; s; s = next) {
        const struct masterconf_entry *ne;

        next = s->next;
        ne = masterconf_find(newconf, MASTERCONF_SERVICES, s->name);
        if (!ne) {
            xsyslog(LOG_NOTICE, "service removed", "service=%s", s->name);
            service_free(s);
            continue;
        }
        if (masterconf_same_entry(s->e, ne)) {
            s->e = ne;
            continue;
        }
        xsyslog(LOG_NOTICE, "service changed", "service=%s", s->name);
        service_retire_children(s);
        s->throttled_until = 0;
        s->ncrash = 0;
        if (!masterconf_same_listener(s->e, ne))
            service_unbind(s);
        s->e = ne;
        service_bind(s, now);
    }

    /* Step 2: start what is new. */
    for (i = 0; i < newconf->count; i++) {
        const struct masterconf_entry *e = &newconf->entries[i];

        if (e->section != MASTERCONF_SERVICES)
            continue;
        for (s = master.services; s; s = s->next) {
            if (!strcmp(s->name, e->name))
                break;
        }
        if (s)
            continue;
        xsyslog(LOG_NOTICE, "service added", "service=%s", e->name);
        s = service_new(e);
        service_bind(s, now);
    }
}

void services_close_all(void)
{
    while (master.services)
        service_free(master.services);
}

int services_count(void)
{
    struct service *s;
    int n = 0;

    for (s = master.services; s; s = s->next)
        n++;
    return n;
}

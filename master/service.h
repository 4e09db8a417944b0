/* The service-child loop every daemon links (master/libservice.a): the
 * master hands a child its listening socket and a status pipe; the loop
 * accepts one connection at a time and calls the daemon's service_main.
 * Also the status-pipe protocol shared with the master. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_MASTER_SERVICE_H
#define COLUMBA_MASTER_SERVICE_H

#include <stdint.h>

/*
 * Descriptors a SERVICES child finds when it starts:
 *   fd 0, 1  /dev/null (a connection is dup2()ed here while it is served)
 *   fd 2     the master's standard error (its log file with -L)
 *   fd 3     the listening socket, non-blocking, shared by every child of
 *            the service
 *   fd 4     the write end of the service's status pipe
 * A DAEMON entry with wait=y gets only fd 4, on which it reports
 * SERVICE_STATUS_READY once it is ready (or closes it).
 *
 * Status pipe format: each message is one struct service_status_msg
 * written with a single write(2).  It is smaller than PIPE_BUF, so writes
 * from many children to the shared pipe never interleave, and the
 * master reads whole messages.  Fields are in host byte order (both ends
 * run on the same machine).  `magic` guards against stray writes; the
 * master drops messages with a wrong magic or from a pid it does not
 * know (for example one already reaped).
 *
 * The environment carries CYRUS_SERVICE=<name from cyrus.conf>, and
 * COLUMBA_LOG_STDERR=1 when the master copies its log to stderr.
 *
 * Privileges: the master drops to cyrus_user in the forked child before
 * exec, so a daemon never runs a line of its own code as root.  If a
 * daemon is nevertheless started as root (by hand), the loop drops
 * privileges itself before service_init() and before any accept().
 */
#define SERVICE_LISTEN_FD 3
#define SERVICE_STATUS_FD 4

#define SERVICE_STATUS_MAGIC 0x436f6c53u   /* "ColS" */

enum service_status {
    SERVICE_STATUS_IDLE = 1,    /* waiting in accept() */
    SERVICE_STATUS_BUSY = 2,    /* serving a connection */
    SERVICE_STATUS_EXITING = 3, /* will exit without accepting again */
    SERVICE_STATUS_READY = 4    /* DAEMON with wait=y: start-up done */
};

struct service_status_msg {
    uint32_t magic;
    int32_t pid;
    int32_t status;             /* enum service_status */
};

/* Environment variable carrying the service name. */
#define SERVICE_ENV_NAME "CYRUS_SERVICE"
#define SERVICE_ENV_LOG_STDERR "COLUMBA_LOG_STDERR"

/* Default number of connections a child serves before it exits (-U). */
#define SERVICE_DEFAULT_MAXUSE 250
/* Seconds an idle child waits for a connection before it exits; the
 * master starts a replacement if prefork needs one. */
#define SERVICE_DEFAULT_IDLE_TIMEOUT 600

/*
 * The contract for a daemon linking libservice.a (the library supplies
 * main()):
 *   service_init(argc, argv, envp)  once, after configuration is read
 *       and privileges dropped; non-zero is fatal for the child.
 *       argv is the full command line; optind is reset to 1 so the
 *       daemon can run its own getopt; it must accept and ignore the
 *       loop's options -C <file>, -U <n>, -s and -N.
 *   service_main(argc, argv, envp)  once per connection, with the client
 *       on fds 0 and 1; return to take the next connection (return value
 *       0, or non-zero to make the child exit after this connection).
 *   service_abort(code)  clean up and exit(code); called with 0 when the
 *       loop ends normally (maxuse reached, idle timeout, SIGHUP, the
 *       master gone) and with the fatal() code on fatal errors.  Never
 *       returns.
 * SIGHUP makes the loop stop after the current connection; SIGPIPE is
 * ignored (a vanished client shows up as a write error).
 */
int service_init(int argc, char **argv, char **envp);
int service_main(int argc, char **argv, char **envp);
void service_abort(int code) __attribute__((noreturn));

/* Set by the loop from the command line: -s (implicit TLS on connect).
 * Daemons read it; the loop does nothing else with it. */
extern int service_implicit_tls;

/* The service name (from CYRUS_SERVICE, else the program name); valid
 * for the life of the process. */
const char *service_name(void);

/* The -C path, or NULL for the default imapd.conf. */
const char *service_config_path(void);

/* The current client's address for logs ("192.0.2.1:1234",
 * "[2001:db8::1]:1234" or "unix"), or NULL between connections. */
const char *service_client_addr(void);

/* Send one status message to the master on SERVICE_STATUS_FD; a missing
 * or closed pipe is ignored (a daemon started by hand has none).
 * Returns 0 or ERR_IO. */
int service_report_status(enum service_status status);

/* For a DAEMON with wait=y: tell the master start-up is complete. */
int service_notify_ready(void);

#endif /* COLUMBA_MASTER_SERVICE_H */

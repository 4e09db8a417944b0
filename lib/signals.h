/* Signal handling for daemons: handlers only record that a signal came
 * and poke a self-pipe; the main loop polls and acts in normal context. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_LIB_SIGNALS_H
#define COLUMBA_LIB_SIGNALS_H

/* Install handlers for SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGCHLD,
 * SIGALRM, SIGUSR1 and SIGUSR2, ignore SIGPIPE, and create the
 * self-pipe.  SIGTERM, SIGINT, SIGQUIT and SIGALRM interrupt blocking
 * system calls (EINTR) so a loop can notice them; the others restart
 * them.  Calling it again (for example in a forked child, which must not
 * share the parent's pipe) clears pending signals and makes a new pipe.
 * Returns 0 or ERR_IO. */
int signals_install(void);

/* Restore the dispositions in force before signals_install(), close the
 * self-pipe and forget pending signals. */
void signals_uninstall(void);

/* The read end of the self-pipe (non-blocking, close-on-exec): it turns
 * readable when a signal arrives, so poll() in an event loop wakes.
 * signals_poll() drains it.  -1 before signals_install(). */
int signals_fd(void);

/* Take one pending signal and return its number, or 0 when none is
 * pending; call until it returns 0.  Shutdown signals come first: for
 * SIGTERM, SIGINT or SIGQUIT the shutdown hook (if set) is called with
 * the signal number before returning.  For SIGCHLD the child handler
 * (if set) is called first, so it may reap with waitpid(). */
int signals_poll(void);

/* The signal number of the first shutdown signal (SIGTERM, SIGINT,
 * SIGQUIT) received since signals_install(), or 0.  Polling does not
 * clear it. */
int signals_shutdown_requested(void);

/* Set the function signals_poll() calls for a shutdown signal (NULL for
 * none).  It usually cleans up and exits; if it returns, signals_poll()
 * returns the signal to its caller. */
void signals_set_shutdown(void (*hook)(int sig));

/* Set the function signals_poll() calls when SIGCHLD arrived (NULL for
 * none).  One call may stand for several exited children. */
void signals_set_child_handler(void (*handler)(void));

#endif /* COLUMBA_LIB_SIGNALS_H */

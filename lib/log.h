/* Logging through syslog(3) in the project's form: a short event text
 * followed by key=value context, every line of a session tagged with its
 * session id.  A developer instance also copies lines to stderr. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_LIB_LOG_H
#define COLUMBA_LIB_LOG_H

#include <stdarg.h>
#include <syslog.h>

struct buf;

/* Open the log for `program` with ident "<prefix>/<program>" (prefix
 * from `syslog_prefix`, "columba" when NULL), facility from `facility`
 * (LOG_LOCAL6 when 0).  With `to_stderr` set, each line also goes to
 * standard error (a foreground developer instance; the master's -L
 * redirects standard error to a file).  May be called again to reopen. */
void log_open(const char *syslog_prefix, const char *program,
              int facility, int to_stderr);

/* The ident given to openlog(), valid until the next log_open(). */
const char *log_ident(void);

/* Tag every following line with session=<id> and, if set,
 * addr=<client address>.  NULL clears the tag.  Copies both. */
void log_set_session(const char *session_id, const char *client_addr);

/* The current session id, or NULL. */
const char *log_session_id(void);

/* Make a new random session id of the form "<prog>-<pid>-<n>-<rand>"
 * into `buf` (reset first). */
void log_new_session_id(struct buf *buf, const char *program);

/* Log one event: "<event>" then " session=<id>" (when tagged), then
 * " " and the formatted key=value context (may be NULL).  Values that
 * come from clients must go through log_escape() first. */
void xsyslog(int priority, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void xvsyslog(int priority, const char *event, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Log a failed system call: "<call> failed" with object and errno text,
 * e.g. xsyslog_syscall("open", "path", path) logs
 * "open failed path=<path> error=<strerror(errno)>".  Preserves errno. */
void xsyslog_syscall(const char *call, const char *key, const char *object);

/* Escape a client-supplied value for a log line: printable ASCII stays,
 * everything else (and '"', '\\', space, '=') becomes \xHH; long values
 * are cut at `maxlen` bytes with "..." appended.  Returns a pointer
 * into one of a few rotating static buffers: use it within the call. */
const char *log_escape(const char *s, size_t maxlen);

#endif /* COLUMBA_LIB_LOG_H */

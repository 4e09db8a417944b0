/* Logging through syslog(3) in the project's form: a short event text
 * followed by key=value context, every line of a session tagged with its
 * session id.  A developer instance also copies lines to stderr. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_LIB_LOG_H
#define COLUMBA_LIB_LOG_H

#include <stdarg.h>
#include <stddef.h>
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
 * into `buf` (reset first): <n> counts ids made by this process, <rand>
 * is 12 hex digits from the kernel's random source.  `program` NULL
 * takes the program from the ident; bytes other than letters, digits,
 * '_' and '.' in it become '_'. */
void log_new_session_id(struct buf *buf, const char *program);

/* Log one event: "<event>" then " session=<id>" (when tagged), then
 * " addr=<a>" (when tagged with an address), then " " and the formatted
 * key=value context (omitted when NULL or when it formats to "").
 * Values that come from clients must go through log_escape() first.
 * Control bytes in the result become '?' so one event stays one line,
 * and lines over 4096 bytes are cut, ending in "...".  Preserves errno
 * (and %m in `fmt` names the caller's errno). */
void xsyslog(int priority, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void xvsyslog(int priority, const char *event, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Log a failed system call at LOG_ERR: "<call> failed" with object and
 * errno text, e.g. xsyslog_syscall("open", "path", path) logs
 * "open failed path=<path> error=<strerror(errno)>".  The object goes
 * through log_escape(); with `key` or `object` NULL only error= is
 * given.  Preserves errno. */
void xsyslog_syscall(const char *call, const char *key, const char *object);

/* The most input bytes log_escape() keeps. */
#define LOG_ESCAPE_MAX 1024

/* Escape a client-supplied value for a log line: printable ASCII stays,
 * everything else (and '"', '\\', space, '=') becomes \xHH (upper-case
 * hex); long values are cut at `maxlen` bytes with "..." appended
 * (`maxlen` 0 or above LOG_ESCAPE_MAX means LOG_ESCAPE_MAX).  NULL gives
 * "(null)".  Returns a pointer into one of four rotating static buffers:
 * use it within the call, and escape at most four values per call. */
const char *log_escape(const char *s, size_t maxlen);

#endif /* COLUMBA_LIB_LOG_H */

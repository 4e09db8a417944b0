/* cyrus.conf: parse the master's service table (START, SERVICES, EVENTS,
 * DAEMON) into checked, typed entries. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_MASTER_MASTERCONF_H
#define COLUMBA_MASTER_MASTERCONF_H

#include <stddef.h>

#include "lib/strarray.h"

struct buf;

/* Bounds on what the parser accepts; going over any is an error that
 * names the file and line. */
#define MASTERCONF_MAX_FILE     (1024 * 1024)
#define MASTERCONF_MAX_LINE     4096
#define MASTERCONF_MAX_NAME     64
#define MASTERCONF_MAX_VALUE    2048
#define MASTERCONF_MAX_ARGS     64
#define MASTERCONF_MAX_ENTRIES  1024
#define MASTERCONF_MAX_KEYS     32

/* Default cyrus.conf when master gets no -M. */
#define MASTERCONF_DEFAULT_PATH SYSCONFDIR "/cyrus.conf"

enum masterconf_section {
    MASTERCONF_START = 0,
    MASTERCONF_SERVICES,
    MASTERCONF_EVENTS,
    MASTERCONF_DAEMON
};

enum masterconf_proto {
    MASTERCONF_PROTO_TCP = 0,   /* IPv6 dual-stack where possible, else v4 */
    MASTERCONF_PROTO_TCP4,
    MASTERCONF_PROTO_TCP6
};

/* A parsed listen= value. */
struct masterconf_listen {
    int is_unix;        /* a Unix socket path rather than host:port */
    char *path;         /* Unix socket path (absolute), or NULL */
    char *host;         /* host or address without brackets; NULL = any */
    char *port;         /* decimal port or /etc/services name */
};

/* One line of cyrus.conf after checking.  Fields that do not belong to
 * the entry's section keep their defaults. */
struct masterconf_entry {
    enum masterconf_section section;
    char *name;
    unsigned lineno;
    char *cmdline;              /* cmd= as written */
    strarray_t argv;            /* cmd= split into words */

    /* SERVICES */
    char *listen_raw;           /* listen= as written */
    struct masterconf_listen listen;
    enum masterconf_proto proto;
    int prefork;                /* idle children to keep; default 0 */
    int maxchild;               /* -1 = unlimited (default) */
    int maxfds;                 /* RLIMIT_NOFILE for children; 0 = keep */
    int maxforkrate;            /* forks per second; 0 = unlimited */
    int babysit;                /* keep one child ready at all times */

    /* EVENTS: period in seconds (0 = none), at = minutes after midnight
     * (-1 = none).  A bare period number means minutes. */
    long period;
    int at;

    /* DAEMON */
    int wait;                   /* start-up waits until the daemon is ready */
};

struct masterconf {
    char *path;
    struct masterconf_entry *entries;
    size_t count;
    strarray_t warnings;        /* "file:line: text" for unknown keys etc. */
};

/* Read and parse `path`.  On success *conf_r is a new table the caller
 * frees with masterconf_free().  On failure returns ERR_CONFIG (or
 * ERR_IO/ERR_TOOBIG for the file itself) and puts "file:line: reason"
 * into `why`. */
int masterconf_read(const char *path, struct masterconf **conf_r,
                    struct buf *why);

/* Parse `len` bytes of `text` as if read from `path` (used in messages
 * only).  Same contract as masterconf_read(). */
int masterconf_parse(const char *path, const char *text, size_t len,
                     struct masterconf **conf_r, struct buf *why);

/* Free a table and set *confp to NULL; NULL and *confp == NULL are
 * fine. */
void masterconf_free(struct masterconf **confp);

/* Find an entry by section and name, or NULL. */
const struct masterconf_entry *
masterconf_find(const struct masterconf *conf,
                enum masterconf_section section, const char *name);

/* Parse a listen= value: "[host:]port", "[v6addr]:port", "port",
 * a service name, or an absolute Unix socket path.  Fills *out (caller
 * releases with masterconf_listen_fini()).  Returns 0 or ERR_CONFIG with
 * the reason in `why`. */
int masterconf_parse_listen(const char *value, struct masterconf_listen *out,
                            struct buf *why);
void masterconf_listen_fini(struct masterconf_listen *l);

/* Split a command line into words: whitespace separates, '...' and "..."
 * group, backslash escapes the next character outside single quotes.
 * Appends to `argv`.  Returns 0 or ERR_CONFIG with the reason in `why`
 * (unbalanced quote, too many words, empty command). */
int masterconf_split_cmd(const char *cmd, strarray_t *argv, struct buf *why);

/* Do two SERVICES entries listen on the same socket (listen and proto
 * equal)? */
int masterconf_same_listener(const struct masterconf_entry *a,
                             const struct masterconf_entry *b);

/* Are two entries identical in every setting? */
int masterconf_same_entry(const struct masterconf_entry *a,
                          const struct masterconf_entry *b);

/* The section's name as written in cyrus.conf ("SERVICES"). */
const char *masterconf_section_name(enum masterconf_section section);

#endif /* COLUMBA_MASTER_MASTERCONF_H */

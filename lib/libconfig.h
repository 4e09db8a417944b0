/* imapd.conf: reading the file and looking up options by their enum.
 * The option table itself (names, types, defaults, descriptions) lives
 * in lib/imapopts.def; lib/imapopts.h declares enum imapopt from it. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_LIB_LIBCONFIG_H
#define COLUMBA_LIB_LIBCONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "lib/imapopts.h"

struct buf;
struct strarray;

/* Default path of imapd.conf when no -C is given. */
#define CONFIG_DEFAULT_PATH SYSCONFDIR "/imapd.conf"

/* Bounds on what config_read() accepts: bytes per line (without the
 * newline), bytes per file, @include nesting and files per read. */
#define CONFIG_MAX_LINE 4096
#define CONFIG_MAX_FILE (4 * 1024 * 1024)
#define CONFIG_MAX_INCLUDE_DEPTH 16
#define CONFIG_MAX_FILES 256

/* One row of the option table (lib/imapopts.def). */
struct imapopt_info {
    const char *name;           /* key in imapd.conf */
    enum imapopt_type type;
    const char *defvalue;       /* as it would be written; NULL: unset */
    const char *choices;        /* space-separated words, or NULL */
    char unit;                  /* bare-number unit of DURATION/BYTESIZE */
    unsigned flags;             /* OPTFLAG_* */
    const char *text;           /* one-line description */
};

/* Read `path` (CONFIG_DEFAULT_PATH when NULL) and everything it
 * @includes, replacing any earlier configuration.  `service` is the
 * service name from cyrus.conf (e.g. "imaps") used for per-service
 * overrides like imaps_tls_server_cert; NULL keeps the service set
 * earlier with config_set_service().  Every value is validated here.
 * On failure returns ERR_CONFIG (bad content, missing required option,
 * include loop...) or ERR_IO (unreadable file), sets *error_r to an
 * internal message naming file, line and option (valid until the next
 * read or config_reset()), and keeps the previous configuration.
 * Unknown options are not errors: they are logged at LOG_WARNING,
 * listed by config_warnings() and kept as free-form keys. */
int config_read(const char *path, const char *service, const char **error_r);

/* Like config_read(), but the top-level text is given in memory (`len`
 * bytes; NULs in it are rejected like in a file).  `name` (may be NULL)
 * is used in messages and as the base for relative @include paths.
 * Meant for tests and tools. */
int config_read_buffer(const char *name, const char *text, size_t len,
                       const char *service, const char **error_r);

/* Set the service name used for overrides before/after reading (NULL
 * for none); the effective values are recomputed at once. */
void config_set_service(const char *service);
/* The service name, or NULL. */
const char *config_service(void);

/* The path of the file read by config_read(), NULL before. */
const char *config_filename(void);

/* Typed lookups.  Each asserts (fatal) that `opt` has the matching type.
 * Before any successful config_read() they return the table defaults.
 * Strings are NULL when unset and have no default; returned strings
 * belong to the configuration and live until the next read, service
 * change or config_reset(). */
/* Works for STRING, STRINGLIST (the text as written), ENUM (the
 * choice, spelt as in the table) and BITFIELD (the text as written). */
const char *config_getstring(enum imapopt opt);
int64_t config_getint(enum imapopt opt);
int config_getswitch(enum imapopt opt);
/* The enum value's index in the option's list of choices. */
int config_getenum(enum imapopt opt);
/* Bitfield: bit i set when the i-th choice is listed. */
uint64_t config_getbitfield(enum imapopt opt);
/* Durations in seconds (a bare number means `defunit`: 's', 'm', 'h',
 * 'd'; 0 means the option's unit from the table).  A result that would
 * overflow with a larger `defunit` is clamped to INT64_MAX/INT64_MIN. */
int64_t config_getduration(enum imapopt opt, int defunit);
/* Byte sizes in bytes (a bare number means `defunit` as 'B', 'K', 'M',
 * 'G', 'T'; 0 means the option's unit).  Units are powers of 1024. */
int64_t config_getbytesize(enum imapopt opt, int defunit);
/* A string list (space or comma separated): new array, caller frees.
 * Empty when unset.  Also accepted for STRING and BITFIELD options. */
struct strarray *config_getstrarray(enum imapopt opt);

/* Values of option families and free-form keys. */
const char *config_partitiondir(const char *partition);
const char *config_metapartitiondir(const char *partition);
const char *config_archivepartitiondir(const char *partition);
/* Any key as written in the file (after service override), or NULL:
 * used for sasl_* and other pass-through families. */
const char *config_getoverflowstring(const char *key, const char *def);
/* Call cb for every key with the given prefix (e.g. "sasl_",
 * "partition-") with the part after the prefix and the value, in key
 * order.  With a service set, "<service>_<prefix>X" overrides (or adds)
 * X.  An empty prefix lists every key exactly as written. */
void config_foreach_prefix(const char *prefix,
                           void (*cb)(const char *key, const char *value,
                                      void *rock),
                           void *rock);

/* Shortcuts used everywhere. */
const char *config_dir(void);          /* configdirectory */
const char *config_defpartition(void); /* defaultpartition */

/* Was the option set in the file (rather than defaulted)? */
int config_isset(enum imapopt opt);

/* Is the effective value the same as the default (compared as parsed
 * values, so "on" equals "yes")?  True for unset options. */
int config_isdefault(enum imapopt opt);

/* The effective value of any option as text (the file's spelling, or
 * the default with {configdirectory} expanded), or NULL when unset. */
const char *config_gettext(enum imapopt opt);

/* Which file set `opt` (and at which line, into *line_r), or NULL when
 * it has its default. */
const char *config_source(enum imapopt opt, unsigned *line_r);

/* The "file:line: unknown option NAME" warnings of the last successful
 * read (empty before).  Owned by the configuration. */
const struct strarray *config_warnings(void);

/* Introspection for cyr_info and tests. */
/* The table row of `opt`, or NULL when out of range. */
const struct imapopt_info *config_optinfo(enum imapopt opt);
/* The option called `name`, or IMAPOPT_ZERO. */
enum imapopt config_lookup(const char *name);
/* "string", "int", ... for messages and documentation. */
const char *config_typename(enum imapopt_type type);

/* Forget the configuration and the service name (tests). */
void config_reset(void);

#endif /* COLUMBA_LIB_LIBCONFIG_H */

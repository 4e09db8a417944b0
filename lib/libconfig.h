/* imapd.conf: reading the file and looking up options by their enum.
 * The option table itself (names, types, defaults, descriptions) lives
 * in lib/imapopts.def; lib/imapopts.h declares enum imapopt from it. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_LIB_LIBCONFIG_H
#define COLUMBA_LIB_LIBCONFIG_H

#include <stdint.h>

#include "lib/imapopts.h"

struct buf;
struct strarray;

/* Default path of imapd.conf when no -C is given. */
#define CONFIG_DEFAULT_PATH SYSCONFDIR "/imapd.conf"

/* Read `path` (CONFIG_DEFAULT_PATH when NULL) and everything it
 * @includes, replacing any earlier configuration.  `service` is the
 * service name from cyrus.conf (e.g. "imaps") used for per-service
 * overrides like imaps_tls_server_cert, or NULL.  On failure returns a
 * project error code and sets *error_r to a static/internal message
 * naming file, line and option; warnings (unknown options) are logged. */
int config_read(const char *path, const char *service, const char **error_r);

/* Set the service name used for overrides before/after reading. */
void config_set_service(const char *service);
const char *config_service(void);

/* The path of the file read by config_read(). */
const char *config_filename(void);

/* Typed lookups.  Each asserts (fatal) that `opt` has the matching type.
 * Strings are NULL when unset and have no default. */
const char *config_getstring(enum imapopt opt);
int64_t config_getint(enum imapopt opt);
int config_getswitch(enum imapopt opt);
/* The enum value's index in the option's list of choices. */
int config_getenum(enum imapopt opt);
/* Bitfield: bit i set when the i-th choice is listed. */
uint64_t config_getbitfield(enum imapopt opt);
/* Durations in seconds (a bare number means `defunit`: 's', 'm', 'h',
 * 'd'). */
int64_t config_getduration(enum imapopt opt, int defunit);
/* Byte sizes in bytes (a bare number means `defunit` as 'B', 'K', 'M',
 * 'G'). */
int64_t config_getbytesize(enum imapopt opt, int defunit);
/* A string list (space or comma separated): new array, caller frees. */
struct strarray *config_getstrarray(enum imapopt opt);

/* Values of option families and free-form keys. */
const char *config_partitiondir(const char *partition);
const char *config_metapartitiondir(const char *partition);
const char *config_archivepartitiondir(const char *partition);
/* Any key as written in the file (after service override), or NULL:
 * used for sasl_* and other pass-through families. */
const char *config_getoverflowstring(const char *key, const char *def);
/* Call cb for every key with the given prefix (e.g. "sasl_",
 * "partition-") with the part after the prefix and the value. */
void config_foreach_prefix(const char *prefix,
                           void (*cb)(const char *key, const char *value,
                                      void *rock),
                           void *rock);

/* Shortcuts used everywhere. */
const char *config_dir(void);          /* configdirectory */
const char *config_defpartition(void); /* defaultpartition */

/* Was the option set in the file (rather than defaulted)? */
int config_isset(enum imapopt opt);

/* Forget the configuration (tests). */
void config_reset(void);

#endif /* COLUMBA_LIB_LIBCONFIG_H */

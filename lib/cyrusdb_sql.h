/* The sql cyrusdb backend: SQLite or PostgreSQL, by `sql_engine`. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_LIB_CYRUSDB_SQL_H
#define COLUMBA_LIB_CYRUSDB_SQL_H

#include <stddef.h>

#include "lib/cyrusdb.h"

struct buf;

/* The backend's function table, named "sql"; reached through
 * cyrusdb_open("sql", ...) in normal use. */
extern const struct cyrusdb_backend cyrusdb_sql;

/* Set `out` to the key as a mailbox-ordered sql database stores it: a
 * byte substitution of the same length whose byte order is mailbox
 * order (see the design comment in cyrusdb_sql.c). */
void cyrusdb_sql_mbox_sortkey(const char *key, size_t len, struct buf *out);

#endif /* COLUMBA_LIB_CYRUSDB_SQL_H */

/* Helpers shared by the unit tests: temporary directories and files. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_CUNIT_CUNIT_UTIL_H
#define COLUMBA_CUNIT_CUNIT_UTIL_H

#include <CUnit/CUnit.h>

/* Create a fresh empty directory under $TMPDIR (or /tmp) and return its
 * path; the caller frees it, and removes the tree with cunit_rmtree(). */
char *cunit_mktempdir(const char *tag);

/* Remove a directory tree; returns 0 on success, -1 on failure. */
int cunit_rmtree(const char *path);

/* Write `len` bytes of `data` to `path`, replacing it; returns 0 or -1. */
int cunit_write_file(const char *path, const char *data, size_t len);

#endif /* COLUMBA_CUNIT_CUNIT_UTIL_H */

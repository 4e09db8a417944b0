# The sql database backend (SQLite, PostgreSQL), the database admin tools
# (ctl_cyrusdb, cyr_dbtool, cvt_cyrusdb) and the database benchmark.
# lib/cyrusdb.c lists the sql backend when this is defined.
AM_CPPFLAGS += -DHAVE_CYRUSDB_SQL=1
lib_libcolumba_a_SOURCES += \
	lib/cyrusdb_sql.c lib/cyrusdb_sql.h lib/cyrusdb_sql_int.h \
	lib/cyrusdb_sql_sqlite.c
if HAVE_PGSQL
lib_libcolumba_a_SOURCES += lib/cyrusdb_sql_pg.c
endif

CUNIT_TESTS += \
	cunit/cyrusdb_sql.testc

sbin_PROGRAMS += imap/ctl_cyrusdb imap/cyr_dbtool imap/cvt_cyrusdb
imap_ctl_cyrusdb_SOURCES = imap/ctl_cyrusdb.c
imap_ctl_cyrusdb_LDADD = $(LIB_LIBS)
imap_cyr_dbtool_SOURCES = imap/cyr_dbtool.c
imap_cyr_dbtool_LDADD = $(LIB_LIBS)
imap_cvt_cyrusdb_SOURCES = imap/cvt_cyrusdb.c
imap_cvt_cyrusdb_LDADD = $(LIB_LIBS)

noinst_PROGRAMS += tools/bench/dbbench
tools_bench_dbbench_SOURCES = tools/bench/dbbench.c
tools_bench_dbbench_LDADD = $(LIB_LIBS)
if HAVE_LMDB
tools_bench_dbbench_CFLAGS = $(AM_CFLAGS) $(LMDB_CFLAGS)
tools_bench_dbbench_LDADD += $(LMDB_LIBS)
endif

# master/: the supervisor and the service-child loop.

# The service loop every daemon links (it supplies main()), plus the
# status-pipe helpers it shares with the master.
noinst_LIBRARIES += master/libservice.a
master_libservice_a_SOURCES = \
	master/service.c master/service.h \
	master/service_status.c

libexec_PROGRAMS += master/master
master_master_SOURCES = \
	master/master.c master/master.h \
	master/masterconf.c master/masterconf.h \
	master/process.c \
	master/service_table.c \
	master/events.c
master_master_LDADD = $(LIB_LIBS)

# cyr_buildinfo: the features compiled in, as JSON.
sbin_PROGRAMS += imap/cyr_buildinfo
imap_cyr_buildinfo_SOURCES = imap/cyr_buildinfo.c
imap_cyr_buildinfo_LDADD = $(LIB_LIBS)

# A line-echo service on the real service loop, for tests/test_master.py.
noinst_PROGRAMS += tests/svc/echod
tests_svc_echod_SOURCES = tests/svc/echod.c
tests_svc_echod_LDADD = master/libservice.a $(LIB_LIBS)

CUNIT_TESTS += cunit/masterconf.testc
CUNIT_EXTRA_SOURCES += master/masterconf.c master/masterconf.h

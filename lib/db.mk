# lib/ db modules: the cyrusdb dispatcher and its file backends.
lib_libcolumba_a_SOURCES += \
	lib/mappedfile.c lib/mappedfile.h \
	lib/cyrusdb.c lib/cyrusdb.h \
	lib/cyrusdb_twoskip.c lib/cyrusdb_twoskip_recover.c \
	lib/cyrusdb_twoskip_int.h \
	lib/cyrusdb_flat.c \
	lib/cyrusdb_quotalegacy.c

CUNIT_TESTS += \
	cunit/cyrusdb.testc \
	cunit/cyrusdb_crash.testc \
	cunit/cyrusdb_multiproc.testc \
	cunit/twoskip.testc

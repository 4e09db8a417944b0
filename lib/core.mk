# lib/ core modules: memory, buffers, arrays, errors and friends.
lib_libcolumba_a_SOURCES += \
	lib/charset.c lib/charset.h \
	lib/xmalloc.c lib/xmalloc.h \
	lib/buf.c lib/buf.h \
	lib/strarray.c lib/strarray.h \
	lib/error.c lib/error.h \
	lib/log.c lib/log.h \
	lib/util.c lib/util.h \
	lib/retry.c lib/retry.h \
	lib/hash.c lib/hash.h \
	lib/times.c lib/times.h \
	lib/cyr_lock.c lib/cyr_lock.h \
	lib/signals.c lib/signals.h \
	lib/privs.c lib/privs.h

CUNIT_TESTS += \
	cunit/charset.testc \
	cunit/buf.testc \
	cunit/strarray.testc \
	cunit/xmalloc.testc \
	cunit/error.testc \
	cunit/log.testc \
	cunit/util.testc \
	cunit/retry.testc \
	cunit/hash.testc \
	cunit/times.testc \
	cunit/cyr_lock.testc \
	cunit/signals.testc

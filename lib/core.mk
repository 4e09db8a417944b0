# lib/ core modules: memory, buffers, arrays, errors and friends.
lib_libcolumba_a_SOURCES += \
	lib/xmalloc.c lib/xmalloc.h \
	lib/buf.c lib/buf.h \
	lib/strarray.c lib/strarray.h \
	lib/error.c lib/error.h

CUNIT_TESTS += \
	cunit/buf.testc

# lib/ prot modules: buffered network I/O, TLS, COMPRESS=DEFLATE.
lib_libcolumba_a_SOURCES += \
	lib/prot.c lib/prot.h \
	lib/tls.c lib/tls.h \
	lib/tls_config.c

CUNIT_TESTS += \
	cunit/prot.testc \
	cunit/tls.testc

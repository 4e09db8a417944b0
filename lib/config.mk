# lib/ config modules: the imapd.conf option table and parser, and the
# cyr_info admin tool that prints and checks a configuration.
lib_libcolumba_a_SOURCES += \
	lib/libconfig.c lib/libconfig.h \
	lib/imapopts.h
EXTRA_DIST += lib/imapopts.def

CUNIT_TESTS += \
	cunit/libconfig.testc

sbin_PROGRAMS += imap/cyr_info
imap_cyr_info_SOURCES = imap/cyr_info.c
imap_cyr_info_LDADD = $(LIB_LIBS)

# The option reference is generated from the table; run
# `make imapd-conf-doc` after changing lib/imapopts.def and commit the
# result.
EXTRA_DIST += docsrc/reference/imapd.conf.rst

imapd-conf-doc: imap/cyr_info
	./imap/cyr_info conf-doc > $(srcdir)/docsrc/reference/imapd.conf.rst.tmp
	mv $(srcdir)/docsrc/reference/imapd.conf.rst.tmp \
	    $(srcdir)/docsrc/reference/imapd.conf.rst

.PHONY: imapd-conf-doc

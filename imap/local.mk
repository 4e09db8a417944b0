# imap/: the mail store, protocol daemons and admin tools.

# Charset and Unicode support lives in lib/ (it knows nothing of mail
# structure) but is listed here with the message parser that drives it.
lib_libcolumba_a_SOURCES += \
	lib/charset.c lib/charset.h

# The mail-store library every imap/ program and the unit tests link.
noinst_LIBRARIES += imap/libimap.a
imap_libimap_a_SOURCES = \
	imap/message.c imap/message.h
CUNIT_EXTRA_LIBS += imap/libimap.a

# msgdump: print ENVELOPE and BODYSTRUCTURE of message files (tests).
noinst_PROGRAMS += imap/msgdump
imap_msgdump_SOURCES = imap/msgdump.c
imap_msgdump_LDADD = imap/libimap.a $(LIB_LIBS)

CUNIT_TESTS += \
	cunit/charset.testc \
	cunit/message.testc

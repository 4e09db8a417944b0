# imap/: the mail store, protocol daemons and admin tools.

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
	cunit/message.testc

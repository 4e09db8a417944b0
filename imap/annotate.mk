# imap/annotate: annotations and metadata (RFC 5464) in annotations.db.

imap_libimap_a_SOURCES += \
	imap/annotate.c imap/annotate.h

CUNIT_TESTS += \
	cunit/annotate.testc

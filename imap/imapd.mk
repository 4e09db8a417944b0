# imap/imapd: the IMAP server (service child of master), its command
# tokenizer and its tests.

imap_libimap_a_SOURCES += \
	imap/imap_parse.c imap/imap_parse.h \
	imap/authserver.c imap/authserver.h

libexec_PROGRAMS += imap/imapd
imap_imapd_SOURCES = \
	imap/imapd.c imap/imapd.h \
	imap/imap_cmd_auth.c \
	imap/imap_cmd_mailbox.c \
	imap/imap_cmd_select.c \
	imap/imap_cmd_fetch.c \
	imap/imap_cmd_search.c \
	imap/imap_cmd_sort.c \
	imap/imap_cmd_quota.c \
	imap/imap_cmd_metadata.c \
	imap/imap_cmd_urlauth.c
imap_imapd_LDADD = imap/libimap.a master/libservice.a $(LIB_LIBS)

CUNIT_TESTS += cunit/imap_parse.testc
# IMAP URLs (RFC 5092) for CATENATE and URLAUTH.
imap_libimap_a_SOURCES += imap/imapurl.c imap/imapurl.h
CUNIT_TESTS += cunit/imapurl.testc
CUNIT_TESTS += cunit/threading.testc
imap_libimap_a_SOURCES += imap/threading.c imap/threading.h

# File change notification for IDLE.
imap_libimap_a_SOURCES += imap/mboxwatch.c imap/mboxwatch.h
CUNIT_TESTS += cunit/mboxwatch.testc


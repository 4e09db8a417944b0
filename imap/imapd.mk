# imap/imapd: the IMAP server (service child of master), its command
# tokenizer and its tests.

imap_libimap_a_SOURCES += \
	imap/imap_parse.c imap/imap_parse.h

libexec_PROGRAMS += imap/imapd
imap_imapd_SOURCES = \
	imap/imapd.c imap/imapd.h \
	imap/imap_cmd_auth.c \
	imap/imap_cmd_mailbox.c \
	imap/imap_cmd_select.c \
	imap/imap_cmd_fetch.c \
	imap/imap_cmd_search.c \
	imap/imap_cmd_quota.c
imap_imapd_LDADD = imap/libimap.a master/libservice.a $(LIB_LIBS)

CUNIT_TESTS += cunit/imap_parse.testc


# imap/mailbox*: mailboxes on disk (cyrus.header, cyrus.index,
# cyrus.cache and the message files).

imap_libimap_a_SOURCES += \
	imap/mailbox.c imap/mailbox.h imap/mailbox_internal.h \
	imap/mailbox_index.c imap/mailbox_cache.c imap/mailbox_append.c

CUNIT_TESTS += \
	cunit/mailbox.testc

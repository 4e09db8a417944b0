# imap/mboxlist: the mailbox list (mailboxes.db) and the hub for mailbox
# create, delete, rename and ACL changes.

imap_libimap_a_SOURCES += \
	imap/mboxlist.c imap/mboxlist.h

CUNIT_TESTS += \
	cunit/mboxlist.testc

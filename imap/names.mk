# imap/: mailbox names and namespaces, ACLs, partitions and their
# selection (the naming and rights layer of the mail store).

imap_libimap_a_SOURCES += \
	imap/mboxname.c imap/mboxname.h \
	imap/acl.c imap/acl.h \
	imap/partlist.c imap/partlist.h

CUNIT_TESTS += \
	cunit/mboxname.testc \
	cunit/acl.testc \
	cunit/partlist.testc

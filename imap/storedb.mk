# imap/: the mail store's databases on cyrusdb: quotas, seen state,
# subscriptions, duplicate delivery suppression, the user deny list, and
# the IMAP sequence sets the seen state is made of.

imap_libimap_a_SOURCES += \
	imap/userdb.c imap/userdb.h \
	imap/seqset.c imap/seqset.h \
	imap/quota.c imap/quota.h \
	imap/seen.c imap/seen.h \
	imap/subscription.c imap/subscription.h \
	imap/duplicate.c imap/duplicate.h \
	imap/userdeny.c imap/userdeny.h

CUNIT_TESTS += \
	cunit/seqset.testc \
	cunit/quota.testc \
	cunit/seen.testc \
	cunit/subscription.testc \
	cunit/duplicate.testc \
	cunit/userdeny.testc

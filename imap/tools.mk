# imap/: offline tools for the mail store: reconstruct (rebuild a
# mailbox's metadata files), mbpath (where a mailbox lives), mbexamine
# (dump a mailbox's index and cache), and the test helper mkmbox.

imap_libimap_a_SOURCES += \
	imap/mailbox_reconstruct.c imap/mailbox_reconstruct.h

sbin_PROGRAMS += imap/reconstruct imap/mbpath imap/mbexamine

imap_reconstruct_SOURCES = imap/reconstruct.c
imap_reconstruct_LDADD = imap/libimap.a $(LIB_LIBS)

imap_mbpath_SOURCES = imap/mbpath.c
imap_mbpath_LDADD = imap/libimap.a $(LIB_LIBS)

imap_mbexamine_SOURCES = imap/mbexamine.c
imap_mbexamine_LDADD = imap/libimap.a $(LIB_LIBS)

# mkmbox: create mailboxes and append message files without a server
# (end-to-end tests of the store tools).
noinst_PROGRAMS += imap/mkmbox
imap_mkmbox_SOURCES = imap/mkmbox.c
imap_mkmbox_LDADD = imap/libimap.a $(LIB_LIBS)

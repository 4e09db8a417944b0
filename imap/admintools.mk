# imap/: the offline admin tools that work on mailboxes.db, the mailbox
# files, quotas, the duplicate database and the user deny list.

sbin_PROGRAMS += imap/ctl_mboxlist imap/quota imap/ipurge imap/cyr_expire \
	imap/unexpunge imap/cyr_deny

imap_ctl_mboxlist_SOURCES = imap/ctl_mboxlist.c
imap_ctl_mboxlist_LDADD = imap/libimap.a $(LIB_LIBS)

imap_quota_SOURCES = imap/quota_tool.c
imap_quota_LDADD = imap/libimap.a $(LIB_LIBS)

imap_ipurge_SOURCES = imap/ipurge.c
imap_ipurge_LDADD = imap/libimap.a $(LIB_LIBS)

imap_cyr_expire_SOURCES = imap/cyr_expire.c
imap_cyr_expire_LDADD = imap/libimap.a $(LIB_LIBS)

imap_unexpunge_SOURCES = imap/unexpunge.c
imap_unexpunge_LDADD = imap/libimap.a $(LIB_LIBS)

imap_cyr_deny_SOURCES = imap/cyr_deny.c
imap_cyr_deny_LDADD = imap/libimap.a $(LIB_LIBS)

# mkstore_admin: builds mailboxes, messages, expunges, quota roots and
# duplicate marks for tests/test_admin_tools.py.
noinst_PROGRAMS += imap/mkstore_admin
imap_mkstore_admin_SOURCES = imap/mkstore_admin.c
imap_mkstore_admin_LDADD = imap/libimap.a $(LIB_LIBS)

# imap/lmtpd: LMTP delivery (RFC 2033) and deliver, the pipe-to-LMTP
# program for MTAs that pipe.

# The DATA reader (dot-unstuffing spooler) lives in the library so the
# unit tests reach it.
imap_libimap_a_SOURCES += imap/lmtp_spool.c imap/lmtp_spool.h

libexec_PROGRAMS += imap/lmtpd
imap_lmtpd_SOURCES = \
	imap/lmtpd.c imap/lmtpd.h \
	imap/lmtpd_deliver.c \
	imap/lmtpd_sieve.c
imap_lmtpd_LDADD = sieve/libsieve.a imap/libimap.a master/libservice.a \
	$(LIB_LIBS)

# deliver is a tool run by MTAs and administrators, installed with the
# admin tools in sbin, where Debian's Cyrus package also offers it (as
# cyrdeliver); lmtpd is a daemon and goes to libexec with the others.
sbin_PROGRAMS += imap/deliver
imap_deliver_SOURCES = imap/deliver.c
imap_deliver_LDADD = imap/libimap.a $(LIB_LIBS)

CUNIT_TESTS += cunit/lmtp_spool.testc

# sieve/timsieved: the ManageSieve server (RFC 5804), and sievedir, the
# script store it shares with lmtpd.

# sievedir reaches the spool's hash letters (imap/mboxname), so it lives
# in the store library that lmtpd and the unit tests link.
imap_libimap_a_SOURCES += sieve/sievedir.c sieve/sievedir.h
CUNIT_TESTS += cunit/sievedir.testc

libexec_PROGRAMS += sieve/timsieved
sieve_timsieved_SOURCES = \
	sieve/timsieved.c sieve/timsieved.h \
	sieve/timsieved_parse.c \
	sieve/timsieved_script.c
sieve_timsieved_LDADD = sieve/libsieve.a imap/libimap.a \
	master/libservice.a $(LIB_LIBS)

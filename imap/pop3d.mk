# imap/pop3d: the POP3 server (RFC 1939, RFC 2449, RFC 5034).

libexec_PROGRAMS += imap/pop3d
imap_pop3d_SOURCES = \
	imap/pop3d.c imap/pop3d.h \
	imap/pop3d_maildrop.c
imap_pop3d_LDADD = imap/libimap.a master/libservice.a $(LIB_LIBS)

# imap/lmtpd: LMTP delivery (RFC 2033) and deliver, the pipe-to-LMTP
# program for MTAs that pipe.

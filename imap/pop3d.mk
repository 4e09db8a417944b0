# imap/pop3d: the POP3 server (RFC 1939, RFC 2449, RFC 5034).

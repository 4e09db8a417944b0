# imap/: the mail store, protocol daemons and admin tools.

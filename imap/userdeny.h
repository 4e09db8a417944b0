/* The user deny list: users an administrator has shut out of some or
 * all services, with the message they are given. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_IMAP_USERDENY_H
#define COLUMBA_IMAP_USERDENY_H

/* Longest service list and message stored, in bytes. */
#define USERDENY_SERVICES_MAX 1024
#define USERDENY_MESSAGE_MAX 1024

/* The message given when an entry has none. */
#define USERDENY_DEFAULT_MESSAGE "Access to this service has been blocked"

/*
 * SERVICE PATTERNS
 *
 * A comma-separated list of patterns matched against the service name
 * ("imap", "pop3", "lmtp", "sieve", "http", ...; the name from
 * cyrus.conf), compared without regard to ASCII case.  In a pattern
 * "*" matches any run of bytes and "?" any one byte.  A pattern
 * starting with "!" excludes what it matches.  The patterns are read
 * left to right and the last one that matches decides: "*,!lmtp"
 * denies every service except lmtp; "imap,pop3" denies only those two;
 * "!imap" alone denies nothing.  An empty list means "*".  Spaces
 * around patterns are ignored.
 */

/* Does the pattern list `patterns` deny `service`?  Returns 1 or 0. */
int userdeny_match_services(const char *patterns, const char *service);

/* May `userid` use `service`?  Returns 0 when allowed, or
 * ERR_PERMISSION when denied, with a malloc'd message for the client in
 * *msg_r (the caller frees it; NULL msg_r is fine).  An entry that cannot
 * be read denies with USERDENY_DEFAULT_MESSAGE (logged): the
 * administrator meant to shut the user out.  A missing or unusable
 * database allows everyone (logged), so a damaged file cannot lock every
 * user out of the server. */
int userdeny_check(const char *userid, const char *service, char **msg_r);

/* Deny `userid` the services matching `services` (NULL or "" for all)
 * with `message` (NULL or "" for the default).  Replaces any entry.
 * Returns 0, ERR_INVALID for a bad user id or a list or message that is
 * too long or holds a TAB, CR or LF, or a database error. */
int userdeny_set(const char *userid, const char *services,
                 const char *message);

/* Remove `userid`'s entry.  Returns 0 or ERR_NOTFOUND. */
int userdeny_remove(const char *userid);

/* Called by userdeny_foreach for each entry; strings are valid for the
 * call only.  A non-zero return stops the walk and is returned. */
typedef int userdeny_cb(const char *userid, const char *services,
                        const char *message, void *rock);

/* Call `cb` for every entry in user order (cyr_deny -l); damaged
 * entries are logged and skipped.  A missing database lists nothing. */
int userdeny_foreach(userdeny_cb *cb, void *rock);

#endif /* COLUMBA_IMAP_USERDENY_H */

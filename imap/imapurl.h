/* IMAP URLs (RFC 5092) as CATENATE, URLAUTH and URLFETCH use them:
 * parsing into parts with percent-decoding, and the URLAUTH rump. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_IMAP_IMAPURL_H
#define COLUMBA_IMAP_IMAPURL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "lib/buf.h"

/*
 * Forms accepted (keywords in any case; the "?search" form of
 * RFC 5092 is refused):
 *
 *   imap://[user[;AUTH=type]@]host[:port]/mailbox[;UIDVALIDITY=n]
 *       /;UID=n[/;SECTION=s][/;PARTIAL=start[.length]]
 *       [;EXPIRE=date-time][;URLAUTH=access[:mech:token]]
 *   /mailbox[;UIDVALIDITY=n]/;UID=n...      (relative to the server)
 *   ;UID=n...  or  /;UID=n...               (relative to a mailbox)
 *
 * Every part is percent-decoded; a decoded part holding NUL or a part
 * longer than IMAPURL_PART_MAX is refused.  The URL itself is at most
 * IMAPURL_MAX bytes.
 */

/* Longest URL accepted, and longest single part after decoding. */
#define IMAPURL_MAX 8192
#define IMAPURL_PART_MAX 1024

struct imapurl {
    char *user;                 /* iuserinfo, NULL when absent */
    char *auth;                 /* ;AUTH= value ("*" or a type) */
    char *host;                 /* host[:port], NULL when relative */
    char *mailbox;              /* UTF-8, NULL for ";UID=" alone */
    uint32_t uidvalidity;       /* 0 when absent */
    uint32_t uid;               /* 0 when absent */
    char *section;              /* NULL when absent */
    int has_partial;
    uint32_t partial_start;
    uint32_t partial_len;       /* 0: to the end */
    int has_expire;
    time_t expire;
    char *access;               /* URLAUTH access identifier */
    char *mech;                 /* URLAUTH mechanism, NULL in a rump */
    char *token;                /* hex token, NULL in a rump */
    size_t rump_len;            /* bytes of the URL before ":mech:token"
                                 * (the whole URL for a rump); 0 without
                                 * URLAUTH */
};

/* Parse the `len` bytes at `url` into *u (zeroed first; release with
 * imapurl_fini(), also after an error).  Returns 0, or ERR_INVALID with
 * a static reason in *error_r (may be NULL). */
int imapurl_parse(const char *url, size_t len, struct imapurl *u,
                  const char **error_r);

/* Release the strings of `u` and zero it. */
void imapurl_fini(struct imapurl *u);

/* Is `access` a URLAUTH access identifier (RFC 4467 "submit+user",
 * "user+user", "authuser", "anonymous"; keywords in any case)? */
int imapurl_access_is_valid(const char *access);

/* Append `str` percent-encoded for use as a URL part (RFC 5092 achar:
 * unreserved, "&", "=", "~" and, when `keep_slash`, "/" are kept). */
void imapurl_encode(const char *str, int keep_slash, struct buf *out);

#endif /* COLUMBA_IMAP_IMAPURL_H */

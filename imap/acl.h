/* Access control lists: the RFC 4314 rights letters as Cyrus uses them,
 * the ACL string kept in mailboxes.db, and a user's rights on a mailbox. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_IMAP_ACL_H
#define COLUMBA_IMAP_ACL_H

#include <stdint.h>

#include "lib/buf.h"
#include "lib/strarray.h"

/*
 * Rights (RFC 4314 section 2.1, Cyrus letters):
 *
 *   l lookup        r read          s keep seen     w write flags
 *   i insert        p post          k create child  x delete mailbox
 *   t delete msgs   e expunge       a administer    n write annotations
 *   0-9 site-defined rights with no meaning to the server
 *
 * Obsolete composite rights of RFC 2086, accepted for old clients:
 *   c  means k, plus x when deleteright is "c" (the default)
 *   d  means t e, plus x when deleteright is "d"
 * A composite letter is only expanded when none of its member rights is
 * given explicitly in the same string ("ck" is just k).  When rights are
 * shown, c (d) is added whenever any of its members is held.  A
 * deleteright of any other single letter also grants x.
 *
 * Stored format (the mailboxes.db ACL field, as Cyrus): a sequence of
 *
 *   identifier TAB rights TAB
 *
 * pairs, e.g. "alice\tlrswipkxtecda\tanyone\tlr\t".  The final TAB may be
 * missing on input; it is always written.  An identifier is a user id,
 * "anyone" (every session, anonymous included), "anonymous" (only the
 * anonymous session) or "group:NAME"; a leading '-' makes the entry
 * negative: its rights are taken away from what the positive entries
 * grant.  Identifiers are compared exactly (callers canonicalise user ids
 * first, see mboxname_canonical_userid()).
 */

#define ACL_LOOKUP       0x000001u
#define ACL_READ         0x000002u
#define ACL_SETSEEN      0x000004u
#define ACL_WRITE        0x000008u
#define ACL_INSERT       0x000010u
#define ACL_POST         0x000020u
#define ACL_CREATE       0x000040u
#define ACL_DELETEMBOX   0x000080u
#define ACL_DELETEMSG    0x000100u
#define ACL_EXPUNGE      0x000200u
#define ACL_ADMIN        0x000400u
#define ACL_ANNOTATEMSG  0x000800u
#define ACL_USER0        0x001000u   /* '0'; '1'..'9' follow in order */

/* Every right with a meaning to the server. */
#define ACL_ALL          0x000fffu
/* ACL_ALL and the ten site-defined rights. */
#define ACL_FULL         0x3fffffu

/* Longest rights string accepted (bounded parsing). */
#define ACL_RIGHTS_MAX   64
/* Longest identifier accepted. */
#define ACL_IDENTIFIER_MAX 300
/* Longest stored ACL string accepted. */
#define ACL_STRING_MAX   (64 * 1024)

/* How acl_set() combines new rights with an entry's old ones (SETACL
 * "rights", "+rights", "-rights"). */
enum acl_mode {
    ACL_MODE_SET = 0,
    ACL_MODE_ADD,
    ACL_MODE_REMOVE
};

/* Who is asking: kept small on purpose.  Filled at login. */
struct auth_state {
    char *userid;       /* canonical user id; NULL or "anonymous" for the
                         * anonymous session */
    strarray_t groups;  /* group names, without "group:" */
    int is_admin;       /* listed in admins: always has l and a */
};

/* A new auth state for `userid` (copied; NULL for anonymous).  Free with
 * acl_auth_free(). */
struct auth_state *acl_auth_new(const char *userid, int is_admin);

/* Add membership of group `group` (without "group:"). */
void acl_auth_add_group(struct auth_state *auth, const char *group);

/* Free and clear *authp; NULL is accepted. */
void acl_auth_free(struct auth_state **authp);

/* Is the session anonymous? */
int acl_auth_is_anonymous(const struct auth_state *auth);

/* Does `identifier` (without a leading '-') name this session: its user
 * id, "anyone", "anonymous" for the anonymous session, or a group it is
 * in? */
int acl_auth_is_member(const struct auth_state *auth,
                       const char *identifier);

/* Parse a rights string into a mask, expanding c and d as described
 * above.  Returns 0, or ERR_INVALID for an unknown character or a string
 * longer than ACL_RIGHTS_MAX (then *rights_r is untouched and, when
 * `bad_r` is set, *bad_r is the offending character or 0 for length). */
int acl_rights_parse(const char *s, uint32_t *rights_r, char *bad_r);

/* Append the canonical letters of `rights` to `out` (order
 * "lrswipkxtecdan0123456789", c and d as described above). */
void acl_rights_format(uint32_t rights, struct buf *out);

/* Is `identifier` acceptable in an ACL (1 to ACL_IDENTIFIER_MAX printable
 * ASCII bytes, at most one leading '-', something after "-" and
 * "group:")? */
int acl_identifier_is_valid(const char *identifier);

/* One entry of a parsed ACL. */
struct acl_entry {
    char *identifier;   /* with the leading '-' of a negative entry */
    uint32_t rights;
};

/* A parsed ACL; all-zero (ACL_INITIALIZER) is an empty one. */
struct acl {
    int count;
    int alloc;
    struct acl_entry *entries;
};

#define ACL_INITIALIZER { 0, 0, NULL }

/* Parse the stored form `s` into `acl` (emptied first).  NULL and "" are
 * empty ACLs.  Returns 0, or ERR_CORRUPT for a missing rights field, an
 * invalid identifier or rights, or a string over ACL_STRING_MAX (`acl`
 * is then empty). */
int acl_parse(const char *s, struct acl *acl);

/* Replace the contents of `out` with the stored form of `acl`. */
void acl_format(const struct acl *acl, struct buf *out);

/* Release the entries, leaving an empty ACL. */
void acl_fini(struct acl *acl);

/* The rights of the entry for exactly `identifier`, 0 when absent. */
uint32_t acl_get(const struct acl *acl, const char *identifier);

/* Change the entry for `identifier` as `mode` says; an entry left with no
 * rights is removed, a new one is appended.  Returns 0 or ERR_INVALID for
 * a bad identifier. */
int acl_set(struct acl *acl, const char *identifier, enum acl_mode mode,
            uint32_t rights);

/* Remove the entry for `identifier`.  Returns 0 or ERR_NOTFOUND. */
int acl_remove(struct acl *acl, const char *identifier);

/* Apply a SETACL to a stored ACL string: `rights` is "lrs", "+lrs" or
 * "-lrs" (an empty SET removes the entry).  *aclstr (malloc'd, may be
 * NULL) is replaced by a new string.  Returns 0, ERR_INVALID (bad
 * identifier or rights) or ERR_CORRUPT (stored string unreadable);
 * *aclstr is unchanged on failure. */
int acl_setacl_string(char **aclstr, const char *identifier,
                      const char *rights);

/* The rights implied for every owner of a personal mailbox: the
 * implicit_owner_rights option (default "lkxan"; an invalid value is
 * logged and the default used). */
uint32_t acl_implicit_owner_rights(void);

/* The rights of `auth` on mailbox `intname` (internal name; NULL when it
 * does not matter) whose stored ACL is `aclstr`: the union of the
 * positive entries naming the session less the union of the negative
 * ones, then l and a for admins and acl_implicit_owner_rights() for the
 * owner of a personal mailbox (negative entries cannot take those away).
 * Returns 0, or ERR_CORRUPT when the stored ACL is unreadable: then only
 * the implied rights are given.  A NULL `auth` is the anonymous
 * session. */
int acl_myrights(const struct auth_state *auth, const char *aclstr,
                 const char *intname, uint32_t *rights_r);

/* The data of a LISTRIGHTS response (RFC 4314 3.7) for `identifier` on
 * `intname`, appended to `out`: first the rights always granted ("" when
 * none; implicit_owner_rights for the mailbox owner), then each right
 * that may be granted, one letter per element, c and d last. */
void acl_listrights(const char *identifier, const char *intname,
                    strarray_t *out);

#endif /* COLUMBA_IMAP_ACL_H */

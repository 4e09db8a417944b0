/* Access control lists: the RFC 4314 rights letters as Cyrus uses them,
 * the ACL string kept in mailboxes.db, and a user's rights on a mailbox. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "lib/buf.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/strarray.h"
#include "lib/xmalloc.h"

#include "imap/acl.h"
#include "imap/mboxname.h"

/* The plain letters in display order and their bits. */
static const struct {
    char letter;
    uint32_t bit;
} rights_table[] = {
    { 'l', ACL_LOOKUP }, { 'r', ACL_READ }, { 's', ACL_SETSEEN },
    { 'w', ACL_WRITE }, { 'i', ACL_INSERT }, { 'p', ACL_POST },
    { 'k', ACL_CREATE }, { 'x', ACL_DELETEMBOX },
    { 't', ACL_DELETEMSG }, { 'e', ACL_EXPUNGE },
    { 'a', ACL_ADMIN }, { 'n', ACL_ANNOTATEMSG },
};

#define NRIGHTS (sizeof(rights_table) / sizeof(rights_table[0]))

/* The default of implicit_owner_rights, used when the option is bad. */
#define IMPLICIT_OWNER_DEFAULT "lkxan"

/* The bit of plain letter or digit `c`, 0 when it is not one. */
static uint32_t letter_bit(char c)
{
    size_t i;

    if (c >= '0' && c <= '9')
        return ACL_USER0 << (c - '0');
    for (i = 0; i < NRIGHTS; i++) {
        if (rights_table[i].letter == c)
            return rights_table[i].bit;
    }
    return 0;
}

/* The members of the composite rights under the current deleteright. */
static void composite_members(uint32_t *create_r, uint32_t *delete_r,
                              char *deleteright_r)
{
    const char *dr = config_getstring(IMAPOPT_DELETERIGHT);

    *create_r = ACL_CREATE;
    *delete_r = ACL_DELETEMSG | ACL_EXPUNGE;
    *deleteright_r = dr ? dr[0] : '\0';
    if (*deleteright_r == 'c')
        *create_r |= ACL_DELETEMBOX;
    else if (*deleteright_r == 'd')
        *delete_r |= ACL_DELETEMBOX;
}

int acl_rights_parse(const char *s, uint32_t *rights_r, char *bad_r)
{
    uint32_t create, delete, result = 0, bit;
    int saw_c = 0, saw_d = 0;
    char dr;

    if (!s || strlen(s) > ACL_RIGHTS_MAX) {
        if (bad_r)
            *bad_r = '\0';
        return ERR_INVALID;
    }
    composite_members(&create, &delete, &dr);

    for (; *s; s++) {
        bit = letter_bit(*s);
        if (*s == 'c')
            saw_c = 1;
        else if (*s == 'd')
            saw_d = 1;
        else if (!bit) {
            if (bad_r)
                *bad_r = *s;
            return ERR_INVALID;
        }
        result |= bit;
        if (*s == dr && dr != 'c' && dr != 'd')
            result |= ACL_DELETEMBOX;
    }

    /* A composite right stands for its members only when the client
     * named none of them itself (RFC 4314 2.1.1). */
    if (saw_c && !(result & create))
        result |= create;
    if (saw_d && !(result & delete))
        result |= delete;
    *rights_r = result;
    return 0;
}

void acl_rights_format(uint32_t rights, struct buf *out)
{
    uint32_t create, delete;
    size_t i;
    char dr;
    int d;

    composite_members(&create, &delete, &dr);
    for (i = 0; i < NRIGHTS; i++) {
        if (rights_table[i].letter == 'a') {
            /* c and d go between e and a, as Cyrus shows them. */
            if (rights & create)
                buf_putc(out, 'c');
            if (rights & delete)
                buf_putc(out, 'd');
        }
        if (rights & rights_table[i].bit)
            buf_putc(out, rights_table[i].letter);
    }
    for (d = 0; d < 10; d++) {
        if (rights & (ACL_USER0 << d))
            buf_putc(out, (char)('0' + d));
    }
}

int acl_identifier_is_valid(const char *identifier)
{
    const unsigned char *p;
    size_t len;

    if (!identifier)
        return 0;
    len = strlen(identifier);
    if (!len || len > ACL_IDENTIFIER_MAX)
        return 0;
    for (p = (const unsigned char *)identifier; *p; p++) {
        if (*p <= 0x20 || *p >= 0x7f)
            return 0;
    }
    if (identifier[0] == '-')
        identifier++;
    if (!*identifier || *identifier == '-')
        return 0;
    if (!strncmp(identifier, "group:", 6) && !identifier[6])
        return 0;
    return 1;
}

/* ---- auth state ---- */

struct auth_state *acl_auth_new(const char *userid, int is_admin)
{
    struct auth_state *auth = xzmalloc(sizeof(*auth));

    auth->userid = userid ? xstrdup(userid) : NULL;
    auth->is_admin = is_admin ? 1 : 0;
    return auth;
}

void acl_auth_add_group(struct auth_state *auth, const char *group)
{
    strarray_add(&auth->groups, group);
}

void acl_auth_free(struct auth_state **authp)
{
    struct auth_state *auth;

    if (!authp || !*authp)
        return;
    auth = *authp;
    *authp = NULL;
    free(auth->userid);
    strarray_fini(&auth->groups);
    free(auth);
}

int acl_auth_is_anonymous(const struct auth_state *auth)
{
    return !auth || !auth->userid || !strcmp(auth->userid, "anonymous");
}

int acl_auth_is_member(const struct auth_state *auth,
                       const char *identifier)
{
    if (!strcmp(identifier, "anyone"))
        return 1;
    if (acl_auth_is_anonymous(auth))
        return !strcmp(identifier, "anonymous");
    if (!strncmp(identifier, "group:", 6))
        return strarray_find(&auth->groups, identifier + 6, 0) >= 0;
    return !strcmp(identifier, auth->userid);
}

/* ---- parsed ACLs ---- */

void acl_fini(struct acl *acl)
{
    int i;

    for (i = 0; i < acl->count; i++)
        free(acl->entries[i].identifier);
    free(acl->entries);
    memset(acl, 0, sizeof(*acl));
}

/* Index of the entry for `identifier`, or -1. */
static int acl_find(const struct acl *acl, const char *identifier)
{
    int i;

    for (i = 0; i < acl->count; i++) {
        if (!strcmp(acl->entries[i].identifier, identifier))
            return i;
    }
    return -1;
}

/* Append an entry, taking over `identifier` (malloc'd). */
static void acl_appendm(struct acl *acl, char *identifier, uint32_t rights)
{
    if (acl->count == acl->alloc) {
        acl->alloc = acl->alloc ? 2 * acl->alloc : 8;
        acl->entries = xrealloc(acl->entries,
                                (size_t)acl->alloc * sizeof(*acl->entries));
    }
    acl->entries[acl->count].identifier = identifier;
    acl->entries[acl->count].rights = rights;
    acl->count++;
}

int acl_parse(const char *s, struct acl *acl)
{
    const char *id, *tab, *rights, *end;
    char rbuf[ACL_RIGHTS_MAX + 1];
    char *ident;
    uint32_t mask;

    acl_fini(acl);
    if (!s)
        return 0;
    if (strlen(s) > ACL_STRING_MAX)
        return ERR_CORRUPT;

    for (id = s; *id; id = *end ? end + 1 : end) {
        tab = strchr(id, '\t');
        if (!tab)
            goto bad;
        rights = tab + 1;
        end = strchr(rights, '\t');
        if (!end)
            end = rights + strlen(rights);
        if ((size_t)(end - rights) > ACL_RIGHTS_MAX)
            goto bad;
        memcpy(rbuf, rights, (size_t)(end - rights));
        rbuf[end - rights] = '\0';
        ident = xstrndup(id, (size_t)(tab - id));
        if (!acl_identifier_is_valid(ident)
            || acl_rights_parse(rbuf, &mask, NULL)) {
            free(ident);
            goto bad;
        }
        /* A repeated identifier (hand-edited database) adds up. */
        if (acl_find(acl, ident) >= 0) {
            acl->entries[acl_find(acl, ident)].rights |= mask;
            free(ident);
        }
        else {
            acl_appendm(acl, ident, mask);
        }
    }
    return 0;

bad:
    acl_fini(acl);
    return ERR_CORRUPT;
}

void acl_format(const struct acl *acl, struct buf *out)
{
    int i;

    buf_reset(out);
    for (i = 0; i < acl->count; i++) {
        buf_appendcstr(out, acl->entries[i].identifier);
        buf_putc(out, '\t');
        acl_rights_format(acl->entries[i].rights, out);
        buf_putc(out, '\t');
    }
}

uint32_t acl_get(const struct acl *acl, const char *identifier)
{
    int i = acl_find(acl, identifier);

    return i < 0 ? 0 : acl->entries[i].rights;
}

int acl_remove(struct acl *acl, const char *identifier)
{
    int i = acl_find(acl, identifier);

    if (i < 0)
        return ERR_NOTFOUND;
    free(acl->entries[i].identifier);
    memmove(&acl->entries[i], &acl->entries[i + 1],
            (size_t)(acl->count - i - 1) * sizeof(*acl->entries));
    acl->count--;
    return 0;
}

int acl_set(struct acl *acl, const char *identifier, enum acl_mode mode,
            uint32_t rights)
{
    int i;
    uint32_t old, new;

    if (!acl_identifier_is_valid(identifier))
        return ERR_INVALID;
    i = acl_find(acl, identifier);
    old = i < 0 ? 0 : acl->entries[i].rights;

    switch (mode) {
    case ACL_MODE_ADD:
        new = old | rights;
        break;
    case ACL_MODE_REMOVE:
        new = old & ~rights;
        break;
    case ACL_MODE_SET:
    default:
        new = rights;
        break;
    }

    if (!new) {
        if (i >= 0)
            acl_remove(acl, identifier);
    }
    else if (i >= 0) {
        acl->entries[i].rights = new;
    }
    else {
        acl_appendm(acl, xstrdup(identifier), new);
    }
    return 0;
}

int acl_setacl_string(char **aclstr, const char *identifier,
                      const char *rights)
{
    struct acl acl = ACL_INITIALIZER;
    struct buf out = BUF_INITIALIZER;
    enum acl_mode mode = ACL_MODE_SET;
    uint32_t mask;
    int r;

    if (!rights)
        return ERR_INVALID;
    if (*rights == '+' || *rights == '-') {
        mode = *rights == '+' ? ACL_MODE_ADD : ACL_MODE_REMOVE;
        rights++;
    }
    r = acl_rights_parse(rights, &mask, NULL);
    if (!r && !acl_identifier_is_valid(identifier))
        r = ERR_INVALID;
    if (!r)
        r = acl_parse(*aclstr, &acl);
    if (!r)
        r = acl_set(&acl, identifier, mode, mask);
    if (!r) {
        acl_format(&acl, &out);
        free(*aclstr);
        *aclstr = buf_release(&out);
    }
    buf_free(&out);
    acl_fini(&acl);
    return r;
}

/* ---- rights of a session ---- */

uint32_t acl_implicit_owner_rights(void)
{
    const char *s = config_getstring(IMAPOPT_IMPLICIT_OWNER_RIGHTS);
    uint32_t rights = 0;

    if (!s || acl_rights_parse(s, &rights, NULL)) {
        xsyslog(LOG_ERR, "invalid implicit_owner_rights",
                "value=%s", log_escape(s, 0));
        acl_rights_parse(IMPLICIT_OWNER_DEFAULT, &rights, NULL);
    }
    return rights;
}

/* The rights every ACL leaves to `auth` on `intname`. */
static uint32_t implied_rights(const struct auth_state *auth,
                               const char *intname)
{
    uint32_t rights = 0;

    if (auth && auth->is_admin)
        rights |= ACL_LOOKUP | ACL_ADMIN;
    if (intname && !acl_auth_is_anonymous(auth)
        && mboxname_userownsmailbox(auth->userid, intname))
        rights |= acl_implicit_owner_rights();
    return rights;
}

int acl_myrights(const struct auth_state *auth, const char *aclstr,
                 const char *intname, uint32_t *rights_r)
{
    struct acl acl = ACL_INITIALIZER;
    uint32_t granted = 0, denied = 0;
    const char *id;
    int r, i;

    r = acl_parse(aclstr, &acl);
    if (r) {
        xsyslog(LOG_ERR, "unreadable ACL", "mailbox=%s",
                log_escape(intname, 0));
    }
    for (i = 0; i < acl.count; i++) {
        id = acl.entries[i].identifier;
        if (id[0] == '-') {
            if (acl_auth_is_member(auth, id + 1))
                denied |= acl.entries[i].rights;
        }
        else if (acl_auth_is_member(auth, id)) {
            granted |= acl.entries[i].rights;
        }
    }
    *rights_r = (granted & ~denied) | implied_rights(auth, intname);
    acl_fini(&acl);
    return r;
}

void acl_listrights(const char *identifier, const char *intname,
                    strarray_t *out)
{
    struct buf buf = BUF_INITIALIZER;
    uint32_t required = 0, create, delete;
    char letter[2] = { 0, 0 };
    char dr;
    size_t i;
    int d;

    if (identifier && intname
        && mboxname_userownsmailbox(identifier, intname))
        required = acl_implicit_owner_rights();
    acl_rights_format(required, &buf);
    strarray_append(out, buf_cstring(&buf));
    buf_free(&buf);

    for (i = 0; i < NRIGHTS; i++) {
        if (!(required & rights_table[i].bit)) {
            letter[0] = rights_table[i].letter;
            strarray_append(out, letter);
        }
    }
    for (d = 0; d < 10; d++) {
        if (!(required & (ACL_USER0 << d))) {
            letter[0] = (char)('0' + d);
            strarray_append(out, letter);
        }
    }

    /* The obsolete composites, for clients that only know them. */
    composite_members(&create, &delete, &dr);
    if ((required & create) != create)
        strarray_append(out, "c");
    if ((required & delete) != delete)
        strarray_append(out, "d");
}

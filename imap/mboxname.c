/* Mailbox names: the internal form stored in mailboxes.db, the external
 * form clients see in each namespace, validation, and directory paths. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/charset.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/strarray.h"
#include "lib/util.h"
#include "lib/xmalloc.h"

#include "imap/mboxname.h"

/* Bytes never allowed in a decoded component (besides controls and
 * 8-bit): LIST wildcards, the path separator, the domain separator,
 * quoting characters and the internal escape of '.'. */
#define BADCHARS "%*/!\"\\^"

/* Longest domain name (RFC 1035). */
#define DOMAIN_MAX 253

static int is_virtdomains(void)
{
    return config_getenum(IMAPOPT_VIRTDOMAINS) != IMAP_ENUM_VIRTDOMAINS_OFF;
}

/* The deletedprefix, or NULL when it is unset or empty (no delayed
 * delete hierarchy is recognised then). */
static const char *deleted_prefix(void)
{
    const char *dp = config_getstring(IMAPOPT_DELETEDPREFIX);

    return (dp && *dp) ? dp : NULL;
}

static int strcmp_null(const char *a, const char *b)
{
    if (!a || !b)
        return (a != NULL) - (b != NULL);
    return strcmp(a, b);
}

/* Is `s` (a decoded component) acceptable in a mailbox name? */
static int component_is_valid(const char *s)
{
    struct buf utf8 = BUF_INITIALIZER;
    const unsigned char *p;
    size_t len;
    int r;

    /* Dots at either end or doubled are refused in both separators, so
     * "a..b", ".a" and "a." mean nothing anywhere. */
    len = s ? strlen(s) : 0;
    if (!len || s[0] == '.' || s[len - 1] == '.' || strstr(s, ".."))
        return 0;
    for (p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p >= 0x7f || strchr(BADCHARS, *p))
            return 0;
    }
    if (!strchr(s, '&'))
        return 1;

    r = charset_mutf7_to_utf8(s, len, &utf8);
    buf_free(&utf8);
    return r == 0;
}

/* Is `s` a plausible lower-case domain name: labels of letters, digits,
 * '-' and '_' separated by single dots? */
static int domain_is_valid(const char *s)
{
    size_t len = s ? strlen(s) : 0;
    const char *p;

    if (!len || len > DOMAIN_MAX || s[0] == '.' || s[len - 1] == '.')
        return 0;
    for (p = s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')
            || *p == '-' || *p == '_')
            continue;
        if (*p == '.' && p[1] != '.')
            continue;
        return 0;
    }
    return 1;
}

/* Append `s` to `out` with every `from` byte replaced by `to`. */
static void append_translated(struct buf *out, const char *s, char from,
                              char to)
{
    for (; *s; s++)
        buf_putc(out, *s == from ? to : *s);
}

/* A new string: `s` (of `len` bytes) with `from` replaced by `to`. */
static char *dup_translated(const char *s, size_t len, char from, char to)
{
    char *d = xstrndup(s, len);
    char *p;

    for (p = d; *p; p++) {
        if (*p == from)
            *p = to;
    }
    return d;
}

/* Split `s` at `sep` into `out`, translating `from` to `to` in each part
 * and checking it.  Returns 0, or ERR_MAILBOX_BADNAME for an empty or
 * invalid part. */
static int split_components(const char *s, char sep, char from, char to,
                            strarray_t *out)
{
    const char *end;
    char *part;

    for (;;) {
        end = strchr(s, sep);
        if (!end)
            end = s + strlen(s);
        part = dup_translated(s, (size_t)(end - s), from, to);
        if (!component_is_valid(part)) {
            free(part);
            return ERR_MAILBOX_BADNAME;
        }
        strarray_appendm(out, part);
        if (!*end)
            return 0;
        s = end + 1;
    }
}

/* Parse the deletion time: 1 to 16 upper-case hex digits, not zero. */
static int parse_deleted_time(const char *s, time_t *when_r)
{
    uint64_t v = 0;
    size_t n = 0;

    for (; *s; s++, n++) {
        if (n >= 16)
            return 0;
        if (*s >= '0' && *s <= '9')
            v = (v << 4) | (uint64_t)(*s - '0');
        else if (*s >= 'A' && *s <= 'F')
            v = (v << 4) | (uint64_t)(*s - 'A' + 10);
        else
            return 0;
    }
    if (!n || !v || v > (uint64_t)INT64_MAX)
        return 0;
    *when_r = (time_t)v;
    return 1;
}

/* Drop the cached strings after a change. */
static void mbname_dirty(struct mbname *mb)
{
    free(mb->intname);
    mb->intname = NULL;
    free(mb->userid);
    mb->userid = NULL;
}

/* Checks that need the whole name: length, and a local part that can
 * be told from its domain. */
static int mbname_check(struct mbname *mb)
{
    if (!mb->localpart && !mb->boxes.count)
        return ERR_MAILBOX_BADNAME;
    if (mb->localpart && is_virtdomains() && strchr(mb->localpart, '@'))
        return ERR_MAILBOX_BADNAME;
    if (strlen(mbname_intname(mb)) > MBOXNAME_MAX)
        return ERR_MAILBOX_BADNAME;
    return 0;
}

/* Take the user or shared part of a parsed component list (decoded):
 * "user" LOCALPART *BOX, or the shared name. */
static void take_owner(struct mbname *mb, strarray_t *comps)
{
    int i = 0;

    if (comps->count >= 2 && !strcmp(comps->data[0], "user")) {
        mb->localpart = xstrdup(comps->data[1]);
        i = 2;
    }
    for (; i < comps->count; i++)
        strarray_append(&mb->boxes, comps->data[i]);
}

/* Remove the deletedprefix and the hex time from a component list that
 * starts with the prefix.  Returns 0 or ERR_MAILBOX_BADNAME. */
static int take_deleted(struct mbname *mb, strarray_t *comps)
{
    char *last;
    int r = 0;

    if (comps->count < 3)
        return ERR_MAILBOX_BADNAME;
    last = strarray_remove(comps, -1);
    if (!parse_deleted_time(last, &mb->is_deleted))
        r = ERR_MAILBOX_BADNAME;
    free(last);
    free(strarray_remove(comps, 0));
    return r;
}

int mbname_from_intname(const char *intname, struct mbname **mbname_r)
{
    strarray_t comps = STRARRAY_INITIALIZER;
    struct mbname *mb = NULL;
    const char *dp = deleted_prefix();
    const char *bang;
    int r = ERR_MAILBOX_BADNAME;

    *mbname_r = NULL;
    if (!intname || !*intname || strlen(intname) > MBOXNAME_MAX)
        return r;
    mb = xzmalloc(sizeof(*mb));

    /* The domain, when virtual domains are on. */
    bang = strchr(intname, '!');
    if (bang) {
        if (!is_virtdomains())
            goto done;
        mb->domain = xstrndup(intname, (size_t)(bang - intname));
        if (!domain_is_valid(mb->domain))
            goto done;
        intname = bang + 1;
    }

    /* Components are checked in decoded form: '^' stands for '.'. */
    if (split_components(intname, '.', '^', '.', &comps))
        goto done;
    if (dp && !strcmp(comps.data[0], dp) && take_deleted(mb, &comps))
        goto done;
    take_owner(mb, &comps);
    r = mbname_check(mb);

done:
    strarray_fini(&comps);
    if (r)
        mbname_free(&mb);
    *mbname_r = mb;
    return r;
}

/* Does `s` hold only printable US-ASCII? */
static int is_printable_ascii(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            return 0;
    }
    return 1;
}

/* Set mb->domain from `domain` (any case): lower-cased, NULL for the
 * defaultdomain.  Returns 0 or ERR_MAILBOX_BADNAME. */
static int set_domain(struct mbname *mb, const char *domain)
{
    const char *defdomain = config_getstring(IMAPOPT_DEFAULTDOMAIN);
    char *d = lcase(xstrdup(domain));

    free(mb->domain);
    mb->domain = NULL;
    if (!domain_is_valid(d)) {
        free(d);
        return ERR_MAILBOX_BADNAME;
    }
    if (defdomain && !util_strcasecmp_ascii(d, defdomain))
        free(d);
    else
        mb->domain = d;
    return 0;
}

int mbname_from_userid(const char *userid, struct mbname **mbname_r)
{
    struct mbname *mb = NULL;
    const char *at = NULL;
    int r = ERR_MAILBOX_BADNAME;

    *mbname_r = NULL;
    if (!userid || !*userid || strlen(userid) > MBOXNAME_USERID_MAX
        || !is_printable_ascii(userid))
        return r;
    mb = xzmalloc(sizeof(*mb));

    if (is_virtdomains())
        at = strrchr(userid, '@');
    if (at) {
        if (set_domain(mb, at + 1))
            goto done;
        mb->localpart = xstrndup(userid, (size_t)(at - userid));
    }
    else {
        mb->localpart = xstrdup(userid);
    }
    if (!component_is_valid(mb->localpart))
        goto done;
    r = mbname_check(mb);

done:
    if (r)
        mbname_free(&mb);
    *mbname_r = mb;
    return r;
}

void mbname_free(struct mbname **mbname_r)
{
    struct mbname *mb;

    if (!mbname_r || !*mbname_r)
        return;
    mb = *mbname_r;
    *mbname_r = NULL;
    free(mb->localpart);
    free(mb->domain);
    strarray_fini(&mb->boxes);
    free(mb->intname);
    free(mb->userid);
    free(mb);
}

const char *mbname_intname(struct mbname *mb)
{
    struct buf out = BUF_INITIALIZER;
    const char *dp = deleted_prefix();
    int i;

    if (mb->intname)
        return mb->intname;

    if (mb->domain) {
        buf_appendcstr(&out, mb->domain);
        buf_putc(&out, '!');
    }
    if (mb->is_deleted && dp) {
        buf_appendcstr(&out, dp);
        buf_putc(&out, '.');
    }
    if (mb->localpart) {
        buf_appendcstr(&out, "user.");
        append_translated(&out, mb->localpart, '.', '^');
        buf_putc(&out, '.');
    }
    for (i = 0; i < mb->boxes.count; i++) {
        append_translated(&out, mb->boxes.data[i], '.', '^');
        buf_putc(&out, '.');
    }
    if (mb->is_deleted && dp)
        buf_printf(&out, "%llX.", (unsigned long long)mb->is_deleted);

    /* Every part above ends with a '.', the last one is dropped. */
    if (buf_len(&out) && buf_base(&out)[buf_len(&out) - 1] == '.')
        buf_truncate(&out, buf_len(&out) - 1);
    mb->intname = buf_release(&out);
    return mb->intname;
}

const char *mbname_userid(struct mbname *mb)
{
    struct buf out = BUF_INITIALIZER;

    if (!mb->localpart)
        return NULL;
    if (!mb->userid) {
        buf_appendcstr(&out, mb->localpart);
        if (mb->domain) {
            buf_putc(&out, '@');
            buf_appendcstr(&out, mb->domain);
        }
        mb->userid = buf_release(&out);
    }
    return mb->userid;
}

int mbname_push_box(struct mbname *mb, const char *box)
{
    if (!component_is_valid(box))
        return ERR_MAILBOX_BADNAME;
    strarray_append(&mb->boxes, box);
    mbname_dirty(mb);
    return 0;
}

void mbname_set_deleted(struct mbname *mb, time_t when)
{
    mb->is_deleted = when > 0 ? when : 0;
    mbname_dirty(mb);
}

/* Do the two names have the same owner (local part and domain)? */
static int same_owner(const struct mbname *a, const struct mbname *b)
{
    return a->localpart && b->localpart
        && !strcmp(a->localpart, b->localpart)
        && !strcmp_null(a->domain, b->domain);
}

int mbname_is_owner(const struct mbname *mb, const char *userid)
{
    struct mbname *user = NULL;
    int res;

    if (!userid || mbname_from_userid(userid, &user))
        return 0;
    res = same_owner(mb, user);
    mbname_free(&user);
    return res;
}

/* ---- namespaces ---- */

/* Copy configured prefix `opt` plus separator into `dst`, checking it.
 * Returns 0 or ERR_CONFIG. */
static int set_prefix(char *dst, enum imapopt opt, char sep)
{
    const char *p = config_getstring(opt);
    size_t len = p ? strlen(p) : 0;

    if (!len || len > MBOXNAME_PREFIX_MAX || strchr(p, sep)
        || !util_strncasecmp_ascii(p, "INBOX", 5))
        return ERR_CONFIG;
    if (!component_is_valid(p) || (sep == '/' && strchr(p, '.')))
        return ERR_CONFIG;
    snprintf(dst, MBOXNAME_PREFIX_MAX + 2, "%s%c", p, sep);
    return 0;
}

int mboxname_init_namespace(struct namespace *ns, int isadmin)
{
    int r;

    memset(ns, 0, sizeof(*ns));
    ns->isadmin = isadmin ? 1 : 0;
    ns->hier_sep = config_getswitch(IMAPOPT_UNIXHIERARCHYSEP) ? '/' : '.';
    ns->isalt = !isadmin && config_getswitch(IMAPOPT_ALTNAMESPACE);

    if (!ns->isalt) {
        snprintf(ns->prefix[NAMESPACE_INBOX], sizeof(ns->prefix[0]),
                 "INBOX%c", ns->hier_sep);
        snprintf(ns->prefix[NAMESPACE_USER], sizeof(ns->prefix[0]),
                 "user%c", ns->hier_sep);
        return 0;
    }

    r = set_prefix(ns->prefix[NAMESPACE_USER], IMAPOPT_USERPREFIX,
                   ns->hier_sep);
    if (!r)
        r = set_prefix(ns->prefix[NAMESPACE_SHARED], IMAPOPT_SHAREDPREFIX,
                       ns->hier_sep);
    if (!r && !strcmp(ns->prefix[NAMESPACE_USER],
                      ns->prefix[NAMESPACE_SHARED]))
        r = ERR_CONFIG;
    return r;
}

/* Append `s` as an IMAP quoted string. */
static void append_quoted(struct buf *out, const char *s)
{
    buf_putc(out, '"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            buf_putc(out, '\\');
        buf_putc(out, *s);
    }
    buf_putc(out, '"');
}

void mboxname_namespace_response(const struct namespace *ns,
                                 struct buf *out)
{
    char sep[2] = { ns->hier_sep, '\0' };
    int i;

    for (i = NAMESPACE_INBOX; i <= NAMESPACE_SHARED; i++) {
        if (i)
            buf_putc(out, ' ');
        buf_appendcstr(out, "((");
        append_quoted(out, ns->prefix[i]);
        buf_putc(out, ' ');
        append_quoted(out, sep);
        buf_appendcstr(out, "))");
    }
}

/* Is `s` the prefix `prefix` (stored with its separator) without the
 * separator? */
static int is_prefix_word(const char *s, const char *prefix)
{
    size_t len = strlen(prefix);

    return len > 1 && strlen(s) == len - 1 && !strncmp(s, prefix, len - 1);
}

/* ---- external names ---- */

/* Fill `mb` from the external components in the standard namespace. */
static int from_standard(struct mbname *mb, strarray_t *comps,
                         const struct namespace *ns,
                         const struct mbname *user)
{
    const char *dp = deleted_prefix();

    if (!util_strcasecmp_ascii(comps->data[0], "INBOX")) {
        if (!user || strcmp_null(mb->domain, user->domain))
            return ERR_MAILBOX_BADNAME;
        free(strarray_remove(comps, 0));
        mb->localpart = xstrdup(user->localpart);
        while (comps->count)
            strarray_appendm(&mb->boxes, strarray_remove(comps, 0));
        return 0;
    }

    if (dp && !strcmp(comps->data[0], dp)) {
        /* Only admins name the deleted hierarchy; for anyone else it is
         * reserved. */
        if (!ns->isadmin || take_deleted(mb, comps))
            return ERR_MAILBOX_BADNAME;
        if (!util_strcasecmp_ascii(comps->data[0], "INBOX"))
            return ERR_MAILBOX_BADNAME;
    }
    take_owner(mb, comps);
    return 0;
}

/* Fill `mb` from the external components in the alternate namespace. */
static int from_alternate(struct mbname *mb, strarray_t *comps,
                          const struct namespace *ns,
                          const struct mbname *user)
{
    const char *first = comps->data[0];

    if (is_prefix_word(first, ns->prefix[NAMESPACE_USER])) {
        free(strarray_remove(comps, 0));
        if (!comps->count)
            strarray_append(&mb->boxes, "user");
        else
            strarray_insert(comps, 0, "user");
        take_owner(mb, comps);
        return 0;
    }
    if (is_prefix_word(first, ns->prefix[NAMESPACE_SHARED])) {
        free(strarray_remove(comps, 0));
        if (!comps->count
            || !util_strcasecmp_ascii(comps->data[0], "INBOX"))
            return ERR_MAILBOX_BADNAME;
        while (comps->count)
            strarray_appendm(&mb->boxes, strarray_remove(comps, 0));
        return 0;
    }

    /* Everything else is personal.  "INBOX" alone is the INBOX, its
     * children live under a folder spelt exactly "INBOX". */
    if (!user)
        return ERR_MAILBOX_BADNAME;
    if (!util_strcasecmp_ascii(first, "INBOX")) {
        if (comps->count == 1)
            free(strarray_remove(comps, 0));
        else
            strarray_set(comps, 0, "INBOX");
    }
    mb->localpart = xstrdup(user->localpart);
    while (comps->count)
        strarray_appendm(&mb->boxes, strarray_remove(comps, 0));
    return 0;
}

int mbname_from_extname(const char *extname, const struct namespace *ns,
                        const char *userid, struct mbname **mbname_r)
{
    strarray_t comps = STRARRAY_INITIALIZER;
    struct mbname *user = NULL;
    struct mbname *mb = NULL;
    char *ext = NULL;
    char *at;
    int r = ERR_MAILBOX_BADNAME;

    *mbname_r = NULL;
    if (!extname || !*extname || strlen(extname) > 2 * MBOXNAME_MAX)
        return r;
    if (userid && mbname_from_userid(userid, &user))
        return r;
    ext = xstrdup(extname);
    mb = xzmalloc(sizeof(*mb));
    if (user && user->domain)
        mb->domain = xstrdup(user->domain);

    /* An admin names another domain with a trailing "@domain". */
    if (ns->isadmin && is_virtdomains() && (at = strrchr(ext, '@'))) {
        *at = '\0';
        if (set_domain(mb, at + 1))
            goto done;
    }

    if (!*ext || split_components(ext, ns->hier_sep,
                                  ns->hier_sep == '.' ? '^' : '\0', '.',
                                  &comps))
        goto done;
    if (ns->isalt)
        r = from_alternate(mb, &comps, ns, user);
    else
        r = from_standard(mb, &comps, ns, user);
    if (!r)
        r = mbname_check(mb);

done:
    if (r)
        mbname_free(&mb);
    strarray_fini(&comps);
    mbname_free(&user);
    free(ext);
    *mbname_r = mb;
    return r;
}

/* Append the external form of decoded component `s` to `out`. */
static void append_ext(struct buf *out, const char *s, char sep)
{
    if (sep == '.')
        append_translated(out, s, '.', '^');
    else
        buf_appendcstr(out, s);
}

/* Append boxes[start..] each preceded by the separator (none before the
 * very first byte of `out`). */
static void append_boxes(struct buf *out, const strarray_t *boxes,
                         int start, char sep)
{
    int i;

    for (i = start; i < boxes->count; i++) {
        if (buf_len(out))
            buf_putc(out, sep);
        append_ext(out, boxes->data[i], sep);
    }
}

/* The external name in the alternate namespace. */
static int ext_alternate(const struct mbname *mb, const struct namespace *ns,
                         const struct mbname *user, struct buf *out)
{
    char sep = ns->hier_sep;
    const char *first;

    if (mb->is_deleted)
        return ERR_MAILBOX_BADNAME;

    if (!mb->localpart) {
        if (mb->boxes.count == 1 && !strcmp(mb->boxes.data[0], "user")) {
            buf_appendmap(out, ns->prefix[NAMESPACE_USER],
                          strlen(ns->prefix[NAMESPACE_USER]) - 1);
            return 0;
        }
        if (!util_strcasecmp_ascii(mb->boxes.data[0], "INBOX"))
            return ERR_MAILBOX_BADNAME;
        buf_appendcstr(out, ns->prefix[NAMESPACE_SHARED]);
        append_ext(out, mb->boxes.data[0], sep);
        append_boxes(out, &mb->boxes, 1, sep);
        return 0;
    }

    if (!user || !same_owner(mb, user)) {
        buf_appendcstr(out, ns->prefix[NAMESPACE_USER]);
        append_ext(out, mb->localpart, sep);
        append_boxes(out, &mb->boxes, 0, sep);
        return 0;
    }

    if (!mb->boxes.count) {
        buf_appendcstr(out, "INBOX");
        return 0;
    }
    first = mb->boxes.data[0];
    if (!util_strcasecmp_ascii(first, "INBOX")) {
        /* Only INBOX's children, spelt exactly, have a name here. */
        if (strcmp(first, "INBOX") || mb->boxes.count == 1)
            return ERR_MAILBOX_BADNAME;
    }
    else if (is_prefix_word(first, ns->prefix[NAMESPACE_USER])
             || is_prefix_word(first, ns->prefix[NAMESPACE_SHARED])) {
        return ERR_MAILBOX_BADNAME;
    }
    append_boxes(out, &mb->boxes, 0, sep);
    return 0;
}

/* The external name in the standard namespace. */
static int ext_standard(const struct mbname *mb, const struct namespace *ns,
                        const struct mbname *user, struct buf *out)
{
    char sep = ns->hier_sep;

    if (mb->is_deleted) {
        if (!deleted_prefix())
            return ERR_MAILBOX_BADNAME;
        buf_appendcstr(out, deleted_prefix());
        buf_putc(out, sep);
    }
    if (!mb->localpart) {
        if (!util_strcasecmp_ascii(mb->boxes.data[0], "INBOX"))
            return ERR_MAILBOX_BADNAME;
        append_ext(out, mb->boxes.data[0], sep);
        append_boxes(out, &mb->boxes, 1, sep);
    }
    else if (!mb->is_deleted && user && same_owner(mb, user)) {
        buf_appendcstr(out, "INBOX");
        append_boxes(out, &mb->boxes, 0, sep);
    }
    else {
        buf_appendcstr(out, "user");
        buf_putc(out, sep);
        append_ext(out, mb->localpart, sep);
        append_boxes(out, &mb->boxes, 0, sep);
    }
    if (mb->is_deleted) {
        buf_putc(out, sep);
        buf_printf(out, "%llX", (unsigned long long)mb->is_deleted);
    }
    return 0;
}

int mbname_extname(struct mbname *mb, const struct namespace *ns,
                   const char *userid, struct buf *out)
{
    struct mbname *user = NULL;
    int admindomains = ns->isadmin && is_virtdomains();
    int r;

    buf_reset(out);
    if (userid && mbname_from_userid(userid, &user))
        user = NULL;

    /* Other domains exist only for admins (who see "@domain"). */
    if (!admindomains
        && strcmp_null(mb->domain, user ? user->domain : NULL)) {
        r = ERR_MAILBOX_BADNAME;
        goto done;
    }

    if (ns->isalt)
        r = ext_alternate(mb, ns, user, out);
    else
        r = ext_standard(mb, ns, user, out);
    if (!r && admindomains && mb->domain) {
        buf_putc(out, '@');
        buf_appendcstr(out, mb->domain);
    }

done:
    if (r)
        buf_reset(out);
    mbname_free(&user);
    return r;
}

/* ---- string conveniences ---- */

int mboxname_to_external(const char *intname, const struct namespace *ns,
                         const char *userid, char **extname_r)
{
    struct buf out = BUF_INITIALIZER;
    struct mbname *mb = NULL;
    int r;

    *extname_r = NULL;
    r = mbname_from_intname(intname, &mb);
    if (!r)
        r = mbname_extname(mb, ns, userid, &out);
    if (!r)
        *extname_r = buf_release(&out);
    buf_free(&out);
    mbname_free(&mb);
    return r;
}

int mboxname_from_external(const char *extname, const struct namespace *ns,
                           const char *userid, char **intname_r)
{
    struct mbname *mb = NULL;
    int r;

    *intname_r = NULL;
    r = mbname_from_extname(extname, ns, userid, &mb);
    if (!r)
        *intname_r = xstrdup(mbname_intname(mb));
    mbname_free(&mb);
    return r;
}

int mboxname_to_userid(const char *intname, char **userid_r)
{
    struct mbname *mb = NULL;
    int r;

    *userid_r = NULL;
    r = mbname_from_intname(intname, &mb);
    if (!r && !mb->localpart)
        r = ERR_NOTFOUND;
    if (!r)
        *userid_r = xstrdup(mbname_userid(mb));
    mbname_free(&mb);
    return r;
}

int mboxname_user_mbox(const char *userid, const char *subfolder,
                       char **intname_r)
{
    strarray_t comps = STRARRAY_INITIALIZER;
    struct mbname *mb = NULL;
    int r;
    int i;

    *intname_r = NULL;
    r = mbname_from_userid(userid, &mb);
    if (!r && subfolder)
        r = split_components(subfolder, '.', '^', '.', &comps);
    for (i = 0; !r && i < comps.count; i++)
        r = mbname_push_box(mb, comps.data[i]);
    if (!r)
        r = mbname_check(mb);
    if (!r)
        *intname_r = xstrdup(mbname_intname(mb));
    strarray_fini(&comps);
    mbname_free(&mb);
    return r;
}

int mboxname_to_deleted(const char *intname, time_t when, char **intname_r)
{
    struct mbname *mb = NULL;
    int r;

    *intname_r = NULL;
    if (when <= 0 || !deleted_prefix())
        return ERR_INVALID;
    r = mbname_from_intname(intname, &mb);
    if (!r && mb->is_deleted)
        r = ERR_MAILBOX_BADNAME;
    if (!r) {
        mbname_set_deleted(mb, when);
        r = mbname_check(mb);
    }
    if (!r)
        *intname_r = xstrdup(mbname_intname(mb));
    mbname_free(&mb);
    return r;
}

int mboxname_isusermailbox(const char *intname, int isinbox)
{
    struct mbname *mb = NULL;
    int res = 0;

    if (!mbname_from_intname(intname, &mb) && mb->localpart
        && !mb->is_deleted)
        res = !isinbox || !mb->boxes.count;
    mbname_free(&mb);
    return res;
}

int mboxname_userownsmailbox(const char *userid, const char *intname)
{
    struct mbname *mb = NULL;
    int res = 0;

    if (!mbname_from_intname(intname, &mb) && !mb->is_deleted)
        res = mbname_is_owner(mb, userid);
    mbname_free(&mb);
    return res;
}

int mboxname_isdeletedmailbox(const char *intname, time_t *when_r)
{
    struct mbname *mb = NULL;
    time_t when = 0;

    if (!mbname_from_intname(intname, &mb))
        when = mb->is_deleted;
    mbname_free(&mb);
    if (when_r)
        *when_r = when;
    return when != 0;
}

int mboxname_is_prefix(const char *name, const char *prefix)
{
    size_t len = strlen(prefix);

    return !strncmp(name, prefix, len)
        && (name[len] == '\0' || name[len] == '.');
}

int mboxname_policycheck(const char *intname)
{
    struct mbname *mb = NULL;
    int r;

    r = mbname_from_intname(intname, &mb);
    if (r)
        return r;
    if (mb->localpart) {
        if (!strcmp(mb->localpart, "anyone")
            || !strcmp(mb->localpart, "anonymous"))
            r = ERR_MAILBOX_BADNAME;
    }
    else {
        const char *first = mb->boxes.data[0];

        if ((mb->boxes.count == 1 && !strcmp(first, "user"))
            || first[0] == '$' || !util_strcasecmp_ascii(first, "INBOX"))
            r = ERR_MAILBOX_BADNAME;
    }
    mbname_free(&mb);
    return r;
}

int mboxname_canonical_userid(const char *userid, char **userid_r)
{
    struct mbname *mb = NULL;
    int r;

    *userid_r = NULL;
    r = mbname_from_userid(userid, &mb);
    if (!r)
        *userid_r = xstrdup(mbname_userid(mb));
    mbname_free(&mb);
    return r;
}

/* ---- paths ---- */

char mboxname_dir_hash(const char *s, int fulldirhash)
{
    uint32_t h = 0;
    const unsigned char *p;

    if (!fulldirhash) {
        char c = (char)(*s >= 'A' && *s <= 'Z' ? *s - 'A' + 'a' : *s);

        return (c >= 'a' && c <= 'z') ? c : 'q';
    }
    for (p = (const unsigned char *)s; *p && *p != '.'; p++)
        h = ((h << 3) ^ (h >> 5)) ^ *p;
    return (char)('A' + h % 23);
}

int mboxname_hash_path(const char *root, struct mbname *mb, struct buf *out)
{
    strarray_t comps = STRARRAY_INITIALIZER;
    int hashing = config_getswitch(IMAPOPT_HASHIMAPSPOOL);
    int full = config_getswitch(IMAPOPT_FULLDIRHASH);
    const char *dp = deleted_prefix();
    int i;

    buf_setcstr(out, root);
    if (mb->domain) {
        buf_appendcstr(out, "/domain/");
        if (hashing)
            buf_printf(out, "%c/", mboxname_dir_hash(mb->domain, full));
        buf_appendcstr(out, mb->domain);
    }

    /* The internal components below the domain, decoded. */
    if (mb->is_deleted && dp)
        strarray_append(&comps, dp);
    if (mb->localpart) {
        strarray_append(&comps, "user");
        strarray_append(&comps, mb->localpart);
    }
    for (i = 0; i < mb->boxes.count; i++)
        strarray_append(&comps, mb->boxes.data[i]);
    if (mb->is_deleted && dp) {
        strarray_appendm(&comps, xzmalloc(20));
        snprintf(comps.data[comps.count - 1], 20, "%llX",
                 (unsigned long long)mb->is_deleted);
    }

    if (hashing && comps.count) {
        const char *idx = comps.data[comps.count > 1 ? 1 : 0];

        buf_printf(out, "/%c", mboxname_dir_hash(idx, full));
    }
    for (i = 0; i < comps.count; i++) {
        buf_putc(out, '/');
        append_translated(out, comps.data[i], '.', '^');
    }
    strarray_fini(&comps);
    return buf_len(out) > MBOXNAME_PATH_MAX ? ERR_TOOBIG : 0;
}

/* Validate `intname` and append its hashed directory below `root`. */
static int build_path(const char *root, const char *intname, struct buf *out)
{
    struct mbname *mb = NULL;
    int r;

    if (!root)
        return ERR_PARTITION_UNKNOWN;
    r = mbname_from_intname(intname, &mb);
    if (!r)
        r = mboxname_hash_path(root, mb, out);
    mbname_free(&mb);
    return r;
}

int mboxname_datapath(const char *partition, const char *intname,
                      uint32_t uid, struct buf *out)
{
    int r;

    buf_reset(out);
    if (!partition)
        return ERR_PARTITION_UNKNOWN;
    r = build_path(config_partitiondir(partition), intname, out);
    if (!r && uid)
        buf_printf(out, "/%u.", uid);
    if (!r && buf_len(out) > MBOXNAME_PATH_MAX)
        r = ERR_TOOBIG;
    if (r)
        buf_reset(out);
    return r;
}

/* File name and metapartition_files bit of each metadata file. */
static const struct {
    const char *fname;
    uint64_t bit;
} metafiles[] = {
    [MBOXNAME_META_DIR] = { NULL, 0 },
    [MBOXNAME_META_HEADER] = { "cyrus.header",
                               IMAP_ENUM_METAPARTITION_FILES_HEADER },
    [MBOXNAME_META_INDEX] = { "cyrus.index",
                              IMAP_ENUM_METAPARTITION_FILES_INDEX },
    [MBOXNAME_META_CACHE] = { "cyrus.cache",
                              IMAP_ENUM_METAPARTITION_FILES_CACHE },
    [MBOXNAME_META_EXPUNGE] = { "cyrus.expunge",
                                IMAP_ENUM_METAPARTITION_FILES_EXPUNGE },
    [MBOXNAME_META_SQUAT] = { "cyrus.squat",
                              IMAP_ENUM_METAPARTITION_FILES_SQUAT },
    [MBOXNAME_META_ANNOTATIONS] = {
        "cyrus.annotations", IMAP_ENUM_METAPARTITION_FILES_ANNOTATIONS },
    [MBOXNAME_META_DAV] = { "cyrus.dav", IMAP_ENUM_METAPARTITION_FILES_DAV },
};

int mboxname_metapath(const char *partition, const char *intname,
                      enum mboxname_metafile file, int isnew,
                      struct buf *out)
{
    uint64_t onmeta = config_getbitfield(IMAPOPT_METAPARTITION_FILES);
    const char *root = NULL;
    int r;

    buf_reset(out);
    if ((unsigned)file >= sizeof(metafiles) / sizeof(metafiles[0]))
        return ERR_INVALID;
    if (!partition)
        return ERR_PARTITION_UNKNOWN;

    /* The metapartition holds the files the admin listed; the
     * directory itself counts as metadata when any file lives there. */
    if (file == MBOXNAME_META_DIR ? onmeta != 0
                                  : (onmeta & metafiles[file].bit) != 0)
        root = config_metapartitiondir(partition);
    if (!root)
        root = config_partitiondir(partition);

    r = build_path(root, intname, out);
    if (!r && metafiles[file].fname) {
        buf_printf(out, "/%s%s", metafiles[file].fname, isnew ? ".NEW" : "");
        if (buf_len(out) > MBOXNAME_PATH_MAX)
            r = ERR_TOOBIG;
    }
    if (r)
        buf_reset(out);
    return r;
}

/* The partition whose directory holds `path`, longest root first. */
struct part_match {
    const char *path;
    const char *best;           /* partition name (config-owned key) */
    size_t bestlen;
};

static void match_partition(const char *key, const char *value, void *rock)
{
    struct part_match *pm = rock;
    size_t len;

    if (!key || !*key || !value)
        return;
    len = strlen(value);
    while (len > 1 && value[len - 1] == '/')
        len--;
    if (len > pm->bestlen && !strncmp(pm->path, value, len)
        && (pm->path[len] == '/' || pm->path[len] == '\0')) {
        pm->best = key;
        pm->bestlen = len;
    }
}

int mboxname_datapath_to_metadir(const char *datapath, struct buf *out)
{
    struct part_match pm = { datapath, NULL, 0 };
    const char *metaroot;

    buf_reset(out);
    if (!datapath || !*datapath)
        return ERR_INVALID;
    if (!config_getbitfield(IMAPOPT_METAPARTITION_FILES))
        return ERR_NOTFOUND;
    config_foreach_prefix("partition-", match_partition, &pm);
    if (!pm.best)
        return ERR_NOTFOUND;
    metaroot = config_metapartitiondir(pm.best);
    if (!metaroot || !*metaroot)
        return ERR_NOTFOUND;
    buf_printf(out, "%s%s", metaroot, datapath + pm.bestlen);
    if (buf_len(out) > MBOXNAME_PATH_MAX) {
        buf_reset(out);
        return ERR_TOOBIG;
    }
    return 0;
}

int mboxname_is_metafile(const char *fname)
{
    uint64_t onmeta = config_getbitfield(IMAPOPT_METAPARTITION_FILES);
    size_t i, len;

    if (!fname || !onmeta)
        return 0;
    for (i = 1; i < sizeof(metafiles) / sizeof(metafiles[0]); i++) {
        len = strlen(metafiles[i].fname);
        if (!strncmp(fname, metafiles[i].fname, len)
            && (!fname[len] || !strcmp(fname + len, ".NEW")))
            return (onmeta & metafiles[i].bit) != 0;
    }
    return 0;
}

int mboxname_lockpath(const char *intname, struct buf *out)
{
    const char *root = config_getstring(IMAPOPT_MBOXNAME_LOCKPATH);
    struct buf base = BUF_INITIALIZER;
    int r;

    buf_reset(out);
    if (!root) {
        buf_printf(&base, "%s/lock", config_dir() ? config_dir() : "");
        root = buf_cstring(&base);
    }
    r = build_path(root, intname, out);
    if (!r)
        buf_appendcstr(out, ".lock");
    if (!r && buf_len(out) > MBOXNAME_PATH_MAX)
        r = ERR_TOOBIG;
    if (r)
        buf_reset(out);
    buf_free(&base);
    return r;
}

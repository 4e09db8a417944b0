/* imapd metadata and admin commands: GETMETADATA and SETMETADATA (RFC
 * 5464), the older GETANNOTATION and SETANNOTATION that Cyrus clients
 * send, and the Cyrus admin commands XFER and RECONSTRUCT. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/buf.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/prot.h"
#include "lib/strarray.h"
#include "lib/times.h"
#include "lib/util.h"
#include "lib/xmalloc.h"
#include "imap/acl.h"
#include "imap/annotate.h"
#include "imap/mailbox.h"
#include "imap/mailbox_reconstruct.h"
#include "imap/mboxlist.h"
#include "imap/mboxname.h"
#include "imap/quota.h"

#include "imap/imapd.h"

/*
 * Entry names on the wire are "/shared/..." or "/private/...".  As a
 * convenience Cyrus's cyradm relies on, a name ending in a '/' and a
 * '*' asks for everything below it and one ending in "/%" for its
 * children, as DEPTH infinity and DEPTH 1 would.
 *
 * Cyrus keeps some mailbox settings under /vendor/cmu/cyrus-imapd/.
 * Those cyradm's mboxcfg and setinfo write (expire, squat, sharedseen,
 * news2mail, sieve, pop3showafter; motd and shutdown on the server) are
 * stored as shared entries whatever annotation_allow_undefined says;
 * partition, size, uniqueid and lastupdate are read-only and computed
 * from the mailbox when asked for.
 */

/* Most entries one GETMETADATA or SETMETADATA may name. */
#define MD_MAX_ENTRIES 100
/* Longest entry name a client may send (with its scope prefix). */
#define MD_NAME_MAX (ANNOTATE_ENTRY_MAX + 16)
/* The Cyrus vendor tree, below the scope. */
#define MD_VENDOR "/vendor/cmu/cyrus-imapd/"

/* The mailbox (or the server) a metadata command works on. */
struct md_target {
    int is_server;
    char *intname;
    struct mboxlist_entry *e;
    uint32_t rights;            /* for annotate_may_read/write */
    char *quotaroot;            /* NULL when none */
};

/* One entry found for a GET: full name and value (NULL: NIL). */
struct md_pair {
    char *name;
    struct buf value;
    int is_nil;
};

struct md_result {
    struct md_pair *pairs;
    size_t count;
    size_t alloc;
    uint64_t maxsize;           /* UINT64_MAX: no limit */
    uint64_t longest;           /* largest value left out by maxsize */
    const char *userid;
};

/* Vendor entries stored on request, as shared values. */
static const char *const vendor_mailbox_rw[] = {
    "expire", "squat", "sharedseen", "news2mail", "sieve",
    "pop3showafter", NULL
};
static const char *const vendor_server_rw[] = {
    "motd", "shutdown", "expire", "squat", NULL
};
/* Server entries outside the vendor tree that Cyrus defines (cyradm
 * "setinfo motd"), stored the same way. */
static const char *const server_extra_rw[] = {
    "/shared/motd", NULL
};
/* Vendor entries computed from the mailbox (read-only). */
static const char *const vendor_mailbox_ro[] = {
    "lastupdate", "partition", "size", "uniqueid", NULL
};

static int in_list(const char *const *list, const char *word)
{
    int i;

    for (i = 0; list[i]; i++) {
        if (!strcasecmp(list[i], word))
            return 1;
    }
    return 0;
}

static void target_fini(struct md_target *t)
{
    free(t->intname);
    free(t->quotaroot);
    mboxlist_entry_free(&t->e);
    memset(t, 0, sizeof(*t));
}

/* Resolve the mailbox argument ("" is the server).  Returns 0 or an
 * error for imapd_no_error. */
static int target_resolve(struct imapd *s, const char *ext,
                          struct md_target *t)
{
    int r;

    memset(t, 0, sizeof(*t));
    if (!*ext) {
        t->is_server = 1;
        t->rights = s->is_admin ? ACL_ADMIN : 0;
        return 0;
    }
    r = imapd_intname(s, ext, &t->intname);
    if (r)
        return ERR_MAILBOX_NONEXISTENT;
    r = mboxlist_lookup(t->intname, &t->e);
    if (r)
        return r;
    acl_myrights(s->auth, t->e->acl, t->intname, &t->rights);
    if (!(t->rights & ACL_LOOKUP))
        return ERR_MAILBOX_NONEXISTENT;
    /* Admins manage every mailbox's settings (cyradm mboxcfg, info). */
    if (s->is_admin)
        t->rights |= ACL_ALL;
    if (quota_find_root(t->intname, &t->quotaroot))
        t->quotaroot = NULL;
    return 0;
}

static enum annotate_kind target_kind(const struct md_target *t,
                                      enum annotate_scope scope)
{
    if (t->is_server)
        return scope == ANNOTATE_PRIVATE ? ANNOTATE_KIND_SERVER_PRIVATE
                                         : ANNOTATE_KIND_SERVER_SHARED;
    return scope == ANNOTATE_PRIVATE ? ANNOTATE_KIND_MAILBOX_PRIVATE
                                     : ANNOTATE_KIND_MAILBOX_SHARED;
}

/* Append a metadata value: NIL, a quoted string, a literal, or a
 * literal8 when it holds NUL bytes (RFC 5464 section 5). */
static void md_buf_value(struct buf *out, const char *v, size_t len,
                         int is_nil)
{
    size_t i;
    int needs_literal = len > 1024;
    int has_nul = 0;

    if (is_nil) {
        buf_appendcstr(out, "NIL");
        return;
    }
    for (i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)v[i];

        if (!ch)
            has_nul = 1;
        if (ch >= 0x80 || ch == '\r' || ch == '\n' || !ch)
            needs_literal = 1;
    }
    if (needs_literal) {
        buf_printf(out, "%s{%zu}\r\n", has_nul ? "~" : "", len);
        buf_appendmap(out, v, len);
        return;
    }
    buf_putc(out, '"');
    for (i = 0; i < len; i++) {
        if (v[i] == '"' || v[i] == '\\')
            buf_putc(out, '\\');
        buf_putc(out, v[i]);
    }
    buf_putc(out, '"');
}

static void result_add(struct md_result *res, const char *name,
                       const char *value, size_t len, int is_nil)
{
    struct md_pair *p;
    size_t i;

    for (i = 0; i < res->count; i++) {
        if (!strcmp(res->pairs[i].name, name))
            return;
    }
    if (!is_nil && len > res->maxsize) {
        if (len > res->longest)
            res->longest = len;
        return;
    }
    if (res->count == res->alloc) {
        res->alloc = res->alloc ? res->alloc * 2 : 8;
        res->pairs = xrealloc(res->pairs, res->alloc * sizeof(*p));
    }
    p = &res->pairs[res->count++];
    memset(p, 0, sizeof(*p));
    p->name = xstrdup(name);
    p->is_nil = is_nil;
    if (!is_nil)
        buf_setmap(&p->value, value, len);
}

static void result_fini(struct md_result *res)
{
    size_t i;

    for (i = 0; i < res->count; i++) {
        free(res->pairs[i].name);
        buf_free(&res->pairs[i].value);
    }
    free(res->pairs);
    res->pairs = NULL;
    res->count = res->alloc = 0;
}

/* Does a request for `pentry` (entry without scope, "" for the scope
 * root) at `depth` cover `entry`? */
static int covers(const char *pentry, enum annotate_depth depth,
                  const char *entry)
{
    size_t plen = strlen(pentry);
    const char *rest;

    if (strncasecmp(entry, pentry, plen))
        return 0;
    rest = entry + plen;
    if (!*rest)
        return plen > 0;
    if (*rest != '/')
        return 0;
    if (depth == ANNOTATE_DEPTH_INFINITY)
        return 1;
    if (depth == ANNOTATE_DEPTH_1)
        return strchr(rest + 1, '/') == NULL;
    return 0;
}

/* The value of computed vendor entry `name` of the target's mailbox.
 * Returns 0, or ERR_NOTFOUND. */
static int vendor_computed(const struct md_target *t, const char *name,
                           struct buf *out)
{
    struct mailbox *mb = NULL;
    char date[64];
    int r = 0;

    buf_reset(out);
    if (!strcmp(name, "partition")) {
        buf_appendcstr(out, t->e->partition ? t->e->partition : "");
        return 0;
    }
    if (!strcmp(name, "uniqueid")) {
        buf_appendcstr(out, t->e->uniqueid ? t->e->uniqueid : "");
        return 0;
    }
    r = imapd_open_mailbox(t->intname, 0, NULL, &mb);
    if (r)
        return ERR_NOTFOUND;
    if (!strcmp(name, "size")) {
        buf_printf(out, "%llu",
                   (unsigned long long)mailbox_index(mb)->quota_used);
    }
    else if (!strcmp(name, "lastupdate")) {
        time_t when = mailbox_index(mb)->last_appenddate;

        if (when && !times_format_imap(date, sizeof(date), when, 0))
            buf_appendcstr(out, date);
        else
            r = ERR_NOTFOUND;
    }
    else {
        r = ERR_NOTFOUND;
    }
    mailbox_close(&mb);
    return r;
}

struct walk_rock {
    struct md_result *res;
    int is_server;
    enum annotate_scope want;
};

static int collect_cb(const struct annotate_entry *ae, void *rock)
{
    struct walk_rock *wr = rock;

    /* The special-use record is stored shared and shown as private. */
    if (!wr->is_server && !strcmp(ae->entry, "/specialuse"))
        return 0;
    if (ae->scope != wr->want)
        return 0;
    result_add(wr->res, ae->name, ae->value, ae->len, 0);
    return 0;
}

/* Collect everything `name` (a client's entry name, maybe ending in
 * a wildcard as described at the top) asks for at `depth` into `res`.
 * Returns 0, ERR_INVALID (bad name) or ERR_PERMISSION. */
static int md_collect(struct imapd *s, const struct md_target *t,
                      const char *name, enum annotate_depth depth,
                      int nil_when_absent, struct md_result *res)
{
    struct buf pat = BUF_INITIALIZER;
    struct buf entry = BUF_INITIALIZER;
    struct buf value = BUF_INITIALIZER;
    struct walk_rock wr;
    enum annotate_scope scope;
    const char *uid = t->is_server ? "" : t->e->uniqueid;
    const char *pentry;
    int found = 0;
    int i, r = 0;

    buf_setcstr(&pat, name);
    if (pat.len > 2 && pat.s[pat.len - 2] == '/'
        && (pat.s[pat.len - 1] == '*' || pat.s[pat.len - 1] == '%')) {
        depth = pat.s[pat.len - 1] == '*' ? ANNOTATE_DEPTH_INFINITY
                                          : ANNOTATE_DEPTH_1;
        buf_truncate(&pat, pat.len - 2);
        nil_when_absent = 0;
    }
    buf_tolower(&pat);
    if (!strcmp(buf_cstring(&pat), "/shared")) {
        scope = ANNOTATE_SHARED;
        buf_reset(&entry);
    }
    else if (!strcmp(buf_cstring(&pat), "/private")) {
        scope = ANNOTATE_PRIVATE;
        buf_reset(&entry);
    }
    else {
        r = annotate_parse_name(buf_cstring(&pat), &scope, &entry);
        if (r)
            goto done;
    }
    if (!annotate_may_read(target_kind(t, scope), t->rights)) {
        r = ERR_PERMISSION;
        goto done;
    }
    /* No user, no private values: annotate_foreach would report every
     * user's. */
    if (scope == ANNOTATE_PRIVATE && !res->userid)
        goto done;
    pentry = buf_cstring(&entry);

    /* Stored entries. */
    if (*pentry && depth == ANNOTATE_DEPTH_0) {
        r = annotate_getmetadata(uid, buf_cstring(&pat), res->userid,
                                 &value);
        if (!r) {
            result_add(res, buf_cstring(&pat), value.s, value.len, 0);
            found = 1;
        }
        r = 0;
    }
    else {
        wr.res = res;
        wr.is_server = t->is_server;
        wr.want = scope;
        r = annotate_foreach(uid, buf_cstring(&pat), depth, res->userid,
                             collect_cb, &wr);
        if (r == ERR_NOTFOUND)
            r = 0;
        if (r)
            goto done;
        if (!t->is_server && scope == ANNOTATE_PRIVATE
            && covers(pentry, depth, "/specialuse")
            && !annotate_get_specialuse(uid, &value)) {
            result_add(res, "/private/specialuse", value.s, value.len, 0);
        }
    }

    /* Computed Cyrus entries of a mailbox. */
    for (i = 0; !t->is_server && scope == ANNOTATE_SHARED
                && vendor_mailbox_ro[i]; i++) {
        char full[128];

        snprintf(full, sizeof(full), MD_VENDOR "%s", vendor_mailbox_ro[i]);
        if (!(covers(pentry, depth, full)
              || (depth == ANNOTATE_DEPTH_0 && !strcmp(pentry, full))))
            continue;
        if (!vendor_computed(t, vendor_mailbox_ro[i], &value)) {
            snprintf(full, sizeof(full), "/shared" MD_VENDOR "%s",
                     vendor_mailbox_ro[i]);
            result_add(res, full, value.s, value.len, 0);
        }
    }

    if (nil_when_absent && !found && *pentry && depth == ANNOTATE_DEPTH_0)
        result_add(res, buf_cstring(&pat), NULL, 0, 1);
done:
    buf_free(&pat);
    buf_free(&entry);
    buf_free(&value);
    return r;
}

/* Send "* METADATA <mbox> (name value ...)" for what `res` holds. */
static void md_send(struct imapd *s, const char *ext,
                    const struct md_result *res)
{
    struct buf line = BUF_INITIALIZER;
    size_t i;

    if (!res->count)
        return;
    buf_appendcstr(&line, "* METADATA ");
    imapd_buf_astring(&line, ext);
    buf_appendcstr(&line, " (");
    for (i = 0; i < res->count; i++) {
        if (i)
            buf_putc(&line, ' ');
        imapd_buf_astring(&line, res->pairs[i].name);
        buf_putc(&line, ' ');
        md_buf_value(&line, res->pairs[i].value.s, res->pairs[i].value.len,
                     res->pairs[i].is_nil);
    }
    buf_appendcstr(&line, ")\r\n");
    prot_write(s->out, line.s, line.len);
    buf_free(&line);
}

/* Read GETMETADATA's "(MAXSIZE n DEPTH d)" (the "(" already read). */
static int read_get_options(struct imapd *s, uint64_t *maxsize_r,
                            enum annotate_depth *depth_r)
{
    struct buf word = BUF_INITIALIZER;
    struct buf arg = BUF_INITIALIZER;
    int c;

    do {
        c = imap_parse_atom(&s->parser, &word);
        if (imapd_sp(s, c))
            goto fail;
        c = imap_parse_atom(&s->parser, &arg);
        if (c == EOF)
            goto fail;
        if (!strcasecmp(buf_cstring(&word), "MAXSIZE")) {
            if (parse_uint64(buf_cstring(&arg), NULL, maxsize_r)) {
                c = imap_parse_fail(&s->parser, "Invalid MAXSIZE");
                goto fail;
            }
        }
        else if (!strcasecmp(buf_cstring(&word), "DEPTH")) {
            if (!strcmp(buf_cstring(&arg), "0"))
                *depth_r = ANNOTATE_DEPTH_0;
            else if (!strcmp(buf_cstring(&arg), "1"))
                *depth_r = ANNOTATE_DEPTH_1;
            else if (!strcasecmp(buf_cstring(&arg), "infinity"))
                *depth_r = ANNOTATE_DEPTH_INFINITY;
            else {
                c = imap_parse_fail(&s->parser, "Invalid DEPTH");
                goto fail;
            }
        }
        else {
            c = imap_parse_fail(&s->parser, "Unknown GETMETADATA option");
            goto fail;
        }
    } while (c == ' ');
    if (c != ')') {
        c = imap_parse_fail(&s->parser, "Expected )");
        goto fail;
    }
    c = imap_parse_getc(&s->parser);
fail:
    buf_free(&word);
    buf_free(&arg);
    return c;
}

/* Read one entry name or a parenthesised list of them into `names`. */
static int read_names(struct imapd *s, strarray_t *names)
{
    struct buf word = BUF_INITIALIZER;
    int c = imap_parse_getc(&s->parser);
    int is_list = c == '(';

    if (!is_list)
        imap_parse_ungetc(&s->parser, c);
    do {
        c = imap_parse_astring(&s->parser, &word);
        if (c == EOF)
            goto done;
        if (word.len > MD_NAME_MAX) {
            c = imap_parse_fail(&s->parser, "Entry name too long");
            goto done;
        }
        if (names->count >= MD_MAX_ENTRIES * 2) {
            c = imap_parse_fail(&s->parser, "Too many entries");
            goto done;
        }
        strarray_append(names, buf_cstring(&word));
    } while (is_list && c == ' ');
    if (is_list) {
        if (c != ')') {
            c = imap_parse_fail(&s->parser, "Expected )");
            goto done;
        }
        c = imap_parse_getc(&s->parser);
    }
done:
    buf_free(&word);
    return c;
}

/* GETMETADATA [(options)] mailbox entries */
void imapd_cmd_getmetadata(struct imapd *s, int c)
{
    struct buf ext = BUF_INITIALIZER;
    strarray_t names = STRARRAY_INITIALIZER;
    struct md_result res;
    struct md_target t;
    enum annotate_depth depth = ANNOTATE_DEPTH_0;
    int i, r;

    memset(&t, 0, sizeof(t));
    memset(&res, 0, sizeof(res));
    res.maxsize = UINT64_MAX;
    res.userid = s->userid;
    if (imapd_sp(s, c))
        goto done;
    c = imap_parse_getc(&s->parser);
    if (c == '(') {
        c = read_get_options(s, &res.maxsize, &depth);
        if (imapd_sp(s, c))
            goto done;
    }
    else {
        imap_parse_ungetc(&s->parser, c);
    }
    c = imap_parse_astring(&s->parser, &ext);
    if (imapd_sp(s, c))
        goto done;
    c = read_names(s, &names);
    if (imapd_eol(s, c))
        goto done;

    r = target_resolve(s, buf_cstring(&ext), &t);
    for (i = 0; !r && i < names.count; i++)
        r = md_collect(s, &t, names.data[i], depth, 1, &res);
    if (r == ERR_INVALID) {
        imapd_bad(s, "Invalid entry name");
        goto done;
    }
    if (r == ERR_PERMISSION) {
        imapd_no(s, "[NOPERM] Permission denied");
        goto done;
    }
    if (r) {
        imapd_no_error(s, r);
        goto done;
    }
    md_send(s, buf_cstring(&ext), &res);
    if (res.longest)
        imapd_ok(s, "[METADATA LONGENTRIES %llu] Completed",
                 (unsigned long long)res.longest);
    else
        imapd_ok(s, "Completed");
done:
    result_fini(&res);
    target_fini(&t);
    strarray_fini(&names);
    buf_free(&ext);
}

/* Is the full name (lower case) a Cyrus vendor entry of the target:
 * returns 1 writable, -1 read-only, 0 not a vendor entry. */
static int vendor_class(const struct md_target *t, const char *lname)
{
    const char *p;

    if (t->is_server && in_list(server_extra_rw, lname))
        return 1;
    if (!strncmp(lname, "/shared" MD_VENDOR, strlen("/shared" MD_VENDOR)))
        p = lname + strlen("/shared" MD_VENDOR);
    else if (!strncmp(lname, "/private" MD_VENDOR,
                      strlen("/private" MD_VENDOR)))
        return t->is_server ? 0 : -1 * in_list(vendor_mailbox_ro,
                                              lname + strlen("/private"
                                                             MD_VENDOR));
    else
        return 0;
    if (t->is_server)
        return in_list(vendor_server_rw, p) ? 1 : 0;
    if (in_list(vendor_mailbox_ro, p))
        return -1;
    return in_list(vendor_mailbox_rw, p) ? 1 : 0;
}

/* Check a value for a writable vendor entry. */
static int vendor_value_ok(const char *lname, const char *v, size_t len)
{
    const char *p = strrchr(lname, '/') + 1;
    uint64_t n;
    size_t i;

    if (!v)
        return 1;
    if (!strcmp(p, "expire")) {
        for (i = 0; i < len; i++) {
            if (v[i] < '0' || v[i] > '9')
                return 0;
        }
        return len > 0 && len < 20 && !parse_uint64(v, NULL, &n);
    }
    if (!strcmp(p, "squat") || !strcmp(p, "sharedseen"))
        return (len == 4 && !strncasecmp(v, "true", 4))
               || (len == 5 && !strncasecmp(v, "false", 5));
    return memchr(v, '\0', len) == NULL;
}

/* Check one SETMETADATA entry before anything is written.  Returns 0,
 * or the error to answer with. */
static int md_check_set(struct imapd *s, const struct md_target *t,
                        const char *name, const char *value, size_t len)
{
    struct buf entry = BUF_INITIALIZER;
    enum annotate_scope scope;
    char *lname = xstrdup(name);
    int r;

    lcase(lname);
    r = annotate_parse_name(lname, &scope, &entry);
    if (r)
        goto done;
    if (scope == ANNOTATE_PRIVATE && acl_auth_is_anonymous(s->auth)) {
        r = ERR_UNSUPPORTED;
        goto done;
    }
    if (!annotate_may_write(target_kind(t, scope), t->rights)) {
        r = ERR_PERMISSION;
        goto done;
    }
    switch (vendor_class(t, lname)) {
    case -1:
        r = ERR_PERMISSION;
        break;
    case 1:
        if (scope != ANNOTATE_SHARED)
            r = ERR_PERMISSION;
        else if (!vendor_value_ok(lname, value, len))
            r = ERR_INVALID;
        break;
    default:
        if (value && len > ANNOTATE_VALUE_MAX)
            r = ERR_TOOBIG;
        if (!r && !strcmp(buf_cstring(&entry), "/specialuse") && value
            && len) {
            struct buf canon = BUF_INITIALIZER;

            if (t->is_server || scope != ANNOTATE_PRIVATE)
                r = ERR_PERMISSION;
            else
                r = annotate_specialuse_check(value, len, &canon);
            buf_free(&canon);
        }
        break;
    }
done:
    free(lname);
    buf_free(&entry);
    return r;
}

/* Store one checked SETMETADATA entry (value NULL deletes). */
static int md_store(struct imapd *s, const struct md_target *t,
                    const char *name, const char *value, size_t len)
{
    struct buf entry = BUF_INITIALIZER;
    enum annotate_scope scope;
    const char *uid = t->is_server ? "" : t->e->uniqueid;
    char *lname = xstrdup(name);
    int r;

    lcase(lname);
    if (vendor_class(t, lname) == 1) {
        r = annotate_parse_name(lname, &scope, &entry);
        if (!r)
            r = annotate_set(uid, buf_cstring(&entry), scope, s->userid,
                             value, len, t->quotaroot, NULL);
    }
    else {
        r = annotate_setmetadata(uid, lname, s->userid, value, len,
                                 t->quotaroot, NULL);
    }
    if (!r) {
        xsyslog(LOG_INFO, "metadata set", "user=%s mailbox=%s entry=%s",
                log_escape(s->userid, 0),
                t->is_server ? "-" : log_escape(t->intname, 0),
                log_escape(lname, 0));
    }
    free(lname);
    buf_free(&entry);
    return r;
}

/* Answer a failed SETMETADATA or SETANNOTATION. */
static void md_set_failed(struct imapd *s, int r)
{
    switch (r) {
    case ERR_TOOBIG:
        imapd_no(s, "[METADATA MAXSIZE %d] Value too long",
                 ANNOTATE_VALUE_MAX);
        break;
    case ERR_UNSUPPORTED:
        imapd_no(s, "[METADATA NOPRIVATE] Private entries need a login");
        break;
    case ERR_PERMISSION:
        imapd_no(s, "[NOPERM] Permission denied");
        break;
    case ERR_INVALID:
        imapd_no(s, "Invalid entry name or value");
        break;
    default:
        imapd_no_error(s, r);
        break;
    }
}

/* Read a metadata value: NIL, a string, or a literal8 (~{n}). */
static int read_value(struct imapd *s, struct buf *out, int *is_nil_r)
{
    int c = imap_parse_getc(&s->parser);

    *is_nil_r = 0;
    if (c == '~')
        return imap_parse_string_max(&s->parser, out, ANNOTATE_VALUE_MAX);
    imap_parse_ungetc(&s->parser, c);
    if (c == '{' || c == '"')
        return imap_parse_string_max(&s->parser, out, ANNOTATE_VALUE_MAX);
    return imap_parse_nstring(&s->parser, out, is_nil_r);
}

/* Set every (name, value) pair of the target: all are checked first,
 * so a refused one leaves nothing changed. */
static void md_set_all(struct imapd *s, const struct md_target *t,
                       const strarray_t *names, struct buf *values,
                       const int *nils)
{
    int i, r = 0;

    if (names->count > MD_MAX_ENTRIES) {
        imapd_no(s, "[METADATA TOOMANY] Too many entries");
        return;
    }
    for (i = 0; !r && i < names->count; i++) {
        r = md_check_set(s, t, names->data[i],
                         nils[i] ? NULL : values[i].s, values[i].len);
    }
    for (i = 0; !r && i < names->count; i++) {
        r = md_store(s, t, names->data[i],
                     nils[i] ? NULL : values[i].s, values[i].len);
    }
    if (r)
        md_set_failed(s, r);
    else
        imapd_ok(s, "Completed");
}

/* SETMETADATA mailbox (entry value ...) */
void imapd_cmd_setmetadata(struct imapd *s, int c)
{
    struct buf ext = BUF_INITIALIZER;
    struct buf name = BUF_INITIALIZER;
    strarray_t names = STRARRAY_INITIALIZER;
    struct buf values[MD_MAX_ENTRIES + 1];
    int nils[MD_MAX_ENTRIES + 1];
    struct md_target t;
    int toomany = 0;
    int n = 0, i, r;

    memset(&t, 0, sizeof(t));
    memset(values, 0, sizeof(values));
    if (imapd_sp(s, c))
        goto done;
    c = imap_parse_astring(&s->parser, &ext);
    if (imapd_sp(s, c))
        goto done;
    c = imap_parse_getc(&s->parser);
    if (c != '(') {
        if (c != EOF)
            imap_parse_fail(&s->parser, "Expected (");
        goto done;
    }
    do {
        /* Past the limit the rest is read (the command's own bound
         * still applies) and dropped, so the answer can be a NO. */
        if (n == MD_MAX_ENTRIES) {
            toomany = 1;
            n--;
            buf_reset(&values[n]);
            free(strarray_remove(&names, n));
        }
        c = imap_parse_astring(&s->parser, &name);
        if (imapd_sp(s, c))
            goto done;
        if (name.len > MD_NAME_MAX) {
            imap_parse_fail(&s->parser, "Entry name too long");
            goto done;
        }
        c = read_value(s, &values[n], &nils[n]);
        if (c == EOF)
            goto done;
        strarray_append(&names, buf_cstring(&name));
        n++;
    } while (c == ' ');
    if (c != ')') {
        imap_parse_fail(&s->parser, "Expected )");
        goto done;
    }
    c = imap_parse_getc(&s->parser);
    if (imapd_eol(s, c))
        goto done;
    if (toomany) {
        imapd_no(s, "[METADATA TOOMANY] Too many entries");
        goto done;
    }

    r = target_resolve(s, buf_cstring(&ext), &t);
    if (r) {
        imapd_no_error(s, r);
        goto done;
    }
    md_set_all(s, &t, &names, values, nils);
done:
    for (i = 0; i <= MD_MAX_ENTRIES; i++)
        buf_free(&values[i]);
    target_fini(&t);
    strarray_fini(&names);
    buf_free(&ext);
    buf_free(&name);
}

/* ---- GETANNOTATION / SETANNOTATION (the ANNOTATEMORE draft) ---- */

/* Which scopes an attribute list asks for, and whether sizes too. */
struct annot_attrs {
    int shared, priv;
    int value, size;
};

static int parse_attr(const char *a, struct annot_attrs *at)
{
    const char *dot;
    size_t base;

    if (!strcmp(a, "*") || !strcmp(a, "%")) {
        at->shared = at->priv = at->value = at->size = 1;
        return 0;
    }
    dot = strchr(a, '.');
    base = dot ? (size_t)(dot - a) : strlen(a);
    if (base == 5 && !strncasecmp(a, "value", 5))
        at->value = 1;
    else if (base == 4 && !strncasecmp(a, "size", 4))
        at->size = 1;
    else
        return ERR_INVALID;
    if (!dot || !strcmp(dot, ".*") || !strcmp(dot, ".%"))
        at->shared = at->priv = 1;
    else if (!strcasecmp(dot, ".shared"))
        at->shared = 1;
    else if (!strcasecmp(dot, ".priv"))
        at->priv = 1;
    else
        return ERR_INVALID;
    return 0;
}

/* Turn an ANNOTATEMORE entry pattern ("*", "/comment", "/vendor/%")
 * into a METADATA name below `scope`. */
static void annot_pattern(const char *scope, const char *pattern,
                          struct buf *out)
{
    buf_setcstr(out, scope);
    if (!strcmp(pattern, "*"))
        buf_appendcstr(out, "/*");
    else if (!strcmp(pattern, "%"))
        buf_appendcstr(out, "/%");
    else
        buf_appendcstr(out, pattern);
}

/* Send one "* ANNOTATION mbox entry (attr value ...)" per entry. */
static void annot_send(struct imapd *s, const char *ext,
                       const struct md_result *res,
                       const struct annot_attrs *at)
{
    strarray_t done = STRARRAY_INITIALIZER;
    struct buf line = BUF_INITIALIZER;
    size_t i, j;

    for (i = 0; i < res->count; i++) {
        const char *n = res->pairs[i].name;
        const char *entry = strchr(n + 1, '/');
        size_t start;

        if (!entry || strarray_find(&done, entry, 0) >= 0)
            continue;
        strarray_append(&done, entry);
        buf_reset(&line);
        buf_appendcstr(&line, "* ANNOTATION ");
        imapd_buf_astring(&line, ext);
        buf_putc(&line, ' ');
        imapd_buf_astring(&line, entry);
        buf_appendcstr(&line, " (");
        start = line.len;
        for (j = i; j < res->count; j++) {
            const struct md_pair *p = &res->pairs[j];
            const char *e2 = strchr(p->name + 1, '/');
            int is_priv = !strncmp(p->name, "/private", 8);
            const char *suffix = is_priv ? "priv" : "shared";

            if (!e2 || strcmp(e2, entry))
                continue;
            if (at->value) {
                buf_printf(&line, "%s\"value.%s\" ",
                           line.len > start ? " " : "", suffix);
                md_buf_value(&line, p->value.s, p->value.len, p->is_nil);
            }
            if (at->size) {
                buf_printf(&line, "%s\"size.%s\" \"%zu\"",
                           line.len > start ? " " : "", suffix,
                           p->value.len);
            }
        }
        buf_appendcstr(&line, ")\r\n");
        prot_write(s->out, line.s, line.len);
    }
    buf_free(&line);
    strarray_fini(&done);
}

/* GETANNOTATION mailbox entries attributes */
void imapd_cmd_getannotation(struct imapd *s, int c)
{
    struct buf ext = BUF_INITIALIZER;
    struct buf pat = BUF_INITIALIZER;
    strarray_t entries = STRARRAY_INITIALIZER;
    strarray_t attrs = STRARRAY_INITIALIZER;
    struct annot_attrs at;
    struct md_result res;
    struct md_target t;
    int i, r = 0;

    memset(&t, 0, sizeof(t));
    memset(&res, 0, sizeof(res));
    memset(&at, 0, sizeof(at));
    res.maxsize = UINT64_MAX;
    res.userid = s->userid;
    if (imapd_sp(s, c))
        goto done;
    c = imap_parse_astring(&s->parser, &ext);
    if (imapd_sp(s, c))
        goto done;
    c = read_names(s, &entries);
    if (imapd_sp(s, c))
        goto done;
    c = read_names(s, &attrs);
    if (imapd_eol(s, c))
        goto done;
    for (i = 0; !r && i < attrs.count; i++)
        r = parse_attr(attrs.data[i], &at);
    if (r) {
        imapd_bad(s, "Invalid attribute");
        goto done;
    }

    r = target_resolve(s, buf_cstring(&ext), &t);
    for (i = 0; !r && i < entries.count; i++) {
        if (at.shared) {
            annot_pattern("/shared", entries.data[i], &pat);
            r = md_collect(s, &t, buf_cstring(&pat), ANNOTATE_DEPTH_0, 0,
                           &res);
        }
        if (!r && at.priv) {
            annot_pattern("/private", entries.data[i], &pat);
            r = md_collect(s, &t, buf_cstring(&pat), ANNOTATE_DEPTH_0, 0,
                           &res);
        }
    }
    if (r == ERR_INVALID) {
        imapd_bad(s, "Invalid entry");
        goto done;
    }
    if (r == ERR_PERMISSION) {
        imapd_no(s, "[NOPERM] Permission denied");
        goto done;
    }
    if (r) {
        imapd_no_error(s, r);
        goto done;
    }
    annot_send(s, buf_cstring(&ext), &res, &at);
    imapd_ok(s, "Completed");
done:
    result_fini(&res);
    target_fini(&t);
    strarray_fini(&entries);
    strarray_fini(&attrs);
    buf_free(&ext);
    buf_free(&pat);
}

/* Read one "entry (attr value ...)" of SETANNOTATION, appending the
 * METADATA names and values. */
static int read_annot_entry(struct imapd *s, strarray_t *names,
                            struct buf *values, int *nils, int *n)
{
    struct buf entry = BUF_INITIALIZER;
    struct buf attr = BUF_INITIALIZER;
    int c = imap_parse_astring(&s->parser, &entry);

    if (imapd_sp(s, c))
        goto fail;
    if (entry.len > ANNOTATE_ENTRY_MAX) {
        c = imap_parse_fail(&s->parser, "Entry name too long");
        goto fail;
    }
    c = imap_parse_getc(&s->parser);
    if (c != '(') {
        c = c == EOF ? EOF : imap_parse_fail(&s->parser, "Expected (");
        goto fail;
    }
    do {
        const char *scope;

        c = imap_parse_astring(&s->parser, &attr);
        if (imapd_sp(s, c))
            goto fail;
        if (!strcasecmp(buf_cstring(&attr), "value.shared"))
            scope = "/shared";
        else if (!strcasecmp(buf_cstring(&attr), "value.priv"))
            scope = "/private";
        else {
            c = imap_parse_fail(&s->parser, "Invalid attribute");
            goto fail;
        }
        if (*n >= MD_MAX_ENTRIES) {
            c = imap_parse_fail(&s->parser, "Too many entries");
            goto fail;
        }
        c = read_value(s, &values[*n], &nils[*n]);
        if (c == EOF)
            goto fail;
        buf_reset(&attr);
        buf_printf(&attr, "%s%s", scope, buf_cstring(&entry));
        strarray_append(names, buf_cstring(&attr));
        (*n)++;
    } while (c == ' ');
    if (c != ')') {
        c = imap_parse_fail(&s->parser, "Expected )");
        goto fail;
    }
    c = imap_parse_getc(&s->parser);
fail:
    buf_free(&entry);
    buf_free(&attr);
    return c;
}

/* SETANNOTATION mailbox entry (attr value ...), or a parenthesised list
 * of "entry (attr value ...)". */
void imapd_cmd_setannotation(struct imapd *s, int c)
{
    struct buf ext = BUF_INITIALIZER;
    strarray_t names = STRARRAY_INITIALIZER;
    struct buf values[MD_MAX_ENTRIES + 1];
    int nils[MD_MAX_ENTRIES + 1];
    struct md_target t;
    int n = 0, i, r;

    memset(&t, 0, sizeof(t));
    memset(values, 0, sizeof(values));
    if (imapd_sp(s, c))
        goto done;
    c = imap_parse_astring(&s->parser, &ext);
    if (imapd_sp(s, c))
        goto done;
    c = imap_parse_getc(&s->parser);
    if (c == '(') {
        do {
            c = read_annot_entry(s, &names, values, nils, &n);
        } while (c == ' ');
        if (c != ')') {
            if (c != EOF)
                imap_parse_fail(&s->parser, "Expected )");
            goto done;
        }
        c = imap_parse_getc(&s->parser);
    }
    else {
        imap_parse_ungetc(&s->parser, c);
        c = read_annot_entry(s, &names, values, nils, &n);
    }
    if (imapd_eol(s, c))
        goto done;

    r = target_resolve(s, buf_cstring(&ext), &t);
    if (r) {
        imapd_no_error(s, r);
        goto done;
    }
    md_set_all(s, &t, &names, values, nils);
done:
    for (i = 0; i <= MD_MAX_ENTRIES; i++)
        buf_free(&values[i]);
    target_fini(&t);
    strarray_fini(&names);
    buf_free(&ext);
}

/* ---- admin commands ---- */

/* XFER mailbox server [partition]: moving a mailbox to another backend
 * needs the murder, which this server does not run. */
void imapd_cmd_xfer(struct imapd *s, int c)
{
    struct buf word = BUF_INITIALIZER;
    int n = 0;

    while (c == ' ' && n < 3) {
        c = imap_parse_astring(&s->parser, &word);
        n++;
    }
    if (c != EOF && n < 2) {
        imap_parse_fail(&s->parser, "Missing argument");
        goto done;
    }
    if (imapd_eol(s, c))
        goto done;
    if (!s->is_admin)
        imapd_no(s, "[NOPERM] XFER is for administrators");
    else
        imapd_no(s, "[CANNOT] XFER needs a murder (mupdate), which this"
                    " server is not part of");
done:
    buf_free(&word);
}

struct recon_rock {
    struct imapd *s;
    unsigned fixes;
    int r;
};

static void recon_report(const char *name, uint32_t uid, const char *what,
                         void *rock)
{
    (void)name;
    (void)uid;
    (void)what;
    ((struct recon_rock *)rock)->fixes++;
}

/* Reconstruct one mailbox from its mailboxes.db entry. */
static int recon_one(const struct mboxlist_entry *e, void *rock)
{
    struct recon_rock *rr = rock;
    struct mailbox_reconstruct_spec spec;
    struct buf path = BUF_INITIALIZER;
    int r;

    if (e->type != MAILBOX_TYPE_MAIL || (e->flags & MBOXLIST_FLAG_REMOTE))
        return 0;
    memset(&spec, 0, sizeof(spec));
    spec.name = e->name;
    spec.uniqueid = e->uniqueid;
    spec.type = e->type;
    spec.acl = e->acl;
    spec.uidvalidity = e->uidvalidity;
    r = mboxname_datapath(e->partition, e->name, 0, &path);
    if (!r)
        r = mailbox_reconstruct(buf_cstring(&path), &spec, 0, recon_report,
                                rr, NULL);
    xsyslog(r ? LOG_ERR : LOG_NOTICE, "reconstruct by admin",
            "user=%s mailbox=%s error=%s", log_escape(rr->s->userid, 0),
            log_escape(e->name, 0), r ? error_message(r) : "-");
    if (r && !rr->r)
        rr->r = r;
    buf_free(&path);
    return 0;
}

/* RECONSTRUCT mailbox [RECURSIVE], admins only (cyradm reconstruct). */
void imapd_cmd_reconstruct(struct imapd *s, int c)
{
    struct buf ext = BUF_INITIALIZER;
    struct buf opt = BUF_INITIALIZER;
    struct mboxlist_entry *e = NULL;
    struct recon_rock rr = { s, 0, 0 };
    char *intname = NULL;
    int recursive = 0;
    int r;

    if (imapd_sp(s, c))
        goto done;
    c = imap_parse_astring(&s->parser, &ext);
    if (c == ' ') {
        c = imap_parse_atom(&s->parser, &opt);
        if (c != EOF && strcasecmp(buf_cstring(&opt), "RECURSIVE")) {
            imap_parse_fail(&s->parser, "Unknown RECONSTRUCT option");
            goto done;
        }
        recursive = 1;
    }
    if (imapd_eol(s, c))
        goto done;
    if (!s->is_admin) {
        imapd_no(s, "[NOPERM] RECONSTRUCT is for administrators");
        goto done;
    }
    r = imapd_intname(s, buf_cstring(&ext), &intname);
    if (!r)
        r = mboxlist_lookup(intname, &e);
    if (r) {
        imapd_no_error(s, r);
        goto done;
    }
    if (recursive)
        mboxlist_foreach(intname, recon_one, &rr);
    else
        recon_one(e, &rr);
    if (rr.r) {
        imapd_no_error(s, rr.r);
        goto done;
    }
    if (s->sel)
        imapd_sync(s, 0);
    imapd_ok(s, "Completed (%u fixes)", rr.fixes);
done:
    mboxlist_entry_free(&e);
    free(intname);
    buf_free(&ext);
    buf_free(&opt);
}

/* imapd mailbox commands: NAMESPACE, CREATE, DELETE, RENAME, LIST,
 * LSUB, SUBSCRIBE, UNSUBSCRIBE, STATUS, APPEND and the ACL commands. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/charset.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/strarray.h"
#include "lib/times.h"
#include "lib/util.h"
#include "lib/xmalloc.h"
#include "imap/acl.h"
#include "imap/annotate.h"
#include "imap/append.h"
#include "imap/mailbox.h"
#include "imap/mboxlist.h"
#include "imap/mboxname.h"
#include "imap/quota.h"
#include "imap/subscription.h"

#include "imap/imapd.h"

/* Longest LIST pattern (reference and pattern together). */
#define LIST_PATTERN_MAX 1024

/* After ENABLE UTF8=ACCEPT (RFC 6855 3) names travel as UTF-8; they
 * are stored in modified UTF-7 either way. */
int imapd_intname(struct imapd *s, const char *extname, char **intname_r)
{
    struct buf m7 = BUF_INITIALIZER;
    int r;

    if (!(s->enabled & IMAPD_ENABLED_UTF8))
        return mboxname_from_external(extname, &s->ns, s->userid,
                                      intname_r);
    *intname_r = NULL;
    if (charset_utf8_to_mutf7(extname, strlen(extname), &m7))
        r = ERR_MAILBOX_BADNAME;
    else
        r = mboxname_from_external(buf_cstring(&m7), &s->ns, s->userid,
                                   intname_r);
    buf_free(&m7);
    return r;
}

char *imapd_extname(struct imapd *s, const char *intname)
{
    struct buf u8 = BUF_INITIALIZER;
    char *ext = NULL;

    if (mboxname_to_external(intname, &s->ns, s->userid, &ext))
        return NULL;
    if (!(s->enabled & IMAPD_ENABLED_UTF8))
        return ext;
    if (!charset_mutf7_to_utf8(ext, strlen(ext), &u8)) {
        free(ext);
        ext = buf_release(&u8);
    }
    buf_free(&u8);
    return ext;
}

int imapd_open_mailbox(const char *intname, int is_write,
                       struct mboxlist_entry **entry_r,
                       struct mailbox **mb_r)
{
    struct mboxlist_entry *e = NULL;
    struct buf path = BUF_INITIALIZER;
    int r;

    r = mboxlist_lookup(intname, &e);
    if (!r && e->type != MAILBOX_TYPE_MAIL)
        r = ERR_MAILBOX_NOTSUPPORTED;
    if (!r)
        r = mboxname_datapath(e->partition, e->name, 0, &path);
    if (!r && mb_r) {
        r = is_write ? mailbox_open_iwrite(buf_cstring(&path), mb_r)
                     : mailbox_open_iread(buf_cstring(&path), mb_r);
    }
    buf_free(&path);
    if (!r && entry_r)
        *entry_r = e;
    else
        mboxlist_entry_free(&e);
    return r;
}

/* Read one mailbox-name argument and map it; on a bad name answers NO.
 * Returns the byte after the argument, or EOF (parse error, or
 * *intname_r NULL after a NO, see `answered_r`). */
static int read_mailbox(struct imapd *s, struct buf *ext, char **intname_r)
{
    int c = imap_parse_astring(&s->parser, ext);

    *intname_r = NULL;
    if (c != EOF && imapd_intname(s, buf_cstring(ext), intname_r))
        *intname_r = NULL;
    return c;
}

/* NAMESPACE */
void imapd_cmd_namespace(struct imapd *s, int c)
{
    struct buf b = BUF_INITIALIZER;

    if (imapd_eol(s, c))
        return;
    mboxname_namespace_response(&s->ns, &b);
    imapd_printf(s, "* NAMESPACE %s\r\n", buf_cstring(&b));
    imapd_ok(s, "Completed");
    buf_free(&b);
}

/* Longest partition name accepted from a client. */
#define PARTITION_NAME_MAX 64

/* Is `name` a plausible partition name (it names a partition-<name>
 * option, so: letters, digits, '-', '_', '.' but no "..")? */
static int partition_name_ok(const char *name)
{
    const char *p;

    if (!*name || strlen(name) > PARTITION_NAME_MAX || strstr(name, ".."))
        return 0;
    for (p = name; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'
              || *p == '.'))
            return 0;
    }
    return 1;
}

/* Read CREATE's "(PARTITION p USE (\Attr ...))" (RFC 4466 and RFC
 * 6154; the "(" already read) into `part` and `use`. */
static int read_create_opts(struct imapd *s, struct buf *part,
                            struct buf *use)
{
    struct buf word = BUF_INITIALIZER;
    int c = imap_parse_getc(&s->parser);

    if (c == ')')
        goto end;
    imap_parse_ungetc(&s->parser, c);
    do {
        c = imap_parse_atom(&s->parser, &word);
        if (imapd_sp(s, c))
            goto fail;
        if (!strcasecmp(buf_cstring(&word), "PARTITION")) {
            c = imap_parse_astring(&s->parser, part);
        }
        else if (!strcasecmp(buf_cstring(&word), "USE")) {
            c = imap_parse_getc(&s->parser);
            if (c != '(') {
                c = c == EOF ? EOF : imap_parse_fail(&s->parser,
                                                     "Expected ( after USE");
                goto fail;
            }
            do {
                c = imap_parse_word(&s->parser, &word);
                if (c == EOF)
                    goto fail;
                if (use->len + word.len > ANNOTATE_ENTRY_MAX) {
                    c = imap_parse_fail(&s->parser, "USE list too long");
                    goto fail;
                }
                /* cyradm passes "cm --specialuse Drafts" as typed. */
                if (word.len)
                    buf_printf(use, "%s%s%s", use->len ? " " : "",
                               word.s[0] == '\\' ? "" : "\\",
                               buf_cstring(&word));
            } while (c == ' ');
            if (c != ')') {
                c = imap_parse_fail(&s->parser, "Expected ) after USE");
                goto fail;
            }
            c = imap_parse_getc(&s->parser);
        }
        else {
            c = imap_parse_fail(&s->parser, "Unknown CREATE option");
            goto fail;
        }
        if (c == EOF)
            goto fail;
    } while (c == ' ');
    if (c != ')') {
        c = imap_parse_fail(&s->parser, "Expected ) after CREATE options");
        goto fail;
    }
end:
    c = imap_parse_getc(&s->parser);
fail:
    buf_free(&word);
    return c;
}

/* CREATE name [partition], CREATE name (PARTITION p USE (\Drafts)): a
 * partition is for admins (cyradm "cm name partition"); USE sets the
 * special-use attributes (RFC 6154 CREATE-SPECIAL-USE). */
void imapd_cmd_create(struct imapd *s, int c)
{
    struct buf ext = BUF_INITIALIZER;
    struct buf part = BUF_INITIALIZER;
    struct buf use = BUF_INITIALIZER;
    struct buf canon = BUF_INITIALIZER;
    struct mboxlist_entry *e = NULL;
    char *intname = NULL;
    char *root = NULL;
    int r;

    if (imapd_sp(s, c))
        goto done;
    c = imap_parse_astring(&s->parser, &ext);
    if (c == ' ') {
        c = imap_parse_getc(&s->parser);
        if (c == '(') {
            c = read_create_opts(s, &part, &use);
        }
        else {
            imap_parse_ungetc(&s->parser, c);
            c = imap_parse_astring(&s->parser, &part);
        }
    }
    if (imapd_eol(s, c))
        goto done;
    if (part.len && !s->is_admin) {
        imapd_no_error(s, ERR_ACL_DENIED);
        goto done;
    }
    if (part.len && !partition_name_ok(buf_cstring(&part))) {
        imapd_no(s, "[CANNOT] Invalid partition name");
        goto done;
    }
    if (use.len && annotate_specialuse_check(use.s, use.len, &canon)) {
        imapd_no(s, "[USEATTR] Unsupported special-use attribute");
        goto done;
    }

    /* A trailing separator only says the client means to create
     * children under it (RFC 9051 6.3.4). */
    if (ext.len > 1 && ext.s[ext.len - 1] == s->ns.hier_sep)
        buf_truncate(&ext, ext.len - 1);
    r = imapd_intname(s, buf_cstring(&ext), &intname);
    if (!r)
        r = mboxname_policycheck(intname);
    if (!r)
        r = mboxlist_create(intname, MAILBOX_TYPE_MAIL,
                            buf_cstringnull(&part), s->auth, 0, &e);
    if (!r && canon.len) {
        if (quota_find_root(intname, &root))
            root = NULL;
        r = annotate_setmetadata(e->uniqueid, "/private/specialuse",
                                 s->userid, canon.s, canon.len, root, NULL);
        if (r) {
            /* RFC 6154 3: no mailbox without its special use. */
            mboxlist_delete(intname, s->auth, 1);
            imapd_no(s, "[USEATTR] Cannot set the special-use attribute");
            goto done;
        }
    }
    if (r) {
        imapd_no_error(s, r);
        goto done;
    }
    if (e && e->uniqueid)
        imapd_ok(s, "[MAILBOXID (%s)] Completed", e->uniqueid);
    else
        imapd_ok(s, "Completed");
done:
    mboxlist_entry_free(&e);
    free(intname);
    free(root);
    buf_free(&ext);
    buf_free(&part);
    buf_free(&use);
    buf_free(&canon);
}

/* DELETE name */
void imapd_cmd_delete(struct imapd *s, int c)
{
    struct buf ext = BUF_INITIALIZER;
    char *intname = NULL;
    int r;

    if (imapd_sp(s, c))
        goto done;
    c = read_mailbox(s, &ext, &intname);
    if (imapd_eol(s, c))
        goto done;
    if (!intname) {
        imapd_no_error(s, ERR_MAILBOX_NONEXISTENT);
        goto done;
    }
    if (s->sel && !strcmp(s->sel->intname, intname))
        imapd_deselect(s);
    r = mboxlist_delete(intname, s->auth, 0);
    if (r) {
        imapd_no_error(s, r);
        goto done;
    }
    imapd_ok(s, "Completed");
done:
    free(intname);
    buf_free(&ext);
}

/* RENAME old new [partition]; the partition is for admins (cyradm
 * "rename old new partition", which can also move a mailbox to another
 * partition under the same name). */
void imapd_cmd_rename(struct imapd *s, int c)
{
    struct buf oldext = BUF_INITIALIZER;
    struct buf newext = BUF_INITIALIZER;
    struct buf part = BUF_INITIALIZER;
    char *oldname = NULL;
    char *newname = NULL;
    int r;

    if (imapd_sp(s, c))
        goto done;
    c = read_mailbox(s, &oldext, &oldname);
    if (imapd_sp(s, c))
        goto done;
    c = read_mailbox(s, &newext, &newname);
    if (c == ' ')
        c = imap_parse_astring(&s->parser, &part);
    if (imapd_eol(s, c))
        goto done;
    if (part.len && !s->is_admin) {
        imapd_no_error(s, ERR_ACL_DENIED);
        goto done;
    }
    if (part.len && !partition_name_ok(buf_cstring(&part))) {
        imapd_no(s, "[CANNOT] Invalid partition name");
        goto done;
    }
    if (!oldname || !newname) {
        imapd_no_error(s, oldname ? ERR_MAILBOX_BADNAME
                                  : ERR_MAILBOX_NONEXISTENT);
        goto done;
    }
    /* XXX: cyradm's "rename box box partition" (moving a mailbox to
     * another partition under its own name) is refused by
     * mboxlist_rename as an existing name; it needs a mailbox-list
     * function that moves the files and rewrites the entry in place. */
    r = mboxname_policycheck(newname);
    if (!r)
        r = mboxlist_rename(oldname, newname, buf_cstringnull(&part),
                            s->auth);
    if (r) {
        imapd_no_error(s, r);
        goto done;
    }
    imapd_ok(s, "Completed");
done:
    free(oldname);
    free(newname);
    buf_free(&oldext);
    buf_free(&newext);
    buf_free(&part);
}

/* Does `name` match the LIST pattern `pat` ('*' anything, '%' anything
 * but `sep`)?  Dynamic programming over the two strings, so hostile
 * patterns stay O(len(pat) * len(name)). */
static int list_match(const char *pat, const char *name, char sep)
{
    size_t m = strlen(name);
    unsigned char *prev = xzmalloc(m + 1);
    unsigned char *cur = xzmalloc(m + 1);
    unsigned char *tmp;
    size_t j;
    int result;

    prev[0] = 1;
    for (; *pat; pat++) {
        cur[0] = (*pat == '*' || *pat == '%') && prev[0];
        for (j = 1; j <= m; j++) {
            char ch = name[j - 1];

            if (*pat == '*')
                cur[j] = prev[j] || cur[j - 1];
            else if (*pat == '%')
                cur[j] = prev[j] || (cur[j - 1] && ch != sep);
            else
                cur[j] = prev[j - 1] && *pat == ch;
        }
        tmp = prev;
        prev = cur;
        cur = tmp;
    }
    result = prev[m];
    free(prev);
    free(cur);
    return result;
}

/* Upper-case a leading "inbox" component, which matches in any case. */
static void canon_inbox(char *name, char sep)
{
    if (!strncasecmp(name, "INBOX", 5) && (name[5] == '\0' || name[5] == sep))
        memcpy(name, "INBOX", 5);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int sorted_has(const strarray_t *sa, const char *name)
{
    return sa->count && bsearch(&name, sa->data, (size_t)sa->count,
                                sizeof(char *), cmp_str) != NULL;
}

/* Send "* <what> (flags) "sep" name". */
static void list_reply(struct imapd *s, const char *what, const char *flags,
                       const char *name)
{
    struct buf b = BUF_INITIALIZER;

    buf_printf(&b, "* %s (%s) \"%s%c\" ", what, flags,
               s->ns.hier_sep == '\\' ? "\\" : "", s->ns.hier_sep);
    imapd_buf_astring(&b, name);
    imapd_printf(s, "%s\r\n", buf_cstring(&b));
    buf_free(&b);
}

/*
 * LIST with the RFC 5258 extensions:
 *
 *   LIST [SP "(" select-opts ")"] SP ref SP (pattern / "(" patterns ")")
 *        [SP "RETURN" SP "(" return-opts ")"]
 *
 * Selection options SUBSCRIBED, REMOTE (no murder: ignored),
 * RECURSIVEMATCH and SPECIAL-USE (RFC 6154); return options
 * SUBSCRIBED, CHILDREN, SPECIAL-USE, STATUS (RFC 5819) and MYRIGHTS
 * (RFC 8440).  \HasChildren/\HasNoChildren and the special-use
 * attributes are always sent, as RFC 5258 and RFC 6154 allow.
 *
 * The mailbox list is scanned only below the literal head of each
 * pattern (the part before the last separator ahead of the first
 * wildcard, turned into an internal name); a pattern whose head has no
 * internal form ("%", "Other Users/%") scans every visible mailbox.
 * Everything that can match a pattern, or be a child of a match, lies
 * below the head, so CHILDREN and RECURSIVEMATCH stay exact.
 */

/* Selection options. */
#define LIST_SEL_SUBSCRIBED 0x01u
#define LIST_SEL_REMOTE 0x02u
#define LIST_SEL_RECURSIVEMATCH 0x04u
#define LIST_SEL_SPECIALUSE 0x08u
/* Return options. */
#define LIST_RET_SUBSCRIBED 0x01u
#define LIST_RET_CHILDREN 0x02u
#define LIST_RET_SPECIALUSE 0x04u
#define LIST_RET_STATUS 0x08u
#define LIST_RET_MYRIGHTS 0x10u
/* Most patterns in one LIST. */
#define LIST_MAX_PATTERNS 32

static int read_status_items(struct imapd *s, unsigned *items_r);
static void status_format(struct mailbox *mb, unsigned items,
                          struct buf *out);

/* One name LIST may report: a visible mailbox, a subscription, or
 * both. */
struct list_item {
    char *name;                 /* external, "INBOX" canonical */
    char *intname;              /* NULL: no visible mailbox */
    char *acl;
    char *uniqueid;
    int is_subscribed;
    int is_sent;                /* already answered */
};

struct list_rock {
    struct imapd *s;
    struct list_item *items;
    size_t count;
    size_t alloc;
    strarray_t heads;           /* internal prefixes already scanned */
};

static struct list_item *list_add(struct list_rock *lr, char *name)
{
    struct list_item *it;

    if (lr->count == lr->alloc) {
        lr->alloc = lr->alloc ? lr->alloc * 2 : 64;
        lr->items = xrealloc(lr->items, lr->alloc * sizeof(*it));
    }
    it = &lr->items[lr->count++];
    memset(it, 0, sizeof(*it));
    canon_inbox(name, lr->s->ns.hier_sep);
    it->name = name;
    return it;
}

static int list_collect(const struct mboxlist_entry *e, void *rock)
{
    struct list_rock *lr = rock;
    char *ext = imapd_extname(lr->s, e->name);
    struct list_item *it;

    if (!ext)
        return 0;
    it = list_add(lr, ext);
    it->intname = xstrdup(e->name);
    it->acl = xstrdupnull(e->acl);
    it->uniqueid = xstrdupnull(e->uniqueid);
    return 0;
}

static int list_subscribed(const char *intname, void *rock)
{
    struct list_rock *lr = rock;
    char *ext = imapd_extname(lr->s, intname);

    if (ext)
        list_add(lr, ext)->is_subscribed = 1;
    return 0;
}

/* Scan the mailboxes that pattern `pattern` can reach (see above). */
static void list_scan(struct list_rock *lr, const char *pattern)
{
    struct imapd *s = lr->s;
    size_t wild = strcspn(pattern, "*%");
    struct buf head = BUF_INITIALIZER;
    struct buf sub = BUF_INITIALIZER;
    char *intname = NULL;
    char *p;

    buf_setmap(&head, pattern, wild);
    if (pattern[wild]) {
        p = memrchr(head.s ? head.s : "", s->ns.hier_sep, head.len);
        buf_truncate(&head, p ? (size_t)(p - head.s) : 0);
    }
    if (!head.len || imapd_intname(s, buf_cstring(&head), &intname)) {
        if (strarray_find(&lr->heads, "", 0) < 0) {
            strarray_append(&lr->heads, "");
            mboxlist_findall("*", s->auth, list_collect, lr);
        }
        goto done;
    }
    if (strarray_find(&lr->heads, intname, 0) >= 0
        || strarray_find(&lr->heads, "", 0) >= 0)
        goto done;
    strarray_append(&lr->heads, intname);
    mboxlist_findall(intname, s->auth, list_collect, lr);
    buf_printf(&sub, "%s.*", intname);
    mboxlist_findall(buf_cstring(&sub), s->auth, list_collect, lr);
done:
    free(intname);
    buf_free(&head);
    buf_free(&sub);
}

static int cmp_item(const void *a, const void *b)
{
    return strcmp(((const struct list_item *)a)->name,
                  ((const struct list_item *)b)->name);
}

/* Sort by name and fold duplicates (a mailbox seen by two scans, a
 * mailbox that is also subscribed). */
static void list_fold(struct list_rock *lr)
{
    size_t i, n = 0;

    if (!lr->count)
        return;
    qsort(lr->items, lr->count, sizeof(*lr->items), cmp_item);
    for (i = 1; i < lr->count; i++) {
        struct list_item *keep = &lr->items[n];
        struct list_item *it = &lr->items[i];

        if (strcmp(keep->name, it->name)) {
            lr->items[++n] = *it;
            continue;
        }
        keep->is_subscribed |= it->is_subscribed;
        if (!keep->intname) {
            keep->intname = it->intname;
            keep->acl = it->acl;
            keep->uniqueid = it->uniqueid;
        }
        else {
            free(it->intname);
            free(it->acl);
            free(it->uniqueid);
        }
        free(it->name);
    }
    lr->count = n + 1;
}

static void list_rock_fini(struct list_rock *lr)
{
    size_t i;

    for (i = 0; i < lr->count; i++) {
        free(lr->items[i].name);
        free(lr->items[i].intname);
        free(lr->items[i].acl);
        free(lr->items[i].uniqueid);
    }
    free(lr->items);
    strarray_fini(&lr->heads);
}

/* The item called `name`, or NULL. */
static struct list_item *list_find(struct list_rock *lr, const char *name)
{
    struct list_item key;

    memset(&key, 0, sizeof(key));
    key.name = (char *)name;
    return lr->count ? bsearch(&key, lr->items, lr->count,
                               sizeof(*lr->items), cmp_item)
                     : NULL;
}

struct list_cmd {
    unsigned sel;
    unsigned ret;
    unsigned status_items;
    int is_extended;            /* RFC 5258 syntax was used */
    strarray_t patterns;        /* reference + pattern, external */
};

/* Is `it` selected by the selection options (ignoring RECURSIVEMATCH)? */
static int list_selected(struct imapd *s, const struct list_cmd *lc,
                         const struct list_item *it, struct buf *special)
{
    buf_reset(special);
    if (it->intname && it->uniqueid)
        annotate_get_specialuse(it->uniqueid, special);
    (void)s;
    if (lc->sel & LIST_SEL_SUBSCRIBED) {
        if (!it->is_subscribed)
            return 0;
    }
    else if (!it->intname) {
        return 0;
    }
    if ((lc->sel & LIST_SEL_SPECIALUSE) && !special->len)
        return 0;
    return 1;
}

/* Send the STATUS and MYRIGHTS that follow the LIST line of `it`. */
static void list_extras(struct imapd *s, const struct list_cmd *lc,
                        const struct list_item *it)
{
    struct buf line = BUF_INITIALIZER;
    struct buf data = BUF_INITIALIZER;
    struct mailbox *mb = NULL;
    uint32_t rights = 0;

    if (!it->intname)
        return;
    acl_myrights(s->auth, it->acl, it->intname, &rights);
    if ((lc->ret & LIST_RET_STATUS) && (rights & ACL_READ)
        && !imapd_open_mailbox(it->intname, 0, NULL, &mb)) {
        status_format(mb, lc->status_items, &data);
        mailbox_close(&mb);
        buf_appendcstr(&line, "* STATUS ");
        imapd_buf_astring(&line, it->name);
        buf_printf(&line, " (%s)\r\n", buf_cstring(&data));
    }
    if (lc->ret & LIST_RET_MYRIGHTS) {
        buf_reset(&data);
        acl_rights_format(rights, &data);
        buf_appendcstr(&line, "* MYRIGHTS ");
        imapd_buf_astring(&line, it->name);
        buf_putc(&line, ' ');
        imapd_buf_astring(&line, buf_cstring(&data));
        buf_appendcstr(&line, "\r\n");
    }
    if (line.len)
        imapd_printf(s, "%s", buf_cstring(&line));
    buf_free(&line);
    buf_free(&data);
}

/* Answer one name: attributes, CHILDINFO, then STATUS/MYRIGHTS. */
static void list_send(struct imapd *s, const struct list_cmd *lc,
                      const char *name, const struct list_item *it,
                      int has_children, int has_selected_child,
                      const struct buf *special)
{
    struct buf attrs = BUF_INITIALIZER;
    struct buf b = BUF_INITIALIZER;

    if (!it || !it->intname) {
        buf_appendcstr(&attrs, lc->is_extended || it ? "\\NonExistent"
                                                     : "\\Noselect");
    }
    if (it && it->is_subscribed
        && (lc->ret & LIST_RET_SUBSCRIBED))
        buf_printf(&attrs, "%s\\Subscribed", attrs.len ? " " : "");
    buf_printf(&attrs, "%s%s", attrs.len ? " " : "",
               has_children ? "\\HasChildren" : "\\HasNoChildren");
    if (it && it->intname && special->len)
        buf_printf(&attrs, " %.*s", (int)special->len, special->s);

    buf_printf(&b, "* LIST (%s) \"%s%c\" ", buf_cstring(&attrs),
               s->ns.hier_sep == '\\' ? "\\" : "", s->ns.hier_sep);
    imapd_buf_astring(&b, name);
    if (has_selected_child)
        buf_appendcstr(&b, " (\"CHILDINFO\" (\"SUBSCRIBED\"))");
    imapd_printf(s, "%s\r\n", buf_cstring(&b));
    if (it && (lc->ret & (LIST_RET_STATUS | LIST_RET_MYRIGHTS)))
        list_extras(s, lc, it);
    buf_free(&attrs);
    buf_free(&b);
}

/* Answer every name matching `pattern` that was not answered yet.
 * `parents` holds every proper prefix of a visible mailbox,
 * `subparents` every proper prefix of a subscribed name; `shown` the
 * names answered without an item. */
static void list_pattern(struct list_rock *lr, const struct list_cmd *lc,
                         const char *pattern, const strarray_t *parents,
                         const strarray_t *subparents, strarray_t *shown)
{
    struct imapd *s = lr->s;
    struct buf special = BUF_INITIALIZER;
    char sep = s->ns.hier_sep;
    int recursive = (lc->sel & LIST_SEL_RECURSIVEMATCH) != 0;
    const strarray_t *cands;
    size_t i;
    int j;

    for (i = 0; i < lr->count; i++) {
        struct list_item *it = &lr->items[i];
        int sel, haschild, selchild;

        if (it->is_sent || !list_match(pattern, it->name, sep))
            continue;
        sel = list_selected(s, lc, it, &special);
        haschild = sorted_has(parents, it->name);
        selchild = recursive && sorted_has(subparents, it->name);
        if (!sel && !selchild)
            continue;
        it->is_sent = 1;
        list_send(s, lc, it->name, it, haschild, selchild, &special);
    }

    /* Names that are neither a mailbox nor subscribed: parents shown
     * for a pattern ending in '%' (RFC 3501 6.3.8) or for
     * RECURSIVEMATCH. */
    buf_reset(&special);
    cands = parents;
    if (!recursive && pattern[strlen(pattern) - 1] != '%')
        goto done;
    if (lc->sel & LIST_SEL_SUBSCRIBED) {
        if (!recursive)
            goto done;
        cands = subparents;
    }
    else if (lc->sel & LIST_SEL_SPECIALUSE) {
        goto done;
    }
    for (j = 0; j < cands->count; j++) {
        const char *n = cands->data[j];

        if (list_find(lr, n) || strarray_find(shown, n, 0) >= 0
            || !list_match(pattern, n, sep))
            continue;
        strarray_append(shown, n);
        list_send(s, lc, n, NULL, sorted_has(parents, n), recursive,
                  &special);
    }
done:
    buf_free(&special);
}

/* Every proper prefix (at a separator) of the names in `lr` that pass
 * `want`, sorted and unique. */
static void list_prefixes(struct list_rock *lr, int subscribed,
                          strarray_t *out)
{
    char sep = lr->s->ns.hier_sep;
    size_t i;

    for (i = 0; i < lr->count; i++) {
        const char *n = lr->items[i].name;
        const char *p;

        if (subscribed ? !lr->items[i].is_subscribed
                       : !lr->items[i].intname)
            continue;
        for (p = strchr(n, sep); p; p = strchr(p + 1, sep))
            strarray_appendm(out, xstrndup(n, (size_t)(p - n)));
    }
    strarray_sort(out, cmp_str);
    strarray_uniq(out);
}

/* Answer LIST for the parsed command. */
static void list_run(struct imapd *s, struct list_cmd *lc)
{
    struct list_rock lr;
    strarray_t parents = STRARRAY_INITIALIZER;
    strarray_t subparents = STRARRAY_INITIALIZER;
    strarray_t shown = STRARRAY_INITIALIZER;
    int need_subs = (lc->sel & LIST_SEL_SUBSCRIBED)
                    || (lc->ret & LIST_RET_SUBSCRIBED);
    int i;

    memset(&lr, 0, sizeof(lr));
    lr.s = s;
    for (i = 0; i < lc->patterns.count; i++) {
        canon_inbox(lc->patterns.data[i], s->ns.hier_sep);
        if (*lc->patterns.data[i])
            list_scan(&lr, lc->patterns.data[i]);
    }
    if (need_subs)
        subscription_foreach(s->userid, NULL, list_subscribed, &lr);
    list_fold(&lr);
    list_prefixes(&lr, 0, &parents);
    if (need_subs)
        list_prefixes(&lr, 1, &subparents);

    for (i = 0; i < lc->patterns.count; i++) {
        if (!*lc->patterns.data[i]) {
            if (strarray_find(&shown, "", 0) < 0) {
                list_reply(s, "LIST", "\\Noselect", "");
                strarray_append(&shown, "");
            }
            continue;
        }
        list_pattern(&lr, lc, lc->patterns.data[i], &parents, &subparents,
                     &shown);
    }
    strarray_fini(&shown);
    strarray_fini(&parents);
    strarray_fini(&subparents);
    list_rock_fini(&lr);
}

/* Read "reference pattern" into one external pattern (malloc'd). */
static int read_list_args(struct imapd *s, int c, char **pattern_r)
{
    struct buf ref = BUF_INITIALIZER;
    struct buf pat = BUF_INITIALIZER;

    *pattern_r = NULL;
    if (imapd_sp(s, c))
        goto done;
    c = imap_parse_astring(&s->parser, &ref);
    if (imapd_sp(s, c))
        goto done;
    c = imap_parse_listmbox(&s->parser, &pat);
    if (imapd_eol(s, c))
        goto done;
    if (ref.len + pat.len > LIST_PATTERN_MAX) {
        imap_parse_fail(&s->parser, "[TOOBIG] Pattern too long");
        goto done;
    }
    buf_appendbuf(&ref, &pat);
    *pattern_r = buf_release(&ref);
done:
    buf_free(&ref);
    buf_free(&pat);
    return *pattern_r ? 0 : -1;
}

/* Read "(opt opt ...)" of LIST (the "(" already read) into a mask, by
 * the names in `names` (parallel to `bits`).  STATUS takes its item
 * list.  Returns the byte after ")". */
static int read_list_opts(struct imapd *s, const char *const *names,
                          const unsigned *bits, unsigned *mask_r,
                          unsigned *status_r)
{
    struct buf word = BUF_INITIALIZER;
    int c = imap_parse_getc(&s->parser);
    int i;

    if (c == ')')
        goto end;
    imap_parse_ungetc(&s->parser, c);
    do {
        c = imap_parse_atom(&s->parser, &word);
        if (c == EOF)
            goto fail;
        for (i = 0; names[i]; i++) {
            if (!strcasecmp(buf_cstring(&word), names[i]))
                break;
        }
        if (!names[i]) {
            c = imap_parse_fail(&s->parser, "Unknown LIST option");
            goto fail;
        }
        *mask_r |= bits[i];
        if (status_r && bits[i] == LIST_RET_STATUS) {
            if (imapd_sp(s, c))
                goto fail;
            c = read_status_items(s, status_r);
            if (c == EOF)
                goto fail;
        }
    } while (c == ' ');
    if (c != ')') {
        c = imap_parse_fail(&s->parser, "Expected ) in LIST options");
        goto fail;
    }
end:
    c = imap_parse_getc(&s->parser);
fail:
    buf_free(&word);
    return c;
}

/* Read the arguments of LIST after "LIST " into `lc`.  Returns 0, or
 * -1 with the parse error recorded. */
static int read_list_command(struct imapd *s, int c, struct list_cmd *lc)
{
    static const char *const selnames[] = {
        "SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE", NULL
    };
    static const unsigned selbits[] = {
        LIST_SEL_SUBSCRIBED, LIST_SEL_REMOTE, LIST_SEL_RECURSIVEMATCH,
        LIST_SEL_SPECIALUSE
    };
    static const char *const retnames[] = {
        "SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS", "MYRIGHTS", NULL
    };
    static const unsigned retbits[] = {
        LIST_RET_SUBSCRIBED, LIST_RET_CHILDREN, LIST_RET_SPECIALUSE,
        LIST_RET_STATUS, LIST_RET_MYRIGHTS
    };
    struct buf ref = BUF_INITIALIZER;
    struct buf pat = BUF_INITIALIZER;
    struct buf word = BUF_INITIALIZER;
    int is_list, r = -1;

    if (imapd_sp(s, c))
        goto done;
    c = imap_parse_getc(&s->parser);
    if (c == '(') {
        lc->is_extended = 1;
        c = read_list_opts(s, selnames, selbits, &lc->sel, NULL);
        if (imapd_sp(s, c))
            goto done;
    }
    else {
        imap_parse_ungetc(&s->parser, c);
    }
    c = imap_parse_astring(&s->parser, &ref);
    if (imapd_sp(s, c))
        goto done;
    c = imap_parse_getc(&s->parser);
    is_list = c == '(';
    if (is_list)
        lc->is_extended = 1;
    else
        imap_parse_ungetc(&s->parser, c);
    do {
        c = imap_parse_listmbox(&s->parser, &pat);
        if (c == EOF)
            goto done;
        if (ref.len + pat.len > LIST_PATTERN_MAX
            || lc->patterns.count >= LIST_MAX_PATTERNS) {
            imap_parse_fail(&s->parser, "[TOOBIG] Pattern too long");
            goto done;
        }
        buf_reset(&word);
        buf_appendbuf(&word, &ref);
        buf_appendbuf(&word, &pat);
        strarray_append(&lc->patterns, buf_cstring(&word));
    } while (is_list && c == ' ');
    if (is_list) {
        if (c != ')') {
            imap_parse_fail(&s->parser, "Expected ) after patterns");
            goto done;
        }
        c = imap_parse_getc(&s->parser);
    }
    if (c == ' ') {
        c = imap_parse_atom(&s->parser, &word);
        if (c != EOF && strcasecmp(buf_cstring(&word), "RETURN")) {
            imap_parse_fail(&s->parser, "Expected RETURN");
            goto done;
        }
        if (imapd_sp(s, c))
            goto done;
        c = imap_parse_getc(&s->parser);
        if (c != '(') {
            if (c != EOF)
                imap_parse_fail(&s->parser, "Expected ( after RETURN");
            goto done;
        }
        lc->is_extended = 1;
        c = read_list_opts(s, retnames, retbits, &lc->ret,
                           &lc->status_items);
    }
    if (imapd_eol(s, c))
        goto done;

    /* RFC 5258 3.1: RECURSIVEMATCH needs another selection option. */
    if ((lc->sel & LIST_SEL_RECURSIVEMATCH)
        && !(lc->sel & (LIST_SEL_SUBSCRIBED | LIST_SEL_SPECIALUSE))) {
        imap_parse_fail(&s->parser, "RECURSIVEMATCH needs another"
                                    " selection option");
        goto done;
    }
    if (lc->sel & LIST_SEL_SUBSCRIBED)
        lc->ret |= LIST_RET_SUBSCRIBED;
    r = 0;
done:
    buf_free(&ref);
    buf_free(&pat);
    buf_free(&word);
    return r;
}

/* LIST, with the RFC 5258 extended forms. */
void imapd_cmd_list(struct imapd *s, int c)
{
    struct list_cmd lc;

    memset(&lc, 0, sizeof(lc));
    if (!read_list_command(s, c, &lc))
        list_run(s, &lc);
    if (!s->parser.error)
        imapd_ok(s, "Completed");
    strarray_fini(&lc.patterns);
}

struct lsub_rock {
    struct imapd *s;
    const char *pattern;
};

static int lsub_one(const char *intname, void *rock)
{
    struct lsub_rock *lr = rock;
    struct mboxlist_entry *e = NULL;
    char *ext = imapd_extname(lr->s, intname);

    if (ext) {
        canon_inbox(ext, lr->s->ns.hier_sep);
        if (list_match(lr->pattern, ext, lr->s->ns.hier_sep)) {
            int exists = !mboxlist_lookup(intname, &e);

            list_reply(lr->s, "LSUB", exists ? "" : "\\Noselect", ext);
        }
    }
    mboxlist_entry_free(&e);
    free(ext);
    return 0;
}

/* LSUB reference pattern */
void imapd_cmd_lsub(struct imapd *s, int c)
{
    struct lsub_rock lr;
    char *pattern = NULL;

    if (read_list_args(s, c, &pattern))
        return;
    canon_inbox(pattern, s->ns.hier_sep);
    lr.s = s;
    lr.pattern = pattern;
    if (*pattern)
        subscription_foreach(s->userid, NULL, lsub_one, &lr);
    imapd_ok(s, "Completed");
    free(pattern);
}

/* SUBSCRIBE / UNSUBSCRIBE name */
static void subscribe(struct imapd *s, int c, int add)
{
    struct buf ext = BUF_INITIALIZER;
    struct mboxlist_entry *e = NULL;
    char *intname = NULL;
    int r;

    if (imapd_sp(s, c))
        goto done;
    c = read_mailbox(s, &ext, &intname);
    if (imapd_eol(s, c))
        goto done;
    if (!intname) {
        imapd_no_error(s, ERR_MAILBOX_BADNAME);
        goto done;
    }
    if (add) {
        r = config_getswitch(IMAPOPT_ALLOWALLSUBSCRIBE)
            ? 0 : mboxlist_lookup(intname, &e);
        if (!r)
            r = subscription_add(s->userid, intname);
    }
    else {
        r = subscription_remove(s->userid, intname);
    }
    if (r)
        imapd_no_error(s, r);
    else
        imapd_ok(s, "Completed");
done:
    mboxlist_entry_free(&e);
    free(intname);
    buf_free(&ext);
}

void imapd_cmd_subscribe(struct imapd *s, int c)
{
    subscribe(s, c, 1);
}

void imapd_cmd_unsubscribe(struct imapd *s, int c)
{
    subscribe(s, c, 0);
}

/* STATUS items, in the order we answer them. */
enum {
    ST_MESSAGES = 1 << 0,
    ST_UIDNEXT = 1 << 1,
    ST_UIDVALIDITY = 1 << 2,
    ST_UNSEEN = 1 << 3,
    ST_HIGHESTMODSEQ = 1 << 4,
    ST_RECENT = 1 << 5,
    ST_SIZE = 1 << 6,
    ST_DELETED = 1 << 7,
    ST_APPENDLIMIT = 1 << 8,
    ST_DELETED_STORAGE = 1 << 9,
    ST_MAILBOXID = 1 << 10      /* RFC 8474: "MAILBOXID (id)" */
};

static const struct {
    const char *name;
    unsigned bit;
} status_items[] = {
    { "MESSAGES", ST_MESSAGES }, { "UIDNEXT", ST_UIDNEXT },
    { "UIDVALIDITY", ST_UIDVALIDITY }, { "UNSEEN", ST_UNSEEN },
    { "HIGHESTMODSEQ", ST_HIGHESTMODSEQ }, { "RECENT", ST_RECENT },
    { "SIZE", ST_SIZE }, { "DELETED", ST_DELETED },
    { "APPENDLIMIT", ST_APPENDLIMIT },
    { "DELETED-STORAGE", ST_DELETED_STORAGE },
    { "MAILBOXID", ST_MAILBOXID }
};
#define NSTATUS (sizeof(status_items) / sizeof(status_items[0]))

/* Count messages without \Seen (a lock is held).
 * XXX: this is the owner's \Seen; a non-owner's STATUS UNSEEN should
 * come from their seen database, as SELECT does. */
static uint32_t count_unseen(struct mailbox *mb)
{
    const struct mailbox_index_header *ih = mailbox_index(mb);
    struct mailbox_record rec;
    uint32_t recno;
    uint32_t n = 0;

    for (recno = 1; recno <= ih->num_records; recno++) {
        if (mailbox_read_record(mb, recno, &rec))
            break;
        if (!(rec.system_flags & (MAILBOX_FLAG_EXPUNGED | MAILBOX_FLAG_SEEN)))
            n++;
    }
    return n;
}

/* Bytes of the messages marked \Deleted (RFC 9208 DELETED-STORAGE; a
 * lock is held). */
static uint64_t deleted_storage(struct mailbox *mb)
{
    const struct mailbox_index_header *ih = mailbox_index(mb);
    struct mailbox_record rec;
    uint32_t recno;
    uint64_t n = 0;

    if (!ih->deleted)
        return 0;
    for (recno = 1; recno <= ih->num_records; recno++) {
        if (mailbox_read_record(mb, recno, &rec))
            break;
        if ((rec.system_flags & MAILBOX_FLAG_DELETED)
            && !(rec.system_flags & MAILBOX_FLAG_EXPUNGED))
            n += rec.size;
    }
    return n;
}

/* The STATUS data of an open, locked mailbox. */
static void status_format(struct mailbox *mb, unsigned items,
                          struct buf *out)
{
    const struct mailbox_index_header *ih = mailbox_index(mb);
    size_t i;

    for (i = 0; i < NSTATUS; i++) {
        unsigned bit = status_items[i].bit;
        uint64_t v = 0;

        if (!(items & bit))
            continue;
        if (bit == ST_MAILBOXID) {
            buf_printf(out, "%sMAILBOXID (%s)", out->len ? " " : "",
                       mailbox_uniqueid(mb));
            continue;
        }
        switch (bit) {
        case ST_MESSAGES: v = ih->exists; break;
        case ST_UIDNEXT: v = ih->uidnext; break;
        case ST_UIDVALIDITY: v = ih->uidvalidity; break;
        case ST_UNSEEN: v = count_unseen(mb); break;
        case ST_HIGHESTMODSEQ: v = ih->highestmodseq; break;
        case ST_SIZE: v = ih->quota_used; break;
        case ST_DELETED: v = ih->deleted; break;
        case ST_APPENDLIMIT: v = imapd_append_limit(); break;
        case ST_DELETED_STORAGE: v = deleted_storage(mb); break;
        default: v = 0; break;
        }
        buf_printf(out, "%s%s %llu", out->len ? " " : "",
                   status_items[i].name, (unsigned long long)v);
    }
}

/* Read "(item item ...)" into a bit mask; returns the byte after ")". */
static int read_status_items(struct imapd *s, unsigned *items_r)
{
    struct buf word = BUF_INITIALIZER;
    int c = imap_parse_getc(&s->parser);
    size_t i;

    *items_r = 0;
    if (c != '(') {
        buf_free(&word);
        return c == EOF ? EOF : imap_parse_fail(&s->parser,
                                                "Expected ( in STATUS");
    }
    do {
        c = imap_parse_atom(&s->parser, &word);
        if (c == EOF)
            break;
        for (i = 0; i < NSTATUS; i++) {
            if (!strcasecmp(buf_cstring(&word), status_items[i].name))
                break;
        }
        if (i == NSTATUS) {
            c = imap_parse_fail(&s->parser, "Unknown STATUS item");
            break;
        }
        *items_r |= status_items[i].bit;
    } while (c == ' ');
    if (c != EOF && c != ')')
        c = imap_parse_fail(&s->parser, "Expected ) in STATUS");
    else if (c == ')')
        c = imap_parse_getc(&s->parser);
    buf_free(&word);
    return c;
}

/* STATUS name (items) */
void imapd_cmd_status(struct imapd *s, int c)
{
    struct buf ext = BUF_INITIALIZER;
    struct buf data = BUF_INITIALIZER;
    struct buf line = BUF_INITIALIZER;
    struct mboxlist_entry *e = NULL;
    struct mailbox *mb = NULL;
    char *intname = NULL;
    uint32_t rights = 0;
    unsigned items;
    int r;

    if (imapd_sp(s, c))
        goto done;
    c = read_mailbox(s, &ext, &intname);
    if (imapd_sp(s, c))
        goto done;
    c = read_status_items(s, &items);
    if (imapd_eol(s, c))
        goto done;

    r = intname ? imapd_open_mailbox(intname, 0, &e, &mb)
                : ERR_MAILBOX_NONEXISTENT;
    if (!r) {
        acl_myrights(s->auth, e->acl, intname, &rights);
        if (!(rights & ACL_READ))
            r = (rights & ACL_LOOKUP) ? ERR_ACL_DENIED
                                      : ERR_MAILBOX_NONEXISTENT;
    }
    if (r) {
        imapd_no_error(s, r);
        goto done;
    }
    status_format(mb, items, &data);
    buf_appendcstr(&line, "* STATUS ");
    imapd_buf_astring(&line, buf_cstring(&ext));
    buf_printf(&line, " (%s)\r\n", buf_cstring(&data));
    imapd_printf(s, "%s", buf_cstring(&line));
    imapd_ok(s, "Completed");
done:
    mailbox_close(&mb);
    mboxlist_entry_free(&e);
    free(intname);
    buf_free(&ext);
    buf_free(&data);
    buf_free(&line);
}

int imapd_flag_is_valid(const char *flag)
{
    static const char *const system[] = {
        "\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", NULL
    };
    const char *p;
    int i;

    if (flag[0] == '\\') {
        for (i = 0; system[i]; i++) {
            if (!strcasecmp(flag, system[i]))
                return 1;
        }
        return 0;
    }
    if (!*flag || strlen(flag) > MAILBOX_MAX_FLAGNAME)
        return 0;
    for (p = flag; *p; p++) {
        if (*p <= 0x20 || *p >= 0x7f || strchr("(){%*\"\\]", *p))
            return 0;
    }
    return 1;
}

int imapd_parse_flaglist(struct imapd *s, strarray_t *flags)
{
    struct buf word = BUF_INITIALIZER;
    int c = imap_parse_getc(&s->parser);

    if (c == ')')
        goto out;
    imap_parse_ungetc(&s->parser, c);
    for (;;) {
        c = imap_parse_word(&s->parser, &word);
        if (c == EOF)
            goto fail;
        if (!imapd_flag_is_valid(buf_cstring(&word))) {
            c = imap_parse_fail(&s->parser, "Invalid flag");
            goto fail;
        }
        strarray_append(flags, buf_cstring(&word));
        if (c == ')')
            break;
        if (c != ' ') {
            c = imap_parse_fail(&s->parser, "Expected ) after flags");
            goto fail;
        }
    }
out:
    c = imap_parse_getc(&s->parser);
fail:
    buf_free(&word);
    return c;
}

/* Read the optional flag list and date of APPEND; returns the byte
 * that starts the message. */
static int append_options(struct imapd *s, strarray_t *flags,
                          time_t *date_r)
{
    struct buf date = BUF_INITIALIZER;
    int c = imap_parse_getc(&s->parser);
    int tz;

    if (c == '(') {
        c = imapd_parse_flaglist(s, flags);
        if (imapd_sp(s, c))
            goto fail;
        c = imap_parse_getc(&s->parser);
    }
    if (c == '"') {
        imap_parse_ungetc(&s->parser, c);
        c = imap_parse_string(&s->parser, &date);
        if (c == EOF)
            goto fail;
        if (times_parse_imap(buf_cstring(&date), date_r, &tz)) {
            c = imap_parse_fail(&s->parser, "Invalid date-time");
            goto fail;
        }
        if (imapd_sp(s, c))
            goto fail;
        c = imap_parse_getc(&s->parser);
    }
    buf_free(&date);
    return c;
fail:
    buf_free(&date);
    return EOF;
}

size_t imapd_append_limit(void)
{
    return imapd_max_message;
}

/* Most messages in one MULTIAPPEND, and most bytes all together (in
 * APPENDLIMITs): the messages are staged on disk before the quota can
 * be checked, so a client may not fill a partition with one command. */
#define APPEND_MAX_MESSAGES 1000
#define APPEND_MAX_TOTAL_LIMITS 8

/* The messages of one APPEND, each staged in its own file. */
struct append_msgs {
    strarray_t paths;
    strarray_t *flags;          /* one list per message */
    time_t *dates;
    int count;
    int alloc;
};

static void append_msgs_fini(struct append_msgs *am)
{
    int i;

    for (i = 0; i < am->paths.count; i++)
        unlink(am->paths.data[i]);
    for (i = 0; i < am->count; i++)
        strarray_fini(&am->flags[i]);
    strarray_fini(&am->paths);
    free(am->flags);
    free(am->dates);
}

/* Write `msg` to a new staging file on `partition`, remembered in
 * `am`.  Returns 0 or ERR_IO. */
static int append_stage(struct append_msgs *am, const char *partition,
                        const struct buf *msg)
{
    struct buf path = BUF_INITIALIZER;
    size_t off = 0;
    int fd = -1;
    int r;

    r = append_stage_path(partition, &path);
    if (!r)
        r = util_open_nofollow(buf_cstring(&path),
                               O_WRONLY | O_CREAT | O_EXCL, 0600, &fd);
    if (r)
        goto done;
    strarray_append(&am->paths, buf_cstring(&path));
    while (off < msg->len) {
        ssize_t n = write(fd, msg->s + off, msg->len - off);

        if (n < 0) {
            xsyslog(LOG_ERR, "cannot write staging file", "path=%s error=%m",
                    buf_cstring(&path));
            r = ERR_IO;
            goto done;
        }
        off += (size_t)n;
    }
done:
    if (fd >= 0 && close(fd) && !r)
        r = ERR_IO;
    buf_free(&path);
    return r;
}

/* Read one message: a literal, a literal8 (~{n}, RFC 3516), or
 * RFC 6855's UTF8 (~{n}).  Its own size bound is the APPENDLIMIT, not
 * the command's, so a large message is not refused for the bytes of
 * the command around it. */
static int append_read_message(struct imapd *s, int c, struct buf *msg)
{
    struct buf word = BUF_INITIALIZER;
    size_t saved_max = s->parser.max_command;
    size_t saved_used = s->parser.used;
    int is_utf8 = 0;

    if (c == 'U' || c == 'u') {
        imap_parse_ungetc(&s->parser, c);
        c = imap_parse_atom(&s->parser, &word);
        if (c == EOF)
            goto done;
        if (strcasecmp(buf_cstring(&word), "UTF8") || c != ' '
            || imap_parse_getc(&s->parser) != '(') {
            c = imap_parse_fail(&s->parser, "Expected UTF8 (literal8)");
            goto done;
        }
        is_utf8 = 1;
        c = imap_parse_getc(&s->parser);
        if (c != '~') {
            c = imap_parse_fail(&s->parser, "Expected literal8");
            goto done;
        }
    }
    if (c == '~')
        c = imap_parse_getc(&s->parser);
    if (c != '{' && c != '"') {
        c = c == EOF ? EOF : imap_parse_fail(&s->parser,
                                             "Expected message literal");
        goto done;
    }
    imap_parse_ungetc(&s->parser, c);
    s->parser.max_command = saved_used + imapd_max_message + 2;
    c = imap_parse_string_max(&s->parser, msg, imapd_max_message);
    s->parser.max_command = saved_max;
    s->parser.used = saved_used;
    if (c != EOF && is_utf8) {
        if (c != ')') {
            c = imap_parse_fail(&s->parser, "Expected ) after UTF8");
            goto done;
        }
        c = imap_parse_getc(&s->parser);
    }
done:
    buf_free(&word);
    return c;
}

/* Append the UIDs first..first+n-1 as a uid-set. */
static void format_uidset(const uint32_t *uids, int n, struct buf *out)
{
    int i = 0;

    while (i < n) {
        int j = i;

        while (j + 1 < n && uids[j + 1] == uids[j] + 1)
            j++;
        if (out->len)
            buf_putc(out, ',');
        if (j > i)
            buf_printf(out, "%u:%u", uids[i], uids[j]);
        else
            buf_printf(out, "%u", uids[i]);
        i = j + 1;
    }
}

/* Store the staged messages in one transaction: all or nothing (RFC
 * 3502).  Returns 0 and the UIDs, or an error. */
static int append_store(struct imapd *s, const char *intname,
                        struct append_msgs *am, uint32_t *uids)
{
    struct append_state *as = NULL;
    int i, r;

    r = append_setup(intname, s->auth, 0, &as);
    for (i = 0; !r && i < am->count; i++)
        r = append_add(as, am->paths.data[i], NULL, 0, am->dates[i],
                       &am->flags[i], &uids[i]);
    if (!r)
        r = append_commit(&as);
    append_abort(&as);
    return r;
}

/* APPEND name [(flags)] [date-time] message [[(flags)] [date-time]
 * message ...]: MULTIAPPEND (RFC 3502) when there is more than one.
 * A message may be CATENATE (...) (RFC 4469).  [UID] REPLACE n name
 * ... message (RFC 8508) appends one message and expunges n. */
void imapd_cmd_append(struct imapd *s, int c)
{
    struct buf ext = BUF_INITIALIZER;
    struct buf msg = BUF_INITIALIZER;
    struct buf caterr = BUF_INITIALIZER;   /* helper-ext6: CATENATE */
    struct buf replace = BUF_INITIALIZER;  /* helper-ext6: REPLACE n */
    int is_replace = !strcasecmp(buf_cstring(&s->cmd), "REPLACE");
    uint32_t replace_uid = 0;
    struct append_msgs am;
    struct mboxlist_entry *e = NULL;
    struct buf uidset = BUF_INITIALIZER;
    uint32_t *uids = NULL;
    char *intname = NULL;
    uint64_t total = 0;
    int stage_r = 0;
    int r;

    memset(&am, 0, sizeof(am));
    if (imapd_sp(s, c))
        goto done;
    if (is_replace) {
        c = imap_parse_atom(&s->parser, &replace);
        if (imapd_sp(s, c))
            goto done;
    }
    c = read_mailbox(s, &ext, &intname);
    if (intname && mboxlist_lookup(intname, &e))
        e = NULL;
    do {
        if (imapd_sp(s, c))
            goto done;
        if (is_replace && am.count) {
            imap_parse_fail(&s->parser, "REPLACE takes one message");
            goto done;
        }
        if (am.count == am.alloc) {
            if (am.count >= APPEND_MAX_MESSAGES) {
                imap_parse_fail(&s->parser, "Too many messages");
                goto done;
            }
            am.alloc = am.alloc ? am.alloc * 2 : 4;
            am.flags = xrealloc(am.flags, am.alloc * sizeof(*am.flags));
            am.dates = xrealloc(am.dates, am.alloc * sizeof(*am.dates));
        }
        memset(&am.flags[am.count], 0, sizeof(*am.flags));
        am.dates[am.count] = 0;
        am.count++;
        c = append_options(s, &am.flags[am.count - 1],
                           &am.dates[am.count - 1]);
        if (c == EOF)
            goto done;
        if (c == 'C' || c == 'c')
            c = imapd_catenate_read(s, c, &msg, &caterr);
        else
            c = append_read_message(s, c, &msg);
        if (c == EOF)
            goto done;
        total += msg.len;
        if (total > (uint64_t)imapd_max_message * APPEND_MAX_TOTAL_LIMITS) {
            imap_parse_fail(&s->parser, "[TOOBIG] Too much in one APPEND");
            goto done;
        }
        /* Staged at once so only one message is held in memory. */
        if (e && !stage_r && !caterr.len)
            stage_r = append_stage(&am, e->partition, &msg);
        buf_reset(&msg);
    } while (c == ' ');
    if (imapd_eol(s, c))
        goto done;

    if (is_replace
        && imapd_replace_check(s, buf_cstring(&replace), &replace_uid))
        goto done;
    if (caterr.len) {
        imapd_no(s, "%s", buf_cstring(&caterr));
        goto done;
    }
    if (!e) {
        imapd_no(s, "[TRYCREATE] Mailbox does not exist");
        goto done;
    }
    uids = xzmalloc((size_t)am.count * sizeof(*uids));
    r = stage_r ? stage_r : append_store(s, intname, &am, uids);
    if (r == ERR_MAILBOX_NONEXISTENT) {
        imapd_no(s, "[TRYCREATE] Mailbox does not exist");
        goto done;
    }
    if (r) {
        imapd_no_error(s, r);
        goto done;
    }
    /* REPLACE reports the new message after APPENDUID (RFC 8508). */
    if (!is_replace && s->sel && !strcmp(s->sel->intname, intname))
        imapd_sync(s, 0);
    format_uidset(uids, am.count, &uidset);
    imapd_quota_alert(s, intname);
    if (is_replace) {
        imapd_printf(s, "* OK [APPENDUID %u %s] Replacement appended\r\n",
                     e->uidvalidity, buf_cstring(&uidset));
        imapd_replace_finish(s, replace_uid);
        imapd_ok(s, "Replace completed");
        goto done;
    }
    imapd_ok(s, "[APPENDUID %u %s] Completed", e->uidvalidity,
             buf_cstring(&uidset));
done:
    buf_free(&caterr);
    buf_free(&replace);
    append_msgs_fini(&am);
    mboxlist_entry_free(&e);
    free(uids);
    free(intname);
    buf_free(&ext);
    buf_free(&msg);
    buf_free(&uidset);
}

static void buf_atom_or_string(struct buf *out, const char *str);

/* LISTRIGHTS name identifier (RFC 4314 3.7), for those with 'a'. */
void imapd_cmd_listrights(struct imapd *s, int c)
{
    struct buf ext = BUF_INITIALIZER;
    struct buf id = BUF_INITIALIZER;
    struct buf line = BUF_INITIALIZER;
    strarray_t rights = STRARRAY_INITIALIZER;
    struct mboxlist_entry *e = NULL;
    char *intname = NULL;
    uint32_t my = 0;
    int i, r;

    if (imapd_sp(s, c))
        goto done;
    c = read_mailbox(s, &ext, &intname);
    if (imapd_sp(s, c))
        goto done;
    c = imap_parse_astring(&s->parser, &id);
    if (imapd_eol(s, c))
        goto done;
    r = intname ? mboxlist_lookup(intname, &e) : ERR_MAILBOX_NONEXISTENT;
    if (!r) {
        acl_myrights(s->auth, e->acl, intname, &my);
        if (!(my & ACL_ADMIN))
            r = (my & ACL_LOOKUP) ? ERR_ACL_DENIED : ERR_MAILBOX_NONEXISTENT;
    }
    if (!r && !acl_identifier_is_valid(buf_cstring(&id)))
        r = ERR_INVALID;
    if (r) {
        imapd_no_error(s, r);
        goto done;
    }
    acl_listrights(buf_cstring(&id), intname, &rights);
    buf_appendcstr(&line, "* LISTRIGHTS ");
    imapd_buf_astring(&line, buf_cstring(&ext));
    buf_putc(&line, ' ');
    buf_atom_or_string(&line, buf_cstring(&id));
    for (i = 0; i < rights.count; i++) {
        buf_putc(&line, ' ');
        buf_atom_or_string(&line, rights.data[i]);
    }
    imapd_printf(s, "%s\r\n", buf_cstring(&line));
    imapd_ok(s, "Completed");
done:
    strarray_fini(&rights);
    mboxlist_entry_free(&e);
    free(intname);
    buf_free(&ext);
    buf_free(&id);
    buf_free(&line);
}

/* Append `str` as an atom when it is one (cyradm's ACL parsing
 * expects bare identifiers and rights, as Cyrus sends them), else as
 * an IMAP string. */
static void buf_atom_or_string(struct buf *out, const char *str)
{
    const char *p;

    for (p = str; *p; p++) {
        if (*p <= 0x20 || *p >= 0x7f || strchr("(){%*\"\\]", *p))
            break;
    }
    if (*str && !*p && strcasecmp(str, "NIL"))
        buf_appendcstr(out, str);
    else
        imapd_buf_astring(out, str);
}

/* GETACL name */
void imapd_cmd_getacl(struct imapd *s, int c)
{
    struct buf ext = BUF_INITIALIZER;
    struct buf line = BUF_INITIALIZER;
    struct acl acl = ACL_INITIALIZER;
    struct mboxlist_entry *e = NULL;
    char *intname = NULL;
    uint32_t rights = 0;
    int i, r;

    if (imapd_sp(s, c))
        goto done;
    c = read_mailbox(s, &ext, &intname);
    if (imapd_eol(s, c))
        goto done;
    r = intname ? mboxlist_lookup(intname, &e) : ERR_MAILBOX_NONEXISTENT;
    if (!r) {
        acl_myrights(s->auth, e->acl, intname, &rights);
        if (!(rights & ACL_ADMIN))
            r = (rights & ACL_LOOKUP) ? ERR_ACL_DENIED
                                      : ERR_MAILBOX_NONEXISTENT;
    }
    if (!r)
        r = acl_parse(e->acl, &acl);
    if (r) {
        imapd_no_error(s, r);
        goto done;
    }
    buf_appendcstr(&line, "* ACL ");
    imapd_buf_astring(&line, buf_cstring(&ext));
    for (i = 0; i < acl.count; i++) {
        struct buf letters = BUF_INITIALIZER;

        acl_rights_format(acl.entries[i].rights, &letters);
        buf_putc(&line, ' ');
        buf_atom_or_string(&line, acl.entries[i].identifier);
        buf_putc(&line, ' ');
        buf_atom_or_string(&line, buf_cstring(&letters));
        buf_free(&letters);
    }
    imapd_printf(s, "%s\r\n", buf_cstring(&line));
    imapd_ok(s, "Completed");
done:
    acl_fini(&acl);
    mboxlist_entry_free(&e);
    free(intname);
    buf_free(&ext);
    buf_free(&line);
}

/* SETACL name identifier rights, DELETEACL name identifier */
static void setacl(struct imapd *s, int c, int is_delete)
{
    struct buf ext = BUF_INITIALIZER;
    struct buf id = BUF_INITIALIZER;
    struct buf rights = BUF_INITIALIZER;
    char *intname = NULL;
    int r;

    if (imapd_sp(s, c))
        goto done;
    c = read_mailbox(s, &ext, &intname);
    if (imapd_sp(s, c))
        goto done;
    c = imap_parse_astring(&s->parser, &id);
    if (!is_delete) {
        if (imapd_sp(s, c))
            goto done;
        c = imap_parse_astring(&s->parser, &rights);
    }
    if (imapd_eol(s, c))
        goto done;
    r = intname ? mboxlist_setacl(intname, buf_cstring(&id),
                                  buf_cstring(&rights), s->auth)
                : ERR_MAILBOX_NONEXISTENT;
    if (r) {
        imapd_no_error(s, r);
        goto done;
    }
    imapd_ok(s, "Completed");
done:
    free(intname);
    buf_free(&ext);
    buf_free(&id);
    buf_free(&rights);
}

void imapd_cmd_setacl(struct imapd *s, int c)
{
    setacl(s, c, 0);
}

void imapd_cmd_deleteacl(struct imapd *s, int c)
{
    setacl(s, c, 1);
}

/* MYRIGHTS name */
void imapd_cmd_myrights(struct imapd *s, int c)
{
    struct buf ext = BUF_INITIALIZER;
    struct buf line = BUF_INITIALIZER;
    struct buf letters = BUF_INITIALIZER;
    struct mboxlist_entry *e = NULL;
    char *intname = NULL;
    uint32_t rights = 0;
    int r;

    if (imapd_sp(s, c))
        goto done;
    c = read_mailbox(s, &ext, &intname);
    if (imapd_eol(s, c))
        goto done;
    r = intname ? mboxlist_lookup(intname, &e) : ERR_MAILBOX_NONEXISTENT;
    if (!r) {
        acl_myrights(s->auth, e->acl, intname, &rights);
        if (!rights)
            r = ERR_MAILBOX_NONEXISTENT;
    }
    if (r) {
        imapd_no_error(s, r);
        goto done;
    }
    acl_rights_format(rights, &letters);
    buf_appendcstr(&line, "* MYRIGHTS ");
    imapd_buf_astring(&line, buf_cstring(&ext));
    buf_putc(&line, ' ');
    /* Bare letters, as Cyrus sends them: mutt reads the rights as an
     * atom and takes the quotes of a string for unknown rights. */
    buf_atom_or_string(&line, buf_cstring(&letters));
    imapd_printf(s, "%s\r\n", buf_cstring(&line));
    imapd_ok(s, "Completed");
done:
    mboxlist_entry_free(&e);
    free(intname);
    buf_free(&ext);
    buf_free(&line);
    buf_free(&letters);
}

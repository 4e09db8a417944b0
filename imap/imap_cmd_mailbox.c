/* imapd mailbox commands: NAMESPACE, CREATE, DELETE, RENAME, LIST,
 * LSUB, SUBSCRIBE, UNSUBSCRIBE, STATUS, APPEND and the ACL commands. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/buf.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/strarray.h"
#include "lib/times.h"
#include "lib/xmalloc.h"
#include "imap/acl.h"
#include "imap/append.h"
#include "imap/mailbox.h"
#include "imap/mboxlist.h"
#include "imap/mboxname.h"
#include "imap/subscription.h"

#include "imap/imapd.h"

/* Longest LIST pattern (reference and pattern together). */
#define LIST_PATTERN_MAX 1024

int imapd_intname(struct imapd *s, const char *extname, char **intname_r)
{
    return mboxname_from_external(extname, &s->ns, s->userid, intname_r);
}

char *imapd_extname(struct imapd *s, const char *intname)
{
    char *ext = NULL;

    if (mboxname_to_external(intname, &s->ns, s->userid, &ext))
        return NULL;
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

/* CREATE name [partition]: the partition argument is Cyrus's, for
 * admins (cyradm "cm name partition"). */
void imapd_cmd_create(struct imapd *s, int c)
{
    struct buf ext = BUF_INITIALIZER;
    struct buf part = BUF_INITIALIZER;
    char *intname = NULL;
    int r;

    if (imapd_sp(s, c))
        goto done;
    c = imap_parse_astring(&s->parser, &ext);
    if (c == ' ')
        c = imap_parse_astring(&s->parser, &part);
    if (imapd_eol(s, c))
        goto done;
    if (part.len && !s->is_admin) {
        imapd_no_error(s, ERR_ACL_DENIED);
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
                            buf_cstringnull(&part), s->auth, 0, NULL);
    if (r) {
        imapd_no_error(s, r);
        goto done;
    }
    imapd_ok(s, "Completed");
done:
    free(intname);
    buf_free(&ext);
    buf_free(&part);
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

/* RENAME old new */
void imapd_cmd_rename(struct imapd *s, int c)
{
    struct buf oldext = BUF_INITIALIZER;
    struct buf newext = BUF_INITIALIZER;
    char *oldname = NULL;
    char *newname = NULL;
    int r;

    if (imapd_sp(s, c))
        goto done;
    c = read_mailbox(s, &oldext, &oldname);
    if (imapd_sp(s, c))
        goto done;
    c = read_mailbox(s, &newext, &newname);
    if (imapd_eol(s, c))
        goto done;
    if (!oldname || !newname) {
        imapd_no_error(s, oldname ? ERR_MAILBOX_BADNAME
                                  : ERR_MAILBOX_NONEXISTENT);
        goto done;
    }
    r = mboxname_policycheck(newname);
    if (!r)
        r = mboxlist_rename(oldname, newname, NULL, s->auth);
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

struct list_rock {
    struct imapd *s;
    strarray_t names;           /* external names visible to the user */
};

static int list_collect(const struct mboxlist_entry *e, void *rock)
{
    struct list_rock *lr = rock;
    char *ext = imapd_extname(lr->s, e->name);

    if (ext)
        strarray_appendm(&lr->names, ext);
    return 0;
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

/* Answer LIST for the full external `pattern`. */
static void list_run(struct imapd *s, char *pattern)
{
    struct list_rock lr = { s, STRARRAY_INITIALIZER };
    strarray_t parents = STRARRAY_INITIALIZER;
    strarray_t shown = STRARRAY_INITIALIZER;
    char sep = s->ns.hier_sep;
    int i;

    /* XXX: every visible mailbox is scanned and matched in its external
     * form; turning the pattern into an internal prefix for
     * mboxlist_findall() would bound the scan on large servers. */
    canon_inbox(pattern, sep);
    mboxlist_findall("*", s->auth, list_collect, &lr);
    for (i = 0; i < lr.names.count; i++) {
        char *n = lr.names.data[i];
        char *p;

        canon_inbox(n, sep);
        for (p = strchr(n, sep); p; p = strchr(p + 1, sep))
            strarray_appendm(&parents, xstrndup(n, (size_t)(p - n)));
    }
    strarray_sort(&parents, cmp_str);
    strarray_sort(&lr.names, cmp_str);

    for (i = 0; i < lr.names.count; i++) {
        const char *n = lr.names.data[i];
        char *p;

        if (list_match(pattern, n, sep)) {
            list_reply(s, "LIST", sorted_has(&parents, n)
                       ? "\\HasChildren" : "\\HasNoChildren", n);
            continue;
        }
        /* A '%' pattern shows missing parents as \Noselect. */
        for (p = strchr(n, sep); p; p = strchr(p + 1, sep)) {
            char *prefix = xstrndup(n, (size_t)(p - n));

            if (!sorted_has(&lr.names, prefix)
                && strarray_find(&shown, prefix, 0) < 0
                && list_match(pattern, prefix, sep)) {
                list_reply(s, "LIST", "\\Noselect \\HasChildren", prefix);
                strarray_appendm(&shown, prefix);
            }
            else {
                free(prefix);
            }
        }
    }
    strarray_fini(&shown);
    strarray_fini(&parents);
    strarray_fini(&lr.names);
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

/* LIST reference pattern (no RFC 5258 extended options). */
void imapd_cmd_list(struct imapd *s, int c)
{
    char *pattern = NULL;

    if (read_list_args(s, c, &pattern))
        return;
    if (!*pattern)
        list_reply(s, "LIST", "\\Noselect", "");
    else
        list_run(s, pattern);
    imapd_ok(s, "Completed");
    free(pattern);
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
    ST_DELETED = 1 << 7
};

static const struct {
    const char *name;
    unsigned bit;
} status_items[] = {
    { "MESSAGES", ST_MESSAGES }, { "UIDNEXT", ST_UIDNEXT },
    { "UIDVALIDITY", ST_UIDVALIDITY }, { "UNSEEN", ST_UNSEEN },
    { "HIGHESTMODSEQ", ST_HIGHESTMODSEQ }, { "RECENT", ST_RECENT },
    { "SIZE", ST_SIZE }, { "DELETED", ST_DELETED }
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
        switch (bit) {
        case ST_MESSAGES: v = ih->exists; break;
        case ST_UIDNEXT: v = ih->uidnext; break;
        case ST_UIDVALIDITY: v = ih->uidvalidity; break;
        case ST_UNSEEN: v = count_unseen(mb); break;
        case ST_HIGHESTMODSEQ: v = ih->highestmodseq; break;
        case ST_SIZE: v = ih->quota_used; break;
        case ST_DELETED: v = ih->deleted; break;
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

/* APPEND name [(flags)] [date-time] literal */
void imapd_cmd_append(struct imapd *s, int c)
{
    struct buf ext = BUF_INITIALIZER;
    struct buf msg = BUF_INITIALIZER;
    strarray_t flags = STRARRAY_INITIALIZER;
    struct append_state *as = NULL;
    struct mboxlist_entry *e = NULL;
    char *intname = NULL;
    time_t date = 0;
    uint32_t uid = 0;
    int r;

    if (imapd_sp(s, c))
        goto done;
    c = read_mailbox(s, &ext, &intname);
    if (imapd_sp(s, c))
        goto done;
    c = append_options(s, &flags, &date);
    if (c != '{' && c != '"') {
        if (c != EOF)
            imap_parse_fail(&s->parser, "Expected message literal");
        goto done;
    }
    imap_parse_ungetc(&s->parser, c);
    c = imap_parse_string_max(&s->parser, &msg, imapd_max_message);
    if (imapd_eol(s, c))
        goto done;

    if (!intname) {
        imapd_no(s, "[TRYCREATE] Mailbox does not exist");
        goto done;
    }
    r = append_setup(intname, s->auth, 0, &as);
    if (!r)
        r = append_add(as, NULL, msg.s, msg.len, date, &flags, &uid);
    if (!r)
        r = append_commit(&as);
    append_abort(&as);
    if (!r)
        r = mboxlist_lookup(intname, &e);
    if (r == ERR_MAILBOX_NONEXISTENT) {
        imapd_no(s, "[TRYCREATE] Mailbox does not exist");
        goto done;
    }
    if (r) {
        imapd_no_error(s, r);
        goto done;
    }
    if (s->sel && !strcmp(s->sel->intname, intname))
        imapd_sync(s, 0);
    imapd_ok(s, "[APPENDUID %u %u] Completed", e->uidvalidity, uid);
done:
    mboxlist_entry_free(&e);
    strarray_fini(&flags);
    free(intname);
    buf_free(&ext);
    buf_free(&msg);
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
        imapd_buf_astring(&line, acl.entries[i].identifier);
        buf_putc(&line, ' ');
        imapd_buf_astring(&line, buf_cstring(&letters));
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
    imapd_buf_astring(&line, buf_cstring(&letters));
    imapd_printf(s, "%s\r\n", buf_cstring(&line));
    imapd_ok(s, "Completed");
done:
    mboxlist_entry_free(&e);
    free(intname);
    buf_free(&ext);
    buf_free(&line);
    buf_free(&letters);
}

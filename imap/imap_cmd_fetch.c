/* imapd message commands: FETCH, STORE, COPY and MOVE (with their UID
 * forms).  SEARCH lives in imap_cmd_search.c. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/buf.h"
#include "lib/error.h"
#include "lib/prot.h"
#include "lib/log.h"
#include "lib/strarray.h"
#include "lib/times.h"
#include "lib/util.h"
#include "lib/xmalloc.h"
#include "imap/append.h"
#include "imap/mboxlist.h"
#include "imap/message.h"
#include "imap/seqset.h"

#include "imap/imapd.h"

/* Most BODY[...] items in one FETCH. */
#define FETCH_MAX_SECTIONS 64
/* Most header names in one HEADER.FIELDS list. */
#define FETCH_MAX_FIELDS 128

/* Simple FETCH items. */
enum {
    F_FLAGS = 1 << 0,
    F_UID = 1 << 1,
    F_INTERNALDATE = 1 << 2,
    F_SIZE = 1 << 3,
    F_ENVELOPE = 1 << 4,
    F_BODYSTRUCTURE = 1 << 5,
    F_BODY = 1 << 6
};

/* One BODY[section]<partial> (or RFC822, RFC822.HEADER, RFC822.TEXT). */
struct fetch_section {
    char *label;                /* as answered, without the origin */
    char *spec;                 /* for mailbox_cache_section() */
    strarray_t fields;          /* HEADER.FIELDS names */
    int is_not;                 /* HEADER.FIELDS.NOT */
    int sets_seen;
    int has_partial;
    uint32_t start;
    uint32_t len;
};

struct fetch_req {
    unsigned items;
    struct fetch_section secs[FETCH_MAX_SECTIONS];
    size_t nsecs;
    int sets_seen;
};

static void fetch_req_fini(struct fetch_req *req)
{
    size_t i;

    for (i = 0; i < req->nsecs; i++) {
        free(req->secs[i].label);
        free(req->secs[i].spec);
        strarray_fini(&req->secs[i].fields);
    }
    req->nsecs = 0;
}

/* Parse "<start.len>" at `p`; returns 0 or -1. */
static int parse_partial(const char *p, struct fetch_section *sec)
{
    const char *end;

    if (!*p)
        return 0;
    if (*p != '<' || parse_uint32(p + 1, &end, &sec->start) || *end != '.'
        || parse_uint32(end + 1, &end, &sec->len) || strcmp(end, ">")
        || !sec->len)
        return -1;
    sec->has_partial = 1;
    return 0;
}

/* Split "SPEC (F1 F2)" into the spec and the field names. */
static int parse_fields(const char *inner, struct fetch_section *sec)
{
    const char *paren = strchr(inner, '(');
    strarray_t *names;
    size_t speclen;
    int i;

    if (!paren) {
        sec->spec = xstrdup(inner);
        return 0;
    }
    speclen = (size_t)(paren - inner);
    if (speclen < 2 || inner[speclen - 1] != ' '
        || inner[strlen(inner) - 1] != ')')
        return -1;
    sec->spec = xstrndup(inner, speclen - 1);
    ucase(sec->spec);
    if (strlen(sec->spec) >= 17
        && !strcmp(sec->spec + strlen(sec->spec) - 17, "HEADER.FIELDS.NOT"))
        sec->is_not = 1;
    else if (strlen(sec->spec) < 13
             || strcmp(sec->spec + strlen(sec->spec) - 13, "HEADER.FIELDS"))
        return -1;
    names = strarray_split(paren + 1, " )", 1);
    for (i = 0; i < names->count && i < FETCH_MAX_FIELDS; i++) {
        const char *n = names->data[i];

        if (strchr(n, '"') || strchr(n, ':'))
            continue;
        strarray_append(&sec->fields, n);
    }
    strarray_free(&names);
    return sec->fields.count ? 0 : -1;
}

/* Parse BODY[...]<...> or BODY.PEEK[...]<...> in `word`. */
static int parse_body_section(const char *word, struct fetch_req *req)
{
    struct fetch_section *sec;
    const char *open = strchr(word, '[');
    const char *close = strrchr(word, ']');
    char *inner;
    int r = 0;

    if (req->nsecs >= FETCH_MAX_SECTIONS || !open || !close || close < open)
        return -1;
    sec = &req->secs[req->nsecs];
    memset(sec, 0, sizeof(*sec));
    sec->sets_seen = strncasecmp(word, "BODY.PEEK[", 10) != 0;
    inner = xstrndup(open + 1, (size_t)(close - open - 1));
    if (parse_fields(inner, sec) || parse_partial(close + 1, sec))
        r = -1;
    if (!r) {
        struct buf label = BUF_INITIALIZER;

        buf_printf(&label, "BODY[%s", sec->spec);
        if (sec->fields.count) {
            char *joined = strarray_join(&sec->fields, " ");

            buf_printf(&label, " (%s)", joined);
            free(joined);
        }
        buf_putc(&label, ']');
        sec->label = buf_release(&label);
        req->nsecs++;
    }
    else {
        free(sec->spec);
        strarray_fini(&sec->fields);
    }
    free(inner);
    return r;
}

/* An RFC822* item as a section. */
static int add_rfc822(struct fetch_req *req, const char *label,
                      const char *spec, int sets_seen)
{
    struct fetch_section *sec;

    if (req->nsecs >= FETCH_MAX_SECTIONS)
        return -1;
    sec = &req->secs[req->nsecs++];
    memset(sec, 0, sizeof(*sec));
    sec->label = xstrdup(label);
    sec->spec = xstrdup(spec);
    sec->sets_seen = sets_seen;
    return 0;
}

/* One FETCH item word into `req`.  Returns 0 or -1. */
static int parse_fetch_item(const char *word, struct fetch_req *req)
{
    static const struct {
        const char *name;
        unsigned items;
    } simple[] = {
        { "FLAGS", F_FLAGS }, { "UID", F_UID },
        { "INTERNALDATE", F_INTERNALDATE }, { "RFC822.SIZE", F_SIZE },
        { "ENVELOPE", F_ENVELOPE }, { "BODYSTRUCTURE", F_BODYSTRUCTURE },
        { "BODY", F_BODY },
        { "ALL", F_FLAGS | F_INTERNALDATE | F_SIZE | F_ENVELOPE },
        { "FAST", F_FLAGS | F_INTERNALDATE | F_SIZE },
        { "FULL", F_FLAGS | F_INTERNALDATE | F_SIZE | F_ENVELOPE | F_BODY },
    };
    size_t i;

    for (i = 0; i < sizeof(simple) / sizeof(simple[0]); i++) {
        if (!strcasecmp(word, simple[i].name)) {
            req->items |= simple[i].items;
            return 0;
        }
    }
    if (!strcasecmp(word, "RFC822"))
        return add_rfc822(req, "RFC822", "", 1);
    if (!strcasecmp(word, "RFC822.HEADER"))
        return add_rfc822(req, "RFC822.HEADER", "HEADER", 0);
    if (!strcasecmp(word, "RFC822.TEXT"))
        return add_rfc822(req, "RFC822.TEXT", "TEXT", 1);
    if (!strncasecmp(word, "BODY[", 5) || !strncasecmp(word, "BODY.PEEK[", 10))
        return parse_body_section(word, req);
    return -1;
}

/* Read the FETCH attribute list (one item or a parenthesised list). */
static int read_fetch_items(struct imapd *s, struct fetch_req *req)
{
    struct buf word = BUF_INITIALIZER;
    int c = imap_parse_getc(&s->parser);
    int in_list = c == '(';

    if (!in_list)
        imap_parse_ungetc(&s->parser, c);
    do {
        c = imap_parse_word(&s->parser, &word);
        if (c == EOF)
            goto done;
        if (parse_fetch_item(buf_cstring(&word), req)) {
            c = imap_parse_fail(&s->parser, "Invalid FETCH item");
            goto done;
        }
    } while (in_list && c == ' ');
    if (in_list) {
        if (c != ')') {
            c = imap_parse_fail(&s->parser, "Expected ) in FETCH");
            goto done;
        }
        c = imap_parse_getc(&s->parser);
    }
done:
    buf_free(&word);
    return c;
}

/* Append `len` bytes as a literal. */
static void put_literal(struct buf *out, const char *data, size_t len)
{
    buf_printf(out, "{%zu}\r\n", len);
    buf_appendmap(out, data, len);
}

/* Append one section's data for the message in `msg`. */
static void fetch_section(struct imapd *s, const struct mailbox_record *rec,
                          const struct fetch_section *fs,
                          const struct buf *msg, struct buf *out)
{
    struct message_section sec;
    struct buf tmp = BUF_INITIALIZER;
    const char *data = NULL;
    size_t len = 0;

    buf_appendcstr(out, fs->label);
    if (fs->has_partial)
        buf_printf(out, "<%u>", fs->start);
    buf_putc(out, ' ');
    if (mailbox_cache_section(s->sel->mb, rec, fs->spec, &sec)
        || sec.offset > msg->len || sec.size > msg->len - sec.offset) {
        buf_appendcstr(out, "NIL");
        return;
    }
    if (sec.kind == MESSAGE_SECTION_FIELDS
        || sec.kind == MESSAGE_SECTION_FIELDS_NOT) {
        message_header_filter(msg->s + sec.offset, sec.size, &fs->fields,
                              fs->is_not, &tmp);
        data = tmp.s;
        len = tmp.len;
    }
    else {
        data = msg->s + sec.offset;
        len = sec.size;
    }
    if (fs->has_partial) {
        size_t start = fs->start < len ? fs->start : len;
        size_t n = len - start < fs->len ? len - start : fs->len;

        data = data ? data + start : NULL;
        len = n;
    }
    put_literal(out, data ? data : "", len);
    buf_free(&tmp);
}

/* Append a cache field or NIL. */
static void fetch_cached(struct imapd *s, const struct mailbox_record *rec,
                         enum mailbox_cache_field field, const char *name,
                         struct buf *out)
{
    struct buf v = BUF_INITIALIZER;

    buf_printf(out, "%s ", name);
    if (mailbox_cache_get(s->sel->mb, rec, field, &v) || !v.len)
        buf_appendcstr(out, "NIL");
    else
        buf_appendbuf(out, &v);
    buf_free(&v);
}

/* Build and send the FETCH response of one message (`rec` already
 * shows the session's own \Seen). */
static void fetch_one(struct imapd *s, struct mailbox_record *rec,
                      const struct fetch_req *req, int set_seen)
{
    struct buf out = BUF_INITIALIZER;
    struct buf msg = BUF_INITIALIZER;
    struct buf path = BUF_INITIALIZER;
    size_t start;
    size_t i;
    int show_flags = req->items & F_FLAGS;

    if (set_seen && !(rec->system_flags & MAILBOX_FLAG_SEEN)) {
        rec->system_flags |= MAILBOX_FLAG_SEEN;
        if (s->sel->use_seendb) {
            imapd_set_seen(s, rec->uid, 1);
            show_flags = 1;
        }
        else if (!mailbox_rewrite_record(s->sel->mb, rec)) {
            show_flags = 1;
        }
    }
    buf_printf(&out, "* %u FETCH (", imapd_msgno(s, rec->uid));
    start = out.len;
#define SEP() do { if (out.len > start) buf_putc(&out, ' '); } while (0)
    if (s->is_uid || (req->items & F_UID)) {
        SEP();
        buf_printf(&out, "UID %u", rec->uid);
    }
    if (show_flags) {
        SEP();
        buf_appendcstr(&out, "FLAGS ");
        imapd_format_flags(s->sel->mb, rec, &out);
    }
    if (req->items & F_INTERNALDATE) {
        char date[64];

        if (times_format_imap(date, sizeof(date), rec->internaldate, 0))
            xstrlcpy(date, "01-Jan-1970 00:00:00 +0000", sizeof(date));
        SEP();
        buf_printf(&out, "INTERNALDATE \"%s\"", date);
    }
    if (req->items & F_SIZE) {
        SEP();
        buf_printf(&out, "RFC822.SIZE %llu", (unsigned long long)rec->size);
    }
    if (req->items & F_ENVELOPE) {
        SEP();
        fetch_cached(s, rec, MAILBOX_CACHE_ENVELOPE, "ENVELOPE", &out);
    }
    if (req->items & F_BODYSTRUCTURE) {
        SEP();
        fetch_cached(s, rec, MAILBOX_CACHE_BODYSTRUCTURE, "BODYSTRUCTURE",
                     &out);
    }
    if (req->items & F_BODY) {
        SEP();
        fetch_cached(s, rec, MAILBOX_CACHE_BODY, "BODY", &out);
    }
    if (req->nsecs) {
        mailbox_message_path(s->sel->mb, rec->uid, &path);
        if (util_read_file(buf_cstring(&path), &msg, (size_t)rec->size + 1))
            xsyslog(LOG_ERR, "cannot read message", "mailbox=%s uid=%u",
                    log_escape(s->sel->intname, 0), rec->uid);
    }
    for (i = 0; i < req->nsecs; i++) {
        SEP();
        fetch_section(s, rec, &req->secs[i], &msg, &out);
    }
#undef SEP
    buf_appendcstr(&out, ")\r\n");
    prot_write(s->out, out.s, out.len);
    buf_free(&out);
    buf_free(&msg);
    buf_free(&path);
}

/* After our own flag change: if nothing else had changed since the
 * last report, move the mark so the change is not reported twice. */
static void note_own_change(struct imapd *s, uint64_t before)
{
    const struct mailbox_index_header *ih = mailbox_index(s->sel->mb);

    if (s->sel->highestmodseq == before)
        s->sel->highestmodseq = ih->highestmodseq;
}

/* Read "sequence-set SP" into `uids`; returns the byte after the set
 * or EOF. */
static int read_set(struct imapd *s, struct seqset *uids)
{
    struct buf word = BUF_INITIALIZER;
    int c = imap_parse_word(&s->parser, &word);

    if (c != EOF && imapd_parse_uidset(s, buf_cstring(&word), s->is_uid,
                                       uids))
        c = EOF;
    buf_free(&word);
    return c;
}

/* FETCH / UID FETCH set items */
void imapd_cmd_fetch(struct imapd *s, int c)
{
    struct seqset uids = SEQSET_INITIALIZER;
    struct fetch_req *req = xzmalloc(sizeof(*req));
    struct mailbox_record rec;
    uint64_t before;
    uint32_t uid;
    int set_seen = 0;
    size_t i;

    if (imapd_sp(s, c))
        goto done;
    c = read_set(s, &uids);
    if (imapd_sp(s, c))
        goto done;
    c = read_fetch_items(s, req);
    if (imapd_eol(s, c))
        goto done;

    for (i = 0; i < req->nsecs; i++)
        set_seen |= req->secs[i].sets_seen;
    set_seen = set_seen && !s->sel->is_readonly
               && (s->sel->rights & ACL_SETSEEN);
    if (mailbox_lock(s->sel->mb, set_seen && !s->sel->use_seendb)) {
        imapd_no(s, "[SERVERBUG] Cannot lock mailbox");
        goto done;
    }
    before = mailbox_index(s->sel->mb)->highestmodseq;
    for (uid = seqset_next(&uids, 0); uid; uid = seqset_next(&uids, uid)) {
        if (mailbox_find_record(s->sel->mb, uid, &rec)
            || (rec.system_flags & MAILBOX_FLAG_EXPUNGED))
            continue;
        imapd_apply_seen(s, &rec);
        fetch_one(s, &rec, req, set_seen);
    }
    mailbox_unlock(s->sel->mb);
    note_own_change(s, before);
    imapd_seen_save(s);
    imapd_sync(s, 0);
    imapd_ok(s, "Completed");
done:
    fetch_req_fini(req);
    free(req);
    seqset_fini(&uids);
}

/* Turn flag names into system bits and user-flag slots.  With
 * `allocate`, unknown keywords get a slot.  Returns 0 or an error. */
static int flags_to_bits(struct mailbox *mb, const strarray_t *flags,
                         int allocate, uint32_t *sys_r, uint32_t *user_r)
{
    static const struct {
        const char *name;
        uint32_t bit;
    } sys[] = {
        { "\\Answered", MAILBOX_FLAG_ANSWERED },
        { "\\Flagged", MAILBOX_FLAG_FLAGGED },
        { "\\Deleted", MAILBOX_FLAG_DELETED },
        { "\\Seen", MAILBOX_FLAG_SEEN },
        { "\\Draft", MAILBOX_FLAG_DRAFT }
    };
    unsigned idx;
    size_t j;
    int i, r;

    *sys_r = 0;
    memset(user_r, 0, MAILBOX_USERFLAG_WORDS * sizeof(uint32_t));
    for (i = 0; i < flags->count; i++) {
        const char *f = flags->data[i];

        if (f[0] == '\\') {
            for (j = 0; j < sizeof(sys) / sizeof(sys[0]); j++) {
                if (!strcasecmp(f, sys[j].name))
                    *sys_r |= sys[j].bit;
            }
            continue;
        }
        r = allocate ? mailbox_set_userflag(mb, f, &idx)
                     : mailbox_find_userflag(mb, f, &idx);
        if (r == ERR_NOTFOUND)
            continue;
        if (r)
            return r;
        user_r[idx / 32] |= 1u << (idx % 32);
    }
    return 0;
}

/* The rights a change of `sys` (and keywords) needs. */
static int store_allowed(const struct imapd *s, uint32_t sys,
                         int has_keywords)
{
    uint32_t need = 0;

    if (sys & MAILBOX_FLAG_SEEN)
        need |= ACL_SETSEEN;
    if (sys & MAILBOX_FLAG_DELETED)
        need |= ACL_DELETEMSG;
    if (has_keywords || (sys & ~(MAILBOX_FLAG_SEEN | MAILBOX_FLAG_DELETED)))
        need |= ACL_WRITE;
    return (s->sel->rights & need) == need;
}

enum store_op { STORE_REPLACE, STORE_ADD, STORE_REMOVE };

/* Apply `op` to the flags of `rec` in place. */
static void apply_store(struct mailbox_record *rec, enum store_op op,
                        uint32_t sys, const uint32_t *user)
{
    int w;

    for (w = 0; w < MAILBOX_USERFLAG_WORDS; w++) {
        if (op == STORE_REPLACE)
            rec->user_flags[w] = user[w];
        else if (op == STORE_ADD)
            rec->user_flags[w] |= user[w];
        else
            rec->user_flags[w] &= ~user[w];
    }
    if (op == STORE_REPLACE)
        rec->system_flags = (rec->system_flags & ~MAILBOX_FLAGS_IMAP) | sys;
    else if (op == STORE_ADD)
        rec->system_flags |= sys;
    else
        rec->system_flags &= ~sys;
}

static int flags_differ(const struct mailbox_record *a,
                        const struct mailbox_record *b)
{
    return a->system_flags != b->system_flags
           || memcmp(a->user_flags, b->user_flags, sizeof(a->user_flags));
}

/* Apply the change to one record as read from the index; `rec` ends
 * as the session sees it.  With per-user seen state, \Seen goes to the
 * seen set and the index keeps its own \Seen. */
static int store_one(struct imapd *s, struct mailbox_record *rec,
                     enum store_op op, uint32_t sys, const uint32_t *user)
{
    struct mailbox_record disk = *rec;
    struct mailbox_record view;
    int r = 0;

    imapd_apply_seen(s, rec);
    view = *rec;
    apply_store(rec, op, sys, user);
    if (!s->sel->use_seendb)
        return flags_differ(&view, rec) ? mailbox_rewrite_record(s->sel->mb,
                                                                 rec) : 0;

    imapd_set_seen(s, rec->uid, rec->system_flags & MAILBOX_FLAG_SEEN);
    view = disk;
    disk.system_flags = (rec->system_flags & ~MAILBOX_FLAG_SEEN)
                        | (view.system_flags & MAILBOX_FLAG_SEEN);
    memcpy(disk.user_flags, rec->user_flags, sizeof(disk.user_flags));
    if (flags_differ(&view, &disk))
        r = mailbox_rewrite_record(s->sel->mb, &disk);
    return r;
}

/* Read the STORE flags: a parenthesised list or bare flags. */
static int read_store_flags(struct imapd *s, strarray_t *flags)
{
    struct buf word = BUF_INITIALIZER;
    int c = imap_parse_getc(&s->parser);

    if (c == '(') {
        c = imapd_parse_flaglist(s, flags);
    }
    else {
        imap_parse_ungetc(&s->parser, c);
        do {
            c = imap_parse_word(&s->parser, &word);
            if (c != EOF)
                strarray_append(flags, buf_cstring(&word));
        } while (c == ' ');
    }
    buf_free(&word);
    return c;
}

/* Parse "[+-]FLAGS[.SILENT]". */
static int parse_store_item(const char *item, enum store_op *op_r,
                            int *silent_r)
{
    *op_r = STORE_REPLACE;
    if (*item == '+' || *item == '-') {
        *op_r = *item == '+' ? STORE_ADD : STORE_REMOVE;
        item++;
    }
    if (strncasecmp(item, "FLAGS", 5))
        return -1;
    *silent_r = !strcasecmp(item + 5, ".SILENT");
    return (*silent_r || !item[5]) ? 0 : -1;
}

/* STORE / UID STORE set item flags */
void imapd_cmd_store(struct imapd *s, int c)
{
    struct seqset uids = SEQSET_INITIALIZER;
    struct buf item = BUF_INITIALIZER;
    strarray_t flags = STRARRAY_INITIALIZER;
    struct mailbox_record rec;
    uint32_t user[MAILBOX_USERFLAG_WORDS];
    uint32_t sys, uid;
    uint64_t before;
    enum store_op op = STORE_REPLACE;
    int silent = 0, i, r;
    int has_keywords = 0;

    if (imapd_sp(s, c))
        goto done;
    c = read_set(s, &uids);
    if (imapd_sp(s, c))
        goto done;
    c = imap_parse_atom(&s->parser, &item);
    if (c != EOF && parse_store_item(buf_cstring(&item), &op, &silent)) {
        imap_parse_fail(&s->parser, "Invalid STORE item");
        goto done;
    }
    if (imapd_sp(s, c))
        goto done;
    c = read_store_flags(s, &flags);
    if (imapd_eol(s, c))
        goto done;
    for (i = 0; i < flags.count; i++) {
        if (!imapd_flag_is_valid(flags.data[i])) {
            imap_parse_fail(&s->parser, "Invalid flag");
            goto done;
        }
        if (flags.data[i][0] != '\\')
            has_keywords = 1;
    }
    if (s->sel->is_readonly) {
        imapd_no(s, "[READ-ONLY] Mailbox is read-only");
        goto done;
    }

    r = mailbox_lock(s->sel->mb, 1);
    if (!r)
        r = flags_to_bits(s->sel->mb, &flags, op != STORE_REMOVE, &sys,
                          user);
    if (!r && !store_allowed(s, op == STORE_REPLACE ? MAILBOX_FLAGS_IMAP
                                                    : sys, has_keywords))
        r = ERR_ACL_DENIED;
    before = mailbox_index(s->sel->mb)->highestmodseq;
    for (uid = r ? 0 : seqset_next(&uids, 0); uid;
         uid = seqset_next(&uids, uid)) {
        struct buf out = BUF_INITIALIZER;

        if (mailbox_find_record(s->sel->mb, uid, &rec)
            || (rec.system_flags & MAILBOX_FLAG_EXPUNGED))
            continue;
        r = store_one(s, &rec, op, sys, user);
        if (r)
            break;
        if (silent)
            continue;
        buf_printf(&out, "* %u FETCH (", imapd_msgno(s, uid));
        if (s->is_uid)
            buf_printf(&out, "UID %u ", uid);
        buf_appendcstr(&out, "FLAGS ");
        imapd_format_flags(s->sel->mb, &rec, &out);
        buf_appendcstr(&out, ")\r\n");
        prot_write(s->out, out.s, out.len);
        buf_free(&out);
    }
    mailbox_unlock(s->sel->mb);
    note_own_change(s, before);
    imapd_seen_save(s);
    if (r) {
        imapd_no_error(s, r);
        goto done;
    }
    imapd_sync(s, 0);
    imapd_ok(s, "Completed");
done:
    strarray_fini(&flags);
    buf_free(&item);
    seqset_fini(&uids);
}

/* What COPY takes from one source message. */
struct copy_msg {
    uint32_t uid;
    char *path;
    time_t internaldate;
    strarray_t flags;
};

/* Collect the messages of `uids` (a shared lock is taken here). */
static int copy_collect(struct imapd *s, const struct seqset *uids,
                        struct copy_msg **msgs_r, size_t *n_r)
{
    struct mailbox *mb = s->sel->mb;
    struct mailbox_record rec;
    struct copy_msg *msgs = NULL;
    size_t n = 0;
    uint32_t uid;
    unsigned i;
    int r = mailbox_lock(mb, 0);

    for (uid = r ? 0 : seqset_next(uids, 0); uid;
         uid = seqset_next(uids, uid)) {
        struct buf path = BUF_INITIALIZER;
        struct copy_msg *m;

        if (mailbox_find_record(mb, uid, &rec)
            || (rec.system_flags & MAILBOX_FLAG_EXPUNGED))
            continue;
        imapd_apply_seen(s, &rec);
        msgs = xreallocarray(msgs, n + 1, sizeof(*msgs));
        m = &msgs[n++];
        memset(m, 0, sizeof(*m));
        m->uid = uid;
        m->internaldate = rec.internaldate;
        mailbox_message_path(mb, uid, &path);
        m->path = buf_release(&path);
        if (rec.system_flags & MAILBOX_FLAG_ANSWERED)
            strarray_append(&m->flags, "\\Answered");
        if (rec.system_flags & MAILBOX_FLAG_FLAGGED)
            strarray_append(&m->flags, "\\Flagged");
        if (rec.system_flags & MAILBOX_FLAG_DELETED)
            strarray_append(&m->flags, "\\Deleted");
        if (rec.system_flags & MAILBOX_FLAG_SEEN)
            strarray_append(&m->flags, "\\Seen");
        if (rec.system_flags & MAILBOX_FLAG_DRAFT)
            strarray_append(&m->flags, "\\Draft");
        for (i = 0; i < MAILBOX_MAX_USERFLAGS; i++) {
            const char *name = mailbox_userflag_name(mb, i);

            if (name && (rec.user_flags[i / 32] & (1u << (i % 32))))
                strarray_append(&m->flags, name);
        }
    }
    mailbox_unlock(mb);
    *msgs_r = msgs;
    *n_r = n;
    return r;
}

static void copy_msgs_free(struct copy_msg *msgs, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        free(msgs[i].path);
        strarray_fini(&msgs[i].flags);
    }
    free(msgs);
}

/* Append the collected messages to `intname`; fills the COPYUID sets. */
static int copy_append(struct imapd *s, const char *intname,
                       const struct copy_msg *msgs, size_t n,
                       struct seqset *src, struct seqset *dst)
{
    struct append_state *as = NULL;
    uint32_t uid;
    size_t i;
    int r;

    r = append_setup(intname, s->auth, 0, &as);
    for (i = 0; !r && i < n; i++) {
        r = append_add(as, msgs[i].path, NULL, 0, msgs[i].internaldate,
                       &msgs[i].flags, &uid);
        if (!r) {
            seqset_add(src, msgs[i].uid, msgs[i].uid);
            seqset_add(dst, uid, uid);
        }
    }
    if (!r)
        r = append_commit(&as);
    append_abort(&as);
    return r;
}

/* MOVE: expunge exactly the moved messages. */
static int decide_moved(struct mailbox *mb, const struct mailbox_record *rec,
                        void *rock)
{
    (void)mb;
    return seqset_contains(rock, rec->uid);
}

/* COPY / MOVE (and UID forms) set mailbox */
void imapd_cmd_copy(struct imapd *s, int c)
{
    struct seqset uids = SEQSET_INITIALIZER;
    struct seqset src = SEQSET_INITIALIZER;
    struct seqset dst = SEQSET_INITIALIZER;
    struct buf ext = BUF_INITIALIZER;
    struct buf srcs = BUF_INITIALIZER;
    struct buf dsts = BUF_INITIALIZER;
    struct mboxlist_entry *e = NULL;
    struct copy_msg *msgs = NULL;
    size_t n = 0;
    char *intname = NULL;
    int is_move = !strcasecmp(buf_cstring(&s->cmd), "MOVE");
    int r;

    if (imapd_sp(s, c))
        goto done;
    c = read_set(s, &uids);
    if (imapd_sp(s, c))
        goto done;
    c = imap_parse_astring(&s->parser, &ext);
    if (imapd_eol(s, c))
        goto done;

    if (imapd_intname(s, buf_cstring(&ext), &intname)
        || mboxlist_lookup(intname, &e)) {
        imapd_no(s, "[TRYCREATE] Mailbox does not exist");
        goto done;
    }
    if (is_move && (s->sel->is_readonly
                    || (s->sel->rights & (ACL_DELETEMSG | ACL_EXPUNGE))
                       != (ACL_DELETEMSG | ACL_EXPUNGE))) {
        imapd_no_error(s, ERR_ACL_DENIED);
        goto done;
    }
    r = copy_collect(s, &uids, &msgs, &n);
    if (!r && n)
        r = copy_append(s, intname, msgs, n, &src, &dst);
    if (r) {
        imapd_no_error(s, r);
        goto done;
    }
    seqset_format(&src, &srcs);
    seqset_format(&dst, &dsts);
    if (!n) {
        imapd_ok(s, "Completed");
        goto done;
    }
    if (is_move) {
        imapd_printf(s, "* OK [COPYUID %u %s %s] Moved\r\n", e->uidvalidity,
                     buf_cstring(&srcs), buf_cstring(&dsts));
        if (!mailbox_lock(s->sel->mb, 1))
            mailbox_expunge(s->sel->mb, decide_moved, &src,
                            MAILBOX_EXPUNGE_DELAYED, NULL);
        mailbox_unlock(s->sel->mb);
        imapd_sync(s, 1);
        imapd_ok(s, "Completed");
    }
    else {
        if (!strcmp(intname, s->sel->intname))
            imapd_sync(s, 0);
        imapd_ok(s, "[COPYUID %u %s %s] Completed", e->uidvalidity,
                 buf_cstring(&srcs), buf_cstring(&dsts));
    }
done:
    copy_msgs_free(msgs, n);
    mboxlist_entry_free(&e);
    free(intname);
    buf_free(&ext);
    buf_free(&srcs);
    buf_free(&dsts);
    seqset_fini(&uids);
    seqset_fini(&src);
    seqset_fini(&dst);
}

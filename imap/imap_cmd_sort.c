/* imapd SORT and THREAD (RFC 5256), SORT=DISPLAY (RFC 5957) and ESORT
 * (RFC 5267): sort keys and thread data read from the mailbox cache of
 * the messages a search program selects. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <ctype.h>

#include "lib/buf.h"
#include "lib/charset.h"
#include "lib/prot.h"
#include "lib/xmalloc.h"
#include "imap/message.h"
#include "imap/threading.h"

#include "imap/imapd.h"

/*
 * Collation: the strings compared (addresses, display names, base
 * subjects) are decoded to UTF-8 and put in search form
 * (charset_search_normalise: NFKC with case folding), then compared
 * byte by byte, which is I18NLEVEL=1 ordering in practice.  Ties are
 * broken by message sequence number, as RFC 5256 requires.  Absent
 * fields sort as the empty string; the date is the sent date, which
 * the index already falls back to INTERNALDATE for when Date is
 * missing or unparseable.
 */

/* Most sort criteria in one command (each may be REVERSE). */
#define SORT_MAX_CRITERIA 16

enum sort_key {
    SORT_ARRIVAL, SORT_CC, SORT_DATE, SORT_FROM, SORT_SIZE, SORT_SUBJECT,
    SORT_TO, SORT_DISPLAYFROM, SORT_DISPLAYTO, SORT_NKEYS
};

static const char *const sort_names[SORT_NKEYS] = {
    "ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO",
    "DISPLAYFROM", "DISPLAYTO"
};

struct sort_crit {
    enum sort_key key;
    int is_reverse;
};

/* One matching message with the keys the criteria need. */
struct sort_item {
    uint32_t msgno;
    uint32_t uid;
    time_t arrival;
    time_t date;
    uint64_t size;
    char *text[SORT_NKEYS];     /* string keys, search form */
};

struct sort_ctx {
    struct sort_crit crit[SORT_MAX_CRITERIA];
    size_t ncrit;
    unsigned need;              /* bit per enum sort_key */
    struct sort_item *items;
    size_t count;
    size_t alloc;
};

/* Put `len` bytes of UTF-8 in search form into `out` (reset first);
 * lower-cased ASCII if ICU fails. */
static void collation_key(const char *src, size_t len, struct buf *out)
{
    size_t i;

    buf_reset(out);
    if (!charset_search_normalise(src, len, out))
        return;
    buf_reset(out);
    for (i = 0; i < len; i++)
        buf_putc(out, (char)tolower((unsigned char)src[i]));
}

/* The decoded value of the first instance of cached header `field`
 * into `out` (reset first; empty when absent). */
static void cached_value(struct mailbox *mb, const struct mailbox_record *rec,
                         int field, struct buf *out)
{
    struct buf raw = BUF_INITIALIZER;
    const char *colon, *end, *p;

    buf_reset(out);
    if (mailbox_cache_get(mb, rec, field, &raw) || !raw.len)
        goto done;
    colon = memchr(raw.s, ':', raw.len);
    if (!colon)
        goto done;
    end = raw.s + raw.len;
    for (p = colon + 1; p < end; p++) {
        if (*p == '\n' && (p + 1 >= end || (p[1] != ' ' && p[1] != '\t')))
            break;
    }
    charset_decode_mimeheader(colon + 1, (size_t)(p - colon - 1), out);
    buf_trim(out);
done:
    buf_cstring(out);
    buf_free(&raw);
}

/* The first real address of cached header `field`, parsed from the
 * cached field lines: its mailbox (local part), or with `display` its
 * decoded display name, else its addr-spec (RFC 5957). */
static void address_value(struct mailbox *mb,
                          const struct mailbox_record *rec, int field,
                          int display, struct buf *out)
{
    struct buf raw = BUF_INITIALIZER;
    struct message *msg = NULL;
    const struct message_address *a = NULL;
    const struct message_envelope *env;
    const char *name;
    size_t len;

    buf_reset(out);
    if (mailbox_cache_get(mb, rec, field, &raw) || !raw.len)
        goto done;
    buf_appendcstr(&raw, "\r\n");
    if (message_parse(raw.s, raw.len, &msg) || !msg->root.envelope)
        goto done;
    env = msg->root.envelope;
    a = field == MAILBOX_CACHE_HDR_FROM ? env->from
        : field == MAILBOX_CACHE_HDR_TO ? env->to : env->cc;
    while (a && !(a->mailbox && a->domain))
        a = a->next;
    if (!a)
        goto done;
    if (display && a->name && *a->name) {
        name = a->name;
        len = strlen(name);
        if (len >= 2 && name[0] == '"' && name[len - 1] == '"') {
            name++;
            len -= 2;
        }
        charset_decode_mimeheader(name, len, out);
        buf_trim(out);
        if (out->len)
            goto done;
    }
    if (display)
        buf_printf(out, "%s@%s", a->mailbox, a->domain);
    else
        buf_appendcstr(out, a->mailbox);
done:
    buf_cstring(out);
    message_free(&msg);
    buf_free(&raw);
}

/* The string key `key` of `rec`, in search form (malloc'd). */
static char *string_key(struct mailbox *mb, const struct mailbox_record *rec,
                        enum sort_key key)
{
    struct buf val = BUF_INITIALIZER;
    struct buf out = BUF_INITIALIZER;

    switch (key) {
    case SORT_SUBJECT:
        cached_value(mb, rec, MAILBOX_CACHE_HDR_SUBJECT, &val);
        threading_subject_key(buf_cstring(&val), &out, NULL);
        break;
    case SORT_FROM:
    case SORT_DISPLAYFROM:
        address_value(mb, rec, MAILBOX_CACHE_HDR_FROM,
                      key == SORT_DISPLAYFROM, &val);
        collation_key(val.s ? val.s : "", val.len, &out);
        break;
    case SORT_TO:
    case SORT_DISPLAYTO:
        address_value(mb, rec, MAILBOX_CACHE_HDR_TO, key == SORT_DISPLAYTO,
                      &val);
        collation_key(val.s ? val.s : "", val.len, &out);
        break;
    case SORT_CC:
        address_value(mb, rec, MAILBOX_CACHE_HDR_CC, 0, &val);
        collation_key(val.s ? val.s : "", val.len, &out);
        break;
    default:
        break;
    }
    buf_free(&val);
    buf_cstring(&out);
    return buf_release(&out);
}

/* imapd_search_run callback: one item with the keys needed. */
static void sort_hit(struct imapd *s, uint32_t msgno,
                     const struct mailbox_record *rec, void *rock)
{
    struct sort_ctx *ctx = rock;
    struct sort_item *it;
    int k;

    if (ctx->count == ctx->alloc) {
        ctx->alloc = ctx->alloc ? 2 * ctx->alloc : 64;
        ctx->items = xreallocarray(ctx->items, ctx->alloc,
                                   sizeof(*ctx->items));
    }
    it = &ctx->items[ctx->count++];
    memset(it, 0, sizeof(*it));
    it->msgno = msgno;
    it->uid = rec->uid;
    it->arrival = rec->internaldate;
    it->date = rec->sentdate;
    it->size = rec->size;
    for (k = 0; k < SORT_NKEYS; k++) {
        if (ctx->need & (1u << k))
            it->text[k] = string_key(s->sel->mb, rec, (enum sort_key)k);
    }
}

#define CMP(a, b) ((a) < (b) ? -1 : (a) > (b))

static int item_cmp(const void *va, const void *vb, void *rock)
{
    const struct sort_item *a = va, *b = vb;
    const struct sort_ctx *ctx = rock;
    size_t i;
    int c;

    for (i = 0; i < ctx->ncrit; i++) {
        enum sort_key key = ctx->crit[i].key;

        switch (key) {
        case SORT_ARRIVAL: c = CMP(a->arrival, b->arrival); break;
        case SORT_DATE: c = CMP(a->date, b->date); break;
        case SORT_SIZE: c = CMP(a->size, b->size); break;
        default: c = strcmp(a->text[key], b->text[key]); break;
        }
        if (c)
            return ctx->crit[i].is_reverse ? -c : c;
    }
    return CMP(a->msgno, b->msgno);
}

static void sort_ctx_fini(struct sort_ctx *ctx)
{
    size_t i;
    int k;

    for (i = 0; i < ctx->count; i++) {
        for (k = 0; k < SORT_NKEYS; k++)
            free(ctx->items[i].text[k]);
    }
    free(ctx->items);
}

/* Read "(" sort-criterion *(SP sort-criterion) ")" after SP. */
static int parse_criteria(struct imapd *s, int c, struct sort_ctx *ctx)
{
    struct imap_parser *p = &s->parser;
    struct buf word = BUF_INITIALIZER;
    int is_reverse = 0;
    int k;

    if (imapd_sp(s, c))
        return EOF;
    if (imap_parse_getc(p) != '(')
        return imap_parse_fail(p, "Expected sort criteria");
    do {
        c = imap_parse_atom(p, &word);
        if (c == EOF)
            break;
        if (!strcasecmp(buf_cstring(&word), "REVERSE") && !is_reverse) {
            is_reverse = 1;
            if (c != ' ') {
                c = imap_parse_fail(p, "REVERSE needs a criterion");
                break;
            }
            continue;
        }
        for (k = 0; k < SORT_NKEYS; k++) {
            if (!strcasecmp(buf_cstring(&word), sort_names[k]))
                break;
        }
        if (k == SORT_NKEYS) {
            c = imap_parse_fail(p, "Unknown sort criterion");
            break;
        }
        if (ctx->ncrit == SORT_MAX_CRITERIA) {
            c = imap_parse_fail(p, "Too many sort criteria");
            break;
        }
        ctx->crit[ctx->ncrit].key = (enum sort_key)k;
        ctx->crit[ctx->ncrit++].is_reverse = is_reverse;
        ctx->need |= 1u << k;
        is_reverse = 0;
    } while (c == ' ');
    if (c != EOF && (c != ')' || is_reverse))
        c = imap_parse_fail(p, "Expected )");
    if (c != EOF)
        c = imap_parse_getc(p);
    buf_free(&word);
    return c;
}

/* Read SP and the mandatory charset of SORT and THREAD. */
static int parse_charset(struct imapd *s, int c, struct buf *charset)
{
    if (imapd_sp(s, c))
        return EOF;
    c = imap_parse_astring(&s->parser, charset);
    if (c != EOF && !charset->len)
        c = imap_parse_fail(&s->parser, "Missing charset");
    return c;
}

#define RET_MIN 0x01u
#define RET_MAX 0x02u
#define RET_ALL 0x04u
#define RET_COUNT 0x08u
#define RET_SAVE 0x10u

/* RETURN (...) of ESORT (RFC 5267): MIN MAX ALL COUNT SAVE, after the
 * word RETURN.  An empty list means ALL. */
static int parse_return(struct imapd *s, int c, unsigned *opts_r)
{
    static const struct { const char *name; unsigned bit; } names[] = {
        { "MIN", RET_MIN }, { "MAX", RET_MAX }, { "ALL", RET_ALL },
        { "COUNT", RET_COUNT }, { "SAVE", RET_SAVE },
    };
    struct imap_parser *p = &s->parser;
    struct buf word = BUF_INITIALIZER;
    size_t i;

    *opts_r = 0;
    if (imapd_sp(s, c))
        return EOF;
    if (imap_parse_getc(p) != '(')
        return imap_parse_fail(p, "Expected (");
    c = imap_parse_getc(p);
    if (c != ')') {
        imap_parse_ungetc(p, c);
        do {
            c = imap_parse_atom(p, &word);
            if (c == EOF)
                break;
            for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                if (!strcasecmp(buf_cstring(&word), names[i].name))
                    break;
            }
            if (i == sizeof(names) / sizeof(names[0])) {
                c = imap_parse_fail(p, "Unknown RETURN option");
                break;
            }
            *opts_r |= names[i].bit;
        } while (c == ' ');
        if (c != EOF && c != ')')
            c = imap_parse_fail(p, "Expected )");
    }
    if (c != EOF)
        c = imap_parse_getc(p);
    if (!*opts_r)
        *opts_r = RET_ALL;
    buf_free(&word);
    return c;
}

/* Append the numbers of the sorted items as a sequence set in sort
 * order, ascending runs joined ("5,1:3"). */
static void format_sorted_set(const struct sort_ctx *ctx, int is_uid,
                              struct buf *out)
{
    size_t i = 0, j;

#define NUM(x) (is_uid ? ctx->items[x].uid : ctx->items[x].msgno)
    while (i < ctx->count) {
        for (j = i; j + 1 < ctx->count && NUM(j + 1) == NUM(j) + 1; j++)
            ;
        if (i)
            buf_putc(out, ',');
        if (j > i)
            buf_printf(out, "%u:%u", NUM(i), NUM(j));
        else
            buf_printf(out, "%u", NUM(i));
        i = j + 1;
    }
#undef NUM
}

static void send_sort(struct imapd *s, const struct sort_ctx *ctx,
                      unsigned opts, int is_esort)
{
    struct buf out = BUF_INITIALIZER;
    size_t i;

    if (!is_esort) {
        buf_appendcstr(&out, "* SORT");
        for (i = 0; i < ctx->count; i++)
            buf_printf(&out, " %u", s->is_uid ? ctx->items[i].uid
                                              : ctx->items[i].msgno);
    }
    else {
        buf_appendcstr(&out, "* ESEARCH (TAG ");
        imapd_buf_astring(&out, buf_cstring(&s->tag));
        buf_putc(&out, ')');
        if (s->is_uid)
            buf_appendcstr(&out, " UID");
        if ((opts & RET_MIN) && ctx->count)
            buf_printf(&out, " MIN %u", s->is_uid ? ctx->items[0].uid
                                                  : ctx->items[0].msgno);
        if ((opts & RET_MAX) && ctx->count) {
            const struct sort_item *last = &ctx->items[ctx->count - 1];

            buf_printf(&out, " MAX %u", s->is_uid ? last->uid : last->msgno);
        }
        if (opts & RET_COUNT)
            buf_printf(&out, " COUNT %zu", ctx->count);
        if ((opts & RET_ALL) && ctx->count) {
            buf_appendcstr(&out, " ALL ");
            format_sorted_set(ctx, s->is_uid, &out);
        }
    }
    buf_appendcstr(&out, "\r\n");
    prot_write(s->out, out.s, out.len);
    buf_free(&out);
}

/* SORT RETURN (SAVE): as SEARCH saves (RFC 5182, RFC 5267). */
static void sort_save(struct imapd *s, const struct sort_ctx *ctx,
                      unsigned opts)
{
    struct seqset *saved = &s->sel->searchres;
    size_t i;

    seqset_clear(saved);
    if (!ctx->count)
        return;
    if ((opts & (RET_MIN | RET_MAX)) && !(opts & (RET_ALL | RET_COUNT))) {
        if (opts & RET_MIN)
            seqset_add(saved, ctx->items[0].uid, ctx->items[0].uid);
        if (opts & RET_MAX)
            seqset_add(saved, ctx->items[ctx->count - 1].uid,
                       ctx->items[ctx->count - 1].uid);
        return;
    }
    for (i = 0; i < ctx->count; i++)
        seqset_add(saved, ctx->items[i].uid, ctx->items[i].uid);
}

/* SORT / UID SORT [RETURN (...)] (criteria) charset keys */
void imapd_cmd_sort(struct imapd *s, int c)
{
    struct imap_parser *p = &s->parser;
    struct sort_ctx ctx;
    struct imapd_search *q = NULL;
    struct buf word = BUF_INITIALIZER;
    unsigned opts = 0;
    int is_esort = 0;
    int r;

    memset(&ctx, 0, sizeof(ctx));
    if (c == ' ') {
        int d = imap_parse_getc(p);

        imap_parse_ungetc(p, d);
        if (d == 'R' || d == 'r') {
            c = imap_parse_atom(p, &word);
            if (c != EOF && strcasecmp(buf_cstring(&word), "RETURN"))
                c = imap_parse_fail(p, "Expected RETURN or (");
            if (c != EOF)
                c = parse_return(s, c, &opts);
            is_esort = 1;
        }
    }
    if (c != EOF)
        c = parse_criteria(s, c, &ctx);
    if (c != EOF)
        c = parse_charset(s, c, &word);
    if (c != EOF)
        c = imapd_search_parse(s, c, buf_cstring(&word), &q);
    if (imapd_eol(s, c)) {
        if (opts & RET_SAVE)
            seqset_clear(&s->sel->searchres);
        goto done;
    }
    if (imapd_search_is_badcharset(q)) {
        if (opts & RET_SAVE)
            seqset_clear(&s->sel->searchres);
        imapd_search_badcharset(s);
        goto done;
    }
    if (imapd_search_uses_modseq(q))
        imapd_condstore_enable(s);

    r = imapd_search_run(s, q, sort_hit, &ctx);
    if (r) {
        if (opts & RET_SAVE)
            seqset_clear(&s->sel->searchres);
        imapd_no_error(s, r);
        goto done;
    }
    if (ctx.count > 1)
        qsort_r(ctx.items, ctx.count, sizeof(*ctx.items), item_cmp, &ctx);
    if (opts & RET_SAVE)
        sort_save(s, &ctx, opts);
    if (!is_esort || (opts & ~RET_SAVE))
        send_sort(s, &ctx, opts, is_esort);
    imapd_sync(s, 0);
    imapd_ok(s, "Completed");
done:
    imapd_search_free(&q);
    sort_ctx_fini(&ctx);
    buf_free(&word);
}

/* ---------------------------------------------------------------- */
/* THREAD                                                             */

struct thread_ctx {
    struct threading_msg *msgs;
    char **strings;             /* subjects and ids the msgs point at */
    size_t count;
    size_t alloc;
};

/* imapd_search_run callback: the thread data of one message. */
static void thread_hit(struct imapd *s, uint32_t msgno,
                       const struct mailbox_record *rec, void *rock)
{
    struct thread_ctx *ctx = rock;
    struct mailbox *mb = s->sel->mb;
    struct threading_msg *m;
    struct buf val = BUF_INITIALIZER;
    strarray_t ids = STRARRAY_INITIALIZER;
    char **str;

    if (ctx->count == ctx->alloc) {
        ctx->alloc = ctx->alloc ? 2 * ctx->alloc : 64;
        ctx->msgs = xreallocarray(ctx->msgs, ctx->alloc, sizeof(*ctx->msgs));
        ctx->strings = xreallocarray(ctx->strings, 2 * ctx->alloc,
                                     sizeof(*ctx->strings));
    }
    m = &ctx->msgs[ctx->count];
    str = &ctx->strings[2 * ctx->count];
    ctx->count++;
    memset(m, 0, sizeof(*m));
    m->id = s->is_uid ? rec->uid : msgno;
    m->date = rec->sentdate;

    cached_value(mb, rec, MAILBOX_CACHE_HDR_SUBJECT, &val);
    str[0] = buf_release(&val);
    m->subject = str[0];

    cached_value(mb, rec, MAILBOX_CACHE_HDR_MESSAGE_ID, &val);
    threading_parse_msgids(buf_cstring(&val), &ids);
    str[1] = ids.count ? xstrdup(ids.data[0]) : NULL;
    m->msgid = str[1];
    strarray_fini(&ids);

    /* References, else the first id of In-Reply-To. */
    cached_value(mb, rec, MAILBOX_CACHE_HDR_REFERENCES, &val);
    threading_parse_msgids(buf_cstring(&val), &m->refs);
    if (!m->refs.count) {
        cached_value(mb, rec, MAILBOX_CACHE_HDR_IN_REPLY_TO, &val);
        threading_parse_msgids(buf_cstring(&val), &ids);
        if (ids.count)
            strarray_append(&m->refs, ids.data[0]);
        strarray_fini(&ids);
    }
    buf_free(&val);
}

static void thread_ctx_fini(struct thread_ctx *ctx)
{
    size_t i;

    for (i = 0; i < ctx->count; i++) {
        threading_msg_fini(&ctx->msgs[i]);
        free(ctx->strings[2 * i]);
        free(ctx->strings[2 * i + 1]);
    }
    free(ctx->msgs);
    free(ctx->strings);
}

/* THREAD / UID THREAD algorithm charset keys */
void imapd_cmd_thread(struct imapd *s, int c)
{
    struct thread_ctx ctx;
    struct imapd_search *q = NULL;
    struct buf alg = BUF_INITIALIZER;
    struct buf charset = BUF_INITIALIZER;
    struct buf out = BUF_INITIALIZER;
    int is_refs = 0;
    int r;

    memset(&ctx, 0, sizeof(ctx));
    if (imapd_sp(s, c))
        goto done;
    c = imap_parse_atom(&s->parser, &alg);
    if (c != EOF) {
        if (!strcasecmp(buf_cstring(&alg), "REFERENCES"))
            is_refs = 1;
        else if (strcasecmp(buf_cstring(&alg), "ORDEREDSUBJECT"))
            c = imap_parse_fail(&s->parser, "Unknown threading algorithm");
    }
    if (c != EOF)
        c = parse_charset(s, c, &charset);
    if (c != EOF)
        c = imapd_search_parse(s, c, buf_cstring(&charset), &q);
    if (imapd_eol(s, c))
        goto done;
    if (imapd_search_is_badcharset(q)) {
        imapd_search_badcharset(s);
        goto done;
    }
    if (imapd_search_uses_modseq(q))
        imapd_condstore_enable(s);

    r = imapd_search_run(s, q, thread_hit, &ctx);
    if (r) {
        imapd_no_error(s, r);
        goto done;
    }
    buf_appendcstr(&out, "* THREAD ");
    if (is_refs)
        threading_references(ctx.msgs, ctx.count, &out);
    else
        threading_orderedsubject(ctx.msgs, ctx.count, &out);
    if (!ctx.count)
        buf_truncate(&out, out.len - 1);
    buf_appendcstr(&out, "\r\n");
    prot_write(s->out, out.s, out.len);
    imapd_sync(s, 0);
    imapd_ok(s, "Completed");
done:
    imapd_search_free(&q);
    thread_ctx_fini(&ctx);
    buf_free(&alg);
    buf_free(&charset);
    buf_free(&out);
}

/* imapd SEARCH and UID SEARCH: the RFC 9051 / RFC 3501 search keys and
 * the WITHIN, CONDSTORE, SAVEDATE and OBJECTID ones, parsed into a
 * small tree and evaluated per message from the index, the cache and,
 * for text keys, the decoded message; ESEARCH and SEARCHRES results. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <ctype.h>
#include <time.h>

#include "lib/buf.h"
#include "lib/charset.h"
#include "lib/error.h"
#include "lib/prot.h"
#include "lib/times.h"
#include "lib/util.h"
#include "lib/xmalloc.h"
#include "imap/message.h"
#include "imap/seqset.h"

#include "imap/imapd.h"

/*
 * Matching text
 * -------------
 * Every string a client searches for is converted from the command's
 * CHARSET to UTF-8 and put in search form (charset_search_normalise:
 * NFKC with case folding).  The text searched is put in the same form:
 * header fields with their RFC 2047 words decoded, one field per line,
 * and the bodies of all text parts with the transfer encoding undone
 * and the part's charset converted (message_foreach_text).  A key
 * matches when its string is a substring of that text.  Headers the
 * cache holds (From, To, Cc, Bcc, Subject, ...) are read from the
 * cache; other keys read and parse the message file once per message,
 * only when a key needs it.
 *
 * Bounds: SEARCH_MAX_DEPTH levels of NOT, OR and parentheses and
 * SEARCH_MAX_KEYS keys in one command; beyond either the client gets
 * BAD.  Parsing and evaluation recurse at most that deep.
 */

#define SEARCH_MAX_DEPTH 64
#define SEARCH_MAX_KEYS 1000

enum search_op {
    S_ALL, S_NONE, S_AND, S_OR, S_NOT,
    S_FLAG_SET, S_FLAG_UNSET,   /* system flag bits */
    S_KEYWORD, S_UNKEYWORD,
    S_HEADER,                   /* a cached header field holds text */
    S_LARGER, S_SMALLER,
    S_BEFORE, S_ON, S_SINCE,    /* internal date, by UTC day */
    S_SENTBEFORE, S_SENTON, S_SENTSINCE,
    S_SAVEDBEFORE, S_SAVEDON, S_SAVEDSINCE,
    S_OLDER, S_YOUNGER,         /* WITHIN, seconds before now */
    S_MODSEQ,
    S_UIDSET,                   /* UID set, message set and "$" alike */
    S_EMAILID, S_THREADID,
    S_BODY, S_TEXT,             /* need the message text */
    S_HDRNAME                   /* HEADER name value */
};

struct search_key {
    enum search_op op;
    uint32_t flag;
    uint64_t num;
    time_t date;
    int field;                  /* MAILBOX_CACHE_HDR_*, or -1 */
    char *text;                 /* search form, or keyword / id */
    char *name;                 /* S_HDRNAME field name */
    struct seqset set;
    struct search_key **kids;
    size_t nkids;
};

struct imapd_search {
    struct search_key *root;
    char *charset;              /* NULL: UTF-8 */
    int is_badcharset;
    int uses_modseq;
    size_t nkeys;
    time_t now;
};

struct search_ctx {
    struct imapd *s;
    struct imapd_search *q;
};

static void key_free(struct search_key *k)
{
    size_t i;

    if (!k)
        return;
    for (i = 0; i < k->nkids; i++)
        key_free(k->kids[i]);
    free(k->kids);
    free(k->text);
    free(k->name);
    seqset_fini(&k->set);
    free(k);
}

static struct search_key *key_new(struct search_ctx *ctx, enum search_op op)
{
    struct search_key *k = xzmalloc(sizeof(*k));

    k->op = op;
    k->field = -1;
    ctx->q->nkeys++;
    return k;
}

static void key_add(struct search_key *parent, struct search_key *kid)
{
    parent->kids = xreallocarray(parent->kids, parent->nkids + 1,
                                 sizeof(*parent->kids));
    parent->kids[parent->nkids++] = kid;
}

/* Is `name` a charset SEARCH accepts? */
static int charset_ok(const char *name)
{
    return !strcasecmp(name, "UTF-8") || !strcasecmp(name, "US-ASCII")
           || charset_is_known(name);
}

/* The search form of `len` bytes of UTF-8 `src`, appended to `out`.
 * ICU failing (or a text beyond its bound) leaves the text as it is,
 * folded to ASCII lower case, so a search still finds plain words. */
static void search_form(const char *src, size_t len, struct buf *out)
{
    size_t before = out->len, i;

    if (!charset_search_normalise(src, len, out))
        return;
    buf_truncate(out, before);
    for (i = 0; i < len; i++)
        buf_putc(out, (char)tolower((unsigned char)src[i]));
}

/* A client's search string in the program's charset, in search form. */
static char *needle(struct search_ctx *ctx, const struct buf *arg)
{
    struct buf utf8 = BUF_INITIALIZER;
    struct buf out = BUF_INITIALIZER;
    const char *cs = ctx->q->charset;

    if (cs && !ctx->q->is_badcharset && strcasecmp(cs, "UTF-8")
        && strcasecmp(cs, "US-ASCII"))
        charset_to_utf8(cs, arg->s ? arg->s : "", arg->len, &utf8);
    else
        charset_utf8_sanitize(arg->s ? arg->s : "", arg->len, &utf8);
    search_form(utf8.s ? utf8.s : "", utf8.len, &out);
    buf_free(&utf8);
    buf_cstring(&out);
    return buf_release(&out);
}

static int parse_key(struct search_ctx *ctx, int depth,
                     struct search_key **k_r);

/* Read SP and an astring argument. */
static int arg_string(struct search_ctx *ctx, int c, struct buf *out)
{
    if (imapd_sp(ctx->s, c))
        return EOF;
    return imap_parse_astring(&ctx->s->parser, out);
}

/* Read SP and a number argument. */
static int arg_number(struct search_ctx *ctx, int c, uint64_t *num_r)
{
    struct buf arg = BUF_INITIALIZER;
    const char *end;

    c = arg_string(ctx, c, &arg);
    if (c != EOF && (parse_uint64(buf_cstring(&arg), &end, num_r) || *end
                     || !isdigit((unsigned char)arg.s[0])))
        c = imap_parse_fail(&ctx->s->parser, "Invalid number");
    buf_free(&arg);
    return c;
}

static const struct {
    const char *name;
    enum search_op op;
    uint32_t flag;
} flag_keys[] = {
    { "ANSWERED", S_FLAG_SET, MAILBOX_FLAG_ANSWERED },
    { "DELETED", S_FLAG_SET, MAILBOX_FLAG_DELETED },
    { "DRAFT", S_FLAG_SET, MAILBOX_FLAG_DRAFT },
    { "FLAGGED", S_FLAG_SET, MAILBOX_FLAG_FLAGGED },
    { "SEEN", S_FLAG_SET, MAILBOX_FLAG_SEEN },
    { "UNANSWERED", S_FLAG_UNSET, MAILBOX_FLAG_ANSWERED },
    { "UNDELETED", S_FLAG_UNSET, MAILBOX_FLAG_DELETED },
    { "UNDRAFT", S_FLAG_UNSET, MAILBOX_FLAG_DRAFT },
    { "UNFLAGGED", S_FLAG_UNSET, MAILBOX_FLAG_FLAGGED },
    { "UNSEEN", S_FLAG_UNSET, MAILBOX_FLAG_SEEN },
    /* Nothing is ever \Recent here (no session claims new mail), so
     * RECENT and NEW match nothing and OLD everything. */
    { "ALL", S_ALL, 0 },
    { "OLD", S_ALL, 0 },
    { "RECENT", S_NONE, 0 },
    { "NEW", S_NONE, 0 },
    { "SAVEDATESUPPORTED", S_ALL, 0 },
};

static const struct {
    const char *name;
    int field;
} header_keys[] = {
    { "FROM", MAILBOX_CACHE_HDR_FROM },
    { "TO", MAILBOX_CACHE_HDR_TO },
    { "CC", MAILBOX_CACHE_HDR_CC },
    { "BCC", MAILBOX_CACHE_HDR_BCC },
    { "SUBJECT", MAILBOX_CACHE_HDR_SUBJECT },
};

static const struct {
    const char *name;
    enum search_op op;
} date_keys[] = {
    { "BEFORE", S_BEFORE }, { "ON", S_ON }, { "SINCE", S_SINCE },
    { "SENTBEFORE", S_SENTBEFORE }, { "SENTON", S_SENTON },
    { "SENTSINCE", S_SENTSINCE },
    { "SAVEDBEFORE", S_SAVEDBEFORE }, { "SAVEDON", S_SAVEDON },
    { "SAVEDSINCE", S_SAVEDSINCE },
};

static const struct {
    const char *name;
    enum search_op op;
} number_keys[] = {
    { "LARGER", S_LARGER }, { "SMALLER", S_SMALLER },
    { "OLDER", S_OLDER }, { "YOUNGER", S_YOUNGER },
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Keys that take other keys: NOT key, OR key key. */
static int parse_logic(struct search_ctx *ctx, enum search_op op, int c,
                       int depth, struct search_key **k_r)
{
    struct search_key *k = key_new(ctx, op);
    struct search_key *kid = NULL;
    size_t i, n = op == S_NOT ? 1 : 2;

    *k_r = k;
    for (i = 0; i < n; i++) {
        if (imapd_sp(ctx->s, c))
            return EOF;
        c = parse_key(ctx, depth + 1, &kid);
        if (kid)
            key_add(k, kid);
        if (c == EOF)
            return EOF;
    }
    return c;
}

/* MODSEQ [entry-name SP entry-type-req SP] mod-sequence-valzer
 * (RFC 7162 3.1.5); the per-flag entry is accepted and not told apart
 * from the message's modseq, which is never lower. */
static int parse_modseq(struct search_ctx *ctx, int c,
                        struct search_key **k_r)
{
    struct imap_parser *p = &ctx->s->parser;
    struct buf arg = BUF_INITIALIZER;

    *k_r = key_new(ctx, S_MODSEQ);
    ctx->q->uses_modseq = 1;
    if (imapd_sp(ctx->s, c))
        return EOF;
    c = imap_parse_getc(p);
    imap_parse_ungetc(p, c);
    if (c == '"') {
        c = imap_parse_string(p, &arg);
        if (c != EOF)
            c = arg_string(ctx, c, &arg);
        if (c != EOF && strcasecmp(buf_cstring(&arg), "priv")
            && strcasecmp(buf_cstring(&arg), "shared")
            && strcasecmp(buf_cstring(&arg), "all"))
            c = imap_parse_fail(p, "Invalid MODSEQ entry type");
        if (c != EOF)
            c = arg_number(ctx, c, &(*k_r)->num);
    }
    else {
        c = imap_parse_word(p, &arg);
        if (c != EOF && (parse_uint64(buf_cstring(&arg), NULL,
                                      &(*k_r)->num)
                         || !isdigit((unsigned char)arg.s[0])))
            c = imap_parse_fail(p, "Invalid MODSEQ value");
    }
    buf_free(&arg);
    return c;
}

/* Keys with one string argument: FROM..SUBJECT, BODY, TEXT, KEYWORD,
 * EMAILID, THREADID.  Returns 1 when `name` is one of them. */
static int parse_string_key(struct search_ctx *ctx, const char *name,
                            int *c, struct search_key **k_r)
{
    struct buf arg = BUF_INITIALIZER;
    struct search_key *k = NULL;
    size_t i;

    for (i = 0; i < NELEM(header_keys); i++) {
        if (!strcasecmp(name, header_keys[i].name)) {
            k = key_new(ctx, S_HEADER);
            k->field = header_keys[i].field;
            break;
        }
    }
    if (k)
        ;
    else if (!strcasecmp(name, "BODY"))
        k = key_new(ctx, S_BODY);
    else if (!strcasecmp(name, "TEXT"))
        k = key_new(ctx, S_TEXT);
    else if (!strcasecmp(name, "KEYWORD"))
        k = key_new(ctx, S_KEYWORD);
    else if (!strcasecmp(name, "UNKEYWORD"))
        k = key_new(ctx, S_UNKEYWORD);
    else if (!strcasecmp(name, "EMAILID"))
        k = key_new(ctx, S_EMAILID);
    else if (!strcasecmp(name, "THREADID"))
        k = key_new(ctx, S_THREADID);
    else
        return 0;

    *k_r = k;
    *c = arg_string(ctx, *c, &arg);
    if (*c != EOF) {
        if (k->op == S_HEADER || k->op == S_BODY || k->op == S_TEXT)
            k->text = needle(ctx, &arg);
        else
            k->text = buf_release(&arg);
    }
    buf_free(&arg);
    return 1;
}

/* HEADER field-name string. */
static int parse_header_key(struct search_ctx *ctx, int c,
                            struct search_key **k_r)
{
    struct buf arg = BUF_INITIALIZER;
    struct search_key *k = key_new(ctx, S_HDRNAME);
    const char *p;

    *k_r = k;
    c = arg_string(ctx, c, &arg);
    if (c == EOF)
        goto done;
    for (p = buf_cstring(&arg); *p; p++) {
        if ((unsigned char)*p <= ' ' || *p == ':' || (unsigned char)*p > 126)
            break;
    }
    if (*p || !arg.len) {
        c = imap_parse_fail(&ctx->s->parser, "Invalid header name");
        goto done;
    }
    k->name = buf_release(&arg);
    k->field = mailbox_cache_header_field(k->name);
    c = arg_string(ctx, c, &arg);
    if (c != EOF)
        k->text = needle(ctx, &arg);
done:
    buf_free(&arg);
    return c;
}

/* The key named `name` (already read, followed by `c`). */
static int parse_named(struct search_ctx *ctx, const char *name, int c,
                       int depth, struct search_key **k_r)
{
    struct imapd *s = ctx->s;
    struct buf arg = BUF_INITIALIZER;
    struct search_key *k = NULL;
    size_t i;

    *k_r = NULL;
    if (!strcasecmp(name, "NOT"))
        return parse_logic(ctx, S_NOT, c, depth, k_r);
    if (!strcasecmp(name, "OR"))
        return parse_logic(ctx, S_OR, c, depth, k_r);
    if (!strcasecmp(name, "MODSEQ"))
        return parse_modseq(ctx, c, k_r);
    if (!strcasecmp(name, "HEADER"))
        return parse_header_key(ctx, c, k_r);
    if (parse_string_key(ctx, name, &c, k_r))
        return c;
    for (i = 0; i < NELEM(flag_keys); i++) {
        if (!strcasecmp(name, flag_keys[i].name)) {
            k = key_new(ctx, flag_keys[i].op);
            k->flag = flag_keys[i].flag;
            goto out;
        }
    }
    for (i = 0; i < NELEM(date_keys); i++) {
        if (!strcasecmp(name, date_keys[i].name)) {
            c = arg_string(ctx, c, &arg);
            k = key_new(ctx, date_keys[i].op);
            if (c != EOF && times_parse_imap_date(buf_cstring(&arg),
                                                  &k->date))
                c = imap_parse_fail(&s->parser, "Invalid search date");
            goto out;
        }
    }
    for (i = 0; i < NELEM(number_keys); i++) {
        if (!strcasecmp(name, number_keys[i].name)) {
            k = key_new(ctx, number_keys[i].op);
            c = arg_number(ctx, c, &k->num);
            if (c != EOF && (k->op == S_OLDER || k->op == S_YOUNGER)
                && (k->num == 0 || k->num > UINT32_MAX))
                c = imap_parse_fail(&s->parser, "Invalid interval");
            goto out;
        }
    }
    if (!strcasecmp(name, "UID")) {
        if (imapd_sp(s, c))
            goto out;
        c = imap_parse_word(&s->parser, &arg);
        k = key_new(ctx, S_UIDSET);
        if (c != EOF && imapd_parse_uidset(s, buf_cstring(&arg), 1,
                                           &k->set))
            c = EOF;
        goto out;
    }
    if (isdigit((unsigned char)name[0]) || name[0] == '*'
        || name[0] == '$') {
        k = key_new(ctx, S_UIDSET);
        if (imapd_parse_uidset(s, name, 0, &k->set))
            c = EOF;
        goto out;
    }
    c = imap_parse_fail(&s->parser, "Unsupported search key");
out:
    buf_free(&arg);
    *k_r = k;
    return c;
}

/* One key, or a parenthesised list of keys. */
static int parse_key(struct search_ctx *ctx, int depth,
                     struct search_key **k_r)
{
    struct imap_parser *p = &ctx->s->parser;
    struct buf word = BUF_INITIALIZER;
    struct search_key *kid = NULL;
    int c;

    *k_r = NULL;
    if (depth > SEARCH_MAX_DEPTH || ctx->q->nkeys > SEARCH_MAX_KEYS)
        return imap_parse_fail(p, "Search too complex");
    c = imap_parse_getc(p);
    if (c == '(') {
        *k_r = key_new(ctx, S_AND);
        do {
            c = parse_key(ctx, depth + 1, &kid);
            if (kid)
                key_add(*k_r, kid);
            kid = NULL;
        } while (c == ' ');
        if (c == ')')
            return imap_parse_getc(p);
        return c == EOF ? EOF : imap_parse_fail(p, "Expected )");
    }
    imap_parse_ungetc(p, c);
    c = imap_parse_word(p, &word);
    if (c != EOF && !word.len)
        c = imap_parse_fail(p, "Missing search key");
    if (c != EOF)
        c = parse_named(ctx, buf_cstring(&word), c, depth, k_r);
    buf_free(&word);
    return c;
}

static struct imapd_search *search_new(const char *charset)
{
    struct imapd_search *q = xzmalloc(sizeof(*q));
    struct search_ctx ctx = { NULL, q };

    q->now = time(NULL);
    q->root = key_new(&ctx, S_AND);
    if (charset) {
        q->charset = xstrdup(charset);
        q->is_badcharset = !charset_ok(charset);
    }
    return q;
}

/* Read "[CHARSET x SP] key *(SP key)" into `q`.  `word`, when not
 * NULL, is the first word, already read and followed by `c`. */
static int parse_program(struct imapd *s, struct imapd_search *q,
                         const char *word, int c)
{
    struct search_ctx ctx = { s, q };
    struct search_key *kid;
    struct buf arg = BUF_INITIALIZER;

    if (word && !q->charset && !strcasecmp(word, "CHARSET")) {
        c = arg_string(&ctx, c, &arg);
        if (c == EOF || imapd_sp(s, c)) {
            c = EOF;
            goto done;
        }
        q->charset = buf_release(&arg);
        q->is_badcharset = !charset_ok(q->charset);
        word = NULL;
    }
    do {
        kid = NULL;
        c = word ? parse_named(&ctx, word, c, 1, &kid)
                 : parse_key(&ctx, 1, &kid);
        word = NULL;
        if (kid)
            key_add(q->root, kid);
    } while (c == ' ');
done:
    buf_free(&arg);
    return c;
}

int imapd_search_parse(struct imapd *s, int c, const char *charset,
                       struct imapd_search **q_r)
{
    struct imap_parser *p = &s->parser;
    struct buf word = BUF_INITIALIZER;

    *q_r = search_new(charset);
    if (imapd_sp(s, c))
        return EOF;

    /* Only a program without a charset yet may start with CHARSET. */
    c = imap_parse_getc(p);
    imap_parse_ungetc(p, c);
    if (charset || (c != 'C' && c != 'c'))
        return parse_program(s, *q_r, NULL, c);
    c = imap_parse_word(p, &word);
    if (c != EOF)
        c = parse_program(s, *q_r, buf_cstring(&word), c);
    buf_free(&word);
    return c;
}

int imapd_search_is_badcharset(const struct imapd_search *q)
{
    return q && q->is_badcharset;
}

void imapd_search_badcharset(struct imapd *s)
{
    imapd_no(s, "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset");
}

int imapd_search_uses_modseq(const struct imapd_search *q)
{
    return q && q->uses_modseq;
}

void imapd_search_free(struct imapd_search **qp)
{
    struct imapd_search *q = *qp;

    if (!q)
        return;
    key_free(q->root);
    free(q->charset);
    free(q);
    *qp = NULL;
}

/* ---------------------------------------------------------------- */
/* Evaluation                                                         */

/* The message being evaluated; its file and its texts in search form
 * are read only when a key needs them, once. */
struct search_msg {
    const struct mailbox_record *rec;
    int loaded;
    struct buf raw;
    struct message *parsed;
    int has_header;
    struct buf header;          /* all fields, decoded, search form */
    int has_body;
    struct buf body;            /* all text parts, search form */
};

static struct message *search_msg_load(struct imapd *s,
                                       struct search_msg *m)
{
    struct buf path = BUF_INITIALIZER;

    if (!m->loaded) {
        m->loaded = 1;
        mailbox_message_path(s->sel->mb, m->rec->uid, &path);
        if (!util_read_file(buf_cstring(&path), &m->raw,
                            (size_t)m->rec->size + 1))
            message_parse(m->raw.s, m->raw.len, &m->parsed);
        buf_free(&path);
    }
    return m->parsed;
}

static void search_msg_fini(struct search_msg *m)
{
    message_free(&m->parsed);
    buf_free(&m->raw);
    buf_free(&m->header);
    buf_free(&m->body);
}

/* Append the header fields in `len` bytes at `hdr` to `out` decoded
 * (RFC 2047), one per line, in search form; with `with_names` the
 * field names are kept ("subject: x"), else only the values. */
static void fold_fields(const char *hdr, size_t len, int with_names,
                        struct buf *out)
{
    struct buf text = BUF_INITIALIZER;
    const char *p = hdr, *end = hdr + len, *eol, *field, *colon;

    while (p < end) {
        /* One field: its first line and its continuation lines. */
        field = p;
        do {
            eol = memchr(p, '\n', (size_t)(end - p));
            p = eol ? eol + 1 : end;
        } while (p < end && (*p == ' ' || *p == '\t'));
        colon = memchr(field, ':', (size_t)(p - field));
        if (!colon)
            continue;
        if (with_names)
            buf_appendmap(&text, field, (size_t)(colon + 1 - field));
        charset_decode_mimeheader(colon + 1, (size_t)(p - colon - 1),
                                  &text);
        buf_putc(&text, '\n');
    }
    search_form(text.s ? text.s : "", text.len, out);
    buf_free(&text);
}

/* message_foreach_text callback: collect the text of every part. */
static int collect_text(const struct message_part *part, const char *text,
                        size_t len, void *rock)
{
    struct buf *all = rock;

    (void)part;
    buf_appendmap(all, text, len);
    buf_putc(all, '\n');
    return 0;
}

static const struct buf *msg_header(struct imapd *s, struct search_msg *m)
{
    struct message *msg;

    if (!m->has_header) {
        m->has_header = 1;
        msg = search_msg_load(s, m);
        if (msg)
            fold_fields(msg->base + msg->root.header_offset,
                        msg->root.header_size, 1, &m->header);
    }
    return &m->header;
}

static const struct buf *msg_body(struct imapd *s, struct search_msg *m)
{
    struct buf all = BUF_INITIALIZER;
    struct message *msg;

    if (!m->has_body) {
        m->has_body = 1;
        msg = search_msg_load(s, m);
        if (msg) {
            message_foreach_text(msg, collect_text, &all);
            search_form(all.s ? all.s : "", all.len, &m->body);
        }
        buf_free(&all);
    }
    return &m->body;
}

static int has_text(const struct buf *hay, const char *needle_text)
{
    size_t n = strlen(needle_text);

    if (!n)
        return 1;
    return hay->len >= n && memmem(hay->s, hay->len, needle_text, n);
}

/* HEADER name value: from the cache when it holds the field, else from
 * the message.  An empty value matches any message with the field. */
static int match_hdrname(struct imapd *s, const struct search_key *k,
                         struct search_msg *m)
{
    struct buf raw = BUF_INITIALIZER;
    struct buf text = BUF_INITIALIZER;
    strarray_t values = STRARRAY_INITIALIZER;
    struct message *msg;
    int hit = 0;
    int i;

    if (k->field >= 0) {
        if (mailbox_cache_get(s->sel->mb, m->rec, k->field, &raw)
            || !raw.len)
            goto done;
        fold_fields(raw.s, raw.len, 0, &text);
        hit = has_text(&text, k->text);
        goto done;
    }
    msg = search_msg_load(s, m);
    if (!msg || message_header_get(msg, &msg->root, k->name,
                                   MESSAGE_HEADER_DECODE, &values))
        goto done;
    for (i = 0; !hit && i < values.count; i++) {
        buf_reset(&text);
        search_form(values.data[i], strlen(values.data[i]), &text);
        hit = has_text(&text, k->text);
    }
done:
    strarray_fini(&values);
    buf_free(&raw);
    buf_free(&text);
    return hit;
}

/* FROM, TO, CC, BCC, SUBJECT: the cached field, decoded. */
static int match_header(struct imapd *s, const struct search_key *k,
                        const struct mailbox_record *rec)
{
    struct buf raw = BUF_INITIALIZER;
    struct buf text = BUF_INITIALIZER;
    int hit = 0;

    if (!mailbox_cache_get(s->sel->mb, rec, k->field, &raw) && raw.len) {
        fold_fields(raw.s, raw.len, 0, &text);
        hit = has_text(&text, k->text);
    }
    buf_free(&raw);
    buf_free(&text);
    return hit;
}

static int has_keyword(struct imapd *s, const struct mailbox_record *rec,
                       const char *kw)
{
    unsigned idx;

    if (mailbox_find_userflag(s->sel->mb, kw, &idx))
        return 0;
    return (rec->user_flags[idx / 32] & (1u << (idx % 32))) != 0;
}

/* The UTC day of `t`. */
static time_t day_of(time_t t)
{
    return t - ((t % 86400) + 86400) % 86400;
}

static int match_emailid(const struct mailbox_record *rec, const char *id)
{
    struct buf b = BUF_INITIALIZER;
    int hit = !strcmp(imapd_emailid(rec, &b), id);

    buf_free(&b);
    return hit;
}

static int key_match(struct imapd *s, const struct imapd_search *q,
                     const struct search_key *k, struct search_msg *m)
{
    const struct mailbox_record *rec = m->rec;
    time_t saved = rec->savedate ? rec->savedate : rec->internaldate;
    size_t i;

    switch (k->op) {
    case S_ALL: return 1;
    case S_NONE: return 0;
    case S_AND:
        for (i = 0; i < k->nkids; i++) {
            if (!key_match(s, q, k->kids[i], m))
                return 0;
        }
        return 1;
    case S_OR:
        for (i = 0; i < k->nkids; i++) {
            if (key_match(s, q, k->kids[i], m))
                return 1;
        }
        return 0;
    case S_NOT:
        return !(k->nkids ? key_match(s, q, k->kids[0], m) : 1);
    case S_FLAG_SET: return (rec->system_flags & k->flag) != 0;
    case S_FLAG_UNSET: return (rec->system_flags & k->flag) == 0;
    case S_KEYWORD: return has_keyword(s, rec, k->text);
    case S_UNKEYWORD: return !has_keyword(s, rec, k->text);
    case S_HEADER: return match_header(s, k, rec);
    case S_LARGER: return rec->size > k->num;
    case S_SMALLER: return rec->size < k->num;
    case S_BEFORE: return day_of(rec->internaldate) < k->date;
    case S_ON: return day_of(rec->internaldate) == k->date;
    case S_SINCE: return day_of(rec->internaldate) >= k->date;
    case S_SENTBEFORE: return day_of(rec->sentdate) < k->date;
    case S_SENTON: return day_of(rec->sentdate) == k->date;
    case S_SENTSINCE: return day_of(rec->sentdate) >= k->date;
    case S_SAVEDBEFORE: return day_of(saved) < k->date;
    case S_SAVEDON: return day_of(saved) == k->date;
    case S_SAVEDSINCE: return day_of(saved) >= k->date;
    case S_OLDER: return rec->internaldate <= q->now - (time_t)k->num;
    case S_YOUNGER: return rec->internaldate >= q->now - (time_t)k->num;
    case S_MODSEQ: return rec->modseq >= k->num;
    case S_UIDSET: return seqset_contains(&k->set, rec->uid);
    case S_EMAILID: return match_emailid(rec, k->text);
    /* XXX: there is no conversations database yet, so no message has a
     * THREADID (FETCH gives NIL) and the key matches nothing. */
    case S_THREADID: return 0;
    case S_BODY: return has_text(msg_body(s, m), k->text);
    case S_TEXT:
        return has_text(msg_header(s, m), k->text)
               || has_text(msg_body(s, m), k->text);
    case S_HDRNAME: return match_hdrname(s, k, m);
    }
    return 0;
}

int imapd_search_run(struct imapd *s, const struct imapd_search *q,
                     imapd_search_hit_cb *cb, void *rock)
{
    struct mailbox_record rec;
    uint32_t i;
    int r;

    r = mailbox_lock(s->sel->mb, 0);
    if (r)
        return r;
    for (i = 0; i < s->sel->exists; i++) {
        struct search_msg m;
        int hit;

        if (mailbox_find_record(s->sel->mb, s->sel->uids[i], &rec)
            || (rec.system_flags & MAILBOX_FLAG_EXPUNGED))
            continue;
        imapd_apply_seen(s, &rec);
        memset(&m, 0, sizeof(m));
        m.rec = &rec;
        hit = key_match(s, q, q->root, &m);
        search_msg_fini(&m);
        if (hit)
            cb(s, i + 1, &rec, rock);
    }
    mailbox_unlock(s->sel->mb);
    return 0;
}

/* ---------------------------------------------------------------- */
/* SEARCH, ESEARCH (RFC 4731) and SEARCHRES (RFC 5182)                */

#define RET_MIN 0x01u
#define RET_MAX 0x02u
#define RET_ALL 0x04u
#define RET_COUNT 0x08u
#define RET_SAVE 0x10u

/* The hits of one SEARCH: message numbers and UIDs, ascending. */
struct search_result {
    struct seqset msgnos;
    struct seqset uids;
    uint32_t min_uid, max_uid;
    uint32_t min_msgno, max_msgno;
    uint64_t count;
    uint64_t highest_modseq;
};

static void collect_hit(struct imapd *s, uint32_t msgno,
                        const struct mailbox_record *rec, void *rock)
{
    struct search_result *res = rock;

    (void)s;
    seqset_add(&res->msgnos, msgno, msgno);
    seqset_add(&res->uids, rec->uid, rec->uid);
    if (!res->count) {
        res->min_uid = rec->uid;
        res->min_msgno = msgno;
    }
    res->max_uid = rec->uid;
    res->max_msgno = msgno;
    res->count++;
    if (rec->modseq > res->highest_modseq)
        res->highest_modseq = rec->modseq;
}

/* Read "RETURN (opt *(SP opt))" after "RETURN" into *opts_r (an empty
 * list means ALL).  Returns the byte after ")" or EOF. */
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
    if (imapd_sp(s, c) || (c = imap_parse_getc(p)) != '(') {
        buf_free(&word);
        return c == EOF ? EOF : imap_parse_fail(p, "Expected (");
    }
    c = imap_parse_getc(p);
    if (c != ')') {
        imap_parse_ungetc(p, c);
        do {
            c = imap_parse_atom(p, &word);
            if (c == EOF)
                break;
            for (i = 0; i < NELEM(names); i++) {
                if (!strcasecmp(buf_cstring(&word), names[i].name))
                    break;
            }
            if (i == NELEM(names)) {
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

/* "* ESEARCH (TAG "x") [UID] MIN .. MAX .. COUNT .. ALL .. [MODSEQ ..]". */
static void send_esearch(struct imapd *s, unsigned opts, int with_modseq,
                         const struct search_result *res)
{
    struct buf out = BUF_INITIALIZER;

    buf_appendcstr(&out, "* ESEARCH (TAG ");
    imapd_buf_astring(&out, buf_cstring(&s->tag));
    buf_putc(&out, ')');
    if (s->is_uid)
        buf_appendcstr(&out, " UID");
    if ((opts & RET_MIN) && res->count)
        buf_printf(&out, " MIN %u", s->is_uid ? res->min_uid
                                              : res->min_msgno);
    if ((opts & RET_MAX) && res->count)
        buf_printf(&out, " MAX %u", s->is_uid ? res->max_uid
                                              : res->max_msgno);
    if (opts & RET_COUNT)
        buf_printf(&out, " COUNT %llu", (unsigned long long)res->count);
    if ((opts & RET_ALL) && res->count) {
        buf_appendcstr(&out, " ALL ");
        seqset_format(s->is_uid ? &res->uids : &res->msgnos, &out);
    }
    if (with_modseq && res->count)
        buf_printf(&out, " MODSEQ %llu",
                   (unsigned long long)res->highest_modseq);
    buf_appendcstr(&out, "\r\n");
    prot_write(s->out, out.s, out.len);
    buf_free(&out);
}

/* "* SEARCH n n n [(MODSEQ m)]" of RFC 3501 and RFC 7162. */
static void send_search(struct imapd *s, int with_modseq,
                        const struct search_result *res)
{
    const struct seqset *set = s->is_uid ? &res->uids : &res->msgnos;
    struct buf out = BUF_INITIALIZER;
    uint32_t n;

    buf_appendcstr(&out, "* SEARCH");
    for (n = seqset_next(set, 0); n; n = seqset_next(set, n))
        buf_printf(&out, " %u", n);
    if (with_modseq && res->count)
        buf_printf(&out, " (MODSEQ %llu)",
                   (unsigned long long)res->highest_modseq);
    buf_appendcstr(&out, "\r\n");
    prot_write(s->out, out.s, out.len);
    buf_free(&out);
}

/* RETURN (SAVE): the saved set is the result, or only its minimum
 * and/or maximum when those are all that was asked (RFC 5182 2.4). */
static void save_result(struct imapd *s, unsigned opts,
                        const struct search_result *res)
{
    struct seqset *saved = &s->sel->searchres;

    seqset_clear(saved);
    if (!res->count)
        return;
    if ((opts & (RET_MIN | RET_MAX)) && !(opts & (RET_ALL | RET_COUNT))) {
        if (opts & RET_MIN)
            seqset_add(saved, res->min_uid, res->min_uid);
        if (opts & RET_MAX)
            seqset_add(saved, res->max_uid, res->max_uid);
        return;
    }
    seqset_union(saved, &res->uids);
}

/* SEARCH / UID SEARCH [RETURN (...)] [CHARSET x] keys */
void imapd_cmd_search(struct imapd *s, int c)
{
    struct imap_parser *p = &s->parser;
    struct imapd_search *q = NULL;
    struct search_result res;
    struct buf word = BUF_INITIALIZER;
    unsigned opts = 0;
    int is_esearch = 0;
    int r;

    memset(&res, 0, sizeof(res));

    /* RETURN comes first; a word that is not RETURN (RECENT) is the
     * first key. */
    if (c == ' ') {
        int d = imap_parse_getc(p);

        imap_parse_ungetc(p, d);
        if (d == 'R' || d == 'r') {
            c = imap_parse_word(p, &word);
            if (c != EOF && !strcasecmp(buf_cstring(&word), "RETURN")) {
                c = parse_return(s, c, &opts);
                is_esearch = 1;
            }
            else if (c != EOF) {
                q = search_new(NULL);
                c = parse_program(s, q, buf_cstring(&word), c);
            }
        }
    }
    if (!q && c != EOF)
        c = imapd_search_parse(s, c, NULL, &q);
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
    if (q->uses_modseq)
        imapd_condstore_enable(s);
    if (!is_esearch && (s->enabled & IMAPD_ENABLED_IMAP4REV2)) {
        is_esearch = 1;
        opts = RET_ALL;
    }

    r = imapd_search_run(s, q, collect_hit, &res);
    if (r) {
        if (opts & RET_SAVE)
            seqset_clear(&s->sel->searchres);
        imapd_no_error(s, r);
        goto done;
    }
    if (opts & RET_SAVE)
        save_result(s, opts, &res);
    if (!is_esearch)
        send_search(s, q->uses_modseq, &res);
    else if (opts & ~RET_SAVE)
        send_esearch(s, opts, q->uses_modseq, &res);
    imapd_sync(s, 0);
    imapd_ok(s, "Completed");
done:
    imapd_search_free(&q);
    seqset_fini(&res.msgnos);
    seqset_fini(&res.uids);
    buf_free(&word);
}

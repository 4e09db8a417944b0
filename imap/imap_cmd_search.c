/* imapd SEARCH and UID SEARCH: the RFC 9051 search keys parsed into a
 * small tree and evaluated per message from the index and the cache. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <ctype.h>

#include "lib/buf.h"
#include "lib/error.h"
#include "lib/prot.h"
#include "lib/times.h"
#include "lib/util.h"
#include "lib/xmalloc.h"
#include "imap/message.h"
#include "imap/seqset.h"

#include "imap/imapd.h"

/* Deepest nesting of NOT, OR and parentheses. */
#define SEARCH_MAX_DEPTH 32
/* Most keys in one SEARCH. */
#define SEARCH_MAX_KEYS 256

enum search_op {
    S_ALL, S_AND, S_OR, S_NOT,
    S_FLAG_SET, S_FLAG_UNSET,   /* system flag bits */
    S_KEYWORD, S_UNKEYWORD,
    S_HEADER,                   /* a cached header field holds text */
    S_LARGER, S_SMALLER,
    S_BEFORE, S_ON, S_SINCE,    /* internal date, by UTC day */
    S_SENTBEFORE, S_SENTON, S_SENTSINCE,
    S_MSGSET, S_UIDSET,
    S_BODY, S_TEXT,             /* need the message text */
    S_HDRNAME                   /* HEADER name value, any header */
};

struct search_key {
    enum search_op op;
    uint32_t flag;
    uint64_t num;
    time_t date;
    int field;                  /* MAILBOX_CACHE_HDR_* */
    char *text;
    char *name;                 /* S_HDRNAME field name */
    struct seqset set;
    struct search_key **kids;
    size_t nkids;
};

struct search_ctx {
    struct imapd *s;
    size_t nkeys;
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
    ctx->nkeys++;
    return k;
}

static void key_add(struct search_key *parent, struct search_key *kid)
{
    parent->kids = xreallocarray(parent->kids, parent->nkids + 1,
                                 sizeof(*parent->kids));
    parent->kids[parent->nkids++] = kid;
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
    { "OLD", S_ALL, 0 },
    { "UNANSWERED", S_FLAG_UNSET, MAILBOX_FLAG_ANSWERED },
    { "UNDELETED", S_FLAG_UNSET, MAILBOX_FLAG_DELETED },
    { "UNDRAFT", S_FLAG_UNSET, MAILBOX_FLAG_DRAFT },
    { "UNFLAGGED", S_FLAG_UNSET, MAILBOX_FLAG_FLAGGED },
    { "UNSEEN", S_FLAG_UNSET, MAILBOX_FLAG_SEEN },
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
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Keys that take a second key or more: NOT, OR. */
static int parse_logic(struct search_ctx *ctx, const char *name, int c,
                       int depth, struct search_key **k_r)
{
    struct search_key *k = key_new(ctx, !strcasecmp(name, "NOT") ? S_NOT
                                                                 : S_OR);
    struct search_key *kid = NULL;
    size_t i, n = k->op == S_NOT ? 1 : 2;

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

/* The key named `name` (already read, followed by `c`). */
static int parse_named(struct search_ctx *ctx, const char *name, int c,
                       int depth, struct search_key **k_r)
{
    struct imapd *s = ctx->s;
    struct buf arg = BUF_INITIALIZER;
    struct search_key *k = NULL;
    size_t i;

    *k_r = NULL;
    if (!strcasecmp(name, "NOT") || !strcasecmp(name, "OR"))
        return parse_logic(ctx, name, c, depth, k_r);
    if (!strcasecmp(name, "ALL") || !strcasecmp(name, "NEW")
        || !strcasecmp(name, "RECENT")) {
        k = key_new(ctx, S_ALL);
        /* Nothing is ever \Recent here. */
        if (strcasecmp(name, "ALL"))
            k->op = S_NOT;
        goto out;
    }
    for (i = 0; i < NELEM(flag_keys); i++) {
        if (!strcasecmp(name, flag_keys[i].name)) {
            k = key_new(ctx, flag_keys[i].op);
            k->flag = flag_keys[i].flag;
            goto out;
        }
    }
    for (i = 0; i < NELEM(header_keys); i++) {
        if (!strcasecmp(name, header_keys[i].name)) {
            c = arg_string(ctx, c, &arg);
            k = key_new(ctx, S_HEADER);
            k->field = header_keys[i].field;
            k->text = buf_release(&arg);
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
    if (!strcasecmp(name, "LARGER") || !strcasecmp(name, "SMALLER")) {
        c = arg_string(ctx, c, &arg);
        k = key_new(ctx, (name[0] == 'L' || name[0] == 'l') ? S_LARGER
                                                      : S_SMALLER);
        if (c != EOF && parse_uint64(buf_cstring(&arg), NULL, &k->num))
            c = imap_parse_fail(&s->parser, "Invalid number");
        goto out;
    }
    if (!strcasecmp(name, "KEYWORD") || !strcasecmp(name, "UNKEYWORD")) {
        c = arg_string(ctx, c, &arg);
        k = key_new(ctx, name[0] == 'K' || name[0] == 'k' ? S_KEYWORD
                                                          : S_UNKEYWORD);
        k->text = buf_release(&arg);
        goto out;
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
    if ((name[0] >= '0' && name[0] <= '9') || name[0] == '*') {
        k = key_new(ctx, S_MSGSET);
        if (imapd_parse_uidset(s, name, 0, &k->set))
            c = EOF;
        goto out;
    }
    if (!strcasecmp(name, "BODY") || !strcasecmp(name, "TEXT")) {
        c = arg_string(ctx, c, &arg);
        k = key_new(ctx, toupper((unsigned char)name[0]) == 'B' ? S_BODY
                                                                : S_TEXT);
        k->text = buf_release(&arg);
        goto out;
    }
    if (!strcasecmp(name, "HEADER")) {
        c = arg_string(ctx, c, &arg);
        k = key_new(ctx, S_HDRNAME);
        k->name = buf_release(&arg);
        if (c != EOF)
            c = arg_string(ctx, c, &arg);
        k->text = buf_release(&arg);
        goto out;
    }
    /* XXX: MODSEQ, SAVEDATE and the other extension keys are not
     * implemented; clients get BAD for them. */
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
    if (depth > SEARCH_MAX_DEPTH || ctx->nkeys > SEARCH_MAX_KEYS)
        return imap_parse_fail(p, "Search too complex");
    c = imap_parse_getc(p);
    if (c == '(') {
        *k_r = key_new(ctx, S_AND);
        do {
            c = parse_key(ctx, depth + 1, &kid);
            if (kid)
                key_add(*k_r, kid);
        } while (c == ' ');
        if (c == ')')
            return imap_parse_getc(p);
        return c == EOF ? EOF : imap_parse_fail(p, "Expected )");
    }
    imap_parse_ungetc(p, c);
    c = imap_parse_word(p, &word);
    if (c != EOF)
        c = parse_named(ctx, buf_cstring(&word), c, depth, k_r);
    buf_free(&word);
    return c;
}

/* The message being evaluated; its text is read only when a key needs
 * it, once. */
struct search_msg {
    const struct mailbox_record *rec;
    int loaded;
    struct buf raw;
    struct message *parsed;
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
}

/* Case-insensitive search for `needle` in `len` bytes of `hay`. */
static int contains_ci(const char *hay, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    size_t i;

    if (!n)
        return 1;
    for (i = 0; i + n <= len; i++) {
        if (!strncasecmp(hay + i, needle, n))
            return 1;
    }
    return 0;
}

/* message_foreach_text callback: stop with 1 at the first hit. */
static int text_hit(const struct message_part *part, const char *text,
                    size_t len, void *rock)
{
    (void)part;
    return contains_ci(text, len, rock);
}

/* BODY, TEXT and HEADER keys, from the message file.
 * XXX: a search index (squatter) would spare reading every message. */
static int match_text(struct imapd *s, const struct search_key *k,
                      struct search_msg *m)
{
    struct message *msg = search_msg_load(s, m);
    strarray_t values = STRARRAY_INITIALIZER;
    int hit = 0;
    int i;

    if (!msg)
        return 0;
    if (k->op == S_HDRNAME) {
        if (!message_header_get(msg, &msg->root, k->name,
                                MESSAGE_HEADER_DECODE, &values)) {
            for (i = 0; !hit && i < values.count; i++)
                hit = contains_ci(values.data[i], strlen(values.data[i]),
                                  k->text);
        }
        strarray_fini(&values);
        return hit;
    }
    if (k->op == S_TEXT
        && contains_ci(msg->base + msg->root.header_offset,
                       msg->root.header_size, k->text))
        return 1;
    return message_foreach_text(msg, text_hit, k->text) == 1;
}

/* Does the cached header field hold `text` (in its values)? */
static int match_header(struct imapd *s, const struct mailbox_record *rec,
                        int field, const char *text)
{
    struct buf v = BUF_INITIALIZER;
    const char *colon;
    int hit = 0;

    /* XXX: encoded words are matched as written, not decoded. */
    if (!mailbox_cache_get(s->sel->mb, rec, field, &v) && v.len) {
        colon = memchr(v.s, ':', v.len);
        if (colon)
            hit = contains_ci(colon + 1, v.len - (size_t)(colon + 1 - v.s),
                              text);
    }
    buf_free(&v);
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

static int key_match(struct imapd *s, const struct search_key *k,
                     struct search_msg *m)
{
    const struct mailbox_record *rec = m->rec;
    size_t i;

    switch (k->op) {
    case S_ALL: return 1;
    case S_AND:
        for (i = 0; i < k->nkids; i++) {
            if (!key_match(s, k->kids[i], m))
                return 0;
        }
        return 1;
    case S_OR:
        for (i = 0; i < k->nkids; i++) {
            if (key_match(s, k->kids[i], m))
                return 1;
        }
        return 0;
    case S_NOT:
        return !(k->nkids ? key_match(s, k->kids[0], m) : 1);
    case S_FLAG_SET: return (rec->system_flags & k->flag) != 0;
    case S_FLAG_UNSET: return (rec->system_flags & k->flag) == 0;
    case S_KEYWORD: return has_keyword(s, rec, k->text);
    case S_UNKEYWORD: return !has_keyword(s, rec, k->text);
    case S_HEADER: return match_header(s, rec, k->field, k->text);
    case S_LARGER: return rec->size > k->num;
    case S_SMALLER: return rec->size < k->num;
    case S_BEFORE: return day_of(rec->internaldate) < k->date;
    case S_ON: return day_of(rec->internaldate) == k->date;
    case S_SINCE: return day_of(rec->internaldate) >= k->date;
    case S_SENTBEFORE: return day_of(rec->sentdate) < k->date;
    case S_SENTON: return day_of(rec->sentdate) == k->date;
    case S_SENTSINCE: return day_of(rec->sentdate) >= k->date;
    case S_MSGSET:
    case S_UIDSET: return seqset_contains(&k->set, rec->uid);
    case S_BODY:
    case S_TEXT:
    case S_HDRNAME: return match_text(s, k, m);
    }
    return 0;
}

/* Does the message of `rec` match `root`? */
static int search_one(struct imapd *s, const struct search_key *root,
                      const struct mailbox_record *rec)
{
    struct search_msg m = { rec, 0, BUF_INITIALIZER, NULL };
    int hit = key_match(s, root, &m);

    search_msg_fini(&m);
    return hit;
}

/* Read "[CHARSET x] key *(SP key)" into one AND node. */
static int parse_program(struct search_ctx *ctx, int c,
                         struct search_key **root_r)
{
    struct imap_parser *p = &ctx->s->parser;
    struct search_key *root = key_new(ctx, S_AND);
    struct search_key *kid = NULL;
    struct buf word = BUF_INITIALIZER;
    int first = 1;

    *root_r = root;
    do {
        if (imapd_sp(ctx->s, c))
            break;
        c = imap_parse_getc(p);
        if (c != '(') {
            imap_parse_ungetc(p, c);
            c = imap_parse_word(p, &word);
            if (c != EOF && first && !strcasecmp(buf_cstring(&word),
                                                 "CHARSET")) {
                c = arg_string(ctx, c, &word);
                if (c != EOF && strcasecmp(buf_cstring(&word), "UTF-8")
                    && strcasecmp(buf_cstring(&word), "US-ASCII")) {
                    c = imap_parse_fail(p, "[BADCHARSET (UTF-8)] "
                                           "Unsupported charset");
                }
                first = 0;
                continue;
            }
            if (c != EOF)
                c = parse_named(ctx, buf_cstring(&word), c, 1, &kid);
        }
        else {
            imap_parse_ungetc(p, c);
            c = parse_key(ctx, 1, &kid);
        }
        if (kid)
            key_add(root, kid);
        kid = NULL;
        first = 0;
    } while (c == ' ');
    buf_free(&word);
    return c;
}

/* SEARCH / UID SEARCH [CHARSET x] keys */
void imapd_cmd_search(struct imapd *s, int c)
{
    struct search_ctx ctx = { s, 0 };
    struct search_key *root = NULL;
    struct mailbox_record rec;
    struct buf out = BUF_INITIALIZER;
    uint32_t i;

    c = parse_program(&ctx, c, &root);
    if (imapd_eol(s, c))
        goto done;
    if (mailbox_lock(s->sel->mb, 0)) {
        imapd_no(s, "[SERVERBUG] Cannot lock mailbox");
        goto done;
    }
    buf_appendcstr(&out, "* SEARCH");
    for (i = 0; i < s->sel->exists; i++) {
        uint32_t uid = s->sel->uids[i];

        if (mailbox_find_record(s->sel->mb, uid, &rec)
            || (rec.system_flags & MAILBOX_FLAG_EXPUNGED))
            continue;
        imapd_apply_seen(s, &rec);
        if (search_one(s, root, &rec))
            buf_printf(&out, " %u", s->is_uid ? uid : i + 1);
    }
    mailbox_unlock(s->sel->mb);
    buf_appendcstr(&out, "\r\n");
    prot_write(s->out, out.s, out.len);
    imapd_sync(s, 0);
    imapd_ok(s, "Completed");
done:
    key_free(root);
    buf_free(&out);
}

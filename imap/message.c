/* Messages: parse an RFC 5322 / MIME message held in memory into a tree
 * of parts, and render what IMAP FETCH needs from it.  The tree layout
 * and the rendering rules are described in message.h. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "lib/buf.h"
#include "lib/charset.h"
#include "lib/error.h"
#include "lib/strarray.h"
#include "lib/xmalloc.h"

#include "imap/message.h"

/* Strings longer than this go out as literals even when 7-bit clean. */
#define QUOTED_MAX 1024

/* Longest boundary we look for (RFC 2046 allows 70). */
#define BOUNDARY_MAX 200

/* What a part without a valid Content-Type is. */
enum default_type {
    DEFAULT_TEXT,               /* text/plain; charset=us-ascii */
    DEFAULT_MESSAGE             /* message/rfc822, in multipart/digest */
};

/* State shared by one message_parse() call. */
struct parse_ctx {
    const char *base;
    size_t nparts;
};

/* ---------------------------------------------------------------- */
/* Header fields                                                      */

/* One header field: name and raw value (folds included, final line
 * break excluded), and the whole field with its line break. */
struct hdr_field {
    const char *name;
    size_t namelen;
    const char *value;
    size_t valuelen;
    const char *raw;
    size_t rawlen;
};

/* A walk over the fields of a header region. */
struct hdr_iter {
    const char *p;
    const char *end;
};

/* End of the line at `p` (just past its LF, or `end`). */
static const char *line_end(const char *p, const char *end)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));

    return nl ? nl + 1 : end;
}

/* Is the line at `p` empty (the header/body separator)? */
static int is_blank_line(const char *p, const char *end)
{
    return (p < end && *p == '\n')
           || (end - p >= 2 && p[0] == '\r' && p[1] == '\n');
}

/* Check a field name: printable ASCII without colon or space. */
static int field_name_ok(const char *name, size_t len)
{
    size_t i;

    if (!len)
        return 0;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];

        if (c <= ' ' || c >= 0x7f || c == ':')
            return 0;
    }
    return 1;
}

/* Next field of the header; returns 0 at the end.  Lines that are not
 * fields (no colon, a bad name, a stray continuation) are skipped. */
static int hdr_next(struct hdr_iter *it, struct hdr_field *f)
{
    const char *p, *eol, *colon, *nend;

    while (it->p < it->end && !is_blank_line(it->p, it->end)) {
        p = it->p;
        eol = line_end(p, it->end);
        it->p = eol;
        if (*p == ' ' || *p == '\t')
            continue;
        colon = memchr(p, ':', (size_t)(eol - p));
        if (!colon)
            continue;
        for (nend = colon; nend > p && (nend[-1] == ' ' || nend[-1] == '\t');
             nend--)
            ;
        if (!field_name_ok(p, (size_t)(nend - p)))
            continue;

        /* Continuation lines belong to this field. */
        while (it->p < it->end && (*it->p == ' ' || *it->p == '\t'))
            it->p = line_end(it->p, it->end);
        f->name = p;
        f->namelen = (size_t)(nend - p);
        f->value = colon + 1;
        f->valuelen = (size_t)(it->p - f->value);
        while (f->valuelen && (f->value[f->valuelen - 1] == '\n'
                               || f->value[f->valuelen - 1] == '\r'))
            f->valuelen--;
        f->raw = p;
        f->rawlen = (size_t)(it->p - p);
        return 1;
    }
    return 0;
}

/* Is `f` the field `name` (any case)? */
static int field_is(const struct hdr_field *f, const char *name)
{
    return strlen(name) == f->namelen && !strncasecmp(f->name, name,
                                                      f->namelen);
}

/* A field value unfolded (CR, LF and NUL dropped), trimmed of white
 * space and cut at `max` bytes; caller frees. */
static char *value_unfold(const char *v, size_t len, size_t max)
{
    struct buf b = BUF_INITIALIZER;
    size_t i;

    buf_ensure(&b, len < max ? len : max);
    for (i = 0; i < len && strchr(" \t\r\n", v[i]) && v[i]; i++)
        ;
    for (; i < len && b.len < max; i++) {
        if (v[i] != '\r' && v[i] != '\n' && v[i] != '\0')
            buf_putc(&b, v[i]);
    }
    buf_trim(&b);
    return buf_release(&b);
}

/* The interpreted value of a field: unfolded, trimmed, bounded. */
static char *field_value(const struct hdr_field *f)
{
    return value_unfold(f->value, f->valuelen, MESSAGE_MAX_VALUE);
}

/* ---------------------------------------------------------------- */
/* Structured field tokens (RFC 2045 parameters)                      */

/* Skip white space and (nested) comments. */
static const char *skip_cfws(const char *p)
{
    int depth;

    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != '(')
            return p;
        for (depth = 0; *p; p++) {
            if (*p == '\\' && p[1]) {
                p++;
            } else if (*p == '(') {
                depth++;
            } else if (*p == ')' && --depth == 0) {
                p++;
                break;
            }
        }
    }
}

/* RFC 2045 token character. */
static int is_token_char(unsigned char c)
{
    return c > ' ' && c < 0x7f && !strchr("()<>@,;:\\\"/[]?=", c);
}

/* A token at `p` copied out upper-cased (NULL if none); *p_r moves. */
static char *take_token(const char **p_r, int upcase)
{
    const char *p = *p_r, *start = p;
    char *tok;
    size_t i;

    while (is_token_char((unsigned char)*p))
        p++;
    if (p == start)
        return NULL;
    tok = xstrndup(start, (size_t)(p - start));
    for (i = 0; upcase && tok[i]; i++) {
        if (tok[i] >= 'a' && tok[i] <= 'z')
            tok[i] = (char)(tok[i] - 'a' + 'A');
    }
    *p_r = p;
    return tok;
}

/* A parameter value at `p`: a quoted string (escapes undone, possibly
 * unterminated) or, leniently, any run up to ';', space, '(' or '"'. */
static char *take_value(const char **p_r)
{
    struct buf b = BUF_INITIALIZER;
    const char *p = *p_r;

    if (*p == '"') {
        for (p++; *p && *p != '"'; p++) {
            if (*p == '\\' && p[1])
                p++;
            buf_putc(&b, *p);
        }
        if (*p == '"')
            p++;
    } else {
        while (*p && *p != ';' && *p != ' ' && *p != '\t' && *p != '('
               && *p != '"')
            buf_putc(&b, *p++);
    }
    *p_r = p;
    return buf_release(&b);
}

/* Parse "; name=value" pairs at `p` into `params`.  Parameters without
 * a value and junk between semicolons are skipped. */
static void parse_params(const char *p, struct message_params *params)
{
    char *name;

    for (;;) {
        p = skip_cfws(p);
        while (*p && *p != ';')
            p++;
        if (!*p)
            return;
        p = skip_cfws(p + 1);
        name = take_token(&p, 1);
        if (!name)
            continue;
        p = skip_cfws(p);
        if (*p != '=' || params->names.count >= MESSAGE_MAX_PARAMS) {
            free(name);
            continue;
        }
        p = skip_cfws(p + 1);
        strarray_appendm(&params->names, name);
        strarray_appendm(&params->values, take_value(&p));
    }
}

/* The first value of parameter `name` (upper case), or NULL. */
static const char *params_get(const struct message_params *params,
                              const char *name)
{
    int i;

    for (i = 0; i < params->names.count; i++) {
        if (!strcmp(params->names.data[i], name))
            return params->values.data[i];
    }
    return NULL;
}

/* The value of parameter `name` (upper case) for our own use: the plain
 * spelling if present, else the RFC 2231 one decoded ("boundary*=").
 * Caller frees; NULL if absent. */
static char *param_value(const struct message_part *part, const char *name)
{
    const char *v = params_get(&part->params, name);

    return v ? xstrdup(v) : message_part_param(part, name, 0);
}

/* Free the parameter arrays, leaving them empty. */
static void params_fini(struct message_params *params)
{
    strarray_fini(&params->names);
    strarray_fini(&params->values);
}

/* ---------------------------------------------------------------- */
/* Content-* fields                                                   */

/* Raw values of the first instance of each MIME field of a part. */
struct mime_fields {
    struct hdr_field type;
    struct hdr_field encoding;
    struct hdr_field id;
    struct hdr_field description;
    struct hdr_field md5;
    struct hdr_field disposition;
    struct hdr_field language;
    struct hdr_field location;
};

/* Remember `f` in `slot` unless an earlier instance is there. */
static void keep_first(struct hdr_field *slot, const struct hdr_field *f)
{
    if (!slot->name)
        *slot = *f;
}

/* Find the first instance of each Content-* field in a header. */
static void scan_mime_fields(const char *hdr, size_t len,
                             struct mime_fields *mf)
{
    struct hdr_iter it = { hdr, hdr + len };
    struct hdr_field f;
    int n = 0;

    memset(mf, 0, sizeof(*mf));
    while (n++ < MESSAGE_MAX_FIELDS && hdr_next(&it, &f)) {
        if (f.namelen < 8 || strncasecmp(f.name, "content-", 8))
            continue;
        if (field_is(&f, "content-type"))
            keep_first(&mf->type, &f);
        else if (field_is(&f, "content-transfer-encoding"))
            keep_first(&mf->encoding, &f);
        else if (field_is(&f, "content-id"))
            keep_first(&mf->id, &f);
        else if (field_is(&f, "content-description"))
            keep_first(&mf->description, &f);
        else if (field_is(&f, "content-md5"))
            keep_first(&mf->md5, &f);
        else if (field_is(&f, "content-disposition"))
            keep_first(&mf->disposition, &f);
        else if (field_is(&f, "content-language"))
            keep_first(&mf->language, &f);
        else if (field_is(&f, "content-location"))
            keep_first(&mf->location, &f);
    }
}

/* Set the default content type of a part. */
static void set_default_type(struct message_part *part,
                             enum default_type dflt)
{
    free(part->type);
    free(part->subtype);
    params_fini(&part->params);
    if (dflt == DEFAULT_MESSAGE) {
        part->type = xstrdup("MESSAGE");
        part->subtype = xstrdup("RFC822");
        return;
    }
    part->type = xstrdup("TEXT");
    part->subtype = xstrdup("PLAIN");
    strarray_append(&part->params.names, "CHARSET");
    strarray_append(&part->params.values, "us-ascii");
}

/* Content-Type: type "/" subtype *(";" parameter). */
static void parse_content_type(struct message_part *part,
                               const struct hdr_field *f,
                               enum default_type dflt)
{
    char *v, *type = NULL, *subtype = NULL;
    const char *p;

    if (!f->name) {
        set_default_type(part, dflt);
        return;
    }
    p = v = field_value(f);
    p = skip_cfws(p);
    type = take_token(&p, 1);
    p = skip_cfws(p);
    if (type && *p == '/') {
        p = skip_cfws(p + 1);
        subtype = take_token(&p, 1);
    }
    if (!subtype) {
        free(type);
        set_default_type(part, dflt);
    } else {
        part->type = type;
        part->subtype = subtype;
        parse_params(p, &part->params);
    }
    free(v);
}

/* Content-Disposition: type *(";" parameter). */
static void parse_disposition(struct message_part *part,
                              const struct hdr_field *f)
{
    char *v;
    const char *p;

    if (!f->name)
        return;
    p = v = field_value(f);
    p = skip_cfws(p);
    part->disposition = take_token(&p, 1);
    if (part->disposition)
        parse_params(p, &part->disp_params);
    free(v);
}

/* Content-Language: a comma-separated list of tags. */
static void parse_language(struct message_part *part,
                           const struct hdr_field *f)
{
    char *v, *tag;
    const char *p;

    if (!f->name)
        return;
    p = v = field_value(f);
    while (*p && part->language.count < MESSAGE_MAX_PARAMS) {
        p = skip_cfws(p);
        if (*p == ',') {
            p++;
            continue;
        }
        tag = take_token(&p, 0);
        if (tag)
            strarray_appendm(&part->language, tag);
        else if (*p)
            p++;
    }
    free(v);
}

/* Content-Transfer-Encoding: its first token, upper-cased. */
static void parse_encoding(struct message_part *part,
                           const struct hdr_field *f)
{
    char *v;
    const char *p;

    if (!f->name)
        return;
    p = v = field_value(f);
    p = skip_cfws(p);
    part->encoding = take_token(&p, 1);
    free(v);
}

/* Unfolded value of an optional field, or NULL. */
static char *optional_value(const struct hdr_field *f)
{
    return f->name ? field_value(f) : NULL;
}

/* Fill the MIME fields of a part from its header. */
static void parse_mime_header(struct message_part *part,
                              const char *base, enum default_type dflt)
{
    struct mime_fields mf;
    char *loc;
    size_t i, j;

    scan_mime_fields(base + part->header_offset, part->header_size, &mf);
    parse_content_type(part, &mf.type, dflt);
    parse_encoding(part, &mf.encoding);
    parse_disposition(part, &mf.disposition);
    parse_language(part, &mf.language);
    part->id = optional_value(&mf.id);
    part->description = optional_value(&mf.description);
    part->md5 = optional_value(&mf.md5);

    /* A folded location loses its white space (RFC 2557 4.4.1). */
    loc = optional_value(&mf.location);
    for (i = j = 0; loc && loc[i]; i++) {
        if (loc[i] != ' ' && loc[i] != '\t')
            loc[j++] = loc[i];
    }
    if (loc)
        loc[j] = '\0';
    part->location = loc;
}

/* ---------------------------------------------------------------- */
/* Addresses (RFC 5322 3.4 with the obsolete forms of section 4.4)    */

enum addr_tok_type {
    ATOK_END,
    ATOK_WORD,                  /* atom or quoted string */
    ATOK_DLIT,                  /* [domain literal] */
    ATOK_SPECIAL                /* one of < > @ , ; : . */
};

/* One token of an address field; `text` is the word (quotes undone)
 * and `raw` the bytes as written. */
struct addr_tok {
    enum addr_tok_type type;
    char special;
    int has_space_before;       /* white space or a comment precedes it */
    const char *raw;
    size_t rawlen;
    struct buf text;
};

/* Tokenizer and output list of one address field. */
struct addr_parser {
    const char *p;
    struct buf comment;         /* the last comment seen */
    struct message_address *head;
    struct message_address **tail;
    int count;
};

/* Skip white space; comments are remembered in ap->comment. */
static void addr_skip_cfws(struct addr_parser *ap)
{
    const char *start;
    int depth;

    for (;;) {
        while (*ap->p == ' ' || *ap->p == '\t')
            ap->p++;
        if (*ap->p != '(')
            return;
        start = ap->p + 1;
        for (depth = 0; *ap->p; ap->p++) {
            if (*ap->p == '\\' && ap->p[1])
                ap->p++;
            else if (*ap->p == '(')
                depth++;
            else if (*ap->p == ')' && --depth == 0)
                break;
        }
        buf_setmap(&ap->comment, start, (size_t)(ap->p - start));
        buf_trim(&ap->comment);
        if (*ap->p)
            ap->p++;
    }
}

/* Read the next token into `t`. */
static void addr_next(struct addr_parser *ap, struct addr_tok *t)
{
    const char *p = ap->p;

    addr_skip_cfws(ap);
    t->has_space_before = p != ap->p;
    p = ap->p;
    buf_reset(&t->text);
    t->raw = p;
    t->special = 0;
    if (!*p) {
        t->type = ATOK_END;
    } else if (strchr("<>@,;:.", *p)) {
        t->type = ATOK_SPECIAL;
        t->special = *p++;
    } else if (*p == '"') {
        t->type = ATOK_WORD;
        for (p++; *p && *p != '"'; p++) {
            if (*p == '\\' && p[1])
                p++;
            buf_putc(&t->text, *p);
        }
        if (*p)
            p++;
    } else if (*p == '[') {
        t->type = ATOK_DLIT;
        while (*p && *p != ']')
            p++;
        if (*p)
            p++;
    } else {
        t->type = ATOK_WORD;
        while (*p && !strchr(" \t()<>@,;:.\"[", *p)) {
            if (*p == '\\' && p[1])
                p++;
            buf_putc(&t->text, *p++);
        }
        if (p == ap->p)
            buf_putc(&t->text, *p++);       /* a lone ']' or '\\' */
    }
    t->rawlen = (size_t)(p - t->raw);
    ap->p = p;
}

/* Append an element; strings are taken over (NULL allowed). */
static void addr_emit(struct addr_parser *ap, char *name, char *route,
                      char *mailbox, char *domain)
{
    struct message_address *a = xzmalloc(sizeof(*a));

    a->name = name;
    a->route = route;
    a->mailbox = mailbox;
    a->domain = domain;
    *ap->tail = a;
    ap->tail = &a->next;
    ap->count++;
}

/* The words of a phrase: as a display name and as a local part. */
struct phrase {
    struct buf name;
    struct buf local;
    int nwords;
};

/* Forget the words collected so far. */
static void phrase_reset(struct phrase *ph)
{
    buf_reset(&ph->name);
    buf_reset(&ph->local);
    ph->nwords = 0;
}

/* Add a word or a dot to the phrase in both of its forms. */
static void phrase_add(struct phrase *ph, const struct addr_tok *t)
{
    /* The name keeps the spacing of the source, collapsed. */
    if (ph->name.len && t->has_space_before)
        buf_putc(&ph->name, ' ');
    if (t->type == ATOK_SPECIAL) {
        buf_putc(&ph->name, t->special);
    } else {
        buf_appendbuf(&ph->name, &t->text);
        ph->nwords++;
    }
    buf_appendmap(&ph->local, t->raw, t->rawlen);
}

/* Copy of a buffer's text, or NULL when empty. */
static char *buf_dupnull(struct buf *b)
{
    return b->len ? xstrdup(buf_cstring(b)) : NULL;
}

/* Emit the pending phrase as a mailbox without a domain ("To: foo"). */
static void addr_flush_phrase(struct addr_parser *ap, struct phrase *ph)
{
    if (ph->nwords && ap->count < MESSAGE_MAX_ADDRESSES) {
        addr_emit(ap, NULL, NULL, xstrdup(buf_cstring(&ph->local)),
                  xstrdup("unspecified-domain"));
    }
    phrase_reset(ph);
}

/* Read a domain (words, dots, literals) into `dom`; stops at any other
 * special, which is left in `t`. */
static void addr_domain(struct addr_parser *ap, struct addr_tok *t,
                        struct buf *dom)
{
    for (;;) {
        addr_next(ap, t);
        if (t->type == ATOK_END
            || (t->type == ATOK_SPECIAL && t->special != '.'))
            return;
        buf_appendmap(dom, t->raw, t->rawlen);
    }
}

/* The inside of "<...>": optional route, local part, "@", domain. */
static void addr_angle(struct addr_parser *ap, struct phrase *ph,
                       struct addr_tok *t)
{
    struct buf route = BUF_INITIALIZER, local = BUF_INITIALIZER;
    struct buf dom = BUF_INITIALIZER;

    addr_next(ap, t);
    while (t->type == ATOK_SPECIAL && (t->special == '@'
                                       || t->special == ',')) {
        if (t->special == '@') {
            if (route.len)
                buf_putc(&route, ',');
            buf_putc(&route, '@');
            addr_domain(ap, t, &route);
        } else {
            addr_next(ap, t);
        }
    }
    if (t->type == ATOK_SPECIAL && t->special == ':') {
        addr_next(ap, t);
    } else if (route.len) {
        /* "<@host>": not a route after all, but a bare domain. */
        buf_reset(&route);
    }
    while (t->type == ATOK_WORD
           || (t->type == ATOK_SPECIAL && t->special == '.')) {
        buf_appendmap(&local, t->raw, t->rawlen);
        addr_next(ap, t);
    }
    if (t->type == ATOK_SPECIAL && t->special == '@')
        addr_domain(ap, t, &dom);
    while (t->type != ATOK_END
           && !(t->type == ATOK_SPECIAL && t->special == '>'))
        addr_next(ap, t);

    if (ap->count < MESSAGE_MAX_ADDRESSES) {
        addr_emit(ap, buf_dupnull(&ph->name), buf_dupnull(&route),
                  xstrdup(buf_cstring(&local)),
                  dom.len ? buf_release(&dom)
                          : xstrdup("unspecified-domain"));
    }
    phrase_reset(ph);
    buf_free(&route);
    buf_free(&local);
    buf_free(&dom);
}

/* "local@domain" with the local part already in the phrase. */
static void addr_spec(struct addr_parser *ap, struct phrase *ph,
                      struct addr_tok *t)
{
    struct buf dom = BUF_INITIALIZER;

    buf_reset(&ap->comment);
    addr_domain(ap, t, &dom);
    if (ap->count < MESSAGE_MAX_ADDRESSES) {
        addr_emit(ap, buf_dupnull(&ap->comment), NULL,
                  xstrdup(buf_cstring(&ph->local)),
                  dom.len ? buf_release(&dom)
                          : xstrdup("unspecified-domain"));
    }
    phrase_reset(ph);
    buf_free(&dom);
}

/* Parse an address field value into a list (NULL when empty). */
static struct message_address *parse_addresses(const char *value)
{
    struct addr_parser ap = { value, BUF_INITIALIZER, NULL, NULL, 0 };
    struct phrase ph = { BUF_INITIALIZER, BUF_INITIALIZER, 0 };
    struct addr_tok t = { ATOK_END, 0, 0, NULL, 0, BUF_INITIALIZER };
    int in_group = 0, skipping = 0;

    ap.tail = &ap.head;
    addr_next(&ap, &t);
    while (t.type != ATOK_END) {
        char c = t.type == ATOK_SPECIAL ? t.special : 0;

        if (skipping && c != ',' && c != ';') {
            addr_next(&ap, &t);
            continue;
        }
        skipping = 0;
        if (!c || c == '.' || (c == ':' && in_group)) {
            if (t.type != ATOK_SPECIAL || c == '.')
                phrase_add(&ph, &t);
        } else if (c == '<') {
            addr_angle(&ap, &ph, &t);
            skipping = 1;
        } else if (c == '@') {
            addr_spec(&ap, &ph, &t);
            skipping = 1;
            continue;           /* t holds the token after the domain */
        } else if (c == ':') {
            if (ap.count < MESSAGE_MAX_ADDRESSES) {
                addr_emit(&ap, NULL, NULL, xstrdup(buf_cstring(&ph.name)),
                          NULL);
                in_group = 1;
            }
            phrase_reset(&ph);
        } else if (c == ',' || c == ';') {
            addr_flush_phrase(&ap, &ph);
            if (c == ';' && in_group) {
                addr_emit(&ap, NULL, NULL, NULL, NULL);
                in_group = 0;
            }
        }
        addr_next(&ap, &t);
    }
    addr_flush_phrase(&ap, &ph);
    if (in_group)
        addr_emit(&ap, NULL, NULL, NULL, NULL);

    buf_free(&t.text);
    buf_free(&ph.name);
    buf_free(&ph.local);
    buf_free(&ap.comment);
    return ap.head;
}

/* Free an address list; NULL accepted. */
static void addresses_free(struct message_address *a)
{
    struct message_address *next;

    for (; a; a = next) {
        next = a->next;
        free(a->name);
        free(a->route);
        free(a->mailbox);
        free(a->domain);
        free(a);
    }
}

/* ---------------------------------------------------------------- */
/* Envelope                                                           */

/* Keep the first instance of a string field. */
static void env_string(char **slot, const struct hdr_field *f)
{
    if (!*slot)
        *slot = field_value(f);
}

/* Keep the first instance of an address field. */
static void env_addresses(struct message_address **slot, int *seen,
                          const struct hdr_field *f)
{
    char *v;

    if (*seen)
        return;
    *seen = 1;
    v = field_value(f);
    *slot = parse_addresses(v);
    free(v);
}

/* Build the envelope of a message from its header; caller frees. */
static struct message_envelope *parse_envelope(const char *hdr, size_t len)
{
    struct message_envelope *env = xzmalloc(sizeof(*env));
    struct hdr_iter it = { hdr, hdr + len };
    struct hdr_field f;
    int seen[6] = { 0, 0, 0, 0, 0, 0 };
    int n = 0;

    while (n++ < MESSAGE_MAX_FIELDS && hdr_next(&it, &f)) {
        if (field_is(&f, "date"))
            env_string(&env->date, &f);
        else if (field_is(&f, "subject"))
            env_string(&env->subject, &f);
        else if (field_is(&f, "from"))
            env_addresses(&env->from, &seen[0], &f);
        else if (field_is(&f, "sender"))
            env_addresses(&env->sender, &seen[1], &f);
        else if (field_is(&f, "reply-to"))
            env_addresses(&env->reply_to, &seen[2], &f);
        else if (field_is(&f, "to"))
            env_addresses(&env->to, &seen[3], &f);
        else if (field_is(&f, "cc"))
            env_addresses(&env->cc, &seen[4], &f);
        else if (field_is(&f, "bcc"))
            env_addresses(&env->bcc, &seen[5], &f);
        else if (field_is(&f, "in-reply-to"))
            env_string(&env->in_reply_to, &f);
        else if (field_is(&f, "message-id"))
            env_string(&env->message_id, &f);
    }
    return env;
}

/* Free an envelope; NULL accepted. */
static void envelope_free(struct message_envelope *env)
{
    if (!env)
        return;
    free(env->date);
    free(env->subject);
    addresses_free(env->from);
    addresses_free(env->sender);
    addresses_free(env->reply_to);
    addresses_free(env->to);
    addresses_free(env->cc);
    addresses_free(env->bcc);
    free(env->in_reply_to);
    free(env->message_id);
    free(env);
}

/* ---------------------------------------------------------------- */
/* The part tree                                                      */

static void parse_part(struct parse_ctx *ctx, struct message_part *part,
                       size_t start, size_t end, int depth,
                       enum default_type dflt);

/* Number of lines in [p, end): LFs, plus a last line without one. */
static size_t count_lines(const char *p, const char *end)
{
    const char *nl;
    size_t n = 0;

    if (p == end)
        return 0;
    while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        n++;
        p = nl + 1;
    }
    return p < end ? n + 1 : n;
}

/* Split [start, end) into header and body. */
static void split_header(const char *base, struct message_part *part,
                         size_t start, size_t end)
{
    const char *p = base + start, *e = base + end;

    part->header_offset = start;
    while (p < e && !is_blank_line(p, e))
        p = line_end(p, e);
    if (p < e)
        p += (*p == '\n') ? 1 : 2;
    part->header_size = (size_t)(p - (base + start));
    part->body_offset = (size_t)(p - base);
    part->body_size = end - part->body_offset;
}

/* Is the line [p, eol) a delimiter "--boundary"?  *is_close_r is set
 * for "--boundary--".  Transport padding after it is allowed. */
static int is_delimiter(const char *p, const char *eol, const char *bnd,
                        size_t blen, int *is_close_r)
{
    if ((size_t)(eol - p) < blen + 2 || p[0] != '-' || p[1] != '-'
        || memcmp(p + 2, bnd, blen))
        return 0;
    p += blen + 2;
    if (eol - p >= 2 && p[0] == '-' && p[1] == '-') {
        *is_close_r = 1;
        return 1;
    }
    *is_close_r = 0;
    for (; p < eol; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
            return 0;
    }
    return 1;
}

/* Append a child covering [start, end) to a multipart and parse it. */
static void add_subpart(struct parse_ctx *ctx, struct message_part *part,
                        size_t *alloc, size_t start, size_t end, int depth,
                        enum default_type dflt)
{
    struct message_part *child;

    if (part->nsubparts == *alloc) {
        *alloc = *alloc ? *alloc * 2 : 4;
        part->subparts = xreallocarray(part->subparts, *alloc,
                                       sizeof(*part->subparts));
    }
    child = &part->subparts[part->nsubparts++];
    memset(child, 0, sizeof(*child));
    ctx->nparts++;
    parse_part(ctx, child, start, end < start ? start : end, depth, dflt);
}

/* Give a multipart without parts one text/plain child with an empty
 * header and the whole body [bs, be). */
static void add_synthetic_part(struct parse_ctx *ctx,
                               struct message_part *part, size_t bs,
                               size_t be)
{
    struct message_part *child = xzmalloc(sizeof(*child));

    child->header_offset = bs;
    child->body_offset = bs;
    child->body_size = be - bs;
    child->lines = count_lines(ctx->base + bs, ctx->base + be);
    set_default_type(child, DEFAULT_TEXT);
    part->subparts = child;
    part->nsubparts = 1;
    ctx->nparts++;
}

/* Find the children of a multipart between its boundaries. */
static void split_multipart(struct parse_ctx *ctx, struct message_part *part,
                            int depth)
{
    const char *base = ctx->base;
    char *bnd = param_value(part, "BOUNDARY");
    size_t blen = bnd ? strlen(bnd) : 0, alloc = 0;
    size_t bs = part->body_offset, be = bs + part->body_size;
    size_t pos = bs, eol, cur = 0, delim;
    enum default_type dflt = strcmp(part->subtype, "DIGEST")
                             ? DEFAULT_TEXT : DEFAULT_MESSAGE;
    int in_part = 0, is_close = 0;

    while (blen && blen <= BOUNDARY_MAX && pos < be) {
        eol = (size_t)(line_end(base + pos, base + be) - base);
        if (is_delimiter(base + pos, base + eol, bnd, blen, &is_close)) {
            /* The line break before the delimiter is part of it. */
            delim = pos;
            if (delim > bs && base[delim - 1] == '\n')
                delim--;
            if (delim > bs && base[delim - 1] == '\r')
                delim--;
            if (in_part)
                add_subpart(ctx, part, &alloc, cur, delim, depth, dflt);
            in_part = 0;
            if (is_close || ctx->nparts >= MESSAGE_MAX_PARTS)
                break;
            cur = eol;
            in_part = 1;
        }
        pos = eol;
    }
    if (in_part)
        add_subpart(ctx, part, &alloc, cur, be, depth, dflt);

    /* No part at all: one synthetic text part holds the whole body. */
    if (!part->nsubparts)
        add_synthetic_part(ctx, part, bs, be);
    free(bnd);
}

/* Was the part split into children (a multipart)? */
static int is_multipart(const struct message_part *part)
{
    return part->nsubparts > 0;
}

/* Parse the part in [start, end): header, MIME fields, children. */
static void parse_part(struct parse_ctx *ctx, struct message_part *part,
                       size_t start, size_t end, int depth,
                       enum default_type dflt)
{
    const char *base = ctx->base;
    int is_multi, is_msg;
    size_t body_end;

    split_header(base, part, start, end);
    parse_mime_header(part, base, dflt);
    is_multi = !strcmp(part->type, "MULTIPART");
    is_msg = !strcmp(part->type, "MESSAGE")
             && !strcmp(part->subtype, "RFC822");

    /* Past the bounds a container is read as plain text. */
    if ((is_multi || is_msg)
        && (depth >= MESSAGE_MAX_DEPTH || ctx->nparts >= MESSAGE_MAX_PARTS)) {
        set_default_type(part, DEFAULT_TEXT);
        is_multi = is_msg = 0;
    }
    if (is_multi) {
        split_multipart(ctx, part, depth + 1);
        return;
    }

    body_end = part->body_offset + part->body_size;
    if (is_msg || !strcmp(part->type, "TEXT"))
        part->lines = count_lines(base + part->body_offset, base + body_end);
    if (is_msg) {
        part->message = xzmalloc(sizeof(*part->message));
        ctx->nparts++;
        parse_part(ctx, part->message, part->body_offset, body_end,
                   depth + 1, DEFAULT_TEXT);
        part->message->envelope =
            parse_envelope(base + part->message->header_offset,
                           part->message->header_size);
    }
}

int message_parse(const char *base, size_t size, struct message **msg_r)
{
    struct parse_ctx ctx = { base, 1 };
    struct message *msg;

    *msg_r = NULL;
    if (!base && size)
        return ERR_INVALID;
    if (!base)
        base = ctx.base = "";
    msg = xzmalloc(sizeof(*msg));
    msg->base = base;
    msg->size = size;
    parse_part(&ctx, &msg->root, 0, size, 0, DEFAULT_TEXT);
    msg->root.envelope = parse_envelope(base, msg->root.header_size);
    msg->nparts = ctx.nparts;
    *msg_r = msg;
    return 0;
}

/* Release what a part owns (not the struct itself). */
static void part_fini(struct message_part *part)
{
    size_t i;

    free(part->type);
    free(part->subtype);
    params_fini(&part->params);
    free(part->id);
    free(part->description);
    free(part->encoding);
    free(part->md5);
    free(part->disposition);
    params_fini(&part->disp_params);
    strarray_fini(&part->language);
    free(part->location);
    for (i = 0; i < part->nsubparts; i++)
        part_fini(&part->subparts[i]);
    free(part->subparts);
    if (part->message) {
        part_fini(part->message);
        free(part->message);
    }
    envelope_free(part->envelope);
}

void message_free(struct message **msgp)
{
    if (!msgp || !*msgp)
        return;
    part_fini(&(*msgp)->root);
    free(*msgp);
    *msgp = NULL;
}

/* ---------------------------------------------------------------- */
/* Rendering                                                          */

/* An IMAP string: quoted when short 7-bit text, else a literal. */
static void write_string(struct buf *out, const char *s)
{
    size_t len = strlen(s), i;
    int is_quotable = len <= QUOTED_MAX;

    for (i = 0; is_quotable && i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c >= 0x80 || c == '\r' || c == '\n')
            is_quotable = 0;
    }
    if (!is_quotable) {
        buf_printf(out, "{%zu}\r\n", len);
        buf_appendmap(out, s, len);
        return;
    }
    buf_ensure(out, len + 2);
    buf_putc(out, '"');
    for (i = 0; i < len; i++) {
        if (s[i] == '"' || s[i] == '\\')
            buf_putc(out, '\\');
        buf_putc(out, s[i]);
    }
    buf_putc(out, '"');
}

/* An IMAP nstring: NIL for NULL. */
static void write_nstring(struct buf *out, const char *s)
{
    if (s)
        write_string(out, s);
    else
        buf_appendcstr(out, "NIL");
}

/* An address list, NIL when empty. */
static void write_addresses(struct buf *out,
                            const struct message_address *a)
{
    if (!a) {
        buf_appendcstr(out, "NIL");
        return;
    }
    buf_putc(out, '(');
    for (; a; a = a->next) {
        buf_putc(out, '(');
        write_nstring(out, a->name && *a->name ? a->name : NULL);
        buf_putc(out, ' ');
        write_nstring(out, a->route);
        buf_putc(out, ' ');
        write_nstring(out, a->mailbox);
        buf_putc(out, ' ');
        write_nstring(out, a->domain);
        buf_putc(out, ')');
    }
    buf_putc(out, ')');
}

void message_write_envelope(const struct message_part *part,
                            struct buf *out)
{
    const struct message_envelope *env = part ? part->envelope : NULL;

    if (!env) {
        buf_appendcstr(out, "NIL");
        return;
    }
    buf_putc(out, '(');
    write_nstring(out, env->date);
    buf_putc(out, ' ');
    write_nstring(out, env->subject);
    buf_putc(out, ' ');
    write_addresses(out, env->from);
    buf_putc(out, ' ');
    write_addresses(out, env->sender ? env->sender : env->from);
    buf_putc(out, ' ');
    write_addresses(out, env->reply_to ? env->reply_to : env->from);
    buf_putc(out, ' ');
    write_addresses(out, env->to);
    buf_putc(out, ' ');
    write_addresses(out, env->cc);
    buf_putc(out, ' ');
    write_addresses(out, env->bcc);
    buf_putc(out, ' ');
    write_nstring(out, env->in_reply_to);
    buf_putc(out, ' ');
    write_nstring(out, env->message_id);
    buf_putc(out, ')');
}

/* body-fld-param: NIL or ("NAME" "value" ...). */
static void write_params(struct buf *out, const struct message_params *p)
{
    int i;

    if (!p->names.count) {
        buf_appendcstr(out, "NIL");
        return;
    }
    buf_putc(out, '(');
    for (i = 0; i < p->names.count; i++) {
        if (i)
            buf_putc(out, ' ');
        write_string(out, p->names.data[i]);
        buf_putc(out, ' ');
        write_string(out, p->values.data[i]);
    }
    buf_putc(out, ')');
}

/* body-fld-dsp SP body-fld-lang SP body-fld-loc, shared by both kinds
 * of body extension. */
static void write_ext_tail(struct buf *out, const struct message_part *part)
{
    int i;

    buf_putc(out, ' ');
    if (part->disposition) {
        buf_putc(out, '(');
        write_string(out, part->disposition);
        buf_putc(out, ' ');
        write_params(out, &part->disp_params);
        buf_putc(out, ')');
    } else {
        buf_appendcstr(out, "NIL");
    }
    buf_putc(out, ' ');
    if (part->language.count == 1) {
        write_string(out, part->language.data[0]);
    } else if (part->language.count) {
        buf_putc(out, '(');
        for (i = 0; i < part->language.count; i++) {
            if (i)
                buf_putc(out, ' ');
            write_string(out, part->language.data[i]);
        }
        buf_putc(out, ')');
    } else {
        buf_appendcstr(out, "NIL");
    }
    buf_putc(out, ' ');
    write_nstring(out, part->location);
}

void message_write_part_structure(const struct message_part *part,
                                  int extended, struct buf *out)
{
    size_t i;

    buf_putc(out, '(');
    if (is_multipart(part)) {
        for (i = 0; i < part->nsubparts; i++)
            message_write_part_structure(&part->subparts[i], extended, out);
        buf_putc(out, ' ');
        write_string(out, part->subtype);
        if (extended) {
            buf_putc(out, ' ');
            write_params(out, &part->params);
            write_ext_tail(out, part);
        }
        buf_putc(out, ')');
        return;
    }

    write_string(out, part->type);
    buf_putc(out, ' ');
    write_string(out, part->subtype);
    buf_putc(out, ' ');
    write_params(out, &part->params);
    buf_putc(out, ' ');
    write_nstring(out, part->id);
    buf_putc(out, ' ');
    write_nstring(out, part->description);
    buf_putc(out, ' ');
    write_string(out, part->encoding ? part->encoding : "7BIT");
    buf_printf(out, " %zu", part->body_size);
    if (part->message) {
        buf_putc(out, ' ');
        message_write_envelope(part->message, out);
        buf_putc(out, ' ');
        message_write_part_structure(part->message, extended, out);
        buf_printf(out, " %zu", part->lines);
    } else if (!strcmp(part->type, "TEXT")) {
        buf_printf(out, " %zu", part->lines);
    }
    if (extended) {
        buf_putc(out, ' ');
        write_nstring(out, part->md5);
        write_ext_tail(out, part);
    }
    buf_putc(out, ')');
}

void message_write_bodystructure(const struct message *msg, int extended,
                                 struct buf *out)
{
    message_write_part_structure(&msg->root, extended, out);
}

/* ---------------------------------------------------------------- */
/* Sections                                                           */

/* Read a part number (1..999999999) at *p_r; 0 on bad syntax. */
static size_t section_number(const char **p_r)
{
    const char *p = *p_r;
    size_t n = 0;

    if (*p < '1' || *p > '9')
        return 0;
    while (*p >= '0' && *p <= '9') {
        if (n > 99999999)
            return 0;
        n = n * 10 + (size_t)(*p++ - '0');
    }
    *p_r = p;
    return n;
}

/* Fill in a resolved section. */
static void section_set(struct message_section *sec,
                        enum message_section_kind kind,
                        const struct message_part *part, size_t offset,
                        size_t size)
{
    sec->kind = kind;
    sec->part = part;
    sec->offset = offset;
    sec->size = size;
}

/* Resolve the keyword after the part numbers (or the whole specifier
 * when there are none).  `sel` is the selected part or NULL. */
static int section_text(const struct message *msg,
                        const struct message_part *sel, const char *p,
                        struct message_section *sec)
{
    const struct message_part *m = sel ? sel->message : &msg->root;
    enum message_section_kind kind;

    if (!strcasecmp(p, "MIME")) {
        if (!sel)
            return ERR_INVALID;
        section_set(sec, MESSAGE_SECTION_MIME, sel, sel->header_offset,
                    sel->header_size);
        return 0;
    }
    if (!strcasecmp(p, "HEADER"))
        kind = MESSAGE_SECTION_HEADER;
    else if (!strcasecmp(p, "HEADER.FIELDS"))
        kind = MESSAGE_SECTION_FIELDS;
    else if (!strcasecmp(p, "HEADER.FIELDS.NOT"))
        kind = MESSAGE_SECTION_FIELDS_NOT;
    else if (!strcasecmp(p, "TEXT"))
        kind = MESSAGE_SECTION_TEXT;
    else
        return ERR_INVALID;
    if (!m)
        return ERR_NOTFOUND;
    if (kind == MESSAGE_SECTION_TEXT)
        section_set(sec, kind, m, m->body_offset, m->body_size);
    else
        section_set(sec, kind, m, m->header_offset, m->header_size);
    return 0;
}

int message_section_find(const struct message *msg, const char *section,
                         struct message_section *sec_r)
{
    const struct message_part *cont = &msg->root, *sel = NULL;
    const char *p = section;
    int cont_is_msg = 1;
    size_t k;

    memset(sec_r, 0, sizeof(*sec_r));
    if (!*p) {
        section_set(sec_r, MESSAGE_SECTION_PART, &msg->root, 0, msg->size);
        return 0;
    }
    while (*p >= '0' && *p <= '9') {
        k = section_number(&p);
        if (!k || (*p && *p != '.') || (*p == '.' && !p[1]))
            return ERR_INVALID;
        if (!cont)
            return ERR_NOTFOUND;

        /* A non-multipart message has its body as part 1. */
        if (is_multipart(cont) && k <= cont->nsubparts)
            sel = &cont->subparts[k - 1];
        else if (!is_multipart(cont) && cont_is_msg && k == 1)
            sel = cont;
        else
            return ERR_NOTFOUND;

        cont_is_msg = !is_multipart(sel);
        cont = is_multipart(sel) ? sel : sel->message;
        if (*p == '.')
            p++;
    }
    if (!*p) {
        section_set(sec_r, MESSAGE_SECTION_PART, sel, sel->body_offset,
                    sel->body_size);
        return 0;
    }
    return section_text(msg, sel, p, sec_r);
}

/* ---------------------------------------------------------------- */
/* Header fields                                                      */

int message_header_get(const struct message *msg,
                       const struct message_part *part, const char *name,
                       unsigned flags, strarray_t *values)
{
    struct hdr_iter it;
    struct hdr_field f;
    struct buf b = BUF_INITIALIZER;
    int found = 0;
    char *v;

    it.p = msg->base + part->header_offset;
    it.end = it.p + part->header_size;
    while (hdr_next(&it, &f)) {
        if (!field_is(&f, name))
            continue;
        found = 1;
        if (flags & MESSAGE_HEADER_RAW) {
            strarray_appendm(values, xstrndup(f.value, f.valuelen));
            continue;
        }
        v = value_unfold(f.value, f.valuelen, SIZE_MAX);
        if (flags & MESSAGE_HEADER_DECODE) {
            buf_reset(&b);
            charset_decode_mimeheader(v, strlen(v), &b);
            buf_trim(&b);
            free(v);
            v = xstrdup(buf_cstring(&b));
        }
        strarray_appendm(values, v);
    }
    buf_free(&b);
    return found ? 0 : ERR_NOTFOUND;
}

void message_header_filter(const char *hdr, size_t len,
                           const strarray_t *names, int is_not,
                           struct buf *out)
{
    struct hdr_iter it = { hdr, hdr + len };
    struct hdr_field f;
    int i, is_listed;

    while (hdr_next(&it, &f)) {
        is_listed = 0;
        for (i = 0; i < names->count && !is_listed; i++)
            is_listed = field_is(&f, names->data[i]);
        if (is_listed != is_not)
            buf_appendmap(out, f.raw, f.rawlen);
    }
    buf_appendcstr(out, "\r\n");
}

char *message_part_param(const struct message_part *part, const char *name,
                         int from_disposition)
{
    const struct message_params *p = from_disposition ? &part->disp_params
                                                      : &part->params;
    strarray_t names = STRARRAY_INITIALIZER, values = STRARRAY_INITIALIZER;
    char *result = NULL;
    int i;

    for (i = 0; i < p->names.count; i++) {
        strarray_append(&names, p->names.data[i]);
        strarray_append(&values, p->values.data[i]);
    }
    charset_decode_params(&names, &values);
    for (i = 0; i < names.count && !result; i++) {
        if (!strcasecmp(names.data[i], name))
            result = xstrdup(values.data[i]);
    }
    strarray_fini(&names);
    strarray_fini(&values);
    return result;
}

/* ---------------------------------------------------------------- */
/* Body content                                                       */

int message_part_decode_body(const struct message *msg,
                             const struct message_part *part,
                             struct buf *out)
{
    const char *body = msg->base + part->body_offset;

    if (part->encoding && !strcmp(part->encoding, "BASE64"))
        return charset_decode_base64(body, part->body_size, out);
    if (part->encoding && !strcmp(part->encoding, "QUOTED-PRINTABLE"))
        charset_decode_qp(body, part->body_size, out);
    else
        buf_appendmap(out, body, part->body_size);
    return 0;
}

/* Scratch buffers for message_foreach_text. */
struct text_walk {
    const struct message *msg;
    message_text_cb *cb;
    void *rock;
    struct buf raw;
    struct buf text;
};

/* Depth-first walk calling back for each text leaf. */
static int walk_text(struct text_walk *w, const struct message_part *part)
{
    char *charset;
    size_t i;
    int r = 0;

    if (is_multipart(part)) {
        for (i = 0; i < part->nsubparts && !r; i++)
            r = walk_text(w, &part->subparts[i]);
        return r;
    }
    if (part->message)
        return walk_text(w, part->message);
    if (strcmp(part->type, "TEXT"))
        return 0;

    buf_reset(&w->raw);
    buf_reset(&w->text);
    message_part_decode_body(w->msg, part, &w->raw);
    charset = param_value(part, "CHARSET");
    charset_to_utf8(charset, w->raw.s, w->raw.len, &w->text);
    free(charset);
    return w->cb(part, buf_cstring(&w->text), w->text.len, w->rock);
}

int message_foreach_text(const struct message *msg, message_text_cb *cb,
                         void *rock)
{
    struct text_walk w = { msg, cb, rock, BUF_INITIALIZER, BUF_INITIALIZER };
    int r;

    r = walk_text(&w, &msg->root);
    buf_free(&w.raw);
    buf_free(&w.text);
    return r;
}

void message_guid(const char *base, size_t size,
                  char hex_r[MESSAGE_GUID_HEXLEN + 1])
{
    static const char hexdigits[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0, i;

    if (!EVP_Digest(size ? base : "", size, md, &mdlen, EVP_sha1(), NULL)
        || mdlen * 2 != MESSAGE_GUID_HEXLEN)
        fatal("SHA-1 digest failed", EX_FATAL_SOFTWARE);
    for (i = 0; i < mdlen; i++) {
        hex_r[2 * i] = hexdigits[md[i] >> 4];
        hex_r[2 * i + 1] = hexdigits[md[i] & 0xf];
    }
    hex_r[MESSAGE_GUID_HEXLEN] = '\0';
}

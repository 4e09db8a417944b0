/* imapd message commands: FETCH, STORE, COPY and MOVE (with their UID
 * forms).  SEARCH lives in imap_cmd_search.c. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "lib/buf.h"
#include "lib/charset.h"
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
/* Longest PREVIEW, in characters (RFC 8970 3.1). */
#define FETCH_PREVIEW_CHARS 200
/* Most bytes of text looked at for a PREVIEW (markup counts). */
#define FETCH_PREVIEW_SCAN (64 * 1024)

/* Simple FETCH items. */
enum {
    F_FLAGS = 1 << 0,
    F_UID = 1 << 1,
    F_INTERNALDATE = 1 << 2,
    F_SIZE = 1 << 3,
    F_ENVELOPE = 1 << 4,
    F_BODYSTRUCTURE = 1 << 5,
    F_BODY = 1 << 6,
    F_MODSEQ = 1 << 7,
    F_SAVEDATE = 1 << 8,
    F_EMAILID = 1 << 9,
    F_THREADID = 1 << 10,
    F_PREVIEW = 1 << 11
};

/* What a section item returns. */
enum section_kind {
    SEC_BODY = 0,               /* BODY[...], RFC822* */
    SEC_BINARY,                 /* BINARY[...] (RFC 3516) */
    SEC_BINARY_SIZE             /* BINARY.SIZE[...] */
};

/* One BODY[section]<partial> (or RFC822, RFC822.HEADER, RFC822.TEXT,
 * BINARY[part]<partial>, BINARY.SIZE[part]). */
struct fetch_section {
    enum section_kind kind;
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
    int needs_parse;            /* BINARY or PREVIEW: parse the message */
    int has_changedsince;       /* CHANGEDSINCE modifier (RFC 7162) */
    uint64_t changedsince;
    int has_vanished;           /* VANISHED modifier (UID FETCH) */
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

/* Is `part` a section-part: nz-number *("." nz-number), or empty? */
static int is_section_part(const char *part, size_t len)
{
    size_t i;
    int at_start = 1;

    for (i = 0; i < len; i++) {
        if (part[i] == '.' && !at_start && i + 1 < len) {
            at_start = 1;
        }
        else if (part[i] >= '0' && part[i] <= '9'
                 && !(at_start && part[i] == '0')) {
            at_start = 0;
        }
        else {
            return 0;
        }
    }
    return 1;
}

/* Parse BINARY[part]<...>, BINARY.PEEK[part]<...> or BINARY.SIZE[part]
 * (RFC 3516 4.2) in `word`. */
static int parse_binary_section(const char *word, struct fetch_req *req)
{
    struct fetch_section *sec;
    struct buf label = BUF_INITIALIZER;
    const char *open = strchr(word, '[');
    const char *close = open ? strchr(open, ']') : NULL;
    size_t namelen = open ? (size_t)(open - word) : 0;
    enum section_kind kind;
    int sets_seen = 0;

    if (req->nsecs >= FETCH_MAX_SECTIONS || !close)
        return -1;
    if (namelen == 6 && !strncasecmp(word, "BINARY", 6)) {
        kind = SEC_BINARY;
        sets_seen = 1;
    }
    else if (namelen == 11 && !strncasecmp(word, "BINARY.PEEK", 11)) {
        kind = SEC_BINARY;
    }
    else if (namelen == 11 && !strncasecmp(word, "BINARY.SIZE", 11)) {
        kind = SEC_BINARY_SIZE;
    }
    else {
        return -1;
    }
    if (!is_section_part(open + 1, (size_t)(close - open - 1))
        || (kind == SEC_BINARY_SIZE && close[1]))
        return -1;
    sec = &req->secs[req->nsecs];
    memset(sec, 0, sizeof(*sec));
    if (parse_partial(close + 1, sec))
        return -1;
    sec->kind = kind;
    sec->sets_seen = sets_seen;
    sec->spec = xstrndup(open + 1, (size_t)(close - open - 1));
    buf_printf(&label, "%s[%s]", kind == SEC_BINARY ? "BINARY" : "BINARY.SIZE",
               sec->spec);
    sec->label = buf_release(&label);
    req->nsecs++;
    req->needs_parse = 1;
    return 0;
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
        { "BODY", F_BODY }, { "MODSEQ", F_MODSEQ },
        { "SAVEDATE", F_SAVEDATE }, { "EMAILID", F_EMAILID },
        { "THREADID", F_THREADID }, { "PREVIEW", F_PREVIEW },
        { "ALL", F_FLAGS | F_INTERNALDATE | F_SIZE | F_ENVELOPE },
        { "FAST", F_FLAGS | F_INTERNALDATE | F_SIZE },
        { "FULL", F_FLAGS | F_INTERNALDATE | F_SIZE | F_ENVELOPE | F_BODY },
    };
    size_t i;

    for (i = 0; i < sizeof(simple) / sizeof(simple[0]); i++) {
        if (!strcasecmp(word, simple[i].name)) {
            req->items |= simple[i].items;
            if (simple[i].items & F_PREVIEW)
                req->needs_parse = 1;
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
    if (!strncasecmp(word, "BINARY", 6))
        return parse_binary_section(word, req);
    return -1;
}

/* PREVIEW's modifiers "(LAZY)" after "PREVIEW SP", the "(" read: we
 * always compute the preview, so LAZY changes nothing (RFC 8970 3.2).
 * Returns the byte after ")" or EOF. */
static int read_preview_mods(struct imapd *s)
{
    struct buf word = BUF_INITIALIZER;
    int c;

    do {
        c = imap_parse_atom(&s->parser, &word);
        if (c != EOF && strcasecmp(buf_cstring(&word), "LAZY"))
            c = imap_parse_fail(&s->parser, "Unknown PREVIEW modifier");
    } while (c == ' ');
    if (c != EOF && c != ')')
        c = imap_parse_fail(&s->parser, "Expected ) after PREVIEW");
    else if (c == ')')
        c = imap_parse_getc(&s->parser);
    buf_free(&word);
    return c;
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
        /* "PREVIEW (LAZY)" inside the list; a lone PREVIEW's "(" is
         * read with the FETCH modifiers. */
        if (in_list && c == ' ' && !strcasecmp(buf_cstring(&word),
                                               "PREVIEW")) {
            c = imap_parse_getc(&s->parser);
            if (c == '(') {
                c = read_preview_mods(s);
            }
            else {
                imap_parse_ungetc(&s->parser, c);
                c = ' ';
            }
        }
    } while (in_list && c == ' ');
    if (in_list) {
        if (c != ')') {
            c = c == EOF ? EOF
                         : imap_parse_fail(&s->parser, "Expected ) in FETCH");
            goto done;
        }
        c = imap_parse_getc(&s->parser);
    }
done:
    buf_free(&word);
    return c;
}

/* Read a mod-sequence-valzer (0 .. 2^63-1).  Returns the next byte or
 * EOF. */
static int read_modseq(struct imapd *s, uint64_t *val_r)
{
    struct buf word = BUF_INITIALIZER;
    int c = imap_parse_atom(&s->parser, &word);

    if (c != EOF && (parse_uint64(buf_cstring(&word), NULL, val_r)
                     || *val_r > INT64_MAX))
        c = imap_parse_fail(&s->parser, "Invalid mod-sequence");
    buf_free(&word);
    return c;
}

/* The FETCH modifiers after "SP (": CHANGEDSINCE n, VANISHED (RFC 7162
 * 3.1.4.1, 3.2.6), and LAZY for a lone PREVIEW.  Returns the byte
 * after ")" or EOF. */
static int read_fetch_mods(struct imapd *s, struct fetch_req *req)
{
    struct buf word = BUF_INITIALIZER;
    int c;

    do {
        c = imap_parse_atom(&s->parser, &word);
        if (c == EOF)
            break;
        if (!strcasecmp(buf_cstring(&word), "CHANGEDSINCE")
            && !req->has_changedsince) {
            if (imapd_sp(s, c)) {
                c = EOF;
                break;
            }
            c = read_modseq(s, &req->changedsince);
            req->has_changedsince = 1;
        }
        else if (!strcasecmp(buf_cstring(&word), "VANISHED")
                 && !req->has_vanished) {
            req->has_vanished = 1;
        }
        else if (!strcasecmp(buf_cstring(&word), "LAZY")
                 && (req->items & F_PREVIEW)) {
            continue;
        }
        else {
            c = imap_parse_fail(&s->parser, "Unknown FETCH modifier");
        }
    } while (c == ' ');
    if (c != EOF && c != ')')
        c = imap_parse_fail(&s->parser, "Expected ) after FETCH modifiers");
    else if (c == ')')
        c = imap_parse_getc(&s->parser);
    buf_free(&word);

    /* VANISHED needs UID FETCH, QRESYNC and CHANGEDSINCE (3.2.6). */
    if (c != EOF && req->has_vanished
        && (!s->is_uid || !(s->enabled & IMAPD_ENABLED_QRESYNC)
            || !req->has_changedsince))
        c = imap_parse_fail(&s->parser, "VANISHED needs UID FETCH,"
                            " QRESYNC and CHANGEDSINCE");
    return c;
}

/* Append `len` bytes as a literal, as a literal8 ("~{n}") when they
 * hold a NUL and `binary_ok` (RFC 3516 4.3). */
static void put_literal8(struct buf *out, const char *data, size_t len,
                         int binary_ok)
{
    buf_printf(out, "%s{%zu}\r\n",
               binary_ok && len && memchr(data, '\0', len) ? "~" : "", len);
    buf_appendmap(out, data, len);
}

/* Append `len` bytes as a literal. */
static void put_literal(struct buf *out, const char *data, size_t len)
{
    put_literal8(out, data, len, 0);
}

/* Cut `data`/`len` to the partial range of `fs`. */
static void apply_partial(const struct fetch_section *fs, const char **data,
                          size_t *len)
{
    size_t start, n;

    if (!fs->has_partial)
        return;
    start = fs->start < *len ? fs->start : *len;
    n = *len - start < fs->len ? *len - start : fs->len;
    *data = *data ? *data + start : NULL;
    *len = n;
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
    apply_partial(fs, &data, &len);
    put_literal(out, data ? data : "", len);
    buf_free(&tmp);
}

/* Undo the transfer encoding of section `spec` into `out`.  Composite
 * parts (multipart, message/rfc822) and BINARY[] are sent as stored:
 * MIME allows them only identity encodings.  Returns 0, ERR_NOTFOUND
 * for a section the message lacks, or ERR_UNSUPPORTED for an encoding
 * we cannot undo. */
static int binary_decode(const struct message *m, const char *spec,
                         struct buf *out)
{
    struct message_section sec;
    const struct message_part *part;
    const char *enc;
    const char *data;

    if (message_section_find(m, spec, &sec) || sec.offset > m->size
        || sec.size > m->size - sec.offset)
        return ERR_NOTFOUND;
    part = sec.part;
    data = m->base + sec.offset;
    enc = part ? part->encoding : NULL;
    if (!*spec || !part || part->nsubparts || part->message || !enc
        || !strcmp(enc, "7BIT") || !strcmp(enc, "8BIT")
        || !strcmp(enc, "BINARY")) {
        buf_appendmap(out, data, sec.size);
        return 0;
    }
    if (!strcmp(enc, "BASE64")) {
        /* Damaged base64: what could be decoded is the best there is. */
        charset_decode_base64(data, sec.size, out);
        return 0;
    }
    if (!strcmp(enc, "QUOTED-PRINTABLE")) {
        charset_decode_qp(data, sec.size, out);
        return 0;
    }
    return ERR_UNSUPPORTED;
}

/* Append a BINARY[...] or BINARY.SIZE[...] item.  Returns 0 or
 * ERR_UNSUPPORTED (unknown transfer encoding: the command fails with
 * UNKNOWN-CTE). */
static int fetch_binary(const struct fetch_section *fs,
                        const struct message *m, struct buf *out)
{
    struct buf data = BUF_INITIALIZER;
    const char *p;
    size_t len;
    int r = m ? binary_decode(m, fs->spec, &data) : ERR_NOTFOUND;

    if (r == ERR_UNSUPPORTED)
        goto done;
    buf_appendcstr(out, fs->label);
    if (fs->kind == SEC_BINARY_SIZE) {
        buf_printf(out, " %zu", r ? (size_t)0 : data.len);
        r = 0;
        goto done;
    }
    if (fs->has_partial)
        buf_printf(out, "<%u>", fs->start);
    if (r) {
        buf_appendcstr(out, " NIL");
        r = 0;
        goto done;
    }
    p = data.s;
    len = data.len;
    apply_partial(fs, &p, &len);
    buf_putc(out, ' ');
    put_literal8(out, p ? p : "", len, 1);
done:
    buf_free(&data);
    return r;
}

/* Building a PREVIEW from the first text part. */
struct preview {
    struct buf text;
    int found;
};

/* Length of the UTF-8 sequence starting with byte `c` (1 for a stray
 * continuation byte: the text is already valid UTF-8). */
static size_t utf8_len(unsigned char c)
{
    return c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
}

/* Does `name` (`len` bytes, any case) appear in the NULL-ended list? */
static int name_in(const char *name, size_t len, const char *const *list)
{
    for (; *list; list++) {
        if (strlen(*list) == len && !strncasecmp(name, *list, len))
            return 1;
    }
    return 0;
}

/* Skip the HTML tag at text[i] == '<'.  Elements whose content is not
 * text (style, script, head) are skipped up to their end tag.  Returns
 * the index after the tag (or `len`); *is_inline_r tells whether the
 * tag sits inside a run of text (<b>, <span>...) rather than breaking
 * it. */
static size_t html_skip_tag(const char *text, size_t len, size_t i,
                            int *is_inline_r)
{
    static const char *const inline_tags[] = {
        "a", "b", "i", "u", "em", "strong", "span", "font", "small",
        "big", "sub", "sup", "code", "tt", NULL
    };
    static const char *const hidden[] = { "style", "script", "head", NULL };
    const char *end = memchr(text + i, '>', len - i);
    size_t name = i + 1, n = 0;
    int is_close = 0;

    if (name < len && text[name] == '/') {
        is_close = 1;
        name++;
    }
    while (name + n < len && (isalnum((unsigned char)text[name + n])))
        n++;
    *is_inline_r = name_in(text + name, n, inline_tags);
    if (!end)
        return len;
    if (!is_close && name_in(text + name, n, hidden)) {
        size_t j;

        /* Find "</name" from here; the element is bounded by the scan
         * limit like everything else. */
        for (j = (size_t)(end - text) + 1; j + n + 2 <= len; j++) {
            if (text[j] == '<' && text[j + 1] == '/'
                && !strncasecmp(text + j + 2, text + name, n)) {
                end = memchr(text + j, '>', len - j);
                return end ? (size_t)(end - text) + 1 : len;
            }
        }
        return len;
    }
    return (size_t)(end - text) + 1;
}

/* Decode the HTML character reference at text[i] == '&' into `out`
 * (UTF-8).  Returns the bytes it takes, or 0 when it is not one we
 * know (the '&' is then text). */
static size_t html_entity(const char *text, size_t len, size_t i,
                          struct buf *out)
{
    static const struct {
        const char *name;
        const char *utf8;
    } named[] = {
        { "amp", "&" }, { "lt", "<" }, { "gt", ">" }, { "quot", "\"" },
        { "apos", "'" }, { "nbsp", " " }
    };
    const char *semi = memchr(text + i, ';', len - i < 12 ? len - i : 12);
    size_t n, k;
    uint32_t cp = 0;

    if (!semi)
        return 0;
    n = (size_t)(semi - (text + i)) + 1;
    for (k = 0; k < sizeof(named) / sizeof(named[0]); k++) {
        if (strlen(named[k].name) == n - 2
            && !strncmp(text + i + 1, named[k].name, n - 2)) {
            buf_appendcstr(out, named[k].utf8);
            return n;
        }
    }
    if (n < 4 || text[i + 1] != '#')
        return 0;
    for (k = i + 2; k < i + n - 1; k++) {
        int d = (unsigned char)text[k];

        if (k == i + 2 && (d == 'x' || d == 'X') && n > 4)
            continue;
        if (text[i + 2] == 'x' || text[i + 2] == 'X') {
            if (!isxdigit(d))
                return 0;
            cp = cp * 16 + (uint32_t)(isdigit(d) ? d - '0'
                                                 : (d | 0x20) - 'a' + 10);
        }
        else if (isdigit(d)) {
            cp = cp * 10 + (uint32_t)(d - '0');
        }
        else {
            return 0;
        }
        if (cp > 0x10ffff)
            return 0;
    }
    if (!cp || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    if (cp < 0x80) {
        buf_putc(out, (char)cp);
    }
    else if (cp < 0x800) {
        buf_putc(out, (char)(0xc0 | (cp >> 6)));
        buf_putc(out, (char)(0x80 | (cp & 0x3f)));
    }
    else if (cp < 0x10000) {
        buf_putc(out, (char)(0xe0 | (cp >> 12)));
        buf_putc(out, (char)(0x80 | ((cp >> 6) & 0x3f)));
        buf_putc(out, (char)(0x80 | (cp & 0x3f)));
    }
    else {
        buf_putc(out, (char)(0xf0 | (cp >> 18)));
        buf_putc(out, (char)(0x80 | ((cp >> 12) & 0x3f)));
        buf_putc(out, (char)(0x80 | ((cp >> 6) & 0x3f)));
        buf_putc(out, (char)(0x80 | (cp & 0x3f)));
    }
    return n;
}

/* Append the preview of `len` bytes of UTF-8 text to `out`: for HTML
 * the markup dropped and character references decoded, runs of white
 * space and control characters folded into one space, at most
 * FETCH_PREVIEW_CHARS characters. */
static void preview_text(const char *text, size_t len, int is_html,
                         struct buf *out)
{
    struct buf one = BUF_INITIALIZER;
    size_t i = 0, chars = 0;
    int pending_space = 0;

    if (len > FETCH_PREVIEW_SCAN)
        len = FETCH_PREVIEW_SCAN;
    while (i < len && chars < FETCH_PREVIEW_CHARS) {
        unsigned char c = (unsigned char)text[i];
        size_t n = utf8_len(c);
        size_t ent = 0;
        int is_inline;

        buf_reset(&one);
        if (is_html && c == '<') {
            i = html_skip_tag(text, len, i, &is_inline);
            pending_space |= !is_inline && out->len > 0;
            continue;
        }
        if (is_html && c == '&')
            ent = html_entity(text, len, i, &one);
        if (ent) {
            i += ent;
        }
        else if (i + n <= len) {
            buf_appendmap(&one, text + i, n);
            i += n;
        }
        else {
            break;
        }
        if ((unsigned char)one.s[0] <= 0x20 || one.s[0] == 0x7f) {
            pending_space = out->len > 0;
            continue;
        }
        if (pending_space) {
            buf_putc(out, ' ');
            pending_space = 0;
            if (++chars >= FETCH_PREVIEW_CHARS)
                break;
        }
        buf_appendbuf(out, &one);
        chars++;
    }
    buf_free(&one);
}

/* message_foreach_text callback: take the first text part that is not
 * an attachment. */
static int preview_cb(const struct message_part *part, const char *text,
                      size_t len, void *rock)
{
    struct preview *pv = rock;

    if (part->disposition && !strcmp(part->disposition, "ATTACHMENT"))
        return 0;
    preview_text(text, len, part->subtype && !strcmp(part->subtype, "HTML"),
                 &pv->text);
    pv->found = 1;
    return 1;
}

/* Append "PREVIEW <string>" for the parsed message `m` (NULL when it
 * could not be read: NIL). */
static void fetch_preview(const struct message *m, struct buf *out)
{
    struct preview pv = { BUF_INITIALIZER, 0 };

    buf_appendcstr(out, "PREVIEW ");
    if (!m) {
        buf_appendcstr(out, "NIL");
        return;
    }
    message_foreach_text(m, preview_cb, &pv);
    imapd_buf_astring(out, buf_cstring(&pv.text));
    buf_free(&pv.text);
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

/* Append `name` and the date `t` in INTERNALDATE form (NIL for 0 when
 * `zero_nil`). */
static void put_date(struct buf *out, const char *name, time_t t,
                     int zero_nil)
{
    char date[64];

    if (!t && zero_nil) {
        buf_printf(out, "%s NIL", name);
        return;
    }
    if (times_format_imap(date, sizeof(date), t, 0))
        xstrlcpy(date, "01-Jan-1970 00:00:00 +0000", sizeof(date));
    buf_printf(out, "%s \"%s\"", name, date);
}

/* Set \Seen on `rec` for a FETCH of a body; returns 1 when the client
 * is to be shown the new flags. */
static int fetch_set_seen(struct imapd *s, struct mailbox_record *rec)
{
    if ((rec->system_flags & (MAILBOX_FLAG_SEEN | MAILBOX_FLAG_EXPUNGED)))
        return 0;
    rec->system_flags |= MAILBOX_FLAG_SEEN;
    if (s->sel->use_seendb) {
        imapd_set_seen(s, rec->uid, 1);
        return 1;
    }
    if (!mailbox_rewrite_record(s->sel->mb, rec))
        return 1;
    rec->system_flags &= ~MAILBOX_FLAG_SEEN;
    return 0;
}

/* Read and parse the message of `rec` when the request needs it:
 * fills `msg` and *m_r (NULL when it cannot be read). */
static void fetch_load(struct imapd *s, const struct mailbox_record *rec,
                       const struct fetch_req *req, struct buf *msg,
                       struct message **m_r)
{
    struct buf path = BUF_INITIALIZER;

    *m_r = NULL;
    if (!req->nsecs && !req->needs_parse)
        return;
    mailbox_message_path(s->sel->mb, rec->uid, &path);
    if (util_read_file(buf_cstring(&path), msg, (size_t)rec->size + 1)) {
        xsyslog(LOG_ERR, "cannot read message", "mailbox=%s uid=%u",
                log_escape(s->sel->intname, 0), rec->uid);
        buf_reset(msg);
    }
    else if (req->needs_parse) {
        message_parse(msg->s, msg->len, m_r);
    }
    buf_free(&path);
}

/* Separate the next item from what `out` holds after offset `start`. */
static void item_sep(struct buf *out, size_t start)
{
    if (out->len > start)
        buf_putc(out, ' ');
}

/* Append the items served from the index and the cache. */
static void fetch_meta(struct imapd *s, const struct mailbox_record *rec,
                       const struct fetch_req *req, int show_flags,
                       int show_modseq, struct buf *out, size_t start)
{
    struct buf tmp = BUF_INITIALIZER;

    /* A UIDFETCH response (UIDONLY) already starts with the UID. */
    if ((s->is_uid || (req->items & F_UID))
        && !(s->enabled & IMAPD_ENABLED_UIDONLY)) {
        item_sep(out, start);
        buf_printf(out, "UID %u", rec->uid);
    }
    if (show_flags) {
        item_sep(out, start);
        buf_appendcstr(out, "FLAGS ");
        imapd_format_flags(s->sel->mb, rec, out);
    }
    if (show_modseq) {
        item_sep(out, start);
        buf_printf(out, "MODSEQ (%llu)", (unsigned long long)rec->modseq);
    }
    if (req->items & F_INTERNALDATE) {
        item_sep(out, start);
        put_date(out, "INTERNALDATE", rec->internaldate, 0);
    }
    if (req->items & F_SAVEDATE) {
        item_sep(out, start);
        put_date(out, "SAVEDATE", rec->savedate, 1);
    }
    if (req->items & F_SIZE) {
        item_sep(out, start);
        buf_printf(out, "RFC822.SIZE %llu", (unsigned long long)rec->size);
    }
    if (req->items & F_EMAILID) {
        item_sep(out, start);
        buf_printf(out, "EMAILID (%s)", imapd_emailid(rec, &tmp));
    }
    if (req->items & F_THREADID) {
        /* XXX: THREADID is NIL until conversations exist (issue 5);
         * RFC 8474 5.2 allows NIL for a server without threads. */
        item_sep(out, start);
        buf_appendcstr(out, "THREADID NIL");
    }
    if (req->items & F_ENVELOPE) {
        item_sep(out, start);
        fetch_cached(s, rec, MAILBOX_CACHE_ENVELOPE, "ENVELOPE", out);
    }
    if (req->items & F_BODYSTRUCTURE) {
        item_sep(out, start);
        fetch_cached(s, rec, MAILBOX_CACHE_BODYSTRUCTURE, "BODYSTRUCTURE",
                     out);
    }
    if (req->items & F_BODY) {
        item_sep(out, start);
        fetch_cached(s, rec, MAILBOX_CACHE_BODY, "BODY", out);
    }
    buf_free(&tmp);
}

/* Build and send the FETCH response of one message (`rec` already
 * shows the session's own \Seen).  Returns 0, or ERR_UNSUPPORTED when a
 * BINARY section has an unknown transfer encoding (nothing is sent). */
static int fetch_one(struct imapd *s, struct mailbox_record *rec,
                     const struct fetch_req *req, int set_seen)
{
    struct buf out = BUF_INITIALIZER;
    struct buf msg = BUF_INITIALIZER;
    struct message *m = NULL;
    size_t start;
    size_t i;
    int show_flags = req->items & F_FLAGS;
    int show_modseq = (req->items & F_MODSEQ) || req->has_changedsince;
    int r = 0;

    /* An implicit \Seen shows the new flags (and modseq). */
    if (set_seen && fetch_set_seen(s, rec)) {
        show_flags = 1;
        show_modseq |= imapd_condstore_on(s);
    }
    imapd_fetch_begin(s, rec->uid, &out);
    start = out.len;
    fetch_meta(s, rec, req, show_flags, show_modseq, &out, start);

    fetch_load(s, rec, req, &msg, &m);
    if (req->items & F_PREVIEW) {
        item_sep(&out, start);
        fetch_preview(m, &out);
    }
    for (i = 0; !r && i < req->nsecs; i++) {
        item_sep(&out, start);
        if (req->secs[i].kind == SEC_BODY)
            fetch_section(s, rec, &req->secs[i], &msg, &out);
        else
            r = fetch_binary(&req->secs[i], m, &out);
    }
    buf_appendcstr(&out, ")\r\n");
    if (!r)
        prot_write(s->out, out.s, out.len);
    message_free(&m);
    buf_free(&out);
    buf_free(&msg);
    return r;
}

/* After our own flag change: if nothing else had changed since the
 * last report, move the mark so the change is not reported twice. */
static void note_own_change(struct imapd *s, uint64_t before)
{
    const struct mailbox_index_header *ih = mailbox_index(s->sel->mb);

    if (s->sel->highestmodseq == before)
        s->sel->highestmodseq = ih->highestmodseq;
}

/* Read "sequence-set" into `uids`, keeping its text in `text` (may be
 * NULL); returns the byte after the set or EOF. */
static int read_set_text(struct imapd *s, struct seqset *uids,
                         struct buf *text)
{
    struct buf word = BUF_INITIALIZER;
    int c = imap_parse_word(&s->parser, &word);

    if (c != EOF && imapd_parse_uidset(s, buf_cstring(&word), s->is_uid,
                                       uids))
        c = EOF;
    if (text)
        buf_setmap(text, word.s, word.len);
    buf_free(&word);
    return c;
}

static int read_set(struct imapd *s, struct seqset *uids)
{
    return read_set_text(s, uids, NULL);
}

/* UID FETCH ... (VANISHED): the UIDs of the requested set that were
 * expunged after CHANGEDSINCE, as VANISHED (EARLIER) (RFC 7162
 * 3.2.6).  The mailbox is locked. */
static void fetch_vanished(struct imapd *s, const struct fetch_req *req,
                           const struct buf *settext)
{
    const struct mailbox_index_header *ih = mailbox_index(s->sel->mb);
    struct seqset asked = SEQSET_INITIALIZER;

    if (!seqset_parse(&asked, settext->s, settext->len,
                      ih->uidnext > 1 ? ih->uidnext - 1 : 0, 0))
        imapd_send_vanished(s, req->changedsince, &asked);
    seqset_fini(&asked);
}

/* FETCH / UID FETCH set items [(modifiers)] */
void imapd_cmd_fetch(struct imapd *s, int c)
{
    struct seqset uids = SEQSET_INITIALIZER;
    struct buf settext = BUF_INITIALIZER;
    struct fetch_req *req = xzmalloc(sizeof(*req));
    struct mailbox_record rec;
    uint64_t before;
    uint32_t uid;
    int set_seen = 0;
    int r = 0, gone = 0;
    size_t i;

    if (imapd_sp(s, c))
        goto done;
    c = read_set_text(s, &uids, &settext);
    if (imapd_sp(s, c))
        goto done;
    c = read_fetch_items(s, req);
    if (c == ' ') {
        c = imap_parse_getc(&s->parser);
        c = c == '(' ? read_fetch_mods(s, req)
                     : imap_parse_fail(&s->parser, "Expected ( after items");
    }
    if (imapd_eol(s, c))
        goto done;
    if ((req->items & F_MODSEQ) || req->has_changedsince)
        imapd_condstore_enable(s);

    for (i = 0; i < req->nsecs; i++)
        set_seen |= req->secs[i].sets_seen;
    set_seen = set_seen && !s->sel->is_readonly
               && (s->sel->rights & ACL_SETSEEN);
    if (mailbox_lock(s->sel->mb, set_seen && !s->sel->use_seendb)) {
        imapd_no(s, "[SERVERBUG] Cannot lock mailbox");
        goto done;
    }
    before = mailbox_index(s->sel->mb)->highestmodseq;
    if (req->has_vanished)
        fetch_vanished(s, req, &settext);
    for (uid = seqset_next(&uids, 0); uid; uid = seqset_next(&uids, uid)) {
        int one;

        /* A message another session expunged stays visible to this
         * one until the expunge is reported; its data is served while
         * its file is still there (delayed expunge). */
        if (mailbox_find_record(s->sel->mb, uid, &rec)
            || (rec.system_flags & MAILBOX_FLAG_UNLINKED)) {
            gone = 1;
            continue;
        }
        if (req->has_changedsince && rec.modseq <= req->changedsince)
            continue;
        imapd_apply_seen(s, &rec);
        one = fetch_one(s, &rec, req, set_seen);
        if (one)
            r = one;
    }
    mailbox_unlock(s->sel->mb);
    note_own_change(s, before);
    imapd_seen_save(s);
    imapd_sync(s, s->is_uid);
    if (r == ERR_UNSUPPORTED)
        imapd_no(s, "[UNKNOWN-CTE] Unknown Content-Transfer-Encoding");
    else if (gone)
        imapd_no(s, "[EXPUNGEISSUED] Some messages were expunged");
    else
        imapd_ok(s, "Completed");
done:
    fetch_req_fini(req);
    free(req);
    buf_free(&settext);
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
    rec->modseq = disk.modseq;
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

/* STORE's "(UNCHANGEDSINCE n)" after "SP (" (RFC 7162 3.1.3).
 * Returns the byte after ")" or EOF. */
static int read_store_mods(struct imapd *s, uint64_t *unchangedsince_r)
{
    struct buf word = BUF_INITIALIZER;
    int seen = 0;
    int c;

    do {
        c = imap_parse_atom(&s->parser, &word);
        if (c == EOF)
            break;
        if (strcasecmp(buf_cstring(&word), "UNCHANGEDSINCE") || seen) {
            c = imap_parse_fail(&s->parser, "Unknown STORE modifier");
            break;
        }
        if (imapd_sp(s, c)) {
            c = EOF;
            break;
        }
        c = read_modseq(s, unchangedsince_r);
        seen = 1;
    } while (c == ' ');
    if (c != EOF && c != ')')
        c = imap_parse_fail(&s->parser, "Expected ) after STORE modifier");
    else if (c == ')')
        c = imap_parse_getc(&s->parser);
    buf_free(&word);
    return c;
}

/* The untagged FETCH of one stored message: FLAGS unless `silent`,
 * with MODSEQ once CONDSTORE is on (and then even when silent, if the
 * message changed: RFC 7162 3.1.3). */
static void store_report(struct imapd *s, const struct mailbox_record *rec,
                         int silent, int changed)
{
    struct buf out = BUF_INITIALIZER;
    int condstore = imapd_condstore_on(s);

    if (silent && !(condstore && changed))
        return;
    imapd_fetch_begin(s, rec->uid, &out);
    if ((s->is_uid || condstore) && !(s->enabled & IMAPD_ENABLED_UIDONLY))
        buf_printf(&out, "UID %u ", rec->uid);
    if (!silent) {
        buf_appendcstr(&out, "FLAGS ");
        imapd_format_flags(s->sel->mb, rec, &out);
    }
    if (condstore)
        buf_printf(&out, "%sMODSEQ (%llu)", silent ? "" : " ",
                   (unsigned long long)rec->modseq);
    buf_appendcstr(&out, ")\r\n");
    prot_write(s->out, out.s, out.len);
    buf_free(&out);
}

/* A parsed STORE command. */
struct store_req {
    struct seqset uids;
    strarray_t flags;
    enum store_op op;
    int silent;
    int has_keywords;
    int has_unchangedsince;
    uint64_t unchangedsince;
};

/* Read "set [(UNCHANGEDSINCE n)] item flags" after "STORE SP" up to
 * the end of the line.  Returns 0, or -1 with the error in the
 * parser. */
static int read_store_args(struct imapd *s, struct store_req *req)
{
    struct buf item = BUF_INITIALIZER;
    int c, i, r = -1;

    c = read_set(s, &req->uids);
    if (imapd_sp(s, c))
        goto done;
    c = imap_parse_getc(&s->parser);
    if (c == '(') {
        c = read_store_mods(s, &req->unchangedsince);
        req->has_unchangedsince = 1;
        if (imapd_sp(s, c))
            goto done;
    }
    else {
        imap_parse_ungetc(&s->parser, c);
    }
    c = imap_parse_atom(&s->parser, &item);
    if (c != EOF && parse_store_item(buf_cstring(&item), &req->op,
                                     &req->silent)) {
        imap_parse_fail(&s->parser, "Invalid STORE item");
        goto done;
    }
    if (imapd_sp(s, c))
        goto done;
    c = read_store_flags(s, &req->flags);
    if (imapd_eol(s, c))
        goto done;
    for (i = 0; i < req->flags.count; i++) {
        if (!imapd_flag_is_valid(req->flags.data[i])) {
            imap_parse_fail(&s->parser, "Invalid flag");
            goto done;
        }
        if (req->flags.data[i][0] != '\\')
            req->has_keywords = 1;
    }
    r = 0;
done:
    buf_free(&item);
    return r;
}

/* STORE / UID STORE set [(UNCHANGEDSINCE n)] item flags */
void imapd_cmd_store(struct imapd *s, int c)
{
    struct store_req req;
    struct seqset modified = SEQSET_INITIALIZER;
    struct buf text = BUF_INITIALIZER;
    struct mailbox_record rec;
    uint32_t user[MAILBOX_USERFLAG_WORDS];
    uint32_t sys, uid;
    uint64_t before;
    int r;

    memset(&req, 0, sizeof(req));
    req.op = STORE_REPLACE;
    if (imapd_sp(s, c) || read_store_args(s, &req))
        goto done;
    if (req.has_unchangedsince)
        imapd_condstore_enable(s);
    if (s->sel->is_readonly) {
        imapd_no(s, "[READ-ONLY] Mailbox is read-only");
        goto done;
    }

    r = mailbox_lock(s->sel->mb, 1);
    if (!r)
        r = flags_to_bits(s->sel->mb, &req.flags, req.op != STORE_REMOVE,
                          &sys, user);
    if (!r && !store_allowed(s, req.op == STORE_REPLACE ? MAILBOX_FLAGS_IMAP
                                                        : sys,
                             req.has_keywords))
        r = ERR_ACL_DENIED;
    before = mailbox_index(s->sel->mb)->highestmodseq;
    for (uid = r ? 0 : seqset_next(&req.uids, 0); uid;
         uid = seqset_next(&req.uids, uid)) {
        uint64_t oldmodseq;

        if (mailbox_find_record(s->sel->mb, uid, &rec)
            || (rec.system_flags & MAILBOX_FLAG_EXPUNGED))
            continue;
        /* The conditional part: a message changed since the client's
         * modseq is left alone and named in [MODIFIED]. */
        if (req.has_unchangedsince && rec.modseq > req.unchangedsince) {
            uint32_t n = s->is_uid ? uid : imapd_msgno(s, uid);

            seqset_add(&modified, n, n);
            continue;
        }
        oldmodseq = rec.modseq;
        r = store_one(s, &rec, req.op, sys, user);
        if (r)
            break;
        store_report(s, &rec, req.silent, rec.modseq != oldmodseq);
    }
    mailbox_unlock(s->sel->mb);
    note_own_change(s, before);
    imapd_seen_save(s);
    if (r) {
        imapd_no_error(s, r);
        goto done;
    }
    imapd_sync(s, s->is_uid);
    if (!seqset_is_empty(&modified)) {
        seqset_format(&modified, &text);
        imapd_ok(s, "[MODIFIED %s] Conditional STORE failed",
                 buf_cstring(&text));
    }
    else {
        imapd_ok(s, "Completed");
    }
done:
    strarray_fini(&req.flags);
    seqset_fini(&req.uids);
    seqset_fini(&modified);
    buf_free(&text);
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
        imapd_sync(s, s->is_uid);
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

/* Character sets and transfer encodings: conversion to UTF-8 through ICU,
 * RFC 2047 encoded words, RFC 2231 parameters, quoted-printable, base64,
 * search normalisation and the modified UTF-7 of IMAP mailbox names. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <unicode/uclean.h>
#include <unicode/ucnv.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include "lib/buf.h"
#include "lib/charset.h"
#include "lib/error.h"
#include "lib/strarray.h"
#include "lib/xmalloc.h"

/* ICU counts in int32_t; larger inputs are refused rather than split. */
#define CHARSET_ICU_MAX (256 * 1024 * 1024)

/* ---------------------------------------------------------------- */
/* UTF-8                                                              */

/* Length of the valid UTF-8 sequence at `s` (at most `n` bytes), storing
 * its code point in *cp_r; 0 if the bytes do not start a valid sequence
 * (overlong forms, surrogates and values past U+10FFFF are invalid). */
static size_t utf8_decode_one(const unsigned char *s, size_t n,
                              uint32_t *cp_r)
{
    uint32_t cp;
    size_t need, i;

    if (!n)
        return 0;
    if (s[0] < 0x80) {
        *cp_r = s[0];
        return 1;
    }
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        need = 2;
        cp = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        need = 3;
        cp = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        need = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (n < need)
        return 0;
    for (i = 1; i < need; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((need == 3 && cp < 0x800) || (need == 4 && cp < 0x10000)
        || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    *cp_r = cp;
    return need;
}

/* Append code point `cp` (a valid scalar value) as UTF-8. */
static void utf8_put(struct buf *dst, uint32_t cp)
{
    char b[4];

    if (cp < 0x80) {
        buf_putc(dst, (char)cp);
        return;
    }
    if (cp < 0x800) {
        b[0] = (char)(0xc0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3f));
        buf_appendmap(dst, b, 2);
    } else if (cp < 0x10000) {
        b[0] = (char)(0xe0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (char)(0x80 | (cp & 0x3f));
        buf_appendmap(dst, b, 3);
    } else {
        b[0] = (char)(0xf0 | (cp >> 18));
        b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        b[3] = (char)(0x80 | (cp & 0x3f));
        buf_appendmap(dst, b, 4);
    }
}

/* Sanitise `src` into `dst`; with `unfold`, CR and LF are dropped. */
static void append_text(const char *src, size_t len, struct buf *dst,
                        int unfold)
{
    const unsigned char *s = (const unsigned char *)src;
    size_t i = 0, run = 0, n;
    uint32_t cp;

    buf_ensure(dst, len);
    while (i < len) {
        if (s[i] < 0x80 && !(unfold && (s[i] == '\r' || s[i] == '\n'))) {
            i++;
            continue;
        }
        buf_appendmap(dst, src + run, i - run);
        n = s[i] < 0x80 ? 0 : utf8_decode_one(s + i, len - i, &cp);
        if (n) {
            buf_appendmap(dst, src + i, n);
            i += n;
        } else {
            if (s[i] >= 0x80)
                utf8_put(dst, 0xfffd);
            i++;
        }
        run = i;
    }
    buf_appendmap(dst, src + run, len - run);
}

void charset_utf8_sanitize(const char *src, size_t len, struct buf *dst)
{
    append_text(src, len, dst, 0);
}

/* ---------------------------------------------------------------- */
/* Conversion through ICU                                             */

/* Is `name` acceptable to hand to ICU?  ICU reads options after a comma
 * and the name comes from mail, so only plain label characters pass. */
static int charset_name_ok(const char *name)
{
    size_t i, len;

    if (!name)
        return 0;
    len = strlen(name);
    if (!len || len > CHARSET_NAME_MAX)
        return 0;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || strchr("-_.:+()", c)))
            return 0;
    }
    return 1;
}

/* Labels we read as UTF-8 without ICU: UTF-8 itself, and US-ASCII,
 * which mislabelled 8-bit mail makes worth reading leniently. */
static int charset_is_utf8ish(const char *name)
{
    return !name || !*name || !strcasecmp(name, "us-ascii")
           || !strcasecmp(name, "ascii") || !strcasecmp(name, "utf-8")
           || !strcasecmp(name, "utf8");
}

/* Open an ICU converter for `name`, or NULL. */
static UConverter *charset_open(const char *name)
{
    UErrorCode err = U_ZERO_ERROR;
    UConverter *cnv;

    if (!charset_name_ok(name))
        return NULL;
    cnv = ucnv_open(name, &err);
    if (U_FAILURE(err)) {
        if (cnv)
            ucnv_close(cnv);
        return NULL;
    }
    return cnv;
}

int charset_is_known(const char *name)
{
    UConverter *cnv;

    if (!name || !*name)
        return 0;
    if (charset_is_utf8ish(name))
        return 1;
    cnv = charset_open(name);
    if (!cnv)
        return 0;
    ucnv_close(cnv);
    return 1;
}

/* Convert with two open converters, growing `dst` as ICU asks. */
static int icu_convert(UConverter *from, UConverter *to, const char *src,
                       size_t len, struct buf *dst)
{
    UChar pivot[1024];
    UChar *psrc = pivot, *ptgt = pivot;
    const char *s = src;
    UBool reset = 1;
    UErrorCode err;

    for (;;) {
        char *t, *start;

        buf_ensure(dst, len + 16);
        start = t = dst->s + dst->len;
        err = U_ZERO_ERROR;
        ucnv_convertEx(to, from, &t, dst->s + dst->alloc - 1, &s, src + len,
                       pivot, &psrc, &ptgt, pivot + 1024, reset, 1, &err);
        dst->len += (size_t)(t - start);
        reset = 0;
        if (err != U_BUFFER_OVERFLOW_ERROR)
            break;
    }
    return U_FAILURE(err) ? ERR_INTERNAL : 0;
}

int charset_to_utf8(const char *charset, const char *src, size_t len,
                    struct buf *dst)
{
    UErrorCode err = U_ZERO_ERROR;
    UConverter *from = NULL, *to = NULL;
    size_t oldlen = dst->len;
    int r = 0;

    if (charset_is_utf8ish(charset)) {
        append_text(src, len, dst, 0);
        return 0;
    }
    from = charset_open(charset);
    if (!from || len > CHARSET_ICU_MAX) {
        r = from ? ERR_TOOBIG : ERR_NOTFOUND;
        goto fallback;
    }
    to = ucnv_open("UTF-8", &err);
    if (U_FAILURE(err)) {
        r = ERR_INTERNAL;
        goto fallback;
    }
    r = icu_convert(from, to, src, len, dst);
    if (!r)
        goto done;

fallback:
    buf_truncate(dst, oldlen);
    append_text(src, len, dst, 0);

done:
    if (to)
        ucnv_close(to);
    if (from)
        ucnv_close(from);
    return r;
}

/* ---------------------------------------------------------------- */
/* Transfer encodings                                                 */

/* Value of a hex digit, or -1. */
static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* The value of "=XX" at s[0..2], or -1 when it is not a hex escape. */
static int qp_escape(const char *s, const char *end)
{
    int hi, lo;

    if (end - s < 3 || s[0] != '=')
        return -1;
    hi = hexval((unsigned char)s[1]);
    lo = hexval((unsigned char)s[2]);
    return (hi < 0 || lo < 0) ? -1 : hi * 16 + lo;
}

/* If a line break (CRLF or LF) or the end of input starts at `p`,
 * return the position after it; else NULL. */
static const char *at_eol(const char *p, const char *end)
{
    if (p == end)
        return end;
    if (*p == '\n')
        return p + 1;
    if (*p == '\r' && end - p >= 2 && p[1] == '\n')
        return p + 2;
    return NULL;
}

void charset_decode_qp(const char *src, size_t len, struct buf *dst)
{
    const char *p = src, *end = src + len, *q, *next;
    int v;

    buf_ensure(dst, len);
    while (p < end) {
        if (*p == '=') {
            v = qp_escape(p, end);
            if (v >= 0) {
                buf_putc(dst, (char)v);
                p += 3;
                continue;
            }
            /* A soft break, perhaps with white space a gateway added. */
            for (q = p + 1; q < end && (*q == ' ' || *q == '\t'); q++)
                ;
            next = at_eol(q, end);
            if (next) {
                p = next;
                continue;
            }
            buf_putc(dst, '=');
            p++;
        } else if (*p == ' ' || *p == '\t') {
            for (q = p; q < end && (*q == ' ' || *q == '\t'); q++)
                ;
            if (!at_eol(q, end))
                buf_appendmap(dst, p, (size_t)(q - p));
            p = q;
        } else {
            buf_putc(dst, *p++);
        }
    }
}

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Sextet value of base64 character `c` in `alphabet`, or -1. */
static int b64_value(unsigned char c, const char *alphabet)
{
    const char *hit;

    if (!c)
        return -1;
    hit = strchr(alphabet, c);
    return hit ? (int)(hit - alphabet) : -1;
}

/* Emit the bytes held in a partial quantum of `n` sextets. */
static void b64_flush(struct buf *dst, uint32_t acc, int n)
{
    if (n == 2) {
        buf_putc(dst, (char)((acc >> 4) & 0xff));
    } else if (n == 3) {
        buf_putc(dst, (char)((acc >> 10) & 0xff));
        buf_putc(dst, (char)((acc >> 2) & 0xff));
    }
}

int charset_decode_base64(const char *src, size_t len, struct buf *dst)
{
    uint32_t acc = 0;
    int n = 0, bad = 0, v;
    size_t i;

    buf_ensure(dst, len / 4 * 3 + 3);
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)src[i];

        if (c == '=') {
            if (n == 1)
                bad = 1;
            b64_flush(dst, acc, n);
            acc = 0;
            n = 0;
            continue;
        }
        v = b64_value(c, b64_alphabet);
        if (v < 0) {
            if (!(c == '\r' || c == '\n' || c == ' ' || c == '\t'))
                bad = 1;
            continue;
        }
        acc = (acc << 6) | (uint32_t)v;
        if (++n == 4) {
            buf_putc(dst, (char)((acc >> 16) & 0xff));
            buf_putc(dst, (char)((acc >> 8) & 0xff));
            buf_putc(dst, (char)(acc & 0xff));
            acc = 0;
            n = 0;
        }
    }
    if (n == 1)
        bad = 1;
    b64_flush(dst, acc, n);
    return bad ? ERR_CORRUPT : 0;
}

/* ---------------------------------------------------------------- */
/* RFC 2047 encoded words                                             */

/* One encoded word "=?charset?E?text?=" found in a header value. */
struct encoded_word {
    char charset[CHARSET_NAME_MAX + 1];
    char encoding;              /* 'B' or 'Q' */
    const char *text;
    size_t textlen;
    const char *end;            /* just past "?=" */
};

/* Parse an encoded word at `p`; returns 1 and fills `ew`, or 0. */
static int ew_parse(const char *p, const char *end, struct encoded_word *ew)
{
    const char *cs, *q;
    size_t cslen;

    if (end - p < 8 || p[0] != '=' || p[1] != '?')
        return 0;
    cs = q = p + 2;
    while (q < end && *q != '?' && (unsigned char)*q > ' '
           && (unsigned char)*q < 0x7f && q - cs <= CHARSET_NAME_MAX * 2)
        q++;
    if (q == cs || end - q < 5 || *q != '?' || q[2] != '?')
        return 0;
    /* RFC 2231 section 5: "charset*language". */
    cslen = (size_t)(q - cs);
    if (memchr(cs, '*', cslen))
        cslen = (size_t)((const char *)memchr(cs, '*', cslen) - cs);
    if (!cslen || cslen > CHARSET_NAME_MAX)
        return 0;
    ew->encoding = (char)(q[1] & ~0x20);
    if (ew->encoding != 'B' && ew->encoding != 'Q')
        return 0;
    memcpy(ew->charset, cs, cslen);
    ew->charset[cslen] = '\0';
    ew->text = q = q + 3;
    while (q < end && *q != '?' && (unsigned char)*q > ' '
           && (unsigned char)*q < 0x7f)
        q++;
    if (end - q < 2 || q[0] != '?' || q[1] != '=')
        return 0;
    ew->textlen = (size_t)(q - ew->text);
    ew->end = q + 2;
    return 1;
}

/* Append the bytes an encoded word stands for. */
static void ew_decode(const struct encoded_word *ew, struct buf *dst)
{
    const char *p = ew->text, *end = ew->text + ew->textlen;
    int v;

    if (ew->encoding == 'B') {
        charset_decode_base64(ew->text, ew->textlen, dst);
        return;
    }
    while (p < end) {
        v = qp_escape(p, end);
        if (v >= 0) {
            buf_putc(dst, (char)v);
            p += 3;
        } else {
            buf_putc(dst, *p == '_' ? ' ' : *p);
            p++;
        }
    }
}

/* The bytes of consecutive encoded words waiting for conversion. */
struct ew_pending {
    struct buf bytes;
    char charset[CHARSET_NAME_MAX + 1];
    int active;
};

/* Convert and append the pending bytes, if any. */
static void ew_flush(struct ew_pending *pend, struct buf *dst)
{
    if (!pend->active)
        return;
    charset_to_utf8(pend->charset, pend->bytes.s, pend->bytes.len, dst);
    buf_reset(&pend->bytes);
    pend->active = 0;
}

/* Position after the linear white space (folds included) at `p`. */
static const char *skip_lwsp(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        p++;
    return p;
}

void charset_decode_mimeheader(const char *src, size_t len, struct buf *dst)
{
    const char *p = src, *end = src + len, *lit, *q;
    struct ew_pending pend = { BUF_INITIALIZER, "", 0 };
    struct encoded_word ew, next;

    while (p < end) {
        if (ew_parse(p, end, &ew)) {
            if (pend.active && strcasecmp(pend.charset, ew.charset))
                ew_flush(&pend, dst);
            if (!pend.active) {
                memcpy(pend.charset, ew.charset, sizeof(pend.charset));
                pend.active = 1;
            }
            ew_decode(&ew, &pend.bytes);
            p = ew.end;

            /* White space between two encoded words is not text. */
            q = skip_lwsp(p, end);
            if (q > p && ew_parse(q, end, &next))
                p = q;
            continue;
        }

        /* Literal text up to the next possible encoded word. */
        ew_flush(&pend, dst);
        lit = p++;
        while (p < end && !(p[0] == '=' && end - p > 1 && p[1] == '?'))
            p++;
        append_text(lit, (size_t)(p - lit), dst, 1);
    }
    ew_flush(&pend, dst);
    buf_free(&pend.bytes);
}

/* ---------------------------------------------------------------- */
/* RFC 2231 parameters                                                */

/* One parameter name as RFC 2231 reads it. */
struct param_name {
    size_t baselen;             /* length of the name before any '*' */
    int section;                /* -1: plain parameter */
    int is_encoded;             /* value is charset'lang'%XX form */
    int done;                   /* already merged into the output */
};

/* Split `attr` into base name, section number and encoding flag. */
static void param_name_parse(const char *attr, struct param_name *pn)
{
    const char *star = strchr(attr, '*');
    const char *p;
    int section = 0;

    pn->baselen = strlen(attr);
    pn->section = -1;
    pn->is_encoded = 0;
    pn->done = 0;
    if (!star || star == attr)
        return;
    p = star + 1;
    if (!*p) {
        pn->baselen = (size_t)(star - attr);
        pn->section = 0;
        pn->is_encoded = 1;
        return;
    }
    if (!(*p >= '0' && *p <= '9') || (*p == '0' && p[1] >= '0' && p[1] <= '9'))
        return;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (section > 9999)
            return;
        section = section * 10 + (*p - '0');
    }
    if (*p && strcmp(p, "*"))
        return;
    pn->baselen = (size_t)(star - attr);
    pn->section = section;
    pn->is_encoded = (*p == '*');
}

/* Append the percent-decoding of `s` to `dst`. */
static void percent_decode(const char *s, struct buf *dst)
{
    int hi, lo;

    while (*s) {
        if (*s == '%' && (hi = hexval((unsigned char)s[1])) >= 0
            && (lo = hexval((unsigned char)s[2])) >= 0) {
            buf_putc(dst, (char)(hi * 16 + lo));
            s += 3;
        } else {
            buf_putc(dst, *s++);
        }
    }
}

/* Index of section `want` of the parameter named like attrs[first]
 * (searching from `first`), or -1. */
static int param_section(const strarray_t *attrs,
                         const struct param_name *pn, int first, int want)
{
    int i;

    for (i = first; i < attrs->count; i++) {
        if (pn[i].section == want && pn[i].baselen == pn[first].baselen
            && !strncasecmp(attrs->data[i], attrs->data[first],
                            pn[first].baselen))
            return i;
    }
    return -1;
}

/* Append the bytes of one section; section 0 of an extended value
 * starts with "charset'language'", whose charset goes to `charset`. */
static void param_append_section(const char *v, int is_encoded,
                                 int is_first, char *charset,
                                 struct buf *bytes)
{
    const char *q1, *q2;

    if (!is_encoded) {
        buf_appendcstr(bytes, v);
        return;
    }
    q1 = is_first ? strchr(v, '\'') : NULL;
    q2 = q1 ? strchr(q1 + 1, '\'') : NULL;
    if (q2) {
        if ((size_t)(q1 - v) <= CHARSET_NAME_MAX) {
            memcpy(charset, v, (size_t)(q1 - v));
            charset[q1 - v] = '\0';
        }
        v = q2 + 1;
    }
    percent_decode(v, bytes);
}

/* Join the sections of the parameter named like attrs[first] (an RFC
 * 2231 spelling) into UTF-8, marking them done.  Returns 1 if section 0
 * existed. */
static int param_join(const strarray_t *attrs, const strarray_t *values,
                      struct param_name *pn, int first, struct buf *out)
{
    char charset[CHARSET_NAME_MAX + 1] = "";
    struct buf bytes = BUF_INITIALIZER;
    int want, i;

    for (want = 0; want < attrs->count; want++) {
        i = param_section(attrs, pn, first, want);
        if (i < 0)
            break;
        pn[i].done = 1;
        param_append_section(values->data[i], pn[i].is_encoded, want == 0,
                             charset, &bytes);
    }
    if (want)
        charset_to_utf8(charset, bytes.s, bytes.len, out);
    buf_free(&bytes);
    return want > 0;
}

void charset_decode_params(strarray_t *attrs, strarray_t *values)
{
    strarray_t out_attrs = STRARRAY_INITIALIZER;
    strarray_t out_values = STRARRAY_INITIALIZER;
    struct buf val = BUF_INITIALIZER;
    struct param_name *pn;
    int i, j, n = attrs->count < values->count ? attrs->count
                                               : values->count;

    pn = xcalloc((size_t)n + 1, sizeof(*pn));
    for (i = 0; i < n; i++)
        param_name_parse(attrs->data[i], &pn[i]);

    for (i = 0; i < n; i++) {
        int plain = -1, ext = -1;

        if (pn[i].done)
            continue;
        /* Find the first plain and the first RFC 2231 spelling. */
        for (j = i; j < n; j++) {
            if (pn[j].done || pn[j].baselen != pn[i].baselen
                || strncasecmp(attrs->data[j], attrs->data[i],
                               pn[i].baselen))
                continue;
            if (pn[j].section < 0 && plain < 0)
                plain = j;
            else if (pn[j].section >= 0 && ext < 0)
                ext = j;
        }
        buf_reset(&val);
        if (!(ext >= 0 && param_join(attrs, values, pn, ext, &val))) {
            if (plain < 0)
                continue;
            charset_decode_mimeheader(values->data[plain],
                                      strlen(values->data[plain]), &val);
        }
        strarray_appendm(&out_attrs, xstrndup(attrs->data[i],
                                              pn[i].baselen));
        strarray_append(&out_values, buf_cstring(&val));
        /* Every other spelling of this name is now merged. */
        for (j = i; j < n; j++) {
            if (pn[j].baselen == pn[i].baselen
                && !strncasecmp(attrs->data[j], attrs->data[i],
                                pn[i].baselen))
                pn[j].done = 1;
        }
    }

    strarray_fini(attrs);
    strarray_fini(values);
    *attrs = out_attrs;
    *values = out_values;
    buf_free(&val);
    free(pn);
}

/* ---------------------------------------------------------------- */
/* Search normalisation                                               */

int charset_search_normalise(const char *src, size_t len, struct buf *dst)
{
    UErrorCode err = U_ZERO_ERROR;
    const UNormalizer2 *nfkc_cf;
    UChar *u = NULL, *norm = NULL;
    int32_t ulen = 0, nlen = 0, blen = 0;
    int r = 0;

    if (len > CHARSET_ICU_MAX)
        return ERR_TOOBIG;
    if (!len)
        return 0;
    nfkc_cf = unorm2_getNFKCCasefoldInstance(&err);
    if (U_FAILURE(err))
        return ERR_INTERNAL;

    /* UTF-8 to UTF-16, invalid bytes replaced. */
    u_strFromUTF8WithSub(NULL, 0, &ulen, src, (int32_t)len, 0xfffd, NULL,
                         &err);
    err = U_ZERO_ERROR;
    u = xmalloc(((size_t)ulen + 1) * sizeof(UChar));
    u_strFromUTF8WithSub(u, ulen + 1, &ulen, src, (int32_t)len, 0xfffd,
                         NULL, &err);
    if (U_FAILURE(err)) {
        r = ERR_INTERNAL;
        goto done;
    }

    /* Normalise and fold, sizing the output first. */
    nlen = unorm2_normalize(nfkc_cf, u, ulen, NULL, 0, &err);
    err = U_ZERO_ERROR;
    norm = xmalloc(((size_t)nlen + 1) * sizeof(UChar));
    nlen = unorm2_normalize(nfkc_cf, u, ulen, norm, nlen + 1, &err);
    if (U_FAILURE(err)) {
        r = ERR_INTERNAL;
        goto done;
    }

    /* Back to UTF-8. */
    u_strToUTF8(NULL, 0, &blen, norm, nlen, &err);
    err = U_ZERO_ERROR;
    buf_ensure(dst, (size_t)blen + 1);
    u_strToUTF8(dst->s + dst->len, blen + 1, &blen, norm, nlen, &err);
    if (U_FAILURE(err)) {
        r = ERR_INTERNAL;
        goto done;
    }
    dst->len += (size_t)blen;

done:
    free(norm);
    free(u);
    return r;
}

/* ---------------------------------------------------------------- */
/* Modified UTF-7 (RFC 3501 section 5.1.3)                            */

static const char mutf7_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/* Decode one base64 shift at `p` (just after '&', not "&-").  Appends
 * UTF-8 to `dst` and returns the position after the closing '-', or
 * NULL for anything RFC 3501 forbids. */
static const char *mutf7_shift(const char *p, const char *end,
                               struct buf *dst)
{
    uint32_t acc = 0, high = 0;
    int bits = 0, units = 0, v;

    for (; p < end && *p != '-'; p++) {
        v = b64_value((unsigned char)*p, mutf7_alphabet);
        if (v < 0)
            return NULL;
        acc = ((acc << 6) | (uint32_t)v) & 0x3fffff;
        bits += 6;
        if (bits < 16)
            continue;
        bits -= 16;
        v = (int)((acc >> bits) & 0xffff);
        units++;
        if (high) {
            if (v < 0xdc00 || v > 0xdfff)
                return NULL;
            utf8_put(dst, 0x10000 + ((high - 0xd800) << 10)
                          + ((uint32_t)v - 0xdc00));
            high = 0;
        } else if (v >= 0xd800 && v <= 0xdbff) {
            high = (uint32_t)v;
        } else if ((v >= 0xdc00 && v <= 0xdfff) || v == 0
                   || (v >= 0x20 && v <= 0x7e)) {
            return NULL;
        } else {
            utf8_put(dst, (uint32_t)v);
        }
    }
    /* Leftover bits must be fewer than six and all zero. */
    if (p == end || !units || high || bits >= 6
        || (acc & ((1u << bits) - 1)))
        return NULL;
    return p + 1;
}

int charset_mutf7_to_utf8(const char *src, size_t len, struct buf *dst)
{
    const char *p = src, *end = src + len;
    size_t oldlen = dst->len;
    int after_shift = 0;

    while (p < end) {
        unsigned char c = (unsigned char)*p;

        if (c < 0x20 || c > 0x7e)
            goto bad;
        if (c != '&') {
            buf_putc(dst, (char)c);
            p++;
            after_shift = 0;
        } else if (end - p > 1 && p[1] == '-') {
            buf_putc(dst, '&');
            p += 2;
            after_shift = 0;
        } else {
            /* Two shifts in a row must have been written as one. */
            if (after_shift)
                goto bad;
            p = mutf7_shift(p + 1, end, dst);
            if (!p)
                goto bad;
            after_shift = 1;
        }
    }
    return 0;

bad:
    buf_truncate(dst, oldlen);
    return ERR_INVALID;
}

/* Push one UTF-16 unit into the shift accumulator, emitting sextets. */
static void mutf7_push(struct buf *dst, uint32_t *acc, int *bits,
                       uint32_t unit)
{
    *acc = (*acc << 16) | unit;
    *bits += 16;
    while (*bits >= 6) {
        *bits -= 6;
        buf_putc(dst, mutf7_alphabet[(*acc >> *bits) & 0x3f]);
    }
    *acc &= (1u << *bits) - 1;
}

int charset_utf8_to_mutf7(const char *src, size_t len, struct buf *dst)
{
    const unsigned char *s = (const unsigned char *)src;
    size_t oldlen = dst->len, i = 0, n;
    uint32_t cp, acc = 0;
    int bits = 0, in_shift = 0;

    while (i < len) {
        n = utf8_decode_one(s + i, len - i, &cp);
        if (!n || !cp)
            goto bad;
        i += n;
        if (cp >= 0x20 && cp <= 0x7e) {
            if (in_shift) {
                if (bits)
                    buf_putc(dst, mutf7_alphabet[(acc << (6 - bits)) & 0x3f]);
                buf_putc(dst, '-');
                acc = 0;
                bits = in_shift = 0;
            }
            if (cp == '&')
                buf_appendcstr(dst, "&-");
            else
                buf_putc(dst, (char)cp);
            continue;
        }
        if (!in_shift) {
            buf_putc(dst, '&');
            in_shift = 1;
        }
        if (cp >= 0x10000) {
            mutf7_push(dst, &acc, &bits, 0xd800 + ((cp - 0x10000) >> 10));
            mutf7_push(dst, &acc, &bits, 0xdc00 + ((cp - 0x10000) & 0x3ff));
        } else {
            mutf7_push(dst, &acc, &bits, cp);
        }
    }
    if (in_shift) {
        if (bits)
            buf_putc(dst, mutf7_alphabet[(acc << (6 - bits)) & 0x3f]);
        buf_putc(dst, '-');
    }
    return 0;

bad:
    buf_truncate(dst, oldlen);
    return ERR_INVALID;
}

void charset_cleanup(void)
{
    u_cleanup();
}

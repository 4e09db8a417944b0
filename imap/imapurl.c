/* IMAP URLs (RFC 5092) as CATENATE, URLAUTH and URLFETCH use them:
 * parsing into parts with percent-decoding, and the URLAUTH rump. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/buf.h"
#include "lib/error.h"
#include "lib/times.h"
#include "lib/util.h"
#include "lib/xmalloc.h"

#include "imap/imapurl.h"

/* The order parameters must come in (RFC 5092 section 11, RFC 4467,
 * RFC 5550); each may appear once. */
enum url_stage {
    STAGE_MAILBOX,
    STAGE_UIDVALIDITY,
    STAGE_UID,
    STAGE_SECTION,
    STAGE_PARTIAL,
    STAGE_EXPIRE,
    STAGE_URLAUTH
};

void imapurl_fini(struct imapurl *u)
{
    if (!u)
        return;
    free(u->user);
    free(u->auth);
    free(u->host);
    free(u->mailbox);
    free(u->section);
    free(u->access);
    free(u->mech);
    free(u->token);
    memset(u, 0, sizeof(*u));
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decode `len` bytes into a new string in *out_r.  Returns 0,
 * or ERR_INVALID for a bad escape, an encoded NUL or an overlong part. */
static int decode_part(const char *p, size_t len, char **out_r)
{
    struct buf b = BUF_INITIALIZER;
    size_t i;

    *out_r = NULL;
    for (i = 0; i < len; i++) {
        int c = (unsigned char)p[i];

        if (c == '%') {
            int hi = i + 2 < len ? hexval((unsigned char)p[i + 1]) : -1;
            int lo = i + 2 < len ? hexval((unsigned char)p[i + 2]) : -1;

            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                goto bad;
            c = hi * 16 + lo;
            i += 2;
        }
        buf_putc(&b, (char)c);
        if (b.len > IMAPURL_PART_MAX)
            goto bad;
    }
    *out_r = buf_release(&b);
    buf_free(&b);
    return 0;
bad:
    buf_free(&b);
    return ERR_INVALID;
}

int imapurl_access_is_valid(const char *access)
{
    if (!access)
        return 0;
    if (!strcasecmp(access, "authuser") || !strcasecmp(access, "anonymous"))
        return 1;
    if (!strncasecmp(access, "submit+", 7))
        return access[7] != '\0';
    if (!strncasecmp(access, "user+", 5))
        return access[5] != '\0';
    return 0;
}

void imapurl_encode(const char *str, int keep_slash, struct buf *out)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p;

    for (p = (const unsigned char *)str; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
            || (*p >= '0' && *p <= '9') || strchr("-._~&=", *p)
            || (keep_slash && *p == '/')) {
            buf_putc(out, (char)*p);
        }
        else {
            buf_putc(out, '%');
            buf_putc(out, hex[*p >> 4]);
            buf_putc(out, hex[*p & 0xf]);
        }
    }
}

/* Parse "[user[;AUTH=type]@]host[:port]" (`len` bytes). */
static int parse_authority(const char *p, size_t len, struct imapurl *u,
                           const char **error_r)
{
    const char *at = NULL;
    const char *auth;
    size_t i, ulen;

    for (i = 0; i < len; i++) {
        if (p[i] == '@')
            at = p + i;
    }
    if (at) {
        ulen = (size_t)(at - p);
        auth = NULL;
        for (i = 0; i + 6 <= ulen; i++) {
            if (!strncasecmp(p + i, ";AUTH=", 6)) {
                auth = p + i;
                break;
            }
        }
        if (auth) {
            size_t alen = ulen - (size_t)(auth - p) - 6;

            if (!alen || decode_part(auth + 6, alen, &u->auth)) {
                *error_r = "Bad AUTH type";
                return ERR_INVALID;
            }
            ulen = (size_t)(auth - p);
        }
        if (ulen && decode_part(p, ulen, &u->user)) {
            *error_r = "Bad user name";
            return ERR_INVALID;
        }
        len -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    if (!len || memchr(p, ';', len)) {
        *error_r = "Bad host";
        return ERR_INVALID;
    }
    u->host = xstrndup(p, len);
    return 0;
}

/* Parse a number that must fill the whole `len` bytes. */
static int parse_num(const char *p, size_t len, int allow_zero,
                     uint32_t *val_r)
{
    char tmp[16];

    if (!len || len >= sizeof(tmp))
        return ERR_INVALID;
    memcpy(tmp, p, len);
    tmp[len] = '\0';
    if (parse_uint32(tmp, NULL, val_r) || (!allow_zero && !*val_r))
        return ERR_INVALID;
    return 0;
}

/* ";PARTIAL=" value: start ["." length], length not zero (RFC 5092). */
static int parse_partial(const char *v, size_t len, struct imapurl *u)
{
    const char *dot = memchr(v, '.', len);

    u->has_partial = 1;
    if (!dot)
        return parse_num(v, len, 1, &u->partial_start);
    if (parse_num(v, (size_t)(dot - v), 1, &u->partial_start))
        return ERR_INVALID;
    return parse_num(dot + 1, len - (size_t)(dot + 1 - v), 0,
                     &u->partial_len);
}

/* ";URLAUTH=" value at offset `off` of the URL: access[:mech:token]. */
static int parse_urlauth(const char *v, size_t len, size_t off,
                         struct imapurl *u)
{
    const char *c1 = memchr(v, ':', len);
    const char *c2;
    size_t i;

    if (!c1) {
        u->rump_len = off + len;
        return decode_part(v, len, &u->access);
    }
    u->rump_len = off + (size_t)(c1 - v);
    if (decode_part(v, (size_t)(c1 - v), &u->access))
        return ERR_INVALID;
    c2 = memchr(c1 + 1, ':', len - (size_t)(c1 + 1 - v));
    if (!c2 || c2 == c1 + 1)
        return ERR_INVALID;
    u->mech = xstrndup(c1 + 1, (size_t)(c2 - c1 - 1));
    len -= (size_t)(c2 + 1 - v);
    if (len < 32)
        return ERR_INVALID;
    for (i = 0; i < len; i++) {
        if (hexval((unsigned char)c2[1 + i]) < 0)
            return ERR_INVALID;
    }
    u->token = xstrndup(c2 + 1, len);
    return 0;
}

/* Handle one ";KEY=value" parameter (`url` is the whole URL, for the
 * rump offset). */
static int parse_param(const char *url, const char *key, size_t klen,
                       const char *v, size_t vlen, enum url_stage *stage,
                       struct imapurl *u, const char **error_r)
{
    static const struct {
        const char *name;
        enum url_stage stage;
    } keys[] = {
        { "UIDVALIDITY", STAGE_UIDVALIDITY }, { "UID", STAGE_UID },
        { "SECTION", STAGE_SECTION }, { "PARTIAL", STAGE_PARTIAL },
        { "EXPIRE", STAGE_EXPIRE }, { "URLAUTH", STAGE_URLAUTH },
        { NULL, STAGE_MAILBOX }
    };
    char *tmp = NULL;
    int i, r = ERR_INVALID;

    for (i = 0; keys[i].name; i++) {
        if (strlen(keys[i].name) == klen && !strncasecmp(key, keys[i].name,
                                                         klen))
            break;
    }
    if (!keys[i].name || keys[i].stage <= *stage) {
        *error_r = keys[i].name ? "URL parameter out of order"
                                : "Unknown URL parameter";
        return ERR_INVALID;
    }
    *stage = keys[i].stage;
    *error_r = "Bad URL parameter value";
    switch (keys[i].stage) {
    case STAGE_UIDVALIDITY:
        return parse_num(v, vlen, 0, &u->uidvalidity);
    case STAGE_UID:
        return parse_num(v, vlen, 0, &u->uid);
    case STAGE_SECTION:
        return vlen ? decode_part(v, vlen, &u->section) : ERR_INVALID;
    case STAGE_PARTIAL:
        return parse_partial(v, vlen, u);
    case STAGE_EXPIRE:
        if (decode_part(v, vlen, &tmp) == 0
            && times_parse_iso8601(tmp, &u->expire, NULL) == 0) {
            u->has_expire = 1;
            r = 0;
        }
        free(tmp);
        return r;
    case STAGE_URLAUTH:
        r = parse_urlauth(v, vlen, (size_t)(v - url), u);
        if (!r && !imapurl_access_is_valid(u->access))
            r = ERR_INVALID;
        return r;
    case STAGE_MAILBOX:
        break;
    }
    return ERR_INVALID;
}

/* Parse the path from `p` (at "/" or ";") to the end. */
static int parse_path(const char *url, const char *p, const char *end,
                      struct imapurl *u, const char **error_r)
{
    enum url_stage stage = STAGE_MAILBOX;
    const char *semi;
    size_t mlen;
    int r;

    if (*p == '/')
        p++;
    semi = memchr(p, ';', (size_t)(end - p));
    if (!semi)
        semi = end;
    mlen = (size_t)(semi - p);
    if (mlen && p[mlen - 1] == '/' && semi != end)
        mlen--;
    if (mlen && decode_part(p, mlen, &u->mailbox)) {
        *error_r = "Bad mailbox name";
        return ERR_INVALID;
    }
    p = semi;
    while (p < end) {
        const char *key = p + 1;
        const char *eq, *v, *next;
        size_t vlen;

        next = memchr(key, ';', (size_t)(end - key));
        if (!next)
            next = end;
        eq = memchr(key, '=', (size_t)(next - key));
        if (!eq) {
            *error_r = "Expected URL parameter";
            return ERR_INVALID;
        }
        v = eq + 1;
        vlen = (size_t)(next - v);
        /* "/;UID=" style separators belong to the next parameter. */
        if (next != end && vlen && v[vlen - 1] == '/')
            vlen--;
        r = parse_param(url, key, (size_t)(eq - key), v, vlen, &stage, u,
                        error_r);
        if (r)
            return r;
        p = next;
    }
    return 0;
}

int imapurl_parse(const char *url, size_t len, struct imapurl *u,
                  const char **error_r)
{
    const char *dummy;
    const char *end = url + len;
    const char *p = url;
    size_t i;
    int r;

    if (!error_r)
        error_r = &dummy;
    memset(u, 0, sizeof(*u));
    *error_r = "Bad URL";
    if (!url || !len || len > IMAPURL_MAX) {
        *error_r = len ? "URL too long" : "Empty URL";
        return ERR_INVALID;
    }
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)url[i];

        if (c <= ' ' || c >= 0x7f || c == '?' || c == '#' || c == '"'
            || c == '\\') {
            *error_r = c == '?' ? "Search URLs are not supported"
                                : "Bad character in URL";
            return ERR_INVALID;
        }
    }
    if (len >= 7 && !strncasecmp(url, "imap://", 7)) {
        const char *slash = memchr(url + 7, '/', len - 7);

        if (!slash) {
            *error_r = "URL has no message path";
            return ERR_INVALID;
        }
        r = parse_authority(url + 7, (size_t)(slash - url - 7), u, error_r);
        if (r)
            return r;
        p = slash;
    }
    else if (*p != '/' && *p != ';') {
        *error_r = "Not an IMAP URL";
        return ERR_INVALID;
    }
    r = parse_path(url, p, end, u, error_r);
    if (r)
        return r;

    /* RFC 4467: an authorized URL names its owner, server and message;
     * EXPIRE exists only inside a URLAUTH rump. */
    if (u->access && (!u->host || !u->user || !u->mailbox || !u->uid)) {
        *error_r = "URLAUTH URL needs user, server, mailbox and UID";
        return ERR_INVALID;
    }
    if (u->has_expire && !u->access) {
        *error_r = "EXPIRE without URLAUTH";
        return ERR_INVALID;
    }
    if ((u->section || u->has_partial || u->uidvalidity) && !u->uid) {
        *error_r = "URL has no UID";
        return ERR_INVALID;
    }
    return 0;
}

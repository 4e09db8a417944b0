/* Sieve matching: comparators (RFC 4790: i;octet, i;ascii-casemap,
 * i;unicode-casemap, i;ascii-numeric), match types (:is, :contains,
 * :matches, :regex, :value) and address parsing for address tests. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <regex.h>
#include <stdint.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/charset.h"
#include "lib/strarray.h"
#include "lib/util.h"
#include "lib/xmalloc.h"

#include "sieve/sieve.h"
#include "sieve/sieve_int.h"

int sieve_cmp_lookup(const char *name)
{
    if (!strcmp(name, "i;octet"))
        return CMP_OCTET;
    if (!strcmp(name, "i;ascii-casemap"))
        return CMP_ASCII_CASEMAP;
    if (!strcmp(name, "i;unicode-casemap"))
        return CMP_UNICODE_CASEMAP;
    if (!strcmp(name, "i;ascii-numeric"))
        return CMP_NUMERIC;
    return -1;
}

int sieve_rel_lookup(const char *name)
{
    static const char *const names[] = { "gt", "ge", "lt", "le", "eq",
                                         "ne" };
    size_t i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (!util_strcasecmp_ascii(names[i], name))
            return (int)i;
    }
    return -1;
}

/* ASCII lower case. */
static int lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

/* i;ascii-numeric: the leading digits as a number; no digits is
 * positive infinity (RFC 4790 9.1). */
static int numeric_cmp(const char *a, const char *b)
{
    int ainf = !(*a >= '0' && *a <= '9');
    int binf = !(*b >= '0' && *b <= '9');
    size_t la, lb;
    int c;

    if (ainf || binf)
        return ainf - binf;
    while (*a == '0' && a[1] >= '0' && a[1] <= '9')
        a++;
    while (*b == '0' && b[1] >= '0' && b[1] <= '9')
        b++;
    for (la = 0; a[la] >= '0' && a[la] <= '9'; la++)
        ;
    for (lb = 0; b[lb] >= '0' && b[lb] <= '9'; lb++)
        ;
    if (la != lb)
        return la < lb ? -1 : 1;
    c = strncmp(a, b, la);
    return c < 0 ? -1 : c > 0;
}

int sieve_cmp_order(enum sieve_cmp cmp, const char *a, const char *b)
{
    int c;

    switch (cmp) {
    case CMP_NUMERIC:
        return numeric_cmp(a, b);
    case CMP_ASCII_CASEMAP:
        for (; *a && lower((unsigned char)*a) == lower((unsigned char)*b);
             a++, b++)
            ;
        return lower((unsigned char)*a) - lower((unsigned char)*b);
    case CMP_UNICODE_CASEMAP: {
        struct buf na = BUF_INITIALIZER, nb = BUF_INITIALIZER;

        charset_search_normalise(a, strlen(a), &na);
        charset_search_normalise(b, strlen(b), &nb);
        c = strcmp(buf_cstring(&na), buf_cstring(&nb));
        buf_free(&na);
        buf_free(&nb);
        return c;
    }
    default:
        c = strcmp(a, b);
        return c;
    }
}

/* Are two bytes equal under the comparator (ASCII folding only)? */
static int chars_eq(enum sieve_cmp cmp, int a, int b)
{
    if (cmp == CMP_ASCII_CASEMAP)
        return lower(a) == lower(b);
    return a == b;
}

/* Length of the UTF-8 sequence at `s` (1 for invalid bytes). */
static size_t utf8_len(const char *s)
{
    unsigned char c = (unsigned char)*s;
    size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    size_t i;

    for (i = 1; i < n; i++) {
        if (((unsigned char)s[i] & 0xc0) != 0x80)
            return i;
    }
    return n;
}

#define MAX_GROUPS 10

/* Glob match (RFC 5228 2.7.1): '*' any run, '?' one character, '\\'
 * quotes the next one.  Backtracking only ever lengthens the last '*'
 * seen, so the work is bounded by |pattern| * |value|; earlier
 * wildcards match as little as possible (RFC 5229 3.2).
 * XXX: |pattern| * |value| is still large for a 64K pattern against a
 * multi-megabyte body; capping the body text the host hands to :matches
 * (or a two-way search per star segment) would bound it. */
static int glob_match(enum sieve_cmp cmp, const char *pat, const char *str,
                      strarray_t *groups)
{
    size_t p = 0, s = 0, star_p = SIZE_MAX, star_s = 0;
    size_t cs[MAX_GROUPS], cl[MAX_GROUPS];
    int nwild = 0, star_wild = 0, i;

    while (str[s]) {
        if (pat[p] == '*') {
            star_p = ++p;
            star_s = s;
            star_wild = nwild;
            if (nwild < MAX_GROUPS) {
                cs[nwild] = s;
                cl[nwild] = 0;
            }
            nwild++;
            continue;
        }
        if (pat[p] == '?') {
            size_t n = cmp == CMP_OCTET ? 1 : utf8_len(str + s);
            if (nwild < MAX_GROUPS) {
                cs[nwild] = s;
                cl[nwild] = n;
            }
            nwild++;
            s += n;
            p++;
            continue;
        }
        if (pat[p]) {
            size_t q = (pat[p] == '\\' && pat[p + 1]) ? p + 1 : p;
            if (chars_eq(cmp, (unsigned char)pat[q], (unsigned char)str[s])) {
                p = q + 1;
                s++;
                continue;
            }
        }
        if (star_p == SIZE_MAX)
            return 0;
        star_s++;
        s = star_s;
        p = star_p;
        nwild = star_wild + 1;
        if (star_wild < MAX_GROUPS)
            cl[star_wild] = star_s - cs[star_wild];
    }
    while (pat[p] == '*') {
        if (nwild < MAX_GROUPS) {
            cs[nwild] = s;
            cl[nwild] = 0;
        }
        nwild++;
        p++;
    }
    if (pat[p])
        return 0;

    if (groups) {
        strarray_fini(groups);
        strarray_append(groups, str);
        for (i = 0; i < nwild && i < MAX_GROUPS - 1; i++)
            strarray_appendm(groups, xstrndup(str + cs[i], cl[i]));
    }
    return 1;
}

/* POSIX extended regex match; casemap comparators ignore case. */
static int regex_match(enum sieve_cmp cmp, const char *re, const char *str,
                       strarray_t *groups)
{
    regex_t rx;
    regmatch_t m[MAX_GROUPS];
    int flags = REG_EXTENDED, r, i;

    if (cmp == CMP_ASCII_CASEMAP || cmp == CMP_UNICODE_CASEMAP)
        flags |= REG_ICASE;
    if (!groups)
        flags |= REG_NOSUB;
    if (regcomp(&rx, re, flags) != 0)
        return -1;
    r = regexec(&rx, str, groups ? MAX_GROUPS : 0, groups ? m : NULL, 0);
    if (r == 0 && groups) {
        strarray_fini(groups);
        for (i = 0; i < MAX_GROUPS; i++) {
            if (m[i].rm_so < 0)
                strarray_append(groups, "");
            else
                strarray_appendm(groups,
                                 xstrndup(str + m[i].rm_so,
                                          (size_t)(m[i].rm_eo - m[i].rm_so)));
        }
    }
    regfree(&rx);
    return r == 0;
}

int sieve_regex_valid(const char *re, char *why, size_t whylen)
{
    regex_t rx;
    int r = regcomp(&rx, re, REG_EXTENDED | REG_NOSUB);

    if (r != 0) {
        regerror(r, &rx, why, whylen);
        return 0;
    }
    regfree(&rx);
    return 1;
}

/* Substring search, ASCII case-insensitive for i;ascii-casemap. */
static int contains(enum sieve_cmp cmp, const char *hay, const char *needle)
{
    size_t n = strlen(needle);

    if (cmp != CMP_ASCII_CASEMAP)
        return strstr(hay, needle) != NULL;
    for (; *hay; hay++) {
        if (!util_strncasecmp_ascii(hay, needle, n))
            return 1;
    }
    return n == 0;
}

/* Does comparison result `c` satisfy the relational operator? */
static int rel_holds(enum sieve_rel rel, int c)
{
    switch (rel) {
    case REL_GT: return c > 0;
    case REL_GE: return c >= 0;
    case REL_LT: return c < 0;
    case REL_LE: return c <= 0;
    case REL_EQ: return c == 0;
    default: return c != 0;
    }
}

int sieve_match(enum sieve_match mt, enum sieve_cmp cmp, enum sieve_rel rel,
                const char *value, const char *key, strarray_t *groups)
{
    struct buf nv = BUF_INITIALIZER, nk = BUF_INITIALIZER;
    int r;

    if (mt == MATCH_VALUE || mt == MATCH_COUNT)
        return rel_holds(rel, sieve_cmp_order(cmp, value, key));
    if (mt == MATCH_IS)
        return sieve_cmp_order(cmp, value, key) == 0;
    if (cmp == CMP_NUMERIC && mt != MATCH_REGEX)
        return 0;               /* numeric has no substring operation */
    if (cmp == CMP_UNICODE_CASEMAP && mt != MATCH_REGEX) {
        charset_search_normalise(value, strlen(value), &nv);
        charset_search_normalise(key, strlen(key), &nk);
        value = buf_cstring(&nv);
        key = buf_cstring(&nk);
    }
    if (mt == MATCH_CONTAINS)
        r = contains(cmp, value, key);
    else if (mt == MATCH_MATCHES)
        r = glob_match(cmp, key, value, groups);
    else
        r = regex_match(cmp, key, value, groups);
    buf_free(&nv);
    buf_free(&nk);
    return r;
}

/* --- addresses --- */

/* Append one address (the text of a list member) to `out`: the part in
 * angle brackets without a route, else the text without comments. */
static void add_address(const char *s, size_t len, strarray_t *out)
{
    struct buf b = BUF_INITIALIZER;
    const char *lt = memchr(s, '<', len);
    size_t i;
    int depth = 0, quoted = 0;

    if (lt) {
        const char *gt = memchr(lt, '>', len - (size_t)(lt - s));
        const char *colon;

        if (!gt)
            gt = s + len;
        colon = memchr(lt, ':', (size_t)(gt - lt));
        if (lt[1] == '@' && colon)
            lt = colon;
        buf_appendmap(&b, lt + 1, (size_t)(gt - lt - 1));
    } else {
        for (i = 0; i < len; i++) {
            char c = s[i];
            if (quoted) {
                if (c == '\\' && i + 1 < len)
                    buf_putc(&b, s[++i]);
                else if (c == '"')
                    quoted = 0;
                else
                    buf_putc(&b, c);
            } else if (c == '(') {
                depth++;
            } else if (c == ')' && depth) {
                depth--;
            } else if (!depth) {
                if (c == '"')
                    quoted = 1;
                else if (c != ' ' && c != '\t' && c != '\r' && c != '\n')
                    buf_putc(&b, c);
            }
        }
    }
    buf_trim(&b);
    if (b.len)
        strarray_append(out, buf_cstring(&b));
    buf_free(&b);
}

void sieve_parse_addresses(const char *value, strarray_t *out)
{
    const char *start = value, *p;
    int quoted = 0, depth = 0, angle = 0;

    for (p = value; ; p++) {
        char c = *p;

        if (c && quoted) {
            if (c == '\\' && p[1])
                p++;
            else if (c == '"')
                quoted = 0;
            continue;
        }
        if (c == '"' && !depth) {
            quoted = 1;
        } else if (c == '(') {
            depth++;
        } else if (c == ')' && depth) {
            depth--;
        } else if (depth) {
            if (!c)
                break;
        } else if (c == '<') {
            angle = 1;
        } else if (c == '>') {
            angle = 0;
        } else if (c == ':' && !angle) {
            start = p + 1;      /* group display name */
        } else if (!c || ((c == ',' || c == ';') && !angle)) {
            if (out->count >= SIEVE_MAX_LIST)
                return;
            add_address(start, (size_t)(p - start), out);
            start = p + 1;
        }
        if (!c)
            break;
    }
}

int sieve_address_part(const char *addr, enum sieve_addrpart part,
                       struct buf *out)
{
    const char *at = strrchr(addr, '@');
    size_t llen = at ? (size_t)(at - addr) : strlen(addr);
    const char *plus;

    buf_reset(out);
    switch (part) {
    case ADDR_ALL:
        buf_appendcstr(out, addr);
        break;
    case ADDR_LOCALPART:
        buf_appendmap(out, addr, llen);
        break;
    case ADDR_DOMAIN:
        buf_appendcstr(out, at ? at + 1 : "");
        break;
    case ADDR_USER:
    case ADDR_DETAIL:
        plus = memchr(addr, '+', llen);
        if (part == ADDR_USER) {
            buf_appendmap(out, addr, plus ? (size_t)(plus - addr) : llen);
        } else {
            if (!plus)
                return -1;
            buf_appendmap(out, plus + 1, llen - (size_t)(plus + 1 - addr));
        }
        break;
    }
    buf_cstring(out);
    return 0;
}

/* Sieve interpreter, test half: evaluates test nodes of the bytecode
 * against the message through the host callbacks. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/buf.h"
#include "lib/charset.h"
#include "lib/strarray.h"
#include "lib/times.h"
#include "lib/util.h"
#include "lib/xmalloc.h"

#include "sieve/sieve.h"
#include "sieve/sieve_int.h"
#include "sieve/sieve_interp.h"

void sieve_header_values(struct sieve_interp *in, const char *name,
                         strarray_t *out)
{
    strarray_t raw = STRARRAY_INITIALIZER;
    struct buf b = BUF_INITIALIZER;
    int i;

    sieve_raw_headers(in, name, &raw);
    for (i = 0; i < raw.count && i < SIEVE_MAX_LIST; i++) {
        buf_reset(&b);
        charset_decode_mimeheader(raw.data[i], strlen(raw.data[i]), &b);
        buf_trim(&b);
        strarray_append(out, buf_cstring(&b));
    }
    strarray_fini(&raw);
    buf_free(&b);
}

/* Keep only occurrence :index (from the end with :last) of `v`. */
static void apply_index(const struct sieve_inode *n, strarray_t *v)
{
    uint64_t idx;
    char *keep = NULL;

    if (!n->has[TAG_INDEX])
        return;
    idx = n->tag[TAG_INDEX].num;
    if (idx >= 1 && idx <= (uint64_t)v->count) {
        int at = n->has[TAG_LAST] ? v->count - (int)idx : (int)idx - 1;
        keep = xstrdup(v->data[at]);
    }
    strarray_fini(v);
    if (keep)
        strarray_appendm(v, keep);
}

/* Match type, comparator and relational operator of a test node. */
static void match_params(struct sieve_interp *in, const struct sieve_inode *n,
                         enum sieve_match *mt, enum sieve_cmp *cmp,
                         enum sieve_rel *rel)
{
    struct buf b = BUF_INITIALIZER;

    *mt = MATCH_IS;
    *rel = REL_EQ;
    *cmp = CMP_ASCII_CASEMAP;
    if (n->has[TAG_CONTAINS])
        *mt = MATCH_CONTAINS;
    else if (n->has[TAG_MATCHES])
        *mt = MATCH_MATCHES;
    else if (n->has[TAG_REGEX])
        *mt = MATCH_REGEX;
    else if (n->has[TAG_VALUE] || n->has[TAG_COUNT]) {
        int t = n->has[TAG_VALUE] ? TAG_VALUE : TAG_COUNT;
        int r = sieve_rel_lookup(sieve_str(in, &n->tag[t], &b));
        *mt = t == TAG_VALUE ? MATCH_VALUE : MATCH_COUNT;
        *rel = r < 0 ? REL_EQ : (enum sieve_rel)r;
    }
    if (n->has[TAG_COMPARATOR]) {
        int c = sieve_cmp_lookup(sieve_str(in, &n->tag[TAG_COMPARATOR], &b));
        *cmp = c < 0 ? CMP_ASCII_CASEMAP : (enum sieve_cmp)c;
    }
    buf_free(&b);
}

int sieve_match_node(struct sieve_interp *in, const struct sieve_inode *n,
                     const strarray_t *values, const strarray_t *keys)
{
    enum sieve_match mt;
    enum sieve_cmp cmp;
    enum sieve_rel rel;
    strarray_t groups = STRARRAY_INITIALIZER;
    int want_groups = (in->frame->exts & EXT_BIT(EXT_VARIABLES)) != 0;
    int i, j, r = 0;

    match_params(in, n, &mt, &cmp, &rel);
    if (n->has[TAG_LIST]) {
        for (i = 0; i < values->count && !r; i++) {
            for (j = 0; j < keys->count && !r; j++) {
                r = in->cb->list_contains &&
                    in->cb->list_contains(in->rock, keys->data[j],
                                          values->data[i]) > 0;
            }
        }
        return r;
    }
    if (mt == MATCH_COUNT) {
        char count[32];
        snprintf(count, sizeof(count), "%d", values->count);
        for (j = 0; j < keys->count && !r; j++)
            r = sieve_match(mt, cmp, rel, count, keys->data[j], NULL);
        return r;
    }
    for (i = 0; i < values->count && r == 0; i++) {
        for (j = 0; j < keys->count && r == 0; j++) {
            r = sieve_match(mt, cmp, rel, values->data[i], keys->data[j],
                            want_groups ? &groups : NULL);
            if (r < 0)
                sieve_fail(in, "bad regex \"%s\"", keys->data[j]);
        }
    }
    if (r > 0 && want_groups && (mt == MATCH_MATCHES || mt == MATCH_REGEX)) {
        strarray_fini(&in->groups);
        in->groups = groups;
    } else {
        strarray_fini(&groups);
    }
    return r;
}

static const char *addr_header_ok[] = {
    "from", "sender", "to", "cc", "bcc", "reply-to", "resent-from",
    "resent-sender", "resent-to", "resent-cc", "resent-bcc",
    "return-path", "delivered-to", "disposition-notification-to",
    "envelope-to", "x-original-to", NULL
};

/* The address part a node asks for. */
static enum sieve_addrpart addr_part(const struct sieve_inode *n)
{
    if (n->has[TAG_LOCALPART]) return ADDR_LOCALPART;
    if (n->has[TAG_DOMAIN]) return ADDR_DOMAIN;
    if (n->has[TAG_USER]) return ADDR_USER;
    if (n->has[TAG_DETAIL]) return ADDR_DETAIL;
    return ADDR_ALL;
}

/* The asked-for part of each address, into `out`. */
static void address_values(const struct sieve_inode *n,
                           const strarray_t *addrs, strarray_t *out)
{
    struct buf b = BUF_INITIALIZER;
    int i;

    for (i = 0; i < addrs->count; i++) {
        if (sieve_address_part(addrs->data[i], addr_part(n), &b) == 0)
            strarray_append(out, buf_cstring(&b));
    }
    buf_free(&b);
}

/* address [part] [match] headers keys */
static int test_address(struct sieve_interp *in, const struct sieve_inode *n)
{
    strarray_t names = STRARRAY_INITIALIZER, keys = STRARRAY_INITIALIZER;
    strarray_t addrs = STRARRAY_INITIALIZER, vals = STRARRAY_INITIALIZER;
    int i, j, r;

    sieve_list(in, &n->pos[0], &names);
    sieve_list(in, &n->pos[1], &keys);
    for (i = 0; i < names.count; i++) {
        strarray_t hv = STRARRAY_INITIALIZER;
        int ok = 0;

        for (j = 0; addr_header_ok[j]; j++)
            ok |= !util_strcasecmp_ascii(addr_header_ok[j], names.data[i]);
        if (!ok)
            continue;           /* RFC 5228 5.1: only address headers */
        sieve_header_values(in, names.data[i], &hv);
        apply_index(n, &hv);
        for (j = 0; j < hv.count; j++)
            sieve_parse_addresses(hv.data[j], &addrs);
        strarray_fini(&hv);
    }
    address_values(n, &addrs, &vals);
    r = sieve_match_node(in, n, &vals, &keys);
    strarray_fini(&names);
    strarray_fini(&keys);
    strarray_fini(&addrs);
    strarray_fini(&vals);
    return r;
}

/* envelope [part] [match] parts keys */
static int test_envelope(struct sieve_interp *in, const struct sieve_inode *n)
{
    strarray_t parts = STRARRAY_INITIALIZER, keys = STRARRAY_INITIALIZER;
    strarray_t addrs = STRARRAY_INITIALIZER, vals = STRARRAY_INITIALIZER;
    struct buf b = BUF_INITIALIZER;
    int i, j, r;

    sieve_list(in, &n->pos[0], &parts);
    sieve_list(in, &n->pos[1], &keys);
    for (i = 0; i < parts.count; i++) {
        strarray_t raw = STRARRAY_INITIALIZER;

        buf_setcstr(&b, parts.data[i]);
        buf_tolower(&b);
        if (in->cb->get_envelope)
            in->cb->get_envelope(in->rock, buf_cstring(&b), &raw);
        for (j = 0; j < raw.count; j++) {
            /* the null reverse path matches "" with :all only */
            if (!*raw.data[j] && addr_part(n) == ADDR_ALL)
                strarray_append(&vals, "");
            else
                sieve_parse_addresses(raw.data[j], &addrs);
        }
        strarray_fini(&raw);
    }
    address_values(n, &addrs, &vals);
    r = sieve_match_node(in, n, &vals, &keys);
    strarray_fini(&parts);
    strarray_fini(&keys);
    strarray_fini(&addrs);
    strarray_fini(&vals);
    buf_free(&b);
    return r;
}

/* header [match] [:index] names keys */
static int test_header(struct sieve_interp *in, const struct sieve_inode *n)
{
    strarray_t names = STRARRAY_INITIALIZER, keys = STRARRAY_INITIALIZER;
    strarray_t vals = STRARRAY_INITIALIZER;
    int i, r;

    sieve_list(in, &n->pos[0], &names);
    sieve_list(in, &n->pos[1], &keys);
    for (i = 0; i < names.count; i++) {
        strarray_t hv = STRARRAY_INITIALIZER;
        int j;

        sieve_header_values(in, names.data[i], &hv);
        apply_index(n, &hv);
        for (j = 0; j < hv.count; j++)
            strarray_append(&vals, hv.data[j]);
        strarray_fini(&hv);
    }
    r = sieve_match_node(in, n, &vals, &keys);
    strarray_fini(&names);
    strarray_fini(&keys);
    strarray_fini(&vals);
    return r;
}

/* exists names: every header is present. */
static int test_exists(struct sieve_interp *in, const struct sieve_inode *n)
{
    strarray_t names = STRARRAY_INITIALIZER;
    int i, r = 1;

    sieve_list(in, &n->pos[0], &names);
    for (i = 0; i < names.count && r; i++) {
        strarray_t raw = STRARRAY_INITIALIZER;
        sieve_raw_headers(in, names.data[i], &raw);
        r = raw.count > 0;
        strarray_fini(&raw);
    }
    strarray_fini(&names);
    return r;
}

/* body [transform] [match] keys */
static int test_body(struct sieve_interp *in, const struct sieve_inode *n)
{
    strarray_t types = STRARRAY_INITIALIZER, keys = STRARRAY_INITIALIZER;
    strarray_t parts = STRARRAY_INITIALIZER;
    enum sieve_body_transform tr = SIEVE_BODY_TEXT;
    int r;

    if (n->has[TAG_RAW]) {
        tr = SIEVE_BODY_RAW;
    } else if (n->has[TAG_CONTENT]) {
        tr = SIEVE_BODY_CONTENT;
        sieve_list(in, &n->tag[TAG_CONTENT], &types);
    } else {
        strarray_append(&types, "text");
    }
    sieve_list(in, &n->pos[0], &keys);
    if (in->cb->get_body)
        in->cb->get_body(in->rock, tr, &types, &parts);
    r = sieve_match_node(in, n, &parts, &keys);
    strarray_fini(&types);
    strarray_fini(&keys);
    strarray_fini(&parts);
    return r;
}

/* string (RFC 5229) and hasflag (RFC 5232). */
static int test_string(struct sieve_interp *in, const struct sieve_inode *n,
                       int is_hasflag)
{
    strarray_t src = STRARRAY_INITIALIZER, keys = STRARRAY_INITIALIZER;
    strarray_t vals = STRARRAY_INITIALIZER;
    int i, r;

    if (is_hasflag) {
        if (n->npos == 2) {
            strarray_t names = STRARRAY_INITIALIZER;
            sieve_list(in, &n->pos[0], &names);
            for (i = 0; i < names.count; i++) {
                const char *v = sieve_var_get(in, names.data[i]);
                if (v)
                    strarray_append(&src, v);
            }
            strarray_fini(&names);
            sieve_flags_add(&vals, &src);
        } else {
            sieve_flags_add(&vals, &in->flags);
        }
    } else {
        sieve_list(in, &n->pos[0], &src);
        /* :count counts the non-empty strings (RFC 5229 5) */
        for (i = 0; i < src.count; i++) {
            if (*src.data[i] || !n->has[TAG_COUNT])
                strarray_append(&vals, src.data[i]);
        }
    }
    sieve_list(in, &n->pos[n->npos - 1], &keys);
    r = sieve_match_node(in, n, &vals, &keys);
    strarray_fini(&src);
    strarray_fini(&keys);
    strarray_fini(&vals);
    return r;
}

/* "+hhmm"/"-hhmm" to seconds east; -1 when malformed. */
static int parse_zone(const char *z, int *off_r)
{
    int h, m;

    if (strlen(z) != 5 || (z[0] != '+' && z[0] != '-') ||
        strspn(z + 1, "0123456789") != 4)
        return -1;
    h = (z[1] - '0') * 10 + (z[2] - '0');
    m = (z[3] - '0') * 10 + (z[4] - '0');
    if (h > 23 || m > 59)
        return -1;
    *off_r = (h * 3600 + m * 60) * (z[0] == '-' ? -1 : 1);
    return 0;
}

/* The date-part `part` (RFC 5260 4.2) of instant `t` at zone `off`. */
static int date_part(const char *part, time_t t, int off, struct buf *out)
{
    time_t local = t + off;
    struct tm tm;
    char tmp[64];
    int az = off < 0 ? -off : off;

    if (!gmtime_r(&local, &tm))
        return -1;
    buf_reset(out);
    if (!util_strcasecmp_ascii(part, "year"))
        buf_printf(out, "%04d", tm.tm_year + 1900);
    else if (!util_strcasecmp_ascii(part, "month"))
        buf_printf(out, "%02d", tm.tm_mon + 1);
    else if (!util_strcasecmp_ascii(part, "day"))
        buf_printf(out, "%02d", tm.tm_mday);
    else if (!util_strcasecmp_ascii(part, "date"))
        buf_printf(out, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                   tm.tm_mday);
    else if (!util_strcasecmp_ascii(part, "julian"))
        buf_printf(out, "%lld",
                   (long long)((local >= 0 ? local : local - 86399) / 86400)
                   + 40587);
    else if (!util_strcasecmp_ascii(part, "hour"))
        buf_printf(out, "%02d", tm.tm_hour);
    else if (!util_strcasecmp_ascii(part, "minute"))
        buf_printf(out, "%02d", tm.tm_min);
    else if (!util_strcasecmp_ascii(part, "second"))
        buf_printf(out, "%02d", tm.tm_sec);
    else if (!util_strcasecmp_ascii(part, "time"))
        buf_printf(out, "%02d:%02d:%02d", tm.tm_hour, tm.tm_min, tm.tm_sec);
    else if (!util_strcasecmp_ascii(part, "iso8601"))
        buf_printf(out, "%04d-%02d-%02dT%02d:%02d:%02d%c%02d:%02d",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                   tm.tm_min, tm.tm_sec, off < 0 ? '-' : '+', az / 3600,
                   (az % 3600) / 60);
    else if (!util_strcasecmp_ascii(part, "std11")) {
        if (times_format_rfc5322(tmp, sizeof(tmp), t, off))
            return -1;
        buf_appendcstr(out, tmp);
    } else if (!util_strcasecmp_ascii(part, "zone"))
        buf_printf(out, "%c%02d%02d", off < 0 ? '-' : '+', az / 3600,
                   (az % 3600) / 60);
    else if (!util_strcasecmp_ascii(part, "weekday"))
        buf_printf(out, "%d", tm.tm_wday);
    else
        return -1;
    return 0;
}

/* date and currentdate (RFC 5260). */
static int test_date(struct sieve_interp *in, const struct sieve_inode *n)
{
    strarray_t vals = STRARRAY_INITIALIZER, keys = STRARRAY_INITIALIZER;
    struct buf part = BUF_INITIALIZER, b = BUF_INITIALIZER;
    time_t t = time(NULL);
    int off = times_local_offset(t), hdr_off = off, r = 0, i;
    int is_current = n->op == OP_T_CURRENTDATE;
    int pi = is_current ? 0 : 1;

    if (!is_current) {
        strarray_t hv = STRARRAY_INITIALIZER;

        sieve_header_values(in, sieve_str(in, &n->pos[0], &b), &hv);
        apply_index(n, &hv);
        if (!hv.count ||
            times_parse_rfc5322(hv.data[0], &t, &hdr_off) != 0) {
            strarray_fini(&hv);
            goto done;          /* no usable date: the test is false */
        }
        strarray_fini(&hv);
        off = times_local_offset(t);
        if (n->has[TAG_ORIGINALZONE])
            off = hdr_off;
    }
    if (n->has[TAG_ZONE] &&
        parse_zone(sieve_str(in, &n->tag[TAG_ZONE], &b), &off) < 0)
        goto done;
    sieve_str(in, &n->pos[pi], &part);
    if (date_part(buf_cstring(&part), t, off, &b) < 0)
        goto done;
    strarray_append(&vals, buf_cstring(&b));
    sieve_list(in, &n->pos[pi + 1], &keys);
    r = sieve_match_node(in, n, &vals, &keys);
    (void)i;

done:
    strarray_fini(&vals);
    strarray_fini(&keys);
    buf_free(&part);
    buf_free(&b);
    return r;
}

/* environment name keys (RFC 5183), with built-in name/version/phase. */
static int test_environment(struct sieve_interp *in,
                            const struct sieve_inode *n)
{
    strarray_t vals = STRARRAY_INITIALIZER, keys = STRARRAY_INITIALIZER;
    struct buf name = BUF_INITIALIZER, v = BUF_INITIALIZER;
    int r = 0, found;

    sieve_str(in, &n->pos[0], &name);
    buf_tolower(&name);
    found = in->cb->get_environment &&
            in->cb->get_environment(in->rock, buf_cstring(&name), &v) == 0;
    if (!found) {
        if (!strcmp(buf_cstring(&name), "name")) {
            buf_setcstr(&v, "Columba");
            found = 1;
        } else if (!strcmp(buf_cstring(&name), "version")) {
            buf_setcstr(&v, PACKAGE_VERSION);
            found = 1;
        } else if (!strcmp(buf_cstring(&name), "phase")) {
            buf_setcstr(&v, "during");
            found = 1;
        }
    }
    if (found) {
        strarray_append(&vals, buf_cstring(&v));
        sieve_list(in, &n->pos[1], &keys);
        r = sieve_match_node(in, n, &vals, &keys);
    }
    strarray_fini(&vals);
    strarray_fini(&keys);
    buf_free(&name);
    buf_free(&v);
    return r;
}

/* metadata and servermetadata (RFC 5490). */
static int test_metadata(struct sieve_interp *in, const struct sieve_inode *n)
{
    strarray_t vals = STRARRAY_INITIALIZER, keys = STRARRAY_INITIALIZER;
    struct buf mbox = BUF_INITIALIZER, key = BUF_INITIALIZER;
    struct buf v = BUF_INITIALIZER;
    int is_server = n->op == OP_T_SERVERMETADATA, r = 0;

    if (!is_server)
        sieve_str(in, &n->pos[0], &mbox);
    sieve_str(in, &n->pos[is_server ? 0 : 1], &key);
    if (in->cb->get_metadata &&
        in->cb->get_metadata(in->rock, is_server ? NULL : buf_cstring(&mbox),
                             buf_cstring(&key), &v) == 0) {
        strarray_append(&vals, buf_cstring(&v));
        sieve_list(in, &n->pos[n->npos - 1], &keys);
        r = sieve_match_node(in, n, &vals, &keys);
    }
    strarray_fini(&vals);
    strarray_fini(&keys);
    buf_free(&mbox);
    buf_free(&key);
    buf_free(&v);
    return r;
}

/* mailboxexists, metadataexists, servermetadataexists, ihave,
 * valid_ext_list, valid_notify_method, specialuse_exists,
 * mailboxidexists: true when
 * every listed item passes. */
static int test_all(struct sieve_interp *in, const struct sieve_inode *n)
{
    strarray_t items = STRARRAY_INITIALIZER;
    struct buf mbox = BUF_INITIALIZER, v = BUF_INITIALIZER;
    const char *mb = NULL;
    int i, r = 1;

    if ((n->op == OP_T_METADATAEXISTS ||
         n->op == OP_T_SPECIALUSE_EXISTS) && n->npos == 2)
        mb = sieve_first(in, &n->pos[0], &mbox);
    sieve_list(in, &n->pos[n->npos - 1], &items);
    for (i = 0; i < items.count && r; i++) {
        const char *s = items.data[i];
        switch (n->op) {
        case OP_T_MAILBOXEXISTS:
            r = in->cb->mailbox_exists &&
                in->cb->mailbox_exists(in->rock, s) > 0;
            break;
        case OP_T_METADATAEXISTS:
        case OP_T_SERVERMETADATAEXISTS:
            r = in->cb->get_metadata &&
                in->cb->get_metadata(in->rock, mb, s, &v) == 0;
            break;
        case OP_T_IHAVE:
            r = sieve_extension_enabled(s);
            break;
        case OP_T_VALID_EXT_LIST:
            r = in->cb->list_valid && in->cb->list_valid(in->rock, s) > 0;
            break;
        case OP_T_VALID_NOTIFY_METHOD:
            r = !util_strncasecmp_ascii(s, "mailto:", 7) && s[7] &&
                strchr(s + 7, '@') != NULL;
            break;
        case OP_T_MAILBOXIDEXISTS:
            r = in->cb->mailboxid_exists &&
                in->cb->mailboxid_exists(in->rock, s) > 0;
            break;
        case OP_T_SPECIALUSE_EXISTS:
            r = in->cb->specialuse_exists &&
                in->cb->specialuse_exists(in->rock, mb, s) > 0;
            break;
        }
    }
    strarray_fini(&items);
    buf_free(&mbox);
    buf_free(&v);
    return r;
}

/* duplicate (RFC 7352): check the id now, track it if the run succeeds. */
static int test_duplicate(struct sieve_interp *in,
                          const struct sieve_inode *n)
{
    struct buf id = BUF_INITIALIZER, b = BUF_INITIALIZER;
    struct sieve_action *a;
    int seen = 0;

    if (n->has[TAG_HANDLE])
        buf_printf(&id, "%s:", sieve_str(in, &n->tag[TAG_HANDLE], &b));
    else
        buf_appendcstr(&id, ":");
    if (n->has[TAG_UNIQUEID]) {
        buf_appendcstr(&id, sieve_str(in, &n->tag[TAG_UNIQUEID], &b));
    } else {
        strarray_t hv = STRARRAY_INITIALIZER;
        const char *h = n->has[TAG_HEADER]
                        ? sieve_str(in, &n->tag[TAG_HEADER], &b)
                        : "message-id";
        sieve_header_values(in, h, &hv);
        if (!hv.count) {
            strarray_fini(&hv);
            buf_free(&id);
            buf_free(&b);
            return 0;           /* nothing to track by */
        }
        buf_appendcstr(&id, hv.data[0]);
        strarray_fini(&hv);
    }
    if (in->cb->duplicate_check)
        seen = in->cb->duplicate_check(in->rock, buf_cstring(&id)) > 0;
    a = sieve_add_action(in, SIEVE_ACTION_DUPLICATE_TRACK);
    if (a) {
        a->name = buf_release(&id);
        a->seconds = n->has[TAG_SECONDS] ? (int64_t)n->tag[TAG_SECONDS].num
                                         : 7 * 86400;
        a->is_last = n->has[TAG_LAST];
    }
    buf_free(&id);
    buf_free(&b);
    return seen;
}

/* notify_method_capability: mailto's "online" is always "maybe". */
static int test_notify_cap(struct sieve_interp *in,
                           const struct sieve_inode *n)
{
    strarray_t vals = STRARRAY_INITIALIZER, keys = STRARRAY_INITIALIZER;
    struct buf uri = BUF_INITIALIZER, cap = BUF_INITIALIZER;
    int r = 0;

    sieve_str(in, &n->pos[0], &uri);
    sieve_str(in, &n->pos[1], &cap);
    if (!util_strncasecmp_ascii(buf_cstring(&uri), "mailto:", 7) &&
        !util_strcasecmp_ascii(buf_cstring(&cap), "online")) {
        strarray_append(&vals, "maybe");
        sieve_list(in, &n->pos[2], &keys);
        r = sieve_match_node(in, n, &vals, &keys);
    }
    strarray_fini(&vals);
    strarray_fini(&keys);
    buf_free(&uri);
    buf_free(&cap);
    return r;
}

static int eval_test(struct sieve_interp *in, size_t off);

int sieve_eval_test(struct sieve_interp *in, size_t off)
{
    int r;

    /* the compiler nests at most SIEVE_MAX_DEPTH; more is corruption */
    if (in->test_depth > SIEVE_MAX_DEPTH + 1)
        return sieve_fail(in, "tests nested too deeply");
    in->test_depth++;
    r = eval_test(in, off);
    in->test_depth--;
    return r;
}

static int eval_test(struct sieve_interp *in, size_t off)
{
    struct sieve_inode n;
    size_t sub;
    int i, r;

    if (sieve_decode(in, off, &n) < 0)
        return -1;
    switch (n.op) {
    case OP_T_TRUE: return 1;
    case OP_T_FALSE: return 0;
    case OP_T_NOT:
        r = sieve_eval_test(in, n.sub);
        return r < 0 ? r : !r;
    case OP_T_ANYOF:
    case OP_T_ALLOF:
        sub = n.sub;
        for (i = 0; i < n.nsub; i++) {
            struct sieve_inode s;
            r = sieve_eval_test(in, sub);
            if (r < 0)
                return r;
            if (r == (n.op == OP_T_ANYOF))
                return r;
            if (sieve_decode(in, sub, &s) < 0 || s.end > n.end)
                return -1;
            sub = s.end;
        }
        return n.op == OP_T_ALLOF;
    case OP_T_ADDRESS: return test_address(in, &n);
    case OP_T_ENVELOPE: return test_envelope(in, &n);
    case OP_T_HEADER: return test_header(in, &n);
    case OP_T_EXISTS: return test_exists(in, &n);
    case OP_T_SIZE: {
        uint64_t size = in->cb->get_size ? in->cb->get_size(in->rock) : 0;
        return n.has[TAG_OVER] ? size > n.tag[TAG_OVER].num
                               : size < n.tag[TAG_UNDER].num;
    }
    case OP_T_BODY: return test_body(in, &n);
    case OP_T_STRING: return test_string(in, &n, 0);
    case OP_T_HASFLAG: return test_string(in, &n, 1);
    case OP_T_DATE:
    case OP_T_CURRENTDATE: return test_date(in, &n);
    case OP_T_ENVIRONMENT: return test_environment(in, &n);
    case OP_T_METADATA:
    case OP_T_SERVERMETADATA: return test_metadata(in, &n);
    case OP_T_MAILBOXEXISTS:
    case OP_T_METADATAEXISTS:
    case OP_T_SERVERMETADATAEXISTS:
    case OP_T_IHAVE:
    case OP_T_VALID_EXT_LIST:
    case OP_T_VALID_NOTIFY_METHOD:
    case OP_T_SPECIALUSE_EXISTS:
    case OP_T_MAILBOXIDEXISTS: return test_all(in, &n);
    case OP_T_DUPLICATE: return test_duplicate(in, &n);
    case OP_T_NOTIFY_METHOD_CAPABILITY: return test_notify_cap(in, &n);
    }
    return sieve_fail(in, "unknown test opcode %d", n.op);
}

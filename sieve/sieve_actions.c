/* Sieve commands that compute a whole response or edit: vacation (RFC
 * 5230, 6131), notify (RFC 5435/5436 mailto) and editheader (RFC 5293). */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/imapopts.h"
#include "lib/libconfig.h"
#include "lib/strarray.h"
#include "lib/util.h"
#include "lib/xmalloc.h"

#include "sieve/sieve.h"
#include "sieve/sieve_int.h"
#include "sieve/sieve_interp.h"

/* FNV-1a: a stable hash for vacation handles (the tracking key must be
 * the same in every process, unlike the keyed table hash). */
static uint64_t fnv1a(uint64_t h, const char *s)
{
    if (!h)
        h = 0xcbf29ce484222325ULL;
    for (; s && *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h ^ 0xff;            /* separates consecutive fields */
}

/* The first address of envelope part `part`, or "". */
static void envelope_first(struct sieve_interp *in, const char *part,
                           struct buf *out)
{
    strarray_t v = STRARRAY_INITIALIZER;

    buf_reset(out);
    if (in->cb->get_envelope)
        in->cb->get_envelope(in->rock, part, &v);
    if (v.count) {
        strarray_t a = STRARRAY_INITIALIZER;
        sieve_parse_addresses(v.data[0], &a);
        if (a.count)
            buf_setcstr(out, a.data[0]);
        strarray_fini(&a);
    }
    strarray_fini(&v);
    buf_cstring(out);
}

/* RFC 5230 4.5 and 5.x: no replies to lists, robots and bounces. */
static int vacation_suppressed(struct sieve_interp *in, const char *sender)
{
    static const char *const robots[] = { "mailer-daemon", "listserv",
                                          "majordomo", "postmaster", NULL };
    strarray_t hv = STRARRAY_INITIALIZER;
    const char *at = strrchr(sender, '@');
    size_t llen = at ? (size_t)(at - sender) : strlen(sender);
    int i, r = 0;

    if (!*sender)
        return 1;
    for (i = 0; robots[i]; i++) {
        if (llen == strlen(robots[i]) &&
            !util_strncasecmp_ascii(sender, robots[i], llen))
            return 1;
    }
    if (!util_strncasecmp_ascii(sender, "owner-", 6) ||
        (llen >= 8 && !util_strncasecmp_ascii(sender + llen - 8,
                                              "-request", 8)))
        return 1;

    sieve_header_values(in, "auto-submitted", &hv);
    for (i = 0; i < hv.count; i++)
        r |= util_strcasecmp_ascii(hv.data[i], "no") != 0;
    strarray_fini(&hv);
    sieve_header_values(in, "precedence", &hv);
    for (i = 0; i < hv.count; i++) {
        r |= !util_strcasecmp_ascii(hv.data[i], "bulk") ||
             !util_strcasecmp_ascii(hv.data[i], "list") ||
             !util_strcasecmp_ascii(hv.data[i], "junk");
    }
    strarray_fini(&hv);
    sieve_header_values(in, "list-id", &hv);
    r |= hv.count > 0;
    strarray_fini(&hv);
    return r;
}

/* Was the message sent to one of `mine` (RFC 5230 4.5)? */
static int addressed_to_me(struct sieve_interp *in, const strarray_t *mine)
{
    static const char *const hdrs[] = { "to", "cc", "bcc", "resent-to",
                                        "resent-cc", "resent-bcc", NULL };
    strarray_t addrs = STRARRAY_INITIALIZER;
    int i, j, r = 0;

    for (i = 0; hdrs[i]; i++) {
        strarray_t hv = STRARRAY_INITIALIZER;
        sieve_header_values(in, hdrs[i], &hv);
        for (j = 0; j < hv.count; j++)
            sieve_parse_addresses(hv.data[j], &addrs);
        strarray_fini(&hv);
    }
    for (i = 0; i < addrs.count && !r; i++) {
        for (j = 0; j < mine->count && !r; j++)
            r = !util_strcasecmp_ascii(addrs.data[i], mine->data[j]);
    }
    strarray_fini(&addrs);
    return r;
}

int sieve_do_vacation(struct sieve_interp *in, const struct sieve_inode *n)
{
    struct buf sender = BUF_INITIALIZER, b = BUF_INITIALIZER;
    strarray_t mine = STRARRAY_INITIALIZER, hv = STRARRAY_INITIALIZER;
    struct sieve_action *a;
    int64_t secs, lo, hi;
    uint64_t h;
    int r = 0;

    if (in->vacation_done)
        return sieve_fail(in, "vacation used more than once");
    in->vacation_done = 1;
    if (sieve_check_reject(in, SIEVE_ACTION_VACATION) < 0)
        return -1;

    envelope_first(in, "from", &sender);
    envelope_first(in, "to", &b);
    if (b.len)
        strarray_append(&mine, buf_cstring(&b));
    if (n->has[TAG_ADDRESSES])
        sieve_list(in, &n->tag[TAG_ADDRESSES], &mine);
    if (vacation_suppressed(in, buf_cstring(&sender)) ||
        !addressed_to_me(in, &mine))
        goto done;

    a = sieve_add_action(in, SIEVE_ACTION_VACATION);
    if (!a) {
        r = -1;
        goto done;
    }
    a->text = xstrdup(sieve_str(in, &n->pos[0], &b));
    a->from = sieve_opt_str(in, n, TAG_FROM);
    a->subject = sieve_opt_str(in, n, TAG_SUBJECT);
    if (!a->subject) {
        sieve_header_values(in, "subject", &hv);
        buf_reset(&b);
        if (hv.count)
            buf_printf(&b, "Auto: %s", hv.data[0]);
        else
            buf_setcstr(&b, "Automated reply");
        a->subject = buf_release(&b);
    }
    a->is_mime = n->has[TAG_MIME];
    a->fcc = sieve_opt_str(in, n, TAG_FCC);
    if (a->fcc)
        sieve_fcc_options(in, n, a);
    a->address = buf_release(&sender);
    strarray_fini(&a->addresses);
    if (n->has[TAG_ADDRESSES])
        sieve_list(in, &n->tag[TAG_ADDRESSES], &a->addresses);

    if (n->has[TAG_SECONDS])
        secs = (int64_t)(n->tag[TAG_SECONDS].num > INT32_MAX
                         ? INT32_MAX : n->tag[TAG_SECONDS].num);
    else if (n->has[TAG_DAYS])
        secs = (int64_t)(n->tag[TAG_DAYS].num > 100000
                         ? 100000 : n->tag[TAG_DAYS].num) * 86400;
    else
        secs = 7 * 86400;
    lo = config_getduration(IMAPOPT_SIEVE_VACATION_MIN_RESPONSE, 's');
    hi = config_getduration(IMAPOPT_SIEVE_VACATION_MAX_RESPONSE, 's');
    if (secs < lo)
        secs = lo;
    if (secs > hi)
        secs = hi;
    a->seconds = secs;

    a->handle = sieve_opt_str(in, n, TAG_HANDLE);
    if (!a->handle) {
        h = fnv1a(0, a->text);
        h = fnv1a(h, n->has[TAG_SUBJECT] ? a->subject : "");
        h = fnv1a(h, a->from);
        h = fnv1a(h, a->is_mime ? "mime" : "");
        buf_reset(&b);
        buf_printf(&b, "%016llx", (unsigned long long)h);
        a->handle = buf_release(&b);
    }

done:
    strarray_fini(&mine);
    strarray_fini(&hv);
    buf_free(&sender);
    buf_free(&b);
    return r;
}

int sieve_do_notify(struct sieve_interp *in, const struct sieve_inode *n)
{
    struct buf b = BUF_INITIALIZER;
    strarray_t hv = STRARRAY_INITIALIZER;
    struct sieve_action *a;
    const char *method = sieve_str(in, &n->pos[0], &b);
    const char *imp;

    if (util_strncasecmp_ascii(method, "mailto:", 7) ||
        !strchr(method + 7, '@')) {
        sieve_fail(in, "notify: unsupported method \"%s\"", method);
        buf_free(&b);
        return -1;
    }
    a = sieve_add_action(in, SIEVE_ACTION_NOTIFY);
    if (!a) {
        buf_free(&b);
        return -1;
    }
    a->method = buf_release(&b);
    a->from = sieve_opt_str(in, n, TAG_FROM);
    a->importance = sieve_opt_str(in, n, TAG_IMPORTANCE);
    imp = a->importance;
    if (!imp || strlen(imp) != 1 || imp[0] < '1' || imp[0] > '3') {
        free(a->importance);
        a->importance = xstrdup("2");
    }
    if (n->has[TAG_OPTIONS])
        sieve_list(in, &n->tag[TAG_OPTIONS], &a->options);
    a->fcc = sieve_opt_str(in, n, TAG_FCC);
    if (a->fcc)
        sieve_fcc_options(in, n, a);
    a->message = sieve_opt_str(in, n, TAG_MESSAGE);
    if (!a->message) {
        sieve_header_values(in, "from", &hv);
        buf_printf(&b, "%s: ", hv.count ? hv.data[0] : "");
        strarray_fini(&hv);
        sieve_header_values(in, "subject", &hv);
        buf_appendcstr(&b, hv.count ? hv.data[0] : "");
        a->message = buf_release(&b);
    }
    strarray_fini(&hv);
    buf_free(&b);
    return 0;
}

void sieve_raw_headers(struct sieve_interp *in, const char *name,
                       strarray_t *out)
{
    size_t i;
    int j, k;

    if (in->cb->get_header)
        in->cb->get_header(in->rock, name, out);
    /* later tests see earlier edits (RFC 5293 3) */
    for (i = 0; i < in->res->count; i++) {
        const struct sieve_action *a = &in->res->actions[i];

        if ((a->type != SIEVE_ACTION_ADDHEADER &&
             a->type != SIEVE_ACTION_DELETEHEADER) ||
            util_strcasecmp_ascii(a->name, name))
            continue;
        if (a->type == SIEVE_ACTION_ADDHEADER) {
            if (a->is_last)
                strarray_append(out, a->value);
            else
                strarray_insert(out, 0, a->value);
            continue;
        }
        for (j = 0; j < a->deleted.count; j++) {
            k = strarray_find(out, a->deleted.data[j], 0);
            if (k >= 0)
                free(strarray_remove(out, k));
        }
    }
}

/* RFC 5293 4.2, 6: these fields are for tracing and loop detection. */
static int is_protected(const char *name)
{
    return !util_strcasecmp_ascii(name, "received") ||
           !util_strcasecmp_ascii(name, "auto-submitted");
}

int sieve_do_editheader(struct sieve_interp *in,
                        const struct sieve_inode *n)
{
    struct buf name = BUF_INITIALIZER, v = BUF_INITIALIZER;
    strarray_t raw = STRARRAY_INITIALIZER, dec = STRARRAY_INITIALIZER;
    struct sieve_action *a;
    int r = 0, i;

    sieve_str(in, &n->pos[0], &name);
    if (is_protected(buf_cstring(&name)))
        goto done;
    if (n->op == OP_ADDHEADER) {
        sieve_str(in, &n->pos[1], &v);
        if (strpbrk(buf_cstring(&v), "\r\n") || v.len > 998) {
            r = sieve_fail(in, "addheader: bad value");
            goto done;
        }
        a = sieve_add_action(in, SIEVE_ACTION_ADDHEADER);
        if (!a) {
            r = -1;
            goto done;
        }
        a->name = buf_release(&name);
        a->value = buf_release(&v);
        a->is_last = n->has[TAG_LAST];
        goto done;
    }

    a = sieve_add_action(in, SIEVE_ACTION_DELETEHEADER);
    if (!a) {
        r = -1;
        goto done;
    }
    a->name = xstrdup(buf_cstring(&name));
    a->index = n->has[TAG_INDEX] ? (int64_t)n->tag[TAG_INDEX].num : 0;
    a->is_last = n->has[TAG_LAST];
    if (n->npos == 2)
        sieve_list(in, &n->pos[1], &a->patterns);
    /* choose the occurrences now, with the script's match type (this
     * action's own empty list changes nothing yet) */
    sieve_raw_headers(in, buf_cstring(&name), &raw);
    if (a->patterns.count)
        sieve_header_values(in, buf_cstring(&name), &dec);
    for (i = 0; i < raw.count; i++) {
        int pos = a->is_last ? raw.count - i : i + 1;

        if (a->index && pos != a->index)
            continue;
        if (a->patterns.count) {
            strarray_t one = STRARRAY_INITIALIZER;
            int m = 0;

            if (i < dec.count) {
                strarray_append(&one, dec.data[i]);
                m = sieve_match_node(in, n, &one, &a->patterns);
            }
            strarray_fini(&one);
            if (m <= 0)
                continue;
        }
        strarray_append(&a->deleted, raw.data[i]);
    }

done:
    strarray_fini(&raw);
    strarray_fini(&dec);
    buf_free(&name);
    buf_free(&v);
    return r;
}

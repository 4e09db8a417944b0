/* Sieve interpreter, command half: walks the bytecode of sieve_int.h,
 * runs the commands, keeps variables and the implicit keep, and hands
 * the host a list of actions (RFC 5228 2.10 and the extensions). */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/charset.h"
#include "lib/error.h"
#include "lib/imapopts.h"
#include "lib/libconfig.h"
#include "lib/strarray.h"
#include "lib/util.h"
#include "lib/xmalloc.h"

#include "sieve/sieve.h"
#include "sieve/sieve_int.h"
#include "sieve/sieve_interp.h"

int sieve_fail(struct sieve_interp *in, const char *fmt, ...)
{
    va_list ap;

    if (!in->failed) {
        in->failed = 1;
        va_start(ap, fmt);
        buf_vprintf(&in->error, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* --- reading bytecode --- */

struct reader {
    const unsigned char *b;
    size_t pos, end;
    int bad;
};

/* Read a big-endian unsigned of `bytes` bytes. */
static uint32_t rd_u(struct reader *r, int bytes)
{
    uint32_t v = 0;

    if (r->bad || r->pos + (size_t)bytes > r->end) {
        r->bad = 1;
        return 0;
    }
    while (bytes--)
        v = (v << 8) | r->b[r->pos++];
    return v;
}

/* A string body: u32 length, bytes, NUL. */
static const char *rd_str(struct reader *r)
{
    uint32_t len = rd_u(r, 4);
    const char *s;

    if (r->bad || len > r->end - r->pos || r->end - r->pos - len < 1 ||
        r->b[r->pos + len] != 0) {
        r->bad = 1;
        return "";
    }
    s = (const char *)r->b + r->pos;
    r->pos += (size_t)len + 1;
    return s;
}

/* Read one typed value. */
static void rd_val(struct reader *r, struct sieve_val *v)
{
    unsigned i;

    memset(v, 0, sizeof(*v));
    v->type = (int)rd_u(r, 1);
    switch (v->type) {
    case ARG_NUMBER:
        v->num = (uint64_t)rd_u(r, 4) << 32;
        v->num |= rd_u(r, 4);
        break;
    case ARG_STRING:
        v->s = rd_str(r);
        break;
    case ARG_LIST:
        v->count = rd_u(r, 2);
        v->list = r->b + r->pos;
        for (i = 0; i < v->count && !r->bad; i++)
            rd_str(r);
        break;
    default:
        r->bad = 1;
    }
}

/* The value type that follows tag `t` in bytecode, ARG_NONE for none. */
static enum sieve_argtype tag_argtype(int t)
{
    switch (t) {
    case TAG_VALUE: case TAG_COUNT: case TAG_COMPARATOR: case TAG_SUBJECT:
    case TAG_FROM: case TAG_HANDLE: case TAG_ZONE: case TAG_IMPORTANCE:
    case TAG_MESSAGE: case TAG_HEADER: case TAG_UNIQUEID:
    case TAG_SPECIALUSE: case TAG_MAILBOXID: case TAG_FCC: case TAG_NOTIFY:
    case TAG_RET: case TAG_BYTIMEABSOLUTE: case TAG_BYMODE:
        return ARG_STRING;
    case TAG_FLAGS: case TAG_ADDRESSES: case TAG_CONTENT: case TAG_OPTIONS:
        return ARG_LIST;
    case TAG_OVER: case TAG_UNDER: case TAG_DAYS: case TAG_SECONDS:
    case TAG_INDEX: case TAG_BYTIMERELATIVE:
        return ARG_NUMBER;
    default:
        return ARG_NONE;
    }
}

/* Fewest positional arguments each opcode is compiled with, so that
 * corrupt bytecode cannot make the interpreter read a missing one. */
static int min_positional(int op)
{
    switch (op) {
    case OP_SET: case OP_ADDHEADER: case OP_T_ADDRESS: case OP_T_ENVELOPE:
    case OP_T_HEADER: case OP_T_STRING: case OP_T_CURRENTDATE:
    case OP_T_ENVIRONMENT: case OP_T_METADATAEXISTS:
    case OP_T_SERVERMETADATA:
        return 2;
    case OP_T_DATE: case OP_T_METADATA: case OP_T_NOTIFY_METHOD_CAPABILITY:
        return 3;
    case OP_REDIRECT: case OP_FILEINTO: case OP_REJECT: case OP_EREJECT:
    case OP_VACATION: case OP_ADDFLAG: case OP_SETFLAG: case OP_REMOVEFLAG:
    case OP_DELETEHEADER: case OP_NOTIFY: case OP_INCLUDE: case OP_GLOBAL:
    case OP_ERROR: case OP_T_EXISTS: case OP_T_BODY: case OP_T_HASFLAG:
    case OP_T_MAILBOXEXISTS: case OP_T_SERVERMETADATAEXISTS: case OP_T_IHAVE:
    case OP_T_VALID_EXT_LIST: case OP_T_SPECIALUSE_EXISTS:
    case OP_T_VALID_NOTIFY_METHOD: case OP_T_MAILBOXIDEXISTS:
        return 1;
    default:
        return 0;
    }
}

int sieve_decode(struct sieve_interp *in, size_t off,
                 struct sieve_inode *n)
{
    const struct sieve_frame *f = in->frame;
    struct reader r = { f->bc, off, f->len, 0 };
    uint32_t len;
    int i, ntags;

    memset(n, 0, sizeof(*n));
    n->start = off;
    n->op = (int)rd_u(&r, 1);
    len = rd_u(&r, 4);
    if (r.bad || len > f->len - r.pos)
        goto bad;
    r.end = r.pos + len;
    n->end = r.end;
    if (n->op == OP_JUMP || n->op == OP_JUMPF) {
        n->target = rd_u(&r, 4);
        /* only forward jumps: corrupt bytecode cannot loop */
        if (n->target <= off || n->target >= f->len)
            goto bad;
    }
    ntags = (int)rd_u(&r, 1);
    for (i = 0; i < ntags && !r.bad; i++) {
        int t = (int)rd_u(&r, 1);
        if (t >= TAG_COUNT_)
            goto bad;
        n->has[t] = 1;
        if (tag_argtype(t) != ARG_NONE) {
            rd_val(&r, &n->tag[t]);
            if (n->tag[t].type != (int)tag_argtype(t))
                goto bad;
        }
    }
    n->npos = (int)rd_u(&r, 1);
    if (n->npos > 4 || n->npos < min_positional(n->op))
        goto bad;
    for (i = 0; i < n->npos && !r.bad; i++)
        rd_val(&r, &n->pos[i]);
    n->nsub = (int)rd_u(&r, 1);
    n->sub = r.pos;
    if (r.bad)
        goto bad;
    return 0;

bad:
    return sieve_fail(in, "corrupt bytecode at offset %zu", off);
}

/* --- variables --- */

static int is_global(struct sieve_interp *in, const char *name)
{
    return strarray_find_case(&in->frame->globals, name, 0) >= 0;
}

const char *sieve_var_get(struct sieve_interp *in, const char *name)
{
    strarray_t *names = &in->frame->names, *values = &in->frame->values;
    int i;

    if (name[0] >= '0' && name[0] <= '9') {
        /* ${01} is ${1}; only ${0}..${9} are ever set */
        while (name[0] == '0' && name[1] != '\0')
            name++;
        if (name[1] != '\0')
            return "";
        i = name[0] - '0';
        return i < in->groups.count ? in->groups.data[i] : "";
    }
    if (is_global(in, name)) {
        names = &in->gnames;
        values = &in->gvalues;
    }
    i = strarray_find_case(names, name, 0);
    return i >= 0 ? values->data[i] : NULL;
}

void sieve_var_set(struct sieve_interp *in, const char *name,
                   const char *value)
{
    strarray_t *names = &in->frame->names, *values = &in->frame->values;
    int i;

    if (is_global(in, name)) {
        names = &in->gnames;
        values = &in->gvalues;
    }
    i = strarray_find_case(names, name, 0);
    if (i >= 0) {
        strarray_set(values, i, value);
    } else if (names->count < SIEVE_MAX_VARIABLES) {
        strarray_append(names, name);
        strarray_append(values, value);
    } else {
        sieve_fail(in, "too many variables");
    }
}

/* Is s[0..len) a variable name or a match variable number? */
static int is_var_name(const char *s, size_t len)
{
    size_t i;
    int digits = s[0] >= '0' && s[0] <= '9';

    if (!len)
        return 0;
    for (i = 0; i < len; i++) {
        char c = s[i];
        int digit = c >= '0' && c <= '9';
        int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    c == '_';
        if (digits ? !digit : !(alpha || (i && digit)))
            return 0;
    }
    return 1;
}

/* RFC 5229 3: "${name}" expands to the value, unknown names to "";
 * anything else stays as written. */
static void expand(struct sieve_interp *in, const char *s, struct buf *out)
{
    buf_reset(out);
    if (!(in->frame->exts & EXT_BIT(EXT_VARIABLES)) || !strstr(s, "${")) {
        buf_appendcstr(out, s);
        return;
    }
    while (*s) {
        const char *end;

        if (s[0] == '$' && s[1] == '{' && (end = strchr(s + 2, '}')) &&
            is_var_name(s + 2, (size_t)(end - s - 2)) &&
            end - s - 2 < 128) {
            char name[128];
            const char *v;

            memcpy(name, s + 2, (size_t)(end - s - 2));
            name[end - s - 2] = '\0';
            v = sieve_var_get(in, name);
            if (v && out->len + strlen(v) <= SIEVE_MAX_STRING)
                buf_appendcstr(out, v);
            s = end + 1;
            continue;
        }
        buf_putc(out, *s++);
    }
    buf_cstring(out);
}

const char *sieve_str(struct sieve_interp *in, const struct sieve_val *v,
                      struct buf *out)
{
    expand(in, v->s ? v->s : "", out);
    return buf_cstring(out);
}

void sieve_list(struct sieve_interp *in, const struct sieve_val *v,
                strarray_t *out)
{
    struct reader r = { v->list, 0, SIZE_MAX, 0 };
    struct buf b = BUF_INITIALIZER;
    unsigned i;

    if (v->type == ARG_STRING) {
        strarray_append(out, sieve_str(in, v, &b));
    } else {
        for (i = 0; i < v->count; i++) {
            /* bounds were checked by sieve_decode() */
            expand(in, rd_str(&r), &b);
            strarray_append(out, buf_cstring(&b));
        }
    }
    buf_free(&b);
}

const char *sieve_first(struct sieve_interp *in, const struct sieve_val *v,
                        struct buf *out)
{
    strarray_t l = STRARRAY_INITIALIZER;

    sieve_list(in, v, &l);
    buf_setcstr(out, l.count ? l.data[0] : "");
    strarray_fini(&l);
    return buf_cstring(out);
}

void sieve_flags_add(strarray_t *out, const strarray_t *list)
{
    int i, j;

    for (i = 0; i < list->count; i++) {
        strarray_t *words = strarray_split(list->data[i], " ", 1);
        for (j = 0; j < words->count; j++) {
            if (strarray_find_case(out, words->data[j], 0) < 0)
                strarray_append(out, words->data[j]);
        }
        strarray_free(&words);
    }
}

/* --- actions --- */

static void action_fini(struct sieve_action *a)
{
    free(a->mailbox);
    strarray_fini(&a->flags);
    free(a->specialuse);
    free(a->mailboxid);
    free(a->address);
    free(a->reason);
    free(a->dsn_notify);
    free(a->dsn_ret);
    free(a->by_absolute);
    free(a->by_mode);
    free(a->from);
    free(a->subject);
    free(a->text);
    free(a->handle);
    strarray_fini(&a->addresses);
    free(a->fcc);
    free(a->method);
    free(a->importance);
    strarray_fini(&a->options);
    free(a->message);
    free(a->name);
    free(a->value);
    strarray_fini(&a->patterns);
    strarray_fini(&a->deleted);
}

void sieve_result_fini(struct sieve_result *res)
{
    size_t i;

    for (i = 0; i < res->count; i++)
        action_fini(&res->actions[i]);
    free(res->actions);
    memset(res, 0, sizeof(*res));
}

/* Append a zeroed action of `type`, with no limit. */
static struct sieve_action *grow_action(struct sieve_result *res,
                                        enum sieve_action_type type)
{
    struct sieve_action *a;

    if (res->count == res->alloc) {
        res->alloc = res->alloc ? res->alloc * 2 : 8;
        res->actions = xreallocarray(res->actions, res->alloc,
                                     sizeof(*res->actions));
    }
    a = &res->actions[res->count++];
    memset(a, 0, sizeof(*a));
    a->type = type;
    return a;
}

struct sieve_action *sieve_add_action(struct sieve_interp *in,
                                       enum sieve_action_type type)
{
    struct sieve_result *res = in->res;

    if (res->count >= SIEVE_MAX_ACTIONS) {
        sieve_fail(in, "too many actions");
        return NULL;
    }
    return grow_action(res, type);
}

char *sieve_opt_str(struct sieve_interp *in, const struct sieve_inode *n,
                     int tag)
{
    struct buf b = BUF_INITIALIZER;

    if (!n->has[tag])
        return NULL;
    sieve_str(in, &n->tag[tag], &b);
    return buf_release(&b);
}

/* reject is incompatible with the delivering actions (RFC 5429 2.1). */
int sieve_check_reject(struct sieve_interp *in, enum sieve_action_type t)
{
    size_t i;

    if (t == SIEVE_ACTION_REJECT) {
        for (i = 0; i < in->res->count; i++) {
            enum sieve_action_type o = in->res->actions[i].type;
            if (o == SIEVE_ACTION_KEEP || o == SIEVE_ACTION_FILEINTO ||
                o == SIEVE_ACTION_REDIRECT || o == SIEVE_ACTION_VACATION ||
                o == SIEVE_ACTION_REJECT)
                return sieve_fail(in, "reject cannot be combined with "
                                  "other delivery actions");
        }
        in->has_reject = 1;
    } else if (in->has_reject) {
        return sieve_fail(in, "reject cannot be combined with other "
                          "delivery actions");
    }
    return 0;
}

/* keep, or fileinto when `is_fileinto`; the same target twice is done once. */
static int do_keep(struct sieve_interp *in, const struct sieve_inode *n,
                   int is_fileinto)
{
    struct buf b = BUF_INITIALIZER;
    struct sieve_action *a;
    const char *mbox = NULL;
    size_t i;

    if (sieve_check_reject(in, SIEVE_ACTION_KEEP) < 0)
        return -1;
    if (is_fileinto) {
        mbox = sieve_str(in, &n->pos[0], &b);
        if (!*mbox) {
            buf_free(&b);
            return sieve_fail(in, "fileinto: empty mailbox name");
        }
    }
    /* the same delivery twice is done once (RFC 5228 2.10.3) */
    for (i = 0; i < in->res->count; i++) {
        a = &in->res->actions[i];
        if ((a->type == SIEVE_ACTION_KEEP && !mbox) ||
            (a->type == SIEVE_ACTION_FILEINTO && mbox &&
             !strcmp(a->mailbox, mbox))) {
            if (!n->has[TAG_COPY])
                in->implicit_keep = 0;
            buf_free(&b);
            return 0;
        }
    }
    a = sieve_add_action(in, is_fileinto ? SIEVE_ACTION_FILEINTO
                                   : SIEVE_ACTION_KEEP);
    if (!a) {
        buf_free(&b);
        return -1;
    }
    a->mailbox = mbox ? buf_release(&b) : NULL;
    buf_free(&b);
    if (n->has[TAG_FLAGS]) {
        strarray_t fl = STRARRAY_INITIALIZER;
        sieve_list(in, &n->tag[TAG_FLAGS], &fl);
        sieve_flags_add(&a->flags, &fl);
        strarray_fini(&fl);
        a->has_flags = 1;
    } else if (in->frame->exts & EXT_BIT(EXT_IMAP4FLAGS)) {
        sieve_flags_add(&a->flags, &in->flags);
        a->has_flags = 1;
    }
    a->is_copy = n->has[TAG_COPY];
    a->is_create = n->has[TAG_CREATE];
    a->specialuse = sieve_opt_str(in, n, TAG_SPECIALUSE);
    a->mailboxid = sieve_opt_str(in, n, TAG_MAILBOXID);
    if (!a->is_copy)
        in->implicit_keep = 0;
    return 0;
}

/* redirect [:copy] address */
void sieve_fcc_options(struct sieve_interp *in, const struct sieve_inode *n,
                       struct sieve_action *a)
{
    if (n->has[TAG_FLAGS]) {
        strarray_t fl = STRARRAY_INITIALIZER;
        sieve_list(in, &n->tag[TAG_FLAGS], &fl);
        sieve_flags_add(&a->flags, &fl);
        strarray_fini(&fl);
        a->has_flags = 1;
    }
    a->is_create = n->has[TAG_CREATE];
    a->specialuse = sieve_opt_str(in, n, TAG_SPECIALUSE);
    a->mailboxid = sieve_opt_str(in, n, TAG_MAILBOXID);
}

/* redirect [:copy] address */
static int do_redirect(struct sieve_interp *in, const struct sieve_inode *n)
{
    struct buf b = BUF_INITIALIZER;
    strarray_t addrs = STRARRAY_INITIALIZER;
    struct sieve_action *a;
    int r = 0;

    if (sieve_check_reject(in, SIEVE_ACTION_REDIRECT) < 0)
        return -1;
    sieve_parse_addresses(sieve_str(in, &n->pos[0], &b), &addrs);
    if (addrs.count != 1 || !strchr(addrs.data[0], '@')) {
        r = sieve_fail(in, "redirect: bad address \"%s\"", buf_cstring(&b));
        goto done;
    }
    a = sieve_add_action(in, SIEVE_ACTION_REDIRECT);
    if (!a) {
        r = -1;
        goto done;
    }
    a->address = xstrdup(addrs.data[0]);
    a->is_copy = n->has[TAG_COPY];
    a->dsn_notify = sieve_opt_str(in, n, TAG_NOTIFY);
    a->dsn_ret = sieve_opt_str(in, n, TAG_RET);
    if (n->has[TAG_BYTIMERELATIVE])
        a->by_relative = (int64_t)(n->tag[TAG_BYTIMERELATIVE].num >
                                   INT32_MAX ? INT32_MAX
                                   : n->tag[TAG_BYTIMERELATIVE].num);
    a->by_absolute = sieve_opt_str(in, n, TAG_BYTIMEABSOLUTE);
    a->by_mode = sieve_opt_str(in, n, TAG_BYMODE);
    a->is_bytrace = n->has[TAG_BYTRACE];
    if (!a->is_copy)
        in->implicit_keep = 0;

done:
    strarray_fini(&addrs);
    buf_free(&b);
    return r;
}

/* reject / ereject reason */
static int do_reject(struct sieve_interp *in, const struct sieve_inode *n)
{
    struct sieve_action *a;
    struct buf b = BUF_INITIALIZER;

    if (sieve_check_reject(in, SIEVE_ACTION_REJECT) < 0)
        return -1;
    a = sieve_add_action(in, SIEVE_ACTION_REJECT);
    if (!a)
        return -1;
    a->reason = xstrdup(sieve_str(in, &n->pos[0], &b));
    a->is_ereject = n->op == OP_EREJECT;
    in->implicit_keep = 0;
    buf_free(&b);
    return 0;
}

/* Apply the :modifiers of "set" (RFC 5229 4.1), highest precedence
 * first. */
static void set_modifiers(const struct sieve_inode *n, struct buf *v)
{
    struct buf t = BUF_INITIALIZER;
    size_t i;

    if (n->has[TAG_LOWER])
        buf_tolower(v);
    if (n->has[TAG_UPPER])
        buf_toupper(v);
    if (n->has[TAG_LOWERFIRST] && v->len && v->s[0] >= 'A' && v->s[0] <= 'Z')
        v->s[0] = (char)(v->s[0] + 32);
    if (n->has[TAG_UPPERFIRST] && v->len && v->s[0] >= 'a' && v->s[0] <= 'z')
        v->s[0] = (char)(v->s[0] - 32);
    if (n->has[TAG_QUOTEWILDCARD] || n->has[TAG_QUOTEREGEX] ||
        n->has[TAG_ENCODEURL]) {
        const char *special = n->has[TAG_QUOTEREGEX] ? "*?\\.^$[]{}()|+"
                                                     : "*?\\";
        for (i = 0; i < v->len; i++) {
            unsigned char c = (unsigned char)v->s[i];
            if (n->has[TAG_ENCODEURL]) {
                if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c >= '0' && c <= '9') || strchr("-._~", c))
                    buf_putc(&t, (char)c);
                else
                    buf_printf(&t, "%%%02X", c);
                continue;
            }
            if (c && strchr(special, c))
                buf_putc(&t, '\\');
            buf_putc(&t, (char)c);
        }
        buf_setmap(v, t.s ? t.s : "", t.len);
    }
    if (n->has[TAG_LENGTH]) {
        size_t chars = 0;
        for (i = 0; i < v->len; i++)
            chars += ((unsigned char)v->s[i] & 0xc0) != 0x80;
        buf_reset(v);
        buf_printf(v, "%zu", chars);
    }
    buf_free(&t);
}

/* set [modifiers] name value */
static int do_set(struct sieve_interp *in, const struct sieve_inode *n)
{
    struct buf name = BUF_INITIALIZER, v = BUF_INITIALIZER;

    sieve_str(in, &n->pos[0], &name);
    sieve_str(in, &n->pos[1], &v);
    set_modifiers(n, &v);
    sieve_var_set(in, buf_cstring(&name), buf_cstring(&v));
    buf_free(&name);
    buf_free(&v);
    return in->failed ? -1 : 0;
}

/* addflag / setflag / removeflag [variable] flags */
static int do_flags(struct sieve_interp *in, const struct sieve_inode *n)
{
    strarray_t list = STRARRAY_INITIALIZER, cur = STRARRAY_INITIALIZER;
    strarray_t *target = &in->flags;
    struct buf name = BUF_INITIALIZER;
    int i;

    sieve_list(in, &n->pos[n->npos - 1], &list);
    if (n->npos == 2) {
        strarray_t v = STRARRAY_INITIALIZER;
        const char *old;

        sieve_first(in, &n->pos[0], &name);
        old = sieve_var_get(in, buf_cstring(&name));
        if (old)
            strarray_append(&v, old);
        sieve_flags_add(&cur, &v);
        strarray_fini(&v);
        target = &cur;
    }
    if (n->op == OP_SETFLAG)
        strarray_fini(target);
    if (n->op == OP_REMOVEFLAG) {
        strarray_t rm = STRARRAY_INITIALIZER;
        sieve_flags_add(&rm, &list);
        for (i = 0; i < rm.count; i++) {
            int j;
            while ((j = strarray_find_case(target, rm.data[i], 0)) >= 0)
                free(strarray_remove(target, j));
        }
        strarray_fini(&rm);
    } else {
        sieve_flags_add(target, &list);
    }
    if (n->npos == 2) {
        char *joined = strarray_join(&cur, " ");
        sieve_var_set(in, buf_cstring(&name), joined ? joined : "");
        free(joined);
    }
    strarray_fini(&list);
    strarray_fini(&cur);
    buf_free(&name);
    return 0;
}

/* include [:personal|:global] [:once] [:optional] name */
static int do_include(struct sieve_interp *in, const struct sieve_inode *n)
{
    struct buf name = BUF_INITIALIZER, key = BUF_INITIALIZER;
    struct buf bc = BUF_INITIALIZER;
    int is_global = n->has[TAG_GLOBAL], r = 0;

    sieve_str(in, &n->pos[0], &name);
    if (!name.len || strchr(buf_cstring(&name), '/')) {
        r = sieve_fail(in, "include: bad script name \"%s\"",
                       buf_cstring(&name));
        goto done;
    }
    buf_printf(&key, "%c%s", is_global ? 'g' : 'p', buf_cstring(&name));
    if (n->has[TAG_ONCE] &&
        strarray_find(&in->once, buf_cstring(&key), 0) >= 0)
        goto done;
    if (in->depth >= SIEVE_MAX_INCLUDE) {
        r = sieve_fail(in, "include: nested too deeply");
        goto done;
    }
    if (!in->cb->get_include ||
        in->cb->get_include(in->rock, buf_cstring(&name), is_global, &bc)) {
        if (!n->has[TAG_OPTIONAL])
            r = sieve_fail(in, "include: script \"%s\" not found",
                           buf_cstring(&name));
        goto done;
    }
    if (n->has[TAG_ONCE])
        strarray_append(&in->once, buf_cstring(&key));
    r = sieve_run_script(in, bc.s, bc.len);

done:
    buf_free(&name);
    buf_free(&key);
    buf_free(&bc);
    return r;
}


/* Run one command node; 0, or -1 on a run-time error. */
static int run_command(struct sieve_interp *in, const struct sieve_inode *n)
{
    struct buf b = BUF_INITIALIZER;
    int i;

    switch (n->op) {
    case OP_STOP:
        in->stopped = 1;
        return 0;
    case OP_RETURN:
        in->frame->returned = 1;
        return 0;
    case OP_KEEP:
        return do_keep(in, n, 0);
    case OP_FILEINTO:
        return do_keep(in, n, 1);
    case OP_DISCARD:
        in->implicit_keep = 0;
        for (i = 0; i < (int)in->res->count; i++) {
            if (in->res->actions[i].type == SIEVE_ACTION_DISCARD)
                return 0;
        }
        return sieve_add_action(in, SIEVE_ACTION_DISCARD) ? 0 : -1;
    case OP_REDIRECT:
        return do_redirect(in, n);
    case OP_REJECT:
    case OP_EREJECT:
        return do_reject(in, n);
    case OP_VACATION:
        return sieve_do_vacation(in, n);
    case OP_SET:
        return do_set(in, n);
    case OP_ADDFLAG:
    case OP_SETFLAG:
    case OP_REMOVEFLAG:
        return do_flags(in, n);
    case OP_ADDHEADER:
    case OP_DELETEHEADER:
        return sieve_do_editheader(in, n);
    case OP_NOTIFY:
        return sieve_do_notify(in, n);
    case OP_INCLUDE:
        return do_include(in, n);
    case OP_GLOBAL: {
        strarray_t names = STRARRAY_INITIALIZER;
        sieve_list(in, &n->pos[0], &names);
        for (i = 0; i < names.count; i++)
            strarray_add(&in->frame->globals, names.data[i]);
        strarray_fini(&names);
        return 0;
    }
    case OP_ERROR:
        sieve_fail(in, "%s", sieve_str(in, &n->pos[0], &b));
        buf_free(&b);
        return -1;
    case OP_NOP:
        return 0;
    }
    return sieve_fail(in, "unknown opcode %d", n->op);
}

int sieve_bytecode_is_current(const char *bc, size_t len)
{
    return bc && len > SIEVE_BC_HEADER && !memcmp(bc, SIEVE_BC_MAGIC, 4) &&
           (unsigned char)bc[4] == SIEVE_BC_VERSION;
}

int sieve_run_script(struct sieve_interp *in, const char *bc, size_t len)
{
    struct sieve_frame frame, *saved = in->frame;
    const unsigned char *b = (const unsigned char *)bc;
    size_t pc = SIEVE_BC_HEADER;
    int r = 0, i;

    if (!sieve_bytecode_is_current(bc, len))
        return sieve_fail(in, "bad bytecode (not version %d)",
                          SIEVE_BC_VERSION);
    memset(&frame, 0, sizeof(frame));
    frame.bc = b;
    frame.len = len;
    for (i = 5; i < SIEVE_BC_HEADER; i++)
        frame.exts = (frame.exts << 8) | b[i];
    in->frame = &frame;
    in->depth++;

    while (!in->stopped && !frame.returned && pc < len && b[pc] != OP_END) {
        struct sieve_inode n;

        if (sieve_decode(in, pc, &n) < 0) {
            r = -1;
            break;
        }
        if (n.op == OP_JUMP) {
            pc = n.target;
        } else if (n.op == OP_JUMPF) {
            int t = n.nsub == 1 ? sieve_eval_test(in, n.sub) : -1;
            if (t < 0) {
                r = sieve_fail(in, "bad test at offset %zu", pc);
                break;
            }
            pc = t ? n.end : n.target;
        } else if (n.op >= OP_T_ADDRESS) {
            r = sieve_fail(in, "test where a command was expected");
            break;
        } else {
            if (run_command(in, &n) < 0) {
                r = -1;
                break;
            }
            pc = n.end;
        }
    }
    if (pc >= len && !r && !in->stopped && !frame.returned)
        r = sieve_fail(in, "bytecode ends without END");

    in->depth--;
    in->frame = saved;
    strarray_fini(&frame.names);
    strarray_fini(&frame.values);
    strarray_fini(&frame.globals);
    return r;
}

int sieve_execute(const char *bytecode, size_t len,
                  const struct sieve_callbacks *cb, void *rock,
                  struct sieve_result *res)
{
    static const struct sieve_callbacks none;
    struct sieve_interp in;
    struct sieve_action *a;
    size_t first = res->count, i;
    int r;

    memset(&in, 0, sizeof(in));
    in.cb = cb ? cb : &none;
    in.rock = rock;
    in.res = res;
    in.implicit_keep = 1;

    r = sieve_run_script(&in, bytecode, len);
    if (r || in.failed) {
        /* drop everything this run asked for; keep the message */
        for (i = first; i < res->count; i++)
            action_fini(&res->actions[i]);
        res->count = first;
        a = grow_action(res, SIEVE_ACTION_ERROR);
        a->reason = buf_release(&in.error);
        grow_action(res, SIEVE_ACTION_KEEP);
        r = ERR_SIEVE_RUNTIME;
    } else if (in.implicit_keep) {
        a = grow_action(res, SIEVE_ACTION_KEEP);
        sieve_flags_add(&a->flags, &in.flags);
        a->has_flags = in.flags.count > 0;
    }
    buf_free(&in.error);
    strarray_fini(&in.gnames);
    strarray_fini(&in.gvalues);
    strarray_fini(&in.groups);
    strarray_fini(&in.flags);
    strarray_fini(&in.once);
    return r;
}

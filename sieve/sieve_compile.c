/* Sieve compiler: checks a parse tree against the command and tag tables
 * (arguments, required extensions) and writes the bytecode described in
 * sieve_int.h. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/error.h"
#include "lib/imapopts.h"
#include "lib/libconfig.h"
#include "lib/strarray.h"
#include "lib/util.h"
#include "lib/xmalloc.h"

#include "sieve/sieve.h"
#include "sieve/sieve_int.h"

const char *const sieve_ext_names[EXT_COUNT_] = {
    "fileinto", "envelope", "encoded-character", "reject", "ereject",
    "vacation", "vacation-seconds", "copy", "body", "environment",
    "variables", "relational", "imap4flags", "subaddress", "date", "index",
    "editheader", "enotify", "ihave", "mailbox", "mboxmetadata",
    "servermetadata", "include", "duplicate", "regex", "extlists",
    "special-use", "fcc", "mailboxid", "comparator-i;ascii-numeric",
    "comparator-i;unicode-casemap", "redirect-dsn", "redirect-deliverby"
};

int sieve_ext_lookup(const char *name)
{
    int i;

    for (i = 0; i < EXT_COUNT_; i++) {
        if (!strcmp(sieve_ext_names[i], name))
            return i;
    }
    return -1;
}

/* sieve_extensions names the extensions as Cyrus does: "reject" covers
 * ereject, "notify" is enotify; encoded-character and the comparators
 * are always on. */
uint64_t sieve_enabled_extensions(void)
{
    strarray_t *names = config_getstrarray(IMAPOPT_SIEVE_EXTENSIONS);
    uint64_t bits = EXT_BIT(EXT_ENCODED_CHARACTER) |
                    EXT_BIT(EXT_CMP_NUMERIC) | EXT_BIT(EXT_CMP_UNICODE);
    int i;

    for (i = 0; i < names->count; i++) {
        const char *n = names->data[i];
        int e;

        if (!strcmp(n, "reject"))
            bits |= EXT_BIT(EXT_REJECT) | EXT_BIT(EXT_EREJECT);
        else if (!strcmp(n, "notify"))
            bits |= EXT_BIT(EXT_ENOTIFY);
        else if ((e = sieve_ext_lookup(n)) >= 0)
            bits |= EXT_BIT(e);
    }
    strarray_free(&names);
    return bits;
}

int sieve_extension_enabled(const char *ext)
{
    int e = sieve_ext_lookup(ext);

    return e >= 0 && (sieve_enabled_extensions() & EXT_BIT(e));
}

const char *sieve_capability_string(void)
{
    static char caps[1024];
    uint64_t bits = sieve_enabled_extensions();
    struct buf b = BUF_INITIALIZER;
    int i;

    for (i = 0; i < EXT_COUNT_; i++) {
        if (!(bits & EXT_BIT(i)))
            continue;
        if (b.len)
            buf_putc(&b, ' ');
        buf_appendcstr(&b, sieve_ext_names[i]);
    }
    xstrlcpy(caps, buf_cstring(&b), sizeof(caps));
    buf_free(&b);
    return caps;
}

/* --- tables --- */

enum tag_group { G_NONE = 0, G_MATCH = 1, G_CMP = 2, G_ADDR = 4,
                 G_BODY = 8, G_ZONE = 16, G_SIZE = 32, G_MOD = 64,
                 G_LOC = 128, G_PERIOD = 256, G_BYTIME = 512 };

struct tag_spec {
    const char *name;
    enum sieve_argtype arg;
    int ext;                    /* EXT_NONE: no extension needed */
    enum tag_group group;
};

static const struct tag_spec tags[TAG_COUNT_] = {
    [TAG_IS] = { "is", ARG_NONE, EXT_NONE, G_MATCH },
    [TAG_CONTAINS] = { "contains", ARG_NONE, EXT_NONE, G_MATCH },
    [TAG_MATCHES] = { "matches", ARG_NONE, EXT_NONE, G_MATCH },
    [TAG_REGEX] = { "regex", ARG_NONE, EXT_REGEX, G_MATCH },
    [TAG_VALUE] = { "value", ARG_STRING, EXT_RELATIONAL, G_MATCH },
    [TAG_COUNT] = { "count", ARG_STRING, EXT_RELATIONAL, G_MATCH },
    [TAG_LIST] = { "list", ARG_NONE, EXT_EXTLISTS, G_MATCH },
    [TAG_COMPARATOR] = { "comparator", ARG_STRING, EXT_NONE, G_CMP },
    [TAG_ALL] = { "all", ARG_NONE, EXT_NONE, G_ADDR },
    [TAG_LOCALPART] = { "localpart", ARG_NONE, EXT_NONE, G_ADDR },
    [TAG_DOMAIN] = { "domain", ARG_NONE, EXT_NONE, G_ADDR },
    [TAG_USER] = { "user", ARG_NONE, EXT_SUBADDRESS, G_ADDR },
    [TAG_DETAIL] = { "detail", ARG_NONE, EXT_SUBADDRESS, G_ADDR },
    [TAG_OVER] = { "over", ARG_NUMBER, EXT_NONE, G_SIZE },
    [TAG_UNDER] = { "under", ARG_NUMBER, EXT_NONE, G_SIZE },
    [TAG_COPY] = { "copy", ARG_NONE, EXT_COPY, G_NONE },
    [TAG_CREATE] = { "create", ARG_NONE, EXT_MAILBOX, G_NONE },
    [TAG_FLAGS] = { "flags", ARG_LIST, EXT_IMAP4FLAGS, G_NONE },
    [TAG_DAYS] = { "days", ARG_NUMBER, EXT_NONE, G_PERIOD },
    [TAG_SECONDS] = { "seconds", ARG_NUMBER, EXT_VACATION_SECONDS,
                      G_PERIOD },
    [TAG_SUBJECT] = { "subject", ARG_STRING, EXT_NONE, G_NONE },
    [TAG_FROM] = { "from", ARG_STRING, EXT_NONE, G_NONE },
    [TAG_ADDRESSES] = { "addresses", ARG_LIST, EXT_NONE, G_NONE },
    [TAG_MIME] = { "mime", ARG_NONE, EXT_NONE, G_NONE },
    [TAG_HANDLE] = { "handle", ARG_STRING, EXT_NONE, G_NONE },
    [TAG_RAW] = { "raw", ARG_NONE, EXT_NONE, G_BODY },
    [TAG_CONTENT] = { "content", ARG_LIST, EXT_NONE, G_BODY },
    [TAG_TEXT] = { "text", ARG_NONE, EXT_NONE, G_BODY },
    [TAG_LOWER] = { "lower", ARG_NONE, EXT_NONE, G_MOD },
    [TAG_UPPER] = { "upper", ARG_NONE, EXT_NONE, G_MOD },
    [TAG_LOWERFIRST] = { "lowerfirst", ARG_NONE, EXT_NONE, G_NONE },
    [TAG_UPPERFIRST] = { "upperfirst", ARG_NONE, EXT_NONE, G_NONE },
    [TAG_QUOTEWILDCARD] = { "quotewildcard", ARG_NONE, EXT_NONE, G_NONE },
    [TAG_QUOTEREGEX] = { "quoteregex", ARG_NONE, EXT_REGEX, G_NONE },
    [TAG_ENCODEURL] = { "encodeurl", ARG_NONE, EXT_ENOTIFY, G_NONE },
    [TAG_LENGTH] = { "length", ARG_NONE, EXT_NONE, G_NONE },
    [TAG_ZONE] = { "zone", ARG_STRING, EXT_NONE, G_ZONE },
    [TAG_ORIGINALZONE] = { "originalzone", ARG_NONE, EXT_NONE, G_ZONE },
    [TAG_INDEX] = { "index", ARG_NUMBER, EXT_INDEX, G_NONE },
    [TAG_LAST] = { "last", ARG_NONE, EXT_NONE, G_NONE },
    [TAG_PERSONAL] = { "personal", ARG_NONE, EXT_NONE, G_LOC },
    [TAG_GLOBAL] = { "global", ARG_NONE, EXT_NONE, G_LOC },
    [TAG_ONCE] = { "once", ARG_NONE, EXT_NONE, G_NONE },
    [TAG_OPTIONAL] = { "optional", ARG_NONE, EXT_NONE, G_NONE },
    [TAG_IMPORTANCE] = { "importance", ARG_STRING, EXT_NONE, G_NONE },
    [TAG_OPTIONS] = { "options", ARG_LIST, EXT_NONE, G_NONE },
    [TAG_MESSAGE] = { "message", ARG_STRING, EXT_NONE, G_NONE },
    [TAG_HEADER] = { "header", ARG_STRING, EXT_NONE, G_NONE },
    [TAG_UNIQUEID] = { "uniqueid", ARG_STRING, EXT_NONE, G_NONE },
    [TAG_SPECIALUSE] = { "specialuse", ARG_STRING, EXT_SPECIAL_USE, G_NONE },
    [TAG_MAILBOXID] = { "mailboxid", ARG_STRING, EXT_MAILBOXID, G_NONE },
    [TAG_FCC] = { "fcc", ARG_STRING, EXT_FCC, G_NONE },
    [TAG_NOTIFY] = { "notify", ARG_STRING, EXT_REDIRECT_DSN, G_NONE },
    [TAG_RET] = { "ret", ARG_STRING, EXT_REDIRECT_DSN, G_NONE },
    [TAG_BYTIMERELATIVE] = { "bytimerelative", ARG_NUMBER,
                             EXT_REDIRECT_DELIVERBY, G_BYTIME },
    [TAG_BYTIMEABSOLUTE] = { "bytimeabsolute", ARG_STRING,
                             EXT_REDIRECT_DELIVERBY, G_BYTIME },
    [TAG_BYMODE] = { "bymode", ARG_STRING, EXT_REDIRECT_DELIVERBY, G_NONE },
    [TAG_BYTRACE] = { "bytrace", ARG_NONE, EXT_REDIRECT_DELIVERBY, G_NONE },
};

enum sub_kind { SUB_NONE, SUB_TEST, SUB_TESTS, SUB_BLOCK };

struct cmd_spec {
    const char *name;
    enum sieve_op op;
    int is_test;
    int ext;
    unsigned groups;            /* tag groups allowed */
    const char *tags;           /* further tags, space separated */
    const char *pos;            /* 's' string, 'l' list, 'n' number;
                                   upper case: optional (trailing) */
    enum sub_kind sub;
};

#define MC (G_MATCH | G_CMP)
static const struct cmd_spec cmds[] = {
    /* commands */
    { "require", OP_NOP, 0, EXT_NONE, 0, "", "l", SUB_NONE },
    { "if", OP_JUMPF, 0, EXT_NONE, 0, "", "", SUB_BLOCK },
    { "elsif", OP_JUMPF, 0, EXT_NONE, 0, "", "", SUB_BLOCK },
    { "else", OP_NOP, 0, EXT_NONE, 0, "", "", SUB_BLOCK },
    { "stop", OP_STOP, 0, EXT_NONE, 0, "", "", SUB_NONE },
    { "keep", OP_KEEP, 0, EXT_NONE, 0, "flags", "", SUB_NONE },
    { "discard", OP_DISCARD, 0, EXT_NONE, 0, "", "", SUB_NONE },
    { "redirect", OP_REDIRECT, 0, EXT_NONE, G_BYTIME,
      "copy notify ret bymode bytrace", "s", SUB_NONE },
    { "fileinto", OP_FILEINTO, 0, EXT_FILEINTO, 0,
      "copy create flags specialuse mailboxid", "s", SUB_NONE },
    { "reject", OP_REJECT, 0, EXT_REJECT, 0, "", "s", SUB_NONE },
    { "ereject", OP_EREJECT, 0, EXT_EREJECT, 0, "", "s", SUB_NONE },
    { "vacation", OP_VACATION, 0, EXT_VACATION, G_PERIOD,
      "subject from addresses mime handle fcc flags create specialuse "
      "mailboxid", "s", SUB_NONE },
    { "set", OP_SET, 0, EXT_VARIABLES, G_MOD,
      "lowerfirst upperfirst quotewildcard quoteregex encodeurl length",
      "ss", SUB_NONE },
    { "addflag", OP_ADDFLAG, 0, EXT_IMAP4FLAGS, 0, "", "lL", SUB_NONE },
    { "setflag", OP_SETFLAG, 0, EXT_IMAP4FLAGS, 0, "", "lL", SUB_NONE },
    { "removeflag", OP_REMOVEFLAG, 0, EXT_IMAP4FLAGS, 0, "", "lL",
      SUB_NONE },
    { "addheader", OP_ADDHEADER, 0, EXT_EDITHEADER, 0, "last", "ss",
      SUB_NONE },
    { "deleteheader", OP_DELETEHEADER, 0, EXT_EDITHEADER, MC,
      "index last", "sL", SUB_NONE },
    { "notify", OP_NOTIFY, 0, EXT_ENOTIFY, 0,
      "from importance options message fcc flags create specialuse "
      "mailboxid", "s", SUB_NONE },
    { "include", OP_INCLUDE, 0, EXT_INCLUDE, G_LOC, "once optional", "s",
      SUB_NONE },
    { "return", OP_RETURN, 0, EXT_INCLUDE, 0, "", "", SUB_NONE },
    { "global", OP_GLOBAL, 0, EXT_INCLUDE, 0, "", "l", SUB_NONE },
    { "error", OP_ERROR, 0, EXT_IHAVE, 0, "", "s", SUB_NONE },
    /* tests */
    { "address", OP_T_ADDRESS, 1, EXT_NONE, MC | G_ADDR, "index last",
      "ll", SUB_NONE },
    { "envelope", OP_T_ENVELOPE, 1, EXT_ENVELOPE, MC | G_ADDR, "", "ll",
      SUB_NONE },
    { "header", OP_T_HEADER, 1, EXT_NONE, MC, "index last", "ll",
      SUB_NONE },
    { "exists", OP_T_EXISTS, 1, EXT_NONE, 0, "", "l", SUB_NONE },
    { "size", OP_T_SIZE, 1, EXT_NONE, G_SIZE, "", "", SUB_NONE },
    { "true", OP_T_TRUE, 1, EXT_NONE, 0, "", "", SUB_NONE },
    { "false", OP_T_FALSE, 1, EXT_NONE, 0, "", "", SUB_NONE },
    { "not", OP_T_NOT, 1, EXT_NONE, 0, "", "", SUB_TEST },
    { "anyof", OP_T_ANYOF, 1, EXT_NONE, 0, "", "", SUB_TESTS },
    { "allof", OP_T_ALLOF, 1, EXT_NONE, 0, "", "", SUB_TESTS },
    { "body", OP_T_BODY, 1, EXT_BODY, MC | G_BODY, "", "l", SUB_NONE },
    { "string", OP_T_STRING, 1, EXT_VARIABLES, MC, "", "ll", SUB_NONE },
    { "hasflag", OP_T_HASFLAG, 1, EXT_IMAP4FLAGS, MC, "", "lL", SUB_NONE },
    { "date", OP_T_DATE, 1, EXT_DATE, MC | G_ZONE, "index last", "ssl",
      SUB_NONE },
    { "currentdate", OP_T_CURRENTDATE, 1, EXT_DATE, MC | G_ZONE, "", "sl",
      SUB_NONE },
    { "environment", OP_T_ENVIRONMENT, 1, EXT_ENVIRONMENT, MC, "", "sl",
      SUB_NONE },
    { "mailboxexists", OP_T_MAILBOXEXISTS, 1, EXT_MAILBOX, 0, "", "l",
      SUB_NONE },
    { "metadata", OP_T_METADATA, 1, EXT_MBOXMETADATA, MC, "", "ssl",
      SUB_NONE },
    { "metadataexists", OP_T_METADATAEXISTS, 1, EXT_MBOXMETADATA, 0, "",
      "sl", SUB_NONE },
    { "servermetadata", OP_T_SERVERMETADATA, 1, EXT_SERVERMETADATA, MC, "",
      "sl", SUB_NONE },
    { "servermetadataexists", OP_T_SERVERMETADATAEXISTS, 1,
      EXT_SERVERMETADATA, 0, "", "l", SUB_NONE },
    { "duplicate", OP_T_DUPLICATE, 1, EXT_DUPLICATE, 0,
      "handle seconds last header uniqueid", "", SUB_NONE },
    { "ihave", OP_T_IHAVE, 1, EXT_IHAVE, 0, "", "l", SUB_NONE },
    { "mailboxidexists", OP_T_MAILBOXIDEXISTS, 1, EXT_MAILBOXID, 0, "",
      "l", SUB_NONE },
    { "valid_ext_list", OP_T_VALID_EXT_LIST, 1, EXT_EXTLISTS, 0, "", "l",
      SUB_NONE },
    { "specialuse_exists", OP_T_SPECIALUSE_EXISTS, 1, EXT_SPECIAL_USE, 0,
      "", "lL", SUB_NONE },
    { "valid_notify_method", OP_T_VALID_NOTIFY_METHOD, 1, EXT_ENOTIFY, 0,
      "", "l", SUB_NONE },
    { "notify_method_capability", OP_T_NOTIFY_METHOD_CAPABILITY, 1,
      EXT_ENOTIFY, MC, "", "ssl", SUB_NONE },
    { NULL, 0, 0, 0, 0, NULL, NULL, 0 }
};

/* The table entry of command or test `name`, or NULL. */
static const struct cmd_spec *find_cmd(const char *name)
{
    const struct cmd_spec *c;

    for (c = cmds; c->name; c++) {
        if (!strcmp(c->name, name))
            return c;
    }
    return NULL;
}

/* The tag id of `name` (without ':'), or -1. */
static int find_tag(const char *name)
{
    int i;

    for (i = 0; i < TAG_COUNT_; i++) {
        if (tags[i].name && !strcmp(tags[i].name, name))
            return i;
    }
    return -1;
}

/* Is `tag` in the space-separated list `list`? */
static int in_list(const char *list, const char *tag)
{
    size_t n = strlen(tag);
    const char *p = list;

    while ((p = strstr(p, tag)) != NULL) {
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
            return 1;
        p += n;
    }
    return 0;
}

/* --- generator --- */

struct gen {
    struct sieve_parser *p;
    uint64_t enabled;           /* by configuration */
    uint64_t required;          /* by "require" (and "ihave") here */
    uint64_t all_required;      /* anywhere: the bytecode header's */
    struct buf *out;
    int seen_command;           /* a non-require command was seen */
};

/* Big-endian writers of the bytecode. */
static void put_u8(struct gen *g, unsigned v)
{
    buf_putc(g->out, (char)(v & 0xff));
}

static void put_u16(struct gen *g, unsigned v)
{
    put_u8(g, v >> 8);
    put_u8(g, v);
}

static void put_u32(struct gen *g, uint32_t v)
{
    put_u16(g, v >> 16);
    put_u16(g, v & 0xffff);
}

/* Overwrite the u32 at `at` (a jump target or a length). */
static void patch_u32(struct gen *g, size_t at, uint32_t v)
{
    unsigned char *p = (unsigned char *)g->out->s + at;

    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Value of a hex digit, or -1. */
static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Append code point `cp` as UTF-8. */
static void put_utf8(struct buf *b, uint32_t cp)
{
    if (cp < 0x80) {
        buf_putc(b, (char)cp);
    } else if (cp < 0x800) {
        buf_putc(b, (char)(0xc0 | (cp >> 6)));
        buf_putc(b, (char)(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
        buf_putc(b, (char)(0xe0 | (cp >> 12)));
        buf_putc(b, (char)(0x80 | ((cp >> 6) & 0x3f)));
        buf_putc(b, (char)(0x80 | (cp & 0x3f)));
    } else {
        buf_putc(b, (char)(0xf0 | (cp >> 18)));
        buf_putc(b, (char)(0x80 | ((cp >> 12) & 0x3f)));
        buf_putc(b, (char)(0x80 | ((cp >> 6) & 0x3f)));
        buf_putc(b, (char)(0x80 | (cp & 0x3f)));
    }
}

/* Decode one "${hex:...}" or "${unicode:...}" body (between ':' and
 * '}') into `out`; -1 when it is not well formed (kept literally). */
static int decode_encoded(const char *s, size_t len, int is_unicode,
                          struct buf *out)
{
    size_t i = 0, mark = out->len;
    int any = 0;

    while (i < len) {
        uint32_t v = 0;
        int digits = 0;

        while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' ||
                           s[i] == '\n'))
            i++;
        if (i == len)
            break;
        while (i < len && hexval(s[i]) >= 0) {
            if (++digits > 8)
                goto bad;
            v = v * 16 + (uint32_t)hexval(s[i++]);
        }
        if (!digits || (i < len && s[i] != ' ' && s[i] != '\t' &&
                        s[i] != '\r' && s[i] != '\n'))
            goto bad;
        if (is_unicode) {
            if (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
                goto bad;
            put_utf8(out, v);
        } else {
            if (v > 0xff)
                goto bad;
            buf_putc(out, (char)v);
        }
        any = 1;
    }
    (void)any;
    return 0;

bad:
    buf_truncate(out, mark);
    return -1;
}

/* RFC 5228 2.4.2.4 encoded characters, when required. */
static void encoded_chars(struct gen *g, const char *s, struct buf *out)
{
    buf_reset(out);
    if (!(g->required & EXT_BIT(EXT_ENCODED_CHARACTER))) {
        buf_appendcstr(out, s);
        return;
    }
    while (*s) {
        if (s[0] == '$' && s[1] == '{') {
            int is_unicode = !util_strncasecmp_ascii(s + 2, "unicode:", 8);
            int is_hex = !util_strncasecmp_ascii(s + 2, "hex:", 4);
            const char *body = s + 2 + (is_unicode ? 8 : 4);
            const char *end = strchr(s, '}');

            if ((is_unicode || is_hex) && end &&
                decode_encoded(body, (size_t)(end - body), is_unicode,
                               out) == 0) {
                s = end + 1;
                continue;
            }
        }
        buf_putc(out, *s++);
    }
}

/* Write a string body (length, bytes, NUL). */
static void put_string(struct gen *g, const char *s)
{
    struct buf tmp = BUF_INITIALIZER;

    encoded_chars(g, s, &tmp);
    put_u32(g, (uint32_t)tmp.len);
    buf_appendmap(g->out, tmp.s ? tmp.s : "", tmp.len);
    put_u8(g, 0);
    buf_free(&tmp);
}

/* Write argument `a` as a value of type `want`. */
static void put_value(struct gen *g, const struct sieve_arg *a,
                      enum sieve_argtype want)
{
    int i;

    if (want == ARG_NUMBER) {
        put_u8(g, ARG_NUMBER);
        put_u32(g, (uint32_t)(a->number >> 32));
        put_u32(g, (uint32_t)a->number);
    } else if (want == ARG_STRING) {
        put_u8(g, ARG_STRING);
        put_string(g, a->strings.data[0]);
    } else {
        put_u8(g, ARG_LIST);
        put_u16(g, (unsigned)a->strings.count);
        for (i = 0; i < a->strings.count; i++)
            put_string(g, a->strings.data[i]);
    }
}

/* Does the argument fit the wanted type?  A string is a one-element
 * list. */
static int arg_fits(const struct sieve_arg *a, int want)
{
    switch (want) {
    case 's': return a->type == ARG_STRING;
    case 'l': return a->type == ARG_STRING || a->type == ARG_LIST;
    case 'n': return a->type == ARG_NUMBER;
    }
    return 0;
}

/* Name of a positional type letter for messages. */
static const char *type_name(int want)
{
    return want == 's' ? "string" : want == 'l' ? "string list" : "number";
}

/* Positional type letter of an argument type. */
static int want_of(enum sieve_argtype t)
{
    return t == ARG_STRING ? 's' : t == ARG_LIST ? 'l' : 'n';
}

/* Fail with a message unless extension `ext` was required. */
static int need_ext(struct gen *g, const struct sieve_node *n, int ext,
                    const char *what)
{
    if (ext == EXT_NONE || (g->required & EXT_BIT(ext)))
        return 0;
    sieve_error(g->p, n->line, n->col, "%s requires \"require \\\"%s\\\"\"",
                what, sieve_ext_names[ext]);
    return -1;
}

struct checked {
    int tagarg[TAG_COUNT_];     /* index into n->args, -1 when absent */
    int pos[4];                 /* positional arguments */
    int npos;
};

/* Check tags and positional arguments of `n` against `c`. */
static int check_args(struct gen *g, const struct sieve_node *n,
                      const struct cmd_spec *c, struct checked *ck)
{
    unsigned groups_seen = 0;
    size_t i;
    int npos_min = 0, npos_max = (int)strlen(c->pos);
    int bad = 0, t;

    for (i = 0; c->pos[i]; i++) {
        if (c->pos[i] >= 'a')
            npos_min++;
    }
    for (t = 0; t < TAG_COUNT_; t++)
        ck->tagarg[t] = -1;
    ck->npos = 0;

    for (i = 0; i < n->nargs; i++) {
        const struct sieve_arg *a = &n->args[i];

        if (a->type != ARG_TAG) {
            if (ck->npos >= npos_max) {
                sieve_error(g->p, a->line, a->col,
                            "too many arguments for %s", c->name);
                return -1;
            }
            if (!arg_fits(a, c->pos[ck->npos] | 0x20)) {
                sieve_error(g->p, a->line, a->col,
                            "%s: expected %s argument", c->name,
                            type_name(c->pos[ck->npos] | 0x20));
                return -1;
            }
            ck->pos[ck->npos++] = (int)i;
            continue;
        }
        if (ck->npos > 0) {
            sieve_error(g->p, a->line, a->col,
                        "tag \":%s\" after positional arguments", a->tag);
            return -1;
        }
        t = find_tag(a->tag);
        if (t < 0 || !((tags[t].group & c->groups) ||
                       in_list(c->tags, a->tag))) {
            sieve_error(g->p, a->line, a->col,
                        "unexpected tag \":%s\" for %s", a->tag, c->name);
            return -1;
        }
        /* :seconds of duplicate is not vacation-seconds, :index of
         * deleteheader is editheader's own */
        if (!(t == TAG_SECONDS && c->op == OP_T_DUPLICATE) &&
            !(t == TAG_INDEX && c->op == OP_DELETEHEADER) &&
            need_ext(g, n, tags[t].ext, a->tag) < 0)
            bad = 1;
        if (ck->tagarg[t] >= 0 ||
            (tags[t].group && (groups_seen & tags[t].group) &&
             tags[t].group != G_MOD)) {
            sieve_error(g->p, a->line, a->col,
                        "duplicate or conflicting tag \":%s\"", a->tag);
            return -1;
        }
        groups_seen |= tags[t].group;
        ck->tagarg[t] = (int)i;
        if (tags[t].arg != ARG_NONE) {
            if (i + 1 >= n->nargs ||
                !arg_fits(&n->args[i + 1], want_of(tags[t].arg))) {
                sieve_error(g->p, a->line, a->col,
                            "tag \":%s\" needs a %s", a->tag,
                            type_name(want_of(tags[t].arg)));
                return -1;
            }
            i++;
        }
    }
    if (ck->npos < npos_min) {
        sieve_error(g->p, n->line, n->col, "missing argument for %s",
                    c->name);
        return -1;
    }
    if (c->groups & G_SIZE && !(groups_seen & G_SIZE)) {
        sieve_error(g->p, n->line, n->col, "size needs :over or :under");
        return -1;
    }
    return bad ? -1 : 0;
}

/* May `c` start an identifier? */
static int is_alpha_or_(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

/* The string of argument `idx` of `n`. */
static const char *arg_str(const struct sieve_node *n, int idx)
{
    return n->args[idx].strings.data[0];
}

/* A literal date-part must be one RFC 5260 4.2 names. */
static int check_date_part(struct gen *g, const struct sieve_arg *a)
{
    static const char *const parts[] = {
        "year", "month", "day", "date", "julian", "hour", "minute",
        "second", "time", "iso8601", "std11", "zone", "weekday", NULL
    };
    const char *p = a->strings.data[0];
    int i;

    if (strstr(p, "${"))
        return 0;
    for (i = 0; parts[i]; i++) {
        if (!util_strcasecmp_ascii(parts[i], p))
            return 0;
    }
    sieve_error(g->p, a->line, a->col, "unknown date-part \"%s\"", p);
    return -1;
}

/* RFC 6009 values of redirect's :notify, :ret and :bymode, when they
 * are literals. */
static int check_redirect(struct gen *g, const struct sieve_node *n,
                          const struct checked *ck)
{
    static const char *const words[] = { "SUCCESS", "FAILURE", "DELAY" };
    const struct sieve_arg *a;
    const char *v;

    if (ck->tagarg[TAG_NOTIFY] >= 0) {
        a = &n->args[ck->tagarg[TAG_NOTIFY] + 1];
        v = a->strings.data[0];
        if (!strstr(v, "${") && util_strcasecmp_ascii(v, "NEVER")) {
            strarray_t *parts = strarray_split(v, ",", 0);
            int i, j, ok = parts->count > 0;

            for (i = 0; ok && i < parts->count; i++) {
                for (ok = 0, j = 0; j < 3; j++)
                    ok |= !util_strcasecmp_ascii(parts->data[i], words[j]);
            }
            strarray_free(&parts);
            if (!ok) {
                sieve_error(g->p, a->line, a->col, "bad :notify value "
                            "\"%s\"", v);
                return -1;
            }
        }
    }
    if (ck->tagarg[TAG_RET] >= 0) {
        a = &n->args[ck->tagarg[TAG_RET] + 1];
        v = a->strings.data[0];
        if (!strstr(v, "${") && util_strcasecmp_ascii(v, "FULL") &&
            util_strcasecmp_ascii(v, "HDRS")) {
            sieve_error(g->p, a->line, a->col, "bad :ret value \"%s\"", v);
            return -1;
        }
    }
    if ((ck->tagarg[TAG_BYMODE] >= 0 || ck->tagarg[TAG_BYTRACE] >= 0) &&
        ck->tagarg[TAG_BYTIMERELATIVE] < 0 &&
        ck->tagarg[TAG_BYTIMEABSOLUTE] < 0) {
        sieve_error(g->p, n->line, n->col,
                    ":bymode and :bytrace need :bytimerelative or "
                    ":bytimeabsolute");
        return -1;
    }
    return 0;
}

/* Checks that depend on values: comparator names, relational
 * operators, regular expressions, variable names. */
static int check_values(struct gen *g, const struct sieve_node *n,
                        const struct cmd_spec *c, const struct checked *ck)
{
    int i;

    if (ck->tagarg[TAG_COMPARATOR] >= 0) {
        const struct sieve_arg *a = &n->args[ck->tagarg[TAG_COMPARATOR] + 1];
        int cmp = sieve_cmp_lookup(a->strings.data[0]);

        if (cmp < 0) {
            sieve_error(g->p, a->line, a->col, "unknown comparator \"%s\"",
                        a->strings.data[0]);
            return -1;
        }
        if (cmp == CMP_NUMERIC &&
            need_ext(g, n, EXT_CMP_NUMERIC, "i;ascii-numeric") < 0)
            return -1;
        /* RFC 4790 9.1: equality and ordering only */
        if (cmp == CMP_NUMERIC && (ck->tagarg[TAG_CONTAINS] >= 0 ||
                                   ck->tagarg[TAG_MATCHES] >= 0 ||
                                   ck->tagarg[TAG_REGEX] >= 0)) {
            sieve_error(g->p, a->line, a->col, "comparator i;ascii-numeric "
                        "supports only :is, :value and :count");
            return -1;
        }
        if (cmp == CMP_UNICODE_CASEMAP &&
            need_ext(g, n, EXT_CMP_UNICODE, "i;unicode-casemap") < 0)
            return -1;
    }
    for (i = TAG_VALUE; i <= TAG_COUNT; i++) {
        if (ck->tagarg[i] >= 0) {
            const struct sieve_arg *a = &n->args[ck->tagarg[i] + 1];
            if (sieve_rel_lookup(a->strings.data[0]) < 0) {
                sieve_error(g->p, a->line, a->col,
                            "unknown relational operator \"%s\"",
                            a->strings.data[0]);
                return -1;
            }
        }
    }
    if (ck->tagarg[TAG_REGEX] >= 0 && ck->npos > 0) {
        const struct sieve_arg *a = &n->args[ck->pos[ck->npos - 1]];
        char why[128];

        for (i = 0; i < a->strings.count; i++) {
            if (strstr(a->strings.data[i], "${"))
                continue;       /* checked at run time */
            if (!sieve_regex_valid(a->strings.data[i], why, sizeof(why))) {
                sieve_error(g->p, a->line, a->col, "bad regex \"%s\": %s",
                            a->strings.data[i], why);
                return -1;
            }
        }
    }
    if (c->op == OP_SET) {
        const char *v = arg_str(n, ck->pos[0]);
        int ok = is_alpha_or_(v[0]);

        for (i = 1; ok && v[i]; i++)
            ok = is_alpha_or_(v[i]) || (v[i] >= '0' && v[i] <= '9');
        if (!ok) {
            sieve_error(g->p, n->line, n->col, "bad variable name \"%s\"",
                        v);
            return -1;
        }
    }
    if ((c->op == OP_ADDHEADER || c->op == OP_DELETEHEADER) &&
        ck->npos > 0) {
        const char *h = arg_str(n, ck->pos[0]);
        if (!*h || h[strcspn(h, ": \t\r\n")]) {
            sieve_error(g->p, n->line, n->col, "bad header name \"%s\"", h);
            return -1;
        }
    }
    if ((c->op == OP_VACATION || c->op == OP_NOTIFY) &&
        ck->tagarg[TAG_FCC] < 0 &&
        (ck->tagarg[TAG_FLAGS] >= 0 || ck->tagarg[TAG_CREATE] >= 0 ||
         ck->tagarg[TAG_SPECIALUSE] >= 0 || ck->tagarg[TAG_MAILBOXID] >= 0)) {
        sieve_error(g->p, n->line, n->col, "%s: fcc options need :fcc",
                    c->name);
        return -1;
    }
    if (c->op == OP_REDIRECT && check_redirect(g, n, ck) < 0)
        return -1;
    if (ck->tagarg[TAG_INDEX] >= 0 &&
        n->args[ck->tagarg[TAG_INDEX] + 1].number == 0) {
        sieve_error(g->p, n->line, n->col, ":index must be at least 1");
        return -1;
    }
    if ((c->op == OP_T_DATE || c->op == OP_T_CURRENTDATE) &&
        check_date_part(g, &n->args[ck->pos[c->op == OP_T_DATE]]) < 0)
        return -1;
    if (ck->tagarg[TAG_LAST] >= 0 && ck->tagarg[TAG_INDEX] < 0 &&
        c->op != OP_ADDHEADER && c->op != OP_T_DUPLICATE) {
        sieve_error(g->p, n->line, n->col, ":last needs :index");
        return -1;
    }
    return 0;
}

static int emit_node(struct gen *g, struct sieve_node *n, int is_test,
                     size_t *target_r);
/* Compile a list of commands. */
static void emit_block(struct gen *g, struct sieve_node *n, int top);

/* Is the number of tests and the block right for `c`? */
static int check_shape(struct gen *g, const struct sieve_node *n,
                       const struct cmd_spec *c)
{
    int ok;

    switch (c->sub) {
    case SUB_NONE:
        ok = n->ntests == 0 && !n->has_block;
        break;
    case SUB_TEST:
        ok = n->ntests == 1 && !n->has_block && !n->has_test_list;
        break;
    case SUB_TESTS:
        ok = n->ntests >= 1 && !n->has_block && n->has_test_list;
        break;
    default:
        ok = n->has_block && !n->has_test_list &&
             n->ntests == (c->op == OP_JUMPF ? 1u : 0u);
        break;
    }
    if (!ok) {
        const char *what = c->sub == SUB_NONE ? "takes no test or block" :
                           c->sub == SUB_BLOCK ?
                           (c->op == OP_JUMPF ? "needs one test and a block"
                                              : "needs a block") :
                           c->sub == SUB_TEST ? "needs one test" :
                           "needs a test list";
        sieve_error(g->p, n->line, n->col, "%s %s", c->name, what);
        return -1;
    }
    return 0;
}

/* Extensions that "ihave" finds available become usable in the rest
 * of the script. */
static void ihave_enable(struct gen *g, const struct sieve_node *n,
                         const struct checked *ck)
{
    const strarray_t *names = &n->args[ck->pos[0]].strings;
    int i, e;

    /* the if chain restores g->required after the block (RFC 5463 4:
     * the extensions are usable where the test is known true) */
    for (i = 0; i < names->count; i++) {
        e = sieve_ext_lookup(names->data[i]);
        if (e < 0 || !(g->enabled & EXT_BIT(e)))
            return;
    }
    for (i = 0; i < names->count; i++)
        g->required |= EXT_BIT(sieve_ext_lookup(names->data[i]));
    g->all_required |= g->required;
}

static int emit_node(struct gen *g, struct sieve_node *n, int is_test,
                     size_t *target_r)
{
    const struct cmd_spec *c = find_cmd(n->name);
    struct checked ck;
    size_t start, i;
    int ntags = 0, t, r = 0;

    if (!c) {
        sieve_error(g->p, n->line, n->col, "unknown %s \"%s\"",
                    is_test ? "test" : "command", n->name);
        return -1;
    }
    if (c->is_test != is_test) {
        sieve_error(g->p, n->line, n->col, "\"%s\" is %s", n->name,
                    is_test ? "a command, not a test"
                            : "a test, not a command");
        return -1;
    }
    if (need_ext(g, n, c->ext, n->name) < 0 ||
        check_shape(g, n, c) < 0 || check_args(g, n, c, &ck) < 0 ||
        check_values(g, n, c, &ck) < 0)
        return -1;
    if (c->op == OP_T_IHAVE)
        ihave_enable(g, n, &ck);

    start = g->out->len;
    put_u8(g, c->op);
    put_u32(g, 0);
    if (c->op == OP_JUMPF || c->op == OP_JUMP) {
        if (target_r)
            *target_r = g->out->len;
        put_u32(g, 0);
    }
    for (t = 0; t < TAG_COUNT_; t++)
        ntags += ck.tagarg[t] >= 0;
    put_u8(g, (unsigned)ntags);
    for (t = 0; t < TAG_COUNT_; t++) {
        if (ck.tagarg[t] < 0)
            continue;
        put_u8(g, (unsigned)t);
        if (tags[t].arg != ARG_NONE)
            put_value(g, &n->args[ck.tagarg[t] + 1], tags[t].arg);
    }
    put_u8(g, (unsigned)ck.npos);
    for (i = 0; i < (size_t)ck.npos; i++) {
        int want = c->pos[i] | 0x20;
        put_value(g, &n->args[ck.pos[i]],
                  want == 's' ? ARG_STRING : want == 'n' ? ARG_NUMBER
                                                         : ARG_LIST);
    }
    put_u8(g, (unsigned)n->ntests);
    for (i = 0; i < n->ntests; i++) {
        if (emit_node(g, n->tests[i], 1, NULL) < 0)
            r = -1;
    }
    patch_u32(g, start + 1, (uint32_t)(g->out->len - start - 5));
    return r;
}

/* Write an OP_JUMP whose target is patched later at *target_r. */
static void emit_jump(struct gen *g, size_t *target_r)
{
    size_t start = g->out->len;

    put_u8(g, OP_JUMP);
    put_u32(g, 0);
    *target_r = g->out->len;
    put_u32(g, 0);
    put_u8(g, 0);
    put_u8(g, 0);
    put_u8(g, 0);
    patch_u32(g, start + 1, (uint32_t)(g->out->len - start - 5));
}

/* Record the extensions of a require command. */
static void do_require(struct gen *g, struct sieve_node *n, int top)
{
    const struct cmd_spec *c = find_cmd("require");
    struct checked ck;
    const strarray_t *names;
    int i;

    if (!top || g->seen_command) {
        sieve_error(g->p, n->line, n->col,
                    "require must come before other commands");
        return;
    }
    if (check_shape(g, n, c) < 0 || check_args(g, n, c, &ck) < 0)
        return;
    names = &n->args[ck.pos[0]].strings;
    for (i = 0; i < names->count; i++) {
        const char *name = names->data[i];
        int e = sieve_ext_lookup(name);

        if (!strcmp(name, "comparator-i;octet") ||
            !strcmp(name, "comparator-i;ascii-casemap"))
            continue;
        if (e < 0 || !(g->enabled & EXT_BIT(e))) {
            sieve_error(g->p, n->args[ck.pos[0]].line,
                        n->args[ck.pos[0]].col,
                        "unsupported extension \"%s\"", name);
            continue;
        }
        g->required |= EXT_BIT(e);
    }
    /* implied extensions */
    if (g->required & EXT_BIT(EXT_VACATION_SECONDS))
        g->required |= EXT_BIT(EXT_VACATION);
    g->all_required |= g->required;
}

/* An if/elsif/else chain starting at *np; *np is left on its last
 * member. */
static void emit_if_chain(struct gen *g, struct sieve_node **np)
{
    struct sieve_node *n = *np;
    size_t *ends = NULL;        /* jumps to patch to the chain's end */
    size_t nends = 0, target = 0, i;

    for (;;) {
        int more = n->next && (!strcmp(n->next->name, "elsif") ||
                               !strcmp(n->next->name, "else"));
        int is_else = !strcmp(n->name, "else");

        if (is_else) {
            if (check_shape(g, n, find_cmd("else")) == 0 && n->nargs) {
                sieve_error(g->p, n->line, n->col, "else takes no "
                            "arguments");
            }
            emit_block(g, n->block, 0);
        } else {
            uint64_t saved = g->required;

            target = 0;
            if (emit_node(g, n, 0, &target) == 0)
                emit_block(g, n->block, 0);
            g->required = saved;
            if (more) {
                ends = xreallocarray(ends, nends + 1, sizeof(*ends));
                emit_jump(g, &ends[nends++]);
            }
            if (target)
                patch_u32(g, target, (uint32_t)g->out->len);
        }
        if (!more || is_else)
            break;
        n = n->next;
    }
    for (i = 0; i < nends; i++)
        patch_u32(g, ends[i], (uint32_t)g->out->len);
    free(ends);
    *np = n;
}

static void emit_block(struct gen *g, struct sieve_node *n, int top)
{
    for (; n; n = n->next) {
        if (g->p->nerrors > SIEVE_MAX_ERRORS)
            return;
        if (!strcmp(n->name, "require")) {
            do_require(g, n, top);
            continue;
        }
        g->seen_command = 1;
        if (!strcmp(n->name, "if")) {
            emit_if_chain(g, &n);
        } else if (!strcmp(n->name, "elsif") || !strcmp(n->name, "else")) {
            sieve_error(g->p, n->line, n->col, "%s without if", n->name);
        } else {
            emit_node(g, n, 0, NULL);
        }
    }
}

int sieve_generate(struct sieve_parser *p, struct sieve_node *script,
                   uint64_t enabled, struct buf *out)
{
    struct gen g;

    memset(&g, 0, sizeof(g));
    g.p = p;
    g.enabled = enabled;
    g.out = out;
    buf_reset(out);
    buf_appendcstr(out, SIEVE_BC_MAGIC);
    put_u8(&g, SIEVE_BC_VERSION);
    put_u32(&g, 0);
    put_u32(&g, 0);
    emit_block(&g, script, 1);
    put_u8(&g, OP_END);
    patch_u32(&g, 5, (uint32_t)(g.all_required >> 32));
    patch_u32(&g, 9, (uint32_t)g.all_required);
    return p->nerrors ? ERR_SIEVE_SYNTAX : 0;
}

int sieve_compile(const char *text, size_t len, struct buf *bytecode,
                  struct buf *errors)
{
    struct sieve_parser p;
    struct sieve_node *script;
    int r;

    memset(&p, 0, sizeof(p));
    p.errors = errors;
    buf_reset(bytecode);
    script = sieve_parse(&p, text, len);
    if (p.nerrors) {
        r = ERR_SIEVE_SYNTAX;
    } else {
        r = sieve_generate(&p, script, sieve_enabled_extensions(),
                           bytecode);
    }
    sieve_node_free(script);
    if (r)
        buf_reset(bytecode);
    return r;
}

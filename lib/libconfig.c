/* imapd.conf: reading the file (with @include and per-service
 * overrides), validating every value against the option table, and the
 * typed lookups every program uses. */
/* Columba is free software; see COPYING for the licence. */

/*
 * File format
 * -----------
 * One setting per line, "key: value".  Leading and trailing white space
 * of the line, the key and the value is ignored; blank lines and lines
 * whose first non-blank byte is '#' are skipped.  A line may hold at
 * most CONFIG_MAX_LINE bytes, a file CONFIG_MAX_FILE bytes; NUL and
 * other control bytes (except TAB and a CR before the newline) are
 * errors, so a binary file is refused at its first line.
 *
 * Keys are case-sensitive.  A key is one of:
 *   - an option of lib/imapopts.def ("configdirectory");
 *   - "@include": read the named file at this point (a relative path is
 *     taken from the including file's directory), at most
 *     CONFIG_MAX_INCLUDE_DEPTH deep, never a file that is already being
 *     read (a loop), and at most CONFIG_MAX_FILES files in all;
 *   - a family member: partition-NAME, metapartition-NAME,
 *     archivepartition-NAME, backuppartition-NAME, sasl_ANYTHING;
 *   - an override "PREFIX_OPTION" of a known option or family member,
 *     where PREFIX is a service name from cyrus.conf or a replication
 *     channel ("imaps_tls_server_cert", "backup_sync_host").  For the
 *     service given to config_read()/config_set_service() it replaces
 *     the plain key.
 * Anything else is logged as a warning and kept as a free-form key.
 * When a key appears twice, the later line wins.
 *
 * Every value of a known option (or override) is parsed when the file
 * is read, so a bad value fails config_read() with file, line and
 * option named, and the lookups themselves cannot fail.  Defaults from
 * the table go through the same parser.
 *
 * State
 * -----
 * A read builds a fresh struct config and only replaces the current one
 * when everything succeeded, so a failed re-read keeps the old values.
 * Raw keys are sorted by name (last definition kept) for bsearch; the
 * effective value of every table option for the current service is
 * resolved into vals[] after each read and each service change.
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/strarray.h"
#include "lib/xmalloc.h"

#include "lib/libconfig.h"

/* The option table, indexed by enum imapopt. */
static const struct imapopt_info opt_table[IMAPOPT_LAST] = {
#define IMAPOPT_ENTRY(id, name, type, def, choices, unit, flag, text) \
    [IMAPOPT_##id] = { name, OPTTYPE_##type, def, choices, unit,      \
                       OPTFLAG_##flag, text },
#include "lib/imapopts.def"
#undef IMAPOPT_ENTRY
};

/* Family prefixes whose members are free-form keys. */
static const char *const families[] = {
    "partition-", "metapartition-", "archivepartition-",
    "backuppartition-", "sasl_", NULL
};

/* One key as read from the files. */
struct rawkey {
    char *key;
    char *value;
    const char *file;   /* owned by config.files */
    unsigned line;
    size_t seq;         /* reading order, for "later wins" */
};

/* The effective value of one table option. */
struct optval {
    const char *text;   /* NULL when unset; points into raw or table */
    char *owned;        /* expanded default, when text points here */
    int64_t num;        /* INT, SWITCH, ENUM/choice index, seconds, bytes */
    uint64_t bits;      /* BITFIELD */
    ssize_t src;        /* index into raw[] of the setting key, or -1 */
};

struct config {
    char *filename;
    strarray_t files;           /* every file read, for rawkey.file */
    struct rawkey *raw;
    size_t nraw;
    size_t rawalloc;
    strarray_t warnings;
    struct optval vals[IMAPOPT_LAST];
};

/* Parse state of one config_read(). */
struct reader {
    struct config *c;
    struct buf *err;
    dev_t devs[CONFIG_MAX_INCLUDE_DEPTH + 1];
    ino_t inos[CONFIG_MAX_INCLUDE_DEPTH + 1];
    int depth;
    int nfiles;
};

static struct config *cur;
static char *cur_service;
static struct buf errbuf = BUF_INITIALIZER;

/* ---------------------------------------------------------------- */
/* Table lookups                                                      */

static const enum imapopt *sorted_index(void)
{
    static enum imapopt idx[IMAPOPT_LAST];
    static int ready;
    int i, j;

    if (ready)
        return idx;
    /* Insertion sort: the table is small and this runs once. */
    for (i = 1; i < IMAPOPT_LAST; i++) {
        enum imapopt o = (enum imapopt)i;

        for (j = i - 1; j > 0 && strcmp(opt_table[idx[j]].name,
                                        opt_table[o].name) > 0; j--)
            idx[j + 1] = idx[j];
        idx[j + 1] = o;
    }
    ready = 1;
    return idx;
}

/* The option named by `name` (length len), or IMAPOPT_ZERO. */
static enum imapopt lookup_n(const char *name, size_t len)
{
    const enum imapopt *idx = sorted_index();
    int lo = 1, hi = IMAPOPT_LAST - 1;

    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const char *n = opt_table[idx[mid]].name;
        int cmp = strncmp(n, name, len);

        if (!cmp && n[len])
            cmp = 1;
        if (!cmp)
            return idx[mid];
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return IMAPOPT_ZERO;
}

enum imapopt config_lookup(const char *name)
{
    if (!name)
        return IMAPOPT_ZERO;
    return lookup_n(name, strlen(name));
}

const struct imapopt_info *config_optinfo(enum imapopt opt)
{
    if (opt <= IMAPOPT_ZERO || opt >= IMAPOPT_LAST)
        return NULL;
    return &opt_table[opt];
}

const char *config_typename(enum imapopt_type type)
{
    switch (type) {
    case OPTTYPE_STRING: return "string";
    case OPTTYPE_INT: return "int";
    case OPTTYPE_SWITCH: return "switch";
    case OPTTYPE_ENUM: return "enum";
    case OPTTYPE_STRINGLIST: return "stringlist";
    case OPTTYPE_BITFIELD: return "bitfield";
    case OPTTYPE_DURATION: return "duration";
    case OPTTYPE_BYTESIZE: return "bytesize";
    }
    return "unknown";
}

/* Is `key` a member of a free-form family (with a non-empty name)? */
static int is_family(const char *key)
{
    int i;

    for (i = 0; families[i]; i++) {
        size_t n = strlen(families[i]);

        if (!strncmp(key, families[i], n) && key[n])
            return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- */
/* Value parsing                                                      */

/* Index of `word` (len bytes) in the space-separated `choices`,
 * compared ASCII case-insensitively, or -1. */
static int choice_index(const char *choices, const char *word, size_t len)
{
    const char *p = choices;
    int i = 0;

    while (p && *p) {
        const char *end = strchr(p, ' ');
        size_t n = end ? (size_t)(end - p) : strlen(p);

        if (n == len && !strncasecmp(p, word, len))
            return i;
        i++;
        p = end ? end + 1 : NULL;
    }
    return -1;
}

/* A copy of the idx-th word of `choices` (caller frees). */
static char *choice_word(const char *choices, int idx)
{
    const char *p = choices;
    size_t n;

    for (; idx > 0 && p; idx--) {
        p = strchr(p, ' ');
        if (p)
            p++;
    }
    if (!p)
        return xstrdup("");
    n = strcspn(p, " ");
    return xstrndup(p, n);
}

/* "a, b, c" from the space-separated choice list, for messages. */
static void append_choices(struct buf *out, const char *choices)
{
    const char *p;

    for (p = choices; *p; p++) {
        if (*p == ' ')
            buf_appendcstr(out, ", ");
        else
            buf_putc(out, *p);
    }
}

static int is_listsep(char c)
{
    return c == ' ' || c == '\t' || c == ',';
}

/* Accumulate the digits at *pp into *n; 0 or -1 on overflow/none. */
static int parse_digits(const char **pp, uint64_t *n_r)
{
    const char *p = *pp;
    uint64_t n = 0;

    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (n > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
            return -1;
        n = n * 10 + (uint64_t)(*p - '0');
    }
    *pp = p;
    *n_r = n;
    return 0;
}

/* Seconds in one duration unit, or 0 for an unknown unit. */
static int64_t duration_unit(int unit)
{
    switch (unit) {
    case 's': return 1;
    case 'm': return 60;
    case 'h': return 3600;
    case 'd': return 86400;
    }
    return 0;
}

/* Parse "90", "30s", "1h30m", "-1" (bare numbers in `defunit`). */
static int parse_duration(const char *s, int defunit, int64_t *secs_r)
{
    const char *p = s;
    int negative = 0;
    int64_t total = 0;

    if (*p == '-') {
        negative = 1;
        p++;
    }
    if (!*p)
        return -1;
    while (*p) {
        uint64_t n;
        int64_t mult, term;

        if (parse_digits(&p, &n) < 0 || n > INT64_MAX)
            return -1;
        if (!*p) {
            /* A bare number is only allowed as the whole value. */
            if (p != s + negative + strspn(s + negative, "0123456789"))
                return -1;
            mult = duration_unit(defunit);
        } else {
            mult = duration_unit(*p++);
        }
        if (!mult)
            return -1;
        if (__builtin_mul_overflow((int64_t)n, mult, &term) ||
            __builtin_add_overflow(total, term, &total))
            return -1;
    }
    *secs_r = negative ? -total : total;
    return 0;
}

/* Bytes in one size unit ("K", "KB", "KiB", ...), or 0. */
static int64_t bytesize_unit(const char *u)
{
    static const char units[] = "BKMGT";
    const char *hit;
    int64_t mult = 1;

    if (!*u)
        return 0;
    hit = strchr(units, u[0] & ~0x20);
    if (!hit || !*hit)
        return 0;
    if (*hit == 'B') {
        if (u[1])
            return 0;
        return 1;
    }
    if (u[1] && strcasecmp(u + 1, "B") && strcasecmp(u + 1, "iB"))
        return 0;
    for (; hit > units; hit--)
        mult *= 1024;
    return mult;
}

/* Parse "1024", "32K", "1GB" (bare numbers in `defunit`). */
static int parse_bytesize(const char *s, int defunit, int64_t *bytes_r)
{
    const char *p = s;
    uint64_t n;
    int64_t mult, total;
    char unitstr[2] = { (char)defunit, '\0' };

    if (parse_digits(&p, &n) < 0 || n > INT64_MAX)
        return -1;
    mult = bytesize_unit(*p ? p : unitstr);
    if (!mult)
        return -1;
    if (__builtin_mul_overflow((int64_t)n, mult, &total))
        return -1;
    *bytes_r = total;
    return 0;
}

static int parse_int(const char *s, int64_t *val_r)
{
    const char *p = s;
    uint64_t n;
    int negative = 0;

    if (*p == '-' || *p == '+')
        negative = (*p++ == '-');
    if (parse_digits(&p, &n) < 0 || *p)
        return -1;
    if (negative) {
        if (n > (uint64_t)INT64_MAX + 1)
            return -1;
        *val_r = n == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)n;
    } else {
        if (n > INT64_MAX)
            return -1;
        *val_r = (int64_t)n;
    }
    return 0;
}

static int parse_switch(const char *s, int64_t *val_r)
{
    static const char *const yes[] = { "yes", "on", "true", "1", NULL };
    static const char *const no[] = { "no", "off", "false", "0", NULL };
    int i;

    for (i = 0; yes[i]; i++) {
        if (!strcasecmp(s, yes[i])) {
            *val_r = 1;
            return 0;
        }
        if (!strcasecmp(s, no[i])) {
            *val_r = 0;
            return 0;
        }
    }
    return -1;
}

/* Parse a list of choice words into bits; names the bad word in why. */
static int parse_bitfield(const struct imapopt_info *info, const char *s,
                          uint64_t *bits_r, struct buf *why)
{
    const char *p = s;
    uint64_t bits = 0;

    while (*p) {
        size_t n;
        int i;

        while (is_listsep(*p))
            p++;
        if (!*p)
            break;
        for (n = 0; p[n] && !is_listsep(p[n]); n++)
            ;
        i = choice_index(info->choices, p, n);
        if (i < 0 || i >= 64) {
            buf_printf(why, "unknown value '%.*s' (allowed: ", (int)n, p);
            append_choices(why, info->choices);
            buf_putc(why, ')');
            return -1;
        }
        bits |= 1ULL << i;
        p += n;
    }
    *bits_r = bits;
    return 0;
}

/* Parse `s` as a value of option `info` into *val (num/bits).  Returns
 * 0, or -1 with the problem described in `why`. */
static int parse_value(const struct imapopt_info *info, const char *s,
                       struct optval *val, struct buf *why)
{
    int i;

    val->num = 0;
    val->bits = 0;
    switch (info->type) {
    case OPTTYPE_STRING:
        /* A closed set of strings is checked like an enum. */
        if (!info->choices)
            return 0;
        /* fall through */
    case OPTTYPE_ENUM:
        i = choice_index(info->choices, s, strlen(s));
        if (i < 0) {
            buf_printf(why, "invalid value '%s' (allowed: ", s);
            append_choices(why, info->choices);
            buf_putc(why, ')');
            return -1;
        }
        val->num = i;
        return 0;
    case OPTTYPE_STRINGLIST:
        return 0;
    case OPTTYPE_INT:
        if (parse_int(s, &val->num) < 0) {
            buf_printf(why, "'%s' is not an integer", s);
            return -1;
        }
        return 0;
    case OPTTYPE_SWITCH:
        if (parse_switch(s, &val->num) < 0) {
            buf_printf(why, "invalid switch value '%s' (use yes/no, "
                       "on/off, true/false or 1/0)", s);
            return -1;
        }
        return 0;
    case OPTTYPE_BITFIELD:
        return parse_bitfield(info, s, &val->bits, why);
    case OPTTYPE_DURATION:
        if (parse_duration(s, info->unit, &val->num) < 0) {
            buf_printf(why, "malformed duration '%s' (e.g. 30s, 15m, "
                       "1h30m, 7d; a bare number is in '%c')", s,
                       info->unit);
            return -1;
        }
        return 0;
    case OPTTYPE_BYTESIZE:
        if (parse_bytesize(s, info->unit, &val->num) < 0) {
            buf_printf(why, "malformed size '%s' (e.g. 1024, 32K, 10M, "
                       "1G; a bare number is in '%c')", s, info->unit);
            return -1;
        }
        return 0;
    }
    buf_printf(why, "option has no type");
    return -1;
}

/* ---------------------------------------------------------------- */
/* The configuration object                                           */

static void config_free(struct config **cp)
{
    struct config *c = *cp;
    size_t i;

    if (!c)
        return;
    for (i = 0; i < c->nraw; i++) {
        free(c->raw[i].key);
        free(c->raw[i].value);
    }
    free(c->raw);
    for (i = 0; i < IMAPOPT_LAST; i++)
        free(c->vals[i].owned);
    strarray_fini(&c->files);
    strarray_fini(&c->warnings);
    free(c->filename);
    free(c);
    *cp = NULL;
}

static void raw_append(struct config *c, const char *key, const char *value,
                       const char *file, unsigned line)
{
    struct rawkey *rk;

    if (c->nraw == c->rawalloc) {
        c->rawalloc = c->rawalloc ? c->rawalloc * 2 : 64;
        c->raw = xreallocarray(c->raw, c->rawalloc, sizeof(*c->raw));
    }
    rk = &c->raw[c->nraw];
    rk->key = xstrdup(key);
    rk->value = xstrdup(value);
    rk->file = file;
    rk->line = line;
    rk->seq = c->nraw;
    c->nraw++;
}

static int rawkey_cmp(const void *a, const void *b)
{
    const struct rawkey *ra = a, *rb = b;
    int cmp = strcmp(ra->key, rb->key);

    if (cmp)
        return cmp;
    return ra->seq < rb->seq ? -1 : ra->seq > rb->seq;
}

/* Sort the keys by name and keep only the last definition of each. */
static void raw_finish(struct config *c)
{
    size_t i, out = 0;

    if (c->nraw)
        qsort(c->raw, c->nraw, sizeof(*c->raw), rawkey_cmp);
    for (i = 0; i < c->nraw; i++) {
        if (i + 1 < c->nraw && !strcmp(c->raw[i].key, c->raw[i + 1].key)) {
            free(c->raw[i].key);
            free(c->raw[i].value);
            continue;
        }
        c->raw[out++] = c->raw[i];
    }
    c->nraw = out;
}

/* Index of `key` in the sorted raw keys, or -1. */
static ssize_t raw_find(const struct config *c, const char *key)
{
    size_t lo = 0, hi = c->nraw;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int cmp = strcmp(c->raw[mid].key, key);

        if (!cmp)
            return (ssize_t)mid;
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* Index of the service override "<service>_<key>", or -1. */
static ssize_t raw_find_service(const struct config *c, const char *key)
{
    struct buf b = BUF_INITIALIZER;
    ssize_t r;

    if (!cur_service || !*cur_service)
        return -1;
    buf_printf(&b, "%s_%s", cur_service, key);
    r = raw_find(c, buf_cstring(&b));
    buf_free(&b);
    return r;
}

/* Replace "{configdirectory}" in a default by the configured value. */
static char *expand_default(const char *def, const char *confdir)
{
    static const char token[] = "{configdirectory}";
    const char *hit = strstr(def, token);
    struct buf b = BUF_INITIALIZER;

    if (!hit || !confdir)
        return NULL;
    buf_appendmap(&b, def, (size_t)(hit - def));
    buf_appendcstr(&b, confdir);
    buf_appendcstr(&b, hit + sizeof(token) - 1);
    return buf_release(&b);
}

/* Work out the effective value of `opt` for the current service. */
static void resolve_one(struct config *c, enum imapopt opt)
{
    const struct imapopt_info *info = &opt_table[opt];
    struct optval *val = &c->vals[opt];
    struct buf why = BUF_INITIALIZER;
    ssize_t idx;

    xfree(val->owned);
    idx = raw_find_service(c, info->name);
    if (idx < 0)
        idx = raw_find(c, info->name);
    val->src = idx;
    if (idx >= 0) {
        val->text = c->raw[idx].value;
    } else {
        val->text = info->defvalue;
        if (info->defvalue && info->type == OPTTYPE_STRING) {
            val->owned = expand_default(info->defvalue,
                                        c->vals[IMAPOPT_CONFIGDIRECTORY].text);
            if (val->owned)
                val->text = val->owned;
        }
    }
    if (!val->text)
        goto done;
    if (parse_value(info, val->text, val, &why) < 0) {
        /* Values were checked when read and defaults by the unit tests:
         * reaching this is a bug in the table. */
        buf_printf(&why, " (option %s)", info->name);
        fatal(buf_cstring(&why), EX_FATAL_SOFTWARE);
    }
    if (info->choices && (info->type == OPTTYPE_ENUM ||
                          info->type == OPTTYPE_STRING)) {
        /* Hand out the table's spelling, whatever case was written. */
        free(val->owned);
        val->owned = choice_word(info->choices, (int)val->num);
        val->text = val->owned;
    }

done:
    buf_free(&why);
}

static void resolve_all(struct config *c)
{
    int i;

    /* configdirectory first: other defaults refer to it. */
    resolve_one(c, IMAPOPT_CONFIGDIRECTORY);
    for (i = 1; i < IMAPOPT_LAST; i++) {
        if (i != IMAPOPT_CONFIGDIRECTORY)
            resolve_one(c, (enum imapopt)i);
    }
}

/* The current configuration; the table defaults if nothing was read. */
static struct config *current(void)
{
    if (!cur) {
        cur = xzmalloc(sizeof(*cur));
        resolve_all(cur);
    }
    return cur;
}

/* ---------------------------------------------------------------- */
/* Reading files                                                      */

static int read_file(struct reader *rd, const char *path, unsigned depth,
                     const char *from, unsigned fromline);

/* Fail with "file:line: message" in rd->err. */
static int fail(struct reader *rd, const char *file, unsigned line,
                const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int fail(struct reader *rd, const char *file, unsigned line,
                const char *fmt, ...)
{
    va_list ap;

    buf_reset(rd->err);
    if (line)
        buf_printf(rd->err, "%s:%u: ", file, line);
    else
        buf_printf(rd->err, "%s: ", file);
    va_start(ap, fmt);
    buf_vprintf(rd->err, fmt, ap);
    va_end(ap);
    return ERR_CONFIG;
}

/* Check a value against option `opt` (set by key `key`). */
static int check_value(struct reader *rd, enum imapopt opt, const char *key,
                       const char *value, const char *file, unsigned line)
{
    struct buf why = BUF_INITIALIZER;
    struct optval scratch;
    int r = 0;

    if (parse_value(&opt_table[opt], value, &scratch, &why) < 0)
        r = fail(rd, file, line, "option %s: %s", key, buf_cstring(&why));
    buf_free(&why);
    return r;
}

/* Is `key` "PREFIX_X" with X a known option or family member?  Sets
 * *opt_r to the option (IMAPOPT_ZERO for a family member). */
static int is_override(const char *key, enum imapopt *opt_r)
{
    const char *p;

    for (p = strchr(key, '_'); p; p = strchr(p + 1, '_')) {
        if (p == key)
            continue;
        *opt_r = config_lookup(p + 1);
        if (*opt_r != IMAPOPT_ZERO || is_family(p + 1))
            return 1;
    }
    return 0;
}

static void warn_unknown(struct reader *rd, const char *key,
                         const char *file, unsigned line)
{
    struct buf msg = BUF_INITIALIZER;

    buf_printf(&msg, "%s:%u: unknown option %s", file, line, key);
    strarray_appendm(&rd->c->warnings, buf_release(&msg));
    xsyslog(LOG_WARNING, "unknown config option", "path=%s line=%u "
            "option=%s", file, line, log_escape(key, 100));
}

/* Resolve an @include target relative to the including file. */
static char *include_path(const char *from, const char *target)
{
    struct buf b = BUF_INITIALIZER;
    const char *slash = strrchr(from, '/');

    if (target[0] != '/' && slash)
        buf_appendmap(&b, from, (size_t)(slash - from + 1));
    buf_appendcstr(&b, target);
    return buf_release(&b);
}

static int valid_key(const char *key)
{
    const char *p;

    for (p = key; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' ||
              *p == '.'))
            return 0;
    }
    return p != key;
}

/* Handle one "key: value" setting. */
static int handle_setting(struct reader *rd, const char *key,
                          const char *value, const char *file,
                          unsigned line, unsigned depth)
{
    enum imapopt opt;
    int r = 0;

    if (!strcmp(key, "@include")) {
        char *path = include_path(file, value);

        r = read_file(rd, path, depth + 1, file, line);
        free(path);
        return r;
    }
    if (!valid_key(key))
        return fail(rd, file, line, "invalid option name '%s'", key);

    opt = config_lookup(key);
    if (opt != IMAPOPT_ZERO || is_override(key, &opt)) {
        if (opt != IMAPOPT_ZERO)
            r = check_value(rd, opt, key, value, file, line);
    } else if (!is_family(key)) {
        warn_unknown(rd, key, file, line);
    }
    if (!r)
        raw_append(rd->c, key, value, file, line);
    return r;
}

/* Check one line's bytes and split it; NULL key means "skip". */
static int parse_line(struct reader *rd, const char *file, unsigned lineno,
                      const char *line, size_t len, unsigned depth)
{
    struct buf key = BUF_INITIALIZER, value = BUF_INITIALIZER;
    const char *colon;
    size_t i;
    int r = 0;

    if (len && line[len - 1] == '\r')
        len--;
    if (len > CONFIG_MAX_LINE)
        return fail(rd, file, lineno, "line longer than %d bytes",
                    CONFIG_MAX_LINE);
    for (i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)line[i];

        if (!ch)
            return fail(rd, file, lineno, "NUL byte in line "
                        "(binary file?)");
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return fail(rd, file, lineno, "control character 0x%02x in "
                        "line", ch);
    }

    buf_setmap(&key, line, len);
    buf_trim(&key);
    if (!key.len || key.s[0] == '#')
        goto done;
    colon = memchr(key.s, ':', key.len);
    if (!colon) {
        r = fail(rd, file, lineno, "missing ':' after option name");
        goto done;
    }
    buf_setmap(&value, colon + 1, key.len - (size_t)(colon + 1 - key.s));
    buf_trim(&value);
    buf_truncate(&key, (size_t)(colon - key.s));
    buf_trim(&key);
    if (!key.len) {
        r = fail(rd, file, lineno, "missing option name before ':'");
        goto done;
    }
    if (!value.len) {
        r = fail(rd, file, lineno, "option %s: empty value",
                 buf_cstring(&key));
        goto done;
    }
    r = handle_setting(rd, buf_cstring(&key), buf_cstring(&value), file,
                       lineno, depth);

done:
    buf_free(&key);
    buf_free(&value);
    return r;
}

/* Parse a whole file's contents; `file` is owned by rd->c->files. */
static int parse_text(struct reader *rd, const char *file, const char *data,
                      size_t len, unsigned depth)
{
    size_t off = 0;
    unsigned lineno = 0;
    int r = 0;

    while (!r && off < len) {
        const char *nl = memchr(data + off, '\n', len - off);
        size_t linelen = nl ? (size_t)(nl - data - off) : len - off;

        lineno++;
        r = parse_line(rd, file, lineno, data + off, linelen, depth);
        off += linelen + 1;
    }
    return r;
}

/* Read all of fd (a regular file of at most CONFIG_MAX_FILE bytes). */
static int slurp(struct reader *rd, int fd, const char *path,
                 struct buf *out)
{
    char chunk[8192];
    ssize_t n;

    while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fail(rd, path, 0, "cannot read: %s", strerror(errno));
            return ERR_IO;
        }
        if (out->len + (size_t)n > CONFIG_MAX_FILE)
            return fail(rd, path, 0, "file larger than %d bytes",
                        CONFIG_MAX_FILE);
        buf_appendmap(out, chunk, (size_t)n);
    }
    return 0;
}

/* Open, check and parse one file (the top one at depth 0). */
static int read_file(struct reader *rd, const char *path, unsigned depth,
                     const char *from, unsigned fromline)
{
    struct buf data = BUF_INITIALIZER;
    struct stat st;
    const char *file;
    int fd = -1, i, r = 0;

    if (depth > CONFIG_MAX_INCLUDE_DEPTH)
        return fail(rd, from, fromline, "@include nested more than %d "
                    "deep", CONFIG_MAX_INCLUDE_DEPTH);
    if (++rd->nfiles > CONFIG_MAX_FILES)
        return fail(rd, from, fromline, "more than %d files included",
                    CONFIG_MAX_FILES);

    fd = open(path, O_RDONLY | O_NOCTTY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        if (from)
            fail(rd, from, fromline, "@include %s: %s", path,
                 strerror(errno));
        else
            fail(rd, path, 0, "cannot open: %s", strerror(errno));
        r = ERR_IO;
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        r = fail(rd, from ? from : path, fromline, "%s is not a regular "
                 "file", path);
        goto done;
    }
    for (i = 0; i < rd->depth; i++) {
        if (rd->devs[i] == st.st_dev && rd->inos[i] == st.st_ino) {
            r = fail(rd, from ? from : path, fromline, "@include loop: %s "
                     "is already being read", path);
            goto done;
        }
    }
    r = slurp(rd, fd, path, &data);
    if (r)
        goto done;

    strarray_append(&rd->c->files, path);
    file = strarray_nth(&rd->c->files, -1);
    rd->devs[rd->depth] = st.st_dev;
    rd->inos[rd->depth] = st.st_ino;
    rd->depth++;
    r = parse_text(rd, file, data.s ? data.s : "", data.len, depth);
    rd->depth--;

done:
    if (fd >= 0)
        close(fd);
    buf_free(&data);
    return r;
}

/* After all files: the required options must be there. */
static int check_required(struct reader *rd, const char *top)
{
    int i;

    for (i = 1; i < IMAPOPT_LAST; i++) {
        if (!(opt_table[i].flags & OPTFLAG_REQUIRED))
            continue;
        if (raw_find(rd->c, opt_table[i].name) < 0)
            return fail(rd, top, 0, "required option %s is not set",
                        opt_table[i].name);
    }
    return 0;
}

/* Make `c` the current configuration and resolve it. */
static void install(struct config *c, const char *service)
{
    config_free(&cur);
    cur = c;
    if (service) {
        free(cur_service);
        cur_service = xstrdup(service);
    }
    resolve_all(cur);
}

/* Shared tail of config_read and config_read_buffer. */
static int read_common(const char *name, const char *text, size_t len,
                       const char *service, const char **error_r)
{
    struct config *c = xzmalloc(sizeof(*c));
    struct reader rd;
    int r;

    memset(&rd, 0, sizeof(rd));
    rd.c = c;
    rd.err = &errbuf;
    buf_reset(&errbuf);
    c->filename = xstrdup(name);

    if (text) {
        strarray_append(&c->files, name);
        r = parse_text(&rd, strarray_nth(&c->files, 0), text, len, 0);
    } else {
        r = read_file(&rd, name, 0, NULL, 0);
    }
    if (!r) {
        raw_finish(c);
        r = check_required(&rd, name);
    }
    if (r) {
        config_free(&c);
        if (error_r)
            *error_r = buf_cstring(&errbuf);
        return r;
    }
    install(c, service);
    if (error_r)
        *error_r = NULL;
    return 0;
}

int config_read(const char *path, const char *service, const char **error_r)
{
    return read_common(path ? path : CONFIG_DEFAULT_PATH, NULL, 0, service,
                       error_r);
}

int config_read_buffer(const char *name, const char *text, size_t len,
                       const char *service, const char **error_r)
{
    if (!text) {
        buf_setcstr(&errbuf, "no configuration text");
        if (error_r)
            *error_r = buf_cstring(&errbuf);
        return ERR_INVALID;
    }
    return read_common(name ? name : "<config>", text, len, service,
                       error_r);
}

void config_set_service(const char *service)
{
    free(cur_service);
    cur_service = xstrdupnull(service);
    if (cur)
        resolve_all(cur);
}

const char *config_service(void)
{
    return cur_service;
}

const char *config_filename(void)
{
    return cur ? cur->filename : NULL;
}

void config_reset(void)
{
    config_free(&cur);
    xfree(cur_service);
    buf_free(&errbuf);
}

/* ---------------------------------------------------------------- */
/* Lookups                                                            */

/* The value slot of `opt`, checking it is one of the allowed types. */
static const struct optval *get(enum imapopt opt, const char *fn,
                                unsigned typemask)
{
    struct buf msg = BUF_INITIALIZER;

    if (opt > IMAPOPT_ZERO && opt < IMAPOPT_LAST &&
        (typemask & (1u << opt_table[opt].type)))
        return &current()->vals[opt];
    if (opt > IMAPOPT_ZERO && opt < IMAPOPT_LAST)
        buf_printf(&msg, "%s: option %s is of type %s", fn,
                   opt_table[opt].name,
                   config_typename(opt_table[opt].type));
    else
        buf_printf(&msg, "%s: no option number %d", fn, (int)opt);
    fatal(buf_cstring(&msg), EX_FATAL_SOFTWARE);
}

#define T(x) (1u << OPTTYPE_##x)

const char *config_getstring(enum imapopt opt)
{
    return get(opt, "config_getstring",
               T(STRING) | T(STRINGLIST) | T(ENUM) | T(BITFIELD))->text;
}

int64_t config_getint(enum imapopt opt)
{
    return get(opt, "config_getint", T(INT))->num;
}

int config_getswitch(enum imapopt opt)
{
    return (int)get(opt, "config_getswitch", T(SWITCH))->num;
}

int config_getenum(enum imapopt opt)
{
    return (int)get(opt, "config_getenum", T(ENUM))->num;
}

uint64_t config_getbitfield(enum imapopt opt)
{
    return get(opt, "config_getbitfield", T(BITFIELD))->bits;
}

int64_t config_getduration(enum imapopt opt, int defunit)
{
    const struct optval *val = get(opt, "config_getduration", T(DURATION));
    int64_t secs;

    if (!val->text || !defunit || defunit == opt_table[opt].unit)
        return val->num;
    if (!duration_unit(defunit))
        fatal("config_getduration: bad default unit", EX_FATAL_SOFTWARE);
    if (parse_duration(val->text, defunit, &secs) < 0)
        return val->text[0] == '-' ? INT64_MIN : INT64_MAX;
    return secs;
}

int64_t config_getbytesize(enum imapopt opt, int defunit)
{
    const struct optval *val = get(opt, "config_getbytesize", T(BYTESIZE));
    char unitstr[2] = { (char)defunit, '\0' };
    int64_t bytes;

    if (!val->text || !defunit || defunit == opt_table[opt].unit)
        return val->num;
    if (!bytesize_unit(unitstr))
        fatal("config_getbytesize: bad default unit", EX_FATAL_SOFTWARE);
    if (parse_bytesize(val->text, defunit, &bytes) < 0)
        return INT64_MAX;
    return bytes;
}

struct strarray *config_getstrarray(enum imapopt opt)
{
    const struct optval *val = get(opt, "config_getstrarray",
                                   T(STRINGLIST) | T(BITFIELD) | T(STRING));

    if (!val->text)
        return strarray_new();
    return strarray_split(val->text, " \t,", 1);
}

#undef T

const char *config_gettext(enum imapopt opt)
{
    if (opt <= IMAPOPT_ZERO || opt >= IMAPOPT_LAST)
        return NULL;
    return current()->vals[opt].text;
}

int config_isset(enum imapopt opt)
{
    if (opt <= IMAPOPT_ZERO || opt >= IMAPOPT_LAST)
        return 0;
    return current()->vals[opt].src >= 0;
}

int config_isdefault(enum imapopt opt)
{
    const struct optval *val;
    struct optval def;
    struct buf why = BUF_INITIALIZER;
    int same;

    if (!config_isset(opt))
        return 1;
    val = &current()->vals[opt];
    if (!opt_table[opt].defvalue)
        return 0;
    memset(&def, 0, sizeof(def));
    parse_value(&opt_table[opt], opt_table[opt].defvalue, &def, &why);
    buf_free(&why);
    switch (opt_table[opt].type) {
    case OPTTYPE_STRING:
        if (opt_table[opt].choices) {
            same = val->num == def.num;
            break;
        }
        /* fall through */
    case OPTTYPE_STRINGLIST:
        same = !strcmp(val->text, opt_table[opt].defvalue);
        break;
    case OPTTYPE_BITFIELD:
        same = val->bits == def.bits;
        break;
    default:
        same = val->num == def.num;
        break;
    }
    return same;
}

const char *config_source(enum imapopt opt, unsigned *line_r)
{
    const struct optval *val;

    if (opt <= IMAPOPT_ZERO || opt >= IMAPOPT_LAST)
        return NULL;
    val = &current()->vals[opt];
    if (val->src < 0)
        return NULL;
    if (line_r)
        *line_r = cur->raw[val->src].line;
    return cur->raw[val->src].file;
}

const struct strarray *config_warnings(void)
{
    return &current()->warnings;
}

const char *config_getoverflowstring(const char *key, const char *def)
{
    struct config *c = current();
    ssize_t idx;

    if (!key)
        return def;
    idx = raw_find_service(c, key);
    if (idx < 0)
        idx = raw_find(c, key);
    return idx >= 0 ? c->raw[idx].value : def;
}

/* "<family><name>" through the overflow keys. */
static const char *family_value(const char *family, const char *name)
{
    struct buf key = BUF_INITIALIZER;
    const char *v;

    if (!name || !*name)
        return NULL;
    buf_printf(&key, "%s%s", family, name);
    v = config_getoverflowstring(buf_cstring(&key), NULL);
    buf_free(&key);
    return v;
}

const char *config_partitiondir(const char *partition)
{
    return family_value("partition-", partition);
}

const char *config_metapartitiondir(const char *partition)
{
    return family_value("metapartition-", partition);
}

const char *config_archivepartitiondir(const char *partition)
{
    return family_value("archivepartition-", partition);
}

void config_foreach_prefix(const char *prefix,
                           void (*cb)(const char *key, const char *value,
                                      void *rock),
                           void *rock)
{
    struct config *c = current();
    size_t plen = prefix ? strlen(prefix) : 0;
    size_t slen = cur_service ? strlen(cur_service) : 0;
    size_t i;

    for (i = 0; i < c->nraw; i++) {
        const char *key = c->raw[i].key;
        ssize_t over;

        if (!plen) {
            cb(key, c->raw[i].value, rock);
            continue;
        }
        if (!strncmp(key, prefix, plen)) {
            /* A plain key: report it with the service's value. */
            over = raw_find_service(c, key);
            cb(key + plen, c->raw[over >= 0 ? over : (ssize_t)i].value,
               rock);
        } else if (slen && !strncmp(key, cur_service, slen) &&
                   key[slen] == '_' &&
                   !strncmp(key + slen + 1, prefix, plen) &&
                   raw_find(c, key + slen + 1) < 0) {
            /* Set only for this service. */
            cb(key + slen + 1 + plen, c->raw[i].value, rock);
        }
    }
}

const char *config_dir(void)
{
    return config_getstring(IMAPOPT_CONFIGDIRECTORY);
}

const char *config_defpartition(void)
{
    return config_getstring(IMAPOPT_DEFAULTPARTITION);
}

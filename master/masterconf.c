/* cyrus.conf: parse the master's service table (START, SERVICES, EVENTS,
 * DAEMON) into checked, typed entries. */
/* Columba is free software; see COPYING for the licence. */

/*
 * The file format, as accepted here:
 *
 *   file    := { blank | comment | section }
 *   section := SECTNAME "{" { entry | blank | comment } "}"
 *   entry   := NAME { key "=" value } EOL
 *   value   := bare-word | '"' { char | '\"' | '\\' } '"'
 *
 * SECTNAME is one of START, SERVICES, EVENTS, DAEMON (case-insensitive).
 * NAME is letters and digits only (it becomes part of option names such
 * as imaps_tls_server_cert).  A comment starts with '#' where a word
 * could start and runs to the end of the line.  An entry ends at the end
 * of its line; a closing brace may end the line of the last entry.
 * Every length is bounded (MASTERCONF_MAX_*), and any violation is an
 * error naming file and line, never a truncation.
 */

#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/error.h"
#include "lib/xmalloc.h"

#include "master/masterconf.h"

enum tok_type { TOK_EOF = 0, TOK_EOL, TOK_WORD, TOK_LBRACE, TOK_RBRACE };

struct token {
    enum tok_type type;
    char *text;                 /* TOK_WORD: unquoted text (owned) */
    unsigned lineno;
};

struct parser {
    const char *path;
    const char *p;              /* cursor */
    const char *end;
    const char *line_start;
    unsigned lineno;
    struct token tok;           /* current token */
    struct masterconf *conf;
    struct buf *why;
};

static const char *const section_names[] = {
    "START", "SERVICES", "EVENTS", "DAEMON"
};

const char *masterconf_section_name(enum masterconf_section section)
{
    if ((unsigned)section >= sizeof(section_names) / sizeof(*section_names))
        return "?";
    return section_names[section];
}

/* Record a parse error at `lineno`; always returns ERR_CONFIG. */
static int __attribute__((format(printf, 3, 4)))
perr(struct parser *ps, unsigned lineno, const char *fmt, ...)
{
    va_list ap;

    if (!ps->why)
        return ERR_CONFIG;
    buf_reset(ps->why);
    buf_printf(ps->why, "%s:%u: ", ps->path, lineno);
    va_start(ap, fmt);
    buf_vprintf(ps->why, fmt, ap);
    va_end(ap);
    return ERR_CONFIG;
}

/* Record a warning for the caller to log. */
static void __attribute__((format(printf, 3, 4)))
pwarn(struct parser *ps, unsigned lineno, const char *fmt, ...)
{
    struct buf b = BUF_INITIALIZER;
    va_list ap;

    buf_printf(&b, "%s:%u: ", ps->path, lineno);
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    strarray_appendm(&ps->conf->warnings, buf_release(&b));
}

/* Enforce the line-length bound on the line starting at ps->p. */
static int check_line(struct parser *ps)
{
    const char *nl = memchr(ps->p, '\n', ps->end - ps->p);
    size_t len = (nl ? nl : ps->end) - ps->p;

    if (len > MASTERCONF_MAX_LINE)
        return perr(ps, ps->lineno, "line too long (limit %d bytes)",
                    MASTERCONF_MAX_LINE);
    if (memchr(ps->p, '\0', len))
        return perr(ps, ps->lineno, "NUL byte in line");
    return 0;
}

/* Read a word (with embedded quoted parts) into ps->tok. */
static int lex_word(struct parser *ps)
{
    struct buf w = BUF_INITIALIZER;
    int r = 0;

    while (ps->p < ps->end) {
        char c = *ps->p;

        if (c == '"') {
            ps->p++;
            for (;;) {
                if (ps->p >= ps->end || *ps->p == '\n') {
                    r = perr(ps, ps->lineno, "unterminated quoted string");
                    goto done;
                }
                c = *ps->p++;
                if (c == '"')
                    break;
                if (c == '\\' && ps->p < ps->end &&
                    (*ps->p == '"' || *ps->p == '\\'))
                    c = *ps->p++;
                buf_putc(&w, c);
            }
            continue;
        }
        if (isspace((unsigned char)c) || c == '{' || c == '}')
            break;
        buf_putc(&w, c);
        ps->p++;
    }
    if (w.len > MASTERCONF_MAX_VALUE) {
        r = perr(ps, ps->lineno, "word too long (limit %d bytes)",
                 MASTERCONF_MAX_VALUE);
        goto done;
    }
    ps->tok.type = TOK_WORD;
    ps->tok.text = buf_release(&w);

done:
    buf_free(&w);
    return r;
}

/* Advance to the next token. */
static int lex(struct parser *ps)
{
    int r;

    xfree(ps->tok.text);
    for (;;) {
        if (ps->p >= ps->end) {
            ps->tok.type = TOK_EOF;
            ps->tok.lineno = ps->lineno;
            return 0;
        }
        if (*ps->p == '\n') {
            ps->tok.type = TOK_EOL;
            ps->tok.lineno = ps->lineno;
            ps->p++;
            ps->lineno++;
            return check_line(ps);
        }
        if (isspace((unsigned char)*ps->p)) {
            ps->p++;
            continue;
        }
        if (*ps->p == '#') {
            while (ps->p < ps->end && *ps->p != '\n')
                ps->p++;
            continue;
        }
        break;
    }

    ps->tok.lineno = ps->lineno;
    if (*ps->p == '{' || *ps->p == '}') {
        ps->tok.type = *ps->p == '{' ? TOK_LBRACE : TOK_RBRACE;
        ps->p++;
        return 0;
    }
    r = lex_word(ps);
    return r;
}

static int skip_eols(struct parser *ps)
{
    int r = 0;

    while (!r && ps->tok.type == TOK_EOL)
        r = lex(ps);
    return r;
}

/* Parse a decimal integer in [min, max]. */
static int parse_int(const char *s, long min, long max, long *val_r)
{
    char *end;
    long v;

    if (!*s || isspace((unsigned char)*s))
        return ERR_INVALID;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return ERR_INVALID;
    *val_r = v;
    return 0;
}

static int parse_bool(const char *s, int *val_r)
{
    static const char *const yes[] = { "1", "y", "yes", "t", "true", "on" };
    static const char *const no[] = { "0", "n", "no", "f", "false", "off" };
    size_t i;

    for (i = 0; i < sizeof(yes) / sizeof(*yes); i++) {
        if (!strcasecmp(s, yes[i])) {
            *val_r = 1;
            return 0;
        }
        if (!strcasecmp(s, no[i])) {
            *val_r = 0;
            return 0;
        }
    }
    return ERR_INVALID;
}

/* period=: bare number of minutes, or number with unit s/m/h/d. */
static int parse_period(const char *s, long *secs_r)
{
    char num[32];
    size_t len = strlen(s);
    long mult = 60;
    long v;

    if (!len || len >= sizeof(num))
        return ERR_INVALID;
    memcpy(num, s, len + 1);
    if (strchr("smhd", num[len - 1])) {
        mult = num[len - 1] == 's' ? 1 : num[len - 1] == 'm' ? 60 :
               num[len - 1] == 'h' ? 3600 : 86400;
        num[len - 1] = '\0';
    }
    if (strspn(num, "0123456789") != strlen(num))
        return ERR_INVALID;
    if (parse_int(num, 0, 10L * 366 * 86400 / mult, &v))
        return ERR_INVALID;
    *secs_r = v * mult;
    return 0;
}

/* at=HHMM. */
static int parse_at(const char *s, int *minutes_r)
{
    long v;

    if (strlen(s) != 4 || strspn(s, "0123456789") != 4)
        return ERR_INVALID;
    if (parse_int(s, 0, 2359, &v) || v % 100 > 59)
        return ERR_INVALID;
    *minutes_r = (int)(v / 100 * 60 + v % 100);
    return 0;
}

static int valid_port(const char *port, struct buf *why)
{
    long v;

    if (!*port) {
        buf_setcstr(why, "empty port");
        return ERR_CONFIG;
    }
    if (strspn(port, "0123456789") == strlen(port)) {
        if (parse_int(port, 1, 65535, &v)) {
            buf_printf(why, "port %s out of range 1-65535", port);
            return ERR_CONFIG;
        }
        return 0;
    }
    if (strlen(port) > MASTERCONF_MAX_NAME ||
        strspn(port, "abcdefghijklmnopqrstuvwxyz"
                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
            != strlen(port)) {
        buf_setcstr(why, "invalid port or service name");
        return ERR_CONFIG;
    }
    if (!getservbyname(port, "tcp")) {
        buf_printf(why, "unknown service name %s", port);
        return ERR_CONFIG;
    }
    return 0;
}

static int valid_host(const char *host, struct buf *why)
{
    if (!*host || strlen(host) > 255 ||
        strspn(host, "abcdefghijklmnopqrstuvwxyz"
                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_*")
            != strlen(host)) {
        buf_setcstr(why, "invalid host name");
        return ERR_CONFIG;
    }
    return 0;
}

void masterconf_listen_fini(struct masterconf_listen *l)
{
    if (!l)
        return;
    xfree(l->path);
    xfree(l->host);
    xfree(l->port);
    l->is_unix = 0;
}

int masterconf_parse_listen(const char *value, struct masterconf_listen *out,
                            struct buf *why)
{
    struct sockaddr_un sun;
    struct in6_addr a6;
    const char *colon;
    char *host = NULL;
    int r = 0;

    memset(out, 0, sizeof(*out));
    buf_reset(why);
    if (!*value) {
        buf_setcstr(why, "empty listen value");
        return ERR_CONFIG;
    }

    /* A Unix socket path. */
    if (value[0] == '/') {
        if (strlen(value) >= sizeof(sun.sun_path)) {
            buf_printf(why, "socket path longer than %zu bytes",
                       sizeof(sun.sun_path) - 1);
            return ERR_CONFIG;
        }
        out->is_unix = 1;
        out->path = xstrdup(value);
        return 0;
    }

    /* [v6addr]:port */
    if (value[0] == '[') {
        const char *close = strchr(value, ']');

        if (!close || close[1] != ':') {
            buf_setcstr(why, "expected [address]:port");
            return ERR_CONFIG;
        }
        host = xstrndup(value + 1, close - value - 1);
        if (inet_pton(AF_INET6, host, &a6) != 1) {
            buf_setcstr(why, "invalid IPv6 address");
            r = ERR_CONFIG;
            goto done;
        }
        colon = close + 1;
    }
    else if ((colon = strrchr(value, ':')) != NULL) {
        if (strchr(value, ':') != colon) {
            buf_setcstr(why, "IPv6 address must be written in brackets");
            return ERR_CONFIG;
        }
        host = xstrndup(value, colon - value);
        r = valid_host(host, why);
        if (r)
            goto done;
    }

    r = valid_port(colon ? colon + 1 : value, why);
    if (r)
        goto done;
    out->port = xstrdup(colon ? colon + 1 : value);
    if (host && strcmp(host, "*")) {
        out->host = host;
        host = NULL;
    }

done:
    free(host);
    return r;
}

int masterconf_split_cmd(const char *cmd, strarray_t *argv, struct buf *why)
{
    struct buf w = BUF_INITIALIZER;
    const char *p = cmd;
    int nwords = 0;
    int r = 0;

    buf_reset(why);
    while (*p) {
        char quote = 0;

        while (*p && isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        buf_reset(&w);
        for (; *p; p++) {
            if (quote) {
                if (*p == quote)
                    quote = 0;
                else if (*p == '\\' && quote == '"' && p[1])
                    buf_putc(&w, *++p);
                else
                    buf_putc(&w, *p);
                continue;
            }
            if (isspace((unsigned char)*p))
                break;
            if (*p == '"' || *p == '\'')
                quote = *p;
            else if (*p == '\\' && p[1])
                buf_putc(&w, *++p);
            else
                buf_putc(&w, *p);
        }
        if (quote) {
            buf_setcstr(why, "unbalanced quote in cmd");
            r = ERR_CONFIG;
            goto done;
        }
        if (++nwords > MASTERCONF_MAX_ARGS) {
            buf_printf(why, "cmd has more than %d words", MASTERCONF_MAX_ARGS);
            r = ERR_CONFIG;
            goto done;
        }
        strarray_append(argv, buf_cstring(&w));
    }
    if (!nwords) {
        buf_setcstr(why, "empty cmd");
        r = ERR_CONFIG;
    }

done:
    buf_free(&w);
    return r;
}

static void entry_fini(struct masterconf_entry *e)
{
    free(e->name);
    free(e->cmdline);
    strarray_fini(&e->argv);
    free(e->listen_raw);
    masterconf_listen_fini(&e->listen);
}

void masterconf_free(struct masterconf **confp)
{
    struct masterconf *conf;
    size_t i;

    if (!confp || !*confp)
        return;
    conf = *confp;
    for (i = 0; i < conf->count; i++)
        entry_fini(&conf->entries[i]);
    free(conf->entries);
    free(conf->path);
    strarray_fini(&conf->warnings);
    free(conf);
    *confp = NULL;
}

const struct masterconf_entry *
masterconf_find(const struct masterconf *conf,
                enum masterconf_section section, const char *name)
{
    size_t i;

    for (i = 0; conf && i < conf->count; i++) {
        if (conf->entries[i].section == section &&
            !strcmp(conf->entries[i].name, name))
            return &conf->entries[i];
    }
    return NULL;
}

/* Which section uses a key; -1 for keys every section takes (cmd),
 * -2 for unknown keys. */
static int key_section(const char *key)
{
    static const struct { const char *key; int section; } keys[] = {
        { "cmd", -1 },
        { "listen", MASTERCONF_SERVICES },
        { "proto", MASTERCONF_SERVICES },
        { "prefork", MASTERCONF_SERVICES },
        { "maxchild", MASTERCONF_SERVICES },
        { "maxfds", MASTERCONF_SERVICES },
        { "maxforkrate", MASTERCONF_SERVICES },
        { "babysit", MASTERCONF_SERVICES },
        { "period", MASTERCONF_EVENTS },
        { "at", MASTERCONF_EVENTS },
        { "wait", MASTERCONF_DAEMON },
    };
    size_t i;

    for (i = 0; i < sizeof(keys) / sizeof(*keys); i++) {
        if (!strcmp(keys[i].key, key))
            return keys[i].section;
    }
    return -2;
}

/* Apply one key=value to an entry of a section that uses the key. */
static int apply_key(struct parser *ps, struct masterconf_entry *e,
                     const char *key, const char *value, unsigned lineno)
{
    struct buf why = BUF_INITIALIZER;
    long v;
    int r = 0;

    if (!strcmp(key, "cmd")) {
        e->cmdline = xstrdup(value);
        r = masterconf_split_cmd(value, &e->argv, &why);
    }
    else if (!strcmp(key, "listen")) {
        e->listen_raw = xstrdup(value);
        r = masterconf_parse_listen(value, &e->listen, &why);
    }
    else if (!strcmp(key, "proto")) {
        if (!strcasecmp(value, "tcp"))
            e->proto = MASTERCONF_PROTO_TCP;
        else if (!strcasecmp(value, "tcp4"))
            e->proto = MASTERCONF_PROTO_TCP4;
        else if (!strcasecmp(value, "tcp6"))
            e->proto = MASTERCONF_PROTO_TCP6;
        else {
            buf_setcstr(&why, "proto must be tcp, tcp4 or tcp6");
            r = ERR_CONFIG;
        }
    }
    else if (!strcmp(key, "prefork") || !strcmp(key, "maxchild") ||
             !strcmp(key, "maxfds") || !strcmp(key, "maxforkrate")) {
        int is_maxchild = !strcmp(key, "maxchild");

        r = parse_int(value, is_maxchild ? -1 : 0, 1000000, &v);
        if (r)
            buf_printf(&why, "%s must be an integer from %d to 1000000",
                       key, is_maxchild ? -1 : 0);
        else if (is_maxchild)
            e->maxchild = (int)v;
        else if (!strcmp(key, "prefork"))
            e->prefork = (int)v;
        else if (!strcmp(key, "maxfds"))
            e->maxfds = (int)v;
        else
            e->maxforkrate = (int)v;
    }
    else if (!strcmp(key, "babysit") || !strcmp(key, "wait")) {
        r = parse_bool(value, key[0] == 'b' ? &e->babysit : &e->wait);
        if (r)
            buf_printf(&why, "%s must be y or n", key);
    }
    else if (!strcmp(key, "period")) {
        r = parse_period(value, &e->period);
        if (r)
            buf_setcstr(&why, "period must be minutes, or a number with "
                              "unit s, m, h or d");
    }
    else if (!strcmp(key, "at")) {
        r = parse_at(value, &e->at);
        if (r)
            buf_setcstr(&why, "at must be HHMM from 0000 to 2359");
    }

    if (r)
        r = perr(ps, lineno, "%s %s: %s", masterconf_section_name(e->section),
                 e->name, buf_cstring(&why));
    buf_free(&why);
    return r;
}

/* Handle one key=value word of an entry. */
static int entry_keyvalue(struct parser *ps, struct masterconf_entry *e,
                          strarray_t *seen, const char *word,
                          unsigned lineno)
{
    const char *eq = strchr(word, '=');
    char key[MASTERCONF_MAX_NAME + 1];
    size_t klen;
    int sect;

    if (!eq || eq == word)
        return perr(ps, lineno, "%s: expected key=value, got \"%.40s\"",
                    e->name, word);
    klen = eq - word;
    if (klen > MASTERCONF_MAX_NAME)
        return perr(ps, lineno, "%s: key too long", e->name);
    memcpy(key, word, klen);
    key[klen] = '\0';
    if (strspn(key, "abcdefghijklmnopqrstuvwxyz_") != klen)
        return perr(ps, lineno, "%s: invalid key \"%.40s\"", e->name, key);
    if (strarray_find(seen, key, 0) >= 0)
        return perr(ps, lineno, "%s: %s given twice", e->name, key);
    if (seen->count >= MASTERCONF_MAX_KEYS)
        return perr(ps, lineno, "%s: too many keys (limit %d)", e->name,
                    MASTERCONF_MAX_KEYS);
    strarray_append(seen, key);

    sect = key_section(key);
    if (sect == -2) {
        pwarn(ps, lineno, "%s: unknown key %s ignored", e->name, key);
        return 0;
    }
    if (sect >= 0 && sect != (int)e->section) {
        pwarn(ps, lineno, "%s: key %s is not used in %s", e->name, key,
              masterconf_section_name(e->section));
        return 0;
    }
    return apply_key(ps, e, key, eq + 1, lineno);
}

/* Check an entry's required keys once its line is complete. */
static int entry_finish(struct parser *ps, struct masterconf_entry *e)
{
    if (!e->cmdline)
        return perr(ps, e->lineno, "%s: missing cmd=", e->name);
    if (e->section == MASTERCONF_SERVICES) {
        if (!e->listen_raw)
            return perr(ps, e->lineno, "%s: missing listen=", e->name);
        if (e->maxchild >= 0 && e->prefork > e->maxchild)
            return perr(ps, e->lineno, "%s: prefork %d exceeds maxchild %d",
                        e->name, e->prefork, e->maxchild);
    }
    if (masterconf_find(ps->conf, e->section, e->name) != e)
        return perr(ps, e->lineno, "%s: duplicate name in %s", e->name,
                    masterconf_section_name(e->section));
    return 0;
}

static int valid_name(const char *name)
{
    size_t len = strlen(name);

    return len > 0 && len <= MASTERCONF_MAX_NAME &&
           strspn(name, "abcdefghijklmnopqrstuvwxyz"
                        "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") == len;
}

/* Parse one entry line; the current token is its name. */
static int parse_entry(struct parser *ps, enum masterconf_section section)
{
    strarray_t seen = STRARRAY_INITIALIZER;
    struct masterconf_entry *e;
    int r;

    if (!valid_name(ps->tok.text))
        return perr(ps, ps->tok.lineno,
                    "invalid entry name \"%.40s\" (letters and digits only, "
                    "at most %d)", ps->tok.text, MASTERCONF_MAX_NAME);
    if (ps->conf->count >= MASTERCONF_MAX_ENTRIES)
        return perr(ps, ps->tok.lineno, "too many entries (limit %d)",
                    MASTERCONF_MAX_ENTRIES);

    ps->conf->entries = xreallocarray(ps->conf->entries,
                                      ps->conf->count + 1,
                                      sizeof(*ps->conf->entries));
    e = &ps->conf->entries[ps->conf->count++];
    memset(e, 0, sizeof(*e));
    e->section = section;
    e->name = xstrdup(ps->tok.text);
    e->lineno = ps->tok.lineno;
    e->maxchild = -1;
    e->at = -1;

    for (;;) {
        r = lex(ps);
        if (r)
            goto done;
        if (ps->tok.type != TOK_WORD)
            break;
        r = entry_keyvalue(ps, e, &seen, ps->tok.text, ps->tok.lineno);
        if (r)
            goto done;
    }
    if (ps->tok.type == TOK_LBRACE) {
        r = perr(ps, ps->tok.lineno, "unexpected '{' in entry %s", e->name);
        goto done;
    }
    r = entry_finish(ps, e);

done:
    strarray_fini(&seen);
    return r;
}

static int section_lookup(const char *word, enum masterconf_section *sect_r)
{
    size_t i;

    for (i = 0; i < sizeof(section_names) / sizeof(*section_names); i++) {
        if (!strcasecmp(word, section_names[i])) {
            *sect_r = (enum masterconf_section)i;
            return 0;
        }
    }
    return ERR_NOTFOUND;
}

/* Parse "NAME { entries }"; the current token is NAME. */
static int parse_section(struct parser *ps)
{
    enum masterconf_section sect;
    unsigned open_line = ps->tok.lineno;
    int r;

    if (ps->tok.type != TOK_WORD)
        return perr(ps, ps->tok.lineno, "expected a section name");
    if (section_lookup(ps->tok.text, &sect))
        return perr(ps, ps->tok.lineno, "unknown section \"%.40s\"",
                    ps->tok.text);
    r = lex(ps);
    if (!r)
        r = skip_eols(ps);
    if (r)
        return r;
    if (ps->tok.type != TOK_LBRACE)
        return perr(ps, ps->tok.lineno, "expected '{' after %s",
                    section_names[sect]);

    r = lex(ps);
    for (;;) {
        if (!r)
            r = skip_eols(ps);
        if (r)
            return r;
        switch (ps->tok.type) {
        case TOK_RBRACE:
            return lex(ps);
        case TOK_EOF:
            return perr(ps, open_line, "section %s has no closing '}'",
                        section_names[sect]);
        case TOK_LBRACE:
            return perr(ps, ps->tok.lineno, "unexpected '{'");
        default:
            r = parse_entry(ps, sect);
            break;
        }
    }
}

int masterconf_parse(const char *path, const char *text, size_t len,
                     struct masterconf **conf_r, struct buf *why)
{
    struct parser ps;
    int r;

    *conf_r = NULL;
    memset(&ps, 0, sizeof(ps));
    ps.path = path ? path : "cyrus.conf";
    ps.p = text;
    ps.end = text + len;
    ps.lineno = 1;
    ps.why = why;
    ps.conf = xzmalloc(sizeof(*ps.conf));
    ps.conf->path = xstrdup(ps.path);

    if (len > MASTERCONF_MAX_FILE) {
        r = perr(&ps, 0, "file larger than %d bytes", MASTERCONF_MAX_FILE);
        goto done;
    }
    r = check_line(&ps);
    if (!r)
        r = lex(&ps);
    while (!r) {
        r = skip_eols(&ps);
        if (r || ps.tok.type == TOK_EOF)
            break;
        r = parse_section(&ps);
    }

done:
    xfree(ps.tok.text);
    if (r)
        masterconf_free(&ps.conf);
    *conf_r = ps.conf;
    return r;
}

int masterconf_read(const char *path, struct masterconf **conf_r,
                    struct buf *why)
{
    struct buf text = BUF_INITIALIZER;
    struct stat st;
    char chunk[8192];
    ssize_t n;
    int fd = -1;
    int r = 0;

    *conf_r = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        buf_reset(why);
        buf_printf(why, "%s: cannot open: %s", path, strerror(errno));
        r = ERR_IO;
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        buf_reset(why);
        buf_printf(why, "%s: not a regular file", path);
        r = ERR_IO;
        goto done;
    }
    while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            buf_reset(why);
            buf_printf(why, "%s: read: %s", path, strerror(errno));
            r = ERR_IO;
            goto done;
        }
        if (text.len + n > MASTERCONF_MAX_FILE) {
            buf_reset(why);
            buf_printf(why, "%s: file larger than %d bytes", path,
                       MASTERCONF_MAX_FILE);
            r = ERR_TOOBIG;
            goto done;
        }
        buf_appendmap(&text, chunk, n);
    }
    r = masterconf_parse(path, text.s ? text.s : "", text.len, conf_r, why);

done:
    if (fd >= 0)
        close(fd);
    buf_free(&text);
    return r;
}

static int streq_null(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return !strcmp(a, b);
}

int masterconf_same_listener(const struct masterconf_entry *a,
                             const struct masterconf_entry *b)
{
    return streq_null(a->listen_raw, b->listen_raw) && a->proto == b->proto;
}

int masterconf_same_entry(const struct masterconf_entry *a,
                          const struct masterconf_entry *b)
{
    return a->section == b->section &&
           !strcmp(a->name, b->name) &&
           streq_null(a->cmdline, b->cmdline) &&
           masterconf_same_listener(a, b) &&
           a->prefork == b->prefork &&
           a->maxchild == b->maxchild &&
           a->maxfds == b->maxfds &&
           a->maxforkrate == b->maxforkrate &&
           a->babysit == b->babysit &&
           a->period == b->period &&
           a->at == b->at &&
           a->wait == b->wait;
}

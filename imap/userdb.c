/* Where the mail store's databases live: per-user files (seen state,
 * subscriptions) under the configuration directory, and the paths of the
 * system databases named by a *_db_path option. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <string.h>
#include <sys/stat.h>

#include "lib/buf.h"
#include "lib/cyrusdb.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/util.h"

#include "imap/userdb.h"

/* A user id split into local part and domain (pointers into the id;
 * domain NULL when the top-level tree applies). */
struct userparts {
    const char *local;
    size_t locallen;
    const char *domain;
    size_t domainlen;
};

/* May `s` (len bytes) be one path component of a database file? */
static int component_ok(const char *s, size_t len)
{
    size_t i;

    if (!len || s[0] == '.')
        return 0;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c < 0x20 || c == 0x7f || c == '/')
            return 0;
    }
    return 1;
}

/* Split and validate `userid` as described in the header. */
static int split_userid(const char *userid, struct userparts *p)
{
    const char *at;
    size_t len;

    if (!userid)
        return ERR_INVALID;
    len = strlen(userid);
    if (!len || len > USERDB_USERID_MAX)
        return ERR_INVALID;
    at = strchr(userid, '@');
    if (at && strchr(at + 1, '@'))
        return ERR_INVALID;

    memset(p, 0, sizeof(*p));
    p->local = userid;
    p->locallen = len;
    if (at && config_getenum(IMAPOPT_VIRTDOMAINS)
                  != IMAP_ENUM_VIRTDOMAINS_OFF) {
        const char *def = config_getstring(IMAPOPT_DEFAULTDOMAIN);

        p->locallen = (size_t)(at - userid);
        p->domain = at + 1;
        p->domainlen = len - p->locallen - 1;
        if (!component_ok(p->domain, p->domainlen))
            return ERR_INVALID;
        if (def && strlen(def) == p->domainlen
            && !util_strncasecmp_ascii(def, p->domain, p->domainlen)) {
            p->domain = NULL;
            p->domainlen = 0;
        }
    }
    return component_ok(p->local, p->locallen) ? 0 : ERR_INVALID;
}

int userdb_check_userid(const char *userid)
{
    struct userparts p;

    return split_userid(userid, &p);
}

/* The hash letter of the first `len` bytes of `name`. */
static char hash_letter_n(const char *name, size_t len)
{
    if (config_getswitch(IMAPOPT_FULLDIRHASH)) {
        uint32_t h = 0;
        size_t i;

        for (i = 0; i < len && name[i] != '.'; i++)
            h = ((h << 3) ^ (h >> 5)) ^ (unsigned char)name[i];
        return (char)('A' + h % 23);
    }
    if (len && name[0] >= 'A' && name[0] <= 'Z')
        return (char)(name[0] - 'A' + 'a');
    if (len && name[0] >= 'a' && name[0] <= 'z')
        return name[0];
    return 'q';
}

char userdb_hash_letter(const char *name)
{
    return hash_letter_n(name, name ? strlen(name) : 0);
}

/* Append the local part with '.' written as '^'. */
static void append_local(struct buf *out, const struct userparts *p)
{
    size_t i;

    for (i = 0; i < p->locallen; i++)
        buf_putc(out, p->local[i] == '.' ? '^' : p->local[i]);
}

/* Append the domain in lower case. */
static void append_domain(struct buf *out, const struct userparts *p)
{
    size_t i;

    for (i = 0; i < p->domainlen; i++) {
        char c = p->domain[i];

        buf_putc(out, (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c);
    }
}

int userdb_path(const char *userid, const char *suffix, struct buf *out)
{
    struct userparts p;
    struct buf local = BUF_INITIALIZER;
    const char *dir = config_dir();
    int r;

    buf_reset(out);
    r = split_userid(userid, &p);
    if (r)
        goto done;
    if (!dir || !*dir) {
        r = ERR_CONFIG;
        goto done;
    }

    buf_appendcstr(out, dir);
    if (p.domain) {
        struct buf dom = BUF_INITIALIZER;

        append_domain(&dom, &p);
        buf_printf(out, "/domain/%c/%s",
                   hash_letter_n(dom.s, dom.len), buf_cstring(&dom));
        buf_free(&dom);
    }
    append_local(&local, &p);
    buf_printf(out, "/user/%c/%s%s", hash_letter_n(local.s, local.len),
               buf_cstring(&local), suffix ? suffix : "");

done:
    buf_free(&local);
    return r;
}

int userdb_inbox(const char *userid, struct buf *out)
{
    struct userparts p;
    int r;

    buf_reset(out);
    r = split_userid(userid, &p);
    if (r)
        return r;
    if (p.domain) {
        append_domain(out, &p);
        buf_putc(out, '!');
    }
    buf_appendcstr(out, "user.");
    append_local(out, &p);
    return 0;
}

int userdb_system_path(enum imapopt pathopt, const char *basename,
                       struct buf *out)
{
    const char *path = config_getstring(pathopt);
    const char *dir = config_dir();

    buf_reset(out);
    if (path && *path) {
        buf_appendcstr(out, path);
        return 0;
    }
    if (!dir || !*dir)
        return ERR_CONFIG;
    buf_printf(out, "%s/%s", dir, basename);
    return 0;
}

int userdb_mkparents(const char *path)
{
    return util_mkdir_parents(path, 0750);
}

int userdb_exists(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0;
}

int userdb_remove(const char *backend, const char *path)
{
    int r;

    if (!userdb_exists(path))
        return 0;
    r = cyrusdb_unlink(backend, path, 0);
    if (r == ERR_NOTFOUND)
        r = 0;
    if (r) {
        xsyslog(LOG_ERR, "db unlink failed", "path=%s error=%s", path,
                error_message(r));
    }
    return r;
}

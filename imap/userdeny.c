/* The user deny list: users an administrator has shut out of some or
 * all services, with the message they are given. */
/* Columba is free software; see COPYING for the licence. */

/*
 * THE USER DENY DATABASE ("user_deny.db")
 *
 * Backend userdeny_db (default flat), file userdeny_db_path or
 * {configdirectory}/user_deny.db.  One record per denied user:
 *
 *   key   = user id
 *   value = version TAB services TAB message      (version "2")
 *
 *   e.g. "2\timap,pop3\tYour account is suspended"
 *
 * services is a pattern list (see imap/userdeny.h); message is shown to
 * the client and may be empty (then USERDENY_DEFAULT_MESSAGE is shown).
 * Neither may hold TAB, CR or LF.  A value that does not start with
 * "2" TAB, or lacks the second TAB, cannot be read: the user is denied
 * every service with the default message, since the entry's presence
 * shows the administrator's intent.
 *
 * The database is opened for each call: it is consulted once per login,
 * and a short open means cyr_deny's changes are seen at once.
 */

#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/cyrusdb.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#include "imap/userdb.h"
#include "imap/userdeny.h"

#define USERDENY_VERSION "2"

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* Glob match of pattern p[0..plen) against s, ASCII case-insensitive.
 * Greedy with one backtrack point: linear in practice, never
 * recursive, so a hostile pattern cannot exhaust the stack. */
static int glob_match(const char *p, size_t plen, const char *s)
{
    size_t pi = 0, si = 0, slen = strlen(s);
    size_t star_p = (size_t)-1, star_s = 0;

    while (si < slen) {
        if (pi < plen && p[pi] == '*') {
            star_p = pi++;
            star_s = si;
        }
        else if (pi < plen && (p[pi] == '?' || lower(p[pi]) == lower(s[si]))) {
            pi++;
            si++;
        }
        else if (star_p != (size_t)-1) {
            pi = star_p + 1;
            si = ++star_s;
        }
        else {
            return 0;
        }
    }
    while (pi < plen && p[pi] == '*')
        pi++;
    return pi == plen;
}

int userdeny_match_services(const char *patterns, const char *service)
{
    const char *p = patterns ? patterns : "";
    int denied = 0, any = 0;

    if (!service)
        return 0;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *pat = p;
        int negate = 0;

        p += len + (end ? 1 : 0);
        while (len && (*pat == ' ' || *pat == '\t')) {
            pat++;
            len--;
        }
        while (len && (pat[len - 1] == ' ' || pat[len - 1] == '\t'))
            len--;
        if (!len)
            continue;
        any = 1;
        if (*pat == '!') {
            negate = 1;
            pat++;
            len--;
        }
        if (glob_match(pat, len, service))
            denied = !negate;
    }
    return any ? denied : 1;
}

/* Open the database; ERR_NOTFOUND when it is missing and !create. */
static int open_db(int create, struct db **db_r)
{
    struct buf path = BUF_INITIALIZER;
    int r;

    *db_r = NULL;
    r = userdb_system_path(IMAPOPT_USERDENY_DB_PATH, "user_deny.db", &path);
    if (!r && create)
        r = userdb_mkparents(buf_cstring(&path));
    if (!r) {
        r = cyrusdb_open(config_getstring(IMAPOPT_USERDENY_DB),
                         buf_cstring(&path), create ? CYRUSDB_CREATE : 0,
                         db_r);
    }
    if (r && r != ERR_NOTFOUND) {
        xsyslog(LOG_ERR, "userdeny db open failed", "path=%s error=%s",
                buf_cstring(&path), error_message(r));
    }
    buf_free(&path);
    return r;
}

static int userid_ok(const char *userid)
{
    size_t len = userid ? strlen(userid) : 0;

    return len > 0 && len <= USERDB_USERID_MAX;
}

/* Split a value into services and message (copied into the buffers).
 * Returns 0 or ERR_CORRUPT. */
static int decode_value(const char *data, size_t len, struct buf *services,
                        struct buf *message)
{
    const char *tab1, *tab2, *end = data + len;
    size_t vlen = strlen(USERDENY_VERSION);

    if (len <= vlen || memcmp(data, USERDENY_VERSION, vlen)
        || data[vlen] != '\t')
        return ERR_CORRUPT;
    tab1 = data + vlen;
    tab2 = memchr(tab1 + 1, '\t', (size_t)(end - tab1 - 1));
    if (!tab2 || memchr(tab2 + 1, '\t', (size_t)(end - tab2 - 1))
        || memchr(data, '\0', len))
        return ERR_CORRUPT;
    buf_setmap(services, tab1 + 1, (size_t)(tab2 - tab1 - 1));
    buf_setmap(message, tab2 + 1, (size_t)(end - tab2 - 1));
    return 0;
}

int userdeny_check(const char *userid, const char *service, char **msg_r)
{
    struct buf services = BUF_INITIALIZER, message = BUF_INITIALIZER;
    struct db *db = NULL;
    const char *data;
    size_t len;
    int r;

    if (msg_r)
        *msg_r = NULL;
    if (!userid_ok(userid))
        return 0;
    r = open_db(0, &db);
    if (!r)
        r = cyrusdb_fetch(db, userid, strlen(userid), &data, &len, NULL);
    if (r) {
        /* No entry, or no usable database: allowed (see header). */
        if (r != ERR_NOTFOUND) {
            xsyslog(LOG_ERR, "userdeny lookup failed", "user=%s error=%s",
                    log_escape(userid, 0), error_message(r));
        }
        r = 0;
        goto done;
    }

    if (decode_value(data, len, &services, &message)) {
        xsyslog(LOG_ERR, "userdeny entry unreadable, denying",
                "user=%s", log_escape(userid, 0));
        buf_reset(&services);
        buf_reset(&message);
    }
    if (!userdeny_match_services(buf_cstring(&services), service))
        goto done;

    r = ERR_PERMISSION;
    xsyslog(LOG_NOTICE, "user denied by user_deny.db", "user=%s service=%s",
            log_escape(userid, 0), log_escape(service, 0));
    if (msg_r) {
        *msg_r = xstrdup(message.len ? buf_cstring(&message)
                                     : USERDENY_DEFAULT_MESSAGE);
    }

done:
    cyrusdb_close(db);
    buf_free(&services);
    buf_free(&message);
    return r;
}

/* May `s` be stored as one field of a value? */
static int field_ok(const char *s, size_t max)
{
    return strlen(s) <= max && !strpbrk(s, "\t\r\n");
}

int userdeny_set(const char *userid, const char *services,
                 const char *message)
{
    struct buf val = BUF_INITIALIZER;
    struct db *db = NULL;
    int r;

    services = services && *services ? services : "*";
    message = message ? message : "";
    if (!userid_ok(userid) || !field_ok(services, USERDENY_SERVICES_MAX)
        || !field_ok(message, USERDENY_MESSAGE_MAX))
        return ERR_INVALID;

    buf_printf(&val, "%s\t%s\t%s", USERDENY_VERSION, services, message);
    r = open_db(1, &db);
    if (!r)
        r = cyrusdb_store(db, userid, strlen(userid), val.s, val.len, NULL);
    if (!r) {
        xsyslog(LOG_NOTICE, "user deny set", "user=%s services=%s",
                log_escape(userid, 0), log_escape(services, 0));
    }
    cyrusdb_close(db);
    buf_free(&val);
    return r;
}

int userdeny_remove(const char *userid)
{
    struct db *db = NULL;
    int r;

    if (!userid_ok(userid))
        return ERR_INVALID;
    r = open_db(0, &db);
    if (!r)
        r = cyrusdb_delete(db, userid, strlen(userid), NULL, 0);
    if (!r) {
        xsyslog(LOG_NOTICE, "user deny removed", "user=%s",
                log_escape(userid, 0));
    }
    cyrusdb_close(db);
    return r;
}

struct foreach_rock {
    userdeny_cb *cb;
    void *rock;
    struct buf user, services, message;
};

static int foreach_one(void *rock, const char *key, size_t keylen,
                       const char *data, size_t datalen)
{
    struct foreach_rock *fr = rock;

    buf_setmap(&fr->user, key, keylen);
    if (decode_value(data, datalen, &fr->services, &fr->message)) {
        xsyslog(LOG_ERR, "userdeny entry unreadable", "user=%s",
                log_escape(buf_cstring(&fr->user), 0));
        return 0;
    }
    return fr->cb(buf_cstring(&fr->user), buf_cstring(&fr->services),
                  buf_cstring(&fr->message), fr->rock);
}

int userdeny_foreach(userdeny_cb *cb, void *rock)
{
    struct foreach_rock fr = { cb, rock, BUF_INITIALIZER, BUF_INITIALIZER,
                               BUF_INITIALIZER };
    struct db *db = NULL;
    int r;

    r = open_db(0, &db);
    if (r == ERR_NOTFOUND)
        return 0;
    if (!r)
        r = cyrusdb_foreach(db, "", 0, NULL, foreach_one, &fr, NULL);
    cyrusdb_close(db);
    buf_free(&fr.user);
    buf_free(&fr.services);
    buf_free(&fr.message);
    return r;
}

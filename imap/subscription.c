/* Subscriptions: the mailboxes a user has subscribed to, kept in a
 * per-user database ({configdirectory}/user/<h>/<user>.sub). */
/* Columba is free software; see COPYING for the licence. */

/*
 * THE SUBSCRIPTION DATABASE
 *
 * One file per user (path in imap/userdb.h, suffix ".sub", backend
 * subscription_db, default flat so an administrator can read it).  One
 * record per subscribed mailbox: the key is the internal mailbox name,
 * the value is empty.  The file is opened in mailbox-name order
 * (CYRUSDB_MBOXSORT) so that LSUB lists a mailbox before its children.
 * A subscription may name a mailbox that does not exist (RFC 3501
 * 6.3.6 allows it); nothing here checks the mailbox list.
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

#include "imap/subscription.h"
#include "imap/userdb.h"

static const char *backend(void)
{
    return config_getstring(IMAPOPT_SUBSCRIPTION_DB);
}

/* Is `name` a mailbox name we store? */
static int name_ok(const char *name)
{
    size_t len, i;

    if (!name)
        return 0;
    len = strlen(name);
    if (!len || len > USERDB_MBOXNAME_MAX)
        return 0;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];

        if (c < 0x20 || c == 0x7f)
            return 0;
    }
    return 1;
}

/* Open `userid`'s database; ERR_NOTFOUND when missing and !create. */
static int open_subs(const char *userid, int create, struct db **db_r)
{
    struct buf path = BUF_INITIALIZER;
    int flags = CYRUSDB_MBOXSORT | (create ? CYRUSDB_CREATE : 0);
    int r;

    *db_r = NULL;
    r = userdb_path(userid, ".sub", &path);
    if (!r && create)
        r = userdb_mkparents(buf_cstring(&path));
    if (!r)
        r = cyrusdb_open(backend(), buf_cstring(&path), flags, db_r);
    if (r && r != ERR_NOTFOUND && r != ERR_INVALID) {
        xsyslog(LOG_ERR, "subscription db open failed",
                "user=%s path=%s error=%s", log_escape(userid, 0),
                buf_cstring(&path), error_message(r));
    }
    buf_free(&path);
    return r;
}

int subscription_add(const char *userid, const char *mboxname)
{
    struct db *db = NULL;
    int r;

    if (!name_ok(mboxname))
        return ERR_INVALID;
    r = open_subs(userid, 1, &db);
    if (!r)
        r = cyrusdb_store(db, mboxname, strlen(mboxname), "", 0, NULL);
    cyrusdb_close(db);
    return r;
}

int subscription_remove(const char *userid, const char *mboxname)
{
    struct db *db = NULL;
    int r;

    if (!name_ok(mboxname))
        return ERR_INVALID;
    r = open_subs(userid, 0, &db);
    if (!r)
        r = cyrusdb_delete(db, mboxname, strlen(mboxname), NULL, 0);
    cyrusdb_close(db);
    return r;
}

int subscription_is_subscribed(const char *userid, const char *mboxname,
                               int *is_r)
{
    struct db *db = NULL;
    const char *data;
    size_t len;
    int r;

    *is_r = 0;
    if (!name_ok(mboxname))
        return ERR_INVALID;
    r = open_subs(userid, 0, &db);
    if (!r)
        r = cyrusdb_fetch(db, mboxname, strlen(mboxname), &data, &len, NULL);
    cyrusdb_close(db);
    if (r == ERR_NOTFOUND)
        return 0;
    if (!r)
        *is_r = 1;
    return r;
}

struct foreach_rock {
    subscription_cb *cb;
    void *rock;
    struct buf name;
};

static int foreach_one(void *rock, const char *key, size_t keylen,
                       const char *data, size_t datalen)
{
    struct foreach_rock *fr = rock;

    (void)data;
    (void)datalen;
    buf_setmap(&fr->name, key, keylen);
    return fr->cb(buf_cstring(&fr->name), fr->rock);
}

int subscription_foreach(const char *userid, const char *prefix,
                         subscription_cb *cb, void *rock)
{
    struct foreach_rock fr = { cb, rock, BUF_INITIALIZER };
    struct db *db = NULL;
    int r;

    r = open_subs(userid, 0, &db);
    if (r == ERR_NOTFOUND)
        return 0;
    if (!r) {
        r = cyrusdb_foreach(db, prefix ? prefix : "",
                            prefix ? strlen(prefix) : 0, NULL, foreach_one,
                            &fr, NULL);
    }
    cyrusdb_close(db);
    buf_free(&fr.name);
    return r;
}

struct rename_rock {
    struct db *to;
    struct txn **tid;
    const char *oldinbox;   /* "user.old" */
    const char *newinbox;   /* "user.new" */
    struct buf key;
};

/* Copy one subscription, moving the old user's own mailboxes. */
static int rename_one(void *rock, const char *key, size_t keylen,
                      const char *data, size_t datalen)
{
    struct rename_rock *rr = rock;
    size_t olen = strlen(rr->oldinbox);

    (void)data;
    (void)datalen;
    buf_setmap(&rr->key, key, keylen);
    if (keylen >= olen && !memcmp(key, rr->oldinbox, olen)
        && (keylen == olen || key[olen] == '.')) {
        buf_setcstr(&rr->key, rr->newinbox);
        buf_appendmap(&rr->key, key + olen, keylen - olen);
        if (rr->key.len > USERDB_MBOXNAME_MAX) {
            /* The new name is too long to be a mailbox: drop it. */
            return 0;
        }
    }
    return cyrusdb_store(rr->to, rr->key.s, rr->key.len, "", 0, rr->tid);
}

int subscription_rename_user(const char *olduser, const char *newuser)
{
    struct buf newpath = BUF_INITIALIZER;
    struct buf oldinbox = BUF_INITIALIZER, newinbox = BUF_INITIALIZER;
    struct db *from = NULL, *to = NULL;
    struct txn *fromtid = NULL, *totid = NULL;
    struct rename_rock rr = { NULL, &totid, NULL, NULL, BUF_INITIALIZER };
    int r;

    r = userdb_path(newuser, ".sub", &newpath);
    if (!r)
        r = userdb_inbox(olduser, &oldinbox);
    if (!r)
        r = userdb_inbox(newuser, &newinbox);
    if (!r)
        r = open_subs(olduser, 0, &from);
    if (r == ERR_NOTFOUND)
        r = 0;
    if (r || !from)
        goto done;
    if (userdb_exists(buf_cstring(&newpath))) {
        r = ERR_EXISTS;
        goto done;
    }

    r = open_subs(newuser, 1, &to);
    if (r)
        goto done;
    rr.to = to;
    rr.oldinbox = buf_cstring(&oldinbox);
    rr.newinbox = buf_cstring(&newinbox);
    r = cyrusdb_foreach(from, "", 0, NULL, rename_one, &rr, &fromtid);
    if (!r && totid)
        r = cyrusdb_commit(to, totid);
    else if (totid)
        cyrusdb_abort(to, totid);
    if (!r) {
        xsyslog(LOG_NOTICE, "subscriptions copied", "user=%s newuser=%s",
                log_escape(olduser, 0), log_escape(newuser, 0));
    }

done:
    if (fromtid)
        cyrusdb_abort(from, fromtid);
    cyrusdb_close(from);
    cyrusdb_close(to);
    if (r && to)
        userdb_remove(backend(), buf_cstring(&newpath));
    buf_free(&rr.key);
    buf_free(&oldinbox);
    buf_free(&newinbox);
    buf_free(&newpath);
    return r;
}

int subscription_delete_user(const char *userid)
{
    struct buf path = BUF_INITIALIZER;
    int r;

    r = userdb_path(userid, ".sub", &path);
    if (!r)
        r = userdb_remove(backend(), buf_cstring(&path));
    buf_free(&path);
    return r;
}

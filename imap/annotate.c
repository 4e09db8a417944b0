/* Annotations and metadata (RFC 5464 METADATA): per-mailbox and server
 * entries, shared or private to one user, kept in annotations.db. */
/* Columba is free software; see COPYING for the licence. */

/*
 * THE ANNOTATION DATABASE ("annotations.db")
 *
 * Backend annotation_db (default twoskip), file annotation_db_path or
 * {configdirectory}/annotations.db, raw byte order.  One record per value:
 *
 *   key   = uniqueid NUL entry NUL userid
 *   value = "1" SP modseq SP bytes
 *
 * uniqueid is the mailbox's stable id from mailboxes.db (1 to
 * MAILBOX_MAX_UNIQUEID printable bytes), so a rename keeps the entries;
 * it is empty for server entries, whose keys therefore start with NUL.
 * entry is the name without "/shared" or "/private" ("/comment"), 2 to
 * ANNOTATE_ENTRY_MAX bytes, always starting with '/'.  userid is empty
 * for a shared value and names the owner of a private one (1 to
 * USERDB_USERID_MAX bytes).  In the value, "1" is the format version,
 * modseq an ASCII decimal and bytes the value itself (0 to
 * ANNOTATE_VALUE_MAX bytes, any content).
 *
 * Range scans this order gives:
 *   - every entry of a mailbox:      prefix uniqueid NUL
 *   - one entry, shared and private: prefix uniqueid NUL entry NUL
 *   - everything below an entry:     prefix uniqueid NUL entry "/"
 * The NUL after uniqueid keeps mailbox "abc" from matching "abcd"; the
 * NUL or '/' after entry keeps "/comment" from matching "/commentary".
 * annotate_delete_mailbox() is thus one prefix walk in one transaction.
 *
 * One more record holds the database-wide modseq counter:
 *
 *   key   = NUL NUL "modseq"          value = ASCII decimal
 *
 * It cannot collide with a server entry (their second byte is '/').
 * Every store takes the next modseq inside the same transaction.  A
 * deleted entry leaves no record (no tombstone).
 *
 * SPECIAL-USE (RFC 6154).  "/private/specialuse" is an attribute of the
 * mailbox, not of one reader: every user of a shared mailbox must see
 * the same \Sent or \Trash in LIST.  It is therefore stored once per
 * mailbox as the record (uniqueid, "/specialuse", "") and shown to every
 * user as a private entry; "/shared/specialuse" does not exist.
 *
 * LOCK ORDER.  A store that does quota accounting holds its
 * annotations.db transaction, then takes the quota root's lock, checks
 * the limit, commits the annotation and then the usage, so two
 * concurrent stores cannot both slip under the limit.  Nothing takes
 * these locks in the other order.
 */

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/cyrusdb.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/strarray.h"
#include "lib/util.h"
#include "lib/xmalloc.h"

#include "imap/acl.h"
#include "imap/annotate.h"
#include "imap/mailbox.h"
#include "imap/quota.h"
#include "imap/userdb.h"

#define ANNOTATE_VERSION '1'
#define MODSEQ_KEY "\0\0modseq"
#define MODSEQ_KEYLEN 8
#define SPECIALUSE_ENTRY "/specialuse"

static struct db *adb;
static char *adb_path;
static pid_t adb_pid;

/* Open the database (again if the configured file changed or we are a
 * forked child).  Returns 0 or a database error (logged). */
static int open_db(void)
{
    struct buf path = BUF_INITIALIZER;
    int r;

    r = userdb_system_path(IMAPOPT_ANNOTATION_DB_PATH, "annotations.db",
                           &path);
    if (r)
        goto done;
    if (adb && adb_pid != getpid())
        adb = NULL;    /* the parent's handle: leave it to the parent */
    if (adb && !strcmp(adb_path, buf_cstring(&path)))
        goto done;
    annotate_close();

    r = userdb_mkparents(buf_cstring(&path));
    if (!r) {
        r = cyrusdb_open(config_getstring(IMAPOPT_ANNOTATION_DB),
                         buf_cstring(&path), CYRUSDB_CREATE, &adb);
    }
    if (r) {
        xsyslog(LOG_ERR, "annotation db open failed", "path=%s error=%s",
                buf_cstring(&path), error_message(r));
        adb = NULL;
        goto done;
    }
    free(adb_path);
    adb_path = buf_release(&path);
    adb_pid = getpid();

done:
    buf_free(&path);
    return r;
}

void annotate_close(void)
{
    if (adb && adb_pid == getpid())
        cyrusdb_close(adb);
    adb = NULL;
    free(adb_path);
    adb_path = NULL;
}

/* ---- names ---- */

int annotate_check_entry(const char *entry)
{
    size_t len, i;

    if (!entry || entry[0] != '/')
        return ERR_INVALID;
    len = strlen(entry);
    if (len < 2 || len > ANNOTATE_ENTRY_MAX || entry[len - 1] == '/')
        return ERR_INVALID;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)entry[i];

        if (c < 0x20 || c > 0x7e || c == '*' || c == '%')
            return ERR_INVALID;
        if (c == '/' && entry[i + 1] == '/')
            return ERR_INVALID;
    }
    return 0;
}

/* Does `name` start with `prefix` (any case) followed by '/' or its end?
 * Sets *rest_r to what follows the prefix. */
static int has_scope_prefix(const char *name, const char *prefix,
                            const char **rest_r)
{
    size_t plen = strlen(prefix);

    if (strncasecmp(name, prefix, plen))
        return 0;
    if (name[plen] != '/' && name[plen] != '\0')
        return 0;
    *rest_r = name + plen;
    return 1;
}

/* Split a full name; `allow_root` accepts a bare "/shared" or
 * "/private" (entry_r left empty). */
static int split_name(const char *name, int allow_root,
                      enum annotate_scope *scope_r, struct buf *entry_r)
{
    const char *rest = NULL;

    buf_reset(entry_r);
    if (!name)
        return ERR_INVALID;
    if (has_scope_prefix(name, "/shared", &rest))
        *scope_r = ANNOTATE_SHARED;
    else if (has_scope_prefix(name, "/private", &rest))
        *scope_r = ANNOTATE_PRIVATE;
    else
        return ERR_INVALID;
    if (!*rest)
        return allow_root ? 0 : ERR_INVALID;
    if (annotate_check_entry(rest))
        return ERR_INVALID;
    buf_setcstr(entry_r, rest);
    buf_tolower(entry_r);
    return 0;
}

int annotate_parse_name(const char *name, enum annotate_scope *scope_r,
                        struct buf *entry_r)
{
    return split_name(name, 0, scope_r, entry_r);
}

/* Check the mailbox id and user id of a call; `*uniqueid` NULL becomes
 * "" (the server). */
static int check_ids(const char **uniqueid, enum annotate_scope scope,
                     const char *userid)
{
    size_t i, len;

    if (!*uniqueid)
        *uniqueid = "";
    len = strlen(*uniqueid);
    if (len > MAILBOX_MAX_UNIQUEID)
        return ERR_INVALID;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)(*uniqueid)[i];

        if (c <= 0x20 || c > 0x7e)
            return ERR_INVALID;
    }
    if (scope == ANNOTATE_PRIVATE
        && (!userid || !*userid || strlen(userid) > USERDB_USERID_MAX))
        return ERR_INVALID;
    return 0;
}

/* Build the key of one record into `key` (reset first). */
static int make_key(const char *uniqueid, const char *entry,
                    enum annotate_scope scope, const char *userid,
                    struct buf *key)
{
    int r;

    r = check_ids(&uniqueid, scope, userid);
    if (!r)
        r = annotate_check_entry(entry);
    if (r)
        return r;
    buf_reset(key);
    buf_appendcstr(key, uniqueid);
    buf_putc(key, '\0');
    buf_appendcstr(key, entry);
    buf_putc(key, '\0');
    if (scope == ANNOTATE_PRIVATE)
        buf_appendcstr(key, userid);
    return 0;
}

/* The parts of a stored key; pointers into the key, lengths given. */
struct key_parts {
    const char *uniqueid;
    size_t uidlen;
    const char *entry;
    size_t entrylen;
    const char *userid;
    size_t userlen;
};

/* Split a stored key.  Returns 0 or ERR_CORRUPT. */
static int split_key(const char *key, size_t keylen, struct key_parts *kp)
{
    const char *end = key + keylen;
    const char *nul1, *nul2;

    nul1 = memchr(key, '\0', keylen);
    if (!nul1)
        return ERR_CORRUPT;
    nul2 = memchr(nul1 + 1, '\0', (size_t)(end - nul1 - 1));
    if (!nul2 || nul1 + 1 == nul2 || nul1[1] != '/')
        return ERR_CORRUPT;
    if (memchr(nul2 + 1, '\0', (size_t)(end - nul2 - 1)))
        return ERR_CORRUPT;
    kp->uniqueid = key;
    kp->uidlen = (size_t)(nul1 - key);
    kp->entry = nul1 + 1;
    kp->entrylen = (size_t)(nul2 - nul1 - 1);
    kp->userid = nul2 + 1;
    kp->userlen = (size_t)(end - nul2 - 1);
    return 0;
}

/* ---- values ---- */

/* Decode a stored value: sets *modseq_r and the payload.  Returns 0 or
 * ERR_CORRUPT (ERR_DB_BADFORMAT for a newer version). */
static int decode_value(const char *data, size_t len, uint64_t *modseq_r,
                        const char **val_r, size_t *vallen_r)
{
    const char *p = data, *end = data + len;
    uint64_t modseq = 0;

    if (len < 4 || p[1] != ' ')
        return ERR_CORRUPT;
    if (*p != ANNOTATE_VERSION)
        return (*p > ANNOTATE_VERSION && *p <= '9') ? ERR_DB_BADFORMAT
                                                    : ERR_CORRUPT;
    p += 2;
    if (p >= end || *p < '0' || *p > '9')
        return ERR_CORRUPT;
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        if (modseq > (UINT64_MAX - 9) / 10)
            return ERR_CORRUPT;
        modseq = modseq * 10 + (uint64_t)(*p - '0');
    }
    if (p >= end || *p != ' ')
        return ERR_CORRUPT;
    p++;
    if ((size_t)(end - p) > ANNOTATE_VALUE_MAX)
        return ERR_CORRUPT;
    *modseq_r = modseq;
    *val_r = p;
    *vallen_r = (size_t)(end - p);
    return 0;
}

static void encode_value(uint64_t modseq, const char *value, size_t len,
                         struct buf *out)
{
    buf_reset(out);
    buf_printf(out, "%c %llu ", ANNOTATE_VERSION,
               (unsigned long long)modseq);
    buf_appendmap(out, value, len);
}

/* Parse the counter record; a malformed one is ERR_CORRUPT. */
static int parse_counter(const char *data, size_t len, uint64_t *val_r)
{
    uint64_t v = 0;
    size_t i;

    if (!len || len > 20)
        return ERR_CORRUPT;
    for (i = 0; i < len; i++) {
        if (data[i] < '0' || data[i] > '9' || v > (UINT64_MAX - 9) / 10)
            return ERR_CORRUPT;
        v = v * 10 + (uint64_t)(data[i] - '0');
    }
    *val_r = v;
    return 0;
}

/* Take the next modseq inside transaction `tid`. */
static int next_modseq(struct txn **tid, uint64_t *modseq_r)
{
    const char *data = NULL;
    size_t len = 0;
    uint64_t cur = 0;
    char num[32];
    int r, n;

    r = cyrusdb_fetch(adb, MODSEQ_KEY, MODSEQ_KEYLEN, &data, &len, tid);
    if (r == ERR_NOTFOUND)
        r = 0;
    else if (!r)
        r = parse_counter(data, len, &cur);
    if (r)
        return r;
    cur++;
    n = snprintf(num, sizeof(num), "%llu", (unsigned long long)cur);
    if (n < 0 || (size_t)n >= sizeof(num))
        return ERR_INTERNAL;
    r = cyrusdb_store(adb, MODSEQ_KEY, MODSEQ_KEYLEN, num, (size_t)n, tid);
    if (!r)
        *modseq_r = cur;
    return r;
}

uint64_t annotate_highestmodseq(void)
{
    const char *data = NULL;
    size_t len = 0;
    uint64_t cur = 0;

    if (open_db())
        return 0;
    if (cyrusdb_fetch(adb, MODSEQ_KEY, MODSEQ_KEYLEN, &data, &len, NULL))
        return 0;
    if (parse_counter(data, len, &cur))
        return 0;
    return cur;
}

/* ---- quota ---- */

int annotate_quota_check(const char *quotaroot, int64_t delta)
{
    int64_t deltas[QUOTA_NUMRESOURCES] = { 0 };
    struct quota q;
    int r;

    if (!quotaroot || delta <= 0)
        return 0;
    r = quota_read(quotaroot, &q, NULL, 0);
    if (r == ERR_QUOTA_ROOT_NONEXISTENT)
        r = 0;
    else if (!r) {
        deltas[QUOTA_ANNOTSTORAGE] = delta;
        r = quota_check(&q, deltas);
    }
    quota_fini(&q);
    return r;
}

int annotate_quota_apply(const char *quotaroot, int64_t delta)
{
    int64_t deltas[QUOTA_NUMRESOURCES] = { 0 };
    int r;

    if (!quotaroot || !delta)
        return 0;
    deltas[QUOTA_ANNOTSTORAGE] = delta;
    r = quota_update_usage(quotaroot, deltas, NULL);
    if (r == ERR_QUOTA_ROOT_NONEXISTENT)
        r = 0;
    return r;
}

/* Commit the annotation transaction *atid that changes value bytes by
 * `delta`, doing the quota accounting of `quotaroot` around it (see LOCK
 * ORDER).  *atid is always ended. */
static int commit_with_quota(struct txn **atid, const char *quotaroot,
                             int64_t delta)
{
    int64_t deltas[QUOTA_NUMRESOURCES] = { 0 };
    struct txn *qtid = NULL;
    struct quota q;
    int have_root = 0;
    int r = 0;

    quota_init(&q, NULL);
    if (quotaroot && delta) {
        r = quota_read(quotaroot, &q, &qtid, 1);
        if (r == ERR_QUOTA_ROOT_NONEXISTENT) {
            quota_abort(&qtid);
            r = 0;
        } else if (r) {
            goto done;
        } else {
            have_root = 1;
        }
    }
    if (have_root && delta > 0) {
        deltas[QUOTA_ANNOTSTORAGE] = delta;
        r = quota_check(&q, deltas);
        if (r)
            goto done;
    }

    r = cyrusdb_commit(adb, *atid);
    *atid = NULL;
    if (r || !have_root)
        goto done;

    /* The annotation change is durable now: a failure below only makes
     * the usage drift, which an administrator fixes with quota -f. */
    q.useds[QUOTA_ANNOTSTORAGE] += delta;
    if (q.useds[QUOTA_ANNOTSTORAGE] < 0)
        q.useds[QUOTA_ANNOTSTORAGE] = 0;
    r = quota_write(&q, &qtid);
    if (!r)
        r = quota_commit(&qtid);
    if (r) {
        xsyslog(LOG_ERR, "annotation quota update failed",
                "root=%s error=%s", log_escape(quotaroot, 0),
                error_message(r));
        r = 0;
    }

done:
    if (*atid) {
        cyrusdb_abort(adb, *atid);
        *atid = NULL;
    }
    quota_abort(&qtid);
    quota_fini(&q);
    return r;
}

/* ---- get and set ---- */

int annotate_get(const char *uniqueid, const char *entry,
                 enum annotate_scope scope, const char *userid,
                 struct buf *value_r, uint64_t *modseq_r)
{
    struct buf key = BUF_INITIALIZER;
    const char *data = NULL, *val = NULL;
    size_t len = 0, vallen = 0;
    uint64_t modseq = 0;
    int r;

    r = make_key(uniqueid, entry, scope, userid, &key);
    if (!r)
        r = open_db();
    if (!r)
        r = cyrusdb_fetch(adb, key.s, key.len, &data, &len, NULL);
    if (!r) {
        r = decode_value(data, len, &modseq, &val, &vallen);
        if (r) {
            xsyslog(LOG_ERR, "annotation record unreadable",
                    "mailbox=%s entry=%s error=%s",
                    log_escape(uniqueid, 0), log_escape(entry, 0),
                    error_message(r));
        }
    }
    if (!r) {
        buf_setmap(value_r, val, vallen);
        if (modseq_r)
            *modseq_r = modseq;
    }
    buf_free(&key);
    return r;
}

/* Store or delete one record inside *tid; *delta_r gets the change in
 * value bytes. */
static int store_record(const struct buf *key, const char *value,
                        size_t len, struct txn **tid, int64_t *delta_r)
{
    struct buf rec = BUF_INITIALIZER;
    const char *data = NULL, *oldval = NULL;
    size_t datalen = 0, oldlen = 0;
    uint64_t modseq = 0;
    int r;

    r = cyrusdb_fetchlock(adb, key->s, key->len, &data, &datalen, tid);
    if (r == ERR_NOTFOUND) {
        r = 0;
    } else if (!r && decode_value(data, datalen, &modseq, &oldval,
                                  &oldlen)) {
        /* A damaged record is replaced; it counted for nothing. */
        oldlen = 0;
    }
    if (r)
        goto done;

    *delta_r = (value ? (int64_t)len : 0) - (int64_t)oldlen;
    if (!value) {
        r = cyrusdb_delete(adb, key->s, key->len, tid, 1);
        goto done;
    }
    r = next_modseq(tid, &modseq);
    if (r)
        goto done;
    encode_value(modseq, value, len, &rec);
    r = cyrusdb_store(adb, key->s, key->len, rec.s, rec.len, tid);

done:
    buf_free(&rec);
    return r;
}

int annotate_set(const char *uniqueid, const char *entry,
                 enum annotate_scope scope, const char *userid,
                 const char *value, size_t len, const char *quotaroot,
                 int64_t *delta_r)
{
    struct buf key = BUF_INITIALIZER;
    struct txn *tid = NULL;
    int64_t delta = 0;
    int r;

    if (delta_r)
        *delta_r = 0;
    if (value && len > ANNOTATE_VALUE_MAX)
        return ERR_TOOBIG;
    r = make_key(uniqueid, entry, scope, userid, &key);
    if (!r)
        r = open_db();
    if (!r)
        r = store_record(&key, value, len, &tid, &delta);
    if (r) {
        if (tid)
            cyrusdb_abort(adb, tid);
        goto done;
    }
    r = commit_with_quota(&tid, quotaroot, delta);
    if (!r && delta_r)
        *delta_r = delta;

done:
    buf_free(&key);
    return r;
}

/* ---- the client-facing names ---- */

/* ---- definitions: built-in and annotation_definitions ---- */

/* Entries defined without any file: RFC 5464's "/comment" (mailbox and
 * server) and "/admin" (server, shared), RFC 6154's "/specialuse"
 * (mailbox, private), and Cyrus's per-mailbox shared-seen switch. */
static const struct annotate_def builtin_defs[] = {
    { (char *)"/comment", ANNOTATE_DEF_MAILBOX | ANNOTATE_DEF_SERVER,
      ANNOTATE_TYPE_STRING, 1,
      ANNOTATE_ATTR_SHARED | ANNOTATE_ATTR_PRIVATE, 0 },
    { (char *)"/admin", ANNOTATE_DEF_SERVER, ANNOTATE_TYPE_STRING, 1,
      ANNOTATE_ATTR_SHARED, 0 },
    { (char *)SPECIALUSE_ENTRY, ANNOTATE_DEF_MAILBOX, ANNOTATE_TYPE_STRING,
      1, ANNOTATE_ATTR_PRIVATE, 0 },
    { (char *)ANNOTATE_SHAREDSEEN_ENTRY, ANNOTATE_DEF_MAILBOX,
      ANNOTATE_TYPE_BOOLEAN, 1, ANNOTATE_ATTR_SHARED, ACL_ADMIN },
};

/* The site's table, read from annotation_definitions on first use. */
static struct annotate_def *site_defs;
static size_t site_ndefs;
static int site_loaded;

static void defs_free(struct annotate_def *defs, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        free(defs[i].entry);
    free(defs);
}

/* Split `line` at commas into at most `max` trimmed fields. */
static int split_fields(char *line, char **fields, int max)
{
    int n = 0;
    char *p = line, *end;

    for (;;) {
        char *comma = strchr(p, ',');

        if (n == max)
            return -1;
        if (comma)
            *comma = '\0';
        while (*p == ' ' || *p == '\t')
            p++;
        end = p + strlen(p);
        while (end > p && (end[-1] == ' ' || end[-1] == '\t'
                           || end[-1] == '\r'))
            *--end = '\0';
        fields[n++] = p;
        if (!comma)
            return n;
        p = comma + 1;
    }
}

/* The scope field: "server", "mailbox" or "message". */
static int parse_def_scope(const char *s, unsigned *scope_r)
{
    if (!strcasecmp(s, "server"))
        *scope_r = ANNOTATE_DEF_SERVER;
    else if (!strcasecmp(s, "mailbox"))
        *scope_r = ANNOTATE_DEF_MAILBOX;
    else if (!strcasecmp(s, "message"))
        *scope_r = ANNOTATE_DEF_MESSAGE;
    else
        return ERR_INVALID;
    return 0;
}

static int parse_def_type(const char *s, enum annotate_type *type_r)
{
    if (!strcasecmp(s, "string") || !strcasecmp(s, "content-type"))
        *type_r = ANNOTATE_TYPE_STRING;
    else if (!strcasecmp(s, "boolean"))
        *type_r = ANNOTATE_TYPE_BOOLEAN;
    else if (!strcasecmp(s, "int"))
        *type_r = ANNOTATE_TYPE_INT;
    else if (!strcasecmp(s, "uint"))
        *type_r = ANNOTATE_TYPE_UINT;
    else
        return ERR_INVALID;
    return 0;
}

/* The attributes field: space-separated names of the attributes that
 * may be set.  Only the values are stored; the size and content-type
 * attributes of the old ANNOTATEMORE draft are accepted and mean
 * nothing here. */
static int parse_def_attribs(const char *s, unsigned *attribs_r)
{
    strarray_t *words = strarray_split(s, " \t", 1);
    int i, r = 0;

    *attribs_r = 0;
    for (i = 0; !r && i < words->count; i++) {
        const char *w = strarray_nth(words, i);

        if (!strcasecmp(w, "value"))
            *attribs_r |= ANNOTATE_ATTR_SHARED | ANNOTATE_ATTR_PRIVATE;
        else if (!strcasecmp(w, "value.shared"))
            *attribs_r |= ANNOTATE_ATTR_SHARED;
        else if (!strcasecmp(w, "value.priv"))
            *attribs_r |= ANNOTATE_ATTR_PRIVATE;
        else if (strcasecmp(w, "none") && strcasecmp(w, "size")
                 && strcasecmp(w, "size.shared")
                 && strcasecmp(w, "size.priv")
                 && strcasecmp(w, "content-type")
                 && strcasecmp(w, "content-type.shared")
                 && strcasecmp(w, "content-type.priv"))
            r = ERR_INVALID;
    }
    strarray_free(&words);
    return r;
}

/* Parse one definition line into *def (entry allocated).  Fills `why`
 * on failure. */
static int parse_def_line(char *line, struct annotate_def *def,
                          const char **why)
{
    char *f[6];
    struct buf entry = BUF_INITIALIZER;
    uint32_t rights = 0;
    enum annotate_scope scope;
    int n = split_fields(line, f, 6);

    memset(def, 0, sizeof(*def));
    *why = "expected 6 comma-separated fields";
    if (n != 6)
        return ERR_INVALID;
    /* The name may be given with or without "/shared" or "/private". */
    if (annotate_parse_name(f[0], &scope, &entry)) {
        buf_setcstr(&entry, f[0]);
        lcase((char *)buf_cstring(&entry));
    }
    *why = "bad entry name";
    if (annotate_check_entry(buf_cstring(&entry)))
        goto fail;
    *why = "scope is not server, mailbox or message";
    if (parse_def_scope(f[1], &def->scopes))
        goto fail;
    *why = "type is not string, boolean, int or uint";
    if (parse_def_type(f[2], &def->type))
        goto fail;
    *why = "proxy type is not proxy or backend_only";
    if (!strcasecmp(f[3], "proxy"))
        def->is_proxied = 1;
    else if (strcasecmp(f[3], "backend_only"))
        goto fail;
    *why = "unknown attribute";
    if (parse_def_attribs(f[4], &def->attribs))
        goto fail;
    *why = "bad rights";
    if (*f[5] && strcmp(f[5], "-") && acl_rights_parse(f[5], &rights, NULL))
        goto fail;
    def->rights = rights;
    def->entry = buf_release(&entry);
    return 0;

fail:
    buf_free(&entry);
    return ERR_INVALID;
}

int annotate_definitions_parse(const char *text, size_t len,
                               const char *fname,
                               struct annotate_def **defs_r,
                               size_t *ndefs_r)
{
    struct annotate_def *defs = NULL;
    size_t n = 0, alloc = 0, lineno = 0, pos = 0;
    int bad = 0;

    *defs_r = NULL;
    *ndefs_r = 0;
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t linelen = nl ? (size_t)(nl - (text + pos)) : len - pos;
        struct annotate_def def;
        const char *why = NULL;
        char *line, *p;

        lineno++;
        line = xstrndup(text + pos, linelen);
        pos += linelen + (nl ? 1 : 0);
        for (p = line; *p == ' ' || *p == '\t'; p++)
            ;
        if (!*p || *p == '#' || *p == '\r') {
            free(line);
            continue;
        }
        if (linelen > ANNOTATE_DEFLINE_MAX || memchr(line, '\0', linelen)
            || n >= ANNOTATE_DEFS_MAX) {
            why = n >= ANNOTATE_DEFS_MAX ? "too many definitions"
                                         : "line too long or binary";
        }
        else if (!parse_def_line(p, &def, &why)) {
            why = NULL;
            if (n == alloc) {
                alloc = alloc ? alloc * 2 : 16;
                defs = xreallocarray(defs, alloc, sizeof(*defs));
            }
            defs[n++] = def;
        }
        if (why) {
            xsyslog(LOG_ERR, "annotation definition ignored",
                    "path=%s line=%zu error=%s",
                    log_escape(fname ? fname : "-", 0), lineno, why);
            bad++;
        }
        free(line);
    }
    *defs_r = defs;
    *ndefs_r = n;
    return bad ? ERR_INVALID : 0;
}

void annotate_definitions_free(struct annotate_def **defsp, size_t n)
{
    if (!defsp)
        return;
    defs_free(*defsp, n);
    *defsp = NULL;
}

/* Read annotation_definitions once per process (again after
 * annotate_definitions_reset()). */
static void load_site_defs(void)
{
    const char *fname = config_getstring(IMAPOPT_ANNOTATION_DEFINITIONS);
    struct buf data = BUF_INITIALIZER;
    int r;

    if (site_loaded)
        return;
    site_loaded = 1;
    if (!fname || !*fname)
        return;
    r = util_read_file(fname, &data, ANNOTATE_DEFFILE_MAX);
    if (r) {
        xsyslog(LOG_ERR, "annotation definitions not read", "path=%s "
                "error=%s", log_escape(fname, 0), error_message(r));
        return;
    }
    annotate_definitions_parse(data.s ? data.s : "", data.len, fname,
                               &site_defs, &site_ndefs);
    buf_free(&data);
}

void annotate_definitions_reset(void)
{
    defs_free(site_defs, site_ndefs);
    site_defs = NULL;
    site_ndefs = 0;
    site_loaded = 0;
}

/* Find `entry` for a server or mailbox among `defs`. */
static const struct annotate_def *find_def(const struct annotate_def *defs,
                                           size_t n, const char *entry,
                                           int is_server)
{
    unsigned want = is_server ? ANNOTATE_DEF_SERVER : ANNOTATE_DEF_MAILBOX;
    size_t i;

    for (i = 0; i < n; i++) {
        if ((defs[i].scopes & want) && !strcmp(defs[i].entry, entry))
            return &defs[i];
    }
    return NULL;
}

const struct annotate_def *annotate_find_definition(const char *entry,
                                                    int is_server)
{
    const struct annotate_def *d;

    if (!entry)
        return NULL;
    d = find_def(builtin_defs, sizeof(builtin_defs) / sizeof(builtin_defs[0]),
                 entry, is_server);
    if (d)
        return d;
    load_site_defs();
    return find_def(site_defs, site_ndefs, entry, is_server);
}

int annotate_check_value(const struct annotate_def *def, const char *value,
                         size_t len)
{
    char num[32];
    const char *p = num;

    if (!def || !value || def->type == ANNOTATE_TYPE_STRING)
        return 0;
    if (def->type == ANNOTATE_TYPE_BOOLEAN)
        return (len == 4 && !strncasecmp(value, "true", 4))
               || (len == 5 && !strncasecmp(value, "false", 5))
               ? 0 : ERR_INVALID;
    if (!len || len >= sizeof(num) || memchr(value, '\0', len))
        return ERR_INVALID;
    memcpy(num, value, len);
    num[len] = '\0';
    if (def->type == ANNOTATE_TYPE_INT && *p == '-')
        p++;
    if (!*p || strspn(p, "0123456789") != strlen(p) || strlen(p) > 19)
        return ERR_INVALID;
    return 0;
}

/* May `entry` in `scope` be set by a client while
 * annotation_allow_undefined is off? */
static int entry_is_defined(const char *entry, enum annotate_scope scope,
                            int server)
{
    const struct annotate_def *d = annotate_find_definition(entry, server);

    if (!d)
        return 0;
    return (d->attribs & (scope == ANNOTATE_SHARED ? ANNOTATE_ATTR_SHARED
                                                   : ANNOTATE_ATTR_PRIVATE))
           != 0;
}

/* Map a parsed name to the record that holds it: "/private/specialuse"
 * of a mailbox lives in the shared record.  Returns 1 when the name is
 * the special-use one. */
static int is_specialuse(const char *uniqueid, const char *entry)
{
    return uniqueid && *uniqueid && !strcmp(entry, SPECIALUSE_ENTRY);
}

int annotate_getmetadata(const char *uniqueid, const char *name,
                         const char *userid, struct buf *value_r)
{
    struct buf entry = BUF_INITIALIZER;
    enum annotate_scope scope = ANNOTATE_SHARED;
    const char *ename;
    int r;

    r = annotate_parse_name(name, &scope, &entry);
    if (r)
        goto done;
    ename = buf_cstring(&entry);
    if (is_specialuse(uniqueid, ename)) {
        if (scope == ANNOTATE_SHARED) {
            r = ERR_NOTFOUND;
            goto done;
        }
        scope = ANNOTATE_SHARED;
    }
    r = annotate_get(uniqueid, ename, scope, userid, value_r, NULL);

done:
    buf_free(&entry);
    return r;
}

int annotate_setmetadata(const char *uniqueid, const char *name,
                         const char *userid, const char *value, size_t len,
                         const char *quotaroot, int64_t *delta_r)
{
    struct buf entry = BUF_INITIALIZER;
    struct buf canon = BUF_INITIALIZER;
    enum annotate_scope scope = ANNOTATE_SHARED;
    int is_server = !uniqueid || !*uniqueid;
    const char *ename;
    int r;

    if (delta_r)
        *delta_r = 0;
    r = annotate_parse_name(name, &scope, &entry);
    if (r)
        goto done;
    ename = buf_cstring(&entry);
    if (!config_getswitch(IMAPOPT_ANNOTATION_ALLOW_UNDEFINED)
        && !entry_is_defined(ename, scope, is_server)) {
        r = ERR_PERMISSION;
        goto done;
    }
    /* A defined entry's value must fit its type (empty removes). */
    if (value && len
        && annotate_check_value(annotate_find_definition(ename, is_server),
                                value, len)) {
        r = ERR_INVALID;
        goto done;
    }
    if (is_specialuse(uniqueid, ename)) {
        if (scope == ANNOTATE_SHARED) {
            r = ERR_PERMISSION;
            goto done;
        }
        scope = ANNOTATE_SHARED;
        /* An empty value removes the attribute, like NIL. */
        if (value && len) {
            r = annotate_specialuse_check(value, len, &canon);
            if (r)
                goto done;
            value = canon.s;
            len = canon.len;
        } else {
            value = NULL;
        }
    }
    r = annotate_set(uniqueid, ename, scope, userid, value, len, quotaroot,
                     delta_r);

done:
    if (r && r != ERR_QUOTA_EXCEEDED && r != ERR_TOOBIG) {
        xsyslog(LOG_DEBUG, "annotation refused",
                "mailbox=%s entry=%s user=%s error=%s",
                log_escape(uniqueid, 0), log_escape(name, 0),
                log_escape(userid, 0), error_message(r));
    }
    buf_free(&canon);
    buf_free(&entry);
    return r;
}

/* ---- walks ---- */

/* One record collected by a walk, reported after the db is released so
 * callbacks may use the database again. */
struct found {
    char *name;
    char *entry;
    char *userid;
    enum annotate_scope scope;
    char *value;
    size_t len;
    uint64_t modseq;
};

struct walk {
    const char *uniqueid;
    size_t uidlen;
    const char *pentry;     /* pattern entry, "" for a scope root */
    size_t plen;
    enum annotate_depth depth;
    enum annotate_scope scope;
    const char *userid;     /* NULL: every user's private values */
    struct found *found;
    size_t count;
    size_t alloc;
};

/* Is the entry of `kp` at the pattern's depth?  The prefix walk already
 * guarantees it starts with the pattern entry. */
static int depth_matches(const struct walk *w, const struct key_parts *kp)
{
    const char *rest;
    size_t restlen;

    if (kp->entrylen < w->plen)
        return 0;
    rest = kp->entry + w->plen;
    restlen = kp->entrylen - w->plen;
    if (!restlen)
        return 1;
    if (rest[0] != '/' || w->depth == ANNOTATE_DEPTH_0)
        return 0;
    if (w->depth == ANNOTATE_DEPTH_1)
        return memchr(rest + 1, '/', restlen - 1) == NULL;
    return 1;
}

/* Is the record visible in the walk's scope, and as which scope? */
static int scope_matches(const struct walk *w, const struct key_parts *kp)
{
    int is_su = w->uidlen && !kp->userlen
                && kp->entrylen == strlen(SPECIALUSE_ENTRY)
                && !memcmp(kp->entry, SPECIALUSE_ENTRY, kp->entrylen);

    if (is_su)
        return w->scope == ANNOTATE_PRIVATE;
    if (!kp->userlen)
        return w->scope == ANNOTATE_SHARED;
    if (w->scope != ANNOTATE_PRIVATE)
        return 0;
    return !w->userid || (strlen(w->userid) == kp->userlen
                          && !memcmp(w->userid, kp->userid, kp->userlen));
}

static int walk_cb(void *rock, const char *key, size_t keylen,
                   const char *data, size_t datalen)
{
    struct walk *w = rock;
    struct key_parts kp;
    struct found *f;
    struct buf name = BUF_INITIALIZER;
    const char *val = NULL;
    size_t vallen = 0;
    uint64_t modseq = 0;

    if (split_key(key, keylen, &kp) || kp.uidlen != w->uidlen
        || !depth_matches(w, &kp) || !scope_matches(w, &kp))
        return 0;
    if (decode_value(data, datalen, &modseq, &val, &vallen)) {
        xsyslog(LOG_ERR, "annotation record unreadable", "mailbox=%s",
                log_escape(w->uniqueid, 0));
        return 0;
    }
    if (w->count == w->alloc) {
        w->alloc = w->alloc ? 2 * w->alloc : 16;
        w->found = xrealloc(w->found, w->alloc * sizeof(*w->found));
    }
    f = &w->found[w->count++];
    buf_appendcstr(&name, w->scope == ANNOTATE_SHARED ? "/shared"
                                                      : "/private");
    buf_appendmap(&name, kp.entry, kp.entrylen);
    f->name = buf_release(&name);
    f->entry = xstrndup(kp.entry, kp.entrylen);
    f->userid = xstrndup(kp.userid, kp.userlen);
    f->scope = w->scope;
    f->value = xmemdup(val, vallen ? vallen : 1);
    f->len = vallen;
    f->modseq = modseq;
    return 0;
}

static void walk_fini(struct walk *w)
{
    size_t i;

    for (i = 0; i < w->count; i++) {
        free(w->found[i].name);
        free(w->found[i].entry);
        free(w->found[i].userid);
        free(w->found[i].value);
    }
    free(w->found);
    w->found = NULL;
    w->count = w->alloc = 0;
}

int annotate_foreach(const char *uniqueid, const char *pattern,
                     enum annotate_depth depth, const char *userid,
                     annotate_cb_t *cb, void *rock)
{
    struct buf pentry = BUF_INITIALIZER;
    struct buf prefix = BUF_INITIALIZER;
    struct walk w;
    size_t i;
    int r;

    memset(&w, 0, sizeof(w));
    r = split_name(pattern, 1, &w.scope, &pentry);
    if (!r)
        r = check_ids(&uniqueid, ANNOTATE_SHARED, NULL);
    if (!r && (!cb || depth > ANNOTATE_DEPTH_INFINITY))
        r = ERR_INVALID;
    if (!r)
        r = open_db();
    if (r)
        goto done;

    w.uniqueid = uniqueid;
    w.uidlen = strlen(uniqueid);
    w.pentry = buf_cstring(&pentry);
    w.plen = pentry.len;
    w.depth = depth;
    w.userid = userid;
    buf_appendcstr(&prefix, uniqueid);
    buf_putc(&prefix, '\0');
    buf_appendbuf(&prefix, &pentry);
    r = cyrusdb_foreach(adb, prefix.s, prefix.len, NULL, walk_cb, &w, NULL);
    if (r)
        goto done;

    for (i = 0; i < w.count && !r; i++) {
        struct annotate_entry e;

        e.uniqueid = uniqueid;
        e.name = w.found[i].name;
        e.entry = w.found[i].entry;
        e.scope = w.found[i].scope;
        e.userid = w.found[i].userid;
        e.value = w.found[i].value;
        e.len = w.found[i].len;
        e.modseq = w.found[i].modseq;
        r = cb(&e, rock);
    }

done:
    walk_fini(&w);
    buf_free(&prefix);
    buf_free(&pentry);
    return r;
}

/* Build the "uniqueid NUL" prefix of a mailbox (never the server). */
static int mailbox_prefix(const char *uniqueid, struct buf *out)
{
    if (!uniqueid || !*uniqueid || check_ids(&uniqueid, 0, NULL))
        return ERR_INVALID;
    buf_reset(out);
    buf_appendcstr(out, uniqueid);
    buf_putc(out, '\0');
    return 0;
}

struct delete_rock {
    struct txn **tid;
    int64_t freed;
};

static int delete_cb(void *rock, const char *key, size_t keylen,
                     const char *data, size_t datalen)
{
    struct delete_rock *dr = rock;
    const char *val = NULL;
    size_t vallen = 0;
    uint64_t modseq = 0;

    if (!decode_value(data, datalen, &modseq, &val, &vallen))
        dr->freed += (int64_t)vallen;
    return cyrusdb_delete(adb, key, keylen, dr->tid, 1);
}

int annotate_delete_mailbox(const char *uniqueid, int64_t *freed_r)
{
    struct buf prefix = BUF_INITIALIZER;
    struct txn *tid = NULL;
    struct delete_rock dr = { &tid, 0 };
    int r;

    if (freed_r)
        *freed_r = 0;
    r = mailbox_prefix(uniqueid, &prefix);
    if (!r)
        r = open_db();
    if (!r) {
        r = cyrusdb_foreach(adb, prefix.s, prefix.len, NULL, delete_cb, &dr,
                            &tid);
    }
    if (!r && tid) {
        r = cyrusdb_commit(adb, tid);
        tid = NULL;
    }
    if (tid)
        cyrusdb_abort(adb, tid);
    if (r) {
        xsyslog(LOG_ERR, "annotation delete failed", "mailbox=%s error=%s",
                log_escape(uniqueid, 0), error_message(r));
    } else if (freed_r) {
        *freed_r = dr.freed;
    }
    buf_free(&prefix);
    return r;
}

struct copy_rock {
    struct txn **tid;
    const char *to;
    int64_t delta;
};

static int copy_cb(void *rock, const char *key, size_t keylen,
                   const char *data, size_t datalen)
{
    struct copy_rock *cr = rock;
    struct key_parts kp;
    struct buf newkey = BUF_INITIALIZER;
    struct buf value = BUF_INITIALIZER;
    const char *val = NULL;
    size_t vallen = 0;
    uint64_t modseq = 0;
    int64_t delta = 0;
    int r;

    if (split_key(key, keylen, &kp)
        || decode_value(data, datalen, &modseq, &val, &vallen))
        return 0;     /* damaged records are not copied */

    /* The data pointers die with the next call on the db: copy first. */
    buf_setmap(&value, val, vallen);
    buf_appendcstr(&newkey, cr->to);
    buf_putc(&newkey, '\0');
    buf_appendmap(&newkey, kp.entry, kp.entrylen);
    buf_putc(&newkey, '\0');
    buf_appendmap(&newkey, kp.userid, kp.userlen);
    r = store_record(&newkey, buf_cstring(&value), value.len, cr->tid,
                     &delta);
    if (!r)
        cr->delta += delta;
    buf_free(&value);
    buf_free(&newkey);
    return r;
}

int annotate_copy_mailbox(const char *from, const char *to,
                          const char *quotaroot, int64_t *added_r)
{
    struct buf prefix = BUF_INITIALIZER;
    struct buf check = BUF_INITIALIZER;
    struct txn *tid = NULL;
    struct copy_rock cr = { &tid, to, 0 };
    int r;

    if (added_r)
        *added_r = 0;
    r = mailbox_prefix(from, &prefix);
    if (!r)
        r = mailbox_prefix(to, &check);
    if (!r && !strcmp(from, to))
        r = ERR_INVALID;
    if (!r)
        r = open_db();
    if (!r) {
        r = cyrusdb_foreach(adb, prefix.s, prefix.len, NULL, copy_cb, &cr,
                            &tid);
    }
    if (r) {
        if (tid)
            cyrusdb_abort(adb, tid);
        goto done;
    }
    if (tid)
        r = commit_with_quota(&tid, quotaroot, cr.delta);
    if (!r && added_r)
        *added_r = cr.delta;

done:
    buf_free(&check);
    buf_free(&prefix);
    return r;
}

/* ---- rights ---- */

/*
 * Rights (RFC 5464 section 3.3 with RFC 4314 letters):
 *
 *   mailbox entry, read, shared or private:
 *       'l' and at least one of 'r' 's' 'w' 'i' 'p'
 *   mailbox entry, write private:  the same
 *   mailbox entry, write shared:   the same, and 'w'
 *   server entry, read:            anyone
 *   server entry, write private:   anyone (it is their own value)
 *   server entry, write shared:    admins only (ACL_ADMIN passed in)
 *
 * RFC 5464 states the first rule as the condition without which no
 * mailbox annotation may be read or set.  For writing a shared entry we
 * also ask for 'w' (as Cyrus does): otherwise anyone allowed only to
 * post ('p') could rewrite what every reader of the mailbox sees.
 */
#define RIGHTS_ANY_ACCESS \
    (ACL_READ | ACL_SETSEEN | ACL_WRITE | ACL_INSERT | ACL_POST)

static int has_mailbox_access(uint32_t myrights)
{
    return (myrights & ACL_LOOKUP) && (myrights & RIGHTS_ANY_ACCESS);
}

int annotate_may_read(enum annotate_kind kind, uint32_t myrights)
{
    switch (kind) {
    case ANNOTATE_KIND_MAILBOX_SHARED:
    case ANNOTATE_KIND_MAILBOX_PRIVATE:
        return has_mailbox_access(myrights);
    case ANNOTATE_KIND_SERVER_SHARED:
    case ANNOTATE_KIND_SERVER_PRIVATE:
        return 1;
    }
    return 0;
}

int annotate_may_write(enum annotate_kind kind, uint32_t myrights)
{
    switch (kind) {
    case ANNOTATE_KIND_MAILBOX_SHARED:
        return has_mailbox_access(myrights) && (myrights & ACL_WRITE);
    case ANNOTATE_KIND_MAILBOX_PRIVATE:
        return has_mailbox_access(myrights);
    case ANNOTATE_KIND_SERVER_SHARED:
        return (myrights & ACL_ADMIN) != 0;
    case ANNOTATE_KIND_SERVER_PRIVATE:
        return 1;
    }
    return 0;
}

/* ---- special-use ---- */

static const char *const specialuse_names[] = {
    "\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent",
    "\\Trash", NULL
};

/* The canonical spelling of one attribute, or NULL when not allowed. */
static const char *specialuse_lookup(const char *word,
                                     const strarray_t *extra)
{
    int i;

    for (i = 0; specialuse_names[i]; i++) {
        if (!strcasecmp(word, specialuse_names[i]))
            return specialuse_names[i];
    }
    for (i = 0; extra && i < extra->count; i++) {
        const char *x = strarray_nth(extra, i);

        if (x && x[0] == '\\' && !strcasecmp(word, x))
            return x;
    }
    return NULL;
}

int annotate_specialuse_check(const char *value, size_t len,
                              struct buf *out)
{
    strarray_t *extra = NULL;
    strarray_t *words = NULL;
    strarray_t seen = STRARRAY_INITIALIZER;
    char *copy = NULL;
    int i, r = 0;

    buf_reset(out);
    if (!value || !len || len > ANNOTATE_ENTRY_MAX
        || memchr(value, '\0', len) || value[0] == ' '
        || value[len - 1] == ' ')
        return ERR_INVALID;

    copy = xstrndup(value, len);
    words = strarray_split(copy, " ", 0);
    extra = config_getstrarray(IMAPOPT_SPECIALUSE_EXTRA);
    for (i = 0; i < words->count && !r; i++) {
        const char *canon = specialuse_lookup(strarray_nth(words, i), extra);

        if (!canon || strarray_find(&seen, canon, 0) >= 0) {
            r = ERR_INVALID;
            break;
        }
        strarray_append(&seen, canon);
        if (i)
            buf_putc(out, ' ');
        buf_appendcstr(out, canon);
    }
    if (r)
        buf_reset(out);

    strarray_fini(&seen);
    strarray_free(&extra);
    strarray_free(&words);
    free(copy);
    return r;
}

int annotate_get_specialuse(const char *uniqueid, struct buf *out)
{
    if (!uniqueid || !*uniqueid)
        return ERR_INVALID;
    return annotate_get(uniqueid, SPECIALUSE_ENTRY, ANNOTATE_SHARED, NULL,
                        out, NULL);
}

struct usage_rock {
    int64_t bytes;
};

static int usage_cb(void *rock, const char *key, size_t keylen,
                    const char *data, size_t datalen)
{
    struct usage_rock *ur = rock;
    const char *val = NULL;
    size_t vallen = 0;
    uint64_t modseq = 0;

    (void)key;
    (void)keylen;
    if (!decode_value(data, datalen, &modseq, &val, &vallen))
        ur->bytes += (int64_t)vallen;
    return 0;
}

int annotate_mailbox_usage(const char *uniqueid, int64_t *bytes_r)
{
    struct buf prefix = BUF_INITIALIZER;
    struct usage_rock ur = { 0 };
    int r;

    *bytes_r = 0;
    if (!uniqueid || !*uniqueid)
        return ERR_INVALID;
    r = mailbox_prefix(uniqueid, &prefix);
    if (!r)
        r = open_db();
    if (!r)
        r = cyrusdb_foreach(adb, prefix.s, prefix.len, NULL, usage_cb, &ur,
                            NULL);
    if (!r)
        *bytes_r = ur.bytes;
    buf_free(&prefix);
    return r;
}

int annotate_is_sharedseen(const char *uniqueid)
{
    struct buf val = BUF_INITIALIZER;
    int is_on = 0;

    if (uniqueid && *uniqueid
        && !annotate_get(uniqueid, ANNOTATE_SHAREDSEEN_ENTRY,
                         ANNOTATE_SHARED, NULL, &val, NULL))
        is_on = val.len == 4 && !strncasecmp(val.s, "true", 4);
    buf_free(&val);
    return is_on;
}

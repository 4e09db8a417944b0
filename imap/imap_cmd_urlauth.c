/* imapd beyond the mainstream: IMAP URL resolution for CATENATE (RFC
 * 4469) and URLFETCH, URLAUTH (RFC 4467, RFC 5524, RFC 5550) with the
 * per-user mailbox key database, the REPLACE (RFC 8508) expunge step,
 * and the UIDONLY (RFC 9586) response forms. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "lib/buf.h"
#include "lib/charset.h"
#include "lib/cyrusdb.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/prot.h"
#include "lib/strarray.h"
#include "lib/util.h"
#include "lib/xmalloc.h"
#include "imap/acl.h"
#include "imap/authserver.h"
#include "imap/imapurl.h"
#include "imap/mailbox.h"
#include "imap/mboxlist.h"
#include "imap/mboxname.h"
#include "imap/message.h"
#include "imap/userdb.h"

#include "imap/imapd.h"

/*
 * Mailbox keys (RFC 4467 section 3): one database per user at
 * userdb_path(user, ".mboxkey"), backend mboxkey_db.  Key: the internal
 * mailbox name.  Value: MBOXKEY_LEN random bytes.  A token is the
 * lower-case hex HMAC-SHA1 of the URL rump (everything before
 * ":INTERNAL:") under the key of the URL owner's mailbox, so RESETKEY
 * (removing keys) invalidates every URL issued for the mailbox.
 */
#define MBOXKEY_LEN 32
#define URLAUTH_MECH "INTERNAL"
/* Most URLs in one URLFETCH or GENURLAUTH, and parts in one CATENATE. */
#define URL_LIST_MAX 100
/* Longest URL echoed in a [BADURL] response code. */
#define BADURL_ECHO_MAX 1024

static const char *mboxkey_backend(void)
{
    const char *b = config_getstring(IMAPOPT_MBOXKEY_DB);

    return b ? b : "twoskip";
}

/* Open `userid`'s key database (created when `create`). */
static int mboxkey_open(const char *userid, int create, struct db **db_r)
{
    struct buf path = BUF_INITIALIZER;
    int r;

    *db_r = NULL;
    r = userdb_path(userid, ".mboxkey", &path);
    if (!r && create)
        r = userdb_mkparents(buf_cstring(&path));
    if (!r)
        r = cyrusdb_open(mboxkey_backend(), buf_cstring(&path),
                         create ? CYRUSDB_CREATE : 0, db_r);
    /* A bad user name comes from a client's URL: not worth a log. */
    if (r && r != ERR_NOTFOUND && r != ERR_INVALID)
        xsyslog(LOG_ERR, "mboxkey db open failed", "user=%s error=%s",
                log_escape(userid, 0), error_message(r));
    buf_free(&path);
    return r;
}

/* The key of `intname` for `userid` into `key` (reset first), made
 * when missing and `create`.  Returns 0, ERR_NOTFOUND or a db error. */
static int mboxkey_get(const char *userid, const char *intname, int create,
                       struct buf *key)
{
    struct db *db = NULL;
    const char *data;
    size_t len;
    unsigned char fresh[MBOXKEY_LEN];
    int r;

    buf_reset(key);
    r = mboxkey_open(userid, create, &db);
    if (r)
        return r;
    r = cyrusdb_fetch(db, intname, strlen(intname), &data, &len, NULL);
    if (!r && len == MBOXKEY_LEN) {
        buf_setmap(key, data, len);
        goto done;
    }
    if (!create) {
        r = ERR_NOTFOUND;
        goto done;
    }
    r = util_random_bytes(fresh, sizeof(fresh));
    if (!r)
        r = cyrusdb_store(db, intname, strlen(intname), (char *)fresh,
                          sizeof(fresh), NULL);
    if (!r)
        buf_setmap(key, (char *)fresh, sizeof(fresh));
    explicit_bzero(fresh, sizeof(fresh));
done:
    cyrusdb_close(db);
    return r;
}

/* Forget the key of `intname`, or every key of `userid` when NULL. */
static int mboxkey_reset(const char *userid, const char *intname)
{
    struct buf path = BUF_INITIALIZER;
    struct db *db = NULL;
    int r;

    if (!intname) {
        r = userdb_path(userid, ".mboxkey", &path);
        if (!r)
            r = userdb_remove(mboxkey_backend(), buf_cstring(&path));
        buf_free(&path);
        return r;
    }
    r = mboxkey_open(userid, 0, &db);
    if (r == ERR_NOTFOUND)
        return 0;
    if (!r)
        r = cyrusdb_delete(db, intname, strlen(intname), NULL, 1);
    cyrusdb_close(db);
    return r;
}

/* The hex token for `rump` under `key` into `out` (reset first). */
static void urlauth_token(const struct buf *key, const char *rump,
                          size_t rumplen, struct buf *out)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;

    buf_reset(out);
    HMAC(EVP_sha1(), key->s, (int)key->len, (const unsigned char *)rump,
         rumplen, mac, &maclen);
    util_hex_encode(mac, maclen, out);
    explicit_bzero(mac, sizeof(mac));
}

/* The internal name of URL mailbox `name` (UTF-8) seen by `owner`. */
static int url_intname(struct imapd *s, const char *name, const char *owner,
                       char **intname_r)
{
    struct buf m7 = BUF_INITIALIZER;
    int r;

    *intname_r = NULL;
    if (charset_utf8_to_mutf7(name, strlen(name), &m7))
        r = ERR_MAILBOX_BADNAME;
    else
        r = mboxname_from_external(buf_cstring(&m7), &s->ns, owner,
                                   intname_r);
    buf_free(&m7);
    return r;
}

/* May the session use an authorized URL with access identifier
 * `access` (RFC 4467 section 3)? */
static int access_allowed(struct imapd *s, const char *access)
{
    const char *servers;
    strarray_t *list;
    int ok;

    if (!strcasecmp(access, "anonymous"))
        return 1;
    if (!s->userid || acl_auth_is_anonymous(s->auth))
        return 0;
    if (!strcasecmp(access, "authuser"))
        return 1;
    if (!strncasecmp(access, "user+", 5))
        return !strcmp(access + 5, s->userid);
    if (strncasecmp(access, "submit+", 7))
        return 0;

    /* A submit+ URL is for the submission server acting for the user:
     * only identities listed in submitservers (and admins) redeem it. */
    if (s->is_admin)
        return 1;
    servers = config_getstring(IMAPOPT_SUBMITSERVERS);
    if (!servers)
        return 0;
    list = strarray_split(servers, " \t,", 1);
    ok = strarray_find(list, s->userid, 0) >= 0;
    strarray_free(&list);
    return ok;
}

/* A message located by a URL. */
struct url_msg {
    struct buf data;            /* the whole message */
    struct message *m;          /* parsed, when a section needs it */
};

static void url_msg_fini(struct url_msg *um)
{
    message_free(&um->m);
    buf_free(&um->data);
}

/* Read message u->uid of the URL's mailbox (the selected one for a
 * ";UID=" URL) with the rights of `auth` acting as `owner`.  Returns 0,
 * or an error with a reason in *why. */
static int url_load(struct imapd *s, const struct imapurl *u,
                    const char *owner, const struct auth_state *auth,
                    struct url_msg *um, const char **why)
{
    struct mboxlist_entry *e = NULL;
    struct mailbox *mb = NULL;
    struct mailbox_record rec;
    struct buf path = BUF_INITIALIZER;
    char *intname = NULL;
    uint32_t rights = 0;
    int is_sel;
    int r;

    *why = "No such message";
    if (!u->uid)
        return ERR_INVALID;
    r = 0;
    if (u->mailbox)
        r = url_intname(s, u->mailbox, owner, &intname);
    else if (s->sel)
        intname = xstrdup(s->sel->intname);
    else
        r = ERR_MAILBOX_NONEXISTENT;
    if (!r)
        r = mboxlist_lookup(intname, &e);
    if (!r) {
        acl_myrights(auth, e->acl, intname, &rights);
        if (!(rights & ACL_READ))
            r = ERR_ACL_DENIED;
    }
    if (r) {
        *why = "No such mailbox or no read access";
        goto done;
    }
    if (u->uidvalidity && u->uidvalidity != e->uidvalidity) {
        *why = "UIDVALIDITY mismatch";
        r = ERR_NOTFOUND;
        goto done;
    }

    /* The selected mailbox is already open: locking it again through a
     * second descriptor would drop our fcntl locks when that closes. */
    is_sel = s->sel && !strcmp(s->sel->intname, intname);
    if (is_sel) {
        mb = s->sel->mb;
        r = mailbox_lock(mb, 0);
    }
    else {
        r = imapd_open_mailbox(intname, 0, NULL, &mb);
    }
    if (r) {
        *why = "Cannot open mailbox";
        goto done;
    }
    r = mailbox_find_record(mb, u->uid, &rec);
    if (!r && (rec.system_flags & MAILBOX_FLAG_EXPUNGED))
        r = ERR_NOTFOUND;
    if (!r) {
        mailbox_message_path(mb, rec.uid, &path);
        r = util_read_file(buf_cstring(&path), &um->data,
                           (size_t)rec.size + 1);
    }
    if (is_sel)
        mailbox_unlock(mb);
    else
        mailbox_close(&mb);
done:
    mboxlist_entry_free(&e);
    free(intname);
    buf_free(&path);
    return r;
}

/* Undo the transfer encoding of the part in `sec`, as BINARY does
 * (RFC 3516); composite and identity-encoded parts are sent as they
 * are.  Returns 0 or ERR_UNSUPPORTED. */
static int url_decode(const struct message *m,
                      const struct message_section *sec, int whole,
                      struct buf *out)
{
    const struct message_part *part = sec->part;
    const char *enc = part ? part->encoding : NULL;
    const char *data = m->base + sec->offset;

    if (whole || !part || part->nsubparts || part->message || !enc
        || !strcmp(enc, "7BIT") || !strcmp(enc, "8BIT")
        || !strcmp(enc, "BINARY")) {
        buf_appendmap(out, data, sec->size);
        return 0;
    }
    if (!strcmp(enc, "BASE64")) {
        charset_decode_base64(data, sec->size, out);
        return 0;
    }
    if (!strcmp(enc, "QUOTED-PRINTABLE")) {
        charset_decode_qp(data, sec->size, out);
        return 0;
    }
    return ERR_UNSUPPORTED;
}

/* Split "1.HEADER.FIELDS (A B)" into the section and its field names. */
static int split_fields(const char *section, struct buf *spec,
                        strarray_t *fields)
{
    const char *paren = strchr(section, '(');
    const char *close;
    strarray_t *words;
    char *inner;
    int i;

    if (!paren) {
        buf_setcstr(spec, section);
        return 0;
    }
    close = strchr(paren, ')');
    if (!close || close[1] || paren == section || paren[-1] != ' ')
        return ERR_INVALID;
    buf_setmap(spec, section, (size_t)(paren - 1 - section));
    inner = xstrndup(paren + 1, (size_t)(close - paren - 1));
    words = strarray_split(inner, " ", 1);
    for (i = 0; i < words->count; i++)
        strarray_append(fields, words->data[i]);
    strarray_free(&words);
    free(inner);
    return fields->count ? 0 : ERR_INVALID;
}

/* What URLFETCH or CATENATE wants from a message. */
#define URL_WANT_BODY 0x1u          /* the section as stored */
#define URL_WANT_BINARY 0x2u        /* the section decoded */
#define URL_WANT_STRUCTURE 0x4u     /* its BODYPARTSTRUCTURE */

/* Extract the section and partial range of `u` from `um`: the bytes
 * into `out` (`want` BODY or BINARY), the structure into `bps`.
 * Returns 0, ERR_NOTFOUND (no such section) or ERR_UNSUPPORTED. */
static int url_extract(const struct imapurl *u, struct url_msg *um,
                       unsigned want, struct buf *out, struct buf *bps)
{
    struct message_section sec;
    struct buf spec = BUF_INITIALIZER;
    struct buf tmp = BUF_INITIALIZER;
    strarray_t fields = STRARRAY_INITIALIZER;
    size_t start, len;
    int r;

    if (!um->m)
        message_parse(um->data.s, um->data.len, &um->m);
    r = split_fields(u->section ? u->section : "", &spec, &fields);
    if (!r)
        r = message_section_find(um->m, buf_cstring(&spec), &sec);
    if (!r && (sec.offset > um->data.len
               || sec.size > um->data.len - sec.offset))
        r = ERR_NOTFOUND;
    if (!r && (sec.kind == MESSAGE_SECTION_FIELDS
               || sec.kind == MESSAGE_SECTION_FIELDS_NOT) != !!fields.count)
        r = ERR_NOTFOUND;
    if (r) {
        r = ERR_NOTFOUND;
        goto done;
    }
    if ((want & URL_WANT_STRUCTURE) && bps) {
        if (!spec.len || !sec.part)
            message_write_bodystructure(um->m, 1, bps);
        else
            message_write_part_structure(sec.part, 1, bps);
    }
    if (fields.count)
        message_header_filter(um->data.s + sec.offset, sec.size, &fields,
                              sec.kind == MESSAGE_SECTION_FIELDS_NOT, &tmp);
    else if (want & URL_WANT_BINARY)
        r = url_decode(um->m, &sec, !spec.len, &tmp);
    else
        buf_appendmap(&tmp, um->data.s + sec.offset, sec.size);
    if (r)
        goto done;
    start = 0;
    len = tmp.len;
    if (u->has_partial) {
        start = u->partial_start < len ? u->partial_start : len;
        len -= start;
        if (u->partial_len && u->partial_len < len)
            len = u->partial_len;
    }
    if (out)
        buf_appendmap(out, tmp.s ? tmp.s + start : "", len);
done:
    buf_free(&spec);
    buf_free(&tmp);
    strarray_fini(&fields);
    return r;
}

/* Check an authorized URL (RFC 4467 section 4): mechanism, expiry,
 * access identifier and token.  `url` is the text the URL was parsed
 * from.  Returns 0 or ERR_ACL_DENIED / ERR_INVALID with *why. */
static int urlauth_verify(struct imapd *s, const char *url,
                          const struct imapurl *u, const char **why)
{
    struct buf key = BUF_INITIALIZER;
    struct buf expect = BUF_INITIALIZER;
    char *intname = NULL;
    char *token = NULL;
    int r;

    *why = "Invalid URLAUTH";
    if (!u->access || !u->mech || !u->token)
        return ERR_INVALID;
    if (strcasecmp(u->mech, URLAUTH_MECH)) {
        *why = "Unknown URLAUTH mechanism";
        return ERR_INVALID;
    }
    if (u->has_expire && u->expire <= time(NULL)) {
        *why = "URL has expired";
        return ERR_ACL_DENIED;
    }
    if (!access_allowed(s, u->access)) {
        *why = "URL access identifier does not match";
        return ERR_ACL_DENIED;
    }
    r = url_intname(s, u->mailbox, u->user, &intname);
    if (!r)
        r = mboxkey_get(u->user, intname, 0, &key);
    if (!r) {
        urlauth_token(&key, url, u->rump_len, &expect);
        token = lcase(xstrdup(u->token));
        if (strlen(token) != expect.len
            || CRYPTO_memcmp(token, expect.s, expect.len))
            r = ERR_ACL_DENIED;
    }
    if (r) {
        *why = "URLAUTH token does not verify";
        r = ERR_ACL_DENIED;
    }
    free(token);
    free(intname);
    if (key.s)
        explicit_bzero(key.s, key.len);
    buf_free(&key);
    buf_free(&expect);
    return r;
}

/* Resolve `url` for the session into `out`/`bps` per `want`.  With
 * `need_auth` (URLFETCH) the URL must be authorized; otherwise
 * (CATENATE) an authorized URL is checked as such and a plain one must
 * be the session user's own.  Returns 0 or an error with *why. */
static int url_resolve(struct imapd *s, const char *url, int need_auth,
                       unsigned want, struct buf *out, struct buf *bps,
                       const char **why)
{
    struct imapurl u;
    struct url_msg um;
    struct auth_state *owner_auth = NULL;
    const struct auth_state *auth = s->auth;
    const char *owner = s->userid;
    int r;

    memset(&um, 0, sizeof(um));
    r = imapurl_parse(url, strlen(url), &u, why);
    if (r)
        goto done;
    if (u.access || need_auth) {
        r = urlauth_verify(s, url, &u, why);
        if (r)
            goto done;
        owner = u.user;
        owner_auth = acl_auth_new(owner, authserver_is_admin(owner));
        auth = owner_auth;
    }
    else if (u.user && (!s->userid || strcmp(u.user, s->userid))) {
        *why = "URL names another user";
        r = ERR_ACL_DENIED;
        goto done;
    }
    if (!owner) {
        r = ERR_ACL_DENIED;
        goto done;
    }
    r = url_load(s, &u, owner, auth, &um, why);
    if (!r) {
        r = url_extract(&u, &um, want, out, bps);
        if (r)
            *why = r == ERR_UNSUPPORTED ? "Unknown transfer encoding"
                                        : "No such section";
    }
done:
    acl_auth_free(&owner_auth);
    url_msg_fini(&um);
    imapurl_fini(&u);
    return r;
}

/* Does `b` hold a NUL byte (a literal may carry one)? */
static int has_nul(const struct buf *b)
{
    return b->len && memchr(b->s, '\0', b->len) != NULL;
}

/* Can `url` be echoed inside a response code (printable ASCII without
 * "]", RFC 4469 url-resp-text)? */
static int is_echoable(const char *url)
{
    const unsigned char *p;

    if (!*url || strlen(url) > BADURL_ECHO_MAX)
        return 0;
    for (p = (const unsigned char *)url; *p; p++) {
        if (*p < 0x20 || *p > 0x7e || *p == ']')
            return 0;
    }
    return 1;
}

/* "[BADURL url] why" into `err` (reset first); a URL that would break
 * the response code is left out. */
static void set_badurl(struct buf *err, const char *url, const char *why)
{
    buf_reset(err);
    if (is_echoable(url))
        buf_printf(err, "[BADURL %s] %s", url, why);
    else
        buf_printf(err, "Bad URL: %s", why);
}

/* Read a literal whose size may be the whole message bound. */
static int read_big_literal(struct imapd *s, struct buf *out)
{
    size_t saved_max = s->parser.max_command;
    size_t saved_used = s->parser.used;
    int c = imap_parse_getc(&s->parser);

    if (c == '~')
        c = imap_parse_getc(&s->parser);
    if (c != '{')
        return imap_parse_fail(&s->parser, "Expected literal after TEXT");
    imap_parse_ungetc(&s->parser, c);
    s->parser.max_command = saved_used + imapd_max_message + 2;
    c = imap_parse_string_max(&s->parser, out, imapd_max_message);
    s->parser.max_command = saved_max;
    s->parser.used = saved_used;
    return c;
}

int imapd_catenate_read(struct imapd *s, int c, struct buf *msg,
                        struct buf *err)
{
    struct buf word = BUF_INITIALIZER;
    struct buf part = BUF_INITIALIZER;
    const char *why;
    int nparts = 0;

    imap_parse_ungetc(&s->parser, c);
    c = imap_parse_atom(&s->parser, &word);
    if (c == EOF)
        goto done;
    if (strcasecmp(buf_cstring(&word), "CATENATE") || c != ' '
        || imap_parse_getc(&s->parser) != '(') {
        c = imap_parse_fail(&s->parser, "Expected CATENATE (");
        goto done;
    }
    do {
        if (++nparts > URL_LIST_MAX) {
            c = imap_parse_fail(&s->parser, "Too many CATENATE parts");
            goto done;
        }
        c = imap_parse_atom(&s->parser, &word);
        if (imapd_sp(s, c)) {
            c = EOF;
            goto done;
        }
        buf_reset(&part);
        if (!strcasecmp(buf_cstring(&word), "TEXT")) {
            c = read_big_literal(s, &part);
        }
        else if (!strcasecmp(buf_cstring(&word), "URL")) {
            struct buf url = BUF_INITIALIZER;

            c = imap_parse_astring(&s->parser, &url);
            if (c != EOF && !err->len && has_nul(&url))
                set_badurl(err, "", "URL holds NUL");
            else if (c != EOF && !err->len
                     && url_resolve(s, buf_cstring(&url), 0, URL_WANT_BODY,
                                    &part, NULL, &why))
                set_badurl(err, buf_cstring(&url), why);
            buf_free(&url);
        }
        else {
            c = imap_parse_fail(&s->parser, "Expected TEXT or URL");
        }
        if (c == EOF)
            goto done;
        if (!err->len && part.len > imapd_max_message - msg->len)
            buf_setcstr(err, "[TOOBIG] Catenated message is too big");
        if (!err->len)
            buf_appendbuf(msg, &part);
    } while (c == ' ');
    if (c != ')') {
        c = imap_parse_fail(&s->parser, "Expected ) after CATENATE parts");
        goto done;
    }
    c = imap_parse_getc(&s->parser);
done:
    buf_free(&word);
    buf_free(&part);
    return c;
}

/* Check one GENURLAUTH rump `text` with `mech` and append the full URL
 * to `out`.  Returns 0, or an error with a reason in *why (a NULL
 * reason for a database error). */
static int genurlauth_one(struct imapd *s, const char *text,
                          const char *mech, struct buf *out,
                          const char **why)
{
    struct imapurl u;
    struct mboxlist_entry *e = NULL;
    struct buf key = BUF_INITIALIZER;
    struct buf token = BUF_INITIALIZER;
    char *intname = NULL;
    uint32_t rights = 0;
    int r;

    r = imapurl_parse(text, strlen(text), &u, why);
    if (r)
        goto done;
    *why = "No such mailbox or no read access";
    if (!u.access || u.mech || u.rump_len != strlen(text)) {
        *why = "Not a URLAUTH rump URL";
        r = ERR_INVALID;
    }
    else if (strcmp(u.user, s->userid)) {
        *why = "URL names another user";
        r = ERR_ACL_DENIED;
    }
    else if (strcasecmp(mech, URLAUTH_MECH)) {
        *why = "Unknown URLAUTH mechanism";
        r = ERR_INVALID;
    }
    if (!r)
        r = url_intname(s, u.mailbox, s->userid, &intname);
    if (!r)
        r = mboxlist_lookup(intname, &e);
    if (!r) {
        acl_myrights(s->auth, e->acl, intname, &rights);
        if (!(rights & ACL_READ))
            r = ERR_ACL_DENIED;
    }
    if (r)
        goto done;

    *why = NULL;
    r = mboxkey_get(s->userid, intname, 1, &key);
    if (r)
        goto done;
    urlauth_token(&key, text, u.rump_len, &token);
    buf_printf(out, "%s:%s:%s", text, URLAUTH_MECH, buf_cstring(&token));
done:
    imapurl_fini(&u);
    mboxlist_entry_free(&e);
    free(intname);
    if (key.s)
        explicit_bzero(key.s, key.len);
    buf_free(&key);
    buf_free(&token);
    return r;
}

/* GENURLAUTH url mechanism *(SP url mechanism) (RFC 4467 section 7.1):
 * all URLs are checked before any is answered. */
void imapd_cmd_genurlauth(struct imapd *s, int c)
{
    struct buf url = BUF_INITIALIZER;
    struct buf mech = BUF_INITIALIZER;
    struct buf reply = BUF_INITIALIZER;
    struct buf err = BUF_INITIALIZER;
    strarray_t urls = STRARRAY_INITIALIZER;
    strarray_t mechs = STRARRAY_INITIALIZER;
    const char *why = NULL;
    int i, r;

    do {
        if (imapd_sp(s, c))
            goto done;
        c = imap_parse_astring(&s->parser, &url);
        if (c != EOF && has_nul(&url))
            c = imap_parse_fail(&s->parser, "NUL in URL");
        if (imapd_sp(s, c))
            goto done;
        c = imap_parse_atom(&s->parser, &mech);
        if (c == EOF)
            goto done;
        if (urls.count >= URL_LIST_MAX) {
            imap_parse_fail(&s->parser, "Too many URLs");
            goto done;
        }
        strarray_append(&urls, buf_cstring(&url));
        strarray_append(&mechs, buf_cstring(&mech));
    } while (c == ' ');
    if (imapd_eol(s, c))
        goto done;

    buf_appendcstr(&reply, "* GENURLAUTH");
    for (i = 0; i < urls.count; i++) {
        buf_reset(&url);
        r = genurlauth_one(s, urls.data[i], mechs.data[i], &url, &why);
        if (r && !why) {
            imapd_no_error(s, r);
            goto done;
        }
        if (r) {
            set_badurl(&err, urls.data[i], why);
            imapd_no(s, "%s", buf_cstring(&err));
            goto done;
        }
        buf_putc(&reply, ' ');
        imapd_buf_astring(&reply, buf_cstring(&url));
    }
    buf_appendcstr(&reply, "\r\n");
    imapd_printf(s, "%s", buf_cstring(&reply));
    imapd_ok(s, "GENURLAUTH completed");
done:
    buf_free(&url);
    buf_free(&mech);
    buf_free(&reply);
    buf_free(&err);
    strarray_fini(&urls);
    strarray_fini(&mechs);
}

/* RESETKEY [mailbox *(SP mechanism)] (RFC 4467 section 7.2) */
void imapd_cmd_resetkey(struct imapd *s, int c)
{
    struct buf ext = BUF_INITIALIZER;
    struct buf mech = BUF_INITIALIZER;
    struct mboxlist_entry *e = NULL;
    char *intname = NULL;
    uint32_t rights = 0;
    int r;

    if (c == ' ') {
        c = imap_parse_astring(&s->parser, &ext);
        while (c == ' ') {
            c = imap_parse_atom(&s->parser, &mech);
            if (c != EOF && strcasecmp(buf_cstring(&mech), URLAUTH_MECH)) {
                imapd_eol(s, c);
                if (!s->parser.error)
                    imapd_no(s, "Unknown URLAUTH mechanism");
                goto done;
            }
        }
    }
    if (imapd_eol(s, c))
        goto done;
    if (ext.len) {
        r = imapd_intname(s, buf_cstring(&ext), &intname);
        if (!r)
            r = mboxlist_lookup(intname, &e);
        if (!r) {
            acl_myrights(s->auth, e->acl, intname, &rights);
            if (!(rights & ACL_READ))
                r = ERR_MAILBOX_NONEXISTENT;
        }
        if (r) {
            imapd_no_error(s, r == ERR_MAILBOX_BADNAME
                              ? ERR_MAILBOX_NONEXISTENT : r);
            goto done;
        }
    }
    r = mboxkey_reset(s->userid, intname);
    if (r) {
        imapd_no_error(s, r);
        goto done;
    }
    xsyslog(LOG_NOTICE, "urlauth keys reset", "user=%s mailbox=%s",
            log_escape(s->userid, 0), intname ? log_escape(intname, 0) : "*");
    imapd_ok(s, "RESETKEY completed");
done:
    mboxlist_entry_free(&e);
    free(intname);
    buf_free(&ext);
    buf_free(&mech);
}

/* One URLFETCH argument: the URL and, in the RFC 5524 form, what to
 * return. */
struct fetch_arg {
    char *url;
    unsigned want;
    int extended;
};

/* Read "url" or "(" url *(SP param) ")" (RFC 5524). */
static int read_fetch_arg(struct imapd *s, int c, struct fetch_arg *fa)
{
    struct buf word = BUF_INITIALIZER;

    memset(fa, 0, sizeof(*fa));
    c = imap_parse_getc(&s->parser);
    if (c != '(') {
        imap_parse_ungetc(&s->parser, c);
        c = imap_parse_astring(&s->parser, &word);
        fa->want = URL_WANT_BODY;
    }
    else {
        fa->extended = 1;
        c = imap_parse_astring(&s->parser, &word);
    }
    if (c != EOF && has_nul(&word))
        c = imap_parse_fail(&s->parser, "NUL in URL");
    fa->url = buf_release(&word);
    if (c == EOF || !fa->extended)
        goto done;
    while (c == ' ') {
        c = imap_parse_atom(&s->parser, &word);
        if (c == EOF)
            goto done;
        if (!strcasecmp(buf_cstring(&word), "BODYPARTSTRUCTURE"))
            fa->want |= URL_WANT_STRUCTURE;
        else if (!strcasecmp(buf_cstring(&word), "BINARY"))
            fa->want |= URL_WANT_BINARY;
        else if (!strcasecmp(buf_cstring(&word), "BODY"))
            fa->want |= URL_WANT_BODY;
        else
            c = imap_parse_fail(&s->parser, "Unknown URLFETCH parameter");
    }
    if (c == EOF)
        goto done;
    if (c != ')' || !fa->want
        || (fa->want & (URL_WANT_BODY | URL_WANT_BINARY))
           == (URL_WANT_BODY | URL_WANT_BINARY)) {
        c = imap_parse_fail(&s->parser, "Bad URLFETCH parameters");
        goto done;
    }
    c = imap_parse_getc(&s->parser);
done:
    buf_free(&word);
    return c;
}

/* Append `data` as a literal (literal8 "~{n}" when `is_binary` and it
 * holds NUL). */
static void put_data(struct buf *out, const struct buf *data, int is_binary)
{
    buf_printf(out, "%s{%zu}\r\n",
               is_binary && data->len && memchr(data->s, '\0', data->len)
                   ? "~" : "", data->len);
    buf_appendbuf(out, data);
}

/* The response part for one URLFETCH argument. */
static void fetch_one_url(struct imapd *s, const struct fetch_arg *fa,
                          struct buf *out)
{
    struct buf data = BUF_INITIALIZER;
    struct buf bps = BUF_INITIALIZER;
    const char *why;
    int r;

    buf_putc(out, ' ');
    imapd_buf_astring(out, fa->url);
    r = url_resolve(s, fa->url, 1, fa->want, &data, &bps, &why);
    if (r) {
        xsyslog(LOG_INFO, "urlfetch refused", "user=%s why=%s",
                s->userid ? log_escape(s->userid, 0) : "-", why);
        buf_appendcstr(out, " NIL");
        goto done;
    }
    if (!fa->extended) {
        buf_putc(out, ' ');
        put_data(out, &data, 0);
        goto done;
    }
    if (fa->want & URL_WANT_STRUCTURE)
        buf_printf(out, " (BODYPARTSTRUCTURE %s)", buf_cstring(&bps));
    if (fa->want & (URL_WANT_BODY | URL_WANT_BINARY)) {
        int is_binary = (fa->want & URL_WANT_BINARY) != 0;

        buf_printf(out, " (%s ", is_binary ? "BINARY" : "BODY");
        put_data(out, &data, is_binary);
        buf_putc(out, ')');
    }
done:
    buf_free(&data);
    buf_free(&bps);
}

/* URLFETCH url *(SP url) (RFC 4467 section 7.3, RFC 5524) */
void imapd_cmd_urlfetch(struct imapd *s, int c)
{
    struct fetch_arg *args = NULL;
    struct buf out = BUF_INITIALIZER;
    size_t n = 0, i;

    do {
        if (imapd_sp(s, c))
            goto done;
        if (n >= URL_LIST_MAX) {
            imap_parse_fail(&s->parser, "Too many URLs");
            goto done;
        }
        args = xreallocarray(args, n + 1, sizeof(*args));
        c = read_fetch_arg(s, c, &args[n++]);
        if (c == EOF)
            goto done;
    } while (c == ' ');
    if (imapd_eol(s, c))
        goto done;

    buf_appendcstr(&out, "* URLFETCH");
    for (i = 0; i < n; i++)
        fetch_one_url(s, &args[i], &out);
    buf_appendcstr(&out, "\r\n");
    prot_write(s->out, out.s, out.len);
    imapd_ok(s, "URLFETCH completed");
done:
    for (i = 0; i < n; i++)
        free(args[i].url);
    free(args);
    buf_free(&out);
}

int imapd_replace_check(struct imapd *s, const char *number,
                        uint32_t *uid_r)
{
    uint32_t n = 0;

    *uid_r = 0;
    if (parse_uint32(number, NULL, &n) || !n) {
        imapd_bad(s, "Invalid message number");
        return -1;
    }
    if (!s->is_uid && n > s->sel->exists) {
        imapd_bad(s, "Invalid message number");
        return -1;
    }
    n = s->is_uid ? n : s->sel->uids[n - 1];
    if (!imapd_msgno(s, n)) {
        imapd_no(s, "[NONEXISTENT] No such message");
        return -1;
    }
    if (s->sel->is_readonly
        || (s->sel->rights & (ACL_DELETEMSG | ACL_EXPUNGE))
           != (ACL_DELETEMSG | ACL_EXPUNGE)) {
        imapd_no_error(s, ERR_ACL_DENIED);
        return -1;
    }
    *uid_r = n;
    return 0;
}

/* Expunge exactly the replaced message. */
static int decide_replaced(struct mailbox *mb,
                           const struct mailbox_record *rec, void *rock)
{
    (void)mb;
    return rec->uid == *(const uint32_t *)rock;
}

void imapd_replace_finish(struct imapd *s, uint32_t uid)
{
    int r = mailbox_lock(s->sel->mb, 1);

    if (!r)
        r = mailbox_expunge(s->sel->mb, decide_replaced, &uid,
                            MAILBOX_EXPUNGE_DELAYED, NULL);
    mailbox_unlock(s->sel->mb);
    if (r)
        xsyslog(LOG_ERR, "replace: expunge failed", "mailbox=%s uid=%u "
                "error=%s", log_escape(s->sel->intname, 0), uid,
                error_message(r));
    imapd_sync(s, 1);
}

void imapd_fetch_begin(struct imapd *s, uint32_t uid, struct buf *out)
{
    if (s->enabled & IMAPD_ENABLED_UIDONLY)
        buf_printf(out, "* %u UIDFETCH (", uid);
    else
        buf_printf(out, "* %u FETCH (", imapd_msgno(s, uid));
}

int imapd_uidonly_refuses(const struct imapd *s, const char *cmd)
{
    static const char *const numbered[] = {
        "FETCH", "STORE", "COPY", "MOVE", "SEARCH", "SORT", "THREAD",
        "REPLACE", NULL
    };
    int i;

    if (!(s->enabled & IMAPD_ENABLED_UIDONLY) || s->is_uid)
        return 0;
    for (i = 0; numbered[i]; i++) {
        if (!strcasecmp(cmd, numbered[i]))
            return 1;
    }
    return 0;
}

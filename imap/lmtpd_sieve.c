/* lmtpd: Sieve at delivery.  Runs the recipient's active script through
 * the lmtpd Sieve hook and carries out its actions: keep, fileinto,
 * discard, redirect, reject, vacation, notify, editheader, duplicate. */
/* Columba is free software; see COPYING for the licence. */

/*
 * How a run goes
 * ==============
 * 1. The active script's bytecode (<sievedir>/.../<name>.bc) is read;
 *    when it is missing, stale or damaged at the header, the script text
 *    is compiled again and the .bc rewritten (sievedir_put_bytecode
 *    writes it atomically).  No active script: the hook says keep.
 * 2. sieve_execute() runs it; the callbacks below answer its questions
 *    from the spooled message (read once, lazily), the envelope, the
 *    mailbox list, annotations and the duplicate database.
 * 3. The actions are carried out in order.  Whatever fails (a folder
 *    that cannot take the message, a redirect the sendmail program
 *    refuses, a run-time error of the script) turns into an implicit
 *    keep with the reason logged: a broken script never loses mail.
 *
 * A plain keep (no flags, no header edits) is handed back to lmtpd as
 * LMTPD_SIEVE_KEEP, so it takes the normal single-instance path with
 * duplicate marking.  Everything else is appended here, each target in
 * its own durable append, before the recipient is answered.
 *
 * Messages we originate (redirect, vacation, notify, reject bounces) go
 * to the `sendmail` program as "sendmail -i -f <sender> -- <rcpt>" with
 * the message on its standard input; an exit status of 0 means sent.
 *
 * reject/ereject: a reason that fits a reply line answers the
 * recipient "550 5.7.1 <reason>" when every recipient of the
 * transaction rejects (the done hook decides once all scripts ran);
 * otherwise the sender gets an RFC 5429 2.1.2 refusal (a disposition
 * notification, from <>) and the recipient 250.
 *
 * Tracking keys in the duplicate database (id, to, date):
 *   vacation:  ("vacation:" handle, user, sender lower-cased)
 *   duplicate: ("sieve:" id, user, "")
 *   redirect:  (Message-ID, "redirect:" address, user)
 * Vacation and duplicate marks store the time their period ends, so a
 * mark in the future means "still within the period".
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sasl/saslutil.h>

#include "lib/buf.h"
#include "lib/charset.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/strarray.h"
#include "lib/times.h"
#include "lib/util.h"
#include "lib/xmalloc.h"
#include "imap/acl.h"
#include "imap/annotate.h"
#include "imap/append.h"
#include "imap/authserver.h"
#include "imap/duplicate.h"
#include "imap/lmtp_spool.h"
#include "imap/mboxlist.h"
#include "imap/mboxname.h"
#include "imap/message.h"
#include "sieve/sieve.h"
#include "sieve/sievedir.h"

#include "imap/lmtpd.h"

/* Largest script text compiled at delivery (a .bc is never larger than
 * a few times its script). */
#define SCRIPT_READ_MAX SIEVE_MAX_SCRIPT
#define BYTECODE_READ_MAX (16 * SIEVE_MAX_SCRIPT)
/* More Received fields than this and a redirect is taken for a loop
 * (RFC 5321 6.3 suggests a hop limit of at least 100). */
#define REDIRECT_MAX_HOPS 100
/* Longest reject reason put into an LMTP reply line. */
#define REJECT_REPLY_MAX 400
/* How long a redirect is remembered to suppress a second one. */
#define REDIRECT_TRACK_SECONDS (3 * 86400)

/* One header field of the message, as stored. */
struct hfield {
    char *name;             /* field name as written */
    char *value;            /* after the colon, leading blanks dropped,
                             * folding kept, without the final CRLF */
    char *text;             /* the whole field with its CRLF */
};

/* An array of header fields. */
struct hfields {
    struct hfield *f;
    size_t count, alloc;
};

/* The state of one recipient's run. */
struct sctx {
    const struct lmtpd *s;
    const struct lmtpd_rcpt *rc;
    const char *msgfile;
    const struct lmtp_spool *sp;
    const char *userid;
    struct auth_state *auth;    /* the script owner's rights */
    struct namespace ns;
    struct buf dir;             /* the owner's sieve directory */
    /* the message, loaded on first use */
    int is_loaded;
    int load_error;
    struct buf text;
    size_t body_off;
    struct hfields fields;
    struct message *parsed;
    struct buf msgid;
    /* carrying out the actions */
    struct hfields edited;      /* fields with the edits so far */
    int has_edits;              /* edited differs from fields */
    struct buf edited_path;     /* staging file of the edited copy */
    int edited_stale;           /* edits since edited_path was written */
    strarray_t filed;           /* mailboxes delivered to already */
    int redirects;
    int need_keep;
    int keep_has_flags;
    strarray_t keep_flags;
};

/* ---- the message ---------------------------------------------------- */

/* Insert a field at index `at` (the end when beyond it); copies all. */
static void hfields_add(struct hfields *h, size_t at, const char *name,
                        size_t namelen, const char *value, size_t vlen,
                        const char *text, size_t tlen)
{
    if (h->count == h->alloc) {
        h->alloc = h->alloc ? 2 * h->alloc : 32;
        h->f = xrealloc(h->f, h->alloc * sizeof(*h->f));
    }
    if (at > h->count)
        at = h->count;
    memmove(h->f + at + 1, h->f + at, (h->count - at) * sizeof(*h->f));
    h->f[at].name = xstrndup(name, namelen);
    h->f[at].value = xstrndup(value, vlen);
    h->f[at].text = xstrndup(text, tlen);
    h->count++;
}

/* Remove field `i`. */
static void hfields_remove(struct hfields *h, size_t i)
{
    free(h->f[i].name);
    free(h->f[i].value);
    free(h->f[i].text);
    memmove(h->f + i, h->f + i + 1, (h->count - i - 1) * sizeof(*h->f));
    h->count--;
}

/* Free every field; `h` is empty afterwards. */
static void hfields_fini(struct hfields *h)
{
    while (h->count)
        hfields_remove(h, h->count - 1);
    free(h->f);
    memset(h, 0, sizeof(*h));
}

/* Replace `dst` with a deep copy of `src`. */
static void hfields_copy(struct hfields *dst, const struct hfields *src)
{
    size_t i;

    hfields_fini(dst);
    for (i = 0; i < src->count; i++) {
        const struct hfield *f = &src->f[i];
        hfields_add(dst, dst->count, f->name, strlen(f->name), f->value,
                    strlen(f->value), f->text, strlen(f->text));
    }
}

/* Split the header at the start of `text` into fields; sets *body_off_r
 * to the offset just after the blank line (or the end). */
static void parse_header(const struct buf *text, struct hfields *h,
                         size_t *body_off_r)
{
    const char *p = text->s ? text->s : "", *end = p + text->len;

    while (p < end && *p != '\r' && *p != '\n') {
        const char *start = p, *colon = NULL, *v, *vend, *q;

        /* the field runs to a line end not followed by a blank */
        for (q = p; q < end; q++) {
            if (*q == ':' && !colon)
                colon = q;
            if (*q == '\n' &&
                (q + 1 >= end || (q[1] != ' ' && q[1] != '\t')))
                break;
        }
        p = q < end ? q + 1 : end;
        if (!colon || colon >= q) {
            /* not a field: no test sees it, but copies keep it */
            hfields_add(h, h->count, "", 0, "", 0, start,
                        (size_t)(p - start));
            continue;
        }
        vend = q;
        if (vend > colon && vend[-1] == '\r')
            vend--;
        if (q >= end)
            vend = end;
        for (v = colon + 1; v < vend && (*v == ' ' || *v == '\t'); v++)
            ;
        q = colon;
        while (q > start && (q[-1] == ' ' || q[-1] == '\t'))
            q--;
        hfields_add(h, h->count, start, (size_t)(q - start), v,
                    (size_t)(vend - v), start, (size_t)(p - start));
    }
    if (p < end && *p == '\r')
        p++;
    if (p < end && *p == '\n')
        p++;
    *body_off_r = (size_t)(p - (text->s ? text->s : ""));
}

/* Read the spooled message once.  Returns 0 or the error (logged). */
static int load_message(struct sctx *c)
{
    int r;

    if (c->is_loaded)
        return c->load_error;
    c->is_loaded = 1;
    r = util_read_file(c->msgfile, &c->text, (size_t)-1 / 2);
    if (r) {
        xsyslog(LOG_ERR, "sieve: cannot read spooled message",
                "path=%s error=%s", c->msgfile, error_message(r));
        c->load_error = r;
        return r;
    }
    parse_header(&c->text, &c->fields, &c->body_off);
    message_parse(c->text.s, c->text.len, &c->parsed);
    return 0;
}

/* First value of field `name` in `h`, or NULL. */
static const char *hfields_get(const struct hfields *h, const char *name)
{
    size_t i;

    for (i = 0; i < h->count; i++) {
        if (!util_strcasecmp_ascii(h->f[i].name, name))
            return h->f[i].value;
    }
    return NULL;
}

/* ---- callbacks ------------------------------------------------------ */

/* Header values as stored (the library decodes and unfolds). */
static void cb_get_header(void *rock, const char *name, strarray_t *values)
{
    struct sctx *c = rock;
    size_t i;

    if (load_message(c))
        return;
    for (i = 0; i < c->fields.count; i++) {
        if (!util_strcasecmp_ascii(c->fields.f[i].name, name))
            strarray_append(values, c->fields.f[i].value);
    }
}

/* MAIL FROM, this RCPT TO as given (with +detail), AUTH. */
static void cb_get_envelope(void *rock, const char *part,
                            strarray_t *values)
{
    struct sctx *c = rock;

    if (!util_strcasecmp_ascii(part, "from"))
        strarray_append(values, c->s->from ? c->s->from : "");
    else if (!util_strcasecmp_ascii(part, "to"))
        strarray_append(values, c->rc->addr);
    else if (!util_strcasecmp_ascii(part, "auth") && c->s->authuser)
        strarray_append(values, c->s->authuser);
}

/* The size the spooler counted. */
static uint64_t cb_get_size(void *rock)
{
    struct sctx *c = rock;

    return c->sp->size;
}

/* Does part type/subtype match one of `types` ("text", "text/html",
 * "" for all)? */
static int type_matches(const struct message_part *p,
                        const strarray_t *types)
{
    size_t tl = strlen(p->type ? p->type : "TEXT");
    int i;

    for (i = 0; i < types->count; i++) {
        const char *t = types->data[i];
        const char *slash = strchr(t, '/');

        if (!*t)
            return 1;
        if (!slash) {
            if (!util_strcasecmp_ascii(t, p->type ? p->type : "TEXT"))
                return 1;
            continue;
        }
        if ((size_t)(slash - t) == tl &&
            !util_strncasecmp_ascii(t, p->type ? p->type : "TEXT", tl) &&
            !util_strcasecmp_ascii(slash + 1,
                                   p->subtype ? p->subtype : "PLAIN"))
            return 1;
    }
    return 0;
}

/* Walk the leaves for the body test with :content. */
static void body_content(const struct message *m,
                         const struct message_part *p,
                         const strarray_t *types, strarray_t *parts,
                         int depth)
{
    size_t i;

    if (depth > MESSAGE_MAX_DEPTH)
        return;
    if (p->nsubparts) {
        if (type_matches(p, types))
            strarray_append(parts, "");     /* RFC 5173 5.2: the
                                               prologue/epilogue */
        for (i = 0; i < p->nsubparts; i++)
            body_content(m, &p->subparts[i], types, parts, depth + 1);
        return;
    }
    if (p->message) {
        body_content(m, p->message, types, parts, depth + 1);
        return;
    }
    if (type_matches(p, types)) {
        struct buf raw = BUF_INITIALIZER, utf8 = BUF_INITIALIZER;
        char *cs = message_part_param(p, "charset", 0);

        message_part_decode_body(m, p, &raw);
        if (!p->type || !util_strcasecmp_ascii(p->type, "TEXT")) {
            if (charset_to_utf8(cs ? cs : "us-ascii", raw.s ? raw.s : "",
                                raw.len, &utf8))
                charset_utf8_sanitize(raw.s ? raw.s : "", raw.len, &utf8);
            strarray_append(parts, buf_cstring(&utf8));
        }
        else {
            strarray_append(parts, buf_cstring(&raw));
        }
        free(cs);
        buf_free(&raw);
        buf_free(&utf8);
    }
}

/* message_foreach_text: collect each text part. */
static int text_cb(const struct message_part *part, const char *text,
                   size_t len, void *rock)
{
    strarray_t *parts = rock;
    char *s = xstrndup(text, len);

    (void)part;
    strarray_appendm(parts, s);
    return 0;
}

/* The body test's parts for `transform`. */
static void cb_get_body(void *rock, enum sieve_body_transform transform,
                        const strarray_t *types, strarray_t *parts)
{
    struct sctx *c = rock;

    if (load_message(c) || !c->parsed)
        return;
    switch (transform) {
    case SIEVE_BODY_RAW: {
        char *s = xstrndup(buf_cstring(&c->text) + c->body_off,
                           c->text.len - c->body_off);
        strarray_appendm(parts, s);
        break;
    }
    case SIEVE_BODY_TEXT:
        message_foreach_text(c->parsed, text_cb, parts);
        break;
    case SIEVE_BODY_CONTENT:
        body_content(c->parsed, &c->parsed->root, types, parts, 0);
        break;
    }
}

/* RFC 5183 items; "domain" is servername without its first label. */
static int cb_get_environment(void *rock, const char *name,
                              struct buf *value)
{
    struct sctx *c = rock;
    const char *host = authserver_servername();
    const char *dot = strchr(host, '.');

    buf_reset(value);
    if (!util_strcasecmp_ascii(name, "domain"))
        buf_setcstr(value, dot ? dot + 1 : host);
    else if (!util_strcasecmp_ascii(name, "host"))
        buf_setcstr(value, host);
    else if (!util_strcasecmp_ascii(name, "location"))
        buf_setcstr(value, "MDA");
    else if (!util_strcasecmp_ascii(name, "name"))
        buf_setcstr(value, "Columba");
    else if (!util_strcasecmp_ascii(name, "phase"))
        buf_setcstr(value, "during");
    else if (!util_strcasecmp_ascii(name, "version"))
        buf_setcstr(value, PACKAGE_VERSION);
    else if (!util_strcasecmp_ascii(name, "remote-host") &&
             c->s->client_host)
        buf_setcstr(value, c->s->client_host);
    else
        return ERR_NOTFOUND;
    return 0;
}

/* The internal name of mailbox `name` as the script wrote it (in the
 * owner's namespace; UTF-8 with sieve_utf8fileinto).  Returns 0 and a
 * malloc'd name, or ERR_MAILBOX_BADNAME. */
static int script_mailbox(struct sctx *c, const char *name, char **intname_r)
{
    struct buf m = BUF_INITIALIZER;
    int r;

    if (config_getswitch(IMAPOPT_SIEVE_UTF8FILEINTO)) {
        r = charset_utf8_to_mutf7(name, strlen(name), &m);
        if (r) {
            buf_free(&m);
            return ERR_MAILBOX_BADNAME;
        }
        name = buf_cstring(&m);
    }
    r = mboxname_from_external(name, &c->ns, c->userid, intname_r);
    buf_free(&m);
    return r ? ERR_MAILBOX_BADNAME : 0;
}

/* The owner's rights on `entry`. */
static uint32_t owner_rights(struct sctx *c,
                             const struct mboxlist_entry *entry)
{
    uint32_t rights = 0;

    acl_myrights(c->auth, entry->acl, entry->name, &rights);
    return rights;
}

/* Look up the script's mailbox `name`; 0 and the entry, or an error. */
static int lookup_script_mailbox(struct sctx *c, const char *name,
                                 struct mboxlist_entry **entry_r)
{
    char *intname = NULL;
    int r;

    r = script_mailbox(c, name, &intname);
    if (!r)
        r = mboxlist_lookup(intname, entry_r);
    free(intname);
    return r;
}

/* mailboxexists (RFC 5490): exists and the owner may post to it. */
static int cb_mailbox_exists(void *rock, const char *name)
{
    struct sctx *c = rock;
    struct mboxlist_entry *e = NULL;
    int ok;

    if (lookup_script_mailbox(c, name, &e))
        return 0;
    ok = (owner_rights(c, e) & ACL_POST) != 0;
    mboxlist_entry_free(&e);
    return ok;
}

/* metadata/servermetadata as the owner sees them. */
static int cb_get_metadata(void *rock, const char *mailbox, const char *key,
                           struct buf *value)
{
    struct sctx *c = rock;
    struct mboxlist_entry *e = NULL;
    int r;

    if (!mailbox)
        return annotate_getmetadata(NULL, key, c->userid, value)
               ? ERR_NOTFOUND : 0;
    r = lookup_script_mailbox(c, mailbox, &e);
    if (!r && !(owner_rights(c, e) & (ACL_LOOKUP | ACL_READ)))
        r = ERR_NOTFOUND;
    if (!r)
        r = annotate_getmetadata(e->uniqueid, key, c->userid, value);
    mboxlist_entry_free(&e);
    return r ? ERR_NOTFOUND : 0;
}

/* Does mailbox `e` carry special-use `use`? */
static int has_specialuse(const struct mboxlist_entry *e, const char *use)
{
    struct buf v = BUF_INITIALIZER;
    strarray_t *uses;
    int i, found = 0;

    if (annotate_get_specialuse(e->uniqueid, &v)) {
        buf_free(&v);
        return 0;
    }
    uses = strarray_split(buf_cstring(&v), " ", 0);
    for (i = 0; i < uses->count && !found; i++)
        found = !util_strcasecmp_ascii(uses->data[i], use);
    strarray_free(&uses);
    buf_free(&v);
    return found;
}

/* What find_specialuse looks for and finds. */
struct su_rock {
    const char *use;
    char *found;
};

/* mboxlist_foreach: stop at the first mailbox with the special use. */
static int su_cb(const struct mboxlist_entry *e, void *rock)
{
    struct su_rock *sr = rock;

    if (!has_specialuse(e, sr->use))
        return 0;
    sr->found = xstrdup(e->name);
    return 1;
}

/* The owner's first mailbox with special-use `use` (malloc'd), or NULL. */
static char *find_specialuse(struct sctx *c, const char *use)
{
    struct su_rock sr = { use, NULL };
    char *inbox = NULL;

    if (!mboxname_user_mbox(c->userid, NULL, &inbox))
        mboxlist_foreach(inbox, su_cb, &sr);
    free(inbox);
    return sr.found;
}

/* specialuse_exists (RFC 8579), in `mailbox` or any of the owner's. */
static int cb_specialuse_exists(void *rock, const char *mailbox,
                                const char *use)
{
    struct sctx *c = rock;
    struct mboxlist_entry *e = NULL;
    char *found;
    int ok;

    if (mailbox) {
        if (lookup_script_mailbox(c, mailbox, &e))
            return 0;
        ok = has_specialuse(e, use);
        mboxlist_entry_free(&e);
        return ok;
    }
    found = find_specialuse(c, use);
    ok = found != NULL;
    free(found);
    return ok;
}

/* mailboxidexists (RFC 9042): a mailbox the owner can see. */
static int cb_mailboxid_exists(void *rock, const char *id)
{
    struct sctx *c = rock;
    struct mboxlist_entry *e = NULL;
    int ok;

    if (mboxlist_lookup_by_id(id, &e))
        return 0;
    ok = (owner_rights(c, e) & ACL_LOOKUP) != 0;
    mboxlist_entry_free(&e);
    return ok;
}

/* Is the tracking mark `key` within its period (its stored end time is
 * still ahead)? */
static int mark_is_live(const struct duplicate_key *key)
{
    time_t until = duplicate_check(key, NULL);

    return until > time(NULL);
}

/* duplicate (RFC 7352): was `id` tracked for this user and live? */
static int cb_duplicate_check(void *rock, const char *id)
{
    struct sctx *c = rock;
    struct buf k = BUF_INITIALIZER;
    struct duplicate_key key;
    int seen;

    buf_printf(&k, "sieve:%s", id);
    key = (struct duplicate_key)DUPLICATE_KEY_INIT(buf_cstring(&k),
                                                   c->userid, "");
    seen = mark_is_live(&key);
    buf_free(&k);
    return seen;
}

/* Bytecode of script `name` in `dir`: the .bc when current, else the
 * script compiled (and, with `is_writable`, the .bc rewritten).
 * Returns 0, ERR_NOTFOUND, or another error (logged). */
static int script_bytecode(const char *dir, const char *name,
                           int is_writable, struct buf *bc)
{
    struct buf path = BUF_INITIALIZER, text = BUF_INITIALIZER;
    struct buf errors = BUF_INITIALIZER;
    int r;

    buf_printf(&path, "%s/%s.bc", dir, name);
    r = util_read_file(buf_cstring(&path), bc, BYTECODE_READ_MAX);
    if (!r && sieve_bytecode_is_current(bc->s, bc->len))
        goto done;

    r = sievedir_read_script(dir, name, SCRIPT_READ_MAX, &text);
    if (r) {
        if (r != ERR_NOTFOUND)
            xsyslog(LOG_ERR, "sieve: cannot read script", "path=%s/%s "
                    "error=%s", dir, log_escape(name, 0), error_message(r));
        goto done;
    }
    buf_reset(bc);
    r = sieve_compile(text.s ? text.s : "", text.len, bc, &errors);
    if (r) {
        xsyslog(LOG_WARNING, "sieve: script does not compile",
                "path=%s/%s error=%s", dir, log_escape(name, 0),
                log_escape(buf_cstring(&errors), 200));
        goto done;
    }
    xsyslog(LOG_INFO, "sieve: script recompiled", "path=%s/%s", dir,
            log_escape(name, 0));
    if (is_writable)
        sievedir_put_bytecode(dir, name, bc->s, bc->len);

done:
    buf_free(&path);
    buf_free(&text);
    buf_free(&errors);
    return r;
}

/* The directory of global scripts: <sievedir>/domain/<h>/<domain>/global
 * for a user of a virtual domain when it exists (the Cyrus layout),
 * else <sievedir>/global. */
static void global_dir(struct sctx *c, struct buf *out)
{
    const char *sievedir = config_getstring(IMAPOPT_SIEVEDIR);
    const char *at = strrchr(c->userid, '@');
    struct stat st;

    buf_reset(out);
    if (at && config_getenum(IMAPOPT_VIRTDOMAINS)) {
        buf_printf(out, "%s/domain/%c/%s/global", sievedir,
                   mboxname_dir_hash(at + 1, config_getswitch(
                                         IMAPOPT_FULLDIRHASH)), at + 1);
        if (!stat(buf_cstring(out), &st) && S_ISDIR(st.st_mode))
            return;
        buf_reset(out);
    }
    buf_printf(out, "%s/global", sievedir);
}

/* include: :personal from the owner's directory, :global from the
 * global one. */
static int cb_get_include(void *rock, const char *name, int is_global,
                          struct buf *bytecode)
{
    struct sctx *c = rock;
    struct buf dir = BUF_INITIALIZER;
    int r;

    if (sievedir_check_name(name, strlen(name)))
        return ERR_NOTFOUND;
    if (is_global)
        global_dir(c, &dir);
    else
        buf_setmap(&dir, c->dir.s, c->dir.len);
    r = script_bytecode(buf_cstring(&dir), name, !is_global, bytecode);
    buf_free(&dir);
    return r ? ERR_NOTFOUND : 0;
}

/* extlists (RFC 6134): no list is known yet. */
static int cb_list_valid(void *rock, const char *list)
{
    (void)rock;
    (void)list;
    /* XXX: no address book yet (":addrbook:default" is unknown); the
     * CardDAV store will answer here (issue 8). */
    return 0;
}

/* extlists: nothing is in an unknown list. */
static int cb_list_contains(void *rock, const char *list,
                            const char *value)
{
    (void)rock;
    (void)list;
    (void)value;
    return 0;
}

static const struct sieve_callbacks callbacks = {
    cb_get_header, cb_get_envelope, cb_get_size, cb_get_body,
    cb_get_environment, cb_mailbox_exists, cb_get_metadata,
    cb_specialuse_exists, cb_duplicate_check, cb_get_include,
    cb_list_valid, cb_list_contains, cb_mailboxid_exists
};

/* ---- composing and sending mail ------------------------------------- */

/* Append `s` to `out` as a header value: as it is when it is printable
 * ASCII, else as RFC 2047 "B" encoded words of UTF-8 that never split a
 * character. */
static void append_encoded_value(struct buf *out, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s), i = 0;
    char enc[128];
    unsigned enclen;
    int is_plain = 1;

    for (i = 0; i < len; i++) {
        if (p[i] < 0x20 || p[i] >= 0x7f)
            is_plain = 0;
    }
    if (is_plain) {
        buf_appendcstr(out, s);
        return;
    }
    for (i = 0; i < len;) {
        size_t n = len - i > 45 ? 45 : len - i;

        /* back off to a character boundary */
        while (n < len - i && n > 1 && (p[i + n] & 0xc0) == 0x80)
            n--;
        if (sasl_encode64((const char *)p + i, (unsigned)n, enc,
                          sizeof(enc), &enclen) != SASL_OK)
            break;
        if (i)
            buf_appendcstr(out, "\r\n ");
        buf_printf(out, "=?UTF-8?B?%.*s?=", (int)enclen, enc);
        i += n;
    }
}

/* Append a text body (UTF-8) with its MIME header fields and the blank
 * line: 7bit when it is ASCII, else base64 in lines of 76.  `is_part`:
 * a body part, without MIME-Version. */
static void append_text_body(struct buf *out, const char *text,
                             int is_part)
{
    const unsigned char *p = (const unsigned char *)text;
    size_t len = strlen(text), i;
    int is_ascii = 1;

    for (i = 0; i < len; i++) {
        if (p[i] >= 0x80)
            is_ascii = 0;
    }
    if (!is_part)
        buf_appendcstr(out, "MIME-Version: 1.0\r\n");
    buf_appendcstr(out, "Content-Type: text/plain; charset=utf-8\r\n");
    if (is_ascii) {
        buf_appendcstr(out, "Content-Transfer-Encoding: 7bit\r\n\r\n");
        for (i = 0; i < len; i++) {
            if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
                buf_putc(out, '\r');
            buf_putc(out, (char)p[i]);
        }
        buf_appendcstr(out, "\r\n");
        return;
    }
    buf_appendcstr(out, "Content-Transfer-Encoding: base64\r\n\r\n");
    for (i = 0; i < len; i += 57) {
        char enc[128];
        unsigned enclen;
        size_t n = len - i > 57 ? 57 : len - i;

        if (sasl_encode64(text + i, (unsigned)n, enc, sizeof(enc),
                          &enclen) != SASL_OK)
            break;
        buf_appendmap(out, enc, enclen);
        buf_appendcstr(out, "\r\n");
    }
}

/* Date and Message-ID fields for a message we originate. */
static void append_origin_fields(struct buf *out)
{
    char date[64];
    unsigned char rnd[8];
    struct buf hex = BUF_INITIALIZER;

    if (times_format_rfc5322_local(date, sizeof(date), time(NULL)))
        date[0] = '\0';
    if (util_random_bytes(rnd, sizeof(rnd)))
        memset(rnd, 0, sizeof(rnd));
    util_hex_encode(rnd, sizeof(rnd), &hex);
    buf_printf(out, "Date: %s\r\nMessage-ID: <sieve.%s.%ld@%s>\r\n", date,
               buf_cstring(&hex), (long)time(NULL),
               authserver_servername());
    buf_free(&hex);
}

/* Is `addr` usable on a sendmail command line: non-empty, no blanks or
 * controls, not starting with '-'? */
static int is_sane_address(const char *addr)
{
    const unsigned char *p = (const unsigned char *)addr;

    if (!*p || *p == '-' || strlen(addr) > LMTPD_PATH_MAX)
        return 0;
    for (; *p; p++) {
        if (*p <= ' ' || *p == 0x7f || *p == '<' || *p == '>')
            return 0;
    }
    return 1;
}

/* Write all of `len` bytes to `fd`.  Returns 0 or -1 (errno set). */
static int write_all(int fd, const char *p, size_t len)
{
    while (len) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* In the forked child: the message pipe becomes stdin, nothing of the
 * session stays open, then exec `prog`. */
static void exec_sendmail(const char *prog, char **argv, const int fds[2])
{
    sigset_t none;
    int fd;

    dup2(fds[0], 0);
    close(fds[0]);
    close(fds[1]);
    /* stdout is the LMTP connection: the child never writes there */
    dup2(2, 1);
    for (fd = 3; fd < 256; fd++)
        close(fd);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    execv(prog, argv);
    _exit(127);
}

/* Run the sendmail program with `args` (after the program name) and
 * feed it `len` bytes of `msg`.  Returns 0 when it exited with 0,
 * else ERR_IO (logged). */
static int run_sendmail(const strarray_t *args, const char *msg, size_t len)
{
    const char *prog = config_getstring(IMAPOPT_SENDMAIL);
    strarray_t argv = STRARRAY_INITIALIZER;
    void (*old_pipe)(int);
    int fds[2], status = 0, r = 0, i;
    pid_t pid;

    if (!prog || !*prog)
        return ERR_CONFIG;
    strarray_append(&argv, prog);
    for (i = 0; i < args->count; i++)
        strarray_append(&argv, args->data[i]);
    if (pipe(fds) < 0) {
        xsyslog_syscall("pipe", NULL, NULL);
        strarray_fini(&argv);
        return ERR_IO;
    }
    pid = fork();
    if (pid < 0) {
        xsyslog_syscall("fork", NULL, NULL);
        close(fds[0]);
        close(fds[1]);
        strarray_fini(&argv);
        return ERR_IO;
    }
    if (pid == 0)
        exec_sendmail(prog, argv.data, fds);
    close(fds[0]);
    old_pipe = signal(SIGPIPE, SIG_IGN);
    if (write_all(fds[1], msg, len) < 0) {
        xsyslog_syscall("write", "program", prog);
        r = ERR_IO;
    }
    close(fds[1]);
    signal(SIGPIPE, old_pipe);
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            xsyslog_syscall("waitpid", "program", prog);
            r = ERR_IO;
            break;
        }
    }
    if (!r && (!WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
        if (WIFEXITED(status))
            xsyslog(LOG_ERR, "sieve: sendmail failed", "program=%s "
                    "exit=%d", prog, WEXITSTATUS(status));
        else
            xsyslog(LOG_ERR, "sieve: sendmail failed", "program=%s "
                    "signal=%d", prog, WIFSIGNALED(status)
                    ? WTERMSIG(status) : 0);
        r = ERR_IO;
    }
    strarray_fini(&argv);
    return r;
}

/* Send `msg` from envelope sender `from` ("" for <>) to `to`. */
static int send_mail(const char *from, const char *to, const char *notify,
                     const char *ret, const struct buf *msg)
{
    strarray_t args = STRARRAY_INITIALIZER;
    int r;

    if (!is_sane_address(to) || (*from && !is_sane_address(from)))
        return ERR_INVALID;
    strarray_append(&args, "-i");
    strarray_append(&args, "-f");
    strarray_append(&args, *from ? from : "<>");
    if (notify) {
        strarray_append(&args, "-N");
        strarray_append(&args, notify);
    }
    if (ret) {
        strarray_append(&args, "-R");
        strarray_append(&args, ret);
    }
    strarray_append(&args, "--");
    strarray_append(&args, to);
    r = run_sendmail(&args, msg->s ? msg->s : "", msg->len);
    strarray_fini(&args);
    return r;
}

/* The recipient address without its +detail: "alice@example.com". */
static void rcpt_plain_address(struct sctx *c, struct buf *out)
{
    const char *addr = c->rc->addr;
    const char *at = strrchr(addr, '@');
    const char *plus = strchr(addr, '+');

    buf_reset(out);
    if (plus && (!at || plus < at)) {
        buf_appendmap(out, addr, (size_t)(plus - addr));
        if (at)
            buf_appendcstr(out, at);
    }
    else {
        buf_setcstr(out, addr);
    }
    if (!at)
        buf_printf(out, "@%s", authserver_servername());
    buf_cstring(out);
}

/* ---- delivering ----------------------------------------------------- */

/* Apply one addheader/deleteheader action to `h`. */
static void apply_edit(struct hfields *h, const struct sieve_action *a)
{
    struct buf line = BUF_INITIALIZER;
    size_t i, at = 0;
    int j;

    if (a->type == SIEVE_ACTION_ADDHEADER) {
        buf_printf(&line, "%s: ", a->name);
        append_encoded_value(&line, a->value);
        buf_appendcstr(&line, "\r\n");
        /* our own trace fields stay on top */
        while (at < h->count &&
               !util_strcasecmp_ascii(h->f[at].name, "Return-Path"))
            at++;
        hfields_add(h, a->is_last ? h->count : at, a->name, strlen(a->name),
                    a->value, strlen(a->value), line.s, line.len);
        buf_free(&line);
        return;
    }
    for (j = 0; j < a->deleted.count; j++) {
        for (i = 0; i < h->count; i++) {
            if (!util_strcasecmp_ascii(h->f[i].name, a->name) &&
                !strcmp(h->f[i].value, a->deleted.data[j])) {
                hfields_remove(h, i);
                break;
            }
        }
    }
}

/* The message as it is to be delivered now: the edited header over the
 * original body, into `out`. */
static void edited_message(struct sctx *c, struct buf *out)
{
    size_t i;

    buf_reset(out);
    for (i = 0; i < c->edited.count; i++)
        buf_appendcstr(out, c->edited.f[i].text);
    buf_appendcstr(out, "\r\n");
    buf_appendmap(out, buf_cstring(&c->text) + c->body_off,
                  c->text.len - c->body_off);
}

/* The staging file to append for the message as edited so far: the
 * spool file itself when nothing was edited, else a staging file on the
 * recipient's partition written for it.  NULL on failure (logged). */
static const char *current_file(struct sctx *c)
{
    struct buf msg = BUF_INITIALIZER;
    int fd = -1, r;

    if (!c->has_edits)
        return c->msgfile;
    if (!c->edited_stale && c->edited_path.len)
        return buf_cstring(&c->edited_path);
    if (c->edited_path.len) {
        unlink(buf_cstring(&c->edited_path));
        buf_reset(&c->edited_path);
    }
    r = append_stage_path(c->rc->partition, &c->edited_path);
    if (!r) {
        buf_appendcstr(&c->edited_path, ".sieve");
        r = util_open_nofollow(buf_cstring(&c->edited_path),
                               O_WRONLY | O_CREAT | O_EXCL, 0600, &fd);
    }
    if (!r) {
        edited_message(c, &msg);
        if (write_all(fd, msg.s, msg.len) < 0) {
            xsyslog_syscall("write", "path", buf_cstring(&c->edited_path));
            r = ERR_IO;
        }
        close(fd);
    }
    buf_free(&msg);
    if (r) {
        xsyslog(LOG_ERR, "sieve: cannot write edited message",
                "error=%s", error_message(r));
        if (c->edited_path.len)
            unlink(buf_cstring(&c->edited_path));
        buf_reset(&c->edited_path);
        return NULL;
    }
    c->edited_stale = 0;
    return buf_cstring(&c->edited_path);
}

/* Append the current message to `mboxname` with `flags` (may be NULL)
 * as `auth` with append flags `aflags`.  A flag the store refuses drops
 * the flags rather than the message.  Returns 0 or the error. */
static int append_to(struct sctx *c, const char *mboxname,
                     const strarray_t *flags, const struct auth_state *auth,
                     unsigned aflags)
{
    struct append_state *as = NULL;
    const char *file = current_file(c);
    uint32_t uid = 0;
    int r;

    if (!file)
        return ERR_IO;
    r = append_setup(mboxname, auth, aflags, &as);
    if (r)
        return r;
    r = append_add(as, file, NULL, 0, 0, flags, &uid);
    if (r == ERR_INVALID && flags && flags->count) {
        xsyslog(LOG_WARNING, "sieve: flags refused, filing without them",
                "mailbox=%s", log_escape(mboxname, 0));
        r = append_add(as, file, NULL, 0, 0, NULL, &uid);
    }
    if (r) {
        append_abort(&as);
        return r;
    }
    r = append_commit(&as);
    if (!r) {
        strarray_append(&c->filed, mboxname);
        xsyslog(LOG_INFO, "delivered", "mailbox=%s uid=%u size=%llu "
                "from=%s msgid=%s sieve=1", log_escape(mboxname, 0), uid,
                (unsigned long long)c->sp->size,
                log_escape(c->s->from, 256),
                log_escape(buf_cstring(&c->msgid), 256));
    }
    return r;
}

/* The reply for a keep that failed. */
static const char *keep_error_reply(int r)
{
    switch (r) {
    case ERR_QUOTA_EXCEEDED:
        return config_getswitch(IMAPOPT_LMTP_OVER_QUOTA_PERM_FAILURE)
               ? "552 5.2.2 Over quota" : "452 4.2.2 Over quota";
    case ERR_MAILBOX_NONEXISTENT:
        return "550 5.1.1 Mailbox no longer exists";
    case ERR_ACL_DENIED:
    case ERR_PERMISSION:
        return "550 5.7.1 Permission denied";
    case ERR_TOOBIG:
        return "552 5.3.4 Message too big for mailbox";
    default:
        return "451 4.3.0 Temporary failure storing message";
    }
}

/* Where a fileinto goes: the :mailboxid mailbox, the :specialuse one,
 * the named one (created with :create).  Returns 0 and the internal
 * name (caller frees), or the error. */
static int fileinto_target(struct sctx *c, const struct sieve_action *a,
                           char **intname_r)
{
    struct mboxlist_entry *e = NULL;
    int r;

    if (a->mailboxid && !mboxlist_lookup_by_id(a->mailboxid, &e)) {
        *intname_r = xstrdup(e->name);
        mboxlist_entry_free(&e);
        return 0;
    }
    if (a->specialuse && (*intname_r = find_specialuse(c, a->specialuse)))
        return 0;
    r = script_mailbox(c, a->mailbox, intname_r);
    if (r)
        return r;
    r = mboxlist_lookup(*intname_r, &e);
    mboxlist_entry_free(&e);
    if (r == ERR_MAILBOX_NONEXISTENT && a->is_create) {
        r = mboxlist_create(*intname_r, MAILBOX_TYPE_MAIL, NULL, c->auth, 0,
                            NULL);
        if (!r)
            xsyslog(LOG_INFO, "sieve: mailbox created", "user=%s "
                    "mailbox=%s", log_escape(c->userid, 0),
                    log_escape(*intname_r, 0));
    }
    if (r) {
        free(*intname_r);
        *intname_r = NULL;
    }
    return r;
}

/* fileinto: a failure means the message is kept instead. */
static void do_fileinto(struct sctx *c, const struct sieve_action *a)
{
    char *intname = NULL;
    int r;

    r = fileinto_target(c, a, &intname);
    if (!r && strarray_find(&c->filed, intname, 0) >= 0)
        goto done;              /* RFC 5228 4.1: one copy per mailbox */
    if (!r)
        r = append_to(c, intname, a->has_flags ? &a->flags : NULL, c->auth,
                      APPEND_DELIVERY);
    if (r) {
        xsyslog(LOG_WARNING, "sieve: fileinto failed, keeping",
                "user=%s mailbox=%s error=%s", log_escape(c->userid, 0),
                log_escape(a->mailbox ? a->mailbox : "", 0),
                error_message(r));
        c->need_keep = 1;
    }
done:
    free(intname);
}

/* fcc of vacation/notify (RFC 8580): file our own message `msg`. */
static void do_fcc(struct sctx *c, const struct sieve_action *a,
                   const struct buf *msg)
{
    struct sieve_action t = *a;
    struct append_state *as = NULL;
    char *intname = NULL;
    int r;

    t.mailbox = a->fcc;
    r = fileinto_target(c, &t, &intname);
    if (!r)
        r = append_setup(intname, c->auth, 0, &as);
    if (!r)
        r = append_add(as, NULL, msg->s, msg->len, 0,
                       a->has_flags ? &a->flags : NULL, NULL);
    if (!r)
        r = append_commit(&as);
    append_abort(&as);
    if (r)
        xsyslog(LOG_WARNING, "sieve: fcc failed", "user=%s mailbox=%s "
                "error=%s", log_escape(c->userid, 0), log_escape(a->fcc, 0),
                error_message(r));
    free(intname);
}

/* ---- redirect, reject, vacation, notify ----------------------------- */

/* How many Received fields the message has. */
static size_t count_received(struct sctx *c)
{
    size_t i, n = 0;

    for (i = 0; i < c->fields.count; i++)
        n += !util_strcasecmp_ascii(c->fields.f[i].name, "Received");
    return n;
}

/* redirect: the message (as edited so far) with a Received field of
 * ours on top and without our Return-Path, to the MTA.  Returns 0 or
 * the error. */
static int do_redirect(struct sctx *c, const struct sieve_action *a)
{
    struct buf msg = BUF_INITIALIZER, dkto = BUF_INITIALIZER;
    struct duplicate_key key;
    char date[64];
    size_t i;
    int max = config_getint(IMAPOPT_SIEVE_MAXREDIRECTS), r = 0;

    if (max > 0 && ++c->redirects > max)
        return ERR_TOOBIG;
    if (count_received(c) > REDIRECT_MAX_HOPS)
        return ERR_INVALID;     /* a mail loop */
    buf_printf(&dkto, "redirect:%s", a->address);
    key = (struct duplicate_key)DUPLICATE_KEY_INIT(buf_cstring(&c->msgid),
                                                   buf_cstring(&dkto),
                                                   c->userid);
    if (c->msgid.len && mark_is_live(&key)) {
        xsyslog(LOG_INFO, "sieve: redirect already done", "user=%s to=%s",
                log_escape(c->userid, 0), log_escape(a->address, 0));
        goto done;
    }

    if (times_format_rfc5322_local(date, sizeof(date), time(NULL)))
        date[0] = '\0';
    buf_printf(&msg, "Received: from %s by %s (Columba lmtpd)\r\n"
                     "\twith Sieve redirect for <%s> id %s;\r\n\t%s\r\n",
               authserver_servername(), authserver_servername(),
               a->address, log_session_id() ? log_session_id() : "-",
               date);
    for (i = 0; i < c->edited.count; i++) {
        if (util_strcasecmp_ascii(c->edited.f[i].name, "Return-Path"))
            buf_appendcstr(&msg, c->edited.f[i].text);
    }
    buf_appendcstr(&msg, "\r\n");
    buf_appendmap(&msg, buf_cstring(&c->text) + c->body_off,
                  c->text.len - c->body_off);
    r = send_mail(c->s->from ? c->s->from : "", a->address, a->dsn_notify,
                  a->dsn_ret, &msg);
    if (!r) {
        xsyslog(LOG_INFO, "sieve: redirected", "user=%s to=%s msgid=%s",
                log_escape(c->userid, 0), log_escape(a->address, 0),
                log_escape(buf_cstring(&c->msgid), 256));
        if (c->msgid.len)
            duplicate_mark(&key, time(NULL) + REDIRECT_TRACK_SECONDS, 0);
    }
done:
    buf_free(&msg);
    buf_free(&dkto);
    return r;
}

/* Can `reason` go into an LMTP reply line (printable ASCII)? */
static int reply_safe(const char *reason)
{
    const unsigned char *p = (const unsigned char *)reason;

    for (; *p; p++) {
        if (*p >= 0x80)
            return 0;
    }
    return 1;
}

/* "550 5.7.1 <reason>" with line breaks and controls made blanks. */
static void reject_reply(const char *reason, struct buf *reply)
{
    const char *p;

    buf_setcstr(reply, "550 5.7.1 ");
    for (p = reason; *p && reply->len < REJECT_REPLY_MAX; p++)
        buf_putc(reply, (unsigned char)*p < 0x20 ? ' ' : *p);
    if (!*reason)
        buf_appendcstr(reply, "Message rejected");
    buf_cstring(reply);
}

/* The RFC 5429 2.1.2 / RFC 3798 refusal: a disposition notification
 * with the reason and the original header, to the envelope sender. */
static void build_rejection(struct sctx *c, const char *reason,
                            struct buf *msg_out)
{
    struct buf msg = BUF_INITIALIZER, me = BUF_INITIALIZER;
    unsigned char rnd[8];
    struct buf boundary = BUF_INITIALIZER;
    const char *to = c->s->from ? c->s->from : "";
    const char *subject = hfields_get(&c->fields, "Subject");
    size_t i;

    rcpt_plain_address(c, &me);
    if (util_random_bytes(rnd, sizeof(rnd)))
        memset(rnd, 0, sizeof(rnd));
    util_hex_encode(rnd, sizeof(rnd), &boundary);
    buf_printf(&msg, "From: Mail Delivery Subsystem <MAILER-DAEMON@%s>\r\n"
                     "To: <%s>\r\nSubject: ", authserver_servername(), to);
    append_encoded_value(&msg, "Message rejected");
    if (subject) {
        buf_appendcstr(&msg, ": ");
        buf_appendcstr(&msg, subject);
    }
    buf_appendcstr(&msg, "\r\n");
    append_origin_fields(&msg);
    buf_printf(&msg, "Auto-Submitted: auto-replied (rejected)\r\n"
                     "MIME-Version: 1.0\r\n"
                     "Content-Type: multipart/report; "
                     "report-type=disposition-notification;\r\n"
                     "\tboundary=\"%s\"\r\n\r\n"
                     "--%s\r\n", buf_cstring(&boundary),
               buf_cstring(&boundary));
    {
        struct buf text = BUF_INITIALIZER;
        buf_printf(&text, "Your message was automatically rejected by "
                          "Sieve, a mail filtering language.\r\n\r\n"
                          "The following reason was given:\r\n%s\r\n",
                   reason);
        append_text_body(&msg, buf_cstring(&text), 1);
        buf_free(&text);
    }
    buf_printf(&msg, "--%s\r\n"
                     "Content-Type: message/disposition-notification\r\n"
                     "\r\n"
                     "Reporting-UA: %s; Columba lmtpd\r\n"
                     "Final-Recipient: rfc822; %s\r\n",
               buf_cstring(&boundary), authserver_servername(),
               buf_cstring(&me));
    if (c->msgid.len)
        buf_printf(&msg, "Original-Message-ID: %s\r\n",
                   buf_cstring(&c->msgid));
    buf_printf(&msg, "Disposition: automatic-action/MDN-sent-automatically;"
                     " deleted\r\n\r\n"
                     "--%s\r\nContent-Type: text/rfc822-headers\r\n\r\n",
               buf_cstring(&boundary));
    for (i = 0; i < c->fields.count; i++)
        buf_appendcstr(&msg, c->fields.f[i].text);
    buf_printf(&msg, "\r\n--%s--\r\n", buf_cstring(&boundary));
    buf_free(msg_out);
    *msg_out = msg;
    buf_free(&me);
    buf_free(&boundary);
}

/* Send the refusal `msg` to the envelope sender `to` ("" for none, then
 * nobody is told).  Returns 0 or the error of send_mail(). */
static int send_rejection(const char *userid, const char *to,
                          const struct buf *msg)
{
    if (!*to) {
        xsyslog(LOG_INFO, "sieve: rejected, no sender to tell",
                "user=%s", log_escape(userid, 0));
        return 0;
    }
    return send_mail("", to, NULL, NULL, msg);
}

/* A reject answered 550 for now: if another recipient of the
 * transaction takes the message, it becomes a bounce (see
 * lmtpd_sieve_done_hook in imap/lmtpd.h). */
struct pending_reject {
    struct buf *reply;          /* the recipient's reply, lmtpd's */
    struct buf mdn;             /* the refusal to send instead */
    char *to;                   /* the envelope sender */
    char *userid;
};

/* The pending rejects of the transaction being planned. */
static struct pending_reject *pending;
static size_t npending, pending_alloc;

/* Remember a reject answered 550 for now, with its bounce built. */
static void pending_add(struct sctx *c, struct buf *reply,
                        const char *reason)
{
    struct pending_reject *p;

    if (npending == pending_alloc) {
        pending_alloc = pending_alloc ? 2 * pending_alloc : 8;
        pending = xrealloc(pending, pending_alloc * sizeof(*pending));
    }
    p = &pending[npending++];
    memset(p, 0, sizeof(*p));
    p->reply = reply;
    build_rejection(c, reason, &p->mdn);
    p->to = xstrdup(c->s->from ? c->s->from : "");
    p->userid = xstrdup(c->userid);
}

/* Forget the last pending reject (its recipient was kept after all). */
static void pending_drop_last(void)
{
    struct pending_reject *p = &pending[--npending];

    buf_free(&p->mdn);
    free(p->to);
    free(p->userid);
}

/* The done hook: the 550 answers stand when every recipient rejected;
 * otherwise each rejecting recipient is told 250 and the sender gets a
 * bounce instead (when it cannot be sent, the 550 stays, so the MTA
 * bounces). */
static void sieve_done(const struct lmtpd *s)
{
    int is_all = npending == s->nrcpt;

    while (npending) {
        struct pending_reject *p = &pending[npending - 1];

        if (!is_all) {
            if (!send_rejection(p->userid, p->to, &p->mdn))
                buf_setcstr(p->reply, "250 2.0.0 Ok, rejected by Sieve");
        }
        pending_drop_last();
    }
}

/* reject/ereject: in the LMTP reply when this is the message's only
 * recipient and the reason fits a reply line; else by a bounce. */
static int do_reject(struct sctx *c, const struct sieve_action *a,
                     struct buf *reply, int *is_replied)
{
    const char *reason = a->reason ? a->reason : "";
    struct buf mdn = BUF_INITIALIZER;
    int r;

    xsyslog(LOG_INFO, "sieve: rejected", "user=%s msgid=%s",
            log_escape(c->userid, 0),
            log_escape(buf_cstring(&c->msgid), 256));
    if (reply_safe(reason)) {
        reject_reply(reason, reply);
        *is_replied = 1;
        pending_add(c, reply, reason);
        return 0;
    }
    /* a reason that cannot go into a reply line goes in a bounce */
    build_rejection(c, reason, &mdn);
    r = send_rejection(c->userid, c->s->from ? c->s->from : "", &mdn);
    buf_free(&mdn);
    return r;
}

/* References for a reply: the original References (or In-Reply-To)
 * followed by its Message-ID. */
static void append_thread_fields(struct sctx *c, struct buf *out)
{
    const char *refs = hfields_get(&c->fields, "References");

    if (!c->msgid.len)
        return;
    if (!refs)
        refs = hfields_get(&c->fields, "In-Reply-To");
    buf_printf(out, "In-Reply-To: %s\r\nReferences: ",
               buf_cstring(&c->msgid));
    if (refs)
        buf_printf(out, "%s\r\n ", refs);
    buf_printf(out, "%s\r\n", buf_cstring(&c->msgid));
}

/* vacation: one reply per sender per period. */
static int do_vacation(struct sctx *c, const struct sieve_action *a)
{
    struct buf msg = BUF_INITIALIZER, me = BUF_INITIALIZER;
    struct buf id = BUF_INITIALIZER, sender = BUF_INITIALIZER;
    struct duplicate_key key;
    int r = 0;

    buf_setcstr(&sender, a->address ? a->address : "");
    buf_tolower(&sender);
    buf_printf(&id, "vacation:%s", a->handle ? a->handle : "");
    key = (struct duplicate_key)DUPLICATE_KEY_INIT(buf_cstring(&id),
                                                   c->userid,
                                                   buf_cstring(&sender));
    if (!sender.len || mark_is_live(&key)) {
        xsyslog(LOG_INFO, "sieve: vacation already sent", "user=%s to=%s",
                log_escape(c->userid, 0),
                log_escape(buf_cstring(&sender), 0));
        goto done;
    }

    rcpt_plain_address(c, &me);
    buf_appendcstr(&msg, "From: ");
    if (a->from)
        append_encoded_value(&msg, a->from);
    else
        buf_printf(&msg, "<%s>", buf_cstring(&me));
    buf_printf(&msg, "\r\nTo: <%s>\r\nSubject: ", a->address);
    append_encoded_value(&msg, a->subject ? a->subject : "Automated reply");
    buf_appendcstr(&msg, "\r\n");
    append_origin_fields(&msg);
    append_thread_fields(c, &msg);
    buf_appendcstr(&msg, "Auto-Submitted: auto-replied (vacation)\r\n"
                         "Precedence: bulk\r\n");
    if (a->is_mime) {
        /* :mime: the reason is a whole MIME entity, header included */
        const char *p;

        buf_appendcstr(&msg, "MIME-Version: 1.0\r\n");
        for (p = a->text; *p; p++) {
            if (*p == '\n' && (p == a->text || p[-1] != '\r'))
                buf_putc(&msg, '\r');
            buf_putc(&msg, *p);
        }
        buf_appendcstr(&msg, "\r\n");
    }
    else {
        append_text_body(&msg, a->text ? a->text : "", 0);
    }

    r = send_mail("", a->address, NULL, NULL, &msg);
    if (!r) {
        duplicate_mark(&key, time(NULL) + (time_t)a->seconds, 0);
        xsyslog(LOG_INFO, "sieve: vacation sent", "user=%s to=%s",
                log_escape(c->userid, 0), log_escape(a->address, 0));
        if (a->fcc)
            do_fcc(c, a, &msg);
    }
done:
    buf_free(&msg);
    buf_free(&me);
    buf_free(&id);
    buf_free(&sender);
    return r;
}

/* Undo %XX escapes of a URI part into `out` (reset first). */
static void uri_decode(const char *s, size_t len, struct buf *out)
{
    size_t i;

    buf_reset(out);
    for (i = 0; i < len; i++) {
        struct buf hex = BUF_INITIALIZER;

        if (s[i] == '%' && i + 2 < len &&
            !util_hex_decode(s + i + 1, 2, &hex) && hex.len == 1) {
            buf_putc(out, hex.s[0]);
            i += 2;
        }
        else {
            buf_putc(out, s[i]);
        }
        buf_free(&hex);
    }
    buf_cstring(out);
}

/* Parse a mailto: URI (RFC 6068): recipients into `to`, the subject and
 * body fields when present. */
static void parse_mailto(const char *uri, strarray_t *to,
                         struct buf *subject, struct buf *body)
{
    const char *p = uri + 7, *q = strchr(p, '?');
    struct buf v = BUF_INITIALIZER;
    strarray_t *parts;
    int i;

    uri_decode(p, q ? (size_t)(q - p) : strlen(p), &v);
    parts = strarray_split(buf_cstring(&v), ",", 1);
    for (i = 0; i < parts->count; i++) {
        if (*parts->data[i])
            strarray_append(to, parts->data[i]);
    }
    strarray_free(&parts);
    if (q) {
        parts = strarray_split(q + 1, "&", 0);
        for (i = 0; i < parts->count; i++) {
            const char *f = parts->data[i], *eq = strchr(f, '=');

            if (!eq)
                continue;
            uri_decode(eq + 1, strlen(eq + 1), &v);
            if ((size_t)(eq - f) == 7 &&
                !util_strncasecmp_ascii(f, "subject", 7))
                buf_setmap(subject, v.s, v.len);
            else if ((size_t)(eq - f) == 4 &&
                     !util_strncasecmp_ascii(f, "body", 4))
                buf_setmap(body, v.s, v.len);
            else if ((size_t)(eq - f) == 2 &&
                     !util_strncasecmp_ascii(f, "to", 2))
                strarray_append(to, buf_cstring(&v));
        }
        strarray_free(&parts);
    }
    buf_free(&v);
}

/* notify with the mailto method (RFC 5436). */
static int do_notify(struct sctx *c, const struct sieve_action *a)
{
    strarray_t to = STRARRAY_INITIALIZER;
    struct buf subject = BUF_INITIALIZER, body = BUF_INITIALIZER;
    struct buf msg = BUF_INITIALIZER, me = BUF_INITIALIZER;
    const char *auto_sub = hfields_get(&c->fields, "Auto-Submitted");
    int i, r = 0;

    /* RFC 5436 2.7: never notify about automatically submitted mail */
    if (auto_sub && util_strncasecmp_ascii(auto_sub, "no", 2)) {
        xsyslog(LOG_INFO, "sieve: notify suppressed for auto-submitted "
                "mail", "user=%s", log_escape(c->userid, 0));
        goto done;
    }
    parse_mailto(a->method, &to, &subject, &body);
    if (!subject.len)
        buf_setcstr(&subject, a->message ? a->message : "Notification");
    if (!body.len)
        buf_setcstr(&body, a->message ? a->message : "");

    rcpt_plain_address(c, &me);
    buf_appendcstr(&msg, "From: ");
    if (a->from)
        append_encoded_value(&msg, a->from);
    else
        buf_printf(&msg, "<%s>", buf_cstring(&me));
    buf_appendcstr(&msg, "\r\nTo: ");
    for (i = 0; i < to.count; i++)
        buf_printf(&msg, "%s<%s>", i ? ", " : "", to.data[i]);
    buf_appendcstr(&msg, "\r\nSubject: ");
    append_encoded_value(&msg, buf_cstring(&subject));
    buf_appendcstr(&msg, "\r\n");
    append_origin_fields(&msg);
    buf_appendcstr(&msg, "Auto-Submitted: auto-notified\r\n");
    if (a->importance && a->importance[0] == '1')
        buf_appendcstr(&msg, "Importance: high\r\nX-Priority: 1\r\n");
    else if (a->importance && a->importance[0] == '3')
        buf_appendcstr(&msg, "Importance: low\r\nX-Priority: 5\r\n");
    append_text_body(&msg, buf_cstring(&body), 0);

    for (i = 0; i < to.count && !r; i++)
        r = send_mail("", to.data[i], NULL, NULL, &msg);
    if (!r && to.count) {
        xsyslog(LOG_INFO, "sieve: notification sent", "user=%s to=%s",
                log_escape(c->userid, 0), log_escape(to.data[0], 0));
        if (a->fcc)
            do_fcc(c, a, &msg);
    }
done:
    strarray_fini(&to);
    buf_free(&subject);
    buf_free(&body);
    buf_free(&msg);
    buf_free(&me);
    return r;
}

/* duplicate-track: remember the id for its period (:last restarts it on
 * every occurrence; otherwise the first one counts). */
static void do_duplicate_track(struct sctx *c, const struct sieve_action *a)
{
    struct buf k = BUF_INITIALIZER;
    struct duplicate_key key;

    buf_printf(&k, "sieve:%s", a->name);
    key = (struct duplicate_key)DUPLICATE_KEY_INIT(buf_cstring(&k),
                                                   c->userid, "");
    if (a->is_last || !mark_is_live(&key))
        duplicate_mark(&key, time(NULL) + (time_t)a->seconds, 0);
    buf_free(&k);
}

/* ---- the run -------------------------------------------------------- */

/* Log a failed action; the message will be kept. */
static void action_failed(struct sctx *c, const char *what, int r)
{
    xsyslog(LOG_WARNING, "sieve: action failed, keeping",
            "user=%s action=%s error=%s", log_escape(c->userid, 0), what,
            error_message(r));
    c->need_keep = 1;
}

/* The flags of an explicit keep replace those of an earlier one. */
static void keep_flags_set(struct sctx *c, const strarray_t *flags)
{
    int i;

    c->keep_has_flags = 1;
    strarray_fini(&c->keep_flags);
    for (i = 0; i < flags->count; i++)
        strarray_append(&c->keep_flags, flags->data[i]);
}

static enum lmtpd_sieve_result finish_keep(struct sctx *c,
                                           struct buf *reply);

/* Carry out the actions of `res`.  Returns the hook's result. */
static enum lmtpd_sieve_result run_actions(struct sctx *c,
                                           const struct sieve_result *res,
                                           struct buf *reply)
{
    int is_replied = 0, r;
    size_t i;

    for (i = 0; i < res->count; i++) {
        const struct sieve_action *a = &res->actions[i];

        switch (a->type) {
        case SIEVE_ACTION_KEEP:
            c->need_keep = 1;
            if (a->has_flags)
                keep_flags_set(c, &a->flags);
            break;
        case SIEVE_ACTION_FILEINTO:
            do_fileinto(c, a);
            break;
        case SIEVE_ACTION_DISCARD:
            break;
        case SIEVE_ACTION_REDIRECT:
            r = do_redirect(c, a);
            if (r)
                action_failed(c, "redirect", r);
            break;
        case SIEVE_ACTION_REJECT:
            r = do_reject(c, a, reply, &is_replied);
            if (r)
                action_failed(c, "reject", r);
            break;
        case SIEVE_ACTION_VACATION:
            r = do_vacation(c, a);
            if (r)
                xsyslog(LOG_WARNING, "sieve: vacation failed", "user=%s "
                        "error=%s", log_escape(c->userid, 0),
                        error_message(r));
            break;
        case SIEVE_ACTION_NOTIFY:
            r = do_notify(c, a);
            if (r)
                xsyslog(LOG_WARNING, "sieve: notify failed", "user=%s "
                        "error=%s", log_escape(c->userid, 0),
                        error_message(r));
            break;
        case SIEVE_ACTION_ADDHEADER:
        case SIEVE_ACTION_DELETEHEADER:
            apply_edit(&c->edited, a);
            c->has_edits = 1;
            c->edited_stale = 1;
            break;
        case SIEVE_ACTION_DUPLICATE_TRACK:
            do_duplicate_track(c, a);
            break;
        case SIEVE_ACTION_ERROR:
            xsyslog(LOG_WARNING, "sieve: run-time error, keeping",
                    "user=%s error=%s", log_escape(c->userid, 0),
                    log_escape(a->reason ? a->reason : "", 256));
            c->need_keep = 1;
            break;
        }
    }

    if (is_replied && !c->need_keep)
        return LMTPD_SIEVE_REPLY;
    if (is_replied)
        pending_drop_last();
    return finish_keep(c, reply);
}

/* The keep, explicit or implicit, once the other actions are done. */
static enum lmtpd_sieve_result finish_keep(struct sctx *c,
                                           struct buf *reply)
{
    int r;

    if (!c->need_keep || strarray_find(&c->filed, c->rc->mboxname, 0) >= 0)
        return LMTPD_SIEVE_HANDLED;
    /* A plain keep takes lmtpd's own path (single instance, duplicate
     * marking). */
    if (!c->has_edits && !c->keep_has_flags)
        return LMTPD_SIEVE_KEEP;
    r = append_to(c, c->rc->mboxname,
                  c->keep_has_flags ? &c->keep_flags : NULL,
                  lmtpd_auth(c->s), c->rc->flags);
    if (r) {
        xsyslog(LOG_NOTICE, "delivery failed", "mailbox=%s error=%s",
                log_escape(c->rc->mboxname, 0), error_message(r));
        buf_setcstr(reply, keep_error_reply(r));
        return LMTPD_SIEVE_REPLY;
    }
    return LMTPD_SIEVE_HANDLED;
}

/* The active script's bytecode of the recipient.  Returns 0,
 * ERR_NOTFOUND (no active script), or an error (logged). */
static int active_bytecode(struct sctx *c, struct buf *bc)
{
    char *name = NULL;
    int r;

    r = sievedir_user_dir(c->userid, &c->dir);
    if (!r)
        r = sievedir_active_name(buf_cstring(&c->dir), &name);
    if (!r)
        r = script_bytecode(buf_cstring(&c->dir), name, 1, bc);
    free(name);
    return r;
}

/* Release a run's state; removes the edited staging file. */
static void sctx_fini(struct sctx *c)
{
    if (c->edited_path.len)
        unlink(buf_cstring(&c->edited_path));
    buf_free(&c->edited_path);
    acl_auth_free(&c->auth);
    buf_free(&c->dir);
    buf_free(&c->text);
    hfields_fini(&c->fields);
    hfields_fini(&c->edited);
    message_free(&c->parsed);
    buf_free(&c->msgid);
    strarray_fini(&c->filed);
    strarray_fini(&c->keep_flags);
}

/* Remember that this Message-ID was dealt with for the recipient, as
 * lmtpd does after its own append, so a second copy of the message is
 * suppressed before the script runs again (and files it twice). */
static void mark_handled(struct sctx *c)
{
    struct duplicate_key key =
        DUPLICATE_KEY_INIT(buf_cstring(&c->msgid), c->rc->mboxname, "");

    if (c->msgid.len && config_getswitch(IMAPOPT_DUPLICATESUPPRESSION))
        duplicate_mark(&key, time(NULL), 0);
}

/* The hook: run the recipient's active script. */
static enum lmtpd_sieve_result sieve_hook(const struct lmtpd *s,
                                          const struct lmtpd_rcpt *rc,
                                          const char *msgfile,
                                          const struct lmtp_spool *sp,
                                          struct buf *reply)
{
    struct sieve_result res = SIEVE_RESULT_INITIALIZER;
    struct buf bc = BUF_INITIALIZER;
    enum lmtpd_sieve_result out = LMTPD_SIEVE_KEEP;
    struct sctx c;
    int r;

    /* shared folders (postuser) have no script */
    if (!rc->userid)
        return LMTPD_SIEVE_KEEP;
    memset(&c, 0, sizeof(c));
    c.s = s;
    c.rc = rc;
    c.msgfile = msgfile;
    c.sp = sp;
    c.userid = rc->userid;

    r = active_bytecode(&c, &bc);
    if (r) {
        if (r != ERR_NOTFOUND)
            xsyslog(LOG_WARNING, "sieve: no usable script, keeping",
                    "user=%s error=%s", log_escape(rc->userid, 0),
                    error_message(r));
        goto done;
    }
    c.auth = acl_auth_new(rc->userid, 0);
    if (mboxname_init_namespace(&c.ns, 0))
        goto done;
    lmtp_spool_message_id(&sp->header, &c.msgid);

    /* a run-time error leaves ERROR and KEEP in `res`: carried out as
     * any other result */
    sieve_execute(bc.s, bc.len, &callbacks, &c, &res);
    if (load_message(&c)) {
        /* nothing can be edited or forwarded: plain keep */
        out = LMTPD_SIEVE_KEEP;
        goto done;
    }
    hfields_copy(&c.edited, &c.fields);
    out = run_actions(&c, &res, reply);
    if (out == LMTPD_SIEVE_HANDLED)
        mark_handled(&c);

done:
    sieve_result_fini(&res);
    buf_free(&bc);
    sctx_fini(&c);
    return out;
}

void lmtpd_sieve_init(void)
{
    lmtpd_sieve_hook = sieve_hook;
    lmtpd_sieve_done_hook = sieve_done;
}

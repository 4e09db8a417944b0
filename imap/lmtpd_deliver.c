/* lmtpd: recipients and delivery.  Turns a forward path into a mailbox
 * (users, user+detail folders, postuser shared folders, virtual
 * domains), checks it at RCPT time, and delivers the spooled message
 * with duplicate suppression, the Sieve hook and the append layer. */
/* Columba is free software; see COPYING for the licence. */

/*
 * Recipient addresses
 * ===================
 *   user@domain             user's INBOX
 *   user+detail@domain      user's folder "detail" (the namespace's
 *                           separator divides levels) when it exists
 *                           and this session may post to it ('p' for
 *                           the AUTH user, else for "anyone"), else the
 *                           INBOX, as Cyrus does
 *   postuser+shared.f@dom   shared folder "shared.f" (postuser option;
 *                           by default empty: "+shared.f@dom"), with
 *                           'p' required
 * With lmtp_downcase_rcpt the local part is lower-cased up to the '+'
 * (the detail keeps its case: folder names are case-sensitive).  The
 * domain is used only with virtdomains; defaultdomain counts as none.
 */

#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "lib/buf.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/util.h"
#include "lib/xmalloc.h"
#include "master/service.h"
#include "imap/append.h"
#include "imap/authserver.h"
#include "imap/duplicate.h"
#include "imap/lmtp_spool.h"
#include "imap/mboxlist.h"
#include "imap/mboxname.h"
#include "imap/quota.h"
#include "imap/userdeny.h"

#include "imap/lmtpd.h"

lmtpd_sieve_hook_t *lmtpd_sieve_hook;
lmtpd_sieve_done_hook_t *lmtpd_sieve_done_hook;

void lmtpd_rcpt_fini(struct lmtpd_rcpt *rc)
{
    free(rc->addr);
    free(rc->mboxname);
    free(rc->userid);
    free(rc->partition);
    memset(rc, 0, sizeof(*rc));
}

/* The over-quota reply the configuration asks for. */
static const char *over_quota_reply(void)
{
    return config_getswitch(IMAPOPT_LMTP_OVER_QUOTA_PERM_FAILURE)
           ? "552 5.2.2 Over quota" : "452 4.2.2 Over quota";
}

/* A forward path taken apart. */
struct rcpt_addr {
    struct buf user;        /* local part before '+', unquoted */
    struct buf detail;      /* after the first '+' */
    int has_detail;
    struct buf domain;      /* lower case, "" when none or unused */
};

static void rcpt_addr_fini(struct rcpt_addr *ra)
{
    buf_free(&ra->user);
    buf_free(&ra->detail);
    buf_free(&ra->domain);
}

/* Split `addr` into user, detail and domain.  Returns 0 or -1. */
static int split_addr(const char *addr, struct rcpt_addr *ra)
{
    const char *at = strrchr(addr, '@');
    size_t llen = at ? (size_t)(at - addr) : strlen(addr);
    struct buf local = BUF_INITIALIZER;
    const char *plus, *defdom;
    size_t i;

    /* Unquote a quoted local part ("a b"@x). */
    for (i = 0; i < llen; i++) {
        if (addr[i] == '"')
            continue;
        if (addr[i] == '\\' && i + 1 < llen)
            i++;
        buf_putc(&local, addr[i]);
    }
    if (!local.len) {
        buf_free(&local);
        return -1;
    }
    buf_cstring(&local);
    plus = strchr(local.s, '+');
    buf_setmap(&ra->user, local.s,
               plus ? (size_t)(plus - local.s) : local.len);
    if (plus) {
        ra->has_detail = 1;
        buf_setcstr(&ra->detail, plus + 1);
    }
    buf_free(&local);
    if (config_getswitch(IMAPOPT_LMTP_DOWNCASE_RCPT))
        buf_tolower(&ra->user);

    if (at && config_getenum(IMAPOPT_VIRTDOMAINS)) {
        buf_setcstr(&ra->domain, at + 1);
        buf_tolower(&ra->domain);
        defdom = config_getstring(IMAPOPT_DEFAULTDOMAIN);
        if (defdom && !strcasecmp(defdom, buf_cstring(&ra->domain)))
            buf_reset(&ra->domain);
    }
    return ra->user.len || ra->has_detail ? 0 : -1;
}

/* The rights of the session on the mailbox `entry`. */
static uint32_t session_rights(const struct lmtpd *s,
                               const struct mboxlist_entry *entry)
{
    const struct auth_state *auth = lmtpd_auth(s);
    uint32_t rights = 0;

    if (auth && auth->is_admin)
        return ACL_FULL;
    acl_myrights(auth, entry->acl, entry->name, &rights);
    return rights;
}

/* `s` folded for lmtp_fuzzy_mailbox_match: ASCII lower case, blanks
 * dropped, into `out`. */
static void fuzzy_fold(const char *s, struct buf *out)
{
    buf_reset(out);
    for (; *s; s++) {
        if (*s == ' ' || *s == '\t')
            continue;
        buf_putc(out, (*s >= 'A' && *s <= 'Z') ? (char)(*s + 32) : *s);
    }
    buf_cstring(out);
}

/* What fuzzy_cb looks for and finds. */
struct fuzzy_rock {
    struct buf want;        /* folded name wanted */
    struct buf folded;      /* scratch */
    char *found;            /* the first mailbox that folds the same */
};

static int fuzzy_cb(const struct mboxlist_entry *entry, void *rock)
{
    struct fuzzy_rock *fr = rock;

    fuzzy_fold(entry->name, &fr->folded);
    if (strcmp(buf_cstring(&fr->folded), buf_cstring(&fr->want)))
        return 0;
    fr->found = xstrdup(entry->name);
    return 1;
}

/* Look up the folder of `userid` made of the first `depth` components of
 * `boxes`; with `fuzzy`, a folder of the user whose name differs only in
 * case and blanks will do.  Returns 0 with *entry_r, or an error. */
static int folder_lookup(const char *userid, const strarray_t *boxes,
                         int depth, int fuzzy,
                         struct mboxlist_entry **entry_r)
{
    struct mbname *mb = NULL;
    struct fuzzy_rock fr;
    char *inbox = NULL;
    int i, r;

    memset(&fr, 0, sizeof(fr));
    r = mbname_from_userid(userid, &mb);
    for (i = 0; !r && i < depth; i++)
        r = mbname_push_box(mb, strarray_nth(boxes, i));
    if (!r)
        r = mboxlist_lookup(mbname_intname(mb), entry_r);
    if (r != ERR_MAILBOX_NONEXISTENT || !fuzzy)
        goto done;

    fuzzy_fold(mbname_intname(mb), &fr.want);
    r = mboxname_user_mbox(userid, NULL, &inbox);
    if (!r && mboxlist_foreach(inbox, fuzzy_cb, &fr) && fr.found)
        r = mboxlist_lookup(fr.found, entry_r);
    else if (!r)
        r = ERR_MAILBOX_NONEXISTENT;
done:
    mbname_free(&mb);
    buf_free(&fr.want);
    buf_free(&fr.folded);
    free(fr.found);
    free(inbox);
    return r;
}

/* The user's folder `detail` when it exists and the session may post
 * there; else NULL (deliver to the INBOX).  With
 * lmtp_fuzzy_mailbox_match, case and blanks are ignored and a missing
 * folder falls back to its nearest existing parent below the INBOX, as
 * Cyrus documents.  Returns a looked-up entry (caller frees). */
static struct mboxlist_entry *detail_folder(const struct lmtpd *s,
                                            const char *userid,
                                            const char *detail)
{
    char sep[2] = { config_getswitch(IMAPOPT_UNIXHIERARCHYSEP) ? '/' : '.',
                    '\0' };
    int fuzzy = config_getswitch(IMAPOPT_LMTP_FUZZY_MAILBOX_MATCH);
    struct mboxlist_entry *entry = NULL;
    strarray_t *boxes;
    int depth, r = ERR_MAILBOX_NONEXISTENT;

    if (!*detail)
        return NULL;
    boxes = strarray_split(detail, sep, 0);
    for (depth = boxes->count; depth >= 1; depth--) {
        r = folder_lookup(userid, boxes, depth, fuzzy, &entry);
        if (r != ERR_MAILBOX_NONEXISTENT || !fuzzy)
            break;
    }
    if (!r && !(session_rights(s, entry) & ACL_POST))
        mboxlist_entry_free(&entry);
    strarray_free(&boxes);
    return entry;
}

/* The shared mailbox named by a postuser detail, or an error. */
static int postuser_folder(const char *detail, const char *domain,
                           struct mboxlist_entry **entry_r)
{
    struct namespace ns;
    struct buf ext = BUF_INITIALIZER;
    char *intname = NULL;
    int r;

    r = mboxname_init_namespace(&ns, 1);
    if (r)
        return r;
    buf_setcstr(&ext, detail);
    if (*domain)
        buf_printf(&ext, "@%s", domain);
    r = mboxname_from_external(buf_cstring(&ext), &ns, NULL, &intname);
    if (!r)
        r = mboxlist_lookup(intname, entry_r);
    free(intname);
    buf_free(&ext);
    return r;
}

/* Is the quota root of `mboxname` able to take the message?  With
 * lmtp_strict_quota the size from MAIL SIZE= must fit; otherwise only a
 * root already over its limit refuses (see imap/append.c). */
static int quota_ok(const struct lmtpd *s, const char *mboxname)
{
    int64_t deltas[QUOTA_NUMRESOURCES] = { 0 };
    struct quota q;
    char *root = NULL;
    int r;

    r = quota_find_root(mboxname, &root);
    if (r)
        return r == ERR_QUOTA_ROOT_NONEXISTENT ? 0 : r;
    r = quota_read(root, &q, NULL, 0);
    if (!r) {
        if (config_getswitch(IMAPOPT_LMTP_STRICT_QUOTA)) {
            deltas[QUOTA_STORAGE] = (int64_t)s->size_hint;
            deltas[QUOTA_MESSAGE] = 1;
            r = quota_check(&q, deltas);
        }
        else {
            r = quota_check(&q, NULL);
        }
    }
    else if (r == ERR_QUOTA_ROOT_NONEXISTENT) {
        r = 0;
    }
    quota_fini(&q);
    free(root);
    return r;
}

/* Look up the INBOX of the user `ra` names: created first when missing
 * and autocreate_post is on (with autocreate_quota), or replaced by the
 * INBOX of lmtp_catchall_mailbox (a user) when unknown.  Returns 0 with
 * the canonical user id and the entry (caller frees both), or the
 * error. */
static int user_inbox(const struct lmtpd *s, struct rcpt_addr *ra,
                      char **userid_r, struct mboxlist_entry **entry_r)
{
    const char *catchall = config_getstring(IMAPOPT_LMTP_CATCHALL_MAILBOX);
    struct buf uid = BUF_INITIALIZER;
    char *userid = NULL;
    char *inbox = NULL;
    int r;

    buf_setcstr(&uid, buf_cstring(&ra->user));
    if (ra->domain.len)
        buf_printf(&uid, "@%s", buf_cstring(&ra->domain));
    r = mboxname_canonical_userid(buf_cstring(&uid), &userid);
    if (!r)
        r = mboxname_user_mbox(userid, NULL, &inbox);
    if (!r)
        r = mboxlist_lookup(inbox, entry_r);
    if (r == ERR_MAILBOX_NONEXISTENT
        && config_getswitch(IMAPOPT_AUTOCREATE_POST)) {
        authserver_autocreate_inbox(userid, lmtpd_auth(s));
        r = mboxlist_lookup(inbox, entry_r);
    }
    if (r == ERR_MAILBOX_NONEXISTENT && catchall && *catchall) {
        free(userid);
        userid = NULL;
        free(inbox);
        inbox = NULL;
        r = mboxname_canonical_userid(catchall, &userid);
        if (!r)
            r = mboxname_user_mbox(userid, NULL, &inbox);
        if (!r)
            r = mboxlist_lookup(inbox, entry_r);
    }
    if (!r) {
        *userid_r = userid;
        userid = NULL;
    }
    free(userid);
    free(inbox);
    buf_free(&uid);
    return r;
}

/* RCPT for postuser+folder: the shared mailbox, with 'p' required.
 * Returns 0 with *entry_r, or an error with the reply set. */
static int rcpt_shared(const struct lmtpd *s, struct rcpt_addr *ra,
                       struct mboxlist_entry **entry_r, unsigned *flags_r,
                       struct buf *reply)
{
    int r;

    r = ra->has_detail
        ? postuser_folder(buf_cstring(&ra->detail), buf_cstring(&ra->domain),
                          entry_r)
        : ERR_MAILBOX_NONEXISTENT;
    if (r) {
        buf_setcstr(reply, "550 5.1.1 Mailbox unknown");
        return r;
    }
    if (!(session_rights(s, *entry_r) & ACL_POST)) {
        buf_setcstr(reply, "550 5.7.1 Permission denied");
        return ERR_ACL_DENIED;
    }
    *flags_r = APPEND_DELIVERY;
    return 0;
}

/* RCPT for user[+detail]: the INBOX, or the detail folder when it
 * exists and takes posts; the deny list applies.  Returns 0 with
 * *userid_r and *entry_r, or an error with the reply set. */
static int rcpt_user(const struct lmtpd *s, struct rcpt_addr *ra,
                     char **userid_r, struct mboxlist_entry **entry_r,
                     unsigned *flags_r, struct buf *reply)
{
    struct mboxlist_entry *folder;
    char *msg = NULL;
    int r;

    r = user_inbox(s, ra, userid_r, entry_r);
    if (r) {
        buf_setcstr(reply, r == ERR_MAILBOX_NONEXISTENT
                           || r == ERR_MAILBOX_BADNAME
                    ? "550 5.1.1 User unknown"
                    : "451 4.3.0 Temporary failure looking up user");
        return r;
    }
    r = userdeny_check(*userid_r, service_name(), &msg);
    free(msg);
    if (r) {
        buf_setcstr(reply, "550 5.7.1 Delivery to this user is denied");
        return r;
    }
    /* The owner's own INBOX takes mail whatever its ACL says. */
    *flags_r = APPEND_DELIVERY | APPEND_IGNORE_ACL;
    if (!ra->has_detail)
        return 0;
    folder = detail_folder(s, *userid_r, buf_cstring(&ra->detail));
    if (folder) {
        mboxlist_entry_free(entry_r);
        *entry_r = folder;
        *flags_r = APPEND_DELIVERY;
    }
    return 0;
}

int lmtpd_rcpt_check(struct lmtpd *s, const char *addr, int ignorequota,
                     struct lmtpd_rcpt *rc, struct buf *reply)
{
    struct rcpt_addr ra;
    struct mboxlist_entry *entry = NULL;
    const char *postuser = config_getstring(IMAPOPT_POSTUSER);
    char *userid = NULL;
    int r;

    memset(&ra, 0, sizeof(ra));
    buf_reset(reply);
    if (split_addr(addr, &ra)) {
        buf_setcstr(reply, "501 5.1.3 Bad recipient address syntax");
        r = ERR_INVALID;
        goto done;
    }
    if (!strcmp(buf_cstring(&ra.user), postuser ? postuser : ""))
        r = rcpt_shared(s, &ra, &entry, &rc->flags, reply);
    else
        r = rcpt_user(s, &ra, &userid, &entry, &rc->flags, reply);
    if (r)
        goto done;

    if (ignorequota) {
        rc->flags |= APPEND_IGNORE_QUOTA;
    }
    else {
        r = quota_ok(s, entry->name);
        if (r) {
            buf_setcstr(reply, r == ERR_QUOTA_EXCEEDED ? over_quota_reply()
                        : "451 4.3.0 Temporary failure reading quota");
            goto done;
        }
    }

    rc->addr = xstrdup(addr);
    rc->mboxname = xstrdup(entry->name);
    rc->partition = xstrdup(entry->partition);
    rc->userid = userid;
    userid = NULL;

done:
    mboxlist_entry_free(&entry);
    rcpt_addr_fini(&ra);
    free(userid);
    return r;
}

/* The reply for a failed append of one recipient. */
static const char *append_error_reply(int r)
{
    switch (r) {
    case ERR_QUOTA_EXCEEDED:
        return over_quota_reply();
    case ERR_MAILBOX_NONEXISTENT:
        return "550 5.1.1 Mailbox no longer exists";
    case ERR_ACL_DENIED:
    case ERR_PERMISSION:
        return "550 5.7.1 Permission denied";
    case ERR_TOOBIG:
        return "552 5.3.4 Message too big for mailbox";
    case ERR_INVALID:
        return "554 5.6.0 Message could not be parsed";
    default:
        return "451 4.3.0 Temporary failure storing message";
    }
}

/* Is duplicate suppression on for a message with id `msgid`? */
static int suppress_duplicates(const char *msgid)
{
    return *msgid && config_getswitch(IMAPOPT_DUPLICATESUPPRESSION);
}

/* The earlier recipient of this transaction with the same mailbox as
 * rcpts[i], or i itself when there is none. */
static size_t first_same_mailbox(const struct lmtpd *s, size_t i)
{
    size_t j;

    for (j = 0; j < i; j++) {
        if (!strcmp(s->rcpts[j].mboxname, s->rcpts[i].mboxname))
            return j;
    }
    return i;
}

/* What becomes of one recipient. */
enum rcpt_outcome {
    OUTCOME_APPEND = 0,     /* see targets[target_of[i]] */
    OUTCOME_DUPLICATE,      /* delivered by an earlier transaction */
    OUTCOME_SAME_AS,        /* same mailbox as rcpts[same_as[i]] */
    OUTCOME_SIEVE_HANDLED,
    OUTCOME_SIEVE_REPLY     /* answered with sieve_reply[i] */
};

/* The plan and results of delivering one message; arrays have one entry
 * per recipient. */
struct delivery {
    struct buf msgid;
    int is_suppressing;         /* duplicate suppression applies */
    struct append_target *targets;
    size_t ntargets;
    enum rcpt_outcome *outcome;
    size_t *target_of;
    size_t *same_as;
    struct buf *sieve_reply;    /* the hook's reply (OUTCOME_SIEVE_REPLY) */
};

/* Decide per recipient: duplicate, Sieve, or the implicit keep (an
 * append target). */
static void delivery_plan(struct lmtpd *s, struct delivery *d,
                          const char *msgfile, const struct lmtp_spool *sp)
{
    size_t i;

    for (i = 0; i < s->nrcpt; i++) {
        struct lmtpd_rcpt *rc = &s->rcpts[i];
        struct duplicate_key key =
            DUPLICATE_KEY_INIT(buf_cstring(&d->msgid), rc->mboxname, "");

        if (d->is_suppressing
            && (d->same_as[i] = first_same_mailbox(s, i)) != i) {
            d->outcome[i] = OUTCOME_SAME_AS;
            continue;
        }
        if (d->is_suppressing && duplicate_check(&key, NULL)) {
            d->outcome[i] = OUTCOME_DUPLICATE;
            xsyslog(LOG_INFO, "duplicate suppressed",
                    "mailbox=%s msgid=%s", log_escape(rc->mboxname, 0),
                    log_escape(buf_cstring(&d->msgid), 256));
            continue;
        }
        /* SIEVE HOOK: the recipient's script runs here, once the
         * message is known not to be a duplicate. */
        switch (lmtpd_sieve_hook
                ? lmtpd_sieve_hook(s, rc, msgfile, sp, &d->sieve_reply[i])
                : LMTPD_SIEVE_KEEP) {
        case LMTPD_SIEVE_HANDLED:
            d->outcome[i] = OUTCOME_SIEVE_HANDLED;
            continue;
        case LMTPD_SIEVE_REPLY:
            d->outcome[i] = OUTCOME_SIEVE_REPLY;
            continue;
        case LMTPD_SIEVE_KEEP:
            break;
        }
        d->outcome[i] = OUTCOME_APPEND;
        d->targets[d->ntargets].mboxname = rc->mboxname;
        d->targets[d->ntargets].flags = rc->flags;
        d->target_of[i] = d->ntargets++;
    }
    if (lmtpd_sieve_done_hook)
        lmtpd_sieve_done_hook(s);
}

/* Send the reply of recipient `i` (after the appends). */
static void delivery_reply(struct lmtpd *s, struct delivery *d, size_t i,
                           const struct lmtp_spool *sp)
{
    struct lmtpd_rcpt *rc = &s->rcpts[i];
    const struct append_target *t;
    size_t k = i;

    switch (d->outcome[i]) {
    case OUTCOME_DUPLICATE:
        lmtpd_reply(s, "250 2.0.0 Ok, duplicate suppressed");
        return;
    case OUTCOME_SIEVE_HANDLED:
        lmtpd_reply(s, "250 2.0.0 Ok, handled by Sieve");
        return;
    case OUTCOME_SIEVE_REPLY:
        lmtpd_reply(s, "%s", buf_cstring(&d->sieve_reply[i]));
        return;
    case OUTCOME_SAME_AS:
        /* Shares the fate of the first recipient with that mailbox;
         * the message is stored once. */
        k = d->same_as[i];
        if (d->outcome[k] != OUTCOME_APPEND
            || !d->targets[d->target_of[k]].r) {
            lmtpd_reply(s, "250 2.0.0 Ok, duplicate suppressed");
            return;
        }
        break;
    case OUTCOME_APPEND:
        break;
    }

    t = &d->targets[d->target_of[k]];
    if (t->r) {
        if (k == i)
            xsyslog(LOG_NOTICE, "delivery failed", "mailbox=%s error=%s",
                    log_escape(rc->mboxname, 0), error_message(t->r));
        lmtpd_reply(s, "%s", append_error_reply(t->r));
        return;
    }
    if (d->is_suppressing) {
        struct duplicate_key key =
            DUPLICATE_KEY_INIT(buf_cstring(&d->msgid), rc->mboxname, "");

        duplicate_mark(&key, time(NULL), t->uid);
    }
    xsyslog(LOG_INFO, "delivered", "mailbox=%s uid=%u size=%llu "
            "from=%s msgid=%s", log_escape(rc->mboxname, 0), t->uid,
            (unsigned long long)sp->size, log_escape(s->from, 256),
            log_escape(buf_cstring(&d->msgid), 256));
    lmtpd_reply(s, "250 2.1.5 Ok, delivered");
}

void lmtpd_deliver(struct lmtpd *s, const char *msgfile,
                   const struct lmtp_spool *sp)
{
    struct delivery d;
    size_t i;

    memset(&d, 0, sizeof(d));
    d.targets = xzmalloc(s->nrcpt * sizeof(*d.targets));
    d.outcome = xzmalloc(s->nrcpt * sizeof(*d.outcome));
    d.target_of = xzmalloc(s->nrcpt * sizeof(*d.target_of));
    d.same_as = xzmalloc(s->nrcpt * sizeof(*d.same_as));
    d.sieve_reply = xzmalloc(s->nrcpt * sizeof(*d.sieve_reply));
    lmtp_spool_message_id(&sp->header, &d.msgid);
    d.is_suppressing = suppress_duplicates(buf_cstring(&d.msgid));

    delivery_plan(s, &d, msgfile, sp);

    /* One durable append per mailbox, hard links where possible; only
     * then any 250. */
    if (d.ntargets)
        append_deliver_many(msgfile, 0, NULL, lmtpd_auth(s), d.targets,
                            d.ntargets);

    /* Replies in RCPT order, each honest about its own outcome. */
    for (i = 0; i < s->nrcpt; i++)
        delivery_reply(s, &d, i, sp);

    free(d.targets);
    free(d.outcome);
    free(d.target_of);
    free(d.same_as);
    for (i = 0; i < s->nrcpt; i++)
        buf_free(&d.sieve_reply[i]);
    free(d.sieve_reply);
    buf_free(&d.msgid);
}

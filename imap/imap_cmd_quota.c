/* imapd quota commands (RFC 9208): GETQUOTAROOT, GETQUOTA and, for
 * admins, SETQUOTA, as cyradm uses them. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/buf.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/util.h"
#include "lib/xmalloc.h"
#include "imap/mboxlist.h"
#include "imap/quota.h"

#include "imap/imapd.h"

/* Append "* QUOTA <root> (RES used limit ...)" for quota `q`. */
static void quota_reply(struct imapd *s, const struct quota *q)
{
    struct buf line = BUF_INITIALIZER;
    char *ext = imapd_extname(s, q->root);
    size_t start;
    int res;

    buf_appendcstr(&line, "* QUOTA ");
    imapd_buf_astring(&line, ext ? ext : q->root);
    buf_appendcstr(&line, " (");
    start = line.len;
    for (res = 0; res < QUOTA_NUMRESOURCES; res++) {
        int64_t used = q->useds[res];

        if (q->limits[res] == QUOTA_UNLIMITED)
            continue;
        if (res == QUOTA_STORAGE || res == QUOTA_ANNOTSTORAGE)
            used /= 1024;
        buf_printf(&line, "%s%s %lld %lld", line.len > start ? " " : "",
                   quota_resource_rfcname(res), (long long)used,
                   (long long)q->limits[res]);
    }
    buf_appendcstr(&line, ")\r\n");
    imapd_printf(s, "%s", buf_cstring(&line));
    buf_free(&line);
    free(ext);
}

/* May the session see quota root `root`: admins, and the owner of a
 * user's root. */
static int may_read_root(struct imapd *s, const char *root)
{
    return s->is_admin || mboxname_userownsmailbox(s->userid, root);
}

/* GETQUOTAROOT mailbox */
void imapd_cmd_getquotaroot(struct imapd *s, int c)
{
    struct buf ext = BUF_INITIALIZER;
    struct buf line = BUF_INITIALIZER;
    struct mboxlist_entry *e = NULL;
    struct quota q;
    char *intname = NULL;
    char *root = NULL;
    uint32_t rights = 0;
    int r;

    quota_init(&q, NULL);
    if (imapd_sp(s, c))
        goto done;
    c = imap_parse_astring(&s->parser, &ext);
    if (imapd_eol(s, c))
        goto done;
    r = imapd_intname(s, buf_cstring(&ext), &intname);
    if (!r)
        r = mboxlist_lookup(intname, &e);
    if (!r) {
        acl_myrights(s->auth, e->acl, intname, &rights);
        if (!(rights & (ACL_READ | ACL_ADMIN)))
            r = ERR_MAILBOX_NONEXISTENT;
    }
    if (r) {
        imapd_no_error(s, r);
        goto done;
    }
    buf_appendcstr(&line, "* QUOTAROOT ");
    imapd_buf_astring(&line, buf_cstring(&ext));
    if (!quota_find_root(intname, &root) && !quota_read(root, &q, NULL, 0)) {
        char *rootext = imapd_extname(s, root);

        buf_putc(&line, ' ');
        imapd_buf_astring(&line, rootext ? rootext : root);
        free(rootext);
    }
    imapd_printf(s, "%s\r\n", buf_cstring(&line));
    if (q.root)
        quota_reply(s, &q);
    imapd_ok(s, "Completed");
done:
    quota_fini(&q);
    mboxlist_entry_free(&e);
    free(intname);
    free(root);
    buf_free(&ext);
    buf_free(&line);
}

/* GETQUOTA root */
void imapd_cmd_getquota(struct imapd *s, int c)
{
    struct buf ext = BUF_INITIALIZER;
    struct quota q;
    char *root = NULL;
    int r;

    quota_init(&q, NULL);
    if (imapd_sp(s, c))
        goto done;
    c = imap_parse_astring(&s->parser, &ext);
    if (imapd_eol(s, c))
        goto done;
    r = imapd_intname(s, buf_cstring(&ext), &root);
    if (!r && !may_read_root(s, root))
        r = ERR_ACL_DENIED;
    if (!r)
        r = quota_read(root, &q, NULL, 0);
    if (r) {
        imapd_no_error(s, r);
        goto done;
    }
    quota_reply(s, &q);
    imapd_ok(s, "Completed");
done:
    quota_fini(&q);
    free(root);
    buf_free(&ext);
}

/* Read "(RES limit ...)" into `limits` (all others unlimited); *n_r
 * counts the resources named. */
static int read_limits(struct imapd *s, int64_t limits[QUOTA_NUMRESOURCES],
                       int *n_r)
{
    struct buf name = BUF_INITIALIZER;
    struct buf num = BUF_INITIALIZER;
    enum quota_resource res;
    uint64_t v;
    int c = imap_parse_getc(&s->parser);
    int i;

    for (i = 0; i < QUOTA_NUMRESOURCES; i++)
        limits[i] = QUOTA_UNLIMITED;
    if (c != '(') {
        c = c == EOF ? EOF : imap_parse_fail(&s->parser, "Expected (");
        goto done;
    }
    c = imap_parse_getc(&s->parser);
    if (c == ')')
        goto end;
    imap_parse_ungetc(&s->parser, c);
    do {
        c = imap_parse_atom(&s->parser, &name);
        if (imapd_sp(s, c))
            goto fail;
        c = imap_parse_atom(&s->parser, &num);
        if (c == EOF)
            goto fail;
        if (quota_resource_lookup(buf_cstring(&name), &res)
            || parse_uint64(buf_cstring(&num), NULL, &v)
            || v > (uint64_t)QUOTA_LIMIT_MAX) {
            c = imap_parse_fail(&s->parser, "Invalid quota resource");
            goto fail;
        }
        limits[res] = (int64_t)v;
        (*n_r)++;
    } while (c == ' ');
    if (c != ')') {
        c = imap_parse_fail(&s->parser, "Expected )");
        goto fail;
    }
end:
    c = imap_parse_getc(&s->parser);
done:
fail:
    buf_free(&name);
    buf_free(&num);
    return c;
}

/* Sum the usage of every mailbox at or below the new root. */
static int add_usage(const struct mboxlist_entry *e, void *rock)
{
    struct quota *q = rock;
    struct mailbox *mb = NULL;

    if (!imapd_open_mailbox(e->name, 0, NULL, &mb)) {
        q->useds[QUOTA_STORAGE] += (int64_t)mailbox_index(mb)->quota_used;
        q->useds[QUOTA_MESSAGE] += mailbox_index(mb)->exists;
        mailbox_close(&mb);
    }
    q->useds[QUOTA_NUMFOLDERS]++;
    return 0;
}

/* SETQUOTA root (resource limit ...), admins only.  Resources not
 * named lose their limit; an empty list removes the root (RFC 9208
 * 4.1.4; cyradm "sq root none"). */
void imapd_cmd_setquota(struct imapd *s, int c)
{
    struct buf ext = BUF_INITIALIZER;
    int64_t limits[QUOTA_NUMRESOURCES];
    struct txn *tid = NULL;
    struct quota q;
    char *root = NULL;
    int nlimits = 0;
    int i, r;

    quota_init(&q, NULL);
    if (imapd_sp(s, c))
        goto done;
    c = imap_parse_astring(&s->parser, &ext);
    if (imapd_sp(s, c))
        goto done;
    c = read_limits(s, limits, &nlimits);
    if (imapd_eol(s, c))
        goto done;
    r = imapd_intname(s, buf_cstring(&ext), &root);
    if (!r && !s->is_admin)
        r = ERR_ACL_DENIED;
    if (r) {
        imapd_no_error(s, r);
        goto done;
    }
    if (!nlimits) {
        r = quota_delete_root(root, NULL);
        if (r && r != ERR_QUOTA_ROOT_NONEXISTENT) {
            imapd_no_error(s, r);
            goto done;
        }
        xsyslog(LOG_NOTICE, "quota root removed", "user=%s mailbox=%s",
                log_escape(s->userid, 0), log_escape(root, 0));
        imapd_ok(s, "Completed");
        goto done;
    }

    r = quota_read(root, &q, &tid, 1);
    if (r == ERR_QUOTA_ROOT_NONEXISTENT) {
        /* A new root starts with what its mailboxes already hold.
         * XXX: appends racing with this walk are not counted, and
         * mailboxes under a deeper root are counted twice; Cyrus takes
         * the mailbox locks while it moves usage into a new root. */
        quota_abort(&tid);
        quota_fini(&q);
        quota_init(&q, root);
        r = mboxlist_foreach(root, add_usage, &q);
    }
    for (i = 0; !r && i < QUOTA_NUMRESOURCES; i++)
        q.limits[i] = limits[i];
    if (!r)
        r = quota_write(&q, tid ? &tid : NULL);
    if (!r && tid)
        r = quota_commit(&tid);
    if (tid)
        quota_abort(&tid);
    if (r) {
        imapd_no_error(s, r);
        goto done;
    }
    quota_reply(s, &q);
    imapd_ok(s, "Completed");
done:
    quota_fini(&q);
    free(root);
    buf_free(&ext);
}

void imapd_quota_alert(struct imapd *s, const char *intname)
{
    struct quota_warning w;

    if (quota_warning_check(intname, &w))
        return;
    imapd_printf(s, "* NO [ALERT] Mailbox is at %d%% of its %s quota\r\n",
                 w.percent, quota_resource_rfcname(w.res));
    quota_warning_fini(&w);
}

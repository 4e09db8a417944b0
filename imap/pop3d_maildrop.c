/* pop3d maildrop: the snapshot of the INBOX a POP3 session works on,
 * and the TRANSACTION and UPDATE commands of RFC 1939 over it. */
/* Columba is free software; see COPYING for the licence. */

/*
 * Concurrency.  A session takes its list of messages once, at login,
 * and holds no lock between commands, so any number of POP3 and IMAP
 * sessions share one mailbox.  Message numbers, sizes and UIDLs never
 * change during the session.  A message that another session expunged
 * meanwhile is still listed; RETR and TOP find its index record gone
 * or marked expunged and answer -ERR, and the expunge at QUIT skips
 * it.  Messages deleted here leave the mailbox only at QUIT (the
 * UPDATE state), and only those: a dropped connection expunges
 * nothing.
 *
 * UIDL is "<uidvalidity>.<uid>", as Cyrus makes it, so it survives
 * other sessions, restarts and reconstruct (which keeps both).
 */

#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/buf.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/prot.h"
#include "lib/util.h"
#include "lib/xmalloc.h"
#include "imap/acl.h"
#include "imap/mailbox.h"
#include "imap/mboxlist.h"
#include "imap/mboxname.h"

#include "imap/pop3d.h"

/* expunge_mode: "immediate" removes the files at once. */
static enum mailbox_expunge_mode expunge_mode(void)
{
    return config_getenum(IMAPOPT_EXPUNGE_MODE)
           == IMAP_ENUM_EXPUNGE_MODE_IMMEDIATE ? MAILBOX_EXPUNGE_IMMEDIATE
                                               : MAILBOX_EXPUNGE_DELAYED;
}

/* Read the live records of the locked mailbox into the snapshot.
 * With popuseimapflags, \Deleted messages are hidden as in Cyrus. */
static int take_snapshot(struct pop3d *s)
{
    const struct mailbox_index_header *idx = mailbox_index(s->mb);
    int hide_deleted = config_getswitch(IMAPOPT_POPUSEIMAPFLAGS);
    struct mailbox_record rec;
    uint32_t recno;
    int r;

    s->uidvalidity = idx->uidvalidity;
    s->msgs = xzmalloc(sizeof(*s->msgs) * (idx->exists + 1));
    s->nmsgs = 0;
    for (recno = 1; recno <= idx->num_records; recno++) {
        r = mailbox_read_record(s->mb, recno, &rec);
        if (r)
            return r;
        if (rec.system_flags & MAILBOX_FLAG_EXPUNGED)
            continue;
        if (hide_deleted && (rec.system_flags & MAILBOX_FLAG_DELETED))
            continue;
        /* exists counts these; a mismatch means a damaged header. */
        if (s->nmsgs > idx->exists)
            return ERR_CORRUPT;
        s->msgs[s->nmsgs].uid = rec.uid;
        s->msgs[s->nmsgs].size = rec.size;
        s->nmsgs++;
    }
    return 0;
}

/* popminpoll: refuse a login sooner than that after the last one, else
 * record this one.  Requires the exclusive lock.  Returns 0, or
 * ERR_AGAIN after answering -ERR [LOGIN-DELAY].
 * XXX: poppollpadding (extra logins allowed inside the period) is not
 * read; this behaves as its default of 1.  A count of recent logins
 * kept next to pop3_last_login would implement it. */
static int check_login_delay(struct pop3d *s)
{
    int64_t minpoll = config_getduration(IMAPOPT_POPMINPOLL, 'm');
    time_t last = mailbox_index(s->mb)->pop3_last_login;
    time_t now = time(NULL);

    if (minpoll > 0 && last > 0 && now >= last && now - last < minpoll) {
        pop3d_err(s, "[LOGIN-DELAY] Logins must be at least %lld minutes "
                  "apart", (long long)((minpoll + 59) / 60));
        xsyslog(LOG_NOTICE, "login refused: too soon", "user=%s",
                log_escape(s->userid, 0));
        return ERR_AGAIN;
    }
    return mailbox_set_pop3_last_login(s->mb, now);
}

int pop3d_maildrop_open(struct pop3d *s)
{
    struct mboxlist_entry *e = NULL;
    struct buf path = BUF_INITIALIZER;
    char *inbox = NULL;
    int r;

    r = mboxname_user_mbox(s->userid, NULL, &inbox);
    if (!r)
        r = mboxlist_lookup(inbox, &e);
    if (!r && e->type != MAILBOX_TYPE_MAIL)
        r = ERR_MAILBOX_NOTSUPPORTED;
    if (r) {
        pop3d_err(s, "[SYS/PERM] Unable to locate maildrop");
        goto done;
    }

    /* Without popuseacl the owner may do everything, as in Cyrus. */
    s->rights = ACL_FULL;
    if (config_getswitch(IMAPOPT_POPUSEACL)) {
        acl_myrights(s->auth, e->acl, e->name, &s->rights);
        if (!(s->rights & ACL_READ)) {
            pop3d_err(s, "[SYS/PERM] Maildrop is not readable");
            r = ERR_ACL_DENIED;
            goto done;
        }
    }

    r = mboxname_datapath(e->partition, e->name, 0, &path);
    if (!r)
        r = mailbox_open_iwrite(buf_cstring(&path), &s->mb);
    if (r) {
        xsyslog(LOG_ERR, "cannot open maildrop", "mailbox=%s error=%s",
                log_escape(e->name, 0), error_message(r));
        pop3d_err(s, "[SYS/TEMP] Unable to open maildrop");
        goto done;
    }
    r = check_login_delay(s);
    if (!r) {
        r = take_snapshot(s);
        if (r) {
            xsyslog(LOG_ERR, "cannot read maildrop", "mailbox=%s error=%s",
                    log_escape(e->name, 0), error_message(r));
            pop3d_err(s, "[SYS/TEMP] Unable to read maildrop");
        }
    }
    if (!r)
        r = mailbox_unlock(s->mb);
    if (r) {
        mailbox_close(&s->mb);
        free(s->msgs);
        s->msgs = NULL;
        s->nmsgs = 0;
        goto done;
    }
    s->intname = inbox;
    inbox = NULL;

done:
    mboxlist_entry_free(&e);
    buf_free(&path);
    free(inbox);
    return r;
}

/* Records `decide` picks for the expunge at QUIT: those whose UID is
 * in the sorted array `rock` points at. */
struct uidlist {
    uint32_t *uids;
    uint32_t count;
};

static int cmp_uid(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a;
    uint32_t y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

static int decide_deleted(struct mailbox *mb,
                          const struct mailbox_record *rec, void *rock)
{
    const struct uidlist *list = rock;

    (void)mb;
    return bsearch(&rec->uid, list->uids, list->count, sizeof(uint32_t),
                   cmp_uid) != NULL;
}

/* The UPDATE state: expunge what this session deleted (still live). */
static int expunge_deleted(struct pop3d *s)
{
    struct uidlist list;
    struct mailbox_record rec;
    unsigned count = 0;
    uint32_t i;
    int r;

    list.uids = xmalloc(sizeof(uint32_t) * (s->ndeleted + 1));
    list.count = 0;
    for (i = 0; i < s->nmsgs; i++) {
        if (s->msgs[i].is_deleted)
            list.uids[list.count++] = s->msgs[i].uid;
    }

    r = mailbox_lock(s->mb, 1);
    /* popuseimapflags: \Deleted first, as an IMAP client would see it
     * on its way out. */
    for (i = 0; !r && config_getswitch(IMAPOPT_POPUSEIMAPFLAGS)
                && i < list.count; i++) {
        if (mailbox_find_record(s->mb, list.uids[i], &rec)
            || (rec.system_flags & (MAILBOX_FLAG_EXPUNGED
                                    | MAILBOX_FLAG_DELETED)))
            continue;
        rec.system_flags |= MAILBOX_FLAG_DELETED;
        r = mailbox_rewrite_record(s->mb, &rec);
    }
    if (!r)
        r = mailbox_expunge(s->mb, decide_deleted, &list, expunge_mode(),
                            &count);
    if (!r)
        r = mailbox_unlock(s->mb);
    else
        mailbox_unlock(s->mb);

    if (r)
        xsyslog(LOG_ERR, "expunge failed", "user=%s mailbox=%s error=%s",
                log_escape(s->userid, 0), log_escape(s->intname, 0),
                error_message(r));
    else
        xsyslog(LOG_NOTICE, "expunged", "user=%s mailbox=%s deleted=%u "
                "expunged=%u", log_escape(s->userid, 0),
                log_escape(s->intname, 0), list.count, count);
    free(list.uids);
    return r;
}

int pop3d_maildrop_close(struct pop3d *s, int do_update)
{
    int r = 0;

    if (!s->mb)
        return 0;
    if (do_update && s->ndeleted)
        r = expunge_deleted(s);
    mailbox_close(&s->mb);
    free(s->msgs);
    s->msgs = NULL;
    s->nmsgs = 0;
    s->ndeleted = 0;
    free(s->intname);
    s->intname = NULL;
    return r;
}

/* The message numbered by `arg`, or NULL after answering -ERR (no such
 * number, or deleted in this session). */
static struct pop3d_msg *find_msg(struct pop3d *s, const char *arg)
{
    uint32_t n;

    if (parse_uint32(arg, NULL, &n) || n == 0 || n > s->nmsgs) {
        pop3d_err(s, "No such message");
        return NULL;
    }
    if (s->msgs[n - 1].is_deleted) {
        pop3d_err(s, "Message %u already deleted", n);
        return NULL;
    }
    return &s->msgs[n - 1];
}

/* STAT */
void pop3d_cmd_stat(struct pop3d *s, int argc, char **argv)
{
    uint64_t total = 0;
    uint32_t count = 0;
    uint32_t i;

    (void)argc;
    (void)argv;
    for (i = 0; i < s->nmsgs; i++) {
        if (!s->msgs[i].is_deleted) {
            count++;
            total += s->msgs[i].size;
        }
    }
    pop3d_ok(s, "%u %llu", count, (unsigned long long)total);
}

/* One scan-listing (LIST) or unique-id listing (UIDL) line, without
 * CRLF, for message number `n`. */
static void listing(struct pop3d *s, int is_uidl, uint32_t n,
                    struct buf *out)
{
    const struct pop3d_msg *m = &s->msgs[n - 1];

    if (is_uidl)
        buf_printf(out, "%u %u.%u", n, s->uidvalidity, m->uid);
    else
        buf_printf(out, "%u %llu", n, (unsigned long long)m->size);
}

/* LIST [msg] and UIDL [msg] */
void pop3d_cmd_list(struct pop3d *s, int argc, char **argv)
{
    int is_uidl = !strcasecmp(argv[0], "UIDL");
    struct buf out = BUF_INITIALIZER;
    const struct pop3d_msg *m;
    uint32_t i;

    if (argc == 2) {
        m = find_msg(s, argv[1]);
        if (!m)
            return;
        listing(s, is_uidl, (uint32_t)(m - s->msgs) + 1, &out);
        pop3d_ok(s, "%s", buf_cstring(&out));
        buf_free(&out);
        return;
    }
    buf_appendcstr(&out, is_uidl ? "+OK Unique-id listing follows\r\n"
                                 : "+OK Scan listing follows\r\n");
    for (i = 0; i < s->nmsgs; i++) {
        if (s->msgs[i].is_deleted)
            continue;
        listing(s, is_uidl, i + 1, &out);
        buf_appendcstr(&out, "\r\n");
    }
    buf_appendcstr(&out, ".\r\n");
    if (out.len > PROT_BUFSIZE)
        pop3d_cork(s, 1);
    prot_write(s->out, out.s, out.len);
    if (out.len > PROT_BUFSIZE)
        pop3d_cork(s, 0);
    buf_free(&out);
}

void pop3d_format_message(const char *base, size_t len, int64_t body_lines,
                          struct buf *out)
{
    const char *p = base;
    const char *end = base + len;
    int in_header = 1;
    int64_t sent = 0;

    /* Room for the text, a few dots and CRs, and the terminator. */
    buf_ensure(out, len + len / 16 + 8);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *next = nl ? nl + 1 : end;
        size_t n = (size_t)((nl ? nl : end) - p);

        if (n && p[n - 1] == '\r')
            n--;
        if (!in_header && body_lines >= 0 && sent++ >= body_lines)
            break;
        if (n && p[0] == '.')
            buf_putc(out, '.');
        buf_appendmap(out, p, n);
        buf_appendcstr(out, "\r\n");
        if (in_header && n == 0)
            in_header = 0;
        p = next;
    }
    buf_appendcstr(out, ".\r\n");
}

/* Read the message file of `m` into `text` under the mailbox lock,
 * checking it is still there; with `set_seen`, also mark it \Seen.
 * Returns 0, ERR_NOTFOUND when it has been expunged, or an error. */
static int load_message(struct pop3d *s, const struct pop3d_msg *m,
                        int set_seen, struct buf *text)
{
    struct mailbox_record rec;
    struct buf path = BUF_INITIALIZER;
    int r;

    r = mailbox_lock(s->mb, set_seen);
    if (!r) {
        r = mailbox_find_record(s->mb, m->uid, &rec);
        if (!r && (rec.system_flags & MAILBOX_FLAG_EXPUNGED))
            r = ERR_NOTFOUND;
    }
    if (!r) {
        mailbox_message_path(s->mb, m->uid, &path);
        r = util_read_file(buf_cstring(&path), text, (size_t)rec.size);
    }
    if (!r && set_seen && !(rec.system_flags & MAILBOX_FLAG_SEEN)) {
        rec.system_flags |= MAILBOX_FLAG_SEEN;
        r = mailbox_rewrite_record(s->mb, &rec);
    }
    if (!r)
        r = mailbox_unlock(s->mb);
    else
        mailbox_unlock(s->mb);
    buf_free(&path);
    return r;
}

/* RETR msg and TOP msg n */
void pop3d_cmd_retr(struct pop3d *s, int argc, char **argv)
{
    int is_top = argc == 3;
    struct buf text = BUF_INITIALIZER;
    struct buf out = BUF_INITIALIZER;
    const struct pop3d_msg *m;
    uint64_t lines = 0;
    int set_seen;
    int r;

    m = find_msg(s, argv[1]);
    if (!m)
        return;
    if (is_top && parse_uint64(argv[2], NULL, &lines)) {
        pop3d_err(s, "Invalid line count");
        return;
    }
    if (lines > INT64_MAX)
        lines = INT64_MAX;
    set_seen = !is_top && config_getswitch(IMAPOPT_POPUSEIMAPFLAGS)
               && (s->rights & ACL_SETSEEN);

    r = load_message(s, m, set_seen, &text);
    if (r == ERR_NOTFOUND) {
        pop3d_err(s, "Message %u has been removed by another session",
                  (unsigned)(m - s->msgs) + 1);
        goto done;
    }
    if (r) {
        xsyslog(LOG_ERR, "cannot read message", "mailbox=%s uid=%u "
                "error=%s", log_escape(s->intname, 0), m->uid,
                error_message(r));
        pop3d_err(s, "[SYS/TEMP] Cannot read message");
        goto done;
    }

    buf_printf(&out, "+OK %llu octets\r\n", (unsigned long long)m->size);
    pop3d_format_message(text.s, text.len, is_top ? (int64_t)lines : -1,
                         &out);
    if (out.len > PROT_BUFSIZE)
        pop3d_cork(s, 1);
    prot_write(s->out, out.s, out.len);
    if (out.len > PROT_BUFSIZE)
        pop3d_cork(s, 0);
    if (is_top)
        s->ntop++;
    else
        s->nretr++;

done:
    buf_free(&text);
    buf_free(&out);
}

/* DELE msg: only marked here; expunged at QUIT. */
void pop3d_cmd_dele(struct pop3d *s, int argc, char **argv)
{
    struct pop3d_msg *m;

    (void)argc;
    if (!(s->rights & ACL_DELETEMSG) || !(s->rights & ACL_EXPUNGE)) {
        pop3d_err(s, "Permission denied");
        return;
    }
    m = find_msg(s, argv[1]);
    if (!m)
        return;
    m->is_deleted = 1;
    s->ndeleted++;
    pop3d_ok(s, "Message %u deleted", (unsigned)(m - s->msgs) + 1);
}

/* RSET */
void pop3d_cmd_rset(struct pop3d *s, int argc, char **argv)
{
    uint32_t i;

    (void)argc;
    (void)argv;
    for (i = 0; i < s->nmsgs; i++)
        s->msgs[i].is_deleted = 0;
    s->ndeleted = 0;
    pop3d_ok(s, "Maildrop has %u messages", s->nmsgs);
}

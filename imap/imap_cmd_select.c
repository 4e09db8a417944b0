/* imapd selected state: SELECT/EXAMINE, CLOSE, UNSELECT, EXPUNGE, NOOP,
 * the message-number map and the untagged updates that keep a client's
 * view in step with other sessions. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <stdio.h>
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
#include "imap/mboxlist.h"
#include "imap/seen.h"
#include "imap/seqset.h"

#include "imap/imapd.h"

static const struct {
    uint32_t bit;
    const char *name;
} system_flags[] = {
    { MAILBOX_FLAG_ANSWERED, "\\Answered" },
    { MAILBOX_FLAG_FLAGGED, "\\Flagged" },
    { MAILBOX_FLAG_DELETED, "\\Deleted" },
    { MAILBOX_FLAG_SEEN, "\\Seen" },
    { MAILBOX_FLAG_DRAFT, "\\Draft" }
};
#define NSYSFLAGS (sizeof(system_flags) / sizeof(system_flags[0]))

void imapd_format_flags(struct mailbox *mb,
                        const struct mailbox_record *rec, struct buf *out)
{
    size_t start = out->len;
    unsigned i;

    buf_putc(out, '(');
    for (i = 0; i < NSYSFLAGS; i++) {
        if (rec->system_flags & system_flags[i].bit) {
            if (out->len > start + 1)
                buf_putc(out, ' ');
            buf_appendcstr(out, system_flags[i].name);
        }
    }
    for (i = 0; i < MAILBOX_MAX_USERFLAGS; i++) {
        const char *name;

        if (!(rec->user_flags[i / 32] & (1u << (i % 32))))
            continue;
        name = mailbox_userflag_name(mb, i);
        if (!name)
            continue;
        if (out->len > start + 1)
            buf_putc(out, ' ');
        buf_appendcstr(out, name);
    }
    buf_putc(out, ')');
}

/* The FLAGS list of the mailbox (system flags and its keywords) into
 * `out`; returns the number of keywords. */
static unsigned mailbox_flag_list(struct mailbox *mb, struct buf *out)
{
    unsigned i, n = 0;

    buf_appendcstr(out, "\\Answered \\Flagged \\Deleted \\Seen \\Draft");
    for (i = 0; i < MAILBOX_MAX_USERFLAGS; i++) {
        const char *name = mailbox_userflag_name(mb, i);

        if (name) {
            buf_printf(out, " %s", name);
            n++;
        }
    }
    return n;
}

/* Send FLAGS and PERMANENTFLAGS for the selected mailbox. */
static void send_flags(struct imapd *s)
{
    struct buf flags = BUF_INITIALIZER;

    s->sel->nkeywords = mailbox_flag_list(s->sel->mb, &flags);
    imapd_printf(s, "* FLAGS (%s)\r\n", buf_cstring(&flags));
    imapd_printf(s, "* OK [PERMANENTFLAGS (%s%s)] Ok\r\n",
                 s->sel->is_readonly ? "" : buf_cstring(&flags),
                 s->sel->is_readonly ? "" : " \\*");
    buf_free(&flags);
}

/* New keywords (ours or another session's) change FLAGS: resend it.
 * Keywords are never removed from a mailbox, so a count suffices. */
static void sync_keywords(struct imapd *s)
{
    struct buf tmp = BUF_INITIALIZER;

    if (mailbox_flag_list(s->sel->mb, &tmp) != s->sel->nkeywords)
        send_flags(s);
    buf_free(&tmp);
}

static int cmp_uid(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a;
    uint32_t y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

uint32_t imapd_msgno(const struct imapd *s, uint32_t uid)
{
    const uint32_t *hit;

    if (!s->sel || !s->sel->exists)
        return 0;
    hit = bsearch(&uid, s->sel->uids, s->sel->exists, sizeof(uint32_t),
                  cmp_uid);
    return hit ? (uint32_t)(hit - s->sel->uids) + 1 : 0;
}

int imapd_parse_uidset(struct imapd *s, const char *text, int is_uid,
                       struct seqset *uids)
{
    struct imapd_selected *sel = s->sel;
    struct seqset set = SEQSET_INITIALIZER;
    uint32_t maxval;
    uint32_t i;
    int r;

    seqset_clear(uids);

    /* "$" (RFC 5182): the UIDs saved by SEARCH RETURN (SAVE), minus
     * those expunged since, whether the command counts in UIDs or in
     * message numbers. */
    if (!strcmp(text, "$")) {
        for (i = 0; i < sel->exists; i++) {
            if (seqset_contains(&sel->searchres, sel->uids[i]))
                seqset_add(uids, sel->uids[i], sel->uids[i]);
        }
        return 0;
    }

    /* RFC 9586: under UIDONLY no message number is accepted anywhere,
     * e.g. a sequence-set key of UID SEARCH. */
    if (!is_uid && (s->enabled & IMAPD_ENABLED_UIDONLY)) {
        imap_parse_fail(&s->parser, "[UIDREQUIRED] Message numbers are not"
                        " allowed with UIDONLY");
        return -1;
    }
    maxval = is_uid ? (sel->exists ? sel->uids[sel->exists - 1] : 0)
                    : sel->exists;
    r = seqset_parse(&set, text, strlen(text), maxval, 0);
    if (r) {
        seqset_fini(&set);
        imap_parse_fail(&s->parser, "Invalid sequence set");
        return -1;
    }
    if (is_uid) {
        for (i = 0; i < sel->exists; i++) {
            if (seqset_contains(&set, sel->uids[i]))
                seqset_add(uids, sel->uids[i], sel->uids[i]);
        }
    }
    else if (seqset_last(&set) > sel->exists) {
        seqset_fini(&set);
        imap_parse_fail(&s->parser, "Invalid message sequence number");
        return -1;
    }
    else {
        uint32_t n;

        for (n = seqset_next(&set, 0); n; n = seqset_next(&set, n))
            seqset_add(uids, sel->uids[n - 1], sel->uids[n - 1]);
    }
    seqset_fini(&set);
    return 0;
}

void imapd_apply_seen(struct imapd *s, struct mailbox_record *rec)
{
    if (!s->sel || !s->sel->use_seendb)
        return;
    if (seqset_contains(&s->sel->seen, rec->uid))
        rec->system_flags |= MAILBOX_FLAG_SEEN;
    else
        rec->system_flags &= ~MAILBOX_FLAG_SEEN;
}

void imapd_set_seen(struct imapd *s, uint32_t uid, int is_seen)
{
    struct imapd_selected *sel = s->sel;

    if (!sel || !sel->use_seendb
        || !!seqset_contains(&sel->seen, uid) == !!is_seen)
        return;
    if (is_seen)
        seqset_add(&sel->seen, uid, uid);
    else
        seqset_remove(&sel->seen, uid, uid);
    sel->seen_dirty = 1;
}

/* Read the user's seen set for the selected mailbox. */
static void seen_load(struct imapd *s)
{
    struct imapd_selected *sel = s->sel;
    struct seendata sd = SEENDATA_INITIALIZER;
    struct seen *db = NULL;
    int r;

    r = seen_open(s->userid, SEEN_CREATE, &db);
    if (!r)
        r = seen_read(db, mailbox_uniqueid(sel->mb), &sd);
    if (!r && sd.seenuids)
        r = seqset_parse(&sel->seen, sd.seenuids, strlen(sd.seenuids), 0,
                         SEQSET_NOSTAR | SEQSET_ALLOW_EMPTY);
    if (r)
        xsyslog(LOG_ERR, "cannot read seen state", "user=%s mailbox=%s "
                "error=%s", log_escape(s->userid, 0),
                log_escape(sel->intname, 0), error_message(r));
    seen_freedata(&sd);
    seen_close(&db);
}

void imapd_seen_save(struct imapd *s)
{
    struct imapd_selected *sel = s->sel;
    struct seendata sd = SEENDATA_INITIALIZER;
    struct buf text = BUF_INITIALIZER;
    struct seen *db = NULL;
    int r;

    if (!sel || !sel->seen_dirty)
        return;
    sel->seen_dirty = 0;
    r = seen_open(s->userid, SEEN_CREATE, &db);
    if (!r)
        r = seen_lockread(db, mailbox_uniqueid(sel->mb), &sd);
    if (!r) {
        seqset_format(&sel->seen, &text);
        free(sd.seenuids);
        sd.seenuids = buf_release(&text);
        sd.lastchange = sd.lastread = time(NULL);
        sd.lastuid = sel->exists ? sel->uids[sel->exists - 1] : 0;
        r = seen_write(db, mailbox_uniqueid(sel->mb), &sd);
    }
    if (r)
        xsyslog(LOG_ERR, "cannot write seen state", "user=%s mailbox=%s "
                "error=%s", log_escape(s->userid, 0),
                log_escape(sel->intname, 0), error_message(r));
    seen_freedata(&sd);
    seen_close(&db);
    buf_free(&text);
}

void imapd_deselect(struct imapd *s)
{
    struct imapd_selected *sel = s->sel;

    if (!sel)
        return;
    imapd_seen_save(s);
    seqset_fini(&sel->seen);
    seqset_fini(&sel->searchres);
    mailbox_close(&sel->mb);
    free(sel->intname);
    free(sel->extname);
    free(sel->uids);
    free(sel);
    s->sel = NULL;
}

/* Add `uid` to the message map. */
static void map_append(struct imapd_selected *sel, uint32_t uid)
{
    if (sel->exists == sel->alloc) {
        sel->alloc = sel->alloc ? sel->alloc * 2 : 64;
        sel->uids = xreallocarray(sel->uids, sel->alloc, sizeof(uint32_t));
    }
    sel->uids[sel->exists++] = uid;
}

/* One flag change to report. */
struct flag_change {
    uint32_t uid;
    uint64_t modseq;
    char *flags;
};

int imapd_condstore_on(const struct imapd *s)
{
    return (s->enabled & IMAPD_ENABLED_CONDSTORE) != 0;
}

void imapd_condstore_enable(struct imapd *s)
{
    /* RFC 7162 3.1: the first enabling command while a mailbox is
     * selected tells its HIGHESTMODSEQ. */
    if (!imapd_condstore_on(s) && s->sel)
        imapd_printf(s, "* OK [HIGHESTMODSEQ %llu] Highest\r\n",
                     (unsigned long long)s->sel->highestmodseq);
    s->enabled |= IMAPD_ENABLED_CONDSTORE;
}

const char *imapd_emailid(const struct mailbox_record *rec, struct buf *out)
{
    mailbox_record_emailid(rec, out);
    return buf_cstring(out);
}

/* Remove from the message map every UID not in `live`: as "n EXPUNGE"
 * lines from the highest number down, so the numbers sent stay right
 * without renumbering in between, or under QRESYNC as one VANISHED
 * line (RFC 7162 3.2.10). */
static void report_expunges(struct imapd *s, const struct seqset *live)
{
    struct imapd_selected *sel = s->sel;
    struct seqset gone = SEQSET_INITIALIZER;
    struct buf text = BUF_INITIALIZER;
    uint32_t i, kept = 0;

    if (!(s->enabled & (IMAPD_ENABLED_QRESYNC | IMAPD_ENABLED_UIDONLY))) {
        for (i = sel->exists; i > 0; i--) {
            if (seqset_contains(live, sel->uids[i - 1]))
                continue;
            imapd_printf(s, "* %u EXPUNGE\r\n", i);
            memmove(sel->uids + i - 1, sel->uids + i,
                    (sel->exists - i) * sizeof(uint32_t));
            sel->exists--;
        }
        return;
    }
    for (i = 0; i < sel->exists; i++) {
        if (seqset_contains(live, sel->uids[i]))
            sel->uids[kept++] = sel->uids[i];
        else
            seqset_add(&gone, sel->uids[i], sel->uids[i]);
    }
    sel->exists = kept;
    if (!seqset_is_empty(&gone)) {
        seqset_format(&gone, &text);
        imapd_printf(s, "* VANISHED %s\r\n", buf_cstring(&text));
    }
    seqset_fini(&gone);
    buf_free(&text);
}

void imapd_sync(struct imapd *s, int allow_expunge)
{
    struct imapd_selected *sel = s->sel;
    const struct mailbox_index_header *ih;
    struct mailbox_record rec;
    struct seqset live = SEQSET_INITIALIZER;
    struct flag_change *changes = NULL;
    size_t nchanges = 0;
    uint32_t oldmax, recno, i;
    uint32_t before;

    if (!sel || mailbox_lock(sel->mb, 0))
        return;
    ih = mailbox_index(sel->mb);
    oldmax = sel->exists ? sel->uids[sel->exists - 1] : 0;
    sync_keywords(s);
    before = sel->exists;

    /* One pass over the index: live UIDs, new UIDs, changed flags. */
    for (recno = 1; recno <= ih->num_records; recno++) {
        if (mailbox_read_record(sel->mb, recno, &rec))
            break;
        if (rec.system_flags & MAILBOX_FLAG_EXPUNGED)
            continue;
        seqset_add(&live, rec.uid, rec.uid);
        if (rec.uid > oldmax) {
            map_append(sel, rec.uid);
        }
        else if (rec.modseq > sel->highestmodseq && imapd_msgno(s, rec.uid)) {
            struct buf f = BUF_INITIALIZER;

            imapd_apply_seen(s, &rec);
            imapd_format_flags(sel->mb, &rec, &f);
            changes = xreallocarray(changes, nchanges + 1, sizeof(*changes));
            changes[nchanges].uid = rec.uid;
            changes[nchanges].modseq = rec.modseq;
            changes[nchanges++].flags = buf_release(&f);
        }
    }

    /* The messages known before this pass that are still there: the
     * new ones were appended after them. */
    if (allow_expunge) {
        uint32_t added = sel->exists - before;

        report_expunges(s, &live);
        before = sel->exists - added;
    }
    if (sel->exists != before)
        imapd_printf(s, "* %u EXISTS\r\n", sel->exists);
    for (i = 0; i < nchanges; i++) {
        uint32_t msgno = imapd_msgno(s, changes[i].uid);

        if (msgno && (s->enabled & IMAPD_ENABLED_UIDONLY)) {
            struct buf line = BUF_INITIALIZER;

            imapd_fetch_begin(s, changes[i].uid, &line);
            buf_printf(&line, "FLAGS %s", changes[i].flags);
            if (imapd_condstore_on(s))
                buf_printf(&line, " MODSEQ (%llu)",
                           (unsigned long long)changes[i].modseq);
            imapd_printf(s, "%s)\r\n", buf_cstring(&line));
            buf_free(&line);
        }
        else if (msgno && imapd_condstore_on(s))
            imapd_printf(s, "* %u FETCH (UID %u FLAGS %s MODSEQ (%llu))\r\n",
                         msgno, changes[i].uid, changes[i].flags,
                         (unsigned long long)changes[i].modseq);
        else if (msgno)
            imapd_printf(s, "* %u FETCH (UID %u FLAGS %s)\r\n", msgno,
                         changes[i].uid, changes[i].flags);
        free(changes[i].flags);
    }
    free(changes);
    sel->highestmodseq = ih->highestmodseq;
    mailbox_unlock(sel->mb);
    seqset_fini(&live);
}

/* Send the untagged data of SELECT; the mailbox is locked. */
static void select_report(struct imapd *s)
{
    struct imapd_selected *sel = s->sel;
    const struct mailbox_index_header *ih = mailbox_index(sel->mb);
    struct mailbox_record rec;
    uint32_t recno, firstunseen = 0;
    int is_rev2 = (s->enabled & IMAPD_ENABLED_IMAP4REV2) != 0;

    for (recno = 1; recno <= ih->num_records; recno++) {
        if (mailbox_read_record(sel->mb, recno, &rec))
            break;
        if (rec.system_flags & MAILBOX_FLAG_EXPUNGED)
            continue;
        map_append(sel, rec.uid);
        imapd_apply_seen(s, &rec);
        if (!firstunseen && !(rec.system_flags & MAILBOX_FLAG_SEEN))
            firstunseen = sel->exists;
    }
    sel->highestmodseq = ih->highestmodseq;
    sel->uidvalidity = ih->uidvalidity;

    /* IMAP4rev2 has no \Recent: no RECENT, and UNSEEN is gone too. */
    send_flags(s);
    imapd_printf(s, "* %u EXISTS\r\n", sel->exists);
    if (!is_rev2)
        imapd_printf(s, "* 0 RECENT\r\n");
    if (firstunseen && !is_rev2)
        imapd_printf(s, "* OK [UNSEEN %u] Ok\r\n", firstunseen);
    imapd_printf(s, "* OK [UIDVALIDITY %u] Ok\r\n", ih->uidvalidity);
    imapd_printf(s, "* OK [UIDNEXT %u] Ok\r\n", ih->uidnext);
    /* Every mailbox keeps modseqs, so NOMODSEQ is never sent. */
    imapd_printf(s, "* OK [HIGHESTMODSEQ %llu] Ok\r\n",
                 (unsigned long long)ih->highestmodseq);
    imapd_printf(s, "* OK [MAILBOXID (%s)] Ok\r\n",
                 mailbox_uniqueid(sel->mb));
}

/* The QRESYNC parameter of SELECT (RFC 7162 3.2.5). */
struct qresync {
    int is_set;
    uint32_t uidvalidity;
    uint64_t modseq;
    struct seqset known;        /* known-uids; empty when not given */
    int has_known;
    struct seqset match_seq;    /* seq-match-data, when given */
    struct seqset match_uid;
};

static void qresync_fini(struct qresync *q)
{
    seqset_fini(&q->known);
    seqset_fini(&q->match_seq);
    seqset_fini(&q->match_uid);
}

/* Read a word and parse it as a number of at most `max`, not zero
 * unless `allow_zero`.  Returns the next byte or EOF. */
static int read_number(struct imapd *s, uint64_t max, int allow_zero,
                       uint64_t *val_r)
{
    struct buf word = BUF_INITIALIZER;
    int c = imap_parse_word(&s->parser, &word);

    if (c != EOF && (parse_uint64(buf_cstring(&word), NULL, val_r)
                     || *val_r > max || (!*val_r && !allow_zero)))
        c = imap_parse_fail(&s->parser, "Invalid number");
    buf_free(&word);
    return c;
}

/* Read a sequence set word into `set` (no "*" needed: sets sent by a
 * resyncing client name stored UIDs).  Returns the next byte or EOF. */
static int read_raw_set(struct imapd *s, uint32_t maxval, struct seqset *set)
{
    struct buf word = BUF_INITIALIZER;
    int c = imap_parse_word(&s->parser, &word);

    if (c != EOF && seqset_parse(set, word.s, word.len, maxval, 0))
        c = imap_parse_fail(&s->parser, "Invalid sequence set");
    buf_free(&word);
    return c;
}

/* "(" uidvalidity SP mod-sequence-value [SP known-uids]
 * [SP "(" known-sequence-set SP known-uid-set ")"] ")", after
 * "QRESYNC SP".  Returns the byte after the ")" or EOF. */
static int read_qresync(struct imapd *s, struct qresync *q)
{
    uint64_t v;
    int c = imap_parse_getc(&s->parser);

    if (c != '(')
        return imap_parse_fail(&s->parser, "Expected ( after QRESYNC");
    c = read_number(s, UINT32_MAX, 0, &v);
    if (imapd_sp(s, c))
        return EOF;
    q->uidvalidity = (uint32_t)v;
    c = read_number(s, INT64_MAX, 0, &q->modseq);
    if (c == ' ') {
        c = imap_parse_getc(&s->parser);
        imap_parse_ungetc(&s->parser, c);
        if (c != '(') {
            c = read_raw_set(s, UINT32_MAX, &q->known);
            q->has_known = 1;
        }
        else {
            c = ' ';
        }
    }
    if (c == ' ') {
        if (imap_parse_getc(&s->parser) != '(')
            return imap_parse_fail(&s->parser, "Expected seq-match-data");
        c = read_raw_set(s, UINT32_MAX, &q->match_seq);
        if (imapd_sp(s, c))
            return EOF;
        c = read_raw_set(s, UINT32_MAX, &q->match_uid);
        if (c != ')')
            return c == EOF ? EOF : imap_parse_fail(&s->parser,
                                                    "Expected )");
        c = imap_parse_getc(&s->parser);
    }
    if (c != ')')
        return c == EOF ? EOF : imap_parse_fail(&s->parser, "Expected )");
    q->is_set = 1;
    return imap_parse_getc(&s->parser);
}

/* The optional select parameters: "(" CONDSTORE / QRESYNC (...) ")".
 * Returns the byte after them or EOF. */
static int read_select_params(struct imapd *s, int *condstore_r,
                              struct qresync *q)
{
    struct buf name = BUF_INITIALIZER;
    int c = imap_parse_getc(&s->parser);

    if (c != '(') {
        buf_free(&name);
        return imap_parse_fail(&s->parser, "Expected ( in SELECT");
    }
    do {
        c = imap_parse_atom(&s->parser, &name);
        if (c == EOF)
            break;
        if (!strcasecmp(buf_cstring(&name), "CONDSTORE")) {
            *condstore_r = 1;
        }
        else if (!strcasecmp(buf_cstring(&name), "QRESYNC")) {
            /* RFC 7162 3.2.5: BAD unless ENABLE QRESYNC came first. */
            if (!(s->enabled & IMAPD_ENABLED_QRESYNC) || q->is_set) {
                c = imap_parse_fail(&s->parser, "QRESYNC is not enabled");
                break;
            }
            if (imapd_sp(s, c)) {
                c = EOF;
                break;
            }
            c = read_qresync(s, q);
        }
        else {
            c = imap_parse_fail(&s->parser, "Unknown SELECT parameter");
        }
    } while (c == ' ');
    if (c != EOF && c != ')')
        c = imap_parse_fail(&s->parser, "Expected ) in SELECT");
    else if (c == ')')
        c = imap_parse_getc(&s->parser);
    buf_free(&name);
    return c;
}

/* seq-match-data: the highest UID of the client's pairs, walked in
 * ascending order, whose message number is still the same here; no
 * message at or below it has gone since the client's view.  0 when
 * nothing matches or the sets differ in size. */
static uint32_t seq_match_floor(const struct imapd *s,
                                const struct qresync *q)
{
    const struct imapd_selected *sel = s->sel;
    uint32_t n, u, floor = 0;

    if (seqset_cardinality(&q->match_seq)
        != seqset_cardinality(&q->match_uid))
        return 0;
    for (n = seqset_next(&q->match_seq, 0), u = seqset_next(&q->match_uid, 0);
         n && u; n = seqset_next(&q->match_seq, n),
         u = seqset_next(&q->match_uid, u)) {
        if (n > sel->exists || sel->uids[n - 1] != u)
            break;
        floor = u;
    }
    return floor;
}

/* The VANISHED (EARLIER) set: expunged records above `since` among
 * `uids` (all when NULL), or when a repack dropped records that might
 * count, every UID of `uids` (or 1:UIDNEXT-1) above `floor` that is not
 * live.  The mailbox is locked. */
static void vanished_set(struct imapd *s, uint64_t since,
                         const struct seqset *uids, uint32_t floor,
                         struct seqset *out)
{
    struct mailbox *mb = s->sel->mb;
    const struct mailbox_index_header *ih = mailbox_index(mb);
    struct mailbox_record rec;
    int is_lossy = since < ih->deletedmodseq;
    uint32_t recno;

    if (is_lossy) {
        if (uids)
            seqset_union(out, uids);
        else if (ih->uidnext > 1)
            seqset_add(out, 1, ih->uidnext - 1);
        if (floor)
            seqset_remove(out, 1, floor);
        /* "1:*" from the client must not list UIDs never given out. */
        seqset_remove(out, ih->uidnext ? ih->uidnext : 1, UINT32_MAX);
    }
    for (recno = 1; recno <= ih->num_records; recno++) {
        if (mailbox_read_record(mb, recno, &rec))
            break;
        if (!(rec.system_flags & MAILBOX_FLAG_EXPUNGED)) {
            if (is_lossy)
                seqset_remove(out, rec.uid, rec.uid);
            continue;
        }
        if (!is_lossy && rec.modseq > since
            && (!uids || seqset_contains(uids, rec.uid)))
            seqset_add(out, rec.uid, rec.uid);
    }
}

void imapd_send_vanished(struct imapd *s, uint64_t since,
                         const struct seqset *uids)
{
    struct seqset set = SEQSET_INITIALIZER;
    struct buf text = BUF_INITIALIZER;

    vanished_set(s, since, uids, 0, &set);
    if (!seqset_is_empty(&set)) {
        seqset_format(&set, &text);
        imapd_printf(s, "* VANISHED (EARLIER) %s\r\n", buf_cstring(&text));
    }
    seqset_fini(&set);
    buf_free(&text);
}

/* After SELECT (QRESYNC ...) with the right UIDVALIDITY: what vanished
 * and what changed since the client's modseq (RFC 7162 3.2.5.1).  The
 * mailbox is locked. */
static void qresync_report(struct imapd *s, const struct qresync *q)
{
    struct imapd_selected *sel = s->sel;
    const struct seqset *known = q->has_known ? &q->known : NULL;
    struct seqset set = SEQSET_INITIALIZER;
    struct buf text = BUF_INITIALIZER;
    struct mailbox_record rec;
    uint32_t i;

    vanished_set(s, q->modseq, known, seq_match_floor(s, q), &set);
    if (!seqset_is_empty(&set)) {
        seqset_format(&set, &text);
        imapd_printf(s, "* VANISHED (EARLIER) %s\r\n", buf_cstring(&text));
    }
    for (i = 0; i < sel->exists; i++) {
        if (known && !seqset_contains(known, sel->uids[i]))
            continue;
        if (mailbox_find_record(sel->mb, sel->uids[i], &rec)
            || rec.modseq <= q->modseq)
            continue;
        imapd_apply_seen(s, &rec);
        buf_reset(&text);
        if (s->enabled & IMAPD_ENABLED_UIDONLY)
            imapd_fetch_begin(s, rec.uid, &text);
        else
            buf_printf(&text, "* %u FETCH (UID %u ", i + 1, rec.uid);
        buf_appendcstr(&text, "FLAGS ");
        imapd_format_flags(sel->mb, &rec, &text);
        buf_printf(&text, " MODSEQ (%llu))\r\n",
                   (unsigned long long)rec.modseq);
        imapd_printf(s, "%s", buf_cstring(&text));
    }
    seqset_fini(&set);
    buf_free(&text);
}

/* SELECT name [(CONDSTORE / QRESYNC (...))] / EXAMINE the same */
void imapd_cmd_select(struct imapd *s, int c)
{
    struct buf ext = BUF_INITIALIZER;
    struct mboxlist_entry *e = NULL;
    struct mailbox *mb = NULL;
    struct qresync q;
    char *intname = NULL;
    uint32_t rights = 0;
    int is_examine = !strcasecmp(buf_cstring(&s->cmd), "EXAMINE");
    int condstore = 0;
    int r;

    memset(&q, 0, sizeof(q));
    if (imapd_sp(s, c))
        goto done;
    c = imap_parse_astring(&s->parser, &ext);
    if (c == ' ')
        c = read_select_params(s, &condstore, &q);
    if (imapd_eol(s, c))
        goto done;

    /* RFC 9051 6.3.2: a SELECT leaves the old mailbox first, even when
     * the new one fails. */
    if (s->sel) {
        imapd_deselect(s);
        imapd_printf(s, "* OK [CLOSED] Previous mailbox closed\r\n");
    }
    if (condstore || q.is_set)
        imapd_condstore_enable(s);
    r = imapd_intname(s, buf_cstring(&ext), &intname);
    if (!r)
        r = imapd_open_mailbox(intname, 0, &e, &mb);
    if (r == ERR_MAILBOX_BADNAME)
        r = ERR_MAILBOX_NONEXISTENT;
    if (!r) {
        acl_myrights(s->auth, e->acl, intname, &rights);
        if (!(rights & ACL_READ))
            r = (rights & ACL_LOOKUP) ? ERR_ACL_DENIED
                                      : ERR_MAILBOX_NONEXISTENT;
    }
    if (r) {
        mailbox_close(&mb);
        imapd_no_error(s, r);
        goto done;
    }

    s->sel = xzmalloc(sizeof(*s->sel));
    s->sel->mb = mb;
    s->sel->intname = intname;
    intname = NULL;
    s->sel->extname = buf_release(&ext);
    s->sel->rights = rights;
    s->sel->is_readonly = is_examine
        || !(rights & (ACL_WRITE | ACL_SETSEEN | ACL_DELETEMSG
                       | ACL_EXPUNGE | ACL_INSERT));
    /* \Seen lives in the index for the owner, and for everyone when
     * the mailbox has sharedseen on; otherwise in the user's seen db. */
    s->sel->use_seendb = !mailbox_seen_in_index(mb, s->userid);
    if (s->sel->use_seendb)
        seen_load(s);
    select_report(s);
    if (q.is_set && q.uidvalidity == s->sel->uidvalidity)
        qresync_report(s, &q);
    mailbox_unlock(mb);
    if (!s->sel->is_readonly)
        imapd_quota_alert(s, s->sel->intname);
    imapd_ok(s, "[%s] Completed",
             s->sel->is_readonly ? "READ-ONLY" : "READ-WRITE");
done:
    qresync_fini(&q);
    mboxlist_entry_free(&e);
    free(intname);
    buf_free(&ext);
}

/* expunge_mode: "immediate" removes the files at once. */
static enum mailbox_expunge_mode expunge_mode(void)
{
    const char *mode = config_getstring(IMAPOPT_EXPUNGE_MODE);

    return mode && !strcmp(mode, "immediate") ? MAILBOX_EXPUNGE_IMMEDIATE
                                              : MAILBOX_EXPUNGE_DELAYED;
}

/* UID EXPUNGE: only \Deleted messages in the set. */
static int decide_uidset(struct mailbox *mb, const struct mailbox_record *rec,
                         void *rock)
{
    (void)mb;
    return (rec->system_flags & MAILBOX_FLAG_DELETED)
           && seqset_contains(rock, rec->uid);
}

/* Expunge \Deleted messages (of `uids` when not NULL).  Returns 0 or
 * an error. */
static int do_expunge(struct imapd *s, struct seqset *uids, unsigned *count_r)
{
    struct mailbox *mb = s->sel->mb;
    int r;

    r = mailbox_lock(mb, 1);
    if (!r)
        r = mailbox_expunge(mb, uids ? decide_uidset : NULL, uids,
                            expunge_mode(), count_r);
    mailbox_unlock(mb);
    return r;
}

/* EXPUNGE / UID EXPUNGE set */
void imapd_cmd_expunge(struct imapd *s, int c)
{
    struct buf word = BUF_INITIALIZER;
    struct seqset uids = SEQSET_INITIALIZER;
    unsigned count = 0;
    int r;

    if (s->is_uid) {
        if (imapd_sp(s, c))
            goto done;
        c = imap_parse_word(&s->parser, &word);
        if (c == EOF || imapd_parse_uidset(s, buf_cstring(&word), 1, &uids))
            goto done;
    }
    if (imapd_eol(s, c))
        goto done;
    if (s->sel->is_readonly) {
        imapd_no(s, "[READ-ONLY] Mailbox is read-only");
        goto done;
    }
    if (!(s->sel->rights & ACL_EXPUNGE)) {
        imapd_no_error(s, ERR_ACL_DENIED);
        goto done;
    }
    r = do_expunge(s, s->is_uid ? &uids : NULL, &count);
    imapd_sync(s, 1);
    if (r) {
        imapd_no_error(s, r);
        goto done;
    }
    if (count)
        xsyslog(LOG_INFO, "expunge", "user=%s mailbox=%s count=%u",
                log_escape(s->userid, 0), log_escape(s->sel->intname, 0),
                count);
    imapd_ok(s, "Completed");
done:
    seqset_fini(&uids);
    buf_free(&word);
}

/* CLOSE: silent expunge, then leave the mailbox. */
void imapd_cmd_close(struct imapd *s, int c)
{
    if (imapd_eol(s, c))
        return;
    if (!s->sel->is_readonly && (s->sel->rights & ACL_EXPUNGE))
        do_expunge(s, NULL, NULL);
    imapd_deselect(s);
    imapd_ok(s, "Completed");
}

/* UNSELECT */
void imapd_cmd_unselect(struct imapd *s, int c)
{
    if (imapd_eol(s, c))
        return;
    imapd_deselect(s);
    imapd_ok(s, "Completed");
}

/* NOOP / CHECK: report what changed. */
void imapd_cmd_noop(struct imapd *s, int c)
{
    if (imapd_eol(s, c))
        return;
    imapd_sync(s, 1);
    imapd_ok(s, "Completed");
}

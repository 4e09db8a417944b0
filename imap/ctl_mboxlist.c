/* ctl_mboxlist: dump mailboxes.db as text (-d) and load such a dump back
 * (-u), for backups, moves between servers and repairs by hand. */
/* Columba is free software; see COPYING for the licence. */

/*
 * Usage: ctl_mboxlist [-C imapd.conf] -d [-x] [-p partition]
 *        ctl_mboxlist [-C imapd.conf] -u < dump
 *
 * Dump format, one mailbox per line, fields separated by one TAB:
 *
 *   1 internal name            6 createdmodseq (decimal)
 *   2 type ("mail", ...)       7 foldermodseq (decimal)
 *   3 partition                8 entry flags (decimal, MBOXLIST_FLAG_*)
 *   4 unique id                9 murder server, empty when local
 *   5 UIDVALIDITY (decimal)   10 reserved-rename source, usually empty
 *  11 and on: the stored ACL string exactly as kept, which is itself
 *     "identifier TAB rights TAB" repeated (empty for no ACL)
 *
 * None of fields 1-10 can hold a TAB or a newline (names are printable
 * ASCII, unique ids hex, partitions imapd.conf keys), and an ACL never
 * holds CR or LF, so everything after the tenth TAB is the ACL and a
 * dump read back gives byte-identical entries.  Lines starting with '#'
 * and empty lines are ignored by -u.
 *
 * -d walks the raw database in key order, reserved entries included
 * (they show their flags), and skips the "$" bookkeeping keys.  -x
 * removes the dumped entries afterwards (with -p: moving a partition's
 * mailboxes to another server); the mailbox files stay.
 *
 * -u reads the whole input first and checks every line: field count,
 * name (mboxname_policycheck), type, a partition this imapd.conf knows
 * (for local entries), unique id, numbers, ACL syntax, and no name or
 * unique id given twice.  One bad line refuses the whole input and
 * nothing is written.  Otherwise every entry is stored, with its "$I"
 * unique-id key, in one transaction: an entry of the same name is
 * replaced (its old "$I" key dropped), other entries stay.  The "$M"
 * list modseq is raised to the highest modseq loaded, so later changes
 * keep counting upwards.
 */

#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/cyrusdb.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/privs.h"
#include "lib/strarray.h"
#include "lib/util.h"
#include "lib/xmalloc.h"

#include "imap/acl.h"
#include "imap/mboxlist.h"
#include "imap/mboxname.h"

#define EX_USAGE_CODE 64
#define DUMP_FIELDS 10
#define ID_PREFIX "$I"
#define MODSEQ_KEY "$M"
/* A line holds at most an ACL plus the fixed fields. */
#define UNDUMP_LINE_MAX (ACL_STRING_MAX + 8192)

static const char *progname = "ctl_mboxlist";

static void usage(void)
{
    fprintf(stderr, "usage: %s [-C imapd.conf] -d [-x] [-p partition]\n"
            "       %s [-C imapd.conf] -u < dump\n", progname, progname);
    exit(EX_USAGE_CODE);
}

/* Open mailboxes.db directly: the dump needs reserved entries and the
 * undump writes raw keys, neither of which mboxlist.h offers. */
static int open_mbdb(struct db **db_r)
{
    const char *path = config_getstring(IMAPOPT_MBOXLIST_DB_PATH);
    struct buf fname = BUF_INITIALIZER;
    int r;

    if (path && *path)
        buf_setcstr(&fname, path);
    else
        buf_printf(&fname, "%s/mailboxes.db", config_dir());
    r = cyrusdb_open(config_getstring(IMAPOPT_MBOXLIST_DB),
                     buf_cstring(&fname), CYRUSDB_CREATE | CYRUSDB_MBOXSORT,
                     db_r);
    if (r)
        fprintf(stderr, "%s: cannot open %s: %s\n", progname,
                buf_cstring(&fname), error_message(r));
    buf_free(&fname);
    return r;
}

/* ---------------------------------------------------------------- */
/* Dump                                                               */

struct dump {
    const char *partition;      /* -p filter, or NULL */
    strarray_t dumped;          /* names, for -x */
    strarray_t ids;             /* their unique ids, for -x */
    unsigned count;
};

/* Write one entry as a dump line to stdout. */
static void dump_entry(const struct mboxlist_entry *e)
{
    printf("%s\t%s\t%s\t%s\t%u\t%llu\t%llu\t%u\t%s\t%s\t%s\n", e->name,
           mailbox_type_name(e->type), e->partition, e->uniqueid,
           e->uidvalidity, (unsigned long long)e->createdmodseq,
           (unsigned long long)e->foldermodseq, e->flags,
           e->server ? e->server : "", e->source ? e->source : "",
           e->acl ? e->acl : "");
}

static int dump_cb(void *rock, const char *key, size_t keylen,
                   const char *data, size_t datalen)
{
    struct dump *d = rock;
    struct mboxlist_entry *e = NULL;
    char *name;
    int r;

    if (keylen && key[0] == '$')
        return 0;
    name = xstrndup(key, keylen);
    r = mboxlist_entry_decode(name, data, datalen, &e);
    if (r) {
        xsyslog(LOG_ERR, "ctl_mboxlist: entry corrupt", "mailbox=%s",
                log_escape(name, 0));
        fprintf(stderr, "%s: entry %s is corrupt, skipped\n", progname,
                name);
        free(name);
        return 0;
    }
    if (!d->partition || !strcmp(d->partition, e->partition)) {
        dump_entry(e);
        strarray_append(&d->dumped, e->name);
        strarray_append(&d->ids, e->uniqueid);
        d->count++;
    }
    mboxlist_entry_free(&e);
    free(name);
    return 0;
}

/* Remove the dumped entries and their "$I" keys in one transaction. */
static int remove_dumped(struct db *db, const struct dump *d)
{
    struct buf key = BUF_INITIALIZER;
    struct txn *tid = NULL;
    int i, r = 0;

    for (i = 0; !r && i < d->dumped.count; i++) {
        const char *name = strarray_nth(&d->dumped, i);
        const char *data;
        size_t len;

        r = cyrusdb_delete(db, name, strlen(name), &tid, 1);
        buf_reset(&key);
        buf_printf(&key, ID_PREFIX "%s", strarray_nth(&d->ids, i));
        /* Only the "$I" key that still points at this name goes. */
        if (!r && !cyrusdb_fetch(db, key.s, key.len, &data, &len, &tid)
            && len == strlen(name) && !memcmp(data, name, len))
            r = cyrusdb_delete(db, key.s, key.len, &tid, 1);
    }
    if (r) {
        if (tid)
            cyrusdb_abort(db, tid);
    }
    else if (tid) {
        r = cyrusdb_commit(db, tid);
    }
    buf_free(&key);
    return r;
}

static int do_dump(struct db *db, const char *partition, int do_remove)
{
    struct dump d = { partition, STRARRAY_INITIALIZER,
                      STRARRAY_INITIALIZER, 0 };
    int r;

    r = cyrusdb_foreach(db, "", 0, NULL, dump_cb, &d, NULL);
    if (!r && fflush(stdout) == EOF)
        r = ERR_IO;
    if (!r && do_remove)
        r = remove_dumped(db, &d);
    if (r)
        fprintf(stderr, "%s: dump failed: %s\n", progname,
                error_message(r));
    else
        xsyslog(LOG_NOTICE, "ctl_mboxlist: dumped", "count=%u removed=%d"
                " partition=%s", d.count, do_remove,
                partition ? partition : "*");
    strarray_fini(&d.dumped);
    strarray_fini(&d.ids);
    return r;
}

/* ---------------------------------------------------------------- */
/* Undump                                                             */

struct entries {
    struct mboxlist_entry **v;
    int n, alloc;
};

static void entries_fini(struct entries *l)
{
    int i;

    for (i = 0; i < l->n; i++)
        mboxlist_entry_free(&l->v[i]);
    free(l->v);
}

static int parse_u64(const char *s, uint64_t max, uint64_t *v_r)
{
    uint64_t v;

    if (parse_uint64(s, NULL, &v) || v > max)
        return ERR_INVALID;
    *v_r = v;
    return 0;
}

static int uniqueid_ok(const char *id)
{
    size_t len = strlen(id), i;

    if (!len || len > MAILBOX_MAX_UNIQUEID)
        return 0;
    for (i = 0; i < len; i++) {
        char c = id[i];

        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
              || (c >= 'A' && c <= 'Z') || c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

/* Parse the numeric fields 5-8 into `e`. */
static int parse_numbers(char **f, struct mboxlist_entry *e,
                         const char **why_r)
{
    uint64_t v;

    if (parse_u64(f[4], UINT32_MAX, &v)) {
        *why_r = "bad uidvalidity";
        return ERR_INVALID;
    }
    e->uidvalidity = (uint32_t)v;
    if (parse_u64(f[5], UINT64_MAX, &e->createdmodseq)
        || parse_u64(f[6], UINT64_MAX, &e->foldermodseq)) {
        *why_r = "bad modseq";
        return ERR_INVALID;
    }
    if (parse_u64(f[7], UINT32_MAX, &v)) {
        *why_r = "bad flags";
        return ERR_INVALID;
    }
    e->flags = (uint32_t)v;
    return 0;
}

/* Check the text fields of `e` as built from a line. */
static int check_entry(const struct mboxlist_entry *e, const char **why_r)
{
    struct acl acl = ACL_INITIALIZER;
    int r;

    if (mboxname_policycheck(e->name)) {
        *why_r = "bad mailbox name";
        return ERR_INVALID;
    }
    if (!*e->partition || (!e->server
                           && !config_partitiondir(e->partition))) {
        *why_r = "unknown partition";
        return ERR_INVALID;
    }
    if (!uniqueid_ok(e->uniqueid)) {
        *why_r = "bad unique id";
        return ERR_INVALID;
    }
    r = acl_parse(e->acl, &acl);
    acl_fini(&acl);
    if (r) {
        *why_r = "bad ACL";
        return ERR_INVALID;
    }
    return 0;
}

/* Turn one dump line (NUL-terminated, no newline) into an entry. */
static int parse_line(char *line, struct mboxlist_entry **e_r,
                      const char **why_r)
{
    char *f[DUMP_FIELDS + 1];
    struct mboxlist_entry *e;
    int n = 0, r;
    char *p = line;

    /* Split off the first ten fields; the rest is the ACL. */
    while (n < DUMP_FIELDS) {
        char *tab = strchr(p, '\t');

        if (!tab) {
            *why_r = "too few fields";
            return ERR_INVALID;
        }
        *tab = '\0';
        f[n++] = p;
        p = tab + 1;
    }
    f[DUMP_FIELDS] = p;

    e = xzmalloc(sizeof(*e));
    e->name = xstrdup(f[0]);
    e->partition = xstrdup(f[2]);
    e->uniqueid = xstrdup(f[3]);
    e->server = *f[8] ? xstrdup(f[8]) : NULL;
    e->source = *f[9] ? xstrdup(f[9]) : NULL;
    e->acl = xstrdup(f[10]);
    if (mailbox_type_parse(f[1], &e->type)) {
        *why_r = "unknown mailbox type";
        r = ERR_INVALID;
    }
    else {
        r = parse_numbers(f, e, why_r);
    }
    if (!r)
        r = check_entry(e, why_r);
    if (r)
        mboxlist_entry_free(&e);
    *e_r = e;
    return r;
}

/* Is this name or unique id already among the parsed entries? */
static const char *find_dup(const struct entries *l,
                            const struct mboxlist_entry *e)
{
    int i;

    for (i = 0; i < l->n; i++) {
        if (!strcmp(l->v[i]->name, e->name))
            return "mailbox given twice";
        if (!strcmp(l->v[i]->uniqueid, e->uniqueid))
            return "unique id given twice";
    }
    return NULL;
}

/* Read and check the whole input.  Returns 0 or ERR_INVALID (reported). */
static int read_dump(FILE *in, struct entries *l)
{
    struct buf line = BUF_INITIALIZER;
    unsigned lineno = 0;
    int c, r = 0;

    while (!r) {
        struct mboxlist_entry *e = NULL;
        const char *why = NULL;

        buf_reset(&line);
        while ((c = getc(in)) != EOF && c != '\n' && !why) {
            if (c == '\0')
                why = "NUL byte in line";
            else if (line.len >= UNDUMP_LINE_MAX)
                why = "line too long";
            else
                buf_putc(&line, (char)c);
        }
        if (c == EOF && !line.len && !why)
            break;
        lineno++;
        if (!why && (!line.len || line.s[0] == '#'))
            continue;
        if (!why && memchr(line.s, '\r', line.len))
            why = "carriage return in line";
        if (!why && !parse_line((char *)buf_cstring(&line), &e, &why))
            why = find_dup(l, e);
        if (why) {
            fprintf(stderr, "%s: line %u: %s; nothing loaded\n", progname,
                    lineno, why);
            mboxlist_entry_free(&e);
            r = ERR_INVALID;
            break;
        }
        if (l->n == l->alloc) {
            l->alloc = l->alloc ? 2 * l->alloc : 64;
            l->v = xrealloc(l->v, (size_t)l->alloc * sizeof(*l->v));
        }
        l->v[l->n++] = e;
    }
    if (!r && ferror(in)) {
        fprintf(stderr, "%s: read error: %s\n", progname, strerror(errno));
        r = ERR_IO;
    }
    buf_free(&line);
    return r;
}

/* Store one entry, replacing an older one of the same name. */
static int store_entry(struct db *db, const struct mboxlist_entry *e,
                       struct txn **tid)
{
    struct buf val = BUF_INITIALIZER, key = BUF_INITIALIZER;
    struct mboxlist_entry *old = NULL;
    const char *data;
    size_t len;
    int r;

    r = cyrusdb_fetch(db, e->name, strlen(e->name), &data, &len, tid);
    if (!r && !mboxlist_entry_decode(e->name, data, len, &old)
        && strcmp(old->uniqueid, e->uniqueid)) {
        buf_printf(&key, ID_PREFIX "%s", old->uniqueid);
        r = cyrusdb_delete(db, key.s, key.len, tid, 1);
    }
    else if (r == ERR_NOTFOUND) {
        r = 0;
    }
    if (!r) {
        mboxlist_entry_encode(e, &val);
        r = cyrusdb_store(db, e->name, strlen(e->name), val.s, val.len,
                          tid);
    }
    if (!r) {
        buf_reset(&key);
        buf_printf(&key, ID_PREFIX "%s", e->uniqueid);
        r = cyrusdb_store(db, key.s, key.len, e->name, strlen(e->name),
                          tid);
    }
    mboxlist_entry_free(&old);
    buf_free(&val);
    buf_free(&key);
    return r;
}

/* Raise "$M" to at least `modseq`. */
static int raise_modseq(struct db *db, uint64_t modseq, struct txn **tid)
{
    char num[32];
    const char *data;
    size_t len;
    uint64_t cur = 0;
    int r;

    r = cyrusdb_fetch(db, MODSEQ_KEY, strlen(MODSEQ_KEY), &data, &len, tid);
    if (!r && len < sizeof(num)) {
        memcpy(num, data, len);
        num[len] = '\0';
        if (parse_u64(num, UINT64_MAX, &cur))
            cur = 0;
    }
    else if (r && r != ERR_NOTFOUND) {
        return r;
    }
    if (cur >= modseq)
        return 0;
    snprintf(num, sizeof(num), "%llu", (unsigned long long)modseq);
    return cyrusdb_store(db, MODSEQ_KEY, strlen(MODSEQ_KEY), num,
                         strlen(num), tid);
}

static int do_undump(struct db *db)
{
    struct entries l = { NULL, 0, 0 };
    struct txn *tid = NULL;
    uint64_t maxmodseq = 0;
    int i, r;

    r = read_dump(stdin, &l);
    if (r)
        goto done;
    for (i = 0; !r && i < l.n; i++) {
        const struct mboxlist_entry *e = l.v[i];

        r = store_entry(db, e, &tid);
        if (e->foldermodseq > maxmodseq)
            maxmodseq = e->foldermodseq;
        if (e->createdmodseq > maxmodseq)
            maxmodseq = e->createdmodseq;
    }
    if (!r && l.n)
        r = raise_modseq(db, maxmodseq, &tid);
    if (r) {
        if (tid)
            cyrusdb_abort(db, tid);
        fprintf(stderr, "%s: undump failed, nothing loaded: %s\n", progname,
                error_message(r));
        goto done;
    }
    if (tid)
        r = cyrusdb_commit(db, tid);
    if (r)
        fprintf(stderr, "%s: undump commit failed: %s\n", progname,
                error_message(r));
    else
        xsyslog(LOG_NOTICE, "ctl_mboxlist: loaded", "count=%d", l.n);

done:
    entries_fini(&l);
    return r;
}

int main(int argc, char **argv)
{
    const char *conf = NULL, *err = NULL, *partition = NULL;
    struct buf why = BUF_INITIALIZER;
    struct db *db = NULL;
    int opt, r, mode = 0, do_remove = 0;

    while ((opt = getopt(argc, argv, "C:dup:xh")) != -1) {
        switch (opt) {
        case 'C': conf = optarg; break;
        case 'd':
        case 'u':
            if (mode && mode != opt)
                usage();
            mode = opt;
            break;
        case 'p': partition = optarg; break;
        case 'x': do_remove = 1; break;
        default: usage();
        }
    }
    if (!mode || optind != argc || (mode == 'u' && (partition || do_remove)))
        usage();

    r = config_read(conf, NULL, &err);
    if (r) {
        fprintf(stderr, "%s: cannot read configuration: %s\n", progname,
                err ? err : error_message(r));
        return EX_USAGE_CODE;
    }
    log_open(config_getstring(IMAPOPT_SYSLOG_PREFIX), progname, 0, 0);
    if (privs_become_cyrus(&why)) {
        fprintf(stderr, "%s: %s\n", progname, buf_cstring(&why));
        return EX_USAGE_CODE;
    }

    cyrusdb_init();
    r = open_mbdb(&db);
    if (!r) {
        r = mode == 'd' ? do_dump(db, partition, do_remove) : do_undump(db);
        cyrusdb_close(db);
    }
    cyrusdb_done();
    buf_free(&why);
    return r ? 1 : 0;
}

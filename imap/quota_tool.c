/* quota: report quota roots with their usage and limits, and (-f)
 * recount every root's usage from the mailboxes and fix the quota db. */
/* Columba is free software; see COPYING for the licence. */

/*
 * Usage: quota [-C imapd.conf] [-d domain] [-f [-q] [-n]] [prefix...]
 *
 * Prefixes are mailbox names, internal or in the admin namespace's
 * external form (both readings are used); only quota roots starting
 * with one of them are shown or fixed.  -d keeps the roots of one
 * domain (virtdomains).
 *
 * The report has one line per limited resource of each root, as
 * Cyrus's tool prints it:
 *
 *      Quota   % Used     Used Resource Root
 *     102400       12    12345 STORAGE  user.alice
 *
 * STORAGE and X-ANNOTATION-STORAGE show KiB; a root without any limit
 * gets one STORAGE line with the Quota and % columns empty.
 *
 * -f walks every mailbox once, finds its quota root (quota_find_root)
 * and adds the index header's quota_used (STORAGE, bytes), its exists
 * count (MESSAGE), one mailbox (X-NUM-FOLDERS) and the bytes of its
 * annotation values (X-ANNOTATION-STORAGE, imap/annotate.c) to that
 * root.  Each root whose stored usage differs is rewritten under the
 * root's write lock, and every change is printed as
 *     <root>: <RESOURCE> usage was <old>, now <new>
 * -n prints the same without writing.  -q prints only those lines (no
 * report); so after a clean run `quota -f -q` prints nothing.
 */

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/cyrusdb.h"
#include "lib/error.h"
#include "lib/hash.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/privs.h"
#include "lib/strarray.h"
#include "lib/xmalloc.h"

#include "imap/annotate.h"
#include "imap/mailbox.h"
#include "imap/mboxlist.h"
#include "imap/mboxname.h"
#include "imap/quota.h"

#define EX_USAGE_CODE 64

static const char *progname = "quota";

struct options {
    strarray_t prefixes;        /* internal names; empty: every root */
    const char *domain;         /* -d, or NULL */
    int fix, quiet, dryrun;
};

/* Usage recounted for one root. */
struct usage {
    int64_t useds[QUOTA_NUMRESOURCES];
};

static void usage(void)
{
    fprintf(stderr, "usage: %s [-C imapd.conf] [-d domain] [-f [-q] [-n]] "
            "[prefix...]\n", progname);
    exit(EX_USAGE_CODE);
}

/* Is quota root `root` selected by the options? */
static int root_selected(const struct options *o, const char *root)
{
    int i;

    if (o->domain) {
        size_t dlen = strlen(o->domain);

        if (strncmp(root, o->domain, dlen) || root[dlen] != '!')
            return 0;
    }
    if (!o->prefixes.count)
        return 1;
    for (i = 0; i < o->prefixes.count; i++) {
        const char *p = strarray_nth(&o->prefixes, i);

        if (!strncmp(root, p, strlen(p)))
            return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- */
/* Report                                                             */

static void print_line(const struct quota *q, enum quota_resource res,
                       int limited)
{
    int64_t used = q->useds[res];

    if (res == QUOTA_STORAGE || res == QUOTA_ANNOTSTORAGE)
        used /= 1024;
    if (limited)
        printf("%8lld %8d %8lld %-8s %s\n", (long long)q->limits[res],
               quota_usage_percent(q, res), (long long)used,
               quota_resource_name(res), q->root);
    else
        printf("%8s %8s %8lld %-8s %s\n", "", "", (long long)used,
               quota_resource_name(res), q->root);
}

static int report_cb(const struct quota *q, void *rock)
{
    const struct options *o = rock;
    int res, any = 0;

    if (!root_selected(o, q->root))
        return 0;
    for (res = 0; res < QUOTA_NUMRESOURCES; res++) {
        if (q->limits[res] != QUOTA_UNLIMITED) {
            print_line(q, (enum quota_resource)res, 1);
            any = 1;
        }
    }
    if (!any)
        print_line(q, QUOTA_STORAGE, 0);
    return 0;
}

static int report(const struct options *o)
{
    printf("%8s %8s %8s %-8s %s\n", "Quota", "% Used", "Used", "Resource",
           "Root");
    return quota_foreach(NULL, report_cb, (void *)o, NULL);
}

/* ---------------------------------------------------------------- */
/* Recount (-f)                                                       */

struct recount {
    const struct options *o;
    struct hash_table *usage;   /* root -> struct usage, or NULL */
    int errors;
};

static int count_mailbox(const struct mboxlist_entry *e, void *rock)
{
    struct recount *rc = rock;
    struct buf path = BUF_INITIALIZER;
    struct mailbox *mb = NULL;
    struct usage *u;
    char *root = NULL;
    int64_t annot = 0;
    int r;

    if (e->server || quota_find_root(e->name, &root))
        return 0;               /* remote, or under no quota root */
    if (!root_selected(rc->o, root))
        goto done;
    r = mboxname_datapath(e->partition, e->name, 0, &path);
    if (!r)
        r = mailbox_open_iread(buf_cstring(&path), &mb);
    if (r) {
        fprintf(stderr, "%s: cannot open %s: %s\n", progname, e->name,
                error_message(r));
        rc->errors++;
        goto done;
    }
    u = hash_lookup(rc->usage, root);
    if (!u) {
        u = xzmalloc(sizeof(*u));
        hash_insert(rc->usage, root, u);
    }
    u->useds[QUOTA_STORAGE] += (int64_t)mailbox_index(mb)->quota_used;
    u->useds[QUOTA_MESSAGE] += mailbox_index(mb)->exists;
    u->useds[QUOTA_NUMFOLDERS]++;
    if (!annotate_mailbox_usage(e->uniqueid, &annot))
        u->useds[QUOTA_ANNOTSTORAGE] += annot;
    else
        rc->errors++;
    mailbox_close(&mb);

done:
    free(root);
    buf_free(&path);
    return 0;
}

/* Compare and fix one root; returns 0 or a database error. */
static int fix_root(const struct options *o, const char *root,
                    const struct usage *u)
{
    static const struct usage zero;
    struct quota q;
    struct txn *tid = NULL;
    int res, changed = 0, r;

    if (!u)
        u = &zero;
    r = quota_read(root, &q, o->dryrun ? NULL : &tid, !o->dryrun);
    for (res = 0; !r && res < QUOTA_NUMRESOURCES; res++) {
        if (q.useds[res] == u->useds[res])
            continue;
        printf("%s: %s usage was %lld, now %lld\n", root,
               quota_resource_name((enum quota_resource)res),
               (long long)q.useds[res], (long long)u->useds[res]);
        q.useds[res] = u->useds[res];
        changed = 1;
    }
    if (!r && changed && !o->dryrun) {
        r = quota_write(&q, &tid);
        if (!r)
            xsyslog(LOG_NOTICE, "quota: usage fixed", "root=%s",
                    log_escape(root, 0));
    }
    if (tid) {
        if (r)
            quota_abort(&tid);
        else
            r = quota_commit(&tid);
    }
    quota_fini(&q);
    return r;
}

static int collect_root_cb(const struct quota *q, void *rock)
{
    struct recount *rc = rock;

    if (root_selected(rc->o, q->root) && !hash_has_key(rc->usage, q->root))
        hash_insert(rc->usage, q->root, NULL);
    return 0;
}

static int recount(const struct options *o)
{
    struct hash_table usage = HASH_TABLE_INITIALIZER;
    struct recount rc = { o, &usage, 0 };
    strarray_t *roots = NULL;
    int i, r;

    hash_init(&usage, 1024);
    r = quota_foreach(NULL, collect_root_cb, &rc, NULL);
    if (!r)
        r = mboxlist_foreach(NULL, count_mailbox, &rc);

    /* Only existing roots are fixed: a root found for a mailbox is one
     * quota_foreach listed, unless it was removed meanwhile. */
    roots = hash_keys(&usage);
    for (i = 0; !r && i < roots->count; i++) {
        const char *root = strarray_nth(roots, i);

        r = fix_root(o, root, hash_lookup(&usage, root));
        if (r == ERR_QUOTA_ROOT_NONEXISTENT)
            r = 0;
    }
    if (r)
        fprintf(stderr, "%s: recount failed: %s\n", progname,
                error_message(r));
    strarray_free(&roots);
    hash_fini(&usage, free);
    return r ? r : (rc.errors ? ERR_IO : 0);
}

/* Add a command-line prefix: as given (an internal name) and, when it
 * differs, as the admin namespace's external form turned internal
 * (with unixhierarchysep "user/bob.smith" is "user.bob^smith"). */
static void add_prefix(strarray_t *prefixes, const struct namespace *ns,
                       const char *arg)
{
    char *intname = NULL;

    strarray_append(prefixes, arg);
    if (!mboxname_from_external(arg, ns, NULL, &intname)
        && strcmp(intname, arg))
        strarray_appendm(prefixes, intname);
    else
        free(intname);
}

int main(int argc, char **argv)
{
    struct options o = { STRARRAY_INITIALIZER, NULL, 0, 0, 0 };
    const char *conf = NULL, *err = NULL;
    struct buf why = BUF_INITIALIZER;
    struct namespace ns;
    int opt, r;

    while ((opt = getopt(argc, argv, "C:d:fqnh")) != -1) {
        switch (opt) {
        case 'C': conf = optarg; break;
        case 'd': o.domain = optarg; break;
        case 'f': o.fix = 1; break;
        case 'q': o.quiet = 1; break;
        case 'n': o.dryrun = 1; break;
        default: usage();
        }
    }
    if ((o.quiet || o.dryrun) && !o.fix)
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
    if (mboxname_init_namespace(&ns, 1)) {
        fprintf(stderr, "%s: bad namespace configuration\n", progname);
        return EX_USAGE_CODE;
    }
    for (; optind < argc; optind++)
        add_prefix(&o.prefixes, &ns, argv[optind]);

    cyrusdb_init();
    r = mboxlist_open();
    if (r)
        fprintf(stderr, "%s: cannot open the mailbox list: %s\n", progname,
                error_message(r));
    if (!r && o.fix)
        r = recount(&o);
    if (!r && !o.quiet) {
        r = report(&o);
        if (r)
            fprintf(stderr, "%s: cannot read quotas: %s\n", progname,
                    error_message(r));
    }
    mboxlist_close();
    annotate_close();
    quota_close();
    cyrusdb_done();
    strarray_fini(&o.prefixes);
    buf_free(&why);
    return r ? 1 : 0;
}

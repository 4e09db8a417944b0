/* reconstruct: rebuild the metadata files of mailboxes from their message
 * files and mailboxes.db, and adopt mailbox directories the list lost. */
/* Columba is free software; see COPYING for the licence. */

/*
 * Usage: reconstruct [-C imapd.conf] [-r] [-f] [-q] [-G] [-p partition]
 *                    [mailbox...]
 *
 * Mailbox names are external names in the admin namespace (user.alice,
 * or user/alice with unixhierarchysep).  Without names, every mailbox
 * (on the -p partition when given) is reconstructed.  -r adds every
 * child of each named mailbox.  -f looks under each named mailbox's
 * directory for subdirectories without a mailboxes.db entry and adopts
 * them as child mailboxes (unique id, type and ACL from their
 * cyrus.header when there is one); with no names it walks every
 * partition (or the -p one) for mailbox headers whose name has no
 * entry.  -G re-reads every message and checks its GUID.  -q prints
 * only the fixes.  Each fix is one line "<mailbox>: [uid N: ]<what>"
 * on standard output, and is logged.  Exit status: 0, 1 when a mailbox
 * could not be reconstructed, 64 for usage or configuration errors.
 */

#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
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

#include "imap/mailbox.h"
#include "imap/mailbox_reconstruct.h"
#include "imap/mboxlist.h"
#include "imap/mboxname.h"

#define EX_USAGE_CODE 64
#define MAX_WALK_DEPTH 64

static const char *progname = "reconstruct";

struct options {
    int recursive;
    int find;
    int quiet;
    unsigned flags;             /* MAILBOX_RECONSTRUCT_* */
    const char *partition;
};

static struct options opts;
static struct namespace admin_ns;
static strarray_t done_names = STRARRAY_INITIALIZER;
static int failures;

static void usage(void)
{
    fprintf(stderr, "usage: %s [-C imapd.conf] [-r] [-f] [-q] [-G] "
            "[-p partition] [mailbox...]\n", progname);
    exit(EX_USAGE_CODE);
}

/* The name an admin sees, or the internal one when it has none. */
static char *extname(const char *intname)
{
    char *ext = NULL;

    if (mboxname_to_external(intname, &admin_ns, NULL, &ext))
        ext = xstrdup(intname);
    return ext;
}

static void report_fix(const char *name, uint32_t uid, const char *what,
                       void *rock)
{
    char *ext = extname(name);

    (void)rock;
    if (uid)
        printf("%s: uid %u: %s\n", ext, uid, what);
    else
        printf("%s: %s\n", ext, what);
    fflush(stdout);
    free(ext);
}

static void report_error(const char *intname, const char *what, int r)
{
    char *ext = extname(intname);

    fprintf(stderr, "%s: %s: %s%s%s\n", progname, ext, what,
            r ? ": " : "", r ? error_message(r) : "");
    free(ext);
    failures++;
}

/* Reconstruct the mailbox of entry `e` (once per run). */
static int reconstruct_entry(const struct mboxlist_entry *e)
{
    struct mailbox_reconstruct_spec spec;
    struct buf path = BUF_INITIALIZER;
    unsigned nfixes = 0;
    int r;

    if (strarray_find(&done_names, e->name, 0) >= 0)
        return 0;
    strarray_append(&done_names, e->name);
    if (e->server) {
        report_error(e->name, "remote mailbox skipped", 0);
        return 0;
    }
    memset(&spec, 0, sizeof(spec));
    spec.name = e->name;
    spec.uniqueid = e->uniqueid;
    spec.type = e->type;
    spec.acl = e->acl;
    spec.uidvalidity = e->uidvalidity;
    r = mboxname_datapath(e->partition, e->name, 0, &path);
    if (!r)
        r = mailbox_reconstruct(buf_cstring(&path), &spec, opts.flags,
                                report_fix, NULL, &nfixes);
    if (r) {
        report_error(e->name, "reconstruct failed", r);
    }
    else if (!opts.quiet && !nfixes) {
        char *ext = extname(e->name);

        printf("%s: ok\n", ext);
        free(ext);
    }
    buf_free(&path);
    return r;
}

/* ---------------------------------------------------------------- */
/* Adopting directories without an entry (-f)                         */

/* A new random unique id, as mailbox_create() makes them. */
static char *new_uniqueid(void)
{
    unsigned char raw[16];
    struct buf hex = BUF_INITIALIZER;

    if (util_random_bytes(raw, sizeof(raw)))
        fatal("no random bytes for a unique id", EX_USAGE_CODE);
    util_hex_encode(raw, sizeof(raw), &hex);
    return buf_release(&hex);
}

/* Adopt the mailbox directory `dir` as `name` on `partition`:
 * reconstruct it (creating its header when missing), then enter it in
 * mailboxes.db with the UIDVALIDITY its index now has. */
static int adopt(const char *name, const char *partition, const char *dir,
                 const char *parent_acl)
{
    struct mailbox_header_info hi;
    struct mailbox_reconstruct_spec spec;
    struct mboxlist_entry e, *other = NULL;
    struct mailbox *mb = NULL;
    char *uniqueid = NULL;
    int r;

    memset(&spec, 0, sizeof(spec));
    memset(&e, 0, sizeof(e));
    spec.name = name;
    spec.type = MAILBOX_TYPE_MAIL;
    spec.acl = parent_acl;
    if (!mailbox_read_header_info(dir, &hi)) {
        spec.type = hi.type;
        spec.acl = hi.acl;
        /* A copied directory carries another mailbox's id: the copy
         * gets its own, or "$I" would point away from the original. */
        if (mboxlist_lookup_by_id(hi.uniqueid, &other)
            == ERR_MAILBOX_NONEXISTENT)
            uniqueid = xstrdup(hi.uniqueid);
        mboxlist_entry_free(&other);
    }
    else {
        memset(&hi, 0, sizeof(hi));
    }
    if (!uniqueid)
        uniqueid = new_uniqueid();
    spec.uniqueid = uniqueid;
    r = mailbox_reconstruct(dir, &spec, opts.flags, report_fix, NULL, NULL);
    if (!r)
        r = mailbox_open_iread(dir, &mb);
    if (!r) {
        e.name = (char *)name;
        e.type = spec.type;
        e.partition = (char *)partition;
        e.uniqueid = uniqueid;
        e.acl = (char *)(spec.acl ? spec.acl : "");
        e.uidvalidity = mailbox_index(mb)->uidvalidity;
        mailbox_close(&mb);
        r = mboxlist_insert(&e);
    }
    if (r) {
        report_error(name, "cannot adopt mailbox directory", r);
    }
    else {
        xsyslog(LOG_NOTICE, "reconstruct: mailbox adopted", "mailbox=%s "
                "partition=%s uniqueid=%s", log_escape(name, 0),
                log_escape(partition, 0), uniqueid);
        report_fix(name, 0, "directory without a mailboxes.db entry: "
                   "adopted", NULL);
        strarray_append(&done_names, name);
    }
    mailbox_header_info_fini(&hi);
    free(uniqueid);
    return r;
}

/* -f below one mailbox: every subdirectory of `dir` is a child mailbox
 * `name`.<subdir>; adopt those without an entry, and look deeper. */
static void find_children(const char *name, const char *partition,
                          const char *dir, const char *acl, int depth)
{
    struct buf child = BUF_INITIALIZER, cdir = BUF_INITIALIZER;
    struct mboxlist_entry *ce = NULL;
    strarray_t subdirs = STRARRAY_INITIALIZER;
    struct dirent *de;
    struct stat sb;
    DIR *d;
    int i;

    if (depth > MAX_WALK_DEPTH || !(d = opendir(dir)))
        return;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        buf_reset(&cdir);
        buf_printf(&cdir, "%s/%s", dir, de->d_name);
        if (lstat(buf_cstring(&cdir), &sb) == 0 && S_ISDIR(sb.st_mode))
            strarray_append(&subdirs, de->d_name);
    }
    closedir(d);

    for (i = 0; i < subdirs.count; i++) {
        buf_reset(&child);
        buf_printf(&child, "%s.%s", name, strarray_nth(&subdirs, i));
        buf_reset(&cdir);
        buf_printf(&cdir, "%s/%s", dir, strarray_nth(&subdirs, i));
        if (mboxname_policycheck(buf_cstring(&child)))
            continue;
        if (mboxlist_lookup(buf_cstring(&child), &ce)
            == ERR_MAILBOX_NONEXISTENT)
            adopt(buf_cstring(&child), partition, buf_cstring(&cdir), acl);
        mboxlist_entry_free(&ce);
        find_children(buf_cstring(&child), partition, buf_cstring(&cdir),
                      acl, depth + 1);
    }
    strarray_fini(&subdirs);
    buf_free(&child);
    buf_free(&cdir);
}

/* -f without names: walk the partition `root` for cyrus.header files
 * whose mailbox has no entry, and adopt those that live where their
 * name says they should. */
static void find_in_partition(const char *partition, const char *dir,
                              int depth)
{
    struct mailbox_header_info hi;
    struct mboxlist_entry *e = NULL;
    struct buf sub = BUF_INITIALIZER, want = BUF_INITIALIZER;
    struct dirent *de;
    struct stat sb;
    DIR *d;

    if (depth > MAX_WALK_DEPTH)
        return;
    if (!mailbox_read_header_info(dir, &hi)) {
        if (mboxlist_lookup(hi.name, &e) == ERR_MAILBOX_NONEXISTENT
            && !mboxname_datapath(partition, hi.name, 0, &want)
            && !strcmp(buf_cstring(&want), dir))
            adopt(hi.name, partition, dir, hi.acl);
        mboxlist_entry_free(&e);
        mailbox_header_info_fini(&hi);
    }
    d = opendir(dir);
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        buf_reset(&sub);
        buf_printf(&sub, "%s/%s", dir, de->d_name);
        if (lstat(buf_cstring(&sub), &sb) == 0 && S_ISDIR(sb.st_mode))
            find_in_partition(partition, buf_cstring(&sub), depth + 1);
    }
    if (d)
        closedir(d);
    buf_free(&sub);
    buf_free(&want);
}

static void find_partition_cb(const char *key, const char *value,
                              void *rock)
{
    (void)rock;
    if (!opts.partition || !strcmp(opts.partition, key))
        find_in_partition(key, value, 0);
}

/* ---------------------------------------------------------------- */
/* Walking the named mailboxes                                        */

static int entry_cb(const struct mboxlist_entry *e, void *rock)
{
    (void)rock;
    if (!opts.partition || !strcmp(opts.partition, e->partition))
        reconstruct_entry(e);
    return 0;
}

/* Collect entries first: adopting reopens the list under a walk. */
static int collect_cb(const struct mboxlist_entry *e, void *rock)
{
    strarray_append(rock, e->name);
    return 0;
}

static void do_children(const char *intname)
{
    strarray_t names = STRARRAY_INITIALIZER;
    struct mboxlist_entry *e = NULL;
    int i;

    mboxlist_foreach(intname, collect_cb, &names);
    for (i = 0; i < names.count; i++) {
        if (!mboxlist_lookup(strarray_nth(&names, i), &e))
            reconstruct_entry(e);
        mboxlist_entry_free(&e);
    }
    strarray_fini(&names);
}

static void do_mailbox(const char *arg)
{
    struct mboxlist_entry *e = NULL;
    struct buf path = BUF_INITIALIZER;
    char *intname = NULL;
    int r;

    r = mboxname_from_external(arg, &admin_ns, NULL, &intname);
    if (r) {
        fprintf(stderr, "%s: %s: %s\n", progname, arg, error_message(r));
        failures++;
        return;
    }
    r = mboxlist_lookup(intname, &e);
    if (!r) {
        reconstruct_entry(e);
        if (opts.find && !mboxname_datapath(e->partition, e->name, 0, &path))
            find_children(e->name, e->partition, buf_cstring(&path), e->acl,
                          0);
    }
    else if (!opts.recursive) {
        report_error(intname, "cannot look up mailbox", r);
    }
    if (opts.recursive)
        do_children(intname);
    mboxlist_entry_free(&e);
    buf_free(&path);
    free(intname);
}

int main(int argc, char **argv)
{
    const char *conf = NULL, *err = NULL;
    struct buf why = BUF_INITIALIZER;
    int opt, i, r;

    while ((opt = getopt(argc, argv, "C:rfqGp:")) != -1) {
        switch (opt) {
        case 'C': conf = optarg; break;
        case 'r': opts.recursive = 1; break;
        case 'f': opts.find = 1; break;
        case 'q': opts.quiet = 1; break;
        case 'G': opts.flags |= MAILBOX_RECONSTRUCT_GUID; break;
        case 'p': opts.partition = optarg; break;
        default: usage();
        }
    }

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
    if (opts.partition && !config_partitiondir(opts.partition)) {
        fprintf(stderr, "%s: unknown partition %s\n", progname,
                opts.partition);
        return EX_USAGE_CODE;
    }
    r = mboxname_init_namespace(&admin_ns, 1);
    if (r) {
        fprintf(stderr, "%s: bad namespace configuration: %s\n", progname,
                error_message(r));
        return EX_USAGE_CODE;
    }
    cyrusdb_init();
    r = mboxlist_open();
    if (r) {
        fprintf(stderr, "%s: cannot open mailboxes.db: %s\n", progname,
                error_message(r));
        cyrusdb_done();
        return 1;
    }

    if (optind == argc) {
        if (opts.find)
            config_foreach_prefix("partition-", find_partition_cb, NULL);
        mboxlist_foreach(NULL, entry_cb, NULL);
    }
    for (i = optind; i < argc; i++)
        do_mailbox(argv[i]);

    mboxlist_close();
    cyrusdb_done();
    strarray_fini(&done_names);
    buf_free(&why);
    return failures ? 1 : 0;
}

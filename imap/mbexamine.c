/* mbexamine: print a mailbox's header, index header, records and cached
 * envelope and body structure, as a debugging aid. */
/* Columba is free software; see COPYING for the licence. */

/*
 * Usage: mbexamine [-C imapd.conf] [-u uid] [-s seq] mailbox...
 *
 * Mailbox names are external names in the admin namespace.  -u shows
 * only the record with that UID, -s only the message with that sequence
 * number (counting the records that are not expunged, as IMAP does).
 * The output is meant for people; its layout may change.  Exit status 1
 * when a mailbox cannot be read, 64 for usage errors.
 */

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/cyrusdb.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/privs.h"
#include "lib/util.h"

#include "imap/mailbox.h"
#include "imap/mboxlist.h"
#include "imap/mboxname.h"

#define EX_USAGE_CODE 64

static const char *progname = "mbexamine";
static uint32_t want_uid;
static uint32_t want_seq;
static struct namespace admin_ns;

static void usage(void)
{
    fprintf(stderr, "usage: %s [-C imapd.conf] [-u uid] [-s seq] "
            "mailbox...\n", progname);
    exit(EX_USAGE_CODE);
}

/* A time as "2024-01-02T03:04:05Z (1704164645)", or "0". */
static const char *fmt_time(time_t t, char *out, size_t len)
{
    struct tm tm;
    char stamp[32];

    if (!t || !gmtime_r(&t, &tm)
        || !strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm)) {
        snprintf(out, len, "%lld", (long long)t);
        return out;
    }
    snprintf(out, len, "%s (%lld)", stamp, (long long)t);
    return out;
}

static void print_mailbox_header(struct mailbox *mb, const char *ext)
{
    const struct mailbox_index_header *ih = mailbox_index(mb);
    char t[64];
    unsigned i;

    printf("Mailbox: %s\n", ext);
    printf("  Name: %s\n  Path: %s\n", mailbox_name(mb), mailbox_path(mb));
    if (strcmp(mailbox_metapath(mb), mailbox_path(mb)))
        printf("  Metadata path: %s\n", mailbox_metapath(mb));
    printf("  Unique id: %s\n  Type: %s\n"
           "  ACL: %s\n  User flags:", mailbox_uniqueid(mb),
           mailbox_type_name(mailbox_type(mb)), mailbox_acl(mb));
    for (i = 0; i < MAILBOX_MAX_USERFLAGS; i++) {
        if (mailbox_userflag_name(mb, i))
            printf(" %u:%s", i, mailbox_userflag_name(mb, i));
    }
    printf("\nIndex header:\n");
    printf("  Version: %u\n  Generation: %u\n  Format flags: 0x%x\n",
           ih->version, ih->generation, ih->format_flags);
    printf("  UIDVALIDITY: %u\n  UIDNEXT: %u\n  HIGHESTMODSEQ: %llu\n",
           ih->uidvalidity, ih->uidnext,
           (unsigned long long)ih->highestmodseq);
    printf("  Records: %u\n  Exists: %u\n  Deleted: %u\n  Answered: %u\n"
           "  Flagged: %u\n", ih->num_records, ih->exists, ih->deleted,
           ih->answered, ih->flagged);
    printf("  Quota used: %llu\n", (unsigned long long)ih->quota_used);
    printf("  Last append: %s\n", fmt_time(ih->last_appenddate, t,
                                             sizeof(t)));
    printf("  POP3 last login: %s\n", fmt_time(ih->pop3_last_login, t,
                                                 sizeof(t)));
    printf("  First expunged: %s\n", fmt_time(ih->first_expunged, t,
                                                sizeof(t)));
    printf("  Deleted modseq: %llu\n  Cache size: %llu\n",
           (unsigned long long)ih->deletedmodseq,
           (unsigned long long)ih->cache_size);
}

static void print_flags(struct mailbox *mb, const struct mailbox_record *rec)
{
    static const struct { uint32_t bit; const char *name; } sys[] = {
        { MAILBOX_FLAG_ANSWERED, "\\Answered" },
        { MAILBOX_FLAG_FLAGGED, "\\Flagged" },
        { MAILBOX_FLAG_DELETED, "\\Deleted" },
        { MAILBOX_FLAG_DRAFT, "\\Draft" },
        { MAILBOX_FLAG_SEEN, "\\Seen" },
        { MAILBOX_FLAG_EXPUNGED, "[Expunged]" },
        { MAILBOX_FLAG_UNLINKED, "[Unlinked]" }
    };
    size_t i;
    unsigned u;

    printf("  Flags:");
    for (i = 0; i < sizeof(sys) / sizeof(sys[0]); i++) {
        if (rec->system_flags & sys[i].bit)
            printf(" %s", sys[i].name);
    }
    for (u = 0; u < MAILBOX_MAX_USERFLAGS; u++) {
        if (rec->user_flags[u / 32] & (1u << (u % 32))) {
            const char *name = mailbox_userflag_name(mb, u);

            printf(" %s", name ? name : "[unnamed]");
        }
    }
    printf("\n");
}

/* Print one cache field, or why it cannot be read. */
static void print_cache_field(struct mailbox *mb,
                              const struct mailbox_record *rec,
                              const char *label,
                              enum mailbox_cache_field field)
{
    struct buf val = BUF_INITIALIZER;
    int r = mailbox_cache_get(mb, rec, field, &val);

    if (r)
        printf("  %s: [%s]\n", label, error_message(r));
    else
        printf("  %s: %s\n", label, buf_cstring(&val));
    buf_free(&val);
}

static void print_record(struct mailbox *mb, const struct mailbox_record *rec,
                         uint32_t seq)
{
    struct buf hex = BUF_INITIALIZER;
    char t[64];

    printf("Record %u:\n  UID: %u\n", rec->recno, rec->uid);
    if (seq)
        printf("  Sequence: %u\n", seq);
    printf("  Internal date: %s\n", fmt_time(rec->internaldate, t,
                                               sizeof(t)));
    printf("  Sent date: %s\n", fmt_time(rec->sentdate, t, sizeof(t)));
    printf("  Save date: %s\n", fmt_time(rec->savedate, t, sizeof(t)));
    printf("  Last updated: %s\n", fmt_time(rec->last_updated, t,
                                              sizeof(t)));
    printf("  Size: %llu\n  Header size: %u\n",
           (unsigned long long)rec->size, rec->header_size);
    print_flags(mb, rec);
    printf("  Modseq: %llu\n  Created modseq: %llu\n",
           (unsigned long long)rec->modseq,
           (unsigned long long)rec->createdmodseq);
    util_hex_encode(rec->guid, sizeof(rec->guid), &hex);
    printf("  GUID: %s\n", buf_cstring(&hex));
    printf("  Cache: version %u offset %llu\n", rec->cache_version,
           (unsigned long long)rec->cache_offset);
    if (!(rec->system_flags & MAILBOX_FLAG_UNLINKED)) {
        print_cache_field(mb, rec, "Envelope", MAILBOX_CACHE_ENVELOPE);
        print_cache_field(mb, rec, "Bodystructure",
                          MAILBOX_CACHE_BODYSTRUCTURE);
    }
    buf_free(&hex);
}

static int examine(const char *arg)
{
    struct mboxlist_entry *e = NULL;
    struct mailbox *mb = NULL;
    struct mailbox_record rec;
    struct buf path = BUF_INITIALIZER;
    char *intname = NULL;
    uint32_t recno, seq = 0;
    int r;

    r = mboxname_from_external(arg, &admin_ns, NULL, &intname);
    if (!r)
        r = mboxlist_lookup(intname, &e);
    if (!r)
        r = mboxname_datapath(e->partition, e->name, 0, &path);
    if (!r)
        r = mailbox_open_iread(buf_cstring(&path), &mb);
    if (r)
        goto done;

    print_mailbox_header(mb, arg);
    for (recno = 1; recno <= mailbox_index(mb)->num_records; recno++) {
        r = mailbox_read_record(mb, recno, &rec);
        if (r) {
            printf("Record %u: [%s]\n", recno, error_message(r));
            continue;
        }
        if (!(rec.system_flags & MAILBOX_FLAG_EXPUNGED))
            seq++;
        if (want_uid && rec.uid != want_uid)
            continue;
        if (want_seq && (seq != want_seq
                         || (rec.system_flags & MAILBOX_FLAG_EXPUNGED)))
            continue;
        print_record(mb, &rec, rec.system_flags & MAILBOX_FLAG_EXPUNGED
                               ? 0 : seq);
    }
    r = 0;

done:
    if (r)
        fprintf(stderr, "%s: %s: %s\n", progname, arg, error_message(r));
    mailbox_close(&mb);
    mboxlist_entry_free(&e);
    buf_free(&path);
    free(intname);
    return r;
}

int main(int argc, char **argv)
{
    const char *conf = NULL, *err = NULL;
    struct buf why = BUF_INITIALIZER;
    int opt, i, r, failed = 0;

    while ((opt = getopt(argc, argv, "C:u:s:")) != -1) {
        switch (opt) {
        case 'C': conf = optarg; break;
        case 'u':
            if (parse_uint32(optarg, NULL, &want_uid) || !want_uid)
                usage();
            break;
        case 's':
            if (parse_uint32(optarg, NULL, &want_seq) || !want_seq)
                usage();
            break;
        default: usage();
        }
    }
    if (optind == argc)
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
    for (i = optind; i < argc; i++) {
        if (examine(argv[i]))
            failed++;
    }
    mboxlist_close();
    cyrusdb_done();
    buf_free(&why);
    return failed ? 1 : 0;
}

/* storebench: figures for the mail store -- appends per second (one
 * durable commit per message, and one batch), the time to open a large
 * mailbox and read every record's flags, and the peak memory used. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/error.h"
#include "lib/util.h"

#include "imap/mailbox.h"

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int r)
{
    fprintf(stderr, "storebench: %s: %s\n", what, error_message(r));
    exit(1);
}

/* A small message, different for every `i`. */
static void make_msg(struct buf *msg, unsigned i)
{
    buf_reset(msg);
    buf_printf(msg, "From: bench@example.com\r\nTo: you@example.com\r\n"
               "Subject: message %u\r\nMessage-ID: <%u@bench>\r\n\r\n"
               "Hello, this is message %u.\r\n", i, i, i);
}

static struct mailbox *new_mailbox(const char *dir, const char *leaf)
{
    struct buf path = BUF_INITIALIZER;
    struct mailbox *mb = NULL;
    int r;

    buf_printf(&path, "%s/%s", dir, leaf);
    r = mailbox_create(leaf, buf_cstring(&path), MAILBOX_TYPE_MAIL, NULL,
                       &mb);
    if (r)
        die("mailbox_create", r);
    buf_free(&path);
    return mb;
}

/* `n` appends, each its own durable commit; returns seconds. */
static double bench_single(const char *dir, unsigned n)
{
    struct mailbox *mb = new_mailbox(dir, "single");
    struct buf msg = BUF_INITIALIZER;
    double t0 = now_s();
    unsigned i;
    int r;

    for (i = 0; i < n; i++) {
        make_msg(&msg, i);
        r = mailbox_append(mb, NULL, msg.s, msg.len, 0, 0, NULL, NULL);
        if (r)
            die("mailbox_append", r);
    }
    t0 = now_s() - t0;
    mailbox_close(&mb);
    buf_free(&msg);
    return t0;
}

/* Seconds spent in mailbox_append_commit() by the last fill(): the
 * durable part (message files, directory, cache, index). */
static double commit_seconds;

/* Fill `mb` with `n` messages in commits of `batch`; returns seconds. */
static double fill(struct mailbox *mb, unsigned n, unsigned batch)
{
    struct buf msg = BUF_INITIALIZER;
    struct mailbox_append *txn = NULL;
    double t0 = now_s(), tc;
    unsigned i;
    int r;

    commit_seconds = 0;
    for (i = 0; i < n; i++) {
        if (!txn && (r = mailbox_append_begin(mb, &txn)))
            die("mailbox_append_begin", r);
        make_msg(&msg, i);
        r = mailbox_append_add(txn, NULL, msg.s, msg.len, 0,
                               i % 3 ? 0 : MAILBOX_FLAG_SEEN, NULL, NULL);
        if (r)
            die("mailbox_append_add", r);
        if ((i + 1) % batch == 0 || i + 1 == n) {
            tc = now_s();
            r = mailbox_append_commit(&txn);
            commit_seconds += now_s() - tc;
            if (r)
                die("mailbox_append_commit", r);
        }
    }
    buf_free(&msg);
    return now_s() - t0;
}

/* Open the mailbox at `path` and read every record's flags. */
static double bench_open_read(const char *path, unsigned *seen_r)
{
    struct mailbox *mb = NULL;
    struct mailbox_record rec;
    double t0 = now_s();
    uint32_t recno;
    unsigned seen = 0;
    int r;

    r = mailbox_open_iread(path, &mb);
    if (r)
        die("mailbox_open_iread", r);
    for (recno = 1; recno <= mailbox_index(mb)->num_records; recno++) {
        r = mailbox_read_record(mb, recno, &rec);
        if (r)
            die("mailbox_read_record", r);
        seen += (rec.system_flags & MAILBOX_FLAG_SEEN) != 0;
    }
    mailbox_close(&mb);
    *seen_r = seen;
    return now_s() - t0;
}

static int remove_one(const char *fpath, const struct stat *sb, int flag,
                      struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(fpath);
}

static void usage(void)
{
    fprintf(stderr, "usage: storebench [-n appends] [-N big-mailbox] "
            "[-d dir]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    unsigned n = 10000, big = 100000, seen = 0;
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char dir[4096];
    struct buf path = BUF_INITIALIZER;
    struct mailbox *mb;
    struct rusage ru;
    double single, batch, batch_commit, fillt, openread;
    int c;

    while ((c = getopt(argc, argv, "n:N:d:")) != -1) {
        switch (c) {
        case 'n': n = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'N': big = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'd': base = optarg; break;
        default: usage();
        }
    }
    if (!n || !big)
        usage();
    if ((size_t)snprintf(dir, sizeof(dir), "%s/storebench.XXXXXX", base)
        >= sizeof(dir) || !mkdtemp(dir)) {
        perror("storebench: mkdtemp");
        return 1;
    }

    single = bench_single(dir, n);
    mb = new_mailbox(dir, "batch");
    batch = fill(mb, n, n);
    batch_commit = commit_seconds;
    mailbox_close(&mb);
    mb = new_mailbox(dir, "big");
    fillt = fill(mb, big, 10000);
    mailbox_close(&mb);
    buf_printf(&path, "%s/big", dir);
    openread = bench_open_read(buf_cstring(&path), &seen);
    getrusage(RUSAGE_SELF, &ru);

    printf("%-44s %12s %14s\n", "measure", "seconds", "rate / cost");
    printf("%-44s %12.3f %10.0f /s\n", "appends, one durable commit each",
           single, n / single);
    printf("%-44s %12.3f %10.0f /s\n", "appends, one batch commit", batch,
           n / batch);
    printf("%-44s %12.3f %10.0f /s\n", "  of which the commit (files synced)",
           batch_commit, n / batch_commit);
    printf("%-44s %12.3f %10.0f /s\n", "fill big mailbox (commits of 10000)",
           fillt, big / fillt);
    printf("%-44s %12.3f %10.3f us/rec\n", "open big mailbox + read all flags",
           openread, openread * 1e6 / big);
    printf("%-44s %12s %10ld KiB\n", "max RSS (getrusage)", "",
           ru.ru_maxrss);
    printf("(%u appends; big mailbox %u records, %u \\Seen; dir %s)\n", n,
           big, seen, dir);

    /* The numbers are printed; the files go. */
    if (nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "storebench: could not remove %s\n", dir);
    buf_free(&path);
    return 0;
}

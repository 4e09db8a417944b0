/* cyr_dbtool: look at and change one cyrusdb database from the command
 * line, or apply a batch of changes from standard input atomically. */
/* Columba is free software; see COPYING for the licence. */

/*
 * Usage: cyr_dbtool [-C imapd.conf] [-n] [-T] [-M] FILE BACKEND ACTION...
 *
 *   show [PREFIX]     every record (under PREFIX), "key<TAB>value" lines
 *   get KEY           the value of KEY
 *   set KEY VALUE     store
 *   delete KEY        delete (an error when KEY is absent)
 *   consistent        check the file; exit 1 if damaged
 *   repack            checkpoint (rewrite compactly)
 *   dump              backend-level dump
 *   batch             read commands from standard input, one per line,
 *                     and apply them in one transaction: all or nothing
 *
 * -n creates FILE if missing; -M uses mailbox order for a new FILE; -T
 * runs read actions inside a transaction (a stable snapshot).
 *
 * Output is escaped as by cyrusdb_escape() (backslash, tab, CR, LF as
 * \\, \t, \r, \n; other bytes outside printable ASCII as \xHH), so one
 * record is one line.  Keys and values on the command line are taken
 * literally.  In batch input a line is
 *
 *     set KEY VALUE | delete KEY | get KEY | show [PREFIX]
 *
 * with words separated by blanks; a word may be "double quoted", and in
 * either form \\ \" \t \n \r \s (space) and \xHH stand for those bytes.
 * An unquoted VALUE of set runs to the end of the line.  A raw NUL byte
 * in the input is refused (write \x00).  Empty lines and lines starting
 * with '#' are skipped.  Lines are limited to BATCH_MAX_LINE bytes.
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
#include "lib/xmalloc.h"

#define EX_USAGE_CODE 64
#define BATCH_MAX_LINE (2 * 1024 * 1024)

static const char *progname = "cyr_dbtool";

struct tool {
    const char *fname;
    const char *backend;
    int flags;
    int use_txn;
    struct db *db;
    struct txn *tid;
};

static void usage(void)
{
    fprintf(stderr,
            "usage: %s [-C imapd.conf] [-n] [-T] [-M] <file> <backend> "
            "<action> [args]\n"
            "actions: show [prefix] | get <key> | set <key> <value> |\n"
            "         delete <key> | consistent | repack | dump | batch\n",
            progname);
    exit(EX_USAGE_CODE);
}

/* Report a failed database operation on stderr. */
static void report(const struct tool *t, const char *what, int r)
{
    fprintf(stderr, "%s: %s: %s: %s\n", progname, t->fname, what,
            error_message(r));
}

/* Print one escaped field and then `end`. */
static int print_escaped(const char *p, size_t len, char end)
{
    struct buf out = BUF_INITIALIZER;
    int r = 0;

    cyrusdb_escape(&out, p, len);
    buf_putc(&out, end);
    if (fwrite(out.s, 1, out.len, stdout) != out.len)
        r = ERR_IO;
    buf_free(&out);
    return r;
}

static int print_cb(void *rock, const char *key, size_t keylen,
                    const char *data, size_t datalen)
{
    int r;

    (void)rock;
    r = print_escaped(key, keylen, '\t');
    return r ? r : print_escaped(data, datalen, '\n');
}

static struct txn **tid_for(struct tool *t)
{
    return t->use_txn ? &t->tid : NULL;
}

static int do_show(struct tool *t, const char *prefix, size_t len)
{
    return cyrusdb_foreach(t->db, prefix, len, NULL, print_cb, NULL,
                           tid_for(t));
}

static int do_get(struct tool *t, const char *key, size_t len)
{
    const char *data = NULL;
    size_t datalen = 0;
    int r;

    r = cyrusdb_fetch(t->db, key, len, &data, &datalen, tid_for(t));
    return r ? r : print_escaped(data, datalen, '\n');
}

/* ------------------------------------------------------------------
 * Batch input.
 * ------------------------------------------------------------------ */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode one escape at *pp (just after the backslash) into out. */
static int parse_escape(const char **pp, const char *end, struct buf *out)
{
    const char *p = *pp;
    int hi, lo;

    if (p >= end)
        return ERR_INVALID;
    switch (*p) {
    case '\\': case '"': buf_putc(out, *p); break;
    case 't': buf_putc(out, '\t'); break;
    case 'n': buf_putc(out, '\n'); break;
    case 'r': buf_putc(out, '\r'); break;
    case 's': buf_putc(out, ' '); break;
    case 'x':
        if (end - p < 3 || (hi = hexval(p[1])) < 0
            || (lo = hexval(p[2])) < 0)
            return ERR_INVALID;
        buf_putc(out, (char)(hi * 16 + lo));
        p += 2;
        break;
    default:
        return ERR_INVALID;
    }
    *pp = p + 1;
    return 0;
}

/* Parse one word at *pp into out; `to_eol` makes an unquoted word run to
 * the end of the line.  Returns ERR_NOTFOUND when no word is left. */
static int parse_word(const char **pp, const char *end, int to_eol,
                      struct buf *out)
{
    const char *p = *pp;
    int quoted, r;

    buf_reset(out);
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    if (p >= end)
        return ERR_NOTFOUND;
    quoted = (*p == '"');
    if (quoted)
        p++;
    while (p < end) {
        if (quoted && *p == '"')
            break;
        if (!quoted && !to_eol && (*p == ' ' || *p == '\t'))
            break;
        if (*p == '\\') {
            p++;
            r = parse_escape(&p, end, out);
            if (r)
                return r;
            continue;
        }
        buf_putc(out, *p++);
    }
    if (quoted) {
        if (p >= end)
            return ERR_INVALID;
        p++;
    }
    *pp = p;
    return 0;
}

/* Check that nothing but blanks is left on the line. */
static int at_eol(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    return p >= end;
}

/* Apply one batch line; `why` gets the reason for a syntax error. */
static int batch_line(struct tool *t, const char *line, size_t len,
                      const char **why)
{
    struct buf cmd = BUF_INITIALIZER, key = BUF_INITIALIZER;
    struct buf val = BUF_INITIALIZER;
    const char *p = line, *end = line + len;
    int r, is_set;

    *why = "syntax error";
    r = parse_word(&p, end, 0, &cmd);
    if (r)
        goto done;
    is_set = !strcmp(buf_cstring(&cmd), "set");
    r = parse_word(&p, end, 0, &key);
    if (r == ERR_NOTFOUND && !strcmp(buf_cstring(&cmd), "show")) {
        r = do_show(t, "", 0);
        *why = NULL;
        goto done;
    }
    if (r) {
        *why = r == ERR_NOTFOUND ? "missing key" : "bad escape or quote";
        r = ERR_INVALID;
        goto done;
    }
    if (is_set) {
        r = parse_word(&p, end, 1, &val);
        if (r == ERR_NOTFOUND)
            buf_reset(&val);
        else if (r) {
            *why = "bad escape or quote in value";
            r = ERR_INVALID;
            goto done;
        }
    }
    if (!at_eol(p, end)) {
        *why = "trailing text (quote words with blanks)";
        r = ERR_INVALID;
        goto done;
    }

    *why = NULL;
    if (is_set)
        r = cyrusdb_store(t->db, key.s, key.len, val.s ? val.s : "",
                          val.len, &t->tid);
    else if (!strcmp(cmd.s, "delete"))
        r = cyrusdb_delete(t->db, key.s, key.len, &t->tid, 0);
    else if (!strcmp(cmd.s, "get"))
        r = do_get(t, key.s, key.len);
    else if (!strcmp(cmd.s, "show"))
        r = do_show(t, key.s, key.len);
    else {
        *why = "unknown command";
        r = ERR_INVALID;
    }

done:
    buf_free(&cmd);
    buf_free(&key);
    buf_free(&val);
    return r;
}

/* Read the commands of standard input and apply them in one transaction;
 * the first failure aborts it and nothing is written. */
static int do_batch(struct tool *t)
{
    char *line = NULL;
    size_t alloc = 0;
    ssize_t n;
    unsigned long lineno = 0;
    const char *why = NULL;
    int r = 0;

    t->use_txn = 1;
    while (!r && (n = getline(&line, &alloc, stdin)) >= 0) {
        size_t len = (size_t)n;

        lineno++;
        if (len > BATCH_MAX_LINE) {
            why = "line too long";
            r = ERR_TOOBIG;
            break;
        }
        if (memchr(line, '\0', len)) {
            why = "NUL byte in input (write it as \\x00)";
            r = ERR_INVALID;
            break;
        }
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (!len || line[0] == '#' || at_eol(line, line + len))
            continue;
        /* Every command runs inside the batch's transaction. */
        r = batch_line(t, line, len, &why);
    }
    free(line);
    if (!r && ferror(stdin)) {
        why = "read error";
        r = ERR_IO;
    }

    if (r) {
        fprintf(stderr, "%s: %s: batch line %lu: %s%s%s\n", progname,
                t->fname, lineno, why ? why : "", why ? ": " : "",
                error_message(r));
        if (t->tid)
            cyrusdb_abort(t->db, t->tid);
        t->tid = NULL;
        fprintf(stderr, "%s: %s: batch aborted, nothing written\n",
                progname, t->fname);
        return r;
    }
    if (t->tid)
        r = cyrusdb_commit(t->db, t->tid);
    t->tid = NULL;
    if (r)
        report(t, "commit", r);
    return r;
}

/* ------------------------------------------------------------------
 * main
 * ------------------------------------------------------------------ */

/* Is `action` one that never writes? */
static int is_readonly_action(const char *action)
{
    return !strcmp(action, "show") || !strcmp(action, "get")
           || !strcmp(action, "consistent") || !strcmp(action, "dump");
}

/* Run one action against the open database. */
static int run_action(struct tool *t, const char *action, int argc,
                      char **argv)
{
    int r;

    if (!strcmp(action, "show") && argc <= 1)
        return do_show(t, argc ? argv[0] : "", argc ? strlen(argv[0]) : 0);
    if (!strcmp(action, "get") && argc == 1)
        return do_get(t, argv[0], strlen(argv[0]));
    if (!strcmp(action, "set") && argc == 2)
        return cyrusdb_store(t->db, argv[0], strlen(argv[0]), argv[1],
                             strlen(argv[1]), tid_for(t));
    if (!strcmp(action, "delete") && argc == 1)
        return cyrusdb_delete(t->db, argv[0], strlen(argv[0]), tid_for(t),
                              0);
    if (!strcmp(action, "consistent") && !argc) {
        r = cyrusdb_consistent(t->db);
        if (!r)
            printf("%s: consistent\n", t->fname);
        return r;
    }
    if (!strcmp(action, "repack") && !argc)
        return cyrusdb_checkpoint(t->db);
    if (!strcmp(action, "dump") && !argc)
        return cyrusdb_dump(t->db, 1);
    if (!strcmp(action, "batch") && !argc)
        return do_batch(t);
    usage();
    return ERR_INVALID;
}

static void read_config(const char *path)
{
    const char *err = NULL;
    struct buf why = BUF_INITIALIZER;
    int r = config_read(path, NULL, &err);

    if (r) {
        fprintf(stderr, "%s: cannot read configuration: %s\n", progname,
                err ? err : error_message(r));
        exit(EX_USAGE_CODE);
    }
    log_open(config_getstring(IMAPOPT_SYSLOG_PREFIX), progname, 0, 0);
    if (privs_become_cyrus(&why)) {
        fprintf(stderr, "%s: %s\n", progname, buf_cstring(&why));
        exit(EX_USAGE_CODE);
    }
}

int main(int argc, char **argv)
{
    struct tool t;
    const char *conf = NULL, *action;
    int opt, r;

    memset(&t, 0, sizeof(t));
    while ((opt = getopt(argc, argv, "C:nTMh")) != -1) {
        switch (opt) {
        case 'C': conf = optarg; break;
        case 'n': t.flags |= CYRUSDB_CREATE; break;
        case 'T': t.use_txn = 1; break;
        case 'M': t.flags |= CYRUSDB_MBOXSORT; break;
        default: usage();
        }
    }
    if (argc - optind < 3)
        usage();
    t.fname = argv[optind];
    t.backend = argv[optind + 1];
    action = argv[optind + 2];

    read_config(conf);
    if (!cyrusdb_backend_exists(t.backend)) {
        fprintf(stderr, "%s: unknown database backend '%s'\n", progname,
                t.backend);
        return 1;
    }
    cyrusdb_init();

    /* A tool names the backend it means: never convert behind the
     * administrator's back. */
    t.flags |= CYRUSDB_NOCONVERT;
    if (is_readonly_action(action) && !(t.flags & CYRUSDB_CREATE))
        t.flags |= CYRUSDB_RDONLY;
    r = cyrusdb_open(t.backend, t.fname, t.flags, &t.db);
    if (r) {
        report(&t, "cannot open", r);
        cyrusdb_done();
        return 1;
    }

    r = run_action(&t, action, argc - optind - 3, argv + optind + 3);
    if (!r && t.tid)
        r = cyrusdb_commit(t.db, t.tid);
    else if (t.tid)
        cyrusdb_abort(t.db, t.tid);
    if (r && strcmp(action, "batch"))
        report(&t, action, r);
    if (fflush(stdout) == EOF && !r) {
        fprintf(stderr, "%s: write error: %s\n", progname, strerror(errno));
        r = ERR_IO;
    }
    cyrusdb_close(t.db);
    cyrusdb_done();
    return r ? 1 : 0;
}

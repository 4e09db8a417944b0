/* dbbench: compare the cyrusdb backends (twoskip, sql over SQLite) with
 * raw LMDB on this machine: inserts, fetches, prefix scans, durable
 * commits.  A benchmark for developers, not a test. */
/* Columba is free software; see COPYING for the licence. */

/*
 * Usage: dbbench [-n records] [-c commits] [-d dir] [-b backend,...]
 *                [-t test,...] [-i]
 *
 * For each backend (default: twoskip, sql, lmdb; any that is not built
 * in is skipped with a note) it measures, on fresh files under a
 * temporary directory:
 *
 *   seq insert     N keys "k%012u" in ascending order, 10000 per
 *                  transaction
 *   rand insert    the same keys in a shuffled order into a new file
 *   rand fetch     N fetches of random existing keys
 *   prefix scan    N/100 scans of a 10-digit prefix (100 records each)
 *   durable commit C transactions of one store each (a new key), every
 *                  commit synced to disk (twoskip: fsync; SQLite: WAL with
 *                  synchronous=FULL; LMDB: default durable commit)
 *
 * and prints operations per second with the ratios twoskip/sql and
 * twoskip/lmdb, and how many twoskip reads were served without the
 * lock.  Keys are 13 bytes, values 64.  -t runs only the tests named
 * (seq, rand, fetch, scan, commit; the sequential fill that fetch, scan
 * and commit need is then done but not reported), for profiling one.
 *
 * -i interleaves the durable commits: once every backend has run its
 * other tests, commit i goes to each backend in turn, so that all of
 * them meet the same disk (on a machine whose disk others use too, one
 * backend's commits may otherwise run in a quiet minute and another's
 * in a busy one).  The rate is then commits over the time spent in
 * that backend's commits.
 */

#include "config.h"

#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_LMDB
#include <lmdb.h>
#endif

#include "lib/buf.h"
#include "lib/cyrusdb.h"
#include "lib/cyrusdb_twoskip_int.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#define BATCH 10000
#define VALLEN 64
#define MAX_BACKENDS 8

enum { T_SEQ, T_RAND, T_FETCH, T_SCAN, T_COMMIT, T_COUNT };
static const char *const test_names[T_COUNT] = {
    "seq insert", "rand insert", "rand fetch", "prefix scan",
    "durable commit"
};
static const char *const test_keys[T_COUNT] = {
    "seq", "rand", "fetch", "scan", "commit"
};
#define WANT(t) (want_tests & (1u << (t)))
static unsigned want_tests = (1u << T_COUNT) - 1;
static int is_interleaved;

/* One store under test, behind a few operations. */
struct store {
    const char *name;
    int (*open)(struct store *s, const char *path);
    int (*begin)(struct store *s);
    int (*put)(struct store *s, const char *k, size_t kl, const char *v,
               size_t vl);
    int (*commit)(struct store *s);
    int (*get)(struct store *s, const char *k, size_t kl);
    int (*scan)(struct store *s, const char *p, size_t pl, long *n_r);
    void (*close)(struct store *s);
    struct db *db;
    struct txn *tid;
#ifdef HAVE_LMDB
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
#endif
};

static unsigned long nrecs = 1000000;
static unsigned long ncommits = 2000;
static char value[VALLEN];

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static size_t make_key(char *buf, size_t len, unsigned long i)
{
    int n = snprintf(buf, len, "k%012lu", i);

    return n > 0 && (size_t)n < len ? (size_t)n : 0;
}

/* ------------------------------------------------------------------
 * cyrusdb stores.
 * ------------------------------------------------------------------ */

static int cdb_open(struct store *s, const char *path)
{
    return cyrusdb_open(s->name, path, CYRUSDB_CREATE | CYRUSDB_NOCOMPACT,
                        &s->db);
}

static int cdb_begin(struct store *s)
{
    s->tid = NULL;
    return 0;
}

static int cdb_put(struct store *s, const char *k, size_t kl, const char *v,
                   size_t vl)
{
    return cyrusdb_store(s->db, k, kl, v, vl, &s->tid);
}

static int cdb_commit(struct store *s)
{
    int r = s->tid ? cyrusdb_commit(s->db, s->tid) : 0;

    s->tid = NULL;
    return r;
}

static int cdb_get(struct store *s, const char *k, size_t kl)
{
    const char *d;
    size_t dl;

    return cyrusdb_fetch(s->db, k, kl, &d, &dl, NULL);
}

static int count_cb(void *rock, const char *key, size_t keylen,
                    const char *data, size_t datalen)
{
    (void)key;
    (void)keylen;
    (void)data;
    (void)datalen;
    (*(long *)rock)++;
    return 0;
}

static int cdb_scan(struct store *s, const char *p, size_t pl, long *n_r)
{
    return cyrusdb_foreach(s->db, p, pl, NULL, count_cb, n_r, NULL);
}

static void cdb_close(struct store *s)
{
    cyrusdb_close(s->db);
    s->db = NULL;
}

/* ------------------------------------------------------------------
 * LMDB, through its own API, as the reference.
 * ------------------------------------------------------------------ */

#ifdef HAVE_LMDB
static int lm_open(struct store *s, const char *path)
{
    MDB_txn *txn = NULL;
    int rc;

    rc = mdb_env_create(&s->env);
    if (!rc)
        rc = mdb_env_set_mapsize(s->env, (size_t)16 << 30);
    if (!rc)
        rc = mdb_env_open(s->env, path, MDB_NOSUBDIR, 0600);
    if (!rc)
        rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (!rc)
        rc = mdb_dbi_open(txn, NULL, 0, &s->dbi);
    if (!rc)
        rc = mdb_txn_commit(txn);
    else if (txn)
        mdb_txn_abort(txn);
    if (rc)
        fprintf(stderr, "lmdb: %s\n", mdb_strerror(rc));
    return rc ? ERR_IO : 0;
}

static int lm_begin(struct store *s)
{
    return mdb_txn_begin(s->env, NULL, 0, &s->txn) ? ERR_IO : 0;
}

static int lm_put(struct store *s, const char *k, size_t kl, const char *v,
                  size_t vl)
{
    MDB_val key = { kl, (void *)k }, val = { vl, (void *)v };
    int r;

    if (!s->txn && (r = lm_begin(s)))
        return r;
    return mdb_put(s->txn, s->dbi, &key, &val, 0) ? ERR_IO : 0;
}

static int lm_commit(struct store *s)
{
    int rc = s->txn ? mdb_txn_commit(s->txn) : 0;

    s->txn = NULL;
    return rc ? ERR_IO : 0;
}

static int lm_get(struct store *s, const char *k, size_t kl)
{
    MDB_txn *txn;
    MDB_val key = { kl, (void *)k }, val;
    int rc;

    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn))
        return ERR_IO;
    rc = mdb_get(txn, s->dbi, &key, &val);
    mdb_txn_abort(txn);
    return rc == MDB_NOTFOUND ? ERR_NOTFOUND : rc ? ERR_IO : 0;
}

static int lm_scan(struct store *s, const char *p, size_t pl, long *n_r)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val key = { pl, (void *)p }, val;
    int rc;

    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn))
        return ERR_IO;
    rc = mdb_cursor_open(txn, s->dbi, &cur);
    if (!rc) {
        rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
        while (!rc && key.mv_size >= pl && !memcmp(key.mv_data, p, pl)) {
            (*n_r)++;
            rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
        }
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
    return rc && rc != MDB_NOTFOUND ? ERR_IO : 0;
}

static void lm_close(struct store *s)
{
    mdb_env_close(s->env);
    s->env = NULL;
}
#endif

/* ------------------------------------------------------------------
 * The measurements.
 * ------------------------------------------------------------------ */

/* Insert keys order[0..nrecs-1] in transactions of BATCH. */
static int fill(struct store *s, const unsigned long *order)
{
    char key[32];
    unsigned long i;
    int r = 0;

    for (i = 0; !r && i < nrecs; i++) {
        size_t kl = make_key(key, sizeof(key), order ? order[i] : i);

        if (i % BATCH == 0)
            r = s->begin(s);
        if (!r)
            r = s->put(s, key, kl, value, VALLEN);
        if (!r && (i % BATCH == BATCH - 1 || i == nrecs - 1))
            r = s->commit(s);
    }
    return r;
}

static int run_fetch(struct store *s)
{
    char key[32];
    unsigned long i;
    int r = 0;

    for (i = 0; !r && i < nrecs; i++)
        r = s->get(s, key, make_key(key, sizeof(key), rng() % nrecs));
    return r;
}

static int run_scan(struct store *s, unsigned long nscans)
{
    char key[32];
    unsigned long i;
    long n = 0;
    int r = 0;

    for (i = 0; !r && i < nscans; i++) {
        make_key(key, sizeof(key), (rng() % nrecs) / 100 * 100);
        r = s->scan(s, key, 11, &n);
    }
    if (!r && n < (long)nscans)
        r = ERR_NOTFOUND;
    return r;
}

/* Each commit stores a new key with a new value: overwriting a record
 * with identical bytes lets SQLite skip the write (and the sync). */
static int run_commits(struct store *s)
{
    char key[32], val[VALLEN];
    unsigned long i;
    int r = 0, n;

    memcpy(val, value, VALLEN);
    for (i = 0; !r && i < ncommits; i++) {
        n = snprintf(key, sizeof(key), "c%012lu", i);
        memcpy(val, key, (size_t)n);
        r = s->begin(s);
        if (!r)
            r = s->put(s, key, (size_t)n, val, VALLEN);
        if (!r)
            r = s->commit(s);
    }
    return r;
}

/* -i: the durable commits of every store in turn, on each store's
 * sequential file; rates[s][T_COMMIT] gets each store's rate. */
static void interleaved_commits(struct store *stores, int n,
                                const char *dir, double rates[][T_COUNT])
{
    struct buf path = BUF_INITIALIZER;
    char key[32], val[VALLEN];
    double spent[MAX_BACKENDS], t;
    int is_open[MAX_BACKENDS], i, r = 0, len;
    unsigned long c;

    memcpy(val, value, VALLEN);
    for (i = 0; i < n; i++) {
        buf_reset(&path);
        buf_printf(&path, "%s/%s-seq.db", dir, stores[i].name);
        is_open[i] = !stores[i].open(&stores[i], buf_cstring(&path));
        spent[i] = 0;
    }
    for (c = 0; c < ncommits; c++) {
        len = snprintf(key, sizeof(key), "c%012lu", c);
        memcpy(val, key, (size_t)len);
        for (i = 0; i < n; i++) {
            struct store *s = &stores[i];

            if (!is_open[i])
                continue;
            t = now();
            r = s->begin(s);
            if (!r)
                r = s->put(s, key, (size_t)len, val, VALLEN);
            if (!r)
                r = s->commit(s);
            spent[i] += now() - t;
            if (r) {
                fprintf(stderr, "dbbench: %s: %s\n", s->name,
                        error_message(r));
                s->close(s);
                is_open[i] = 0;
                spent[i] = 0;
            }
        }
    }
    for (i = 0; i < n; i++) {
        if (is_open[i])
            stores[i].close(&stores[i]);
        rates[i][T_COMMIT] = spent[i] > 0 ? ncommits / spent[i] : 0;
    }
    buf_free(&path);
}

/* Run every test on one store; rates[] gets operations per second (0 for
 * a failed test). */
static void bench_store(struct store *s, const char *dir,
                        const unsigned long *perm, double *rates)
{
    struct buf p1 = BUF_INITIALIZER, p2 = BUF_INITIALIZER;
    unsigned long nscans = nrecs / 100 ? nrecs / 100 : 1;
    double t;
    int r;

    buf_printf(&p1, "%s/%s-seq.db", dir, s->name);
    buf_printf(&p2, "%s/%s-rand.db", dir, s->name);
    memset(rates, 0, T_COUNT * sizeof(*rates));

    r = 0;
    if (want_tests & ~(1u << T_RAND)) {
        r = s->open(s, buf_cstring(&p1));
        if (r)
            goto done;
        t = now();
        r = fill(s, NULL);
        rates[T_SEQ] = r || !WANT(T_SEQ) ? 0 : nrecs / (now() - t);
        t = now();
        if (!r && WANT(T_FETCH) && !(r = run_fetch(s)))
            rates[T_FETCH] = nrecs / (now() - t);
        t = now();
        if (!r && WANT(T_SCAN) && !(r = run_scan(s, nscans)))
            rates[T_SCAN] = nscans / (now() - t);
        t = now();
        if (!r && WANT(T_COMMIT) && !is_interleaved
            && !(r = run_commits(s)))
            rates[T_COMMIT] = ncommits / (now() - t);
        s->close(s);
    }

    if (!r && WANT(T_RAND) && !(r = s->open(s, buf_cstring(&p2)))) {
        t = now();
        if (!(r = fill(s, perm)))
            rates[T_RAND] = nrecs / (now() - t);
        s->close(s);
    }
done:
    if (r)
        fprintf(stderr, "dbbench: %s: %s\n", s->name, error_message(r));
    buf_free(&p1);
    buf_free(&p2);
}

static void print_table(struct store *stores, int n, double rates[][T_COUNT])
{
    int i, t, ts = -1, sq = -1, lm = -1;

    for (i = 0; i < n; i++) {
        if (!strcmp(stores[i].name, "twoskip"))
            ts = i;
        else if (!strcmp(stores[i].name, "sql"))
            sq = i;
        else if (!strcmp(stores[i].name, "lmdb"))
            lm = i;
    }
    printf("\n%-16s", "ops/sec");
    for (i = 0; i < n; i++)
        printf(" %14s", !strcmp(stores[i].name, "sql") ? "sql(sqlite)"
                                                        : stores[i].name);
    printf(" %14s %14s\n", "twoskip/sqlite", "twoskip/lmdb");
    for (t = 0; t < T_COUNT; t++) {
        printf("%-16s", test_names[t]);
        for (i = 0; i < n; i++)
            printf(" %14.0f", rates[i][t]);
        if (ts >= 0 && sq >= 0 && rates[sq][t] > 0)
            printf(" %14.2f", rates[ts][t] / rates[sq][t]);
        else
            printf(" %14s", "-");
        if (ts >= 0 && lm >= 0 && rates[lm][t] > 0)
            printf(" %14.2f", rates[ts][t] / rates[lm][t]);
        else
            printf(" %14s", "-");
        printf("\n");
    }
    if (ts >= 0)
        printf("\ntwoskip reads without the lock: %lu, with it after a"
               " try: %lu; lookup indexes built: %lu\n",
               twoskip_lf_stats.hits, twoskip_lf_stats.fallbacks,
               twoskip_lf_stats.index_builds);
    printf("\ntargets: twoskip durable commits >= sqlite: %s;"
           " twoskip random fetch within 2x of lmdb: %s\n",
           ts < 0 || sq < 0 ? "n/a"
           : rates[ts][T_COMMIT] >= rates[sq][T_COMMIT] ? "met" : "MISSED",
           ts < 0 || lm < 0 ? "n/a"
           : rates[ts][T_FETCH] * 2 >= rates[lm][T_FETCH] ? "met"
                                                          : "MISSED");
}

/* A configuration for the cyrusdb backends: sql on SQLite. */
static void setup_config(const char *dir)
{
    struct buf path = BUF_INITIALIZER, text = BUF_INITIALIZER;
    const char *err = NULL;
    FILE *f;

    buf_printf(&path, "%s/imapd.conf", dir);
    buf_printf(&text, "configdirectory: %s\nsql_engine: sqlite\n", dir);
    f = fopen(buf_cstring(&path), "w");
    if (!f || fputs(buf_cstring(&text), f) == EOF || fclose(f) == EOF) {
        fprintf(stderr, "dbbench: cannot write %s\n", buf_cstring(&path));
        exit(1);
    }
    if (config_read(buf_cstring(&path), NULL, &err)) {
        fprintf(stderr, "dbbench: config: %s\n", err ? err : "?");
        exit(1);
    }
    buf_free(&path);
    buf_free(&text);
}

/* -t: a comma-separated list of test_keys. */
static int parse_tests(const char *list)
{
    char *copy = xstrdup(list), *name, *save = NULL;
    int t, ok = 1;

    want_tests = 0;
    for (name = strtok_r(copy, ",", &save); name;
         name = strtok_r(NULL, ",", &save)) {
        for (t = 0; t < T_COUNT && strcmp(name, test_keys[t]); t++)
            ;
        if (t == T_COUNT)
            ok = 0;
        else
            want_tests |= 1u << t;
    }
    free(copy);
    return ok && want_tests;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: dbbench [-n records] [-c commits] [-d dir]"
            " [-b backend,...] [-t test,...] [-i]\n"
            "  -n  records to insert (default 1000000)\n"
            "  -c  durable single-key commits (default 2000)\n"
            "  -d  directory for the files (must exist; default: a new"
            " one under /tmp, removed afterwards)\n"
            "  -b  backends among twoskip, sql, lmdb (default all"
            " three)\n"
            "  -t  tests among seq, rand, fetch, scan, commit (default"
            " all)\n"
            "  -i  interleave the durable commits of all backends (fair"
            " on a shared disk)\n");
}

static int add_store(struct store *s, const char *name)
{
    memset(s, 0, sizeof(*s));
    s->name = name;
    if (!strcmp(name, "lmdb")) {
#ifdef HAVE_LMDB
        s->open = lm_open;
        s->begin = lm_begin;
        s->put = lm_put;
        s->commit = lm_commit;
        s->get = lm_get;
        s->scan = lm_scan;
        s->close = lm_close;
        return 1;
#else
        printf("note: built without LMDB, skipping it\n");
        return 0;
#endif
    }
    if (!cyrusdb_backend_exists(name)) {
        printf("note: backend %s is not built in, skipping it\n", name);
        return 0;
    }
    s->open = cdb_open;
    s->begin = cdb_begin;
    s->put = cdb_put;
    s->commit = cdb_commit;
    s->get = cdb_get;
    s->scan = cdb_scan;
    s->close = cdb_close;
    return 1;
}

static int remove_cb(const char *path, const struct stat *st, int flag,
                     struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) < 0 ? -1 : 0;
}

static unsigned long *make_permutation(void)
{
    unsigned long *perm = xreallocarray(NULL, nrecs, sizeof(*perm));
    unsigned long i, j, tmp;

    for (i = 0; i < nrecs; i++)
        perm[i] = i;
    for (i = nrecs - 1; i > 0; i--) {
        j = rng() % (i + 1);
        tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
    return perm;
}

int main(int argc, char **argv)
{
    struct store stores[MAX_BACKENDS];
    double rates[MAX_BACKENDS][T_COUNT];
    char tmpl[] = "/tmp/dbbench.XXXXXX";
    const char *dir = NULL, *list = "twoskip,sql,lmdb";
    int is_tmpdir = 0;
    char *names, *name, *save = NULL;
    unsigned long *perm;
    int opt, n = 0, i;

    if (argc > 1 && !strcmp(argv[1], "--help")) {
        usage(stdout);
        return 0;
    }
    while ((opt = getopt(argc, argv, "n:c:d:b:t:ih")) != -1) {
        switch (opt) {
        case 'n': nrecs = strtoul(optarg, NULL, 10); break;
        case 'c': ncommits = strtoul(optarg, NULL, 10); break;
        case 'd': dir = optarg; break;
        case 'b': list = optarg; break;
        case 't':
            if (!parse_tests(optarg)) {
                usage(stderr);
                return 64;
            }
            break;
        case 'i': is_interleaved = 1; break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 64;
        }
    }
    if (nrecs < 100 || nrecs > 100000000 || !ncommits) {
        fprintf(stderr, "dbbench: -n must be 100..100000000, -c > 0\n");
        return 64;
    }
    if (!dir) {
        dir = mkdtemp(tmpl);
        if (!dir) {
            perror("dbbench: mkdtemp");
            return 1;
        }
        is_tmpdir = 1;
    }
    memset(value, 'v', sizeof(value));
    setup_config(dir);
    log_open(NULL, "dbbench", 0, 0);
    cyrusdb_init();

    names = xstrdup(list);
    for (name = strtok_r(names, ",", &save); name && n < MAX_BACKENDS;
         name = strtok_r(NULL, ",", &save))
        n += add_store(&stores[n], name);
    perm = make_permutation();

    printf("dbbench: %lu records, %lu durable commits, files in %s\n",
           nrecs, ncommits, dir);
    for (i = 0; i < n; i++) {
        printf("running %s...\n", stores[i].name);
        fflush(stdout);
        bench_store(&stores[i], dir, perm, rates[i]);
    }
    if (is_interleaved && WANT(T_COMMIT)) {
        printf("durable commits, interleaved...\n");
        fflush(stdout);
        interleaved_commits(stores, n, dir, rates);
    }
    print_table(stores, n, rates);

    free(perm);
    cyrusdb_done();
    if (is_tmpdir && nftw(dir, remove_cb, 16, FTW_DEPTH | FTW_PHYS) < 0)
        fprintf(stderr, "dbbench: could not remove %s\n", dir);
    /* The names in stores[] point into `names`. */
    free(names);
    return 0;
}

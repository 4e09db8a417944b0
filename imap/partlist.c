/* Partitions and picking one for a new mailbox by free space; the same
 * selection serves murder frontends picking a backend server. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/strarray.h"
#include "lib/util.h"
#include "lib/xmalloc.h"

#include "imap/partlist.h"

/* The process-wide list of local partitions. */
static struct partlist *local_list;

int partlist_statvfs(const char *name, const char *path, void *rock,
                     uint64_t *total_r, uint64_t *avail_r)
{
    struct statvfs st;

    (void)name;
    (void)rock;
    if (!path)
        return ERR_INVALID;
    if (statvfs(path, &st) < 0) {
        xsyslog_syscall("statvfs", "path", path);
        return ERR_IO;
    }
    *total_r = (uint64_t)st.f_blocks * st.f_frsize;
    *avail_r = (uint64_t)st.f_bavail * st.f_frsize;
    return 0;
}

int partlist_stat_device(const char *name, const char *path, void *rock,
                         uint64_t *dev_r)
{
    struct stat sb;

    (void)name;
    (void)rock;
    if (!path)
        return ERR_INVALID;
    if (stat(path, &sb) < 0) {
        xsyslog_syscall("stat", "path", path);
        return ERR_IO;
    }
    *dev_r = (uint64_t)sb.st_dev;
    return 0;
}

void partlist_set_device_fn(struct partlist *pl, partlist_device_fn *fn,
                            void *rock)
{
    pl->device_fn = fn;
    pl->device_rock = rock;
    pl->is_measured = 0;
}

/* splitmix64: small, fast, and good enough to spread mailboxes. */
static uint64_t next_random(struct partlist *pl)
{
    uint64_t z = (pl->rng += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A uniform double in [0, 1). */
static double next_unit(struct partlist *pl)
{
    return (double)(next_random(pl) >> 11) * (1.0 / 9007199254740992.0);
}

void partlist_seed(struct partlist *pl, uint64_t seed)
{
    pl->rng = seed;
}

struct partlist *partlist_new(enum partlist_mode mode, int soft_limit,
                              int reinit, partlist_usage_fn *usage_fn,
                              void *usage_rock)
{
    struct partlist *pl = xzmalloc(sizeof(*pl));
    uint64_t seed;

    pl->mode = mode;
    pl->soft_limit = soft_limit > 0 ? soft_limit : 0;
    pl->reinit = reinit > 0 ? reinit : 0;
    pl->usage_fn = usage_fn ? usage_fn : partlist_statvfs;
    pl->usage_rock = usage_rock;
    if (!usage_fn)
        pl->device_fn = partlist_stat_device;
    if (util_random_bytes(&seed, sizeof(seed)))
        seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    partlist_seed(pl, seed);
    return pl;
}

/* An int option as a small non-negative int. */
static int config_small_int(enum imapopt opt)
{
    int64_t v = config_getint(opt);

    return v < 0 ? 0 : v > 1000000000 ? 1000000000 : (int)v;
}

struct partlist *partlist_new_from_config(enum imapopt mode_opt,
                                          enum imapopt soft_limit_opt,
                                          enum imapopt reinit_opt,
                                          partlist_usage_fn *usage_fn,
                                          void *usage_rock)
{
    return partlist_new((enum partlist_mode)config_getenum(mode_opt),
                        config_small_int(soft_limit_opt),
                        config_small_int(reinit_opt), usage_fn, usage_rock);
}

void partlist_add(struct partlist *pl, const char *name, const char *path,
                  int is_excluded)
{
    struct partlist_item *it;

    if (pl->count == pl->alloc) {
        pl->alloc = pl->alloc ? 2 * pl->alloc : 8;
        pl->items = xrealloc(pl->items,
                             (size_t)pl->alloc * sizeof(*pl->items));
    }
    it = &pl->items[pl->count++];
    memset(it, 0, sizeof(*it));
    it->name = xstrdup(name);
    it->path = path ? xstrdup(path) : NULL;
    it->is_excluded = is_excluded ? 1 : 0;
}

void partlist_free(struct partlist **plp)
{
    struct partlist *pl;
    int i;

    if (!plp || !*plp)
        return;
    pl = *plp;
    *plp = NULL;
    for (i = 0; i < pl->count; i++) {
        free(pl->items[i].name);
        free(pl->items[i].path);
    }
    free(pl->items);
    free(pl);
}

void partlist_measure(struct partlist *pl)
{
    struct partlist_item *it;
    int i, r;

    for (i = 0; i < pl->count; i++) {
        it = &pl->items[i];
        it->total = it->avail = 0;
        r = pl->usage_fn(it->name, it->path, pl->usage_rock, &it->total,
                         &it->avail);
        it->has_usage = !r && it->total > 0;
        if (it->avail > it->total)
            it->avail = it->total;
        if (!it->has_usage)
            xsyslog(LOG_WARNING, "partition usage unavailable",
                    "partition=%s error=%s", log_escape(it->name, 0),
                    r ? error_message(r) : "zero size");
        it->dev = 0;
        it->has_dev = pl->device_fn
                      && !pl->device_fn(it->name, it->path, pl->device_rock,
                                        &it->dev);
    }
    pl->is_measured = 1;
    pl->since_measure = 0;
}

/* Percentage of `it` that is free. */
static double percent_free(const struct partlist_item *it)
{
    return 100.0 * (double)it->avail / (double)it->total;
}

/* Fill `cand` with the indexes of the candidates; returns how many. */
static int find_candidates(const struct partlist *pl, int need_usage,
                           int *cand)
{
    int i, n = 0, under = 0;

    for (i = 0; i < pl->count; i++) {
        if (pl->items[i].is_excluded
            || (need_usage && !pl->items[i].has_usage))
            continue;
        cand[n++] = i;
    }
    if (!need_usage || !pl->soft_limit || !n)
        return n;

    /* Keep those under the soft limit, when there are any. */
    for (i = 0; i < n; i++) {
        if (100.0 - percent_free(&pl->items[cand[i]]) <= pl->soft_limit)
            under++;
    }
    if (!under)
        return n;
    for (i = 0, under = 0; i < n; i++) {
        if (100.0 - percent_free(&pl->items[cand[i]]) <= pl->soft_limit)
            cand[under++] = cand[i];
    }
    return under;
}

/* Keep only the first candidate of each device; returns the new count. */
static int one_per_device(const struct partlist *pl, int *cand, int n)
{
    int i, j, kept = 0;

    for (i = 0; i < n; i++) {
        const struct partlist_item *it = &pl->items[cand[i]];
        int is_dup = 0;

        for (j = 0; it->has_dev && !is_dup && j < kept; j++) {
            const struct partlist_item *o = &pl->items[cand[j]];

            is_dup = o->has_dev && o->dev == it->dev;
        }
        if (!is_dup)
            cand[kept++] = cand[i];
    }
    return kept;
}

/* The candidate with the largest `key` (first one on ties). */
static int pick_most(const struct partlist *pl, const int *cand, int n,
                     int by_percent)
{
    double best = -1.0, key;
    int i, pick = cand[0];

    for (i = 0; i < n; i++) {
        const struct partlist_item *it = &pl->items[cand[i]];

        key = by_percent ? percent_free(it) : (double)it->avail;
        if (key > best) {
            best = key;
            pick = cand[i];
        }
    }
    return pick;
}

/* A candidate drawn with probability proportional to its percentage
 * free; with `delta`, the percentage less the smallest one plus 0.5
 * (free 40/60/30/70% weigh 10.5/30.5/0.5/40.5); uniform when all weights
 * are zero. */
static int pick_weighted(struct partlist *pl, const int *cand, int n,
                         int delta)
{
    double minpct = 100.0, sum = 0.0, x;
    double *w = xmalloc((size_t)n * sizeof(*w));
    int i, pick = cand[n - 1];

    for (i = 0; i < n; i++) {
        w[i] = percent_free(&pl->items[cand[i]]);
        if (w[i] < minpct)
            minpct = w[i];
    }
    for (i = 0; i < n; i++) {
        if (delta)
            w[i] += 0.5 - minpct;   /* the fullest keeps a small chance */
        sum += w[i];
    }
    if (sum <= 0.0) {
        pick = cand[next_random(pl) % (uint64_t)n];
        goto done;
    }
    x = next_unit(pl) * sum;
    for (i = 0; i < n; i++) {
        if (x < w[i]) {
            pick = cand[i];
            break;
        }
        x -= w[i];
    }

done:
    free(w);
    return pick;
}

int partlist_select(struct partlist *pl, const char **name_r)
{
    int need_usage = pl->mode != PARTLIST_MODE_RANDOM || pl->soft_limit;
    enum partlist_mode mode = pl->mode;
    int *cand = NULL;
    int n, pick;
    int r = 0;

    *name_r = NULL;
    if (!pl->count)
        return ERR_NOTFOUND;
    if (need_usage && (!pl->is_measured
                       || (pl->reinit && pl->since_measure >= pl->reinit)))
        partlist_measure(pl);

    cand = xmalloc((size_t)pl->count * sizeof(*cand));
    n = find_candidates(pl, need_usage, cand);
    if (!n && need_usage) {
        /* Nothing could be measured: better any partition than none. */
        n = find_candidates(pl, 0, cand);
        mode = PARTLIST_MODE_RANDOM;
    }
    if (!n) {
        r = ERR_NOTFOUND;
        goto done;
    }

    if (mode == PARTLIST_MODE_FREESPACE_MOST
        || mode == PARTLIST_MODE_FREESPACE_PERCENT_MOST)
        n = one_per_device(pl, cand, n);

    switch (mode) {
    case PARTLIST_MODE_FREESPACE_MOST:
        pick = pick_most(pl, cand, n, 0);
        break;
    case PARTLIST_MODE_FREESPACE_PERCENT_MOST:
        pick = pick_most(pl, cand, n, 1);
        break;
    case PARTLIST_MODE_FREESPACE_PERCENT_WEIGHTED:
        pick = pick_weighted(pl, cand, n, 0);
        break;
    case PARTLIST_MODE_FREESPACE_PERCENT_WEIGHTED_DELTA:
        pick = pick_weighted(pl, cand, n, 1);
        break;
    case PARTLIST_MODE_RANDOM:
    default:
        pick = cand[next_random(pl) % (uint64_t)n];
        break;
    }
    *name_r = pl->items[pick].name;
    pl->since_measure++;

done:
    free(cand);
    return r;
}

/* ---- local partitions ---- */

struct local_rock {
    struct partlist *pl;
    strarray_t *exclude;
};

static void add_partition(const char *key, const char *value, void *rock)
{
    struct local_rock *lr = rock;

    if (!*key || !value || !*value)
        return;
    partlist_add(lr->pl, key, value, strarray_find(lr->exclude, key, 0) >= 0);
}

int partlist_local_new(partlist_usage_fn *usage_fn, void *usage_rock,
                       struct partlist **pl_r)
{
    struct local_rock lr;

    lr.pl = partlist_new_from_config(IMAPOPT_PARTITION_SELECT_MODE,
                                     IMAPOPT_PARTITION_SELECT_SOFT_USAGE_LIMIT,
                                     IMAPOPT_PARTITION_SELECT_USAGE_REINIT,
                                     usage_fn, usage_rock);
    lr.exclude = config_getstrarray(IMAPOPT_PARTITION_SELECT_EXCLUDE);
    config_foreach_prefix("partition-", add_partition, &lr);
    strarray_free(&lr.exclude);

    *pl_r = NULL;
    if (!lr.pl->count) {
        partlist_free(&lr.pl);
        return ERR_PARTITION_UNKNOWN;
    }
    *pl_r = lr.pl;
    return 0;
}

int partlist_local_init(partlist_usage_fn *usage_fn, void *usage_rock)
{
    partlist_local_done();
    return partlist_local_new(usage_fn, usage_rock, &local_list);
}

int partlist_local_select(const char **name_r)
{
    int r;

    *name_r = NULL;
    if (!local_list) {
        r = partlist_local_init(NULL, NULL);
        if (r)
            return r;
    }
    return partlist_select(local_list, name_r);
}

int partlist_choose_partition(const char **name_r)
{
    const char *def;

    *name_r = NULL;
    if (config_isset(IMAPOPT_DEFAULTPARTITION)) {
        def = config_getstring(IMAPOPT_DEFAULTPARTITION);
        if (!def || !config_partitiondir(def))
            return ERR_PARTITION_UNKNOWN;
        *name_r = def;
        return 0;
    }
    return partlist_local_select(name_r);
}

void partlist_local_done(void)
{
    partlist_free(&local_list);
}

/* Partitions and picking one for a new mailbox by free space; the same
 * selection serves murder frontends picking a backend server. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_IMAP_PARTLIST_H
#define COLUMBA_IMAP_PARTLIST_H

#include <stdint.h>

#include "lib/imapopts.h"

/*
 * A partlist is a list of items (a partition and its root directory, or
 * a backend server) with their size and free space, and a selection
 * mode (partition_select_mode / serverlist_select_mode):
 *
 *   random                    uniform among the candidates
 *   freespace-most            most free bytes
 *   freespace-percent-most    highest percentage free
 *   freespace-percent-weighted
 *                             random, weighted by percentage free
 *   freespace-percent-weighted-delta
 *                             random, weighted by percentage free minus
 *                             the lowest percentage free among the
 *                             candidates (the fullest is not picked unless
 *                             all are equally full: then uniform)
 *
 * In the two "most" modes, items on one device (file system) count
 * once: of the candidates sharing a device id, only the first in list
 * order is considered, as if the others were not configured.  Device
 * ids come from the list's device function (stat()'s st_dev with the
 * default usage function; none, so no grouping, with a custom usage
 * function unless partlist_set_device_fn() gives one).
 *
 * Candidates are the items not excluded whose usage could be measured
 * (usage is not needed for random without a soft limit); when no item
 * can be measured, any item not excluded is picked at random.  With a soft
 * usage limit, candidates more than that percent full are dropped unless
 * that would drop all of them.  Usage is measured on the first selection
 * and again after every `reinit` selections (0: measured once).
 */

/* The modes, in the order of the option's choices (config_getenum()). */
enum partlist_mode {
    PARTLIST_MODE_RANDOM = 0,
    PARTLIST_MODE_FREESPACE_MOST,
    PARTLIST_MODE_FREESPACE_PERCENT_MOST,
    PARTLIST_MODE_FREESPACE_PERCENT_WEIGHTED,
    PARTLIST_MODE_FREESPACE_PERCENT_WEIGHTED_DELTA
};

/* Measure item `name` (whose value, e.g. a partition root, is `path`;
 * may be NULL): set *total_r and *avail_r in bytes.  Returns 0 or an
 * error code (the item is then skipped). */
typedef int partlist_usage_fn(const char *name, const char *path,
                              void *rock, uint64_t *total_r,
                              uint64_t *avail_r);

/* The device id of item `name` (at `path`, may be NULL) into *dev_r:
 * items with equal ids share their free space.  Returns 0 or an error
 * code (the item then has no device id and is never grouped). */
typedef int partlist_device_fn(const char *name, const char *path,
                               void *rock, uint64_t *dev_r);

/* One item. */
struct partlist_item {
    char *name;
    char *path;
    uint64_t total;
    uint64_t avail;
    int is_excluded;
    int has_usage;      /* the last measurement succeeded */
    uint64_t dev;       /* device id, when has_dev */
    int has_dev;
};

struct partlist {
    enum partlist_mode mode;
    int soft_limit;            /* percent used, 0 for none */
    int reinit;                /* selections between measurements */
    partlist_usage_fn *usage_fn;
    void *usage_rock;
    struct partlist_item *items;
    int count;
    int alloc;
    int is_measured;
    int since_measure;
    uint64_t rng;              /* state of the pseudo-random generator */
    partlist_device_fn *device_fn;     /* NULL: no grouping by device */
    void *device_rock;
};

/* The default usage function: statvfs() on `path` (total blocks and
 * blocks available to unprivileged users).  ERR_INVALID for a NULL path,
 * ERR_IO (logged) when statvfs fails. */
int partlist_statvfs(const char *name, const char *path, void *rock,
                     uint64_t *total_r, uint64_t *avail_r);

/* The default device function: stat()'s st_dev of `path`.
 * ERR_INVALID for a NULL path, ERR_IO when stat fails. */
int partlist_stat_device(const char *name, const char *path, void *rock,
                         uint64_t *dev_r);

/* Set (NULL: remove) the device function of `pl`; items are measured
 * again at the next selection. */
void partlist_set_device_fn(struct partlist *pl, partlist_device_fn *fn,
                            void *rock);

/* A new empty list.  `usage_fn` NULL means partlist_statvfs.  Negative
 * limits count as 0.  The generator is seeded from the kernel's random
 * source.  Free with partlist_free(). */
struct partlist *partlist_new(enum partlist_mode mode, int soft_limit,
                              int reinit, partlist_usage_fn *usage_fn,
                              void *usage_rock);

/* A new list with mode, soft limit and reinit count read from the given
 * options (e.g. IMAPOPT_SERVERLIST_SELECT_MODE, ..._SOFT_USAGE_LIMIT,
 * ..._USAGE_REINIT). */
struct partlist *partlist_new_from_config(enum imapopt mode_opt,
                                          enum imapopt soft_limit_opt,
                                          enum imapopt reinit_opt,
                                          partlist_usage_fn *usage_fn,
                                          void *usage_rock);

/* Add an item (strings are copied; `path` may be NULL). */
void partlist_add(struct partlist *pl, const char *name, const char *path,
                  int is_excluded);

/* Restart the generator from `seed` (tests, reproducible runs). */
void partlist_seed(struct partlist *pl, uint64_t seed);

/* Measure every item now. */
void partlist_measure(struct partlist *pl);

/* Pick an item as described above.  Sets *name_r to its name (owned by
 * the list).  Returns 0, or ERR_NOTFOUND when there is no candidate. */
int partlist_select(struct partlist *pl, const char **name_r);

/* Free and clear *plp; NULL is accepted. */
void partlist_free(struct partlist **plp);

/* The local partitions: every partition-<name> option, with
 * partition_select_exclude, _mode, _soft_usage_limit and _usage_reinit.
 * Returns 0 and a new list, or ERR_PARTITION_UNKNOWN when no partition
 * is configured. */
int partlist_local_new(partlist_usage_fn *usage_fn, void *usage_rock,
                       struct partlist **pl_r);

/* (Re)build the process-wide list of local partitions used by
 * partlist_local_select() with the given usage function (NULL:
 * statvfs).  Returns as partlist_local_new(). */
int partlist_local_init(partlist_usage_fn *usage_fn, void *usage_rock);

/* Pick a local partition for a new top-level mailbox from the
 * process-wide list (built on first use).  The name lives until
 * partlist_local_done().  Returns 0, ERR_PARTITION_UNKNOWN or
 * ERR_NOTFOUND. */
int partlist_local_select(const char **name_r);

/* The partition for a new mailbox without a parent: defaultpartition
 * when the administrator set it (it must be a configured partition),
 * otherwise partlist_local_select().  Returns 0 or
 * ERR_PARTITION_UNKNOWN / ERR_NOTFOUND. */
int partlist_choose_partition(const char **name_r);

/* Free the process-wide list (after a configuration change, at exit). */
void partlist_local_done(void);

#endif /* COLUMBA_IMAP_PARTLIST_H */

/* Dropping root privileges to the configured cyrus user, shared by the
 * master (in each forked child before exec) and the service loop. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_MASTER_PRIVS_H
#define COLUMBA_MASTER_PRIVS_H

#include <sys/types.h>

struct buf;

/* Whom to become: resolved once, in the parent, so that children never
 * consult the user database after fork(). */
struct privs {
    uid_t uid;
    gid_t gid;
    char *user;
};

/* Resolve `user` and `group` (group NULL: the user's primary group).
 * Fills *p (release with privs_fini()).  Returns 0, or ERR_NOTFOUND /
 * ERR_INVALID with the reason in `why`.  Refuses uid 0. */
int privs_lookup(const char *user, const char *group, struct privs *p,
                 struct buf *why);

/* Release what privs_lookup() filled in. */
void privs_fini(struct privs *p);

/* Become p: setgroups() to the one group, setgid(), setuid(), in that
 * order, each checked, then verify that root cannot be regained.
 * Returns 0 or ERR_PERMISSION with the failed call in `why`. */
int privs_drop(const struct privs *p, struct buf *why);

#endif /* COLUMBA_MASTER_PRIVS_H */

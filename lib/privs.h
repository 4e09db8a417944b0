/* Dropping root privileges to the configured cyrus user: the master (in
 * each forked child before exec), the service loop and the admin tools. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_LIB_PRIVS_H
#define COLUMBA_LIB_PRIVS_H

#include <sys/types.h>

struct buf;

/* Whom to become: resolved once, in the parent, so that children never
 * consult the user database after fork(). */
struct privs {
    uid_t uid;
    gid_t gid;
    char *user;
    gid_t *groups;              /* supplementary groups, gid first */
    int ngroups;
};

/* Resolve `user` and `group` (group NULL: the user's primary group),
 * and the groups the user is a member of in the group database (as
 * initgroups() would; so `adduser cyrus sasl` lets the daemons read a
 * sasldb of group sasl), less group 0.
 * Fills *p (release with privs_fini()).  Returns 0, or ERR_NOTFOUND /
 * ERR_INVALID with the reason in `why`.  Refuses uid 0. */
int privs_lookup(const char *user, const char *group, struct privs *p,
                 struct buf *why);

/* Release what privs_lookup() filled in. */
void privs_fini(struct privs *p);

/* Become p: setgroups() to p's groups, setgid(), setuid(), in that
 * order, each checked, then verify that root cannot be regained.
 * Returns 0 or ERR_PERMISSION with the failed call in `why`. */
int privs_drop(const struct privs *p, struct buf *why);

/* For admin tools run by hand: when running as root, become the
 * configured cyrus_user (and cyrus_group) so that the files they create
 * stay readable by the daemons; otherwise do nothing.  Call after
 * config_read().  Returns 0, or an error with the reason in `why`. */
int privs_become_cyrus(struct buf *why);

#endif /* COLUMBA_LIB_PRIVS_H */

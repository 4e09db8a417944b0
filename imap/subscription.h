/* Subscriptions: the mailboxes a user has subscribed to, kept in a
 * per-user database ({configdirectory}/user/<h>/<user>.sub). */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_IMAP_SUBSCRIPTION_H
#define COLUMBA_IMAP_SUBSCRIPTION_H

/* Every function takes the user id and the internal mailbox name
 * ("user.alice.Sent"); names are 1..USERDB_MBOXNAME_MAX bytes without
 * control bytes, else ERR_INVALID.  The database is opened and closed
 * by each call: subscriptions change rarely and are read once per LSUB
 * or LIST, and a short open never holds a lock across a client's
 * command. */

/* Subscribe `userid` to `mboxname` (creating the database if needed).
 * Subscribing twice is success. */
int subscription_add(const char *userid, const char *mboxname);

/* Unsubscribe.  Returns 0, or ERR_NOTFOUND when not subscribed (IMAP
 * UNSUBSCRIBE answers NO then). */
int subscription_remove(const char *userid, const char *mboxname);

/* Is `userid` subscribed to `mboxname`?  Sets *is_r (0 when the user
 * has no database).  Returns 0 or an error. */
int subscription_is_subscribed(const char *userid, const char *mboxname,
                               int *is_r);

/* Called with each subscribed name; a non-zero return stops the walk and
 * is returned by subscription_foreach. */
typedef int subscription_cb(const char *mboxname, void *rock);

/* Call `cb` for each subscription of `userid` whose name starts with
 * `prefix` (NULL or "" for all), in mailbox-name order: a mailbox's
 * children follow it ("user.alice", "user.alice.Sent", "user.alice-x").
 * A user without a database has no subscriptions (success). */
int subscription_foreach(const char *userid, const char *prefix,
                         subscription_cb *cb, void *rock);

/* Copy `olduser`'s subscriptions to a new database for `newuser`
 * (user rename), renaming the old user's own mailboxes on the way:
 * "user.old" and "user.old.X" become "user.new" and "user.new.X";
 * other names are copied as they are.  The old database is left for
 * subscription_delete_user().  A missing old database is success; an
 * existing new one is ERR_EXISTS. */
int subscription_rename_user(const char *olduser, const char *newuser);

/* Remove `userid`'s subscription database.  Missing is success. */
int subscription_delete_user(const char *userid);

#endif /* COLUMBA_IMAP_SUBSCRIPTION_H */

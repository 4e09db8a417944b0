/* File change notification for idling sessions: watch a few files
 * (a mailbox's cyrus.index) and get one descriptor that turns readable
 * when any of them changes.  Linux inotify; elsewhere mboxwatch_new()
 * fails and callers keep their slow poll. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_IMAP_MBOXWATCH_H
#define COLUMBA_IMAP_MBOXWATCH_H

/*
 * A file is watched through its directory, filtered by the file's name:
 * the mailbox layer replaces cyrus.index by rename() at a repack, and a
 * watch on the old inode would go silent.  Writes with write()/pwrite()
 * (IN_MODIFY), a rename onto the name (IN_MOVED_TO), creation, deletion
 * and attribute changes all count as a change.  Writes through a shared
 * mmap are not seen by inotify; the mailbox layer does not write that
 * way.  Events on other names in the directory (message files) are
 * read and dropped by mboxwatch_drain().
 */

/* Most files one watcher follows. */
#define MBOXWATCH_MAX_FILES 16

struct mboxwatch;

/* A new watcher with nothing watched, in *w_r (free with
 * mboxwatch_free()).  Returns 0, or ERR_UNSUPPORTED where file
 * notification is not available, or ERR_IO (logged) when inotify
 * cannot be set up (out of instances); *w_r is then NULL. */
int mboxwatch_new(struct mboxwatch **w_r);

/* Watch the file `path` (it need not exist yet; its directory must).
 * Returns 0, ERR_TOOBIG past MBOXWATCH_MAX_FILES, ERR_INVALID for a
 * path without a file name, or ERR_IO (logged) when the directory
 * cannot be watched. */
int mboxwatch_add(struct mboxwatch *w, const char *path);

/* The descriptor to poll for reading; -1 for NULL. */
int mboxwatch_fd(const struct mboxwatch *w);

/* Read every pending event without blocking.  Returns 1 when at least
 * one concerned a watched file (or the queue overflowed, or a watched
 * directory went away), else 0. */
int mboxwatch_drain(struct mboxwatch *w);

/* Stop watching and free; *wp becomes NULL.  NULL accepted. */
void mboxwatch_free(struct mboxwatch **wp);

#endif /* COLUMBA_IMAP_MBOXWATCH_H */

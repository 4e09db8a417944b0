/* File change notification for idling sessions, on Linux inotify (see
 * mboxwatch.h for what counts as a change). */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/inotify.h>
#endif

#include "lib/error.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#include "imap/mboxwatch.h"

/* One watched file: the directory watch it hangs on and its name. */
struct watched {
    int wd;
    char *name;
};

struct mboxwatch {
    int fd;
    struct watched files[MBOXWATCH_MAX_FILES];
    size_t nfiles;
};

#ifdef __linux__

/* What happens to a file that changes it for a reader of its name.
 * Not IN_CLOSE_WRITE: a reader that opens the index read-write and
 * closes it again (our own sync, another session's STATUS) would wake
 * every idler without a change. */
#define MBOXWATCH_MASK (IN_MODIFY | IN_ATTRIB | IN_MOVED_TO | IN_MOVED_FROM \
                        | IN_CREATE | IN_DELETE | IN_DELETE_SELF \
                        | IN_MOVE_SELF)

int mboxwatch_new(struct mboxwatch **w_r)
{
    struct mboxwatch *w;
    int fd;

    *w_r = NULL;
    fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) {
        xsyslog(LOG_WARNING, "inotify_init1 failed", "error=%s",
                strerror(errno));
        return ERR_IO;
    }
    w = xzmalloc(sizeof(*w));
    w->fd = fd;
    *w_r = w;
    return 0;
}

int mboxwatch_add(struct mboxwatch *w, const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    int wd;

    if (w->nfiles >= MBOXWATCH_MAX_FILES)
        return ERR_TOOBIG;
    if (!*path || (slash && !slash[1]))
        return ERR_INVALID;
    dir = slash ? (slash == path ? xstrdup("/")
                                 : xstrndup(path, (size_t)(slash - path)))
                : xstrdup(".");

    /* The same directory twice gives the same descriptor; IN_MASK_ADD
     * keeps the mask of the first. */
    wd = inotify_add_watch(w->fd, dir, MBOXWATCH_MASK | IN_ONLYDIR
                                       | IN_MASK_ADD);
    if (wd < 0) {
        xsyslog_syscall("inotify_add_watch", "path", dir);
        free(dir);
        return ERR_IO;
    }
    free(dir);
    w->files[w->nfiles].wd = wd;
    w->files[w->nfiles++].name = xstrdup(slash ? slash + 1 : path);
    return 0;
}

/* Does event `ev` concern a watched file? */
static int is_relevant(const struct mboxwatch *w,
                       const struct inotify_event *ev)
{
    size_t i;

    if (ev->mask & (IN_Q_OVERFLOW | IN_IGNORED | IN_DELETE_SELF
                    | IN_MOVE_SELF | IN_UNMOUNT))
        return 1;
    if (!ev->len)
        return 0;
    for (i = 0; i < w->nfiles; i++) {
        if (w->files[i].wd == ev->wd
            && !strncmp(ev->name, w->files[i].name, ev->len))
            return 1;
    }
    return 0;
}

int mboxwatch_drain(struct mboxwatch *w)
{
    /* Aligned as the kernel's records require. */
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    int changed = 0;

    if (!w)
        return 0;
    for (;;) {
        ssize_t n = read(w->fd, buf, sizeof(buf));
        size_t off = 0;

        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            break;
        }
        while (off + sizeof(struct inotify_event) <= (size_t)n) {
            const struct inotify_event *ev = (const void *)(buf + off);

            changed |= is_relevant(w, ev);
            off += sizeof(struct inotify_event) + ev->len;
        }
    }
    return changed;
}

#else /* !__linux__ */

int mboxwatch_new(struct mboxwatch **w_r)
{
    *w_r = NULL;
    return ERR_UNSUPPORTED;
}

int mboxwatch_add(struct mboxwatch *w, const char *path)
{
    (void)w;
    (void)path;
    return ERR_UNSUPPORTED;
}

int mboxwatch_drain(struct mboxwatch *w)
{
    (void)w;
    return 0;
}

#endif /* __linux__ */

int mboxwatch_fd(const struct mboxwatch *w)
{
    return w ? w->fd : -1;
}

void mboxwatch_free(struct mboxwatch **wp)
{
    struct mboxwatch *w = *wp;
    size_t i;

    if (!w)
        return;
    for (i = 0; i < w->nfiles; i++)
        free(w->files[i].name);
    close(w->fd);
    free(w);
    *wp = NULL;
}

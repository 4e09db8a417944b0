/* Dropping root privileges to the configured cyrus user: the master (in
 * each forked child before exec), the service loop and the admin tools. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/xmalloc.h"

#include "lib/privs.h"

/* Fill p->groups: p->gid first, then every group of the group database
 * that lists p->user (and its primary group `pw_gid`), never group 0. */
static void lookup_groups(struct privs *p, gid_t pw_gid)
{
    int n = 32, i, k;
    gid_t *all = NULL;

    for (;;) {
        int got = n;

        all = xreallocarray(all, (size_t)n, sizeof(*all));
        if (getgrouplist(p->user, pw_gid, all, &got) >= 0) {
            n = got;
            break;
        }
        if (got <= n || got > 65536) {  /* give up: the group alone */
            n = 0;
            break;
        }
        n = got;
    }
    p->groups = xmalloc((size_t)(n + 1) * sizeof(*p->groups));
    p->groups[0] = p->gid;
    k = 1;
    for (i = 0; i < n; i++) {
        if (all[i] != 0 && all[i] != p->gid)
            p->groups[k++] = all[i];
    }
    p->ngroups = k;
    free(all);
}

int privs_lookup(const char *user, const char *group, struct privs *p,
                 struct buf *why)
{
    struct passwd *pw;
    struct group *gr;

    memset(p, 0, sizeof(*p));
    buf_reset(why);
    if (!user || !*user) {
        buf_setcstr(why, "cyrus_user is not set");
        return ERR_INVALID;
    }
    errno = 0;
    pw = getpwnam(user);
    if (!pw) {
        buf_printf(why, "cyrus_user %s does not exist", user);
        return ERR_NOTFOUND;
    }
    if (pw->pw_uid == 0) {
        buf_printf(why, "cyrus_user %s is root", user);
        return ERR_INVALID;
    }
    p->uid = pw->pw_uid;
    p->gid = pw->pw_gid;
    if (group && *group) {
        gr = getgrnam(group);
        if (!gr) {
            buf_printf(why, "cyrus_group %s does not exist", group);
            return ERR_NOTFOUND;
        }
        p->gid = gr->gr_gid;
    }
    p->user = xstrdup(user);
    lookup_groups(p, pw->pw_gid);
    return 0;
}

void privs_fini(struct privs *p)
{
    if (!p)
        return;
    xfree(p->user);
    xfree(p->groups);
    p->ngroups = 0;
}

int privs_drop(const struct privs *p, struct buf *why)
{
    buf_reset(why);
    if (setgroups((size_t)(p->ngroups ? p->ngroups : 1),
                  p->ngroups ? p->groups : &p->gid) < 0) {
        buf_printf(why, "setgroups failed: %s", strerror(errno));
        return ERR_PERMISSION;
    }
    if (setgid(p->gid) < 0) {
        buf_printf(why, "setgid(%ld) failed: %s", (long)p->gid,
                   strerror(errno));
        return ERR_PERMISSION;
    }
    if (setuid(p->uid) < 0) {
        buf_printf(why, "setuid(%ld) failed: %s", (long)p->uid,
                   strerror(errno));
        return ERR_PERMISSION;
    }

    /* Trust nothing: the ids must be what we asked for, and root must be
     * out of reach for good. */
    if (getuid() != p->uid || geteuid() != p->uid ||
        getgid() != p->gid || getegid() != p->gid) {
        buf_setcstr(why, "ids differ from the requested ones after setuid");
        return ERR_PERMISSION;
    }
    if (setuid(0) == 0) {
        buf_setcstr(why, "setuid(0) succeeded after dropping privileges");
        return ERR_PERMISSION;
    }
    return 0;
}

int privs_become_cyrus(struct buf *why)
{
    struct privs p;
    int r;

    if (geteuid() != 0)
        return 0;
    r = privs_lookup(config_getstring(IMAPOPT_CYRUS_USER),
                     config_getstring(IMAPOPT_CYRUS_GROUP), &p, why);
    if (!r)
        r = privs_drop(&p, why);
    privs_fini(&p);
    return r;
}

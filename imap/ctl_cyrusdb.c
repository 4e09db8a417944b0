/* ctl_cyrusdb: recover (-r), checkpoint (-c) or check (-x) every system
 * database named by imapd.conf; run by the master at START and EVENTS. */
/* Columba is free software; see COPYING for the licence. */

/*
 * Usage: ctl_cyrusdb [-C imapd.conf] -r | -c | -x
 *
 * The system databases are the ones with a *_db option (backend) and a
 * *_db_path option (location, by default a fixed name under
 * configdirectory).  -r runs before any service: it removes temporary
 * files a crashed process left behind (<db>.NEW and <db>.tmp beside each
 * database, the per-process state files in proc_path), then opens every
 * existing database with its backend, which runs that backend's
 * recovery; mailboxes.db is created when missing.  -c repacks every
 * database; -x checks each one and exits 1 if any is damaged.  Every
 * step is logged; a failure is logged and the others still run.
 */

#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/cyrusdb.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/privs.h"

#define EX_USAGE_CODE 64

static const char *progname = "ctl_cyrusdb";

/* One system database. */
struct sysdb {
    const char *fname;          /* default name under configdirectory */
    enum imapopt backend_opt;
    enum imapopt path_opt;
    int flags;
};

static const struct sysdb sysdbs[] = {
    { "mailboxes.db", IMAPOPT_MBOXLIST_DB, IMAPOPT_MBOXLIST_DB_PATH,
      CYRUSDB_MBOXSORT },
    { "annotations.db", IMAPOPT_ANNOTATION_DB, IMAPOPT_ANNOTATION_DB_PATH,
      0 },
    { "quotas.db", IMAPOPT_QUOTA_DB, IMAPOPT_QUOTA_DB_PATH, 0 },
    { "deliver.db", IMAPOPT_DUPLICATE_DB, IMAPOPT_DUPLICATE_DB_PATH, 0 },
    { "tls_sessions.db", IMAPOPT_TLS_SESSIONS_DB,
      IMAPOPT_TLS_SESSIONS_DB_PATH, 0 },
    { "statuscache.db", IMAPOPT_STATUSCACHE_DB, IMAPOPT_STATUSCACHE_DB_PATH,
      0 },
    { "user_deny.db", IMAPOPT_USERDENY_DB, IMAPOPT_USERDENY_DB_PATH, 0 },
    { "ptscache.db", IMAPOPT_PTSCACHE_DB, IMAPOPT_PTSCACHE_DB_PATH, 0 },
    { "zoneinfo.db", IMAPOPT_ZONEINFO_DB, IMAPOPT_ZONEINFO_DB_PATH, 0 },
    { "backup.db", IMAPOPT_BACKUP_DB, IMAPOPT_BACKUP_DB_PATH, 0 }
};
#define NUM_SYSDBS (sizeof(sysdbs) / sizeof(sysdbs[0]))

enum mode { MODE_NONE, MODE_RECOVER, MODE_CHECKPOINT, MODE_CHECK };

static void usage(void)
{
    fprintf(stderr, "usage: %s [-C imapd.conf] -r | -c | -x\n", progname);
    exit(EX_USAGE_CODE);
}

/* The path of one system database into `out`. */
static void sysdb_path(const struct sysdb *s, struct buf *out)
{
    const char *p = config_getstring(s->path_opt);

    buf_reset(out);
    if (p && *p)
        buf_setcstr(out, p);
    else
        buf_printf(out, "%s/%s", config_dir(), s->fname);
}

/* Does the database exist? A quotalegacy db is a directory beside its
 * path; a pgsql table has no file, so the backend is asked. */
static int sysdb_exists(const char *backend, const char *path)
{
    struct stat st;
    struct db *db = NULL;

    if (!strcmp(backend, "quotalegacy") || !strcmp(backend, "sql")) {
        if (cyrusdb_open(backend, path, CYRUSDB_RDONLY, &db))
            return 0;
        cyrusdb_close(db);
        return 1;
    }
    return stat(path, &st) == 0;
}

/* Remove one leftover file if it is there. */
static void remove_stale(const char *path)
{
    if (unlink(path) == 0)
        xsyslog(LOG_NOTICE, "ctl_cyrusdb: removed stale file", "path=%s",
                path);
    else if (errno != ENOENT && errno != EISDIR)
        xsyslog_syscall("unlink", "path", path);
}

/* Empty the per-process state directory: nothing runs yet at START. */
static void clean_procdir(void)
{
    struct buf dir = BUF_INITIALIZER, file = BUF_INITIALIZER;
    const char *p = config_getstring(IMAPOPT_PROC_PATH);
    struct dirent *de;
    DIR *d;

    if (p && *p)
        buf_setcstr(&dir, p);
    else
        buf_printf(&dir, "%s/proc", config_dir());
    d = opendir(buf_cstring(&dir));
    if (d) {
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.')
                continue;
            buf_reset(&file);
            buf_printf(&file, "%s/%s", buf_cstring(&dir), de->d_name);
            remove_stale(buf_cstring(&file));
        }
        closedir(d);
    }
    buf_free(&dir);
    buf_free(&file);
}

static int recover_one(const struct sysdb *s, const char *backend,
                       const char *path)
{
    static const char *const temps[] = { ".NEW", ".tmp" };
    struct buf tmp = BUF_INITIALIZER;
    struct db *db = NULL;
    int flags = s->flags, r;
    size_t i;

    for (i = 0; i < sizeof(temps) / sizeof(temps[0]); i++) {
        buf_setcstr(&tmp, path);
        buf_appendcstr(&tmp, temps[i]);
        remove_stale(buf_cstring(&tmp));
    }
    buf_free(&tmp);

    if (!strcmp(s->fname, "mailboxes.db"))
        flags |= CYRUSDB_CREATE;
    else if (!sysdb_exists(backend, path))
        return 0;
    r = cyrusdb_open(backend, path, flags, &db);
    if (!r)
        r = cyrusdb_close(db);
    return r;
}

static int run_one(const struct sysdb *s, enum mode mode)
{
    struct buf path = BUF_INITIALIZER;
    const char *backend = config_getstring(s->backend_opt);
    const char *what = mode == MODE_RECOVER ? "recover"
                       : mode == MODE_CHECKPOINT ? "checkpoint" : "check";
    struct db *db = NULL;
    int r = 0;

    sysdb_path(s, &path);
    if (mode == MODE_RECOVER) {
        r = recover_one(s, backend, buf_cstring(&path));
    }
    else if (sysdb_exists(backend, buf_cstring(&path))) {
        r = cyrusdb_open(backend, buf_cstring(&path),
                         s->flags | CYRUSDB_NOCONVERT
                         | (mode == MODE_CHECK ? CYRUSDB_RDONLY : 0), &db);
        if (!r)
            r = mode == MODE_CHECK ? cyrusdb_consistent(db)
                                   : cyrusdb_checkpoint(db);
        cyrusdb_close(db);
    }
    else {
        goto done;
    }

    if (r) {
        xsyslog(LOG_ERR, "ctl_cyrusdb: failed", "op=%s path=%s backend=%s"
                " error=\"%s\"", what, buf_cstring(&path), backend,
                error_message(r));
        fprintf(stderr, "%s: %s %s (%s): %s\n", progname, what,
                buf_cstring(&path), backend, error_message(r));
    }
    else {
        xsyslog(LOG_INFO, "ctl_cyrusdb: done", "op=%s path=%s backend=%s",
                what, buf_cstring(&path), backend);
    }
done:
    buf_free(&path);
    return r;
}

int main(int argc, char **argv)
{
    const char *conf = NULL, *err = NULL;
    struct buf why = BUF_INITIALIZER;
    enum mode mode = MODE_NONE;
    size_t i;
    int opt, r, failed = 0;

    while ((opt = getopt(argc, argv, "C:rcxh")) != -1) {
        switch (opt) {
        case 'C': conf = optarg; break;
        case 'r': mode = MODE_RECOVER; break;
        case 'c': mode = MODE_CHECKPOINT; break;
        case 'x': mode = MODE_CHECK; break;
        default: usage();
        }
    }
    if (mode == MODE_NONE || optind != argc)
        usage();

    r = config_read(conf, NULL, &err);
    if (r) {
        fprintf(stderr, "%s: cannot read configuration: %s\n", progname,
                err ? err : error_message(r));
        return EX_USAGE_CODE;
    }
    log_open(config_getstring(IMAPOPT_SYSLOG_PREFIX), progname, 0, 0);
    if (privs_become_cyrus(&why)) {
        fprintf(stderr, "%s: %s\n", progname, buf_cstring(&why));
        return EX_USAGE_CODE;
    }

    if (mode == MODE_RECOVER)
        clean_procdir();
    cyrusdb_init();
    for (i = 0; i < NUM_SYSDBS; i++) {
        if (run_one(&sysdbs[i], mode))
            failed++;
    }
    cyrusdb_done();

    xsyslog(failed ? LOG_ERR : LOG_NOTICE, "ctl_cyrusdb: finished",
            "op=%s failed=%d", mode == MODE_RECOVER ? "recover"
            : mode == MODE_CHECKPOINT ? "checkpoint" : "check", failed);
    return failed ? 1 : 0;
}

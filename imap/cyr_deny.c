/* cyr_deny: shut a user out of some or all services (the user deny
 * list), let them back in, or list who is shut out. */
/* Columba is free software; see COPYING for the licence. */

/*
 * Usage: cyr_deny [-C imapd.conf] [-s services] [-m message] user
 *        cyr_deny [-C imapd.conf] -a user
 *        cyr_deny [-C imapd.conf] -l
 *
 * -s takes the service pattern list described in imap/userdeny.h
 * ("imap,pop3", "*,!lmtp"); the default is every service.  -m is the
 * text the user is given instead of the default.  -a removes the entry.
 * -l prints one line per entry: "user<TAB>services<TAB>message", with
 * "*" for an empty service list and the default message filled in.
 */

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/cyrusdb.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/privs.h"

#include "imap/userdeny.h"

#define EX_USAGE_CODE 64

static const char *progname = "cyr_deny";

static void usage(void)
{
    fprintf(stderr, "usage: %s [-C imapd.conf] [-s services] [-m message] "
            "user\n       %s [-C imapd.conf] -a user\n"
            "       %s [-C imapd.conf] -l\n", progname, progname, progname);
    exit(EX_USAGE_CODE);
}

static int list_cb(const char *userid, const char *services,
                   const char *message, void *rock)
{
    (void)rock;
    printf("%s\t%s\t%s\n", userid, services && *services ? services : "*",
           message && *message ? message : USERDENY_DEFAULT_MESSAGE);
    return 0;
}

int main(int argc, char **argv)
{
    const char *conf = NULL, *err = NULL, *services = NULL, *msg = NULL;
    const char *user = NULL;
    struct buf why = BUF_INITIALIZER;
    int opt, r, allow = 0, list = 0;

    while ((opt = getopt(argc, argv, "C:s:m:alh")) != -1) {
        switch (opt) {
        case 'C': conf = optarg; break;
        case 's': services = optarg; break;
        case 'm': msg = optarg; break;
        case 'a': allow = 1; break;
        case 'l': list = 1; break;
        default: usage();
        }
    }
    if (list) {
        if (allow || services || msg || optind != argc)
            usage();
    }
    else {
        if (optind + 1 != argc || (allow && (services || msg)))
            usage();
        user = argv[optind];
    }

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

    cyrusdb_init();
    if (list) {
        r = userdeny_foreach(list_cb, NULL);
    }
    else if (allow) {
        r = userdeny_remove(user);
        if (!r)
            xsyslog(LOG_NOTICE, "cyr_deny: user allowed", "user=%s",
                    log_escape(user, 0));
    }
    else {
        r = userdeny_set(user, services, msg);
        if (!r)
            xsyslog(LOG_NOTICE, "cyr_deny: user denied", "user=%s "
                    "services=%s", log_escape(user, 0),
                    log_escape(services ? services : "*", 0));
    }
    if (r == ERR_NOTFOUND && allow)
        fprintf(stderr, "%s: %s is not denied\n", progname, user);
    else if (r)
        fprintf(stderr, "%s: %s\n", progname, error_message(r));
    cyrusdb_done();
    buf_free(&why);
    return r ? 1 : 0;
}

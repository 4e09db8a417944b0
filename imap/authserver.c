/* authserver: the protocol-independent half of logging a client in,
 * shared by imapd, pop3d and lmtpd (see authserver.h). */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/socket.h>

#include <sasl/sasl.h>

#include "lib/buf.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/prot.h"
#include "lib/strarray.h"
#include "lib/tls.h"
#include "lib/util.h"
#include "lib/xmalloc.h"
#include "master/service.h"
#include "imap/acl.h"
#include "imap/mboxlist.h"
#include "imap/mboxname.h"
#include "imap/quota.h"
#include "imap/userdeny.h"

#include "imap/authserver.h"

/* Longest "ip;port" string handed to SASL. */
#define ADDR_STR_MAX (NI_MAXHOST + NI_MAXSERV + 2)

static int listed_in(enum imapopt opt, const char *userid);

static SSL_CTX *tls_ctx;
static char *sasl_service_name;

const char *authserver_servername(void)
{
    static char host[256];
    const char *name = config_getstring(IMAPOPT_SERVERNAME);

    if (name && *name)
        return name;
    if (!host[0]) {
        if (gethostname(host, sizeof(host)) != 0)
            xstrlcpy(host, "localhost", sizeof(host));
        host[sizeof(host) - 1] = '\0';
    }
    return host;
}

/* SASL_CB_GETOPT: "sasl_<plugin>_<option>", then "sasl_<option>". */
static int sasl_getopt_cb(void *context, const char *plugin,
                          const char *option, const char **result,
                          unsigned *len)
{
    struct buf key = BUF_INITIALIZER;
    const char *v = NULL;

    (void)context;
    if (plugin) {
        buf_printf(&key, "sasl_%s_%s", plugin, option);
        v = config_getoverflowstring(buf_cstring(&key), NULL);
    }
    if (!v) {
        buf_reset(&key);
        buf_printf(&key, "sasl_%s", option);
        v = config_getoverflowstring(buf_cstring(&key), NULL);
    }
    buf_free(&key);
    if (!v)
        return SASL_FAIL;
    *result = v;
    if (len)
        *len = (unsigned)strlen(v);
    return SASL_OK;
}

/* SASL_CB_LOG: the library's own messages, never the exchange. */
static int sasl_log_cb(void *context, int level, const char *message)
{
    int pri;

    (void)context;
    switch (level) {
    case SASL_LOG_ERR: pri = LOG_ERR; break;
    case SASL_LOG_FAIL: pri = LOG_NOTICE; break;
    case SASL_LOG_WARN: pri = LOG_WARNING; break;
    case SASL_LOG_NOTE: pri = LOG_INFO; break;
    default: return SASL_OK;
    }
    xsyslog(pri, "sasl", "message=%s", log_escape(message, 256));
    return SASL_OK;
}

/* Replace *id with its canonical userid when it has one. */
static void canonicalize(char **id)
{
    char *canon = NULL;

    if (authserver_canon_userid(*id, &canon) == 0) {
        free(*id);
        *id = canon;
    }
}

/* SASL_CB_PROXY_POLICY: acting as yourself is always allowed; acting
 * as someone else (an authzid that differs from the authcid) only for
 * admins, and for proxyservers as long as the one they act as is not
 * an admin (a proxy must not gain more than it would as itself). */
static int sasl_proxy_cb(sasl_conn_t *conn, void *context,
                         const char *requested_user, unsigned rlen,
                         const char *auth_identity, unsigned alen,
                         const char *def_realm, unsigned urlen,
                         struct propctx *propctx)
{
    char *authcid;
    char *authzid;
    int allowed;

    (void)context;
    (void)def_realm;
    (void)urlen;
    (void)propctx;
    if (!requested_user || rlen == 0
        || (rlen == alen && !memcmp(requested_user, auth_identity, alen)))
        return SASL_OK;

    /* Judge the ids as the session will use them (username_tolower). */
    authcid = xstrndup(auth_identity, alen);
    authzid = xstrndup(requested_user, rlen);
    canonicalize(&authcid);
    canonicalize(&authzid);
    allowed = !strcmp(authcid, authzid) || authserver_is_admin(authcid)
              || (listed_in(IMAPOPT_PROXYSERVERS, authcid)
                  && !authserver_is_admin(authzid));
    if (!allowed) {
        xsyslog(LOG_NOTICE, "proxy authorization denied",
                "user=%s authzid=%s", log_escape(authcid, 64),
                log_escape(authzid, 64));
        sasl_seterror(conn, SASL_NOLOG, "not authorized to proxy");
    }
    free(authzid);
    free(authcid);
    return allowed ? SASL_OK : SASL_NOAUTHZ;
}

/* SASL wants int (*)(void); going through void (*)(void) keeps the
 * cast free of -Wcast-function-type warnings. */
#define SASL_CB(fn) ((int (*)(void))(void (*)(void))(fn))

static sasl_callback_t sasl_callbacks[] = {
    { SASL_CB_GETOPT, SASL_CB(sasl_getopt_cb), NULL },
    { SASL_CB_LOG, SASL_CB(sasl_log_cb), NULL },
    { SASL_CB_PROXY_POLICY, SASL_CB(sasl_proxy_cb), NULL },
    { SASL_CB_LIST_END, NULL, NULL }
};

int authserver_init(const char *sasl_service)
{
    struct tls_server_params params;
    const char *err = NULL;
    int r;

    free(sasl_service_name);
    sasl_service_name = xstrdup(sasl_service);
    r = sasl_server_init(sasl_callbacks, "Columba");
    if (r != SASL_OK) {
        xsyslog(LOG_ERR, "sasl_server_init failed", "error=%s",
                sasl_errstring(r, NULL, NULL));
        return ERR_INTERNAL;
    }

    /* Without a certificate there is simply no STARTTLS. */
    if (config_getstring(IMAPOPT_TLS_SERVER_CERT)) {
        tls_server_params_from_config(&params);
        if (tls_server_ctx_new(&params, &tls_ctx, &err)) {
            xsyslog(LOG_ERR, "TLS unavailable", "error=%s",
                    err ? err : "unknown");
            tls_ctx = NULL;
            if (service_implicit_tls)
                return ERR_CONFIG;
        }
    }
    else if (service_implicit_tls) {
        /* Otherwise every connection would be dropped without a word. */
        xsyslog(LOG_ERR, "TLS unavailable", "error=%s",
                "implicit TLS (-s) needs tls_server_cert");
        return ERR_CONFIG;
    }
    return 0;
}

int authserver_tls_available(void)
{
    return tls_ctx != NULL;
}

int authserver_plaintext_ok(SSL *tls)
{
    return tls || config_getswitch(IMAPOPT_ALLOWPLAINTEXT);
}

void authserver_sasl_secure(sasl_conn_t *conn, SSL *tls)
{
    sasl_security_properties_t sp;
    sasl_ssf_t ssf = tls ? (sasl_ssf_t)tls_get_cipher_bits(tls) : 0;

    memset(&sp, 0, sizeof(sp));
    /* No SASL security layer: TLS is the way to protect a session. */
    sp.max_ssf = 0;
    sp.maxbufsize = 0;
    sp.security_flags = SASL_SEC_NOANONYMOUS;
    if (!authserver_plaintext_ok(tls))
        sp.security_flags |= SASL_SEC_NOPLAINTEXT;
    sasl_setprop(conn, SASL_SSF_EXTERNAL, &ssf);
    sasl_setprop(conn, SASL_SEC_PROPS, &sp);
}

/* "ip;port" of a socket address, as SASL wants it.  Returns 0 or -1
 * (not an IP socket). */
static int addr_string(const struct sockaddr_storage *sa, socklen_t len,
                       char *out, size_t outlen)
{
    char host[NI_MAXHOST];
    char serv[NI_MAXSERV];

    if (sa->ss_family != AF_INET && sa->ss_family != AF_INET6)
        return -1;
    if (getnameinfo((const struct sockaddr *)sa, len, host, sizeof(host),
                    serv, sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV))
        return -1;
    if ((size_t)snprintf(out, outlen, "%s;%s", host, serv) >= outlen)
        return -1;
    return 0;
}

int authserver_sasl_new(int fd, SSL *tls, sasl_conn_t **conn_r)
{
    struct sockaddr_storage sa;
    socklen_t len;
    char local[ADDR_STR_MAX];
    char remote[ADDR_STR_MAX];
    const char *localp = NULL;
    const char *remotep = NULL;
    int r;

    len = sizeof(sa);
    if (fd >= 0 && getsockname(fd, (struct sockaddr *)&sa, &len) == 0
        && addr_string(&sa, len, local, sizeof(local)) == 0)
        localp = local;
    len = sizeof(sa);
    if (fd >= 0 && getpeername(fd, (struct sockaddr *)&sa, &len) == 0
        && addr_string(&sa, len, remote, sizeof(remote)) == 0)
        remotep = remote;

    r = sasl_server_new(sasl_service_name ? sasl_service_name : "imap",
                        authserver_servername(), NULL, localp, remotep,
                        NULL, 0, conn_r);
    if (r != SASL_OK) {
        xsyslog(LOG_ERR, "sasl_server_new failed", "error=%s",
                sasl_errstring(r, NULL, NULL));
        *conn_r = NULL;
        return ERR_INTERNAL;
    }
    authserver_sasl_secure(*conn_r, tls);
    return 0;
}

int authserver_sasl_renew(int fd, SSL *tls, sasl_conn_t **conn)
{
    if (*conn)
        sasl_dispose(conn);
    *conn = NULL;
    return authserver_sasl_new(fd, tls, conn);
}

int authserver_mechlist(sasl_conn_t *conn, struct buf *out)
{
    const char *list = NULL;
    unsigned len = 0;
    int count = 0;

    buf_reset(out);
    if (!conn)
        return 0;
    if (sasl_listmech(conn, NULL, "", " ", "", &list, &len, &count)
        != SASL_OK)
        return 0;
    buf_appendmap(out, list, len);
    return count;
}

int authserver_mech_offered(sasl_conn_t *conn, const char *mech)
{
    struct buf list = BUF_INITIALIZER;
    strarray_t *words;
    int found;

    authserver_mechlist(conn, &list);
    words = strarray_split(buf_cstring(&list), " ", 1);
    found = strarray_find_case(words, mech, 0) >= 0;
    strarray_free(&words);
    buf_free(&list);
    return found;
}

int authserver_canon_userid(const char *name, char **userid_r)
{
    int r = mboxname_canonical_userid(name, userid_r);

    if (r)
        return r;
    if (config_getswitch(IMAPOPT_USERNAME_TOLOWER))
        lcase(*userid_r);
    return 0;
}

/* Is `userid` in the string-list option `opt`? */
static int listed_in(enum imapopt opt, const char *userid)
{
    strarray_t *list = config_getstrarray(opt);
    int found = strarray_find(list, userid, 0) >= 0;

    strarray_free(&list);
    return found;
}

int authserver_is_admin(const char *userid)
{
    return listed_in(IMAPOPT_ADMINS, userid);
}

int authserver_is_proxy(const char *userid)
{
    return listed_in(IMAPOPT_PROXYSERVERS, userid)
           || listed_in(IMAPOPT_ADMINS, userid);
}

int authserver_check_deny(const char *userid, const char *service,
                          char **msg_r)
{
    int r;

    *msg_r = NULL;
    r = userdeny_check(userid, service, msg_r);
    if (r)
        xsyslog(LOG_NOTICE, "login denied", "user=%s service=%s",
                log_escape(userid, 0), log_escape(service, 0));
    return r;
}

void authserver_failed_pause(struct protstream *out)
{
    int64_t pause = config_getduration(IMAPOPT_FAILEDLOGINPAUSE, 's');

    if (pause <= 0)
        return;
    prot_flush(out);
    sleep(pause > 60 ? 60 : (unsigned)pause);
}

int authserver_tls_start(struct protstream *in, struct protstream *out,
                         SSL **ssl_r)
{
    const char *err = NULL;
    struct buf info = BUF_INITIALIZER;
    SSL *ssl = NULL;
    int r;

    *ssl_r = NULL;
    if (!tls_ctx)
        return ERR_UNSUPPORTED;
    prot_flush(out);
    r = tls_start_server(tls_ctx, prot_fd(in), AUTHSERVER_TLS_TIMEOUT,
                         &ssl, &err);
    if (r) {
        xsyslog(LOG_NOTICE, "TLS handshake failed", "error=%s",
                err ? err : error_message(r));
        return r;
    }
    if (prot_settls(in, out, ssl) == ERR_PROTOCOL)
        xsyslog(LOG_WARNING, "plaintext after STARTTLS discarded", NULL);
    tls_get_info(ssl, &info);
    xsyslog(LOG_INFO, "starttls", "tls=%s",
            log_escape(buf_cstring(&info), 0));
    buf_free(&info);
    *ssl_r = ssl;
    return 0;
}

/* A positive autocreate_quota (KiB) becomes a STORAGE limit on the new,
 * still empty INBOX. */
static int autocreate_quota_root(const char *inbox)
{
    int64_t limit = config_getint(IMAPOPT_AUTOCREATE_QUOTA);
    struct quota q;
    int r;

    if (limit <= 0)
        return 0;
    quota_init(&q, inbox);
    q.limits[QUOTA_STORAGE] = limit > QUOTA_LIMIT_MAX ? QUOTA_LIMIT_MAX
                                                      : limit;
    q.useds[QUOTA_NUMFOLDERS] = 1;
    r = quota_write(&q, NULL);
    quota_fini(&q);
    return r;
}

void authserver_autocreate_inbox(const char *userid,
                                 const struct auth_state *auth)
{
    char *inbox = NULL;
    struct mboxlist_entry *e = NULL;
    int r;

    if (config_getint(IMAPOPT_AUTOCREATE_QUOTA) < 0)
        return;
    if (mboxname_user_mbox(userid, NULL, &inbox))
        return;
    if (mboxlist_lookup(inbox, &e) == ERR_MAILBOX_NONEXISTENT) {
        r = mboxlist_create(inbox, MAILBOX_TYPE_MAIL, NULL, auth, 1, NULL);
        if (!r)
            r = autocreate_quota_root(inbox);
        if (r)
            xsyslog(LOG_ERR, "autocreate INBOX failed", "mailbox=%s error=%s",
                    log_escape(inbox, 0), error_message(r));
        else
            xsyslog(LOG_NOTICE, "autocreated INBOX", "mailbox=%s",
                    log_escape(inbox, 0));
    }
    mboxlist_entry_free(&e);
    free(inbox);
}

/* Filling struct tls_server_params from imapd.conf; kept apart from
 * tls.c so the TLS core links without the configuration module. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <string.h>

#include "lib/libconfig.h"
#include "lib/xmalloc.h"
#include "lib/tls.h"

/* Rebuild the tls_versions bitfield as the name list tls.c parses.  The
 * option table has no ssl2, and ssl3 is never enabled anyway. */
static const char *versions_string(uint64_t bits)
{
    static char list[64];
    static const struct {
        uint64_t bit;
        const char *name;
    } names[] = {
        { IMAP_ENUM_TLS_VERSIONS_SSL3,   "ssl3" },
        { IMAP_ENUM_TLS_VERSIONS_TLS1_0, "tls1_0" },
        { IMAP_ENUM_TLS_VERSIONS_TLS1_1, "tls1_1" },
        { IMAP_ENUM_TLS_VERSIONS_TLS1_2, "tls1_2" },
        { IMAP_ENUM_TLS_VERSIONS_TLS1_3, "tls1_3" },
    };
    size_t i;

    list[0] = '\0';
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (!(bits & names[i].bit))
            continue;
        if (list[0])
            xstrlcat(list, " ", sizeof(list));
        xstrlcat(list, names[i].name, sizeof(list));
    }
    return list;
}

void tls_server_params_from_config(struct tls_server_params *params)
{
    int client_certs = config_getenum(IMAPOPT_TLS_CLIENT_CERTS);
    int64_t timeout = config_getduration(IMAPOPT_TLS_SESSION_TIMEOUT, 'm');

    memset(params, 0, sizeof(*params));
    params->cert_file = config_getstring(IMAPOPT_TLS_SERVER_CERT);
    params->key_file = config_getstring(IMAPOPT_TLS_SERVER_KEY);
    params->versions =
        versions_string(config_getbitfield(IMAPOPT_TLS_VERSIONS));
    params->ciphers = config_getstring(IMAPOPT_TLS_CIPHERS);
    params->ciphersuites = config_getstring(IMAPOPT_TLS_CIPHERSUITES);
    params->prefer_server_ciphers =
        config_getswitch(IMAPOPT_TLS_PREFER_SERVER_CIPHERS);

    /* tls_client_certs: off asks for no certificate at all, optional
     * asks when CAs are configured, require refuses clients without. */
    if (client_certs != IMAP_ENUM_TLS_CLIENT_CERTS_OFF) {
        params->ca_file = config_getstring(IMAPOPT_TLS_CLIENT_CA_FILE);
        params->ca_path = config_getstring(IMAPOPT_TLS_CLIENT_CA_DIR);
    }
    params->require_client_cert =
        client_certs == IMAP_ENUM_TLS_CLIENT_CERTS_REQUIRE;

    /* A duration in seconds; the context wants whole minutes, and a
     * non-zero value below a minute still means "on"; a week at most,
     * since a session key kept longer is a key worth stealing. */
    if (timeout <= 0)
        params->session_timeout = 0;
    else if (timeout / 60 > 7 * 24 * 60)
        params->session_timeout = 7 * 24 * 60;
    else
        params->session_timeout = timeout < 60 ? 1 : (int)(timeout / 60);
}

/* pop3d internals: the session every command works on, the maildrop
 * snapshot of the TRANSACTION state, and the helpers shared by
 * pop3d.c (session, authorization) and pop3d_maildrop.c (maildrop
 * commands).  Not a public interface. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_IMAP_POP3D_H
#define COLUMBA_IMAP_POP3D_H

#include <stdint.h>

#include <sasl/sasl.h>
#include <openssl/ssl.h>

#include "lib/buf.h"
#include "imap/acl.h"
#include "imap/mailbox.h"

/* Longest command line, CRLF included (RFC 2449 section 4). */
#define POP3D_LINE_MAX 255
/* Most arguments a command takes (TOP msg n). */
#define POP3D_ARGS_MAX 2

/* One message of the snapshot taken at login.  Message numbers are the
 * 1-based positions in pop3d.msgs. */
struct pop3d_msg {
    uint32_t uid;
    uint64_t size;
    int is_deleted;             /* DELE in this session */
};

/* One client connection. */
struct pop3d {
    struct protstream *in;
    struct protstream *out;
    SSL *tls;
    sasl_conn_t *sasl;
    char apop_stamp[256];       /* "<...@host>" of the greeting, or "" */
    char *user;                 /* USER argument waiting for PASS */
    int logout;                 /* end the session after this command */
    unsigned nfailures;         /* failed logins so far */

    /* Set once authenticated (TRANSACTION state). */
    char *userid;
    struct auth_state *auth;
    int is_admin;
    struct mailbox *mb;         /* the INBOX, open, unlocked */
    char *intname;
    uint32_t uidvalidity;
    uint32_t rights;            /* ACL rights on the INBOX */
    struct pop3d_msg *msgs;
    uint32_t nmsgs;
    uint32_t ndeleted;
    unsigned nretr;             /* counters for the logout log line */
    unsigned ntop;
};

/* ---- pop3d.c: replies ---- */

/* "+OK <text>\r\n" and "-ERR <text>\r\n". */
void pop3d_ok(struct pop3d *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void pop3d_err(struct pop3d *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Ask the kernel to hold back partial segments (TCP_CORK) while a long
 * reply is queued, and to send them at once again after it; a no-op on
 * sockets that are not TCP. */
void pop3d_cork(struct pop3d *s, int is_on);

/* ---- pop3d_maildrop.c ---- */

/* Open the INBOX of the authenticated s->userid and take the snapshot:
 * ACL check (popuseacl), popminpoll check and the new last-login time,
 * then the list of messages.  Answers -ERR itself on failure and
 * returns non-zero; on success answers nothing and returns 0. */
int pop3d_maildrop_open(struct pop3d *s);

/* Leave the TRANSACTION state; with `do_update`, first expunge the
 * messages this session deleted (the UPDATE state of RFC 1939).
 * Returns 0 or the expunge error (logged). */
int pop3d_maildrop_close(struct pop3d *s, int do_update);

/* TRANSACTION commands; argv[0] is the command word, argc counts it. */
void pop3d_cmd_stat(struct pop3d *s, int argc, char **argv);
void pop3d_cmd_list(struct pop3d *s, int argc, char **argv);  /* and UIDL */
void pop3d_cmd_retr(struct pop3d *s, int argc, char **argv);  /* and TOP */
void pop3d_cmd_dele(struct pop3d *s, int argc, char **argv);
void pop3d_cmd_rset(struct pop3d *s, int argc, char **argv);

/* Append `len` bytes of a stored message to `out` as a POP3 multi-line
 * body: every line ends in CRLF (a bare LF becomes CRLF, a final line
 * without one gets one), a line starting with "." gets another "."
 * first, and ".\r\n" ends it.  With `body_lines` >= 0 only the header,
 * the empty line after it and that many body lines are sent (TOP). */
void pop3d_format_message(const char *base, size_t len, int64_t body_lines,
                          struct buf *out);

#endif /* COLUMBA_IMAP_POP3D_H */

/* imapd: the IMAP4rev2/IMAP4rev1 server (RFC 9051, RFC 3501).  This file
 * is the service glue, the session loop, the command table and the
 * small commands; command groups live in imap_cmd_*.c. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/prot.h"
#include "lib/tls.h"
#include "lib/util.h"
#include "lib/xmalloc.h"
#include "master/service.h"
#include "imap/mboxlist.h"
#include "imap/mboxwatch.h"

#include "imap/imapd.h"

/* The shortest idle timeout RFC 9051 allows (section 5.4): 30 minutes. */
#define IMAPD_MIN_TIMEOUT (30 * 60)
/* Longest ID field name or value accepted. */
#define IMAPD_ID_FIELD_MAX 1024
/* Most ID field pairs (RFC 2971 allows 30). */
#define IMAPD_ID_PAIRS_MAX 30
/* Default bound of an APPEND message when maxmessagesize is unset. */
#define IMAPD_DEFAULT_MESSAGE_MAX ((size_t)64 * 1024 * 1024)

/* Process-wide settings read in service_init. */
static int idle_timeout;
static size_t max_word;
static size_t max_command;

size_t imapd_max_message;

void imapd_printf(struct imapd *s, const char *fmt, ...)
{
    struct buf b = BUF_INITIALIZER;
    va_list ap;

    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    prot_write(s->out, b.s, b.len);
    buf_free(&b);
}

/* "<tag> <status> <text>\r\n". */
static void tagged(struct imapd *s, const char *status, const char *fmt,
                   va_list ap)
{
    struct buf b = BUF_INITIALIZER;

    buf_printf(&b, "%s %s ", buf_cstring(&s->tag), status);
    buf_vprintf(&b, fmt, ap);
    buf_appendcstr(&b, "\r\n");
    prot_write(s->out, b.s, b.len);
    buf_free(&b);
}

void imapd_ok(struct imapd *s, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    tagged(s, "OK", fmt, ap);
    va_end(ap);
}

void imapd_no(struct imapd *s, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    tagged(s, "NO", fmt, ap);
    va_end(ap);
}

void imapd_bad(struct imapd *s, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    tagged(s, "BAD", fmt, ap);
    va_end(ap);
}

void imapd_no_error(struct imapd *s, int r)
{
    const char *code = "";

    switch (r) {
    case ERR_MAILBOX_NONEXISTENT: code = "[NONEXISTENT] "; break;
    case ERR_MAILBOX_EXISTS: code = "[ALREADYEXISTS] "; break;
    case ERR_ACL_DENIED:
    case ERR_PERMISSION: code = "[NOPERM] "; break;
    case ERR_QUOTA_EXCEEDED: code = "[OVERQUOTA] "; break;
    case ERR_MAILBOX_BADNAME: code = "[CANNOT] "; break;
    case ERR_TOOBIG: code = "[TOOBIG] "; break;
    case ERR_LOCKED:
    case ERR_AGAIN: code = "[INUSE] "; break;
    case ERR_IO:
    case ERR_CORRUPT:
    case ERR_INTERNAL: code = "[SERVERBUG] "; break;
    default: break;
    }
    imapd_no(s, "%s%s", code, error_message(r));
}

int imapd_eol(struct imapd *s, int c)
{
    return imap_parse_eol(&s->parser, c);
}

int imapd_sp(struct imapd *s, int c)
{
    if (c == ' ')
        return 0;
    if (!s->parser.error)
        imap_parse_fail(&s->parser, "Missing argument");
    return -1;
}

void imapd_buf_astring(struct buf *out, const char *str)
{
    const char *p;

    for (p = str; *p; p++) {
        if ((unsigned char)*p >= 0x80 || *p == '\r' || *p == '\n'
            || (p - str) > 1024) {
            buf_printf(out, "{%zu}\r\n%s", strlen(str), str);
            return;
        }
    }
    buf_putc(out, '"');
    for (p = str; *p; p++) {
        if (*p == '"' || *p == '\\')
            buf_putc(out, '\\');
        buf_putc(out, *p);
    }
    buf_putc(out, '"');
}

void imapd_capabilities(struct imapd *s, struct buf *out)
{
    buf_reset(out);
    buf_appendcstr(out, "IMAP4rev1 IMAP4rev2 LITERAL+ ID ENABLE");
    if (!s->tls && !s->userid && !prot_is_compressed(s->in)
        && imapd_tls_available())
        buf_appendcstr(out, " STARTTLS");
    if (!s->userid) {
        if (!imapd_plaintext_ok(s))
            buf_appendcstr(out, " LOGINDISABLED");
        imapd_auth_capabilities(s, out);
        buf_appendcstr(out, " SASL-IR");
        /* cyradm decides what the server can do from the CAPABILITY it
         * reads before logging in, as Cyrus lists these there. */
        buf_appendcstr(out, " METADATA LIST-EXTENDED SPECIAL-USE"
                            " CREATE-SPECIAL-USE");
        return;
    }
    buf_appendcstr(out, " NAMESPACE UNSELECT UIDPLUS CHILDREN MOVE IDLE"
                        " COMPRESS=DEFLATE"
                        " ACL RIGHTS=kxten QUOTA QUOTA=RES-STORAGE"
                        " QUOTA=RES-MESSAGE UNAUTHENTICATE");
    buf_appendcstr(out, " CONDSTORE QRESYNC BINARY SAVEDATE OBJECTID"
                        " PREVIEW");
    buf_appendcstr(out, " ESEARCH SEARCHRES WITHIN SORT SORT=DISPLAY"
                        " ESORT THREAD=ORDEREDSUBJECT THREAD=REFERENCES");
    buf_appendcstr(out, " QUOTA=RES-MAILBOX QUOTA=RES-ANNOTATION-STORAGE"
                        " QUOTASET LIST-EXTENDED LIST-STATUS LIST-MYRIGHTS"
                        " SPECIAL-USE CREATE-SPECIAL-USE METADATA"
                        " METADATA-SERVER ANNOTATEMORE STATUS=SIZE"
                        " MULTIAPPEND UTF8=ACCEPT");
    buf_printf(out, " APPENDLIMIT=%zu", imapd_append_limit());
    buf_appendcstr(out, " CATENATE URLAUTH URLAUTH=BINARY URL-PARTIAL"
                        " REPLACE UIDONLY");
}

/* CAPABILITY */
static void cmd_capability(struct imapd *s, int c)
{
    struct buf caps = BUF_INITIALIZER;

    if (imapd_eol(s, c))
        return;
    imapd_capabilities(s, &caps);
    imapd_printf(s, "* CAPABILITY %s\r\n", buf_cstring(&caps));
    imapd_ok(s, "Completed");
    buf_free(&caps);
}

/* LOGOUT */
static void cmd_logout(struct imapd *s, int c)
{
    if (imapd_eol(s, c))
        return;
    imapd_printf(s, "* BYE Columba IMAP server logging out\r\n");
    imapd_ok(s, "Completed");
    s->logout = 1;
}

/* Read one ID field string or NIL into `out`, at most
 * IMAPD_ID_FIELD_MAX bytes (RFC 2971 allows 1024 for values). */
static int id_field(struct imapd *s, struct buf *out, int *is_nil_r)
{
    int c = imap_parse_nstring(&s->parser, out, is_nil_r);

    if (c != EOF && out->len > IMAPD_ID_FIELD_MAX)
        return imap_parse_fail(&s->parser, "ID field too long");
    return c;
}

/* ID ( "name" "value" ... ) or ID NIL (RFC 2971). */
static void cmd_id(struct imapd *s, int c)
{
    struct buf name = BUF_INITIALIZER;
    struct buf value = BUF_INITIALIZER;
    struct buf logline = BUF_INITIALIZER;
    int is_nil;
    int pairs = 0;

    if (imapd_sp(s, c))
        goto done;
    c = imap_parse_getc(&s->parser);
    if (c == '(') {
        do {
            c = id_field(s, &name, &is_nil);
            if (imapd_sp(s, c))
                goto done;
            c = id_field(s, &value, &is_nil);
            if (c == EOF)
                goto done;
            if (++pairs > IMAPD_ID_PAIRS_MAX) {
                imap_parse_fail(&s->parser, "Too many ID fields");
                goto done;
            }
            buf_printf(&logline, "%s%s=%s", pairs > 1 ? " " : "",
                       log_escape(buf_cstring(&name), 64),
                       is_nil ? "NIL" : log_escape(buf_cstring(&value),
                                                   128));
        } while (c == ' ');
        if (c != ')') {
            imap_parse_fail(&s->parser, "Missing ) in ID");
            goto done;
        }
        c = imap_parse_getc(&s->parser);
    }
    else {
        imap_parse_ungetc(&s->parser, c);
        c = imap_parse_atom(&s->parser, &name);
        if (c != EOF && strcasecmp(buf_cstring(&name), "NIL")) {
            imap_parse_fail(&s->parser, "Expected ( or NIL");
            goto done;
        }
    }
    if (imapd_eol(s, c))
        goto done;

    if (logline.len)
        xsyslog(LOG_INFO, "client id", "%s", buf_cstring(&logline));
    if (config_getswitch(IMAPOPT_IMAPIDRESPONSE))
        imapd_printf(s, "* ID (\"name\" \"Columba\" \"vendor\" \"Columba\""
                        " \"version\" \"%s\")\r\n", PACKAGE_VERSION);
    else
        imapd_printf(s, "* ID NIL\r\n");
    imapd_ok(s, "Completed");

done:
    buf_free(&name);
    buf_free(&value);
    buf_free(&logline);
}

/* The extensions ENABLE can turn on, by name. */
static const struct {
    const char *name;
    unsigned bits;
} enable_names[] = {
    { "IMAP4rev2", IMAPD_ENABLED_IMAP4REV2 },
    { "CONDSTORE", IMAPD_ENABLED_CONDSTORE },
    { "QRESYNC", IMAPD_ENABLED_QRESYNC | IMAPD_ENABLED_CONDSTORE },
    { "UTF8=ACCEPT", IMAPD_ENABLED_UTF8 },
    { "UIDONLY", IMAPD_ENABLED_UIDONLY },
    { NULL, 0 }
};

/* ENABLE capability... (RFC 5161): the ENABLED response lists what this
 * command newly turned on; unknown names are ignored. */
static void cmd_enable(struct imapd *s, int c)
{
    struct buf word = BUF_INITIALIZER;
    struct buf done_list = BUF_INITIALIZER;
    unsigned turned_on = 0;
    int i;

    if (imapd_sp(s, c))
        goto done;
    do {
        c = imap_parse_atom(&s->parser, &word);
        if (c == EOF)
            goto done;
        for (i = 0; enable_names[i].name; i++) {
            unsigned bits = enable_names[i].bits;

            if (strcasecmp(buf_cstring(&word), enable_names[i].name))
                continue;
            if (((s->enabled | turned_on) & bits) == bits)
                break;
            turned_on |= bits;
            buf_printf(&done_list, " %s", enable_names[i].name);
        }
    } while (c == ' ');
    if (imapd_eol(s, c))
        goto done;
    imapd_printf(s, "* ENABLED%s\r\n", buf_cstring(&done_list));
    if (turned_on & IMAPD_ENABLED_CONDSTORE)
        imapd_condstore_enable(s);      /* HIGHESTMODSEQ when selected */
    s->enabled |= turned_on;
    imapd_ok(s, "Completed");
done:
    buf_free(&word);
    buf_free(&done_list);
}

/* A watcher on the selected mailbox's index, or NULL (not selected, or
 * no file notification here: the caller polls). */
static struct mboxwatch *idle_watch(struct imapd *s)
{
    struct mboxwatch *w = NULL;
    struct buf path = BUF_INITIALIZER;

    if (!s->sel || mboxwatch_new(&w))
        return NULL;
    buf_printf(&path, "%s/%s", mailbox_path(s->sel->mb), MAILBOX_FNAME_INDEX);
    if (mboxwatch_add(w, buf_cstring(&path)))
        mboxwatch_free(&w);
    buf_free(&path);
    return w;
}

/* IDLE (RFC 2177): report changes until DONE.  A change to the selected
 * mailbox's index wakes the session through inotify (a delivery or
 * another session's STORE reaches the client at once); every
 * imapidlepoll seconds the index is also checked, as a fallback where
 * notification is missing or a change slipped past it. */
static void cmd_idle(struct imapd *s, int c)
{
    struct buf line = BUF_INITIALIZER;
    struct mboxwatch *watch = NULL;
    int64_t poll = config_getduration(IMAPOPT_IMAPIDLEPOLL, 's');
    time_t start = time(NULL);
    int toolong = 0;
    int ready = 0;
    int woken = 0;
    int r;

    if (imapd_eol(s, c))
        return;
    if (poll <= 0 || poll > idle_timeout)
        poll = 60;
    watch = idle_watch(s);
    imapd_printf(s, "+ idling\r\n");

    /* What changed before the watch was set up is reported now. */
    imapd_sync(s, 1);
    prot_flush(s->out);
    for (;;) {
        r = prot_select(&s->in, 1, mboxwatch_fd(watch), (int)poll * 1000,
                        &ready, &woken);
        if (r || ready)
            break;
        if (time(NULL) - start >= idle_timeout) {
            imapd_printf(s, "* BYE Idle timeout\r\n");
            s->logout = 1;
            goto done;
        }
        if (woken && !mboxwatch_drain(watch))
            continue;
        imapd_sync(s, 1);
        prot_flush(s->out);
    }
    r = prot_getline(s->in, &line, 64, &toolong);
    if (r) {
        s->logout = 1;
        goto done;
    }
    imapd_sync(s, 1);
    if (!toolong && !strcasecmp(buf_cstring(&line), "DONE"))
        imapd_ok(s, "Completed");
    else
        imapd_bad(s, "Expected DONE");
done:
    mboxwatch_free(&watch);
    buf_free(&line);
}

/* COMPRESS DEFLATE (RFC 4978): the OK goes out uncompressed, then both
 * directions are compressed from the next byte. */
static void cmd_compress(struct imapd *s, int c)
{
    struct buf alg = BUF_INITIALIZER;

    if (imapd_sp(s, c))
        goto done;
    c = imap_parse_atom(&s->parser, &alg);
    if (imapd_eol(s, c))
        goto done;
    if (strcasecmp(buf_cstring(&alg), "DEFLATE")) {
        imapd_no(s, "Unknown compression algorithm");
        goto done;
    }
    if (prot_is_compressed(s->in)) {
        imapd_no(s, "[COMPRESSIONACTIVE] DEFLATE is already active");
        goto done;
    }
    imapd_ok(s, "DEFLATE active");
    if (prot_setcompress(s->in, s->out)) {
        xsyslog(LOG_ERR, "cannot start compression", NULL);
        s->logout = 1;
    }
done:
    buf_free(&alg);
}

/* One row of the command table. */
struct command {
    const char *name;
    unsigned states;            /* IMAPD_STATE_* where it is allowed */
    int allow_uid;              /* may follow "UID " */
    void (*fn)(struct imapd *s, int c);
};

static const struct command commands[] = {
    { "CAPABILITY", IMAPD_STATE_ANY, 0, cmd_capability },
    { "NOOP", IMAPD_STATE_ANY, 0, imapd_cmd_noop },
    { "LOGOUT", IMAPD_STATE_ANY, 0, cmd_logout },
    { "ID", IMAPD_STATE_ANY, 0, cmd_id },
    { "STARTTLS", IMAPD_STATE_NOAUTH, 0, imapd_cmd_starttls },
    { "LOGIN", IMAPD_STATE_NOAUTH, 0, imapd_cmd_login },
    { "AUTHENTICATE", IMAPD_STATE_NOAUTH, 0, imapd_cmd_authenticate },
    { "UNAUTHENTICATE", IMAPD_STATE_AUTH | IMAPD_STATE_SELECTED, 0,
      imapd_cmd_unauthenticate },
    { "ENABLE", IMAPD_STATE_AUTH | IMAPD_STATE_SELECTED, 0, cmd_enable },
    { "IDLE", IMAPD_STATE_AUTH | IMAPD_STATE_SELECTED, 0, cmd_idle },
    { "COMPRESS", IMAPD_STATE_AUTH | IMAPD_STATE_SELECTED, 0,
      cmd_compress },
    { "NAMESPACE", IMAPD_STATE_AUTH | IMAPD_STATE_SELECTED, 0,
      imapd_cmd_namespace },
    { "CREATE", IMAPD_STATE_AUTH | IMAPD_STATE_SELECTED, 0,
      imapd_cmd_create },
    { "DELETE", IMAPD_STATE_AUTH | IMAPD_STATE_SELECTED, 0,
      imapd_cmd_delete },
    { "RENAME", IMAPD_STATE_AUTH | IMAPD_STATE_SELECTED, 0,
      imapd_cmd_rename },
    { "LIST", IMAPD_STATE_AUTH | IMAPD_STATE_SELECTED, 0, imapd_cmd_list },
    { "LSUB", IMAPD_STATE_AUTH | IMAPD_STATE_SELECTED, 0, imapd_cmd_lsub },
    { "SUBSCRIBE", IMAPD_STATE_AUTH | IMAPD_STATE_SELECTED, 0,
      imapd_cmd_subscribe },
    { "UNSUBSCRIBE", IMAPD_STATE_AUTH | IMAPD_STATE_SELECTED, 0,
      imapd_cmd_unsubscribe },
    { "STATUS", IMAPD_STATE_AUTH | IMAPD_STATE_SELECTED, 0,
      imapd_cmd_status },
    { "APPEND", IMAPD_STATE_AUTH | IMAPD_STATE_SELECTED, 0,
      imapd_cmd_append },
    { "GETACL", IMAPD_STATE_AUTH | IMAPD_STATE_SELECTED, 0,
      imapd_cmd_getacl },
    { "SETACL", IMAPD_STATE_AUTH | IMAPD_STATE_SELECTED, 0,
      imapd_cmd_setacl },
    { "DELETEACL", IMAPD_STATE_AUTH | IMAPD_STATE_SELECTED, 0,
      imapd_cmd_deleteacl },
    { "MYRIGHTS", IMAPD_STATE_AUTH | IMAPD_STATE_SELECTED, 0,
      imapd_cmd_myrights },
    { "GETQUOTAROOT", IMAPD_STATE_AUTH | IMAPD_STATE_SELECTED, 0,
      imapd_cmd_getquotaroot },
    { "GETQUOTA", IMAPD_STATE_AUTH | IMAPD_STATE_SELECTED, 0,
      imapd_cmd_getquota },
    { "SETQUOTA", IMAPD_STATE_AUTH | IMAPD_STATE_SELECTED, 0,
      imapd_cmd_setquota },
    { "LISTRIGHTS", IMAPD_STATE_AUTH | IMAPD_STATE_SELECTED, 0,
      imapd_cmd_listrights },
    { "GETMETADATA", IMAPD_STATE_AUTH | IMAPD_STATE_SELECTED, 0,
      imapd_cmd_getmetadata },
    { "SETMETADATA", IMAPD_STATE_AUTH | IMAPD_STATE_SELECTED, 0,
      imapd_cmd_setmetadata },
    { "GETANNOTATION", IMAPD_STATE_AUTH | IMAPD_STATE_SELECTED, 0,
      imapd_cmd_getannotation },
    { "SETANNOTATION", IMAPD_STATE_AUTH | IMAPD_STATE_SELECTED, 0,
      imapd_cmd_setannotation },
    { "XFER", IMAPD_STATE_AUTH | IMAPD_STATE_SELECTED, 0, imapd_cmd_xfer },
    { "RECONSTRUCT", IMAPD_STATE_AUTH | IMAPD_STATE_SELECTED, 0,
      imapd_cmd_reconstruct },
    { "SELECT", IMAPD_STATE_AUTH | IMAPD_STATE_SELECTED, 0,
      imapd_cmd_select },
    { "EXAMINE", IMAPD_STATE_AUTH | IMAPD_STATE_SELECTED, 0,
      imapd_cmd_select },
    { "CHECK", IMAPD_STATE_SELECTED, 0, imapd_cmd_noop },
    { "CLOSE", IMAPD_STATE_SELECTED, 0, imapd_cmd_close },
    { "UNSELECT", IMAPD_STATE_SELECTED, 0, imapd_cmd_unselect },
    { "EXPUNGE", IMAPD_STATE_SELECTED, 1, imapd_cmd_expunge },
    { "FETCH", IMAPD_STATE_SELECTED, 1, imapd_cmd_fetch },
    { "STORE", IMAPD_STATE_SELECTED, 1, imapd_cmd_store },
    { "COPY", IMAPD_STATE_SELECTED, 1, imapd_cmd_copy },
    { "MOVE", IMAPD_STATE_SELECTED, 1, imapd_cmd_copy },
    { "SEARCH", IMAPD_STATE_SELECTED, 1, imapd_cmd_search },
    { "SORT", IMAPD_STATE_SELECTED, 1, imapd_cmd_sort },
    { "THREAD", IMAPD_STATE_SELECTED, 1, imapd_cmd_thread },
    { "REPLACE", IMAPD_STATE_SELECTED, 1, imapd_cmd_append },
    { "GENURLAUTH", IMAPD_STATE_AUTH | IMAPD_STATE_SELECTED, 0,
      imapd_cmd_genurlauth },
    { "RESETKEY", IMAPD_STATE_AUTH | IMAPD_STATE_SELECTED, 0,
      imapd_cmd_resetkey },
    { "URLFETCH", IMAPD_STATE_AUTH | IMAPD_STATE_SELECTED, 0,
      imapd_cmd_urlfetch },
    { NULL, 0, 0, NULL }
};

static unsigned session_state(const struct imapd *s)
{
    if (!s->userid)
        return IMAPD_STATE_NOAUTH;
    return s->sel ? IMAPD_STATE_SELECTED : IMAPD_STATE_AUTH;
}

static const struct command *find_command(const char *name)
{
    const struct command *cmd;

    for (cmd = commands; cmd->name; cmd++) {
        if (!strcasecmp(cmd->name, name))
            return cmd;
    }
    return NULL;
}

/* Read the command name (after "UID " when present) and find it.
 * Returns the entry, or NULL with a tagged BAD already sent or a parse
 * error recorded. */
static const struct command *read_command(struct imapd *s, int *c_r)
{
    const struct command *cmd;
    int c;

    c = imap_parse_atom(&s->parser, &s->cmd);
    if (c == EOF)
        return NULL;
    s->is_uid = 0;
    if (!strcasecmp(buf_cstring(&s->cmd), "UID")) {
        if (imapd_sp(s, c))
            return NULL;
        s->is_uid = 1;
        c = imap_parse_atom(&s->parser, &s->cmd);
        if (c == EOF)
            return NULL;
    }
    cmd = find_command(buf_cstring(&s->cmd));
    if (!cmd || (s->is_uid && !cmd->allow_uid)) {
        imap_parse_fail(&s->parser, "Unrecognized command");
        return NULL;
    }
    if (!(cmd->states & session_state(s))) {
        imap_parse_fail(&s->parser, s->userid
                        ? "Command not valid in this state"
                        : "Please login first");
        return NULL;
    }
    if (imapd_uidonly_refuses(s, cmd->name)) {
        imap_parse_fail(&s->parser, "[UIDREQUIRED] Message numbers are not"
                        " allowed with UIDONLY");
        return NULL;
    }
    *c_r = c;
    return cmd;
}

/* Read and run one command.  Returns 0 to go on, -1 to end the
 * session. */
static int run_one_command(struct imapd *s)
{
    const struct command *cmd;
    int c;

    imap_parser_begin(&s->parser);
    buf_reset(&s->tag);
    c = imap_parse_tag(&s->parser, &s->tag);
    if (c == EOF) {
        if (imap_parser_is_fatal(&s->parser))
            return -1;
        if (!s->tag.len)
            imapd_printf(s, "* BAD Null command\r\n");
        else
            imapd_printf(s, "* BAD Invalid tag\r\n");
        imap_parser_eatline(&s->parser);
        return imap_parser_is_fatal(&s->parser) ? -1 : 0;
    }
    if (imapd_sp(s, c) == 0 && (cmd = read_command(s, &c)) != NULL)
        cmd->fn(s, c);

    if (s->parser.error) {
        if (s->parser.error != ERR_EOF && s->parser.error != ERR_TIMEOUT
            && s->parser.error != ERR_IO) {
            imapd_bad(s, "%s", s->parser.errmsg ? s->parser.errmsg
                                                : "Syntax error");
        }
        imap_parser_eatline(&s->parser);
        if (imap_parser_is_fatal(&s->parser)) {
            if (s->parser.error == ERR_TIMEOUT)
                imapd_printf(s, "* BYE Idle timeout\r\n");
            else if (s->parser.error == ERR_TOOBIG)
                imapd_printf(s, "* BYE [TOOBIG] Command too big\r\n");
            return -1;
        }
    }
    return s->logout ? -1 : 0;
}

/* The greeting line. */
static void send_greeting(struct imapd *s)
{
    struct buf caps = BUF_INITIALIZER;

    imapd_capabilities(s, &caps);
    imapd_printf(s, "* OK [CAPABILITY %s] %s Columba IMAP server ready\r\n",
                 buf_cstring(&caps), imapd_servername());
    buf_free(&caps);
}

/* shutdown_file: while it exists, every connection is refused with its
 * first line.  Returns 1 when the session must end. */
static int shutdown_refused(struct imapd *s)
{
    const char *path = config_getstring(IMAPOPT_SHUTDOWN_FILE);
    struct buf text = BUF_INITIALIZER;
    char *nl;

    if (!path || util_read_file(path, &text, 4096))
        return 0;
    nl = memchr(buf_cstring(&text), '\n', text.len);
    if (nl)
        buf_truncate(&text, (size_t)(nl - text.s));
    imapd_printf(s, "* BYE [UNAVAILABLE] %s\r\n",
                 text.len ? buf_cstring(&text) : "Server shutting down");
    buf_free(&text);
    return 1;
}

/* Release everything of one session. */
static void session_end(struct imapd *s)
{
    imapd_deselect(s);
    imapd_auth_session_end(s);
    prot_flush(s->out);
    if (s->tls)
        tls_shutdown(&s->tls);
    prot_free(&s->in);
    prot_free(&s->out);
    buf_free(&s->tag);
    buf_free(&s->cmd);
    free(s->userid);
    acl_auth_free(&s->auth);
    log_set_session(NULL, NULL);
}

int service_init(int argc, char **argv, char **envp)
{
    int64_t t;
    int r;

    (void)argc;
    (void)argv;
    (void)envp;

    t = config_getduration(IMAPOPT_TIMEOUT, 'm');
    idle_timeout = t < IMAPD_MIN_TIMEOUT ? IMAPD_MIN_TIMEOUT
                   : t > 24 * 3600 ? 24 * 3600 : (int)t;
    max_word = (size_t)config_getbytesize(IMAPOPT_MAXWORD, 0);
    if (!max_word)
        max_word = IMAP_PARSE_DEFAULT_WORD;
    t = config_getbytesize(IMAPOPT_MAXMESSAGESIZE, 0);
    imapd_max_message = t > 0 ? (size_t)t : IMAPD_DEFAULT_MESSAGE_MAX;
    t = config_getbytesize(IMAPOPT_MAXARGSSIZE, 'B');
    max_command = t <= 0 ? IMAP_PARSE_DEFAULT_COMMAND
                  : t < 1024 ? 1024 : (size_t)t;

    r = mboxlist_open();
    if (r) {
        xsyslog(LOG_ERR, "cannot open mailbox list", "error=%s",
                error_message(r));
        return r;
    }
    return imapd_auth_init();
}

int service_main(int argc, char **argv, char **envp)
{
    struct imapd session;
    struct imapd *s = &session;
    struct buf sid = BUF_INITIALIZER;

    (void)argc;
    (void)argv;
    (void)envp;
    memset(s, 0, sizeof(*s));
    log_new_session_id(&sid, "imap");
    log_set_session(buf_cstring(&sid), service_client_addr());
    buf_free(&sid);

    s->in = prot_new(0, 0);
    s->out = prot_new(1, 1);
    prot_settimeout(s->in, idle_timeout);
    prot_setwritetimeout(s->out, idle_timeout);
    prot_setflushonread(s->in, s->out);
    imap_parser_init(&s->parser, s->in, s->out);
    s->parser.max_word = max_word;
    s->parser.max_literal = max_word;
    s->parser.max_command = max_command;

    xsyslog(LOG_INFO, "connection", NULL);
    if (imapd_auth_session_start(s)) {
        imapd_printf(s, "* BYE Server error\r\n");
        goto done;
    }
    if (service_implicit_tls && imapd_tls_start(s))
        goto done;
    if (shutdown_refused(s))
        goto done;
    send_greeting(s);

    while (run_one_command(s) == 0)
        ;

done:
    xsyslog(LOG_INFO, "disconnect", "user=%s",
            s->userid ? log_escape(s->userid, 0) : "-");
    session_end(s);
    return 0;
}

void service_abort(int code)
{
    mboxlist_close();
    exit(code);
}

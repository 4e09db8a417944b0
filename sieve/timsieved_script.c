/* timsieved: the script commands of the authenticated state (RFC 5804
 * sections 2.3, 2.6-2.12), on top of sievedir and sieve_compile(). */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/prot.h"
#include "lib/strarray.h"
#include "sieve/sieve.h"
#include "sieve/sievedir.h"

#include "sieve/timsieved.h"

/* Largest stored script GETSCRIPT returns (one an administrator put
 * there by hand may exceed sieve_maxscriptsize). */
#define GETSCRIPT_MAX (16 * 1024 * 1024)

/* Is argument `i` a string? */
static int is_string(const struct timsieved_cmd *c, int i)
{
    return i < c->argc && !c->args[i].is_number;
}

/* Argument `i` as a script name; answers NO and returns NULL when it
 * is not a valid one.  `missing_code` is the response code for a name
 * that cannot exist (NONEXISTENT for commands on existing scripts). */
static const char *script_name(struct timsieved *s, struct timsieved_cmd *c,
                               int i, const char *missing_code)
{
    struct timsieved_arg *a = &c->args[i];

    if (!is_string(c, i) || a->is_toobig
        || sievedir_check_name(a->s.s ? a->s.s : "", a->s.len)) {
        timsieved_reply(s, "NO", missing_code, NULL, "Invalid script name");
        return NULL;
    }
    return buf_cstring(&a->s);
}

/* A storage failure: worth retrying, so TRYLATER. */
static void store_failed(struct timsieved *s, const char *what, int r)
{
    xsyslog(LOG_ERR, "sieve store failed", "user=%s op=%s error=%s",
            log_escape(s->userid, 0), what, error_message(r));
    timsieved_reply(s, "NO", "TRYLATER", NULL,
                    "Server error, try again later");
}

/* Would storing `size` bytes as `name` stay within the quotas?  Answers
 * NO with QUOTA/MAXSIZE or QUOTA/MAXSCRIPTS and returns 0 when not. */
static int quota_ok(struct timsieved *s, const char *name, uint64_t size)
{
    strarray_t names = STRARRAY_INITIALIZER;
    int64_t maxscripts = config_getint(IMAPOPT_SIEVE_MAXSCRIPTS);
    int ok = 1;

    if (size > timsieved_max_script_size()) {
        timsieved_reply(s, "NO", "QUOTA/MAXSIZE", NULL,
                        "Script is larger than allowed");
        return 0;
    }
    if (sievedir_exists(s->dir, name))
        return 1;               /* a replacement adds no script */
    if (sievedir_list(s->dir, &names) == 0 && names.count >= maxscripts) {
        timsieved_reply(s, "NO", "QUOTA/MAXSCRIPTS", NULL,
                        "Too many scripts");
        ok = 0;
    }
    strarray_fini(&names);
    return ok;
}

/* Compile argument `i`; answers NO and returns non-zero when the
 * script is too big or has errors.  Warnings are left in `warnings`. */
static int compile_arg(struct timsieved *s, struct timsieved_cmd *c, int i,
                       struct buf *bc, struct buf *warnings)
{
    struct timsieved_arg *a = &c->args[i];
    int r;

    if (a->is_toobig || a->s.len > timsieved_max_script_size()) {
        timsieved_reply(s, "NO", "QUOTA/MAXSIZE", NULL,
                        "Script is larger than allowed");
        return ERR_TOOBIG;
    }
    r = sieve_compile(a->s.s ? a->s.s : "", a->s.len, bc, warnings);
    if (r == ERR_SIEVE_SYNTAX) {
        buf_trim(warnings);
        if (!warnings->len)
            buf_setcstr(warnings, "Script has errors");
        timsieved_reply_text(s, "NO", NULL, NULL, warnings->s,
                             warnings->len);
    } else if (r) {
        timsieved_reply(s, "NO", NULL, NULL, error_message(r));
    }
    return r;
}

/* OK, with WARNINGS and the text when the compiler left any. */
static void reply_ok_warnings(struct timsieved *s, struct buf *warnings)
{
    buf_trim(warnings);
    if (warnings->len)
        timsieved_reply_text(s, "OK", "WARNINGS", NULL, warnings->s,
                             warnings->len);
    else
        timsieved_ok(s);
}

/* HAVESPACE name size */
void timsieved_cmd_havespace(struct timsieved *s, struct timsieved_cmd *c)
{
    const char *name;

    if (!c->args[1].is_number) {
        timsieved_reply(s, "NO", NULL, NULL, "Syntax: HAVESPACE name size");
        return;
    }
    name = script_name(s, c, 0, NULL);
    if (name && quota_ok(s, name, c->args[1].number))
        timsieved_ok(s);
}

/* PUTSCRIPT name script */
void timsieved_cmd_putscript(struct timsieved *s, struct timsieved_cmd *c)
{
    struct buf bc = BUF_INITIALIZER;
    struct buf warnings = BUF_INITIALIZER;
    const char *name;
    int r;

    if (!is_string(c, 1)) {
        timsieved_reply(s, "NO", NULL, NULL,
                        "Syntax: PUTSCRIPT name script");
        return;
    }
    name = script_name(s, c, 0, NULL);
    if (!name || !quota_ok(s, name, c->args[1].is_toobig
                           ? UINT64_MAX : c->args[1].s.len))
        return;
    if (compile_arg(s, c, 1, &bc, &warnings))
        goto done;

    r = sievedir_put(s->dir, name, c->args[1].s.s, c->args[1].s.len,
                     bc.s, bc.len);
    if (r) {
        store_failed(s, "putscript", r);
        goto done;
    }
    xsyslog(LOG_NOTICE, "putscript", "user=%s script=%s bytes=%zu",
            log_escape(s->userid, 0), log_escape(name, 0),
            c->args[1].s.len);
    reply_ok_warnings(s, &warnings);

done:
    buf_free(&bc);
    buf_free(&warnings);
}

/* CHECKSCRIPT script */
void timsieved_cmd_checkscript(struct timsieved *s, struct timsieved_cmd *c)
{
    struct buf bc = BUF_INITIALIZER;
    struct buf warnings = BUF_INITIALIZER;

    if (!is_string(c, 0))
        timsieved_reply(s, "NO", NULL, NULL, "Syntax: CHECKSCRIPT script");
    else if (!compile_arg(s, c, 0, &bc, &warnings))
        reply_ok_warnings(s, &warnings);
    buf_free(&bc);
    buf_free(&warnings);
}

/* LISTSCRIPTS */
void timsieved_cmd_listscripts(struct timsieved *s, struct timsieved_cmd *c)
{
    strarray_t names = STRARRAY_INITIALIZER;
    char *active = NULL;
    int r;
    int i;

    (void)c;
    r = sievedir_list(s->dir, &names);
    if (r) {
        store_failed(s, "listscripts", r);
        goto done;
    }
    (void)sievedir_active_name(s->dir, &active);
    for (i = 0; i < names.count; i++) {
        timsieved_put_string(s, names.data[i], strlen(names.data[i]));
        if (active && !strcmp(active, names.data[i]))
            prot_puts(s->out, " ACTIVE");
        prot_puts(s->out, "\r\n");
    }
    timsieved_ok(s);

done:
    free(active);
    strarray_fini(&names);
}

/* A script stored without bytecode (copied in by hand, or written by
 * an older server) is compiled before it is activated. */
static int ensure_bytecode(struct timsieved *s, const char *name)
{
    struct buf text = BUF_INITIALIZER;
    struct buf bc = BUF_INITIALIZER;
    struct buf errors = BUF_INITIALIZER;
    int r;

    if (sievedir_has_bytecode(s->dir, name))
        return 0;
    r = sievedir_read_script(s->dir, name, SIEVE_MAX_SCRIPT, &text);
    if (!r)
        r = sieve_compile(text.s ? text.s : "", text.len, &bc, &errors);
    if (!r)
        r = sievedir_put_bytecode(s->dir, name, bc.s, bc.len);
    buf_free(&text);
    buf_free(&bc);
    buf_free(&errors);
    return r;
}

/* SETACTIVE name; "" deactivates */
void timsieved_cmd_setactive(struct timsieved *s, struct timsieved_cmd *c)
{
    const char *name = "";
    int r;

    if (!is_string(c, 0)) {
        timsieved_reply(s, "NO", NULL, NULL, "Syntax: SETACTIVE name");
        return;
    }
    if (c->args[0].s.len) {
        name = script_name(s, c, 0, "NONEXISTENT");
        if (!name)
            return;
        if (!sievedir_exists(s->dir, name)) {
            timsieved_reply(s, "NO", "NONEXISTENT", NULL,
                            "No such script");
            return;
        }
        r = ensure_bytecode(s, name);
        if (r == ERR_SIEVE_SYNTAX) {
            timsieved_reply(s, "NO", NULL, NULL,
                            "Script has errors; upload it again");
            return;
        }
        if (r) {
            store_failed(s, "setactive", r);
            return;
        }
    }
    r = sievedir_activate(s->dir, name);
    if (r == ERR_NOTFOUND) {
        timsieved_reply(s, "NO", "NONEXISTENT", NULL, "No such script");
        return;
    }
    if (r) {
        store_failed(s, "setactive", r);
        return;
    }
    xsyslog(LOG_NOTICE, "setactive", "user=%s script=%s",
            log_escape(s->userid, 0), *name ? log_escape(name, 0) : "-");
    timsieved_ok(s);
}

/* GETSCRIPT name */
void timsieved_cmd_getscript(struct timsieved *s, struct timsieved_cmd *c)
{
    struct buf text = BUF_INITIALIZER;
    const char *name = script_name(s, c, 0, "NONEXISTENT");
    int r;

    if (!name)
        return;
    r = sievedir_read_script(s->dir, name, GETSCRIPT_MAX, &text);
    if (r == ERR_NOTFOUND) {
        timsieved_reply(s, "NO", "NONEXISTENT", NULL, "No such script");
    } else if (r) {
        store_failed(s, "getscript", r);
    } else {
        /* Always a literal: scripts are multi-line. */
        prot_printf(s->out, "{%zu}\r\n", text.len);
        prot_write(s->out, text.s ? text.s : "", text.len);
        prot_puts(s->out, "\r\n");
        timsieved_ok(s);
    }
    buf_free(&text);
}

/* DELETESCRIPT name */
void timsieved_cmd_deletescript(struct timsieved *s,
                                struct timsieved_cmd *c)
{
    const char *name = script_name(s, c, 0, "NONEXISTENT");
    int r;

    if (!name)
        return;
    r = sievedir_delete(s->dir, name);
    if (r == ERR_NOTFOUND)
        timsieved_reply(s, "NO", "NONEXISTENT", NULL, "No such script");
    else if (r == ERR_LOCKED)
        timsieved_reply(s, "NO", "ACTIVE", NULL,
                        "The active script cannot be deleted");
    else if (r)
        store_failed(s, "deletescript", r);
    else {
        xsyslog(LOG_NOTICE, "deletescript", "user=%s script=%s",
                log_escape(s->userid, 0), log_escape(name, 0));
        timsieved_ok(s);
    }
}

/* RENAMESCRIPT oldname newname */
void timsieved_cmd_renamescript(struct timsieved *s,
                                struct timsieved_cmd *c)
{
    const char *oldname = script_name(s, c, 0, "NONEXISTENT");
    const char *newname;
    int r;

    if (!oldname)
        return;
    newname = script_name(s, c, 1, NULL);
    if (!newname)
        return;
    if (!sievedir_exists(s->dir, oldname)) {
        timsieved_reply(s, "NO", "NONEXISTENT", NULL, "No such script");
        return;
    }
    if (sievedir_exists(s->dir, newname)) {
        timsieved_reply(s, "NO", "ALREADYEXISTS", NULL,
                        "A script with that name exists");
        return;
    }
    r = sievedir_rename(s->dir, oldname, newname);
    if (r == ERR_NOTFOUND)
        timsieved_reply(s, "NO", "NONEXISTENT", NULL, "No such script");
    else if (r == ERR_EXISTS)
        timsieved_reply(s, "NO", "ALREADYEXISTS", NULL,
                        "A script with that name exists");
    else if (r)
        store_failed(s, "renamescript", r);
    else {
        xsyslog(LOG_NOTICE, "renamescript", "user=%s script=%s new=%s",
                log_escape(s->userid, 0), log_escape(oldname, 0),
                log_escape(newname, 0));
        timsieved_ok(s);
    }
}

/* Sieve mail filtering (RFC 5228 and extensions): compile a script to
 * bytecode, run the bytecode against one message through host callbacks. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_SIEVE_SIEVE_H
#define COLUMBA_SIEVE_SIEVE_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/strarray.h"

/*
 * Use at delivery (lmtpd): read <name>.bc written by sieve_compile() (or
 * sievec); when sieve_bytecode_is_current() says no, recompile the
 * script text and rewrite the .bc.  Then
 *
 *     struct sieve_result res = SIEVE_RESULT_INITIALIZER;
 *     r = sieve_execute(bc, len, &callbacks, msgctx, &res);
 *
 * and carry out res.actions in order.  On a run-time error (r != 0) the
 * list is an ERROR action (log its reason) followed by the KEEP that
 * must be done instead of everything else.
 */

/* Implementation limits; going over one is a compile error. */
#define SIEVE_MAX_SCRIPT    (1024 * 1024)   /* bytes of script text */
#define SIEVE_MAX_STRING    (64 * 1024)     /* bytes in one string */
#define SIEVE_MAX_DEPTH     32              /* nested blocks and tests */
#define SIEVE_MAX_COMMANDS  10000           /* commands and tests */
#define SIEVE_MAX_LIST      1024            /* strings in one list */
#define SIEVE_MAX_ERRORS    30              /* errors reported, then stop */
#define SIEVE_MAX_INCLUDE   8               /* include nesting at run time */
#define SIEVE_MAX_VARIABLES 256             /* variables per script */

/* Compile `len` bytes of script text with the extensions enabled in
 * imapd.conf (sieve_extensions).  Returns 0 and the bytecode in
 * `bytecode`, or ERR_SIEVE_SYNTAX with one "line N: message" per error
 * in `errors`. */
int sieve_compile(const char *text, size_t len, struct buf *bytecode,
                  struct buf *errors);

/* The space-separated extension list for the ManageSieve SIEVE
 * capability (the enabled ones). Static storage. */
const char *sieve_capability_string(void);

/* Is `ext` (a "require" name such as "fileinto") known and enabled? */
int sieve_extension_enabled(const char *ext);

/* What an execution asks the host to do, in script order. */
enum sieve_action_type {
    SIEVE_ACTION_KEEP,          /* mailbox NULL: the user's INBOX */
    SIEVE_ACTION_FILEINTO,
    SIEVE_ACTION_DISCARD,       /* for the log: no implicit keep; other
                                   actions still deliver */
    SIEVE_ACTION_REDIRECT,
    SIEVE_ACTION_REJECT,        /* refuse with `reason` (is_ereject) */
    SIEVE_ACTION_VACATION,
    SIEVE_ACTION_NOTIFY,
    SIEVE_ACTION_ADDHEADER,
    SIEVE_ACTION_DELETEHEADER,
    SIEVE_ACTION_DUPLICATE_TRACK, /* remember `id` for `seconds` */
    SIEVE_ACTION_ERROR          /* run-time failure: do an implicit keep */
};

struct sieve_action {
    enum sieve_action_type type;
    /* keep / fileinto */
    char *mailbox;              /* fileinto target, UTF-8 as written */
    strarray_t flags;           /* :flags or the imap4flags variable */
    int has_flags;              /* flags were set by the script */
    int is_copy;                /* :copy */
    int is_create;              /* :create */
    char *specialuse;           /* :specialuse */
    char *mailboxid;            /* :mailboxid */
    /* redirect, reject, error */
    char *address;              /* redirect target; vacation: where the
                                   response goes (the envelope sender) */
    char *reason;               /* reject text, error text */
    int is_ereject;
    /* redirect-dsn and redirect-deliverby (RFC 6009), for the MTA */
    char *dsn_notify;           /* :notify "NEVER" or e.g. "SUCCESS,DELAY" */
    char *dsn_ret;              /* :ret "FULL" or "HDRS" */
    int64_t by_relative;        /* :bytimerelative seconds, 0 if absent */
    char *by_absolute;          /* :bytimeabsolute date-time as written */
    char *by_mode;              /* :bymode "notify" or "return" */
    int is_bytrace;             /* :bytrace */
    /* vacation (the response is fully computed) */
    char *from;                 /* :from, or NULL: the host chooses */
    char *subject;              /* :subject or "Auto: " + Subject */
    char *text;                 /* the reason text */
    int64_t seconds;            /* :days/:seconds, clamped to config */
    char *handle;               /* tracking key for the response period */
    strarray_t addresses;       /* :addresses */
    int is_mime;                /* :mime: `text` is a MIME entity */
    char *fcc;                  /* vacation/notify :fcc mailbox (RFC
                                   8580); `flags`, `is_create`,
                                   `specialuse`, `mailboxid` then
                                   describe that copy */
    /* notify */
    char *method;               /* "mailto:..." */
    char *importance;           /* "1", "2", "3" */
    strarray_t options;
    char *message;
    /* addheader / deleteheader / duplicate */
    char *name;                 /* header field name, duplicate id */
    char *value;                /* addheader value */
    int is_last;                /* addheader :last, deleteheader :last */
    int64_t index;              /* deleteheader :index, 0 when absent */
    strarray_t patterns;        /* deleteheader value patterns (empty:
                                   delete all); already matched below */
    strarray_t deleted;         /* deleteheader: the raw values chosen;
                                   remove one occurrence of `name` per
                                   entry, matching the raw value.  Edits
                                   apply in action order, and later tests
                                   of the script already saw them. */
};

/* The outcome of sieve_execute(): the actions in order.  An implicit
 * keep, when RFC 5228 says it happens, is the last action (a KEEP).  On
 * a run-time error the list holds only an ERROR action followed by a
 * KEEP: the host must do that keep and nothing else. */
struct sieve_result {
    struct sieve_action *actions;
    size_t count;
    size_t alloc;
};

#define SIEVE_RESULT_INITIALIZER { NULL, 0, 0 }

/* Is `len` bytes of bytecode of the version this build runs?  Callers
 * recompile the script when not. */
int sieve_bytecode_is_current(const char *bc, size_t len);

/* Release everything a result holds; it is empty afterwards. */
void sieve_result_fini(struct sieve_result *res);

/* Body transforms of the body test (RFC 5173). */
enum sieve_body_transform {
    SIEVE_BODY_RAW,             /* the undecoded body */
    SIEVE_BODY_CONTENT,         /* decoded parts of the given types */
    SIEVE_BODY_TEXT             /* decoded text parts */
};

/* The host's view of the message and of the world.  Any callback may be
 * NULL: the matching test then sees nothing (no header, no mailbox). */
struct sieve_callbacks {
    /* Raw values of header field `name` (case-insensitive), in message
     * order, folding kept or removed as the host likes: appended to
     * `values`. */
    void (*get_header)(void *rock, const char *name, strarray_t *values);
    /* Envelope parts: "from" (reverse path, "" for <>), "to" (this
     * recipient), "auth" (authenticated sender, if any). */
    void (*get_envelope)(void *rock, const char *part, strarray_t *values);
    /* Message size in octets. */
    uint64_t (*get_size)(void *rock);
    /* Body parts for the body test: for SIEVE_BODY_CONTENT the types
     * are content types ("text", "text/html", "" for all); decoded to
     * UTF-8 text.  Appended to `parts`. */
    void (*get_body)(void *rock, enum sieve_body_transform transform,
                     const strarray_t *types, strarray_t *parts);
    /* Environment item (RFC 5183): 0 and the value, or ERR_NOTFOUND. */
    int (*get_environment)(void *rock, const char *name, struct buf *value);
    /* Does mailbox `name` exist (and may the user file into it)? */
    int (*mailbox_exists)(void *rock, const char *name);
    /* Metadata entry `key` of `mailbox` (NULL: server metadata):
     * 0 and the value, or ERR_NOTFOUND. */
    int (*get_metadata)(void *rock, const char *mailbox, const char *key,
                        struct buf *value);
    /* Does a mailbox with special-use `use` exist (in `mailbox` only,
     * when not NULL)? */
    int (*specialuse_exists)(void *rock, const char *mailbox,
                             const char *use);
    /* Has duplicate id `id` been tracked within its period? */
    int (*duplicate_check)(void *rock, const char *id);
    /* Bytecode of the included script `name` (:personal or :global):
     * 0, or ERR_NOTFOUND. */
    int (*get_include)(void *rock, const char *name, int is_global,
                       struct buf *bytecode);
    /* External lists (RFC 6134): is `list` known; does it hold `value`? */
    int (*list_valid)(void *rock, const char *list);
    int (*list_contains)(void *rock, const char *list, const char *value);
    /* Does a mailbox with unique id `id` exist (RFC 9042)? */
    int (*mailboxid_exists)(void *rock, const char *id);
};

/* Run `len` bytes of bytecode (from sieve_compile(), stored by the
 * caller as <name>.bc) for one message; the actions are appended to
 * `res`.  Returns 0, or ERR_SIEVE_RUNTIME (also for bad or truncated
 * bytecode) with only an ERROR action and a KEEP appended to `res`.
 * Bytecode of another version is refused the same way: the caller
 * should recompile the script.  DUPLICATE_TRACK actions are only
 * returned on success. */
int sieve_execute(const char *bytecode, size_t len,
                  const struct sieve_callbacks *cb, void *rock,
                  struct sieve_result *res);

#endif /* COLUMBA_SIEVE_SIEVE_H */

/* Project error codes: every Columba function that can fail returns 0 or
 * one of these, and error_message() turns it into text for logs and
 * client replies. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_LIB_ERROR_H
#define COLUMBA_LIB_ERROR_H

/* One table, extended by later modules: (symbol, message).  Codes are
 * stable only within a build; never store them on disk or send them. */
#define COLUMBA_ERRORS(X) \
    X(IO,              "I/O error") \
    X(NOMEM,           "Out of memory") \
    X(INVALID,         "Invalid argument") \
    X(NOTFOUND,        "Not found") \
    X(EXISTS,          "Already exists") \
    X(LOCKED,          "Resource is locked") \
    X(AGAIN,           "Temporary failure, try again") \
    X(PERMISSION,      "Permission denied") \
    X(TIMEOUT,         "Timed out") \
    X(PROTOCOL,        "Protocol error") \
    X(TOOBIG,          "Too large") \
    X(CORRUPT,         "Data is corrupt") \
    X(INTERNAL,        "Internal error") \
    X(CONFIG,          "Configuration error") \
    X(EOF,             "Unexpected end of data") \
    X(UNSUPPORTED,     "Not supported") \
    X(DB_BADFORMAT,    "Database file has an unknown format") \
    X(DB_BADBACKEND,   "Unknown database backend") \
    X(DB_READONLY,     "Database is open read-only") \
    X(DB_TXN,          "Transaction is no longer valid") \
    X(MAILBOX_NONEXISTENT, "Mailbox does not exist") \
    X(MAILBOX_EXISTS,  "Mailbox already exists") \
    X(MAILBOX_BADNAME, "Invalid mailbox name") \
    X(MAILBOX_NOTSUPPORTED, "Operation is not supported on mailbox") \
    X(QUOTA_EXCEEDED,  "Over quota") \
    X(QUOTA_ROOT_NONEXISTENT, "Quota root does not exist") \
    X(PARTITION_UNKNOWN, "Unknown partition") \
    X(ACL_DENIED,      "Permission denied") \
    X(MAILBOX_NOTLOCKED, "Mailbox is not locked for this operation") \
    X(MAILBOX_USERFLAGS_FULL, "No room for another keyword in mailbox") \
    X(SIEVE_SYNTAX,    "Sieve script has errors") \
    X(SIEVE_RUNTIME,   "Sieve script failed at run time")

#define COLUMBA_ERROR_ENUM(sym, msg) ERR_##sym,
enum columba_error {
    ERR_OK = 0,
    ERR_BASE_ = 0x1000 - 1,
    COLUMBA_ERRORS(COLUMBA_ERROR_ENUM)
    ERR_LAST_
};
#undef COLUMBA_ERROR_ENUM

/* Text for a project error code, or for a positive errno value when the
 * code is below ERR_BASE_ (a convenience for system-call results).
 * Never NULL; the string is static. */
const char *error_message(int r);

/* The symbolic name ("ERR_NOTFOUND") of a project code, for tests and
 * debugging; "ERR_UNKNOWN" for anything else. */
const char *error_name(int r);

#endif /* COLUMBA_LIB_ERROR_H */

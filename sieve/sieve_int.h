/* Sieve internals shared by the parser, the compiler and the
 * interpreter: the parse tree, the command and tag tables, opcodes. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_SIEVE_SIEVE_INT_H
#define COLUMBA_SIEVE_SIEVE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/strarray.h"

/* Extensions, one bit each (the order of sieve_ext_names[]). */
enum sieve_ext {
    EXT_FILEINTO, EXT_ENVELOPE, EXT_ENCODED_CHARACTER, EXT_REJECT,
    EXT_EREJECT, EXT_VACATION, EXT_VACATION_SECONDS, EXT_COPY, EXT_BODY,
    EXT_ENVIRONMENT, EXT_VARIABLES, EXT_RELATIONAL, EXT_IMAP4FLAGS,
    EXT_SUBADDRESS, EXT_DATE, EXT_INDEX, EXT_EDITHEADER, EXT_ENOTIFY,
    EXT_IHAVE, EXT_MAILBOX, EXT_MBOXMETADATA, EXT_SERVERMETADATA,
    EXT_INCLUDE, EXT_DUPLICATE, EXT_REGEX, EXT_EXTLISTS, EXT_SPECIAL_USE,
    EXT_FCC, EXT_MAILBOXID, EXT_CMP_NUMERIC, EXT_CMP_UNICODE,
    EXT_REDIRECT_DSN, EXT_REDIRECT_DELIVERBY,
    EXT_COUNT_
};
#define EXT_BIT(e) (UINT64_C(1) << (e))
#define EXT_NONE 0xffu

extern const char *const sieve_ext_names[EXT_COUNT_];

/* Bits of the extensions imapd.conf enables. */
uint64_t sieve_enabled_extensions(void);
/* Index of extension `name`, or -1. */
int sieve_ext_lookup(const char *name);

/* Tags; values also appear in bytecode, so append only. */
enum sieve_tag {
    TAG_IS, TAG_CONTAINS, TAG_MATCHES, TAG_REGEX, TAG_VALUE, TAG_COUNT,
    TAG_COMPARATOR, TAG_ALL, TAG_LOCALPART, TAG_DOMAIN, TAG_USER,
    TAG_DETAIL, TAG_OVER, TAG_UNDER, TAG_COPY, TAG_CREATE, TAG_FLAGS,
    TAG_DAYS, TAG_SECONDS, TAG_SUBJECT, TAG_FROM, TAG_ADDRESSES, TAG_MIME,
    TAG_HANDLE, TAG_RAW, TAG_CONTENT, TAG_TEXT, TAG_LOWER, TAG_UPPER,
    TAG_LOWERFIRST, TAG_UPPERFIRST, TAG_QUOTEWILDCARD, TAG_QUOTEREGEX,
    TAG_ENCODEURL, TAG_LENGTH, TAG_ZONE, TAG_ORIGINALZONE, TAG_INDEX,
    TAG_LAST, TAG_PERSONAL, TAG_GLOBAL, TAG_ONCE, TAG_OPTIONAL,
    TAG_IMPORTANCE, TAG_OPTIONS, TAG_MESSAGE, TAG_HEADER, TAG_UNIQUEID,
    TAG_LIST, TAG_SPECIALUSE, TAG_MAILBOXID, TAG_FCC, TAG_NOTIFY, TAG_RET,
    TAG_BYTIMERELATIVE, TAG_BYTIMEABSOLUTE, TAG_BYMODE, TAG_BYTRACE,
    TAG_COUNT_
};

/* Opcodes of commands and tests (bytecode: append only). */
enum sieve_op {
    OP_END = 0, OP_JUMP, OP_JUMPF, OP_STOP, OP_KEEP, OP_DISCARD,
    OP_REDIRECT, OP_FILEINTO, OP_REJECT, OP_EREJECT, OP_VACATION, OP_SET,
    OP_ADDFLAG, OP_SETFLAG, OP_REMOVEFLAG, OP_ADDHEADER, OP_DELETEHEADER,
    OP_NOTIFY, OP_INCLUDE, OP_RETURN, OP_GLOBAL, OP_ERROR, OP_NOP,
    /* tests */
    OP_T_ADDRESS = 64, OP_T_ENVELOPE, OP_T_HEADER, OP_T_EXISTS, OP_T_SIZE,
    OP_T_TRUE, OP_T_FALSE, OP_T_NOT, OP_T_ANYOF, OP_T_ALLOF, OP_T_BODY,
    OP_T_STRING, OP_T_HASFLAG, OP_T_DATE, OP_T_CURRENTDATE,
    OP_T_ENVIRONMENT, OP_T_MAILBOXEXISTS, OP_T_METADATA,
    OP_T_METADATAEXISTS, OP_T_SERVERMETADATA, OP_T_SERVERMETADATAEXISTS,
    OP_T_DUPLICATE, OP_T_IHAVE, OP_T_VALID_EXT_LIST, OP_T_SPECIALUSE_EXISTS,
    OP_T_VALID_NOTIFY_METHOD, OP_T_NOTIFY_METHOD_CAPABILITY,
    OP_T_MAILBOXIDEXISTS
};

/* Argument and value kinds (also the bytecode value type bytes). */
enum sieve_argtype {
    ARG_NONE = 0, ARG_TAG = 't', ARG_NUMBER = 'n', ARG_STRING = 's',
    ARG_LIST = 'l'
};

/* --- parse tree --- */

struct sieve_arg {
    enum sieve_argtype type;
    int line, col;
    char *tag;                  /* ARG_TAG: the name without ':' */
    uint64_t number;            /* ARG_NUMBER */
    strarray_t strings;         /* ARG_STRING (one) or ARG_LIST */
};

struct sieve_node {
    char *name;                 /* lower-cased identifier */
    int line, col;
    struct sieve_arg *args;
    size_t nargs;
    struct sieve_node **tests;  /* the test or test list */
    size_t ntests;
    int has_test_list;          /* the tests were a "( ... )" list */
    int has_block;
    struct sieve_node *block;   /* first command of the block */
    struct sieve_node *next;    /* next command in the same block */
};

struct sieve_parser {
    struct buf *errors;
    int nerrors;
    int ncommands;
};

/* Append "line N: column C: message" to p->errors. */
void sieve_error(struct sieve_parser *p, int line, int col,
                 const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Parse a script to a list of commands (NULL for an empty script).
 * Errors go to p; the caller checks p->nerrors. */
struct sieve_node *sieve_parse(struct sieve_parser *p, const char *text,
                               size_t len);
/* Free a command list (NULL is fine). */
void sieve_node_free(struct sieve_node *n);

/* --- bytecode ---
 *
 * A bytecode file is:
 *   "CSBC" magic, version byte (SIEVE_BC_VERSION), then a u64
 *   extension bitmask (big-endian, bit i = enum sieve_ext i) of the
 *   extensions the script required, then instructions until OP_END.
 * Instruction and test nodes share one form:
 *   op (u8), body length (u32 BE, the bytes after this field), then
 *   for OP_JUMP/OP_JUMPF a u32 absolute target offset; then
 *   ntags (u8), per tag: tag id (u8) and, for tags with a value, one
 *   value; npos (u8), that many values; nsub (u8) and that many test
 *   nodes (anyof/allof/not and OP_JUMPF's condition).
 * A value is a type byte then: 'n' an u64 BE; 's' a u32 BE length, the
 * bytes and a NUL; 'l' a u16 BE count of 's' bodies (length, bytes, NUL).
 * Strings hold the text after encoded-character decoding; "${...}"
 * variable references are expanded at run time.
 */
#define SIEVE_BC_MAGIC   "CSBC"
#define SIEVE_BC_VERSION 1
#define SIEVE_BC_HEADER  13

/* Compile a parsed script; errors into p.  Returns 0 or
 * ERR_SIEVE_SYNTAX. */
int sieve_generate(struct sieve_parser *p, struct sieve_node *script,
                   uint64_t enabled, struct buf *out);

/* --- matching (sieve_match.c) --- */

enum sieve_match { MATCH_IS, MATCH_CONTAINS, MATCH_MATCHES, MATCH_REGEX,
                   MATCH_VALUE, MATCH_COUNT };
enum sieve_cmp { CMP_OCTET, CMP_ASCII_CASEMAP, CMP_UNICODE_CASEMAP,
                 CMP_NUMERIC };
enum sieve_rel { REL_GT, REL_GE, REL_LT, REL_LE, REL_EQ, REL_NE };

/* Comparator by name, or -1. */
int sieve_cmp_lookup(const char *name);
/* Relational operator by name ("gt", ...), or -1. */
int sieve_rel_lookup(const char *name);

/* Does `value` match `key` with the match type and comparator?  For
 * MATCH_MATCHES and MATCH_REGEX, `groups` (when not NULL) receives the
 * match variables ${0}..${9}.  Returns 1, 0, or -1 for a bad regex. */
int sieve_match(enum sieve_match mt, enum sieve_cmp cmp, enum sieve_rel rel,
                const char *value, const char *key, strarray_t *groups);

/* Compare two strings with a comparator's ordering: <0, 0, >0. */
int sieve_cmp_order(enum sieve_cmp cmp, const char *a, const char *b);

/* Parse an address list header value into addr-specs (appended). */
void sieve_parse_addresses(const char *value, strarray_t *out);

/* Address parts. */
enum sieve_addrpart { ADDR_ALL, ADDR_LOCALPART, ADDR_DOMAIN, ADDR_USER,
                      ADDR_DETAIL };
/* The part of `addr` into `out`; returns 0, or -1 when the part does not
 * exist (no detail). */
int sieve_address_part(const char *addr, enum sieve_addrpart part,
                       struct buf *out);

/* Can `re` be compiled (for the compile-time check)? */
int sieve_regex_valid(const char *re, char *why, size_t whylen);

#endif /* COLUMBA_SIEVE_SIEVE_INT_H */

/* Sieve interpreter internals: the bytecode reader and run state shared
 * by the command and test halves of the interpreter. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_SIEVE_SIEVE_INTERP_H
#define COLUMBA_SIEVE_SIEVE_INTERP_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/strarray.h"

#include "sieve/sieve.h"
#include "sieve/sieve_int.h"

#define SIEVE_MAX_ACTIONS 256

/* One decoded bytecode value; strings point into the bytecode. */
struct sieve_val {
    int type;                   /* enum sieve_argtype, 0 when absent */
    const char *s;              /* 's': NUL-terminated */
    uint64_t num;               /* 'n' */
    const unsigned char *list;  /* 'l': the first string body */
    unsigned count;             /* 'l': strings */
};

/* One decoded node (see the format in sieve_int.h). */
struct sieve_inode {
    int op;
    size_t start, end;          /* offsets of the node and after it */
    uint32_t target;            /* OP_JUMP, OP_JUMPF */
    struct sieve_val tag[TAG_COUNT_];
    int has[TAG_COUNT_];
    int npos;
    struct sieve_val pos[4];
    int nsub;
    size_t sub;                 /* offset of the first sub-test */
};

/* Per-script state: its bytecode, variables and global declarations. */
struct sieve_frame {
    const unsigned char *bc;
    size_t len;
    uint64_t exts;
    strarray_t names, values;   /* local variables */
    strarray_t globals;         /* names declared global */
    int returned;
};

struct sieve_interp {
    const struct sieve_callbacks *cb;
    void *rock;
    struct sieve_result *res;
    struct sieve_frame *frame;
    strarray_t gnames, gvalues; /* global variables */
    strarray_t groups;          /* match variables ${0}..${9} */
    strarray_t flags;           /* the imap4flags internal variable */
    strarray_t once;            /* scripts included with :once */
    int implicit_keep;
    int stopped;
    int depth;                  /* include nesting */
    int test_depth;             /* nested tests being evaluated */
    int vacation_done;
    int has_reject;
    int failed;
    struct buf error;
};

/* Decode the node at `off`; 0, or -1 (error set) for bad bytecode. */
int sieve_decode(struct sieve_interp *in, size_t off,
                 struct sieve_inode *n);
/* Record a run-time error (first one wins); returns -1. */
int sieve_fail(struct sieve_interp *in, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The string value expanded (variables), into `out`. */
const char *sieve_str(struct sieve_interp *in, const struct sieve_val *v,
                      struct buf *out);
/* The list value expanded, appended to `out`. */
void sieve_list(struct sieve_interp *in, const struct sieve_val *v,
                strarray_t *out);
/* The first string of a list value (or the string), expanded. */
const char *sieve_first(struct sieve_interp *in, const struct sieve_val *v,
                        struct buf *out);
/* Evaluate the test node at `off`: 1, 0, or -1 on error. */
int sieve_eval_test(struct sieve_interp *in, size_t off);
/* Split flag strings on spaces into `out`, without duplicates. */
void sieve_flags_add(strarray_t *out, const strarray_t *in);
/* Variable value or NULL. */
const char *sieve_var_get(struct sieve_interp *in, const char *name);
/* Set a variable. */
void sieve_var_set(struct sieve_interp *in, const char *name,
                   const char *value);
/* Run a script's bytecode in a new frame. */
int sieve_run_script(struct sieve_interp *in, const char *bc, size_t len);

/* A new action at the end of the result, or NULL (error set) when the
 * script asked for too many. */
struct sieve_action *sieve_add_action(struct sieve_interp *in,
                                      enum sieve_action_type type);
/* The expanded string value of tag `tag`, malloc'd, or NULL if absent. */
char *sieve_opt_str(struct sieve_interp *in, const struct sieve_inode *n,
                    int tag);
/* Fail if action type `t` cannot join the actions so far (reject). */
int sieve_check_reject(struct sieve_interp *in, enum sieve_action_type t);
/* Copy :flags, :create, :specialuse, :mailboxid of `n` into `a`. */
void sieve_fcc_options(struct sieve_interp *in, const struct sieve_inode *n,
                       struct sieve_action *a);
/* The commands implemented in sieve_actions.c. */
int sieve_do_editheader(struct sieve_interp *in,
                        const struct sieve_inode *n);
int sieve_do_vacation(struct sieve_interp *in, const struct sieve_inode *n);
int sieve_do_notify(struct sieve_interp *in, const struct sieve_inode *n);
/* Raw values of header `name` as the host gives them, with the
 * addheader/deleteheader edits of this run applied, appended. */
void sieve_raw_headers(struct sieve_interp *in, const char *name,
                       strarray_t *out);
/* Decoded values of header `name` (RFC 2047, unfolded), appended. */
void sieve_header_values(struct sieve_interp *in, const char *name,
                         strarray_t *out);
/* Does a match against `values` with node `n`'s match type and
 * comparator succeed for any of `keys`?  1, 0, -1 on error. */
int sieve_match_node(struct sieve_interp *in, const struct sieve_inode *n,
                     const strarray_t *values, const strarray_t *keys);

#endif /* COLUMBA_SIEVE_SIEVE_INTERP_H */

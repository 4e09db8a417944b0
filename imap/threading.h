/* Message threading and subject normalisation for IMAP SORT and THREAD
 * (RFC 5256): base-subject extraction, ORDEREDSUBJECT and REFERENCES. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_IMAP_THREADING_H
#define COLUMBA_IMAP_THREADING_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "lib/buf.h"
#include "lib/strarray.h"

/*
 * Output form (RFC 5256 section 4, thread-list):
 *
 *   "(3 6 (4 23)(44 7 96))(2)"
 *
 * Each top-level thread is parenthesised.  A message is its number; a
 * message with one child is followed by SP and the child's thread; one
 * with several children by SP and each child's thread in parentheses.
 * A placeholder (a message referred to but not present) prints nothing
 * of its own, only its parenthesised children: "((3)(5))".  Only
 * top-level placeholders survive the REFERENCES pruning step.
 *
 * Bounds: at most THREADING_MAX_REFS message-ids are read from one
 * References field (the last ones count, they are the nearest
 * ancestors), a message-id is at most THREADING_MAX_MSGID bytes, and
 * no step recurses, so a hostile chain of replies cannot exhaust the
 * stack.
 */

#define THREADING_MAX_REFS 256
#define THREADING_MAX_MSGID 1024

/* One message handed to a threading algorithm.  The caller fills it
 * and keeps the array in mailbox order (that order breaks date ties). */
struct threading_msg {
    uint32_t id;                /* what to print: msgno or UID */
    time_t date;                /* sent date, else the internal date */
    const char *subject;        /* decoded UTF-8 Subject, or NULL */
    const char *msgid;          /* Message-ID "<x@y>", or NULL */
    strarray_t refs;            /* References (else In-Reply-To) ids */
};

/* Write the RFC 5256 section 2.1 base subject of the decoded UTF-8
 * `subject` to `out` (reset first), not yet folded.  Returns 1 when
 * the subject marks a reply or forward ("Re:", "Fwd:", "(fwd)",
 * "[fwd: ...]"), else 0.  NULL reads as "". */
int threading_base_subject(const char *subject, struct buf *out);

/* The collation key of a subject: its base subject, NFKC case-folded
 * (charset_search_normalise), into `out` (reset first).  Sets
 * *is_reply_r (may be NULL) as threading_base_subject() returns. */
void threading_subject_key(const char *subject, struct buf *out,
                           int *is_reply_r);

/* Append the message-ids ("<...>", brackets kept, white space inside
 * removed) found in a References or In-Reply-To value to `ids`.  Ids
 * longer than THREADING_MAX_MSGID are skipped; only the last
 * THREADING_MAX_REFS are kept. */
void threading_parse_msgids(const char *text, strarray_t *ids);

/* THREAD=ORDEREDSUBJECT over `n` messages: append the thread-list (see
 * above) to `out`. */
void threading_orderedsubject(const struct threading_msg *msgs, size_t n,
                              struct buf *out);

/* THREAD=REFERENCES over `n` messages: append the thread-list to
 * `out`. */
void threading_references(const struct threading_msg *msgs, size_t n,
                          struct buf *out);

/* Release the strings held by `msg->refs`. */
void threading_msg_fini(struct threading_msg *msg);

#endif /* COLUMBA_IMAP_THREADING_H */

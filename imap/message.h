/* Messages: parse an RFC 5322 / MIME message held in memory into a tree
 * of parts, and render what IMAP FETCH needs from it (ENVELOPE, BODY,
 * BODYSTRUCTURE, BODY[section] ranges, header fields, search text). */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_IMAP_MESSAGE_H
#define COLUMBA_IMAP_MESSAGE_H

#include <stddef.h>

#include "lib/buf.h"
#include "lib/strarray.h"

/*
 * The part tree
 * -------------
 * message_parse() never copies the message: every part records offsets
 * into the caller's buffer, which must stay mapped while the tree is
 * used.  Offsets and sizes are of the bytes as stored; a message stored
 * with bare LF line ends therefore reports smaller sizes than its CRLF
 * form would have (callers that store mail keep it in CRLF form).
 *
 *   root (the message: header = message header, body = message body)
 *    |-- multipart/...:  subparts[0..n-1], each a part with its own MIME
 *    |                   header; numbered 1..n in BODY[section]
 *    `-- message/rfc822: `message` is the encapsulated message, a part
 *                        like root whose header and body lie inside
 *                        this part's body
 *
 * The root and every `message` carry the parsed envelope.  A part's
 * header size includes the blank line that ends it; a header without
 * one runs to the end of the part and leaves an empty body.  In a
 * multipart the line break before each boundary belongs to the boundary
 * (RFC 2046 5.1.1), the preamble and epilogue belong to no part, a
 * missing closing boundary ends the last part at the end of the body,
 * and a multipart without any part (or without a boundary parameter)
 * gets one synthetic text/plain part with an empty header and the whole
 * body, so BODYSTRUCTURE stays valid.  Only message/rfc822 is opened
 * as an encapsulated message (whatever transfer encoding it claims);
 * message/global and the other message types are leaves, which keeps
 * the output valid for RFC 3501 clients too.
 *
 * Parsing is lenient and bounded: nesting deeper than MESSAGE_MAX_DEPTH
 * (multiparts and encapsulated messages together) and parts beyond
 * MESSAGE_MAX_PARTS are read as text/plain leaves; only the first
 * MESSAGE_MAX_FIELDS header fields of a part and the first
 * MESSAGE_MAX_VALUE bytes of a field are interpreted; when a field
 * repeats (two Content-Type lines), the first one counts.  Every scan is
 * linear in the part size, so the total work is at most linear times the
 * depth bound.
 *
 * Rendering (RFC 3501 / RFC 9051 grammar)
 * ---------------------------------------
 * Strings are sent quoted when they are short 7-bit text without CR or
 * LF, as a literal "{n}\r\n..." otherwise; absent values are NIL.  Media
 * types, subtypes, encodings, disposition types and parameter names are
 * upper-cased, as Cyrus sends them; parameter values, addresses and
 * header-derived strings are sent as they appear in the message (encoded
 * words and RFC 2231 parameters are not decoded: clients decode them;
 * message_part_param() does it for our own use).  A header field that
 * is present but empty gives "", an absent one NIL.  A part without a valid
 * Content-Type is TEXT/PLAIN with ("CHARSET" "us-ascii"), or MESSAGE/
 * RFC822 inside multipart/digest.  The body-fld-lines of a part is the
 * number of LF characters in its body, plus one if the body does not end
 * with LF.  An address without a domain gets "unspecified-domain" so it
 * cannot be mistaken for a group marker; a bare addr-spec followed by a
 * comment ("a@b (Ann)") takes the comment as its name.  Sender and
 * Reply-To fall back to From when absent or empty (RFC 3501 7.4.2).
 */

#define MESSAGE_MAX_DEPTH 50
#define MESSAGE_MAX_PARTS 10000
#define MESSAGE_MAX_FIELDS 1000
#define MESSAGE_MAX_VALUE 65536
#define MESSAGE_MAX_PARAMS 64
#define MESSAGE_MAX_ADDRESSES 1000

/* Hex SHA-1 of a whole message, the GUID of single-instance storage. */
#define MESSAGE_GUID_HEXLEN 40

/* One element of an address list.  A group is a start element (mailbox
 * = group name, domain = NULL), its members, and an end element (all
 * four NULL).  Strings are raw header text, owned by the list. */
struct message_address {
    char *name;                 /* display name, or NULL */
    char *route;                /* obsolete route "@a,@b", or NULL */
    char *mailbox;              /* local part (quotes kept) */
    char *domain;
    struct message_address *next;
};

/* The ENVELOPE fields: unfolded raw values of the first instance of
 * each header field (NULL when absent) and parsed address lists. */
struct message_envelope {
    char *date;
    char *subject;
    struct message_address *from;
    struct message_address *sender;
    struct message_address *reply_to;
    struct message_address *to;
    struct message_address *cc;
    struct message_address *bcc;
    char *in_reply_to;
    char *message_id;
};

/* Parameters of a Content-Type or Content-Disposition field: names
 * upper-cased, values as written with quoting removed, in order. */
struct message_params {
    strarray_t names;
    strarray_t values;
};

/* One MIME part; see the design comment above.  All strings are owned
 * by the tree; NULL means the field is absent. */
struct message_part {
    size_t header_offset;
    size_t header_size;
    size_t body_offset;
    size_t body_size;
    size_t lines;
    char *type;                 /* "TEXT", "MULTIPART", ... */
    char *subtype;              /* "PLAIN", "MIXED", ... */
    struct message_params params;
    char *id;                   /* Content-ID */
    char *description;          /* Content-Description */
    char *encoding;             /* "BASE64"...; NULL means 7BIT */
    char *md5;                  /* Content-MD5 */
    char *disposition;          /* "ATTACHMENT", "INLINE", ... */
    struct message_params disp_params;
    strarray_t language;        /* Content-Language tags */
    char *location;             /* Content-Location */
    struct message_part *subparts;      /* multipart children */
    size_t nsubparts;
    struct message_part *message;       /* message/rfc822 content */
    struct message_envelope *envelope;  /* root and `message` parts */
};

/* A parsed message: the caller's buffer and the part tree. */
struct message {
    const char *base;
    size_t size;
    struct message_part root;
    size_t nparts;              /* parts in the tree, root included */
};

/* What a BODY[section] specifier selects. */
enum message_section_kind {
    MESSAGE_SECTION_PART,       /* "" (whole message) or "1.2" (a body) */
    MESSAGE_SECTION_HEADER,     /* "HEADER", "1.HEADER" */
    MESSAGE_SECTION_FIELDS,     /* "HEADER.FIELDS": filter the header */
    MESSAGE_SECTION_FIELDS_NOT, /* "HEADER.FIELDS.NOT" */
    MESSAGE_SECTION_TEXT,       /* "TEXT", "1.TEXT" */
    MESSAGE_SECTION_MIME        /* "1.MIME" */
};

/* A resolved section: bytes [offset, offset+size) of the message.  For
 * the FIELDS kinds the range is the whole header, to be passed to
 * message_header_filter(). */
struct message_section {
    enum message_section_kind kind;
    size_t offset;
    size_t size;
    const struct message_part *part;    /* the part the range lies in */
};

/* Flags for message_header_get(). */
#define MESSAGE_HEADER_RAW 0x1    /* value as stored, folds and all */
#define MESSAGE_HEADER_DECODE 0x2 /* unfold, RFC 2047 decode to UTF-8 */

/* Parse `size` bytes at `base` into a new tree stored in *msg_r (free
 * with message_free()).  `base` must outlive the tree.  Any byte
 * sequence parses (a message is at worst one text/plain part), so the
 * only error is ERR_INVALID for a NULL base with a non-zero size. */
int message_parse(const char *base, size_t size, struct message **msg_r);

/* Free a tree from message_parse() and clear *msgp; NULL accepted. */
void message_free(struct message **msgp);

/* Append the ENVELOPE of a message-level part (the root, or the
 * `message` of a message/rfc822 part) to `out`; NIL if `part` has no
 * envelope. */
void message_write_envelope(const struct message_part *part,
                            struct buf *out);

/* Append the BODYSTRUCTURE of the message to `out` when `extended` is
 * set, else its BODY (no extension data). */
void message_write_bodystructure(const struct message *msg, int extended,
                                 struct buf *out);

/* Append the BODYSTRUCTURE (or BODY) of one part to `out`. */
void message_write_part_structure(const struct message_part *part,
                                  int extended, struct buf *out);

/* Resolve a section specifier as written in BODY[...] without its
 * header list: "", "HEADER", "TEXT", "1", "1.2.MIME", "3.HEADER.FIELDS",
 * "2.TEXT"; keywords in any case.  Returns 0 and fills *sec_r, or
 * ERR_INVALID for bad syntax and ERR_NOTFOUND for a section the message
 * does not have (part numbers out of range, HEADER or TEXT of a part
 * that is not message/rfc822, MIME without a part number). */
int message_section_find(const struct message *msg, const char *section,
                         struct message_section *sec_r);

/* Append to `values` every instance of header field `name` (any case)
 * in the header of `part`, in order: unfolded and trimmed by default,
 * raw with MESSAGE_HEADER_RAW, decoded to UTF-8 with
 * MESSAGE_HEADER_DECODE.  Returns 0, or ERR_NOTFOUND if there is none. */
int message_header_get(const struct message *msg,
                       const struct message_part *part, const char *name,
                       unsigned flags, strarray_t *values);

/* Append to `out` the fields of the header `hdr` (`len` bytes) whose
 * names are in `names` (any case), or with `is_not` those that are not,
 * exactly as stored, then the terminating blank line (CRLF), as
 * BODY[HEADER.FIELDS (...)] returns them. */
void message_header_filter(const char *hdr, size_t len,
                           const strarray_t *names, int is_not,
                           struct buf *out);

/* The first value of parameter `name` (any case) of a part's
 * Content-Type, or with `from_disposition` of its Content-Disposition,
 * decoded to UTF-8: RFC 2231 sections joined and converted, RFC 2047
 * words decoded.  Returns a string the caller frees, or NULL. */
char *message_part_param(const struct message_part *part, const char *name,
                         int from_disposition);

/* Append the body of a part with its transfer encoding (base64 or
 * quoted-printable) undone.  Returns 0, or ERR_CORRUPT for damaged
 * base64 (what could be decoded is still appended). */
int message_part_decode_body(const struct message *msg,
                             const struct message_part *part,
                             struct buf *out);

/* Callback for message_foreach_text: the UTF-8 text of one part. */
typedef int message_text_cb(const struct message_part *part,
                            const char *text, size_t len, void *rock);

/* Call `cb` with the decoded UTF-8 text of every text/... leaf part,
 * encapsulated messages included, in order: transfer encoding undone,
 * charset converted (unknown charsets read as UTF-8, bad bytes as
 * U+FFFD).  Markup (text/html) is passed on as it is: stripping it is
 * the indexer's business.  The text is valid until `cb` returns.
 * Stops at and returns the first non-zero value `cb` returns; 0
 * otherwise. */
int message_foreach_text(const struct message *msg, message_text_cb *cb,
                         void *rock);

/* Write the GUID (lower-case hex SHA-1 of all `size` bytes) into
 * `hex_r`, NUL-terminated. */
void message_guid(const char *base, size_t size,
                  char hex_r[MESSAGE_GUID_HEXLEN + 1]);

#endif /* COLUMBA_IMAP_MESSAGE_H */

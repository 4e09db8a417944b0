/* Mailbox cache (cyrus.cache): building a message's cache record at
 * append, and reading fields and BODY[section] ranges back with every
 * length checked.  The format is described in imap/mailbox.c. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <string.h>

#include "lib/error.h"
#include "lib/log.h"
#include "lib/strarray.h"
#include "lib/util.h"
#include "lib/xmalloc.h"

#include "imap/mailbox.h"
#include "imap/mailbox_internal.h"

#define CACHE_MAGIC "ColCache"
#define CACHE_RECORD_HEAD 12    /* length, uid, field count */
#define CACHE_FIELD_HEAD 12     /* id, length, crc */
#define SECTION_NODE_SIZE 24    /* six words */

/* The cached header fields, in field order from MAILBOX_CACHE_HDR_FROM. */
static const char *const cached_headers[] = {
    "From", "Sender", "Reply-To", "To", "Cc", "Bcc", "Subject", "Date",
    "Message-ID", "In-Reply-To", "References", "Content-Type", "List-Id"
};
#define NCACHED_HEADERS (sizeof(cached_headers) / sizeof(cached_headers[0]))

/* ---------------------------------------------------------------- */
/* File header                                                        */

void cache_header_encode(uint32_t generation,
                         unsigned char out[CACHE_HEADER_SIZE])
{
    memset(out, 0, CACHE_HEADER_SIZE);
    memcpy(out, CACHE_MAGIC, 8);
    mb_put32(out + 8, MAILBOX_CACHE_VERSION);
    mb_put32(out + 12, generation);
    mb_put32(out + 28, mailbox_crc32(out, 28));
}

int cache_header_check(const char *path, const char *base, size_t size,
                       uint32_t *generation_r)
{
    const unsigned char *p = (const unsigned char *)base;
    const char *why = NULL;

    if (size < CACHE_HEADER_SIZE)
        why = "truncated header";
    else if (memcmp(p, CACHE_MAGIC, 8))
        why = "bad magic";
    else if (mb_get32(p + 28) != mailbox_crc32(p, 28))
        why = "header checksum mismatch";
    if (why) {
        xsyslog(LOG_ERR, "mailbox cache corrupt", "path=%s error=%s",
                path, why);
        return ERR_CORRUPT;
    }
    if (mb_get32(p + 8) != MAILBOX_CACHE_VERSION) {
        xsyslog(LOG_ERR, "mailbox cache has unknown version",
                "path=%s version=%u", path, mb_get32(p + 8));
        return ERR_DB_BADFORMAT;
    }
    *generation_r = mb_get32(p + 12);
    return 0;
}

/* ---------------------------------------------------------------- */
/* Building a record                                                  */

static void put32_buf(struct buf *out, uint32_t v)
{
    unsigned char b[4];

    mb_put32(b, v);
    buf_appendmap(out, b, 4);
}

static void add_field(struct buf *out, enum mailbox_cache_field id,
                      const char *data, size_t len)
{
    put32_buf(out, (uint32_t)id);
    put32_buf(out, (uint32_t)len);
    put32_buf(out, mailbox_crc32(data, len));
    buf_appendmap(out, data, len);
}

/* Append the pre-order node list of `part` (see the design comment).
 * Offsets fit in 32 bits: appends refuse messages of 4 GiB or more. */
static void sections_write(const struct message_part *part, struct buf *out)
{
    size_t i;

    put32_buf(out, (uint32_t)part->header_offset);
    put32_buf(out, (uint32_t)part->header_size);
    put32_buf(out, (uint32_t)part->body_offset);
    put32_buf(out, (uint32_t)part->body_size);
    put32_buf(out, (uint32_t)part->nsubparts);
    put32_buf(out, part->message ? 1 : 0);
    if (part->message)
        sections_write(part->message, out);
    for (i = 0; i < part->nsubparts; i++)
        sections_write(&part->subparts[i], out);
}

void cache_build_record(const struct message *msg, uint32_t uid,
                        struct buf *out)
{
    struct buf field = BUF_INITIALIZER;
    strarray_t names = STRARRAY_INITIALIZER;
    size_t start = out->len, i;

    put32_buf(out, 0);          /* length, set below */
    put32_buf(out, uid);
    put32_buf(out, MAILBOX_CACHE_NFIELDS);

    message_write_envelope(&msg->root, &field);
    add_field(out, MAILBOX_CACHE_ENVELOPE, field.s, field.len);
    buf_reset(&field);
    message_write_bodystructure(msg, 1, &field);
    add_field(out, MAILBOX_CACHE_BODYSTRUCTURE, field.s, field.len);
    buf_reset(&field);
    message_write_bodystructure(msg, 0, &field);
    add_field(out, MAILBOX_CACHE_BODY, field.s, field.len);
    buf_reset(&field);
    sections_write(&msg->root, &field);
    add_field(out, MAILBOX_CACHE_SECTIONS, field.s, field.len);

    for (i = 0; i < NCACHED_HEADERS; i++) {
        buf_reset(&field);
        strarray_truncate(&names, 0);
        strarray_append(&names, cached_headers[i]);
        message_header_filter(msg->base + msg->root.header_offset,
                              msg->root.header_size, &names, 0, &field);
        /* Drop the blank line the filter ends with. */
        if (field.len >= 2)
            field.len -= 2;
        add_field(out, (enum mailbox_cache_field)(MAILBOX_CACHE_HDR_FROM + i),
                  field.s ? field.s : "", field.len);
    }
    mb_put32((unsigned char *)out->s + start, (uint32_t)(out->len - start));
    strarray_fini(&names);
    buf_free(&field);
}

/* ---------------------------------------------------------------- */
/* Reading                                                            */

static int cache_corrupt(struct mailbox *mb, uint32_t uid, const char *why)
{
    xsyslog(LOG_ERR, "mailbox cache corrupt", "path=%s uid=%u error=%s",
            mappedfile_fname(mb->cache), uid, why);
    return ERR_CORRUPT;
}

int cache_record_span(struct mailbox *mb, const struct mailbox_record *rec,
                      const char **base_r, size_t *len_r)
{
    uint64_t off = rec->cache_offset, end = mb->ih.cache_size;
    const unsigned char *p;
    uint32_t len;

    if (mappedfile_size(mb->cache) < end && mappedfile_refresh(mb->cache))
        return ERR_IO;
    if (mappedfile_size(mb->cache) < end)
        return cache_corrupt(mb, rec->uid, "file shorter than index says");
    if (rec->cache_version != MAILBOX_CACHE_VERSION)
        return cache_corrupt(mb, rec->uid, "unknown record version");
    if (off < CACHE_HEADER_SIZE || off > end || end - off < CACHE_RECORD_HEAD)
        return cache_corrupt(mb, rec->uid, "offset out of range");
    p = (const unsigned char *)mappedfile_base(mb->cache) + off;
    len = mb_get32(p);
    if (len < CACHE_RECORD_HEAD || len > end - off)
        return cache_corrupt(mb, rec->uid, "record length out of range");
    if (mb_get32(p + 4) != rec->uid)
        return cache_corrupt(mb, rec->uid, "record belongs to another uid");
    *base_r = (const char *)p;
    *len_r = len;
    return 0;
}

int cache_record_check(const char *base, size_t size, uint64_t off,
                       uint32_t uid, size_t *len_r)
{
    const unsigned char *p;
    uint32_t len, nfields, i, fid, flen;
    unsigned char seen[MAILBOX_CACHE_NFIELDS];
    size_t pos = CACHE_RECORD_HEAD;

    if (off < CACHE_HEADER_SIZE || off > size
        || size - off < CACHE_RECORD_HEAD)
        return ERR_CORRUPT;
    p = (const unsigned char *)base + off;
    len = mb_get32(p);
    nfields = mb_get32(p + 8);
    if (len < CACHE_RECORD_HEAD || len > size - off || mb_get32(p + 4) != uid
        || nfields > 4 * MAILBOX_CACHE_NFIELDS)
        return ERR_CORRUPT;

    memset(seen, 0, sizeof(seen));
    for (i = 0; i < nfields; i++) {
        if (len - pos < CACHE_FIELD_HEAD)
            return ERR_CORRUPT;
        fid = mb_get32(p + pos);
        flen = mb_get32(p + pos + 4);
        if (flen > len - pos - CACHE_FIELD_HEAD
            || mb_get32(p + pos + 8)
               != mailbox_crc32(p + pos + CACHE_FIELD_HEAD, flen))
            return ERR_CORRUPT;
        if (fid < MAILBOX_CACHE_NFIELDS) {
            if (seen[fid])
                return ERR_CORRUPT;
            seen[fid] = 1;
        }
        pos += CACHE_FIELD_HEAD + flen;
    }
    for (i = 0; i < MAILBOX_CACHE_NFIELDS; i++) {
        if (!seen[i])
            return ERR_CORRUPT;
    }
    *len_r = len;
    return 0;
}

/* Find field `id` in a record span; checks bounds of every field it
 * walks and the CRC of the one it returns. */
static int cache_find_field(struct mailbox *mb,
                            const struct mailbox_record *rec,
                            const unsigned char *p, size_t len,
                            enum mailbox_cache_field id,
                            const char **data_r, size_t *len_r)
{
    uint32_t nfields = mb_get32(p + 8), i, fid, flen;
    size_t pos = CACHE_RECORD_HEAD;

    if (nfields > 4 * MAILBOX_CACHE_NFIELDS)
        return cache_corrupt(mb, rec->uid, "too many fields");
    for (i = 0; i < nfields; i++) {
        if (len - pos < CACHE_FIELD_HEAD)
            return cache_corrupt(mb, rec->uid, "field past record end");
        fid = mb_get32(p + pos);
        flen = mb_get32(p + pos + 4);
        if (flen > len - pos - CACHE_FIELD_HEAD)
            return cache_corrupt(mb, rec->uid, "field length too large");
        if (fid == (uint32_t)id) {
            if (mb_get32(p + pos + 8)
                != mailbox_crc32(p + pos + CACHE_FIELD_HEAD, flen))
                return cache_corrupt(mb, rec->uid, "field checksum mismatch");
            *data_r = (const char *)p + pos + CACHE_FIELD_HEAD;
            *len_r = flen;
            return 0;
        }
        pos += CACHE_FIELD_HEAD + flen;
    }
    return cache_corrupt(mb, rec->uid, "field missing");
}

/* Locate one field of a record's cache entry. */
static int cache_field(struct mailbox *mb, const struct mailbox_record *rec,
                       enum mailbox_cache_field field,
                       const char **data_r, size_t *len_r)
{
    const char *base;
    size_t len;
    int r;

    if (mb->lockstate == MBLOCK_NONE)
        return ERR_MAILBOX_NOTLOCKED;
    if ((unsigned)field >= MAILBOX_CACHE_NFIELDS)
        return ERR_INVALID;
    r = cache_record_span(mb, rec, &base, &len);
    if (r)
        return r;
    return cache_find_field(mb, rec, (const unsigned char *)base, len, field,
                            data_r, len_r);
}

int mailbox_cache_get(struct mailbox *mb, const struct mailbox_record *rec,
                      enum mailbox_cache_field field, struct buf *out)
{
    const char *data;
    size_t len;
    int r;

    buf_reset(out);
    r = cache_field(mb, rec, field, &data, &len);
    if (!r)
        buf_setmap(out, data, len);
    return r;
}

int mailbox_cache_header_field(const char *name)
{
    size_t i;

    for (i = 0; name && i < NCACHED_HEADERS; i++) {
        if (!util_strcasecmp_ascii(name, cached_headers[i]))
            return (int)(MAILBOX_CACHE_HDR_FROM + i);
    }
    return -1;
}

void mailbox_record_emailid(const struct mailbox_record *rec,
                            struct buf *out)
{
    buf_reset(out);
    buf_putc(out, 'M');
    util_hex_encode(rec->guid, 12, out);
}

/* ---------------------------------------------------------------- */
/* The cached part tree                                               */

struct sec_node {
    uint32_t header_offset;
    uint32_t header_size;
    uint32_t body_offset;
    uint32_t body_size;
    uint32_t nsub;
    size_t kids;                /* index of the first child in `kids` */
    long message;               /* node index, -1 when none */
};

struct sec_tree {
    const unsigned char *p;
    const unsigned char *end;
    uint64_t msgsize;
    struct sec_node *nodes;
    size_t nnodes;
    size_t nodes_alloc;
    size_t *kids;
    size_t nkids;
};

/* Decode one node and its subtree; returns its index or -1 (corrupt). */
static long sec_decode(struct sec_tree *t, int depth)
{
    struct sec_node n;
    size_t i, idx, kidstart;
    uint32_t has_msg;
    long child;

    if (depth > MESSAGE_MAX_DEPTH + 2 || t->nnodes > 2 * MESSAGE_MAX_PARTS
        || (size_t)(t->end - t->p) < SECTION_NODE_SIZE)
        return -1;
    memset(&n, 0, sizeof(n));
    n.header_offset = mb_get32(t->p);
    n.header_size = mb_get32(t->p + 4);
    n.body_offset = mb_get32(t->p + 8);
    n.body_size = mb_get32(t->p + 12);
    n.nsub = mb_get32(t->p + 16);
    has_msg = mb_get32(t->p + 20);
    t->p += SECTION_NODE_SIZE;
    if (has_msg > 1
        || (uint64_t)n.header_offset + n.header_size > t->msgsize
        || (uint64_t)n.body_offset + n.body_size > t->msgsize
        || n.nsub > (size_t)(t->end - t->p) / SECTION_NODE_SIZE)
        return -1;

    if (t->nnodes == t->nodes_alloc) {
        t->nodes_alloc = t->nodes_alloc ? 2 * t->nodes_alloc : 8;
        t->nodes = xreallocarray(t->nodes, t->nodes_alloc, sizeof(n));
    }
    idx = t->nnodes++;
    n.message = -1;
    if (has_msg && (n.message = sec_decode(t, depth + 1)) < 0)
        return -1;

    kidstart = t->nkids;
    t->nkids += n.nsub;
    t->kids = xreallocarray(t->kids, t->nkids ? t->nkids : 1,
                            sizeof(*t->kids));
    n.kids = kidstart;
    for (i = 0; i < n.nsub; i++) {
        child = sec_decode(t, depth + 1);
        if (child < 0)
            return -1;
        t->kids[kidstart + i] = (size_t)child;
    }
    t->nodes[idx] = n;
    return (long)idx;
}

/* A part number as in message_section_find(): 1-9 first, bounded. */
static size_t sec_number(const char **p_r)
{
    const char *p = *p_r;
    size_t n = 0;

    if (*p < '1' || *p > '9')
        return 0;
    while (*p >= '0' && *p <= '9') {
        if (n > 99999999)
            return 0;
        n = n * 10 + (size_t)(*p++ - '0');
    }
    *p_r = p;
    return n;
}

static void sec_set(struct message_section *sec,
                    enum message_section_kind kind, uint32_t off,
                    uint32_t size)
{
    sec->kind = kind;
    sec->offset = off;
    sec->size = size;
    sec->part = NULL;
}

/* The keyword after the part numbers; `sel` is the selected node or
 * -1 for the message itself. */
static int sec_text(const struct sec_tree *t, long sel, const char *p,
                    struct message_section *sec)
{
    long m = sel >= 0 ? t->nodes[sel].message : 0;
    enum message_section_kind kind;

    if (!util_strcasecmp_ascii(p, "MIME")) {
        if (sel < 0)
            return ERR_INVALID;
        sec_set(sec, MESSAGE_SECTION_MIME, t->nodes[sel].header_offset,
                t->nodes[sel].header_size);
        return 0;
    }
    if (!util_strcasecmp_ascii(p, "HEADER"))
        kind = MESSAGE_SECTION_HEADER;
    else if (!util_strcasecmp_ascii(p, "HEADER.FIELDS"))
        kind = MESSAGE_SECTION_FIELDS;
    else if (!util_strcasecmp_ascii(p, "HEADER.FIELDS.NOT"))
        kind = MESSAGE_SECTION_FIELDS_NOT;
    else if (!util_strcasecmp_ascii(p, "TEXT"))
        kind = MESSAGE_SECTION_TEXT;
    else
        return ERR_INVALID;
    if (m < 0)
        return ERR_NOTFOUND;
    if (kind == MESSAGE_SECTION_TEXT)
        sec_set(sec, kind, t->nodes[m].body_offset, t->nodes[m].body_size);
    else
        sec_set(sec, kind, t->nodes[m].header_offset,
                t->nodes[m].header_size);
    return 0;
}

/* Walk the part numbers of `p` down the tree (message_section_find()'s
 * rules: a non-multipart message has its body as part 1). */
static int sec_resolve(const struct sec_tree *t, const char *p,
                       struct message_section *sec)
{
    long cont = 0, sel = -1;
    int cont_is_msg = 1;
    size_t k;

    while (*p >= '0' && *p <= '9') {
        k = sec_number(&p);
        if (!k || (*p && *p != '.') || (*p == '.' && !p[1]))
            return ERR_INVALID;
        if (cont < 0)
            return ERR_NOTFOUND;
        if (t->nodes[cont].nsub && k <= t->nodes[cont].nsub)
            sel = (long)t->kids[t->nodes[cont].kids + k - 1];
        else if (!t->nodes[cont].nsub && cont_is_msg && k == 1)
            sel = cont;
        else
            return ERR_NOTFOUND;
        cont_is_msg = !t->nodes[sel].nsub;
        cont = t->nodes[sel].nsub ? sel : t->nodes[sel].message;
        if (*p == '.')
            p++;
    }
    if (!*p) {
        sec_set(sec, MESSAGE_SECTION_PART, t->nodes[sel].body_offset,
                t->nodes[sel].body_size);
        return 0;
    }
    return sec_text(t, sel, p, sec);
}

int mailbox_cache_section(struct mailbox *mb,
                          const struct mailbox_record *rec,
                          const char *section,
                          struct message_section *sec_r)
{
    struct sec_tree t;
    const char *data;
    size_t len;
    int r;

    memset(sec_r, 0, sizeof(*sec_r));
    if (!section)
        return ERR_INVALID;
    if (!*section) {
        if (rec->size > UINT32_MAX)
            return ERR_CORRUPT;
        sec_set(sec_r, MESSAGE_SECTION_PART, 0, (uint32_t)rec->size);
        return 0;
    }
    r = cache_field(mb, rec, MAILBOX_CACHE_SECTIONS, &data, &len);
    if (r)
        return r;

    memset(&t, 0, sizeof(t));
    t.p = (const unsigned char *)data;
    t.end = t.p + len;
    t.msgsize = rec->size;
    if (sec_decode(&t, 0) != 0 || t.p != t.end)
        r = cache_corrupt(mb, rec->uid, "bad part tree");
    else
        r = sec_resolve(&t, section, sec_r);
    free(t.nodes);
    free(t.kids);
    return r;
}

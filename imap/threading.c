/* Message threading and subject normalisation for IMAP SORT and THREAD
 * (RFC 5256): base-subject extraction, ORDEREDSUBJECT and REFERENCES. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/buf.h"
#include "lib/charset.h"
#include "lib/hash.h"
#include "lib/strarray.h"
#include "lib/xmalloc.h"

#include "imap/threading.h"

/* ---------------------------------------------------------------- */
/* Base subject (RFC 5256 section 2.1)                                */

/* Length of a subj-blob ("[" *BLOBCHAR "]" *WSP) at `p`, or 0. */
static size_t blob_len(const char *p, const char *end)
{
    const char *q = p;

    if (q >= end || *q != '[')
        return 0;
    for (q++; q < end && *q != ']'; q++) {
        if (*q == '[')
            return 0;
    }
    if (q >= end)
        return 0;
    for (q++; q < end && *q == ' '; q++)
        ;
    return (size_t)(q - p);
}

/* Length of a subj-leader "*subj-blob subj-refwd" at `p`, or 0. */
static size_t refwd_len(const char *p, const char *end)
{
    const char *q = p;
    size_t n;

    while ((n = blob_len(q, end)) > 0)
        q += n;
    if (end - q >= 2 && !strncasecmp(q, "re", 2))
        q += 2;
    else if (end - q >= 2 && !strncasecmp(q, "fw", 2)) {
        q += 2;
        if (q < end && (*q == 'd' || *q == 'D'))
            q++;
    }
    else
        return 0;
    while (q < end && *q == ' ')
        q++;
    q += blob_len(q, end);
    if (q >= end || *q != ':')
        return 0;
    return (size_t)(q + 1 - p);
}

/* Steps 2 to 5 on [*start, *end): returns 1 if a reply marker went. */
static int strip_markers(const char *s, size_t *start, size_t *end)
{
    int is_reply = 0;
    int changed;
    size_t n;

    /* Step 2: trailing "(fwd)" and white space. */
    for (;;) {
        if (*end > *start && s[*end - 1] == ' ')
            (*end)--;
        else if (*end - *start >= 5
                 && !strncasecmp(s + *end - 5, "(fwd)", 5)) {
            *end -= 5;
            is_reply = 1;
        }
        else
            break;
    }

    /* Steps 3 to 5: leaders, then one blob when something stays. */
    do {
        changed = 0;
        for (;;) {
            if (*start < *end && s[*start] == ' ') {
                (*start)++;
            }
            else if ((n = refwd_len(s + *start, s + *end)) > 0) {
                *start += n;
                is_reply = 1;
            }
            else
                break;
            changed = 1;
        }
        n = blob_len(s + *start, s + *end);
        if (n && *start + n < *end) {
            *start += n;
            changed = 1;
        }
    } while (changed);
    return is_reply;
}

int threading_base_subject(const char *subject, struct buf *out)
{
    struct buf work = BUF_INITIALIZER;
    const char *p;
    size_t start, end;
    int is_reply = 0;

    /* Step 1: white space runs (folds, tabs) become one SP. */
    buf_reset(out);
    for (p = subject ? subject : ""; *p; p++) {
        int is_ws = *p == ' ' || *p == '\t' || *p == '\r' || *p == '\n';

        if (!is_ws)
            buf_putc(&work, *p);
        else if (work.len && work.s[work.len - 1] != ' ')
            buf_putc(&work, ' ');
    }
    buf_cstring(&work);
    start = 0;
    end = work.len;

    /* Steps 2-5, then step 6: "[fwd: ...]" unwraps and starts over. */
    for (;;) {
        is_reply |= strip_markers(work.s ? work.s : "", &start, &end);
        if (end - start >= 6 && !strncasecmp(work.s + start, "[fwd:", 5)
            && work.s[end - 1] == ']') {
            start += 5;
            end--;
            is_reply = 1;
            continue;
        }
        break;
    }
    buf_appendmap(out, work.s ? work.s + start : "", end - start);
    buf_cstring(out);
    buf_free(&work);
    return is_reply;
}

void threading_subject_key(const char *subject, struct buf *out,
                           int *is_reply_r)
{
    struct buf base = BUF_INITIALIZER;
    int is_reply = threading_base_subject(subject, &base);

    buf_reset(out);
    if (charset_search_normalise(base.s ? base.s : "", base.len, out))
        buf_appendbuf(out, &base);
    buf_cstring(out);
    if (is_reply_r)
        *is_reply_r = is_reply;
    buf_free(&base);
}

void threading_parse_msgids(const char *text, strarray_t *ids)
{
    struct buf id = BUF_INITIALIZER;
    const char *p = text;
    const char *close;

    while (p && (p = strchr(p, '<')) != NULL) {
        close = strchr(p, '>');
        if (!close)
            break;
        buf_reset(&id);
        for (; p <= close; p++) {
            if (*p == '<' && id.len)
                break;          /* "<a <b>": restart at the inner "<" */
            if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
                buf_putc(&id, *p);
        }
        if (p <= close)
            continue;
        if (id.len > 2 && id.len <= THREADING_MAX_MSGID)
            strarray_append(ids, buf_cstring(&id));
        if (ids->count > THREADING_MAX_REFS)
            free(strarray_remove(ids, 0));
    }
    buf_free(&id);
}

void threading_msg_fini(struct threading_msg *msg)
{
    if (msg)
        strarray_fini(&msg->refs);
}

/* ---------------------------------------------------------------- */
/* The thread tree                                                    */

/* A container of the REFERENCES algorithm; `msg` NULL for a
 * placeholder. */
struct node {
    const struct threading_msg *msg;
    size_t pos;                 /* index of msg, for date ties */
    struct node *parent;
    struct node *child;         /* first child */
    struct node *next;          /* next sibling */
    int is_gone;                /* pruned */
    int is_reply;
    char *subject;              /* collation key, filled lazily */
};

struct tree {
    struct node **nodes;
    size_t count;
    size_t alloc;
};

static struct node *tree_node(struct tree *t, const struct threading_msg *m,
                              size_t pos)
{
    struct node *n = xzmalloc(sizeof(*n));

    n->msg = m;
    n->pos = pos;
    if (t->count == t->alloc) {
        t->alloc = t->alloc ? 2 * t->alloc : 64;
        t->nodes = xreallocarray(t->nodes, t->alloc, sizeof(*t->nodes));
    }
    t->nodes[t->count++] = n;
    return n;
}

static void tree_fini(struct tree *t)
{
    size_t i;

    for (i = 0; i < t->count; i++) {
        free(t->nodes[i]->subject);
        free(t->nodes[i]);
    }
    free(t->nodes);
}

static void unlink_child(struct node *n)
{
    struct node **pp;

    if (!n->parent)
        return;
    for (pp = &n->parent->child; *pp; pp = &(*pp)->next) {
        if (*pp == n) {
            *pp = n->next;
            break;
        }
    }
    n->parent = NULL;
    n->next = NULL;
}

/* Append `n` as the last child of `p` (n must have no parent). */
static void add_child(struct node *p, struct node *n)
{
    struct node **pp;

    for (pp = &p->child; *pp; pp = &(*pp)->next)
        ;
    *pp = n;
    n->parent = p;
    n->next = NULL;
}

/* Is `a` equal to `n` or one of its ancestors?  A walk up the tree,
 * skipped when `a` has no children (then only a == n can hold), which
 * keeps an ordinary chain of replies linear.
 * XXX: crafted References that link containers with children in a
 * long chain still cost O(depth) per link; keeping each node's root
 * would make the check constant. */
static int is_ancestor(const struct node *a, const struct node *n)
{
    if (!a->child)
        return a == n;
    for (; n; n = n->parent) {
        if (n == a)
            return 1;
    }
    return 0;
}

/* The sent date that orders `n`: a placeholder takes its first
 * child's (children are sorted first). */
static const struct node *date_node(const struct node *n)
{
    while (!n->msg && n->child)
        n = n->child;
    return n;
}

static int node_cmp(const void *a, const void *b)
{
    const struct node *x = date_node(*(struct node *const *)a);
    const struct node *y = date_node(*(struct node *const *)b);
    time_t dx = x->msg ? x->msg->date : 0;
    time_t dy = y->msg ? y->msg->date : 0;

    if (dx != dy)
        return dx < dy ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Sort a sibling list by date; returns the new head. */
static struct node *sort_siblings(struct node *head, struct node ***scratch,
                                  size_t *alloc)
{
    struct node *n;
    size_t count = 0, i;

    for (n = head; n; n = n->next)
        count++;
    if (count < 2)
        return head;
    if (count > *alloc) {
        *alloc = count;
        *scratch = xreallocarray(*scratch, count, sizeof(**scratch));
    }
    for (i = 0, n = head; n; n = n->next)
        (*scratch)[i++] = n;
    qsort(*scratch, count, sizeof(**scratch), node_cmp);
    for (i = 0; i + 1 < count; i++)
        (*scratch)[i]->next = (*scratch)[i + 1];
    (*scratch)[count - 1]->next = NULL;
    return (*scratch)[0];
}

/* Sort every sibling list below the roots.  Placeholders only live at
 * the top level, so all lower lists hold messages and need no
 * particular order of work. */
static void sort_children(struct tree *t)
{
    struct node **scratch = NULL;
    size_t alloc = 0, i;

    for (i = 0; i < t->count; i++) {
        if (!t->nodes[i]->is_gone && t->nodes[i]->child)
            t->nodes[i]->child = sort_siblings(t->nodes[i]->child,
                                               &scratch, &alloc);
    }
    free(scratch);
}

/* Append the thread below `root` (inclusive) without the outer
 * parentheses, walking the tree without recursion. */
static void format_thread(const struct node *root, struct buf *out)
{
    const struct node *n = root;
    const struct node *p;

#define WRAPS(x) (!(x)->msg || ((x)->child && (x)->child->next))
    for (;;) {
        /* Enter n. */
        if (n->msg) {
            buf_printf(out, "%u", n->msg->id);
            if (n->child)
                buf_putc(out, ' ');
        }
        if (n->child) {
            if (WRAPS(n))
                buf_putc(out, '(');
            n = n->child;
            continue;
        }
        /* Leave n and every ancestor whose children are done. */
        for (;;) {
            if (n == root)
                return;
            p = n->parent;
            if (WRAPS(p))
                buf_putc(out, ')');
            if (n->next) {
                if (WRAPS(p))
                    buf_putc(out, '(');
                n = n->next;
                break;
            }
            n = p;
        }
    }
#undef WRAPS
}

/* Append "(thread)" for every root in `roots` (a sibling list). */
static void format_roots(const struct node *roots, struct buf *out)
{
    for (; roots; roots = roots->next) {
        buf_putc(out, '(');
        format_thread(roots, out);
        buf_putc(out, ')');
    }
}

/* The subject key of a root: its own, or its first child's. */
static const char *root_subject(struct node *n, int *is_reply_r)
{
    struct buf key = BUF_INITIALIZER;
    struct node *m = n->msg ? n : n->child;

    *is_reply_r = 0;
    if (!m || !m->msg)
        return "";
    if (!m->subject) {
        threading_subject_key(m->msg->subject, &key, &m->is_reply);
        m->subject = buf_release(&key);
        if (!m->subject)
            m->subject = xstrdup("");
    }
    *is_reply_r = m->is_reply;
    return m->subject;
}

/* ---------------------------------------------------------------- */
/* ORDEREDSUBJECT (RFC 5256 section 3)                                */

static int subject_order_cmp(const void *a, const void *b)
{
    struct node *x = *(struct node *const *)a;
    struct node *y = *(struct node *const *)b;
    int c = strcmp(x->subject, y->subject);

    return c ? c : node_cmp(a, b);
}

void threading_orderedsubject(const struct threading_msg *msgs, size_t n,
                              struct buf *out)
{
    struct tree t = { NULL, 0, 0 };
    struct node **order;
    struct node head = { 0 };
    struct node *thread = NULL;
    struct buf key = BUF_INITIALIZER;
    size_t i;

    if (!n)
        return;

    /* Sort by base subject, then date; each run of one subject is a
     * thread whose first message is the parent of all the others. */
    order = xreallocarray(NULL, n, sizeof(*order));
    for (i = 0; i < n; i++) {
        order[i] = tree_node(&t, &msgs[i], i);
        threading_subject_key(msgs[i].subject, &key, NULL);
        order[i]->subject = buf_release(&key);
        if (!order[i]->subject)
            order[i]->subject = xstrdup("");
    }
    qsort(order, n, sizeof(*order), subject_order_cmp);
    for (i = 0; i < n; i++) {
        if (thread && !strcmp(thread->subject, order[i]->subject)) {
            add_child(thread, order[i]);
            continue;
        }
        thread = order[i];
        add_child(&head, thread);
    }

    /* Threads in the order of their first message's date. */
    for (i = 0; i < n; i++)
        order[i]->parent = order[i]->parent == &head ? NULL
                                                     : order[i]->parent;
    head.child = sort_siblings(head.child, &order, &n);
    format_roots(head.child, out);
    free(order);
    buf_free(&key);
    tree_fini(&t);
}

/* ---------------------------------------------------------------- */
/* REFERENCES (RFC 5256 section 3)                                    */

struct refs_ctx {
    struct tree t;
    struct hash_table ids;      /* message-id -> struct node */
};

/* The container of message-id `id`, created as a placeholder when
 * new. */
static struct node *id_node(struct refs_ctx *ctx, const char *id)
{
    struct node *n = hash_lookup(&ctx->ids, id);

    if (!n) {
        n = tree_node(&ctx->t, NULL, 0);
        hash_insert(&ctx->ids, id, n);
    }
    return n;
}

/* Step 1: one message's container and its References links. */
static void link_message(struct refs_ctx *ctx,
                         const struct threading_msg *m, size_t pos)
{
    struct node *self = NULL;
    struct node *prev = NULL;
    struct node *cur;
    int i;

    /* (B) first so that its references can loop back to it: a message
     * whose id is taken (a duplicate) or missing gets its own. */
    if (m->msgid && *m->msgid)
        self = id_node(ctx, m->msgid);
    if (!self || self->msg)
        self = tree_node(&ctx->t, NULL, 0);
    self->msg = m;
    self->pos = pos;

    /* (A) link each reference to the next, unless that makes a loop or
     * the child already has a parent. */
    for (i = 0; i < m->refs.count; i++) {
        cur = id_node(ctx, m->refs.data[i]);
        if (prev && cur != prev && !cur->parent
            && !is_ancestor(cur, prev))
            add_child(prev, cur);
        prev = cur;
    }

    /* (C) the last reference is the parent, replacing a guess. */
    if (prev && is_ancestor(self, prev))
        prev = NULL;
    if (self->parent != prev) {
        unlink_child(self);
        if (prev)
            add_child(prev, self);
    }
}

/* Step 3: drop empty placeholders and splice the children of inner
 * ones into their parent; a top-level placeholder with one child gives
 * way to it. */
static void prune(struct refs_ctx *ctx)
{
    struct node *n, *kid, **pp;
    size_t i;

    for (i = 0; i < ctx->t.count; i++) {
        n = ctx->t.nodes[i];
        if (n->msg || !n->parent)
            continue;
        for (pp = &n->parent->child; *pp != n; pp = &(*pp)->next)
            ;
        for (kid = n->child; kid; kid = kid->next)
            kid->parent = n->parent;
        if (n->child) {
            *pp = n->child;
            for (kid = n->child; kid->next; kid = kid->next)
                ;
            kid->next = n->next;
        }
        else
            *pp = n->next;
        n->child = n->next = NULL;
        n->parent = NULL;
        n->is_gone = 1;
    }
    for (i = 0; i < ctx->t.count; i++) {
        n = ctx->t.nodes[i];
        if (n->msg || n->parent || n->is_gone)
            continue;
        if (!n->child || !n->child->next) {
            if (n->child)
                n->child->parent = NULL;
            n->child = NULL;
            n->is_gone = 1;
        }
    }
}

/* Does a root with reply flag `is_reply` (and `n`) take the subject
 * table entry from `old` (RFC 5256 step 5C)? */
static int takes_entry(struct node *old, struct node *n, int is_reply)
{
    int old_reply;

    if (!old)
        return 1;
    if (!old->msg)
        return 0;
    root_subject(old, &old_reply);
    return !n->msg || (old_reply && !is_reply);
}

/* Merge root `n` into `old`, the subject table entry (step 5D).
 * Returns the container that now stands in the root list for both:
 * `old`, or a new placeholder holding both. */
static struct node *merge_root(struct refs_ctx *ctx, struct node *old,
                               struct node *n, int is_reply)
{
    struct node *kid, *dummy;
    int old_reply;

    root_subject(old, &old_reply);
    if (!old->msg && !n->msg) {
        while ((kid = n->child) != NULL) {
            n->child = kid->next;
            add_child(old, kid);
        }
        n->is_gone = 1;
        return old;
    }
    if (!old->msg || (is_reply && !old_reply)) {
        add_child(old, n);
        return old;
    }
    dummy = tree_node(&ctx->t, NULL, 0);
    add_child(dummy, old);
    add_child(dummy, n);
    return dummy;
}

/* Step 5: merge top-level threads with the same base subject.  `roots`
 * holds `count` roots in date order; returns the new root list. */
static struct node *group_subjects(struct refs_ctx *ctx, struct node **roots,
                                   size_t count)
{
    struct hash_table subjects;
    struct node head = { 0 };
    struct node *n, *old, *merged, **pp;
    const char *subj;
    size_t i;
    int is_reply;

    hash_init(&subjects, 64);

    /* (A)-(C): pick the container each subject merges into. */
    for (i = 0; i < count; i++) {
        n = roots[i];
        subj = root_subject(n, &is_reply);
        if (*subj && takes_entry(hash_lookup(&subjects, subj), n, is_reply))
            hash_insert(&subjects, subj, n);
    }

    /* (D): merge into it.  The entry may come later in the list than
     * the threads merged into it; a root that has been given a parent
     * meanwhile is already placed. */
    for (i = 0; i < count; i++) {
        n = roots[i];
        if (n->parent || n->is_gone)
            continue;
        subj = root_subject(n, &is_reply);
        old = *subj ? hash_lookup(&subjects, subj) : NULL;
        if (!old || old == n) {
            add_child(&head, n);
            continue;
        }
        if (old->parent == &head) {
            /* Take the entry out of the list; it goes back below. */
            for (pp = &head.child; *pp != old; pp = &(*pp)->next)
                ;
            *pp = old->next;
            old->parent = NULL;
            old->next = NULL;
            merged = merge_root(ctx, old, n, is_reply);
            merged->next = *pp;
            *pp = merged;
            merged->parent = &head;
        }
        else {
            merged = merge_root(ctx, old, n, is_reply);
            if (merged != old)
                add_child(&head, merged);
        }
        hash_insert(&subjects, subj, merged);
    }
    hash_fini(&subjects, NULL);
    for (n = head.child; n; n = n->next)
        n->parent = NULL;
    return head.child;
}

void threading_references(const struct threading_msg *msgs, size_t n,
                          struct buf *out)
{
    struct refs_ctx ctx;
    struct node *roots = NULL, **tail = &roots, *c;
    struct node **scratch = NULL, **rv;
    size_t alloc = 0, count = 0, i;

    if (!n)
        return;
    memset(&ctx, 0, sizeof(ctx));
    hash_init(&ctx.ids, n * 2);

    /* Steps 1-3: link, gather the roots, prune placeholders. */
    for (i = 0; i < n; i++)
        link_message(&ctx, &msgs[i], i);
    prune(&ctx);
    for (i = 0; i < ctx.t.count; i++) {
        c = ctx.t.nodes[i];
        if (!c->parent && !c->is_gone) {
            *tail = c;
            tail = &c->next;
        }
    }
    *tail = NULL;

    /* Step 4 sorts the roots (children first, for placeholder dates),
     * step 5 merges by subject, step 6 sorts every level again. */
    sort_children(&ctx.t);
    roots = sort_siblings(roots, &scratch, &alloc);
    for (c = roots; c; c = c->next)
        count++;
    rv = xreallocarray(NULL, count ? count : 1, sizeof(*rv));
    for (i = 0, c = roots; c; c = c->next)
        rv[i++] = c;
    for (i = 0; i < count; i++)
        rv[i]->next = NULL;
    roots = group_subjects(&ctx, rv, count);
    sort_children(&ctx.t);
    roots = sort_siblings(roots, &scratch, &alloc);
    format_roots(roots, out);

    free(rv);
    free(scratch);
    hash_fini(&ctx.ids, NULL);
    tree_fini(&ctx.t);
}

/* Appending messages to a mailbox: parse, store the file (hard link from
 * a staging file when possible), write the cache record, and commit a
 * batch durably, index header last. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/error.h"
#include "lib/log.h"
#include "lib/strarray.h"
#include "lib/times.h"
#include "lib/util.h"
#include "lib/xmalloc.h"

#include "imap/mailbox.h"
#include "imap/mailbox_internal.h"

/* Message files whose descriptor a transaction keeps open for the
 * commit's fdatasync; past this many, files are reopened to be synced. */
#define APPEND_MAX_OPEN_FILES 256

struct mailbox_append {
    struct mailbox *mb;
    struct mailbox_record *recs;    /* added so far, in UID order */
    int *fds;                       /* per record: its file, or -1 */
    size_t nrecs;
    size_t recs_alloc;
    size_t nopen;                   /* fds >= 0 */
    uint64_t cache_start;           /* cache size when we began */
    uint64_t cache_end;             /* where the next record goes */
    struct buf scratch;
};

/* The message bytes being appended, mapped from a file or given. */
struct msgdata {
    const char *base;
    size_t len;
    void *map;                      /* munmap() this when set */
    size_t maplen;
};

int mailbox_append_begin(struct mailbox *mb, struct mailbox_append **txn_r)
{
    struct mailbox_append *txn;

    *txn_r = NULL;
    if (mb->lockstate != MBLOCK_EXCLUSIVE)
        return ERR_MAILBOX_NOTLOCKED;
    if (mb->txn)
        return ERR_LOCKED;
    txn = xzmalloc(sizeof(*txn));
    txn->mb = mb;
    txn->cache_start = txn->cache_end = mb->ih.cache_size;
    mb->txn = txn;
    *txn_r = txn;
    return 0;
}

/* Map the staging file `path` read-only. */
static int msgdata_map(const char *path, struct msgdata *md)
{
    struct stat sb;
    int fd = -1, r;

    r = util_open_nofollow(path, O_RDONLY, 0, &fd);
    if (r)
        return r;
    if (fstat(fd, &sb) < 0) {
        xsyslog_syscall("fstat", "path", path);
        r = ERR_IO;
        goto done;
    }
    if ((uint64_t)sb.st_size >= UINT32_MAX) {
        r = ERR_TOOBIG;
        goto done;
    }
    md->len = (size_t)sb.st_size;
    md->base = "";
    if (md->len) {
        md->map = mmap(NULL, md->len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (md->map == MAP_FAILED) {
            md->map = NULL;
            xsyslog_syscall("mmap", "path", path);
            r = ERR_IO;
            goto done;
        }
        md->maplen = md->len;
        md->base = md->map;
    }

done:
    close(fd);
    return r;
}

/* Write `len` bytes to a new file at `path`; a file left there by a
 * crashed append of the same UID is replaced.  With `fd_r` non-NULL the
 * descriptor stays open for the commit's sync and is returned there;
 * otherwise it is closed. */
static int write_new_file(const char *path, const char *data, size_t len,
                          int *fd_r)
{
    int fd, tries, r = 0;
    size_t done = 0;

    if (fd_r)
        *fd_r = -1;
    for (tries = 0; ; tries++) {
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  0600);
        if (fd >= 0 || errno != EEXIST || tries > 0)
            break;
        unlink(path);
    }
    if (fd < 0) {
        xsyslog_syscall("open", "path", path);
        return ERR_IO;
    }
    while (done < len) {
        ssize_t n = write(fd, data + done, len - done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            xsyslog_syscall("write", "path", path);
            r = ERR_IO;
            break;
        }
        done += (size_t)n;
    }
    if (!r && fd_r) {
        *fd_r = fd;
        return 0;
    }
    if (close(fd) < 0 && !r) {
        xsyslog_syscall("close", "path", path);
        r = ERR_IO;
    }
    if (r)
        unlink(path);
    return r;
}

/* Hard-link the staging file into place (single-instance store); when
 * the file system refuses, copy the bytes instead.  *fd_r as for
 * write_new_file() (a linked file is reopened at commit instead). */
static int store_file(const char *dest, const char *msgfile,
                      const struct msgdata *md, int *fd_r)
{
    int tries;

    if (fd_r)
        *fd_r = -1;
    if (!msgfile)
        return write_new_file(dest, md->base, md->len, fd_r);
    for (tries = 0; tries < 2; tries++) {
        if (link(msgfile, dest) == 0)
            return 0;
        if (errno != EEXIST)
            break;
        unlink(dest);
    }
    if (errno == EXDEV || errno == EPERM || errno == EMLINK
        || errno == ENOTSUP || errno == EEXIST)
        return write_new_file(dest, md->base, md->len, fd_r);
    xsyslog_syscall("link", "path", dest);
    return ERR_IO;
}

/* The Date: header as a time, or `fallback`. */
static time_t message_sentdate(const struct message *msg, time_t fallback)
{
    strarray_t values = STRARRAY_INITIALIZER;
    time_t t = fallback;
    int tzoff;

    if (!message_header_get(msg, &msg->root, "Date", 0, &values)
        && times_parse_rfc5322(strarray_nth(&values, 0), &t, &tzoff))
        t = fallback;
    strarray_fini(&values);
    return t;
}

int append_fill_record(struct mailbox_record *rec, const struct message *msg,
                       const char *base, size_t len)
{
    char hex[MESSAGE_GUID_HEXLEN + 1];
    struct buf guid = BUF_INITIALIZER;
    int r;

    message_guid(base, len, hex);
    r = util_hex_decode(hex, MESSAGE_GUID_HEXLEN, &guid);
    if (!r && guid.len == MAILBOX_GUID_SIZE)
        memcpy(rec->guid, guid.s, MAILBOX_GUID_SIZE);
    else
        r = ERR_INTERNAL;
    buf_free(&guid);
    rec->size = len;
    rec->header_size = (uint32_t)msg->root.header_size;
    rec->sentdate = message_sentdate(msg, rec->internaldate);
    rec->cache_version = MAILBOX_CACHE_VERSION;
    return r;
}

/* Check the flags a client may set at append. */
static int check_flags(const struct mailbox *mb, uint32_t flags,
                       const uint32_t *user_flags)
{
    unsigned i;

    if (flags & ~MAILBOX_FLAGS_IMAP)
        return ERR_INVALID;
    for (i = 0; user_flags && i < MAILBOX_MAX_USERFLAGS; i++) {
        if ((user_flags[i / 32] & (1u << (i % 32))) && !mb->flagname[i])
            return ERR_INVALID;
    }
    return 0;
}

/* Get the message bytes: the staging file mapped, or the buffer. */
static int msgdata_load(const char *msgfile, const char *base, size_t len,
                        struct msgdata *md)
{
    memset(md, 0, sizeof(*md));
    if (msgfile)
        return msgdata_map(msgfile, md);
    if (!base && len)
        return ERR_INVALID;
    md->base = base ? base : "";
    md->len = len;
    return (uint64_t)len >= UINT32_MAX ? ERR_TOOBIG : 0;
}

/* Store the cache record and the message file for `rec`; *fd_r gets
 * the file's descriptor when it is kept open for the commit, else -1.
 * The cache record goes first: a crash that leaves the file always
 * leaves cache bytes past the committed size too, which is how the
 * next writer knows to look for the file (see index_recover()). */
static int store_message(struct mailbox_append *txn,
                         struct mailbox_record *rec, const char *msgfile,
                         const struct msgdata *md, const struct message *msg,
                         int *fd_r)
{
    struct mailbox *mb = txn->mb;
    struct buf path = BUF_INITIALIZER;
    int r;

    *fd_r = -1;
    buf_reset(&txn->scratch);
    cache_build_record(msg, rec->uid, &txn->scratch);
    r = mappedfile_pwrite(mb->cache, txn->scratch.s, txn->scratch.len,
                          (size_t)txn->cache_end);
    if (r)
        goto done;

    mailbox_message_path(mb, rec->uid, &path);
    r = store_file(buf_cstring(&path), msgfile, md,
                   txn->nopen < APPEND_MAX_OPEN_FILES ? fd_r : NULL);
    if (r)
        goto done;          /* the cache bytes are overwritten next */
    rec->cache_offset = txn->cache_end;
    txn->cache_end += txn->scratch.len;

done:
    buf_free(&path);
    return r;
}

int mailbox_append_add(struct mailbox_append *txn, const char *msgfile,
                       const char *base, size_t len, time_t internaldate,
                       uint32_t flags, const uint32_t *user_flags,
                       uint32_t *uid_r)
{
    struct mailbox_record rec;
    struct msgdata md;
    struct message *msg = NULL;
    int fd = -1;
    int r;

    if (!txn)
        return ERR_INVALID;
    r = check_flags(txn->mb, flags, user_flags);
    if (r)
        return r;
    if (txn->mb->ih.uidnext + txn->nrecs >= UINT32_MAX)
        return ERR_TOOBIG;
    r = msgdata_load(msgfile, base, len, &md);
    if (!r)
        r = message_parse(md.base, md.len, &msg);
    if (r)
        goto done;

    memset(&rec, 0, sizeof(rec));
    rec.uid = txn->mb->ih.uidnext + (uint32_t)txn->nrecs;
    rec.system_flags = flags;
    if (user_flags)
        memcpy(rec.user_flags, user_flags, sizeof(rec.user_flags));
    rec.savedate = time(NULL);
    rec.internaldate = internaldate ? internaldate : rec.savedate;
    rec.last_updated = rec.savedate;
    r = append_fill_record(&rec, msg, md.base, md.len);
    if (!r)
        r = store_message(txn, &rec, msgfile, &md, msg, &fd);
    if (r)
        goto done;

    if (txn->nrecs == txn->recs_alloc) {
        txn->recs_alloc = txn->recs_alloc ? 2 * txn->recs_alloc : 16;
        txn->recs = xreallocarray(txn->recs, txn->recs_alloc,
                                  sizeof(*txn->recs));
        txn->fds = xreallocarray(txn->fds, txn->recs_alloc,
                                 sizeof(*txn->fds));
    }
    txn->fds[txn->nrecs] = fd;
    if (fd >= 0)
        txn->nopen++;
    txn->recs[txn->nrecs++] = rec;
    if (uid_r)
        *uid_r = rec.uid;

done:
    message_free(&msg);
    if (md.map)
        munmap(md.map, md.maplen);
    return r;
}

/* Parallel sync.  Each fdatasync ends in a flush of the device's write
 * cache, and one after the other they cost a flush per message; issued
 * from several threads at once the kernel merges the flushes (on this
 * project's test VM the commit of a 3000-message batch went from about
 * 5k to 13-19k files/s; tools/bench/storebench).  The threads live only
 * inside one commit, with every
 * signal blocked, touch nothing but their descriptors, and never log;
 * the calling thread reports the first failure after joining them. */
#define SYNC_THREADS_MAX 8
#define SYNC_THREADS_MIN_FILES 4    /* fewer files: sync them here */

struct sync_job {
    struct mailbox_append *txn;
    pthread_mutex_t lock;
    size_t next;                    /* next record to sync */
    size_t failed_at;               /* first failure, or nrecs */
    int failed_errno;
};

/* Make the file of record `i` durable; returns 0 or an errno value. */
static int sync_one(struct mailbox_append *txn, size_t i)
{
    char path[PATH_MAX];
    int fd, err = 0;

    if (txn->fds[i] >= 0)
        return fdatasync(txn->fds[i]) < 0 ? errno : 0;
    if ((size_t)snprintf(path, sizeof(path), "%s/%u.", txn->mb->path,
                         txn->recs[i].uid) >= sizeof(path))
        return ENAMETOOLONG;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno;
    if (fsync(fd) < 0)
        err = errno;
    close(fd);
    return err;
}

static void *sync_worker(void *arg)
{
    struct sync_job *job = arg;
    size_t i;
    int err;

    for (;;) {
        pthread_mutex_lock(&job->lock);
        i = job->next++;
        pthread_mutex_unlock(&job->lock);
        if (i >= job->txn->nrecs)
            return NULL;
        err = sync_one(job->txn, i);
        if (err) {
            pthread_mutex_lock(&job->lock);
            if (i < job->failed_at) {
                job->failed_at = i;
                job->failed_errno = err;
            }
            pthread_mutex_unlock(&job->lock);
        }
    }
}

/* Run sync_worker() in up to SYNC_THREADS_MAX threads, this one
 * included; a thread that cannot be started leaves its share to the
 * others. */
static void sync_in_threads(struct sync_job *job)
{
    pthread_t threads[SYNC_THREADS_MAX - 1];
    sigset_t all, old;
    size_t want = job->txn->nrecs / 2, i, started = 0;

    if (want > SYNC_THREADS_MAX - 1)
        want = SYNC_THREADS_MAX - 1;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (i = 0; i < want; i++) {
        if (pthread_create(&threads[started], NULL, sync_worker, job))
            break;
        started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    sync_worker(job);
    for (i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
}

/* Make every new message file durable, then the directory holding
 * them, once.  Files written here are still open; hard-linked files
 * (and any past APPEND_MAX_OPEN_FILES) are reopened and fsynced. */
static int sync_message_files(struct mailbox_append *txn)
{
    struct sync_job job;
    struct buf path = BUF_INITIALIZER;
    int r = 0;

    if (!txn->nrecs)
        return 0;
    memset(&job, 0, sizeof(job));
    job.txn = txn;
    job.failed_at = txn->nrecs;
    pthread_mutex_init(&job.lock, NULL);
    if (txn->nrecs < SYNC_THREADS_MIN_FILES)
        sync_worker(&job);
    else
        sync_in_threads(&job);
    pthread_mutex_destroy(&job.lock);

    if (job.failed_at < txn->nrecs) {
        mailbox_message_path(txn->mb, txn->recs[job.failed_at].uid, &path);
        xsyslog(LOG_ERR, "message file sync failed", "path=%s error=%s",
                buf_cstring(&path), strerror(job.failed_errno));
        r = ERR_IO;
    }
    if (!r)
        r = mailbox_fsync_path(txn->mb->path, 1);
    buf_free(&path);
    return r;
}

/* Close the descriptors the transaction kept. */
static void close_files(struct mailbox_append *txn)
{
    size_t i;

    for (i = 0; i < txn->nrecs; i++) {
        if (txn->fds[i] >= 0)
            close(txn->fds[i]);
        txn->fds[i] = -1;
    }
    txn->nopen = 0;
}

/* Write the new records past the committed ones. */
static int write_records(struct mailbox_append *txn)
{
    struct mailbox *mb = txn->mb;
    unsigned char rbuf[INDEX_RECORD_SIZE];
    size_t i;
    int r;

    buf_reset(&txn->scratch);
    for (i = 0; i < txn->nrecs; i++) {
        txn->recs[i].recno = mb->ih.num_records + (uint32_t)i + 1;
        txn->recs[i].modseq = mb->ih.highestmodseq + i + 1;
        txn->recs[i].createdmodseq = txn->recs[i].modseq;
        index_record_encode(&txn->recs[i], rbuf);
        buf_appendmap(&txn->scratch, rbuf, sizeof(rbuf));
    }
    r = mappedfile_pwrite(mb->index, txn->scratch.s, txn->scratch.len,
                          INDEX_HEADER_SIZE + (size_t)mb->ih.num_records
                                              * INDEX_RECORD_SIZE);
    buf_free(&txn->scratch);
    return r;
}

/* Count the new records into the working header. */
static void apply_to_header(struct mailbox_append *txn)
{
    struct mailbox *mb = txn->mb;
    size_t i;

    for (i = 0; i < txn->nrecs; i++) {
        index_count_record(&mb->ih, &txn->recs[i], 1);
        mailbox_queue_event(mb, "append", txn->recs[i].uid);
    }
    mb->ih.num_records += (uint32_t)txn->nrecs;
    mb->ih.uidnext += (uint32_t)txn->nrecs;
    mb->ih.highestmodseq += txn->nrecs;
    mb->ih.cache_size = txn->cache_end;
    mb->ih.last_appenddate = time(NULL);
    mb->is_changed = 1;
}

static void txn_free(struct mailbox_append **txnp)
{
    struct mailbox_append *txn = *txnp;

    if (txn->mb->txn == txn)
        txn->mb->txn = NULL;
    close_files(txn);
    free(txn->fds);
    free(txn->recs);
    buf_free(&txn->scratch);
    free(txn);
    *txnp = NULL;
}

int mailbox_append_commit(struct mailbox_append **txnp)
{
    struct mailbox_append *txn = *txnp;
    struct mailbox *mb;
    struct mailbox_index_header saved;
    size_t nevents;
    int r;

    if (!txn)
        return ERR_INVALID;
    mb = txn->mb;
    if (!txn->nrecs) {
        txn_free(txnp);
        return 0;
    }

    /* Messages, cache, records: durable before the header counts them
     * (mailbox_commit() syncs the records, then writes the header). */
    r = sync_message_files(txn);
    close_files(txn);
    if (!r)
        r = mappedfile_sync(mb->cache);
    if (!r)
        r = write_records(txn);
    if (r)
        goto fail;
    mailbox_run_test_hook("append:before-commit");
    saved = mb->ih;
    nevents = mb->nevents;
    apply_to_header(txn);
    r = mailbox_commit(mb);
    if (r) {
        mb->ih = saved;
        mb->nevents = nevents;
        goto fail;
    }
    txn_free(txnp);
    return 0;

fail:
    xsyslog(LOG_ERR, "mailbox append failed", "mailbox=%s error=%s",
            log_escape(mb->name, 0), error_message(r));
    mailbox_append_abort(txnp);
    return r;
}

void mailbox_append_abort(struct mailbox_append **txnp)
{
    struct mailbox_append *txn = *txnp;
    struct buf path = BUF_INITIALIZER;
    size_t i;

    if (!txn)
        return;
    for (i = 0; i < txn->nrecs; i++) {
        mailbox_message_path(txn->mb, txn->recs[i].uid, &path);
        unlink(buf_cstring(&path));
    }
    if (mappedfile_size(txn->mb->cache) > txn->cache_start)
        mappedfile_truncate(txn->mb->cache, (size_t)txn->cache_start);
    buf_free(&path);
    txn_free(txnp);
}

int mailbox_append(struct mailbox *mb, const char *msgfile, const char *base,
                   size_t len, time_t internaldate, uint32_t flags,
                   const uint32_t *user_flags, uint32_t *uid_r)
{
    struct mailbox_append *txn = NULL;
    int r;

    r = mailbox_append_begin(mb, &txn);
    if (!r)
        r = mailbox_append_add(txn, msgfile, base, len, internaldate, flags,
                               user_flags, uid_r);
    if (r) {
        mailbox_append_abort(&txn);
        return r;
    }
    return mailbox_append_commit(&txn);
}

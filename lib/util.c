/* Small generic helpers: bounded number parsing, ASCII case, hex, random
 * bytes, directory creation and safe whole-file reads and writes. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__has_include)
#if __has_include(<sys/random.h>)
#include <sys/random.h>
#define UTIL_HAVE_GETRANDOM 1
#endif
#endif

#include "lib/buf.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/retry.h"
#include "lib/util.h"
#include "lib/xmalloc.h"

/* How many times util_write_file_atomic() tries a fresh temporary name
 * before giving up (a name clash needs a random collision or an attacker
 * pre-creating names). */
#define TMPNAME_TRIES 8

/* ---------------------------------------------------------------------
 * Numbers
 */

/* Shared digit loop: accumulate digits of `s` into *val_r while the value
 * stays <= max.  Returns as parse_uint64. */
static int parse_digits(const char *s, const char **end_r, uint64_t max,
                        uint64_t *val_r)
{
    uint64_t v = 0;
    const char *p = s;

    if (!s || *p < '0' || *p > '9')
        return ERR_INVALID;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (max - d) / 10)
            return ERR_TOOBIG;
        v = v * 10 + d;
    }
    if (end_r)
        *end_r = p;
    else if (*p)
        return ERR_INVALID;
    *val_r = v;
    return 0;
}

int parse_uint64(const char *s, const char **end_r, uint64_t *val_r)
{
    return parse_digits(s, end_r, UINT64_MAX, val_r);
}

int parse_uint32(const char *s, const char **end_r, uint32_t *val_r)
{
    uint64_t v;
    int r = parse_digits(s, end_r, UINT32_MAX, &v);

    if (!r)
        *val_r = (uint32_t)v;
    return r;
}

int parse_int64(const char *s, const char **end_r, int64_t *val_r)
{
    uint64_t v;
    int neg = (s && *s == '-');
    /* The magnitude of INT64_MIN is one more than INT64_MAX. */
    uint64_t max = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    int r = parse_digits(neg ? s + 1 : s, end_r, max, &v);

    if (r)
        return r;
    if (neg)
        *val_r = (v == (uint64_t)INT64_MAX + 1) ? INT64_MIN : -(int64_t)v;
    else
        *val_r = (int64_t)v;
    return 0;
}

/* ---------------------------------------------------------------------
 * ASCII case
 */

static inline int ascii_lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c;
}

char *lcase(char *s)
{
    char *p;

    for (p = s; p && *p; p++)
        *p = (char)ascii_lower((unsigned char)*p);
    return s;
}

char *ucase(char *s)
{
    char *p;

    for (p = s; p && *p; p++) {
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
    }
    return s;
}

int util_strncasecmp_ascii(const char *a, const char *b, size_t n)
{
    const unsigned char *x = (const unsigned char *)a;
    const unsigned char *y = (const unsigned char *)b;

    for (; n; n--, x++, y++) {
        int d = ascii_lower(*x) - ascii_lower(*y);
        if (d || !*x)
            return d;
    }
    return 0;
}

int util_strcasecmp_ascii(const char *a, const char *b)
{
    return util_strncasecmp_ascii(a, b, SIZE_MAX);
}

/* ---------------------------------------------------------------------
 * Hex
 */

void util_hex_encode(const void *p, size_t len, struct buf *out)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *s = p;
    size_t i;

    buf_ensure(out, len * 2);
    for (i = 0; i < len; i++) {
        buf_putc(out, digits[s[i] >> 4]);
        buf_putc(out, digits[s[i] & 0xf]);
    }
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int util_hex_decode(const char *hex, size_t len, struct buf *out)
{
    size_t start = out->len;
    size_t i;

    if (len % 2)
        return ERR_INVALID;
    buf_ensure(out, len / 2);
    for (i = 0; i < len; i += 2) {
        int hi = hexval((unsigned char)hex[i]);
        int lo = hexval((unsigned char)hex[i + 1]);
        if (hi < 0 || lo < 0) {
            buf_truncate(out, start);
            return ERR_INVALID;
        }
        buf_putc(out, (char)(hi << 4 | lo));
    }
    return 0;
}

/* ---------------------------------------------------------------------
 * Random bytes
 */

static int urandom_bytes(unsigned char *p, size_t len)
{
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0) {
        xsyslog_syscall("open", "path", "/dev/urandom");
        return ERR_IO;
    }
    n = retry_read(fd, p, len);
    close(fd);
    return (n == (ssize_t)len) ? 0 : ERR_IO;
}

int util_random_bytes(void *p, size_t len)
{
    unsigned char *s = p;

#ifdef UTIL_HAVE_GETRANDOM
    while (len) {
        ssize_t n = getrandom(s, len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return urandom_bytes(s, len);
        s += n;
        len -= (size_t)n;
    }
    return 0;
#else
    return urandom_bytes(s, len);
#endif
}

/* ---------------------------------------------------------------------
 * Directories
 */

/* Map an errno from a filesystem call to a project code. */
static int errno_code(int e)
{
    switch (e) {
    case ENOENT:
        return ERR_NOTFOUND;
    case EACCES:
    case EPERM:
    case ELOOP:
        return ERR_PERMISSION;
    case EEXIST:
        return ERR_EXISTS;
    default:
        return ERR_IO;
    }
}

/* mkdir one directory; an existing directory is success. */
static int mkdir_one(const char *dir, mode_t mode)
{
    struct stat sb;

    if (mkdir(dir, mode) == 0)
        return 0;
    if (errno == EEXIST) {
        if (stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode))
            return 0;
        errno = ENOTDIR;
    }
    xsyslog_syscall("mkdir", "path", dir);
    return errno_code(errno);
}

int util_mkdir_parents(const char *path, mode_t mode)
{
    char *copy;
    char *p;
    int r = 0;

    if (!path || !*path)
        return ERR_INVALID;
    copy = xstrdup(path);

    /* Walk each '/' after the first byte; the prefix before it is one
     * ancestor.  Runs of slashes give empty steps, which are skipped. */
    for (p = strchr(copy + 1, '/'); p; p = strchr(p + 1, '/')) {
        if (p[-1] == '/')
            continue;
        *p = '\0';
        r = mkdir_one(copy, mode);
        *p = '/';
        if (r)
            break;
    }
    free(copy);
    return r;
}

int util_mkdir_p(const char *dir)
{
    char *copy;
    size_t len;
    int r;

    if (!dir || !*dir)
        return ERR_INVALID;

    /* Drop trailing slashes so the last component is the directory. */
    copy = xstrdup(dir);
    len = strlen(copy);
    while (len > 1 && copy[len - 1] == '/')
        copy[--len] = '\0';

    r = util_mkdir_parents(copy, 0755);
    if (!r)
        r = mkdir_one(copy, 0755);
    free(copy);
    return r;
}

/* ---------------------------------------------------------------------
 * Files
 */

int util_open_nofollow(const char *path, int flags, mode_t mode, int *fd_r)
{
    struct stat sb;
    int fd;

    *fd_r = -1;
    if (!path || !*path)
        return ERR_INVALID;

    /* O_NONBLOCK keeps open() of a FIFO from hanging before fstat() can
     * refuse it; it is cleared again for the regular file. */
    fd = open(path, flags | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, mode);
    if (fd < 0)
        return errno_code(errno);
    if (fstat(fd, &sb) < 0) {
        xsyslog_syscall("fstat", "path", path);
        close(fd);
        return ERR_IO;
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return ERR_INVALID;
    }
    if (!(flags & O_NONBLOCK))
        (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    *fd_r = fd;
    return 0;
}

int util_read_file(const char *path, struct buf *out, size_t maxlen)
{
    char chunk[8192];
    ssize_t n;
    int fd;
    int r;

    buf_reset(out);
    r = util_open_nofollow(path, O_RDONLY, 0, &fd);
    if (r)
        return r;

    /* Read until EOF rather than trusting st_size: the file may grow
     * while we read, and maxlen must bound memory either way. */
    for (;;) {
        n = retry_read(fd, chunk, sizeof(chunk));
        if (n < 0) {
            xsyslog_syscall("read", "path", path);
            r = ERR_IO;
            goto done;
        }
        if (n == 0)
            break;
        if ((size_t)n > maxlen - out->len) {
            r = ERR_TOOBIG;
            goto done;
        }
        buf_appendmap(out, chunk, (size_t)n);
        if ((size_t)n < sizeof(chunk))
            break;
    }

done:
    if (r)
        buf_reset(out);
    close(fd);
    return r;
}

/* fsync the directory holding `path`, so a rename into it is durable. */
static int fsync_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    int fd;
    int r = 0;

    if (!slash)
        dir = xstrdup(".");
    else if (slash == path)
        dir = xstrdup("/");
    else
        dir = xstrndup(path, (size_t)(slash - path));
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0) {
        xsyslog_syscall(fd < 0 ? "open" : "fsync", "path", dir);
        r = ERR_IO;
    }
    if (fd >= 0)
        close(fd);
    free(dir);
    return r;
}

/* Create a new temporary file next to `path`; sets *tmp_r (caller frees)
 * and returns the descriptor, or -1 with errno set. */
static int open_tmp(const char *path, char **tmp_r)
{
    struct buf name = BUF_INITIALIZER;
    unsigned char rnd[6];
    int fd = -1;
    int i;

    for (i = 0; i < TMPNAME_TRIES && fd < 0; i++) {
        if (util_random_bytes(rnd, sizeof(rnd)))
            break;
        buf_reset(&name);
        buf_printf(&name, "%s.tmp.%ld.", path, (long)getpid());
        util_hex_encode(rnd, sizeof(rnd), &name);
        fd = open(buf_cstring(&name),
                  O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        int e = errno;
        buf_free(&name);
        errno = e;
        return -1;
    }
    *tmp_r = buf_release(&name);
    return fd;
}

int util_write_file_atomic(const char *path, const void *data, size_t len)
{
    char *tmp = NULL;
    int fd;
    int r = 0;

    if (!path || !*path || (len && !data))
        return ERR_INVALID;
    fd = open_tmp(path, &tmp);
    if (fd < 0) {
        r = errno_code(errno);
        xsyslog_syscall("open", "path", path);
        return r;
    }

    /* Data first, then the rename: a reader sees the old file or the
     * whole new one, never a part. */
    if (len && retry_write(fd, data, len) < 0) {
        xsyslog_syscall("write", "path", tmp);
        r = ERR_IO;
        goto done;
    }
    if (fsync(fd) < 0) {
        xsyslog_syscall("fsync", "path", tmp);
        r = ERR_IO;
        goto done;
    }
    if (close(fd) < 0) {
        fd = -1;
        xsyslog_syscall("close", "path", tmp);
        r = ERR_IO;
        goto done;
    }
    fd = -1;
    if (rename(tmp, path) < 0) {
        xsyslog_syscall("rename", "path", path);
        r = errno_code(errno);
        goto done;
    }
    r = fsync_parent(path);

done:
    if (fd >= 0)
        close(fd);
    if (r && tmp)
        (void)unlink(tmp);
    free(tmp);
    return r;
}

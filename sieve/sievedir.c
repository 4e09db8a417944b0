/* sievedir: where and how a user's Sieve scripts are stored (see
 * sievedir.h for the layout). */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include "lib/buf.h"
#include "lib/error.h"
#include "lib/libconfig.h"
#include "lib/log.h"
#include "lib/util.h"
#include "lib/xmalloc.h"
#include "imap/mboxname.h"

#include "sieve/sievedir.h"

#define SCRIPT_SUFFIX ".script"
#define BC_SUFFIX ".bc"

/* Decode one UTF-8 sequence at p[0..len).  Returns its length and the
 * code point in *cp_r, or 0 for an invalid sequence (overlong forms,
 * surrogates and values past U+10FFFF included). */
static size_t utf8_decode(const unsigned char *p, size_t len, uint32_t *cp_r)
{
    uint32_t cp;
    size_t n;
    size_t i;

    if (p[0] < 0x80) {
        *cp_r = p[0];
        return 1;
    }
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        n = 2;
        cp = p[0] & 0x1f;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        n = 3;
        cp = p[0] & 0x0f;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        n = 4;
        cp = p[0] & 0x07;
    } else {
        return 0;
    }
    if (n > len)
        return 0;
    for (i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000)
        || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    *cp_r = cp;
    return n;
}

/* Is UTF-8 `s` (valid, at most SIEVEDIR_NAME_MAX bytes) in NFC? */
static int is_nfc(const char *s, size_t len)
{
    UChar u16[SIEVEDIR_NAME_MAX + 1];
    UErrorCode err = U_ZERO_ERROR;
    const UNormalizer2 *nfc;
    int32_t u16len = 0;
    UBool ok;

    nfc = unorm2_getNFCInstance(&err);
    if (U_FAILURE(err))
        return 0;
    u_strFromUTF8(u16, SIEVEDIR_NAME_MAX + 1, &u16len, s, (int32_t)len,
                  &err);
    if (U_FAILURE(err))
        return 0;
    ok = unorm2_isNormalized(nfc, u16, u16len, &err);
    return U_SUCCESS(err) && ok;
}

int sievedir_check_name(const char *name, size_t len)
{
    const unsigned char *p = (const unsigned char *)name;
    uint32_t cp;
    size_t i = 0;
    size_t n;

    if (!name || len == 0 || len > SIEVEDIR_NAME_MAX || name[0] == '.')
        return ERR_INVALID;
    while (i < len) {
        n = utf8_decode(p + i, len - i, &cp);
        if (!n || cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)
            || cp == 0x2028 || cp == 0x2029 || cp == '/')
            return ERR_INVALID;
        i += n;
    }
    return is_nfc(name, len) ? 0 : ERR_INVALID;
}

/* Can `s` be one directory component of a user's path? */
static int is_path_component(const char *s)
{
    const unsigned char *p;

    if (!*s || *s == '.')
        return 0;
    for (p = (const unsigned char *)s; *p; p++) {
        if (*p == '/' || *p < 0x20 || *p == 0x7f)
            return 0;
    }
    return 1;
}

int sievedir_user_dir(const char *userid, struct buf *out)
{
    const char *root = config_getstring(IMAPOPT_SIEVEDIR);
    int full = config_getswitch(IMAPOPT_FULLDIRHASH);
    char *local = NULL;
    const char *domain = NULL;
    char *at;
    int r = 0;

    buf_reset(out);
    if (!root || !*root)
        return ERR_CONFIG;
    if (!userid)
        return ERR_INVALID;
    local = xstrdup(userid);
    at = strrchr(local, '@');
    if (at && config_getenum(IMAPOPT_VIRTDOMAINS)
                  != IMAP_ENUM_VIRTDOMAINS_OFF) {
        *at = '\0';
        domain = at + 1;
    }
    if (!is_path_component(local) || (domain && !is_path_component(domain))) {
        r = ERR_INVALID;
        goto done;
    }

    buf_setcstr(out, root);
    if (domain)
        buf_printf(out, "/domain/%c/%s", mboxname_dir_hash(domain, full),
                   domain);
    buf_printf(out, "/%c/%s", mboxname_dir_hash(local, full), local);

done:
    free(local);
    return r;
}

/* "<dir>/<name><suffix>" into `out` (reset first). */
static void file_path(const char *dir, const char *name, const char *suffix,
                      struct buf *out)
{
    buf_reset(out);
    buf_printf(out, "%s/%s%s", dir, name, suffix);
}

/* Does `path` exist as a regular file (not through a link)? */
static int is_file(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int sievedir_list(const char *dir, strarray_t *names)
{
    size_t slen = strlen(SCRIPT_SUFFIX);
    struct buf path = BUF_INITIALIZER;
    struct dirent *de;
    strarray_t found = STRARRAY_INITIALIZER;
    DIR *d;
    size_t len;
    int i;

    d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return 0;
        xsyslog_syscall("opendir", "path", dir);
        return ERR_IO;
    }
    while ((de = readdir(d)) != NULL) {
        len = strlen(de->d_name);
        if (len <= slen || strcmp(de->d_name + len - slen, SCRIPT_SUFFIX)
            || sievedir_check_name(de->d_name, len - slen))
            continue;
        file_path(dir, de->d_name, "", &path);
        if (is_file(buf_cstring(&path)))
            strarray_appendm(&found, xstrndup(de->d_name, len - slen));
    }
    closedir(d);
    buf_free(&path);
    strarray_sort(&found, NULL);
    for (i = 0; i < found.count; i++)
        strarray_append(names, found.data[i]);
    strarray_fini(&found);
    return 0;
}

int sievedir_exists(const char *dir, const char *name)
{
    struct buf path = BUF_INITIALIZER;
    int exists;

    file_path(dir, name, SCRIPT_SUFFIX, &path);
    exists = is_file(buf_cstring(&path));
    buf_free(&path);
    return exists;
}

int sievedir_has_bytecode(const char *dir, const char *name)
{
    struct buf path = BUF_INITIALIZER;
    int exists;

    file_path(dir, name, BC_SUFFIX, &path);
    exists = is_file(buf_cstring(&path));
    buf_free(&path);
    return exists;
}

int sievedir_active_name(const char *dir, char **name_r)
{
    struct buf path = BUF_INITIALIZER;
    char target[SIEVEDIR_NAME_MAX + 64];
    size_t blen = strlen(BC_SUFFIX);
    ssize_t n;
    int r = 0;

    *name_r = NULL;
    file_path(dir, SIEVEDIR_ACTIVE_LINK, "", &path);
    n = readlink(buf_cstring(&path), target, sizeof(target) - 1);
    if (n < 0) {
        if (errno == ENOENT || errno == EINVAL || errno == ENOTDIR)
            r = ERR_NOTFOUND;
        else {
            xsyslog_syscall("readlink", "path", buf_cstring(&path));
            r = ERR_IO;
        }
        goto done;
    }
    target[n] = '\0';

    /* Only "<name>.bc" in this directory counts; Cyrus writes the bare
     * file name, some tools may have written "./name.bc". */
    if (!strncmp(target, "./", 2)) {
        memmove(target, target + 2, (size_t)n - 1);
        n -= 2;
    }
    if ((size_t)n <= blen || strcmp(target + n - blen, BC_SUFFIX)
        || sievedir_check_name(target, (size_t)n - blen)) {
        r = ERR_NOTFOUND;
        goto done;
    }
    *name_r = xstrndup(target, (size_t)n - blen);

done:
    buf_free(&path);
    return r;
}

int sievedir_active_bytecode(const char *userid, struct buf *path_r)
{
    struct buf dir = BUF_INITIALIZER;
    char *name = NULL;
    int r;

    buf_reset(path_r);
    r = sievedir_user_dir(userid, &dir);
    if (!r)
        r = sievedir_active_name(buf_cstring(&dir), &name);
    if (!r) {
        file_path(buf_cstring(&dir), name, BC_SUFFIX, path_r);
        if (!is_file(buf_cstring(path_r))) {
            buf_reset(path_r);
            r = ERR_NOTFOUND;
        }
    }
    free(name);
    buf_free(&dir);
    return r;
}

int sievedir_read_script(const char *dir, const char *name, size_t maxlen,
                         struct buf *out)
{
    struct buf path = BUF_INITIALIZER;
    int r;

    file_path(dir, name, SCRIPT_SUFFIX, &path);
    r = util_read_file(buf_cstring(&path), out, maxlen);
    if (r == ERR_PERMISSION || r == ERR_INVALID)
        r = ERR_NOTFOUND;       /* a link or a directory is no script */
    buf_free(&path);
    return r;
}

/* Create `dir` when missing. */
static int ensure_dir(const char *dir)
{
    struct stat st;

    if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
        return 0;
    return util_mkdir_p(dir);
}

int sievedir_put_bytecode(const char *dir, const char *name, const void *bc,
                          size_t bclen)
{
    struct buf path = BUF_INITIALIZER;
    int r;

    r = ensure_dir(dir);
    if (!r) {
        file_path(dir, name, BC_SUFFIX, &path);
        r = util_write_file_atomic(buf_cstring(&path), bc, bclen);
    }
    buf_free(&path);
    return r;
}

int sievedir_put(const char *dir, const char *name, const void *script,
                 size_t scriptlen, const void *bc, size_t bclen)
{
    struct buf path = BUF_INITIALIZER;
    int r;

    /* Bytecode first: a script file never exists without the bytecode
     * that matches it or an older one (lmtpd only reads bytecode). */
    r = sievedir_put_bytecode(dir, name, bc, bclen);
    if (!r) {
        file_path(dir, name, SCRIPT_SUFFIX, &path);
        r = util_write_file_atomic(buf_cstring(&path), script, scriptlen);
    }
    buf_free(&path);
    return r;
}

/* fsync directory `dir`, so a rename or unlink in it is durable. */
static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int r = 0;

    if (fd < 0 || fsync(fd) != 0) {
        xsyslog_syscall(fd < 0 ? "open" : "fsync", "path", dir);
        r = ERR_IO;
    }
    if (fd >= 0)
        close(fd);
    return r;
}

/* Point the defaultbc link of `dir` at "<name>.bc": a new link under a
 * temporary name renamed over the old one, so there is never a moment
 * without a link. */
static int link_active(const char *dir, const char *name)
{
    struct buf target = BUF_INITIALIZER;
    struct buf tmp = BUF_INITIALIZER;
    struct buf link = BUF_INITIALIZER;
    int r = 0;

    buf_printf(&target, "%s%s", name, BC_SUFFIX);
    buf_printf(&tmp, "%s/.%s.tmp.%ld", dir, SIEVEDIR_ACTIVE_LINK,
               (long)getpid());
    file_path(dir, SIEVEDIR_ACTIVE_LINK, "", &link);
    (void)unlink(buf_cstring(&tmp));
    if (symlink(buf_cstring(&target), buf_cstring(&tmp)) != 0) {
        xsyslog_syscall("symlink", "path", buf_cstring(&tmp));
        r = ERR_IO;
    } else if (rename(buf_cstring(&tmp), buf_cstring(&link)) != 0) {
        xsyslog_syscall("rename", "path", buf_cstring(&link));
        (void)unlink(buf_cstring(&tmp));
        r = ERR_IO;
    }
    if (!r)
        r = sync_dir(dir);
    buf_free(&target);
    buf_free(&tmp);
    buf_free(&link);
    return r;
}

int sievedir_activate(const char *dir, const char *name)
{
    struct buf link = BUF_INITIALIZER;
    int r = 0;

    if (name && *name) {
        if (!sievedir_exists(dir, name))
            return ERR_NOTFOUND;
        return link_active(dir, name);
    }
    file_path(dir, SIEVEDIR_ACTIVE_LINK, "", &link);
    if (unlink(buf_cstring(&link)) == 0) {
        r = sync_dir(dir);
    } else if (errno != ENOENT) {
        xsyslog_syscall("unlink", "path", buf_cstring(&link));
        r = ERR_IO;
    }
    buf_free(&link);
    return r;
}

/* Is `name` the active script of `dir`? */
static int is_active(const char *dir, const char *name)
{
    char *active = NULL;
    int is;

    is = sievedir_active_name(dir, &active) == 0 && !strcmp(active, name);
    free(active);
    return is;
}

/* unlink "<dir>/<name><suffix>"; a missing file is fine. */
static int unlink_file(const char *dir, const char *name, const char *suffix)
{
    struct buf path = BUF_INITIALIZER;
    int r = 0;

    file_path(dir, name, suffix, &path);
    if (unlink(buf_cstring(&path)) != 0 && errno != ENOENT) {
        xsyslog_syscall("unlink", "path", buf_cstring(&path));
        r = ERR_IO;
    }
    buf_free(&path);
    return r;
}

int sievedir_delete(const char *dir, const char *name)
{
    int r;

    if (!sievedir_exists(dir, name))
        return ERR_NOTFOUND;
    if (is_active(dir, name))
        return ERR_LOCKED;
    /* The text last: while it exists the script is listed. */
    r = unlink_file(dir, name, BC_SUFFIX);
    if (!r)
        r = unlink_file(dir, name, SCRIPT_SUFFIX);
    if (!r)
        r = sync_dir(dir);
    return r;
}

int sievedir_rename(const char *dir, const char *oldname,
                    const char *newname)
{
    struct buf from = BUF_INITIALIZER;
    struct buf to = BUF_INITIALIZER;
    int was_active;
    int r = 0;

    if (!sievedir_exists(dir, oldname))
        return ERR_NOTFOUND;
    was_active = is_active(dir, oldname);

    /* The new text name is claimed with link(), which fails if it is
     * taken, even by a concurrent session of the same user. */
    file_path(dir, oldname, SCRIPT_SUFFIX, &from);
    file_path(dir, newname, SCRIPT_SUFFIX, &to);
    if (link(buf_cstring(&from), buf_cstring(&to)) != 0) {
        if (errno == EEXIST) {
            r = ERR_EXISTS;
        } else {
            xsyslog_syscall("link", "path", buf_cstring(&to));
            r = ERR_IO;
        }
        goto done;
    }

    /* Bytecode next (a stale one under the new name is replaced), then
     * the link, and only then the old names go. */
    file_path(dir, oldname, BC_SUFFIX, &from);
    file_path(dir, newname, BC_SUFFIX, &to);
    if (rename(buf_cstring(&from), buf_cstring(&to)) != 0
        && errno != ENOENT) {
        xsyslog_syscall("rename", "path", buf_cstring(&to));
        r = ERR_IO;
        (void)unlink_file(dir, newname, SCRIPT_SUFFIX);
        goto done;
    }
    if (was_active)
        r = link_active(dir, newname);
    if (!r)
        r = unlink_file(dir, oldname, SCRIPT_SUFFIX);
    if (!r)
        r = sync_dir(dir);

done:
    buf_free(&from);
    buf_free(&to);
    return r;
}

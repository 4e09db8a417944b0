/* Helpers shared by the unit tests: temporary directories and files. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cunit/cunit_util.h"

char *cunit_mktempdir(const char *tag)
{
    const char *tmp = getenv("TMPDIR");
    char *path;
    size_t len;

    if (!tmp || !*tmp)
        tmp = "/tmp";
    len = strlen(tmp) + strlen(tag) + 32;
    path = malloc(len);
    if (!path)
        abort();
    snprintf(path, len, "%s/columba-%s-XXXXXX", tmp, tag);
    if (!mkdtemp(path)) {
        perror("mkdtemp");
        abort();
    }
    return path;
}

static int rm_one(const char *path, const struct stat *sb, int flag,
                  struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    return (flag == FTW_DP) ? rmdir(path) : unlink(path);
}

int cunit_rmtree(const char *path)
{
    if (!path)
        return 0;
    return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) ? -1 : 0;
}

int cunit_write_file(const char *path, const char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ssize_t n;

    if (fd < 0)
        return -1;
    n = write(fd, data, len);
    close(fd);
    return (n == (ssize_t)len) ? 0 : -1;
}

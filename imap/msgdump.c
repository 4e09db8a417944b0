/* msgdump: print the ENVELOPE, BODYSTRUCTURE and GUID of message files,
 * a developer and test aid for imap/message. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/xmalloc.h"

#include "imap/message.h"

/* Print one file; returns 0 or 1 on failure. */
static int dump_file(const char *path)
{
    struct message *msg = NULL;
    struct buf out = BUF_INITIALIZER;
    char guid[MESSAGE_GUID_HEXLEN + 1];
    struct stat st;
    void *map = NULL;
    int fd, r = 1;

    fd = open(path, O_RDONLY | O_NOFOLLOW);
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "msgdump: %s: %s\n", path,
                fd < 0 ? strerror(errno) : "not a regular file");
        goto done;
    }
    if (st.st_size) {
        map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            map = NULL;
            fprintf(stderr, "msgdump: mmap %s: %s\n", path, strerror(errno));
            goto done;
        }
    }
    message_parse(map, (size_t)st.st_size, &msg);
    message_guid(map, (size_t)st.st_size, guid);
    buf_appendcstr(&out, "ENVELOPE ");
    message_write_envelope(&msg->root, &out);
    buf_appendcstr(&out, "\nBODYSTRUCTURE ");
    message_write_bodystructure(msg, 1, &out);
    buf_appendcstr(&out, "\nBODY ");
    message_write_bodystructure(msg, 0, &out);
    buf_printf(&out, "\nGUID %s\n", guid);
    fwrite(out.s, 1, out.len, stdout);
    r = 0;

done:
    message_free(&msg);
    buf_free(&out);
    if (map)
        munmap(map, (size_t)st.st_size);
    if (fd >= 0)
        close(fd);
    return r;
}

int main(int argc, char **argv)
{
    int i, r = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: msgdump FILE...\n");
        return 2;
    }
    for (i = 1; i < argc; i++)
        r |= dump_file(argv[i]);
    return r;
}

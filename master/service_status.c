/* The child's side of the status pipe (see master/service.h for the
 * message format); usable without the service loop, e.g. by DAEMONs. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "lib/error.h"

#include "master/service.h"

int service_report_status(enum service_status status)
{
    struct service_status_msg msg;
    ssize_t n;

    memset(&msg, 0, sizeof(msg));
    msg.magic = SERVICE_STATUS_MAGIC;
    msg.pid = (int32_t)getpid();
    msg.status = (int32_t)status;
    do {
        n = write(SERVICE_STATUS_FD, &msg, sizeof(msg));
    } while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof(msg))
        return 0;
    /* No pipe at all (started by hand) is not an error worth a word. */
    if (n < 0 && errno == EBADF)
        return 0;
    return ERR_IO;
}

int service_notify_ready(void)
{
    int r = service_report_status(SERVICE_STATUS_READY);

    close(SERVICE_STATUS_FD);
    return r;
}

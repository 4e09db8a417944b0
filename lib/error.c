/* Project error codes and their messages. */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <string.h>

#include "lib/error.h"

#define MSG_ENTRY(sym, msg) msg,
#define NAME_ENTRY(sym, msg) "ERR_" #sym,
static const char *const messages[] = { COLUMBA_ERRORS(MSG_ENTRY) };
static const char *const names[] = { COLUMBA_ERRORS(NAME_ENTRY) };
#undef MSG_ENTRY
#undef NAME_ENTRY

const char *error_message(int r)
{
    if (r == ERR_OK)
        return "Success";
    if (r > ERR_BASE_ && r < ERR_LAST_)
        return messages[r - ERR_BASE_ - 1];
    if (r > 0 && r <= ERR_BASE_)
        return strerror(r);
    return "Unknown error";
}

const char *error_name(int r)
{
    if (r == ERR_OK)
        return "ERR_OK";
    if (r > ERR_BASE_ && r < ERR_LAST_)
        return names[r - ERR_BASE_ - 1];
    return "ERR_UNKNOWN";
}

/* Dates and times: RFC 5322, IMAP and RFC 3339 forms parsed and
 * formatted without the TZ environment, a monotonic clock, and the
 * duration strings of imapd.conf ("30s", "1h30m"). */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_LIB_TIMES_H
#define COLUMBA_LIB_TIMES_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Buffer sizes (with the NUL) that always hold a formatted value. */
#define TIMES_RFC5322_SIZE 40   /* "Thu, 03 Dec 2026 18:57:35 +0000" */
#define TIMES_IMAP_SIZE 32      /* "03-Dec-2026 18:57:35 +0000" */
#define TIMES_IMAP_DATE_SIZE 16 /* "3-Dec-2026" */
#define TIMES_ISO8601_SIZE 32   /* "2026-12-03T18:57:35+05:30" */

/* The longest input any parser here accepts, in bytes. */
#define TIMES_MAX_INPUT 1000

/* Time zone offsets are in seconds east of UTC (-0500 is -18000) and
 * always lie strictly between -24h and +24h. */

/* Parse an RFC 5322 date-time (a Date: header value).  Tolerates a
 * missing or full day-of-week name, 2- and 3-digit years (RFC 5322
 * section 4.3), missing seconds, comments and folding white space
 * between tokens, obsolete zone names (UT, GMT, EST ... PDT), military
 * zone letters (taken as -0000), a missing zone (-0000) and a zone name
 * after a numeric zone ("-0500 EST").  Sets *t_r to the UTC instant and,
 * if `tzoff_r` is not NULL, *tzoff_r to the offset.  Returns 0, or
 * ERR_INVALID for anything else (out-of-range fields, years outside
 * 1900-9999, trailing garbage, over TIMES_MAX_INPUT bytes). */
int times_parse_rfc5322(const char *s, time_t *t_r, int *tzoff_r);

/* Format `t` shown at offset `tzoff` as "Thu, 03 Dec 2026 18:57:35
 * +0000" into `buf` of `len` bytes.  Returns 0, ERR_TOOBIG when `len` is
 * too small, or ERR_INVALID for an offset out of range or a year outside
 * 0-9999. */
int times_format_rfc5322(char *buf, size_t len, time_t t, int tzoff);

/* The same at the local time zone's offset for `t`. */
int times_format_rfc5322_local(char *buf, size_t len, time_t t);

/* The local time zone's offset at instant `t`, in seconds east. */
int times_local_offset(time_t t);

/* Parse an IMAP date-time (RFC 3501, without the quotes):
 * "03-Dec-2026 18:57:35 +0000", " 3-Dec-2026 ..." or "3-Dec-2026 ...".
 * Month names are case-insensitive.  Returns 0 or ERR_INVALID. */
int times_parse_imap(const char *s, time_t *t_r, int *tzoff_r);

/* Format as an IMAP date-time, "03-Dec-2026 18:57:35 +0000" (two-digit
 * day).  Returns as times_format_rfc5322(). */
int times_format_imap(char *buf, size_t len, time_t t, int tzoff);

/* Parse an IMAP SEARCH date, "3-Dec-2026" or "03-Dec-2026"; sets *t_r
 * to 00:00:00 UTC of that day.  Returns 0 or ERR_INVALID. */
int times_parse_imap_date(const char *s, time_t *t_r);

/* Format the date of `t` at offset `tzoff` as "3-Dec-2026". */
int times_format_imap_date(char *buf, size_t len, time_t t, int tzoff);

/* Parse an RFC 3339 date-time, "2026-12-03T18:57:35Z" or with an offset
 * "+05:30"; 't', 'z' and a space for 'T' are accepted, fractional
 * seconds are accepted and dropped.  Returns 0 or ERR_INVALID. */
int times_parse_iso8601(const char *s, time_t *t_r, int *tzoff_r);

/* Format as RFC 3339: "...Z" for offset 0, else "+hh:mm".  Returns as
 * times_format_rfc5322(). */
int times_format_iso8601(char *buf, size_t len, time_t t, int tzoff);

/* Seconds since the epoch of a UTC calendar time, without mktime() or
 * TZ: year 1-9999, month 1-12, day 1-31 (overflowing days roll on),
 * hour/minute/second as given.  Fields are not range-checked here. */
time_t times_from_utc(int year, int mon, int mday, int hour, int min,
                      int sec);

/* Microseconds from an arbitrary fixed point; never goes backwards. */
int64_t times_monotonic_usec(void);

/* Wall-clock microseconds since the epoch. */
int64_t times_now_usec(void);

/* Parse a duration such as "30s", "15m", "24h", "7d", "1h30m" or "90"
 * (a bare number is in `defunit`, one of 's', 'm', 'h', 'd').  Units are
 * case-insensitive, each number must carry a unit unless it is the whole
 * string, and one leading '-' makes the result negative.  Sets *secs_r.
 * Returns 0, or ERR_INVALID for an empty or malformed string, an unknown
 * unit or a total beyond +-2^53 seconds. */
int times_parse_duration(const char *s, int defunit, int64_t *secs_r);

#endif /* COLUMBA_LIB_TIMES_H */

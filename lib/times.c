/* Dates and times: RFC 5322, IMAP and RFC 3339 forms parsed and
 * formatted without the TZ environment, a monotonic clock, and the
 * duration strings of imapd.conf ("30s", "1h30m"). */
/* Columba is free software; see COPYING for the licence. */

#include "config.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "lib/error.h"
#include "lib/times.h"
#include "lib/util.h"

#define DAY_SECS 86400
#define MAX_TZOFF (DAY_SECS - 1)
/* Comments may nest; deeper nesting than this is refused as garbage. */
#define MAX_COMMENT_DEPTH 16
/* Durations are bounded so they survive conversion to double and to
 * microseconds without overflow. */
#define MAX_DURATION ((int64_t)1 << 53)

static const char *const month_names[12] = {
    "Jan", "Feb", "Mar", "Apr", "May", "Jun",
    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"
};
static const char *const month_long[12] = {
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December"
};
static const char *const day_names[7] = {
    "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"
};
static const char *const day_long[7] = {
    "Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday",
    "Saturday"
};

/* Obsolete zone names of RFC 5322 section 4.3, plus the common "UTC". */
static const struct {
    const char *name;
    int hours;
} zone_names[] = {
    { "UT", 0 }, { "UTC", 0 }, { "GMT", 0 },
    { "EST", -5 }, { "EDT", -4 }, { "CST", -6 }, { "CDT", -5 },
    { "MST", -7 }, { "MDT", -6 }, { "PST", -8 }, { "PDT", -7 },
};

/* ---------------------------------------------------------------------
 * Calendar arithmetic
 */

static int is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
    static const int len[12] = { 31, 28, 31, 30, 31, 30,
                                 31, 31, 30, 31, 30, 31 };

    return len[m - 1] + (m == 2 && is_leap(y));
}

/* Days from 0001-01-01 to January 1st of year y (proleptic Gregorian). */
static long long days_before_year(long long y)
{
    y--;
    return y * 365 + y / 4 - y / 100 + y / 400;
}

time_t times_from_utc(int year, int mon, int mday, int hour, int min,
                      int sec)
{
    static const int before_month[12] = { 0, 31, 59, 90, 120, 151,
                                          181, 212, 243, 273, 304, 334 };
    long long days;

    days = days_before_year(year) - days_before_year(1970)
           + before_month[mon - 1] + (mon > 2 && is_leap(year)) + mday - 1;
    return (time_t)(days * DAY_SECS + hour * 3600LL + min * 60LL + sec);
}

/* Broken-down fields of `t` seen at offset `tzoff`; 0 or ERR_INVALID
 * when the offset is out of range or the year does not have 4 digits. */
static int split_time(time_t t, int tzoff, struct tm *tm)
{
    time_t local;

    if (tzoff < -MAX_TZOFF || tzoff > MAX_TZOFF)
        return ERR_INVALID;
    if (__builtin_add_overflow(t, (time_t)tzoff, &local))
        return ERR_INVALID;
    if (!gmtime_r(&local, tm))
        return ERR_INVALID;
    if (tm->tm_year + 1900 < 0 || tm->tm_year + 1900 > 9999)
        return ERR_INVALID;
    return 0;
}

/* "+hhmm" parts of an offset (minutes rounded toward zero). */
static void offset_parts(int tzoff, char *sign, int *hh, int *mm)
{
    int a = tzoff < 0 ? -tzoff : tzoff;

    *sign = tzoff < 0 ? '-' : '+';
    *hh = a / 3600;
    *mm = (a / 60) % 60;
}

/* snprintf result to project code. */
static int fit(int n, size_t len)
{
    return (n < 0 || (size_t)n >= len) ? ERR_TOOBIG : 0;
}

/* ---------------------------------------------------------------------
 * Scanning helpers shared by the parsers
 */

struct scan {
    const char *p;
};

static int is_alpha(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Read between `min` and `max` digits as a number; -1 if fewer than min
 * or more than max digits are there. */
static int scan_digits(struct scan *sc, int min, int max)
{
    int n = 0, v = 0;

    while (is_digit(sc->p[n])) {
        if (n == max)
            return -1;
        v = v * 10 + (sc->p[n] - '0');
        n++;
    }
    if (n < min)
        return -1;
    sc->p += n;
    return v;
}

/* Read a run of letters (at most `max`) into `word`; returns its length,
 * 0 when none, -1 when longer than max. */
static int scan_word(struct scan *sc, char *word, int max)
{
    int n = 0;

    while (is_alpha(sc->p[n])) {
        if (n == max)
            return -1;
        word[n] = sc->p[n];
        n++;
    }
    word[n] = '\0';
    sc->p += n;
    return n;
}

/* Skip folding white space and (nested) comments.  Returns 0, or -1 for
 * an unterminated or too deeply nested comment. */
static int skip_cfws(struct scan *sc)
{
    int depth = 0;

    for (; *sc->p; sc->p++) {
        char c = *sc->p;
        if (depth) {
            if (c == '\\' && sc->p[1])
                sc->p++;
            else if (c == '(' && ++depth > MAX_COMMENT_DEPTH)
                return -1;
            else if (c == ')')
                depth--;
        } else if (c == '(') {
            depth = 1;
        } else if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
            break;
        }
    }
    return depth ? -1 : 0;
}

/* Index of `word` in a name table (case-insensitive), or -1. */
static int lookup_name(const char *word, const char *const *names, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        if (!util_strcasecmp_ascii(word, names[i]))
            return i;
    }
    return -1;
}

static int lookup_month(const char *word)
{
    int m = lookup_name(word, month_names, 12);

    return m >= 0 ? m : lookup_name(word, month_long, 12);
}

/* Exactly `n` digits as a number (more may follow); -1 if fewer. */
static int scan_fixed(struct scan *sc, int n)
{
    int i, v = 0;

    for (i = 0; i < n; i++) {
        if (!is_digit(sc->p[i]))
            return -1;
        v = v * 10 + (sc->p[i] - '0');
    }
    sc->p += n;
    return v;
}

/* "+hhmm"/"-hhmm" at sc->p (hh < 24, mm < 60) into seconds east; -1 on
 * failure (the offset itself can never be -1 seconds). */
static int scan_numeric_zone(struct scan *sc, int colon)
{
    int sign, hh, mm;

    if (*sc->p != '+' && *sc->p != '-')
        return -1;
    sign = (*sc->p == '-') ? -1 : 1;
    sc->p++;
    hh = scan_fixed(sc, 2);
    if (hh < 0)
        return -1;
    if (colon) {
        if (*sc->p != ':')
            return -1;
        sc->p++;
    }
    mm = scan_fixed(sc, 2);
    if (hh > 23 || mm < 0 || mm > 59 || is_digit(*sc->p))
        return -1;
    return sign * (hh * 3600 + mm * 60);
}

/* Bounds shared by every parser; also rejects a NULL string. */
static int input_ok(const char *s)
{
    return s && strnlen(s, TIMES_MAX_INPUT + 1) <= TIMES_MAX_INPUT;
}

/* Validate a calendar date and time of day. */
static int fields_ok(int y, int mon, int d, int h, int mi, int sec)
{
    return y >= 1 && y <= 9999 && mon >= 1 && mon <= 12 && d >= 1
           && d <= days_in_month(y, mon) && h >= 0 && h <= 23
           && mi >= 0 && mi <= 59 && sec >= 0 && sec <= 60;
}

/* ---------------------------------------------------------------------
 * RFC 5322
 */

/* The zone after the time of day: numeric, a name, a military letter or
 * nothing.  Sets *tzoff_r; returns 0 or -1. */
static int rfc5322_zone(struct scan *sc, int *tzoff_r)
{
    char word[8];
    int n, i;

    if (*sc->p == '+' || *sc->p == '-') {
        *tzoff_r = scan_numeric_zone(sc, 0);
        if (*tzoff_r == -1)
            return -1;

        /* Some mailers repeat the zone as a bare name: "-0500 EST". */
        if (skip_cfws(sc) < 0)
            return -1;
        n = scan_word(sc, word, 5);
        return n < 0 ? -1 : 0;
    }

    *tzoff_r = 0;
    n = scan_word(sc, word, 5);
    if (n <= 0)
        return n;      /* no zone at all is taken as -0000 */
    for (i = 0; i < (int)(sizeof(zone_names) / sizeof(zone_names[0])); i++) {
        if (!util_strcasecmp_ascii(word, zone_names[i].name)) {
            *tzoff_r = zone_names[i].hours * 3600;
            return 0;
        }
    }

    /* Military zones: any letter but J.  RFC 5322 says their sign was
     * botched in RFC 822, so they mean "unknown", i.e. -0000. */
    if (n == 1 && word[0] != 'J' && word[0] != 'j')
        return 0;
    return -1;
}

/* Optional day-of-week and its comma. */
static int rfc5322_dow(struct scan *sc)
{
    char word[12];
    int n = scan_word(sc, word, 9);

    if (n < 0)
        return -1;
    if (n == 0)
        return 0;
    if (lookup_name(word, day_names, 7) < 0
        && lookup_name(word, day_long, 7) < 0)
        return -1;
    if (skip_cfws(sc) < 0)
        return -1;
    if (*sc->p == ',')
        sc->p++;
    return skip_cfws(sc);
}

/* Year per RFC 5322 4.3: two digits are 1950-2049, three add 1900. */
static int rfc5322_year(struct scan *sc)
{
    const char *start = sc->p;
    int y = scan_digits(sc, 2, 4);

    if (y < 0)
        return -1;
    switch (sc->p - start) {
    case 2:
        return y < 50 ? 2000 + y : 1900 + y;
    case 3:
        return 1900 + y;
    default:
        return y;
    }
}

/* hour ":" minute [ ":" second ], white space allowed around ':'. */
static int rfc5322_time(struct scan *sc, int *h, int *mi, int *sec)
{
    *h = scan_digits(sc, 1, 2);
    if (*h < 0 || skip_cfws(sc) < 0 || *sc->p++ != ':' || skip_cfws(sc) < 0)
        return -1;
    *mi = scan_digits(sc, 2, 2);
    if (*mi < 0 || skip_cfws(sc) < 0)
        return -1;
    *sec = 0;
    if (*sc->p == ':') {
        sc->p++;
        if (skip_cfws(sc) < 0)
            return -1;
        *sec = scan_digits(sc, 2, 2);
        if (*sec < 0 || skip_cfws(sc) < 0)
            return -1;
    }
    return 0;
}

int times_parse_rfc5322(const char *s, time_t *t_r, int *tzoff_r)
{
    struct scan sc = { s };
    char word[12];
    int d, mon, y, h, mi, sec, tzoff;

    if (!input_ok(s))
        return ERR_INVALID;
    if (skip_cfws(&sc) < 0 || rfc5322_dow(&sc) < 0)
        return ERR_INVALID;

    d = scan_digits(&sc, 1, 2);
    if (d < 0 || skip_cfws(&sc) < 0)
        return ERR_INVALID;
    if (scan_word(&sc, word, 9) <= 0 || (mon = lookup_month(word)) < 0)
        return ERR_INVALID;
    if (skip_cfws(&sc) < 0 || (y = rfc5322_year(&sc)) < 0)
        return ERR_INVALID;
    if (skip_cfws(&sc) < 0 || rfc5322_time(&sc, &h, &mi, &sec) < 0)
        return ERR_INVALID;
    if (rfc5322_zone(&sc, &tzoff) < 0 || skip_cfws(&sc) < 0 || *sc.p)
        return ERR_INVALID;
    if (y < 1900 || !fields_ok(y, mon + 1, d, h, mi, sec))
        return ERR_INVALID;

    *t_r = times_from_utc(y, mon + 1, d, h, mi, sec) - tzoff;
    if (tzoff_r)
        *tzoff_r = tzoff;
    return 0;
}

int times_format_rfc5322(char *buf, size_t len, time_t t, int tzoff)
{
    struct tm tm;
    char sign;
    int hh, mm;

    if (split_time(t, tzoff, &tm))
        return ERR_INVALID;
    offset_parts(tzoff, &sign, &hh, &mm);
    return fit(snprintf(buf, len, "%s, %02d %s %04d %02d:%02d:%02d %c%02d%02d",
                        day_names[tm.tm_wday], tm.tm_mday,
                        month_names[tm.tm_mon], tm.tm_year + 1900,
                        tm.tm_hour, tm.tm_min, tm.tm_sec, sign, hh, mm),
               len);
}

int times_local_offset(time_t t)
{
    struct tm tm;

    if (!localtime_r(&t, &tm))
        return 0;
    return (int)tm.tm_gmtoff;
}

int times_format_rfc5322_local(char *buf, size_t len, time_t t)
{
    return times_format_rfc5322(buf, len, t, times_local_offset(t));
}

/* ---------------------------------------------------------------------
 * IMAP
 */

/* "dd-Mon-yyyy" with a 1- or 2-digit day (a leading space is the
 * caller's business).  Returns 0 or -1. */
static int imap_date_part(struct scan *sc, int *y, int *mon, int *d)
{
    char word[4];

    *d = scan_digits(sc, 1, 2);
    if (*d < 0 || *sc->p++ != '-')
        return -1;
    if (scan_word(sc, word, 3) != 3)
        return -1;
    *mon = lookup_name(word, month_names, 12);
    if (*mon < 0 || *sc->p++ != '-')
        return -1;
    *y = scan_digits(sc, 4, 4);
    return *y < 0 ? -1 : 0;
}

int times_parse_imap(const char *s, time_t *t_r, int *tzoff_r)
{
    struct scan sc = { s };
    int d, mon, y, h, mi, sec, tzoff;

    if (!input_ok(s))
        return ERR_INVALID;
    if (*sc.p == ' ')
        sc.p++;
    if (imap_date_part(&sc, &y, &mon, &d) < 0 || *sc.p++ != ' ')
        return ERR_INVALID;
    if ((h = scan_digits(&sc, 2, 2)) < 0 || *sc.p++ != ':')
        return ERR_INVALID;
    if ((mi = scan_digits(&sc, 2, 2)) < 0 || *sc.p++ != ':')
        return ERR_INVALID;
    if ((sec = scan_digits(&sc, 2, 2)) < 0 || *sc.p++ != ' ')
        return ERR_INVALID;
    tzoff = scan_numeric_zone(&sc, 0);
    if (tzoff == -1 || *sc.p)
        return ERR_INVALID;
    if (!fields_ok(y, mon + 1, d, h, mi, sec))
        return ERR_INVALID;

    *t_r = times_from_utc(y, mon + 1, d, h, mi, sec) - tzoff;
    if (tzoff_r)
        *tzoff_r = tzoff;
    return 0;
}

int times_format_imap(char *buf, size_t len, time_t t, int tzoff)
{
    struct tm tm;
    char sign;
    int hh, mm;

    if (split_time(t, tzoff, &tm))
        return ERR_INVALID;
    offset_parts(tzoff, &sign, &hh, &mm);
    return fit(snprintf(buf, len, "%02d-%s-%04d %02d:%02d:%02d %c%02d%02d",
                        tm.tm_mday, month_names[tm.tm_mon],
                        tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                        tm.tm_sec, sign, hh, mm),
               len);
}

int times_parse_imap_date(const char *s, time_t *t_r)
{
    struct scan sc = { s };
    int d, mon, y;

    if (!input_ok(s))
        return ERR_INVALID;
    if (imap_date_part(&sc, &y, &mon, &d) < 0 || *sc.p)
        return ERR_INVALID;
    if (!fields_ok(y, mon + 1, d, 0, 0, 0))
        return ERR_INVALID;
    *t_r = times_from_utc(y, mon + 1, d, 0, 0, 0);
    return 0;
}

int times_format_imap_date(char *buf, size_t len, time_t t, int tzoff)
{
    struct tm tm;

    if (split_time(t, tzoff, &tm))
        return ERR_INVALID;
    return fit(snprintf(buf, len, "%d-%s-%04d", tm.tm_mday,
                        month_names[tm.tm_mon], tm.tm_year + 1900),
               len);
}

/* ---------------------------------------------------------------------
 * RFC 3339
 */

/* The fixed-width "YYYY-MM-DD?HH:MM:SS" head of an RFC 3339 value. */
static int iso_fields(struct scan *sc, int f[6])
{
    static const char seps[6] = { '-', '-', 'T', ':', ':', '\0' };
    static const int widths[6] = { 4, 2, 2, 2, 2, 2 };
    int i;

    for (i = 0; i < 6; i++) {
        f[i] = scan_digits(sc, widths[i], widths[i]);
        if (f[i] < 0)
            return -1;
        if (!seps[i])
            break;
        if (seps[i] == 'T') {
            if (*sc->p != 'T' && *sc->p != 't' && *sc->p != ' ')
                return -1;
        } else if (*sc->p != seps[i]) {
            return -1;
        }
        sc->p++;
    }
    return 0;
}

int times_parse_iso8601(const char *s, time_t *t_r, int *tzoff_r)
{
    struct scan sc = { s };
    int f[6];
    int tzoff;

    if (!input_ok(s) || iso_fields(&sc, f) < 0)
        return ERR_INVALID;

    /* Fractional seconds: any number of digits, dropped. */
    if (*sc.p == '.') {
        sc.p++;
        if (!is_digit(*sc.p))
            return ERR_INVALID;
        while (is_digit(*sc.p))
            sc.p++;
    }
    if (*sc.p == 'Z' || *sc.p == 'z') {
        sc.p++;
        tzoff = 0;
    } else {
        tzoff = scan_numeric_zone(&sc, 1);
        if (tzoff == -1)
            return ERR_INVALID;
    }
    if (*sc.p || !fields_ok(f[0], f[1], f[2], f[3], f[4], f[5]))
        return ERR_INVALID;

    *t_r = times_from_utc(f[0], f[1], f[2], f[3], f[4], f[5]) - tzoff;
    if (tzoff_r)
        *tzoff_r = tzoff;
    return 0;
}

int times_format_iso8601(char *buf, size_t len, time_t t, int tzoff)
{
    struct tm tm;
    char zone[8] = "Z";
    char sign;
    int hh, mm;

    if (split_time(t, tzoff, &tm))
        return ERR_INVALID;
    if (tzoff / 60) {
        offset_parts(tzoff, &sign, &hh, &mm);
        snprintf(zone, sizeof(zone), "%c%02d:%02d", sign, hh, mm);
    }
    return fit(snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d%s",
                        tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                        tm.tm_hour, tm.tm_min, tm.tm_sec, zone),
               len);
}

/* ---------------------------------------------------------------------
 * Clocks
 */

int64_t times_monotonic_usec(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t times_now_usec(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---------------------------------------------------------------------
 * Durations
 */

/* Seconds in one `unit`, or 0 for an unknown unit. */
static int64_t unit_secs(int unit)
{
    switch (unit) {
    case 's': case 'S':
        return 1;
    case 'm': case 'M':
        return 60;
    case 'h': case 'H':
        return 3600;
    case 'd': case 'D':
        return DAY_SECS;
    default:
        return 0;
    }
}

int times_parse_duration(const char *s, int defunit, int64_t *secs_r)
{
    const char *p = s;
    int64_t total = 0;
    int neg = 0;

    if (!input_ok(s) || !unit_secs(defunit))
        return ERR_INVALID;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    if (!*p)
        return ERR_INVALID;

    while (*p) {
        uint64_t n;
        int64_t mult;
        const char *end;

        if (parse_uint64(p, &end, &n) || n > (uint64_t)MAX_DURATION)
            return ERR_INVALID;
        if (!*end && p == s + neg) {
            mult = unit_secs(defunit);      /* the whole string: "90" */
        } else {
            mult = unit_secs((unsigned char)*end);
            if (!mult)
                return ERR_INVALID;
            end++;
        }
        if ((int64_t)n > (MAX_DURATION - total) / mult)
            return ERR_INVALID;
        total += (int64_t)n * mult;
        p = end;
    }

    *secs_r = neg ? -total : total;
    return 0;
}

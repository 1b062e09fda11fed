/*++
 * NAME
 *	log.c - logging to syslog or stderr
 *--*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>

#include "log.h"

static int log_stderr = 1;
static enum log_level log_max = LOG_L_INFO;
static const char *log_ident = "policyd";

/* log_init - choose syslog or stderr */
void
log_init(const char *ident, int to_stderr, int facility)
{
	log_ident = ident;
	log_stderr = to_stderr;
	if (!to_stderr)
		openlog(ident, LOG_PID | LOG_NDELAY, facility);
}

/* log_set_level - drop messages above level */
void
log_set_level(enum log_level level)
{
	log_max = level;
}

/* log_debug_enabled - is debug output wanted? */
int
log_debug_enabled(void)
{
	return log_max >= LOG_L_DEBUG;
}

/* log_info_enabled - are decision lines wanted? */
int
log_info_enabled(void)
{
	return log_max >= LOG_L_INFO;
}

/* log_level_parse - "error", "warning", "info", "debug" */
int
log_level_parse(const char *name)
{
	static const char *names[] = { "error", "warning", "info", "debug" };

	for (int i = 0; i < 4; i++)
		if (strcasecmp(name, names[i]) == 0)
			return i;
	return -1;
}

/* log_facility_parse - syslog facility by name */
int
log_facility_parse(const char *name)
{
	static const struct { const char *n; int f; } tab[] = {
		{ "mail", LOG_MAIL }, { "daemon", LOG_DAEMON },
		{ "user", LOG_USER }, { "local0", LOG_LOCAL0 },
		{ "local1", LOG_LOCAL1 }, { "local2", LOG_LOCAL2 },
		{ "local3", LOG_LOCAL3 }, { "local4", LOG_LOCAL4 },
		{ "local5", LOG_LOCAL5 }, { "local6", LOG_LOCAL6 },
		{ "local7", LOG_LOCAL7 },
	};

	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		if (strcasecmp(name, tab[i].n) == 0)
			return tab[i].f;
	return -1;
}

/* log_vemit - format and send one line */
static void
log_vemit(enum log_level level, int with_errno, const char *fmt, va_list ap)
{
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	static const char *tag[] = { "error: ", "warning: ", "", "debug: " };
	char	msg[4096];
	int	saved = errno, n;

	if (level > log_max)
		return;
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n < 0)
		return;
	if (with_errno && (size_t)n < sizeof(msg))
		snprintf(msg + n, sizeof(msg) - n, ": %s", strerror(saved));
	if (log_stderr) {
		struct timespec ts;
		struct tm tm;
		char	stamp[32];

		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
		fprintf(stderr, "%s.%03ld %s: %s%s\n", stamp,
		    ts.tv_nsec / 1000000, log_ident, tag[level], msg);
	} else {
		syslog(prio[level], "%s%s", tag[level], msg);
	}
	errno = saved;
}

#define LOG_FN(name, level, with_errno) \
void \
name(const char *fmt, ...) \
{ \
	va_list ap; \
	va_start(ap, fmt); \
	log_vemit(level, with_errno, fmt, ap); \
	va_end(ap); \
}

LOG_FN(log_info, LOG_L_INFO, 0)
LOG_FN(log_debug, LOG_L_DEBUG, 0)
LOG_FN(log_warn, LOG_L_WARN, 1)
LOG_FN(log_warnx, LOG_L_WARN, 0)
LOG_FN(log_errx, LOG_L_ERR, 0)

/* fatal - log with errno and exit */
void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vemit(LOG_L_ERR, 1, fmt, ap);
	va_end(ap);
	exit(1);
}

/* fatalx - log and exit */
void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vemit(LOG_L_ERR, 0, fmt, ap);
	va_end(ap);
	exit(1);
}

/* log_escape - printable copy of untrusted bytes */
char *
log_escape(char *dst, size_t dstlen, const char *src, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t	o = 0;

	if (dstlen == 0)
		return dst;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)src[i];
		char	tmp[4];
		size_t	n;

		if (c == '\\') {
			tmp[0] = '\\'; tmp[1] = '\\'; n = 2;
		} else if (c == '\n') {
			tmp[0] = '\\'; tmp[1] = 'n'; n = 2;
		} else if (c == '\r') {
			tmp[0] = '\\'; tmp[1] = 'r'; n = 2;
		} else if (c == '\t') {
			tmp[0] = '\\'; tmp[1] = 't'; n = 2;
		} else if (c < 0x20 || c >= 0x7f) {
			tmp[0] = '\\'; tmp[1] = 'x';
			tmp[2] = hex[c >> 4]; tmp[3] = hex[c & 15]; n = 4;
		} else {
			tmp[0] = (char)c; n = 1;
		}
		if (o + n + 4 > dstlen) {
			if (dstlen >= 4) {
				if (o + 3 >= dstlen)
					o = dstlen - 4;
				memcpy(dst + o, "...", 3);
				o += 3;
			}
			break;
		}
		memcpy(dst + o, tmp, n);
		o += n;
	}
	dst[o < dstlen ? o : dstlen - 1] = '\0';
	return dst;
}

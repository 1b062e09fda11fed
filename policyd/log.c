/*++
 * NAME
 *	log.c - logging to syslog or stderr, batched and never blocking
 * DESCRIPTION
 *	Each line is formatted once, straight into a batch buffer. Until
 *	log_attach() (start-up, policyd -t, policyctl) every line is written
 *	at once. After it, the first line of an event-loop turn makes a
 *	flush event active, so a turn's lines leave in one write() (stderr)
 *	or one sendmmsg() (syslog: a datagram per line, RFC 3164 framing as
 *	syslog(3) sends it, on a non-blocking socket of our own). A sink that
 *	cannot take more keeps what it has; lines beyond LOG_BATCH_MAX are
 *	dropped and counted, and a warning says how many once the sink
 *	drains.
 *--*/
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"

#define LOG_LINE_MAX	4096		/* one line, header included */
#define LOG_BATCH_MAX	(512 * 1024)	/* buffered bytes; beyond: drop */
#define LOG_FLUSH_AT	(64 * 1024)	/* write at once past this */
#define LOG_MSGS_MAX	1024		/* datagrams buffered (syslog) */
#define LOG_SOCKET	"/dev/log"

static struct {
	const char *ident;
	int	to_stderr;
	int	facility;
	enum log_level max;
	/* syslog */
	int	fd;			/* our datagram socket, or -1 */
	time_t	next_connect;		/* do not retry before */
	char	path[108];
	long	pid;			/* in the syslog header: set by log_init() */
	/* batch: complete records in buf[0..len) */
	char   *buf;
	size_t	len, cap;
	unsigned rec_end[LOG_MSGS_MAX];	/* syslog: end offset of each record */
	int	nrec;
	/* event loop */
	struct event_base *base;
	struct event *flush_ev, *write_ev;
	int	flush_pending, write_pending;
	int	flushing;
	/* drops */
	unsigned long long dropped, reported;
	/* timestamp caches (per second) */
	time_t	stamp_sec, sys_sec;
	char	stamp[24], sys_stamp[20];
} L = {
	.ident = "policyd", .to_stderr = 1, .facility = LOG_MAIL,
	.max = LOG_L_INFO, .fd = -1, .path = LOG_SOCKET,
};

static void log_flush_now(int wait);

/* log_connect - (re)open our syslog socket, non-blocking; 0 or -1 */
static int
log_connect(void)
{
	struct sockaddr_un sun;
	time_t	now = time(NULL);
	int	fd;

	if (L.fd >= 0)
		return 0;
	if (now < L.next_connect)
		return -1;
	L.next_connect = now + 1;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", L.path);
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		close(fd);
		return -1;
	}
	L.fd = fd;
	return 0;
}

/* log_init - choose syslog (our own socket) or stderr; may be called again */
void
log_init(const char *ident, int to_stderr, int facility)
{
	log_flush_now(1);
	L.ident = ident;
	L.to_stderr = to_stderr;
	L.pid = (long)getpid();		/* after daemon(): the child's */
	L.facility = facility;
	if (!to_stderr) {
		const char *p = getenv("POLICYD_LOG_SOCKET");

		if (p != NULL && *p != '\0' && strlen(p) < sizeof(L.path))
			snprintf(L.path, sizeof(L.path), "%s", p);
		if (L.fd >= 0) {
			close(L.fd);
			L.fd = -1;
		}
		L.next_connect = 0;
		(void)log_connect();
	}
}

/* log_set_level - drop messages above level */
void
log_set_level(enum log_level level)
{
	L.max = level;
}

/* log_debug_enabled - is debug output wanted? */
int
log_debug_enabled(void)
{
	return L.max >= LOG_L_DEBUG;
}

/* log_info_enabled - are decision lines wanted? */
int
log_info_enabled(void)
{
	return L.max >= LOG_L_INFO;
}

/* log_dropped - lines dropped because the sink could not take them */
unsigned long long
log_dropped(void)
{
	return L.dropped;
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

/* ------------------------------------------------------------ writing */

/* drop_all - the sink is gone: count what was buffered */
static void
drop_all(void)
{
	if (L.to_stderr) {
		/* lines are what counts: one newline each */
		for (size_t i = 0; i < L.len; i++)
			L.dropped += L.buf[i] == '\n';
	} else {
		L.dropped += (unsigned long long)L.nrec;
	}
	L.len = 0;
	L.nrec = 0;
}

/* consume - forget the first n bytes (and k records) after a write */
static void
consume(size_t n, int k)
{
	memmove(L.buf, L.buf + n, L.len - n);
	L.len -= n;
	if (k > 0) {
		memmove(L.rec_end, L.rec_end + k, (L.nrec - k) *
		    sizeof(L.rec_end[0]));
		L.nrec -= k;
		for (int i = 0; i < L.nrec; i++)
			L.rec_end[i] -= (unsigned)n;
	}
}

/* write_stderr - as much as fd 2 takes; 1 when it would block */
static int
write_stderr(void)
{
	ssize_t	n;

	while (L.len > 0) {
		n = write(STDERR_FILENO, L.buf, L.len);
		if (n > 0) {
			consume((size_t)n, 0);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 1;
		drop_all();		/* closed, EPIPE, ENOSPC: lost */
		return 0;
	}
	return 0;
}

/* write_syslog - a datagram per record; 1 when the socket is full */
static int
write_syslog(void)
{
	struct mmsghdr msgs[64];
	struct iovec iov[64];
	int	n, k, retried = 0;
	size_t	start;

	while (L.nrec > 0) {
		if (log_connect() < 0) {
			drop_all();
			return 0;
		}
		k = L.nrec < 64 ? L.nrec : 64;
		start = 0;
		memset(msgs, 0, sizeof(msgs[0]) * k);
		for (int i = 0; i < k; i++) {
			iov[i].iov_base = L.buf + start;
			iov[i].iov_len = L.rec_end[i] - start;
			msgs[i].msg_hdr.msg_iov = &iov[i];
			msgs[i].msg_hdr.msg_iovlen = 1;
			start = L.rec_end[i];
		}
		n = sendmmsg(L.fd, msgs, (unsigned)k, MSG_DONTWAIT |
		    MSG_NOSIGNAL);
		if (n > 0) {
			consume(L.rec_end[n - 1], n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
		    errno == ENOBUFS))
			return 1;
		/* the syslog daemon went away (restart): reconnect once */
		close(L.fd);
		L.fd = -1;
		L.next_connect = 0;
		if (retried++) {
			drop_all();
			return 0;
		}
	}
	return 0;
}

/* log_write_ready - the sink can take more */
static void
log_write_ready(evutil_socket_t fd, short what, void *arg)
{
	(void)fd; (void)what; (void)arg;
	L.write_pending = 0;
	log_flush_now(0);
}

/* report_drops - one warning for the lines lost since the last one */
static void
report_drops(void)
{
	unsigned long long n = L.dropped - L.reported;

	if (n == 0 || L.len != 0)
		return;
	L.reported = L.dropped;
	log_warnx("log: %llu line%s dropped: the log sink (%s) could not "
	    "take them; policyd_log_dropped_total counts them", n,
	    n == 1 ? "" : "s", L.to_stderr ? "stderr" : L.path);
}

/*
 * log_flush_now - write what is buffered. wait: block up to 2 s for a
 * full sink (exit, fatal errors, before log_attach); otherwise arm the
 * write event and return.
 */
static void
log_flush_now(int wait)
{
	int	full;

	if (L.flushing)
		return;
	L.flushing = 1;
	for (int tries = 0; ; tries++) {
		full = L.to_stderr ? write_stderr() : write_syslog();
		if (!full || !wait || tries >= 20)
			break;
		{
			struct pollfd p = { L.to_stderr ? STDERR_FILENO : L.fd,
			    POLLOUT, 0 };

			(void)poll(&p, 1, 100);
		}
	}
	if (full && wait)
		drop_all();
	L.flushing = 0;
	if (full && L.base != NULL && L.write_ev != NULL) {
		int	fd = L.to_stderr ? STDERR_FILENO : L.fd;

		if (!L.write_pending && event_assign(L.write_ev, L.base, fd,
		    EV_WRITE, log_write_ready, NULL) == 0 &&
		    event_add(L.write_ev, NULL) == 0)
			L.write_pending = 1;
	}
	if (!full)
		report_drops();
}

/* log_flush_cb - end of an event-loop turn */
static void
log_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd; (void)what; (void)arg;
	L.flush_pending = 0;
	if (!L.write_pending)
		log_flush_now(0);
}

/* log_attach - batch lines per event-loop turn of base (NULL: detach) */
void
log_attach(struct event_base *base)
{
	struct stat st;

	log_flush_now(1);
	if (L.flush_ev != NULL) {
		event_free(L.flush_ev);
		event_free(L.write_ev);
		L.flush_ev = L.write_ev = NULL;
		L.flush_pending = L.write_pending = 0;
	}
	L.base = base;
	if (base == NULL)
		return;
	L.flush_ev = event_new(base, -1, 0, log_flush_cb, NULL);
	L.write_ev = event_new(base, -1, 0, log_write_ready, NULL);
	if (L.flush_ev == NULL || L.write_ev == NULL) {
		L.base = NULL;		/* out of memory: stay synchronous */
		return;
	}
	/* a pipe or socket on stderr (journald, a logger) must not block us */
	if (L.to_stderr && fstat(STDERR_FILENO, &st) == 0 &&
	    (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))) {
		int	fl = fcntl(STDERR_FILENO, F_GETFL);

		if (fl >= 0)
			(void)fcntl(STDERR_FILENO, F_SETFL, fl | O_NONBLOCK);
	}
}

/* log_flush - write everything now (at exit) */
void
log_flush(void)
{
	log_flush_now(1);
}

/* put_num - v in decimal; the number of digits */
static size_t
put_num(char *out, unsigned long v)
{
	char	tmp[24];
	size_t	n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	for (size_t i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	return n;
}

/* header - the record's prefix for the sink; its length (room >= 256) */
static size_t
header(char *out, size_t room, enum log_level level)
{
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	struct timespec ts;
	struct tm tm;
	size_t	o = 0, il = strlen(L.ident);

	(void)room;			/* LOG_LINE_MAX: far more than this */
	if (il > 64)
		il = 64;
	clock_gettime(CLOCK_REALTIME, &ts);
	if (L.to_stderr) {
		long	ms = ts.tv_nsec / 1000000;

		if (ts.tv_sec != L.stamp_sec || L.stamp[0] == '\0') {
			localtime_r(&ts.tv_sec, &tm);
			strftime(L.stamp, sizeof(L.stamp), "%Y-%m-%dT%H:%M:%S",
			    &tm);
			L.stamp_sec = ts.tv_sec;
		}
		o = strlen(L.stamp);
		memcpy(out, L.stamp, o);
		out[o++] = '.';
		out[o++] = (char)('0' + ms / 100);
		out[o++] = (char)('0' + ms / 10 % 10);
		out[o++] = (char)('0' + ms % 10);
		out[o++] = ' ';
		memcpy(out + o, L.ident, il);
		o += il;
	} else {
		size_t	sl;

		if (ts.tv_sec != L.sys_sec || L.sys_stamp[0] == '\0') {
			localtime_r(&ts.tv_sec, &tm);
			strftime(L.sys_stamp, sizeof(L.sys_stamp),
			    "%b %e %H:%M:%S", &tm);
			L.sys_sec = ts.tv_sec;
		}
		out[o++] = '<';
		o += put_num(out + o, (unsigned long)(L.facility | prio[level]));
		out[o++] = '>';
		sl = strlen(L.sys_stamp);
		memcpy(out + o, L.sys_stamp, sl);
		o += sl;
		out[o++] = ' ';
		memcpy(out + o, L.ident, il);
		o += il;
		out[o++] = '[';
		o += put_num(out + o, (unsigned long)L.pid);
		out[o++] = ']';
	}
	out[o++] = ':';
	out[o++] = ' ';
	return o;
}

/* reserve - room for one more line; 0 or -1 (then the line is dropped) */
static int
reserve(void)
{
	char   *p;

	if (L.len + LOG_LINE_MAX > LOG_BATCH_MAX ||
	    (!L.to_stderr && L.nrec >= LOG_MSGS_MAX)) {
		log_flush_now(L.base == NULL);
		if (L.len + LOG_LINE_MAX > LOG_BATCH_MAX ||
		    (!L.to_stderr && L.nrec >= LOG_MSGS_MAX))
			return -1;
	}
	if (L.len + LOG_LINE_MAX > L.cap) {
		size_t	cap = L.cap ? L.cap * 2 : 16 * 1024;

		while (cap < L.len + LOG_LINE_MAX)
			cap *= 2;
		if ((p = realloc(L.buf, cap)) == NULL)
			return -1;
		L.buf = p;
		L.cap = cap;
	}
	return 0;
}

/* commit - the line of o bytes at the end of the batch is complete */
static void
commit(char *line, size_t o, size_t room, enum log_level level)
{
	size_t	end;

	if (o >= room)
		o = room - 1;
	if (L.to_stderr)
		line[o++] = '\n';
	end = L.len + o;
	L.len = end;
	if (!L.to_stderr)
		L.rec_end[L.nrec++] = (unsigned)end;
	if (L.base == NULL || level == LOG_L_ERR)
		log_flush_now(L.base == NULL);
	else if (L.len >= LOG_FLUSH_AT && !L.write_pending)
		log_flush_now(0);
	else if (!L.flush_pending && !L.write_pending) {
		L.flush_pending = 1;
		event_active(L.flush_ev, EV_TIMEOUT, 0);
	}
}

/* log_vemit - format one line into the batch */
static void
log_vemit(enum log_level level, int with_errno, const char *fmt, va_list ap)
{
	static const char *tag[] = { "error: ", "warning: ", "", "debug: " };
	int	saved = errno, n;
	size_t	o, room;
	char   *line;

	if (level > L.max)
		return;
	if (reserve() < 0) {
		L.dropped++;
		errno = saved;
		return;
	}
	line = L.buf + L.len;
	room = LOG_LINE_MAX - 1;	/* the last byte: '\n' for stderr */
	o = header(line, room, level);
	memcpy(line + o, tag[level], strlen(tag[level]));
	o += strlen(tag[level]);
	n = vsnprintf(line + o, room - o, fmt, ap);
	if (n < 0)
		n = 0;
	o = o + (size_t)n < room ? o + (size_t)n : room - 1;
	if (with_errno && o + 3 < room)
		o += (size_t)snprintf(line + o, room - o, ": %s",
		    strerror(saved));
	commit(line, o, room, level);
	errno = saved;
}

/* log_begin - start a line at level in the batch; -1: not wanted, or dropped */
int
log_begin(struct log_line *ll, enum log_level level)
{
	if (level > L.max)
		return -1;
	if (reserve() < 0) {
		L.dropped++;
		return -1;
	}
	ll->level = level;
	ll->p = L.buf + L.len;
	ll->room = LOG_LINE_MAX - 1;
	ll->o = header(ll->p, ll->room, level);
	if (level == LOG_L_WARN)
		log_put(ll, "warning: ", 9);
	else if (level == LOG_L_ERR)
		log_put(ll, "error: ", 7);
	else if (level == LOG_L_DEBUG)
		log_put(ll, "debug: ", 7);
	return 0;
}

/* log_put - n bytes as they are (cut at the end of the line) */
void
log_put(struct log_line *ll, const char *s, size_t n)
{
	if (n > ll->room - 1 - ll->o)
		n = ll->room - 1 - ll->o;
	memcpy(ll->p + ll->o, s, n);
	ll->o += n;
}

static size_t escape_n(char *, size_t, const char *, size_t);

/* log_put_esc - log_escape(buf of max bytes, s, n) added to the line */
void
log_put_esc(struct log_line *ll, const char *s, size_t n, size_t max)
{
	size_t	left = ll->room - 1 - ll->o;

	if (max > left + 1)
		max = left + 1;		/* the NUL of log_escape is not kept */
	if (max == 0)
		return;
	ll->o += escape_n(ll->p + ll->o, max, s, n);
}

/* log_end - the line is complete */
void
log_end(struct log_line *ll)
{
	commit(ll->p, ll->o, ll->room, (enum log_level)ll->level);
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
	log_flush_now(1);
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
	log_flush_now(1);
	exit(1);
}

/*
 * plain_words - how many of the first len bytes of s, a multiple of 8,
 * stand for themselves (printable ASCII but '\\'), looked at eight at a
 * time: a byte below 0x20, from 0x80, 0x7f or '\\' sets its high bit in
 * one of the tests (each exact for "some byte of the word").
 */
static size_t
plain_words(const char *s, size_t len)
{
	const uint64_t ones = 0x0101010101010101ULL;
	const uint64_t high = 0x8080808080808080ULL;
	size_t	i = 0;

	for (; i + 8 <= len; i += 8) {
		uint64_t w, d, b;

		memcpy(&w, s + i, 8);
		d = w ^ (ones * 0x7f);
		b = w ^ (ones * '\\');
		if ((((w - ones * 0x20) & ~w) | w | ((d - ones) & ~d) |
		    ((b - ones) & ~b)) & high)
			break;
	}
	return i;
}

/* escape_n - log_escape, answering the length written */
static size_t
escape_n(char *dst, size_t dstlen, const char *src, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	/* bytes that stand for themselves: printable ASCII but '\\' */
#define R16(x)	x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x
	static const unsigned char plain[256] = {
		R16(0), R16(0), R16(1), R16(1), R16(1),
		1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,	/* 0x5c */
		R16(1),
		1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,	/* 0x7f */
	};
#undef R16
	size_t	o = 0;

	if (dstlen == 0)
		return 0;
	if (len + 4 <= dstlen) {
		/* plain text (the common case) is copied as it is */
		size_t	i = plain_words(src, len);

		while (i < len && plain[(unsigned char)src[i]])
			i++;
		if (i == len) {
			memcpy(dst, src, len);
			dst[len] = '\0';
			return len;
		}
	}
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
	if (o >= dstlen)
		o = dstlen - 1;
	dst[o] = '\0';
	return o;
}

/* log_escape - printable copy of untrusted bytes */
char *
log_escape(char *dst, size_t dstlen, const char *src, size_t len)
{
	escape_n(dst, dstlen, src, len);
	return dst;
}

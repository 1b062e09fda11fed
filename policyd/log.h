/*++
 * NAME
 *	log.h - logging to syslog or stderr, with escaping of untrusted bytes
 * DESCRIPTION
 *	log_init() chooses the destination: syslog with the given facility
 *	(over a non-blocking datagram socket of its own to /dev/log, or
 *	$POLICYD_LOG_SOCKET), or stderr (foreground mode, "-f"); it may be
 *	called again (a new facility at reload). Lines are written at once
 *	until log_attach(base); from then on they are formatted into a batch
 *	and leave once per event-loop turn (one write or sendmmsg), never
 *	blocking the loop: when the sink cannot take more, lines beyond the
 *	batch bound are dropped, counted (log_dropped()) and reported in one
 *	warning. Errors are flushed at once; log_flush() writes everything
 *	(at exit; fatal() does it too). log_warn() appends
 *	strerror(errno); log_warnx() does not. fatal()/fatalx() log and exit
 *	1: only for start-up and broken invariants, never for peer input.
 *
 *	log_escape() makes untrusted bytes printable: backslash, control
 *	characters and bytes >= 0x7f become \\, \n, \r, \t or \xHH, so that
 *	nothing a client sends can start a new log line. The output is cut
 *	(with "...") when it does not fit.
 *--*/
#ifndef POLICYD_LOG_H
#define POLICYD_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum log_level { LOG_L_ERR, LOG_L_WARN, LOG_L_INFO, LOG_L_DEBUG };

struct event_base;

void	log_init(const char *ident, int to_stderr, int facility);
void	log_attach(struct event_base *base);	/* NULL: synchronous again */
void	log_flush(void);
unsigned long long log_dropped(void);
void	log_set_level(enum log_level level);
int	log_level_parse(const char *name);		/* -1 when unknown */
int	log_facility_parse(const char *name);	/* -1 when unknown */
int	log_debug_enabled(void);
int	log_info_enabled(void);

void	log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void	log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void	log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void	log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void	log_errx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void	fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void	fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/*
 * A line built piece by piece, straight into the batch (no printf): the
 * decision line. log_begin() returns -1 when the level is not wanted or
 * the line is dropped; then nothing else may be called for it.
 */
struct log_line {
	char   *p;
	size_t	o, room;
	int	level;
};

int	log_begin(struct log_line *ll, enum log_level level);
void	log_put(struct log_line *ll, const char *s, size_t n);
/* log_put_esc - what log_escape(buf, max, s, n) would make of s */
void	log_put_esc(struct log_line *ll, const char *s, size_t n, size_t max);
void	log_end(struct log_line *ll);

/* log_escape - printable copy of len bytes; returns dst */
char	*log_escape(char *dst, size_t dstlen, const char *src, size_t len);

#endif

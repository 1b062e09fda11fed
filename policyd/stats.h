/*++
 * NAME
 *	stats.h - counters and latency histograms; plain data, no I/O
 * DESCRIPTION
 *	Updated once per decision by conn.c, read by metrics.c, which renders
 *	them as Prometheus text. stats_decision() counts decisions by rule and
 *	action word in a small table that survives reloads (counters stay
 *	monotonic). stats_render() appends the Prometheus exposition to a
 *	growing buffer.
 *--*/
#ifndef POLICYD_STATS_H
#define POLICYD_STATS_H

#include <stddef.h>

#define STATS_BUCKETS	14
#define STATS_STATES	10		/* 9 protocol states + other */

struct stats_buf {
	char	*data;
	size_t	len, cap;
};

struct stats {
	unsigned long long requests, replies, malformed, tempfail;
	unsigned long long connections_total, connections_rejected;
	unsigned long long reloads, reload_failures;
	unsigned long long dunno, ok, defer, reject, other;
	unsigned long long by_state[STATS_STATES];
	unsigned long long lat_bucket[STATS_BUCKETS];	/* cumulative on render */
	unsigned long long lat_count;
	double	lat_sum_s;
};

extern const double stats_bucket_le[STATS_BUCKETS];	/* seconds; last is +Inf */

void	stats_latency(struct stats *s, double ms);
void	stats_state(struct stats *s, const char *state);
void	stats_decision(const char *rule, const char *action);
void	stats_buf_printf(struct stats_buf *b, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
/* stats_render_decisions - the per-rule/action counter family */
void	stats_render_decisions(struct stats_buf *b);
const char *stats_state_name(int i);
void	stats_free(void);

#endif

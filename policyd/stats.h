/*++
 * NAME
 *	stats.h - plain counters, updated once per decision; no I/O
 *--*/
#ifndef POLICYD_STATS_H
#define POLICYD_STATS_H

struct stats {
	unsigned long long requests, replies, malformed, tempfail;
	unsigned long long connections_total, connections_rejected;
	unsigned long long reloads, reload_failures;
	unsigned long long dunno, ok, defer, reject, other;
};

#endif

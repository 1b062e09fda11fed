/*
 * stats.c - policyctl stats: GET /metrics (HTTP/1.0) from policyd's
 * metrics listener (-m HOST:PORT, else the configuration's
 * metrics.address) and print the figures for a person; latency
 * quantiles are estimated from the histogram as Prometheus'
 * histogram_quantile() does.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#include "client.h"
#include "conf.h"
#include "ctl.h"

#define ST_MAX_DEC	1024
#define ST_MAX_BUCKETS	64

/* one policyd_decisions_total line */
struct mdec {
	char	rule[128], action[64];
	double	n;
};

/* the figures of one /metrics page */
struct mstats {
	double	requests, replies, malformed, on_error;
	double	by_state[16];
	char	state_name[16][24];
	int	nstates;
	struct mdec dec[ST_MAX_DEC];
	int	ndec;
	double	le[ST_MAX_BUCKETS], cum[ST_MAX_BUCKETS];
	int	nbuckets;
	double	lat_sum, lat_count;
	double	conns, conns_total, reloads, reload_failures, generation;
	double	redis_up, redis_commands, redis_errors, redis_timeouts;
	double	redis_reconnects, redis_noscript, redis_latency_sum;
	int	have_redis;
};

/*
 * label_get - the value of label name in "a=\"x\",b=\"y\"" (unescaped)
 * into buf; 0, or -1 when it is not there.
 */
static int
label_get(const char *labels, const char *name, char *buf, size_t len)
{
	size_t	nl = strlen(name), o = 0;
	const char *p = labels;

	while (*p) {
		const char *eq = strchr(p, '=');

		if (eq == NULL || eq[1] != '"')
			return -1;
		if ((size_t)(eq - p) == nl && strncmp(p, name, nl) == 0) {
			for (p = eq + 2; *p && *p != '"'; p++) {
				char	c = *p;

				if (c == '\\' && p[1] != '\0') {
					c = *++p;
					if (c == 'n')
						c = '\n';
				}
				if (o + 1 < len)
					buf[o++] = c;
			}
			buf[o] = '\0';
			return 0;
		}
		for (p = eq + 2; *p && *p != '"'; p++)
			if (*p == '\\' && p[1] != '\0')
				p++;
		if (*p == '"')
			p++;
		if (*p == ',')
			p++;
	}
	return -1;
}

/* mstats_line - one "name{labels} value" line */
static void
mstats_line(struct mstats *m, char *line)
{
	static const struct {
		const char *name;
		size_t	off;
		int	redis;
	} plain[] = {
#define M(n, f, r)	{ n, offsetof(struct mstats, f), r }
		M("policyd_requests_total", requests, 0),
		M("policyd_replies_total", replies, 0),
		M("policyd_malformed_total", malformed, 0),
		M("policyd_on_error_total", on_error, 0),
		M("policyd_request_duration_seconds_sum", lat_sum, 0),
		M("policyd_request_duration_seconds_count", lat_count, 0),
		M("policyd_connections", conns, 0),
		M("policyd_connections_total", conns_total, 0),
		M("policyd_reloads_total", reloads, 0),
		M("policyd_reload_failures_total", reload_failures, 0),
		M("policyd_config_generation", generation, 0),
		M("policyd_redis_up", redis_up, 0),
		M("policyd_redis_commands_total", redis_commands, 1),
		M("policyd_redis_errors_total", redis_errors, 1),
		M("policyd_redis_timeouts_total", redis_timeouts, 1),
		M("policyd_redis_reconnects_total", redis_reconnects, 1),
		M("policyd_redis_noscript_total", redis_noscript, 1),
		M("policyd_redis_latency_seconds_sum", redis_latency_sum, 1),
#undef M
	};
	char	*labels = NULL, *val, *end, *name = line, a[128];
	double	v;

	if (*line == '#' || *line == '\0')
		return;
	if ((val = strrchr(line, ' ')) == NULL)
		return;
	*val++ = '\0';
	v = strtod(val, &end);
	if (end == val)
		return;
	if ((labels = strchr(line, '{')) != NULL) {
		char	*close = strrchr(labels, '}');

		if (close == NULL)
			return;
		*labels++ = '\0';
		*close = '\0';
	}
	if (labels == NULL) {
		for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
			if (strcmp(name, plain[i].name) == 0) {
				*(double *)((char *)m + plain[i].off) = v;
				m->have_redis |= plain[i].redis;
			}
		return;
	}
	if (strcmp(name, "policyd_requests_by_state_total") == 0) {
		if (m->nstates < 16 && label_get(labels, "state", a,
		    sizeof(a)) == 0) {
			snprintf(m->state_name[m->nstates],
			    sizeof(m->state_name[0]), "%s", a);
			m->by_state[m->nstates++] = v;
		}
	} else if (strcmp(name, "policyd_decisions_total") == 0) {
		if (m->ndec < ST_MAX_DEC && label_get(labels, "rule",
		    m->dec[m->ndec].rule, sizeof(m->dec[0].rule)) == 0 &&
		    label_get(labels, "action", m->dec[m->ndec].action,
		    sizeof(m->dec[0].action)) == 0)
			m->dec[m->ndec++].n = v;
	} else if (strcmp(name, "policyd_request_duration_seconds_bucket")
	    == 0) {
		if (m->nbuckets < ST_MAX_BUCKETS && label_get(labels, "le", a,
		    sizeof(a)) == 0) {
			m->le[m->nbuckets] = strcmp(a, "+Inf") == 0 ? -1 :
			    strtod(a, NULL);
			m->cum[m->nbuckets++] = v;
		}
	}
}

/*
 * quantile - estimate the q-quantile in seconds from the cumulative
 * histogram, interpolating inside the bucket (as Prometheus'
 * histogram_quantile); -1 when it lies in the +Inf bucket, -2 when empty.
 */
static double
quantile(const struct mstats *m, double q)
{
	double	total, rank, lo = 0, prev = 0;

	if (m->nbuckets == 0 || (total = m->cum[m->nbuckets - 1]) <= 0)
		return -2;
	rank = q * total;
	for (int i = 0; i < m->nbuckets; i++) {
		if (m->cum[i] >= rank) {
			if (m->le[i] < 0)
				return -1;
			if (m->cum[i] - prev <= 0)
				return m->le[i];
			return lo + (m->le[i] - lo) * (rank - prev) /
			    (m->cum[i] - prev);
		}
		if (m->le[i] >= 0)
			lo = m->le[i];
		prev = m->cum[i];
	}
	return -1;
}

/* print_ms - a latency for a person */
static void
print_ms(const char *what, double sec, const struct mstats *m)
{
	if (sec == -1) {
		double	last = 0;

		for (int i = 0; i < m->nbuckets; i++)
			if (m->le[i] >= 0)
				last = m->le[i];
		printf("%s > %g ms", what, last * 1000);
	} else {
		printf("%s %.3g ms", what, sec * 1000);
	}
}

/* dec_cmp - decisions, most frequent first */
static int
dec_cmp(const void *a, const void *b)
{
	double	x = ((const struct mdec *)a)->n;
	double	y = ((const struct mdec *)b)->n;

	return x < y ? 1 : x > y ? -1 : 0;
}

/* stats_print - the figures for a person */
static void
stats_print(const struct mstats *m, const char *hostport)
{
	printf("policyd at http://%s/metrics\n", hostport);
	printf("%-14s %.0f", "requests", m->requests);
	for (int i = 0, n = 0; i < m->nstates; i++)
		if (m->by_state[i] > 0)
			printf("%s%s %.0f", n++ ? ", " : " (",
			    m->state_name[i], m->by_state[i]);
	for (int i = 0; i < m->nstates; i++)
		if (m->by_state[i] > 0) {
			putchar(')');
			break;
		}
	putchar('\n');
	printf("%-14s %.0f\n", "replies", m->replies);
	printf("%-14s %.0f (connections closed for malformed or timed-out "
	    "requests)\n", "malformed", m->malformed);
	printf("%-14s %.0f (a check could not decide: on_error answered)\n",
	    "on_error", m->on_error);
	printf("decisions:\n");
	if (m->ndec == 0)
		printf("  none yet\n");
	for (int i = 0; i < m->ndec; i++)
		printf("  %-24s %-18s %10.0f\n", m->dec[i].rule,
		    m->dec[i].action, m->dec[i].n);
	printf("%-14s ", "latency");
	if (m->lat_count <= 0) {
		printf("no requests yet\n");
	} else {
		printf("mean %.3g ms; ", m->lat_sum / m->lat_count * 1000);
		print_ms("p50", quantile(m, 0.5), m);
		print_ms(", p90", quantile(m, 0.9), m);
		print_ms(", p99", quantile(m, 0.99), m);
		printf(" (estimated from the histogram)\n");
	}
	printf("%-14s %.0f open, %.0f accepted\n", "connections", m->conns,
	    m->conns_total);
	printf("%-14s %s", "redis", m->redis_up > 0 ? "up" : "DOWN");
	if (m->have_redis) {
		printf(", %.0f commands, %.0f errors, %.0f timeouts, %.0f "
		    "reconnects, %.0f NOSCRIPT", m->redis_commands,
		    m->redis_errors, m->redis_timeouts, m->redis_reconnects,
		    m->redis_noscript);
		if (m->redis_commands > 0)
			printf(", mean %.3g ms", m->redis_latency_sum /
			    m->redis_commands * 1000);
	}
	putchar('\n');
	printf("%-14s generation %.0f, %.0f reloads, %.0f refused\n",
	    "configuration", m->generation, m->reloads, m->reload_failures);
}

/* cmd_stats - fetch /metrics and print it for a person */
int
cmd_stats(const struct ctl *ctl, int argc, char **argv)
{
	struct ctlconf cc;
	struct mstats *m;
	char	hostport[300], *body = NULL, *line, *next;
	int	status;

	(void)argv;
	if (argc != 0) {
		ctl_err("usage: policyctl [-c CONFIG | -m HOST:PORT] stats");
		return CTL_USAGE;
	}
	if (ctl->metrics != NULL) {
		snprintf(hostport, sizeof(hostport), "%s", ctl->metrics);
	} else {
		if ((status = conf_open(ctl, &cc)) != 0) {
			conf_close(&cc);
			return status;
		}
		snprintf(hostport, sizeof(hostport), "%s",
		    cc.cfg->metrics_address);
		conf_close(&cc);
		if (hostport[0] == '\0') {
			ctl_err("%s: metrics.address is empty: policyd "
			    "serves no metrics", ctl->config);
			return CTL_FAIL;
		}
	}
	if ((status = client_http_get(ctl, hostport, "/metrics", &body)) != 0)
		return status;
	if ((m = calloc(1, sizeof(*m))) == NULL) {
		ctl_err("out of memory");
		free(body);
		return CTL_FAIL;
	}
	for (line = body; line != NULL && *line; line = next) {
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		line[strcspn(line, "\r")] = '\0';
		mstats_line(m, line);
	}
	free(body);
	if (m->nbuckets == 0 && m->requests == 0 && m->generation == 0) {
		ctl_err("http://%s/metrics: no policyd figures in the "
		    "answer", hostport);
		free(m);
		return CTL_FAIL;
	}
	if (m->ndec > 0)
		qsort(m->dec, (size_t)m->ndec, sizeof(m->dec[0]), dec_cmp);
	stats_print(m, hostport);
	free(m);
	return CTL_OK;
}

/*++
 * NAME
 *	stats.c - counters and histograms (see stats.h)
 *--*/
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stats.h"

const double stats_bucket_le[STATS_BUCKETS] = {
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1.0, 1e300
};

static const char *const state_names[STATS_STATES] = {
	"CONNECT", "EHLO", "HELO", "MAIL", "RCPT", "DATA", "END-OF-MESSAGE",
	"VRFY", "ETRN", "other"
};

#define DEC_MAX		1024		/* distinct (rule, action) pairs */

struct decision {
	char	*rule, *action;
	unsigned long long n;
};

static struct decision decisions[DEC_MAX];
static size_t ndecisions;
static unsigned long long decisions_dropped;

/* stats_latency - one request took ms */
void
stats_latency(struct stats *s, double ms)
{
	double	sec = ms / 1000.0;
	int	i;

	for (i = 0; i < STATS_BUCKETS - 1 && sec > stats_bucket_le[i]; i++)
		;
	s->lat_bucket[i]++;
	s->lat_count++;
	s->lat_sum_s += sec;
}

/* stats_state - count a request by protocol_state */
void
stats_state(struct stats *s, const char *state)
{
	for (int i = 0; i < STATS_STATES - 1; i++)
		if (strcmp(state, state_names[i]) == 0) {
			s->by_state[i]++;
			return;
		}
	s->by_state[STATS_STATES - 1]++;
}

/* stats_decision - count (rule, first word of action) */
void
stats_decision(const char *rule, const char *action)
{
	size_t	wl = strcspn(action, " \t");

	for (size_t i = 0; i < ndecisions; i++) {
		struct decision *d = &decisions[i];

		if (strcmp(d->rule, rule) == 0 && strlen(d->action) == wl &&
		    strncmp(d->action, action, wl) == 0) {
			d->n++;
			return;
		}
	}
	if (ndecisions == DEC_MAX) {
		decisions_dropped++;
		return;
	}
	decisions[ndecisions].rule = strdup(rule);
	decisions[ndecisions].action = strndup(action, wl);
	decisions[ndecisions].n = 1;
	ndecisions++;
}

/* stats_buf_printf - append formatted text */
void
stats_buf_printf(struct stats_buf *b, const char *fmt, ...)
{
	va_list ap;
	int	n;

	for (;;) {
		if (b->data != NULL) {
			va_start(ap, fmt);
			n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
			va_end(ap);
			if (n >= 0 && (size_t)n < b->cap - b->len) {
				b->len += n;
				return;
			}
		}
		b->cap = b->cap ? b->cap * 2 : 8192;
		if ((b->data = realloc(b->data, b->cap)) == NULL)
			abort();
	}
}

/* label_escape - Prometheus label value: escape \, " and newline */
static void
label_escape(char *dst, size_t len, const char *src)
{
	size_t	o = 0;

	for (; *src && o + 3 < len; src++) {
		if (*src == '\\' || *src == '"') {
			dst[o++] = '\\';
			dst[o++] = *src;
		} else if (*src == '\n') {
			dst[o++] = '\\';
			dst[o++] = 'n';
		} else {
			dst[o++] = *src;
		}
	}
	dst[o] = '\0';
}

/* stats_render_decisions - policyd_decisions_total{rule,action} */
void
stats_render_decisions(struct stats_buf *b)
{
	char	r[256], a[64];

	stats_buf_printf(b, "# HELP policyd_decisions_total Answers by deciding "
	    "rule and action.\n# TYPE policyd_decisions_total counter\n");
	for (size_t i = 0; i < ndecisions; i++) {
		label_escape(r, sizeof(r), decisions[i].rule);
		label_escape(a, sizeof(a), decisions[i].action);
		stats_buf_printf(b, "policyd_decisions_total{rule=\"%s\","
		    "action=\"%s\"} %llu\n", r, a, decisions[i].n);
	}
}

/* stats_free - release the decision table */
void
stats_free(void)
{
	for (size_t i = 0; i < ndecisions; i++) {
		free(decisions[i].rule);
		free(decisions[i].action);
	}
	ndecisions = 0;
}

/* stats_state_name - label of by_state[i] */
const char *
stats_state_name(int i)
{
	return state_names[i];
}

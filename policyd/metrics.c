/*++
 * NAME
 *	metrics.c - Prometheus text over libevent's evhttp (see metrics.h)
 *--*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "log.h"
#include "metrics.h"
#include "resolver.h"
#include "server.h"
#include "store.h"
#include "table.h"

static struct evhttp *http;

#define COUNTER(name, help, value) \
	stats_buf_printf(&b, "# HELP " name " " help "\n# TYPE " name \
	    " counter\n" name " %llu\n", (unsigned long long)(value))
#define GAUGE(name, help, fmt, value) \
	stats_buf_printf(&b, "# HELP " name " " help "\n# TYPE " name \
	    " gauge\n" name " " fmt "\n", (value))

/* metrics_render - Prometheus exposition of every counter */
char *
metrics_render(size_t *len)
{
	struct stats_buf b = { 0 };
	const struct stats *s = &srv.stats;
	const struct store_stats *rs = srv.store ? store_get_stats(srv.store) :
	    NULL;
	unsigned long long cum = 0;

	COUNTER("policyd_requests_total", "Policy requests received.",
	    s->requests);
	COUNTER("policyd_replies_total", "Replies sent.", s->replies);
	COUNTER("policyd_malformed_total", "Connections closed for malformed "
	    "or timed-out requests.", s->malformed);
	COUNTER("policyd_on_error_total", "Requests where a check could not "
	    "decide and answered on_error.", s->tempfail);
	stats_buf_printf(&b, "# HELP policyd_requests_by_state_total Requests "
	    "by protocol_state.\n# TYPE policyd_requests_by_state_total "
	    "counter\n");
	for (int i = 0; i < STATS_STATES; i++)
		stats_buf_printf(&b, "policyd_requests_by_state_total{state=\"%s\"}"
		    " %llu\n", stats_state_name(i), s->by_state[i]);
	stats_render_decisions(&b);
	stats_buf_printf(&b, "# HELP policyd_request_duration_seconds Time from "
	    "a complete request to its answer.\n# TYPE "
	    "policyd_request_duration_seconds histogram\n");
	for (int i = 0; i < STATS_BUCKETS; i++) {
		cum += s->lat_bucket[i];
		if (i == STATS_BUCKETS - 1)
			stats_buf_printf(&b, "policyd_request_duration_seconds_"
			    "bucket{le=\"+Inf\"} %llu\n", cum);
		else
			stats_buf_printf(&b, "policyd_request_duration_seconds_"
			    "bucket{le=\"%g\"} %llu\n", stats_bucket_le[i], cum);
	}
	stats_buf_printf(&b, "policyd_request_duration_seconds_sum %.6f\n"
	    "policyd_request_duration_seconds_count %llu\n", s->lat_sum_s,
	    s->lat_count);
	GAUGE("policyd_connections", "Open client connections.", "%d",
	    srv.nconns);
	COUNTER("policyd_connections_total", "Client connections accepted.",
	    s->connections_total);
	GAUGE("policyd_connections_idle", "Open client connections with no "
	    "request in flight.", "%d", srv.nidle);
	COUNTER("policyd_connections_evicted_total", "Idle connections closed "
	    "at limits.max_connections to admit new clients.", srv.conn_evicted);
	COUNTER("policyd_connections_refused_total", "Connections closed at "
	    "accept: the client is not in the listener's clients list.",
	    srv.conn_refused);
	COUNTER("policyd_reloads_total", "Successful configuration reloads.",
	    s->reloads);
	COUNTER("policyd_log_dropped_total", "Log lines dropped because the "
	    "log sink (stderr, syslog) could not take them.", log_dropped());
	COUNTER("policyd_reload_failures_total", "Reloads refused because the "
	    "new configuration had errors.", s->reload_failures);
	GAUGE("policyd_config_generation", "Generation of the running "
	    "configuration (1 at start, +1 per reload).", "%u",
	    srv.cfg ? srv.cfg->generation : 0);
	GAUGE("policyd_redis_up", "1 when the Redis connection is up.", "%d",
	    srv.store ? store_ready(srv.store) : 0);
	if (rs != NULL) {
		COUNTER("policyd_redis_commands_total", "Redis commands sent.",
		    rs->commands);
		COUNTER("policyd_redis_errors_total", "Redis commands that "
		    "failed (error, timeout, disconnect).", rs->errors);
		COUNTER("policyd_redis_timeouts_total", "Redis commands that "
		    "timed out.", rs->timeouts);
		COUNTER("policyd_redis_reconnects_total", "Redis connections "
		    "dropped and retried.", rs->reconnects);
		COUNTER("policyd_redis_noscript_total", "Scripts re-sent after "
		    "NOSCRIPT.", rs->noscript);
		COUNTER("policyd_redis_moved_total", "Cluster MOVED "
		    "redirections followed.", rs->moved);
		COUNTER("policyd_redis_ask_total", "Cluster ASK redirections "
		    "followed.", rs->ask);
		COUNTER("policyd_redis_slot_refreshes_total", "CLUSTER SLOTS "
		    "refreshes.", rs->slot_refreshes);
		COUNTER("policyd_redis_primary_switches_total", "Sentinel: "
		    "moves to a new primary.", rs->primary_switches);
		GAUGE("policyd_redis_latency_seconds_sum", "Total time spent "
		    "waiting for Redis.", "%.6f", rs->latency_sum_ms / 1000.0);
	}
	if (srv.resolver != NULL) {
		const struct dns_stats *ds = resolver_stats(srv.resolver);

		COUNTER("policyd_dns_queries_total", "DNS questions asked by "
		    "the checks (cache hits included).", ds->queries);
		COUNTER("policyd_dns_cache_hits_total", "DNS questions "
		    "answered from the cache.", ds->cache_hits);
		COUNTER("policyd_dns_timeouts_total", "DNS questions without "
		    "an answer after every attempt.", ds->timeouts);
		COUNTER("policyd_dns_servfails_total", "DNS questions that "
		    "failed (SERVFAIL, REFUSED, unusable replies).",
		    ds->servfails);
		COUNTER("policyd_dns_tcp_total", "Truncated UDP answers asked "
		    "again over TCP.", ds->tcp);
		COUNTER("policyd_dns_budget_exhausted_total", "DNS questions "
		    "cut short by the request's DNS budget.", ds->budget);
		GAUGE("policyd_dns_cache_entries", "Answers in the DNS cache.",
		    "%d", resolver_cache_count(srv.resolver));
	}
	table_render_metrics(&b);
	*len = b.len;
	return b.data;
}

/* metrics_cb - /metrics */
static void
metrics_cb(struct evhttp_request *req, void *arg)
{
	struct evbuffer *out = evbuffer_new();
	size_t	len;
	char	*text = metrics_render(&len);

	(void)arg;
	evbuffer_add(out, text, len);
	free(text);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	evhttp_send_reply(req, HTTP_OK, "OK", out);
	evbuffer_free(out);
}

/* healthz_cb - /healthz: 200 only when Redis and every SQL table are reachable */
static void
healthz_cb(struct evhttp_request *req, void *arg)
{
	struct evbuffer *out = evbuffer_new();
	int	up = srv.store != NULL && store_ready(srv.store);
	char	down[512];

	(void)arg;
	if (table_down(down, sizeof(down)) > 0) {
		/* an SQL table down: its rules answer on_error */
		evbuffer_add_printf(out, "%stable down: %s\n", up ? "" :
		    "redis unreachable\n", down);
		up = 0;
	} else
		evbuffer_add_printf(out, up ? "ok\n" : "redis unreachable\n");
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "text/plain");
	evhttp_send_reply(req, up ? HTTP_OK : 503, up ? "OK" :
	    "Service Unavailable", out);
	evbuffer_free(out);
}

/* other_cb - anything else */
static void
other_cb(struct evhttp_request *req, void *arg)
{
	(void)arg;
	evhttp_send_error(req, HTTP_NOTFOUND, "try /metrics or /healthz");
}

/* metrics_start - listen on HOST:PORT; "" = off */
int
metrics_start(const char *address)
{
	char	host[256];
	const char *colon;
	size_t	hl;

	if (address == NULL || address[0] == '\0')
		return 0;
	colon = strrchr(address, ':');
	if (colon == NULL) {
		log_errx("metrics.address \"%s\": expected HOST:PORT", address);
		return -1;
	}
	hl = colon - address;
	if (hl >= 2 && address[0] == '[' && address[hl - 1] == ']') {
		address++;
		hl -= 2;
	}
	if (hl >= sizeof(host))
		hl = sizeof(host) - 1;
	memcpy(host, address, hl);
	host[hl] = '\0';
	if ((http = evhttp_new(srv.base)) == NULL)
		return -1;
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_timeout(http, 10);
	evhttp_set_cb(http, "/metrics", metrics_cb, NULL);
	evhttp_set_cb(http, "/healthz", healthz_cb, NULL);
	evhttp_set_gencb(http, other_cb, NULL);
	if (evhttp_bind_socket(http, host, (unsigned short)atoi(colon + 1)) != 0) {
		log_errx("metrics: cannot listen on %s:%s; running without "
		    "metrics", host, colon + 1);
		evhttp_free(http);
		http = NULL;
		return -1;
	}
	log_info("metrics on http://%s:%s/metrics", host, colon + 1);
	return 0;
}

/* metrics_stop - close the HTTP listener */
void
metrics_stop(void)
{
	if (http != NULL)
		evhttp_free(http);
	http = NULL;
}

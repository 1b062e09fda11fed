/*++
 * NAME
 *	metrics.h - Prometheus /metrics and /healthz over HTTP (evhttp)
 * DESCRIPTION
 *	metrics_start() listens on "HOST:PORT" (loopback by default; "" turns
 *	it off). A failure to listen is logged and policyd runs on without
 *	metrics: answering Postfix matters more. /metrics renders srv.stats
 *	and the state layer's counters; /healthz answers 200 "ok" when Redis
 *	is connected and 503 otherwise.
 *--*/
#ifndef POLICYD_METRICS_H
#define POLICYD_METRICS_H

int	metrics_start(const char *address);
void	metrics_stop(void);
/* metrics_render - the whole exposition text (caller frees) */
char	*metrics_render(size_t *len);

#endif

/*++
 * NAME
 *	conn.c - one Postfix policy client connection
 * DESCRIPTION
 *	States: reading requests; paused (too many in flight or the client
 *	does not read its replies); closing (malformed input, timeout or
 *	shutdown: no more reads, in-flight requests still answered, then
 *	close); detached (the peer is gone: in-flight requests finish and
 *	are dropped). A slot per request in flight, in arrival order; a
 *	reply leaves only when every earlier one has.
 *--*/
#include <sys/queue.h>
#include <sys/socket.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "log.h"
#include "rules.h"
#include "server.h"

#define OUTPUT_CAP	(256 * 1024)	/* pause reading above this */

struct slot {
	TAILQ_ENTRY(slot) link;
	struct conn *c;
	int	done;
	double	start_ms;
	struct policy_req req;
	struct eval ev;
	size_t	replylen;
	char	*reply;			/* inline, or malloc'ed for a trace */
	char	inline_reply[EVAL_TEXT + 16];
};

TAILQ_HEAD(slot_list, slot);

struct conn {
	TAILQ_ENTRY(conn) link;
	struct bufferevent *bev;	/* NULL once detached */
	struct proto proto;
	struct slot_list slots;
	int	nslots;
	int	closing;
	int	paused;
	struct event *req_timer;	/* request_timeout for a partial request */
	char	peer[80];
};

static void conn_read_cb(struct bufferevent *bev, void *arg);
static int conn_process(struct conn *c);
static void conn_maybe_free(struct conn *c);

/* mono_ms - monotonic milliseconds */
static double
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* conn_free - release everything (no slots may remain) */
static void
conn_free(struct conn *c)
{
	if (c->bev)
		bufferevent_free(c->bev);
	if (c->req_timer)
		event_free(c->req_timer);
	TAILQ_REMOVE(&srv.conns, c, link);
	srv.nconns--;
	free(c);
	if (srv.accepting_paused && srv.cfg &&
	    srv.nconns < srv.cfg->max_connections)
		listener_pause(0);
}

/* conn_detach - the peer is gone or must go: close the socket now */
static void
conn_detach(struct conn *c)
{
	if (c->bev) {
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	if (c->req_timer)
		evtimer_del(c->req_timer);
	conn_maybe_free(c);
}

/* conn_maybe_free - free when nothing is left to do */
static void
conn_maybe_free(struct conn *c)
{
	if (c->nslots > 0)
		return;
	if (c->bev != NULL) {
		if (!c->closing)
			return;
		if (evbuffer_get_length(bufferevent_get_output(c->bev)) > 0)
			return;			/* write_cb comes back */
	}
	conn_free(c);
}

/* conn_begin_close - stop reading; finish what is in flight */
static void
conn_begin_close(struct conn *c)
{
	c->closing = 1;
	if (c->bev) {
		bufferevent_disable(c->bev, EV_READ);
		evbuffer_drain(bufferevent_get_input(c->bev),
		    evbuffer_get_length(bufferevent_get_input(c->bev)));
	}
	if (c->req_timer)
		evtimer_del(c->req_timer);
	conn_maybe_free(c);
}

/* log_decision - the one line per request */
static void
log_decision(const struct slot *s, double ms)
{
	const struct policy_req *q = &s->req;
	const struct eval *ev = &s->ev;
	char	qid[64], cname[256], caddr[128], sasl[256], snd[512], rcpt[512];
	char	act[600], det[300];

	if (q->len[A_QUEUE_ID])
		log_escape(qid, sizeof(qid), q->v[A_QUEUE_ID], q->len[A_QUEUE_ID]);
	else
		strcpy(qid, "NOQUEUE");
	log_escape(cname, sizeof(cname), q->v[A_CLIENT_NAME], q->len[A_CLIENT_NAME]);
	log_escape(caddr, sizeof(caddr), q->v[A_CLIENT_ADDRESS],
	    q->len[A_CLIENT_ADDRESS]);
	log_escape(sasl, sizeof(sasl), q->v[A_SASL_USERNAME],
	    q->len[A_SASL_USERNAME]);
	log_escape(snd, sizeof(snd), q->v[A_SENDER], q->len[A_SENDER]);
	log_escape(rcpt, sizeof(rcpt), q->v[A_RECIPIENT], q->len[A_RECIPIENT]);
	log_escape(act, sizeof(act), ev->action, strlen(ev->action));
	log_escape(det, sizeof(det), ev->detail, strlen(ev->detail));
	log_info("%s: rule=%s action=%s client=%s[%s] sasl=%s sender=<%s> "
	    "recipient=<%s> state=%.20s%s%s%s%s delay=%.1fms", qid,
	    ev->rule ? ev->rule->name : "-", act, cname[0] ? cname : "unknown",
	    caddr, sasl[0] ? sasl : "-", snd, rcpt,
	    q->v[A_PROTOCOL_STATE][0] ? q->v[A_PROTOCOL_STATE] : "-",
	    det[0] ? " detail=\"" : "", det, det[0] ? "\"" : "",
	    ev->tempfail ? " on_error=yes" : "", ms);
}

/* count_action - per-kind counters */
static void
count_action(const char *a)
{
	if (strncasecmp(a, "DUNNO", 5) == 0)
		srv.stats.dunno++;
	else if (strncasecmp(a, "OK", 2) == 0)
		srv.stats.ok++;
	else if (strncasecmp(a, "DEFER", 5) == 0 || a[0] == '4')
		srv.stats.defer++;
	else if (strncasecmp(a, "REJECT", 6) == 0 || a[0] == '5')
		srv.stats.reject++;
	else
		srv.stats.other++;
}

/* conn_flush - write every finished reply at the head, in order */
static void
conn_flush(struct conn *c)
{
	struct slot *s;

	while ((s = TAILQ_FIRST(&c->slots)) != NULL && s->done) {
		TAILQ_REMOVE(&c->slots, s, link);
		c->nslots--;
		if (c->bev)
			evbuffer_add(bufferevent_get_output(c->bev), s->reply,
			    s->replylen);
		srv.stats.replies++;
		if (s->reply != s->inline_reply)
			free(s->reply);
		config_unref(s->ev.cfg);
		rules_eval_free(&s->ev);
		proto_req_free(&s->req);
		free(s);
	}
	if (c->bev == NULL || c->closing) {
		conn_maybe_free(c);
		return;
	}
	/* resume reading when we were waiting for room */
	if (c->paused && c->nslots < srv.cfg->max_pipeline &&
	    evbuffer_get_length(bufferevent_get_output(c->bev)) < OUTPUT_CAP) {
		c->paused = 0;
		bufferevent_enable(c->bev, EV_READ);
		conn_process(c);		/* requests already buffered */
	}
}

/* conn_eval_done - a request has its answer */
static void
conn_eval_done(struct eval *ev)
{
	struct slot *s = ev->done_arg;
	double	ms = mono_ms() - s->start_ms;
	int	n;

	s->reply = NULL;
	if (ev->want_trace)
		s->reply = proto_format_trace(ev->trace, ev->action,
		    &s->replylen);
	if (s->reply == NULL) {
		s->reply = s->inline_reply;
		n = proto_format_reply(s->reply, sizeof(s->inline_reply),
		    ev->action);
		if (n < 0)
			n = proto_format_reply(s->reply,
			    sizeof(s->inline_reply), "DUNNO");
		s->replylen = (size_t)n;
	}
	s->done = 1;
	if (ev->tempfail)
		srv.stats.tempfail++;
	count_action(ev->action);
	stats_latency(&srv.stats, ms);
	stats_state(&srv.stats, s->req.v[A_PROTOCOL_STATE]);
	stats_decision(ev->rule ? ev->rule->name : "-", ev->action);
	log_decision(s, ms);
	conn_flush(s->c);
}

/* conn_start_request - evaluate one parsed request; -1: c may be gone */
static int
conn_start_request(struct conn *c, struct policy_req *req)
{
	struct slot *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		log_warnx("out of memory: closing %s", c->peer);
		proto_req_free(req);
		conn_begin_close(c);
		return -1;
	}
	srv.stats.requests++;
	s->c = c;
	s->req = *req;
	s->start_ms = mono_ms();
	s->ev.cfg = config_ref(srv.cfg);
	s->ev.req = &s->req;
	s->ev.store = srv.store;
	s->ev.now = time(NULL);
	s->ev.done = conn_eval_done;
	s->ev.done_arg = s;
	s->ev.want_trace = s->req.len[A_POLICYD_EXPLAIN] > 0 &&
	    strcmp(s->req.v[A_POLICYD_EXPLAIN], "no") != 0;
	TAILQ_INSERT_TAIL(&c->slots, s, link);
	c->nslots++;
	if (strcmp(s->req.v[A_REQUEST], "smtpd_access_policy") != 0) {
		char	rq[128];

		log_escape(rq, sizeof(rq), s->req.v[A_REQUEST],
		    s->req.len[A_REQUEST]);
		log_warnx("%s: unsupported request type \"%s\": answering DUNNO",
		    c->peer, rq);
		rules_eval_init(&s->ev);
		strcpy(s->ev.action, "DUNNO");
		strcpy(s->ev.detail, "unsupported request type");
		conn_eval_done(&s->ev);
		return 0;
	}
	rules_eval_init(&s->ev);
	rules_eval(&s->ev);
	return 0;
}

/* conn_req_timeout - a partial request took too long (drip feeding) */
static void
conn_req_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)what;
	log_warnx("%s: request not completed within %d s: closing without "
	    "reply", c->peer, srv.cfg->request_timeout);
	srv.stats.malformed++;
	conn_begin_close(c);
}

/* conn_read_cb - bytes arrived */
static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	conn_process(arg);
}

/* conn_process - parse and start requests; -1 when c may be gone */
static int
conn_process(struct conn *c)
{
	struct bufferevent *bev = c->bev;
	struct evbuffer *in;
	int	completed = 0, partial = 0;

	if (bev == NULL || c->closing)
		return 0;
	in = bufferevent_get_input(bev);
	while (!c->closing && c->bev != NULL) {
		struct policy_req req;
		size_t	len = evbuffer_get_length(in), used = 0;
		const char *buf;
		int	rc;

		if (len == 0)
			break;
		if (c->nslots >= srv.cfg->max_pipeline ||
		    evbuffer_get_length(bufferevent_get_output(bev)) >= OUTPUT_CAP) {
			c->paused = 1;
			bufferevent_disable(bev, EV_READ);
			break;
		}
		buf = (const char *)evbuffer_pullup(in, -1);
		rc = proto_parse(&c->proto, buf, len, &req, &used);
		if (rc == PROTO_NEED_MORE) {
			partial = 1;
			break;
		}
		if (rc == PROTO_ERR) {
			log_warnx("%s: malformed request (%s): closing without "
			    "reply", c->peer, c->proto.err);
			srv.stats.malformed++;
			conn_begin_close(c);
			return -1;
		}
		evbuffer_drain(in, used);
		completed = 1;
		if (conn_start_request(c, &req) < 0)
			return -1;
	}
	if (c->bev == NULL || c->closing)
		return 0;
	/*
	 * A partial request must complete within request_timeout, counted
	 * from its own start: a request completed here restarts the clock
	 * for the next one. Complete requests waiting while the connection
	 * is paused (our side is busy) are not the client's delay.
	 */
	if (partial) {
		if (completed)
			evtimer_del(c->req_timer);
		if (!evtimer_pending(c->req_timer, NULL)) {
			struct timeval tv = { srv.cfg->request_timeout, 0 };

			evtimer_add(c->req_timer, &tv);
		}
	} else {
		evtimer_del(c->req_timer);
	}
	return 0;
}

/* conn_write_cb - output drained */
static void
conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	(void)bev;
	if (c->closing) {
		conn_maybe_free(c);
		return;
	}
	if (c->paused)
		conn_flush(c);
}

/* conn_event_cb - EOF, error or timeout */
static void
conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	(void)bev;
	if (what & BEV_EVENT_TIMEOUT) {
		if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
			log_warnx("%s: timeout in the middle of a request: "
			    "closing", c->peer);
		else
			log_debug("%s: idle for %d s: closing", c->peer,
			    srv.cfg->idle_timeout);
	} else if (what & BEV_EVENT_ERROR) {
		log_debug("%s: connection error: %s", c->peer,
		    strerror(EVUTIL_SOCKET_ERROR()));
		if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
			log_warnx("%s: connection reset in the middle of a "
			    "request", c->peer);
	} else if (what & BEV_EVENT_EOF) {
		/*
		 * A half-close (shutdown(SHUT_WR), "nc -N") still wants the
		 * answers to what it sent: finish those, then close.
		 */
		if (conn_process(c) < 0)
			return;
		if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
			log_warnx("%s: client closed the connection in the "
			    "middle of a request", c->peer);
		conn_begin_close(c);
		return;
	}
	conn_detach(c);
}

/* conn_new - take an accepted socket */
void
conn_new(int fd, const char *peer)
{
	struct conn *c = calloc(1, sizeof(*c));
	struct timeval idle = { srv.cfg->idle_timeout, 0 };

	if (c == NULL) {
		close(fd);
		return;
	}
	evutil_make_socket_nonblocking(fd);
	c->bev = bufferevent_socket_new(srv.base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		close(fd);
		free(c);
		return;
	}
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	proto_init(&c->proto, &srv.cfg->limits);
	TAILQ_INIT(&c->slots);
	c->req_timer = evtimer_new(srv.base, conn_req_timeout, c);
	TAILQ_INSERT_TAIL(&srv.conns, c, link);
	srv.nconns++;
	srv.stats.connections_total++;
	bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
	bufferevent_set_timeouts(c->bev, &idle, &idle);
	bufferevent_enable(c->bev, EV_READ);
	if (srv.nconns >= srv.cfg->max_connections && !srv.accepting_paused) {
		log_warnx("%d connections open (limits.max_connections): "
		    "pausing accept", srv.nconns);
		listener_pause(1);
	}
}

/* conn_shutdown_all - graceful stop: answer what is in flight, then close */
void
conn_shutdown_all(void)
{
	struct conn *c, *next;

	for (c = TAILQ_FIRST(&srv.conns); c != NULL; c = next) {
		next = TAILQ_NEXT(c, link);
		/* answer what was already received, then close */
		if (c->bev != NULL && conn_process(c) < 0)
			continue;
		conn_begin_close(c);
	}
}

/* conn_close_all - at exit: drop everything that is left */
void
conn_close_all(void)
{
	struct conn *c;

	while ((c = TAILQ_FIRST(&srv.conns)) != NULL) {
		struct slot *s;

		while ((s = TAILQ_FIRST(&c->slots)) != NULL) {
			if (!s->done)
				break;		/* still owned by a callback */
			TAILQ_REMOVE(&c->slots, s, link);
			c->nslots--;
			if (s->reply != s->inline_reply)
				free(s->reply);
			config_unref(s->ev.cfg);
			rules_eval_free(&s->ev);
			proto_req_free(&s->req);
			free(s);
		}
		if (c->nslots > 0) {
			/* callbacks were failed by store_free() before this */
			log_warnx("%s: %d requests unanswered at exit", c->peer,
			    c->nslots);
			TAILQ_REMOVE(&srv.conns, c, link);
			srv.nconns--;
			continue;
		}
		c->closing = 1;
		if (c->bev) {
			bufferevent_free(c->bev);
			c->bev = NULL;
		}
		conn_free(c);
	}
}

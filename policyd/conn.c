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
 *
 *	I/O is plain recv()/send() on a non-blocking socket with two libevent
 *	events: a persistent read event whose timeout is the idle timeout,
 *	and a write event that is added only while replies are left unsent.
 *	Input is read into one process-wide scratch buffer and parsed in
 *	place; only the tail of an incomplete request is copied into the
 *	connection's own buffer. An idle connection holds no buffers, and a
 *	request/reply costs one recv() and one send().
 *
 *	While the read loop runs (busy), replies are collected and sent
 *	together at its end, and the connection cannot be freed under it.
 *
 *	A connection with no request in flight and no reply unsent is idle:
 *	it sits in srv.idle, least recently used first (it goes to the tail
 *	whenever it becomes idle again). At limits.max_connections, a new
 *	connection evicts the head of that list; when the list is still
 *	empty at the cap once the events at hand have run, accepting pauses
 *	until a connection is idle or gone.
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

#include <event2/event.h>

#include "log.h"
#include "rules.h"
#include "server.h"

#define OUTPUT_CAP	(256 * 1024)	/* pause reading above this */
#define READ_CHUNK	(64 * 1024)

struct slot {
	TAILQ_ENTRY(slot) link;
	struct conn *c;
	int	done;
	double	start_ms;
	size_t	replylen;
	char	*reply;			/* inline, or malloc'ed for a trace */
	struct policy_req req;
	struct eval ev;			/* eval_clear(): its text buffers last */
	char	inline_reply[EVAL_TEXT + 16];
};

TAILQ_HEAD(slot_list, slot);

/*
 * Slots of answered requests are kept for the next ones: a slot is some
 * 7 KiB, which malloc serves by its slow path. Not under
 * AddressSanitizer, which could then not see a slot used after its
 * request ended.
 */
#if defined(__SANITIZE_ADDRESS__)
#define SLOT_CACHE	0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLOT_CACHE	0
#endif
#endif
#ifndef SLOT_CACHE
#define SLOT_CACHE	64
#endif
static struct slot *slot_cache[SLOT_CACHE + 1];
static int nslot_cache;

/* slot_alloc - a slot, not zeroed */
static struct slot *
slot_alloc(void)
{
	if (nslot_cache > 0)
		return slot_cache[--nslot_cache];
	return malloc(sizeof(struct slot));
}

/* slot_free - release what an answered slot holds, and the slot */
static void
slot_free(struct slot *s)
{
	if (s->reply != s->inline_reply)
		free(s->reply);
	config_unref(s->ev.cfg);
	rules_eval_free(&s->ev);
	proto_req_free(&s->req);
	if (nslot_cache < SLOT_CACHE)
		slot_cache[nslot_cache++] = s;
	else
		free(s);
}

struct conn {
	TAILQ_ENTRY(conn) link;
	TAILQ_ENTRY(conn) idle_link;	/* in srv.idle while in_idle */
	int	in_idle;
	int	explain;		/* the listener honours policyd_explain */
	int	fd;			/* -1 once detached */
	struct event *rev;		/* read, persistent, idle timeout */
	struct event *wev;		/* write, while output is pending */
	int	reading;		/* rev is added */
	int	writing;		/* wev is added */
	char	*in;			/* unparsed input (an incomplete tail) */
	size_t	inlen, incap;
	char	*out;			/* unsent replies */
	size_t	outlen, outoff, outcap;
	struct proto proto;
	struct slot_list slots;
	int	nslots;
	int	closing;
	int	paused;
	int	busy;			/* inside the read loop */
	struct event *req_timer;	/* request_timeout for a partial request */
	char	peer[80];
};

static char scratch[READ_CHUNK];

/*
 * Evictions are logged when a burst starts and then at most every
 * EVICT_LOG_S seconds while it goes on, with the count since the last line.
 */
#define EVICT_LOG_S	5
#define EVICT_PEEK	4	/* candidates with input waiting to skip */

static struct event *evict_timer;
static unsigned long long evict_unlogged;

/*
 * When the last idle connection turns busy at the cap, accepting pauses -
 * but only if that is still so once the events at hand have run (a
 * request answered at once would otherwise pause and resume accept, and
 * log, for each request). The warning is given at most every EVICT_LOG_S.
 */
static struct event *pause_timer;
static time_t pause_logged;
static unsigned long long pauses_unlogged;

static int conn_process(struct conn *c);
static void conn_maybe_free(struct conn *c);
static void conn_write(struct conn *c);

/* mono_ms - monotonic milliseconds */
static double
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* conn_cap - limits.max_connections, or less when descriptors are short */
static int
conn_cap(void)
{
	int	cap = srv.cfg->max_connections;

	return srv.fd_cap > 0 && srv.fd_cap < cap ? srv.fd_cap : cap;
}

/* idle_remove - out of the idle list (no accept bookkeeping) */
static void
idle_remove(struct conn *c)
{
	if (!c->in_idle)
		return;
	TAILQ_REMOVE(&srv.idle, c, idle_link);
	c->in_idle = 0;
	srv.nidle--;
}

/* pause_check - still every connection busy at the cap: pause accept */
static void
pause_check(evutil_socket_t fd, short what, void *arg)
{
	time_t	now = time(NULL);

	(void)fd;
	(void)what;
	(void)arg;
	if (srv.nidle > 0 || srv.nconns < conn_cap() ||
	    srv.accepting_paused || srv.stopping)
		return;
	pauses_unlogged++;
	if (pause_logged == 0 || now - pause_logged >= EVICT_LOG_S) {
		char	more[64] = "";

		if (pauses_unlogged > 1)
			snprintf(more, sizeof(more), " (%llu times since the "
			    "last message)", pauses_unlogged);
		log_warnx("connection cap %d reached and every connection has "
		    "a request in flight: pausing accept, new clients wait in "
		    "the backlog%s", conn_cap(), more);
		pause_logged = now;
		pauses_unlogged = 0;
	}
	srv.pause_accept(1);
}

/*
 * idle_update - enter or leave the idle list after a change of state. The
 * last idle connection turning busy at the cap pauses accepting; any
 * connection turning idle resumes it (the next client evicts it).
 */
static void
idle_update(struct conn *c)
{
	int	idle = c->fd >= 0 && !c->closing && c->nslots == 0 &&
	    c->outoff >= c->outlen;

	if (idle == c->in_idle)
		return;
	if (idle) {
		TAILQ_INSERT_TAIL(&srv.idle, c, idle_link);
		c->in_idle = 1;
		srv.nidle++;
		if (srv.accepting_paused && !srv.stopping) {
			log_debug("a connection is idle again: accepting");
			srv.pause_accept(0);
		}
		return;
	}
	idle_remove(c);
	if (srv.nidle == 0 && srv.nconns >= conn_cap() &&
	    !srv.accepting_paused && !srv.stopping) {
		static const struct timeval now = { 0, 0 };

		if (pause_timer == NULL)
			pause_timer = evtimer_new(srv.base, pause_check, NULL);
		if (pause_timer != NULL && !evtimer_pending(pause_timer, NULL))
			evtimer_add(pause_timer, &now);
	}
}

/* evict_log - the first eviction of a burst, then every EVICT_LOG_S */
static void
evict_log(evutil_socket_t fd, short what, void *arg)
{
	struct timeval tv = { EVICT_LOG_S, 0 };
	int	first = fd == -2;		/* called by conn_make_room() */

	(void)what;
	(void)arg;
	if (evict_unlogged == 0)
		return;				/* the burst is over */
	log_warnx("connection cap %d reached: closed %llu %sidle connection%s "
	    "to admit new clients%s", conn_cap(), evict_unlogged,
	    first ? "" : "more ", evict_unlogged == 1 ? "" : "s",
	    first ? "" : " in the last few seconds");
	evict_unlogged = 0;
	evtimer_add(evict_timer, &tv);
}

static void conn_detach(struct conn *c);

/*
 * conn_make_room - at the cap, close the connections idle longest until
 * there is room (one, unless a reload lowered the cap). A candidate whose
 * request is already in the socket buffer is moved to the tail instead
 * (bounded, so this stays O(1)): closing it would lose that request.
 */
static void
conn_make_room(void)
{
	int	skipped = 0;

	while (srv.nconns >= conn_cap() && srv.nidle > 0) {
		struct conn *c = TAILQ_FIRST(&srv.idle);
		char	b;

		if (skipped < EVICT_PEEK && srv.nidle > 1 &&
		    recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) > 0) {
			TAILQ_REMOVE(&srv.idle, c, idle_link);
			TAILQ_INSERT_TAIL(&srv.idle, c, idle_link);
			skipped++;
			continue;
		}
		srv.conn_evicted++;
		evict_unlogged++;
		if (evict_timer == NULL)
			evict_timer = evtimer_new(srv.base, evict_log, NULL);
		if (evict_timer != NULL && !evtimer_pending(evict_timer, NULL))
			evict_log(-2, 0, NULL);
		log_debug("%s: closing an idle connection to admit a new client "
		    "(connection cap %d)", c->peer,
		    conn_cap());
		conn_detach(c);
	}
}

/* conn_reading - add or remove the read event */
static void
conn_reading(struct conn *c, int on)
{
	if (c->fd < 0 || c->reading == on)
		return;
	if (on) {
		struct timeval idle = { srv.cfg->idle_timeout, 0 };

		event_add(c->rev, &idle);
	} else {
		event_del(c->rev);
	}
	c->reading = on;
}

/* conn_close_fd - close the socket and its events */
static void
conn_close_fd(struct conn *c)
{
	if (c->fd < 0)
		return;
	idle_remove(c);
	event_free(c->rev);
	event_free(c->wev);
	c->rev = c->wev = NULL;
	c->reading = c->writing = 0;
	close(c->fd);
	c->fd = -1;
	free(c->in);
	c->in = NULL;
	c->inlen = c->incap = 0;
	c->outlen = c->outoff = 0;
}

/* conn_free - release everything (no slots may remain) */
static void
conn_free(struct conn *c)
{
	conn_close_fd(c);
	if (c->req_timer)
		event_free(c->req_timer);
	free(c->out);
	TAILQ_REMOVE(&srv.conns, c, link);
	srv.nconns--;
	free(c);
	if (srv.accepting_paused && !srv.stopping && srv.cfg &&
	    srv.nconns < conn_cap()) {
		log_info("below limits.max_connections again: accepting");
		srv.pause_accept(0);
	}
}

/* conn_detach - the peer is gone or must go: close the socket now */
static void
conn_detach(struct conn *c)
{
	conn_close_fd(c);
	if (c->req_timer)
		evtimer_del(c->req_timer);
	conn_maybe_free(c);
}

/* conn_maybe_free - free when nothing is left to do */
static void
conn_maybe_free(struct conn *c)
{
	if (c->nslots > 0 || c->busy)
		return;
	if (c->fd >= 0) {
		if (!c->closing)
			return;
		if (c->outlen > c->outoff)
			return;			/* the write event comes back */
	}
	conn_free(c);
}

/* conn_begin_close - stop reading; finish what is in flight */
static void
conn_begin_close(struct conn *c)
{
	c->closing = 1;
	idle_remove(c);
	conn_reading(c, 0);
	c->inlen = 0;
	if (c->req_timer)
		evtimer_del(c->req_timer);
	conn_maybe_free(c);
}

/* put_attr - an attribute escaped as log_escape() into max bytes would */
static void
put_attr(struct log_line *ll, const struct policy_req *q, int a, size_t max)
{
	log_put_esc(ll, q->v[a], q->len[a], max);
}

/* put_lit - a string literal */
#define put_lit(ll, s)	log_put((ll), (s), sizeof(s) - 1)

/*
 * log_decision - the one line per request, built straight into the log
 * batch (the same text as "%s: rule=%s action=%s ..." with each field
 * escaped into a buffer of the size given here)
 */
static void
log_decision(const struct slot *s, double ms)
{
	const struct policy_req *q = &s->req;
	const struct eval *ev = &s->ev;
	struct log_line ll;
	const char *rule = ev->rule ? ev->rule->name : "-";
	char	num[32];
	long long tenths;
	int	n;

	if (!log_info_enabled() || log_begin(&ll, LOG_L_INFO) < 0)
		return;			/* escaping costs more than the decision */
	if (q->len[A_QUEUE_ID])
		put_attr(&ll, q, A_QUEUE_ID, 64);
	else
		put_lit(&ll, "NOQUEUE");
	put_lit(&ll, ": rule=");
	log_put(&ll, rule, strlen(rule));
	put_lit(&ll, " action=");
	log_put_esc(&ll, ev->action, strlen(ev->action), 600);
	put_lit(&ll, " client=");
	if (q->len[A_CLIENT_NAME])
		put_attr(&ll, q, A_CLIENT_NAME, 256);
	else
		put_lit(&ll, "unknown");
	put_lit(&ll, "[");
	put_attr(&ll, q, A_CLIENT_ADDRESS, 128);
	put_lit(&ll, "] sasl=");
	if (q->len[A_SASL_USERNAME])
		put_attr(&ll, q, A_SASL_USERNAME, 256);
	else
		put_lit(&ll, "-");
	put_lit(&ll, " sender=<");
	put_attr(&ll, q, A_SENDER, 512);
	put_lit(&ll, "> recipient=<");
	put_attr(&ll, q, A_RECIPIENT, 512);
	put_lit(&ll, "> state=");
	if (q->len[A_PROTOCOL_STATE])
		put_attr(&ll, q, A_PROTOCOL_STATE, 64);
	else
		put_lit(&ll, "-");
	if (ev->detail[0]) {
		put_lit(&ll, " detail=\"");
		log_put_esc(&ll, ev->detail, strlen(ev->detail), 300);
		put_lit(&ll, "\"");
	}
	if (ev->tempfail)
		put_lit(&ll, " on_error=yes");
	/* delay=%.1fms */
	put_lit(&ll, " delay=");
	tenths = ms > 0 && ms < 1e15 ? (long long)(ms * 10 + 0.5) : 0;
	n = sizeof(num);
	num[--n] = 's';
	num[--n] = 'm';
	num[--n] = (char)('0' + tenths % 10);
	num[--n] = '.';
	tenths /= 10;
	do {
		num[--n] = (char)('0' + tenths % 10);
		tenths /= 10;
	} while (tenths > 0);
	log_put(&ll, num + n, sizeof(num) - (size_t)n);
	log_end(&ll);
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

/* conn_out_add - queue reply bytes */
static void
conn_out_add(struct conn *c, const char *data, size_t len)
{
	if (c->outoff > 0 && c->outoff == c->outlen)
		c->outoff = c->outlen = 0;
	if (c->outlen + len > c->outcap) {
		size_t	cap = c->outcap ? c->outcap : 1024;
		char	*n;

		while (cap < c->outlen + len)
			cap *= 2;
		if ((n = realloc(c->out, cap)) == NULL) {
			log_warnx("%s: out of memory for replies: closing",
			    c->peer);
			conn_close_fd(c);
			return;
		}
		c->out = n;
		c->outcap = cap;
	}
	memcpy(c->out + c->outlen, data, len);
	c->outlen += len;
}

/* conn_write - send what is queued; wait for writability if needed */
static void
conn_write(struct conn *c)
{
	while (c->fd >= 0 && c->outoff < c->outlen) {
		ssize_t	n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff,
		    MSG_NOSIGNAL);

		if (n > 0) {
			c->outoff += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (!c->writing) {
				struct timeval tv = { srv.cfg->idle_timeout, 0 };

				event_add(c->wev, &tv);
				c->writing = 1;
			}
			return;
		}
		log_debug("%s: send: %s", c->peer, strerror(errno));
		conn_close_fd(c);
		return;
	}
	c->outoff = c->outlen = 0;
	if (c->writing) {
		event_del(c->wev);
		c->writing = 0;
	}
	if (c->fd >= 0)
		idle_update(c);
}

/* conn_flush - queue every finished reply at the head, in order, and send */
static void
conn_flush(struct conn *c)
{
	struct slot *s;

	while ((s = TAILQ_FIRST(&c->slots)) != NULL && s->done) {
		TAILQ_REMOVE(&c->slots, s, link);
		c->nslots--;
		if (c->fd >= 0)
			conn_out_add(c, s->reply, s->replylen);
		srv.stats.replies++;
		slot_free(s);
	}
	if (c->busy)
		return;				/* the read loop sends at its end */
	conn_write(c);
	if (c->fd < 0 || c->closing) {
		conn_maybe_free(c);
		return;
	}
	/* resume reading when we were waiting for room */
	if (c->paused && c->nslots < srv.cfg->max_pipeline &&
	    c->outlen - c->outoff < OUTPUT_CAP) {
		c->paused = 0;
		conn_reading(c, 1);
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
	/* not calloc(): 6 KiB of text buffers need no zeroing */
	struct slot *s = slot_alloc();

	if (s == NULL) {
		log_warnx("out of memory: closing %s", c->peer);
		proto_req_free(req);
		c->closing = 1;
		return -1;
	}
	memset(s, 0, offsetof(struct slot, ev));
	eval_clear(&s->ev);
	s->inline_reply[0] = '\0';
	srv.stats.requests++;
	s->c = c;
	s->req = *req;
	s->start_ms = mono_ms();
	s->ev.cfg = config_ref(srv.cfg);
	s->ev.req = &s->req;
	s->ev.store = srv.store;
	s->ev.resolver = srv.resolver;
	s->ev.now = time(NULL);
	s->ev.done = conn_eval_done;
	s->ev.done_arg = s;
	if (s->req.len[A_POLICYD_EXPLAIN] > 0 &&
	    strcmp(s->req.v[A_POLICYD_EXPLAIN], "no") != 0) {
		if (c->explain)
			s->ev.want_trace = 1;
		else
			log_debug("%s: policyd_explain ignored: this listener "
			    "has explain = false", c->peer);
	}
	TAILQ_INSERT_TAIL(&c->slots, s, link);
	c->nslots++;
	idle_update(c);
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

/*
 * conn_consume - parse and start requests from buf; returns the bytes
 * used, or -1 after a protocol error (the connection is closing).
 * *partial tells whether an incomplete request is left.
 */
static ssize_t
conn_consume(struct conn *c, const char *buf, size_t len, int *partial,
    int *completed)
{
	size_t	off = 0;

	*partial = 0;
	while (off < len && !c->closing && c->fd >= 0) {
		struct policy_req req;
		size_t	used = 0;
		int	rc;

		if (c->nslots >= srv.cfg->max_pipeline ||
		    c->outlen - c->outoff >= OUTPUT_CAP) {
			c->paused = 1;
			conn_reading(c, 0);
			break;
		}
		rc = proto_parse(&c->proto, buf + off, len - off, &req, &used);
		if (rc == PROTO_NEED_MORE) {
			*partial = 1;
			break;
		}
		if (rc == PROTO_ERR) {
			log_warnx("%s: malformed request (%s): closing without "
			    "reply", c->peer, c->proto.err);
			srv.stats.malformed++;
			return -1;
		}
		off += used;
		*completed = 1;
		conn_start_request(c, &req);
	}
	return (ssize_t)off;
}

/* conn_keep - keep the unparsed tail of buf as the connection's input */
static int
conn_keep(struct conn *c, const char *buf, size_t len)
{
	if (len == 0) {
		c->inlen = 0;
		return 0;
	}
	if (buf == c->in) {
		c->inlen = len;
		return 0;
	}
	if (c->in != NULL && buf >= c->in && buf < c->in + c->incap) {
		memmove(c->in, buf, len);
		c->inlen = len;
		return 0;
	}
	if (len > c->incap) {
		char	*n = realloc(c->in, len);

		if (n == NULL)
			return -1;
		c->in = n;
		c->incap = len;
	}
	memcpy(c->in, buf, len);
	c->inlen = len;
	return 0;
}

/* conn_run - consume buf (scratch or c->in), keep the rest, send */
static int
conn_run(struct conn *c, const char *buf, size_t len)
{
	int	partial = 0, completed = 0;
	ssize_t	used;

again:
	c->busy++;
	used = conn_consume(c, buf, len, &partial, &completed);
	if (used >= 0 && c->fd >= 0 && !c->closing &&
	    conn_keep(c, buf + used, len - (size_t)used) < 0) {
		log_warnx("%s: out of memory for input: closing", c->peer);
		used = -1;
	}
	if (used < 0) {
		c->closing = 1;
		c->inlen = 0;
		conn_reading(c, 0);
		evtimer_del(c->req_timer);
	}
	c->busy--;
	conn_write(c);			/* every reply collected above */
	if (c->fd < 0 || c->closing) {
		conn_maybe_free(c);
		return -1;
	}
	/* paused for output that has now gone out: go on with the input */
	if (c->paused && c->nslots < srv.cfg->max_pipeline &&
	    c->outlen - c->outoff < OUTPUT_CAP) {
		c->paused = 0;
		conn_reading(c, 1);
		if (c->inlen > 0) {
			buf = c->in;
			len = c->inlen;
			goto again;
		}
	}
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

/* conn_append_in - add received bytes after the buffered input */
static int
conn_append_in(struct conn *c, const char *data, size_t n)
{
	if (c->inlen + n > c->incap) {
		size_t	cap = c->inlen + n;
		char	*m = realloc(c->in, cap);

		if (m == NULL)
			return -1;
		c->in = m;
		c->incap = cap;
	}
	memcpy(c->in + c->inlen, data, n);
	c->inlen += n;
	return 0;
}

/* conn_process - parse what is buffered; -1 when c may be gone */
static int
conn_process(struct conn *c)
{
	if (c->fd < 0 || c->closing || c->inlen == 0)
		return 0;
	return conn_run(c, c->in, c->inlen);
}

/* conn_on_eof - the client will send no more */
static void
conn_on_eof(struct conn *c)
{
	/*
	 * A half-close (shutdown(SHUT_WR), "nc -N") still wants the answers
	 * to what it sent: finish those, then close.
	 */
	if (c->paused)
		return;			/* resumes, and sees EOF again, later */
	if (conn_process(c) < 0)
		return;
	if (c->inlen > 0)
		log_warnx("%s: client closed the connection in the middle of "
		    "a request", c->peer);
	conn_begin_close(c);
}

/* conn_on_read - readable, or idle for idle_timeout */
static void
conn_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	const char *buf;
	size_t	len;
	ssize_t	n;

	if (what & EV_TIMEOUT) {
		if (c->inlen > 0)
			log_warnx("%s: timeout in the middle of a request: "
			    "closing", c->peer);
		else
			log_debug("%s: idle for %d s: closing", c->peer,
			    srv.cfg->idle_timeout);
		conn_detach(c);
		return;
	}
	n = recv(fd, scratch, sizeof(scratch), 0);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		if (c->inlen > 0)
			log_warnx("%s: connection reset in the middle of a "
			    "request", c->peer);
		else
			log_debug("%s: recv: %s", c->peer, strerror(errno));
		conn_detach(c);
		return;
	}
	if (n == 0) {
		conn_on_eof(c);
		return;
	}
	if (c->inlen == 0) {
		buf = scratch;			/* the common case: no copy */
		len = (size_t)n;
	} else {
		if (conn_append_in(c, scratch, (size_t)n) < 0) {
			log_warnx("%s: out of memory: closing", c->peer);
			conn_detach(c);
			return;
		}
		buf = c->in;
		len = c->inlen;
	}
	conn_run(c, buf, len);
}

/* conn_on_write - writable again, or the client stopped reading */
static void
conn_on_write(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	if (what & EV_TIMEOUT) {
		log_warnx("%s: client has not read its replies for %d s: "
		    "closing", c->peer, srv.cfg->idle_timeout);
		conn_detach(c);
		return;
	}
	conn_flush(c);
}

/* conn_new - take an accepted socket */
void
conn_new(int fd, const char *peer, int explain)
{
	struct conn *c;

	conn_make_room();
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		return;
	}
	evutil_make_socket_nonblocking(fd);
	c->fd = fd;
	c->rev = event_new(srv.base, fd, EV_READ | EV_PERSIST, conn_on_read, c);
	c->wev = event_new(srv.base, fd, EV_WRITE | EV_PERSIST, conn_on_write, c);
	c->req_timer = evtimer_new(srv.base, conn_req_timeout, c);
	if (c->rev == NULL || c->wev == NULL || c->req_timer == NULL) {
		if (c->rev)
			event_free(c->rev);
		if (c->wev)
			event_free(c->wev);
		if (c->req_timer)
			event_free(c->req_timer);
		close(fd);
		free(c);
		return;
	}
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	c->explain = explain;
	proto_init(&c->proto, &srv.cfg->limits);
	TAILQ_INIT(&c->slots);
	TAILQ_INSERT_TAIL(&srv.conns, c, link);
	srv.nconns++;
	srv.stats.connections_total++;
	conn_reading(c, 1);
	idle_update(c);
}

/* conn_shutdown_all - graceful stop: answer what is in flight, then close */
void
conn_shutdown_all(void)
{
	struct conn *c, *next;

	for (c = TAILQ_FIRST(&srv.conns); c != NULL; c = next) {
		next = TAILQ_NEXT(c, link);
		/* answer what was already received, then close */
		if (c->fd >= 0 && !c->paused) {
			/* what the kernel holds for us counts as received */
			ssize_t	n = recv(c->fd, scratch, sizeof(scratch), 0);

			if (n > 0)
				(void)conn_append_in(c, scratch, (size_t)n);
			if (conn_process(c) < 0)
				continue;
		}
		conn_begin_close(c);
	}
}

/* conn_close_all - at exit: drop everything that is left */
void
conn_close_all(void)
{
	struct conn *c;

	if (evict_timer != NULL) {
		event_free(evict_timer);
		evict_timer = NULL;
	}
	if (pause_timer != NULL) {
		event_free(pause_timer);
		pause_timer = NULL;
	}
	while ((c = TAILQ_FIRST(&srv.conns)) != NULL) {
		struct slot *s;

		while ((s = TAILQ_FIRST(&c->slots)) != NULL) {
			if (!s->done)
				break;		/* still owned by a callback */
			TAILQ_REMOVE(&c->slots, s, link);
			c->nslots--;
			slot_free(s);
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
		c->busy = 0;
		conn_free(c);
	}
	while (nslot_cache > 0)
		free(slot_cache[--nslot_cache]);
}

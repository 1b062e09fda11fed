/*++
 * NAME
 *	store.c - the state layer: hiredis async on libevent (see store.h)
 * DESCRIPTION
 *	The only file that includes hiredis. One connection, commands
 *	pipelined on it; a FIFO of pending commands in send order, one timer
 *	on the oldest; reconnect with backoff; EVALSHA with NOSCRIPT retry.
 *--*/
#include <sys/queue.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#include "log.h"
#include "store.h"

#define BACKOFF_MIN_MS	50
#define BACKOFF_MAX_MS	1000
#define MAX_ARGS	32

enum store_state { ST_DOWN, ST_CONNECTING, ST_READY };

struct pending {
	TAILQ_ENTRY(pending) link;
	struct store *s;
	store_cb *cb;
	void	*arg;
	double	sent_ms;		/* monotonic */
	int	done;			/* user callback has run */
	int	retried;		/* NOSCRIPT -> EVAL already */
	enum store_script_id id;
	int	argc;
	const char *argv[MAX_ARGS];
	size_t	argvlen[MAX_ARGS];
	char	data[];			/* copies of the arguments */
};

TAILQ_HEAD(pending_list, pending);

struct store {
	struct event_base *base;
	struct store_config cfg;
	redisAsyncContext *ac;
	enum store_state state;
	struct pending_list pending;
	struct event *timer;		/* deadline of the oldest command */
	struct event *retry;		/* reconnect backoff */
	struct event *conn_timer;	/* connect deadline */
	int	backoff_ms;
	int	was_ready;		/* for "up"/"down" log lines */
	int	setup_left;		/* AUTH/SELECT replies still to come */
	const char *setup_err;		/* why the last setup failed */
	unsigned long long down_logged;
	unsigned long long setup_fail_logged;
	struct store_stats stats;
	size_t	prefixlen;
};

static void store_connect(struct store *s);

/* now_ms - monotonic clock in milliseconds */
static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* store_finish - run the user callback once */
static void
store_finish(struct pending *p, struct store_reply *r)
{
	if (p->done)
		return;
	p->done = 1;
	if (!r->ok)
		p->s->stats.errors++;
	r->latency_ms = now_ms() - p->sent_ms;
	p->s->stats.latency_sum_ms += r->latency_ms;
	p->cb(p->arg, r);
}

/* store_fail_now - fail a command that was never sent */
static void
store_fail_now(store_cb *cb, void *arg, const char *why)
{
	struct store_reply r = { .ok = 0, .err = why };

	cb(arg, &r);
}

/* store_schedule_reconnect - try again after the backoff */
static void
store_schedule_reconnect(struct store *s)
{
	struct timeval tv;

	s->state = ST_DOWN;
	evtimer_del(s->conn_timer);
	tv.tv_sec = s->backoff_ms / 1000;
	tv.tv_usec = (s->backoff_ms % 1000) * 1000;
	evtimer_add(s->retry, &tv);
	s->backoff_ms *= 2;
	if (s->backoff_ms > BACKOFF_MAX_MS)
		s->backoff_ms = BACKOFF_MAX_MS;
}

/* store_went_down - log the first failure after being up */
static void
store_went_down(struct store *s, const char *why)
{
	if (s->was_ready) {
		log_warnx("redis: connection to %s lost: %s; answering on_error "
		    "until it is back", s->cfg.address, why);
		s->was_ready = 0;
		s->down_logged = 0;
	} else if (s->down_logged++ % 64 == 0) {
		log_warnx("redis: cannot connect to %s: %s (retrying)",
		    s->cfg.address, why);
	}
}

/* store_drop - close the connection, failing every pending command */
static void
store_drop(struct store *s, const char *why)
{
	redisAsyncContext *ac = s->ac;

	s->ac = NULL;
	if (ac != NULL)
		redisAsyncFree(ac);	/* runs every reply callback with NULL */
	store_went_down(s, why);
	s->stats.reconnects++;
	store_schedule_reconnect(s);
}

/* store_arm_timer - wake up when the oldest command's time is up */
static void
store_arm_timer(struct store *s)
{
	struct pending *p = TAILQ_FIRST(&s->pending);
	struct timeval tv;
	double	left;

	if (p == NULL || evtimer_pending(s->timer, NULL))
		return;
	left = p->sent_ms + s->cfg.timeout_ms - now_ms();
	if (left < 0)
		left = 0;
	tv.tv_sec = (long)(left / 1000);
	tv.tv_usec = (long)((left - tv.tv_sec * 1000.0) * 1000) + 1;
	evtimer_add(s->timer, &tv);
}

/* store_on_timer - the oldest command is late: Redis is hung or slow */
static void
store_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;
	struct pending *p = TAILQ_FIRST(&s->pending);

	(void)fd;
	(void)what;
	if (p == NULL)
		return;
	if (now_ms() - p->sent_ms >= s->cfg.timeout_ms) {
		struct store_reply r = { .ok = 0, .err = "redis timeout" };
		struct pending *q;

		/*
		 * Fail every late command now, then drop the connection:
		 * Redis answers in order, so nothing behind the oldest can
		 * arrive sooner.
		 */
		TAILQ_FOREACH(q, &s->pending, link) {
			if (now_ms() - q->sent_ms < s->cfg.timeout_ms)
				break;
			if (!q->done) {
				s->stats.timeouts++;
				store_finish(q, &r);
			}
		}
		log_debug("redis: command timed out after %d ms",
		    s->cfg.timeout_ms);
		store_drop(s, "command timed out");
		return;
	}
	store_arm_timer(s);
}

/* store_on_reply - hiredis reply callback (reply NULL: connection gone) */
static void
store_on_reply(redisAsyncContext *ac, void *rep, void *privdata)
{
	struct pending *p = privdata;
	struct store *s = p->s;
	redisReply *reply = rep;
	struct store_reply r = { .ok = 0 };

	if (reply != NULL && reply->type == REDIS_REPLY_ERROR &&
	    strncmp(reply->str, "NOSCRIPT", 8) == 0 && !p->retried && !p->done &&
	    ac != NULL && s->ac == ac) {
		/* the script cache was flushed: send it again as EVAL */
		p->retried = 1;
		s->stats.noscript++;
		p->argv[0] = "EVAL";
		p->argvlen[0] = 4;
		p->argv[1] = store_script_text[p->id];
		p->argvlen[1] = strlen(store_script_text[p->id]);
		TAILQ_REMOVE(&s->pending, p, link);
		TAILQ_INSERT_TAIL(&s->pending, p, link);
		if (redisAsyncCommandArgv(ac, store_on_reply, p, p->argc,
		    p->argv, p->argvlen) == REDIS_OK)
			return;
		TAILQ_REMOVE(&s->pending, p, link);
		r.err = "redis: cannot re-send script";
		store_finish(p, &r);
		free(p);
		return;
	}
	TAILQ_REMOVE(&s->pending, p, link);
	if (reply == NULL) {
		r.err = "redis connection lost";
	} else if (reply->type == REDIS_REPLY_ERROR) {
		r.err = "redis error reply";
		log_warnx("redis: error reply: %.200s", reply->str);
	} else if (reply->type == REDIS_REPLY_INTEGER) {
		r.ok = 1;
		r.n = 1;
		r.v[0] = reply->integer;
	} else if (reply->type == REDIS_REPLY_ARRAY) {
		r.ok = 1;
		for (size_t i = 0; i < reply->elements && i < STORE_MAX_INTS;
		    i++) {
			redisReply *e = reply->element[i];

			r.v[r.n++] = e->type == REDIS_REPLY_INTEGER ?
			    e->integer : 0;
		}
	} else if (reply->type == REDIS_REPLY_NIL ||
	    reply->type == REDIS_REPLY_STATUS || reply->type == REDIS_REPLY_STRING) {
		r.ok = 1;
	} else {
		r.err = "unexpected redis reply";
	}
	store_finish(p, &r);
	free(p);
}

/* store_ready_now - the connection is usable: AUTH and SELECT done */
static void
store_ready_now(struct store *s)
{
	evtimer_del(s->conn_timer);
	s->state = ST_READY;
	s->backoff_ms = BACKOFF_MIN_MS;
	s->setup_fail_logged = 0;
	if (!s->was_ready)
		log_info("redis: connected to %s (db %d)", s->cfg.address,
		    s->cfg.database);
	s->was_ready = 1;
}

/*
 * store_on_setup_reply - AUTH / SELECT answers. The connection counts as
 * up (backoff reset, "connected" logged) only when the last of them
 * succeeded: a wrong password must not become a reconnect-and-log loop
 * at the minimum backoff.
 */
static void
store_on_setup_reply(redisAsyncContext *ac, void *rep, void *privdata)
{
	redisReply *reply = rep;
	struct store *s = ac->data;

	if (reply == NULL || s == NULL || s->ac != ac)
		return;
	if (reply->type == REDIS_REPLY_ERROR) {
		if (s->setup_fail_logged++ % 64 == 0)
			log_errx("redis: %s failed: %.200s (retrying)",
			    (const char *)privdata, reply->str);
		s->setup_err = strcmp(privdata, "AUTH") == 0 ?
		    "AUTH failed" : "SELECT failed";
		s->setup_left = -1;	/* never ready on this connection */
		/* cannot free from inside a callback: disconnect instead */
		redisAsyncDisconnect(ac);
		return;
	}
	if (s->setup_left > 0 && --s->setup_left == 0 &&
	    s->state == ST_CONNECTING)
		store_ready_now(s);
}

/* store_on_connect - TCP (or unix) connect finished */
static void
store_on_connect(const redisAsyncContext *cac, int status)
{
	struct store *s = cac->data;

	if (s == NULL)
		return;
	if (status != REDIS_OK) {
		/* hiredis frees the context after this callback */
		s->ac = NULL;
		evtimer_del(s->conn_timer);
		store_went_down(s, cac->errstr[0] ? cac->errstr : "connect failed");
		store_schedule_reconnect(s);
		return;
	}
	/* with AUTH or SELECT to do, their replies decide (and the connect
	 * deadline keeps running until then) */
	if (s->setup_left == 0)
		store_ready_now(s);
}

/* store_on_disconnect - the connection went away */
static void
store_on_disconnect(const redisAsyncContext *cac, int status)
{
	struct store *s = cac->data;

	(void)status;
	if (s == NULL || s->ac != cac)
		return;			/* we dropped it ourselves */
	s->ac = NULL;
	if (s->setup_err != NULL && !s->was_ready) {
		/* logged (rate-limited) by store_on_setup_reply */
		s->setup_err = NULL;
	} else {
		store_went_down(s, s->setup_err ? s->setup_err :
		    cac->errstr[0] ? cac->errstr : "server closed");
		s->setup_err = NULL;
	}
	store_schedule_reconnect(s);
}

/* store_on_retry - backoff expired */
static void
store_on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	store_connect(arg);
}

/* store_on_conn_timer - a connect that hangs is dropped */
static void
store_on_conn_timer(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;

	(void)fd;
	(void)what;
	if (s->state == ST_CONNECTING)
		store_drop(s, "connect timed out");
}

/* store_connect - start a new connection */
static void
store_connect(struct store *s)
{
	const char *a = s->cfg.address;
	redisAsyncContext *ac;

	if (strncmp(a, "unix:", 5) == 0) {
		ac = redisAsyncConnectUnix(a + 5);
	} else {
		char	host[256];
		const char *colon = strrchr(a, ':');
		size_t	hl;
		int	port = 6379;

		if (colon == NULL) {
			hl = strlen(a);
		} else {
			hl = colon - a;
			port = atoi(colon + 1);
		}
		if (hl >= 2 && a[0] == '[' && a[hl - 1] == ']') {
			a++;
			hl -= 2;
		}
		if (hl >= sizeof(host))
			hl = sizeof(host) - 1;
		memcpy(host, a, hl);
		host[hl] = '\0';
		ac = redisAsyncConnect(host, port);
	}
	if (ac == NULL) {
		store_went_down(s, "out of memory");
		store_schedule_reconnect(s);
		return;
	}
	if (ac->err) {
		store_went_down(s, ac->errstr);
		redisAsyncFree(ac);
		store_schedule_reconnect(s);
		return;
	}
	ac->data = s;
	s->ac = ac;
	s->state = ST_CONNECTING;
	s->setup_left = 0;
	s->setup_err = NULL;
	{
		struct timeval tv = { s->cfg.connect_timeout_ms / 1000,
		    (s->cfg.connect_timeout_ms % 1000) * 1000 };

		evtimer_add(s->conn_timer, &tv);
	}
	redisLibeventAttach(ac, s->base);
	redisAsyncSetConnectCallback(ac, store_on_connect);
	redisAsyncSetDisconnectCallback(ac, store_on_disconnect);
	if (s->cfg.password != NULL) {
		const char *av[3] = { "AUTH", s->cfg.username,
		    s->cfg.password };
		size_t	al[3] = { 4, s->cfg.username ?
		    strlen(s->cfg.username) : 0, strlen(s->cfg.password) };

		/* argv form: a password with spaces stays one argument */
		if (s->cfg.username == NULL) {
			av[1] = av[2];
			al[1] = al[2];
		}
		if (redisAsyncCommandArgv(ac, store_on_setup_reply, "AUTH",
		    s->cfg.username ? 3 : 2, av, al) == REDIS_OK)
			s->setup_left++;
	}
	if (s->cfg.database != 0 &&
	    redisAsyncCommand(ac, store_on_setup_reply, "SELECT",
	    "SELECT %d", s->cfg.database) == REDIS_OK)
		s->setup_left++;
}

/* store_new - create the state layer and start connecting */
struct store *
store_new(struct event_base *base, const struct store_config *c)
{
	struct store *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->base = base;
	s->cfg = *c;
	s->cfg.address = strdup(c->address);
	s->cfg.prefix = strdup(c->prefix ? c->prefix : "");
	s->cfg.username = c->username ? strdup(c->username) : NULL;
	s->cfg.password = c->password ? strdup(c->password) : NULL;
	s->prefixlen = strlen(s->cfg.prefix);
	if (s->cfg.timeout_ms <= 0)
		s->cfg.timeout_ms = 200;
	TAILQ_INIT(&s->pending);
	s->timer = evtimer_new(base, store_on_timer, s);
	s->retry = evtimer_new(base, store_on_retry, s);
	s->conn_timer = evtimer_new(base, store_on_conn_timer, s);
	if (s->cfg.connect_timeout_ms <= 0)
		s->cfg.connect_timeout_ms = 1000;
	s->backoff_ms = BACKOFF_MIN_MS;
	store_connect(s);
	return s;
}

/* store_script - run a compiled-in script (see store.h) */
void
store_script(struct store *s, enum store_script_id id, int nkeys, int nargs,
    const char *const *argv, const size_t *argvlen, store_cb *cb, void *arg)
{
	struct pending *p;
	size_t	need = 0;
	char	nk[16], *d;
	int	i, argc = 3 + nargs;

	if (s->ac == NULL || s->state == ST_DOWN) {
		store_fail_now(cb, arg, "redis not connected");
		return;
	}
	if (argc > MAX_ARGS || nkeys > nargs) {
		store_fail_now(cb, arg, "too many script arguments");
		return;
	}
	for (i = 0; i < nargs; i++)
		need += argvlen[i] + (i < nkeys ? s->prefixlen : 0);
	if ((p = malloc(sizeof(*p) + need + 1)) == NULL) {
		store_fail_now(cb, arg, "out of memory");
		return;
	}
	p->s = s;
	p->cb = cb;
	p->arg = arg;
	p->done = p->retried = 0;
	p->id = id;
	p->argc = argc;
	snprintf(nk, sizeof(nk), "%d", nkeys);
	p->argv[0] = "EVALSHA";
	p->argvlen[0] = 7;
	p->argv[1] = store_script_sha[id];
	p->argvlen[1] = 40;
	d = p->data;
	memcpy(d, nk, strlen(nk));
	p->argv[2] = d;
	p->argvlen[2] = strlen(nk);
	d += strlen(nk);
	/* nk is at most 15 bytes: it lives in data[] too */
	for (i = 0; i < nargs; i++) {
		p->argv[3 + i] = d;
		if (i < nkeys) {
			memcpy(d, s->cfg.prefix, s->prefixlen);
			d += s->prefixlen;
		}
		memcpy(d, argv[i], argvlen[i]);
		d += argvlen[i];
		p->argvlen[3 + i] = d - p->argv[3 + i];
	}
	p->sent_ms = now_ms();
	s->stats.commands++;
	if (redisAsyncCommandArgv(s->ac, store_on_reply, p, argc, p->argv,
	    p->argvlen) != REDIS_OK) {
		free(p);
		store_fail_now(cb, arg, "redis command failed");
		return;
	}
	TAILQ_INSERT_TAIL(&s->pending, p, link);
	store_arm_timer(s);
}

/* store_ready - is the connection up? */
int
store_ready(const struct store *s)
{
	return s->state == ST_READY && s->ac != NULL;
}

/* store_get_stats - counters for metrics */
const struct store_stats *
store_get_stats(const struct store *s)
{
	return &s->stats;
}

/* store_prefix - the configured key prefix */
const char *
store_prefix(const struct store *s)
{
	return s->cfg.prefix;
}

/* store_free - fail everything pending and close */
void
store_free(struct store *s)
{
	redisAsyncContext *ac;

	if (s == NULL)
		return;
	ac = s->ac;
	s->ac = NULL;
	s->state = ST_DOWN;
	if (ac != NULL) {
		ac->data = NULL;
		redisAsyncFree(ac);
	}
	event_free(s->timer);
	event_free(s->retry);
	event_free(s->conn_timer);
	free(s->cfg.address);
	free(s->cfg.prefix);
	free(s->cfg.username);
	free(s->cfg.password);
	free(s);
}

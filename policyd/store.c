/*++
 * NAME
 *	store.c - the state layer: hiredis async on libevent (see store.h)
 * DESCRIPTION
 *	The only file that includes hiredis. A node is one connection to one
 *	Redis server, commands pipelined on it: a FIFO of pending commands
 *	in send order, one timer on the oldest, reconnect with backoff,
 *	EVALSHA with NOSCRIPT retry. Standalone and Sentinel mode use one
 *	node (Sentinel changes its address); Cluster mode has one node per
 *	cluster member and a slot map.
 *
 *	A pending command lives in exactly one place: the FIFO of the node
 *	it was sent on (hiredis holds it as privdata until the reply, or a
 *	NULL reply when the connection goes away), or the store's requeue
 *	list (cluster: waiting to be re-sent). Its user callback runs once
 *	(p->done); the structure is freed when it leaves the last place.
 *--*/
#include <sys/queue.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#include "log.h"
#include "slot.h"
#include "store.h"

#define BACKOFF_MIN_MS	50
#define BACKOFF_MAX_MS	1000
#define MAX_ARGS	32
#define MAX_REDIRECTS	32	/* MOVED/ASK per command (TRYAGAIN: deadline) */
#define REQUEUE_MS	10	/* TRYAGAIN, target not connected yet */
#define REFRESH_MIN_MS	100	/* CLUSTER SLOTS at most this often */
#define ADDR_MAX	300
#define SUB_CHANNELS	5	/* sentinel channels subscribed to */
#define FENCE_MS	15000	/* longest wait for a selected replica */
#define SETUP_REMIND_MS	300000	/* a setup failure logged again after */

enum store_mode { MODE_SINGLE, MODE_SENTINEL, MODE_CLUSTER };
enum node_state { ST_DOWN, ST_CONNECTING, ST_READY };

struct node;

struct pending {
	TAILQ_ENTRY(pending) link;
	struct store *s;
	struct node *node;		/* sent on; NULL while requeued */
	store_cb *cb;
	void	*arg;
	double	start_ms;		/* store_script(): deadline from here */
	double	sent_ms;		/* sent on the current node */
	int	done;			/* user callback has run */
	int	retried;		/* NOSCRIPT -> EVAL already */
	int	redirects;		/* MOVED + ASK followed */
	int	asking;			/* send ASKING first (once) */
	int	ask_node;		/* node index of an ASK */
	unsigned slot;
	enum store_script_id id;
	int	argc;
	const char *argv[MAX_ARGS];
	size_t	argvlen[MAX_ARGS];
	char	data[];			/* copies of the arguments */
};

TAILQ_HEAD(pending_list, pending);

struct node {
	struct store *s;
	int	idx;
	char	*addr;			/* NULL: sentinel primary not known */
	redisAsyncContext *ac;
	enum node_state state;
	struct pending_list pending;
	struct event *timer;		/* deadline of the oldest command */
	double	timer_at;		/* when it fires; 0 = not armed */
	struct event *retry;		/* reconnect backoff */
	struct event *conn_timer;	/* connect deadline */
	int	backoff_ms;
	int	was_ready;		/* for "up"/"down" log lines */
	int	setup_left;		/* AUTH/SELECT/ROLE replies to come */
	const char *setup_err;		/* why the last setup failed */
	unsigned long long down_logged;
	unsigned long long setup_fail_logged;	/* failed setups in a row */
	double	setup_log_ms;		/* when the failure was last logged */
	char	setup_last[256];	/* and what it said */
	int	seed;			/* cluster: a configured seed */
	int	serves;			/* cluster: owns slots in the map */
};

struct store {
	struct event_base *base;
	struct store_config cfg;
	enum store_mode mode;
	struct node **nodes;
	int	nnodes;
	int	freeing;
	struct store_stats stats;
	size_t	prefixlen;
	/* cluster */
	int16_t	slots[SLOT_COUNT];	/* node index, -1 = unknown */
	int	map_ok;			/* every slot has a node */
	int	map_logged;
	struct event *refresh_timer;
	int	refresh_wanted;
	int	refresh_inflight;
	uintptr_t refresh_seq;
	double	refresh_sent_ms;
	int	refresh_rr;
	unsigned long long redirects_logged;	/* moved+ask+tryagain */
	double	redirects_log_ms;
	struct pending_list requeue;
	struct event *requeue_timer;
	/* sentinel */
	int	nsentinels;
	redisAsyncContext *sq_ac;	/* asking a sentinel for the primary */
	struct event *sq_timer;		/* its deadline, or "ask the next" */
	int	sq_idx, sq_tried;
	unsigned long long sq_fail_logged;
	struct sub *subs;		/* one subscription per sentinel */
	char	*fence_addr;		/* primary being failed over, or NULL */
	char	*candidate;		/* the replica selected to replace it */
	double	fence_until;
};

/* a subscription to one sentinel's events */
struct sub {
	struct store *s;
	int	idx;			/* in cfg.sentinels */
	redisAsyncContext *ac;
	struct event *timer;		/* reconnect, or subscribe deadline */
	int	ok, backoff_ms;
	unsigned long long fail_logged;
};

static void node_connect(struct node *n);
static void node_schedule_reconnect(struct node *n);
static void cluster_want_refresh(struct store *s);
static void sentinel_ask(struct store *s);
static void store_requeue(struct store *s, struct pending *p);
static void store_kick_requeue(struct store *s);

/* now_ms - monotonic clock in milliseconds */
static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ms_tv - milliseconds as a timeval */
static struct timeval
ms_tv(double ms)
{
	struct timeval tv;

	if (ms < 0)
		ms = 0;
	tv.tv_sec = (long)(ms / 1000);
	tv.tv_usec = (long)((ms - tv.tv_sec * 1000.0) * 1000) + 1;
	if (tv.tv_usec >= 1000000) {
		tv.tv_sec++;
		tv.tv_usec -= 1000000;
	}
	return tv;
}

/* deadline - when a command's time is up */
static double
deadline(const struct pending *p)
{
	return p->start_ms + p->s->cfg.timeout_ms;
}

/* naddr - a node's address for log lines */
static const char *
naddr(const struct node *n)
{
	return n->addr ? n->addr : "(primary not known)";
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
	r->latency_ms = now_ms() - p->start_ms;
	p->s->stats.latency_sum_ms += r->latency_ms;
	p->cb(p->arg, r);
}

/* store_fail - finish with an error */
static void
store_fail(struct pending *p, const char *why)
{
	struct store_reply r = { .ok = 0, .err = why };

	store_finish(p, &r);
}

/* store_fail_now - fail a command that was never sent */
static void
store_fail_now(store_cb *cb, void *arg, const char *why)
{
	struct store_reply r = { .ok = 0, .err = why };

	cb(arg, &r);
}

/* parse_target - "host:port" into host and port (default 6379) */
static void
parse_target(const char *a, char *host, size_t hostlen, int *port)
{
	const char *colon = strrchr(a, ':');
	size_t	hl;

	*port = 6379;
	if (colon == NULL) {
		hl = strlen(a);
	} else {
		hl = colon - a;
		*port = atoi(colon + 1);
	}
	if (hl >= 2 && a[0] == '[' && a[hl - 1] == ']') {
		a++;
		hl -= 2;
	}
	if (hl >= hostlen)
		hl = hostlen - 1;
	memcpy(host, a, hl);
	host[hl] = '\0';
}

/* make_addr - "host:port", IPv6 in brackets */
static void
make_addr(char *buf, size_t len, const char *host, size_t hl, long port)
{
	if (memchr(host, ':', hl) != NULL && host[0] != '[')
		snprintf(buf, len, "[%.*s]:%ld", (int)hl, host, port);
	else
		snprintf(buf, len, "%.*s:%ld", (int)hl, host, port);
}

/* async_connect - a hiredis context for "host:port" or "unix:/path" */
static redisAsyncContext *
async_connect(const char *a)
{
	char	host[256];
	int	port;

	if (strncmp(a, "unix:", 5) == 0)
		return redisAsyncConnectUnix(a + 5);
	parse_target(a, host, sizeof(host), &port);
	return redisAsyncConnect(host, port);
}

/* ------------------------------------------------------------ nodes -- */

/* node_arm_timer - make the node's timer fire no later than at */
static void
node_arm_timer(struct node *n, double at)
{
	struct timeval tv;

	if (n->timer_at != 0 && n->timer_at <= at)
		return;
	tv = ms_tv(at - now_ms());
	evtimer_add(n->timer, &tv);
	n->timer_at = at;
}

/* node_went_down - log the first failure after being up */
static void
node_went_down(struct node *n, const char *why)
{
	if (n->was_ready) {
		log_warnx("redis: connection to %s lost: %s; answering on_error "
		    "until it is back", naddr(n), why);
		n->was_ready = 0;
		n->down_logged = 0;
	} else if (n->down_logged++ % 64 == 0) {
		log_warnx("redis: cannot connect to %s: %s (retrying)",
		    naddr(n), why);
	}
}

/* node_schedule_reconnect - try again after the backoff */
static void
node_schedule_reconnect(struct node *n)
{
	struct store *s = n->s;
	struct timeval tv;

	n->state = ST_DOWN;
	evtimer_del(n->conn_timer);
	if (s->freeing)
		return;
	store_kick_requeue(s);		/* what waited for this node fails */
	if (s->mode == MODE_CLUSTER) {
		cluster_want_refresh(s);
		if (!n->seed && !n->serves)
			return;		/* left the cluster: let it go */
	}
	tv = ms_tv(n->backoff_ms);
	evtimer_add(n->retry, &tv);
	n->backoff_ms *= 2;
	if (n->backoff_ms > BACKOFF_MAX_MS)
		n->backoff_ms = BACKOFF_MAX_MS;
}

/*
 * node_close - free the connection: every command on it fails (hiredis
 * runs their callbacks with a NULL reply; inside a hiredis callback the
 * free is deferred until it returns)
 */
static void
node_close(struct node *n)
{
	redisAsyncContext *ac = n->ac;

	n->ac = NULL;
	n->state = ST_DOWN;
	evtimer_del(n->timer);
	n->timer_at = 0;
	evtimer_del(n->conn_timer);
	if (ac != NULL)
		redisAsyncFree(ac);
}

/* node_drop - close the connection and reconnect after the backoff */
static void
node_drop(struct node *n, const char *why)
{
	node_close(n);
	node_went_down(n, why);
	n->s->stats.reconnects++;
	node_schedule_reconnect(n);
}

/*
 * node_can_send - may commands go to this node now? Only once every
 * setup command (AUTH, SELECT, ROLE) has succeeded: a command pipelined
 * behind a failing AUTH or SELECT would run unauthenticated or in
 * database 0, and its answer would be used.
 */
static int
node_can_send(const struct node *n)
{
	return n->ac != NULL && n->state == ST_READY;
}

/* node_setting_up - connecting or waiting for the setup replies */
static int
node_setting_up(const struct node *n)
{
	return n->ac != NULL && n->state == ST_CONNECTING;
}

/*
 * store_kick_requeue - look at the waiting commands now (a connection
 * became usable, or went away: they are sent, or fail, without waiting
 * for the next poll)
 */
static void
store_kick_requeue(struct store *s)
{
	struct timeval tv = { 0, 0 };

	if (!s->freeing && !TAILQ_EMPTY(&s->requeue))
		evtimer_add(s->requeue_timer, &tv);
}

static void store_on_reply(redisAsyncContext *ac, void *rep, void *privdata);

/* node_send - send a command on a node; 0 or -1 (not sent) */
static int
node_send(struct node *n, struct pending *p)
{
	if (!node_can_send(n))
		return -1;
	if (p->asking && redisAsyncCommand(n->ac, NULL, NULL, "ASKING") !=
	    REDIS_OK)
		return -1;
	if (redisAsyncCommandArgv(n->ac, store_on_reply, p, p->argc, p->argv,
	    p->argvlen) != REDIS_OK)
		return -1;
	p->node = n;
	p->sent_ms = now_ms();
	TAILQ_INSERT_TAIL(&n->pending, p, link);
	node_arm_timer(n, deadline(p));
	return 0;
}

/*
 * node_on_timer - a command is late. Commands past their deadline fail
 * now; when the oldest one has waited timeout_ms on this connection the
 * server is hung or slow and the connection is dropped (Redis answers
 * in order: nothing behind it can arrive sooner).
 */
static void
node_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct node *n = arg;
	struct store *s = n->s;
	struct pending *p, *head;
	double	now = now_ms(), next = 0;

	(void)fd;
	(void)what;
	n->timer_at = 0;
	TAILQ_FOREACH(p, &n->pending, link) {
		if (!p->done && now >= deadline(p)) {
			s->stats.timeouts++;
			store_fail(p, "redis timeout");
		}
	}
	if ((head = TAILQ_FIRST(&n->pending)) == NULL)
		return;
	if (now - head->sent_ms >= s->cfg.timeout_ms) {
		log_debug("redis: %s: command timed out after %d ms", naddr(n),
		    s->cfg.timeout_ms);
		node_drop(n, "command timed out");
		return;
	}
	next = head->sent_ms + s->cfg.timeout_ms;
	TAILQ_FOREACH(p, &n->pending, link)
		if (!p->done && deadline(p) < next)
			next = deadline(p);
	node_arm_timer(n, next);
}

/* reply_convert - a script's reply as a store_reply */
static void
reply_convert(const redisReply *reply, struct store_reply *r)
{
	if (reply == NULL) {
		r->err = "redis connection lost";
	} else if (reply->type == REDIS_REPLY_ERROR) {
		r->err = "redis error reply";
		log_warnx("redis: error reply: %.200s", reply->str);
	} else if (reply->type == REDIS_REPLY_INTEGER) {
		r->ok = 1;
		r->n = 1;
		r->v[0] = reply->integer;
	} else if (reply->type == REDIS_REPLY_ARRAY) {
		r->ok = 1;
		for (size_t i = 0; i < reply->elements && i < STORE_MAX_INTS;
		    i++) {
			redisReply *e = reply->element[i];

			r->v[r->n++] = e->type == REDIS_REPLY_INTEGER ?
			    e->integer : 0;
		}
	} else if (reply->type == REDIS_REPLY_NIL ||
	    reply->type == REDIS_REPLY_STATUS ||
	    reply->type == REDIS_REPLY_STRING) {
		r->ok = 1;
	} else {
		r->err = "unexpected redis reply";
	}
}

static struct node *cluster_node(struct store *s, const char *addr);

/*
 * cluster_redirect - MOVED, ASK or TRYAGAIN: send the command elsewhere
 * (or later); 1 when it was taken care of, 0 when it fails normally
 */
static int
cluster_redirect(struct store *s, struct node *from, struct pending *p,
    const char *err)
{
	char	addr[ADDR_MAX], target[ADDR_MAX], esc[ADDR_MAX];
	unsigned slot;
	int	kind;
	struct node *t;

	if (strncmp(err, "TRYAGAIN", 8) == 0) {
		/* keys of a multi-key command are mid-migration */
		s->stats.tryagain++;
		store_requeue(s, p);
		return 1;
	}
	if ((kind = slot_parse_redirect(err, &slot, addr, sizeof(addr))) == 0)
		return 0;
	if (p->redirects >= MAX_REDIRECTS) {
		log_warnx("redis: cluster: more than %d redirections for slot "
		    "%u, giving up", MAX_REDIRECTS, slot);
		return 0;
	}
	p->redirects++;
	/*
	 * Redis writes IPv6 without brackets, and Redis 7 writes ":port"
	 * when the node's endpoint is unknown: the host is then the one of
	 * the connection that answered
	 */
	if (slot_redirect_target(addr, from->addr, target,
	    sizeof(target)) != 0) {
		log_warnx("redis: cluster: %s answered a redirection to an "
		    "unusable address \"%s\" for slot %u; failing the command",
		    naddr(from), log_escape(esc, sizeof(esc), addr,
		    strlen(addr)), slot);
		return 0;
	}
	memcpy(addr, target, sizeof(addr));
	if ((t = cluster_node(s, addr)) == NULL)
		return 0;
	if (kind == 1) {
		s->stats.moved++;
		log_debug("redis: cluster: slot %u MOVED to %s", slot, addr);
		s->slots[slot] = (int16_t)t->idx;
		if (!t->serves) {
			t->serves = 1;
			if (t->ac == NULL && !evtimer_pending(t->retry, NULL))
				node_connect(t);
		}
		cluster_want_refresh(s);
		p->slot = slot;
	} else {
		s->stats.ask++;
		log_debug("redis: cluster: slot %u ASK %s", slot, addr);
		p->asking = 1;
		p->ask_node = t->idx;
	}
	if (node_send(t, p) == 0)
		return 1;
	store_requeue(s, p);
	return 1;
}

/* store_on_reply - hiredis reply callback (reply NULL: connection gone) */
static void
store_on_reply(redisAsyncContext *ac, void *rep, void *privdata)
{
	struct pending *p = privdata;
	struct node *n = p->node;
	struct store *s = p->s;
	redisReply *reply = rep;
	struct store_reply r = { .ok = 0 };

	TAILQ_REMOVE(&n->pending, p, link);
	p->node = NULL;
	p->asking = 0;
	if (reply != NULL && reply->type == REDIS_REPLY_ERROR && !p->done &&
	    !s->freeing) {
		if (strncmp(reply->str, "NOSCRIPT", 8) == 0 && !p->retried &&
		    n->ac == ac) {
			/* the script cache was flushed: send it as EVAL */
			p->retried = 1;
			s->stats.noscript++;
			p->argv[0] = "EVAL";
			p->argvlen[0] = 4;
			p->argv[1] = store_script_text[p->id];
			p->argvlen[1] = strlen(store_script_text[p->id]);
			if (node_send(n, p) == 0)
				return;
			store_fail(p, "redis: cannot re-send script");
			free(p);
			return;
		}
		if (s->mode == MODE_CLUSTER && cluster_redirect(s, n, p,
		    reply->str))
			return;
		if (s->mode == MODE_CLUSTER &&
		    strncmp(reply->str, "CLUSTERDOWN", 11) == 0)
			cluster_want_refresh(s);
		if (s->mode == MODE_SENTINEL && n->ac == ac &&
		    strstr(reply->str, "READONLY") != NULL) {
			/* our primary was demoted: find the new one */
			log_warnx("redis: %s is no longer the primary: %.200s",
			    naddr(n), reply->str);
			store_fail(p, "redis: primary became a replica");
			free(p);
			node_drop(n, "primary became a replica");
			sentinel_ask(s);
			return;
		}
	}
	if (!p->done) {
		reply_convert(reply, &r);
		store_finish(p, &r);
	}
	free(p);
}

/* node_ready_now - the connection is usable: AUTH, SELECT, ROLE done */
static void
node_ready_now(struct node *n)
{
	struct store *s = n->s;

	evtimer_del(n->conn_timer);
	n->state = ST_READY;
	n->backoff_ms = BACKOFF_MIN_MS;
	if (n->setup_fail_logged > 0)
		log_info("redis: %s: connection setup succeeded after %llu "
		    "failed attempt%s", naddr(n), n->setup_fail_logged,
		    n->setup_fail_logged == 1 ? "" : "s");
	n->setup_fail_logged = 0;
	n->setup_last[0] = '\0';
	if (!n->was_ready) {
		if (s->mode == MODE_CLUSTER)
			log_info("redis: connected to cluster node %s",
			    naddr(n));
		else if (s->mode == MODE_SENTINEL)
			log_info("redis: connected to primary %s of \"%s\" "
			    "(db %d)", naddr(n), s->cfg.master_name,
			    s->cfg.database);
		else
			log_info("redis: connected to %s (db %d)", naddr(n),
			    s->cfg.database);
	}
	n->was_ready = 1;
	store_kick_requeue(s);		/* commands that waited for the setup */
	if (s->mode == MODE_CLUSTER && (!s->map_ok || s->refresh_wanted))
		cluster_want_refresh(s);
}

/* role_is_master - a ROLE reply says "master" */
static int
role_is_master(const redisReply *reply)
{
	return reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
	    (reply->element[0]->type == REDIS_REPLY_STRING ||
	    reply->element[0]->type == REDIS_REPLY_STATUS) &&
	    strcmp(reply->element[0]->str, "master") == 0;
}

/*
 * node_setup_failed - one setup command failed: log it once per outage
 * (again when the reason changes, and a reminder every SETUP_REMIND_MS),
 * never use this connection, drop it; the backoff brings a new one.
 */
static void
node_setup_failed(redisAsyncContext *ac, struct node *n, const char *what,
    const char *why)
{
	char	msg[sizeof(n->setup_last)];
	double	now = now_ms();

	snprintf(msg, sizeof(msg), "%s: %s", what, why);
	n->setup_fail_logged++;
	if (n->setup_fail_logged == 1 || strcmp(msg, n->setup_last) != 0) {
		log_errx("redis: %s on %s: %s; dropping the connection and "
		    "retrying with backoff (answering on_error until it "
		    "succeeds)", what, naddr(n), why);
		n->setup_log_ms = now;
	} else if (now - n->setup_log_ms >= SETUP_REMIND_MS) {
		log_errx("redis: %s on %s: %s (still failing, %llu attempts)",
		    what, naddr(n), why, n->setup_fail_logged);
		n->setup_log_ms = now;
	}
	memcpy(n->setup_last, msg, sizeof(msg));
	n->setup_err = strncmp(what, "AUTH", 4) == 0 ? "AUTH failed" :
	    strncmp(what, "SELECT", 6) == 0 ? "SELECT failed" :
	    "not a primary";
	n->setup_left = -1;		/* never ready on this connection */
	/* cannot free from inside a callback: disconnect instead (what is
	 * still to be answered on it gets a NULL reply) */
	redisAsyncDisconnect(ac);
}

/*
 * node_on_setup_reply - AUTH / SELECT / ROLE answers. The connection
 * counts as up (backoff reset, "connected" logged, commands sent) only
 * when the last of them succeeded: a wrong password must not become a
 * reconnect-and-log loop at the minimum backoff, and no command may run
 * unauthenticated or in the wrong database.
 */
static void
node_on_setup_reply(redisAsyncContext *ac, void *rep, void *privdata)
{
	redisReply *reply = rep;
	struct node *n = ac->data;
	struct store *s;
	const char *what = privdata;
	char	cmd[96], why[200], esc[200];

	if (reply == NULL || n == NULL || n->ac != ac || n->setup_left < 0)
		return;
	s = n->s;
	if (strcmp(what, "AUTH") == 0 && s->cfg.username != NULL)
		snprintf(cmd, sizeof(cmd), "AUTH as \"%s\" failed",
		    log_escape(esc, 64, s->cfg.username,
		    strlen(s->cfg.username)));
	else if (strcmp(what, "SELECT") == 0)
		snprintf(cmd, sizeof(cmd), "SELECT %d failed", s->cfg.database);
	else
		snprintf(cmd, sizeof(cmd), "%s failed", what);
	if (reply->type == REDIS_REPLY_ERROR) {
		node_setup_failed(ac, n, cmd, log_escape(why, sizeof(why),
		    reply->str, reply->len));
		return;
	}
	if (strcmp(what, "ROLE") == 0 && !role_is_master(reply)) {
		const char *role = reply->type == REDIS_REPLY_ARRAY &&
		    reply->elements > 0 && reply->element[0]->str != NULL ?
		    reply->element[0]->str : "?";

		snprintf(why, sizeof(why), "the server is not a primary (role "
		    "\"%s\"); asking the sentinels again", log_escape(esc, 64,
		    role, strlen(role)));
		node_setup_failed(ac, n, "ROLE check failed", why);
		return;
	}
	if (n->setup_left > 0 && --n->setup_left == 0 &&
	    n->state == ST_CONNECTING)
		node_ready_now(n);
}

/* node_on_connect - TCP (or unix) connect finished */
static void
node_on_connect(const redisAsyncContext *cac, int status)
{
	struct node *n = cac->data;

	if (n == NULL || n->ac != cac)
		return;
	if (status != REDIS_OK) {
		/* hiredis frees the context after this callback */
		n->ac = NULL;
		evtimer_del(n->conn_timer);
		node_went_down(n, cac->errstr[0] ? cac->errstr :
		    "connect failed");
		node_schedule_reconnect(n);
		return;
	}
	/* with AUTH, SELECT or ROLE to do, their replies decide (and the
	 * connect deadline keeps running until then) */
	if (n->setup_left == 0)
		node_ready_now(n);
}

/* node_on_disconnect - the connection went away */
static void
node_on_disconnect(const redisAsyncContext *cac, int status)
{
	struct node *n = cac->data;

	(void)status;
	if (n == NULL || n->ac != cac)
		return;			/* we dropped it ourselves */
	n->ac = NULL;
	evtimer_del(n->timer);
	n->timer_at = 0;
	if (n->setup_err != NULL && !n->was_ready) {
		/* logged (rate-limited) by node_on_setup_reply */
		n->setup_err = NULL;
	} else {
		node_went_down(n, n->setup_err ? n->setup_err :
		    cac->errstr[0] ? cac->errstr : "server closed");
		n->setup_err = NULL;
	}
	node_schedule_reconnect(n);
}

/* node_on_retry - backoff expired: connect (Sentinel: ask first) */
static void
node_on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct node *n = arg;

	(void)fd;
	(void)what;
	if (n->ac != NULL)
		return;
	if (n->s->mode == MODE_SENTINEL)
		sentinel_ask(n->s);
	else
		node_connect(n);
}

/* node_on_conn_timer - a connect that hangs is dropped */
static void
node_on_conn_timer(evutil_socket_t fd, short what, void *arg)
{
	struct node *n = arg;

	(void)fd;
	(void)what;
	if (n->state == ST_CONNECTING)
		node_drop(n, "connect timed out");
}

/* node_connect - start a new connection */
static void
node_connect(struct node *n)
{
	struct store *s = n->s;
	redisAsyncContext *ac;
	struct timeval tv;

	if (n->addr == NULL || s->freeing)
		return;
	evtimer_del(n->retry);
	if ((ac = async_connect(n->addr)) == NULL) {
		node_went_down(n, "out of memory");
		node_schedule_reconnect(n);
		return;
	}
	if (ac->err) {
		node_went_down(n, ac->errstr);
		redisAsyncFree(ac);
		node_schedule_reconnect(n);
		return;
	}
	ac->data = n;
	n->ac = ac;
	n->state = ST_CONNECTING;
	n->setup_left = 0;
	n->setup_err = NULL;
	tv = ms_tv(s->cfg.connect_timeout_ms);
	evtimer_add(n->conn_timer, &tv);
	redisLibeventAttach(ac, s->base);
	redisAsyncSetConnectCallback(ac, node_on_connect);
	redisAsyncSetDisconnectCallback(ac, node_on_disconnect);
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
		if (redisAsyncCommandArgv(ac, node_on_setup_reply, "AUTH",
		    s->cfg.username ? 3 : 2, av, al) == REDIS_OK)
			n->setup_left++;
	}
	if (s->cfg.database != 0 &&
	    redisAsyncCommand(ac, node_on_setup_reply, "SELECT",
	    "SELECT %d", s->cfg.database) == REDIS_OK)
		n->setup_left++;
	if (s->mode == MODE_SENTINEL &&
	    redisAsyncCommand(ac, node_on_setup_reply, "ROLE", "ROLE") ==
	    REDIS_OK)
		n->setup_left++;
}

/* node_new - a node (not connected yet); NULL when out of memory */
static struct node *
node_new(struct store *s, const char *addr)
{
	struct node *n, **nn;

	if (s->nnodes >= INT16_MAX)
		return NULL;
	if ((n = calloc(1, sizeof(*n))) == NULL)
		return NULL;
	if ((nn = realloc(s->nodes, (s->nnodes + 1) * sizeof(*nn))) == NULL) {
		free(n);
		return NULL;
	}
	s->nodes = nn;
	n->s = s;
	n->idx = s->nnodes;
	n->addr = addr ? strdup(addr) : NULL;
	TAILQ_INIT(&n->pending);
	n->timer = evtimer_new(s->base, node_on_timer, n);
	n->retry = evtimer_new(s->base, node_on_retry, n);
	n->conn_timer = evtimer_new(s->base, node_on_conn_timer, n);
	n->backoff_ms = BACKOFF_MIN_MS;
	if ((addr != NULL && n->addr == NULL) || n->timer == NULL ||
	    n->retry == NULL || n->conn_timer == NULL) {
		if (n->timer)
			event_free(n->timer);
		if (n->retry)
			event_free(n->retry);
		if (n->conn_timer)
			event_free(n->conn_timer);
		free(n->addr);
		free(n);
		return NULL;
	}
	s->nodes[s->nnodes++] = n;
	return n;
}

/* node_free - close and release (store_free only) */
static void
node_free(struct node *n)
{
	redisAsyncContext *ac = n->ac;

	n->ac = NULL;
	n->state = ST_DOWN;
	if (ac != NULL) {
		ac->data = NULL;
		redisAsyncFree(ac);	/* fails every pending command */
	}
	event_free(n->timer);
	event_free(n->retry);
	event_free(n->conn_timer);
	free(n->addr);
	free(n);
}

/* ---------------------------------------------------------- cluster -- */

/* cluster_node - the node of an address, created (and connecting) if new */
static struct node *
cluster_node(struct store *s, const char *addr)
{
	struct node *n;

	for (int i = 0; i < s->nnodes; i++)
		if (strcmp(s->nodes[i]->addr, addr) == 0)
			return s->nodes[i];
	if ((n = node_new(s, addr)) == NULL)
		return NULL;
	log_info("redis: cluster: new node %s", addr);
	n->serves = 1;
	node_connect(n);
	return n;
}

/* cluster_arm_refresh - run the refresh timer after ms */
static void
cluster_arm_refresh(struct store *s, double ms)
{
	struct timeval tv = ms_tv(ms);

	evtimer_add(s->refresh_timer, &tv);
}

/* cluster_want_refresh - ask for CLUSTER SLOTS soon (rate-limited) */
static void
cluster_want_refresh(struct store *s)
{
	double	wait;

	if (s->mode != MODE_CLUSTER || s->freeing)
		return;
	s->refresh_wanted = 1;
	if (s->refresh_inflight || evtimer_pending(s->refresh_timer, NULL))
		return;
	wait = s->refresh_sent_ms + REFRESH_MIN_MS - now_ms();
	cluster_arm_refresh(s, wait > 0 ? wait : 0);
}

/* cluster_check_map - is every slot served? (log when it becomes so) */
static void
cluster_check_map(struct store *s)
{
	int	ok = 1, nserving = 0;

	for (int i = 0; i < SLOT_COUNT; i++)
		if (s->slots[i] < 0) {
			ok = 0;
			break;
		}
	for (int i = 0; i < s->nnodes; i++)
		nserving += s->nodes[i]->serves;
	if (ok && !s->map_ok)
		log_info("redis: cluster: all %d slots served by %d node%s",
		    SLOT_COUNT, nserving, nserving == 1 ? "" : "s");
	else if (!ok && (s->map_ok || s->map_logged++ % 64 == 0))
		log_warnx("redis: cluster: some slots are not served "
		    "(answering on_error for their keys)");
	s->map_ok = ok;
}

/* cluster_log_redirects - one line (at most per second) about redirections */
static void
cluster_log_redirects(struct store *s, int force)
{
	unsigned long long t = s->stats.moved + s->stats.ask +
	    s->stats.tryagain;

	if (t == s->redirects_logged ||
	    (!force && now_ms() - s->redirects_log_ms < 1000))
		return;
	s->redirects_logged = t;
	s->redirects_log_ms = now_ms();
	log_info("redis: cluster: redirections followed: %llu MOVED, %llu ASK, "
	    "%llu TRYAGAIN; %llu slot map refreshes", s->stats.moved,
	    s->stats.ask, s->stats.tryagain, s->stats.slot_refreshes);
}

/* cluster_on_slots - the CLUSTER SLOTS answer: the new slot map */
static void
cluster_on_slots(redisAsyncContext *ac, void *rep, void *privdata)
{
	struct node *from = ac->data;
	redisReply *reply = rep;
	struct store *s;
	int16_t	*map;

	if (from == NULL)
		return;			/* shutting down */
	s = from->s;
	if ((uintptr_t)privdata != s->refresh_seq || !s->refresh_inflight)
		return;			/* given up on this one */
	s->refresh_inflight = 0;
	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY ||
	    reply->elements == 0) {
		if (reply != NULL)
			log_warnx("redis: cluster: CLUSTER SLOTS from %s: %.200s",
			    naddr(from), reply->type == REDIS_REPLY_ERROR ?
			    reply->str : "no slots");
		s->refresh_rr++;	/* ask another node next time */
		cluster_want_refresh(s);
		return;
	}
	if ((map = malloc(sizeof(s->slots))) == NULL) {
		cluster_want_refresh(s);
		return;
	}
	for (int i = 0; i < SLOT_COUNT; i++)
		map[i] = -1;
	for (size_t i = 0; i < reply->elements; i++) {
		redisReply *e = reply->element[i], *m;
		char	addr[ADDR_MAX], fhost[256];
		const char *host;
		size_t	hl;
		long long lo, hi;
		int	fport;
		struct node *n;

		if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
		    e->element[0]->type != REDIS_REPLY_INTEGER ||
		    e->element[1]->type != REDIS_REPLY_INTEGER ||
		    (m = e->element[2])->type != REDIS_REPLY_ARRAY ||
		    m->elements < 2 ||
		    (m->element[0]->type != REDIS_REPLY_STRING &&
		    m->element[0]->type != REDIS_REPLY_NIL) ||
		    m->element[1]->type != REDIS_REPLY_INTEGER)
			continue;
		lo = e->element[0]->integer;
		hi = e->element[1]->integer;
		if (lo < 0 || hi >= SLOT_COUNT || lo > hi)
			continue;
		host = m->element[0]->type == REDIS_REPLY_NIL ? "" :
		    m->element[0]->str;
		hl = m->element[0]->type == REDIS_REPLY_NIL ? 0 :
		    m->element[0]->len;
		if (hl == 0 || strcmp(host, "?") == 0) {
			/* the endpoint is unknown (Redis 7 answers NIL, "" or
			 * "?"): the host of the node that was asked */
			parse_target(from->addr, fhost, sizeof(fhost), &fport);
			host = fhost;
			hl = strlen(fhost);
		}
		make_addr(addr, sizeof(addr), host, hl,
		    (long)m->element[1]->integer);
		if ((n = cluster_node(s, addr)) == NULL)
			continue;
		for (long long k = lo; k <= hi; k++)
			map[k] = (int16_t)n->idx;
	}
	memcpy(s->slots, map, sizeof(s->slots));
	free(map);
	for (int i = 0; i < s->nnodes; i++)
		s->nodes[i]->serves = 0;
	for (int i = 0; i < SLOT_COUNT; i++)
		if (s->slots[i] >= 0)
			s->nodes[s->slots[i]]->serves = 1;
	for (int i = 0; i < s->nnodes; i++) {
		struct node *n = s->nodes[i];

		/* a node back in the map that we had let go */
		if ((n->serves || n->seed) && n->ac == NULL &&
		    !evtimer_pending(n->retry, NULL))
			node_connect(n);
	}
	cluster_check_map(s);
	cluster_log_redirects(s, 0);
	if (s->refresh_wanted)
		cluster_want_refresh(s);
}

/*
 * cluster_on_refresh_timer - send CLUSTER SLOTS to a connected node
 * (round robin), or give up on one that was not answered in time
 */
static void
cluster_on_refresh_timer(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;
	double	now = now_ms();

	(void)fd;
	(void)what;
	if (s->refresh_inflight) {
		if (now - s->refresh_sent_ms < s->cfg.timeout_ms) {
			cluster_arm_refresh(s, s->refresh_sent_ms +
			    s->cfg.timeout_ms - now);
			return;
		}
		s->refresh_inflight = 0;	/* late: ask another node */
		s->refresh_rr++;
		s->refresh_wanted = 1;
	}
	if (!s->refresh_wanted)
		return;
	for (int k = 0; k < s->nnodes; k++) {
		struct node *n = s->nodes[(s->refresh_rr + k) % s->nnodes];

		if (n->state != ST_READY || n->ac == NULL)
			continue;
		s->refresh_seq++;
		if (redisAsyncCommand(n->ac, cluster_on_slots,
		    (void *)s->refresh_seq, "CLUSTER SLOTS") != REDIS_OK)
			continue;
		s->refresh_rr = (s->refresh_rr + k) % s->nnodes;
		s->refresh_inflight = 1;
		s->refresh_wanted = 0;
		s->refresh_sent_ms = now;
		s->stats.slot_refreshes++;
		cluster_arm_refresh(s, s->cfg.timeout_ms);
		return;
	}
	/* nobody is connected: seeds and nodes reconnect by themselves;
	 * node_ready_now() asks again, and so does this timer */
	cluster_arm_refresh(s, BACKOFF_MAX_MS);
}

/*
 * store_route - send a waiting command: to the one node, or (cluster)
 * to the slot's owner or the ASK target. 0 when sent, 1 when it should
 * wait more (the node is still setting up; cluster: anything), -1 when
 * it fails now (standalone, Sentinel: not connected).
 */
static int
store_route(struct store *s, struct pending *p)
{
	struct node *n = NULL;

	if (s->mode != MODE_CLUSTER) {
		n = s->nodes[0];
		if (node_send(n, p) == 0)
			return 0;
		return node_setting_up(n) ? 1 : -1;
	}
	if (p->asking)
		n = s->nodes[p->ask_node];
	else if (s->slots[p->slot] >= 0)
		n = s->nodes[s->slots[p->slot]];
	if (n == NULL) {
		cluster_want_refresh(s);
		return 1;
	}
	return node_send(n, p) == 0 ? 0 : 1;
}

/*
 * store_requeue - re-send a command a little later (cluster: TRYAGAIN, a
 * target not connected yet; every mode: the node is still setting up)
 */
static void
store_requeue(struct store *s, struct pending *p)
{
	p->node = NULL;
	TAILQ_INSERT_TAIL(&s->requeue, p, link);
	if (!evtimer_pending(s->requeue_timer, NULL)) {
		struct timeval tv = ms_tv(REQUEUE_MS);

		evtimer_add(s->requeue_timer, &tv);
	}
}

/* store_on_requeue - re-send what waits, or fail it at its deadline */
static void
store_on_requeue(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;
	struct pending_list l;
	struct pending *p;
	int	rc;

	(void)fd;
	(void)what;
	TAILQ_INIT(&l);
	TAILQ_CONCAT(&l, &s->requeue, link);
	while ((p = TAILQ_FIRST(&l)) != NULL) {
		TAILQ_REMOVE(&l, p, link);
		if (p->done) {
			free(p);
		} else if (now_ms() >= deadline(p)) {
			s->stats.timeouts++;
			store_fail(p, "redis timeout");
			free(p);
		} else if ((rc = store_route(s, p)) > 0) {
			store_requeue(s, p);
		} else if (rc < 0) {
			store_fail(p, "redis not connected");
			free(p);
		}
	}
}

/* --------------------------------------------------------- sentinel -- */

/* fence_active - is a failover away from the fenced primary under way? */
static int
fence_active(const struct store *s)
{
	return s->fence_addr != NULL && now_ms() < s->fence_until;
}

/* fence_clear - the failover ended (or was aborted) */
static void
fence_clear(struct store *s)
{
	free(s->fence_addr);
	free(s->candidate);
	s->fence_addr = s->candidate = NULL;
}

static void sentinel_ask_next(struct store *s);

/*
 * sentinel_found - the sentinels name the primary host:port. A new
 * address: fail what is pending on the old one and connect at once.
 */
static void
sentinel_found(struct store *s, const char *host, size_t hl, long port,
    const char *why)
{
	struct node *n = s->nodes[0];
	char	addr[ADDR_MAX], *a;

	make_addr(addr, sizeof(addr), host, hl, port);
	if (s->fence_addr != NULL && !fence_active(s)) {
		log_warnx("redis: failover of \"%s\" did not finish in %d s: "
		    "trusting the sentinels again", s->cfg.master_name,
		    FENCE_MS / 1000);
		fence_clear(s);
	}
	if (fence_active(s) && strcmp(addr, s->fence_addr) == 0) {
		/* the sentinels still name the primary being replaced:
		 * wait for the selected replica instead */
		snprintf(addr, sizeof(addr), "%s", s->candidate);
	}
	if (n->addr != NULL && strcmp(n->addr, addr) == 0) {
		if (n->ac == NULL) {
			evtimer_del(n->retry);
			node_connect(n);
		}
		return;
	}
	if ((a = strdup(addr)) == NULL)
		return;
	if (n->addr != NULL) {
		log_warnx("redis: primary of \"%s\" is now %s (was %s, %s)",
		    s->cfg.master_name, addr, n->addr, why);
		s->stats.primary_switches++;
	} else {
		log_info("redis: sentinels name %s as primary of \"%s\"", addr,
		    s->cfg.master_name);
	}
	if (n->ac != NULL)
		node_close(n);
	free(n->addr);
	n->addr = a;
	n->was_ready = 0;
	n->down_logged = 0;
	n->backoff_ms = BACKOFF_MIN_MS;
	node_connect(n);
}

/*
 * sentinel_auth - AUTH on a sentinel connection, the password as one
 * argument. Its failure shows in the next command's NOAUTH answer,
 * which is logged and makes that connection useless.
 */
static void
sentinel_auth(struct store *s, redisAsyncContext *ac)
{
	const char *av[2] = { "AUTH", s->cfg.sentinel_password };
	size_t	al[2] = { 4, strlen(s->cfg.sentinel_password) };

	redisAsyncCommandArgv(ac, NULL, NULL, 2, av, al);
}

/* sentinel_close_query - free the query connection (not in its callback) */
static void
sentinel_close_query(struct store *s)
{
	redisAsyncContext *ac = s->sq_ac;

	s->sq_ac = NULL;
	evtimer_del(s->sq_timer);
	if (ac != NULL) {
		ac->data = NULL;
		redisAsyncFree(ac);
	}
}

/* sentinel_query_failed - this sentinel did not help: the next, soon */
static void
sentinel_query_failed(struct store *s, const char *why)
{
	struct timeval tv = { 0, 0 };
	char	esc[256];

	/* every sentinel's first failure, then one in 64 */
	if (s->sq_fail_logged < (unsigned)s->nsentinels ||
	    s->sq_fail_logged % 64 == 0)
		log_warnx("redis: sentinel %s: %s", s->cfg.sentinels[s->sq_idx],
		    log_escape(esc, sizeof(esc), why, strlen(why)));
	s->sq_fail_logged++;
	s->sq_idx = (s->sq_idx + 1) % s->nsentinels;
	evtimer_add(s->sq_timer, &tv);	/* sentinel_ask_next() from there */
}

/* sentinel_on_addr - SENTINEL get-master-addr-by-name answered */
static void
sentinel_on_addr(redisAsyncContext *ac, void *rep, void *privdata)
{
	struct store *s = privdata;
	redisReply *reply = rep;

	if (ac->data == NULL || s->sq_ac != ac)
		return;
	/* done with this connection: it closes after this callback (a NULL
	 * reply: hiredis is freeing it already) */
	s->sq_ac = NULL;
	ac->data = NULL;
	evtimer_del(s->sq_timer);
	if (reply != NULL)
		redisAsyncDisconnect(ac);
	if (reply != NULL && reply->type == REDIS_REPLY_ARRAY &&
	    reply->elements == 2 &&
	    reply->element[0]->type == REDIS_REPLY_STRING &&
	    reply->element[1]->type == REDIS_REPLY_STRING) {
		char	*end;
		long	port = strtol(reply->element[1]->str, &end, 10);

		if (*end == '\0' && port > 0 && port < 65536 &&
		    reply->element[0]->len > 0) {
			s->sq_fail_logged = 0;
			sentinel_found(s, reply->element[0]->str,
			    reply->element[0]->len, port, "sentinel query");
			return;
		}
	}
	sentinel_query_failed(s, reply == NULL ? "connection lost" :
	    reply->type == REDIS_REPLY_ERROR ? reply->str :
	    reply->type == REDIS_REPLY_NIL ? "does not know the master name" :
	    "unexpected answer");
}

/* sentinel_on_query_connect - the query connection failed to connect */
static void
sentinel_on_query_connect(const redisAsyncContext *cac, int status)
{
	struct store *s = cac->data;

	if (s == NULL || s->sq_ac != cac || status == REDIS_OK)
		return;
	s->sq_ac = NULL;		/* hiredis frees it after this */
	evtimer_del(s->sq_timer);
	sentinel_query_failed(s, cac->errstr[0] ? cac->errstr :
	    "connect failed");
}

/*
 * sentinel_on_sq_timer - the query's deadline (the sentinel is slow or
 * unreachable), or the zero timer that moves on to the next sentinel
 */
static void
sentinel_on_sq_timer(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;

	(void)fd;
	(void)what;
	if (s->sq_ac != NULL) {
		sentinel_close_query(s);
		sentinel_query_failed(s, "no answer in time");
		return;
	}
	sentinel_ask_next(s);
}

/* sentinel_ask_next - ask the next sentinel, or back off after all */
static void
sentinel_ask_next(struct store *s)
{
	struct node *n = s->nodes[0];
	redisAsyncContext *ac;
	struct timeval tv;

	if (s->freeing || s->sq_ac != NULL)
		return;
	if (s->sq_tried >= s->nsentinels) {
		/* none answered: a primary we still talk to stays; else
		 * the node's backoff brings us back here */
		s->sq_tried = 0;
		if (n->ac == NULL && !evtimer_pending(n->retry, NULL)) {
			node_went_down(n, "no sentinel named a primary");
			node_schedule_reconnect(n);
		}
		return;
	}
	s->sq_tried++;
	ac = async_connect(s->cfg.sentinels[s->sq_idx]);
	if (ac == NULL || ac->err) {
		if (ac != NULL)
			redisAsyncFree(ac);
		sentinel_query_failed(s, "cannot connect");
		return;
	}
	ac->data = s;
	s->sq_ac = ac;
	redisLibeventAttach(ac, s->base);
	redisAsyncSetConnectCallback(ac, sentinel_on_query_connect);
	if (s->cfg.sentinel_password != NULL)
		sentinel_auth(s, ac);
	if (redisAsyncCommand(ac, sentinel_on_addr, s,
	    "SENTINEL get-master-addr-by-name %s", s->cfg.master_name) !=
	    REDIS_OK) {
		sentinel_close_query(s);
		sentinel_query_failed(s, "cannot send");
		return;
	}
	tv = ms_tv(s->cfg.connect_timeout_ms);
	evtimer_add(s->sq_timer, &tv);
}

/* sentinel_ask - ask the sentinels for the primary (one query at a time) */
static void
sentinel_ask(struct store *s)
{
	if (s->mode != MODE_SENTINEL || s->sq_ac != NULL || s->freeing ||
	    evtimer_pending(s->sq_timer, NULL))
		return;
	s->sq_tried = 0;
	sentinel_ask_next(s);
}

/* sentinel_sub_lost - a subscription is gone: reconnect after a backoff */
static void
sentinel_sub_lost(struct sub *u, const char *why)
{
	struct store *s = u->s;
	struct timeval tv;

	if (s->freeing)
		return;
	if (u->ok || u->fail_logged++ % 64 == 0)
		log_warnx("redis: subscription to sentinel %s lost: %s "
		    "(retrying)", s->cfg.sentinels[u->idx], why);
	u->ok = 0;
	tv = ms_tv(u->backoff_ms);
	evtimer_add(u->timer, &tv);
	u->backoff_ms *= 2;
	if (u->backoff_ms > BACKOFF_MAX_MS)
		u->backoff_ms = BACKOFF_MAX_MS;
}

/*
 * sentinel_failover_event - "+selected-slave" / "+promoted-slave":
 * "slave IP:PORT IP PORT @ NAME MIP MPORT". From the selection on, the
 * old primary gets no more commands (what it accepted now would be lost
 * when it is demoted): the store waits for the selected replica to be
 * promoted, answering on_error meanwhile.
 */
static void
sentinel_failover_event(struct store *s, const char *chan, const char *body)
{
	char	ip[256], name[256], mip[256], addr[ADDR_MAX], maddr[ADDR_MAX];
	long	port, mport;
	struct node *n = s->nodes[0];

	if (sscanf(body, "%*s %*s %255s %ld @ %255s %255s %ld", ip, &port,
	    name, mip, &mport) != 5 || strcmp(name, s->cfg.master_name) != 0 ||
	    port <= 0 || port > 65535)
		return;
	make_addr(addr, sizeof(addr), ip, strlen(ip), port);
	make_addr(maddr, sizeof(maddr), mip, strlen(mip), mport);
	if (strcmp(chan, "+selected-slave") == 0) {
		fence_clear(s);
		s->fence_addr = strdup(maddr);
		s->candidate = strdup(addr);
		s->fence_until = now_ms() + FENCE_MS;
		log_warnx("redis: failover of \"%s\" under way: no more commands "
		    "to %s; waiting for %s to be promoted (answering on_error "
		    "meanwhile)", s->cfg.master_name, maddr, addr);
		if (n->addr != NULL && strcmp(n->addr, maddr) == 0)
			sentinel_found(s, ip, strlen(ip), port, chan);
		return;
	}
	/* +promoted-slave: the replica is the primary now */
	n->backoff_ms = BACKOFF_MIN_MS;
	sentinel_found(s, ip, strlen(ip), port, chan);
}

/* sentinel_on_message - subscribe confirmations and the events */
static void
sentinel_on_message(redisAsyncContext *ac, void *rep, void *privdata)
{
	struct sub *u = privdata;
	struct store *s = u->s;
	redisReply *reply = rep, *kind, *chan, *body;
	char	name[256], oldip[256], newip[256];
	long	oldport, newport;

	if (reply == NULL || ac->data == NULL || u->ac != ac)
		return;
	if (reply->type == REDIS_REPLY_ERROR) {
		/* e.g. NOAUTH: this subscription will never confirm */
		char	esc[256];

		if (u->fail_logged++ % 64 == 0)
			log_warnx("redis: sentinel %s refused the subscription: "
			    "%s (retrying)", s->cfg.sentinels[u->idx],
			    log_escape(esc, sizeof(esc), reply->str,
			    reply->len));
		redisAsyncDisconnect(ac);
		return;
	}
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
	    (kind = reply->element[0])->type != REDIS_REPLY_STRING ||
	    (chan = reply->element[1])->type != REDIS_REPLY_STRING)
		return;
	body = reply->element[2];
	if (strcmp(kind->str, "subscribe") == 0) {
		if (body->type != REDIS_REPLY_INTEGER ||
		    body->integer < SUB_CHANNELS)
			return;		/* wait for the last channel */
		evtimer_del(u->timer);
		u->ok = 1;
		u->fail_logged = 0;
		u->backoff_ms = BACKOFF_MIN_MS;
		log_debug("redis: subscribed to sentinel %s",
		    s->cfg.sentinels[u->idx]);
		/* a switch may have happened while we were not listening */
		sentinel_ask(s);
		return;
	}
	if (strcmp(kind->str, "message") != 0 ||
	    body->type != REDIS_REPLY_STRING)
		return;
	if (strcmp(chan->str, "+selected-slave") == 0 ||
	    strcmp(chan->str, "+promoted-slave") == 0) {
		sentinel_failover_event(s, chan->str, body->str);
		return;
	}
	if (strcmp(chan->str, "+switch-master") != 0) {
		/* a failover aborted: trust the sentinels again */
		if (fence_active(s) && strstr(body->str, s->cfg.master_name)) {
			log_warnx("redis: failover of \"%s\": %s",
			    s->cfg.master_name, chan->str);
			fence_clear(s);
			sentinel_ask(s);
		}
		return;
	}
	if (sscanf(body->str, "%255s %255s %ld %255s %ld", name, oldip,
	    &oldport, newip, &newport) != 5 ||
	    strcmp(name, s->cfg.master_name) != 0)
		return;
	if (newport <= 0 || newport > 65535)
		return;
	fence_clear(s);
	sentinel_found(s, newip, strlen(newip), newport, "+switch-master");
}

/* sentinel_on_sub_connect - a subscription's connect finished */
static void
sentinel_on_sub_connect(const redisAsyncContext *cac, int status)
{
	struct sub *u = cac->data;

	if (u == NULL || u->ac != cac || status == REDIS_OK)
		return;
	u->ac = NULL;			/* hiredis frees it after this */
	evtimer_del(u->timer);
	sentinel_sub_lost(u, cac->errstr[0] ? cac->errstr : "connect failed");
}

/* sentinel_on_sub_disconnect - a subscription's connection closed */
static void
sentinel_on_sub_disconnect(const redisAsyncContext *cac, int status)
{
	struct sub *u = cac->data;

	(void)status;
	if (u == NULL || u->ac != cac)
		return;
	u->ac = NULL;
	evtimer_del(u->timer);
	sentinel_sub_lost(u, cac->errstr[0] ? cac->errstr : "closed");
}

/* sentinel_sub_close - free a subscription's connection (not in its callback) */
static void
sentinel_sub_close(struct sub *u)
{
	redisAsyncContext *ac = u->ac;

	u->ac = NULL;
	evtimer_del(u->timer);
	if (ac != NULL) {
		ac->data = NULL;
		redisAsyncFree(ac);
	}
}

static void sentinel_subscribe(struct sub *u);

/*
 * sentinel_on_sub_timer - reconnect a subscription, or give up on one
 * that did not confirm in time
 */
static void
sentinel_on_sub_timer(evutil_socket_t fd, short what, void *arg)
{
	struct sub *u = arg;

	(void)fd;
	(void)what;
	if (u->ac != NULL) {
		sentinel_sub_close(u);
		sentinel_sub_lost(u, "no confirmation in time");
		return;
	}
	sentinel_subscribe(u);
}

/*
 * sentinel_subscribe - SUBSCRIBE to +switch-master and the failover
 * events on one sentinel (every sentinel has one: only the leader of a
 * failover announces its steps)
 */
static void
sentinel_subscribe(struct sub *u)
{
	struct store *s = u->s;
	redisAsyncContext *ac;
	struct timeval tv;

	if (s->freeing || u->ac != NULL)
		return;
	ac = async_connect(s->cfg.sentinels[u->idx]);
	if (ac == NULL || ac->err) {
		if (ac != NULL)
			redisAsyncFree(ac);
		sentinel_sub_lost(u, "cannot connect");
		return;
	}
	ac->data = u;
	u->ac = ac;
	redisLibeventAttach(ac, s->base);
	redisAsyncSetConnectCallback(ac, sentinel_on_sub_connect);
	redisAsyncSetDisconnectCallback(ac, sentinel_on_sub_disconnect);
	if (s->cfg.sentinel_password != NULL)
		sentinel_auth(s, ac);
	redisAsyncCommand(ac, sentinel_on_message, u, "SUBSCRIBE %s %s %s %s %s",
	    "+switch-master", "+selected-slave", "+promoted-slave",
	    "-failover-abort-no-good-slave", "+failover-end-for-timeout");
	tv = ms_tv(s->cfg.connect_timeout_ms);
	evtimer_add(u->timer, &tv);
}

/* ------------------------------------------------------------ store -- */

/* strv_dup - copy a NULL-terminated list of strings */
static char **
strv_dup(char *const *v, int *count)
{
	int	n = 0;
	char	**d;

	while (v != NULL && v[n] != NULL)
		n++;
	*count = n;
	if (v == NULL || (d = calloc(n + 1, sizeof(*d))) == NULL)
		return NULL;
	for (int i = 0; i < n; i++)
		d[i] = strdup(v[i]);
	return d;
}

/* strv_free - release a copied list */
static void
strv_free(char **v)
{
	for (int i = 0; v != NULL && v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

/* store_new - create the state layer and start connecting */
struct store *
store_new(struct event_base *base, const struct store_config *c)
{
	struct store *s = calloc(1, sizeof(*s));
	int	ncluster = 0;

	if (s == NULL)
		return NULL;
	s->base = base;
	s->cfg = *c;
	s->cfg.address = strdup(c->address ? c->address : "127.0.0.1:6379");
	s->cfg.prefix = strdup(c->prefix ? c->prefix : "");
	s->cfg.username = c->username ? strdup(c->username) : NULL;
	s->cfg.password = c->password ? strdup(c->password) : NULL;
	s->cfg.master_name = c->master_name ? strdup(c->master_name) : NULL;
	s->cfg.sentinel_password = c->sentinel_password ?
	    strdup(c->sentinel_password) : NULL;
	s->cfg.sentinels = strv_dup(c->sentinels, &s->nsentinels);
	s->cfg.cluster = strv_dup(c->cluster, &ncluster);
	s->prefixlen = strlen(s->cfg.prefix);
	if (s->cfg.timeout_ms <= 0)
		s->cfg.timeout_ms = 200;
	if (s->cfg.connect_timeout_ms <= 0)
		s->cfg.connect_timeout_ms = 1000;
	TAILQ_INIT(&s->requeue);
	for (int i = 0; i < SLOT_COUNT; i++)
		s->slots[i] = -1;
	s->refresh_timer = evtimer_new(base, cluster_on_refresh_timer, s);
	s->requeue_timer = evtimer_new(base, store_on_requeue, s);
	s->sq_timer = evtimer_new(base, sentinel_on_sq_timer, s);
	if (s->nsentinels > 0 && s->cfg.master_name != NULL)
		s->mode = MODE_SENTINEL;
	else if (ncluster > 0)
		s->mode = MODE_CLUSTER;
	if (s->cfg.address == NULL || s->cfg.prefix == NULL ||
	    s->refresh_timer == NULL || s->requeue_timer == NULL ||
	    s->sq_timer == NULL) {
		store_free(s);
		return NULL;
	}
	switch (s->mode) {
	case MODE_SINGLE:
		if (node_new(s, s->cfg.address) == NULL) {
			store_free(s);
			return NULL;
		}
		node_connect(s->nodes[0]);
		break;
	case MODE_SENTINEL:
		if (node_new(s, NULL) == NULL) {
			store_free(s);
			return NULL;
		}
		if ((s->subs = calloc(s->nsentinels, sizeof(*s->subs))) ==
		    NULL) {
			store_free(s);
			return NULL;
		}
		for (int i = 0; i < s->nsentinels; i++) {
			struct sub *u = &s->subs[i];

			u->s = s;
			u->idx = i;
			u->backoff_ms = BACKOFF_MIN_MS;
			u->timer = evtimer_new(base, sentinel_on_sub_timer, u);
			if (u->timer == NULL) {
				store_free(s);
				return NULL;
			}
		}
		sentinel_ask(s);
		for (int i = 0; i < s->nsentinels; i++)
			sentinel_subscribe(&s->subs[i]);
		break;
	case MODE_CLUSTER:
		for (int i = 0; i < ncluster; i++) {
			struct node *n = cluster_node(s, s->cfg.cluster[i]);

			if (n == NULL) {
				store_free(s);
				return NULL;
			}
			n->seed = 1;
			n->serves = 0;
		}
		break;
	}
	return s;
}

/* store_script - run a compiled-in script (see store.h) */
void
store_script(struct store *s, enum store_script_id id, int nkeys, int nargs,
    const char *const *argv, const size_t *argvlen, store_cb *cb, void *arg)
{
	struct pending *p;
	struct node *n = NULL;
	size_t	need = 0;
	char	nk[16], *d;
	int	i, argc = 3 + nargs;
	unsigned slot = 0;

	if (argc > MAX_ARGS || nkeys > nargs || nkeys < 0) {
		store_fail_now(cb, arg, "too many script arguments");
		return;
	}
	if (s->freeing) {
		store_fail_now(cb, arg, "redis not connected");
		return;
	}
	if (s->mode == MODE_CLUSTER) {
		/* the slot of the first key (prefix included) */
		if (nkeys > 0) {
			char	kb[512];
			size_t	kl = s->prefixlen + argvlen[0];

			if (kl <= sizeof(kb)) {
				memcpy(kb, s->cfg.prefix, s->prefixlen);
				memcpy(kb + s->prefixlen, argv[0], argvlen[0]);
				slot = slot_of(kb, kl);
			} else {
				slot = slot_of(argv[0], argvlen[0]);
			}
		}
		if (s->slots[slot] >= 0)
			n = s->nodes[s->slots[slot]];
		else
			cluster_want_refresh(s);
	} else {
		n = s->nodes[0];
	}
	if (n == NULL || (!node_can_send(n) && !node_setting_up(n))) {
		store_fail_now(cb, arg, "redis not connected");
		return;
	}
	for (i = 0; i < nargs; i++)
		need += argvlen[i] + (i < nkeys ? s->prefixlen : 0);
	if ((p = malloc(sizeof(*p) + need + 1)) == NULL) {
		store_fail_now(cb, arg, "out of memory");
		return;
	}
	p->s = s;
	p->node = NULL;
	p->cb = cb;
	p->arg = arg;
	p->done = p->retried = p->redirects = p->asking = 0;
	p->ask_node = -1;
	p->slot = slot;
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
	p->start_ms = now_ms();
	s->stats.commands++;
	if (!node_can_send(n)) {
		/* AUTH/SELECT/ROLE not answered yet: wait for them (within
		 * the command's deadline), never ahead of them */
		store_requeue(s, p);
		return;
	}
	if (node_send(n, p) != 0) {
		free(p);
		store_fail_now(cb, arg, "redis command failed");
	}
}

/* store_ready - is the connection up (cluster: every slot's node)? */
int
store_ready(const struct store *s)
{
	if (s->mode != MODE_CLUSTER)
		return s->nnodes > 0 && s->nodes[0]->state == ST_READY &&
		    s->nodes[0]->ac != NULL;
	if (!s->map_ok)
		return 0;
	for (int i = 0; i < s->nnodes; i++)
		if (s->nodes[i]->serves && s->nodes[i]->state != ST_READY)
			return 0;
	return 1;
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
	struct pending *p;

	if (s == NULL)
		return;
	s->freeing = 1;
	if (s->mode == MODE_CLUSTER)
		cluster_log_redirects(s, 1);
	while ((p = TAILQ_FIRST(&s->requeue)) != NULL) {
		TAILQ_REMOVE(&s->requeue, p, link);
		store_fail(p, "redis shutdown");
		free(p);
	}
	for (int i = 0; i < s->nnodes; i++)
		node_free(s->nodes[i]);
	free(s->nodes);
	if (s->sq_ac != NULL)
		sentinel_close_query(s);
	for (int i = 0; s->subs != NULL && i < s->nsentinels; i++) {
		if (s->subs[i].timer == NULL)
			continue;
		sentinel_sub_close(&s->subs[i]);
		event_free(s->subs[i].timer);
	}
	free(s->subs);
	fence_clear(s);
	if (s->refresh_timer)
		event_free(s->refresh_timer);
	if (s->requeue_timer)
		event_free(s->requeue_timer);
	if (s->sq_timer)
		event_free(s->sq_timer);
	free(s->cfg.address);
	free(s->cfg.prefix);
	free(s->cfg.username);
	free(s->cfg.password);
	free(s->cfg.master_name);
	free(s->cfg.sentinel_password);
	strv_free(s->cfg.sentinels);
	strv_free(s->cfg.cluster);
	free(s);
}

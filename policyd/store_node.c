/*
 * store_node.c - one connection to one Redis server (store_int.h)
 */
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
#include "store_int.h"

static void store_kick_requeue(struct store *s);
static void store_on_reply(redisAsyncContext *ac, void *rep, void *privdata);

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
void
node_went_down(struct node *n, const char *why)
{
	snprintf(n->down_why, sizeof(n->down_why), "%s", why);
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
void
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
void
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
int
node_can_send(const struct node *n)
{
	return n->ac != NULL && n->state == ST_READY;
}

/* node_setting_up - connecting or waiting for the setup replies */
int
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


/*
 * hiredis on libevent, with fewer system calls than its adapter: the
 * read event is persistent (the adapter's is re-added after each read:
 * an epoll_ctl each way), and commands leave at the end of the event-loop
 * turn that queued them (an active event; the adapter waits for the next
 * turn's writability and adds and deletes a write event each time). The
 * write event is only used while connecting and when the socket is full.
 */
struct node_ev {
	redisAsyncContext *ac;
	struct event *rev, *wev, *flush;
	int	flushing;		/* inside the end-of-turn write */
};

/* nev_read - the socket is readable */
static void
nev_read(evutil_socket_t fd, short what, void *arg)
{
	struct node_ev *e = arg;

	(void)fd;
	(void)what;
	redisAsyncHandleRead(e->ac);
}

/* nev_write - the socket is writable, or the turn's commands are queued */
static void
nev_write(evutil_socket_t fd, short what, void *arg)
{
	struct node_ev *e = arg;

	(void)fd;
	(void)what;
	e->flushing = 1;
	redisAsyncHandleWrite(e->ac);	/* may free the context and e */
}

static void
nev_add_read(void *arg)
{
	struct node_ev *e = arg;

	if (!event_pending(e->rev, EV_READ, NULL))
		event_add(e->rev, NULL);
}

static void
nev_del_read(void *arg)
{
	event_del(((struct node_ev *)arg)->rev);
}

static void
nev_add_write(void *arg)
{
	struct node_ev *e = arg;

	if (e->flushing || !(e->ac->c.flags & REDIS_CONNECTED)) {
		/* connecting, or what is left after a write: wait for room */
		e->flushing = 0;
		event_add(e->wev, NULL);
	} else if (!event_pending(e->wev, EV_WRITE, NULL)) {
		event_active(e->flush, EV_WRITE, 0);
	}
}

static void
nev_del_write(void *arg)
{
	struct node_ev *e = arg;

	e->flushing = 0;
	event_del(e->wev);
}

static void
nev_cleanup(void *arg)
{
	struct node_ev *e = arg;

	event_free(e->rev);
	event_free(e->wev);
	event_free(e->flush);
	free(e);
}

/* node_attach - the hooks above on base; 0 or -1 */
static int
node_attach(redisAsyncContext *ac, struct event_base *base)
{
	struct node_ev *e = calloc(1, sizeof(*e));
	int	fd = ac->c.fd;

	if (e == NULL)
		return -1;
	e->ac = ac;
	e->rev = event_new(base, fd, EV_READ | EV_PERSIST, nev_read, e);
	e->wev = event_new(base, fd, EV_WRITE, nev_write, e);
	e->flush = event_new(base, -1, 0, nev_write, e);
	if (e->rev == NULL || e->wev == NULL || e->flush == NULL) {
		if (e->rev)
			event_free(e->rev);
		if (e->wev)
			event_free(e->wev);
		if (e->flush)
			event_free(e->flush);
		free(e);
		return -1;
	}
	ac->ev.addRead = nev_add_read;
	ac->ev.delRead = nev_del_read;
	ac->ev.addWrite = nev_add_write;
	ac->ev.delWrite = nev_del_write;
	ac->ev.cleanup = nev_cleanup;
	ac->ev.data = e;
	nev_add_read(e);
	event_add(e->wev, NULL);	/* the connect's completion */
	return 0;
}

/* put_len - c, then v in decimal, then CRLF; the bytes written */
static size_t
put_len(char *out, char c, size_t v)
{
	char	tmp[24];
	size_t	n = 0, o = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	out[o++] = c;
	while (n > 0)
		out[o++] = tmp[--n];
	out[o++] = '\r';
	out[o++] = '\n';
	return o;
}

/*
 * node_send - send a command on a node; 0 or -1 (not sent). The command
 * is put in Redis's protocol here (what redisAsyncCommandArgv() does
 * with a format per argument, at a fraction of the cost).
 */
int
node_send(struct node *n, struct pending *p)
{
	char	stack[2048], *cmd = stack;
	size_t	need = 24, o;
	int	rc;

	if (!node_can_send(n))
		return -1;
	if (p->asking && redisAsyncCommand(n->ac, NULL, NULL, "ASKING") !=
	    REDIS_OK)
		return -1;
	for (int i = 0; i < p->argc; i++)
		need += p->argvlen[i] + 24;
	if (need > sizeof(stack) && (cmd = malloc(need)) == NULL)
		return -1;
	o = put_len(cmd, '*', (size_t)p->argc);
	for (int i = 0; i < p->argc; i++) {
		o += put_len(cmd + o, '$', p->argvlen[i]);
		memcpy(cmd + o, p->argv[i], p->argvlen[i]);
		o += p->argvlen[i];
		cmd[o++] = '\r';
		cmd[o++] = '\n';
	}
	rc = redisAsyncFormattedCommand(n->ac, store_on_reply, p, cmd, o);
	if (cmd != stack)
		free(cmd);
	if (rc != REDIS_OK)
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
	r->value = (const struct store_value *)reply;
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
void
node_ready_now(struct node *n)
{
	struct store *s = n->s;

	evtimer_del(n->conn_timer);
	n->state = ST_READY;
	s->epoch++;			/* what answers now may know less */
	n->backoff_ms = BACKOFF_MIN_MS;
	if (n->setup_fail_logged > 0)
		log_info("redis: %s: connection setup succeeded after %llu "
		    "failed attempt%s", naddr(n), n->setup_fail_logged,
		    n->setup_fail_logged == 1 ? "" : "s");
	n->setup_fail_logged = 0;
	n->setup_last[0] = '\0';
	n->down_why[0] = '\0';
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
	snprintf(n->down_why, sizeof(n->down_why), "%s", msg);
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
	n->s->stats.reconnects++;	/* lost, not dropped by us: counted too */
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
void
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
	if (node_attach(ac, s->base) != 0) {
		n->ac = NULL;
		n->state = ST_DOWN;
		evtimer_del(n->conn_timer);
		redisAsyncFree(ac);
		node_went_down(n, "out of memory");
		node_schedule_reconnect(n);
		return;
	}
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
struct node *
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
void
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

/*
 * store_sentinel.c - Redis Sentinel: discovery and failover (store_int.h)
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

static void sentinel_ask_next(struct store *s);

/* --------------------------------------------------------- sentinel -- */

/* fence_active - is a failover away from the fenced primary under way? */
static int
fence_active(const struct store *s)
{
	return s->fence_addr != NULL && now_ms() < s->fence_until;
}

/* fence_clear - the failover ended (or was aborted) */
void
fence_clear(struct store *s)
{
	free(s->fence_addr);
	free(s->candidate);
	s->fence_addr = s->candidate = NULL;
}


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
void
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
	snprintf(s->disc_why, sizeof(s->disc_why), "sentinel %s: %s",
	    s->cfg.sentinels[s->sq_idx], log_escape(esc, sizeof(esc), why,
	    strlen(why)));
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
			s->disc_why[0] = '\0';
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
void
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
void
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
void
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


/*
 * sentinel_on_sub_timer - reconnect a subscription, or give up on one
 * that did not confirm in time
 */
void
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
void
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

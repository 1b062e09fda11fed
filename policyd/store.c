/*
 * store.c - the state layer: the public contract (store.h) and routing
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

/* now_ms - monotonic clock in milliseconds */
double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ms_tv - milliseconds as a timeval */
struct timeval
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
double
deadline(const struct pending *p)
{
	return p->start_ms + p->s->cfg.timeout_ms;
}

/* naddr - a node's address for log lines */
const char *
naddr(const struct node *n)
{
	return n->addr ? n->addr : "(primary not known)";
}

/* store_finish - run the user callback once */
void
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
void
store_fail(struct pending *p, const char *why)
{
	struct store_reply r = { .ok = 0, .err = why };

	store_finish(p, &r);
}

/* store_fail_now - fail a command that was never sent */
void
store_fail_now(store_cb *cb, void *arg, const char *why)
{
	struct store_reply r = { .ok = 0, .err = why };

	cb(arg, &r);
}

/* parse_target - "host:port" into host and port (default 6379) */
void
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
void
make_addr(char *buf, size_t len, const char *host, size_t hl, long port)
{
	if (memchr(host, ':', hl) != NULL && host[0] != '[')
		snprintf(buf, len, "[%.*s]:%ld", (int)hl, host, port);
	else
		snprintf(buf, len, "%.*s:%ld", (int)hl, host, port);
}

/* async_connect - a hiredis context for "host:port" or "unix:/path" */
redisAsyncContext *
async_connect(const char *a)
{
	char	host[256];
	int	port;

	if (strncmp(a, "unix:", 5) == 0)
		return redisAsyncConnectUnix(a + 5);
	parse_target(a, host, sizeof(host), &port);
	return redisAsyncConnect(host, port);
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
	if (p->target >= 0)
		n = s->nodes[p->target];
	else if (p->asking)
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
void
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
	(void)batch_init(s);		/* without it, calls go alone */
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

/*
 * store_node_for - the node a command for slot goes to (standalone,
 * Sentinel: the one), or NULL when it cannot go anywhere now
 */
static struct node *
store_node_for(struct store *s, unsigned slot)
{
	struct node *n = NULL;

	if (s->mode != MODE_CLUSTER)
		n = s->nodes[0];
	else if (s->slots[slot] >= 0)
		n = s->nodes[s->slots[slot]];
	else
		cluster_want_refresh(s);
	if (n == NULL || (!node_can_send(n) && !node_setting_up(n)))
		return NULL;
	return n;
}

/*
 * pending_new - a command's record with room for argc arguments of need
 * bytes in all; *data is where their copies go
 */
static struct pending *
pending_new(struct store *s, int argc, size_t need, unsigned slot,
    store_cb *cb, void *arg, char **data)
{
	struct pending *p;
	size_t	arrays = (size_t)argc * (sizeof(size_t) + sizeof(char *));

	if ((p = malloc(sizeof(*p) + arrays + need + 1)) == NULL)
		return NULL;
	p->argc = argc;
	p->argvlen = p->w;
	p->argv = (const char **)(void *)(p->w + argc);
	*data = (char *)(p->argv + argc);
	p->s = s;
	p->node = NULL;
	p->cb = cb;
	p->arg = arg;
	p->done = p->retried = p->redirects = p->asking = 0;
	p->ask_node = -1;
	p->target = -1;
	p->slot = slot;
	return p;
}

/*
 * store_submit - the deadline starts; send p on n, or let it wait for
 * the node's setup (AUTH/SELECT/ROLE not answered yet: never ahead of
 * them, within the command's deadline)
 */
static inline void
store_submit(struct store *s, struct node *n, struct pending *p)
{
	p->start_ms = now_ms();
	s->stats.commands++;
	if (!node_can_send(n)) {
		store_requeue(s, p);
		return;
	}
	if (node_send(n, p) != 0) {
		store_cb *cb = p->cb;
		void	*arg = p->arg;

		free(p);
		store_fail_now(cb, arg, "redis command failed");
	}
}

/* store_script - run a compiled-in script (see store.h) */
void
store_script(struct store *s, enum store_script_id id, int nkeys, int nargs,
    const char *const *argv, const size_t *argvlen, store_cb *cb, void *arg)
{
	struct pending *p;
	struct node *n;
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
	if (s->mode == MODE_CLUSTER && nkeys > 0) {
		/* the slot of the first key (prefix included) */
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
	if ((n = store_node_for(s, slot)) == NULL) {
		store_fail_now(cb, arg, "redis not connected");
		return;
	}
	if (nkeys >= 0 && nkeys < 10) {		/* one script call's case */
		nk[0] = (char)('0' + nkeys);
		nk[1] = '\0';
	} else {
		snprintf(nk, sizeof(nk), "%d", nkeys);
	}
	for (i = 0; i < nargs; i++)
		need += argvlen[i] + (i < nkeys ? s->prefixlen : 0);
	if ((p = pending_new(s, argc, need + strlen(nk) + 1, slot, cb, arg,
	    &d)) == NULL) {
		store_fail_now(cb, arg, "out of memory");
		return;
	}
	p->id = id;
	p->argv[0] = "EVALSHA";
	p->argvlen[0] = 7;
	p->argv[1] = store_script_sha[id];
	p->argvlen[1] = 40;
	memcpy(d, nk, strlen(nk));
	p->argv[2] = d;
	p->argvlen[2] = strlen(nk);
	d += strlen(nk);
	/* nk (at most 15 bytes) lives with the arguments */
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
	store_submit(s, n, p);
}

/*
 * store_send - a command as given (store_command, store_command_on): to
 * node id, or (id < 0) by the slot of argv[1]
 */
static void
store_send(struct store *s, int id, int argc, const char *const *argv,
    const size_t *argvlen, store_cb *cb, void *arg)
{
	struct pending *p;
	struct node *n = NULL;
	size_t	need = 0;
	unsigned slot = 0;
	char	*d;

	if (argc < 1 || argc > MAX_ARGS) {
		store_fail_now(cb, arg, "bad number of command arguments");
		return;
	}
	if (s->freeing) {
		store_fail_now(cb, arg, "redis not connected");
		return;
	}
	if (s->mode == MODE_CLUSTER && argc > 1)
		slot = slot_of(argv[1], argvlen[1]);
	if (id < 0)
		n = store_node_for(s, slot);
	else if (id < s->nnodes && (node_can_send(s->nodes[id]) ||
	    node_setting_up(s->nodes[id])))
		n = s->nodes[id];
	if (n == NULL) {
		store_fail_now(cb, arg, "redis not connected");
		return;
	}
	for (int i = 0; i < argc; i++)
		need += argvlen[i];
	if ((p = pending_new(s, argc, need, slot, cb, arg, &d)) == NULL) {
		store_fail_now(cb, arg, "out of memory");
		return;
	}
	p->id = 0;
	p->retried = 1;			/* not a script: no NOSCRIPT retry */
	p->target = s->mode == MODE_CLUSTER ? id : -1;
	for (int i = 0; i < argc; i++) {
		memcpy(d, argv[i], argvlen[i]);
		p->argv[i] = d;
		p->argvlen[i] = argvlen[i];
		d += argvlen[i];
	}
	store_submit(s, n, p);
}

/* store_command - one command, routed by its key argv[1] (see store.h) */
void
store_command(struct store *s, int argc, const char *const *argv,
    const size_t *argvlen, store_cb *cb, void *arg)
{
	store_send(s, -1, argc, argv, argvlen, cb, arg);
}

/* store_command_on - one command to the primary id (store_primaries) */
void
store_command_on(struct store *s, int id, int argc, const char *const *argv,
    const size_t *argvlen, store_cb *cb, void *arg)
{
	if (id < 0) {
		store_fail_now(cb, arg, "no such redis node");
		return;
	}
	store_send(s, id, argc, argv, argvlen, cb, arg);
}

/*
 * store_primaries - the ids of the primaries (Cluster: the nodes owning
 * slots in the current map; otherwise the one), at most max; their number
 */
int
store_primaries(const struct store *s, int *ids, int max)
{
	int	n = 0;

	if (s->mode != MODE_CLUSTER) {
		if (max > 0 && s->nnodes > 0)
			ids[n++] = 0;
		return n;
	}
	for (int i = 0; i < s->nnodes && n < max; i++)
		if (s->nodes[i]->serves)
			ids[n++] = i;
	return n;
}

/* store_node_addr - a node's address for messages */
const char *
store_node_addr(const struct store *s, int id)
{
	if (id < 0 || id >= s->nnodes)
		return "(no such node)";
	return naddr(s->nodes[id]);
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

/* node_failure - why a node is down, or NULL (connecting, up, not tried) */
static const char *
node_failure(const struct node *n)
{
	if (n->ac != NULL || n->state == ST_READY || n->down_why[0] == '\0')
		return NULL;
	return n->down_why;
}

/* store_error - why commands cannot be sent now, or NULL (see store.h) */
const char *
store_error(struct store *s)
{
	const char *why;
	struct node *n;
	int	trying = 0;

	if (store_ready(s))
		return NULL;
	if (s->mode == MODE_SINGLE) {
		if ((why = node_failure(s->nodes[0])) == NULL)
			return NULL;
		snprintf(s->errbuf, sizeof(s->errbuf), "%s: %s",
		    naddr(s->nodes[0]), why);
		return s->errbuf;
	}
	if (s->mode == MODE_SENTINEL) {
		n = s->nodes[0];
		if ((why = node_failure(n)) == NULL)
			return NULL;
		if (n->addr == NULL)
			snprintf(s->errbuf, sizeof(s->errbuf), "no sentinel "
			    "named the primary of \"%s\" (%s)",
			    s->cfg.master_name, s->disc_why[0] ? s->disc_why :
			    why);
		else
			snprintf(s->errbuf, sizeof(s->errbuf), "primary %s of "
			    "\"%s\": %s", n->addr, s->cfg.master_name, why);
		return s->errbuf;
	}
	/* cluster: a node that owns slots is down; no node at all; no map */
	for (int i = 0; i < s->nnodes; i++) {
		n = s->nodes[i];
		trying |= n->ac != NULL;
		if (s->map_ok && n->serves && (why = node_failure(n)) != NULL) {
			snprintf(s->errbuf, sizeof(s->errbuf), "cluster node "
			    "%s: %s", naddr(n), why);
			return s->errbuf;
		}
	}
	if (s->map_ok)
		return NULL;
	if (s->disc_why[0] != '\0') {
		snprintf(s->errbuf, sizeof(s->errbuf), "cluster: %s",
		    s->disc_why);
		return s->errbuf;
	}
	if (s->map_seen && !s->refresh_inflight && !s->refresh_wanted) {
		snprintf(s->errbuf, sizeof(s->errbuf), "cluster: some slots "
		    "have no node (CLUSTER SLOTS)");
		return s->errbuf;
	}
	for (int i = 0; i < s->nnodes && !trying; i++) {
		if ((why = node_failure(s->nodes[i])) != NULL) {
			snprintf(s->errbuf, sizeof(s->errbuf), "cluster: no "
			    "node reachable (%s: %s)", naddr(s->nodes[i]),
			    why);
			return s->errbuf;
		}
	}
	return NULL;
}

/* store_get_stats - counters for metrics */
const struct store_stats *
store_get_stats(const struct store *s)
{
	return &s->stats;
}

/* store_epoch - changes whenever a connection is made (see store.h) */
unsigned long
store_epoch(const struct store *s)
{
	return s->epoch;
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
	batch_free(s);			/* fails the calls not sent yet */
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

/*
 * store_cluster.c - Redis Cluster: slot map and redirections (store_int.h)
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

/* ---------------------------------------------------------- cluster -- */

/* cluster_node - the node of an address, created (and connecting) if new */
struct node *
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
void
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
void
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
		if (reply != NULL) {
			log_warnx("redis: cluster: CLUSTER SLOTS from %s: %.200s",
			    naddr(from), reply->type == REDIS_REPLY_ERROR ?
			    reply->str : "no slots");
			snprintf(s->disc_why, sizeof(s->disc_why), "CLUSTER "
			    "SLOTS from %s: %.120s", naddr(from),
			    reply->type == REDIS_REPLY_ERROR ? reply->str :
			    "no slots");
		}
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
	s->map_seen = 1;
	s->disc_why[0] = '\0';
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
void
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

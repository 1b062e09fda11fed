/*++
 * NAME
 *	store_int.h - the state layer's own types, shared by its files
 * DESCRIPTION
 *	Only store*.c include this (and hiredis): the checks, the daemon and
 *	policyctl see store.h. The files split by concern:
 *
 *	store.c		the public contract (store.h) and routing: a command
 *			to its node, the requeue list, deadlines
 *	store_node.c	one connection to one Redis server: its FIFO of
 *			pending commands, deadline timer, setup (AUTH,
 *			SELECT, ROLE), reconnect with backoff, replies
 *	store_cluster.c	Redis Cluster: the slot map (CLUSTER SLOTS) and the
 *			MOVED/ASK/TRYAGAIN redirections
 *	store_sentinel.c Redis Sentinel: primary discovery, +switch-master
 *			subscriptions, the failover fence
 *	store_value.c	a reply's parts for store_command() callers
 *
 *	A pending command lives in exactly one place: the FIFO of the node
 *	it was sent on (hiredis holds it as privdata until the reply, or a
 *	NULL reply when the connection goes away), or the store's requeue
 *	list (cluster: waiting to be re-sent). Its user callback runs once
 *	(p->done); the structure is freed when it leaves the last place.
 *--*/
#ifndef POLICYD_STORE_INT_H
#define POLICYD_STORE_INT_H

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
#define MAX_ARGS	256
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
	int	target;			/* store_command_on(): node index */
	unsigned slot;
	enum store_script_id id;
	int	argc;
	const char **argv;		/* argc of them, in w[] */
	size_t	*argvlen;		/* w[0 .. argc) */
	size_t	w[];			/* the lengths, the pointers, then
					 * copies of the arguments */
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
	char	down_why[200];		/* why the last connect failed */
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
	unsigned long epoch;		/* connections made ready (store_epoch) */
	struct store_stats stats;
	size_t	prefixlen;
	/* cluster */
	int16_t	slots[SLOT_COUNT];	/* node index, -1 = unknown */
	int	map_ok;			/* every slot has a node */
	int	map_logged;
	int	map_seen;		/* a CLUSTER SLOTS answer was applied */
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
	char	disc_why[200];		/* last failed sentinel query or
					 * CLUSTER SLOTS; "" after a success */
	char	errbuf[512];		/* store_error()'s answer */
	/* store_script_batched() (store_batch.c) */
	struct batch *batch[SCRIPT_COUNT];	/* the calls of this loop turn */
	struct event *batch_ev;		/* sends them when it ends */
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

void cluster_log_redirects(struct store *s, int force);	/* store_cluster.c */
struct node *cluster_node(struct store *s, const char *addr);	/* store_cluster.c */
void cluster_on_refresh_timer(evutil_socket_t fd, short what, void *arg);	/* store_cluster.c */
void cluster_want_refresh(struct store *s);	/* store_cluster.c */
int node_can_send(const struct node *n);	/* store_node.c */
void node_close(struct node *n);	/* store_node.c */
void node_connect(struct node *n);	/* store_node.c */
void node_free(struct node *n);	/* store_node.c */
struct node *node_new(struct store *s, const char *addr);	/* store_node.c */
void node_ready_now(struct node *n);	/* store_node.c */
void node_schedule_reconnect(struct node *n);	/* store_node.c */
int node_send(struct node *n, struct pending *p);	/* store_node.c */
int node_setting_up(const struct node *n);	/* store_node.c */
void node_went_down(struct node *n, const char *why);	/* store_node.c */
void fence_clear(struct store *s);	/* store_sentinel.c */
void sentinel_ask(struct store *s);	/* store_sentinel.c */
void sentinel_close_query(struct store *s);	/* store_sentinel.c */
void sentinel_on_sq_timer(evutil_socket_t fd, short what, void *arg);	/* store_sentinel.c */
void sentinel_on_sub_timer(evutil_socket_t fd, short what, void *arg);	/* store_sentinel.c */
void sentinel_sub_close(struct sub *u);	/* store_sentinel.c */
void sentinel_subscribe(struct sub *u);	/* store_sentinel.c */
redisAsyncContext *async_connect(const char *a);	/* store.c */
double deadline(const struct pending *p);	/* store.c */
void make_addr(char *buf, size_t len, const char *host, size_t hl, long port);	/* store.c */
struct timeval ms_tv(double ms);	/* store.c */
const char *naddr(const struct node *n);	/* store.c */
double now_ms(void);	/* store.c */
void parse_target(const char *a, char *host, size_t hostlen, int *port);	/* store.c */
void store_fail(struct pending *p, const char *why);	/* store.c */
void store_finish(struct pending *p, struct store_reply *r);	/* store.c */
void store_requeue(struct store *s, struct pending *p);	/* store.c */
void store_fail_now(store_cb *cb, void *arg, const char *why);	/* store.c */
void batch_flush(struct store *s);	/* store_batch.c */
void batch_free(struct store *s);	/* store_batch.c */
int batch_init(struct store *s);	/* store_batch.c */

#endif

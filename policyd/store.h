/*++
 * NAME
 *	store.h - the state layer: the one owner of the Redis connection
 * DESCRIPTION
 *	store_new() connects asynchronously (hiredis on the libevent base)
 *	and keeps reconnecting with backoff (50 ms doubling to 1 s) for as
 *	long as it lives. AUTH (password, or ACL user and password) and
 *	SELECT are sent first on every new connection, and no command is
 *	sent on a connection before all of them (and ROLE with Sentinel)
 *	have succeeded: until then a command waits, within its deadline;
 *	when one fails (wrong password, database out of range, a replica)
 *	the failure is logged once per outage, the connection dropped and
 *	retried with backoff, and what waited fails (on_error).
 *
 *	store_script() runs one of the compiled-in Lua scripts by EVALSHA;
 *	a NOSCRIPT answer re-sends it once as EVAL (which loads it again).
 *	Keys are given without the configured prefix: the store adds it.
 *	A script answers an array of integers (or one integer).
 *
 *	Every command has a deadline (timeout_ms) counted from the
 *	store_script() call. Redis answers in order, so one libevent timer
 *	per connection watches the oldest command; when a command has been
 *	on a connection for timeout_ms the connection is dropped (a hung
 *	server is not waited on) and every command on it fails. While
 *	disconnected, commands fail at once (Cluster: a redirected command
 *	waits for its new node, within its deadline).
 * MODES
 *	Standalone (address): one connection.
 *
 *	Sentinel (sentinels, master_name): the sentinels are asked in turn,
 *	each over a short connection with a deadline, for the primary
 *	(SENTINEL get-master-addr-by-name); the primary is confirmed with
 *	ROLE; one more connection to a sentinel subscribes to
 *	+switch-master, and a switch moves the store to the new primary at
 *	once. Every reconnect, and a READONLY reply, asks the sentinels
 *	again.
 *
 *	Cluster (cluster seeds): CLUSTER SLOTS from any node gives the slot
 *	map; each command goes to the node owning the slot of its first
 *	key (all keys of one script share a hash tag), one connection per
 *	node. MOVED updates the slot, re-sends the command and schedules a
 *	rate-limited refresh of the map; ASK re-sends once with ASKING;
 *	TRYAGAIN re-sends after a short pause; all within the command's
 *	deadline and a bounded number of redirections.
 * CONTRACT
 *	The callback runs exactly once per store_script() call: with a
 *	reply, or with r->ok == 0 and r->err set (timeout, disconnect,
 *	not connected, error reply, shutdown) - also across redirections,
 *	failovers and node loss. It may run before
 *	store_script() returns (when not connected). Callbacks may call
 *	store_script() again.
 *--*/
#ifndef POLICYD_STORE_H
#define POLICYD_STORE_H

#include <stddef.h>

struct event_base;

/* in the sorted order of the files in policyd/scripts (gen-scripts.sh) */
enum store_script_id { SCRIPT_GREYLIST, SCRIPT_RATELIMIT, SCRIPT_SECRET,
	SCRIPT_COUNT };

#define STORE_MAX_INTS	16
#define STORE_PREFIX_MAX 64	/* bytes of redis.prefix (config.c checks) */

struct store_reply {
	int	ok;
	const char *err;		/* when !ok: static or reply text */
	int	n;			/* integers in v[] */
	long long v[STORE_MAX_INTS];
	double	latency_ms;
};

typedef void store_cb(void *arg, const struct store_reply *r);

struct store_config {
	char	*address;		/* "host:port", "[v6]:port", "unix:/path";
					 * with sentinels or cluster only a
					 * description (set by config.c) */
	char	*username;		/* ACL user, or NULL */
	char	*password;		/* or NULL */
	int	database;
	char	*prefix;		/* key prefix, e.g. "pd:" */
	int	timeout_ms;		/* per command */
	int	connect_timeout_ms;
	/* scale-out: at most one of sentinels and cluster (NULL-terminated) */
	char	**sentinels;		/* "host:port" of the sentinels */
	char	*master_name;		/* the name the sentinels monitor */
	char	*sentinel_password;	/* AUTH for the sentinels, or NULL */
	char	**cluster;		/* seed nodes "host:port" */
};

struct store_stats {
	unsigned long long commands, errors, timeouts, reconnects, noscript;
	unsigned long long moved, ask, tryagain;	/* cluster redirections */
	unsigned long long slot_refreshes;		/* CLUSTER SLOTS sent */
	unsigned long long primary_switches;		/* sentinel: new primary */
	double	latency_sum_ms;
};

struct store;

struct store *store_new(struct event_base *base, const struct store_config *c);
void	store_script(struct store *s, enum store_script_id id, int nkeys,
	    int nargs, const char *const *argv, const size_t *argvlen,
	    store_cb *cb, void *arg);
int	store_ready(const struct store *s);
const struct store_stats *store_get_stats(const struct store *s);
const char *store_prefix(const struct store *s);
void	store_free(struct store *s);

/* the embedded scripts (scripts.c, generated) */
extern const char *const store_script_text[SCRIPT_COUNT];
extern const char *const store_script_sha[SCRIPT_COUNT];

#endif

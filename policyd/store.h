/*++
 * NAME
 *	store.h - the state layer: the one owner of the Redis connection
 * DESCRIPTION
 *	store_new() connects asynchronously (on the libevent base)
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
 *	store_command() sends any one Redis command as given, for tools
 *	(policyctl): argv[0] is the command and argv[1] its key, a whole
 *	key name (the prefix included: store_prefix()); in Cluster it goes
 *	to the node owning argv[1]'s slot, and a command without a key
 *	(argc 1: TIME) to the node of slot 0. store_command_on() sends one
 *	to a given primary: store_primaries() lists them (Cluster: each
 *	node owning slots now; otherwise the one) for the commands that
 *	must run on each, such as SCAN. Deadlines, redirections and
 *	failover work as for scripts. Whatever Redis answers is in
 *	r->value, read with the store_value_*() accessors and valid only
 *	during the callback (r->v[] holds its integers, as for scripts).
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
 *
 *	store_ready() is true while commands can be sent (Cluster: every
 *	slot's node is connected). store_error() says why they cannot: the
 *	last failed connect, setup (AUTH, SELECT, ROLE), sentinel query or
 *	slot map, as "ADDRESS: reason"; NULL while ready, and while the
 *	first attempt is still under way. A tool waits for one of the two.
 * CONTRACT
 *	The callback runs exactly once per store_script() or
 *	store_command() call: with a reply, or with r->ok == 0 and r->err
 *	set (timeout, disconnect, not connected, error reply - then
 *	r->value holds it -, shutdown) - also across redirections,
 *	failovers and node loss. It may run before the call returns (when
 *	not connected). Callbacks may send commands again.
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

struct store_value;			/* a reply as Redis sent it (opaque) */

struct store_reply {
	int	ok;
	const char *err;		/* when !ok: static or reply text */
	int	n;			/* integers in v[] */
	long long v[STORE_MAX_INTS];
	double	latency_ms;
	const struct store_value *value; /* the reply, or NULL (none came) */
};

/* the types of a store_value */
enum store_vtype { STORE_V_NIL, STORE_V_INT, STORE_V_STR, STORE_V_ARRAY,
	STORE_V_ERR };

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
/*
 * store_script_batched - store_script() for a script that takes its calls
 * in batches: the calls made in one turn of the event loop go to Redis
 * as one EVALSHA (standalone and Sentinel: Redis's fixed cost of a
 * script call is paid once for all; in Cluster each call goes alone).
 * The script gets every call's keys, in order, as KEYS; ARGV[1] "B" and
 * per call two bytes, the number of its keys and of its other arguments;
 * then every call's other arguments in order. It answers one integer
 * for one call, an array of one integer per call for several; each
 * callback gets its own integer as r->v[0] (r->n 1), or the batch's
 * error. At most STORE_MAX_INTS calls share a batch (store_batch.c).
 */
void	store_script_batched(struct store *s, enum store_script_id id,
	    int nkeys, int nargs, const char *const *argv,
	    const size_t *argvlen, store_cb *cb, void *arg);
void	store_command(struct store *s, int argc, const char *const *argv,
	    const size_t *argvlen, store_cb *cb, void *arg);
int	store_primaries(const struct store *s, int *ids, int max);
void	store_command_on(struct store *s, int id, int argc,
	    const char *const *argv, const size_t *argvlen, store_cb *cb,
	    void *arg);
const char *store_node_addr(const struct store *s, int id);
int	store_ready(const struct store *s);
const char *store_error(struct store *s);
const struct store_stats *store_get_stats(const struct store *s);
const char *store_prefix(const struct store *s);
/*
 * store_epoch - a number that changes whenever a connection becomes
 * ready (reconnect, failover, a new cluster node): what a caller learned
 * about Redis's data before may not hold for the server answering now
 * (a restart from a snapshot, a replica that missed the last writes)
 */
unsigned long store_epoch(const struct store *s);
void	store_free(struct store *s);

/* a reply's parts (store_value.c): a string (also a status or an error
 * reply: NULL for other types) and its length; an integer (0 for other
 * types); an array's elements (0 for other types) */
enum store_vtype store_value_type(const struct store_value *v);
long long store_value_int(const struct store_value *v);
const char *store_value_str(const struct store_value *v, size_t *len);
size_t	store_value_count(const struct store_value *v);
const struct store_value *store_value_elem(const struct store_value *v,
	    size_t i);

/* the embedded scripts (scripts.c, generated) */
extern const char *const store_script_text[SCRIPT_COUNT];
extern const char *const store_script_sha[SCRIPT_COUNT];

#endif

/*++
 * NAME
 *	state.h - policyctl's view of policyd's Redis: the daemon's state layer
 * DESCRIPTION
 *	state_open() starts the daemon's own state layer (store.h) with the
 *	configuration's redis settings - standalone, Sentinel or Cluster,
 *	AUTH, SELECT, the prefix - on an event loop of policyctl's own, and
 *	waits until it is ready: every command then goes where the daemon's
 *	would. -t (ctl->timeout_ms) bounds that wait and each command;
 *	redis.connect_timeout_ms each connection attempt, as in the daemon.
 *
 *	state_script() runs one of the daemon's scripts (keys without the
 *	prefix: the store adds it) and gives the integers it answers.
 *	state_call() sends one command (whole key names: state_key()) and
 *	hands the reply to fn; state_start() runs a request the daemon's own
 *	code makes (ratelimit_secret_ask()); state_batch() sends n commands
 *	made by build(), at most STATE_WINDOW in flight, each reply to done()
 *	in the order Redis answers; state_each_key() is such a batch of one
 *	command (HGETALL, DEL) on each key of a list. state_scan() walks the
 *	keys matching a SCAN pattern on every primary (in Cluster each holds
 *	its own share) and hands each key to fn, once the batch it came in
 *	has been read; state_keys_add() keeps one in a list.
 * CONTRACT
 *	Each returns 0 (state_scan(): the number of keys), or -1 after a
 *	message naming Redis, the command and why (ctl_err()); state_open()
 *	returns CTL_OK or CTL_FAIL. fn, build and done run inside the event
 *	loop and may not call state_*() themselves; state_scan()'s fn may.
 *	Nothing waits longer than the state layer's deadlines: never a hang.
 *--*/
#ifndef POLICYD_CTL_STATE_H
#define POLICYD_CTL_STATE_H

#include <stddef.h>

#include "store.h"

struct config;
struct ctl;

#define STATE_WINDOW	64	/* state_batch(): commands in flight */

/* the state layer on policyctl's event loop */
struct ctlstate {
	struct event_base *base;
	struct store *store;
	char	where[300];		/* redis.address, or the description
					 * of the sentinels or cluster seeds */
	const char *prefix;
	size_t	prefixlen;
	int	timeout_ms;
};

/* key names, each NUL-terminated, with their lengths */
struct keylist {
	char  **v;
	size_t	*len;
	size_t	n, cap;
};

/* a reply, during the callback: 0, or -1 after a message */
typedef int state_fn(void *arg, const struct store_reply *r);
/* command i of a batch into argv/argvlen (at most 8): its argc */
typedef int state_build_fn(void *arg, size_t i, const char **argv,
	    size_t *argvlen);
typedef int state_done_fn(void *arg, size_t i, const struct store_reply *r);
/* a request started with the daemon's code */
typedef void state_start_fn(struct store *s, store_cb *cb, void *arg);

int	state_open(const struct ctl *ctl, const struct config *cfg,
	    struct ctlstate *st);
void	state_close(struct ctlstate *st);
int	state_script(struct ctlstate *st, enum store_script_id id, int nkeys,
	    int nargs, const char *const *argv, long long *v, int vmax,
	    int *n);
int	state_call(struct ctlstate *st, int argc, const char *const *argv,
	    const size_t *argvlen, state_fn *fn, void *arg);
int	state_start(struct ctlstate *st, const char *what,
	    state_start_fn *start, state_fn *fn, void *arg);
int	state_batch(struct ctlstate *st, const char *what, size_t n,
	    state_build_fn *build, state_done_fn *done, void *arg);
int	state_each_key(struct ctlstate *st, const char *cmd,
	    const struct keylist *kl, state_done_fn *done, void *arg);
long	state_scan(struct ctlstate *st, const char *pattern,
	    int (*fn)(void *arg, const char *key, size_t len), void *arg);
int	state_keys_add(struct keylist *kl, const char *key, size_t len);
void	state_keys_free(struct keylist *kl);
int	state_key(const struct ctlstate *st, const char *name, size_t len,
	    char *buf, size_t buflen, size_t *keylen);
int	state_pattern(const struct ctlstate *st, char *buf, size_t len,
	    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
int	state_glob_prefix(const struct ctlstate *st, char *buf,
	    size_t buflen);

#endif

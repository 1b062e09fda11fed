/*
 * state.c - policyctl's view of policyd's Redis: the daemon's state layer
 * on an event loop of its own (state.h)
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "config.h"
#include "log.h"
#include "store.h"

#include "ctl.h"
#include "state.h"

#define SCAN_COUNT	"1000"
#define MAX_PRIMARIES	1024

/* -------------------------------------------------------------- Redis -- */

/* one command waited for */
struct call {
	struct ctlstate *st;
	const char *what;		/* for messages: "SCAN", "script", ... */
	state_fn *fn;
	void	*arg;
	int	done, rc;
};

/* loop_once - one turn of the event loop (a command is always waiting) */
static void
loop_once(struct ctlstate *st)
{
	/*
	 * A command that has not called back keeps a deadline timer of the
	 * state layer armed, so the loop cannot run out of events.
	 */
	if (event_base_loop(st->base, EVLOOP_ONCE) < 0) {
		ctl_err("redis at %s: the event loop failed", st->where);
		exit(CTL_FAIL);
	}
}

/* reply_error - the message for a failed command */
static void
reply_error(struct ctlstate *st, const char *what, const struct store_reply *r)
{
	const char *text = r->err ? r->err : "failed", *why;
	size_t	len = strlen(text);
	char	esc[400];

	if (store_value_type(r->value) == STORE_V_ERR)
		text = store_value_str(r->value, &len);
	if (strcmp(text, "redis timeout") == 0) {
		ctl_err("redis at %s: %s: no answer within %d ms", st->where,
		    what, st->timeout_ms);
	} else if (strcmp(text, "redis not connected") == 0 &&
	    (why = store_error(st->store)) != NULL) {
		ctl_err("redis at %s: %s: not connected (%s)", st->where, what,
		    why);
	} else {
		ctl_err("redis at %s: %s: %s", st->where, what,
		    log_escape(esc, sizeof(esc), text, len));
	}
}

/* call_done - the state layer's callback of a waited-for command */
static void
call_done(void *arg, const struct store_reply *r)
{
	struct call *c = arg;

	c->done = 1;
	if (!r->ok) {
		reply_error(c->st, c->what, r);
		c->rc = -1;
	} else {
		c->rc = c->fn(c->arg, r);
	}
}

/* call_wait - run the loop until the command has called back */
static int
call_wait(struct call *c)
{
	while (!c->done)
		loop_once(c->st);
	return c->rc;
}

/* on_deadline - state_open()'s wait is over */
static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(int *)arg = 1;
}

/* state_open - the state layer, ready (see state.h) */
int
state_open(const struct ctl *ctl, const struct config *cfg,
    struct ctlstate *st)
{
	struct store_config sc = cfg->redis;
	struct timeval tv = { ctl->timeout_ms / 1000,
	    (ctl->timeout_ms % 1000) * 1000 };
	struct event *deadline;
	const char *why = NULL;
	size_t	wl;
	int	late = 0;

	memset(st, 0, sizeof(*st));
	st->prefix = sc.prefix ? sc.prefix : "";
	st->prefixlen = strlen(st->prefix);
	st->timeout_ms = ctl->timeout_ms;
	snprintf(st->where, sizeof(st->where), "%s", sc.address ?
	    sc.address : "127.0.0.1:6379");
	if (st->prefixlen > STORE_PREFIX_MAX) {
		/* the loader refuses it; the key buffers rely on it */
		ctl_err("redis.prefix: %zu bytes; at most %d", st->prefixlen,
		    STORE_PREFIX_MAX);
		return CTL_FAIL;
	}
	/* the state layer's own log lines would speak of retrying and
	 * on_error: only its errors are shown, then what went wrong */
	log_set_level(LOG_L_ERR);
	sc.timeout_ms = ctl->timeout_ms;
	if ((st->base = event_base_new()) == NULL ||
	    (st->store = store_new(st->base, &sc)) == NULL ||
	    (deadline = evtimer_new(st->base, on_deadline, &late)) == NULL) {
		ctl_err("redis at %s: out of memory", st->where);
		return CTL_FAIL;
	}
	evtimer_add(deadline, &tv);
	while (!store_ready(st->store) &&
	    (why = store_error(st->store)) == NULL && !late)
		loop_once(st);
	event_free(deadline);
	if (store_ready(st->store))
		return CTL_OK;
	wl = strlen(st->where);
	if (why == NULL)
		ctl_err("cannot connect to redis at %s: not ready within %d ms",
		    st->where, ctl->timeout_ms);
	else if (strncmp(why, st->where, wl) == 0 && why[wl] == ':')
		ctl_err("cannot connect to redis at %s", why);
	else
		ctl_err("cannot connect to redis at %s: %s", st->where, why);
	return CTL_FAIL;
}

/* state_close - stop the state layer and its loop */
void
state_close(struct ctlstate *st)
{
	if (st->store != NULL)
		store_free(st->store);
	if (st->base != NULL)
		event_base_free(st->base);
	st->store = NULL;
	st->base = NULL;
}

/* script_ints - a script's answer: its integers */
struct script_ints {
	long long *v;
	int	vmax, *n;
};

/*
 * script_done - copy the integers of a script's answer, from the reply
 * itself: r->v[] holds STORE_MAX_INTS of them, fewer than a ratelimit
 * show of RL_MAX_WIN windows answers
 */
static int
script_done(void *arg, const struct store_reply *r)
{
	struct script_ints *si = arg;
	size_t	n = store_value_count(r->value);

	*si->n = 0;
	if (store_value_type(r->value) == STORE_V_INT && si->vmax > 0)
		si->v[(*si->n)++] = store_value_int(r->value);
	for (size_t i = 0; i < n && *si->n < si->vmax; i++)
		si->v[(*si->n)++] = store_value_int(store_value_elem(r->value,
		    i));
	return 0;
}

/* state_script - one of the daemon's scripts; its integers in v[] */
int
state_script(struct ctlstate *st, enum store_script_id id, int nkeys,
    int nargs, const char *const *argv, long long *v, int vmax, int *n)
{
	struct script_ints si = { v, vmax, n };
	struct call c = { st, "script", script_done, &si, 0, 0 };
	size_t	argvlen[32];

	if (nargs > (int)(sizeof(argvlen) / sizeof(argvlen[0]))) {
		ctl_err("redis at %s: script: too many arguments", st->where);
		return -1;
	}
	for (int i = 0; i < nargs; i++)
		argvlen[i] = strlen(argv[i]);
	store_script(st->store, id, nkeys, nargs, argv, argvlen, call_done,
	    &c);
	return call_wait(&c);
}

/* state_call - one command; its reply to fn */
int
state_call(struct ctlstate *st, int argc, const char *const *argv,
    const size_t *argvlen, state_fn *fn, void *arg)
{
	struct call c = { st, argv[0], fn, arg, 0, 0 };

	store_command(st->store, argc, argv, argvlen, call_done, &c);
	return call_wait(&c);
}

/* state_start - a request made by the daemon's code; its reply to fn */
int
state_start(struct ctlstate *st, const char *what, state_start_fn *start,
    state_fn *fn, void *arg)
{
	struct call c = { st, what, fn, arg, 0, 0 };

	start(st->store, call_done, &c);
	return call_wait(&c);
}

/* ------------------------------------------------------------ batches -- */

struct batch;

/* one command of a batch in flight */
struct bslot {
	struct batch *b;
	size_t	i;
};

struct batch {
	struct ctlstate *st;
	const char *what;
	state_done_fn *done;
	void	*arg;
	int	rc;
	size_t	inflight;
	struct bslot slot[STATE_WINDOW];
	struct bslot *free[STATE_WINDOW];
	int	nfree;
};

/* batch_reply - one command of a batch called back */
static void
batch_reply(void *arg, const struct store_reply *r)
{
	struct bslot *sl = arg;
	struct batch *b = sl->b;

	b->inflight--;
	b->free[b->nfree++] = sl;
	if (b->rc != 0)
		return;
	if (!r->ok) {
		reply_error(b->st, b->what, r);
		b->rc = -1;
	} else if (b->done(b->arg, sl->i, r) != 0) {
		b->rc = -1;
	}
}

/* state_batch - n commands, a window of them in flight (see state.h) */
int
state_batch(struct ctlstate *st, const char *what, size_t n,
    state_build_fn *build, state_done_fn *done, void *arg)
{
	struct batch b;
	size_t	next = 0;

	memset(&b, 0, sizeof(b));
	b.st = st;
	b.what = what;
	b.done = done;
	b.arg = arg;
	for (int i = 0; i < STATE_WINDOW; i++) {
		b.slot[i].b = &b;
		b.free[b.nfree++] = &b.slot[i];
	}
	while ((b.rc == 0 && next < n) || b.inflight > 0) {
		while (b.rc == 0 && next < n && b.nfree > 0) {
			struct bslot *sl = b.free[--b.nfree];
			const char *argv[8];
			size_t	argvlen[8];
			int	argc;

			sl->i = next++;
			argc = build(arg, sl->i, argv, argvlen);
			b.inflight++;
			store_command(st->store, argc, argv, argvlen,
			    batch_reply, sl);
		}
		if (b.inflight > 0)
			loop_once(st);
	}
	return b.rc;
}

/* one command on each key of a list (state_each_key) */
struct eachkey {
	const char *cmd;
	const struct keylist *kl;
	state_done_fn *done;
	void	*arg;
};

/* eachkey_build - CMD key */
static int
eachkey_build(void *arg, size_t i, const char **argv, size_t *argvlen)
{
	struct eachkey *e = arg;

	argv[0] = e->cmd;
	argvlen[0] = strlen(e->cmd);
	argv[1] = e->kl->v[i];
	argvlen[1] = e->kl->len[i];
	return 2;
}

/* eachkey_done - the caller's done(), if any */
static int
eachkey_done(void *arg, size_t i, const struct store_reply *r)
{
	struct eachkey *e = arg;

	return e->done != NULL ? e->done(e->arg, i, r) : 0;
}

/* state_each_key - cmd on every key of kl, a window at a time */
int
state_each_key(struct ctlstate *st, const char *cmd, const struct keylist *kl,
    state_done_fn *done, void *arg)
{
	struct eachkey e = { cmd, kl, done, arg };

	return state_batch(st, cmd, kl->n, eachkey_build, eachkey_done, &e);
}

/* --------------------------------------------------------------- SCAN -- */

/* one SCAN step: the next cursor and a copy of the keys */
struct scanstep {
	const struct ctlstate *st;
	const char *what;		/* "SCAN", "SCAN on HOST:PORT" */
	char	cursor[32];
	struct keylist keys;
};

/* scan_done - check a SCAN reply's shape, keep the cursor and the keys */
static int
scan_done(void *arg, const struct store_reply *r)
{
	struct scanstep *ss = arg;
	const struct store_value *cur = store_value_elem(r->value, 0);
	const struct store_value *keys = store_value_elem(r->value, 1);
	const char *s;
	size_t	len;

	if (store_value_count(r->value) != 2 ||
	    (s = store_value_str(cur, &len)) == NULL ||
	    len >= sizeof(ss->cursor) ||
	    store_value_type(keys) != STORE_V_ARRAY) {
		ctl_err("redis at %s: %s: unexpected reply", ss->st->where,
		    ss->what);
		return -1;
	}
	memcpy(ss->cursor, s, len);
	ss->cursor[len] = '\0';
	for (size_t i = 0; i < store_value_count(keys); i++)
		if ((s = store_value_str(store_value_elem(keys, i), &len)) !=
		    NULL && state_keys_add(&ss->keys, s, len) < 0)
			return -1;
	return 0;
}

/* state_keys_add - a copy of key into the list; 0, or -1 after a message */
int
state_keys_add(struct keylist *kl, const char *key, size_t len)
{
	if (kl->n == kl->cap) {
		size_t	ncap = kl->cap ? kl->cap * 2 : 256;
		char  **nv = realloc(kl->v, ncap * sizeof(*nv));
		size_t	*nl;

		if (nv != NULL)
			kl->v = nv;
		nl = nv ? realloc(kl->len, ncap * sizeof(*nl)) : NULL;
		if (nl == NULL) {
			ctl_err("out of memory");
			return -1;
		}
		kl->len = nl;
		kl->cap = ncap;
	}
	if ((kl->v[kl->n] = malloc(len + 1)) == NULL) {
		ctl_err("out of memory");
		return -1;
	}
	memcpy(kl->v[kl->n], key, len);
	kl->v[kl->n][len] = '\0';
	kl->len[kl->n++] = len;
	return 0;
}

/* state_keys_free - release the list's keys (it can be used again) */
void
state_keys_free(struct keylist *kl)
{
	for (size_t i = 0; i < kl->n; i++)
		free(kl->v[i]);
	free(kl->v);
	free(kl->len);
	memset(kl, 0, sizeof(*kl));
}

/* scan_node - every key matching pattern on one primary; -1 or the count */
static long
scan_node(struct ctlstate *st, int id, const char *what, const char *pattern,
    int (*fn)(void *arg, const char *key, size_t len), void *arg)
{
	struct scanstep ss;
	long	n = 0;
	int	rc = 0;

	memset(&ss, 0, sizeof(ss));
	ss.st = st;
	ss.what = what;
	strcpy(ss.cursor, "0");
	do {
		/* the state layer copies the arguments: the reply may
		 * overwrite ss.cursor */
		const char *av[6] = { "SCAN", ss.cursor, "MATCH", pattern,
		    "COUNT", SCAN_COUNT };
		size_t	al[6];
		struct call c = { st, what, scan_done, &ss, 0, 0 };

		for (int i = 0; i < 6; i++)
			al[i] = strlen(av[i]);
		store_command_on(st->store, id, 6, av, al, call_done, &c);
		rc = call_wait(&c);
		for (size_t i = 0; i < ss.keys.n && rc == 0; i++, n++)
			rc = fn(arg, ss.keys.v[i], ss.keys.len[i]);
		state_keys_free(&ss.keys);
	} while (rc == 0 && strcmp(ss.cursor, "0") != 0);
	return rc == 0 ? n : -1;
}

/* state_scan - SCAN every primary (see state.h) */
long
state_scan(struct ctlstate *st, const char *pattern,
    int (*fn)(void *arg, const char *key, size_t len), void *arg)
{
	static int ids[MAX_PRIMARIES];
	char	what[320];
	long	total = 0, n;
	int	np = store_primaries(st->store, ids, MAX_PRIMARIES);

	for (int k = 0; k < np; k++) {
		if (np > 1)
			snprintf(what, sizeof(what), "SCAN on %s",
			    store_node_addr(st->store, ids[k]));
		else
			snprintf(what, sizeof(what), "SCAN");
		if ((n = scan_node(st, ids[k], what, pattern, fn, arg)) < 0)
			return -1;
		total += n;
	}
	return total;
}

/* ---------------------------------------------------------- key names -- */

/*
 * state_key - PREFIX + name (len bytes) into buf, its length in *keylen;
 * 0, or -1 after a message when it does not fit (never cut: a cut key
 * is another key)
 */
int
state_key(const struct ctlstate *st, const char *name, size_t len, char *buf,
    size_t buflen, size_t *keylen)
{
	if (st->prefixlen >= buflen || len >= buflen - st->prefixlen) {
		ctl_err("redis at %s: key too long (prefix of %zu bytes and "
		    "%zu more)", st->where, st->prefixlen, len);
		return -1;
	}
	memcpy(buf, st->prefix, st->prefixlen);
	memcpy(buf + st->prefixlen, name, len);
	buf[st->prefixlen + len] = '\0';
	*keylen = st->prefixlen + len;
	return 0;
}

/*
 * state_glob_prefix - the key prefix with Redis glob characters escaped,
 * into buf; 0, or -1 after a message when it does not fit
 */
int
state_glob_prefix(const struct ctlstate *st, char *buf, size_t buflen)
{
	size_t	o = 0, i;

	for (i = 0; i < st->prefixlen && o + 3 < buflen; i++) {
		if (strchr("*?[]\\^", st->prefix[i]) != NULL)
			buf[o++] = '\\';
		buf[o++] = st->prefix[i];
	}
	buf[o] = '\0';
	if (i < st->prefixlen) {
		ctl_err("redis at %s: key pattern too long (prefix of %zu "
		    "bytes)", st->where, st->prefixlen);
		return -1;
	}
	return 0;
}

/* state_pattern - printf into a SCAN pattern buffer; 0, or -1 after a
 * message when the prefix makes it too long */
int
state_pattern(const struct ctlstate *st, char *buf, size_t len,
    const char *fmt, ...)
{
	va_list ap;
	int	n;

	va_start(ap, fmt);
	n = vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= len) {
		ctl_err("redis at %s: key pattern too long (prefix of %zu "
		    "bytes)", st->where, st->prefixlen);
		return -1;
	}
	return 0;
}

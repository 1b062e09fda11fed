/*++
 * NAME
 *	store_batch.c - the script calls of one loop turn as one EVALSHA
 * DESCRIPTION
 *	store_script_batched() (store.h) keeps the calls made while the
 *	event loop runs its callbacks and sends them, when those are done
 *	(an event made active at the first call, which runs in the same
 *	turn, after the reads that made the calls), as one script call:
 *	Redis pays its fixed cost of a script call (argument tables,
 *	the Lua entry, the reply) and the script's own set-up (TIME) once
 *	for all of them instead of once each. A batch is sent early when it
 *	has STORE_MAX_INTS calls (one integer each comes back), would pass
 *	MAX_ARGS arguments or BATCH_DATA bytes. Each script has its batch
 *	(a turn of greylist and ratelimit decisions makes two, not one per
 *	change of script). In Cluster each call goes alone: the keys of two
 *	calls hash to different slots.
 *
 *	The script gets KEYS: every call's keys in order; ARGV[1]: "B", then
 *	per call the number of its keys and of its arguments (a byte each);
 *	then every call's arguments in order. For one call it answers one
 *	integer (or an error), which goes to the caller as store_script()
 *	would give it; for several an array of one integer per call, and
 *	each caller gets its own as r->v[0] (r->n 1). A batch that fails (no
 *	connection, timeout, an error reply, an answer of another shape)
 *	fails every call in it with the same r->err.
 *--*/
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "store_int.h"

#define BATCH_DATA	8192		/* bytes of keys and arguments */

struct batch {
	enum store_script_id id;
	int	n;			/* calls */
	int	nkeys;			/* their keys */
	store_cb *cb[STORE_MAX_INTS];
	void	*arg[STORE_MAX_INTS];
	unsigned char desc[1 + 2 * STORE_MAX_INTS];
	size_t	off[MAX_ARGS], len[MAX_ARGS];	/* keys first, then the rest */
	int	isarg[MAX_ARGS];
	int	nparts;
	size_t	used;
	char	data[BATCH_DATA];
};

/*
 * batch_alone - one call in the batch form, answered to its own cb. Its
 * counts were checked by store_script_batched (nargs + 4 <= MAX_ARGS).
 */
static void
batch_alone(struct store *s, enum store_script_id id, int nkeys, int nargs,
    const char *const *argv, const size_t *argvlen, store_cb *cb, void *arg)
{
	const char *v[MAX_ARGS];
	size_t	vl[MAX_ARGS];
	unsigned char desc[3];

	desc[0] = 'B';
	desc[1] = (unsigned char)nkeys;
	desc[2] = (unsigned char)(nargs - nkeys);
	for (int i = 0; i < nkeys; i++) {
		v[i] = argv[i];
		vl[i] = argvlen[i];
	}
	v[nkeys] = (const char *)desc;
	vl[nkeys] = 3;
	for (int i = nkeys; i < nargs; i++) {
		v[i + 1] = argv[i];
		vl[i + 1] = argvlen[i];
	}
	store_script(s, id, nkeys, nargs + 1, v, vl, cb, arg);
}

/* batch_done - a batch's answer, one integer to each of its callers */
static void
batch_done(void *arg, const struct store_reply *r)
{
	struct batch *b = arg;
	const char *bad = NULL;

	if (r->ok && (store_value_type(r->value) != STORE_V_ARRAY ||
	    store_value_count(r->value) != (size_t)b->n || r->n != b->n))
		bad = "unexpected answer to a batch of script calls";
	for (int i = 0; i < b->n; i++) {
		struct store_reply one;

		memset(&one, 0, sizeof(one));
		one.latency_ms = r->latency_ms;
		one.value = r->value;
		if (!r->ok || bad != NULL) {
			one.err = r->ok ? bad : r->err;
		} else if (store_value_type(store_value_elem(r->value,
		    (size_t)i)) != STORE_V_INT) {
			one.err = "unexpected answer to a batch of script calls";
		} else {
			one.ok = 1;
			one.n = 1;
			one.v[0] = r->v[i];
		}
		b->cb[i](b->arg[i], &one);
	}
	free(b);
}

/* batch_send - send the open batch of script id (see above) */
static void
batch_send(struct store *s, enum store_script_id id)
{
	struct batch *b = s->batch[id];
	const char *v[MAX_ARGS];
	size_t	vl[MAX_ARGS];
	int	k = 0;

	if (b == NULL)
		return;
	s->batch[id] = NULL;
	if (b->n == 1) {
		/* as it came: the parts are keys, then the others */
		for (int i = 0; i < b->nparts; i++) {
			v[i] = b->data + b->off[i];
			vl[i] = b->len[i];
		}
		batch_alone(s, b->id, b->nkeys, b->nparts, v, vl, b->cb[0],
		    b->arg[0]);
		free(b);
		return;
	}
	for (int i = 0; i < b->nparts; i++)
		if (!b->isarg[i]) {
			v[k] = b->data + b->off[i];
			vl[k++] = b->len[i];
		}
	v[k] = (const char *)b->desc;
	vl[k++] = 1 + 2 * (size_t)b->n;
	for (int i = 0; i < b->nparts; i++)
		if (b->isarg[i]) {
			v[k] = b->data + b->off[i];
			vl[k++] = b->len[i];
		}
	store_script(s, b->id, b->nkeys, k, v, vl, batch_done, b);
}

/* batch_flush - send every open batch */
void
batch_flush(struct store *s)
{
	for (int id = 0; id < SCRIPT_COUNT; id++)
		batch_send(s, (enum store_script_id)id);
}

/* batch_on_turn - the loop turn's callbacks are done: send the batches */
static void
batch_on_turn(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	batch_flush(arg);
}

/* batch_init - the store's flush event; -1 when it cannot be made */
int
batch_init(struct store *s)
{
	for (int id = 0; id < SCRIPT_COUNT; id++)
		s->batch[id] = NULL;
	s->batch_ev = event_new(s->base, -1, 0, batch_on_turn, s);
	return s->batch_ev != NULL ? 0 : -1;
}

/* batch_free - fail what was not sent (shutdown, reload) */
void
batch_free(struct store *s)
{
	if (s->batch_ev != NULL)
		event_free(s->batch_ev);
	s->batch_ev = NULL;
	for (int id = 0; id < SCRIPT_COUNT; id++) {
		struct batch *b = s->batch[id];

		s->batch[id] = NULL;
		for (int i = 0; b != NULL && i < b->n; i++)
			store_fail_now(b->cb[i], b->arg[i], "redis shutdown");
		free(b);
	}
}

/* store_script_batched - see store.h */
void
store_script_batched(struct store *s, enum store_script_id id, int nkeys,
    int nargs, const char *const *argv, const size_t *argvlen,
    store_cb *cb, void *arg)
{
	struct batch *b;
	size_t	need = 0;

	for (int i = 0; i < nargs; i++)
		need += argvlen[i];
	if (nkeys < 0 || nkeys > nargs || nkeys > 255 ||
	    nargs - nkeys > 255 || nargs + 4 > MAX_ARGS) {
		store_fail_now(cb, arg, "too many script arguments");
		return;
	}
	if (s->mode == MODE_CLUSTER || s->freeing || s->batch_ev == NULL ||
	    need > BATCH_DATA) {
		batch_alone(s, id, nkeys, nargs, argv, argvlen, cb, arg);
		return;
	}
	b = s->batch[id];
	if (b != NULL && (b->n == STORE_MAX_INTS ||
	    b->used + need > BATCH_DATA ||
	    4 + b->nparts + nargs > MAX_ARGS)) {
		batch_send(s, id);
		b = NULL;
	}
	if (b == NULL) {
		if ((b = malloc(sizeof(*b))) == NULL) {
			store_fail_now(cb, arg, "out of memory");
			return;
		}
		b->id = id;
		b->n = b->nkeys = b->nparts = 0;
		b->used = 0;
		b->desc[0] = 'B';
		s->batch[id] = b;
		/* once a turn, whichever batch opens first */
		event_active(s->batch_ev, EV_TIMEOUT, 0);
	}
	b->cb[b->n] = cb;
	b->arg[b->n] = arg;
	b->desc[1 + 2 * b->n] = (unsigned char)nkeys;
	b->desc[2 + 2 * b->n] = (unsigned char)(nargs - nkeys);
	b->n++;
	b->nkeys += nkeys;
	for (int i = 0; i < nargs; i++) {
		memcpy(b->data + b->used, argv[i], argvlen[i]);
		b->off[b->nparts] = b->used;
		b->len[b->nparts] = argvlen[i];
		b->isarg[b->nparts++] = i >= nkeys;
		b->used += argvlen[i];
	}
}

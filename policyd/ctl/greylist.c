/*
 * greylist.c - policyctl greylist list [PATTERN] | delete NETWORK: the
 * triplets and auto-whitelist counters of client networks, found where
 * the check keeps them (greylist.h: buckets g{TT}BB, fields named by the
 * client's N) with SCAN on every primary, read with HGETALL and deleted
 * field by field with HDEL; the times are Redis's (TIME), in
 * scripts/greylist.lua's terms. The rule (the first greylist rule, or
 * -r RULE) gives the network prefixes, retry_window and max_age.
 */
#include <fnmatch.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libconfig.h>

#include "greylist.h"
#include "store.h"

#include "conf.h"
#include "ctl.h"
#include "glnet.h"
#include "state.h"

#define GL_MAX_ENTRIES	(16 * 1024 * 1024)	/* listed at most */

/* one listed entry: a triplet or a client's auto-whitelist counter */
struct glentry {
	char	kind;			/* 't' triplet, 'a' counter */
	char	text[80];		/* the network for a person */
	unsigned char name[GL_NAME_MAX];	/* the client's N (greylist.h) */
	size_t	namelen;
	uint8_t	hash[4];		/* triplet hash */
	size_t	bucket;			/* index into gllist.keys */
	unsigned char field[GL_NAME_MAX + 4];
	size_t	fieldlen;
	long long value, left;		/* raw value; seconds until it expires */
};

struct gllist {
	struct glentry *v;
	size_t	n, cap;
	struct keylist keys;		/* buckets found by SCAN */
	const struct ctlstate *st;
	int	v4prefix, v6prefix;
	long long window, maxage, now;	/* now: Redis TIME - GL_EPOCH */
	const char *glob;		/* fnmatch() on the network text */
	const struct gl_key *only;	/* one client's entries */
};

#define GL_EPOCH	1735689600LL	/* greylist.lua's epoch */
#define GL_B32		4294967296LL

/* gl_key_add - SCAN callback: keep a bucket key g{TT}BB */
static int
gl_key_add(void *arg, const char *key, size_t len)
{
	struct gllist *l = arg;
	const char *p = key + l->st->prefixlen;

	if (len != l->st->prefixlen + 7 || p[0] != 'g' || p[1] != '{' ||
	    p[4] != '}')
		return 0;		/* not a bucket (an old-format key) */
	return state_keys_add(&l->keys, key, len);
}

/* gl_entry - one field of a bucket into the list (when it is alive) */
static int
gl_entry(struct gllist *l, size_t bucket, const char *f, size_t flen,
    const char *val)
{
	struct glentry *e;
	char	*endp;
	long long v = strtoll(val, &endp, 10), t;
	int	counter = flen > 0 && f[0] == 'a';

	if (*endp != '\0' || flen < 2 || flen > sizeof(e->field))
		return 0;
	if (!counter && flen < 6)
		return 0;
	if (l->only != NULL && (counter ? flen - 1 != l->only->namelen ||
	    memcmp(f + 1, l->only->name, l->only->namelen) != 0 :
	    flen - 4 != l->only->namelen ||
	    memcmp(f, l->only->name, l->only->namelen) != 0))
		return 0;
	if (l->n >= GL_MAX_ENTRIES) {
		ctl_err("more than %d greylist entries: give a NETWORK",
		    GL_MAX_ENTRIES);
		return -1;
	}
	if (l->n == l->cap) {
		size_t	ncap = l->cap ? l->cap * 2 : 256;
		struct glentry *nv = realloc(l->v, ncap * sizeof(*nv));

		if (nv == NULL) {
			ctl_err("out of memory");
			return -1;
		}
		l->v = nv;
		l->cap = ncap;
	}
	e = &l->v[l->n];
	memset(e, 0, sizeof(*e));
	e->kind = counter ? 'a' : 't';
	e->bucket = bucket;
	memcpy(e->field, f, flen);
	e->fieldlen = flen;
	e->value = v;
	if (counter) {
		e->namelen = flen - 1;
		memcpy(e->name, f + 1, e->namelen);
		t = v % GL_B32;
		e->left = t + l->maxage - l->now;
	} else {
		e->namelen = flen - 4;
		memcpy(e->name, f, e->namelen);
		memcpy(e->hash, f + e->namelen, 4);
		t = v / 2;
		e->left = t + (v % 2 ? l->maxage : l->window) - l->now;
	}
	if (e->left <= 0)
		return 0;		/* dead: the script removes it later */
	gl_name_text(e->name, e->namelen, l->v4prefix, l->v6prefix, e->text,
	    sizeof(e->text));
	if (l->glob != NULL && fnmatch(l->glob, e->text, 0) != 0)
		return 0;
	l->n++;
	return 0;
}

/* gl_time_of - TIME's seconds in greylist.lua's terms into l->now */
static int
gl_time_of(void *arg, const struct store_reply *r)
{
	struct gllist *l = arg;
	const char *sec = store_value_str(store_value_elem(r->value, 0), NULL);

	if (sec == NULL) {
		ctl_err("redis at %s: unexpected answer to TIME", l->st->where);
		return -1;
	}
	l->now = strtoll(sec, NULL, 10) - GL_EPOCH;
	return 0;
}

/* gl_bucket - bucket i's fields and values into l */
static int
gl_bucket(void *arg, size_t i, const struct store_reply *r)
{
	struct gllist *l = arg;
	size_t	n = store_value_count(r->value);

	for (size_t j = 0; j + 1 < n; j += 2) {
		const char *f, *val;
		size_t	flen;

		f = store_value_str(store_value_elem(r->value, j), &flen);
		val = store_value_str(store_value_elem(r->value, j + 1), NULL);
		if (f != NULL && val != NULL &&
		    gl_entry(l, i, f, flen, val) < 0)
			return -1;
	}
	return 0;
}

/*
 * gl_collect - every bucket matching pattern (on every primary), read
 * with HGETALL a window at a time; alive entries (of l->only, or
 * matching l->glob) into l
 */
static int
gl_collect(struct ctlstate *st, struct gllist *l, const char *pattern)
{
	const char *av[1] = { "TIME" };
	size_t	al[1] = { 4 };

	if (state_call(st, 1, av, al, gl_time_of, l) < 0 ||
	    state_scan(st, pattern, gl_key_add, l) < 0)
		return -1;
	return state_each_key(st, "HGETALL", &l->keys, gl_bucket, l);
}

/* gl_free - release the list */
static void
gl_free(struct gllist *l)
{
	state_keys_free(&l->keys);
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

/* gl_cmp - by network text, triplets before the counter, then time */
static int
gl_cmp(const void *a, const void *b)
{
	const struct glentry *x = a, *y = b;
	int	c = strcmp(x->text, y->text);

	if (c != 0)
		return c;
	if (x->kind != y->kind)
		return x->kind == 't' ? -1 : 1;
	if (x->value != y->value)
		return x->value < y->value ? -1 : 1;
	return memcmp(x->hash, y->hash, 4);
}

/* gl_pattern - SCAN pattern of every bucket, or of one tag's buckets */
static int
gl_pattern(const struct ctlstate *st, const struct gl_key *only, char *pat,
    size_t len)
{
	char	pre[700];

	if (state_glob_prefix(st, pre, sizeof(pre)) != 0)
		return -1;
	if (only != NULL)
		return state_pattern(st, pat, len, "%sg\\{%02x\\}*", pre,
		    only->tag);
	return state_pattern(st, pat, len, "%sg\\{*", pre);
}

/* gl_list - print the entries */
static int
gl_list(struct ctlstate *st, struct gllist *l)
{
	char	pat[1024], seen[32];
	size_t	ntrip = 0, nawl = 0;

	if (gl_pattern(st, l->only, pat, sizeof(pat)) < 0 ||
	    gl_collect(st, l, pat) < 0)
		return CTL_FAIL;
	if (l->n > 0)
		qsort(l->v, l->n, sizeof(*l->v), gl_cmp);
	for (size_t i = 0; i < l->n; i++) {
		const struct glentry *e = &l->v[i];

		if (e->kind == 'a') {
			long long n = e->value / GL_B32;

			if (nawl++ == 0 && ntrip > 0)
				putchar('\n');
			printf("%-20s auto-whitelist: %lld successful "
			    "retr%s, expires in %lld s\n", e->text, n,
			    n == 1 ? "y" : "ies", e->left);
			continue;
		}
		if (ntrip++ == 0)
			printf("%-20s %-8s %-20s %-7s %s\n", "NETWORK",
			    "TRIPLET", "SEEN (UTC)", "STATE", "EXPIRES IN");
		{
			time_t	t = (time_t)(e->value / 2 + GL_EPOCH);
			struct tm tm;

			gmtime_r(&t, &tm);
			strftime(seen, sizeof(seen), "%Y-%m-%d %H:%M:%S", &tm);
		}
		printf("%-20s %02x%02x%02x%02x %-20s %-7s %lld s\n", e->text,
		    e->hash[0], e->hash[1], e->hash[2], e->hash[3], seen,
		    e->value % 2 ? "passed" : "waiting", e->left);
	}
	printf("%zu triplet%s, %zu auto-whitelist counter%s (a triplet's "
	    "sender and recipient are stored only as a hash and cannot be "
	    "shown; SEEN is the first sighting while waiting, the last once "
	    "passed)\n", ntrip, ntrip == 1 ? "" : "s", nawl,
	    nawl == 1 ? "" : "s");
	return CTL_OK;
}

/* the entries deleted by gl_delete(), and the old-format keys */
struct gldel {
	struct gllist *l;
	long long trip, counter;
	struct keylist old;		/* old-format keys found by SCAN */
};

/* gl_hdel - command i of gl_delete(): HDEL of entry i's field */
static int
gl_hdel(void *arg, size_t i, const char **argv, size_t *argvlen)
{
	struct gldel *d = arg;
	const struct glentry *e = &d->l->v[i];

	argv[0] = "HDEL";
	argvlen[0] = 4;
	argv[1] = d->l->keys.v[e->bucket];
	argvlen[1] = d->l->keys.len[e->bucket];
	argv[2] = (const char *)e->field;
	argvlen[2] = e->fieldlen;
	return 3;
}

/* gl_hdel_done - count what HDEL removed */
static int
gl_hdel_done(void *arg, size_t i, const struct store_reply *r)
{
	struct gldel *d = arg;

	if (store_value_int(r->value) > 0) {
		if (d->l->v[i].kind == 'a')
			d->counter++;
		else
			d->trip++;
	}
	return 0;
}

/* gl_old_add - SCAN callback: an old-format key (g{NET}HASH8 or a{NET}) */
static int
gl_old_add(void *arg, const char *key, size_t len)
{
	return state_keys_add(&((struct gldel *)arg)->old, key, len);
}

/* gl_old - find and delete the client's keys of the old format */
static int
gl_old(struct ctlstate *st, struct gldel *d, const char *net)
{
	char	pat[1024], pre[700];
	int	rc;

	if (state_glob_prefix(st, pre, sizeof(pre)) != 0 ||
	    state_pattern(st, pat, sizeof(pat), "%sg\\{%s\\}*", pre,
	    net) != 0 || state_scan(st, pat, gl_old_add, d) < 0 ||
	    state_pattern(st, pat, sizeof(pat), "%sa\\{%s\\}", pre,
	    net) != 0 || state_scan(st, pat, gl_old_add, d) < 0)
		rc = -1;
	else
		rc = state_each_key(st, "DEL", &d->old, NULL, NULL);
	state_keys_free(&d->old);
	return rc;
}

/* gl_delete - every entry of the client and its counter */
static int
gl_delete(struct ctlstate *st, struct gllist *l, const char *net,
    const char *text)
{
	struct gldel d = { l, 0, 0, { NULL, NULL, 0, 0 } };
	char	pat[1024];

	if (gl_pattern(st, l->only, pat, sizeof(pat)) < 0 ||
	    gl_collect(st, l, pat) < 0 ||
	    state_batch(st, "HDEL", l->n, gl_hdel, gl_hdel_done, &d) < 0)
		return CTL_FAIL;
	/* entries of the old format (one key each), until they expire */
	if (net != NULL && net[0] != '\0' && gl_old(st, &d, net) < 0)
		return CTL_FAIL;
	if (d.trip == 0 && d.counter == 0)
		printf("%s: no greylist entries\n", text);
	else
		printf("%s: deleted %lld triplet%s%s; its next mail is "
		    "greylisted as new\n", text, d.trip, d.trip == 1 ? "" :
		    "s", d.counter ? " and the auto-whitelist counter" : "");
	return CTL_OK;
}

/*
 * cmd_greylist - "list [PATTERN]" and "delete NETWORK" on the keys of the
 * first greylist rule (or -r RULE): its ipv4_prefix/ipv6_prefix make NET.
 */
int
cmd_greylist(const struct ctl *ctl, int argc, char **argv)
{
	struct ctlconf cc;
	struct ctlstate st;
	struct gllist l;
	struct gl_key only;
	const config_setting_t *set = NULL;
	char	net[72] = "", text[80];
	int	status, list;

	if (argc < 1 || !((strcmp(argv[0], "list") == 0 && argc <= 2) ||
	    (strcmp(argv[0], "delete") == 0 && argc == 2))) {
		ctl_err("usage: policyctl [-c CONFIG] [-r RULE] greylist "
		    "list [PATTERN] | delete NETWORK");
		return CTL_USAGE;
	}
	list = argv[0][0] == 'l';
	if ((status = conf_open(ctl, &cc)) != 0) {
		conf_close(&cc);
		return status;
	}
	if (conf_rule(&cc, ctl->rule, "greylist", &set) == NULL) {
		conf_close(&cc);
		return CTL_USAGE;
	}
	memset(&l, 0, sizeof(l));
	l.v4prefix = conf_int(set, "ipv4_prefix", 24);
	l.v6prefix = conf_int(set, "ipv6_prefix", 64);
	l.window = conf_int(set, "retry_window", 2 * 86400);
	l.maxage = conf_int(set, "max_age", 35 * 86400);
	if (argc == 2 && list && strpbrk(argv[1], "*?[") != NULL) {
		l.glob = argv[1];
	} else if (argc == 2) {
		if ((status = gl_target(argv[1], l.v4prefix, l.v6prefix, &only,
		    text, sizeof(text))) != 0) {
			conf_close(&cc);
			return status;
		}
		l.only = &only;
		gl_client_hex(argv[1], l.v4prefix, l.v6prefix, net,
		    sizeof(net));
	}
	if ((status = state_open(ctl, cc.cfg, &st)) == 0) {
		l.st = &st;
		status = list ? gl_list(&st, &l) :
		    gl_delete(&st, &l, net, text);
	}
	gl_free(&l);
	state_close(&st);
	conf_close(&cc);
	return status;
}

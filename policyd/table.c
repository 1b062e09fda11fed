/*++
 * NAME
 *	table.c - lookup tables: file maps, PostgreSQL, MariaDB (see table.h)
 * DESCRIPTION
 *	An SQL table is its parsed file (sqlcf.h), a pool of connections
 *	(sqldrv.h), a FIFO of lookups waiting for a connection, a cache and
 *	counters. Every event handler holds a reference on the table while
 *	it runs: a lookup's callback may end the last evaluation of an old
 *	configuration, which drops the table's last reference.
 *--*/
#include <sys/queue.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/event.h>

#include "addr.h"
#include "log.h"
#include "mapkeys.h"
#include "maps.h"
#include "resolver.h"
#include "sqldrv.h"
#include "stats.h"
#include "table.h"

#define TABLE_QUEUE_MAX		1024	/* lookups waiting per table */
#define TABLE_BACKOFF_MIN_MS	100
#define TABLE_BACKOFF_MAX_MS	5000
#define TABLE_QERR_LOG_S	10	/* one query-error line per 10 s */
#define TABLE_ADDRS		8	/* addresses tried per host name */
#define TABLE_HOSTS_FILE	"/etc/hosts"

enum tkind { TK_FILE, TK_SQL };
enum pstate { PC_CLOSED, PC_CONNECTING, PC_IDLE, PC_BUSY, PC_WAIT };

struct table;
struct lookup;
struct naming;

struct pconn {
	struct table *t;
	struct sqlc *c;
	enum pstate state;
	int	host;			/* index into cf.hosts */
	int	worked;			/* answered a query since connecting */
	struct lookup *cur;
	struct event *timer;		/* connect deadline or back-off */
	/* a host name, resolved by policyd's resolver (table_set_resolver) */
	struct naming *naming;		/* a query out, or NULL */
	char	addr[TABLE_ADDRS][INET6_ADDRSTRLEN];
	int	naddr, iaddr;		/* addresses, the one tried */
};

/* a DNS query for a pconn; orphaned (pc NULL) when the pconn closes */
struct naming {
	struct pconn *pc;
	int	type;			/* DNS_T_A, then DNS_T_AAAA */
};

struct lookup {
	TAILQ_ENTRY(lookup) q;
	struct table *t;
	table_cb *cb;
	void	*arg;
	struct event *deadline;
	struct pconn *on;
	int	queued, retried;
	char	key[];
};

struct centry {
	struct centry *hnext;
	TAILQ_ENTRY(centry) age;
	uint64_t h;
	double	expires;
	char	*value;			/* NULL: not found */
	char	key[];
};

TAILQ_HEAD(lookup_q, lookup);
TAILQ_HEAD(centry_q, centry);

struct table {
	struct table *next;		/* the registry */
	int	refs;
	enum tkind kind;
	char	*name;			/* "pgsql:/path" */
	char	*text;			/* the file, to recognise it again */
	struct map *map;		/* TK_FILE */
	struct sqlcf cf;		/* TK_SQL */
	const struct sqlc_driver *drv;
	struct pconn pool[SQLCF_POOL_MAX];
	int	npool;
	struct lookup_q queue;
	int	nqueue;
	/* cache */
	struct centry **buckets;
	size_t	nbuckets, ncache;
	struct centry_q ages;
	/* health */
	int	down;
	time_t	down_since;
	int	backoff_ms;
	time_t	qerr_logged;
	/* counters */
	unsigned long long lookups, hits, queries, errors, timeouts;
	unsigned long long found, notfound, reconnects;
};

static struct table *tables;
static struct event_base *tbase;
static struct resolver *tres;		/* NULL: the drivers resolve names */

/* now_s - monotonic seconds */
static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* hash - FNV-1a */
static uint64_t
hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
	return h;
}

/* utf8_ok - is s well-formed UTF-8? */
static int
utf8_ok(const unsigned char *s)
{
	while (*s) {
		int	n;

		if (*s < 0x80) {
			s++;
			continue;
		}
		if (*s >= 0xc2 && *s <= 0xdf)
			n = 1;
		else if (*s >= 0xe0 && *s <= 0xef)
			n = 2;
		else if (*s >= 0xf0 && *s <= 0xf4)
			n = 3;
		else
			return 0;
		if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f)
		    || (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 &&
		    s[1] > 0x8f))
			return 0;
		for (int i = 1; i <= n; i++)
			if ((s[i] & 0xc0) != 0x80)
				return 0;
		s += n + 1;
	}
	return 1;
}

/* ---------------------------------------------------------------- */
/* the cache                                                        */
/* ---------------------------------------------------------------- */

/* cache_unlink - remove e from its bucket and the age list, free it */
static void
cache_drop(struct table *t, struct centry *e)
{
	struct centry **pp = &t->buckets[e->h & (t->nbuckets - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	TAILQ_REMOVE(&t->ages, e, age);
	t->ncache--;
	free(e->value);
	free(e);
}

/* cache_find - the live entry for key, or NULL (expired ones dropped) */
static struct centry *
cache_find(struct table *t, const char *key, uint64_t h)
{
	struct centry *e;

	if (t->buckets == NULL)
		return NULL;
	for (e = t->buckets[h & (t->nbuckets - 1)]; e != NULL; e = e->hnext)
		if (e->h == h && strcmp(e->key, key) == 0)
			break;
	if (e != NULL && e->expires <= now_s()) {
		cache_drop(t, e);
		return NULL;
	}
	return e;
}

/* cache_put - remember an answer (value NULL: not found) */
static void
cache_put(struct table *t, const char *key, const char *value)
{
	int	ttl = value ? t->cf.cache_ttl : t->cf.negative_ttl;
	uint64_t h = hash(key);
	struct centry *e;
	char   *v = NULL;

	if (t->cf.cache_size == 0 || ttl == 0)
		return;
	if (t->buckets == NULL) {
		size_t	nb = 16;

		while (nb < (size_t)t->cf.cache_size && nb < (1u << 22))
			nb <<= 1;
		if ((t->buckets = calloc(nb, sizeof(*t->buckets))) == NULL)
			return;
		t->nbuckets = nb;
	}
	if (value != NULL && (v = strdup(value)) == NULL)
		return;
	if ((e = cache_find(t, key, h)) != NULL)
		cache_drop(t, e);
	while (t->ncache >= (size_t)t->cf.cache_size)
		cache_drop(t, TAILQ_FIRST(&t->ages));
	if ((e = malloc(sizeof(*e) + strlen(key) + 1)) == NULL) {
		free(v);
		return;
	}
	memcpy(e->key, key, strlen(key) + 1);
	e->h = h;
	e->value = v;
	e->expires = now_s() + ttl;
	e->hnext = t->buckets[h & (t->nbuckets - 1)];
	t->buckets[h & (t->nbuckets - 1)] = e;
	TAILQ_INSERT_TAIL(&t->ages, e, age);
	t->ncache++;
}

/* cache_flush - forget everything */
static void
cache_flush(struct table *t)
{
	while (!TAILQ_EMPTY(&t->ages))
		cache_drop(t, TAILQ_FIRST(&t->ages));
}

/* ---------------------------------------------------------------- */
/* lookups and the pool                                             */
/* ---------------------------------------------------------------- */

static void dispatch(struct table *t);
static void conn_connect(struct pconn *pc);
static char *table_read_file(const char *path, size_t *lenp, char *err,
    size_t errlen);

/* hold - keep t alive while an event handler runs */
static struct table *
hold(struct table *t)
{
	t->refs++;
	return t;
}

/* lookup_finish - answer and free one lookup */
static void
lookup_finish(struct lookup *lk, enum table_status st, const char *value)
{
	struct table *t = lk->t;

	if (lk->queued) {
		TAILQ_REMOVE(&t->queue, lk, q);
		t->nqueue--;
	}
	if (lk->on != NULL)
		lk->on->cur = NULL;
	event_free(lk->deadline);
	if (st == TABLE_ERROR)
		t->errors++;
	else if (st == TABLE_FOUND)
		t->found++;
	else
		t->notfound++;
	lk->cb(lk->arg, st, value, 0);
	free(lk);
}

/* table_went_down - log the start of an outage once */
static void
table_went_down(struct table *t, const char *why)
{
	char	msg[300];

	if (t->down)
		return;
	t->down = 1;
	t->down_since = time(NULL);
	log_escape(msg, sizeof(msg), why, strlen(why));
	log_warnx("table %s: database unreachable: %s; its lookups answer "
	    "the rules' on_error until it is back", t->name, msg);
}

/* table_came_up - log the end of an outage */
static void
table_came_up(struct table *t)
{
	t->backoff_ms = TABLE_BACKOFF_MIN_MS;
	if (!t->down)
		return;
	t->down = 0;
	log_info("table %s: database reachable again after %lld s", t->name,
	    (long long)(time(NULL) - t->down_since));
}

/* any_alive - is a connection up or being made? */
static int
any_alive(const struct table *t)
{
	for (int i = 0; i < t->npool; i++)
		if (t->pool[i].state == PC_IDLE || t->pool[i].state == PC_BUSY ||
		    t->pool[i].state == PC_CONNECTING)
			return 1;
	return 0;
}

/* conn_close - drop the connection (not its lookup) */
static void
conn_close(struct pconn *pc)
{
	if (pc->c != NULL)
		pc->t->drv->close(pc->c);
	pc->c = NULL;
	if (pc->naming != NULL)
		pc->naming->pc = NULL;	/* its answer is dropped */
	pc->naming = NULL;
	if (pc->timer != NULL)
		evtimer_del(pc->timer);
	pc->state = PC_CLOSED;
	pc->worked = 0;
}

/* fail_queue - the database is down: nothing queued can be answered */
static void
fail_queue(struct table *t)
{
	struct lookup *lk;

	while (!any_alive(t) && (lk = TAILQ_FIRST(&t->queue)) != NULL)
		lookup_finish(lk, TABLE_ERROR, NULL);
}

/* connect_failed - try the next host, or wait and mark the table down */
static void
connect_failed(struct pconn *pc, const char *why)
{
	struct table *t = pc->t;
	struct timeval tv;
	char	msg[300];

	/* why may be the driver's own buffer: keep it past the close */
	if (pc->naddr > 0)
		snprintf(msg, sizeof(msg), "%s (%s): %s",
		    t->cf.hosts[pc->host].host, pc->addr[pc->iaddr], why);
	else
		snprintf(msg, sizeof(msg), "%s", why);
	why = msg;
	conn_close(pc);
	if (++pc->iaddr < pc->naddr) {
		/* the name's next address */
		conn_connect(pc);
		return;
	}
	pc->naddr = 0;			/* resolve again next time */
	if (++pc->host < t->cf.nhosts) {
		conn_connect(pc);
		return;
	}
	pc->host = 0;
	pc->state = PC_WAIT;
	tv.tv_sec = t->backoff_ms / 1000;
	tv.tv_usec = (t->backoff_ms % 1000) * 1000;
	evtimer_add(pc->timer, &tv);
	if (t->backoff_ms < TABLE_BACKOFF_MAX_MS)
		t->backoff_ms = t->backoff_ms * 2 > TABLE_BACKOFF_MAX_MS ?
		    TABLE_BACKOFF_MAX_MS : t->backoff_ms * 2;
	table_went_down(t, why);
	fail_queue(t);
}

/* conn_event - what a driver connection reports (see sqldrv.h) */
static void
conn_event(void *arg, enum sqlc_event ev, const struct sqlcf_result *r,
    const char *msg)
{
	struct pconn *pc = arg;
	struct table *t = hold(pc->t);
	struct lookup *lk = pc->cur;
	char	buf[300];

	switch (ev) {
	case SQLC_CONNECTED:
		evtimer_del(pc->timer);
		pc->state = PC_IDLE;
		table_came_up(t);
		break;
	case SQLC_RESULT:
		pc->state = PC_IDLE;
		pc->worked = 1;
		if (lk != NULL) {
			pc->cur = NULL;
			lk->on = NULL;
			cache_put(t, lk->key, r->count > 0 ? r->buf : NULL);
			lookup_finish(lk, r->count > 0 ? TABLE_FOUND :
			    TABLE_NOTFOUND, r->buf);
		}
		break;
	case SQLC_QERROR:
		pc->state = PC_IDLE;
		if (time(NULL) - t->qerr_logged >= TABLE_QERR_LOG_S) {
			t->qerr_logged = time(NULL);
			log_escape(buf, sizeof(buf), msg, strlen(msg));
			log_warnx("table %s: query failed: %s", t->name, buf);
		}
		if (lk != NULL) {
			pc->cur = NULL;
			lk->on = NULL;
			lookup_finish(lk, TABLE_ERROR, NULL);
		}
		break;
	case SQLC_FAIL:
		if (pc->state == PC_CONNECTING) {
			connect_failed(pc, msg);
			break;
		}
		log_escape(buf, sizeof(buf), msg, strlen(msg));
		log_info("table %s: connection lost: %s", t->name, buf);
		t->reconnects++;
		conn_close(pc);
		pc->naddr = 0;		/* the name may point elsewhere now */
		/*
		 * Reconnect at once, in the background: the pool stays warm
		 * after a server restart, and an outage is noticed (logged,
		 * /healthz) without waiting for the next lookup.
		 */
		if (tbase != NULL)
			conn_connect(pc);
		if (lk != NULL) {
			pc->cur = NULL;
			lk->on = NULL;
			if (!lk->retried) {
				/* once more on a fresh connection */
				lk->retried = 1;
				lk->queued = 1;
				TAILQ_INSERT_HEAD(&t->queue, lk, q);
				t->nqueue++;
			} else
				lookup_finish(lk, TABLE_ERROR, NULL);
		}
		break;
	}
	dispatch(t);
	table_unref(t);
}

/* conn_timer - connect deadline, or the end of a back-off */
static void
conn_timer(evutil_socket_t fd, short what, void *arg)
{
	struct pconn *pc = arg;
	struct table *t = hold(pc->t);

	(void)fd;
	(void)what;
	if (pc->state == PC_CONNECTING && pc->naming != NULL) {
		char	why[300];

		snprintf(why, sizeof(why), "cannot resolve %s: timed out",
		    t->cf.hosts[pc->host].host);
		connect_failed(pc, why);
	} else if (pc->state == PC_CONNECTING)
		connect_failed(pc, "connect timed out");
	else if (pc->state == PC_WAIT) {
		pc->state = PC_CLOSED;
		/* while down, probe; otherwise connect on demand */
		if (t->down || !TAILQ_EMPTY(&t->queue))
			conn_connect(pc);
	}
	dispatch(t);
	table_unref(t);
}

/*
 * needs_naming - a host name policyd resolves itself: not an address, a
 * socket or "localhost" (which the drivers take as the local host, or
 * for MariaDB its socket), and only in the daemon (table_set_resolver)
 */
static int
needs_naming(const struct sqlcf_host *h)
{
	unsigned char buf[16];

	return tres != NULL && h->host != NULL && h->socket == NULL &&
	    strcasecmp(h->host, "localhost") != 0 &&
	    inet_pton(AF_INET, h->host, buf) != 1 &&
	    inet_pton(AF_INET6, h->host, buf) != 1;
}

/* hosts_file - the name's addresses in /etc/hosts, as the C library's */
static int
hosts_file(struct pconn *pc, const char *name)
{
	struct ipaddr ip[TABLE_ADDRS];
	size_t	len;
	char	err[256], *text;
	int	n;

	/* a few hundred bytes of a local file: read at connect time only */
	if ((text = table_read_file(TABLE_HOSTS_FILE, &len, err,
	    sizeof(err))) == NULL)
		return 0;
	n = addr_hosts_lookup(text, len, name, ip, TABLE_ADDRS);
	free(text);
	for (int i = 0; i < n; i++)
		addr_ip_format(&ip[i], pc->addr[i], sizeof(pc->addr[i]));
	return n;
}

static void named(void *arg, const struct dns_answer *a);

/* name_query - ask the resolver for the host's addresses of type */
static void
name_query(struct pconn *pc, struct naming *nm, int type)
{
	nm->type = type;
	resolver_query(tres, pc->t->cf.hosts[pc->host].host, type,
	    resolver_now_ms() + pc->t->cf.timeout_ms, named, nm);
}

/* conn_open - the driver's connection to the host or its address */
static void
conn_open(struct pconn *pc)
{
	struct table *t = pc->t;
	struct sqlcf_host h = t->cf.hosts[pc->host];
	char	err[256];

	if (pc->naddr > 0)
		h.addr = pc->addr[pc->iaddr];	/* lives as long as pc */
	pc->c = t->drv->open(tbase, &t->cf, &h, conn_event, pc, err,
	    sizeof(err));
	if (pc->c == NULL) {
		pc->state = PC_CLOSED;
		connect_failed(pc, err);
	}
}

/* named - the resolver's answer: the addresses, or why there are none */
static void
named(void *arg, const struct dns_answer *a)
{
	struct naming *nm = arg;
	struct pconn *pc = nm->pc;
	struct table *t;
	char	why[400];
	int	n = 0;

	if (pc == NULL) {
		free(nm);		/* the connection was closed meanwhile */
		return;
	}
	t = hold(pc->t);
	for (int i = 0; a->status == DNS_OK && i < a->nrr && n < TABLE_ADDRS;
	    i++)
		if (a->rr[i].type == nm->type && inet_ntop(nm->type ==
		    DNS_T_A ? AF_INET : AF_INET6, a->rr[i].addr, pc->addr[n],
		    sizeof(pc->addr[n])) != NULL)
			n++;
	if (n == 0 && nm->type == DNS_T_A && (a->status == DNS_OK ||
	    a->status == DNS_NODATA)) {
		name_query(pc, nm, DNS_T_AAAA);	/* no IPv4 address: IPv6 */
		table_unref(t);
		return;
	}
	pc->naming = NULL;
	free(nm);
	if (n == 0) {
		snprintf(why, sizeof(why), "cannot resolve %s: %s",
		    t->cf.hosts[pc->host].host, a->status == DNS_OK ||
		    a->status == DNS_NODATA ? "no address (A or AAAA)" :
		    a->status == DNS_TIMEOUT || a->status == DNS_BUDGET ?
		    "timed out" : dns_status_name(a->status));
		connect_failed(pc, why);
	} else {
		pc->naddr = n;
		pc->iaddr = 0;
		conn_open(pc);
	}
	dispatch(t);
	table_unref(t);
}

/*
 * conn_connect - open pc to its current host (a name: to its next
 * address, resolved first when there is none yet); the connect deadline
 * covers the resolution too
 */
static void
conn_connect(struct pconn *pc)
{
	struct table *t = pc->t;
	const struct sqlcf_host *h = &t->cf.hosts[pc->host];
	struct timeval tv = { t->cf.timeout_ms / 1000,
	    (t->cf.timeout_ms % 1000) * 1000 };

	if (tbase == NULL)
		return;
	if (pc->timer == NULL &&
	    (pc->timer = evtimer_new(tbase, conn_timer, pc)) == NULL)
		return;
	pc->state = PC_CONNECTING;
	evtimer_add(pc->timer, &tv);
	if (pc->naddr == 0 && needs_naming(h)) {
		if ((pc->naddr = hosts_file(pc, h->host)) == 0) {
			if ((pc->naming = calloc(1, sizeof(*pc->naming))) ==
			    NULL) {
				pc->state = PC_CLOSED;
				connect_failed(pc, "out of memory");
				return;
			}
			pc->naming->pc = pc;
			name_query(pc, pc->naming, DNS_T_A);
			return;
		}
		pc->iaddr = 0;
	}
	conn_open(pc);
}

/* send_lookup - lk on the idle connection pc */
static void
send_lookup(struct pconn *pc, struct lookup *lk)
{
	static struct sqlcf_bind b;	/* single-threaded, 16 KB */
	struct table *t = pc->t;
	char	err[256];

	TAILQ_REMOVE(&t->queue, lk, q);
	t->nqueue--;
	lk->queued = 0;
	if (sqlcf_bind(&t->cf, lk->key, &b) < 0) {
		lookup_finish(lk, TABLE_NOTFOUND, NULL);
		return;
	}
	t->queries++;
	pc->state = PC_BUSY;
	pc->cur = lk;
	lk->on = pc;
	if (t->drv->query(pc->c, lk->key, &b, err, sizeof(err)) < 0) {
		/* the connection is gone: as if it had failed */
		conn_event(pc, SQLC_FAIL, NULL, err);
	}
}

/* dispatch - give queued lookups to idle connections, open more */
static void
dispatch(struct table *t)
{
	struct lookup *lk;
	int	connecting, progress = 1;

	while (progress && (lk = TAILQ_FIRST(&t->queue)) != NULL) {
		progress = 0;
		for (int i = 0; i < t->npool; i++)
			if (t->pool[i].state == PC_IDLE) {
				send_lookup(&t->pool[i], lk);
				progress = 1;
				break;
			}
	}
	if (t->nqueue == 0 || tbase == NULL)
		return;
	connecting = 0;
	for (int i = 0; i < t->npool; i++)
		connecting += t->pool[i].state == PC_CONNECTING;
	for (int i = 0; i < t->npool && connecting < t->nqueue; i++)
		if (t->pool[i].state == PC_CLOSED) {
			conn_connect(&t->pool[i]);
			connecting++;
		}
	if (t->down)
		fail_queue(t);
}

/* lookup_deadline - the lookup took too long */
static void
lookup_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct lookup *lk = arg;
	struct table *t = hold(lk->t);
	struct pconn *pc = lk->on;

	(void)fd;
	(void)what;
	t->timeouts++;
	if (pc != NULL) {
		/* its connection is in an unknown state: start afresh */
		pc->cur = NULL;
		lk->on = NULL;
		conn_close(pc);
	}
	lookup_finish(lk, TABLE_ERROR, NULL);
	dispatch(t);
	table_unref(t);
}

/* table_lookup - one key (see table.h) */
void
table_lookup(struct table *t, const char *key, table_cb *cb, void *arg)
{
	static struct sqlcf_bind b;
	struct timeval tv;
	struct centry *e;
	struct lookup *lk;
	const char *v;

	t->lookups++;
	if (t->kind == TK_FILE) {
		v = map_get(t->map, key);
		cb(arg, v ? TABLE_FOUND : TABLE_NOTFOUND, v, 1);
		return;
	}
	/* nothing to look up: a key the query cannot take finds nothing */
	if (strlen(key) > SQLCF_VALUE_MAX || !utf8_ok((const unsigned char *)
	    key) || sqlcf_bind(&t->cf, key, &b) < 0) {
		t->notfound++;
		cb(arg, TABLE_NOTFOUND, NULL, 1);
		return;
	}
	if ((e = cache_find(t, key, hash(key))) != NULL) {
		t->hits++;
		if (e->value)
			t->found++;
		else
			t->notfound++;
		cb(arg, e->value ? TABLE_FOUND : TABLE_NOTFOUND, e->value, 1);
		return;
	}
	if (tbase == NULL || (t->down && !any_alive(t)) ||
	    t->nqueue >= TABLE_QUEUE_MAX ||
	    (lk = calloc(1, sizeof(*lk) + strlen(key) + 1)) == NULL) {
		t->errors++;
		cb(arg, TABLE_ERROR, NULL, 0);
		return;
	}
	memcpy(lk->key, key, strlen(key) + 1);
	lk->t = t;
	lk->cb = cb;
	lk->arg = arg;
	if ((lk->deadline = evtimer_new(tbase, lookup_deadline, lk)) == NULL) {
		free(lk);
		t->errors++;
		cb(arg, TABLE_ERROR, NULL, 0);
		return;
	}
	tv.tv_sec = t->cf.timeout_ms / 1000;
	tv.tv_usec = (t->cf.timeout_ms % 1000) * 1000;
	evtimer_add(lk->deadline, &tv);
	lk->queued = 1;
	TAILQ_INSERT_TAIL(&t->queue, lk, q);
	t->nqueue++;
	hold(t);
	dispatch(t);
	table_unref(t);
}

/* table_peek - the cached answer only (see table.h) */
enum table_status
table_peek(struct table *t, const char *key, const char **value)
{
	static struct sqlcf_bind b;
	struct centry *e;

	*value = NULL;
	if (t->kind == TK_FILE) {
		*value = map_get(t->map, key);
		return *value ? TABLE_FOUND : TABLE_NOTFOUND;
	}
	if (strlen(key) > SQLCF_VALUE_MAX || !utf8_ok((const unsigned char *)
	    key) || sqlcf_bind(&t->cf, key, &b) < 0)
		return TABLE_NOTFOUND;
	if ((e = cache_find(t, key, hash(key))) == NULL)
		return TABLE_ERROR;
	*value = e->value;
	return e->value ? TABLE_FOUND : TABLE_NOTFOUND;
}

/* ---------------------------------------------------------------- */
/* several keys, first hit wins                                     */
/* ---------------------------------------------------------------- */

struct first {
	struct table *t;
	table_first_cb *cb;
	void	*arg;
	int	n, i;
	char	*keys[MAPKEYS_MAX];
};

static void first_step(struct first *f);

/* first_cb - one answer: found, error, or on to the next key */
static void
first_cb(void *arg, enum table_status st, const char *value, int cached)
{
	struct first *f = arg;

	(void)cached;
	if (st == TABLE_NOTFOUND && f->i + 1 < f->n) {
		f->i++;
		first_step(f);
		return;
	}
	f->cb(f->arg, st, st == TABLE_FOUND ? f->i : -1, value);
	for (int i = 0; i < f->n; i++)
		free(f->keys[i]);
	free(f);
}

static void
first_step(struct first *f)
{
	table_lookup(f->t, f->keys[f->i], first_cb, f);
}

/* table_lookup_first - keys in order until one is found (see table.h) */
void
table_lookup_first(struct table *t, const char *const *keys, int n,
    table_first_cb *cb, void *arg)
{
	struct first *f;

	if (n <= 0) {
		cb(arg, TABLE_NOTFOUND, -1, NULL);
		return;
	}
	if (n > MAPKEYS_MAX || (f = calloc(1, sizeof(*f))) == NULL) {
		cb(arg, TABLE_ERROR, -1, NULL);
		return;
	}
	f->t = t;
	f->cb = cb;
	f->arg = arg;
	f->n = n;
	for (int i = 0; i < n; i++)
		if ((f->keys[i] = strdup(keys[i])) == NULL) {
			for (int k = 0; k < i; k++)
				free(f->keys[k]);
			free(f);
			cb(arg, TABLE_ERROR, -1, NULL);
			return;
		}
	first_step(f);
}

/* a table_lookup_any() in flight */
struct any {
	struct table *const *t;
	int	nt, i, failed;
	struct mapkeys keys;
	table_any_cb *cb;
	void	*arg;
};

static void any_step(struct any *a);

/* any_done - one table's answer: found, or on to the next table */
static void
any_done(void *arg, enum table_status st, int idx, const char *value)
{
	struct any *a = arg;

	if (st == TABLE_FOUND) {
		a->cb(a->arg, st, a->i, idx, value);
		mapkeys_free(&a->keys);
		free(a);
		return;
	}
	if (st == TABLE_ERROR && a->failed < 0)
		a->failed = a->i;
	a->i++;
	any_step(a);
}

/* any_step - ask the next table, or answer */
static void
any_step(struct any *a)
{
	if (a->i < a->nt) {
		table_lookup_first(a->t[a->i], (const char *const *)a->keys.k,
		    a->keys.n, any_done, a);
		return;
	}
	a->cb(a->arg, a->failed < 0 ? TABLE_NOTFOUND : TABLE_ERROR, a->failed,
	    -1, NULL);
	mapkeys_free(&a->keys);
	free(a);
}

/* table_lookup_any - the tables in turn until one finds (see table.h) */
void
table_lookup_any(struct table *const *t, int nt, const char *const *keys,
    int n, table_any_cb *cb, void *arg)
{
	struct any *a;

	if (n > MAPKEYS_MAX || (a = calloc(1, sizeof(*a))) == NULL) {
		cb(arg, TABLE_ERROR, 0, -1, NULL);
		return;
	}
	for (int i = 0; i < n; i++)
		if ((a->keys.k[i] = strdup(keys[i])) == NULL) {
			a->keys.n = i;
			mapkeys_free(&a->keys);
			free(a);
			cb(arg, TABLE_ERROR, 0, -1, NULL);
			return;
		}
	a->keys.n = n;
	a->t = t;
	a->nt = nt;
	a->failed = -1;
	a->cb = cb;
	a->arg = arg;
	any_step(a);
}

/* a table_lookup_owner() in flight */
struct owner {
	struct mapkeys keys;
	table_map_cb *cb;
	void   *arg;
};

/* owner_done - the first key found, as a one-entry map */
static void
owner_done(void *arg, enum table_status st, int idx, const char *value)
{
	struct owner *o = arg;
	struct map *m = NULL;

	if (st == TABLE_FOUND && ((m = map_new()) == NULL ||
	    map_put(m, o->keys.k[idx], value) != 0)) {
		map_free(m);
		m = NULL;
		st = TABLE_ERROR;	/* out of memory: not "not found" */
	}
	o->cb(o->arg, st, m);
	mapkeys_free(&o->keys);
	free(o);
}

/* table_lookup_owner - owner keys, first found as a map (see table.h) */
void
table_lookup_owner(struct table *t, const char *addr, table_map_cb *cb,
    void *arg)
{
	struct owner *o = calloc(1, sizeof(*o));

	if (o == NULL || mapkeys_owner(addr, &o->keys) < 0) {
		free(o);
		cb(arg, TABLE_ERROR, NULL);
		return;
	}
	o->cb = cb;
	o->arg = arg;
	table_lookup_first(t, (const char *const *)o->keys.k, o->keys.n,
	    owner_done, o);
}

/* ---------------------------------------------------------------- */
/* opening, sharing, closing                                        */
/* ---------------------------------------------------------------- */

/* table_is_sql - "pgsql:" or "mysql:" */
int
table_is_sql(const char *spec)
{
	return strncmp(spec, "pgsql:", 6) == 0 || strncmp(spec, "mysql:", 6) ==
	    0;
}

/* table_read_file - the file's bytes (NUL-terminated), or NULL with err */
static char *
table_read_file(const char *path, size_t *lenp, char *err, size_t errlen)
{
	FILE   *fp = fopen(path, "r");
	char   *buf;
	size_t	n;

	if (fp == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if ((buf = malloc(64 * 1024 + 1)) == NULL) {
		fclose(fp);
		snprintf(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	n = fread(buf, 1, 64 * 1024 + 1, fp);
	if (ferror(fp) || n > 64 * 1024) {
		snprintf(err, errlen, "%s: %s", path, n > 64 * 1024 ?
		    "larger than 65536 bytes" : "read error");
		fclose(fp);
		free(buf);
		return NULL;
	}
	fclose(fp);
	buf[n] = '\0';
	*lenp = n;
	return buf;
}

/* table_open - a shared reference (see table.h) */
struct table *
table_open(const char *spec, const char *path, int map_flags, char *err,
    size_t errlen)
{
	enum sqlcf_type type = strncmp(spec, "mysql:", 6) == 0 ? SQLCF_MYSQL :
	    SQLCF_PGSQL;
	struct table *t;
	char   *text, name[4200];
	size_t	len;

	if (!table_is_sql(spec)) {
		if ((t = calloc(1, sizeof(*t))) == NULL ||
		    (t->map = map_new()) == NULL ||
		    (t->name = strdup(path)) == NULL) {
			snprintf(err, errlen, "%s: out of memory", path);
			if (t != NULL) {
				map_free(t->map);
				free(t);
			}
			return NULL;
		}
		t->refs = 1;
		t->kind = TK_FILE;
		if (map_load_file(t->map, path, map_flags, err, errlen) < 0) {
			table_unref(t);
			return NULL;
		}
		return t;
	}
	snprintf(name, sizeof(name), "%.5s:%s", spec, path);
	if ((text = table_read_file(path, &len, err, errlen)) == NULL)
		return NULL;
	for (t = tables; t != NULL; t = t->next)
		if (strcmp(t->name, name) == 0 && strcmp(t->text, text) == 0) {
			free(text);
			t->refs++;
			/* a reload: keep the connections, forget the answers */
			cache_flush(t);
			return t;
		}
	if ((t = calloc(1, sizeof(*t))) == NULL) {
		free(text);
		snprintf(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	TAILQ_INIT(&t->queue);
	TAILQ_INIT(&t->ages);
	t->kind = TK_SQL;
	t->text = text;
	if (sqlcf_parse(&t->cf, type, text, len, path, err, errlen) < 0 ||
	    (t->name = strdup(name)) == NULL) {
		if (t->name == NULL && t->cf.path != NULL)
			snprintf(err, errlen, "%s: out of memory", path);
		sqlcf_free(&t->cf);
		free(t->text);
		free(t);
		return NULL;
	}
	t->refs = 1;
	t->drv = type == SQLCF_MYSQL ? &sqlc_mysql : &sqlc_pgsql;
	t->npool = t->cf.pool;
	for (int i = 0; i < t->npool; i++)
		t->pool[i].t = t;
	t->backoff_ms = TABLE_BACKOFF_MIN_MS;
	t->next = tables;
	tables = t;
	return t;
}

/* table_close_all - fail what is pending and close the connections */
static void
table_close_all(struct table *t)
{
	struct lookup *lk;

	hold(t);
	for (int i = 0; i < t->npool; i++) {
		struct pconn *pc = &t->pool[i];

		if ((lk = pc->cur) != NULL) {
			pc->cur = NULL;
			lk->on = NULL;
			conn_close(pc);
			lookup_finish(lk, TABLE_ERROR, NULL);
		}
		conn_close(pc);
		if (pc->timer != NULL)
			event_free(pc->timer);
		pc->timer = NULL;
	}
	while ((lk = TAILQ_FIRST(&t->queue)) != NULL)
		lookup_finish(lk, TABLE_ERROR, NULL);
	t->refs--;
}

/* table_unref - drop a reference; the last one frees */
void
table_unref(struct table *t)
{
	struct table **pp;

	if (t == NULL || --t->refs > 0)
		return;
	if (t->kind == TK_FILE) {
		map_free(t->map);
		free(t->name);
		free(t);
		return;
	}
	for (pp = &tables; *pp != NULL; pp = &(*pp)->next)
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	t->refs = 1;		/* table_close_all holds it */
	table_close_all(t);
	cache_flush(t);
	free(t->buckets);
	sqlcf_free(&t->cf);
	free(t->text);
	free(t->name);
	free(t);
}

/* table_list_add - open one more table of a list (see table.h) */
int
table_list_add(struct table_list *l, const char *spec, const char *path,
    char *err, size_t errlen)
{
	struct table **a, *t;

	if ((t = table_open(spec, path, 0, err, errlen)) == NULL)
		return -1;
	if ((a = realloc(l->t, (size_t)(l->n + 1) * sizeof(*a))) == NULL) {
		table_unref(t);
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	l->t = a;
	l->t[l->n++] = t;
	return 0;
}

/* table_list_free - drop every table of the list */
void
table_list_free(struct table_list *l)
{
	for (int i = 0; i < l->n; i++)
		table_unref(l->t[i]);
	free(l->t);
	l->t = NULL;
	l->n = 0;
}

/* table_name - as in logs and metrics */
const char *
table_name(const struct table *t)
{
	return t->name;
}

void
table_set_base(struct event_base *base)
{
	tbase = base;
}

void
table_set_resolver(struct resolver *r)
{
	tres = r;
}

/* table_shutdown - at exit (see table.h) */
void
table_shutdown(void)
{
	/* first: a lookup asked from a failed lookup's callback fails too */
	tbase = NULL;
	tres = NULL;
	for (struct table *t = tables; t != NULL; t = t->next)
		table_close_all(t);
}

/* label - a Prometheus label value: \ " and newline escaped */
static void
label_value(char *out, size_t len, const char *s)
{
	size_t	j = 0;

	for (; *s && j + 3 < len; s++) {
		if (*s == '\\' || *s == '"') {
			out[j++] = '\\';
			out[j++] = *s;
		} else if (*s == '\n') {
			out[j++] = '\\';
			out[j++] = 'n';
		} else
			out[j++] = *s;
	}
	out[j] = '\0';
}

/* table_render_metrics - the policyd_table_* families (see table.h) */
void
table_render_metrics(struct stats_buf *b)
{
	static const struct {
		const char *name, *help, *type;
		size_t	off;
	} fam[] = {
#define F(n, h, field) { "policyd_table_" n, h, "counter", \
	offsetof(struct table, field) }
		F("lookups_total", "SQL table lookups asked.", lookups),
		F("cache_hits_total", "SQL table lookups answered from the "
		    "cache.", hits),
		F("queries_total", "SQL queries sent.", queries),
		F("found_total", "SQL table lookups that found a value.", found),
		F("notfound_total", "SQL table lookups that found nothing.",
		    notfound),
		F("errors_total", "SQL table lookups that failed (the rule "
		    "answered on_error).", errors),
		F("timeouts_total", "SQL table lookups past their deadline.",
		    timeouts),
		F("reconnects_total", "SQL connections lost and reopened.",
		    reconnects),
#undef F
	};
	char	lv[600];

	if (tables == NULL)
		return;
	for (size_t i = 0; i < sizeof(fam) / sizeof(fam[0]); i++) {
		stats_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", fam[i].name,
		    fam[i].help, fam[i].name, fam[i].type);
		for (struct table *t = tables; t != NULL; t = t->next) {
			label_value(lv, sizeof(lv), t->name);
			stats_buf_printf(b, "%s{table=\"%s\"} %llu\n",
			    fam[i].name, lv, *(const unsigned long long *)
			    ((const char *)t + fam[i].off));
		}
	}
	stats_buf_printf(b, "# HELP policyd_table_up 1 when the SQL table's "
	    "database is reachable.\n# TYPE policyd_table_up gauge\n");
	for (struct table *t = tables; t != NULL; t = t->next) {
		label_value(lv, sizeof(lv), t->name);
		stats_buf_printf(b, "policyd_table_up{table=\"%s\"} %d\n", lv,
		    !t->down);
	}
	stats_buf_printf(b, "# HELP policyd_table_cache_entries Entries in the "
	    "SQL table's cache.\n# TYPE policyd_table_cache_entries gauge\n");
	for (struct table *t = tables; t != NULL; t = t->next) {
		label_value(lv, sizeof(lv), t->name);
		stats_buf_printf(b, "policyd_table_cache_entries{table=\"%s\"} "
		    "%zu\n", lv, t->ncache);
	}
}

/* table_down - the names of the tables that are down (see table.h) */
size_t
table_down(char *buf, size_t len)
{
	size_t	n = 0;

	if (len > 0)
		buf[0] = '\0';
	for (struct table *t = tables; t != NULL; t = t->next)
		if (t->down && n + strlen(t->name) + 2 < len) {
			n += (size_t)snprintf(buf + n, len - n, "%s%s",
			    n ? " " : "", t->name);
		}
	return n;
}

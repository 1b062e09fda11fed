/*++
 * NAME
 *	resolver.c - asynchronous DNS stub resolver with a TTL cache (see
 *	resolver.h)
 *--*/
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "log.h"
#include "resolver.h"

#define RESOLV_CONF	"/etc/resolv.conf"
#define MAX_SERVERS	8
#define UDP_MAX		4096

struct server_addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

struct cache_entry {
	char	*key;			/* "TYPE/name" */
	uint32_t hash;
	double	expires_ms;
	struct dns_answer ans;
	struct cache_entry *next;	/* hash chain */
	TAILQ_ENTRY(cache_entry) lru;
};
TAILQ_HEAD(cache_lru, cache_entry);

struct dq;
TAILQ_HEAD(dq_list, dq);

struct resolver {
	struct event_base *base;
	struct server_addr servers[MAX_SERVERS];
	int	nservers;
	int	timeout_ms, attempts, cache_size, cache_max_ttl, negative_ttl;
	struct cache_entry **buckets;
	unsigned nbuckets;
	int	ncache;
	struct cache_lru lru;
	struct dq_list pending;
	struct dns_stats stats;
	int	closing;
};

struct dq {
	struct resolver *r;
	char	name[DNS_NAME_MAX + 1];
	int	type;
	double	deadline_ms;
	dns_cb	*cb;
	void	*arg;
	int	attempt;
	struct server_addr server;	/* of the current attempt */
	uint16_t id;
	uint8_t	query[300];
	int	qlen;
	int	fd;
	struct event *ev_io;
	struct event *ev_timer;
	struct bufferevent *bev;	/* TCP retry */
	int	delivering;		/* ans holds the result (cache hit) */
	int	last_error;		/* DNS_SERVFAIL or DNS_TIMEOUT */
	struct dns_answer ans;
	TAILQ_ENTRY(dq) link;
};

static void dq_attempt(struct dq *q);
static void dq_tcp(struct dq *q);

/* resolver_now_ms - monotonic clock */
double
resolver_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

/* dns_type_name - "TXT" */
const char *
dns_type_name(int type)
{
	switch (type) {
	case DNS_T_A: return "A";
	case DNS_T_NS: return "NS";
	case DNS_T_CNAME: return "CNAME";
	case DNS_T_SOA: return "SOA";
	case DNS_T_PTR: return "PTR";
	case DNS_T_MX: return "MX";
	case DNS_T_TXT: return "TXT";
	case DNS_T_AAAA: return "AAAA";
	default: return "?";
	}
}

/* dns_status_name - "NXDOMAIN" */
const char *
dns_status_name(enum dns_status st)
{
	static const char *const n[] = { "ok", "NXDOMAIN", "no data",
	    "SERVFAIL", "timeout", "DNS budget exhausted", "shutdown" };

	return (unsigned)st < sizeof(n) / sizeof(n[0]) ? n[st] : "?";
}

/* dns_name_valid - labels of 1..63 octets, at most 253 in all */
int
dns_name_valid(const char *name)
{
	size_t	len = strlen(name), lab = 0;

	if (len == 0 || len > 253)
		return 0;
	for (size_t i = 0; i <= len; i++) {
		if (name[i] == '.' || name[i] == '\0') {
			if (lab == 0 && !(name[i] == '\0' && i > 0 &&
			    name[i - 1] == '.' && i == len && len > 1))
				return 0;
			if (lab > 63)
				return 0;
			lab = 0;
		} else if ((unsigned char)name[i] <= ' ' ||
		    (unsigned char)name[i] >= 0x7f) {
			return 0;
		} else {
			lab++;
		}
	}
	return 1;
}

/* dns_build_query - header, one question, no EDNS */
int
dns_build_query(uint8_t *buf, size_t len, uint16_t id, const char *name,
    int type)
{
	size_t	o = 12, nl = strlen(name);
	const char *p = name;

	if (nl > 0 && name[nl - 1] == '.')
		nl--;
	if (nl > 253 || len < 12 + nl + 2 + 4)
		return -1;
	memset(buf, 0, 12);
	buf[0] = id >> 8;
	buf[1] = id & 0xff;
	buf[2] = 0x01;			/* RD */
	buf[5] = 1;			/* QDCOUNT */
	while (p < name + nl) {
		const char *dot = memchr(p, '.', name + nl - p);
		size_t	l = dot ? (size_t)(dot - p) : (size_t)(name + nl - p);

		if (l == 0 || l > 63)
			return -1;
		buf[o++] = (uint8_t)l;
		memcpy(buf + o, p, l);
		o += l;
		p += l + (dot ? 1 : 0);
	}
	buf[o++] = 0;
	buf[o++] = type >> 8;
	buf[o++] = type & 0xff;
	buf[o++] = 0;
	buf[o++] = 1;			/* IN */
	return (int)o;
}

/*
 * read_name - decode a possibly compressed name at *off into out
 * (lowercase, no final dot); *off moves past it. -1 on malformed.
 */
static int
read_name(const uint8_t *m, size_t len, size_t *off, char *out, size_t outlen)
{
	size_t	o = *off, w = 0;
	int	jumped = 0, hops = 0;

	for (;;) {
		uint8_t	l;

		if (o >= len)
			return -1;
		l = m[o];
		if ((l & 0xc0) == 0xc0) {
			if (o + 1 >= len || ++hops > 64)
				return -1;
			if (!jumped)
				*off = o + 2;
			jumped = 1;
			o = ((size_t)(l & 0x3f) << 8) | m[o + 1];
			continue;
		}
		if ((l & 0xc0) != 0)
			return -1;
		o++;
		if (l == 0)
			break;
		if (o + l > len || w + l + 2 > outlen || w + l + 1 > 254)
			return -1;
		if (w > 0)
			out[w++] = '.';
		for (size_t i = 0; i < l; i++) {
			unsigned char c = m[o + i];

			/* keep bytes a name can carry; escape the rest */
			out[w++] = (c == '.' || c < 0x21 || c > 0x7e) ? '?' :
			    (char)tolower(c);
		}
		o += l;
	}
	out[w] = '\0';
	if (!jumped)
		*off = o;
	return 0;
}

/* name_eq - compare names ignoring case and a final dot */
static int
name_eq(const char *a, const char *b)
{
	size_t	la = strlen(a), lb = strlen(b);

	if (la > 0 && a[la - 1] == '.')
		la--;
	if (lb > 0 && b[lb - 1] == '.')
		lb--;
	return la == lb && strncasecmp(a, b, la) == 0;
}

struct raw_rr {
	char	owner[DNS_NAME_MAX + 1];
	uint16_t type;
	uint32_t ttl;
	size_t	rdoff, rdlen;
};

/* dns_answer_free - release decoded records */
void
dns_answer_free(struct dns_answer *a)
{
	for (int i = 0; i < a->nrr; i++)
		free(a->rr[i].data);
	free(a->rr);
	a->rr = NULL;
	a->nrr = 0;
}

/* add_rr - decode the rdata of one record of the asked type */
static int
add_rr(const uint8_t *m, size_t len, const struct raw_rr *x,
    struct dns_answer *a)
{
	struct dns_rr *rr;
	char	name[DNS_NAME_MAX + 1];
	size_t	o = x->rdoff, end = x->rdoff + x->rdlen;

	if (a->nrr >= DNS_MAX_RR)
		return 0;
	if (a->rr == NULL && (a->rr = calloc(DNS_MAX_RR, sizeof(*a->rr))) ==
	    NULL)
		return -1;
	rr = &a->rr[a->nrr];
	memset(rr, 0, sizeof(*rr));
	rr->type = x->type;
	rr->ttl = x->ttl;
	switch (x->type) {
	case DNS_T_A:
		if (x->rdlen != 4)
			return -1;
		memcpy(rr->addr, m + o, 4);
		break;
	case DNS_T_AAAA:
		if (x->rdlen != 16)
			return -1;
		memcpy(rr->addr, m + o, 16);
		break;
	case DNS_T_MX:
		if (x->rdlen < 3)
			return -1;
		rr->pref = (uint16_t)(m[o] << 8 | m[o + 1]);
		o += 2;
		/* FALLTHROUGH */
	case DNS_T_PTR:
	case DNS_T_CNAME:
	case DNS_T_NS:
		if (read_name(m, len, &o, name, sizeof(name)) < 0 || o > end)
			return -1;
		if ((rr->data = strdup(name)) == NULL)
			return -1;
		rr->len = strlen(name);
		break;
	case DNS_T_TXT: {
		char	*t = malloc(x->rdlen + 1);
		size_t	w = 0;

		if (t == NULL)
			return -1;
		while (o < end) {
			size_t	l = m[o++];

			if (o + l > end) {
				free(t);
				return -1;
			}
			memcpy(t + w, m + o, l);
			w += l;
			o += l;
		}
		t[w] = '\0';
		rr->data = t;
		rr->len = w;
		break;
	}
	default:
		return 0;
	}
	a->nrr++;
	return 0;
}

/* dns_parse_reply - see resolver.h */
int
dns_parse_reply(const uint8_t *m, size_t len, uint16_t id, const char *qname,
    int qtype, struct dns_answer *a, uint32_t *negttl)
{
	static struct raw_rr rrs[128];	/* event loop: one parse at a time */
	char	name[DNS_NAME_MAX + 1], cur[DNS_NAME_MAX + 1];
	size_t	o = 12;
	unsigned qd, an, ns, nrrs = 0;
	int	rcode;

	memset(a, 0, sizeof(*a));
	*negttl = 0;
	if (len < 12 || (m[0] << 8 | m[1]) != id || (m[2] & 0x80) == 0)
		return -1;
	qd = m[4] << 8 | m[5];
	an = m[6] << 8 | m[7];
	ns = m[8] << 8 | m[9];
	rcode = m[3] & 0x0f;
	if (m[2] & 0x02)
		return 1;		/* TC, perhaps without the question */
	if (qd != 1) {
		/* a server error may come without the question */
		return qd == 0 && rcode != 0 && rcode != 3 ? 2 : -1;
	}
	if (read_name(m, len, &o, name, sizeof(name)) < 0 || o + 4 > len)
		return -1;
	if (!name_eq(name, qname) || (m[o] << 8 | m[o + 1]) != qtype ||
	    (m[o + 2] << 8 | m[o + 3]) != 1)
		return -1;
	o += 4;
	if (rcode != 0 && rcode != 3)
		return 2;
	for (unsigned i = 0; i < an + ns && nrrs < 128; i++) {
		struct raw_rr *x = &rrs[nrrs];

		if (read_name(m, len, &o, x->owner, sizeof(x->owner)) < 0 ||
		    o + 10 > len)
			return -1;
		x->type = (uint16_t)(m[o] << 8 | m[o + 1]);
		x->ttl = (uint32_t)m[o + 4] << 24 | (uint32_t)m[o + 5] << 16 |
		    (uint32_t)m[o + 6] << 8 | m[o + 7];
		if (x->ttl > 0x7fffffff)
			x->ttl = 0;
		x->rdlen = (size_t)(m[o + 8] << 8 | m[o + 9]);
		x->rdoff = o + 10;
		if (x->rdoff + x->rdlen > len)
			return -1;
		o = x->rdoff + x->rdlen;
		if (i >= an) {
			/* authority: the SOA gives the negative TTL */
			if (x->type == DNS_T_SOA) {
				size_t	so = x->rdoff;
				char	tmp[DNS_NAME_MAX + 1];
				uint32_t min;

				if (read_name(m, len, &so, tmp, sizeof(tmp)) < 0 ||
				    read_name(m, len, &so, tmp, sizeof(tmp)) < 0 ||
				    so + 20 > x->rdoff + x->rdlen)
					continue;
				min = (uint32_t)m[so + 16] << 24 |
				    (uint32_t)m[so + 17] << 16 |
				    (uint32_t)m[so + 18] << 8 | m[so + 19];
				*negttl = min < x->ttl ? min : x->ttl;
				if (*negttl == 0)
					*negttl = 1;	/* "there was an SOA" */
			}
			continue;
		}
		nrrs++;
	}
	/* follow the CNAME chain from the question's name */
	snprintf(cur, sizeof(cur), "%s", name);
	for (int hop = 0; hop < 10; hop++) {
		int	moved = 0;

		for (unsigned i = 0; i < nrrs; i++) {
			if (!name_eq(rrs[i].owner, cur))
				continue;
			if (rrs[i].type == qtype) {
				if (add_rr(m, len, &rrs[i], a) < 0) {
					dns_answer_free(a);
					return -1;
				}
			} else if (rrs[i].type == DNS_T_CNAME && !moved &&
			    qtype != DNS_T_CNAME) {
				size_t	ro = rrs[i].rdoff;
				char	target[DNS_NAME_MAX + 1];

				if (read_name(m, len, &ro,
				    target, sizeof(target)) == 0) {
					snprintf(cur, sizeof(cur), "%s", target);
					moved = 1;
				}
			}
		}
		if (a->nrr > 0 || !moved)
			break;
	}
	if (a->nrr > 0)
		a->status = DNS_OK;
	else
		a->status = rcode == 3 ? DNS_NXDOMAIN : DNS_NODATA;
	return 0;
}

/* ---- cache ---- */

/* cache_hash - FNV-1a */
static uint32_t
cache_hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

/* answer_copy - deep copy */
static int
answer_copy(struct dns_answer *dst, const struct dns_answer *src)
{
	*dst = *src;
	dst->rr = NULL;
	dst->nrr = 0;
	if (src->nrr == 0)
		return 0;
	if ((dst->rr = calloc(src->nrr, sizeof(*dst->rr))) == NULL)
		return -1;
	for (int i = 0; i < src->nrr; i++) {
		dst->rr[i] = src->rr[i];
		if (src->rr[i].data != NULL) {
			if ((dst->rr[i].data = malloc(src->rr[i].len + 1)) ==
			    NULL) {
				dst->nrr = i;
				dns_answer_free(dst);
				return -1;
			}
			memcpy(dst->rr[i].data, src->rr[i].data,
			    src->rr[i].len + 1);
		}
		dst->nrr = i + 1;
	}
	return 0;
}

/* cache_key - "TYPE/name" lowercase, no final dot */
static void
cache_key(char *buf, size_t len, int type, const char *name)
{
	size_t	o = (size_t)snprintf(buf, len, "%d/", type);

	for (; *name && o + 1 < len; name++)
		buf[o++] = (char)tolower((unsigned char)*name);
	if (o > 0 && buf[o - 1] == '.')
		o--;
	buf[o] = '\0';
}

/* cache_unlink - remove one entry */
static void
cache_unlink(struct resolver *r, struct cache_entry *e)
{
	struct cache_entry **pp = &r->buckets[e->hash & (r->nbuckets - 1)];

	while (*pp != e)
		pp = &(*pp)->next;
	*pp = e->next;
	TAILQ_REMOVE(&r->lru, e, lru);
	dns_answer_free(&e->ans);
	free(e->key);
	free(e);
	r->ncache--;
}

/* cache_get - a live entry, moved to the front */
static struct cache_entry *
cache_get(struct resolver *r, const char *key)
{
	uint32_t h = cache_hash(key);
	struct cache_entry *e;

	if (r->nbuckets == 0)
		return NULL;
	for (e = r->buckets[h & (r->nbuckets - 1)]; e != NULL; e = e->next)
		if (e->hash == h && strcmp(e->key, key) == 0)
			break;
	if (e == NULL)
		return NULL;
	if (e->expires_ms <= resolver_now_ms()) {
		cache_unlink(r, e);
		return NULL;
	}
	TAILQ_REMOVE(&r->lru, e, lru);
	TAILQ_INSERT_HEAD(&r->lru, e, lru);
	return e;
}

/* cache_put - remember an answer for ttl seconds */
static void
cache_put(struct resolver *r, const char *key, const struct dns_answer *a,
    uint32_t ttl)
{
	struct cache_entry *e;
	uint32_t h = cache_hash(key);

	if (ttl == 0 || r->cache_size == 0 || r->nbuckets == 0)
		return;
	if ((e = cache_get(r, key)) != NULL)
		cache_unlink(r, e);
	while (r->ncache >= r->cache_size && !TAILQ_EMPTY(&r->lru))
		cache_unlink(r, TAILQ_LAST(&r->lru, cache_lru));
	if ((e = calloc(1, sizeof(*e))) == NULL)
		return;
	if ((e->key = strdup(key)) == NULL || answer_copy(&e->ans, a) < 0) {
		free(e->key);
		free(e);
		return;
	}
	e->ans.cached = 1;
	e->hash = h;
	e->expires_ms = resolver_now_ms() + ttl * 1000.0;
	e->next = r->buckets[h & (r->nbuckets - 1)];
	r->buckets[h & (r->nbuckets - 1)] = e;
	TAILQ_INSERT_HEAD(&r->lru, e, lru);
	r->ncache++;
}

/* cache_resize - buckets for the configured size; evict beyond it */
static int
cache_resize(struct resolver *r)
{
	unsigned n = 64;
	struct cache_entry **nb, *e;

	while (n < (unsigned)r->cache_size && n < (1u << 24))
		n <<= 1;
	while (r->ncache > r->cache_size)
		cache_unlink(r, TAILQ_LAST(&r->lru, cache_lru));
	if (n == r->nbuckets)
		return 0;
	if ((nb = calloc(n, sizeof(*nb))) == NULL)
		return -1;
	TAILQ_FOREACH(e, &r->lru, lru) {
		e->next = nb[e->hash & (n - 1)];
		nb[e->hash & (n - 1)] = e;
	}
	free(r->buckets);
	r->buckets = nb;
	r->nbuckets = n;
	return 0;
}

/* ---- configuration ---- */

/* resolver_parse_server - see resolver.h */
int
resolver_parse_server(const char *s, struct sockaddr_storage *ss,
    unsigned *sslen)
{
	char	host[64];
	const char *port = NULL;
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	long	p = 53;
	size_t	hl;

	memset(ss, 0, sizeof(*ss));
	if (s[0] == '[') {
		const char *e = strchr(s, ']');

		if (e == NULL || (e[1] != '\0' && e[1] != ':'))
			return -1;
		hl = e - s - 1;
		if (hl >= sizeof(host))
			return -1;
		memcpy(host, s + 1, hl);
		host[hl] = '\0';
		if (e[1] == ':')
			port = e + 2;
	} else {
		const char *c = strchr(s, ':');

		if (c != NULL && strchr(c + 1, ':') == NULL) {
			hl = c - s;
			port = c + 1;
		} else {
			hl = strlen(s);	/* bare IPv4 or IPv6 */
		}
		if (hl >= sizeof(host))
			return -1;
		memcpy(host, s, hl);
		host[hl] = '\0';
	}
	if (port != NULL) {
		char	*end;

		p = strtol(port, &end, 10);
		if (*port == '\0' || *end != '\0' || p < 1 || p > 65535)
			return -1;
	}
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)p);
		*sslen = sizeof(*s4);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)p);
		*sslen = sizeof(*s6);
		return 0;
	}
	return -1;
}

/* load_resolv_conf - "nameserver IP" lines */
static void
load_resolv_conf(struct resolver *r)
{
	FILE	*f = fopen(RESOLV_CONF, "re");
	char	line[512], ns[128];

	if (f != NULL) {
		while (fgets(line, sizeof(line), f) != NULL &&
		    r->nservers < MAX_SERVERS) {
			unsigned len;

			if (sscanf(line, " nameserver %127s", ns) != 1)
				continue;
			/* resolv.conf has no ports: "::1" or "1.2.3.4" */
			if (resolver_parse_server(ns, &r->servers[r->nservers].ss,
			    &len) == 0) {
				r->servers[r->nservers].len = len;
				r->nservers++;
			}
		}
		fclose(f);
	}
	if (r->nservers == 0) {
		unsigned len;

		resolver_parse_server("127.0.0.1", &r->servers[0].ss, &len);
		r->servers[0].len = len;
		r->nservers = 1;
	}
}

/* resolver_configure - see resolver.h */
int
resolver_configure(struct resolver *r, const struct dns_config *cfg)
{
	struct server_addr old[MAX_SERVERS];
	int	nold = r->nservers;

	memcpy(old, r->servers, sizeof(old));
	r->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 2000;
	r->attempts = cfg->attempts > 0 ? cfg->attempts : 2;
	r->cache_size = cfg->cache_size >= 0 ? cfg->cache_size : 10000;
	r->cache_max_ttl = cfg->cache_max_ttl;
	r->negative_ttl = cfg->negative_ttl;
	r->nservers = 0;
	for (int i = 0; cfg->nameservers && cfg->nameservers[i] &&
	    r->nservers < MAX_SERVERS; i++) {
		unsigned len;

		if (resolver_parse_server(cfg->nameservers[i],
		    &r->servers[r->nservers].ss, &len) < 0) {
			log_warnx("dns.nameservers: \"%s\" ignored",
			    cfg->nameservers[i]);
			continue;
		}
		r->servers[r->nservers].len = len;
		r->nservers++;
	}
	if (r->nservers == 0)
		load_resolv_conf(r);
	if (nold > 0 && (nold != r->nservers || memcmp(old, r->servers,
	    sizeof(old[0]) * nold) != 0)) {
		/* other servers may know other answers: forget the old ones */
		while (!TAILQ_EMPTY(&r->lru))
			cache_unlink(r, TAILQ_FIRST(&r->lru));
	}
	return cache_resize(r);
}

/* resolver_new - see resolver.h */
struct resolver *
resolver_new(struct event_base *base, const struct dns_config *cfg)
{
	struct resolver *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->base = base;
	TAILQ_INIT(&r->lru);
	TAILQ_INIT(&r->pending);
	if (resolver_configure(r, cfg) < 0) {
		free(r);
		return NULL;
	}
	return r;
}

const struct dns_stats *
resolver_stats(const struct resolver *r)
{
	return &r->stats;
}

int
resolver_cache_count(const struct resolver *r)
{
	return r->ncache;
}

/* ---- queries ---- */

/* dq_close_io - the socket and TCP connection of the current attempt */
static void
dq_close_io(struct dq *q)
{
	if (q->ev_io != NULL) {
		event_free(q->ev_io);
		q->ev_io = NULL;
	}
	if (q->fd >= 0) {
		close(q->fd);
		q->fd = -1;
	}
	if (q->bev != NULL) {
		bufferevent_free(q->bev);
		q->bev = NULL;
	}
}

/* dq_finish - answer the caller once, free the query */
static void
dq_finish(struct dq *q, enum dns_status st)
{
	struct resolver *r = q->r;

	if (st != DNS_OK && st != DNS_NXDOMAIN && st != DNS_NODATA) {
		dns_answer_free(&q->ans);
		memset(&q->ans, 0, sizeof(q->ans));
	}
	q->ans.status = st;
	switch (st) {
	case DNS_TIMEOUT: r->stats.timeouts++; break;
	case DNS_SERVFAIL: r->stats.servfails++; break;
	case DNS_BUDGET: r->stats.budget++; break;
	case DNS_NXDOMAIN: r->stats.nxdomain++; break;
	default: break;
	}
	dq_close_io(q);
	TAILQ_REMOVE(&r->pending, q, link);
	if (q->ev_timer != NULL)
		event_free(q->ev_timer);
	q->cb(q->arg, &q->ans);
	dns_answer_free(&q->ans);
	free(q);
}

/* dq_answer - a decoded reply: cache it and answer */
static void
dq_answer(struct dq *q, uint32_t negttl)
{
	struct resolver *r = q->r;
	char	key[DNS_NAME_MAX + 16];
	uint32_t ttl = 0;

	cache_key(key, sizeof(key), q->type, q->name);
	if (q->ans.status == DNS_OK) {
		ttl = q->ans.rr[0].ttl;
		for (int i = 1; i < q->ans.nrr; i++)
			if (q->ans.rr[i].ttl < ttl)
				ttl = q->ans.rr[i].ttl;
		if (ttl > (uint32_t)r->cache_max_ttl)
			ttl = (uint32_t)r->cache_max_ttl;
	} else if (negttl > 0) {
		ttl = negttl < (uint32_t)r->negative_ttl ? negttl :
		    (uint32_t)r->negative_ttl;
	}
	cache_put(r, key, &q->ans, ttl);
	dq_finish(q, q->ans.status);
}

/* dq_reply - one reply over UDP or TCP; 0 when ignored (q untouched) */
static int
dq_reply(struct dq *q, const uint8_t *buf, size_t len, int tcp)
{
	uint32_t negttl;
	int	rc = dns_parse_reply(buf, len, q->id, q->name, q->type, &q->ans,
	    &negttl);

	switch (rc) {
	case 0:
		q->ans.tcp = tcp;
		dq_answer(q, negttl);
		return 1;
	case 1:
		if (!tcp) {
			/* truncated: the same question over TCP */
			dq_tcp(q);
			return 1;
		}
		/* a truncated TCP reply is an error */
		q->last_error = DNS_SERVFAIL;
		dns_answer_free(&q->ans);
		dq_close_io(q);
		q->attempt++;
		dq_attempt(q);
		return 1;
	case 2:
		q->last_error = DNS_SERVFAIL;
		dns_answer_free(&q->ans);
		dq_close_io(q);
		q->attempt++;
		dq_attempt(q);
		return 1;
	default:
		if (tcp) {
			q->last_error = DNS_SERVFAIL;
			dq_close_io(q);
			q->attempt++;
			dq_attempt(q);
			return 1;
		}
		return 0;		/* UDP: not ours; keep waiting */
	}
}

/* dq_udp_read - a datagram on the attempt's socket */
static void
dq_udp_read(evutil_socket_t fd, short what, void *arg)
{
	struct dq *q = arg;
	uint8_t	buf[UDP_MAX];
	ssize_t	n;

	(void)what;
	for (int i = 0; i < 8; i++) {
		if ((n = recv(fd, buf, sizeof(buf), 0)) < 0) {
			if (errno == ECONNREFUSED) {
				/* nothing listens there: the next attempt now */
				q->last_error = DNS_SERVFAIL;
				dq_close_io(q);
				q->attempt++;
				dq_attempt(q);
			}
			return;		/* EAGAIN: wait for the timer */
		}
		if (dq_reply(q, buf, (size_t)n, 0))
			return;		/* finished (q freed), retried or on TCP */
	}
}

/* dq_tcp_read - length-prefixed reply */
static void
dq_tcp_read(struct bufferevent *bev, void *arg)
{
	struct dq *q = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	uint8_t	hdr[2], *buf;
	size_t	n;

	if (evbuffer_get_length(in) < 2)
		return;
	evbuffer_copyout(in, hdr, 2);
	n = (size_t)(hdr[0] << 8 | hdr[1]);
	if (evbuffer_get_length(in) < 2 + n)
		return;
	evbuffer_drain(in, 2);
	if ((buf = malloc(n ? n : 1)) == NULL) {
		dq_finish(q, DNS_SERVFAIL);
		return;
	}
	evbuffer_remove(in, buf, n);
	dq_reply(q, buf, n, 1);
	free(buf);
}

/* dq_tcp_event - connection failed or closed early */
static void
dq_tcp_event(struct bufferevent *bev, short what, void *arg)
{
	struct dq *q = arg;

	(void)bev;
	if (what & BEV_EVENT_CONNECTED)
		return;
	q->last_error = DNS_SERVFAIL;
	dq_close_io(q);
	q->attempt++;
	dq_attempt(q);
}

/* dq_tcp - ask the same server over TCP (truncated UDP reply) */
static void
dq_tcp(struct dq *q)
{
	uint8_t	len[2] = { (uint8_t)(q->qlen >> 8), (uint8_t)q->qlen };

	dq_close_io(q);
	q->r->stats.tcp++;
	q->bev = bufferevent_socket_new(q->r->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (q->bev == NULL) {
		dq_finish(q, DNS_SERVFAIL);
		return;
	}
	bufferevent_setcb(q->bev, dq_tcp_read, NULL, dq_tcp_event, q);
	bufferevent_write(q->bev, len, 2);
	bufferevent_write(q->bev, q->query, (size_t)q->qlen);
	bufferevent_enable(q->bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(q->bev, (struct sockaddr *)&q->server.ss,
	    (int)q->server.len) < 0) {
		/* the event callback may not run: try the next attempt */
		q->last_error = DNS_SERVFAIL;
		dq_close_io(q);
		q->attempt++;
		dq_attempt(q);
	}
}

/* dq_timer - attempt timeout, budget, or the delivery of a cache hit */
static void
dq_timer(evutil_socket_t fd, short what, void *arg)
{
	struct dq *q = arg;

	(void)fd;
	(void)what;
	if (q->delivering) {
		dq_finish(q, q->ans.status);
		return;
	}
	if (q->deadline_ms > 0 && resolver_now_ms() >= q->deadline_ms - 1) {
		dq_finish(q, DNS_BUDGET);
		return;
	}
	q->last_error = DNS_TIMEOUT;
	dq_close_io(q);
	q->attempt++;
	dq_attempt(q);
}

/* dq_attempt - send the query to the next server, arm the timer */
static void
dq_attempt(struct dq *q)
{
	struct resolver *r = q->r;
	double	wait = r->timeout_ms, now = resolver_now_ms();
	struct timeval tv;

	if (q->attempt >= r->attempts) {
		dq_finish(q, q->last_error);
		return;
	}
	if (q->deadline_ms > 0) {
		if (now >= q->deadline_ms) {
			dq_finish(q, DNS_BUDGET);
			return;
		}
		if (q->deadline_ms - now < wait)
			wait = q->deadline_ms - now;
	}
	q->server = r->servers[q->attempt % r->nservers];
	arc4random_buf(&q->id, sizeof(q->id));
	q->query[0] = q->id >> 8;
	q->query[1] = q->id & 0xff;
	q->fd = socket(q->server.ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (q->fd < 0 || connect(q->fd, (struct sockaddr *)&q->server.ss,
	    q->server.len) < 0 || send(q->fd, q->query, (size_t)q->qlen, 0) !=
	    q->qlen) {
		/* no descriptor or no route: count it as a failed attempt */
		q->last_error = DNS_SERVFAIL;
		if (q->fd >= 0)
			close(q->fd);
		q->fd = -1;
	} else {
		q->ev_io = event_new(r->base, q->fd, EV_READ | EV_PERSIST,
		    dq_udp_read, q);
		if (q->ev_io == NULL || event_add(q->ev_io, NULL) < 0)
			fatalx("cannot add a DNS socket event");
	}
	if (q->fd < 0)
		wait = 1;		/* the next attempt, from the loop */
	tv.tv_sec = (long)(wait / 1000);
	tv.tv_usec = (long)((wait - tv.tv_sec * 1000.0) * 1000);
	evtimer_add(q->ev_timer, &tv);
}

/* resolver_query - see resolver.h */
void
resolver_query(struct resolver *r, const char *name, int type,
    double deadline_ms, dns_cb *cb, void *arg)
{
	struct dns_answer a;
	struct dq *q;
	struct cache_entry *e;
	char	key[DNS_NAME_MAX + 16];

	if (r == NULL || r->closing) {
		memset(&a, 0, sizeof(a));
		a.status = DNS_SHUTDOWN;
		cb(arg, &a);
		return;
	}
	r->stats.queries++;
	if ((q = calloc(1, sizeof(*q))) == NULL)
		fatalx("out of memory");
	q->r = r;
	q->fd = -1;
	q->type = type;
	q->cb = cb;
	q->arg = arg;
	q->deadline_ms = deadline_ms;
	q->last_error = DNS_TIMEOUT;
	snprintf(q->name, sizeof(q->name), "%s", name);
	TAILQ_INSERT_TAIL(&r->pending, q, link);
	if ((q->ev_timer = evtimer_new(r->base, dq_timer, q)) == NULL)
		fatalx("out of memory");
	if (deadline_ms > 0 && resolver_now_ms() >= deadline_ms) {
		q->ans.status = DNS_BUDGET;
		q->delivering = 1;
		event_active(q->ev_timer, EV_TIMEOUT, 1);
		return;
	}
	cache_key(key, sizeof(key), type, name);
	if ((e = cache_get(r, key)) != NULL) {
		r->stats.cache_hits++;
		if (answer_copy(&q->ans, &e->ans) == 0) {
			q->delivering = 1;
			event_active(q->ev_timer, EV_TIMEOUT, 1);
			return;
		}
	}
	if (!dns_name_valid(name) || (q->qlen = dns_build_query(q->query,
	    sizeof(q->query), 0, name, type)) < 0) {
		/* a name that cannot be asked does not exist */
		q->ans.status = DNS_NXDOMAIN;
		q->delivering = 1;
		event_active(q->ev_timer, EV_TIMEOUT, 1);
		return;
	}
	dq_attempt(q);
}

/* resolver_free - answer everything in flight, then free */
void
resolver_free(struct resolver *r)
{
	if (r == NULL)
		return;
	r->closing = 1;
	while (!TAILQ_EMPTY(&r->pending))
		dq_finish(TAILQ_FIRST(&r->pending), DNS_SHUTDOWN);
	while (!TAILQ_EMPTY(&r->lru))
		cache_unlink(r, TAILQ_FIRST(&r->lru));
	free(r->buckets);
	free(r);
}

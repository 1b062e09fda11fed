/*++
 * NAME
 *	resolver.h - the daemon's asynchronous DNS stub resolver
 * DESCRIPTION
 *	One resolver per process, on the daemon's event loop. It never
 *	blocks: every query is a non-blocking UDP socket (a fresh one per
 *	attempt, so the source port is random as well as the 16-bit id)
 *	and, when the answer comes back truncated (TC), a non-blocking TCP
 *	connection to the same server. libevent's evdns resolves only A,
 *	AAAA and PTR, which is why the checks' TXT and MX lookups need this
 *	small client of its own.
 *
 *	Nameservers come from dns.nameservers ("IP", "IP:PORT", "[V6]:PORT")
 *	or, by default, the "nameserver" lines of /etc/resolv.conf
 *	(127.0.0.1 when it has none). An attempt waits timeout_ms; attempts
 *	go round the servers. SERVFAIL, REFUSED and garbage move on to the
 *	next attempt; the last one decides.
 *
 *	A bounded cache (cache_size entries, least recently used evicted)
 *	keeps positive answers for their smallest TTL (at most
 *	cache_max_ttl seconds) and NXDOMAIN / no-data answers for the SOA's
 *	negative TTL (RFC 2308; at most negative_ttl seconds; not at all
 *	without an SOA). Errors are not cached.
 *
 *	resolver_query() calls cb exactly once, always from the event loop
 *	(never from inside resolver_query(), also for cache hits), unless
 *	the resolver is being freed. deadline_ms (a resolver_now_ms() time,
 *	0 = none) is the request's DNS budget: once it passes the query
 *	answers DNS_BUDGET at once. resolver_free() answers every query in
 *	flight DNS_SHUTDOWN before it returns; queries asked meanwhile get
 *	DNS_SHUTDOWN synchronously.
 *
 *	Answers follow CNAME chains inside the answer section (the records
 *	of the asked type owned by the name or its aliases). A reply is
 *	taken only from the server asked, with the same id and question.
 *
 *	dns_build_query() and dns_parse_reply() are pure (unit tests, fuzz).
 *--*/
#ifndef POLICYD_RESOLVER_H
#define POLICYD_RESOLVER_H

#include <stddef.h>
#include <stdint.h>

#define DNS_T_A		1
#define DNS_T_NS	2
#define DNS_T_CNAME	5
#define DNS_T_SOA	6
#define DNS_T_PTR	12
#define DNS_T_MX	15
#define DNS_T_TXT	16
#define DNS_T_AAAA	28

#define DNS_NAME_MAX	255	/* presentation form, without the final dot */
#define DNS_MAX_RR	64	/* records kept per answer */

enum dns_status {
	DNS_OK,			/* at least one record */
	DNS_NXDOMAIN,		/* name does not exist */
	DNS_NODATA,		/* name exists, no record of the type */
	DNS_SERVFAIL,		/* every attempt failed (SERVFAIL, REFUSED, bad) */
	DNS_TIMEOUT,		/* no answer in attempts * timeout_ms */
	DNS_BUDGET,		/* the request's DNS budget ran out */
	DNS_SHUTDOWN		/* the resolver went away */
};

struct dns_rr {
	uint16_t type;
	uint16_t pref;			/* MX preference */
	uint32_t ttl;
	uint8_t	addr[16];		/* A (4 bytes), AAAA */
	char	*data;			/* PTR/MX/CNAME name, TXT strings joined */
	size_t	len;			/* of data, without the NUL */
};

struct dns_answer {
	enum dns_status status;
	int	nrr;
	struct dns_rr *rr;
	int	cached;			/* from the cache */
	int	tcp;			/* came over TCP */
};

struct dns_config {
	char	**nameservers;		/* NULL-ended, or NULL: resolv.conf */
	int	timeout_ms, attempts, budget_ms;
	int	cache_size, cache_max_ttl, negative_ttl;
};

struct dns_stats {
	unsigned long long queries, cache_hits, timeouts, servfails, tcp,
	    budget, nxdomain;
};

struct event_base;
struct resolver;

typedef void dns_cb(void *arg, const struct dns_answer *a);

struct resolver *resolver_new(struct event_base *base,
	    const struct dns_config *cfg);
/* resolver_configure - new servers/timeouts/cache bounds (SIGHUP); 0 or -1 */
int	resolver_configure(struct resolver *r, const struct dns_config *cfg);
void	resolver_free(struct resolver *r);
void	resolver_query(struct resolver *r, const char *name, int type,
	    double deadline_ms, dns_cb *cb, void *arg);
const struct dns_stats *resolver_stats(const struct resolver *r);
int	resolver_cache_count(const struct resolver *r);
double	resolver_now_ms(void);		/* monotonic milliseconds */

/* resolver_parse_server - "IP", "IP:PORT", "[V6]:PORT" (port 53 default); 0/-1 */
struct sockaddr_storage;
int	resolver_parse_server(const char *s, struct sockaddr_storage *ss,
	    unsigned *sslen);

/* dns_build_query - a query (RD set) into buf; its length, or -1 */
int	dns_build_query(uint8_t *buf, size_t len, uint16_t id,
	    const char *name, int type);

/*
 * dns_parse_reply - check a reply against the question and decode it
 * into *a (caller frees with dns_answer_free). Returns 0 when decoded
 * (a->status OK/NXDOMAIN/NODATA; *negttl gets the SOA's negative TTL or
 * 0), 1 for a truncated reply (TC: ask over TCP), 2 for a server error
 * (SERVFAIL, REFUSED, ...: try another attempt), -1 for a reply that is
 * not ours or is malformed (ignore it).
 */
int	dns_parse_reply(const uint8_t *msg, size_t len, uint16_t id,
	    const char *name, int type, struct dns_answer *a,
	    uint32_t *negttl);
void	dns_answer_free(struct dns_answer *a);

const char *dns_type_name(int type);
const char *dns_status_name(enum dns_status st);

/* dns_name_valid - a name we can ask for: labels 1..63, total <= 253 */
int	dns_name_valid(const char *name);

#endif

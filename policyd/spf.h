/*++
 * NAME
 *	spf.h - Sender Policy Framework (RFC 7208): records, macros, check_host()
 * DESCRIPTION
 *	spf_parse() turns the text of one "v=spf1" record into terms
 *	(mechanisms with qualifier, domain-spec, dual CIDR lengths; the
 *	redirect= and exp= modifiers); syntax errors are permerror.
 *	spf_expand() expands a macro-string (section 7) for a domain-spec or,
 *	with exp set, an explanation (where %{c}, %{r}, %{t} are allowed and
 *	so are spaces). Both are pure: no I/O, bounded output, any bytes.
 *
 *	spf_check() is check_host() on the asynchronous resolver: the
 *	record of the domain, then its terms in order, one DNS question at a
 *	time. Limits: 10 DNS mechanisms and modifiers (include, a, mx, ptr,
 *	exists, redirect), 2 void lookups (NXDOMAIN or no data), 10 MX names
 *	per mx (more is permerror), 10 PTR names per ptr (the rest ignored),
 *	and the resolver's DNS budget (deadline_ms). exp= is fetched for a
 *	fail of the top-level record only and never counts. DNS errors give
 *	temperror (ptr: no match); budget says when it was the budget. The
 *	"p" macro is the caller's verified client name (Postfix client_name),
 *	or "unknown": policyd asks no PTR question for it.
 *
 *	done is called exactly once (possibly before spf_check returns, for
 *	an identity without a usable domain); trace (may be NULL) gets one
 *	line per DNS answer and mechanism.
 *--*/
#ifndef POLICYD_SPF_H
#define POLICYD_SPF_H

#include <stddef.h>

#include "addr.h"

enum spf_result {
	SPF_NONE, SPF_NEUTRAL, SPF_PASS, SPF_FAIL, SPF_SOFTFAIL,
	SPF_TEMPERROR, SPF_PERMERROR
};
#define SPF_NRESULTS	7

const char *spf_result_name(enum spf_result r);
int	spf_result_parse(const char *name);	/* -1 when unknown */

enum spf_mech {
	SPF_M_ALL, SPF_M_INCLUDE, SPF_M_A, SPF_M_MX, SPF_M_PTR, SPF_M_IP4,
	SPF_M_IP6, SPF_M_EXISTS
};

struct spf_term {
	char	qual;			/* '+', '-', '~', '?' */
	enum spf_mech mech;
	char	*spec;			/* domain-spec, or NULL (current domain) */
	int	cidr4, cidr6;		/* 32 / 128 when not given */
	struct ipaddr ip;		/* ip4 / ip6 network */
};

struct spf_record {
	struct spf_term *terms;
	int	nterms;
	char	*redirect, *exp;	/* domain-specs, or NULL */
	int	has_all;
};

/* spf_is_record - does a TXT string start an SPF record ("v=spf1" SP / end)? */
int	spf_is_record(const char *txt, size_t len);

/* spf_parse - one record; 0, or -1 (permerror) with the reason in err */
int	spf_parse(const char *text, struct spf_record *rec, char *err,
	    size_t errlen);
void	spf_record_free(struct spf_record *rec);

struct spf_vars {
	const char *sender;		/* <sender>: "local@domain" */
	const char *local;		/* its local part ("postmaster" if none) */
	const char *sender_domain;	/* "o" */
	const char *domain;		/* "d": the current domain */
	const char *helo;		/* "h" */
	const char *receiver;		/* "r" */
	const char *ptr_name;		/* "p", or NULL for "unknown" */
	struct ipaddr ip;		/* "i", "c", "v" */
	long long now;			/* "t" */
};

/*
 * spf_expand - expand spec into out. A domain-spec (exp == 0) longer
 * than 253 characters loses labels on the left until it fits. 0, or -1
 * for a syntax error (or a letter not allowed there).
 */
int	spf_expand(const char *spec, const struct spf_vars *v, int exp,
	    char *out, size_t outlen);

struct resolver;

struct spf_query {
	struct ipaddr ip;
	const char *sender;		/* MAIL FROM ("" = null sender) */
	const char *helo;
	const char *receiver;		/* our host name, for %{r} */
	const char *ptr_name;		/* verified client name or NULL */
	int	helo_identity;		/* check "postmaster@HELO" */
	long long now;
	double	deadline_ms;		/* resolver budget (resolver.h) */
};

struct spf_outcome {
	enum spf_result result;
	int	budget;			/* the DNS budget ran out */
	int	dns_mechs, voids;	/* DNS mechanisms and void lookups used */
	char	domain[256];		/* the identity's domain */
	char	detail[256];		/* the matching term, or the error */
	char	explanation[512];	/* fail: exp= text, or empty */
};

typedef void spf_done_fn(void *arg, const struct spf_outcome *o);
typedef void spf_trace_fn(void *arg, const char *line);

void	spf_check(struct resolver *r, const struct spf_query *q,
	    spf_done_fn *done, spf_trace_fn *trace, void *arg);

#endif

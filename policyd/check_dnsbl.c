/*++
 * NAME
 *	check_dnsbl.c - the dnsbl check: weighted DNS lists, queried in parallel
 * DESCRIPTION
 *	sites lists postscreen-style entries (dnsbl.h). Every zone is asked
 *	once, all at the same time; each site whose pattern matches an A
 *	record of its zone's answer adds its weight. The score is kept on
 *	the request (ev->dnsbl_score, the dnsbl_score condition of later
 *	rules). At or above threshold the check answers listed_action (%a client
 *	address, %l the sites that matched, %s the score). Below it, a list
 *	that did not answer (timeout, SERVFAIL, the DNS budget) makes the
 *	check CHECK_TEMPFAIL: the rule's on_error, since the score may be
 *	low only for lack of answers. Authenticated clients and
 *	skip_networks (loopback by default) are not looked up.
 *--*/
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dnsbl.h"
#include "log.h"
#include "maps.h"
#include "resolver.h"
#include "check_util.h"
#include "rules.h"

#define DNSBL_MAX_SITES	32
#define DNSBL_CODES	"als"

struct dnsbl_cfg {
	struct dnsbl_site sites[DNSBL_MAX_SITES];
	int	nsites;
	char	zones[DNSBL_MAX_SITES][254];	/* distinct zones */
	int	nzones;
	int	threshold, skip_auth;
	char	*action;
	struct cidrmap *skip;
};

static const char *const dnsbl_keys[] = {
	"sites", "threshold", "listed_action", "skip_authenticated", "skip_networks",
	NULL
};

/* dnsbl_free - release the options */
static void
dnsbl_cfg_free(void *priv)
{
	struct dnsbl_cfg *g = priv;

	free(g->action);
	if (g->skip)
		cidrmap_free(g->skip);
	free(g);
}

/* dnsbl_compile - read the rule's options */
static int
dnsbl_compile(const config_setting_t *rs, const struct config *c,
    void **priv, char *err, size_t errlen)
{
	struct dnsbl_cfg *g = calloc(1, sizeof(*g));
	const config_setting_t *s;
	char	why[256];
	int	n;

	if (g == NULL)
		return -1;
	g->threshold = 1;
	g->skip_auth = 1;
	if ((s = config_setting_get_member(rs, "sites")) == NULL) {
		snprintf(err, errlen, "%s:%d: dnsbl: sites is required (e.g. "
		    "[ \"zen.spamhaus.org=127.0.0.[2..11]*3\" ])", c->path,
		    config_setting_source_line(rs));
		goto fail;
	}
	n = config_setting_type(s) == CONFIG_TYPE_STRING ? 1 :
	    config_setting_type(s) == CONFIG_TYPE_ARRAY ||
	    config_setting_type(s) == CONFIG_TYPE_LIST ?
	    config_setting_length(s) : -1;
	if (n <= 0 || n > DNSBL_MAX_SITES) {
		snprintf(err, errlen, "%s:%d: sites: expected 1 to %d strings",
		    c->path, config_setting_source_line(s), DNSBL_MAX_SITES);
		goto fail;
	}
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_type(s) ==
		    CONFIG_TYPE_STRING ? s : config_setting_get_elem(s, i);
		const char *v = config_setting_get_string(e);
		int	known = 0;

		if (v == NULL || dnsbl_parse(v, &g->sites[i], why,
		    sizeof(why)) < 0) {
			snprintf(err, errlen, "%s:%d: sites: entry %d: %s", c->path,
			    config_setting_source_line(e), i + 1, v ? why :
			    "expected a string");
			goto fail;
		}
		for (int z = 0; z < g->nzones; z++)
			if (strcmp(g->zones[z], g->sites[i].zone) == 0)
				known = 1;
		if (!known)
			memcpy(g->zones[g->nzones++], g->sites[i].zone,
			    sizeof(g->zones[0]));	/* same size, NUL inside */
	}
	g->nsites = n;
	if ((s = config_setting_get_member(rs, "threshold")) != NULL) {
		if (config_setting_type(s) != CONFIG_TYPE_INT) {
			snprintf(err, errlen, "%s:%d: threshold: expected an "
			    "integer", c->path, config_setting_source_line(s));
			goto fail;
		}
		g->threshold = config_setting_get_int(s);
		if (g->threshold < -100000 || g->threshold > 100000) {
			snprintf(err, errlen, "%s:%d: threshold: out of range",
			    c->path, config_setting_source_line(s));
			goto fail;
		}
	}
	if ((s = config_setting_get_member(rs, "skip_authenticated")) != NULL) {
		if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
			snprintf(err, errlen, "%s:%d: skip_authenticated: "
			    "expected true or false", c->path,
			    config_setting_source_line(s));
			goto fail;
		}
		g->skip_auth = config_setting_get_bool(s);
	}
	if (check_template(rs, "listed_action", "REJECT 5.7.1 Service unavailable; "
	    "client [%a] blocked using %l", DNSBL_CODES, &g->action, c, err,
	    errlen) < 0 ||
	    check_networks(rs, "skip_networks", &g->skip, c, err, errlen) < 0)
		goto fail;
	*priv = g;
	return 0;
fail:
	dnsbl_cfg_free(g);
	return -1;
}

struct dnsbl_call;

struct dnsbl_zq {
	struct dnsbl_call *k;
	int	zone;
	char	name[300];
};

struct dnsbl_call {
	struct eval *ev;
	const struct dnsbl_cfg *g;
	int	pending, failed, budget, score;
	char	hits[400];
	struct dnsbl_zq zq[DNSBL_MAX_SITES];
};

/* dnsbl_finish - all zones answered */
static void
dnsbl_finish(struct dnsbl_call *k)
{
	struct eval *ev = k->ev;
	const struct dnsbl_cfg *g = k->g;
	char	detail[256], action[EVAL_TEXT], score[16], ip[64];
	const char *vals[3];
	int	n;

	ev->dnsbl_done = 1;
	ev->dnsbl_score = k->score;
	snprintf(detail, sizeof(detail), "dnsbl score %d (threshold %d)%s%s%s",
	    k->score, g->threshold, k->hits[0] ? ": " : "", k->hits,
	    k->failed ? "; some lists did not answer" : "");
	if (k->score >= g->threshold) {
		snprintf(score, sizeof(score), "%d", k->score);
		addr_ip_format(&ev->client_ip, ip, sizeof(ip));
		vals[0] = ip;
		vals[1] = k->hits;
		vals[2] = score;
		check_expand(action, sizeof(action), g->action, DNSBL_CODES, vals);
		free(k);
		eval_check_done(ev, CHECK_MATCH, action, detail);
		return;
	}
	n = k->failed;
	free(k);
	eval_check_done(ev, n ? CHECK_TEMPFAIL : CHECK_NOMATCH, NULL, detail);
}

/* dnsbl_answer - one zone's answer */
static void
dnsbl_answer(void *arg, const struct dns_answer *a)
{
	struct dnsbl_zq *z = arg;
	struct dnsbl_call *k = z->k;
	const struct dnsbl_cfg *g = k->g;
	const char *zone = g->zones[z->zone];
	char	addrs[200];
	size_t	o = 0;

	addrs[0] = '\0';
	if (a->status == DNS_OK) {
		for (int i = 0; i < a->nrr && o + 20 < sizeof(addrs); i++)
			o += snprintf(addrs + o, sizeof(addrs) - o, "%s%u.%u.%u.%u",
			    i ? " " : "", a->rr[i].addr[0], a->rr[i].addr[1],
			    a->rr[i].addr[2], a->rr[i].addr[3]);
		for (int s = 0; s < g->nsites; s++) {
			int	hit = 0;

			if (strcmp(g->sites[s].zone, zone) != 0)
				continue;
			for (int i = 0; i < a->nrr && !hit; i++)
				hit = dnsbl_match(&g->sites[s], a->rr[i].addr);
			if (!hit)
				continue;
			k->score += g->sites[s].weight;
			o = strlen(k->hits);
			snprintf(k->hits + o, sizeof(k->hits) - o, "%s%s",
			    o ? ", " : "", zone);
		}
	} else if (a->status != DNS_NXDOMAIN && a->status != DNS_NODATA) {
		k->failed++;
		if (a->status == DNS_BUDGET)
			k->budget = 1;
	}
	eval_trace(k->ev, "    dnsbl: A %s: %s%s", z->name, a->status == DNS_OK ?
	    addrs : dns_status_name(a->status), a->cached ? " (cached)" : "");
	if (--k->pending == 0)
		dnsbl_finish(k);
}

/* dnsbl_run - ask every zone at once */
static void
dnsbl_run(void *priv, struct eval *ev)
{
	const struct dnsbl_cfg *g = priv;
	struct dnsbl_call *k;
	int	n = g->nzones;
	struct resolver *r = ev->resolver;
	double	deadline;

	if (check_skipped(ev, g->skip_auth, g->skip, "no DNSBL lookup"))
		return;
	if ((k = calloc(1, sizeof(*k))) == NULL) {
		eval_check_done(ev, CHECK_TEMPFAIL, NULL, "out of memory");
		return;
	}
	k->ev = ev;
	k->g = g;
	k->pending = n;
	if (ev->dns_deadline == 0)
		ev->dns_deadline = resolver_now_ms() + ev->cfg->dns.budget_ms;
	deadline = ev->dns_deadline;
	for (int i = 0; i < n; i++) {
		k->zq[i].k = k;
		k->zq[i].zone = i;
		if (dnsbl_query_name(&ev->client_ip, g->zones[i], k->zq[i].name,
		    sizeof(k->zq[i].name)) < 0)
			k->zq[i].name[0] = '\0';	/* answers NXDOMAIN */
	}
	/* k may be gone after the last query (a resolver answering at once) */
	for (int i = 0; i < n; i++) {
		struct dnsbl_zq *z = &k->zq[i];

		resolver_query(r, z->name, DNS_T_A, deadline, dnsbl_answer, z);
		if (i + 1 == n)
			break;
	}
}

const struct check_ops check_dnsbl_ops = {
	.name = "dnsbl",
	.keys = dnsbl_keys,
	.states = STATE_ALL,
	.compile = dnsbl_compile,
	.run = dnsbl_run,
	.free = dnsbl_cfg_free,
};

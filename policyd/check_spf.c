/*++
 * NAME
 *	check_spf.c - the spf check: RFC 7208 on the asynchronous resolver
 * DESCRIPTION
 *	Checks the MAIL FROM identity (the HELO identity for the null
 *	sender; with helo_first, HELO first and its pass or fail decides).
 *	Authenticated clients and skip_networks (loopback by default) are
 *	not checked. Each result has an action template (%e explanation, %r
 *	result, %s sender, %a client address, %d domain); the default for
 *	fail is "550 5.7.23 %e", for the others "header": PREPEND
 *	Received-SPF (RFC 7208 9.1), or DUNNO with header = false. A
 *	temperror caused by the request's DNS budget is CHECK_TEMPFAIL (the
 *	rule's on_error).
 *
 *	The result stays on the request (ev->spf_result, ev->spf_domain) for
 *	the "spf" condition of later rules. A pass also earns ev->spf_grouping
 *	(greylisting by domain, see check_greylist.c) unless the same record
 *	also passes for a probe address that cannot be the sender's (the
 *	client address with its top bit flipped): "+all", "ip4:0.0.0.0/1"
 *	and the like authorise everybody and prove nothing.
 *--*/
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "maps.h"
#include "resolver.h"
#include "check_util.h"
#include "rules.h"
#include "spf.h"

#define SPF_CODES	"erasd"
#define DEF_EXPLANATION	"%{o} does not allow %{c} to send mail for it (SPF fail)"

struct spf_cfg {
	char	*action[SPF_NRESULTS];	/* template, or NULL = header */
	int	header, helo_first, skip_auth, probe;
	struct cidrmap *skip;
	char	*explanation;
	char	*hostname;
};

static const char *const spf_keys[] = {
	"pass_action", "fail_action", "softfail_action", "neutral_action",
	"none_action", "temperror_action", "permerror_action", "header",
	"helo_first", "skip_authenticated", "skip_networks", "probe",
	"explanation", NULL
};

/* spf_free - release the options */
static void
spf_cfg_free(void *priv)
{
	struct spf_cfg *g = priv;

	for (int i = 0; i < SPF_NRESULTS; i++)
		free(g->action[i]);
	if (g->skip)
		cidrmap_free(g->skip);
	free(g->explanation);
	free(g->hostname);
	free(g);
}

/* opt_bool - an optional boolean option */
static int
opt_bool(const config_setting_t *rs, const char *name, int *out,
    const struct config *c, char *err, size_t errlen)
{
	const config_setting_t *s = config_setting_get_member(rs, name);

	if (s == NULL)
		return 0;
	if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
		snprintf(err, errlen, "%s:%d: %s: expected true or false",
		    c->path, config_setting_source_line(s), name);
		return -1;
	}
	*out = config_setting_get_bool(s);
	return 0;
}

/* check_networks - a string or list of CIDRs / "file:PATH" (check.h) */
int
check_networks(const config_setting_t *rs, const char *name,
    struct cidrmap **out, const struct config *c, char *err, size_t errlen)
{
	const config_setting_t *s = config_setting_get_member(rs, name);
	char	why[512], path[4096];
	struct cidrmap *m;
	int	n;

	if ((*out = m = cidrmap_new()) == NULL)
		return -1;
	if (s == NULL) {
		cidrmap_put(m, "127.0.0.0/8", "skip", why, sizeof(why));
		cidrmap_put(m, "::1", "skip", why, sizeof(why));
		return 0;
	}
	n = config_setting_type(s) == CONFIG_TYPE_STRING ? 1 :
	    config_setting_type(s) == CONFIG_TYPE_ARRAY ||
	    config_setting_type(s) == CONFIG_TYPE_LIST ?
	    config_setting_length(s) : -1;
	if (n < 0) {
		snprintf(err, errlen, "%s:%d: %s: expected a list of "
		    "networks", c->path, config_setting_source_line(s), name);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_type(s) ==
		    CONFIG_TYPE_STRING ? s : config_setting_get_elem(s, i);
		const char *v = config_setting_get_string(e);
		int	rc;

		if (v == NULL) {
			snprintf(err, errlen, "%s:%d: %s: expected strings",
			    c->path, config_setting_source_line(e), name);
			return -1;
		}
		if (strncmp(v, "file:", 5) == 0)
			rc = cidrmap_load_file(m, config_path(c, v + 5, path,
			    sizeof(path)), why, sizeof(why));
		else
			rc = cidrmap_put(m, v, "skip", why, sizeof(why));
		if (rc < 0) {
			snprintf(err, errlen, "%s:%d: %s: %s", c->path,
			    config_setting_source_line(e), name, why);
			return -1;
		}
	}
	return 0;
}

/* spf_compile - read the rule's options */
static int
spf_compile(const config_setting_t *rs, const struct config *c, void **priv,
    char *err, size_t errlen)
{
	struct spf_cfg *g = calloc(1, sizeof(*g));
	const config_setting_t *s;
	struct spf_vars v;
	char	name[32], buf[600];

	if (g == NULL)
		return -1;
	g->header = g->skip_auth = g->probe = 1;
	g->hostname = strdup(c->hostname);
	for (int i = 0; i < SPF_NRESULTS; i++) {
		const char *def = i == SPF_FAIL ? "550 5.7.23 %e" : NULL;

		snprintf(name, sizeof(name), "%s_action", spf_result_name(i));
		s = config_setting_get_member(rs, name);
		if (s != NULL && config_setting_type(s) == CONFIG_TYPE_STRING &&
		    strcmp(config_setting_get_string(s), "header") == 0)
			continue;
		if (s == NULL && def == NULL)
			continue;
		if (check_template(rs, name, def, SPF_CODES, &g->action[i], c,
		    err, errlen) < 0)
			goto fail;
	}
	if (opt_bool(rs, "header", &g->header, c, err, errlen) < 0 ||
	    opt_bool(rs, "helo_first", &g->helo_first, c, err, errlen) < 0 ||
	    opt_bool(rs, "skip_authenticated", &g->skip_auth, c, err,
	    errlen) < 0 || opt_bool(rs, "probe", &g->probe, c, err, errlen) < 0 ||
	    check_networks(rs, "skip_networks", &g->skip, c, err, errlen) < 0)
		goto fail;
	g->explanation = strdup(DEF_EXPLANATION);
	if ((s = config_setting_get_member(rs, "explanation")) != NULL) {
		const char *t = config_setting_get_string(s);

		memset(&v, 0, sizeof(v));
		v.sender = v.local = v.sender_domain = v.domain = v.helo = "x";
		v.ip.family = AF_INET;
		if (t == NULL || strlen(t) > 300 || spf_expand(t, &v, 1, buf,
		    sizeof(buf)) < 0) {
			snprintf(err, errlen, "%s:%d: explanation: expected an "
			    "SPF macro-string of at most 300 characters",
			    c->path, config_setting_source_line(s));
			goto fail;
		}
		free(g->explanation);
		g->explanation = strdup(t);
	}
	*priv = g;
	return 0;
fail:
	spf_cfg_free(g);
	return -1;
}

struct spf_call {
	struct eval *ev;
	const struct spf_cfg *g;
	int	stage;			/* 0 HELO first, 1 identity, 2 probe */
	int	helo;			/* the outcome is for the HELO identity */
	struct spf_outcome out;
	char	ip[64];
};

static void spf_answer(struct spf_call *k);

/* kv_value - a Received-SPF value: dot-atom or a quoted string */
static void
kv_value(char *buf, size_t len, const char *v)
{
	size_t	o = 0;
	int	atom = v[0] != '\0';

	for (const char *p = v; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr("!#$%&'*+-/=?^_`{|}~.@",
		    *p) != NULL))
			atom = 0;
	if (atom) {
		snprintf(buf, len, "%.300s", v);
		return;
	}
	buf[o++] = '"';
	for (const char *p = v; *p && o + 3 < len && p - v < 300; p++) {
		unsigned char ch = (unsigned char)*p;

		buf[o++] = ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\' ?
		    '?' : (char)ch;
	}
	buf[o++] = '"';
	buf[o] = '\0';
}

/* comment_text - text safe inside a header comment */
static void
comment_text(char *buf, size_t len, const char *v)
{
	size_t	o = 0;

	for (; *v && o + 1 < len && o < 300; v++) {
		unsigned char ch = (unsigned char)*v;

		buf[o++] = ch < 0x20 || ch >= 0x7f || ch == '(' || ch == ')' ||
		    ch == '\\' ? '?' : (char)ch;
	}
	buf[o] = '\0';
}

/* received_spf - the PREPEND of RFC 7208 9.1 */
static void
received_spf(const struct spf_call *k, char *buf, size_t len)
{
	const struct policy_req *q = k->ev->req;
	const struct spf_outcome *o = &k->out;
	char	who[400], why[300], from[400], helo[400], cm[800];
	const char *h = k->g->hostname;

	if (k->helo)
		snprintf(who, sizeof(who), "HELO %s", q->v[A_HELO_NAME]);
	else
		snprintf(who, sizeof(who), "domain of %s", q->v[A_SENDER]);
	comment_text(why, sizeof(why), o->detail);
	switch (o->result) {
	case SPF_PASS:
		snprintf(cm, sizeof(cm), "%s: %s designates %s as permitted "
		    "sender", h, who, k->ip);
		break;
	case SPF_FAIL:
		snprintf(cm, sizeof(cm), "%s: %s does not designate %s as "
		    "permitted sender", h, who, k->ip);
		break;
	case SPF_SOFTFAIL:
		snprintf(cm, sizeof(cm), "%s: transitioning %s does not "
		    "designate %s as permitted sender", h, who, k->ip);
		break;
	case SPF_NEUTRAL:
		snprintf(cm, sizeof(cm), "%s: %s is neither permitted nor "
		    "denied by %s", h, k->ip, who);
		break;
	case SPF_NONE:
		snprintf(cm, sizeof(cm), "%s: %s does not provide an SPF "
		    "record", h, who);
		break;
	case SPF_TEMPERROR:
		snprintf(cm, sizeof(cm), "%s: error in processing during "
		    "lookup of %s: %s", h, who, why);
		break;
	default:
		snprintf(cm, sizeof(cm), "%s: permanent error in processing "
		    "%s: %s", h, who, why);
		break;
	}
	comment_text(who, sizeof(who), cm);
	kv_value(from, sizeof(from), q->v[A_SENDER]);
	kv_value(helo, sizeof(helo), q->v[A_HELO_NAME]);
	snprintf(buf, len, "PREPEND Received-SPF: %s (%s) client-ip=%s; "
	    "envelope-from=%s; helo=%s; receiver=%s; identity=%s",
	    spf_result_name(o->result), who, k->ip, from, helo, h,
	    k->helo ? "helo" : "mailfrom");
}

/* spf_trace_cb - one line of the evaluation into the explanation */
static void
spf_trace_cb(void *arg, const char *line)
{
	struct spf_call *k = arg;

	eval_trace(k->ev, "    %s%s", k->stage == 2 ? "probe: " : "", line);
}

static void spf_start(struct spf_call *k, int helo, const struct ipaddr *ip);

/* spf_done - one check_host() finished */
static void
spf_done(void *arg, const struct spf_outcome *o)
{
	struct spf_call *k = arg;
	struct eval *ev = k->ev;

	if (k->stage == 2) {
		/* the probe: a record that passes for anybody proves nothing */
		ev->spf_grouping = o->result == SPF_FAIL ||
		    o->result == SPF_SOFTFAIL || o->result == SPF_NEUTRAL;
		eval_trace(ev, "  spf: probe %s: %s", spf_result_name(o->result),
		    ev->spf_grouping ? "the pass earns greylist grouping" :
		    "no grouping (the record does not exclude a foreign "
		    "address)");
		spf_answer(k);
		return;
	}
	if (k->stage == 0 && o->result != SPF_PASS && o->result != SPF_FAIL &&
	    ev->req->len[A_SENDER] > 0) {
		eval_trace(ev, "  spf: HELO %s: %s, checking MAIL FROM",
		    ev->req->v[A_HELO_NAME], spf_result_name(o->result));
		k->stage = 1;
		spf_start(k, 0, &ev->client_ip);
		return;
	}
	k->out = *o;
	ev->spf_result = (int)o->result;
	snprintf(ev->spf_domain, sizeof(ev->spf_domain), "%s", o->domain);
	addr_lower(ev->spf_domain);
	if (o->result == SPF_PASS && !k->helo) {
		if (k->g->probe) {
			struct ipaddr probe = ev->client_ip;

			probe.a[0] ^= 0x80;
			k->stage = 2;
			spf_start(k, 0, &probe);
			return;
		}
		ev->spf_grouping = 1;
	}
	spf_answer(k);
}

/* spf_start - run check_host() for an identity */
static void
spf_start(struct spf_call *k, int helo, const struct ipaddr *ip)
{
	struct eval *ev = k->ev;
	const struct policy_req *q = ev->req;
	struct spf_query sq;

	memset(&sq, 0, sizeof(sq));
	sq.ip = *ip;
	sq.sender = q->v[A_SENDER];
	sq.helo = q->v[A_HELO_NAME];
	sq.receiver = k->g->hostname;
	sq.ptr_name = strcmp(q->v[A_CLIENT_NAME], "unknown") != 0 &&
	    q->len[A_CLIENT_NAME] > 0 ? q->v[A_CLIENT_NAME] : NULL;
	sq.helo_identity = helo;
	sq.now = (long long)ev->now;
	if (ev->dns_deadline == 0)
		ev->dns_deadline = resolver_now_ms() + ev->cfg->dns.budget_ms;
	sq.deadline_ms = ev->dns_deadline;
	if (k->stage != 2)
		k->helo = helo;
	spf_check(ev->resolver, &sq, spf_done, ev->want_trace ? spf_trace_cb :
	    NULL, k);
}

/* spf_answer - turn the outcome into the check's answer */
static void
spf_answer(struct spf_call *k)
{
	struct eval *ev = k->ev;
	const struct spf_outcome *o = &k->out;
	const char *tmpl = k->g->action[o->result];
	char	action[EVAL_TEXT], detail[256], expl[600];
	const char *vals[5];
	struct spf_vars v;

	snprintf(detail, sizeof(detail), "spf %s (%s %s)%s%s",
	    spf_result_name(o->result), k->helo ? "helo" : "mailfrom",
	    o->domain, o->detail[0] ? ": " : "", o->detail);
	if (o->result == SPF_TEMPERROR && o->budget) {
		free(k);
		eval_check_done(ev, CHECK_TEMPFAIL, NULL, detail);
		return;
	}
	if (tmpl == NULL) {
		int	hdr = k->g->header;

		if (hdr)
			received_spf(k, action, sizeof(action));
		free(k);
		eval_check_done(ev, hdr ? CHECK_MATCH : CHECK_NOMATCH, hdr ?
		    action : NULL, detail);
		return;
	}
	if (o->explanation[0] != '\0') {
		snprintf(expl, sizeof(expl), "%s", o->explanation);
	} else {
		const char *at = strrchr(ev->req->v[A_SENDER], '@');

		memset(&v, 0, sizeof(v));
		v.sender = ev->req->v[A_SENDER];
		v.local = "postmaster";
		v.sender_domain = v.domain = o->domain;
		if (!k->helo && at != NULL)
			v.sender_domain = at + 1;
		v.helo = ev->req->v[A_HELO_NAME];
		v.receiver = k->g->hostname;
		v.ip = ev->client_ip;
		v.now = (long long)ev->now;
		if (spf_expand(k->g->explanation, &v, 1, expl, sizeof(expl)) < 0)
			snprintf(expl, sizeof(expl), "SPF %s",
			    spf_result_name(o->result));
	}
	vals[0] = expl;
	vals[1] = spf_result_name(o->result);
	vals[2] = k->ip;
	vals[3] = ev->req->v[A_SENDER];
	vals[4] = o->domain;
	check_expand(action, sizeof(action), tmpl, SPF_CODES, vals);
	free(k);
	eval_check_done(ev, CHECK_MATCH, action, detail);
}

/* spf_run - skip what is not to be checked, then check_host() */
static void
spf_run(void *priv, struct eval *ev)
{
	const struct spf_cfg *g = priv;
	const struct policy_req *q = ev->req;
	struct spf_call *k;
	int	helo;

	if (check_skipped(ev, g->skip_auth, g->skip, "SPF not checked"))
		return;
	helo = q->len[A_SENDER] == 0 || g->helo_first;
	if (helo && q->len[A_HELO_NAME] == 0 && q->len[A_SENDER] == 0) {
		eval_check_done(ev, CHECK_NOMATCH, NULL,
		    "null sender and no HELO name: SPF not checked");
		return;
	}
	if ((k = calloc(1, sizeof(*k))) == NULL) {
		eval_check_done(ev, CHECK_TEMPFAIL, NULL, "out of memory");
		return;
	}
	k->ev = ev;
	k->g = g;
	addr_ip_format(&ev->client_ip, k->ip, sizeof(k->ip));
	k->stage = helo && q->len[A_SENDER] > 0 ? 0 : 1;
	spf_start(k, helo, &ev->client_ip);
}

const struct check_ops check_spf_ops = {
	.name = "spf",
	.keys = spf_keys,
	.states = STATE_MAIL | STATE_RCPT | STATE_DATA | STATE_EOM,
	.compile = spf_compile,
	.run = spf_run,
	.free = spf_cfg_free,
};

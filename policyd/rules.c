/*++
 * NAME
 *	rules.c - rule compilation, conditions and the evaluation driver
 *--*/
#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dnsbl.h"
#include "log.h"
#include "rules.h"
#include "spf.h"

static const struct {
	const char *name;
	unsigned bit;
} state_names[] = {
	{ "CONNECT", STATE_CONNECT }, { "EHLO", STATE_EHLO },
	{ "HELO", STATE_HELO }, { "MAIL", STATE_MAIL }, { "RCPT", STATE_RCPT },
	{ "DATA", STATE_DATA }, { "END-OF-MESSAGE", STATE_EOM },
	{ "VRFY", STATE_VRFY }, { "ETRN", STATE_ETRN },
};

static const char *const rule_keys[] = {
	"name", "match", "check", "action", "mode", "on_error", NULL
};

static const char *const match_keys[] = {
	"protocol_state", "policy_context", "authenticated", "sasl_username",
	"client_address", "client_name", "helo_name", "sender", "recipient",
	"spf", "dnsbl_score", NULL
};

/* rules_state_bit - protocol_state name to bit */
unsigned
rules_state_bit(const char *name)
{
	for (size_t i = 0; i < sizeof(state_names) / sizeof(state_names[0]); i++)
		if (strcasecmp(name, state_names[i].name) == 0)
			return state_names[i].bit;
	return 0;
}

/* key_known - is name in the NULL-ended list? */
static int
key_known(const char *const *keys, const char *name)
{
	for (; keys != NULL && *keys != NULL; keys++)
		if (strcmp(*keys, name) == 0)
			return 1;
	return 0;
}

#define CERR(set, ...) do { \
	char m_[1024]; \
	snprintf(m_, sizeof(m_), __VA_ARGS__); \
	log_errx("%s:%d: %s", c->path, config_setting_source_line(set), m_); \
	errors++; \
} while (0)

/* cond_strings - call fn for each string of a string-or-list setting */
static int
cond_strings(struct config *c, const config_setting_t *set,
    int (*fn)(struct config *, const config_setting_t *, const char *, void *),
    void *arg)
{
	int	errors = 0;

	if (config_setting_type(set) == CONFIG_TYPE_STRING)
		return fn(c, set, config_setting_get_string(set), arg);
	if (config_setting_type(set) != CONFIG_TYPE_ARRAY &&
	    config_setting_type(set) != CONFIG_TYPE_LIST) {
		CERR(set, "%s: expected a string or a list of strings",
		    config_setting_name(set));
		return errors;
	}
	for (int i = 0; i < config_setting_length(set); i++) {
		const config_setting_t *e = config_setting_get_elem(set, i);

		if (config_setting_type(e) != CONFIG_TYPE_STRING) {
			CERR(e, "%s: expected a string", config_setting_name(set));
			continue;
		}
		errors += fn(c, e, config_setting_get_string(e), arg);
	}
	return errors;
}

/* add_state - one protocol_state name */
static int
add_state(struct config *c, const config_setting_t *set, const char *s,
    void *arg)
{
	unsigned *states = arg, bit = rules_state_bit(s);
	int	errors = 0;

	if (bit == 0)
		CERR(set, "unknown protocol_state \"%s\"", s);
	*states |= bit;
	return errors;
}

/* add_spf_result - one SPF result name of the "spf" condition */
static int
add_spf_result(struct config *c, const config_setting_t *set, const char *s,
    void *arg)
{
	unsigned *mask = arg;
	int	r = spf_result_parse(s), errors = 0;

	if (r < 0)
		CERR(set, "spf: unknown result \"%s\" (pass, fail, softfail, "
		    "neutral, none, temperror, permerror)", s);
	else
		*mask |= 1u << r;
	return errors;
}

/* add_map_entry - one entry, or "file:PATH" with one entry per line */
static int
add_map_entry(struct config *c, const config_setting_t *set, const char *s,
    void *arg)
{
	struct map *m = arg;
	char	path[4096], err[512], low[1024];
	int	errors = 0;

	if (strncmp(s, "file:", 5) == 0) {
		if (map_load_file(m, config_path(c, s + 5, path, sizeof(path)),
		    MAP_F_SET, err, sizeof(err)) < 0)
			CERR(set, "%s", err);
		return errors;
	}
	snprintf(low, sizeof(low), "%s", s);
	addr_lower(low);
	if (low[0] == '\0' || map_put(m, low, "") < 0)
		CERR(set, "bad entry \"%s\"", s);
	return errors;
}

/* add_cidr_entry - one network, or "file:PATH" */
static int
add_cidr_entry(struct config *c, const config_setting_t *set, const char *s,
    void *arg)
{
	struct cidrmap *m = arg;
	char	path[4096], err[512];
	int	errors = 0;

	if (strncmp(s, "file:", 5) == 0) {
		if (cidrmap_load_list(m, config_path(c, s + 5, path,
		    sizeof(path)), err, sizeof(err)) < 0)
			CERR(set, "%s", err);
		return errors;
	}
	if (cidrmap_put(m, s, "match", err, sizeof(err)) < 0)
		CERR(set, "client_address: %s", err);
	return errors;
}

/* compile_map - a string-set condition */
static int
compile_map(struct config *c, const config_setting_t *set, struct map **mp)
{
	if ((*mp = map_new()) == NULL)
		fatalx("out of memory");
	return cond_strings(c, set, add_map_entry, *mp);
}

/* cond_compile - the "match" group of a rule */
static int
cond_compile(struct config *c, const config_setting_t *m, struct cond *cd)
{
	const config_setting_t *set;
	int	errors = 0;

	memset(cd, 0, sizeof(*cd));
	cd->sasl = -1;
	cd->states = STATE_RCPT;
	if (m == NULL)
		return 0;
	if (config_setting_type(m) != CONFIG_TYPE_GROUP) {
		CERR(m, "match: expected a group { ... }");
		return errors;
	}
	for (int i = 0; i < config_setting_length(m); i++) {
		set = config_setting_get_elem(m, i);
		if (!key_known(match_keys, config_setting_name(set)))
			CERR(set, "unknown condition \"%s\"",
			    config_setting_name(set));
	}
	if ((set = config_setting_get_member(m, "protocol_state")) != NULL) {
		cd->states = 0;
		errors += cond_strings(c, set, add_state, &cd->states);
	}
	if ((set = config_setting_get_member(m, "policy_context")) != NULL) {
		if (config_setting_type(set) != CONFIG_TYPE_STRING)
			CERR(set, "policy_context: expected a string");
		else
			cd->policy_context = strdup(config_setting_get_string(set));
	}
	if ((set = config_setting_get_member(m, "authenticated")) != NULL) {
		if (config_setting_type(set) != CONFIG_TYPE_BOOL)
			CERR(set, "authenticated: expected true or false");
		else
			cd->sasl = config_setting_get_bool(set);
	}
	if ((set = config_setting_get_member(m, "sasl_username")) != NULL)
		errors += compile_map(c, set, &cd->sasl_login);
	if ((set = config_setting_get_member(m, "client_name")) != NULL)
		errors += compile_map(c, set, &cd->client_name);
	if ((set = config_setting_get_member(m, "helo_name")) != NULL)
		errors += compile_map(c, set, &cd->helo_name);
	if ((set = config_setting_get_member(m, "sender")) != NULL)
		errors += compile_map(c, set, &cd->sender);
	if ((set = config_setting_get_member(m, "recipient")) != NULL)
		errors += compile_map(c, set, &cd->recipient);
	if ((set = config_setting_get_member(m, "spf")) != NULL)
		errors += cond_strings(c, set, add_spf_result, &cd->spf);
	if ((set = config_setting_get_member(m, "dnsbl_score")) != NULL) {
		if (config_setting_type(set) != CONFIG_TYPE_STRING ||
		    dnsbl_cond_parse(config_setting_get_string(set),
		    &cd->dnsbl_op, &cd->dnsbl_value) < 0)
			CERR(set, "dnsbl_score: expected an operator and a "
			    "number, e.g. \">= 3\"");
	}
	if ((set = config_setting_get_member(m, "client_address")) != NULL) {
		if ((cd->client_address = cidrmap_new()) == NULL)
			fatalx("out of memory");
		errors += cond_strings(c, set, add_cidr_entry,
		    cd->client_address);
	}
	return errors;
}

/* cond_free - release a rule's conditions */
static void
cond_free(struct cond *cd)
{
	free(cd->policy_context);
	if (cd->sasl_login)
		map_free(cd->sasl_login);
	if (cd->client_name)
		map_free(cd->client_name);
	if (cd->helo_name)
		map_free(cd->helo_name);
	if (cd->sender)
		map_free(cd->sender);
	if (cd->recipient)
		map_free(cd->recipient);
	if (cd->client_address)
		cidrmap_free(cd->client_address);
}

/* get_action - a string setting that must be a valid action */
static char *
get_action(struct config *c, const config_setting_t *set, int *errs)
{
	char	err[256];
	int	errors = 0;
	const char *s;

	if (config_setting_type(set) != CONFIG_TYPE_STRING) {
		CERR(set, "%s: expected an action string",
		    config_setting_name(set));
		*errs += errors;
		return NULL;
	}
	s = config_setting_get_string(set);
	if (action_parse(s, err, sizeof(err)) == ACT_INVALID) {
		CERR(set, "%s: %s", config_setting_name(set), err);
		*errs += errors;
		return NULL;
	}
	return strdup(s);
}

/* rule_compile - one element of "rules" */
static int
rule_compile(struct config *c, const config_setting_t *rs, struct rule *r,
    int idx)
{
	const config_setting_t *set;
	const char *s;
	int	errors = 0;

	r->line = config_setting_source_line(rs);
	if (config_setting_type(rs) != CONFIG_TYPE_GROUP) {
		CERR(rs, "rule %d: expected a group { ... }", idx + 1);
		return errors;
	}
	if (config_setting_lookup_string(rs, "name", &s))
		r->name = strdup(s);
	else {
		char	buf[32];

		snprintf(buf, sizeof(buf), "rule%d", idx + 1);
		r->name = strdup(buf);
	}
	if ((set = config_setting_get_member(rs, "check")) != NULL) {
		if (config_setting_type(set) != CONFIG_TYPE_STRING)
			CERR(set, "check: expected a check name");
		else if ((r->check = check_find(config_setting_get_string(set)))
		    == NULL)
			CERR(set, "rule \"%s\": unknown check \"%s\"", r->name,
			    config_setting_get_string(set));
	}
	for (int i = 0; i < config_setting_length(rs); i++) {
		const config_setting_t *e = config_setting_get_elem(rs, i);
		const char *n = config_setting_name(e);

		if (!key_known(rule_keys, n) &&
		    !(r->check && key_known(r->check->keys, n)))
			CERR(e, "rule \"%s\": unknown setting \"%s\"%s", r->name,
			    n, r->check ? "" : " (no check given)");
	}
	errors += cond_compile(c, config_setting_get_member(rs, "match"),
	    &r->cond);
	if ((set = config_setting_get_member(rs, "action")) != NULL)
		r->action = get_action(c, set, &errors);
	if ((r->check != NULL) == (set != NULL))
		CERR(rs, "rule \"%s\": give exactly one of check or action",
		    r->name);
	if ((set = config_setting_get_member(rs, "on_error")) != NULL)
		r->on_error = get_action(c, set, &errors);
	if (r->on_error == NULL)
		r->on_error = strdup("DUNNO");
	if ((set = config_setting_get_member(rs, "mode")) != NULL) {
		s = config_setting_get_string(set);
		if (s != NULL && strcmp(s, "dry-run") == 0)
			r->dry_run = 1;
		else if (s == NULL || strcmp(s, "enforce") != 0)
			CERR(set, "mode: expected \"enforce\" or \"dry-run\"");
	}
	if (r->check != NULL && errors == 0) {
		char	err[512];

		if ((r->cond.states & ~r->check->states) != 0) {
			CERR(rs, "rule \"%s\": check %s cannot work at every "
			    "protocol_state this rule matches; restrict "
			    "match.protocol_state", r->name, r->check->name);
		} else if (r->check->compile(rs, c, &r->check_priv, err,
		    sizeof(err)) < 0) {
			log_errx("%s", err);
			errors++;
		}
	}
	return errors;
}

/* rules_compile - build the rule array */
int
rules_compile(struct config *c, const config_setting_t *list)
{
	int	errors = 0, n;

	if (list == NULL) {
		c->rules = NULL;
		c->nrules = 0;
		return 0;
	}
	if (config_setting_type(list) != CONFIG_TYPE_LIST) {
		CERR(list, "rules: expected a list ( { ... }, ... )");
		return errors;
	}
	n = config_setting_length(list);
	c->rules = calloc(n ? n : 1, sizeof(*c->rules));
	c->nrules = n;
	for (int i = 0; i < n; i++)
		errors += rule_compile(c, config_setting_get_elem(list, i),
		    &c->rules[i], i);
	for (int i = 0; i < n; i++)
		for (int j = 0; j < i; j++)
			if (c->rules[i].name && c->rules[j].name &&
			    strcmp(c->rules[i].name, c->rules[j].name) == 0) {
				log_errx("%s:%d: duplicate rule name \"%s\"",
				    c->path, c->rules[i].line, c->rules[i].name);
				errors++;
			}
	return errors;
}

/* rules_free - release compiled rules */
void
rules_free(struct rule *r, int n)
{
	for (int i = 0; i < n; i++) {
		if (r[i].check && r[i].check_priv)
			r[i].check->free(r[i].check_priv);
		cond_free(&r[i].cond);
		free(r[i].name);
		free(r[i].action);
		free(r[i].on_error);
	}
	free(r);
}

/* a reason costs a snprintf: only when somebody reads it */
#define WHY(...) do { if (why != NULL) snprintf(why, whylen, __VA_ARGS__); } while (0)

/* cond_match - do all conditions hold? (why may be NULL) */
int
cond_match(const struct cond *cd, const struct eval *ev, char *why,
    size_t whylen)
{
	const struct policy_req *q = ev->req;

	if ((cd->states & ev->state_bit) == 0) {
		WHY("protocol_state %s not matched",
		    q->v[A_PROTOCOL_STATE]);
		return 0;
	}
	if (cd->policy_context &&
	    strcmp(cd->policy_context, q->v[A_POLICY_CONTEXT]) != 0) {
		WHY("policy_context is not \"%s\"",
		    cd->policy_context);
		return 0;
	}
	if (cd->sasl >= 0 && (q->len[A_SASL_USERNAME] > 0) != cd->sasl) {
		WHY("client is %sauthenticated",
		    cd->sasl ? "not " : "");
		return 0;
	}
	/* map lookups lowercase each candidate themselves: no copy, no bound */
	if (cd->sasl_login && map_get(cd->sasl_login,
	    q->v[A_SASL_USERNAME]) == NULL) {
		WHY("sasl_username not listed");
		return 0;
	}
	if (cd->client_address && (!ev->client_ip_ok ||
	    cidrmap_lookup(cd->client_address, &ev->client_ip) == NULL)) {
		WHY("client_address not listed");
		return 0;
	}
	if (cd->client_name && map_lookup_domain(cd->client_name,
	    q->v[A_CLIENT_NAME], NULL, 0) == NULL) {
		WHY("client_name not listed");
		return 0;
	}
	if (cd->helo_name && map_lookup_domain(cd->helo_name,
	    q->v[A_HELO_NAME], NULL, 0) == NULL) {
		WHY("helo_name not listed");
		return 0;
	}
	if (cd->sender && map_lookup_address(cd->sender, q->v[A_SENDER], '+',
	    NULL, 0) == NULL) {
		WHY("sender not listed");
		return 0;
	}
	if (cd->recipient && map_lookup_address(cd->recipient,
	    q->v[A_RECIPIENT], '+', NULL, 0) == NULL) {
		WHY("recipient not listed");
		return 0;
	}
	if (cd->spf && (ev->spf_result < 0 ||
	    (cd->spf & (1u << ev->spf_result)) == 0)) {
		WHY("spf result %s not listed", ev->spf_result < 0 ?
		    "(not evaluated)" : spf_result_name(ev->spf_result));
		return 0;
	}
	if (cd->dnsbl_op && (!ev->dnsbl_done ||
	    !dnsbl_cond_holds(cd->dnsbl_op, cd->dnsbl_value, ev->dnsbl_score))) {
		if (ev->dnsbl_done)
			WHY("dnsbl score %d does not hold", ev->dnsbl_score);
		else
			WHY("no dnsbl score (no dnsbl rule ran)");
		return 0;
	}
	WHY("conditions matched");
	return 1;
}

/* eval_trace_line - append one line to the explanation (eval_trace) */
void
eval_trace_line(struct eval *ev, const char *fmt, ...)
{
	va_list ap;
	int	n;

	if (!ev->want_trace)
		return;
	for (;;) {
		size_t	room = ev->tcap - ev->tlen;

		if (ev->trace != NULL) {
			va_start(ap, fmt);
			n = vsnprintf(ev->trace + ev->tlen, room, fmt, ap);
			va_end(ap);
			if (n >= 0 && (size_t)n + 1 < room) {
				ev->tlen += n;
				ev->trace[ev->tlen++] = '\n';
				ev->trace[ev->tlen] = '\0';
				return;
			}
		}
		if (ev->tcap > 1024 * 1024)
			return;
		ev->tcap = ev->tcap ? ev->tcap * 2 : 1024;
		ev->trace = realloc(ev->trace, ev->tcap);
		if (ev->trace == NULL)
			fatalx("out of memory");
		ev->trace[ev->tlen] = '\0';
	}
}

/* rules_eval_init - derived inputs */
void
rules_eval_init(struct eval *ev)
{
	const struct policy_req *q = ev->req;
	char	buf[64];

	ev->state_bit = q->len[A_PROTOCOL_STATE] ?
	    rules_state_bit(q->v[A_PROTOCOL_STATE]) : 0;
	ev->client_ip_ok = q->len[A_CLIENT_ADDRESS] < sizeof(buf) &&
	    addr_ip_parse(q->v[A_CLIENT_ADDRESS], &ev->client_ip) == 0;
	ev->next_rule = 0;
	ev->rule = ev->nf_rule = NULL;
	ev->action[0] = ev->nf_action[0] = ev->detail[0] = '\0';
	ev->tempfail = 0;
	ev->ccharged = ev->ncharged = 0;
	ev->dns_deadline = 0;
	ev->spf_result = -1;
	ev->spf_domain[0] = '\0';
	ev->spf_grouping = 0;
	ev->dnsbl_done = 0;
	ev->dnsbl_score = 0;
}

/* rules_result - apply one rule's result; 1 when it decides */
static int
rules_result(struct eval *ev, const struct rule *r, const char *action,
    const char *detail)
{
	char	err[256];
	enum action_kind k = action_parse(action, err, sizeof(err));

	if (k == ACT_INVALID) {
		log_warnx("rule %s: check produced an invalid action (%s): "
		    "answering DUNNO", r->name, err);
		eval_trace(ev, "  result: invalid action (%s), DUNNO", err);
		return 0;
	}
	if (r->dry_run && k != ACT_DUNNO) {
		eval_trace(ev, "  dry-run: would answer \"%s\"", action);
		if (action_is_final(k) && ev->nf_rule == NULL) {
			ev->nf_rule = r;
			snprintf(ev->nf_action, sizeof(ev->nf_action),
			    "WARN policyd dry-run: rule %s would answer %s",
			    r->name, action);
			text_copy(ev->detail, sizeof(ev->detail),
			    detail ? detail : "");
		}
		return 0;
	}
	if (action_is_final(k)) {
		ev->rule = r;
		text_copy(ev->action, sizeof(ev->action), action);
		text_copy(ev->detail, sizeof(ev->detail), detail ? detail : "");
		eval_trace(ev, "  result: %s (final)", action);
		return 1;
	}
	if (k != ACT_DUNNO && ev->nf_rule == NULL) {
		ev->nf_rule = r;
		text_copy(ev->nf_action, sizeof(ev->nf_action), action);
		text_copy(ev->detail, sizeof(ev->detail), detail ? detail : "");
		eval_trace(ev, "  result: %s (kept unless a later rule decides)",
		    action);
	} else {
		eval_trace(ev, "  result: %s (evaluation goes on)", action);
		/* "why not": shown in the log line when nothing decides */
		if (detail != NULL && detail[0] != '\0' && ev->nf_rule == NULL &&
		    (log_info_enabled() || ev->want_trace)) {
			/* "%s: %s", name and detail */
			size_t	o;

			text_copy(ev->detail, sizeof(ev->detail) - 2, r->name);
			o = strlen(ev->detail);
			ev->detail[o++] = ':';
			ev->detail[o++] = ' ';
			text_copy(ev->detail + o, sizeof(ev->detail) - o, detail);
		}
	}
	return 0;
}

/* rules_check_result - turn the check's status into a result */
static int
rules_check_result(struct eval *ev, const struct rule *r)
{
	if (ev->ccharged && r->check->undo != NULL &&
	    ev->ncharged < EVAL_MAX_CHARGED)
		ev->charged[ev->ncharged++] = (int)(r - ev->cfg->rules);
	ev->ccharged = 0;
	if (ev->cdetail[0])
		eval_trace(ev, "  check %s: %s", r->check->name, ev->cdetail);
	switch (ev->cstatus) {
	case CHECK_MATCH:
		return rules_result(ev, r, ev->caction, ev->cdetail);
	case CHECK_TEMPFAIL:
		ev->tempfail++;
		eval_trace(ev, "  check %s failed (%s): on_error %s",
		    r->check->name, ev->cdetail, r->on_error);
		return rules_result(ev, r, r->on_error, ev->cdetail);
	default:
		return rules_result(ev, r, "DUNNO", ev->cdetail);
	}
}

/* is_refusal - does this final answer refuse the mail? */
static int
is_refusal(const char *action)
{
	char	err[64];

	switch (action_parse(action, err, sizeof(err))) {
	case ACT_REJECT:
	case ACT_DEFER:
	case ACT_DEFER_IF_PERMIT:
	case ACT_CODE:
	case ACT_DISCARD:
		return 1;
	default:
		return 0;
	}
}

/* rules_undo - a refusal: checks that charged take it back (check.h) */
static void
rules_undo(struct eval *ev)
{
	for (int i = 0; i < ev->ncharged; i++) {
		const struct rule *r = &ev->cfg->rules[ev->charged[i]];

		eval_trace(ev, "undo: rule %s takes back its charge", r->name);
		r->check->undo(r->check_priv, ev);
	}
	ev->ncharged = 0;
}

/* rules_finish - settle the answer and report */
static void
rules_finish(struct eval *ev)
{
	if (ev->rule == NULL) {
		if (ev->nf_rule != NULL) {
			memcpy(ev->action, ev->nf_action, sizeof(ev->action));
			ev->rule = ev->nf_rule;
		} else {
			strcpy(ev->action, "DUNNO");
		}
	}
	if (ev->ncharged > 0 && is_refusal(ev->action))
		rules_undo(ev);
	eval_trace(ev, "answer: %s%s%s", ev->action,
	    ev->rule ? " from rule " : "", ev->rule ? ev->rule->name : "");
	ev->done(ev);
}

/* rules_step - evaluate rules from next_rule until one suspends or decides */
static void
rules_step(struct eval *ev)
{
	const struct config *c = ev->cfg;
	char	why[256];

	ev->running = 1;
	while (ev->next_rule < c->nrules) {
		const struct rule *r = &c->rules[ev->next_rule++];

		if (!cond_match(&r->cond, ev, ev->want_trace ? why : NULL,
		    sizeof(why))) {
			eval_trace(ev, "rule %s: skipped: %s", r->name, why);
			continue;
		}
		eval_trace(ev, "rule %s: %s%s", r->name, why,
		    r->dry_run ? " (dry-run)" : "");
		if (r->action != NULL) {
			if (rules_result(ev, r, r->action, NULL))
				goto decided;
			continue;
		}
		ev->waiting = 1;
		ev->check_returned = 0;
		ev->ccharged = 0;
		ev->cdetail[0] = '\0';
		r->check->run(r->check_priv, ev);
		if (!ev->check_returned) {
			ev->running = 0;
			return;			/* resumes in eval_check_done() */
		}
		if (rules_check_result(ev, r))
			goto decided;
	}
decided:
	ev->running = 0;
	rules_finish(ev);
}

/* eval_check_done - a check has its answer (see check.h) */
void
eval_check_done(struct eval *ev, enum check_status status, const char *action,
    const char *detail)
{
	ev->cstatus = status;
	text_copy(ev->caction, sizeof(ev->caction), action ? action : "");
	text_copy(ev->cdetail, sizeof(ev->cdetail), detail ? detail : "");
	ev->waiting = 0;
	if (ev->running) {
		ev->check_returned = 1;
		return;
	}
	if (rules_check_result(ev, &ev->cfg->rules[ev->next_rule - 1]))
		rules_finish(ev);
	else
		rules_step(ev);
}

/* eval_check_charged - the running check accounted something (check.h) */
void
eval_check_charged(struct eval *ev)
{
	ev->ccharged = 1;
}

/* rules_eval - start the evaluation */
void
rules_eval(struct eval *ev)
{
	ev->next_rule = 0;
	rules_step(ev);
}

/* rules_eval_free - release the trace */
void
rules_eval_free(struct eval *ev)
{
	free(ev->trace);
	ev->trace = NULL;
	ev->tlen = ev->tcap = 0;
}

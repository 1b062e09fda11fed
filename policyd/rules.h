/*++
 * NAME
 *	rules.h - conditions, rules and the evaluation of one request
 * DESCRIPTION
 *	A rule has a name, conditions (all must hold), and either a static
 *	action or one check, a mode (enforce or dry-run) and an on_error
 *	action (DUNNO by default: fail open).
 *
 *	rules_eval() walks the rules in order. The first final result
 *	(anything but DUNNO, PREPEND, WARN, INFO) decides; OK ends the walk
 *	as a whitelist. A non-final result (PREPEND from a greylist pass, WARN
 *	from a dry-run) is kept and answered only when no rule decides; the
 *	first one kept wins. A dry-run rule that would decide is logged and
 *	answered as "WARN" (non-final) instead. A check that TEMPFAILs gives
 *	the rule's on_error action, which is treated like any other result.
 *	When nothing decides the answer is DUNNO.
 *
 *	Evaluation may suspend while a check waits for Redis; done() runs
 *	exactly once, possibly before rules_eval() returns.
 *	With ev->trace set, every step is appended to the trace text for
 *	"policyctl explain".
 *--*/
#ifndef POLICYD_RULES_H
#define POLICYD_RULES_H

#include <stddef.h>
#include <string.h>
#include <time.h>

#include "action.h"
#include "addr.h"
#include "check.h"
#include "config.h"
#include "maps.h"
#include "proto.h"

/* protocol_state bits */
#define STATE_CONNECT	(1u << 0)
#define STATE_EHLO	(1u << 1)
#define STATE_HELO	(1u << 2)
#define STATE_MAIL	(1u << 3)
#define STATE_RCPT	(1u << 4)
#define STATE_DATA	(1u << 5)
#define STATE_EOM	(1u << 6)
#define STATE_VRFY	(1u << 7)
#define STATE_ETRN	(1u << 8)
#define STATE_ALL	0x1ffu

unsigned rules_state_bit(const char *name);	/* 0 when unknown */

struct cond {
	unsigned states;
	char	*policy_context;
	int	sasl;			/* -1 any, 0 unauthenticated, 1 authenticated */
	struct map *sasl_login;		/* set of logins */
	struct cidrmap *client_address;
	struct map *client_name, *helo_name;	/* domain sets */
	struct map *sender, *recipient;		/* address sets */
	unsigned spf;			/* SPF_R_* bits (spf.h), 0 = any */
	int	dnsbl_op;		/* DNSBL_OP_* (dnsbl.h), 0 = any */
	int	dnsbl_value;
};

struct rule {
	char	*name;
	int	line;
	struct cond cond;
	const struct check_ops *check;
	void	*check_priv;
	char	*action;		/* static action, or NULL */
	int	dry_run;
	char	*on_error;
};

#define EVAL_TEXT	1024
#define EVAL_MAX_CHARGED 8

struct store;
struct resolver;
struct eval;
typedef void eval_done_fn(struct eval *ev);

struct eval {
	/* inputs */
	struct config *cfg;		/* referenced for the whole evaluation */
	struct policy_req *req;
	struct store *store;
	struct resolver *resolver;	/* DNS for the checks (resolver.h) */
	time_t	now;
	unsigned state_bit;
	struct ipaddr client_ip;
	int	client_ip_ok;
	eval_done_fn *done;
	void	*done_arg;
	/* progress */
	int	next_rule;
	int	running;		/* inside the rule loop */
	int	waiting;		/* a check is out */
	int	check_returned;		/* check finished while running */
	enum check_status cstatus;
	/* result */
	const struct rule *rule;	/* the deciding rule, or NULL */
	const struct rule *nf_rule;
	int	tempfail;		/* a check answered on_error */
	/* checks that charged (see check.h undo) */
	int	ccharged;		/* set by eval_check_charged() */
	int	ncharged;
	int	charged[EVAL_MAX_CHARGED];	/* rule indexes */
	/* DNS results for later rules (set by the spf and dnsbl checks) */
	double	dns_deadline;		/* the request's DNS budget, 0 = not started */
	int	spf_result;		/* enum spf_result, -1 = not evaluated */
	int	spf_grouping;		/* SPF passed and the record is not promiscuous */
	int	dnsbl_done;		/* dnsbl_score is set */
	int	dnsbl_score;
	/* explanation */
	int	want_trace;
	char	*trace;
	size_t	tlen, tcap;
	/*
	 * The text buffers come last: eval_clear() zeroes everything above
	 * and leaves these empty strings (zeroing 4 KiB per request showed
	 * in its profile). They are only ever read as C strings.
	 */
	char	caction[EVAL_TEXT];	/* the check's result */
	char	cdetail[256];
	char	action[EVAL_TEXT];	/* final answer */
	char	nf_action[EVAL_TEXT];
	char	detail[256];		/* of the deciding (or kept) result */
	char	spf_domain[256];	/* the identity's domain */
};

/* eval_clear - an eval as calloc() would leave it, for its C strings */
static inline void
eval_clear(struct eval *ev)
{
	memset(ev, 0, offsetof(struct eval, caction));
	ev->caction[0] = ev->cdetail[0] = ev->action[0] = '\0';
	ev->nf_action[0] = ev->detail[0] = ev->spf_domain[0] = '\0';
}

/*
 * text_copy - src into dst of len bytes, cut to fit, always terminated
 * (snprintf(dst, len, "%s", src) without the cost of a format)
 */
static inline void
text_copy(char *dst, size_t len, const char *src)
{
	size_t	n = strlen(src);

	if (len == 0)
		return;
	if (n >= len)
		n = len - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* rules_compile - build a[n] from the "rules" list; the number of errors (logged) */
int	rules_compile(struct config *c, const config_setting_t *list);
void	rules_free(struct rule *r, int n);

/* cond_match - pure: do the conditions hold? why receives a reason */
int	cond_match(const struct cond *cd, const struct eval *ev, char *why,
	    size_t whylen);

/* rules_eval_init - fill the derived inputs of ev from its request */
void	rules_eval_init(struct eval *ev);
void	rules_eval(struct eval *ev);
void	rules_eval_free(struct eval *ev);

/*
 * eval_trace - append one line to the explanation (policyd_explain):
 * the arguments are evaluated only when ev wants a trace, so a call
 * costs the evaluation of a request nothing otherwise.
 */
void	eval_trace_line(struct eval *ev, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
#define eval_trace(ev, ...) do {					\
	if ((ev)->want_trace)						\
		eval_trace_line((ev), __VA_ARGS__);			\
} while (0)

#endif

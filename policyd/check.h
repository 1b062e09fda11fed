/*++
 * NAME
 *	check.h - the contract between the rule engine and a check
 * DESCRIPTION
 *	A check is a table of operations. compile() reads the check's own
 *	options from the rule's libconfig group when the configuration is
 *	loaded (errors as "file:line: message" into err; keys[] lists the
 *	option names it accepts, so the loader can reject typos). run() is
 *	called for a request whose rule conditions matched; it must end in
 *	exactly one call of eval_check_done(), synchronously or later from a
 *	store callback:
 *
 *	CHECK_NOMATCH	nothing to say (DUNNO)
 *	CHECK_MATCH	the check answers action (copied by the engine)
 *	CHECK_TEMPFAIL	the check could not decide (Redis down or slow);
 *			the engine answers the rule's on_error action
 *
 *	detail is a short human explanation with the figures used ("first
 *	seen 12 s ago, delay 300 s") for the trace and the log; may be NULL.
 *	states is the mask of protocol states where the check makes sense;
 *	a rule that could run it elsewhere is an error at load time.
 *
 *	undo (optional) takes back what run() accounted: a check that
 *	charged something (a rate limit) calls eval_check_charged() before
 *	eval_check_done(); when the final answer of the same evaluation is
 *	a refusal (REJECT, DEFER, DEFER_IF_PERMIT, 4NN, 5NN, DISCARD), the
 *	engine calls undo() once for it before answering. undo() recomputes
 *	what to refund from the request and sends it fire-and-forget.
 *--*/
#ifndef POLICYD_CHECK_H
#define POLICYD_CHECK_H

#include <stddef.h>
#include <libconfig.h>

struct config;
struct eval;

enum check_status { CHECK_NOMATCH, CHECK_MATCH, CHECK_TEMPFAIL };

struct check_ops {
	const char *name;
	const char *const *keys;	/* accepted option names, NULL-ended */
	unsigned states;		/* STATE_* bits where it can work */
	int	(*compile)(const config_setting_t *rule, const struct config *c,
		    void **priv, char *err, size_t errlen);
	void	(*run)(void *priv, struct eval *ev);
	void	(*free)(void *priv);
	void	(*undo)(void *priv, struct eval *ev);	/* optional */
};

void	eval_check_done(struct eval *ev, enum check_status status,
	    const char *action, const char *detail);
void	eval_check_charged(struct eval *ev);

const struct check_ops *check_find(const char *name);

extern const struct check_ops check_greylist_ops;
extern const struct check_ops check_access_ops;
extern const struct check_ops check_ratelimit_ops;
extern const struct check_ops check_sender_login_ops;
extern const struct check_ops check_relocated_ops;
extern const struct check_ops check_spf_ops;
extern const struct check_ops check_dnsbl_ops;

/*
 * check_networks - the optional CIDR list option name ("NET", "file:PATH",
 * or a list of them) into *out; absent: loopback (127.0.0.0/8, ::1).
 * 0, or -1 with "file:line: message" in err (check_spf.c).
 */
struct cidrmap;
int	check_networks(const config_setting_t *rs, const char *name,
	    struct cidrmap **out, const struct config *c, char *err,
	    size_t errlen);

#endif

/* action_test.c - the access(5) action vocabulary */
#include "action.h"
#include "tap.h"

static const struct {
	const char *text;
	enum action_kind kind;
	int	final;
} cases[] = {
	{ "DUNNO", ACT_DUNNO, 0 },
	{ "dunno", ACT_DUNNO, 0 },
	{ "OK", ACT_OK, 1 },
	{ "REJECT", ACT_REJECT, 1 },
	{ "REJECT 5.7.1 Sender address rejected: not owned by user x", ACT_REJECT, 1 },
	{ "DEFER_IF_PERMIT 4.7.1 Greylisted, please try again in 300 seconds",
	  ACT_DEFER_IF_PERMIT, 1 },
	{ "DEFER_IF_REJECT 4.7.1 later", ACT_DEFER_IF_REJECT, 1 },
	{ "DEFER 4.3.0 try later", ACT_DEFER, 1 },
	{ "551 5.1.6 User has moved; please try <new@example.org>", ACT_CODE, 1 },
	{ "450 4.7.1 slow down", ACT_CODE, 1 },
	{ "HOLD quarantine", ACT_HOLD, 1 },
	{ "DISCARD", ACT_DISCARD, 1 },
	{ "PREPEND X-Greylist: delayed 300 seconds", ACT_PREPEND, 0 },
	{ "WARN dry-run", ACT_WARN, 0 },
	{ "INFO note", ACT_INFO, 0 },
	{ "FILTER smtp:[127.0.0.1]:10025", ACT_FILTER, 1 },
	{ "REDIRECT abuse@example.net", ACT_REDIRECT, 1 },
	{ "600 too big", ACT_INVALID, 0 },
	{ "250 ok", ACT_INVALID, 0 },
	{ "PREPEND no-colon", ACT_INVALID, 0 },
	{ "PREPEND", ACT_INVALID, 0 },
	{ "FILTER nothing", ACT_INVALID, 0 },
	{ "REDIRECT nobody", ACT_INVALID, 0 },
	{ "ACCEPT", ACT_INVALID, 0 },
	{ "", ACT_INVALID, 0 },
	{ "REJECT a\001b", ACT_INVALID, 0 },
	{ "DUNNO\tnothing here", ACT_INVALID, 0 }	/* a tab is a control character */,
	{ "DUNNOX", ACT_INVALID, 0 },
	{ "DUNN", ACT_INVALID, 0 },
	{ "D", ACT_INVALID, 0 },
	{ "DEFER_IF_PERMITX", ACT_INVALID, 0 },
	{ "ok fine", ACT_OK, 1 },
	{ "REJECTED", ACT_INVALID, 0 },
	{ "REDIRECT  x@y", ACT_REDIRECT, 1 },
	{ "DUNNO \033", ACT_INVALID, 0 },
};

int
main(void)
{
	char	err[128];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum action_kind k = action_parse(cases[i].text, err, sizeof(err));

		is_int(k, cases[i].kind, cases[i].text);
		is_int(action_is_final(k), cases[i].final, "final or not");
	}
	return tap_done();
}

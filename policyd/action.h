/*++
 * NAME
 *	action.h - the access(5) action vocabulary
 * DESCRIPTION
 *	action_parse() validates an action text as configured or produced
 *	by a check ("DEFER_IF_PERMIT 4.7.1 Greylisted", "551 5.1.6 ...",
 *	"PREPEND X-Greylist: ...") and tells its kind. A result is final
 *	(decides the request) unless it is DUNNO, PREPEND, WARN or INFO.
 * RESULTS
 *	action_parse() returns the kind, or ACT_INVALID with a reason in err.
 *--*/
#ifndef POLICYD_ACTION_H
#define POLICYD_ACTION_H

#include <stddef.h>

enum action_kind {
	ACT_INVALID = -1,
	ACT_DUNNO, ACT_OK, ACT_REJECT, ACT_DEFER, ACT_DEFER_IF_PERMIT,
	ACT_DEFER_IF_REJECT, ACT_CODE, ACT_HOLD, ACT_DISCARD, ACT_PREPEND,
	ACT_WARN, ACT_INFO, ACT_FILTER, ACT_REDIRECT
};

enum action_kind action_parse(const char *text, char *err, size_t errlen);
int	action_is_final(enum action_kind kind);

#endif

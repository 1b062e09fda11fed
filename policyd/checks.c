/*++
 * NAME
 *	checks.c - the registry of checks (one line per check_NAME.c)
 *--*/
#include <string.h>

#include "check.h"

static const struct check_ops *const all_checks[] = {
	&check_greylist_ops,
	&check_access_ops,
	&check_ratelimit_ops,
	&check_sender_login_ops,
	&check_relocated_ops,
	&check_spf_ops,
	&check_dnsbl_ops,
};

/* check_find - a check by name */
const struct check_ops *
check_find(const char *name)
{
	for (size_t i = 0; i < sizeof(all_checks) / sizeof(all_checks[0]); i++)
		if (strcmp(all_checks[i]->name, name) == 0)
			return all_checks[i];
	return NULL;
}

/*++
 * NAME
 *	conf.h - policyd's configuration as policyctl reads it
 * DESCRIPTION
 *	conf_open() loads the configuration with the daemon's config_load()
 *	(redis settings, rules, metrics.address: every mistake is reported
 *	as policyd -t does) and reads the same file as a libconfig tree for
 *	the options a check keeps to itself (windows, network prefixes).
 *	conf_rule() finds a rule by name, or the first one of a check, and
 *	its group in that tree: rules_compile() compiles the list in order,
 *	so the index is the same. conf_int() reads an integer option of it.
 * CONTRACT
 *	conf_open() returns 0, or CTL_FAIL after a message; conf_close()
 *	releases what it got (also after a failure). conf_rule() returns
 *	NULL after a message (no such rule, not a rule of that check).
 *--*/
#ifndef POLICYD_CTL_CONF_H
#define POLICYD_CTL_CONF_H

#include <libconfig.h>

struct ctl;
struct rule;

/* the daemon's configuration, and the same file as libconfig tree */
struct ctlconf {
	struct config *cfg;		/* config_load(): validated, compiled */
	config_t cf;			/* rule options the checks keep private */
	int	cf_ok;
};

int	conf_open(const struct ctl *ctl, struct ctlconf *cc);
void	conf_close(struct ctlconf *cc);
const struct rule *conf_rule(struct ctlconf *cc, const char *name,
	    const char *check, const config_setting_t **set);
int	conf_int(const config_setting_t *set, const char *name, int def);

#endif

/*
 * conf.c - policyd's configuration as policyctl reads it (conf.h)
 */
#include <string.h>

#include <libconfig.h>

#include "config.h"
#include "log.h"
#include "rules.h"

#include "conf.h"
#include "ctl.h"

/* conf_open - load the configuration with the daemon's own loader */
int
conf_open(const struct ctl *ctl, struct ctlconf *cc)
{
	int	nerrors = 0;

	memset(cc, 0, sizeof(*cc));
	log_init("policyctl", 1, 0);
	log_set_level(LOG_L_WARN);
	if ((cc->cfg = config_load(ctl->config, &nerrors)) == NULL) {
		ctl_err("%s: cannot use this configuration (%d error%s, see "
		    "above; policyd -t -c %s checks it)", ctl->config, nerrors,
		    nerrors == 1 ? "" : "s", ctl->config);
		return CTL_FAIL;
	}
	config_init(&cc->cf);
	cc->cf_ok = 1;
	config_set_include_dir(&cc->cf, cc->cfg->dir);
	if (!config_read_file(&cc->cf, ctl->config)) {
		ctl_err("%s: %s", ctl->config, config_error_text(&cc->cf));
		return CTL_FAIL;
	}
	return 0;
}

/* conf_close - release what conf_open() got */
void
conf_close(struct ctlconf *cc)
{
	if (cc->cf_ok)
		config_destroy(&cc->cf);
	config_unref(cc->cfg);
	memset(cc, 0, sizeof(*cc));
}

/*
 * conf_rule - the rule named name (or, with name NULL, the first one)
 * whose check is check; its libconfig group in *set. NULL after a
 * message.
 */
const struct rule *
conf_rule(struct ctlconf *cc, const char *name, const char *check,
    const config_setting_t **set)
{
	const config_setting_t *list = config_lookup(&cc->cf, "rules");
	char	esc[128];

	for (int i = 0; i < cc->cfg->nrules; i++) {
		const struct rule *r = &cc->cfg->rules[i];

		if (name != NULL && strcmp(r->name, name) != 0)
			continue;
		if (name == NULL && (r->check == NULL ||
		    strcmp(r->check->name, check) != 0))
			continue;
		if (r->check == NULL || strcmp(r->check->name, check) != 0) {
			ctl_err("rule \"%s\" is not a %s rule",
			    log_escape(esc, sizeof(esc), name, strlen(name)),
			    check);
			return NULL;
		}
		/* rules_compile() compiles the list in order: same index */
		if (list == NULL || i >= config_setting_length(list)) {
			ctl_err("%s: rule \"%s\" not found in the file",
			    cc->cfg->path, r->name);
			return NULL;
		}
		*set = config_setting_get_elem(list, i);
		return r;
	}
	if (name != NULL)
		ctl_err("%s: no rule named \"%s\"", cc->cfg->path,
		    log_escape(esc, sizeof(esc), name, strlen(name)));
	else
		ctl_err("%s: no %s rule", cc->cfg->path, check);
	return NULL;
}

/* conf_int - an integer option of a rule, or def */
int
conf_int(const config_setting_t *set, const char *name, int def)
{
	int	v;

	return config_setting_lookup_int(set, name, &v) ? v : def;
}

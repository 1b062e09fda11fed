/*
 * ratelimit.c - policyctl ratelimit show|reset RULE KEY: the counters of
 * one key of a ratelimit rule, read (mode 3) and deleted (mode 4) with the
 * daemon's own script, under the keys the check builds: the tag is its
 * ratelimit_tag() under the installation's secret (fetched with its own
 * ratelimit_secret_ask()), the windows its ratelimit_windows_of()
 * (an override, the @domain's, or the rule's).
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <libconfig.h>

#include "config.h"
#include "log.h"
#include "ratelimit.h"
#include "rules.h"
#include "store.h"

#include "conf.h"
#include "ctl.h"
#include "state.h"

#define RL_ARGS		(3 + 2 * RL_MAX_WIN + 2)

/* what the daemon's ratelimit check knows of one rule and one key */
struct rlview {
	const char *tagname;		/* "name", or "ratelimit" (the check's) */
	const char *count;		/* recipients, messages, bytes */
	struct rl_window win[RL_MAX_WIN];
	int	nwin;
	int	unlimited;
	char	source[300];		/* where the windows come from */
	int	max_networks;
	char	rname[40], nname[40];	/* r{TAG}, n{TAG}: for the scripts */
	char	rkey[320], nkey[320];	/* with the prefix */
};

/* the installation's key-hash secret, as fetched */
struct secret {
	const struct ctlstate *st;
	uint8_t	key[16];
};

/* secret_take - secret.lua's answer as the 16-byte secret */
static int
secret_take(void *arg, const struct store_reply *r)
{
	struct secret *sc = arg;

	if (ratelimit_secret_decode(r, sc->key) == 0)
		return 0;
	ctl_err("redis at %s: unexpected answer from the secret script",
	    sc->st->where);
	return -1;
}

/*
 * rl_view - windows and Redis keys of KEY under the compiled rule r: the
 * check's own ratelimit_windows_of() decides (override, @domain, rule).
 */
static int
rl_view(const struct rule *r, const config_setting_t *set,
    struct ctlstate *st, const char *key, struct rlview *v)
{
	struct secret sc = { st, { 0 } };
	uint64_t tag;
	size_t	kl;

	memset(v, 0, sizeof(*v));
	if (!config_setting_lookup_string(set, "name", &v->tagname))
		v->tagname = "";	/* refused by the loader */
	if (state_start(st, "secret script", ratelimit_secret_ask,
	    secret_take, &sc) < 0)
		return CTL_FAIL;
	if (!config_setting_lookup_string(set, "count", &v->count))
		v->count = "recipients";
	v->max_networks = conf_int(set, "max_networks", 0);
	if (ratelimit_windows_of(r->check_priv, key, v->win, &v->nwin,
	    v->source, sizeof(v->source)) == 1)
		v->unlimited = 1;
	tag = ratelimit_tag(sc.key, v->tagname, key);
	snprintf(v->rname, sizeof(v->rname), "r{%016" PRIx64 "}", tag);
	snprintf(v->nname, sizeof(v->nname), "n{%016" PRIx64 "}", tag);
	if (state_key(st, v->rname, strlen(v->rname), v->rkey,
	    sizeof(v->rkey), &kl) != 0 || state_key(st, v->nname,
	    strlen(v->nname), v->nkey, sizeof(v->nkey), &kl) != 0)
		return CTL_FAIL;
	return 0;
}

/* rl_show - print the windows of v as the script sees them now */
static int
rl_show(struct ctlstate *st, const struct rlview *v)
{
	char	args[3 + 2 * RL_MAX_WIN][24], wt[48];
	const char *argv[RL_ARGS];
	long long r[3 + 2 * RL_MAX_WIN];
	int	n = 0, nr = 0;

	if (v->unlimited) {
		printf("unlimited (%s): nothing is counted\n", v->source);
		return CTL_OK;
	}
	argv[n++] = v->rname;
	snprintf(args[0], sizeof(args[0]), "3");	/* mode 3: show */
	snprintf(args[1], sizeof(args[1]), "0");
	snprintf(args[2], sizeof(args[2]), "%d", v->nwin);
	for (int i = 0; i < v->nwin; i++) {
		snprintf(args[3 + 2 * i], sizeof(args[0]), "%lld",
		    v->win[i].limit);
		snprintf(args[4 + 2 * i], sizeof(args[0]), "%lld",
		    v->win[i].seconds);
	}
	for (int i = 0; i < 3 + 2 * v->nwin; i++)
		argv[n++] = args[i];
	if (state_script(st, SCRIPT_RATELIMIT, 1, n, argv, r,
	    (int)(sizeof(r) / sizeof(r[0])), &nr) < 0)
		return CTL_FAIL;
	if (nr < 2 || r[0] != 4 || r[1] != v->nwin || nr < 2 + 2 * v->nwin) {
		ctl_err("redis at %s: unexpected answer from the ratelimit "
		    "script", st->where);
		return CTL_FAIL;
	}
	printf("windows: %s\n", v->source);
	for (int i = 0; i < v->nwin; i++) {
		long long used = r[2 + 2 * i], left = v->win[i].limit - used;

		ratelimit_window_text(v->win[i].seconds, wt, sizeof(wt));
		printf("  %lld %s per %s (%lld s): used %lld, %lld left",
		    v->win[i].limit, v->count, wt, v->win[i].seconds, used,
		    left > 0 ? left : 0);
		if (used > 0)
			printf(", all free again in %lld s", r[3 + 2 * i]);
		putchar('\n');
	}
	return CTL_OK;
}

/* int_of - an integer reply into *(long long *)arg (else def stays) */
static int
int_of(void *arg, const struct store_reply *r)
{
	if (store_value_type(r->value) == STORE_V_INT)
		*(long long *)arg = store_value_int(r->value);
	return 0;
}

/* rl_networks - the compromised-account set of the key, when kept */
static int
rl_networks(struct ctlstate *st, const struct rlview *v)
{
	const char *av[2] = { "SCARD", v->nkey };
	size_t	al[2] = { 5, strlen(v->nkey) };
	long long n = 0, ttl = -2;

	if (v->max_networks <= 0)
		return CTL_OK;
	if (state_call(st, 2, av, al, int_of, &n) < 0)
		return CTL_FAIL;
	av[0] = "TTL";
	al[0] = 3;
	if (state_call(st, 2, av, al, int_of, &ttl) < 0)
		return CTL_FAIL;
	printf("  client networks: %lld seen (max_networks %d)", n,
	    v->max_networks);
	if (n > 0 && ttl > 0)
		printf(", window ends in %lld s", ttl);
	putchar('\n');
	return CTL_OK;
}

/* rl_reset - delete both keys of v (mode 4), print what went */
static int
rl_reset(struct ctlstate *st, const struct rlview *v)
{
	const char *argv[5] = { v->rname, v->nname, "4", "0", "0" };
	long long r[5];
	int	nr = 0;

	if (state_script(st, SCRIPT_RATELIMIT, 2, 5, argv, r, 5, &nr) < 0)
		return CTL_FAIL;
	if (nr < 2 || r[0] != 5) {
		ctl_err("redis at %s: unexpected answer from the ratelimit "
		    "script", st->where);
		return CTL_FAIL;
	}
	if (r[1] == 0)
		printf("reset: nothing was stored (%s, %s)\n", v->rkey,
		    v->nkey);
	else
		printf("reset: removed %lld key%s (%s, %s): every window is "
		    "free again\n", r[1], r[1] == 1 ? "" : "s", v->rkey,
		    v->nkey);
	return CTL_OK;
}

/* has_upper - any ASCII capital letter? */
static int
has_upper(const char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			return 1;
	return 0;
}

/*
 * cmd_ratelimit - "show RULE KEY" and "reset RULE KEY": the counters of
 * one key, read and reset with the daemon's own script.
 */
int
cmd_ratelimit(const struct ctl *ctl, int argc, char **argv)
{
	struct ctlconf cc;
	struct ctlstate st;
	struct rlview v;
	const config_setting_t *set = NULL;
	const struct rule *r;
	char	esc[600];
	int	reset, status;

	if (argc != 3 || (strcmp(argv[0], "show") != 0 &&
	    strcmp(argv[0], "reset") != 0)) {
		ctl_err("usage: policyctl [-c CONFIG] ratelimit show|reset "
		    "RULE KEY");
		return CTL_USAGE;
	}
	reset = argv[0][0] == 'r';
	if (argv[2][0] == '\0' || strlen(argv[2]) > 2048) {
		ctl_err("KEY: expected the key text, 1 to 2048 bytes");
		return CTL_USAGE;
	}
	if ((status = conf_open(ctl, &cc)) != 0) {
		conf_close(&cc);
		return status;
	}
	if ((r = conf_rule(&cc, argv[1], "ratelimit", &set)) == NULL) {
		conf_close(&cc);
		return CTL_USAGE;
	}
	if ((status = state_open(ctl, cc.cfg, &st)) != 0)
		goto done;
	if ((status = rl_view(r, set, &st, argv[2], &v)) != 0)
		goto done;
	printf("rule %s, key %s (redis %s)\n", r->name,
	    log_escape(esc, sizeof(esc), argv[2], strlen(argv[2])), v.rkey);
	if (has_upper(argv[2]))
		ctl_err("warning: the rule lowercases addresses and logins; "
		    "\"%s\" has capitals and is not a key it builds", esc);
	if ((status = rl_show(&st, &v)) == CTL_OK)
		status = rl_networks(&st, &v);
	if (status == CTL_OK && reset)
		status = rl_reset(&st, &v);
done:
	state_close(&st);
	conf_close(&cc);
	return status;
}

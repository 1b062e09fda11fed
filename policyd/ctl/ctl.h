/*++
 * NAME
 *	ctl.h - policyctl's common options, exit statuses and commands
 * DESCRIPTION
 *	policyctl (policyctl(8)) is a small main (ctl/main.c: options, the
 *	command table, dispatch) and one file per command group:
 *
 *	ask.c		check, explain: one policy request, its answer or
 *			policyd's own trace
 *	ratelimit.c	ratelimit show|reset: a key's counters
 *	greylist.c	greylist list|delete: triplets and counters
 *			(glnet.c: the client networks for a person)
 *	stats.c		stats: /metrics for a person
 *	map.c		map query: a lookup with the daemon's table code
 *
 *	They reach policyd through client.h (the policy protocol and HTTP
 *	over one blocking socket), read its configuration with conf.h (the
 *	daemon's loader) and its Redis with state.h (the daemon's state
 *	layer on an event loop of their own, so that standalone, Sentinel
 *	and Cluster work as in the daemon). Nothing of the daemon is copied:
 *	keys, windows, scripts and the codec come from its own modules.
 * CONTRACT
 *	A command handler gets the common options and the arguments after
 *	its name (a command with verbs dispatches on argv[0] itself), prints
 *	its result on stdout, its errors with ctl_err(), and returns
 *	CTL_OK (answered, done), CTL_FAIL (no answer, Redis or the
 *	configuration failed) or CTL_USAGE (bad arguments, no such rule).
 *--*/
#ifndef POLICYD_CTL_H
#define POLICYD_CTL_H

#include <stddef.h>

#define CTL_OK		0
#define CTL_FAIL	1
#define CTL_USAGE	2

#define CTL_DEFAULT_ADDRESS	"inet:127.0.0.1:10040"
#define CTL_DEFAULT_TIMEOUT	5000		/* ms */
#define CTL_MAX_TIMEOUT		3600000		/* ms: one hour */

#ifndef POLICYD_VERSION
#define POLICYD_VERSION "0.1.0"
#endif

/* options common to every command */
struct ctl {
	const char *address;		/* -s: policyd's listener, as given */
	int	timeout_ms;		/* -t */
	const char *config;		/* -c: policyd's configuration */
	const char *metrics;		/* -m HOST:PORT, or NULL: the config's */
	const char *rule;		/* -r: the greylist rule, NULL: first */
};

/* main.c */
void	ctl_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
long	ctl_parse_int(const char *s, long min, long max);
long long ctl_mono_ms(void);

/* ask.c: the wire form of a check/explain request (unit-tested) */
int	ask_wire(int argc, char **argv, int explain, char **wire,
	    size_t *wirelen);

/* the commands */
int	cmd_check(const struct ctl *ctl, int argc, char **argv);
int	cmd_explain(const struct ctl *ctl, int argc, char **argv);
int	cmd_ratelimit(const struct ctl *ctl, int argc, char **argv);
int	cmd_greylist(const struct ctl *ctl, int argc, char **argv);
int	cmd_stats(const struct ctl *ctl, int argc, char **argv);
int	cmd_map(const struct ctl *ctl, int argc, char **argv);

#endif

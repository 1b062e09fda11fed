/*++
 * NAME
 *	policyctl - ask a running policyd, inspect and reset its Redis state
 *	(see policyctl(8))
 * SYNOPSIS
 *	policyctl [-s ADDRESS] [-p PORT] [-t TIMEOUT_MS] [-c CONFIG]
 *		[-r RULE] [-m HOST:PORT] COMMAND [ARG ...]
 *	policyctl -h | -V
 * DESCRIPTION
 *	main.c: the options common to every command, the command table and
 *	the dispatch; the commands are in the other files of policyd/ctl/
 *	(ctl.h lists them).
 *
 *	More commands go into the command table (commands[]): each gets
 *	the common options in struct ctl and its own arguments.
 * EXIT STATUS
 *	0 a reply was received (whatever the action), or the command was
 *	done; 1 connection failure, timeout, no or malformed reply, a bad
 *	configuration, Redis failure; 2 usage error (also: no such rule).
 *--*/
#include <sys/socket.h>
#include <sys/un.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "log.h"

#include "client.h"
#include "ctl.h"

/* a command: name, argument synopsis, one-line help, handler */
struct command {
	const char *name;
	const char *args;
	const char *help;
	int	(*run)(const struct ctl *ctl, int argc, char **argv);
};

/* The command table, in the order "policyctl -h" lists it (ctl.h). */
static const struct command commands[] = {
	{ "check", "name=value ...",
	    "send a policy request, print the action", cmd_check },
	{ "explain", "name=value ...",
	    "the same with policyd_explain=yes: print policyd's trace "
	    "and the answer", cmd_explain },
	{ "ratelimit", "show|reset RULE KEY",
	    "print (and reset) the counters of a rate-limit key", cmd_ratelimit },
	{ "greylist", "list [PATTERN]",
	    "list greylist triplets and auto-whitelist counters", cmd_greylist },
	/* listed twice for the help text; the first entry runs both verbs */
	{ "greylist", "delete NETWORK",
	    "forget a client network's triplets and counter", cmd_greylist },
	{ "stats", "",
	    "fetch policyd's /metrics and print the figures", cmd_stats },
	{ "map", "query MAP KEY [KEY...]",
	    "look keys up in a map (pgsql:FILE, mysql:FILE, FILE)", cmd_map },
};

#define NCOMMANDS	(sizeof(commands) / sizeof(commands[0]))

/* usage - print the synopsis and the commands */
static void
usage(FILE *f)
{
	fprintf(f, "usage: policyctl [-s ADDRESS] [-p PORT] [-t TIMEOUT_MS] "
	    "[-c CONFIG] [-r RULE]\n"
	    "                 [-m HOST:PORT] COMMAND [ARG ...]\n"
	    "       policyctl -h | -V\n"
	    "  -s ADDRESS     policyd listener: inet:HOST:PORT, "
	    "inet:[IPV6]:PORT, HOST:PORT,\n"
	    "                 unix:/PATH or /PATH (default %s)\n"
	    "  -p PORT        same as -s inet:127.0.0.1:PORT\n"
	    "  -t TIMEOUT_MS  give up after this long (default %d)\n"
	    "  -c CONFIG      policyd's configuration, for redis and the "
	    "rules\n"
	    "                 (ratelimit, greylist, stats; default %s)\n"
	    "  -r RULE        the greylist rule (default: the first one)\n"
	    "  -m HOST:PORT   policyd's metrics address for stats "
	    "(default: the config's)\n"
	    "  -h             this help\n"
	    "  -V             print the version and exit\n"
	    "commands:\n", CTL_DEFAULT_ADDRESS, CTL_DEFAULT_TIMEOUT,
	    CONFIG_DEFAULT_PATH);
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-9s %-19s %s\n", commands[i].name,
		    commands[i].args, commands[i].help);
	fprintf(f, "A request starts with request=smtpd_access_policy and "
	    "protocol_state=RCPT;\nname=value arguments override or add "
	    "attributes.\n");
}

/* ctl_err - "policyctl: message" on stderr */
void
ctl_err(const char *fmt, ...)
{
	va_list ap;

	fputs("policyctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* ctl_mono_ms - monotonic milliseconds */
long long
ctl_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ctl_parse_int - a decimal integer in [min, max], or -1 */
long
ctl_parse_int(const char *s, long min, long max)
{
	char	*end;
	long	v;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	return v;
}

/* option - one option into ctl; -1 to go on, else the exit status */
static int
option(struct ctl *ctl, int ch, const char *arg)
{
	static char portaddr[32];
	char	path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char	host[256], port[8];
	const char *why = NULL;
	long	v;

	switch (ch) {
	case 'c':
		ctl->config = arg;
		return -1;
	case 'r':
		ctl->rule = arg;
		return -1;
	case 'm':
		if (strncmp(arg, "inet:", 5) == 0 ||
		    client_address_parse(arg, path, sizeof(path), host,
		    sizeof(host), port, sizeof(port), &why) < 0 ||
		    path[0] != '\0') {
			ctl_err("bad metrics address \"%s\": expected "
			    "HOST:PORT or [IPV6]:PORT", arg);
			return CTL_USAGE;
		}
		ctl->metrics = arg;
		return -1;
	case 's':
		ctl->address = arg;
		return -1;
	case 'p':
		if ((v = ctl_parse_int(arg, 1, 65535)) < 0) {
			ctl_err("bad port \"%s\": a number from 1 to 65535",
			    arg);
			return CTL_USAGE;
		}
		snprintf(portaddr, sizeof(portaddr), "inet:127.0.0.1:%ld", v);
		ctl->address = portaddr;
		return -1;
	case 't':
		if ((v = ctl_parse_int(arg, 1, CTL_MAX_TIMEOUT)) < 0) {
			ctl_err("bad timeout \"%s\": milliseconds from 1 to "
			    "%d", arg, CTL_MAX_TIMEOUT);
			return CTL_USAGE;
		}
		ctl->timeout_ms = (int)v;
		return -1;
	case 'V':
		printf("policyctl %s\n", POLICYD_VERSION);
		return CTL_OK;
	case 'h':
		usage(stdout);
		return CTL_OK;
	default:
		usage(stderr);
		return CTL_USAGE;
	}
}

/* main - options, then the command */
int
main(int argc, char **argv)
{
	struct ctl ctl = { CTL_DEFAULT_ADDRESS, CTL_DEFAULT_TIMEOUT,
	    CONFIG_DEFAULT_PATH, NULL, NULL };
	char	path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char	host[256], port[8], esc[128];
	const struct command *cmd = NULL;
	const char *why = NULL;
	int	ch, status;

	/* "+": options end at the command; its arguments are its own */
	while ((ch = getopt(argc, argv, "+s:p:t:c:r:m:hV")) != -1)
		if ((status = option(&ctl, ch, optarg)) >= 0)
			return status;
	argc -= optind;
	argv += optind;
	if (argc == 0) {
		usage(stderr);
		return CTL_USAGE;
	}
	if (client_address_parse(ctl.address, path, sizeof(path), host,
	    sizeof(host), port, sizeof(port), &why) < 0) {
		ctl_err("bad address \"%s\": %s", ctl.address, why);
		return CTL_USAGE;
	}
	for (size_t i = 0; i < NCOMMANDS && cmd == NULL; i++)
		if (strcmp(argv[0], commands[i].name) == 0)
			cmd = &commands[i];
	if (cmd == NULL) {
		ctl_err("unknown command \"%s\" (policyctl -h lists them)",
		    log_escape(esc, sizeof(esc), argv[0], strlen(argv[0])));
		return CTL_USAGE;
	}
	status = cmd->run(&ctl, argc - 1, argv + 1);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		ctl_err("writing to standard output: %s", strerror(errno));
		return CTL_FAIL;
	}
	return status;
}

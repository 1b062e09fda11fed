/*++
 * NAME
 *	policyctl - ask a running policyd, inspect and reset its Redis state
 *	(see policyctl(8))
 * SYNOPSIS
 *	policyctl [-s ADDRESS] [-p PORT] [-t TIMEOUT_MS] [-c CONFIG]
 *		[-r RULE] [-m HOST:PORT] COMMAND [ARG ...]
 *	policyctl -h | -V
 * DESCRIPTION
 *	check	send one policy request built from name=value arguments and
 *		print the action policyd answers.
 *	explain	the same request with policyd_explain=yes: print the trace
 *		that policyd's own rule evaluation produced, then the answer.
 *		Nothing is recomputed here.
 *	ratelimit show|reset RULE KEY
 *		the counters of one key of a ratelimit rule, read (and
 *		deleted) with the daemon's own script (modes 3 and 4).
 *	greylist list [PATTERN] | delete NETWORK
 *		the triplet and auto-whitelist keys of client networks.
 *	stats	GET /metrics (HTTP/1.0) and print the figures for a person.
 *	map query MAP KEY
 *		look KEY up in MAP (pgsql:FILE, mysql:FILE or a map file,
 *		relative to the configuration's directory) with the daemon's
 *		own table code, on an event loop of its own: what the lookup
 *		returns and where it came from (the file, the database, or
 *		this process's cache when a key is asked twice).
 *
 *	The request is formatted here and validated with the daemon's own
 *	codec (proto_parse() with the default limits), so anything policyd
 *	would drop as malformed is refused before it is sent. The reply has
 *	the same shape as a request ("name=value" lines and an empty line),
 *	so proto_parse() with larger limits also frames the reply.
 *
 *	ratelimit, greylist and stats load the configuration with the
 *	daemon's config_load() (redis settings, rules, metrics.address).
 *	The options a check keeps private (windows, overrides, prefixes)
 *	are read from the same file as a libconfig tree, the rules in the
 *	order config_load() compiled them; the key tag is the check's own
 *	ratelimit_tag(), the windows syntax its ratelimit_parse_windows().
 *	Redis is used synchronously (hiredis), every step bounded by the
 *	timeout; the scripts are the embedded ones, EVALSHA then EVAL.
 *
 *	Blocking I/O on one socket, every step bounded by one deadline
 *	(poll()). One request per connection.
 *
 *	More commands go into the command table (commands[]): each gets
 *	the common options in struct ctl and its own arguments.
 * EXIT STATUS
 *	0 a reply was received (whatever the action), or the command was
 *	done; 1 connection failure, timeout, no or malformed reply, a bad
 *	configuration, Redis failure; 2 usage error (also: no such rule).
 *--*/
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <event2/event.h>
#include <libconfig.h>

#include "addr.h"
#include "config.h"
#include "greylist.h"
#include "log.h"
#include "proto.h"
#include "ratelimit.h"
#include "rules.h"
#include "store.h"
#include "table.h"

#ifndef POLICYD_VERSION
#define POLICYD_VERSION "0.1.0"
#endif

#define CTL_DEFAULT_ADDRESS	"inet:127.0.0.1:10040"
#define CTL_DEFAULT_TIMEOUT	5000		/* ms */
#define CTL_MAX_TIMEOUT		3600000		/* ms: one hour */

/* a reply with a trace can be long: policyd caps its trace at ~1 MiB */
#define REPLY_MAX_LINE		(1024 * 1024 + 64)
#define REPLY_MAX_BYTES		(4 * 1024 * 1024)
#define REPLY_MAX_LINES		(256 * 1024)

#define EXIT_REPLY	0
#define SQLCF_RESULT_MAX_CTL	4096	/* sqlcf.h SQLCF_RESULT_MAX */
#define EXIT_FAIL	1
#define EXIT_USAGE	2

/* options common to every command */
struct ctl {
	const char *address;		/* as given, for messages */
	int	timeout_ms;
	const char *config;		/* -c: policyd's configuration */
	const char *metrics;		/* -m HOST:PORT, or NULL: the config's */
	const char *rule;		/* -r: the greylist rule, NULL: first */
};

/* one attribute of the request being built */
struct attr {
	const char *name;
	size_t	namelen;
	const char *value;		/* points into argv or a literal */
};

/* the request being built: defaults first, then argv in order */
struct request {
	struct attr *v;
	size_t	n;
	size_t	cap;
};

/* the parsed reply */
struct reply {
	char	*buf;			/* the reply, each line NUL-terminated */
	size_t	len;
	char	**lines;		/* the lines before the empty one */
	size_t	nlines;
	const char *action;		/* first action= value, in buf */
};

/* a command: name, argument synopsis, one-line help, handler */
struct command {
	const char *name;
	const char *args;
	const char *help;
	int	(*run)(const struct ctl *ctl, int argc, char **argv);
};

static int cmd_check(const struct ctl *ctl, int argc, char **argv);
static int cmd_explain(const struct ctl *ctl, int argc, char **argv);
static int cmd_ratelimit(const struct ctl *ctl, int argc, char **argv);
static int cmd_greylist(const struct ctl *ctl, int argc, char **argv);
static int cmd_stats(const struct ctl *ctl, int argc, char **argv);
static int cmd_map(const struct ctl *ctl, int argc, char **argv);

/*
 * The command table, in the order "policyctl -h" lists it. A handler gets
 * the common options and the arguments after its name (a command with
 * verbs, such as "ratelimit show|reset KEY", "greylist list|delete" or
 * "stats", dispatches on argv[0] itself). It prints its result on stdout,
 * errors with errx_ctl(), and returns EXIT_REPLY, EXIT_FAIL or EXIT_USAGE.
 */
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

/* errx_ctl - "policyctl: message" on stderr */
static void __attribute__((format(printf, 1, 2)))
errx_ctl(const char *fmt, ...)
{
	va_list ap;

	fputs("policyctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* mono_ms - monotonic milliseconds */
static long long
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* remaining_ms - time left before the deadline, 0 when it has passed */
static int
remaining_ms(long long deadline)
{
	long long left = deadline - mono_ms();

	if (left <= 0)
		return 0;
	return left > INT_MAX ? INT_MAX : (int)left;
}

/* parse_int - a decimal integer in [min, max], or -1 */
static long
parse_int(const char *s, long min, long max)
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

/* request_set - add an attribute, or replace the value of one present */
static int
request_set(struct request *rq, const char *name, size_t namelen,
    const char *value)
{
	for (size_t i = 0; i < rq->n; i++) {
		if (rq->v[i].namelen == namelen &&
		    memcmp(rq->v[i].name, name, namelen) == 0) {
			rq->v[i].value = value;
			return 0;
		}
	}
	if (rq->n == rq->cap) {
		size_t	ncap = rq->cap ? rq->cap * 2 : 16;
		struct attr *nv = realloc(rq->v, ncap * sizeof(*nv));

		if (nv == NULL)
			return -1;
		rq->v = nv;
		rq->cap = ncap;
	}
	rq->v[rq->n].name = name;
	rq->v[rq->n].namelen = namelen;
	rq->v[rq->n].value = value;
	rq->n++;
	return 0;
}

/* request_free - release the attribute list (the strings are borrowed) */
static void
request_free(struct request *rq)
{
	free(rq->v);
	rq->v = NULL;
	rq->n = rq->cap = 0;
}

/*
 * request_build - defaults, then "name=value" arguments in order.
 * Returns 0, or EXIT_USAGE after a message.
 */
static int
request_build(struct request *rq, int argc, char **argv)
{
	char	esc[256];

	memset(rq, 0, sizeof(*rq));
	if (request_set(rq, "request", 7, "smtpd_access_policy") < 0 ||
	    request_set(rq, "protocol_state", 14, "RCPT") < 0)
		goto nomem;
	for (int i = 0; i < argc; i++) {
		const char *arg = argv[i], *eq = strchr(arg, '=');
		size_t	namelen, arglen = strlen(arg);

		if (eq == NULL) {
			errx_ctl("bad argument \"%s\": expected name=value",
			    log_escape(esc, sizeof(esc), arg, arglen));
			request_free(rq);
			return EXIT_USAGE;
		}
		namelen = (size_t)(eq - arg);
		if (namelen == 0) {
			errx_ctl("bad argument \"%s\": empty attribute name",
			    log_escape(esc, sizeof(esc), arg, arglen));
			request_free(rq);
			return EXIT_USAGE;
		}
		/* argv strings cannot hold a NUL; a line break would split the line */
		if (strpbrk(arg, "\r\n") != NULL) {
			errx_ctl("bad argument \"%s\": a name or value may not "
			    "contain a newline, carriage return or NUL byte",
			    log_escape(esc, sizeof(esc), arg, arglen));
			request_free(rq);
			return EXIT_USAGE;
		}
		if (proto_attr_id(arg, namelen) < 0)
			errx_ctl("warning: unknown attribute \"%s\" (sent "
			    "anyway)", log_escape(esc, sizeof(esc), arg, namelen));
		if (request_set(rq, arg, namelen, eq + 1) < 0)
			goto nomem;
	}
	return 0;
nomem:
	errx_ctl("out of memory");
	request_free(rq);
	return EXIT_FAIL;
}

/*
 * request_format - the wire form, malloc'ed, in *out (length *outlen).
 * The result is checked with proto_parse() and the daemon's default
 * limits. Returns 0, or EXIT_USAGE / EXIT_FAIL after a message.
 */
static int
request_format(const struct request *rq, char **out, size_t *outlen)
{
	struct proto p;
	struct policy_req parsed;
	size_t	len = 1, o = 0, used = 0;
	char	*buf;
	int	rc;

	for (size_t i = 0; i < rq->n; i++)
		len += rq->v[i].namelen + 1 + strlen(rq->v[i].value) + 1;
	if ((buf = malloc(len + 1)) == NULL) {
		errx_ctl("out of memory");
		return EXIT_FAIL;
	}
	for (size_t i = 0; i < rq->n; i++) {
		size_t	vl = strlen(rq->v[i].value);

		memcpy(buf + o, rq->v[i].name, rq->v[i].namelen);
		o += rq->v[i].namelen;
		buf[o++] = '=';
		memcpy(buf + o, rq->v[i].value, vl);
		o += vl;
		buf[o++] = '\n';
	}
	buf[o++] = '\n';
	buf[o] = '\0';

	proto_init(&p, NULL);
	rc = proto_parse(&p, buf, o, &parsed, &used);
	if (rc == PROTO_OK)
		proto_req_free(&parsed);
	if (rc != PROTO_OK || used != o) {
		errx_ctl("request refused before sending: %s (policyd would "
		    "close the connection without a reply)",
		    rc == PROTO_ERR && p.err ? p.err : "not one request");
		free(buf);
		return EXIT_USAGE;
	}
	*out = buf;
	*outlen = o;
	return 0;
}

/*
 * address_parse - split ADDRESS into a unix path or a host and a port.
 * Forms: unix:/PATH, /PATH, inet:HOST:PORT, inet:[V6]:PORT, HOST:PORT,
 * [V6]:PORT. Writes into the given buffers; returns 0 or -1 (with *why).
 */
static int
address_parse(const char *addr, char *path, size_t pathlen, char *host,
    size_t hostlen, char *port, size_t portlen, const char **why)
{
	const char *hs, *he, *ps;

	path[0] = host[0] = port[0] = '\0';
	if (strncmp(addr, "unix:", 5) == 0 || addr[0] == '/') {
		const char *p = addr[0] == '/' ? addr : addr + 5;

		if (*p == '\0') {
			*why = "empty socket path";
			return -1;
		}
		if (strlen(p) >= pathlen) {
			*why = "socket path too long";
			return -1;
		}
		strcpy(path, p);
		return 0;
	}
	if (strncmp(addr, "inet:", 5) == 0)
		addr += 5;
	if (addr[0] == '[') {
		hs = addr + 1;
		if ((he = strchr(hs, ']')) == NULL || he[1] != ':') {
			*why = "expected [IPV6]:PORT";
			return -1;
		}
		ps = he + 2;
	} else {
		hs = addr;
		if ((he = strrchr(addr, ':')) == NULL) {
			*why = "expected HOST:PORT";
			return -1;
		}
		if (memchr(hs, ':', (size_t)(he - hs)) != NULL) {
			*why = "an IPv6 address needs brackets: inet:[V6]:PORT";
			return -1;
		}
		ps = he + 1;
	}
	if (he == hs) {
		*why = "empty host";
		return -1;
	}
	if ((size_t)(he - hs) >= hostlen) {
		*why = "host name too long";
		return -1;
	}
	if (parse_int(ps, 1, 65535) < 0 || strlen(ps) >= portlen) {
		*why = "port must be a number from 1 to 65535";
		return -1;
	}
	memcpy(host, hs, (size_t)(he - hs));
	host[he - hs] = '\0';
	strcpy(port, ps);
	return 0;
}

/*
 * connect_one - non-blocking connect bounded by the deadline. Returns the
 * socket, -1 with errno set (ETIMEDOUT when the deadline passed).
 */
static int
connect_one(int family, const struct sockaddr *sa, socklen_t salen,
    long long deadline)
{
	int	fd, err = 0;
	socklen_t elen = sizeof(err);

	fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, sa, salen) == 0)
		return fd;
	if (errno != EINPROGRESS && errno != EAGAIN)
		goto fail;
	for (;;) {
		struct pollfd pfd = { fd, POLLOUT, 0 };
		int	n = poll(&pfd, 1, remaining_ms(deadline));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto fail;
		if (n == 0) {
			errno = ETIMEDOUT;
			goto fail;
		}
		break;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
		goto fail;
	if (err != 0) {
		errno = err;
		goto fail;
	}
	return fd;
fail:
	err = errno;
	close(fd);
	errno = err;
	return -1;
}

/*
 * ctl_connect - connect to address (policyd's listener, or HOST:PORT of
 * its metrics) before the deadline. Returns the socket, or -1 after a
 * message (*status: EXIT_USAGE or EXIT_FAIL).
 */
static int
ctl_connect(const char *address, int timeout_ms, long long deadline,
    int *status)
{
	struct sockaddr_un sun;
	struct addrinfo hints, *res, *ai;
	char	host[256], port[8];
	const char *why = NULL;
	int	fd = -1, gai, err = 0;

	*status = EXIT_FAIL;
	memset(&sun, 0, sizeof(sun));
	if (address_parse(address, sun.sun_path, sizeof(sun.sun_path),
	    host, sizeof(host), port, sizeof(port), &why) < 0) {
		errx_ctl("bad address \"%s\": %s", address, why);
		*status = EXIT_USAGE;
		return -1;
	}
	if (sun.sun_path[0] != '\0') {
		sun.sun_family = AF_UNIX;
		fd = connect_one(AF_UNIX, (struct sockaddr *)&sun, sizeof(sun),
		    deadline);
		err = errno;
	} else {
		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
		if ((gai = getaddrinfo(host, port, &hints, &res)) != 0) {
			errx_ctl("cannot connect to %s: %s", address,
			    gai_strerror(gai));
			return -1;
		}
		for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
			fd = connect_one(ai->ai_family, ai->ai_addr,
			    ai->ai_addrlen, deadline);
			err = errno;
			if (err == ETIMEDOUT)
				break;
		}
		freeaddrinfo(res);
	}
	if (fd < 0) {
		if (err == ETIMEDOUT)
			errx_ctl("cannot connect to %s: no connection within "
			    "%d ms", address, timeout_ms);
		else
			errx_ctl("cannot connect to %s: %s (is policyd "
			    "running?)", address, strerror(err));
	}
	return fd;
}

/* send_all - write everything before the deadline; 0 or -1 with errno */
static int
send_all(int fd, const char *buf, size_t len, long long deadline)
{
	while (len > 0) {
		struct pollfd pfd = { fd, POLLOUT, 0 };
		ssize_t	n;
		int	pn = poll(&pfd, 1, remaining_ms(deadline));

		if (pn < 0 && errno == EINTR)
			continue;
		if (pn < 0)
			return -1;
		if (pn == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * read_reply - read until one complete reply (lines up to an empty line),
 * framed by proto_parse(). Returns 0, or -1 after a message.
 */
static int
read_reply(const struct ctl *ctl, int fd, long long deadline,
    struct reply *rp)
{
	static const struct proto_limits lim = {
		REPLY_MAX_LINE, REPLY_MAX_BYTES, REPLY_MAX_LINES
	};
	struct proto p;
	struct policy_req parsed;
	size_t	len = 0, cap = 0, used = 0;
	char	*buf = NULL;

	memset(rp, 0, sizeof(*rp));
	proto_init(&p, &lim);
	for (;;) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		ssize_t	n;
		int	pn, rc;

		if (cap - len < 4096 + 1) {
			size_t	ncap = cap ? cap * 2 : 8192;
			char	*nb = realloc(buf, ncap);

			if (nb == NULL) {
				errx_ctl("out of memory");
				goto fail;
			}
			buf = nb;
			cap = ncap;
		}
		pn = poll(&pfd, 1, remaining_ms(deadline));
		if (pn < 0 && errno == EINTR)
			continue;
		if (pn < 0) {
			errx_ctl("poll: %s", strerror(errno));
			goto fail;
		}
		if (pn == 0) {
			errx_ctl("no reply from %s within %d ms", ctl->address,
			    ctl->timeout_ms);
			goto fail;
		}
		n = recv(fd, buf + len, cap - len - 1, 0);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0) {
			errx_ctl("reading the reply from %s: %s", ctl->address,
			    strerror(errno));
			goto fail;
		}
		if (n == 0) {
			errx_ctl("%s closed the connection without a %sreply "
			    "(policyd does so with a request it finds "
			    "malformed: see its log)", ctl->address,
			    len ? "complete " : "");
			goto fail;
		}
		len += (size_t)n;
		rc = proto_parse(&p, buf, len, &parsed, &used);
		if (rc == PROTO_NEED_MORE)
			continue;
		if (rc == PROTO_ERR) {
			errx_ctl("malformed reply from %s: %s", ctl->address,
			    p.err);
			goto fail;
		}
		proto_req_free(&parsed);
		break;
	}
	buf[used] = '\0';
	rp->buf = buf;
	rp->len = used;
	return 0;
fail:
	free(buf);
	return -1;
}

/*
 * reply_next_line - the next line of the reply at *off (NUL-terminated in
 * place, trailing '\r' removed), or NULL at the empty line that ends it.
 */
static char *
reply_next_line(struct reply *rp, size_t *off)
{
	char	*line, *nl;
	size_t	llen;

	if (*off >= rp->len)
		return NULL;
	line = rp->buf + *off;
	if ((nl = memchr(line, '\n', rp->len - *off)) == NULL)
		nl = rp->buf + rp->len;
	*nl = '\0';
	llen = (size_t)(nl - line);
	*off += llen + 1;
	if (llen > 0 && line[llen - 1] == '\r')
		line[--llen] = '\0';
	return llen ? line : NULL;
}

/* reply_free - release a reply */
static void
reply_free(struct reply *rp)
{
	free(rp->lines);
	free(rp->buf);
	memset(rp, 0, sizeof(*rp));
}

/*
 * reply_split - index the lines of the reply; find the first action=
 * (Postfix uses the first one only). EXIT_REPLY, or EXIT_FAIL after a
 * message (the reply is released).
 */
static int
reply_split(const struct ctl *ctl, struct reply *rp)
{
	size_t	off = 0, n = 0;
	char	*line;

	for (size_t i = 0; i < rp->len; i++)
		n += rp->buf[i] == '\n';
	if ((rp->lines = calloc(n + 1, sizeof(*rp->lines))) == NULL) {
		errx_ctl("out of memory");
		reply_free(rp);
		return EXIT_FAIL;
	}
	while ((line = reply_next_line(rp, &off)) != NULL) {
		rp->lines[rp->nlines++] = line;
		if (rp->action == NULL && strncmp(line, "action=", 7) == 0)
			rp->action = line + 7;
	}
	if (rp->action == NULL) {
		errx_ctl("reply from %s has no action= line", ctl->address);
		reply_free(rp);
		return EXIT_FAIL;
	}
	return EXIT_REPLY;
}

/* print_text - one line of server text; control characters become '?' */
static void
print_text(const char *prefix, const char *s)
{
	fputs(prefix, stdout);
	for (; *s; s++)
		putchar((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s);
	putchar('\n');
}

/*
 * ask - build, send, and read the reply. Returns EXIT_REPLY with *rp
 * filled, or EXIT_FAIL / EXIT_USAGE after a message.
 */
static int
ask(const struct ctl *ctl, int argc, char **argv, int explain,
    struct reply *rp)
{
	struct request rq;
	char	*wire = NULL;
	size_t	wirelen = 0;
	long long deadline;
	int	fd, status;

	if (argc == 0) {
		errx_ctl("no attributes given (e.g. client_address=192.0.2.1 "
		    "sender=a@example.com recipient=b@example.net)");
		return EXIT_USAGE;
	}
	if ((status = request_build(&rq, argc, argv)) != 0)
		return status;
	if (explain && request_set(&rq, "policyd_explain", 15, "yes") < 0) {
		errx_ctl("out of memory");
		request_free(&rq);
		return EXIT_FAIL;
	}
	status = request_format(&rq, &wire, &wirelen);
	request_free(&rq);
	if (status != 0)
		return status;

	deadline = mono_ms() + ctl->timeout_ms;
	if ((fd = ctl_connect(ctl->address, ctl->timeout_ms, deadline,
	    &status)) < 0) {
		free(wire);
		return status;
	}
	if (send_all(fd, wire, wirelen, deadline) < 0) {
		if (errno == ETIMEDOUT)
			errx_ctl("no reply from %s within %d ms (request not "
			    "sent)", ctl->address, ctl->timeout_ms);
		else
			errx_ctl("sending to %s: %s", ctl->address,
			    strerror(errno));
		status = EXIT_FAIL;
	} else if (read_reply(ctl, fd, deadline, rp) < 0) {
		status = EXIT_FAIL;
	} else {
		status = reply_split(ctl, rp);
	}
	close(fd);
	free(wire);
	return status;
}

/* cmd_check - print the action */
static int
cmd_check(const struct ctl *ctl, int argc, char **argv)
{
	struct reply rp;
	int	status = ask(ctl, argc, argv, 0, &rp);

	if (status != EXIT_REPLY)
		return status;
	print_text("", rp.action);
	reply_free(&rp);
	return EXIT_REPLY;
}

/*
 * cmd_explain - print policyd's trace lines, then "answer: ACTION".
 * policyd ends its trace with "answer: ACTION from rule NAME"; that line
 * is the answer line then, and no second one is printed.
 */
static int
cmd_explain(const struct ctl *ctl, int argc, char **argv)
{
	struct reply rp;
	const char *last = NULL;
	size_t	alen;
	int	status = ask(ctl, argc, argv, 1, &rp);

	if (status != EXIT_REPLY)
		return status;
	for (size_t i = 0; i < rp.nlines; i++) {
		if (strncmp(rp.lines[i], "trace=", 6) == 0) {
			print_text("", rp.lines[i] + 6);
			last = rp.lines[i] + 6;
		}
	}
	alen = strlen(rp.action);
	if (last == NULL || strncmp(last, "answer: ", 8) != 0 ||
	    strncmp(last + 8, rp.action, alen) != 0 ||
	    (last[8 + alen] != '\0' && last[8 + alen] != ' '))
		print_text("answer: ", rp.action);
	reply_free(&rp);
	return EXIT_REPLY;
}

/* ------------------------------------------------- configuration, Redis */

#define RL_ARGS		(3 + 2 * RL_MAX_WIN + 2)
#define SCAN_COUNT	"1000"
#define GL_MAX_ENTRIES	(16 * 1024 * 1024)	/* listed at most */

/* the daemon's configuration, and the same file as libconfig tree */
struct ctlconf {
	struct config *cfg;		/* config_load(): validated, compiled */
	config_t cf;			/* rule options the checks keep private */
	int	cf_ok;
};

/* a synchronous Redis connection with the configured prefix */
struct ctlredis {
	redisContext *c;
	const char *prefix;
	size_t	prefixlen;
	char	where[300];		/* address, for messages */
};

/* conf_open - load the configuration with the daemon's own loader */
static int
conf_open(const struct ctl *ctl, struct ctlconf *cc)
{
	int	nerrors = 0;

	memset(cc, 0, sizeof(*cc));
	log_init("policyctl", 1, 0);
	log_set_level(LOG_L_WARN);
	if ((cc->cfg = config_load(ctl->config, &nerrors)) == NULL) {
		errx_ctl("%s: cannot use this configuration (%d error%s, see "
		    "above; policyd -t -c %s checks it)", ctl->config, nerrors,
		    nerrors == 1 ? "" : "s", ctl->config);
		return EXIT_FAIL;
	}
	config_init(&cc->cf);
	cc->cf_ok = 1;
	config_set_include_dir(&cc->cf, cc->cfg->dir);
	if (!config_read_file(&cc->cf, ctl->config)) {
		errx_ctl("%s: %s", ctl->config, config_error_text(&cc->cf));
		return EXIT_FAIL;
	}
	return 0;
}

/* conf_close - release what conf_open() got */
static void
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
static const struct rule *
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
			errx_ctl("rule \"%s\" is not a %s rule",
			    log_escape(esc, sizeof(esc), name, strlen(name)),
			    check);
			return NULL;
		}
		/* rules_compile() compiles the list in order: same index */
		if (list == NULL || i >= config_setting_length(list)) {
			errx_ctl("%s: rule \"%s\" not found in the file",
			    cc->cfg->path, r->name);
			return NULL;
		}
		*set = config_setting_get_elem(list, i);
		return r;
	}
	if (name != NULL)
		errx_ctl("%s: no rule named \"%s\"", cc->cfg->path,
		    log_escape(esc, sizeof(esc), name, strlen(name)));
	else
		errx_ctl("%s: no %s rule", cc->cfg->path, check);
	return NULL;
}

/* conf_int - an integer option of a rule, or def */
static int
conf_int(const config_setting_t *set, const char *name, int def)
{
	int	v;

	return config_setting_lookup_int(set, name, &v) ? v : def;
}

/*
 * redis_open - connect as policyd does (address, AUTH, SELECT), every
 * step bounded by timeout_ms. 0, or EXIT_FAIL after a message.
 */
static int
redis_open(const struct ctl *ctl, const struct config *cfg,
    struct ctlredis *rd)
{
	const struct store_config *sc = &cfg->redis;
	struct timeval tv = { ctl->timeout_ms / 1000,
	    (ctl->timeout_ms % 1000) * 1000 };
	const char *a = sc->address;
	redisReply *rp;

	memset(rd, 0, sizeof(*rd));
	rd->prefix = sc->prefix ? sc->prefix : "";
	rd->prefixlen = strlen(rd->prefix);
	snprintf(rd->where, sizeof(rd->where), "%s", a);
	if (rd->prefixlen > STORE_PREFIX_MAX) {
		/* the loader refuses it; the key buffers below rely on it */
		errx_ctl("redis.prefix: %zu bytes; at most %d", rd->prefixlen,
		    STORE_PREFIX_MAX);
		return EXIT_FAIL;
	}
	if (strncmp(a, "sentinel:", 9) == 0 || strncmp(a, "cluster:", 8) == 0) {
		/* config.c describes a scale-out setup this way */
		errx_ctl("redis %s: policyctl talks to one Redis server; "
		    "Sentinel and Cluster setups are not supported yet",
		    rd->where);
		return EXIT_FAIL;
	}
	if (strncmp(a, "unix:", 5) == 0) {
		rd->c = redisConnectUnixWithTimeout(a + 5, tv);
	} else {
		/* HOST:PORT, [V6]:PORT or HOST, as store.c reads it */
		char	host[256];
		const char *colon = strrchr(a, ':');
		size_t	hl;
		int	port = 6379;

		if (colon == NULL) {
			hl = strlen(a);
		} else {
			hl = (size_t)(colon - a);
			port = atoi(colon + 1);
		}
		if (hl >= 2 && a[0] == '[' && a[hl - 1] == ']') {
			a++;
			hl -= 2;
		}
		if (hl >= sizeof(host))
			hl = sizeof(host) - 1;
		memcpy(host, a, hl);
		host[hl] = '\0';
		rd->c = redisConnectWithTimeout(host, port, tv);
	}
	if (rd->c == NULL || rd->c->err) {
		errx_ctl("cannot connect to redis at %s: %s", rd->where,
		    rd->c ? rd->c->errstr : "out of memory");
		goto fail;
	}
	if (redisSetTimeout(rd->c, tv) != REDIS_OK) {
		errx_ctl("redis at %s: cannot set a timeout", rd->where);
		goto fail;
	}
	if (sc->password != NULL) {
		const char *av[3] = { "AUTH", sc->username, sc->password };
		size_t	al[3] = { 4, sc->username ? strlen(sc->username) : 0,
		    strlen(sc->password) };
		int	ac = 3;

		if (sc->username == NULL) {
			av[1] = av[2];
			al[1] = al[2];
			ac = 2;
		}
		rp = redisCommandArgv(rd->c, ac, av, al);
		if (rp == NULL || rp->type == REDIS_REPLY_ERROR) {
			errx_ctl("redis at %s: AUTH failed: %s", rd->where,
			    rp ? rp->str : rd->c->errstr);
			if (rp)
				freeReplyObject(rp);
			goto fail;
		}
		freeReplyObject(rp);
	}
	if (sc->database != 0) {
		rp = redisCommand(rd->c, "SELECT %d", sc->database);
		if (rp == NULL || rp->type == REDIS_REPLY_ERROR) {
			errx_ctl("redis at %s: SELECT %d failed: %s", rd->where,
			    sc->database, rp ? rp->str : rd->c->errstr);
			if (rp)
				freeReplyObject(rp);
			goto fail;
		}
		freeReplyObject(rp);
	}
	return 0;
fail:
	if (rd->c)
		redisFree(rd->c);
	rd->c = NULL;
	return EXIT_FAIL;
}

/* redis_close - disconnect */
static void
redis_close(struct ctlredis *rd)
{
	if (rd->c)
		redisFree(rd->c);
	rd->c = NULL;
}

/*
 * redis_argv - one command; the reply, or NULL after a message (an
 * error reply is a failure too).
 */
static redisReply *
redis_argv(struct ctlredis *rd, int argc, const char **argv,
    const size_t *argvlen)
{
	redisReply *rp = redisCommandArgv(rd->c, argc, argv, argvlen);

	if (rp == NULL) {
		errx_ctl("redis at %s: %s: %s", rd->where, argv[0],
		    rd->c->err == REDIS_ERR_IO && (errno == EAGAIN ||
		    errno == EWOULDBLOCK) ? "no answer within the timeout" :
		    rd->c->errstr);
		return NULL;
	}
	if (rp->type == REDIS_REPLY_ERROR) {
		errx_ctl("redis at %s: %s: %s", rd->where, argv[0], rp->str);
		freeReplyObject(rp);
		return NULL;
	}
	return rp;
}

/*
 * redis_key - PREFIX + name (len bytes) into buf, its length in *keylen;
 * 0, or -1 after a message when it does not fit (never cut: a cut key
 * is another key)
 */
static int
redis_key(const struct ctlredis *rd, const char *name, size_t len, char *buf,
    size_t buflen, size_t *keylen)
{
	if (rd->prefixlen >= buflen || len >= buflen - rd->prefixlen) {
		errx_ctl("redis at %s: key too long (prefix of %zu bytes and "
		    "%zu more)", rd->where, rd->prefixlen, len);
		return -1;
	}
	memcpy(buf, rd->prefix, rd->prefixlen);
	memcpy(buf + rd->prefixlen, name, len);
	buf[rd->prefixlen + len] = '\0';
	*keylen = rd->prefixlen + len;
	return 0;
}

/*
 * redis_script - EVALSHA of an embedded script, EVAL after NOSCRIPT (as
 * the daemon does); argv holds the keys (prefixed) then the arguments.
 * An array reply of integers into v[] (*n of them), or -1 after a message.
 */
static int
redis_script(struct ctlredis *rd, enum store_script_id id, int nkeys,
    int nargs, const char **argv, long long *v, int vmax, int *n)
{
	const char *av[RL_ARGS + 4];
	size_t	al[RL_ARGS + 4];
	char	nk[16];
	redisReply *rp;
	int	ac = 0;

	snprintf(nk, sizeof(nk), "%d", nkeys);
	av[ac++] = "EVALSHA";
	av[ac++] = store_script_sha[id];
	av[ac++] = nk;
	for (int i = 0; i < nargs; i++)
		av[ac++] = argv[i];
	for (int i = 0; i < ac; i++)
		al[i] = strlen(av[i]);
	rp = redisCommandArgv(rd->c, ac, av, al);
	if (rp != NULL && rp->type == REDIS_REPLY_ERROR &&
	    strncmp(rp->str, "NOSCRIPT", 8) == 0) {
		freeReplyObject(rp);
		av[0] = "EVAL";
		av[1] = store_script_text[id];
		al[0] = 4;
		al[1] = strlen(av[1]);
		rp = redisCommandArgv(rd->c, ac, av, al);
	}
	if (rp == NULL) {
		errx_ctl("redis at %s: script: %s", rd->where,
		    rd->c->err == REDIS_ERR_IO && (errno == EAGAIN ||
		    errno == EWOULDBLOCK) ? "no answer within the timeout" :
		    rd->c->errstr);
		return -1;
	}
	if (rp->type == REDIS_REPLY_ERROR || rp->type != REDIS_REPLY_ARRAY) {
		errx_ctl("redis at %s: script: %s", rd->where,
		    rp->type == REDIS_REPLY_ERROR ? rp->str :
		    "unexpected reply");
		freeReplyObject(rp);
		return -1;
	}
	*n = 0;
	for (size_t i = 0; i < rp->elements && *n < vmax; i++)
		v[(*n)++] = rp->element[i]->type == REDIS_REPLY_INTEGER ?
		    rp->element[i]->integer : 0;
	freeReplyObject(rp);
	return 0;
}

/*
 * glob_prefix - the key prefix with Redis glob characters escaped, into
 * buf; 0, or -1 after a message when it does not fit
 */
static int
glob_prefix(const struct ctlredis *rd, char *buf, size_t buflen)
{
	size_t	o = 0, i;

	for (i = 0; i < rd->prefixlen && o + 3 < buflen; i++) {
		if (strchr("*?[]\\^", rd->prefix[i]) != NULL)
			buf[o++] = '\\';
		buf[o++] = rd->prefix[i];
	}
	buf[o] = '\0';
	if (i < rd->prefixlen) {
		errx_ctl("redis at %s: key pattern too long (prefix of %zu "
		    "bytes)", rd->where, rd->prefixlen);
		return -1;
	}
	return 0;
}

/* glob_pattern - printf into a SCAN pattern buffer; 0, or -1 after a
 * message when the prefix makes it too long */
static int __attribute__((format(printf, 4, 5)))
glob_pattern(const struct ctlredis *rd, char *buf, size_t len,
    const char *fmt, ...)
{
	va_list ap;
	int	n;

	va_start(ap, fmt);
	n = vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= len) {
		errx_ctl("redis at %s: key pattern too long (prefix of %zu "
		    "bytes)", rd->where, rd->prefixlen);
		return -1;
	}
	return 0;
}

/*
 * redis_scan - every key matching pattern; fn(arg, key, len) for each
 * (0 to go on). Returns the number of keys, or -1 after a message.
 */
static long
redis_scan(struct ctlredis *rd, const char *pattern,
    int (*fn)(void *arg, const char *key, size_t len), void *arg)
{
	char	cursor[32] = "0";
	long	n = 0;

	do {
		const char *av[6] = { "SCAN", cursor, "MATCH", pattern,
		    "COUNT", SCAN_COUNT };
		size_t	al[6];
		redisReply *rp, *keys;

		for (int i = 0; i < 6; i++)
			al[i] = strlen(av[i]);
		if ((rp = redis_argv(rd, 6, av, al)) == NULL)
			return -1;
		if (rp->type != REDIS_REPLY_ARRAY || rp->elements != 2 ||
		    rp->element[0]->type != REDIS_REPLY_STRING ||
		    rp->element[1]->type != REDIS_REPLY_ARRAY) {
			errx_ctl("redis at %s: SCAN: unexpected reply",
			    rd->where);
			freeReplyObject(rp);
			return -1;
		}
		snprintf(cursor, sizeof(cursor), "%s", rp->element[0]->str);
		keys = rp->element[1];
		for (size_t i = 0; i < keys->elements; i++) {
			if (keys->element[i]->type != REDIS_REPLY_STRING)
				continue;
			n++;
			if (fn(arg, keys->element[i]->str,
			    keys->element[i]->len) != 0) {
				freeReplyObject(rp);
				return -1;
			}
		}
		freeReplyObject(rp);
	} while (strcmp(cursor, "0") != 0);
	return n;
}

/* -------------------------------------------------------------- ratelimit */

/* what the daemon's ratelimit check knows of one rule and one key */
struct rlview {
	const char *tagname;		/* "name", or "ratelimit" (the check's) */
	const char *count;		/* recipients, messages, bytes */
	struct rl_window win[RL_MAX_WIN];
	int	nwin;
	int	unlimited;
	char	source[300];		/* where the windows come from */
	int	max_networks;
	char	rkey[320], nkey[320];	/* with the prefix */
};

/*
 * rl_secret - the installation's key-hash secret, from Redis as the
 * daemon gets it (secret.lua: made once, SET NX); 0 or -1 after a message
 */
static int
rl_secret(struct ctlredis *rd, uint8_t secret[16])
{
	char	key[320], hex[33];
	const char *argv[2] = { key, hex };
	long long r[4];
	uint8_t	b[16];
	int	nr = 0, fd;
	size_t	kl;

	if (redis_key(rd, "secret", 6, key, sizeof(key), &kl) != 0)
		return -1;
	if ((fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC)) < 0 ||
	    read(fd, b, sizeof(b)) != (ssize_t)sizeof(b)) {
		errx_ctl("no random bytes from /dev/urandom");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	for (int i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", b[i]);
	if (redis_script(rd, SCRIPT_SECRET, 1, 2, argv, r, 4, &nr) < 0)
		return -1;
	if (nr != 4) {
		errx_ctl("redis at %s: unexpected answer from the secret "
		    "script", rd->where);
		return -1;
	}
	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 4; j++)
			secret[4 * i + j] = (uint8_t)((unsigned long long)r[i]
			    >> (24 - 8 * j));
	return 0;
}

/*
 * rl_view - windows and Redis keys of KEY under the compiled rule r: the
 * check's own ratelimit_windows_of() decides (override, @domain, rule).
 */
static int
rl_view(const struct rule *r, const config_setting_t *set,
    struct ctlredis *rd, const char *key, struct rlview *v)
{
	char	name[40];
	uint8_t	secret[16];
	uint64_t tag;
	size_t	kl;

	memset(v, 0, sizeof(*v));
	if (!config_setting_lookup_string(set, "name", &v->tagname))
		v->tagname = "";	/* refused by the loader */
	if (rl_secret(rd, secret) < 0)
		return EXIT_FAIL;
	if (!config_setting_lookup_string(set, "count", &v->count))
		v->count = "recipients";
	v->max_networks = conf_int(set, "max_networks", 0);
	if (ratelimit_windows_of(r->check_priv, key, v->win, &v->nwin,
	    v->source, sizeof(v->source)) == 1)
		v->unlimited = 1;
	tag = ratelimit_tag(secret, v->tagname, key);
	snprintf(name, sizeof(name), "r{%016" PRIx64 "}", tag);
	if (redis_key(rd, name, strlen(name), v->rkey, sizeof(v->rkey),
	    &kl) != 0)
		return EXIT_FAIL;
	snprintf(name, sizeof(name), "n{%016" PRIx64 "}", tag);
	if (redis_key(rd, name, strlen(name), v->nkey, sizeof(v->nkey),
	    &kl) != 0)
		return EXIT_FAIL;
	return 0;
}

/* rl_show - print the windows of v as the script sees them now */
static int
rl_show(struct ctlredis *rd, const struct rlview *v)
{
	char	args[3 + 2 * RL_MAX_WIN][24], wt[48];
	const char *argv[RL_ARGS];
	long long r[3 + 2 * RL_MAX_WIN];
	int	n = 0, nr = 0;

	if (v->unlimited) {
		printf("unlimited (%s): nothing is counted\n", v->source);
		return EXIT_REPLY;
	}
	argv[n++] = v->rkey;
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
	if (redis_script(rd, SCRIPT_RATELIMIT, 1, n, argv, r,
	    (int)(sizeof(r) / sizeof(r[0])), &nr) < 0)
		return EXIT_FAIL;
	if (nr < 2 || r[0] != 4 || r[1] != v->nwin || nr < 2 + 2 * v->nwin) {
		errx_ctl("redis at %s: unexpected answer from the ratelimit "
		    "script", rd->where);
		return EXIT_FAIL;
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
	return EXIT_REPLY;
}

/* rl_networks - the compromised-account set of the key, when kept */
static int
rl_networks(struct ctlredis *rd, const struct rlview *v)
{
	const char *av[2];
	size_t	al[2];
	redisReply *rp;
	long long n, ttl;

	if (v->max_networks <= 0)
		return EXIT_REPLY;
	av[0] = "SCARD"; av[1] = v->nkey;
	al[0] = 5; al[1] = strlen(v->nkey);
	if ((rp = redis_argv(rd, 2, av, al)) == NULL)
		return EXIT_FAIL;
	n = rp->type == REDIS_REPLY_INTEGER ? rp->integer : 0;
	freeReplyObject(rp);
	av[0] = "TTL"; al[0] = 3;
	if ((rp = redis_argv(rd, 2, av, al)) == NULL)
		return EXIT_FAIL;
	ttl = rp->type == REDIS_REPLY_INTEGER ? rp->integer : -2;
	freeReplyObject(rp);
	printf("  client networks: %lld seen (max_networks %d)", n,
	    v->max_networks);
	if (n > 0 && ttl > 0)
		printf(", window ends in %lld s", ttl);
	putchar('\n');
	return EXIT_REPLY;
}

/* rl_reset - delete both keys of v (mode 4), print what went */
static int
rl_reset(struct ctlredis *rd, const struct rlview *v)
{
	const char *argv[5] = { v->rkey, v->nkey, "4", "0", "0" };
	long long r[5];
	int	nr = 0;

	if (redis_script(rd, SCRIPT_RATELIMIT, 2, 5, argv, r, 5, &nr) < 0)
		return EXIT_FAIL;
	if (nr < 2 || r[0] != 5) {
		errx_ctl("redis at %s: unexpected answer from the ratelimit "
		    "script", rd->where);
		return EXIT_FAIL;
	}
	if (r[1] == 0)
		printf("reset: nothing was stored (%s, %s)\n", v->rkey,
		    v->nkey);
	else
		printf("reset: removed %lld key%s (%s, %s): every window is "
		    "free again\n", r[1], r[1] == 1 ? "" : "s", v->rkey,
		    v->nkey);
	return EXIT_REPLY;
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
static int
cmd_ratelimit(const struct ctl *ctl, int argc, char **argv)
{
	struct ctlconf cc;
	struct ctlredis rd;
	struct rlview v;
	const config_setting_t *set = NULL;
	const struct rule *r;
	char	esc[600];
	int	reset, status;

	if (argc != 3 || (strcmp(argv[0], "show") != 0 &&
	    strcmp(argv[0], "reset") != 0)) {
		errx_ctl("usage: policyctl [-c CONFIG] ratelimit show|reset "
		    "RULE KEY");
		return EXIT_USAGE;
	}
	reset = argv[0][0] == 'r';
	if (argv[2][0] == '\0' || strlen(argv[2]) > 2048) {
		errx_ctl("KEY: expected the key text, 1 to 2048 bytes");
		return EXIT_USAGE;
	}
	if ((status = conf_open(ctl, &cc)) != 0) {
		conf_close(&cc);
		return status;
	}
	if ((r = conf_rule(&cc, argv[1], "ratelimit", &set)) == NULL) {
		conf_close(&cc);
		return EXIT_USAGE;
	}
	if ((status = redis_open(ctl, cc.cfg, &rd)) != 0) {
		conf_close(&cc);
		return status;
	}
	if ((status = rl_view(r, set, &rd, argv[2], &v)) != 0)
		goto done;
	printf("rule %s, key %s (redis %s)\n", r->name,
	    log_escape(esc, sizeof(esc), argv[2], strlen(argv[2])), v.rkey);
	if (has_upper(argv[2]))
		errx_ctl("warning: the rule lowercases addresses and logins; "
		    "\"%s\" has capitals and is not a key it builds", esc);
	if ((status = rl_show(&rd, &v)) == EXIT_REPLY)
		status = rl_networks(&rd, &v);
	if (status == EXIT_REPLY && reset)
		status = rl_reset(&rd, &v);
done:
	redis_close(&rd);
	conf_close(&cc);
	return status;
}

/* --------------------------------------------------------------- greylist */

/* one listed entry: a triplet or a client's auto-whitelist counter */
struct glentry {
	char	kind;			/* 't' triplet, 'a' counter */
	char	text[80];		/* the network for a person */
	unsigned char name[GL_NAME_MAX];	/* the client's N (greylist.h) */
	size_t	namelen;
	uint8_t	hash[4];		/* triplet hash */
	size_t	bucket;			/* index into gllist.keys */
	unsigned char field[GL_NAME_MAX + 4];
	size_t	fieldlen;
	long long value, left;		/* raw value; seconds until it expires */
};

struct gllist {
	struct glentry *v;
	size_t	n, cap;
	char  **keys;			/* buckets found by SCAN */
	size_t	nkeys, capkeys;
	const struct ctlredis *rd;
	int	v4prefix, v6prefix;
	long long window, maxage, now;	/* now: Redis TIME - GL_EPOCH */
	const char *glob;		/* fnmatch() on the network text */
	const struct gl_key *only;	/* one client's entries */
};

#define GL_EPOCH	1735689600LL	/* greylist.lua's epoch */
#define GL_B32		4294967296LL

/* hexval - one hex digit, or -1 */
static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/*
 * gl_net_text - "192.0.2.0/24" or "2001:db8::/64" for NET hex; a network
 * of an invalid client_address ("x" + hash) stays as it is.
 */
static void
gl_net_text(const char *net, int v4prefix, int v6prefix, char *buf,
    size_t len)
{
	struct ipaddr ip;
	const char *h = net;
	size_t	hl = strlen(net), nbytes;
	int	prefix;
	char	a[64];

	memset(&ip, 0, sizeof(ip));
	if (hl % 2 == 1 && net[0] == '6') {
		ip.family = AF_INET6;
		h++;
		hl--;
	} else {
		ip.family = AF_INET;
	}
	nbytes = hl / 2;
	if (hl % 2 != 0 || nbytes == 0 || nbytes > (ip.family == AF_INET ?
	    4u : 16u))
		goto raw;
	for (size_t i = 0; i < nbytes; i++) {
		int	hi = hexval(h[2 * i]), lo = hexval(h[2 * i + 1]);

		if (hi < 0 || lo < 0)
			goto raw;
		ip.a[i] = (uint8_t)(hi << 4 | lo);
	}
	prefix = ip.family == AF_INET ? v4prefix : v6prefix;
	if ((size_t)(prefix + 7) / 8 != nbytes)
		prefix = (int)nbytes * 8;	/* another prefix made it */
	addr_ip_format(&ip, a, sizeof(a));
	snprintf(buf, len, "%s/%d", a, prefix);
	return;
raw:
	snprintf(buf, len, "%s", net);
}

/* gl_name_text - the network of a client name N for a person */
static void
gl_name_text(const unsigned char *name, size_t len, int v4prefix, int v6prefix,
    char *buf, size_t buflen)
{
	char	hex[2 * GL_NAME_MAX + 2];
	size_t	o = 0;

	if (len < 2) {
		snprintf(buf, buflen, "?");
		return;
	}
	if (name[0] != '4')
		hex[o++] = (char)name[0];
	for (size_t i = 1; i < len && o + 3 < sizeof(hex); i++)
		o += (size_t)snprintf(hex + o, sizeof(hex) - o, "%02x", name[i]);
	hex[o] = '\0';
	if (name[0] == 'h')
		snprintf(buf, buflen, "client %s", hex + 1);
	else
		gl_net_text(hex, v4prefix, v6prefix, buf, buflen);
}

/* gl_key_add - SCAN callback: keep a bucket key g{TT}BB */
static int
gl_key_add(void *arg, const char *key, size_t len)
{
	struct gllist *l = arg;
	const char *p = key + l->rd->prefixlen;

	if (len != l->rd->prefixlen + 7 || p[0] != 'g' || p[1] != '{' ||
	    p[4] != '}')
		return 0;		/* not a bucket (an old-format key) */
	if (l->nkeys == l->capkeys) {
		size_t	ncap = l->capkeys ? l->capkeys * 2 : 256;
		char  **nv = realloc(l->keys, ncap * sizeof(*nv));

		if (nv == NULL) {
			errx_ctl("out of memory");
			return -1;
		}
		l->keys = nv;
		l->capkeys = ncap;
	}
	if ((l->keys[l->nkeys] = malloc(len + 1)) == NULL) {
		errx_ctl("out of memory");
		return -1;
	}
	memcpy(l->keys[l->nkeys], key, len);
	l->keys[l->nkeys][len] = '\0';
	l->nkeys++;
	return 0;
}

/* gl_entry - one field of a bucket into the list (when it is alive) */
static int
gl_entry(struct gllist *l, size_t bucket, const char *f, size_t flen,
    const char *val)
{
	struct glentry *e;
	char	*endp;
	long long v = strtoll(val, &endp, 10), t;
	int	counter = flen > 0 && f[0] == 'a';

	if (*endp != '\0' || flen < 2 || flen > sizeof(e->field))
		return 0;
	if (!counter && flen < 6)
		return 0;
	if (l->only != NULL && (counter ? flen - 1 != l->only->namelen ||
	    memcmp(f + 1, l->only->name, l->only->namelen) != 0 :
	    flen - 4 != l->only->namelen ||
	    memcmp(f, l->only->name, l->only->namelen) != 0))
		return 0;
	if (l->n >= GL_MAX_ENTRIES) {
		errx_ctl("more than %d greylist entries: give a NETWORK",
		    GL_MAX_ENTRIES);
		return -1;
	}
	if (l->n == l->cap) {
		size_t	ncap = l->cap ? l->cap * 2 : 256;
		struct glentry *nv = realloc(l->v, ncap * sizeof(*nv));

		if (nv == NULL) {
			errx_ctl("out of memory");
			return -1;
		}
		l->v = nv;
		l->cap = ncap;
	}
	e = &l->v[l->n];
	memset(e, 0, sizeof(*e));
	e->kind = counter ? 'a' : 't';
	e->bucket = bucket;
	memcpy(e->field, f, flen);
	e->fieldlen = flen;
	e->value = v;
	if (counter) {
		e->namelen = flen - 1;
		memcpy(e->name, f + 1, e->namelen);
		t = v % GL_B32;
		e->left = t + l->maxage - l->now;
	} else {
		e->namelen = flen - 4;
		memcpy(e->name, f, e->namelen);
		memcpy(e->hash, f + e->namelen, 4);
		t = v / 2;
		e->left = t + (v % 2 ? l->maxage : l->window) - l->now;
	}
	if (e->left <= 0)
		return 0;		/* dead: the script removes it later */
	gl_name_text(e->name, e->namelen, l->v4prefix, l->v6prefix, e->text,
	    sizeof(e->text));
	if (l->glob != NULL && fnmatch(l->glob, e->text, 0) != 0)
		return 0;
	l->n++;
	return 0;
}

/* gl_time - Redis's clock in greylist.lua's terms; 0 or -1 */
static int
gl_time(struct ctlredis *rd, struct gllist *l)
{
	const char *av[1] = { "TIME" };
	size_t	al[1] = { 4 };
	redisReply *rp = redis_argv(rd, 1, av, al);

	if (rp == NULL)
		return -1;
	if (rp->type != REDIS_REPLY_ARRAY || rp->elements < 1 ||
	    rp->element[0]->type != REDIS_REPLY_STRING) {
		freeReplyObject(rp);
		errx_ctl("redis at %s: unexpected answer to TIME", rd->where);
		return -1;
	}
	l->now = strtoll(rp->element[0]->str, NULL, 10) - GL_EPOCH;
	freeReplyObject(rp);
	return 0;
}

/*
 * gl_collect - every bucket matching pattern, HGETALL pipelined in
 * batches, alive entries (of l->only, or matching l->glob) into l
 */
static int
gl_collect(struct ctlredis *rd, struct gllist *l, const char *pattern)
{
	if (gl_time(rd, l) < 0 || redis_scan(rd, pattern, gl_key_add, l) < 0)
		return -1;
	for (size_t b = 0; b < l->nkeys; b += 256) {
		size_t	end = b + 256 < l->nkeys ? b + 256 : l->nkeys;

		for (size_t i = b; i < end; i++) {
			const char *av[2] = { "HGETALL", l->keys[i] };
			size_t	al[2] = { 7, strlen(l->keys[i]) };

			redisAppendCommandArgv(rd->c, 2, av, al);
		}
		for (size_t i = b; i < end; i++) {
			redisReply *rp = NULL;
			int	rc = 0;

			if (redisGetReply(rd->c, (void **)&rp) != REDIS_OK ||
			    rp == NULL) {
				errx_ctl("redis at %s: %s", rd->where,
				    rd->c->errstr[0] ? rd->c->errstr :
				    "no answer within the timeout");
				return -1;
			}
			if (rp->type == REDIS_REPLY_ARRAY)
				for (size_t j = 0; rc == 0 && j + 1 <
				    rp->elements; j += 2)
					if (rp->element[j]->type ==
					    REDIS_REPLY_STRING &&
					    rp->element[j + 1]->type ==
					    REDIS_REPLY_STRING)
						rc = gl_entry(l, i,
						    rp->element[j]->str,
						    rp->element[j]->len,
						    rp->element[j + 1]->str);
			freeReplyObject(rp);
			if (rc < 0)
				return -1;
		}
	}
	return 0;
}

/* gl_free - release the list */
static void
gl_free(struct gllist *l)
{
	for (size_t i = 0; i < l->nkeys; i++)
		free(l->keys[i]);
	free(l->keys);
	free(l->v);
	l->v = NULL;
	l->keys = NULL;
	l->n = l->cap = l->nkeys = l->capkeys = 0;
}

/* gl_cmp - by network text, triplets before the counter, then time */
static int
gl_cmp(const void *a, const void *b)
{
	const struct glentry *x = a, *y = b;
	int	c = strcmp(x->text, y->text);

	if (c != 0)
		return c;
	if (x->kind != y->kind)
		return x->kind == 't' ? -1 : 1;
	if (x->value != y->value)
		return x->value < y->value ? -1 : 1;
	return memcmp(x->hash, y->hash, 4);
}

/*
 * gl_target - the client part of a NETWORK argument (an address,
 * ADDRESS/LEN with the rule's prefix, or the "x..." network of an invalid
 * client_address as listed), as greylist.h names it; also its text.
 * 0 or EXIT_USAGE.
 */
static int
gl_target(const char *arg, int v4prefix, int v6prefix, struct gl_key *k,
    char *text, size_t textlen)
{
	struct ipaddr ip;
	char	a[64], esc[128], net[72];
	const char *slash = strchr(arg, '/');
	size_t	al = slash ? (size_t)(slash - arg) : strlen(arg);

	if (arg[0] == 'x' && strlen(arg) == 17 &&
	    strspn(arg + 1, "0123456789abcdef") == 16) {
		greylist_client_of(arg, 17, k);
		snprintf(text, textlen, "%s", arg);
		return 0;
	}
	if (al >= sizeof(a))
		goto bad;
	memcpy(a, arg, al);
	a[al] = '\0';
	if (addr_ip_parse(a, &ip) < 0)
		goto bad;
	if (slash != NULL) {
		int	want = ip.family == AF_INET ? v4prefix : v6prefix;

		if (parse_int(slash + 1, 0, 128) != want) {
			errx_ctl("%s: the greylist rule groups clients by /%d "
			    "networks; give an address in it (or ADDRESS/%d)",
			    log_escape(esc, sizeof(esc), arg, strlen(arg)),
			    want, want);
			return EXIT_USAGE;
		}
	}
	addr_net_hex(&ip, v4prefix, v6prefix, net, sizeof(net));
	greylist_client_of(net, strlen(net), k);
	gl_net_text(net, v4prefix, v6prefix, text, textlen);
	return 0;
bad:
	errx_ctl("\"%s\": expected a client IP address (IPv4 or IPv6)",
	    log_escape(esc, sizeof(esc), arg, strlen(arg)));
	return EXIT_USAGE;
}

/* gl_pattern - SCAN pattern of every bucket, or of one tag's buckets */
static int
gl_pattern(const struct ctlredis *rd, const struct gl_key *only, char *pat,
    size_t len)
{
	char	pre[700];

	if (glob_prefix(rd, pre, sizeof(pre)) != 0)
		return -1;
	if (only != NULL)
		return glob_pattern(rd, pat, len, "%sg\\{%02x\\}*", pre,
		    only->tag);
	return glob_pattern(rd, pat, len, "%sg\\{*", pre);
}

/* gl_list - print the entries */
static int
gl_list(struct ctlredis *rd, struct gllist *l)
{
	char	pat[1024], seen[32];
	size_t	ntrip = 0, nawl = 0;

	if (gl_pattern(rd, l->only, pat, sizeof(pat)) < 0 ||
	    gl_collect(rd, l, pat) < 0)
		return EXIT_FAIL;
	if (l->n > 0)
		qsort(l->v, l->n, sizeof(*l->v), gl_cmp);
	for (size_t i = 0; i < l->n; i++) {
		const struct glentry *e = &l->v[i];

		if (e->kind == 'a') {
			long long n = e->value / GL_B32;

			if (nawl++ == 0 && ntrip > 0)
				putchar('\n');
			printf("%-20s auto-whitelist: %lld successful "
			    "retr%s, expires in %lld s\n", e->text, n,
			    n == 1 ? "y" : "ies", e->left);
			continue;
		}
		if (ntrip++ == 0)
			printf("%-20s %-8s %-20s %-7s %s\n", "NETWORK",
			    "TRIPLET", "SEEN (UTC)", "STATE", "EXPIRES IN");
		{
			time_t	t = (time_t)(e->value / 2 + GL_EPOCH);
			struct tm tm;

			gmtime_r(&t, &tm);
			strftime(seen, sizeof(seen), "%Y-%m-%d %H:%M:%S", &tm);
		}
		printf("%-20s %02x%02x%02x%02x %-20s %-7s %lld s\n", e->text,
		    e->hash[0], e->hash[1], e->hash[2], e->hash[3], seen,
		    e->value % 2 ? "passed" : "waiting", e->left);
	}
	printf("%zu triplet%s, %zu auto-whitelist counter%s (a triplet's "
	    "sender and recipient are stored only as a hash and cannot be "
	    "shown; SEEN is the first sighting while waiting, the last once "
	    "passed)\n", ntrip, ntrip == 1 ? "" : "s", nawl,
	    nawl == 1 ? "" : "s");
	return EXIT_REPLY;
}

/* gl_old_add - SCAN callback: an old-format key (g{NET}HASH8 or a{NET}) */
static int
gl_old_add(void *arg, const char *key, size_t len)
{
	struct ctlredis *rd = arg;
	const char *av[2] = { "DEL", key };
	size_t	al[2] = { 3, len };
	redisReply *rp = redis_argv(rd, 2, av, al);

	if (rp == NULL)
		return -1;
	freeReplyObject(rp);
	return 0;
}

/* gl_delete - every entry of the client and its counter */
static int
gl_delete(struct ctlredis *rd, struct gllist *l, const char *net,
    const char *text)
{
	char	pat[1024], pre[700];
	long long trip = 0, counter = 0;

	if (gl_pattern(rd, l->only, pat, sizeof(pat)) < 0 ||
	    gl_collect(rd, l, pat) < 0)
		return EXIT_FAIL;
	for (size_t i = 0; i < l->n; i++) {
		const char *av[3] = { "HDEL", l->keys[l->v[i].bucket],
		    (const char *)l->v[i].field };
		size_t	al[3] = { 4, strlen(av[1]), l->v[i].fieldlen };

		redisAppendCommandArgv(rd->c, 3, av, al);
	}
	for (size_t i = 0; i < l->n; i++) {
		redisReply *rp = NULL;

		if (redisGetReply(rd->c, (void **)&rp) != REDIS_OK ||
		    rp == NULL) {
			errx_ctl("redis at %s: %s", rd->where,
			    rd->c->errstr[0] ? rd->c->errstr :
			    "no answer within the timeout");
			return -1;
		}
		if (rp->type == REDIS_REPLY_INTEGER && rp->integer > 0) {
			if (l->v[i].kind == 'a')
				counter++;
			else
				trip++;
		}
		freeReplyObject(rp);
	}
	/* entries of the old format (one key each), until they expire */
	if (net != NULL && net[0] != '\0') {
		if (glob_prefix(rd, pre, sizeof(pre)) != 0 ||
		    glob_pattern(rd, pat, sizeof(pat), "%sg\\{%s\\}*", pre,
		    net) != 0 || redis_scan(rd, pat, gl_old_add, rd) < 0 ||
		    glob_pattern(rd, pat, sizeof(pat), "%sa\\{%s\\}", pre,
		    net) != 0 || redis_scan(rd, pat, gl_old_add, rd) < 0)
			return EXIT_FAIL;
	}
	if (trip == 0 && counter == 0)
		printf("%s: no greylist entries\n", text);
	else
		printf("%s: deleted %lld triplet%s%s; its next mail is "
		    "greylisted as new\n", text, trip, trip == 1 ? "" : "s",
		    counter ? " and the auto-whitelist counter" : "");
	return EXIT_REPLY;
}

/* gl_client_hex - the old format's NET hex of an argument ("" if none) */
static void
gl_client_hex(const char *arg, int v4prefix, int v6prefix, char *net,
    size_t len)
{
	struct ipaddr ip;
	char	a[64];
	size_t	al = strcspn(arg, "/");

	net[0] = '\0';
	if (arg[0] == 'x') {
		snprintf(net, len, "%s", arg);
		return;
	}
	if (al >= sizeof(a))
		return;
	memcpy(a, arg, al);
	a[al] = '\0';
	if (addr_ip_parse(a, &ip) == 0)
		addr_net_hex(&ip, v4prefix, v6prefix, net, len);
}

/*
 * cmd_greylist - "list [PATTERN]" and "delete NETWORK" on the keys of the
 * first greylist rule (or -r RULE): its ipv4_prefix/ipv6_prefix make NET.
 */
static int
cmd_greylist(const struct ctl *ctl, int argc, char **argv)
{
	struct ctlconf cc;
	struct ctlredis rd;
	struct gllist l;
	struct gl_key only;
	const config_setting_t *set = NULL;
	char	net[72] = "", text[80];
	int	status, list;

	if (argc < 1 || !((strcmp(argv[0], "list") == 0 && argc <= 2) ||
	    (strcmp(argv[0], "delete") == 0 && argc == 2))) {
		errx_ctl("usage: policyctl [-c CONFIG] [-r RULE] greylist "
		    "list [PATTERN] | delete NETWORK");
		return EXIT_USAGE;
	}
	list = argv[0][0] == 'l';
	if ((status = conf_open(ctl, &cc)) != 0) {
		conf_close(&cc);
		return status;
	}
	if (conf_rule(&cc, ctl->rule, "greylist", &set) == NULL) {
		conf_close(&cc);
		return EXIT_USAGE;
	}
	memset(&l, 0, sizeof(l));
	l.v4prefix = conf_int(set, "ipv4_prefix", 24);
	l.v6prefix = conf_int(set, "ipv6_prefix", 64);
	l.window = conf_int(set, "retry_window", 2 * 86400);
	l.maxage = conf_int(set, "max_age", 35 * 86400);
	if (argc == 2 && list && strpbrk(argv[1], "*?[") != NULL) {
		l.glob = argv[1];
	} else if (argc == 2) {
		if ((status = gl_target(argv[1], l.v4prefix, l.v6prefix, &only,
		    text, sizeof(text))) != 0) {
			conf_close(&cc);
			return status;
		}
		l.only = &only;
		gl_client_hex(argv[1], l.v4prefix, l.v6prefix, net,
		    sizeof(net));
	}
	if ((status = redis_open(ctl, cc.cfg, &rd)) != 0) {
		conf_close(&cc);
		return status;
	}
	l.rd = &rd;
	status = list ? gl_list(&rd, &l) : gl_delete(&rd, &l, net, text);
	gl_free(&l);
	redis_close(&rd);
	conf_close(&cc);
	return status;
}

/* ------------------------------------------------------------------ stats */

#define HTTP_MAX_BYTES	(64 * 1024 * 1024)
#define ST_MAX_DEC	1024
#define ST_MAX_BUCKETS	64

/* one policyd_decisions_total line */
struct mdec {
	char	rule[128], action[64];
	double	n;
};

/* the figures of one /metrics page */
struct mstats {
	double	requests, replies, malformed, on_error;
	double	by_state[16];
	char	state_name[16][24];
	int	nstates;
	struct mdec dec[ST_MAX_DEC];
	int	ndec;
	double	le[ST_MAX_BUCKETS], cum[ST_MAX_BUCKETS];
	int	nbuckets;
	double	lat_sum, lat_count;
	double	conns, conns_total, reloads, reload_failures, generation;
	double	redis_up, redis_commands, redis_errors, redis_timeouts;
	double	redis_reconnects, redis_noscript, redis_latency_sum;
	int	have_redis;
};

/*
 * http_get - GET path over HTTP/1.0 from HOST:PORT; the body (malloc'ed,
 * NUL-terminated) in *body. 0, or EXIT_FAIL / EXIT_USAGE after a message.
 */
static int
http_get(const struct ctl *ctl, const char *hostport, const char *path,
    char **body)
{
	long long deadline = mono_ms() + ctl->timeout_ms;
	char	req[512], *buf = NULL, *p;
	size_t	len = 0, cap = 0;
	int	fd, status;

	*body = NULL;
	if ((fd = ctl_connect(hostport, ctl->timeout_ms, deadline, &status))
	    < 0)
		return status;
	snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: %s\r\n"
	    "User-Agent: policyctl/%s\r\nAccept: text/plain\r\n\r\n", path,
	    hostport, POLICYD_VERSION);
	if (send_all(fd, req, strlen(req), deadline) < 0) {
		errx_ctl("sending to %s: %s", hostport, strerror(errno));
		goto fail;
	}
	for (;;) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		ssize_t	n;
		int	pn;

		if (cap - len < 4096 + 1) {
			size_t	ncap = cap ? cap * 2 : 65536;
			char	*nb;

			if (ncap > HTTP_MAX_BYTES) {
				errx_ctl("%s: answer longer than %d bytes",
				    hostport, HTTP_MAX_BYTES);
				goto fail;
			}
			if ((nb = realloc(buf, ncap)) == NULL) {
				errx_ctl("out of memory");
				goto fail;
			}
			buf = nb;
			cap = ncap;
		}
		pn = poll(&pfd, 1, remaining_ms(deadline));
		if (pn < 0 && errno == EINTR)
			continue;
		if (pn <= 0) {
			errx_ctl("no complete answer from %s within %d ms",
			    hostport, ctl->timeout_ms);
			goto fail;
		}
		n = recv(fd, buf + len, cap - len - 1, 0);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0) {
			errx_ctl("reading from %s: %s", hostport,
			    strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;		/* HTTP/1.0: the end of the answer */
		len += (size_t)n;
	}
	close(fd);
	fd = -1;
	buf[len] = '\0';
	if (strncmp(buf, "HTTP/1.", 7) != 0 || len < 12) {
		errx_ctl("%s: not an HTTP answer (is it policyd's "
		    "metrics.address?)", hostport);
		goto fail;
	}
	if (strncmp(buf + 9, "200", 3) != 0) {
		p = buf + strcspn(buf, "\r\n");
		*p = '\0';
		errx_ctl("http://%s%s: %s", hostport, path, buf);
		goto fail;
	}
	if ((p = strstr(buf, "\r\n\r\n")) == NULL) {
		errx_ctl("%s: HTTP answer without a body", hostport);
		goto fail;
	}
	p += 4;
	memmove(buf, p, len - (size_t)(p - buf) + 1);
	*body = buf;
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	free(buf);
	return EXIT_FAIL;
}

/*
 * label_get - the value of label name in "a=\"x\",b=\"y\"" (unescaped)
 * into buf; 0, or -1 when it is not there.
 */
static int
label_get(const char *labels, const char *name, char *buf, size_t len)
{
	size_t	nl = strlen(name), o = 0;
	const char *p = labels;

	while (*p) {
		const char *eq = strchr(p, '=');

		if (eq == NULL || eq[1] != '"')
			return -1;
		if ((size_t)(eq - p) == nl && strncmp(p, name, nl) == 0) {
			for (p = eq + 2; *p && *p != '"'; p++) {
				char	c = *p;

				if (c == '\\' && p[1] != '\0') {
					c = *++p;
					if (c == 'n')
						c = '\n';
				}
				if (o + 1 < len)
					buf[o++] = c;
			}
			buf[o] = '\0';
			return 0;
		}
		for (p = eq + 2; *p && *p != '"'; p++)
			if (*p == '\\' && p[1] != '\0')
				p++;
		if (*p == '"')
			p++;
		if (*p == ',')
			p++;
	}
	return -1;
}

/* mstats_line - one "name{labels} value" line */
static void
mstats_line(struct mstats *m, char *line)
{
	static const struct {
		const char *name;
		size_t	off;
		int	redis;
	} plain[] = {
#define M(n, f, r)	{ n, offsetof(struct mstats, f), r }
		M("policyd_requests_total", requests, 0),
		M("policyd_replies_total", replies, 0),
		M("policyd_malformed_total", malformed, 0),
		M("policyd_on_error_total", on_error, 0),
		M("policyd_request_duration_seconds_sum", lat_sum, 0),
		M("policyd_request_duration_seconds_count", lat_count, 0),
		M("policyd_connections", conns, 0),
		M("policyd_connections_total", conns_total, 0),
		M("policyd_reloads_total", reloads, 0),
		M("policyd_reload_failures_total", reload_failures, 0),
		M("policyd_config_generation", generation, 0),
		M("policyd_redis_up", redis_up, 0),
		M("policyd_redis_commands_total", redis_commands, 1),
		M("policyd_redis_errors_total", redis_errors, 1),
		M("policyd_redis_timeouts_total", redis_timeouts, 1),
		M("policyd_redis_reconnects_total", redis_reconnects, 1),
		M("policyd_redis_noscript_total", redis_noscript, 1),
		M("policyd_redis_latency_seconds_sum", redis_latency_sum, 1),
#undef M
	};
	char	*labels = NULL, *val, *end, *name = line, a[128];
	double	v;

	if (*line == '#' || *line == '\0')
		return;
	if ((val = strrchr(line, ' ')) == NULL)
		return;
	*val++ = '\0';
	v = strtod(val, &end);
	if (end == val)
		return;
	if ((labels = strchr(line, '{')) != NULL) {
		char	*close = strrchr(labels, '}');

		if (close == NULL)
			return;
		*labels++ = '\0';
		*close = '\0';
	}
	if (labels == NULL) {
		for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
			if (strcmp(name, plain[i].name) == 0) {
				*(double *)((char *)m + plain[i].off) = v;
				m->have_redis |= plain[i].redis;
			}
		return;
	}
	if (strcmp(name, "policyd_requests_by_state_total") == 0) {
		if (m->nstates < 16 && label_get(labels, "state", a,
		    sizeof(a)) == 0) {
			snprintf(m->state_name[m->nstates],
			    sizeof(m->state_name[0]), "%s", a);
			m->by_state[m->nstates++] = v;
		}
	} else if (strcmp(name, "policyd_decisions_total") == 0) {
		if (m->ndec < ST_MAX_DEC && label_get(labels, "rule",
		    m->dec[m->ndec].rule, sizeof(m->dec[0].rule)) == 0 &&
		    label_get(labels, "action", m->dec[m->ndec].action,
		    sizeof(m->dec[0].action)) == 0)
			m->dec[m->ndec++].n = v;
	} else if (strcmp(name, "policyd_request_duration_seconds_bucket")
	    == 0) {
		if (m->nbuckets < ST_MAX_BUCKETS && label_get(labels, "le", a,
		    sizeof(a)) == 0) {
			m->le[m->nbuckets] = strcmp(a, "+Inf") == 0 ? -1 :
			    strtod(a, NULL);
			m->cum[m->nbuckets++] = v;
		}
	}
}

/*
 * quantile - estimate the q-quantile in seconds from the cumulative
 * histogram, interpolating inside the bucket (as Prometheus'
 * histogram_quantile); -1 when it lies in the +Inf bucket, -2 when empty.
 */
static double
quantile(const struct mstats *m, double q)
{
	double	total, rank, lo = 0, prev = 0;

	if (m->nbuckets == 0 || (total = m->cum[m->nbuckets - 1]) <= 0)
		return -2;
	rank = q * total;
	for (int i = 0; i < m->nbuckets; i++) {
		if (m->cum[i] >= rank) {
			if (m->le[i] < 0)
				return -1;
			if (m->cum[i] - prev <= 0)
				return m->le[i];
			return lo + (m->le[i] - lo) * (rank - prev) /
			    (m->cum[i] - prev);
		}
		if (m->le[i] >= 0)
			lo = m->le[i];
		prev = m->cum[i];
	}
	return -1;
}

/* print_ms - a latency for a person */
static void
print_ms(const char *what, double sec, const struct mstats *m)
{
	if (sec == -1) {
		double	last = 0;

		for (int i = 0; i < m->nbuckets; i++)
			if (m->le[i] >= 0)
				last = m->le[i];
		printf("%s > %g ms", what, last * 1000);
	} else {
		printf("%s %.3g ms", what, sec * 1000);
	}
}

/* dec_cmp - decisions, most frequent first */
static int
dec_cmp(const void *a, const void *b)
{
	double	x = ((const struct mdec *)a)->n;
	double	y = ((const struct mdec *)b)->n;

	return x < y ? 1 : x > y ? -1 : 0;
}

/* stats_print - the figures for a person */
static void
stats_print(const struct mstats *m, const char *hostport)
{
	printf("policyd at http://%s/metrics\n", hostport);
	printf("%-14s %.0f", "requests", m->requests);
	for (int i = 0, n = 0; i < m->nstates; i++)
		if (m->by_state[i] > 0)
			printf("%s%s %.0f", n++ ? ", " : " (",
			    m->state_name[i], m->by_state[i]);
	for (int i = 0; i < m->nstates; i++)
		if (m->by_state[i] > 0) {
			putchar(')');
			break;
		}
	putchar('\n');
	printf("%-14s %.0f\n", "replies", m->replies);
	printf("%-14s %.0f (connections closed for malformed or timed-out "
	    "requests)\n", "malformed", m->malformed);
	printf("%-14s %.0f (a check could not decide: on_error answered)\n",
	    "on_error", m->on_error);
	printf("decisions:\n");
	if (m->ndec == 0)
		printf("  none yet\n");
	for (int i = 0; i < m->ndec; i++)
		printf("  %-24s %-18s %10.0f\n", m->dec[i].rule,
		    m->dec[i].action, m->dec[i].n);
	printf("%-14s ", "latency");
	if (m->lat_count <= 0) {
		printf("no requests yet\n");
	} else {
		printf("mean %.3g ms; ", m->lat_sum / m->lat_count * 1000);
		print_ms("p50", quantile(m, 0.5), m);
		print_ms(", p90", quantile(m, 0.9), m);
		print_ms(", p99", quantile(m, 0.99), m);
		printf(" (estimated from the histogram)\n");
	}
	printf("%-14s %.0f open, %.0f accepted\n", "connections", m->conns,
	    m->conns_total);
	printf("%-14s %s", "redis", m->redis_up > 0 ? "up" : "DOWN");
	if (m->have_redis) {
		printf(", %.0f commands, %.0f errors, %.0f timeouts, %.0f "
		    "reconnects, %.0f NOSCRIPT", m->redis_commands,
		    m->redis_errors, m->redis_timeouts, m->redis_reconnects,
		    m->redis_noscript);
		if (m->redis_commands > 0)
			printf(", mean %.3g ms", m->redis_latency_sum /
			    m->redis_commands * 1000);
	}
	putchar('\n');
	printf("%-14s generation %.0f, %.0f reloads, %.0f refused\n",
	    "configuration", m->generation, m->reloads, m->reload_failures);
}

/* one lookup of cmd_map */
struct map_answer {
	struct event_base *base;
	int	done;
	enum table_status st;
	int	cached;
	char	value[SQLCF_RESULT_MAX_CTL + 1];
};

/* map_answered - the table's callback */
static void
map_answered(void *arg, enum table_status st, const char *value, int cached)
{
	struct map_answer *a = arg;

	a->done = 1;
	a->st = st;
	a->cached = cached;
	snprintf(a->value, sizeof(a->value), "%s", value ? value : "");
	event_base_loopbreak(a->base);
}

/*
 * cmd_map - "map query MAP KEY...": each key looked up in turn by the
 * daemon's table code (table.h), printed with where the answer came from
 */
static int
cmd_map(const struct ctl *ctl, int argc, char **argv)
{
	struct map_answer a;
	struct table *t;
	const char *spec, *file, *slash;
	char	path[4096], err[4400], esc[SQLCF_RESULT_MAX_CTL * 4 + 8];
	char	key[1100];
	int	rc = EXIT_REPLY, sql;

	if (argc < 3 || strcmp(argv[0], "query") != 0) {
		errx_ctl("usage: policyctl [-c CONFIG] map query MAP KEY "
		    "[KEY...]  (MAP: pgsql:FILE, mysql:FILE or FILE)");
		return EXIT_USAGE;
	}
	spec = argv[1];
	sql = table_is_sql(spec);
	file = sql ? spec + 6 : spec;
	/* relative to the configuration's directory, as in policyd.conf */
	if (file[0] != '/' && (slash = strrchr(ctl->config, '/')) != NULL)
		snprintf(path, sizeof(path), "%.*s/%s",
		    (int)(slash - ctl->config), ctl->config, file);
	else
		snprintf(path, sizeof(path), "%s", file);
	log_init("policyctl", 1, 0);
	log_set_level(LOG_L_WARN);
	memset(&a, 0, sizeof(a));
	if ((a.base = event_base_new()) == NULL) {
		errx_ctl("cannot create an event loop");
		return EXIT_FAIL;
	}
	table_set_base(a.base);
	if ((t = table_open(spec, path, 0, err, sizeof(err))) == NULL) {
		errx_ctl("%s", err);
		table_set_base(NULL);
		event_base_free(a.base);
		return EXIT_FAIL;
	}
	printf("map %s\n", table_name(t));
	for (int i = 2; i < argc; i++) {
		long long t0 = mono_ms();

		/* the checks ask lowercase keys */
		snprintf(key, sizeof(key), "%s", argv[i]);
		addr_lower(key);
		a.done = 0;
		table_lookup(t, key, map_answered, &a);
		while (!a.done)
			if (event_base_dispatch(a.base) < 0)
				break;
		log_escape(esc, sizeof(esc), key, strlen(key));
		printf("%s: ", esc);
		if (!a.done || a.st == TABLE_ERROR) {
			printf("error: the lookup failed (database down, slow, "
			    "or a query error; see above)\n");
			rc = EXIT_FAIL;
			continue;
		}
		if (a.st == TABLE_FOUND) {
			log_escape(esc, sizeof(esc), a.value, strlen(a.value));
			printf("found \"%s\"", esc);
		} else
			printf("not found");
		if (!sql)
			printf(" (file)\n");
		else if (a.cached)
			printf(" (cache)\n");
		else
			printf(" (database, %lld ms)\n", mono_ms() - t0);
	}
	table_unref(t);
	table_shutdown();
	event_base_free(a.base);
	return rc;
}

/* cmd_stats - fetch /metrics and print it for a person */
static int
cmd_stats(const struct ctl *ctl, int argc, char **argv)
{
	struct ctlconf cc;
	struct mstats *m;
	char	hostport[300], *body = NULL, *line, *next;
	int	status;

	(void)argv;
	if (argc != 0) {
		errx_ctl("usage: policyctl [-c CONFIG | -m HOST:PORT] stats");
		return EXIT_USAGE;
	}
	if (ctl->metrics != NULL) {
		snprintf(hostport, sizeof(hostport), "%s", ctl->metrics);
	} else {
		if ((status = conf_open(ctl, &cc)) != 0) {
			conf_close(&cc);
			return status;
		}
		snprintf(hostport, sizeof(hostport), "%s",
		    cc.cfg->metrics_address);
		conf_close(&cc);
		if (hostport[0] == '\0') {
			errx_ctl("%s: metrics.address is empty: policyd "
			    "serves no metrics", ctl->config);
			return EXIT_FAIL;
		}
	}
	if ((status = http_get(ctl, hostport, "/metrics", &body)) != 0)
		return status;
	if ((m = calloc(1, sizeof(*m))) == NULL) {
		errx_ctl("out of memory");
		free(body);
		return EXIT_FAIL;
	}
	for (line = body; line != NULL && *line; line = next) {
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		line[strcspn(line, "\r")] = '\0';
		mstats_line(m, line);
	}
	free(body);
	if (m->nbuckets == 0 && m->requests == 0 && m->generation == 0) {
		errx_ctl("http://%s/metrics: no policyd figures in the "
		    "answer", hostport);
		free(m);
		return EXIT_FAIL;
	}
	if (m->ndec > 0)
		qsort(m->dec, (size_t)m->ndec, sizeof(m->dec[0]), dec_cmp);
	stats_print(m, hostport);
	free(m);
	return EXIT_REPLY;
}

/* main - options, then the command */
int
main(int argc, char **argv)
{
	struct ctl ctl = { CTL_DEFAULT_ADDRESS, CTL_DEFAULT_TIMEOUT,
	    CONFIG_DEFAULT_PATH, NULL, NULL };
	static char portaddr[32];
	const struct command *cmd = NULL;
	long	v;
	int	ch, status;

	/* "+": options end at the command; its arguments are its own */
	while ((ch = getopt(argc, argv, "+s:p:t:c:r:m:hV")) != -1) {
		switch (ch) {
		case 'c':
			ctl.config = optarg;
			break;
		case 'r':
			ctl.rule = optarg;
			break;
		case 'm': {
			char	path[8], host[256], port[8];
			const char *why = NULL;

			if (strncmp(optarg, "inet:", 5) == 0 ||
			    address_parse(optarg, path, sizeof(path), host,
			    sizeof(host), port, sizeof(port), &why) < 0 ||
			    path[0] != '\0') {
				errx_ctl("bad metrics address \"%s\": "
				    "expected HOST:PORT or [IPV6]:PORT", optarg);
				return EXIT_USAGE;
			}
			ctl.metrics = optarg;
			break;
		}
		case 's':
			ctl.address = optarg;
			break;
		case 'p':
			if ((v = parse_int(optarg, 1, 65535)) < 0) {
				errx_ctl("bad port \"%s\": a number from 1 "
				    "to 65535", optarg);
				return EXIT_USAGE;
			}
			snprintf(portaddr, sizeof(portaddr),
			    "inet:127.0.0.1:%ld", v);
			ctl.address = portaddr;
			break;
		case 't':
			if ((v = parse_int(optarg, 1, CTL_MAX_TIMEOUT)) < 0) {
				errx_ctl("bad timeout \"%s\": milliseconds "
				    "from 1 to %d", optarg, CTL_MAX_TIMEOUT);
				return EXIT_USAGE;
			}
			ctl.timeout_ms = (int)v;
			break;
		case 'V':
			printf("policyctl %s\n", POLICYD_VERSION);
			return EXIT_REPLY;
		case 'h':
			usage(stdout);
			return EXIT_REPLY;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc == 0) {
		usage(stderr);
		return EXIT_USAGE;
	}
	{
		char	path[sizeof(((struct sockaddr_un *)0)->sun_path)];
		char	host[256], port[8];
		const char *why = NULL;

		if (address_parse(ctl.address, path, sizeof(path), host,
		    sizeof(host), port, sizeof(port), &why) < 0) {
			errx_ctl("bad address \"%s\": %s", ctl.address, why);
			return EXIT_USAGE;
		}
	}
	for (size_t i = 0; i < NCOMMANDS && cmd == NULL; i++)
		if (strcmp(argv[0], commands[i].name) == 0)
			cmd = &commands[i];
	if (cmd == NULL) {
		char	esc[128];

		errx_ctl("unknown command \"%s\" (policyctl -h lists them)",
		    log_escape(esc, sizeof(esc), argv[0], strlen(argv[0])));
		return EXIT_USAGE;
	}
	status = cmd->run(&ctl, argc - 1, argv + 1);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		errx_ctl("writing to standard output: %s", strerror(errno));
		return EXIT_FAIL;
	}
	return status;
}

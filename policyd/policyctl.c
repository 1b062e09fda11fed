/*++
 * NAME
 *	policyctl - ask a running policyd, the way Postfix does (see policyctl(8))
 * SYNOPSIS
 *	policyctl [-s ADDRESS] [-p PORT] [-t TIMEOUT_MS] COMMAND [ARG ...]
 *	policyctl -h | -V
 * DESCRIPTION
 *	check	send one policy request built from name=value arguments and
 *		print the action policyd answers.
 *	explain	the same request with policyd_explain=yes: print the trace
 *		that policyd's own rule evaluation produced, then the answer.
 *		Nothing is recomputed here.
 *
 *	The request is formatted here and validated with the daemon's own
 *	codec (proto_parse() with the default limits), so anything policyd
 *	would drop as malformed is refused before it is sent. The reply has
 *	the same shape as a request ("name=value" lines and an empty line),
 *	so proto_parse() with larger limits also frames the reply.
 *
 *	Blocking I/O on one socket, every step bounded by one deadline
 *	(poll()). One request per connection.
 *
 *	More commands go into the command table (commands[]): each gets
 *	the common options in struct ctl and its own arguments.
 * EXIT STATUS
 *	0 a reply was received (whatever the action); 1 connection failure,
 *	timeout, no or malformed reply; 2 usage error.
 *--*/
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "proto.h"

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
#define EXIT_FAIL	1
#define EXIT_USAGE	2

/* options common to every command */
struct ctl {
	const char *address;		/* as given, for messages */
	int	timeout_ms;
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
};

#define NCOMMANDS	(sizeof(commands) / sizeof(commands[0]))

/* usage - print the synopsis and the commands */
static void
usage(FILE *f)
{
	fprintf(f, "usage: policyctl [-s ADDRESS] [-p PORT] [-t TIMEOUT_MS] "
	    "COMMAND [ARG ...]\n"
	    "       policyctl -h | -V\n"
	    "  -s ADDRESS     policyd listener: inet:HOST:PORT, "
	    "inet:[IPV6]:PORT, HOST:PORT,\n"
	    "                 unix:/PATH or /PATH (default %s)\n"
	    "  -p PORT        same as -s inet:127.0.0.1:PORT\n"
	    "  -t TIMEOUT_MS  give up after this long (default %d)\n"
	    "  -h             this help\n"
	    "  -V             print the version and exit\n"
	    "commands:\n", CTL_DEFAULT_ADDRESS, CTL_DEFAULT_TIMEOUT);
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-8s %-16s %s\n", commands[i].name,
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
 * ctl_connect - connect to ctl->address before the deadline. Returns the
 * socket, or -1 after a message (*status: EXIT_USAGE or EXIT_FAIL).
 */
static int
ctl_connect(const struct ctl *ctl, long long deadline, int *status)
{
	struct sockaddr_un sun;
	struct addrinfo hints, *res, *ai;
	char	host[256], port[8];
	const char *why = NULL;
	int	fd = -1, gai, err = 0;

	*status = EXIT_FAIL;
	memset(&sun, 0, sizeof(sun));
	if (address_parse(ctl->address, sun.sun_path, sizeof(sun.sun_path),
	    host, sizeof(host), port, sizeof(port), &why) < 0) {
		errx_ctl("bad address \"%s\": %s", ctl->address, why);
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
			errx_ctl("cannot connect to %s: %s", ctl->address,
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
			    "%d ms", ctl->address, ctl->timeout_ms);
		else
			errx_ctl("cannot connect to %s: %s (is policyd "
			    "running?)", ctl->address, strerror(err));
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
	if ((fd = ctl_connect(ctl, deadline, &status)) < 0) {
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

/* main - options, then the command */
int
main(int argc, char **argv)
{
	struct ctl ctl = { CTL_DEFAULT_ADDRESS, CTL_DEFAULT_TIMEOUT };
	static char portaddr[32];
	const struct command *cmd = NULL;
	long	v;
	int	ch, status;

	/* "+": options end at the command; its arguments are its own */
	while ((ch = getopt(argc, argv, "+s:p:t:hV")) != -1) {
		switch (ch) {
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
	for (size_t i = 0; i < NCOMMANDS; i++)
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

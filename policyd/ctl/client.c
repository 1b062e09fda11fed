/*
 * client.c - policyctl's client of policyd: the policy protocol and HTTP
 * over one blocking socket, every step bounded by one deadline (client.h)
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto.h"

#include "client.h"
#include "ctl.h"

/* a reply with a trace can be long: policyd caps its trace at ~1 MiB */
#define REPLY_MAX_LINE		(1024 * 1024 + 64)
#define REPLY_MAX_BYTES		(4 * 1024 * 1024)
#define REPLY_MAX_LINES		(256 * 1024)
#define HTTP_MAX_BYTES		(64 * 1024 * 1024)

/* remaining_ms - time left before the deadline, 0 when it has passed */
static int
remaining_ms(long long deadline)
{
	long long left = deadline - ctl_mono_ms();

	if (left <= 0)
		return 0;
	return left > INT_MAX ? INT_MAX : (int)left;
}

/* wait_fd - until fd is ready for events; 0, or -1 with errno
 * (ETIMEDOUT when the deadline passed) */
static int
wait_fd(int fd, short events, long long deadline)
{
	for (;;) {
		struct pollfd pfd = { fd, events, 0 };
		int	n = poll(&pfd, 1, remaining_ms(deadline));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		return 0;
	}
}

/*
 * client_address_parse - split ADDRESS into a unix path or a host and a port.
 * Forms: unix:/PATH, /PATH, inet:HOST:PORT, inet:[V6]:PORT, HOST:PORT,
 * [V6]:PORT. Writes into the given buffers; returns 0 or -1 (with *why).
 */
int
client_address_parse(const char *addr, char *path, size_t pathlen, char *host,
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
	if (ctl_parse_int(ps, 1, 65535) < 0 || strlen(ps) >= portlen) {
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
	if (wait_fd(fd, POLLOUT, deadline) < 0)
		goto fail;
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
 * message (*status: CTL_USAGE or CTL_FAIL).
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

	*status = CTL_FAIL;
	memset(&sun, 0, sizeof(sun));
	if (client_address_parse(address, sun.sun_path, sizeof(sun.sun_path),
	    host, sizeof(host), port, sizeof(port), &why) < 0) {
		ctl_err("bad address \"%s\": %s", address, why);
		*status = CTL_USAGE;
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
			ctl_err("cannot connect to %s: %s", address,
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
			ctl_err("cannot connect to %s: no connection within "
			    "%d ms", address, timeout_ms);
		else
			ctl_err("cannot connect to %s: %s (is policyd "
			    "running?)", address, strerror(err));
	}
	return fd;
}

/* send_all - write everything before the deadline; 0 or -1 with errno */
static int
send_all(int fd, const char *buf, size_t len, long long deadline)
{
	while (len > 0) {
		ssize_t	n;

		if (wait_fd(fd, POLLOUT, deadline) < 0)
			return -1;
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
 * recv_more - make room in *buf (first bytes, doubling up to max) and
 * read what comes before the deadline: the number of bytes read (added
 * to *len), 0 at the end of the stream, -1 with errno (ETIMEDOUT,
 * EMSGSIZE past max, ENOMEM, or recv's)
 */
static ssize_t
recv_more(int fd, char **buf, size_t *len, size_t *cap, size_t first,
    size_t max, long long deadline)
{
	for (;;) {
		ssize_t	n;

		if (*cap - *len < 4096 + 1) {
			size_t	ncap = *cap ? *cap * 2 : first;
			char	*nb;

			if (ncap > max) {
				errno = EMSGSIZE;
				return -1;
			}
			if ((nb = realloc(*buf, ncap)) == NULL) {
				errno = ENOMEM;
				return -1;
			}
			*buf = nb;
			*cap = ncap;
		}
		if (wait_fd(fd, POLLIN, deadline) < 0)
			return -1;
		n = recv(fd, *buf + *len, *cap - *len - 1, 0);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n > 0)
			*len += (size_t)n;
		return n;
	}
}

/*
 * client_reply_frame - is buf[0..len) one complete reply (lines up to an
 * empty line), framed by the daemon's codec? 1 with its length in *used,
 * 0 when more bytes are needed, -1 with the codec's reason in *why.
 */
int
client_reply_frame(const char *buf, size_t len, size_t *used,
    const char **why)
{
	static const struct proto_limits lim = {
		REPLY_MAX_LINE, REPLY_MAX_BYTES, REPLY_MAX_LINES
	};
	static char err[128];
	struct proto p;
	struct policy_req parsed;
	int	rc;

	proto_init(&p, &lim);
	rc = proto_parse(&p, buf, len, &parsed, used);
	if (rc == PROTO_NEED_MORE)
		return 0;
	if (rc == PROTO_ERR) {
		snprintf(err, sizeof(err), "%s", p.err ? p.err : "bad reply");
		*why = err;
		return -1;
	}
	proto_req_free(&parsed);
	return 1;
}

/*
 * read_reply - read until one complete reply (client_reply_frame()).
 * Returns 0, or -1 after a message.
 */
static int
read_reply(const struct ctl *ctl, int fd, long long deadline,
    struct reply *rp)
{
	size_t	len = 0, cap = 0, used = 0;
	char	*buf = NULL;
	const char *why = NULL;

	memset(rp, 0, sizeof(*rp));
	for (;;) {
		ssize_t	n = recv_more(fd, &buf, &len, &cap, 8192, SIZE_MAX,
		    deadline);
		int	rc;

		if (n < 0 && errno == ETIMEDOUT) {
			ctl_err("no reply from %s within %d ms", ctl->address,
			    ctl->timeout_ms);
			goto fail;
		}
		if (n < 0) {
			ctl_err("reading the reply from %s: %s", ctl->address,
			    strerror(errno));
			goto fail;
		}
		if (n == 0) {
			ctl_err("%s closed the connection without a %sreply "
			    "(policyd does so with a request it finds "
			    "malformed: see its log)", ctl->address,
			    len ? "complete " : "");
			goto fail;
		}
		if ((rc = client_reply_frame(buf, len, &used, &why)) == 0)
			continue;
		if (rc < 0) {
			ctl_err("malformed reply from %s: %s", ctl->address,
			    why);
			goto fail;
		}
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

/* client_reply_free - release a reply */
void
client_reply_free(struct reply *rp)
{
	free(rp->lines);
	free(rp->buf);
	memset(rp, 0, sizeof(*rp));
}

/*
 * client_reply_index - index the lines of rp->buf (one framed reply, its
 * lines NUL-terminated in place) and find the first action= (Postfix uses
 * the first one only). 0, or -1 with a reason in *why (rp->lines may
 * then be allocated: client_reply_free() releases it).
 */
int
client_reply_index(struct reply *rp, const char **why)
{
	size_t	off = 0, n = 0;
	char	*line;

	for (size_t i = 0; i < rp->len; i++)
		n += rp->buf[i] == '\n';
	if ((rp->lines = calloc(n + 1, sizeof(*rp->lines))) == NULL) {
		*why = "out of memory";
		return -1;
	}
	while ((line = reply_next_line(rp, &off)) != NULL) {
		rp->lines[rp->nlines++] = line;
		if (rp->action == NULL && strncmp(line, "action=", 7) == 0)
			rp->action = line + 7;
	}
	if (rp->action == NULL) {
		*why = "no action= line";
		return -1;
	}
	return 0;
}

/*
 * reply_split - client_reply_index(), or CTL_FAIL after a message (the
 * reply is released).
 */
static int
reply_split(const struct ctl *ctl, struct reply *rp)
{
	const char *why = NULL;

	if (client_reply_index(rp, &why) < 0) {
		if (strcmp(why, "out of memory") == 0)
			ctl_err("out of memory");
		else
			ctl_err("reply from %s has %s", ctl->address, why);
		client_reply_free(rp);
		return CTL_FAIL;
	}
	return CTL_OK;
}

/*
 * client_http_get - GET path over HTTP/1.0 from HOST:PORT; the body (malloc'ed,
 * NUL-terminated) in *body. 0, or CTL_FAIL / CTL_USAGE after a message.
 */
int
client_http_get(const struct ctl *ctl, const char *hostport, const char *path,
    char **body)
{
	long long deadline = ctl_mono_ms() + ctl->timeout_ms;
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
		ctl_err("sending to %s: %s", hostport, strerror(errno));
		goto fail;
	}
	for (;;) {
		ssize_t	n = recv_more(fd, &buf, &len, &cap, 65536,
		    HTTP_MAX_BYTES, deadline);

		if (n < 0 && errno == EMSGSIZE) {
			ctl_err("%s: answer longer than %d bytes", hostport,
			    HTTP_MAX_BYTES);
			goto fail;
		}
		if (n < 0 && errno == ETIMEDOUT) {
			ctl_err("no complete answer from %s within %d ms",
			    hostport, ctl->timeout_ms);
			goto fail;
		}
		if (n < 0) {
			ctl_err("reading from %s: %s", hostport,
			    strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;		/* HTTP/1.0: the end of the answer */
	}
	close(fd);
	fd = -1;
	buf[len] = '\0';
	if (strncmp(buf, "HTTP/1.", 7) != 0 || len < 12) {
		ctl_err("%s: not an HTTP answer (is it policyd's "
		    "metrics.address?)", hostport);
		goto fail;
	}
	if (strncmp(buf + 9, "200", 3) != 0) {
		p = buf + strcspn(buf, "\r\n");
		*p = '\0';
		ctl_err("http://%s%s: %s", hostport, path, buf);
		goto fail;
	}
	if ((p = strstr(buf, "\r\n\r\n")) == NULL) {
		ctl_err("%s: HTTP answer without a body", hostport);
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
	return CTL_FAIL;
}

/*
 * client_ask - send one request's wire form, read and index the reply.
 * CTL_OK with *rp filled, or CTL_FAIL / CTL_USAGE after a message.
 */
int
client_ask(const struct ctl *ctl, const char *wire, size_t wirelen,
    struct reply *rp)
{
	long long deadline = ctl_mono_ms() + ctl->timeout_ms;
	int	fd, status;

	memset(rp, 0, sizeof(*rp));
	if ((fd = ctl_connect(ctl->address, ctl->timeout_ms, deadline,
	    &status)) < 0)
		return status;
	if (send_all(fd, wire, wirelen, deadline) < 0) {
		if (errno == ETIMEDOUT)
			ctl_err("no reply from %s within %d ms (request not "
			    "sent)", ctl->address, ctl->timeout_ms);
		else
			ctl_err("sending to %s: %s", ctl->address,
			    strerror(errno));
		status = CTL_FAIL;
	} else if (read_reply(ctl, fd, deadline, rp) < 0) {
		status = CTL_FAIL;
	} else {
		status = reply_split(ctl, rp);
	}
	close(fd);
	return status;
}

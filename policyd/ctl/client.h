/*++
 * NAME
 *	client.h - policyctl's client of policyd: the policy protocol and
 *	HTTP over one blocking socket
 * DESCRIPTION
 *	client_address_parse() splits an ADDRESS (unix:/PATH, /PATH,
 *	inet:HOST:PORT, inet:[V6]:PORT, HOST:PORT, [V6]:PORT) into a socket
 *	path, or a host and a port; 0, or -1 with a reason in *why.
 *
 *	client_ask() sends one request (its wire form, already checked by
 *	the caller) to policyd's listener and reads one reply, framed by the
 *	daemon's own codec (proto_parse() with limits large enough for a
 *	trace); its lines are indexed and the first action= found (Postfix
 *	uses the first one only).
 *
 *	client_reply_frame() and client_reply_index() are the pure part
 *	of reading a reply (framing; the line index and the first action),
 *	apart so that unit tests can feed them bytes.
 *
 *	client_http_get() fetches one path over HTTP/1.0 (policyd's metrics
 *	listener) and gives the body of a 200 answer.
 * CONTRACT
 *	One connection per call; every step (connect, send, each read) is
 *	bounded by one deadline of ctl->timeout_ms, with poll(). Each
 *	returns CTL_OK, or CTL_FAIL / CTL_USAGE after a message (ctl_err()).
 *--*/
#ifndef POLICYD_CTL_CLIENT_H
#define POLICYD_CTL_CLIENT_H

#include <stddef.h>

struct ctl;

/* a reply of policyd */
struct reply {
	char	*buf;			/* the reply, each line NUL-terminated */
	size_t	len;
	char	**lines;		/* the lines before the empty one */
	size_t	nlines;
	const char *action;		/* first action= value, in buf */
};

int	client_address_parse(const char *addr, char *path, size_t pathlen,
	    char *host, size_t hostlen, char *port, size_t portlen,
	    const char **why);
int	client_ask(const struct ctl *ctl, const char *wire, size_t wirelen,
	    struct reply *rp);
void	client_reply_free(struct reply *rp);
int	client_reply_frame(const char *buf, size_t len, size_t *used,
	    const char **why);
int	client_reply_index(struct reply *rp, const char **why);
int	client_http_get(const struct ctl *ctl, const char *hostport,
	    const char *path, char **body);

#endif

/*++
 * NAME
 *	proto.h - the Postfix policy delegation protocol, as a pure codec
 * SYNOPSIS
 *	struct proto p;
 *	proto_init(&p, &limits);
 *	switch (proto_parse(&p, buf, len, &req, &used)) { ... }
 * DESCRIPTION
 *	A request is "name=value" lines ended by an empty line
 *	(SMTPD_POLICY_README). proto_parse() looks at the bytes received so
 *	far on one connection (buf, len; the caller keeps them buffered) and
 *	returns:
 *	PROTO_OK	one complete request: req is filled, *used bytes were
 *			consumed (the caller drains them; more pipelined
 *			requests may follow)
 *	PROTO_NEED_MORE	no complete request yet and no limit exceeded
 *	PROTO_ERR	malformed: p->err says why (static text). Postfix's rule
 *			for trouble applies: log, send no reply, disconnect.
 *	The parser remembers how far it has scanned, so a client dripping
 *	one byte at a time costs O(n) in total; after PROTO_OK or PROTO_ERR
 *	it starts again at offset 0 of the (drained) buffer.
 *
 *	Malformed: a line without '=', an empty name, a NUL byte, a line
 *	longer than max_line, a request longer than max_request, more than
 *	max_attrs lines, an empty request. A trailing '\r' on a line is
 *	removed. Unknown attributes are counted and ignored. When an
 *	attribute appears twice, the last value wins.
 *
 *	No sockets, no logging, no libevent: the same code serves the
 *	daemon, policyctl, the unit tests and the fuzzer.
 * OWNERSHIP
 *	req->raw is allocated by proto_parse() on PROTO_OK; the values point
 *	into it. Release with proto_req_free().
 *--*/
#ifndef POLICYD_PROTO_H
#define POLICYD_PROTO_H

#include <stddef.h>

enum attr_id {
	A_REQUEST, A_PROTOCOL_STATE, A_PROTOCOL_NAME, A_HELO_NAME, A_QUEUE_ID,
	A_SENDER, A_RECIPIENT, A_RECIPIENT_COUNT, A_CLIENT_ADDRESS,
	A_CLIENT_NAME, A_REVERSE_CLIENT_NAME, A_INSTANCE, A_SASL_METHOD,
	A_SASL_USERNAME, A_SASL_SENDER, A_SIZE, A_CCERT_SUBJECT,
	A_CCERT_ISSUER, A_CCERT_FINGERPRINT, A_CCERT_PUBKEY_FINGERPRINT,
	A_ENCRYPTION_PROTOCOL, A_ENCRYPTION_CIPHER, A_ENCRYPTION_KEYSIZE,
	A_ETRN_DOMAIN, A_STRESS, A_CLIENT_PORT, A_POLICY_CONTEXT,
	A_SERVER_ADDRESS, A_SERVER_PORT, A_COMPATIBILITY_LEVEL,
	A_MAIL_VERSION, A_TLS_SNI,
	A_POLICYD_EXPLAIN,		/* ours: "yes" asks for the trace */
	A_COUNT
};

#define PROTO_OK	0
#define PROTO_NEED_MORE	1
#define PROTO_ERR	(-1)

struct proto_limits {
	size_t	max_line;		/* one "name=value" line, bytes */
	size_t	max_request;		/* one whole request, bytes */
	size_t	max_attrs;		/* lines in one request */
};

#define PROTO_DEF_MAX_LINE	(16 * 1024 + 64)	/* 8 KiB name + 8 KiB value */
#define PROTO_DEF_MAX_REQUEST	(128 * 1024)
#define PROTO_DEF_MAX_ATTRS	256

struct proto {
	struct proto_limits lim;
	size_t	scanned;		/* bytes already searched for the end */
	size_t	line_start;		/* offset of the current line */
	size_t	nlines;			/* lines seen in the current request */
	const char *err;		/* why PROTO_ERR */
	/* the lines of the current request seen so far (offsets in buf) */
	unsigned long long present;	/* bit per attr_id */
	unsigned unknown;
	const char *line_err;		/* the first bad line's, at the end */
	unsigned voff[A_COUNT], vlen[A_COUNT];	/* max_request < 4 GiB */
};

struct policy_req {
	char	*raw;			/* owned copy, known values NUL-terminated */
	const char *v[A_COUNT];		/* "" when absent, never NULL */
	size_t	len[A_COUNT];
	unsigned long long present;	/* bit per attr_id */
	unsigned unknown;		/* attributes we do not know */
	size_t	size;			/* bytes of the request on the wire */
};

void	proto_init(struct proto *p, const struct proto_limits *lim);
int	proto_parse(struct proto *p, const char *buf, size_t len,
	    struct policy_req *req, size_t *used);
void	proto_req_free(struct policy_req *req);

/* proto_attr_id - attribute by name, or -1 */
int	proto_attr_id(const char *name, size_t len);
const char *proto_attr_name(enum attr_id id);

/*
 * proto_format_reply - "action=TEXT\n\n" into buf; control characters
 * in text become '?', so no reply can carry a second line. Returns the
 * length, or -1 when it does not fit.
 */
int	proto_format_reply(char *buf, size_t len, const char *text);

/*
 * proto_format_trace - "trace=LINE\n" for each line of text (control
 * characters become '?'), then "action=ACTION\n\n": the reply to a
 * request with policyd_explain=yes. Returns a malloc'ed string (caller
 * frees) and its length in *len, or NULL.
 */
char	*proto_format_trace(const char *trace, const char *action, size_t *len);

#endif

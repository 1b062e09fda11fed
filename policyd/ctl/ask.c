/*
 * ask.c - policyctl check and explain: one policy request to policyd
 *
 * The request is formatted here and validated with the daemon's own codec
 * (proto_parse() with the default limits), so anything policyd would drop
 * as malformed is refused before it is sent. explain adds
 * policyd_explain=yes and prints the trace that policyd's own rule
 * evaluation produced: nothing is recomputed here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "proto.h"

#include "client.h"
#include "ctl.h"

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
 * Returns 0, or CTL_USAGE after a message.
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
			ctl_err("bad argument \"%s\": expected name=value",
			    log_escape(esc, sizeof(esc), arg, arglen));
			request_free(rq);
			return CTL_USAGE;
		}
		namelen = (size_t)(eq - arg);
		if (namelen == 0) {
			ctl_err("bad argument \"%s\": empty attribute name",
			    log_escape(esc, sizeof(esc), arg, arglen));
			request_free(rq);
			return CTL_USAGE;
		}
		/* argv strings cannot hold a NUL; a line break would split the line */
		if (strpbrk(arg, "\r\n") != NULL) {
			ctl_err("bad argument \"%s\": a name or value may not "
			    "contain a newline, carriage return or NUL byte",
			    log_escape(esc, sizeof(esc), arg, arglen));
			request_free(rq);
			return CTL_USAGE;
		}
		if (proto_attr_id(arg, namelen) < 0)
			ctl_err("warning: unknown attribute \"%s\" (sent "
			    "anyway)", log_escape(esc, sizeof(esc), arg, namelen));
		if (request_set(rq, arg, namelen, eq + 1) < 0)
			goto nomem;
	}
	return 0;
nomem:
	ctl_err("out of memory");
	request_free(rq);
	return CTL_FAIL;
}

/*
 * request_format - the wire form, malloc'ed, in *out (length *outlen).
 * The result is checked with proto_parse() and the daemon's default
 * limits. Returns 0, or CTL_USAGE / CTL_FAIL after a message.
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
		ctl_err("out of memory");
		return CTL_FAIL;
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
		ctl_err("request refused before sending: %s (policyd would "
		    "close the connection without a reply)",
		    rc == PROTO_ERR && p.err ? p.err : "not one request");
		free(buf);
		return CTL_USAGE;
	}
	*out = buf;
	*outlen = o;
	return 0;
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
 * ask_wire - the wire form of a request from "name=value" arguments
 * (defaults request=smtpd_access_policy and protocol_state=RCPT first, a
 * name given twice keeps its first place and its last value, and
 * policyd_explain=yes last for explain), malloc'ed in *wire. CTL_OK, or
 * CTL_USAGE / CTL_FAIL after a message.
 */
int
ask_wire(int argc, char **argv, int explain, char **wire, size_t *wirelen)
{
	struct request rq;
	int	status;

	*wire = NULL;
	*wirelen = 0;
	if (argc == 0) {
		ctl_err("no attributes given (e.g. client_address=192.0.2.1 "
		    "sender=a@example.com recipient=b@example.net)");
		return CTL_USAGE;
	}
	if ((status = request_build(&rq, argc, argv)) != 0)
		return status;
	if (explain && request_set(&rq, "policyd_explain", 15, "yes") < 0) {
		ctl_err("out of memory");
		request_free(&rq);
		return CTL_FAIL;
	}
	status = request_format(&rq, wire, wirelen);
	request_free(&rq);
	return status;
}

/*
 * ask - build, send, and read the reply. Returns CTL_OK with *rp
 * filled, or CTL_FAIL / CTL_USAGE after a message.
 */
static int
ask(const struct ctl *ctl, int argc, char **argv, int explain,
    struct reply *rp)
{
	char	*wire;
	size_t	wirelen;
	int	status;

	if ((status = ask_wire(argc, argv, explain, &wire, &wirelen)) != 0)
		return status;
	status = client_ask(ctl, wire, wirelen, rp);
	free(wire);
	return status;
}

/* cmd_check - print the action */
int
cmd_check(const struct ctl *ctl, int argc, char **argv)
{
	struct reply rp;
	int	status = ask(ctl, argc, argv, 0, &rp);

	if (status != CTL_OK)
		return status;
	print_text("", rp.action);
	client_reply_free(&rp);
	return CTL_OK;
}

/*
 * cmd_explain - print policyd's trace lines, then "answer: ACTION".
 * policyd ends its trace with "answer: ACTION from rule NAME"; that line
 * is the answer line then, and no second one is printed.
 */
int
cmd_explain(const struct ctl *ctl, int argc, char **argv)
{
	struct reply rp;
	const char *last = NULL;
	size_t	alen;
	int	status = ask(ctl, argc, argv, 1, &rp);

	if (status != CTL_OK)
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
	client_reply_free(&rp);
	return CTL_OK;
}

/* proto_test.c - the policy protocol codec: splits, limits, bad input */
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "tap.h"

/* feed - give the parser buf in pieces of step bytes, like a socket */
static int
feed(struct proto *p, const char *buf, size_t len, size_t step,
    struct policy_req *req, size_t *used)
{
	int	rc = PROTO_NEED_MORE;

	for (size_t n = step; n < len + step; n += step) {
		size_t	have = n < len ? n : len;

		rc = proto_parse(p, buf, have, req, used);
		if (rc != PROTO_NEED_MORE)
			return rc;
	}
	return rc;
}

static const char full[] =
    "request=smtpd_access_policy\n"
    "protocol_state=RCPT\n"
    "protocol_name=ESMTP\n"
    "client_address=192.0.2.1\n"
    "client_name=mx.example.com\n"
    "helo_name=mx.example.com\n"
    "sender=alice@example.com\n"
    "recipient=bob@example.net\n"
    "sasl_username=\n"
    "future_attribute=whatever\n"
    "policy_context=submission\n"
    "\n";

static void
test_basic(void)
{
	struct proto p;
	struct policy_req r;
	size_t	used = 0;

	proto_init(&p, NULL);
	is_int(proto_parse(&p, full, strlen(full), &r, &used), PROTO_OK,
	    "complete request parses");
	is_int(used, strlen(full), "consumes the whole request");
	is_str(r.v[A_REQUEST], "smtpd_access_policy", "request");
	is_str(r.v[A_SENDER], "alice@example.com", "sender");
	is_str(r.v[A_RECIPIENT], "bob@example.net", "recipient");
	is_str(r.v[A_POLICY_CONTEXT], "submission", "policy_context");
	is_str(r.v[A_SASL_USERNAME], "", "empty value");
	is_int(r.len[A_CLIENT_ADDRESS], 9, "length of client_address");
	is_str(r.v[A_QUEUE_ID], "", "absent attribute is empty");
	ok(!(r.present & (1ULL << A_QUEUE_ID)), "absent attribute not present");
	ok(r.present & (1ULL << A_SASL_USERNAME), "empty attribute is present");
	is_int(r.unknown, 1, "unknown attribute counted, not rejected");
	proto_req_free(&r);
}

static void
test_split_and_pipeline(void)
{
	struct proto p;
	struct policy_req r;
	size_t	used = 0, steps[] = { 1, 2, 3, 7, 64, 4096 };
	char	two[2 * sizeof(full)];

	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		char	name[64];

		proto_init(&p, NULL);
		snprintf(name, sizeof(name), "request fed %zu bytes at a time",
		    steps[i]);
		is_int(feed(&p, full, strlen(full), steps[i], &r, &used),
		    PROTO_OK, name);
		is_str(r.v[A_RECIPIENT], "bob@example.net", "value intact");
		proto_req_free(&r);
	}
	/* two pipelined requests in one buffer come out one at a time */
	strcpy(two, full);
	strcat(two, full);
	proto_init(&p, NULL);
	is_int(proto_parse(&p, two, strlen(two), &r, &used), PROTO_OK,
	    "first of two pipelined");
	is_int(used, strlen(full), "first stops at its empty line");
	proto_req_free(&r);
	is_int(proto_parse(&p, two + used, strlen(two) - used, &r, &used),
	    PROTO_OK, "second of two pipelined");
	proto_req_free(&r);
	/* partial: no complete request yet */
	proto_init(&p, NULL);
	is_int(proto_parse(&p, full, 20, &r, &used), PROTO_NEED_MORE,
	    "partial request needs more");
}

static void
test_crlf_and_duplicates(void)
{
	struct proto p;
	struct policy_req r;
	size_t	used;
	const char *crlf = "request=smtpd_access_policy\r\nsender=a@b\r\n\r\n";
	const char *dup = "sender=first@x\nsender=second@x\n\n";
	const char *eq = "sender=a=b@c\n\n";

	proto_init(&p, NULL);
	is_int(proto_parse(&p, crlf, strlen(crlf), &r, &used), PROTO_OK,
	    "CRLF line ends accepted");
	is_str(r.v[A_SENDER], "a@b", "CR removed from the value");
	proto_req_free(&r);
	is_int(proto_parse(&p, dup, strlen(dup), &r, &used), PROTO_OK,
	    "duplicate attribute");
	is_str(r.v[A_SENDER], "second@x", "last value wins");
	proto_req_free(&r);
	is_int(proto_parse(&p, eq, strlen(eq), &r, &used), PROTO_OK,
	    "'=' in a value");
	is_str(r.v[A_SENDER], "a=b@c", "value keeps its '='");
	proto_req_free(&r);
}

struct bad {
	const char *name, *input, *err;
} bad[] = {
	{ "line without '='", "request=smtpd_access_policy\ngarbage\n\n",
	  "line without '='" },
	{ "empty name", "=value\n\n", "attribute with empty name" },
	{ "empty request", "\n", "empty request" },
};

static void
test_bad_input(void)
{
	struct proto p;
	struct policy_req r;
	size_t	used;
	char	*big;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		proto_init(&p, NULL);
		is_int(proto_parse(&p, bad[i].input, strlen(bad[i].input), &r,
		    &used), PROTO_ERR, bad[i].name);
		is_str(p.err, bad[i].err, "error text");
	}
	/* NUL byte */
	{
		const char nul[] = "sender=a\0b\n\n";

		proto_init(&p, NULL);
		is_int(proto_parse(&p, nul, sizeof(nul) - 1, &r, &used),
		    PROTO_ERR, "NUL byte rejected");
		is_str(p.err, "NUL byte in request", "NUL error text");
	}
	/* Postfix allows 8 KiB names and values: a full-size line passes */
	big = malloc(40000);
	memcpy(big, "ccert_subject=", 14);
	memset(big + 14, 'x', 8192);
	strcpy(big + 14 + 8192, "\n\n");
	proto_init(&p, NULL);
	is_int(proto_parse(&p, big, strlen(big), &r, &used), PROTO_OK,
	    "8192-byte value accepted");
	is_int(r.len[A_CCERT_SUBJECT], 8192, "8192-byte value intact");
	proto_req_free(&r);
	/* a line over max_line, still without newline: error before the end */
	memset(big, 'y', 20000);
	big[0] = 'a';
	big[1] = '=';
	proto_init(&p, NULL);
	is_int(proto_parse(&p, big, 20000, &r, &used), PROTO_ERR,
	    "over-long line rejected without waiting for its end");
	is_str(p.err, "line too long", "line error text");
	/* many short lines: request too large / too many attributes */
	{
		struct proto_limits lim = { .max_line = 100, .max_request = 2000,
		    .max_attrs = 10 };
		char	many[4000];
		size_t	o = 0;

		for (int i = 0; i < 20; i++)
			o += sprintf(many + o, "x%d=1\n", i);
		many[o++] = '\n';
		proto_init(&p, &lim);
		is_int(proto_parse(&p, many, o, &r, &used), PROTO_ERR,
		    "too many attributes");
		is_str(p.err, "too many attributes", "attrs error text");
		memset(many, 'z', sizeof(many));
		for (int i = 50; i < 4000; i += 50)
			many[i] = '\n';
		many[1] = '=';
		for (int i = 51; i < 4000; i += 50)
			many[i] = '=';
		lim.max_attrs = 1000;
		proto_init(&p, &lim);
		is_int(proto_parse(&p, many, 3000, &r, &used), PROTO_ERR,
		    "request too large");
		is_str(p.err, "request too large", "size error text");
	}
	free(big);
}

/*
 * The lines are looked at as they arrive: a request fed in pieces parses
 * as in one piece, a bad line is reported only once the request is
 * complete (and after what the scan finds: a NUL, too many lines), and
 * the parser starts afresh after an error.
 */
static void
test_lines_as_they_arrive(void)
{
	struct proto p;
	struct policy_req r;
	size_t	used;
	const char *mixed = "sender=first@x\r\nrecipient=a\rb@c\n"
	    "unknown_one=1\nsender=second@x\r\nclient_address=192.0.2.7\n"
	    "unknown_two=\n\r\n";
	const char *badline = "request=smtpd_access_policy\nno equals here\n"
	    "sender=a@b\n\n";
	const char nulafter[] = "bad line\nsender=a\0b\n\n";
	const size_t steps[] = { 1, 2, 5, 13, 1000 };

	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		proto_init(&p, NULL);
		is_int(feed(&p, mixed, strlen(mixed), steps[i], &r, &used),
		    PROTO_OK, "CRLF, duplicates, unknown names, in pieces");
		is_str(r.v[A_SENDER], "second@x", "pieces: last sender wins");
		is_int(r.len[A_SENDER], 8, "pieces: its length, without CR");
		is_str(r.v[A_RECIPIENT], "a\rb@c", "pieces: a CR inside stays");
		is_str(r.v[A_CLIENT_ADDRESS], "192.0.2.7", "pieces: last line");
		is_int(r.unknown, 2, "pieces: two unknown names");
		is_int(used, strlen(mixed), "pieces: the whole request");
		ok(!(r.present & (1ULL << A_HELO_NAME)) &&
		    r.v[A_HELO_NAME][0] == '\0', "pieces: absent is empty");
		proto_req_free(&r);
	}
	proto_init(&p, NULL);
	is_int(proto_parse(&p, badline, strlen(badline) - 1, &r, &used),
	    PROTO_NEED_MORE, "a bad line: reported when the request ends");
	is_int(proto_parse(&p, badline, strlen(badline), &r, &used),
	    PROTO_ERR, "a bad line: the request ended");
	is_str(p.err, "line without '='", "a bad line: its error");
	is_int(proto_parse(&p, full, strlen(full), &r, &used), PROTO_OK,
	    "after an error the parser starts afresh");
	is_str(r.v[A_SENDER], "alice@example.com", "afresh: sender");
	is_int(r.unknown, 1, "afresh: nothing of the bad request counted");
	proto_req_free(&r);
	proto_init(&p, NULL);
	is_int(proto_parse(&p, nulafter, sizeof(nulafter) - 1, &r, &used),
	    PROTO_ERR, "a bad line, then a NUL");
	is_str(p.err, "NUL byte in request", "the NUL is reported");
	{
		struct proto_limits lim = { .max_line = 100, .max_request = 2000,
		    .max_attrs = 3 };
		const char *many = "junk\na=1\nb=2\nc=3\nd=4\n\n";

		proto_init(&p, &lim);
		is_int(proto_parse(&p, many, strlen(many), &r, &used),
		    PROTO_ERR, "a bad line, then too many lines");
		is_str(p.err, "too many attributes", "the count is reported");
	}
}

static void
test_reply(void)
{
	char	buf[64];
	size_t	len;
	char	*t;

	is_int(proto_format_reply(buf, sizeof(buf), "DUNNO"), 14, "reply length");
	is_str(buf, "action=DUNNO\n\n", "reply text");
	proto_format_reply(buf, sizeof(buf), "REJECT a\nb\rc");
	is_str(buf, "action=REJECT a?b?c\n\n", "no second line in a reply");
	is_int(proto_format_reply(buf, 10, "REJECT long text"), -1,
	    "reply that does not fit");
	t = proto_format_trace("rule a: x\nrule b: y\n", "DUNNO", &len);
	is_str(t, "trace=rule a: x\ntrace=rule b: y\naction=DUNNO\n\n",
	    "trace reply");
	is_int(len, strlen(t), "trace length");
	free(t);
	is_int(proto_attr_id("recipient", 9), A_RECIPIENT, "attribute by name");
	{
		int	all = 1;

		for (int i = 0; i < A_COUNT; i++)
			if (proto_attr_id(proto_attr_name(i),
			    strlen(proto_attr_name(i))) != i)
				all = 0;
		ok(all, "every attribute name finds its id");
	}
	is_int(proto_attr_id("recipienx", 9), -1, "unknown name of a known length");
	is_int(proto_attr_id("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 41), -1,
	    "unknown long name");
	is_int(proto_attr_id("recipientx", 10), -1, "unknown name");
	{
		/* unknown names of every length, and known ones cut short */
		char	n[64];
		int	none = 1, cut = 1;

		for (size_t l = 1; l < sizeof(n); l++) {
			for (size_t k = 0; k < l; k++)
				n[k] = (char)('a' + (k * 7 + l) % 26);
			if (proto_attr_id(n, l) != -1)
				none = 0;
		}
		ok(none, "no made-up name of 1..63 bytes is known");
		for (int i = 0; i < A_COUNT; i++) {
			const char *a = proto_attr_name(i);

			if (proto_attr_id(a, strlen(a) - 1) == i ||
			    proto_attr_id(a, 0) != -1)
				cut = 0;
		}
		ok(cut, "a known name cut short is not that name");
		is_int(proto_attr_id("SENDER", 6), -1, "names are case-sensitive");
	}
	is_str(proto_attr_name(A_TLS_SNI), "tls_sni", "name by id");
}

int
main(void)
{
	test_basic();
	test_split_and_pipeline();
	test_crlf_and_duplicates();
	test_bad_input();
	test_lines_as_they_arrive();
	test_reply();
	return tap_done();
}

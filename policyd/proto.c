/*++
 * NAME
 *	proto.c - Postfix policy protocol codec (see proto.h)
 *--*/
#include <stdlib.h>
#include <string.h>

#include "proto.h"

static const char *const attr_names[A_COUNT] = {
	[A_REQUEST] = "request",
	[A_PROTOCOL_STATE] = "protocol_state",
	[A_PROTOCOL_NAME] = "protocol_name",
	[A_HELO_NAME] = "helo_name",
	[A_QUEUE_ID] = "queue_id",
	[A_SENDER] = "sender",
	[A_RECIPIENT] = "recipient",
	[A_RECIPIENT_COUNT] = "recipient_count",
	[A_CLIENT_ADDRESS] = "client_address",
	[A_CLIENT_NAME] = "client_name",
	[A_REVERSE_CLIENT_NAME] = "reverse_client_name",
	[A_INSTANCE] = "instance",
	[A_SASL_METHOD] = "sasl_method",
	[A_SASL_USERNAME] = "sasl_username",
	[A_SASL_SENDER] = "sasl_sender",
	[A_SIZE] = "size",
	[A_CCERT_SUBJECT] = "ccert_subject",
	[A_CCERT_ISSUER] = "ccert_issuer",
	[A_CCERT_FINGERPRINT] = "ccert_fingerprint",
	[A_CCERT_PUBKEY_FINGERPRINT] = "ccert_pubkey_fingerprint",
	[A_ENCRYPTION_PROTOCOL] = "encryption_protocol",
	[A_ENCRYPTION_CIPHER] = "encryption_cipher",
	[A_ENCRYPTION_KEYSIZE] = "encryption_keysize",
	[A_ETRN_DOMAIN] = "etrn_domain",
	[A_STRESS] = "stress",
	[A_CLIENT_PORT] = "client_port",
	[A_POLICY_CONTEXT] = "policy_context",
	[A_SERVER_ADDRESS] = "server_address",
	[A_SERVER_PORT] = "server_port",
	[A_COMPATIBILITY_LEVEL] = "compatibility_level",
	[A_MAIL_VERSION] = "mail_version",
	[A_TLS_SNI] = "tls_sni",
	[A_POLICYD_EXPLAIN] = "policyd_explain",
};

/* proto_attr_name - name of a known attribute */
const char *
proto_attr_name(enum attr_id id)
{
	return (id >= 0 && id < A_COUNT) ? attr_names[id] : NULL;
}

/*
 * proto_attr_id - known attribute by name: ~30 lookups a request. An
 * open-addressing table of 128 slots keyed by the length and three of
 * the name's bytes (no two known names share a slot today; a probe goes
 * on to the next slot until an empty one), then one comparison.
 */
#define ATTR_SLOTS	128
_Static_assert(A_COUNT <= ATTR_SLOTS / 2, "attribute table too full");

static unsigned
attr_hash(const char *name, size_t len)
{
	const unsigned char *u = (const unsigned char *)name;

	return ((unsigned)len * 2u + u[0] + u[len - 1] * 15u + u[len / 2]) &
	    (ATTR_SLOTS - 1);
}

int
proto_attr_id(const char *name, size_t len)
{
	static signed char slot[ATTR_SLOTS];
	static unsigned char alen[A_COUNT];
	static int ready;
	unsigned h;

	if (!ready) {
		memset(slot, -1, sizeof(slot));
		for (int i = 0; i < A_COUNT; i++) {
			alen[i] = (unsigned char)strlen(attr_names[i]);
			for (h = attr_hash(attr_names[i], alen[i]); slot[h] >= 0;
			    h = (h + 1) & (ATTR_SLOTS - 1))
				continue;
			slot[h] = (signed char)i;
		}
		ready = 1;
	}
	if (len == 0)
		return -1;
	for (h = attr_hash(name, len); slot[h] >= 0;
	    h = (h + 1) & (ATTR_SLOTS - 1)) {
		int	i = slot[h];

		if (alen[i] == len && memcmp(attr_names[i], name, len) == 0)
			return i;
	}
	return -1;
}

/* proto_init - fresh parser state */
void
proto_init(struct proto *p, const struct proto_limits *lim)
{
	memset(p, 0, sizeof(*p));
	if (lim)
		p->lim = *lim;
	if (p->lim.max_line == 0)
		p->lim.max_line = PROTO_DEF_MAX_LINE;
	if (p->lim.max_request == 0)
		p->lim.max_request = PROTO_DEF_MAX_REQUEST;
	if (p->lim.max_attrs == 0)
		p->lim.max_attrs = PROTO_DEF_MAX_ATTRS;
}

/* proto_reset - forget the scan position and the lines seen */
static void
proto_reset(struct proto *p)
{
	p->scanned = p->line_start = p->nlines = 0;
	p->present = 0;
	p->unknown = 0;
	p->line_err = NULL;
}

/* proto_fail - reset and report */
static int
proto_fail(struct proto *p, const char *why)
{
	proto_reset(p);
	p->err = why;
	return PROTO_ERR;
}

/*
 * proto_line - note one complete attribute line, buf[s, e) without its
 * line end: the value's place when the name is known (a later line of
 * the same name wins). A bad line is reported when the request is
 * complete, after what the scan finds wrong (as if the lines were read
 * only then).
 */
static void
proto_line(struct proto *p, const char *buf, size_t s, size_t e)
{
	const char *eq = memchr(buf + s, '=', e - s);
	int	id;

	if (eq == NULL || eq == buf + s) {
		if (p->line_err == NULL)
			p->line_err = eq == NULL ? "line without '='" :
			    "attribute with empty name";
		return;
	}
	id = proto_attr_id(buf + s, (size_t)(eq - (buf + s)));
	if (id < 0) {
		p->unknown++;
		return;
	}
	p->voff[id] = (unsigned)(eq + 1 - buf);
	p->vlen[id] = (unsigned)(e - (size_t)(eq + 1 - buf));
	p->present |= 1ULL << id;
}

/*
 * proto_parse - find and parse one complete request. The lines are
 * looked at once, as they arrive: buf must hold the request from its
 * first byte in every call until the request is complete.
 */
int
proto_parse(struct proto *p, const char *buf, size_t len,
    struct policy_req *req, size_t *used)
{
	size_t	i, reqlen = 0, nul = len, searched = p->scanned;
	char	*raw;

	p->err = NULL;
	for (i = p->scanned; i < len; i++) {
		const char *nl = memchr(buf + i, '\n', len - i);
		size_t	e = nl != NULL ? (size_t)(nl - buf) : len;

		/*
		 * A NUL before the end of the line (before any later error).
		 * The first NUL is looked for a KiB ahead at a time, not a
		 * line at a time, nor to the end of a buffer of many requests.
		 */
		if (searched < e) {
			size_t	to = len - e > 1024 ? e + 1024 : len;
			const char *z = memchr(buf + searched, '\0',
			    to - searched);

			if (z != NULL) {
				nul = (size_t)(z - buf);
				to = len;
			}
			searched = to;
		}
		if (nul < e)
			return proto_fail(p, "NUL byte in request");
		if (nl == NULL) {
			i = len;
			break;
		}
		i = e;
		/* an empty line (optionally "\r\n") ends the request */
		if (i == p->line_start ||
		    (i == p->line_start + 1 && buf[i - 1] == '\r')) {
			if (p->nlines == 0)
				return proto_fail(p, "empty request");
			reqlen = i + 1;
			break;
		}
		if (i - p->line_start > p->lim.max_line)
			return proto_fail(p, "line too long");
		if (++p->nlines > p->lim.max_attrs)
			return proto_fail(p, "too many attributes");
		proto_line(p, buf, p->line_start, buf[i - 1] == '\r' ? i - 1 :
		    i);
		p->line_start = i + 1;
	}
	if (reqlen == 0) {
		p->scanned = len;
		if (len - p->line_start > p->lim.max_line)
			return proto_fail(p, "line too long");
		if (len > p->lim.max_request)
			return proto_fail(p, "request too large");
		return PROTO_NEED_MORE;
	}
	if (reqlen > p->lim.max_request)
		return proto_fail(p, "request too large");
	if (p->line_err != NULL)
		return proto_fail(p, p->line_err);

	memset(req, 0, sizeof(*req));
	if ((raw = malloc(reqlen)) == NULL)
		return proto_fail(p, "out of memory");
	memcpy(raw, buf, reqlen);
	req->raw = raw;
	req->size = reqlen;
	req->present = p->present;
	req->unknown = p->unknown;
	for (i = 0; i < A_COUNT; i++) {
		if (p->present & (1ULL << i)) {
			/* the value ends where its line did ("\r" or "\n") */
			raw[p->voff[i] + p->vlen[i]] = '\0';
			req->v[i] = raw + p->voff[i];
			req->len[i] = p->vlen[i];
		} else {
			req->v[i] = "";
		}
	}
	proto_reset(p);
	*used = reqlen;
	return PROTO_OK;
}

/* proto_req_free - release a parsed request */
void
proto_req_free(struct policy_req *req)
{
	free(req->raw);
	req->raw = NULL;
}

/* proto_format_reply - one reply, never more than one line */
int
proto_format_reply(char *buf, size_t len, const char *text)
{
	size_t	tl = strlen(text), o;

	if (tl + sizeof("action=\n\n") > len)
		return -1;
	memcpy(buf, "action=", 7);
	o = 7;
	for (size_t i = 0; i < tl; i++) {
		unsigned char c = (unsigned char)text[i];

		buf[o++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	buf[o++] = '\n';
	buf[o++] = '\n';
	buf[o] = '\0';
	return (int)o;
}

/* proto_format_trace - the trace lines and the action, one reply */
char *
proto_format_trace(const char *trace, const char *action, size_t *len)
{
	size_t	tl = trace ? strlen(trace) : 0, al = strlen(action), o = 0;
	size_t	lines = 1;
	char	*buf;

	for (size_t i = 0; i < tl; i++)
		lines += trace[i] == '\n';
	buf = malloc(tl + lines * 8 + al + 16);
	if (buf == NULL)
		return NULL;
	for (size_t i = 0; i < tl;) {
		size_t	j = i;

		while (j < tl && trace[j] != '\n')
			j++;
		memcpy(buf + o, "trace=", 6);
		o += 6;
		for (size_t k = i; k < j; k++) {
			unsigned char c = (unsigned char)trace[k];

			buf[o++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
		}
		buf[o++] = '\n';
		i = j + 1;
	}
	memcpy(buf + o, "action=", 7);
	o += 7;
	for (size_t k = 0; k < al; k++) {
		unsigned char c = (unsigned char)action[k];

		buf[o++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	buf[o++] = '\n';
	buf[o++] = '\n';
	buf[o] = '\0';
	*len = o;
	return buf;
}

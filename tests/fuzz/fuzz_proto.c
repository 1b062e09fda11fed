/*
 * fuzz_proto.c - libFuzzer target for the policy request codec (proto.h)
 *
 * The input is a byte stream as one client would send it. The first bytes
 * choose the parser limits and a seed for the split points; the rest is fed
 * twice: at once, and in random pieces appended to a growing buffer the way
 * conn.c receives them (draining consumed bytes after PROTO_OK, stopping at
 * PROTO_ERR = disconnect). Both runs must yield the same requests and the
 * same final outcome. Every parsed request is checked (values never NULL,
 * lengths agree, absent attributes are ""), and its values go through
 * proto_format_reply() and proto_format_trace(), whose output must be
 * exactly one reply with no stray line break.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

#define MAXREQS	64

struct outcome {
	int	nreq;
	uint64_t hash[MAXREQS];		/* per request: FNV of its raw bytes */
	size_t	size[MAXREQS];
	int	final;			/* PROTO_ERR or PROTO_NEED_MORE */
};

static uint64_t
fnv(const void *p, size_t n, uint64_t h)
{
	const unsigned char *s = p;

	while (n--)
		h = (h ^ *s++) * 1099511628211ULL;
	return h;
}

/* check_reply - "action=X\n\n" (after optional "trace=" lines), no other \n */
static void
check_reply(const char *buf, size_t len)
{
	size_t	i, nl = 0;

	if (len < 9 || buf[len - 1] != '\n' || buf[len - 2] != '\n')
		abort();
	if (strlen(buf) != len)
		abort();
	for (i = 0; i + 2 < len; i++) {
		if (buf[i] == '\n') {
			nl++;
			if (strncmp(buf + i + 1, "trace=", 6) != 0 &&
			    strncmp(buf + i + 1, "action=", 7) != 0)
				abort();
		} else if ((unsigned char)buf[i] < 0x20) {
			abort();
		}
	}
	(void)nl;
}

static void
check_req(const struct policy_req *r)
{
	char	reply[512];
	char	trace[2048];
	size_t	tl = 0;
	int	n;

	if (r->raw == NULL || r->size == 0)
		abort();
	for (int i = 0; i < A_COUNT; i++) {
		if (r->v[i] == NULL)
			abort();
		if (strlen(r->v[i]) != r->len[i])
			abort();
		if (!(r->present & (1ULL << i)) && r->len[i] != 0)
			abort();
		if (r->present & (1ULL << i)) {
			const char *name = proto_attr_name(i);

			if (name == NULL ||
			    proto_attr_id(name, strlen(name)) != i)
				abort();
		}
		n = proto_format_reply(reply, sizeof(reply), r->v[i]);
		if (n >= 0)
			check_reply(reply, (size_t)n);
		else if (r->len[i] + 10 <= sizeof(reply))
			abort();
		/* a multi-line trace built from the values */
		if (tl + r->len[i] + 2 < sizeof(trace)) {
			memcpy(trace + tl, r->v[i], r->len[i]);
			tl += r->len[i];
			trace[tl++] = (i & 1) ? '\n' : '\r';
		}
	}
	trace[tl] = '\0';
	{
		size_t	len;
		char	*t = proto_format_trace(trace, r->v[A_SENDER], &len);

		if (t == NULL)
			abort();
		check_reply(t, len);
		free(t);
		t = proto_format_trace(NULL, "DUNNO", &len);
		if (t == NULL || len != 14)
			abort();
		free(t);
	}
}

/* run - feed data in pieces (split==0: all at once) and record the outcome */
static void
run(const struct proto_limits *lim, const uint8_t *data, size_t size,
    uint32_t seed, int split, struct outcome *o)
{
	struct proto p;
	struct policy_req req;
	char	*buf = malloc(size + 1);
	size_t	have = 0, fed = 0, used;
	int	rc = PROTO_NEED_MORE;

	memset(o, 0, sizeof(*o));
	proto_init(&p, lim);
	while (fed < size || rc == PROTO_OK) {
		if (rc != PROTO_OK) {	/* receive more */
			size_t	n = size - fed;

			if (split) {
				seed = seed * 1103515245u + 12345u;
				n = 1 + (seed >> 8) % (((seed >> 4) & 3) == 0 ? 4 : 97);
				if (n > size - fed)
					n = size - fed;
			}
			memcpy(buf + have, data + fed, n);
			have += n;
			fed += n;
		}
		rc = proto_parse(&p, buf, have, &req, &used);
		if (rc == PROTO_ERR) {
			if (p.err == NULL)
				abort();
			break;
		}
		if (rc == PROTO_OK) {
			if (used == 0 || used > have || used != req.size)
				abort();
			check_req(&req);
			if (o->nreq < MAXREQS) {
				o->hash[o->nreq] = fnv(buf, used, 14695981039346656037ULL);
				o->size[o->nreq] = used;
			}
			o->nreq++;
			proto_req_free(&req);
			memmove(buf, buf + used, have - used);
			have -= used;
		}
	}
	o->final = rc;
	free(buf);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_limits lim = { 0, 0, 0 };
	struct outcome whole, pieces;
	uint32_t seed;

	if (size < 4)
		return 0;
	/* byte 0: limits (0 = the defaults, as in the daemon) */
	if (data[0] & 1) {
		lim.max_line = 8 + (data[1] & 0x3f) * 4;
		lim.max_request = 16 + data[2] * 8;
		lim.max_attrs = 1 + (data[3] & 0x1f);
	}
	seed = data[1] | data[2] << 8 | (uint32_t)data[3] << 16 | (uint32_t)data[0] << 24;
	data += 4;
	size -= 4;

	run(&lim, data, size, seed, 0, &whole);
	run(&lim, data, size, seed, 1, &pieces);
	if (whole.nreq != pieces.nreq || whole.final != pieces.final)
		abort();
	for (int i = 0; i < whole.nreq && i < MAXREQS; i++)
		if (whole.hash[i] != pieces.hash[i] || whole.size[i] != pieces.size[i])
			abort();
	return 0;
}

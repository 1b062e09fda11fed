/*
 * addr.c - pure address and network helpers (see addr.h)
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "addr.h"

#define ADDR_TEXT_MAX	64		/* longer than any address text */

/* lc - ASCII lowercase of one character */
static int
lc(int c)
{
	return (c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c;
}

/* isdig - ASCII decimal digit test, independent of the locale */
static int
isdig(int c)
{
	return c >= '0' && c <= '9';
}

/* family_bits - address width in bits for a family, 0 when unknown */
static int
family_bits(int family)
{
	if (family == AF_INET)
		return 32;
	if (family == AF_INET6)
		return 128;
	return 0;
}

/* addr_ip_parse - parse a dotted quad or an IPv6 address (no brackets) */
int
addr_ip_parse(const char *s, struct ipaddr *ip)
{
	static const uint8_t v4mapped[12] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
	};
	uint8_t	buf[16];

	if (s == NULL || ip == NULL || *s == '\0')
		return -1;
	memset(ip, 0, sizeof(*ip));
	if (strchr(s, ':') != NULL) {
		if (inet_pton(AF_INET6, s, buf) != 1)
			return -1;
		if (memcmp(buf, v4mapped, sizeof(v4mapped)) == 0) {
			ip->family = AF_INET;
			memcpy(ip->a, buf + 12, 4);
		} else {
			ip->family = AF_INET6;
			memcpy(ip->a, buf, 16);
		}
		return 0;
	}
	if (inet_pton(AF_INET, s, buf) != 1)
		return -1;
	ip->family = AF_INET;
	memcpy(ip->a, buf, 4);
	return 0;
}

/* addr_hosts_lookup - name's addresses in hosts(5) text (see addr.h) */
int
addr_hosts_lookup(const char *text, size_t len, const char *name,
    struct ipaddr *out, int max)
{
	int	n = 0;

	for (int pass = 0; pass < 2; pass++) {
		const char *p = text, *end = text + len;

		while (p < end && n < max) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			size_t	ll = (size_t)((nl ? nl : end) - p);
			char	line[1024], *save, *tok, *addr;
			struct ipaddr ip;
			int	dup = 0;

			if (ll < sizeof(line)) {
				memcpy(line, p, ll);
				line[ll] = '\0';
				line[strcspn(line, "#")] = '\0';
			} else
				line[0] = '\0';
			p += ll + 1;
			if ((addr = strtok_r(line, " \t\r", &save)) == NULL ||
			    addr_ip_parse(addr, &ip) != 0 || ip.family !=
			    (pass == 0 ? AF_INET : AF_INET6))
				continue;
			while ((tok = strtok_r(NULL, " \t\r", &save)) != NULL &&
			    strcasecmp(tok, name) != 0)
				;
			if (tok == NULL)
				continue;
			for (int i = 0; i < n; i++)
				dup |= memcmp(&out[i], &ip, sizeof(ip)) == 0;
			if (!dup)
				out[n++] = ip;
		}
	}
	return n;
}

/* addr_ip_mask - clear all bits after the first prefix bits */
void
addr_ip_mask(struct ipaddr *ip, int prefix)
{
	int	bits, i;

	if (ip == NULL)
		return;
	bits = family_bits(ip->family);
	if (bits == 0)
		return;
	if (prefix < 0)
		prefix = 0;
	if (prefix >= bits)
		return;
	i = prefix / 8;
	if (prefix % 8 != 0) {
		ip->a[i] &= (uint8_t)(0xff << (8 - prefix % 8));
		i++;
	}
	for (; i < 16; i++)
		ip->a[i] = 0;
}

/* addr_ip_format - print an address the way inet_ntop does */
int
addr_ip_format(const struct ipaddr *ip, char *buf, size_t len)
{
	char	tmp[INET6_ADDRSTRLEN];
	size_t	n;

	if (buf != NULL && len > 0)
		buf[0] = '\0';
	if (ip == NULL || buf == NULL || len == 0)
		return -1;
	if (family_bits(ip->family) == 0)
		return -1;
	if (inet_ntop(ip->family, ip->a, tmp, sizeof(tmp)) == NULL)
		return -1;
	n = strlen(tmp);
	if (n >= len)
		return -1;
	memcpy(buf, tmp, n + 1);
	return (int)n;
}

/* parse_partial - postgrey partial IPv4 "10", "10.1", "10.1.2" */
static int
parse_partial(const char *s, struct cidr *c)
{
	int	parts = 0, digits, val;

	memset(c, 0, sizeof(*c));
	c->net.family = AF_INET;
	for (;;) {
		digits = 0;
		val = 0;
		while (isdig((unsigned char)*s)) {
			if (++digits > 3)
				return -1;
			val = val * 10 + (*s++ - '0');
		}
		if (digits == 0 || val > 255 || parts >= 3)
			return -1;
		c->net.a[parts++] = (uint8_t)val;
		if (*s == '\0')
			break;
		if (*s++ != '.')
			return -1;
	}
	if (parts > 3)
		return -1;
	c->prefix = parts * 8;
	return 0;
}

/* parse_prefix - a decimal prefix length no larger than max */
static int
parse_prefix(const char *s, int max)
{
	int	val = 0, digits = 0;

	for (; *s != '\0'; s++) {
		if (!isdig((unsigned char)*s) || ++digits > 3)
			return -1;
		val = val * 10 + (*s - '0');
	}
	if (digits == 0 || val > max)
		return -1;
	return val;
}

/* addr_cidr_parse - parse a network, bare address or postgrey partial */
int
addr_cidr_parse(const char *s, int allow_partial, struct cidr *c)
{
	char	text[ADDR_TEXT_MAX];
	const char *slash;
	struct ipaddr masked;
	size_t	n;
	int	prefix, mapped;

	if (s == NULL || c == NULL || *s == '\0')
		return -1;
	memset(c, 0, sizeof(*c));
	slash = strchr(s, '/');
	n = slash ? (size_t)(slash - s) : strlen(s);
	if (n == 0 || n >= sizeof(text))
		return -1;
	memcpy(text, s, n);
	text[n] = '\0';
	if (addr_ip_parse(text, &c->net) != 0) {
		if (slash == NULL && allow_partial)
			return parse_partial(text, c);
		return -1;
	}
	/* "::ffff:10.0.0.0/104" is an IPv4 network with prefix 8 */
	mapped = c->net.family == AF_INET && strchr(text, ':') != NULL;
	if (slash == NULL) {
		c->prefix = family_bits(c->net.family);
		return 0;
	}
	prefix = parse_prefix(slash + 1, mapped ? 128 :
	    family_bits(c->net.family));
	if (prefix < 0)
		return -1;
	if (mapped) {
		if (prefix < 96)
			return -1;
		prefix -= 96;
	}
	masked = c->net;
	addr_ip_mask(&masked, prefix);
	if (memcmp(masked.a, c->net.a, sizeof(masked.a)) != 0)
		return -1;
	c->prefix = prefix;
	return 0;
}

/* addr_cidr_match - non-zero when ip lies in c (families must agree) */
int
addr_cidr_match(const struct cidr *c, const struct ipaddr *ip)
{
	int	bits, full, rest;
	uint8_t	mask;

	if (c == NULL || ip == NULL || c->net.family != ip->family)
		return 0;
	bits = family_bits(ip->family);
	if (bits == 0 || c->prefix < 0 || c->prefix > bits)
		return 0;
	full = c->prefix / 8;
	rest = c->prefix % 8;
	if (memcmp(c->net.a, ip->a, (size_t)full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	mask = (uint8_t)(0xff << (8 - rest));
	return (c->net.a[full] & mask) == (ip->a[full] & mask);
}

/* addr_domain - text after the last '@', or NULL */
const char *
addr_domain(const char *addr)
{
	const char *at;

	if (addr == NULL || (at = strrchr(addr, '@')) == NULL)
		return NULL;
	return at + 1;
}

/* Bounded output buffer used by the address rewriters. */
struct outbuf {
	char   *buf;
	size_t	len;
	size_t	pos;
	int	overflow;
};

/* out_init - start writing into (buf, len) */
static void
out_init(struct outbuf *o, char *buf, size_t len)
{
	o->buf = buf;
	o->len = len;
	o->pos = 0;
	o->overflow = (buf == NULL || len == 0);
	if (!o->overflow)
		buf[0] = '\0';
}

/* out_char - append one character, remembering overflow */
static void
out_char(struct outbuf *o, int ch)
{
	if (o->overflow)
		return;
	if (o->pos + 1 >= o->len) {
		o->overflow = 1;
		return;
	}
	o->buf[o->pos++] = (char)ch;
}

/* out_lower - append n characters lowercased */
static void
out_lower(struct outbuf *o, const char *s, size_t n)
{
	while (n-- > 0)
		out_char(o, lc((unsigned char)*s++));
}

/* out_done - terminate and return the length, or -1 on overflow */
static int
out_done(struct outbuf *o)
{
	if (o->buf == NULL || o->len == 0)
		return -1;
	if (o->overflow) {
		o->buf[0] = '\0';
		return -1;
	}
	o->buf[o->pos] = '\0';
	return (int)o->pos;
}

/* addr_canon - lowercase and optionally strip the address extension */
int
addr_canon(const char *in, char delim, char *buf, size_t len)
{
	struct outbuf o;
	const char *at, *ext = NULL;
	size_t	llen;

	out_init(&o, buf, len);
	if (in == NULL)
		return out_done(&o);
	at = strrchr(in, '@');
	llen = at ? (size_t)(at - in) : strlen(in);
	if (delim != '\0') {
		ext = memchr(in, delim, llen);
		if (ext == in)		/* keep "+foo@dom": no user left */
			ext = NULL;
	}
	out_lower(&o, in, ext ? (size_t)(ext - in) : llen);
	if (at != NULL)
		out_lower(&o, at, strlen(at));
	return out_done(&o);
}

/* has_prefix - case-insensitive prefix test on a counted string */
static int
has_prefix(const char *s, size_t n, const char *prefix)
{
	size_t	plen = strlen(prefix);

	return n >= plen && strncasecmp(s, prefix, plen) == 0;
}

/* find_str - first occurrence of needle within (s, n), or NULL */
static const char *
find_str(const char *s, size_t n, const char *needle)
{
	size_t	nlen = strlen(needle), i;

	for (i = 0; i + nlen <= n; i++)
		if (memcmp(s + i, needle, nlen) == 0)
			return s + i;
	return NULL;
}

/* srs_fields - split "HASH=TT=domain=local" (local may contain '=') */
static int
srs_fields(const char *p, size_t n, const char **dom, size_t *dlen,
	const char **loc, size_t *llen)
{
	const char *end = p + n, *q;
	int	i;

	for (i = 0; i < 2; i++) {	/* skip HASH and TT */
		if ((q = memchr(p, '=', (size_t)(end - p))) == NULL)
			return -1;
		p = q + 1;
	}
	if ((q = memchr(p, '=', (size_t)(end - p))) == NULL)
		return -1;
	if (q == p || q + 1 == end)
		return -1;
	*dom = p;
	*dlen = (size_t)(q - p);
	*loc = q + 1;
	*llen = (size_t)(end - q - 1);
	return 0;
}

/* addr_greylist_sender - normalise a sender the way postgrey does */
int
addr_greylist_sender(const char *in, char *buf, size_t len)
{
	struct outbuf o;
	const char *at, *loc, *dom, *q, *p;
	size_t	llen, dlen, i;

	out_init(&o, buf, len);
	if (in == NULL || *in == '\0')
		return out_done(&o);
	if ((at = strrchr(in, '@')) == NULL) {
		out_lower(&o, in, strlen(in));
		return out_done(&o);
	}
	loc = in;
	llen = (size_t)(at - in);
	dom = at + 1;
	dlen = strlen(dom);

	/* BATV: "prvs=TAG=user" and "btv1==TAG==user" */
	if (has_prefix(loc, llen, "prvs=")) {
		q = memchr(loc + 5, '=', llen - 5);
		if (q != NULL && q + 1 < loc + llen) {
			llen -= (size_t)(q + 1 - loc);
			loc = q + 1;
		}
	} else if (has_prefix(loc, llen, "btv1==")) {
		q = find_str(loc + 6, llen - 6, "==");
		if (q != NULL && q + 2 < loc + llen) {
			llen -= (size_t)(q + 2 - loc);
			loc = q + 2;
		}
	}

	/* SRS: recover the original sender */
	p = NULL;
	if (has_prefix(loc, llen, "srs0="))
		p = loc + 5;
	else if (has_prefix(loc, llen, "srs1=")
	    && (q = find_str(loc + 5, llen - 5, "==")) != NULL)
		p = q + 2;
	if (p != NULL) {
		const char *sd, *sl;
		size_t	sdlen, sllen;

		if (srs_fields(p, (size_t)(loc + llen - p), &sd, &sdlen,
		    &sl, &sllen) == 0) {
			dom = sd;
			dlen = sdlen;
			loc = sl;
			llen = sllen;
		}
	}

	/* strip the extension */
	if ((q = memchr(loc, '+', llen)) != NULL)
		llen = (size_t)(q - loc);

	/* digit runs become '#' */
	for (i = 0; i < llen; i++) {
		if (isdig((unsigned char)loc[i])) {
			out_char(&o, '#');
			while (i + 1 < llen && isdig((unsigned char)loc[i + 1]))
				i++;
		} else {
			out_char(&o, lc((unsigned char)loc[i]));
		}
	}
	out_char(&o, '@');
	out_lower(&o, dom, dlen);
	return out_done(&o);
}

/* addr_domain_match - does domain match an exact or ".suffix" pattern? */
int
addr_domain_match(const char *domain, const char *pattern)
{
	size_t	dlen, plen;

	if (domain == NULL || pattern == NULL)
		return 0;
	if (pattern[0] != '.')
		return strcasecmp(domain, pattern) == 0;
	dlen = strlen(domain);
	plen = strlen(pattern);
	if (dlen <= plen)
		return 0;
	return strcasecmp(domain + dlen - plen, pattern) == 0;
}

/* addr_lower - lowercase ASCII in place */
void
addr_lower(char *s)
{
	if (s == NULL)
		return;
	for (; *s != '\0'; s++)
		if ((unsigned)(unsigned char)*s - 'A' < 26u)	/* a store only when needed */
			*s = (char)(*s + ('a' - 'A'));
}

/* mix64 - 64-bit avalanche finaliser (splitmix64 constants) */
static uint64_t
mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

/* addr_hash64 - seeded FNV-1a 64 followed by an avalanche mix */
uint64_t
addr_hash64(const void *data, size_t len, uint64_t seed)
{
	const unsigned char *p = data;
	uint64_t h;
	size_t	i;

	h = 0xcbf29ce484222325ULL ^ mix64(seed + 0x9e3779b97f4a7c15ULL);
	for (i = 0; p != NULL && i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	h ^= (uint64_t)len;
	return mix64(h);
}

/*
 * addr_hash_mem - eight bytes at a time (see addr.h): each word is mixed
 * in by a multiply and a rotation, the tail's bytes and the length go
 * into the last word, and mix64 spreads the result.
 */
uint64_t
addr_hash_mem(const void *data, size_t len, uint64_t seed)
{
	const unsigned char *p = data;
	uint64_t h = mix64(seed ^ 0x6a09e667f3bcc909ULL), w;
	size_t	i = 0;

	for (; p != NULL && i + 8 <= len; i += 8) {
		memcpy(&w, p + i, 8);
		h ^= w * 0x9e3779b97f4a7c15ULL;
		h = ((h << 29) | (h >> 35)) * 0xbf58476d1ce4e5b9ULL;
	}
	w = (uint64_t)len << 56;
	for (size_t j = 0; p != NULL && i + j < len; j++)
		w |= (uint64_t)p[i + j] << (8 * j);
	h ^= w * 0x9e3779b97f4a7c15ULL;
	h = ((h << 29) | (h >> 35)) * 0xbf58476d1ce4e5b9ULL;
	return mix64(h);
}

/* addr_net_hex - compact hex of the network of ip (see addr.h) */
int
addr_net_hex(const struct ipaddr *ip, int v4prefix, int v6prefix, char *buf,
    size_t len)
{
	static const char hex[] = "0123456789abcdef";
	struct ipaddr net = *ip;
	int	prefix = net.family == AF_INET ? v4prefix : v6prefix;
	int	nbytes = (prefix + 7) / 8, o = 0;

	if (len == 0)
		return 0;
	addr_ip_mask(&net, prefix);
	if (net.family == AF_INET6 && (size_t)o + 1 < len)
		buf[o++] = '6';
	for (int i = 0; i < nbytes && (size_t)o + 2 < len; i++) {
		buf[o++] = hex[net.a[i] >> 4];
		buf[o++] = hex[net.a[i] & 15];
	}
	buf[o] = '\0';
	return o;
}

/* ---------------------------------------------------------------- */
/* SipHash-2-4 (Aumasson and Bernstein): a keyed hash for keys a     */
/* client must not be able to collide                                */
/* ---------------------------------------------------------------- */

#define SIP_ROTL(x, b)	(uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIP_ROUND(v0, v1, v2, v3) do { \
	v0 += v1; v1 = SIP_ROTL(v1, 13); v1 ^= v0; v0 = SIP_ROTL(v0, 32); \
	v2 += v3; v3 = SIP_ROTL(v3, 16); v3 ^= v2; \
	v0 += v3; v3 = SIP_ROTL(v3, 21); v3 ^= v0; \
	v2 += v1; v1 = SIP_ROTL(v1, 17); v1 ^= v2; v2 = SIP_ROTL(v2, 32); \
} while (0)

/* le64 - eight bytes, little-endian */
static uint64_t
le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* addr_siphash - SipHash-2-4 of data under a 128-bit key */
uint64_t
addr_siphash(const uint8_t key[16], const void *data, size_t len)
{
	const uint8_t *p = data;
	uint64_t k0 = le64(key), k1 = le64(key + 8), m, b;
	uint64_t v0 = k0 ^ 0x736f6d6570736575ULL;
	uint64_t v1 = k1 ^ 0x646f72616e646f6dULL;
	uint64_t v2 = k0 ^ 0x6c7967656e657261ULL;
	uint64_t v3 = k1 ^ 0x7465646279746573ULL;
	size_t	i, left = len & 7;

	for (i = 0; i + 8 <= len; i += 8) {
		m = le64(p + i);
		v3 ^= m;
		SIP_ROUND(v0, v1, v2, v3);
		SIP_ROUND(v0, v1, v2, v3);
		v0 ^= m;
	}
	b = (uint64_t)len << 56;
	for (size_t j = 0; j < left; j++)
		b |= (uint64_t)p[i + j] << (8 * j);
	v3 ^= b;
	SIP_ROUND(v0, v1, v2, v3);
	SIP_ROUND(v0, v1, v2, v3);
	v0 ^= b;
	v2 ^= 0xff;
	for (int r = 0; r < 4; r++)
		SIP_ROUND(v0, v1, v2, v3);
	return v0 ^ v1 ^ v2 ^ v3;
}

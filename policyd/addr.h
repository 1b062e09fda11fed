/*++
 * NAME
 *	addr.h - pure address and network helpers
 * DESCRIPTION
 *	IP addresses, CIDR networks and e-mail addresses as they arrive in
 *	Postfix policy attributes. Every function here is pure: no I/O, no
 *	logging, no allocation unless stated, safe on any bytes.
 *
 *	An IPv4 address is stored in a[0..3]; IPv6 uses all 16 bytes. IPv4
 *	mapped IPv6 addresses ("::ffff:1.2.3.4") are parsed as IPv4.
 * RESULTS
 *	Parsers return 0 on success, -1 on invalid input (and leave their
 *	output unspecified). Functions writing into (buf, len) always
 *	NUL-terminate when len > 0 and return the length they wrote, or -1
 *	when the result does not fit.
 *--*/
#ifndef POLICYD_ADDR_H
#define POLICYD_ADDR_H

#include <stddef.h>
#include <stdint.h>

struct ipaddr {
	int	family;			/* AF_INET or AF_INET6 */
	uint8_t	a[16];
};

struct cidr {
	struct ipaddr net;		/* host bits are zero */
	int	prefix;			/* 0..32 or 0..128 */
};

/* addr_ip_parse - parse a dotted quad or an IPv6 address (no brackets) */
int	addr_ip_parse(const char *s, struct ipaddr *ip);

/* addr_ip_mask - clear all bits after the first prefix bits */
void	addr_ip_mask(struct ipaddr *ip, int prefix);

/*
 * addr_net_hex - the client network of ip (cut to v4prefix or v6prefix
 * bits) as compact hex: "c00002" for 192.0.2.0/24, "6" + 16 digits for an
 * IPv6 /64. The hash tag of greylist keys and the members of the
 * ratelimit networks set. Returns the length written.
 */
int	addr_net_hex(const struct ipaddr *ip, int v4prefix, int v6prefix,
	    char *buf, size_t len);

/* addr_ip_format - print an address the way inet_ntop does */
int	addr_ip_format(const struct ipaddr *ip, char *buf, size_t len);

/*
 * addr_cidr_parse - "10.0.0.0/8", "2001:db8::/32", or a bare address
 * (= /32 or /128). Host bits set in the network are an error
 * ("10.0.0.1/8"), as in Postfix cidr tables. Also accepts postgrey's
 * partial IPv4 forms "10.1.2" (= 10.1.2.0/24), "10.1" (/16), "10" (/8)
 * only when allow_partial is non-zero.
 */
int	addr_cidr_parse(const char *s, int allow_partial, struct cidr *c);

/* addr_cidr_match - non-zero when ip lies in c (families must agree) */
int	addr_cidr_match(const struct cidr *c, const struct ipaddr *ip);

/*
 * E-mail addresses. "local@domain"; the null sender is the empty string.
 * addr_domain() returns a pointer to the text after the LAST '@', or
 * NULL when there is none.
 */
const char *addr_domain(const char *addr);

/*
 * addr_canon - lowercase the address and, when delim is non-zero, remove
 * the first delim ('+') and everything after it in the local part:
 * "John+Foo@Example.COM" -> "john@example.com". Quotes are not
 * interpreted. Returns the length written or -1 when it does not fit.
 */
int	addr_canon(const char *in, char delim, char *buf, size_t len);

/*
 * addr_greylist_sender - normalise a sender for a greylist triplet the way
 * postgrey does, so that per-message tags do not make every retry a new
 * triplet: lowercase; strip "+extension"; SRS0/SRS1 addresses become the
 * original sender ("SRS0=HHH=TT=orig.example=user@fwd" -> "user@orig.example");
 * BATV/prvs tags are removed ("prvs=1234abcd=user@dom" -> "user@dom",
 * also "btv1==...==user@dom"); every run of digits in the local part
 * becomes a single '#' ("bounce-12345-67@dom" -> "bounce-#-#@dom").
 * The null sender stays empty.
 */
int	addr_greylist_sender(const char *in, char *buf, size_t len);

/*
 * addr_domain_match - does domain (lowercase) match pattern?
 *	"example.com"   matches "example.com" only
 *	".example.com"  matches any subdomain ("a.example.com"), not the
 *	                domain itself
 * Comparison ignores ASCII case.
 */
int	addr_domain_match(const char *domain, const char *pattern);

/*
 * addr_hosts_lookup - the addresses of name in the hosts(5) text of len
 * bytes: IPv4 ones first, then IPv6, each in file order, duplicates once,
 * at most max. Names compare without ASCII case; a line of more than
 * 1023 bytes is skipped. Returns the number found.
 */
int	addr_hosts_lookup(const char *text, size_t len, const char *name,
	    struct ipaddr *out, int max);

/* addr_lower - lowercase ASCII in place */
void	addr_lower(char *s);

/*
 * addr_hash64 - a 64-bit non-cryptographic hash (seeded) used to build
 * compact Redis keys from unbounded values.
 */
uint64_t addr_hash64(const void *data, size_t len, uint64_t seed);

/*
 * addr_hash_mem - a faster seeded 64-bit hash for in-process tables (the
 * maps); its values may change between builds, so nothing stored outside
 * the process may depend on them (use addr_hash64 there).
 */
uint64_t addr_hash_mem(const void *data, size_t len, uint64_t seed);

/*
 * addr_siphash - SipHash-2-4 of data under a 128-bit secret key: for keys
 * built from client values where a client must not be able to produce a
 * collision (ratelimit keys).
 */
uint64_t addr_siphash(const uint8_t key[16], const void *data, size_t len);

#endif

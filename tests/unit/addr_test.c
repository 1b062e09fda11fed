/*
 * addr_test.c - unit tests for the addr module
 */
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "addr.h"
#include "tap.h"

/* test_ip_parse - valid and invalid addresses */
static void
test_ip_parse(void)
{
	static const struct {
		const char *in;
		int	rc;
		int	family;
		const char *out;
	} t[] = {
		{"1.2.3.4", 0, AF_INET, "1.2.3.4"},
		{"0.0.0.0", 0, AF_INET, "0.0.0.0"},
		{"255.255.255.255", 0, AF_INET, "255.255.255.255"},
		{"::1", 0, AF_INET6, "::1"},
		{"2001:DB8::1", 0, AF_INET6, "2001:db8::1"},
		{"2001:db8:0:0:0:0:0:1", 0, AF_INET6, "2001:db8::1"},
		{"::ffff:1.2.3.4", 0, AF_INET, "1.2.3.4"},
		{"::FFFF:10.0.0.1", 0, AF_INET, "10.0.0.1"},
		{"::", 0, AF_INET6, "::"},
		{"999.1.2.3.4", -1, 0, NULL},
		{"999.1.2.3", -1, 0, NULL},
		{"1.2.3.4.5", -1, 0, NULL},
		{"1.2.3", -1, 0, NULL},
		{"", -1, 0, NULL},
		{"::ffff:999.0.0.1", -1, 0, NULL},
		{"1.2.3.4 ", -1, 0, NULL},
		{"1.2.3.4x", -1, 0, NULL},
		{" 1.2.3.4", -1, 0, NULL},
		{"[::1]", -1, 0, NULL},
		{"1:2:3:4:5:6:7:8:9", -1, 0, NULL},
		{"example.com", -1, 0, NULL},
		{"2001:db8::1/64", -1, 0, NULL},
	};
	struct ipaddr ip;
	char	name[128], buf[64];
	size_t	i;
	int	rc;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		rc = addr_ip_parse(t[i].in, &ip);
		snprintf(name, sizeof(name), "addr_ip_parse \"%s\"", t[i].in);
		is_int(rc, t[i].rc, name);
		if (rc == 0 && t[i].rc == 0) {
			snprintf(name, sizeof(name), "family/format \"%s\"",
			    t[i].in);
			ok(ip.family == t[i].family
			    && addr_ip_format(&ip, buf, sizeof(buf)) >= 0
			    && strcmp(buf, t[i].out) == 0, name);
		}
	}
	is_int(addr_ip_parse(NULL, &ip), -1, "addr_ip_parse NULL");
	ok(addr_ip_parse("::ffff:1.2.3.4", &ip) == 0
	    && ip.a[0] == 1 && ip.a[3] == 4 && ip.a[4] == 0 && ip.a[15] == 0,
	    "v4-mapped stored in a[0..3], rest zero");
}

/* test_ip_format - buffer limits */
static void
test_ip_format(void)
{
	struct ipaddr ip;
	char	buf[64];

	addr_ip_parse("10.20.30.40", &ip);
	is_int(addr_ip_format(&ip, buf, sizeof(buf)), 11, "format length");
	is_int(addr_ip_format(&ip, buf, 11), -1, "format does not fit");
	is_str(buf, "", "format: empty string on overflow");
	is_int(addr_ip_format(&ip, buf, 12), 11, "format fits exactly");
	is_int(addr_ip_format(&ip, buf, 0), -1, "format len 0");
	ip.family = 12345;
	is_int(addr_ip_format(&ip, buf, sizeof(buf)), -1, "format bad family");
}

/* survives_mask_null - addr_ip_mask(NULL, ...) in a child: a crash there
 * shows as a signal, not as the end of this test binary */
static int
survives_mask_null(void)
{
	pid_t	pid;
	int	status;

	fflush(stdout);
	if ((pid = fork()) < 0)
		return 0;
	if (pid == 0) {
		addr_ip_mask(NULL, 8);
		addr_ip_mask(NULL, 128);
		_exit(0);
	}
	if (waitpid(pid, &status, 0) != pid)
		return 0;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* test_ip_mask - IPv4 and IPv6 masking */
static void
test_ip_mask(void)
{
	static const struct {
		const char *in;
		int	prefix;
		const char *out;
	} t[] = {
		{"10.1.2.3", 8, "10.0.0.0"},
		{"10.1.2.3", 24, "10.1.2.0"},
		{"10.1.2.255", 25, "10.1.2.128"},
		{"10.1.2.3", 32, "10.1.2.3"},
		{"10.1.2.3", 0, "0.0.0.0"},
		{"10.1.2.3", 40, "10.1.2.3"},
		{"10.1.2.3", -5, "0.0.0.0"},
		{"2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::"},
		{"2001:db8:1:2:3:4:5:6", 48, "2001:db8:1::"},
		{"2001:db8:1:2:3:4:5:6", 127, "2001:db8:1:2:3:4:5:6"},
		{"2001:db8:1:2:3:4:5:7", 127, "2001:db8:1:2:3:4:5:6"},
		{"2001:db8:1:2:3:4:5:6", 128, "2001:db8:1:2:3:4:5:6"},
		{"ffff::1", 1, "8000::"},
	};
	struct ipaddr ip;
	char	name[128], buf[64];
	size_t	i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		addr_ip_parse(t[i].in, &ip);
		addr_ip_mask(&ip, t[i].prefix);
		addr_ip_format(&ip, buf, sizeof(buf));
		snprintf(name, sizeof(name), "mask %s/%d", t[i].in,
		    t[i].prefix);
		is_str(buf, t[i].out, name);
	}
	ok(survives_mask_null(), "mask NULL is harmless (a child process "
	    "calling it exits normally)");
}

/* test_cidr - parsing and matching networks */
static void
test_cidr(void)
{
	static const struct {
		const char *in;
		int	partial;
		int	rc;
		const char *net;
		int	prefix;
	} t[] = {
		{"10.0.0.0/8", 0, 0, "10.0.0.0", 8},
		{"10.1.2.3", 0, 0, "10.1.2.3", 32},
		{"10.1.2.3/32", 0, 0, "10.1.2.3", 32},
		{"0.0.0.0/0", 0, 0, "0.0.0.0", 0},
		{"2001:db8::/32", 0, 0, "2001:db8::", 32},
		{"2001:db8::1", 0, 0, "2001:db8::1", 128},
		{"::/0", 0, 0, "::", 0},
		{"::ffff:10.0.0.0/104", 0, 0, "10.0.0.0", 8},
		{"10.0.0.1/8", 0, -1, NULL, 0},
		{"2001:db8::1/32", 0, -1, NULL, 0},
		{"10.0.0.0/33", 0, -1, NULL, 0},
		{"2001:db8::/129", 0, -1, NULL, 0},
		{"10.0.0.0/", 0, -1, NULL, 0},
		{"/8", 0, -1, NULL, 0},
		{"10.0.0.0/-1", 0, -1, NULL, 0},
		{"10.0.0.0/8x", 0, -1, NULL, 0},
		{"10.0.0.0/0008", 0, -1, NULL, 0},
		{"10.0.0.0/8/8", 0, -1, NULL, 0},
		{"999.0.0.0/8", 0, -1, NULL, 0},
		{"", 1, -1, NULL, 0},
		{"10.1.2", 0, -1, NULL, 0},
		{"10.1.2", 1, 0, "10.1.2.0", 24},
		{"10.1", 1, 0, "10.1.0.0", 16},
		{"10", 1, 0, "10.0.0.0", 8},
		{"10.1.2.", 1, -1, NULL, 0},
		{"10..2", 1, -1, NULL, 0},
		{"256.1", 1, -1, NULL, 0},
		{"1000", 1, -1, NULL, 0},
		{"10.1.2/24", 1, -1, NULL, 0},
		{"a.b.c", 1, -1, NULL, 0},
		{"1.2.3.4.5", 1, -1, NULL, 0},
	};
	struct cidr c;
	struct ipaddr ip;
	char	name[128], buf[64];
	size_t	i;
	int	rc;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		rc = addr_cidr_parse(t[i].in, t[i].partial, &c);
		snprintf(name, sizeof(name), "addr_cidr_parse \"%s\" partial=%d",
		    t[i].in, t[i].partial);
		is_int(rc, t[i].rc, name);
		if (rc == 0 && t[i].rc == 0) {
			addr_ip_format(&c.net, buf, sizeof(buf));
			snprintf(name, sizeof(name), "network of \"%s\"",
			    t[i].in);
			ok(strcmp(buf, t[i].net) == 0
			    && c.prefix == t[i].prefix, name);
		}
	}
	is_int(addr_cidr_parse(NULL, 1, &c), -1, "addr_cidr_parse NULL");

	addr_cidr_parse("10.0.0.0/8", 0, &c);
	addr_ip_parse("10.255.1.1", &ip);
	ok(addr_cidr_match(&c, &ip), "10.255.1.1 in 10/8");
	addr_ip_parse("11.0.0.1", &ip);
	ok(!addr_cidr_match(&c, &ip), "11.0.0.1 not in 10/8");
	addr_ip_parse("::ffff:10.9.9.9", &ip);
	ok(addr_cidr_match(&c, &ip), "mapped 10.9.9.9 in 10/8");
	addr_ip_parse("2001:db8::1", &ip);
	ok(!addr_cidr_match(&c, &ip), "families must agree");
	addr_cidr_parse("192.168.1.128/25", 0, &c);
	addr_ip_parse("192.168.1.200", &ip);
	ok(addr_cidr_match(&c, &ip), "192.168.1.200 in /25");
	addr_ip_parse("192.168.1.127", &ip);
	ok(!addr_cidr_match(&c, &ip), "192.168.1.127 not in .128/25");
	addr_cidr_parse("2001:db8:1:2::/64", 0, &c);
	addr_ip_parse("2001:db8:1:2:ffff::1", &ip);
	ok(addr_cidr_match(&c, &ip), "IPv6 /64 match");
	addr_ip_parse("2001:db8:1:3::1", &ip);
	ok(!addr_cidr_match(&c, &ip), "IPv6 /64 no match");
	addr_cidr_parse("0.0.0.0/0", 0, &c);
	addr_ip_parse("8.8.8.8", &ip);
	ok(addr_cidr_match(&c, &ip), "/0 matches everything");
	addr_cidr_parse("10.1.2", 1, &c);
	addr_ip_parse("10.1.2.77", &ip);
	ok(addr_cidr_match(&c, &ip), "partial 10.1.2 matches 10.1.2.77");
	addr_ip_parse("10.1.20.7", &ip);
	ok(!addr_cidr_match(&c, &ip), "partial 10.1.2 not 10.1.20.7");
	ok(!addr_cidr_match(NULL, &ip) && !addr_cidr_match(&c, NULL),
	    "addr_cidr_match NULL");
}

/* test_domain - addr_domain and addr_domain_match */
static void
test_domain(void)
{
	is_str(addr_domain("user@example.com"), "example.com", "addr_domain");
	is_str(addr_domain("\"a@b\"@example.com"), "example.com",
	    "addr_domain uses the last @");
	is_str(addr_domain("user@"), "", "addr_domain empty domain");
	ok(addr_domain("postmaster") == NULL, "addr_domain without @");
	ok(addr_domain("") == NULL, "addr_domain null sender");
	ok(addr_domain(NULL) == NULL, "addr_domain NULL");

	ok(addr_domain_match("example.com", "example.com"), "exact match");
	ok(addr_domain_match("Example.COM", "example.com"), "ignores case");
	ok(!addr_domain_match("a.example.com", "example.com"),
	    "exact pattern does not match subdomain");
	ok(addr_domain_match("a.example.com", ".example.com"),
	    "suffix pattern matches subdomain");
	ok(addr_domain_match("x.a.EXAMPLE.com", ".example.com"),
	    "suffix pattern matches deep subdomain");
	ok(!addr_domain_match("example.com", ".example.com"),
	    "suffix pattern does not match the domain itself");
	ok(!addr_domain_match("badexample.com", ".example.com"),
	    "suffix pattern needs the dot");
	ok(!addr_domain_match(NULL, "x") && !addr_domain_match("x", NULL),
	    "domain_match NULL");
}

/* test_canon - lowercase and extension stripping */
static void
test_canon(void)
{
	static const struct {
		const char *in;
		char	delim;
		const char *out;
	} t[] = {
		{"John+Foo@Example.COM", '+', "john@example.com"},
		{"John+Foo@Example.COM", 0, "john+foo@example.com"},
		{"a+b+c@x.org", '+', "a@x.org"},
		{"user@dom+ain.org", '+', "user@dom+ain.org"},
		{"user-ext@x.org", '-', "user@x.org"},
		{"+foo@x.org", '+', "+foo@x.org"},
		{"noat+ext", '+', "noat"},
		{"", '+', ""},
		{"a@b@C", '+', "a@b@c"},
	};
	char	buf[64], name[128];
	size_t	i;
	int	rc;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		rc = addr_canon(t[i].in, t[i].delim, buf, sizeof(buf));
		snprintf(name, sizeof(name), "addr_canon \"%s\" '%c'", t[i].in,
		    t[i].delim ? t[i].delim : '0');
		ok(rc == (int)strlen(t[i].out) && strcmp(buf, t[i].out) == 0,
		    name);
	}
	is_int(addr_canon("abc@d.e", '+', buf, 7), -1, "canon does not fit");
	is_str(buf, "", "canon empty on overflow");
	is_int(addr_canon("abc@d.e", '+', buf, 8), 7, "canon fits exactly");
	is_int(addr_canon("x", '+', buf, 0), -1, "canon len 0");
	is_int(addr_canon(NULL, '+', buf, sizeof(buf)), 0, "canon NULL");
}

/* test_greylist_sender - postgrey sender normalisation */
static void
test_greylist_sender(void)
{
	static const struct {
		const char *in;
		const char *out;
	} t[] = {
		{"", ""},
		{"User@Example.COM", "user@example.com"},
		{"user+tag@example.com", "user@example.com"},
		{"bounce-12345-67@dom", "bounce-#-#@dom"},
		{"a1b22c333@x.com", "a#b#c#@x.com"},
		{"user@host1.example.com", "user@host1.example.com"},
		{"SRS0=HHH=TT=orig.example=user@fwd", "user@orig.example"},
		{"srs0=abcd=XY=Orig.Example=John.Doe@fwd.net",
		"john.doe@orig.example"},
		{"SRS0=h=tt=orig.example=a=b@fwd", "a=b@orig.example"},
		{"SRS1=HHH=first.fwd==HHH=TT=orig.example=user@fwd2",
		"user@orig.example"},
		{"srs1=x=f.example==y=zz=orig.example=u+ext@f2", "u@orig.example"},
		{"SRS0=broken@fwd", "srs#=broken@fwd"},
		{"SRS0=a=b=c=@fwd", "srs#=a=b=c=@fwd"},
		{"SRS1=nodoubleequal=x=y@fwd", "srs#=nodoubleequal=x=y@fwd"},
		{"prvs=1234abcd=user@dom", "user@dom"},
		{"PRVS=0123456789=Bounce-99@Dom", "bounce-#@dom"},
		{"btv1==0123abcdef==user@dom", "user@dom"},
		{"prvs=tag=SRS0=h=t=orig.example=x@fwd", "x@orig.example"},
		{"prvs=@dom", "prvs=@dom"},
		{"nodomain123", "nodomain123"},
		{"user@", "user@"},
		{"@dom", "@dom"},
	};
	char	buf[128], name[160];
	size_t	i;
	int	rc;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		rc = addr_greylist_sender(t[i].in, buf, sizeof(buf));
		snprintf(name, sizeof(name), "greylist_sender \"%s\"", t[i].in);
		is_str(rc >= 0 ? buf : "(error)", t[i].out, name);
		ok(rc == (int)strlen(t[i].out), "greylist_sender length");
	}
	is_int(addr_greylist_sender("user@example.com", buf, 16), -1,
	    "greylist_sender does not fit");
	is_int(addr_greylist_sender("user@example.com", buf, 17), 16,
	    "greylist_sender fits exactly");
	is_int(addr_greylist_sender(NULL, buf, sizeof(buf)), 0,
	    "greylist_sender NULL");
	is_int(addr_greylist_sender("x", NULL, 0), -1,
	    "greylist_sender no buffer");
	{
		char	big[4096], out[64];
		unsigned i2;

		for (i2 = 0; i2 < sizeof(big) - 1; i2++)
			big[i2] = (char)(1 + i2 % 255);
		big[sizeof(big) - 1] = '\0';
		ok(addr_greylist_sender(big, out, sizeof(out)) == -1,
		    "greylist_sender on arbitrary bytes overflows cleanly");
	}
}

/* test_lower_hash - addr_lower and addr_hash64 */
static void
test_lower_hash(void)
{
	char	s[] = "MiXeD@Case.ORG-123";
	uint64_t h1, h2;
	int	bitsdiff;

	addr_lower(s);
	is_str(s, "mixed@case.org-123", "addr_lower");
	addr_lower(NULL);

	/*
	 * Known answers (computed apart from this code): the hashes name
	 * keys in Redis, so they must not change between builds.
	 */
	h1 = addr_hash64("hello", 5, 0);
	ok(h1 == 0xae7f7e67c46ca181ULL, "hash64 of hello, seed 0: known answer");
	ok(addr_hash64("hello", 5, 1) == 0x9339156c924196a6ULL,
	    "hash64 of hello, seed 1: known answer");
	ok(addr_hash64("", 0, 0) == 0xaebe53f85cdc3c4cULL,
	    "hash64 of nothing, seed 0: known answer");
	ok(h1 != addr_hash64("hello", 5, 1), "hash64 depends on the seed");
	ok(h1 != addr_hash64("hellp", 5, 0), "hash64 depends on the data");
	ok(addr_hash64("", 0, 0) != addr_hash64("\0", 1, 0),
	    "hash64 depends on the length");
	ok(addr_hash64(NULL, 0, 7) == addr_hash64("", 0, 7),
	    "hash64 NULL with length 0");
	h2 = addr_hash64("hellp", 5, 0);
	bitsdiff = __builtin_popcountll(h1 ^ h2);
	ok(bitsdiff > 16 && bitsdiff < 48, "hash64 avalanche on one bit");
}

/*
 * test_hash_mem - addr_hash_mem (the maps' table hash): every byte, the
 * length and the seed count, whatever the word alignment; no collisions
 * among the keys of a realistic table
 */
static void
test_hash_mem(void)
{
	char	buf[40], other[40];
	int	same_len = 0, byte_miss = 0, collide = 0;
	static uint64_t seen[4096];
	uint64_t h;

	memset(buf, 'a', sizeof(buf));
	ok(addr_hash_mem(buf, 8, 1) == addr_hash_mem(buf, 8, 1),
	    "hash_mem: same input, same value");
	ok(addr_hash_mem(buf, 8, 1) != addr_hash_mem(buf, 8, 2),
	    "hash_mem depends on the seed");
	ok(addr_hash_mem(NULL, 0, 3) == addr_hash_mem("", 0, 3),
	    "hash_mem NULL with length 0");
	/* a NUL tail: the length tells "" from "\0" and "a" from "a\0" */
	for (size_t n = 0; n < 24; n++) {
		memset(other, 0, sizeof(other));
		if (addr_hash_mem(other, n, 5) == addr_hash_mem(other, n + 1, 5))
			same_len++;
	}
	is_int(same_len, 0, "hash_mem depends on the length (NUL bytes, "
	    "lengths 0-24)");
	/* one byte changed at each position of each length up to 40 */
	for (size_t n = 1; n <= sizeof(buf); n++)
		for (size_t i = 0; i < n; i++) {
			memcpy(other, buf, sizeof(buf));
			other[i] ^= 0x01;
			if (addr_hash_mem(buf, n, 9) == addr_hash_mem(other, n, 9))
				byte_miss++;
		}
	is_int(byte_miss, 0, "hash_mem depends on every byte (820 changes)");
	/* 4096 addresses of one pattern: no two values alike */
	for (int i = 0; i < 4096; i++) {
		int	n = snprintf(buf, sizeof(buf), "user%d@example.org", i);

		h = addr_hash_mem(buf, (size_t)n, 11);
		for (int j = 0; j < i; j++)
			if (seen[j] == h)
				collide++;
		seen[i] = h;
	}
	is_int(collide, 0, "hash_mem: 4096 similar keys, no collision");
}

/* main - run the addr tests */
/* the client network as hex, shared by greylist, ratelimit and policyctl */
static void
test_net_hex(void)
{
	struct ipaddr ip;
	char	buf[64];

	addr_ip_parse("192.0.2.77", &ip);
	is_int(addr_net_hex(&ip, 24, 64, buf, sizeof(buf)), 6, "v4 /24 length");
	is_str(buf, "c00002", "192.0.2.77 in /24");
	addr_net_hex(&ip, 16, 64, buf, sizeof(buf));
	is_str(buf, "c000", "/16");
	addr_net_hex(&ip, 32, 64, buf, sizeof(buf));
	is_str(buf, "c000024d", "/32");
	addr_ip_parse("2001:db8:1:2::99", &ip);
	addr_net_hex(&ip, 24, 64, buf, sizeof(buf));
	is_str(buf, "620010db800010002", "v6 /64");
	addr_ip_parse("2001:db8:1:2::5", &ip);
	addr_net_hex(&ip, 24, 64, buf, sizeof(buf));
	is_str(buf, "620010db800010002", "same /64, same network");
	is_int(addr_net_hex(&ip, 24, 64, buf, 5), 3, "cut to the buffer");
	is_str(buf, "620", "cut text");
}

/* test_siphash - SipHash-2-4 against the reference vectors of its paper */
static void
test_siphash(void)
{
	uint8_t	key[16], msg[64], key2[16];

	for (int i = 0; i < 16; i++)
		key[i] = (uint8_t)i;
	for (int i = 0; i < 64; i++)
		msg[i] = (uint8_t)i;
	ok(addr_siphash(key, msg, 0) == 0x726fdb47dd0e0e31ULL,
	    "siphash: empty message (reference vector 0)");
	ok(addr_siphash(key, msg, 15) == 0xa129ca6149be45e5ULL,
	    "siphash: 15 bytes (the paper's example)");
	ok(addr_siphash(key, msg, 8) == 0x93f5f5799a932462ULL,
	    "siphash: one full block (reference vector 8)");
	memcpy(key2, key, 16);
	key2[15] ^= 1;
	ok(addr_siphash(key2, msg, 15) != 0xa129ca6149be45e5ULL,
	    "siphash: another key, another hash");
}

static void
test_hosts(void)
{
	static const char text[] =
	    "127.0.0.1\tlocalhost\n"
	    "::1 localhost ip6-localhost # comment db.example\n"
	    "# 192.0.2.99 db.example\n"
	    "2001:db8::5  DB.Example db\n"
	    "192.0.2.5 db.example\r\n"
	    "192.0.2.6\tother db.example\n"
	    "192.0.2.5 db.example\n"
	    "not-an-address db.example\n"
	    "192.0.2.7 db.example.net\n"
	    "192.0.2.8";
	struct ipaddr a[4];
	char	buf[64];

	is_int(addr_hosts_lookup(text, sizeof(text) - 1, "db.example", a, 4),
	    3, "hosts: three addresses, the duplicate once");
	addr_ip_format(&a[0], buf, sizeof(buf));
	is_str(buf, "192.0.2.5", "hosts: IPv4 first, in file order");
	addr_ip_format(&a[1], buf, sizeof(buf));
	is_str(buf, "192.0.2.6", "hosts: an alias");
	addr_ip_format(&a[2], buf, sizeof(buf));
	is_str(buf, "2001:db8::5", "hosts: then IPv6, name without case");
	is_int(addr_hosts_lookup(text, sizeof(text) - 1, "db.example", a, 1),
	    1, "hosts: at most max");
	is_int(addr_hosts_lookup(text, sizeof(text) - 1, "db", a, 4), 1,
	    "hosts: a short alias");
	is_int(addr_hosts_lookup(text, sizeof(text) - 1, "comment", a, 4), 0,
	    "hosts: not in a comment");
	is_int(addr_hosts_lookup(text, sizeof(text) - 1, "192.0.2.8", a, 4), 0,
	    "hosts: an address is no name");
	is_int(addr_hosts_lookup("", 0, "db", a, 4), 0, "hosts: empty text");
}

int
main(void)
{
	test_hosts();
	test_siphash();
	test_net_hex();
	test_ip_parse();
	test_ip_format();
	test_ip_mask();
	test_cidr();
	test_domain();
	test_canon();
	test_greylist_sender();
	test_lower_hash();
	test_hash_mem();
	return tap_done();
}

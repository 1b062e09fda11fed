/*
 * cluster_test.c - unit tests for slot.c: CRC16, hash tags, slots,
 * addresses and MOVED/ASK parsing (no hiredis needed)
 */
#include <stdio.h>
#include <string.h>

#include "slot.h"
#include "tap.h"

/* tag - the hash tag of a key as a string */
static const char *
tag(const char *key, char *buf, size_t len)
{
	size_t	off, n;

	slot_hashtag(key, strlen(key), &off, &n);
	if (n >= len)
		n = len - 1;
	memcpy(buf, key + off, n);
	buf[n] = '\0';
	return buf;
}

/* test_crc16 - reference values of CRC16/XMODEM */
static void
test_crc16(void)
{
	is_int(slot_crc16("123456789", 9), 0x31C3, "crc16 of 123456789 is 0x31C3");
	is_int(slot_crc16("", 0), 0, "crc16 of nothing is 0");
	is_int(slot_crc16("A", 1), 0x58E5, "crc16 of A");
}

/* test_slots - known slots (the Redis Cluster specification, redis-cli) */
static void
test_slots(void)
{
	is_int(slot_of("123456789", 9), 12739, "slot of 123456789 is 12739");
	is_int(slot_of("foo", 3), 12182, "slot of foo");
	is_int(slot_of("bar", 3), 5061, "slot of bar");
	is_int(slot_of("hello", 5), 866, "slot of hello");
	is_int(slot_of("{user1000}.following", 20), slot_of("user1000", 8),
	    "hash tag decides the slot");
	is_int(slot_of("{user1000}.followers", 20),
	    slot_of("{user1000}.following", 20), "same tag, same slot");
	is_int(slot_of("pd:g{c00002}\x01\x02", 14), slot_of("pd:a{c00002}", 12),
	    "greylist keys of one network share a slot");
	is_int(slot_of("pd:r{0123456789abcdef}", 22),
	    slot_of("pd:n{0123456789abcdef}", 22),
	    "ratelimit keys of one login share a slot");
	{
		/* binary keys: NUL bytes are hashed too */
		char	k[] = { 'a', 0, 'b' };

		/* CRC16/XMODEM of 61 00 62 is 0xe0bf: slot 8383 */
		is_int(slot_of(k, 3), 8383, "binary key: its slot");
		ok(slot_of(k, 3) != slot_of("a", 1), "NUL is part of the key");
	}
}

/* test_hashtag - the tag extraction rules */
static void
test_hashtag(void)
{
	char	b[64];

	is_str(tag("{user1000}.following", b, sizeof(b)), "user1000",
	    "{user1000}.following");
	is_str(tag("foo{}{bar}", b, sizeof(b)), "foo{}{bar}",
	    "empty first tag: whole key");
	is_str(tag("foo{{bar}}zap", b, sizeof(b)), "{bar", "foo{{bar}}zap");
	is_str(tag("foo{bar}{zap}", b, sizeof(b)), "bar", "first tag only");
	is_str(tag("nobraces", b, sizeof(b)), "nobraces", "no tag");
	is_str(tag("open{only", b, sizeof(b)), "open{only", "no closing brace");
	is_str(tag("}x{y}", b, sizeof(b)), "y", "a } before { is ignored");
	is_str(tag("", b, sizeof(b)), "", "empty key");
}

/* test_hostport - address parsing */
static void
test_hostport(void)
{
	char	h[64];
	int	port = 0;

	is_int(slot_parse_hostport("127.0.0.1:6379", h, sizeof(h), &port), 0,
	    "v4 parses");
	is_str(h, "127.0.0.1", "v4 host");
	is_int(port, 6379, "v4 port");
	is_int(slot_parse_hostport("[::1]:26379", h, sizeof(h), &port), 0,
	    "v6 parses");
	is_str(h, "::1", "v6 host without brackets");
	is_int(port, 26379, "v6 port");
	is_int(slot_parse_hostport("redis.example:7000", h, sizeof(h), &port),
	    0, "name parses");
	is_int(slot_parse_hostport("::1:6379", h, sizeof(h), &port), -1,
	    "v6 without brackets refused");
	is_int(slot_parse_hostport("host", h, sizeof(h), &port), -1,
	    "missing port refused");
	is_int(slot_parse_hostport("host:", h, sizeof(h), &port), -1,
	    "empty port refused");
	is_int(slot_parse_hostport(":6379", h, sizeof(h), &port), -1,
	    "empty host refused");
	is_int(slot_parse_hostport("host:0", h, sizeof(h), &port), -1,
	    "port 0 refused");
	is_int(slot_parse_hostport("host:65536", h, sizeof(h), &port), -1,
	    "port 65536 refused");
	is_int(slot_parse_hostport("host:12x", h, sizeof(h), &port), -1,
	    "junk after port refused");
	is_int(slot_parse_hostport("averyveryverylonghostname:1", h, 8, &port),
	    -1, "host too long for the buffer refused");
}

/* test_redirect - MOVED and ASK */
static void
test_redirect(void)
{
	char	a[64];
	unsigned slot = 0;

	is_int(slot_parse_redirect("MOVED 3999 127.0.0.1:6381", &slot, a,
	    sizeof(a)), 1, "MOVED");
	is_int(slot, 3999, "MOVED slot");
	is_str(a, "127.0.0.1:6381", "MOVED address");
	is_int(slot_parse_redirect("ASK 16383 [::1]:7000", &slot, a,
	    sizeof(a)), 2, "ASK");
	is_int(slot, 16383, "ASK slot");
	is_str(a, "[::1]:7000", "ASK address");
	is_int(slot_parse_redirect("MOVED 16384 127.0.0.1:1", &slot, a,
	    sizeof(a)), 0, "slot out of range");
	is_int(slot_parse_redirect("MOVED x 127.0.0.1:1", &slot, a,
	    sizeof(a)), 0, "slot not a number");
	is_int(slot_parse_redirect("MOVED 12 ", &slot, a, sizeof(a)), 0,
	    "no address");
	is_int(slot_parse_redirect("NOSCRIPT No matching script", &slot, a,
	    sizeof(a)), 0, "other errors");
	is_int(slot_parse_redirect("READONLY You can't write", &slot, a,
	    sizeof(a)), 0, "READONLY is no redirect");
	/* Redis 7, node endpoint unknown: no host before the colon */
	is_int(slot_parse_redirect("MOVED 3999 :6381", &slot, a, sizeof(a)), 1,
	    "MOVED with an empty host is a MOVED");
	is_str(a, ":6381", "empty-host address kept for the caller");
	is_int(slot_parse_redirect("ASK 7 :6381", &slot, a, sizeof(a)), 2,
	    "ASK with an empty host");
}

/* test_redirect_target - the node a redirection names */
static void
test_redirect_target(void)
{
	char	a[64], tiny[12];

	is_int(slot_redirect_target(":6381", "127.0.0.1:6379", a, sizeof(a)),
	    0, "empty host: taken from the answering connection");
	is_str(a, "127.0.0.1:6381", "empty host + answering node's host");
	is_int(slot_redirect_target("?:6381", "10.1.2.3:7000", a, sizeof(a)),
	    0, "\"?\" host: taken from the answering connection");
	is_str(a, "10.1.2.3:6381", "\"?\" host replaced");
	is_int(slot_redirect_target(":7001", "[::1]:7000", a, sizeof(a)), 0,
	    "empty host, IPv6 answering node");
	is_str(a, "[::1]:7001", "IPv6 host lent in brackets");
	is_int(slot_redirect_target("127.0.0.2:6381", "127.0.0.1:6379", a,
	    sizeof(a)), 0, "a full address");
	is_str(a, "127.0.0.2:6381", "a full address is kept");
	is_int(slot_redirect_target("::1:7002", "127.0.0.1:6379", a,
	    sizeof(a)), 0, "IPv6 as Redis writes it");
	is_str(a, "[::1]:7002", "IPv6 put in brackets");
	is_int(slot_redirect_target("[::1]:7002", NULL, a, sizeof(a)), 0,
	    "IPv6 already in brackets");
	is_str(a, "[::1]:7002", "brackets kept once");
	is_int(slot_redirect_target("node-a.example:6379", NULL, a, sizeof(a)),
	    0, "a host name");
	is_str(a, "node-a.example:6379", "host name kept");
	is_int(slot_redirect_target(":6381", NULL, a, sizeof(a)), -1,
	    "empty host and no answering address");
	is_int(slot_redirect_target(":6381", "unix:/tmp/r.sock", a, sizeof(a)),
	    -1, "empty host, answering connection without a host");
	is_int(slot_redirect_target(":0", "127.0.0.1:6379", a, sizeof(a)), -1,
	    "port 0 refused");
	is_int(slot_redirect_target(":65536", "127.0.0.1:6379", a, sizeof(a)),
	    -1, "port above 65535 refused");
	is_int(slot_redirect_target("127.0.0.1:", "127.0.0.1:6379", a,
	    sizeof(a)), -1, "no port refused");
	is_int(slot_redirect_target("127.0.0.1", NULL, a, sizeof(a)), -1,
	    "no colon refused");
	is_int(slot_redirect_target("127.0.0.1:6381x", NULL, a, sizeof(a)), -1,
	    "junk after the port refused");
	is_int(slot_redirect_target("127.0.0.100:6381", NULL, tiny,
	    sizeof(tiny)), -1, "does not fit: refused, not cut");
}

int
main(void)
{
	test_crc16();
	test_slots();
	test_hashtag();
	test_hostport();
	test_redirect();
	test_redirect_target();
	return tap_done();
}

/* ratelimit_test.c - the pure parts of the ratelimit check: key building,
 * window text, override parsing, and configuration errors at load time */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "rules.h"
#include "tap.h"

#include "ratelimit.h"

enum { P_SASL, P_SENDER, P_SENDER_DOMAIN, P_CLIENT_ADDRESS,
	P_CLIENT_NETWORK, P_RECIPIENT, P_RECIPIENT_DOMAIN };

static char dir[] = "/tmp/policyd-ratelimit-test.XXXXXX";

#include "confload.h"

/* set - one attribute of a request */
static void
set(struct policy_req *q, enum attr_id id, const char *v)
{
	q->v[id] = v;
	q->len[id] = strlen(v);
}

/* request - an empty request */
static void
request(struct policy_req *q)
{
	memset(q, 0, sizeof(*q));
	for (int i = 0; i < A_COUNT; i++)
		q->v[i] = "";
}

static const uint8_t S[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
	14, 15, 16 };
static const uint8_t S2[16] = { 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5,
	4, 3, 2, 1 };

static void
test_keys(void)
{
	struct policy_req q;
	char	buf[2048], why[128], big[2000];
	int	p1[] = { P_SASL };
	int	p2[] = { P_CLIENT_NETWORK, P_SENDER_DOMAIN };
	int	p3[] = { P_SENDER, P_RECIPIENT_DOMAIN, P_CLIENT_ADDRESS };
	int	p4[] = { P_CLIENT_NETWORK };
	int	n;

	request(&q);
	n = ratelimit_key_text(S, p1, 1, 24, 64, &q, buf, sizeof(buf), why,
	    sizeof(why));
	is_int(n, -1, "no login: not limited");
	is_str(why, "no sasl_username", "reason");
	set(&q, A_SASL_USERNAME, "Alice+Tag@Example.NET");
	ratelimit_key_text(S, p1, 1, 24, 64, &q, buf, sizeof(buf), why,
	    sizeof(why));
	is_str(buf, "alice+tag@example.net", "login lowercased, kept whole");

	set(&q, A_CLIENT_ADDRESS, "192.0.2.77");
	set(&q, A_SENDER, "Bob+x@Sender.Test");
	ratelimit_key_text(S, p2, 2, 24, 64, &q, buf, sizeof(buf), why,
	    sizeof(why));
	is_str(buf, "192.0.2.0/24|sender.test", "network and sender domain");
	set(&q, A_RECIPIENT, "Carol@Example.ORG");
	ratelimit_key_text(S, p3, 3, 24, 64, &q, buf, sizeof(buf), why,
	    sizeof(why));
	is_str(buf, "bob@sender.test|example.org|192.0.2.77",
	    "sender canonical, recipient domain, address");
	set(&q, A_SENDER, "");
	ratelimit_key_text(S, p3, 1, 24, 64, &q, buf, sizeof(buf), why,
	    sizeof(why));
	is_str(buf, "<>", "null sender");
	set(&q, A_CLIENT_ADDRESS, "2001:DB8:1:2:3::4");
	ratelimit_key_text(S, p4, 1, 24, 64, &q, buf, sizeof(buf), why,
	    sizeof(why));
	is_str(buf, "2001:db8:1:2::/64", "IPv6 /64");
	ratelimit_key_text(S, p4, 1, 24, 48, &q, buf, sizeof(buf), why,
	    sizeof(why));
	is_str(buf, "2001:db8:1::/48", "IPv6 prefix configurable");
	set(&q, A_CLIENT_ADDRESS, "not-an-ip");
	ratelimit_key_text(S, p4, 1, 24, 64, &q, buf, sizeof(buf), why,
	    sizeof(why));
	is_str(buf, "not-an-ip", "a broken address: its raw value");
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	set(&q, A_SASL_USERNAME, big);
	n = ratelimit_key_text(S, p1, 1, 24, 64, &q, buf, sizeof(buf), why,
	    sizeof(why));
	ok(n == 17 && buf[0] == '#', "a huge value is hashed to 17 bytes");
	set(&q, A_RECIPIENT, "");
	n = ratelimit_key_text(S, p3, 3, 24, 64, &q, buf, sizeof(buf), why,
	    sizeof(why));
	is_int(n, -1, "no recipient: not limited");
	ok(ratelimit_tag(S, "a", "b") != ratelimit_tag(S, "b", "a"),
	    "the tag depends on the rule");
	ok(ratelimit_tag(S, "r", "alice") == addr_siphash(S, "r\0alice", 7),
	    "the tag is SipHash-2-4 of rule NUL key under the secret");
	ok(ratelimit_tag(S, "r", "alice") != ratelimit_tag(S2, "r", "alice"),
	    "the tag depends on the secret");

	/* forged keys: a '|' in a value cannot pass for two parts */
	set(&q, A_SENDER, "a|b@x.test");
	set(&q, A_RECIPIENT, "c@y.test");
	set(&q, A_CLIENT_ADDRESS, "192.0.2.77");
	ratelimit_key_text(S, p3, 3, 24, 64, &q, buf, sizeof(buf), why,
	    sizeof(why));
	is_str(buf, "a%7cb@x.test|y.test|192.0.2.77", "'|' in a value is %7c");
	set(&q, A_SASL_USERNAME, "bob@x.test|192.0.2.0/24");
	ratelimit_key_text(S, p1, 1, 24, 64, &q, buf, sizeof(buf), why,
	    sizeof(why));
	is_str(buf, "bob@x.test%7c192.0.2.0/24", "a login cannot pose as login|network");
	set(&q, A_SASL_USERNAME, "100%@x.test");
	ratelimit_key_text(S, p1, 1, 24, 64, &q, buf, sizeof(buf), why,
	    sizeof(why));
	is_str(buf, "100%25@x.test", "'%' is %25 (the escape is unambiguous)");
	/* a typed "#hash" cannot pass for a hashed long value */
	memset(big, 'b', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	set(&q, A_SASL_USERNAME, big);
	ratelimit_key_text(S, p1, 1, 24, 64, &q, buf, sizeof(buf), why,
	    sizeof(why));
	{
		char	hashed[32], typed[2048];

		snprintf(hashed, sizeof(hashed), "%s", buf);
		set(&q, A_SASL_USERNAME, hashed);
		ratelimit_key_text(S, p1, 1, 24, 64, &q, typed, sizeof(typed),
		    why, sizeof(why));
		ok(strcmp(typed, hashed) != 0 && typed[0] == '%',
		    "a login typed as \"#<hash>\" is %23..., not the hash");
	}
	/* long values are hashed whole: they differ where they differ */
	{
		char	a1[32], b2[9000];

		memset(b2, 'c', sizeof(b2) - 1);
		b2[sizeof(b2) - 1] = '\0';
		set(&q, A_SASL_USERNAME, b2);
		ratelimit_key_text(S, p1, 1, 24, 64, &q, buf, sizeof(buf), why,
		    sizeof(why));
		snprintf(a1, sizeof(a1), "%s", buf);
		b2[sizeof(b2) - 2] = 'd';
		set(&q, A_SASL_USERNAME, b2);
		ratelimit_key_text(S, p1, 1, 24, 64, &q, buf, sizeof(buf), why,
		    sizeof(why));
		ok(strcmp(a1, buf) != 0, "8 KB logins differing in the last "
		    "byte get different keys");
		set(&q, A_SASL_USERNAME, b2);
		ratelimit_key_text(S2, p1, 1, 24, 64, &q, a1, sizeof(a1), why,
		    sizeof(why));
		ok(strcmp(a1, buf) != 0, "  and the hash is keyed");
	}
	/* the worst case fits: every byte of every part escaped */
	{
		int	p7[] = { P_SASL, P_SENDER, P_RECIPIENT, P_SASL, P_SENDER,
		    P_RECIPIENT, P_SASL };
		char	pipes[257], kb[8192];

		memset(pipes, '|', 256);
		pipes[256] = '\0';
		set(&q, A_SASL_USERNAME, pipes);
		set(&q, A_SENDER, pipes);
		set(&q, A_RECIPIENT, pipes);
		n = ratelimit_key_text(S, p7, 7, 24, 64, &q, kb, sizeof(kb),
		    why, sizeof(why));
		is_int(n, 7 * 768 + 6, "7 parts of 256 escaped bytes: a key, "
		    "not \"key too long\"");
	}
}

static void
test_window_text(void)
{
	char	buf[64];

	ratelimit_window_text(60, buf, sizeof(buf));
	is_str(buf, "minute", "60");
	ratelimit_window_text(3600, buf, sizeof(buf));
	is_str(buf, "hour", "3600");
	ratelimit_window_text(7200, buf, sizeof(buf));
	is_str(buf, "2 hours", "7200");
	ratelimit_window_text(86400, buf, sizeof(buf));
	is_str(buf, "day", "86400");
	ratelimit_window_text(300, buf, sizeof(buf));
	is_str(buf, "5 minutes", "300");
	ratelimit_window_text(90, buf, sizeof(buf));
	is_str(buf, "90 seconds", "90");
	ratelimit_window_text(1, buf, sizeof(buf));
	is_str(buf, "1 second", "1");
}

static void
test_overrides(void)
{
	struct rl_window def[2] = { { 500, 3600 }, { 60, 60 } }, w[8];
	char	err[256];
	int	n;

	is_int(ratelimit_parse_windows("10/3600", def, 2, w, &n, err,
	    sizeof(err)), 0, "one window");
	ok(n == 1 && w[0].limit == 10 && w[0].seconds == 3600, "10/3600");
	is_int(ratelimit_parse_windows("1000/1h, 100/1m 5000/1d", def, 2, w,
	    &n, err, sizeof(err)), 0, "three windows with units");
	ok(n == 3 && w[0].seconds == 3600 && w[1].seconds == 60 &&
	    w[2].seconds == 86400 && w[2].limit == 5000, "units parsed");
	is_int(ratelimit_parse_windows("20", def, 2, w, &n, err, sizeof(err)),
	    0, "a plain number");
	ok(n == 2 && w[0].limit == 20 && w[0].seconds == 3600 &&
	    w[1].limit == 20 && w[1].seconds == 60,
	    "replaces every limit, keeps the windows");
	is_int(ratelimit_parse_windows("unlimited", def, 2, w, &n, err,
	    sizeof(err)), 1, "unlimited");
	is_int(ratelimit_parse_windows("0/60", def, 2, w, &n, err,
	    sizeof(err)), 0, "zero is a limit (nothing passes)");
	is_int(ratelimit_parse_windows("10/x", def, 2, w, &n, err,
	    sizeof(err)), -1, "bad window");
	ok(strstr(err, "bad window length") != NULL, err);
	is_int(ratelimit_parse_windows("lots", def, 2, w, &n, err,
	    sizeof(err)), -1, "not a number");
	is_int(ratelimit_parse_windows("10/60 20", def, 2, w, &n, err,
	    sizeof(err)), -1, "a plain number after windows");
	is_int(ratelimit_parse_windows("1/1,2/2,3/3,4/4,5/5,6/6,7/7,8/8,9/9",
	    def, 2, w, &n, err, sizeof(err)), -1, "at most 8 windows");
	is_int(ratelimit_parse_windows("99999999999999999999", def, 2, w, &n,
	    err, sizeof(err)), -1, "overflow refused");
}

static void
test_config(void)
{
	char	errs[4096], path[512];
	struct config *c;
	FILE	*f;

	c = load("rules = ( { name = \"r\"; check = \"ratelimit\";\n"
	    "  key = \"sasl_username\"; count = \"messages\";\n"
	    "  windows = ( { limit = 1; seconds = 60; } ); } );\n", errs,
	    sizeof(errs));
	ok(c == NULL && strstr(errs, "policyd.conf:1: rule \"r\": count = "
	    "\"messages\" works only at END-OF-MESSAGE") != NULL,
	    "messages at RCPT refused with file:line");
	c = load("rules = ( { name = \"r\"; check = \"ratelimit\";\n"
	    "  key = [ \"sasl_username\", \"helo\" ];\n"
	    "  windows = ( { limit = 1; seconds = 60; } ); } );\n", errs,
	    sizeof(errs));
	ok(c == NULL && strstr(errs, ":2: key: unknown part \"helo\"") != NULL,
	    "unknown key part");
	c = load("rules = ( { name = \"r\"; check = \"ratelimit\";\n"
	    "  key = \"sender\"; max_networks = 5;\n"
	    "  windows = ( { limit = 1; seconds = 60; } ); } );\n", errs,
	    sizeof(errs));
	ok(c == NULL && strstr(errs, "key must contain") != NULL,
	    "max_networks needs the login in the key");
	c = load("rules = ( { name = \"r\"; check = \"ratelimit\";\n"
	    "  key = \"sender\"; exceeded_action = \"OK\";\n"
	    "  windows = ( { limit = 1; seconds = 60; } ); } );\n", errs,
	    sizeof(errs));
	ok(c == NULL && strstr(errs, "exceeded_action: \"OK\"") != NULL,
	    "OK is not an action for an exceeded limit");
	c = load("rules = ( { name = \"r\"; check = \"ratelimit\";\n"
	    "  key = \"sender\";\n"
	    "  windows = ( { limit = 1; seconds = 0; } ); } );\n", errs,
	    sizeof(errs));
	ok(c == NULL && strstr(errs, ":3: windows: limit") != NULL,
	    "a window of 0 seconds");
	snprintf(path, sizeof(path), "%s/ov", dir);
	f = fopen(path, "w");
	fputs("# overrides\nbulk@example.net 10/3600\n@example.org\n", f);
	fclose(f);
	c = load("rules = ( { name = \"r\"; check = \"ratelimit\";\n"
	    "  key = \"sasl_username\"; overrides = \"ov\";\n"
	    "  windows = ( { limit = 1; seconds = 60; } ); } );\n", errs,
	    sizeof(errs));
	ok(c == NULL && strstr(errs, "/ov:3: \"@example.org\": no value") !=
	    NULL, "override file errors as file:line");
	f = fopen(path, "w");
	fputs("bulk@example.net 10/3600\n@example.org 5\n", f);
	fclose(f);
	c = load("rules = ( { name = \"r\"; match = { protocol_state = "
	    "\"END-OF-MESSAGE\"; }; check = \"ratelimit\";\n"
	    "  key = \"sasl_username\"; overrides = \"ov\"; count = \"bytes\";\n"
	    "  exceeded_action = \"HOLD\"; max_networks = 3;\n"
	    "  notify_command = [ \"/bin/true\" ];\n"
	    "  windows = ( { limit = 10000000000L; seconds = 86400; },\n"
	    "    { limit = 100; seconds = 60; } ); } );\n", errs, sizeof(errs));
	ok(c != NULL, "a full rule loads");
	if (c == NULL)
		printf("# %s", errs);
	else
		config_unref(c);
	unlink(path);
}

int
main(void)
{
	char	cap[512];

	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 2;
	}
	log_init("ratelimit_test", 1, 0);
	test_keys();
	test_window_text();
	test_overrides();
	test_config();
	snprintf(cap, sizeof(cap), "%s/stderr", dir);
	unlink(cap);
	snprintf(cap, sizeof(cap), "%s/policyd.conf", dir);
	unlink(cap);
	rmdir(dir);
	return tap_done();
}

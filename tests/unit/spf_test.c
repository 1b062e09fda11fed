/*
 * spf_test.c - RFC 7208 record parsing and macro expansion (the RFC's own
 * examples, section 7.4), DNSBL site syntax, and the DNS wire decoder.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "dnsbl.h"
#include "resolver.h"
#include "spf.h"
#include "tap.h"

/* vars of RFC 7208 section 7.4 */
static struct spf_vars
rfc_vars(int v6)
{
	struct spf_vars v;

	memset(&v, 0, sizeof(v));
	v.sender = "strong-bad@email.example.com";
	v.local = "strong-bad";
	v.sender_domain = "email.example.com";
	v.domain = "email.example.com";
	v.helo = "mx.example.org";
	v.receiver = "mx.example.net";
	v.ptr_name = "mx.example.org";
	v.now = 1700000000;
	if (v6) {
		v.ip.family = AF_INET6;
		inet_pton(AF_INET6, "2001:db8::cb01", v.ip.a);
	} else {
		v.ip.family = AF_INET;
		inet_pton(AF_INET, "192.0.2.3", v.ip.a);
	}
	return v;
}

static void
expands(const char *spec, const char *want, int v6, int exp)
{
	struct spf_vars v = rfc_vars(v6);
	char	out[600], name[700];
	int	rc = spf_expand(spec, &v, exp, out, sizeof(out));

	snprintf(name, sizeof(name), "expand %s", spec);
	if (rc < 0)
		snprintf(out, sizeof(out), "(error)");
	is_str(out, want, name);
}

static void
bad_macro(const char *spec, int exp)
{
	struct spf_vars v = rfc_vars(0);
	char	out[600], name[700];

	snprintf(name, sizeof(name), "macro error: %s", spec);
	ok(spf_expand(spec, &v, exp, out, sizeof(out)) < 0, name);
}

static void
parses(const char *rec, int nterms, const char *what)
{
	struct spf_record r;
	char	err[200], name[600];
	int	rc = spf_parse(rec, &r, err, sizeof(err));

	snprintf(name, sizeof(name), "parse ok (%s): %s", what, rec);
	ok(rc == 0 && r.nterms == nterms, name);
	if (rc < 0)
		printf("#   error: %s\n", err);
	else if (r.nterms != nterms)
		printf("#   terms: %d, want %d\n", r.nterms, nterms);
	if (rc == 0)
		spf_record_free(&r);
}

static void
permerror(const char *rec)
{
	struct spf_record r;
	char	err[200], name[600];
	int	rc = spf_parse(rec, &r, err, sizeof(err));

	snprintf(name, sizeof(name), "permerror: %s", rec);
	ok(rc < 0, name);
	if (rc == 0)
		spf_record_free(&r);
}

static void
test_parse(void)
{
	struct spf_record r;
	char	err[200];

	parses("v=spf1 +all", 1, "all");
	parses("v=spf1", 0, "empty");
	parses("v=spf1 a mx -all", 3, "a mx all");
	parses("v=spf1 a:example.org -all", 2, "a:domain");
	parses("v=spf1 mx/30 mx:example.org/30 -all", 3, "mx cidr");
	parses("v=spf1 ptr -all", 2, "ptr");
	parses("v=spf1 ip4:192.0.2.128/28 -all", 2, "ip4");
	parses("v=spf1 ip6:2001:db8::/32 ip6:::1 -all", 3, "ip6");
	parses("v=spf1 a:mail.example.com/24//64 ~all", 2, "dual cidr");
	parses("v=spf1 a//64 ?all", 2, "ip6 cidr only");
	parses("v=spf1 include:_spf.google.com ~all", 2, "include");
	parses("v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} -all", 2, "exists");
	parses("v=spf1 redirect=_spf.example.com", 0, "redirect");
	parses("v=spf1 -all exp=explain._spf.%{d}", 1, "exp");
	parses("v=spf1 foo=bar -all", 1, "unknown modifier");
	parses("V=SPF1 IP4:192.0.2.0/24 -ALL", 2, "case");
	parses("v=spf1   a    -all  ", 2, "extra spaces");
	parses("v=spf1 -include:ip4._spf.%{d} -include:ptr._spf.%{d} +all", 3,
	    "RFC 7208 A.4");
	permerror("v=spf1 ip4:192.0.2.1/33 -all");
	permerror("v=spf1 ip4:192.0.2 -all");
	permerror("v=spf1 ip6:2001:db8::/129");
	permerror("v=spf1 foo -all");
	permerror("v=spf1 all:example.com");
	permerror("v=spf1 include -all");
	permerror("v=spf1 include:");
	permerror("v=spf1 a:1.2.3.4 -all");
	permerror("v=spf1 a:localhost -all");
	permerror("v=spf1 a/024 -all");
	permerror("v=spf1 redirect=a.example redirect=b.example");
	permerror("v=spf1 exp=a.example exp=b.example -all");
	permerror("v=spf1 exists:%{x}.example.com");
	permerror("v=spf1 exists:%{c}.example.com");
	permerror("v=spf1 exists:%{d.example.com");
	permerror("v=spf1 a:exa%mple.com");
	permerror("v=spf10 -all");
	ok(spf_is_record("v=spf1", 6) && spf_is_record("v=spf1 -all", 11) &&
	    !spf_is_record("v=spf10", 7) && !spf_is_record("v=spf", 5),
	    "spf_is_record");
	ok(spf_parse("v=spf1 ?mx:example.org/27//100 -ip4:10.0.0.0/8 redirect="
	    "x.example", &r, err, sizeof(err)) == 0, "parse details");
	is_int(r.terms[0].qual, '?', "qualifier ?");
	is_int(r.terms[0].mech, SPF_M_MX, "mx");
	is_str(r.terms[0].spec, "example.org", "mx domain");
	is_int(r.terms[0].cidr4, 27, "cidr4");
	is_int(r.terms[0].cidr6, 100, "cidr6");
	is_int(r.terms[1].qual, '-', "qualifier -");
	is_int(r.terms[1].cidr4, 8, "ip4 cidr");
	is_str(r.redirect, "x.example", "redirect");
	ok(!r.has_all, "no all");
	spf_record_free(&r);
}

static void
test_macros(void)
{
	/* RFC 7208 section 7.4 */
	expands("%{s}", "strong-bad@email.example.com", 0, 0);
	expands("%{o}", "email.example.com", 0, 0);
	expands("%{d}", "email.example.com", 0, 0);
	expands("%{d4}", "email.example.com", 0, 0);
	expands("%{d3}", "email.example.com", 0, 0);
	expands("%{d2}", "example.com", 0, 0);
	expands("%{d1}", "com", 0, 0);
	expands("%{dr}", "com.example.email", 0, 0);
	expands("%{d2r}", "example.email", 0, 0);
	expands("%{l}", "strong-bad", 0, 0);
	expands("%{l-}", "strong.bad", 0, 0);
	expands("%{lr}", "strong-bad", 0, 0);
	expands("%{lr-}", "bad.strong", 0, 0);
	expands("%{l1r-}", "strong", 0, 0);
	expands("%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com",
	    0, 0);
	expands("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com", 0, 0);
	expands("%{lr-}.lp.%{ir}.%{v}._spf.%{d2}",
	    "bad.strong.lp.3.2.0.192.in-addr._spf.example.com", 0, 0);
	expands("%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}",
	    "3.2.0.192.in-addr.strong.lp._spf.example.com", 0, 0);
	expands("%{d2}.trusted-domains.example.net",
	    "example.com.trusted-domains.example.net", 0, 0);
	expands("%{ir}.%{v}._spf.%{d2}", "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0."
	    "0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com", 1, 0);
	/* the rest of section 7 */
	expands("%%%_%-", "% %20", 0, 0);
	expands("%{p}", "mx.example.org", 0, 0);
	expands("%{h}", "mx.example.org", 0, 0);
	expands("%{i}", "192.0.2.3", 0, 0);
	expands("%{S}", "strong-bad%40email.example.com", 0, 0);
	expands("%{c} via %{r} at %{t}", "192.0.2.3 via mx.example.net at "
	    "1700000000", 0, 1);
	expands("%{c}", "2001:db8::cb01", 1, 1);
	expands("%{i}", "2.0.0.1.0.d.b.8.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.c."
	    "b.0.1", 1, 0);
	expands("%{d9}", "email.example.com", 0, 0);
	expands("%{l+-}", "strong.bad", 0, 0);
	bad_macro("%{d0}", 0);
	bad_macro("%{c}", 0);
	bad_macro("%{r}", 0);
	bad_macro("%{x}", 0);
	bad_macro("%", 0);
	bad_macro("%{d", 0);
	bad_macro("a b", 0);
	{
		/* 4.8: an expansion over 253 characters loses labels on the left */
		struct spf_vars v = rfc_vars(0);
		char	spec[400], out[400];
		int	rc;

		v.local = "a.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		    ".bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
		    ".cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
		    ".dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";
		snprintf(spec, sizeof(spec), "%%{l}.example.com");
		rc = spf_expand(spec, &v, 0, out, sizeof(out));
		ok(rc == 0 && strlen(out) <= 253 && strncmp(out, "bbbb", 4) == 0,
		    "long expansion cut on the left at a label");
	}
}

static void
test_dnsbl(void)
{
	struct dnsbl_site s;
	char	err[200];
	uint8_t	a[4] = { 127, 0, 0, 2 };
	struct ipaddr ip;
	char	q[300];
	int	op, val;

	ok(dnsbl_parse("zen.spamhaus.org=127.0.0.[2..11]*3", &s, err,
	    sizeof(err)) == 0, "zen with pattern and weight");
	is_str(s.zone, "zen.spamhaus.org", "zone");
	is_int(s.weight, 3, "weight");
	ok(dnsbl_match(&s, a), "127.0.0.2 matches [2..11]");
	a[3] = 11;
	ok(dnsbl_match(&s, a), "127.0.0.11 matches");
	a[3] = 12;
	ok(!dnsbl_match(&s, a), "127.0.0.12 does not");
	a[3] = 1;
	ok(!dnsbl_match(&s, a), "127.0.0.1 does not");
	ok(dnsbl_parse("list.dnswl.org=127.0.[0..255].[1..3]*-2", &s, err,
	    sizeof(err)) == 0 && s.weight == -2, "dnswl negative weight");
	a[2] = 200; a[3] = 3;
	ok(dnsbl_match(&s, a), "127.0.200.3 matches the dnswl pattern");
	a[3] = 0;
	ok(!dnsbl_match(&s, a), "127.0.200.0 does not");
	ok(dnsbl_parse("b.barracudacentral.org", &s, err, sizeof(err)) == 0 &&
	    s.weight == 1 && !s.has_pattern, "plain zone, weight 1");
	ok(dnsbl_match(&s, a), "no pattern: any address");
	ok(dnsbl_parse("x.test=127.0.0.[2;4..6;9]", &s, err, sizeof(err)) == 0,
	    "list with ranges");
	a[0] = 127; a[1] = 0; a[2] = 0;
	a[3] = 5;
	ok(dnsbl_match(&s, a), "5 in [2;4..6;9]");
	a[3] = 3;
	ok(!dnsbl_match(&s, a), "3 not in [2;4..6;9]");
	a[3] = 9;
	ok(dnsbl_match(&s, a), "9 in [2;4..6;9]");
	ok(dnsbl_parse("X.Test*5", &s, err, sizeof(err)) == 0 &&
	    strcmp(s.zone, "x.test") == 0 && s.weight == 5, "lowercased, *5");
	ok(dnsbl_parse("x.test=127.0.0.256", &s, err, sizeof(err)) < 0, "256");
	ok(dnsbl_parse("x.test=127.0.0", &s, err, sizeof(err)) < 0, "3 octets");
	ok(dnsbl_parse("x.test=127.0.0.[5..2]", &s, err, sizeof(err)) < 0,
	    "reversed range");
	ok(dnsbl_parse("x.test=127.0.0.[2", &s, err, sizeof(err)) < 0, "open [");
	ok(dnsbl_parse("x.test*", &s, err, sizeof(err)) < 0, "empty weight");
	ok(dnsbl_parse("x.test*3x", &s, err, sizeof(err)) < 0, "bad weight");
	ok(dnsbl_parse("nodot", &s, err, sizeof(err)) < 0, "not a zone");
	ok(dnsbl_parse("", &s, err, sizeof(err)) < 0, "empty");
	ok(dnsbl_parse("x.test=127.0.0.2 ", &s, err, sizeof(err)) < 0,
	    "trailing space");
	addr_ip_parse("192.0.2.99", &ip);
	dnsbl_query_name(&ip, "zen.example", q, sizeof(q));
	is_str(q, "99.2.0.192.zen.example", "IPv4 reversal");
	addr_ip_parse("2001:db8::1", &ip);
	dnsbl_query_name(&ip, "v6.example", q, sizeof(q));
	is_str(q, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0."
	    "2.v6.example", "IPv6 nibble reversal");
	ok(dnsbl_cond_parse(">= 3", &op, &val) == 0 && op == DNSBL_OP_GE &&
	    val == 3, "condition >= 3");
	ok(dnsbl_cond_parse("<-1", &op, &val) == 0 && op == DNSBL_OP_LT &&
	    val == -1, "condition <-1");
	ok(dnsbl_cond_parse("== 0", &op, &val) == 0 && op == DNSBL_OP_EQ,
	    "condition == 0");
	ok(dnsbl_cond_parse("3", &op, &val) < 0, "no operator");
	ok(dnsbl_cond_parse(">= three", &op, &val) < 0, "no number");
	ok(dnsbl_cond_parse(">= 3 x", &op, &val) < 0, "trailing text");
	ok(dnsbl_cond_holds(DNSBL_OP_GE, 3, 3) && !dnsbl_cond_holds(DNSBL_OP_GT,
	    3, 3) && dnsbl_cond_holds(DNSBL_OP_NE, 3, 2), "condition holds");
}

static void
test_wire(void)
{
	uint8_t	q[300], m[512];
	struct dns_answer a;
	uint32_t neg;
	int	n = dns_build_query(q, sizeof(q), 0x1234, "Example.COM", DNS_T_TXT);
	size_t	o;

	ok(n == 12 + 13 + 4, "query length");
	ok(q[0] == 0x12 && q[1] == 0x34 && q[2] == 0x01 && q[5] == 1,
	    "query header: id, RD, one question");
	ok(dns_build_query(m, sizeof(m), 1, "a..b", DNS_T_A) < 0, "empty label");
	/* a reply: the question, a CNAME, then two TXT at the target */
	memcpy(m, q, (size_t)n);
	m[2] = 0x81;
	m[3] = 0x80;
	m[7] = 3;
	o = (size_t)n;
	{
		static const uint8_t rrs[] = {
			0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 6,
			3, 't', 'x', 't', 0xc0, 12,
			3, 't', 'x', 't', 0xc0, 12, 0, 16, 0, 1, 0, 0, 1, 0, 0, 7,
			3, 'a', 'b', 'c', 2, 'd', 'e',
			0xc0, 41, 0, 16, 0, 1, 0, 0, 0, 30, 0, 4,
			3, 'x', 'y', 'z',
		};

		memcpy(m + o, rrs, sizeof(rrs));
		o += sizeof(rrs);
	}
	ok(dns_parse_reply(m, o, 0x1234, "example.com", DNS_T_TXT, &a, &neg) ==
	    0, "reply decoded");
	is_int(a.status, DNS_OK, "status ok");
	is_int(a.nrr, 2, "two TXT records through the CNAME");
	if (a.nrr == 2) {
		is_str(a.rr[0].data, "abcde", "strings joined");
		is_int(a.rr[0].ttl, 256, "ttl");
		is_str(a.rr[1].data, "xyz", "second record");
	}
	dns_answer_free(&a);
	ok(dns_parse_reply(m, o, 0x1235, "example.com", DNS_T_TXT, &a, &neg) < 0,
	    "wrong id ignored");
	ok(dns_parse_reply(m, o, 0x1234, "example.org", DNS_T_TXT, &a, &neg) < 0,
	    "wrong question ignored");
	ok(dns_parse_reply(m, o - 3, 0x1234, "example.com", DNS_T_TXT, &a,
	    &neg) < 0, "truncated message rejected");
	m[2] |= 0x02;
	ok(dns_parse_reply(m, o, 0x1234, "example.com", DNS_T_TXT, &a, &neg) ==
	    1, "TC: ask over TCP");
	m[2] &= ~0x02;
	m[3] = 0x82;
	ok(dns_parse_reply(m, o, 0x1234, "example.com", DNS_T_TXT, &a, &neg) ==
	    2, "SERVFAIL: next attempt");
	/* a compression loop */
	memcpy(m, q, (size_t)n);
	m[2] = 0x81;
	m[3] = 0x80;
	m[7] = 1;
	m[n] = 0xc0;
	m[n + 1] = (uint8_t)n;
	ok(dns_parse_reply(m, (size_t)n + 12, 0x1234, "example.com", DNS_T_TXT,
	    &a, &neg) < 0, "compression loop rejected");
	ok(dns_name_valid("a.b") && !dns_name_valid("") && !dns_name_valid("a..b")
	    && !dns_name_valid(".a") && dns_name_valid("a.b."), "dns_name_valid");
}

int
main(void)
{
	test_parse();
	test_macros();
	test_dnsbl();
	test_wire();
	return tap_done();
}

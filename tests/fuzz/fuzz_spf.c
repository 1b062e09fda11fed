/*
 * fuzz_spf.c - libFuzzer target for what policyd reads from DNS answers
 * and DNS-related settings: SPF records (spf_parse), macro-strings
 * (spf_expand, both as domain-spec and as explanation), DNS replies
 * (dns_parse_reply) and postscreen DNSBL sites (dnsbl_parse,
 * dnsbl_cond_parse).
 *
 * Input: byte 0 selects nothing; every target gets the rest. Invariants:
 * an expansion is NUL-terminated and, for a domain-spec, at most 253
 * bytes; a parsed record has its terms within bounds and a qualifier
 * from "+-~?"; a decoded reply has at most DNS_MAX_RR records whose
 * data lengths agree with strlen (TXT may hold NULs: at most).
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dnsbl.h"
#include "resolver.h"
#include "spf.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	*s = malloc(size + 1), out[600], err[256];
	struct spf_record rec;
	struct spf_vars v;
	struct dnsbl_site site;
	struct dns_answer a;
	uint32_t neg;
	int	op, val;

	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (spf_parse(s, &rec, err, sizeof(err)) == 0) {
		for (int i = 0; i < rec.nterms; i++)
			if (strchr("+-~?", rec.terms[i].qual) == NULL ||
			    rec.terms[i].cidr4 > 32 || rec.terms[i].cidr6 > 128)
				abort();
		spf_record_free(&rec);
	}
	memset(&v, 0, sizeof(v));
	v.sender = "strong-bad@email.example.com";
	v.local = "strong-bad";
	v.sender_domain = v.domain = "email.example.com";
	v.helo = "mx.example.org";
	v.receiver = "mx.example.net";
	v.ip.family = size % 2 ? AF_INET : AF_INET6;
	memcpy(v.ip.a, "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\xcb\x01", 16);
	if (spf_expand(s, &v, 0, out, sizeof(out)) == 0 && strlen(out) > 253)
		abort();
	if (spf_expand(s, &v, 1, out, sizeof(out)) == 0 &&
	    strlen(out) >= sizeof(out))
		abort();
	(void)dnsbl_parse(s, &site, err, sizeof(err));
	(void)dnsbl_cond_parse(s, &op, &val);
	if (size >= 2) {
		uint16_t id = (uint16_t)(data[0] << 8 | data[1]);

		static const int types[] = { DNS_T_A, DNS_T_TXT, DNS_T_AAAA };

		for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
			if (dns_parse_reply(data, size, id, "example.com", types[t],
			    &a, &neg) == 0) {
				if (a.nrr > DNS_MAX_RR)
					abort();
				for (int i = 0; i < a.nrr; i++)
					if (a.rr[i].data != NULL &&
					    strlen(a.rr[i].data) > a.rr[i].len)
						abort();
				dns_answer_free(&a);
			}
		}
		if (dns_parse_reply(data, size, id, "example.com", DNS_T_MX, &a,
		    &neg) == 0)
			dns_answer_free(&a);
		if (dns_parse_reply(data, size, id, "example.com", DNS_T_PTR, &a,
		    &neg) == 0)
			dns_answer_free(&a);
	}
	free(s);
	return 0;
}

/*++
 * NAME
 *	dnsbl.h - DNS block and allow lists in postscreen's syntax (pure)
 * DESCRIPTION
 *	A site is "ZONE[=PATTERN][*WEIGHT]" as in Postfix's
 *	postscreen_dnsbl_sites: zen.spamhaus.org=127.0.0.[2..11]*3,
 *	list.dnswl.org=127.0.[0..255].[1..3]*-2. PATTERN has four octets,
 *	each a number, or brackets with numbers and ranges separated by
 *	';' ("[2;4..6]"); without it any A record counts. WEIGHT is an
 *	integer, 1 by default, negative for allow lists.
 *
 *	dnsbl_query_name() is the question for a client: "4.3.2.1.ZONE" for
 *	1.2.3.4, 32 reversed nibbles for IPv6. A site counts its weight once
 *	when any A record of the answer matches its pattern.
 *
 *	dnsbl_cond_parse() reads the dnsbl_score condition: an operator
 *	(>=, >, <=, <, ==, !=) and an integer, e.g. ">= 3".
 *--*/
#ifndef POLICYD_DNSBL_H
#define POLICYD_DNSBL_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"

struct dnsbl_site {
	char	zone[254];
	int	has_pattern;
	uint8_t	bits[4][32];		/* allowed values of each octet */
	int	weight;
};

int	dnsbl_parse(const char *s, struct dnsbl_site *site, char *err,
	    size_t errlen);
int	dnsbl_match(const struct dnsbl_site *site, const uint8_t a[4]);
int	dnsbl_query_name(const struct ipaddr *ip, const char *zone, char *buf,
	    size_t len);

#define DNSBL_OP_GE	1
#define DNSBL_OP_GT	2
#define DNSBL_OP_LE	3
#define DNSBL_OP_LT	4
#define DNSBL_OP_EQ	5
#define DNSBL_OP_NE	6

int	dnsbl_cond_parse(const char *s, int *op, int *value);	/* 0 / -1 */
int	dnsbl_cond_holds(int op, int value, int score);

#endif

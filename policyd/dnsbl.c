/*++
 * NAME
 *	dnsbl.c - postscreen-style DNSBL site parsing and matching (see dnsbl.h)
 *--*/
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "dnsbl.h"
#include "resolver.h"

/* num - a decimal 0..255 at *p */
static int
num(const char **p)
{
	int	v = 0, n = 0;

	while (isdigit((unsigned char)**p) && n < 4) {
		v = v * 10 + (**p - '0');
		(*p)++;
		n++;
	}
	return n == 0 || n > 3 || v > 255 ? -1 : v;
}

/* set_range - allow lo..hi in one octet */
static void
set_range(uint8_t *bits, int lo, int hi)
{
	for (int v = lo; v <= hi; v++)
		bits[v >> 3] |= (uint8_t)(1u << (v & 7));
}

/* octet - "N" or "[N;N..M;...]" */
static int
octet(const char **p, uint8_t *bits)
{
	int	lo, hi;

	if (**p != '[') {
		if ((lo = num(p)) < 0)
			return -1;
		set_range(bits, lo, lo);
		return 0;
	}
	(*p)++;
	for (;;) {
		if ((lo = num(p)) < 0)
			return -1;
		hi = lo;
		if ((*p)[0] == '.' && (*p)[1] == '.') {
			*p += 2;
			if ((hi = num(p)) < 0 || hi < lo)
				return -1;
		}
		set_range(bits, lo, hi);
		if (**p == ';') {
			(*p)++;
			continue;
		}
		if (**p != ']')
			return -1;
		(*p)++;
		return 0;
	}
}

/* dnsbl_parse - see dnsbl.h */
int
dnsbl_parse(const char *s, struct dnsbl_site *site, char *err, size_t errlen)
{
	size_t	zl = strcspn(s, "=*");
	const char *p;

	memset(site, 0, sizeof(*site));
	site->weight = 1;
	if (zl == 0 || zl >= sizeof(site->zone)) {
		snprintf(err, errlen, "expected ZONE[=PATTERN][*WEIGHT]");
		return -1;
	}
	memcpy(site->zone, s, zl);
	site->zone[zl] = '\0';
	for (char *z = site->zone; *z; z++)
		*z = (char)tolower((unsigned char)*z);
	if (!dns_name_valid(site->zone) || strchr(site->zone, '.') == NULL ||
	    site->zone[zl - 1] == '.') {
		snprintf(err, errlen, "\"%s\" is not a DNS zone", site->zone);
		return -1;
	}
	p = s + zl;
	if (*p == '=') {
		p++;
		site->has_pattern = 1;
		for (int i = 0; i < 4; i++) {
			if (i > 0 && *p++ != '.') {
				snprintf(err, errlen, "pattern: expected four "
				    "octets like 127.0.0.[2..11]");
				return -1;
			}
			if (octet(&p, site->bits[i]) < 0) {
				snprintf(err, errlen, "pattern: octet %d: expected "
				    "N, [N..M] or [N;M;...] with 0..255", i + 1);
				return -1;
			}
		}
	}
	if (*p == '*') {
		char	*end;
		long	w;

		errno = 0;
		w = strtol(p + 1, &end, 10);
		if (p[1] == '\0' || *end != '\0' || errno != 0 || w < -1000 ||
		    w > 1000 || isspace((unsigned char)p[1])) {
			snprintf(err, errlen, "weight: expected an integer "
			    "-1000..1000 after '*'");
			return -1;
		}
		site->weight = (int)w;
		p = end;
	}
	if (*p != '\0') {
		snprintf(err, errlen, "unexpected \"%.20s\"", p);
		return -1;
	}
	return 0;
}

/* dnsbl_match - does an A record match the site's pattern? */
int
dnsbl_match(const struct dnsbl_site *site, const uint8_t a[4])
{
	if (!site->has_pattern)
		return 1;
	for (int i = 0; i < 4; i++)
		if ((site->bits[i][a[i] >> 3] & (1u << (a[i] & 7))) == 0)
			return 0;
	return 1;
}

/* dnsbl_query_name - reversed address under the zone */
int
dnsbl_query_name(const struct ipaddr *ip, const char *zone, char *buf,
    size_t len)
{
	static const char hex[] = "0123456789abcdef";
	int	n;

	if (ip->family == AF_INET) {
		n = snprintf(buf, len, "%u.%u.%u.%u.%s", ip->a[3], ip->a[2],
		    ip->a[1], ip->a[0], zone);
	} else {
		char	nib[65];

		for (int i = 15, o = 0; i >= 0; i--, o += 4) {
			nib[o] = hex[ip->a[i] & 15];
			nib[o + 1] = '.';
			nib[o + 2] = hex[ip->a[i] >> 4];
			nib[o + 3] = '.';
		}
		nib[64] = '\0';
		n = snprintf(buf, len, "%s%s", nib, zone);
	}
	return n < 0 || (size_t)n >= len ? -1 : n;
}

/* dnsbl_cond_parse - ">= 3" */
int
dnsbl_cond_parse(const char *s, int *op, int *value)
{
	static const struct { const char *t; int op; } ops[] = {
		{ ">=", DNSBL_OP_GE }, { "<=", DNSBL_OP_LE }, { "==", DNSBL_OP_EQ },
		{ "!=", DNSBL_OP_NE }, { ">", DNSBL_OP_GT }, { "<", DNSBL_OP_LT },
	};
	char	*end;
	long	v;

	while (*s == ' ')
		s++;
	*op = 0;
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (strncmp(s, ops[i].t, strlen(ops[i].t)) == 0) {
			*op = ops[i].op;
			s += strlen(ops[i].t);
			break;
		}
	if (*op == 0)
		return -1;
	while (*s == ' ')
		s++;
	errno = 0;
	v = strtol(s, &end, 10);
	if (end == s || errno != 0 || v < -100000 || v > 100000)
		return -1;
	while (*end == ' ')
		end++;
	if (*end != '\0')
		return -1;
	*value = (int)v;
	return 0;
}

/* dnsbl_cond_holds - score OP value */
int
dnsbl_cond_holds(int op, int value, int score)
{
	switch (op) {
	case DNSBL_OP_GE: return score >= value;
	case DNSBL_OP_GT: return score > value;
	case DNSBL_OP_LE: return score <= value;
	case DNSBL_OP_LT: return score < value;
	case DNSBL_OP_EQ: return score == value;
	case DNSBL_OP_NE: return score != value;
	default: return 0;
	}
}

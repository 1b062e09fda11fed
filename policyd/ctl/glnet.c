/*
 * glnet.c - the client networks of policyctl greylist (glnet.h)
 */
#include <sys/socket.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "greylist.h"
#include "log.h"

#include "ctl.h"
#include "glnet.h"

/* hexval - one hex digit, or -1 */
static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/*
 * gl_net_text - "192.0.2.0/24" or "2001:db8::/64" for NET hex; a network
 * of an invalid client_address ("x" + hash) stays as it is.
 */
static void
gl_net_text(const char *net, int v4prefix, int v6prefix, char *buf,
    size_t len)
{
	struct ipaddr ip;
	const char *h = net;
	size_t	hl = strlen(net), nbytes;
	int	prefix;
	char	a[64];

	memset(&ip, 0, sizeof(ip));
	if (hl % 2 == 1 && net[0] == '6') {
		ip.family = AF_INET6;
		h++;
		hl--;
	} else {
		ip.family = AF_INET;
	}
	nbytes = hl / 2;
	if (hl % 2 != 0 || nbytes == 0 || nbytes > (ip.family == AF_INET ?
	    4u : 16u))
		goto raw;
	for (size_t i = 0; i < nbytes; i++) {
		int	hi = hexval(h[2 * i]), lo = hexval(h[2 * i + 1]);

		if (hi < 0 || lo < 0)
			goto raw;
		ip.a[i] = (uint8_t)(hi << 4 | lo);
	}
	prefix = ip.family == AF_INET ? v4prefix : v6prefix;
	if ((size_t)(prefix + 7) / 8 != nbytes)
		prefix = (int)nbytes * 8;	/* another prefix made it */
	addr_ip_format(&ip, a, sizeof(a));
	snprintf(buf, len, "%s/%d", a, prefix);
	return;
raw:
	snprintf(buf, len, "%s", net);
}

/* gl_name_text - the network of a client name N for a person */
void
gl_name_text(const unsigned char *name, size_t len, int v4prefix, int v6prefix,
    char *buf, size_t buflen)
{
	char	hex[2 * GL_NAME_MAX + 2];
	size_t	o = 0;

	if (len < 2) {
		snprintf(buf, buflen, "?");
		return;
	}
	if (name[0] != '4')
		hex[o++] = (char)name[0];
	for (size_t i = 1; i < len && o + 3 < sizeof(hex); i++)
		o += (size_t)snprintf(hex + o, sizeof(hex) - o, "%02x", name[i]);
	hex[o] = '\0';
	if (name[0] == 'h')
		snprintf(buf, buflen, "client %s", hex + 1);
	else
		gl_net_text(hex, v4prefix, v6prefix, buf, buflen);
}

/*
 * gl_target - the client part of a NETWORK argument (an address,
 * ADDRESS/LEN with the rule's prefix, or the "x..." network of an invalid
 * client_address as listed), as greylist.h names it; also its text.
 * 0 or CTL_USAGE.
 */
int
gl_target(const char *arg, int v4prefix, int v6prefix, struct gl_key *k,
    char *text, size_t textlen)
{
	struct ipaddr ip;
	char	a[64], esc[128], net[72];
	const char *slash = strchr(arg, '/');
	size_t	al = slash ? (size_t)(slash - arg) : strlen(arg);

	if (arg[0] == 'x' && strlen(arg) == 17 &&
	    strspn(arg + 1, "0123456789abcdef") == 16) {
		greylist_client_of(arg, 17, k);
		snprintf(text, textlen, "%s", arg);
		return 0;
	}
	if (al >= sizeof(a))
		goto bad;
	memcpy(a, arg, al);
	a[al] = '\0';
	if (addr_ip_parse(a, &ip) < 0)
		goto bad;
	if (slash != NULL) {
		int	want = ip.family == AF_INET ? v4prefix : v6prefix;

		if (ctl_parse_int(slash + 1, 0, 128) != want) {
			ctl_err("%s: the greylist rule groups clients by /%d "
			    "networks; give an address in it (or ADDRESS/%d)",
			    log_escape(esc, sizeof(esc), arg, strlen(arg)),
			    want, want);
			return CTL_USAGE;
		}
	}
	addr_net_hex(&ip, v4prefix, v6prefix, net, sizeof(net));
	greylist_client_of(net, strlen(net), k);
	gl_net_text(net, v4prefix, v6prefix, text, textlen);
	return 0;
bad:
	ctl_err("\"%s\": expected a client IP address (IPv4 or IPv6)",
	    log_escape(esc, sizeof(esc), arg, strlen(arg)));
	return CTL_USAGE;
}

/* gl_client_hex - the old format's NET hex of an argument ("" if none) */
void
gl_client_hex(const char *arg, int v4prefix, int v6prefix, char *net,
    size_t len)
{
	struct ipaddr ip;
	char	a[64];
	size_t	al = strcspn(arg, "/");

	net[0] = '\0';
	if (arg[0] == 'x') {
		snprintf(net, len, "%s", arg);
		return;
	}
	if (al >= sizeof(a))
		return;
	memcpy(a, arg, al);
	a[al] = '\0';
	if (addr_ip_parse(a, &ip) == 0)
		addr_net_hex(&ip, v4prefix, v6prefix, net, len);
}

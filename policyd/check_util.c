/*++
 * NAME
 *	check_util.c - helpers shared by the checks: reply templates
 *--*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "action.h"
#include "check.h"
#include "config.h"
#include "check_util.h"
#include "rules.h"
#include "store.h"

#define SAMPLE	"user@example.com"	/* stands in for every %X at load time */
#define EXPAND_VALUE_MAX 400			/* bytes of one substituted value */

/* check_expand - expand %X codes of a reply template (see check.h) */
size_t
check_expand(char *buf, size_t len, const char *tmpl, const char *codes,
    const char *const *vals)
{
	size_t	o = 0, n;
	const char *v, *c;

	if (len == 0)
		return 0;
	for (; *tmpl != '\0' && o + 1 < len; tmpl++) {
		if (*tmpl == '%' && tmpl[1] == '%') {
			buf[o++] = '%';
			tmpl++;
			continue;
		}
		if (*tmpl != '%' || tmpl[1] == '\0'
		    || (c = strchr(codes, tmpl[1])) == NULL) {
			buf[o++] = (unsigned char)*tmpl < 0x20 || *tmpl == 0x7f ?
			    '?' : *tmpl;
			continue;
		}
		tmpl++;
		v = vals[c - codes] ? vals[c - codes] : "";
		n = strlen(v);
		if (n > EXPAND_VALUE_MAX) {
			/* cut at 400 bytes, not inside a UTF-8 sequence */
			n = EXPAND_VALUE_MAX;
			while (n > 0 && ((unsigned char)v[n] & 0xc0) == 0x80)
				n--;
		}
		for (size_t i = 0; i < n && o + 1 < len; i++) {
			unsigned char ch = (unsigned char)v[i];

			buf[o++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
		}
	}
	buf[o] = '\0';
	return o;
}

/* check_template - an optional reply template option, checked as an action */
int
check_template(const config_setting_t *rs, const char *name, const char *def,
    const char *codes, char **out, const struct config *c, char *err,
    size_t errlen)
{
	const config_setting_t *s = config_setting_get_member(rs, name);
	const char *t = def, *vals[8] = { SAMPLE, SAMPLE, SAMPLE, SAMPLE,
	    SAMPLE, SAMPLE, SAMPLE, SAMPLE };
	char	buf[EVAL_TEXT], why[256];
	int	line = config_setting_source_line(rs);

	if (s != NULL) {
		line = config_setting_source_line(s);
		if ((t = config_setting_get_string(s)) == NULL) {
			snprintf(err, errlen, "%s:%d: %s: expected a string",
			    c->path, line, name);
			return -1;
		}
	}
	if (strlen(t) > 400) {
		snprintf(err, errlen, "%s:%d: %s: longer than 400 characters",
		    c->path, line, name);
		return -1;
	}
	check_expand(buf, sizeof(buf), t, codes, vals);
	if (action_parse(buf, why, sizeof(why)) == ACT_INVALID) {
		snprintf(err, errlen, "%s:%d: %s: invalid action \"%s\": %s",
		    c->path, line, name, t, why);
		return -1;
	}
	if ((*out = strdup(t)) == NULL) {
		snprintf(err, errlen, "%s:%d: out of memory", c->path, line);
		return -1;
	}
	return 0;
}

/* check_skipped - the clients a DNS check leaves alone (check_util.h) */
int
check_skipped(struct eval *ev, int skip_auth, const struct cidrmap *skip,
    const char *what)
{
	const char *why = NULL;
	char	d[160];

	if (skip_auth && ev->req->len[A_SASL_USERNAME] > 0)
		why = "authenticated client";
	else if (!ev->client_ip_ok)
		why = "no valid client_address";
	else if (cidrmap_lookup(skip, &ev->client_ip) != NULL)
		why = "client in skip_networks";
	if (why == NULL)
		return 0;
	snprintf(d, sizeof(d), "%s: %s", why, what);
	eval_check_done(ev, CHECK_NOMATCH, NULL, d);
	return 1;
}

/* check_mono_ms - a monotonic clock in milliseconds (check_util.h) */
long long
check_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* check_put_dec - v in decimal into buf (check_util.h) */
size_t
check_put_dec(char *buf, long long v)
{
	char	tmp[24];
	size_t	n = 0, o = 0;
	unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v :
	    (unsigned long long)v;

	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		buf[o++] = '-';
	while (n > 0)
		buf[o++] = tmp[--n];
	buf[o] = '\0';
	return o;
}

/* check_script_error - why a script's one-integer answer is unusable */
const char *
check_script_error(const struct store_reply *r, const char *script,
    char *buf, size_t len)
{
	if (!r->ok)
		return r->err;
	if (r->n == 1 && r->v[0] >= 0)
		return NULL;
	/* -1: the script failed on this key alone (Redis's log says why) */
	snprintf(buf, len, r->n == 1 && r->v[0] == -1 ? "%s script failed "
	    "on this key (the Redis log says why)" :
	    "unexpected reply from %s script", script);
	return buf;
}

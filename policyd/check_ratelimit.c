/*++
 * NAME
 *	check_ratelimit.c - named rate limits, exact across instances
 * DESCRIPTION
 *	A rule names a key (one or more of sasl_username, sender,
 *	sender_domain, client_address, client_network, recipient,
 *	recipient_domain), what to count (recipients at RCPT; messages or
 *	bytes at END-OF-MESSAGE) and up to RL_MAX_WIN windows "LIMIT per
 *	SECONDS". Every decision is one call of ratelimit.lua, which
 *	checks every window and charges all of them only when all allow
 *	(GCRA: see the script), so limits hold exactly with any number of
 *	policyd instances on one Redis. A refused request charges nothing.
 *	The decisions of one loop turn go to Redis as one EVALSHA
 *	(store_script_batched: the script's fixed cost is paid once); the
 *	script takes them in order, each atomic as before.
 *	For up to 10 s an instance remembers a key's expiry and a login's
 *	known client networks, so that the script can skip PEXPIRE and
 *	SISMEMBER (struct rl_known); no answer depends on it.
 *	Keys, both with the same Redis Cluster hash tag:
 *
 *		PREFIX r{TAG}	hash: per window its TAT, and the notify mark
 *		PREFIX n{TAG}	set of client networks (max_networks only)
 *
 *	TAG is 16 hex digits of addr_hash64(rule name NUL key text): keys
 *	have a fixed small size whatever the addresses.
 *
 *	Overrides: a file of "KEY  LIMIT/SECONDS[, LIMIT/SECONDS...]",
 *	"KEY  N" (N replaces the limit of every window of the rule) or
 *	"KEY  unlimited". SECONDS may end in s, m, h or d. A login without
 *	an entry of its own inherits the entry of "@its.domain", then the
 *	rule's windows (login > domain > global). overrides = "pgsql:FILE"
 *	or "mysql:FILE" asks the same two keys of an SQL table (table.h)
 *	before charging; a value that does not parse or a table error
 *	answers on_error; a refund uses the cached override (none when it
 *	has left the cache).
 *
 *	When the final answer of the evaluation is a refusal by a later
 *	rule, undo() refunds what run() charged (check.h).
 *--*/
#include <sys/types.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "ratelimit.h"
#include "check_util.h"
#include "rules.h"
#include "table.h"
#include "store.h"

#define RL_MAX_PARTS	7
#define RL_PART_MAX	256		/* longer values are hashed */
/* every part escaped at worst (3 bytes a byte) plus its separator */
#define RL_KEY_MAX	(RL_MAX_PARTS * (3 * RL_PART_MAX + 1) + 1)
#define RL_MAX_CHILDREN	16

enum rl_part {
	RLP_SASL, RLP_SENDER, RLP_SENDER_DOMAIN, RLP_CLIENT_ADDRESS,
	RLP_CLIENT_NETWORK, RLP_RECIPIENT, RLP_RECIPIENT_DOMAIN
};

static const char *const part_names[] = {
	"sasl_username", "sender", "sender_domain", "client_address",
	"client_network", "recipient", "recipient_domain", NULL
};

enum rl_count { RLC_RECIPIENTS, RLC_MESSAGES, RLC_BYTES };

static const char *const count_names[] = {
	"recipients", "messages", "bytes", NULL
};

struct ratelimit {
	char	*rule;			/* rule name: part of the key */
	int	parts[RL_MAX_PARTS];
	int	nparts;
	int	count;
	struct rl_window win[RL_MAX_WIN];
	int	nwin;
	struct map *overrides;		/* key -> window text (validated) */
	struct table *otable;		/* overrides = "pgsql:FILE" / "mysql:" */
	char	*word;			/* "DEFER_IF_PERMIT 4.7.1", "HOLD" */
	char	*oversize;		/* when one request exceeds a whole
					 * window: "552 5.3.4", "550 5.7.1" */
	char	*reply;			/* template: %k %l %u %w %r */
	int	max_networks, networks_window;
	char	*networks_action;	/* template: %k %c %w */
	int	v4prefix, v6prefix;
	char	**notify;		/* argv, NULL-ended, or NULL */
	struct rl_known *known;		/* mutable behind the const rule */
};

static const char *const ratelimit_keys[] = {
	"key", "count", "windows", "overrides", "exceeded_action", "reply",
	"max_networks", "networks_window", "networks_action", "ipv4_prefix",
	"ipv6_prefix", "notify_command", "oversize_action", NULL
};

#define DEF_REPLY	"Rate limit exceeded for %k: %l %u per %w; " \
			"try again in %r seconds"
#define DEF_NETWORKS	"HOLD Compromised account suspected: %k seen from " \
			"%c client networks in %w"


/* name_index - position of name in a NULL-ended list, or -1 */
static int
name_index(const char *const *names, const char *name)
{
	for (int i = 0; names[i] != NULL; i++)
		if (strcmp(names[i], name) == 0)
			return i;
	return -1;
}

/* parse_seconds - "3600", "60s", "5m", "1h", "1d"; -1 when invalid */
static long long
parse_seconds(const char *s, const char **end)
{
	long long v = 0;
	const char *p = s;

	if (!isdigit((unsigned char)*p))
		return -1;
	while (isdigit((unsigned char)*p)) {
		if (v > 100000000)
			return -1;
		v = v * 10 + (*p++ - '0');
	}
	switch (*p) {
	case 's': p++; break;
	case 'm': v *= 60; p++; break;
	case 'h': v *= 3600; p++; break;
	case 'd': v *= 86400; p++; break;
	default: break;
	}
	*end = p;
	return v;
}

/* parse_limit - a non-negative count up to 2^50; -1 when invalid */
static long long
parse_limit(const char *s, const char **end)
{
	long long v = 0;
	const char *p = s;

	if (!isdigit((unsigned char)*p))
		return -1;
	while (isdigit((unsigned char)*p)) {
		if (v > (1LL << 50) / 10)
			return -1;
		v = v * 10 + (*p++ - '0');
	}
	*end = p;
	return v;
}

/*
 * ratelimit_parse_windows - an override value: "unlimited" (returns 1),
 * "N" (every window of def with limit N), or "L/S[, L/S...]". Returns
 * 0, 1, or -1 with a reason in err.
 */
int
ratelimit_parse_windows(const char *s, const struct rl_window *def, int ndef,
    struct rl_window *out, int *nout, char *err, size_t errlen)
{
	const char *p = s, *e;
	long long l, sec;

	*nout = 0;
	while (*p == ' ' || *p == '\t')
		p++;
	if (strncasecmp(p, "unlimited", 9) == 0 && p[9 + strspn(p + 9,
	    " \t")] == '\0')
		return 1;
	for (;;) {
		if ((l = parse_limit(p, &e)) < 0) {
			snprintf(err, errlen, "expected LIMIT/SECONDS, a number "
			    "or \"unlimited\", got \"%.40s\"", p);
			return -1;
		}
		p = e;
		if (*p != '/') {
			/* a plain number: the rule's windows with this limit */
			while (*p == ' ' || *p == '\t')
				p++;
			if (*nout > 0 || *p != '\0') {
				snprintf(err, errlen, "expected LIMIT/SECONDS "
				    "after \"%lld\"", l);
				return -1;
			}
			for (int i = 0; i < ndef; i++) {
				out[i].limit = l;
				out[i].seconds = def[i].seconds;
			}
			*nout = ndef;
			return 0;
		}
		if ((sec = parse_seconds(p + 1, &e)) <= 0) {
			snprintf(err, errlen, "bad window length after \"%lld/\" "
			    "(seconds, or a number with s, m, h, d)", l);
			return -1;
		}
		if (*nout >= RL_MAX_WIN) {
			snprintf(err, errlen, "more than %d windows", RL_MAX_WIN);
			return -1;
		}
		out[*nout].limit = l;
		out[*nout].seconds = sec;
		(*nout)++;
		p = e;
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (*p == '\0')
			return 0;
	}
}

/* ratelimit_window_text - 60 "minute", 7200 "2 hours", 45 "45 seconds" */
int
ratelimit_window_text(long long seconds, char *buf, size_t len)
{
	static const struct {
		long long n;
		const char *one;
	} units[] = { { 86400, "day" }, { 3600, "hour" }, { 60, "minute" } };

	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (seconds % units[i].n != 0)
			continue;
		if (seconds == units[i].n)
			return snprintf(buf, len, "%s", units[i].one);
		return snprintf(buf, len, "%lld %ss", seconds / units[i].n,
		    units[i].one);
	}
	return snprintf(buf, len, "%lld second%s", seconds,
	    seconds == 1 ? "" : "s");
}

/* ratelimit_tag - the hash tag of a rule's key (keyed: see ratelimit.h) */
uint64_t
ratelimit_tag(const uint8_t secret[16], const char *rule, const char *key)
{
	size_t	rl = strlen(rule), kl = strlen(key);
	char	buf[RL_KEY_MAX + 256];

	if (rl > 255)
		rl = 255;
	if (kl > RL_KEY_MAX)
		kl = RL_KEY_MAX;
	memcpy(buf, rule, rl);
	buf[rl] = '\0';
	memcpy(buf + rl + 1, key, kl);
	return addr_siphash(secret, buf, rl + 1 + kl);
}

/*
 * put_part - append one part to the key text. Parts are joined with '|';
 * a '|' or '%' inside a value is written %7c / %25 and a leading '#' %23,
 * so that no value can pass for two parts or for a hashed one. A value
 * longer than RL_PART_MAX becomes '#' and its keyed hash (of the whole
 * value: two long values differ in their hash wherever they differ).
 */
static int
put_part(char *buf, size_t len, size_t *o, const char *v, size_t vl,
    const uint8_t *secret)
{
	char	tmp[24];
	size_t	need = 0;

	if (vl > RL_PART_MAX) {
		vl = (size_t)snprintf(tmp, sizeof(tmp), "#%016" PRIx64,
		    addr_siphash(secret, v, vl));
		v = tmp;
		if (*o + vl + 2 > len)
			return -1;
		if (*o > 0)
			buf[(*o)++] = '|';
		memcpy(buf + *o, v, vl);
		*o += vl;
		buf[*o] = '\0';
		return 0;
	}
	for (size_t i = 0; i < vl; i++)
		need += (v[i] == '|' || v[i] == '%' || (i == 0 && v[i] == '#'))
		    ? 3 : 1;
	if (*o + need + 2 > len)
		return -1;
	if (*o > 0)
		buf[(*o)++] = '|';
	for (size_t i = 0; i < vl; i++) {
		if (v[i] == '|' || v[i] == '%' || (i == 0 && v[i] == '#')) {
			snprintf(buf + *o, 4, "%%%02x", (unsigned char)v[i]);
			*o += 3;
		} else {
			buf[(*o)++] = v[i];
		}
	}
	buf[*o] = '\0';
	return 0;
}

/* canon_addr - lowercase, +extension removed (buf holds vl + 1 bytes) */
static int
canon_addr(const char *v, size_t vl, char *buf, size_t len)
{
	int	n = addr_canon(v, '+', buf, len);

	if (n < 0) {
		n = (int)(vl < len - 1 ? vl : len - 1);
		memcpy(buf, v, n);
		buf[n] = '\0';
		addr_lower(buf);
	}
	return n;
}

/*
 * ratelimit_key_text - the key of a request: parts joined with '|' (see
 * put_part). Every value is used whole, whatever its length. Returns the
 * length, or -1 (with why) when a part is missing.
 */
int
ratelimit_key_text(const uint8_t secret[16], const int *parts, int nparts,
    int v4prefix, int v6prefix, const struct policy_req *q, char *buf,
    size_t len, char *why, size_t whylen)
{
	char	stackv[1100], *v = stackv;
	const char *d;
	size_t	o = 0, vcap = sizeof(stackv), need = 0;
	struct ipaddr ip;
	int	n, ipok, rc = -1;

	buf[0] = '\0';
	/* room for the longest value a part may take, on the heap if long */
	need = q->len[A_SASL_USERNAME];
	if (q->len[A_SENDER] > need)
		need = q->len[A_SENDER];
	if (q->len[A_RECIPIENT] > need)
		need = q->len[A_RECIPIENT];
	if (need + 1 > vcap) {
		if ((v = malloc(need + 1)) == NULL) {
			snprintf(why, whylen, "out of memory");
			return -1;
		}
		vcap = need + 1;
	}
	ipok = q->len[A_CLIENT_ADDRESS] < 64 &&
	    addr_ip_parse(q->v[A_CLIENT_ADDRESS], &ip) == 0;
	for (int i = 0; i < nparts; i++) {
		const char *val = v;

		switch (parts[i]) {
		case RLP_SASL:
			if (q->len[A_SASL_USERNAME] == 0) {
				snprintf(why, whylen, "no sasl_username");
				goto out;
			}
			/* a login keeps its +extension: it is a name */
			n = (int)q->len[A_SASL_USERNAME];
			memcpy(v, q->v[A_SASL_USERNAME], n);
			v[n] = '\0';
			addr_lower(v);
			break;
		case RLP_SENDER:
		case RLP_SENDER_DOMAIN:
			if (q->len[A_SENDER] == 0) {
				n = snprintf(v, vcap, "<>");
				break;
			}
			n = canon_addr(q->v[A_SENDER], q->len[A_SENDER], v,
			    vcap);
			if (parts[i] == RLP_SENDER_DOMAIN) {
				d = addr_domain(v);
				val = d ? d : "<>";
				n = (int)strlen(val);
			}
			break;
		case RLP_RECIPIENT:
		case RLP_RECIPIENT_DOMAIN:
			if (q->len[A_RECIPIENT] == 0) {
				snprintf(why, whylen, "no recipient");
				goto out;
			}
			n = canon_addr(q->v[A_RECIPIENT], q->len[A_RECIPIENT],
			    v, vcap);
			if (parts[i] == RLP_RECIPIENT_DOMAIN) {
				d = addr_domain(v);
				val = d ? d : v;
				n = (int)strlen(val);
			}
			break;
		case RLP_CLIENT_ADDRESS:
		case RLP_CLIENT_NETWORK:
			if (q->len[A_CLIENT_ADDRESS] == 0) {
				snprintf(why, whylen, "no client_address");
				goto out;
			}
			if (!ipok) {
				/* not an address: its raw value (hashed if long) */
				val = q->v[A_CLIENT_ADDRESS];
				n = (int)q->len[A_CLIENT_ADDRESS];
				break;
			}
			if (parts[i] == RLP_CLIENT_NETWORK) {
				struct ipaddr m = ip;
				int	pl = ip.family == AF_INET ? v4prefix :
				    v6prefix;
				char	a[64];

				addr_ip_mask(&m, pl);
				addr_ip_format(&m, a, sizeof(a));
				n = snprintf(v, vcap, "%s/%d", a, pl);
			} else {
				n = addr_ip_format(&ip, v, vcap);
			}
			break;
		default:
			snprintf(why, whylen, "unknown key part");
			goto out;
		}
		if (n < 0 || put_part(buf, len, &o, val, (size_t)n,
		    secret) < 0) {
			snprintf(why, whylen, "key too long");
			goto out;
		}
	}
	rc = (int)o;
out:
	if (v != stackv)
		free(v);
	return rc;
}

/* ------------------------------------------------------ configuration */

/* "file:line: message"; a prefix longer than err (a long path) is cut */
#define RLERR(set, ...) do { \
	int n_ = snprintf(err, errlen, "%s:%d: ", c->path, \
	    config_setting_source_line(set)); \
	if (n_ >= 0 && (size_t)n_ < errlen) \
		snprintf(err + n_, errlen - (size_t)n_, __VA_ARGS__); \
} while (0)

/* rl_int - an optional integer option with bounds */
static int
rl_int(const config_setting_t *rs, const char *name, int def, int min, int max,
    int *out, const struct config *c, char *err, size_t errlen)
{
	const config_setting_t *s = config_setting_get_member(rs, name);

	*out = def;
	if (s == NULL)
		return 0;
	if (config_setting_type(s) != CONFIG_TYPE_INT) {
		RLERR(s, "%s: expected an integer", name);
		return -1;
	}
	*out = config_setting_get_int(s);
	if (*out < min || *out > max) {
		RLERR(s, "%s: %d is out of range %d..%d", name, *out, min, max);
		return -1;
	}
	return 0;
}

/* rl_string - an optional string option */
static int
rl_string(const config_setting_t *rs, const char *name, const char *def,
    char **out, const struct config *c, char *err, size_t errlen)
{
	const config_setting_t *s = config_setting_get_member(rs, name);

	*out = NULL;
	if (s == NULL) {
		if (def != NULL && (*out = strdup(def)) == NULL)
			fatalx("out of memory");
		return 0;
	}
	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		RLERR(s, "%s: expected a string", name);
		return -1;
	}
	if ((*out = strdup(config_setting_get_string(s))) == NULL)
		fatalx("out of memory");
	return 0;
}

/* rl_key - "key": a part name or a list of them */
static int
rl_key(struct ratelimit *rl, const config_setting_t *rs,
    const struct config *c, char *err, size_t errlen)
{
	const config_setting_t *s = config_setting_get_member(rs, "key");
	int	n;

	if (s == NULL) {
		RLERR(rs, "ratelimit: key is required (one or a list of: "
		    "sasl_username, sender, sender_domain, client_address, "
		    "client_network, recipient, recipient_domain)");
		return -1;
	}
	n = config_setting_type(s) == CONFIG_TYPE_STRING ? 1 :
	    config_setting_length(s);
	if (n < 1 || n > RL_MAX_PARTS) {
		RLERR(s, "key: expected 1 to %d parts", RL_MAX_PARTS);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_type(s) ==
		    CONFIG_TYPE_STRING ? s : config_setting_get_elem(s, i);
		const char *v = config_setting_get_string(e);
		int	p = v ? name_index(part_names, v) : -1;

		if (p < 0) {
			RLERR(e, "key: unknown part \"%s\" (sasl_username, "
			    "sender, sender_domain, client_address, "
			    "client_network, recipient, recipient_domain)",
			    v ? v : "?");
			return -1;
		}
		for (int j = 0; j < rl->nparts; j++)
			if (rl->parts[j] == p) {
				RLERR(e, "key: \"%s\" given twice", v);
				return -1;
			}
		rl->parts[rl->nparts++] = p;
	}
	return 0;
}

/* rl_windows - "windows": ( { limit = N; seconds = S; }, ... ) */
static int
rl_windows(struct ratelimit *rl, const config_setting_t *rs,
    const struct config *c, char *err, size_t errlen)
{
	const config_setting_t *s = config_setting_get_member(rs, "windows");

	if (s == NULL) {
		RLERR(rs, "ratelimit: windows = ( { limit = N; seconds = S; }"
		    " ) is required");
		return -1;
	}
	if ((config_setting_type(s) != CONFIG_TYPE_LIST &&
	    config_setting_type(s) != CONFIG_TYPE_GROUP) ||
	    config_setting_length(s) < 1 ||
	    config_setting_length(s) > RL_MAX_WIN) {
		RLERR(s, "windows: expected a list of 1 to %d groups "
		    "( { limit = N; seconds = S; }, ... )", RL_MAX_WIN);
		return -1;
	}
	for (int i = 0; i < config_setting_length(s); i++) {
		const config_setting_t *w = config_setting_type(s) ==
		    CONFIG_TYPE_GROUP ? s : config_setting_get_elem(s, i);
		long long l, sec;

		if (config_setting_type(w) != CONFIG_TYPE_GROUP ||
		    !config_setting_lookup_int64(w, "limit", &l) ||
		    !config_setting_lookup_int64(w, "seconds", &sec)) {
			RLERR(w, "windows: each window is { limit = N; "
			    "seconds = S; }");
			return -1;
		}
		if (config_setting_length(w) != 2) {
			RLERR(w, "windows: a window has only limit and seconds");
			return -1;
		}
		if (l < 0 || l > (1LL << 50) || sec < 1 || sec > 86400 * 366) {
			RLERR(w, "windows: limit 0..2^50 and seconds 1..31622400 "
			    "(got %lld per %lld)", l, sec);
			return -1;
		}
		for (int j = 0; j < rl->nwin; j++)
			if (rl->win[j].seconds == sec) {
				RLERR(w, "windows: two windows of %lld seconds",
				    sec);
				return -1;
			}
		rl->win[rl->nwin].limit = l;
		rl->win[rl->nwin].seconds = sec;
		rl->nwin++;
		if (config_setting_type(s) == CONFIG_TYPE_GROUP)
			break;
	}
	return 0;
}

/* rl_overrides - load and validate the overrides file */
static int
rl_overrides(struct ratelimit *rl, const char *file, const struct config *c,
    char *err, size_t errlen)
{
	char	path[4096], line[4096], why[256];
	struct rl_window w[RL_MAX_WIN];
	FILE	*fp;
	int	lineno = 0, nw, rc = 0;

	config_path(c, file, path, sizeof(path));
	if ((fp = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if ((rl->overrides = map_new()) == NULL)
		fatalx("out of memory");
	while (fgets(line, sizeof(line), fp) != NULL) {
		char   *k, *v, *end;

		lineno++;
		if (strchr(line, '\n') == NULL && !feof(fp)) {
			snprintf(err, errlen, "%s:%d: line too long", path,
			    lineno);
			rc = -1;
			break;
		}
		line[strcspn(line, "\r\n")] = '\0';
		k = line + strspn(line, " \t");
		if (*k == '#' || *k == '\0')
			continue;
		v = k + strcspn(k, " \t");
		if (*v != '\0')
			*v++ = '\0';
		v += strspn(v, " \t");
		end = v + strlen(v);
		while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (*v == '\0') {
			snprintf(err, errlen, "%s:%d: \"%s\": no value (LIMIT/"
			    "SECONDS, a number or \"unlimited\")", path, lineno,
			    k);
			rc = -1;
			break;
		}
		if (ratelimit_parse_windows(v, rl->win, rl->nwin, w, &nw, why,
		    sizeof(why)) < 0) {
			snprintf(err, errlen, "%s:%d: %s", path, lineno, why);
			rc = -1;
			break;
		}
		for (int i = 0; i < nw; i++)
			if (w[i].limit > (1LL << 50) || w[i].seconds >
			    86400 * 366) {
				snprintf(err, errlen, "%s:%d: window out of "
				    "range", path, lineno);
				rc = -1;
			}
		addr_lower(k);
		if (rc == 0 && map_put(rl->overrides, k, v) < 0) {
			snprintf(err, errlen, "%s:%d: bad entry", path, lineno);
			rc = -1;
		}
		if (rc < 0)
			break;
	}
	fclose(fp);
	return rc;
}

/* rl_overrides_sql - overrides from an SQL table (values checked per lookup) */
static int
rl_overrides_sql(struct ratelimit *rl, const char *spec,
    const config_setting_t *s, const struct config *c, char *err,
    size_t errlen)
{
	char	path[4096], msg[4400];

	config_path(c, spec + 6, path, sizeof(path));
	if ((rl->otable = table_open(spec, path, 0, msg, sizeof(msg))) ==
	    NULL) {
		snprintf(err, errlen, "%s:%d: overrides: %s", c->path,
		    config_setting_source_line(s), msg);
		return -1;
	}
	return 0;
}

/* rl_notify - "notify_command": a string (the program) or a list (argv) */
static int
rl_notify(struct ratelimit *rl, const config_setting_t *rs,
    const struct config *c, char *err, size_t errlen)
{
	const config_setting_t *s = config_setting_get_member(rs,
	    "notify_command");
	int	n;

	if (s == NULL)
		return 0;
	n = config_setting_type(s) == CONFIG_TYPE_STRING ? 1 :
	    config_setting_length(s);
	if (n < 1 || n > 16) {
		RLERR(s, "notify_command: expected a program, or a list of "
		    "1 to 16 strings (program and arguments)");
		return -1;
	}
	if ((rl->notify = calloc(n + 1, sizeof(char *))) == NULL)
		fatalx("out of memory");
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_type(s) ==
		    CONFIG_TYPE_STRING ? s : config_setting_get_elem(s, i);
		const char *v = config_setting_get_string(e);

		if (v == NULL || (i == 0 && v[0] != '/')) {
			RLERR(e, "notify_command: expected strings, the first "
			    "an absolute path (no shell is used)");
			return -1;
		}
		if ((rl->notify[i] = strdup(v)) == NULL)
			fatalx("out of memory");
	}
	return 0;
}

/* rl_states - the rule's protocol_state bits (RCPT when not given) */
static unsigned
rl_states(const config_setting_t *rs)
{
	const config_setting_t *m = config_setting_get_member(rs, "match");
	const config_setting_t *s;
	unsigned bits = 0;

	if (m == NULL || (s = config_setting_get_member(m, "protocol_state"))
	    == NULL)
		return STATE_RCPT;
	if (config_setting_type(s) == CONFIG_TYPE_STRING)
		return rules_state_bit(config_setting_get_string(s));
	for (int i = 0; i < config_setting_length(s); i++) {
		const char *v = config_setting_get_string(
		    config_setting_get_elem(s, i));

		if (v != NULL)
			bits |= rules_state_bit(v);
	}
	return bits;
}

/* ratelimit_free - release the options */
static void
ratelimit_free(void *priv)
{
	struct ratelimit *rl = priv;

	if (rl == NULL)
		return;
	free(rl->rule);
	free(rl->oversize);
	if (rl->overrides)
		map_free(rl->overrides);
	table_unref(rl->otable);
	free(rl->word);
	free(rl->reply);
	free(rl->networks_action);
	for (int i = 0; rl->notify && rl->notify[i]; i++)
		free(rl->notify[i]);
	free(rl->notify);
	free(rl->known);
	free(rl);
}

/*
 * rl_verb - option name (exceeded_action, oversize_action): a verb with
 * an optional status code; a bare verb gets the enhanced code x.7.1
 * (DEFER, DEFER_IF_PERMIT, REJECT, 4NN, 5NN). def when absent.
 */
static int
rl_verb(const config_setting_t *rs, const char *name, const char *def,
    char **out, const struct config *c, char *err, size_t errlen)
{
	const config_setting_t *s = config_setting_get_member(rs, name);
	const char *v = s ? config_setting_get_string(s) : def;
	char	buf[128], test[256], why[128];
	enum action_kind k;

	if (v == NULL || strlen(v) > 64) {
		RLERR(s, "%s: expected DEFER_IF_PERMIT, DEFER, REJECT, HOLD, "
		    "DISCARD or a 4NN/5NN code", name);
		return -1;
	}
	snprintf(test, sizeof(test), "%s x", v);
	k = action_parse(test, why, sizeof(why));
	if (strchr(v, ' ') == NULL) {
		/* a bare verb: add the enhanced status code */
		if (k == ACT_DEFER || k == ACT_DEFER_IF_PERMIT)
			snprintf(buf, sizeof(buf), "%s 4.7.1", v);
		else if (k == ACT_REJECT)
			snprintf(buf, sizeof(buf), "%s 5.7.1", v);
		else if (k == ACT_CODE)
			snprintf(buf, sizeof(buf), "%s %c.7.1", v, v[0]);
		else
			snprintf(buf, sizeof(buf), "%s", v);
	} else {
		snprintf(buf, sizeof(buf), "%s", v);
	}
	switch (k) {
	case ACT_DEFER:
	case ACT_DEFER_IF_PERMIT:
	case ACT_REJECT:
	case ACT_CODE:
	case ACT_HOLD:
	case ACT_DISCARD:
		break;
	default:
		RLERR(s, "%s: \"%s\": expected DEFER_IF_PERMIT, DEFER, "
		    "REJECT, HOLD, DISCARD or a 4NN/5NN code", name, v);
		return -1;
	}
	if ((*out = strdup(buf)) == NULL)
		fatalx("out of memory");
	return 0;
}

/* ratelimit_compile - read the rule's options */
static int
ratelimit_compile(const config_setting_t *rs, const struct config *c,
    void **priv, char *err, size_t errlen)
{
	struct ratelimit *rl = calloc(1, sizeof(*rl));
	const config_setting_t *s;
	const char *name, *ov = NULL;
	unsigned states, need;

	if (rl == NULL)
		return -1;
	/*
	 * The name is part of every Redis key of the rule: two rules must
	 * never share counters, and a counter must not move when rules are
	 * inserted above it (a position-based default name would).
	 */
	if (!config_setting_lookup_string(rs, "name", &name) || *name == '\0') {
		RLERR(rs, "ratelimit: a ratelimit rule needs a name (it is "
		    "part of the rule's Redis keys, so two rules never share "
		    "a counter)");
		free(rl);
		return -1;
	}
	if ((rl->rule = strdup(name)) == NULL)
		fatalx("out of memory");
	if ((s = config_setting_get_member(rs, "count")) != NULL) {
		const char *v = config_setting_get_string(s);

		if (v == NULL || (rl->count = name_index(count_names, v)) < 0) {
			RLERR(s, "count: expected \"recipients\", \"messages\" "
			    "or \"bytes\"");
			goto bad;
		}
	}
	states = rl_states(rs);
	need = rl->count == RLC_RECIPIENTS ? STATE_RCPT : STATE_EOM;
	if (states & ~need) {
		RLERR(rs, "rule \"%s\": count = \"%s\" works only at %s "
		    "(set match.protocol_state = \"%s\")%s", name,
		    count_names[rl->count], need == STATE_RCPT ? "RCPT" :
		    "END-OF-MESSAGE", need == STATE_RCPT ? "RCPT" :
		    "END-OF-MESSAGE", need == STATE_EOM ? ": recipient_count "
		    "and size are known only there" : "");
		goto bad;
	}
	if (rl_key(rl, rs, c, err, errlen) < 0 ||
	    rl_windows(rl, rs, c, err, errlen) < 0 ||
	    rl_verb(rs, "exceeded_action", "DEFER_IF_PERMIT", &rl->word, c,
	    err, errlen) < 0 ||
	    rl_verb(rs, "oversize_action", rl->count == RLC_BYTES ?
	    "552 5.3.4" : "550 5.7.1", &rl->oversize, c, err, errlen) < 0 ||
	    rl_string(rs, "reply", DEF_REPLY, &rl->reply, c, err, errlen) < 0 ||
	    rl_string(rs, "networks_action", DEF_NETWORKS,
	    &rl->networks_action, c, err, errlen) < 0 ||
	    rl_int(rs, "max_networks", 0, 0, 10000, &rl->max_networks, c, err,
	    errlen) < 0 ||
	    rl_int(rs, "networks_window", 3600, 1, 86400 * 366,
	    &rl->networks_window, c, err, errlen) < 0 ||
	    rl_int(rs, "ipv4_prefix", 24, 8, 32, &rl->v4prefix, c, err,
	    errlen) < 0 ||
	    rl_int(rs, "ipv6_prefix", 64, 16, 128, &rl->v6prefix, c, err,
	    errlen) < 0 ||
	    rl_notify(rl, rs, c, err, errlen) < 0)
		goto bad;
	if (rl->max_networks > 0) {
		char	test[EVAL_TEXT], why[128];
		int	has_login = 0;

		for (int i = 0; i < rl->nparts; i++)
			has_login |= rl->parts[i] == RLP_SASL;
		if (!has_login) {
			RLERR(rs, "rule \"%s\": max_networks counts client "
			    "networks per login: key must contain "
			    "\"sasl_username\"", name);
			goto bad;
		}
		snprintf(test, sizeof(test), "%s", rl->networks_action);
		if (action_parse(test, why, sizeof(why)) == ACT_INVALID) {
			RLERR(config_setting_get_member(rs, "networks_action"),
			    "networks_action: %s", why);
			goto bad;
		}
	}
	if ((s = config_setting_get_member(rs, "overrides")) != NULL) {
		if ((ov = config_setting_get_string(s)) == NULL) {
			RLERR(s, "overrides: expected a file name");
			goto bad;
		}
		if (table_is_sql(ov)) {
			if (rl_overrides_sql(rl, ov, s, c, err, errlen) < 0)
				goto bad;
		} else if (rl_overrides(rl, ov, c, err, errlen) < 0)
			goto bad;
	}
	*priv = rl;
	return 0;
bad:
	ratelimit_free(rl);
	return -1;
}

/* ------------------------------------------------------------ running */

/* notify_reap - collect finished notify commands, never waiting */
static pid_t children[RL_MAX_CHILDREN];

static void
notify_reap(void)
{
	for (int i = 0; i < RL_MAX_CHILDREN; i++)
		if (children[i] > 0 && waitpid(children[i], NULL, WNOHANG) != 0)
			children[i] = 0;
}

/* notify_run - fork/exec the notify command: argv + rule key limit window */
static void
notify_run(const struct ratelimit *rl, const char *key,
    const struct rl_window *w)
{
	char	lim[32], sec[32], *argv[24];
	int	n = 0, slot = -1;
	pid_t	pid;

	notify_reap();
	for (int i = 0; i < RL_MAX_CHILDREN && slot < 0; i++)
		if (children[i] == 0)
			slot = i;
	if (slot < 0) {
		log_warnx("ratelimit: rule %s: %d notify commands still "
		    "running; not starting another", rl->rule, RL_MAX_CHILDREN);
		return;
	}
	snprintf(lim, sizeof(lim), "%lld", w->limit);
	snprintf(sec, sizeof(sec), "%lld", w->seconds);
	for (int i = 0; rl->notify[i] != NULL && n < 17; i++)
		argv[n++] = rl->notify[i];
	argv[n++] = rl->rule;
	argv[n++] = (char *)key;
	argv[n++] = lim;
	argv[n++] = sec;
	argv[n] = NULL;
	if ((pid = fork()) < 0) {
		log_warn("ratelimit: notify fork");
		return;
	}
	if (pid == 0) {
		sigset_t all;
		int	fd;

		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		signal(SIGPIPE, SIG_DFL);
		if ((fd = open("/dev/null", O_RDWR)) >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			if (fd > 2)
				close(fd);
		}
		close_range(3, ~0U, 0);
		execv(argv[0], argv);
		_exit(127);
	}
	children[slot] = pid;
}

struct rl_call {
	struct eval *ev;
	const struct ratelimit *rl;
	struct rl_window win[RL_MAX_WIN];
	int	nwin;
	long long cost;
	uint64_t tag;			/* of the keys */
	uint64_t neth;			/* of the tag and the network, or 0 */
	long long sent_ms, maxt_ms;	/* for what rl_learn() keeps */
	unsigned long epoch;		/* store_epoch() when sent */
	char	key[RL_KEY_MAX];
};

/*
 * rl_windows_for - the windows of a key: override, its domain's, the
 * rule's. domain, when not NULL, is the domain of the request's value (a
 * long value's key text is a hash that has none).
 */
static int
rl_windows_for(const struct ratelimit *rl, const char *key,
    const char *domain, struct rl_window *w, int *nw, char *why,
    size_t whylen)
{
	const char *v = NULL, *d;
	char	err[128], dom[RL_PART_MAX + 2];
	int	rc;

	if (rl->overrides != NULL) {
		if ((v = map_get(rl->overrides, key)) != NULL)
			snprintf(why, whylen, "override %s", key);
		else if (rl->nparts == 1 && (rl->parts[0] == RLP_SASL ||
		    rl->parts[0] == RLP_SENDER || rl->parts[0] ==
		    RLP_RECIPIENT) && ((d = domain) != NULL ||
		    (d = addr_domain(key)) != NULL)) {
			dom[0] = '@';
			text_copy(dom + 1, sizeof(dom) - 1, d);
			if ((v = map_get(rl->overrides, dom)) != NULL)
				snprintf(why, whylen, "override %s", dom);
		}
	}
	if (v == NULL) {
		memcpy(w, rl->win, sizeof(rl->win));
		*nw = rl->nwin;
		text_copy(why, whylen, "rule default");
		return 0;
	}
	rc = ratelimit_parse_windows(v, rl->win, rl->nwin, w, nw, err,
	    sizeof(err));
	return rc < 0 ? 0 : rc;		/* validated at load: never < 0 */
}

/* ratelimit_windows_of - rl_windows_for() for policyctl (ratelimit.h) */
int
ratelimit_windows_of(const void *priv, const char *key, struct rl_window *w,
    int *nw, char *why, size_t whylen)
{
	const struct ratelimit *rl = priv;
	int	rc = rl_windows_for(priv, key, NULL, w, nw, why, whylen);

	if (rl->otable != NULL)
		snprintf(why, whylen, "rule default; overrides are in %s, not "
		    "read here (policyctl map query %s KEY)",
		    table_name(rl->otable), table_name(rl->otable));
	return rc;
}

/* rl_cost - what this request counts */
static long long
rl_cost(const struct ratelimit *rl, const struct policy_req *q)
{
	long long v = 0;

	if (rl->count != RLC_BYTES)
		return 1;
	for (size_t i = 0; i < q->len[A_SIZE] && i < 16; i++) {
		if (!isdigit((unsigned char)q->v[A_SIZE][i]))
			return 0;
		v = v * 10 + (q->v[A_SIZE][i] - '0');
	}
	if (q->len[A_SIZE] >= 16)
		v = 1LL << 50;
	return v;
}

/*
 * The installation's secret for the keyed hashes of the ratelimit keys:
 * made once in Redis (secret.lua, SET NX) and the same for every
 * instance; read again every SECRET_REFRESH seconds so that instances
 * agree again soon after Redis lost it (a flush).
 */
#define SECRET_KEY	"secret"
#define SECRET_REFRESH	60

static struct {
	const struct store *store;	/* whose Redis it is from */
	int	known;
	int	inflight;		/* a refresh is out */
	time_t	fetched;
	uint8_t	key[16];
} secret;

/* secret_candidate - 32 random hex digits, 0 or -1 */
static int
secret_candidate(char *hex)
{
	uint8_t	b[16];
	ssize_t	n = -1;
	int	fd;

	if ((fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC)) >= 0) {
		n = read(fd, b, sizeof(b));
		close(fd);
	}
	if (n != (ssize_t)sizeof(b))
		return -1;
	for (int i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", b[i]);
	return 0;
}

/* ratelimit_secret_decode - secret.lua's answer as 16 bytes; 0 or -1 */
int
ratelimit_secret_decode(const struct store_reply *r, uint8_t key[16])
{
	if (!r->ok || r->n != 4)
		return -1;
	for (int i = 0; i < 4; i++) {
		unsigned long long v = (unsigned long long)r->v[i];

		for (int j = 0; j < 4; j++)
			key[4 * i + j] = (uint8_t)(v >> (24 - 8 * j));
	}
	return 0;
}

/* secret_take - the script's answer into the cache; 0 or -1 */
static int
secret_take(const struct store *st, const struct store_reply *r, time_t now)
{
	uint8_t	key[16];

	if (ratelimit_secret_decode(r, key) < 0)
		return -1;
	if (secret.known && secret.store == st &&
	    memcmp(secret.key, key, sizeof(key)) != 0)
		log_warnx("ratelimit: the key-hash secret in Redis (%s%s) "
		    "changed (Redis lost its data, or another installation "
		    "shares it): rate-limit counters start anew",
		    store_prefix(st), SECRET_KEY);
	memcpy(secret.key, key, sizeof(key));
	secret.store = st;
	secret.known = 1;
	secret.fetched = now;
	return 0;
}

/* secret_ask - run secret.lua */
static void
secret_ask(struct store *st, store_cb *cb, void *arg)
{
	char	hex[33];
	const char *argv[2] = { SECRET_KEY, hex };
	size_t	argvlen[2] = { sizeof(SECRET_KEY) - 1, 32 };

	if (secret_candidate(hex) < 0) {
		struct store_reply r = { .ok = 0,
		    .err = "no random bytes from /dev/urandom" };

		cb(arg, &r);
		return;
	}
	store_script(st, SCRIPT_SECRET, 1, 2, argv, argvlen, cb, arg);
}

/* ratelimit_secret_ask - secret.lua as the check runs it (policyctl) */
void
ratelimit_secret_ask(struct store *st, store_cb *cb, void *arg)
{
	secret_ask(st, cb, arg);
}

/* secret_refreshed - a background refresh came back */
static void
secret_refreshed(void *arg, const struct store_reply *r)
{
	struct store *st = arg;

	secret.inflight = 0;
	if (secret.store == st && secret_take(st, r, time(NULL)) < 0 &&
	    !r->ok)
		log_debug("ratelimit: refreshing the key-hash secret: %s",
		    r->err);
}

/* rl_call_new - key, windows and cost of a request; NULL: not limited */
static struct rl_call *
rl_call_new(const struct ratelimit *rl, struct eval *ev, char *why,
    size_t whylen)
{
	/* not zeroed: the key alone is several KiB, and all is set here */
	struct rl_call *k = malloc(sizeof(*k));
	const char *d = NULL;
	char	dom[RL_PART_MAX + 2];

	if (k == NULL)
		fatalx("out of memory");
	k->ev = ev;
	k->rl = rl;
	k->nwin = 0;
	k->cost = 0;
	k->key[0] = '\0';
	if (ratelimit_key_text(secret.key, rl->parts, rl->nparts,
	    rl->v4prefix, rl->v6prefix, ev->req, k->key, sizeof(k->key), why,
	    whylen) < 0) {
		free(k);
		return NULL;
	}
	if (rl->nparts == 1) {
		int	a = rl->parts[0] == RLP_SASL ? A_SASL_USERNAME :
		    rl->parts[0] == RLP_SENDER ? A_SENDER :
		    rl->parts[0] == RLP_RECIPIENT ? A_RECIPIENT : -1;

		if (a >= 0 && (d = addr_domain(ev->req->v[a])) != NULL &&
		    strlen(d) < sizeof(dom)) {
			text_copy(dom, sizeof(dom), d);
			addr_lower(dom);
			d = dom;
		} else {
			d = NULL;
		}
	}
	if (rl_windows_for(rl, k->key, d, k->win, &k->nwin, why,
	    whylen) == 1) {
		free(k);
		return NULL;		/* unlimited */
	}
	k->cost = rl_cost(rl, ev->req);
	return k;
}

/*
 * What this instance knows for a while (RL_KNOWN_USE ms at most), kept
 * per compiled rule (a reload may change the windows), direct-mapped:
 *
 * A key's expiry. Every charge used to end with PEXPIRE (the longest
 * window), a write that costs Redis more than the decision. The expiry
 * only ever moves forward (each PEXPIRE sets now + the longest window; a
 * DEL is seen by HSET adding a field), so after this instance saw one
 * done it knows a lower bound of the expiry; it passes how long the key
 * surely lives, and the script skips PEXPIRE when every new TAT falls
 * within that.
 *
 * A client network in a login's networks set, until a second before the
 * set expires (sets lose no member before that): the script need not
 * look it up (SISMEMBER); it still counts the set (SCARD), so a login
 * that exceeds max_networks is held at once. (policyctl ratelimit reset
 * deletes the set: for up to RL_KNOWN_USE ms this instance may still
 * take such a network as counted.)
 *
 * Both hold only for the Redis data they were learned from: after a new
 * connection (store_epoch()) the server may hold older data (a restart
 * from a snapshot, a failover to a replica that missed the last writes:
 * a key expiring sooner, a set without the network), so they are
 * forgotten.
 */
#define RL_KNOWN_SLOTS	16384
#define RL_KNOWN_USE	10000

struct rl_known {
	struct {
		uint64_t h;
		long long at_ms, until_ms;
		unsigned long epoch;
	} e[RL_KNOWN_SLOTS];
};

/* rl_known_ms - how long h holds from now (at epoch), 0 when unknown */
static long long
rl_known_ms(const struct ratelimit *rl, uint64_t h, long long now,
    unsigned long epoch)
{
	const struct rl_known *x = rl->known;
	size_t	i = (size_t)(h & (RL_KNOWN_SLOTS - 1));

	if (x == NULL || h == 0 || x->e[i].h != h || now - x->e[i].at_ms >
	    RL_KNOWN_USE || x->e[i].until_ms <= now ||
	    x->e[i].epoch != epoch)
		return 0;
	return x->e[i].until_ms - now;
}

/*
 * rl_learn - h holds until until_ms (learned from a call sent at at_ms,
 * at epoch)
 */
static void
rl_learn(const struct ratelimit *rl, uint64_t h, long long at_ms,
    long long until_ms, unsigned long epoch)
{
	struct ratelimit *m = (struct ratelimit *)rl;
	size_t	i = (size_t)(h & (RL_KNOWN_SLOTS - 1));

	if (h == 0 || until_ms <= at_ms)
		return;
	if (m->known == NULL &&
	    (m->known = calloc(1, sizeof(*m->known))) == NULL)
		return;
	m->known->e[i].h = h;
	m->known->e[i].at_ms = at_ms;
	m->known->e[i].until_ms = until_ms;
	m->known->e[i].epoch = epoch;
}

/* put_be - n bytes of v, big-endian */
static unsigned char *
put_be(unsigned char *p, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--)
		*p++ = (unsigned char)(v >> (8 * i));
	return p;
}

/* put_double - a double, big-endian (struct.unpack's ">d") */
static unsigned char *
put_double(unsigned char *p, double d)
{
	uint64_t v;

	memcpy(&v, &d, sizeof(v));
	return put_be(p, v, 8);
}

/*
 * rl_send - one script call for k in mode (1 charge, 2 refund), in the
 * script's packed form (see ratelimit.lua)
 */
static void
rl_send(struct rl_call *k, struct eval *ev, int mode, store_cb *cb, void *arg)
{
	const struct ratelimit *rl = k->rl;
	char	rkey[24], nkey[24], secs[RL_MAX_WIN][24], net[64];
	unsigned char nums[2 + 24 + 16 * RL_MAX_WIN + 9], *p = nums;
	long long maxs = 0;
	const char *argv[4 + RL_MAX_WIN];
	size_t	argvlen[4 + RL_MAX_WIN];
	uint64_t tag = ratelimit_tag(secret.key, rl->rule, k->key);
	int	n = 0, nkeys = 1;
	size_t	netlen = 0;

	memcpy(rkey, "r{", 2);
	memcpy(nkey, "n{", 2);
	for (int i = 0; i < 16; i++)
		rkey[2 + i] = nkey[2 + i] = "0123456789abcdef"[(tag >>
		    (60 - 4 * i)) & 15];
	rkey[18] = nkey[18] = '}';
	argv[n] = rkey;
	argvlen[n++] = 19;
	if (mode == 1 && rl->max_networks > 0 && ev->client_ip_ok) {
		argv[n] = nkey;
		argvlen[n++] = 19;
		nkeys = 2;
	}
	*p++ = (unsigned char)mode;
	p = put_double(p, (double)k->cost);
	*p++ = (unsigned char)k->nwin;
	for (int i = 0; i < k->nwin; i++)
		if (k->win[i].seconds > maxs)
			maxs = k->win[i].seconds;
	p = put_double(p, (double)maxs * 1000);
	k->tag = tag;
	k->maxt_ms = maxs * 1000;
	k->sent_ms = check_mono_ms();
	k->epoch = store_epoch(ev->store);
	k->neth = 0;
	p = put_double(p, mode == 1 ? (double)rl_known_ms(rl, tag,
	    k->sent_ms, k->epoch) : 0);
	/* the networks part always (zero without KEYS[2]): one unpack */
	if (nkeys == 2) {
		netlen = (size_t)addr_net_hex(&ev->client_ip, rl->v4prefix,
		    rl->v6prefix, net, sizeof(net));
		k->neth = addr_hash64(net, netlen, tag) | 1;
		p = put_be(p, (uint64_t)rl->max_networks, 4);
		p = put_be(p, (uint64_t)rl->networks_window, 4);
		*p++ = rl_known_ms(rl, k->neth, k->sent_ms, k->epoch) > 0;
	} else {
		memset(p, 0, 9);
		p += 9;
	}
	for (int i = 0; i < k->nwin; i++) {
		p = put_double(p, (double)k->win[i].limit);
		p = put_double(p, (double)k->win[i].seconds);
	}
	argv[n] = (const char *)nums;
	argvlen[n++] = (size_t)(p - nums);
	for (int i = 0; i < k->nwin; i++) {
		argvlen[n] = check_put_dec(secs[i], k->win[i].seconds);
		argv[n++] = secs[i];
	}
	if (nkeys == 2) {
		argvlen[n] = netlen;
		argv[n++] = net;
	}
	store_script_batched(ev->store, SCRIPT_RATELIMIT, nkeys, n, argv,
	    argvlen, cb, arg);
}

/* cat - append s to buf (len bytes, o used), cut to fit; the new length */
static size_t
cat(char *buf, size_t len, size_t o, const char *s)
{
	if (o >= len)
		return o;
	text_copy(buf + o, len - o, s);
	return o + strlen(buf + o);
}

/* safe_key - the key for a reply or log: printable, bounded */
static void
safe_key(const char *key, char *buf, size_t len)
{
	size_t	o = 0;

	for (; *key && o + 4 < len; key++)
		buf[o++] = (unsigned char)*key < 0x20 || *key == 0x7f ? '?' :
		    *key;
	if (*key)
		memcpy(buf + o, "...", 3), o += 3;
	buf[o] = '\0';
}

/* ratelimit_done - the script's answer */
static void
ratelimit_done(void *arg, const struct store_reply *r)
{
	struct rl_call *k = arg;
	struct eval *ev = k->ev;
	const struct ratelimit *rl = k->rl;
	char	action[EVAL_TEXT], detail[256], wt[48], key[300], esc[400];
	char	lim[32], ret[32], cnt[32];
	const struct rl_window *w;
	const char *fail;
	long long v[5];

	if ((fail = check_script_error(r, "ratelimit", detail,
	    sizeof(detail))) != NULL) {
		eval_check_done(ev, CHECK_TEMPFAIL, NULL, fail);
		free(k);
		return;
	}
	/* status, window, retry or ttl, first trip or alert, networks */
	v[0] = r->v[0] & 3;
	v[1] = (r->v[0] >> 3) & 15;
	v[2] = ((r->v[0] >> 7) & 0x1ffffff) - 1;
	v[3] = (r->v[0] >> 2) & 1;
	v[4] = (r->v[0] >> 32) & 0x3fff;
	/* the key lives the longest window (a second and 0.1 % less for
	 * the two clocks' rates) */
	if (r->v[0] & (1LL << 46))
		rl_learn(rl, k->tag, k->sent_ms, k->sent_ms + k->maxt_ms -
		    1000 - k->maxt_ms / 1000, k->epoch);
	/* allowed: how long the networks set lives, when it was looked at */
	if (v[0] == 0 && v[2] > 1 && k->neth != 0)
		rl_learn(rl, k->neth, k->sent_ms, k->sent_ms +
		    (v[2] - 1) * 1000, k->epoch);
	safe_key(k->key, key, sizeof(key));
	switch (v[0]) {
	case 0: {
		/* "key %s: %lld %s charged, within %d window%s" */
		char	num[24];
		size_t	o = cat(detail, sizeof(detail), 0, "key ");

		o = cat(detail, sizeof(detail), o, key);
		o = cat(detail, sizeof(detail), o, ": ");
		check_put_dec(num, k->cost);
		o = cat(detail, sizeof(detail), o, num);
		o = cat(detail, sizeof(detail), o, " ");
		o = cat(detail, sizeof(detail), o, count_names[rl->count]);
		o = cat(detail, sizeof(detail), o, " charged, within ");
		check_put_dec(num, k->nwin);
		o = cat(detail, sizeof(detail), o, num);
		cat(detail, sizeof(detail), o, k->nwin == 1 ? " window" :
		    " windows");
		}
		eval_check_charged(ev);
		eval_check_done(ev, CHECK_NOMATCH, NULL, detail);
		break;
	case 1:
		if (v[1] < 1 || v[1] > k->nwin) {
			eval_check_done(ev, CHECK_TEMPFAIL, NULL,
			    "bad window in ratelimit reply");
			break;
		}
		w = &k->win[v[1] - 1];
		ratelimit_window_text(w->seconds, wt, sizeof(wt));
		snprintf(lim, sizeof(lim), "%lld", w->limit);
		if (v[2] < 0) {
			/*
			 * It can never fit: a deferral would only be retried
			 * for days, so refuse it permanently (oversize_action).
			 */
			snprintf(action, sizeof(action), "%s Rate limit for %s "
			    "is %lld %s per %s: this message alone exceeds it",
			    rl->oversize, key, w->limit, count_names[rl->count],
			    wt);
			snprintf(detail, sizeof(detail), "key %s: cost %lld "
			    "exceeds %lld per %s", key, k->cost, w->limit, wt);
		} else {
			const char *vals[5] = { key, lim,
			    count_names[rl->count], wt, ret };
			size_t	o;

			snprintf(ret, sizeof(ret), "%lld", v[2]);
			o = (size_t)snprintf(action, sizeof(action), "%s ",
			    rl->word);
			check_expand(action + o, sizeof(action) - o, rl->reply,
			    "kluwr", vals);
			snprintf(detail, sizeof(detail), "key %s: %lld per %s "
			    "reached, frees in %lld s", key, w->limit, wt,
			    v[2]);
		}
		if (v[3]) {
			log_escape(esc, sizeof(esc), k->key, strlen(k->key));
			log_warnx("ratelimit: rule %s: %s reached %lld %s per %s",
			    rl->rule, esc, w->limit, count_names[rl->count], wt);
			if (rl->notify)
				notify_run(rl, k->key, w);
		}
		eval_check_done(ev, CHECK_MATCH, action, detail);
		break;
	case 2:
		ratelimit_window_text(rl->networks_window, wt, sizeof(wt));
		snprintf(cnt, sizeof(cnt), "%lld", v[4]);
		{
			const char *vals[3] = { key, cnt, wt };

			check_expand(action, sizeof(action),
			    rl->networks_action, "kcw", vals);
		}
		if (v[3]) {
			log_escape(esc, sizeof(esc), k->key, strlen(k->key));
			log_warnx("ALERT: login %s seen from %lld client "
			    "networks in %d s (rule %s, max_networks %d)", esc,
			    v[4], rl->networks_window, rl->rule,
			    rl->max_networks);
		}
		snprintf(detail, sizeof(detail), "key %s: %lld client "
		    "networks in %s (max %d), window ends in %lld s", key,
		    v[4], wt, rl->max_networks, v[2]);
		eval_check_done(ev, CHECK_MATCH, action, detail);
		break;
	default:
		eval_check_done(ev, CHECK_TEMPFAIL, NULL,
		    "unexpected ratelimit script status");
	}
	free(k);
}

/*
 * rl_sql_keys - the override keys of k asked in SQL, as rl_windows_for()
 * asks the file: the key text, then @domain for a one-part address key
 */
static int
rl_sql_keys(const struct ratelimit *rl, const struct eval *ev,
    const struct rl_call *k, char dom[RL_PART_MAX + 2], const char *keys[2])
{
	const char *d = NULL;
	int	n = 0;

	keys[n++] = k->key;
	if (rl->nparts == 1 && (rl->parts[0] == RLP_SASL || rl->parts[0] ==
	    RLP_SENDER || rl->parts[0] == RLP_RECIPIENT)) {
		int	a = rl->parts[0] == RLP_SASL ? A_SASL_USERNAME :
		    rl->parts[0] == RLP_SENDER ? A_SENDER : A_RECIPIENT;

		if ((d = addr_domain(ev->req->v[a])) == NULL ||
		    strlen(d) >= RL_PART_MAX + 1)
			d = addr_domain(k->key);
		if (d != NULL && strlen(d) < RL_PART_MAX + 1) {
			snprintf(dom, RL_PART_MAX + 2, "@%s", d);
			addr_lower(dom);
			keys[n++] = dom;
		}
	}
	return n;
}

/*
 * rl_sql_windows - an override value from SQL into k; 0, 1 unlimited,
 * -1 (logged) when it is not a windows value
 */
static int
rl_sql_windows(const struct ratelimit *rl, struct rl_call *k,
    const char *key, const char *value)
{
	struct rl_window w[RL_MAX_WIN];
	char	why[256], esc[300];
	int	nw, rc;

	rc = ratelimit_parse_windows(value, rl->win, rl->nwin, w, &nw, why,
	    sizeof(why));
	for (int i = 0; rc == 0 && i < nw; i++)
		if (w[i].limit > (1LL << 50) || w[i].seconds > 86400 * 366) {
			snprintf(why, sizeof(why), "window out of range");
			rc = -1;
		}
	if (rc < 0) {
		log_escape(esc, sizeof(esc), value, strlen(value));
		log_warnx("ratelimit: rule %s: table %s: override %.200s = "
		    "\"%s\": %s: answering on_error", rl->rule,
		    table_name(rl->otable), key, esc, why);
		return -1;
	}
	if (rc == 0) {
		memcpy(k->win, w, sizeof(w));
		k->nwin = nw;
	}
	return rc;
}

static void rl_go(const struct ratelimit *rl, struct eval *ev,
    struct rl_call *k);

/* rl_sql_done - the override from SQL (or none, or an error) */
static void
rl_sql_done(void *arg, enum table_status st, int idx, const char *value)
{
	struct rl_call *k = arg;
	struct eval *ev = k->ev;
	const struct ratelimit *rl = k->rl;
	char	d[300], dom[RL_PART_MAX + 2];
	const char *keys[2];

	if (st == TABLE_ERROR) {
		snprintf(d, sizeof(d), "table %.200s: override lookup failed "
		    "(database down or slow)", table_name(rl->otable));
		eval_check_done(ev, CHECK_TEMPFAIL, NULL, d);
		free(k);
		return;
	}
	if (st == TABLE_FOUND) {
		rl_sql_keys(rl, ev, k, dom, keys);
		switch (rl_sql_windows(rl, k, keys[idx], value)) {
		case -1:
			eval_check_done(ev, CHECK_TEMPFAIL, NULL, "override "
			    "from SQL is not LIMIT/SECONDS, a number or "
			    "\"unlimited\"");
			free(k);
			return;
		case 1:
			snprintf(d, sizeof(d), "not limited: override %.200s "
			    "(SQL)", keys[idx]);
			eval_check_done(ev, CHECK_NOMATCH, NULL, d);
			free(k);
			return;
		}
	}
	rl_go(rl, ev, k);
}

/* rl_start - key, windows, one script call (the secret is known) */
static void
rl_start(const struct ratelimit *rl, struct eval *ev)
{
	struct rl_call *k;
	char	why[128], dom[RL_PART_MAX + 2];
	const char *keys[2];

	if ((k = rl_call_new(rl, ev, why, sizeof(why))) == NULL) {
		char	d[160];

		snprintf(d, sizeof(d), "not limited: %s", why);
		eval_check_done(ev, CHECK_NOMATCH, NULL, d);
		return;
	}
	if (rl->otable != NULL) {
		/* the windows come from SQL first; rl_go() after */
		table_lookup_first(rl->otable, keys, rl_sql_keys(rl, ev, k, dom,
		    keys), rl_sql_done, k);
		return;
	}
	rl_go(rl, ev, k);
}

/* rl_go - k's windows are known: charge */
static void
rl_go(const struct ratelimit *rl, struct eval *ev, struct rl_call *k)
{
	if (k->cost == 0 && rl->max_networks == 0) {
		eval_check_done(ev, CHECK_NOMATCH, NULL, "nothing to count");
		free(k);
		return;
	}
	rl_send(k, ev, 1, ratelimit_done, k);
}

struct rl_wait {
	const struct ratelimit *rl;
	struct eval *ev;
};

/* secret_first - the secret arrived for a request that waits on it */
static void
secret_first(void *arg, const struct store_reply *r)
{
	struct rl_wait *w = arg;
	struct eval *ev = w->ev;
	const struct ratelimit *rl = w->rl;
	char	d[200];

	free(w);
	if (secret_take(ev->store, r, ev->now) < 0) {
		snprintf(d, sizeof(d), "cannot read the key-hash secret from "
		    "Redis: %s", r->ok ? "unexpected answer" : r->err);
		eval_check_done(ev, CHECK_TEMPFAIL, NULL, d);
		return;
	}
	rl_start(rl, ev);
}

/* ratelimit_run - the secret first (once), then the decision */
static void
ratelimit_run(void *priv, struct eval *ev)
{
	const struct ratelimit *rl = priv;
	struct rl_wait *w;

	if (rl->notify)
		notify_reap();
	if (!secret.known || secret.store != ev->store) {
		if ((w = malloc(sizeof(*w))) == NULL)
			fatalx("out of memory");
		w->rl = rl;
		w->ev = ev;
		secret_ask(ev->store, secret_first, w);
		return;
	}
	if (ev->now - secret.fetched >= SECRET_REFRESH && !secret.inflight) {
		secret.inflight = 1;
		secret.fetched = ev->now;
		secret_ask(ev->store, secret_refreshed, ev->store);
	}
	rl_start(rl, ev);
}

/* undo_done - the refund needs no answer */
static void
undo_done(void *arg, const struct store_reply *r)
{
	if (!r->ok)
		log_warnx("ratelimit: refund failed: %s", r->err);
	free(arg);
}

/* ratelimit_undo - a later rule refused: give the charge back */
static void
ratelimit_undo(void *priv, struct eval *ev)
{
	const struct ratelimit *rl = priv;
	struct rl_call *k;
	char	why[128];

	if (!secret.known || secret.store != ev->store) {
		log_warnx("ratelimit: rule %s: no refund (the key-hash secret "
		    "is not known for this Redis)", rl->rule);
		return;
	}
	if ((k = rl_call_new(rl, ev, why, sizeof(why))) == NULL)
		return;
	if (rl->otable != NULL) {
		/*
		 * The charge's windows came from SQL moments ago: the cache
		 * has them. Without them a refund would use other windows:
		 * better none.
		 */
		char	dom[RL_PART_MAX + 2];
		const char *keys[2], *v = NULL;
		enum table_status st = TABLE_NOTFOUND;
		int	n = rl_sql_keys(rl, ev, k, dom, keys), i;

		for (i = 0; i < n && (st = table_peek(rl->otable, keys[i],
		    &v)) == TABLE_NOTFOUND; i++)
			;
		if (st == TABLE_ERROR || (st == TABLE_FOUND &&
		    rl_sql_windows(rl, k, keys[i], v) != 0)) {
			if (st == TABLE_ERROR)
				log_debug("ratelimit: rule %s: no refund (the "
				    "override is no longer cached)", rl->rule);
			free(k);
			return;
		}
	}
	k->ev = NULL;
	rl_send(k, ev, 2, undo_done, k);
}

const struct check_ops check_ratelimit_ops = {
	.name = "ratelimit",
	.keys = ratelimit_keys,
	.states = STATE_RCPT | STATE_EOM,
	.compile = ratelimit_compile,
	.run = ratelimit_run,
	.free = ratelimit_free,
	.undo = ratelimit_undo,
};

/*++
 * NAME
 *	sqlcf.c - Postfix pgsql/mysql table files (see sqlcf.h)
 *--*/
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sqlcf.h"

#define SQLCF_FILE_MAX	(64 * 1024)	/* a table file is small */
#define SQLCF_QUERY_MAX	8192

/* seterr - "path:line: message" */
static int
seterr(char *err, size_t errlen, const char *path, int line,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int
seterr(char *err, size_t errlen, const char *path, int line,
    const char *fmt, ...)
{
	va_list	ap;
	int	n;

	if (err == NULL || errlen == 0)
		return -1;
	n = line > 0 ? snprintf(err, errlen, "%s:%d: ", path, line) :
	    snprintf(err, errlen, "%s: ", path);
	if (n < 0 || (size_t)n >= errlen)
		return -1;
	va_start(ap, fmt);
	vsnprintf(err + n, errlen - n, fmt, ap);
	va_end(ap);
	return -1;
}

/* dupn - NUL-terminated copy of n bytes */
static char *
dupn(const char *s, size_t n)
{
	char   *p = malloc(n + 1);

	if (p != NULL) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

/* sqlcf_free - release everything parsed */
void
sqlcf_free(struct sqlcf *cf)
{
	for (int i = 0; i < cf->nhosts; i++) {
		free(cf->hosts[i].host);
		free(cf->hosts[i].socket);
	}
	free(cf->hosts);
	free(cf->path);
	free(cf->user);
	free(cf->password);
	free(cf->dbname);
	free(cf->charset);
	free(cf->query);
	for (int i = 0; i < cf->nsegs; i++)
		free(cf->segs[i].sql);
	free(cf->segs);
	for (int i = 0; i < cf->nparams; i++)
		free(cf->ptmpl[i]);
	free(cf->pgtext);
	free(cf->result_format);
	for (int i = 0; i < cf->ndomains; i++)
		free(cf->domains[i]);
	free(cf->domains);
	memset(cf, 0, sizeof(*cf));
}

/* ---------------------------------------------------------------- */
/* expansions                                                       */
/* ---------------------------------------------------------------- */

/* label - the n-th label (1 = rightmost) of dom; 0, or -1 when missing */
static int
label(const char *dom, int n, const char **p, size_t *len)
{
	const char *end = dom + strlen(dom), *s;

	if (*dom == '\0')
		return -1;
	for (int i = 1;; i++) {
		for (s = end; s > dom && s[-1] != '.'; s--)
			;
		if (i == n) {
			if (s == end)
				return -1;
			*p = s;
			*len = (size_t)(end - s);
			return 0;
		}
		if (s == dom)
			return -1;
		end = s - 1;
	}
}

/* split - local part and domain of s (domain NULL without '@') */
static void
split(const char *s, const char **local, size_t *llen, const char **dom)
{
	const char *at = strrchr(s, '@');

	*local = s;
	*llen = at ? (size_t)(at - s) : strlen(s);
	*dom = at ? at + 1 : NULL;
}

/*
 * expand - tmpl with the codes of a query (result = 0: %s %u %d of key)
 * or of result_format (result = 1: %s %u %d of value, %S %U %D of key);
 * %1..%9 are always the key's. Returns the length, -1 when the
 * expansion is suppressed, -2 when it does not fit in outlen - 1.
 */
static int
expand(const char *tmpl, const char *key, const char *value, int result,
    char *out, size_t outlen)
{
	const char *kl, *kd, *vl, *vd, *src, *p;
	size_t	kll, vll, n, len = 0;
	int	c;

	split(key, &kl, &kll, &kd);
	if (value != NULL)
		split(value, &vl, &vll, &vd);
	else
		vl = vd = NULL, vll = 0;
	for (p = tmpl; *p != '\0'; p++) {
		if (*p != '%') {
			src = p;
			n = 1;
		} else {
			c = *++p;
			if (c == '\0')
				return -2;	/* refused by the parser */
			if (c >= '1' && c <= '9') {
				if (kd == NULL || label(kd, c - '0', &src, &n) < 0)
					return -1;
			} else if (c == '%') {
				src = p;
				n = 1;
			} else {
				const char *s = result && islower(c) ? value : key;
				const char *l = result && islower(c) ? vl : kl;
				const char *d = result && islower(c) ? vd : kd;
				size_t	ll = result && islower(c) ? vll : kll;

				switch (c) {
				case 's': case 'S':
					src = s;
					n = strlen(s);
					break;
				case 'u': case 'U':
					if (ll == 0)
						return -1;
					src = l;
					n = ll;
					break;
				case 'd': case 'D':
					if (d == NULL || *d == '\0')
						return -1;
					src = d;
					n = strlen(d);
					break;
				default:
					return -2;
				}
			}
		}
		if (len + n >= outlen)
			return -2;
		memcpy(out + len, src, n);
		len += n;
	}
	out[len] = '\0';
	return (int)len;
}

/* code_ok - is %c an expansion of a query (result = 0) or result_format? */
static int
code_ok(int c, int result)
{
	if (c == '%' || (c >= '1' && c <= '9') || c == 's' || c == 'u' ||
	    c == 'd')
		return 1;
	return result && (c == 'S' || c == 'U' || c == 'D');
}

/* tmpl_check - every % of s starts a known code; 1 when one expands */
static int
tmpl_check(const char *s, size_t n, int result, int *expands)
{
	*expands = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '%')
			continue;
		if (i + 1 >= n || !code_ok((unsigned char)s[i + 1], result))
			return -1;
		if (s[i + 1] != '%')
			*expands = 1;
		i++;
	}
	return 0;
}

/* ---------------------------------------------------------------- */
/* the query                                                        */
/* ---------------------------------------------------------------- */

/* seg_add - append a segment (sql NULL: parameter param) */
static int
seg_add(struct sqlcf *cf, char *sql, int param)
{
	struct sqlcf_seg *s = realloc(cf->segs, (cf->nsegs + 1) * sizeof(*s));

	if (s == NULL) {
		free(sql);
		return -1;
	}
	cf->segs = s;
	s[cf->nsegs].sql = sql;
	s[cf->nsegs++].param = param;
	return 0;
}

/* text_add - append SQL text, "%%" becoming "%" */
static int
text_add(struct sqlcf *cf, const char *s, size_t n)
{
	char   *t = malloc(n + 1);
	size_t	j = 0;

	if (t == NULL)
		return -1;
	for (size_t i = 0; i < n; i++) {
		t[j++] = s[i];
		if (s[i] == '%' && i + 1 < n && s[i + 1] == '%')
			i++;
	}
	t[j] = '\0';
	return seg_add(cf, t, 0);
}

/* param_add - a parameter with the template s[0..n) ('' already undone) */
static int
param_add(struct sqlcf *cf, const char *s, size_t n, char *err,
    size_t errlen, int line)
{
	if (cf->nparams == SQLCF_MAXPARAM)
		return seterr(err, errlen, cf->path, line, "query: more than "
		    "%d expansions", SQLCF_MAXPARAM);
	if ((cf->ptmpl[cf->nparams] = dupn(s, n)) == NULL)
		return seterr(err, errlen, cf->path, line, "out of memory");
	return seg_add(cf, NULL, cf->nparams++);
}

/* query_compile - split the query into SQL text and parameters */
static int
query_compile(struct sqlcf *cf, const char *q, char *err, size_t errlen,
    int line)
{
	size_t	n = strlen(q), i = 0, start = 0, j;
	char   *lit, pg[16];
	int	expands;

	if (n > SQLCF_QUERY_MAX)
		return seterr(err, errlen, cf->path, line, "query: longer than "
		    "%d bytes", SQLCF_QUERY_MAX);
	/* one trailing ';' is harmless */
	while (n > 0 && (q[n - 1] == ' ' || q[n - 1] == '\t'))
		n--;
	if (n > 0 && q[n - 1] == ';')
		n--;
	while (i < n) {
		char	c = q[i];

		if (c == '\\' || c == '$' || c == ';' || c == '#' ||
		    (c == '-' && i + 1 < n && q[i + 1] == '-') ||
		    (c == '/' && i + 1 < n && q[i + 1] == '*') ||
		    ((unsigned char)c < 0x20 && c != '\t')) {
			return seterr(err, errlen, cf->path, line, "query: "
			    "'%c' outside a quoted string is not supported "
			    "(backslashes, comments, '$', ';' and control "
			    "characters are refused so that a value can never "
			    "change the statement)", (unsigned char)c < 0x20 ?
			    '?' : c);
		}
		if (c == '"' || c == '`') {
			for (j = i + 1; j < n && q[j] != c; j++)
				if (q[j] == '\\' || q[j] == '%')
					return seterr(err, errlen, cf->path,
					    line, "query: '%c' inside %c...%c "
					    "is not supported (expansions go "
					    "in '...')", q[j], c, c);
			if (j >= n)
				return seterr(err, errlen, cf->path, line,
				    "query: unterminated %c", c);
			i = j + 1;
			continue;
		}
		if (c == '%') {
			if (i + 1 >= n || !code_ok((unsigned char)q[i + 1], 0))
				return seterr(err, errlen, cf->path, line,
				    "query: unknown expansion \"%%%c\" (%%s %%u "
				    "%%d %%1..%%9, %%%% for a percent sign)",
				    i + 1 < n ? q[i + 1] : ' ');
			if (q[i + 1] == '%') {
				i += 2;
				continue;
			}
			/* a bare expansion: one parameter */
			if ((i > start && text_add(cf, q + start, i - start) < 0)
			    || param_add(cf, q + i, 2, err, errlen, line) < 0)
				return seterr(err, errlen, cf->path, line,
				    "query: out of memory");
			i += 2;
			start = i;
			continue;
		}
		if (c != '\'') {
			i++;
			continue;
		}
		/* a literal: find its end, '' is a quote inside */
		if ((lit = malloc(n - i)) == NULL)
			return seterr(err, errlen, cf->path, line, "out of memory");
		{
			size_t	k = 0;

			for (j = i + 1;; j++) {
				if (j >= n) {
					free(lit);
					return seterr(err, errlen, cf->path,
					    line, "query: unterminated '");
				}
				if (q[j] == '\\') {
					free(lit);
					return seterr(err, errlen, cf->path,
					    line, "query: backslash in a quoted "
					    "string is not supported (servers "
					    "disagree on what it means)");
				}
				if (q[j] == '\'') {
					if (j + 1 < n && q[j + 1] == '\'') {
						lit[k++] = '\'';
						j++;
						continue;
					}
					break;
				}
				lit[k++] = q[j];
			}
			if (tmpl_check(lit, k, 0, &expands) < 0) {
				free(lit);
				return seterr(err, errlen, cf->path, line,
				    "query: unknown expansion in '...' (%%s %%u "
				    "%%d %%1..%%9, %%%% for a percent sign)");
			}
			if (expands) {
				if ((i > start && text_add(cf, q + start,
				    i - start) < 0) ||
				    param_add(cf, lit, k, err, errlen, line) < 0) {
					free(lit);
					return -1;
				}
				start = j + 1;
			}
			free(lit);
		}
		i = j + 1;
	}
	if (i > start && text_add(cf, q + start, i - start) < 0)
		return seterr(err, errlen, cf->path, line, "out of memory");
	/* libpq text: parameters as $1..$N */
	{
		size_t	cap = 1, len = 0;

		for (int s = 0; s < cf->nsegs; s++)
			cap += cf->segs[s].sql ? strlen(cf->segs[s].sql) : 4;
		if ((cf->pgtext = malloc(cap)) == NULL)
			return seterr(err, errlen, cf->path, line, "out of memory");
		for (int s = 0; s < cf->nsegs; s++) {
			const char *t = cf->segs[s].sql;

			if (t == NULL) {
				snprintf(pg, sizeof(pg), "$%d",
				    cf->segs[s].param + 1);
				t = pg;
			}
			memcpy(cf->pgtext + len, t, strlen(t));
			len += strlen(t);
		}
		cf->pgtext[len] = '\0';
	}
	return 0;
}

/* ---------------------------------------------------------------- */
/* the file                                                         */
/* ---------------------------------------------------------------- */

/* list_split - white space or comma separated words into *v (malloc'ed) */
static int
list_split(const char *s, char ***v, int *n)
{
	char  **a;
	size_t	len;

	for (;;) {
		s += strspn(s, " \t,");
		if (*s == '\0')
			return 0;
		len = strcspn(s, " \t,");
		if ((a = realloc(*v, (*n + 1) * sizeof(*a))) == NULL)
			return -1;
		*v = a;
		if ((a[*n] = dupn(s, len)) == NULL)
			return -1;
		(*n)++;
		s += len;
	}
}

/* int_set - a number in [lo, hi] */
static int
int_set(const char *v, int lo, int hi, int *out)
{
	char   *end;
	long	l;

	errno = 0;
	l = strtol(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0' || l < lo || l > hi)
		return -1;
	*out = (int)l;
	return 0;
}

/* host_name_ok - an IP address, or letters, digits, '-', '_' in labels */
static int
host_name_ok(const char *h)
{
	unsigned char buf[16];
	size_t	lab = 0;

	if (inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1)
		return 1;
	if (strlen(h) > 253)
		return 0;
	for (const char *p = h; ; p++) {
		if (*p == '.' || *p == '\0') {
			/* an empty label only after a final dot */
			if (lab > 63 || (lab == 0 && !(*p == '\0' && p > h)))
				return 0;
			if (*p == '\0')
				return 1;
			lab = 0;
		} else if (isalnum((unsigned char)*p) || *p == '-' || *p == '_')
			lab++;
		else
			return 0;
	}
}

/* host_add - one hosts entry */
static int
host_add(struct sqlcf *cf, const char *h, char *err, size_t errlen, int line)
{
	struct sqlcf_host *a, *e;
	const char *colon, *name = h;
	size_t	nlen;
	int	port = 0;

	if ((a = realloc(cf->hosts, (cf->nhosts + 1) * sizeof(*a))) == NULL)
		return seterr(err, errlen, cf->path, line, "out of memory");
	cf->hosts = a;
	e = &a[cf->nhosts];
	memset(e, 0, sizeof(*e));
	if (strncmp(h, "unix:", 5) == 0 || h[0] == '/') {
		h += h[0] == '/' ? 0 : 5;
		if (h[0] != '/')
			return seterr(err, errlen, cf->path, line, "hosts: "
			    "\"unix:%.100s\": expected an absolute path", h);
		if ((e->socket = strdup(h)) == NULL)
			return seterr(err, errlen, cf->path, line,
			    "out of memory");
		cf->nhosts++;
		return 0;
	}
	if (strncmp(h, "inet:", 5) == 0)
		name = h += 5;
	if (h[0] == '[') {
		const char *rb = strchr(h, ']');

		if (rb == NULL || (rb[1] != '\0' && rb[1] != ':'))
			goto bad;
		name = h + 1;
		nlen = (size_t)(rb - name);
		colon = rb[1] == ':' ? rb + 1 : NULL;
	} else {
		colon = strchr(h, ':');
		if (colon != NULL && strchr(colon + 1, ':') != NULL)
			colon = NULL;	/* a bare IPv6 address */
		nlen = colon ? (size_t)(colon - h) : strlen(h);
	}
	if (nlen == 0 || (colon && int_set(colon + 1, 1, 65535, &port) < 0))
		goto bad;
	for (size_t i = 0; i < nlen; i++)
		if ((unsigned char)name[i] <= 0x20 || name[i] == '/')
			goto bad;
	if ((e->host = dupn(name, nlen)) == NULL)
		return seterr(err, errlen, cf->path, line, "out of memory");
	if (!host_name_ok(e->host)) {
		seterr(err, errlen, cf->path, line, "hosts: \"%.100s\" is "
		    "neither an address nor a host name", e->host);
		free(e->host);
		return -1;
	}
	e->port = port;
	cf->nhosts++;
	return 0;
bad:
	return seterr(err, errlen, cf->path, line, "hosts: bad entry \"%.100s\" "
	    "(host, host:port, inet:host:port, [v6]:port or unix:/path)", h);
}

/* setting - apply one "name = value" of line */
static int
setting(struct sqlcf *cf, const char *name, const char *v, int line,
    unsigned *seen, char *err, size_t errlen)
{
	static const char *const names[] = {
		"hosts", "user", "password", "dbname", "query", "result_format",
		"domain", "expansion_limit", "charset", "policyd_timeout_ms",
		"policyd_cache_ttl", "policyd_negative_ttl",
		"policyd_cache_size", "policyd_pool", NULL
	};
	static const char *const ignored[] = {
		"idle_interval", "retry_interval", "require_result_set",
		"option_file", "option_group", NULL
	};
	char  **list = NULL;
	int	n = 0, idx = -1, expands;

	for (int i = 0; ignored[i] != NULL; i++)
		if (strcmp(name, ignored[i]) == 0)
			return 0;
	for (int i = 0; names[i] != NULL; i++)
		if (strcmp(name, names[i]) == 0)
			idx = i;
	if (idx < 0) {
		if (strcmp(name, "select_field") == 0 || strcmp(name, "table") == 0
		    || strcmp(name, "where_field") == 0 ||
		    strcmp(name, "additional_conditions") == 0 ||
		    strcmp(name, "select_function") == 0)
			return seterr(err, errlen, cf->path, line, "%s: the "
			    "legacy interface is not supported: write the "
			    "query = ... setting", name);
		return seterr(err, errlen, cf->path, line, "unknown setting "
		    "\"%.64s\"", name);
	}
	if (idx == 8 && cf->type != SQLCF_MYSQL)
		return seterr(err, errlen, cf->path, line, "charset: only for "
		    "mysql tables");
	if (*seen & (1u << idx))
		return seterr(err, errlen, cf->path, line, "%s: set twice", name);
	*seen |= 1u << idx;
	switch (idx) {
	case 0:
		if (list_split(v, &list, &n) < 0) {
			for (int i = 0; i < n; i++)
				free(list[i]);
			free(list);
			return seterr(err, errlen, cf->path, line,
			    "out of memory");
		}
		for (int i = 0; i < n; i++)
			if (host_add(cf, list[i], err, errlen, line) < 0) {
				for (int k = 0; k < n; k++)
					free(list[k]);
				free(list);
				return -1;
			}
		for (int i = 0; i < n; i++)
			free(list[i]);
		free(list);
		if (n == 0)
			return seterr(err, errlen, cf->path, line, "hosts: "
			    "empty");
		return 0;
	case 1: return (cf->user = strdup(v)) ? 0 : -1;
	case 2: return (cf->password = strdup(v)) ? 0 : -1;
	case 3:
		if (*v == '\0')
			return seterr(err, errlen, cf->path, line, "dbname: empty");
		return (cf->dbname = strdup(v)) ? 0 : -1;
	case 4:
		if ((cf->query = strdup(v)) == NULL)
			return -1;
		return query_compile(cf, v, err, errlen, line);
	case 5:
		if (tmpl_check(v, strlen(v), 1, &expands) < 0 || strlen(v) > 512)
			return seterr(err, errlen, cf->path, line,
			    "result_format: unknown expansion (%%s %%u %%d %%S "
			    "%%U %%D %%1..%%9, %%%% for a percent sign)");
		return (cf->result_format = strdup(v)) ? 0 : -1;
	case 6:
		if (list_split(v, &cf->domains, &cf->ndomains) < 0)
			return seterr(err, errlen, cf->path, line,
			    "out of memory");
		for (int i = 0; i < cf->ndomains; i++) {
			if (strchr(cf->domains[i], '/') ||
			    strchr(cf->domains[i], ':'))
				return seterr(err, errlen, cf->path, line,
				    "domain: \"%.100s\": only domain names are "
				    "supported here (no files or tables)",
				    cf->domains[i]);
			for (char *p = cf->domains[i]; *p; p++)
				*p = (char)tolower((unsigned char)*p);
		}
		return 0;
	case 7:
		if (int_set(v, 0, INT_MAX, &cf->expansion_limit) < 0)
			return seterr(err, errlen, cf->path, line,
			    "expansion_limit: expected a number >= 0");
		return 0;
	case 8:
		if (strcasecmp(v, "utf8mb4") != 0 && strcasecmp(v, "utf8mb3") != 0
		    && strcasecmp(v, "utf8") != 0 && strcasecmp(v, "latin1") != 0
		    && strcasecmp(v, "ascii") != 0)
			return seterr(err, errlen, cf->path, line, "charset: "
			    "\"%.40s\": expected utf8mb4, utf8mb3, utf8, latin1 "
			    "or ascii", v);
		free(cf->charset);
		return (cf->charset = strdup(v)) ? 0 : -1;
	case 9:
		if (int_set(v, 10, 60000, &cf->timeout_ms) < 0)
			return seterr(err, errlen, cf->path, line, "%s: expected "
			    "10..60000 (milliseconds)", name);
		return 0;
	case 10:
	case 11:
		if (int_set(v, 0, 86400, idx == 10 ? &cf->cache_ttl :
		    &cf->negative_ttl) < 0)
			return seterr(err, errlen, cf->path, line, "%s: expected "
			    "0..86400 (seconds)", name);
		return 0;
	case 12:
		if (int_set(v, 0, 10000000, &cf->cache_size) < 0)
			return seterr(err, errlen, cf->path, line, "%s: expected "
			    "0..10000000 (entries)", name);
		return 0;
	case 13:
		if (int_set(v, 1, SQLCF_POOL_MAX, &cf->pool) < 0)
			return seterr(err, errlen, cf->path, line, "%s: expected "
			    "1..%d (connections)", name, SQLCF_POOL_MAX);
		return 0;
	}
	return -1;
}

/* apply - one logical line "name = value" */
static int
apply(struct sqlcf *cf, char *l, int line, unsigned *seen, char *err,
    size_t errlen)
{
	char   *eq, *name = l, *v;

	if ((eq = strchr(l, '=')) == NULL)
		return seterr(err, errlen, cf->path, line, "expected \"name = "
		    "value\"");
	v = eq + 1;
	while (eq > name && (eq[-1] == ' ' || eq[-1] == '\t'))
		eq--;
	*eq = '\0';
	v += strspn(v, " \t");
	if (*name == '\0' || name[strspn(name,
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")]
	    != '\0')
		return seterr(err, errlen, cf->path, line, "bad setting name "
		    "\"%.64s\"", name);
	if (setting(cf, name, v, line, seen, err, errlen) < 0) {
		if (err != NULL && errlen > 0 && strncmp(err, cf->path,
		    strlen(cf->path)) != 0)
			seterr(err, errlen, cf->path, line, "out of memory");
		return -1;
	}
	return 0;
}

/* sqlcf_parse - the whole file text (see sqlcf.h) */
int
sqlcf_parse(struct sqlcf *cf, enum sqlcf_type type, const char *text,
    size_t len, const char *path, char *err, size_t errlen)
{
	const char *p = text, *end = text + len, *e, *s, *t;
	unsigned seen = 0;
	char   *cur = NULL, *nb;
	size_t	clen = 0, ccap = 0;
	int	lineno = 0, first = 0;

	memset(cf, 0, sizeof(*cf));
	cf->type = type;
	cf->timeout_ms = 1000;
	cf->cache_ttl = 30;
	cf->negative_ttl = 10;
	cf->cache_size = 10000;
	cf->pool = 2;
	if ((cf->path = strdup(path)) == NULL)
		return seterr(err, errlen, path, 0, "out of memory");
	if (memchr(text, '\0', len) != NULL) {
		seterr(err, errlen, path, 0, "NUL byte in the file");
		goto bad;
	}
	/*
	 * As main.cf: a logical line starts with non-blank text, a line
	 * starting with white space continues it, blank lines and lines
	 * whose first non-blank character is '#' are skipped.
	 */
	for (; p < end || cur != NULL; p = e < end ? e + 1 : end) {
		if (p >= end) {
			s = t = e = end;
		} else {
			if ((e = memchr(p, '\n', (size_t)(end - p))) == NULL)
				e = end;
			lineno++;
			for (s = p; s < e && (*s == ' ' || *s == '\t'); s++)
				;
			for (t = e; t > s && (t[-1] == ' ' || t[-1] == '\t' ||
			    t[-1] == '\r'); t--)
				;
			if (s == t || *s == '#')
				continue;
			if (s != p) {
				/* continuation */
				if (cur == NULL) {
					seterr(err, errlen, path, lineno,
					    "continuation line without a "
					    "setting before it");
					goto bad;
				}
				if (clen + (size_t)(t - s) + 2 > ccap) {
					ccap = clen + (size_t)(t - s) + 64;
					if ((nb = realloc(cur, ccap)) == NULL)
						goto oom;
					cur = nb;
				}
				cur[clen++] = ' ';
				memcpy(cur + clen, s, (size_t)(t - s));
				clen += (size_t)(t - s);
				cur[clen] = '\0';
				continue;
			}
		}
		if (cur != NULL) {
			if (apply(cf, cur, first, &seen, err, errlen) < 0)
				goto bad;
			free(cur);
			cur = NULL;
		}
		if (s == t)
			break;		/* the end */
		ccap = (size_t)(t - s) + 64;
		if ((cur = malloc(ccap)) == NULL)
			goto oom;
		clen = (size_t)(t - s);
		memcpy(cur, s, clen);
		cur[clen] = '\0';
		first = lineno;
	}
	if (cf->query == NULL) {
		seterr(err, errlen, path, 0, "missing query = ...");
		goto bad;
	}
	if (cf->dbname == NULL) {
		seterr(err, errlen, path, 0, "missing dbname = ...");
		goto bad;
	}
	if (cf->nhosts == 0 && host_add(cf, "localhost", err, errlen, 0) < 0)
		goto bad;
	if (cf->result_format == NULL && (cf->result_format = strdup("%s")) ==
	    NULL)
		goto oom;
	if (type == SQLCF_MYSQL && cf->charset == NULL &&
	    (cf->charset = strdup("utf8mb4")) == NULL)
		goto oom;
	return 0;
oom:
	seterr(err, errlen, path, lineno, "out of memory");
bad:
	free(cur);
	sqlcf_free(cf);
	return -1;
}

/* sqlcf_load - read and parse path */
int
sqlcf_load(struct sqlcf *cf, enum sqlcf_type type, const char *path,
    char *err, size_t errlen)
{
	FILE   *fp;
	char   *buf;
	size_t	n;
	int	rc;

	memset(cf, 0, sizeof(*cf));
	if ((fp = fopen(path, "r")) == NULL)
		return seterr(err, errlen, path, 0, "%s", strerror(errno));
	if ((buf = malloc(SQLCF_FILE_MAX + 1)) == NULL) {
		fclose(fp);
		return seterr(err, errlen, path, 0, "out of memory");
	}
	n = fread(buf, 1, SQLCF_FILE_MAX + 1, fp);
	if (ferror(fp) || n > SQLCF_FILE_MAX) {
		fclose(fp);
		free(buf);
		return seterr(err, errlen, path, 0, n > SQLCF_FILE_MAX ?
		    "larger than %d bytes" : "read error", SQLCF_FILE_MAX);
	}
	fclose(fp);
	rc = sqlcf_parse(cf, type, buf, n, path, err, errlen);
	free(buf);
	return rc;
}

/* ---------------------------------------------------------------- */
/* lookups                                                          */
/* ---------------------------------------------------------------- */

/* sqlcf_eligible - Postfix's "domain" restriction */
int
sqlcf_eligible(const struct sqlcf *cf, const char *key)
{
	const char *at;

	if (cf->ndomains == 0)
		return 1;
	if ((at = strrchr(key, '@')) == NULL || at == key)
		return 0;
	for (int i = 0; i < cf->ndomains; i++)
		if (strcasecmp(at + 1, cf->domains[i]) == 0)
			return 1;
	return 0;
}

/* sqlcf_bind - the parameter values for key (see sqlcf.h) */
int
sqlcf_bind(const struct sqlcf *cf, const char *key, struct sqlcf_bind *b)
{
	int	n;

	if (!sqlcf_eligible(cf, key))
		return -1;
	for (int i = 0; i < cf->nparams; i++) {
		n = expand(cf->ptmpl[i], key, NULL, 0, b->buf[i],
		    sizeof(b->buf[i]));
		if (n < 0)
			return n;
		b->val[i] = b->buf[i];
	}
	return cf->nparams;
}

/* sqlcf_render - the statement for MariaDB (see sqlcf.h) */
char *
sqlcf_render(const struct sqlcf *cf, const struct sqlcf_bind *b,
    sqlcf_escape_fn *escape, void *arg, size_t *lenp)
{
	size_t	cap = 1, len = 0, vl;
	char   *out;

	for (int s = 0; s < cf->nsegs; s++)
		cap += cf->segs[s].sql ? strlen(cf->segs[s].sql) :
		    2 * strlen(b->val[cf->segs[s].param]) + 3;
	if ((out = malloc(cap)) == NULL)
		return NULL;
	for (int s = 0; s < cf->nsegs; s++) {
		const char *t = cf->segs[s].sql;

		if (t != NULL) {
			memcpy(out + len, t, strlen(t));
			len += strlen(t);
			continue;
		}
		t = b->val[cf->segs[s].param];
		out[len++] = '\'';
		vl = escape(arg, out + len, t, strlen(t));
		len += vl;
		out[len++] = '\'';
	}
	out[len] = '\0';
	if (lenp != NULL)
		*lenp = len;
	return out;
}

/* sqlcf_result_init - an empty result */
void
sqlcf_result_init(struct sqlcf_result *r)
{
	r->len = 0;
	r->count = 0;
	r->buf[0] = '\0';
}

/* sqlcf_result_add - one value through result_format, joined with ',' */
int
sqlcf_result_add(const struct sqlcf *cf, const char *key, const char *value,
    struct sqlcf_result *r)
{
	char	tmp[SQLCF_RESULT_MAX + 1];
	int	n;

	if (value == NULL || *value == '\0')
		return 0;
	n = expand(cf->result_format, key, value, 1, tmp, sizeof(tmp));
	if (n == -1)
		return 0;		/* suppressed for this value */
	if (n < 0)
		return -1;
	if (cf->expansion_limit > 0 && r->count + 1 > cf->expansion_limit)
		return -1;
	if (r->len + (r->len > 0) + (size_t)n > SQLCF_RESULT_MAX)
		return -1;
	if (r->len > 0)
		r->buf[r->len++] = ',';
	memcpy(r->buf + r->len, tmp, (size_t)n);
	r->len += (size_t)n;
	r->buf[r->len] = '\0';
	r->count++;
	return 0;
}

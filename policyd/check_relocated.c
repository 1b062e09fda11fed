/*++
 * NAME
 *	check_relocated.c - relocated: mail to a moved address gets
 *	"551 5.1.6 User has moved; please try <new@address>"
 * DESCRIPTION
 *	Options: map = "FILE" (or a list of files, merged; a later file
 *	replaces an equal key of an earlier one), one entry per line:
 *
 *		old@example.net		new@example.org
 *		@old.example		@new.example	2025-12-31
 *
 *	A key is "user@domain" or "@domain"; the value is the new address,
 *	or "@domain" to keep the recipient's local part (user@old.example
 *	-> user@new.example), and optionally the last day (UTC) the entry
 *	applies. After that day the entry answers expired_action (default
 *	"DUNNO"). The recipient is looked up as given (lowercase), then
 *	without its +extension, then as @domain.
 *
 *	reply (default "551 5.1.6 User has moved; please try <%a>", %a the
 *	new address) and expired_action are templates; strict = true makes
 *	the default reply "550 5.1.6 ..." for RFC 5321-strict peers that do
 *	not know 551. Keys and values are validated at load time with
 *	"file:line: message" errors. RCPT only; no Redis.
 *
 *	map = "pgsql:FILE" or "mysql:FILE" (the only map then) reads the
 *	entries from SQL (table.h): the same three keys, one query each,
 *	first found wins; a value that does not parse is logged and ignored;
 *	a database down or slow makes the check TEMPFAIL (on_error).
 *
 *	relocated_lookup() and relocated_parse() are pure; the time is an
 *	argument.
 *--*/
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "check_relocated.h"
#include "check_util.h"
#include "rules.h"
#include "table.h"

#define RELOC_ADDR_MAX	1024		/* longer: only @domain entries apply */
#define RELOC_NEW_MAX	512		/* longest new address in a map */

#define RELOC_DEF_REPLY	"551 5.1.6 User has moved; please try <%a>"
#define RELOC_STRICT_REPLY "550 5.1.6 User has moved; please try <%a>"

struct relocated {
	struct map *map;
	struct table *table;		/* map = "pgsql:FILE" / "mysql:FILE" */
	char	*reply;
	char	*expired;
};

static const char *const relocated_keys[] = {
	"map", "reply", "strict", "expired_action", NULL
};

/* days_from_civil - days since 1970-01-01 of a proleptic Gregorian date */
static long long
days_from_civil(long long y, unsigned m, unsigned d)
{
	long long era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* parse_date - "YYYY-MM-DD" into the first second after that day (UTC) */
static int
parse_date(const char *s, size_t n, long long *end)
{
	static const unsigned mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30,
	    31, 30, 31 };
	unsigned y = 0, m, d, dim;

	if (n != 10 || s[4] != '-' || s[7] != '-')
		return -1;
	for (size_t i = 0; i < n; i++)
		if (i != 4 && i != 7 && !isdigit((unsigned char)s[i]))
			return -1;
	for (int i = 0; i < 4; i++)
		y = y * 10 + (unsigned)(s[i] - '0');
	m = (unsigned)(s[5] - '0') * 10 + (unsigned)(s[6] - '0');
	d = (unsigned)(s[8] - '0') * 10 + (unsigned)(s[9] - '0');
	if (y < 1970 || m < 1 || m > 12 || d < 1)
		return -1;
	dim = mdays[m - 1] + (m == 2 && ((y % 4 == 0 && y % 100 != 0) ||
	    y % 400 == 0));
	if (d > dim)
		return -1;
	*end = (days_from_civil(y, m, d) + 1) * 86400;
	return 0;
}

/* addr_shape_ok - "user@domain" or "@domain", printable, no blanks */
static int
addr_shape_ok(const char *s, size_t n)
{
	const char *at = NULL;

	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f || s[i] == '<'
		    || s[i] == '>')
			return 0;
		if (s[i] == '@')
			at = s + i;
	}
	return at != NULL && at < s + n - 1;
}

/* relocated_parse - split a map value "NEW [YYYY-MM-DD]" (see check.h) */
int
relocated_parse(const char *value, char *newaddr, size_t newlen,
    long long *end, char *err, size_t errlen)
{
	const char *p = value, *tok[3];
	size_t	len[3];
	int	n = 0;

	*end = 0;
	while (*p != '\0') {
		p += strspn(p, " \t");
		if (*p == '\0')
			break;
		if (n == 3)
			break;
		tok[n] = p;
		len[n] = strcspn(p, " \t");
		p += len[n++];
	}
	if (n == 0) {
		snprintf(err, errlen, "missing new address");
		return -1;
	}
	if (n > 2) {
		snprintf(err, errlen, "too many fields (want NEW-ADDRESS "
		    "[YYYY-MM-DD])");
		return -1;
	}
	if (len[0] > RELOC_NEW_MAX || len[0] >= newlen) {
		snprintf(err, errlen, "new address longer than %d bytes",
		    RELOC_NEW_MAX);
		return -1;
	}
	if (!addr_shape_ok(tok[0], len[0])) {
		snprintf(err, errlen, "new address \"%.*s\" is not user@domain "
		    "or @domain", (int)(len[0] > 100 ? 100 : len[0]), tok[0]);
		return -1;
	}
	if (n == 2 && parse_date(tok[1], len[1], end) < 0) {
		snprintf(err, errlen, "bad end date \"%.*s\" (want YYYY-MM-DD)",
		    (int)(len[1] > 40 ? 40 : len[1]), tok[1]);
		return -1;
	}
	memcpy(newaddr, tok[0], len[0]);
	newaddr[len[0]] = '\0';
	return 0;
}

/* relocated_lookup - pure: is rcpt moved at time now? (see check.h) */
enum reloc_result
relocated_lookup(const struct map *map, const char *rcpt, long long now,
    char *newaddr, size_t newlen, char *why, size_t whylen)
{
	char	lbuf[RELOC_ADDR_MAX + 1], cbuf[RELOC_ADDR_MAX + 1];
	char	dbuf[RELOC_ADDR_MAX + 2], nbuf[RELOC_NEW_MAX + 1], err[128];
	const char *keys[3], *key = NULL, *v = NULL, *dom, *at;
	long long end;
	size_t	rlen;
	int	nk = 0;

	if (why != NULL && whylen > 0)
		why[0] = '\0';
	if (newlen > 0)
		newaddr[0] = '\0';
	if (map == NULL || rcpt == NULL || *rcpt == '\0')
		return RELOC_NONE;
	/*
	 * A recipient too long for an address key (no such key can be in the
	 * map) is still looked up by its domain: "@old.example" moves every
	 * local part, however long.
	 */
	rlen = strlen(rcpt);
	if (rlen <= RELOC_ADDR_MAX) {
		memcpy(lbuf, rcpt, rlen + 1);
		addr_lower(lbuf);
		keys[nk++] = lbuf;
		if (addr_canon(lbuf, '+', cbuf, sizeof(cbuf)) >= 0 &&
		    strcmp(cbuf, lbuf) != 0)
			keys[nk++] = cbuf;
	}
	if ((dom = addr_domain(rcpt)) != NULL && *dom != '\0' &&
	    strlen(dom) < sizeof(dbuf) - 1) {
		dbuf[0] = '@';
		text_copy(dbuf + 1, sizeof(dbuf) - 1, dom);
		addr_lower(dbuf);
		keys[nk++] = dbuf;
	}
	for (int i = 0; i < nk && v == NULL; i++)
		if ((v = map_get_lower(map, keys[i])) != NULL)
			key = keys[i];
	if (v == NULL) {
		text_copy(why, whylen, "no entry");
		return RELOC_NONE;
	}
	if (relocated_parse(v, nbuf, sizeof(nbuf), &end, err,
	    sizeof(err)) < 0) {
		snprintf(why, whylen, "entry %.100s: %s", key, err);
		return RELOC_BAD;
	}
	if (nbuf[0] == '@') {
		/* keep the recipient's local part, as the client wrote it */
		at = strrchr(rcpt, '@');
		snprintf(newaddr, newlen, "%.*s%s",
		    (int)(at ? (size_t)(at - rcpt) : rlen), rcpt, nbuf);
	} else {
		snprintf(newaddr, newlen, "%s", nbuf);
	}
	if (end != 0 && now >= end) {
		snprintf(why, whylen, "entry %.100s -> %.100s has expired", key,
		    v);
		return RELOC_EXPIRED;
	}
	snprintf(why, whylen, "entry %.100s -> %.100s", key, v);
	return RELOC_MOVED;
}

/* relocated_validate - check every key and value of a loaded map file */
static int
relocated_validate(const struct map *m, const char *path, char *err,
    size_t errlen)
{
	FILE   *fp;
	char   *line = NULL, *p, nbuf[RELOC_NEW_MAX + 1], why[160];
	const char *v;
	size_t	cap = 0, n;
	long long end;
	int	lineno = 0, rc = 0;

	/*
	 * maps.c has parsed the file (syntax errors come from there); this
	 * pass finds each entry's line again to report bad keys and values
	 * as "file:line". Continuation lines belong to the entry above.
	 */
	if ((fp = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while (rc == 0 && getline(&line, &cap, fp) >= 0) {
		lineno++;
		if (line[0] == ' ' || line[0] == '\t')
			continue;
		p = line + strspn(line, " \t\r\n\v\f");
		if (*p == '\0' || *p == '#')
			continue;
		n = strcspn(p, " \t\r\n\v\f");
		p[n] = '\0';
		if (!addr_shape_ok(p, n)) {
			snprintf(err, errlen, "%s:%d: relocated: key \"%.100s\" "
			    "is not user@domain or @domain", path, lineno, p);
			rc = -1;
		} else if ((v = map_get(m, p)) != NULL &&
		    relocated_parse(v, nbuf, sizeof(nbuf), &end, why,
		    sizeof(why)) < 0) {
			snprintf(err, errlen, "%s:%d: relocated: %s", path,
			    lineno, why);
			rc = -1;
		}
	}
	free(line);
	fclose(fp);
	return rc;
}

/* relocated_free - release */
static void
relocated_free(void *priv)
{
	struct relocated *r = priv;

	map_free(r->map);
	table_unref(r->table);
	free(r->reply);
	free(r->expired);
	free(r);
}

/* relocated_compile - read the options, load and validate the map */
static int
relocated_compile(const config_setting_t *rs, const struct config *c,
    void **priv, char *err, size_t errlen)
{
	struct relocated *r = calloc(1, sizeof(*r));
	const config_setting_t *s = config_setting_get_member(rs, "map"), *e;
	const char *f;
	char	path[4096];
	int	n, str, strict = 0;

	if (r == NULL)
		return -1;
	if (s == NULL || (config_setting_type(s) != CONFIG_TYPE_STRING &&
	    config_setting_type(s) != CONFIG_TYPE_ARRAY &&
	    config_setting_type(s) != CONFIG_TYPE_LIST)) {
		snprintf(err, errlen, "%s:%d: relocated: needs map = \"FILE\" "
		    "(or a list of files)", c->path,
		    config_setting_source_line(s ? s : rs));
		goto bad;
	}
	if ((e = config_setting_get_member(rs, "strict")) != NULL) {
		if (config_setting_type(e) != CONFIG_TYPE_BOOL) {
			snprintf(err, errlen, "%s:%d: strict: expected true or "
			    "false", c->path, config_setting_source_line(e));
			goto bad;
		}
		strict = config_setting_get_bool(e);
		if (strict && config_setting_get_member(rs, "reply") != NULL) {
			snprintf(err, errlen, "%s:%d: relocated: give reply or "
			    "strict = true, not both", c->path,
			    config_setting_source_line(e));
			goto bad;
		}
	}
	if (check_template(rs, "reply", strict ? RELOC_STRICT_REPLY :
	    RELOC_DEF_REPLY, "a", &r->reply, c, err, errlen) < 0 ||
	    check_template(rs, "expired_action", "DUNNO", "a", &r->expired, c,
	    err, errlen) < 0)
		goto bad;
	if (config_setting_type(s) == CONFIG_TYPE_STRING &&
	    table_is_sql(config_setting_get_string(s))) {
		char	msg[4400];

		f = config_setting_get_string(s);
		config_path(c, f + 6, path, sizeof(path));
		if ((r->table = table_open(f, path, 0, msg, sizeof(msg))) ==
		    NULL) {
			snprintf(err, errlen, "%s:%d: map: %s", c->path,
			    config_setting_source_line(s), msg);
			goto bad;
		}
		*priv = r;
		return 0;
	}
	if ((r->map = map_new()) == NULL) {
		snprintf(err, errlen, "%s:%d: out of memory", c->path,
		    config_setting_source_line(s));
		goto bad;
	}
	str = config_setting_type(s) == CONFIG_TYPE_STRING;
	n = str ? 1 : config_setting_length(s);
	for (int i = 0; i < n; i++) {
		e = str ? s : config_setting_get_elem(s, i);
		if ((f = config_setting_get_string(e)) == NULL || *f == '\0') {
			snprintf(err, errlen, "%s:%d: map: expected file names",
			    c->path, config_setting_source_line(e));
			goto bad;
		}
		if (table_is_sql(f)) {
			snprintf(err, errlen, "%s:%d: map: an SQL table must be "
			    "the only map", c->path,
			    config_setting_source_line(e));
			goto bad;
		}
		config_path(c, f, path, sizeof(path));
		if (map_load_file(r->map, path, 0, err, errlen) < 0 ||
		    relocated_validate(r->map, path, err, errlen) < 0)
			goto bad;
	}
	*priv = r;
	return 0;
bad:
	relocated_free(r);
	return -1;
}

/* relocated_decide - the answer with the map given */
static void
relocated_decide(const struct relocated *r, struct eval *ev,
    const struct map *map)
{
	const char *vals[1];
	char	newaddr[RELOC_ADDR_MAX + RELOC_NEW_MAX + 2], why[256];
	char	action[EVAL_TEXT];

	switch (relocated_lookup(map, ev->req->v[A_RECIPIENT], ev->now,
	    newaddr, sizeof(newaddr), why, sizeof(why))) {
	case RELOC_NONE:
		eval_check_done(ev, CHECK_NOMATCH, NULL, why);
		return;
	case RELOC_BAD:
		/* only when the file changed between the two load passes */
		log_escape(action, sizeof(action), why, strlen(why));
		log_warnx("relocated: %s: ignored", action);
		eval_check_done(ev, CHECK_NOMATCH, NULL, why);
		return;
	case RELOC_MOVED:
		vals[0] = newaddr;
		check_expand(action, sizeof(action), r->reply, "a", vals);
		break;
	case RELOC_EXPIRED:
		vals[0] = newaddr;
		check_expand(action, sizeof(action), r->expired, "a", vals);
		break;
	}
	eval_check_done(ev, CHECK_MATCH, action, why);
}

struct relocated_wait {
	const struct relocated *r;
	struct eval *ev;
};

/* relocated_sql_done - the first key found in SQL, as a map */
static void
relocated_sql_done(void *arg, enum table_status st, struct map *m)
{
	struct relocated_wait *w = arg;
	char	why[256];

	if (st == TABLE_ERROR) {
		snprintf(why, sizeof(why), "table %.200s: lookup failed "
		    "(database down or slow)", table_name(w->r->table));
		eval_check_done(w->ev, CHECK_TEMPFAIL, NULL, why);
	} else if (m == NULL && (m = map_new()) == NULL) {
		eval_check_done(w->ev, CHECK_TEMPFAIL, NULL, "out of memory");
	} else {
		/* a one-entry map: the same decision as for a file */
		relocated_decide(w->r, w->ev, m);
	}
	map_free(m);
	free(w);
}

/*
 * relocated_sql - ask the SQL table the keys relocated_lookup() asks a
 * map: the recipient, without its +extension, then @domain (a recipient
 * too long for an address key: only @domain)
 */
static void
relocated_sql(const struct relocated *r, struct eval *ev)
{
	const char *rcpt = ev->req->v[A_RECIPIENT];
	struct relocated_wait *w;

	if (*rcpt == '\0') {
		relocated_decide(r, ev, NULL);
		return;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		eval_check_done(ev, CHECK_TEMPFAIL, NULL, "out of memory");
		return;
	}
	w->r = r;
	w->ev = ev;
	table_lookup_owner(r->table, rcpt, relocated_sql_done, w);
}

/* relocated_run - look up the recipient */
static void
relocated_run(void *priv, struct eval *ev)
{
	const struct relocated *r = priv;

	if (r->table != NULL)
		relocated_sql(r, ev);
	else
		relocated_decide(r, ev, r->map);
}

const struct check_ops check_relocated_ops = {
	.name = "relocated",
	.keys = relocated_keys,
	.states = STATE_RCPT,
	.compile = relocated_compile,
	.run = relocated_run,
	.free = relocated_free,
};

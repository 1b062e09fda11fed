/*++
 * NAME
 *	check_sender.c - sender_login: authenticated users send only as
 *	senders they own
 * DESCRIPTION
 *	Applies when sasl_username is set. The sender is owned by the login
 *	when
 *
 *	- the map (Postfix smtpd_sender_login_maps format: "sender  login1,
 *	  login2"; keys "user@domain" or "@domain") lists the login for the
 *	  most specific key of the sender: the address, the address without
 *	  its +extension, then @domain (logins compared ignoring case);
 *	- built-in (builtin = true, the default): the login is the sender,
 *	  ignoring case and the sender's +extension;
 *	- same_domain = true: the login is "x@domain" and the sender is in
 *	  that domain, unless the map has an entry for the sender's own
 *	  address (an address entry is authoritative: it protects the CEO's
 *	  address even where the rest of the domain is shared).
 *
 *	The null sender is allowed (null_sender = "allow") or refused
 *	("reject"). Without a login, a sender in one of protect_domains gets
 *	unauth_reply; any other unauthenticated request is not this check's
 *	business. A sender the login does not own gets reply, a template
 *	where %l is the login, %s the sender and %% a percent sign.
 *
 *	map = "pgsql:FILE" or "mysql:FILE" reads the map from SQL (table.h):
 *	the same keys are asked, one query each, the first found wins; a
 *	database that is down or slow makes the check TEMPFAIL (on_error).
 *	A protect_domains entry "pgsql:FILE" / "mysql:FILE" is asked the
 *	sender's domain, then .parent, ... (mapkeys_domain_tail(), the keys
 *	a file list matches; of a name of very many labels the shortest
 *	parents) after the names and files: a row protects it.
 *
 *	sender_owned() is the decision as a pure function; check_expand()
 *	the template expansion shared with the relocated check. No Redis:
 *	the check answers synchronously, except after an SQL query.
 *--*/
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "check_sender.h"
#include "check_util.h"
#include "log.h"
#include "mapkeys.h"
#include "rules.h"
#include "table.h"

#define SENDER_ADDR_MAX		1024	/* longer senders or logins own nothing */

#define SENDER_DEF_REPLY	"REJECT 5.7.1 Sender address rejected: " \
				"not owned by user %l"
#define SENDER_DEF_UNAUTH	"REJECT 5.7.1 Sender address rejected: " \
				"authentication required for <%s>"

struct sender_login {
	struct map *map;		/* NULL without map = */
	struct table *table;		/* map = "pgsql:FILE" / "mysql:FILE" */
	struct map *protect;		/* protected domains, or NULL */
	struct table_list protect_sql;	/* and SQL tables of them */
	unsigned flags;			/* SENDER_* */
	char	*reply;
	char	*unauth_reply;
};

static const char *const sender_keys[] = {
	"map", "builtin", "same_domain", "null_sender", "protect_domains",
	"reply", "unauth_reply", NULL
};

/* why_set - format an explanation when there is room for one */
static void
why_set(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
why_set(char *why, size_t whylen, const char *fmt, ...)
{
	va_list	ap;

	if (why == NULL || whylen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

/* login_listed - is login (lowercase) one of the comma/space separated owners? */
static int
login_listed(const char *owners, const char *login)
{
	size_t	llen = strlen(login), n;

	while (*owners != '\0') {
		owners += strspn(owners, ", \t");
		n = strcspn(owners, ", \t");
		if (n > 0 && n == llen && strncasecmp(owners, login, n) == 0)
			return 1;
		owners += n;
	}
	return 0;
}

/* sender_owned - pure: does login own sender? (see check.h) */
enum sender_result
sender_owned(const char *login, const char *sender, const struct map *map,
    unsigned flags, char *why, size_t whylen)
{
	char	lbuf[SENDER_ADDR_MAX + 1], sbuf[SENDER_ADDR_MAX + 1];
	char	cbuf[SENDER_ADDR_MAX + 1], dbuf[SENDER_ADDR_MAX + 2];
	char	dombuf[SENDER_ADDR_MAX + 1];
	const char *owners = NULL, *key = NULL, *sdom, *ldom;
	const char *keys[3];
	int	addr_entry = 0, long_sender;

	if (why != NULL && whylen > 0)
		why[0] = '\0';
	if (login == NULL || *login == '\0') {
		why_set(why, whylen, "no login");
		return SENDER_NOT_OWNED;
	}
	if (sender == NULL || *sender == '\0') {
		if (flags & SENDER_NULL_OK) {
			why_set(why, whylen, "null sender allowed");
			return SENDER_OWNED;
		}
		why_set(why, whylen, "null sender refused (null_sender = "
		    "reject)");
		return SENDER_NOT_OWNED;
	}
	if (strlen(login) > SENDER_ADDR_MAX) {
		why_set(why, whylen, "login longer than %d bytes owns nothing",
		    SENDER_ADDR_MAX);
		return SENDER_NOT_OWNED;
	}
	memcpy(lbuf, login, strlen(login) + 1);
	addr_lower(lbuf);
	if ((long_sender = strlen(sender) > SENDER_ADDR_MAX) != 0) {
		/* no address key is that long: only @domain entries apply */
		sbuf[0] = cbuf[0] = '\0';
	} else {
		memcpy(sbuf, sender, strlen(sender) + 1);
		addr_lower(sbuf);
		if (addr_canon(sbuf, '+', cbuf, sizeof(cbuf)) < 0)
			memcpy(cbuf, sbuf, strlen(sbuf) + 1);
	}
	sdom = addr_domain(sender);
	if (sdom != NULL && strlen(sdom) < sizeof(dombuf)) {
		memcpy(dombuf, sdom, strlen(sdom) + 1);
		addr_lower(dombuf);
		sdom = dombuf;
	} else {
		sdom = NULL;
	}

	/* the map: address, address without +extension, @domain */
	if (map != NULL) {
		int	nk = 0;

		if (!long_sender) {
			keys[nk++] = sbuf;
			if (strcmp(cbuf, sbuf) != 0)
				keys[nk++] = cbuf;
		}
		if (sdom != NULL && *sdom != '\0') {
			/* sdom fits dombuf, one byte shorter than dbuf */
			dbuf[0] = '@';
			memcpy(dbuf + 1, sdom, strlen(sdom) + 1);
			keys[nk++] = dbuf;
		}
		for (int i = 0; i < nk && owners == NULL; i++)
			if ((owners = map_get_lower(map, keys[i])) != NULL) {
				key = keys[i];
				addr_entry = keys[i][0] != '@';
			}
		if (owners != NULL && login_listed(owners, lbuf)) {
			why_set(why, whylen, "map entry %s lists login %s", key,
			    lbuf);
			return SENDER_OWNED;
		}
	}

	/* built-in rules */
	if (flags & SENDER_BUILTIN) {
		if (strcmp(lbuf, sbuf) == 0 || strcmp(lbuf, cbuf) == 0) {
			why_set(why, whylen, "built-in: the login is the sender");
			return SENDER_OWNED;
		}
		ldom = addr_domain(lbuf);
		if ((flags & SENDER_SAME_DOMAIN) && !addr_entry && ldom != NULL
		    && *ldom != '\0' && sdom != NULL && strcmp(ldom, sdom) == 0) {
			why_set(why, whylen, "built-in same_domain: login and "
			    "sender in %s", sdom);
			return SENDER_OWNED;
		}
	}
	if (owners != NULL)
		why_set(why, whylen, "map entry %s does not list login %s%s", key,
		    lbuf, (flags & SENDER_SAME_DOMAIN) && addr_entry ?
		    " (address entry: same_domain does not apply)" : "");
	else
		why_set(why, whylen, "no map entry for the sender%s",
		    (flags & SENDER_BUILTIN) ? "; built-in rules do not apply" :
		    "");
	return SENDER_NOT_OWNED;
}

/* sender_free - release */
static void
sender_free(void *priv)
{
	struct sender_login *s = priv;

	map_free(s->map);
	table_unref(s->table);
	map_free(s->protect);
	table_list_free(&s->protect_sql);
	free(s->reply);
	free(s->unauth_reply);
	free(s);
}

/* opt_bool - an optional boolean option */
static int
opt_bool(const config_setting_t *rs, const char *name, int def, int *out,
    const struct config *c, char *err, size_t errlen)
{
	const config_setting_t *s = config_setting_get_member(rs, name);

	*out = def;
	if (s == NULL)
		return 0;
	if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
		snprintf(err, errlen, "%s:%d: %s: expected true or false",
		    c->path, config_setting_source_line(s), name);
		return -1;
	}
	*out = config_setting_get_bool(s);
	return 0;
}

/*
 * opt_files - load "name" (a string or a list of strings) into *m; with
 * files = 0 the strings are entries themselves, and "file:NAME" entries
 * load a file of one entry per line; with tl, "pgsql:FILE" / "mysql:FILE"
 * entries are SQL tables added to it.
 */
static int
opt_files(const config_setting_t *rs, const char *name, int files, int flags,
    struct map **m, struct table_list *tl, const struct config *c, char *err,
    size_t errlen)
{
	const config_setting_t *s = config_setting_get_member(rs, name), *e;
	char	path[4096];
	const char *v;
	int	n, str;

	if (s == NULL)
		return 0;
	str = config_setting_type(s) == CONFIG_TYPE_STRING;
	if (!str && config_setting_type(s) != CONFIG_TYPE_ARRAY &&
	    config_setting_type(s) != CONFIG_TYPE_LIST) {
		snprintf(err, errlen, "%s:%d: %s: expected a string or a list "
		    "of strings", c->path, config_setting_source_line(s), name);
		return -1;
	}
	if ((*m = map_new()) == NULL) {
		snprintf(err, errlen, "%s:%d: out of memory", c->path,
		    config_setting_source_line(s));
		return -1;
	}
	n = str ? 1 : config_setting_length(s);
	for (int i = 0; i < n; i++) {
		e = str ? s : config_setting_get_elem(s, i);
		if ((v = config_setting_get_string(e)) == NULL || *v == '\0') {
			snprintf(err, errlen, "%s:%d: %s: expected non-empty "
			    "strings", c->path, config_setting_source_line(e),
			    name);
			return -1;
		}
		if (tl != NULL && table_is_sql(v)) {
			char	msg[4400];

			config_path(c, v + 6, path, sizeof(path));
			if (table_list_add(tl, v, path, msg, sizeof(msg)) < 0) {
				snprintf(err, errlen, "%s:%d: %s: %s", c->path,
				    config_setting_source_line(e), name, msg);
				return -1;
			}
			continue;
		}
		if (!files && strncmp(v, "file:", 5) != 0) {
			if (map_put(*m, v, "") != 0) {
				snprintf(err, errlen, "%s:%d: %s: bad entry "
				    "\"%s\"", c->path,
				    config_setting_source_line(e), name, v);
				return -1;
			}
			continue;
		}
		config_path(c, files ? v : v + 5, path, sizeof(path));
		if (map_load_file(*m, path, flags, err, errlen) < 0)
			return -1;
	}
	return 0;
}

/*
 * opt_table - "name" as an SQL table ("pgsql:FILE" / "mysql:FILE") into
 * *t; leaves *t NULL for anything else. An SQL table inside a list is an
 * error: it must be the only map.
 */
static int
opt_table(const config_setting_t *rs, const char *name, struct table **t,
    const struct config *c, char *err, size_t errlen)
{
	const config_setting_t *s = config_setting_get_member(rs, name), *e;
	char	path[4096], msg[4400];
	const char *v;

	*t = NULL;
	if (s == NULL)
		return 0;
	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		for (int i = 0; i < config_setting_length(s); i++) {
			e = config_setting_get_elem(s, i);
			if ((v = config_setting_get_string(e)) != NULL &&
			    table_is_sql(v)) {
				snprintf(err, errlen, "%s:%d: %s: an SQL table "
				    "must be the only map", c->path,
				    config_setting_source_line(e), name);
				return -1;
			}
		}
		return 0;
	}
	v = config_setting_get_string(s);
	if (!table_is_sql(v))
		return 0;
	config_path(c, v + 6, path, sizeof(path));
	if ((*t = table_open(v, path, 0, msg, sizeof(msg))) == NULL) {
		snprintf(err, errlen, "%s:%d: %s: %s", c->path,
		    config_setting_source_line(s), name, msg);
		return -1;
	}
	return 0;
}

/* sender_compile - read the rule's options and load the maps */
static int
sender_compile(const config_setting_t *rs, const struct config *c,
    void **priv, char *err, size_t errlen)
{
	struct sender_login *s = calloc(1, sizeof(*s));
	const config_setting_t *ns;
	const char *v;
	int	builtin, same;

	if (s == NULL)
		return -1;
	s->flags = SENDER_NULL_OK;
	if (opt_bool(rs, "builtin", 1, &builtin, c, err, errlen) < 0 ||
	    opt_bool(rs, "same_domain", 0, &same, c, err, errlen) < 0 ||
	    opt_table(rs, "map", &s->table, c, err, errlen) < 0 ||
	    (s->table == NULL &&
	    opt_files(rs, "map", 1, 0, &s->map, NULL, c, err, errlen) < 0) ||
	    opt_files(rs, "protect_domains", 0, MAP_F_SET, &s->protect,
	    &s->protect_sql, c, err, errlen) < 0 ||
	    check_template(rs, "reply", SENDER_DEF_REPLY, "ls", &s->reply, c,
	    err, errlen) < 0 ||
	    check_template(rs, "unauth_reply", SENDER_DEF_UNAUTH, "s",
	    &s->unauth_reply, c, err, errlen) < 0)
		goto bad;
	if (builtin)
		s->flags |= SENDER_BUILTIN;
	if (same)
		s->flags |= SENDER_SAME_DOMAIN;
	if (same && !builtin) {
		snprintf(err, errlen, "%s:%d: sender_login: same_domain = true "
		    "needs builtin = true", c->path,
		    config_setting_source_line(rs));
		goto bad;
	}
	if (!builtin && s->map == NULL && s->table == NULL) {
		snprintf(err, errlen, "%s:%d: sender_login: builtin = false "
		    "needs a map = \"FILE\"", c->path,
		    config_setting_source_line(rs));
		goto bad;
	}
	if ((ns = config_setting_get_member(rs, "null_sender")) != NULL) {
		v = config_setting_get_string(ns);
		if (v != NULL && strcmp(v, "reject") == 0)
			s->flags &= ~SENDER_NULL_OK;
		else if (v == NULL || strcmp(v, "allow") != 0) {
			snprintf(err, errlen, "%s:%d: null_sender: expected "
			    "\"allow\" or \"reject\"", c->path,
			    config_setting_source_line(ns));
			goto bad;
		}
	}
	*priv = s;
	return 0;
bad:
	sender_free(s);
	return -1;
}

/* sender_decide - the ownership answer with the map given */
static void
sender_decide(const struct sender_login *s, struct eval *ev,
    const struct map *map)
{
	const char *login = ev->req->v[A_SASL_USERNAME];
	const char *sender = ev->req->v[A_SENDER];
	const char *vals[2];
	char	action[EVAL_TEXT], why[256];

	if (sender_owned(login, sender, map, s->flags, why, sizeof(why)) ==
	    SENDER_OWNED) {
		eval_check_done(ev, CHECK_NOMATCH, NULL, why);
		return;
	}
	vals[0] = login;
	vals[1] = sender;
	check_expand(action, sizeof(action), s->reply, "ls", vals);
	eval_check_done(ev, CHECK_MATCH, action, why);
}

struct sender_wait {
	const struct sender_login *s;
	struct eval *ev;
};

/* sender_sql_done - the first owner key found in SQL, as a map */
static void
sender_sql_done(void *arg, enum table_status st, struct map *m)
{
	struct sender_wait *w = arg;
	char	why[256];

	if (st == TABLE_ERROR) {
		snprintf(why, sizeof(why), "table %.200s: lookup failed "
		    "(database down or slow)", table_name(w->s->table));
		eval_check_done(w->ev, CHECK_TEMPFAIL, NULL, why);
	} else {
		/* a one-entry map: the same decision as for a file */
		sender_decide(w->s, w->ev, m);
	}
	map_free(m);
	free(w);
}

/*
 * sender_sql - ask the SQL table for the keys sender_owned() asks a map:
 * the sender, without its +extension, then @domain (a sender too long
 * for an address key: only @domain)
 */
static void
sender_sql(const struct sender_login *s, struct eval *ev)
{
	const char *login = ev->req->v[A_SASL_USERNAME];
	const char *sender = ev->req->v[A_SENDER];
	struct sender_wait *w;

	if (*sender == '\0' || strlen(login) > SENDER_ADDR_MAX) {
		sender_decide(s, ev, NULL);	/* decided without the map */
		return;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		eval_check_done(ev, CHECK_TEMPFAIL, NULL, "out of memory");
		return;
	}
	w->s = s;
	w->ev = ev;
	table_lookup_owner(s->table, sender, sender_sql_done, w);
}

/* sender_protected - an unauthenticated sender in a protected domain */
static void
sender_protected(const struct sender_login *s, struct eval *ev,
    const char *dom)
{
	const char *vals[1];
	char	action[EVAL_TEXT], why[256];

	vals[0] = ev->req->v[A_SENDER];
	check_expand(action, sizeof(action), s->unauth_reply, "s", vals);
	snprintf(why, sizeof(why), "not authenticated, sender domain %.200s "
	    "is protected", dom);
	eval_check_done(ev, CHECK_MATCH, action, why);
}

/* protect_sql_done - a row in a protect_domains table protects */
static void
protect_sql_done(void *arg, enum table_status st, int ti, int ki,
    const char *value)
{
	struct sender_wait *w = arg;
	struct eval *ev = w->ev;
	char	why[256];

	(void)ki;
	(void)value;
	if (st == TABLE_FOUND)
		sender_protected(w->s, ev, addr_domain(ev->req->v[A_SENDER]));
	else if (st == TABLE_NOTFOUND)
		eval_check_done(ev, CHECK_NOMATCH, NULL, "not authenticated, "
		    "sender domain not protected");
	else {
		snprintf(why, sizeof(why), "protect_domains table %.200s: "
		    "lookup failed (database down or slow)",
		    table_name(w->s->protect_sql.t[ti]));
		eval_check_done(ev, CHECK_TEMPFAIL, NULL, why);
	}
	free(w);
}

/* protect_sql - ask the protect_domains tables for the domain */
static void
protect_sql(const struct sender_login *s, struct eval *ev, const char *dom)
{
	struct sender_wait *w = calloc(1, sizeof(*w));
	struct mapkeys k;
	/*
	 * A domain of more labels than keys are asked: its shortest
	 * parents, those a table protects (".parent"), as the file form
	 * finds them; never on_error for a sender's choice of name
	 */
	int	n = mapkeys_domain_tail(dom, &k);

	if (w == NULL || n < 0) {
		free(w);
		eval_check_done(ev, CHECK_TEMPFAIL, NULL, "out of memory");
		if (n > 0)
			mapkeys_free(&k);
		return;
	}
	w->s = s;
	w->ev = ev;
	table_lookup_any(s->protect_sql.t, s->protect_sql.n,
	    (const char *const *)k.k, n, protect_sql_done, w);
	mapkeys_free(&k);		/* copied */
}

/* sender_run - decide for one request */
static void
sender_run(void *priv, struct eval *ev)
{
	const struct sender_login *s = priv;
	const struct policy_req *q = ev->req;
	const char *login = q->v[A_SASL_USERNAME], *sender = q->v[A_SENDER];
	const char *dom;

	if (!(q->present & (1ULL << A_SENDER))) {
		eval_check_done(ev, CHECK_NOMATCH, NULL,
		    "the request has no sender attribute");
		return;
	}
	if (*login == '\0') {
		dom = addr_domain(sender);
		if ((s->protect == NULL && s->protect_sql.n == 0) ||
		    dom == NULL || *dom == '\0') {
			eval_check_done(ev, CHECK_NOMATCH, NULL,
			    "not authenticated");
			return;
		}
		/* looked up as it is, whatever its length (maps lowercase) */
		if (s->protect != NULL &&
		    map_lookup_domain(s->protect, dom, NULL, 0) != NULL)
			sender_protected(s, ev, dom);
		else if (s->protect_sql.n > 0)
			protect_sql(s, ev, dom);
		else
			eval_check_done(ev, CHECK_NOMATCH, NULL, "not "
			    "authenticated, sender domain not protected");
		return;
	}
	if (s->table != NULL) {
		sender_sql(s, ev);
		return;
	}
	sender_decide(s, ev, s->map);
}

const struct check_ops check_sender_login_ops = {
	.name = "sender_login",
	.keys = sender_keys,
	.states = STATE_MAIL | STATE_RCPT | STATE_DATA | STATE_EOM,
	.compile = sender_compile,
	.run = sender_run,
	.free = sender_free,
};

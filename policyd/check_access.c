/*++
 * NAME
 *	check_access.c - static access maps: the most specific entry decides
 * DESCRIPTION
 *	Options: map = "FILE" (Postfix access(5) syntax: "key  ACTION"),
 *	key = one of client_address (CIDR keys, longest prefix wins),
 *	client_name, reverse_client_name, helo_name (host or .domain keys),
 *	sender, recipient (user+ext@dom, user@dom, user@, @dom, .parent),
 *	sasl_username (exact). Every value must be a valid action; they are
 *	checked again at lookup time (a bad one is logged and answers DUNNO).
 *	No Redis: always answers synchronously.
 *
 *	map = "pgsql:FILE" / "mysql:FILE" asks SQL (table.h) the keys a file
 *	map consults, in its order (mapkeys.h), one query each, first found
 *	wins; client_address asks the address, then it cut at each '.' or
 *	':' (192.0.2.1, 192.0.2, 192.0, 192) instead of CIDR. A value that is
 *	not an action, and a database down or slow, answer on_error.
 *--*/
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mapkeys.h"
#include "rules.h"
#include "table.h"

enum access_key {
	AK_CLIENT_ADDRESS, AK_CLIENT_NAME, AK_REVERSE_CLIENT_NAME, AK_HELO,
	AK_SENDER, AK_RECIPIENT, AK_SASL
};

static const struct {
	const char *name;
	enum access_key key;
	enum attr_id attr;
} access_keys_tab[] = {
	{ "client_address", AK_CLIENT_ADDRESS, A_CLIENT_ADDRESS },
	{ "client_name", AK_CLIENT_NAME, A_CLIENT_NAME },
	{ "reverse_client_name", AK_REVERSE_CLIENT_NAME, A_REVERSE_CLIENT_NAME },
	{ "helo_name", AK_HELO, A_HELO_NAME },
	{ "sender", AK_SENDER, A_SENDER },
	{ "recipient", AK_RECIPIENT, A_RECIPIENT },
	{ "sasl_username", AK_SASL, A_SASL_USERNAME },
};

struct access {
	enum access_key key;
	enum attr_id attr;
	struct map *map;
	struct cidrmap *cidr;
	struct table *table;		/* an SQL map */
	char	*file;
};

static const char *const access_opt_keys[] = { "map", "key", NULL };

/* access_free - release */
static void
access_free(void *priv)
{
	struct access *a = priv;

	if (a->map)
		map_free(a->map);
	if (a->cidr)
		cidrmap_free(a->cidr);
	table_unref(a->table);
	free(a->file);
	free(a);
}

/*
 * access_value_ok - every value of an access map is an action, checked at
 * load (and reload): a typo ("REJCT") is a file:line error at policyd -t,
 * never a silent DUNNO at run time.
 */
static int
access_value_ok(const char *value, char *why, size_t whylen)
{
	char	msg[200];

	if (strlen(value) >= EVAL_TEXT) {
		snprintf(why, whylen, "action longer than %d bytes",
		    EVAL_TEXT - 1);
		return -1;
	}
	if (action_parse(value, msg, sizeof(msg)) == ACT_INVALID) {
		snprintf(why, whylen, "not an access(5) action: %s", msg);
		return -1;
	}
	return 0;
}

/* access_compile - load the map */
static int
access_compile(const config_setting_t *rs, const struct config *c, void **priv,
    char *err, size_t errlen)
{
	struct access *a = calloc(1, sizeof(*a));
	const char *file = NULL, *key = NULL;
	char	path[4096];
	size_t	i;

	if (a == NULL)
		return -1;
	if (!config_setting_lookup_string(rs, "map", &file) ||
	    !config_setting_lookup_string(rs, "key", &key)) {
		snprintf(err, errlen, "%s:%d: access: needs map = \"FILE\" and "
		    "key = \"sender\" (or client_address, client_name, "
		    "reverse_client_name, helo_name, recipient, sasl_username)",
		    c->path, config_setting_source_line(rs));
		free(a);
		return -1;
	}
	for (i = 0; i < sizeof(access_keys_tab) / sizeof(access_keys_tab[0]); i++)
		if (strcmp(access_keys_tab[i].name, key) == 0)
			break;
	if (i == sizeof(access_keys_tab) / sizeof(access_keys_tab[0])) {
		snprintf(err, errlen, "%s:%d: access: unknown key \"%s\"",
		    c->path, config_setting_source_line(rs), key);
		free(a);
		return -1;
	}
	a->key = access_keys_tab[i].key;
	a->attr = access_keys_tab[i].attr;
	if (table_is_sql(file)) {
		char	msg[4400];

		config_path(c, file + 6, path, sizeof(path));
		if ((a->table = table_open(file, path, 0, msg, sizeof(msg))) ==
		    NULL) {
			snprintf(err, errlen, "%s:%d: map: %s", c->path,
			    config_setting_source_line(config_setting_get_member(
			    rs, "map")), msg);
			access_free(a);
			return -1;
		}
		*priv = a;
		return 0;
	}
	config_path(c, file, path, sizeof(path));
	a->file = strdup(path);
	{
		char	why[512];
		int	rc;

		if (a->key == AK_CLIENT_ADDRESS) {
			a->cidr = cidrmap_new();
			rc = cidrmap_load_file_checked(a->cidr, path,
			    access_value_ok, why, sizeof(why));
		} else {
			a->map = map_new();
			rc = map_load_file_checked(a->map, path, 0,
			    access_value_ok, why, sizeof(why));
		}
		if (rc < 0) {
			/* the setting's file:line, then the map's own */
			snprintf(err, errlen, "%s:%d: map: %s", c->path,
			    config_setting_source_line(config_setting_get_member(
			    rs, "map")), why);
			access_free(a);
			return -1;
		}
	}
	*priv = a;
	return 0;
}

struct access_wait {
	const struct access *a;
	struct eval *ev;
	struct mapkeys k;
};

/* access_sql_done - the first key found in SQL, none, or an error */
static void
access_sql_done(void *arg, enum table_status st, int idx, const char *value)
{
	struct access_wait *w = arg;
	char	detail[700], why[300], esc[600];

	if (st == TABLE_ERROR) {
		snprintf(detail, sizeof(detail), "table %.200s: lookup failed "
		    "(database down or slow)", table_name(w->a->table));
		eval_check_done(w->ev, CHECK_TEMPFAIL, NULL, detail);
	} else if (st == TABLE_NOTFOUND) {
		eval_check_done(w->ev, CHECK_NOMATCH, NULL, "no entry");
	} else if (access_value_ok(value, why, sizeof(why)) < 0) {
		/* a deny list with a typo must not pass: on_error decides */
		log_escape(esc, sizeof(esc), value, strlen(value));
		log_warnx("access: table %s: entry \"%.200s\": %s (\"%s\"): "
		    "answering on_error", table_name(w->a->table), w->k.k[idx],
		    why, esc);
		snprintf(detail, sizeof(detail), "%s entry \"%.300s\": %s",
		    access_keys_tab[w->a->key].name, w->k.k[idx], why);
		eval_check_done(w->ev, CHECK_TEMPFAIL, NULL, detail);
	} else {
		snprintf(detail, sizeof(detail), "%s entry \"%.500s\"",
		    access_keys_tab[w->a->key].name, w->k.k[idx]);
		eval_check_done(w->ev, CHECK_MATCH, value, detail);
	}
	mapkeys_free(&w->k);
	free(w);
}

/* access_sql - the keys of the attribute, asked one by one */
static void
access_sql(const struct access *a, struct eval *ev)
{
	const char *val = ev->req->v[a->attr];
	struct access_wait *w = calloc(1, sizeof(*w));
	int	n;

	if (w == NULL) {
		eval_check_done(ev, CHECK_TEMPFAIL, NULL, "out of memory");
		return;
	}
	w->a = a;
	w->ev = ev;
	switch (a->key) {
	case AK_SENDER:
	case AK_RECIPIENT:
		n = mapkeys_address(val, '+', 0, &w->k);
		break;
	case AK_SASL:
		n = mapkeys_one(val, &w->k);
		break;
	case AK_CLIENT_ADDRESS:
		n = mapkeys_ip(val, &w->k);
		break;
	default:
		/* a name deeper than the keys asked: its shortest parents (a
		 * client's choice of HELO must not make the rule on_error) */
		n = mapkeys_domain_tail(val, &w->k);
		break;
	}
	if (n <= 0) {
		free(w);
		if (n < 0)
			eval_check_done(ev, CHECK_TEMPFAIL, NULL, "more keys "
			    "than an SQL map is asked (too many labels)");
		else
			eval_check_done(ev, CHECK_NOMATCH, NULL, "no entry");
		return;
	}
	table_lookup_first(a->table, (const char *const *)w->k.k, n,
	    access_sql_done, w);
}

/* access_run - look up the attribute */
static void
access_run(void *priv, struct eval *ev)
{
	const struct access *a = priv;
	const struct policy_req *q = ev->req;
	const char *v = NULL;
	char	matched[600], detail[700];
	const char *val;

	/*
	 * The lookups lowercase each candidate key themselves, so the value
	 * is looked up as it arrived, whatever its length (up to max_line):
	 * a long local part still meets the @domain and .parent entries.
	 */
	if (a->table != NULL) {
		access_sql(a, ev);
		return;
	}
	matched[0] = '\0';
	if (a->key == AK_CLIENT_ADDRESS) {
		if (ev->client_ip_ok)
			v = cidrmap_lookup(a->cidr, &ev->client_ip);
		snprintf(matched, sizeof(matched), "%s", "network");
	} else {
		val = q->v[a->attr];
		switch (a->key) {
		case AK_SENDER:
		case AK_RECIPIENT:
			v = map_lookup_address(a->map, val, '+', matched,
			    sizeof(matched));
			break;
		case AK_SASL:
			v = map_get(a->map, val);
			snprintf(matched, sizeof(matched), "%.500s", val);
			addr_lower(matched);
			break;
		default:
			v = map_lookup_domain(a->map, val, matched,
			    sizeof(matched));
			break;
		}
	}
	if (v == NULL) {
		eval_check_done(ev, CHECK_NOMATCH, NULL, "no entry");
		return;
	}
	snprintf(detail, sizeof(detail), "%s entry \"%s\"",
	    access_keys_tab[a->key].name, matched);
	eval_check_done(ev, CHECK_MATCH, v, detail);
}

const struct check_ops check_access_ops = {
	.name = "access",
	.keys = access_opt_keys,
	.states = STATE_ALL,
	.compile = access_compile,
	.run = access_run,
	.free = access_free,
};

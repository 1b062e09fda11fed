/*
 * sqlcf_test.c - the pgsql/mysql table file parser: settings, errors,
 * the query turned into parameters, expansions, result_format.
 */
#include <stdlib.h>
#include <string.h>

#include "sqlcf.h"
#include "tap.h"

static char err[512];

static int
parse(struct sqlcf *cf, enum sqlcf_type t, const char *text)
{
	err[0] = '\0';
	return sqlcf_parse(cf, t, text, strlen(text), "t.cf", err, sizeof(err));
}

/* refused - the text is an error whose message contains want */
static void
refused(enum sqlcf_type t, const char *text, const char *want,
    const char *name)
{
	struct sqlcf cf;
	int	rc = parse(&cf, t, text);

	ok(rc < 0 && strstr(err, want) != NULL, name);
	if (rc == 0)
		sqlcf_free(&cf);
	else if (strstr(err, want) == NULL)
		printf("#   err: %s\n#   want: %s\n", err, want);
}

/* quoting escaper for tests: doubles quotes and backslashes */
static size_t
esc(void *arg, char *to, const char *from, size_t len)
{
	size_t	n = 0;

	(void)arg;
	for (size_t i = 0; i < len; i++) {
		if (from[i] == '\'' || from[i] == '\\')
			to[n++] = '\\';
		to[n++] = from[i];
	}
	to[n] = '\0';
	return n;
}

static const char *
lookup_result(struct sqlcf *cf, const char *key, const char *const *vals,
    struct sqlcf_result *r)
{
	sqlcf_result_init(r);
	for (int i = 0; vals[i] != NULL; i++)
		if (sqlcf_result_add(cf, key, vals[i], r) < 0)
			return NULL;
	return r->buf;
}

int
main(void)
{
	struct sqlcf cf;
	struct sqlcf_bind b;
	struct sqlcf_result r;
	char   *sql;

	/* a PostfixAdmin sender-login file */
	ok(parse(&cf, SQLCF_PGSQL,
	    "# PostfixAdmin\n"
	    "hosts = inet:127.0.0.1:5433 unix:/run/postgresql\n"
	    "user = postfix\n"
	    "password = s3cret\n"
	    "dbname = mail\n"
	    "query = SELECT goto FROM alias\n"
	    "   WHERE address='%s' AND active = '1'\n"
	    "\n"
	    "policyd_cache_ttl = 5\n") == 0, "postfixadmin file parses");
	is_int(cf.nhosts, 2, "two hosts");
	is_str(cf.hosts[0].host, "127.0.0.1", "inet host");
	is_int(cf.hosts[0].port, 5433, "inet port");
	is_str(cf.hosts[1].socket, "/run/postgresql", "unix socket");
	is_str(cf.user, "postfix", "user");
	is_str(cf.password, "s3cret", "password");
	is_str(cf.dbname, "mail", "dbname");
	is_int(cf.nparams, 1, "one parameter");
	is_str(cf.pgtext, "SELECT goto FROM alias WHERE address=$1 AND "
	    "active = '1'", "libpq text has $1, the constant literal stays");
	is_int(cf.cache_ttl, 5, "policyd_cache_ttl");
	is_int(cf.negative_ttl, 10, "negative ttl default");
	is_int(cf.timeout_ms, 1000, "timeout default");
	is_int(cf.pool, 2, "pool default");
	is_str(cf.result_format, "%s", "result_format default");
	is_int(sqlcf_bind(&cf, "sales@example.net", &b), 1, "bind");
	is_str(b.val[0], "sales@example.net", "%s is the key");
	sqlcf_free(&cf);

	/* expansions: %u %d %1 %2 in one literal, bare, %% */
	ok(parse(&cf, SQLCF_MYSQL, "dbname=d\nquery = SELECT x FROM t WHERE "
	    "a='%u' AND b = '%d' AND c='%2.%1' AND d=%s AND e LIKE 'x%%' "
	    "AND f = 'it''s %u'\n") == 0, "expansions parse");
	is_int(cf.nparams, 5, "five parameters");
	is_str(cf.ptmpl[2], "%2.%1", "literal template");
	is_str(cf.ptmpl[4], "it's %u", "'' undone in a template");
	is_str(cf.charset, "utf8mb4", "mysql charset default");
	is_str(cf.hosts[0].host, "localhost", "hosts default");
	is_int(sqlcf_bind(&cf, "joe@mail.example.com", &b), 5, "bind 5");
	is_str(b.val[0], "joe", "%u");
	is_str(b.val[1], "mail.example.com", "%d");
	is_str(b.val[2], "example.com", "%2.%1");
	is_str(b.val[3], "joe@mail.example.com", "bare %s");
	is_str(b.val[4], "it's joe", "quote kept in the value");
	sql = sqlcf_render(&cf, &b, esc, NULL, NULL);
	is_str(sql, "SELECT x FROM t WHERE a='joe' AND b = 'mail.example.com' "
	    "AND c='example.com' AND d='joe@mail.example.com' AND e LIKE 'x%' "
	    "AND f = 'it\\'s joe'", "mysql rendering: escaped, quoted by us");
	free(sql);
	is_int(sqlcf_bind(&cf, "@example.com", &b), -1, "%u of @domain: "
	    "suppressed");
	is_int(sqlcf_bind(&cf, "joe", &b), -1, "%d of a bare key: suppressed");
	sqlcf_free(&cf);

	/* %N with too few labels */
	ok(parse(&cf, SQLCF_PGSQL, "dbname=d\nquery=SELECT 1 WHERE '%3'=x\n")
	    == 0, "%3 parses");
	is_int(sqlcf_bind(&cf, "a@example.com", &b), -1, "%3 of a 2-label "
	    "domain: suppressed");
	is_int(sqlcf_bind(&cf, "a@x.example.com", &b), 1, "%3 of 3 labels");
	is_str(b.val[0], "x", "%3 is the leftmost of three");
	sqlcf_free(&cf);

	/* an injection attempt is one value */
	ok(parse(&cf, SQLCF_MYSQL, "dbname=d\nquery=SELECT goto FROM alias "
	    "WHERE address='%s'\n") == 0, "simple mysql");
	is_int(sqlcf_bind(&cf, "x' OR '1'='1", &b), 1, "bind the attack");
	sql = sqlcf_render(&cf, &b, esc, NULL, NULL);
	is_str(sql, "SELECT goto FROM alias WHERE address='x\\' OR \\'1\\'="
	    "\\'1'", "quotes escaped inside our own quotes");
	free(sql);
	is_int(sqlcf_bind(&cf, "a%s%%@b", &b), 1, "bind a value with %");
	is_str(b.val[0], "a%s%%@b", "% in a value is not expanded again");
	sqlcf_free(&cf);

	/* domain restriction */
	ok(parse(&cf, SQLCF_PGSQL, "dbname=d\nquery=SELECT 1 WHERE a='%s'\n"
	    "domain = Example.com, example.org\n") == 0, "domain parses");
	ok(sqlcf_eligible(&cf, "a@example.com"), "listed domain (case)");
	ok(!sqlcf_eligible(&cf, "@example.com"), "@domain not looked up");
	ok(!sqlcf_eligible(&cf, "a@example.net"), "other domain");
	ok(!sqlcf_eligible(&cf, "example.com"), "bare domain");
	sqlcf_free(&cf);

	/* result_format and expansion_limit */
	ok(parse(&cf, SQLCF_PGSQL, "dbname=d\nquery=SELECT 1\nresult_format = "
	    "<%u> %d %S %%\nexpansion_limit = 2\n") == 0, "result_format");
	{
		const char *v2[] = { "a@b.c", "", "d@e.f", NULL };
		const char *v3[] = { "a@b.c", "d@e.f", "g@h.i", NULL };
		const char *vbare[] = { "nodomain", "x@y", NULL };

		is_str(lookup_result(&cf, "k@z", v2, &r), "<a> b.c k@z %,<d> e.f "
		    "k@z %", "formatted, empty skipped, joined with commas");
		ok(lookup_result(&cf, "k@z", v3, &r) == NULL, "expansion_limit "
		    "exceeded is an error");
		is_str(lookup_result(&cf, "k@z", vbare, &r), "<x> y k@z %",
		    "a value without a domain is dropped by %d");
	}
	sqlcf_free(&cf);

	/* host forms */
	ok(parse(&cf, SQLCF_MYSQL, "dbname=d\nquery=SELECT 1\nhosts = db1, "
	    "db2:3307 [::1]:3308 /var/run/mysqld/mysqld.sock ::1\n") == 0,
	    "host forms");
	is_int(cf.nhosts, 5, "five hosts");
	is_str(cf.hosts[1].host, "db2", "host:port");
	is_int(cf.hosts[1].port, 3307, "its port");
	is_str(cf.hosts[2].host, "::1", "[v6]:port host");
	is_int(cf.hosts[2].port, 3308, "[v6] port");
	is_str(cf.hosts[3].socket, "/var/run/mysqld/mysqld.sock", "bare path");
	is_str(cf.hosts[4].host, "::1", "bare v6");
	sqlcf_free(&cf);

	/* ignored Postfix tuning */
	ok(parse(&cf, SQLCF_MYSQL, "dbname=d\nquery=SELECT 1\nidle_interval=60"
	    "\nretry_interval = 60\noption_group = client\n") == 0,
	    "Postfix tuning settings accepted");
	sqlcf_free(&cf);

	/* errors, with file:line */
	refused(SQLCF_PGSQL, "dbname=d\n", "t.cf: missing query", "no query");
	refused(SQLCF_PGSQL, "query=SELECT 1\n", "missing dbname", "no dbname");
	refused(SQLCF_PGSQL, "dbname=d\nquery=SELECT 1\nbogus = 1\n",
	    "t.cf:3: unknown setting \"bogus\"", "unknown setting");
	refused(SQLCF_PGSQL, "dbname=d\nselect_field = goto\n", "t.cf:2: "
	    "select_field: the legacy", "legacy interface");
	refused(SQLCF_MYSQL, "dbname=d\nquery=SELECT 1\ntls_cert_file=/x\n",
	    "t.cf:3: unknown setting \"tls_cert_file\"", "tls is not ignored");
	refused(SQLCF_PGSQL, "dbname=d\nquery=SELECT 1\ndbname=e\n",
	    "t.cf:3: dbname: set twice", "duplicate");
	refused(SQLCF_PGSQL, "  dbname=d\n", "t.cf:1: continuation",
	    "continuation first");
	refused(SQLCF_PGSQL, "dbname d\n", "t.cf:1: expected", "no =");
	refused(SQLCF_PGSQL, "dbname=d\n\nquery=SELECT 1 WHERE a='%x'\n",
	    "t.cf:3: query: unknown expansion", "unknown %x in a literal");
	refused(SQLCF_PGSQL, "dbname=d\nquery=SELECT 1 WHERE a=%x\n",
	    "query: unknown expansion \"%x\"", "unknown bare %x");
	refused(SQLCF_PGSQL, "dbname=d\nquery=SELECT 1 WHERE a='%S'\n",
	    "unknown expansion", "%S only in result_format");
	refused(SQLCF_PGSQL, "dbname=d\nquery=SELECT 1 WHERE a='x\\'%s'\n",
	    "backslash", "backslash in a literal");
	refused(SQLCF_PGSQL, "dbname=d\nquery=SELECT 1 WHERE a='%s' -- it's\n",
	    "'-' outside", "comment");
	refused(SQLCF_MYSQL, "dbname=d\nquery=SELECT 1 WHERE a='%s' # x\n",
	    "'#' outside", "mysql comment");
	refused(SQLCF_PGSQL, "dbname=d\nquery=SELECT $1 WHERE a='%s'\n",
	    "'$' outside", "dollar");
	refused(SQLCF_PGSQL, "dbname=d\nquery=SELECT 1; DROP TABLE x\n",
	    "';' outside", "two statements");
	refused(SQLCF_PGSQL, "dbname=d\nquery=SELECT 1 WHERE a=\"%s\"\n",
	    "inside \"...\"", "expansion in double quotes");
	refused(SQLCF_PGSQL, "dbname=d\nquery=SELECT 1 WHERE a='%s\n",
	    "unterminated '", "unterminated literal");
	refused(SQLCF_PGSQL, "dbname=d\nquery=SELECT 1\nhosts = inet:h:99999\n",
	    "t.cf:3: hosts: bad entry", "bad port");
	refused(SQLCF_PGSQL, "dbname=d\nquery=SELECT 1\nhosts = db..example\n",
	    "t.cf:3: hosts: \"db..example\" is neither", "empty label");
	refused(SQLCF_PGSQL, "dbname=d\nquery=SELECT 1\nhosts = db!.example\n",
	    "neither an address nor a host name", "a bad character");
	refused(SQLCF_PGSQL, "dbname=d\nquery=SELECT 1\nhosts = 1:2:3:4:5:6:7:8:9\n",
	    "neither an address nor a host name", "nine IPv6 groups");
	ok(parse(&cf, SQLCF_PGSQL, "dbname=d\nquery=SELECT 1\nhosts = "
	    "db-1.Example.NET. db_2:5433 192.0.2.1 [2001:db8::1]:5432\n") == 0,
	    "host names, a final dot, addresses");
	is_int(cf.nhosts, 4, "four hosts");
	sqlcf_free(&cf);
	refused(SQLCF_PGSQL, "dbname=d\nquery=SELECT 1\ncharset = utf8\n",
	    "only for mysql", "charset for pgsql");
	refused(SQLCF_MYSQL, "dbname=d\nquery=SELECT 1\ncharset = gbk\n",
	    "charset: \"gbk\"", "a multibyte charset with \\ trail bytes");
	refused(SQLCF_PGSQL, "dbname=d\nquery=SELECT 1\npolicyd_pool = 0\n",
	    "policyd_pool: expected 1..16", "pool bounds");
	refused(SQLCF_PGSQL, "dbname=d\nquery=SELECT 1\nresult_format = %q\n",
	    "result_format: unknown", "bad result_format");
	refused(SQLCF_PGSQL, "dbname=d\nquery=SELECT 1\ndomain = /etc/x\n",
	    "only domain names", "domain from a file");
	refused(SQLCF_PGSQL, "dbname=d\nquery=SELECT '%s','%s','%s','%s','%s',"
	    "'%s','%s','%s','%s','%s','%s','%s','%s','%s','%s','%s','%s'\n",
	    "more than 16", "too many expansions");

	/* a trailing ';' is fine; a long key does not fit */
	ok(parse(&cf, SQLCF_PGSQL, "dbname=d\nquery=SELECT 1 WHERE a='%s'; \n")
	    == 0, "trailing ;");
	is_str(cf.pgtext, "SELECT 1 WHERE a=$1", "trailing ; dropped");
	{
		char	big[SQLCF_VALUE_MAX + 10];

		memset(big, 'a', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		is_int(sqlcf_bind(&cf, big, &b), -2, "value too long");
	}
	sqlcf_free(&cf);
	return tap_done();
}

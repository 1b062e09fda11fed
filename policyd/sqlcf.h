/*++
 * NAME
 *	sqlcf.h - Postfix pgsql_table(5) / mysql_table(5) files, parsed
 * DESCRIPTION
 *	A pure parser (no I/O but sqlcf_load() reading the file) for the
 *	table files Postfix reads as "pgsql:FILE" and "mysql:FILE", so one
 *	file serves Postfix and policyd. Syntax as main.cf: "name = value",
 *	'#' comment lines, a line starting with white space continues the
 *	previous one. Settings:
 *
 *	hosts		host, host:port, inet:host[:port], [v6]:port,
 *			unix:/path or /path (default "localhost"); tried in
 *			order, the next one when a connection fails; a host
 *			is an address or a name (letters, digits, '-', '_',
 *			labels of 1..63), which table.c resolves
 *	user, password, dbname (required), query (required)
 *	result_format	default "%s"; %s %u %d of the value, %S %U %D and
 *			%1..%9 of the key, %% a percent sign
 *	domain		only user@DOMAIN keys with these domains are looked up
 *			(domain names, white space or comma separated)
 *	expansion_limit	more result values than this is an error (0 = no
 *			limit)
 *	charset		(mysql) utf8mb4 (default), utf8mb3, utf8, latin1 or
 *			ascii: character sets whose multi-byte characters
 *			never contain the bytes of ' or \ (see below)
 *	idle_interval, retry_interval, require_result_set, option_file,
 *	option_group	Postfix connection tuning: accepted and ignored
 *	policyd_timeout_ms	per-lookup deadline (default 1000)
 *	policyd_cache_ttl	seconds a found value is cached (default 30)
 *	policyd_negative_ttl	seconds "not found" is cached (default 10)
 *	policyd_cache_size	entries kept per table (default 10000, 0 = off)
 *	policyd_pool		connections per table (default 2, 1..16)
 *
 *	Postfix reads the file with no complaint about the policyd_ keys.
 *	Any other name (legacy select_field/table/where_field, tls_*, typos)
 *	is a "file:line: message" error: a TLS setting that would be ignored
 *	is a connection in clear text the admin did not ask for.
 *
 *	query expansions: %s the key, %u its local part (the whole key when
 *	it has no '@'), %d its domain, %1..%9 the domain's labels from the
 *	right, %% a percent sign. A lookup whose %u, %d or %N has nothing to
 *	expand is not sent and finds nothing (as in Postfix).
 *
 *	Parameters, never SQL text. A quoted literal holding expansions
 *	('%s', '%u@%d') and a bare expansion (%s) each become one statement
 *	parameter: $N for libpq's PQsendQueryParams; for MariaDB (whose
 *	non-blocking API has no server-side parameters outside prepared
 *	statements) the value is escaped by mysql_real_escape_string() on a
 *	connection whose character set is fixed before connecting and put
 *	between quotes policyd writes itself. The parser refuses what would
 *	make its idea of where a literal ends differ from the server's:
 *	backslashes, comments, '$', a ';' before the end, expansions inside
 *	"..." or `...`. So a quote, backslash or % in a key can only ever be
 *	part of one value.
 * RESULTS
 *	sqlcf_parse()/sqlcf_load() return 0, or -1 with "path:line: message"
 *	in err. sqlcf_bind() returns the number of parameters, or -1 when
 *	the lookup is suppressed (nothing to look up: not found), -2 when a
 *	value is too long (not found). sqlcf_result_add() returns 0, or -1
 *	when the result exceeds expansion_limit or SQLCF_RESULT_MAX bytes
 *	(a table error).
 *--*/
#ifndef POLICYD_SQLCF_H
#define POLICYD_SQLCF_H

#include <stddef.h>

enum sqlcf_type { SQLCF_PGSQL = 1, SQLCF_MYSQL = 2 };

#define SQLCF_MAXPARAM		16
#define SQLCF_VALUE_MAX		1024	/* one expanded parameter */
#define SQLCF_RESULT_MAX	4096	/* the joined result */
#define SQLCF_POOL_MAX		16

struct sqlcf_host {
	char	*host;			/* name or address; NULL for a socket */
	int	port;			/* 0 = driver default */
	char	*socket;		/* unix socket (pgsql: its directory) */
	const char *addr;		/* NULL; on table.c's copy for a
					   driver: the name's address */
};

struct sqlcf_seg {
	char	*sql;			/* SQL text, or NULL for a parameter */
	int	param;			/* index into ptmpl when sql == NULL */
};

struct sqlcf {
	enum sqlcf_type type;
	char	*path;
	struct sqlcf_host *hosts;
	int	nhosts;
	char	*user, *password, *dbname, *charset;
	char	*query;			/* as written */
	struct sqlcf_seg *segs;
	int	nsegs;
	char	*ptmpl[SQLCF_MAXPARAM];	/* one template per parameter */
	int	nparams;
	char	*pgtext;		/* the query with $1..$N */
	char	*result_format;
	char	**domains;
	int	ndomains;
	int	expansion_limit;
	int	timeout_ms, cache_ttl, negative_ttl, cache_size, pool;
};

struct sqlcf_bind {
	const char *val[SQLCF_MAXPARAM];
	char	buf[SQLCF_MAXPARAM][SQLCF_VALUE_MAX + 1];
};

struct sqlcf_result {
	char	buf[SQLCF_RESULT_MAX + 1];
	size_t	len;
	int	count;
};

int	sqlcf_parse(struct sqlcf *cf, enum sqlcf_type type, const char *text,
	    size_t len, const char *path, char *err, size_t errlen);
int	sqlcf_load(struct sqlcf *cf, enum sqlcf_type type, const char *path,
	    char *err, size_t errlen);
void	sqlcf_free(struct sqlcf *cf);

/* sqlcf_eligible - does the domain setting allow looking key up? */
int	sqlcf_eligible(const struct sqlcf *cf, const char *key);
int	sqlcf_bind(const struct sqlcf *cf, const char *key, struct sqlcf_bind *b);

/*
 * sqlcf_render - the MariaDB statement: SQL text with each parameter
 * written as '...' around escape(arg, to, from, len) (which returns the
 * escaped length, to holding 2*len+1 bytes). Returns the malloc'ed text
 * or NULL when out of memory.
 */
typedef size_t sqlcf_escape_fn(void *arg, char *to, const char *from,
	    size_t len);
char	*sqlcf_render(const struct sqlcf *cf, const struct sqlcf_bind *b,
	    sqlcf_escape_fn *escape, void *arg, size_t *lenp);

void	sqlcf_result_init(struct sqlcf_result *r);
int	sqlcf_result_add(const struct sqlcf *cf, const char *key,
	    const char *value, struct sqlcf_result *r);

#endif

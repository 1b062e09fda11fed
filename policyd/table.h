/*++
 * NAME
 *	table.h - lookup tables: file maps, PostgreSQL and MariaDB/MySQL
 * DESCRIPTION
 *	A table is named as a map setting names it: "pgsql:FILE" or
 *	"mysql:FILE" (a Postfix pgsql_table(5) / mysql_table(5) file, see
 *	sqlcf.h) or a plain FILE (maps.h syntax); relative paths are
 *	resolved against the configuration's directory by the caller.
 *
 *	table_lookup() answers through cb exactly once: at once for a file
 *	map and for an SQL key found in the table's cache, later (from the
 *	event loop) for a query. It never blocks: connections are made and
 *	queries sent with libpq's and MariaDB's non-blocking APIs on the
 *	event base given to table_set_base(). Each SQL table has a pool of
 *	policyd_pool connections, opened on demand, a queue of lookups
 *	waiting for one (bounded), and a deadline per lookup
 *	(policyd_timeout_ms, also for connecting). A lookup that fails on a
 *	connection that worked before (the server restarted) is tried once
 *	more on a fresh one; a connection lost is reopened at once, so an
 *	outage shows without waiting for traffic. A connection that fails on every host waits
 *	(100 ms doubling to 5 s) before the next attempt; while no
 *	connection is up and one is waiting, lookups fail at once instead of
 *	queueing. The outage is logged once when it starts and once when it
 *	ends.
 *
 *	Each SQL table caches answers (policyd_cache_size entries, oldest
 *	dropped first): a value for policyd_cache_ttl seconds, "not found"
 *	for policyd_negative_ttl seconds. Errors are never cached. A reload
 *	that opens the same file again shares the table, its connections
 *	and counters, but starts with an empty cache.
 *
 *	Tables are shared: opening the same type and file with the same
 *	contents again returns the same table (one pool, one cache for every
 *	rule and every configuration generation using it).
 * RESULTS
 *	TABLE_FOUND with the value (valid during the callback only),
 *	TABLE_NOTFOUND, or TABLE_ERROR (the database is down, slow or
 *	answered an error: the caller answers its on_error). cached is 1
 *	when the answer came from a file map or the cache.
 *--*/
#ifndef POLICYD_TABLE_H
#define POLICYD_TABLE_H

#include <stddef.h>

struct event_base;
struct stats_buf;
struct table;

enum table_status { TABLE_FOUND, TABLE_NOTFOUND, TABLE_ERROR };

typedef void table_cb(void *arg, enum table_status st, const char *value,
	    int cached);

/* table_is_sql - does spec name an SQL table ("pgsql:" / "mysql:")? */
int	table_is_sql(const char *spec);

/*
 * table_open - a shared reference to the table spec names; path is the
 * file already resolved; map_flags as for map_load_file(). NULL with
 * "file:line: message" in err.
 */
struct table *table_open(const char *spec, const char *path, int map_flags,
	    char *err, size_t errlen);
void	table_unref(struct table *t);
const char *table_name(const struct table *t);

void	table_lookup(struct table *t, const char *key, table_cb *cb, void *arg);

/*
 * table_lookup_first - keys[0..n) in order, one lookup each, until one
 * is found: cb(arg, status, index of the key found or -1, value).
 * TABLE_ERROR as soon as one lookup fails (and for n > MAPKEYS_MAX,
 * mapkeys.h).
 */
typedef void table_first_cb(void *arg, enum table_status st, int idx,
	    const char *value);
void	table_lookup_first(struct table *t, const char *const *keys, int n,
	    table_first_cb *cb, void *arg);

/* a list of tables, for a setting that may name several */
struct table_list {
	struct table **t;
	int	n;
};

/* table_list_add - table_open() and append; 0, or -1 with err */
int	table_list_add(struct table_list *l, const char *spec,
	    const char *path, char *err, size_t errlen);
void	table_list_free(struct table_list *l);

/*
 * table_lookup_any - each table of t[0..nt) in turn asked keys[0..n) as
 * table_lookup_first() asks them (the keys are copied), until one finds:
 * cb(arg, TABLE_FOUND, table index, key index, value). A table that fails
 * does not stop the others (a row in another one still counts): after
 * the last, TABLE_ERROR with the index of the first that failed, else
 * TABLE_NOTFOUND (index -1).
 */
typedef void table_any_cb(void *arg, enum table_status st, int ti, int ki,
	    const char *value);
void	table_lookup_any(struct table *const *t, int nt,
	    const char *const *keys, int n, table_any_cb *cb, void *arg);

/*
 * table_lookup_owner - the keys a sender_login or relocated map is asked
 * for addr (mapkeys_owner()), and the first found as a one-entry map,
 * so that the check's pure decision (sender_owned(), relocated_lookup())
 * is the same as for a file: cb(arg, status, map or NULL when not
 * found); the map is the caller's to free.
 */
struct map;
typedef void table_map_cb(void *arg, enum table_status st, struct map *m);
void	table_lookup_owner(struct table *t, const char *addr,
	    table_map_cb *cb, void *arg);

/*
 * table_peek - the answer the cache (or a file map) holds for key, never
 * a query: TABLE_FOUND with *value (valid until the next table call),
 * TABLE_NOTFOUND, or TABLE_ERROR when nothing is cached.
 */
enum table_status table_peek(struct table *t, const char *key,
	    const char **value);

void	table_set_base(struct event_base *base);
/*
 * table_set_resolver - resolve the host names of "hosts" with r
 * (resolver.h) before connecting: /etc/hosts first, then A records, AAAA
 * when there is no A; each address in turn. Without one (policyctl) the
 * drivers resolve names themselves, blocking. Addresses, sockets and
 * "localhost" go to the drivers as written.
 */
struct resolver;
void	table_set_resolver(struct resolver *r);
/* table_shutdown - fail every pending lookup, close every connection */
void	table_shutdown(void);

/* table_render_metrics - policyd_table_* counter families */
void	table_render_metrics(struct stats_buf *b);
/* table_down - names of the SQL tables that are down ("" when none) */
size_t	table_down(char *buf, size_t len);

#endif

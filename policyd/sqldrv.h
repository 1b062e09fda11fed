/*++
 * NAME
 *	sqldrv.h - non-blocking database connections for table.c
 * DESCRIPTION
 *	One connection to one host of a table file (sqlcf.h), driven by
 *	libevent. open() starts connecting; query() sends the lookup of key
 *	with the parameters of b. Every outcome arrives through cb, never
 *	from inside open() or query():
 *
 *	SQLC_CONNECTED	ready for query()
 *	SQLC_RESULT	the query finished; r holds the joined values
 *			(r->count == 0: not found); ready again
 *	SQLC_QERROR	the query failed (SQL error, result too large);
 *			the connection stays usable
 *	SQLC_FAIL	the connection failed or was lost (msg says why):
 *			the caller must close() it
 *
 *	h->addr, when set, is the address of the host name h->host, resolved
 *	by the caller: the driver connects there and resolves nothing (it
 *	lives until close()).
 *
 *	An idle connection watches its socket, so a server that goes away
 *	is noticed (SQLC_FAIL) before the next lookup needs it. The caller
 *	may close() from inside cb; the driver does not touch the connection
 *	after calling cb. close() never blocks and never calls cb.
 *
 *	pgsql: PQconnectStartParams/PQconnectPoll, PQsendQueryParams with
 *	the parameters as parameters, PQsocket on the event base.
 *	mysql: MariaDB's non-blocking API (mysql_real_connect_start/_cont,
 *	mysql_real_query_start/_cont, mysql_store_result_start/_cont). It
 *	has no parameters outside prepared statements: each value is
 *	escaped by mysql_real_escape_string() for the connection's character
 *	set (set before connecting, see sqlcf.h) and put between quotes
 *	sqlcf_render() writes, in a statement the parser has checked.
 *--*/
#ifndef POLICYD_SQLDRV_H
#define POLICYD_SQLDRV_H

#include <stddef.h>

#include "sqlcf.h"

struct event_base;
struct sqlc;

enum sqlc_event { SQLC_CONNECTED, SQLC_RESULT, SQLC_QERROR, SQLC_FAIL };

typedef void sqlc_cb(void *arg, enum sqlc_event ev,
	    const struct sqlcf_result *r, const char *msg);

struct sqlc_driver {
	const char *name;
	struct sqlc *(*open)(struct event_base *base, const struct sqlcf *cf,
	    const struct sqlcf_host *h, sqlc_cb *cb, void *arg, char *err,
	    size_t errlen);
	int	(*query)(struct sqlc *c, const char *key,
	    const struct sqlcf_bind *b, char *err, size_t errlen);
	void	(*close)(struct sqlc *c);
};

extern const struct sqlc_driver sqlc_pgsql;
extern const struct sqlc_driver sqlc_mysql;

#endif

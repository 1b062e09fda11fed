/*++
 * NAME
 *	sqlpg.c - PostgreSQL connections with libpq's asynchronous API
 *	(see sqldrv.h)
 * DESCRIPTION
 *	Parameters are sent without a type, so that the server infers one
 *	from the context as it does for the quoted literal Postfix would
 *	have written ('%s' = an integer column works). Where the context
 *	gives none (CONCAT('%u', '@', ...), PostfixAdmin's alias-domain
 *	query) the server answers "could not determine data type of
 *	parameter" (SQLSTATE 42P18): the connection then sends its queries
 *	with text parameters, starting with this one again.
 *--*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <postgresql/libpq-fe.h>

#include "sqldrv.h"

struct sqlc {
	struct event_base *base;
	const struct sqlcf *cf;
	sqlc_cb *cb;
	void	*arg;
	PGconn	*pg;
	struct event *ev;
	int	fd;
	short	what;
	int	connecting, busy, qerr;
	int	typed;			/* send parameters as text (see above) */
	int	retype;			/* 42P18: send the query again, typed */
	char	msg[256];
	char	key[SQLCF_VALUE_MAX + 1];
	struct sqlcf_result r;
};

/* pg_msg - libpq's last error, on one line */
static const char *
pg_msg(struct sqlc *c)
{
	const char *m = c->pg ? PQerrorMessage(c->pg) : "out of memory";
	size_t	i, j = 0;

	for (i = 0; m[i] != '\0' && j + 1 < sizeof(c->msg); i++)
		c->msg[j++] = (m[i] == '\n' || m[i] == '\r') ? ' ' : m[i];
	while (j > 0 && c->msg[j - 1] == ' ')
		j--;
	c->msg[j] = '\0';
	return c->msg;
}

static void pg_event(evutil_socket_t fd, short what, void *arg);
static int pg_send(struct sqlc *c, const struct sqlcf_bind *b, char *err,
    size_t errlen);

/* pg_watch - wait for what on libpq's current socket */
static int
pg_watch(struct sqlc *c, short what)
{
	int	fd = PQsocket(c->pg);

	if (fd < 0)
		return -1;
	if (c->ev != NULL && c->fd == fd && c->what == what)
		return 0;
	if (c->ev != NULL)
		event_free(c->ev);
	c->fd = fd;
	c->what = what;
	if ((c->ev = event_new(c->base, fd, what | EV_PERSIST, pg_event, c)) ==
	    NULL || event_add(c->ev, NULL) < 0)
		return -1;
	return 0;
}

/* pg_poll - one step of PQconnectPoll; 1 when the outcome was delivered */
static void
pg_poll(struct sqlc *c)
{
	switch (PQconnectPoll(c->pg)) {
	case PGRES_POLLING_READING:
		if (pg_watch(c, EV_READ) < 0)
			break;
		return;
	case PGRES_POLLING_WRITING:
		if (pg_watch(c, EV_WRITE) < 0)
			break;
		return;
	case PGRES_POLLING_OK:
		c->connecting = 0;
		if (PQsetnonblocking(c->pg, 1) != 0 || pg_watch(c, EV_READ) < 0)
			break;
		c->cb(c->arg, SQLC_CONNECTED, NULL, NULL);
		return;
	default:
		break;
	}
	c->cb(c->arg, SQLC_FAIL, NULL, pg_msg(c));
}

/* pg_results - drain what has arrived; deliver once the query is done */
static void
pg_results(struct sqlc *c)
{
	PGresult *res;
	const char *m42;

	for (;;) {
		if (PQisBusy(c->pg))
			return;
		if ((res = PQgetResult(c->pg)) == NULL)
			break;
		switch (PQresultStatus(res)) {
		case PGRES_TUPLES_OK:
			for (int i = 0; i < PQntuples(res) && !c->qerr; i++)
				for (int k = 0; k < PQnfields(res); k++) {
					if (PQgetisnull(res, i, k))
						continue;
					if (sqlcf_result_add(c->cf, c->key,
					    PQgetvalue(res, i, k), &c->r) < 0) {
						snprintf(c->msg, sizeof(c->msg),
						    "result larger than "
						    "expansion_limit or %d bytes",
						    SQLCF_RESULT_MAX);
						c->qerr = 1;
						break;
					}
				}
			break;
		case PGRES_COMMAND_OK:
			break;
		default:
			if (!c->typed && !c->qerr && (m42 = PQresultErrorField(
			    res, PG_DIAG_SQLSTATE)) != NULL && strcmp(m42,
			    "42P18") == 0) {
				c->retype = 1;
				break;
			}
			if (!c->qerr) {
				const char *m = PQresultErrorMessage(res);

				snprintf(c->msg, sizeof(c->msg), "%.*s",
				    (int)strcspn(m, "\n"), m);
				c->qerr = 1;
			}
			break;
		}
		PQclear(res);
	}
	c->busy = 0;
	if (PQstatus(c->pg) == CONNECTION_BAD) {
		c->cb(c->arg, SQLC_FAIL, NULL, pg_msg(c));
		return;
	}
	if (c->retype) {
		static struct sqlcf_bind b;	/* single-threaded */

		c->retype = 0;
		c->typed = 1;
		if (sqlcf_bind(c->cf, c->key, &b) < 0 || pg_send(c, &b,
		    c->msg, sizeof(c->msg)) < 0)
			c->cb(c->arg, SQLC_FAIL, NULL, c->msg);
		return;
	}
	if (pg_watch(c, EV_READ) < 0) {
		c->cb(c->arg, SQLC_FAIL, NULL, "cannot watch the socket");
		return;
	}
	if (c->qerr)
		c->cb(c->arg, SQLC_QERROR, NULL, c->msg);
	else
		c->cb(c->arg, SQLC_RESULT, &c->r, NULL);
}

/* pg_event - the socket is ready */
static void
pg_event(evutil_socket_t fd, short what, void *arg)
{
	struct sqlc *c = arg;
	int	r;

	(void)fd;
	if (c->connecting) {
		pg_poll(c);
		return;
	}
	if (what & EV_WRITE) {
		if ((r = PQflush(c->pg)) < 0) {
			c->cb(c->arg, SQLC_FAIL, NULL, pg_msg(c));
			return;
		}
		if (r == 0 && pg_watch(c, EV_READ) < 0) {
			c->cb(c->arg, SQLC_FAIL, NULL, "cannot watch the socket");
			return;
		}
	}
	if (what & EV_READ) {
		if (PQconsumeInput(c->pg) == 0 ||
		    PQstatus(c->pg) == CONNECTION_BAD) {
			c->cb(c->arg, SQLC_FAIL, NULL, pg_msg(c));
			return;
		}
		if (c->busy)
			pg_results(c);
		else {
			PGnotify *n;

			/* idle: notices and notifications are dropped */
			while ((n = PQnotifies(c->pg)) != NULL)
				PQfreemem(n);
		}
	}
}

/* pg_open - start connecting (see sqldrv.h) */
static struct sqlc *
pg_open(struct event_base *base, const struct sqlcf *cf,
    const struct sqlcf_host *h, sqlc_cb *cb, void *arg, char *err,
    size_t errlen)
{
	struct sqlc *c = calloc(1, sizeof(*c));
	const char *kw[9], *val[9];
	char	port[16];
	int	n = 0;

	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->base = base;
	c->cf = cf;
	c->cb = cb;
	c->arg = arg;
	c->fd = -1;
	kw[n] = "host";
	val[n++] = h->socket ? h->socket : h->host;
	if (h->addr != NULL) {
		/* resolved by the caller: libpq connects there, no lookup */
		kw[n] = "hostaddr";
		val[n++] = h->addr;
	}
	if (h->port > 0) {
		snprintf(port, sizeof(port), "%d", h->port);
		kw[n] = "port";
		val[n++] = port;
	}
	if (cf->user != NULL) {
		kw[n] = "user";
		val[n++] = cf->user;
	}
	if (cf->password != NULL) {
		kw[n] = "password";
		val[n++] = cf->password;
	}
	kw[n] = "dbname";
	val[n++] = cf->dbname;
	kw[n] = "application_name";
	val[n++] = "policyd";
	kw[n] = "client_encoding";
	val[n++] = "UTF8";
	kw[n] = NULL;
	val[n] = NULL;
	/* expand_dbname = 0: a dbname is a name, never a connection string */
	c->pg = PQconnectStartParams(kw, val, 0);
	if (c->pg == NULL || PQstatus(c->pg) == CONNECTION_BAD) {
		snprintf(err, errlen, "%s", pg_msg(c));
		if (c->pg != NULL)
			PQfinish(c->pg);
		free(c);
		return NULL;
	}
	c->connecting = 1;
	/* the first wait is for the socket to be writable (libpq's rule) */
	if (pg_watch(c, EV_WRITE) < 0) {
		snprintf(err, errlen, "cannot watch the socket");
		PQfinish(c->pg);
		free(c);
		return NULL;
	}
	return c;
}

/* pg_send - send the query with b's values */
static int
pg_send(struct sqlc *c, const struct sqlcf_bind *b, char *err, size_t errlen)
{
	static const Oid text[SQLCF_MAXPARAM] = {
		25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25
	};			/* TEXTOID */
	int	r;

	sqlcf_result_init(&c->r);
	c->qerr = 0;
	if (PQsendQueryParams(c->pg, c->cf->pgtext, c->cf->nparams, c->typed ?
	    text : NULL, b->val, NULL, NULL, 0) == 0 ||
	    (r = PQflush(c->pg)) < 0) {
		snprintf(err, errlen, "%s", pg_msg(c));
		return -1;
	}
	c->busy = 1;
	if (pg_watch(c, r ? EV_READ | EV_WRITE : EV_READ) < 0) {
		snprintf(err, errlen, "cannot watch the socket");
		return -1;
	}
	return 0;
}

/* pg_query - send the lookup (see sqldrv.h) */
static int
pg_query(struct sqlc *c, const char *key, const struct sqlcf_bind *b,
    char *err, size_t errlen)
{
	snprintf(c->key, sizeof(c->key), "%s", key);
	return pg_send(c, b, err, errlen);
}

/* pg_close - release; PQfinish only writes a Terminate message */
static void
pg_close(struct sqlc *c)
{
	if (c == NULL)
		return;
	if (c->ev != NULL)
		event_free(c->ev);
	PQfinish(c->pg);
	free(c);
}

const struct sqlc_driver sqlc_pgsql = {
	.name = "pgsql",
	.open = pg_open,
	.query = pg_query,
	.close = pg_close,
};

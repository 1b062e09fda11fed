/*++
 * NAME
 *	sqlmy.c - MariaDB/MySQL connections with MariaDB Connector/C's
 *	non-blocking API (see sqldrv.h)
 * DESCRIPTION
 *	Each operation is a _start() call followed by _cont() calls whenever
 *	the socket (or the library's own timer) is ready. An operation that
 *	finishes inside query() or open() is delivered from a zero timer, so
 *	the caller never sees its callback run from inside its own call.
 *
 *	Why escaping is safe here: the character set is fixed with
 *	MYSQL_SET_CHARSET_NAME before connecting, to one (sqlcf.h) where no
 *	multi-byte character contains the byte of ' or \;
 *	mysql_real_escape_string() escapes for that set, and follows the
 *	server's NO_BACKSLASH_ESCAPES mode (doubling quotes instead); the
 *	escaped value sits between quotes sqlcf_render() writes, in a
 *	statement whose literals the parser has delimited the way the server
 *	does (no backslashes, comments or multiple statements in the
 *	template). CLIENT_MULTI_STATEMENTS is off and LOCAL INFILE disabled.
 *--*/
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <mariadb/mysql.h>
#include <mariadb/errmsg.h>

#include "sqldrv.h"

enum my_state { MY_CONNECT, MY_QUERY, MY_STORE, MY_IDLE, MY_DEAD };

struct sqlc {
	struct event_base *base;
	const struct sqlcf *cf;
	sqlc_cb *cb;
	void	*arg;
	MYSQL	my;
	enum my_state state;
	struct event *ev, *tmo, *kick;
	int	in_call;		/* inside open()/query() */
	int	have_pending;
	enum sqlc_event pending;
	char	msg[256];
	char	key[SQLCF_VALUE_MAX + 1];
	struct sqlcf_result r;
};

static void my_event(evutil_socket_t fd, short what, void *arg);

/* my_deliver - call back now, or from the kick timer inside a call */
static void
my_deliver(struct sqlc *c, enum sqlc_event ev, const char *msg)
{
	struct timeval zero = { 0, 0 };

	if (msg != NULL && msg != c->msg)
		snprintf(c->msg, sizeof(c->msg), "%s", msg);
	if (ev == SQLC_FAIL)
		c->state = MY_DEAD;
	if (c->in_call) {
		c->pending = ev;
		c->have_pending = 1;
		evtimer_add(c->kick, &zero);
		return;
	}
	c->cb(c->arg, ev, ev == SQLC_RESULT ? &c->r : NULL,
	    ev == SQLC_FAIL || ev == SQLC_QERROR ? c->msg : NULL);
}

/* my_kick - deliver what finished inside a call */
static void
my_kick(evutil_socket_t fd, short what, void *arg)
{
	struct sqlc *c = arg;

	(void)fd;
	(void)what;
	if (!c->have_pending)
		return;
	c->have_pending = 0;
	c->cb(c->arg, c->pending, c->pending == SQLC_RESULT ? &c->r : NULL,
	    c->pending == SQLC_FAIL || c->pending == SQLC_QERROR ? c->msg :
	    NULL);
}

/* my_wait - wait for what the library asks (MYSQL_WAIT_*) */
static int
my_wait(struct sqlc *c, int status)
{
	short	what = 0;
	int	fd = (int)mysql_get_socket(&c->my);

	if (c->ev != NULL) {
		event_free(c->ev);
		c->ev = NULL;
	}
	evtimer_del(c->tmo);
	if (status & (MYSQL_WAIT_READ | MYSQL_WAIT_EXCEPT))
		what |= EV_READ;
	if (status & MYSQL_WAIT_WRITE)
		what |= EV_WRITE;
	if (what != 0) {
		if (fd < 0 || (c->ev = event_new(c->base, fd, what, my_event,
		    c)) == NULL || event_add(c->ev, NULL) < 0)
			return -1;
	}
	if (status & MYSQL_WAIT_TIMEOUT) {
		unsigned ms = mysql_get_timeout_value_ms(&c->my);
		struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

		evtimer_add(c->tmo, &tv);
	}
	return 0;
}

/* my_fail_msg - the library's error; connection-level or not */
static int
my_conn_error(struct sqlc *c)
{
	unsigned e = mysql_errno(&c->my);

	snprintf(c->msg, sizeof(c->msg), "%s (%u)", mysql_error(&c->my), e);
	/* client errors (CR_*, 2000..2999) mean the connection is gone */
	return e >= 2000 && e < 3000;
}

/* my_rows - the stored result into c->r; 0, or -1 when too large */
static int
my_rows(struct sqlc *c, MYSQL_RES *res)
{
	MYSQL_ROW row;
	unsigned nf = mysql_num_fields(res);
	int	rc = 0;

	while (rc == 0 && (row = mysql_fetch_row(res)) != NULL)
		for (unsigned k = 0; k < nf; k++) {
			if (row[k] == NULL)
				continue;
			if (sqlcf_result_add(c->cf, c->key, row[k], &c->r) < 0) {
				snprintf(c->msg, sizeof(c->msg), "result larger "
				    "than expansion_limit or %d bytes",
				    SQLCF_RESULT_MAX);
				rc = -1;
				break;
			}
		}
	return rc;
}

/* my_step - run the state machine; ready = 0 to start an operation */
static void
my_step(struct sqlc *c, int ready)
{
	MYSQL  *ret;
	MYSQL_RES *res;
	int	status, err;

	for (;;) {
		switch (c->state) {
		case MY_CONNECT:
			status = mysql_real_connect_cont(&ret, &c->my, ready);
			if (status != 0)
				goto wait;
			if (ret == NULL) {
				my_conn_error(c);
				my_deliver(c, SQLC_FAIL, c->msg);
				return;
			}
			c->state = MY_IDLE;
			if (my_wait(c, MYSQL_WAIT_READ) < 0) {
				my_deliver(c, SQLC_FAIL, "cannot watch the socket");
				return;
			}
			my_deliver(c, SQLC_CONNECTED, NULL);
			return;
		case MY_QUERY:
			status = mysql_real_query_cont(&err, &c->my, ready);
			if (status != 0)
				goto wait;
			if (err != 0) {
				if (my_conn_error(c)) {
					my_deliver(c, SQLC_FAIL, c->msg);
					return;
				}
				c->state = MY_IDLE;
				if (my_wait(c, MYSQL_WAIT_READ) < 0) {
					my_deliver(c, SQLC_FAIL, "cannot watch");
					return;
				}
				my_deliver(c, SQLC_QERROR, c->msg);
				return;
			}
			c->state = MY_STORE;
			status = mysql_store_result_start(&res, &c->my);
			if (status != 0)
				goto wait;
			goto stored;
		case MY_STORE:
			status = mysql_store_result_cont(&res, &c->my, ready);
			if (status != 0)
				goto wait;
stored:
			if (res == NULL && mysql_field_count(&c->my) != 0) {
				if (my_conn_error(c)) {
					my_deliver(c, SQLC_FAIL, c->msg);
					return;
				}
				err = -1;
			} else {
				err = res != NULL ? my_rows(c, res) : 0;
				if (res != NULL)
					mysql_free_result(res);	/* stored: no I/O */
			}
			c->state = MY_IDLE;
			if (my_wait(c, MYSQL_WAIT_READ) < 0) {
				my_deliver(c, SQLC_FAIL, "cannot watch the socket");
				return;
			}
			my_deliver(c, err ? SQLC_QERROR : SQLC_RESULT, c->msg);
			return;
		case MY_IDLE:
			/* nothing is expected: readable means closed or killed */
			my_deliver(c, SQLC_FAIL, "the server closed the "
			    "connection");
			return;
		case MY_DEAD:
			return;
		}
	}
wait:
	if (my_wait(c, status) < 0)
		my_deliver(c, SQLC_FAIL, "cannot watch the socket");
}

/* my_event - the socket or the library's timer is ready */
static void
my_event(evutil_socket_t fd, short what, void *arg)
{
	struct sqlc *c = arg;
	int	ready = 0;

	(void)fd;
	if (what & EV_READ)
		ready |= MYSQL_WAIT_READ;
	if (what & EV_WRITE)
		ready |= MYSQL_WAIT_WRITE;
	if (what & EV_TIMEOUT)
		ready |= MYSQL_WAIT_TIMEOUT;
	if (c->ev != NULL) {
		event_free(c->ev);
		c->ev = NULL;
	}
	evtimer_del(c->tmo);
	my_step(c, ready);
}

/* my_open - start connecting (see sqldrv.h) */
static struct sqlc *
my_open(struct event_base *base, const struct sqlcf *cf,
    const struct sqlcf_host *h, sqlc_cb *cb, void *arg, char *err,
    size_t errlen)
{
	struct sqlc *c = calloc(1, sizeof(*c));
	MYSQL  *ret;
	unsigned timeout = (unsigned)(cf->timeout_ms + 999) / 1000;
	my_bool off = 0;
	int	status;

	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->base = base;
	c->cf = cf;
	c->cb = cb;
	c->arg = arg;
	if (mysql_init(&c->my) == NULL) {
		free(c);
		snprintf(err, errlen, "mysql_init: out of memory");
		return NULL;
	}
	c->tmo = evtimer_new(base, my_event, c);
	c->kick = evtimer_new(base, my_kick, c);
	if (c->tmo == NULL || c->kick == NULL) {
		snprintf(err, errlen, "out of memory");
		goto bad;
	}
	mysql_options(&c->my, MYSQL_OPT_NONBLOCK, 0);
	mysql_options(&c->my, MYSQL_SET_CHARSET_NAME, cf->charset);
	mysql_options(&c->my, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
	mysql_options(&c->my, MYSQL_OPT_LOCAL_INFILE, &off);
	mysql_options(&c->my, MYSQL_OPT_RECONNECT, &off);
	c->state = MY_CONNECT;
	c->in_call = 1;
	/* h->addr: the name's address, resolved by the caller */
	status = mysql_real_connect_start(&ret, &c->my, h->addr ? h->addr :
	    h->host, cf->user, cf->password, cf->dbname, (unsigned)h->port,
	    h->socket, 0);
	if (status != 0) {
		if (my_wait(c, status) < 0) {
			snprintf(err, errlen, "cannot watch the socket");
			goto bad;
		}
	} else if (ret == NULL) {
		my_conn_error(c);
		snprintf(err, errlen, "%s", c->msg);
		goto bad;
	} else {
		c->state = MY_IDLE;
		if (my_wait(c, MYSQL_WAIT_READ) < 0) {
			snprintf(err, errlen, "cannot watch the socket");
			goto bad;
		}
		my_deliver(c, SQLC_CONNECTED, NULL);
	}
	c->in_call = 0;
	return c;
bad:
	c->state = MY_DEAD;
	c->in_call = 0;
	if (c->ev != NULL)
		event_free(c->ev);
	if (c->tmo != NULL)
		event_free(c->tmo);
	if (c->kick != NULL)
		event_free(c->kick);
	mysql_close(&c->my);
	free(c);
	return NULL;
}

/* my_escape - sqlcf_render's escaper: the connection's own */
static size_t
my_escape(void *arg, char *to, const char *from, size_t len)
{
	return (size_t)mysql_real_escape_string(arg, to, from,
	    (unsigned long)len);
}

/* my_query - send the lookup (see sqldrv.h) */
static int
my_query(struct sqlc *c, const char *key, const struct sqlcf_bind *b,
    char *err, size_t errlen)
{
	char   *stmt;
	size_t	len;
	int	status, qerr;

	snprintf(c->key, sizeof(c->key), "%s", key);
	sqlcf_result_init(&c->r);
	if ((stmt = sqlcf_render(c->cf, b, my_escape, &c->my, &len)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	c->state = MY_QUERY;
	c->in_call = 1;
	status = mysql_real_query_start(&qerr, &c->my, stmt,
	    (unsigned long)len);
	free(stmt);		/* the library has sent or copied it */
	if (status != 0) {
		if (my_wait(c, status) < 0) {
			c->in_call = 0;
			snprintf(err, errlen, "cannot watch the socket");
			return -1;
		}
	} else {
		/* finished at once: the result part goes on from here */
		if (qerr != 0) {
			if (my_conn_error(c)) {
				c->in_call = 0;
				snprintf(err, errlen, "%s", c->msg);
				return -1;
			}
			c->state = MY_IDLE;
			my_wait(c, MYSQL_WAIT_READ);
			my_deliver(c, SQLC_QERROR, c->msg);
		} else {
			MYSQL_RES *res;

			c->state = MY_STORE;
			status = mysql_store_result_start(&res, &c->my);
			if (status != 0)
				my_wait(c, status);
			else {
				if (res != NULL) {
					qerr = my_rows(c, res);
					mysql_free_result(res);
				} else
					qerr = mysql_field_count(&c->my) != 0;
				c->state = MY_IDLE;
				my_wait(c, MYSQL_WAIT_READ);
				my_deliver(c, qerr ? SQLC_QERROR : SQLC_RESULT,
				    c->msg);
			}
		}
	}
	c->in_call = 0;
	return 0;
}

/* my_close - release without waiting for the server */
static void
my_close(struct sqlc *c)
{
	int	fd;

	if (c == NULL)
		return;
	if (c->ev != NULL)
		event_free(c->ev);
	event_free(c->tmo);
	event_free(c->kick);
	/*
	 * mysql_close() sends COM_QUIT; in the middle of an operation (a
	 * timed-out query) shut the socket down first so that nothing can
	 * wait on it.
	 */
	if (c->state != MY_IDLE && (fd = (int)mysql_get_socket(&c->my)) >= 0)
		shutdown(fd, SHUT_RDWR);
	mysql_close(&c->my);
	free(c);
}

const struct sqlc_driver sqlc_mysql = {
	.name = "mysql",
	.open = my_open,
	.query = my_query,
	.close = my_close,
};

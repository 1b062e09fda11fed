/*++
 * NAME
 *	server.h - the daemon's shared state and the connection/listener API
 * DESCRIPTION
 *	One process, one libevent loop. srv holds the current configuration
 *	snapshot, the state layer, the listeners and the open connections.
 *	Requests take a reference to srv.cfg when they start (config.h).
 *
 *	listener_open_all() binds every configured listener (before the
 *	privilege drop). An inet listener with a clients list closes a
 *	connection from any other address at once (counted in conn_refused,
 *	logged at most every few seconds).
 *
 *	At limits.max_connections (or srv.fd_cap, when the descriptor limit
 *	cannot be raised that far) a new client is admitted by closing the
 *	connection that has been idle longest (no request in flight, no reply
 *	unsent; Postfix reconnects transparently). Idle connections are kept
 *	in srv.idle, least recently used first, so this is O(1); evictions
 *	are counted in conn_evicted and logged once per burst. Only when
 *	every connection has a request in flight does accepting pause (new
 *	clients wait in the kernel backlog); it resumes as soon as one
 *	connection is idle again or closes.
 *
 *	listener_apply() gives the listeners the clients lists and explain
 *	flags of a reloaded configuration (matched by address); connections
 *	already open keep what they were accepted with.
 *
 *	conn_new() takes an accepted socket; explain tells whether
 *	policyd_explain is honoured on its listener (listen_spec.explain). A connection reads requests
 *	(proto.h), evaluates up to limits.max_pipeline of them at once
 *	(rules.h) and writes the replies strictly in request order. A peer
 *	that hangs up while requests wait for Redis is detached: the
 *	requests finish, their replies are dropped, then it is freed.
 *--*/
#ifndef POLICYD_SERVER_H
#define POLICYD_SERVER_H

#include <sys/queue.h>

#include "config.h"
#include "stats.h"

struct event_base;
struct evconnlistener;
struct store;
struct conn;

TAILQ_HEAD(conn_list, conn);

struct cidr;

struct listener {
	struct evconnlistener *lev;
	char	*unix_path;		/* to unlink at exit */
	char	*address;
	struct cidr *clients;		/* who may connect, nclients == 0: all */
	int	nclients;
	int	explain;		/* honour policyd_explain */
};

struct server {
	struct event_base *base;
	/*
	 * pause (1) or resume (0) accepting: set by listener_open_all(), so
	 * that conn.c never calls back into listener.c (no include cycle)
	 */
	void	(*pause_accept)(int pause);
	struct config *cfg;		/* current snapshot */
	struct store *store;
	struct resolver *resolver;	/* DNS for the checks (resolver.h) */
	struct listener *listeners;
	int	nlisteners;
	int	accepting_paused;
	int	stopping;
	struct conn_list conns;
	int	nconns;
	struct conn_list idle;		/* idle connections, longest idle first */
	int	nidle;
	int	fd_cap;			/* lower cap set by RLIMIT_NOFILE, or 0 */
	unsigned long long conn_evicted;	/* idle ones closed at the cap */
	unsigned long long conn_refused;	/* not in a clients list */
	struct stats stats;
	const char *config_path;
	int	foreground;
};

extern struct server srv;

int	listener_open_all(const struct config *c);
void	listener_apply(const struct config *c);	/* reload: clients, explain */
void	listener_pause(int pause);
void	listener_close_all(void);

const char *self_user(void);		/* main.c: the user we run as, for logs */

void	conn_new(int fd, const char *peer, int explain);
void	conn_shutdown_all(void);	/* stop reading; close when idle */
void	conn_close_all(void);		/* at exit: free everything */

#endif

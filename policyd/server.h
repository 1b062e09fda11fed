/*++
 * NAME
 *	server.h - the daemon's shared state and the connection/listener API
 * DESCRIPTION
 *	One process, one libevent loop. srv holds the current configuration
 *	snapshot, the state layer, the listeners and the open connections.
 *	Requests take a reference to srv.cfg when they start (config.h).
 *
 *	listener_open_all() binds every configured listener (before the
 *	privilege drop); connections beyond limits.max_connections wait in
 *	the kernel backlog: accepting pauses at the cap and resumes below it.
 *
 *	conn_new() takes an accepted socket. A connection reads requests
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

struct listener {
	struct evconnlistener *lev;
	char	*unix_path;		/* to unlink at exit */
	char	*address;
};

struct server {
	struct event_base *base;
	struct config *cfg;		/* current snapshot */
	struct store *store;
	struct listener *listeners;
	int	nlisteners;
	int	accepting_paused;
	int	stopping;
	struct conn_list conns;
	int	nconns;
	struct stats stats;
	const char *config_path;
	int	foreground;
};

extern struct server srv;

int	listener_open_all(const struct config *c);
void	listener_pause(int pause);
void	listener_close_all(void);

void	conn_new(int fd, const char *peer);
void	conn_shutdown_all(void);	/* stop reading; close when idle */
void	conn_close_all(void);		/* at exit: free everything */

#endif

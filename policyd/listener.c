/*++
 * NAME
 *	listener.c - inet and unix listeners with an accept cap and client lists
 *--*/
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <netdb.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "addr.h"
#include "log.h"
#include "server.h"

/*
 * Out of descriptors (EMFILE and the like): the pending connection stays
 * in the backlog and the listening socket stays readable, so accepting
 * again at once would spin and log without end. Accepting stops for
 * FD_PAUSE_MS (one log line per episode); a later successful accept ends
 * the episode.
 */
#define FD_PAUSE_MS	100

static struct event *fd_pause_timer;
static int fd_episode;			/* in an out-of-descriptors episode */
static unsigned long long fd_failures;

/*
 * A connect storm must not starve the clients already connected: libevent
 * accepts until the backlog is empty, so after ACCEPT_BURST accepts in one
 * loop round accepting stops until the next round, when the events of
 * everybody else have been served.
 */
#define ACCEPT_BURST	64

static struct event *burst_timer;
static int burst, burst_paused;

/*
 * Refused clients (not in a listener's clients list) are logged at most
 * once every REFUSE_LOG_S seconds, with the number refused in between.
 */
#define REFUSE_LOG_S	10

static time_t refuse_logged;
static unsigned long long refuse_unlogged;

/* listener_allowed - is the peer in the listener's clients list? */
static int
listener_allowed(const struct listener *l, const struct sockaddr *sa)
{
	struct ipaddr ip;

	if (l->nclients == 0)
		return 1;
	memset(&ip, 0, sizeof(ip));
	if (sa->sa_family == AF_INET) {
		ip.family = AF_INET;
		memcpy(ip.a, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a6)) {
			ip.family = AF_INET;
			memcpy(ip.a, a6->s6_addr + 12, 4);
		} else {
			ip.family = AF_INET6;
			memcpy(ip.a, a6->s6_addr, 16);
		}
	} else {
		return 0;
	}
	for (int i = 0; i < l->nclients; i++)
		if (addr_cidr_match(&l->clients[i], &ip))
			return 1;
	return 0;
}

/* listener_refuse - close a connection from outside the clients list */
static void
listener_refuse(const struct listener *l, int fd, const char *host)
{
	time_t	now = time(NULL);

	close(fd);
	srv.conn_refused++;
	if (refuse_logged != 0 && now - refuse_logged < REFUSE_LOG_S) {
		refuse_unlogged++;
		return;
	}
	if (refuse_unlogged > 0)
		log_warnx("%s: refused a connection from %s: not in the "
		    "listener's clients list (and %llu more refused in the "
		    "last %d s)", l->address, host, refuse_unlogged,
		    REFUSE_LOG_S);
	else
		log_warnx("%s: refused a connection from %s: not in the "
		    "listener's clients list", l->address, host);
	refuse_logged = now;
	refuse_unlogged = 0;
}

/* listener_enable_all - enable or disable every listener (no bookkeeping) */
static void
listener_enable_all(int on)
{
	for (int i = 0; i < srv.nlisteners; i++) {
		if (srv.listeners[i].lev == NULL)
			continue;
		if (on)
			evconnlistener_enable(srv.listeners[i].lev);
		else
			evconnlistener_disable(srv.listeners[i].lev);
	}
}

/* listener_fd_resume - the pause after EMFILE is over: try again */
static void
listener_fd_resume(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (!srv.stopping && !srv.accepting_paused)
		listener_enable_all(1);
}

/* listener_burst_over - a new loop round: accept again */
static void
listener_burst_over(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	burst = 0;
	if (burst_paused && !srv.stopping && !srv.accepting_paused &&
	    !fd_episode)
		listener_enable_all(1);
	burst_paused = 0;
}

/* listener_count_burst - one more accept in this loop round */
static void
listener_count_burst(void)
{
	static const struct timeval now = { 0, 0 };

	if (burst_timer == NULL &&
	    (burst_timer = evtimer_new(srv.base, listener_burst_over, NULL)) == NULL)
		return;
	if (burst++ == 0)
		evtimer_add(burst_timer, &now);
	if (burst >= ACCEPT_BURST && !burst_paused) {
		burst_paused = 1;
		listener_enable_all(0);
	}
}

/* listener_accept - a new client */
static void
listener_accept(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct listener *l = arg;
	char	peer[80], host[INET6_ADDRSTRLEN];
	int	one = 1;

	(void)lev;
	if (srv.stopping) {
		close(fd);
		return;
	}
	if (fd_episode) {
		log_info("accepting connections again after %llu failed "
		    "accepts (out of file descriptors)", fd_failures);
		fd_episode = 0;
		fd_failures = 0;
	}
	if (sa->sa_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(peer, sizeof(peer), "%s:%d", host, ntohs(in->sin_port));
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	} else if (sa->sa_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(peer, sizeof(peer), "[%s]:%d", host,
		    ntohs(in6->sin6_port));
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	} else {
		snprintf(peer, sizeof(peer), "%.70s", l->address);
		host[0] = '\0';
	}
	(void)salen;
	if (!listener_allowed(l, sa)) {
		listener_refuse(l, fd, host);
		listener_count_burst();
		return;
	}
	conn_new(fd, peer, l->explain);
	listener_count_burst();
}

/* listener_error - accept() failed (EMFILE and the like) */
static void
listener_error(struct evconnlistener *lev, void *arg)
{
	struct listener *l = arg;
	int	err = EVUTIL_SOCKET_ERROR();

	(void)lev;
	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
		struct timeval tv = { 0, FD_PAUSE_MS * 1000 };

		if (!fd_episode)
			log_warnx("%s: accept: %s (%d connections open): pausing "
			    "accept, clients wait in the backlog", l->address,
			    strerror(err), srv.nconns);
		fd_episode = 1;
		fd_failures++;
		listener_enable_all(0);
		if (fd_pause_timer == NULL)
			fd_pause_timer = evtimer_new(srv.base, listener_fd_resume,
			    NULL);
		if (fd_pause_timer != NULL)
			evtimer_add(fd_pause_timer, &tv);
		return;
	}
	log_warnx("%s: accept: %s", l->address, strerror(err));
}

/* listener_inet - bind inet:HOST:PORT or inet:[V6]:PORT */
static int
listener_inet(struct listener *l, const char *spec)
{
	char	host[256], port[16];
	const char *colon = strrchr(spec, ':');
	struct addrinfo hints, *res, *ai;
	size_t	hl = colon - spec;
	int	rc, fd = -1, one = 1;

	if (hl >= 2 && spec[0] == '[' && spec[hl - 1] == ']') {
		spec++;
		hl -= 2;
	}
	if (hl >= sizeof(host) || strlen(colon + 1) >= sizeof(port)) {
		log_errx("%s: address too long", l->address);
		return -1;
	}
	memcpy(host, spec, hl);
	host[hl] = '\0';
	snprintf(port, sizeof(port), "%s", colon + 1);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if ((rc = getaddrinfo(hl ? host : NULL, port, &hints, &res)) != 0) {
		log_errx("%s: %s", l->address, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one,
			    sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		rc = errno;
		close(fd);
		fd = -1;
		errno = rc;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		log_warn("%s: bind", l->address);
		return -1;
	}
	return fd;
}

/* listener_unix - bind unix:PATH with mode and owner */
static int
listener_unix(struct listener *l, const struct listen_spec *ls)
{
	struct sockaddr_un sun;
	const char *path = ls->address + 5;
	int	fd;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		log_errx("%s: path too long", l->address);
		return -1;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path));
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) < 0) {
		log_warn("%s: socket", l->address);
		return -1;
	}
	/* a stale socket from a previous run: remove it, but only a socket */
	{
		struct stat st;

		if (lstat(path, &st) == 0) {
			if (!S_ISSOCK(st.st_mode)) {
				log_errx("%s: exists and is not a socket",
				    l->address);
				close(fd);
				return -1;
			}
			unlink(path);
		}
	}
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		log_warn("%s: bind", l->address);
		close(fd);
		return -1;
	}
	l->unix_path = strdup(path);
	if (chmod(path, ls->mode >= 0 ? (mode_t)ls->mode : 0666) < 0)
		log_warn("%s: chmod", l->address);
	if (ls->owner || ls->group) {
		uid_t	uid = (uid_t)-1;
		gid_t	gid = (gid_t)-1;

		if (ls->owner) {
			struct passwd *pw = getpwnam(ls->owner);

			if (pw == NULL) {
				log_errx("%s: unknown owner \"%s\"", l->address,
				    ls->owner);
				close(fd);
				return -1;
			}
			uid = pw->pw_uid;
		}
		if (ls->group) {
			struct group *gr = getgrnam(ls->group);

			if (gr == NULL) {
				log_errx("%s: unknown group \"%s\"", l->address,
				    ls->group);
				close(fd);
				return -1;
			}
			gid = gr->gr_gid;
		}
		if (chown(path, uid, gid) < 0)
			log_warn("%s: chown", l->address);
	}
	return fd;
}

/* listener_set_clients - copy a spec's clients list and explain flag */
static void
listener_set_clients(struct listener *l, const struct listen_spec *ls)
{
	free(l->clients);
	l->clients = NULL;
	l->nclients = 0;
	l->explain = ls->explain;
	if (ls->nclients == 0)
		return;
	if ((l->clients = calloc(ls->nclients, sizeof(*l->clients))) == NULL)
		fatalx("out of memory");
	memcpy(l->clients, ls->clients, ls->nclients * sizeof(*l->clients));
	l->nclients = ls->nclients;
}

/* listener_open_all - bind every configured listener */
int
listener_open_all(const struct config *c)
{
	srv.pause_accept = listener_pause;
	srv.listeners = calloc(c->nlisten, sizeof(*srv.listeners));
	srv.nlisteners = c->nlisten;
	for (int i = 0; i < c->nlisten; i++) {
		struct listener *l = &srv.listeners[i];
		const struct listen_spec *ls = &c->listen[i];
		int	fd;

		l->address = strdup(ls->address);
		listener_set_clients(l, ls);
		if (strncmp(ls->address, "inet:", 5) == 0 &&
		    !listen_is_loopback(ls->address) && ls->nclients == 0)
			log_warnx("%s:%d: listen: %s is not a loopback address "
			    "and has no clients list: anyone who can reach it "
			    "can charge rate limits and write greylist state "
			    "(set clients = [ \"192.0.2.0/24\", ... ])",
			    c->path, ls->line, ls->address);
		if (strncmp(ls->address, "unix:", 5) == 0)
			fd = listener_unix(l, ls);
		else
			fd = listener_inet(l, ls->address + 5);
		if (fd < 0)
			return -1;
		l->lev = evconnlistener_new(srv.base, listener_accept, l,
		    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 1024, fd);
		if (l->lev == NULL) {
			log_warn("%s: listen", l->address);
			close(fd);
			return -1;
		}
		evconnlistener_set_error_cb(l->lev, listener_error);
		log_info("listening on %s", l->address);
	}
	return 0;
}

/*
 * listener_apply - a reload: the clients list and explain flag of every
 * listener whose address is in the new configuration take effect for the
 * connections accepted from now on
 */
void
listener_apply(const struct config *c)
{
	for (int i = 0; i < srv.nlisteners; i++) {
		struct listener *l = &srv.listeners[i];

		for (int j = 0; j < c->nlisten; j++) {
			if (strcmp(c->listen[j].address, l->address) == 0) {
				listener_set_clients(l, &c->listen[j]);
				break;
			}
		}
	}
}

/* listener_pause - stop or resume accepting */
void
listener_pause(int pause)
{
	for (int i = 0; i < srv.nlisteners; i++) {
		if (srv.listeners[i].lev == NULL)
			continue;
		if (pause)
			evconnlistener_disable(srv.listeners[i].lev);
		else
			evconnlistener_enable(srv.listeners[i].lev);
	}
	srv.accepting_paused = pause;
}

/* listener_close_all - stop listening and remove unix sockets */
void
listener_close_all(void)
{
	if (burst_timer != NULL) {
		event_free(burst_timer);
		burst_timer = NULL;
	}
	if (fd_pause_timer != NULL) {
		event_free(fd_pause_timer);
		fd_pause_timer = NULL;
	}
	for (int i = 0; i < srv.nlisteners; i++) {
		struct listener *l = &srv.listeners[i];

		if (l->lev)
			evconnlistener_free(l->lev);
		if (l->unix_path) {
			/* after the privilege drop the directory may be root's
			 * or Postfix's: the socket stays, and the next start
			 * (as root) replaces it */
			if (unlink(l->unix_path) < 0 && errno != ENOENT)
				log_info("%s: left in place: user %s cannot "
				    "remove it (%s); the next start replaces it",
				    l->address, self_user(), strerror(errno));
			free(l->unix_path);
		}
		free(l->address);
		free(l->clients);
	}
	free(srv.listeners);
	srv.listeners = NULL;
	srv.nlisteners = 0;
}

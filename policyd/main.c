/*++
 * NAME
 *	policyd - Postfix policy delegation daemon (see policyd(8))
 * SYNOPSIS
 *	policyd [-f] [-t] [-c FILE] [-V] [-h]
 * DESCRIPTION
 *	Start-up order: options, configuration (its path made absolute),
 *	daemon(), listeners and pidfile (as root), drop privileges, state
 *	layer, event loop. SIGHUP reloads the configuration atomically: rules,
 *	maps, limits, Redis, log and metrics settings take effect; listen,
 *	user, group, run_as_root and pidfile keep their running values until
 *	a restart, with a warning naming them. SIGTERM and SIGINT stop
 *	accepting, answer what is in flight and exit 0.
 *--*/
#include <sys/types.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "metrics.h"
#include "resolver.h"
#include "rules.h"
#include "server.h"
#include "store.h"
#include "table.h"

#ifndef POLICYD_VERSION
#define POLICYD_VERSION "0.1.0"
#endif

#define SHUTDOWN_GRACE_S	5

struct server srv;

static struct event *ev_hup, *ev_term, *ev_int, *ev_grace, *ev_drain;
static int pidfile_fd = -1;		/* kept open: see remove_pidfile() */

/* usage - print the synopsis */
static void
usage(FILE *f)
{
	fprintf(f, "usage: policyd [-f] [-t] [-c FILE] [-V] [-h]\n"
	    "  -c FILE  configuration file (default %s)\n"
	    "  -f       stay in the foreground, log to stderr\n"
	    "  -t       check the configuration and exit\n"
	    "  -V       print the version and exit\n"
	    "  -h       this help\n", CONFIG_DEFAULT_PATH);
}

/* same_store - do two snapshots talk to Redis the same way? */
static int
same_store(const struct store_config *a, const struct store_config *b)
{
#define SEQ(x, y) ((x) == NULL ? (y) == NULL : ((y) != NULL && strcmp(x, y) == 0))
	return SEQ(a->address, b->address) && SEQ(a->username, b->username) &&
	    SEQ(a->password, b->password) && SEQ(a->prefix, b->prefix) &&
	    SEQ(a->sentinel_password, b->sentinel_password) &&
	    a->database == b->database && a->timeout_ms == b->timeout_ms &&
	    a->connect_timeout_ms == b->connect_timeout_ms;
#undef SEQ
}

/*
 * raise_nofile - make room for limits.max_connections clients plus Redis,
 * listeners, logging and metrics: raise the soft descriptor limit (and,
 * as root, the hard one) instead of pausing accept at an inherited 1024.
 * When that is not possible, srv.fd_cap lowers the connection cap to what
 * fits, so that new clients still get in by closing idle ones (conn.c)
 * rather than waiting in the backlog after EMFILE.
 */
static void
raise_nofile(int max_connections)
{
	struct rlimit rl;
	rlim_t	need = (rlim_t)max_connections + 64;

	srv.fd_cap = 0;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= need)
		return;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need &&
	    geteuid() == 0)
		rl.rlim_max = need;
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ?
	    need : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0 &&
	    getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur < need) {
		srv.fd_cap = rl.rlim_cur > 128 ? (int)(rl.rlim_cur - 64) :
		    (int)(rl.rlim_cur / 2);
		log_warnx("file descriptor limit %llu is below limits."
		    "max_connections (%d) + 64: the connection cap is %d; "
		    "raise the limit (systemd: LimitNOFILE=)",
		    (unsigned long long)rl.rlim_cur, max_connections,
		    srv.fd_cap);
	}
}

/* same_str - two optional strings are equal */
static int
same_str(const char *a, const char *b)
{
	return a == NULL ? b == NULL : (b != NULL && strcmp(a, b) == 0);
}

/* same_listen - would the new listen list bind the same sockets? */
static int
same_listen(const struct config *a, const struct config *b)
{
	if (a->nlisten != b->nlisten)
		return 0;
	for (int i = 0; i < a->nlisten; i++) {
		const struct listen_spec *x = &a->listen[i], *y = &b->listen[i];

		if (!same_str(x->address, y->address) || x->mode != y->mode ||
		    !same_str(x->owner, y->owner) || !same_str(x->group, y->group))
			return 0;
	}
	return 1;
}

#define SWAP(type, x, y) do { type t_ = (x); (x) = (y); (y) = t_; } while (0)

/* note_setting - append name to the comma-separated list in buf */
static void
note_setting(char *buf, size_t len, const char *name)
{
	size_t	used = strlen(buf);

	snprintf(buf + used, len - used, "%s%s", used ? ", " : "", name);
}

/*
 * keep_startup_settings - the settings that only a start can apply (the
 * listeners are bound and the pidfile written as root, the privilege drop
 * cannot be undone): when the new snapshot changes them, it takes the
 * running values instead, so that srv.cfg always describes what runs, and
 * their names are listed in buf for the warning.
 */
static void
keep_startup_settings(struct config *nc, struct config *oc, char *buf,
    size_t len)
{
	buf[0] = '\0';
	if (!same_listen(nc, oc)) {
		note_setting(buf, len, "listen");
		SWAP(struct listen_spec *, nc->listen, oc->listen);
		SWAP(int, nc->nlisten, oc->nlisten);
	}
	if (!same_str(nc->user, oc->user)) {
		note_setting(buf, len, "user");
		SWAP(char *, nc->user, oc->user);
	}
	if (!same_str(nc->group, oc->group)) {
		note_setting(buf, len, "group");
		SWAP(char *, nc->group, oc->group);
	}
	if (nc->run_as_root != oc->run_as_root) {
		note_setting(buf, len, "run_as_root");
		nc->run_as_root = oc->run_as_root;
	}
	if (!same_str(nc->pidfile, oc->pidfile)) {
		note_setting(buf, len, "pidfile");
		SWAP(char *, nc->pidfile, oc->pidfile);
	}
}

/*
 * apply_metrics - a changed metrics.address: close the HTTP listener and
 * open the new one; when the new address cannot be bound, listen on the
 * old one again, keep it in the snapshot and say so in buf.
 */
static void
apply_metrics(struct config *nc, struct config *oc, char *buf, size_t len)
{
	if (same_str(nc->metrics_address, oc->metrics_address))
		return;
	metrics_stop();
	if (metrics_start(nc->metrics_address) == 0) {
		if (nc->metrics_address[0] == '\0')
			log_info("metrics: off");
		return;
	}
	if (oc->metrics_address[0] == '\0')
		log_warnx("reload: metrics.address \"%s\" cannot be used: "
		    "metrics stay off", nc->metrics_address);
	else if (metrics_start(oc->metrics_address) == 0)
		log_warnx("reload: metrics.address \"%s\" cannot be used: "
		    "metrics stay on \"%s\"", nc->metrics_address,
		    oc->metrics_address);
	else
		log_warnx("reload: metrics.address \"%s\" cannot be used, nor "
		    "\"%s\" again: running without metrics",
		    nc->metrics_address, oc->metrics_address);
	SWAP(char *, nc->metrics_address, oc->metrics_address);
	note_setting(buf, len, "metrics.address");
}

/*
 * reload - SIGHUP: build a new snapshot, swap only when it is good. The
 * rules, maps, limits, Redis, logging and metrics settings take effect;
 * listen, user, group, run_as_root and pidfile need a restart, and the
 * log says so instead of claiming a full reload.
 */
static void
reload(evutil_socket_t sig, short what, void *arg)
{
	struct config *nc, *oc = srv.cfg;
	char	kept[128], failed[64];
	int	nerr = 0;

	(void)sig;
	(void)what;
	(void)arg;
	log_info("SIGHUP: reloading %s", srv.config_path);
	if ((nc = config_load(srv.config_path, &nerr)) == NULL) {
		srv.stats.reload_failures++;
		log_errx("reload failed (%d error%s above): keeping the running "
		    "configuration (generation %u)", nerr, nerr == 1 ? "" : "s",
		    oc->generation);
		return;
	}
	nc->generation = oc->generation + 1;
	/* the rest of this reload's lines already go to the new facility */
	if (!srv.foreground && nc->log_facility != oc->log_facility)
		log_init("policyd", 0, nc->log_facility);
	keep_startup_settings(nc, oc, kept, sizeof(kept));
	if (kept[0] != '\0')
		log_warnx("reload: %s changed: %s effect only after a restart; "
		    "the rest of the configuration was reloaded", kept,
		    strchr(kept, ',') ? "these take" : "this takes");
	failed[0] = '\0';
	apply_metrics(nc, oc, failed, sizeof(failed));
	if (!same_store(&nc->redis, &oc->redis)) {
		struct store *ns = store_new(srv.base, &nc->redis);

		if (ns != NULL) {
			/* in-flight requests fail over to on_error, fine */
			store_free(srv.store);
			srv.store = ns;
		}
	}
	if (srv.resolver != NULL)
		resolver_configure(srv.resolver, &nc->dns);
	log_set_level(nc->log_level);
	raise_nofile(nc->max_connections);
	listener_apply(nc);
	config_unref(oc);
	srv.cfg = nc;
	srv.stats.reloads++;
	if (kept[0] == '\0' && failed[0] == '\0')
		log_info("reloaded: generation %u, %d rules", nc->generation,
		    nc->nrules);
	else
		log_info("reloaded: generation %u, %d rules; not applied: "
		    "%s%s%s%s%s", nc->generation, nc->nrules, kept,
		    kept[0] ? " (restart needed)" : "",
		    kept[0] && failed[0] ? ", " : "", failed,
		    failed[0] ? " (cannot listen)" : "");
}

/* drain_check - exit the loop once every connection is gone */
static void
drain_check(evutil_socket_t fd, short what, void *arg)
{
	struct timeval tv = { 0, 20000 };

	(void)fd;
	(void)what;
	(void)arg;
	if (srv.nconns == 0) {
		event_base_loopexit(srv.base, NULL);
		return;
	}
	evtimer_add(ev_drain, &tv);
}

/* grace_expired - stop waiting for slow requests */
static void
grace_expired(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	log_warnx("shutdown: %d connections still busy after %d s: exiting",
	    srv.nconns, SHUTDOWN_GRACE_S);
	event_base_loopexit(srv.base, NULL);
}

/* terminate - SIGTERM / SIGINT: graceful stop */
static void
terminate(evutil_socket_t sig, short what, void *arg)
{
	struct timeval grace = { SHUTDOWN_GRACE_S, 0 };

	(void)what;
	(void)arg;
	if (srv.stopping)
		return;
	srv.stopping = 1;
	log_info("%s: stopping: no new connections, answering requests in "
	    "flight", strsignal(sig));
	listener_close_all();
	conn_shutdown_all();
	evtimer_add(ev_grace, &grace);
	drain_check(-1, 0, NULL);
}

/* drop_privileges - become the configured user after binding */
static int
drop_privileges(const struct config *c)
{
	struct passwd *pw;
	gid_t	gid;

	if (geteuid() != 0)
		return 0;
	if (c->run_as_root) {
		log_warnx("running as root (run_as_root = true)");
		return 0;
	}
	if ((pw = getpwnam(c->user)) == NULL) {
		log_errx("user \"%s\" does not exist; create it or set user = "
		    "\"...\" (or run_as_root = true, not recommended)", c->user);
		return -1;
	}
	gid = pw->pw_gid;
	if (c->group) {
		struct group *gr = getgrnam(c->group);

		if (gr == NULL) {
			log_errx("group \"%s\" does not exist", c->group);
			return -1;
		}
		gid = gr->gr_gid;
	}
	if (initgroups(pw->pw_name, gid) < 0 || setresgid(gid, gid, gid) < 0 ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0) {
		log_warn("cannot drop privileges to %s", c->user);
		return -1;
	}
	log_info("running as user %s (uid %d, gid %d)", pw->pw_name,
	    (int)pw->pw_uid, (int)gid);
	return 0;
}

/*
 * write_pidfile - "PID\n", written as root before the privilege drop, so it
 * must not be a way to write elsewhere: a symbolic link at the path is
 * refused (O_NOFOLLOW), and so is anything but a regular file of our own
 * with a single link (a hard link to another file, a FIFO, a file planted
 * by another user). The file is truncated only after these checks.
 */
static int
write_pidfile(const char *path)
{
	struct stat st;
	char	buf[32];
	int	fd, n;

	if (path == NULL || path[0] == '\0')
		return 0;
	if ((fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK |
	    O_CLOEXEC, 0644)) < 0) {
		if (errno == ELOOP)
			log_errx("pidfile %s: is a symbolic link: refusing to "
			    "follow it", path);
		else if (errno == ENXIO)	/* a FIFO without a reader */
			log_errx("pidfile %s: not a regular file: refusing to "
			    "write it", path);
		else
			log_warn("pidfile %s", path);
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		log_warn("pidfile %s", path);
		close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode) || st.st_nlink != 1 || st.st_uid != geteuid()) {
		log_errx("pidfile %s: %s: refusing to write it", path,
		    !S_ISREG(st.st_mode) ? "not a regular file" :
		    st.st_nlink != 1 ? "has other hard links" :
		    "owned by another user");
		close(fd);
		return -1;
	}
	n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || write(fd, buf, n) != n) {
		log_warn("pidfile %s", path);
		close(fd);
		return -1;
	}
	pidfile_fd = fd;		/* to empty it at exit (remove_pidfile) */
	return 0;
}

/*
 * self_user - the name of the user policyd runs as now, for log lines
 */
const char *
self_user(void)
{
	static char num[24];
	struct passwd *pw;

	if ((pw = getpwuid(geteuid())) != NULL)
		return pw->pw_name;
	snprintf(num, sizeof(num), "uid %ld", (long)geteuid());
	return num;
}

/*
 * remove_pidfile - at exit. After the privilege drop the user may not be
 * allowed to remove files from the pidfile's directory (root's /run,
 * Postfix's private/): the file is then emptied through the descriptor
 * kept from the start, so that it names no process that could later get
 * the same pid, and the next start (as root) rewrites it.
 */
static void
remove_pidfile(const char *path)
{
	if (path == NULL)
		return;
	if (unlink(path) == 0 || errno == ENOENT)
		;
	else if ((errno == EACCES || errno == EPERM) && pidfile_fd >= 0 &&
	    ftruncate(pidfile_fd, 0) == 0)
		log_info("pidfile %s emptied: user %s cannot remove it from "
		    "its directory", path, self_user());
	else
		log_warn("cannot remove pidfile %s", path);
	if (pidfile_fd >= 0)
		close(pidfile_fd);
	pidfile_fd = -1;
}

/*
 * absolute_path - the configuration path made absolute against the
 * working directory, so that SIGHUP finds it after daemon() has changed
 * to "/" (symbolic links are kept: a link switched to a new file is
 * followed at the next reload).
 */
static char *
absolute_path(const char *path)
{
	char	*cwd, *abs;

	if (path[0] == '/')
		return strdup(path);
	if ((cwd = getcwd(NULL, 0)) == NULL)
		fatal("getcwd");
	if (asprintf(&abs, "%s/%s", cwd, path) < 0)
		abs = NULL;
	free(cwd);
	return abs;
}

int
main(int argc, char **argv)
{
	const char *path = CONFIG_DEFAULT_PATH;
	int	ch, test_only = 0, nerr = 0;
	char	*pidfile, *abs_path = NULL;

	while ((ch = getopt(argc, argv, "c:fthV")) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'f':
			srv.foreground = 1;
			break;
		case 't':
			test_only = 1;
			break;
		case 'V':
			printf("policyd %s\n", POLICYD_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	/* errors go to stderr until the configuration says otherwise */
	log_init("policyd", 1, 0);
	if (!test_only) {
		if ((abs_path = absolute_path(path)) == NULL)
			fatalx("out of memory");
		path = abs_path;
	}
	srv.config_path = path;
	if ((srv.cfg = config_load(path, &nerr)) == NULL) {
		fprintf(stderr, "policyd: %s: %d error%s\n", path, nerr,
		    nerr == 1 ? "" : "s");
		free(abs_path);
		return 1;
	}
	if (test_only) {
		printf("policyd: %s: configuration OK (%d rules)\n", path,
		    srv.cfg->nrules);
		config_unref(srv.cfg);
		return 0;
	}
	srv.cfg->generation = 1;
	if (!srv.foreground) {
		if (daemon(0, 0) < 0)
			fatal("daemon");
		log_init("policyd", 0, srv.cfg->log_facility);
	}
	log_set_level(srv.cfg->log_level);
	signal(SIGPIPE, SIG_IGN);
	TAILQ_INIT(&srv.conns);
	TAILQ_INIT(&srv.idle);
	if ((srv.base = event_base_new()) == NULL)
		fatalx("cannot create the event loop");
	log_attach(srv.base);		/* batched, non-blocking from here */
	table_set_base(srv.base);
	raise_nofile(srv.cfg->max_connections);
	if (listener_open_all(srv.cfg) < 0)
		fatalx("cannot open the listeners");
	pidfile = srv.cfg->pidfile[0] ? strdup(srv.cfg->pidfile) : NULL;
	if (write_pidfile(pidfile) < 0)
		fatalx("cannot write the pidfile");
	if (drop_privileges(srv.cfg) < 0)
		fatalx("refusing to run with privileges");
	if ((srv.store = store_new(srv.base, &srv.cfg->redis)) == NULL)
		fatalx("out of memory");
	if ((srv.resolver = resolver_new(srv.base, &srv.cfg->dns)) == NULL)
		fatalx("out of memory");
	table_set_resolver(srv.resolver);	/* SQL hosts by name */
	metrics_start(srv.cfg->metrics_address);
	ev_hup = evsignal_new(srv.base, SIGHUP, reload, NULL);
	ev_term = evsignal_new(srv.base, SIGTERM, terminate, NULL);
	ev_int = evsignal_new(srv.base, SIGINT, terminate, NULL);
	ev_grace = evtimer_new(srv.base, grace_expired, NULL);
	ev_drain = evtimer_new(srv.base, drain_check, NULL);
	evsignal_add(ev_hup, NULL);
	evsignal_add(ev_term, NULL);
	evsignal_add(ev_int, NULL);
	log_info("policyd %s started: %d rules, redis %s", POLICYD_VERSION,
	    srv.cfg->nrules, srv.cfg->redis.address);

	event_base_dispatch(srv.base);

	listener_close_all();
	metrics_stop();
	table_shutdown();		/* fails any SQL lookup, drops its DNS */
	resolver_free(srv.resolver);	/* answers DNS_SHUTDOWN to queries left */
	srv.resolver = NULL;
	store_free(srv.store);		/* fails any command still pending */
	conn_close_all();
	remove_pidfile(pidfile);
	free(pidfile);
	log_info("stopped: %llu requests answered", srv.stats.replies);
	event_free(ev_hup);
	event_free(ev_term);
	event_free(ev_int);
	event_free(ev_grace);
	event_free(ev_drain);
	config_unref(srv.cfg);
	free(abs_path);
	stats_free();
	log_attach(NULL);		/* flushes what is left */
	event_base_free(srv.base);
	return 0;
}

/*++
 * NAME
 *	config.h - the configuration: one immutable, reference-counted snapshot
 * DESCRIPTION
 *	config_load() reads a libconfig file, compiles the rules (conditions,
 *	checks, maps) and validates everything. It either returns a complete
 *	snapshot or NULL with every problem reported as "file:line: message"
 *	through log_errx() (and counted in *nerrors). On SIGHUP the daemon
 *	loads a new snapshot and swaps it in only when it loaded cleanly;
 *	each request holds a reference (config_ref/config_unref) to the
 *	snapshot it started on, so reloading never disturbs a request.
 *
 *	Every setting, its default and its bounds are declared in config.c
 *	and documented in rules/policyd.conf and policyd.conf(5).
 *--*/
#ifndef POLICYD_CONFIG_H
#define POLICYD_CONFIG_H

#include <stdio.h>

#include "proto.h"
#include "resolver.h"
#include "store.h"

#define CONFIG_DEFAULT_PATH	"/etc/policyd/policyd.conf"

struct rule;
struct cidr;

/*
 * A listener. clients (inet only) is the list of networks that may
 * connect; nclients == 0 means everybody. explain tells whether
 * policyd_explain traces are given on this listener: by default on unix
 * sockets and loopback addresses only (listen_is_loopback()).
 */
struct listen_spec {
	char	*address;		/* inet:HOST:PORT, inet:[V6]:PORT, unix:PATH */
	int	mode;			/* unix socket mode, -1 = default 0666 */
	char	*owner, *group;		/* unix socket owner / group, or NULL */
	struct cidr *clients;		/* who may connect (inet), or NULL */
	int	nclients;
	int	explain;		/* honour policyd_explain */
	int	line;
};

struct config {
	int	refs;
	unsigned generation;
	char	*path;
	char	*dir;			/* for relative map paths */
	struct listen_spec *listen;
	int	nlisten;
	struct proto_limits limits;
	int	max_connections;
	int	idle_timeout;		/* seconds without a request */
	int	request_timeout;	/* seconds to finish sending a request */
	int	max_pipeline;		/* requests in flight per connection */
	struct store_config redis;
	char	*user, *group, *pidfile;
	int	run_as_root;
	int	log_facility, log_level;
	char	*hostname;
	char	*metrics_address;	/* "HOST:PORT", "" = off */
	struct dns_config dns;		/* the "dns" group (resolver.h) */
	struct rule *rules;
	int	nrules;
};

struct config *config_load(const char *path, int *nerrors);

/*
 * listen_is_loopback - non-zero for unix sockets and inet listeners on a
 * loopback address (127.0.0.0/8, ::1, localhost); a wildcard or any other
 * address is not.
 */
int	listen_is_loopback(const char *address);
struct config *config_ref(struct config *c);
void	config_unref(struct config *c);

/*
 * config_path - resolve a map path relative to the configuration file's
 * directory into buf.
 */
static inline const char *
config_path(const struct config *c, const char *path, char *buf, size_t len)
{
	/* inline: the rules and checks use it without reaching into config.c */
	if (path[0] == '/' || c->dir == NULL)
		snprintf(buf, len, "%s", path);
	else
		snprintf(buf, len, "%s/%s", c->dir, path);
	return buf;
}

#endif

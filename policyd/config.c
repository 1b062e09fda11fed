/*++
 * NAME
 *	config.c - load, validate and reference-count configuration snapshots
 * DESCRIPTION
 *	Every top-level setting with its default and bounds is in the tables
 *	below; rules are compiled by rules.c.
 *--*/
#include <sys/socket.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <unistd.h>

#include <sys/socket.h>

#include <libconfig.h>

#include "addr.h"
#include "config.h"
#include "log.h"
#include "rules.h"
#include "slot.h"

#define DEF_LISTEN		"inet:127.0.0.1:10040"
#define DEF_MAX_CONNECTIONS	10000
#define DEF_IDLE_TIMEOUT	600	/* Postfix closes idle ones at 300 s */
#define DEF_REQUEST_TIMEOUT	30
#define DEF_MAX_PIPELINE	64
#define DEF_REDIS_ADDRESS	"127.0.0.1:6379"
#define DEF_REDIS_PREFIX	"pd:"
#define DEF_REDIS_TIMEOUT_MS	250
#define DEF_REDIS_CONNECT_MS	1000
#define DEF_USER		"policyd"
#define DEF_PIDFILE		""
#define DEF_METRICS_ADDRESS	"127.0.0.1:9110"
#define DEF_DNS_TIMEOUT_MS	2000
#define DEF_DNS_ATTEMPTS	2
#define DEF_DNS_BUDGET_MS	5000
#define DEF_DNS_CACHE_SIZE	10000
#define DEF_DNS_CACHE_MAX_TTL	3600
#define DEF_DNS_NEGATIVE_TTL	300

struct int_setting {
	const char *path;		/* libconfig path */
	size_t	off;			/* offset in struct config */
	int	def, min, max;
};

#define OFF(f)	offsetof(struct config, f)

static const struct int_setting int_settings[] = {
	{ "limits.max_connections", OFF(max_connections), DEF_MAX_CONNECTIONS, 1, 1000000 },
	{ "limits.idle_timeout", OFF(idle_timeout), DEF_IDLE_TIMEOUT, 1, 86400 },
	{ "limits.request_timeout", OFF(request_timeout), DEF_REQUEST_TIMEOUT, 1, 3600 },
	{ "limits.max_pipeline", OFF(max_pipeline), DEF_MAX_PIPELINE, 1, 10000 },
	{ "redis.database", OFF(redis.database), 0, 0, 10000 },
	{ "redis.timeout_ms", OFF(redis.timeout_ms), DEF_REDIS_TIMEOUT_MS, 1, 60000 },
	{ "redis.connect_timeout_ms", OFF(redis.connect_timeout_ms), DEF_REDIS_CONNECT_MS, 1, 60000 },
	{ "dns.timeout_ms", OFF(dns.timeout_ms), DEF_DNS_TIMEOUT_MS, 10, 60000 },
	{ "dns.attempts", OFF(dns.attempts), DEF_DNS_ATTEMPTS, 1, 10 },
	{ "dns.budget_ms", OFF(dns.budget_ms), DEF_DNS_BUDGET_MS, 10, 600000 },
	{ "dns.cache_size", OFF(dns.cache_size), DEF_DNS_CACHE_SIZE, 0, 10000000 },
	{ "dns.cache_max_ttl", OFF(dns.cache_max_ttl), DEF_DNS_CACHE_MAX_TTL, 0, 604800 },
	{ "dns.negative_ttl", OFF(dns.negative_ttl), DEF_DNS_NEGATIVE_TTL, 0, 86400 },
};

struct size_setting {
	const char *path;
	size_t	off;
	long long def, min, max;
};

static const struct size_setting size_settings[] = {
	{ "limits.max_line", OFF(limits.max_line), PROTO_DEF_MAX_LINE, 512, 1 << 20 },
	{ "limits.max_request", OFF(limits.max_request), PROTO_DEF_MAX_REQUEST, 1024, 16 << 20 },
	{ "limits.max_attributes", OFF(limits.max_attrs), PROTO_DEF_MAX_ATTRS, 8, 100000 },
};

static const char *const top_keys[] = {
	"listen", "limits", "redis", "log", "user", "group", "pidfile",
	"run_as_root", "hostname", "rules", "metrics", "dns", NULL
};
static const char *const group_keys[][16] = {
	{ "limits", "max_connections", "idle_timeout", "request_timeout",
	  "max_pipeline", "max_line", "max_request", "max_attributes", NULL },
	{ "redis", "address", "username", "password", "database", "prefix",
	  "timeout_ms", "connect_timeout_ms", "sentinels", "master_name",
	  "sentinel_password", "cluster", NULL },
	{ "log", "facility", "level", NULL },
	{ "metrics", "address", NULL },
	{ "dns", "nameservers", "timeout_ms", "attempts", "budget_ms",
	  "cache_size", "cache_max_ttl", "negative_ttl", NULL },
};

#define ERR(line, ...) do { \
	char m_[1024]; \
	snprintf(m_, sizeof(m_), __VA_ARGS__); \
	log_errx("%s:%d: %s", c->path, (line), m_); \
	errors++; \
} while (0)

/* type_name - what a setting holds, for messages */
static const char *
type_name(const config_setting_t *s)
{
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		return "an integer";
	case CONFIG_TYPE_FLOAT:
		return "a floating-point number";
	case CONFIG_TYPE_STRING:
		return "a string";
	case CONFIG_TYPE_BOOL:
		return "a boolean";
	case CONFIG_TYPE_ARRAY:
	case CONFIG_TYPE_LIST:
		return "a list";
	case CONFIG_TYPE_GROUP:
		return "a group";
	}
	return "an unknown type";
}

/* dup_string - optional string setting */
static int
dup_string(struct config *c, config_t *cf, const char *path, char **out,
    const char *def)
{
	config_setting_t *s = config_lookup(cf, path);
	int	errors = 0;

	if (s == NULL) {
		*out = def ? strdup(def) : NULL;
		return 0;
	}
	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		ERR(config_setting_source_line(s), "%s: expected a string, not "
		    "%s", path, type_name(s));
		*out = def ? strdup(def) : NULL;
		return errors;
	}
	*out = strdup(config_setting_get_string(s));
	return 0;
}

/*
 * inet_split - "HOST:PORT", "[V6]:PORT" or ":PORT" (every address) into
 * host (without brackets, "" for every address) and a port 1..65535
 */
static int
inet_split(const char *spec, char *host, size_t hostlen, int *port)
{
	const char *colon = strrchr(spec, ':');
	size_t	hl;
	char	*end;
	long	p;

	if (colon == NULL || colon[1] < '0' || colon[1] > '9')
		return -1;
	p = strtol(colon + 1, &end, 10);
	if (*end != '\0' || p < 1 || p > 65535)
		return -1;
	hl = (size_t)(colon - spec);
	if (hl >= 2 && spec[0] == '[' && spec[hl - 1] == ']') {
		spec++;
		hl -= 2;
	} else if (memchr(spec, ':', hl) != NULL || memchr(spec, '[', hl) ||
	    memchr(spec, ']', hl)) {
		return -1;		/* an IPv6 address needs brackets */
	}
	if (hl >= hostlen)
		return -1;
	memcpy(host, spec, hl);
	host[hl] = '\0';
	*port = (int)p;
	return 0;
}

/* listen_is_loopback - unix sockets and loopback inet listeners (config.h) */
int
listen_is_loopback(const char *address)
{
	char	host[256];
	struct ipaddr ip;
	int	port;

	if (strncmp(address, "unix:", 5) == 0)
		return 1;
	if (strncmp(address, "inet:", 5) != 0 ||
	    inet_split(address + 5, host, sizeof(host), &port) != 0)
		return 0;
	if (strcasecmp(host, "localhost") == 0)
		return 1;
	if (addr_ip_parse(host, &ip) != 0)
		return 0;
	if (ip.family == AF_INET)
		return ip.a[0] == 127;
	for (int i = 0; i < 15; i++)
		if (ip.a[i] != 0)
			return 0;
	return ip.a[15] == 1;
}

/* load_clients - listen entry "clients": one CIDR string or a list */
static int
load_clients(struct config *c, config_setting_t *l, int idx,
    struct listen_spec *ls)
{
	int	errors = 0, n;

	if (config_setting_type(l) == CONFIG_TYPE_STRING) {
		n = 1;
	} else if (config_setting_type(l) == CONFIG_TYPE_ARRAY ||
	    config_setting_type(l) == CONFIG_TYPE_LIST) {
		n = config_setting_length(l);
	} else {
		ERR(config_setting_source_line(l), "listen entry %d: \"clients\" "
		    "must be a list of networks like [ \"127.0.0.0/8\", "
		    "\"::1\" ], not %s", idx, type_name(l));
		return errors;
	}
	if (n == 0) {
		ERR(config_setting_source_line(l), "listen entry %d: \"clients\" "
		    "is empty: nobody could connect (leave it out to allow "
		    "every client)", idx);
		return errors;
	}
	if ((ls->clients = calloc(n, sizeof(*ls->clients))) == NULL)
		fatalx("out of memory");
	for (int i = 0; i < n; i++) {
		config_setting_t *e = config_setting_type(l) ==
		    CONFIG_TYPE_STRING ? l : config_setting_get_elem(l, i);
		const char *v;

		if (config_setting_type(e) != CONFIG_TYPE_STRING) {
			ERR(config_setting_source_line(e), "listen entry %d: "
			    "clients entry %d must be a string like "
			    "\"192.0.2.0/24\", not %s", idx, i + 1,
			    type_name(e));
			continue;
		}
		v = config_setting_get_string(e);
		if (addr_cidr_parse(v, 0, &ls->clients[ls->nclients]) != 0) {
			ERR(config_setting_source_line(e), "listen entry %d: "
			    "clients: \"%s\" is not an address or a network "
			    "like \"192.0.2.0/24\" (host bits must be zero)",
			    idx, v);
			continue;
		}
		ls->nclients++;
	}
	return errors;
}

static const char *const listen_keys[] = {
	"address", "mode", "owner", "group", "clients", "explain", NULL
};

/* load_listen_group - { address = ...; mode = ...; ... } */
static int
load_listen_group(struct config *c, config_setting_t *e, int idx,
    struct listen_spec *ls)
{
	int	errors = 0, unix_only = 0;
	config_setting_t *m, *cl = NULL, *ex = NULL;

	for (int j = 0; j < config_setting_length(e); j++) {
		const char *name;
		int	known = 0;

		m = config_setting_get_elem(e, j);
		name = config_setting_name(m);
		for (int k = 0; listen_keys[k]; k++)
			if (strcmp(listen_keys[k], name) == 0)
				known = 1;
		if (!known) {
			ERR(config_setting_source_line(m), "unknown setting "
			    "\"%s\" in listen entry %d (known: address, mode, "
			    "owner, group, clients, explain)", name, idx);
			continue;
		}
		if (strcmp(name, "clients") == 0) {
			cl = m;
			continue;
		}
		if (strcmp(name, "explain") == 0) {
			if (config_setting_type(m) != CONFIG_TYPE_BOOL)
				ERR(config_setting_source_line(m), "listen entry "
				    "%d: \"explain\" must be true or false, not "
				    "%s", idx, type_name(m));
			else
				ex = m;
			continue;
		}
		if (config_setting_type(m) != CONFIG_TYPE_STRING) {
			if (strcmp(name, "mode") == 0)
				ERR(config_setting_source_line(m), "listen entry "
				    "%d: \"mode\" must be a string like \"0660\" "
				    "(octal, in quotes), not %s", idx,
				    type_name(m));
			else if (strcmp(name, "address") == 0)
				ERR(config_setting_source_line(m), "listen entry "
				    "%d: \"address\" must be a string like "
				    "\"inet:127.0.0.1:10040\" or \"unix:/PATH\", "
				    "not %s", idx, type_name(m));
			else
				ERR(config_setting_source_line(m), "listen entry "
				    "%d: \"%s\" must be a string (a %s name), not "
				    "%s", idx, name, strcmp(name, "owner") == 0 ?
				    "user" : "group", type_name(m));
			continue;
		}
		if (strcmp(name, "address") == 0) {
			ls->address = strdup(config_setting_get_string(m));
			continue;
		}
		unix_only = config_setting_source_line(m);
		if (strcmp(name, "mode") == 0) {
			const char *s = config_setting_get_string(m);
			char	*end;
			long	v = strtol(s, &end, 8);

			if (*s < '0' || *s > '7' || *end != '\0' || v < 0 ||
			    v > 0777)
				ERR(config_setting_source_line(m), "listen entry "
				    "%d: \"mode\": \"%s\" is not an octal mode "
				    "like \"0660\"", idx, s);
			ls->mode = (int)v;
		} else {
			const char *s = config_setting_get_string(m);
			char	**out = strcmp(name, "owner") == 0 ? &ls->owner :
			    &ls->group;

			if (s[0] == '\0')
				ERR(config_setting_source_line(m), "listen entry "
				    "%d: \"%s\" is empty", idx, name);
			*out = strdup(s);
		}
	}
	if (ls->address == NULL)
		return errors;
	if (unix_only && strncmp(ls->address, "unix:", 5) != 0)
		ERR(unix_only, "listen entry %d: mode, owner and group apply "
		    "only to unix: listeners", idx);
	if (cl != NULL) {
		if (strncmp(ls->address, "inet:", 5) != 0)
			ERR(config_setting_source_line(cl), "listen entry %d: "
			    "\"clients\" applies only to inet: listeners (a "
			    "unix socket is protected by its mode, owner and "
			    "group)", idx);
		else
			errors += load_clients(c, cl, idx, ls);
	}
	if (ex != NULL)
		ls->explain = config_setting_get_bool(ex);
	return errors;
}

/*
 * check_redis_prefix - redis.prefix: at most STORE_PREFIX_MAX bytes,
 * printable ASCII without spaces (it starts every key; policyctl and
 * the logs show it)
 */
static int
check_redis_prefix(struct config *c, config_t *cf)
{
	config_setting_t *s = config_lookup(cf, "redis.prefix");
	const char *p = c->redis.prefix;
	size_t	len;
	int	errors = 0;
	char	esc[80];

	if (s == NULL || p == NULL)
		return 0;
	len = strlen(p);
	if (len > STORE_PREFIX_MAX) {
		ERR(config_setting_source_line(s), "redis.prefix: %zu bytes; at "
		    "most %d", len, STORE_PREFIX_MAX);
		return errors;
	}
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)p[i] <= ' ' || (unsigned char)p[i] >= 0x7f) {
			ERR(config_setting_source_line(s), "redis.prefix: "
			    "\"%s\": expected printable ASCII without "
			    "spaces", log_escape(esc, sizeof(esc), p, len));
			break;
		}
	return errors;
}

/* load_listen - "listen": a string, or a list of strings and groups */
static int
load_listen(struct config *c, config_t *cf)
{
	config_setting_t *l = config_lookup(cf, "listen");
	int	errors = 0, n;

	if (l == NULL) {
		c->listen = calloc(1, sizeof(*c->listen));
		c->listen[0].address = strdup(DEF_LISTEN);
		c->listen[0].mode = -1;
		c->listen[0].explain = listen_is_loopback(DEF_LISTEN);
		c->nlisten = 1;
		return 0;
	}
	if (config_setting_type(l) == CONFIG_TYPE_STRING ||
	    config_setting_type(l) == CONFIG_TYPE_GROUP) {
		n = 1;
	} else if (config_setting_type(l) == CONFIG_TYPE_ARRAY ||
	    config_setting_type(l) == CONFIG_TYPE_LIST) {
		n = config_setting_length(l);
	} else {
		ERR(config_setting_source_line(l), "listen: expected an "
		    "address string or a list ( \"inet:HOST:PORT\", { address "
		    "= ...; ... } ), not %s", type_name(l));
		return errors;
	}
	if (n == 0)
		ERR(config_setting_source_line(l), "listen: empty list");
	c->listen = calloc(n ? n : 1, sizeof(*c->listen));
	c->nlisten = n;
	for (int i = 0; i < n; i++) {
		config_setting_t *e = (config_setting_type(l) ==
		    CONFIG_TYPE_ARRAY || config_setting_type(l) ==
		    CONFIG_TYPE_LIST) ? config_setting_get_elem(l, i) : l;
		struct listen_spec *ls = &c->listen[i];
		char	host[256];
		int	port, explain_set;

		ls->mode = -1;
		ls->explain = -1;
		ls->line = config_setting_source_line(e);
		if (config_setting_type(e) == CONFIG_TYPE_STRING) {
			ls->address = strdup(config_setting_get_string(e));
		} else if (config_setting_type(e) == CONFIG_TYPE_GROUP) {
			errors += load_listen_group(c, e, i + 1, ls);
		} else {
			ERR(ls->line, "listen entry %d: expected an address "
			    "string or a group { address = ...; }, not %s",
			    i + 1, type_name(e));
			continue;
		}
		explain_set = ls->explain >= 0;
		if (ls->address == NULL) {
			ERR(ls->line, "listen: entry %d has no address", i + 1);
			continue;
		}
		if (!explain_set)
			ls->explain = listen_is_loopback(ls->address);
		if (strncmp(ls->address, "inet:", 5) != 0 &&
		    strncmp(ls->address, "unix:", 5) != 0)
			ERR(ls->line, "listen: \"%s\": expected inet:HOST:PORT "
			    "or unix:/PATH", ls->address);
		else if (strncmp(ls->address, "unix:", 5) == 0 &&
		    ls->address[5] != '/')
			ERR(ls->line, "listen: \"%s\": unix socket path must "
			    "be absolute", ls->address);
		else if (strncmp(ls->address, "inet:", 5) == 0 &&
		    strrchr(ls->address + 5, ':') == NULL)
			ERR(ls->line, "listen: \"%s\": missing :PORT",
			    ls->address);
		else if (strncmp(ls->address, "inet:", 5) == 0 &&
		    inet_split(ls->address + 5, host, sizeof(host), &port) != 0)
			ERR(ls->line, "listen: \"%s\": expected inet:HOST:PORT "
			    "or inet:[IPV6]:PORT with a port 1..65535",
			    ls->address);
		for (int j = 0; j < i; j++)
			if (c->listen[j].address != NULL &&
			    strcmp(c->listen[j].address, ls->address) == 0) {
				ERR(ls->line, "listen: \"%s\" is given twice "
				    "(also line %d)", ls->address,
				    c->listen[j].line);
				break;
			}
	}
	return errors;
}

/* check_keys - reject unknown top-level and group settings */
static int
check_keys(struct config *c, config_t *cf)
{
	config_setting_t *root = config_root_setting(cf);
	int	errors = 0;

	for (int i = 0; i < config_setting_length(root); i++) {
		config_setting_t *s = config_setting_get_elem(root, i);
		const char *n = config_setting_name(s);
		int	known = 0;

		for (int k = 0; top_keys[k]; k++)
			if (strcmp(top_keys[k], n) == 0)
				known = 1;
		if (!known) {
			ERR(config_setting_source_line(s), "unknown setting "
			    "\"%s\"", n);
			continue;
		}
		for (size_t g = 0; g < sizeof(group_keys) / sizeof(group_keys[0]);
		    g++) {
			if (strcmp(group_keys[g][0], n) != 0)
				continue;
			if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
				ERR(config_setting_source_line(s), "%s: expected "
				    "a group { ... }", n);
				break;
			}
			for (int j = 0; j < config_setting_length(s); j++) {
				config_setting_t *m = config_setting_get_elem(s, j);
				int	ok = 0;

				for (int k = 1; group_keys[g][k]; k++)
					if (strcmp(group_keys[g][k],
					    config_setting_name(m)) == 0)
						ok = 1;
				if (!ok)
					ERR(config_setting_source_line(m),
					    "unknown setting \"%s.%s\"", n,
					    config_setting_name(m));
			}
		}
	}
	return errors;
}

/* load_numbers - the integer table */
static int
load_numbers(struct config *c, config_t *cf)
{
	int	errors = 0;

	for (size_t i = 0; i < sizeof(int_settings) / sizeof(int_settings[0]);
	    i++) {
		const struct int_setting *t = &int_settings[i];
		config_setting_t *s = config_lookup(cf, t->path);
		int	*p = (int *)((char *)c + t->off);

		*p = t->def;
		if (s == NULL)
			continue;
		if (config_setting_type(s) != CONFIG_TYPE_INT &&
		    config_setting_type(s) != CONFIG_TYPE_INT64) {
			ERR(config_setting_source_line(s), "%s: expected an "
			    "integer, not %s", t->path, type_name(s));
			continue;
		}
		{
			long long v = config_setting_type(s) == CONFIG_TYPE_INT ?
			    config_setting_get_int(s) :
			    config_setting_get_int64(s);

			if (v < t->min || v > t->max) {
				ERR(config_setting_source_line(s), "%s: %lld is "
				    "out of range %d..%d", t->path, v, t->min,
				    t->max);
				continue;
			}
			*p = (int)v;
		}
	}
	for (size_t i = 0; i < sizeof(size_settings) / sizeof(size_settings[0]);
	    i++) {
		const struct size_setting *t = &size_settings[i];
		config_setting_t *s = config_lookup(cf, t->path);
		size_t	*p = (size_t *)((char *)c + t->off);
		long long v = t->def;

		if (s != NULL) {
			if (config_setting_type(s) != CONFIG_TYPE_INT &&
			    config_setting_type(s) != CONFIG_TYPE_INT64) {
				ERR(config_setting_source_line(s), "%s: expected "
				    "an integer, not %s", t->path, type_name(s));
			} else {
				v = config_setting_get_int64(s);
				if (config_setting_type(s) == CONFIG_TYPE_INT)
					v = config_setting_get_int(s);
				if (v < t->min || v > t->max)
					ERR(config_setting_source_line(s), "%s: "
					    "%lld is out of range %lld..%lld",
					    t->path, v, t->min, t->max);
			}
		}
		*p = (size_t)v;
	}
	return errors;
}

/* strv_free - a NULL-terminated list of strings */
static void
strv_free(char **v)
{
	for (int i = 0; v != NULL && v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

/*
 * load_addr_list - redis.sentinels / redis.cluster: a non-empty list of
 * "host:port" strings into a NULL-terminated array (*out stays NULL when
 * the setting is absent)
 */
static int
load_addr_list(struct config *c, config_t *cf, const char *path, char ***out)
{
	config_setting_t *l = config_lookup(cf, path);
	int	errors = 0, n;
	char	host[256];

	*out = NULL;
	if (l == NULL)
		return 0;
	if (config_setting_type(l) == CONFIG_TYPE_STRING) {
		n = 1;
	} else if (config_setting_type(l) == CONFIG_TYPE_ARRAY ||
	    config_setting_type(l) == CONFIG_TYPE_LIST) {
		n = config_setting_length(l);
	} else {
		ERR(config_setting_source_line(l), "%s: expected a list of "
		    "\"host:port\" strings", path);
		return errors;
	}
	if (n == 0) {
		ERR(config_setting_source_line(l), "%s: empty list", path);
		return errors;
	}
	if ((*out = calloc(n + 1, sizeof(**out))) == NULL)
		fatalx("out of memory");
	for (int i = 0; i < n; i++) {
		config_setting_t *e = config_setting_type(l) ==
		    CONFIG_TYPE_STRING ? l : config_setting_get_elem(l, i);
		const char *v;
		int	port;

		if (config_setting_type(e) != CONFIG_TYPE_STRING) {
			ERR(config_setting_source_line(e), "%s: entry %d: "
			    "expected a \"host:port\" string", path, i + 1);
			continue;
		}
		v = config_setting_get_string(e);
		if (slot_parse_hostport(v, host, sizeof(host), &port) != 0) {
			ERR(config_setting_source_line(e), "%s: \"%s\": expected "
			    "host:port or [v6]:port", path, v);
			continue;
		}
		(*out)[i] = strdup(v);
	}
	if (errors) {
		/* entries may be missing: keep the list consistent */
		for (int i = 0; i < n; i++)
			free((*out)[i]);
		free(*out);
		*out = NULL;
	}
	return errors;
}

/* describe_list - "sentinel:NAME@a,b" / "cluster:a,b" for logs and reload */
static char *
describe_list(const char *kind, const char *name, char **v)
{
	size_t	len = strlen(kind) + (name ? strlen(name) + 1 : 0) + 2;
	char	*d;

	for (int i = 0; v[i] != NULL; i++)
		len += strlen(v[i]) + 1;
	if ((d = malloc(len)) == NULL)
		fatalx("out of memory");
	snprintf(d, len, "%s:%s%s", kind, name ? name : "", name ? "@" : "");
	for (int i = 0; v[i] != NULL; i++) {
		if (i > 0)
			strcat(d, ",");
		strcat(d, v[i]);
	}
	return d;
}

/*
 * load_redis_scaleout - redis.sentinels + master_name (+ sentinel_password)
 * or redis.cluster; exclusive with each other and with redis.address. The
 * address becomes a description of the setup: it names the Redis in the
 * log, and a changed one makes a reload reconnect.
 */
static int
load_redis_scaleout(struct config *c, config_t *cf)
{
	struct store_config *r = &c->redis;
	config_setting_t *sa = config_lookup(cf, "redis.address");
	config_setting_t *ss = config_lookup(cf, "redis.sentinels");
	config_setting_t *sc = config_lookup(cf, "redis.cluster");
	config_setting_t *sm = config_lookup(cf, "redis.master_name");
	config_setting_t *sp = config_lookup(cf, "redis.sentinel_password");
	int	errors = 0;

	errors += load_addr_list(c, cf, "redis.sentinels", &r->sentinels);
	errors += load_addr_list(c, cf, "redis.cluster", &r->cluster);
	errors += dup_string(c, cf, "redis.master_name", &r->master_name, NULL);
	errors += dup_string(c, cf, "redis.sentinel_password",
	    &r->sentinel_password, NULL);
	if (ss != NULL && sc != NULL)
		ERR(config_setting_source_line(sc), "redis.sentinels and "
		    "redis.cluster are mutually exclusive");
	if (sa != NULL && (ss != NULL || sc != NULL))
		ERR(config_setting_source_line(sa), "redis.address and "
		    "redis.%s are mutually exclusive (the %s name the servers)",
		    ss ? "sentinels" : "cluster", ss ? "sentinels" : "seeds");
	if (ss != NULL && sm == NULL)
		ERR(config_setting_source_line(ss), "redis.sentinels needs "
		    "redis.master_name (the name the sentinels monitor)");
	if (sm != NULL && ss == NULL)
		ERR(config_setting_source_line(sm), "redis.master_name works "
		    "only with redis.sentinels");
	if (sp != NULL && ss == NULL)
		ERR(config_setting_source_line(sp), "redis.sentinel_password "
		    "works only with redis.sentinels");
	if (r->master_name != NULL && (r->master_name[0] == '\0' ||
	    strpbrk(r->master_name, " \t\r\n") != NULL))
		ERR(config_setting_source_line(sm), "redis.master_name: "
		    "\"%s\": expected a name without spaces", r->master_name);
	if (sc != NULL) {
		config_setting_t *sd = config_lookup(cf, "redis.database");
		config_setting_t *sx = config_lookup(cf, "redis.prefix");

		if (sd != NULL && r->database != 0)
			ERR(config_setting_source_line(sd), "redis.database "
			    "must be 0 with redis.cluster (a cluster has one "
			    "database)");
		if (sx != NULL && r->prefix != NULL &&
		    strpbrk(r->prefix, "{}") != NULL)
			ERR(config_setting_source_line(sx), "redis.prefix: "
			    "\"%s\": no braces with redis.cluster (they would "
			    "change the keys' hash tags)", r->prefix);
	}
	if (errors == 0 && r->sentinels != NULL && r->master_name != NULL) {
		free(r->address);
		r->address = describe_list("sentinel", r->master_name,
		    r->sentinels);
	} else if (errors == 0 && r->cluster != NULL) {
		free(r->address);
		r->address = describe_list("cluster", NULL, r->cluster);
	}
	return errors;
}

/* check_name - user, group: non-empty, no spaces or control characters */
static int
check_name(struct config *c, config_t *cf, const char *path, const char *v)
{
	config_setting_t *s = config_lookup(cf, path);
	int	errors = 0;

	if (s == NULL || v == NULL)
		return 0;
	if (v[0] == '\0')
		ERR(config_setting_source_line(s), "\"%s\" is empty", path);
	for (const char *p = v; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == ':' ||
		    *p == '/') {
			ERR(config_setting_source_line(s), "\"%s\": \"%s\" is "
			    "not a %s name", path, v, path);
			break;
		}
	return errors;
}

/*
 * load_misc - run_as_root, log.facility, log.level, and the checks on
 * user, group, hostname, redis.address, redis.username,
 * redis.password and metrics.address (loaded as strings by dup_string)
 */
static int
load_misc(struct config *c, config_t *cf)
{
	config_setting_t *s;
	int	errors = 0;
	char	host[256];
	int	port;

	if ((s = config_lookup(cf, "run_as_root")) != NULL) {
		if (config_setting_type(s) != CONFIG_TYPE_BOOL)
			ERR(config_setting_source_line(s), "\"run_as_root\" must "
			    "be true or false, not %s", type_name(s));
		else
			c->run_as_root = config_setting_get_bool(s);
	}
	c->log_facility = LOG_MAIL;
	c->log_level = LOG_L_INFO;
	if ((s = config_lookup(cf, "log.facility")) != NULL) {
		if (config_setting_type(s) != CONFIG_TYPE_STRING)
			ERR(config_setting_source_line(s), "\"log.facility\" must "
			    "be a string like \"mail\" or \"local0\", not %s",
			    type_name(s));
		else if ((c->log_facility = log_facility_parse(
		    config_setting_get_string(s))) < 0)
			ERR(config_setting_source_line(s), "log.facility: "
			    "unknown facility \"%s\"", config_setting_get_string(s));
	}
	if ((s = config_lookup(cf, "log.level")) != NULL) {
		if (config_setting_type(s) != CONFIG_TYPE_STRING)
			ERR(config_setting_source_line(s), "\"log.level\" must be "
			    "a string: \"error\", \"warning\", \"info\" or "
			    "\"debug\", not %s", type_name(s));
		else if ((c->log_level = log_level_parse(
		    config_setting_get_string(s))) < 0)
			ERR(config_setting_source_line(s), "log.level: expected "
			    "error, warning, info or debug");
	}
	errors += check_name(c, cf, "user", c->user);
	errors += check_name(c, cf, "group", c->group);
	if ((s = config_lookup(cf, "hostname")) != NULL && c->hostname != NULL) {
		int	bad = c->hostname[0] == '\0';

		for (const char *p = c->hostname; *p; p++)
			if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
				bad = 1;
		if (bad)
			ERR(config_setting_source_line(s), "hostname: expected a "
			    "host name without spaces or control characters");
	}
	if ((s = config_lookup(cf, "redis.address")) != NULL &&
	    config_setting_type(s) == CONFIG_TYPE_STRING) {
		const char *a = config_setting_get_string(s);

		if (strncmp(a, "unix:", 5) == 0 ? a[5] != '/' :
		    (strchr(a, ':') != NULL ? slot_parse_hostport(a, host,
		    sizeof(host), &port) != 0 : (a[0] == '\0' ||
		    strpbrk(a, " \t\r\n[]/") != NULL)))
			ERR(config_setting_source_line(s), "redis.address: \"%s\": "
			    "expected HOST, HOST:PORT, [IPV6]:PORT or unix:/PATH", a);
	}
	for (int i = 0; i < 2; i++) {
		const char *path = i ? "redis.password" : "redis.username";

		if ((s = config_lookup(cf, path)) != NULL &&
		    config_setting_type(s) == CONFIG_TYPE_STRING &&
		    config_setting_get_string(s)[0] == '\0')
			ERR(config_setting_source_line(s), "\"%s\" is empty "
			    "(leave it out for no AUTH)", path);
	}
	if ((s = config_lookup(cf, "metrics.address")) != NULL &&
	    c->metrics_address != NULL && c->metrics_address[0] != '\0' &&
	    slot_parse_hostport(c->metrics_address, host, sizeof(host),
	    &port) != 0)
		ERR(config_setting_source_line(s), "metrics.address: \"%s\": "
		    "expected HOST:PORT or [IPV6]:PORT (\"\" turns metrics off)",
		    c->metrics_address);
	return errors;
}

/* load_dns_servers - dns.nameservers: "IP", "IP:PORT" or "[V6]:PORT" */
static int
load_dns_servers(struct config *c, config_t *cf)
{
	config_setting_t *l = config_lookup(cf, "dns.nameservers");
	int	errors = 0, n;

	c->dns.nameservers = NULL;
	if (l == NULL)
		return 0;		/* /etc/resolv.conf */
	n = config_setting_type(l) == CONFIG_TYPE_STRING ? 1 :
	    config_setting_type(l) == CONFIG_TYPE_ARRAY ||
	    config_setting_type(l) == CONFIG_TYPE_LIST ?
	    config_setting_length(l) : -1;
	if (n <= 0 || n > 8) {
		ERR(config_setting_source_line(l), "dns.nameservers: expected "
		    "1 to 8 addresses (\"IP\", \"IP:PORT\", \"[V6]:PORT\")");
		return errors;
	}
	if ((c->dns.nameservers = calloc(n + 1, sizeof(char *))) == NULL)
		fatalx("out of memory");
	for (int i = 0; i < n; i++) {
		config_setting_t *e = config_setting_type(l) ==
		    CONFIG_TYPE_STRING ? l : config_setting_get_elem(l, i);
		const char *v = config_setting_get_string(e);
		struct sockaddr_storage ss;
		unsigned len;

		if (v == NULL || resolver_parse_server(v, &ss, &len) < 0) {
			ERR(config_setting_source_line(e), "dns.nameservers: "
			    "entry %d: expected \"IP\", \"IP:PORT\" or "
			    "\"[V6]:PORT\"", i + 1);
			continue;
		}
		c->dns.nameservers[i] = strdup(v);
	}
	if (errors) {
		for (int i = 0; i < n; i++)
			free(c->dns.nameservers[i]);
		free(c->dns.nameservers);
		c->dns.nameservers = NULL;
	}
	return errors;
}

/* config_free - release a snapshot */
static void
config_free(struct config *c)
{
	for (int i = 0; i < c->nlisten; i++) {
		free(c->listen[i].address);
		free(c->listen[i].owner);
		free(c->listen[i].group);
		free(c->listen[i].clients);
	}
	free(c->listen);
	rules_free(c->rules, c->nrules);
	free(c->redis.address);
	free(c->redis.username);
	free(c->redis.password);
	free(c->redis.prefix);
	free(c->redis.master_name);
	free(c->redis.sentinel_password);
	strv_free(c->redis.sentinels);
	strv_free(c->redis.cluster);
	free(c->user);
	free(c->group);
	free(c->pidfile);
	free(c->hostname);
	free(c->metrics_address);
	strv_free(c->dns.nameservers);
	free(c->path);
	free(c->dir);
	free(c);
}

/* config_load - read, compile and validate a snapshot */
struct config *
config_load(const char *path, int *nerrors)
{
	struct config *c = calloc(1, sizeof(*c));
	config_t cf;
	char	host[256], *slash;
	int	errors = 0;

	if (c == NULL)
		fatalx("out of memory");
	c->refs = 1;
	c->path = strdup(path);
	c->dir = strdup(path);
	if ((slash = strrchr(c->dir, '/')) != NULL)
		*slash = '\0';
	else {
		free(c->dir);
		c->dir = strdup(".");
	}
	config_init(&cf);
	config_set_include_dir(&cf, c->dir);
	if (!config_read_file(&cf, path)) {
		if (config_error_type(&cf) == CONFIG_ERR_FILE_IO)
			log_errx("%s: cannot read: %s", path, strerror(errno));
		else
			log_errx("%s:%d: %s", config_error_file(&cf) ?
			    config_error_file(&cf) : path,
			    config_error_line(&cf), config_error_text(&cf));
		config_destroy(&cf);
		config_free(c);
		*nerrors = 1;
		return NULL;
	}
	errors += check_keys(c, &cf);
	errors += load_listen(c, &cf);
	errors += load_numbers(c, &cf);
	errors += dup_string(c, &cf, "redis.address", &c->redis.address,
	    DEF_REDIS_ADDRESS);
	errors += dup_string(c, &cf, "redis.username", &c->redis.username, NULL);
	errors += dup_string(c, &cf, "redis.password", &c->redis.password, NULL);
	errors += dup_string(c, &cf, "redis.prefix", &c->redis.prefix,
	    DEF_REDIS_PREFIX);
	errors += check_redis_prefix(c, &cf);
	errors += load_redis_scaleout(c, &cf);
	errors += dup_string(c, &cf, "metrics.address", &c->metrics_address,
	    DEF_METRICS_ADDRESS);
	errors += load_dns_servers(c, &cf);
	errors += dup_string(c, &cf, "user", &c->user, DEF_USER);
	errors += dup_string(c, &cf, "group", &c->group, NULL);
	errors += dup_string(c, &cf, "pidfile", &c->pidfile, DEF_PIDFILE);
	/* written after daemon() has changed to "/" */
	if (c->pidfile != NULL && c->pidfile[0] != '\0' && c->pidfile[0] != '/')
		ERR(config_setting_source_line(config_lookup(&cf, "pidfile")),
		    "pidfile: expected an absolute path");
	if (gethostname(host, sizeof(host)) != 0)
		strcpy(host, "localhost");
	host[sizeof(host) - 1] = '\0';
	errors += dup_string(c, &cf, "hostname", &c->hostname, host);
	errors += load_misc(c, &cf);
	errors += rules_compile(c, config_lookup(&cf, "rules"));
	config_destroy(&cf);
	*nerrors = errors;
	if (errors) {
		config_free(c);
		return NULL;
	}
	return c;
}

/* config_ref - one more holder */
struct config *
config_ref(struct config *c)
{
	c->refs++;
	return c;
}

/* config_unref - the last holder frees */
void
config_unref(struct config *c)
{
	if (c != NULL && --c->refs == 0)
		config_free(c);
}

/*++
 * NAME
 *	config.c - load, validate and reference-count configuration snapshots
 * DESCRIPTION
 *	Every top-level setting with its default and bounds is in the tables
 *	below; rules are compiled by rules.c.
 *--*/
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include <libconfig.h>

#include "config.h"
#include "log.h"
#include "rules.h"
#include "slot.h"

#define DEF_LISTEN		"inet:127.0.0.1:10040"
#define DEF_MAX_CONNECTIONS	2000
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
	"run_as_root", "hostname", "rules", "metrics", NULL
};
static const char *const group_keys[][16] = {
	{ "limits", "max_connections", "idle_timeout", "request_timeout",
	  "max_pipeline", "max_line", "max_request", "max_attributes", NULL },
	{ "redis", "address", "username", "password", "database", "prefix",
	  "timeout_ms", "connect_timeout_ms", "sentinels", "master_name",
	  "sentinel_password", "cluster", NULL },
	{ "log", "facility", "level", NULL },
	{ "metrics", "address", NULL },
};

#define ERR(line, ...) do { \
	char m_[1024]; \
	snprintf(m_, sizeof(m_), __VA_ARGS__); \
	log_errx("%s:%d: %s", c->path, (line), m_); \
	errors++; \
} while (0)

/* config_path - resolve relative to the configuration directory */
const char *
config_path(const struct config *c, const char *path, char *buf, size_t len)
{
	if (path[0] == '/' || c->dir == NULL)
		snprintf(buf, len, "%s", path);
	else
		snprintf(buf, len, "%s/%s", c->dir, path);
	return buf;
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
		ERR(config_setting_source_line(s), "%s: expected a string", path);
		*out = def ? strdup(def) : NULL;
		return errors;
	}
	*out = strdup(config_setting_get_string(s));
	return 0;
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

/* load_listen - "listen": strings or groups */
static int
load_listen(struct config *c, config_t *cf)
{
	config_setting_t *l = config_lookup(cf, "listen");
	int	errors = 0, n;

	if (l == NULL) {
		c->listen = calloc(1, sizeof(*c->listen));
		c->listen[0].address = strdup(DEF_LISTEN);
		c->listen[0].mode = -1;
		c->nlisten = 1;
		return 0;
	}
	if (config_setting_type(l) == CONFIG_TYPE_STRING) {
		c->listen = calloc(1, sizeof(*c->listen));
		c->listen[0].address = strdup(config_setting_get_string(l));
		c->listen[0].mode = -1;
		c->listen[0].line = config_setting_source_line(l);
		c->nlisten = 1;
		return 0;
	}
	if (config_setting_type(l) != CONFIG_TYPE_ARRAY &&
	    config_setting_type(l) != CONFIG_TYPE_LIST) {
		ERR(config_setting_source_line(l), "listen: expected a list");
		return errors;
	}
	n = config_setting_length(l);
	if (n == 0)
		ERR(config_setting_source_line(l), "listen: empty list");
	c->listen = calloc(n ? n : 1, sizeof(*c->listen));
	c->nlisten = n;
	for (int i = 0; i < n; i++) {
		config_setting_t *e = config_setting_get_elem(l, i);
		struct listen_spec *ls = &c->listen[i];
		const char *s;

		ls->mode = -1;
		ls->line = config_setting_source_line(e);
		if (config_setting_type(e) == CONFIG_TYPE_STRING) {
			ls->address = strdup(config_setting_get_string(e));
		} else if (config_setting_type(e) == CONFIG_TYPE_GROUP) {
			if (config_setting_lookup_string(e, "address", &s))
				ls->address = strdup(s);
			if (config_setting_lookup_string(e, "owner", &s))
				ls->owner = strdup(s);
			if (config_setting_lookup_string(e, "group", &s))
				ls->group = strdup(s);
			if (config_setting_lookup_string(e, "mode", &s)) {
				char	*end;
				long	m = strtol(s, &end, 8);

				if (*s == '\0' || *end != '\0' || m < 0 || m > 0777)
					ERR(ls->line, "listen: mode \"%s\" is not "
					    "an octal mode like \"0660\"", s);
				ls->mode = (int)m;
			}
		}
		if (ls->address == NULL) {
			ERR(ls->line, "listen: entry %d has no address", i + 1);
			continue;
		}
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
		if (config_setting_type(s) != CONFIG_TYPE_INT) {
			ERR(config_setting_source_line(s), "%s: expected an "
			    "integer", t->path);
			continue;
		}
		*p = config_setting_get_int(s);
		if (*p < t->min || *p > t->max)
			ERR(config_setting_source_line(s), "%s: %d is out of "
			    "range %d..%d", t->path, *p, t->min, t->max);
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
				    "an integer", t->path);
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

/* config_free - release a snapshot */
static void
config_free(struct config *c)
{
	for (int i = 0; i < c->nlisten; i++) {
		free(c->listen[i].address);
		free(c->listen[i].owner);
		free(c->listen[i].group);
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
	const char *s;
	char	host[256], *slash;
	int	errors = 0, b;

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
	if (config_lookup_bool(&cf, "run_as_root", &b))
		c->run_as_root = b;
	c->log_facility = LOG_MAIL;
	c->log_level = LOG_L_INFO;
	if (config_lookup_string(&cf, "log.facility", &s)) {
		if ((c->log_facility = log_facility_parse(s)) < 0)
			ERR(config_setting_source_line(config_lookup(&cf,
			    "log.facility")), "log.facility: unknown facility "
			    "\"%s\"", s);
	}
	if (config_lookup_string(&cf, "log.level", &s)) {
		if ((c->log_level = log_level_parse(s)) < 0)
			ERR(config_setting_source_line(config_lookup(&cf,
			    "log.level")), "log.level: expected error, warning, "
			    "info or debug");
	}
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

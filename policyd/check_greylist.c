/*++
 * NAME
 *	check_greylist.c - greylisting with postgrey's defaults
 * DESCRIPTION
 *	The triplet is (client network, normalised sender, recipient). The
 *	network is the client address cut to ipv4_prefix/ipv6_prefix bits
 *	(24 and 64); the sender is normalised by addr_greylist_sender().
 *	Whitelists in postgrey's file formats are consulted first and cost
 *	no Redis command. A whitelist entry "pgsql:FILE" or "mysql:FILE"
 *	(table.h) is asked after the files, one query per key, the keys
 *	most specific first (mapkeys_clientlist(), mapkeys_rcptlist()):
 *	any row found whitelists; a table that fails answers on_error
 *	unless another one whitelists. Everything else is one call of
 *	greylist.lua, which decides and updates atomically (see the script
 *	for the states; the calls of one loop turn share one EVALSHA,
 *	store_script_batched), unless the local cache (local_cache
 *	seconds, see greylist.h)
 *	knows the answer: a passed triplet, an auto-whitelisted client, a
 *	waiting triplet (until a second before its delay ends); and that a
 *	client is below auto_whitelist (then the script skips its counter).
 *	Where a triplet lives (buckets of a few hundred bytes in Redis's
 *	listpack encoding, about 20 bytes a triplet): greylist.h.
 *	Triplets of the old format (one key each) are still read, and moved
 *	into their bucket, until a background look through the database finds
 *	none (not in Redis Cluster, where the old key is in another slot:
 *	there they are greylisted once more).
 *
 *	group_by (provider pools, see README) replaces the network by who
 *	the sender is: "spf" uses the sender's domain when an spf rule
 *	before this one found a pass that earns grouping (ev->spf_grouping:
 *	not for records that pass anybody); "client_name" uses the
 *	organizational domain (Public Suffix List, libpsl) of a verified
 *	client_name. The client part (greylist.h) is then "s" or "n" and 16
 *	hex digits of the domain's hash. When neither applies, the network.
 *--*/
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpsl.h>

#include "check_util.h"
#include "greylist.h"
#include "log.h"
#include "mapkeys.h"
#include "rules.h"
#include "store.h"
#include "table.h"

#define GREYLIST_SEED	0x70646772796c7374ULL	/* "pdgrylst" */
#define GROUP_SPF	(1u << 0)
#define GROUP_NAME	(1u << 1)

static const psl_ctx_t *psl;		/* loaded once, for the process */

struct greylist {
	int	delay, retry_window, max_age, awl;
	int	cache_ttl;		/* local_cache seconds, 0 = off */
	struct gl_cache *cache;		/* mutable behind the const rule */
	unsigned char params[GL_PARAMS];	/* the script's ARGV[2] */
	int	v4prefix, v6prefix;
	int	header;
	unsigned group;			/* GROUP_* */
	struct clientlist *wl_clients;
	struct rcptlist *wl_rcpts;
	struct table_list sql_clients, sql_rcpts;	/* pgsql:, mysql: */
	char	*hostname;
};

static const char *const greylist_keys[] = {
	"delay", "retry_window", "max_age", "auto_whitelist", "ipv4_prefix",
	"ipv6_prefix", "header", "whitelist_clients", "whitelist_recipients",
	"local_cache", "group_by", NULL
};

/* gl_int - an optional integer option with bounds */
static int
gl_int(const config_setting_t *rs, const char *name, int def, int min, int max,
    int *out, const struct config *c, char *err, size_t errlen)
{
	const config_setting_t *s = config_setting_get_member(rs, name);

	*out = def;
	if (s == NULL)
		return 0;
	if (config_setting_type(s) != CONFIG_TYPE_INT) {
		snprintf(err, errlen, "%s:%d: %s: expected an integer", c->path,
		    config_setting_source_line(s), name);
		return -1;
	}
	*out = config_setting_get_int(s);
	if (*out < min || *out > max) {
		snprintf(err, errlen, "%s:%d: %s: %d is out of range %d..%d",
		    c->path, config_setting_source_line(s), name, *out, min, max);
		return -1;
	}
	return 0;
}

/* gl_files - load a string or list of whitelist files and tables */
static int
gl_files(const config_setting_t *rs, const char *name, const struct config *c,
    struct greylist *g, int clients, char *err, size_t errlen)
{
	const config_setting_t *s = config_setting_get_member(rs, name);
	int	n;

	if (s == NULL)
		return 0;
	n = config_setting_type(s) == CONFIG_TYPE_STRING ? 1 :
	    config_setting_length(s);
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_type(s) ==
		    CONFIG_TYPE_STRING ? s : config_setting_get_elem(s, i);
		const char *f = config_setting_get_string(e);
		char	path[4096], why[1024];
		int	rc;

		if (f == NULL) {
			snprintf(err, errlen, "%s:%d: %s: expected file names",
			    c->path, config_setting_source_line(e), name);
			return -1;
		}
		config_path(c, f + (table_is_sql(f) ? 6 : 0), path, sizeof(path));
		if (table_is_sql(f))
			rc = table_list_add(clients ? &g->sql_clients :
			    &g->sql_rcpts, f, path, why, sizeof(why));
		else
			rc = clients ? clientlist_load_file(g->wl_clients, path,
			    why, sizeof(why)) : rcptlist_load_file(g->wl_rcpts,
			    path, why, sizeof(why));
		if (rc < 0) {
			/* "file:line: message" of the setting, then the cause */
			snprintf(err, errlen, "%s:%d: %s: %s", c->path,
			    config_setting_source_line(e), name, why);
			return -1;
		}
	}
	return 0;
}

/* greylist_free - release the options */
static void
greylist_free(void *priv)
{
	struct greylist *g = priv;

	clientlist_free(g->wl_clients);
	rcptlist_free(g->wl_rcpts);
	table_list_free(&g->sql_clients);
	table_list_free(&g->sql_rcpts);
	gl_cache_free(g->cache);
	free(g->hostname);
	free(g);
}

/* put_u32 - 4 bytes big-endian */
static void
put_u32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

/* greylist_compile - read the rule's options */
static int
greylist_compile(const config_setting_t *rs, const struct config *c,
    void **priv, char *err, size_t errlen)
{
	struct greylist *g = calloc(1, sizeof(*g));
	const config_setting_t *s;

	if (g == NULL)
		return -1;
	g->wl_clients = clientlist_new();
	g->wl_rcpts = rcptlist_new();
	g->hostname = strdup(c->hostname);
	g->header = 1;
	if (gl_int(rs, "delay", 300, 0, 86400 * 7, &g->delay, c, err, errlen) ||
	    gl_int(rs, "retry_window", 2 * 86400, 1, 86400 * 365,
	    &g->retry_window, c, err, errlen) ||
	    gl_int(rs, "max_age", 35 * 86400, 1, 86400 * 3650, &g->max_age, c,
	    err, errlen) ||
	    gl_int(rs, "auto_whitelist", 5, 0, 1000000, &g->awl, c, err,
	    errlen) ||
	    gl_int(rs, "ipv4_prefix", 24, 8, 32, &g->v4prefix, c, err, errlen) ||
	    gl_int(rs, "ipv6_prefix", 64, 16, 128, &g->v6prefix, c, err,
	    errlen) ||
	    gl_int(rs, "local_cache", 10, 0, 3600, &g->cache_ttl, c, err,
	    errlen) ||
	    gl_files(rs, "whitelist_clients", c, g, 1, err, errlen) ||
	    gl_files(rs, "whitelist_recipients", c, g, 0, err, errlen)) {
		greylist_free(g);
		return -1;
	}
	if (g->retry_window <= g->delay) {
		snprintf(err, errlen, "%s:%d: greylist: retry_window (%d) must "
		    "be longer than delay (%d)", c->path,
		    config_setting_source_line(rs), g->retry_window, g->delay);
		greylist_free(g);
		return -1;
	}
	if ((s = config_setting_get_member(rs, "group_by")) != NULL) {
		int	n = config_setting_type(s) == CONFIG_TYPE_STRING ? 1 :
		    config_setting_type(s) == CONFIG_TYPE_ARRAY ||
		    config_setting_type(s) == CONFIG_TYPE_LIST ?
		    config_setting_length(s) : -1;

		for (int i = 0; i < (n < 0 ? 1 : n); i++) {
			const config_setting_t *e = config_setting_type(s) ==
			    CONFIG_TYPE_STRING ? s : config_setting_get_elem(s, i);
			const char *v = n < 0 ? NULL : config_setting_get_string(e);

			if (v != NULL && strcmp(v, "spf") == 0)
				g->group |= GROUP_SPF;
			else if (v != NULL && strcmp(v, "client_name") == 0)
				g->group |= GROUP_NAME;
			else {
				snprintf(err, errlen, "%s:%d: group_by: expected "
				    "\"spf\" and/or \"client_name\"", c->path,
				    config_setting_source_line(e));
				greylist_free(g);
				return -1;
			}
		}
		if ((g->group & GROUP_NAME) && psl == NULL &&
		    (psl = psl_latest(NULL)) == NULL && (psl = psl_builtin()) ==
		    NULL) {
			snprintf(err, errlen, "%s:%d: group_by: no Public Suffix "
			    "List (install publicsuffix)", c->path,
			    config_setting_source_line(s));
			greylist_free(g);
			return -1;
		}
	}
	if ((s = config_setting_get_member(rs, "header")) != NULL) {
		if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
			snprintf(err, errlen, "%s:%d: header: expected true or "
			    "false", c->path, config_setting_source_line(s));
			greylist_free(g);
			return -1;
		}
		g->header = config_setting_get_bool(s);
	}
	if (g->cache_ttl > 0 && (g->cache = gl_cache_new()) == NULL) {
		greylist_free(g);
		return -1;
	}
	put_u32(g->params, (uint32_t)g->delay);
	put_u32(g->params + 4, (uint32_t)g->retry_window);
	put_u32(g->params + 8, (uint32_t)g->max_age);
	put_u32(g->params + 12, (uint32_t)g->awl);
	*priv = g;
	return 0;
}

/* ------------------------------------------------------- local cache */

struct gl_cache {
	struct {
		uint64_t h;
		long long until_ms;	/* the entry holds before this */
		long long pass_ms;	/* 0: passed; else the delay ends */
	} e[GL_CACHE_SLOTS];
};

/* gl_cache_new - an empty cache */
struct gl_cache *
gl_cache_new(void)
{
	return calloc(1, sizeof(struct gl_cache));
}

/* gl_cache_free - release */
void
gl_cache_free(struct gl_cache *gc)
{
	free(gc);
}

/* gl_cache_get - is h cached and not expired at now_ms? */
int
gl_cache_get(const struct gl_cache *gc, uint64_t h, long long now_ms,
    long long *pass_ms)
{
	size_t	i = (size_t)(h & (GL_CACHE_SLOTS - 1));

	if (gc == NULL || h == 0 || gc->e[i].h != h ||
	    gc->e[i].until_ms <= now_ms)
		return 0;
	if (pass_ms != NULL)
		*pass_ms = gc->e[i].pass_ms;
	return GL_CACHED;
}

/* gl_cache_put - remember h until then (a colliding entry is replaced) */
void
gl_cache_put(struct gl_cache *gc, uint64_t h, long long until_ms,
    long long pass_ms)
{
	size_t	i = (size_t)(h & (GL_CACHE_SLOTS - 1));

	if (gc == NULL || h == 0)
		return;
	gc->e[i].h = h;
	gc->e[i].until_ms = until_ms;
	gc->e[i].pass_ms = pass_ms;
}

/* ------------------------------------------------------------ migration */

/*
 * Old-format keys (one per triplet, PREFIX g{NET} + 8 bytes) are read by
 * the script (KEYS[3]) only while some may exist. Each process looks
 * through the database once per store, in the background: a SCAN step of
 * 1000 keys at most every GL_SCAN_PAUSE ms, driven by greylist requests.
 * Until a whole pass has seen no old key, old keys are read; a pass that
 * saw one starts again GL_RESCAN ms later (they expire within max_age).
 * A failed step is retried GL_SCAN_RETRY ms later. Not in Redis Cluster,
 * where old keys are never read.
 */
#define GL_SCAN_PAUSE	10
#define GL_SCAN_RETRY	10000
#define GL_RESCAN	3600000

static struct {
	const struct store *store;	/* whose Redis the scan is of */
	int	state;			/* GL_OLD_* */
	int	seen;			/* this pass saw an old key */
	long long cursor;
	long long next_ms;		/* the next step not before */
} glold;

enum { GL_OLD_SCAN, GL_OLD_STEP, GL_OLD_NONE };

/* gl_scan_done - one SCAN step's answer */
static void
gl_scan_done(void *arg, const struct store_reply *r)
{
	if (arg != glold.store || glold.state != GL_OLD_STEP)
		return;
	glold.state = GL_OLD_SCAN;
	if (!r->ok || r->n != 2 || r->v[0] < 0) {
		log_debug("greylist: looking for old-format keys: %s; they are "
		    "read meanwhile", r->ok ? "unexpected answer" : r->err);
		glold.next_ms = check_mono_ms() + GL_SCAN_RETRY;
		return;
	}
	glold.seen |= r->v[1] != 0;
	glold.cursor = r->v[0];
	glold.next_ms = check_mono_ms() + GL_SCAN_PAUSE;
	if (glold.cursor != 0)
		return;
	if (!glold.seen) {
		glold.state = GL_OLD_NONE;
		log_debug("greylist: no old-format keys left: not reading them");
		return;
	}
	glold.seen = 0;
	glold.next_ms = check_mono_ms() + GL_RESCAN;
}

/* gl_glob - the SCAN pattern of greylist keys: PREFIX (escaped) g{* */
static size_t
gl_glob(const char *prefix, char *buf, size_t len)
{
	size_t	o = 0;

	for (; *prefix != '\0' && o + 5 < len; prefix++) {
		if (strchr("*?[]\\", *prefix) != NULL)
			buf[o++] = '\\';
		buf[o++] = *prefix;
	}
	memcpy(buf + o, "g{*", 3);
	return o + 3;
}

/* gl_legacy - may old-format keys still exist? (a scan step may go out) */
static int
gl_legacy(struct eval *ev, long long now)
{
	if (glold.store != ev->store) {
		glold.store = ev->store;
		glold.state = GL_OLD_SCAN;
		glold.seen = 0;
		glold.cursor = 0;
		glold.next_ms = 0;
	}
	if (glold.state == GL_OLD_NONE)
		return 0;
	if (glold.state == GL_OLD_SCAN && now >= glold.next_ms) {
		char	pat[2 * STORE_PREFIX_MAX + 8], cur[24], blen[16];
		const char *argv[3] = { pat, cur, blen };
		size_t	argvlen[3];

		argvlen[0] = gl_glob(store_prefix(ev->store), pat, sizeof(pat));
		argvlen[1] = (size_t)snprintf(cur, sizeof(cur), "%lld",
		    glold.cursor);
		argvlen[2] = (size_t)snprintf(blen, sizeof(blen), "%zu",
		    strlen(store_prefix(ev->store)) + 7);
		glold.state = GL_OLD_STEP;
		store_script(ev->store, SCRIPT_GREYLIST, 0, 3, argv, argvlen,
		    gl_scan_done, ev->store);
	}
	return 1;
}

/* greylist_net - hex of the client network, the hash tag of both keys */
static int
greylist_net(const struct greylist *g, struct eval *ev, char *buf,
    size_t len)
{
	const struct policy_req *q = ev->req;

	if ((g->group & GROUP_SPF) && ev->spf_grouping &&
	    ev->spf_domain[0] != '\0') {
		eval_trace(ev, "  greylist: client part: sender domain %s (SPF "
		    "pass)", ev->spf_domain);
		return snprintf(buf, len, "s%016llx", (unsigned long long)
		    addr_hash64(ev->spf_domain, strlen(ev->spf_domain),
		    GREYLIST_SEED));
	}
	if ((g->group & GROUP_NAME) && psl != NULL &&
	    q->len[A_CLIENT_NAME] > 0 && q->len[A_CLIENT_NAME] < 254 &&
	    strcmp(q->v[A_CLIENT_NAME], "unknown") != 0) {
		char	name[256];
		const char *org;

		snprintf(name, sizeof(name), "%s", q->v[A_CLIENT_NAME]);
		addr_lower(name);
		if (name[0] != '\0' && name[strlen(name) - 1] == '.')
			name[strlen(name) - 1] = '\0';
		if ((org = psl_registrable_domain(psl, name)) != NULL &&
		    strchr(org, '.') != NULL) {
			eval_trace(ev, "  greylist: client part: organizational "
			    "domain %s of client_name", org);
			return snprintf(buf, len, "n%016llx", (unsigned long long)
			    addr_hash64(org, strlen(org), GREYLIST_SEED));
		}
	}
	if (!ev->client_ip_ok) {
		/* a broken client_address still gets a stable network */
		uint64_t h = addr_hash64(ev->req->v[A_CLIENT_ADDRESS],
		    ev->req->len[A_CLIENT_ADDRESS], GREYLIST_SEED);

		return snprintf(buf, len, "x%016llx", (unsigned long long)h);
	}
	return addr_net_hex(&ev->client_ip, g->v4prefix, g->v6prefix, buf,
	    len);
}

struct greylist_call {
	struct eval *ev;
	const struct greylist *g;
	uint64_t thash, chash;		/* for the local cache */
	long long sent_ms;		/* the script ran after this */
};

/*
 * gl_pass_until - how long a pass holds in Redis: an entry seen secs ago
 * dies max_age after that (Redis counts whole seconds from the time the
 * script ran, after the call was sent: a second less, and one more for
 * the clocks); never beyond until
 */
static long long
gl_pass_until(const struct greylist *g, long long sent, long long secs,
    long long until)
{
	long long end = sent + (g->max_age - secs - 2) * 1000LL;

	return end < until ? end : until;
}

/* greylist_learn - what the answer tells the local cache */
static void
greylist_learn(const struct greylist *g, const struct greylist_call *gc,
    long long v)
{
	long long now = gc->sent_ms, until = now + g->cache_ttl * 1000LL;
	long long secs = GL_SECONDS(v), count = GL_COUNT(v), end;

	switch (GL_STATUS(v)) {
	case 0:
	case 1:
		/*
		 * Deferred until the delay ends: Redis counts whole seconds
		 * from when the script ran (after the call went out, "now"),
		 * so it may end up to a second before now + secs: keep it a
		 * second less than that at most.
		 */
		if (until > now + (secs - 2) * 1000)
			until = now + (secs - 2) * 1000;
		if (until > now)
			gl_cache_put(g->cache, gc->thash, until,
			    now + secs * 1000);
		break;
	case 2:
		/* the entry was written as passed just now */
		if ((end = gl_pass_until(g, now, 0, until)) > check_mono_ms())
			gl_cache_put(g->cache, gc->thash, end, 0);
		break;
	case 3:
		/* seen secs ago, and renewed when that was over max_age/32 */
		if ((end = gl_pass_until(g, now, secs * 32 > g->max_age ? 0 :
		    secs, until)) > check_mono_ms())
			gl_cache_put(g->cache, gc->thash, end, 0);
		break;
	}
	if (count >= 0 && g->awl > 0) {
		if (GL_STATUS(v) == 4 || GL_STATUS(v) == 2) {
			/* a whitelisting ends max_age after the last pass:
			 * secs ago (4), or now (2) */
			end = gl_pass_until(g, now, GL_STATUS(v) == 4 ? secs : 0,
			    until);
			if (count >= g->awl && end > check_mono_ms())
				gl_cache_put(g->cache, GL_AWL_KEY(gc->chash),
				    end, 0);
		}
		if (GL_STATUS(v) != 4 && count < g->awl)
			gl_cache_put(g->cache, GL_LOW_KEY(gc->chash), until, 0);
	}
}

/* put_text - append s at buf[*o] (the caller sized buf) */
static void
put_text(char *buf, size_t *o, const char *s)
{
	size_t	n = strlen(s);

	memcpy(buf + *o, s, n);
	*o += n;
}

/*
 * greylist_defer - the answer while greylisted: the detail is before,
 * secs and after (the most common answer; built without a format)
 */
static void
greylist_defer(struct eval *ev, long long secs, const char *before,
    const char *after)
{
	char	action[128], detail[128];
	size_t	o = 0;

	put_text(action, &o, "DEFER_IF_PERMIT 4.7.1 Greylisted, please try "
	    "again in ");
	o += check_put_dec(action + o, secs);
	put_text(action, &o, " seconds");
	action[o] = '\0';
	o = 0;
	put_text(detail, &o, before);
	o += check_put_dec(detail + o, secs);
	put_text(detail, &o, after);
	detail[o] = '\0';
	eval_check_done(ev, CHECK_MATCH, action, detail);
}

/* greylist_done - the script's answer */
static void
greylist_done(void *arg, const struct store_reply *r)
{
	struct greylist_call *gc = arg;
	struct eval *ev = gc->ev;
	const struct greylist *g = gc->g;
	char	action[512], detail[256];
	const char *fail;
	long long v, secs;

	if ((fail = check_script_error(r, "greylist", detail,
	    sizeof(detail))) != NULL) {
		free(gc);
		eval_check_done(ev, CHECK_TEMPFAIL, NULL, fail);
		return;
	}
	v = r->v[0];
	secs = GL_SECONDS(v);
	if (g->cache != NULL)
		greylist_learn(g, gc, v);
	free(gc);

	switch (GL_STATUS(v)) {
	case 0:
		greylist_defer(ev, secs, "new triplet, delay ", " s");
		return;
	case 1:
		greylist_defer(ev, secs, "early retry, ", " s left");
		return;
	case 2:
		snprintf(detail, sizeof(detail), "retry after %lld s passes "
		    "(client network passes: %lld)", secs,
		    GL_COUNT(v) > 0 ? GL_COUNT(v) : 0);
		if (g->header) {
			char	date[64];
			struct tm tm;

			gmtime_r(&ev->now, &tm);
			strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S UTC",
			    &tm);
			snprintf(action, sizeof(action), "PREPEND X-Greylist: "
			    "delayed %lld seconds by policyd at %s; %s", secs,
			    g->hostname, date);
			eval_check_done(ev, CHECK_MATCH, action, detail);
		} else {
			eval_check_done(ev, CHECK_NOMATCH, NULL, detail);
		}
		return;
	case 3:
		snprintf(detail, sizeof(detail), "known triplet, first seen "
		    "%lld s ago", secs);
		eval_check_done(ev, CHECK_NOMATCH, NULL, detail);
		return;
	case 4:
		snprintf(detail, sizeof(detail), "client network auto-"
		    "whitelisted after %lld passes", GL_COUNT(v) > 0 ?
		    GL_COUNT(v) : 0);
		eval_check_done(ev, CHECK_NOMATCH, NULL, detail);
		return;
	default:
		eval_check_done(ev, CHECK_TEMPFAIL, NULL,
		    "unexpected greylist script status");
	}
}

/* greylist_cached - answer from the local cache; 1 when it did */
static int
greylist_cached(const struct greylist *g, struct eval *ev,
    const struct gl_key *k, long long now)
{
	long long pass;

	if (g->awl > 0 && gl_cache_get(g->cache, GL_AWL_KEY(k->chash), now,
	    NULL)) {
		eval_check_done(ev, CHECK_NOMATCH, NULL, "client network "
		    "auto-whitelisted (local cache)");
		return 1;
	}
	if (!gl_cache_get(g->cache, k->thash, now, &pass))
		return 0;
	if (pass == 0) {
		eval_check_done(ev, CHECK_NOMATCH, NULL, "known triplet, "
		    "passed before (local cache)");
		return 1;
	}
	greylist_defer(ev, (pass - now + 999) / 1000, "early retry, ",
	    " s left (local cache)");
	return 1;
}

static void greylist_triplet(const struct greylist *g, struct eval *ev);

/* a whitelist asked in SQL: the client tables, then the recipients' */
struct gl_wait {
	const struct greylist *g;
	struct eval *ev;
	int	rcpt;			/* asking the recipient tables */
	struct table *failed;		/* the first table that failed */
	struct mapkeys k;		/* the keys asked */
};

/* gl_wl_done - a row whitelists; else the next tables, the triplet */
static void
gl_wl_done(void *arg, enum table_status st, int ti, int ki, const char *value)
{
	struct gl_wait *w = arg;
	const struct greylist *g = w->g;
	const struct table_list *l = w->rcpt ? &g->sql_rcpts : &g->sql_clients;
	struct eval *ev = w->ev;
	struct table *failed;
	char	detail[256];

	(void)value;
	if (st == TABLE_FOUND) {
		snprintf(detail, sizeof(detail), "%s whitelisted (%s %.100s: "
		    "\"%.80s\")", w->rcpt ? "recipient" : "client", w->rcpt ?
		    "whitelist_recipients" : "whitelist_clients",
		    table_name(l->t[ti]), w->k.k[ki]);
		mapkeys_free(&w->k);
		free(w);
		eval_check_done(ev, CHECK_NOMATCH, NULL, detail);
		return;
	}
	if (st == TABLE_ERROR && w->failed == NULL)
		w->failed = l->t[ti];
	mapkeys_free(&w->k);
	if (!w->rcpt && g->sql_rcpts.n > 0) {
		w->rcpt = 1;
		if (mapkeys_rcptlist(ev->req->v[A_RECIPIENT], &w->k) < 0) {
			free(w);
			eval_check_done(ev, CHECK_TEMPFAIL, NULL,
			    "out of memory");
			return;
		}
		table_lookup_any(g->sql_rcpts.t, g->sql_rcpts.n,
		    (const char *const *)w->k.k, w->k.n, gl_wl_done, w);
		return;
	}
	failed = w->failed;
	free(w);
	if (failed == NULL) {
		greylist_triplet(g, ev);
		return;
	}
	/* not whitelisted elsewhere: the rule's on_error decides */
	snprintf(detail, sizeof(detail), "whitelist table %.200s: lookup "
	    "failed (database down or slow)", table_name(failed));
	eval_check_done(ev, CHECK_TEMPFAIL, NULL, detail);
}

/* gl_wl_sql - ask the SQL whitelists (the files found nothing) */
static void
gl_wl_sql(const struct greylist *g, struct eval *ev)
{
	const struct policy_req *q = ev->req;
	struct gl_wait *w = calloc(1, sizeof(*w));

	if (w == NULL || (g->sql_clients.n > 0 && mapkeys_clientlist(
	    ev->client_ip_ok ? q->v[A_CLIENT_ADDRESS] : NULL,
	    q->v[A_CLIENT_NAME], &w->k) < 0)) {
		free(w);
		eval_check_done(ev, CHECK_TEMPFAIL, NULL, "out of memory");
		return;
	}
	w->g = g;
	w->ev = ev;
	if (g->sql_clients.n == 0) {
		gl_wl_done(w, TABLE_NOTFOUND, -1, -1, NULL);
		return;
	}
	table_lookup_any(g->sql_clients.t, g->sql_clients.n,
	    (const char *const *)w->k.k, w->k.n, gl_wl_done, w);
}

/* greylist_run - whitelists, then the triplet */
static void
greylist_run(void *priv, struct eval *ev)
{
	const struct greylist *g = priv;
	const struct policy_req *q = ev->req;

	if (clientlist_count(g->wl_clients) && clientlist_match(g->wl_clients,
	    q->v[A_CLIENT_NAME], ev->client_ip_ok ? &ev->client_ip : NULL)) {
		eval_check_done(ev, CHECK_NOMATCH, NULL,
		    "client whitelisted (whitelist_clients)");
		return;
	}
	if (q->len[A_RECIPIENT] == 0) {
		eval_check_done(ev, CHECK_NOMATCH, NULL,
		    "no recipient attribute: not greylisted");
		return;
	}
	/* whitelisted recipients pass whatever their length */
	if (rcptlist_count(g->wl_rcpts) && rcptlist_match(g->wl_rcpts,
	    q->v[A_RECIPIENT])) {
		eval_check_done(ev, CHECK_NOMATCH, NULL,
		    "recipient whitelisted (whitelist_recipients)");
		return;
	}
	if (g->sql_clients.n > 0 || g->sql_rcpts.n > 0) {
		gl_wl_sql(g, ev);
		return;
	}
	greylist_triplet(g, ev);
}

/* greylist_triplet - the local cache, then one script call */
static void
greylist_triplet(const struct greylist *g, struct eval *ev)
{
	const struct policy_req *q = ev->req;
	char	net[64], sender[1100], rcpt[1100], legacy[96];
	unsigned char params[GL_PARAMS];
	const char *argv[5];
	size_t	argvlen[5];
	struct gl_key k;
	struct greylist_call *call;
	int	nl, sl, rl, nkeys;
	long long now = 0;

	if (q->len[A_RECIPIENT] >= 1024 || q->len[A_SENDER] >= 1024) {
		/* longer than any valid address: hash the raw value */
		sl = snprintf(sender, sizeof(sender), "%016llx",
		    (unsigned long long)addr_hash64(q->v[A_SENDER],
		    q->len[A_SENDER], GREYLIST_SEED));
		rl = snprintf(rcpt, sizeof(rcpt), "%016llx",
		    (unsigned long long)addr_hash64(q->v[A_RECIPIENT],
		    q->len[A_RECIPIENT], GREYLIST_SEED));
	} else {
		/* both shorter than 1024 bytes: they fit */
		if ((sl = addr_greylist_sender(q->v[A_SENDER], sender,
		    sizeof(sender))) < 0) {
			sl = (int)q->len[A_SENDER];
			memcpy(sender, q->v[A_SENDER], (size_t)sl + 1);
		}
		rl = (int)q->len[A_RECIPIENT];
		memcpy(rcpt, q->v[A_RECIPIENT], (size_t)rl + 1);
		addr_lower(rcpt);
	}
	if (!ev->client_ip_ok)
		log_warnx("greylist: invalid client_address; greylisting by "
		    "the raw value");
	nl = greylist_net(g, ev, net, sizeof(net));
	greylist_key_of(net, (size_t)nl, sender, (size_t)sl, rcpt, (size_t)rl,
	    &k);
	memcpy(params, g->params, GL_PARAMS - 1);
	params[GL_PARAMS - 1] = k.sweep ? GL_F_SWEEP : 0;
	if (g->cache != NULL) {
		now = check_mono_ms();
		if (greylist_cached(g, ev, &k, now))
			return;
		if (g->awl > 0 && gl_cache_get(g->cache, GL_LOW_KEY(k.chash),
		    now, NULL))
			params[GL_PARAMS - 1] |= GL_F_NOCOUNT;
	}
	if ((call = malloc(sizeof(*call))) == NULL)
		fatalx("out of memory");
	call->ev = ev;
	call->g = g;
	call->thash = k.thash;
	call->chash = k.chash;
	call->sent_ms = now ? now : check_mono_ms();
	/* no time argument: the script reads Redis's clock (TIME) */
	argv[0] = k.bucket; argvlen[0] = 7;
	argv[1] = k.counter; argvlen[1] = 7;
	nkeys = 2;
	if (ev->cfg->redis.cluster == NULL && gl_legacy(ev, now ? now :
	    check_mono_ms())) {
		/* the old format's key: read until it expires */
		argvlen[2] = (size_t)greylist_legacy_key(net, (size_t)nl,
		    sender, (size_t)sl, rcpt, (size_t)rl, legacy,
		    sizeof(legacy));
		argv[2] = legacy;
		nkeys = 3;
	}
	argv[nkeys] = (const char *)k.field;
	argvlen[nkeys] = k.fieldlen;
	argv[nkeys + 1] = (const char *)params;
	argvlen[nkeys + 1] = GL_PARAMS;
	store_script_batched(ev->store, SCRIPT_GREYLIST, nkeys, nkeys + 2,
	    argv, argvlen, greylist_done, call);
}

/* put_hash - the bytes of v from bit "from" upwards, most significant first */
static void
put_bits(unsigned char *out, int nbytes, uint64_t v, int from)
{
	for (int i = 0; i < nbytes; i++)
		out[i] = (unsigned char)(v >> (from + 8 * (nbytes - 1 - i)));
}

/* greylist_bucket_name - "g{TT}BB" */
void
greylist_bucket_name(unsigned tag, unsigned bucket, char out[8])
{
	static const char hex[] = "0123456789abcdef";

	out[0] = 'g';
	out[1] = '{';
	out[2] = hex[(tag >> 4) & 15];
	out[3] = hex[tag & 15];
	out[4] = '}';
	out[5] = hex[(bucket >> 4) & 15];
	out[6] = hex[bucket & 15];
	out[7] = '\0';
}

/* hexbytes - decode 2n hex digits; the number of bytes, or -1 */
static int
hexbytes(const char *h, size_t hl, unsigned char *out, size_t max)
{
	size_t	n = hl / 2;

	if (hl % 2 != 0 || n == 0 || n > max)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int	v = 0;

		for (int j = 0; j < 2; j++) {
			char	ch = h[2 * i + j];

			v <<= 4;
			if (ch >= '0' && ch <= '9')
				v |= ch - '0';
			else if (ch >= 'a' && ch <= 'f')
				v |= ch - 'a' + 10;
			else
				return -1;
		}
		out[i] = (unsigned char)v;
	}
	return (int)n;
}

/* client_of - greylist_client_of() with the client's hash c */
static void
client_of(const char *client, size_t clen, uint64_t c, struct gl_key *k)
{
	int	n = -1;

	memset(k, 0, sizeof(*k));
	k->tag = (unsigned)(c & 0xff);
	k->chash = c;
	greylist_bucket_name(k->tag, (unsigned)((c >> 24) & 0xff), k->counter);
	if (clen > 0 && client[0] == 'x') {
		k->name[0] = 'x';
		n = hexbytes(client + 1, clen - 1, k->name + 1, 8);
	} else if (clen % 2 == 1 && client[0] == '6') {
		k->name[0] = '6';
		n = hexbytes(client + 1, clen - 1, k->name + 1, 16);
	} else {
		k->name[0] = '4';
		n = hexbytes(client, clen, k->name + 1, 4);
	}
	if (n < 0) {
		k->name[0] = 'h';
		put_bits(k->name + 1, 8, c, 0);
		n = 8;
	}
	k->namelen = 1 + (size_t)n;
	memcpy(k->field, k->name, k->namelen);
	k->awl[0] = 'a';
	memcpy(k->awl + 1, k->name, k->namelen);
	k->awllen = 1 + k->namelen;
}

/* greylist_client_of - the client's tag, counter and name N */
void
greylist_client_of(const char *client, size_t clen, struct gl_key *k)
{
	client_of(client, clen, addr_hash64(client, clen, GREYLIST_SEED), k);
}

/* greylist_key_of - bucket, field and counter of one triplet */
void
greylist_key_of(const char *client, size_t clen, const char *sender,
    size_t slen, const char *rcpt, size_t rlen, struct gl_key *k)
{
	uint64_t c = addr_hash64(client, clen, GREYLIST_SEED), t;
	char	stack[2300], *buf = stack;
	size_t	n = clen + 1 + slen + 1 + rlen;

	client_of(client, clen, c, k);
	if (n > sizeof(stack) && (buf = malloc(n)) == NULL)
		fatalx("out of memory");
	memcpy(buf, client, clen);
	buf[clen] = '\0';
	memcpy(buf + clen + 1, sender, slen);
	buf[clen + 1 + slen] = '\0';
	memcpy(buf + clen + 2 + slen, rcpt, rlen);
	t = addr_hash64(buf, n, GREYLIST_SEED);
	if (buf != stack)
		free(buf);
	greylist_bucket_name((unsigned)(c & 0xff), (unsigned)((t >> 8) & 0xff),
	    k->bucket);
	put_bits(k->field + k->namelen, 4, t, 32);
	k->thash = t;
	k->fieldlen = k->namelen + 4;
	k->sweep = (t & 0xf) == 0;
}

/* greylist_legacy_key - g{C} and 8 bytes of hash(sender NUL recipient) */
int
greylist_legacy_key(const char *client, size_t clen, const char *sender,
    size_t slen, const char *rcpt, size_t rlen, char *buf, size_t len)
{
	char	stack[2200], *both = stack;
	size_t	n = slen + 1 + rlen;
	uint64_t h;

	if (len < clen + 3 + 8 + 1)
		return -1;
	if (n > sizeof(stack) && (both = malloc(n)) == NULL)
		fatalx("out of memory");
	memcpy(both, sender, slen);
	both[slen] = '\0';
	memcpy(both + slen + 1, rcpt, rlen);
	h = addr_hash64(both, n, GREYLIST_SEED);
	if (both != stack)
		free(both);
	memcpy(buf, "g{", 2);
	memcpy(buf + 2, client, clen);
	buf[2 + clen] = '}';
	for (int i = 0; i < 8; i++)
		buf[3 + clen + i] = (char)(h >> (56 - 8 * i));
	buf[3 + clen + 8] = '\0';
	return (int)(3 + clen + 8);
}

const struct check_ops check_greylist_ops = {
	.name = "greylist",
	.keys = greylist_keys,
	.states = STATE_RCPT,
	.compile = greylist_compile,
	.run = greylist_run,
	.free = greylist_free,
};

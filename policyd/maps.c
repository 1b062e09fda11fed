/*
 * maps.c - lookup tables loaded from files (see maps.h)
 */
#include <errno.h>
#include <regex.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "maps.h"

#define MAP_KEY_MAX	1024		/* longest key accepted */
#define MAP_SEED	0x706f6c6963796400ULL
#define MIN_BUCKETS	16

/* ---------------------------------------------------------------- */
/* small helpers                                                    */
/* ---------------------------------------------------------------- */

/* set_err - format a message into (err, errlen) when there is room */
static void
set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list	ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* is_ws - ASCII white space */
static int
is_ws(int c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v'
	    || c == '\f';
}

/* lc - ASCII lowercase of one character */
static int
lc(int c)
{
	return (c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c;
}

/* xstrndup - copy n bytes into a new NUL-terminated string */
static char *
xstrndup(const char *s, size_t n)
{
	char   *p = malloc(n + 1);

	if (p != NULL) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

/* lower_dup - lowercase copy of a string, NULL when out of memory */
static char *
lower_dup(const char *s)
{
	char   *p = xstrndup(s, strlen(s));

	if (p != NULL)
		addr_lower(p);
	return p;
}

/* has_ws - does the string contain white space? */
static int
has_ws(const char *s)
{
	for (; *s != '\0'; s++)
		if (is_ws((unsigned char)*s))
			return 1;
	return 0;
}

/* Growable string used to assemble logical lines. */
struct dstr {
	char   *s;
	size_t	len;
	size_t	cap;
};

/* dstr_append - append n bytes, -1 when out of memory */
static int
dstr_append(struct dstr *d, const char *s, size_t n)
{
	char   *p;
	size_t	cap;

	if (d->len + n + 1 > d->cap) {
		cap = d->cap ? d->cap : 128;
		while (cap < d->len + n + 1)
			cap *= 2;
		if ((p = realloc(d->s, cap)) == NULL)
			return -1;
		d->s = p;
		d->cap = cap;
	}
	memcpy(d->s + d->len, s, n);
	d->len += n;
	d->s[d->len] = '\0';
	return 0;
}

/* ---------------------------------------------------------------- */
/* file reading                                                     */
/* ---------------------------------------------------------------- */

/* Physical line reader. */
struct reader {
	FILE   *fp;
	const char *path;
	char   *line;
	size_t	cap;
	size_t	len;
	int	lineno;
};

/* rd_open - open a file for reading, "path: strerror" on failure */
static int
rd_open(struct reader *r, const char *path, char *err, size_t errlen)
{
	memset(r, 0, sizeof(*r));
	r->path = path ? path : "(null)";
	if (path == NULL || (r->fp = fopen(path, "r")) == NULL) {
		set_err(err, errlen, "%s: %s", r->path,
		    strerror(path ? errno : EINVAL));
		return -1;
	}
	return 0;
}

/* rd_close - release the reader */
static void
rd_close(struct reader *r)
{
	if (r->fp != NULL)
		fclose(r->fp);
	free(r->line);
	r->fp = NULL;
	r->line = NULL;
}

/* rd_next - next line, trailing blanks cut: 1 line, 0 EOF, -1 error */
static int
rd_next(struct reader *r, char *err, size_t errlen)
{
	ssize_t	n;

	errno = 0;
	n = getline(&r->line, &r->cap, r->fp);
	if (n < 0) {
		if (ferror(r->fp)) {
			set_err(err, errlen, "%s:%d: read error: %s", r->path,
			    r->lineno + 1, strerror(errno ? errno : EIO));
			return -1;
		}
		return 0;
	}
	r->lineno++;
	if (strlen(r->line) != (size_t)n) {
		set_err(err, errlen, "%s:%d: line contains a NUL byte",
		    r->path, r->lineno);
		return -1;
	}
	while (n > 0 && is_ws((unsigned char)r->line[n - 1]))
		n--;
	r->line[n] = '\0';
	r->len = (size_t)n;
	return 1;
}

/* Callback for one logical table line: key and value are split. */
typedef int (*table_fn) (void *ctx, const char *path, int lineno,
	const char *key, const char *value, char *err, size_t errlen);

/* table_line - split a logical line into key and value, call fn */
static int
table_line(struct dstr *d, const char *path, int lineno, table_fn fn,
	void *ctx, char *err, size_t errlen)
{
	char   *p = d->s, *key, *value;

	key = p;
	while (*p != '\0' && !is_ws((unsigned char)*p))
		p++;
	if (*p != '\0')
		*p++ = '\0';
	while (is_ws((unsigned char)*p))
		p++;
	value = p;
	if (strlen(key) > MAP_KEY_MAX) {
		set_err(err, errlen, "%s:%d: key too long (more than %d bytes)",
		    path, lineno, MAP_KEY_MAX);
		return -1;
	}
	return fn(ctx, path, lineno, key, value, err, errlen);
}

/* table_read - call fn for each logical line of a Postfix table file */
static int
table_read(const char *path, table_fn fn, void *ctx, char *err,
	size_t errlen)
{
	struct reader r;
	struct dstr d = {NULL, 0, 0};
	const char *p;
	int	rc, start = 0, ret = -1;

	if (rd_open(&r, path, err, errlen) != 0)
		return -1;
	while ((rc = rd_next(&r, err, errlen)) > 0) {
		for (p = r.line; is_ws((unsigned char)*p); p++)
			;
		if (*p == '\0' || *p == '#')
			continue;
		if (p != r.line) {
			if (d.len == 0) {
				set_err(err, errlen, "%s:%d: continuation line "
				    "without a preceding entry", r.path,
				    r.lineno);
				goto out;
			}
			if (dstr_append(&d, " ", 1) != 0
			    || dstr_append(&d, p, strlen(p)) != 0)
				goto nomem;
			continue;
		}
		if (d.len > 0) {
			if (table_line(&d, r.path, start, fn, ctx, err,
			    errlen) != 0)
				goto out;
			d.len = 0;
		}
		start = r.lineno;
		if (dstr_append(&d, p, strlen(p)) != 0)
			goto nomem;
	}
	if (rc < 0)
		goto out;
	if (d.len > 0 && table_line(&d, r.path, start, fn, ctx, err,
	    errlen) != 0)
		goto out;
	ret = 0;
	goto out;
nomem:
	set_err(err, errlen, "%s:%d: out of memory", r.path, r.lineno);
out:
	free(d.s);
	rd_close(&r);
	return ret;
}

/* Callback for one postgrey list entry. */
typedef int (*list_fn) (void *ctx, const char *entry, char *err,
	size_t errlen);

/* list_read - call fn for each entry of a postgrey whitelist file */
static int
list_read(const char *path, list_fn fn, void *ctx, char *err,
	size_t errlen)
{
	struct reader r;
	char	msg[512];
	char   *p, *q;
	int	rc;

	if (rd_open(&r, path, err, errlen) != 0)
		return -1;
	while ((rc = rd_next(&r, err, errlen)) > 0) {
		for (q = r.line; *q != '\0'; q++) {
			if (*q == '#' && (q == r.line
			    || is_ws((unsigned char)q[-1]))) {
				*q = '\0';
				break;
			}
		}
		for (p = r.line; is_ws((unsigned char)*p); p++)
			;
		q = p + strlen(p);
		while (q > p && is_ws((unsigned char)q[-1]))
			*--q = '\0';
		if (*p == '\0')
			continue;
		msg[0] = '\0';
		if (fn(ctx, p, msg, sizeof(msg)) != 0) {
			set_err(err, errlen, "%s:%d: %s", r.path, r.lineno,
			    msg);
			rc = -1;
			break;
		}
	}
	rd_close(&r);
	return rc < 0 ? -1 : 0;
}

/* ---------------------------------------------------------------- */
/* string maps                                                      */
/* ---------------------------------------------------------------- */

struct entry {
	struct entry *next;
	uint64_t hash;
	size_t	klen;
	char   *key;
	char   *value;
};

struct map {
	struct entry **buckets;
	size_t	nbuckets;
	size_t	count;
	int	flags;
};

/* map_new - create an empty map */
struct map *
map_new(void)
{
	struct map *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	m->buckets = calloc(MIN_BUCKETS, sizeof(*m->buckets));
	if (m->buckets == NULL) {
		free(m);
		return NULL;
	}
	m->nbuckets = MIN_BUCKETS;
	return m;
}

/* map_find - entry for a lowercase key of known length and hash */
static struct entry *
map_find(const struct map *m, const char *key, size_t klen, uint64_t hash)
{
	struct entry *e;

	for (e = m->buckets[hash & (m->nbuckets - 1)]; e; e = e->next)
		if (e->hash == hash && e->klen == klen
		    && memcmp(e->key, key, klen) == 0)
			return e;
	return NULL;
}

/* map_grow - double the bucket array */
static int
map_grow(struct map *m)
{
	struct entry **nb, *e, *next;
	size_t	n = m->nbuckets * 2, i;

	if ((nb = calloc(n, sizeof(*nb))) == NULL)
		return -1;
	for (i = 0; i < m->nbuckets; i++) {
		for (e = m->buckets[i]; e; e = next) {
			next = e->next;
			e->next = nb[e->hash & (n - 1)];
			nb[e->hash & (n - 1)] = e;
		}
	}
	free(m->buckets);
	m->buckets = nb;
	m->nbuckets = n;
	return 0;
}

/*
 * tab_put - the one hash table behind string and CIDR maps: insert or
 * replace (the last value wins) key[0..klen) (any bytes), taking
 * ownership of key and value (freed on failure). 0 or -1.
 */
static int
tab_put(struct map *m, char *key, size_t klen, char *v)
{
	struct entry *e;
	uint64_t hash = addr_hash_mem(key, klen, MAP_SEED);

	if ((e = map_find(m, key, klen, hash)) != NULL) {
		free(key);
		free(e->value);
		e->value = v;
		return 0;
	}
	if (m->count + 1 > m->nbuckets / 4 * 3)
		(void)map_grow(m);	/* a full table still works */
	if ((e = malloc(sizeof(*e))) == NULL) {
		free(key);
		free(v);
		return -1;
	}
	e->hash = hash;
	e->klen = klen;
	e->key = key;
	e->value = v;
	e->next = m->buckets[hash & (m->nbuckets - 1)];
	m->buckets[hash & (m->nbuckets - 1)] = e;
	m->count++;
	return 0;
}

/* tab_get - the value of key[0..klen) (any bytes), or NULL */
static const char *
tab_get(const struct map *m, const void *key, size_t klen)
{
	struct entry *e = map_find(m, key, klen, addr_hash_mem(key, klen,
	    MAP_SEED));

	return e ? e->value : NULL;
}

/* map_put - insert or replace (the last value wins) */
int
map_put(struct map *m, const char *key, const char *value)
{
	char   *lkey, *v;
	size_t	klen;

	if (m == NULL || key == NULL)
		return -1;
	if ((klen = strlen(key)) > MAP_KEY_MAX)
		return -1;
	if (value == NULL)
		value = "";
	if ((lkey = lower_dup(key)) == NULL)
		return -1;
	if ((v = xstrndup(value, strlen(value))) == NULL) {
		free(lkey);
		return -1;
	}
	return tab_put(m, lkey, klen, v);
}

/* map_get_lc - look up a key that is already lowercase */
static const char *
map_get_lc(const struct map *m, const char *key, size_t klen)
{
	struct entry *e;

	if (m == NULL || klen > MAP_KEY_MAX)
		return NULL;
	e = map_find(m, key, klen, addr_hash_mem(key, klen, MAP_SEED));
	return e ? e->value : NULL;
}

/* map_get - exact lookup, ignoring ASCII case */
const char *
map_get(const struct map *m, const char *key)
{
	char	buf[MAP_KEY_MAX + 1];
	size_t	klen;

	if (m == NULL || key == NULL)
		return NULL;
	/* copied and lowercased in one pass; a longer key is in no map */
	for (klen = 0; key[klen] != '\0'; klen++) {
		unsigned char c = (unsigned char)key[klen];

		if (klen == MAP_KEY_MAX)
			return NULL;
		buf[klen] = (char)(c + ((unsigned)c - 'A' < 26u ? 'a' - 'A' : 0));
	}
	return map_get_lc(m, buf, klen);
}

/* map_get_lower - exact lookup of a key the caller has lowercased */
const char *
map_get_lower(const struct map *m, const char *key)
{
	if (m == NULL || key == NULL)
		return NULL;
	return map_get_lc(m, key, strlen(key));
}

/* map_count - number of keys */
size_t
map_count(const struct map *m)
{
	return m ? m->count : 0;
}

/* map_free - release a map and everything in it */
void
map_free(struct map *m)
{
	struct entry *e, *next;
	size_t	i;

	if (m == NULL)
		return;
	for (i = 0; i < m->nbuckets; i++) {
		for (e = m->buckets[i]; e; e = next) {
			next = e->next;
			free(e->key);
			free(e->value);
			free(e);
		}
	}
	free(m->buckets);
	free(m);
}

/* a loader's target and its optional value check */
struct load_ctx {
	void   *map;
	map_value_check *check;
};

/* check_value - the loader's value check: 0, or -1 with "path:line: why" */
static int
check_value(const struct load_ctx *lc, const char *path, int lineno,
	const char *key, const char *value, char *err, size_t errlen)
{
	char	why[256];

	if (lc->check == NULL || lc->check(value, why, sizeof(why)) == 0)
		return 0;
	set_err(err, errlen, "%s:%d: key \"%.100s\": %s", path, lineno, key,
	    why);
	return -1;
}

/* map_table_entry - table_read callback for map_load_file */
static int
map_table_entry(void *ctx, const char *path, int lineno, const char *key,
	const char *value, char *err, size_t errlen)
{
	const struct load_ctx *lc = ctx;
	struct map *m = lc->map;

	if (*value == '\0' && !(m->flags & MAP_F_SET)) {
		set_err(err, errlen, "%s:%d: missing value for key \"%s\"",
		    path, lineno, key);
		return -1;
	}
	if (strlen(key) > MAP_KEY_MAX) {
		set_err(err, errlen, "%s:%d: key longer than %d bytes", path,
		    lineno, MAP_KEY_MAX);
		return -1;
	}
	if (check_value(lc, path, lineno, key, value, err, errlen) < 0)
		return -1;
	if (map_put(m, key, value) != 0) {
		set_err(err, errlen, "%s:%d: out of memory", path, lineno);
		return -1;
	}
	return 0;
}

/* map_load_file_checked - map_load_file, every value through check */
int
map_load_file_checked(struct map *m, const char *path, int flags,
	map_value_check *check, char *err, size_t errlen)
{
	struct load_ctx lc = { m, check };
	int	saved, rc;

	if (m == NULL) {
		set_err(err, errlen, "%s: no map", path ? path : "(null)");
		return -1;
	}
	saved = m->flags;
	m->flags = flags;
	rc = table_read(path, map_table_entry, &lc, err, errlen);
	m->flags = saved | flags;
	return rc;
}

/* map_load_file - add the entries of a Postfix-style table file */
int
map_load_file(struct map *m, const char *path, int flags, char *err,
	size_t errlen)
{
	return map_load_file_checked(m, path, flags, NULL, err, errlen);
}

/* Candidate key builder for the address and domain lookups. */
struct keybuf {
	char	s[MAP_KEY_MAX + 1];
	size_t	len;
	int	overflow;
};

/* kb_add - append n bytes lowercased */
static void
kb_add(struct keybuf *k, const char *s, size_t n)
{
	if (k->overflow || k->len + n > MAP_KEY_MAX) {
		k->overflow = 1;
		return;
	}
	while (n-- > 0)
		k->s[k->len++] = (char)lc((unsigned char)*s++);
	k->s[k->len] = '\0';
}

/* try_key - look up a+b+c lowercased; copy the key to matched on a hit */
static const char *
try_key(const struct map *m, const char *a, size_t alen, const char *b,
	size_t blen, const char *c, size_t clen, char *matched,
	size_t matchedlen)
{
	struct keybuf k;
	const char *v;

	k.len = 0;
	k.overflow = 0;
	k.s[0] = '\0';
	kb_add(&k, a, alen);
	kb_add(&k, b, blen);
	kb_add(&k, c, clen);
	if (k.overflow)
		return NULL;
	if ((v = map_get_lc(m, k.s, k.len)) != NULL && matched != NULL
	    && matchedlen > 0)
		snprintf(matched, matchedlen, "%s", k.s);
	return v;
}

/* map_lookup_address - most specific entry for an address */
const char *
map_lookup_address(const struct map *m, const char *addr, char delim,
	char *matched, size_t matchedlen)
{
	const char *at, *dom = NULL, *ext = NULL, *v, *p;
	size_t	llen, blen, dlen = 0;

	if (matched != NULL && matchedlen > 0)
		matched[0] = '\0';
	if (m == NULL || addr == NULL)
		return NULL;
	if (*addr == '\0')
		return try_key(m, "<>", 2, "", 0, "", 0, matched, matchedlen);
	at = strrchr(addr, '@');
	llen = at ? (size_t)(at - addr) : strlen(addr);
	if (at != NULL) {
		dom = at + 1;
		dlen = strlen(dom);
	}
	if (delim != '\0' && (ext = memchr(addr, delim, llen)) == addr)
		ext = NULL;
	blen = ext ? (size_t)(ext - addr) : llen;

	/* user+ext@domain, user@domain */
	if ((v = try_key(m, addr, llen, "@", at ? 1 : 0, dom ? dom : "", dlen,
	    matched, matchedlen)) != NULL)
		return v;
	if (ext != NULL && (v = try_key(m, addr, blen, "@", at ? 1 : 0,
	    dom ? dom : "", dlen, matched, matchedlen)) != NULL)
		return v;
	/* user+ext@, user@ */
	if (llen > 0) {
		if ((v = try_key(m, addr, llen, "@", 1, "", 0, matched,
		    matchedlen)) != NULL)
			return v;
		if (ext != NULL && (v = try_key(m, addr, blen, "@", 1, "", 0,
		    matched, matchedlen)) != NULL)
			return v;
	}
	if (dom == NULL || dlen == 0)
		return NULL;
	/* @domain, bare domain, then parent domains */
	if ((v = try_key(m, "@", 1, dom, dlen, "", 0, matched,
	    matchedlen)) != NULL)
		return v;
	if ((m->flags & MAP_F_BARE_DOMAIN) && (v = try_key(m, dom, dlen, "", 0,
	    "", 0, matched, matchedlen)) != NULL)
		return v;
	for (p = dom + 1; (p = strchr(p, '.')) != NULL; p++)
		if ((v = try_key(m, p, strlen(p), "", 0, "", 0, matched,
		    matchedlen)) != NULL)
			return v;
	return NULL;
}

/* map_lookup_domain - exact name, then parent ".suffix" entries */
const char *
map_lookup_domain(const struct map *m, const char *name, char *matched,
	size_t matchedlen)
{
	const char *p, *v;

	if (matched != NULL && matchedlen > 0)
		matched[0] = '\0';
	if (m == NULL || name == NULL || *name == '\0')
		return NULL;
	if ((v = try_key(m, name, strlen(name), "", 0, "", 0, matched,
	    matchedlen)) != NULL)
		return v;
	for (p = name + 1; (p = strchr(p, '.')) != NULL; p++)
		if ((v = try_key(m, p, strlen(p), "", 0, "", 0, matched,
		    matchedlen)) != NULL)
			return v;
	return NULL;
}

/* ---------------------------------------------------------------- */
/* CIDR maps                                                        */
/* ---------------------------------------------------------------- */

/* a CIDR map: the string maps' table, keyed by the network's 18 bytes */
struct cidrmap {
	struct map *tab;
	unsigned char has4[33];		/* prefix lengths present */
	unsigned char has6[129];
};

#define CIDR_KEY	18

/* cidr_key - family, prefix and address bytes: the table's key */
static void
cidr_key(const struct ipaddr *net, int prefix, char key[CIDR_KEY])
{
	key[0] = (char)net->family;
	key[1] = (char)prefix;
	memcpy(key + 2, net->a, 16);
}

/* cidrmap_new - create an empty cidr map */
struct cidrmap *
cidrmap_new(void)
{
	struct cidrmap *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	if ((m->tab = map_new()) == NULL) {
		free(m);
		return NULL;
	}
	return m;
}

/* cidr_insert - add a parsed network (the last value wins) */
static int
cidr_insert(struct cidrmap *m, const struct cidr *c, const char *value)
{
	char   *k, *v;

	if (value == NULL)
		value = "";
	if ((v = xstrndup(value, strlen(value))) == NULL)
		return -1;
	if ((k = malloc(CIDR_KEY)) == NULL) {
		free(v);
		return -1;
	}
	cidr_key(&c->net, c->prefix, k);
	if (tab_put(m->tab, k, CIDR_KEY, v) != 0)
		return -1;
	if (c->net.family == AF_INET6)
		m->has6[c->prefix] = 1;
	else
		m->has4[c->prefix] = 1;
	return 0;
}

/* cidrmap_put - add a network (the last value for a network wins) */
int
cidrmap_put(struct cidrmap *m, const char *network, const char *value,
	char *err, size_t errlen)
{
	char	text[128];
	const char *s = network, *close;
	struct cidr c;

	if (m == NULL || network == NULL) {
		set_err(err, errlen, "no map or network");
		return -1;
	}
	/* "[2001:db8::]/32" and "[::1]": brackets around the address */
	if (*network == '[' && (close = strchr(network, ']')) != NULL
	    && strlen(network) < sizeof(text)) {
		memcpy(text, network + 1, (size_t)(close - network - 1));
		strcpy(text + (close - network - 1), close + 1);
		s = text;
	}
	if (addr_cidr_parse(s, 0, &c) != 0) {
		set_err(err, errlen, "invalid network \"%s\"", network);
		return -1;
	}
	if (cidr_insert(m, &c, value) != 0) {
		set_err(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* cidr_table_entry - table_read callback for cidrmap_load_file */
static int
cidr_table_entry(void *ctx, const char *path, int lineno, const char *key,
	const char *value, char *err, size_t errlen)
{
	const struct load_ctx *lc = ctx;
	char	msg[256];

	if (*value == '\0') {
		set_err(err, errlen, "%s:%d: missing value for network \"%s\"",
		    path, lineno, key);
		return -1;
	}
	if (check_value(lc, path, lineno, key, value, err, errlen) < 0)
		return -1;
	if (cidrmap_put(lc->map, key, value, msg, sizeof(msg)) != 0) {
		set_err(err, errlen, "%s:%d: %s", path, lineno, msg);
		return -1;
	}
	return 0;
}

/* cidrmap_load_file_checked - cidrmap_load_file, values through check */
int
cidrmap_load_file_checked(struct cidrmap *m, const char *path,
	map_value_check *check, char *err, size_t errlen)
{
	struct load_ctx lc = { m, check };

	if (m == NULL) {
		set_err(err, errlen, "%s: no map", path ? path : "(null)");
		return -1;
	}
	return table_read(path, cidr_table_entry, &lc, err, errlen);
}

/* cidrmap_load_file - add "network value" lines from a file */
int
cidrmap_load_file(struct cidrmap *m, const char *path, char *err,
	size_t errlen)
{
	return cidrmap_load_file_checked(m, path, NULL, err, errlen);
}

/* cidr_list_entry - list_read callback: a network, then anything ignored */
static int
cidr_list_entry(void *ctx, const char *entry, char *err, size_t errlen)
{
	char	net[128];
	size_t	n = strcspn(entry, " \t");

	if (n >= sizeof(net)) {
		set_err(err, errlen, "\"%.60s...\": not a network", entry);
		return -1;
	}
	memcpy(net, entry, n);
	net[n] = '\0';
	return cidrmap_put(ctx, net, "match", err, errlen);
}

/* cidrmap_load_list - one network per line (a value after it is ignored) */
int
cidrmap_load_list(struct cidrmap *m, const char *path, char *err,
	size_t errlen)
{
	if (m == NULL) {
		set_err(err, errlen, "%s: no map", path ? path : "(null)");
		return -1;
	}
	return list_read(path, cidr_list_entry, m, err, errlen);
}

/* cidrmap_lookup - value of the longest matching network, or NULL */
const char *
cidrmap_lookup(const struct cidrmap *m, const struct ipaddr *ip)
{
	const unsigned char *has;
	struct ipaddr masked;
	const char *v;
	char	key[CIDR_KEY];
	int	prefix;

	if (m == NULL || ip == NULL || m->tab->count == 0)
		return NULL;
	if (ip->family == AF_INET) {
		has = m->has4;
		prefix = 32;
	} else if (ip->family == AF_INET6) {
		has = m->has6;
		prefix = 128;
	} else {
		return NULL;
	}
	for (; prefix >= 0; prefix--) {
		if (!has[prefix])
			continue;
		masked = *ip;
		addr_ip_mask(&masked, prefix);
		cidr_key(&masked, prefix, key);
		if ((v = tab_get(m->tab, key, CIDR_KEY)) != NULL)
			return v;
	}
	return NULL;
}

/* cidrmap_count - number of networks */
size_t
cidrmap_count(const struct cidrmap *m)
{
	return m ? m->tab->count : 0;
}

/* cidrmap_free - release a cidr map */
void
cidrmap_free(struct cidrmap *m)
{
	if (m == NULL)
		return;
	map_free(m->tab);
	free(m);
}

/* ---------------------------------------------------------------- */
/* regular expression lists                                         */
/* ---------------------------------------------------------------- */

struct relist {
	regex_t *re;
	size_t	n;
	size_t	cap;
};

/* is_regex_entry - "/.../" with something between the slashes */
static int
is_regex_entry(const char *entry)
{
	size_t	n = strlen(entry);

	return n >= 3 && entry[0] == '/' && entry[n - 1] == '/';
}


/*
 * perl_to_posix - postgrey's whitelists are Perl regexes: rewrite the
 * classes POSIX ERE lacks (\d, \D; glibc knows \w, \s) so that entries
 * like /^mail\d+\.example\.com$/ match as intended, and drop the '?' of
 * lazy quantifiers ("*?"), which cannot change whether a line matches.
 * Caller frees.
 */
static char *
perl_to_posix(const char *re, size_t len)
{
	char	*out = malloc(len * 5 + 1), *o = out;
	int	quant = 0;		/* the last thing written repeats */

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		if (re[i] == '\\' && i + 1 < len) {
			if (re[i + 1] == 'd' || re[i + 1] == 'D') {
				const char *cls = re[i + 1] == 'd' ? "[0-9]" : "[^0-9]";

				memcpy(o, cls, strlen(cls));
				o += strlen(cls);
			} else {
				*o++ = re[i];
				*o++ = re[i + 1];
			}
			i++;
			quant = 0;
			continue;
		}
		if (re[i] == '?' && quant) {
			quant = 0;		/* lazy: same matches */
			continue;
		}
		quant = re[i] == '*' || re[i] == '+' || re[i] == '?' ||
		    re[i] == '}';
		*o++ = re[i];
	}
	*o = '\0';
	return out;
}

/*
 * regex_sane - refuse what makes glibc's regcomp() exponential: a
 * repetition of a repetition ("x++", "a*{2,}") and very long patterns.
 * A whitelist is loaded on the event loop at reload time.
 */
static int
regex_sane(const char *pat, char *why, size_t whylen)
{
	int	quant = 0, inclass = 0;

	if (strlen(pat) > 512) {
		snprintf(why, whylen, "longer than 512 characters");
		return -1;
	}
	for (const char *p = pat; *p; p++) {
		int	q;

		if (*p == '\\' && p[1] != '\0') {
			p++;
			quant = 0;
			continue;
		}
		if (inclass) {
			if (*p == ']')
				inclass = 0;
			continue;
		}
		if (*p == '[') {
			inclass = 1;
			if (p[1] == '^')
				p++;
			if (p[1] == ']')
				p++;
			quant = 0;
			continue;
		}
		q = *p == '*' || *p == '+' || *p == '?' ||
		    (*p == '{' && p[1] >= '0' && p[1] <= '9');
		if (q && quant) {
			snprintf(why, whylen, "a repetition of a repetition "
			    "(\"%.10s\")", p - 1);
			return -1;
		}
		if (*p == '{' && q) {
			while (*p && *p != '}')
				p++;
			if (*p == '\0')
				break;
		}
		quant = q;
	}
	return 0;
}

/* relist_add - compile "/re/" (extended, case-insensitive) */
static int
relist_add(struct relist *l, const char *entry, char *err, size_t errlen)
{
	char	msg[256];
	char   *pat;
	regex_t *re;
	size_t	cap;
	int	rc;

	if (l->n == l->cap) {
		cap = l->cap ? l->cap * 2 : 8;
		if ((re = realloc(l->re, cap * sizeof(*re))) == NULL) {
			set_err(err, errlen, "out of memory");
			return -1;
		}
		l->re = re;
		l->cap = cap;
	}
	if ((pat = perl_to_posix(entry + 1, strlen(entry) - 2)) == NULL) {
		set_err(err, errlen, "out of memory");
		return -1;
	}
	if (regex_sane(pat, msg, sizeof(msg)) < 0) {
		set_err(err, errlen, "refused regular expression %s: %s", entry,
		    msg);
		free(pat);
		return -1;
	}
	rc = regcomp(&l->re[l->n], pat, REG_EXTENDED | REG_ICASE | REG_NOSUB);
	free(pat);
	if (rc != 0) {
		regerror(rc, &l->re[l->n], msg, sizeof(msg));
		regfree(&l->re[l->n]);
		set_err(err, errlen, "bad regular expression %s: %s", entry,
		    msg);
		return -1;
	}
	l->n++;
	return 0;
}

/* relist_match - does any expression match s? */
static int
relist_match(const struct relist *l, const char *s)
{
	size_t	i;

	for (i = 0; i < l->n; i++)
		if (regexec(&l->re[i], s, 0, NULL, 0) == 0)
			return 1;
	return 0;
}

/* relist_free - release compiled expressions */
static void
relist_free(struct relist *l)
{
	size_t	i;

	for (i = 0; i < l->n; i++)
		regfree(&l->re[i]);
	free(l->re);
	l->re = NULL;
	l->n = l->cap = 0;
}

/* domain_suffix_in - is name, or a parent of it (no dot), in the set? */
static int
domain_suffix_in(const struct map *set, const char *name)
{
	const char *p;

	if (*name == '\0')
		return 0;
	for (p = name; p != NULL; p = strchr(p, '.')) {
		if (*p == '.')
			p++;
		if (*p != '\0' && map_get_lc(set, p, strlen(p)) != NULL)
			return 1;
	}
	return 0;
}

/* set_add - add a lowercase entry to a set, with a length check */
static int
set_add(struct map *set, const char *key, char *err, size_t errlen)
{
	if (strlen(key) > MAP_KEY_MAX) {
		set_err(err, errlen, "entry too long (more than %d bytes)",
		    MAP_KEY_MAX);
		return -1;
	}
	if (map_put(set, key, "") != 0) {
		set_err(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------- */
/* client lists                                                     */
/* ---------------------------------------------------------------- */

struct clientlist {
	struct map *names;		/* host names and domains */
	struct cidrmap *nets;		/* addresses and networks */
	struct relist re;		/* /regex/ entries */
	size_t	count;
};

/* clientlist_new - create an empty client list */
struct clientlist *
clientlist_new(void)
{
	struct clientlist *l = calloc(1, sizeof(*l));

	if (l == NULL)
		return NULL;
	l->names = map_new();
	l->nets = cidrmap_new();
	if (l->names == NULL || l->nets == NULL) {
		clientlist_free(l);
		return NULL;
	}
	return l;
}

/* looks_numeric - only digits, dots and slashes, or any ':' */
static int
looks_numeric(const char *s)
{
	if (strchr(s, ':') != NULL)
		return 1;
	for (; *s != '\0'; s++)
		if (!((*s >= '0' && *s <= '9') || *s == '.' || *s == '/'))
			return 0;
	return 1;
}

/* clientlist_add - add a host name, domain, /regex/ or network */
int
clientlist_add(struct clientlist *l, const char *entry, char *err,
	size_t errlen)
{
	struct cidr c;
	const char *p;

	if (l == NULL || entry == NULL || *entry == '\0') {
		set_err(err, errlen, "empty entry");
		return -1;
	}
	if (is_regex_entry(entry)) {
		if (relist_add(&l->re, entry, err, errlen) != 0)
			return -1;
	} else if (has_ws(entry)) {
		set_err(err, errlen, "\"%s\" does not look like a host name",
		    entry);
		return -1;
	} else if (addr_cidr_parse(entry, 1, &c) == 0) {
		if (cidr_insert(l->nets, &c, "1") != 0) {
			set_err(err, errlen, "out of memory");
			return -1;
		}
	} else if (looks_numeric(entry)) {
		set_err(err, errlen, "invalid address or network \"%s\"",
		    entry);
		return -1;
	} else {
		for (p = entry; *p == '.'; p++)
			;
		if (*p == '\0') {
			set_err(err, errlen, "\"%s\" does not look like a "
			    "host name", entry);
			return -1;
		} else {
			char   *name = lower_dup(p);
			int	rc;

			if (name == NULL) {
				set_err(err, errlen, "out of memory");
				return -1;
			}
			rc = set_add(l->names, name, err, errlen);
			free(name);
			if (rc != 0)
				return -1;
		}
	}
	l->count++;
	return 0;
}

/* clientlist_entry - list_read callback */
static int
clientlist_entry(void *ctx, const char *entry, char *err, size_t errlen)
{
	return clientlist_add(ctx, entry, err, errlen);
}

/* clientlist_load_file - add the entries of a whitelist_clients file */
int
clientlist_load_file(struct clientlist *l, const char *path, char *err,
	size_t errlen)
{
	if (l == NULL) {
		set_err(err, errlen, "%s: no list", path ? path : "(null)");
		return -1;
	}
	return list_read(path, clientlist_entry, l, err, errlen);
}

/* clientlist_match - does the client name or address match an entry? */
int
clientlist_match(const struct clientlist *l, const char *client_name,
	const struct ipaddr *ip)
{
	char   *name;
	int	hit;

	if (l == NULL)
		return 0;
	if (ip != NULL && cidrmap_lookup(l->nets, ip) != NULL)
		return 1;
	if (client_name == NULL || *client_name == '\0'
	    || strcasecmp(client_name, "unknown") == 0)
		return 0;
	if (map_count(l->names) > 0) {
		if ((name = lower_dup(client_name)) == NULL)
			return 0;
		hit = domain_suffix_in(l->names, name);
		free(name);
		if (hit)
			return 1;
	}
	return relist_match(&l->re, client_name);
}

/* clientlist_count - number of entries added */
size_t
clientlist_count(const struct clientlist *l)
{
	return l ? l->count : 0;
}

/* clientlist_free - release a client list */
void
clientlist_free(struct clientlist *l)
{
	if (l == NULL)
		return;
	map_free(l->names);
	cidrmap_free(l->nets);
	relist_free(&l->re);
	free(l);
}

/* ---------------------------------------------------------------- */
/* recipient lists                                                  */
/* ---------------------------------------------------------------- */

struct rcptlist {
	struct map *addrs;		/* "user@domain" */
	struct map *users;		/* "user@" */
	struct map *domains;		/* "domain" and its subdomains */
	struct relist re;		/* /regex/ entries */
	size_t	count;
};

/* rcptlist_new - create an empty recipient list */
struct rcptlist *
rcptlist_new(void)
{
	struct rcptlist *l = calloc(1, sizeof(*l));

	if (l == NULL)
		return NULL;
	l->addrs = map_new();
	l->users = map_new();
	l->domains = map_new();
	if (l->addrs == NULL || l->users == NULL || l->domains == NULL) {
		rcptlist_free(l);
		return NULL;
	}
	return l;
}

/* rcptlist_add - add "user@domain", "user@", "domain" or "/regex/" */
int
rcptlist_add(struct rcptlist *l, const char *entry, char *err,
	size_t errlen)
{
	const char *at, *p;
	char   *lower;
	int	rc;

	if (l == NULL || entry == NULL || *entry == '\0') {
		set_err(err, errlen, "empty entry");
		return -1;
	}
	if (is_regex_entry(entry)) {
		if (relist_add(&l->re, entry, err, errlen) != 0)
			return -1;
		l->count++;
		return 0;
	}
	if (has_ws(entry)) {
		set_err(err, errlen, "\"%s\" does not look like an address",
		    entry);
		return -1;
	}
	if ((lower = lower_dup(entry)) == NULL) {
		set_err(err, errlen, "out of memory");
		return -1;
	}
	at = strrchr(lower, '@');
	if (at == NULL || at == lower) {
		/* "domain" or "@domain" */
		for (p = at ? at + 1 : lower; *p == '.'; p++)
			;
		if (*p == '\0') {
			set_err(err, errlen, "\"%s\" does not look like an "
			    "address", entry);
			rc = -1;
		} else {
			rc = set_add(l->domains, p, err, errlen);
		}
	} else if (at[1] == '\0') {
		rc = set_add(l->users, lower, err, errlen);
	} else {
		rc = set_add(l->addrs, lower, err, errlen);
	}
	free(lower);
	if (rc == 0)
		l->count++;
	return rc;
}

/* rcptlist_entry - list_read callback */
static int
rcptlist_entry(void *ctx, const char *entry, char *err, size_t errlen)
{
	return rcptlist_add(ctx, entry, err, errlen);
}

/* rcptlist_load_file - add the entries of a whitelist_recipients file */
int
rcptlist_load_file(struct rcptlist *l, const char *path, char *err,
	size_t errlen)
{
	if (l == NULL) {
		set_err(err, errlen, "%s: no list", path ? path : "(null)");
		return -1;
	}
	return list_read(path, rcptlist_entry, l, err, errlen);
}

/* in_set - is the concatenation a + b (lowercase already) in the set? */
static int
in_set(const struct map *set, const char *a, size_t alen, const char *b,
	size_t blen)
{
	char	buf[MAP_KEY_MAX + 1];

	if (map_count(set) == 0 || alen + blen > MAP_KEY_MAX)
		return 0;
	memcpy(buf, a, alen);
	memcpy(buf + alen, b, blen);
	buf[alen + blen] = '\0';
	return map_get_lc(set, buf, alen + blen) != NULL;
}

/* rcptlist_match - does the recipient match an entry? */
int
rcptlist_match(const struct rcptlist *l, const char *recipient)
{
	char   *r;
	const char *at, *plus;
	size_t	llen, blen, dlen;
	int	hit = 0;

	if (l == NULL || recipient == NULL || *recipient == '\0')
		return 0;
	if (relist_match(&l->re, recipient))
		return 1;
	if ((r = lower_dup(recipient)) == NULL)
		return 0;
	if ((at = strrchr(r, '@')) == NULL)
		goto out;
	llen = (size_t)(at - r);
	dlen = strlen(at);		/* includes the '@' */
	plus = memchr(r, '+', llen);
	blen = (plus != NULL && plus != r) ? (size_t)(plus - r) : llen;
	hit = in_set(l->addrs, r, llen, at, dlen)
	    || (blen != llen && in_set(l->addrs, r, blen, at, dlen))
	    || (llen > 0 && in_set(l->users, r, llen, "@", 1))
	    || (blen != llen && in_set(l->users, r, blen, "@", 1))
	    || domain_suffix_in(l->domains, at + 1);
out:
	free(r);
	return hit;
}

/* rcptlist_count - number of entries added */
size_t
rcptlist_count(const struct rcptlist *l)
{
	return l ? l->count : 0;
}

/* rcptlist_free - release a recipient list */
void
rcptlist_free(struct rcptlist *l)
{
	if (l == NULL)
		return;
	map_free(l->addrs);
	map_free(l->users);
	map_free(l->domains);
	relist_free(&l->re);
	free(l);
}

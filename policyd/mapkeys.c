/*++
 * NAME
 *	mapkeys.c - candidate keys in map lookup order (see mapkeys.h)
 *--*/
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mapkeys.h"

#define MAPKEYS_KEY_MAX	1024		/* maps.c's MAP_KEY_MAX */

/* add - append the lowercased concatenation a+b+c; skip when too long */
static int
add(struct mapkeys *o, const char *a, size_t alen, const char *b,
    size_t blen, const char *c, size_t clen)
{
	size_t	n = alen + blen + clen, j = 0;
	char   *k;

	if (n > MAPKEYS_KEY_MAX)
		return 0;
	if (o->n == MAPKEYS_MAX || (k = malloc(n + 1)) == NULL)
		return -1;
	memcpy(k, a, alen);
	memcpy(k + alen, b, blen);
	memcpy(k + alen + blen, c, clen);
	k[n] = '\0';
	for (j = 0; j < n; j++)
		if (k[j] >= 'A' && k[j] <= 'Z')
			k[j] = (char)(k[j] - 'A' + 'a');
	/* a key asked before answers the same: one query is enough */
	for (int i = 0; i < o->n; i++)
		if (strcmp(o->k[i], k) == 0) {
			free(k);
			return 0;
		}
	o->k[o->n++] = k;
	return 0;
}

/* mapkeys_free - release the keys */
void
mapkeys_free(struct mapkeys *o)
{
	for (int i = 0; i < o->n; i++)
		free(o->k[i]);
	o->n = 0;
}

/* fail - free and report */
static int
fail(struct mapkeys *o)
{
	mapkeys_free(o);
	return -1;
}

/* mapkeys_owner - the address, without its +extension, @domain */
int
mapkeys_owner(const char *addr, struct mapkeys *o)
{
	const char *at, *ext;
	size_t	len, llen;

	o->n = 0;
	if (addr == NULL || *addr == '\0')
		return 0;
	len = strlen(addr);
	at = strrchr(addr, '@');
	llen = at ? (size_t)(at - addr) : len;
	/* an address too long for a key (add() skips it) still has @domain */
	if (add(o, addr, len, "", 0, "", 0) < 0)
		return fail(o);
	if (len <= MAPKEYS_KEY_MAX && (ext = memchr(addr, '+', llen)) != NULL &&
	    ext != addr && add(o, addr, (size_t)(ext - addr), at ? at : "",
	    at ? len - llen : 0, "", 0) < 0)
		return fail(o);
	if (at != NULL && at[1] != '\0' && add(o, "@", 1, at + 1,
	    strlen(at + 1), "", 0) < 0)
		return fail(o);
	return o->n;
}

/*
 * suffixes - name and each parent domain, without a leading dot (as
 * domain_suffix_in() in maps.c), while keys fit
 */
static int
suffixes(struct mapkeys *o, const char *name)
{
	for (const char *p = name; p != NULL && o->n < MAPKEYS_MAX;
	    p = strchr(p, '.')) {
		if (*p == '.')
			p++;
		if (*p != '\0' && add(o, p, strlen(p), "", 0, "", 0) < 0)
			return -1;
	}
	return 0;
}

/*
 * address_keys - map_lookup_address() order, or with postgrey set the
 * parent domains bare, as rcptlist_match() (see mapkeys.h)
 */
static int
address_keys(const char *addr, char delim, int bare_domain, int postgrey,
    struct mapkeys *o)
{
	const char *at, *dom = NULL, *ext = NULL, *p;
	size_t	llen, blen, dlen = 0, parents = 0, skip = 0;

	o->n = 0;
	if (addr == NULL)
		return 0;
	if (*addr == '\0')
		return add(o, "<>", 2, "", 0, "", 0) < 0 ? fail(o) : o->n;
	at = strrchr(addr, '@');
	llen = at ? (size_t)(at - addr) : strlen(addr);
	if (at != NULL) {
		dom = at + 1;
		dlen = strlen(dom);
	}
	if (delim != '\0' && (ext = memchr(addr, delim, llen)) == addr)
		ext = NULL;
	blen = ext ? (size_t)(ext - addr) : llen;
	if (add(o, addr, llen, "@", at ? 1 : 0, dom ? dom : "", dlen) < 0 ||
	    (ext && add(o, addr, blen, "@", at ? 1 : 0, dom ? dom : "",
	    dlen) < 0))
		return fail(o);
	if (llen > 0 && (add(o, addr, llen, "@", 1, "", 0) < 0 ||
	    (ext && add(o, addr, blen, "@", 1, "", 0) < 0)))
		return fail(o);
	if (dom == NULL || dlen == 0)
		return o->n;
	if (add(o, "@", 1, dom, dlen, "", 0) < 0)
		return fail(o);
	if (postgrey)
		return suffixes(o, dom) < 0 ? fail(o) : o->n;
	if (bare_domain && add(o, dom, dlen, "", 0, "", 0) < 0)
		return fail(o);
	/*
	 * The parents that make keys (not too long); of a domain of more
	 * labels than keys are left, the shortest ones: what a deny list
	 * names (".parent"), as the file form finds it
	 */
	for (p = dom + 1; (p = strchr(p, '.')) != NULL; p++)
		if (dlen - (size_t)(p - dom) <= MAPKEYS_KEY_MAX)
			parents++;
	if (parents > (size_t)(MAPKEYS_MAX - o->n))
		skip = parents - (size_t)(MAPKEYS_MAX - o->n);
	for (p = dom + 1; (p = strchr(p, '.')) != NULL; p++) {
		if (dlen - (size_t)(p - dom) > MAPKEYS_KEY_MAX)
			continue;
		if (skip > 0) {
			skip--;
			continue;
		}
		if (add(o, p, dlen - (size_t)(p - dom), "", 0, "", 0) < 0)
			return fail(o);
	}
	return o->n;
}

/* mapkeys_address - map_lookup_address() order (see mapkeys.h) */
int
mapkeys_address(const char *addr, char delim, int bare_domain,
    struct mapkeys *o)
{
	return address_keys(addr, delim, bare_domain, 0, o);
}

/* mapkeys_rcptlist - rcptlist_match() order (see mapkeys.h) */
int
mapkeys_rcptlist(const char *addr, struct mapkeys *o)
{
	o->n = 0;
	if (addr == NULL || strchr(addr, '@') == NULL)
		return 0;
	return address_keys(addr, '+', 0, 1, o);
}

/* mapkeys_clientlist - address keys, then name suffixes (see mapkeys.h) */
int
mapkeys_clientlist(const char *ip, const char *name, struct mapkeys *o)
{
	o->n = 0;
	if (ip != NULL && mapkeys_ip(ip, o) < 0)
		return -1;
	if (name != NULL && *name != '\0' && strcasecmp(name, "unknown") != 0 &&
	    suffixes(o, name) < 0)
		return fail(o);
	return o->n;
}

/* mapkeys_domain - map_lookup_domain() order (see mapkeys.h) */
int
mapkeys_domain(const char *name, struct mapkeys *o)
{
	const char *p;

	o->n = 0;
	if (name == NULL || *name == '\0')
		return 0;
	if (add(o, name, strlen(name), "", 0, "", 0) < 0)
		return fail(o);
	for (p = name + 1; (p = strchr(p, '.')) != NULL; p++)
		if (add(o, p, strlen(p), "", 0, "", 0) < 0)
			return fail(o);
	return o->n;
}

/* mapkeys_domain_tail - the last MAPKEYS_MAX of them (see mapkeys.h) */
int
mapkeys_domain_tail(const char *name, struct mapkeys *o)
{
	const char *p;
	size_t	dots = 0;

	o->n = 0;
	if (name == NULL || *name == '\0')
		return 0;
	/* mapkeys_domain() asks name, then .parent at each later dot */
	for (p = name + 1; (p = strchr(p, '.')) != NULL; p++)
		dots++;
	for (p = name; dots >= MAPKEYS_MAX; dots--)
		p = strchr(p + 1, '.');
	return mapkeys_domain(p, o);
}

/* mapkeys_ip - the address, then cut at each '.' or ':' (see mapkeys.h) */
int
mapkeys_ip(const char *ip, struct mapkeys *o)
{
	size_t	n;

	o->n = 0;
	if (ip == NULL || *ip == '\0')
		return 0;
	for (n = strlen(ip); n > 0; n--) {
		if (n < strlen(ip) && ip[n] != '.' && ip[n] != ':')
			continue;
		if (n < strlen(ip) && n > 0 && ip[n - 1] == ':')
			continue;	/* "::" is one separator */
		if (add(o, ip, n, "", 0, "", 0) < 0)
			return fail(o);
	}
	return o->n;
}

/* mapkeys_one - a single exact key */
int
mapkeys_one(const char *key, struct mapkeys *o)
{
	o->n = 0;
	if (key == NULL)
		return 0;
	return add(o, key, strlen(key), "", 0, "", 0) < 0 ? fail(o) : o->n;
}

/*
 * fuzz_maps.c - libFuzzer target for the map parsers and the address helpers
 *
 * Input: byte 0 holds flags, then a table file, optionally followed by
 * "\n%%\n" and query lines. The table is written to a temporary file and
 * loaded by map_load_file (flags from byte 0), cidrmap_load_file,
 * clientlist_load_file and rcptlist_load_file. Every query line, and the
 * first word of every table line, is then looked up in each of them and
 * run through the addr_* functions with exact-size heap buffers (so
 * AddressSanitizer sees any overrun). Invariants checked: loaders set an
 * error message when they fail; addr_ip_format() round-trips through
 * addr_ip_parse(); a parsed network contains its own address; the
 * canonical forms have the length they report. The SQL candidate keys
 * (mapkeys.h) of every query: at most MAPKEYS_MAX, lowercase, at most
 * 1024 bytes, each once. addr_hosts_lookup() on the table text.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/socket.h>

#include "addr.h"
#include "mapkeys.h"
#include "maps.h"

static char path[64];

static void
cleanup(void)
{
	unlink(path);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	int	fd;

	(void)argc; (void)argv;
	snprintf(path, sizeof(path), "/tmp/policyd-fuzz-maps.XXXXXX");
	if ((fd = mkstemp(path)) < 0) {
		perror("mkstemp");
		exit(1);
	}
	close(fd);
	atexit(cleanup);
	return 0;
}

/* exact - a heap copy of n bytes: overruns hit a redzone */
static char *
exact(const char *s, size_t n)
{
	char   *p = malloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

static void
addr_checks(const char *q, const char *other)
{
	struct ipaddr ip, ip2;
	struct cidr c;
	size_t	n = strlen(q);
	char   *buf;
	int	len;

	if (addr_ip_parse(q, &ip) == 0) {
		char	txt[64];

		if (ip.family != AF_INET && ip.family != AF_INET6)
			abort();
		len = addr_ip_format(&ip, txt, sizeof(txt));
		if (len < 0 || (size_t)len != strlen(txt))
			abort();
		if (addr_ip_parse(txt, &ip2) != 0 || ip2.family != ip.family ||
		    memcmp(ip.a, ip2.a, ip.family == AF_INET ? 4 : 16) != 0)
			abort();
		/* exact-size and too-small output buffers */
		buf = malloc((size_t)len + 1);
		if (addr_ip_format(&ip, buf, (size_t)len + 1) != len)
			abort();
		free(buf);
		buf = malloc((size_t)len);
		if (addr_ip_format(&ip, buf, (size_t)len) != -1)
			abort();
		free(buf);
		ip2 = ip;
		addr_ip_mask(&ip2, (unsigned char)q[0] % 129);
	}
	for (int partial = 0; partial < 2; partial++) {
		if (addr_cidr_parse(q, partial, &c) == 0) {
			int	max = c.net.family == AF_INET ? 32 : 128;

			if (c.prefix < 0 || c.prefix > max)
				abort();
			if (!addr_cidr_match(&c, &c.net))
				abort();
			ip2 = c.net;
			addr_ip_mask(&ip2, c.prefix);
			if (memcmp(&ip2.a, &c.net.a, sizeof(ip2.a)) != 0)
				abort();
			if (addr_ip_parse(other, &ip) == 0)
				(void)addr_cidr_match(&c, &ip);
		}
	}
	(void)addr_domain(q);
	for (size_t sz = 0; sz <= n + 1; sz += (sz < 4 || sz + 2 >= n) ? 1 : n / 3 + 1) {
		buf = sz ? malloc(sz) : NULL;
		len = addr_canon(q, '+', buf, sz);
		if (len >= 0 && (sz == 0 || strlen(buf) != (size_t)len))
			abort();
		len = addr_canon(q, 0, buf, sz);
		if (len >= 0 && (sz == 0 || strlen(buf) != (size_t)len))
			abort();
		len = addr_greylist_sender(q, buf, sz);
		if (len >= 0 && (sz == 0 || strlen(buf) != (size_t)len))
			abort();
		free(buf);
	}
	(void)addr_domain_match(q, other);
	buf = exact(q, n);
	addr_lower(buf);
	if (strlen(buf) != n)
		abort();
	free(buf);
	(void)addr_hash64(q, n, 42);
}

/* keys_ok - the invariants of a mapkeys_*() answer; frees it */
static void
keys_ok(int n, struct mapkeys *k)
{
	if (n < -1 || n > MAPKEYS_MAX || (n < 0 && k->n != 0) ||
	    (n >= 0 && k->n != n))
		abort();
	for (int i = 0; i < k->n; i++) {
		if (strlen(k->k[i]) > 1024)
			abort();
		for (const char *p = k->k[i]; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				abort();
		for (int j = 0; j < i; j++)
			if (strcmp(k->k[i], k->k[j]) == 0)
				abort();
	}
	mapkeys_free(k);
}

/* sql_keys - every candidate-key function on q */
static void
sql_keys(const char *q, const char *other, const char *text, size_t tlen)
{
	struct mapkeys k;
	struct ipaddr a[8];

	keys_ok(mapkeys_address(q, '+', 0, &k), &k);
	keys_ok(mapkeys_address(q, '-', 1, &k), &k);
	keys_ok(mapkeys_owner(q, &k), &k);
	keys_ok(mapkeys_domain(q, &k), &k);
	{
		/* the tail: never an error; all of the keys when they fit */
		struct mapkeys d;
		int	nd = mapkeys_domain(q, &d), nt = mapkeys_domain_tail(q, &k);

		if (nt < 0 || (nd >= 0 && nt != nd))
			abort();
		for (int i = 0; nd >= 0 && i < nd; i++)
			if (strcmp(d.k[i], k.k[i]) != 0)
				abort();
		if (nd >= 0)
			mapkeys_free(&d);
		keys_ok(nt, &k);
	}
	keys_ok(mapkeys_ip(q, &k), &k);
	keys_ok(mapkeys_one(q, &k), &k);
	keys_ok(mapkeys_rcptlist(q, &k), &k);
	keys_ok(mapkeys_clientlist(other, q, &k), &k);
	keys_ok(mapkeys_clientlist(q, other, &k), &k);
	if (addr_hosts_lookup(text, tlen, q, a, 8) > 8)
		abort();
}

static void
lookups(const struct map *m, const struct cidrmap *cm,
    const struct clientlist *cl, const struct rcptlist *rl, const char *q,
    const char *other)
{
	struct ipaddr ip;
	char   *matched = malloc(513);
	const char *v;
	int	okip = addr_ip_parse(q, &ip) == 0;

	if (m) {
		(void)map_get(m, q);
		v = map_lookup_address(m, q, '+', matched, 513);
		if (v && strlen(matched) > 512)
			abort();
		(void)map_lookup_address(m, q, 0, NULL, 0);
		(void)map_lookup_address(m, q, '-', matched, 8);
		v = map_lookup_domain(m, q, matched, 513);
		if (v && strlen(matched) > 512)
			abort();
	}
	if (cm && okip)
		(void)cidrmap_lookup(cm, &ip);
	if (cl) {
		(void)clientlist_match(cl, q, okip ? &ip : NULL);
		(void)clientlist_match(cl, "unknown", okip ? &ip : NULL);
		if (addr_ip_parse(other, &ip) == 0)
			(void)clientlist_match(cl, q, &ip);
	}
	if (rl)
		(void)rcptlist_match(rl, q);
	addr_checks(q, other);
	free(matched);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text, *sep, *queries = NULL;
	char   *copy, *line, *save = NULL;
	char	err[256];
	size_t	tlen;
	int	flags, fd;
	struct map *m;
	struct cidrmap *cm;
	struct clientlist *cl;
	struct rcptlist *rl;
	char   *qv[64];
	int	nq = 0;

	if (size < 1 || size > 64 * 1024)
		return 0;
	/*
	 * Known, reported: glibc's regcomp() is exponential in stacked
	 * repetition operators ("/x++++++++++++++++++++/" takes seconds, each
	 * further '+' doubles it; tests/fuzz/known/regcomp-stacked-quantifiers.map).
	 * Skip such inputs so the fuzzer keeps looking for other problems.
	 */
	for (size_t i = 1; i + 1 < size; i++)
		if (strchr("+*?}", data[i]) && data[i] && data[i + 1] &&
		    strchr("+*?{", data[i + 1]))
			return 0;
	flags = data[0] & (MAP_F_SET | MAP_F_BARE_DOMAIN);
	copy = exact((const char *)data + 1, size - 1);
	text = copy;
	tlen = size - 1;
	if ((sep = memmem(copy, tlen, "\n%%\n", 4)) != NULL) {
		queries = sep + 4;
		tlen = sep - copy;
	}
	if ((fd = open(path, O_WRONLY | O_TRUNC)) < 0)
		abort();
	if (tlen && write(fd, text, tlen) != (ssize_t)tlen)
		abort();
	close(fd);

#define LOAD(var, newf, loadf, freef, ...) do { \
	var = newf(); \
	err[0] = '\0'; \
	if (loadf(var, path, __VA_ARGS__) != 0) { \
		if (err[0] == '\0') \
			abort(); \
		freef(var); \
		var = NULL; \
	} \
} while (0)
	LOAD(m, map_new, map_load_file, map_free, flags, err, sizeof(err));
	LOAD(cm, cidrmap_new, cidrmap_load_file, cidrmap_free, err, sizeof(err));
	LOAD(cl, clientlist_new, clientlist_load_file, clientlist_free, err, sizeof(err));
	LOAD(rl, rcptlist_new, rcptlist_load_file, rcptlist_free, err, sizeof(err));
	if (m)
		(void)map_count(m);
	if (cm)
		(void)cidrmap_count(cm);
	if (cl)
		(void)clientlist_count(cl);
	if (rl)
		(void)rcptlist_count(rl);

	/* queries: the explicit ones (whole lines, NULs end them early) */
	if (queries) {
		char   *qs = (char *)queries;

		for (line = strtok_r(qs, "\n", &save); line && nq < 64;
		    line = strtok_r(NULL, "\n", &save))
			qv[nq++] = line;
	}
	/* and the first word of each table line (only the text before sep) */
	if (nq < 64) {
		char   *tcopy = exact(text, tlen), *w;

		save = NULL;
		for (line = strtok_r(tcopy, "\n", &save); line && nq < 64;
		    line = strtok_r(NULL, "\n", &save)) {
			w = line + strspn(line, " \t");
			w[strcspn(w, " \t")] = '\0';
			if (*w)
				qv[nq++] = exact(w, strlen(w));
			else
				qv[nq++] = exact(line, 0);
		}
		free(tcopy);
	}
	{
		int	nexplicit = 0;

		if (queries) {
			/* count how many qv entries point into copy */
			for (int i = 0; i < nq; i++)
				if (qv[i] >= copy && qv[i] < copy + size)
					nexplicit++;
		}
		for (int i = 0; i < nq; i++) {
			lookups(m, cm, cl, rl, qv[i], qv[(i + 1) % nq]);
			sql_keys(qv[i], qv[(i + 1) % nq], text, tlen);
		}
		lookups(m, cm, cl, rl, "", "");
		sql_keys("", "", text, tlen);
		lookups(m, cm, cl, rl, "<>", "::1");
		for (int i = nexplicit; i < nq; i++)
			free(qv[i]);
	}
	if (m)
		map_free(m);
	if (cm)
		cidrmap_free(cm);
	if (cl)
		clientlist_free(cl);
	if (rl)
		rcptlist_free(rl);
	free(copy);
	return 0;
}

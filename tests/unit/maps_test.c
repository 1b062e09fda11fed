/*
 * maps_test.c - unit tests for the maps module
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "maps.h"
#include "tap.h"

static char tmpdir[64];
static int nfiles;

/* write_file - create a fixture file in the temporary directory */
static const char *
write_file(const char *text)
{
	static char path[128];
	FILE   *fp;

	snprintf(path, sizeof(path), "%s/f%d", tmpdir, ++nfiles);
	if ((fp = fopen(path, "w")) == NULL) {
		perror(path);
		exit(2);
	}
	fputs(text, fp);
	fclose(fp);
	return path;
}

/* err_is - does err equal "path:" followed by want? */
static int
err_is(const char *err, const char *path, const char *want)
{
	size_t	n = strlen(path);
	int	good;

	good = strncmp(err, path, n) == 0 && err[n] == ':'
	    && strcmp(err + n + 1, want) == 0;
	if (!good)
		printf("#   err: '%s'\n#   want: '%s:%s'\n", err, path, want);
	return good;
}

/* err_has - does err start with "path:" and contain want? */
static int
err_has(const char *err, const char *path, const char *want)
{
	size_t	n = strlen(path);
	int	good;

	good = strncmp(err, path, n) == 0 && err[n] == ':'
	    && strstr(err + n, want) != NULL;
	if (!good)
		printf("#   err: '%s'\n#   want: '%s:...%s...'\n", err, path,
		    want);
	return good;
}

/* test_map_basic - put, get, count, replace */
static void
test_map_basic(void)
{
	struct map *m = map_new();
	char	key[2048], name[64];
	int	i, good = 1;

	ok(m != NULL, "map_new");
	is_int(map_count(m), 0, "empty map");
	ok(map_get(m, "x") == NULL, "get from empty map");
	is_int(map_put(m, "Key", "value 1"), 0, "map_put");
	is_str(map_get(m, "key"), "value 1", "key lowercased");
	is_str(map_get(m, "KEY"), "value 1", "get ignores case");
	is_int(map_put(m, "key", "value 2"), 0, "map_put replace");
	is_str(map_get(m, "key"), "value 2", "last value wins");
	is_int(map_count(m), 1, "replace keeps count");
	is_int(map_put(m, "set", NULL), 0, "map_put NULL value");
	is_str(map_get(m, "set"), "", "NULL value stored as empty");
	memset(key, 'a', 1025);
	key[1025] = '\0';
	is_int(map_put(m, key, "v"), -1, "key longer than 1024 rejected");
	ok(map_get(m, key) == NULL, "long key lookup is NULL");
	key[1024] = '\0';
	is_int(map_put(m, key, "v"), 0, "key of 1024 accepted");
	is_str(map_get(m, key), "v", "key of 1024 found");
	key[0] = 'A';
	is_str(map_get(m, key), "v", "key of 1024 found in any case");
	ok(map_get_lower(m, key) == NULL, "map_get_lower does not lowercase");
	key[0] = 'a';
	is_str(map_get_lower(m, key), "v", "map_get_lower: key of 1024");
	key[1024] = 'a';
	key[1025] = '\0';
	ok(map_get_lower(m, key) == NULL, "map_get_lower: long key is NULL");
	key[1024] = '\0';
	is_str(map_get(m, "K\xc3\x89Y") == NULL ? "none" : "found", "none",
	    "bytes above ASCII are not folded");
	is_str(map_get_lower(m, "key"), "value 2", "map_get_lower");
	ok(map_get_lower(m, "KEY") == NULL && map_get_lower(NULL, "k") == NULL
	    && map_get_lower(m, NULL) == NULL, "map_get_lower: case, NULL");
	is_int(map_put(m, NULL, "v"), -1, "map_put NULL key");
	is_int(map_put(NULL, "k", "v"), -1, "map_put NULL map");
	ok(map_get(NULL, "k") == NULL && map_get(m, NULL) == NULL,
	    "map_get NULL");
	for (i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "k%d", i);
		if (map_put(m, name, name + 1) != 0)
			good = 0;
	}
	for (i = 0; i < 5000; i++) {
		const char *v;

		snprintf(name, sizeof(name), "K%d", i);
		v = map_get(m, name);
		if (v == NULL || strcmp(v, name + 1) != 0)
			good = 0;
	}
	ok(good, "5000 keys survive growth");
	is_int(map_count(m), 5003, "count after growth");
	is_int(map_count(NULL), 0, "map_count NULL");
	map_free(m);
	map_free(NULL);
}

/* test_address_order - most specific entry wins */
static void
test_address_order(void)
{
	static const char *keys[] = {
		"user+ext@sub.example.com", "user@sub.example.com",
		"user+ext@", "user@", "@sub.example.com", ".example.com",
		".com",
	};
	const size_t nkeys = sizeof(keys) / sizeof(keys[0]);
	struct map *m;
	char	matched[513], name[128];
	const char *v;
	size_t	i, j;

	for (i = 0; i < nkeys; i++) {
		m = map_new();
		for (j = i; j < nkeys; j++)
			map_put(m, keys[j], keys[j]);
		v = map_lookup_address(m, "User+Ext@Sub.Example.COM", '+',
		    matched, sizeof(matched));
		snprintf(name, sizeof(name), "address order: %s", keys[i]);
		ok(v != NULL && strcmp(v, keys[i]) == 0
		    && strcmp(matched, keys[i]) == 0, name);
		map_free(m);
	}
	m = map_new();
	ok(map_lookup_address(m, "user+ext@sub.example.com", '+', matched,
	    sizeof(matched)) == NULL, "no entry: NULL");
	is_str(matched, "", "matched cleared on miss");
	map_put(m, "user@sub.example.com", "base");
	ok(map_lookup_address(m, "user+ext@sub.example.com", 0, NULL, 0)
	    == NULL, "delim 0 does not strip the extension");
	is_str(map_lookup_address(m, "user+ext@sub.example.com", '+', NULL,
	    0), "base", "delim '+' strips the extension");
	map_put(m, "@example.com", "dom");
	ok(map_lookup_address(m, "x@sub.example.com", '+', NULL, 0) == NULL,
	    "@domain does not match subdomains");
	is_str(map_lookup_address(m, "x@example.com", '+', NULL, 0), "dom",
	    "@domain matches the domain");
	map_put(m, ".sub.example.com", "sub");
	ok(map_lookup_address(m, "x@sub.example.com", '+', NULL, 0) == NULL,
	    ".domain does not match the domain itself");
	is_str(map_lookup_address(m, "x@a.sub.example.com", '+', NULL, 0),
	    "sub", ".domain matches a subdomain");
	map_put(m, ".a.sub.example.com", "nearest");
	is_str(map_lookup_address(m, "x@b.a.sub.example.com", '+', matched,
	    sizeof(matched)), "nearest", "nearest parent first");
	is_str(matched, ".a.sub.example.com", "matched parent key");
	map_put(m, "sub.example.com", "bare");
	ok(map_lookup_address(m, "x@sub.example.com", '+', NULL, 0) == NULL,
	    "bare domain ignored without MAP_F_BARE_DOMAIN");
	ok(map_lookup_address(m, "", '+', NULL, 0) == NULL,
	    "null sender without <> entry");
	map_put(m, "<>", "null");
	is_str(map_lookup_address(m, "", '+', matched, sizeof(matched)),
	    "null", "null sender looked up as <>");
	is_str(matched, "<>", "matched <>");
	map_put(m, "postmaster@", "pm");
	is_str(map_lookup_address(m, "Postmaster", '+', NULL, 0), "pm",
	    "address without domain matches user@");
	is_str(map_lookup_address(m, "postmaster@", '+', NULL, 0), "pm",
	    "address with empty domain matches user@");
	ok(map_lookup_address(NULL, "a@b", '+', NULL, 0) == NULL,
	    "lookup in NULL map");
	ok(map_lookup_address(m, NULL, '+', NULL, 0) == NULL,
	    "lookup NULL address");
	{
		char	big[3000];

		memset(big, 'a', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		big[100] = '@';
		big[200] = '.';
		ok(map_lookup_address(m, big, '+', matched, sizeof(matched))
		    == NULL, "very long address is a clean miss");
	}
	map_free(m);
}

/* test_lookup_domain - host names and parents */
static void
test_lookup_domain(void)
{
	struct map *m = map_new();
	char	matched[513];

	map_put(m, "example.com", "bare");
	map_put(m, ".example.org", "suffix");
	map_put(m, ".sub.example.org", "sub");
	is_str(map_lookup_domain(m, "Example.COM", matched, sizeof(matched)),
	    "bare", "exact name");
	is_str(matched, "example.com", "matched exact");
	ok(map_lookup_domain(m, "host.example.com", NULL, 0) == NULL,
	    "bare entry matches only the exact name");
	is_str(map_lookup_domain(m, "host.example.org", NULL, 0), "suffix",
	    "suffix entry");
	is_str(map_lookup_domain(m, "a.b.sub.example.org", matched,
	    sizeof(matched)), "sub", "nearest suffix first");
	is_str(matched, ".sub.example.org", "matched suffix");
	ok(map_lookup_domain(m, "example.org", NULL, 0) == NULL,
	    "suffix does not match the domain itself");
	ok(map_lookup_domain(m, "", NULL, 0) == NULL
	    && map_lookup_domain(m, NULL, NULL, 0) == NULL
	    && map_lookup_domain(NULL, "x", NULL, 0) == NULL,
	    "lookup_domain empty/NULL");
	is_str(map_lookup_domain(m, "example.com", matched, 4), "bare",
	    "small matched buffer");
	is_str(matched, "exa", "matched truncated");
	map_free(m);
}

/* test_map_files - Postfix table syntax and errors */
static void
test_map_files(void)
{
	struct map *m;
	const char *p;
	char	err[512], big[1200], text[1400];

	m = map_new();
	p = write_file("# comment\n"
	    "\n"
	    "Key1\tvalue one\n"
	    "   # indented comment\n"
	    "key2   REJECT go away  \n"
	    "  continued here\n"
	    "\tand here\n"
	    "key3 crlf\r\n"
	    "key1 second\n"
	    "last no newline");
	is_int(map_load_file(m, p, 0, err, sizeof(err)), 0, "load table");
	is_int(map_count(m), 4, "table count");
	is_str(map_get(m, "key1"), "second", "duplicate key: last wins");
	is_str(map_get(m, "key2"), "REJECT go away continued here and here",
	    "continuation lines joined with one space");
	is_str(map_get(m, "key3"), "crlf", "CRLF stripped");
	is_str(map_get(m, "last"), "no newline", "last line without newline");
	map_free(m);

	m = map_new();
	p = write_file("a 1\nb\nc 3\n");
	is_int(map_load_file(m, p, 0, err, sizeof(err)), -1,
	    "missing value fails");
	ok(err_is(err, p, "2: missing value for key \"b\""),
	    "missing value error text");
	map_free(m);

	m = map_new();
	p = write_file("a\nb 2\n");
	is_int(map_load_file(m, p, MAP_F_SET, err, sizeof(err)), 0,
	    "MAP_F_SET allows missing values");
	is_str(map_get(m, "a"), "", "set value is empty");
	map_free(m);

	m = map_new();
	p = write_file("# x\n  indented first\n");
	is_int(map_load_file(m, p, 0, err, sizeof(err)), -1,
	    "continuation without entry fails");
	ok(err_has(err, p, "2: continuation line"),
	    "continuation error text");
	map_free(m);

	m = map_new();
	p = write_file("a 1\n\nb\n  \n# c\n\nc 3\n");
	is_int(map_load_file(m, p, 0, err, sizeof(err)), -1,
	    "missing value after blank lines");
	ok(err_is(err, p, "3: missing value for key \"b\""),
	    "line number counts blank and comment lines");
	map_free(m);

	memset(big, 'k', 1025);
	big[1025] = '\0';
	snprintf(text, sizeof(text), "ok 1\n%s value\n", big);
	m = map_new();
	p = write_file(text);
	is_int(map_load_file(m, p, 0, err, sizeof(err)), -1,
	    "key too long fails");
	ok(err_is(err, p, "2: key too long (more than 1024 bytes)"),
	    "key too long error text");
	map_free(m);

	{
		size_t	n = 200000, i;
		char   *huge = malloc(n + 16);

		memcpy(huge, "hugekey ", 8);
		for (i = 8; i < n; i++)
			huge[i] = 'v';
		memcpy(huge + n, "\n", 2);
		m = map_new();
		p = write_file(huge);
		is_int(map_load_file(m, p, 0, err, sizeof(err)), 0,
		    "very long line loads");
		ok(map_get(m, "hugekey") != NULL
		    && strlen(map_get(m, "hugekey")) == n - 8,
		    "very long value intact");
		map_free(m);
		free(huge);
	}

	m = map_new();
	snprintf(text, sizeof(text), "%s/does-not-exist", tmpdir);
	is_int(map_load_file(m, text, 0, err, sizeof(err)), -1,
	    "missing file fails");
	ok(err_is(err, text, " No such file or directory"),
	    "missing file error text");
	is_int(map_load_file(m, tmpdir, 0, err, sizeof(err)), -1,
	    "directory fails");
	ok(strncmp(err, tmpdir, strlen(tmpdir)) == 0, "directory error names path");
	map_free(m);

	m = map_new();
	p = write_file("Example.COM ok\n@example.net dom\n.org parent\n");
	is_int(map_load_file(m, p, MAP_F_BARE_DOMAIN, err, sizeof(err)), 0,
	    "load with MAP_F_BARE_DOMAIN");
	is_str(map_lookup_address(m, "u@example.com", '+', NULL, 0), "ok",
	    "bare domain matches with MAP_F_BARE_DOMAIN");
	is_str(map_lookup_address(m, "u@example.net", '+', NULL, 0), "dom",
	    "@domain wins as well");
	is_str(map_lookup_address(m, "u@x.example.org", '+', NULL, 0),
	    "parent", "parent entry after bare domain miss");
	map_free(m);
	is_int(map_load_file(NULL, p, 0, err, sizeof(err)), -1,
	    "load into NULL map");
}

/* test_cidrmap - longest prefix match */
static void
test_cidrmap(void)
{
	static const struct {
		const char *ip;
		const char *want;
	} t[] = {
		{"10.1.2.3", "host"},
		{"10.1.2.4", "net24"},
		{"10.1.3.4", "net16"},
		{"10.2.0.1", "net8"},
		{"11.0.0.1", "default4"},
		{"::ffff:10.1.2.4", "net24"},
		{"2001:db8:1:2::5", "v6-64"},
		{"2001:db8:1:3::5", "v6-32"},
		{"2001:db9::1", "default6"},
		{"::1", "loopback6"},
	};
	struct cidrmap *m = cidrmap_new();
	struct ipaddr ip;
	char	err[256], name[128];
	const char *p;
	size_t	i;

	ok(m != NULL, "cidrmap_new");
	is_int(cidrmap_put(m, "10.0.0.0/8", "net8", err, sizeof(err)), 0,
	    "put /8");
	is_int(cidrmap_put(m, "10.1.0.0/16", "net16", err, sizeof(err)), 0,
	    "put /16");
	is_int(cidrmap_put(m, "10.1.2.0/24", "old", err, sizeof(err)), 0,
	    "put /24");
	is_int(cidrmap_put(m, "10.1.2.0/24", "net24", err, sizeof(err)), 0,
	    "put /24 again");
	is_int(cidrmap_put(m, "10.1.2.3", "host", err, sizeof(err)), 0,
	    "put host");
	is_int(cidrmap_put(m, "0.0.0.0/0", "default4", err, sizeof(err)), 0,
	    "put 0/0");
	is_int(cidrmap_put(m, "2001:db8::/32", "v6-32", err, sizeof(err)), 0,
	    "put v6 /32");
	is_int(cidrmap_put(m, "[2001:db8:1:2::]/64", "v6-64", err,
	    sizeof(err)), 0, "put bracketed v6 /64");
	is_int(cidrmap_put(m, "::/0", "default6", err, sizeof(err)), 0,
	    "put ::/0");
	is_int(cidrmap_put(m, "[::1]", "loopback6", err, sizeof(err)), 0,
	    "put [::1]");
	is_int(cidrmap_count(m), 9, "cidrmap count (duplicate replaced)");
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		addr_ip_parse(t[i].ip, &ip);
		snprintf(name, sizeof(name), "cidr lookup %s", t[i].ip);
		is_str(cidrmap_lookup(m, &ip), t[i].want, name);
	}
	is_int(cidrmap_put(m, "10.0.0.1/8", "x", err, sizeof(err)), -1,
	    "host bits rejected");
	is_str(err, "invalid network \"10.0.0.1/8\"", "host bits error");
	is_int(cidrmap_put(m, "10.0.0.0/33", "x", err, sizeof(err)), -1,
	    "prefix > 32 rejected");
	is_int(cidrmap_put(m, "2001:db8::/129", "x", err, sizeof(err)), -1,
	    "prefix > 128 rejected");
	is_int(cidrmap_put(m, "10.1.2", "x", err, sizeof(err)), -1,
	    "partial address rejected in cidr maps");
	ok(cidrmap_lookup(m, NULL) == NULL && cidrmap_lookup(NULL, &ip) == NULL,
	    "cidrmap_lookup NULL");
	cidrmap_free(m);

	m = cidrmap_new();
	addr_ip_parse("10.0.0.1", &ip);
	ok(cidrmap_lookup(m, &ip) == NULL, "empty cidrmap");
	p = write_file("# networks\n192.168.0.0/16 REJECT private\n"
	    "192.168.1.0/24\tOK\n  here\n2001:db8::/32 DUNNO\n");
	is_int(cidrmap_load_file(m, p, err, sizeof(err)), 0, "cidr file load");
	is_int(cidrmap_count(m), 3, "cidr file count");
	addr_ip_parse("192.168.1.9", &ip);
	is_str(cidrmap_lookup(m, &ip), "OK here", "cidr file continuation");
	addr_ip_parse("192.168.7.9", &ip);
	is_str(cidrmap_lookup(m, &ip), "REJECT private", "cidr file value");
	cidrmap_free(m);

	m = cidrmap_new();
	p = write_file("10.0.0.0/8 OK\n\n10.0.0.1/8 REJECT\n");
	is_int(cidrmap_load_file(m, p, err, sizeof(err)), -1,
	    "cidr file with host bits fails");
	ok(err_is(err, p, "3: invalid network \"10.0.0.1/8\""),
	    "cidr file error text");
	cidrmap_free(m);

	m = cidrmap_new();
	p = write_file("10.0.0.0/8\n");
	is_int(cidrmap_load_file(m, p, err, sizeof(err)), -1,
	    "cidr file missing value fails");
	ok(err_has(err, p, "1: missing value"), "cidr missing value text");
	cidrmap_free(m);
	cidrmap_free(NULL);
}

/* test_clientlist - postgrey whitelist_clients */
static void
test_clientlist(void)
{
	static const struct {
		const char *name;
		const char *ip;
		int	want;
	} t[] = {
		{"mail.example.com", "192.0.2.1", 1},
		{"MX1.Mail.Example.COM", "192.0.2.1", 1},
		{"example.com", "192.0.2.1", 0},
		{"badmail.example.com", "192.0.2.1", 0},
		{"smtp.corp.example.net", "192.0.2.1", 1},
		{"corp.example.net", "192.0.2.1", 1},
		{"outbound-7.Mailgun.org", "192.0.2.1", 1},
		{"outbound.mailgun.org", "192.0.2.1", 0},
		{"unknown", "10.1.2.77", 1},
		{"unknown", "10.1.20.7", 0},
		{"unknown", "172.16.5.5", 1},
		{"unknown", "172.32.0.1", 0},
		{"unknown", "198.51.100.7", 1},
		{"unknown", "198.51.100.8", 0},
		{"unknown", "2001:db8:1:2::99", 1},
		{"unknown", "2001:db8:1:3::99", 0},
		{"unknown", "11.3.4.5", 1},
		{"unknown", "::ffff:11.3.4.5", 1},
		{"", "192.0.2.1", 0},
	};
	struct clientlist *l = clientlist_new();
	struct ipaddr ip;
	char	err[256], name[160];
	const char *p;
	size_t	i;

	ok(l != NULL, "clientlist_new");
	is_int(clientlist_add(l, "mail.example.com", err, sizeof(err)), 0,
	    "add host name");
	is_int(clientlist_add(l, ".Corp.Example.NET", err, sizeof(err)), 0,
	    "add domain with leading dot");
	is_int(clientlist_add(l, "/^outbound-[0-9]+\\.mailgun\\.org$/", err,
	    sizeof(err)), 0, "add regex");
	is_int(clientlist_add(l, "10.1.2", err, sizeof(err)), 0,
	    "add partial 10.1.2");
	is_int(clientlist_add(l, "11", err, sizeof(err)), 0, "add partial 11");
	is_int(clientlist_add(l, "172.16.0.0/12", err, sizeof(err)), 0,
	    "add CIDR");
	is_int(clientlist_add(l, "198.51.100.7", err, sizeof(err)), 0,
	    "add address");
	is_int(clientlist_add(l, "2001:db8:1:2::/64", err, sizeof(err)), 0,
	    "add IPv6 network");
	is_int(clientlist_count(l), 8, "clientlist count");
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		addr_ip_parse(t[i].ip, &ip);
		snprintf(name, sizeof(name), "clientlist %s[%s]", t[i].name,
		    t[i].ip);
		is_int(clientlist_match(l, t[i].name, &ip), t[i].want, name);
	}
	is_int(clientlist_match(l, "mail.example.com", NULL), 1,
	    "match by name with NULL ip");
	is_int(clientlist_match(l, NULL, NULL), 0, "NULL name and ip");
	is_int(clientlist_match(NULL, "mail.example.com", NULL), 0,
	    "NULL list");

	is_int(clientlist_add(l, "/(unclosed/", err, sizeof(err)), -1,
	    "bad regex rejected");
	ok(strstr(err, "(unclosed") != NULL, "bad regex error names it");
	is_int(clientlist_add(l, "10.0.0.1/8", err, sizeof(err)), -1,
	    "CIDR with host bits rejected");
	is_int(clientlist_add(l, "999.1.2", err, sizeof(err)), -1,
	    "bad partial rejected");
	is_int(clientlist_add(l, "1.2.3.4.5", err, sizeof(err)), -1,
	    "1.2.3.4.5 rejected");
	is_int(clientlist_add(l, "two words", err, sizeof(err)), -1,
	    "white space rejected");
	is_int(clientlist_add(l, "", err, sizeof(err)), -1, "empty rejected");
	is_int(clientlist_add(l, "...", err, sizeof(err)), -1,
	    "dots only rejected");
	clientlist_free(l);

	l = clientlist_new();
	p = write_file("# postgrey whitelist\n"
	    "\n"
	    "  mx.example.org   # trailing comment\n"
	    "/^mta[0-9]+\\.example\\.com$/\n"
	    "192.0.2\n"
	    "/a#b/\n");
	is_int(clientlist_load_file(l, p, err, sizeof(err)), 0,
	    "clientlist file load");
	is_int(clientlist_count(l), 4, "clientlist file count");
	is_int(clientlist_match(l, "a.mx.example.org", NULL), 1,
	    "file entry with comment");
	is_int(clientlist_match(l, "mta12.example.com", NULL), 1,
	    "file regex entry");
	is_int(clientlist_match(l, "xa#bx", NULL), 1, "'#' inside a regex");
	addr_ip_parse("192.0.2.200", &ip);
	is_int(clientlist_match(l, "unknown", &ip), 1, "file partial entry");
	clientlist_free(l);

	l = clientlist_new();
	p = write_file("good.example\n# x\n/[z-a]/\n");
	is_int(clientlist_load_file(l, p, err, sizeof(err)), -1,
	    "bad regex in file fails");
	ok(err_has(err, p, "3: bad regular expression /[z-a]/"),
	    "bad regex file error text");
	clientlist_free(l);

	l = clientlist_new();
	p = write_file("1.2.3.4\n300.1.2.3\n");
	is_int(clientlist_load_file(l, p, err, sizeof(err)), -1,
	    "bad address in file fails");
	ok(err_is(err, p, "2: invalid address or network \"300.1.2.3\""),
	    "bad address file error text");
	snprintf(name, sizeof(name), "%s/nope", tmpdir);
	is_int(clientlist_load_file(l, name, err, sizeof(err)), -1,
	    "missing clientlist file");
	ok(err_is(err, name, " No such file or directory"),
	    "missing clientlist file text");
	clientlist_free(l);
	clientlist_free(NULL);
}

/* test_rcptlist - postgrey whitelist_recipients */
static void
test_rcptlist(void)
{
	static const struct {
		const char *rcpt;
		int	want;
	} t[] = {
		{"abuse@example.com", 1},
		{"Abuse@Example.COM", 1},
		{"abuse+tag@example.com", 1},
		{"abuse@other.com", 0},
		{"postmaster@anything.org", 1},
		{"postmaster+x@anything.org", 1},
		{"postmasterx@anything.org", 0},
		{"bob@lists.example.net", 1},
		{"bob@a.lists.example.net", 1},
		{"bob@badlists.example.net", 0},
		{"bob@example.net", 0},
		{"carol@at.example", 1},
		{"carol@sub.at.example", 1},
		{"noc-7@example.org", 1},
		{"noc-x@example.org", 0},
		{"plain", 0},
		{"", 0},
	};
	struct rcptlist *l = rcptlist_new();
	char	err[256], name[160];
	const char *p;
	size_t	i;

	ok(l != NULL, "rcptlist_new");
	is_int(rcptlist_add(l, "abuse@example.com", err, sizeof(err)), 0,
	    "add user@domain");
	is_int(rcptlist_add(l, "Postmaster@", err, sizeof(err)), 0,
	    "add user@");
	is_int(rcptlist_add(l, "lists.example.net", err, sizeof(err)), 0,
	    "add domain");
	is_int(rcptlist_add(l, "@at.example", err, sizeof(err)), 0,
	    "add @domain");
	is_int(rcptlist_add(l, "/^noc-[0-9]+@/", err, sizeof(err)), 0,
	    "add regex");
	is_int(rcptlist_count(l), 5, "rcptlist count");
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		snprintf(name, sizeof(name), "rcptlist \"%s\"", t[i].rcpt);
		is_int(rcptlist_match(l, t[i].rcpt), t[i].want, name);
	}
	is_int(rcptlist_match(l, NULL), 0, "rcptlist NULL recipient");
	is_int(rcptlist_match(NULL, "a@b"), 0, "rcptlist NULL list");
	is_int(rcptlist_add(l, "/+/", err, sizeof(err)), -1,
	    "bad recipient regex");
	is_int(rcptlist_add(l, "a b@c", err, sizeof(err)), -1,
	    "recipient with white space");
	is_int(rcptlist_add(l, "@", err, sizeof(err)), -1, "lone @ rejected");
	rcptlist_free(l);

	l = rcptlist_new();
	p = write_file("# recipients\nspam@example.com\n\n  example.org  \n");
	is_int(rcptlist_load_file(l, p, err, sizeof(err)), 0,
	    "rcptlist file load");
	is_int(rcptlist_count(l), 2, "rcptlist file count");
	is_int(rcptlist_match(l, "x@mail.example.org"), 1,
	    "rcptlist file domain");
	is_int(rcptlist_match(l, "spam@example.com"), 1,
	    "rcptlist file address");
	rcptlist_free(l);

	l = rcptlist_new();
	p = write_file("ok@example.com\n/a{2,1}/\n");
	is_int(rcptlist_load_file(l, p, err, sizeof(err)), -1,
	    "rcptlist bad regex fails");
	ok(err_has(err, p, "2: bad regular expression"),
	    "rcptlist bad regex error text");
	rcptlist_free(l);
	rcptlist_free(NULL);
}

/* cleanup - remove the fixture files and the directory */
static void
cleanup(void)
{
	char	path[128];
	int	i;

	for (i = 1; i <= nfiles; i++) {
		snprintf(path, sizeof(path), "%s/f%d", tmpdir, i);
		unlink(path);
	}
	rmdir(tmpdir);
}

/* main - run the maps tests */
/* postgrey's Perl regexes, and ones that would make regcomp() explode */
static void
test_regex_forms(void)
{
	struct clientlist *l = clientlist_new();
	char	err[256];

	is_int(clientlist_add(l, "/^mail\\d+\\.t\\.de$/", err, sizeof(err)), 0,
	    "Perl \\d accepted");
	ok(clientlist_match(l, "mail12.t.de", NULL), "\\d matches digits");
	ok(!clientlist_match(l, "maild.t.de", NULL), "\\d does not match 'd'");
	is_int(clientlist_add(l, "/^x.*?y$/", err, sizeof(err)), 0,
	    "lazy quantifier accepted");
	ok(clientlist_match(l, "x-abc-y", NULL), "lazy quantifier matches");
	is_int(clientlist_add(l, "/[+*]+z/", err, sizeof(err)), 0,
	    "quantifier characters in a class are fine");
	is_int(clientlist_add(l, "/x++++++++++++++++++++/", err, sizeof(err)), -1,
	    "stacked repetition refused");
	ok(strstr(err, "repetition of a repetition") != NULL, "says why");
	is_int(clientlist_add(l, "/a{2}*/", err, sizeof(err)), -1,
	    "interval then star refused");
	clientlist_free(l);
}

int
main(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/maps_test.XXXXXX");
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 2;
	}
	test_map_basic();
	test_address_order();
	test_lookup_domain();
	test_map_files();
	test_cidrmap();
	test_clientlist();
	test_rcptlist();
	test_regex_forms();
	cleanup();
	return tap_done();
}

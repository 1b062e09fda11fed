/*
 * mapkeys_test.c - the candidate keys of an SQL lookup are the keys a
 * file map consults, in its order: checked against map_lookup_address()
 * and map_lookup_domain() themselves, and by explicit lists.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mapkeys.h"
#include "maps.h"
#include "tap.h"

/* same_order - for every i, a map with keys[i..] answers keys[i] */
static int
same_order(const char *q, int address, char delim, int flags)
{
	struct mapkeys k;
	char	matched[600], val[16];
	int	n = address ? mapkeys_address(q, delim,
	    (flags & MAP_F_BARE_DOMAIN) != 0, &k) : mapkeys_domain(q, &k);
	int	good = n >= 0;

	for (int i = 0; good && i < n; i++) {
		struct map *m = map_new();
		const char *v;

		for (int j = i; j < n; j++) {
			snprintf(val, sizeof(val), "v%d", j);
			map_put(m, k.k[j], val);
		}
		/* flags live in the map: reload through a file is not needed */
		if (flags & MAP_F_BARE_DOMAIN) {
			char	path[] = "/tmp/mapkeys-test.XXXXXX", err[256];
			int	fd = mkstemp(path);
			FILE   *f = fdopen(fd, "w");

			for (int j = i; j < n; j++)
				fprintf(f, "%s v%d\n", k.k[j], j);
			fclose(f);
			map_free(m);
			m = map_new();
			map_load_file(m, path, flags, err, sizeof(err));
			unlink(path);
		}
		v = address ? map_lookup_address(m, q, delim, matched,
		    sizeof(matched)) : map_lookup_domain(m, q, matched,
		    sizeof(matched));
		snprintf(val, sizeof(val), "v%d", i);
		if (v == NULL || strcmp(v, val) != 0 || strcmp(matched,
		    k.k[i]) != 0) {
			printf("#   %s: key %d \"%s\": map answered %s (%s)\n", q,
			    i, k.k[i], v ? v : "nothing", matched);
			good = 0;
		}
		map_free(m);
	}
	mapkeys_free(&k);
	return good;
}

/*
 * whitelisted_by_each - every key, alone in a whitelist file of the
 * same kind, whitelists the value: the SQL keys are file entries
 */
static int
whitelisted_by_each(const char *ip, const char *name, const char *rcpt)
{
	struct mapkeys k;
	struct ipaddr a;
	char	err[256];
	int	n = rcpt ? mapkeys_rcptlist(rcpt, &k) :
	    mapkeys_clientlist(ip, name, &k), good = n > 0;

	for (int i = 0; good && i < n; i++) {
		if (rcpt != NULL) {
			struct rcptlist *l = rcptlist_new();

			good = rcptlist_add(l, k.k[i], err, sizeof(err)) == 0 &&
			    rcptlist_match(l, rcpt);
			rcptlist_free(l);
		} else {
			struct clientlist *l = clientlist_new();

			good = clientlist_add(l, k.k[i], err, sizeof(err)) == 0 &&
			    clientlist_match(l, name, ip && addr_ip_parse(ip,
			    &a) == 0 ? &a : NULL);
			clientlist_free(l);
		}
		if (!good)
			printf("#   key %d \"%s\" is no whitelist entry for "
			    "%s\n", i, k.k[i], rcpt ? rcpt : name);
	}
	mapkeys_free(&k);
	return good;
}

static void
is_keys(int n, struct mapkeys *k, const char *want, const char *name)
{
	char	got[2048] = "";

	for (int i = 0; i < n; i++) {
		strcat(got, i ? " " : "");
		strcat(got, k->k[i]);
	}
	is_str(got, want, name);
	mapkeys_free(k);
}

int
main(void)
{
	static const char *const addrs[] = {
		"User+Ext@Sub.Example.COM", "user@example.com", "user+ext@",
		"+lead@example.com", "user", "@example.com", "", "a@b", "u@.x.",
		"a+b+c@x.y.z.w", "user@localhost", NULL
	};
	static const char *const names[] = {
		"mx.sub.example.com", "example", ".leading", "a..b", NULL
	};
	struct mapkeys k;
	char	big[1100];

	for (int i = 0; addrs[i] != NULL; i++) {
		char	name[128];

		snprintf(name, sizeof(name), "address order \"%s\" (+)", addrs[i]);
		ok(same_order(addrs[i], 1, '+', 0), name);
		snprintf(name, sizeof(name), "address order \"%s\" (no delim)",
		    addrs[i]);
		ok(same_order(addrs[i], 1, 0, 0), name);
		snprintf(name, sizeof(name), "address order \"%s\" (bare)",
		    addrs[i]);
		ok(same_order(addrs[i], 1, '+', MAP_F_SET | MAP_F_BARE_DOMAIN),
		    name);
	}
	for (int i = 0; names[i] != NULL; i++) {
		char	name[128];

		snprintf(name, sizeof(name), "domain order \"%s\"", names[i]);
		ok(same_order(names[i], 0, 0, 0), name);
	}
	is_keys(mapkeys_address("User+Ext@Sub.Example.COM", '+', 0, &k), &k,
	    "user+ext@sub.example.com user@sub.example.com user+ext@ user@ "
	    "@sub.example.com .example.com .com", "explicit address keys");
	is_keys(mapkeys_address("", '+', 0, &k), &k, "<>", "null sender");
	is_keys(mapkeys_domain("MX.example.com", &k), &k, "mx.example.com "
	    ".example.com .com", "explicit domain keys");
	is_keys(mapkeys_ip("192.0.2.1", &k), &k, "192.0.2.1 192.0.2 192.0 192",
	    "IPv4 keys");
	is_keys(mapkeys_ip("2001:DB8::1", &k), &k, "2001:db8::1 2001:db8 2001",
	    "IPv6 keys");
	is_keys(mapkeys_one("Alice@Example.NET", &k), &k, "alice@example.net",
	    "one key, lowercased");
	/* the keys sender_owned() and relocated_lookup() ask a map */
	is_keys(mapkeys_owner("Bob+Tag@Example.NET", &k), &k,
	    "bob+tag@example.net bob@example.net @example.net",
	    "owner keys: address, without +extension, @domain");
	is_keys(mapkeys_owner("bob@example.net", &k), &k,
	    "bob@example.net @example.net", "owner keys without extension");
	is_keys(mapkeys_owner("+lead@example.net", &k), &k,
	    "+lead@example.net @example.net", "a leading + is no extension");
	is_int(mapkeys_owner("", &k), 0, "owner keys of the null sender: none");
	/* a local part too long for a key: only the domain keys remain */
	memset(big, 'a', 1050);
	strcpy(big + 1050, "@example.com");
	is_keys(mapkeys_address(big, '+', 0, &k), &k, "@example.com .com",
	    "too-long keys left out, like a file map");
	ok(same_order(big, 1, '+', 0), "long address: the same as the map");
	is_keys(mapkeys_owner(big, &k), &k, "@example.com",
	    "long address: only @domain as an owner key");
	/* whitelist keys: postgrey's file forms, most specific first */
	is_keys(mapkeys_rcptlist("Bob+Tag@Mail.Example.NET", &k), &k,
	    "bob+tag@mail.example.net bob@mail.example.net bob+tag@ bob@ "
	    "@mail.example.net mail.example.net example.net net",
	    "recipient whitelist keys");
	is_keys(mapkeys_rcptlist("postmaster@localhost", &k), &k,
	    "postmaster@localhost postmaster@ @localhost localhost",
	    "recipient whitelist keys, one label");
	is_int(mapkeys_rcptlist("postmaster", &k), 0, "no '@': no keys");
	is_int(mapkeys_rcptlist("", &k), 0, "empty: no keys");
	ok(whitelisted_by_each(NULL, NULL, "Bob+Tag@Mail.Example.NET"),
	    "each recipient key is a whitelist_recipients entry that matches");
	ok(whitelisted_by_each(NULL, NULL, "+x@a.b"), "... a leading +");
	is_keys(mapkeys_clientlist("192.0.2.1", "MX.Example.COM", &k), &k,
	    "192.0.2.1 192.0.2 192.0 192 mx.example.com example.com com",
	    "client whitelist keys");
	is_keys(mapkeys_clientlist("2001:db8::25", "unknown", &k), &k,
	    "2001:db8::25 2001:db8 2001", "client whitelist keys: IPv6, "
	    "no name");
	is_keys(mapkeys_clientlist(NULL, "mx.example.com", &k), &k,
	    "mx.example.com example.com com", "an invalid address: the name");
	ok(whitelisted_by_each("192.0.2.1", "MX.Example.COM", NULL),
	    "each client key is a whitelist_clients entry that matches");
	{
		char	deep[200] = "";

		for (int i = 0; i < 45; i++)
			strcat(deep, "a.");
		strcat(deep, "com");
		is_int(mapkeys_clientlist("192.0.2.1", deep, &k), MAPKEYS_MAX,
		    "a deep client name: as many keys as fit, not an error");
		is_str(k.k[4], deep, "the most specific first");
		mapkeys_free(&k);
		memmove(deep + 2, deep, strlen(deep) + 1);
		memcpy(deep, "u@", 2);
		is_int(mapkeys_rcptlist(deep, &k), MAPKEYS_MAX,
		    "a deep recipient domain: as many keys as fit");
		mapkeys_free(&k);
	}
	/*
	 * more labels than keys fit: the shortest parents (a deny list's
	 * ".parent" entries still match, as in the file form), not an
	 * error that a sender's choice of domain would turn into on_error
	 */
	{
		char	deep[200] = "u@";

		for (int i = 0; i < 45; i++)
			strcat(deep, "a.");
		strcat(deep, "com");
		is_int(mapkeys_address(deep, '+', 0, &k), MAPKEYS_MAX,
		    "a deep address: as many keys as fit");
		is_str(k.k[0], deep, "the address first");
		is_str(k.k[1], "u@", "then u@");
		is_str(k.k[MAPKEYS_MAX - 2], ".a.com", "the parents kept...");
		is_str(k.k[MAPKEYS_MAX - 1], ".com", "...are the shortest");
		mapkeys_free(&k);
	}
	/* a deny list's domain keys: the shortest parents of a deep name */
	{
		char	deep[200] = "", want[200] = "";

		for (int i = 0; i < 45; i++)
			strcat(deep, "A.");
		strcat(deep, "Example.COM");
		for (int i = 0; i < MAPKEYS_MAX - 2; i++)
			strcat(want, ".a");
		strcat(want, ".example.com");
		is_int(mapkeys_domain(deep, &k), -1, "mapkeys_domain: -1");
		is_int(mapkeys_domain_tail(deep, &k), MAPKEYS_MAX,
		    "mapkeys_domain_tail: as many keys as fit");
		is_str(k.k[0], want, "the longest kept");
		is_str(k.k[MAPKEYS_MAX - 2], ".example.com", "then shorter");
		is_str(k.k[MAPKEYS_MAX - 1], ".com", "the shortest last");
		mapkeys_free(&k);
		is_keys(mapkeys_domain_tail("MX.example.com", &k), &k,
		    "mx.example.com .example.com .com",
		    "mapkeys_domain_tail: a short name as mapkeys_domain");
		/* exactly MAPKEYS_MAX keys: the whole name is still asked */
		deep[0] = '\0';
		for (int i = 0; i < MAPKEYS_MAX - 2; i++)
			strcat(deep, "a.");
		strcat(deep, "example.com");
		is_int(mapkeys_domain(deep, &k), MAPKEYS_MAX, "boundary: fits");
		mapkeys_free(&k);
		is_int(mapkeys_domain_tail(deep, &k), MAPKEYS_MAX,
		    "boundary: the tail is all of it");
		is_str(k.k[0], deep, "the name itself first");
		mapkeys_free(&k);
	}
	return tap_done();
}

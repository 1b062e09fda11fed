/*++
 * NAME
 *	mapkeys.h - the keys a lookup asks, most specific first
 * DESCRIPTION
 *	A file map answers map_lookup_address() or map_lookup_domain() in one
 *	call; a table that is asked key by key (an SQL map, table.h) needs
 *	the same candidate keys in the same order, so that a file and a
 *	database holding the same entries give the same answers:
 *
 *	mapkeys_address()	user+ext@dom, user@dom, user+ext@, user@,
 *				@dom, (dom with bare_domain), .parent, ...
 *				(of a domain of more labels than keys fit,
 *				its shortest parents); "<>" for the null
 *				sender (maps.h)
 *	mapkeys_owner()		user+ext@dom, user@dom, @dom: the keys of
 *				sender_login and relocated maps
 *				(sender_owned(), relocated_lookup())
 *	mapkeys_domain()	name, .parent, ...
 *	mapkeys_ip()		the address as written, then (Postfix's
 *				access(5) style for tables without CIDR) the
 *				address cut at each '.' or ':' from the right:
 *				192.0.2.1, 192.0.2, 192.0, 192
 *
 *	mapkeys_domain_tail()	the keys of mapkeys_domain(), but of a name
 *				of more labels than keys fit only the last
 *				MAPKEYS_MAX (the shortest parents: what a deny
 *				list names, as the file form finds them), not
 *				an error
 *	mapkeys_rcptlist()	user+ext@dom, user@dom, user+ext@, user@,
 *				@dom, then dom and each parent domain bare
 *				(postgrey's recipient whitelist: "example.com"
 *				also whitelists sub.example.com); none for
 *				a recipient without '@' (rcptlist_match())
 *	mapkeys_clientlist()	mapkeys_ip() of the address (when not NULL),
 *				then the client name and each parent domain
 *				bare, as far as MAPKEYS_MAX keys go (a
 *				whitelist that asks fewer keys only greylists
 *				more); no name keys for "unknown"
 *
 *	Keys are lowercased and each is given once; a key longer than MAP_KEY_MAX (1024) is left
 *	out, as a file map can hold none. Pure.
 * RESULTS
 *	The number of keys (0 when there is nothing to ask), or -1 when
 *	there would be more than MAPKEYS_MAX (mapkeys_domain(), _ip(),
 *	_owner()) or memory ran out: the caller treats that as a table
 *	error, not as "not found". mapkeys_address() and
 *	mapkeys_domain_tail() keep the shortest parents instead, and the
 *	whitelist keys (_rcptlist(), _clientlist()) the most specific.
 *--*/
#ifndef POLICYD_MAPKEYS_H
#define POLICYD_MAPKEYS_H

#define MAPKEYS_MAX	40

struct mapkeys {
	int	n;
	char	*k[MAPKEYS_MAX];
};

int	mapkeys_address(const char *addr, char delim, int bare_domain,
	    struct mapkeys *out);
int	mapkeys_owner(const char *addr, struct mapkeys *out);
int	mapkeys_domain(const char *name, struct mapkeys *out);
int	mapkeys_domain_tail(const char *name, struct mapkeys *out);
int	mapkeys_ip(const char *ip, struct mapkeys *out);
int	mapkeys_rcptlist(const char *addr, struct mapkeys *out);
int	mapkeys_clientlist(const char *ip, const char *name,
	    struct mapkeys *out);
int	mapkeys_one(const char *key, struct mapkeys *out);
void	mapkeys_free(struct mapkeys *out);

#endif

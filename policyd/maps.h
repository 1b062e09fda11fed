/*++
 * NAME
 *	maps.h - lookup tables loaded from files
 * DESCRIPTION
 *	A map is an immutable-after-load hash table from a lowercase key to a
 *	value string, looked up in O(1). Files use Postfix's table syntax:
 *
 *		# comment
 *		key	value text
 *		  continued value (a line starting with white space continues
 *		  the previous one; the pieces are joined with one space)
 *
 *	Keys are lowercased. A key without a value is an error unless the
 *	map was loaded with MAP_F_SET (then the value is "").
 *	The last of two equal keys wins (as postmap does, with a warning
 *	returned through the warning callback when given).
 *
 *	Address-shaped lookups follow sendmail access-table specificity, the
 *	most specific entry winning:
 *		user+ext@sub.example.com, user@sub.example.com,
 *		user+ext@, user@,
 *		@sub.example.com (also bare "sub.example.com" with MAP_F_BARE_DOMAIN),
 *		.example.com, .com   (parent-domain suffix entries, nearest first)
 *	The null sender is looked up as "<>".
 *
 *	A client list (postgrey whitelist_clients format) holds one entry per
 *	line: a host name or domain (matches the client name itself and any
 *	name ending in "."+entry), a /regex/ (POSIX extended, case-insensitive,
 *	matched against the client name), or an IP address, CIDR network or
 *	postgrey partial address ("10.1.2" = 10.1.2.0/24).
 *	A recipient list (postgrey whitelist_recipients format) holds
 *	"user@domain", "user@" (any domain), "domain" (that domain and its
 *	subdomains), or "/regex/" matched against the whole recipient.
 *
 *	A cidr map (key is a network, value an action) is matched by longest
 *	prefix.
 * RESULTS
 *	Loaders return 0, or -1 with "path:line: message" in err. Lookups
 *	return the value (owned by the map) or NULL.
 * OWNERSHIP
 *	The caller frees maps with the matching _free(). Maps are not
 *	modified after loading and may be shared read-only.
 *--*/
#ifndef POLICYD_MAPS_H
#define POLICYD_MAPS_H

#include <stddef.h>
#include "addr.h"

#define MAP_F_SET		(1 << 0)	/* values optional */
#define MAP_F_BARE_DOMAIN	(1 << 1)	/* "example.com" == "@example.com" */

struct map;

struct map *map_new(void);
int	map_put(struct map *m, const char *key, const char *value);
int	map_load_file(struct map *m, const char *path, int flags, char *err,
	    size_t errlen);
/*
 * A value check for the loaders: 0, or -1 with a reason in why. The
 * _checked loaders refuse a line whose value fails it, as
 * "path:line: key "K": reason" (access maps: every value is an action).
 */
typedef int map_value_check(const char *value, char *why, size_t whylen);
int	map_load_file_checked(struct map *m, const char *path, int flags,
	    map_value_check *check, char *err, size_t errlen);
const char *map_get(const struct map *m, const char *key);
/* the same, for a key that is already ASCII-lowercase (addr_lower) */
const char *map_get_lower(const struct map *m, const char *key);
size_t	map_count(const struct map *m);
void	map_free(struct map *m);

/*
 * map_lookup_address - most specific entry for an address (see above).
 * delim is the extension delimiter ('+', or 0 for none). When matched
 * is not NULL it receives the key that matched (valid until the next
 * call in the same thread; the buffer is the caller's: matched must
 * point to at least 512+1 bytes, or be NULL).
 */
const char *map_lookup_address(const struct map *m, const char *addr,
	    char delim, char *matched, size_t matchedlen);

/*
 * map_lookup_domain - for host names and HELO: "host.sub.example.com",
 * then ".sub.example.com", ".example.com", ".com". Bare entries match
 * only the exact name.
 */
const char *map_lookup_domain(const struct map *m, const char *name,
	    char *matched, size_t matchedlen);

/* Longest-prefix CIDR maps. */
struct cidrmap;

struct cidrmap *cidrmap_new(void);
int	cidrmap_put(struct cidrmap *m, const char *network, const char *value,
	    char *err, size_t errlen);
int	cidrmap_load_file(struct cidrmap *m, const char *path, char *err,
	    size_t errlen);
/* a list file: one network per line, "#" comments (conditions' file:) */
int	cidrmap_load_list(struct cidrmap *m, const char *path, char *err,
	    size_t errlen);
int	cidrmap_load_file_checked(struct cidrmap *m, const char *path,
	    map_value_check *check, char *err, size_t errlen);
const char *cidrmap_lookup(const struct cidrmap *m, const struct ipaddr *ip);
size_t	cidrmap_count(const struct cidrmap *m);
void	cidrmap_free(struct cidrmap *m);

/* postgrey-format whitelists. */
struct clientlist;

struct clientlist *clientlist_new(void);
int	clientlist_add(struct clientlist *l, const char *entry, char *err,
	    size_t errlen);
int	clientlist_load_file(struct clientlist *l, const char *path, char *err,
	    size_t errlen);
/* client_name may be "unknown"; ip may be NULL when the address is bad */
int	clientlist_match(const struct clientlist *l, const char *client_name,
	    const struct ipaddr *ip);
size_t	clientlist_count(const struct clientlist *l);
void	clientlist_free(struct clientlist *l);

struct rcptlist;

struct rcptlist *rcptlist_new(void);
int	rcptlist_add(struct rcptlist *l, const char *entry, char *err,
	    size_t errlen);
int	rcptlist_load_file(struct rcptlist *l, const char *path, char *err,
	    size_t errlen);
int	rcptlist_match(const struct rcptlist *l, const char *recipient);
size_t	rcptlist_count(const struct rcptlist *l);
void	rcptlist_free(struct rcptlist *l);

#endif

/*++
 * NAME
 *	check_relocated.h - the pure part of relocated, for the check and its tests
 *--*/
#ifndef POLICYD_CHECK_RELOCATED_H
#define POLICYD_CHECK_RELOCATED_H

#include <stddef.h>

struct map;

/*
 * relocated (check_relocated.c): the pure lookup. The map value is
 * "NEW [YYYY-MM-DD]" (see relocated_parse). On RELOC_MOVED and
 * RELOC_EXPIRED newaddr receives the new address.
 */
enum reloc_result { RELOC_NONE, RELOC_MOVED, RELOC_EXPIRED, RELOC_BAD };

enum reloc_result relocated_lookup(const struct map *map, const char *rcpt,
	    long long now, char *newaddr, size_t newlen, char *why,
	    size_t whylen);
/* relocated_parse - split a map value; 0, or -1 with a reason in err */
int	relocated_parse(const char *value, char *newaddr, size_t newlen,
	    long long *end, char *err, size_t errlen);

#endif

/*++
 * NAME
 *	check_sender.h - the pure part of sender_login, for the check and its tests
 *--*/
#ifndef POLICYD_CHECK_SENDER_H
#define POLICYD_CHECK_SENDER_H

#include <stddef.h>

/* sender_login (check_sender.c): the pure ownership decision */
#define SENDER_BUILTIN		(1u << 0)	/* login == sender (case, +ext) */
#define SENDER_SAME_DOMAIN	(1u << 1)	/* x@dom owns any sender @dom */
#define SENDER_NULL_OK		(1u << 2)	/* the null sender is allowed */

enum sender_result { SENDER_NOT_OWNED, SENDER_OWNED };

struct map;
enum sender_result sender_owned(const char *login, const char *sender,
	    const struct map *map, unsigned flags, char *why, size_t whylen);

#endif

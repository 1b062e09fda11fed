/*++
 * NAME
 *	glnet.h - the client networks of policyctl greylist, for a person
 *	and from an argument (pure)
 * DESCRIPTION
 *	The greylist check names a client in its fields by N (greylist.h:
 *	'4' or '6' and the network's bytes, 'x' and the hash of an invalid
 *	client_address, 'h' and the hash of any other client part).
 *
 *	gl_name_text() writes N for a person: "192.0.2.0/24",
 *	"2001:db8::/64" (with the rule's prefixes; another prefix shows as
 *	the length the bytes give), "client HASH", or "?".
 *
 *	gl_target() reads a NETWORK argument (an address, ADDRESS/LEN with
 *	the rule's prefix, or the "x..." network of an invalid address as
 *	listed) into the client's parts (greylist_client_of()) and its text:
 *	0, or CTL_USAGE after a message. gl_client_hex() gives the old key
 *	format's NET hex of the same argument ("" when there is none).
 *--*/
#ifndef POLICYD_CTL_GLNET_H
#define POLICYD_CTL_GLNET_H

#include <stddef.h>

struct gl_key;

void	gl_name_text(const unsigned char *name, size_t len, int v4prefix,
	    int v6prefix, char *buf, size_t buflen);
int	gl_target(const char *arg, int v4prefix, int v6prefix,
	    struct gl_key *k, char *text, size_t textlen);
void	gl_client_hex(const char *arg, int v4prefix, int v6prefix, char *net,
	    size_t len);

#endif

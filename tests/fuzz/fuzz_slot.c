/*
 * fuzz_slot.c - libFuzzer target for the Redis Cluster address helpers
 * (slot.h): what a server sends in MOVED/ASK and what the configuration
 * names as seeds.
 *
 * The input is split at its first NUL: the first part is parsed as an
 * error reply (slot_parse_redirect), its address resolved against the
 * second part as the answering connection (slot_redirect_target), both
 * also parsed as "host:port" (slot_parse_hostport) and hashed (slot_of).
 * Checked: results stay inside their buffers and are NUL-terminated, a
 * resolved target is a valid "host:port" of the same port, and an
 * accepted host never contains a space, a bracket or a colon outside
 * brackets.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slot.h"

int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	*err, *from, addr[64], out[80], host[80], h2[64];
	const char *nul;
	unsigned slot = SLOT_COUNT;
	int	kind, port, port2;
	size_t	el;

	if ((err = malloc(size + 1)) == NULL)
		return 0;
	memcpy(err, data, size);
	err[size] = '\0';
	nul = memchr(data, '\0', size);
	el = nul ? (size_t)(nul - (const char *)data) : size;
	from = nul ? err + el + 1 : NULL;

	if (slot_of(err, size) >= SLOT_COUNT)
		abort();
	kind = slot_parse_redirect(err, &slot, addr, sizeof(addr));
	if (kind != 0) {
		if (kind != 1 && kind != 2)
			abort();
		if (slot >= SLOT_COUNT || memchr(addr, '\0', sizeof(addr)) == NULL)
			abort();
		if (slot_redirect_target(addr, from, out, sizeof(out)) == 0) {
			const char *c = strrchr(addr, ':');

			if (memchr(out, '\0', sizeof(out)) == NULL)
				abort();
			if (slot_parse_hostport(out, host, sizeof(host),
			    &port) != 0 || c == NULL || port != atoi(c + 1))
				abort();
			if (strpbrk(host, " []") != NULL)
				abort();
			if (strchr(host, ':') != NULL && out[0] != '[')
				abort();
		}
	}
	if (slot_parse_hostport(err, h2, sizeof(h2), &port2) == 0) {
		if (port2 < 1 || port2 > 65535 || h2[0] == '\0' ||
		    memchr(h2, '\0', sizeof(h2)) == NULL)
			abort();
	}
	free(err);
	return 0;
}

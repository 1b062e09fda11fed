/*++
 * NAME
 *	slot.c - key slots, hash tags and addresses for Redis Cluster (see slot.h)
 * DESCRIPTION
 *	Pure functions, written from the Redis Cluster specification: the
 *	slot of a key is CRC16(tag) mod 16384 with the XMODEM variant of
 *	CRC16 (so the slot of "123456789" is 0x31C3 mod 16384 = 12739).
 *--*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slot.h"

/* slot_crc16 - CRC16/XMODEM, bit by bit (keys are short) */
uint16_t
slot_crc16(const char *buf, size_t len)
{
	uint16_t crc = 0;

	for (size_t i = 0; i < len; i++) {
		crc ^= (uint16_t)((unsigned char)buf[i] << 8);
		for (int b = 0; b < 8; b++)
			crc = crc & 0x8000 ? (uint16_t)((crc << 1) ^ 0x1021) :
			    (uint16_t)(crc << 1);
	}
	return crc;
}

/* slot_hashtag - the hashed part of a key (see slot.h) */
void
slot_hashtag(const char *key, size_t keylen, size_t *off, size_t *len)
{
	const char *open = memchr(key, '{', keylen), *close;

	*off = 0;
	*len = keylen;
	if (open == NULL)
		return;
	close = memchr(open + 1, '}', keylen - (size_t)(open + 1 - key));
	if (close == NULL || close == open + 1)
		return;
	*off = (size_t)(open + 1 - key);
	*len = (size_t)(close - open - 1);
}

/* slot_of - the slot of a key */
unsigned
slot_of(const char *key, size_t keylen)
{
	size_t	off, len;

	slot_hashtag(key, keylen, &off, &len);
	return slot_crc16(key + off, len) & (SLOT_COUNT - 1);
}

/* slot_parse_hostport - split "host:port" (see slot.h) */
int
slot_parse_hostport(const char *s, char *host, size_t hostlen, int *port)
{
	const char *colon = strrchr(s, ':');
	char	*end;
	size_t	hl;
	long	p;

	if (colon == NULL || colon == s || colon[1] == '\0')
		return -1;
	p = strtol(colon + 1, &end, 10);
	if (*end != '\0' || p < 1 || p > 65535)
		return -1;
	hl = (size_t)(colon - s);
	if (s[0] == '[') {
		if (hl < 3 || s[hl - 1] != ']')
			return -1;
		s++;
		hl -= 2;
	} else if (memchr(s, ':', hl) != NULL) {
		return -1;		/* an IPv6 address needs brackets */
	}
	if (hl == 0 || hl >= hostlen)
		return -1;
	memcpy(host, s, hl);
	host[hl] = '\0';
	*port = (int)p;
	return 0;
}

/* slot_parse_redirect - MOVED / ASK error replies (see slot.h) */
int
slot_parse_redirect(const char *err, unsigned *slot, char *addr,
    size_t addrlen)
{
	int	kind;
	const char *p;
	char	*end;
	unsigned long n;
	size_t	al;

	if (strncmp(err, "MOVED ", 6) == 0) {
		kind = 1;
		p = err + 6;
	} else if (strncmp(err, "ASK ", 4) == 0) {
		kind = 2;
		p = err + 4;
	} else {
		return 0;
	}
	if (*p < '0' || *p > '9')
		return 0;
	n = strtoul(p, &end, 10);
	if (n >= SLOT_COUNT || *end != ' ')
		return 0;
	p = end + 1;
	al = strcspn(p, " \r\n");
	if (al == 0 || al >= addrlen || strchr(p, ':') == NULL)
		return 0;
	memcpy(addr, p, al);
	addr[al] = '\0';
	*slot = (unsigned)n;
	return kind;
}

/* slot_redirect_target - the address of a redirection's node (see slot.h) */
int
slot_redirect_target(const char *addr, const char *from, char *out,
    size_t outlen)
{
	const char *colon = strrchr(addr, ':'), *host = addr;
	char	fhost[256], *end;
	size_t	hl;
	long	port;
	int	fport, w;

	if (colon == NULL || colon[1] < '0' || colon[1] > '9')
		return -1;
	port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || port < 1 || port > 65535)
		return -1;
	hl = (size_t)(colon - addr);
	if (hl >= 2 && addr[0] == '[' && addr[hl - 1] == ']') {
		host++;
		hl -= 2;
	}
	if (hl == 0 || (hl == 1 && host[0] == '?')) {
		/* "the address you reached me on" */
		if (from == NULL || slot_parse_hostport(from, fhost,
		    sizeof(fhost), &fport) != 0)
			return -1;
		host = fhost;
		hl = strlen(fhost);
	}
	if (memchr(host, '[', hl) != NULL || memchr(host, ']', hl) != NULL ||
	    memchr(host, ' ', hl) != NULL)
		return -1;
	if (memchr(host, ':', hl) != NULL)
		w = snprintf(out, outlen, "[%.*s]:%ld", (int)hl, host, port);
	else
		w = snprintf(out, outlen, "%.*s:%ld", (int)hl, host, port);
	return w < 0 || (size_t)w >= outlen ? -1 : 0;
}

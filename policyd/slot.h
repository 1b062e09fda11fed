/*++
 * NAME
 *	slot.h - pure helpers for Redis Cluster and Sentinel addressing
 * DESCRIPTION
 *	No I/O and no Redis client: the key slot (CRC16/XMODEM of the hash tag,
 *	modulo 16384, as the Redis Cluster specification defines it), the
 *	hash tag rules, "host:port" parsing, and the parsing of MOVED/ASK
 *	redirections. Unit-tested by tests/unit/cluster_test.c.
 *--*/
#ifndef POLICYD_SLOT_H
#define POLICYD_SLOT_H

#include <stddef.h>
#include <stdint.h>

#define SLOT_COUNT	16384

/* CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0 */
uint16_t slot_crc16(const char *buf, size_t len);

/*
 * slot_hashtag - the part of a key that is hashed: the bytes between the
 * first "{" and the first "}" after it, when that is not empty; else the
 * whole key. Sets *off and *len.
 */
void	slot_hashtag(const char *key, size_t keylen, size_t *off, size_t *len);

/* slot_of - the cluster slot (0..16383) of a key */
unsigned slot_of(const char *key, size_t keylen);

/*
 * slot_parse_hostport - "host:port", "[v6]:port" (port 1..65535) into
 * host (brackets removed) and *port; 0 on success, -1 when malformed or
 * the host does not fit.
 */
int	slot_parse_hostport(const char *s, char *host, size_t hostlen,
	    int *port);

/*
 * slot_parse_redirect - an error reply "MOVED 3999 127.0.0.1:6381" or
 * "ASK 3999 127.0.0.1:6381": returns 1 for MOVED, 2 for ASK (with *slot
 * and the address copied into addr), 0 for anything else.
 */
int	slot_parse_redirect(const char *err, unsigned *slot, char *addr,
	    size_t addrlen);

/*
 * slot_redirect_target - the node a MOVED/ASK address names, as
 * "host:port" with an IPv6 host in brackets (Redis writes "::1:7000").
 * An empty host (":7000", Redis 7 when the node's endpoint is unknown)
 * or "?" means the host of the connection that answered: from
 * ("host:port" or "[v6]:port"). 0, or -1 when malformed, when from has
 * no host to lend, or when the result does not fit in out.
 */
int	slot_redirect_target(const char *addr, const char *from, char *out,
	    size_t outlen);

#endif

/*++
 * NAME
 *	greylist.h - where a greylist triplet lives in Redis (pure)
 * DESCRIPTION
 *	Triplets are fields of small hashes ("buckets") so that Redis keeps
 *	them in its compact listpack encoding (about 20 bytes a triplet
 *	instead of a key of its own). For a client part C (the network as
 *	hex, see addr_net_hex) and a triplet hash t = hash(C, sender,
 *	recipient), with c = hash(C):
 *
 *		bucket	PREFIX g{TT}BB	TT = c & 0xff (the hash tag: 256
 *					slots), BB = (t >> 8) & 0xff
 *		field	N, then 4 bytes: t bits 32..63
 *		counter	PREFIX g{TT}CC	CC = (c >> 24) & 0xff; field "a" N
 *
 *	N names the client: '4' and the network's bytes (3 for a /24), '6'
 *	and the bytes of an IPv6 network (8 for a /64), 'x' and the 8 bytes
 *	of the hash of an invalid client_address, or 'h' and 8 bytes of
 *	hash(C) for any other client part. So a /24's triplet costs an
 *	8-byte field, the 256 buckets of one tag hold every triplet of the
 *	clients with that tag, policyctl finds (and shows) a network's
 *	entries by their N, and a triplet and its client's counter share a
 *	Cluster slot. The value encoding and the expiry are the script's
 *	(scripts/greylist.lua).
 *
 *	greylist_key_of() fills k for one triplet; greylist_client_of() only
 *	the client's parts (tag, counter, the 2-byte field prefix) for
 *	policyctl. greylist_legacy_key() is the key of the old format
 *	(g{C} + 8 bytes of hash(sender NUL recipient)), read until it expires.
 *--*/
#ifndef POLICYD_GREYLIST_H
#define POLICYD_GREYLIST_H

#include <stddef.h>
#include <stdint.h>

#define GL_NAME_MAX	17		/* N: kind and up to 16 bytes */
#define GL_BUCKETS	256		/* per hash tag */

struct gl_key {
	char	bucket[8];		/* "g{TT}BB" */
	char	counter[8];		/* "g{TT}CC" */
	unsigned char name[GL_NAME_MAX];	/* N */
	size_t	namelen;
	unsigned char field[GL_NAME_MAX + 4];	/* N + 4 bytes */
	size_t	fieldlen;
	unsigned char awl[GL_NAME_MAX + 1];	/* "a" N */
	size_t	awllen;
	unsigned tag;			/* TT */
	int	sweep;			/* this new triplet sweeps its bucket */
	uint64_t chash, thash;		/* c and t */
};

/*
 * A local cache of answers that cannot change for a while, for ttl
 * seconds (local_cache): a triplet that passed and an auto-whitelisted
 * client (their answer holds until max_age after the last pass that
 * Redis reported, a second or two less: never past it), a waiting triplet (deferred
 * until first_seen + delay; kept until a second before that at most),
 * and a client known to be below auto_whitelist (its counter is not read
 * again: a stale "below" only defers). Direct-mapped, GL_CACHE_SLOTS
 * entries per greylist rule; times are CLOCK_MONOTONIC milliseconds.
 * gl_cache_get() answers GL_CACHED (with *pass_ms: 0 for a pass, else
 * when a waiting triplet's delay ends) or 0 when absent or expired.
 */
#define GL_CACHE_SLOTS	(1u << 16)
#define GL_CACHED	1
#define GL_AWL_KEY(c)	((c) ^ 0x61776c61776c6177ULL)	/* whitelisted */
#define GL_LOW_KEY(c)	((c) ^ 0x6c6f776c6f776c6fULL)	/* below it */

struct gl_cache;

struct gl_cache *gl_cache_new(void);
void	gl_cache_free(struct gl_cache *gc);
int	gl_cache_get(const struct gl_cache *gc, uint64_t h, long long now_ms,
	    long long *pass_ms);
void	gl_cache_put(struct gl_cache *gc, uint64_t h, long long until_ms,
	    long long pass_ms);

/*
 * The script's packed numbers (ARGV[2]): delay, retry_window, max_age,
 * auto_whitelist as big-endian 32-bit integers, then a flags byte.
 */
#define GL_PARAMS	17
#define GL_F_SWEEP	1		/* sweep the bucket if the triplet is new */
#define GL_F_NOCOUNT	2		/* do not read the client's counter */

/*
 * The script's answer, one integer: status + 8 * seconds + 2^33 * known,
 * known = the client's counter + 1, or 0 when it was not read.
 */
#define GL_STATUS(v)	((int)((v) & 7))
#define GL_SECONDS(v)	(((v) >> 3) & 0x3fffffffLL)
#define GL_COUNT(v)	(((v) >> 33) - 1)	/* -1: not read */

void	greylist_key_of(const char *client, size_t clen, const char *sender,
	    size_t slen, const char *rcpt, size_t rlen, struct gl_key *k);
void	greylist_client_of(const char *client, size_t clen, struct gl_key *k);
/* greylist_bucket_name - "g{TT}BB" of tag and bucket index */
void	greylist_bucket_name(unsigned tag, unsigned bucket, char out[8]);
int	greylist_legacy_key(const char *client, size_t clen,
	    const char *sender, size_t slen, const char *rcpt, size_t rlen,
	    char *buf, size_t len);

#endif

/*++
 * NAME
 *	ratelimit.h - what the ratelimit check exports besides its check_ops
 * DESCRIPTION
 *	Pure helpers (no Redis), shared by the check, policyctl and the unit
 *	tests, so that all of them build the same keys and read the same
 *	windows syntax:
 *
 *	ratelimit_parse_windows() reads an overrides value ("10/3600",
 *	"2000/1d, 100/1m", "5000" = every default window's limit, "unlimited"):
 *	0 with windows in out, 1 for unlimited, -1 with a reason in err.
 *	ratelimit_window_text() names a period ("hour", "5 minutes").
 *	ratelimit_key_text() builds a request's key text from the key parts:
 *	joined with '|', a '|' or '%' inside a value written %7c / %25 and a
 *	leading '#' %23 (no value can pass for two parts or a hashed one),
 *	a value longer than 256 bytes as '#' and its keyed hash.
 *	ratelimit_tag() is the 64-bit tag of the Redis keys r{TAG} and n{TAG}:
 *	SipHash-2-4 of the rule name and the key text under the installation's
 *	secret (secret.lua makes it once in Redis, PREFIX "secret"), so that
 *	no client can choose a value whose counter is somebody else's.
 *	ratelimit_windows_of() gives the windows a key gets under a compiled
 *	rule (its check_priv): its own override, its @domain's, or the rule's;
 *	return as ratelimit_parse_windows(), why says which.
 *
 *	Not pure, for policyctl: ratelimit_secret_ask() runs secret.lua as
 *	the check does (a random candidate, SET NX), and
 *	ratelimit_secret_decode() reads its answer (0, or -1 when it is not
 *	four integers).
 *--*/
#ifndef POLICYD_RATELIMIT_H
#define POLICYD_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "proto.h"
#include "store.h"

#define RL_MAX_WIN	8

struct rl_window {
	long long limit;
	long long seconds;
};

int	ratelimit_parse_windows(const char *s, const struct rl_window *def,
	    int ndef, struct rl_window *out, int *nout, char *err,
	    size_t errlen);
int	ratelimit_window_text(long long seconds, char *buf, size_t len);
int	ratelimit_key_text(const uint8_t secret[16], const int *parts,
	    int nparts, int v4prefix, int v6prefix, const struct policy_req *q,
	    char *buf, size_t len, char *why, size_t whylen);
uint64_t ratelimit_tag(const uint8_t secret[16], const char *rule,
	    const char *key);
int	ratelimit_windows_of(const void *priv, const char *key,
	    struct rl_window *w, int *nw, char *why, size_t whylen);
void	ratelimit_secret_ask(struct store *st, store_cb *cb, void *arg);
int	ratelimit_secret_decode(const struct store_reply *r, uint8_t key[16]);

#endif

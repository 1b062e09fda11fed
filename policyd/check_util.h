/*++
 * NAME
 *	check_util.h - reply templates and helpers shared by the checks
 *	(check_util.c)
 *--*/
#ifndef POLICYD_CHECK_UTIL_H
#define POLICYD_CHECK_UTIL_H

#include <stddef.h>
#include <libconfig.h>

struct config;

/*
 * check_expand - expand a reply template into buf: "%X" with X in codes
 * becomes vals[index of X in codes] (cut at 400 bytes), "%%" becomes
 * "%", any other '%' stays; control characters become '?'. Always
 * NUL-terminates (len > 0); returns the length written.
 */
size_t	check_expand(char *buf, size_t len, const char *tmpl,
	    const char *codes, const char *const *vals);

/*
 * check_template - read the optional string option name of a rule (def
 * when absent) into *out (malloc'ed): at most 400 characters, using only
 * the %X codes in codes (at most 8), and a valid action once expanded.
 * 0, or -1 with "file:line: message" in err.
 */
int	check_template(const config_setting_t *rs, const char *name,
	    const char *def, const char *codes, char **out,
	    const struct config *c, char *err, size_t errlen);

/*
 * check_skipped - the clients a DNS check (spf, dnsbl) leaves alone: an
 * authenticated one (when skip_auth), one without a valid address, one in
 * skip. Answers CHECK_NOMATCH with "REASON: what" and returns 1; else 0.
 */
struct eval;
struct cidrmap;
int	check_skipped(struct eval *ev, int skip_auth,
	    const struct cidrmap *skip, const char *what);

/*
 * check_mono_ms - CLOCK_MONOTONIC_COARSE in milliseconds: the clock of
 * what a check remembers for a while (local caches)
 */
long long check_mono_ms(void);

/*
 * check_put_dec - v in decimal, NUL-terminated, into buf (24 bytes are
 * enough for any value); returns the length. Answers and arguments on
 * the hot path are built with it instead of a printf format.
 */
size_t	check_put_dec(char *buf, long long v);

/*
 * check_script_error - why a script's answer to one decision (one
 * integer, not negative) cannot be used, or NULL when it can: the state
 * layer's error, "SCRIPT script failed on this key ..." (-1: a batched
 * call that failed alone, see store.h) or "unexpected reply from SCRIPT
 * script". The text is r's or buf's.
 */
struct store_reply;
const char *check_script_error(const struct store_reply *r,
	    const char *script, char *buf, size_t len);

#endif

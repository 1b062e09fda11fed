/* store_stub.c - the state layer's symbols for unit tests that link the
 * rule engine without hiredis; no test here ever runs a script. */
#include "store.h"

/* store_script - fail at once (unit tests never reach Redis) */
void
store_script(struct store *s, enum store_script_id id, int nkeys, int nargs,
    const char *const *argv, const size_t *argvlen, store_cb *cb, void *arg)
{
	struct store_reply r = { .ok = 0, .err = "no redis in unit tests" };

	(void)s; (void)id; (void)nkeys; (void)nargs; (void)argv; (void)argvlen;
	cb(arg, &r);
}

/* store_script_batched - the same */
void
store_script_batched(struct store *s, enum store_script_id id, int nkeys,
    int nargs, const char *const *argv, const size_t *argvlen, store_cb *cb,
    void *arg)
{
	store_script(s, id, nkeys, nargs, argv, argvlen, cb, arg);
}

/* store_prefix - no prefix */
const char *
store_prefix(const struct store *s)
{
	(void)s;
	return "";
}

/* store_epoch - one connection, never made anew */
unsigned long
store_epoch(const struct store *s)
{
	(void)s;
	return 0;
}

/*++
 * NAME
 *	tap.h - a tiny TAP harness for policyd's unit tests
 * SYNOPSIS
 *	#include "tap.h"
 *
 *	ok(cond, "what was checked");
 *	is_str(got, want, "name");  is_int(got, want, "name");
 *	return tap_done();
 * DESCRIPTION
 *	Prints "ok N - name" / "not ok N - name" lines and, at the end, the
 *	plan "1..N". tap_done() returns the exit status: 0 when every
 *	assertion passed. Header-only; include it from one .c file per test.
 *--*/
#ifndef POLICYD_TAP_H
#define POLICYD_TAP_H

#include <stdio.h>
#include <string.h>

static int tap_n, tap_failed;

static int
tap_ok(int cond, const char *file, int line, const char *name)
{
	tap_n++;
	printf("%sok %d - %s\n", cond ? "" : "not ", tap_n, name);
	if (!cond) {
		tap_failed++;
		printf("#   failed at %s:%d\n", file, line);
	}
	return cond;
}

#define ok(cond, name) tap_ok(!!(cond), __FILE__, __LINE__, (name))

#define is_str(got, want, name) do { \
	const char *g_ = (got), *w_ = (want); \
	int c_ = (g_ == NULL && w_ == NULL) || \
	    (g_ != NULL && w_ != NULL && strcmp(g_, w_) == 0); \
	if (!tap_ok(c_, __FILE__, __LINE__, (name))) \
		printf("#   got: '%s'\n#   want: '%s'\n", g_ ? g_ : "(null)", \
		    w_ ? w_ : "(null)"); \
} while (0)

#define is_int(got, want, name) do { \
	long long g_ = (long long)(got), w_ = (long long)(want); \
	if (!tap_ok(g_ == w_, __FILE__, __LINE__, (name))) \
		printf("#   got: %lld\n#   want: %lld\n", g_, w_); \
} while (0)

static int
tap_done(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

#endif

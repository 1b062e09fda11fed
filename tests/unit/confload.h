/*++
 * NAME
 *	confload.h - load a configuration text in a unit test
 * SYNOPSIS
 *	static char dir[] = "/tmp/policyd-X-test.XXXXXX";   (mkdtemp'ed in main)
 *	#include "confload.h"
 *
 *	write_file("map", "key value\n");
 *	c = load(text, errs, sizeof(errs));   errors logged to stderr land in errs
 * DESCRIPTION
 *	Header-only, for the tests that build configurations (config, sender,
 *	relocated, ratelimit). The including file defines dir.
 *--*/
#ifndef POLICYD_CONFLOAD_H
#define POLICYD_CONFLOAD_H

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static int load_nerrors;		/* errors of the last load() */

/* write_file - dir/name with text; returns the path (static buffer) */
static const char * __attribute__((unused))
write_file(const char *name, const char *text)
{
	static char path[512];
	FILE	*f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
	return path;
}

/* load - config_load of text with stderr captured into errs */
static struct config *
load(const char *text, char *errs, size_t errlen)
{
	const char *path = write_file("policyd.conf", text);
	char	cap[512];
	int	saved, fd;
	struct config *c;
	ssize_t	n;

	snprintf(cap, sizeof(cap), "%s/stderr", dir);
	fflush(stderr);
	saved = dup(2);
	fd = open(cap, O_RDWR | O_CREAT | O_TRUNC, 0600);
	dup2(fd, 2);
	load_nerrors = 0;
	c = config_load(path, &load_nerrors);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	lseek(fd, 0, SEEK_SET);
	n = read(fd, errs, errlen - 1);
	errs[n > 0 ? n : 0] = '\0';
	close(fd);
	return c;
}

/*
 * expect_refused - text must not load, and the log must say want: two
 * assertions, "WHAT: refused" and "WHAT: message" (needs tap.h first)
 */
static void __attribute__((unused))
expect_refused(const char *text, const char *want, const char *what)
{
	char	errs[4096], name[200];
	struct config *c = load(text, errs, sizeof(errs));

	snprintf(name, sizeof(name), "%s: refused", what);
	ok(c == NULL && load_nerrors > 0, name);
	snprintf(name, sizeof(name), "%s: message", what);
	if (!ok(strstr(errs, want) != NULL, name))
		printf("#   want '%s' in:\n#   %s", want, errs);
	if (c)
		config_unref(c);
}

#endif

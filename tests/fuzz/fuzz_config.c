/*
 * fuzz_config.c - libFuzzer target for the configuration loader
 *
 * Each input is written to policyd.conf in a private temporary directory
 * that also holds the sample maps of rules/ (copied once from FUZZ_RULES_DIR,
 * set by fuzz.sh), so "file:client_access" and friends resolve; then
 * config_load() must either return a snapshot (released again with
 * config_unref) or NULL with at least one error counted. The loader's
 * error lines go to stderr: fd 2 points at /dev/null while it runs, and
 * the sanitizers report to a saved copy of the real stderr.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

#ifndef FUZZ_RULES_DIR
#define FUZZ_RULES_DIR "rules"
#endif

void	__sanitizer_set_report_fd(void *fd);

static char dir[64];
static char conf[128];
static int devnull = -1, saved_stderr = -1;

static void
copy_file(const char *from, const char *to)
{
	char	buf[8192];
	ssize_t	n;
	int	in, out;

	if ((in = open(from, O_RDONLY)) < 0)
		return;
	if ((out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644)) < 0) {
		close(in);
		return;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, n) != n)
			break;
	close(in);
	close(out);
}

static void
cleanup(void)
{
	DIR    *d = opendir(dir);
	struct dirent *e;
	char	p[512];

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *rules = getenv("FUZZ_RULES_DIR");
	DIR    *d;
	struct dirent *e;

	(void)argc; (void)argv;
	if (rules == NULL)
		rules = FUZZ_RULES_DIR;
	snprintf(dir, sizeof(dir), "/tmp/policyd-fuzz-config.XXXXXX");
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	atexit(cleanup);
	snprintf(conf, sizeof(conf), "%s/policyd.conf", dir);
	if ((d = opendir(rules)) != NULL) {
		while ((e = readdir(d)) != NULL) {
			char	from[512], to[512];

			if (e->d_name[0] == '.' || strcmp(e->d_name, "policyd.conf") == 0)
				continue;
			snprintf(from, sizeof(from), "%s/%s", rules, e->d_name);
			snprintf(to, sizeof(to), "%s/%s", dir, e->d_name);
			copy_file(from, to);
		}
		closedir(d);
	}
	devnull = open("/dev/null", O_WRONLY);
	saved_stderr = dup(2);
	__sanitizer_set_report_fd((void *)(intptr_t)saved_stderr);
	log_init("policyd-fuzz", 1, 0);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *c;
	int	fd, nerrors = 0;

	if ((fd = open(conf, O_WRONLY | O_CREAT | O_TRUNC, 0644)) < 0)
		abort();
	if (size && write(fd, data, size) != (ssize_t)size)
		abort();
	close(fd);

	dup2(devnull, 2);
	c = config_load(conf, &nerrors);
	dup2(saved_stderr, 2);
	if (c == NULL) {
		if (nerrors <= 0)
			abort();	/* refused without saying why */
		return 0;
	}
	if (nerrors != 0)
		abort();		/* a snapshot despite errors */
	/* a second reference, as a request holds one across a reload */
	config_unref(config_ref(c));
	config_unref(c);
	return 0;
}

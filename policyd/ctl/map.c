/*
 * map.c - policyctl map query MAP KEY...: each key looked up in turn with
 * the daemon's table code (table.h: pgsql:FILE, mysql:FILE or a map file,
 * relative to the configuration's directory) on an event loop of its
 * own, printed with where the answer came from: the file, the database,
 * or this process's cache when a key is asked twice.
 */
#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "addr.h"
#include "log.h"
#include "sqlcf.h"
#include "table.h"

#include "ctl.h"

/* one lookup of cmd_map */
struct map_answer {
	struct event_base *base;
	int	done;
	enum table_status st;
	int	cached;
	char	value[SQLCF_RESULT_MAX + 1];
};

/* map_answered - the table's callback */
static void
map_answered(void *arg, enum table_status st, const char *value, int cached)
{
	struct map_answer *a = arg;

	a->done = 1;
	a->st = st;
	a->cached = cached;
	snprintf(a->value, sizeof(a->value), "%s", value ? value : "");
	event_base_loopbreak(a->base);
}

/*
 * cmd_map - "map query MAP KEY...": each key looked up in turn by the
 * daemon's table code (table.h), printed with where the answer came from
 */
int
cmd_map(const struct ctl *ctl, int argc, char **argv)
{
	struct map_answer a;
	struct table *t;
	const char *spec, *file, *slash;
	char	path[4096], err[4400], esc[SQLCF_RESULT_MAX * 4 + 8];
	char	key[1100];
	int	rc = CTL_OK, sql;

	if (argc < 3 || strcmp(argv[0], "query") != 0) {
		ctl_err("usage: policyctl [-c CONFIG] map query MAP KEY "
		    "[KEY...]  (MAP: pgsql:FILE, mysql:FILE or FILE)");
		return CTL_USAGE;
	}
	spec = argv[1];
	sql = table_is_sql(spec);
	file = sql ? spec + 6 : spec;
	/* relative to the configuration's directory, as in policyd.conf */
	if (file[0] != '/' && (slash = strrchr(ctl->config, '/')) != NULL)
		snprintf(path, sizeof(path), "%.*s/%s",
		    (int)(slash - ctl->config), ctl->config, file);
	else
		snprintf(path, sizeof(path), "%s", file);
	log_init("policyctl", 1, 0);
	log_set_level(LOG_L_WARN);
	memset(&a, 0, sizeof(a));
	if ((a.base = event_base_new()) == NULL) {
		ctl_err("cannot create an event loop");
		return CTL_FAIL;
	}
	table_set_base(a.base);
	if ((t = table_open(spec, path, 0, err, sizeof(err))) == NULL) {
		ctl_err("%s", err);
		table_set_base(NULL);
		event_base_free(a.base);
		return CTL_FAIL;
	}
	printf("map %s\n", table_name(t));
	for (int i = 2; i < argc; i++) {
		long long t0 = ctl_mono_ms();

		/* the checks ask lowercase keys */
		snprintf(key, sizeof(key), "%s", argv[i]);
		addr_lower(key);
		a.done = 0;
		table_lookup(t, key, map_answered, &a);
		while (!a.done)
			if (event_base_dispatch(a.base) < 0)
				break;
		log_escape(esc, sizeof(esc), key, strlen(key));
		printf("%s: ", esc);
		if (!a.done || a.st == TABLE_ERROR) {
			printf("error: the lookup failed (database down, slow, "
			    "or a query error; see above)\n");
			rc = CTL_FAIL;
			continue;
		}
		if (a.st == TABLE_FOUND) {
			log_escape(esc, sizeof(esc), a.value, strlen(a.value));
			printf("found \"%s\"", esc);
		} else
			printf("not found");
		if (!sql)
			printf(" (file)\n");
		else if (a.cached)
			printf(" (cache)\n");
		else
			printf(" (database, %lld ms)\n", ctl_mono_ms() - t0);
	}
	table_unref(t);
	table_shutdown();
	event_base_free(a.base);
	return rc;
}


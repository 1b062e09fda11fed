/* config_test.c - configuration loading: defaults, rules, file:line errors */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "rules.h"
#include "tap.h"

static char dir[] = "/tmp/policyd-config-test.XXXXXX";

#include "confload.h"

static void
test_defaults(void)
{
	char	errs[4096];
	struct config *c = load("rules = ();\n", errs, sizeof(errs));

	ok(c != NULL, "empty rule list loads");
	if (c == NULL)
		return;
	is_int(load_nerrors, 0, "no errors");
	is_str(c->listen[0].address, "inet:127.0.0.1:10040", "default listener");
	is_str(c->redis.address, "127.0.0.1:6379", "default redis address");
	is_str(c->redis.prefix, "pd:", "default key prefix");
	is_int(c->redis.timeout_ms, 250, "default redis timeout");
	is_int(c->max_connections, 10000, "default max_connections");
	is_int(c->limits.max_line, PROTO_DEF_MAX_LINE, "default max_line");
	is_int(c->nrules, 0, "no rules");
	config_unref(c);
}

static void
test_rules(void)
{
	char	errs[4096];
	struct config *c;

	write_file("wl_clients", "# comment\n.example.org\n192.0.2\n");
	write_file("access", "spam@example.com REJECT 5.7.1 go away\n");
	c = load("listen = ( \"inet:127.0.0.1:1\", { address = \"unix:/tmp/x.sock\"; mode = \"0660\"; } );\n"
	    "redis = { address = \"unix:/tmp/r.sock\"; database = 3; timeout_ms = 100; };\n"
	    "rules = (\n"
	    "  { name = \"block\"; match = { client_address = [\"198.51.100.0/24\"]; };\n"
	    "    action = \"REJECT 5.7.1 blocked\"; },\n"
	    "  { name = \"acc\"; check = \"access\"; key = \"sender\"; map = \"access\"; },\n"
	    "  { name = \"grey\"; match = { authenticated = false; }; check = \"greylist\";\n"
	    "    delay = 60; whitelist_clients = \"wl_clients\"; mode = \"dry-run\";\n"
	    "    on_error = \"DEFER_IF_PERMIT 4.3.0 try later\"; }\n"
	    ");\n", errs, sizeof(errs));
	ok(c != NULL, "three rules load");
	if (c == NULL) {
		printf("# %s", errs);
		return;
	}
	is_int(c->nlisten, 2, "two listeners");
	is_int(c->listen[1].mode, 0660, "unix socket mode");
	is_int(c->redis.database, 3, "redis database");
	is_int(c->nrules, 3, "three rules");
	is_str(c->rules[0].name, "block", "rule order kept");
	is_str(c->rules[0].action, "REJECT 5.7.1 blocked", "static action");
	ok(c->rules[1].check == &check_access_ops, "access check bound");
	ok(c->rules[2].check == &check_greylist_ops, "greylist check bound");
	is_int(c->rules[2].dry_run, 1, "dry-run mode");
	is_str(c->rules[2].on_error, "DEFER_IF_PERMIT 4.3.0 try later", "on_error");
	is_str(c->rules[1].on_error, "DUNNO", "on_error defaults to DUNNO");
	is_int(c->rules[2].cond.sasl, 0, "authenticated = false");
	is_int(c->rules[0].cond.states, STATE_RCPT, "protocol_state defaults to RCPT");
	config_unref(c);
}

static const struct {
	const char *name, *text, *want;
} errors[] = {
	{ "syntax error", "rules = ( { name = \"x\" ;\n", "policyd.conf:2:" },
	{ "unknown top-level setting", "\nfoo = 1;\n", "policyd.conf:2: unknown setting \"foo\"" },
	{ "unknown group setting", "redis = {\n  adress = \"x\"; };\n",
	  "policyd.conf:2: unknown setting \"redis.adress\"" },
	{ "out of range", "limits = {\n max_connections = 0; };\n",
	  "policyd.conf:2: limits.max_connections: 0 is out of range" },
	{ "bad listen", "listen = [\n \"tcp:1.2.3.4:5\" ];\n",
	  "policyd.conf:2: listen: \"tcp:1.2.3.4:5\": expected inet:HOST:PORT" },
	{ "relative unix path", "listen = [ \"unix:sock\" ];\n", "must be absolute" },
	{ "unknown check", "rules = (\n { name = \"a\"; check = \"nope\"; } );\n",
	  "policyd.conf:2: rule \"a\": unknown check \"nope\"" },
	{ "bad action", "rules = (\n { name = \"a\";\n action = \"ACCEPT\"; } );\n",
	  "policyd.conf:3: action: unknown action \"ACCEPT\"" },
	{ "bad reply code", "rules = ( { name = \"a\";\n action = \"650 x\"; } );\n",
	  "policyd.conf:2: action: reply code 650 is not 4NN or 5NN" },
	{ "check and action", "rules = (\n { name = \"a\"; check = \"greylist\"; action = \"OK\"; } );\n",
	  "give exactly one of check or action" },
	{ "neither check nor action", "rules = (\n { name = \"a\"; } );\n",
	  "policyd.conf:2: rule \"a\": give exactly one of check or action" },
	{ "unknown rule setting", "rules = ( { name = \"a\"; action = \"OK\";\n delay = 5; } );\n",
	  "policyd.conf:2: rule \"a\": unknown setting \"delay\"" },
	{ "unknown condition", "rules = ( { name = \"a\"; action = \"OK\"; match = {\n sendr = \"x\"; }; } );\n",
	  "policyd.conf:2: unknown condition \"sendr\"" },
	{ "bad protocol_state", "rules = ( { name = \"a\"; action = \"OK\"; match = {\n protocol_state = \"RCTP\"; }; } );\n",
	  "unknown protocol_state \"RCTP\"" },
	{ "greylist at END-OF-MESSAGE", "rules = (\n { name = \"g\"; check = \"greylist\"; match = { protocol_state = \"END-OF-MESSAGE\"; }; } );\n",
	  "policyd.conf:2: rule \"g\": check greylist cannot work at every protocol_state" },
	{ "bad CIDR", "rules = ( { name = \"a\"; action = \"OK\"; match = {\n client_address = [ \"10.0.0.1/8\" ]; }; } );\n",
	  "policyd.conf:2: client_address:" },
	{ "missing map file", "rules = ( { name = \"a\"; check = \"access\"; key = \"sender\";\n map = \"/nonexistent/map\"; } );\n",
	  "/nonexistent/map" },
	{ "greylist delay out of range", "rules = ( { name = \"g\"; check = \"greylist\";\n delay = -1; } );\n",
	  "policyd.conf:2: delay: -1 is out of range" },
	{ "retry_window shorter than delay", "rules = ( { name = \"g\"; check = \"greylist\"; delay = 600; retry_window = 60; } );\n",
	  "retry_window (60) must be longer than delay (600)" },
	{ "duplicate rule names", "rules = ( { name = \"a\"; action = \"OK\"; },\n { name = \"a\"; action = \"OK\"; } );\n",
	  "policyd.conf:2: duplicate rule name \"a\"" },
	{ "bad mode", "rules = ( { name = \"a\"; action = \"OK\";\n mode = \"enforcing\"; } );\n",
	  "policyd.conf:2: mode: expected \"enforce\" or \"dry-run\"" },
	{ "bad log level", "log = {\n level = \"loud\"; };\n", "policyd.conf:2: log.level" },
};

static void
test_errors(void)
{
	for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++)
		expect_refused(errors[i].text, errors[i].want, errors[i].name);
}

int
main(void)
{
	if (mkdtemp(dir) == NULL)
		return 1;
	log_init("config_test", 1, 0);
	test_defaults();
	test_rules();
	test_errors();
	{
		char	cmd[600];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0)
			printf("# cleanup failed\n");
	}
	return tap_done();
}

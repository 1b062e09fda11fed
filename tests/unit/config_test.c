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

/* issue 10 items 10 and 13: listen groups, clients, explain, types */
static void
test_listen_settings(void)
{
	char	errs[4096];
	struct config *c = load("listen = (\n"
	    "  \"inet:127.0.0.1:1\",\n"
	    "  \"inet:[::1]:2\",\n"
	    "  { address = \"inet:0.0.0.0:3\"; clients = [ \"127.0.0.0/8\", \"::1\", \"192.0.2.0/24\" ]; },\n"
	    "  { address = \"inet:0.0.0.0:4\"; clients = \"192.0.2.7\"; explain = true; },\n"
	    "  { address = \"unix:/tmp/x.sock\"; mode = \"0640\"; explain = false; },\n"
	    "  \"unix:/tmp/y.sock\",\n"
	    "  \"inet:localhost:5\"\n"
	    ");\nlog = { level = \"debug\"; facility = \"local3\"; };\n"
	    "run_as_root = true;\nrules = ();\n", errs, sizeof(errs));

	ok(c != NULL, "listen groups with clients and explain load");
	if (c == NULL) {
		printf("# %s", errs);
		return;
	}
	is_int(c->nlisten, 7, "seven listeners");
	is_int(c->listen[0].explain, 1, "explain on by default on 127.0.0.1");
	is_int(c->listen[1].explain, 1, "explain on by default on [::1]");
	is_int(c->listen[2].explain, 0, "explain off by default on 0.0.0.0");
	is_int(c->listen[2].nclients, 3, "three client networks");
	is_int(c->listen[2].clients[2].prefix, 24, "192.0.2.0/24");
	is_int(c->listen[3].nclients, 1, "clients as one string");
	is_int(c->listen[3].explain, 1, "explain = true");
	is_int(c->listen[4].mode, 0640, "mode \"0640\"");
	is_int(c->listen[4].explain, 0, "explain = false on a unix socket");
	is_int(c->listen[5].explain, 1, "explain on by default on a unix socket");
	is_int(c->listen[6].explain, 1, "explain on by default on localhost");
	is_int(c->listen[0].nclients, 0, "no clients list: everybody");
	is_int(c->run_as_root, 1, "run_as_root = true");
	is_int(c->log_level, LOG_L_DEBUG, "log.level");
	config_unref(c);
	ok(listen_is_loopback("inet:127.3.4.5:1") && !listen_is_loopback("inet::1") &&
	    !listen_is_loopback("inet:[::]:1") && !listen_is_loopback("inet:192.0.2.1:1") &&
	    !listen_is_loopback("inet:[::ffff:10.0.0.1]:1"), "listen_is_loopback");
}

static const struct {
	const char *name, *text, *want;
} setting_errors[] = {
	{ "listen mode as an integer", "listen = ( { address = \"unix:/tmp/x.sock\";\n mode = 0660; } );\n",
	  "policyd.conf:2: listen entry 1: \"mode\" must be a string like \"0660\"" },
	{ "listen unknown key", "listen = ( { address = \"unix:/tmp/x.sock\";\n perms = \"0660\"; } );\n",
	  "policyd.conf:2: unknown setting \"perms\" in listen entry 1" },
	{ "listen mode not octal", "listen = ( { address = \"unix:/tmp/x.sock\"; mode = \"660x\"; } );\n",
	  "\"mode\": \"660x\" is not an octal mode" },
	{ "listen mode on inet", "listen = ( { address = \"inet:127.0.0.1:1\";\n owner = \"postfix\"; } );\n",
	  "policyd.conf:2: listen entry 1: mode, owner and group apply only to unix: listeners" },
	{ "clients on unix", "listen = ( { address = \"unix:/tmp/x.sock\";\n clients = [ \"::1\" ]; } );\n",
	  "policyd.conf:2: listen entry 1: \"clients\" applies only to inet: listeners" },
	{ "clients bad network", "listen = ( { address = \"inet:127.0.0.1:1\"; clients = [\n \"::1\", \"192.0.2.1/24\" ]; } );\n",
	  "policyd.conf:2: listen entry 1: clients: \"192.0.2.1/24\" is not" },
	{ "clients empty", "listen = ( { address = \"inet:127.0.0.1:1\"; clients = [ ]; } );\n",
	  "\"clients\" is empty" },
	{ "clients not strings", "listen = ( { address = \"inet:127.0.0.1:1\"; clients = ( 1 ); } );\n",
	  "clients entry 1 must be a string" },
	{ "explain not boolean", "listen = ( { address = \"inet:127.0.0.1:1\";\n explain = 1; } );\n",
	  "policyd.conf:2: listen entry 1: \"explain\" must be true or false, not an integer" },
	{ "listen entry neither", "listen = ( \"inet:127.0.0.1:1\",\n 2 );\n",
	  "policyd.conf:2: listen entry 2: expected an address string or a group" },
	{ "listen bad port", "listen = [ \"inet:127.0.0.1:99999\" ];\n", "with a port 1..65535" },
	{ "listen not a list", "listen = 10040;\n", "listen: expected an address string or a list" },
	{ "log.level as an integer", "log = {\n level = 3; };\n",
	  "policyd.conf:2: \"log.level\" must be a string" },
	{ "log.facility as an integer", "log = {\n facility = 2; };\n",
	  "policyd.conf:2: \"log.facility\" must be a string" },
	{ "run_as_root not boolean", "\nrun_as_root = \"yes\";\n",
	  "policyd.conf:2: \"run_as_root\" must be true or false, not a string" },
	{ "empty user", "\nuser = \"\";\n", "policyd.conf:2: \"user\" is empty" },
	{ "user not a string", "\nuser = 0;\n", "policyd.conf:2: user: expected a string, not an integer" },
	{ "relative pidfile", "\npidfile = \"policyd.pid\";\n", "policyd.conf:2: pidfile: expected an absolute path" },
	{ "hostname with a newline", "\nhostname = \"mx\\nX-Injected: 1\";\n", "policyd.conf:2: hostname: expected a host name" },
	{ "metrics.address not host:port", "metrics = {\n address = \"9110\"; };\n",
	  "policyd.conf:2: metrics.address: \"9110\": expected HOST:PORT" },
	{ "limits as a float", "limits = {\n idle_timeout = 2.5; };\n",
	  "policyd.conf:2: limits.idle_timeout: expected an integer, not a floating-point number" },
	{ "limits as a string", "limits = {\n max_line = \"4096\"; };\n",
	  "policyd.conf:2: limits.max_line: expected an integer, not a string" },
	{ "limits unknown key", "limits = {\n max_conections = 5; };\n",
	  "policyd.conf:2: unknown setting \"limits.max_conections\"" },
	{ "int64 out of range", "limits = {\n max_connections = 10000000000L; };\n",
	  "policyd.conf:2: limits.max_connections: 10000000000 is out of range" },
};

static void
test_setting_errors(void)
{
	for (size_t i = 0; i < sizeof(setting_errors) / sizeof(setting_errors[0]); i++)
		expect_refused(setting_errors[i].text, setting_errors[i].want,
		    setting_errors[i].name);
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
	test_listen_settings();
	test_setting_errors();
	{
		char	cmd[600];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0)
			printf("# cleanup failed\n");
	}
	return tap_done();
}

/* relocated_test.c - relocated: value parsing, the pure lookup, the check */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "check_relocated.h"
#include "rules.h"
#include "tap.h"

static char dir[] = "/tmp/policyd-relocated-test.XXXXXX";

#include "confload.h"

/* 2024-03-01 12:00:00 UTC, 2024-03-01 23:59:59 UTC, 2024-03-02 00:00:00 UTC */
#define T_NOON	1709294400LL
#define T_LAST	1709337599LL
#define T_NEXT	1709337600LL

static int eval_done_calls;

/* eval_done - completion callback of rules_eval */
static void
eval_done(struct eval *ev)
{
	(void)ev;
	eval_done_calls++;
}

/* ask - evaluate a request with the given attribute lines at time now */
static void
ask(struct config *c, const char *attrs, long long now, char *action,
    size_t alen)
{
	struct proto p;
	struct policy_req q;
	struct eval ev;
	char	buf[16384];
	size_t	used = 0;
	int	n;

	n = snprintf(buf, sizeof(buf), "request=smtpd_access_policy\n%s\n",
	    attrs);
	proto_init(&p, &c->limits);
	memset(&q, 0, sizeof(q));
	if (proto_parse(&p, buf, (size_t)n, &q, &used) != PROTO_OK) {
		snprintf(action, alen, "(parse error)");
		return;
	}
	memset(&ev, 0, sizeof(ev));
	ev.cfg = c;
	ev.req = &q;
	ev.now = (time_t)now;
	ev.done = eval_done;
	eval_done_calls = 0;
	rules_eval_init(&ev);
	rules_eval(&ev);
	snprintf(action, alen, "%s", eval_done_calls == 1 ? ev.action :
	    "(done not called once)");
	rules_eval_free(&ev);
	proto_req_free(&q);
}

static const struct {
	const char *value;
	int	rc;
	const char *newaddr;
	long long end;
	const char *err;
} parse_tab[] = {
	{ "new@example.org", 0, "new@example.org", 0, NULL },
	{ "  new@example.org  ", 0, "new@example.org", 0, NULL },
	{ "@new.example", 0, "@new.example", 0, NULL },
	{ "new@example.org 2024-03-01", 0, "new@example.org", T_NEXT, NULL },
	{ "new@example.org\t1970-01-01", 0, "new@example.org", 86400, NULL },
	{ "new@example.org 2024-02-29", 0, "new@example.org", T_NEXT - 86400, NULL },
	{ "new@example.org 2023-02-29", -1, NULL, 0, "bad end date \"2023-02-29\"" },
	{ "new@example.org 2000-02-29", 0, "new@example.org", 951868800, NULL },
	{ "new@example.org 1900-01-01", -1, NULL, 0, "bad end date" },
	{ "new@example.org 2024-13-01", -1, NULL, 0, "bad end date" },
	{ "new@example.org 2024-04-31", -1, NULL, 0, "bad end date" },
	{ "new@example.org 2024-4-1", -1, NULL, 0, "bad end date" },
	{ "new@example.org 20240401", -1, NULL, 0, "bad end date" },
	{ "new@example.org tomorrow", -1, NULL, 0, "bad end date \"tomorrow\"" },
	{ "new@example.org 2024-03-01 extra", -1, NULL, 0, "too many fields" },
	{ "", -1, NULL, 0, "missing new address" },
	{ "newaddress", -1, NULL, 0, "is not user@domain or @domain" },
	{ "new@", -1, NULL, 0, "is not user@domain or @domain" },
	{ "<new@example.org>", -1, NULL, 0, "is not user@domain" },
	{ "new@example.org,", 0, "new@example.org,", 0, NULL },
};

static void
test_parse(void)
{
	char	na[600], err[200], name[200];
	long long end;

	for (size_t i = 0; i < sizeof(parse_tab) / sizeof(parse_tab[0]); i++) {
		int	rc;

		err[0] = '\0';
		rc = relocated_parse(parse_tab[i].value, na, sizeof(na), &end,
		    err, sizeof(err));
		snprintf(name, sizeof(name), "parse \"%s\"", parse_tab[i].value);
		is_int(rc, parse_tab[i].rc, name);
		if (rc == 0) {
			is_str(na, parse_tab[i].newaddr, "  new address");
			is_int(end, parse_tab[i].end, "  end");
		} else if (!ok(strstr(err, parse_tab[i].err) != NULL, "  error")) {
			printf("#   '%s' lacks '%s'\n", err, parse_tab[i].err);
		}
	}
	{
		char	big[700];

		memset(big, 'a', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		big[300] = '@';
		ok(relocated_parse(big, na, sizeof(na), &end, err,
		    sizeof(err)) < 0 && strstr(err, "longer than") != NULL,
		    "a 700-byte new address is refused");
	}
}

static const struct {
	const char *rcpt;
	long long now;
	enum reloc_result want;
	const char *newaddr;
	const char *why;
} lookup_tab[] = {
	{ "moved@example.net", T_NOON, RELOC_MOVED, "new@example.org", "entry moved@example.net" },
	{ "Moved@Example.NET", T_NOON, RELOC_MOVED, "new@example.org", "entry moved@example.net" },
	{ "moved+tag@example.net", T_NOON, RELOC_MOVED, "new@example.org", "entry moved@example.net" },
	{ "special+tag@example.net", T_NOON, RELOC_MOVED, "tagged@example.org", "entry special+tag@example.net" },
	{ "special@example.net", T_NOON, RELOC_NONE, "", "no entry" },
	{ "stay@example.net", T_NOON, RELOC_NONE, "", "no entry" },
	/* @domain keeps the local part as written */
	{ "user@old.example", T_NOON, RELOC_MOVED, "user@new.example", "entry @old.example" },
	{ "John.Doe+x@OLD.example", T_NOON, RELOC_MOVED, "John.Doe+x@new.example", "entry @old.example" },
	{ "boss@old.example", T_NOON, RELOC_MOVED, "ceo@new.example", "entry boss@old.example" },
	{ "x@sub.old.example", T_NOON, RELOC_NONE, "", "no entry" },
	/* @domain to one address */
	{ "anyone@gone.example", T_NOON, RELOC_MOVED, "info@example.org", "entry @gone.example" },
	/* end dates: the entry holds through its last day (UTC) */
	{ "temp@example.net", T_NOON, RELOC_MOVED, "t@example.org", "entry temp@example.net" },
	{ "temp@example.net", T_LAST, RELOC_MOVED, "t@example.org",
	  "entry temp@example.net -> t@example.org 2024-03-01" },
	{ "temp@example.net", T_NEXT, RELOC_EXPIRED, "t@example.org", "has expired" },
	{ "x@dated.example", T_NEXT + 86400 * 365, RELOC_EXPIRED, "x@new.example", "has expired" },
	/* bad inputs */
	{ "", T_NOON, RELOC_NONE, "", "" },
	{ "moved", T_NOON, RELOC_NONE, "", "no entry" },
	{ "@old.example", T_NOON, RELOC_MOVED, "@new.example", "entry @old.example" },
	{ "a@b@old.example", T_NOON, RELOC_MOVED, "a@b@new.example", "entry @old.example" },
	{ "broken@example.net", T_NOON, RELOC_BAD, "", "entry broken@example.net: bad end date" },
};

static void
test_lookup(void)
{
	struct map *m = map_new();
	char	na[1600], why[256], name[300];

	map_put(m, "moved@example.net", "new@example.org");
	map_put(m, "special+tag@example.net", "tagged@example.org");
	map_put(m, "@old.example", "@new.example");
	map_put(m, "boss@old.example", "ceo@new.example");
	map_put(m, "@gone.example", "info@example.org");
	map_put(m, "temp@example.net", "t@example.org 2024-03-01");
	map_put(m, "@dated.example", "@new.example 2024-03-01");
	map_put(m, "broken@example.net", "x@example.org 2024-02-30");
	for (size_t i = 0; i < sizeof(lookup_tab) / sizeof(lookup_tab[0]); i++) {
		enum reloc_result r = relocated_lookup(m, lookup_tab[i].rcpt,
		    lookup_tab[i].now, na, sizeof(na), why, sizeof(why));

		snprintf(name, sizeof(name), "<%s> at %lld", lookup_tab[i].rcpt,
		    lookup_tab[i].now);
		is_int(r, lookup_tab[i].want, name);
		is_str(na, lookup_tab[i].newaddr, "  new address");
		/* an empty row means: no explanation at all */
		if (lookup_tab[i].why[0] == '\0')
			is_str(why, "", "  no why");
		else if (!ok(strstr(why, lookup_tab[i].why) != NULL, "  why"))
			printf("#   '%s' lacks '%s'\n", why, lookup_tab[i].why);
	}
	{
		char	big[9000];

		memset(big, 'a', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		memcpy(big + sizeof(big) - 13, "@old.example", 12);
		is_int(relocated_lookup(m, big, T_NOON, na, sizeof(na), why,
		    sizeof(why)), RELOC_MOVED, "8 KB local part: @domain entry applies");
		ok(strstr(why, "entry @old.example") != NULL, "  why names the @domain entry");
		ok(strncmp(na, "aaaa", 4) == 0 && strlen(na) == sizeof(na) - 1,
		    "  new address keeps the local part, cut to the buffer");
		memcpy(big + sizeof(big) - 13, "@stay.exampl", 12);
		is_int(relocated_lookup(m, big, T_NOON, na, sizeof(na), why,
		    sizeof(why)), RELOC_NONE, "8 KB local part elsewhere: not moved");
		big[1030] = '\0';
		memcpy(big + 1030 - 12, "@old.example", 12);
		is_int(relocated_lookup(m, big, T_NOON, na, sizeof(na), why,
		    sizeof(why)), RELOC_MOVED, "1,030-byte recipient at @old.example: moved");
		is_int(relocated_lookup(m, "user@old.example", T_NOON, na, 10,
		    NULL, 0), RELOC_MOVED, "small buffer, NULL why");
		is_str(na, "user@new.", "  new address cut to the buffer");
		is_int(relocated_lookup(NULL, "user@old.example", T_NOON, na,
		    sizeof(na), why, sizeof(why)), RELOC_NONE, "no map");
	}
	map_free(m);
}

static void
test_check(void)
{
	char	errs[4096], act[1024];
	struct config *c;

	write_file("relocated.map",
	    "# old  new  [last day]\n"
	    "moved@example.net     new@example.org\n"
	    "@old.example          @new.example\n"
	    "temp@example.net      t@example.org 2024-03-01\n"
	    "long@example.net\n"
	    "  wrapped@example.org\n");
	c = load("rules = (\n"
	    "  { name = \"rel\"; check = \"relocated\"; map = \"relocated.map\"; },\n"
	    "  { name = \"rest\"; action = \"OK\"; }\n);\n", errs, sizeof(errs));
	ok(c != NULL, "relocated rule loads");
	if (c == NULL) {
		printf("# %s", errs);
		return;
	}
	ok(c->rules[0].check == &check_relocated_ops, "check bound");
	ask(c, "protocol_state=RCPT\nrecipient=moved@example.net\n", T_NOON, act,
	    sizeof(act));
	is_str(act, "551 5.1.6 User has moved; please try <new@example.org>",
	    "moved: 551 5.1.6");
	ask(c, "protocol_state=RCPT\nrecipient=Jane@Old.Example\n", T_NOON, act,
	    sizeof(act));
	is_str(act, "551 5.1.6 User has moved; please try <Jane@new.example>",
	    "domain entry keeps the local part");
	ask(c, "protocol_state=RCPT\nrecipient=long@example.net\n", T_NOON, act,
	    sizeof(act));
	is_str(act, "551 5.1.6 User has moved; please try <wrapped@example.org>",
	    "continuation line");
	ask(c, "protocol_state=RCPT\nrecipient=temp@example.net\n", T_LAST, act,
	    sizeof(act));
	is_str(act, "551 5.1.6 User has moved; please try <t@example.org>",
	    "dated entry before its end");
	ask(c, "protocol_state=RCPT\nrecipient=temp@example.net\n", T_NEXT, act,
	    sizeof(act));
	is_str(act, "OK", "expired entry: DUNNO, evaluation goes on");
	ask(c, "protocol_state=RCPT\nrecipient=someone@example.net\n", T_NOON,
	    act, sizeof(act));
	is_str(act, "OK", "no entry");
	ask(c, "protocol_state=RCPT\n", T_NOON, act, sizeof(act));
	is_str(act, "OK", "no recipient attribute");
	ask(c, "protocol_state=RCPT\nrecipient=a\001b@old.example\n", T_NOON,
	    act, sizeof(act));
	is_str(act, "551 5.1.6 User has moved; please try <a?b@new.example>",
	    "control characters in the kept local part are replaced");
	config_unref(c);

	c = load("rules = (\n"
	    "  { name = \"rel\"; check = \"relocated\"; map = [ \"relocated.map\" ];\n"
	    "    strict = true; expired_action = \"550 5.1.1 <%a> is gone\"; }\n"
	    ");\n", errs, sizeof(errs));
	ok(c != NULL, "strict, expired_action load");
	if (c == NULL) {
		printf("# %s", errs);
		return;
	}
	ask(c, "protocol_state=RCPT\nrecipient=moved@example.net\n", T_NOON, act,
	    sizeof(act));
	is_str(act, "550 5.1.6 User has moved; please try <new@example.org>",
	    "strict: 550 5.1.6");
	ask(c, "protocol_state=RCPT\nrecipient=temp@example.net\n", T_NEXT, act,
	    sizeof(act));
	is_str(act, "550 5.1.1 <t@example.org> is gone", "expired_action");
	config_unref(c);

	c = load("rules = (\n"
	    "  { name = \"rel\"; check = \"relocated\"; map = \"relocated.map\";\n"
	    "    reply = \"REJECT 5.1.6 gone, write to %a instead (100%%)\"; }\n"
	    ");\n", errs, sizeof(errs));
	ok(c != NULL, "reply loads");
	if (c == NULL) {
		printf("# %s", errs);
		return;
	}
	ask(c, "protocol_state=RCPT\nrecipient=moved+x@example.net\n", T_NOON,
	    act, sizeof(act));
	is_str(act, "REJECT 5.1.6 gone, write to new@example.org instead (100%)",
	    "reply template, +extension stripped for the lookup");
	config_unref(c);
}

static const struct {
	const char *name, *opts, *map, *want;
} errors[] = {
	{ "missing value", "map = \"bad.map\";", "a@example.net b@example.net\n"
	  "lonely@example.net\n", "bad.map:2: missing value for key \"lonely@example.net\"" },
	{ "bad date", "map = \"bad.map\";", "# c\n\na@example.net b@example.net\n"
	  "c@example.net d@example.net 2024-02-30\n",
	  "bad.map:4: relocated: bad end date \"2024-02-30\" (want YYYY-MM-DD)" },
	{ "bad date after continuation", "map = \"bad.map\";", "a@example.net\n"
	  "  b@example.net\nc@example.net d@example.net soon\n",
	  "bad.map:3: relocated: bad end date \"soon\"" },
	{ "bad key", "map = \"bad.map\";", "a@example.net b@example.net\n"
	  "olddomain.example @new.example\n",
	  "bad.map:2: relocated: key \"olddomain.example\" is not user@domain or @domain" },
	{ "bad new address", "map = \"bad.map\";", "a@example.net newaddress\n",
	  "bad.map:1: relocated: new address \"newaddress\" is not user@domain" },
	{ "too many fields", "map = \"bad.map\";", "a@example.net b@example.net 2024-01-01 x\n",
	  "bad.map:1: relocated: too many fields" },
	{ "missing map option", "strict = true;", NULL,
	  "policyd.conf:2: relocated: needs map = \"FILE\"" },
	{ "missing map file", "map = \"nonexistent.map\";", NULL,
	  "nonexistent.map: No such file or directory" },
	{ "strict and reply", "map = \"ok.map\";\n strict = true; reply = \"551 x\";",
	  NULL, "policyd.conf:3: relocated: give reply or strict = true, not both" },
	{ "strict not a bool", "map = \"ok.map\";\n strict = 1;", NULL,
	  "policyd.conf:3: strict: expected true or false" },
	{ "bad reply", "map = \"ok.map\";\n reply = \"651 moved\";", NULL,
	  "policyd.conf:3: reply: invalid action \"651 moved\"" },
	{ "bad expired_action", "map = \"ok.map\";\n expired_action = \"GONE\";", NULL,
	  "policyd.conf:3: expired_action: invalid action" },
	{ "unknown option", "map = \"ok.map\";\n strikt = true;", NULL,
	  "policyd.conf:3: rule \"rel\": unknown setting \"strikt\"" },
};

static void
test_errors(void)
{
	char	errs[4096], conf[1024];
	struct config *c;

	write_file("ok.map", "a@example.net b@example.net\n");
	for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++) {
		if (errors[i].map)
			write_file("bad.map", errors[i].map);
		snprintf(conf, sizeof(conf), "rules = (\n  { name = \"rel\"; check "
		    "= \"relocated\"; %s } );\n", errors[i].opts);
		expect_refused(conf, errors[i].want, errors[i].name);
	}
	c = load("rules = (\n  { name = \"rel\"; check = \"relocated\"; map = "
	    "\"ok.map\";\n    match = { protocol_state = \"END-OF-MESSAGE\"; }; } );\n",
	    errs, sizeof(errs));
	ok(c == NULL && strstr(errs, "check relocated cannot work at every "
	    "protocol_state") != NULL, "END-OF-MESSAGE refused");
	if (c)
		config_unref(c);
}

int
main(void)
{
	char	cmd[600];

	if (mkdtemp(dir) == NULL)
		return 1;
	log_init("relocated_test", 1, 0);
	test_parse();
	test_lookup();
	test_check();
	test_errors();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		printf("# cleanup failed\n");
	return tap_done();
}

/* sender_test.c - sender_login: the pure decision, templates, the check */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "check_sender.h"
#include "check_util.h"
#include "rules.h"
#include "store.h"
#include "tap.h"

static char dir[] = "/tmp/policyd-sender-test.XXXXXX";

#include "confload.h"

static int eval_done_calls;

/* eval_done - completion callback of rules_eval */
static void
eval_done(struct eval *ev)
{
	(void)ev;
	eval_done_calls++;
}

/*
 * ask - evaluate one request (attribute lines without the final empty
 * line) against c; the answer goes to action, the detail to detail.
 */
static void
ask(struct config *c, const char *attrs, char *action, size_t alen,
    char *detail, size_t dlen)
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
	ev.now = 1700000000;
	ev.done = eval_done;
	eval_done_calls = 0;
	rules_eval_init(&ev);
	rules_eval(&ev);
	snprintf(action, alen, "%s", eval_done_calls == 1 ? ev.action :
	    "(done not called once)");
	if (detail != NULL)
		snprintf(detail, dlen, "%s", ev.detail);
	rules_eval_free(&ev);
	proto_req_free(&q);
}

#define B	SENDER_BUILTIN
#define D	SENDER_SAME_DOMAIN
#define N	SENDER_NULL_OK

static const struct {
	const char *login, *sender;
	unsigned flags;
	int	map;
	enum sender_result want;
	const char *why;		/* substring of the explanation ("": none) */
} owned_tab[] = {
	/* built-in: login equals sender, ignoring case and +extension */
	{ "alice@example.net", "alice@example.net", B, 0, SENDER_OWNED, "login is the sender" },
	{ "alice@example.net", "Alice+x@Example.NET", B, 0, SENDER_OWNED, "login is the sender" },
	{ "ALICE@EXAMPLE.NET", "alice@example.net", B, 0, SENDER_OWNED, "login is the sender" },
	{ "alice@example.net", "alice@example.net", 0, 0, SENDER_NOT_OWNED, "no map entry" },
	{ "alice@example.net", "bob@example.net", B, 0, SENDER_NOT_OWNED, "no map entry" },
	{ "alice@example.net", "alice@example.org", B, 0, SENDER_NOT_OWNED, "no map entry" },
	{ "alice@example.net", "alicex@example.net", B, 0, SENDER_NOT_OWNED,
	  "no map entry for the sender; built-in rules do not apply" },
	{ "alice", "alice@example.net", B, 0, SENDER_NOT_OWNED,
	  "no map entry for the sender; built-in rules do not apply" },
	{ "alice", "alice", B, 0, SENDER_OWNED, "login is the sender" },
	{ "a+b@example.net", "a+b@example.net", B, 0, SENDER_OWNED, "login is the sender" },
	/* same_domain */
	{ "alice@example.net", "carol@example.net", B | D, 0, SENDER_OWNED, "same_domain" },
	{ "alice@example.net", "carol@EXAMPLE.net", B | D, 0, SENDER_OWNED, "same_domain" },
	{ "alice@example.net", "carol@sub.example.net", B | D, 0, SENDER_NOT_OWNED,
	  "no map entry for the sender; built-in rules do not apply" },
	{ "alice", "carol@example.net", B | D, 0, SENDER_NOT_OWNED,
	  "no map entry for the sender; built-in rules do not apply" },
	{ "alice@", "carol@", B | D, 0, SENDER_NOT_OWNED,
	  "no map entry for the sender; built-in rules do not apply" },
	{ "alice@example.net", "carol@example.net", B, 0, SENDER_NOT_OWNED,
	  "no map entry for the sender; built-in rules do not apply" },
	/* the map */
	{ "alice@example.net", "sales@example.net", B, 1, SENDER_OWNED, "map entry sales@example.net lists login alice@example.net" },
	{ "Alice@Example.Net", "SALES@example.net", 0, 1, SENDER_OWNED, "map entry sales@example.net" },
	{ "alice@example.net", "sales+q4@example.net", 0, 1, SENDER_OWNED, "map entry sales@example.net" },
	{ "carol@example.net", "sales@example.net", 0, 1, SENDER_OWNED, "map entry sales@example.net lists login carol@example.net" },
	{ "dave@example.net", "sales@example.net", B, 1, SENDER_NOT_OWNED, "map entry sales@example.net does not list login dave@example.net" },
	{ "alice@example.net", "bob@example.net", B, 1, SENDER_NOT_OWNED, "map entry bob@example.net does not list" },
	{ "bob@example.net", "bob@example.net", 0, 1, SENDER_OWNED, "map entry bob@example.net" },
	{ "postmaster@example.net", "anyone@example.org", 0, 1, SENDER_OWNED, "map entry @example.org" },
	{ "alice@example.net", "anyone@example.org", B, 1, SENDER_NOT_OWNED, "map entry @example.org does not list" },
	/* the exact entry is more specific than @domain */
	{ "postmaster@example.net", "ceo@example.org", 0, 1, SENDER_NOT_OWNED, "map entry ceo@example.org" },
	{ "ceo@example.org", "ceo@example.org", 0, 1, SENDER_OWNED, "map entry ceo@example.org" },
	/* an address entry is authoritative against same_domain */
	{ "alice@example.net", "bob@example.net", B | D, 1, SENDER_NOT_OWNED, "same_domain does not apply" },
	{ "alice@example.net", "carol@example.net", B | D, 1, SENDER_OWNED, "same_domain" },
	/* an extension in the map key is exact */
	{ "eve@example.net", "bob+eve@example.net", 0, 1, SENDER_OWNED, "map entry bob+eve@example.net" },
	{ "eve@example.net", "bob@example.net", 0, 1, SENDER_NOT_OWNED,
	  "map entry bob@example.net does not list login eve@example.net" },
	/* the null sender */
	{ "alice@example.net", "", B | N, 1, SENDER_OWNED, "null sender allowed" },
	{ "alice@example.net", "", B, 1, SENDER_NOT_OWNED, "null_sender = reject" },
	/* bad inputs */
	{ "", "alice@example.net", B, 1, SENDER_NOT_OWNED, "no login" },
	{ "alice@example.net", "bob", B, 1, SENDER_NOT_OWNED, "no map entry" },
	{ "alice@example.net", "@example.net", B | D, 0, SENDER_OWNED, "same_domain" },
	{ "alice@example.net", "alice@example.net@evil.test", B, 0, SENDER_NOT_OWNED,
	  "no map entry for the sender; built-in rules do not apply" },
};

static void
test_sender_owned(void)
{
	struct map *m = map_new();
	char	why[256], name[300];

	map_put(m, "sales@example.net", "alice@example.net, carol@example.net");
	map_put(m, "bob@example.net", "bob@example.net");
	map_put(m, "@example.org", "postmaster@example.net admin@example.net");
	map_put(m, "ceo@example.org", "ceo@example.org");
	map_put(m, "bob+eve@example.net", "eve@example.net");
	for (size_t i = 0; i < sizeof(owned_tab) / sizeof(owned_tab[0]); i++) {
		enum sender_result r = sender_owned(owned_tab[i].login,
		    owned_tab[i].sender, owned_tab[i].map ? m : NULL,
		    owned_tab[i].flags, why, sizeof(why));

		snprintf(name, sizeof(name), "%s as <%s> (flags %u%s): %s",
		    owned_tab[i].login, owned_tab[i].sender, owned_tab[i].flags,
		    owned_tab[i].map ? ", map" : "", owned_tab[i].want ==
		    SENDER_OWNED ? "owned" : "not owned");
		is_int(r, owned_tab[i].want, name);
		/* an empty row means: no explanation at all */
		if (owned_tab[i].why[0] == '\0')
			is_str(why, "", "  no why");
		else if (!ok(strstr(why, owned_tab[i].why) != NULL, "  why"))
			printf("#   why '%s' lacks '%s'\n", why, owned_tab[i].why);
	}
	/* long inputs */
	{
		char	big[2100];

		memset(big, 'a', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		big[1500] = '@';
		is_int(sender_owned("alice@example.net", big, m, B | D, why,
		    sizeof(why)), SENDER_NOT_OWNED, "2 KB sender: not owned");
		ok(strstr(why, "no map entry") != NULL, "  why: no map entry");
		/* a long local part still meets the @domain entry */
		memcpy(big + 1500, "@example.org", 13);
		is_int(sender_owned("admin@example.net", big, m, B, why,
		    sizeof(why)), SENDER_OWNED, "1,500-byte local part: @example.org entry lists admin");
		ok(strstr(why, "@example.org") != NULL, "  why names the @domain entry");
		is_int(sender_owned("alice@example.net", big, m, B | D, why,
		    sizeof(why)), SENDER_NOT_OWNED, "  and not alice");
		memcpy(big + 1500, "@example.net", 13);
		is_int(sender_owned("alice@example.net", big, m, B | D, why,
		    sizeof(why)), SENDER_OWNED, "1,500-byte local part in the login's domain: same_domain");
		is_int(sender_owned("alice@example.net", big, m, B, why,
		    sizeof(why)), SENDER_NOT_OWNED, "  not without same_domain");
		big[1500] = '@';
		memset(big + 1501, 'a', sizeof(big) - 1502);
		is_int(sender_owned(big, big, m, B, why, sizeof(why)),
		    SENDER_NOT_OWNED, "2 KB login: not owned");
		is_int(sender_owned("alice@example.net", "bob@example.net", m,
		    B, NULL, 0), SENDER_NOT_OWNED, "why may be NULL");
	}
	map_free(m);
}

static void
test_expand(void)
{
	const char *vals[2] = { "alice@example.net", "bob@example.net" };
	const char *bad[2] = { "a\nb\r\x01" "c\x7f", "%l%s" };
	char	buf[1024], big[1000];
	size_t	n;

	check_expand(buf, sizeof(buf), "REJECT not owned by user %l", "ls", vals);
	is_str(buf, "REJECT not owned by user alice@example.net", "%l");
	check_expand(buf, sizeof(buf), "x %s y %l z", "ls", vals);
	is_str(buf, "x bob@example.net y alice@example.net z", "%s and %l");
	check_expand(buf, sizeof(buf), "100%% %d %a %", "ls", vals);
	is_str(buf, "100% %d %a %", "%% and unknown codes stay");
	check_expand(buf, sizeof(buf), "[%l] [%s]", "ls", bad);
	is_str(buf, "[a?b??c?] [%l%s]", "control chars replaced, values not re-expanded");
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	vals[0] = big;
	n = check_expand(buf, sizeof(buf), "<%l>", "l", vals);
	is_int(n, 402, "a value is cut at 400 bytes");
	n = check_expand(buf, 10, "<%l>", "l", vals);
	is_int(n, 9, "output cut to the buffer");
	is_int(buf[9], 0, "  and terminated");
	/* a cut does not split a UTF-8 sequence */
	memset(big, 'x', sizeof(big) - 1);
	memcpy(big + 399, "\xc3\xa9", 2);
	n = check_expand(buf, sizeof(buf), "%l", "l", vals);
	is_int(n, 399, "cut before a two-byte character");
	vals[0] = NULL;
	check_expand(buf, sizeof(buf), "<%l>", "l", vals);
	is_str(buf, "<>", "NULL value is empty");
}

static const char *conf_head =
    "rules = (\n"
    "  { name = \"sl\"; match = { protocol_state = [ \"MAIL\", \"RCPT\", "
    "\"END-OF-MESSAGE\" ]; };\n"
    "    check = \"sender_login\"; map = \"sender_login.map\";\n";

/* a last rule that says OK wherever the sender_login rule can run */
#define REST	"  { name = \"rest\"; action = \"OK\"; match = { protocol_state = " \
		"[ \"MAIL\", \"RCPT\", \"END-OF-MESSAGE\" ]; }; }\n);\n"

/* check_script_error: which answers of a script a check can use */
static void
test_script_error(void)
{
	struct store_reply r;
	char	buf[128];

	memset(&r, 0, sizeof(r));
	r.ok = 1;
	r.n = 1;
	r.v[0] = 0;
	ok(check_script_error(&r, "greylist", buf, sizeof(buf)) == NULL,
	    "script error: 0 is an answer");
	r.v[0] = 1LL << 46;
	ok(check_script_error(&r, "greylist", buf, sizeof(buf)) == NULL,
	    "script error: a large answer");
	r.v[0] = -1;
	is_str(check_script_error(&r, "greylist", buf, sizeof(buf)),
	    "greylist script failed on this key (the Redis log says why)",
	    "script error: -1, this call failed alone");
	r.v[0] = -2;
	is_str(check_script_error(&r, "ratelimit", buf, sizeof(buf)),
	    "unexpected reply from ratelimit script", "script error: -2");
	r.v[0] = 5;
	r.n = 2;
	is_str(check_script_error(&r, "ratelimit", buf, sizeof(buf)),
	    "unexpected reply from ratelimit script", "script error: two values");
	r.n = 0;
	is_str(check_script_error(&r, "ratelimit", buf, sizeof(buf)),
	    "unexpected reply from ratelimit script", "script error: none");
	r.ok = 0;
	r.err = "timeout";
	is_str(check_script_error(&r, "ratelimit", buf, sizeof(buf)), "timeout",
	    "script error: the state layer's error");
}

static void
test_check(void)
{
	char	errs[4096], act[1024], det[256], conf[2048];
	struct config *c;

	write_file("sender_login.map",
	    "# sender  logins\n"
	    "sales@example.net   alice@example.net,\n"
	    "    carol@example.net\n"
	    "bob@example.net     bob@example.net\n");
	snprintf(conf, sizeof(conf), "%s"
	    "    protect_domains = [ \"example.net\", \".example.com\" ]; },\n"
	    REST, conf_head);
	c = load(conf, errs, sizeof(errs));
	ok(c != NULL, "sender_login rule loads");
	if (c == NULL) {
		printf("# %s", errs);
		return;
	}
	ok(c->rules[0].check == &check_sender_login_ops, "check bound");
	ask(c, "protocol_state=RCPT\nsasl_username=alice@example.net\n"
	    "sender=bob@example.net\n", act, sizeof(act), det, sizeof(det));
	is_str(act, "REJECT 5.7.1 Sender address rejected: not owned by user "
	    "alice@example.net", "alice as bob: rejected");
	ok(strstr(det, "map entry bob@example.net does not list") != NULL,
	    "  detail names the map entry");
	ask(c, "protocol_state=RCPT\nsasl_username=alice@example.net\n"
	    "sender=sales@example.net\n", act, sizeof(act), det, sizeof(det));
	is_str(act, "OK", "alice as sales (continuation line): passes on");
	ask(c, "protocol_state=MAIL\nsasl_username=carol@example.net\n"
	    "sender=Sales+x@Example.NET\n", act, sizeof(act), NULL, 0);
	is_str(act, "OK", "carol as Sales+x at MAIL: passes on");
	ask(c, "protocol_state=END-OF-MESSAGE\nsasl_username=alice@example.net\n"
	    "sender=Alice@Example.NET\n", act, sizeof(act), NULL, 0);
	is_str(act, "OK", "alice as herself at END-OF-MESSAGE");
	ask(c, "protocol_state=RCPT\nsasl_username=alice@example.net\n"
	    "sender=\n", act, sizeof(act), NULL, 0);
	is_str(act, "OK", "null sender allowed by default");
	ask(c, "protocol_state=RCPT\nsasl_username=\nsender=bob@example.net\n",
	    act, sizeof(act), det, sizeof(det));
	is_str(act, "REJECT 5.7.1 Sender address rejected: authentication "
	    "required for <bob@example.net>", "unauthenticated, protected domain");
	ask(c, "protocol_state=RCPT\nsender=x@mail.example.com\n", act,
	    sizeof(act), NULL, 0);
	is_str(act, "REJECT 5.7.1 Sender address rejected: authentication "
	    "required for <x@mail.example.com>", "protected .parent domain");
	ask(c, "protocol_state=RCPT\nsender=x@example.com\n", act, sizeof(act),
	    NULL, 0);
	is_str(act, "OK", ".example.com does not protect example.com itself");
	ask(c, "protocol_state=RCPT\nsender=x@example.org\n", act, sizeof(act),
	    NULL, 0);
	is_str(act, "OK", "unauthenticated, other domain: not our business");
	ask(c, "protocol_state=RCPT\nsasl_username=alice@example.net\n", act,
	    sizeof(act), det, sizeof(det));
	is_str(act, "OK", "no sender attribute: no match");
	config_unref(c);

	/* options */
	snprintf(conf, sizeof(conf), "%s"
	    "    builtin = false; null_sender = \"reject\";\n"
	    "    reply = \"550 5.7.1 %%s is not yours, %%l (100%%%%)\"; },\n"
	    REST, conf_head);
	c = load(conf, errs, sizeof(errs));
	ok(c != NULL, "builtin = false, null_sender, reply load");
	if (c == NULL) {
		printf("# %s", errs);
		return;
	}
	ask(c, "protocol_state=RCPT\nsasl_username=alice@example.net\n"
	    "sender=alice@example.net\n", act, sizeof(act), det, sizeof(det));
	is_str(act, "550 5.7.1 alice@example.net is not yours, alice@example.net "
	    "(100%)", "builtin = false: even her own address needs the map");
	ask(c, "protocol_state=RCPT\nsasl_username=bob@example.net\nsender=\n",
	    act, sizeof(act), NULL, 0);
	is_str(act, "550 5.7.1  is not yours, bob@example.net (100%)",
	    "null_sender = reject");
	ask(c, "protocol_state=RCPT\nsasl_username=bob@example.net\n"
	    "sender=a\001b\033@example.org\n", act, sizeof(act), NULL, 0);
	is_str(act, "550 5.7.1 a?b?@example.org is not yours, bob@example.net "
	    "(100%)", "control characters of the sender are replaced");
	ask(c, "protocol_state=RCPT\nsasl_username=bob@example.net\n"
	    "sender=bob@example.net\n", act, sizeof(act), NULL, 0);
	is_str(act, "OK", "the map still allows");
	config_unref(c);

	snprintf(conf, sizeof(conf), "%s"
	    "    same_domain = true; unauth_reply = \"DEFER 4.7.1 log in\";\n"
	    "    protect_domains = [ \"example.net\", \"file:protected\" ]; },\n"
	    REST, conf_head);
	write_file("protected", "# one domain per line\nexample.info\n");
	c = load(conf, errs, sizeof(errs));
	ok(c != NULL, "same_domain, unauth_reply load");
	if (c == NULL) {
		printf("# %s", errs);
		return;
	}
	ask(c, "protocol_state=RCPT\nsasl_username=alice@example.net\n"
	    "sender=zed@example.net\n", act, sizeof(act), NULL, 0);
	is_str(act, "OK", "same_domain: alice as zed@example.net");
	ask(c, "protocol_state=RCPT\nsasl_username=alice@example.net\n"
	    "sender=bob@example.net\n", act, sizeof(act), NULL, 0);
	ok(strncmp(act, "REJECT 5.7.1", 12) == 0, "same_domain: bob's map entry "
	    "still protects bob");
	ask(c, "protocol_state=RCPT\nsender=zed@EXAMPLE.NET\n", act, sizeof(act),
	    NULL, 0);
	is_str(act, "DEFER 4.7.1 log in", "unauth_reply");
	ask(c, "protocol_state=RCPT\nsender=x@example.info\n", act, sizeof(act),
	    NULL, 0);
	is_str(act, "DEFER 4.7.1 log in", "protect_domains from file:NAME");
	config_unref(c);
}

static const struct {
	const char *name, *opts, *map, *want;
} errors[] = {
	{ "map syntax", "map = \"bad.map\";", "a@example.net b@example.net\n"
	  "lonely@example.net\n", "bad.map:2: missing value for key \"lonely@example.net\"" },
	{ "continuation first", "map = \"bad.map\";", "  x y\n",
	  "bad.map:1: continuation line without a preceding entry" },
	{ "missing map", "map = \"nonexistent.map\";", NULL,
	  "nonexistent.map: No such file or directory" },
	{ "builtin = false without map", "builtin = false;", NULL,
	  "policyd.conf:2: sender_login: builtin = false needs a map" },
	{ "same_domain without builtin", "builtin = false; same_domain = true; map = \"ok.map\";",
	  NULL, "same_domain = true needs builtin = true" },
	{ "builtin not a bool", "\n builtin = \"yes\";", NULL,
	  "policyd.conf:3: builtin: expected true or false" },
	{ "bad null_sender", "\n null_sender = \"maybe\";", NULL,
	  "policyd.conf:3: null_sender: expected \"allow\" or \"reject\"" },
	{ "bad reply", "\n reply = \"ACCEPT %l\";", NULL,
	  "policyd.conf:3: reply: invalid action \"ACCEPT %l\"" },
	{ "bad unauth_reply code", "\n unauth_reply = \"650 no\";", NULL,
	  "policyd.conf:3: unauth_reply: invalid action" },
	{ "bad protect_domains", "\n protect_domains = 5;", NULL,
	  "policyd.conf:3: protect_domains: expected a string or a list" },
	{ "unknown option", "\n samedomain = true;", NULL,
	  "policyd.conf:3: rule \"sl\": unknown setting \"samedomain\"" },
};

static void
test_errors(void)
{
	char	errs[4096], conf[1024];
	struct config *c;

	write_file("ok.map", "a@example.net a@example.net\n");
	for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++) {
		if (errors[i].map)
			write_file("bad.map", errors[i].map);
		snprintf(conf, sizeof(conf), "rules = (\n  { name = \"sl\"; check = "
		    "\"sender_login\"; %s } );\n", errors[i].opts);
		expect_refused(conf, errors[i].want, errors[i].name);
	}
	c = load("rules = (\n  { name = \"sl\"; check = \"sender_login\";\n"
	    "    match = { protocol_state = [ \"RCPT\", \"CONNECT\" ]; }; } );\n",
	    errs, sizeof(errs));
	ok(c == NULL && strstr(errs, "check sender_login cannot work at every "
	    "protocol_state") != NULL, "CONNECT (no sender yet) refused");
	if (c)
		config_unref(c);
}

int
main(void)
{
	char	cmd[600];

	if (mkdtemp(dir) == NULL)
		return 1;
	log_init("sender_test", 1, 0);
	test_sender_owned();
	test_expand();
	test_script_error();
	test_check();
	test_errors();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		printf("# cleanup failed\n");
	return tap_done();
}

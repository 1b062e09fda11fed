/*
 * ctl_test.c - policyctl's pure protocol parts: the wire form of a
 * check/explain request (ask_wire()), the framing of a reply
 * (client_reply_frame()) and its line index and first action
 * (client_reply_index()). The socket side is tested against a real
 * policyd in tests/integration/test_policyctl.py.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/client.h"
#include "ctl/ctl.h"
#include "tap.h"

/* ctl_err - main.c's, here kept for the assertions */
static char errbuf[1024];

void
ctl_err(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
	va_end(ap);
}

long long
ctl_mono_ms(void)
{
	return 0;
}

long
ctl_parse_int(const char *s, long min, long max)
{
	char   *end;
	long	v = strtol(s, &end, 10);

	return *s && !*end && v >= min && v <= max ? v : -1;
}

/* wire - ask_wire() of a NULL-terminated argument list */
static int
wire(int explain, char **out, size_t *outlen, ...)
{
	char   *argv[32];
	int	argc = 0;
	va_list	ap;

	va_start(ap, outlen);
	while (argc < 31 && (argv[argc] = va_arg(ap, char *)) != NULL)
		argc++;
	va_end(ap);
	errbuf[0] = '\0';
	return ask_wire(argc, argv, explain, out, outlen);
}

/* reply - frame and index a reply given as text: the frame status */
static int
reply(const char *text, struct reply *rp, const char **why)
{
	size_t	len = strlen(text), used = 0;
	int	rc;

	memset(rp, 0, sizeof(*rp));
	*why = NULL;
	rc = client_reply_frame(text, len, &used, why);
	if (rc != 1)
		return rc;
	rp->buf = malloc(used + 1);
	memcpy(rp->buf, text, used);
	rp->buf[used] = '\0';
	rp->len = used;
	return client_reply_index(rp, why) < 0 ? 2 : 1;
}

static void
test_wire(void)
{
	char   *w;
	size_t	n;
	char	longv[20000];

	is_int(wire(0, &w, &n, "sender=a=b@example.com", "protocol_state=DATA",
	    "x_new_attr=1", "sender=c@example.com", (char *)NULL), CTL_OK,
	    "check request built");
	is_str(w, "request=smtpd_access_policy\nprotocol_state=DATA\n"
	    "sender=c@example.com\nx_new_attr=1\n\n",
	    "defaults first, a repeated name keeps its place and last value");
	is_int((int)n, (int)strlen(w), "length");
	ok(strstr(errbuf, "unknown attribute \"x_new_attr\"") != NULL,
	    "an unknown attribute is warned about and sent");
	free(w);

	is_int(wire(1, &w, &n, "sender=a=b@example.com", (char *)NULL), CTL_OK,
	    "explain request built");
	is_str(w, "request=smtpd_access_policy\nprotocol_state=RCPT\n"
	    "sender=a=b@example.com\npolicyd_explain=yes\n\n",
	    "explain asks for the trace, last");
	is_str(errbuf, "", "no warning for known attributes");
	free(w);

	is_int(wire(0, &w, &n, "policyd_explain=no", (char *)NULL), CTL_OK,
	    "policyd_explain given");
	ok(strstr(w, "policyd_explain=no\n") != NULL, "sent as given by check");
	free(w);
	is_int(wire(1, &w, &n, "policyd_explain=no", (char *)NULL), CTL_OK,
	    "policyd_explain given to explain");
	ok(strstr(w, "policyd_explain=yes\n") != NULL &&
	    strstr(w, "policyd_explain=no") == NULL, "explain overrides it");
	free(w);

	is_int(wire(0, &w, &n, (char *)NULL), CTL_USAGE, "no attributes");
	ok(w == NULL && strstr(errbuf, "no attributes") != NULL, errbuf);
	is_int(wire(0, &w, &n, "sender", (char *)NULL), CTL_USAGE, "no '='");
	ok(strstr(errbuf, "expected name=value") != NULL, errbuf);
	is_int(wire(0, &w, &n, "=x", (char *)NULL), CTL_USAGE, "empty name");
	ok(strstr(errbuf, "empty attribute name") != NULL, errbuf);
	is_int(wire(0, &w, &n, "sender=a\rb", (char *)NULL), CTL_USAGE,
	    "carriage return");
	ok(strstr(errbuf, "newline") != NULL, errbuf);
	memset(longv, 'a', sizeof(longv) - 1);
	memcpy(longv, "sender=", 7);
	longv[sizeof(longv) - 1] = '\0';
	is_int(wire(0, &w, &n, longv, (char *)NULL), CTL_USAGE,
	    "a line longer than policyd takes");
	ok(w == NULL && strstr(errbuf, "line too long") != NULL, errbuf);
}

static void
test_replies(void)
{
	struct reply rp;
	const char *why;

	is_int(reply("trace=step one\ntrace=step two\naction=OK fine\n"
	    "action=REJECT second\n\nextra", &rp, &why), 1, "reply framed");
	is_str(rp.action, "OK fine", "the first action= wins");
	is_int((int)rp.nlines, 4, "lines before the empty one");
	is_str(rp.lines[0], "trace=step one", "first line");
	is_str(rp.lines[3], "action=REJECT second", "last line");
	is_int((int)rp.len, 67, "the empty line ends it, nothing after");
	client_reply_free(&rp);

	is_int(reply("action=DUNNO\r\n\r\n", &rp, &why), 1, "CRLF reply");
	is_str(rp.action, "DUNNO", "CR removed");
	client_reply_free(&rp);

	is_int(reply("action=DUNNO\n", &rp, &why), 0,
	    "no empty line yet: more is needed");
	is_int(reply("", &rp, &why), 0, "nothing yet: more is needed");
	is_int(reply("trace=x\n\n", &rp, &why), 2, "no action");
	is_str(why, "no action= line", "reason");
	client_reply_free(&rp);
	is_int(reply("hello world\n\n", &rp, &why), -1, "junk is malformed");
	ok(why != NULL && *why, "with the codec's reason");
	is_int(reply("action\n\n", &rp, &why), -1, "a line without '='");
	is_int(reply("=x\n\n", &rp, &why), -1, "an empty name");
}

int
main(void)
{
	test_wire();
	test_replies();
	return tap_done();
}

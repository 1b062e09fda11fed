/*++
 * NAME
 *	spf.c - RFC 7208 record parsing, macro expansion and check_host()
 *	(see spf.h)
 *--*/
#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "resolver.h"
#include "spf.h"

#define SPF_MAX_DNS_MECHS	10
#define SPF_MAX_VOIDS		2
#define SPF_MAX_NAMES		10	/* MX and PTR names per mechanism */
#define SPF_MAX_DEPTH		(SPF_MAX_DNS_MECHS + 2)
#define SPF_MAX_TERMS		256

static const char *const result_names[SPF_NRESULTS] = {
	"none", "neutral", "pass", "fail", "softfail", "temperror", "permerror"
};

/* spf_result_name - "pass" */
const char *
spf_result_name(enum spf_result r)
{
	return (unsigned)r < SPF_NRESULTS ? result_names[r] : "?";
}

/* spf_result_parse - "pass" -> SPF_PASS */
int
spf_result_parse(const char *name)
{
	for (int i = 0; i < SPF_NRESULTS; i++)
		if (strcasecmp(name, result_names[i]) == 0)
			return i;
	return -1;
}

/* spf_is_record - "v=spf1" then a space or the end */
int
spf_is_record(const char *txt, size_t len)
{
	return len >= 6 && strncasecmp(txt, "v=spf1", 6) == 0 &&
	    (len == 6 || txt[6] == ' ');
}

/* ---- parsing ---- */

/* macro_letter - valid macro letters (lowercase); exp adds c, r, t */
static int
macro_letter(int c, int exp)
{
	c = tolower(c);
	return strchr("slodiphv", c) != NULL || (exp && strchr("crt", c) != NULL);
}

/*
 * macro_syntax - is s (len bytes) a valid macro-string? exp allows
 * spaces and c/r/t. Returns 0 or -1.
 */
static int
macro_syntax(const char *s, size_t len, int exp)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '%') {
			if (i + 1 >= len)
				return -1;
			c = (unsigned char)s[++i];
			if (c == '%' || c == '_' || c == '-')
				continue;
			if (c != '{' || i + 1 >= len ||
			    !macro_letter(s[i + 1], exp))
				return -1;
			i += 2;
			while (i < len && isdigit((unsigned char)s[i]))
				i++;
			if (i < len && tolower((unsigned char)s[i]) == 'r')
				i++;
			while (i < len && strchr(".-+,/_=", s[i]) != NULL)
				i++;
			if (i >= len || s[i] != '}')
				return -1;
			continue;
		}
		if (c == ' ' && exp)
			continue;
		if (c < 0x21 || c > 0x7e)
			return -1;
	}
	return 0;
}

/* toplabel_ok - RFC 7208 toplabel: alphanumerics and inner '-', not all digits */
static int
toplabel_ok(const char *s, size_t len)
{
	int	alpha = 0;

	if (len == 0 || s[0] == '-' || s[len - 1] == '-')
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (isalpha((unsigned char)s[i]) || s[i] == '-')
			alpha = 1;
		else if (!isdigit((unsigned char)s[i]))
			return 0;
	}
	return alpha;
}

/* domain_spec_ok - macro-string ending in "." toplabel ["."] or a macro */
static int
domain_spec_ok(const char *s, size_t len)
{
	const char *dot;
	size_t	end = len;

	if (len == 0 || macro_syntax(s, len, 0) < 0)
		return 0;
	if (s[len - 1] == '}')
		return 1;			/* domain-end = macro-expand */
	if (s[end - 1] == '.')
		end--;
	for (dot = s + end - 1; dot >= s && *dot != '.'; dot--)
		;
	if (dot < s)
		return 0;			/* needs "." toplabel */
	return toplabel_ok(dot + 1, s + end - dot - 1);
}

/* cidr_len - "/N" digits (no leading zero); -1 when invalid */
static int
cidr_len(const char *s, size_t len, int max)
{
	int	v = 0;

	if (len == 0 || len > 3 || (len > 1 && s[0] == '0'))
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v <= max ? v : -1;
}

/*
 * split_cidr - take a trailing dual-cidr-length ("/N", "//M", "/N//M")
 * off [s, s+*len); v6only for ip6. -1 when malformed.
 */
static int
split_cidr(const char *s, size_t *len, int *c4, int *c6, int allow4,
    int allow6)
{
	size_t	n = *len, i;

	/* "//M" at the end */
	for (i = n; i > 0 && isdigit((unsigned char)s[i - 1]); i--)
		;
	if (i < n && i >= 2 && s[i - 1] == '/' && s[i - 2] == '/') {
		if (!allow6 || (*c6 = cidr_len(s + i, n - i, 128)) < 0)
			return -1;
		n = i - 2;
		for (i = n; i > 0 && isdigit((unsigned char)s[i - 1]); i--)
			;
	}
	if (i < n && i >= 1 && s[i - 1] == '/' && (i < 2 || s[i - 2] != '/')) {
		if (allow4) {
			if ((*c4 = cidr_len(s + i, n - i, 32)) < 0)
				return -1;
		} else if ((*c6 = cidr_len(s + i, n - i, 128)) < 0) {
			return -1;
		}
		n = i - 1;
	}
	*len = n;
	return 0;
}

/* dupn - NUL-terminated copy */
static char *
dupn(const char *s, size_t n)
{
	char	*d = malloc(n + 1);

	if (d != NULL) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

#define PERR(...) do { snprintf(err, errlen, __VA_ARGS__); goto fail; } while (0)

/* parse_term - one mechanism into t; 0 or -1 */
static int
parse_mech(const char *s, size_t n, struct spf_term *t, int *has_all, char *err,
    size_t errlen)
{
	static const struct { const char *name; enum spf_mech m; } mechs[] = {
		{ "all", SPF_M_ALL }, { "include", SPF_M_INCLUDE },
		{ "a", SPF_M_A }, { "mx", SPF_M_MX }, { "ptr", SPF_M_PTR },
		{ "ip4", SPF_M_IP4 }, { "ip6", SPF_M_IP6 },
		{ "exists", SPF_M_EXISTS },
	};
	size_t	nl, al;
	const char *arg;
	int	found = 0;

	memset(t, 0, sizeof(*t));
	t->qual = '+';
	t->cidr4 = 32;
	t->cidr6 = 128;
	if (n > 0 && strchr("+-~?", s[0]) != NULL) {
		t->qual = s[0];
		s++;
		n--;
	}
	for (nl = 0; nl < n && s[nl] != ':' && s[nl] != '/'; nl++)
		;
	for (size_t i = 0; i < sizeof(mechs) / sizeof(mechs[0]); i++)
		if (strlen(mechs[i].name) == nl &&
		    strncasecmp(mechs[i].name, s, nl) == 0) {
			t->mech = mechs[i].m;
			found = 1;
		}
	if (!found)
		PERR("unknown mechanism \"%.*s\"", (int)(nl > 40 ? 40 : nl), s);
	arg = s + nl;
	al = n - nl;
	switch (t->mech) {
	case SPF_M_ALL:
		if (al != 0)
			PERR("\"all\" takes no argument");
		*has_all = 1;
		return 0;
	case SPF_M_INCLUDE:
	case SPF_M_EXISTS:
		if (al < 2 || arg[0] != ':' || !domain_spec_ok(arg + 1, al - 1))
			PERR("%s: expected :domain-spec", t->mech == SPF_M_INCLUDE ?
			    "include" : "exists");
		t->spec = dupn(arg + 1, al - 1);
		return t->spec ? 0 : -1;
	case SPF_M_A:
	case SPF_M_MX:
	case SPF_M_PTR:
		if (t->mech != SPF_M_PTR && split_cidr(arg, &al, &t->cidr4,
		    &t->cidr6, 1, 1) < 0)
			PERR("%s: bad CIDR length", t->mech == SPF_M_A ? "a" : "mx");
		if (al == 0)
			return 0;
		if (arg[0] != ':' || !domain_spec_ok(arg + 1, al - 1))
			PERR("%.*s: bad domain-spec", (int)nl, s);
		t->spec = dupn(arg + 1, al - 1);
		return t->spec ? 0 : -1;
	case SPF_M_IP4:
	case SPF_M_IP6: {
		char	buf[64];
		int	v4 = t->mech == SPF_M_IP4;

		if (al < 2 || arg[0] != ':')
			PERR("%s: expected an address", v4 ? "ip4" : "ip6");
		arg++;
		al--;
		for (nl = 0; nl < al && arg[nl] != '/'; nl++)
			;
		if (nl >= sizeof(buf))
			PERR("%s: bad address", v4 ? "ip4" : "ip6");
		memcpy(buf, arg, nl);
		buf[nl] = '\0';
		if (nl < al) {
			int	c = cidr_len(arg + nl + 1, al - nl - 1, v4 ? 32 : 128);

			if (c < 0)
				PERR("%s: bad CIDR length", v4 ? "ip4" : "ip6");
			if (v4)
				t->cidr4 = c;
			else
				t->cidr6 = c;
		}
		t->ip.family = v4 ? AF_INET : AF_INET6;
		if (inet_pton(t->ip.family, buf, t->ip.a) != 1)
			PERR("%s: bad address \"%s\"", v4 ? "ip4" : "ip6", buf);
		return 0;
	}
	}
fail:
	return -1;
}

/* spf_parse - see spf.h */
int
spf_parse(const char *text, struct spf_record *rec, char *err, size_t errlen)
{
	const char *p = text;

	memset(rec, 0, sizeof(*rec));
	if (!spf_is_record(text, strlen(text)))
		PERR("not an SPF record");
	p += 6;
	for (;;) {
		const char *s;
		size_t	n, nl;

		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		for (s = p; *p != '\0' && *p != ' '; p++)
			;
		n = p - s;
		/* modifier: name "=" macro-string */
		for (nl = 0; nl < n && (isalnum((unsigned char)s[nl]) ||
		    s[nl] == '-' || s[nl] == '_' || s[nl] == '.'); nl++)
			;
		if (nl > 0 && nl < n && s[nl] == '=' && isalpha((unsigned char)s[0])) {
			const char *v = s + nl + 1;
			size_t	vl = n - nl - 1;
			char	**slot = NULL;

			if (nl == 8 && strncasecmp(s, "redirect", 8) == 0)
				slot = &rec->redirect;
			else if (nl == 3 && strncasecmp(s, "exp", 3) == 0)
				slot = &rec->exp;
			if (slot == NULL) {
				if (macro_syntax(v, vl, 0) < 0)
					PERR("modifier %.*s: bad macro-string",
					    (int)(nl > 40 ? 40 : nl), s);
				continue;	/* unknown modifiers are ignored */
			}
			if (*slot != NULL)
				PERR("%s= given twice", slot == &rec->exp ? "exp" :
				    "redirect");
			if (!domain_spec_ok(v, vl))
				PERR("%s=: bad domain-spec", slot == &rec->exp ?
				    "exp" : "redirect");
			if ((*slot = dupn(v, vl)) == NULL)
				PERR("out of memory");
			continue;
		}
		if (rec->nterms >= SPF_MAX_TERMS)
			PERR("more than %d terms", SPF_MAX_TERMS);
		if (rec->terms == NULL && (rec->terms = calloc(SPF_MAX_TERMS,
		    sizeof(*rec->terms))) == NULL)
			PERR("out of memory");
		if (parse_mech(s, n, &rec->terms[rec->nterms], &rec->has_all, err,
		    errlen) < 0)
			goto fail;
		rec->nterms++;
	}
	return 0;
fail:
	spf_record_free(rec);
	return -1;
}

/* spf_record_free - release a parsed record */
void
spf_record_free(struct spf_record *rec)
{
	for (int i = 0; i < rec->nterms; i++)
		free(rec->terms[i].spec);
	free(rec->terms);
	free(rec->redirect);
	free(rec->exp);
	memset(rec, 0, sizeof(*rec));
}

/* ---- macro expansion ---- */

/* ip_dotted - "i": dotted quad, or 32 dot-separated nibbles */
static void
ip_dotted(const struct ipaddr *ip, char *buf, size_t len)
{
	static const char hex[] = "0123456789abcdef";

	if (ip->family == AF_INET) {
		snprintf(buf, len, "%u.%u.%u.%u", ip->a[0], ip->a[1], ip->a[2],
		    ip->a[3]);
		return;
	}
	if (len < 64)
		return;
	for (int i = 0; i < 16; i++) {
		buf[i * 4] = hex[ip->a[i] >> 4];
		buf[i * 4 + 1] = '.';
		buf[i * 4 + 2] = hex[ip->a[i] & 15];
		buf[i * 4 + 3] = i == 15 ? '\0' : '.';
	}
}

struct obuf {
	char	*p;
	size_t	len, o;
	int	over;
};

static void
oput(struct obuf *b, const char *s, size_t n)
{
	if (b->o + n >= b->len) {
		b->over = 1;
		n = b->len - 1 - b->o;
	}
	memcpy(b->p + b->o, s, n);
	b->o += n;
	b->p[b->o] = '\0';
}

/* oput_escaped - URL-encode what is not unreserved (uppercase letters) */
static void
oput_escaped(struct obuf *b, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char	e[4];

		if (isalnum(c) || strchr("-._~", c) != NULL) {
			oput(b, (const char *)&s[i], 1);
		} else {
			snprintf(e, sizeof(e), "%%%02X", c);
			oput(b, e, 3);
		}
	}
}

/* expand_one - a macro letter with its transformers */
static int
expand_one(struct obuf *b, const struct spf_vars *v, int letter, int keep,
    int reverse, const char *delims, int upper)
{
	char	val[1100], tmp[1100];
	const char *parts[256];
	size_t	plen[256];
	int	np = 0;
	const char *s;

	switch (letter) {
	case 's': snprintf(val, sizeof(val), "%s", v->sender); break;
	case 'l': snprintf(val, sizeof(val), "%s", v->local); break;
	case 'o': snprintf(val, sizeof(val), "%s", v->sender_domain); break;
	case 'd': snprintf(val, sizeof(val), "%s", v->domain); break;
	case 'h': snprintf(val, sizeof(val), "%s", v->helo); break;
	case 'r': snprintf(val, sizeof(val), "%s", v->receiver && *v->receiver ?
		    v->receiver : "unknown"); break;
	case 'p': snprintf(val, sizeof(val), "%s", v->ptr_name && *v->ptr_name ?
		    v->ptr_name : "unknown"); break;
	case 'v': snprintf(val, sizeof(val), "%s", v->ip.family == AF_INET ?
		    "in-addr" : "ip6"); break;
	case 't': snprintf(val, sizeof(val), "%lld", v->now); break;
	case 'i': ip_dotted(&v->ip, val, sizeof(val)); break;
	case 'c':
		if (addr_ip_format(&v->ip, val, sizeof(val)) < 0)
			val[0] = '\0';
		break;
	default:
		return -1;
	}
	if (keep == 0 && !reverse && strcmp(delims, ".") == 0) {
		s = val;
		goto out;
	}
	/* split on the delimiters, reverse, keep the rightmost parts */
	for (const char *p = val;;) {
		size_t	n = strcspn(p, delims);

		if (np < 256) {
			parts[np] = p;
			plen[np++] = n;
		}
		if (p[n] == '\0')
			break;
		p += n + 1;
	}
	if (reverse)
		for (int i = 0; i < np / 2; i++) {
			const char *tp = parts[i];
			size_t	tl = plen[i];

			parts[i] = parts[np - 1 - i];
			plen[i] = plen[np - 1 - i];
			parts[np - 1 - i] = tp;
			plen[np - 1 - i] = tl;
		}
	{
		int	first = keep > 0 && keep < np ? np - keep : 0;
		size_t	o = 0;

		for (int i = first; i < np; i++) {
			if (o + plen[i] + 2 >= sizeof(tmp))
				break;
			if (i > first)
				tmp[o++] = '.';
			memcpy(tmp + o, parts[i], plen[i]);
			o += plen[i];
		}
		tmp[o] = '\0';
		s = tmp;
	}
out:
	if (upper)
		oput_escaped(b, s, strlen(s));
	else
		oput(b, s, strlen(s));
	return 0;
}

/* spf_expand - see spf.h */
int
spf_expand(const char *spec, const struct spf_vars *v, int exp, char *out,
    size_t outlen)
{
	char	big[2048];
	struct obuf b = { big, sizeof(big), 0, 0 };
	size_t	len = strlen(spec);

	if (outlen == 0 || macro_syntax(spec, len, exp) < 0)
		return -1;
	big[0] = '\0';
	for (size_t i = 0; i < len; i++) {
		int	letter, keep = 0, reverse = 0, upper;
		char	delims[8] = "";
		size_t	nd = 0;

		if (spec[i] != '%') {
			oput(&b, spec + i, 1);
			continue;
		}
		i++;
		if (spec[i] == '%') {
			oput(&b, "%", 1);
			continue;
		}
		if (spec[i] == '_') {
			oput(&b, " ", 1);
			continue;
		}
		if (spec[i] == '-') {
			oput(&b, "%20", 3);
			continue;
		}
		/* "{" letter digits [r] delimiters "}" (checked above) */
		i++;
		upper = isupper((unsigned char)spec[i]);
		letter = tolower((unsigned char)spec[i]);
		i++;
		while (isdigit((unsigned char)spec[i])) {
			keep = keep * 10 + (spec[i] - '0');
			if (keep > 1000)
				keep = 1000;
			i++;
		}
		if (i > 0 && isdigit((unsigned char)spec[i - 1]) && keep == 0)
			return -1;		/* "0" parts: invalid */
		if (tolower((unsigned char)spec[i]) == 'r') {
			reverse = 1;
			i++;
		}
		while (spec[i] != '}') {
			if (nd < sizeof(delims) - 1 && strchr(delims, spec[i]) ==
			    NULL)
				delims[nd++] = spec[i];
			delims[nd] = '\0';
			i++;
		}
		if (nd == 0)
			delims[nd++] = '.';
		delims[nd] = '\0';
		if (expand_one(&b, v, letter, keep, reverse, delims, upper) < 0)
			return -1;
	}
	if (!exp) {
		/* RFC 7208 4.8: cut labels on the left down to 253 */
		const char *s = big;

		while (strlen(s) > 253) {
			const char *dot = strchr(s, '.');

			if (dot == NULL)
				return -1;
			s = dot + 1;
		}
		if (strlen(s) >= outlen)
			return -1;
		memmove(out, s, strlen(s) + 1);
		return 0;
	}
	snprintf(out, outlen, "%s", big);
	return 0;
}

/* ---- check_host() ---- */

enum spf_wait { W_NONE, W_RECORD, W_A, W_MX, W_MX_A, W_PTR, W_PTR_A,
	W_EXISTS, W_EXP };

struct spf_frame {
	char	domain[256];
	struct spf_record rec;
	int	loaded;
	int	term;
	int	redirected;
};

struct spf_eval {
	struct resolver *r;
	struct spf_query q;
	char	sender[1100], local[1100], sdomain[256], helo[256],
		receiver[256], ptr_name[256];
	struct spf_frame fr[SPF_MAX_DEPTH];
	int	depth;
	int	dns_mechs, voids;
	enum spf_wait wait;
	char	target[256];
	char	names[SPF_MAX_NAMES][256];
	int	nnames, iname;
	int	budget;
	char	detail[256];
	spf_done_fn *done;
	spf_trace_fn *trace;
	void	*arg;
};

static void spf_step(struct spf_eval *e);

/* etrace - one line of explanation */
static void __attribute__((format(printf, 2, 3)))
etrace(struct spf_eval *e, const char *fmt, ...)
{
	char	line[600];
	va_list	ap;

	if (e->trace == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	for (char *p = line; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	e->trace(e->arg, line);
}

/* vars - the macro variables for the current frame */
static void
vars(const struct spf_eval *e, struct spf_vars *v)
{
	v->sender = e->sender;
	v->local = e->local;
	v->sender_domain = e->sdomain;
	v->domain = e->depth > 0 ? e->fr[e->depth - 1].domain : e->sdomain;
	v->helo = e->helo;
	v->receiver = e->receiver;
	v->ptr_name = e->ptr_name[0] ? e->ptr_name : NULL;
	v->ip = e->q.ip;
	v->now = e->q.now;
}

/* finish - report and free */
static void
finish(struct spf_eval *e, enum spf_result res, const char *expl)
{
	struct spf_outcome o;

	memset(&o, 0, sizeof(o));
	o.result = res;
	o.budget = e->budget;
	o.dns_mechs = e->dns_mechs;
	o.voids = e->voids;
	snprintf(o.domain, sizeof(o.domain), "%s", e->sdomain);
	snprintf(o.detail, sizeof(o.detail), "%s", e->detail);
	snprintf(o.explanation, sizeof(o.explanation), "%s", expl ? expl : "");
	etrace(e, "spf: result %s%s%s", spf_result_name(res), e->detail[0] ?
	    ": " : "", e->detail);
	for (int i = 0; i < e->depth; i++)
		spf_record_free(&e->fr[i].rec);
	{
		spf_done_fn *done = e->done;
		void	*arg = e->arg;

		free(e);
		done(arg, &o);
	}
}

/* fail_with - an error result with its reason */
static void __attribute__((format(printf, 3, 4)))
fail_with(struct spf_eval *e, enum spf_result res, const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(e->detail, sizeof(e->detail), fmt, ap);
	va_end(ap);
	finish(e, res, NULL);
}

static void dns_cb_(void *arg, const struct dns_answer *a);

/* ask - one DNS question; the answer resumes in dns_cb_ */
static void
ask(struct spf_eval *e, enum spf_wait w, const char *name, int type)
{
	e->wait = w;
	resolver_query(e->r, name, type, e->q.deadline_ms, dns_cb_, e);
}

/* domain_ok - RFC 7208 4.3: labels 1..63, at least two of them */
static int
domain_ok(const char *d)
{
	return dns_name_valid(d) && strchr(d, '.') != NULL &&
	    d[strlen(d) - 1] != '.';
}

/* push - start evaluating domain (top or include) */
static void
push(struct spf_eval *e, const char *domain)
{
	struct spf_frame *f = &e->fr[e->depth++];

	memset(f, 0, sizeof(*f));
	snprintf(f->domain, sizeof(f->domain), "%s", domain);
}

/* qual_result - the result a matching term gives */
static enum spf_result
qual_result(char q)
{
	switch (q) {
	case '-': return SPF_FAIL;
	case '~': return SPF_SOFTFAIL;
	case '?': return SPF_NEUTRAL;
	default: return SPF_PASS;
	}
}

/* final - the top-level result; fail fetches exp= first */
static void
final(struct spf_eval *e, enum spf_result res)
{
	struct spf_frame *f = &e->fr[0];
	struct spf_vars v;

	if (res == SPF_FAIL && f->rec.exp != NULL) {
		vars(e, &v);
		v.domain = f->domain;
		if (spf_expand(f->rec.exp, &v, 0, e->target,
		    sizeof(e->target)) == 0 && dns_name_valid(e->target)) {
			ask(e, W_EXP, e->target, DNS_T_TXT);
			return;
		}
	}
	finish(e, res, NULL);
}

/* frame_end - the current record ended with res: back to its includer */
static void
frame_end(struct spf_eval *e, enum spf_result res)
{
	for (;;) {
		struct spf_frame *f;
		const struct spf_term *t;

		if (e->depth == 1) {
			final(e, res);
			return;
		}
		spf_record_free(&e->fr[--e->depth].rec);
		f = &e->fr[e->depth - 1];
		t = &f->rec.terms[f->term];
		switch (res) {
		case SPF_PASS:
			etrace(e, "spf: %s: include:%s matched", f->domain,
			    e->fr[e->depth].domain);
			snprintf(e->detail, sizeof(e->detail), "%s: %cinclude:%s",
			    f->domain, t->qual, e->fr[e->depth].domain);
			res = qual_result(t->qual);
			continue;
		case SPF_FAIL:
		case SPF_SOFTFAIL:
		case SPF_NEUTRAL:
			f->term++;
			spf_step(e);
			return;
		case SPF_TEMPERROR:
			finish(e, SPF_TEMPERROR, NULL);
			return;
		default:
			if (e->detail[0] == '\0')
				snprintf(e->detail, sizeof(e->detail),
				    "include:%s has no SPF record",
				    e->fr[e->depth].domain);
			finish(e, SPF_PERMERROR, NULL);
			return;
		}
	}
}

/* matched - the current term matched */
static void
matched(struct spf_eval *e)
{
	struct spf_frame *f = &e->fr[e->depth - 1];
	const struct spf_term *t = &f->rec.terms[f->term];

	snprintf(e->detail, sizeof(e->detail), "%s: term %d (%c%s%s%s) matched",
	    f->domain, f->term + 1, t->qual,
	    (const char *[]){ "all", "include", "a", "mx", "ptr", "ip4", "ip6",
	    "exists" }[t->mech], t->spec ? ":" : "", t->spec ? t->spec : "");
	etrace(e, "spf: %s", e->detail);
	frame_end(e, qual_result(t->qual));
}

/* no_match - the current term did not match: the next one */
static void
no_match(struct spf_eval *e)
{
	e->fr[e->depth - 1].term++;
	spf_step(e);
}

/* addr_in - does an A/AAAA record hold the client within cidr bits? */
static int
addr_in(const struct spf_eval *e, const struct dns_answer *a, int cidr)
{
	struct cidr c;

	for (int i = 0; i < a->nrr; i++) {
		c.net.family = a->rr[i].type == DNS_T_A ? AF_INET : AF_INET6;
		if (c.net.family != e->q.ip.family)
			continue;
		memcpy(c.net.a, a->rr[i].addr, c.net.family == AF_INET ? 4 : 16);
		c.prefix = cidr;
		addr_ip_mask(&c.net, cidr);
		if (addr_cidr_match(&c, &e->q.ip))
			return 1;
	}
	return 0;
}

/* void_lookup - count an empty answer; 1 when the limit is passed */
static int
void_lookup(struct spf_eval *e, const char *name)
{
	if (++e->voids > SPF_MAX_VOIDS) {
		fail_with(e, SPF_PERMERROR, "more than %d void lookups (%s)",
		    SPF_MAX_VOIDS, name);
		return 1;
	}
	return 0;
}

/* dns_error - temperror unless budget; 1 when the answer was an error */
static int
dns_error(struct spf_eval *e, const struct dns_answer *a, const char *name,
    int type)
{
	if (a->status == DNS_OK || a->status == DNS_NXDOMAIN ||
	    a->status == DNS_NODATA)
		return 0;
	if (a->status == DNS_BUDGET)
		e->budget = 1;
	snprintf(e->detail, sizeof(e->detail), "DNS %s %s: %s",
	    dns_type_name(type), name, dns_status_name(a->status));
	return 1;
}

/* ptr_name_for - the reverse name of the client */
static void
ptr_qname(const struct ipaddr *ip, char *buf, size_t len)
{
	static const char hex[] = "0123456789abcdef";

	if (ip->family == AF_INET) {
		snprintf(buf, len, "%u.%u.%u.%u.in-addr.arpa", ip->a[3], ip->a[2],
		    ip->a[1], ip->a[0]);
		return;
	}
	for (int i = 15, o = 0; i >= 0; i--, o += 4) {
		buf[o] = hex[ip->a[i] & 15];
		buf[o + 1] = '.';
		buf[o + 2] = hex[ip->a[i] >> 4];
		buf[o + 3] = '.';
	}
	snprintf(buf + 64, len - 64, "ip6.arpa");
}

/* name_under - name equals dom or ends in "." dom (case-insensitive) */
static int
name_under(const char *name, const char *dom)
{
	size_t	n = strlen(name), d = strlen(dom);

	if (d > 0 && dom[d - 1] == '.')
		d--;
	if (n == d)
		return strncasecmp(name, dom, d) == 0;
	return n > d && name[n - d - 1] == '.' &&
	    strncasecmp(name + n - d, dom, d) == 0;
}

/* select_record - the one "v=spf1" TXT, parsed into the frame */
static void
got_record(struct spf_eval *e, const struct dns_answer *a)
{
	struct spf_frame *f = &e->fr[e->depth - 1];
	const char *txt = NULL;
	int	n = 0;
	char	err[200];

	if (dns_error(e, a, f->domain, DNS_T_TXT)) {
		finish(e, SPF_TEMPERROR, NULL);
		return;
	}
	for (int i = 0; i < a->nrr; i++)
		if (spf_is_record(a->rr[i].data, a->rr[i].len)) {
			txt = a->rr[i].data;
			n++;
		}
	if (n == 0) {
		etrace(e, "spf: TXT %s: %s", f->domain, a->status == DNS_OK ?
		    "no SPF record" : dns_status_name(a->status));
		if ((e->depth > 1 || f->redirected) && a->status != DNS_OK &&
		    void_lookup(e, f->domain))
			return;
		if (e->depth == 1 && !f->redirected) {
			finish(e, SPF_NONE, NULL);
			return;
		}
		fail_with(e, SPF_PERMERROR, "%s %s has no SPF record",
		    f->redirected ? "redirect" : "include", f->domain);
		return;
	}
	if (n > 1) {
		fail_with(e, SPF_PERMERROR, "%s has %d SPF records", f->domain, n);
		return;
	}
	etrace(e, "spf: TXT %s: \"%.400s\"%s", f->domain, txt, a->cached ?
	    " (cached)" : "");
	if (spf_parse(txt, &f->rec, err, sizeof(err)) < 0) {
		fail_with(e, SPF_PERMERROR, "%s: %s", f->domain, err);
		return;
	}
	f->loaded = 1;
	f->term = 0;
	spf_step(e);
}

/* next_name - the A/AAAA question for the next MX or PTR name */
static void
next_name(struct spf_eval *e, enum spf_wait w)
{
	int	type = e->q.ip.family == AF_INET ? DNS_T_A : DNS_T_AAAA;

	if (e->iname >= e->nnames) {
		no_match(e);
		return;
	}
	ask(e, w, e->names[e->iname++], type);
}

/* dns_cb_ - every DNS answer of an evaluation */
static void
dns_cb_(void *arg, const struct dns_answer *a)
{
	struct spf_eval *e = arg;
	struct spf_frame *f = &e->fr[e->depth - 1];
	const struct spf_term *t = f->loaded ? &f->rec.terms[f->term] : NULL;
	enum spf_wait w = e->wait;
	int	addr_type = e->q.ip.family == AF_INET ? DNS_T_A : DNS_T_AAAA;
	int	cidr = e->q.ip.family == AF_INET ? (t ? t->cidr4 : 32) :
	    (t ? t->cidr6 : 128);

	e->wait = W_NONE;
	switch (w) {
	case W_RECORD:
		got_record(e, a);
		return;
	case W_A:
	case W_EXISTS:
		if (dns_error(e, a, e->target, w == W_A ? addr_type : DNS_T_A)) {
			finish(e, SPF_TEMPERROR, NULL);
			return;
		}
		if (a->status == DNS_OK)
			etrace(e, "spf: %s %s: %d address%s", w == W_A ?
			    dns_type_name(addr_type) : "A", e->target, a->nrr,
			    a->nrr == 1 ? "" : "es");
		else
			etrace(e, "spf: %s %s: %s", w == W_A ?
			    dns_type_name(addr_type) : "A", e->target,
			    dns_status_name(a->status));
		if (a->status != DNS_OK) {
			if (void_lookup(e, e->target))
				return;
			no_match(e);
			return;
		}
		if (w == W_EXISTS || addr_in(e, a, cidr))
			matched(e);
		else
			no_match(e);
		return;
	case W_MX:
		if (dns_error(e, a, e->target, DNS_T_MX)) {
			finish(e, SPF_TEMPERROR, NULL);
			return;
		}
		e->nnames = e->iname = 0;
		if (a->status != DNS_OK) {
			etrace(e, "spf: MX %s: %s", e->target,
			    dns_status_name(a->status));
			if (void_lookup(e, e->target))
				return;
			no_match(e);
			return;
		}
		if (a->nrr > SPF_MAX_NAMES) {
			fail_with(e, SPF_PERMERROR, "mx:%s: more than %d MX names",
			    e->target, SPF_MAX_NAMES);
			return;
		}
		for (int i = 0; i < a->nrr; i++)
			if (a->rr[i].data[0] != '\0' && strcmp(a->rr[i].data, ".")
			    != 0)
				snprintf(e->names[e->nnames++], 256, "%s",
				    a->rr[i].data);
		etrace(e, "spf: MX %s: %d names", e->target, e->nnames);
		next_name(e, W_MX_A);
		return;
	case W_MX_A:
	case W_PTR_A: {
		const char *name = e->names[e->iname - 1];

		if (a->status != DNS_OK && a->status != DNS_NXDOMAIN &&
		    a->status != DNS_NODATA) {
			if (w == W_PTR_A) {
				next_name(e, W_PTR_A);	/* ptr: errors skip */
				return;
			}
			dns_error(e, a, name, addr_type);
			finish(e, SPF_TEMPERROR, NULL);
			return;
		}
		if (a->status != DNS_OK) {
			if (void_lookup(e, name))
				return;
		} else if (addr_in(e, a, w == W_PTR_A ? (e->q.ip.family == AF_INET ?
		    32 : 128) : cidr)) {
			etrace(e, "spf: %s %s: holds the client", dns_type_name(
			    addr_type), name);
			matched(e);
			return;
		}
		next_name(e, w);
		return;
	}
	case W_PTR:
		e->nnames = e->iname = 0;
		if (a->status != DNS_OK) {
			etrace(e, "spf: PTR: %s", dns_status_name(a->status));
			if (a->status == DNS_BUDGET)
				e->budget = 1;
			if ((a->status == DNS_NXDOMAIN || a->status ==
			    DNS_NODATA) && void_lookup(e, "PTR"))
				return;
			no_match(e);		/* errors: no match (5.5) */
			return;
		}
		for (int i = 0; i < a->nrr && i < SPF_MAX_NAMES; i++)
			if (name_under(a->rr[i].data, e->target))
				snprintf(e->names[e->nnames++], 256, "%s",
				    a->rr[i].data);
		etrace(e, "spf: PTR: %d names, %d under %s", a->nrr, e->nnames,
		    e->target);
		next_name(e, W_PTR_A);
		return;
	case W_EXP: {
		struct spf_vars v;
		char	expl[512];
		const char *txt = NULL;

		if (a->status == DNS_OK && a->nrr == 1)
			txt = a->rr[0].data;
		vars(e, &v);
		v.domain = e->fr[0].domain;
		if (txt == NULL || spf_expand(txt, &v, 1, expl, sizeof(expl)) < 0) {
			etrace(e, "spf: exp=%s: no usable explanation", e->target);
			finish(e, SPF_FAIL, NULL);
			return;
		}
		etrace(e, "spf: exp=%s: \"%s\"", e->target, expl);
		finish(e, SPF_FAIL, expl);
		return;
	}
	default:
		return;
	}
}

/* dns_mech - count a DNS-querying term; 1 when the limit is passed */
static int
dns_mech(struct spf_eval *e)
{
	if (++e->dns_mechs > SPF_MAX_DNS_MECHS) {
		fail_with(e, SPF_PERMERROR, "more than %d DNS mechanisms",
		    SPF_MAX_DNS_MECHS);
		return 1;
	}
	return 0;
}

/* target - the expanded domain-spec of term t (or the current domain) */
static int
target(struct spf_eval *e, const char *spec)
{
	struct spf_vars v;

	if (spec == NULL) {
		snprintf(e->target, sizeof(e->target), "%s",
		    e->fr[e->depth - 1].domain);
		return 0;
	}
	vars(e, &v);
	if (spf_expand(spec, &v, 0, e->target, sizeof(e->target)) < 0) {
		fail_with(e, SPF_PERMERROR, "cannot expand \"%.100s\"", spec);
		return -1;
	}
	return 0;
}

/* spf_step - run terms until one needs DNS or the record ends */
static void
spf_step(struct spf_eval *e)
{
	struct spf_frame *f = &e->fr[e->depth - 1];

	if (!f->loaded) {
		if (!domain_ok(f->domain)) {
			etrace(e, "spf: \"%s\" is not a domain name", f->domain);
			if (e->depth == 1 && !f->redirected) {
				finish(e, SPF_NONE, NULL);
				return;
			}
			fail_with(e, SPF_PERMERROR, "\"%.100s\" is not a domain "
			    "name", f->domain);
			return;
		}
		ask(e, W_RECORD, f->domain, DNS_T_TXT);
		return;
	}
	while (f->term < f->rec.nterms) {
		const struct spf_term *t = &f->rec.terms[f->term];
		char	rev[128];

		switch (t->mech) {
		case SPF_M_ALL:
			matched(e);
			return;
		case SPF_M_IP4:
		case SPF_M_IP6: {
			struct cidr c = { t->ip, t->mech == SPF_M_IP4 ? t->cidr4 :
			    t->cidr6 };

			addr_ip_mask(&c.net, c.prefix);
			if (c.net.family == e->q.ip.family &&
			    addr_cidr_match(&c, &e->q.ip)) {
				matched(e);
				return;
			}
			f->term++;
			continue;
		}
		case SPF_M_INCLUDE:
			if (dns_mech(e) || target(e, t->spec) < 0)
				return;
			if (e->depth >= SPF_MAX_DEPTH) {
				fail_with(e, SPF_PERMERROR, "includes nested too "
				    "deep");
				return;
			}
			etrace(e, "spf: %s: include:%s", f->domain, e->target);
			push(e, e->target);
			spf_step(e);
			return;
		case SPF_M_A:
			if (dns_mech(e) || target(e, t->spec) < 0)
				return;
			ask(e, W_A, e->target, e->q.ip.family == AF_INET ?
			    DNS_T_A : DNS_T_AAAA);
			return;
		case SPF_M_MX:
			if (dns_mech(e) || target(e, t->spec) < 0)
				return;
			ask(e, W_MX, e->target, DNS_T_MX);
			return;
		case SPF_M_PTR:
			if (dns_mech(e) || target(e, t->spec) < 0)
				return;
			ptr_qname(&e->q.ip, rev, sizeof(rev));
			ask(e, W_PTR, rev, DNS_T_PTR);
			return;
		case SPF_M_EXISTS:
			if (dns_mech(e) || target(e, t->spec) < 0)
				return;
			ask(e, W_EXISTS, e->target, DNS_T_A);
			return;
		}
	}
	/* no term matched: redirect= (unless there is an "all") or neutral */
	if (f->rec.redirect != NULL && !f->rec.has_all) {
		char	*spec = f->rec.redirect;

		if (dns_mech(e))
			return;
		f->rec.redirect = NULL;
		if (target(e, spec) < 0) {
			free(spec);
			return;
		}
		free(spec);
		etrace(e, "spf: %s: redirect=%s", f->domain, e->target);
		spf_record_free(&f->rec);
		snprintf(f->domain, sizeof(f->domain), "%s", e->target);
		f->loaded = 0;
		f->term = 0;
		f->redirected = 1;
		spf_step(e);
		return;
	}
	etrace(e, "spf: %s: no term matched", f->domain);
	frame_end(e, SPF_NEUTRAL);
}

/* spf_check - see spf.h */
void
spf_check(struct resolver *r, const struct spf_query *q, spf_done_fn *done,
    spf_trace_fn *trace, void *arg)
{
	struct spf_eval *e = calloc(1, sizeof(*e));
	const char *at;

	if (e == NULL) {
		struct spf_outcome o = { .result = SPF_TEMPERROR };

		snprintf(o.detail, sizeof(o.detail), "out of memory");
		done(arg, &o);
		return;
	}
	e->r = r;
	e->q = *q;
	e->done = done;
	e->trace = trace;
	e->arg = arg;
	snprintf(e->helo, sizeof(e->helo), "%s", q->helo ? q->helo : "");
	snprintf(e->receiver, sizeof(e->receiver), "%s", q->receiver ?
	    q->receiver : "");
	snprintf(e->ptr_name, sizeof(e->ptr_name), "%s", q->ptr_name ?
	    q->ptr_name : "");
	if (q->helo_identity || q->sender == NULL || q->sender[0] == '\0')
		snprintf(e->sender, sizeof(e->sender), "postmaster@%s", e->helo);
	else
		snprintf(e->sender, sizeof(e->sender), "%s", q->sender);
	at = strrchr(e->sender, '@');
	if (at == NULL) {
		/* RFC 7208 4.3: a sender without "@" is a domain */
		snprintf(e->sdomain, sizeof(e->sdomain), "%s", e->sender);
		snprintf(e->local, sizeof(e->local), "postmaster");
	} else {
		snprintf(e->sdomain, sizeof(e->sdomain), "%s", at + 1);
		snprintf(e->local, sizeof(e->local), "%.*s",
		    (int)(at - e->sender), e->sender);
		if (e->local[0] == '\0')
			snprintf(e->local, sizeof(e->local), "postmaster");
	}
	if (e->sdomain[0] != '\0' && e->sdomain[strlen(e->sdomain) - 1] == '.')
		e->sdomain[strlen(e->sdomain) - 1] = '\0';
	push(e, e->sdomain);
	spf_step(e);
}

/*
 * fuzz_sqlcf.c - libFuzzer target for the pgsql/mysql table file parser
 *
 * Input: byte 0 picks the type (bit 0: mysql), then a table file,
 * optionally followed by "\n%%\n" and key lines. A file that parses is
 * asked for every key: sqlcf_bind(), sqlcf_render() with an escaper that
 * doubles quotes, and sqlcf_result_add() of the key and of the file's
 * words. Invariants: a failed parse sets a message starting with the
 * path; the libpq text holds one "$N" per parameter; the rendered MariaDB
 * text has an even number of quotes outside what the query writer
 * wrote (a value never ends a literal); results stay within bounds.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sqlcf.h"

/* esc - doubles quotes, like a standard-conforming server wants */
static size_t
esc(void *arg, char *to, const char *from, size_t len)
{
	size_t	n = 0;

	(void)arg;
	for (size_t i = 0; i < len; i++) {
		if (from[i] == '\'')
			to[n++] = '\'';
		to[n++] = from[i];
	}
	to[n] = '\0';
	return n;
}

/* quotes - count of ' in s */
static size_t
quotes(const char *s)
{
	size_t	n = 0;

	for (; *s; s++)
		n += *s == '\'';
	return n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sqlcf cf;
	struct sqlcf_bind *b;
	struct sqlcf_result *r;
	char	err[256], *copy, *sep, *keys = NULL, *line, *save = NULL;
	size_t	tlen;
	int	n;

	if (size < 1 || size > 64 * 1024)
		return 0;
	copy = malloc(size);
	memcpy(copy, data + 1, size - 1);
	copy[size - 1] = '\0';
	tlen = size - 1;
	if ((sep = memmem(copy, tlen, "\n%%\n", 4)) != NULL) {
		keys = sep + 4;
		tlen = (size_t)(sep - copy);
	}
	err[0] = '\0';
	if (sqlcf_parse(&cf, (data[0] & 1) ? SQLCF_MYSQL : SQLCF_PGSQL, copy,
	    tlen, "f.cf", err, sizeof(err)) < 0) {
		if (strncmp(err, "f.cf", 4) != 0)
			abort();
		free(copy);
		return 0;
	}
	{
		int	dollars = 0;

		/* '$' of the text segments (inside literals) + one per $N */
		for (const char *p = cf.pgtext; *p; p++)
			dollars += *p == '$';
		for (int i = 0; i < cf.nsegs; i++)
			for (const char *p = cf.segs[i].sql; p && *p; p++)
				dollars -= *p == '$';
		if (dollars != cf.nparams)
			abort();
	}
	b = malloc(sizeof(*b));
	r = malloc(sizeof(*r));
	/* the base quote count: the query rendered with empty values */
	for (int i = 0; i < SQLCF_MAXPARAM; i++)
		b->val[i] = "";
	{
		char   *base = sqlcf_render(&cf, b, esc, NULL, NULL);
		size_t	bq = quotes(base);

		free(base);
		for (line = keys ? strtok_r(keys, "\n", &save) : NULL; line;
		    line = strtok_r(NULL, "\n", &save)) {
			(void)sqlcf_eligible(&cf, line);
			n = sqlcf_bind(&cf, line, b);
			if (n >= 0) {
				size_t	len, vq = 0;
				char   *sql = sqlcf_render(&cf, b, esc, NULL,
				    &len);

				if (n != cf.nparams || strlen(sql) != len)
					abort();
				for (int i = 0; i < n; i++) {
					if (strlen(b->val[i]) > SQLCF_VALUE_MAX)
						abort();
					vq += 2 * quotes(b->val[i]);
				}
				if (quotes(sql) != bq + vq)
					abort();
				free(sql);
			}
			sqlcf_result_init(r);
			for (int k = 0; k < 3; k++) {
				if (sqlcf_result_add(&cf, line, k == 1 ? copy :
				    line, r) < 0)
					break;
				if (r->len > SQLCF_RESULT_MAX ||
				    strlen(r->buf) != r->len)
					abort();
			}
		}
	}
	free(b);
	free(r);
	sqlcf_free(&cf);
	free(copy);
	return 0;
}

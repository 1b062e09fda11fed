/*
 * log_test.c - the log line built piece by piece (log_begin, log_put,
 * log_put_esc, log_end) gives the text log_escape() and a format would,
 * and log_escape() itself: escaping, cutting, its plain-text fast path.
 * Lines go to stderr (a temporary file here) and are read back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "log.h"
#include "tap.h"

static char path[] = "/tmp/policyd-log-test.XXXXXX";
static FILE *in;

/* last_line - the next line written to stderr, without the header */
static const char *
last_line(void)
{
	static char buf[8192];
	char   *p;

	log_flush();
	if (fgets(buf, sizeof(buf), in) == NULL)
		return "(no line)";
	buf[strcspn(buf, "\n")] = '\0';
	/* "YYYY-mm-ddTHH:MM:SS.mmm policyd: " */
	if ((p = strstr(buf, " policyd: ")) == NULL || p - buf != 23)
		return "(no header)";
	return p + 10;
}

/* one_piece - a line of one escaped piece against log_escape() */
static void
one_piece(const char *s, size_t n, size_t max, const char *name)
{
	struct log_line ll;
	char	want[8192];

	log_escape(want, max, s, n);
	ok(log_begin(&ll, LOG_L_INFO) == 0, "log_begin");
	log_put_esc(&ll, s, n, max);
	log_end(&ll);
	is_str(last_line(), want, name);
}

int
main(void)
{
	struct log_line ll;
	char	buf[64], big[3000];
	int	fd;

	if ((fd = mkstemp(path)) < 0 || dup2(fd, STDERR_FILENO) < 0)
		return 99;
	close(fd);
	if ((in = fopen(path, "r")) == NULL)
		return 99;
	unlink(path);
	log_init("policyd", 1, LOG_MAIL);
	log_set_level(LOG_L_INFO);

	/* log_escape */
	is_str(log_escape(buf, sizeof(buf), "plain text", 10), "plain text",
	    "plain text as it is");
	is_str(log_escape(buf, sizeof(buf), "a\\b\nc\td\re\x01" "f\x7f\xc3\xa9", 14),
	    "a\\\\b\\nc\\td\\re\\x01f\\x7f\\xc3\\xa9", "odd bytes escaped");
	is_str(log_escape(buf, 8, "abcd", 4), "abcd", "fits exactly");
	is_str(log_escape(buf, 8, "abcde", 5), "abcd...", "cut with ...");
	is_str(log_escape(buf, 8, "ab\ncdef", 7), "ab\\n...", "cut after an escape");
	is_str(log_escape(buf, 1, "abc", 3), "", "no room");
	{
		/* every byte, alone and inside plain text: the fast path's
		 * table says "plain" exactly for printable ASCII but '\\' */
		int	bad = 0;

		for (int c = 0; c < 256; c++) {
			char	src[3] = { 'a', (char)c, 'b' }, want[8];
			int	plain = c >= 0x20 && c < 0x7f && c != '\\';

			if (plain)
				snprintf(want, sizeof(want), "a%cb", c);
			else if (c == '\\' || c == '\n' || c == '\r' || c == '\t')
				snprintf(want, sizeof(want), "a\\%cb", c == '\\' ?
				    '\\' : c == '\n' ? 'n' : c == '\r' ? 'r' : 't');
			else
				snprintf(want, sizeof(want), "a\\x%02xb", c);
			if (strcmp(log_escape(buf, sizeof(buf), src, 3), want) != 0) {
				printf("# byte 0x%02x: %s, want %s\n", c, buf, want);
				bad++;
			}
		}
		ok(bad == 0, "each of the 256 bytes escaped as it should be");
	}
	{
		/* the fast path looks at eight bytes at a time: a byte that
		 * needs escaping at every place of a 24-byte text */
		static const unsigned char odd[] = { 0x00, 0x01, 0x1f, 0x20, 0x21,
		    0x5b, 0x5c, 0x5d, 0x7e, 0x7f, 0x80, 0x9f, 0xa0, 0xfe, 0xff,
		    '\n' };
		int	bad = 0;

		for (size_t k = 0; k < sizeof(odd); k++)
			for (int pos = 0; pos < 24; pos++) {
				char	src[24], want[128];
				size_t	o = 0;

				for (int i = 0; i < 24; i++) {
					unsigned char c = i == pos ? odd[k] :
					    (unsigned char)('A' + i);

					src[i] = (char)c;
					if (c >= 0x20 && c < 0x7f && c != '\\')
						want[o++] = (char)c;
					else if (c == '\\' || c == '\n')
						o += (size_t)sprintf(want + o, "\\%c",
						    c == '\n' ? 'n' : '\\');
					else
						o += (size_t)sprintf(want + o,
						    "\\x%02x", c);
				}
				want[o] = '\0';
				if (strcmp(log_escape(buf, sizeof(buf), src, 24),
				    want) != 0) {
					printf("# 0x%02x at %d: %s\n", odd[k], pos,
					    buf);
					bad++;
				}
			}
		ok(bad == 0, "a byte to escape at each of 24 places");
	}

	/* a line of pieces: as printf and log_escape would make it */
	ok(log_begin(&ll, LOG_L_INFO) == 0, "log_begin");
	log_put(&ll, "rule=", 5);
	log_put(&ll, "greylist", 8);
	log_put(&ll, " sender=<", 9);
	log_put_esc(&ll, "a\nb@example.com", 15, 512);
	log_put(&ll, ">", 1);
	log_end(&ll);
	is_str(last_line(), "rule=greylist sender=<a\\nb@example.com>",
	    "a line of pieces");

	one_piece("user@example.net", 16, 512, "plain");
	one_piece("us\x7f" "er@ex\\ample", 14, 512, "escaped");
	memset(big, 'x', sizeof(big));
	one_piece(big, sizeof(big), 64, "cut at the field's size");
	big[10] = '\n';
	one_piece(big, sizeof(big), 64, "cut, with an escape");
	one_piece("", 0, 64, "empty");

	/* a piece longer than the rest of the line is cut to the line */
	ok(log_begin(&ll, LOG_L_INFO) == 0, "log_begin");
	for (int i = 0; i < 4; i++)
		log_put_esc(&ll, big, sizeof(big), sizeof(big) + 8);
	log_end(&ll);
	ok(strlen(last_line()) < 4096, "a line is at most the line size");

	/* levels */
	log_set_level(LOG_L_WARN);
	ok(log_begin(&ll, LOG_L_INFO) < 0, "not wanted below the level");
	ok(log_begin(&ll, LOG_L_WARN) == 0, "warning");
	log_put(&ll, "w", 1);
	log_end(&ll);
	is_str(last_line(), "warning: w", "the level's tag");
	return tap_done();
}

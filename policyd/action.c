/*++
 * NAME
 *	action.c - parse and classify access(5) actions
 *--*/
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "action.h"

static const struct {
	const char *word;
	size_t	len;
	enum action_kind kind;
	int	needs_text;		/* 1: text required */
} action_words[] = {
#define W(word)	word, sizeof(word) - 1	/* the word and its length */
	{ W("DUNNO"), ACT_DUNNO, 0 },
	{ W("OK"), ACT_OK, 0 },
	{ W("REJECT"), ACT_REJECT, 0 },
	{ W("DEFER"), ACT_DEFER, 0 },
	{ W("DEFER_IF_PERMIT"), ACT_DEFER_IF_PERMIT, 0 },
	{ W("DEFER_IF_REJECT"), ACT_DEFER_IF_REJECT, 0 },
	{ W("HOLD"), ACT_HOLD, 0 },
	{ W("DISCARD"), ACT_DISCARD, 0 },
	{ W("PREPEND"), ACT_PREPEND, 1 },
	{ W("WARN"), ACT_WARN, 0 },
	{ W("INFO"), ACT_INFO, 0 },
	{ W("FILTER"), ACT_FILTER, 1 },
	{ W("REDIRECT"), ACT_REDIRECT, 1 },
#undef W
};

/* action_parse - validate an action text */
enum action_kind
action_parse(const char *text, char *err, size_t errlen)
{
	size_t	wl;
	const char *rest;

	/* the result of most rules for most requests: no scan needed */
	if (text[0] == 'D' && strcmp(text, "DUNNO") == 0)
		return ACT_DUNNO;
	for (wl = 0; text[wl] != ' ' && text[wl] != '\t' && text[wl]; wl++)
		continue;
	rest = text + wl;
	while (*rest == ' ' || *rest == '\t')
		rest++;
	for (const char *p = text; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			snprintf(err, errlen, "control character in action");
			return ACT_INVALID;
		}
	if (wl == 3 && isdigit((unsigned char)text[0]) &&
	    isdigit((unsigned char)text[1]) && isdigit((unsigned char)text[2])) {
		if (text[0] != '4' && text[0] != '5') {
			snprintf(err, errlen, "reply code %.3s is not 4NN or 5NN",
			    text);
			return ACT_INVALID;
		}
		return ACT_CODE;
	}
	for (size_t i = 0; i < sizeof(action_words) / sizeof(action_words[0]);
	    i++) {
		/* the first letter first: this runs for every rule's result */
		if ((text[0] & ~0x20) != action_words[i].word[0] ||
		    action_words[i].len != wl ||
		    strncasecmp(text, action_words[i].word, wl) != 0)
			continue;
		if (action_words[i].needs_text && *rest == '\0') {
			snprintf(err, errlen, "%s needs an argument",
			    action_words[i].word);
			return ACT_INVALID;
		}
		if (action_words[i].kind == ACT_PREPEND &&
		    strchr(rest, ':') == NULL) {
			snprintf(err, errlen, "PREPEND needs \"header: value\"");
			return ACT_INVALID;
		}
		if (action_words[i].kind == ACT_FILTER &&
		    strchr(rest, ':') == NULL) {
			snprintf(err, errlen, "FILTER needs transport:destination");
			return ACT_INVALID;
		}
		if (action_words[i].kind == ACT_REDIRECT &&
		    strchr(rest, '@') == NULL) {
			snprintf(err, errlen, "REDIRECT needs user@domain");
			return ACT_INVALID;
		}
		return action_words[i].kind;
	}
	snprintf(err, errlen, "unknown action \"%.*s\"", (int)(wl > 40 ? 40 : wl),
	    text);
	return ACT_INVALID;
}

/* action_is_final - does this result decide the request? */
int
action_is_final(enum action_kind kind)
{
	switch (kind) {
	case ACT_DUNNO:
	case ACT_PREPEND:
	case ACT_WARN:
	case ACT_INFO:
	case ACT_INVALID:
		return 0;
	default:
		return 1;
	}
}

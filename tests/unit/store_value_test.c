/*
 * store_value_test.c - unit tests for store_value.c: the accessors that
 * read a reply for store_command() callers, on replies parsed from RESP
 * bytes by the client library's own reader (no server)
 */
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "store.h"
#include "tap.h"

/* parse - one reply from RESP bytes (freed by the caller) */
static redisReply *
parse(const char *resp, size_t len)
{
	redisReader *rd = redisReaderCreate();
	void	*reply = NULL;

	if (rd == NULL)
		return NULL;
	if (redisReaderFeed(rd, resp, len) != REDIS_OK ||
	    redisReaderGetReply(rd, &reply) != REDIS_OK)
		reply = NULL;
	redisReaderFree(rd);
	return reply;
}

#define V(r)	((const struct store_value *)(const void *)(r))
#define PARSE(s)	parse((s), sizeof(s) - 1)

/* test_scalars - integer, string (with a NUL inside), status, error, nil */
static void
test_scalars(void)
{
	redisReply *r;
	size_t	len = 99;

	r = PARSE(":-42\r\n");
	is_int(store_value_type(V(r)), STORE_V_INT, "integer: type");
	ok(store_value_int(V(r)) == -42, "integer: value");
	ok(store_value_str(V(r), &len) == NULL && len == 0,
	    "integer: no string");
	is_int((int)store_value_count(V(r)), 0, "integer: no elements");
	freeReplyObject(r);

	r = PARSE("$5\r\na\0b\r\n\r\n");
	is_int(store_value_type(V(r)), STORE_V_STR, "bulk string: type");
	ok(store_value_str(V(r), &len) != NULL && len == 5 &&
	    memcmp(store_value_str(V(r), NULL), "a\0b\r\n", 5) == 0,
	    "bulk string: 5 bytes with a NUL and CRLF inside");
	ok(store_value_str(V(r), NULL)[5] == '\0', "NUL-terminated too");
	ok(store_value_int(V(r)) == 0, "string: no integer");
	freeReplyObject(r);

	r = PARSE("+OK\r\n");
	is_int(store_value_type(V(r)), STORE_V_STR, "status: a string");
	is_str(store_value_str(V(r), NULL), "OK", "status: text");
	freeReplyObject(r);

	r = PARSE("-WRONGTYPE Operation against a key\r\n");
	is_int(store_value_type(V(r)), STORE_V_ERR, "error: type");
	is_str(store_value_str(V(r), &len), "WRONGTYPE Operation against a key",
	    "error: text");
	freeReplyObject(r);

	r = PARSE("$-1\r\n");
	is_int(store_value_type(V(r)), STORE_V_NIL, "nil: type");
	ok(store_value_str(V(r), NULL) == NULL, "nil: no string");
	freeReplyObject(r);

	is_int(store_value_type(NULL), STORE_V_NIL, "no reply: nil");
	ok(store_value_elem(NULL, 0) == NULL && store_value_count(NULL) == 0,
	    "no reply: no elements");
}

/* test_arrays - a SCAN answer, an HGETALL answer, bounds */
static void
test_arrays(void)
{
	redisReply *r;
	const struct store_value *keys;
	size_t	len;

	r = PARSE("*2\r\n$2\r\n17\r\n*2\r\n$4\r\npd:a\r\n$4\r\npd:b\r\n");
	is_int(store_value_type(V(r)), STORE_V_ARRAY, "SCAN: an array");
	is_int((int)store_value_count(V(r)), 2, "SCAN: cursor and keys");
	is_str(store_value_str(store_value_elem(V(r), 0), NULL), "17",
	    "SCAN: cursor");
	keys = store_value_elem(V(r), 1);
	is_int((int)store_value_count(keys), 2, "SCAN: two keys");
	is_str(store_value_str(store_value_elem(keys, 1), NULL), "pd:b",
	    "SCAN: second key");
	ok(store_value_elem(keys, 2) == NULL, "past the end: NULL");
	ok(store_value_elem(store_value_elem(keys, 0), 0) == NULL,
	    "element of a string: NULL");
	freeReplyObject(r);

	r = PARSE("*2\r\n$6\r\n4\xc0\x00\x02\xff\x01\r\n$3\r\n123\r\n");
	ok(store_value_str(store_value_elem(V(r), 0), &len) != NULL &&
	    len == 6, "HGETALL: a binary field keeps its length");
	is_str(store_value_str(store_value_elem(V(r), 1), NULL), "123",
	    "HGETALL: value");
	freeReplyObject(r);

	r = PARSE("*0\r\n");
	is_int(store_value_type(V(r)), STORE_V_ARRAY, "empty array: type");
	ok(store_value_count(V(r)) == 0 && store_value_elem(V(r), 0) == NULL,
	    "empty array: nothing in it");
	freeReplyObject(r);

	r = PARSE("*-1\r\n");
	is_int(store_value_type(V(r)), STORE_V_NIL, "nil array: nil");
	freeReplyObject(r);
}

int
main(void)
{
	test_scalars();
	test_arrays();
	return tap_done();
}

/*
 * store_value.c - a reply's parts for store_command() callers (store.h)
 *
 * A store_value is the reply as the Redis client library parsed it; these
 * accessors are the only code outside the state layer that reads one, so
 * no caller sees the library's types (RESP2: a status is a string).
 */
#include <stddef.h>

#include <hiredis/hiredis.h>

#include "store.h"

#define R(v)	((const redisReply *)(const void *)(v))

/* store_value_type - the kind of reply (NIL for none) */
enum store_vtype
store_value_type(const struct store_value *v)
{
	if (v == NULL)
		return STORE_V_NIL;
	switch (R(v)->type) {
	case REDIS_REPLY_INTEGER:
		return STORE_V_INT;
	case REDIS_REPLY_STRING:
	case REDIS_REPLY_STATUS:
		return STORE_V_STR;
	case REDIS_REPLY_ARRAY:
		return STORE_V_ARRAY;
	case REDIS_REPLY_ERROR:
		return STORE_V_ERR;
	default:
		return STORE_V_NIL;
	}
}

/* store_value_int - an integer reply's value (0 for other types) */
long long
store_value_int(const struct store_value *v)
{
	return store_value_type(v) == STORE_V_INT ? R(v)->integer : 0;
}

/* store_value_str - a string, status or error reply's bytes, or NULL */
const char *
store_value_str(const struct store_value *v, size_t *len)
{
	enum store_vtype t = store_value_type(v);

	if (t != STORE_V_STR && t != STORE_V_ERR) {
		if (len != NULL)
			*len = 0;
		return NULL;
	}
	if (len != NULL)
		*len = R(v)->len;
	return R(v)->str;
}

/* store_value_count - an array's elements (0 for other types) */
size_t
store_value_count(const struct store_value *v)
{
	return store_value_type(v) == STORE_V_ARRAY ? R(v)->elements : 0;
}

/* store_value_elem - element i of an array, or NULL */
const struct store_value *
store_value_elem(const struct store_value *v, size_t i)
{
	if (i >= store_value_count(v))
		return NULL;
	return (const struct store_value *)(const void *)R(v)->element[i];
}

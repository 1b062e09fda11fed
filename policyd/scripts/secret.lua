-- secret.lua: the installation's shared secret for keyed hashes (the
-- ratelimit keys), made once by whichever instance asks first and then
-- the same for every instance on this Redis.
-- KEYS[1]  the secret's key (a string of 32 hex digits, no TTL)
-- ARGV[1]  a candidate: 32 hex digits from the caller's random source
-- returns {a, b, c, d}: the secret as four 32-bit integers
redis.call('SET', KEYS[1], ARGV[1], 'NX')
local s = redis.call('GET', KEYS[1])
if type(s) ~= 'string' or #s ~= 32 or not string.match(s, '^%x+$') then
  return redis.error_reply('ERR policyd: ' .. KEYS[1] ..
    ' is not a 32-hex-digit secret')
end
return {tonumber(string.sub(s, 1, 8), 16), tonumber(string.sub(s, 9, 16), 16),
        tonumber(string.sub(s, 17, 24), 16), tonumber(string.sub(s, 25, 32), 16)}

-- greylist.lua: one greylist decision, atomically.
-- KEYS[1] triplet key   KEYS[2] auto-whitelist counter of the client network
-- ARGV: delay retry_window max_age awl_count(0 = off)
-- The time is Redis's (TIME), never the asking host's: instances whose
-- clocks differ still agree on every delay.
-- value of KEYS[1]: first_seen * 2 + passed
-- returns {status, seconds, awl}:
--   0 new triplet (defer, seconds = delay)
--   1 early retry (defer, seconds = time left)
--   2 first pass after the delay (seconds = how long it was delayed)
--   3 known triplet that passed before (seconds = age)
--   4 client network auto-whitelisted (awl = successful retries)
if redis.replicate_commands then pcall(redis.replicate_commands) end
local now = tonumber(redis.call('TIME')[1])
local delay = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local maxage = tonumber(ARGV[3])
local awlmin = tonumber(ARGV[4])
if awlmin > 0 then
  local n = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
  if n >= awlmin then
    redis.call('EXPIRE', KEYS[2], maxage)
    return {4, 0, n}
  end
end
local v = tonumber(redis.call('GET', KEYS[1]) or '')
if v then
  local first = math.floor(v / 2)
  local age = now - first
  if v % 2 == 1 then
    redis.call('EXPIRE', KEYS[1], maxage)
    return {3, age, 0}
  end
  if age < window then
    if age >= delay then
      redis.call('SET', KEYS[1], first * 2 + 1, 'EX', maxage)
      local n = 0
      if awlmin > 0 then
        n = redis.call('INCR', KEYS[2])
        redis.call('EXPIRE', KEYS[2], maxage)
      end
      return {2, age, n}
    end
    return {1, delay - age, 0}
  end
end
redis.call('SET', KEYS[1], now * 2, 'EX', window)
return {0, delay, 0}

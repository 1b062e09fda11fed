-- greylist.lua: one greylist decision, atomically.
--
-- Triplets live in small hashes ("buckets", kept in Redis's compact
-- listpack encoding), not one key each: a bucket is chosen by the
-- triplet's hash, under a hash tag chosen by the client's, so that the
-- client's auto-whitelist counter shares the slot (Redis Cluster).
-- KEYS[1]  the triplet's bucket          field ARGV[1] (client name + 4)
-- KEYS[2]  the client's counter bucket   field ARGV[2] ("a" client name)
-- KEYS[3]  (optional) the triplet's key of the old format (a string
--          first_seen*2+passed per triplet), read until it expires
-- ARGV: field awlfield delay retry_window max_age awl_count(0 = off) sweep
-- A triplet's value is T*2+passed, T in seconds since 2025-01-01 (Redis's
-- clock, TIME): while waiting the first sighting, once passed the last
-- one (renewed at most every max_age/32). An entry is dead once it is
-- older than retry_window (waiting) or max_age (passed); dead entries are
-- removed when a write with sweep = 1 comes by (the caller sets it for
-- 1 in 16 new triplets), and a bucket no write touched for max_age
-- expires whole. The counter's value is count*2^32+T (last pass).
-- returns {status, seconds, awl}:
--   0 new triplet (defer, seconds = delay)
--   1 early retry (defer, seconds = time left)
--   2 first pass after the delay (seconds = how long it was delayed)
--   3 known triplet that passed before (seconds = since last seen)
--   4 client network auto-whitelisted (awl = successful retries)
if redis.replicate_commands then pcall(redis.replicate_commands) end
local EPOCH = 1735689600
local now = tonumber(redis.call('TIME')[1]) - EPOCH
local field, afield = ARGV[1], ARGV[2]
local delay = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local maxage = tonumber(ARGV[5])
local awlmin = tonumber(ARGV[6])
local sweep = ARGV[7] == '1'
local B32 = 4294967296

-- the counter: count and last pass, or 0 when dead
local function awl_count()
  local a = tonumber(redis.call('HGET', KEYS[2], afield) or '')
  if a == nil then return 0 end
  local n = math.floor(a / B32)
  if now - (a - n * B32) >= maxage then return 0 end
  return n
end

if awlmin > 0 then
  local n = awl_count()
  if n >= awlmin then
    return {4, 0, n}
  end
end

local v = tonumber(redis.call('HGET', KEYS[1], field) or '')
if v == nil and KEYS[3] then
  -- migration: the old key's first_seen*2+passed, absolute time
  local old = tonumber(redis.call('GET', KEYS[3]) or '')
  if old then
    redis.call('DEL', KEYS[3])
    if old % 2 == 1 then
      v = now * 2 + 1
    else
      v = (math.floor(old / 2) - EPOCH) * 2
    end
    redis.call('HSET', KEYS[1], field, v)
    redis.call('EXPIRE', KEYS[1], maxage)
  end
end

if v then
  local t = math.floor(v / 2)
  local age = now - t
  if v % 2 == 1 then
    if age < maxage then
      if age > maxage / 32 then
        redis.call('HSET', KEYS[1], field, now * 2 + 1)
        redis.call('EXPIRE', KEYS[1], maxage)
      end
      return {3, age, 0}
    end
  elseif age < window then
    if age >= delay then
      redis.call('HSET', KEYS[1], field, now * 2 + 1)
      redis.call('EXPIRE', KEYS[1], maxage)
      local n = 0
      if awlmin > 0 then
        n = awl_count() + 1
        redis.call('HSET', KEYS[2], afield, n * B32 + now)
        redis.call('EXPIRE', KEYS[2], maxage)
      end
      return {2, age, n}
    end
    return {1, delay - age, 0}
  end
end

if sweep then
  local all = redis.call('HGETALL', KEYS[1])
  local dead = {}
  for i = 1, #all, 2 do
    local f, x = all[i], tonumber(all[i + 1])
    if x == nil then
      dead[#dead + 1] = f
    elseif string.byte(f, 1) == 97 then   -- "a": a client's counter
      local n = math.floor(x / B32)
      if now - (x - n * B32) >= maxage then dead[#dead + 1] = f end
    else
      local lim = (x % 2 == 1) and maxage or window
      if now - math.floor(x / 2) >= lim then dead[#dead + 1] = f end
    end
  end
  if #dead > 0 then redis.call('HDEL', KEYS[1], unpack(dead)) end
end
redis.call('HSET', KEYS[1], field, now * 2)
if redis.call('TTL', KEYS[1]) < window then
  redis.call('EXPIRE', KEYS[1], window)
end
return {0, delay, 0}

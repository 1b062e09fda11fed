-- greylist.lua: greylist decisions, each atomic (one call or a batch of
-- them: the end of the script says how they are laid out).
--
-- Triplets live in small hashes ("buckets", kept in Redis's compact
-- listpack encoding), not one key each: a bucket is chosen by the
-- triplet's hash, under a hash tag chosen by the client's, so that the
-- client's auto-whitelist counter shares the slot (Redis Cluster).
-- A call's keys:
--   1  the triplet's bucket          field: its first argument
--      (client name + 4)
--   2  the client's counter bucket   field "a" + client name
--   3  (optional) the triplet's key of the old format (a string
--      first_seen*2+passed per triplet), read until it expires
-- its arguments: the field, then 17 bytes, big-endian: delay,
--   retry_window, max_age, auto_whitelist (0 = off) as 32-bit integers,
--   then flags: 1 sweep the bucket if this triplet is new (the caller sets
--   it for 1 in 16 triplets), 2 skip reading the counter (the caller
--   knows the client is below auto_whitelist: a stale "no" only defers,
--   never passes)
-- (Numbers are packed because Lua's tonumber() of an argument costs more
-- than the rest of a decision.)
-- A triplet's value is T*2+passed, T in seconds since 2025-01-01 (Redis's
-- clock, TIME): while waiting the first sighting, once passed the last
-- one (renewed at most every max_age/32). An entry is dead once it is
-- older than retry_window (waiting) or max_age (passed); dead entries are
-- removed when a write with the sweep flag comes by, and a bucket no write
-- touched for its TTL (at least the life of its entries) expires whole.
-- The counter's value is count*2^32+T (last pass).
-- A call answers one integer: status + 8 * seconds + 2^33 * (count + 1),
-- count the client's counter when it was read (0 in that place: not
-- read):
--   0 new triplet (defer, seconds = delay)
--   1 early retry (defer, seconds = time left)
--   2 first pass after the delay (seconds = how long it was delayed)
--   3 known triplet that passed before (seconds = since last seen)
--   4 client network auto-whitelisted (seconds = since the counter's
--     last pass: the whitelisting ends max_age after it)
--
-- Called without keys: one step of a look through the database for
-- old-format keys (policyd stops reading them when none is left).
-- ARGV: the SCAN pattern of greylist keys, the cursor, the length of a
-- bucket's name; returns {next cursor, 1 if an old-format key was seen}.
if #KEYS == 0 then
  local r = redis.call('SCAN', ARGV[2], 'MATCH', ARGV[1], 'COUNT', 1000)
  local n, old = tonumber(ARGV[3]), 0
  for _, k in ipairs(r[2]) do
    if #k ~= n then old = 1 end
  end
  return {tonumber(r[1]), old}
end

local EPOCH = 1735689600
local B32 = 4294967296
local K = 8589934592    -- 2^33: where the count goes in the answer
local now = redis.call('TIME')[1] - EPOCH

-- decide - one call: the keys k1, k2 (and k3), the field, the numbers
local function decide(k1, k2, k3, field, params)
  local delay, window, maxage, awlmin, flags = struct.unpack('>I4I4I4I4B',
    params)
  local afield, count = nil, -1

  -- the counter: count and last pass (count 0 when dead). Read here and,
  -- when skipped here, on a pass below: written out twice, as a function
  -- (a closure made on every call) costs more than the read itself.
  if awlmin > 0 and flags < 2 then
    afield = 'a' .. string.sub(field, 1, -5)
    local a = tonumber(redis.call('HGET', k2, afield) or '')
    local since = 0
    count = 0
    if a then
      local n = math.floor(a / B32)
      since = now - (a - n * B32)
      if since < maxage then count = n end
    end
    if count >= awlmin then
      return 4 + 8 * math.max(since, 0) + K * (math.min(count, 1000000) + 1)
    end
  end

  local v = tonumber(redis.call('HGET', k1, field) or '')
  if v == nil and k3 then
    -- migration: the old key's first_seen*2+passed, absolute time
    local old = tonumber(redis.call('GET', k3) or '')
    if old then
      redis.call('DEL', k3)
      if old % 2 == 1 then
        v = now * 2 + 1
      else
        v = (math.floor(old / 2) - EPOCH) * 2
      end
      redis.call('HSET', k1, field, v)
      if redis.call('TTL', k1) < maxage then
        redis.call('EXPIRE', k1, maxage)
      end
    end
  end

  if v then
    local t = math.floor(v / 2)
    local age = now - t
    if v % 2 == 1 then
      if age < maxage then
        if age > maxage / 32 then
          redis.call('HSET', k1, field, now * 2 + 1)
          if redis.call('TTL', k1) < maxage then
            redis.call('EXPIRE', k1, maxage)
          end
        end
        return 3 + 8 * math.max(age, 0) + (count < 0 and 0 or K * (math.min(count, 1000000) + 1))
      end
    elseif age < window then
      if age >= delay then
        -- the key may hold waiting entries younger than max_age: only extend
        redis.call('HSET', k1, field, now * 2 + 1)
        if redis.call('TTL', k1) < maxage then
          redis.call('EXPIRE', k1, maxage)
        end
        if awlmin > 0 then
          if count < 0 then
            afield = 'a' .. string.sub(field, 1, -5)
            local a = tonumber(redis.call('HGET', k2, afield) or '')
            count = 0
            if a then
              local n = math.floor(a / B32)
              if now - (a - n * B32) < maxage then count = n end
            end
          end
          count = count + 1
          redis.call('HSET', k2, afield, count * B32 + now)
          if redis.call('TTL', k2) < maxage then
            redis.call('EXPIRE', k2, maxage)
          end
        end
        return 2 + 8 * age + (count < 0 and 0 or K * (math.min(count, 1000000) + 1))
      end
      return 1 + 8 * (delay - age) + (count < 0 and 0 or K * (math.min(count, 1000000) + 1))
    end
  end

  if flags % 2 == 1 then
    local all = redis.call('HGETALL', k1)
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
    if #dead > 0 then redis.call('HDEL', k1, unpack(dead)) end
  end
  redis.call('HSET', k1, field, now * 2)
  -- a new entry lives retry_window; extending by 1/16 more than that makes
  -- the next new entries of this bucket find the TTL long enough
  if redis.call('TTL', k1) < window then
    redis.call('EXPIRE', k1, window + math.floor(window / 16))
  end
  return 8 * delay + (count < 0 and 0 or K * (math.min(count, 1000000) + 1))
end

-- ARGV[1]: "B", then per call the number of its keys and of its other
-- arguments (a byte each); KEYS: every call's keys, ARGV[2..]: every
-- call's field and numbers (store_script_batched). One call answers what
-- decide() does (an error as an error reply); several answer an array,
-- in order, where a call that failed (a key of the wrong type) is -1 and
-- does not fail the others (its error goes to Redis's log).
local d = ARGV[1]
local n = (#d - 1) / 2
if n == 1 then
  return decide(KEYS[1], KEYS[2], KEYS[3], ARGV[2], ARGV[3])
end
local out, ko, ao = {}, 0, 2
for c = 1, n do
  local nkeys, nargs = string.byte(d, 2 * c, 2 * c + 1)
  local ok, v = pcall(decide, KEYS[ko + 1], KEYS[ko + 2],
    nkeys > 2 and KEYS[ko + 3] or nil, ARGV[ao], ARGV[ao + 1])
  if not ok then
    redis.log(redis.LOG_WARNING, 'policyd greylist: ' ..
      tostring(type(v) == 'table' and v.err or v))
    v = -1
  end
  out[c] = v
  ko, ao = ko + nkeys, ao + nargs
end
return out

-- ratelimit.lua: rate-limit decisions (check and account), each atomic.
-- GCRA per window: a window "LIMIT per SECONDS" stores its theoretical
-- arrival time (TAT, ms, Redis clock) in a hash field named SECONDS. A
-- request of COST units is allowed when, for EVERY window,
--   max(TAT, now) + COST * SECONDS*1000/LIMIT - now <= SECONDS*1000;
-- then every window's TAT advances. A refused request changes nothing.
--
-- KEYS[1] r{TAG}  hash: field SECONDS = TAT (ms); field "n" = until when
--                 a trip is not notified again (ms). PEXPIRE longest window.
-- KEYS[2] n{TAG}  (optional) set of client networks seen in the networks
--                 window, bounded at max_networks+1 members; EXPIRE window.
--
-- policyd (modes 1 charge, 2 refund COST), one call or a batch of them
-- (the end of the script says how they are laid out): a call's keys are
-- the two above, its first argument the numbers, packed big-endian
-- (Lua's tonumber() of an argument costs more than the rest of a
-- decision), in an order that one struct.unpack reads for one window:
-- mode (1 byte), cost (double), nwin (1 byte), the longest window in ms
-- (double), how long the caller knows the key lives (ms, double: 0
-- unknown), max_networks and networks_window (32-bit; used with the
-- second key), whether the network is known to be in the set (1 byte),
-- then per window limit and seconds (doubles); its next nwin arguments
-- the fields of the windows (SECONDS as text); then the client network
-- (with the second key). A call answers one integer,
--   status + 4 * flag + 8 * window + 128 * (seconds + 1) + 2^32 * networks
--   + 2^46 when the key's expiry was set (PEXPIRE)
-- status 0 allowed and charged (seconds: how long the networks set lives,
-- when it was looked at, else 0); 1 refused by window (1-based), retry in
-- seconds (-1: never), flag = first trip; 2 networks exceeded, seconds =
-- until the networks window ends, flag = this request raised the alert;
-- 3 refunded.
--
-- policyctl (modes 3 show, 4 reset), in text: ARGV: mode 0 nwin
-- {limit seconds}*nwin; returns {4, nwin, used_1, free_in_s_1, ...} or
-- {5, deleted_keys, 0, 0, 0}.
--
-- A TAT is written as text that any version of this script reads: an
-- integer with %d when it is one (the usual case: now is whole ms and
-- SECONDS*1000/LIMIT mostly is), else with all 17 digits. Formatting
-- with %.17g costs twice %d, and every redis.call a few thousand
-- instructions: this script is most of the Redis time of a decision.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local key, a = KEYS[1], ARGV[1]

if a == '3' or a == '4' then
  if a == '4' then
    return {5, redis.call('DEL', unpack(KEYS)), 0, 0, 0}
  end
  local nwin = tonumber(ARGV[3])
  local out = {4, nwin}
  for i = 1, nwin do
    local per = tonumber(ARGV[3 + 2 * i]) * 1000 / tonumber(ARGV[2 + 2 * i])
    local v = tonumber(redis.call('HGET', key, ARGV[3 + 2 * i]) or '')
    if v == nil or v < now then v = now end
    out[#out + 1] = math.ceil((v - now) / per - 1e-9)
    out[#out + 1] = math.ceil((v - now) / 1000)
  end
  return out
end

local format, byte = string.format, string.byte
local EXP = 70368744177664	-- 2^46

-- decide - one call: keys key (and nk), its arguments from ARGV[o]
local function decide(key, nk, o)
  local a = ARGV[o]
  local mode, cost, nwin, maxt, live, maxn, nwindow, member, l, s, pos =
    struct.unpack('>BdBddI4I4Bdd', a)

  if mode == 2 then
    for i = 1, nwin do
      if i > 1 then l, s, pos = struct.unpack('>dd', a, pos) end
      local v = redis.call('HGET', key, ARGV[o + i])
      if v then v = tonumber(v) end
      if v then
        v = v - cost * (s * 1000 / l)
        if v <= now then
          redis.call('HDEL', key, ARGV[o + i])
        else
          redis.call('HSET', key, ARGV[o + i], v % 1 == 0 and
            format('%d', v) or format('%.17g', v))
        end
      end
    end
    return 3
  end

  -- the compromised-account signal: distinct client networks in a
  -- window. member = 1: the caller knows the network is in the set (sets
  -- lose no member before they expire, and it knows when that is);
  -- otherwise an allowed answer's seconds say how long the set lives,
  -- so that it knows.
  local nets, life = 0, 0
  if nk then
    local alert = 0
    nets = redis.call('SCARD', nk)
    if nets <= maxn and (member == 0 or nets == 0) then
      local net = ARGV[o + 1 + nwin]
      if redis.call('SISMEMBER', nk, net) == 0 then
        redis.call('SADD', nk, net)
        nets = nets + 1
        life = redis.call('TTL', nk)
        if life < 0 then
          redis.call('EXPIRE', nk, nwindow)
          life = nwindow
        end
        if nets > maxn then alert = 1 end
      else
        life = redis.call('TTL', nk)
      end
    end
    if nets > maxn then
      local ttl = redis.call('TTL', nk)
      if ttl < -1 then ttl = -1 end
      return 2 + 4 * alert + 128 * (ttl + 1) + 4294967296 * nets
    end
    if life < 0 then life = 0 end
  end

  local ok = 128 * (life + 1) + 4294967296 * nets
  if cost <= 0 then
    return ok
  end
  -- every window: its new TAT, or the refusal of the first that is full
  local v1, new
  for i = 1, nwin do
    if i > 1 then l, s, pos = struct.unpack('>dd', a, pos) end
    local w = s * 1000
    local per = w / l		-- ms per unit
    local v = redis.call('HGET', key, ARGV[o + i])
    if v then v = tonumber(v) end
    if not v or v < now then v = now end
    v = v + cost * per
    -- tolerance: float rounding, never as much as half a unit
    if v - now > w + (per < 2 and per / 2 or 1) then
      local retry = math.ceil((v - now - w) / 1000)
      if retry < 1 then retry = 1 end
      if cost > l then retry = -1 end
      local first, x = 0, 0
      local nt = tonumber(redis.call('HGET', key, 'n') or '0') or 0
      if nt <= now then
        redis.call('HSET', key, 'n', now + w)
        redis.call('PEXPIRE', key, maxt)
        first, x = 1, EXP
      end
      return 1 + 4 * first + 8 * i + 128 * (retry + 1) +
        4294967296 * nets + x
    end
    if i == 1 then
      v1 = v
    else
      new = new or {}
      new[i] = v
    end
  end
  -- one HSET for every window; PEXPIRE unless the caller knows the key
  -- outlives every new TAT (and no field was new: the key may have been
  -- deleted since)
  local far = v1 - now
  local added
  if nwin == 1 then
    added = redis.call('HSET', key, ARGV[o + 1], v1 % 1 == 0 and
      format('%d', v1) or format('%.17g', v1))
  else
    local args = {'HSET', key, ARGV[o + 1], v1 % 1 == 0 and
      format('%d', v1) or format('%.17g', v1)}
    for i = 2, nwin do
      local v = new[i]
      args[#args + 1] = ARGV[o + i]
      args[#args + 1] = v % 1 == 0 and format('%d', v) or
        format('%.17g', v)
      if v - now > far then far = v - now end
    end
    added = redis.call(unpack(args))
  end
  if added > 0 or far >= live then
    redis.call('PEXPIRE', key, maxt)
    return ok + EXP
  end
  return ok
end

-- ARGV[1]: "B", then per call the number of its keys and of its
-- arguments (a byte each). One call answers what decide() does (an
-- error as an error reply); several answer an array, in order, where a
-- call that failed (a key of the wrong type) is -1 and does not fail the
-- others (its error goes to Redis's log).
local n = (#a - 1) / 2
if n == 1 then
  return decide(KEYS[1], KEYS[2], 2)
end
local out, ko, ao = {}, 0, 2
for c = 1, n do
  local nkeys, nargs = byte(a, 2 * c, 2 * c + 1)
  local ok, v = pcall(decide, KEYS[ko + 1], nkeys > 1 and KEYS[ko + 2] or
    nil, ao)
  if not ok then
    redis.log(redis.LOG_WARNING, 'policyd ratelimit: ' ..
      tostring(type(v) == 'table' and v.err or v))
    v = -1
  end
  out[c] = v
  ko, ao = ko + nkeys, ao + nargs
end
return out

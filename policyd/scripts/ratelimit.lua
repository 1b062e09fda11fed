-- ratelimit.lua: one rate-limit decision (check and account), atomically.
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
-- policyd (modes 1 charge, 2 refund COST): ARGV[1] the numbers, packed
-- big-endian (Lua's tonumber() of an argument costs more than the rest of
-- a decision): mode (1 byte), cost (double), nwin (1 byte), the longest
-- window in ms (double), how long the caller knows the key lives (ms,
-- double: 0 unknown), per window limit and seconds (doubles), then with
-- KEYS[2] max_networks and networks_window (32-bit) and whether the
-- network is known to be in the set (1 byte). ARGV[1 + i]
-- the field of window i (SECONDS as text); ARGV[2 + nwin] the client
-- network (with KEYS[2]). Returns one integer,
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
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local key = KEYS[1]

if string.byte(ARGV[1]) >= 48 then
  local nwin = tonumber(ARGV[3])
  if ARGV[1] == '4' then
    return {5, redis.call('DEL', unpack(KEYS)), 0, 0, 0}
  end
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

local mode, cost, nwin, maxt, live, pos = struct.unpack('>BdBdd', ARGV[1])
local EXP = 70368744177664	-- 2^46

if mode == 2 then
  for i = 1, nwin do
    local l, s
    l, s, pos = struct.unpack('>dd', ARGV[1], pos)
    local v = tonumber(redis.call('HGET', key, ARGV[1 + i]) or '')
    if v then
      v = v - cost * (s * 1000 / l)
      if v <= now then
        redis.call('HDEL', key, ARGV[1 + i])
      else
        redis.call('HSET', key, ARGV[1 + i], string.format('%.17g', v))
      end
    end
  end
  return 3
end

-- the compromised-account signal: distinct client networks in a window.
-- member = 1: the caller knows the network is in the set (sets lose no
-- member before they expire, and it knows when that is); otherwise an
-- allowed answer's seconds say how long the set lives, so that it knows.
local nets, life = 0, 0
if KEYS[2] then
  local maxn, nwindow, member = struct.unpack('>I4I4B', ARGV[1],
    pos + 16 * nwin)
  local nk, net, alert = KEYS[2], ARGV[2 + nwin], 0
  nets = redis.call('SCARD', nk)
  if nets <= maxn and (member == 0 or nets == 0) then
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
    return 2 + 4 * alert + 128 * (math.max(redis.call('TTL', nk), -1) + 1) +
      4294967296 * nets
  end
end

local ok = 128 * (math.max(life, 0) + 1) + 4294967296 * nets
if cost <= 0 then
  return ok
end
local new = {}
for i = 1, nwin do
  local l, s
  l, s, pos = struct.unpack('>dd', ARGV[1], pos)
  local w = s * 1000
  local per = w / l		-- ms per unit
  local v = tonumber(redis.call('HGET', key, ARGV[1 + i]) or '')
  if v == nil or v < now then v = now end
  v = v + cost * per
  -- tolerance: float rounding, never as much as half a unit
  if v - now > w + math.min(1, per / 2) then
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
    return 1 + 4 * first + 8 * i + 128 * (retry + 1) + 4294967296 * nets + x
  end
  new[i] = v
end
-- PEXPIRE unless the caller knows the key outlives every new TAT (and
-- no field was new: the key may have been deleted since)
local added, far = 0, 0
for i = 1, nwin do
  added = added + redis.call('HSET', key, ARGV[1 + i],
    string.format('%.17g', new[i]))
  if new[i] - now > far then far = new[i] - now end
end
if added > 0 or far >= live then
  redis.call('PEXPIRE', key, maxt)
  return ok + EXP
end
return ok

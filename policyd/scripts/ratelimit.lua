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
-- ARGV: mode cost nwin {limit seconds}*nwin [net max_networks networks_window]
--   mode 1 check and charge, 2 refund COST, 3 show, 4 reset
-- returns {status, a, b, c, d}:
--   1 charge: {0, 0, 0, 0, networks}                 allowed and charged
--             {1, window (1-based), retry_s, first_trip, networks}
--                                                    refused (retry -1: never)
--             {2, 0, ttl_s, alert, networks}         networks exceeded
--   2 refund: {3, 0, 0, 0, 0}
--   3 show:   {4, nwin, used_1, free_in_s_1, used_2, free_in_s_2, ...}
--   4 reset:  {5, deleted_keys, 0, 0, 0}
if redis.replicate_commands then pcall(redis.replicate_commands) end
local mode = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local nwin = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key = KEYS[1]

if mode == 4 then
  return {5, redis.call('DEL', unpack(KEYS)), 0, 0, 0}
end

local lim, sec, per, maxt = {}, {}, {}, 0
for i = 1, nwin do
  lim[i] = tonumber(ARGV[2 + 2 * i])
  sec[i] = ARGV[3 + 2 * i]
  per[i] = tonumber(sec[i]) * 1000 / lim[i]	-- ms per unit
  if tonumber(sec[i]) * 1000 > maxt then maxt = tonumber(sec[i]) * 1000 end
end

local function tat_of(i)
  local v = tonumber(redis.call('HGET', key, sec[i]) or '')
  if v == nil or v < now then v = now end
  return v
end

if mode == 3 then
  local out = {4, nwin}
  for i = 1, nwin do
    local left = tat_of(i) - now
    out[#out + 1] = math.ceil(left / per[i] - 1e-9)
    out[#out + 1] = math.ceil(left / 1000)
  end
  return out
end

if mode == 2 then
  for i = 1, nwin do
    local v = tonumber(redis.call('HGET', key, sec[i]) or '')
    if v then
      v = v - cost * per[i]
      if v <= now then
        redis.call('HDEL', key, sec[i])
      else
        redis.call('HSET', key, sec[i], string.format('%.17g', v))
      end
    end
  end
  return {3, 0, 0, 0, 0}
end

-- the compromised-account signal: distinct client networks in a window
local nets = 0
if #KEYS > 1 then
  local base = 4 + 2 * nwin
  local net, maxn = ARGV[base], tonumber(ARGV[base + 1])
  local nk = KEYS[2]
  nets = redis.call('SCARD', nk)
  if nets <= maxn and redis.call('SISMEMBER', nk, net) == 0 then
    redis.call('SADD', nk, net)
    nets = nets + 1
    if redis.call('TTL', nk) < 0 then
      redis.call('EXPIRE', nk, tonumber(ARGV[base + 2]))
    end
    if nets > maxn then
      return {2, 0, redis.call('TTL', nk), 1, nets}
    end
  end
  if nets > maxn then
    return {2, 0, redis.call('TTL', nk), 0, nets}
  end
end

if cost <= 0 then
  return {0, 0, 0, 0, nets}
end
local new = {}
for i = 1, nwin do
  local w = tonumber(sec[i]) * 1000
  -- tolerance: float rounding, never as much as half a unit
  local eps = math.min(1, per[i] / 2)
  new[i] = tat_of(i) + cost * per[i]
  if new[i] - now > w + eps then
    local retry = math.ceil((new[i] - now - w) / 1000)
    if retry < 1 then retry = 1 end
    if cost > lim[i] then retry = -1 end
    local first = 0
    local nt = tonumber(redis.call('HGET', key, 'n') or '0') or 0
    if nt <= now then
      first = 1
      redis.call('HSET', key, 'n', now + w)
      redis.call('PEXPIRE', key, maxt)
    end
    return {1, i, retry, first, nets}
  end
end
for i = 1, nwin do
  redis.call('HSET', key, sec[i], string.format('%.17g', new[i]))
end
redis.call('PEXPIRE', key, maxt)
return {0, 0, 0, 0, nets}

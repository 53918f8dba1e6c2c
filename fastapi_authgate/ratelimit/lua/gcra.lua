-- One GCRA step over all rules of one request, atomically, in one round trip.
-- The arithmetic is fastapi_authgate.ratelimit.rules.gcra_step, line for line.
--
-- KEYS[i]                 bucket of rule i: its TAT (seconds since the epoch) as text
-- ARGV[1]                 cost; 0 asks whether one more request fits, without charging;
--                         negative refunds (never below an empty bucket)
-- ARGV[2]                 "now" in seconds, or "" to use the server's clock (TIME), the default
-- ARGV[1+2i], ARGV[2+2i]  limit and period (seconds) of rule i
--
-- Every rule is charged or none is. Returns four values per rule: allowed (1/0), remaining,
-- reset_after and retry_after (the last two as text: Lua numbers would be truncated to integers).
-- A charged bucket expires when it drains, so Redis forgets idle keys by itself.

if redis.replicate_commands then
  pcall(redis.replicate_commands) -- Redis < 5: allow writes after TIME
end

local EPSILON = 1e-5
local cost = tonumber(ARGV[1])
local now
if ARGV[2] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[2])
end

local function step(tat, limit, period, c)
  local interval = period / limit
  local used = 0
  if tat > now then
    used = tat - now
  end
  if c < 0 then -- a refund, never below empty
    local after = math.max(0, used + c * interval)
    local remaining = math.min(limit, math.floor((period - after + EPSILON) / interval))
    if tat > now then
      return { 1, remaining, after, 0, now + after }
    end
    return { 1, remaining, after, 0 }
  end
  if c == 0 then
    local remaining = math.min(limit, math.max(0, math.floor((period - used + EPSILON) / interval)))
    if remaining >= 1 then
      return { 1, remaining, used, 0 }
    end
    return { 0, 0, used, math.max(0, used + interval - period) }
  end
  local after = used + c * interval
  if after - period > EPSILON then
    local remaining = math.min(limit, math.max(0, math.floor((period - used + EPSILON) / interval)))
    return { 0, remaining, used, after - period }
  end
  local remaining = math.max(0, math.floor((period - after + EPSILON) / interval))
  return { 1, remaining, after, 0, now + after }
end

local rules = {}
local all_allowed = true
for i = 1, #KEYS do
  local limit = tonumber(ARGV[1 + 2 * i])
  local period = tonumber(ARGV[2 + 2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
  local result = step(tat, limit, period, cost)
  rules[i] = { tat, limit, period, result }
  if result[1] == 0 then
    all_allowed = false
  end
end

local out = {}
for i = 1, #KEYS do
  local tat, limit, period, result = rules[i][1], rules[i][2], rules[i][3], rules[i][4]
  if all_allowed then
    if result[5] then
      local ttl = math.max(1, math.ceil((result[5] - now) * 1000))
      redis.call('SET', KEYS[i], string.format('%.17g', result[5]), 'PX', ttl)
    end
  elseif result[1] == 1 and cost > 0 then
    result = step(tat, limit, period, 0) -- not charged: report the bucket as it stands
  end
  out[#out + 1] = result[1]
  out[#out + 1] = result[2]
  out[#out + 1] = string.format('%.17g', result[3])
  out[#out + 1] = string.format('%.17g', result[4])
end
return out

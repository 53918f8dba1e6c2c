-- GCRA steps for several decisions, atomically, in one call: each decision covers all rules of one
-- request, and the decisions run one after the other, as separate calls would.
-- The arithmetic is fastapi_authgate.ratelimit.rules.gcra_step, line for line.
--
-- ARGV[1]   "now" in seconds, or "" to use the server's clock (TIME), the default
-- ARGV[2]   the number of decisions; then, per decision:
--           n (its rules), cost (0 asks without charging; negative refunds, never below empty),
--           and n pairs of limit and period (seconds)
-- KEYS      the buckets of every rule of every decision, in the same order: each holds its TAT
--           (seconds since the epoch) as text
--
-- Within a decision every rule is charged or none is. Returns four values per rule, decision after
-- decision: allowed (1/0), remaining, reset_after and retry_after (the last two as text: Lua
-- numbers would be truncated to integers). A charged bucket expires when it drains, so Redis
-- forgets idle keys by itself. The caller puts only keys of one hash tag in one call (one
-- Redis Cluster slot).

if redis.replicate_commands then
  pcall(redis.replicate_commands) -- Redis < 5: allow writes after TIME
end

local EPSILON = 1e-5
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[1])
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

local out = {}
local arg = 3
local key = 1
for _ = 1, tonumber(ARGV[2]) do
  local n = tonumber(ARGV[arg])
  local cost = tonumber(ARGV[arg + 1])
  arg = arg + 2
  local rules = {}
  local all_allowed = true
  for i = 1, n do
    local limit = tonumber(ARGV[arg])
    local period = tonumber(ARGV[arg + 1])
    arg = arg + 2
    local bucket = KEYS[key + i - 1]
    local tat = tonumber(redis.call('GET', bucket) or '0') or 0
    local result = step(tat, limit, period, cost)
    rules[i] = { bucket, tat, limit, period, result }
    if result[1] == 0 then
      all_allowed = false
    end
  end
  key = key + n
  for i = 1, n do
    local bucket, tat, limit, period, result = rules[i][1], rules[i][2], rules[i][3], rules[i][4], rules[i][5]
    if all_allowed then
      if result[5] then
        local ttl = math.max(1, math.ceil((result[5] - now) * 1000))
        redis.call('SET', bucket, string.format('%.17g', result[5]), 'PX', ttl)
      end
    elseif result[1] == 1 and cost > 0 then
      result = step(tat, limit, period, 0) -- not charged: report the bucket as it stands
    end
    out[#out + 1] = result[1]
    out[#out + 1] = result[2]
    out[#out + 1] = string.format('%.17g', result[3])
    out[#out + 1] = string.format('%.17g', result[4])
  end
end
return out

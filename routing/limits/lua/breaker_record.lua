local key = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local op, successes, failed = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local rate, min_requests = tonumber(ARGV[4]), math.max(tonumber(ARGV[5]), 1)
local window_s, open_ms, lease_ms = tonumber(ARGV[6]), tonumber(ARGV[7]) * 1000, tonumber(ARGV[8])
local width = math.max(1, math.ceil(window_s / 60))
local keep_ms = window_s * 1000 + open_ms + lease_ms
local state = redis.call('HGET', key, 'state') or 'closed'

local function left_ms(field)
  return tonumber(redis.call('HGET', key, field)) - now
end

local function open()
  redis.call('DEL', key)
  redis.call('HSET', key, 'state', 'open', 'until', now + open_ms)
  redis.call('PEXPIRE', key, keep_ms)
  return {0, 'open', open_ms}
end

local function take_trial()
  redis.call('HSET', key, 'state', 'half_open', 'trial_until', now + lease_ms)
  redis.call('PEXPIRE', key, keep_ms)
  return {1, 'half_open', 0}
end

-- The window's totals; buckets that left it are dropped on the way.
local function window()
  local oldest = math.floor(now / 1000 / width) - math.ceil(window_s / width) + 1
  local calls, failures = 0, 0
  local fields = redis.call('HGETALL', key)
  for i = 1, #fields, 2 do
    local name = fields[i]
    if tonumber(string.sub(name, 2)) < oldest then
      redis.call('HDEL', key, name)
    elseif string.sub(name, 1, 1) == 'c' then
      calls = calls + tonumber(fields[i + 1])
    else
      failures = failures + tonumber(fields[i + 1])
    end
  end
  return calls, failures
end

if op == 'allow' then
  if state == 'closed' then return {1, 'closed', 0} end
  local left = left_ms(state == 'open' and 'until' or 'trial_until')
  if left > 0 then return {0, state, left} end
  return take_trial()
end

if state == 'half_open' then
  if failed > 0 then return open() end
  redis.call('DEL', key)
  return {1, 'closed', 0}
end
if state == 'open' then
  return {0, 'open', math.max(left_ms('until'), 0)}
end
local bucket = math.floor(now / 1000 / width)
redis.call('HINCRBY', key, 'c' .. bucket, successes + failed)
if failed > 0 then redis.call('HINCRBY', key, 'f' .. bucket, failed) end
redis.call('PEXPIRE', key, (window_s + width) * 1000)
-- A success never opens the breaker: sum the window only on a failure, or to drop old
-- buckets once there are more than the window can hold.
if failed == 0 and redis.call('HLEN', key) <= 2 * (math.ceil(window_s / width) + 1) then
  return {1, 'closed', 0}
end
local calls, failures = window()
if failed > 0 and calls >= min_requests and failures >= rate * calls then return open() end
return {1, 'closed', 0}

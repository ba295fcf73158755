local amount = tonumber(ARGV[1])
local hold = ARGV[2]
local ttl = tonumber(ARGV[3])
local n = #KEYS / 2
local state = {}
for i = 1, n do
  local counter, holds = KEYS[2 * i - 1], KEYS[2 * i]
  local held = held_in(holds, true)
  local spent = tonumber(redis.call('HGET', counter, 'spent'))
  local limit = tonumber(ARGV[3 + 3 * i - 2])
  local blocks = ARGV[3 + 3 * i - 1] == '1'
  if blocks and spent + held + amount > limit then
    return {0, i, string.format('%.0f', spent), string.format('%.0f', held)}
  end
  state[i] = {spent, held}
end
local out = {1}
for i = 1, n do
  local counter, holds = KEYS[2 * i - 1], KEYS[2 * i]
  redis.call('HSET', holds, hold, string.format('%.0f %.0f', amount, now + ttl))
  local key_ttl = tonumber(ARGV[3 + 3 * i])
  redis.call('EXPIRE', holds, key_ttl)
  redis.call('EXPIRE', counter, key_ttl)
  table.insert(out, string.format('%.0f', state[i][1]))
  table.insert(out, string.format('%.0f', state[i][2] + amount))
end
return out

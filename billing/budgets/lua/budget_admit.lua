local full = tonumber(ARGV[1])
local cheap = tonumber(ARGV[2])
local hold = ARGV[3]
local ttl = tonumber(ARGV[4])
local n = #KEYS / 2
local state = {}
local go_cheap = false
for i = 1, n do
  local counter, holds = KEYS[2 * i - 1], KEYS[2 * i]
  local base = 4 + 6 * (i - 1)
  local limit = tonumber(ARGV[base + 1])
  local soft = tonumber(ARGV[base + 4])
  local held = held_in(holds, true)
  local spent = tonumber(redis.call('HGET', counter, 'spent'))
  local committed = spent + held
  if (ARGV[base + 6] == '1' and committed >= limit) or (ARGV[base + 5] == '1' and limit > 0 and committed >= soft) then
    go_cheap = true
  end
  state[i] = {spent, held}
end
local amount = full
if go_cheap then amount = cheap end
local cheap_flag = 0
if go_cheap then cheap_flag = 1 end
for i = 1, n do
  local base = 4 + 6 * (i - 1)
  if ARGV[base + 2] == '1' and state[i][1] + state[i][2] + amount > tonumber(ARGV[base + 1]) then
    return {0, cheap_flag, i, string.format('%.0f', state[i][1]), string.format('%.0f', state[i][2])}
  end
end
local out = {1, cheap_flag}
for i = 1, n do
  local counter, holds = KEYS[2 * i - 1], KEYS[2 * i]
  redis.call('HSET', holds, hold, string.format('%.0f %.0f', amount, now + ttl))
  local key_ttl = tonumber(ARGV[4 + 6 * (i - 1) + 3])
  redis.call('EXPIRE', holds, key_ttl)
  redis.call('EXPIRE', counter, key_ttl)
  table.insert(out, string.format('%.0f', state[i][1]))
  table.insert(out, string.format('%.0f', state[i][2]))
end
return out

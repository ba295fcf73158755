local now = tonumber(redis.call('TIME')[1])
local missing = {-1}
for i = 1, #KEYS / 2 do
  if redis.call('HEXISTS', KEYS[2 * i - 1], 'spent') == 0 then table.insert(missing, i) end
end
if #missing > 1 then return missing end
local function held_in(holds, prune)
  local held = 0
  local entries = redis.call('HGETALL', holds)
  for j = 1, #entries, 2 do
    local value, expiry = string.match(entries[j + 1], '(%d+) (%d+)')
    if tonumber(expiry) < now then
      if prune then redis.call('HDEL', holds, entries[j]) end
    else
      held = held + tonumber(value)
    end
  end
  return held
end

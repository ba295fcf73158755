local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i, key in ipairs(KEYS) do
  local fields = redis.call('HMGET', key, 'state', 'until')
  local state = fields[1] or 'closed'
  if state == 'open' and tonumber(fields[2]) <= now then state = 'half_open' end
  out[i] = state
end
return out

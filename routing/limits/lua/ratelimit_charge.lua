local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local period = 60000
local allowed = 1
local out = {}
local tats = {}
for i = 1, #KEYS do
  local limit = tonumber(ARGV[2 * i - 1])
  local cost = tonumber(ARGV[2 * i])
  local interval = period / limit
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local new_tat = tat + cost * interval
  local ahead = new_tat - now
  if ahead > period then
    allowed = 0
    table.insert(out, math.max(0, math.floor((period - (tat - now)) / interval + 1e-9)))
    table.insert(out, math.ceil(tat - now))
    table.insert(out, math.ceil(ahead - period))
  else
    tats[i] = new_tat
    table.insert(out, math.floor((period - ahead) / interval + 1e-9))
    table.insert(out, math.ceil(ahead))
    table.insert(out, 0)
  end
end
if allowed == 1 then
  for i = 1, #KEYS do
    redis.call('SET', KEYS[i], string.format('%.3f', tats[i]), 'PX', math.ceil(tats[i] - now) + 1000)
  end
end
table.insert(out, 1, allowed)
return out

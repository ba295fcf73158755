local out = {1}
for i = 1, #KEYS / 2 do
  table.insert(out, redis.call('HGET', KEYS[2 * i - 1], 'spent'))
  table.insert(out, string.format('%.0f', held_in(KEYS[2 * i], false)))
end
return out

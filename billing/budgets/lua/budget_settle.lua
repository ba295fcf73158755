for i = 1, #KEYS / 2 do
  redis.call('HDEL', KEYS[2 * i], ARGV[1])
  redis.call('HINCRBY', KEYS[2 * i - 1], 'spent', ARGV[2])
end
return {1}

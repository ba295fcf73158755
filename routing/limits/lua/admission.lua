-- The key's rate limits, then its budgets, in one step (`rate_charge` and `budget_admit` are
-- ratelimit_charge.lua and the budgets' admit script, each as a function of its own KEYS and ARGV).
-- KEYS: the rate-limit counters, then the budgets' counter and holds keys.
-- ARGV: how many rate-limit counters, their limit and cost pairs, then the budget admission's ARGV.
-- Returns {the charge's reply, the admission's reply}; the second is {} when a rate limit refused
-- (nothing held), and the first is {} when budget counters are missing (nothing charged: the caller
-- seeds them and runs this again, so a rerun never charges the rate limit twice).
local n = tonumber(ARGV[1])
local limit_keys, budget_keys, limit_args, budget_args = {}, {}, {}, {}
for i = 1, #KEYS do
  if i <= n then limit_keys[i] = KEYS[i] else budget_keys[i - n] = KEYS[i] end
end
for i = 2, #ARGV do
  if i <= 1 + 2 * n then limit_args[i - 1] = ARGV[i] else budget_args[i - 1 - 2 * n] = ARGV[i] end
end
for i = 1, #budget_keys / 2 do
  if redis.call('HEXISTS', budget_keys[2 * i - 1], 'spent') == 0 then
    return {{}, budget_admit(budget_keys, budget_args)}
  end
end
local charged = rate_charge(limit_keys, limit_args)
if charged[1] == 0 then return {charged, {}} end
return {charged, budget_admit(budget_keys, budget_args)}

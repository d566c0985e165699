-- outdial_exhausted (behaviour.md §6), with a bounded look at the idle targets.
-- ARGV: prefix, campaign_id, outdial_id, max_try_count_0..4 ("3,0,0,0,0"), window
-- Returns 1 when exhausted. The queues hold only idle targets; if more than `window` of
-- them have no tries left under these limits, the answer is 0 (not exhausted): a bounded
-- step cannot prove the rest are spent.
local campaign, outdial = ARGV[2], ARGV[3]
local max_counts = parse_max_counts(ARGV[4])
local window = tonumber(ARGV[5])
if redis.call('SCARD', key('progressing', outdial)) > 0 then
  return 0
end
if redis.call('SCARD', key('active', campaign)) > 0 then
  return 0
end
for _, name in ipairs({'fresh', 'retry'}) do
  local queue = key(name, outdial)
  local members = redis.call('ZRANGE', queue, 0, window - 1)
  for _, member in ipairs(members) do
    local stored = redis.call('HMGET', key('target', string.sub(member, 17)), 'b', 'p')
    if stored[1] and target_visible(stored[2]) and next_slot(cjson.decode(stored[1]), max_counts) then
      return 0
    end
  end
  if #members == window and redis.call('ZCARD', queue) > window then
    return 0
  end
end
return 1

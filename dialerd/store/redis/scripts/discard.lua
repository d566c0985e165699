-- Remove part of a staged import that failed; call again until it returns 0.
-- ARGV: prefix, batch, how many targets to remove in this call
local batch, count = ARGV[2], tonumber(ARGV[3])
local ids = redis.call('SPOP', key('import', batch, 'ids'), count)
for _, id in ipairs(ids) do
  local target_key = key('target', id)
  if redis.call('HGET', target_key, 'p') == batch then
    drop_target(target_key)
  end
end
if #ids == 0 then
  redis.call('UNLINK', key('import', batch))
end
return #ids

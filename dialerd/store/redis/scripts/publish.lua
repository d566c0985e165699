-- Make a staged import visible in one step.
-- ARGV: prefix, batch
local batch = ARGV[2]
if batch_abandoned(batch) then
  return redis.error_reply(
    'DIALERD_LOST staged import ' .. batch .. ' expired before it was published')
end
redis.call('SET', key('imported', batch), '1')
redis.call('UNLINK', key('import', batch), key('import', batch, 'ids'))
return 1

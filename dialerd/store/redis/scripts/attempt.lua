-- What finish_attempt needs to decide: an attempt and, while it is active, its target.
-- ARGV: prefix, campaigncall_id
-- Returns {'active', campaigncall body, target version, target body or '' when it is not
--   progressing for this attempt (see progressing_for), and the placement it had before
--   the claim: touched, due, until, slot, held}; or {'ended'} (finished, or no such
--   attempt: the finish script says which).
local stored = redis.call('HMGET', key('campaigncall', ARGV[2]), 'b', 's')
if not stored[1] or stored[2] == 'done' then
  return {'ended'}
end
local campaigncall = cjson.decode(stored[1])
local target = redis.call('HMGET', key('target', campaigncall.outdial_target_id),
  'v', 'k', 'x', 'b', 'bt', 'bd', 'bu', 'bs', 'bh', 'a')
local body = ''
if target[4] and progressing_for(target[2], target[10], ARGV[2]) and target[3] ~= '1' then
  body = target[4]
end
return {'active', stored[1], target[1] or '', body, target[5] or '', target[6] or '',
  target[7] or '', target[8] or '', target[9] or ''}

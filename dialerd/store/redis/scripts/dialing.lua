-- campaign_and_outplan: what a tick reads, in one step: a campaign and its outplan.
-- ARGV: prefix, campaign id
-- Returns {campaign body or false, outplan body or false}: false for a campaign that is
-- gone, and for an outplan that is gone or another customer's.
local campaign = redis.call('HMGET', key('campaign', ARGV[2]), 'b', 'c', 'x')
if not campaign[1] or campaign[3] == '1' then
  return {false, false}
end
local outplan_id = cjson.decode(campaign[1]).outplan_id
local outplan = redis.call('HMGET', key('outplan', outplan_id), 'b', 'c', 'x')
if not outplan[1] or outplan[3] == '1' or outplan[2] ~= campaign[2] then
  return {campaign[1], false}
end
return {campaign[1], outplan[1]}

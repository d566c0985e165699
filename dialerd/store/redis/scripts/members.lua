-- The bodies of the resources whose ids are in these sets (status or active sets).
-- ARGV: prefix, kind, set keys (without prefix)...
local kind = ARGV[2]
local bodies = {}
for i = 3, #ARGV do
  for _, id in ipairs(redis.call('SMEMBERS', T .. ':' .. ARGV[i])) do
    local body = redis.call('HGET', key(kind, id), 'b')
    if body then
      bodies[#bodies + 1] = body
    end
  end
end
return bodies

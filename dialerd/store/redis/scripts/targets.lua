-- Insert targets, all or none: every id is checked before anything is written.
-- With a batch id, the targets are written with p = batch: invisible (not listed, not
-- dialed, not found) until publish.lua publishes the batch in one step.
-- ARGV: prefix, batch ('' = visible at once), ttl seconds of the import marker, targets:
--   a JSON array of [id, outdial_id, body, listing member ('' if deleted), queue letter
--   (see index_target), then the placement dialerd.core.targets.place_new decided:
--   touched and due (microseconds), until (microseconds or ''), slot, held]
local batch, ttl = ARGV[2], tonumber(ARGV[3])
local rows = cjson.decode(ARGV[4])
local seen = {}
for _, row in ipairs(rows) do
  local id = row[1]
  if seen[id] then
    return conflict('target ' .. id .. ' appears twice; no target was added')
  end
  seen[id] = true
  local target_key = key('target', id)
  if redis.call('EXISTS', target_key) == 1 then
    local old = redis.call('HMGET', target_key, 'b', 'p')
    if old[2] and old[2] ~= batch and not target_visible(old[2]) and batch_abandoned(old[2]) then
      drop_target(target_key)
    else
      return conflict('target ' .. id .. ' already exists; no target was added')
    end
  end
end

if batch ~= '' then
  redis.call('SET', key('import', batch), '1', 'EX', ttl)
end
-- Sequence numbers (creation order) are taken once per outdial for the whole chunk.
local sequence = {}
for _, row in ipairs(rows) do
  sequence[row[2]] = (sequence[row[2]] or 0) + 1
end
for outdial, count in pairs(sequence) do
  sequence[outdial] = redis.call('INCRBY', key('seq', outdial), count) - count
end
local ids = {}
for _, row in ipairs(rows) do
  local id, outdial, body, listed, queue = row[1], row[2], row[3], row[4], row[5]
  local touched, due = row[6], row[7]
  sequence[outdial] = sequence[outdial] + 1
  local member = string.format('%015d', sequence[outdial]) .. ':' .. id
  local fields = {'b', body, 'o', outdial, 'm', member, 'k', queue, 'l', listed, 'v', 1,
    'pt', touched, 'pd', due, 'pu', row[8], 'ps', row[9], 'ph', row[10]}
  if listed == '' then
    fields[#fields + 1] = 'x'
    fields[#fields + 1] = '1'
  else
    redis.call('ZADD', key('targets', outdial), 0, listed)
  end
  if batch ~= '' then
    fields[#fields + 1] = 'p'
    fields[#fields + 1] = batch
    ids[#ids + 1] = id
  end
  redis.call('HSET', key('target', id), unpack(fields))
  index_target(queue, outdial, member, id, touched, due, row[10])
end
if #ids > 0 then
  local staged = key('import', batch, 'ids')
  for first = 1, #ids, 1000 do
    redis.call('SADD', staged, unpack(ids, first, math.min(first + 999, #ids)))
  end
  redis.call('EXPIRE', staged, ttl)
end
return #rows

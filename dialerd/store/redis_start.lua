-- start_attempt: claim the next eligible target and create its campaigncall, in one step.
-- ARGV: prefix, campaigncall body with placeholders for the target (it names the campaign,
--   customer, outdial and id, and tm_create = now), cutoff (microseconds: a retried target
--   is due when its last attempt ended at or before it), max_try_count_0..4 ("3,0,0,0,0"),
--   and the fence (campaign id, owner, token; owner '' when unfenced)
-- Returns the campaigncall body, or nil when no target is eligible; an error when the
-- stored campaign is not running.
-- At most WINDOW queued targets without tries left (under these limits) are stepped over.
local WINDOW = 64
local campaigncall = cjson.decode(ARGV[2])
local cutoff = tonumber(ARGV[3])
local max_counts = parse_max_counts(ARGV[4])
local outdial, campaign = campaigncall.outdial_id, campaigncall.campaign_id
local customer, campaigncall_id, now =
  campaigncall.customer_id, campaigncall.id, campaigncall.tm_create
local campaigncall_key = key('campaigncall', campaigncall_id)
if fenced_off(campaign, 5) then
  return lease_lost(campaign)
end
-- From the moment a stop is stored, nothing is claimed (not even by a tick under way).
local campaign_state = redis.call('HMGET', key('campaign', campaign), 's', 'x')
if campaign_state[1] ~= 'run' or campaign_state[2] == '1' then
  return not_running(campaign)
end
if redis.call('EXISTS', campaigncall_key) == 1 then
  return conflict('campaigncall ' .. campaigncall_id .. ' already exists')
end

-- Each queue is read lazily; a target is decoded only when it is the better of the heads.
local queues = {
  {name = key('fresh', outdial), letter = 'f', max = '+inf', offset = 0},
  {name = key('retry', outdial), letter = 'r', max = cutoff, offset = 0},
}
local function peek(queue)
  if queue.member == nil then
    local found = redis.call(
      'ZRANGE', queue.name, '-inf', queue.max, 'BYSCORE', 'LIMIT', queue.offset, 1, 'WITHSCORES')
    queue.member = found[1] or false
    queue.score = tonumber(found[2])
    queue.raw_score = found[2]
  end
  return queue.member
end
local function better(a, b)
  if not peek(b) then return a end
  if not peek(a) then return b end
  if b.score < a.score or (b.score == a.score and b.member < a.member) then return b end
  return a
end

local chosen, target, slot
for _ = 1, WINDOW do
  local queue = better(queues[1], queues[2])
  if not peek(queue) then
    return nil
  end
  local target_key = key('target', string.sub(queue.member, 17))
  local stored = redis.call('HMGET', target_key, 'b', 'p')
  if stored[1] and not target_visible(stored[2]) and batch_abandoned(stored[2]) then
    drop_target(target_key)
  else
    if stored[1] and target_visible(stored[2]) then
      target = cjson.decode(stored[1])
      slot = next_slot(target, max_counts)
      if slot then
        chosen = {
          queue = queue.name, letter = queue.letter, score = queue.raw_score,
          member = queue.member, key = target_key,
        }
        break
      end
    end
    queue.offset = queue.offset + 1
  end
  queue.member = nil
end
if not chosen then
  return nil
end

local try_count = (tonumber(target['try_count_' .. slot]) or 0) + 1
target['try_count_' .. slot] = try_count
target.status = 'progressing'
target.tm_update = now
redis.call('ZREM', chosen.queue, chosen.member)
-- Where the target stood (queue and score), so a try given back puts it there again.
redis.call('HSET', chosen.key, 'b', cjson.encode(target), 'k', '',
  'rq', chosen.letter, 'rs', chosen.score)
redis.call('HDEL', chosen.key, 'p')
redis.call('SADD', key('progressing', outdial), target.id)

campaigncall.outdial_target_id = target.id
campaigncall.destination = target['destination_' .. slot]
campaigncall.destination_index = slot
campaigncall.try_count = try_count
local body = cjson.encode(campaigncall)
local member = now .. '|' .. campaigncall_id
redis.call('HSET', campaigncall_key,
  'b', body, 'c', customer, 'g', campaign, 's', 'dialing', 'l', member)
redis.call('ZADD', key('campaigncalls', customer), 0, member)
redis.call('ZADD', key('campaigncalls', customer, campaign), 0, member)
redis.call('SADD', key('active', campaign), campaigncall_id)
redis.call('SADD', key('dialing', campaign), campaigncall_id)
redis.call('SADD', key('active'), campaigncall_id)
return body

-- finish_attempts: end active attempts exactly once each and write what the core decided
-- for each one's target, all in one step (one burst of ends of one customer).
-- ARGV: prefix, then one argument per attempt, in order: its end packed as one msgpack
--   array of strings (decoded once here, not 18 arguments to pack and read): campaigncall
--   id, result, reason, now (timestamp string), fence (campaign id, owner, token), the
--   target's version the decision was made on ('-' when the caller did not see the
--   attempt active), until when the calling rules lock the dialed number and its
--   readings (JSON [microseconds, E.164 reading...]; '' for no lock), '1' if a decision
--   follows ('0': the target is not progressing and stays as it is, and the seven
--   fields after are ''; a decision is written only while the target is progressing for
--   this attempt, see progressing_for), the target's new body, queue letter (see
--   index_target), touched, due (microseconds), until (microseconds or ''), slot, held;
--   last, '1' when the answer came with the end (not written apart: its event is,
--   first).
-- Returns one reply per attempt, in order: {'none'}; {'lost', message} when the fence no
--   longer holds the campaign's lease (nothing written for it); {'stale' | 'done',
--   campaigncall body, and unless it is gone the target's body ('' when it is the new
--   body written here; as stored when no decision was written: the target is not
--   progressing, or progressing for another live attempt), queue letter, due and held};
--   or {'changed'} (nothing written for it) when the target is no longer at that
--   version: the caller reads again and decides again.
local function finish_one(packed)
  -- The end's fields (see above): fence at a[5..7], the decision at a[10..17].
  local a = cmsgpack.unpack(packed)
  local id, result, reason, now = a[1], a[2], a[3], a[4]
  local version, locked_until, decided = a[8], a[9], a[10] == '1'
  local answered = a[18] == '1'
  local campaigncall_key = key('campaigncall', id)
  local stored = redis.call('HMGET', campaigncall_key, 'b', 's', 'g')
  if not stored[1] then
    return {'none'}
  end
  if fenced_off(stored[3], 5, a) then
    return {'lost', 'campaign ' .. stored[3] .. ': lease no longer held'}
  end
  local campaigncall = cjson.decode(stored[1])
  local target_key = key('target', campaigncall.outdial_target_id)

  -- The target's body (or '' when `written`: the caller knows it) with its queue letter,
  -- due and held (why the rules hold it).
  local function with_target(reply, written)
    local target = redis.call('HMGET', target_key, 'b', 'x', 'p', 'k', 'pd', 'ph')
    if target[1] and target[2] ~= '1' and target_visible(target[3]) then
      reply[3] = written and '' or target[1]
      reply[4], reply[5], reply[6] = target[4] or '', target[5] or '', target[6] or ''
    end
    return reply
  end

  if stored[2] == 'done' then
    return with_target({'stale', stored[1]})
  end
  local target = redis.call('HMGET', target_key, 'v', 'k', 'm', 'o', 'a')
  if (target[1] or '') ~= version then
    return {'changed'}
  end

  if answered and stored[2] == 'dialing' then
    -- An answer folded into its end: the answer's own event comes first (as answer.lua's).
    campaigncall.status = 'progressing'
    campaigncall.tm_update = now
    outbox_add(campaigncall.customer_id, stored[3], 'campaigncall_updated',
      cjson.encode(campaigncall))
  end
  campaigncall.status = 'done'
  campaigncall.result = result
  campaigncall.reason = reason
  campaigncall.tm_update = now
  local body = cjson.encode(campaigncall)
  redis.call('HSET', campaigncall_key, 'b', body, 's', 'done')
  redis.call('SREM', key('active', stored[3]), id)
  redis.call('SREM', key('dialing', stored[3]), id)
  redis.call('SREM', key('active'), id)
  outbox_add(campaigncall.customer_id, stored[3], 'campaigncall_updated', body)
  if locked_until ~= '' then
    -- The calling rules lock the number, every reading of it (an abandoned call): the
    -- later lockout holds.
    local lock = cjson.decode(locked_until)
    local locks = key('locks', campaigncall.customer_id)
    for i = 2, #lock do
      local number = lock[i]
      local held = tonumber(redis.call('HGET', locks, number)) or 0
      if number ~= '' and lock[1] > held then
        redis.call('HSET', locks, number, string.format('%d', lock[1]))
      end
    end
  end

  -- The decision is written only while the target is progressing for this attempt: an
  -- older attempt whose end a failover lost ends without moving the target of a later
  -- one that is live.
  local written = decided and progressing_for(target[2], target[5], id)
  if written then
    local queue, touched, due, held = a[12], a[13], a[14], a[17]
    unindex_target('p', target[4], target[3], campaigncall.outdial_target_id)
    index_target(queue, target[4], target[3], campaigncall.outdial_target_id, touched, due,
      held)
    redis.call('HSET', target_key, 'b', a[11], 'k', queue,
      'pt', touched, 'pd', due, 'pu', a[15], 'ps', a[16], 'ph', held)
    redis.call('HINCRBY', target_key, 'v', 1)
    outbox_add(campaigncall.customer_id, stored[3], 'outdialtarget_updated', a[11],
      'q', queue, 'd', due, 'h', held)
  end
  return with_target({'done', body}, written)
end

local replies = {}
for i = 2, #ARGV do
  replies[#replies + 1] = finish_one(ARGV[i])
end
return replies

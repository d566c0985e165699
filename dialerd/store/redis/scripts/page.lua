-- One newest-first page of a listing index, with the bodies, read in one consistent step.
-- ARGV: prefix, kind, listing key (without prefix), max bound ('+' or '(<token>'), limit,
-- and optionally a hash (key without prefix) holding the bodies by id, in place of
-- one hash per resource (do-not-call numbers: the id is the number).
-- Returns {next page token, body, body, ...}; a target's body is followed by its queue
-- letter, due and held (why the rules hold it). The token is '' only for an empty page at
-- the end; otherwise the last item's tm_create, or its whole '<tm_create>|<id>' member
-- when the next item shares that tm_create. Targets of an unpublished import are
-- skipped; at most SCAN entries are looked at, so a page may come back short with a
-- token to go on from.
local SCAN = 1000
local kind, listing, bound, limit = ARGV[2], T .. ':' .. ARGV[3], ARGV[4], tonumber(ARGV[5])
local bodies = ARGV[6] and (T .. ':' .. ARGV[6])
local page, last_item, scanned, items = {''}, nil, 0, 0

local function created(member)
  return string.match(member, '^([^|]*)')
end

-- The token after last_item, given the next visible member (or nil at the end).
local function token_after(following)
  if following and created(following) == created(last_item) then
    return last_item
  end
  return created(last_item)
end

while scanned < SCAN do
  local members = redis.call('ZRANGE', listing, bound, '-', 'BYLEX', 'REV', 'LIMIT', 0, limit + 1)
  if #members == 0 then
    if last_item then
      page[1] = token_after(nil)
    end
    return page
  end
  for _, member in ipairs(members) do
    local id = string.match(member, '|(.*)$')
    local stored
    if bodies then
      stored = {redis.call('HGET', bodies, id)}
    else
      stored = redis.call('HMGET', key(kind, id), 'b', 'p', 'k', 'pd', 'ph')
    end
    if stored[1] and (kind ~= 'target' or target_visible(stored[2])) then
      if items == limit then
        page[1] = token_after(member)
        return page
      end
      page[#page + 1] = stored[1]
      if kind == 'target' then
        page[#page + 1] = stored[3] or ''
        page[#page + 1] = stored[4] or ''
        page[#page + 1] = stored[5] or ''
      end
      items = items + 1
      last_item = member
    end
    scanned = scanned + 1
    bound = '(' .. member
  end
end
page[1] = string.sub(bound, 2)
return page

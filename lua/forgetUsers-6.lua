--[[
  forgetUsers: the history TTL. Walks the user records a slice per call (HSCAN with a
  cursor kept in Redis) and deletes those no message touched for history_ttl_ms, unless the
  user is active, holds a node or waits; the highest message id deleted goes to the floor,
  so a very late replay cannot resurrect a forgotten user (docs/design.md#3-1). Maintenance
  that touches only Redis: any replica may run it. Bounded: about count records per call; a
  record outlives its TTL by at most one full walk (records / count calls).

  KEYS[1] user_info        hash    user -> packed record (userrec.lua)
  KEYS[2] users_active     zset    user -> class id * 1e13 + last seen ms
  KEYS[3] user_node        hash    user -> node
  KEYS[4] users_waiting    zset    user -> band * 1e13 + since ms
  KEYS[5] user_seq_floor   string  highest message id of the records deleted here
  KEYS[6] forget_cursor    string  HSCAN cursor of the walk over user_info

  ARGV[1] now_ms           integer, unix ms
  ARGV[2] history_ttl_ms   integer > 0: a record untouched this long is deleted
  ARGV[3] count            integer > 0: records looked at per call (HSCAN COUNT)

  Returns {code, forgotten, walk_done}: walk_done 1 when this call finished a full walk;
  OK | ERR_BAD_ARG.
]]
--- @include "codes"
--- @include "util"
--- @include "userrec"

local now_ms = ms_arg(ARGV[1])
local ttl = int_arg(ARGV[2])
local count = int_arg(ARGV[3])
if now_ms == nil or ttl == nil or ttl <= 0 or count == nil or count <= 0 then
  return {ERR_BAD_ARG, 0, 0}
end
if not types_ok({[K.user_info] = 'hash', [K.users_active] = 'zset', [K.user_node] = 'hash',
  [K.users_waiting] = 'zset', [K.user_seq_floor] = 'string',
  [K.forget_cursor] = 'string'}) then
  return {ERR_WRONG_TYPE, 0, 0}
end
local cursor = redis.call('GET', K.forget_cursor) or '0'
local page = redis.call('HSCAN', K.user_info, cursor, 'COUNT', count)
local flat = page[2]
local floor0 = tonumber(redis.call('GET', K.user_seq_floor) or '-1')
local floor = floor0
local forgotten = 0
for i = 1, #flat, 2 do
  local user, v = flat[i], flat[i + 1]
  local a, b = string.match(v, REC_RE)
  local last = b and unb36(b)
  if (last == nil or last < now_ms - ttl)
    and not redis.call('ZSCORE', K.users_active, user)
    and not redis.call('HGET', K.user_node, user)
    and not redis.call('ZSCORE', K.users_waiting, user) then
    local seq = a and unb36(a) or -1
    if seq > floor then floor = seq end
    redis.call('HDEL', K.user_info, user)
    forgotten = forgotten + 1
  end
end
redis.call('SET', K.forget_cursor, page[1])
if floor > floor0 then redis.call('SET', K.user_seq_floor, string.format('%.0f', floor)) end
local done = 0
if page[1] == '0' then done = 1 end
return {OK, forgotten, done}

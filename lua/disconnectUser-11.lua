--[[
  disconnectUser: a session ended (user:disconnect). The node goes straight to the first
  waiting user (published on user:assigned) or back to the warm pool, idle since now.
  A user still on the waitlist leaves it (counted as never served).

  KEYS[1]  user_info        hash  user -> packed record (userrec.lua: seq, last, first, count, ...)
  KEYS[2]  user_node        hash  user -> node
  KEYS[3]  users_waiting    zset  user -> band * 1e13 + since ms
  KEYS[4]  user_wait_since  hash  user -> ms its wait began
  KEYS[5]  node_state       hash  node -> state
  KEYS[6]  node_user        hash  node -> user
  KEYS[7]  nodes_ready      zset  node -> idle-since ms
  KEYS[8]  nodes_booting    zset  node -> created ms
  KEYS[9]  nodes_allocated  zset  node -> allocated ms
  KEYS[10] stats            hash  counters
  KEYS[11] user_seq_floor   string highest message id of the user records forgetUsers deleted

  ARGV[1] user_id      string, validated by the caller
  ARGV[2] now_ms       integer, unix ms
  ARGV[3] msg_id       integer, seq * 1e6 + position (0 = unordered)
  ARGV[4] channel      the user:assigned channel name

  Returns {code, node_or_false, handed_to_user_or_false}:
  OK | UNKNOWN_USER | STALE | ERR_BAD_ARG. OK with node false: the user left the waitlist.
]]
--- @include "codes"
--- @include "util"
--- @include "assign"
--- @include "userrec"

local user = ARGV[1]
local now_ms = ms_arg(ARGV[2])
local msg_id = int_arg(ARGV[3])
local channel = ARGV[4]
if user == nil or user == '' or now_ms == nil or msg_id == nil or not channel then
  return {ERR_BAD_ARG, false, false}
end
if not types_ok({[K.user_info] = 'hash', [K.user_node] = 'hash',
  [K.users_waiting] = 'zset', [K.user_wait_since] = 'hash', [K.node_state] = 'hash',
  [K.node_user] = 'hash', [K.nodes_ready] = 'zset', [K.nodes_booting] = 'zset',
  [K.nodes_allocated] = 'zset', [K.stats] = 'hash',
  [K.user_seq_floor] = 'string'}) then return {ERR_WRONG_TYPE, false, false} end
local rec = rec_get(user)
if not rec_is_new(rec, msg_id) then return {STALE, false, false} end

local node = redis.call('HGET', K.user_node, user)
if node then
  rec = rec or rec_new(now_ms)
  rec_touch(rec, msg_id, now_ms)
  rec.last_disc = now_ms
  rec_put(user, rec)
  stat('disconnects')
  redis.call('HDEL', K.user_node, user)
  redis.call('HDEL', K.node_user, node)
  redis.call('ZREM', K.nodes_allocated, node)
  local to = release_node(node, now_ms, channel)
  return {OK, node, to or false}
end
if redis.call('ZSCORE', K.users_waiting, user) then
  rec = rec or rec_new(now_ms)
  rec_touch(rec, msg_id, now_ms)
  rec_put(user, rec)
  redis.call('ZREM', K.users_waiting, user)
  redis.call('HDEL', K.user_wait_since, user)
  stat('disconnects')
  stat('never_served')
  return {OK, false, false}
end
-- no ordering record is kept for users we do not know (garbage would grow it), so count
-- against a watermark instead: every replica sees the ids in the same order
local last = tonumber(redis.call('HGET', K.stats, '_unknown_last') or '-1')
if msg_id == 0 or msg_id > last then
  if msg_id ~= 0 then redis.call('HSET', K.stats, '_unknown_last', msg_id) end
  stat('disconnects_unknown')
end
return {UNKNOWN_USER, false, false}

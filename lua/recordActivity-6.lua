--[[
  recordActivity: a user made a request (user:activity). Marks the user active and
  updates what the policy learns from (design-notes 4).

  KEYS[1] users_active   zset  user -> class * 1e13 + last activity ms (codes.lua: CLASS)
  KEYS[2] user_info      hash  user -> "first_ms|activity_count|connects|last_disconnect_ms"
  KEYS[3] user_seq       hash  user -> last message id applied
  KEYS[4] user_node      hash  user -> node (a connected user's activity is counted only)
  KEYS[5] stats          hash  counters
  KEYS[6] user_seq_floor string  highest message id of user records expiry deleted

  ARGV[1] user_id        string, validated by the caller (1-128 printable characters)
  ARGV[2] now_ms         integer, caller's clock, unix ms
  ARGV[3] msg_id         integer, seq * 1e6 + position (0 = unordered)

  Returns {code, is_new_user}: OK | STALE | ERR_BAD_ARG.
]]
--- @include "codes"
--- @include "util"

local user = ARGV[1]
local now_ms = int_arg(ARGV[2])
local msg_id = int_arg(ARGV[3])
if user == nil or user == '' or now_ms == nil or msg_id == nil then return {ERR_BAD_ARG, 0} end
if not types_ok({[K.users_active] = 'zset', [K.user_info] = 'hash', [K.user_seq] = 'hash',
  [K.user_node] = 'hash', [K.stats] = 'hash',
  [K.user_seq_floor] = 'string'}) then return {ERR_WRONG_TYPE, 0} end
if not seq_is_new(K.user_seq, user, msg_id, K.user_seq_floor) then return {STALE, 0} end

seq_mark(K.user_seq, user, msg_id)
stat('activity')
local info = redis.call('HGET', K.user_info, user)
local is_new = 0
local count, connects = 1, 0
if info then
  local first, c, n, last_disc = string.match(info, '^(%-?%d+)|(%d+)|(%d+)|(%-?%d+)$')
  if first then
    count, connects = tonumber(c) + 1, tonumber(n)
    info = first .. '|' .. count .. '|' .. connects .. '|' .. last_disc
  else
    info = nil
  end
end
if not info then
  is_new = 1
  stat('users_new')
  info = now_ms .. '|1|0|0'
end
redis.call('HSET', K.user_info, user, info)
if not redis.call('HGET', K.user_node, user) then
  local prev = redis.call('ZSCORE', K.users_active, user)
  if not prev then stat('users_activated') end
  redis.call('ZADD', K.users_active, user_class(count, connects) * CLASS + now_ms, user)
end
return {OK, is_new}

--[[
  connectUser: a user wants a session now (user:connect). Assigns the oldest-idle ready
  node (a hit, wait 0) or puts the user on the waitlist (a miss). Publishes user:assigned
  on a hit, in the same atomic step.

  KEYS[1]  users_active     zset  user -> class id * 1e13 + last seen ms (it leaves: connected)
  KEYS[2]  user_info        hash  user -> packed record (userrec.lua: seq, last, first, count, ...)
  KEYS[3]  user_node        hash  user -> node
  KEYS[4]  users_waiting    zset  user -> band * 1e13 + since ms
  KEYS[5]  user_wait_since  hash  user -> ms its wait began
  KEYS[6]  users_premium    set   premium users (served first)
  KEYS[7]  node_state       hash  node -> state
  KEYS[8]  node_user        hash  node -> user
  KEYS[9]  nodes_ready      zset  node -> idle-since ms
  KEYS[10] nodes_allocated  zset  node -> allocated ms
  KEYS[11] nodes_booting    zset  node -> created ms
  KEYS[12] stats            hash  counters
  KEYS[13] hazard           hash  connects by feature class and recency bucket ("c<k>:r<j>"),
                                  "bg" for users not in the active set (the hazard model),
                                  "n" their sum, "since_ms" its first count
  KEYS[14] boot             hash  learned boot time (mean_ms sets the recency buckets)
  KEYS[15] user_seq_floor   string highest message id of the user records forgetUsers deleted

  ARGV[1] user_id      string, validated by the caller
  ARGV[2] now_ms       integer, unix ms
  ARGV[3] msg_id       integer, seq * 1e6 + position (0 = unordered)
  ARGV[4] channel      the user:assigned channel name
  ARGV[5] default_boot_ms  integer > 0: boot time assumed before the first observation

  Returns {code, node_or_false}: HIT | MISS | DUPLICATE | STALE | ERR_BAD_ARG.
]]
--- @include "codes"
--- @include "util"
--- @include "assign"
--- @include "userrec"

local user = ARGV[1]
local now_ms = ms_arg(ARGV[2])
local msg_id = int_arg(ARGV[3])
local channel = ARGV[4]
local default_boot = int_arg(ARGV[5])
if user == nil or user == '' or now_ms == nil or msg_id == nil or not channel
  or default_boot == nil or default_boot <= 0 then
  return {ERR_BAD_ARG, false}
end
if not types_ok({[K.users_active] = 'zset', [K.user_info] = 'hash',
  [K.user_node] = 'hash', [K.users_waiting] = 'zset', [K.user_wait_since] = 'hash',
  [K.users_premium] = 'set', [K.node_state] = 'hash', [K.node_user] = 'hash',
  [K.nodes_ready] = 'zset', [K.nodes_allocated] = 'zset', [K.nodes_booting] = 'zset',
  [K.stats] = 'hash', [K.hazard] = 'hash', [K.boot] = 'hash',
  [K.user_seq_floor] = 'string'}) then
  return {ERR_WRONG_TYPE, false}
end
local rec = rec_get(user)
if not rec_is_new(rec, msg_id) then return {STALE, false} end
local held = redis.call('HGET', K.user_node, user)
if held or redis.call('ZSCORE', K.users_waiting, user) then
  rec = rec or rec_new(now_ms)
  rec_touch(rec, msg_id, now_ms)
  rec_put(user, rec)
  stat('connects_duplicate')
  return {DUPLICATE, held or false}
end

stat('connects')
local kind = 'cold'
if rec then
  kind = 'predictable'
else
  rec = rec_new(now_ms)
end
rec.connects = rec.connects + 1
rec_touch(rec, msg_id, now_ms)
rec_put(user, rec)
stat('connects_' .. kind)
-- the hazard model learns which class and recency bucket this connect came from
local score = tonumber(redis.call('ZSCORE', K.users_active, user))
if score then
  local class, _, seen = score_parts(score)
  local bucket = recency_bucket(now_ms - seen, boot_ms_now(default_boot))
  redis.call('HINCRBY', K.hazard, 'c' .. class .. ':r' .. bucket, 1)
  redis.call('ZREM', K.users_active, user)
else
  redis.call('HINCRBY', K.hazard, 'bg', 1)
end
-- every connect counted, and since_ms set with the hash's first count: "n:since_ms" is
-- observeTick's version of the hash (a hash deleted and counted up to the same n again
-- has another since_ms)
redis.call('HSETNX', K.hazard, 'since_ms', now_ms)
redis.call('HINCRBY', K.hazard, 'n', 1)

local node = redis.call('ZRANGE', K.nodes_ready, 0, 0)[1]
if node then
  assign(node, user, now_ms, 0, channel)
  stat('hits')
  return {HIT, node}
end
local band = BAND_NORMAL
if redis.call('SISMEMBER', K.users_premium, user) == 1 then band = BAND_PREMIUM end
redis.call('ZADD', K.users_waiting, band * BAND + now_ms, user)
redis.call('HSET', K.user_wait_since, user, now_ms)
stat('misses')
stat('misses_' .. kind)
return {MISS, false}

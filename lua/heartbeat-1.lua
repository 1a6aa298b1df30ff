--[[
  heartbeat: a replica says it is alive; replicas silent for stale_ms are dropped.
  Read by `provisioner status`; nothing depends on it for correctness.

  KEYS[1] replicas  zset  replica id -> last heartbeat ms

  ARGV[1] replica   string
  ARGV[2] now_ms    integer, unix ms
  ARGV[3] stale_ms  integer > 0

  Returns {code, live_replicas}: OK | ERR_BAD_ARG.
]]
--- @include "codes"
--- @include "util"

local replica = ARGV[1]
local now_ms = ms_arg(ARGV[2])
local stale = int_arg(ARGV[3])
if not replica or replica == '' or now_ms == nil or stale == nil or stale <= 0 then
  return {ERR_BAD_ARG, 0}
end
if not types_ok({[K.replicas] = 'zset'}) then return {ERR_WRONG_TYPE, 0} end
redis.call('ZADD', K.replicas, now_ms, replica)
redis.call('ZREMRANGEBYSCORE', K.replicas, '-inf', excl(now_ms - stale))
return {OK, redis.call('ZCARD', K.replicas)}

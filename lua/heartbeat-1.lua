--[[
  heartbeat: a replica says it is alive; replicas silent for stale_ms are dropped. A
  replica that stops cleanly says it leaves (ARGV[4] 'leave'), and its entry goes at once.
  Read by `provisioner status`; nothing depends on it for correctness.

  KEYS[1] replicas  zset  replica id -> last heartbeat ms

  ARGV[1] replica   string
  ARGV[2] now_ms    integer, unix ms
  ARGV[3] stale_ms  integer > 0
  ARGV[4] mode      'alive' (the default) | 'leave'

  Returns {code, live_replicas}: OK | ERR_BAD_ARG.
]]
--- @include "codes"
--- @include "util"

local replica = ARGV[1]
local now_ms = ms_arg(ARGV[2])
local stale = int_arg(ARGV[3])
local mode = ARGV[4] or 'alive'
if not replica or replica == '' or now_ms == nil or stale == nil or stale <= 0
  or (mode ~= 'alive' and mode ~= 'leave') then
  return {ERR_BAD_ARG, 0}
end
if not types_ok({[K.replicas] = 'zset'}) then return {ERR_WRONG_TYPE, 0} end
if mode == 'leave' then
  redis.call('ZREM', K.replicas, replica)
else
  redis.call('ZADD', K.replicas, now_ms, replica)
end
redis.call('ZREMRANGEBYSCORE', K.replicas, '-inf', excl(now_ms - stale))
return {OK, redis.call('ZCARD', K.replicas)}

--[[
  acquireLease: take the leader lease when it is free or expired, with a new fencing
  token; a holder that still holds it just extends it (same token). The holder is known by
  its replica id and its instance, a value each process draws at start: a second process
  started with the same replica id is told HELD (by its own id) until the lease is free,
  instead of sharing the first one's token, which fencing could not tell apart.

  KEYS[1] leader       hash    holder, instance, token, expires_ms, since_ms
  KEYS[2] lease_token  string  fencing token counter; a missing one starts at now_ms, so a
                               pool whose keys were lost hands out larger tokens than
                               before (it would take more than one take per ms to overtake
                               the clock) and a deposed leader's token is never reissued
  KEYS[3] stats        hash    counters (leader_changes)

  ARGV[1] holder   string, the replica id
  ARGV[2] now_ms   integer, unix ms
  ARGV[3] ttl_ms   integer > 0
  ARGV[4] instance string, the process's instance ('' when omitted)

  Returns {code, token, holder, expires_ms}: OK (token is ours) | HELD (by holder until
  expires_ms) | ERR_BAD_ARG.
]]
--- @include "codes"
--- @include "util"

local holder = ARGV[1]
local now_ms = ms_arg(ARGV[2])
local ttl = int_arg(ARGV[3])
local instance = ARGV[4] or ''
if not holder or holder == '' or now_ms == nil or ttl == nil or ttl <= 0 then
  return {ERR_BAD_ARG, '', '', 0}
end
if not types_ok({[K.leader] = 'hash', [K.lease_token] = 'string', [K.stats] = 'hash'}) then
  return {ERR_WRONG_TYPE, '', '', 0}
end
local cur = redis.call('HMGET', K.leader, 'holder', 'token', 'expires_ms', 'instance')
local expires = tonumber(cur[3] or '0') or 0  -- unreadable: expired
if cur[1] and expires >= now_ms then
  if cur[1] == holder and (cur[4] or '') == instance then
    redis.call('HSET', K.leader, 'expires_ms', now_ms + ttl)
    return {OK, cur[2], holder, now_ms + ttl}
  end
  return {HELD, cur[2], cur[1], expires}
end
if redis.call('EXISTS', K.lease_token) == 0 then redis.call('SET', K.lease_token, now_ms) end
local token = tostring(redis.call('INCR', K.lease_token))
redis.call('HSET', K.leader, 'holder', holder, 'instance', instance, 'token', token,
  'expires_ms', now_ms + ttl, 'since_ms', now_ms)
stat('leader_changes')
return {OK, token, holder, now_ms + ttl}

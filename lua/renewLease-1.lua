--[[
  renewLease: compare-and-extend. Extends the lease only if holder and token match and
  it has not expired; a lapsed holder must acquire again (and gets a new token).

  KEYS[1] leader   hash  holder, token, expires_ms

  ARGV[1] holder   string
  ARGV[2] token    string
  ARGV[3] now_ms   integer, unix ms
  ARGV[4] ttl_ms   integer > 0

  Returns {code, expires_ms}: OK | ERR_FENCED | ERR_BAD_ARG.
]]
--- @include "codes"
--- @include "util"

local holder, token = ARGV[1], ARGV[2]
local now_ms = ms_arg(ARGV[3])
local ttl = int_arg(ARGV[4])
if not holder or not token or now_ms == nil or ttl == nil or ttl <= 0 then return {ERR_BAD_ARG, 0} end
if not types_ok({[K.leader] = 'hash'}) then return {ERR_WRONG_TYPE, 0} end
local cur = redis.call('HMGET', K.leader, 'holder', 'token', 'expires_ms')
if cur[1] ~= holder or cur[2] ~= token or (tonumber(cur[3] or '0') or 0) < now_ms then
  return {ERR_FENCED, 0}
end
redis.call('HSET', K.leader, 'expires_ms', now_ms + ttl)
return {OK, now_ms + ttl}

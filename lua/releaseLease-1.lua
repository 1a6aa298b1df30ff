--[[
  releaseLease: give the lease up at once (clean shutdown) if holder and token match,
  so another replica takes over without waiting for the expiry.

  KEYS[1] leader   hash  holder, token, expires_ms

  ARGV[1] holder   string
  ARGV[2] token    string

  Returns {code}: OK | ERR_FENCED.
]]
--- @include "codes"
--- @include "util"

if not types_ok({[K.leader] = 'hash'}) then return {ERR_WRONG_TYPE} end
local cur = redis.call('HMGET', K.leader, 'holder', 'token')
if cur[1] ~= ARGV[1] or cur[2] ~= ARGV[2] then return {ERR_FENCED} end
redis.call('HSET', K.leader, 'expires_ms', 0)
return {OK}

--[[
  recordDecision: the leader stores its scaling decision and its inputs: the latest in
  the policy hash (read by `provisioner status`), every one in a capped stream (read by
  `provisioner explain`). Fenced by the lease token.

  KEYS[1] leader     hash    holder, token, expires_ms
  KEYS[2] policy     hash    field -> value of the latest decision
  KEYS[3] decisions  stream  one entry per decision (MAXLEN maxlen, exact)

  ARGV[1] token    the caller's fencing token
  ARGV[2] now_ms   integer, unix ms (stored as field now_ms; the entry id is the server's)
  ARGV[3] maxlen   integer > 0: cap of the stream
  ARGV[4..] field, value pairs

  Returns {code}: OK | ERR_FENCED | ERR_BAD_ARG.
]]
--- @include "codes"
--- @include "util"
--- @include "fence"
--- @include "decision"

local token = ARGV[1]
local now_ms = ms_arg(ARGV[2])
local maxlen = int_arg(ARGV[3])
if not token or now_ms == nil or maxlen == nil or maxlen <= 0 or (#ARGV - 3) % 2 ~= 0 then
  return {ERR_BAD_ARG}
end
if not types_ok({[K.leader] = 'hash', [K.policy] = 'hash', [K.decisions] = 'stream'}) then
  return {ERR_WRONG_TYPE}
end
if not fence_ok(token, now_ms) then return {ERR_FENCED} end
local fields = {}
for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
record_decision(now_ms, maxlen, fields)
return {OK}

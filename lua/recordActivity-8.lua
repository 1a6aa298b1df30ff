--[[
  recordActivity: a user made a request (user:activity). Marks the user active and
  updates what the policy learns from (docs/design.md#4).

  KEYS[1] users_active   zset  user -> class id * 1e13 + last activity ms (codes.lua)
  KEYS[2] user_info      hash  user -> packed record (userrec.lua: seq, last, first, count, ...)
  KEYS[3] user_node      hash  user -> node (a connected user's activity is counted only)
  KEYS[4] stats          hash  counters
  KEYS[5] user_seq_floor string  highest message id of the user records forgetUsers deleted
  KEYS[6] boot           hash  learned boot time (mean_ms: B of the feature classes)
  KEYS[7] users_premium  set   premium users (their classes are offset by PREMIUM_CLASS)
  KEYS[8] users_waiting  zset  connected users without a node (their activity is counted only)

  ARGV[1] user_id        string, validated by the caller (1-128 printable characters)
  ARGV[2] now_ms         integer in [0, 1e13), caller's clock, unix ms (a score's ms part)
  ARGV[3] msg_id         integer, seq * 1e6 + position (0 = unordered)
  ARGV[4] default_boot_ms  optional integer in [1000, 86400000]: B before a boot is
                         observed (the feature classes' time scale), as the leader plans
                         with; absent: 30 s

  Returns {code, is_new_user}: OK | STALE | ERR_BAD_ARG.
]]
--- @include "codes"
--- @include "util"
--- @include "userrec"
--- @include "activity"

local user = ARGV[1]
local now_ms = ms_arg(ARGV[2])
local msg_id = int_arg(ARGV[3])
local default_ms = default_boot_arg(ARGV[4])
if user == nil or user == '' or now_ms == nil or msg_id == nil or not default_ms
  or #ARGV > 4 then
  return {ERR_BAD_ARG, 0}
end
if not activity_types_ok() then return {ERR_WRONG_TYPE, 0} end
local ctx = activity_context(default_ms)
local code, is_new = apply_activity(user, now_ms, msg_id, ctx)
activity_flush(ctx)
return {code, is_new}

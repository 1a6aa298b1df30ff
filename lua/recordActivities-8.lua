--[[
  recordActivities: a run of consecutive user:activity messages, applied in order, each
  exactly as recordActivity applies it (one effect per message, its own now_ms and id), in
  one call: a replica batches what is buffered on its subscription (docs/benchmarks.md#ingest).

  KEYS[1] users_active   zset  user -> class id * 1e13 + last activity ms (codes.lua)
  KEYS[2] user_info      hash  user -> packed record (userrec.lua: seq, last, first, count, ...)
  KEYS[3] user_node      hash  user -> node (a connected user's activity is counted only)
  KEYS[4] stats          hash  counters
  KEYS[5] user_seq_floor string  highest message id of the user records forgetUsers deleted
  KEYS[6] boot           hash  learned boot time (mean_ms: B of the feature classes)
  KEYS[7] users_premium  set   premium users (their classes are offset by PREMIUM_CLASS)
  KEYS[8] users_waiting  zset  connected users without a node (their activity is counted only)

  ARGV[1] default_boot_ms  integer in [1000, 86400000]: B before a boot is observed, as
                         recordActivity's ARGV[4] (first and required: a trailing optional
                         one could not be told from a truncated triple's numeric user id)
  ARGV    then n >= 1 triples, in message order:
  ARGV[3i-1] user_id     string, validated by the caller (1-128 printable characters)
  ARGV[3i]   now_ms      integer in [0, 1e13), caller's clock, unix ms
  ARGV[3i+1] msg_id      integer, seq * 1e6 + position (0 = unordered)

  Returns {OK, code_1, ..., code_n} (each OK | STALE) | {ERR_BAD_ARG} | {ERR_WRONG_TYPE};
  a refusal writes nothing.
]]
--- @include "codes"
--- @include "util"
--- @include "userrec"
--- @include "activity"

local default_ms = ARGV[1] ~= nil and default_boot_arg(ARGV[1])
if not default_ms or #ARGV < 4 or (#ARGV - 1) % 3 ~= 0 then return {ERR_BAD_ARG} end
local times, ids = {}, {}  -- by argument index: no table per message
for i = 2, #ARGV, 3 do
  local now_ms, msg_id = ms_arg(ARGV[i + 1]), int_arg(ARGV[i + 2])
  if ARGV[i] == '' or now_ms == nil or msg_id == nil then return {ERR_BAD_ARG} end
  times[i], ids[i] = now_ms, msg_id
end
if not activity_types_ok() then return {ERR_WRONG_TYPE} end
local out = {OK}
local ctx = activity_context(default_ms)
for i = 2, #ARGV, 3 do
  out[#out + 1] = (apply_activity(ARGV[i], times[i], ids[i], ctx))
end
activity_flush(ctx)
return out

--[[
  emitMarker: advance the shared sequence and publish a marker "seq:now_ms" on the marker
  channel (design-notes 3.1). Every replica calls it on a timer; it publishes only when
  the last marker is at least interval_ms old, so several replicas do not multiply them
  (duplicates would be harmless anyway).

  KEYS[1] seq          string  shared sequence counter
  KEYS[2] seq_last_ms  string  ms of the last marker

  ARGV[1] now_ms       integer, unix ms
  ARGV[2] interval_ms  integer >= 0
  ARGV[3] channel      the marker channel

  Returns {code, seq}: OK (published seq) | IGNORED (too soon) | ERR_BAD_ARG.
]]
--- @include "codes"
--- @include "util"

local now_ms = int_arg(ARGV[1])
local interval = int_arg(ARGV[2])
local channel = ARGV[3]
if now_ms == nil or interval == nil or interval < 0 or not channel then return {ERR_BAD_ARG, 0} end
if not types_ok({[K.seq] = 'string', [K.seq_last_ms] = 'string'}) then return {ERR_WRONG_TYPE, 0} end
local last = tonumber(redis.call('GET', K.seq_last_ms) or '-1')
-- a clock behind the last marker (another replica's, or one set back) does not throttle
if last >= 0 and now_ms >= last and now_ms - last < interval then return {IGNORED, 0} end
local seq = redis.call('INCR', K.seq)
redis.call('SET', K.seq_last_ms, now_ms)
redis.call('PUBLISH', channel, seq .. ':' .. now_ms)
return {OK, seq}

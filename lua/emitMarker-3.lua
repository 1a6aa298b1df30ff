--[[
  emitMarker: advance the shared sequence and publish a marker "seq:now_ms:tag" on the
  marker channel (docs/design.md#3-1). Every replica calls it on a timer; it publishes only
  when the last marker is at least interval_ms old, so several replicas do not multiply
  them (duplicates would be harmless anyway). tag = sha1(secret:seq:now_ms:secret) with a
  pool secret kept in Redis, so a stray or forged publish on the channel (which could make
  replicas jump the sequence) is recognised and ignored; it guards against accidents and
  clients that may publish but not read keys, it is not a cryptographic MAC.

  KEYS[1] seq          string  shared sequence counter
  KEYS[2] seq_last_ms  string  ms of the last marker
  KEYS[3] seq_secret   string  the pool's marker secret (set once, from ARGV[4])

  ARGV[1] now_ms       integer, unix ms
  ARGV[2] interval_ms  integer >= 0
  ARGV[3] channel      the marker channel
  ARGV[4] new_secret   random string, stored only when no secret exists yet
  ARGV[5] floor_seq    integer >= 0 (optional, 0): the highest seq the caller has seen; a
                       counter below it (the pool's keys deleted, or a Redis without
                       persistence restarted) is raised to it first, so message ids only
                       grow and no replica takes the new markers for stale ones; so is a
                       counter that is not a usable sequence number

  Returns {code, seq, raised}: OK (published seq; raised 1 when the counter was set to
  the floor) | IGNORED (too soon) | ERR_BAD_ARG.
]]
--- @include "codes"
--- @include "util"

-- the largest seq a marker can carry: floor(2^53 / 1e6) - 1 (MAX_SEQ, sequencer.py)
local MAX_SEQ = 9007199253
local now_ms = ms_arg(ARGV[1])
local interval = int_arg(ARGV[2])
local channel = ARGV[3]
local new_secret = ARGV[4]
local floor_seq = int_arg(ARGV[5] or '0')
if now_ms == nil or interval == nil or interval < 0 or not channel or not new_secret
  or #new_secret < 16 or floor_seq == nil or floor_seq < 0
  or floor_seq >= MAX_SEQ then
  return {ERR_BAD_ARG, 0}
end
if not types_ok({[K.seq] = 'string', [K.seq_last_ms] = 'string', [K.seq_secret] = 'string'}) then
  return {ERR_WRONG_TYPE, 0}
end
local last = tonumber(redis.call('GET', K.seq_last_ms) or '-1') or -1  -- unreadable: none
-- a clock behind the last marker (another replica's, or one set back) does not throttle
if last >= 0 and now_ms >= last and now_ms - last < interval then return {IGNORED, 0} end
redis.call('SET', K.seq_secret, new_secret, 'NX')
local secret = redis.call('GET', K.seq_secret)
-- a counter below the floor (the keys were deleted), or one no marker can carry (not an
-- integer, or at MAX_SEQ or past it: its INCR would be past it) is set to the floor
local cur = tonumber(redis.call('GET', K.seq) or '0')
local raised = 0
if cur == nil or cur ~= math.floor(cur) or cur < floor_seq or cur >= MAX_SEQ then
  redis.call('SET', K.seq, floor_seq)
  raised = 1
end
local seq = redis.call('INCR', K.seq)
redis.call('SET', K.seq_last_ms, now_ms)
local body = seq .. ':' .. now_ms
redis.call('PUBLISH', channel, body .. ':' .. redis.sha1hex(secret .. ':' .. body .. ':' .. secret))
return {OK, seq, raised}

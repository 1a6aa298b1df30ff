--[[
  applyDecision: the second half of a leader tick, in one round trip. Given the policy's
  decision, (1) reaps: marks stuck-booting nodes and surplus idle ready nodes
  terminating (as reapNodes); (2) records create intents for the nodes still missing,
  need = min(max_creates, target_spare + waiting - spare) with spare = ready + booting +
  open intents after the reap (as createIntents: before the POSTs, docs/design.md#3-3),
  and, under a cap, at most max_nodes - counted (caps.lua: every node that costs, the
  reaped ones included; a reap moves nodes between counted sets, so counted is the same
  before and after it); (3) stores the decision with its inputs and what was done (as
  recordDecision). Fenced by the lease token: all or nothing.

  KEYS[1]  leader             hash    holder, token, expires_ms
  KEYS[2]  node_state         hash    node -> state
  KEYS[3]  nodes_booting      zset    node -> created ms
  KEYS[4]  nodes_ready        zset    node -> idle-since ms
  KEYS[5]  nodes_terminating  zset    node -> ms termination was decided
  KEYS[6]  users_waiting      zset    user -> band * 1e13 + since ms
  KEYS[7]  stats              hash    counters
  KEYS[8]  intents            zset    intent id -> ms recorded
  KEYS[9]  policy             hash    field -> value of the latest decision
  KEYS[10] decisions          stream  one entry per decision (MAXLEN maxlen, exact)
  KEYS[11] nodes_allocated    zset    node -> allocated ms
  KEYS[12] nodes_unknown      zset    node -> ms first reported while unknown

  ARGV[1]  token            the caller's fencing token
  ARGV[2]  now_ms           integer, unix ms
  ARGV[3]  keep_alive_ms    integer >= 0: idle time before a surplus ready node may go
  ARGV[4]  reap_floor       integer >= 0: ready + booting nodes the reaper leaves
  ARGV[5]  boot_timeout_ms  integer > 0: a node booting longer is stuck
  ARGV[6]  max_reap         integer > 0: most nodes marked terminating
  ARGV[7]  target_spare     integer >= 0: spare nodes (ready + booting + intents) to hold
  ARGV[8]  max_creates      integer >= 0: most intents recorded (0: creates paused)
  ARGV[9]  intent_prefix    string: intent ids are intent_prefix .. '-' .. i, i = 1..need
  ARGV[10] maxlen           integer > 0: cap of the decisions stream
  ARGV[11..] field, value pairs of the decision's inputs (stored with now_ms, spare,
             created, reaped_idle, reaped_stuck, withheld and counted added here). An
             optional field max_nodes (integer >= 0) caps the pool: no cap without it, as
             callers that do not know it expect.

  Returns {code, n_stuck, n_idle, created, spare, withheld, counted, node ids...}: spare =
  ready + booting + intents after the reap, before the new intents; withheld = intents
  the cap refused (0 without a cap); counted = nodes counted against the cap, before the
  new intents; the first n_stuck ids were stuck booting (the caller DELETEs and replaces
  them), the next n_idle were idle (DELETE); the caller POSTs for intents
  intent_prefix-1 .. intent_prefix-created.
  Codes: OK | ERR_FENCED | ERR_BAD_ARG | ERR_WRONG_TYPE (nothing written on an error).
]]
--- @include "codes"
--- @include "util"
--- @include "fence"
--- @include "terminate"
--- @include "reap"
--- @include "intents"
--- @include "decision"
--- @include "caps"

local token = ARGV[1]
local now_ms = ms_arg(ARGV[2])
local keep_alive = int_arg(ARGV[3])
local floor = int_arg(ARGV[4])
local boot_timeout = int_arg(ARGV[5])
local max_reap = int_arg(ARGV[6])
local target = int_arg(ARGV[7])
local max_creates = int_arg(ARGV[8])
local prefix = ARGV[9]
local maxlen = int_arg(ARGV[10])
local cap_ok, max_nodes = max_nodes_arg(11)
if not token or now_ms == nil or keep_alive == nil or keep_alive < 0 or floor == nil
  or floor < 0 or boot_timeout == nil or boot_timeout <= 0 or max_reap == nil
  or max_reap <= 0 or target == nil or target < 0 or max_creates == nil or max_creates < 0
  or not prefix or prefix == '' or maxlen == nil or maxlen <= 0 or (#ARGV - 10) % 2 ~= 0
  or not cap_ok then
  return {ERR_BAD_ARG, 0, 0, 0, 0, 0, 0}
end
if not types_ok({[K.leader] = 'hash', [K.node_state] = 'hash', [K.nodes_booting] = 'zset',
  [K.nodes_ready] = 'zset', [K.nodes_terminating] = 'zset', [K.users_waiting] = 'zset',
  [K.stats] = 'hash', [K.intents] = 'zset', [K.policy] = 'hash',
  [K.decisions] = 'stream', [K.nodes_allocated] = 'zset', [K.nodes_unknown] = 'zset'}) then
  return {ERR_WRONG_TYPE, 0, 0, 0, 0, 0, 0}
end
if not fence_ok(token, now_ms) then return {ERR_FENCED, 0, 0, 0, 0, 0, 0} end

local stuck, idle = reap_nodes(now_ms, keep_alive, floor, boot_timeout, max_reap)
local spare = redis.call('ZCARD', K.nodes_ready) + redis.call('ZCARD', K.nodes_booting)
  + redis.call('ZCARD', K.intents)
local need = target + redis.call('ZCARD', K.users_waiting) - spare
if need > max_creates then need = max_creates end
if need < 0 then need = 0 end
local counted = nodes_counted()
local withheld = 0
if max_nodes ~= nil and counted + need > max_nodes then
  withheld = counted + need - max_nodes
  if withheld > need then withheld = need end
  need = need - withheld
end
local ids = {}
for i = 1, need do ids[i] = prefix .. '-' .. i end
add_intents(now_ms, ids, 1, need)

local fields = {}
for i = 11, #ARGV do fields[#fields + 1] = ARGV[i] end
for _, kv in ipairs({{'spare', spare}, {'created', need}, {'reaped_idle', #idle},
  {'reaped_stuck', #stuck}, {'withheld', withheld}, {'counted', counted}}) do
  fields[#fields + 1] = kv[1]
  fields[#fields + 1] = kv[2]
end
record_decision(now_ms, maxlen, fields)

local out = {OK, #stuck, #idle, need, spare, withheld, counted}
for _, node in ipairs(stuck) do out[#out + 1] = node end
for _, node in ipairs(idle) do out[#out + 1] = node end
return out

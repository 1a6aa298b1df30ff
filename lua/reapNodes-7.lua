--[[
  reapNodes: the leader picks nodes to terminate and marks them terminating, in one step,
  before it calls DELETE: (1) nodes stuck in booting past boot_timeout_ms (a ready that
  never came, docs/design.md#3-2), all of them; (2) ready nodes idle past keep_alive_ms,
  oldest-idle first, only while ready + booting stays above target_spare. Allocated nodes
  are never chosen (invariant I2). Fenced by the lease token. At most max_count per call.

  KEYS[1] leader             hash  holder, token, expires_ms
  KEYS[2] node_state         hash  node -> state
  KEYS[3] nodes_booting      zset  node -> created ms
  KEYS[4] nodes_ready        zset  node -> idle-since ms
  KEYS[5] nodes_terminating  zset  node -> ms termination was decided
  KEYS[6] users_waiting      zset  user -> band * 1e13 + since ms
  KEYS[7] stats              hash  counters

  ARGV[1] token            the caller's fencing token
  ARGV[2] now_ms           integer, unix ms
  ARGV[3] keep_alive_ms    integer >= 0: idle time before a ready node may go
  ARGV[4] target_spare     integer >= 0: ready + booting nodes to keep
  ARGV[5] boot_timeout_ms  integer > 0: a node booting longer is stuck
  ARGV[6] max_count        integer > 0: most nodes marked per call

  Returns {code, n_stuck, node ids...}: OK | ERR_FENCED | ERR_BAD_ARG. The first
  n_stuck ids were stuck booting (the caller replaces them), the rest were idle.
]]
--- @include "codes"
--- @include "util"
--- @include "fence"
--- @include "terminate"
--- @include "reap"

local token = ARGV[1]
local now_ms = ms_arg(ARGV[2])
local keep_alive = int_arg(ARGV[3])
local target = int_arg(ARGV[4])
local boot_timeout = int_arg(ARGV[5])
local max_count = int_arg(ARGV[6])
if not token or now_ms == nil or keep_alive == nil or keep_alive < 0 or target == nil
  or target < 0 or boot_timeout == nil or boot_timeout <= 0 or max_count == nil
  or max_count <= 0 then
  return {ERR_BAD_ARG, 0}
end
if not types_ok({[K.leader] = 'hash', [K.node_state] = 'hash', [K.nodes_booting] = 'zset',
  [K.nodes_ready] = 'zset', [K.nodes_terminating] = 'zset', [K.users_waiting] = 'zset',
  [K.stats] = 'hash'}) then return {ERR_WRONG_TYPE, 0} end
if not fence_ok(token, now_ms) then return {ERR_FENCED, 0} end

local stuck, idle = reap_nodes(now_ms, keep_alive, target, boot_timeout, max_count)
local out = {OK, #stuck}
for _, node in ipairs(stuck) do out[#out + 1] = node end
for _, node in ipairs(idle) do out[#out + 1] = node end
return out

--[[
  recordNodeStatus: the node manager reported a state change (node:status).
  booting: confirms a node we registered. ready: learns the boot time and hands the node
  to the first waiting user or to the warm pool. terminated: removes the node; if it was
  allocated, its user goes to the front of the waitlist and gets the next ready node.
  A status for a node we never registered is parked in node:early / nodes:unknown: the
  POST's 202 may simply not be recorded yet (registerNode consumes it), else the leader's
  reconcile adopts or deletes it.

  KEYS[1]  node_state         hash  node -> booting|ready|allocated|terminating|terminated
  KEYS[2]  node_created       hash  node -> ms its create intent was recorded
  KEYS[3]  node_ready_at      hash  node -> ms it became ready
  KEYS[4]  node_user          hash  node -> user
  KEYS[5]  node_seq           hash  node -> last message id applied
  KEYS[6]  nodes_booting      zset  node -> created ms
  KEYS[7]  nodes_ready        zset  node -> idle-since ms
  KEYS[8]  nodes_allocated    zset  node -> allocated ms
  KEYS[9]  nodes_terminating  zset  node -> ms termination was decided
  KEYS[10] nodes_terminated   zset  node -> ms it ended
  KEYS[11] nodes_unknown      zset  node -> ms first reported while unknown
  KEYS[12] node_early         hash  node -> "status|ms" reported while unknown
  KEYS[13] user_node          hash  user -> node
  KEYS[14] users_waiting      zset  user -> band * 1e13 + since ms
  KEYS[15] user_wait_since    hash  user -> ms its wait began
  KEYS[16] boot               hash  learned boot time (n, mean_ms, var_ms2, last_ms)
  KEYS[17] stats              hash  counters

  ARGV[1] node_id      string
  ARGV[2] status       booting | ready | terminated
  ARGV[3] now_ms       integer, unix ms
  ARGV[4] msg_id       integer, seq * 1e6 + position (0 = unordered)
  ARGV[5] channel      the user:assigned channel name
  ARGV[6] alpha_min    number in (0, 1]: floor of the boot-time EWMA weight

  Returns {code, user_or_false, replacement_or_false}: OK | DUPLICATE | IGNORED |
  UNKNOWN_NODE | STALE | ERR_BAD_ARG. The user is the one the node went to (ready) or who
  lost it (terminated); the replacement is the ready node that user got at once, if any.
]]
--- @include "codes"
--- @include "util"
--- @include "assign"
--- @include "nodes"

local node = ARGV[1]
local status = ARGV[2]
local now_ms = ms_arg(ARGV[3])
local msg_id = int_arg(ARGV[4])
local channel = ARGV[5]
local alpha_min = tonumber(ARGV[6])
if node == nil or node == '' or now_ms == nil or msg_id == nil or not channel
  or alpha_min == nil or alpha_min <= 0 or alpha_min > 1
  or (status ~= 'booting' and status ~= 'ready' and status ~= 'terminated') then
  return {ERR_BAD_ARG, false, false}
end
local want = {}
for i = 1, #KEYS do want[KEYS[i]] = 'hash' end
for _, z in ipairs({K.nodes_booting, K.nodes_ready, K.nodes_allocated, K.nodes_terminating,
  K.nodes_terminated, K.nodes_unknown, K.users_waiting}) do want[z] = 'zset' end
if not types_ok(want) then return {ERR_WRONG_TYPE, false, false} end
if not seq_is_new(K.node_seq, node, msg_id) then return {STALE, false, false} end

local state = redis.call('HGET', K.node_state, node)
if not state then
  -- Unknown node: park the latest status; registerNode applies it when the 202 lands.
  local early = redis.call('HGET', K.node_early, node)
  local keep = true
  if early then
    local prev = string.match(early, '^(%a+)|')
    -- never downgrade terminated, never go back from ready to booting
    if prev == 'terminated' or (prev == 'ready' and status == 'booting') then keep = false end
  end
  seq_mark(K.node_seq, node, msg_id)
  if keep then redis.call('HSET', K.node_early, node, status .. '|' .. now_ms) end
  redis.call('ZADD', K.nodes_unknown, 'NX', now_ms, node)
  stat('status_unknown_node')
  return {UNKNOWN_NODE, false, false}
end

seq_mark(K.node_seq, node, msg_id)
local code, user, replacement = IGNORED, false, false
if status == 'booting' then
  if state == 'booting' then code = DUPLICATE end
elseif status == 'ready' then
  code, user, replacement = on_ready(node, state, now_ms, channel, alpha_min)
else
  code, user, replacement = on_terminated(node, state, now_ms, channel)
end
if code == DUPLICATE then stat('status_duplicate') elseif code == IGNORED then stat('status_ignored') end
return {code, user, replacement}

-- Store a scaling decision: the latest in K.policy (read by `provisioner status`), every
-- one in the capped stream K.decisions (read by `provisioner explain`). `fields` is a flat
-- list of field, value pairs; now_ms goes first.
local function record_decision(now_ms, maxlen, fields)
  local all = {'now_ms', now_ms}
  for i = 1, #fields do all[#all + 1] = fields[i] end
  redis.call('HSET', K.policy, unpack(all))
  redis.call('XADD', K.decisions, 'MAXLEN', maxlen, '*', unpack(all))
end

-- Durable state transitions: each thread owns a slice of the instance ids in CCM_IDS_FILE
-- and visits them round robin, so that an instance's previous move has completed before
-- its next one is sent (its slice is far larger than its connections). Each instance is
-- scheduled, then cycles INSTANTIATING, RUNNING, then STOPPING, STOPPED, RUNNING forever.
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

local ids, steps, pos = {}, {}, 0
local worker = os.getenv("CCM_WORKER_ID")
local cycle = {"STOPPING", "STOPPED", "RUNNING"}

function init(args)
  local threads = tonumber(os.getenv("CCM_THREADS") or "2")
  local n = 0
  for line in io.lines(os.getenv("CCM_IDS_FILE")) do
    if n % threads == tid then
      ids[#ids + 1] = line
      steps[#ids] = 0
    end
    n = n + 1
  end
end

function request()
  pos = pos % #ids + 1
  local id, step = ids[pos], steps[pos]
  steps[pos] = step + 1
  local headers = {["Content-Type"] = "application/json"}
  if step == 0 then
    return wrk.format("POST", "/api/internal/instances/" .. id .. "/schedule", headers,
                      '{"worker_id":"' .. worker .. '"}')
  end
  local to
  if step == 1 then to = "INSTANTIATING" elseif step == 2 then to = "RUNNING" else to = cycle[(step - 3) % 3 + 1] end
  return wrk.format("POST", "/api/internal/instances/" .. id .. "/transition", headers, '{"to":"' .. to .. '"}')
end

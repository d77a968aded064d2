-- Durable state transitions: each thread owns a slice of the instance ids in CCM_IDS_FILE
-- and visits them round robin, so that an instance's previous move has completed before
-- its next one is sent (its slice is far larger than its connections). Each instance is
-- scheduled (the n-th id on worker n mod W of CCM_WORKER_IDS_FILE), then moves to
-- INSTANTIATING and RUNNING, then cycles STOPPING, STOPPED, RUNNING. With CCM_RUNNING=1 the
-- instances are RUNNING already and only cycle.
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

local ids, workers, steps, pos = {}, {}, {}, 0
local cycle = {"STOPPING", "STOPPED", "RUNNING"}

function init(args)
  local threads = tonumber(os.getenv("CCM_THREADS") or "2")
  local all_workers = {}
  for line in io.lines(os.getenv("CCM_WORKER_IDS_FILE")) do all_workers[#all_workers + 1] = line end
  local n = 0
  for line in io.lines(os.getenv("CCM_IDS_FILE")) do
    if n % threads == tid then
      ids[#ids + 1] = line
      workers[#ids] = all_workers[n % #all_workers + 1]
      steps[#ids] = os.getenv("CCM_RUNNING") == "1" and 3 or 0
    end
    n = n + 1
  end
end

local primed = false
function request()
  -- wrk may call request() once before the run to build a template it never sends; that
  -- first call must not use up an instance's move.
  if not primed then
    primed = true
    return wrk.format("GET", "/health/live")
  end
  pos = pos % #ids + 1
  local id, step = ids[pos], steps[pos]
  steps[pos] = step + 1
  local headers = {["Content-Type"] = "application/json"}
  if step == 0 then
    return wrk.format("POST", "/api/internal/instances/" .. id .. "/schedule", headers,
                      '{"worker_id":"' .. workers[pos] .. '"}')
  end
  local to
  if step == 1 then to = "INSTANTIATING" elseif step == 2 then to = "RUNNING" else to = cycle[(step - 3) % 3 + 1] end
  return wrk.format("POST", "/api/internal/instances/" .. id .. "/transition", headers, '{"to":"' .. to .. '"}')
end

-- Structured CloudEvents with unique ids: assessment.collection.completed for instances
-- (from CCM_IDS_FILE) that are past COLLECTING, so each one is a stale no-op whose dedup key
-- is committed durably.
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

local ids, n = {}, 0
function init(args)
  for line in io.lines(os.getenv("CCM_IDS_FILE")) do ids[#ids + 1] = line end
end

function request()
  n = n + 1
  local id = ids[n % #ids + 1]
  local body = string.format(
    '{"specversion":"1.0","id":"bench-%d-%d","source":"/assessment-platform","type":"assessment.collection.completed",' ..
    '"time":"2026-11-27T02:00:00Z","datacontenttype":"application/json",' ..
    '"data":{"instance_id":"%s","collection_id":"c-%d","artifacts_uri":"s3://bench/%d"}}', tid, n, id, n, n)
  return wrk.format("POST", "/api/v1/events", {["Content-Type"] = "application/cloudevents+json"}, body)
end

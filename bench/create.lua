-- Creates instances of the definition CCM_DEFINITION_ID, each thread up to CCM_CREATE_EACH.
local limit = tonumber(os.getenv("CCM_CREATE_EACH") or "1000")
local definition = os.getenv("CCM_DEFINITION_ID")
local sent, done = 0, 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function request()
  sent = sent + 1
  local body = string.format(
    '{"definition_id":"%s","owner_id":"candidate-%d","timeslot_start":"2026-12-01T09:00:00Z","timeslot_end":"2026-12-01T10:00:00Z"}',
    definition, sent)
  return wrk.format(nil, "/api/v1/instances", nil, body)
end

function response(status)
  done = done + 1
  if done >= limit then wrk.thread:stop() end
end

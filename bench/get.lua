-- GET /api/v1/instances/{id} for ids drawn at random from CCM_IDS_FILE.
local ids = {}
function init(args)
  for line in io.lines(os.getenv("CCM_IDS_FILE")) do ids[#ids + 1] = line end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end
function request()
  return wrk.format("GET", "/api/v1/instances/" .. ids[math.random(#ids)])
end

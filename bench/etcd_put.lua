-- The reference for ccm's durable transitions on etcd (bench/compare.sh, pair "etcd"): a raw
-- put of one key per request over etcd's JSON gateway (POST /v3/kv/put, key and value in
-- base64), the gateway ccm's etcd store speaks. Each thread cycles through CCM_KEYS keys
-- (default 6400) of its own; each value is CCM_VALUE_BYTES bytes (default 1500: bench/
-- compare.sh passes the average size of a seeded instance as ccm stores it). With CCM_KEY_BYTES,
-- each key is padded to that many bytes (the gateway-against-gRPC probe writes keys and values
-- the sizes etcdctl check perf writes).
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = 2 + (b and 1 or 0) + (c and 1 or 0)
    for k = 1, 4 do
      if k <= chars then
        local v = math.floor(n / 2 ^ (6 * (4 - k))) % 64
        out[#out + 1] = alphabet:sub(v + 1, v + 1)
      else
        out[#out + 1] = "="
      end
    end
  end
  return table.concat(out)
end

local keys, value, n = {}, nil, 0
function init(args)
  local count = tonumber(os.getenv("CCM_KEYS") or "6400")
  local key_bytes = tonumber(os.getenv("CCM_KEY_BYTES") or "0")
  for k = 1, count do
    local key = string.format("/bench/raw/%d/%06d/", tid, k)
    keys[k] = base64(key .. string.rep("k", math.max(0, key_bytes - #key)))
  end
  local bytes = tonumber(os.getenv("CCM_VALUE_BYTES") or "1500")
  value = base64(string.rep("x", bytes))
end

function request()
  n = n + 1
  local body = '{"key":"' .. keys[n % #keys + 1] .. '","value":"' .. value .. '"}'
  return wrk.format("POST", "/v3/kv/put", {["Content-Type"] = "application/json"}, body)
end


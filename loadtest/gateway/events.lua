-- wrk script: binary-mode CloudEvents (or batches of structured ones) with a real bearer token.
-- Environment: TOKEN (access token, required), BATCH (events per request; 1 = binary mode),
-- RUN_ID (prefix that keeps ids unique across runs). Prints one "RESULT {json}" line at the end.
-- The event, ids and RESULT line: loadtest/wrk_events.lua.

package.path = (debug.getinfo(1, "S").source:match("^@(.-)[^/]+/[^/]+$") or "../") .. "?.lua;" .. package.path
local shared = require("wrk_events")

local token = os.getenv("TOKEN") or error("set TOKEN to an access token")
local batch = tonumber(os.getenv("BATCH") or "1")
local run_id = os.getenv("RUN_ID") or tostring(os.time())

setup = shared.setup

request = function()
  if batch <= 1 then
    local id = shared.next_id(run_id)
    local headers = shared.binary_headers(id, "/loadtest/wrk", { ["Authorization"] = "Bearer " .. token })
    return wrk.format("POST", "/", headers, shared.order(id))
  end
  local events = {}
  for i = 1, batch do
    local id = shared.next_id(run_id)
    events[i] = string.format(
      '{"specversion":"1.0","id":"%s","source":"/loadtest/wrk","type":"dev.ripple.shop.order.placed","data":%s}',
      id, shared.order(id))
  end
  local headers = {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/cloudevents-batch+json",
  }
  return wrk.format("POST", "/", headers, "[" .. table.concat(events, ",") .. "]")
end

done = function(summary, latency, requests)
  shared.print_result(summary, latency, string.format(',"batch":%d', batch))
end

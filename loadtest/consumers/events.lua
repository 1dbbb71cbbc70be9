-- wrk script: binary-mode CloudEvents (order.placed, ~230-byte body) POSTed straight to a
-- consumer function, as a KafkaSource dispatcher delivers them. Environment: RUN_ID (source
-- prefix, unique per run), AMOUNT (order amount; above ALERT_THRESHOLD makes order-alerts
-- write and emit). Prints one "RESULT {json}" line at the end.
-- The event, ids and RESULT line: loadtest/wrk_events.lua.

package.path = (debug.getinfo(1, "S").source:match("^@(.-)[^/]+/[^/]+$") or "../") .. "?.lua;" .. package.path
local shared = require("wrk_events")

local run_id = os.getenv("RUN_ID") or tostring(os.time())
local amount = os.getenv("AMOUNT") or "9.5"

setup = shared.setup

request = function()
  local id = shared.next_id()
  local headers = shared.binary_headers(id, "/loadtest/consumers/" .. run_id, {
    ["ce-subject"] = "o-" .. id,
    ["ce-time"] = "2026-11-27T10:00:00Z",
    ["ce-tenant"] = "acme",
  })
  return wrk.format("POST", "/", headers, shared.order(id, amount))
end

done = function(summary, latency, requests)
  shared.print_result(summary, latency)
end

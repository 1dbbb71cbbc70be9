-- wrk script for the ingress peers, with the same order event as loadtest/gateway/events.lua.
-- Environment:
--   MODE     binary (Knative broker receiver: one binary-mode CloudEvent per request, ce-* headers)
--            bridge (Strimzi Kafka Bridge: {"records":[...]} with the structured CloudEvent as value)
--   BATCH    records per request (bridge only; binary is always 1)
--   PATH_    request path (/peer/bench for Knative, /topics/<topic> for the bridge)
--   RUN_ID   prefix that keeps ids unique across runs
-- Prints one "RESULT {json}" line at the end, as events.lua does, plus "record_errors": responses
-- of the bridge whose body carries a per-record error_code (it answers 200 even then).
-- The event, ids and RESULT line: loadtest/wrk_events.lua.

package.path = (debug.getinfo(1, "S").source:match("^@(.-)[^/]+/[^/]+$") or "../") .. "?.lua;" .. package.path
local shared = require("wrk_events")

local mode = os.getenv("MODE") or "binary"
local batch = tonumber(os.getenv("BATCH") or "1")
local path = os.getenv("PATH_") or "/"
local run_id = os.getenv("RUN_ID") or tostring(os.time())

record_errors = 0

setup = shared.setup

request = function()
  if mode == "binary" then
    local id = shared.next_id(run_id)
    return wrk.format("POST", path, shared.binary_headers(id, "/loadtest/wrk"), shared.order(id))
  end
  local records = {}
  for i = 1, batch do
    local id = shared.next_id(run_id)
    records[i] = string.format(
      '{"key":"o-%s","value":{"specversion":"1.0","id":"%s","source":"/loadtest/wrk",'
        .. '"type":"dev.ripple.shop.order.placed","datacontenttype":"application/json","data":%s}}',
      id, id, shared.order(id))
  end
  local headers = { ["Content-Type"] = "application/vnd.kafka.json.v2+json" }
  return wrk.format("POST", path, headers, '{"records":[' .. table.concat(records, ",") .. ']}')
end

if mode == "bridge" then
  -- only the bridge needs its bodies read (a response() function makes wrk parse every body)
  response = function(status, headers, body)
    if body and string.find(body, "error_code", 1, true) then
      record_errors = record_errors + 1
    end
  end
end

done = function(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(shared.threads) do
    bad = bad + (thread:get("record_errors") or 0)
  end
  shared.print_result(summary, latency, string.format(',"batch":%d,"record_errors":%d', batch, bad))
end

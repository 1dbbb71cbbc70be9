-- wrk script for the ingress peers, with the same order event as loadtest/gateway/events.lua.
-- Environment:
--   MODE     binary (Knative broker receiver: one binary-mode CloudEvent per request, ce-* headers)
--            bridge (Strimzi Kafka Bridge: {"records":[...]} with the structured CloudEvent as value)
--   BATCH    records per request (bridge only; binary is always 1)
--   PATH_    request path (/peer/bench for Knative, /topics/<topic> for the bridge)
--   RUN_ID   prefix that keeps ids unique across runs
-- Prints one "RESULT {json}" line at the end, as events.lua does, plus "record_errors": responses
-- of the bridge whose body carries a per-record error_code (it answers 200 even then).

local mode = os.getenv("MODE") or "binary"
local batch = tonumber(os.getenv("BATCH") or "1")
local path = os.getenv("PATH_") or "/"
local run_id = os.getenv("RUN_ID") or tostring(os.time())

local threads = {}
local counter = 0
thread_id = 0
record_errors = 0

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  record_errors = 0
end

local function next_id()
  counter = counter + 1
  return string.format("%s-%d-%d", run_id, thread_id, counter)
end

local function order(id)
  return string.format(
    '{"orderId":"o-%s","customerId":"c-%d","items":[{"sku":"sku-1","quantity":1,"unitPrice":12.5}],'
      .. '"amount":12.5,"currency":"EUR"}', id, counter % 1000)
end

request = function()
  if mode == "binary" then
    local id = next_id()
    local headers = {
      ["Content-Type"] = "application/json",
      ["ce-specversion"] = "1.0",
      ["ce-id"] = id,
      ["ce-source"] = "/loadtest/wrk",
      ["ce-type"] = "dev.ripple.shop.order.placed",
    }
    return wrk.format("POST", path, headers, order(id))
  end
  local records = {}
  for i = 1, batch do
    local id = next_id()
    records[i] = string.format(
      '{"key":"o-%s","value":{"specversion":"1.0","id":"%s","source":"/loadtest/wrk",'
        .. '"type":"dev.ripple.shop.order.placed","datacontenttype":"application/json","data":%s}}',
      id, id, order(id))
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
  local errors = summary.errors
  local bad = 0
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("record_errors") or 0)
  end
  print(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"non_2xx":%d,"socket_errors":%d,"p50_us":%d,"p99_us":%d,'
      .. '"batch":%d,"record_errors":%d}',
    summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(99), batch, bad))
end

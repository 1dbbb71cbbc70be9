-- wrk script: binary-mode CloudEvents (order.placed, ~230-byte body) POSTed straight to a
-- consumer function, as a KafkaSource dispatcher delivers them. Environment: RUN_ID (id and
-- source prefix, unique per run), AMOUNT (order amount; above ALERT_THRESHOLD makes order-alerts
-- write and emit). Prints one "RESULT {json}" line at the end.

local run_id = os.getenv("RUN_ID") or tostring(os.time())
local amount = os.getenv("AMOUNT") or "9.5"
local threads = {}
local counter = 0
thread_id = 0  -- set per thread by setup() (a global: thread:set writes globals)

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

request = function()
  counter = counter + 1
  local id = string.format("%d-%d", thread_id, counter)
  local body = string.format(
    '{"orderId":"o-%s","customerId":"c-%d","items":[{"sku":"sku-1","quantity":1,"unitPrice":%s}],'
      .. '"amount":%s,"currency":"EUR"}', id, counter % 1000, amount, amount)
  local headers = {
    ["Content-Type"] = "application/json",
    ["ce-specversion"] = "1.0",
    ["ce-id"] = id,
    ["ce-source"] = "/loadtest/consumers/" .. run_id,
    ["ce-type"] = "dev.ripple.shop.order.placed",
    ["ce-subject"] = "o-" .. id,
    ["ce-time"] = "2026-11-27T10:00:00Z",
    ["ce-tenant"] = "acme",
  }
  return wrk.format("POST", "/", headers, body)
end

done = function(summary, latency, requests)
  local errors = summary.errors
  print(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"non_2xx":%d,"socket_errors":%d,"p50_us":%d,"p99_us":%d}',
    summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end

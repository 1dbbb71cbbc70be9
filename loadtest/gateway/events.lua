-- wrk script: binary-mode CloudEvents (or batches of structured ones) with a real bearer token.
-- Environment: TOKEN (access token, required), BATCH (events per request; 1 = binary mode),
-- RUN_ID (prefix that keeps ids unique across runs). Prints one "RESULT {json}" line at the end.

local token = os.getenv("TOKEN") or error("set TOKEN to an access token")
local batch = tonumber(os.getenv("BATCH") or "1")
local run_id = os.getenv("RUN_ID") or tostring(os.time())

local threads = {}
local counter = 0
thread_id = 0  -- set per thread by setup() (a global: thread:set writes globals; a local hid it)

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
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
  if batch <= 1 then
    local id = next_id()
    local headers = {
      ["Authorization"] = "Bearer " .. token,
      ["Content-Type"] = "application/json",
      ["ce-specversion"] = "1.0",
      ["ce-id"] = id,
      ["ce-source"] = "/loadtest/wrk",
      ["ce-type"] = "dev.ripple.shop.order.placed",
    }
    return wrk.format("POST", "/", headers, order(id))
  end
  local events = {}
  for i = 1, batch do
    local id = next_id()
    events[i] = string.format(
      '{"specversion":"1.0","id":"%s","source":"/loadtest/wrk","type":"dev.ripple.shop.order.placed","data":%s}',
      id, order(id))
  end
  local headers = {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/cloudevents-batch+json",
  }
  return wrk.format("POST", "/", headers, "[" .. table.concat(events, ",") .. "]")
end

done = function(summary, latency, requests)
  local errors = summary.errors
  print(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"non_2xx":%d,"socket_errors":%d,"p50_us":%d,"p99_us":%d,"batch":%d}',
    summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(99), batch))
end

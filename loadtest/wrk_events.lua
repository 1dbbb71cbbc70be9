-- What the wrk scripts of loadtest/ share (gateway/events.lua, peers/peers.lua,
-- consumers/events.lua): thread numbers, event ids, the order.placed event and the one
-- "RESULT {json}" line that loadtest/measure.py's run_wrk reads. One definition, so ripple's
-- gateway, its peers and the consumers are sent the same event and report the same figures.
--
-- A script beside it in a subfolder loads it with (the path of the script, not the working
-- directory, so wrk may run from anywhere):
--   package.path = (debug.getinfo(1, "S").source:match("^@(.-)[^/]+/[^/]+$") or "../")
--     .. "?.lua;" .. package.path
--   local shared = require("wrk_events")
--   setup = shared.setup

local M = {}

-- wrk runs setup() and done() in its main Lua state and request() in one state per thread: the
-- list of threads lives in the main state, the counter in each thread's.
M.threads = {}
local counter = 0
thread_id = 0 -- set per thread by setup() (a global: thread:set writes globals; a local would hide it)

-- wrk's setup(thread): numbers the threads 1, 2, ... so that ids never repeat across threads.
function M.setup(thread)
  thread:set("thread_id", #M.threads + 1)
  table.insert(M.threads, thread)
end

-- The next id of this thread: "<prefix>-<thread>-<n>", or "<thread>-<n>" without a prefix.
function M.next_id(prefix)
  counter = counter + 1
  if prefix then
    return string.format("%s-%d-%d", prefix, thread_id, counter)
  end
  return string.format("%d-%d", thread_id, counter)
end

-- The order.placed data (JSON) of order o-<id>: one line of sku-1 at `price` (a decimal as text,
-- default 12.5), which is also the amount.
function M.order(id, price)
  price = price or "12.5"
  return string.format(
    '{"orderId":"o-%s","customerId":"c-%d","items":[{"sku":"sku-1","quantity":1,"unitPrice":%s}],'
      .. '"amount":%s,"currency":"EUR"}', id, counter % 1000, price, price)
end

-- The headers of one binary-mode order.placed CloudEvent, plus `extra` (more ce-* attributes,
-- Authorization).
function M.binary_headers(id, source, extra)
  local headers = {
    ["Content-Type"] = "application/json",
    ["ce-specversion"] = "1.0",
    ["ce-id"] = id,
    ["ce-source"] = source,
    ["ce-type"] = "dev.ripple.shop.order.placed",
  }
  for name, value in pairs(extra or {}) do
    headers[name] = value
  end
  return headers
end

-- wrk's done(): the one RESULT line; `extra` is more JSON members, each starting with a comma.
function M.print_result(summary, latency, extra)
  local errors = summary.errors
  print(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"non_2xx":%d,"socket_errors":%d,"p50_us":%d,"p99_us":%d%s}',
    summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(99), extra or ""))
end

return M

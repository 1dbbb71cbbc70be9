-- wrk script of the edge benchmark: ONE client (one token, one address) posting page-view events.
--
-- Run with as many connections as threads (-t N -c N): each thread then has a single connection,
-- so request() and response() strictly alternate and the time between them is the latency of
-- that request. That is what lets this script split latencies by outcome (admitted 2xx vs 429),
-- which wrk's own summary cannot do.
--
-- Environment:
--   EDGE_CLIENT          label printed with the results (e.g. "greedy")
--   EDGE_TOKEN           bearer token
--   EDGE_CLIENT_ADDRESS  sent as X-Forwarded-For; the benchmark's nginx trusts it from 127.0.0.1
--                        only, as the cluster's nginx trusts the OpenShift router's
--   EDGE_DELAY_MS        pause before each request on a connection (0 = as fast as possible)

local ffi = require("ffi")
ffi.cdef [[
    struct ripple_timeval { long tv_sec; long tv_usec; };
    int gettimeofday(struct ripple_timeval *tv, void *tz);
]]
local timeval = ffi.new("struct ripple_timeval")

local function now_ms()
    ffi.C.gettimeofday(timeval, nil)
    return tonumber(timeval.tv_sec) * 1000 + tonumber(timeval.tv_usec) / 1000
end

local label = os.getenv("EDGE_CLIENT") or "client"
local token = os.getenv("EDGE_TOKEN") or ""
local address = os.getenv("EDGE_CLIENT_ADDRESS") or ""
local pause_ms = tonumber(os.getenv("EDGE_DELAY_MS") or "0")
local body = '{"sessionId": "bench", "path": "/"}'

local threads = {}
local next_thread = 0

function setup(thread)
    next_thread = next_thread + 1
    thread:set("thread_id", next_thread)
    table.insert(threads, thread)
end

-- Per-thread results; done() reads them with thread:get.
statuses = {}
admitted_ms = {}
rejected_ms = {}
local sent = 0
local started_ms = 0

function request()
    sent = sent + 1
    started_ms = now_ms()
    local headers = {
        ["ce-specversion"] = "1.0",
        ["ce-id"] = string.format("bench-%s-%d-%d-%d", label, thread_id, sent, started_ms),
        ["ce-source"] = "/loadtest/edge",
        ["ce-type"] = "dev.ripple.shop.page.viewed",
        ["content-type"] = "application/json",
        ["authorization"] = "Bearer " .. token,
    }
    if address ~= "" then
        headers["x-forwarded-for"] = address
    end
    return wrk.format("POST", "/", headers, body)
end

function response(status, headers, response_body)
    local elapsed = now_ms() - started_ms
    local key = tostring(status)
    statuses[key] = (statuses[key] or 0) + 1
    if status >= 200 and status < 300 then
        admitted_ms[#admitted_ms + 1] = elapsed
    elseif status == 429 then
        rejected_ms[#rejected_ms + 1] = elapsed
    end
end

function delay()
    return pause_ms
end

local function percentile(sorted, p)
    if #sorted == 0 then
        return 0
    end
    return sorted[math.max(1, math.ceil(p * #sorted))]
end

function done(summary, latency, requests)
    local mix, admitted, rejected = {}, {}, {}
    for _, thread in ipairs(threads) do
        for status, count in pairs(thread:get("statuses")) do
            mix[status] = (mix[status] or 0) + count
        end
        for _, v in ipairs(thread:get("admitted_ms")) do
            admitted[#admitted + 1] = v
        end
        for _, v in ipairs(thread:get("rejected_ms")) do
            rejected[#rejected + 1] = v
        end
    end
    table.sort(admitted)
    table.sort(rejected)
    local seconds = summary.duration / 1e6
    local parts = {}
    for status, count in pairs(mix) do
        parts[#parts + 1] = string.format("%s=%d", status, count)
    end
    table.sort(parts)
    local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
    -- One machine-readable line; loadtest/edge/bench.py turns it into the report table.
    io.write(string.format(
        "EDGE_RESULT client=%s seconds=%.1f requests=%d rps=%.1f admitted_rps=%.1f statuses=%s socket_errors=%d "
            .. "admitted_p50_ms=%.2f admitted_p99_ms=%.2f rejected_p50_ms=%.2f rejected_p99_ms=%.2f\n",
        label, seconds, summary.requests, summary.requests / seconds, #admitted / seconds,
        table.concat(parts, ","), errors,
        percentile(admitted, 0.50), percentile(admitted, 0.99),
        percentile(rejected, 0.50), percentile(rejected, 0.99)
    ))
end

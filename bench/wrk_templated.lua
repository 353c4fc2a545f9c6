-- wrk script: the URL's path and query is a template. In each request, "__N__" becomes "<thread>-<n>" (unique within
-- a run: e.g. a new e-mail address per request) and "__R__" a random whole number from 0 to the script's first
-- argument minus one (e.g. one of the addresses a database was seeded with): wrk ... -s wrk_templated.lua URL -- 1000000
-- done() prints one line, "WRK_RESULT {json}", that bench/wrk.py parses: requests, duration, every kind of error
-- (connect, read, write, timeout, status >= 400 as wrk counts it, and any response outside 2xx as this script counts
-- it) and latency percentiles in ms.
-- The environment may set the method (WRK_METHOD, default GET), a body (WRK_BODY, templated like the path) and
-- headers (WRK_HEADERS, "Name: value" lines): wrk's own -H would do for headers, but a body needs the script.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("id", #threads)
end

function init(args)
   template = wrk.path
   range = tonumber(args[1] or "1")
   math.randomseed(os.time() * 1000 + id)
   n = 0
   non_2xx = 0
   method = os.getenv("WRK_METHOD") or "GET"
   body_template = os.getenv("WRK_BODY")
   headers = {}
   for line in (os.getenv("WRK_HEADERS") or ""):gmatch("[^\n]+") do
      local name, value = line:match("^([^:]+):%s*(.*)$")
      if name then headers[name] = value end
   end
end

local function fill(text)
   text = text:gsub("__N__", id .. "-" .. n)
   return (text:gsub("__R__", tostring(math.random(0, range - 1))))
end

function request()
   n = n + 1
   local body = body_template and fill(body_template) or nil
   return wrk.format(method, fill(template), headers, body)
end

function response(status, headers, body)
   if status < 200 or status > 299 then
      non_2xx = non_2xx + 1
   end
end

function done(summary, latency, requests)
   local non_2xx_total = 0
   local sent = 0
   for _, thread in ipairs(threads) do
      non_2xx_total = non_2xx_total + thread:get("non_2xx")
      sent = sent + thread:get("n")
   end
   local e = summary.errors
   io.write(string.format(
      'WRK_RESULT {"requests": %d, "sent": %d, "duration_us": %d, "bytes": %d, ' ..
      '"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d, "status": %d, "non_2xx": %d}, ' ..
      '"latency_ms": {"min": %.3f, "mean": %.3f, "max": %.3f, "p50": %.3f, "p90": %.3f, "p99": %.3f}}\n',
      summary.requests, sent, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.timeout, e.status, non_2xx_total,
      latency.min / 1000, latency.mean / 1000, latency.max / 1000,
      latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000))
end

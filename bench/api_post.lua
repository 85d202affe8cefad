-- wrk script for bench/api.py: POST the body in $WRK_BODY with $WRK_AUTH, print one JSON line.
wrk.method = "POST"
local f = assert(io.open(os.getenv("WRK_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = os.getenv("WRK_AUTH")

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"non_2xx":%d,"socket_errors":%d,"us":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout, summary.duration,
    latency:percentile(50), latency:percentile(99)))
end

-- wrk-report.lua: prints one machine-readable line at the end of a wrk run,
-- read by bench/run.sh. Latencies are in microseconds.
done = function(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "WRKRESULT rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d requests=%d errors=%d non2xx=%d\n",
    summary.requests / secs,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    summary.requests, e.connect + e.read + e.write + e.timeout, e.status))
end

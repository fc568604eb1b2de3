-- wrk calls done() once, after the run: print its exact counts as one JSON line for run.py.
-- (No response() function: defining one would make wrk hand every response to Lua.)
done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        '{"requests": %d, "bytes": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
        '"status": %d, "timeout": %d}\n',
        summary.requests, summary.bytes, summary.duration, e.connect, e.read, e.write, e.status, e.timeout))
end

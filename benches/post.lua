-- wrk script for `cargo bench --bench auth`: POSTs one JSON body, read from
-- the file LATCH_BODY names, on every request (an introspection of one
-- access token, say). Any other header comes from wrk's -H.

local file = assert(io.open(os.getenv("LATCH_BODY"), "r"))
wrk.method = "POST"
wrk.body = file:read("*a")
wrk.headers["Content-Type"] = "application/json"
file:close()

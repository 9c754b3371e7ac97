-- wrk script for `cargo bench --bench auth`: registrations, each of an
-- address not used before. The file LATCH_PREFIX names holds a prefix the
-- bench makes unique per run (a taken address would answer 202 too, but
-- this measures new accounts).

local password = "correct horse battery staple"
local prefix, n = "", 0

function init(args)
   local file = assert(io.open(os.getenv("LATCH_PREFIX"), "r"))
   prefix = file:read("*l")
   file:close()
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
end

function request()
   n = n + 1
   local body = '{"email":"' .. prefix .. n .. '@bench.test","password":"' .. password .. '"}'
   return wrk.format(nil, nil, nil, body)
end

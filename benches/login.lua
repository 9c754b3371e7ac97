-- wrk script for `cargo bench --bench auth`: logins, round robin over the
-- accounts listed one address a line in the file LATCH_EMAILS names (all
-- with the bench's password), so each account signs in as often as the
-- next, as in the bench's reqwest loop.

local password = "correct horse battery staple"
local emails, next_one = {}, 0

function init(args)
   for line in io.lines(os.getenv("LATCH_EMAILS")) do
      emails[#emails + 1] = line
   end
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
end

function request()
   next_one = next_one % #emails + 1
   local body = '{"email":"' .. emails[next_one] .. '","password":"' .. password .. '"}'
   return wrk.format(nil, nil, nil, body)
end

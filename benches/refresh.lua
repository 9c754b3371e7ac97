-- wrk script for `cargo bench --bench auth`: rotates refresh tokens.
-- LATCH_TOKENS names a file with one refresh token per line (more tokens
-- than connections). Each wrk thread takes every n-th token; a request takes
-- a token from the thread's queue and the response puts the successor back,
-- so no token is ever in flight twice and every request is a real rotation.

-- LATCH_WRK_THREADS must equal wrk's -t.

local counter = 0

function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
end

function init(args)
   local n = tonumber(os.getenv("LATCH_WRK_THREADS") or "1")
   queue, head, tail = {}, 1, 0
   local i = 0
   for line in io.lines(os.getenv("LATCH_TOKENS")) do
      if i % n == id then
         tail = tail + 1
         queue[tail] = line
      end
      i = i + 1
   end
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
end

function request()
   local token = "exhausted"
   if head <= tail then
      token = queue[head]
      queue[head] = nil
      head = head + 1
   end
   return wrk.format(nil, nil, nil, '{"refresh_token":"' .. token .. '"}')
end

function response(status, headers, body)
   local token = status == 200 and body:match('"refresh_token":"([^"]+)"')
   if token then
      tail = tail + 1
      queue[tail] = token
   end
end

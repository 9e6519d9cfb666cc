-- POST a 1024-byte JSON body (the size of ferry-bench's default events) to every request.
--
--   ferry-bench ceiling &
--   wrk -t2 -c64 -d10s -s crates/ferry-bench/wrk/post-1k.lua http://127.0.0.1:8099/
local head = '{"type":"bench.event","seq":1,"sent_ns":1767225600000000000,"pad":"'
local tail = '"}'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = head .. string.rep("x", 1024 - #head - #tail) .. tail
assert(#wrk.body == 1024)

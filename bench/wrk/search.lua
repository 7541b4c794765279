-- S2: GET /api/v1/products?q=<word>&min_price=<n> with a different query each request, so
-- every request misses the cache and runs the search on the 10,000 bench products.
-- wrk ... -s search.lua URL -- <run salt>
local words = {"mug", "lamp", "chair", "desk", "pen"}
local counter = 0
local threads = 0

function setup(thread)
  thread:set("offset", threads * 1000003)
  threads = threads + 1
end

function init(args)
  salt = tonumber(args[1] or "0")
  counter = offset or 0
end

function request()
  counter = counter + 1
  local word = words[(counter % #words) + 1]
  local cents = (counter * 7919 + salt) % 1000000
  local path = string.format(
    "/api/v1/products?page_size=20&q=%s&min_price=%d.%02d",
    word, math.floor(cents / 100) % 400, cents % 100
  )
  return wrk.format("GET", path)
end

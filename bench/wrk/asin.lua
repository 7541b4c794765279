-- S4: POST /api/v1/product/asin with an X-API-Key, a distinct (ASIN, marketplace) each request.
-- wrk ... -s asin.lua URL -- <api key> <number of ASINs> <thread offset>
local marketplaces = {"US", "CA", "MX", "BR", "UK", "DE", "FR", "IT", "ES", "NL", "SE", "PL",
                      "JP", "AU", "SG", "IN", "AE", "SA", "TR", "BE"}
local counter = 0
local threads = 0

function setup(thread)
  thread:set("offset", threads * 1000003)
  threads = threads + 1
end

function init(args)
  key = args[1]
  asins = tonumber(args[2])
  counter = tonumber(args[3] or "0") + (offset or 0)
end

function request()
  counter = counter + 1
  local asin = string.format("B0%08d", (counter % asins) + 1)
  local marketplace = marketplaces[(math.floor(counter / asins) % #marketplaces) + 1]
  local headers = {["Content-Type"] = "application/json", ["X-API-Key"] = key}
  local body = string.format('{"asin":"%s","marketplace":"%s"}', asin, marketplace)
  return wrk.format("POST", "/api/v1/product/asin", headers, body)
end

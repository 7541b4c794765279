-- S6: each wrk thread drives ONE connection (run with -t N -c N) as its own user: put two
-- products in the cart, then check out; one order every three requests.
-- wrk -tN -cN ... -s checkout.lua URL -- <first product id> <token 1> ... <token N>
-- User k buys products first + 2(k-1) and first + 2(k-1) + 1 (stock enough for the run).
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

function init(args)
  token = "Bearer " .. args[id + 1]
  first = tonumber(args[1]) + 2 * (id - 1)
  second = first + 1
  step = 0
  address = '{"shipping_address":{"name":"Bench Buyer","line1":"1 Bench Street",'
    .. '"city":"Benchtown","postal_code":"12345","country":"US"}}'
end

function request()
  step = step + 1
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = token}
  local phase = step % 3
  if phase == 1 then
    return wrk.format("PUT", "/api/v1/cart/items/" .. first, headers, '{"quantity":1}')
  elseif phase == 2 then
    return wrk.format("PUT", "/api/v1/cart/items/" .. second, headers, '{"quantity":2}')
  end
  return wrk.format("POST", "/api/v1/orders", headers, address)
end

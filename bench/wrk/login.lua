-- S7: POST /api/v1/auth/login with the right password.
-- wrk ... -s login.lua URL -- <email> <password>
function init(args)
  wrk.method = "POST"
  wrk.path = "/api/v1/auth/login"
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = string.format('{"email":"%s","password":"%s"}', args[1], args[2])
end

-- examples/ratelimit.lua: messages per sender in a window, counted in a
-- real redis-server started here and shared by two luamta servers; 451
-- 4.7.1 above the limit; accepted with a log line when Redis is down.
local server = require "server"
local redis = require "redis"

local EXAMPLE = "examples/ratelimit.lua"

-- One transaction; returns the MAIL reply.
local function send(srv, sender)
  local c = server.session(srv)
  local r = c:send("MAIL FROM:<" .. sender .. ">"):expect({ 250, 451 })
  if r.code == 250 then
    c:send("RCPT TO:<x@spec.test>"):expect(250)
    c:send("DATA"):expect(354)
    c:send_raw("Subject: rate\r\n\r\nhello\r\n.\r\n"):expect(250)
  end
  c:send("QUIT"):expect(221)
  c:close()
  return r
end

describe("examples/ratelimit.lua #integration", function()
  it("passes --check with RATELIMIT_REDIS, and refuses it missing or a bad RATELIMIT_MAX", function()
    local code, out, err = server.run({ "--check", "--script", EXAMPLE },
      { env = { RATELIMIT_REDIS = "127.0.0.1:6379" } })
    assert.are.equal(0, code, out .. err)
    code, out, err = server.run({ "--check", "--script", EXAMPLE })
    assert.are.equal(1, code, out .. err)
    assert.matches("RATELIMIT_REDIS must be host:port", out .. err, 1, true)
    code, out, err = server.run({ "--check", "--script", EXAMPLE },
      { env = { RATELIMIT_REDIS = "127.0.0.1:6379", RATELIMIT_MAX = "lots" } })
    assert.are.equal(1, code, out .. err)
    assert.matches("RATELIMIT_MAX must be a positive integer", out .. err, 1, true)
  end)

  it("answers 451 4.7.1 above RATELIMIT_MAX, counting across two servers", function()
    local r = assert(redis.start())
    local a, b
    finally(function()
      if a then a:stop() end
      if b then b:stop() end
      r:cleanup()
    end)
    local env = { RATELIMIT_REDIS = r:address(), RATELIMIT_MAX = "3", RATELIMIT_WINDOW = "3600" }
    a = assert(server.start({ policy = EXAMPLE, env = env }))
    b = assert(server.start({ policy = EXAMPLE, env = env }))
    assert.are.equal(250, send(a, "busy@sender.test").code)
    assert.are.equal(250, send(b, "Busy@sender.test").code)
    assert.are.equal(250, send(a, "busy@sender.test").code)
    local over = send(b, "busy@sender.test")
    assert.are.equal(451, over.code, over.raw)
    assert.are.equal("4.7.1", over.enhanced)
    assert.truthy(b:wait_log({ "ratelimit.over", "count=4", "max=3" }))
    -- another sender has its own count; the window has an expiry
    assert.are.equal(250, send(a, "quiet@sender.test").code)
    assert.are.equal("4", r:cli("GET", "ratelimit:busy@sender.test"))
    local ttl = tonumber(r:cli("TTL", "ratelimit:busy@sender.test"))
    assert.truthy(ttl and ttl > 0 and ttl <= 3600, tostring(ttl))
  end)

  it("lets mail through with a log line when Redis is down", function()
    local srv = assert(server.start({ policy = EXAMPLE,
      env = { RATELIMIT_REDIS = "127.0.0.1:" .. redis.free_port(), RATELIMIT_MAX = "1" } }))
    finally(function() srv:stop() end)
    assert.are.equal(250, send(srv, "a@sender.test").code)
    assert.are.equal(250, send(srv, "a@sender.test").code)
    assert.truthy(srv:wait_log({ "ratelimit.redis_error", "connection refused", "action=accept" }))
  end)
end)

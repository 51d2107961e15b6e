-- luamta.redis against a real redis-server started here: every reply type
-- through call and pipeline, error replies, db selection, AUTH, a server
-- down, killed and restarted, a command that is never answered (timeout,
-- then a fresh connection), a session that leaves while its hook waits,
-- calls where Lua cannot yield, refused commands, reply bounds, and hooks
-- waiting on a stalled Redis while other sessions go on.
local socket = require "socket"
local server = require "server"
local smtp = require "smtp"
local redis = require "redis"

local POLICY = "spec/fixtures/policies/redis_probe.lua"

local function probe(srv, name)
  local c = server.session(srv)
  local r = c:send("T " .. name):expect(250)
  c:send("QUIT"):expect(221)
  c:close()
  return (r.text:gsub("^2%.0%.0 ", ""))
end

local function start(r, env)
  env = env or {}
  env.REDIS_PORT = tostring(r.port)
  return assert(server.start({ policy = POLICY, env = env }))
end

describe("luamta.redis #integration", function()
  local r, srv
  lazy_setup(function()
    r = assert(redis.start())
    srv = start(r, { REDIS_SOCKET = r:socket() })
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    if r then r:cleanup() end
  end)

  it("maps every reply type of client:call, binary-safe, with error replies as nil, err", function()
    assert.are.equal("{"
      .. "{0,n=1},"                       -- DEL
      .. "{1,n=1},"                       -- INCR: integer
      .. "{'OK',n=1},"                    -- SET: status
      .. "{'hello',n=1},"                 -- GET: bulk
      .. "{n=1},"                         -- GET missing: nil alone
      .. "{3,n=1},"                       -- RPUSH with numbers as arguments
      .. "{{'a','2','3.5'},n=1},"         -- LRANGE: array
      .. "{{1,{2,'x'},false,'y'},n=1},"   -- nested, nil inside is false
      .. "{'OK',n=1},"
      .. "{6,true,n=2},"                  -- the NUL and CRLF came back
      .. "{nil,'ERR value is not an integer or out of range',n=2},"
      .. "{nil,'ERR unknown command 'NOSUCHCOMMAND', with args beginning with: 'x' ',n=2},"
      .. "{'PONG',n=1}}",
      probe(srv, "types"))
  end)

  it("sends a pipeline at once and answers one entry per command", function()
    assert.are.equal("{1,1,false,"
      .. "{err='ERR unknown command 'NOSUCHCOMMAND', with args beginning with: '},"
      .. "2,{'x','y'},'OK','QUEUED','QUEUED',"
      .. "{2,{err='WRONGTYPE Operation against a key holding the wrong kind of value'}}}",
      probe(srv, "pipeline"))
  end)

  it("selects the db given to connect", function()
    assert.are.equal("{'OK','three','nil',true}", probe(srv, "db"))
    assert.are.equal("three", r:cli("-n", "3", "GET", "db:k"))
    assert.are.equal("", r:cli("GET", "db:k"))
  end)

  it("connects over a UNIX socket, given as host = \"unix:/path\" or path", function()
    assert.are.equal("{1,2,true}", probe(srv, "unix"))
    assert.are.equal("2", r:cli("-n", "5", "GET", "unix"))
  end)

  it("raises where the hook cannot wait, and for commands that would break the shared connection",
    function()
      assert.matches("{false,'.*cannot wait here.*'}", probe(srv, "sort"))
      local out = probe(srv, "blocking")
      assert.matches("BLPOP is not supported on the shared connection", out, 1, true)
      assert.matches("MULTI only within one client:pipeline{}", out, 1, true)
      assert.matches("MULTI without EXEC or DISCARD", out, 1, true)
      assert.matches("argument 1 of command 1 is a table", out, 1, true)
      assert.are.equal(0, srv:count_log("luamta%.redis.*leak"))
    end)

  it("refuses a reply larger than max_reply without closing the connection", function()
    assert.are.equal("{nil,{{err='reply too large'},2000},2000}", probe(srv, "large"))
  end)

  it("validates connect's options", function()
    local out = probe(srv, "options")
    assert.matches("host must be an IP address", out, 1, true)
    assert.matches("port must be from 1 to 65535", out, 1, true)
    assert.matches("timeout must be from 0 to 3600", out, 1, true)
    assert.matches("unknown option bogus", out, 1, true)
    assert.matches("db must be from 0", out, 1, true)
    assert.matches("a socket path must be absolute", out, 1, true)
  end)

  it("times out a command that is never answered, then uses a new connection", function()
    assert.are.equal("OK", r:cli("CLIENT", "PAUSE", 30000, "WRITE"))
    local ok, out = pcall(probe, srv, "timeout")
    assert.are.equal("OK", r:cli("CLIENT", "UNPAUSE"))
    assert.is_true(ok, out)
    assert.are.equal("{nil,'timeout'}", out)
    assert.truthy(srv:wait_log({ "redis.drop", 'reason="timeout"' }))
    -- the old connection, whose reply stream is out of step, is gone: the
    -- new one answers its own commands
    assert.are.equal("{1}", probe(srv, "after_timeout"))
    assert.are.equal("{2}", probe(srv, "after_timeout"))
  end)

  it("holds 100 waiting hooks on a stalled Redis while another session goes on", function()
    r:cli("DEL", "waited")
    assert.are.equal("OK", r:cli("CLIENT", "PAUSE", 30000, "WRITE"))
    local clients = {}
    local unpaused = false
    finally(function()
      if not unpaused then r:cli("CLIENT", "UNPAUSE") end
      for _, c in ipairs(clients) do c:close() end
    end)
    for i = 1, 100 do
      local c = server.session(srv)
      c:send("MAIL FROM:<a@spec.test>"):expect(250)
      c:send_raw("RCPT TO:<wait" .. i .. "@spec.test>\r\n")
      clients[i] = c
    end
    -- a session that does not use Redis is served from start to end
    local d = server.session(srv)
    d:send("MAIL FROM:<b@spec.test>"):expect(250)
    d:send("RCPT TO:<plain@spec.test>"):expect(250)
    d:send("DATA"):expect(354)
    d:send_raw("Subject: x\r\n\r\nhello\r\n.\r\n"):expect(250)
    d:send("QUIT"):expect(221)
    d:close()
    -- ... while every waiting hook is still waiting
    assert.are.equal("", r:cli("GET", "waited"))
    assert.are.equal(0, srv:count_log("redis.waited"))
    for _, c in ipairs(clients) do
      c.sock:settimeout(0)
      local data, err = c.sock:receive(1)
      c.sock:settimeout(c.timeout)
      assert.is_nil(data, "a waiting session was answered during the pause")
      assert.are.equal("timeout", err)
    end
    unpaused = true
    assert.are.equal("OK", r:cli("CLIENT", "UNPAUSE"))
    local seen = {}
    for _, c in ipairs(clients) do
      local rep = c:expect(250, "waited")
      seen[tonumber(rep.text:match("waited (%d+)"))] = true
    end
    for i = 1, 100 do assert.truthy(seen[i], "no session got INCR value " .. i) end
    assert.are.equal("100", r:cli("GET", "waited"))
  end)

  it("cancels the call of a session that leaves while its hook waits", function()
    r:cli("DEL", "waited")
    assert.are.equal("OK", r:cli("CLIENT", "PAUSE", 30000, "WRITE"))
    local unpaused = false
    finally(function() if not unpaused then r:cli("CLIENT", "UNPAUSE") end end)
    local before = srv:count_log("smtp.close")
    for i = 1, 3 do
      local c = server.session(srv)
      c:send("MAIL FROM:<a@spec.test>"):expect(250)
      c:send_raw("RCPT TO:<wait-gone" .. i .. "@spec.test>\r\n")
      -- a reset, not a half-close (which still gets its replies)
      c.sock:setoption("linger", { on = true, timeout = 0 })
      c:close()
    end
    assert.truthy(srv:wait_log("smtp.close reason=", nil, before + 3), srv:log_tail(20))
    unpaused = true
    assert.are.equal("OK", r:cli("CLIENT", "UNPAUSE"))
    -- the commands were sent and run; their replies went nowhere
    local c = server.session(srv)
    c:send("MAIL FROM:<a@spec.test>"):expect(250)
    c:send("RCPT TO:<wait-after@spec.test>"):expect(250, "waited 4")
    c:close()
    assert.are.equal(0, srv:count_log("redis.waited rcpt=wait%-gone"))
  end)
end)

describe("luamta.redis AUTH #integration", function()
  it("authenticates first on every new connection, and refuses a wrong or missing password", function()
    local r = assert(redis.start({ password = "s3cret" }))
    local srv
    finally(function()
      if srv then srv:stop() end
      r:cleanup()
    end)
    srv = start(r, { REDIS_PASSWORD = "s3cret" })
    assert.are.equal("{'PONG'}", probe(srv, "auth_ok"))
    assert.matches("^{nil,'auth: WRONGPASS", probe(srv, "auth_wrong"))
    assert.matches("^{nil,'NOAUTH Authentication required.'}$", probe(srv, "auth_none"))
    -- after a restart, the pooled connection comes back authenticated
    r:stop()
    assert.matches("^{nil,'", probe(srv, "auth_try"))
    assert(r:restart())
    assert.are.equal("{'PONG'}", probe(srv, "auth_try"))
  end)
end)

describe("luamta.redis against a misbehaving server #integration", function()
  for _, case in ipairs({
    { "silent", "{nil,'timeout'}", "never answers" },
    { "cut", "^{nil,'connection reset by peer'}$", "resets the connection in mid-reply" },
    { "huge", "{nil,'reply too large'}", "sends more than a connection may buffer" },
  }) do
    it("returns an error when the server " .. case[3], function()
      local fake = redis.fake(case[1])
      local srv
      finally(function()
        if srv then srv:stop() end
        fake.stop()
      end)
      assert.truthy(fake.port, "the fake server did not start")
      srv = start({ port = 1 }, { REDIS_FAKE_PORT = tostring(fake.port) })
      assert.matches(case[2], probe(srv, "fake"))
    end)
  end
end)

describe("luamta.redis failures #integration", function()
  it("returns connection refused, reconnects after a kill and a restart", function()
    local r = assert(redis.start())
    local srv
    finally(function()
      if srv then srv:stop() end
      r:cleanup()
    end)
    srv = start(r, { REDIS_DEAD_PORT = tostring(redis.free_port()) })
    assert.are.equal("{nil,'connection refused'}", probe(srv, "refused"))
    assert.are.equal("{1}", probe(srv, "kept"))
    assert.are.equal("{2}", probe(srv, "kept"))
    r:stop()
    local out = probe(srv, "kept")
    assert.truthy(out == "{nil,'closed'}" or out == "{nil,'connection refused'}"
      or out:match("^{nil,'connection reset"), out)
    assert.are.equal("{nil,'connection refused'}", probe(srv, "kept"))
    assert(r:restart())
    -- the new server starts empty: the client reconnected on this call
    assert.are.equal("{1}", probe(srv, "kept"))
  end)

  it("wakes every waiting hook once with an error when the server dies under them", function()
    local r = assert(redis.start())
    local srv
    local clients = {}
    finally(function()
      for _, c in ipairs(clients) do c:close() end
      if srv then srv:stop() end
      r:cleanup()
    end)
    srv = start(r)
    assert.are.equal("OK", r:cli("CLIENT", "PAUSE", 30000, "WRITE"))
    for i = 1, 20 do
      local c = server.session(srv)
      c:send("MAIL FROM:<a@spec.test>"):expect(250)
      c:send_raw("RCPT TO:<wait-dies" .. i .. "@spec.test>\r\n")
      clients[i] = c
    end
    -- five leave (reset) while waiting; their calls are cancelled
    local before = srv:count_log("smtp.close")
    for i = 1, 5 do
      clients[i].sock:setoption("linger", { on = true, timeout = 0 })
      clients[i]:close()
    end
    assert.truthy(srv:wait_log("smtp.close reason=", nil, before + 5), srv:log_tail(20))
    r:stop()
    for i = 6, 20 do
      local rep = clients[i]:expect(451, "4.3.0")
      assert.truthy(rep.text:match("closed") or rep.text:match("reset"), rep.raw)
    end
    assert.are.equal(15, srv:count_log("redis.waited rcpt=wait%-dies"))
    assert.are.equal(15, srv:count_log("redis.waited rcpt=wait%-dies.* err="))
    assert(r:restart())
    local c = server.session(srv)
    c:send("MAIL FROM:<a@spec.test>"):expect(250)
    c:send("RCPT TO:<wait-again@spec.test>"):expect(250, "waited 1")
    c:close()
  end)
end)

-- Timeouts, connection limits, concurrent sessions, luamta.sleep not
-- blocking other sessions, and clients that vanish mid-DATA or mid-hook.
-- Nothing here asserts a duration: ordering and replies only.
local server = require "server"
local smtp = require "smtp"
local hooks = require "hooks"

local SCRIPTED = "spec/fixtures/policies/scripted.lua"
local STORE = "spec/fixtures/policies/store.lua"

local function files_matching(dir, pattern)
  local out = {}
  for _, name in ipairs(server.ls(dir)) do
    if name:match(pattern) then out[#out + 1] = name end
  end
  return out
end

describe("idle timeout (--timeout 1) #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ args = { "--timeout", "1" } }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it("answers an idle client with 421 4.4.2 and closes", function()
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    c:expect(421, "4.4.2")
    c:expect_closed()
  end)

  it("times out in the middle of a transaction too", function()
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    c:send("EHLO client.spec.test"):expect(250)
    c:send("MAIL FROM:<a@spec.test>"):expect(250)
    c:expect(421, "4.4.2")
    c:expect_closed()
  end)

  it("times out a client that sent half a command line", function()
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    c:send_raw("EHLO half")
    c:expect(421, "4.4.2")
    c:expect_closed()
  end)

  it("keeps serving new connections", function()
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    c:send("EHLO client.spec.test"):expect(250)
  end)
end)

describe("DATA timeout (--data-timeout 1) #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ policy = STORE, args = { "--timeout", "60", "--data-timeout", "1" } }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it("answers a client that stalls inside DATA with 421 4.4.2, closes, delivers nothing",
    function()
      local c = assert(smtp.connect(srv))
      finally(function() c:close() end)
      c:expect(220)
      c:send("EHLO client.spec.test"):expect(250)
      c:send("MAIL FROM:<a@spec.test>"):expect(250)
      c:send("RCPT TO:<b@spec.test>"):expect(250)
      c:send("DATA"):expect(354)
      c:send_raw("Subject: stalled\r\n\r\nfirst half")
      c:expect(421, "4.4.2")
      c:expect_closed()
      assert.are.same({}, files_matching(srv.dir, "^msg%-"))
    end)

  it("keeps serving new connections", function()
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    c:send("EHLO client.spec.test"):expect(250)
    c:message("a@spec.test", "b@spec.test", "Subject: ok\r\n\r\nok\r\n"):expect(250, "stored")
  end)
end)

-- Connects until a session is greeted with 220 (a closed slot may take the
-- server a moment to notice); fails after 10 s.
local function connect_until_greeted(srv, opts)
  local deadline = os.time() + 10
  repeat
    local c = smtp.connect(srv, opts)
    if c then
      local r = c:read_reply(5)
      if r and r.code == 220 then return c end
      c:close()
    end
    require("socket").sleep(0.05)
  until os.time() > deadline
  error("no 220 greeting within 10 s; log:\n" .. srv:log_tail(40))
end

describe("--max-connections 2 #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ args = { "--max-connections", "2" } }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it("answers a third client with 421 4.3.2 and closes it, then frees the slot", function()
    local c1 = assert(smtp.connect(srv))
    local c2 = assert(smtp.connect(srv))
    local c3, c4
    finally(function()
      for _, c in ipairs({ c1, c2, c3, c4 }) do c:close() end
    end)
    c1:expect(220)
    c2:expect(220)
    c3 = assert(smtp.connect(srv))
    c3:expect(421, "4.3.2")
    c3:expect_closed()
    -- the first two are unaffected
    c1:send("EHLO one.spec.test"):expect(250)
    c2:send("EHLO two.spec.test"):expect(250)
    c1:send("QUIT"):expect(221)
    c1:expect_closed()
    c4 = connect_until_greeted(srv)
    c4:send("EHLO four.spec.test"):expect(250)
  end)
end)

describe("--max-per-ip 1 #integration", function()
  local srv, exempt
  lazy_setup(function()
    srv = assert(server.start({ args = { "--max-per-ip", "1", "--limit-exempt", "none" } }))
    exempt = assert(server.start({ args = { "--max-per-ip", "1" } }))
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    if exempt then exempt:stop() end
  end)

  it("refuses a second session from the same address with 421 4.7.0 and closes it", function()
    local a = assert(smtp.connect(srv))
    local b, other, again
    finally(function()
      for _, c in ipairs({ a, b, other, again }) do c:close() end
    end)
    a:expect(220)
    b = assert(smtp.connect(srv))
    b:expect(421, "4.7.0") -- as Postfix answers
    b:expect_closed()
    assert.truthy(srv:wait_log("smtp.refuse peer=127.0.0.1 reason=max_per_ip"))
    -- another client address is a different client
    other = assert(smtp.connect(srv, { bind = "127.0.0.2" }))
    other:expect(220)
    a:send("QUIT"):expect(221)
    again = connect_until_greeted(srv)
    again:send("EHLO again.spec.test"):expect(250)
  end)

  it("spares loopback clients by default (--limit-exempt 127.0.0.0/8,::1/128)", function()
    local a, b
    finally(function()
      for _, c in ipairs({ a, b }) do c:close() end
    end)
    a = assert(smtp.connect(exempt))
    a:expect(220)
    b = assert(smtp.connect(exempt))
    b:expect(220)
    b:send("EHLO two.spec.test"):expect(250)
  end)
end)

describe("--max-conn-rate 3 #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ args = { "--max-conn-rate", "3", "--limit-exempt", "none" } }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it("refuses the fourth connection of a minute from one address with 421 4.7.0, "
    .. "counts another address apart", function()
    for i = 1, 3 do
      local c = assert(smtp.connect(srv))
      c:expect(220)
      c:send("QUIT"):expect(221)
      c:close()
    end
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(421, "4.7.0")
    c:expect_closed()
    assert.truthy(srv:wait_log("reason=max_conn_rate"))
    local other = assert(smtp.connect(srv, { bind = "127.0.0.2" }))
    other:expect(220)
    other:close()
  end)
end)

describe("concurrent sessions #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ policy = SCRIPTED,
      args = { "--hostname", "mx.spec.test", "--hook-timeout", "2" } }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it("interleaves ten sessions, each message intact", function()
    local N = 10
    local cs = {}
    finally(function() for _, c in ipairs(cs) do c:close() end end)
    for i = 1, N do cs[i] = assert(smtp.connect(srv)) end
    for i = 1, N do cs[i]:expect(220) end
    for i = N, 1, -1 do cs[i]:send("EHLO c" .. i .. ".spec.test") end
    for i = 1, N do cs[i]:expect(250) end
    for i = 1, N do cs[i]:send("MAIL FROM:<s" .. i .. "@spec.test>") end
    for i = N, 1, -1 do cs[i]:expect(250, "2.1.0") end
    for i = 1, N do cs[i]:send("RCPT TO:<r" .. i .. "@spec.test>"):send("DATA") end
    for i = 1, N do cs[i]:expect(250, "2.1.5"); cs[i]:expect(354) end
    -- half the bodies first, then the rest, in another order
    local bodies = {}
    for i = 1, N do
      bodies[i] = "Subject: session " .. i .. "\r\n\r\n" .. ("body " .. i .. "\r\n"):rep(i * 20)
      cs[i]:send_raw(bodies[i]:sub(1, #bodies[i] // 2))
    end
    for i = N, 1, -1 do cs[i]:send_raw(bodies[i]:sub(#bodies[i] // 2 + 1) .. ".\r\n") end
    local ids = {}
    for i = 1, N do
      cs[i]:expect(250, "2.0.0")
      ids[i] = hooks.session_id(cs[i])
    end
    for i = 1, N do
      local data = server.read_file(srv.dir .. "/message-" .. ids[i] .. "-0")
      assert.are.equal(bodies[i], server.unreceived(data), "message of session " .. i)
    end
  end)

  it("lets another session finish a transaction while one sleeps in a hook", function()
    local a = assert(smtp.connect(srv))
    local b
    finally(function() a:close(); if b then b:close() end end)
    a:expect(220)
    a:send("EHLO sleeper.spec.test"):expect(250)
    a:send("MAIL FROM:<a@spec.test>"):expect(250)
    -- 6 s of luamta.sleep, past --hook-timeout 2: sleeping must not count
    a:send("XACT on_rcpt sleep 6"):expect(250)
    a:send("RCPT TO:<slow@spec.test>")

    b = assert(smtp.connect(srv))
    b:expect(220)
    b:send("EHLO quick.spec.test"):expect(250)
    b:message("b@spec.test", { "c@spec.test" }, "Subject: quick\r\n\r\nx\r\n"):expect(250, "2.0.0")
    b:send("QUIT"):expect(221)
    -- b is done and a's RCPT is still waiting for its reply
    assert.is_false(a:has_data(), "the sleeping session answered before the other finished")
    a:expect(250, "2.1.5", 30)
    a:send("DATA"):expect(354)
    a:send_raw("Subject: slow\r\n\r\ny\r\n.\r\n"):expect(250, "2.0.0")
  end)
end)

describe("clients that vanish #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ policy = SCRIPTED, args = { "--hostname", "mx.spec.test" } }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end) -- exit 0: nothing leaked

  local function greeted()
    local c = assert(smtp.connect(srv))
    c:expect(220)
    c:send("EHLO client.spec.test"):expect(250)
    return c
  end

  it("delivers nothing when the client disconnects mid-DATA", function()
    local a = greeted()
    local id = hooks.session_id(a)
    a:send("MAIL FROM:<a@spec.test>"):expect(250)
    a:send("RCPT TO:<b@spec.test>"):expect(250)
    a:send("DATA"):expect(354)
    a:send_raw("Subject: cut\r\n\r\nhalf a messa")
    a:close()
    assert.truthy(srv:wait_file("events", "on_disconnect " .. id), "on_disconnect not called")
    local b = greeted()
    finally(function() b:close() end)
    b:message("b@spec.test", "c@spec.test", "Subject: whole\r\n\r\nx\r\n"):expect(250, "2.0.0")
    assert.are.same({}, files_matching(srv.dir, "^message%-" .. id))
    for _, e in ipairs(hooks.events(srv)) do
      assert.is_false(e.id == id and e.hook == "on_message", "on_message ran for the cut session")
    end
  end)

  it("survives a client that disconnects while a hook sleeps", function()
    local a = greeted()
    local id = hooks.session_id(a)
    a:send("MAIL FROM:<a@spec.test>"):expect(250)
    a:send("XACT on_rcpt sleep 2"):expect(250)
    a:send("RCPT TO:<b@spec.test>")
    a:close()
    -- a second sleeper started later wakes later: once it has answered,
    -- the first sleep is over too
    local b = greeted()
    finally(function() b:close() end)
    b:send("MAIL FROM:<a@spec.test>"):expect(250)
    b:send("XACT on_rcpt sleep 2"):expect(250)
    b:send("RCPT TO:<b@spec.test>"):expect(250, "2.1.5", 30)
    assert.truthy(srv:wait_file("events", "on_disconnect " .. id), "on_disconnect not called")
    local c = greeted()
    c:close()
  end)

  -- A reset, not a close: a client that only closes its side is still
  -- owed every reply (hardening_spec.lua), so it gets its message too.
  it("delivers nothing when the client resets the connection while on_message sleeps", function()
    local a = greeted()
    local id = hooks.session_id(a)
    a:send("XACT on_message sleep 2"):expect(250)
    a:message("a@spec.test", "b@spec.test", "Subject: gone\r\n\r\nx\r\n")
    -- wait until the message reached the hook, then vanish
    assert.truthy(srv:wait_file("events", "on_message " .. id), "on_message not reached")
    assert(a.sock:setoption("linger", { on = true, timeout = 0 }))
    a:close()
    local b = greeted()
    finally(function() b:close() end)
    local bid = hooks.session_id(b)
    b:send("XACT on_message sleep 2"):expect(250)
    b:message("a@spec.test", "b@spec.test", "Subject: stays\r\n\r\ny\r\n"):expect(250, "2.0.0", 30)
    assert.are.same({ "message-" .. bid .. "-0" }, files_matching(srv.dir, "^message%-" .. bid))
    assert.are.same({}, files_matching(srv.dir, "^message%-" .. id),
      "the message of the vanished client was delivered")
  end)
end)

describe("--max-errors (Postfix's smtpd_hard_error_limit) #integration", function()
  local srv, off
  lazy_setup(function()
    srv = assert(server.start({ args = { "--max-recipients", "1", "--metrics", "127.0.0.1:0" } }))
    off = assert(server.start({ args = { "--max-errors", "0" } }))
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    if off then off:stop() end
  end)

  it("answers the command after the 20th error 421 4.7.0 and closes", function()
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    for _ = 1, 20 do c:send("BOGUS"):expect(500, "5.5.2") end
    c:send("NOOP"):expect(421, "4.7.0")
    c:expect_closed()
    assert(srv:wait_log({ "smtp.error_limit errors=20" }))
  end)

  it("cuts off a pipelined burst after its 20th error reply", function()
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    c:send_raw(("BOGUS\r\n"):rep(30))
    for _ = 1, 20 do c:expect(500) end
    c:expect(421, "4.7.0")
    c:expect_closed()
  end)

  it("starts counting again after an accepted message", function()
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    c:send("EHLO client.spec.test"):expect(250)
    for _ = 1, 15 do c:send("MAIL FROM:<bad"):expect(501) end
    c:message("a@spec.test", { "b@spec.test" }, "Subject: x\r\n\r\nbody\r\n")
    c:expect(250)
    for _ = 1, 15 do c:send("MAIL FROM:<bad"):expect(501) end
    c:send("NOOP"):expect(250)
  end)

  it("does not count 452 4.5.3 (too many recipients) as an error", function()
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    c:send("EHLO client.spec.test"):expect(250)
    c:send("MAIL FROM:<a@spec.test>"):expect(250)
    c:send("RCPT TO:<b0@spec.test>"):expect(250)
    for i = 1, 30 do c:send("RCPT TO:<b" .. i .. "@spec.test>"):expect(452, "4.5.3") end
    c:send("RSET"):expect(250)
  end)

  it("counts the sessions it ended in the metrics", function()
    local sock = require("socket").connect("127.0.0.1", srv.metrics.port)
    sock:settimeout(10)
    sock:send("GET /metrics HTTP/1.0\r\n\r\n")
    local body = sock:receive("*a") or ""
    sock:close()
    assert.matches('\nluamta_sessions_total{result="error_limit"} 2\n', body, 1, true)
  end)

  it("with --max-errors 0, never", function()
    local c = assert(smtp.connect(off))
    finally(function() c:close() end)
    c:expect(220)
    for _ = 1, 50 do c:send("BOGUS"):expect(500) end
    c:send("NOOP"):expect(250)
  end)
end)

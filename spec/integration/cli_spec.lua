-- The command line: --version, --help, --check, scripts that fail to load,
-- listeners and the ready file, signals, the log format.
local socket = require "socket"
local server = require "server"
local smtp = require "smtp"

local P = "spec/fixtures/policies/"

describe("luamta command line #integration", function()
  it("--version prints the version and exits 0", function()
    local code, out, err = server.run({ "--version" })
    assert.are.equal(0, code, err)
    assert.matches("%d+%.%d+%.%d+", out .. err)
  end)

  it("--help lists the options and exits 0", function()
    local code, out, err = server.run({ "--help" })
    assert.are.equal(0, code, err)
    local text = out .. err
    for _, opt in ipairs({ "--listen", "--script", "--max-size", "--bare-lf", "--check",
      "--hook-timeout", "--lua-memory", "--ready-file" }) do
      assert.matches(opt, text, 1, true)
    end
  end)

  it("rejects an unknown option with a non-zero status and names it", function()
    local code, out, err = server.run({ "--no-such-option" }, { timeout = 20 })
    assert.are_not.equal(0, code)
    assert.are_not.equal(137, code) -- it exited by itself
    assert.matches("no-such-option", out .. err, 1, true)
  end)

  it("rejects a bad --bare-lf mode", function()
    local code, out, err = server.run({ "--bare-lf", "sometimes", "--listen", "127.0.0.1:0" },
      { timeout = 20 })
    assert.are_not.equal(0, code)
    assert.are_not.equal(137, code)
    assert.matches("--bare-lf", out .. err, 1, true)
  end)

  describe("--check", function()
    for _, f in ipairs({ "scripted.lua", "store.lua", "deliver.lua", "inspect.lua",
      "modules.lua" }) do
      it("prints OK and exits 0 for " .. f, function()
        local code, out, err = server.run({ "--check", "--script", P .. f })
        assert.are.equal(0, code, out .. err)
        assert.matches("OK", out, 1, true)
      end)
    end

    it("reports a syntax error with file and line, exit 1", function()
      local code, out, err = server.run({ "--check", "--script", P .. "syntax_error.lua" })
      assert.are.equal(1, code)
      assert.matches("syntax_error.lua:3:", out .. err, 1, true)
      assert.not_matches("^OK", out)
    end)

    it("reports an error raised while loading with file and line, exit 1", function()
      local code, out, err = server.run({ "--check", "--script", P .. "load_error.lua" })
      assert.are.equal(1, code)
      assert.matches("load_error.lua:3:", out .. err, 1, true)
      assert.matches("policy refuses to load", out .. err, 1, true)
    end)

    it("refuses a script that does not return a table", function()
      local code, out, err = server.run({ "--check", "--script", P .. "not_a_table.lua" })
      assert.are.equal(1, code)
      assert.matches("not_a_table.lua", out .. err, 1, true)
    end)

    it("refuses a missing script", function()
      local code, out, err = server.run({ "--check", "--script", P .. "no_such_policy.lua" })
      assert.are.equal(1, code)
      assert.matches("no_such_policy.lua", out .. err, 1, true)
    end)
  end)

  describe("a script that fails to load at start-up", function()
    for f, what in pairs({ ["syntax_error.lua"] = "syntax_error.lua:3:",
      ["load_error.lua"] = "load_error.lua:3:" }) do
      it("stops the server with exit 1 naming " .. what, function()
        local code, out, err = server.run({ "--script", P .. f, "--listen", "127.0.0.1:0" },
          { timeout = 30 })
        assert.are.equal(1, code, "status " .. tostring(code) .. ": " .. out .. err)
        assert.matches(what, err, 1, true)
      end)
    end

    it("through server.start returns nil and the error", function()
      local srv, err = server.start({ policy = P .. "syntax_error.lua" })
      if srv then srv:stop() end
      assert.is_nil(srv)
      assert.matches("exited with status 1", err, 1, true)
      assert.matches("syntax_error.lua:3:", err, 1, true)
    end)
  end)
end)

describe("luamta without a script #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ args = { "--hostname", "mx.spec.test", "--log-level", "debug" } }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it("greets with the configured host name", function()
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220, "^mx%.spec%.test ESMTP luamta")
  end)

  it("accepts and discards a message", function()
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    c:send("EHLO client.spec.test"):expect(250, "^mx%.spec%.test")
    c:message("a@spec.test", { "b@spec.test" }, "Subject: t\r\n\r\nbody\r\n")
      :expect(250, "2.0.0")
    c:send("QUIT"):expect(221, "2.0.0")
    c:expect_closed()
  end)

  it("logs one event per line with a time, level and session id, escaping client text",
    function()
      local c = assert(smtp.connect(srv))
      finally(function() c:close() end)
      c:expect(220)
      c:send("EHLO evil\x1b[31m\x07.spec.test"):read_reply()
      c:send("NOOP"):expect(250)
      c:send("QUIT"):expect(221)
      c:expect_closed()
      local log = srv:log()
      assert.is_nil(log:find("[%z\1-\9\11-\31\127]"), "raw control bytes in the log")
      local with_session = 0
      for line in log:gmatch("[^\n]+") do
        local time, level, sid = line:match("^(%S+) (%S+) (%S+) %S+")
        assert.truthy(time, "log line without time/level/session/event: " .. line)
        assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d", time)
        assert.truthy(({ error = 1, warn = 1, info = 1, debug = 1 })[level],
          "bad level in: " .. line)
        assert.truthy(sid == "-" or sid:match("^%x+$"), "bad session id in: " .. line)
        if sid:match("^" .. ("%x"):rep(16) .. "$") then with_session = with_session + 1 end
      end
      assert.is_true(with_session > 0, "no log line carries a 16-hex-digit session id")
    end)
end)

describe("luamta listeners and signals #integration", function()
  it("on SIGTERM stops listening, lets an open session finish, then exits 0", function()
    local srv = assert(server.start({}))
    local port = srv.port
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    srv:signal("TERM")
    assert(srv:wait_log({ "server.stop", "signal=TERM", "sessions=1" }))
    local c2 = smtp.connect(port)
    if c2 then c2:close() end
    assert.is_nil(c2, "the port still accepts connections while draining")
    -- The open session is still served to its end.
    c:send("EHLO drain.spec.test"):expect(250)
    c:send("MAIL FROM:<a@spec.test>"):expect(250)
    c:send("QUIT"):expect(221)
    assert.are.equal(0, srv:stop("TERM"))
  end)

  it("answers sessions left at --shutdown-timeout with 421 4.3.2 and exits 0", function()
    local srv = assert(server.start({ args = { "--shutdown-timeout", "1" } }))
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    srv:signal("TERM")
    c:expect(421, "4.3.2")
    assert.is_true(c:closed_by_peer(5))
    assert(srv:wait_log({ "server.drain_timeout" }))
    assert.are.equal(0, srv:stop("TERM"))
  end)

  it("closes every session at once on a second SIGTERM", function()
    local srv = assert(server.start({ args = { "--shutdown-timeout", "600" } }))
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    srv:signal("TERM")
    assert(srv:wait_log({ "server.stop", "signal=TERM" }))
    srv:signal("TERM")
    c:expect(421, "4.3.2")
    assert.are.equal(0, srv:stop("TERM"))
  end)

  it("exits 0 on SIGINT", function()
    local srv = assert(server.start({}))
    assert.are.equal(0, srv:stop("INT"))
  end)

  it("listens on several addresses and writes one ready line per listener", function()
    local probe = socket.tcp6()
    local v6 = probe and probe:bind("::1", 0)
    if probe then probe:close() end
    if not v6 then
      pending("needs IPv6 on ::1")
      return
    end
    local srv = assert(server.start({ listen = { "127.0.0.1:0", "[::1]:0" } }))
    local c4, c6
    finally(function()
      if c4 then c4:close() end
      if c6 then c6:close() end
      srv:stop()
    end)
    assert.are.equal(2, #srv.listeners)
    assert.are.equal("127.0.0.1", srv.listeners[1].addr)
    assert.matches("::1", srv.listeners[2].addr, 1, true)
    c4 = assert(smtp.connect(srv.listeners[1].port, srv))
    c4:expect(220)
    c6 = assert(smtp.connect(srv.listeners[2].port, srv, { host = "::1" }))
    c6:expect(220)
    c6:send("EHLO v6.spec.test"):expect(250)
    c6:send("QUIT"):expect(221)
  end)
end)

describe("policies can use system-installed Lua modules #integration", function()
  it("runs a policy that requires cjson", function()
    local srv = assert(server.start({ policy = "spec/fixtures/policies/modules.lua" }))
    local c
    finally(function() if c then c:close() end srv:stop() end)
    c = assert(smtp.connect(srv))
    c:expect(220)
    c:send("EHLO client.spec.test"):expect(250)
    local r = c:send("XJSON hello"):expect(250, "2.0.0")
    assert.matches('"upper":"HELLO"', r.text, 1, true)
    assert.matches('"arg":"hello"', r.text, 1, true)
  end)
end)

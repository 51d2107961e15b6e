-- spec/integration/hostile_spec.lua - policies that push on the edges of the
-- Lua C API rather than on the budgets faults_spec.lua covers: a C function
-- asked for more values than the Lua stack promises, a waiting call where
-- Lua cannot yield, script values read after the hook returned (metatables,
-- a replaced package table), and policy code that runs when no hook does
-- (a to-be-closed variable of a cancelled run). Each case once crashed,
-- hung or corrupted memory; the valgrind/ copy of this spec (scripts/test)
-- also sees errors inside liblua and libev, which ASan does not instrument.
local server = require "server"
local smtp = require "smtp"
local socket = require "socket"

-- A fresh server for each case, so a crash in one cannot fail the next.
local function start(finally, opts)
  local srv = assert(server.start(opts))
  local defer = server.cleanup(finally)
  defer(function() srv:stop() end)
  return srv, defer
end

local function connect(srv, defer)
  local c = assert(smtp.connect(srv))
  defer(function() c:close() end)
  c:expect(220)
  return c
end

-- A pause long enough for a timer the server should never have armed
-- (one second, as in the policies below) to fire. It waits; it asserts
-- nothing about how long anything took.
local function pause()
  socket.sleep(1.5)
end

describe("msg:headers with many fields #integration", function()
  local policy = [[
return {
  on_message = function(s, msg)
    local h = msg:headers("X-Trace")
    return 250, "2.0.0 n=" .. #h .. " first=" .. tostring(msg:header("X-Trace"))
      .. " subject=" .. tostring(msg:header("Subject"))
  end,
}
]]

  local function message(n)
    local lines = {}
    for i = 1, n do
      -- Not Received: fields, which past --max-hops would be a loop. Short
      -- ones: 5000 of them stay within the first 128 KiB, which is what
      -- header look-ups read.
      lines[i] = "X-Trace: " .. (i == 1 and "from h1.spec.test by mx.spec.test; id 1" or i)
    end
    lines[#lines + 1] = "Subject: many hops"
    lines[#lines + 1] = ""
    lines[#lines + 1] = "body"
    return table.concat(lines, "\r\n") .. "\r\n"
  end

  -- Lua promises a C function only 20 free stack slots: values pushed one
  -- per field overflow it quietly at 40 (only valgrind sees that), crash at
  -- 60, and 5000 is far past any fixed cap.
  for _, n in ipairs({ 40, 60, 5000 }) do
    it("returns all " .. n .. " of them", function()
      local srv, defer = start(finally, { script_source = policy })
      local c = connect(srv, defer)
      c:send("EHLO client.spec.test"):expect(250)
      local r = c:message("a@spec.test", { "b@spec.test" }, message(n)):expect(250)
      assert.are.equal("2.0.0 n=" .. n .. " first=from h1.spec.test by mx.spec.test; id 1"
        .. " subject=many hops", r.text)
      c:send("NOOP"):expect(250)
    end)
  end

  -- As Postfix's header_size_limit: a header section is read as far as
  -- the message's first 128 KiB, which stay in memory; the rest of the
  -- message (and of such a header) is only in the file.
  it("reads a header section of 200 KiB as far as its first 128 KiB", function()
    local srv, defer = start(finally, { script_source = policy })
    local c = connect(srv, defer)
    c:send("EHLO client.spec.test"):expect(250)
    local r = c:message("a@spec.test", { "b@spec.test" }, message(16000)):expect(250)
    local n = tonumber(r.text:match("n=(%d+)"))
    assert.is_true(n > 8000 and n < 9000, r.text)
    assert.truthy(r.text:find(" subject=nil$"), r.text)
  end)
end)

describe("luamta.sleep where Lua cannot yield #integration", function()
  it("raises an error inside an xpcall message handler and arms nothing", function()
    local srv, defer = start(finally, { hooks = {
      on_helo = function(s, n)
        xpcall(function() error("x") end, function(e) luamta.sleep(1) return e end)
        return 550
      end,
    } })
    local c = connect(srv, defer)
    c:send("HELO one.spec.test"):expect(550)
    c:send("HELO two.spec.test"):expect(550)
    pause()
    c:send("NOOP"):expect(250)
    c:send("QUIT"):expect(221)
  end)

  -- Each callback sleeps under pcall and the hook hands the error text back
  -- in a 550, so the spec reads what luamta.sleep said.
  local cases = {
    { "a string.gsub callback", [[
      return pcall(string.gsub, "abc", "b", function() luamta.sleep(1) end)
    ]] },
    { "a table.sort comparator", [[
      return pcall(table.sort, { 3, 1, 2 }, function(a, b) luamta.sleep(1) return a < b end)
    ]] },
    { "a __gc finalizer", [[
      local err
      local function litter()
        setmetatable({}, { __gc = function()
          local ok, e = pcall(luamta.sleep, 1)
          err = e
        end })
      end
      litter()
      collectgarbage()
      collectgarbage()
      return false, err
    ]] },
  }
  for _, case in ipairs(cases) do
    it("raises an error inside " .. case[1], function()
      local srv, defer = start(finally, { script_source = [[
local function attempt()
]] .. case[2] .. [[
end
return {
  on_helo = function(s, name)
    local ok, err = attempt()
    return 550, "5.0.0 " .. tostring(ok) .. " " .. tostring(err):gsub("[%c]", " "):sub(1, 300)
  end,
}
]] })
      local c = connect(srv, defer)
      c:send("HELO one.spec.test"):expect(550, "cannot wait here")
      c:send("HELO two.spec.test"):expect(550, "cannot wait here")
      pause()
      c:send("NOOP"):expect(250)
      c:send("QUIT"):expect(221)
    end)
  end
end)

describe("script values read outside protected calls #integration", function()
  local function reply_with(index_body)
    return [[
return {
  on_helo = function(s, name)
    return luamta.reply(250, "x", setmetatable({}, { __index = function() ]]
      .. index_body .. [[ end }))
  end,
}
]]
  end

  -- One line, the hook's text, with or without an enhanced code in front
  -- (whether a HELO reply carries one is not this spec's business).
  local function assert_x(r)
    assert.are.equal(1, #r.lines, r.raw)
    assert(r.lines[1] == "x" or r.lines[1]:match("^2%.%d+%.%d+ x$"), r.raw)
  end

  it("ignores an options table whose __index raises an error", function()
    local srv, defer = start(finally, { script_source = reply_with('error("boom")') })
    local c = connect(srv, defer)
    local r = c:send("HELO a.spec.test"):expect(250)
    assert_x(r)
    c:send("NOOP"):expect(250)
  end)

  it("ignores an options table whose __index never returns", function()
    local srv, defer = start(finally, { script_source = reply_with("while true do end") })
    local c = connect(srv, defer)
    local r = c:send("HELO a.spec.test"):expect(250)
    assert_x(r)
    c:send("NOOP"):expect(250)
  end)

  for _, statement in ipairs({ "package = nil", "package.loaded = 42" }) do
    local source = statement .. [[

return {
  on_helo = function(s, name) return 250, "hostile " .. name end,
}
]]
    describe("a policy that does " .. statement, function()
      it("passes --check", function()
        local dir = server.mkdtemp()
        finally(function() server.rmtree(dir) end)
        local path = dir .. "/policy.lua"
        server.write_file(path, source)
        local status, out, err = server.run({ "--check", "--script", path })
        assert.are.equal(0, status, err)
        assert.are.equal("OK " .. path .. "\n", out)
      end)

      it("serves", function()
        local srv, defer = start(finally, { script_source = source })
        local c = connect(srv, defer)
        c:send("HELO a.spec.test"):expect(250, "hostile a.spec.test")
      end)

      it("survives SIGHUP with a worker", function()
        local srv, defer = start(finally, { script_source = source, workers = 1 })
        local c = connect(srv, defer)
        c:send("HELO a.spec.test"):expect(250, "hostile a.spec.test")
        c:send("QUIT"):expect(221)
        srv:signal("HUP")
        assert(srv:wait_log({ "server.reload", "result=ok" }),
          "no reload line\n" .. srv:log_tail(20))
        local c2 = connect(srv, defer)
        c2:send("HELO b.spec.test"):expect(250, "hostile b.spec.test")
        c2:send("QUIT"):expect(221)
        assert.are.equal(0, srv:count_log("worker.died"), srv:log_tail(20))
      end)
    end)
  end
end)

describe("budgets policy code cannot escape #integration", function()
  it("keeps the budget when a hook calls debug.sethook()", function()
    local srv, defer = start(finally, { args = { "--hook-timeout", "1" }, hooks = {
      on_mail = function(s, sender)
        debug.sethook()
        while true do end
      end,
    } })
    local c = connect(srv, defer)
    c:send("EHLO a.spec.test"):expect(250)
    c:send("MAIL FROM:<a@spec.test>"):expect(451, "4.3.0")
    local c2 = connect(srv, defer)
    c2:send("NOOP"):expect(250)
  end)

  it("runs the __close of a cancelled run under a budget", function()
    local srv, defer = start(finally, { args = { "--hook-timeout", "1" }, hooks = {
      on_helo = function(s, name)
        local x <close> = setmetatable({}, { __close = function()
          while true do end
        end })
        luamta.log("hostile parked")
        luamta.sleep(30)
        return 250
      end,
    } })
    local c = connect(srv, defer)
    c:send("HELO a.spec.test")
    assert(srv:wait_log("hostile parked"), "the hook did not start\n" .. srv:log_tail(20))
    -- A reset, not a half-close: after a FIN the parked hook would still
    -- finish and answer; a reset cancels the run, which closes x.
    c.sock:setoption("linger", { on = true, timeout = 0 })
    c:close()
    local c2 = connect(srv, defer)
    c2:send("EHLO b.spec.test"):expect(250)
  end)
end)

describe("a hook's own thread #integration", function()
  it("cannot be resumed or closed by the script, parked or reused", function()
    local srv, defer = start(finally, { script_source = [[
local kept
return {
  on_helo = function(s, name)
    if name == "park" then
      kept = coroutine.running()
      luamta.log("hostile kept")
      luamta.sleep(0.5)
      return 250, "parked and woken"
    end
    local r1, e1 = pcall(coroutine.resume, kept, "forged")
    local r2, e2 = pcall(coroutine.close, kept)
    local mine = coroutine.create(function(x) coroutine.yield(x) return "done" end)
    local ok, v = coroutine.resume(mine, "own")
    local ok2, v2 = coroutine.resume(mine)
    local ok3 = coroutine.close(coroutine.create(function() end))
    return 250, table.concat({ tostring(r1), tostring(e1), tostring(r2), tostring(e2),
      tostring(ok and v), tostring(ok2 and v2), tostring(ok3) }, "|")
  end,
}
]] })
    local a = connect(srv, defer)
    a:send("HELO park")
    assert(srv:wait_log("hostile kept"), "the hook did not start\n" .. srv:log_tail(20))
    local b = connect(srv, defer)
    local r = b:send("HELO meddle"):expect(250)
    local f = {}
    for part in (r.text:gsub("^2%.0%.0 ", "") .. "|"):gmatch("([^|]*)|") do
      f[#f + 1] = part
    end
    assert.equal("false", f[1])
    assert.matches("own thread cannot be resumed", f[2])
    assert.equal("false", f[3])
    assert.matches("own thread cannot be resumed or closed", f[4])
    assert.same({ "own", "done", "true" }, { f[5], f[6], f[7] })
    a:expect(250, "parked and woken")
    -- The thread of b's finished hook went back to the pool; HELO again
    -- reuses one while a's kept handle still points at it.
    b:send("HELO meddle"):expect(250)
    a:send("HELO again"):expect(250)
  end)
end)

-- Found by the hostile-policy fuzz target (core/fuzz/hostile.lua).
describe("what the hostile fuzz target found #integration", function()
  it("stops a loop in an xpcall message handler entered by the budget's error", function()
    local srv, defer = start(finally, { args = { "--hook-timeout", "1" }, hooks = {
      on_helo = function(s, name)
        xpcall(function() while true do end end, function(e) while true do end end)
        return 250
      end,
      on_ehlo = function(s, name)
        local ok, err = xpcall(function() error("mine", 0) end, function(e) return "handled " .. e end)
        return 250, tostring(ok) .. " " .. err
      end,
    } })
    local c = connect(srv, defer)
    c:send("HELO a.spec.test"):expect(451, "4.3.0")
    -- the script's own errors still reach its handler
    local r = c:send("EHLO a.spec.test"):expect(250)
    assert.matches("false handled mine", r.lines[1], 1, true)
  end)

  it("refuses debug.getregistry: the handles' metatables live there", function()
    local srv, defer = start(finally, { hooks = {
      on_helo = function(s, name)
        local ok, err = pcall(function() debug.getregistry()["luamta.message"] = 42 end)
        return 250, tostring(ok) .. " " .. tostring(err):gsub("^.-: ", "")
      end,
    } })
    local c = connect(srv, defer)
    local r = c:send("HELO a.spec.test"):expect(250)
    assert.matches("false debug.getregistry is not available", r.lines[1], 1, true)
    c:message("a@spec.test", "b@spec.test", "Subject: x\r\n\r\ny\r\n"):expect(250)
  end)

  it("answers 451 rather than put a reply line over 512 octets on the wire", function()
    local srv, defer = start(finally, { hooks = {
      on_helo = function(s, name) return 250, ("x"):rep(506) end,
      on_data = function(s) return 354, ("y"):rep(506) end,
    } })
    local c = connect(srv, defer)
    c:send("HELO a.spec.test"):expect(451, "4.3.0")
    c:send("EHLO a.spec.test"):expect(250)
    c:send("MAIL FROM:<a@spec.test>"):expect(250)
    c:send("RCPT TO:<b@spec.test>"):expect(250)
    local r = c:send("DATA"):expect(354)
    assert.are.equal(("y"):rep(506), r.lines[1])
    assert(srv:wait_log("smtp.reply_too_long code=250"))
  end)

  it("bounds what msg:prepend_header may add", function()
    local srv, defer = start(finally, { hooks = {
      on_message = function(s, msg)
        local big = ("v"):rep(1000)
        local ok, err = pcall(function()
          for _ = 1, 100 do msg:prepend_header("X-Big", big) end
        end)
        return 250, "2.0.0 " .. tostring(ok) .. " " .. tostring(err):gsub("^.-: ", "")
          .. " size=" .. msg.size
      end,
    } })
    local c = connect(srv, defer)
    c:send("EHLO a.spec.test"):expect(250)
    local r = c:message("a@spec.test", "b@spec.test", "Subject: x\r\n\r\ny\r\n"):expect(250)
    assert.matches("false prepend_header: at most 65536 bytes", r.lines[1], 1, true)
    local size = tonumber(r.lines[1]:match("size=(%d+)"))
    assert.is_true(size < 65536 + 100, r.lines[1])
  end)

  it("loads a policy whose package.searchpath loops: the module listing has a budget", function()
    local dir = server.mkdtemp()
    local path = dir .. "/policy.lua"
    server.write_file(path, "package.searchpath = function() while true do end end\nreturn {}\n")
    local code, out, err = server.run({ "--check", "--hook-timeout", "1", "--script", path })
    server.rmtree(dir)
    assert.are.equal(0, code, err)
    assert.matches("OK ", out, 1, true)
    assert.matches("cannot list the modules", err, 1, true)
  end)
end)

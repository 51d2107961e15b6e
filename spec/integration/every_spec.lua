-- spec/integration/every_spec.lua - luamta.every: periodic tasks run on the
-- serving process's loop under hook budgets, may wait, are skipped while the
-- previous run still waits, survive their own errors, are only registered
-- while the policy loads, and stop with their generation on reload.
local server = require "server"
local smtp = require "smtp"

local function wait_count(srv, pats, n)
  assert(srv:wait_log(pats, 20, n), "no " .. n .. " log lines matching "
    .. table.concat(pats, " ") .. "\n" .. srv:log_tail(30))
end

describe("luamta.every #integration", function()
  it("runs a task again and again, and hooks see what it did", function()
    local srv = assert(server.start({ script_source = [[
local ticks = 0
luamta.every(0.05, function() ticks = ticks + 1 end)
return {
  on_helo = function(s, name) return 250, "ticks " .. ticks end,
}
]] }))
    server.cleanup(finally)
    local c = smtp.connect(srv)
    c:expect(220)
    local function ticks()
      local r = c:send("HELO a"):expect(250)
      return tonumber(r.text:match("ticks (%d+)"))
    end
    local first = ticks()
    -- Wait (by sessions, not by a clock) until the count moved twice.
    local seen = first
    for _ = 1, 200 do
      seen = ticks()
      if seen >= first + 2 then break end
      smtp.connect(srv):close()
      os.execute("sleep 0.05")
    end
    assert.is_true(seen >= first + 2, "the task ran " .. (seen - first) .. " more times")
    c:close()
    srv:stop()
  end)

  it("may wait, and a tick is skipped while the previous run waits", function()
    local srv = assert(server.start({ script_source = [[
local started, finished = 0, 0
luamta.every(0.02, function()
  started = started + 1
  luamta.log("every started " .. started)
  luamta.sleep(0.3)
  finished = finished + 1
  luamta.log("every finished " .. finished)
end)
return {}
]], args = { "--log-level", "debug" } }))
    server.cleanup(finally)
    wait_count(srv, { "every finished 2" }, 1)
    -- A run never starts while another waits: starts and finishes alternate.
    local order = {}
    for _, line in ipairs(srv:log_lines({ "script.log" })) do
      local what, n = line:match("every (%a+) (%d+)")
      if what then order[#order + 1] = what .. n end
    end
    assert.same({ "started1", "finished1", "started2", "finished2" },
      { order[1], order[2], order[3], order[4] })
    assert.is_true(srv:count_log({ "every.skip", "still waits" }) > 0)
    srv:stop()
  end)

  it("logs a failing or runaway task once per run and keeps serving", function()
    local srv = assert(server.start({ script_source = [[
luamta.every(0.05, function() error("sweep failed") end)
luamta.every(0.05, function() while true do end end)
return { on_helo = function() return 250, "alive" end }
]], args = { "--hook-timeout", "0.05" } }))
    server.cleanup(finally)
    wait_count(srv, { "hook.error", "hook=every%[1%]", "sweep failed" }, 2)
    wait_count(srv, { "hook.error", "hook=every%[2%]", "budget" }, 2)
    local c = smtp.connect(srv)
    c:expect(220)
    c:send("HELO a"):expect(250, "alive")
    c:close()
    srv:stop()
  end)

  it("refuses registration outside loading, and bad arguments", function()
    local srv = assert(server.start({ script_source = [[
return {
  on_helo = function(s, name)
    local ok, err = pcall(luamta.every, 1, function() end)
    return 250, tostring(ok) .. " " .. tostring(err)
  end,
}
]] }))
    server.cleanup(finally)
    local c = smtp.connect(srv)
    c:expect(220)
    local r = c:send("HELO a"):expect(250)
    assert.matches("false .*only be called while the policy loads", r.text)
    c:close()
    srv:stop()
    local dir = server.mkdtemp()
    finally(function() server.rmtree(dir) end)
    for _, src in ipairs({
      "luamta.every(0, function() end) return {}",
      "luamta.every(1, 'x') return {}",
    }) do
      server.write_file(dir .. "/p.lua", src)
      local code, _, err = server.run({ "--check", "--script", dir .. "/p.lua" })
      assert.is_not.equal(0, code, src)
      assert.matches("every", err)
    end
  end)

  it("stops with its generation on reload", function()
    local dir = server.mkdtemp()
    local path = dir .. "/policy.lua"
    local function write(tag)
      server.write_file(path, ([[
luamta.every(0.05, function() luamta.log("tick %s") end)
return {}
]]):format(tag))
    end
    write("A")
    local srv = assert(server.start({ policy = path }))
    finally(function() srv:cleanup(); server.rmtree(dir) end)
    wait_count(srv, { "tick A" }, 2)
    write("B")
    assert(os.execute("kill -HUP " .. srv.pid))
    wait_count(srv, { "server.reload", "result=ok" }, 1)
    local a = srv:count_log({ "tick A" })
    wait_count(srv, { "tick B" }, 3)
    -- At most one tick of A could have been on its way during the reload.
    assert.is_true(srv:count_log({ "tick A" }) <= a + 1)
    srv:stop()
  end)
end)

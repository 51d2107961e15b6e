-- systemd's notification protocol (Type=notify): READY=1 once the port
-- answers, RELOADING=1 with MONOTONIC_USEC= then READY=1 around a SIGHUP
-- reload (a failed one says so in STATUS=), STOPPING=1 on SIGTERM; every
-- datagram from the process systemd started (NotifyAccess=main), and
-- $NOTIFY_SOCKET gone from what the policy sees. A Python stand-in for
-- systemd (spec/fixtures/notify_listener.py) receives on a path and on an
-- abstract socket, records each sender's pid, and probes the SMTP port the
-- moment READY=1 arrives.
local server = require "server"
local smtp = require "smtp"
local cjson = require "cjson"

local q = server.quote
local LISTENER = server.source_dir() .. "/spec/fixtures/notify_listener.py"

-- Starts the stand-in on addr; returns a handle with :messages() and :stop().
local function listen(dir, addr, port)
  local out = dir .. "/notify.jsonl"
  assert(os.execute("/usr/bin/python3 " .. q(LISTENER) .. " " .. q(addr) .. " " .. q(out) .. " "
    .. port .. " </dev/null >" .. q(dir .. "/listener.log") .. " 2>&1 &"))
  local pid = server.wait_for("the notify listener", function()
    return tonumber((server.read_file(out .. ".ready") or ""):match("^(%d+)\n"))
  end)
  return {
    messages = function()
      local list = {}
      for line in (server.read_file(out) or ""):gmatch("[^\n]+") do
        list[#list + 1] = cjson.decode(line)
      end
      return list
    end,
    stop = function() os.execute("kill " .. pid .. " 2>/dev/null") end,
  }
end

local function has(msg, assignment)
  for line in (msg.msg .. "\n"):gmatch("([^\n]*)\n") do
    if line == assignment then return true end
  end
  return false
end

local function count(list, assignment)
  local n = 0
  for _, m in ipairs(list) do if has(m, assignment) then n = n + 1 end end
  return n
end

local POLICY = [[
return {
  verbs = {
    ENV = function(s) return 250, "NOTIFY_SOCKET=" .. tostring(os.getenv("NOTIFY_SOCKET")) end,
  },
}
]]

local function scenario(name, opts)
  it(name, function()
    local dir = server.mkdtemp()
    finally(function() server.rmtree(dir) end)
    local port = server.free_port()
    local addr = opts.abstract and ("@luamta-spec-" .. dir:match("([^/]+)$")) or (dir .. "/notify")
    local l = listen(dir, addr, port)
    finally(l.stop)
    local srv = assert(server.start({ script_source = POLICY, workers = opts.workers,
      listen = { "127.0.0.1:" .. port }, env = { NOTIFY_SOCKET = addr } }))
    finally(function() srv:stop() end)

    -- Ready: once, and the port answered 220 when it came.
    local msgs = server.wait_for("READY=1", function()
      local m = l.messages()
      return count(m, "READY=1") >= 1 and m
    end)
    assert.is_true(has(msgs[1], "READY=1"), "the first message is not READY=1: " .. msgs[1].msg)
    assert.matches("^220 ", msgs[1].probe)
    assert.matches("\nSTATUS=Serving", msgs[1].msg)

    -- The policy (and so anything it runs) never sees the socket.
    local c = smtp.session(srv)
    c:send("ENV"):expect(250, "NOTIFY_SOCKET=nil")
    c:send("QUIT"):expect(221)
    c:close()

    -- A reload: RELOADING=1 with the monotonic clock, then READY=1.
    srv:signal("HUP")
    msgs = server.wait_for("READY=1 after SIGHUP", function()
      local m = l.messages()
      return count(m, "READY=1") >= 2 and m
    end)
    local reloading
    for i, m in ipairs(msgs) do
      if has(m, "RELOADING=1") then reloading = i end
    end
    assert.truthy(reloading, "no RELOADING=1")
    assert.matches("\nMONOTONIC_USEC=%d+\n", msgs[reloading].msg .. "\n")
    assert.truthy(msgs[reloading + 1], "nothing after RELOADING=1")
    assert.is_true(has(msgs[reloading + 1], "READY=1"))
    assert.matches("STATUS=Reloaded", msgs[reloading + 1].msg)

    -- A reload that fails keeps the policy in force and says so.
    server.write_file(srv.script, "return {\n")
    srv:signal("HUP")
    msgs = server.wait_for("READY=1 after a failed reload", function()
      local m = l.messages()
      return count(m, "READY=1") >= 3 and m
    end)
    assert.are.equal(2, count(msgs, "RELOADING=1"))
    assert.matches("STATUS=Reload failed, policy generation %d+ kept: .*policy%.lua", msgs[#msgs].msg)
    c = smtp.session(srv)
    c:send("ENV"):expect(250)
    c:close()

    -- Stop: STOPPING=1, and the server exits 0.
    srv:stop()
    msgs = server.wait_for("STOPPING=1", function()
      local m = l.messages()
      return count(m, "STOPPING=1") == 1 and m
    end)
    -- Everything came from the process that was started (the master,
    -- with workers), none from a worker: NotifyAccess=main would drop it.
    for _, m in ipairs(msgs) do
      assert.are.equal(srv.pid, m.pid, "a message from another process: " .. m.msg)
    end
    assert.are.equal(3, count(msgs, "READY=1"))
  end)
end

describe("sd_notify #integration", function()
  scenario("notifies from the foreground server", {})
  scenario("notifies from the master of 2 workers, and only from it", { workers = 2 })
  scenario("notifies on an abstract socket (@name)", { abstract = true, workers = 1 })

  it("sends nothing and runs as before without NOTIFY_SOCKET", function()
    local srv = assert(server.start({ script_source = POLICY, workers = 1 }))
    finally(function() srv:stop() end)
    local c = smtp.session(srv)
    c:send("ENV"):expect(250, "NOTIFY_SOCKET=nil")
    c:close()
  end)
end)

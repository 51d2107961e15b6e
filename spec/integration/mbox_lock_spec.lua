-- msg:deliver_mbox and a mailbox another process keeps locked: the delivery
-- waits without blocking the server (other sessions are served, SIGTERM is
-- honoured), delivers once the lock goes, and otherwise answers 451 with
-- nothing written. The locks come from real tools: flock(1) from util-linux
-- and Python's fcntl.lockf, the fcntl lock mutt and Dovecot take.
local server = require "server"
local smtp = require "smtp"

local q = server.quote

-- The policy takes its orders from headers, so one server serves every
-- case: X-Mbox (a file in the server's directory), X-Lock-Timeout (seconds,
-- or the header's text itself with X-Raw: yes) and X-From: where the call
-- is made (a gsub callback, which cannot yield; a coroutine of the
-- script's own, whose error the script ignores before accepting).
local HOOKS = {
  on_message = function(s, msg)
    local path = msg:header("X-Mbox") or "mbox"
    local wait = msg:header("X-Lock-Timeout")
    local opts = { lock_timeout = msg:header("X-Raw") and wait or tonumber(wait) }
    local from, ok, err = msg:header("X-From")
    if from == "gsub" then
      string.gsub("x", "x", function() ok, err = msg:deliver_mbox(path, opts) end)
    elseif from == "coroutine" then
      local resumed, a, b = coroutine.resume(coroutine.create(function()
        return msg:deliver_mbox(path, opts)
      end))
      if resumed then ok, err = a, b else ok, err = false, a end
    else
      ok, err = msg:deliver_mbox(path, opts)
    end
    s:log("spec-mbox " .. path .. " ok=" .. tostring(ok) .. " err=" .. tostring(err))
  end,
}

-- What each mailbox holds before a case starts.
local OLD = "From old@spec.test Thu Jan  1 00:00:00 1970\nSubject: old\n\nold\n\n"

-- Locks the file with fcntl (lockf is F_SETLKW on the whole file), says so
-- by creating the ready file, and keeps it until the release file appears.
local PY_HOLDER = [[
import fcntl, os, sys, time
f = open(sys.argv[1], "a")
fcntl.lockf(f, fcntl.LOCK_EX)
open(sys.argv[2], "w").close()
for _ in range(1200):
    if os.path.exists(sys.argv[3]):
        break
    time.sleep(0.1)
]]

-- Starts a process holding a kind ("flock" or "fcntl") lock on file and
-- returns once it holds it (srv only lends its file polling). Returns
-- release(), which lets the holder go and waits until it has exited, so
-- the lock is gone when it returns (calling it twice is fine). A holder
-- nobody releases gives up by itself after about two minutes.
local function hold(srv, kind, file)
  local dir = server.mkdtemp()
  local ready, release, gone = dir .. "/ready", dir .. "/release", dir .. "/gone"
  local cmd
  if kind == "flock" then
    local wait = "n=0; while [ ! -e " .. q(release) .. " ] && [ $n -lt 1200 ]; do"
      .. " sleep 0.1; n=$((n+1)); done"
    cmd = "flock -x " .. q(file) .. " sh -c " .. q("touch " .. q(ready) .. "; " .. wait)
  else
    cmd = "python3 -c " .. q(PY_HOLDER) .. " " .. q(file) .. " " .. q(ready) .. " " .. q(release)
  end
  assert(os.execute("(" .. cmd .. "; touch " .. q(gone) .. ") </dev/null >/dev/null 2>&1 &"))
  assert(srv:wait_file(ready), "the " .. kind .. " holder never locked " .. file)
  local released = false
  return function()
    if released then return end
    released = true
    server.write_file(release, "")
    assert(srv:wait_file(gone), "the " .. kind .. " holder did not exit")
    server.rmtree(dir)
  end
end

-- extra: more header lines ("X-From: gsub\r\n").
local function body(mbox, timeout, subject, extra)
  return "X-Mbox: " .. mbox .. "\r\nX-Lock-Timeout: " .. timeout .. "\r\n" .. (extra or "")
    .. "Subject: " .. subject .. "\r\n\r\nhello\r\n"
end

-- The number of messages (From_ lines) in an mbox text.
local function count_messages(text)
  local n = 0
  for _ in ("\n" .. text):gmatch("\nFrom ") do n = n + 1 end
  return n
end

describe("msg:deliver_mbox on a locked mailbox #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ hooks = HOOKS }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  for _, kind in ipairs({ "flock", "fcntl" }) do
    it("answers 451 and writes nothing while another process keeps it locked with " .. kind,
      function()
      local name = "mbox-held-" .. kind
      local file = srv.dir .. "/" .. name
      server.write_file(file, OLD)
      local defer = server.cleanup(finally)
      local release = hold(srv, kind, file)
      defer(release)
      local c = smtp.session(srv)
      defer(function() c:close() end)
      c:message("a@spec.test", { "b@spec.test" }, body(name, 1, "first")):expect(451, "4.3.0")
      assert.are.equal(OLD, server.read_file(file))
      assert(srv:wait_log({ "delivery.failed", "locked by another process %(" .. kind .. "%)" }),
        "no delivery.failed line naming the " .. kind .. " lock")
      assert.truthy(srv:wait_log({ "spec-mbox " .. name .. " ok=nil", "still locked after 1 s" }))
      -- Once the holder is gone, nothing of the refused message turns up
      -- late; the next one goes in, alone.
      release()
      c:message("a@spec.test", { "b@spec.test" }, body(name, 1, "second")):expect(250, "2.0.0")
      local text = server.read_file(file)
      assert.are.equal(OLD, text:sub(1, #OLD))
      assert.are.equal(2, count_messages(text), text)
      assert.is_nil(text:find("Subject: first", 1, true), text)
      assert.truthy(text:find("Subject: second", 1, true), text)
    end)

    it("delivers exactly once when the " .. kind .. " lock goes during the wait", function()
      local name = "mbox-freed-" .. kind
      local file = srv.dir .. "/" .. name
      server.write_file(file, OLD)
      local defer = server.cleanup(finally)
      local release = hold(srv, kind, file)
      defer(release)
      local c = smtp.session(srv)
      defer(function() c:close() end)
      c:message("a@spec.test", { "b@spec.test" }, body(name, 10, "waited"))
      assert(srv:wait_log({ "delivery.wait", name }), "the delivery did not wait for the lock")
      release()
      c:expect(250, "2.0.0")
      local text = server.read_file(file)
      assert.are.equal(OLD, text:sub(1, #OLD))
      assert.are.equal(2, count_messages(text), text)
      assert.truthy(text:find("Subject: waited\n\nhello\n\n", 1, true), text)
      assert.are.equal(1, srv:count_log({ "delivery.ok", "method=mbox", name }))
      assert.are.equal(0, srv:count_log({ "delivery.failed", name }))
    end)
  end

  it("serves other sessions while a delivery waits for the lock", function()
    local name = "mbox-busy"
    local file = srv.dir .. "/" .. name
    server.write_file(file, OLD)
    local defer = server.cleanup(finally)
    local release = hold(srv, "fcntl", file)
    defer(release)
    local c = smtp.session(srv)
    defer(function() c:close() end)
    c:message("a@spec.test", { "b@spec.test" }, body(name, 30, "patient"))
    local waiting = srv:wait_log({ "delivery.wait", name })
    -- A server stuck on the lock would not even greet this one.
    local other = smtp.session(srv, "other.spec.test")
    defer(function() other:close() end)
    other:send("NOOP"):expect(250)
    other:send("MAIL FROM:<x@spec.test>"):expect(250)
    other:send("RSET"):expect(250)
    assert.truthy(waiting, "the delivery did not wait for the lock")
    release()
    c:expect(250, "2.0.0")
    assert.are.equal(2, count_messages(server.read_file(file)))
  end)

  -- A reset, not a close: after a clean close (which may be a half-close)
  -- the session still finishes what the client sent, the wait included.
  it("drops the wait when the client resets the connection, and writes nothing later", function()
    local name = "mbox-hangup"
    local file = srv.dir .. "/" .. name
    server.write_file(file, OLD)
    local defer = server.cleanup(finally)
    local release = hold(srv, "fcntl", file)
    defer(release)
    local c = smtp.session(srv)
    c:message("a@spec.test", { "b@spec.test" }, body(name, 30, "abandoned"))
    local line = srv:wait_log({ "delivery.wait", name })
    c.sock:setoption("linger", { on = true, timeout = 0 }) -- close with RST
    c:close()
    assert.truthy(line, "the delivery did not wait for the lock")
    local sid, qid = line:match("(%x+) delivery%.wait qid=(%x+)")
    -- The session frees its parked hook as it closes, in the same step.
    assert(srv:wait_log({ sid .. " smtp.close reason=error" }), "the session did not close")
    release()
    -- The next delivery to that mailbox is the only one it ever gets.
    local c2 = smtp.session(srv)
    defer(function() c2:close() end)
    c2:message("a@spec.test", { "b@spec.test" }, body(name, 1, "next")):expect(250, "2.0.0")
    local text = server.read_file(file)
    assert.are.equal(2, count_messages(text), text)
    assert.is_nil(text:find("Subject: abandoned", 1, true), text)
    assert.are.equal(0, srv:count_log({ "qid=" .. qid, "delivery%.ok" }))
    assert.are.equal(0, srv:count_log({ "qid=" .. qid, "delivery%.failed" }))
  end)

  -- Each of these fails at once: 451, the mailbox untouched, and no wait.
  local at_once = {
    { why = "lock_timeout is 0", timeout = 0, err = "locked by another process" },
    { why = "the hook cannot yield (a gsub callback)", timeout = 10, extra = "X-From: gsub\r\n",
      err = "cannot wait for it here" },
    { why = "a coroutine of the script's own tries to wait and the script ignores the error",
      timeout = 10, extra = "X-From: coroutine\r\n", err = "ok=false" },
  }
  for i, case in ipairs(at_once) do
    it("answers 451 at once when " .. case.why, function()
      local name = "mbox-once-" .. i
      local file = srv.dir .. "/" .. name
      server.write_file(file, OLD)
      local defer = server.cleanup(finally)
      local release = hold(srv, "flock", file)
      defer(release)
      local c = smtp.session(srv)
      defer(function() c:close() end)
      c:message("a@spec.test", { "b@spec.test" }, body(name, case.timeout, "refused", case.extra))
        :expect(451, "4.3.0")
      assert.are.equal(OLD, server.read_file(file))
      assert.truthy(srv:wait_log({ "spec-mbox " .. name, case.err }),
        "the hook did not see " .. case.err)
      assert.are.equal(0, srv:count_log({ "delivery.wait", name }))
      release()
      assert.are.equal(OLD, server.read_file(file))
    end)
  end

  for _, bad in ipairs({ "-1", "3600.5", "5 (a string)" }) do
    it("refuses lock_timeout = " .. bad .. " with a hook error and 451", function()
      local name = "mbox-bad"
      local refused = { "hook.error", "lock_timeout must be a number of seconds from 0 to 3600" }
      local before = srv:count_log(refused)
      local c = smtp.session(srv)
      finally(function() c:close() end)
      local value, extra = bad:match("^(%S+) %(a string%)$")
      if value then extra = "X-Raw: yes\r\n" else value = bad end
      c:message("a@spec.test", { "b@spec.test" }, body(name, value, "bad", extra))
        :expect(451, "4.3.0")
      assert.truthy(srv:wait_log(refused, 10, before + 1), "no hook.error line for " .. bad)
      assert.is_nil(server.read_file(srv.dir .. "/" .. name))
    end)
  end
end)

describe("SIGTERM during a wait for a locked mbox #integration", function()
  it("stops the server, exits 0, answers 421 and writes nothing", function()
    local defer = server.cleanup(finally)
    local srv = assert(server.start({ hooks = HOOKS, args = { "--shutdown-timeout", "1" } }))
    defer(function() srv:stop() end)
    local name = "mbox-term"
    local file = srv.dir .. "/" .. name
    server.write_file(file, OLD)
    local release = hold(srv, "fcntl", file)
    defer(release)
    local c = smtp.session(srv)
    defer(function() c:close() end)
    c:message("a@spec.test", { "b@spec.test" }, body(name, 600, "interrupted"))
    local waiting = srv:wait_log({ "delivery.wait", name })
    -- A server stuck on the lock would not even see the signal: the drain
    -- ends after --shutdown-timeout with 421 for the waiting session.
    srv:signal("TERM")
    c:expect(421, "4.3.2")
    assert.truthy(waiting, "the delivery did not wait for the lock")
    assert.are.equal(0, srv:terminate())
    assert.are.equal(OLD, server.read_file(file))
    assert.are.equal(0, srv:count_log({ "delivery.ok", name }))
  end)
end)

-- LMTP (RFC 2033) on --listen-lmtp, TCP and UNIX sockets: LHLO instead of
-- HELO/EHLO, one reply per accepted recipient after the final dot (their
-- own from msg:rcpt_reply or a failed deliverer's { rcpt = }, else the
-- message's), s.lmtp, "with LMTP" in Received:, the socket's mode and its
-- removal; and a real Postfix delivering through it (virtual_transport).
local server = require "server"
local smtp = require "smtp"

local POLICY = [[
local maildir = os.getenv("LMTP_MAILDIR")
return {
  on_connect = function(s) s:log("lmtp=" .. tostring(s.lmtp)) end,
  on_message = function(s, msg)
    local subject = msg:header("Subject") or ""
    if subject == "reject" then return false end
    if subject == "tempfail" then return 451, "4.7.1 Not now" end
    if subject == "per-rcpt" then
      msg:rcpt_reply("full@lmtp.spec.test", 452, "4.2.2 Mailbox full")
      msg:rcpt_reply("nobody@lmtp.spec.test", 550, "5.1.1 No such user")
      msg:rcpt_reply("ok@lmtp.spec.test", 250, "2.0.0 Delivered")
      return true
    end
    if subject == "deliver" then
      for _, to in ipairs(msg.recipients) do
        local dir = to:match("^broken@") and "/proc/none/Maildir" or (maildir .. "/" .. to)
        msg:deliver_maildir(dir, { rcpt = to })
      end
      return true
    end
    if subject == "smtp-rcpt-reply" then
      s:log("rcpt_reply=" .. tostring(msg:rcpt_reply(msg.recipients[1], 550)))
    end
    return true
  end,
}
]]

local function keywords(reply)
  local set = {}
  for i = 2, #reply.lines do set[reply.lines[i]:upper()] = true end
  return set
end

local function lhlo(c)
  c:expect(220, "LMTP")
  return c:send("LHLO client.spec.test"):expect(250)
end

local function find_listener(srv, pred)
  for _, l in ipairs(srv.listeners) do
    if pred(l) then return l end
  end
end

describe("LMTP #integration", function()
  local srv, dir, sock, lmtp_port, maildir
  lazy_setup(function()
    dir = server.mkdtemp()
    sock = dir .. "/lmtp.sock"
    maildir = dir .. "/mail"
    srv = assert(server.start({ script_source = POLICY, env = { LMTP_MAILDIR = maildir },
      args = { "--listen-lmtp", "127.0.0.1:0", "--listen-lmtp", "unix:" .. sock } }))
    -- The ready file: the --listen line, then "ADDR PORT lmtp" and
    -- "unix:PATH 0 lmtp"; the helper lists them in that order.
    lmtp_port = srv.listeners[2].port
    assert.equal("unix:" .. sock, srv.listeners[3].addr)
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    if dir then server.rmtree(dir) end
  end)

  local function lmtp()
    return assert(smtp.connect(lmtp_port, srv))
  end

  it("greets, refuses HELO and EHLO with 500, and offers EHLO's keywords to LHLO", function()
    local c = lmtp()
    c:expect(220, "LMTP luamta")
    c:send("HELO client.spec.test"):expect(500, "5.5.1")
    c:send("EHLO client.spec.test"):expect(500, "5.5.1")
    local r = c:send("LHLO client.spec.test"):expect(250)
    local e = smtp.session(srv)
    finally(function() c:close(); e:close() end)
    local er = e:send("EHLO client.spec.test"):expect(250)
    assert.same(keywords(er), keywords(r))
    assert.is_true(keywords(r)["PIPELINING"])
    -- and a plain SMTP listener knows no LHLO
    e:send("LHLO client.spec.test"):expect(500, "5.5.")
  end)

  it("answers once per recipient, in RCPT order, with msg:rcpt_reply's codes", function()
    local c = lmtp()
    finally(function() c:close() end)
    lhlo(c)
    c:send("MAIL FROM:<sender@spec.test>"):expect(250)
    for _, to in ipairs({ "nobody", "ok", "other", "full" }) do
      c:send("RCPT TO:<" .. to .. "@lmtp.spec.test>"):expect(250)
    end
    c:send("DATA"):expect(354)
    c:send_raw("Subject: per-rcpt\r\n\r\nbody\r\n.\r\n")
    c:expect(550, "5.1.1")
    c:expect(250, "2.0.0 Delivered")
    c:expect(250, "2.0.0") -- other: the message's own 250
    c:expect(452, "4.2.2")
    c:send("NOOP"):expect(250)
  end)

  it("answers BDAT LAST once per recipient too, and each chunk before it once", function()
    local c = lmtp()
    finally(function() c:close() end)
    lhlo(c)
    c:send("MAIL FROM:<sender@spec.test>"):expect(250)
    for _, to in ipairs({ "nobody", "ok", "full" }) do
      c:send("RCPT TO:<" .. to .. "@lmtp.spec.test>"):expect(250)
    end
    local first, last = "Subject: per-rcpt\r\n\r\n", "body\r\n"
    c:send_raw("BDAT " .. #first .. "\r\n" .. first)
    c:expect(250, "2.0.0")
    c:send_raw("BDAT " .. #last .. " LAST\r\n" .. last)
    c:expect(550, "5.1.1")
    c:expect(250, "2.0.0 Delivered")
    c:expect(452, "4.2.2")
    c:send("NOOP"):expect(250)
  end)

  it("gives a whole-message verdict to every recipient, pipelined", function()
    local c = lmtp()
    finally(function() c:close() end)
    lhlo(c)
    c:send_raw("MAIL FROM:<sender@spec.test>\r\nRCPT TO:<a@lmtp.spec.test>\r\n"
      .. "RCPT TO:<b@lmtp.spec.test>\r\nRCPT TO:<c@lmtp.spec.test>\r\nDATA\r\n")
    for _ = 1, 4 do c:expect(250) end
    c:expect(354)
    c:send_raw("Subject: reject\r\n\r\nx\r\n.\r\n")
    for _ = 1, 3 do c:expect(554, "5.7.1") end
    c:message("sender@spec.test", { "a@lmtp.spec.test", "b@lmtp.spec.test" },
      "Subject: tempfail\r\n\r\nx\r\n")
    c:expect(451, "4.7.1")
    c:expect(451, "4.7.1")
    c:send("NOOP"):expect(250)
  end)

  it("gives 451 to the recipient whose delivery failed, the others their own", function()
    local c = lmtp()
    finally(function() c:close() end)
    lhlo(c)
    c:message("sender@spec.test",
      { "one@lmtp.spec.test", "broken@lmtp.spec.test", "two@lmtp.spec.test" },
      "Subject: deliver\r\n\r\nbody\r\n")
    c:expect(250)
    c:expect(451, "4.3.0")
    c:expect(250)
    for _, to in ipairs({ "one@lmtp.spec.test", "two@lmtp.spec.test" }) do
      local files = server.ls(maildir .. "/" .. to .. "/new")
      assert.equal(1, #files)
      local data = server.read_file(maildir .. "/" .. to .. "/new/" .. files[1])
      assert.truthy(data:find("with LMTP id ", 1, true), data)
    end
  end)

  it("tells hooks the protocol in s.lmtp; msg:rcpt_reply is false in SMTP", function()
    local c = smtp.session(srv)
    c:message("sender@spec.test", { "a@lmtp.spec.test", "b@lmtp.spec.test" },
      "Subject: smtp-rcpt-reply\r\n\r\nx\r\n")
    c:expect(250, "2.0.0") -- one reply: SMTP
    c:send("NOOP"):expect(250)
    assert(srv:wait_log({ "rcpt_reply=false" }))
    local l = lmtp()
    finally(function() c:close(); l:close() end)
    lhlo(l)
    assert(srv:wait_log({ "lmtp=true" }))
    assert(srv:wait_log({ "lmtp=false" }))
  end)

  it("serves on the UNIX socket, mode 0660, clients seen as 'local'", function()
    local _, mode = server.sh("stat -c %a " .. sock)
    assert.equal("660", (mode:gsub("%s", "")))
    local c = assert(smtp.connect(nil, srv, { unix = sock }))
    finally(function() c:close() end)
    lhlo(c)
    c:message("sender@spec.test", { "a@lmtp.spec.test", "b@lmtp.spec.test" },
      "Subject: hi\r\n\r\nx\r\n")
    c:expect(250)
    c:expect(250)
    assert(srv:wait_log({ "smtp.connect peer=local", "proto=lmtp" }))
    -- no address literal for a client without an address
    c:message("sender@spec.test", { "unix@lmtp.spec.test" }, "Subject: deliver\r\n\r\nx\r\n")
    c:expect(250)
    local files = server.ls(maildir .. "/unix@lmtp.spec.test/new")
    local data = server.read_file(maildir .. "/unix@lmtp.spec.test/new/" .. files[1])
    assert.truthy(data:find("^Received: from client%.spec%.test %(unknown%) by"), data)
  end)
end)

describe("LMTP UNIX socket lifetime #integration", function()
  it("replaces a stale socket, refuses one in use, and removes its own on SIGTERM", function()
    local dir = server.mkdtemp()
    finally(function() server.rmtree(dir) end)
    local sock = dir .. "/lmtp.sock"
    -- A socket file nothing listens on: what a killed server leaves.
    local unix = require "socket.unix"
    local stale = (unix.stream or unix)()
    assert(stale:bind(sock))
    stale:close()
    local srv = assert(server.start({ args = { "--listen-lmtp", "unix:" .. sock } }))
    local ok = pcall(function()
      -- A second server on the same path finds it in use.
      local status, _, err = server.run({ "--foreground", "--listen", "127.0.0.1:0",
        "--listen-lmtp", "unix:" .. sock }, { timeout = 10 })
      assert.are_not.equal(0, status)
      assert.truthy(err:find("in use", 1, true), err)
      local c = assert(smtp.connect(nil, srv, { unix = sock }))
      c:expect(220, "LMTP")
      c:close()
    end)
    srv:stop()
    assert.is_true(ok)
    local f = io.open(sock, "r")
    if f then f:close() end
    assert.is_nil(f, "the socket file is still there after SIGTERM")
  end)
end)

describe("LMTP behind a real Postfix (virtual_transport = lmtp:) #integration", function()
  local postfix = require "postfix"
  local run_it = postfix.available() and it or pending

  run_it("delivers to three recipients, each with its own result in Postfix's log and queue", function()
    local srv = assert(server.start({ script_source = [[
return {
  on_message = function(s, msg)
    msg:rcpt_reply("full@lmtp.spec.test", 452, "4.2.2 Mailbox full")
    msg:rcpt_reply("nobody@lmtp.spec.test", 550, "5.1.1 No such user")
    return 250, "2.0.0 Delivered by luamta"
  end,
}
]], args = { "--listen-lmtp", "127.0.0.1:0" } }))
    local lmtp_port = srv.listeners[2].port
    local port = server.free_port()
    local p, perr = postfix.start({ port = port, main = {
      mydestination = "",
      virtual_mailbox_domains = "lmtp.spec.test",
      virtual_mailbox_maps = "static:ok",
      virtual_transport = "lmtp:inet:127.0.0.1:" .. lmtp_port,
      -- a bounce to the null sender goes nowhere
      notify_classes = "",
    } })
    if not p then srv:stop() end
    assert(p, perr)
    finally(function() p:stop(); srv:stop() end)
    local c = assert(smtp.connect(port))
    c:expect(220)
    c:send("EHLO client.spec.test"):expect(250)
    c:message("", { "ok@lmtp.spec.test", "full@lmtp.spec.test", "nobody@lmtp.spec.test" },
      "Subject: via postfix\r\nMessage-Id: <lmtp.1@spec.test>\r\n\r\nbody\r\n"):expect(250)
    c:send("QUIT"):expect(221)
    c:close()
    local log = p:wait_log("to=<ok@lmtp%.spec%.test>.-status=sent")
    assert(log, p:log())
    assert(p:wait_log("to=<full@lmtp%.spec%.test>.-status=deferred"), p:log())
    log = assert(p:wait_log("to=<nobody@lmtp%.spec%.test>.-status=bounced"), p:log())
    assert.truthy(log:find("Delivered by luamta", 1, true), log)
    assert.truthy(log:find("452 4.2.2 Mailbox full", 1, true), log)
    assert.truthy(log:find("550 5.1.1 No such user", 1, true), log)
    assert.truthy(log:find("relay=127.0.0.1[127.0.0.1]:" .. lmtp_port, 1, true), log)
    -- Postfix keeps the deferred recipient, and only it, in its queue.
    local _, queue = server.sh("postqueue -c " .. p.conf .. " -p")
    assert.truthy(queue:find("full@lmtp.spec.test", 1, true), queue)
    assert.falsy(queue:find("ok@lmtp.spec.test", 1, true), queue)
    assert.falsy(queue:find("nobody@lmtp.spec.test", 1, true), queue)
    assert(srv:wait_log({ "smtp.lmtp_reply", "rcpt=\"ok@lmtp.spec.test\"", "code=250" }))
  end)
end)

describe("LMTP UNIX socket with --user #integration", function()
  it("belongs to that user and its group, and is still removed at exit", function()
    if io.popen("id -u"):read("n") ~= 0 then
      pending("needs root to drop privileges")
      return
    end
    local dir = server.mkdtemp()
    finally(function() server.rmtree(dir) end)
    -- The process removes its socket after the drop: nobody writes here.
    assert(os.execute("chmod 0777 " .. dir))
    local sock = dir .. "/lmtp.sock"
    local srv = assert(server.start({ args = { "--user", "nobody",
      "--listen-lmtp", "unix:" .. sock } }))
    local ok, err = pcall(function()
      local _, owner = server.sh("stat -c '%U %G %a' " .. sock)
      local _, group = server.sh("id -gn nobody")
      assert.equal("nobody " .. group:gsub("%s", "") .. " 660", (owner:gsub("%s+$", "")))
      local c = assert(smtp.connect(nil, srv, { unix = sock }))
      c:expect(220, "LMTP")
      c:close()
    end)
    srv:stop()
    assert(ok, err)
    assert.is_nil(io.open(sock, "r"), "the socket file is still there after SIGTERM")
  end)
end)

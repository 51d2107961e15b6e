-- The SMTP/LMTP client (core/smtp_client.c) through its test driver
-- (core/tests/smtp_client_drive.c, found through $LUAMTA_CLIENT_DRIVE)
-- against real servers on loopback: luamta itself (per-recipient replies,
-- captured envelopes and bodies, a 421 greeting, STARTTLS with certificates
-- from a test CA, AUTH), Postfix's smtp-sink (acceptance and its fault
-- options), and a scripted Python server (spec/fixtures/smtp_script_server.py)
-- for what the others cannot do on demand: pipelining checks, SIZE and
-- SMTPUTF8 refusals, silence, a reset mid-DATA, a broken TLS handshake and
-- LMTP on a UNIX socket with per-recipient replies after the dot; and
-- real Dovecot LMTP (a private instance) when it is installed and we are root.
local server = require "server"
local dovecot = require "dovecot"
local tlskit = require "tlskit"
local cjson = require "cjson"
local socket = require "socket"

local q, read_file, write_file = server.quote, server.read_file, server.write_file
local DRIVE = os.getenv("LUAMTA_CLIENT_DRIVE")
local SCRIPT = server.source_dir() .. "/spec/fixtures/smtp_script_server.py"
local SCALE = server.TIMEOUT_SCALE

-- Runs the driver with args (a list); returns the decoded result, the
-- log (stderr) and the exit status. Under a checking tool the driver runs
-- wrapped too, and a report of the tool fails the spec.
local function drive(args)
  local argv = { DRIVE }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local cmd = tlskit.shell_join(argv)
  local wrapper = os.getenv("LUAMTA_WRAPPER")
  if wrapper and wrapper ~= "" then cmd = wrapper .. " " .. cmd end
  local r = tlskit.run(cmd, { timeout = 60 * SCALE })
  local marker = os.getenv("LUAMTA_WRAPPER_ERROR")
  if marker and marker ~= "" then
    assert(not r.stderr:find(marker, 1, true), "checking tool report:\n" .. r.stderr)
  end
  assert.are.equal(0, r.status, "driver failed:\n" .. r.output)
  local ok, res = pcall(cjson.decode, r.stdout)
  assert(ok, "not JSON: " .. r.stdout .. "\n" .. r.stderr)
  return res, r.stderr
end

local function codes(res)
  local out = {}
  for i, rc in ipairs(res.rcpts) do out[i] = rc.code end
  return out
end

local function message_file(dir, text)
  local path = dir .. "/msg.eml"
  write_file(path, text)
  return path
end

-- A loopback port nothing listens on.
local function closed_port(host)
  local s = assert(socket.bind(host or "127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

-- The scripted server: script is the table smtp_script_server.py reads;
-- opts.unix puts it on a UNIX socket.
local function scripted(script, opts)
  local dir = server.mkdtemp()
  write_file(dir .. "/script.json", cjson.encode(script))
  local args = { "/usr/bin/python3", SCRIPT, dir .. "/script.json", dir .. "/ready",
    dir .. "/transcript" }
  if opts and opts.unix then args[#args + 1] = dir .. "/lmtp.sock" end
  os.execute(tlskit.shell_join(args) .. " >" .. q(dir .. "/log") .. " 2>&1 & echo $! >"
    .. q(dir .. "/pid"))
  local p = { dir = dir, pid = tonumber((read_file(dir .. "/pid") or ""):match("%d+")) }
  function p.stop()
    if p.pid then os.execute("kill " .. p.pid .. " 2>/dev/null") end
    p.pid = nil
    server.rmtree(dir)
  end
  function p.sessions()
    local out = {}
    for line in (read_file(dir .. "/transcript") or ""):gmatch("[^\n]+") do
      out[#out + 1] = cjson.decode(line)
    end
    return out
  end
  function p.wait_sessions(n)
    local deadline = socket.gettime() + 10 * SCALE
    while #p.sessions() < n and socket.gettime() < deadline do socket.sleep(0.02) end
    return p.sessions()
  end
  local deadline = socket.gettime() + 20 * SCALE
  while socket.gettime() < deadline do
    local ready = read_file(dir .. "/ready")
    if ready then
      p.port = tonumber(ready:match("port (%d+)"))
      p.unix = ready:match("unix (%S+)")
      return p
    end
    socket.sleep(0.02)
  end
  local log = read_file(dir .. "/log") or ""
  p.stop()
  error("smtp_script_server.py did not start: " .. log)
end

local function verbs(session)
  local out = {}
  for i, c in ipairs(session.commands) do out[i] = c.line:match("^(%S+)"):upper() end
  return out
end

local function has(list, v)
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

local RCPT_HOOKS = {
  on_rcpt = function(s, rcpt)
    if rcpt:match("^full@") then return 452, "4.2.2 Mailbox full" end
    if rcpt:match("^nobody@") then return 550, "5.1.1 No such user" end
  end,
}

describe("smtp_client #integration", function()
  local dir
  before_each(function() dir = server.mkdtemp() end)
  after_each(function() server.rmtree(dir) end)

  it("has its driver", function()
    assert.truthy(DRIVE and DRIVE ~= "", "LUAMTA_CLIENT_DRIVE is not set")
  end)

  describe("against luamta", function()
    local srv
    lazy_setup(function()
      srv = assert(server.start({ hooks = RCPT_HOOKS, capture = true }))
    end)
    lazy_teardown(function() if srv then srv:stop() end end)

    it("gives each recipient its own reply, dot-stuffs, sends SIZE and BODY", function()
      local body = "Subject: dots\r\n\r\n.leading dot\r\n..two\r\nmid . dot\r\n.\r\nend"
      local res, log = drive({ "--host", "localhost=127.0.0.1", "--port", tostring(srv.port),
        "--sender", "a@client.test", "--rcpt", "ok@x.test", "--rcpt", "full@x.test",
        "--rcpt", "nobody@x.test", "--rcpt", "ok2@x.test", "--8bit",
        "--message", message_file(dir, body), "--timeout-command", "10" })
      assert.are.same({ 250, 452, 550, 250 }, codes(res))
      assert.matches("^4%.2%.2 Mailbox full", res.rcpts[2].text)
      assert.matches("^5%.1%.1 No such user", res.rcpts[3].text)
      assert.matches("^2%.", res.rcpts[1].text)
      assert.are.equal("localhost [127.0.0.1]", res.remote)
      assert.is_false(res.tls)
      assert.matches('relay.attempt id=DRIVE host="localhost" addr="127.0.0.1" result=done', log)
      local m = srv:messages()[#srv:messages()]
      assert.are.same({ "ok@x.test", "ok2@x.test" }, m.recipients)
      assert.are.equal("a@client.test", m.sender)
      -- The body arrives as it was, with the CRLF the client added at the end.
      assert.truthy(m.data:find(body .. "\r\n", 1, true), m.data)
      assert.are.equal(tostring(#body), tostring(m.mail_params.SIZE or m.mail_params.size))
      assert.are.equal("8BITMIME", m.mail_params.BODY or m.mail_params.body)
    end)

    it("sends the null sender and SMTPUTF8 when the message needs it", function()
      local res = drive({ "--host", "localhost=127.0.0.1", "--port", tostring(srv.port),
        "--rcpt", "ok@x.test", "--smtputf8", "--message", message_file(dir, "a\r\n") })
      assert.are.same({ 250 }, codes(res))
      local m = srv:messages()[#srv:messages()]
      assert.are.equal("", m.sender)
      assert.truthy(m.mail_params.SMTPUTF8 ~= nil or m.mail_params.smtputf8 ~= nil)
    end)

    it("goes on to the next host after a refused connection and a 421 greeting", function()
      local defer = server.cleanup(finally)
      local busy = assert(server.start({ listen = { "127.0.0.3:0" }, hooks = {
        on_connect = function() return 421, "4.3.2 Too busy" end } }))
      defer(function() busy:stop() end)
      local good = assert(server.start({ listen = { "127.0.0.4:" .. busy.port }, capture = true }))
      defer(function() good:stop() end)
      local res, log = drive({ "--host", "dead=127.0.0.2", "--host", "busy=127.0.0.3",
        "--host", "good=127.0.0.4", "--port", tostring(busy.port), "--rcpt", "ok@x.test",
        "--message", message_file(dir, "a\r\n"), "--timeout-command", "10" })
      assert.are.same({ 250 }, codes(res))
      assert.are.equal("good [127.0.0.4]", res.remote)
      assert.matches('host="dead".-result=failed tls=none reason="4%.4%.1 connect', log)
      assert.matches('host="busy".-result=failed tls=none reason="4%.3%.2 Too busy', log)
      assert.are.equal(1, #good:messages())
      -- The busy host alone: its 421 is every recipient's deferral.
      res = drive({ "--host", "busy=127.0.0.3", "--port", tostring(busy.port),
        "--rcpt", "ok@x.test", "--message", message_file(dir, "a\r\n") })
      assert.are.same({ 421 }, codes(res))
      assert.matches("^4%.3%.2 Too busy", res.rcpts[1].text)
    end)
  end)

  describe("TLS", function()
    local pki, srv
    lazy_setup(function()
      pki = tlskit.pki()
      srv = assert(server.start({ policy = "spec/fixtures/policies/tls_auth_echo.lua",
        args = tlskit.server_args(pki) }))
    end)
    lazy_teardown(function()
      if srv then srv:stop() end
      if pki then pki:cleanup() end
    end)

    it("MAY: STARTTLS when offered, certificate not verified", function()
      local res, log = drive({ "--host", "mx.unverified.test=127.0.0.1", "--port",
        tostring(srv.port), "--tls", "may", "--rcpt", "ok@x.test",
        "--message", message_file(dir, "a\r\n") })
      assert.are.same({ 250 }, codes(res))
      assert.is_true(res.tls)
      assert.are.equal("TLSv1.2", res.tls_version)
      assert.truthy(res.tls_cipher ~= "")
      assert.matches("result=done tls=TLSv1.2/", log)
    end)

    it("REQUIRE: the chain and the name verified against the CA given", function()
      local res = drive({ "--host", "localhost=127.0.0.1", "--port", tostring(srv.port),
        "--tls", "require", "--ca-file", pki.ca_cert, "--rcpt", "ok@x.test",
        "--message", message_file(dir, "a\r\n") })
      assert.are.same({ 250 }, codes(res))
      assert.is_true(res.tls)
    end)

    it("REQUIRE: an untrusted CA or a wrong name defers with 4.7.5 and sends nothing", function()
      local before = srv:count_log("spec.hook on_mail")
      local res = drive({ "--host", "localhost=127.0.0.1", "--port", tostring(srv.port),
        "--tls", "require", "--rcpt", "ok@x.test", "--message", message_file(dir, "a\r\n") })
      assert.are.same({ 451 }, codes(res))
      assert.matches("^4%.7%.5 .*verif", res.rcpts[1].text)
      res = drive({ "--host", "wrong.example=127.0.0.1", "--port", tostring(srv.port),
        "--tls", "require", "--ca-file", pki.ca_cert, "--rcpt", "ok@x.test",
        "--message", message_file(dir, "a\r\n") })
      assert.are.same({ 451 }, codes(res))
      assert.matches("^4%.7%.5", res.rcpts[1].text)
      assert.are.equal(before, srv:count_log("spec.hook on_mail"))
    end)

    it("AUTH PLAIN over TLS; refused credentials defer with 4.7.0", function()
      local res = drive({ "--host", "localhost=127.0.0.1", "--port", tostring(srv.port),
        "--auth", "alice:s3cret-pw", "--rcpt", "ok@x.test",
        "--message", message_file(dir, "a\r\n") })
      assert.are.same({ 250 }, codes(res))
      assert.truthy(srv:wait_log({ "spec.hook on_auth", "user=alice", "tls=true" }))
      res = drive({ "--host", "localhost=127.0.0.1", "--port", tostring(srv.port),
        "--auth", "alice:wrong", "--rcpt", "ok@x.test", "--message", message_file(dir, "a\r\n") })
      assert.are.same({ 454 }, codes(res))
      assert.matches("^4%.7%.0 .*535", res.rcpts[1].text)
    end)

    it("never sends credentials in plaintext unless tls none was chosen", function()
      local plain = assert(server.start({ hooks = RCPT_HOOKS }))
      finally(function() plain:stop() end)
      local res = drive({ "--host", "localhost=127.0.0.1", "--port", tostring(plain.port),
        "--auth", "alice:pw", "--rcpt", "ok@x.test", "--message", message_file(dir, "a\r\n") })
      assert.are.same({ 454 }, codes(res))
      assert.matches("^4%.7%.0 not sending credentials", res.rcpts[1].text)
      assert.are.equal(0, plain:count_log("AUTH"))
    end)

    it("MAY: a failed handshake is retried in plaintext on the same host", function()
      local p = scripted({ ehlo = { "PIPELINING", "STARTTLS" }, starttls = "garbage" })
      finally(p.stop)
      local res, log = drive({ "--host", "mx=127.0.0.1", "--port", tostring(p.port),
        "--rcpt", "ok@x.test", "--message", message_file(dir, "a\r\n") })
      assert.are.same({ 250 }, codes(res))
      assert.is_false(res.tls)
      assert.matches("result=tls%-failed%-retrying%-plaintext", log)
      local s = p.wait_sessions(2)
      assert.is_true(s[1].tls_attempted)
      assert.is_false(s[2].tls_attempted)
      assert.is_true(has(verbs(s[2]), "DATA"))
    end)
  end)

  it("MAY: a stalled handshake times out and is retried in plaintext", function()
    local p = scripted({ ehlo = { "STARTTLS" }, starttls = "stall" })
    finally(p.stop)
    local res, log = drive({ "--host", "mx=127.0.0.1", "--port", tostring(p.port),
      "--timeout-command", "1", "--rcpt", "ok@x.test", "--message", message_file(dir, "a\r\n") })
    assert.are.same({ 250 }, codes(res))
    assert.matches("result=tls%-failed%-retrying%-plaintext.*timeout", log)
    local s = p.wait_sessions(2)
    assert.is_true(s[1].tls_attempted)
    assert.is_false(s[2].tls_attempted)
  end)

  describe("against smtp-sink", function()
    local function sink(extra)
      local port = closed_port()
      local d = server.mkdtemp()
      local args = { "/usr/sbin/smtp-sink" }
      for _, a in ipairs(extra or {}) do args[#args + 1] = a end
      args[#args + 1] = "127.0.0.1:" .. port
      args[#args + 1] = "10"
      local user = io.popen("id -u"):read("l") == "0" and "-u nobody " or ""
      os.execute(tlskit.shell_join({ args[1] }) .. " " .. user .. tlskit.shell_join(
        { table.unpack(args, 2) }) .. " >" .. q(d .. "/log") .. " 2>&1 & echo $! >"
        .. q(d .. "/pid"))
      local pid = read_file(d .. "/pid"):match("%d+")
      local deadline = socket.gettime() + 10 * SCALE
      repeat
        local c = socket.connect("127.0.0.1", port)
        if c then c:close() break end
        socket.sleep(0.05)
      until socket.gettime() > deadline
      return port, function() os.execute("kill " .. pid) server.rmtree(d) end
    end

    it("delivers through the second host when the first refuses", function()
      local port, stop = sink()
      finally(stop)
      local res, log = drive({ "--host", "dead=127.0.0.2", "--host", "sink=127.0.0.1",
        "--port", tostring(port), "--rcpt", "a@x.test", "--rcpt", "b@x.test",
        "--message", message_file(dir, ("line\r\n"):rep(5000)) })
      assert.are.same({ 250, 250 }, codes(res))
      assert.are.equal("sink [127.0.0.1]", res.remote)
      assert.matches('host="dead" addr="127.0.0.2" result=failed.*4%.4%.1 connect', log)
    end)

    it("a 421 after RCPT defers every recipient; a rejected dot bounces them", function()
      local defer = server.cleanup(finally)
      local port, stop = sink({ "-Q", "RCPT" })
      defer(stop)
      local res = drive({ "--host", "sink=127.0.0.1", "--port", tostring(port),
        "--rcpt", "a@x.test", "--message", message_file(dir, "a\r\n") })
      assert.are.equal(4, math.floor(res.rcpts[1].code / 100))
      local port2, stop2 = sink({ "-f", "." })
      defer(stop2)
      res = drive({ "--host", "sink=127.0.0.1", "--port", tostring(port2),
        "--rcpt", "a@x.test", "--rcpt", "b@x.test", "--message", message_file(dir, "a\r\n") })
      assert.are.same({ 500, 500 }, codes(res))
    end)
  end)

  describe("against a scripted server", function()
    local function run(script, extra, opts)
      local p = scripted(script, opts)
      local args = opts and opts.unix and { "--unix", p.unix } or
        { "--host", "mx=127.0.0.1", "--port", tostring(p.port) }
      for _, a in ipairs(extra) do args[#args + 1] = a end
      local ok, res, log = pcall(drive, args)
      local sessions = p.wait_sessions(1)
      p.stop()
      assert(ok, res)
      return res, sessions, log
    end

    it("pipelines MAIL, every RCPT and DATA when offered", function()
      local res, s = run({ ehlo = { "PIPELINING" }, hold_mail_until_data = true },
        { "--rcpt", "a@x.test", "--rcpt", "b@x.test", "--message", message_file(dir, "a\r\n") })
      assert.are.same({ 250, 250 }, codes(res))
      local c = s[1].commands
      assert.are.same({ "EHLO", "MAIL", "RCPT", "RCPT", "DATA", ".", "QUIT" }, verbs(s[1]))
      assert.is_true(c[3].early and c[4].early and c[5].early)
    end)

    it("without PIPELINING one command per reply; a 452 defers only its recipient", function()
      local res, s = run({ ehlo = { "SIZE 100000" }, rcpt = { ["b@x.test"] = "452 4.2.1 later" } },
        { "--rcpt", "a@x.test", "--rcpt", "b@x.test", "--rcpt", "c@x.test",
          "--message", message_file(dir, "a\r\n") })
      assert.are.same({ 250, 452, 250 }, codes(res))
      for _, c in ipairs(s[1].commands) do assert.is_false(c.early, c.line) end
      assert.matches("^MAIL FROM:<> SIZE=3$", s[1].commands[2].line)
    end)

    it("sends no DATA when every recipient was refused", function()
      local res, s = run({ ehlo = {}, rcpt = { ["a@x.test"] = "550 5.1.1 no" } },
        { "--rcpt", "a@x.test", "--message", message_file(dir, "a\r\n") })
      assert.are.same({ 550 }, codes(res))
      assert.is_false(has(verbs(s[1]), "DATA"))
      res, s = run({ rcpt = { ["a@x.test"] = "550 5.1.1 no" } },
        { "--rcpt", "a@x.test", "--message", message_file(dir, "a\r\n") })
      assert.are.same({ 550 }, codes(res))
      assert.are.equal("", s[1].data)
    end)

    it("falls back to HELO when EHLO gets a 5xx", function()
      local res, s = run({ ehlo_reply = "502 5.5.2 what" },
        { "--rcpt", "a@x.test", "--message", message_file(dir, "a\r\n") })
      assert.are.same({ 250 }, codes(res))
      assert.are.same({ "EHLO", "HELO", "MAIL", "RCPT", "DATA", ".", "QUIT" }, verbs(s[1]))
    end)

    it("refuses to send more than the advertised SIZE, or SMTPUTF8 where it is not offered",
      function()
        local res, s = run({ ehlo = { "SIZE 10" } },
          { "--rcpt", "a@x.test", "--message", message_file(dir, ("x"):rep(50) .. "\r\n") })
        assert.are.same({ 552 }, codes(res))
        assert.matches("^5%.3%.4", res.rcpts[1].text)
        assert.is_false(has(verbs(s[1]), "MAIL"))
        res, s = run({ ehlo = { "PIPELINING", "8BITMIME" } },
          { "--rcpt", "a@x.test", "--smtputf8", "--message", message_file(dir, "a\r\n") })
        assert.are.same({ 553 }, codes(res))
        assert.matches("^5%.6%.7", res.rcpts[1].text)
        assert.is_false(has(verbs(s[1]), "MAIL"))
      end)

    it("defers everything when the server goes silent, before or after the dot", function()
      local res, s = run({ silent_at = "MAIL" },
        { "--rcpt", "a@x.test", "--rcpt", "b@x.test", "--timeout-command", "1",
          "--message", message_file(dir, "a\r\n") })
      assert.are.same({ 451, 451 }, codes(res))
      assert.matches("^4%.4%.2 timeout", res.rcpts[1].text)
      res, s = run({ silent_at = "." },
        { "--rcpt", "a@x.test", "--timeout-data", "1", "--message", message_file(dir, "a\r\n") })
      assert.are.same({ 451 }, codes(res))
      assert.matches("after the end of data", res.rcpts[1].text)
      assert.are.equal(1, #s)
    end)

    it("defers everything when the server resets mid-DATA", function()
      local res = run({ reset_in_data = 1000 },
        { "--rcpt", "a@x.test", "--message", message_file(dir, ("0123456789\r\n"):rep(50000)) })
      assert.are.same({ 451 }, codes(res))
      assert.matches("^4%.4%.2", res.rcpts[1].text)
    end)

    it("cancels an attempt in progress", function()
      local p = scripted({ silent_at = "GREETING" })
      finally(p.stop)
      local res = drive({ "--host", "mx=127.0.0.1", "--port", tostring(p.port),
        "--rcpt", "a@x.test", "--cancel-after", "0.3" })
      assert.is_true(res.cancelled)
    end)

    it("LMTP on a UNIX socket: LHLO, one reply per accepted recipient after the dot", function()
      local res, s = run({ lmtp = true, ehlo = { "PIPELINING", "8BITMIME" },
        rcpt = { ["gone@x.test"] = "550 5.1.1 no such user" },
        dot = { ["a@x.test"] = "250 2.0.0 saved", ["full@x.test"] = "452 4.2.2 over quota",
          ["bad@x.test"] = "552 5.2.2 too big for this box" } },
        { "--lmtp", "--rcpt", "a@x.test", "--rcpt", "gone@x.test", "--rcpt", "full@x.test",
          "--rcpt", "bad@x.test", "--message", message_file(dir, "a\r\n") }, { unix = true })
      assert.are.same({ 250, 550, 452, 552 }, codes(res))
      assert.matches("^2%.0%.0 saved", res.rcpts[1].text)
      assert.matches("^4%.2%.2 over quota", res.rcpts[3].text)
      assert.are.equal("LHLO", verbs(s[1])[1])
      assert.matches("^unix:", res.remote)
    end)
  end)

  describe("against Dovecot LMTP", function()
    local run_it = dovecot.available() and it or pending

    run_it("delivers to a known user, refuses an unknown one at RCPT", function()
      local d = assert(dovecot.start())
      finally(function() d:stop() end)
      local body = "Subject: lmtp\r\n\r\nhello\r\n.dot line\r\n"
      local res, log = drive({ "--unix", d.socket, "--lmtp", "--sender", "s@x.test",
        "--rcpt", "alice@x.test", "--rcpt", "bob@x.test", "--rcpt", "alice@y.test",
        "--message", message_file(dir, body), "--timeout-command", "20" })
      assert.are.same({ 250, 550, 250 }, codes(res), d:log())
      assert.matches("^2%.0%.0 .*Saved", res.rcpts[1].text)
      assert.matches("^5%.1%.1 ", res.rcpts[2].text)
      assert.matches("delivered=2 deferred=0 bounced=1", log)
      local files = d:maildir_files("alice")
      assert.are.equal(2, #files)
      for _, f in ipairs(files) do
        assert.truthy(f:find("\r?\nhello\r?\n%.dot line\r?\n$"), f)
      end
    end)
  end)
end)

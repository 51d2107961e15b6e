-- Unit specs for the spec helpers themselves: the SMTP client against a
-- local lua-socket peer that sends canned replies, and the server helper
-- against a fake binary (a shell script), so the helpers are known to be
-- right before any failure is blamed on luamta.
local socket = require "socket"
local smtp = require "smtp"
local server = require "server"

-- A listening socket and a connected client/peer pair.
local function pair()
  local l = assert(socket.bind("127.0.0.1", 0))
  local _, port = l:getsockname()
  local c = assert(smtp.connect(tonumber(port), nil, { timeout = 2 }))
  l:settimeout(5)
  local peer = assert(l:accept())
  l:close()
  peer:settimeout(5)
  return c, peer
end

describe("smtp helper: reply parsing #unit", function()
  it("reads a multi-line reply as one reply with every line's text", function()
    local c, peer = pair()
    finally(function() c:close(); peer:close() end)
    peer:send("250-mx.spec.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 HELP\r\n")
    local r = c:expect(250)
    assert.are.same({ "mx.spec.test", "PIPELINING", "SIZE 1000", "HELP" }, r.lines)
    assert.are.equal("mx.spec.test\nPIPELINING\nSIZE 1000\nHELP", r.text)
  end)

  it("reads consecutive replies separately, even when they arrive in one packet", function()
    local c, peer = pair()
    finally(function() c:close(); peer:close() end)
    peer:send("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data\r\n")
    assert.are.equal("2.1.0", c:expect(250, "2.1.0").enhanced)
    assert.are.equal("2.1.5", c:expect(250, "2.1.5").enhanced)
    c:expect(354, "End data")
    assert.is_false(c:has_data())
  end)

  it("reassembles a reply split across packets at arbitrary bytes", function()
    local c, peer = pair()
    finally(function() c:close(); peer:close() end)
    local reply = "550-5.7.1 first\r\n550 5.7.1 second\r\n"
    for i = 1, #reply do peer:send(reply:sub(i, i)) end
    local r = c:expect(550, "5.7.1")
    assert.are.same({ "5.7.1 first", "5.7.1 second" }, r.lines)
  end)

  it("fails with the whole reply when the code differs", function()
    local c, peer = pair()
    finally(function() c:close(); peer:close() end)
    peer:send("451-4.3.0 Temporary\r\n451 4.3.0 policy error\r\n")
    local ok, err = pcall(c.expect, c, 250)
    assert.is_false(ok)
    assert.matches("expected 250", err, 1, true)
    assert.matches("451-4.3.0 Temporary\r\n451 4.3.0 policy error", err, 1, true)
  end)

  it("checks the enhanced code on every line of a reply", function()
    local c, peer = pair()
    finally(function() c:close(); peer:close() end)
    peer:send("550-5.7.1 one\r\n550 two\r\n")
    local ok, err = pcall(c.expect, c, 550, "5.7.1")
    assert.is_false(ok)
    assert.matches("line 2 does not carry enhanced code 5.7.1", err, 1, true)
  end)

  it("matches text patterns and plain strings", function()
    local c, peer = pair()
    finally(function() c:close(); peer:close() end)
    peer:send("250 2.1.0 sender=<a.b@[1.2.3.4]>\r\n250 2.0.0 Ok\r\n")
    c:expect(250, "sender=<a.b@[1.2.3.4]>") -- plain fallback: [] is a pattern class
    local ok = pcall(c.expect, c, 250, "nomatch")
    assert.is_false(ok)
  end)

  it("rejects reply lines that do not end in CRLF", function()
    local c, peer = pair()
    finally(function() c:close(); peer:close() end)
    peer:send("250 2.0.0 Ok\n")
    local ok, err = pcall(c.expect, c, 250)
    assert.is_false(ok)
    assert.matches("does not end in CRLF", err, 1, true)
  end)

  it("send() appends CRLF and returns the client for chaining", function()
    local c, peer = pair()
    finally(function() c:close(); peer:close() end)
    assert.are.equal(c, c:send("NOOP"))
    c:send_raw("RS"):send_raw("ET\r\n")
    assert.are.equal("NOOP", peer:receive("*l"))
    assert.are.equal("RSET\r\n", peer:receive(6))
  end)

  it("send_bytewise() delivers every byte in order", function()
    local c, peer = pair()
    finally(function() c:close(); peer:close() end)
    c:send_bytewise("EHLO x\r\n", 0)
    assert.are.equal("EHLO x\r\n", peer:receive(8))
  end)

  it("times out instead of hanging when no reply comes", function()
    local c, peer = pair()
    finally(function() c:close(); peer:close() end)
    local r, err = c:read_reply(0.2)
    assert.is_nil(r)
    assert.are.equal("timeout", err)
    local ok, msg = pcall(c.expect, c, 250, nil, 0.2)
    assert.is_false(ok)
    assert.matches("read ended: timeout", msg, 1, true)
  end)

  it("tells a close by the peer from an open connection", function()
    local c, peer = pair()
    finally(function() c:close() end)
    assert.is_false((c:closed_by_peer(0.2)))
    peer:send("221 2.0.0 Bye\r\n")
    peer:close()
    c:expect(221, "2.0.0")
    assert.is_true(c:closed_by_peer(2))
    c:expect_closed(1)
  end)

  it("reports unexpected bytes instead of a close", function()
    local c, peer = pair()
    finally(function() c:close(); peer:close() end)
    peer:send("500 5.5.2 what\r\n")
    local closed, what = c:closed_by_peer(2)
    assert.is_false(closed)
    assert.matches("500 5.5.2 what", what, 1, true)
  end)

  it("message() runs MAIL, RCPT, DATA and sends the body and the dot", function()
    local c, peer = pair()
    finally(function() c:close(); peer:close() end)
    peer:send("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n250 2.0.0 queued\r\n")
    c:message("a@x.test", { "b@x.test", "c@x.test" }, "Subject: t\r\n\r\nhi\r\n"):expect(250)
    local got = {}
    for _ = 1, 8 do got[#got + 1] = peer:receive("*l") end
    assert.are.same({ "MAIL FROM:<a@x.test>", "RCPT TO:<b@x.test>", "RCPT TO:<c@x.test>",
      "DATA", "Subject: t", "", "hi", "." }, got)
  end)
end)

describe("smtp helper: text helpers #unit", function()
  it("dot-stuffs lines that start with a dot, including the first", function()
    assert.are.equal("..a\r\nb\r\n...\r\n", smtp.stuff(".a\r\nb\r\n..\r\n"))
  end)
  it("turns LF line ends into CRLF once", function()
    assert.are.equal("a\r\nb\r\n", smtp.crlf("a\nb\r\n"))
  end)
  it("parses a bare three-digit line and flags garbage", function()
    assert.are.equal(250, smtp.parse_reply("250\r\n").code)
    assert.is_truthy(smtp.parse_reply("hello\r\n").malformed)
    assert.is_truthy(smtp.parse_reply("250-a\r\n251 b\r\n").malformed)
  end)
end)

describe("server helper against a fake binary #unit", function()
  local fake_dir, saved_bin
  local FAKE = [=[#!/bin/sh
ready=
while [ $# -gt 0 ]; do
  case "$1" in --ready-file) ready=$2; shift ;; esac
  shift
done
echo "fake started dir=$LUAMTA_TEST_DIR extra=$FAKE_EXTRA cwd=$(pwd)" >&2
echo "to stdout"
[ -n "$FAKE_DIE" ] && { echo "fake dies: $FAKE_DIE" >&2; exit 1; }
trap 'echo "fake stopping" >&2; exit ${FAKE_STATUS:-0}' TERM
printf '127.0.0.1 4242\n' > "$ready.tmp" && mv "$ready.tmp" "$ready"
while :; do sleep 0.05; done
]=]

  -- server.bin() reads LUAMTA_BIN, which cannot be changed from Lua, so the
  -- fake is reached through a patched bin().
  lazy_setup(function()
    fake_dir = server.mkdtemp()
    server.write_file(fake_dir .. "/fake", FAKE)
    assert(os.execute("chmod +x " .. server.quote(fake_dir .. "/fake")))
    saved_bin = server.bin
    server.bin = function() return fake_dir .. "/fake" end
  end)
  lazy_teardown(function()
    server.bin = saved_bin
    server.rmtree(fake_dir)
  end)

  it("starts, reads the ready file, exposes log and stdout, stops with status 0", function()
    local srv = assert(server.start({ env = { FAKE_EXTRA = "x-{dir}" } }))
    finally(function() if srv.status == nil then srv:terminate() end end)
    assert.are.equal(4242, srv.port)
    assert.are.equal("127.0.0.1", srv.addr)
    assert.is_number(srv.pid)
    assert.truthy(srv:wait_log("fake started"))
    local line = srv:log_lines("fake started")[1]
    assert.matches("dir=" .. srv.dir, line, 1, true)
    assert.matches("extra=x-" .. srv.dir, line, 1, true)
    assert.matches("cwd=" .. srv.dir, line, 1, true)
    assert.truthy(srv:wait_stdout("to stdout"))
    local dir = srv.dir
    assert.are.equal(0, srv:stop())
    assert.is_nil(server.read_file(dir .. "/ready"))  -- directory removed
  end)

  it("fails stop() when the server exits non-zero (as on a leak report)", function()
    local srv = assert(server.start({ env = { FAKE_STATUS = "23" } }))
    local ok, err = pcall(srv.stop, srv)
    assert.is_false(ok)
    assert.matches("exited with status 23", err, 1, true)
    assert.matches("fake stopping", err, 1, true)
  end)

  it("returns nil and the log when the server exits before it is ready", function()
    local srv, err = server.start({ env = { FAKE_DIE = "bad script" } })
    assert.is_nil(srv)
    assert.matches("exited with status 1", err, 1, true)
    assert.matches("fake dies: bad script", err, 1, true)
  end)

  it("writes script_source into the server's directory and passes --script", function()
    local srv = assert(server.start({ script_source = "return {}\n" }))
    finally(function() srv:stop() end)
    assert.are.equal(srv.dir .. "/policy.lua", srv.script)
    assert.are.equal("return {}\n", server.read_file(srv.dir .. "/policy.lua"))
  end)

  it("run() returns the exit status, stdout and stderr", function()
    local code, out, err = server.run({ "--check" }, { env = { FAKE_DIE = "now" } })
    assert.are.equal(1, code)
    assert.are.equal("to stdout\n", out)
    assert.matches("fake dies: now", err, 1, true)
  end)
end)

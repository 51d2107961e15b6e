-- luamta.tcp(), the cosocket of hooks, against a real peer on loopback
-- (spec/fixtures/tcp_server.py, over TCP, IPv6, a UNIX socket and TLS with
-- a test CA from tlskit): the patterns of receive and receiveuntil, sends,
-- timeouts, refused and reset connections, the pool (the peer counts its
-- connections), client TLS and its verification, calls where Lua cannot
-- yield, a hundred hooks parked at once while another session runs, and
-- sessions that hang up while their hook waits. Each case is one "XT case"
-- command of spec/fixtures/policies/tcp.lua, answered 250 with the case's
-- results joined by "|".
local server = require "server"
local smtp = require "smtp"
local tlskit = require "tlskit"
local tcp = require "tcp"
local dns = require "dns"
local socket = require "socket"

local POLICY = server.source_dir() .. "/spec/fixtures/policies/tcp.lua"

describe("luamta.tcp() #integration", function()
  local srv, peer, pki, resolver

  lazy_setup(function()
    pki = tlskit.pki()
    peer = assert(tcp.start({ cert = pki.server_cert, key = pki.server_key }))
    resolver = dns.dnsmasq({ "--host-record=peer.spec.test,127.0.0.1",
      "--server=/hang.spec.test/127.0.0.1#" .. dns.free_port() })
    srv = assert(server.start({ policy = POLICY, args = { "--resolver", resolver:addr() },
      env = {
      TCP_PORT = tostring(peer.port),
      TCP_PORT6 = peer.port6 and tostring(peer.port6) or "",
      TCP_UNIX = peer.unix,
      TCP_CLOSED = tostring(tcp.closed_port()),
      TCP_CA = pki.ca_cert,
    } }))
  end)

  lazy_teardown(function()
    -- The peer first: a hook still parked on it then wakes to "closed".
    if peer then peer:stop() end
    if srv then srv:stop() end
    if resolver then resolver:stop() end
    if pki then pki:cleanup() end
  end)

  local function session()
    local c = assert(smtp.connect(srv.port, srv))
    c:expect(220)
    c:send("EHLO tcp.spec.test"):expect(250)
    return c
  end

  -- The results of one case, as the text after "250 ".
  local function xt(case)
    local c = session()
    local ok, r = pcall(function() return c:send("XT " .. case):expect(250) end)
    c:close()
    if not ok then error(r, 0) end
    return (r.text:gsub("^2%.0%.0 ", ""))
  end

  it("sends strings and arrays, reads lines (CR LF or a bare LF) and closes once", function()
    assert.are.equal("11|hello|a1b|true|nil|closed", xt("echo"))
  end)

  it("reads a number of bytes", function()
    assert.are.equal("0123456789|012345678901234|", xt("sizes"))
  end)

  it("reads everything until the peer closes, then says closed", function()
    assert.are.equal("100000|012345678901|nil|closed", xt("all"))
  end)

  it("refuses more than max_buffer and closes the connection", function()
    assert.are.equal("nil|too large|nil|closed", xt("toolarge"))
  end)

  it("reads until a pattern, with and without the pattern", function()
    assert.are.equal("one|two|one--XY--", xt("until"))
  end)

  it("reads until a pattern in chunks, nil at each pattern", function()
    assert.are.equal("on,e,nil,tw,o,nil", xt("untilsize"))
  end)

  it("connects over a UNIX socket", function()
    assert.are.equal("true|over unix|true", xt("unix"))
  end)

  it("connects to an IPv6 literal", function()
    local out = xt("ipv6")
    if out == "no-ipv6" then
      pending("needs IPv6 on loopback")
      return
    end
    assert.are.equal("true|over ipv6|luamta.tcp (connected to [::1]:" .. peer.port6 .. ")|true",
      out)
  end)

  it("connects to a host name through luamta.dns, and says why one does not resolve", function()
    assert.are.equal("true|by name|luamta.tcp (connected to peer.spec.test:" .. peer.port .. ")|true",
      xt("name"))
    assert.are.equal("nil|cannot resolve missing.spec.test: nxdomain", xt("name_missing"))
  end)

  it("returns connection refused", function()
    assert.are.equal("nil|connection refused", xt("refused"))
  end)

  it("returns a reset mid-reply with the partial data, then closed", function()
    assert.are.equal("nil|connection reset by peer|partial|nil|closed", xt("reset"))
  end)

  it("times out a read, keeps the connection, and will not pool it", function()
    assert.are.equal("nil|timeout||nil|timeout|nil|"
      .. "connection in an unknown state (a call timed out or was cancelled)", xt("timeout"))
  end)

  it("times out a send to a peer that stopped reading", function()
    assert.are.equal("nil|timeout|true", xt("sendtimeout"))
  end)

  it("times out a TLS handshake (under the connect timeout) and closes", function()
    assert.are.equal("nil|timeout|nil|closed", xt("handshaketimeout"))
  end)

  it("will not pool a connection with unread data", function()
    assert.are.equal("a|b|nil|unread data in buffer", xt("unread"))
  end)

  it("reuses a pooled connection in the next session", function()
    local first = xt("pool")
    local reused, count, kept, closed = first:match("^(%d+)|(%d+)|(%w+)|(.*)$")
    assert.are.equal("0", reused, first)
    assert.are.equal("true", kept, first)
    assert.are.equal("nil|closed", closed, first)
    local second = xt("pool")
    assert.are.equal("1|" .. count .. "|true|nil|closed", second)
  end)

  describe("pooled connections", function()
    local ctl
    before_each(function()
      ctl = assert(socket.connect("127.0.0.1", peer.port))
      ctl:settimeout(10 * server.TIMEOUT_SCALE)
    end)
    after_each(function() ctl:close() end)

    -- Polls the peer until its connection id is closed; true once it is.
    local function gone(id)
      local deadline = socket.gettime() + 20 * server.TIMEOUT_SCALE
      repeat
        ctl:send("ALIVE " .. id .. "\n")
        if ctl:receive() == "no" then return true end
        socket.sleep(0.05)
      until socket.gettime() > deadline
      return false
    end

    it("are closed when their idle time is up", function()
      local out = xt("unixkeep 0.3")
      local id = out:match("^0|(%d+)|true$")
      assert.is_truthy(id, out)
      assert.is_true(gone(id))
      out = xt("unixkeep 60")
      local id2 = out:match("^0|(%d+)|true$")
      assert.is_truthy(id2, out)
      assert.are_not.equal(id, id2)
      assert.are.equal("1|" .. id2 .. "|true", xt("unixkeep 60"))
    end)

    it("are dropped when the peer closes them", function()
      local out = xt("unixbye")
      local id = out:match("^(%d+)|OK|true$")
      assert.is_truthy(id, out)
      assert.is_true(gone(id))
      out = xt("unixkeep 60")
      assert.matches("^0|%d+|true$", out)
      assert.are_not.equal(id, out:match("^0|(%d+)"))
    end)

    it("keep at most size per key, closing the oldest", function()
      local out = xt("evict")
      local a, b = out:match("^(%d+)|(%d+)|true|true$")
      assert.is_truthy(a, out)
      assert.is_true(gone(a))
      ctl:send("ALIVE " .. b .. "\n")
      assert.are.equal("yes", ctl:receive())
      assert.are.equal("1|" .. b .. "|true", xt("unixkeep 60"))
    end)
  end)

  it("raises a clear error where Lua cannot yield (table.sort, string.gsub)", function()
    local out = xt("sort")
    assert.matches("^false|.*sock:connect cannot wait here %(inside a metamethod or a callback",
      out)
    out = xt("gsub")
    assert.matches("^false|.*sock:receive cannot wait here", out)
    assert.matches("|true$", out)
  end)

  it("raises in a coroutine of the script's own", function()
    assert.matches("^false|.*sock:connect must be called from a hook, not from a coroutine.*|true$",
      xt("coroutine"))
  end)

  it("raises at the top level of a policy, which is not a hook", function()
    local dir = server.mkdtemp()
    finally(function() server.rmtree(dir) end)
    server.write_file(dir .. "/p.lua", "local luamta = require 'luamta'\n"
      .. "assert(luamta.tcp():connect('127.0.0.1', " .. peer.port .. "))\nreturn {}\n")
    local code, out, err = server.run({ "--check", "--script", dir .. "/p.lua" })
    assert.are_not.equal(0, code)
    assert.matches("sock:connect cannot be used here", out .. err)
  end)

  it("keeps a socket only its waiting call refers to through a full collection", function()
    local c1, ctl
    finally(function()
      if ctl then
        ctl:send("RELEASE anchored\n")
        ctl:close()
      end
      if c1 then c1:close() end
    end)
    c1 = session()
    c1:send("XT anchored")
    assert(srv:wait_log("tcp anchored parked"), "the hook did not park\n" .. srv:log_tail(20))
    assert.are.equal("true", xt("collect"))
    ctl = assert(socket.connect("127.0.0.1", peer.port))
    ctl:settimeout(10 * server.TIMEOUT_SCALE)
    ctl:send("RELEASE anchored\n")
    assert.are.equal("OK", ctl:receive())
    c1:expect(250, "released")
  end)

  it("answers socket busy to a session using a socket another one waits on", function()
    local c1, ctl
    finally(function()
      if ctl then
        ctl:send("RELEASE share\n")
        ctl:close()
      end
      if c1 then c1:close() end
    end)
    c1 = session()
    c1:send("XT share1")
    assert(srv:wait_log("tcp shared parked"), "the hook did not park\n" .. srv:log_tail(20))
    assert.are.equal("nil|socket busy|nil|socket busy|nil|socket busy", xt("share2"))
    ctl = assert(socket.connect("127.0.0.1", peer.port))
    ctl:settimeout(10 * server.TIMEOUT_SCALE)
    ctl:send("RELEASE share\n")
    assert.are.equal("OK", ctl:receive())
    c1:expect(250, "released|true")
  end)

  it("raises on bad arguments and answers closed on a closed socket", function()
    local out = xt("args")
    assert.matches("^bad argument #2 to 'connect' ;bad argument #1 to 'settimeout' ;"
      .. "bad argument #1 to 'receive' ;bad argument #1 to 'receiveuntil' ;"
      .. "bad argument #1 to 'send' |nil|nil|nil|closed$", out)
  end)

  it("collects sockets dropped without closing them", function()
    assert.are.equal("still", xt("gc"))
  end)

  describe("TLS", function()
    it("verifies the peer against cafile and talks over TLS", function()
      assert.are.equal("true|over tls|luamta.tcp (connected to 127.0.0.1:" .. peer.port
        .. ", TLS)|true", xt("tls cafile"))
    end)

    it("fails to verify a test certificate against the system bundle", function()
      assert.matches("^nil|certificate verify failed: .*not correctly signed", xt("tls system"))
    end)

    it("fails when the server name does not match", function()
      assert.matches("^nil|certificate verify failed: .*CN", xt("tls mismatch"))
    end)

    it("skips verification with verify = false", function()
      assert.matches("^true|over tls|", xt("tls noverify"))
    end)

    it("pools TLS connections by server name", function()
      local first = xt("tlspool")
      local count = first:match("^0|(%d+)|true$")
      assert.is_truthy(count, first)
      assert.are.equal("1|" .. count .. "|true", xt("tlspool"))
    end)
  end)

  it("serves another session while 100 hooks wait for a reply", function()
    local N = 100
    local waiting, ctl, c = {}, nil, nil
    -- One finally (busted keeps the last one given): release the peer's
    -- held connections and close every client.
    finally(function()
      if ctl then
        ctl:send("RELEASE\n")
        ctl:close()
      end
      for _, w in ipairs(waiting) do w:close() end
      if c then c:close() end
    end)
    for i = 1, N do
      waiting[i] = session()
      waiting[i]:send("XT hold")
    end
    -- Wait until the peer holds all of them: every hook is parked.
    ctl = assert(socket.connect("127.0.0.1", peer.port))
    ctl:settimeout(10 * server.TIMEOUT_SCALE)
    local deadline = socket.gettime() + 60 * server.TIMEOUT_SCALE
    local held
    repeat
      ctl:send("HELD\n")
      held = tonumber(ctl:receive())
      if held < N then socket.sleep(0.05) end
    until held == N or socket.gettime() > deadline
    assert.are.equal(N, held)

    -- A whole session, with its own hook on the same peer.
    c = session()
    c:send("XT echo"):expect(250, "11|hello")
    c:send("MAIL FROM:<a@spec.test>"):expect(250)
    c:send("RCPT TO:<b@spec.test>"):expect(250)
    c:send("DATA"):expect(354)
    c:send_raw("Subject: t\r\n\r\nbody\r\n.\r\n"):expect(250)
    c:send("QUIT"):expect(221)

    -- None of the held ones has been answered meanwhile.
    for i = 1, N do
      waiting[i].sock:settimeout(0)
      local data, err = waiting[i].sock:receive(1)
      assert.are.equal("timeout", err, "session " .. i .. " answered early: " .. tostring(data))
    end
    ctl:send("RELEASE\n")
    assert.are.equal("OK", ctl:receive())
    for i = 1, N do
      waiting[i]:expect(250, "released|true")
    end
  end)

  it("cancels a waiting call when the client hangs up, and serves on", function()
    for i, how in ipairs({ "read", "until", "read", "until" }) do
      local c = session()
      c:send("XT hang " .. how)
      assert(srv:wait_log("tcp parked", nil, i), "the hook did not park\n" .. srv:log_tail(20))
      -- A reset, not a half-close: after a FIN the parked hook would
      -- still finish and answer; a reset cancels the run.
      c.sock:setoption("linger", { on = true, timeout = 0 })
      c:close()
    end
    -- The hooks were cancelled (their sessions are gone) and the worker
    -- still serves; valgrind checks the cancelled sockets' memory.
    assert.are.equal("11|hello|a1b|true|nil|closed", xt("echo"))
  end)

  it("cancels a connect that waits on its name's lookup", function()
    local c = session()
    c:send("XT hang_dns")
    assert(srv:wait_log("tcp parked dns"), "the hook did not start\n" .. srv:log_tail(20))
    -- The hook is parked in luamta.dns once the log line is out (one loop
    -- turn runs it to its first wait before the reset is read).
    c.sock:setoption("linger", { on = true, timeout = 0 })
    c:close()
    -- Collect the abandoned socket, then wait past the lookup's own 2 s
    -- timeout: a lookup the cancel had not forgotten would now write into
    -- a freed socket (ASan and valgrind see it; the server would die).
    assert.are.equal("still", xt("gc"))
    socket.sleep(3)
    assert.are.equal("true|by name|luamta.tcp (connected to peer.spec.test:" .. peer.port
      .. ")|true", xt("name"))
  end)
end)

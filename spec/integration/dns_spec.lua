-- luamta.dns against real DNS servers on loopback: dnsmasq for records
-- (A, AAAA, MX, TXT, PTR, CNAME, DNSBL zones, forward-confirmed reverse
-- DNS), and spec/fixtures/dns_responder.py for failures (SERVFAIL,
-- REFUSED, silence, truncation, held answers) and query counts (the
-- cache, the second resolver). A custom verb runs a chunk of Lua in a hook
-- and replies with its results, so each case is one SMTP command.
local server = require "server"
local smtp = require "smtp"
local dnskit = require "dns"
local socket = require "socket"

local SCALE = server.TIMEOUT_SCALE

-- XDNS <chunk>: runs the chunk (dns is luamta.dns) and replies 250 with
-- its results as Lua literals, keys sorted, so the spec can load them.
local POLICY = [[
local dns = luamta.dns
local concat, sort, format, type, pairs, tostring = table.concat, table.sort,
  string.format, type, pairs, tostring

local function dump(v)
  if type(v) == "string" then return format("%q", v):gsub("\\\n", "\\n") end
  if type(v) ~= "table" then return tostring(v) end
  local keys, out = {}, {}
  for k in pairs(v) do keys[#keys + 1] = k end
  sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do
    out[#out + 1] = "[" .. dump(k) .. "]=" .. dump(v[k])
  end
  return "{" .. concat(out, ",") .. "}"
end

local env = setmetatable({ dns = dns }, { __index = _G })

return {
  verbs = {
    XDNS = function(s, arg)
      env.s = s
      local f = assert(load(arg, "=xdns", "t", env))
      local r = table.pack(f())
      local out = {}
      for i = 1, r.n do out[i] = dump(r[i]) end
      return 250, "{" .. concat(out, ",") .. "}"
    end,
  },
  on_helo = function(s, name)
    -- "hold.N.spec.test": wait for a held answer (the non-blocking case).
    if name:find("^hold%.") then
      local r, err = dns.a(name, { timeout = 60 })
      if not r then return 451, "4.4.3 " .. err end
    end
  end,
}
]]

-- Sends XDNS chunk on c and returns the results as a table (n = count).
local function xdns(c, chunk)
  c:send("XDNS " .. chunk)
  local r = c:expect(250)
  local text = r.text:gsub("^2%.0%.0 ", "")
  local f = assert(load("return " .. text, "=reply", "t", {}), text)
  local v = f()
  local n = 0
  for k in pairs(v) do if k > n then n = k end end
  v.n = n
  return v
end

local function start(resolvers, extra)
  local args = {}
  for _, r in ipairs(resolvers) do
    args[#args + 1] = "--resolver"
    args[#args + 1] = r
  end
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  return assert(server.start({ script_source = POLICY, args = args }))
end

describe("luamta.dns against dnsmasq #integration", function()
  local dm, srv, c
  local v6 = "2001:db8::25"
  local v6rbl = "5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.spec.test"
  lazy_setup(function()
    dm = dnskit.dnsmasq({
      "--host-record=mail.spec.test,127.0.0.2",
      "--host-record=v6.spec.test," .. v6,
      "--host-record=liar.spec.test,127.0.0.9",
      "--ptr-record=3.0.0.127.in-addr.arpa,liar.spec.test",
      "--ptr-record=4.0.0.127.in-addr.arpa,gone.spec.test",
      "--mx-host=spec.test,mx2.spec.test,20",
      "--mx-host=spec.test,mx1.spec.test,10",
      "--mx-host=spec.test,mx0.spec.test,20",
      "--txt-record=multi.spec.test,part one ,part two",
      "--txt-record=spec.test,v=spf1 -all",
      "--cname=alias.spec.test,mail.spec.test",
      "--host-record=2.0.0.127.bl.spec.test,127.0.0.2",
      "--txt-record=2.0.0.127.bl.spec.test,Listed: see https://bl.spec.test/127.0.0.2",
      "--address=/" .. v6rbl .. "/127.0.0.4",
    })
    srv = start({ dm:addr() })
    c = smtp.session(srv)
  end)
  lazy_teardown(function()
    if c then c:close() end
    if srv then srv:stop() end
    if dm then dm:stop() end
  end)

  it("answers A, AAAA, MX, TXT and PTR with the shortcuts", function()
    local r = xdns(c, "return dns.a('mail.spec.test'), dns.aaaa('v6.spec.test')")
    assert.are.same({ "127.0.0.2" }, r[1])
    assert.are.same({ v6 }, r[2])
    r = xdns(c, "return dns.mx('spec.test')")
    assert.are.same({
      { preference = 10, exchange = "mx1.spec.test" },
      { preference = 20, exchange = "mx0.spec.test" },
      { preference = 20, exchange = "mx2.spec.test" },
    }, r[1])
    r = xdns(c, "return dns.txt('multi.spec.test'), dns.txt('spec.test')")
    assert.are.same({ "part one part two" }, r[1])
    assert.are.same({ "v=spf1 -all" }, r[2])
    r = xdns(c, "return dns.ptr('127.0.0.2'), dns.ptr('" .. v6 .. "')")
    assert.are.same({ "mail.spec.test" }, r[1])
    assert.are.same({ "v6.spec.test" }, r[2])
  end)

  it("gives records with type and ttl from dns.query, CNAMEs followed", function()
    local r = xdns(c, "return dns.query('alias.spec.test', 'A'), dns.query('alias.spec.test', 'cname'),"
      .. " dns.query('spec.test', 'MX', { timeout = 2 }), dns.query('spec.test', 'TXT')")
    assert.are.same({ { type = "A", ttl = 60, address = "127.0.0.2" } }, r[1])
    assert.are.same({ { type = "CNAME", ttl = 60, name = "mail.spec.test" } }, r[2])
    -- In the order of the answer: only the shortcut sorts.
    assert.are.equal(3, #r[3])
    table.sort(r[3], function(a, b) return a.exchange < b.exchange end)
    assert.are.same({ type = "MX", ttl = 60, preference = 10, exchange = "mx1.spec.test" },
      r[3][2])
    assert.are.same({ { type = "TXT", ttl = 60, text = "v=spf1 -all" } }, r[4])
    r = xdns(c, "return dns.query('2.0.0.127.in-addr.arpa', 'PTR'), dns.query('v6.spec.test', 'AAAA')")
    assert.are.same({ { type = "PTR", ttl = 60, name = "mail.spec.test" } }, r[1])
    assert.are.same({ { type = "AAAA", ttl = 60, address = v6 } }, r[2])
  end)

  it("tells nxdomain from nodata", function()
    local r = xdns(c, "return dns.a('nope.spec.test')")
    assert.are.same({ nil, "nxdomain", n = 2 }, r)
    r = xdns(c, "return dns.aaaa('mail.spec.test')")
    assert.are.same({ nil, "nodata", n = 2 }, r)
    r = xdns(c, "return dns.query('mail.spec.test', 'MX')")
    assert.are.same({ nil, "nodata", n = 2 }, r)
    r = xdns(c, "return dns.ptr('127.0.0.99')")
    assert.are.same({ nil, "nxdomain", n = 2 }, r)
    -- A name that cannot exist is nxdomain without a query.
    r = xdns(c, "return dns.a(('x'):rep(64) .. '.spec.test')")
    assert.are.same({ nil, "nxdomain", n = 2 }, r)
    r = xdns(c, "return dns.query('a..b', 'A')")
    assert.are.same({ nil, "nxdomain", n = 2 }, r)
  end)

  it("looks an address up in a DNSBL, IPv4 and IPv6", function()
    local r = xdns(c, "return dns.rbl('127.0.0.2', 'bl.spec.test')")
    assert.are.same({ true, { "127.0.0.2" }, "Listed: see https://bl.spec.test/127.0.0.2", n = 3 },
      r)
    r = xdns(c, "return dns.rbl('127.0.0.1', 'bl.spec.test.')")
    assert.are.same({ false, n = 1 }, r)
    -- Listed without a TXT record: no reason.
    r = xdns(c, "return dns.rbl('" .. v6 .. "', 'bl.spec.test')")
    assert.are.same({ true, { "127.0.0.4" }, n = 2 }, r)
    r = xdns(c, "return dns.rbl('::ffff:127.0.0.2', 'bl.spec.test')")
    assert.are.equal(true, r[1])
  end)

  it("confirms reverse DNS forward (fcrdns)", function()
    local r = xdns(c, "return dns.fcrdns('127.0.0.2'), dns.fcrdns('" .. v6 .. "')")
    assert.are.same({ "mail.spec.test", "v6.spec.test", n = 2 }, r)
    -- liar.spec.test resolves to another address; gone.spec.test to none.
    r = xdns(c, "return dns.fcrdns('127.0.0.3')")
    assert.are.same({ nil, "mismatch", n = 2 }, r)
    r = xdns(c, "return dns.fcrdns('127.0.0.4')")
    assert.are.same({ nil, "mismatch", n = 2 }, r)
    r = xdns(c, "return dns.fcrdns('127.0.0.99')")
    assert.are.same({ nil, "nxdomain", n = 2 }, r)
  end)

  it("gives the session's confirmed reverse name as s:rdns(), asked once", function()
    local function from(ip)
      local cc = assert(smtp.connect(srv, { bind = ip }))
      finally(function() cc:close() end)
      cc:expect(220)
      return cc
    end
    local good = from("127.0.0.2")
    assert.are.same({ "mail.spec.test", "mail.spec.test", n = 2 }, xdns(good, "return s:rdns(), s:rdns()"))
    local liar = from("127.0.0.3")
    assert.are.same({ nil, "mismatch", nil, "mismatch", n = 4 },
      xdns(liar, "local a, b = s:rdns() return a, b, s:rdns()"))
    good:close()
    liar:close()
  end)

  it("raises on bad arguments", function()
    local cases = {
      { "dns.query('x.spec.test', 'BOGUS')", "unknown qtype 'BOGUS'" },
      { "dns.query('x.spec.test', 'SOA')", "unknown qtype" },
      { "dns.a(42)", "string expected, got number" },
      { "dns.a(nil)", "string expected, got" },
      { "dns.ptr('1.2.3')", "invalid IP address '1.2.3'" },
      { "dns.ptr('mail.spec.test')", "invalid IP address" },
      { "dns.rbl('300.1.1.1', 'bl.spec.test')", "invalid IP address" },
      { "dns.rbl('127.0.0.2', '')", "invalid zone" },
      { "dns.rbl('127.0.0.2')", "string expected" },
      { "dns.fcrdns('::g')", "invalid IP address" },
      { "dns.a('mail.spec.test', { timeout = 0 })", "timeout must be above 0" },
      { "dns.a('mail.spec.test', { timeout = '1' })", "timeout must be a number" },
      { "dns.a('mail.spec.test', 5)", "options must be a table" },
    }
    for _, case in ipairs(cases) do
      local r = xdns(c, "return pcall(function() return " .. case[1] .. " end)")
      assert.are.equal(false, r[1], case[1])
      assert.matches(case[2], r[2], 1, true)
    end
  end)

  it("refuses to wait where Lua cannot yield, with a clear error", function()
    local r = xdns(c, "return pcall(table.sort, { 3, 1, 2 }, function(a, b)"
      .. " dns.a('mail.spec.test') return a < b end)")
    assert.are.equal(false, r[1])
    assert.matches("luamta.dns.a cannot wait here (inside a metamethod or a callback called from C)",
      r[2], 1, true)
    r = xdns(c, "return pcall(string.gsub, 'ab', '%w', function(ch) return dns.ptr('127.0.0.2')[1] end)")
    assert.are.equal(false, r[1])
    assert.matches("luamta.dns.ptr cannot wait here", r[2], 1, true)
    -- From a coroutine of the script's own.
    r = xdns(c, "return coroutine.wrap(function() return pcall(dns.mx, 'spec.test') end)()")
    assert.are.equal(false, r[1])
    assert.matches("must be called from a hook", r[2], 1, true)
    -- The hook still works afterwards.
    r = xdns(c, "return dns.a('mail.spec.test')")
    assert.are.same({ "127.0.0.2" }, r[1])
  end)
end)

describe("luamta.dns failures, the cache and fallbacks #integration", function()
  local rs, srv, c
  lazy_setup(function()
    rs = dnskit.responder()
    srv = start({ rs:addr() })
    c = smtp.session(srv)
  end)
  lazy_teardown(function()
    if c then c:close() end
    if srv then srv:stop() end
    if rs then rs:stop() end
  end)

  it("maps SERVFAIL, REFUSED and silence to temporary errors", function()
    local r = xdns(c, "return dns.a('servfail.spec.test')")
    assert.are.same({ nil, "servfail", n = 2 }, r)
    r = xdns(c, "return dns.a('refused.spec.test')")
    assert.are.same({ nil, "refused", n = 2 }, r)
    r = xdns(c, "return dns.a('silent.spec.test', { timeout = 0.3 })")
    assert.are.same({ nil, "timeout", n = 2 }, r)
    -- The per-call timeout also holds for an answer that comes late.
    r = xdns(c, "return dns.a('slow.late.spec.test', { timeout = 0.2 })")
    assert.are.same({ nil, "timeout", n = 2 }, r)
    r = xdns(c, "return dns.rbl('127.0.0.2', 'servfail.spec.test')")
    assert.are.same({ nil, "servfail", n = 2 }, r)
    r = xdns(c, "return dns.fcrdns('127.0.0.2')") -- the responder has no PTR: nodata
    assert.are.same({ nil, "nodata", n = 2 }, r)
  end)

  it("keeps s:rdns()'s permanent answer for the session", function()
    local r = xdns(c, "local a, b = s:rdns() return a, b, s:rdns()")
    assert.are.same({ nil, "nodata", nil, "nodata", n = 4 }, r)
    xdns(c, "return s:rdns()")
    assert.are.equal(1, rs:count("1.0.0.127.in-addr.arpa"))
  end)

  it("retries a truncated answer over TCP", function()
    local r = xdns(c, "local t = dns.txt('big.spec.test') return #t, t[1], t[30]")
    assert.are.same({ 30, "00" .. ("x"):rep(98), "29" .. ("x"):rep(98), n = 3 }, r)
    assert.are.equal(1, rs:count("big.spec.test", "udp"))
    assert.are.equal(1, rs:count("big.spec.test", "tcp"))
  end)

  it("fails for now when the TCP answer is cut off", function()
    local r = xdns(c, "return dns.txt('cut.spec.test', { timeout = 3 })")
    assert.is_nil(r[1])
    assert.is_truthy(r[2] == "refused" or r[2] == "servfail" or r[2] == "timeout", r[2])
    assert.is_true(rs:count("cut.spec.test", "tcp") >= 1)
  end)

  it("gives NS records", function()
    local r = xdns(c, "return dns.query('spec.test', 'NS')")
    assert.are.same({ { type = "NS", ttl = 300, name = "ns1.spec.test" },
      { type = "NS", ttl = 300, name = "ns2.spec.test" } }, r[1])
  end)

  it("answers a second query from the cache, with the TTL lowered", function()
    local r = xdns(c, "return dns.query('cached.spec.test', 'A'), dns.query('CACHED.spec.test.', 'A')")
    assert.are.equal("192.0.2.2", r[1][1].address)
    assert.are.equal("192.0.2.2", r[2][1].address)
    assert.is_true(r[2][1].ttl <= r[1][1].ttl)
    assert.are.equal(1, rs:count("cached.spec.test"))
    -- Another type is another entry.
    r = xdns(c, "return dns.txt('cached.spec.test')")
    assert.are.same({ "helloworld" }, r[1])
    assert.are.equal(2, rs:count("cached.spec.test"))
    -- Negative answers are kept as long as their SOA says (at most 60 s).
    r = xdns(c, "return { dns.a('nx.spec.test') }, { dns.a('nx.spec.test') }")
    assert.are.same({ { nil, "nxdomain" }, { nil, "nxdomain" }, n = 2 }, r)
    assert.are.equal(1, rs:count("nx.spec.test"))
    -- TTL 0 and failures are not kept.
    xdns(c, "return dns.a('ttl0.spec.test'), dns.a('ttl0.spec.test')")
    assert.are.equal(2, rs:count("ttl0.spec.test"))
    xdns(c, "return dns.a('servfail.again.spec.test')")
    local tries = rs:count("servfail.again.spec.test")
    xdns(c, "return dns.a('servfail.again.spec.test')")
    assert.are.equal(2 * tries, rs:count("servfail.again.spec.test"))
  end)
end)

describe("luamta.dns with several resolvers #integration", function()
  local good
  lazy_setup(function() good = dnskit.responder() end)
  lazy_teardown(function() if good then good:stop() end end)

  for _, mode in ipairs({ "servfail", "refused", "silent" }) do
    it("asks the second when the first answers " .. mode, function()
      local bad = dnskit.responder({ mode = mode })
      local srv = start({ bad:addr(), good:addr() })
      local c
      finally(function()
        if c then c:close() end
        srv:stop()
        bad:stop()
      end)
      c = smtp.session(srv)
      local name = "second-" .. mode .. ".spec.test"
      local r = xdns(c, "return dns.a('" .. name .. "')")
      assert.are.same({ "192.0.2.2" }, r[1])
      assert.are.equal(1, bad:count(name))
      assert.are.equal(1, good:count(name))
    end)
  end

  it("reports a resolver that is down as temporary", function()
    local srv = start({ "127.0.0.1:" .. dnskit.free_port() })
    local c
    finally(function()
      if c then c:close() end
      srv:stop()
    end)
    c = smtp.session(srv)
    local r = xdns(c, "return dns.a('mail.spec.test', { timeout = 1 })")
    assert.is_nil(r[1])
    assert.is_truthy(r[2] == "refused" or r[2] == "timeout", tostring(r[2]))
  end)

  it("checks --resolver", function()
    for _, bad in ipairs({ "example.org", "1.2.3.4:0", "1.2.3.4:x", "[::1", "[::1]x", "1.2.3.4:" }) do
      local code, out, err = server.run({ "--check", "--resolver", bad })
      assert.are_not.equal(0, code, bad)
      assert.matches("--resolver", out .. err, 1, true)
    end
    local code, out, err = server.run({ "--help" })
    assert.are.equal(0, code)
    assert.matches("--resolver ADDR[:PORT]", out .. err, 1, true)
  end)
end)

describe("luamta.dns waits without blocking #integration", function()
  local rs, srv
  lazy_setup(function()
    rs = dnskit.responder()
    -- A stop gives a waiting session a second, then drops it.
    srv = start({ rs:addr() }, { "--shutdown-timeout", "1" })
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    if rs then rs:stop() end
  end)

  it("serves a whole session while 100 others wait on DNS", function()
    local N = 100
    local waiting = {}
    finally(function()
      for _, w in ipairs(waiting) do w:close() end
    end)
    for i = 1, N do
      local w = assert(smtp.connect(srv))
      waiting[i] = w
      w:expect(220)
      w:send("HELO hold." .. i .. ".spec.test")
    end
    -- Every one of them is parked on its query.
    assert.are.equal(N, rs:wait_queries("^udp hold%.%d+%.spec%.test A", N))

    local c = smtp.session(srv)
    c:message("a@spec.test", "b@spec.test", "Subject: meanwhile\r\n\r\nhi\r\n"):expect(250)
    c:send("QUIT"):expect(221)
    c:close()
    -- None of the waiting sessions has had its reply.
    for i, w in ipairs(waiting) do
      w.sock:settimeout(0)
      local data, err, partial = w.sock:receive(1)
      w.sock:settimeout(w.timeout)
      assert.is_nil(data, "session " .. i .. " was answered early")
      assert.are.equal("timeout", err)
      assert.are.equal("", partial)
    end
    -- Released, each gets its EHLO reply.
    assert.is_truthy(rs:ask("release.spec.test"))
    for _, w in ipairs(waiting) do w:expect(250) end
  end)

  it("cancels the query of a session that goes away, and of one the server drops", function()
    local w = assert(smtp.connect(srv))
    w:expect(220)
    w:send("HELO hold.gone.spec.test")
    assert.are.equal(1, rs:wait_queries("^udp hold%.gone%.spec%.test A", 1))
    local closed = srv:count_log({ "smtp.close" })
    -- A reset: a half-close would still get its reply first.
    w.sock:setoption("linger", { on = true, timeout = 0 })
    w:close()
    assert.is_truthy(srv:wait_log({ "smtp.close" }, 10 * SCALE, closed + 1))
    -- The answer that comes later finds nothing to wake.
    assert.is_truthy(rs:ask("release.one.spec.test"))
    socket.sleep(0.2)
    local c = smtp.session(srv)
    local r = xdns(c, "return dns.a('after.spec.test')")
    assert.are.same({ "192.0.2.2" }, r[1])
    -- One still waiting when the server stops.
    local w2 = assert(smtp.connect(srv))
    w2:expect(220)
    w2:send("HELO hold.stop.spec.test")
    assert.are.equal(1, rs:wait_queries("^udp hold%.stop%.spec%.test A", 1))
    c:close()
    srv:stop()
    srv = nil
    w2:close()
  end)
end)

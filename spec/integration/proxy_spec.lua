-- The PROXY protocol (--listen-proxy, --listen-tls-proxy): the greeting
-- waits for the header; the client it names is s.peer_ip/s.peer_port for
-- hooks, logs and --max-per-ip; version 2's TLS TLVs reach s.proxy; a
-- header that is malformed, too slow, or from outside --proxy-trusted
-- closes the connection without a word. By hand (every byte chosen here)
-- and with swaks's own PROXY implementation, plaintext and implicit TLS.
local server = require "server"
local smtp = require "smtp"
local tlskit = require "tlskit"
local socket = require "socket"

local POLICY = [[
return {
  on_mail = function(s, from)
    local p = s.proxy
    local t = p and p.tls
    return 250, "2.1.0 ip=" .. s.peer_ip .. " port=" .. s.peer_port
      .. " local=" .. s.local_ip .. ":" .. s.local_port
      .. " via=" .. (p and (p.ip .. " v" .. p.version .. " local=" .. tostring(p["local"])) or "-")
      .. " authority=" .. tostring(p and p.authority)
      .. " ptls=" .. (t and (tostring(t.version) .. "/" .. tostring(t.cipher)) or "-")
      .. " cn=" .. tostring(t and t.client_cert and t.client_cert.cn)
      .. " verified=" .. tostring(t and t.client_cert and t.client_cert.verified)
      .. " tls=" .. (s.tls and s.tls.version or "-")
  end,
}
]]

local SIG = "\r\n\r\n\0\r\nQUIT\n"

local function tlv(t, v) return string.pack(">B s2", t, v) end

-- A version 2 PROXY header for an IPv4 client; tlvs appended raw.
local function v2(src, sport, dst, dport, tlvs, cmd)
  local function ip4(a)
    local b = {}
    for n in a:gmatch("%d+") do b[#b + 1] = tonumber(n) end
    return string.char(table.unpack(b))
  end
  local body = ip4(src) .. ip4(dst) .. string.pack(">I2 I2", sport, dport) .. (tlvs or "")
  return SIG .. string.char(0x20 | (cmd or 1), 0x11) .. string.pack(">s2", body)
end

-- luamta_connections_refused_total{reason="proxy"} from srv's /metrics.
local function proxy_refusals(srv)
  local c = assert(socket.connect("127.0.0.1", srv.metrics.port))
  c:settimeout(10)
  c:send("GET /metrics HTTP/1.0\r\n\r\n")
  local body = c:receive("*a") or ""
  c:close()
  return tonumber(body:match('\nluamta_connections_refused_total{reason="proxy"} (%d+)'))
end

-- Nothing arrives, and the server closes the connection (a reset when it
-- left bytes unread) rather than the read timing out.
local function assert_closed_silently(c)
  local data, err, partial = c.sock:receive("*a")
  assert.are.equal("", data or partial or "", "the server said something")
  assert.are_not.equal("timeout", err)
end

describe("PROXY protocol #integration", function()
  local srv, pki

  lazy_setup(function()
    pki = tlskit.pki()
    srv = assert(server.start({ script_source = POLICY,
      args = tlskit.server_args(pki, nil, { "--listen-proxy", "127.0.0.1:0",
        "--listen-tls-proxy", "127.0.0.1:0", "--proxy-trusted", "127.0.0.1/32",
        "--proxy-timeout", "1", "--max-per-ip", "1", "--limit-exempt", "none",
        "--metrics", "127.0.0.1:0" }) }))
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    if pki then pki:cleanup() end
  end)

  local function proxy_port() return srv.listeners[2].port end
  local function tls_proxy_port() return srv.listeners[3].port end

  it("greets only after a version 1 header, as the client it names", function()
    local c = assert(smtp.connect(proxy_port(), srv))
    finally(function() c:close() end)
    -- Nothing before the header, however long the client waits.
    socket.sleep(0.3)
    assert.is_false(c:has_data())
    c:send_bytewise("PROXY TCP4 192.0.2.7 198.51.100.1 4711 25\r\n", 0.01)
    c:expect(220)
    c:send("EHLO client.spec.test"):expect(250)
    c:send("MAIL FROM:<a@spec.test>")
      :expect(250, "ip=192.0.2.7 port=4711 local=198.51.100.1:25 via=127.0.0.1 v1 local=false"
        .. " authority=nil ptls=- cn=nil verified=nil tls=-")
    assert(srv:wait_log({ "smtp.connect peer=192.0.2.7 port=4711 tls=no proxy=127.0.0.1" }))
  end)

  it("takes the header alone: a client's early bytes are its first command", function()
    local c = assert(smtp.connect(proxy_port(), srv))
    finally(function() c:close() end)
    c:send_raw("PROXY TCP6 2001:db8::7 2001:db8::1 1234 25\r\nEHLO early.spec.test\r\n")
    c:expect(220)
    c:expect(250)
    c:send("MAIL FROM:<a@spec.test>"):expect(250, "ip=2001:db8::7 port=1234 local=2001:db8::1:25")
  end)

  it("reads version 2 with its TLS TLVs into s.proxy", function()
    local ssl = string.char(0x01 | 0x02) .. "\0\0\0\0" .. tlv(0x21, "TLSv1.3")
      .. tlv(0x23, "TLS_AES_256_GCM_SHA384") .. tlv(0x22, "alice")
    local hdr = v2("192.0.2.8", 999, "198.51.100.1", 587,
      tlv(0x20, ssl) .. tlv(0x02, "mx.example.org") .. tlv(0xE1, "ignored"))
    local c = assert(smtp.connect(proxy_port(), srv))
    finally(function() c:close() end)
    c:send_raw(hdr)
    c:expect(220)
    c:send("EHLO client.spec.test"):expect(250)
    c:send("MAIL FROM:<a@spec.test>")
      :expect(250, "ip=192.0.2.8 port=999 local=198.51.100.1:587 via=127.0.0.1 v2 local=false"
        .. " authority=mx.example.org ptls=TLSv1.3/TLS_AES_256_GCM_SHA384 cn=alice verified=true")
  end)

  it("keeps the proxy's own address for a LOCAL header (health checks)", function()
    local c = assert(smtp.connect(proxy_port(), srv))
    finally(function() c:close() end)
    c:send_raw(SIG .. "\x20\x00\0\0")
    c:expect(220)
    c:send("HELO check.spec.test"):expect(250)
    c:send("MAIL FROM:<>"):expect(250, "ip=127.0.0.1 .* via=127.0.0.1 v2 local=true")
  end)

  it("closes without a greeting on a malformed header, and logs why once", function()
    for _, bad in ipairs({ "PROXY TCP4 192.0.2.7 198.51.100.1 4711 99999\r\n",
      "EHLO x\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", SIG .. "\x21\x12\0\12" .. ("\0"):rep(12),
      "PROXY UNKNOWN " .. ("x"):rep(200) .. "\r\n" }) do
      local c = assert(smtp.connect(proxy_port(), srv))
      c:send_raw(bad)
      assert_closed_silently(c)
      c:close()
    end
    assert(srv:wait_log({ "proxy.refuse peer=127.0.0.1", "reason=invalid",
      'error="bad version 1 port"' }))
    assert(srv:wait_log({ "proxy.refuse", "reason=invalid", 'error="no PROXY header"' }))
    assert(srv:wait_log({ "proxy.refuse", "reason=invalid", 'error="header too long"' }))
    assert(srv:wait_log({ "proxy.refuse", "reason=invalid", 'error="not a stream"' }))
    -- Counted once each, as refused connections.
    assert.are.equal(5, proxy_refusals(srv))
  end)

  it("closes a connection whose header is too slow", function()
    local c = assert(smtp.connect(proxy_port(), srv))
    finally(function() c:close() end)
    c:send_raw("PROXY TCP4 192.0.2.7 ")
    assert_closed_silently(c)
    assert(srv:wait_log({ "proxy.refuse peer=127.0.0.1", "reason=timeout" }))
  end)

  it("says nothing to an address outside --proxy-trusted", function()
    local c = assert(smtp.connect(proxy_port(), srv, { bind = "127.0.0.2" }))
    finally(function() c:close() end)
    c:send_raw("PROXY TCP4 192.0.2.7 198.51.100.1 4711 25\r\n")
    assert_closed_silently(c)
    assert(srv:wait_log({ "proxy.refuse peer=127.0.0.2", "reason=untrusted" }))
  end)

  it("counts --max-per-ip by the client the header names", function()
    local a, b, d
    finally(function()
      for _, c in ipairs({ a, b, d }) do c:close() end
    end)
    a = assert(smtp.connect(proxy_port(), srv))
    a:send_raw("PROXY TCP4 192.0.2.20 198.51.100.1 1 25\r\n")
    a:expect(220)
    b = assert(smtp.connect(proxy_port(), srv))
    b:send_raw("PROXY TCP4 192.0.2.20 198.51.100.1 2 25\r\n")
    b:expect(421, "4.7.0")
    d = assert(smtp.connect(proxy_port(), srv))
    d:send_raw("PROXY TCP4 192.0.2.21 198.51.100.1 3 25\r\n")
    d:expect(220)
  end)

  it("interoperates with swaks's PROXY versions 1 and 2, and implicit TLS after it", function()
    local r = tlskit.swaks({ "--server", "127.0.0.1:" .. proxy_port(), "--proxy-version", "1",
      "--proxy-family", "TCP4", "--proxy-source", "192.0.2.30", "--proxy-source-port", "5000",
      "--proxy-dest", "198.51.100.2", "--proxy-dest-port", "25",
      "--from", "a@spec.test", "--to", "b@spec.test", "--quit-after", "MAIL" })
    assert.are.equal(0, r.status, r.output)
    assert.matches("ip=192.0.2.30 port=5000 local=198.51.100.2:25", r.output, 1, true)
    r = tlskit.swaks({ "--server", "127.0.0.1:" .. tls_proxy_port(), "--tlsc",
      "--proxy-version", "2", "--proxy-family", "AF_INET", "--proxy-protocol", "STREAM",
      "--proxy-source", "192.0.2.31", "--proxy-source-port", "5001",
      "--proxy-dest", "198.51.100.2", "--proxy-dest-port", "465",
      "--from", "a@spec.test", "--to", "b@spec.test", "--quit-after", "MAIL" })
    assert.are.equal(0, r.status, r.output)
    assert.matches("ip=192.0.2.31 port=5001 local=198.51.100.2:465 via=127.0.0.1 v2", r.output,
      1, true)
    assert.matches("tls=TLSv1.[23]", r.output)
    assert(srv:wait_log({ "smtp.connect peer=192.0.2.31 port=5001 tls=implicit proxy=127.0.0.1" }))
  end)

  it("leaves the plain listener alone: a PROXY line there is just a bad command", function()
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    c:send("PROXY TCP4 192.0.2.7 198.51.100.1 4711 25"):expect(500)
    c:send("EHLO client.spec.test"):expect(250)
    c:send("MAIL FROM:<a@spec.test>"):expect(250, "ip=127.0.0.1 .* via=-")
  end)
end)

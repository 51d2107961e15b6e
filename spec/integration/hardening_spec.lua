-- Hostile clients at the protocol level: pipelined floods that fill the
-- output (no stall), half-closed clients (every reply still arrives), bare
-- LF in commands (never split, never run), HELO names with control
-- characters, replies too long for the wire (never cut), the codes that
-- alone start TLS or authenticate, AUTH mechanism names and over-long SASL
-- lines, and what STARTTLS forgets. Hostile *policies* are in
-- hostile_spec.lua.
local server = require "server"
local smtp = require "smtp"
local tlskit = require "tlskit"
local cjson = require "cjson"

local PIPELINE = server.source_dir() .. "/spec/fixtures/clients/pipeline.py"

local function session(srv)
  local c = assert(smtp.connect(srv.port, srv))
  c:expect(220)
  return c
end

-- Runs the pipelining client with payload; returns its JSON report.
local function pipeline(srv, payload, want, mode)
  local dir = server.mkdtemp()
  finally(function() server.rmtree(dir) end)
  server.write_file(dir .. "/payload", payload)
  local status, out = server.sh("timeout -s KILL 90 python3 " .. server.quote(PIPELINE) .. " "
    .. srv.port .. " " .. server.quote(dir .. "/payload") .. " " .. want .. " " .. (mode or ""))
  assert.are.equal(0, status, out)
  local ok, r = pcall(cjson.decode, out)
  assert.is_true(ok, out)
  return r
end

-- With --max-errors 0: these floods are about every reply arriving, not
-- about the error limit (limits_spec shows that one cutting a flood short).
describe("pipelined floods #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ args = { "--max-errors", "0" }, script_source = [[
      return {
        on_rcpt = function(s, rcpt)
          if rcpt:find("^no") then
            return 550, { "5.7.1 not this one", "5.7.1 nor later" }
          end
        end,
      }
    ]] }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it("answers 100,000 unknown commands sent at once, then a NOOP", function()
    local r = pipeline(srv, ("X\r\n"):rep(100000) .. "NOOP\r\n", 100001)
    assert.is_nil(r.error, cjson.encode(r))
    assert.are.equal(100001, r.replies, cjson.encode(r))
    assert.are.equal(100000, r.codes["500"])
    assert.matches("^250 2%.0%.0", r.last)
  end)

  it("answers 5,000 pipelined RCPTs rejected with two-line replies", function()
    local cmds = { "EHLO flood.spec.test", "MAIL FROM:<a@spec.test>" }
    for i = 1, 5000 do cmds[#cmds + 1] = "RCPT TO:<no" .. i .. "@spec.test>" end
    cmds[#cmds + 1] = "QUIT"
    local r = pipeline(srv, table.concat(cmds, "\r\n") .. "\r\n", 5003)
    assert.is_nil(r.error, cjson.encode(r))
    assert.are.equal(5003, r.replies, cjson.encode(r))
    assert.are.equal(5000, r.codes["550"])
    assert.matches("^221 ", r.last)
  end)
end)

describe("half-closed clients #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ script_source = [[
      local luamta = require "luamta"
      return {
        on_rcpt = function(s, rcpt) luamta.sleep(0.3) end,
        on_message = function(s, msg) luamta.sleep(0.3) return 250, "2.0.0 kept " .. msg.size end,
      }
    ]] }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it("gets every reply when it shuts down its side while on_rcpt sleeps", function()
    local r = pipeline(srv, "EHLO half.spec.test\r\nMAIL FROM:<a@spec.test>\r\n"
      .. "RCPT TO:<b@spec.test>\r\nRSET\r\nQUIT\r\n", 5, "halfclose")
    assert.is_nil(r.error, cjson.encode(r))
    assert.are.equal(5, r.replies, cjson.encode(r))
    assert.matches("^221 ", r.last)
    assert.is_true(r.closed)
  end)

  it("gets the message accepted when it shuts down after the final dot and QUIT", function()
    local r = pipeline(srv, "EHLO half.spec.test\r\nMAIL FROM:<a@spec.test>\r\n"
      .. "RCPT TO:<b@spec.test>\r\nDATA\r\nSubject: half\r\n\r\nbody\r\n.\r\nQUIT\r\n", 6,
      "halfclose")
    assert.is_nil(r.error, cjson.encode(r))
    assert.are.equal(6, r.replies, cjson.encode(r))
    assert.are.equal(1, r.codes["354"])
    assert.matches("^221 ", r.last)
    -- 23 octets and the server's Received: field.
    assert.truthy(srv:wait_log("result=accept size=%d%d%d+ rcpts=1"), srv:log_tail(20))
  end)

  it("abandons a message cut short by the close (no final dot)", function()
    local accepted = srv:count_log("result=accept")
    local closed = srv:count_log("reason=peer_closed")
    local r = pipeline(srv, "EHLO half.spec.test\r\nMAIL FROM:<a@spec.test>\r\n"
      .. "RCPT TO:<b@spec.test>\r\nDATA\r\nSubject: cut\r\n\r\nhalf a mess", 4, "halfclose")
    assert.are.equal(4, r.replies, cjson.encode(r))
    assert.are.equal(1, r.codes["354"])
    assert.is_true(r.closed)
    assert.truthy(srv:wait_log("reason=peer_closed", nil, closed + 1))
    assert.are.equal(accepted, srv:count_log("result=accept"))
  end)
end)

describe("bare LF in commands #integration", function()
  local srv, lenient
  lazy_setup(function()
    srv = assert(server.start({}))
    lenient = assert(server.start({ args = { "--bare-lf", "fix" } }))
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    if lenient then lenient:stop() end
  end)

  it("answers a command line ending in a bare LF with 500 5.5.2 and closes, running nothing",
    function()
      local c = session(srv)
      finally(function() c:close() end)
      c:send("EHLO lf.spec.test"):expect(250)
      c:send_raw("NOOP x\nMAIL FROM:<a@b.c>\r\n")
      c:expect(500, "5.5.2")
      c:expect_closed()
      assert.truthy(srv:wait_log("smtp.bare_lf"))
      assert.are.equal(0, srv:count_log("smtp.mail qid"))
    end)

  it("takes LF-terminated commands as lines under --bare-lf fix", function()
    local c = session(lenient)
    finally(function() c:close() end)
    c:send_raw("EHLO lf.spec.test\nNOOP\n")
    c:expect(250)
    c:expect(250, "2.0.0")
    c:send("MAIL FROM:<a@spec.test>"):expect(250, "2.1.0")
  end)

  it("refuses HELO and EHLO names with control characters or invalid UTF-8 with 501", function()
    local c = session(srv)
    finally(function() c:close() end)
    c:send("HELO bad\1name"):expect(501, "5.5.2")
    c:send("EHLO bad\27[31mname"):expect(501, "5.5.2")
    c:send("EHLO bad\255\254name"):expect(501, "5.5.2")
    c:send("EHLO caf\195\169.spec.test"):expect(250)
  end)
end)

describe("replies too long for the wire #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ script_source = [[
      local function lines(n, len)
        local t = {}
        for i = 1, n do t[i] = ("%03d"):format(i) .. ("x"):rep(len - 3) end
        return t
      end
      return {
        on_helo = function(s, name)
          if name == "long" then return 250, lines(16, 500) end
          return 250, lines(12, 500)
        end,
        on_ehlo = function(s, name, keywords)
          for i = 1, 40 do keywords[#keywords + 1] = "X-LONG" .. i .. " " .. ("k"):rep(400) end
        end,
      }
    ]] }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it("sends a long multi-line reply that fits whole", function()
    local c = session(srv)
    finally(function() c:close() end)
    local r = c:send("HELO fits"):expect(250)
    assert.are.equal(12, #r.lines)
    c:send("NOOP"):expect(250)
  end)

  it("answers 451 4.3.0 instead of a reply over 8 KiB, and logs it", function()
    local c = session(srv)
    finally(function() c:close() end)
    c:send("HELO long"):expect(451, "4.3.0")
    c:send("NOOP"):expect(250)
    assert.truthy(srv:wait_log("the whole reply at most 8192 bytes"))
  end)

  it("drops EHLO keywords past the limit: the reply still ends with a final line", function()
    local c = session(srv)
    finally(function() c:close() end)
    local r = c:send("EHLO many.spec.test"):expect(250)
    assert.is_true(#r.raw <= 8192, "reply of " .. #r.raw .. " bytes")
    assert.is_true(#r.lines < 40 + 8)
    c:send("NOOP"):expect(250)
    assert.truthy(srv:wait_log("keywords past the reply size limit dropped"))
  end)
end)

describe("only 220 starts TLS, only 235 authenticates #integration", function()
  local pki, srv
  lazy_setup(function()
    pki = tlskit.pki()
    srv = assert(server.start({ script_source = [[
      local luamta = require "luamta"
      return {
        on_starttls = function(s)
          if s.vars.paced then
            return luamta.reply(220, { "2.0.0 one", "2.0.0 two", "2.0.0 go ahead" },
              { line_delay = 0.2 })
          end
          return 250, "2.0.0 not a start"
        end,
        on_auth = function(s, mech, user, pass) return 250, "2.7.0 not a success" end,
        verbs = { XPACE = function(s) s.vars.paced = true return 250 end },
      }
    ]], args = tlskit.server_args(pki, nil, { "--auth-plaintext" }) }))
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    if pki then pki:cleanup() end
  end)

  it("answers STARTTLS 451 when on_starttls returns 250, and stays in plaintext", function()
    local c = session(srv)
    finally(function() c:close() end)
    c:send("EHLO tls.spec.test"):expect(250)
    c:send("STARTTLS"):expect(451, "4.3.0")
    c:send("NOOP"):expect(250, "2.0.0")
    assert.truthy(srv:wait_log("reply code 250 does not fit the verb"))
  end)

  it("answers AUTH 451 when on_auth returns 250, and does not authenticate", function()
    local c = session(srv)
    finally(function() c:close() end)
    c:send("EHLO auth.spec.test"):expect(250)
    c:send("AUTH PLAIN AGFsaWNlAHMzY3JldA=="):expect(451, "4.3.0")
    c:send("AUTH PLAIN AGFsaWNlAHMzY3JldA=="):expect(451, "4.3.0")
    assert.are.equal(0, srv:count_log("smtp.auth result=accept"))
  end)

  it("finishes a paced multi-line 220, then the handshake", function()
    local c = session(srv)
    finally(function() c:close() end)
    c:send("EHLO tls.spec.test"):expect(250)
    c:send("XPACE"):expect(250)
    local r = c:send("STARTTLS"):expect(220)
    assert.are.equal(3, #r.lines)
    local o, out = tlskit.takeover(c, { ca = pki.ca_cert, lines = { "EHLO tls.spec.test" } })
    assert.is_table(o, tostring(out))
    assert.is_nil(o.error, cjson.encode(o))
    assert.matches("^250", o.replies[1])
  end)
end)

describe("AUTH mechanism names and SASL lines #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ script_source = [[
      return { on_auth = function(s, mech, user, pass) return user == "alice" and pass == "pw" end }
    ]], args = { "--auth-plaintext" } }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it("answers 504 to an unknown mechanism of up to 20 characters, 501 beyond", function()
    local c = session(srv)
    finally(function() c:close() end)
    c:send("EHLO auth.spec.test"):expect(250)
    c:send("AUTH ABCDEFGHIJKLMNOPQ"):expect(504, "5.5.4")
    c:send("AUTH " .. ("A"):rep(20)):expect(504, "5.5.4")
    c:send("AUTH " .. ("A"):rep(21)):expect(501, "5.5.4")
    c:send("AUTH BAD/MECH"):expect(501, "5.5.4")
  end)

  it("ends the exchange on a SASL response over the line limit: the next command is a command",
    function()
      local c = session(srv)
      finally(function() c:close() end)
      c:send("EHLO auth.spec.test"):expect(250)
      c:send("AUTH PLAIN"):expect(334)
      c:send(("QUFB"):rep(3300)):expect(500, "5.5.6")
      c:send("NOOP"):expect(250, "2.0.0")
      -- AGFsaWNlAHB3 is "\0alice\0pw"
      c:send("AUTH PLAIN AGFsaWNlAHB3"):expect(235, "2.7.0")
    end)
end)

describe("STARTTLS forgets what was learnt in plaintext #integration", function()
  local pki, srv
  lazy_setup(function()
    pki = tlskit.pki()
    srv = assert(server.start({ script_source = [[
      return {
        on_connect = function(s) s.vars.from_connect = "kept" s.max_size = 5000 end,
        on_ehlo = function(s, name)
          if not s.tls then s.vars.from_plaintext = name s.max_size = 100 end
        end,
        verbs = {
          XVARS = function(s)
            return 250, "2.0.0 connect=" .. tostring(s.vars.from_connect) .. " plaintext="
              .. tostring(s.vars.from_plaintext) .. " max_size=" .. s.max_size
          end,
        },
      }
    ]], args = tlskit.server_args(pki) }))
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    if pki then pki:cleanup() end
  end)

  it("resets s.vars and s.max_size to what on_connect left", function()
    local c = session(srv)
    finally(function() c:close() end)
    c:send("EHLO plain.spec.test"):expect(250)
    c:send("XVARS"):expect(250, "connect=kept plaintext=plain.spec.test max_size=100")
    c:send("STARTTLS"):expect(220)
    local o, out = tlskit.takeover(c, { ca = pki.ca_cert, lines = { "EHLO tls.spec.test", "XVARS" } })
    assert.is_table(o, tostring(out))
    assert.is_nil(o.error, cjson.encode(o))
    assert.are.equal("250 2.0.0 connect=kept plaintext=nil max_size=5000\r\n", o.replies[2])
  end)
end)

describe("message data held in memory (--max-data-memory) #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ args = { "--max-data-memory", "300000" } }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  local function in_data(name, size)
    local c = session(srv)
    c:send("EHLO " .. name .. ".spec.test"):expect(250)
    c:send("MAIL FROM:<a@spec.test>" .. (size and (" SIZE=" .. size) or "")):expect(250)
    c:send("RCPT TO:<b@spec.test>"):expect(250)
    return c
  end
  local line = ("x"):rep(998) .. "\r\n"

  it("refuses DATA with 452 4.3.1 when the budget cannot take the announced SIZE, drops a "
    .. "message that outgrows it, and takes both once memory is free again", function()
    local a, b, c
    finally(function()
      for _, x in ipairs({ a, b, c }) do x:close() end
    end)
    a = in_data("a")
    a:send("DATA"):expect(354)
    a:send_raw(line:rep(100)) -- about 100 kB held, the final dot still to come
    b = in_data("b", 200000)
    b:send("DATA"):expect(452, "4.3.1")
    assert.truthy(srv:wait_log("smtp.data_memory result=refused"))

    c = in_data("c")
    c:send("DATA"):expect(354)
    c:send_raw(line:rep(200) .. ".\r\n"):expect(452, "4.3.1")
    assert.truthy(srv:wait_log("smtp.data_memory result=dropped"))
    c:send("NOOP"):expect(250)

    a:send_raw(".\r\n"):expect(250, "2.0.0")
    b:send("DATA"):expect(354)
    b:send_raw(line:rep(150) .. ".\r\n"):expect(250, "2.0.0")
    c:send("MAIL FROM:<a@spec.test>"):expect(250)
    c:send("RCPT TO:<b@spec.test>"):expect(250)
    c:send("DATA"):expect(354)
    c:send_raw(line:rep(100) .. ".\r\n"):expect(250, "2.0.0")
  end)
end)

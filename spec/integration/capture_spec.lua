-- The capture mode (--capture DIR, lua/luamta/capture.lua) against the real
-- binary, driven through the public test kit (require "luamta.testing"):
-- what is stored for an accepted message (envelope, peer, HELO, TLS, AUTH
-- user, the reply the client got, the exact bytes), what is not stored
-- (rejections, failed deliveries, dropped connections), a capture that
-- fails (451, the client keeps the message), workers and reloads.
local testing = require "luamta.testing"
local tlskit = require "tlskit"

local BODY = "Subject: %s\r\nFrom: <a@spec.test>\r\n\r\nline one\r\n..leading dot\r\n"

local function body(subject)
  return BODY:format(subject)
end

-- body() as the server stores it: dot-unstuffed.
local function stored(subject)
  return (body(subject):gsub("\r\n%.%.", "\r\n."))
end

-- Inline hooks (shipped as bytecode, so they may use globals such as
-- luamta but no local of this file): the Subject picks the outcome.
local HOOKS = {
  on_rcpt = function(_, rcpt)
    if rcpt:match("^unknown@") then return 550, "5.1.1 No such user" end
  end,
  on_message = function(_, msg)
    local subject = msg:header("Subject") or ""
    if subject == "reject" then return 554, "5.7.1 Not this one" end
    if subject == "tempfail" then return 451, "4.3.0 Later" end
    if subject == "custom" then return 250, { "2.6.0 Stored here", "second line" } end
    if subject == "bye" then return luamta.disconnect(250, "Stored, bye") end
    if subject == "vanish" then return luamta.disconnect() end
    if subject == "error" then error("policy bug") end
    if subject == "header" then msg:prepend_header("X-Policy", "added") end
  end,
}

local function session(srv, helo)
  local c = assert(testing.connect(srv))
  c:expect(220)
  c:send((helo or "EHLO") .. " client.spec.test"):expect(250)
  return c
end

local function count(srv)
  return #srv:messages()
end

describe("capture mode #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(testing.start({ capture = true, hooks = HOOKS }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it("stores an accepted message with its envelope, peer, HELO and the reply the client got",
    function()
      local before = count(srv)
      local c = session(srv)
      finally(function() c:close() end)
      c:send("MAIL FROM:<a@spec.test> SIZE=100 BODY=8BITMIME"):expect(250)
      c:send("RCPT TO:<b@spec.test>"):expect(250)
      c:send("RCPT TO:<unknown@spec.test>"):expect(550, "5.1.1")
      c:send("RCPT TO:<c@spec.test>"):expect(250)
      c:send("DATA"):expect(354)
      local r = c:send_raw(body("plain") .. ".\r\n"):expect(250, "2.0.0")
      local qid = r.text:match("queued as (%S+)$")
      assert.is_string(qid, r.text)

      local list = srv:messages()
      assert.are.equal(before + 1, #list)
      local m = list[#list]
      assert.are.equal(qid, m.qid)
      assert.are.same({ code = 250, text = r.text }, m.reply)
      assert.are.equal("a@spec.test", m.sender)
      assert.are.same({ "b@spec.test", "c@spec.test" }, m.recipients)
      assert.are.same({ SIZE = "100", BODY = "8BITMIME" }, m.mail_params)
      assert.are.equal("127.0.0.1", m.peer_ip)
      assert.are.equal(c:local_port(), m.peer_port)
      assert.are.equal(srv.port, m.local_port)
      assert.are.equal("client.spec.test", m.helo)
      assert.is_true(m.esmtp)
      assert.is_nil(m.tls)
      assert.is_nil(m.user)
      -- What the client sent, under the server's Received: field.
      local rest, field = testing.unreceived(m.data)
      assert.are.equal(stored("plain"), rest)
      assert.matches("^Received: from client%.spec%.test %(unknown %[127%.0%.0%.1%]%) by ", field)
      assert.matches(" with ESMTP id " .. qid .. "; ", field, 1, true)
      assert.are.equal(#m.data, m.size)
      assert.are.equal(qid .. ".eml", m.eml)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$", m.time)
      assert.are.equal(m.data, testing.read_file(srv.capture_dir .. "/" .. qid .. ".eml"))
    end)

  it("stores nothing for messages the policy rejects or drops, or a policy error", function()
    local before = count(srv)
    local c = session(srv)
    finally(function() c:close() end)
    c:message("a@spec.test", "b@spec.test", body("reject")):expect(554, "5.7.1")
    c:message("a@spec.test", "b@spec.test", body("tempfail")):expect(451, "4.3.0")
    c:message("a@spec.test", "b@spec.test", body("error")):expect(451, "Temporary policy error")
    c:message("a@spec.test", "b@spec.test", body("vanish"))
    c:expect_closed()
    assert.are.equal(before, count(srv))
    -- one .eml per listed message, and nothing else but messages.jsonl
    local files = testing.ls(srv.capture_dir)
    assert.are.equal(before + 1, #files)
  end)

  it("records a custom multi-line reply exactly as the client saw it", function()
    local c = session(srv)
    finally(function() c:close() end)
    local r = c:message("a@spec.test", "b@spec.test", body("custom")):expect(250, "2.6.0")
    assert.are.equal("2.6.0 Stored here\n2.6.0 second line", r.text)
    local list = srv:messages()
    assert.are.same({ code = 250, text = r.text }, list[#list].reply)
  end)

  it("stores a message accepted with luamta.disconnect(250, ...), then the server closes",
    function()
      local before = count(srv)
      local c = session(srv)
      finally(function() c:close() end)
      local r = c:message("a@spec.test", "b@spec.test", body("bye")):expect(250)
      c:expect_closed()
      local list = srv:messages()
      assert.are.equal(before + 1, #list)
      assert.are.same({ code = 250, text = "2.0.0 Stored, bye" }, list[#list].reply)
      assert.are.equal(r.text, list[#list].reply.text)
    end)

  it("stores the message as the policy left it (prepended headers included)", function()
    local c = session(srv)
    finally(function() c:close() end)
    c:message("a@spec.test", "b@spec.test", body("header")):expect(250)
    local list = srv:messages()
    -- The policy's header goes above the server's Received: field.
    local data = list[#list].data
    assert.matches("^X%-Policy: added\r\nReceived: from ", data)
    assert.are.equal("X-Policy: added\r\n" .. stored("header"), testing.unreceived(data))
  end)

  it("records HELO sessions as not ESMTP, and null senders as empty strings", function()
    local c = session(srv, "HELO")
    finally(function() c:close() end)
    c:send("MAIL FROM:<>"):expect(250)
    c:send("RCPT TO:<b@spec.test>"):expect(250)
    c:send("DATA"):expect(354)
    c:send_raw(body("bounce") .. ".\r\n"):expect(250)
    local list = srv:messages()
    local m = list[#list]
    assert.is_false(m.esmtp)
    assert.are.equal("client.spec.test", m.helo)
    assert.are.equal("", m.sender)
    assert.are.same({}, m.mail_params)
  end)

  it("keeps several messages of one session apart, in order", function()
    local before = count(srv)
    local c = session(srv)
    finally(function() c:close() end)
    local qids = {}
    for i = 1, 3 do
      local r = c:message("a@spec.test", "n" .. i .. "@spec.test", body("n" .. i)):expect(250)
      qids[i] = r.text:match("queued as (%S+)$")
    end
    local list = srv:messages()
    assert.are.equal(before + 3, #list)
    for i = 1, 3 do
      local m = list[before + i]
      assert.are.equal(qids[i], m.qid)
      assert.are.same({ "n" .. i .. "@spec.test" }, m.recipients)
      assert.are.equal(stored("n" .. i), testing.unreceived(m.data))
    end
  end)
end)

describe("capture without a policy #integration", function()
  it("captures every message under the default replies", function()
    local srv = assert(testing.start({ capture = true }))
    local c
    -- busted keeps only the last finally() of a test: one for both.
    finally(function() if c then c:close() end; srv:stop() end)
    c = session(srv)
    local r = c:message("a@spec.test", "b@spec.test", body("no policy")):expect(250)
    local m = srv:messages()
    assert.are.equal(1, #m)
    assert.are.same({ code = 250, text = r.text }, m[1].reply)
    assert.are.equal(stored("no policy"), testing.unreceived(m[1].data))
  end)
end)

describe("capture failures #integration", function()
  it("answers 451 4.3.0 Capture failed when the directory is gone, and goes on", function()
    local srv = assert(testing.start({ capture = true }))
    local c
    -- busted keeps only the last finally() of a test: one for both.
    finally(function() if c then c:close() end; srv:stop() end)
    c = session(srv)
    testing.rmtree(srv.capture_dir)
    c:message("a@spec.test", "b@spec.test", body("lost")):expect(451, "4.3.0")
    assert.truthy(srv:wait_log({ "capture.error", "save" }))
    c:send("NOOP"):expect(250)
    -- The directory is back: capturing works again, on the same session.
    assert(os.execute("mkdir " .. testing.quote(srv.capture_dir)))
    c:message("a@spec.test", "b@spec.test", body("again")):expect(250)
    local m = srv:messages()
    assert.are.equal(1, #m)
    assert.are.equal(stored("again"), testing.unreceived(m[1].data))
  end)

  it("creates a missing capture directory", function()
    local top = testing.mkdtemp()
    local dir = top .. "/new"
    local srv = assert(testing.start({ args = { "--capture", dir } }))
    local c
    finally(function() if c then c:close() end; srv:stop(); testing.rmtree(top) end)
    c = session(srv)
    c:message("a@spec.test", "b@spec.test", body("fresh")):expect(250)
    local m = require("luamta.capture").read(dir)
    assert.are.equal(1, #m)
    assert.are.equal(stored("fresh"), testing.unreceived(m[1].data))
  end)

  it("refuses to start when the capture directory cannot be made", function()
    local top = testing.mkdtemp()
    local missing = top .. "/no/such/parent"
    finally(function() testing.rmtree(top) end)
    local srv, err = testing.start({ args = { "--capture", missing } })
    if srv then srv:stop() end
    assert.is_nil(srv)
    assert.matches("--capture " .. missing, err, 1, true)
  end)

  it("does not capture a message whose delivery failed (the client got 451)", function()
    local srv = assert(testing.start({ capture = true,
      policy = "spec/fixtures/policies/deliver.lua" }))
    local c
    -- busted keeps only the last finally() of a test: one for both.
    finally(function() if c then c:close() end; srv:stop() end)
    c = session(srv)
    c:message("a@spec.test", "broken@spec.test", body("broken")):expect(451, "4.3.0")
    c:message("a@spec.test", "maildir@spec.test", body("delivered")):expect(250)
    local m = srv:messages()
    assert.are.equal(1, #m)
    assert.are.same({ "maildir@spec.test" }, m[1].recipients)
    assert.are.equal(1, #testing.ls(srv.dir .. "/Maildir/new"))
  end)
end)

describe("capture with TLS and AUTH #integration", function()
  local pki, srv
  lazy_setup(function()
    pki = tlskit.pki()
    srv = assert(testing.start({ capture = true,
      policy = "spec/fixtures/policies/tls_auth_echo.lua",
      args = tlskit.server_args(pki, nil, { "--hostname", "mx.spec.test" }) }))
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    if pki then pki:cleanup() end
  end)

  it("records the TLS version and cipher and the authenticated user", function()
    local r = tlskit.swaks({ "--server", "127.0.0.1", "--port", tostring(srv.port), "--tls",
      "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "s3cret-pw",
      "--helo", "swaks.spec.test", "--from", "alice@spec.test", "--to", "rcpt@spec.test" })
    assert.are.equal(0, r.status, r.output .. "\n" .. srv:log_tail(20))
    local m = srv:messages()
    assert.are.equal(1, #m)
    assert.are.equal("alice", m[1].user)
    assert.are.equal("TLSv1.2", m[1].tls.version)
    assert.matches("=== TLS started with cipher TLSv1.2:", r.output, 1, true)
    assert.matches("ECDHE", m[1].tls.cipher, 1, true)
    assert.is_nil(m[1].tls.client_cert)
    assert.are.equal("swaks.spec.test", m[1].helo)
    assert.are.same({ "rcpt@spec.test" }, m[1].recipients)
    assert.matches("<~  250 " .. m[1].reply.text:gsub("%p", "%%%0") .. "\n", r.output)
  end)
end)

describe("capture with workers and reloads #integration", function()
  it("collects the messages of every worker in one file", function()
    local srv = assert(testing.start({ capture = true, workers = 2 }))
    finally(function() srv:stop() end)
    local qids = {}
    for i = 1, 6 do
      local c = session(srv)
      local r = c:message("a@spec.test", "w" .. i .. "@spec.test", body("w" .. i)):expect(250)
      c:close()
      qids[r.text:match("queued as (%S+)$")] = i
    end
    local list = srv:messages()
    assert.are.equal(6, #list)
    for _, m in ipairs(list) do
      local i = qids[m.qid]
      assert.is_number(i, "unknown qid " .. tostring(m.qid))
      assert.are.same({ "w" .. i .. "@spec.test" }, m.recipients)
      assert.are.equal(stored("w" .. i), testing.unreceived(m.data))
    end
  end)

  it("keeps capturing after a reload, with the new policy's replies", function()
    local function policy(text)
      return "return { on_message = function() return 250, '" .. text .. "' end }\n"
    end
    local srv = assert(testing.start({ capture = true, script_source = policy("first") }))
    local c
    finally(function() if c then c:close() end; srv:stop() end)
    c = session(srv)
    c:message("a@spec.test", "b@spec.test", body("before")):expect(250, "first")
    c:close()
    testing.write_file(srv.script, policy("second"))
    srv:signal("HUP")
    assert.truthy(srv:wait_log("server.reload result=ok"), srv:log_tail(20))
    c = session(srv)
    c:message("a@spec.test", "b@spec.test", body("after")):expect(250, "second")
    local list = srv:messages()
    assert.are.equal(2, #list)
    assert.are.equal("2.0.0 first", list[1].reply.text)
    assert.are.equal("2.0.0 second", list[2].reply.text)
  end)
end)

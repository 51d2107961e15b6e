-- BDAT (RFC 3030 CHUNKING, and BINARYMIME where a policy offers it): chunks
-- read as counted octets with no dot or line processing, pipelined and
-- byte at a time, replies in order, the size limit and the memory budget
-- across chunks, --data-timeout, the sequence rules against DATA, a
-- client gone mid-chunk, the --bare-lf modes, and a real Postfix (its
-- smtpd's replies to the same transcripts; its client, which sends DATA).
-- The store.lua fixture writes msg.data to a file, so stored bytes are
-- compared exactly.
local server = require "server"
local smtp = require "smtp"

local STORE = "spec/fixtures/policies/store.lua"

local session = smtp.session -- connect, 220, EHLO client.spec.test

local function keywords(reply)
  local set = {}
  for i = 2, #reply.lines do set[reply.lines[i]:upper()] = true end
  return set
end

local function envelope(c, params)
  c:send("MAIL FROM:<a@spec.test>" .. (params and (" " .. params) or "")):expect(250)
  c:send("RCPT TO:<b@spec.test>"):expect(250)
end

-- "BDAT n[ LAST]\r\n" followed by the chunk.
local function chunk(bytes, last)
  return "BDAT " .. #bytes .. (last and " LAST" or "") .. "\r\n" .. bytes
end

local function stored(srv, r)
  local name = r.text:match("stored (msg%-%d+%.eml)")
  assert.truthy(name, "reply does not name a stored file: " .. r.raw)
  return server.read_file(srv.dir .. "/" .. name)
end

local function stored_count(srv)
  local n = 0
  for _, name in ipairs(server.ls(srv.dir)) do
    if name:match("^msg%-%d+%.eml$") then n = n + 1 end
  end
  return n
end

local MESSAGE = "Subject: chunks\r\n\r\n.starts with a dot\r\n.\r\n..\r\nend\r\n"

describe("BDAT with the default --bare-lf reject #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ policy = STORE, args = { "--max-size", "100" } }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it("advertises CHUNKING but not BINARYMIME", function()
    local c = assert(smtp.connect(srv))
    finally(function() c:close() end)
    c:expect(220)
    local kw = keywords(c:send("EHLO client.spec.test"):expect(250))
    assert.is_true(kw.CHUNKING)
    assert.is_nil(kw.BINARYMIME)
    c:send("MAIL FROM:<a@spec.test> BODY=BINARYMIME"):expect(501, "5.5.4")
  end)

  it("stores one LAST chunk as sent: dots and lone-dot lines are content", function()
    local c = session(srv)
    finally(function() c:close() end)
    envelope(c)
    local r = c:send_raw(chunk(MESSAGE, true)):expect(250, "2.0.0")
    assert.are.equal(MESSAGE, stored(srv, r))
    assert(srv:wait_log({ "smtp.bdat", "chunks=1", "size=" .. #MESSAGE }))
    c:send("QUIT"):expect(221)
  end)

  it("answers pipelined chunks in order, then the next transaction", function()
    local c = session(srv)
    finally(function() c:close() end)
    c:send_raw("MAIL FROM:<a@spec.test>\r\nRCPT TO:<b@spec.test>\r\n"
      .. chunk("Subject: p\r\n") .. chunk("\r\nbody") .. chunk("\r\n", true)
      .. "MAIL FROM:<c@spec.test>\r\nRCPT TO:<d@spec.test>\r\n" .. chunk("x\r\n", true)
      .. "QUIT\r\n")
    local rs = c:read_replies(9)
    local want = { 250, 250, 250, 250, 250, 250, 250, 250, 221 }
    for i, code in ipairs(want) do assert.are.equal(code, rs[i].code, rs[i].raw) end
    assert.matches("12 octets received", rs[3].text, 1, true)
    assert.matches("6 octets received", rs[4].text, 1, true)
    assert.are.equal("Subject: p\r\n\r\nbody\r\n", stored(srv, rs[5]))
    assert.are.equal("x\r\n", stored(srv, rs[8]))
  end)

  it("reads chunk data byte at a time", function()
    local c = session(srv)
    finally(function() c:close() end)
    envelope(c)
    c:send_bytewise(chunk("Subject: slow\r\n") .. chunk("\r\n.x\r\n", true), 0.001)
    c:expect(250, "15 octets received")
    local r = c:expect(250, "2.0.0")
    assert.are.equal("Subject: slow\r\n\r\n.x\r\n", stored(srv, r))
  end)

  it("ends the message with BDAT 0 LAST, and takes empty chunks", function()
    local c = session(srv)
    finally(function() c:close() end)
    envelope(c)
    c:send("BDAT 0"):expect(250, "0 octets received")
    c:send_raw(chunk("a\r\n")):expect(250, "3 octets received")
    local r = c:send("BDAT 0 LAST"):expect(250, "2.0.0")
    assert.are.equal("a\r\n", stored(srv, r))
  end)

  it("refuses past the size limit across chunks, reads the rest and goes on", function()
    local c = session(srv)
    finally(function() c:close() end)
    local before = stored_count(srv)
    envelope(c)
    c:send_raw(chunk(("a"):rep(58) .. "\r\n")):expect(250, "60 octets received")
    -- 120 octets: over 100, read to their end and dropped.
    c:send_raw(chunk(("b"):rep(118) .. "\r\n")):expect(552, "5.3.4")
    c:send_raw(chunk("MAIL FROM:<x@y>\r\n", true)):expect(552, "5.3.4")
    -- The transaction is over; the session is not.
    envelope(c)
    local r = c:send_raw(chunk("ok\r\n", true)):expect(250, "2.0.0")
    assert.are.equal("ok\r\n", stored(srv, r))
    assert.are.equal(before + 1, stored_count(srv))
  end)

  it("keeps BDAT and DATA apart in a transaction (503 5.5.1)", function()
    local c = session(srv)
    finally(function() c:close() end)
    envelope(c)
    c:send_raw(chunk("a\r\n")):expect(250)
    c:send("DATA"):expect(503, "5.5.1")
    c:send("RCPT TO:<c@spec.test>"):expect(503, "5.5.1")
    c:send("MAIL FROM:<c@spec.test>"):expect(503, "5.5.1")
    local r = c:send_raw(chunk("b\r\n", true)):expect(250, "2.0.0")
    assert.are.equal("a\r\nb\r\n", stored(srv, r))
    -- Without a transaction: refused, and the chunk is still read.
    c:send_raw(chunk("NOOP\r\n", true)):expect(503, "5.5.1")
    c:send("MAIL FROM:<a@spec.test>"):expect(250)
    c:send_raw(chunk("RSET\r\n")):expect(503, "5.5.1")
    c:send("RCPT TO:<b@spec.test>"):expect(250)
    -- During DATA, a BDAT line is message content.
    c:send("DATA"):expect(354)
    r = c:send_raw(chunk("x\r\n", true) .. ".\r\n"):expect(250)
    assert.are.equal("BDAT 3 LAST\r\nx\r\n", stored(srv, r))
  end)

  it("a transaction that tried DATA gets 503 for BDAT", function()
    local c = session(srv)
    finally(function() c:close() end)
    -- A SIZE= that --max-size refuses makes MAIL fail; use RSET instead:
    -- DATA with no RCPT is out of sequence and leaves no mark.
    c:send("MAIL FROM:<a@spec.test>"):expect(250)
    c:send("DATA"):expect(503, "5.5.1")
    c:send("RCPT TO:<b@spec.test>"):expect(250)
    c:send_raw(chunk("a\r\n", true)):expect(250, "2.0.0")
  end)

  it("closes after a chunk size it cannot read (521 5.5.4, as Postfix)", function()
    for _, bad in ipairs({ "BDAT", "BDAT x", "BDAT 9223372036854775808", "BDAT 5 MORE" }) do
      local c = session(srv)
      envelope(c)
      c:send(bad .. "\r\nNOOP"):expect(521, "5.5.4")
      c:expect_closed()
      c:close()
    end
  end)

  it("delivers nothing when the client leaves mid-chunk", function()
    local before = stored_count(srv)
    local c = session(srv)
    envelope(c)
    c:send_raw(chunk("Subject: first\r\n"))
    c:expect(250)
    c:send_raw("BDAT 100 LAST\r\nonly part of it")
    c.sock:shutdown("send")
    c:expect_closed()
    c:close()
    assert(srv:wait_log({ "smtp.close", "peer_closed" }))
    assert.are.equal(before, stored_count(srv))
  end)

  it("refuses a bare LF at LAST with 550 5.6.0", function()
    local c = session(srv)
    finally(function() c:close() end)
    envelope(c)
    c:send_raw(chunk("a\nb")):expect(250, "3 octets received")
    c:send_raw(chunk("\r\n", true)):expect(550, "5.6.0")
    envelope(c)
    -- A CR at the end of one chunk and LF at the start of the next is CRLF.
    c:send_raw(chunk("a\r")):expect(250)
    local r = c:send_raw(chunk("\nb\r\n", true)):expect(250)
    assert.are.equal("a\r\nb\r\n", stored(srv, r))
    -- A CR at the very end of the message is bare.
    envelope(c)
    c:send_raw(chunk("a\r\nb\r", true)):expect(550, "5.6.0")
  end)
end)

describe("BDAT under --data-timeout and --max-data-memory #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ policy = STORE, args = { "--timeout", "60", "--data-timeout",
      "1", "--max-data-memory", "200000" } }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it("answers a client that stalls mid-chunk with 421 4.4.2 and delivers nothing", function()
    local c = session(srv)
    finally(function() c:close() end)
    envelope(c)
    c:send_raw("BDAT 50 LAST\r\nSubject: stalled\r\n")
    c:expect(421, "4.4.2")
    c:expect_closed()
    assert.are.equal(0, stored_count(srv))
  end)

  it("counts chunks against the memory budget: 452 4.3.1, the rest read", function()
    -- Two messages of 100000 bytes held in memory at once (a store grows
    -- by doubling: 131072 each) pass 200000: the second is dropped at
    -- once, its chunks still read, and every one of them answered 452.
    local c = session(srv)
    local d = session(srv)
    finally(function() c:close(); d:close() end)
    envelope(c)
    envelope(d)
    local big = ("x"):rep(998) .. "\r\n"
    c:send_raw(chunk(big:rep(100))):expect(250, "100000 octets received")
    d:send_raw(chunk(big:rep(100))):expect(452, "4.3.1")
    d:send_raw(chunk(big:rep(10), true)):expect(452, "4.3.1")
    local r = c:send_raw(chunk("end\r\n", true)):expect(250, "2.0.0")
    assert.are.equal(100005, #stored(srv, r))
    assert(srv:wait_log({ "smtp.data_memory", "result=dropped" }))
    -- The transaction is over, the session is not.
    d:send("RSET"):expect(250)
  end)
end)

for _, mode in ipairs({ { "fix", "a\r\nb\r\nc\r\n" }, { "allow", "a\nb\rc\r\n" } }) do
  describe("BDAT with --bare-lf " .. mode[1] .. " #integration", function()
    local srv
    lazy_setup(function()
      srv = assert(server.start({ policy = STORE, args = { "--bare-lf", mode[1] } }))
    end)
    lazy_teardown(function() if srv then srv:stop() end end)

    it("stores bare LF and CR as DATA would", function()
      local c = session(srv)
      finally(function() c:close() end)
      envelope(c)
      c:send_raw(chunk("a\nb")):expect(250)
      local r = c:send_raw(chunk("\rc\r\n", true)):expect(250)
      assert.are.equal(mode[2], stored(srv, r))
    end)
  end)
end

describe("BDAT and the policy #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ script_source = [[
local dir = os.getenv("LUAMTA_TEST_DIR")
local n = 0
return {
  on_ehlo = function(s, name, kw)
    if name == "binary.test" then kw[#kw + 1] = "BINARYMIME" end
    if name == "plain.test" then
      for i = #kw, 1, -1 do if kw[i] == "CHUNKING" then table.remove(kw, i) end end
    end
  end,
  on_data = function(s)
    if s.helo == "nodata.test" then return 554, "5.7.1 no data from you" end
  end,
  on_message = function(s, msg)
    n = n + 1
    local f = assert(io.open(dir .. "/seen-" .. n, "wb"))
    f:write(string.format("state=%s size=%d subject=%s rcpts=%d\n", s.state, msg.size,
      msg:header("Subject") or "-", #msg.recipients))
    f:write(msg.data)
    f:close()
    return 250, "2.0.0 seen-" .. n
  end,
}
]] }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  local function seen(r)
    local name = r.text:match("(seen%-%d+)")
    assert.truthy(name, r.raw .. srv:log_tail(20))
    return server.read_file(srv.dir .. "/" .. name)
  end

  it("on_message sees the same message as after DATA", function()
    local c = session(srv)
    finally(function() c:close() end)
    local body = "Subject: same\r\nFrom: <a@spec.test>\r\n\r\nhello\r\n"
    local via_data = seen(c:message("a@spec.test", "b@spec.test", body):expect(250))
    envelope(c)
    c:send_raw(chunk(body:sub(1, 10)) .. chunk(body:sub(11), true)):expect(250, "10 octets")
    local via_bdat = seen(c:expect(250))
    assert.matches("^state=data size=%d+ subject=same rcpts=1\n", via_data)
    assert.matches("^state=bdat size=%d+ subject=same rcpts=1\n", via_bdat)
    -- The same, but for the queue id in Received: and the state.
    local function strip(t)
      return (t:gsub("^state=%a+", ""):gsub("id %x+", "id Q"):gsub(";[^\r]*\r\n", ";\r\n", 1))
    end
    assert.are.equal(strip(via_data), strip(via_bdat))
  end)

  it("a refusing on_data drops the first chunk and the session goes on", function()
    local c = session(srv, "nodata.test")
    finally(function() c:close() end)
    envelope(c)
    c:send_raw(chunk("RSET\r\n")):expect(554, "5.7.1")
    c:send("RSET"):expect(250)
  end)

  it("offers BINARYMIME only when on_ehlo adds it; then DATA is refused", function()
    local c = session(srv, "binary.test")
    finally(function() c:close() end)
    local kw = keywords(c:send("EHLO binary.test"):expect(250))
    assert.is_true(kw.BINARYMIME and kw.CHUNKING)
    envelope(c, "BODY=BINARYMIME")
    c:send("DATA"):expect(503, "5.5.1")
    local r = c:send_raw(chunk("Subject: bin\r\n\r\n\0\1\2\r\n", true)):expect(250)
    assert.truthy(seen(r):find("\0\1\2\r\n", 1, true))
  end)

  it("without CHUNKING offered, BDAT is 502 and its chunk is skipped", function()
    local c = session(srv, "plain.test")
    finally(function() c:close() end)
    envelope(c)
    c:send_raw(chunk("QUIT\r\n", true)):expect(502, "5.5.1")
    c:send("RSET"):expect(250)
  end)
end)

-- Postfix 3.7's smtpd speaks BDAT, its smtp client does not (its changelog:
-- "The SMTP server is the only program that knows the difference between
-- mail received with BDAT or DATA"): relaying to luamta it sends DATA even
-- though CHUNKING is offered. So the real Postfix checks two things: that
-- offering CHUNKING changes nothing for such a client, and that luamta
-- answers a BDAT transcript as Postfix's own smtpd does.
describe("BDAT next to a real Postfix #integration", function()
  local postfix = require "postfix"
  local run_it = postfix.available() and it or pending

  -- The codes of every reply to a transcript sent after EHLO, and whether
  -- the server closed at the end.
  local function codes(port, transcript)
    local c = assert(smtp.connect(port))
    c:expect(220)
    c:send("EHLO client.spec.test"):expect(250)
    c:send_raw(transcript)
    local out = {}
    while true do
      local r = c:read_reply(5)
      if not r then break end
      out[#out + 1] = r.code
    end
    out.closed = c.eof == true
    c:close()
    return out
  end

  run_it("answers a BDAT transcript as Postfix's smtpd does", function()
    local port = server.free_port()
    local p = assert(postfix.start({ port = port, main = {
      mydestination = "x.test", local_transport = "discard", local_recipient_maps = "",
      message_size_limit = 1000 } }))
    local srv = assert(server.start({ policy = STORE, args = { "--max-size", "1000" } }))
    finally(function() srv:stop(); p:stop() end)
    local env = "MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\n"
    local transcripts = {
      -- pipelined chunks, dots and a lone-dot line as content
      env .. chunk("Subject: p\r\n\r\n.\r\n") .. chunk("..x\r\n", true) .. "QUIT\r\n",
      -- out of sequence: refused, the chunk read and dropped
      chunk("NOOP", true) .. env .. chunk("abc\r\n", true) .. "QUIT\r\n",
      -- past the size limit, then a new transaction
      env .. chunk(("a"):rep(1200), true) .. env .. chunk("ok\r\n", true) .. "QUIT\r\n",
      -- a size that cannot be read
      env .. "BDAT x\r\nNOOP\r\n",
    }
    for _, t in ipairs(transcripts) do
      assert.are.same(codes(port, t), codes(srv.port, t), t)
    end
  end)

  run_it("Postfix relays to luamta with CHUNKING offered", function()
    local srv = assert(server.start({ policy = STORE }))
    local port = server.free_port()
    local p = assert(postfix.start({ port = port, main = {
      mydestination = "", relayhost = "[127.0.0.1]:" .. srv.port } }))
    local c
    finally(function()
      if c then c:close() end
      p:stop()
      srv:stop()
    end)
    c = assert(smtp.connect(port))
    c:expect(220)
    c:send("EHLO client.spec.test"):expect(250)
    c:message("alice@spec.test", "bob@far.spec.test",
      "Subject: by postfix\r\nMessage-Id: <bdat.1@spec.test>\r\n\r\n..dot\r\nbye\r\n")
      :expect(250)
    c:send("QUIT"):expect(221)
    assert(p:wait_log("to=<bob@far%.spec%.test>.*status=sent %(250 2%.0%.0 stored"), p:log())
    local files = {}
    for _, name in ipairs(server.ls(srv.dir)) do
      if name:match("^msg%-%d+%.eml$") then files[#files + 1] = name end
    end
    assert.are.equal(1, #files)
    local got = server.read_file(srv.dir .. "/" .. files[1])
    assert.truthy(got:find("Message-Id: <bdat.1@spec.test>\r\n", 1, true), got)
    assert.truthy(got:find("\r\n\r\n.dot\r\nbye\r\n", 1, true), got)
    -- DATA, not BDAT: see above.
    assert.are.equal(0, srv:count_log({ "smtp.bdat" }))
  end)
end)

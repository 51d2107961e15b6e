-- DATA: dot-stuffing round trips, the end-of-data rule and SMTP smuggling,
-- bare LF / bare CR under each --bare-lf mode, and the size limit. The
-- store.lua fixture writes msg.data to a file, so stored bytes are compared
-- exactly.
local server = require "server"
local smtp = require "smtp"

local STORE = "spec/fixtures/policies/store.lua"

local session = smtp.session -- connect, 220, EHLO client.spec.test

-- Sends a raw body (which must end the message itself) and returns the reply.
local function send_body(c, raw)
  c:send("MAIL FROM:<a@spec.test>"):expect(250)
  c:send("RCPT TO:<b@spec.test>"):expect(250)
  c:send("DATA"):expect(354)
  return c:send_raw(raw)
end

local function stored_name(r)
  return (r.text:match("stored (msg%-%d+%.eml)"))
end

local function stored(srv, r)
  local name = stored_name(r)
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

local SMUGGLING = {
  { "\\n.\\n", "\n.\n" },
  { "\\r\\n.\\n", "\r\n.\n" },
  { "\\n.\\r\\n", "\n.\r\n" },
}

-- A body with a fake end of data followed by a whole smuggled transaction.
local function smuggle(seq)
  return "Subject: outer\r\n\r\nbefore" .. seq
    .. "MAIL FROM:<evil@spec.test>\r\nRCPT TO:<victim@spec.test>\r\nDATA\r\n"
    .. "Subject: smuggled\r\n\r\nevil\r\n.\r\n"
end

describe("DATA with the default --bare-lf reject #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ policy = STORE, args = { "--max-size", "4096" } }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it("delivers dot-stuffed lines unstuffed, byte for byte", function()
    local c = session(srv)
    finally(function() c:close() end)
    local original = ".first line starts with a dot\r\n"
      .. "Subject: dots\r\n\r\n"
      .. ".\r\n..\r\n...\r\n. space\r\n.hidden\r\nnormal\r\n..two\r\n"
      .. "line with . inside\r\n.\r\n"
    local r = c:message("a@spec.test", "b@spec.test", smtp.stuff(original)):expect(250, "2.0.0")
    assert.are.equal(original, stored(srv, r))
    assert.matches("size=" .. #original, r.text, 1, true)
  end)

  it("keeps 8-bit octets and long lines exactly", function()
    local c = session(srv)
    finally(function() c:close() end)
    local bytes = {}
    for b = 128, 255 do bytes[#bytes + 1] = string.char(b) end
    local original = "Subject: =?utf-8?q?8bit?=\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
      .. "J\xc3\xb6rg \xe2\x9c\x93\r\n" .. table.concat(bytes) .. "\r\n"
      .. ("0123456789"):rep(100) .. "\r\n" -- 1000-octet line: DATA lines may be long
    local r = c:message("a@spec.test", "b@spec.test", original, "BODY=8BITMIME")
      :expect(250, "2.0.0")
    assert.are.equal(original, stored(srv, r))
  end)

  it("accepts an empty message", function()
    local c = session(srv)
    finally(function() c:close() end)
    local r = send_body(c, ".\r\n"):expect(250, "size=0")
    assert.are.equal("", stored(srv, r))
  end)

  it("gives the same bytes when the body arrives one octet at a time", function()
    local c = session(srv)
    finally(function() c:close() end)
    local original = "Subject: slow\r\n\r\n.\r\n..x\r\nend\r\n"
    c:send("MAIL FROM:<a@spec.test>"):expect(250)
    c:send("RCPT TO:<b@spec.test>"):expect(250)
    c:send("DATA"):expect(354)
    c:send_bytewise(smtp.stuff(original) .. ".\r\n", 0.001)
    local r = c:expect(250, "2.0.0")
    assert.are.equal(original, stored(srv, r))
  end)

  for _, s in ipairs(SMUGGLING) do
    it("does not end the message at " .. s[1] .. ", rejects it 550 5.6.0, stores nothing",
      function()
        local c = session(srv)
        finally(function() c:close() end)
        local before = stored_count(srv)
        send_body(c, smuggle(s[2])):expect(550, "5.6.0")
        -- exactly one reply: the smuggled MAIL/RCPT/DATA were message text
        c:send("NOOP"):expect(250, "2.0.0")
        assert.is_false(c:has_data())
        assert.are.equal(before, stored_count(srv))
        -- and the session goes on with a good message
        local r = c:message("a@spec.test", "b@spec.test", "Subject: ok\r\n\r\nok\r\n")
          :expect(250, "2.0.0")
        assert.are.equal("Subject: ok\r\n\r\nok\r\n", stored(srv, r))
      end)
  end

  it("rejects a bare CR with 550 5.6.0 and stores nothing", function()
    local c = session(srv)
    finally(function() c:close() end)
    local before = stored_count(srv)
    send_body(c, "Subject: cr\r\n\r\na\rb\r\n.\r\n"):expect(550, "5.6.0")
    assert.are.equal(before, stored_count(srv))
    c:send("NOOP"):expect(250)
  end)

  it("rejects a bare LF line end with 550 5.6.0", function()
    local c = session(srv)
    finally(function() c:close() end)
    send_body(c, "Subject: lf\r\n\r\nunix line\nmore\r\n.\r\n"):expect(550, "5.6.0")
    c:send("NOOP"):expect(250)
  end)

  describe("size limit (--max-size 4096)", function()
    it("advertises SIZE 4096", function()
      local c = assert(smtp.connect(srv))
      finally(function() c:close() end)
      c:expect(220)
      c:send("EHLO client.spec.test"):expect(250, "SIZE 4096")
    end)

    it("refuses MAIL with SIZE= over the limit with 552 5.3.4", function()
      local c = session(srv)
      finally(function() c:close() end)
      c:send("MAIL FROM:<a@spec.test> SIZE=4097"):expect(552, "5.3.4")
      c:send("MAIL FROM:<a@spec.test> SIZE=4096"):expect(250, "2.1.0")
    end)

    it("reads an oversize message to its end, answers 552 5.3.4, stores nothing, goes on",
      function()
        local c = session(srv)
        finally(function() c:close() end)
        local before = stored_count(srv)
        local lines = {}
        for i = 1, 100 do lines[i] = ("line %03d "):format(i) .. ("x"):rep(60) end
        lines[50] = "QUIT" -- must be message text, not a command
        local body = "Subject: big\r\n\r\n" .. table.concat(lines, "\r\n") .. "\r\n"
        assert.is_true(#body > 4096)
        send_body(c, body .. ".\r\n"):expect(552, "5.3.4")
        c:send("NOOP"):expect(250, "2.0.0")
        assert.are.equal(before, stored_count(srv))
        local r = c:message("a@spec.test", "b@spec.test", "Subject: small\r\n\r\nok\r\n")
          :expect(250, "2.0.0")
        assert.are.equal("Subject: small\r\n\r\nok\r\n", stored(srv, r))
      end)

    it("counts the size after unstuffing: 4096 octets pass, 4097 do not", function()
      local c = session(srv)
      finally(function() c:close() end)
      local head = "Subject: edge\r\n\r\n"
      local line = "." .. ("d"):rep(97) .. "\r\n" -- 100 octets, 101 on the wire
      local body = head .. line:rep(40)
      body = body .. ("p"):rep(4096 - #body - 2) .. "\r\n"
      assert.are.equal(4096, #body)
      local r = c:message("a@spec.test", "b@spec.test", smtp.stuff(body)):expect(250, "size=4096")
      assert.are.equal(body, stored(srv, r))
      local over = body:sub(1, -3) .. "p\r\n"
      c:message("a@spec.test", "b@spec.test", smtp.stuff(over)):expect(552, "5.3.4")
    end)
  end)
end)

for _, mode in ipairs({ "fix", "allow" }) do
  describe("DATA with --bare-lf " .. mode .. " #integration", function()
    local srv
    lazy_setup(function()
      srv = assert(server.start({ policy = STORE, args = { "--bare-lf", mode } }))
    end)
    lazy_teardown(function() if srv then srv:stop() end end)

    for _, s in ipairs(SMUGGLING) do
      it("does not end the message at " .. s[1] .. " and stores it "
        .. (mode == "fix" and "with CRLF" or "as received"), function()
          local c = session(srv)
          finally(function() c:close() end)
          local body = smuggle(s[2])
          local r = send_body(c, body):expect(250, "2.0.0")
          local sent = body:sub(1, -4) -- without the final ".\r\n"
          local want
          if mode == "fix" then
            want = "Subject: outer\r\n\r\nbefore\r\n.\r\n"
              .. "MAIL FROM:<evil@spec.test>\r\nRCPT TO:<victim@spec.test>\r\nDATA\r\n"
              .. "Subject: smuggled\r\n\r\nevil\r\n"
          else
            want = sent
          end
          assert.are.equal(want, stored(srv, r))
          -- one message, one reply: nothing was smuggled
          c:send("NOOP"):expect(250, "2.0.0")
          assert.is_false(c:has_data())
        end)
    end

    it((mode == "fix" and "turns" or "keeps") .. " a bare CR and a bare LF "
      .. (mode == "fix" and "into CRLF" or "as received"), function()
        local c = session(srv)
        finally(function() c:close() end)
        local r = send_body(c, "Subject: bare\r\n\r\na\rb\nc\r\n.\r\n"):expect(250, "2.0.0")
        local want = mode == "fix" and "Subject: bare\r\n\r\na\r\nb\r\nc\r\n"
          or "Subject: bare\r\n\r\na\rb\nc\r\n"
        assert.are.equal(want, stored(srv, r))
      end)
  end)
end

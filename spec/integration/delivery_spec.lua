-- Delivery from on_message: Maildir byte for byte (from lua-socket, swaks and
-- Python's smtplib), prepend_header, mbox, and a failing delivery.
local server = require "server"
local smtp = require "smtp"

local DELIVER = "spec/fixtures/policies/deliver.lua"

local session = smtp.session -- connect, 220, EHLO client.spec.test

-- Runs f, then returns the one file that appeared in dir/new and its bytes.
local function new_file(srv, f)
  local dir = srv.dir .. "/Maildir/new"
  local before = {}
  for _, n in ipairs(server.ls(dir)) do before[n] = true end
  f()
  local added = {}
  for _, n in ipairs(server.ls(dir)) do
    if not before[n] then added[#added + 1] = n end
  end
  assert.are.equal(1, #added, "expected exactly one new file in Maildir/new, got "
    .. #added .. "\n" .. srv:log_tail(20))
  return added[1], server.read_file(dir .. "/" .. added[1])
end

local ORIGINAL = ".starts with a dot\r\n"
  .. "Subject: delivery\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
  .. "..two dots\r\n.\r\nFrom here\r\nJ\xc3\xb6rg\r\n\r\nlast line\r\n"

describe("Maildir and mbox delivery #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ policy = DELIVER, args = { "--hostname", "mx.spec.test" } }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it("writes the message into Maildir/new byte for byte, leaving tmp/ empty", function()
    local c = session(srv)
    finally(function() c:close() end)
    local name, data = new_file(srv, function()
      c:message("a@spec.test", { "user@spec.test" }, smtp.stuff(ORIGINAL)):expect(250, "2.0.0")
    end)
    -- Every deliverer writes the server's Received: field with the message.
    assert.matches("^Received: from client%.spec%.test ", data)
    assert.are.equal(ORIGINAL, server.unreceived(data))
    assert.matches("^%d+%.M%d+P%d+Q%d+%.", name)
    assert.are.same({}, server.ls(srv.dir .. "/Maildir/tmp"))
    assert.are.same({ "cur", "new", "tmp" }, server.ls(srv.dir .. "/Maildir"))
  end)

  it("gives every message its own file", function()
    local c = session(srv)
    finally(function() c:close() end)
    local n1 = new_file(srv, function()
      c:message("a@spec.test", "user@spec.test", "Subject: 1\r\n\r\none\r\n"):expect(250)
    end)
    local n2 = new_file(srv, function()
      c:message("a@spec.test", "user@spec.test", "Subject: 2\r\n\r\ntwo\r\n"):expect(250)
    end)
    assert.are_not.equal(n1, n2)
  end)

  it("delivers the header added by msg:prepend_header at the top", function()
    local c = session(srv)
    finally(function() c:close() end)
    local _, data = new_file(srv, function()
      c:message("a@spec.test", { "header@spec.test" }, smtp.stuff(ORIGINAL)):expect(250, "2.0.0")
    end)
    assert.matches("^X%-Spec%-Trace: added by spec\r\nReceived: from ", data)
    assert.are.equal("X-Spec-Trace: added by spec\r\n" .. ORIGINAL, server.unreceived(data))
  end)

  it("appends to an mbox with a From_ line, LF line ends and >From quoting", function()
    local c = session(srv)
    finally(function() c:close() end)
    local body1 = "Subject: mbox one\r\n\r\nFrom the start\r\n>From quoted\r\nplain\r\n"
    local body2 = "Subject: mbox two\r\n\r\nsecond\r\n"
    c:message("a@spec.test", { "mbox@spec.test" }, body1):expect(250, "2.0.0")
    c:message("", { "mbox@spec.test" }, body2):expect(250, "2.0.0")
    local mbox = assert(server.read_file(srv.dir .. "/mbox"), "no mbox file")
    local from_re = " %a%a%a %a%a%a [ %d]%d %d%d:%d%d:%d%d %d%d%d%d\n"
    local first, rest = mbox:match("^(From a@spec%.test" .. from_re .. ")(.*)$")
    assert.truthy(first, "bad first From_ line:\n" .. mbox)
    assert.matches("^Received: from client%.spec%.test ", rest)
    rest = server.unreceived(rest)
    local want1 = "Subject: mbox one\n\n>From the start\n>>From quoted\nplain\n\n"
    assert.are.equal(want1, rest:sub(1, #want1))
    rest = rest:sub(#want1 + 1)
    local second, tail = rest:match("^(From MAILER%-DAEMON" .. from_re .. ")(.*)$")
    assert.truthy(second, "bad second From_ line:\n" .. mbox)
    tail = server.unreceived(tail)
    assert.are.equal("Subject: mbox two\n\nsecond\n\n", tail)
  end)

  it("answers 451 4.3.0 when a delivery fails, and the session goes on", function()
    local c = session(srv)
    finally(function() c:close() end)
    local before = #server.ls(srv.dir .. "/Maildir/new")
    c:message("a@spec.test", { "broken@spec.test" }, "Subject: lost\r\n\r\nx\r\n"):expect(451, "4.3.0")
    assert.are.equal(before, #server.ls(srv.dir .. "/Maildir/new"))
    assert.is_nil(server.read_file(srv.dir .. "/plainfile/Maildir"))
    -- the hook saw the error
    assert.truthy(srv:wait_log({ "broken ok=nil", "err=" }))
    local _, data = new_file(srv, function()
      c:message("a@spec.test", { "user@spec.test" }, "Subject: kept\r\n\r\ny\r\n"):expect(250)
    end)
    assert.are.equal("Subject: kept\r\n\r\ny\r\n", server.unreceived(data))
  end)
end)

describe("third-party clients #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ policy = DELIVER, args = { "--hostname", "mx.spec.test" } }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it("delivers a message sent by swaks byte for byte", function()
    -- swaks sends the file with CRLF line ends, dot-stuffed, and ends it with
    -- CRLF . CRLF (so a file without a final newline arrives with one)
    local text = "Subject: from swaks\nX-Client: swaks\n\n.leading dot\n..two dots\nplain\n.\nend"
    local file = srv.dir .. "/swaks.eml"
    server.write_file(file, text)
    local _, data = new_file(srv, function()
      local status, out = server.sh("swaks --server 127.0.0.1:" .. srv.port
        .. " --helo swaks.spec.test --from sender@spec.test --to user@spec.test"
        .. " --data @" .. server.quote(file))
      assert.are.equal(0, status, out)
      assert.matches("<%-  250 2%.0%.0", out)
    end)
    assert.are.equal(smtp.crlf(text) .. "\r\n", server.unreceived(data))
  end)

  it("delivers a message sent by Python's smtplib byte for byte", function()
    local bytes = "Subject: from smtplib\r\nX-Client: python\r\n\r\n"
      .. ".leading dot\r\n..two dots\r\n.\r\n8-bit: \xc3\xa9t\xc3\xa9\r\nend\r\n"
    local msgfile = srv.dir .. "/python.eml"
    server.write_file(msgfile, bytes)
    local script = srv.dir .. "/send.py"
    server.write_file(script, [[
import smtplib, sys
port, path = int(sys.argv[1]), sys.argv[2]
with open(path, "rb") as f:
    data = f.read()
with smtplib.SMTP("127.0.0.1", port, local_hostname="python.spec.test", timeout=30) as s:
    refused = s.sendmail("sender@spec.test", ["user@spec.test"], data)
    assert refused == {}, refused
print("sent")
]])
    local _, data = new_file(srv, function()
      local status, out = server.sh("python3 " .. server.quote(script) .. " " .. srv.port .. " "
        .. server.quote(msgfile))
      assert.are.equal(0, status, out)
      assert.matches("sent", out, 1, true)
    end)
    assert.are.equal(bytes, server.unreceived(data))
  end)
end)

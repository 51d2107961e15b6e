-- CHUNKING (RFC 3030) against a real client that sends BDAT: Debian's Exim,
-- whose smtp transport uses BDAT whenever the server offers CHUNKING (it
-- logs "K" in the delivery line then). Exim submits each message locally
-- and delivers it at once to luamta (spec/helpers/exim.lua). Checked: the
-- delivery went by BDAT on both sides, the stored bytes are Exim's, a
-- message of several chunks arrives whole, a refusal at on_message and the
-- size limit reach Exim as permanent failures, and without CHUNKING in the
-- EHLO reply Exim falls back to DATA.
local server = require "server"
local exim = require "exim"

-- Stores each message as <qid>.eml and answers with the qid and s.state
-- ("bdat" for a message that came by BDAT), which Exim logs as C="...".
-- A Subject with REJECT-ME is refused; an EHLO name starting with
-- "nochunking." gets no CHUNKING. No Received: field of luamta's, so the
-- stored bytes are exactly what Exim sent.
local POLICY = [[
local dir = assert(os.getenv("LUAMTA_TEST_DIR"))
return {
  on_ehlo = function(s, name, kw)
    if name:match("^nochunking%.") then
      for i = #kw, 1, -1 do
        if kw[i] == "CHUNKING" then table.remove(kw, i) end
      end
    end
  end,
  on_data = function(s) s.add_received = false end,
  on_message = function(s, msg)
    if (msg:header("Subject") or ""):find("REJECT-ME", 1, true) then
      return 550, "5.7.1 Refused by the spec policy"
    end
    local f = assert(io.open(dir .. "/" .. msg.qid .. ".eml", "wb"))
    f:write(msg.data)
    f:close()
    return 250, "2.0.0 stored " .. msg.qid .. " state=" .. s.state
  end,
}
]]

-- What the caller gives Exim (LF line ends) as it goes on the wire (CRLF).
local function crlf(text) return (text:gsub("\n", "\r\n")) end

-- From, Date and Message-Id given, so Exim adds only its Received: field.
local function message(subject, body)
  return "From: Alice <alice@spec.test>\nTo: bob@far.spec.test\n"
    .. "Date: Mon, 30 Nov 2026 12:00:00 +0000\nMessage-Id: <" .. subject .. "@spec.test>\n"
    .. "Subject: " .. subject .. "\n\n" .. body
end

-- A body that would be mangled by any dot or line processing: leading dots,
-- a lone-dot line, "BDAT" and "QUIT" as content, 8-bit text.
local BODY = ".leading dot\n.\n..two dots\nBDAT 5 LAST\nQUIT\nUTF-8: gr\xc3\xbc\xc3\x9fe\n\nend\n"

local function send(srv, subject, body, opts)
  opts = opts or {}
  opts.port, opts.to = srv.port, "bob@far.spec.test"
  opts.from, opts.message = "alice@spec.test", message(subject, body)
  local r = exim.send(opts)
  assert.are.equal(0, r.status, r.output .. r.log)
  assert.are.equal("", r.panic)
  return r
end

-- The qid in Exim's delivery line (luamta's reply, logged as C="...") and
-- whether the line has Exim's "K" (delivered with CHUNKING).
local function delivered(r)
  local line = r.log:match("[^\n]*=> bob@far%.spec%.test [^\n]*")
  assert.truthy(line, "no delivery in Exim's log:\n" .. r.log)
  local qid, state = line:match('C="250 2%.0%.0 stored (%x+) state=(%a+)"')
  assert.truthy(qid, line)
  return line, qid, state
end

local function eml_count(srv)
  local n = 0
  for _, name in ipairs(server.ls(srv.dir)) do
    if name:match("%.eml$") then n = n + 1 end
  end
  return n
end

local function stored(srv, qid) return server.read_file(srv.dir .. "/" .. qid .. ".eml") end

-- Exim's Received: field first, then the message as sent.
local function assert_exim_sent(data, sent)
  assert.truthy(data, "nothing stored")
  local received = data:sub(1, #data - #sent)
  assert.are.equal(sent, data:sub(-#sent), "stored bytes differ from what was sent")
  assert.matches("^Received: from root by exim%.spec%.test with local %(Exim [%d.]+%)\r\n", received)
  -- one field: every further line is a continuation, each ends with CRLF
  assert.matches("\r\n$", received)
  for line in received:sub(1, -3):gmatch("\r\n([^\r\n]*)") do
    assert.truthy(line:match("^\t"), received)
  end
end

describe("Exim's smtp transport to luamta #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ script_source = POLICY }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it("is Exim, from Debian's package", function()
    assert.matches("^Exim version 4%.", exim.version())
  end)

  it("delivers with BDAT: Exim logs K, luamta logs the chunks", function()
    local r = send(srv, "chunked", BODY)
    local line, qid, state = delivered(r)
    assert.matches(" K C=", line, nil, true)
    assert.are.equal("bdat", state)
    local logged = assert(srv:wait_log({ "smtp.bdat", "qid=" .. qid, "chunks=%d+" }))
    assert.is_true(tonumber(logged:match("chunks=(%d+)")) >= 1)
    assert(srv:wait_log({ "smtp.message", "qid=" .. qid, "result=accept" }))
  end)

  it("stores exactly what Exim sent: its Received: field, then the message", function()
    local sent = crlf(message("exact", BODY))
    local r = send(srv, "exact", BODY)
    local _, qid = delivered(r)
    local data = stored(srv, qid)
    assert_exim_sent(data, sent)
    assert.are.equal(crlf(BODY), data:match("\r\n\r\n(.*)$"))
    local size = assert(srv:wait_log({ "smtp.bdat", "qid=" .. qid })):match("size=(%d+)")
    assert.are.equal(#data, tonumber(size))
  end)

  it("takes a 300 KiB message in several chunks, whole", function()
    local lines = {}
    for i = 1, 4800 do lines[i] = string.format("%05d %s", i, ("x"):rep(56)) end
    local body = table.concat(lines, "\n") .. "\n" -- 4800 lines of 64 octets with CRLF: 300 KiB
    local r = send(srv, "big", body)
    local line, qid, state = delivered(r)
    assert.matches(" K C=", line, nil, true)
    assert.are.equal("bdat", state)
    local logged = assert(srv:wait_log({ "smtp.bdat", "qid=" .. qid }))
    -- Exim sends its header section in a first chunk (pipelined with MAIL
    -- and RCPT) and the whole body in a second, BDAT n LAST.
    assert.are.equal("2", logged:match("chunks=(%d+)"), logged)
    local data = stored(srv, qid)
    assert_exim_sent(data, crlf(message("big", body)))
    assert.are.equal(307200, #data:match("\r\n\r\n(.*)$"))
  end)

  it("a refusal at on_message is Exim's permanent failure for that message", function()
    local before = eml_count(srv)
    local r = send(srv, "REJECT-ME", BODY)
    assert.matches("%*%* bob@far%.spec%.test R=to_luamta T=to_luamta [^\n]*"
      .. "550 5%.7%.1 Refused by the spec policy", r.log)
    assert.is_nil(r.log:match("=> bob@far"))
    assert(srv:wait_log({ "smtp.hook", "hook=on_message", "code=550" }))
    assert.are.equal(before, eml_count(srv))
  end)

  it("falls back to DATA when on_ehlo withdraws CHUNKING", function()
    local r = send(srv, "nochunking", BODY, { helo = "nochunking.spec.test" })
    local line, qid, state = delivered(r)
    assert.is_nil(line:find(" K ", 1, true), line)
    assert.are.equal("data", state)
    assert(srv:wait_log({ "smtp.message", "qid=" .. qid, "result=accept" }))
    assert.are.equal(0, srv:count_log({ "smtp.bdat", "qid=" .. qid }))
    assert_exim_sent(stored(srv, qid), crlf(message("nochunking", BODY)))
  end)
end)

describe("Exim's BDAT past luamta's --max-size #integration", function()
  local srv
  lazy_setup(function()
    srv = assert(server.start({ script_source = POLICY, args = { "--max-size", "100000" } }))
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it("gets 552 5.3.4 during BDAT and records a permanent failure", function()
    local body = ("y"):rep(78) .. "\n"
    body = body:rep(2000) -- 160000 octets with CRLF
    -- size_addition = -1: no SIZE= on MAIL, so the limit is met while
    -- the chunks arrive rather than at MAIL.
    local r = send(srv, "too-big", body, { transport = { "size_addition = -1" } })
    assert.matches("%*%* bob@far%.spec%.test R=to_luamta T=to_luamta [^\n]*"
      .. "data block: 552 5%.3%.4", r.log)
    assert.is_nil(r.log:match("=> bob@far"))
    assert.are.equal(0, eml_count(srv))
    -- and the same message under the limit goes through on the same server
    r = send(srv, "small", BODY, { transport = { "size_addition = -1" } })
    local line = delivered(r)
    assert.matches(" K C=", line, nil, true)
  end)
end)

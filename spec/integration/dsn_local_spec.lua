-- Success reports (RFC 3461 NOTIFY=SUCCESS, RFC 3464 "Action: delivered")
-- for messages on_message put into mailboxes itself (msg:deliver_maildir,
-- msg:deliver_mbox), with Python's smtplib as the client (and the kit's
-- client for LMTP): the report goes through the queue to the sender's MX
-- (dnsmasq: 127.0.0.3, a capturing luamta) with Original-Envelope-Id,
-- Original-Recipient and the header only; none for NOTIFY without
-- SUCCESS, for a message nothing was written for, for the null sender, for
-- a recipient no deliverer wrote it for, or for an LMTP recipient whose
-- own reply failed; without a usable queue one warning per message.
local server = require "server"
local smtp = require "smtp"
local dnskit = require "dns"
local dsnkit = require "dsnkit"

-- What on_message does is chosen by the Subject's first word.
local POLICY = [[
local root = os.getenv("MAIL_ROOT")
return {
  on_message = function(s, msg)
    local tag = (msg:header("Subject") or ""):match("^(%S+)")
    if tag == "nothing" then return true end
    if tag == "first-only" then
      local to = msg.recipients[1]
      assert(msg:deliver_maildir(root .. "/" .. to, { rcpt = to }))
      return true
    end
    if tag == "mbox" then
      assert(msg:deliver_mbox(root .. "/mbox"))
      return true
    end
    assert(msg:deliver_maildir(root .. "/all")) -- every recipient
    if tag == "lmtp" then
      for _, to in ipairs(msg.recipients) do
        if to:find("^refused") then msg:rcpt_reply(to, 550, "5.1.1 No such user") end
        if to:find("^broken") then msg:deliver_maildir("/proc/none/Maildir", { rcpt = to }) end
      end
    end
    return true
  end,
}
]]

describe("success reports for local deliveries #integration", function()
  local dm, sink, srv, noqueue, tmp, port, lmtp_port

  lazy_setup(function()
    port = dnskit.free_port()
    dm, sink = dsnkit.sender_mx(port)
    tmp = server.mkdtemp()
    srv = assert(server.start({ script_source = POLICY, env = { MAIL_ROOT = tmp .. "/mail" },
      args = { "--resolver", dm:addr(), "--relay-port", tostring(port), "--spool", tmp .. "/spool",
        "--listen-lmtp", "127.0.0.1:0" } }))
    lmtp_port = srv.listeners[2].port
    -- A spool that cannot be made: its parent is a file.
    server.write_file(tmp .. "/file", "")
    noqueue = assert(server.start({ script_source = POLICY,
      env = { MAIL_ROOT = tmp .. "/mail-noqueue" },
      args = { "--resolver", dm:addr(), "--relay-port", tostring(port),
        "--spool", tmp .. "/file/spool" } }))
  end)

  lazy_teardown(function()
    for _, s in ipairs({ srv, noqueue, sink }) do
      if s then s:stop() end
    end
    if dm then dm:stop() end
    if tmp then server.rmtree(tmp) end
  end)

  -- Sends one message through smtplib; returns the replies and the qid of
  -- the accepted message.
  local function send(spec, to)
    local r, out = dsnkit.send((to or srv).port, spec)
    local last = r.replies[#r.replies]
    assert.are.equal(250, last[1], out)
    return r.replies, assert(last[2]:match("queued as (%x+)"), out)
  end

  local function message(subject)
    return "From: alice@sender.spec.test\r\nSubject: " .. subject .. "\r\n\r\nbody of " .. subject
      .. "\r\n"
  end

  -- The report at the sender's MX that quotes subject, parsed.
  local function report(subject)
    return dsnkit.report(sink, subject, "alice@sender.spec.test")
  end

  -- No report for the message qid (subject): the server decides before
  -- the 250 goes out, so its log says so already; and once a later
  -- report has reached the sink, none for subject is there.
  local function no_report(qid, subject)
    assert.are.same({}, srv:log_lines({ "dsn.local qid=" .. qid }))
    local control = "control after " .. subject
    send({ from = "alice@sender.spec.test",
      rcpts = { { "ctl@local.spec.test", { "NOTIFY=SUCCESS" } } }, msg = message(control) })
    report(control)
    for _, m in ipairs(sink:messages()) do
      assert.is_nil(m.data:find("Subject: " .. subject .. "\r\n", 1, true), m.data)
    end
  end

  it("reports a Maildir delivery with NOTIFY=SUCCESS: delivered, ENVID, ORCPT, the header only", function()
    local _, qid = send({ from = "alice@sender.spec.test", mail = { "RET=FULL", "ENVID=LOC+2B1" },
      rcpts = { { "bob@local.spec.test",
        { "NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;b+2Bo@x" } } },
      msg = message("maildir full") })
    assert(srv:wait_log({ "delivery.ok qid=" .. qid, "method=maildir" }, 5))
    assert(srv:wait_log({ "dsn.local qid=" .. qid, "result=queued", "to=<alice@sender.spec.test>",
      "rcpts=1" }, 5))
    local out = report("maildir full")
    assert.truthy(out:find("type=multipart/report;delivery-status\n", 1, true), out)
    assert.truthy(out:find("Subject=Successful Mail Delivery Report\n", 1, true), out)
    assert.truthy(out:find("Original-Envelope-Id=LOC+1\n", 1, true), out)
    assert.truthy(out:find("X-Luamta-Queue-ID=" .. qid .. "\n", 1, true), out)
    assert.truthy(out:find("Original-Recipient=rfc822;b+o@x\n"
      .. "Final-Recipient=rfc822; bob@local.spec.test\nAction=delivered\nStatus=2.0.0\n", 1, true),
      out)
    -- A report without a failure quotes the header only, RET=FULL or not
    -- (RFC 3461 4.3).
    assert.truthy(out:find("third=text/rfc822-headers\n", 1, true), out)
    assert.truthy(out:find("Subject: maildir full", 1, true), out)
    assert.is_nil(out:find("body of maildir full", 1, true), out)
  end)

  it("reports an mbox delivery too, without Original-Recipient when there was no ORCPT", function()
    local _, qid = send({ from = "alice@sender.spec.test", mail = { "RET=HDRS" },
      rcpts = { { "carol@local.spec.test", { "NOTIFY=SUCCESS" } } }, msg = message("mbox one") })
    assert(srv:wait_log({ "delivery.ok qid=" .. qid, "method=mbox" }, 5))
    local out = report("mbox one")
    assert.truthy(out:find("Final-Recipient=rfc822; carol@local.spec.test\nAction=delivered\n"
      .. "Status=2.0.0\n", 1, true), out)
    assert.is_nil(out:find("Original-Recipient", 1, true), out)
    assert.is_nil(out:find("Original-Envelope-Id", 1, true), out)
  end)

  it("sends nothing when NOTIFY has no SUCCESS, or no NOTIFY was given", function()
    local _, qid = send({ from = "alice@sender.spec.test",
      rcpts = { { "dave@local.spec.test", { "NOTIFY=FAILURE" } },
        { "erin@local.spec.test", {} }, { "faye@local.spec.test", { "NOTIFY=NEVER" } } },
      msg = message("failure only") })
    assert(srv:wait_log({ "delivery.ok qid=" .. qid, "method=maildir" }, 5))
    no_report(qid, "failure only")
  end)

  it("sends nothing when the policy accepted without writing the message anywhere", function()
    local _, qid = send({ from = "alice@sender.spec.test",
      rcpts = { { "gus@local.spec.test", { "NOTIFY=SUCCESS" } } }, msg = message("nothing stored") })
    assert(srv:wait_log({ "smtp.message qid=" .. qid, "result=accept" }, 5))
    assert.are.same({}, srv:log_lines({ "delivery.ok qid=" .. qid }))
    no_report(qid, "nothing stored")
  end)

  it("sends nothing to the null sender", function()
    local _, qid = send({ from = "",
      rcpts = { { "hal@local.spec.test", { "NOTIFY=SUCCESS" } } }, msg = message("null sender") })
    assert(srv:wait_log({ "delivery.ok qid=" .. qid, "method=maildir" }, 5))
    no_report(qid, "null sender")
  end)

  it("names only the recipients a deliverer wrote the message for", function()
    local _, qid = send({ from = "alice@sender.spec.test",
      rcpts = { { "ivy@local.spec.test", { "NOTIFY=SUCCESS" } },
        { "jon@local.spec.test", { "NOTIFY=SUCCESS" } } },
      msg = message("first-only two") })
    assert(srv:wait_log({ "delivery.ok qid=" .. qid, "ivy@local.spec.test" }, 5))
    assert(srv:wait_log({ "dsn.local qid=" .. qid, "result=queued", "rcpts=1" }, 5))
    local out = report("first-only two")
    assert.truthy(out:find("Final-Recipient=rfc822; ivy@local.spec.test\nAction=delivered\n", 1,
      true), out)
    assert.is_nil(out:find("jon@", 1, true), out)
  end)

  it("in LMTP, leaves out a recipient whose own reply is a failure", function()
    local c = assert(smtp.connect(lmtp_port, srv))
    finally(function() c:close() end)
    c:expect(220)
    c:send("LHLO client.spec.test"):expect(250)
    c:send("MAIL FROM:<alice@sender.spec.test> ENVID=L1"):expect(250)
    for _, to in ipairs({ "kim", "refused", "broken" }) do
      c:send("RCPT TO:<" .. to .. "@local.spec.test> NOTIFY=SUCCESS"):expect(250)
    end
    c:send("DATA"):expect(354)
    c:send_raw(message("lmtp three") .. ".\r\n")
    local ok = c:expect(250, "2.0.0")
    c:expect(550, "5.1.1")
    c:expect(451, "4.3.0")
    c:send("QUIT"):expect(221)
    local qid = assert(ok.lines[#ok.lines]:match("queued as (%x+)"))
    assert(srv:wait_log({ "dsn.local qid=" .. qid, "result=queued", "rcpts=1" }, 5))
    local out = report("lmtp three")
    assert.truthy(out:find("Original-Envelope-Id=L1\n", 1, true), out)
    assert.truthy(out:find("Final-Recipient=rfc822; kim@local.spec.test\nAction=delivered\n", 1,
      true), out)
    assert.is_nil(out:find("refused@", 1, true), out)
    assert.is_nil(out:find("broken@", 1, true), out)
  end)

  it("without a usable queue, accepts the message and logs the lost report once", function()
    local _, qid = send({ from = "alice@sender.spec.test",
      rcpts = { { "lou@local.spec.test", { "NOTIFY=SUCCESS" } },
        { "max@local.spec.test", { "NOTIFY=SUCCESS" } } },
      msg = message("no queue") }, noqueue)
    assert(noqueue:wait_log({ "delivery.ok qid=" .. qid, "method=maildir" }, 5))
    local line = assert(noqueue:wait_log({ "dsn.local qid=" .. qid, "result=failed" }, 5))
    assert.truthy(line:find("rcpts=2", 1, true), line)
    assert.truthy(line:find("to=<alice@sender.spec.test>", 1, true), line)
    assert.are.equal(1, noqueue:count_log({ "dsn.local qid=" .. qid }))
  end)
end)

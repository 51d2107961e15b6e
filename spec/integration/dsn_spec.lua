-- The bounce dsn_build() writes (core/dsn.c), read by a real MIME parser:
-- Python's email package must find a multipart/report of the
-- delivery-status type with its three parts, the per-message and
-- per-recipient fields of RFC 3464, and the original message (or only its
-- header) intact. core/tests/dsn_print prints the report for its
-- arguments; its path comes from ctest (LUAMTA_DSN_PRINT), or sits next to
-- the luamta binary.
local testing = require "luamta.testing"
local cjson = require "cjson"

local function dsn_print()
  local p = os.getenv("LUAMTA_DSN_PRINT")
  if p and p ~= "" then return p end
  return testing.bin():gsub("[^/]*$", "") .. "dsn_print"
end

-- Reads the report on stdin and prints what the parser found, as JSON.
local PARSE = [==[
import email, json, sys
raw = sys.stdin.buffer.read()
m = email.message_from_bytes(raw)
out = {"type": m.get_content_type(), "report_type": m.get_param("report-type"),
       "defects": [type(d).__name__ for d in m.defects],
       "subject": m["Subject"], "from": m["From"], "to": m["To"],
       "auto": m["Auto-Submitted"], "date": m["Date"], "id": m["Message-ID"],
       "parts": [], "groups": [], "longest": max(len(l) for l in raw.split(b"\r\n"))}
for p in m.get_payload():
    out["parts"].append({"type": p.get_content_type(), "defects": [type(d).__name__ for d in p.defects]})
status = m.get_payload()[1]
for g in status.get_payload():
    out["groups"].append(dict(g.items()))
text = m.get_payload()[0].get_payload(decode=True).decode("ascii")
out["text"] = text
last = m.get_payload()[2]
if last.get_content_type() == "message/rfc822":
    inner = last.get_payload()[0]
    out["original"] = inner.as_bytes(policy=inner.policy.clone(linesep="\r\n")).decode("utf-8", "replace")
    out["original_subject"] = str(inner["Subject"])
else:
    out["original"] = last.get_payload()
print(json.dumps(out))
]==]

local function report(args, original)
  local dir = testing.mkdtemp()
  finally(function() testing.rmtree(dir) end)
  testing.write_file(dir .. "/original", original)
  testing.write_file(dir .. "/parse.py", PARSE)
  local words = { testing.quote(dsn_print()) }
  for _, a in ipairs(args) do words[#words + 1] = testing.quote(a) end
  local status, out = testing.sh(table.concat(words, " ") .. " <" .. testing.quote(dir .. "/original")
    .. " >" .. testing.quote(dir .. "/report") .. " && /usr/bin/python3 "
    .. testing.quote(dir .. "/parse.py") .. " <" .. testing.quote(dir .. "/report"))
  assert.are.equal(0, status, out)
  local ok, r = pcall(cjson.decode, out)
  assert.is_true(ok, out)
  r.raw = testing.read_file(dir .. "/report")
  return r
end

local ORIGINAL = "Received: from a by b; Tue, 14 Nov 2023 22:00:00 +0000\r\n"
  .. "From: <alice@spec.test>\r\nSubject: hello\r\n\r\nHi Bob.\r\n--not-a-boundary\r\n"

describe("bounces read by Python's email package #integration", function()
  it("is a multipart/report with its three parts and the RFC 3464 fields", function()
    local r = report({ "alice@spec.test", "mx.spec.test", "0123456789ABCDEF",
      "bob@spec.test", "failed", "5.1.1", "mx.elsewhere.test", "550 5.1.1 <bob@spec.test>: no such user",
      "carol@spec.test", "failed", "-", "-", "-" }, ORIGINAL)
    assert.are.equal("multipart/report", r.type)
    assert.are.equal("delivery-status", r.report_type)
    assert.are.same({}, r.defects)
    assert.are.same({ { type = "text/plain", defects = {} },
      { type = "message/delivery-status", defects = {} },
      { type = "message/rfc822", defects = {} } }, r.parts)
    assert.are.equal("Undelivered Mail Returned to Sender", r.subject)
    assert.are.equal("Mail Delivery System <MAILER-DAEMON@mx.spec.test>", r.from)
    assert.are.equal("<alice@spec.test>", r.to)
    assert.are.equal("auto-replied", r.auto)
    assert.are.equal("Tue, 14 Nov 2023 23:13:20 +0000", r.date)
    assert.matches("^<[%w%-%.]+@mx%.spec%.test>$", r.id)
    assert.are.same({
      { ["Reporting-MTA"] = "dns; mx.spec.test", ["X-Luamta-Queue-ID"] = "0123456789ABCDEF",
        ["Arrival-Date"] = "Tue, 14 Nov 2023 22:13:20 +0000" },
      { ["Final-Recipient"] = "rfc822; bob@spec.test", Action = "failed", Status = "5.1.1",
        ["Remote-MTA"] = "dns; mx.elsewhere.test",
        ["Diagnostic-Code"] = "smtp; 550 5.1.1 <bob@spec.test>: no such user",
        ["Last-Attempt-Date"] = "Tue, 14 Nov 2023 23:03:20 +0000" },
      { ["Final-Recipient"] = "rfc822; carol@spec.test", Action = "failed", Status = "5.0.0",
        ["Last-Attempt-Date"] = "Tue, 14 Nov 2023 23:03:20 +0000" },
    }, r.groups)
    assert.matches("This is the mail system at host mx.spec.test.", r.text, 1, true)
    assert.matches("<carol@spec.test>: failed (5.0.0)", r.text, 1, true)
    assert.are.equal(ORIGINAL, r.original)
    assert.is_true(r.longest < 998)
  end)

  it("carries a delay, a success, a long multi-line reply and an 8-bit original", function()
    local long = ("451-4.4.1 try again later\r\n"):rep(60) .. "451 4.4.1 " .. ("x"):rep(3000)
    local original = "Subject: \xc3\xa9t\xc3\xa9\r\nContent-Transfer-Encoding: 8bit\r\n\r\nJ\xc3\xb6rg\r\n"
    local r = report({ "alice@spec.test", "mx.spec.test", "Q",
      "bob@spec.test", "delayed", "4.4.1", "mx.elsewhere.test", long,
      "dave@spec.test", "delivered", "2.0.0", "-", "-" }, original)
    assert.are.equal("Delayed Mail (still being retried)", r.subject)
    assert.are.same({}, r.defects)
    assert.are.equal(3, #r.groups)
    assert.are.equal("delayed", r.groups[2].Action)
    assert.are.equal("4.4.1", r.groups[2].Status)
    -- The reply is one field, folded: its lines are one text.
    assert.matches("^smtp; 451%-4%.4%.1 try again later 451%-4%.4%.1 ", r.groups[2]["Diagnostic-Code"])
    assert.are.equal("delivered", r.groups[3].Action)
    assert.is_true(r.longest < 998)
    assert.are.equal(original, r.original)
    assert.matches("Content-Transfer-Encoding: 8bit\r\n", r.raw, 1, true)

    r = report({ "alice@spec.test", "mx.spec.test", "Q", "dave@spec.test", "relayed", "2.0.0", "-", "-" ,
      "erin@spec.test", "delivered", "-", "-", "-" }, ORIGINAL)
    assert.are.equal("Successful Mail Delivery Report", r.subject)
    assert.are.equal("2.0.0", r.groups[3].Status)
  end)

  it("attaches only the header as text/rfc822-headers with -H (RET=HDRS)", function()
    local r = report({ "-H", "alice@spec.test", "mx.spec.test", "Q",
      "bob@spec.test", "failed", "5.1.1", "-", "550 5.1.1 no" }, ORIGINAL)
    assert.are.equal("text/rfc822-headers", r.parts[3].type)
    assert.matches("Subject: hello", r.original, 1, true)
    assert.is_nil(r.original:find("Hi Bob", 1, true))
  end)

  it("picks another boundary when the original holds the first one", function()
    local first = report({ "alice@spec.test", "mx.spec.test", "Q",
      "bob@spec.test", "failed", "5.1.1", "-", "-" }, ORIGINAL)
    local b = first.raw:match('boundary="([^"]+)"')
    assert.is_string(b)
    local evil = ORIGINAL .. "--" .. b .. "\r\nContent-Type: text/plain\r\n\r\nforged part\r\n--" .. b .. "--\r\n"
    local r = report({ "alice@spec.test", "mx.spec.test", "Q",
      "bob@spec.test", "failed", "5.1.1", "-", "-" }, evil)
    assert.are_not.equal(b, r.raw:match('boundary="([^"]+)"'))
    assert.are.equal(3, #r.parts)
    assert.are.equal(evil, r.original)
  end)
end)

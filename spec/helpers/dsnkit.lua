-- dsnkit: what the DSN specs share. A transaction through Python's
-- smtplib, and delivery status notifications (RFC 3464) read by Python's
-- email package, both from spec/fixtures/dsn_smtplib.py (its top says
-- what each prints).
local server = require "server"
local dnskit = require "dns"
local cjson = require "cjson"

local M = {}

local PY = "/usr/bin/python3 " .. server.quote(server.source_dir() .. "/spec/fixtures/dsn_smtplib.py")

-- Where the reports go: dnsmasq gives sender.spec.test the MX
-- mx.sender.spec.test at 127.0.0.3, where a capturing luamta listens on
-- port. Returns the dnsmasq and that server (both to be stopped).
function M.sender_mx(port)
  local dm = dnskit.dnsmasq({
    "--mx-host=sender.spec.test,mx.sender.spec.test,10",
    "--host-record=mx.sender.spec.test,127.0.0.3",
  })
  local sink, err = server.start({ capture = true, listen = { "127.0.0.3:" .. port } })
  if not sink then
    dm:stop()
    error(err)
  end
  return dm, sink
end

-- One transaction to port: spec is { from, mail = {options}, rcpts =
-- { {addr, {options}} }, msg, sendmail }. Returns the decoded JSON
-- ({ features, replies = { {code, text} }, sent }) and the raw output.
function M.send(port, spec)
  local code, out = server.sh(PY .. " send " .. tostring(port) .. " "
    .. server.quote(cjson.encode(spec)))
  assert(code == 0, out)
  return cjson.decode(out), out
end

-- A report's text (m.data of a captured message), parsed: "Name=value"
-- lines, see the fixture.
function M.parse(text)
  local path = os.tmpname()
  server.write_file(path, text)
  local code, out = server.sh(PY .. " parse < " .. server.quote(path))
  os.remove(path)
  assert(code == 0, out)
  return out
end

-- The reports (from the null sender) that capturing server sink holds
-- and that quote subject, oldest first; each must go to sender alone.
function M.reports(sink, subject, sender)
  local out = {}
  for _, m in ipairs(sink:messages()) do
    if m.sender == "" and m.data:find("Subject: " .. subject .. "\r\n", 1, true) then
      assert(#m.recipients == 1 and m.recipients[1] == sender,
        "a report to " .. table.concat(m.recipients, ","))
      out[#out + 1] = m
    end
  end
  return out
end

-- Waits for the n-th (default first) report that quotes subject, and
-- returns it parsed.
function M.report(sink, subject, sender, n, timeout)
  n = n or 1
  local m = server.wait_for("report " .. n .. " of " .. subject, function()
    return M.reports(sink, subject, sender)[n]
  end, timeout or 30)
  return M.parse(m.data)
end

return M

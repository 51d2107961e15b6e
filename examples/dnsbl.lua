-- examples/dnsbl.lua - reject clients listed in DNS blocklists, as
-- Postfix's reject_rbl_client does: at RCPT, a client whose address is
-- listed in any zone of DNSBL_ZONES gets
--   554 5.7.1 Service unavailable; Client host [192.0.2.7] blocked using
--   zen.example; <the list's TXT reason>
-- A zone that cannot be asked now (a temporary DNS failure) does not
-- reject: it is logged and the next zone decides, so a resolver outage
-- does not bounce mail. Accepted messages are discarded.
--
--   DNSBL_ZONES=zen.spamhaus.org,bl.spamcop.net luamta --script examples/dnsbl.lua
--
-- Environment:
--   DNSBL_ZONES    comma-separated DNSBL zones, asked in order (required)
--   DNSBL_TIMEOUT  seconds each lookup may take (default 5)
-- Use --resolver to point the server at a resolver of your own: public
-- lists refuse queries that come through the big public resolvers.
local getenv, tonumber, error = os.getenv, tonumber, error
local format, gsub, sub, gmatch = string.format, string.gsub, string.sub, string.gmatch
local dns = luamta.dns

local zones = {}
for z in gmatch(getenv("DNSBL_ZONES") or "", "[^,%s]+") do zones[#zones + 1] = z end
if #zones == 0 then error("DNSBL_ZONES must name at least one zone") end
local timeout = tonumber(getenv("DNSBL_TIMEOUT") or "5")
if not timeout or timeout <= 0 then error("DNSBL_TIMEOUT must be a number of seconds") end
local opts = { timeout = timeout }

-- A TXT record is the list's text, not ours: keep it printable and short
-- enough for a reply line.
local function printable(s)
  return sub(gsub(s, "[^\32-\126]", "?"), 1, 200)
end

-- The first zone that lists ip: zone, reason; or nil.
local function listed(s, ip)
  for _, zone in ipairs(zones) do
    local hit, codes, reason = dns.rbl(ip, zone, opts)
    if hit then
      s:log(format("dnsbl.listed zone=%s ip=%s code=%s", zone, ip, codes[1] or "?"))
      return zone, reason
    elseif hit == nil then
      -- codes is the error: "servfail", "timeout" or "refused".
      s:log(format("dnsbl.tempfail zone=%s ip=%s error=%s", zone, ip, codes))
    end
  end
  return nil
end

return {
  on_rcpt = function(s, rcpt)
    -- Asked once per session: every recipient gets the same answer.
    local v = s.vars
    if v.dnsbl_checked == nil then
      v.dnsbl_checked = true
      v.dnsbl_zone, v.dnsbl_reason = listed(s, s.peer_ip)
    end
    if v.dnsbl_zone then
      local text = format("5.7.1 Service unavailable; Client host [%s] blocked using %s",
        s.peer_ip, v.dnsbl_zone)
      if v.dnsbl_reason then text = text .. "; " .. printable(v.dnsbl_reason) end
      return 554, text
    end
  end,
}

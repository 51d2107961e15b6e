-- examples/rcpt-check.lua - accept mail only for the local domains listed
-- below; any other recipient gets 550 5.1.1 (so this server is no open relay).
local local_domains = {
  "example.org",
  "mail.example.org",
}

local lower, match = string.lower, string.match

local is_local = {}
for _, d in ipairs(local_domains) do is_local[lower(d)] = true end

return {
  on_rcpt = function(s, rcpt, params)
    local domain = match(rcpt, "@([^@]+)$")
    if not domain or not is_local[lower(domain)] then
      return 550, "5.1.1 Mailbox unavailable"
    end
  end,
}

-- examples/http-rcpt.lua - recipients looked up in a directory over HTTP.
-- For each RCPT, on_rcpt asks $RCPT_LOOKUP_URL with the address as the
-- "rcpt" query parameter (GET <url>?rcpt=alice%40example.org) and
--   200        accepts the recipient,
--   404        rejects it: 550 5.1.1 (no such mailbox),
--   otherwise  defers it: 451 4.3.0, as when the directory cannot be
--              reached or does not answer in time (the client retries).
-- The request waits without holding up other sessions.
--
--   RCPT_LOOKUP_URL=https://directory.example/lookup luamta --script examples/http-rcpt.lua
local url = os.getenv("RCPT_LOOKUP_URL")
if not url or not url:match("^https?://") then
  error("examples/http-rcpt.lua: set RCPT_LOOKUP_URL to the directory's http:// or https:// URL")
end

local TIMEOUT = 5 -- seconds for one lookup

local request, log = luamta.http.request, luamta.log
local byte, format, gsub, find = string.byte, string.format, string.gsub, string.find

local sep = find(url, "?", 1, true) and "&" or "?"

-- RFC 3986 percent-encoding of everything but the unreserved characters.
local function urlencode(s)
  return (gsub(s, "[^%w%-%._~]", function(c) return format("%%%02X", byte(c)) end))
end

return {
  on_rcpt = function(s, rcpt)
    local r, err = request({ url = url .. sep .. "rcpt=" .. urlencode(rcpt), timeout = TIMEOUT })
    if not r then
      log("recipient lookup failed: " .. err)
      return 451, "4.3.0 Recipient lookup failed, try again later"
    end
    if r.status == 200 then return true end
    if r.status == 404 then return 550, "5.1.1 Mailbox unavailable" end
    log("recipient lookup answered " .. r.status)
    return 451, "4.3.0 Recipient lookup failed, try again later"
  end,
}

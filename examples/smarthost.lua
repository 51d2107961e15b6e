-- examples/smarthost.lua - every accepted message is relayed through one
-- smarthost (an ISP's or a mail service's submission server), with
-- STARTTLS required and verified and AUTH when credentials are given:
--
--   SMARTHOST=smtp.example.net:587 SMARTHOST_USER=me SMARTHOST_PASS=secret \
--   luamta --script examples/smarthost.lua --listen 127.0.0.1:25
--
-- Only clients on this host (127.0.0.1, ::1) may send: an app's local
-- relay. $SMARTHOST_TLS may be "may" or "none" for a test smarthost.
local getenv = os.getenv

local spec = getenv("SMARTHOST") or error("smarthost.lua: set SMARTHOST=host:port", 0)
local host, port = spec:match("^%[?([^%]]+)%]?:(%d+)$")
if not host then error("smarthost.lua: SMARTHOST must be host:port", 0) end
port = tonumber(port)
local user, pass = getenv("SMARTHOST_USER"), getenv("SMARTHOST_PASS")
if (user == nil) ~= (pass == nil) then
  error("smarthost.lua: set both SMARTHOST_USER and SMARTHOST_PASS, or neither", 0)
end
local tls = getenv("SMARTHOST_TLS") or "require"
local route = { host = host, port = port, tls = tls }
if user then route.auth = { user = user, pass = pass } end

return {
  on_connect = function(s)
    if s.peer_ip ~= "127.0.0.1" and s.peer_ip ~= "::1" then
      return 554, "5.7.1 This relay serves local clients only"
    end
  end,

  on_message = function(s, msg)
    msg:relay(route)
  end,
}

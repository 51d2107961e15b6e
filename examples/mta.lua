-- examples/mta.lua - a complete small MTA in one file:
--
--   * mail for the local domains ($LOCAL_DOMAINS, comma-separated) is
--     delivered into a Maildir per user under $MAILDIR_ROOT
--     (<root>/<local part>/), or handed to Dovecot over LMTP when
--     $LMTP_SOCKET names its socket (e.g. /run/dovecot/lmtp);
--   * authenticated users (AUTH, checked against $MTA_USERS, one
--     `user:password` a line, as in examples/submission.lua) and clients
--     from $RELAY_NETWORKS (comma-separated address prefixes such as
--     "127.0.0.1,10.0.0.") may send anywhere: those messages are queued and
--     relayed to each recipient's MX (msg:relay, `luamta queue list`);
--   * anyone else may only send to the local domains: `554 5.7.1 Relay
--     access denied` at RCPT, which is what keeps the server from being an
--     open relay.
--
--   LOCAL_DOMAINS=example.org MAILDIR_ROOT=/var/mail/vhosts \
--   MTA_USERS=/etc/luamta/users RELAY_NETWORKS=127.0.0.1 \
--   luamta --script examples/mta.lua --listen 0.0.0.0:25 --listen 0.0.0.0:587 \
--     --tls-cert cert.pem --tls-key key.pem --spool /var/spool/luamta
--
-- Publish: an MX record for each local domain pointing at this host, an A
-- (and AAAA) record for the host, a PTR for its address that names it back
-- (receivers check), and an SPF record allowing it (`v=spf1 mx -all`).
local getenv, open = os.getenv, io.open

local function split(list)
  local t = {}
  for item in (list or ""):gmatch("[^,%s]+") do t[#t + 1] = item:lower() end
  return t
end

local locals = {}
for _, d in ipairs(split(getenv("LOCAL_DOMAINS") or "localhost")) do locals[d] = true end
local networks = split(getenv("RELAY_NETWORKS"))
local maildir_root = getenv("MAILDIR_ROOT") or "./Maildir"
local lmtp_socket = getenv("LMTP_SOCKET")

local users = {}
do
  local path = getenv("MTA_USERS")
  local f = path and open(path, "r")
  if path and not f then error("mta.lua: cannot read MTA_USERS " .. path, 0) end
  if f then
    for line in f:lines() do
      local user, password = line:gsub("\r$", ""):match("^([^#:][^:]*):(.*)$")
      if user then users[user] = password end
    end
    f:close()
  end
end

local function domain_of(addr)
  return (addr:match("@([^@]+)$") or ""):lower()
end

local function trusted(s)
  if s.user then return true end
  for _, prefix in ipairs(networks) do
    if s.peer_ip:sub(1, #prefix) == prefix then return true end
  end
  return false
end

return {
  on_auth = function(s, mech, user, password)
    if not s.tls and s.peer_ip ~= "127.0.0.1" then
      return 538, "5.7.11 Encryption required for requested authentication mechanism"
    end
    return users[user] ~= nil and users[user] == password
  end,

  on_rcpt = function(s, rcpt)
    if not locals[domain_of(rcpt)] and not trusted(s) then
      return 554, "5.7.1 Relay access denied"
    end
  end,

  on_message = function(s, msg)
    local here, away = {}, {}
    for _, r in ipairs(msg.recipients) do
      if locals[domain_of(r)] then here[#here + 1] = r else away[#away + 1] = r end
    end
    if #away > 0 then msg:relay{ rcpts = away } end
    if #here == 0 then return end
    if lmtp_socket then
      msg:relay{ rcpts = here, socket = lmtp_socket, lmtp = true }
      return
    end
    for _, r in ipairs(here) do
      local user = r:match("^([^@]+)"):lower():gsub("[^%w%.%-_+]", "_")
      local ok, err = msg:deliver_maildir(maildir_root .. "/" .. user)
      if not ok then s:log("mta: maildir for " .. r .. ": " .. err) end
    end
  end,
}

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
--     open relay;
--   * what it relays is signed with DKIM when $DKIM_KEY names a private key
--     (d=$DKIM_DOMAIN, default the first local domain; s=$DKIM_SELECTOR,
--     default "mail");
--   * mail from the Internet is checked: SPF of the envelope sender, the
--     DKIM signatures, and the DMARC policy of the From: domain. A DMARC
--     `p=reject` failure is refused with `550 5.7.1`; everything else gets an
--     Authentication-Results: field with the three results (and any such
--     field claiming to be ours is removed first), and a `p=quarantine`
--     failure is filed into the user's Junk folder (Maildir++ `.Junk`).
--
--   LOCAL_DOMAINS=example.org MAILDIR_ROOT=/var/mail/vhosts \
--   MTA_USERS=/etc/luamta/users RELAY_NETWORKS=127.0.0.1 \
--   luamta --script examples/mta.lua --listen 0.0.0.0:25 --listen 0.0.0.0:587 \
--     --tls-cert cert.pem --tls-key key.pem --spool /var/spool/luamta
--
-- Publish: an MX record for each local domain pointing at this host, an A
-- (and AAAA) record for the host, a PTR for its address that names it back
-- (receivers check), an SPF record allowing it (`v=spf1 mx -all`), the
-- DKIM key (`mail._domainkey`, see README.md) and a DMARC policy
-- (`_dmarc`, `v=DMARC1; p=quarantine`).
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
local dkim_key = getenv("DKIM_KEY")
local dkim_domain = getenv("DKIM_DOMAIN") or split(getenv("LOCAL_DOMAINS") or "localhost")[1]
local dkim_selector = getenv("DKIM_SELECTOR") or "mail"

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
    local junk = false
    if trusted(s) then
      -- Ours: signed as it leaves (our Received: field is already on top).
      if dkim_key then
        local ok, err = msg:dkim_sign{ domain = dkim_domain, selector = dkim_selector, key = dkim_key }
        if not ok then
          s:log("mta: dkim_sign: " .. tostring(err))
          return 451, "4.3.5 Cannot sign the message now"
        end
      end
    else
      -- From the Internet: what the sender's domains say about it.
      local spf = s:spf()
      local dkim = msg:dkim_verify()
      local _, disposition, dmarc = luamta.dmarc.check(msg, spf, dkim)
      if disposition == "reject" then
        return 550, "5.7.1 Rejected by the DMARC policy of " .. dmarc.domain
      end
      msg:remove_forged_auth_results()
      msg:prepend_header("Authentication-Results", luamta.auth_results{
        spf = spf, mailfrom = msg.sender, helo = s.helo, dkim = dkim, dmarc = dmarc })
      junk = disposition == "quarantine"
    end
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
      local dir = maildir_root .. "/" .. user .. (junk and "/.Junk" or "")
      local ok, err = msg:deliver_maildir(dir)
      if not ok then s:log("mta: maildir for " .. r .. ": " .. err) end
    end
  end,
}

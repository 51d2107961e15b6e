-- examples/submission.lua - a message submission policy (RFC 6409, port 587
-- style, and RFC 8314 implicit TLS on 465): TLS first, then AUTH, then mail.
--
--   * every session must be encrypted before MAIL (s.require_tls: a
--     plaintext MAIL gets "530 5.7.0 Must issue a STARTTLS command first");
--   * AUTH PLAIN or LOGIN, checked against a users file; AUTH over plaintext
--     is refused even when the server runs with --auth-plaintext;
--   * MAIL before a successful AUTH gets "530 5.7.0 Authentication required";
--   * accepted messages go into the Maildir named by $MAILDIR (./Maildir).
--
-- The users file is named by $SUBMISSION_USERS (default ./users), read when
-- the script loads (at start-up and on every reload: SIGHUP). One `user:password` a line; the password
-- is everything after the first colon; blank lines and lines starting with
-- `#` are skipped.
--
-- NOTE: this keeps passwords in clear text and compares them with `==`. A
-- real deployment stores only hashes (bcrypt, scrypt or argon2, through a C
-- module such as a crypt(3) binding) and compares in constant time. Constant
-- time is not possible in plain Lua: `==` on strings may stop at the first
-- differing byte (or compare interned pointers), so the time taken leaks how
-- much of a guess was right.
--
--   printf 'alice:correct horse\n' > users
--   SUBMISSION_USERS=./users luamta --script examples/submission.lua \
--     --listen 127.0.0.1:587 --listen-tls 127.0.0.1:465 \
--     --tls-cert cert.pem --tls-key key.pem
--   swaks --server 127.0.0.1:587 --tls --auth PLAIN --auth-user alice \
--     --auth-password 'correct horse' --to bob@example.org
local getenv, open, tostring, error = os.getenv, io.open, tostring, error

local users_file = getenv("SUBMISSION_USERS") or "./users"
local maildir = getenv("MAILDIR") or "./Maildir"

-- Reads the users file into { [user] = password }; a missing file stops the
-- server at start-up with this message.
local function load_users(path)
  local f, err = open(path, "r")
  if not f then
    error("submission.lua: cannot read the users file (SUBMISSION_USERS): " .. tostring(err), 0)
  end
  local users = {}
  for line in f:lines() do
    line = line:gsub("\r$", "")
    if line ~= "" and line:sub(1, 1) ~= "#" then
      local user, password = line:match("^([^:]+):(.*)$")
      if user then users[user] = password end
    end
  end
  f:close()
  return users
end

local users = load_users(users_file)

return {
  on_connect = function(s)
    s.require_tls = true
  end,

  on_auth = function(s, mech, user, password)
    -- Never check a password that crossed the network in the clear.
    if not s.tls then
      return 538, "5.7.11 Encryption required for requested authentication mechanism"
    end
    local known = users[user]
    if known ~= nil and known == password then
      return true
    end
    s:log("submission.auth_failed mech=" .. mech .. " user=" .. user)
    return false
  end,

  on_mail = function(s, sender, params)
    if not s.tls then
      return 530, "5.7.0 Must issue a STARTTLS command first"
    end
    if not s.user then
      return 530, "5.7.0 Authentication required"
    end
  end,

  on_message = function(s, msg)
    local ok, err = msg:deliver_maildir(maildir)
    if not ok then
      s:log("submission.delivery_failed dir=" .. maildir .. " err=" .. tostring(err))
      return 451, "4.3.0 Delivery failed, try again later"
    end
  end,
}

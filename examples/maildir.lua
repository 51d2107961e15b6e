-- examples/maildir.lua - deliver every message into one Maildir: the one
-- named by $MAILDIR, or ./Maildir. It is created when missing. A failed
-- delivery is answered 451 so the client keeps the message and retries.
--
--   MAILDIR=/var/mail/catchall luamta --script examples/maildir.lua
local getenv, tostring = os.getenv, tostring

local maildir = getenv("MAILDIR") or "./Maildir"

return {
  on_message = function(s, msg)
    local ok, err = msg:deliver_maildir(maildir)
    if not ok then
      s:log("maildir delivery to " .. maildir .. " failed: " .. tostring(err))
      return 451, "4.3.0 Delivery failed, try again later"
    end
  end,
}

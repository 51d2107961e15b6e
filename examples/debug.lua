-- examples/debug.lua - print every accepted message to stdout, like Python's
-- smtpd.DebuggingServer. Every sender and recipient is accepted.
--
--   luamta --script examples/debug.lua
--   swaks --server 127.0.0.1:2525 --to you@example.org
return {
  on_message = function(s, msg)
    local ok, err = msg:print()
    if not ok then
      s:log("print failed: " .. tostring(err))
      return 451, "4.3.0 Could not print the message, try again later"
    end
  end,
}

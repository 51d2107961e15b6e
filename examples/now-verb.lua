-- examples/now-verb.lua - a custom SMTP verb (aiosmtpd's NOW):
--   NOW      -> 250 local time
--   NOW UTC  -> 250 UTC time
local date = os.date

return {
  verbs = {
    NOW = function(s, arg)
      if arg == "UTC" then return 250, date("!%Y-%m-%d %H:%M:%S") end
      if arg ~= "" then return 501, "Syntax: NOW [UTC]" end
      return 250, date("%Y-%m-%d %H:%M:%S")
    end,
  },
}

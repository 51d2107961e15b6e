-- examples/blackhole.lua - accept every message and throw it away. Handy
-- for load tests of a sending application.
return {
  on_message = function(s, msg)
    return 250, "2.0.0 Ok: discarded " .. msg.size .. " bytes"
  end,
}

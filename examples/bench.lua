-- examples/bench.lua - the policy scripts/bench measures: a hook on every
-- verb a session uses, each doing a little realistic work (a string match, a
-- table look-up, a counter) and then accepting with the default reply. It
-- puts the cost of calling Lua at every step into the benchmark figures.
local find, match, lower = string.find, string.match, string.lower

local blocked_ips = { ["192.0.2.1"] = true }          -- TEST-NET-1, never a client
local blocked_senders = { ["spammer@example.net"] = true }
local blocked_domains = { ["example.invalid"] = true }

return {
  on_connect = function(s)
    if blocked_ips[s.peer_ip] then return false end
    s.vars.rcpts = 0
  end,

  on_helo = function(s, name)
    if find(name, "[%c ]") then return 501, "5.5.4 Bad HELO name" end
  end,

  on_ehlo = function(s, name, keywords)
    if find(name, "[%c ]") then return 501, "5.5.4 Bad EHLO name" end
  end,

  on_mail = function(s, sender, params)
    if blocked_senders[lower(sender)] then return false end
  end,

  on_rcpt = function(s, rcpt, params)
    local domain = match(rcpt, "@([^@]+)$")
    if domain and blocked_domains[lower(domain)] then
      return 550, "5.1.1 Mailbox unavailable"
    end
    s.vars.rcpts = s.vars.rcpts + 1
  end,

  on_data = function(s)
    if #s.recipients == 0 then return false end
  end,

  on_message = function(s, msg)
    -- A header look-up, as a content policy starts; scanning a 100 KiB body
    -- per message would measure the policy, not the server.
    local flag = msg:header("X-Spam-Flag")
    if flag and find(lower(flag), "^%s*yes") then return false end
  end,

  on_rset = function(s)
    s.vars.rcpts = 0
  end,

  on_quit = function(s)
    if s.vars.rcpts < 0 then s:log("impossible recipient count") end
  end,
}

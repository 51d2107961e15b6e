-- core/fuzz/hostile.lua - the policy fuzz_hostile runs under: operator code
-- that is buggy or plainly hostile, which the server must survive with
-- well-formed replies, nothing after a 221 or 421 and nothing leaked. As in
-- fixture.lua, three-letter words in a hook's argument choose what the hook
-- does, so the fuzzer (which finds the words in smtp.dict) steers every hook
-- into every case. A digit right after a word picks one of its variants
-- ("rnm3"); without one, variant 0.
--
-- First, in this order, each side effect whose word is present (with "pcl"
-- each runs under pcall, so the hook goes on when one raises):
--   tpl  package.loaded = 42           tpn  package = nil, package.path = 42
--   rqr  require a shipped module, a missing one and a broken loader
--   tdh  debug.sethook, every way      tsm  a string metatable that raises
--   tnm  metatables that raise on nil, numbers, booleans, functions,
--        threads and the luamta tokens
--   tuv  debug.setuservalue on the session handle (s.vars becomes 42)
--   thm  the session handle's metatable changed, swapped or taken away
--   tvm  s.vars given a metatable that raises on every access
--   tgc  the collector stopped, made generational, or stepped
--   tsh  luamta.shared filled with what a reload cannot carry
--   tgl  _G's metatable dropped, luamta and require replaced
--   mlk  a message handle kept from an earlier on_message, used now
--   wgs wso wxp wgc wix wts wco  luamta.sleep(0) in a string.gsub callback,
--        a table.sort comparator, an xpcall message handler, a __gc, an
--        __index and a __tostring called from C, a coroutine of the
--        script's own: Lua cannot yield there, so each raises (wxp's and
--        wgc's errors stay in xpcall and the collector)
--   wcl wmm wpc wit  sleep in a __close, in metamethods called from Lua,
--        under pcall and xpcall, in a for-in iterator: each parks and resumes
--   wyd  a bare coroutine.yield()
--   lpc lpx lpi lps  loop under pcall, in an xpcall message handler, in an
--        __index called from C, in a table.sort comparator
--   hgs  allocate with the collector stopped
-- Then the result for the first of these words present:
--   ets enl eob  error() with a table whose __tostring raises, with nil,
--        with a handle, a thread, a function or a number
--   eer  an error whose unwinding runs a __close that raises another
--   ecl ecs ecp ech  park holding a <close> variable whose __close raises,
--        sleeps, loops or allocates; in on_disconnect the park is cancelled
--        at once, so the __close runs while the run is torn down
--   rox rol ros  luamta.reply options whose __index raises, loops, or is
--        the table itself
--   rov  reply options with odd raw values
--   rtm rtp rgc  reply text that is a proxy with __index and __len; a list
--        with holes, non-strings and metamethods; a list with a __gc
--   rud  a handle, a thread, a function or a token where a code belongs
--   rnm  codes that are not integers from 200 to 599
--   rdx  luamta.disconnect with odd arguments
--   r06 r64 rtu  lines near 506 bytes; 64 lines and more; 16 lines near
--        the 8192-byte total
-- on_ehlo also reads kwl (many long keywords), kwm (a metatable and
-- non-strings in the list) and kwx (keywords with bad bytes or lengths).
-- on_message reads the message for mhd (msg:headers and msg:header with odd
-- names), mph (msg:prepend_header with odd values), mmt (the message
-- handle's metatable tampered with) and mlk (keep the handle). on_quit and
-- on_rset follow the HELO name; on_disconnect, whose result is ignored and
-- whose waits are cancelled, repeats the last words the session used.
-- Nothing is delivered. Every loop and allocation is left to the harness's
-- budgets to stop, or bounded by a constant here.
local luamta = require "luamta"

-- Hooks wreck the globals, the package table and the metatables of strings
-- and other types, so the policy keeps everything it uses in locals.
local G, pkg, require = _G, package, require
local type, error, pcall, xpcall, next = type, error, pcall, xpcall, next
local setmetatable, rawset = setmetatable, rawset
local collectgarbage, tostring = collectgarbage, tostring
local sfind, sbyte, srep, sgsub, sformat = string.find, string.byte, string.rep, string.gsub,
  string.format
local tconcat, tsort = table.concat, table.sort
local cocreate, coresume, cowrap, coyield, corunning, coclose = coroutine.create,
  coroutine.resume, coroutine.wrap, coroutine.yield, coroutine.running, coroutine.close
local dsethook, dsetmetatable, dgetmetatable = debug.sethook, debug.setmetatable,
  debug.getmetatable
local dsetuservalue, dbg = debug.setuservalue, debug
local maxinteger, huge = math.maxinteger, math.huge
local sleep, reply, disconnect = luamta.sleep, luamta.reply, luamta.disconnect
-- luamta.shared as this generation set it; hooks add to it.
local shared

-- The value luamta.disconnect() returns first: a light userdata.
local token = (disconnect())

local function bomb()
  error("hostile metamethod")
end

-- An error object that cannot be turned into text.
local function bad_error()
  return setmetatable({}, { __tostring = bomb, __name = "hostile" })
end

-- One metatable for every kind of value: each operation raises.
local raising = {
  __index = bomb, __newindex = bomb, __call = bomb, __concat = bomb, __len = bomb,
  __eq = bomb, __lt = bomb, __le = bomb, __unm = bomb, __add = bomb,
  __tostring = bomb, __close = bomb, __name = 42,
}

-- Kept across hooks (and sessions of this generation) on purpose.
local kept = {}
-- The last text each session's hooks were steered by: on_disconnect does
-- it all again, so a word whose hook failed still reaches it.
local last = setmetatable({}, { __mode = "k" })

-- Loading ------------------------------------------------------------------

-- Entries --watch's module listing must step over: keys that are not
-- names, a name package.path resolves to a file although nothing loaded it,
-- and values of every kind.
pkg.loaded.foo = 42
pkg.loaded[42] = "foo"
pkg.loaded["luamta.faults"] = 42
pkg.loaded["no such module"] = true
pkg.loaded.hostile_proxy = setmetatable({}, raising)

-- What a reload copies into the next generation: a cycle, a table as a
-- key, nesting past the copy's depth, and values it must drop. Replacing
-- the table also throws away whatever the previous generation carried, so
-- every generation starts from the same luamta.shared.
do
  local deep = {}
  for _ = 1, 80 do
    deep = { deep }
  end
  local cycle = {}
  cycle.self = cycle
  shared = {
    cycle = cycle, deep = deep, [cycle] = "table key", [1.5] = "float key",
    [true] = false, fn = bomb, co = cocreate(bomb),
    proxy = setmetatable({ 1, 2 }, { __index = bomb, __gc = function(t) rawset(t, 3, 3) end }),
  }
  luamta.shared = shared
end

-- A _G that refuses unknown names, as strict-mode modules do, but raising
-- from the metamethods themselves.
setmetatable(G, {
  __index = function(_, k) error("unknown global " .. tostring(k), 2) end,
  __newindex = function(_, k) error("assignment to new global " .. tostring(k), 2) end,
})

-- Words --------------------------------------------------------------------

-- The variant of word in text (0-9), or nil when the word is absent.
local function word(text, w)
  local i = type(text) == "string" and sfind(text, w, 1, true)
  if not i then
    return nil
  end
  local d = sbyte(text, i + #w)
  return d ~= nil and d >= 48 and d <= 57 and d - 48 or 0
end

-- t[v + 1], or t[1] when the variant has no entry of its own.
local function pick(t, v)
  return t[v + 1] or t[1]
end

-- s[k] under pcall: a tampered handle raises, the policy goes on.
local function field(s, k)
  local ok, v = pcall(function() return s[k] end)
  return ok and v or nil
end

-- The code a custom reply needs to accept in each hook (the others: 2xx).
local OK_CODE = { on_data = 354, on_quit = 221, on_connect = 220, on_auth = 235 }

-- Side effects ---------------------------------------------------------------

local function nest_sleep()
  sleep(0)
  return "x"
end

local function loop_forever()
  while true do end
end

local EFFECTS = {
  { "tpl", function() pkg.loaded = 42 end },
  { "tpn", function()
    rawset(G, "package", nil)
    pkg.path = 42
    pkg.cpath = nil
  end },
  { "rqr", function(s, hook, v)
    pick({
      function() require("luamta.faults") end,
      function() require("no.such.module") end,
      function()
        pkg.preload.hostile_mod = function() error(bad_error()) end
        require("hostile_mod")
      end,
      function()
        pkg.searchers = setmetatable({}, raising)
        require("another.missing.module")
      end,
    }, v)()
  end },
  { "tdh", function(s, hook, v)
    pick({
      function() dsethook() end,
      function() dsethook(function() end, "c", 1) end,
      function() dsethook(corunning(), nil) end,
      function() dbg.sethook = function() end end,
    }, v)()
  end },
  { "tsm", function()
    dsetmetatable("", {
      __index = function(_, k) error("string method " .. k) end,
      __tostring = function() return {} end,
    })
  end },
  { "tnm", function(s, hook, v)
    local targets = { nil, 0, true, bomb, token, corunning() }
    local t = targets[v % 6 + 1]
    if v == 0 then
      for i = 1, 6 do
        dsetmetatable(targets[i], raising)
      end
    else
      dsetmetatable(t, raising)
    end
  end },
  { "tuv", function(s, hook, v)
    pick({
      function() dsetuservalue(s, 42, 1) end,
      function() dsetuservalue(s, setmetatable({}, raising), 2) end,
      function() dsetuservalue(s, nil, 1) end,
      function() dsetuservalue(s, s, 1) end,
    }, v)()
  end },
  { "thm", function(s, hook, v)
    local mt = dgetmetatable(s)
    pick({
      function() dsetmetatable(s, nil) end,
      function() mt.__index = bomb end,
      function() mt.__newindex = nil; mt.__tostring = bomb; mt.__metatable = "locked" end,
      function() dsetmetatable(s, raising) end,
      function() mt.__gc = function() sleep(0) end; mt.__close = bomb end,
      function() if kept.msg then dsetmetatable(s, dgetmetatable(kept.msg)) end end,
    }, v)()
  end },
  { "tvm", function(s)
    local vars = s.vars
    vars.seen = "before the metatable"
    setmetatable(vars, {
      __index = bomb, __newindex = bomb, __len = bomb, __pairs = bomb,
      __mode = "k", __gc = function() local _ = s.vars end,
    })
  end },
  { "tgc", function(s, hook, v)
    pick({
      function() collectgarbage("stop") end,
      function() collectgarbage("generational", 1, 1) end,
      function() collectgarbage("incremental", 1000, 0, 40) end,
      function() collectgarbage("step", maxinteger) end,
      function() collectgarbage("restart"); collectgarbage() end,
    }, v)()
  end },
  { "tsh", function(s, hook, v)
    shared.handle = s
    shared.hook = hook
    shared.thread = cocreate(bomb)
    shared.nested = { { { s, bomb, token } } }
    shared[shared] = shared
    shared.long = srep("s", 100000)
    if v == 1 then
      luamta.shared = setmetatable({}, raising)
    elseif v == 2 then
      luamta.shared = 42
    elseif v == 3 then
      pkg.loaded.luamta = setmetatable({}, raising)
    end
  end },
  { "tgl", function()
    setmetatable(G, nil)
    rawset(G, "luamta", 42)
    rawset(G, "require", nil)
    rawset(G, "_G", 42)
  end },
  { "mlk", function()
    local msg = kept.msg
    if msg ~= nil then
      local _ = msg.size, msg:header("subject")
    end
  end },
  { "wgs", function() sgsub("abc", "b", nest_sleep) end },
  { "wso", function() tsort({ 3, 1, 2 }, function(a, b) sleep(0) return a < b end) end },
  { "wxp", function()
    xpcall(bomb, function(m) sleep(0) return m end)
  end },
  { "wgc", function()
    setmetatable({}, { __gc = function() sleep(0) end })
    setmetatable({}, { __gc = function() error(bad_error()) end })
    collectgarbage()
  end },
  { "wix", function()
    tconcat(setmetatable({}, { __index = nest_sleep }), ",", 1, 3)
  end },
  { "wts", function(s, hook, v)
    local obj = setmetatable({}, { __tostring = nest_sleep })
    if v == 1 then
      sformat("%s", obj)
    else
      tostring(obj)
    end
  end },
  { "wco", function(s, hook, v)
    pick({
      function() cowrap(function() sleep(0) end)() end,
      function()
        local co = cocreate(function()
          local guard <close> = setmetatable({}, { __close = function() sleep(0) end })
          coyield()
        end)
        coresume(co)
        local ok, err = coclose(co)
        if not ok then error(err) end
      end,
      function()
        -- Left suspended with a pending <close>, for the collector.
        local co = cocreate(function()
          local guard <close> = setmetatable({}, { __close = bomb })
          coyield(s)
        end)
        coresume(co)
        kept.co = co
      end,
    }, v)()
  end },
  { "wcl", function()
    do
      local guard <close> = setmetatable({}, { __close = function() sleep(0) end })
    end
  end },
  { "wmm", function()
    local p = setmetatable({}, {
      __index = function() sleep(0) return 1 end,
      __add = function() sleep(0) return 2 end,
      __concat = function() sleep(0) return "c" end,
      __lt = function() sleep(0) return true end,
      __call = function() sleep(0) end,
    })
    local _ = p.x + (p + 1), p .. "x", p < p
    p()
  end },
  { "wpc", function()
    pcall(sleep, 0)
    xpcall(sleep, bomb, 0)
  end },
  { "wit", function()
    local n = 0
    for _ in function() sleep(0) n = n + 1 return n <= 2 or nil end do end
  end },
  { "wyd", function() coyield(1, 2, 3) end },
  { "lpc", function() pcall(loop_forever) end },
  { "lpx", function() xpcall(bomb, loop_forever) end },
  { "lpi", function()
    tconcat(setmetatable({}, { __index = loop_forever }), ",", 1, 2)
  end },
  { "lps", function() tsort({ 3, 2, 1 }, function() loop_forever() end) end },
  { "hgs", function(s, hook, v)
    collectgarbage("stop")
    if v == 1 then
      local _ = srep("x", 1 << 40)
    else
      local t, chunk = {}, "x"
      while true do
        chunk = chunk .. chunk
        t[#t + 1] = chunk
      end
    end
  end },
}

-- Results --------------------------------------------------------------------

-- Parks holding a to-be-closed variable that runs on_close when the block
-- is left: normally after the wake-up, or when on_disconnect's run is
-- cancelled while it waits.
local function park_with(code, on_close)
  local guard <close> = setmetatable({}, { __close = on_close })
  sleep(0)
  return code, "woke up"
end

-- The enhanced code prefix of the reply class of code ("2.0.0 ").
local function enh(code)
  return sformat("%d.0.0 ", code // 100)
end

-- A line of n bytes starting with prefix.
local function line(prefix, n)
  return prefix .. srep("x", n - #prefix)
end

local function lines(n, len, first)
  local t = {}
  for i = 1, n do
    t[i] = line(i == 1 and first or "", len)
  end
  return t
end

local RESULTS = {
  { "ets", function() error(bad_error()) end },
  { "enl", function() error(nil) end },
  { "eob", function(s, hook, v)
    error(pick({ s, corunning(), bomb, 1.5, token, true }, v))
  end },
  { "eer", function()
    local guard <close> = setmetatable({}, { __close = function() error(bad_error()) end })
    error("the first error")
  end },
  { "ecl", function(s, hook)
    return park_with(OK_CODE[hook] or 250, function() error(bad_error()) end)
  end },
  { "ecs", function(s, hook) return park_with(OK_CODE[hook] or 250, nest_sleep) end },
  { "ecp", function(s, hook) return park_with(OK_CODE[hook] or 250, loop_forever) end },
  { "ech", function(s, hook)
    return park_with(OK_CODE[hook] or 250, function()
      local t = {}
      for i = 1, 1e9 do t[i] = srep("h", 64) .. i end
    end)
  end },
  -- Options and text are read raw: none of these metamethods may run.
  { "rox", function(s, hook, v)
    local index = pick({ bomb, nest_sleep }, v)
    return reply(OK_CODE[hook] or 250, setmetatable({ "x" }, { __index = index, __len = index }),
      setmetatable({}, { __index = index }))
  end },
  { "rol", function(s, hook)
    return reply(OK_CODE[hook] or 250, "x", setmetatable({}, { __index = loop_forever }))
  end },
  { "ros", function(s, hook)
    local opts = { drop_after = nil }
    opts.__index = opts
    setmetatable(opts, opts)
    return reply(OK_CODE[hook] or 250, { "a", "b" }, opts)
  end },
  { "rov", function(s, hook, v)
    local code = OK_CODE[hook] or 250
    -- drop_after below the number of lines would cut a reply short on
    -- purpose (fault injection), which the harness rightly rejects.
    return reply(code, { "one", "two" }, pick({
      { line_delay = 0 / 0 },
      { line_delay = "0", drop_after = 2 },
      { drop_after = 2 ^ 53 },
      { drop_after = -0.0 },
      { line_delay = 1e-300, drop_after = 64 },
      { line_delay = setmetatable({}, raising) },
      { line_delay = -1 },
      { drop_after = 1.5 },
      { line_delay = 0, [1] = "extra", [s] = s },
      { line_delay = huge },
    }, v))
  end },
  { "rtm", function(s, hook)
    return OK_CODE[hook] or 250, setmetatable({}, {
      __len = function() return 3 end,
      __index = function(_, i) return "line " .. i end,
    })
  end },
  { "rtp", function(s, hook, v)
    local code = OK_CODE[hook] or 250
    return code, setmetatable(pick({
      { "a", "b", nil, "d" },
      { "a", {}, "c" },
      { "a", 5, 2.5, maxinteger },
      { "a", s },
      { "" },
      { "2.0.0 good", "5.0.0 wrong class" },
      { "a", nil },
    }, v), raising)
  end },
  { "rgc", function(s, hook, v)
    local code = OK_CODE[hook] or 250
    return code, setmetatable({ "collected later" }, { __gc = pick({
      function() sleep(0) end,
      function() error(bad_error()) end,
      function() s.vars.after = true end,
      function(t) kept.resurrected = t end,
    }, v) })
  end },
  { "rud", function(s, hook, v)
    return pick({
      function() return s end,
      function() return cocreate(bomb) end,
      function() return bomb end,
      function() return token, token end,
      function() return 250, s end,
      function() return 250, token end,
      function() return true, 550, "ignored" end,
      function() return nil, 550 end,
      function() return setmetatable({}, raising) end,
      function() return 250, bad_error() end,
    }, v)()
  end },
  { "rnm", function(s, hook, v)
    return pick({ 250.5, 0 / 0, maxinteger, -250, "250", 2 ^ 63, 199, 600, huge, 250.0 }, v),
      "odd code"
  end },
  { "rdx", function(s, hook, v)
    return pick({
      function() return disconnect(setmetatable({}, raising)) end,
      function() return disconnect(421, { "4.7.0 first", "second" }) end,
      function() return disconnect(OK_CODE[hook] or 250, "closing after a success") end,
      function() return disconnect(nil, "text without a code") end,
      function() return disconnect(421, setmetatable({}, raising)) end,
      function() return disconnect(221) end,
      function() return disconnect(421, "4.7.0 x", "extra", "values") end,
    }, v)()
  end },
  { "r06", function(s, hook, v)
    local code = OK_CODE[hook] or 250
    local e = enh(code)
    return code, pick({
      line(e, 506),
      line("", 500),
      line("", 501),
      line("", 506),
      line("", 507),
      e .. srep("\xc3\xa9", 250),
      line("", 505) .. "\xc3\xa9",
      { "2.999.999 long code", line("", 500) },
      { line(e, 506), line(e, 506), line(e, 506) },
      line("", 505) .. "\xc3",
    }, v)
  end },
  { "r64", function(s, hook, v)
    local code = OK_CODE[hook] or 250
    return code, pick({
      lines(64, 8),
      lines(65, 8),
      lines(64, 12, "2.1.234 "),
      lines(64, 100),
      {},
      lines(64, 1),
    }, v)
  end },
  { "rtu", function(s, hook, v)
    local code = OK_CODE[hook] or 250
    local t
    if v == 1 then
      t = lines(16, 495)
      t[16] = line("", 494)
    elseif v == 2 then
      t = lines(16, 495)
    elseif v == 3 then
      t = lines(20, 400)
    elseif v == 4 then
      t = lines(16, 494, "2.999.999 ")
    else
      t = lines(16, 494)
    end
    return code, t
  end },
}

-- Runs the side effects, then returns the result, chosen by the words in
-- text (nothing: the default accept).
local function act(hook, s, text)
  if type(text) ~= "string" then
    return
  end
  last[s] = text
  local guarded = word(text, "pcl") ~= nil
  for i = 1, #EFFECTS do
    local e = EFFECTS[i]
    local v = word(text, e[1])
    if v ~= nil then
      if guarded then
        pcall(e[2], s, hook, v)
      else
        e[2](s, hook, v)
      end
    end
  end
  for i = 1, #RESULTS do
    local r = RESULTS[i]
    local v = word(text, r[1])
    if v ~= nil then
      return r[2](s, hook, v)
    end
  end
end

-- Parameters as one string: the words can be in any of them.
local function flat(params)
  local parts = {}
  if type(params) == "table" then
    -- No tostring(): after "tsm" it would call the strings' __tostring.
    for k, v in next, params do
      parts[#parts + 1] = k .. "=" .. (type(v) == "string" and v or "")
    end
  end
  tsort(parts)
  return tconcat(parts, " ")
end

-- on_ehlo's keyword list: appended to, corrupted, or given a metatable.
local function keywords_words(name, keywords)
  if word(name, "kwl") then
    for i = 1, 80 do
      keywords[#keywords + 1] = "X-LONG-" .. i .. " " .. srep("k", 470)
    end
  end
  if word(name, "kwm") then
    keywords[2] = 42
    keywords[3] = {}
    keywords[#keywords + 1] = token
    keywords[1] = nil
    setmetatable(keywords, raising)
  end
  local v = word(name, "kwx")
  if v then
    local bad = { "X\tTAB", "", "\x80\x81", srep("K", 501), "SIZE 1", "AUTH PLAIN",
      "STARTTLS", "X UTF8 \xc3\xa9" }
    if v == 0 then
      for i = 1, #bad do
        keywords[#keywords + 1] = bad[i]
      end
    else
      keywords[#keywords + 1] = pick(bad, v)
    end
  end
end

-- What on_message does for the words in the message itself.
local function message_words(s, msg, data)
  if word(data, "mlk") then
    kept.msg = msg
  end
  if word(data, "mhd") then
    local received = msg:headers("Received")
    local r = msg:headers("R")
    local _ = #received + #r, msg:header(""), msg:header(":"), msg:headers(srep("R", 300)),
      msg:header("Received\0X"), msg:headers(42), msg:header("subject")
  end
  local v = word(data, "mph")
  if v then
    local odd = {
      { "X-Empty", "" }, { "X-Long", srep("v", 5000) }, { "X-Bytes", "\xff\xfe\x80" },
      { "X-Space", " \t " }, { "X-" .. srep("n", 74), "76-byte name" }, { 42, 42 },
      -- From here on, each raises.
      { "X-" .. srep("n", 75), "77-byte name" }, { "Bad:Name", "x" },
      { "X-CR", "a\rb" }, { "", "empty name" },
    }
    for round = 1, 20 do
      local h = v == 0 and odd[(round - 1) % 6 + 1] or pick(odd, v)
      msg:prepend_header(h[1], h[2])
    end
    local _ = msg:headers("X-Long"), msg.size, #msg.data
  end
  v = word(data, "mmt")
  if v then
    local mt = dgetmetatable(msg)
    pick({
      function() mt.methods = setmetatable({}, { __index = nest_sleep }) end,
      function() mt.methods = 42 end,
      function() mt.methods = nil end,
      function() mt.__index = bomb end,
      function() dsetmetatable(msg, dgetmetatable(s)) end,
      function() dsetmetatable(msg, nil) end,
    }, v)()
    local _ = msg:header("subject")
  end
end

local function call_verb(name)
  return function(s, arg) return act(name, s, arg) end
end

return setmetatable({
  on_connect = function(s)
    local _ = field(s, "peer_ip"), field(s, "tls"), field(s, "no_such_field")
  end,
  on_helo = function(s, name) return act("on_helo", s, name) end,
  on_ehlo = function(s, name, keywords)
    keywords_words(name, keywords)
    return act("on_ehlo", s, name)
  end,
  on_mail = function(s, sender, params)
    return act("on_mail", s, sender .. " " .. flat(params))
  end,
  on_rcpt = function(s, rcpt, params)
    return act("on_rcpt", s, rcpt .. " " .. flat(params))
  end,
  on_data = function(s)
    local rcpts = field(s, "recipients")
    return act("on_data", s, type(rcpts) == "table" and tconcat(rcpts, " ") or nil)
  end,
  on_message = function(s, msg)
    local data = msg.data
    message_words(s, msg, data)
    return act("on_message", s, msg:header("x-act"))
  end,
  on_rset = function(s) return act("on_rset", s, field(s, "helo")) end,
  on_vrfy = function(s, arg) return act("on_vrfy", s, arg) end,
  on_quit = function(s) return act("on_quit", s, field(s, "helo")) end,
  on_unknown = function(s, verb, arg) return act("on_unknown", s, arg) end,
  on_auth = function(s, mech, user, password)
    if user == "good" then
      return true
    end
    return act("on_auth", s, password)
  end,
  on_disconnect = function(s) return act("on_disconnect", s, last[s]) end,
  -- Verb names are checked and copied raw when the policy loads; the
  -- metatable is never consulted.
  verbs = setmetatable({ XHOST = call_verb("XHOST"), ["x-Host_2"] = call_verb("X-HOST_2") },
    raising),
  [1] = "not a hook",
  version = 42,
}, { __index = bomb, __gc = function() sleep(0) end })

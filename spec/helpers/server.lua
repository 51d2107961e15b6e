-- spec/helpers/server.lua - the server half of the public test kit,
-- lua/luamta/testing.lua (`require "luamta.testing"`), which owns the code:
-- start(), run(), mkdtemp(), read_file()... and the srv methods. This file
-- returns that very module (not a copy), so a spec that replaces a field
-- (server.bin = ...) changes what testing.start() uses, and every spec that
-- says `require "server"` exercises the public module.
return require "luamta.testing"

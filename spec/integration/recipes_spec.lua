-- The recipes for other languages (doc-testing.md) run exactly as shipped
-- in spec/fixtures/recipes/, so they cannot rot: Python's smtplib with the
-- Luamta fixture class (under plain python3 and unittest; pytest is not a
-- dependency of the suite), and the shell script with swaks and curl.
local testing = require "luamta.testing"

local DIR = "spec/fixtures/recipes"

-- Runs a recipe with LUAMTA_BIN set and a hard timeout; status and output.
local function run(cmd)
  return testing.sh("cd " .. testing.quote(testing.source_dir()) .. " && LUAMTA_BIN="
    .. testing.quote(testing.bin()) .. " timeout -s KILL 120 " .. cmd)
end

describe("recipes for other languages #integration", function()
  it("the Python recipe (smtplib, the Luamta fixture, messages.jsonl) passes", function()
    local status, out = run("python3 " .. DIR .. "/test_recipe.py -v")
    assert.are.equal(0, status, out)
    assert.matches("Ran 3 tests", out, 1, true)
    assert.matches("\nOK\n", out, 1, true)
    for _, name in ipairs({ "test_message_is_captured", "test_refused_recipient",
      "test_partly_refused" }) do
      assert.matches(name .. " %b() %.%.%. ok", out)
    end
  end)

  it("the shell recipe (swaks, curl, messages.jsonl) passes", function()
    local status, out = run("sh " .. DIR .. "/recipe.sh")
    assert.are.equal(0, status, out)
    assert.matches("recipe: ok\n$", out)
  end)

  it("the shell recipe fails loudly when the server cannot start", function()
    local status, out = testing.sh("cd " .. testing.quote(testing.source_dir())
      .. " && LUAMTA_BIN=/bin/false timeout -s KILL 60 sh " .. DIR .. "/recipe.sh")
    assert.are.equal(1, status, out)
    assert.matches("recipe: FAILED: luamta exited before it was ready", out, 1, true)
  end)

  it("the Python fixture reports a server that cannot start, with its command", function()
    local status, out = testing.sh("cd " .. testing.quote(testing.source_dir() .. "/" .. DIR)
      .. " && LUAMTA_BIN=/bin/false PYTHONDONTWRITEBYTECODE=1 timeout -s KILL 60 python3 -c "
      .. testing.quote("import test_recipe\ntry:\n    test_recipe.Luamta().start()\n"
        .. "except RuntimeError as e:\n    print('refused:', e)\n"))
    assert.are.equal(0, status, out)
    assert.matches("refused: luamta did not start: /bin/false --listen 127.0.0.1:0", out, 1, true)
  end)
end)

-- The code blocks of the documentation whose first line names a file under
-- spec/fixtures/recipes/ are verbatim parts of that file, which the suite
-- runs. The README once doc-testing.md is merged into it, else doc-testing.md.
describe("the documented recipes #integration", function()
  it("are verbatim copies of the files the suite runs", function()
    local root = testing.source_dir()
    local readme = testing.read_file(root .. "/README.md") or ""
    local doc = readme:find("spec/fixtures/recipes/example_spec.lua\n", 1, true) and readme
      or assert(testing.read_file(root .. "/doc-testing.md"), "no README section nor doc-testing.md")
    local checked = {}
    for block in doc:gmatch("```%w*\n(.-)```") do
      local first, rest = block:match("^[-#]+ (spec/fixtures/recipes/[%w_.]+)\n(.*)$")
      if first then
        local file = assert(testing.read_file(root .. "/" .. first), "no file " .. first)
        assert.is_truthy(file:find(rest, 1, true),
          "the documented block of " .. first .. " differs from the file:\n" .. rest)
        checked[first] = (checked[first] or 0) + 1
      end
    end
    assert.are.same({
      ["spec/fixtures/recipes/example_spec.lua"] = 1,
      ["spec/fixtures/recipes/test_recipe.py"] = 2,
      ["spec/fixtures/recipes/recipe.sh"] = 1,
    }, checked)
  end)
end)

-- wrk script for the exam-detail load test (benchmarks/bench_serving.py).
-- The benchmark writes a companion file next to a copy of this script with the bearer token and
-- the exam ids the user may see (never in the repository): `serving_wrk_ids.lua` sets
-- RADQC_TOKEN and RADQC_IDS. Each request opens a random visible exam, as doctors do.

local here = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(here .. "serving_wrk_ids.lua")

local thread_counter = 0

function setup(thread)
  thread_counter = thread_counter + 1
  thread:set("seed", thread_counter * 7919)
end

function init(args)
  math.randomseed(seed or 1)
end

request = function()
  local id = RADQC_IDS[math.random(#RADQC_IDS)]
  return wrk.format("GET", "/api/exams/" .. id, { ["Authorization"] = "Bearer " .. RADQC_TOKEN })
end

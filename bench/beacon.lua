-- wrk script for bench/ingest.py: POST /api/v1/beacons with fresh event IDs.
-- args: mode (noop|new|returning|placeholder|xapi) key pool seed close(0|1)
-- new: every beacon a new learner; returning: a fixed pool of learners; placeholder: every
-- beacon's student ID is `undefined` (held back);
-- xapi: an xAPI "launched" statement for a new learner, posted to Ralph LRS
-- (key is then the base64 of user:password for HTTP Basic auth).

local tid_counter = 0

function setup(thread)
  tid_counter = tid_counter + 1
  thread:set("tid", tid_counter)
end

local mode, key, pool, close
local path = "/api/v1/beacons"
local headers = {}

function init(args)
  mode = args[1] or "new"
  key = args[2] or ""
  pool = tonumber(args[3] or "64")
  local seed = tonumber(args[4] or "1")
  close = (args[5] or "1") == "1"
  math.randomseed(seed * 1009 + (tid or 0) * 7919)
  headers["Content-Type"] = "text/plain;charset=UTF-8"
  if mode == "noop" then path = "/bench/noop" end
  if mode == "xapi" then
    path = "/xAPI/statements"
    headers["Content-Type"] = "application/json"
    headers["Authorization"] = "Basic " .. key
  end
  headers["Origin"] = "https://lms.example.com"
  if close then headers["Connection"] = "close" end
end

local function r16() return math.random(0, 65535) end

local function uuid4()
  return string.format("%04x%04x-%04x-4%03x-%04x-%04x%04x%04x",
    r16(), r16(), r16(), r16() % 4096, 32768 + r16() % 16384, r16(), r16(), r16())
end

function request()
  if mode == "xapi" then
    local body = string.format(
      '{"id":"%s","actor":{"objectType":"Agent","mbox":"mailto:new-%s@example.com","name":"Learner %d"},' ..
      '"verb":{"id":"http://adlnet.gov/expapi/verbs/launched","display":{"en-US":"launched"}},' ..
      '"object":{"objectType":"Activity","id":"https://courses.example.com/course-%d"}}',
      uuid4(), uuid4(), math.random(1, 999), math.random(1, 4))
    return wrk.format("POST", path, headers, body)
  end
  local student
  if mode == "returning" then
    student = string.format("returning-%d@example.com", math.random(1, pool))
  elseif mode == "placeholder" then
    student = "undefined"
  else
    student = "new-" .. uuid4()
  end
  local body = string.format(
    '{"key":"%s","course":"Course %d","student_id":"%s","student_name":"Learner %d","event":"launch","event_id":"%s","scorm_version":"1.2"}',
    key, math.random(1, 4), student, math.random(1, 999), uuid4())
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end

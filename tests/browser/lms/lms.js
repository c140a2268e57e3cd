/* A strict test LMS: a real SCORM runtime behind a wrapper that records every call and
 * flags every call out of protocol. Learner data and launch come from the query string:
 *   ?version=1.2|2004&runtime=scorm-again|simplify-scorm&student_id=..&student_name=..
 *    &launch=pkg/a.html[|pkg/b.html...][&leave=1][&api=none][&location=..&suspend=..]
 * runtime: scorm-again (Scorm12API / Scorm2004API, the default) or simplify-scorm (1.2 only).
 * launch: one SCO, or several opened one after another by lmsNext() (each SCO gets a fresh
 *   runtime, as an LMS gives each SCO attempt its own API), with about:blank in between.
 * leave=1 navigates the whole page away as soon as the session is open.
 * location, suspend: a bookmark and suspend data from an earlier attempt (entry "resume").
 * It keeps records as a real LMS does: what the SCO set is stored when it commits or finishes,
 * and a SCORM 1.2 LMSFinish with cmi.core.lesson_status still "not attempted" stores
 * "completed" (SCORM 1.2 RTE 3.4.4, the rule Moodle 4.5 and most 1.2 LMSs apply), so a
 * finish the course did not make shows as the false completion it would be on a real LMS.
 * What it records, for the tests to read:
 *   lmsCalls: {sco, method, args, result, error} per call, error being the runtime's last
 *     error after the call, read from its state (not by calling GetLastError);
 *   lmsViolations: calls out of protocol (Get/Set/Commit/Finish before Initialize or after
 *     Finish, a second Initialize); GetLastError/GetErrorString/GetDiagnostic are allowed always;
 *   lmsLog: "Initialize"/"Finish" for each successful one;
 *   lmsRecord(sco): what the LMS stored for that SCO's attempt ({} when nothing was stored),
 *     keyed by data model element (status, score, location, suspend data, session time...).
 *   contentLog: where the test content writes what it saw (tests/tracker_lms.py).
 */
(function () {
  "use strict";
  var q = new URLSearchParams(window.location.search);
  var version = q.get("version");
  var runtimeName = q.get("runtime") || "scorm-again";
  var id = q.get("student_id") || "";
  var name = q.get("student_name") || "";
  var launches = (q.get("launch") || "").split("|");
  var NAMES = version === "1.2"
    ? { api: "API", init: "LMSInitialize", finish: "LMSFinish", data: ["LMSGetValue", "LMSSetValue", "LMSCommit"],
        info: ["LMSGetLastError", "LMSGetErrorString", "LMSGetDiagnostic"] }
    : { api: "API_1484_11", init: "Initialize", finish: "Terminate", data: ["GetValue", "SetValue", "Commit"],
        info: ["GetLastError", "GetErrorString", "GetDiagnostic"] };
  var sco = 0;
  var SimplifyScorm = window.module && window.module.exports.scormAPIFunc;
  window.API = undefined; // simplify-scorm's file declares a global function of that name
  window.lmsLog = [];
  window.lmsCalls = [];
  window.lmsViolations = [];
  window.contentLog = [];
  window.lmsStored = {};  // sco -> element -> value, as stored at Commit/Finish
  var STATUS = version === "1.2" ? "cmi.core.lesson_status" : "cmi.completion_status";
  var location = q.get("location") || "", suspend = q.get("suspend") || "";

  function makeRuntime() {
    var runtime;
    if (runtimeName === "simplify-scorm") {
      if (version !== "1.2") { throw new Error("simplify-scorm is a SCORM 1.2 runtime"); }
      runtime = new SimplifyScorm();
      runtime.cmi.core._student_id = id;
      runtime.cmi.core._student_name = name;
      if (location) { runtime.cmi.core.lesson_location = location; runtime.cmi.core._entry = "resume"; }
      if (suspend) { runtime.cmi.suspend_data = suspend; }
    } else if (version === "1.2") {
      runtime = new window.Scorm12API({ logLevel: 5 });
      runtime.loadFromJSON({ core: { student_id: id, student_name: name, lesson_location: location,
                                     entry: location ? "resume" : "ab-initio" }, suspend_data: suspend });
    } else {
      runtime = new window.Scorm2004API({ logLevel: 5 });
      runtime.loadFromJSON({ learner_id: id, learner_name: name, location: location, suspend_data: suspend,
                             entry: location ? "resume" : "ab-initio" });
    }
    window.lmsRuntime = runtime;
    return runtime;
  }

  function strict(runtime) {
    var state = "new", facade = {}, thisSco = sco, pending = {};
    function store(finishing) {
      var stored = window.lmsStored[thisSco] || (window.lmsStored[thisSco] = {});
      for (var element in pending) { if (pending.hasOwnProperty(element)) { stored[element] = pending[element]; } }
      pending = {};
      if (finishing && version === "1.2" && (stored[STATUS] || "not attempted") === "not attempted") {
        stored[STATUS] = "completed";
      }
    }
    var methods = [NAMES.init, NAMES.finish].concat(NAMES.data, NAMES.info);
    methods.forEach(function (method) {
      facade[method] = function () {
        var args = Array.prototype.slice.call(arguments);
        var info = NAMES.info.indexOf(method) >= 0;
        var problem = null;
        if (method === NAMES.init && state !== "new") {
          problem = method + (state === "open" ? " a second time" : " after " + NAMES.finish);
        } else if (!info && method !== NAMES.init && state === "new") {
          problem = method + " before " + NAMES.init;
        } else if (!info && state === "done") {
          problem = method + " after " + NAMES.finish;
        }
        var result = runtime[method].apply(runtime, args);
        var record = { sco: thisSco, method: method, args: args,
                       result: result === undefined ? null : String(result), error: String(runtime.lastErrorCode) };
        if (problem) {
          record.violation = problem;
          window.lmsViolations.push("SCO " + thisSco + ": " + problem + " " + JSON.stringify(args));
        }
        window.lmsCalls.push(record);
        if (method === NAMES.data[1] && state === "open" && String(result) === "true") {
          pending[String(args[0])] = String(args[1]);
        } else if (method === NAMES.data[2] && state === "open" && String(result) === "true") {
          store(false);
        }
        if (method === NAMES.init && state === "new" && String(result) === "true") {
          state = "open";
          window.lmsLog.push("Initialize");
          if (q.get("leave")) { window.setTimeout(function () { window.location.replace("about:blank"); }, 0); }
        } else if (method === NAMES.finish && state === "open" && String(result) === "true") {
          state = "done";
          store(true);
          window.lmsLog.push("Finish");
        }
        return result;
      };
    });
    facade.cmi = runtime.cmi; // for tests that read what the LMS stored
    return facade;
  }

  function install() {
    if (q.get("api") !== "none") { window[NAMES.api] = strict(makeRuntime()); }
    window.lmsSco = sco; // which SCO is (being) launched
  }
  window.lmsLaunches = launches;
  window.lmsRecord = function (n) { return window.lmsStored[n === undefined ? 0 : n] || {}; };

  // The LMS's own navigation: unload the current SCO, then launch the next with a fresh API.
  window.lmsNext = function () {
    var frame = document.getElementById("content");
    frame.onload = function () {
      frame.onload = null;
      sco += 1;
      install();
      frame.src = launches[sco];
    };
    frame.src = "about:blank";
  };

  install();
  document.addEventListener("DOMContentLoaded", function () {
    document.getElementById("content").src = launches[0];
  });
})();

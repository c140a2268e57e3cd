/* A strict test LMS: a real SCORM runtime behind a wrapper that records every call and
 * flags every call out of protocol. Learner data and launch come from the query string:
 *   ?version=1.2|2004&runtime=scorm-again|simplify-scorm&student_id=..&student_name=..
 *    &launch=pkg/a.html[|pkg/b.html...][&leave=1][&api=none]
 * runtime: scorm-again (Scorm12API / Scorm2004API, the default) or simplify-scorm (1.2 only).
 * launch: one SCO, or several opened one after another by lmsNext() (each SCO gets a fresh
 *   runtime, as an LMS gives each SCO attempt its own API), with about:blank in between.
 * leave=1 navigates the whole page away as soon as the session is open.
 * What it records, for the tests to read:
 *   lmsCalls: {sco, method, args, result, error} per call, error being the runtime's last
 *     error after the call, read from its state (not by calling GetLastError);
 *   lmsViolations: calls out of protocol (Get/Set/Commit/Finish before Initialize or after
 *     Finish, a second Initialize); GetLastError/GetErrorString/GetDiagnostic are allowed always;
 *   lmsLog: "Initialize"/"Finish" for each successful one;
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

  function makeRuntime() {
    var runtime;
    if (runtimeName === "simplify-scorm") {
      if (version !== "1.2") { throw new Error("simplify-scorm is a SCORM 1.2 runtime"); }
      runtime = new SimplifyScorm();
      runtime.cmi.core._student_id = id;
      runtime.cmi.core._student_name = name;
    } else if (version === "1.2") {
      runtime = new window.Scorm12API({ logLevel: 5 });
      runtime.loadFromJSON({ core: { student_id: id, student_name: name } });
    } else {
      runtime = new window.Scorm2004API({ logLevel: 5 });
      runtime.loadFromJSON({ learner_id: id, learner_name: name });
    }
    window.lmsRuntime = runtime;
    return runtime;
  }

  function strict(runtime) {
    var state = "new", facade = {}, thisSco = sco;
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
        if (method === NAMES.init && state === "new" && String(result) === "true") {
          state = "open";
          window.lmsLog.push("Initialize");
          if (q.get("leave")) { window.setTimeout(function () { window.location.replace("about:blank"); }, 0); }
        } else if (method === NAMES.finish && state === "open" && String(result) === "true") {
          state = "done";
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

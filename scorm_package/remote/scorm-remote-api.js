/* Remote package, course side: the SCORM API the course talks to, served with the content.
 *
 * Plain ES5, loaded before the tracker and the course. The launcher in the LMS hands over
 * the learner and status in this page's URL fragment; this script answers the course's
 * calls from that data at once (SCORM calls are synchronous) and posts every change,
 * commit and finish to the launcher (window.parent, at the LMS origin it gave), which
 * applies them to the LMS. Opened without a launcher, it defines nothing.
 */
(function (window) {
  "use strict";
  var MARK = "#scorm-remote=";
  var hash = window.location.hash;
  if (hash.indexOf(MARK) !== 0 || window.parent === window) { return; }
  var hand;
  try { hand = JSON.parse(decodeURIComponent(hash.slice(MARK.length))); } catch (e) { return; }
  if (!hand || !hand.open || typeof hand.lms !== "string" || !hand.data) { return; }
  try { window.history.replaceState(null, "", window.location.pathname + window.location.search); } catch (e) { }

  var data = hand.data, lms = hand.lms, state = "new";

  function post(message) {
    message.scormRemote = 1;
    try { window.parent.postMessage(message, lms); } catch (e) { /* the launcher is gone */ }
  }

  function api(names) {
    var methods = {};
    methods[names.init] = function () {
      if (state !== "new") { return "false"; }
      state = "open";
      return "true";
    };
    methods[names.finish] = function () {
      if (state !== "open") { return "false"; }
      state = "done";
      post({ call: "finish" });
      return "true";
    };
    methods[names.get] = function (element) {
      var value = data[String(element)];
      return value === undefined ? "" : value;
    };
    methods[names.set] = function (element, value) {
      if (state !== "open") { return "false"; }
      data[String(element)] = String(value);
      post({ call: "set", element: String(element), value: String(value) });
      return "true";
    };
    methods[names.commit] = function () {
      if (state !== "open") { return "false"; }
      post({ call: "commit" });
      return "true";
    };
    methods[names.error] = function () { return "0"; };
    methods[names.errorString] = function () { return ""; };
    methods[names.diagnostic] = function () { return ""; };
    return methods;
  }

  if (hand.version === "1.2") {
    window.API = api({ init: "LMSInitialize", finish: "LMSFinish", get: "LMSGetValue", set: "LMSSetValue",
                       commit: "LMSCommit", error: "LMSGetLastError", errorString: "LMSGetErrorString",
                       diagnostic: "LMSGetDiagnostic" });
  } else {
    window.API_1484_11 = api({ init: "Initialize", finish: "Terminate", get: "GetValue", set: "SetValue",
                               commit: "Commit", error: "GetLastError", errorString: "GetErrorString",
                               diagnostic: "GetDiagnostic" });
  }
})(window);

/* Remote package, course side: the SCORM API the course talks to, served with the content.
 *
 * Plain ES5, loaded first in the player page (scorm-player.html, on the content origin), before
 * the tracker; the player then frames the course, which finds this API in its parent, its own
 * origin. The launcher in the LMS (the player's parent) hands over, in the player URL's fragment, whether the LMS session is open (and the
 * LMS's error code if not), a snapshot of the data model (each element's value and the LMS's
 * error code for reading it) and the LMS's own error strings. SCORM calls are synchronous and
 * the LMS is in another origin, so this script answers at once:
 * - session state (a call before Initialize, a second Initialize, a call after Terminate) with
 *   the codes of the version's standard (1.2: 101, 301; 2004: 103, 104, 112, 113, 122, 123,
 *   132, 133, 142, 143);
 * - GetValue from the snapshot, with the LMS's own error code, or from what the course set;
 *   write-only elements 404 (1.2) / 405 (2004); unknown elements 401 (2004: 403 for an element
 *   of the model not yet set);
 * - SetValue of read-only elements 403 (1.2) / 404 (2004); values of the vocabularies and
 *   ranges every LMS checks (statuses, exit, entry, scores) 405 (1.2) / 406, 407 (2004);
 * - everything else is applied to the LMS in order; when the LMS answers with an error, that
 *   error (its code, GetErrorString and GetDiagnostic as the LMS gives them) becomes the last
 *   error unless the course has made another call since, and the element reads as before.
 * The course's successful Initialize is posted too ("init"): the launcher relays nothing, and
 * finishes nothing, for a course that never started.
 * Messages are posted only to the LMS origin the launcher gave, and taken only from the parent
 * window at that origin. window.scormRemote names that origin for the tracker's beacon and keeps
 * the tracker's visit markers (one launch per visit, however many SCOs) and its queue of unsent
 * beacons with the launcher, in the LMS origin's storage.
 * Opened without a launcher, it defines nothing.
 */
(function (window) {
  "use strict";
  var MARK = "#scorm-remote=";
  var hash = window.location.hash;
  if (hash.indexOf(MARK) !== 0 || window.parent === window) { return; }
  var hand;
  try { hand = JSON.parse(decodeURIComponent(hash.slice(MARK.length))); } catch (e) { return; }
  if (!hand || typeof hand.lms !== "string" || !hand.data) { return; }
  try { window.history.replaceState(null, "", window.location.pathname + window.location.search); } catch (e) { }

  var v12 = hand.version === "1.2";
  var snapshot = hand.data, strings = hand.strings || {}, lms = hand.lms;
  var written = {}, previous = {}, state = "new", lastError = "0", seq = 0, lmsDiagnostics = {};

  var E = v12 ? { general: "101", argument: "201", notInit: "301", notInitGet: "301", notInitSet: "301",
                  notInitCommit: "301", afterGet: "301", afterSet: "301", afterCommit: "301",
                  already: "101", terminated: "101", finishBefore: "301", finishAfter: "301",
                  emptyGet: "201", emptySet: "201", readOnly: "403", writeOnly: "404", unknown: "401",
                  notSet: "401", type: "405", range: "405", initFail: "101" }
              : { general: "101", argument: "201", notInit: "122", notInitGet: "122", notInitSet: "132",
                  notInitCommit: "142", afterGet: "123", afterSet: "133", afterCommit: "143",
                  already: "103", terminated: "104", finishBefore: "112", finishAfter: "113",
                  emptyGet: "301", emptySet: "351", readOnly: "404", writeOnly: "405", unknown: "401",
                  notSet: "403", type: "406", range: "407", initFail: "102" };

  var READ_ONLY = v12
    ? /^cmi\.(core\.(_children|student_id|student_name|credit|entry|score\._children|total_time|lesson_mode)|launch_data|comments_from_lms|objectives\.(_children|_count|\d+\.score\._children)|student_data\.(_children|mastery_score|max_time_allowed|time_limit_action)|student_preference\._children|interactions\.(_children|_count|\d+\.(objectives|correct_responses)\._count))$/
    : /^(cmi\.(_version|comments_from_learner\.(_children|_count)|comments_from_lms(\..*)?|completion_threshold|credit|entry|interactions\.(_children|_count|\d+\.(objectives|correct_responses)\._count)|launch_data|learner_id|learner_name|learner_preference\._children|max_time_allowed|mode|objectives\.(_children|_count|\d+\.score\._children)|scaled_passing_score|score\._children|time_limit_action|total_time)|adl\.nav\.request_valid\..*)$/;
  var WRITE_ONLY = v12
    ? /^cmi\.(core\.(exit|session_time)|interactions\.\d+\.(id|objectives\.\d+\.id|time|type|correct_responses\.\d+\.pattern|weighting|student_response|result|latency))$/
    : /^cmi\.(exit|session_time)$/;
  var KNOWN = v12
    ? /^cmi\.(core\.[a-z_.]+|suspend_data|launch_data|comments|comments_from_lms|objectives\.(\d+\.)?[a-z_.]+|student_data\.[a-z_]+|student_preference\.[a-z_]+|interactions\.(\d+\.)?[a-z_.0-9]+)$/
    : /^(cmi\.[a-z_]+(\.\d+)?(\.[a-z_]+)*(\.\d+)?(\.[a-z_]+)*|adl\.nav\.[a-z_.{}=0-9-]+)$/;
  var VOCABULARY = v12 ? {
    "cmi.core.lesson_status": ["passed", "completed", "failed", "incomplete", "browsed", "not attempted"],
    "cmi.core.exit": ["time-out", "suspend", "logout", ""]
  } : {
    "cmi.completion_status": ["completed", "incomplete", "not attempted", "unknown"],
    "cmi.success_status": ["passed", "failed", "unknown"],
    "cmi.exit": ["timeout", "suspend", "logout", "normal", ""]
  };
  var NUMBERS = v12 ? /^cmi\.core\.score\.(raw|min|max)$/ : /^cmi\.(score\.(raw|min|max)|objectives\.\d+\.score\.(raw|min|max))$/;
  var SCALED = /^cmi\.(score\.scaled|objectives\.\d+\.score\.scaled|progress_measure|objectives\.\d+\.progress_measure)$/;

  function post(message) {
    message.scormRemote = 1;
    message.seq = ++seq;
    try { window.parent.postMessage(message, lms); } catch (e) { /* the launcher is gone */ }
    return message.seq;
  }

  window.addEventListener("message", function (event) {
    if (event.source !== window.parent || event.origin !== lms) { return; }
    var reply = event.data;
    if (!reply || reply.scormRemote !== 1 || reply.call !== "result" || reply.error === "0") { return; }
    // The LMS refused a change: it reads as before, and the course hears of it if it has not moved on.
    var element = pending[reply.seq];
    if (element !== undefined) {
      if (previous[element] === undefined) { delete written[element]; } else { written[element] = previous[element]; }
    }
    delete pending[reply.seq];
    strings[reply.error] = reply.errorString !== undefined ? reply.errorString : strings[reply.error];
    lmsDiagnostics[reply.error] = reply.diagnostic;
    if (reply.seq === seq && lastCallSeq === seq) { lastError = String(reply.error); }
  });
  var pending = {}, lastCallSeq = 0;

  function fail(code, result) { lastError = code; lastCallSeq = -1; return result === undefined ? "false" : result; }
  function ok(result) { lastError = "0"; lastCallSeq = -1; return result; }

  function check(name, value) {
    if (VOCABULARY[name] && VOCABULARY[name].indexOf(value) < 0) { return E.type; }
    if (NUMBERS.test(name) && value !== "") {
      if (!/^-?\d+(\.\d+)?$/.test(value)) { return E.type; }
      if (v12 && (parseFloat(value) < 0 || parseFloat(value) > 100)) { return E.range; }
    }
    if (SCALED.test(name)) {
      if (!/^-?\d+(\.\d+)?$/.test(value)) { return E.type; }
      var n = parseFloat(value);
      if (n > 1 || n < (/progress_measure/.test(name) ? 0 : -1)) { return E.range; }
    }
    return "0";
  }

  var api = {
    init: function (param) {
      if (String(param) !== "") { return fail(E.argument); }
      if (state === "open") { return fail(E.already); }
      if (state === "done") { return fail(E.terminated); }
      if (!hand.open) { return fail(String(hand.initError || E.initFail)); }
      state = "open";
      post({ call: "init" });
      return ok("true");
    },
    finish: function (param) {
      if (String(param) !== "") { return fail(E.argument); }
      if (state === "new") { return fail(E.finishBefore); }
      if (state === "done") { return fail(E.finishAfter); }
      state = "done";
      post({ call: "finish" });
      return ok("true");
    },
    get: function (element) {
      var name = String(element);
      if (state === "new") { return fail(E.notInitGet, ""); }
      if (state === "done") { return fail(E.afterGet, ""); }
      if (name === "") { return fail(E.emptyGet, ""); }
      if (WRITE_ONLY.test(name)) { return fail(E.writeOnly, ""); }
      if (written.hasOwnProperty(name)) { return ok(written[name]); }
      if (snapshot.hasOwnProperty(name)) {
        var entry = snapshot[name];
        return entry[1] === "0" ? ok(entry[0]) : fail(String(entry[1]), entry[0]);
      }
      return fail(KNOWN.test(name) ? E.notSet : E.unknown, "");
    },
    set: function (element, value) {
      var name = String(element), text = String(value);
      if (state === "new") { return fail(E.notInitSet); }
      if (state === "done") { return fail(E.afterSet); }
      if (name === "") { return fail(E.emptySet); }
      if (READ_ONLY.test(name) || /\._(children|count|version)$/.test(name)) { return fail(E.readOnly); }
      if (!KNOWN.test(name)) { return fail(E.unknown); }
      var problem = check(name, text);
      if (problem !== "0") { return fail(problem); }
      previous[name] = written.hasOwnProperty(name) ? written[name] : undefined;
      written[name] = text;
      pending[post({ call: "set", element: name, value: text })] = name;
      lastError = "0";
      lastCallSeq = seq;
      return "true";
    },
    commit: function (param) {
      if (String(param) !== "") { return fail(E.argument); }
      if (state === "new") { return fail(E.notInitCommit); }
      if (state === "done") { return fail(E.afterCommit); }
      post({ call: "commit" });
      lastError = "0";
      lastCallSeq = seq;
      return "true";
    },
    error: function () { return lastError; },
    errorString: function (code) {
      var key = String(code);
      return strings.hasOwnProperty(key) ? strings[key] : "";
    },
    diagnostic: function (code) {
      var key = String(code) === "" ? lastError : String(code);
      if (lmsDiagnostics.hasOwnProperty(key) && lmsDiagnostics[key] !== undefined) { return lmsDiagnostics[key]; }
      return strings.hasOwnProperty(key) ? strings[key] : "";
    }
  };

  function face(names) {
    var methods = {};
    for (var call in names) { if (names.hasOwnProperty(call)) { methods[names[call]] = api[call]; } }
    return methods;
  }

  // The tracker's visit markers and its queue of unsent beacons live with the launcher (the LMS
  // origin's storage): they came in the hand-over, and each change goes back (no seq: these are no
  // SCORM calls and get no answer).
  function keep(call, fields) {
    fields.scormRemote = 1;
    fields.call = call;
    try { window.parent.postMessage(fields, lms); } catch (e) { }
  }
  window.scormRemote = {
    lms: lms,
    placeholder: hand.placeholder === true, // a sealed launcher found a placeholder ID before sealing it
    courseLoaded: false, // set by the player's frame when the course's page has loaded
    visits: hand.visits && typeof hand.visits === "object" ? hand.visits : {},
    saveVisit: function (key, visit) { keep("visit", { key: String(key), visit: visit }); },
    queue: Object.prototype.toString.call(hand.queue) === "[object Array]" ? hand.queue : [],
    saveQueue: function (items) { keep("queue", { items: items }); }
  };
  if (v12) {
    window.API = face({ init: "LMSInitialize", finish: "LMSFinish", get: "LMSGetValue", set: "LMSSetValue",
                        commit: "LMSCommit", error: "LMSGetLastError", errorString: "LMSGetErrorString",
                        diagnostic: "LMSGetDiagnostic" });
  } else {
    window.API_1484_11 = face({ init: "Initialize", finish: "Terminate", get: "GetValue", set: "SetValue",
                                commit: "Commit", error: "GetLastError", errorString: "GetErrorString",
                                diagnostic: "GetDiagnostic" });
  }
})(window);

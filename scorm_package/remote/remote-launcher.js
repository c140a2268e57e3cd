/* Remote package launcher: runs in the LMS, frames the course's player from the content origin
 * and relays the course's SCORM calls to the LMS.
 *
 * Plain ES5. The package builder replaces the CONFIG line: the content origin, the SCORM
 * version and one launch address per SCO item (this page is opened as index.html?sco=N).
 * The launch address answers with the player page on the content origin, which holds the
 * SCORM API the course finds in its parent (scorm-remote-api.js) and frames the course.
 *
 * The relay, LMS side:
 * - it finds the LMS API (parents, then opener), opens the LMS session, and reads a snapshot
 *   of the data model: each element's value and the LMS's own error code for it, and the
 *   LMS's own error strings. The snapshot goes to the player in its URL's fragment (never
 *   sent to any server), so the course's GetValue is answered synchronously with what the
 *   LMS answered;
 * - the player posts "init" when the course's Initialize succeeds, then every SetValue,
 *   Commit and Terminate; they are applied to the LMS in order, and each LMS result (return
 *   value, GetLastError, GetErrorString, GetDiagnostic) is posted back, so a refusal of the
 *   LMS reaches the course;
 * - messages are taken only from the player's window at the content origin, and posted only
 *   to that origin.
 *
 * No false record: the launcher's own session never gives the learner a status.
 * - A course that never started (its page failed to load, the player was refused by
 *   frame-ancestors, its driver never initialised, the learner left first, or a licence
 *   limit kept it from opening) gets no Finish and no SetValue from here: the LMS record
 *   stays as it was ("not attempted" for a new learner).
 * - A course that started but had not finished when this page goes away (its own Finish,
 *   sent from its unload handler, may never arrive once this page is gone) is finished
 *   here, so what it set is kept; on SCORM 1.2 a status still "not attempted" is first set
 *   to "incomplete", because a 1.2 LMS turns a finish without a status into "completed".
 *
 * Licence limits: before framing the course, the launcher asks the content origin whether
 * this learner may open it (POST seatUrl, the student ID in the body, never in an address).
 * Only a client whose licence blocks new learners at its limit answers "no", and only for a
 * learner not yet counted; the launcher then frames the polite limit page. For such a client
 * an allowed learner's answer carries a seat grant, short-lived and bound to the package,
 * the version and the learner: the launcher frames the launch address with it, and the
 * content origin serves that client's course only with one. Any failure or a slow answer (5 s)
 * frames the course without a grant, which opens for every other client: our server being
 * down never keeps a learner from learning.
 *
 * Sealed packages (CONFIG.sealed): the client wrote SEAL into this file (in its own browser or
 * with the offline command; the vendor never holds it). Before anything reaches the content
 * origin, the learner's ID and name in the snapshot are replaced by their sealed forms
 * (sealing.js, WebCrypto), so the player, its tracker, the course and the seat check see only
 * those; a placeholder ID is flagged in the hand-over first. Should sealing be impossible (no
 * SEAL, no WebCrypto, an ID the server would refuse) the course still opens, with an empty ID
 * and name: a plain one never leaves the LMS.
 */
(function (window) {
  "use strict";
  var CONFIG = /*@LAUNCHER_CONFIG@*/ null;
  var SEAL = /*@PACKAGE_SEAL@*/ null;
/*@SEAL_LIBRARY@*/
  var NAMES = {
    "1.2": { api: "API", init: "LMSInitialize", finish: "LMSFinish", get: "LMSGetValue", set: "LMSSetValue",
             commit: "LMSCommit", error: "LMSGetLastError", errorString: "LMSGetErrorString",
             diagnostic: "LMSGetDiagnostic" },
    "2004": { api: "API_1484_11", init: "Initialize", finish: "Terminate", get: "GetValue", set: "SetValue",
              commit: "Commit", error: "GetLastError", errorString: "GetErrorString", diagnostic: "GetDiagnostic" }
  };
  var CODES = {
    "1.2": ["0", "101", "201", "202", "203", "301", "401", "402", "403", "404", "405"],
    "2004": ["0", "101", "102", "103", "104", "111", "112", "113", "122", "123", "132", "133", "142", "143",
             "201", "301", "351", "391", "401", "402", "403", "404", "405", "406", "407", "408"]
  };
  var SNAPSHOT = {
    "1.2": ["cmi.core._children", "cmi.core.student_id", "cmi.core.student_name", "cmi.core.lesson_location",
            "cmi.core.credit", "cmi.core.lesson_status", "cmi.core.entry", "cmi.core.score._children",
            "cmi.core.score.raw", "cmi.core.score.min", "cmi.core.score.max", "cmi.core.total_time",
            "cmi.core.lesson_mode", "cmi.suspend_data", "cmi.launch_data", "cmi.comments", "cmi.comments_from_lms",
            "cmi.objectives._children", "cmi.objectives._count", "cmi.student_data._children",
            "cmi.student_data.mastery_score", "cmi.student_data.max_time_allowed",
            "cmi.student_data.time_limit_action", "cmi.student_preference._children",
            "cmi.student_preference.audio", "cmi.student_preference.language", "cmi.student_preference.speed",
            "cmi.student_preference.text", "cmi.interactions._children", "cmi.interactions._count"],
    "2004": ["cmi._version", "cmi.comments_from_learner._children", "cmi.comments_from_learner._count",
             "cmi.comments_from_lms._children", "cmi.comments_from_lms._count", "cmi.completion_status",
             "cmi.completion_threshold", "cmi.credit", "cmi.entry", "cmi.interactions._children",
             "cmi.interactions._count", "cmi.launch_data", "cmi.learner_id", "cmi.learner_name",
             "cmi.learner_preference._children", "cmi.learner_preference.audio_level",
             "cmi.learner_preference.language", "cmi.learner_preference.delivery_speed",
             "cmi.learner_preference.audio_captioning", "cmi.location", "cmi.max_time_allowed", "cmi.mode",
             "cmi.objectives._children", "cmi.objectives._count", "cmi.progress_measure",
             "cmi.scaled_passing_score", "cmi.score._children", "cmi.score.scaled", "cmi.score.raw",
             "cmi.score.min", "cmi.score.max", "cmi.success_status", "cmi.suspend_data", "cmi.time_limit_action",
             "cmi.total_time", "adl.nav.request_valid.continue", "adl.nav.request_valid.previous"]
  };
  var OBJECTIVE_FIELDS = {
    "1.2": ["id", "score.raw", "score.min", "score.max", "status"],
    "2004": ["id", "score.scaled", "score.raw", "score.min", "score.max", "success_status", "completion_status",
             "progress_measure", "description"]
  };
  var COMMENT_FIELDS = ["comment", "location", "timestamp"];
  // The tracker's visit markers (one launch per visit, however many SCOs) and its queue of unsent
  // beacons: kept here, in the LMS origin's storage, since the player's storage is a third party's.
  var VISIT_PREFIX = "scormUsageTracker.visit.v1.";
  var QUEUE_KEY = "scormUsageTracker.queue.v1";
  var QUEUE_MAX = 20, QUEUE_MAX_CHARS = 64 * 1024;

  function queue() {
    try {
      var items = JSON.parse(window.localStorage.getItem(QUEUE_KEY) || "[]");
      return Object.prototype.toString.call(items) === "[object Array]" ? items : [];
    } catch (e) { return []; }
  }

  function keepQueue(items) {
    if (Object.prototype.toString.call(items) !== "[object Array]" || items.length > QUEUE_MAX) { return; }
    try {
      var text = JSON.stringify(items);
      if (!items.length) {
        window.localStorage.removeItem(QUEUE_KEY);
      } else if (text.length <= QUEUE_MAX_CHARS) {
        window.localStorage.setItem(QUEUE_KEY, text);
      }
    } catch (e) { /* no storage: the beacon is simply not retried */ }
  }

  function visits() {
    var out = {};
    try {
      for (var i = 0; i < window.sessionStorage.length; i++) {
        var key = window.sessionStorage.key(i);
        if (key && key.indexOf(VISIT_PREFIX) === 0) { out[key] = JSON.parse(window.sessionStorage.getItem(key)); }
      }
    } catch (e) { /* no storage: each SCO is its own visit */ }
    return out;
  }

  function keepVisit(key, visit) {
    if (typeof key !== "string" || key.indexOf(VISIT_PREFIX) !== 0 || key.length > 200 || !visit ||
        typeof visit !== "object") { return; }
    try {
      var text = JSON.stringify(visit);
      if (text.length <= 2000) { window.sessionStorage.setItem(key, text); }
    } catch (e) { /* no storage */ }
  }

  function findApi(name) {
    function search(win) {
      for (var depth = 0; win && depth < 20; depth++) {
        try { if (win[name]) { return win[name]; } } catch (e) { /* another origin */ }
        var parent;
        try { parent = win.parent; } catch (e) { return null; }
        if (!parent || parent === win) { return null; }
        win = parent;
      }
      return null;
    }
    var found = search(window);
    if (!found && window.opener) {
      try { found = search(window.opener); } catch (e) { found = null; }
    }
    return found;
  }

  function scoIndex() {
    var match = /[?&]sco=(\d+)/.exec(window.location.search);
    var n = match ? parseInt(match[1], 10) : 0;
    return n < CONFIG.launchUrls.length ? n : 0;
  }

  function start() {
    var version = CONFIG.scormVersion, names = NAMES[version];
    var frame = document.getElementById("remote-content");
    var api = findApi(names.api);
    var open = false, started = false, finished = false, data = {}, strings = {}, initError = "101";

    function call(method, args) {
      var result = String(api[method].apply(api, args));
      var code = String(api[names.error]());
      return { result: result, error: code };
    }
    function read(element) {
      var answer = call(names.get, [element]);
      data[element] = [answer.result, answer.error];
      return answer;
    }

    if (api) {
      var opened = call(names.init, [""]);
      initError = opened.error;
      open = opened.result === "true";
      var i, j, k;
      for (i = 0; i < CODES[version].length; i++) {
        strings[CODES[version][i]] = String(api[names.errorString](CODES[version][i]));
      }
      if (open) {
        var elements = SNAPSHOT[version];
        for (i = 0; i < elements.length; i++) { read(elements[i]); }
        var count = parseInt((data["cmi.objectives._count"] || ["0"])[0], 10) || 0;
        for (i = 0; i < count && i < 250; i++) {
          for (j = 0; j < OBJECTIVE_FIELDS[version].length; j++) {
            read("cmi.objectives." + i + "." + OBJECTIVE_FIELDS[version][j]);
          }
        }
        if (version === "2004") {
          var lists = ["cmi.comments_from_learner", "cmi.comments_from_lms"];
          for (k = 0; k < lists.length; k++) {
            var comments = parseInt((data[lists[k] + "._count"] || ["0"])[0], 10) || 0;
            for (i = 0; i < comments && i < 250; i++) {
              for (j = 0; j < COMMENT_FIELDS.length; j++) { read(lists[k] + "." + i + "." + COMMENT_FIELDS[j]); }
            }
          }
        }
      }
    } else {
      initError = version === "1.2" ? "101" : "102";
    }

    function finish() {
      if (!open || finished) { return null; }
      finished = true;
      return call(names.finish, [""]);
    }

    // This page is going away: finish for a course that started and did not (see the header).
    function leave() {
      if (!open || finished || !started) { return; }
      var status = version === "1.2" ? call(names.get, ["cmi.core.lesson_status"]).result : null;
      if (status === "not attempted" || status === "") { // some LMSs read "" for no status
        call(names.set, ["cmi.core.lesson_status", "incomplete"]);
      }
      finish();
    }

    function answer(message, outcome) {
      if (!outcome || !frame.contentWindow) { return; }
      var reply = { scormRemote: 1, call: "result", seq: message.seq, result: outcome.result,
                    error: outcome.error };
      if (outcome.error !== "0") {
        reply.errorString = String(api[names.errorString](outcome.error));
        reply.diagnostic = String(api[names.diagnostic](outcome.error));
      }
      try { frame.contentWindow.postMessage(reply, CONFIG.contentOrigin); } catch (e) { /* gone */ }
    }

    window.addEventListener("message", function (event) {
      if (event.origin !== CONFIG.contentOrigin || event.source !== frame.contentWindow) { return; }
      var message = event.data;
      if (!message || message.scormRemote !== 1) { return; }
      if (message.call === "visit") { keepVisit(message.key, message.visit); return; } // even after a Finish
      if (message.call === "queue") { keepQueue(message.items); return; }
      if (!open || finished) { return; }
      if (message.call === "init") {
        started = true;
      } else if (!started) {
        return; // nothing reaches the LMS before the course's own Initialize
      } else if (message.call === "set" && typeof message.element === "string") {
        answer(message, call(names.set, [message.element, String(message.value)]));
      } else if (message.call === "commit") {
        answer(message, call(names.commit, [""]));
      } else if (message.call === "finish") {
        answer(message, finish());
      }
    });
    window.addEventListener("pagehide", leave);

    var hand = { version: version, lms: window.location.origin, open: open, initError: initError,
                 data: data, strings: strings, visits: visits(), queue: queue() };
    var idElement = version === "1.2" ? "cmi.core.student_id" : "cmi.learner_id";
    var nameElement = version === "1.2" ? "cmi.core.student_name" : "cmi.learner_name";
    if (!CONFIG.sealed || !data[idElement]) {
      frameCourse();
      return;
    }
    var plain = data[idElement], plainName = data[nameElement] || ["", "0"];
    function sealed(learner) {
      data[idElement] = [learner.id, plain[1]];
      if (data[nameElement]) { data[nameElement] = [learner.name, plainName[1]]; }
      hand.placeholder = learner.placeholder;
      frameCourse();
    }
    function unsealed() { sealed({ id: "", name: "", placeholder: false }); }
    try {
      ScormUsageSeal.sealLearner(SEAL, plain[0], plainName[0]).then(sealed, unsealed);
    } catch (e) { unsealed(); }

    // Frames the course once the learner in the hand-over is final (sealed, for a sealed
    // client), with a seat grant when the client's licence asks for one.
    function frameCourse() {
      var launchUrl = CONFIG.launchUrls[scoIndex()];
      var fragment = "#scorm-remote=" + encodeURIComponent(JSON.stringify(hand));
      var learner = data[idElement];
      if (!CONFIG.seatUrl || !open || !learner || learner[1] !== "0" || !learner[0] || !window.fetch) {
        frame.src = launchUrl + fragment;
        return;
      }
      var settled = false, granted = false;
      function show(url) {
        if (!settled) { settled = true; frame.src = url; }
      }
      // A grant: the launch address with it (".../g/<grant>/launch/<n>"), which the content origin
      // asks for while the client's licence blocks new learners.
      function withGrant(grant) {
        var at = launchUrl.lastIndexOf("/launch/");
        return launchUrl.slice(0, at) + "/g/" + encodeURIComponent(grant) + launchUrl.slice(at) + fragment;
      }
      window.setTimeout(function () { show(launchUrl + fragment); }, 5000);
      window.fetch(CONFIG.seatUrl, { method: "POST", mode: "cors", credentials: "omit", cache: "no-store",
                                     headers: { "Content-Type": "text/plain" },
                                     body: JSON.stringify({ student_id: learner[0] }) })
        .then(function (response) { return response.ok ? response.json() : { allowed: true }; })
        .then(function (answer) {
          if (answer && typeof answer.grant === "string" && answer.grant && !granted && !started) {
            // Even after the 5 s wait: without the grant, such a client's course did not open.
            granted = settled = true;
            frame.src = withGrant(answer.grant);
          } else if (answer && answer.allowed === false && !settled) {
            show(CONFIG.limitUrl); // the course never starts: the LMS record is left as it was
          } else {
            show(launchUrl + fragment);
          }
        }, function () { show(launchUrl + fragment); });
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    try { start(); } catch (e) {
      var message = document.getElementById("remote-message");
      message.textContent = "The course could not be started.";
      message.hidden = false;
    }
  });
})(window);

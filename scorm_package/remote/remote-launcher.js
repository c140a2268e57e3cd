/* Remote package launcher: runs in the LMS, opens the course from the usage server in a
 * full-size iframe and relays the course's SCORM calls to the LMS.
 *
 * Plain ES5. The package builder replaces the CONFIG line. It finds the LMS API with the
 * tracker's own finder (scorm-usage-tracker.js, loaded unconfigured: it sends nothing),
 * opens the LMS session, reads the learner and the status, and hands them to the course
 * in the iframe URL's fragment (never sent to any server). The course side
 * (scorm-remote-api.js, served with the content) answers the course's calls from that
 * data and posts the changes here; only messages from the iframe, from the server's
 * origin, are applied.
 */
(function (window) {
  "use strict";
  var CONFIG = /*@LAUNCHER_CONFIG@*/ null;
  var READ = {
    "1.2": ["cmi.core.student_id", "cmi.core.student_name", "cmi.core.lesson_status", "cmi.core.lesson_location",
            "cmi.core.entry", "cmi.core.score.raw", "cmi.suspend_data", "cmi.launch_data"],
    "2004": ["cmi.learner_id", "cmi.learner_name", "cmi.completion_status", "cmi.success_status", "cmi.location",
             "cmi.entry", "cmi.score.scaled", "cmi.suspend_data", "cmi.launch_data"]
  };

  function start() {
    var frame = document.getElementById("remote-content");
    var finder = window.ScormUsageTracker;
    var found = finder ? finder.findApi(CONFIG.scormVersion) : null;
    var api = found && found.api, names = found && found.names;
    var open = false, finished = false, data = {};

    if (api && String(api[names.init]("")) === "true") {
      open = true;
      var elements = READ[found.version];
      for (var i = 0; i < elements.length; i++) {
        var value = String(api[names.get](elements[i]));
        if (String(api[names.error]()) === "0") { data[elements[i]] = value; }
      }
    }

    function finish() {
      if (!open || finished) { return; }
      finished = true;
      api[names.commit]("");
      api[names.finish]("");
    }

    window.addEventListener("message", function (event) {
      if (event.origin !== CONFIG.serverOrigin || event.source !== frame.contentWindow) { return; }
      var message = event.data;
      if (!open || finished || !message || message.scormRemote !== 1) { return; }
      if (message.call === "set" && typeof message.element === "string") {
        api[names.set](message.element, String(message.value));
      } else if (message.call === "commit") {
        api[names.commit]("");
      } else if (message.call === "finish") {
        finish();
      }
    });
    window.addEventListener("pagehide", finish);

    var hand = { version: found ? found.version : CONFIG.scormVersion, lms: window.location.origin,
                 open: open, data: data };
    frame.src = CONFIG.contentUrl + "#scorm-remote=" + encodeURIComponent(JSON.stringify(hand));
  }

  document.addEventListener("DOMContentLoaded", function () {
    try { start(); } catch (e) {
      var message = document.getElementById("remote-message");
      message.textContent = "The course could not be started.";
      message.hidden = false;
    }
  });
})(window);

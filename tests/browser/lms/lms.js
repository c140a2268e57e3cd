/* A minimal LMS for browser tests: the real scorm-again runtime, learner data from the query
 * string, the package opened in an iframe.
 *   ?version=1.2|2004&student_id=..&student_name=..&launch=pkg/index.html[&leave=1][&api=none]
 * leave=1 navigates the whole page away as soon as the content has initialised.
 */
(function () {
  "use strict";
  var q = new URLSearchParams(window.location.search);
  var version = q.get("version");
  var id = q.get("student_id") || "";
  var name = q.get("student_name") || "";
  window.lmsLog = [];
  if (q.get("api") !== "none") {
    var api;
    if (version === "1.2") {
      api = window.API = new window.Scorm12API({ logLevel: 5 });
      api.loadFromJSON({ core: { student_id: id, student_name: name } });
    } else {
      api = window.API_1484_11 = new window.Scorm2004API({ logLevel: 5 });
      api.loadFromJSON({ learner_id: id, learner_name: name });
    }
    var prefix = version === "1.2" ? "LMS" : "";
    ["Initialize", version === "1.2" ? "Finish" : "Terminate"].forEach(function (event) {
      api.on(prefix + event, function () {
        window.lmsLog.push(event);
        if (event === "Initialize" && q.get("leave")) {
          window.setTimeout(function () { window.location.replace("about:blank"); }, 0);
        }
      });
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.getElementById("content").src = q.get("launch");
  });
})();

/* The placeholder course: two pages and a completion button, talking SCORM like a real course. */
(function () {
  "use strict";
  var version = document.querySelector(".course").getAttribute("data-scorm-version");
  var calls = version === "1.2"
    ? { api: "API", init: "LMSInitialize", finish: "LMSFinish", set: "LMSSetValue", commit: "LMSCommit",
        status: [["cmi.core.lesson_status", "completed"]], started: [["cmi.core.lesson_status", "incomplete"]] }
    : { api: "API_1484_11", init: "Initialize", finish: "Terminate", set: "SetValue", commit: "Commit",
        status: [["cmi.completion_status", "completed"]], started: [["cmi.completion_status", "incomplete"]] };

  function findApi() {
    var win = window;
    for (var hops = 0; win && hops < 500; hops++) {
      try { if (win[calls.api]) { return win[calls.api]; } } catch (e) { break; }
      if (win.parent === win) { break; }
      win = win.parent;
    }
    try { return window.top.opener ? window.top.opener[calls.api] || null : null; } catch (e) { return null; }
  }

  var api = findApi();
  var open = false, done = false;
  function set(pairs) {
    if (!open) { return; }
    for (var i = 0; i < pairs.length; i++) { api[calls.set](pairs[i][0], pairs[i][1]); }
    api[calls.commit]("");
  }
  if (api) {
    open = String(api[calls.init]("")) === "true";
    set(calls.started);
  }

  var next = document.getElementById("next");
  var complete = document.getElementById("complete");
  next.addEventListener("click", function () {
    document.getElementById("page-1").hidden = true;
    document.getElementById("page-2").hidden = false;
    document.getElementById("progress").textContent = "Page 2 of 2";
    next.hidden = true;
    complete.hidden = false;
  });
  complete.addEventListener("click", function () {
    set(calls.status);
    complete.disabled = true;
    document.getElementById("status").textContent = "Completed. You can close this course.";
  });
  window.addEventListener("pagehide", function () {
    if (open && !done) { done = true; api[calls.finish](""); }
  });
})();

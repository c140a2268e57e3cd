/* SCORM usage tracker: tells the vendor's usage server that a learner opened this course.
 *
 * Plain ES5, no dependencies, no build step. The package builder replaces the
 * CONFIG line below with the client's settings. Rules it keeps:
 * - it never throws into the course and never makes the course wait;
 * - it never initialises the LMS session twice: a session the content opened is
 *   reused; one the tracker had to open is handed over when the content asks;
 * - a beacon is written to a small localStorage queue before it is sent and
 *   removed once the server has answered, so a launch lost to a network
 *   failure, a 5xx or a 429 is sent again on the next launch with the same
 *   event ID (the server stores it once); other 4xx answers are dropped.
 */
(function (window) {
  "use strict";
  var CONFIG = /*@TRACKER_CONFIG@*/ null;

  var QUEUE_KEY = "scormUsageTracker.queue.v1";
  var QUEUE_MAX = 20;
  var MAX_ATTEMPTS = 8;
  var MAX_AGE_MS = 30 * 24 * 3600 * 1000;
  var SELF_INIT_AFTER_MS = 2000;
  var VERSIONS = {
    "2004": {
      api: "API_1484_11", init: "Initialize", finish: "Terminate", get: "GetValue", set: "SetValue",
      commit: "Commit", error: "GetLastError", id: "cmi.learner_id", name: "cmi.learner_name"
    },
    "1.2": {
      api: "API", init: "LMSInitialize", finish: "LMSFinish", get: "LMSGetValue", set: "LMSSetValue",
      commit: "LMSCommit", error: "LMSGetLastError", id: "cmi.core.student_id", name: "cmi.core.student_name"
    }
  };
  // What the content reports as its status -> the server's event kinds.
  var STATUS_EVENTS = {
    "cmi.core.lesson_status": { completed: "completed", passed: "passed", failed: "failed" },
    "cmi.completion_status": { completed: "completed" },
    "cmi.success_status": { passed: "passed", failed: "failed" }
  };

  function safe(fn) {
    return function () {
      try { return fn.apply(this, arguments); } catch (e) { return undefined; }
    };
  }

  // --- finding the LMS API the standard way: parents first, then the opener ---

  function findIn(win, name) {
    for (var hops = 0; win && hops < 500; hops++) {
      try {
        if (win[name]) { return win[name]; }
      } catch (e) { return null; } // a cross-origin frame ends the walk
      if (!win.parent || win.parent === win) { break; }
      win = win.parent;
    }
    return null;
  }

  function findApi(preferred) {
    // The package's own version first (the LMS launched it as that), then 2004, then 1.2.
    var order = preferred === "1.2" ? ["1.2", "2004"] : ["2004", "1.2"];
    for (var i = 0; i < order.length; i++) {
      var names = VERSIONS[order[i]];
      var api = findIn(window, names.api);
      if (!api) {
        try { api = window.top.opener ? findIn(window.top.opener, names.api) : null; } catch (e) { api = null; }
      }
      if (api && typeof api[names.init] === "function" && typeof api[names.get] === "function") {
        return { api: api, names: names, version: order[i] };
      }
    }
    return null;
  }

  // --- identifiers and the queue ---

  function uuid4() {
    var c = window.crypto || window.msCrypto;
    if (c && typeof c.randomUUID === "function") { return c.randomUUID(); }
    var bytes = new Array(16), i;
    if (c && c.getRandomValues) {
      var buf = new Uint8Array(16);
      c.getRandomValues(buf);
      for (i = 0; i < 16; i++) { bytes[i] = buf[i]; }
    } else {
      for (i = 0; i < 16; i++) { bytes[i] = Math.floor(Math.random() * 256); }
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    var hex = "";
    for (i = 0; i < 16; i++) {
      hex += (bytes[i] + 0x100).toString(16).slice(1);
      if (i === 3 || i === 5 || i === 7 || i === 9) { hex += "-"; }
    }
    return hex;
  }

  function readQueue() {
    try {
      var items = JSON.parse(window.localStorage.getItem(QUEUE_KEY) || "[]");
      return Object.prototype.toString.call(items) === "[object Array]" ? items : [];
    } catch (e) { return []; }
  }

  function writeQueue(items) {
    try {
      var now = new Date().getTime();
      var kept = [];
      for (var i = 0; i < items.length; i++) {
        var item = items[i];
        if (item && item.url && item.body && item.tries < MAX_ATTEMPTS && now - item.at < MAX_AGE_MS) {
          kept.push(item);
        }
      }
      kept = kept.slice(-QUEUE_MAX);
      if (kept.length) {
        window.localStorage.setItem(QUEUE_KEY, JSON.stringify(kept));
      } else {
        window.localStorage.removeItem(QUEUE_KEY);
      }
    } catch (e) { /* storage full or disabled: the beacon is simply not retried */ }
  }

  function updateQueue(id, change) {
    var items = readQueue(), out = [];
    var found = false;
    for (var i = 0; i < items.length; i++) {
      if (items[i] && items[i].id === id) {
        found = true;
        if (change) { out.push(change(items[i])); }
      } else {
        out.push(items[i]);
      }
    }
    if (!found && change) { out.push(change(null)); }
    writeQueue(out);
  }

  // --- sending ---

  function send(item) {
    // Written ahead: a page closed before the answer leaves it queued for next time.
    updateQueue(item.id, function (old) {
      var next = old || item;
      next.tries = (next.tries || 0) + 1;
      return next;
    });
    var done = function () { updateQueue(item.id, null); };
    if (typeof window.fetch === "function") {
      var request;
      try {
        request = window.fetch(item.url, {
          method: "POST", keepalive: true, body: item.body, mode: "cors", credentials: "omit",
          headers: { "Content-Type": "text/plain;charset=UTF-8" }
        });
      } catch (e) { request = null; }
      if (request && request.then) {
        request.then(function (response) {
          var status = response.status;
          if (status === 429 || status >= 500) { return; } // stays queued
          done(); // stored (2xx), or refused for good (other 4xx)
        }, function () { /* network failure: stays queued */ });
        return;
      }
    }
    try {
      if (navigator.sendBeacon &&
          navigator.sendBeacon(item.url, new Blob([item.body], { type: "text/plain;charset=UTF-8" }))) {
        done();
      }
    } catch (e) { /* stays queued */ }
  }

  function flushQueue() {
    var items = readQueue();
    for (var i = 0; i < items.length; i++) {
      if (items[i] && items[i].url && items[i].body) { send(items[i]); }
    }
  }

  function beacon(event, learner) {
    var eventId = uuid4();
    var body = JSON.stringify({
      key: CONFIG.key, course: CONFIG.course, student_id: learner.id, student_name: learner.name,
      event: event, event_id: eventId, scorm_version: CONFIG.scormVersion, "package": CONFIG.packageId
    });
    send({ id: eventId, url: CONFIG.url, body: body, at: new Date().getTime(), tries: 0 });
  }

  // --- the LMS session ---

  function start() {
    if (!CONFIG || !CONFIG.url || !CONFIG.key) { return; }
    flushQueue();
    var found = findApi(CONFIG.scormVersion);
    if (!found) { return; } // opened outside an LMS: the course runs, nothing is sent
    var api = found.api, names = found.names;
    var learner = null;   // read once the session is open
    var ownSession = false; // the tracker opened the session and the content has not asked for it
    var contentAsked = false;
    var finished = false;
    var sentStatus = {};
    var originals = {};

    function call(method, arg) {
      return String(originals[method] ? originals[method].call(api, arg) : api[method](arg));
    }

    function readLearner() {
      if (learner) { return learner; }
      var id = call(names.get, names.id);
      if (String(api[names.error]()) !== "0") { return null; }
      learner = { id: id, name: call(names.get, names.name) };
      beacon("launch", learner);
      return learner;
    }

    var onStatus = safe(function (element, value) {
      var kinds = STATUS_EVENTS[element];
      var kind = kinds && kinds[String(value)];
      if (kind && !sentStatus[kind] && readLearner()) {
        sentStatus[kind] = true;
        beacon(kind, learner);
      }
    });

    function wrap(method, around) {
      var original = api[method];
      if (typeof original !== "function") { return; }
      originals[method] = original;
      try { api[method] = around(original); } catch (e) { delete originals[method]; }
    }

    function unwrap() {
      for (var method in originals) {
        if (Object.prototype.hasOwnProperty.call(originals, method)) {
          try { api[method] = originals[method]; } catch (e) { /* frozen: nothing was wrapped */ }
        }
      }
    }

    // Is the session open already (the content initialised before the tracker ran)?
    var open = safe(readLearner)();

    wrap(names.init, function (original) {
      return function () {
        contentAsked = true;
        if (ownSession) { ownSession = false; return "true"; } // already open: hand it over
        var result = original.apply(api, arguments);
        if (String(result) === "true") { safe(readLearner)(); }
        return result;
      };
    });
    wrap(names.set, function (original) {
      return function (element, value) {
        var result = original.apply(api, arguments);
        if (String(result) === "true") { onStatus(element, value); }
        return result;
      };
    });
    wrap(names.finish, function (original) {
      return function () {
        finished = true;
        return original.apply(api, arguments);
      };
    });
    var wrapped = originals[names.init] && api[names.init] !== originals[names.init];

    var openOurselves = safe(function () {
      if (learner || finished || readLearner()) { return; } // the session may be open already
      if (contentAsked) { return; }
      if (call(names.init, "") === "true") {
        ownSession = true;
        readLearner();
      }
    });

    if (!open && wrapped) {
      // Content that never talks to the LMS still counts; a late content gets our session.
      window.setTimeout(openOurselves, SELF_INIT_AFTER_MS);
    }

    var leave = safe(function () {
      openOurselves(); // opened and closed at once: still a launch
      if (ownSession && !finished) {
        finished = true;
        call(names.commit, "");
        call(names.finish, "");
      }
      unwrap(); // the LMS may keep its API object after this page is gone
    });
    if (window.addEventListener) {
      window.addEventListener("pagehide", leave); // not "unload": it would keep the page out of the back/forward cache
    }
  }

  // The remote package's launcher loads this file unconfigured to find the LMS API the same way.
  window.ScormUsageTracker = { findApi: findApi, VERSIONS: VERSIONS };
  safe(start)();
})(window);

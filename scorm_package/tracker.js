/* SCORM usage tracker: tells the vendor's usage server that a learner opened this course.
 *
 * Plain ES5, no dependencies, no build step. The package builder replaces the
 * CONFIG line below with the client's settings and loads this file first in
 * each SCO's <head>, so it sees the content's first SCORM call.
 *
 * Call-order rules (SCORM 1.2 RTE 3.3, SCORM 2004 RTE 3.1). The tracker:
 * 1. never calls the LMS API before a session is known to be open: the
 *    content's own Initialize returned "true", or the tracker's own Initialize
 *    did. No probe, no GetValue, no GetLastError before that.
 * 2. never opens a session for a course that talks SCORM (the builder finds its calls in the
 *    course's files: CONFIG.selfOpen is false): such a course is counted when its own
 *    Initialize succeeds, and a learner who leaves before that is not counted and leaves no
 *    record in the LMS. Only for content with no SCORM calls at all (CONFIG.selfOpen true)
 *    does the tracker open a session itself, after SELF_INIT_AFTER_MS or when the page is
 *    left first (in a remote package's player, only once the course's page has loaded), so
 *    such content still counts. Its calls are then Initialize, the reads of rule 3 and, when
 *    the page is left, one Finish; before that Finish, on SCORM 1.2, a status still
 *    "not attempted" (or "", as some LMSs read it) is set to "incomplete", because 1.2 LMSs
 *    turn a finish without a status into "completed", a record the content never made.
 *    Should such content talk after all, its first Initialize is answered "true" without
 *    calling the LMS (a second one goes to the LMS) and until then its other calls are
 *    answered as a session that is not open answers them (1.2: 301; 2004: 122, 132, 142, 112).
 * 3. reads the learner (GetValue of the ID, then of the name) once, right after
 *    the Initialize that opened the session, before that call returns to the
 *    content, and reads GetLastError (a call that changes no state) before
 *    and after. If the reads left another last error than the content would
 *    see, one GetValue of an element every LMS has (1.2 cmi.core.lesson_status,
 *    2004 cmi.completion_status) restores it. Nothing else calls the API:
 *    statuses are seen in the content's own successful SetValue calls.
 * 4. makes no call at all once Finish/Terminate has been called, by anyone,
 *    and never calls Commit.
 * 5. returns to the content exactly what the LMS returned (same value, same
 *    type), and never throws into the course or makes it wait.
 *
 * One launch per visit: a visit is one browser tab, one package, one learner
 * and one UTC day, with no more than VISIT_IDLE_MS between two SCOs. Its
 * marker lives in the tab's sessionStorage and holds one event ID per kind
 * (launch, completed, passed, failed): the next SCO of the same visit sends
 * nothing for a kind already reported, and if two SCOs race, both send the
 * same event ID, which the server stores once. Without sessionStorage each SCO
 * page is its own visit.
 *
 * In a remote package the tracker runs in the player page on the content origin, next to the
 * relay's API; the relay names the LMS origin the learner is in (window.scormRemote.lms), and
 * the beacon carries it as lms_origin, since the browser's Origin is then the content origin.
 * A remote cmi5 AU is opened by the LMS straight from the content origin (no player, no relay):
 * CONFIG.remote is true and the LMS origin is the one its page was opened from (document.referrer).
 * When the launch came with a seat grant (a licence that blocks new learners), CONFIG.grant
 * holds it and every beacon carries it: only such a beacon takes a new learner's seat.
 *
 * Sealed packages (a client that holds a key of its own, see sealing.js): CONFIG.sealed is
 * "package" in a deployed package, whose SEAL (written in by the client, never by the vendor)
 * holds the keys the learner's ID and name are sealed with (WebCrypto HMAC) before any beacon
 * is made; without SEAL or WebCrypto nothing is sent. In a remote package's player it is
 * "relayed": the launcher on the LMS sealed the learner before anything reached the content
 * origin, and the tracker sends only values in the sealed form. A plain ID is never sent.
 * Placeholder IDs ("undefined", "null", "0"...) are flagged (placeholder: true) before sealing,
 * so the server can hold them back without reading them.
 *
 * A beacon is written to a small localStorage queue before it is sent and
 * removed once the server has answered, so a launch lost to a network failure,
 * a 5xx or a 429 is sent again on the next launch with the same event ID (the
 * server stores it once); other 4xx answers are dropped.
 */
(function (window) {
  "use strict";
  var CONFIG = /*@TRACKER_CONFIG@*/ null;
  var SEAL = /*@PACKAGE_SEAL@*/ null;
/*@SEAL_LIBRARY@*/

  var QUEUE_KEY = "scormUsageTracker.queue.v1";
  var QUEUE_MAX = 20;
  var MAX_ATTEMPTS = 8;
  var MAX_AGE_MS = 30 * 24 * 3600 * 1000;
  var SELF_INIT_AFTER_MS = 2000;
  var VISIT_KEY = "scormUsageTracker.visit.v1.";
  var VISIT_IDLE_MS = 30 * 60 * 1000;
  var VERSIONS = {
    "2004": {
      api: "API_1484_11", init: "Initialize", finish: "Terminate", get: "GetValue", set: "SetValue",
      commit: "Commit", error: "GetLastError", errorString: "GetErrorString", diagnostic: "GetDiagnostic",
      id: "cmi.learner_id", name: "cmi.learner_name", always: "cmi.completion_status",
      closed: { GetValue: "122", SetValue: "132", Commit: "142", Terminate: "112" }
    },
    "1.2": {
      api: "API", init: "LMSInitialize", finish: "LMSFinish", get: "LMSGetValue", set: "LMSSetValue",
      commit: "LMSCommit", error: "LMSGetLastError", errorString: "LMSGetErrorString", diagnostic: "LMSGetDiagnostic",
      id: "cmi.core.student_id", name: "cmi.core.student_name", always: "cmi.core.lesson_status",
      notAttempted: "not attempted",
      closed: { LMSGetValue: "301", LMSSetValue: "301", LMSCommit: "301", LMSFinish: "301" }
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

  // In a remote package the queue is kept by the launcher, in the LMS origin's localStorage (the
  // player's own storage is a third party's, which browsers may partition or refuse).
  function remoteQueue() {
    var remote = window.scormRemote;
    return remote && Object.prototype.toString.call(remote.queue) === "[object Array]" &&
      typeof remote.saveQueue === "function" ? remote : null;
  }

  function readQueue() {
    var remote = remoteQueue();
    try {
      var items = remote ? remote.queue : JSON.parse(window.localStorage.getItem(QUEUE_KEY) || "[]");
      return Object.prototype.toString.call(items) === "[object Array]" ? items.slice() : [];
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
      var remote = remoteQueue();
      if (remote) {
        remote.queue = kept;
        remote.saveQueue(kept);
      } else if (kept.length) {
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

  function lmsOrigin() {
    var remote = window.scormRemote;
    if (remote && typeof remote.lms === "string") { return remote.lms; }
    // A remote cmi5 AU, opened by the LMS from the content origin: the LMS page that opened it.
    var from = CONFIG && CONFIG.remote === true ? /^(https?:\/\/[^\/?#]+)/i.exec(document.referrer || "") : null;
    return from ? from[1].toLowerCase() : undefined;
  }

  function beacon(event, learner, eventId) {
    var body = JSON.stringify({
      key: CONFIG.key, course: CONFIG.course, student_id: learner.id, student_name: learner.name,
      event: event, event_id: eventId, scorm_version: CONFIG.scormVersion, "package": CONFIG.packageId,
      lms_origin: lmsOrigin(), placeholder: learner.placeholder ? true : undefined,
      grant: CONFIG.grant || undefined
    });
    send({ id: eventId, url: CONFIG.url, body: body, at: new Date().getTime(), tries: 0 });
  }

  // --- the visit: one launch (and one of each status) per tab, package, learner and day ---

  var memoryVisits = {}; // where sessionStorage is unavailable: this page only

  function visitKey(learnerId) {
    var hash = 0x811c9dc5; // FNV-1a: keeps the learner's ID itself out of the key
    for (var i = 0; i < learnerId.length; i++) {
      hash ^= learnerId.charCodeAt(i);
      hash = (hash + ((hash << 1) + (hash << 4) + (hash << 7) + (hash << 8) + (hash << 24))) >>> 0;
    }
    return VISIT_KEY + CONFIG.packageId + "." + hash.toString(16);
  }

  // In a remote package the visit is kept by the launcher too, in the LMS origin's sessionStorage.
  function remoteVisits() {
    var remote = window.scormRemote;
    return remote && remote.visits && typeof remote.saveVisit === "function" ? remote : null;
  }

  function loadVisit(key) {
    var visit = null, now = new Date(), remote = remoteVisits();
    if (remote) {
      visit = Object.prototype.hasOwnProperty.call(remote.visits, key) ? remote.visits[key] : null;
    } else {
      try { visit = JSON.parse(window.sessionStorage.getItem(key)); } catch (e) { visit = memoryVisits[key]; }
    }
    var day = now.toISOString().slice(0, 10);
    if (!visit || visit.day !== day || !(now.getTime() - visit.last < VISIT_IDLE_MS) ||
        !visit.ids || typeof visit.ids !== "object") {
      visit = { day: day, ids: {} };
    }
    visit.last = now.getTime();
    return visit;
  }

  function saveVisit(key, visit) {
    memoryVisits[key] = visit;
    var remote = remoteVisits();
    if (remote) {
      remote.visits[key] = visit;
      remote.saveVisit(key, visit);
      return;
    }
    try { window.sessionStorage.setItem(key, JSON.stringify(visit)); } catch (e) { /* this page only */ }
  }

  function report(kind, learner) {
    var key = visitKey(learner.id), visit = loadVisit(key);
    var known = visit.ids[kind];
    if (!known) { visit.ids[kind] = uuid4(); }
    saveVisit(key, visit);
    if (!known) { beacon(kind, learner, visit.ids[kind]); }
  }

  // --- the LMS session ---

  function start() {
    if (!CONFIG || !CONFIG.url || !CONFIG.key) { return; }
    flushQueue();
    var found = findApi(CONFIG.scormVersion);
    if (!found) { return; } // opened outside an LMS: the course runs, nothing is sent
    var api = found.api, names = found.names;
    var session = "none";    // "content" or "tracker" (who opened it), "done" after any Finish
    var handedOver = false;  // the content has asked for the session the tracker opened
    var touched = false;     // the content has called the API
    var closedError = null;  // what GetLastError answers the content before it takes the tracker's session
    var learner = null, readDone = false;
    var sealing = false, sealedKinds = []; // statuses seen while the learner is being sealed
    var originals = {};

    function call(method, arg, value) {
      if (arguments.length > 2) { return originals[method].call(api, arg, value); }
      return arguments.length > 1 ? originals[method].call(api, arg) : originals[method].call(api);
    }

    function lastError() {
      return String(call(names.error));
    }

    // Rule 3: called only right after an Initialize that returned "true".
    function readLearner() {
      if (readDone) { return; }
      readDone = true;
      var before = lastError();
      var id = String(call(names.get, names.id));
      var idError = lastError();
      var ok = idError === "0" || idError === before;
      var name = String(call(names.get, names.name));
      if (lastError() !== before) {
        call(names.get, names.always); // rule 3: leave the last error as the content saw it
      }
      if (!ok) { return; }
      identify(id, name);
    }

    function identified(who) {
      learner = who;
      report("launch", learner);
      for (var k = 0; k < sealedKinds.length; k++) { report(sealedKinds[k], learner); }
      sealedKinds = [];
    }

    // The learner as beacons name it: as read, or sealed (see the header); placeholders flagged.
    function identify(id, name) {
      var placeholder = false;
      try {
        placeholder = ScormUsageSeal.isPlaceholder(ScormUsageSeal.normaliseStudentId(id));
      } catch (e) { /* an ID the server refuses: it says so */ }
      if (!CONFIG.sealed) {
        identified({ id: id, name: name, placeholder: placeholder });
      } else if (CONFIG.sealed === "relayed") {
        var remote = window.scormRemote;
        if (ScormUsageSeal.isSealed(id) && (name === "" || ScormUsageSeal.isSealed(name))) {
          identified({ id: id, name: name, placeholder: !!(remote && remote.placeholder) });
        }
      } else {
        sealing = true;
        ScormUsageSeal.sealLearner(SEAL, id, name).then(safe(identified), function () { /* nothing is sent */ });
      }
    }

    var onStatus = safe(function (element, value) {
      var kinds = STATUS_EVENTS[element];
      var kind = kinds && kinds[String(value)];
      if (kind && learner) {
        report(kind, learner);
      } else if (kind && sealing) {
        sealedKinds.push(kind);
      }
    });

    function wrap(method, around) {
      var original = api[method];
      if (typeof original !== "function") { return; }
      originals[method] = original;
      try { api[method] = around(original, method); } catch (e) { delete originals[method]; }
    }

    function unwrap() {
      for (var method in originals) {
        if (Object.prototype.hasOwnProperty.call(originals, method)) {
          try { api[method] = originals[method]; } catch (e) { /* frozen: nothing was wrapped */ }
        }
      }
    }

    function waiting() { return session === "tracker" && !handedOver; }
    var leaving = false;

    wrap(names.init, function (original) {
      return function () {
        touched = true;
        if (waiting()) { handedOver = true; closedError = null; return "true"; }
        var result = original.apply(api, arguments);
        if (session === "none" && String(result) === "true") {
          session = "content";
          safe(readLearner)();
        }
        return result;
      };
    });
    var closing = [names.get, names.set, names.commit, names.finish];
    for (var c = 0; c < closing.length; c++) {
      wrap(closing[c], function (original, method) {
        return function (element, value) {
          touched = true;
          if (waiting()) { closedError = names.closed[method]; return method === names.get ? "" : "false"; }
          if (method === names.finish && session !== "none") { session = "done"; }
          var result = original.apply(api, arguments);
          if (method === names.set && String(result) === "true") { onStatus(element, value); }
          if (method === names.finish && leaving) { unwrap(); }
          return result;
        };
      });
    }
    wrap(names.error, function (original) {
      return function () {
        touched = true;
        if (waiting()) { return closedError || original.apply(api, arguments); }
        return original.apply(api, arguments);
      };
    });
    var passing = [names.errorString, names.diagnostic];
    for (var p = 0; p < passing.length; p++) {
      wrap(passing[p], function (original) {
        return function () {
          touched = true;
          return original.apply(api, arguments);
        };
      });
    }
    var complete = true;
    var all = closing.concat([names.init, names.error]);
    for (var a = 0; a < all.length; a++) {
      if (!originals[all[a]] || api[all[a]] === originals[all[a]]) { complete = false; }
    }
    if (!complete) { unwrap(); return; } // a frozen or partial API: stay out of it, count nothing

    // Rule 2: content with no SCORM calls still counts; should it talk late, it gets this session.
    var openOurselves = safe(function () {
      if (!CONFIG.selfOpen || session !== "none" || touched) { return; }
      var remote = window.scormRemote;
      if (remote && remote.courseLoaded === false) { // the player's course page has not loaded: not seen yet
        window.setTimeout(openOurselves, 500);
        return;
      }
      if (String(call(names.init, "")) === "true") {
        session = "tracker";
        readLearner();
      } else {
        session = "done"; // the LMS refused: leave it alone
      }
    });
    if (CONFIG.selfOpen) { window.setTimeout(openOurselves, SELF_INIT_AFTER_MS); }

    var leave = safe(function () {
      openOurselves(); // content with no SCORM calls, opened and closed at once: still a launch
      if (waiting()) {
        session = "done";
        // Rule 2: our own Finish never makes a 1.2 LMS record "completed" (some LMSs read "" for no status).
        var status = names.notAttempted ? String(call(names.get, names.always)) : null;
        if (status === names.notAttempted || status === "") {
          call(names.set, names.always, "incomplete");
        }
        call(names.finish, "");
      }
      if (learner) { saveVisit(visitKey(learner.id), loadVisit(visitKey(learner.id))); } // the visit goes on
      // The LMS may keep its API object after this page is gone, so the wrappers come off; but
      // "pagehide" comes before "unload", where many courses still set their status and finish:
      // while the content's session is open they stay until its Finish.
      if (session === "content") { leaving = true; return; }
      unwrap();
    });
    if (window.addEventListener) {
      window.addEventListener("pagehide", leave); // not "unload": it would keep the page out of the back/forward cache
    }
  }

  // ===== cmi5 and xAPI (Tin Can) launches (CONFIG.scormVersion "cmi5" or "tincan") =====
  //
  // The LMS opens the AU's page with its launch parameters in the query string (cmi5: endpoint,
  // fetch, actor, registration, activityId; Tin Can: endpoint, auth, actor, registration,
  // activity_id). Same rules as for SCORM, for xAPI:
  // X1. the learner comes from the launch's actor alone: account.name (Tin Can 0.9:
  //     accountName), else mbox without "mailto:"; in old Tin Can launchers name, mbox and
  //     account may be arrays (the first is taken). An actor that is too long, not JSON or
  //     of another shape gives no learner: nothing is sent and the course runs as it would.
  // X2. the tracker takes nothing from the AU: it never calls the fetch URL (a cmi5 AU may call
  //     it once only), never reads or sends an auth token, never talks to the LRS, and changes no
  //     request or answer. It only looks at the AU's own statement requests (XMLHttpRequest or
  //     fetch, PUT or POST to ".../statements"), after they were sent, in what the LRS accepted
  //     (a 2xx answer; a keepalive fetch, sent as the page unloads, once it is handed to the
  //     browser): never changed, never delayed, never resent.
  // X3. the launch is counted when the LRS accepts the AU's first statement (cmi5 "initialized"):
  //     the course started and reached the LMS; a learner who leaves before that is not billed.
  //     completed, passed and failed are counted from the AU's statements with those ADL verbs
  //     about the launched activity (activityId / activity_id; the package's launchable
  //     activities when the launch names none). One of each kind per visit, as for SCORM.

  var XAPI_VERBS = {
    "http://adlnet.gov/expapi/verbs/completed": "completed",
    "http://adlnet.gov/expapi/verbs/passed": "passed",
    "http://adlnet.gov/expapi/verbs/failed": "failed"
  };
  var XAPI_ACTOR_MAX = 4096;
  var XAPI_ID_MAX = 255;
  var XAPI_BODY_MAX = 1048576;

  function isArray(value) { return Object.prototype.toString.call(value) === "[object Array]"; }
  function firstOf(value) { return isArray(value) ? value[0] : value; }

  function launchParameters(search) {
    var out = {}, pairs = String(search || "").replace(/^\?/, "").split("&");
    for (var i = 0; i < pairs.length; i++) {
      var at = pairs[i].indexOf("="), name, value;
      if (!pairs[i]) { continue; }
      try {
        name = decodeURIComponent((at < 0 ? pairs[i] : pairs[i].slice(0, at)).replace(/\+/g, " "));
        value = at < 0 ? "" : decodeURIComponent(pairs[i].slice(at + 1).replace(/\+/g, " "));
      } catch (e) { continue; } // a malformed escape: that parameter is not ours to fix
      if (!Object.prototype.hasOwnProperty.call(out, name)) { out[name] = value; }
    }
    return out;
  }

  // The "content" field of an alternate-syntax form body, decoding no other field (its
  // Authorization among them: rule X2).
  function formContent(body) {
    var pairs = body.split("&");
    for (var i = 0; i < pairs.length; i++) {
      if (pairs[i].indexOf("content=") === 0) {
        return decodeURIComponent(pairs[i].slice(8).replace(/\+/g, " "));
      }
    }
    return null;
  }

  // X1: the learner named by the launch's actor, or null.
  function xapiLearner(raw) {
    if (typeof raw !== "string" || !raw || raw.length > XAPI_ACTOR_MAX) { return null; }
    var actor;
    try { actor = JSON.parse(raw); } catch (e) { return null; }
    actor = firstOf(actor);
    if (!actor || typeof actor !== "object" || isArray(actor)) { return null; }
    var id = null, account = firstOf(actor.account), mbox = firstOf(actor.mbox);
    if (account && typeof account === "object") {
      var accountName = account.name !== undefined ? account.name : account.accountName;
      if (typeof accountName === "string" || typeof accountName === "number") { id = String(accountName); }
    }
    if ((id === null || !id.replace(/\s+/g, "")) && typeof mbox === "string") { id = mbox.replace(/^\s*mailto:/i, ""); }
    if (id === null || !id.replace(/\s+/g, "") || id.length > XAPI_ID_MAX) { return null; }
    var name = firstOf(actor.name);
    return { id: id, name: typeof name === "string" ? name.slice(0, 1000) : "" };
  }

  function statementsUrl(url) {
    var path = String(url || "").split("#")[0].split("?")[0];
    return /\/statements\/?$/i.test(path);
  }

  function startXapi() {
    if (!CONFIG || !CONFIG.url || !CONFIG.key) { return; }
    flushQueue();
    var params = launchParameters(window.location.search);
    var actor = xapiLearner(params.actor);
    if (!actor || !params.endpoint) { return; } // opened outside an LMS launch: nothing is sent
    // The learner as beacons name it, as in SCORM's identify(): placeholders flagged; a sealed
    // client's learner sealed first (what the AU reports meanwhile waits for it); never plain.
    var learner = null, waitingKinds = [], placeholder = false;
    try {
      placeholder = ScormUsageSeal.isPlaceholder(ScormUsageSeal.normaliseStudentId(actor.id));
    } catch (e) { /* an ID the server refuses: it says so */ }
    function reportKind(kind) {
      if (learner) { report(kind, learner); } else { waitingKinds.push(kind); }
    }
    if (!CONFIG.sealed) {
      learner = { id: actor.id, name: actor.name, placeholder: placeholder };
    } else if (CONFIG.sealed === "package") {
      ScormUsageSeal.sealLearner(SEAL, actor.id, actor.name).then(safe(function (who) {
        learner = who;
        for (var k = 0; k < waitingKinds.length; k++) { report(waitingKinds[k], learner); }
        waitingKinds = [];
      }), function () { /* not sealed: nothing is sent */ });
    } else {
      return;
    }
    var launched = params.activityId || params.activity_id;
    var activities = launched ? [launched] : (isArray(CONFIG.activities) ? CONFIG.activities : []);

    function about(statement) {
      var object = statement && statement.object;
      if (!object || typeof object !== "object") { return false; }
      for (var i = 0; i < activities.length; i++) {
        if (object.id === activities[i]) { return true; }
      }
      return false;
    }

    // X2, X3: a statement request the LRS accepted; its body is read after the answer.
    var accepted = safe(function (body) {
      reportKind("launch");
      if (typeof body !== "string" || body.length > XAPI_BODY_MAX) { return; }
      var parsed;
      try { parsed = JSON.parse(body); } catch (e) {
        // xAPI's alternate request syntax (sent while a page unloads): the statement is the form's content.
        try { parsed = JSON.parse(formContent(body)); } catch (e2) { return; }
      }
      var statements = isArray(parsed) ? parsed : [parsed];
      for (var i = 0; i < statements.length; i++) {
        var verb = statements[i] && statements[i].verb;
        var kind = verb && typeof verb.id === "string" && Object.prototype.hasOwnProperty.call(XAPI_VERBS, verb.id)
          ? XAPI_VERBS[verb.id] : null;
        if (kind && about(statements[i])) { reportKind(kind); }
      }
    });

    function watched(method, url) {
      var verb = String(method || "").toUpperCase();
      return (verb === "PUT" || verb === "POST") && statementsUrl(url);
    }

    var XHR = window.XMLHttpRequest;
    var proto = XHR && XHR.prototype;
    if (proto && typeof proto.open === "function" && typeof proto.send === "function") {
      var open = proto.open, sendRequest = proto.send, opened = [];
      try {
        proto.open = function (method, url) {
          safe(function (xhr) {
            for (var i = 0; i < opened.length; i++) {
              if (opened[i].xhr === xhr) { opened.splice(i, 1); break; }
            }
            if (watched(method, url)) { opened.push({ xhr: xhr }); }
            if (opened.length > 50) { opened.shift(); }
          })(this);
          return open.apply(this, arguments);
        };
        proto.send = function (body) {
          safe(function (xhr) {
            for (var i = 0; i < opened.length; i++) {
              if (opened[i].xhr === xhr) {
                opened.splice(i, 1);
                xhr.addEventListener("load", function () {
                  if (xhr.status >= 200 && xhr.status < 300) { accepted(body); }
                });
                break;
              }
            }
          })(this);
          return sendRequest.apply(this, arguments);
        };
      } catch (e) { /* a frozen prototype: statements sent by XMLHttpRequest are not seen */ }
    }
    if (typeof window.fetch === "function") {
      var originalFetch = window.fetch;
      try {
        window.fetch = function (input, init) {
          var answer = originalFetch.apply(this, arguments);
          safe(function () {
            var url = typeof input === "string" ? input : input && input.url;
            var method = (init && init.method) || (input && typeof input === "object" && input.method) || "GET";
            if (watched(method, url) && answer && typeof answer.then === "function") {
              var body = init && init.body;
              // A keepalive request (TinCanJS sends its last statements so while the page unloads) is
              // delivered by the browser after the page is gone, when no answer can be seen any more.
              if (init && init.keepalive === true) { accepted(body); return; }
              answer.then(function (response) {
                if (response && response.status >= 200 && response.status < 300) { accepted(body); }
              }, function () { /* not sent: nothing seen */ });
            }
          })();
          return answer;
        };
      } catch (e) { /* fetch cannot be replaced: statements sent by fetch are not seen */ }
    }
  }

  var XAPI_STANDARDS = { cmi5: true, tincan: true };

  // The remote package's launcher loads this file unconfigured to find the LMS API the same way.
  window.ScormUsageTracker = { findApi: findApi, VERSIONS: VERSIONS };
  safe(CONFIG && XAPI_STANDARDS[CONFIG.scormVersion] === true ? startXapi : start)();
})(window);

// Go-live check: poll for new beacons and show them newest first, highlighting only
// those that arrived since the page opened.
// Values go in with textContent, never as HTML: everything in a beacon is untrusted.
(function () {
  "use strict";
  var table = document.getElementById("beacons");
  if (!table) { return; }
  var body = table.tBodies[0];
  var empty = document.getElementById("beacons-empty");
  var status = document.getElementById("live-status");
  var url = table.getAttribute("data-url");
  var lastId = parseInt(table.getAttribute("data-last-id"), 10) || 0;
  // On PostgreSQL a beacon with a lower ID can commit a moment after a higher one:
  // ask again for a few IDs back each time and skip the ones already shown.
  var OVERLAP = 50;
  var seen = {};
  // The page shows the newest beacons down to this one; older ones re-sent by the overlap
  // belong below the window shown, so they are never added (nor taken for new arrivals).
  var oldestShown = lastId ? Infinity : 0;
  Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
    var id = parseInt(row.getAttribute("data-id"), 10);
    seen[id] = true;
    oldestShown = Math.min(oldestShown, id);
  });
  if (oldestShown === Infinity) { oldestShown = 0; }
  var columns = ["received_at", "event", "course", "student_id", "student_name", "lms_host"];
  var MAX_ROWS = 200;

  function addRow(beacon) {
    if (seen[beacon.id] || beacon.id < oldestShown) { return; }
    seen[beacon.id] = true;
    var row = document.createElement("tr");
    row.setAttribute("data-id", beacon.id);
    row.className = "new";
    columns.forEach(function (name) {
      var cell = document.createElement("td");
      if (name === "student_id") {
        var code = document.createElement("code");
        code.textContent = beacon[name];
        cell.appendChild(code);
      } else {
        cell.textContent = beacon[name];
      }
      row.appendChild(cell);
    });
    // In ID order, newest on top: a beacon committed late (PostgreSQL) goes where it belongs.
    var at = 0;
    while (at < body.rows.length && parseInt(body.rows[at].getAttribute("data-id"), 10) > beacon.id) { at += 1; }
    body.insertBefore(row, body.rows[at] || null);
    while (body.rows.length > MAX_ROWS) { body.deleteRow(body.rows.length - 1); }
  }

  function poll() {
    fetch(url + "?after=" + Math.max(0, lastId - OVERLAP), { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (data) {
        // Oldest first from the server; each is put in its place by ID.
        data.beacons.forEach(addRow);
        if (data.beacons.length && empty) { empty.hidden = true; }
        lastId = Math.max(lastId, data.last_id);
        status.textContent = "live";
        status.className = "live";
      })
      .catch(function () {
        status.textContent = "reconnecting…";
        status.className = "live stale";
      })
      .then(function () { window.setTimeout(poll, 2000); });
  }
  window.setTimeout(poll, 2000);
}());

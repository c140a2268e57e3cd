// Go-live check: poll for new beacons and add them to the top of the table.
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
  Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
    seen[row.getAttribute("data-id")] = true;
  });
  var columns = ["received_at", "event", "course", "student_id", "student_name", "lms_host"];
  var MAX_ROWS = 200;

  function addRow(beacon) {
    if (seen[beacon.id]) { return; }
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
    body.insertBefore(row, body.firstChild);
    while (body.rows.length > MAX_ROWS) { body.deleteRow(body.rows.length - 1); }
  }

  function poll() {
    fetch(url + "?after=" + Math.max(0, lastId - OVERLAP), { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (data) {
        // Oldest first from the server: each goes on top, so the newest ends on top.
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

/* The sealing page: seals a package and computes sealed IDs, in this browser only.
 *
 * ScormUsageSeal (/seal/sealing.js) is the code the packages themselves run. The zip is
 * re-written here by hand: every entry is copied byte for byte except the one file that
 * carries the seal (the tracker of a deployed package, the launcher of a remote one),
 * which is written stored (uncompressed). Reading it needs DecompressionStream
 * ("deflate-raw"); nothing is fetched, the page may not connect anywhere.
 */
(function () {
  "use strict";
  var SEAL_MARK = "/*@PACKAGE_SEAL@*/ null";
  var SEALED_FILES = ["scorm-usage-tracker.js", "remote-launcher.js"];

  function $(id) { return document.getElementById(id); }

  function say(element, text, kind) {
    element.textContent = text;
    element.className = kind === "error" ? "seal-error" : (kind === "ok" ? "seal-ok" : "muted");
  }

  function clientKey() {
    var key = $("seal-key").value.replace(/\s+/g, "");
    if (!/^[A-Za-z0-9_-]{43,}$/.test(key)) {
      throw new Error("Enter your sealing key (43 characters), read it from its file, or make a new one.");
    }
    return key;
  }

  function showKid() {
    var status = $("seal-key-status");
    var key;
    try { key = clientKey(); } catch (e) { say(status, ""); return; }
    ScormUsageSeal.packageSeal(key).then(function (seal) {
      say(status, "Key " + seal.kid + " (its short name: packages sealed with it say so).", "ok");
    }, function (e) { say(status, e.message, "error"); });
  }

  // --- zip ---

  var CRC_TABLE = (function () {
    var table = new Uint32Array(256);
    for (var n = 0; n < 256; n++) {
      var c = n;
      for (var k = 0; k < 8; k++) { c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1; }
      table[n] = c >>> 0;
    }
    return table;
  })();

  function crc32(bytes) {
    var crc = 0xffffffff;
    for (var i = 0; i < bytes.length; i++) { crc = CRC_TABLE[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8); }
    return (crc ^ 0xffffffff) >>> 0;
  }

  function readZip(buffer) {
    var bytes = new Uint8Array(buffer), view = new DataView(buffer);
    var end = -1;
    for (var i = bytes.length - 22; i >= 0 && i >= bytes.length - 22 - 65535; i--) {
      if (view.getUint32(i, true) === 0x06054b50) { end = i; break; }
    }
    if (end < 0) { throw new Error("This file is not a zip."); }
    var count = view.getUint16(end + 10, true), cdOffset = view.getUint32(end + 16, true);
    var entries = [], at = cdOffset;
    for (var n = 0; n < count; n++) {
      if (view.getUint32(at, true) !== 0x02014b50) { throw new Error("This zip is damaged."); }
      var nameLength = view.getUint16(at + 28, true), extra = view.getUint16(at + 30, true);
      var comment = view.getUint16(at + 32, true), size = 46 + nameLength + extra + comment;
      entries.push({
        name: new TextDecoder().decode(bytes.subarray(at + 46, at + 46 + nameLength)),
        method: view.getUint16(at + 10, true), compressed: view.getUint32(at + 20, true),
        offset: view.getUint32(at + 42, true), central: bytes.slice(at, at + size)
      });
      at += size;
    }
    var starts = entries.map(function (e) { return e.offset; }).concat([cdOffset]).sort(function (a, b) { return a - b; });
    entries.forEach(function (e) { e.end = starts[starts.indexOf(e.offset) + 1]; });
    return { bytes: bytes, view: view, entries: entries };
  }

  function entryData(zip, entry) {
    var at = entry.offset;
    if (zip.view.getUint32(at, true) !== 0x04034b50) { return Promise.reject(new Error("This zip is damaged.")); }
    var start = at + 30 + zip.view.getUint16(at + 26, true) + zip.view.getUint16(at + 28, true);
    var raw = zip.bytes.slice(start, start + entry.compressed);
    if (entry.method === 0) { return Promise.resolve(raw); }
    if (entry.method !== 8 || typeof DecompressionStream !== "function") {
      return Promise.reject(new Error("This browser cannot read this zip; use the offline command instead."));
    }
    var stream = new Blob([raw]).stream().pipeThrough(new DecompressionStream("deflate-raw"));
    return new Response(stream).arrayBuffer().then(function (b) { return new Uint8Array(b); });
  }

  function writeZip(zip, target, data) {
    var parts = [], centrals = [], offset = 0, crc = crc32(data);
    zip.entries.forEach(function (entry) {
      var central = entry.central.slice(), cv = new DataView(central.buffer);
      cv.setUint32(42, offset, true);
      var local;
      if (entry === target) {
        var name = central.subarray(46, 46 + cv.getUint16(28, true));
        var flags = cv.getUint16(8, true) & 0x0800; // keep "UTF-8 name", drop the data descriptor
        local = new Uint8Array(30 + name.length);
        var lv = new DataView(local.buffer);
        lv.setUint32(0, 0x04034b50, true); lv.setUint16(4, 20, true); lv.setUint16(6, flags, true);
        lv.setUint16(8, 0, true); lv.setUint16(10, cv.getUint16(12, true), true);
        lv.setUint16(12, cv.getUint16(14, true), true); lv.setUint32(14, crc, true);
        lv.setUint32(18, data.length, true); lv.setUint32(22, data.length, true);
        lv.setUint16(26, name.length, true); lv.setUint16(28, 0, true);
        local.set(name, 30);
        cv.setUint16(8, flags, true); cv.setUint16(10, 0, true); cv.setUint32(16, crc, true);
        cv.setUint32(20, data.length, true); cv.setUint32(24, data.length, true);
        parts.push(local, data);
        offset += local.length + data.length;
      } else {
        local = zip.bytes.subarray(entry.offset, entry.end);
        parts.push(local);
        offset += local.length;
      }
      centrals.push(central);
    });
    var cdOffset = offset, cdSize = 0;
    centrals.forEach(function (c) { parts.push(c); cdSize += c.length; });
    var eocd = new Uint8Array(22), ev = new DataView(eocd.buffer);
    ev.setUint32(0, 0x06054b50, true); ev.setUint16(8, centrals.length, true);
    ev.setUint16(10, centrals.length, true); ev.setUint32(12, cdSize, true); ev.setUint32(16, cdOffset, true);
    parts.push(eocd);
    return new Blob(parts, { type: "application/zip" });
  }

  function sealPackage(file, key) {
    var seal, zip, target;
    return ScormUsageSeal.packageSeal(key).then(function (s) {
      seal = s;
      return file.arrayBuffer();
    }).then(function (buffer) {
      zip = readZip(buffer);
      target = zip.entries.filter(function (e) { return SEALED_FILES.indexOf(e.name) >= 0; })[0];
      if (!target) { throw new Error("This zip is not a tracked package built by our server."); }
      return entryData(zip, target);
    }).then(function (data) {
      var text = new TextDecoder().decode(data);
      if (text.indexOf(SEAL_MARK) < 0) {
        var already = /var SEAL = (\{[^}]*\});/.exec(text);
        if (already) { throw new Error("This package is sealed already (key " + JSON.parse(already[1]).kid + ")."); }
        throw new Error("This package was built for a client whose packages are not sealed: ask us to turn " +
                        "sealing on and to build it again.");
      }
      var sealed = new TextEncoder().encode(text.replace(SEAL_MARK, JSON.stringify(seal)));
      return { blob: writeZip(zip, target, sealed), kid: seal.kid };
    });
  }

  function start() {
    if (typeof ScormUsageSeal === "undefined" || !window.crypto || !window.crypto.subtle) {
      say($("seal-status"), "This browser cannot seal (WebCrypto is missing): use a current browser over HTTPS.",
          "error");
      return;
    }
    $("seal-key").addEventListener("input", showKid);
    $("seal-key-file").addEventListener("change", function () {
      var file = this.files && this.files[0];
      if (!file) { return; }
      file.text().then(function (text) {
        $("seal-key").value = text.trim();
        showKid();
      });
    });
    $("seal-new-key").addEventListener("click", function () {
      var key = ScormUsageSeal.newClientKey();
      $("seal-key").value = key;
      var link = $("seal-key-download");
      if (link.href) { URL.revokeObjectURL(link.href); }
      link.href = URL.createObjectURL(new Blob([key + "\n"], { type: "text/plain" }));
      link.hidden = false;
      showKid();
    });
    $("seal-run").addEventListener("click", function () {
      var status = $("seal-status"), link = $("seal-download");
      link.hidden = true;
      var file = $("seal-package").files[0];
      var key;
      try {
        key = clientKey();
        if (!file) { throw new Error("Choose the package to seal."); }
      } catch (e) { say(status, e.message, "error"); return; }
      say(status, "Sealing…");
      sealPackage(file, key).then(function (done) {
        if (link.href) { URL.revokeObjectURL(link.href); }
        link.href = URL.createObjectURL(done.blob);
        link.download = file.name.replace(/\.zip$/i, "") + "-sealed.zip";
        link.hidden = false;
        say(status, "Sealed with key " + done.kid + ". Upload the sealed package to your LMS.", "ok");
      }, function (e) { say(status, e.message, "error"); });
    });
    $("seal-compute").addEventListener("click", function () {
      var out = $("seal-sealed-id"), status = $("seal-id-status");
      out.textContent = "";
      var key;
      try { key = clientKey(); } catch (e) { say(status, e.message, "error"); return; }
      ScormUsageSeal.packageSeal(key).then(function (seal) {
        return ScormUsageSeal.sealLearner(seal, $("seal-student-id").value, "");
      }).then(function (learner) {
        out.textContent = learner.id;
        say(status, "Send us this sealed ID with the erasure request.", "ok");
      }, function (e) { say(status, e.message, "error"); });
    });
  }

  document.addEventListener("DOMContentLoaded", start);
})();

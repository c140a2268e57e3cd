/* Sealed identities: the student ID and name as a keyed HMAC the vendor cannot read.
 *
 * Plain ES5 around WebCrypto (crypto.subtle, secure contexts only). One source for the
 * three places that seal: the tracker of a deployed package, the launcher of a remote
 * package (both insert this file at their /*@SEAL_LIBRARY@*\/ mark, inside their own
 * function, so nothing is added to the course's window) and the sealing page.
 *
 * The normalisation is app/identity/student_ids.py's, rule for rule, so a sealed ID is the HMAC of the
 * very string the server would have stored: format characters (Unicode Cf) removed, NFC,
 * surrounding white space removed (Python's str.isspace set), refused when empty or with
 * control characters or lone surrogates, case-folded (Python's str.casefold, full folding)
 * when it contains "@", NFC again, at most 255 code points. Names: controls and format
 * characters removed, runs of white space made one space, cut at 255 code points.
 * Python's tables (which characters are Cf, white space, and where casefold differs from
 * lower-casing) are written in at the /*@SEAL_TABLES@*\/ mark by the server.
 *
 *   idKey   = HMAC-SHA256(client key, "scorm-usage-seal:v1:id")
 *   nameKey = HMAC-SHA256(client key, "scorm-usage-seal:v1:name")
 *   kid     = base64url(HMAC-SHA256(client key, "scorm-usage-seal:v1:kid"))[0:8]
 *   sealed  = "sealed:v1:" + base64url(HMAC-SHA256(idKey, UTF-8 of the normalised ID))
 *   name    = "sealed:v1:" + base64url(HMAC-SHA256(nameKey, UTF-8 of the normalised name)), "" for no name
 *
 * A package carries idKey and nameKey (never the client key itself); the client key stays
 * with the client, who needs it to seal the next package or to find a learner's sealed ID.
 */
var ScormUsageSeal = (function () {
  "use strict";
  var TABLES = /*@SEAL_TABLES@*/ null;
  var PREFIX = "sealed:v1:";
  var SEALED = /^sealed:v1:[A-Za-z0-9_-]{43}$/;
  var MAX_LENGTH = 255;

  function fail(message) {
    var error = new Error(message);
    error.sealRefused = true;
    throw error;
  }

  // Code points as strings; a lone surrogate stays one item of its own.
  function codePoints(text) {
    var out = [];
    for (var i = 0; i < text.length; i++) {
      var unit = text.charCodeAt(i);
      if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
        var next = text.charCodeAt(i + 1);
        if (next >= 0xdc00 && next <= 0xdfff) {
          out.push(text.charAt(i) + text.charAt(i + 1));
          i++;
          continue;
        }
      }
      out.push(text.charAt(i));
    }
    return out;
  }

  function codeOf(ch) {
    if (ch.length === 2) {
      return (ch.charCodeAt(0) - 0xd800) * 0x400 + (ch.charCodeAt(1) - 0xdc00) + 0x10000;
    }
    return ch.charCodeAt(0);
  }

  function inRanges(ranges, code) {
    var low = 0, high = ranges.length - 1;
    while (low <= high) {
      var mid = (low + high) >> 1;
      if (code < ranges[mid][0]) { high = mid - 1; } else if (code > ranges[mid][1]) { low = mid + 1; } else {
        return true;
      }
    }
    return false;
  }

  function isFormat(ch) { return inRanges(TABLES.cf, codeOf(ch)); }
  function isSpace(ch) { return ch.length === 1 && TABLES.space.indexOf(ch.charCodeAt(0)) >= 0; }
  function isSurrogate(ch) { return ch.length === 1 && ch.charCodeAt(0) >= 0xd800 && ch.charCodeAt(0) <= 0xdfff; }
  function isControl(ch) {
    var code = codeOf(ch);
    return code < 0x20 || (code >= 0x7f && code <= 0x9f) || isSurrogate(ch);
  }

  function strip(chars) {
    var start = 0, end = chars.length;
    while (start < end && isSpace(chars[start])) { start++; }
    while (end > start && isSpace(chars[end - 1])) { end--; }
    return chars.slice(start, end);
  }

  function nfc(text) {
    // A lone surrogate makes no sense to normalise; it is refused (IDs) or dropped (names) anyway.
    return typeof text.normalize === "function" ? text.normalize("NFC") : text;
  }

  // Python's str.casefold, code point by code point (full case folding has no context).
  function casefold(text) {
    var chars = codePoints(text), out = "";
    for (var i = 0; i < chars.length; i++) {
      var ch = chars[i];
      if (Object.prototype.hasOwnProperty.call(TABLES.fold, ch)) {
        out += TABLES.fold[ch];
        continue;
      }
      var code = codeOf(ch), shifted = null;
      for (var r = 0; r < TABLES.shift.length; r++) {
        var range = TABLES.shift[r];
        if (code >= range[0] && code <= range[1]) { shifted = code + range[2]; break; }
      }
      out += shifted === null ? ch.toLowerCase() : String.fromCodePoint(shifted);
    }
    return out;
  }

  function withoutFormat(chars) {
    var kept = [];
    for (var i = 0; i < chars.length; i++) { if (!isFormat(chars[i])) { kept.push(chars[i]); } }
    return kept;
  }

  function normaliseStudentId(raw) {
    if (typeof raw !== "string") { fail("student ID must be text"); }
    var value = strip(codePoints(nfc(withoutFormat(codePoints(raw)).join(""))));
    for (var i = 0; i < value.length; i++) {
      if (isControl(value[i])) { fail("student ID contains control characters"); }
    }
    if (!value.length) { fail("student ID is empty"); }
    var text = value.join("");
    if (text.indexOf("@") >= 0) { text = nfc(casefold(text)); }
    if (codePoints(text).length > MAX_LENGTH) { fail("student ID is longer than " + MAX_LENGTH + " characters"); }
    return text;
  }

  function normaliseName(raw) {
    if (typeof raw !== "string") { fail("student name must be text"); }
    var chars = codePoints(raw), kept = [];
    for (var i = 0; i < chars.length; i++) {
      var ch = chars[i];
      if (isSpace(ch) || !(isControl(ch) || isFormat(ch))) { kept.push(ch); }
    }
    var words = [], word = "", all = codePoints(nfc(kept.join("")));
    for (var j = 0; j < all.length; j++) {
      if (isSpace(all[j])) {
        if (word) { words.push(word); word = ""; }
      } else {
        word += all[j];
      }
    }
    if (word) { words.push(word); }
    var cut = codePoints(words.join(" ")).slice(0, MAX_LENGTH);
    while (cut.length && isSpace(cut[cut.length - 1])) { cut.pop(); } // Python's [:255].rstrip()
    return cut.join("");
  }

  function isPlaceholder(normalised) {
    return TABLES.placeholders.indexOf(normalised.toLowerCase()) >= 0;
  }

  function isSealed(value) { return typeof value === "string" && SEALED.test(value); }

  // --- bytes ---

  function utf8(text) {
    var bytes = unescape(encodeURIComponent(text)), out = new Uint8Array(bytes.length);
    for (var i = 0; i < bytes.length; i++) { out[i] = bytes.charCodeAt(i); }
    return out;
  }

  function base64url(bytes) {
    var view = new Uint8Array(bytes), binary = "";
    for (var i = 0; i < view.length; i++) { binary += String.fromCharCode(view[i]); }
    return window.btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function fromBase64url(text) {
    if (typeof text !== "string" || !/^[A-Za-z0-9_-]+$/.test(text)) { fail("not base64url"); }
    var padded = text.replace(/-/g, "+").replace(/_/g, "/");
    while (padded.length % 4) { padded += "="; }
    var binary = window.atob(padded), out = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) { out[i] = binary.charCodeAt(i); }
    return out;
  }

  function subtle() {
    var c = window.crypto;
    return c && c.subtle && typeof c.subtle.importKey === "function" ? c.subtle : null;
  }

  function hmac(keyBytes, data) {
    var s = subtle();
    if (!s) { return Promise.reject(new Error("WebCrypto is not available (a secure context is needed)")); }
    return s.importKey("raw", keyBytes, { name: "HMAC", hash: "SHA-256" }, false, ["sign"])
      .then(function (key) { return s.sign("HMAC", key, data); })
      .then(function (mac) { return new Uint8Array(mac); });
  }

  // The client key (32 random bytes, base64url) -> what a package carries.
  function packageSeal(clientKey) {
    var key = fromBase64url(String(clientKey).replace(/\s+/g, ""));
    if (key.length < 32) { return Promise.reject(new Error("a sealing key is 32 random bytes (43 base64url characters)")); }
    return Promise.all([hmac(key, utf8("scorm-usage-seal:v1:id")), hmac(key, utf8("scorm-usage-seal:v1:name")),
                        hmac(key, utf8("scorm-usage-seal:v1:kid"))])
      .then(function (parts) {
        return { v: 1, kid: base64url(parts[2]).slice(0, 8), id: base64url(parts[0]), name: base64url(parts[1]) };
      });
  }

  function sealWith(keyText, text) {
    return hmac(fromBase64url(keyText), utf8(text)).then(function (mac) { return PREFIX + base64url(mac); });
  }

  // A learner as the LMS gave it -> {id, name, placeholder}, sealed with a package's seal.
  // Rejects (never resolves with plain values) when the ID cannot be normalised or sealed.
  function sealLearner(seal, rawId, rawName) {
    try {
      if (!seal || seal.v !== 1) { fail("the package is not sealed"); }
      var id = normaliseStudentId(String(rawId));
      var name = normaliseName(String(rawName));
      var placeholder = isPlaceholder(id);
      return Promise.all([sealWith(seal.id, id), name ? sealWith(seal.name, name) : Promise.resolve("")])
        .then(function (sealed) { return { id: sealed[0], name: sealed[1], placeholder: placeholder }; });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  function newClientKey() {
    var bytes = new Uint8Array(32);
    window.crypto.getRandomValues(bytes);
    return base64url(bytes);
  }

  return {
    normaliseStudentId: normaliseStudentId, normaliseName: normaliseName, isPlaceholder: isPlaceholder,
    isSealed: isSealed, packageSeal: packageSeal, sealLearner: sealLearner, newClientKey: newClientKey,
    base64url: base64url, fromBase64url: fromBase64url, utf8: utf8
  };
})();

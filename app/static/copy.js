// Copy buttons: <button data-copy="text">. The package ID is what the CLI needs
// (`package republish --package ID`), so the full value is copied, never a shortened one.
(function () {
  "use strict";

  function copied(button, label) {
    var before = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", before);
    button.textContent = label;
    setTimeout(function () { button.textContent = before; }, 1500);
  }

  // Without the Clipboard API (a plain-http page, an old browser): select the text for Ctrl+C.
  function selectNextTo(button) {
    var code = button.parentNode.querySelector("code");
    if (!code || !window.getSelection) { return false; }
    var range = document.createRange();
    range.selectNodeContents(code);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    return true;
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button[data-copy]") : null;
    if (!button) { return; }
    var text = button.getAttribute("data-copy");
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(function () { copied(button, "Copied"); }, function () {
        if (selectNextTo(button)) { copied(button, "Press Ctrl+C"); }
      });
    } else if (selectNextTo(button)) {
      copied(button, "Press Ctrl+C");
    }
  });
}());

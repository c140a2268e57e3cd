// "Build and download": the zip comes back as an attachment, so the browser stays on the
// page it had and the list below still said "No package issued yet" (issue 16). With
// scripts on, the form is sent with fetch: a zip is saved and the page is then loaded
// again (GET), showing the new package and any warnings; a page with the form's errors
// replaces this one as a normal submit would. Without scripts the form posts as before.
(function () {
  "use strict";
  var form = document.getElementById("build-form");
  if (!form || !window.fetch || !window.FormData || !window.URL || !URL.createObjectURL) { return; }
  var button = form.querySelector("button[type=submit]");
  var status = document.getElementById("build-status");

  function say(text) { if (status) { status.textContent = text; } }

  function filename(response) {
    var header = response.headers.get("Content-Disposition") || "";
    var match = /filename\*=UTF-8''([^;]+)/i.exec(header) || /filename="?([^";]+)"?/i.exec(header);
    return match ? decodeURIComponent(match[1]) : "package.zip";
  }

  function save(blob, name) {
    var link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = name;
    link.hidden = true;
    document.body.appendChild(link);
    link.click();
    setTimeout(function () {
      URL.revokeObjectURL(link.href);
      window.location.replace(window.location.pathname);  // GET: the list with the new package
    }, 300);
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    button.disabled = true;
    say("Building the package…");
    fetch(form.action, {method: "POST", body: new FormData(form), credentials: "same-origin"})
      .then(function (response) {
        var type = response.headers.get("Content-Type") || "";
        if (response.ok && type.indexOf("application/zip") === 0) {
          return response.blob().then(function (blob) {
            say("Downloaded " + filename(response) + ". Updating the list…");
            save(blob, filename(response));
          });
        }
        return response.text().then(function (html) {
          document.open();
          document.write(html);
          document.close();
        });
      })
      .catch(function () {
        button.disabled = false;
        say("The server could not be reached; nothing was built. Try again.");
      });
  });
}());

// Passkeys (WebAuthn): buttons with data-passkey="register" or "authenticate" ask the server for
// options, call the browser's authenticator and send its answer back; the server verifies it.
(function () {
  "use strict";

  function toBuffer(text) {
    var base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (base64.length % 4) { base64 += "="; }
    var binary = atob(base64);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) { bytes[i] = binary.charCodeAt(i); }
    return bytes.buffer;
  }

  function toText(buffer) {
    if (!buffer) { return null; }
    var bytes = new Uint8Array(buffer);
    var binary = "";
    for (var i = 0; i < bytes.length; i++) { binary += String.fromCharCode(bytes[i]); }
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function post(url, body) {
    var token = document.querySelector('meta[name="csrf-token"]').content;
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": token},
      body: JSON.stringify(body || {})
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) { throw new Error(data.message || "The server refused it (" + response.status + ")."); }
        return data;
      });
    });
  }

  function descriptors(list) {
    return (list || []).map(function (item) { return Object.assign({}, item, {id: toBuffer(item.id)}); });
  }

  function register(button) {
    return post(button.dataset.options).then(function (options) {
      options.challenge = toBuffer(options.challenge);
      options.user.id = toBuffer(options.user.id);
      options.excludeCredentials = descriptors(options.excludeCredentials);
      return navigator.credentials.create({publicKey: options});
    }).then(function (credential) {
      var nameField = document.getElementById(button.dataset.nameField);
      return post(button.dataset.verify, {
        name: nameField ? nameField.value : "Passkey",
        credential: {
          id: credential.id, rawId: toText(credential.rawId), type: credential.type,
          response: {
            clientDataJSON: toText(credential.response.clientDataJSON),
            attestationObject: toText(credential.response.attestationObject),
            transports: credential.response.getTransports ? credential.response.getTransports() : []
          },
          clientExtensionResults: credential.getClientExtensionResults()
        }
      });
    });
  }

  function authenticate(button) {
    return post(button.dataset.options).then(function (options) {
      options.challenge = toBuffer(options.challenge);
      options.allowCredentials = descriptors(options.allowCredentials);
      return navigator.credentials.get({publicKey: options});
    }).then(function (credential) {
      return post(button.dataset.verify, {
        credential: {
          id: credential.id, rawId: toText(credential.rawId), type: credential.type,
          response: {
            clientDataJSON: toText(credential.response.clientDataJSON),
            authenticatorData: toText(credential.response.authenticatorData),
            signature: toText(credential.response.signature),
            userHandle: toText(credential.response.userHandle)
          },
          clientExtensionResults: credential.getClientExtensionResults()
        }
      });
    });
  }

  document.querySelectorAll("[data-passkey]").forEach(function (button) {
    var error = button.closest("section").querySelector("[data-passkey-error]");
    if (!window.PublicKeyCredential) {
      button.disabled = true;
      if (error) { error.textContent = "This browser has no passkey support."; error.hidden = false; }
      return;
    }
    button.addEventListener("click", function () {
      button.disabled = true;
      if (error) { error.hidden = true; }
      var run = button.dataset.passkey === "register" ? register : authenticate;
      run(button).then(function (answer) {
        window.location.assign(answer.redirect);
      }).catch(function (problem) {
        button.disabled = false;
        if (error) { error.textContent = problem.message || String(problem); error.hidden = false; }
      });
    });
  });
}());

// Passkeys: adds one (on /passkeys) and signs in with one (on the
// sign-in page), WebAuthn's options and answers carried as JSON with
// their binary fields in base64url.
"use strict";
(function () {
  function b64u(buf) {
    let s = "";
    new Uint8Array(buf).forEach(function (b) { s += String.fromCharCode(b); });
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function unb64u(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    return Uint8Array.from(atob(s), function (c) { return c.charCodeAt(0); }).buffer;
  }
  function fail(msg) {
    const e = document.getElementById("passkey-error");
    e.textContent = msg;
    e.hidden = false;
  }
  // post sends a form and returns the JSON answer, or throws its error.
  function post(url, fields) {
    return fetch(url, { method: "POST", credentials: "same-origin", body: new URLSearchParams(fields) })
      .then(function (r) {
        return r.json().then(function (j) {
          if (!r.ok) throw new Error(j.error || r.statusText);
          return j;
        });
      });
  }
  function answer(cred) {
    const r = cred.response, out = { id: cred.id, rawId: b64u(cred.rawId), type: cred.type, response: {} };
    out.clientExtensionResults = cred.getClientExtensionResults ? cred.getClientExtensionResults() : {};
    ["clientDataJSON", "attestationObject", "authenticatorData", "signature", "userHandle"].forEach(function (k) {
      if (r[k]) out.response[k] = b64u(r[k]);
    });
    if (r.getTransports) out.response.transports = r.getTransports();
    return JSON.stringify(out);
  }
  const add = document.getElementById("passkey-add");
  if (add) add.addEventListener("click", function () {
    const csrf = add.dataset.csrf;
    post("/passkeys/begin", { csrf: csrf }).then(function (o) {
      const pk = o.publicKey;
      pk.challenge = unb64u(pk.challenge);
      pk.user.id = unb64u(pk.user.id);
      (pk.excludeCredentials || []).forEach(function (c) { c.id = unb64u(c.id); });
      return navigator.credentials.create({ publicKey: pk });
    }).then(function (cred) {
      return post("/passkeys/finish", { csrf: csrf, credential: answer(cred) });
    }).then(function (j) { location.href = j.next; }).catch(function (e) { fail("passkey not added: " + e.message); });
  });
  const signin = document.getElementById("passkey-signin");
  if (signin) signin.addEventListener("click", function () {
    let ceremony;
    post("/passkey/begin", {}).then(function (o) {
      ceremony = o.ceremony;
      const pk = o.options.publicKey;
      pk.challenge = unb64u(pk.challenge);
      (pk.allowCredentials || []).forEach(function (c) { c.id = unb64u(c.id); });
      return navigator.credentials.get({ publicKey: pk });
    }).then(function (cred) {
      return post("/passkey/finish", { ceremony: ceremony, credential: answer(cred), next: signin.dataset.next });
    }).then(function (j) { location.href = j.next; }).catch(function (e) { fail("passkey sign-in: " + e.message); });
  });
})();

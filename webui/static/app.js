// Follows a file live: the server sends each new line as an event.
"use strict";
(function () {
  const b = document.getElementById("follow");
  if (!b) return;
  const out = document.getElementById("live");
  let es = null;
  b.addEventListener("click", function () {
    if (es) { es.close(); es = null; b.textContent = "follow live (tail -f)"; return; }
    const path = b.dataset.path.split("/").map(encodeURIComponent).join("/");
    es = new EventSource("/tail" + path);
    b.textContent = "stop following";
    es.onmessage = function (e) {
      out.append(document.createTextNode(e.data + "\n"));
      if (out.childNodes.length > 2000) out.removeChild(out.firstChild);
    };
    es.addEventListener("error", function (e) {
      if (e.data) out.append(document.createTextNode("error: " + e.data + "\n"));
    });
  });
  if (new URLSearchParams(location.search).has("follow")) b.click();
})();

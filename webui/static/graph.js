// Draws the node's request rates: /stats.json read once a second, the
// rate of each count between samples, the last 300 of them per count.
"use strict";
(function () {
  const box = document.getElementById("graphs");
  if (!box) return;
  const keep = 300, charts = {};
  let last = null;
  window.graphSamples = 0;
  function chart(name) {
    if (charts[name]) return charts[name];
    const div = document.createElement("div");
    div.className = "chart";
    const h = document.createElement("h2");
    const c = document.createElement("canvas");
    c.width = 600; c.height = 80; c.id = "chart-" + name;
    div.append(h, c);
    box.append(div);
    return (charts[name] = { h: h, c: c, rates: [] });
  }
  function draw(name, ch) {
    const g = ch.c.getContext("2d"), w = ch.c.width, h = ch.c.height;
    const max = Math.max(1, ...ch.rates);
    g.clearRect(0, 0, w, h);
    g.strokeStyle = "#5b4bb7"; g.beginPath();
    ch.rates.forEach(function (r, i) {
      const x = w - (ch.rates.length - 1 - i) * (w / keep), y = h - 2 - (r / max) * (h - 4);
      i ? g.lineTo(x, y) : g.moveTo(x, y);
    });
    g.stroke();
    const now = ch.rates.length ? ch.rates[ch.rates.length - 1] : 0;
    ch.h.textContent = name + ": " + now.toFixed(1) + "/s (max " + max.toFixed(1) + ")";
  }
  function tick() {
    fetch("/stats.json", { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (s) {
      if (last) {
        const dt = Math.max(1, s.t - last.t) / 1000;
        Object.keys(s.counts).forEach(function (k) {
          const ch = chart(k);
          ch.rates.push(Math.max(0, (s.counts[k] - (last.counts[k] || 0)) / dt));
          if (ch.rates.length > keep) ch.rates.shift();
          draw(k, ch);
        });
      }
      last = s;
      window.graphSamples++;
    }).catch(function () {});
  }
  tick();
  setInterval(tick, 1000);
})();

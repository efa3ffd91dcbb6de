// Draws the cluster: /cluster.json read every two seconds, this node in
// the middle, its imports and the ledger's members around it, each
// coloured by the state of its connection.
"use strict";
(function () {
  const svg = document.getElementById("cluster");
  if (!svg) return;
  const NS = "http://www.w3.org/2000/svg", W = 600, H = 360, R = 130;
  window.clusterSamples = 0;
  function el(name, attrs, parent) {
    const e = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (parent) parent.append(e);
    return e;
  }
  function short(id) { return id.length > 12 ? id.slice(0, 8) + "…" : id || "?"; }
  // cls is a node's class: its role and the state of its connection.
  function cls(n) {
    let c = "node";
    if (n.self) c += " self";
    if (n.import) c += " import state-" + n.state.replace(/[^a-z-]/g, "");
    if (n.member) c += " member";
    if (n.leader) c += " leader";
    if (n.member && n.raft !== "ok" && n.raft !== "self") c += " raft-bad";
    return c;
  }
  function draw(nodes) {
    while (svg.firstChild) svg.firstChild.remove();
    const others = nodes.filter(function (n) { return !n.self; });
    const pos = {};
    pos[nodes[0].id] = [W / 2, H / 2];
    others.forEach(function (n, i) {
      const a = -Math.PI / 2 + 2 * Math.PI * i / Math.max(1, others.length);
      pos[n.id] = [W / 2 + R * 1.6 * Math.cos(a), H / 2 + R * Math.sin(a)];
    });
    const edges = el("g", { class: "edges" }, svg);
    others.forEach(function (n) {
      const [x1, y1] = pos[nodes[0].id], [x2, y2] = pos[n.id];
      el("line", { x1: x1, y1: y1, x2: x2, y2: y2, class: "edge" + (n.import ? " import state-" + n.state.replace(/[^a-z-]/g, "") : " raft") }, edges);
    });
    nodes.forEach(function (n) {
      const [x, y] = pos[n.id], r = n.self ? 22 : 16;
      // Labels away from the edge: above a node in the upper half.
      const above = y < H / 2 - 1, ty = above ? y - r - 20 : y + r + 14, sy = above ? y - r - 6 : y + r + 28;
      const g = el("g", { class: cls(n), "data-id": n.id }, svg);
      el("circle", { cx: x, cy: y, r: r }, g);
      const t = el("text", { x: x, y: ty, "text-anchor": "middle" }, g);
      t.textContent = (n.self ? "this node " : "") + short(n.id);
      const parts = [];
      if (n.import) parts.push(n.import + " " + n.state);
      if (n.member) parts.push(n.member + (n.leader ? " leader" : "") + (n.raft && n.raft !== "self" ? " " + n.raft : ""));
      if (parts.length) {
        const s = el("text", { x: x, y: sy, "text-anchor": "middle", class: "sub" }, g);
        s.textContent = parts.join(", ");
      }
      const title = el("title", {}, g);
      title.textContent = n.id;
    });
  }
  function tick() {
    fetch("/cluster.json", { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (c) {
      draw(c.nodes);
      window.clusterSamples++;
    }).catch(function () {});
  }
  tick();
  setInterval(tick, 2000);
})();

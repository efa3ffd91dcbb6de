// The page of an app of cheshire's /apps: it offers to receive the
// app's video, posts the offer to ./offer (the node answers through
// /apps/NAME/sessions/clone), shows the video full-window and sends
// mouse, keyboard, scroll and clipboard on the "input" data channel as
// the lines of the session's input file. F9 shows the stats overlay;
// F8 takes the controller role.
"use strict";
(() => {
  const video = document.getElementById("video");
  const statsEl = document.getElementById("stats");
  const msg = document.getElementById("msg");
  const pc = new RTCPeerConnection();
  const dc = pc.createDataChannel("input");
  const state = { pc, dc, session: null, errors: [], frames: 0 };
  window.cheshire = state;

  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const audio = document.getElementById("audio");
  // A browser may hold back sound until the page is touched: play on
  // the first click or key.
  const unmute = () => { audio.play().catch(() => {}); };
  document.addEventListener("mousedown", unmute, { once: true });
  document.addEventListener("keydown", unmute, { once: true });
  pc.ontrack = (ev) => {
    if (ev.track.kind === "audio") {
      if ("jitterBufferTarget" in ev.receiver) ev.receiver.jitterBufferTarget = 0;
      audio.srcObject = new MediaStream([ev.track]);
      return;
    }
    // Render each frame as soon as it is decoded: no jitter buffer
    // beyond what the network needs (none on a LAN).
    if ("jitterBufferTarget" in ev.receiver) ev.receiver.jitterBufferTarget = 0;
    if ("playoutDelayHint" in ev.receiver) ev.receiver.playoutDelayHint = 0;
    video.srcObject = new MediaStream([ev.track]);
  };
  pc.onconnectionstatechange = () => {
    msg.textContent = pc.connectionState === "connected" ? "" : pc.connectionState;
  };
  dc.onmessage = (ev) => {
    state.errors.push(String(ev.data));
    msg.textContent = String(ev.data);
  };

  async function connect() {
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === "complete") return resolve();
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") resolve();
      });
    });
    const r = await fetch("offer", { method: "POST", body: pc.localDescription.sdp,
      headers: { "Content-Type": "application/sdp" }, credentials: "same-origin" });
    if (!r.ok) throw new Error(r.status + " " + (await r.text()));
    const ans = await r.json();
    state.session = ans.session;
    await pc.setRemoteDescription({ type: "answer", sdp: ans.sdp });
  }
  // Leaving the page ends the session at once (a vanished browser's is
  // reaped when ICE fails, some seconds later).
  window.addEventListener("pagehide", () => { send("close"); pc.close(); });
  connect().catch((e) => { msg.textContent = "cannot connect: " + e.message; state.failed = e.message; });

  // Quote a word as the node's ctl tokenizer reads it.
  const quote = (s) => "'" + s.replace(/'/g, "''") + "'";
  function send(line) { if (dc.readyState === "open") dc.send(line); }

  // Video pixels of a mouse event (object-fit: contain letterboxes).
  function at(ev) {
    const r = video.getBoundingClientRect();
    const vw = video.videoWidth || r.width, vh = video.videoHeight || r.height;
    const s = Math.min(r.width / vw, r.height / vh);
    const ox = (r.width - vw * s) / 2, oy = (r.height - vh * s) / 2;
    const x = Math.round((ev.clientX - r.left - ox) / s), y = Math.round((ev.clientY - r.top - oy) / s);
    return [Math.max(0, Math.min(vw - 1, x)), Math.max(0, Math.min(vh - 1, y))];
  }
  let lastMove = 0;
  video.addEventListener("mousemove", (ev) => {
    const now = performance.now();
    if (now - lastMove < 8) return; // at most ~120 moves a second
    lastMove = now;
    send("move " + at(ev).join(" "));
  });
  const button = (b) => [1, 2, 3][b] || 1;
  video.addEventListener("mousedown", (ev) => { video.focus(); send("move " + at(ev).join(" ")); send("down " + button(ev.button)); ev.preventDefault(); });
  video.addEventListener("mouseup", (ev) => { send("up " + button(ev.button)); ev.preventDefault(); });
  video.addEventListener("contextmenu", (ev) => ev.preventDefault());
  video.addEventListener("wheel", (ev) => {
    const d = (v) => Math.max(-5, Math.min(5, Math.round(v / 40) || Math.sign(v)));
    send("scroll " + d(ev.deltaX) + " " + d(ev.deltaY));
    ev.preventDefault();
  }, { passive: false });

  const keys = { Enter: "Return", Backspace: "BackSpace", Tab: "Tab", Escape: "Escape", Delete: "Delete",
    ArrowLeft: "Left", ArrowRight: "Right", ArrowUp: "Up", ArrowDown: "Down", Home: "Home", End: "End",
    PageUp: "Prior", PageDown: "Next", Insert: "Insert", " ": "space" };
  for (let i = 1; i <= 12; i++) keys["F" + i] = "F" + i;
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "F9") { toggleStats(); ev.preventDefault(); return; }
    if (ev.key === "F8") { send("control"); ev.preventDefault(); return; }
    const mods = [ev.ctrlKey && "ctrl", ev.altKey && "alt", ev.metaKey && "super"].filter(Boolean);
    if (ev.key.length === 1 && mods.length === 0) {
      send("type " + quote(ev.key));
    } else {
      let k = keys[ev.key] || (ev.key.length === 1 && /[A-Za-z0-9]/.test(ev.key) ? ev.key : null);
      if (!k) return;
      send("key " + mods.concat([k]).join("+"));
    }
    ev.preventDefault();
  });
  document.addEventListener("paste", (ev) => {
    const t = ev.clipboardData && ev.clipboardData.getData("text");
    if (t) send("clipboard " + t);
    ev.preventDefault();
  });

  let timer = null;
  function toggleStats() {
    if (timer) { clearInterval(timer); timer = null; statsEl.style.display = "none"; return; }
    statsEl.style.display = "block";
    showStats();
    timer = setInterval(showStats, 1000);
  }
  let prev = null;
  async function showStats() {
    const s = await pc.getStats();
    let v = {}, rtt = null;
    s.forEach((r) => {
      if (r.type === "inbound-rtp" && r.kind === "video") v = r;
      if (r.type === "candidate-pair" && r.nominated && r.currentRoundTripTime !== undefined) rtt = r.currentRoundTripTime;
    });
    const now = performance.now();
    const kbps = prev ? ((v.bytesReceived - prev.bytes) * 8 / (now - prev.t)).toFixed(0) : "-";
    prev = { bytes: v.bytesReceived || 0, t: now };
    statsEl.textContent = [
      "session " + state.session + "  " + pc.connectionState,
      "size " + video.videoWidth + "x" + video.videoHeight,
      "fps " + (v.framesPerSecond || 0) + "  decoded " + (v.framesDecoded || 0) + "  dropped " + (v.framesDropped || 0),
      "bitrate " + kbps + " kbit/s  lost " + (v.packetsLost || 0) + "  jitter " + ((v.jitter || 0) * 1000).toFixed(1) + " ms",
      "rtt " + (rtt === null ? "-" : (rtt * 1000).toFixed(1) + " ms") +
        "  decode " + (v.framesDecoded ? (v.totalDecodeTime / v.framesDecoded * 1000).toFixed(1) : "-") + " ms/frame",
      "F8 take control, F9 hide",
    ].join("\n");
  }
})();

/*
 * The live dashboard: draw the figures the server built, then merge each tick's values in.
 *
 * Every trace names, in its `meta`, the key of the value it plots; a tick carries those
 * values for the buckets that changed (absolute values, so a repeated tick is harmless).
 * The websocket reconnects with backoff when the server goes away, and a page that was
 * away re-reads its figures once it is back.
 */
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("dashboard-config").textContent);
  const PLOT_CONFIG = { displayModeBar: false, responsive: true };
  const TIER_COLOURS = ["#53b1fd", "#7a5af8", "#ee46bc", "#f79009", "#15b79e", "#667085"];
  const REFRESH_EVERY_MS = 10000;
  const MAX_RETRY_MS = 10000;
  // Looked at by people in the console and by the browser test.
  const live = (window.cascadeops = { ticks: 0, alerts: 0, connects: 0, lastTick: null });

  function chart(name) {
    return document.getElementById("chart-" + name);
  }

  function draw(figures) {
    for (const [name, figure] of Object.entries(figures)) {
      const element = chart(name);
      if (!element) continue;
      if (element.zoomed && element.layout) figure.layout.xaxis.range = element.layout.xaxis.range;
      Plotly.react(element, figure.data, figure.layout, PLOT_CONFIG);
      followZoom(element);
    }
  }

  // A chart the operator zoomed keeps their range while ticks arrive; a double-click
  // (autorange) hands it back to the moving window.
  function followZoom(element) {
    if (element.followsZoom) return;
    element.followsZoom = true;
    element.on("plotly_relayout", (change) => {
      if ("xaxis.range[0]" in change || "xaxis.range" in change) element.zoomed = true;
      if (change["xaxis.autorange"]) element.zoomed = false;
    });
  }

  // An idle bucket between the last point and a new one is a gap, not a line across it.
  function leaveGap(trace, x) {
    const last = trace.x[trace.x.length - 1];
    if (last === undefined || x <= last) return;
    const next = shifted(last, config.stepMinutes);
    if (next < x) upsert(trace, next, null);
  }

  function redraw(element) {
    element.layout.datarevision = (element.layout.datarevision || 0) + 1;
    Plotly.react(element, element.data, element.layout, PLOT_CONFIG);
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  function label(date) {
    return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}`;
  }

  // Buckets are "YYYY-MM-DD HH:MM" in the server's time zone; read as local time here,
  // which is fine: only differences are taken.
  function shifted(bucket, minutes) {
    return label(new Date(new Date(bucket.replace(" ", "T")).getTime() + minutes * 60000));
  }

  // The window ending with the current bucket, as the server drew it.
  function windowRange(current) {
    return [shifted(current, config.stepMinutes - config.windowMinutes), shifted(current, config.stepMinutes)];
  }

  function upsert(trace, x, y) {
    let i = trace.x.length - 1;
    while (i >= 0 && trace.x[i] > x) i--;
    if (i >= 0 && trace.x[i] === x) {
      trace.y[i] = y;
    } else {
      trace.x.splice(i + 1, 0, x);
      trace.y.splice(i + 1, 0, y);
    }
  }

  function trim(trace, cutoff) {
    let n = 0;
    while (n < trace.x.length && trace.x[n] < cutoff) n++;
    if (n) {
      trace.x.splice(0, n);
      trace.y.splice(0, n);
    }
  }

  function addTierTraces(element, points) {
    const known = new Set(element.data.map((trace) => trace.meta));
    for (const point of points) {
      for (const key of Object.keys(point)) {
        if (!key.startsWith("tier:") || known.has(key)) continue;
        const [, tier, model] = key.split(":");
        // By tier number, as the server colours them: a tier keeps its colour.
        const colour = TIER_COLOURS[Number(tier) % TIER_COLOURS.length];
        const width = config.stepMinutes * 60000 * 0.8;
        element.data.push({ type: "bar", name: `tier ${tier} · ${model}`, meta: key, x: [], y: [], width, marker: { color: colour } });
        known.add(key);
      }
    }
  }

  function mergePoints(points, current) {
    const range = windowRange(current);
    for (const element of document.querySelectorAll("[data-live-chart]")) {
      if (!element.data || element.id === "chart-today") continue;
      if (element.id === "chart-tiers") addTierTraces(element, points);
      for (const trace of element.data) {
        if (!trace.meta) continue;
        const isTier = trace.meta.startsWith("tier:");
        for (const point of points) {
          if (!isTier && trace.type !== "bar" && trace.meta in point) leaveGap(trace, point.x);
          // A tier that answered nothing in a bucket has no key there: its share is 0.
          if (trace.meta in point || isTier) upsert(trace, point.x, point[trace.meta] ?? (isTier ? 0 : null));
        }
        trim(trace, range[0]);
      }
      if (!element.zoomed) element.layout.xaxis.range = range;
      redraw(element);
    }
  }

  function replaceToday(today) {
    const element = chart("today");
    if (!element || !element.data || !today) return;
    element.data[0].x = today.x;
    element.data[0].y = today.y;
    redraw(element);
  }

  function setHtml(id, html) {
    const element = document.getElementById(id);
    if (element && typeof html === "string") element.innerHTML = html;
  }

  let lastTick = null;

  function applyTick(message) {
    mergePoints(message[config.resolution], message.now[config.resolution]);
    replaceToday(message.today);
    setHtml("tiles", message.html.tiles);
    setHtml("top", message.html.top);
  }

  function onTick(message) {
    if (message.scope !== config.scope) return;
    applyTick(message);
    lastTick = message;
    live.ticks += 1;
    live.lastTick = new Date().toISOString();
    refreshSoon();
  }

  // SLA compliance is over the page's window, which ticks do not carry: while ticks come,
  // the page re-reads it at most every REFRESH_EVERY_MS, and once more after the last one.
  let refreshTimer = null;

  function refreshSoon() {
    if (refreshTimer !== null) return;
    const wait = Math.max(0, lastRefresh + REFRESH_EVERY_MS - Date.now());
    refreshTimer = setTimeout(() => {
      refreshTimer = null;
      refresh();
    }, wait);
  }

  function onAlerts(message) {
    setHtml("alerts", message.html);
    live.alerts += 1;
  }

  let lastRefresh = 0;

  async function refresh() {
    lastRefresh = Date.now();
    const ticksBefore = live.ticks;
    try {
      const response = await fetch(config.dataUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok || response.redirected) return;
      const data = await response.json();
      draw(data.figures);
      for (const [id, html] of Object.entries(data.html)) setHtml(id, html);
      // A tick that came while the figures were fetched is newer than they are: its
      // buckets (every recent one, in absolute values) go back on top.
      if (live.ticks !== ticksBefore && lastTick) applyTick(lastTick);
    } catch (error) {
      console.warn("dashboard refresh failed", error);
    }
  }

  function setStatus(state, text) {
    const badge = document.getElementById("live-status");
    badge.dataset.state = state;
    badge.textContent = text;
  }

  let retryMs = 1000;

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}${config.wsPath}`);
    socket.onopen = () => {
      retryMs = 1000;
      for (const subscription of config.subscriptions) socket.send(JSON.stringify(subscription));
      setStatus("live", "live");
      live.connects += 1;
      // Catch up on what changed since the page was drawn (or while the server was away):
      // ticks carry only what changes after this.
      refresh();
    };
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "tick") onTick(message);
      else if (message.type === "alerts") onAlerts(message);
    };
    socket.onclose = () => {
      setStatus("reconnecting", `reconnecting in ${Math.round(retryMs / 1000)} s…`);
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, MAX_RETRY_MS);
    };
  }

  document.getElementById("alerts").addEventListener("click", async (event) => {
    const button = event.target.closest("[data-ack-url]");
    if (!button) return;
    button.disabled = true;
    const token = document.querySelector("#live-dashboard [name=csrfmiddlewaretoken]").value;
    const response = await fetch(button.dataset.ackUrl, { method: "POST", headers: { "X-CSRFToken": token }, credentials: "same-origin" });
    button.textContent = response.ok ? "acknowledged" : `failed (${response.status})`;
  });

  draw(JSON.parse(document.getElementById("dashboard-figures").textContent));
  // A custom time range is history: nothing to follow.
  if (config.live === false) setStatus("paused", "custom range");
  else connect();
})();

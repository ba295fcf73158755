/*
 * Every dashboard chart links to the request log: a click on a point opens the requests of
 * that bucket (its start to the next), of the page's policy, and of the tier's model when the
 * trace is a tier's. Kept apart from live.js, which only draws.
 */
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("dashboard-config").textContent);
  const LOG_URL = document.getElementById("live-dashboard").dataset.requestsUrl;

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  // Buckets are "YYYY-MM-DD HH:MM" in the server's time zone, and the log reads a time with
  // no offset in that zone too: only the step is added here, in whatever zone the browser has.
  function shifted(bucket, minutes) {
    const date = new Date(new Date(String(bucket).replace(" ", "T")).getTime() + minutes * 60000);
    if (Number.isNaN(date.getTime())) return null;
    return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
  }

  function modelOf(trace) {
    // Tier traces name "tier:<position>:<model>" in their meta.
    const meta = trace && typeof trace.meta === "string" ? trace.meta.split(":") : [];
    return meta[0] === "tier" && meta.length >= 3 ? meta.slice(2).join(":") : null;
  }

  function logUrl(point) {
    const since = shifted(point.x, 0);
    if (!since) return null;
    const query = new URLSearchParams({ since, until: shifted(point.x, config.stepMinutes) });
    if (typeof config.scope === "number") query.set("policy", String(config.scope));
    const model = modelOf(point.data);
    if (model) query.set("model", model);
    return `${LOG_URL}?${query}`;
  }

  function linkChart(element) {
    element.on("plotly_click", (event) => {
      const url = event.points && event.points.length ? logUrl(event.points[0]) : null;
      if (url) window.location.assign(url);
    });
  }

  function whenDrawn(element) {
    // live.js draws each chart once the figures are in; Plotly adds `on` then.
    if (typeof element.on === "function") return linkChart(element);
    setTimeout(() => whenDrawn(element), 100);
  }

  document.querySelectorAll("[data-live-chart]").forEach(whenDrawn);
  window.cascadeopsChartLink = logUrl;  // for the browser test
})();

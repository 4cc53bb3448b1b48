/*!
 * Sentinel console — the only application script.
 *
 * CSP-friendly: no inline scripts, no inline handlers, no eval, no inline style attributes.
 * Load after htmx, the htmx ws extension and uPlot, all with `defer`.
 * API (data attributes / classes): see static/README.md.
 */
(function () {
  "use strict";

  var doc = document;
  var COPY_RESET_MS = 2000;
  var FLASH_DISMISS_MS = 6000;

  // ------------------------------------------------------------------
  // helpers
  // ------------------------------------------------------------------
  function $all(root, selector) {
    var out = [];
    if (!root) return out;
    if (root.nodeType === 1 && root.matches && root.matches(selector)) out.push(root);
    if (root.querySelectorAll) {
      var found = root.querySelectorAll(selector);
      for (var i = 0; i < found.length; i++) out.push(found[i]);
    }
    return out;
  }

  var liveRegion = null;
  /** Announce a short message to screen readers via a shared polite live region. */
  function announce(text) {
    if (!liveRegion || !liveRegion.isConnected) {
      liveRegion = doc.getElementById("sentinel-announcer");
      if (!liveRegion) {
        liveRegion = doc.createElement("div");
        liveRegion.id = "sentinel-announcer";
        liveRegion.className = "sr-only";
        liveRegion.setAttribute("role", "status");
        liveRegion.setAttribute("aria-live", "polite");
        liveRegion.setAttribute("aria-atomic", "true");
        doc.body.appendChild(liveRegion);
      }
    }
    liveRegion.textContent = "";
    // a fresh text node in a new task makes repeated identical messages re-announce
    setTimeout(function () { liveRegion.textContent = text; }, 30);
  }

  // ------------------------------------------------------------------
  // 1. Copy buttons: <button data-copy-target="#id">Copy</button>
  // ------------------------------------------------------------------
  function textOf(el) {
    if ("value" in el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA")) return el.value;
    return (el.textContent || "").trim();
  }

  function legacyCopy(text) {
    var ta = doc.createElement("textarea");
    ta.value = text;
    ta.setAttribute("readonly", "");
    ta.className = "sr-only";
    doc.body.appendChild(ta);
    ta.select();
    var ok = false;
    try { ok = doc.execCommand("copy"); } catch (e) { ok = false; }
    doc.body.removeChild(ta);
    return ok;
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () {
        if (!legacyCopy(text)) throw new Error("copy failed");
      });
    }
    return new Promise(function (resolve, reject) {
      if (legacyCopy(text)) resolve(); else reject(new Error("copy failed"));
    });
  }

  function flashButton(btn, label, cls) {
    if (!btn.hasAttribute("data-copy-label")) {
      btn.setAttribute("data-copy-label", btn.innerHTML);
    }
    clearTimeout(btn._sentinelCopyTimer);
    btn.textContent = label;
    btn.classList.remove("is-copied", "is-failed");
    btn.classList.add(cls);
    btn._sentinelCopyTimer = setTimeout(function () {
      btn.innerHTML = btn.getAttribute("data-copy-label");
      btn.removeAttribute("data-copy-label");
      btn.classList.remove(cls);
    }, COPY_RESET_MS);
  }

  function onCopyClick(btn) {
    var sel = btn.getAttribute("data-copy-target");
    var target = null;
    try { target = sel ? doc.querySelector(sel) : null; } catch (e) { target = null; }
    if (!target) return;
    copyText(textOf(target)).then(function () {
      flashButton(btn, btn.getAttribute("data-copied-text") || "Copied", "is-copied");
      announce("Copied to clipboard");
    }, function () {
      flashButton(btn, "Copy failed", "is-failed");
      announce("Could not copy. Select the text and copy it manually.");
      // select the text so the user can press Ctrl+C
      try {
        var range = doc.createRange();
        range.selectNodeContents(target);
        var s = window.getSelection();
        s.removeAllRanges();
        s.addRange(range);
      } catch (e) { /* ignore */ }
    });
  }

  // ------------------------------------------------------------------
  // 2. Confirm on plain forms: <form data-confirm="Revoke this key?">
  //    (also honoured on the submit button: <button data-confirm="…">)
  //    htmx requests should use hx-confirm instead.
  // ------------------------------------------------------------------
  function onSubmitCapture(evt) {
    var form = evt.target;
    if (!form || form.tagName !== "FORM") return;
    var submitter = evt.submitter;
    var msg = (submitter && submitter.getAttribute("data-confirm")) || form.getAttribute("data-confirm");
    if (!msg) return;
    if (!window.confirm(msg)) {
      evt.preventDefault();
      evt.stopImmediatePropagation();
    }
  }

  // ------------------------------------------------------------------
  // 3. Charts: <div class="chart" data-chart='{"labels": [...], "series": [...], "kind": "line"}'>
  // ------------------------------------------------------------------
  var ISO_DATE = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/;
  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  var charts = new Set();

  // While printing, charts are redrawn with the light palette (black text on white paper),
  // whatever the screen colour scheme is.
  var printing = false;
  var PRINT_VARS = {
    "--chart-1": "#4f46e5", "--chart-2": "#0e9f6e", "--chart-3": "#e8930c", "--chart-4": "#d92d20",
    "--chart-5": "#0891b2", "--chart-6": "#9333ea", "--chart-axis": "#222222", "--chart-grid": "#dddddd",
    "--surface": "#ffffff"
  };

  function cssVar(name, fallback) {
    if (printing && PRINT_VARS[name]) return PRINT_VARS[name];
    var v = getComputedStyle(doc.documentElement).getPropertyValue(name);
    return (v && v.trim()) || fallback;
  }

  function palette() {
    return [
      cssVar("--chart-1", "#4f46e5"), cssVar("--chart-2", "#0e9f6e"), cssVar("--chart-3", "#e8930c"),
      cssVar("--chart-4", "#d92d20"), cssVar("--chart-5", "#0891b2"), cssVar("--chart-6", "#9333ea")
    ];
  }

  function withAlpha(color, alpha) {
    var m = /^#([0-9a-f]{6})$/i.exec(color);
    if (!m) return color;
    var n = parseInt(m[1], 16);
    return "rgba(" + ((n >> 16) & 255) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + alpha + ")";
  }

  /** Parse an ISO date/datetime label to a UTC epoch in seconds, or null. */
  function parseIsoLabel(label) {
    if (typeof label !== "string" || !ISO_DATE.test(label)) return null;
    var s = label.length === 10 ? label + "T00:00:00Z" : label.replace(" ", "T");
    if (!/(Z|[+-]\d{2}:?\d{2})$/.test(s)) s += "Z";
    var ms = Date.parse(s);
    return isNaN(ms) ? null : ms / 1000;
  }

  function shortDate(label) {
    // "2026-11-01" -> "Nov 1"; datetimes keep the time
    var m = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}:\d{2}))?/.exec(label);
    if (!m) return String(label);
    var out = MONTHS[parseInt(m[2], 10) - 1] + " " + parseInt(m[3], 10);
    return m[4] && m[4] !== "00:00" ? out + " " + m[4] : out;
  }

  function makeFormatter(fmt, compact) {
    var opts;
    if (fmt === "usd") {
      opts = compact
        ? { style: "currency", currency: "USD", notation: "compact", maximumFractionDigits: 2 }
        : { style: "currency", currency: "USD", minimumFractionDigits: 2, maximumFractionDigits: 4 };
    } else if (fmt === "pct") {
      opts = { maximumFractionDigits: compact ? 0 : 2 };
    } else if (fmt === "int") {
      opts = compact ? { notation: "compact", maximumFractionDigits: 1 } : { maximumFractionDigits: 0 };
    } else {
      opts = compact ? { notation: "compact", maximumFractionDigits: 2 } : { maximumFractionDigits: 4 };
    }
    var nf;
    try { nf = new Intl.NumberFormat(undefined, opts); } catch (e) { nf = new Intl.NumberFormat(); }
    return function (v) {
      if (v == null || isNaN(v)) return "–";
      return nf.format(v) + (fmt === "pct" ? "%" : "");
    };
  }

  function guessFormat(spec) {
    if (spec.format) return spec.format;
    var first = spec.series && spec.series[0] ? String(spec.series[0].label || "") : "";
    if (/usd|\$|spend|cost/i.test(first)) return "usd";
    if (/%|rate|percent/i.test(first)) return "pct";
    if (/tokens|requests|count|calls/i.test(first)) return "int";
    return "num";
  }

  /** uPlot axis-size callback: fit the longest tick label. */
  function autoAxisSize(u, values, axisIdx, cycleNum) {
    var axis = u.axes[axisIdx];
    if (cycleNum > 1) return axis._size;
    var size = axis.ticks.size + axis.gap;
    var longest = (values || []).reduce(function (acc, v) { return String(v).length > acc.length ? String(v) : acc; }, "");
    if (longest !== "") {
      u.ctx.font = axis.font[0];
      size += u.ctx.measureText(longest).width / (window.devicePixelRatio || 1);
    }
    return Math.ceil(size) + 2;
  }

  /** Shorten text with an ellipsis until it fits maxWidth (canvas pixels). */
  function fitText(ctx, text, maxWidth) {
    if (ctx.measureText(text).width <= maxWidth) return text;
    var t = text;
    while (t.length > 1 && ctx.measureText(t + "\u2026").width > maxWidth) t = t.slice(0, -1);
    return t + "\u2026";
  }

  function chartMessage(el, text) {
    // remember what was shown so the same data attribute is not re-parsed on every htmx:load
    el._sentinelChart = { plot: null, ro: null, raw: el.getAttribute("data-chart") };
    charts.add(el);
    el.textContent = "";
    var p = doc.createElement("div");
    p.className = "chart-message";
    p.textContent = text;
    el.appendChild(p);
  }

  function chartHeight(el) {
    var h = parseInt(el.getAttribute("data-chart-height") || "", 10);
    if (h > 0) return h;
    if (el.classList.contains("chart-sm")) return 160;
    if (el.classList.contains("chart-lg")) return 340;
    return 240;
  }

  function destroyChart(el) {
    var st = el && el._sentinelChart;
    if (!st) return;
    if (st.ro) st.ro.disconnect();
    if (st.plot) st.plot.destroy();
    el._sentinelChart = null;
    charts.delete(el);
  }

  function buildChart(el) {
    destroyChart(el);
    if (typeof window.uPlot !== "function") {
      chartMessage(el, "Chart unavailable (uPlot not loaded).");
      return;
    }
    var raw = el.getAttribute("data-chart");
    var spec;
    try { spec = JSON.parse(raw); } catch (e) {
      chartMessage(el, "Chart data could not be read.");
      if (window.console) console.warn("sentinel: invalid data-chart JSON", el, e);
      return;
    }
    var labels = Array.isArray(spec && spec.labels) ? spec.labels : [];
    var seriesIn = Array.isArray(spec && spec.series) ? spec.series : [];
    if (!labels.length || !seriesIn.length) {
      chartMessage(el, el.getAttribute("data-chart-empty") || "No data for this period.");
      return;
    }

    var kind = spec.kind === "bar" ? "bar" : "line";
    var fmt = guessFormat(spec);
    var fmtAxis = makeFormatter(fmt, true);
    var fmtValue = makeFormatter(fmt, false);
    var colors = palette();
    var axisColor = cssVar("--chart-axis", "#555e6e");
    var gridColor = cssVar("--chart-grid", "#eceef2");
    var font = "12px " + cssVar("--font-sans", "system-ui, sans-serif");

    // x values: real time axis for line charts over ISO dates, categories otherwise
    var times = labels.map(parseIsoLabel);
    var allDates = times.every(function (t) { return t !== null; });
    var useTime = kind === "line" && allDates;
    var xs = useTime ? times : labels.map(function (_, i) { return i; });
    var labelText = labels.map(function (l) { return allDates ? shortDate(l) : String(l); });

    var data = [xs];
    seriesIn.forEach(function (s) {
      var vals = Array.isArray(s.values) ? s.values : [];
      data.push(xs.map(function (_, i) {
        var v = vals[i];
        return v === null || v === undefined || v === "" ? null : Number(v);
      }));
    });

    var nSeries = seriesIn.length;
    var series = [{
      label: spec.xLabel || (allDates ? "Date" : "Category"),
      value: function (u, v) {
        if (v == null) return "–";
        if (useTime) {
          var i = xs.indexOf(v);
          return i >= 0 ? labelText[i] : "";
        }
        return labelText[Math.round(v)] || "";
      }
    }];

    seriesIn.forEach(function (s, idx) {
      var color = s.color || colors[idx % colors.length];
      var def = {
        label: s.label || ("Series " + (idx + 1)),
        stroke: color,
        width: kind === "bar" ? 0 : 2,
        value: function (u, v) { return fmtValue(v); },
        points: { show: kind === "line" && labels.length <= 40, size: 5, width: 1.5, fill: cssVar("--surface", "#fff") },
        spanGaps: false
      };
      if (kind === "bar") {
        def.fill = color;
        if (nSeries === 1) {
          def.paths = uPlot.paths.bars({ size: [0.66, 56], align: 0, radius: [0.15, 0] });
        } else {
          // grouped bars: each series gets its own slot inside the category
          var group = 0.76;
          var slot = group / nSeries;
          def.paths = uPlot.paths.bars({
            radius: [0.15, 0],
            disp: {
              x0: { unit: 1, values: function (u, sidx, i0, i1) {
                var out = [];
                for (var i = i0; i <= i1; i++) out.push(i - group / 2 + idx * slot + slot * 0.06);
                return out;
              } },
              size: { unit: 1, values: function () { return [slot * 0.88]; } }
            }
          });
        }
      } else if (nSeries === 1 || s.fill) {
        def.fill = withAlpha(color, 0.1);
      }
      series.push(def);
    });

    var xAxis = {
      stroke: axisColor,
      font: font,
      grid: { show: false },
      ticks: { show: true, stroke: gridColor, width: 1, size: 4 },
      gap: 6,
      space: 56
    };
    if (!useTime) {
      // one tick per category while there are >= 44px per category; labels that do not
      // fit their slot are shortened with an ellipsis (full text is in the legend on hover)
      xAxis.space = 44;
      xAxis.incrs = [1, 2, 3, 5, 7, 10, 14, 20, 30, 50, 100, 200, 500, 1000];
      xAxis.values = function (u, splits, axisIdx, foundSpace, foundIncr) {
        var dpr = window.devicePixelRatio || 1;
        var sc = u.scales.x;
        var slotPx = (foundIncr || 1) * (u.bbox.width / dpr) / Math.max(1e-9, sc.max - sc.min);
        u.ctx.font = u.axes[0].font[0];
        return splits.map(function (v) {
          if (!Number.isInteger(v) || labelText[v] == null) return "";
          return fitText(u.ctx, labelText[v], (slotPx - 8) * dpr);
        });
      };
    } else {
      var dateOnly = labels.every(function (l) { return String(l).length === 10; });
      if (dateOnly) {
        // daily data: never show sub-day ticks
        var D = 86400;
        xAxis.incrs = [1, 2, 3, 4, 5, 7, 10, 14, 15, 30, 60, 90, 180, 365, 730, 1825].map(function (n) { return n * D; });
      }
      xAxis.values = [
        // [min tick incr, default, year, month, day, hour, min, sec, mode]
        [3600 * 24 * 365, "{YYYY}", null, null, null, null, null, null, 1],
        [3600 * 24 * 28, "{MMM}", "\n{YYYY}", null, null, null, null, null, 1],
        [3600 * 24, "{MMM} {D}", "\n{YYYY}", null, null, null, null, null, 1],
        [3600, "{HH}:{mm}", "\n{MMM} {D}", null, "\n{MMM} {D}", null, null, null, 1],
        [60, "{HH}:{mm}", "\n{MMM} {D}", null, "\n{MMM} {D}", null, null, null, 1],
        [1, ":{ss}", "\n{MMM} {D} {HH}:{mm}", null, "\n{MMM} {D} {HH}:{mm}", null, "\n{HH}:{mm}", null, 1]
      ];
    }

    var opts = {
      width: Math.max(200, el.clientWidth || 600),
      height: chartHeight(el),
      // labels are dates without a zone: show them as given (UTC), not shifted to local time
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); },
      pxAlign: 1,
      // right padding leaves room for the last x tick label (centred on the edge)
      padding: [12, useTime ? 28 : 12, 0, 4],
      cursor: {
        points: { size: 7, width: 2 },
        drag: { x: false, y: false, setScale: false },
        focus: { prox: 24 }
      },
      focus: { alpha: 0.35 },
      legend: { show: el.getAttribute("data-chart-legend") !== "false", live: true },
      scales: {
        x: useTime ? { time: true } : {
          time: false,
          range: function (u, min, max) { return [min - 0.5, max + 0.5]; }
        },
        y: {
          range: function (u, min, max) {
            var lo = Math.min(0, min == null ? 0 : min);
            var hi = max == null || max <= lo ? lo + 1 : max;
            return uPlot.rangeNum(lo, hi, 0.1, true);
          }
        }
      },
      axes: [xAxis, {
        stroke: axisColor,
        font: font,
        grid: { show: true, stroke: gridColor, width: 1 },
        ticks: { show: false, size: 0 },
        gap: 8,
        space: 36,
        size: autoAxisSize,
        values: function (u, splits) { return splits.map(fmtAxis); }
      }],
      series: series
    };

    // With the cursor off the chart, the legend shows the latest point instead of dashes.
    var lastIdx = xs.length - 1;
    opts.hooks = {
      ready: [function (u) { u.setLegend({ idx: lastIdx }); }],
      setCursor: [function (u) { if (u.cursor.idx == null) u.setLegend({ idx: lastIdx }); }]
    };

    el.textContent = "";
    var plot = new uPlot(opts, data, el);

    // accessibility: canvases are opaque to assistive tech, so describe the chart
    if (!el.hasAttribute("aria-label") && !el.hasAttribute("aria-labelledby")) {
      var names = seriesIn.map(function (s) { return s.label; }).filter(Boolean).join(", ");
      el.setAttribute("role", "img");
      el.setAttribute("aria-label",
        (kind === "bar" ? "Bar chart" : "Line chart") + (names ? " of " + names : "") +
        ", " + labels.length + " points from " + labelText[0] + " to " + labelText[labelText.length - 1] + ".");
    }

    var state = { plot: plot, ro: null, raw: raw, width: opts.width };
    if (typeof ResizeObserver === "function") {
      var pending = false;
      state.ro = new ResizeObserver(function () {
        if (pending) return;
        pending = true;
        requestAnimationFrame(function () {
          pending = false;
          if (!el.isConnected) { destroyChart(el); return; }
          var w = Math.max(200, el.clientWidth);
          if (w && Math.abs(w - state.width) > 1) {
            state.width = w;
            plot.setSize({ width: w, height: chartHeight(el) });
          }
        });
      });
      state.ro.observe(el);
    }
    el._sentinelChart = state;
    charts.add(el);
  }

  function initCharts(root) {
    $all(root, ".chart[data-chart]").forEach(function (el) {
      var st = el._sentinelChart;
      if (st && st.raw === el.getAttribute("data-chart") && el.isConnected) return; // already current
      buildChart(el);
    });
  }

  function rebuildAllCharts() {
    Array.from(charts).forEach(function (el) {
      if (el.isConnected) buildChart(el); else destroyChart(el);
    });
  }

  // A changed data-chart attribute on a live element (htmx settle, morphing, OOB attribute swaps)
  // re-renders that chart.
  if (typeof MutationObserver === "function") {
    new MutationObserver(function (records) {
      records.forEach(function (r) {
        var el = r.target;
        if (el.isConnected && el.classList.contains("chart") && el.hasAttribute("data-chart")) {
          var st = el._sentinelChart;
          if (!st || st.raw !== el.getAttribute("data-chart")) buildChart(el);
        }
      });
    }).observe(doc.documentElement, { attributes: true, attributeFilter: ["data-chart"], subtree: true });
  }

  // Fallback for browsers without ResizeObserver
  if (typeof ResizeObserver !== "function") {
    var resizeTimer = null;
    window.addEventListener("resize", function () {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(function () {
        charts.forEach(function (el) {
          var st = el._sentinelChart;
          if (st && el.isConnected) st.plot.setSize({ width: Math.max(200, el.clientWidth), height: chartHeight(el) });
        });
      }, 120);
    });
  }

  // Re-render with the other palette when the colour scheme flips.
  if (window.matchMedia) {
    var mq = window.matchMedia("(prefers-color-scheme: dark)");
    var onScheme = function () { rebuildAllCharts(); };
    if (mq.addEventListener) mq.addEventListener("change", onScheme);
    else if (mq.addListener) mq.addListener(onScheme);
  }
  function setPrinting(on) {
    if (printing === on) return;
    printing = on;
    rebuildAllCharts();
  }
  window.addEventListener("beforeprint", function () { setPrinting(true); });
  window.addEventListener("afterprint", function () { setPrinting(false); });

  // ------------------------------------------------------------------
  // 4. Live metrics: WebSocket first, polling fallback.
  //    <section hx-ext="ws" ws-connect="/ws/metrics/">
  //      <div id="live-metrics" data-live-poll hx-get="/metrics/live/" hx-trigger="every 2s">…</div>
  //    </section>
  //    While the socket is open, the polling requests are cancelled here
  //    (htmx trigger filters like [!window.sentinelWsOk] need eval, which the CSP forbids).
  // ------------------------------------------------------------------
  window.sentinelWsOk = false;

  function setLiveState(state) {
    $all(doc, "[data-live-poll], [data-live-status]").forEach(function (el) {
      el.setAttribute("data-live-state", state);
    });
  }

  function onWsOpen() {
    window.sentinelWsOk = true;
    setLiveState("ws");
  }

  function onWsDown() {
    window.sentinelWsOk = false;
    setLiveState(doc.querySelector("[data-live-poll]") ? "polling" : "offline");
  }

  function onBeforeRequest(evt) {
    var elt = evt.detail && evt.detail.elt;
    if (elt && elt.hasAttribute && elt.hasAttribute("data-live-poll") && window.sentinelWsOk) {
      evt.preventDefault(); // socket is delivering updates; skip this poll
    }
  }

  function initLive(root) {
    var els = $all(root, "[data-live-poll], [data-live-status]");
    if (!els.length) return;
    var state = window.sentinelWsOk ? "ws" : (doc.querySelector("[data-live-poll]") ? "polling" : "offline");
    els.forEach(function (el) {
      if (!el.hasAttribute("data-live-state")) el.setAttribute("data-live-state", state);
    });
  }

  // ------------------------------------------------------------------
  // 5. Flash messages: auto-dismiss .msg-success after 6 s; [data-dismiss] closes one.
  // ------------------------------------------------------------------
  function dismissMessage(msg) {
    if (!msg || !msg.isConnected) return;
    msg.classList.add("is-leaving");
    setTimeout(function () {
      var list = msg.parentNode;
      if (msg.parentNode) msg.parentNode.removeChild(msg);
      if (list && list.classList && list.classList.contains("messages") && !list.children.length) {
        list.textContent = "";
      }
    }, 320);
  }

  function scheduleDismiss(msg, delay) {
    setTimeout(function () {
      // keep it while the user is reading it (hover) or interacting with it (focus)
      if (msg.matches(":hover") || msg.contains(doc.activeElement)) {
        scheduleDismiss(msg, 2000);
        return;
      }
      dismissMessage(msg);
    }, delay);
  }

  function initMessages(root) {
    $all(root, ".msg-success").forEach(function (msg) {
      if (msg._sentinelDismiss || msg.hasAttribute("data-sticky")) return;
      msg._sentinelDismiss = true;
      scheduleDismiss(msg, FLASH_DISMISS_MS);
    });
  }

  /** Append a flash message client-side (used for failed htmx requests). */
  function flash(kind, text) {
    var list = doc.querySelector(".messages");
    if (!list) {
      list = doc.createElement("ul");
      list.className = "messages";
      list.setAttribute("role", "status");
      var main = doc.querySelector("main") || doc.body;
      main.insertBefore(list, main.firstChild);
    }
    var li = doc.createElement("li");
    li.className = "msg msg-" + kind;
    var body = doc.createElement("div");
    body.className = "msg-body";
    body.textContent = text;
    var close = doc.createElement("button");
    close.type = "button";
    close.className = "msg-close";
    close.setAttribute("data-dismiss", "");
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "\u00d7";
    li.appendChild(body);
    li.appendChild(close);
    list.appendChild(li);
    initMessages(li);
    return li;
  }
  window.sentinelFlash = flash;

  // ------------------------------------------------------------------
  // 6. Small behaviours
  // ------------------------------------------------------------------
  // <select data-autosubmit> submits its form on change (tenant switcher)
  function onChange(evt) {
    var el = evt.target;
    if (el && el.hasAttribute && el.hasAttribute("data-autosubmit") && el.form) {
      if (typeof el.form.requestSubmit === "function") el.form.requestSubmit();
      else el.form.submit();
    }
  }

  // <button data-dialog-open="#id"> / <button data-dialog-close>
  function onClick(evt) {
    var t = evt.target;
    if (!t || !t.closest) return;

    var copyBtn = t.closest("[data-copy-target]");
    if (copyBtn) { evt.preventDefault(); onCopyClick(copyBtn); return; }

    var dismiss = t.closest("[data-dismiss]");
    if (dismiss) { evt.preventDefault(); dismissMessage(dismiss.closest(".msg, .callout")); return; }

    var opener = t.closest("[data-dialog-open]");
    if (opener) {
      var dlg = doc.querySelector(opener.getAttribute("data-dialog-open"));
      if (dlg && typeof dlg.showModal === "function") { evt.preventDefault(); dlg.showModal(); }
      return;
    }
    var closer = t.closest("[data-dialog-close]");
    if (closer) {
      var d = closer.closest("dialog");
      if (d) { evt.preventDefault(); d.close(closer.getAttribute("data-dialog-close") || ""); }
      return;
    }

    // close open <details class="menu"> when clicking elsewhere
    $all(doc, "details.menu[open]").forEach(function (m) {
      if (!m.contains(t)) m.removeAttribute("open");
    });
  }

  function onKeydown(evt) {
    if (evt.key !== "Escape") return;
    $all(doc, "details.menu[open]").forEach(function (m) {
      m.removeAttribute("open");
      var s = m.querySelector("summary");
      if (s && m.contains(doc.activeElement)) s.focus();
    });
  }

  function autofocus(root) {
    var el = $all(root, "[data-autofocus]")[0];
    if (el && typeof el.focus === "function") {
      if (!el.hasAttribute("tabindex") && !/^(A|BUTTON|INPUT|SELECT|TEXTAREA)$/.test(el.tagName)) {
        el.setAttribute("tabindex", "-1");
      }
      el.focus({ preventScroll: false });
    }
  }

  // ------------------------------------------------------------------
  // wiring
  // ------------------------------------------------------------------
  function init(root) {
    initCharts(root);
    initMessages(root);
    initLive(root);
  }

  doc.addEventListener("click", onClick);
  doc.addEventListener("keydown", onKeydown);
  doc.addEventListener("change", onChange);
  doc.addEventListener("submit", onSubmitCapture, true); // capture: runs before htmx's own handler

  // htmx lifecycle
  doc.addEventListener("htmx:load", function (evt) {
    var root = evt.target;
    init(root);
    // htmx fires htmx:load on <body> once at start-up; only swapped-in content gets autofocus
    if (root !== doc.body) autofocus(root);
  });
  doc.addEventListener("htmx:beforeCleanupElement", function (evt) {
    var el = evt.target;
    if (el && el._sentinelChart) destroyChart(el);
  });
  doc.addEventListener("htmx:beforeRequest", onBeforeRequest);
  doc.addEventListener("htmx:wsOpen", onWsOpen);
  doc.addEventListener("htmx:wsClose", onWsDown);
  doc.addEventListener("htmx:wsError", onWsDown);
  doc.addEventListener("htmx:responseError", function (evt) {
    var elt = evt.detail && evt.detail.elt;
    if (elt && elt.closest && elt.closest("[data-no-error-flash]")) return;
    if (elt && elt.hasAttribute && elt.hasAttribute("data-live-poll")) return; // polling: stay quiet
    var xhr = evt.detail && evt.detail.xhr;
    flash("error", "Request failed" + (xhr && xhr.status ? " (HTTP " + xhr.status + ")" : "") + ". Please try again.");
  });
  doc.addEventListener("htmx:sendError", function (evt) {
    var elt = evt.detail && evt.detail.elt;
    if (elt && elt.hasAttribute && elt.hasAttribute("data-live-poll")) {
      setLiveState("offline");
      return;
    }
    if (elt && elt.closest && elt.closest("[data-no-error-flash]")) return;
    flash("error", "Network error: the server could not be reached.");
  });
  doc.addEventListener("htmx:afterRequest", function (evt) {
    var elt = evt.detail && evt.detail.elt;
    if (elt && elt.hasAttribute && elt.hasAttribute("data-live-poll") && evt.detail.successful && !window.sentinelWsOk) {
      setLiveState("polling");
    }
  });

  if (doc.readyState === "loading") {
    doc.addEventListener("DOMContentLoaded", function () { init(doc.body); });
  } else {
    init(doc.body);
  }

  // small public surface for templates' debugging / tests
  window.Sentinel = {
    initCharts: initCharts,
    destroyChart: destroyChart,
    flash: flash,
    announce: announce
  };
})();

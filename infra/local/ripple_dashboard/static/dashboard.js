// ripple's local dashboard page. The page model (rows, panels, units, legends, variables) comes
// from /api/dashboard (ripple_dashboard.model); every query goes to /api/v1/query(_range) on the
// same origin, where the server replaces the template variables and asks Prometheus. A panel
// whose query fails shows Prometheus's error text. State lives in the URL like Grafana's:
// ?from=now-1h&to=now (or milliseconds) &refresh=10s &var-<name>=<value>.
"use strict";

(() => {
  const SCRAPE_S = 5; // the local Prometheus scrapes every 5 s: no step below it
  const MAX_POINTS = 400;
  const PALETTE = ["#7EB26D", "#EAB839", "#6ED0E0", "#EF843C", "#E24D42", "#1F78C1", "#BA43A9", "#705DA0",
    "#508642", "#CCA300", "#447EBC", "#C15C17", "#890F02", "#0A437C", "#6D1F62", "#584477"];
  const RANGES = [["now-5m", "Last 5 minutes"], ["now-15m", "Last 15 minutes"], ["now-30m", "Last 30 minutes"],
    ["now-1h", "Last 1 hour"], ["now-3h", "Last 3 hours"], ["now-6h", "Last 6 hours"],
    ["now-12h", "Last 12 hours"], ["now-24h", "Last 24 hours"], ["now-2d", "Last 2 days"], ["now-7d", "Last 7 days"]];
  const REFRESHES = ["", "5s", "10s", "30s", "1m", "5m", "15m"];
  const UNIT_S = { s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000 };

  const state = { model: null, from: "now-1h", to: "now", refresh: "", vars: {}, timer: null, round: 0, plots: {} };
  const $ = (id) => document.getElementById(id);

  // ---- time ----------------------------------------------------------------------------------
  function parseDuration(text) {
    const match = /^(\d+)([smhdwy])$/.exec(text);
    return match ? Number(match[1]) * UNIT_S[match[2]] : null;
  }
  // "now", "now-1h", "now-1h/h" (rounding ignored), milliseconds or an ISO date -> milliseconds.
  function resolveTime(text, now) {
    if (/^\d+$/.test(text)) return Number(text);
    const match = /^now(?:-(\d+[smhdwy]))?(?:\/[smhdwy])?$/.exec(text);
    if (match) return now - (match[1] ? parseDuration(match[1]) * 1000 : 0);
    const parsed = Date.parse(text);
    if (!Number.isNaN(parsed)) return parsed;
    throw new Error(`cannot read the time ${JSON.stringify(text)}: use now-1h, now or milliseconds`);
  }
  function currentRange() {
    const now = Date.now();
    const from = resolveTime(state.from, now);
    const to = resolveTime(state.to, now);
    if (from >= to) throw new Error(`the range ${state.from} .. ${state.to} is empty: "from" must be before "to"`);
    return { from, to };
  }
  const utc = () => (state.model && state.model.timezone === "utc");
  function toInput(ms) {
    const d = new Date(utc() ? ms : ms - new Date(ms).getTimezoneOffset() * 60000);
    return d.toISOString().slice(0, 19);
  }
  function fromInput(text) {
    const ms = Date.parse(text + "Z");
    return utc() ? ms : ms + new Date(ms).getTimezoneOffset() * 60000;
  }

  // ---- units ---------------------------------------------------------------------------------
  function number(value, decimals) {
    if (decimals !== null && decimals !== undefined) return value.toFixed(decimals);
    const abs = Math.abs(value);
    const places = abs === 0 || abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : Math.min(6, 2 - Math.floor(Math.log10(abs)));
    return String(Number(value.toFixed(places)));
  }
  function scaled(value, step, names, decimals) {
    let index = 0;
    while (Math.abs(value) >= step && index < names.length - 1) { value /= step; index += 1; }
    return `${number(value, decimals)}${names[index]}`;
  }
  function formatTime(seconds, decimals) {
    const abs = Math.abs(seconds);
    if (abs === 0) return "0 s";
    const steps = [[1e-6, 1e-9, "ns"], [1e-3, 1e-6, "µs"], [1, 1e-3, "ms"], [60, 1, "s"], [3600, 60, "min"],
      [86400, 3600, "hour"], [Infinity, 86400, "day"]];
    const [, size, name] = steps.find(([below]) => abs < below);
    return `${number(seconds / size, decimals)} ${name}`;
  }
  // How a Grafana unit (model.unit_format) shows a value.
  function format(value, unit, decimals) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    const f = unit || { kind: "short" };
    switch (f.kind) {
      case "time": return formatTime(value * f.base, decimals);
      case "bytes": return scaled(value, f.step, f.step === 1024 ? [" B", " KiB", " MiB", " GiB", " TiB", " PiB"]
        : [" B", " kB", " MB", " GB", " TB", " PB"], decimals) + (f.suffix || "");
      case "percent": return `${number(value * f.factor, decimals)}%`;
      case "datetime": return new Date(value).toISOString().replace("T", " ").slice(0, 19);
      default: return (f.prefix || "") + scaled(value, 1000, ["", " k", " M", " G", " T", " P"], decimals) + (f.suffix || "");
    }
  }

  // An x-axis tick: HH:MM for ranges within a day, MM-DD HH:MM beyond (UTC or the browser's zone).
  function clock(ts, rangeS) {
    const d = new Date(utc() ? ts * 1000 : ts * 1000 - new Date(ts * 1000).getTimezoneOffset() * 60000);
    const iso = d.toISOString();
    return rangeS > 86400 ? `${iso.slice(5, 10)} ${iso.slice(11, 16)}` : iso.slice(11, rangeS < 600 ? 19 : 16);
  }

  // ---- legends -------------------------------------------------------------------------------
  function seriesName(legendFormat, metric) {
    if (legendFormat) return legendFormat.replace(/\{\{\s*([A-Za-z_]\w*)\s*\}\}/g, (_, name) => metric[name] ?? "");
    const labels = Object.entries(metric).filter(([k]) => k !== "__name__").map(([k, v]) => `${k}="${v}"`);
    if (!labels.length) return metric.__name__ || "value";
    return `${metric.__name__ || ""}{${labels.join(", ")}}`;
  }

  // ---- queries -------------------------------------------------------------------------------
  function variableParams(params) {
    for (const [name, values] of Object.entries(state.vars)) for (const v of values) params.append(`var-${name}`, v);
    return params;
  }
  async function prometheus(path, params) {
    let response;
    try {
      response = await fetch(path, { method: "POST", body: variableParams(params) });
    } catch (error) {
      return { error: `the dashboard server does not answer (${error.message}): is the dashboard component running? (make up)` };
    }
    let body;
    try { body = await response.json(); } catch {
      return { error: `HTTP ${response.status} with a body that is not JSON` };
    }
    if (body.status !== "success") return { error: `${body.errorType || "error"}: ${body.error || response.status}` };
    return { data: body.data, warnings: body.warnings };
  }
  function stepFor(range) {
    const seconds = (range.to - range.from) / 1000;
    return Math.max(SCRAPE_S, Math.ceil(seconds / MAX_POINTS));
  }
  async function fetchPanel(panel, range) {
    const step = stepFor(range);
    const end = Math.floor(range.to / 1000);
    const start = Math.floor(range.from / 1000 / step) * step;
    const results = await Promise.all(panel.targets.map(async (target) => {
      const params = new URLSearchParams({ query: target.expr });
      if (target.instant || panel.type === "table") {
        params.set("time", String(end));
        params.set("range", String(end - start));
        return { target, ...(await prometheus("/api/v1/query", params)) };
      }
      params.set("start", String(start));
      params.set("end", String(end));
      params.set("step", String(step));
      return { target, ...(await prometheus("/api/v1/query_range", params)) };
    }));
    return { results, start, end, step };
  }

  // ---- drawing -------------------------------------------------------------------------------
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "class") node.className = value; else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  }
  function overrideFor(panel, name) {
    for (const o of panel.overrides) {
      if ((o.matcher === "byName" && o.pattern === name) || (o.matcher === "byRegexp" && new RegExp(o.pattern).test(name))) return o;
    }
    return null;
  }
  function colorFor(panel, value) {
    let color = null;
    for (const step of panel.thresholds) if (step.value === null || value >= step.value) color = step.color;
    const names = { green: "#73BF69", red: "#F2495C", yellow: "#FADE2A", orange: "#FF9830", blue: "#5794F2" };
    return names[color] || color || "#73BF69";
  }
  function reduce(values, how) {
    const present = values.filter((v) => v !== null && !Number.isNaN(v));
    if (!present.length) return null;
    switch (how) {
      case "mean": return present.reduce((a, b) => a + b, 0) / present.length;
      case "max": return Math.max(...present);
      case "min": return Math.min(...present);
      case "sum": return present.reduce((a, b) => a + b, 0);
      case "first": case "firstNotNull": return present[0];
      default: return present[present.length - 1];
    }
  }

  // Prometheus range answers -> one x axis (the step grid) and one y array per series.
  function alignSeries(results, start, end, step) {
    const xs = [];
    for (let t = start; t <= end; t += step) xs.push(t);
    const index = new Map(xs.map((t, i) => [t, i]));
    const series = [];
    for (const { target, data } of results) {
      if (!data) continue;
      for (const item of data.result || []) {
        const ys = new Array(xs.length).fill(null);
        for (const [t, v] of item.values || (item.value ? [item.value] : [])) {
          const i = index.get(Math.round(t));
          const value = Number(v);
          if (i !== undefined && Number.isFinite(value)) ys[i] = value;
        }
        // A series without one number (histogram_quantile of no traffic is NaN) draws nothing.
        if (ys.some((y) => y !== null)) series.push({ name: seriesName(target.legendFormat, item.metric), ys });
      }
    }
    return { xs, series };
  }

  // The y axis: from zero (or the panel's min) to a little above the highest value (or the panel's max).
  function yRange(panel, min, max) {
    const low = panel.min ?? Math.min(0, min ?? 0);
    let high = panel.max ?? max ?? 1;
    if (panel.max === null || panel.max === undefined) high = high > low ? high + (high - low) * 0.05 : low + Math.max(1, Math.abs(low)) * 0.2;
    return [low, high];
  }

  function drawTimeseries(panel, body, fetched) {
    const { xs, series } = alignSeries(fetched.results, fetched.start, fetched.end, fetched.step);
    if (!series.length) return 0;
    const unitOf = (name) => (overrideFor(panel, name)?.format) || panel.format;
    const key = series.map((s) => s.name).join("\n");
    const data = [xs, ...series.map((s) => s.ys)];
    const old = state.plots[panel.id];
    const rect = body.getBoundingClientRect();
    const legendRight = panel.legend.show && panel.legend.placement === "right";
    const width = Math.max(120, Math.floor(rect.width) - 8);
    const height = Math.max(60, Math.floor(rect.height) - (panel.legend.show && !legendRight ? 58 : 4));
    if (old && old.key === key && old.plot.root.isConnected && old.width === width && old.height === height) {
      old.plot.setData(data);
      return series.length;
    }
    if (old) old.plot.destroy();
    body.replaceChildren();
    body.classList.toggle("legend-right", legendRight);
    const opts = {
      width: legendRight ? Math.floor(width * 0.64) : width,
      height,
      tzDate: (ts) => (utc() ? uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC") : new Date(ts * 1e3)),
      legend: { show: panel.legend.show, live: true },
      cursor: { drag: { x: true, y: false } },
      scales: { y: { range: (u, min, max) => yRange(panel, min, max) } },
      axes: [
        { stroke: "#8e8e9c", grid: { stroke: "#2c3235" }, ticks: { stroke: "#2c3235" },
          values: (u, splits) => splits.map((ts) => clock(ts, fetched.end - fetched.start)) },
        { stroke: "#8e8e9c", grid: { stroke: "#2c3235" }, ticks: { stroke: "#2c3235" },
          // Wide enough for the longest tick label ("1.67 min", "12.5 k req/s").
          size: (u, values) => (values ? Math.max(48, ...values.map((v) => String(v).length * 7 + 24)) : 48),
          values: (u, splits) => splits.map((v) => format(v, panel.format, panel.decimals)) },
      ],
      series: [
        { value: (u, ts) => (ts === null ? "–" : new Date(ts * 1000).toISOString().slice(11, 19)) },
        ...series.map((s, i) => ({
          label: s.name, stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: false,
          fill: series.length === 1 ? PALETTE[0] + "22" : undefined,
          value: (u, v) => format(v, unitOf(s.name), panel.decimals),
        })),
      ],
      hooks: {
        setSelect: [(u) => {
          if (u.select.width < 5) return;
          const from = Math.round(u.posToVal(u.select.left, "x") * 1000);
          const to = Math.round(u.posToVal(u.select.left + u.select.width, "x") * 1000);
          setRange(String(from), String(to));
        }],
      },
    };
    const plot = new uPlot(opts, data, body);
    state.plots[panel.id] = { plot, key, width, height };
    return series.length;
  }

  function drawStat(panel, body, fetched) {
    const { series } = alignSeries(fetched.results, fetched.start, fetched.end, fetched.step);
    if (!series.length) return 0;
    const box = el("div", { class: "stat" });
    for (const s of series) {
      const value = reduce(s.ys, panel.reduce[0]);
      const item = el("div", { class: "stat-item" },
        el("div", { class: "stat-value", text: format(value, panel.format, panel.decimals) }));
      item.firstChild.style.color = colorFor(panel, value);
      if (panel.type !== "stat" && value !== null) {
        const min = panel.min ?? 0;
        const max = panel.max ?? (panel.format.kind === "percent" ? 100 / panel.format.factor : Math.max(value, 1));
        const bar = el("div", { class: "gauge-bar" }, el("div"));
        bar.firstChild.style.width = `${Math.max(0, Math.min(100, ((value - min) / (max - min || 1)) * 100))}%`;
        bar.firstChild.style.background = colorFor(panel, value);
        item.append(bar);
      }
      if (series.length > 1 || s.name !== "value") item.append(el("div", { class: "stat-name", text: s.name }));
      box.append(item);
    }
    body.replaceChildren(box);
    return series.length;
  }

  // Instant answers of every target merged on their labels, as Grafana's "merge" transformation.
  function drawTable(panel, body, fetched) {
    const several = fetched.results.length > 1;
    const labelColumns = [];
    const rows = new Map();
    const valueColumns = [];
    for (const { target, data } of fetched.results) {
      if (!data) continue;
      const column = several ? `Value #${target.refId}` : "Value";
      valueColumns.push(column);
      for (const item of data.result || []) {
        const labels = Object.fromEntries(Object.entries(item.metric).filter(([k]) => k !== "__name__"));
        for (const name of Object.keys(labels)) if (!labelColumns.includes(name)) labelColumns.push(name);
        const rowKey = JSON.stringify(Object.entries(labels).sort());
        const row = rows.get(rowKey) || { ...labels };
        const value = item.value || (item.values && item.values[item.values.length - 1]);
        row[column] = value ? Number(value[1]) : null;
        rows.set(rowKey, row);
      }
    }
    if (!rows.size) return 0;
    const columns = [...labelColumns, ...valueColumns].filter((c) => !panel.exclude.includes(c));
    const header = el("tr");
    for (const c of columns) {
      const o = overrideFor(panel, c);
      header.append(el("th", { text: o?.displayName || panel.rename[c] || c }));
    }
    const tbody = el("tbody");
    const sorted = [...rows.values()].sort((a, b) => String(a[columns[0]]).localeCompare(String(b[columns[0]])));
    for (const row of sorted) {
      const tr = el("tr");
      for (const c of columns) {
        const value = row[c];
        const unit = overrideFor(panel, c)?.format || panel.format;
        tr.append(el("td", { text: valueColumns.includes(c) ? format(value, unit, panel.decimals) : (value ?? "") }));
      }
      tbody.append(tr);
    }
    body.replaceChildren(el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, header), tbody)));
    return rows.size;
  }

  function setPanelState(node, status, count, errors) {
    node.dataset.state = status;
    node.dataset.series = String(count);
    const old = node.querySelector(".panel-error");
    if (old) old.remove();
    if (errors.length) {
      node.querySelector(".panel-body").before(el("div", { class: "panel-error", text: errors.join("\n") }));
    }
  }

  async function updatePanel(panel, node, range) {
    const body = node.querySelector(".panel-body");
    if (!panel.drawn) {
      body.replaceChildren(el("div", { class: "panel-message", text: `panel type "${panel.type}" is not drawn locally (open it in Grafana)` }));
      setPanelState(node, "unsupported", 0, []);
      return;
    }
    if (panel.type === "text") {
      body.replaceChildren(el("div", { class: "text-panel", text: panel.content }));
      setPanelState(node, "data", 0, []);
      return;
    }
    if (!panel.targets.length) {
      body.replaceChildren(el("div", { class: "panel-message", text: "no queries" }));
      setPanelState(node, "nodata", 0, []);
      return;
    }
    const fetched = await fetchPanel(panel, range);
    const errors = fetched.results.filter((r) => r.error).map((r) => `query ${r.target.refId}: ${r.error}`);
    let count = 0;
    if (panel.type === "table") count = drawTable(panel, body, fetched);
    else if (panel.type === "stat" || panel.type === "gauge" || panel.type === "bargauge") count = drawStat(panel, body, fetched);
    else count = drawTimeseries(panel, body, fetched);
    if (!count) {
      if (state.plots[panel.id]) { state.plots[panel.id].plot.destroy(); delete state.plots[panel.id]; }
      body.replaceChildren(el("div", { class: "panel-message", text: errors.length ? "" : "No data" }));
    }
    setPanelState(node, errors.length ? "error" : count ? "data" : "nodata", count, errors);
  }

  // ---- the page ------------------------------------------------------------------------------
  function buildRows() {
    const main = $("rows");
    main.replaceChildren();
    for (const row of state.model.rows) {
      const section = el("section", { class: row.collapsed ? "row collapsed" : "row" });
      if (row.title) {
        const title = el("h2", { class: "row-title", text: row.title });
        title.addEventListener("click", () => { section.classList.toggle("collapsed"); refreshAll(); });
        section.append(title);
      }
      const grid = el("div", { class: "grid" });
      const top = Math.min(...row.panels.map((p) => p.gridPos.y));
      for (const panel of row.panels) {
        const node = el("div", { class: "panel", "data-panel-id": String(panel.id), "data-state": "loading", "data-series": "0" },
          el("div", { class: "panel-title", text: panel.title, title: panel.description || "" }),
          el("div", { class: "panel-body" }, el("div", { class: "panel-message", text: "loading…" })));
        node.style.gridColumn = `${panel.gridPos.x + 1} / span ${panel.gridPos.w}`;
        node.style.gridRow = `${panel.gridPos.y - top + 1} / span ${panel.gridPos.h}`;
        grid.append(node);
      }
      section.append(grid);
      main.append(section);
    }
  }

  function showNotice(text) {
    $("notice").hidden = !text;
    $("notice").textContent = text || "";
  }

  async function refreshAll() {
    let range;
    try { range = currentRange(); } catch (error) { showNotice(error.message); return; }
    showNotice("");
    $("from").value = toInput(range.from);
    $("to").value = toInput(range.to);
    const jobs = [];
    for (const section of document.querySelectorAll("section.row")) {
      if (section.classList.contains("collapsed")) continue;
      for (const node of section.querySelectorAll(".panel")) {
        const panel = state.panels.get(node.dataset.panelId);
        jobs.push(updatePanel(panel, node, range).catch((error) => {
          setPanelState(node, "error", 0, [`the page failed to draw this panel: ${error.message}`]);
        }));
      }
    }
    await Promise.all(jobs);
    state.round += 1;
    document.body.dataset.refreshes = String(state.round);
    $("updated").textContent = `updated ${new Date().toISOString().slice(11, 19)} UTC`;
  }

  function writeUrl() {
    const params = new URLSearchParams({ from: state.from, to: state.to });
    if (state.refresh) params.set("refresh", state.refresh);
    for (const [name, values] of Object.entries(state.vars)) for (const v of values) params.append(`var-${name}`, v);
    history.replaceState(null, "", `?${params}`);
  }

  function setRange(from, to) {
    state.from = from;
    state.to = to;
    const select = $("range");
    select.value = to === "now" && RANGES.some(([v]) => v === from) ? from : "custom";
    writeUrl();
    refreshAll();
  }

  function setRefresh(value) {
    state.refresh = value;
    clearInterval(state.timer);
    const seconds = value ? parseDuration(value) : null;
    if (seconds) state.timer = setInterval(refreshAll, seconds * 1000);
    $("refresh").value = value;
    writeUrl();
  }

  async function buildVariables() {
    const box = $("variables");
    box.replaceChildren();
    for (const variable of state.model.variables) {
      if (!state.vars[variable.name]) state.vars[variable.name] = variable.current;
      if (variable.hidden) continue;
      let options = variable.options;
      if (variable.dynamic) {
        const response = await fetch(`/api/variables/${encodeURIComponent(variable.name)}?${variableParams(new URLSearchParams())}`);
        const body = await response.json();
        if (!response.ok) { showNotice(`variable ${variable.name}: ${body.error}`); continue; }
        options = body.options;
        if (!state.vars[variable.name].length && options.length) state.vars[variable.name] = [options[0].value];
      }
      const select = el("select", { "data-variable": variable.name });
      if (variable.multi) select.multiple = true;
      for (const option of options) {
        const node = el("option", { value: option.value, text: option.text });
        node.selected = state.vars[variable.name].includes(option.value);
        select.append(node);
      }
      if (variable.unsupported) select.title = variable.unsupported;
      select.addEventListener("change", () => {
        state.vars[variable.name] = [...select.selectedOptions].map((o) => o.value);
        writeUrl();
        refreshAll();
      });
      box.append(el("label", {}, variable.label, select));
    }
  }

  async function start() {
    const params = new URLSearchParams(location.search);
    let response;
    try {
      response = await fetch("/api/dashboard");
      state.model = await response.json();
    } catch (error) {
      showNotice(`cannot load the dashboard model (${error.message}): is the dashboard component running? (make up)`);
      return;
    }
    if (!response.ok) { showNotice(state.model.error || `HTTP ${response.status}`); return; }
    if (typeof uPlot === "undefined") {
      showNotice("the chart library (uPlot) did not load: run `make up` (it installs it with npm ci) and reload.");
      return;
    }
    document.title = `${state.model.title} · ripple`;
    $("title").textContent = state.model.title;
    state.panels = new Map(state.model.rows.flatMap((r) => r.panels).map((p) => [String(p.id), p]));
    state.from = params.get("from") || state.model.time.from;
    state.to = params.get("to") || state.model.time.to;
    for (const [key, value] of params) {
      if (key.startsWith("var-")) (state.vars[key.slice(4)] ||= []).push(value);
    }
    const range = $("range");
    for (const [value, text] of [...RANGES, ["custom", "Custom (from/to)"]]) range.append(el("option", { value, text }));
    range.addEventListener("change", () => { if (range.value !== "custom") setRange(range.value, "now"); });
    const refresh = $("refresh");
    for (const value of REFRESHES) refresh.append(el("option", { value, text: value || "off" }));
    refresh.addEventListener("change", () => setRefresh(refresh.value));
    $("apply").addEventListener("click", () => setRange(String(fromInput($("from").value)), String(fromInput($("to").value))));
    $("reload").addEventListener("click", refreshAll);
    let resizeTimer = null;
    window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(refreshAll, 300); });
    await buildVariables();
    buildRows();
    range.value = state.to === "now" && RANGES.some(([v]) => v === state.from) ? state.from : "custom";
    setRefresh(params.has("refresh") ? params.get("refresh") : state.model.refresh);
    await refreshAll();
  }

  // Exposed for the browser test and for a curious console.
  window.rippleDashboard = { state, format, seriesName, resolveTime, refreshAll };
  start();
})();

// The temperature charts: one per thermal cabinet, drawn by uPlot (vendored beside this
// file, MIT: uplot-LICENSE.txt). The recorded readings come from the agent's records
// (/_sim/temperatures/KEY, refreshed every REFRESH_MS); the live temperature the agent
// shows is added as its own dashed series until the records catch up. Under the lines:
// the band held (shaded), the food code's alarm line (dashed) and each time out of
// temperature (hatched). Times in the page's one zone (the browser's), as everywhere.
"use strict";

const CHART_HOURS = 3;
const REFRESH_MS = 10_000;
const MIN_SPAN_S = 300;
const LIVE_KEEP_S = CHART_HOURS * 3600;
const THERMAL_ALARMS = new Set(["temperature_out_of_band", "temperature_sensor_failed",
  "thermal_not_converging", "food_time_exceeded", "temperature_over_limit", "thermal_stalled",
  "thermal_fallback_cycle"]);
const COLOURS = { band: "rgba(0, 158, 115, 0.16)", line: "#d55e00", out: "rgba(213, 94, 0, 0.22)",
  recorded: "#0072b2", live: "#cc79a7" };

// The x axis in the page's one zone, 24-hour: HH:MM, or HH:MM:SS when ticks are seconds apart.
function clock(unix, splits) {
  const d = new Date(unix * 1000);
  const parts = [d.getHours(), d.getMinutes()];
  if (splits.length > 1 && splits[1] - splits[0] < 60) parts.push(d.getSeconds());
  return parts.map((n) => String(n).padStart(2, "0")).join(":");
}

const Charts = {
  cards: new Map(), // key -> {card, plot, data, live, fetched, fetching}
  ready: () => typeof uPlot === "function",

  // Called with every state the page draws: a card per thermal cabinet, live points;
  // the cards of cabinets in a thermal alarm first, the selected one first on a phone.
  sync(state, selected = null) {
    const box = document.querySelector("#charts");
    const thermal = state.cabinets.filter((c) => c.thermal);
    box.hidden = thermal.length === 0;
    const keys = new Set(thermal.map((c) => c.key));
    for (const [key, entry] of this.cards) {
      if (!keys.has(key)) { entry.plot && entry.plot.destroy(); entry.card.remove(); this.cards.delete(key); }
    }
    const now = Date.now() / 1000;
    for (const cab of thermal) {
      const entry = this.cards.get(cab.key) || this.add(cab);
      entry.mode = cab.thermal.mode;
      entry.alarms = (cab.alarms || []).filter((a) => THERMAL_ALARMS.has(a.type)).map((a) => a.type);
      entry.temperature = cab.temperature_c;
      entry.card.classList.toggle("alarm", entry.alarms.length > 0);
      entry.card.classList.toggle("selected", cab.key === selected);
      const last = entry.live.at(-1);
      if (cab.temperature_c !== null && cab.temperature_c !== undefined && !(last && now - last[0] < 2)) {
        entry.live.push([now, cab.temperature_c]);
        while (entry.live.length && entry.live[0][0] < now - LIVE_KEEP_S) entry.live.shift();
      }
      if (!entry.fetching && now * 1000 - entry.fetched > REFRESH_MS) this.fetch(entry);
      else if (now - (entry.drawn || 0) >= 1) this.draw(entry);
    }
  },

  add(cab) {
    const card = document.createElement("div");
    card.className = "chart";
    card.dataset.key = cab.key;
    card.innerHTML = `<h3>Cabinet ${cab.key}</h3><div class="plot"></div><p class="note"></p>`;
    document.querySelector("#chart-list").append(card);
    const entry = { key: cab.key, card, plot: null, data: null, live: [], fetched: 0, fetching: false };
    this.cards.set(cab.key, entry);
    new ResizeObserver(() => entry.plot && entry.plot.setSize(this.size(entry))).observe(card);
    return entry;
  },

  async fetch(entry) {
    entry.fetching = true;
    try {
      const resp = await fetch(`/_sim/temperatures/${entry.key}?hours=${CHART_HOURS}`);
      const data = await resp.json();
      if (!resp.ok) throw new Error(data.error || resp.status);
      entry.data = data;
      entry.card.dataset.error = "";
    } catch (err) {
      entry.card.dataset.error = String(err);
      entry.card.querySelector(".note").textContent = `no records: ${err}`;
    } finally {
      entry.fetched = Date.now();
      entry.fetching = false;
    }
    this.draw(entry);
  },

  size(entry) {
    const width = Math.max(200, entry.card.clientWidth - 16);
    return { width, height: Math.round(Math.min(260, Math.max(170, width * 0.42))) };
  },

  // [xs, recorded, live]: one x axis (UNIX seconds), null where a series has no point.
  series(entry) {
    const rows = new Map();
    for (const [t, c] of entry.data.readings) rows.set(t, [c, null]);
    const last = entry.data.readings.length ? entry.data.readings.at(-1)[0] : 0;
    for (const [t, c] of entry.live) if (t > last) rows.set(t, [null, c]);
    const xs = [...rows.keys()].sort((a, b) => a - b);
    return [xs, xs.map((t) => rows.get(t)[0]), xs.map((t) => rows.get(t)[1])];
  },

  draw(entry) {
    if (!entry.data || !this.ready()) return;
    entry.drawn = Date.now() / 1000;
    const d = entry.data;
    const mode = entry.mode || d.mode;
    entry.band = d.bands[mode] || null;
    entry.line = d.lines[mode] ?? null;
    const data = this.series(entry);
    const card = entry.card;
    card.dataset.mode = mode || "";
    card.dataset.band = entry.band ? entry.band.join(",") : "";
    card.dataset.line = entry.line ?? "";
    card.dataset.points = data[0].length;
    card.dataset.excursions = d.excursions.length;
    const held = entry.band ? `band ${entry.band[0]} to ${entry.band[1]} °C, alarm line ${entry.line} °C` : "no band held (ambient)";
    const open = d.excursions.filter((e) => e[1] === null).length;
    const note = card.querySelector(".note");
    note.textContent = `${mode}: ${held}; ${d.readings.length} recorded, ${d.excursions.length} time(s) out of temperature${open ? " (one now)" : ""}`;
    note.classList.toggle("excursion-note", d.excursions.length > 0);
    const now = entry.temperature === null || entry.temperature === undefined ? "?" : entry.temperature.toFixed(1);
    const title = card.querySelector("h3");
    title.textContent = `Cabinet ${entry.key} · ${mode} · ${now}\u00a0°C`;
    if (entry.alarms.length) {
      const names = entry.alarms.map((a) => (typeof shortAlarm === "function" ? shortAlarm(a) : a));
      title.append(" ", Object.assign(document.createElement("span"), { className: "alarm-mark", textContent: `⚠ ${names.join(", ")}` }));
    }
    if (entry.plot) { entry.plot.setData(data); return; }
    const opts = {
      ...this.size(entry),
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
      scales: {
        // At least the last MIN_SPAN_S up to now: a fresh locker's few points sit at the right.
        x: { time: true, range: (u, lo, hi) => [Math.min(lo ?? Infinity, Date.now() / 1000 - MIN_SPAN_S), Math.max(hi ?? 0, Date.now() / 1000)] },
        y: { range: (u, lo, hi) => this.range(entry, lo, hi) },
      },
      axes: [{ values: (u, splits) => splits.map((v) => clock(v, splits)) }, { label: "°C", size: 46 }],
      series: [
        {},
        { label: "recorded", stroke: COLOURS.recorded, width: 2, spanGaps: true },
        { label: "live, not yet recorded", stroke: COLOURS.live, width: 1.5, dash: [4, 3], spanGaps: true,
          points: { show: false } },
      ],
      hooks: { drawClear: [(u) => this.underlay(entry, u)] },
    };
    entry.plot = new uPlot(opts, data, card.querySelector(".plot"));
    window.charts = window.charts || {};
    window.charts[entry.key] = entry.plot; // for the page's tests
  },

  range(entry, lo, hi) {
    const marks = [lo, hi, ...(entry.band || []), ...(entry.line !== null && entry.line !== undefined ? [entry.line] : [])]
      .filter((v) => v !== null && Number.isFinite(v));
    if (!marks.length) return [0, 30];
    return [Math.floor(Math.min(...marks) - 2), Math.ceil(Math.max(...marks) + 2)];
  },

  // Beneath the series: the band, the excursions, the alarm line.
  underlay(entry, u) {
    const ctx = u.ctx;
    const { left, top, width, height } = u.bbox;
    const y = (v) => u.valToPos(v, "y", true);
    const x = (v) => Math.min(left + width, Math.max(left, u.valToPos(v, "x", true)));
    ctx.save();
    if (entry.band) {
      const [a, b] = [y(entry.band[1]), y(entry.band[0])];
      ctx.fillStyle = COLOURS.band;
      ctx.fillRect(left, a, width, b - a);
      entry.card.dataset.bandPx = [Math.round(a), Math.round(b)].join(",");
    }
    const end = Date.now() / 1000;
    for (const [start, stop] of entry.data.excursions) {
      const [a, b] = [x(start), x(stop ?? end)];
      if (b <= a) continue;
      ctx.save();
      ctx.beginPath();
      ctx.rect(a, top, b - a, height);
      ctx.clip();
      ctx.fillStyle = COLOURS.out;
      ctx.fillRect(a, top, b - a, height);
      ctx.strokeStyle = "rgba(213, 94, 0, 0.55)";
      ctx.lineWidth = 1;
      ctx.beginPath();
      for (let s = a - height; s < b; s += 8) { ctx.moveTo(s, top + height); ctx.lineTo(s + height, top); }
      ctx.stroke();
      ctx.restore();
    }
    if (entry.line !== null && entry.line !== undefined) {
      ctx.strokeStyle = COLOURS.line;
      ctx.lineWidth = 2;
      ctx.setLineDash([6, 4]);
      ctx.beginPath();
      ctx.moveTo(left, y(entry.line));
      ctx.lineTo(left + width, y(entry.line));
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = COLOURS.line;
      ctx.font = `${Math.round(11 * devicePixelRatio)}px system-ui, sans-serif`;
      ctx.textAlign = "right";
      ctx.fillText(`alarm line ${entry.line} °C`, left + width - 4, y(entry.line) - 4);
    }
    ctx.restore();
  },
};

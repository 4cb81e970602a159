// The simulator's page: draws the state the server pushes on /_sim/live and posts
// steps to /_sim/act. No framework, no build step; the server owns every rule.
"use strict";

// Buttons for the selected cabinet: [who, verb, label, extra fields]. A new action
// is one line here and one method in simulator/web/actions.py.
const CABINET_ACTIONS = [
  ["cloud", "open", "open front", {}],
  ["cloud", "open", "open rear", { rear: true }],
  ["cloud", "close", "close in 5 s", { delay: 5 }],
  ["cloud", "enable", "enable", {}],
  ["cloud", "disable", "disable", {}],
  ["cloud", "resize", "resize", { size: "#size" }],
  ["cloud", "set_thermal_mode", "set thermal mode", { mode: "#mode" }],
  ["cloud", "order", "make an order", {}],
  ["person", "open", "pull the door", {}],
  ["person", "shut", "shut the door", {}],
  ["person", "force", "force it open", {}],
  ["person", "put_item", "put an item in", {}],
  ["person", "take_item", "take the item out", {}],
  ["person", "block", "stand in the doorway", {}],
  ["person", "unblock", "step aside", {}],
  ["fate", "jam", "jam the lock", {}],
  ["fate", "unjam", "free the lock", {}],
  ["fate", "break_motor", "break the motor", {}],
  ["fate", "mend_motor", "mend the motor", {}],
  ["fate", "fail_compressor", "fail the compressor", {}],
  ["fate", "mend_compressor", "mend the compressor", {}],
  ["fate", "fail_heater", "fail the heater", {}],
  ["fate", "mend_heater", "mend the heater", {}],
  ["fate", "weld_relay", "weld its relay on", {}],
  ["fate", "mend_relay", "mend the relay", {}],
  ["fate", "fail_sensor", "fail the sensor", { fault: "#fault" }],
  ["fate", "mend_sensor", "mend the sensor", {}],
];
// Faults of the food locker's physics: shown only when the locker has thermal cabinets.
const THERMAL_ONLY = new Set(["fail_compressor", "mend_compressor", "fail_heater", "mend_heater",
  "weld_relay", "mend_relay", "fail_sensor", "mend_sensor"]);
const SENSOR_FAULTS = ["missing", "crc", "power_on", "stuck"];
const ROOM_FATE = [
  ["heatwave: room 35 °C", 35],
  ["room back to 22 °C", 22],
];
const SIZES = ["mini", "small", "medium", "large", "xlarge"];
const MODES = ["ambient", "chill", "freeze", "heat"];
const CLOUD_FATE = [
  ["cloud_down", "take the cloud down", {}],
  ["cloud_up", "bring the cloud back", {}],
  ["cloud_errors", "cloud answers 500", { status: 500 }],
  ["cloud_slow", "cloud answers slowly", { delay_s: 3 }],
  ["cloud_heal", "cloud well again", {}],
];
const DISK_FATE = [
  ["disk_full", "fill the disk"],
  ["disk_free", "free the disk"],
];
const BOARD_FATE = [
  ["board_offline", "off the bus"],
  ["board_online", "back on"],
  ["board_flap", "flapping"],
];
const SIDE_VERBS = new Set(["person", "fate"]); // these act on the chosen side's door
const GPIO_ONLY = new Set(["block", "unblock", "break_motor", "mend_motor"]); // motorised doors

let state = null;
let selected = null;
let built = false;

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "onclick") node.onclick = v;
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : String(c));
  return node;
}

// One time zone on the whole page: the browser's, named in the header (#tz).
function fmtTime(unix) {
  const d = new Date(unix * 1000);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, "0")).join(":");
}

function zoneName() {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
  const off = -new Date().getTimezoneOffset();
  const hhmm = `${String(Math.floor(Math.abs(off) / 60)).padStart(2, "0")}:${String(Math.abs(off) % 60).padStart(2, "0")}`;
  return `times in ${zone} (UTC${off < 0 ? "-" : "+"}${hhmm})`;
}

function fmtSpan(seconds) {
  const s = Math.max(0, Math.round(seconds));
  return s < 60 ? `${s} s` : s < 3600 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${Math.floor(s / 3600)} h ${Math.floor(s % 3600 / 60)} min`;
}

// Alarm names shortened for a tile (the full name is its title and in the panel).
const SHORT = {
  door_forced_open: "forced open", door_left_open: "left open", lock_jammed: "lock jammed",
  door_obstructed: "obstructed", rear_opened_while_front_open: "rear while front open",
  temperature_out_of_band: "out of band", temperature_sensor_failed: "sensor failed",
  thermal_not_converging: "not converging", food_time_exceeded: "food time up",
  temperature_over_limit: "over limit", thermal_stalled: "control stalled",
  thermal_fallback_cycle: "fallback cycle",
};
const shortAlarm = (type) => SHORT[type] || type.replaceAll("_", " ");

// -- talking to the server ----------------------------------------------------

setInterval(drawCloud, 1000); // the durations move on between states
// The charts take the records in even while nothing else changes (a state is sent on change).
setInterval(() => state && typeof Charts === "object" && Charts.sync(state, selected), 5000);

function connect() {
  const ws = new WebSocket(`ws://${location.host}/_sim/live`);
  ws.onopen = () => {
    setBadge("#live", "live", "ok");
    document.body.classList.remove("stale");
    $("#result").textContent = ""; // an answer from before the restart says nothing now
    built = false; // a restarted simulator may play another locker: buttons anew
  };
  ws.onmessage = (msg) => render(JSON.parse(msg.data));
  ws.onclose = () => {
    setBadge("#live", "reconnecting…", "bad");
    document.body.classList.add("stale"); // what shows is the past until it is back
    setTimeout(connect, 1000); // the simulator restarted, or is restarting
  };
}

async function post(path, body) {
  $("#result").textContent = "…";
  try {
    const resp = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const answer = await resp.json();
    const ok = resp.ok && answer.ok !== false;
    const what = body.do ? `${body.who} ${body.do.replaceAll("_", " ")}` : path.split("/").pop();
    const when = fmtTime(Date.now() / 1000);
    $("#result").className = ok ? "ok" : "bad";
    $("#result").textContent = `${when} ${what}: ${ok ? "" : "refused: "}${summary(answer, body)}`;
  } catch (err) {
    $("#result").className = "bad";
    $("#result").textContent = `the simulator did not answer: ${err}`;
  }
}

function summary(answer, body = {}) {
  if (answer.error) return typeof answer.error === "string" ? answer.error : answer.error.message;
  if (answer.order) {  // its code, ready in the scan box (simulator/web/pickup.py)
    $("#scan-code").value = answer.order.open_code;
    return `order ${answer.order.id}, code ${answer.order.open_code}`;
  }
  const cab = answer.cabinet;
  if (cab && body.do === "set_thermal_mode") return `cabinet ${cab.key} set to ${cab.thermal_mode}`;
  if (cab && body.do === "close" && body.delay) return `cabinet ${cab.key} closes in ${body.delay} s`;
  if (cab) return `cabinet ${cab.key} is ${cab.state}`;
  if (answer.opened === false) return "the latch holds the door shut";
  return answer.steps ? `playing ${answer.name} (${answer.steps} steps)` : "done";
}

// A step for the server; a cabinet action names the selected cabinet (and, for a
// person or fate, the chosen side). "#id" values are read from that input.
function act(who, verb, extra, onCabinet) {
  const step = { who, do: verb };
  for (const [k, v] of Object.entries(extra)) {
    step[k] = typeof v === "string" && v.startsWith("#") ? $(v).value : v;
  }
  if (onCabinet) step.key = selected;
  if (onCabinet && SIDE_VERBS.has(who)) step.side = $("#side").value;
  post("/_sim/act", step);
}

// -- drawing ------------------------------------------------------------------

function render(s) {
  state = s;
  if (!s.cabinets.some((c) => c.key === selected)) selected = null;
  if (selected === null && s.cabinets.length) {
    selected = s.cabinets.some((c) => c.key === 5) ? 5 : s.cabinets[0].key;
  }
  if (!built) build(s);
  $("#locker").textContent = s.locker;
  $("#tz").textContent = zoneName();
  $("#selected").textContent = selected;
  const agent = s.agent.status;
  const reasons = (s.agent.reasons || []).join("; ");
  setBadge("#agent", `agent ${agent}`, agent === "ok" ? "ok" : "bad", reasons);
  $("#reasons").textContent = reasons;
  drawCloud();
  const pending = s.agent.outbox ? s.agent.outbox.pending : "?";
  const waiting = (s.agent.reasons || []).some((r) => r.includes("waiting for the outbox"));
  const label = waiting ? `outbox ${pending} pending, more waiting for the disk` : `outbox ${pending} pending`;
  setBadge("#outbox", label, pending === 0 && !waiting ? "ok" : "warn");
  drawAlarmSummary(s.cabinets);
  drawWall(s.cabinets);
  drawSelected(s);
  drawFeeds(s.cloud);
  drawScenario(s.scenario);
  if (typeof Charts === "object") Charts.sync(s, selected);
}

// Every active alarm first, above the wall (a phone shows it before anything else);
// a tap selects its cabinet, whose chart then comes first under the wall.
function drawAlarmSummary(cabinets) {
  const items = cabinets.flatMap((cab) => (cab.alarms || []).map((a) => el("li", {},
    el("button", { type: "button", "data-key": cab.key, "data-type": a.type, title: a.type,
      onclick: () => { selected = cab.key; render(state); } },
    `cabinet ${cab.key}: ${shortAlarm(a.type)}${a.side === "rear" ? " (rear)" : ""}`))));
  $("#alarm-summary").replaceChildren(...(items.length ? items : [el("li", { class: "none", title: "the agent's own state is in the header" }, "no cabinet alarms")]));
}

// The cloud as the page sees it and as the agent sees it: down (for how long), back but
// the agent not yet reconnected (for how long: its backoff), answering errors, slow, up.
function drawCloud() {
  if (!state) return;
  const c = state.cloud;
  const since = c.since ? ` for ${fmtSpan(Date.now() / 1000 - c.since)}` : "";
  const reasons = state.agent.reasons || [];
  const agentWaits = c.agents === 0 || reasons.some((r) => /command channel|cloud|uplink|feedback/i.test(r));
  let text = "cloud up", kind = "ok";
  if (!c.up) [text, kind] = [`cloud down${since}`, "bad"];
  else if (c.failing_status) [text, kind] = [`cloud answers ${c.failing_status}`, "bad"];
  else if (agentWaits && state.agent.status !== "unreachable") [text, kind] = [`cloud back, agent reconnecting${since}`, "warn"];
  else if (c.delay_s) [text, kind] = ["cloud slow", "warn"];
  setBadge("#cloud", text, kind, `${c.agents} agent(s) on the command channel`);
  $("#cloud").dataset.state = !c.up ? "down" : kind === "warn" && agentWaits ? "reconnecting" : kind === "ok" ? "up" : "trouble";
}

function setBadge(sel, text, kind, title) {
  const node = $(sel);
  node.textContent = text;
  node.className = `badge ${kind}`;
  node.title = title || "";
}

const HEIGHT = { mini: 1, small: 1, medium: 2, large: 3, xlarge: 4 };

function drawWall(cabinets) {
  const wall = el("div", { id: "wall" });
  let column = null;
  let used = 99;
  for (const cab of cabinets) {
    const h = HEIGHT[cab.size] || 1;
    if (used + h > 6) {
      column = wall.appendChild(el("div", { class: "column" }));
      used = 0;
    }
    used += h;
    column.append(drawCabinet(cab, h));
  }
  $("#wall").replaceWith(wall);
}

function drawCabinet(cab, h) {
  const hw = cab.hardware || {};
  const front = cab.state || "unknown";
  const rear = cab.rear_load_status;
  const alarms = cab.alarms || [];
  const tile = el("div", {
    class: `cab h${h}${cab.key === selected ? " selected" : ""}${cab.enabled === false ? " disabled" : ""}${alarms.length ? " alarm" : ""}`,
    "data-key": cab.key,
    "data-front": front,
    "data-rear": rear,
    "data-enabled": cab.enabled,
    "data-occupied": cab.occupied,
    "data-recorded": String(cab.recorded !== false),
    title: `cabinet ${cab.key}\nfront: ${front}${hw.front ? ` (${hw.front.wired})` : ""}${rear ? `\nrear: ${rear}` : ""}${alarms.map((a) => `\nalarm: ${a.type}`).join("")}`,
    onclick: () => { selected = cab.key; render(state); },
  });
  tile.append(el("div", { class: `door ${front}` }));
  const top = el("div", { class: "top" }, el("b", {}, cab.key), " ", el("span", { class: "size" }, cab.size || ""));
  if (hw.led) {
    const [r, g, b] = hw.led.map((v) => Math.round(v * 255));
    top.append(el("span", { class: "led", style: `background: rgb(${r},${g},${b})`, title: "LED" }));
  }
  tile.append(top);
  const info = el("div", { class: "info" }, el("span", { class: "state" }, front));
  // The rear door in words when it moves or stands open (shut: its bar; unknown: the mark).
  if (rear && !["closed", "unknown"].includes(rear)) info.append(" ", el("span", { class: "rear-state" }, `rear ${rear}`));
  info.append(el("br"));
  const silent = [front === "unknown" && "front", rear === "unknown" && "rear"].filter(Boolean);
  if (silent.length) {
    info.append(el("span", { class: "tag silent", "data-silent": silent.join(","),
      title: `the board of its ${silent.join(" and ")} door does not answer: the state is not known` },
    `? ${silent.length === 2 || !rear ? "" : `${silent[0]} `}no answer`));
  }
  if (cab.enabled === false) info.append(el("span", { class: "tag" }, "disabled"));
  if (cab.occupied) info.append(el("span", { class: "tag item" }, "item"));
  if (cab.occupied === null && front !== "unknown") info.append(el("span", { class: "tag doubt", title: "its board does not answer" }, "item ?"));
  if (cab.recorded === false) {
    info.append(el("span", { class: "tag doubt", title: "shown as sensed; the agent has not recorded it yet (the disk refuses)" }, "✎ not recorded"));
  }
  if (hw.front && hw.front.jammed) info.append(el("span", { class: "tag hw" }, "jammed"));
  if (cab.thermal) info.append(drawThermal(cab));
  tile.append(info);
  if (alarms.length) {
    tile.append(el("ul", { class: "alarms" }, ...alarms.map((a) =>
      el("li", { title: a.side ? `${a.type} (${a.side})` : a.type, "data-type": a.type }, shortAlarm(a.type) + (a.side === "rear" ? " (rear)" : "")))));
  }
  if (rear) tile.append(el("div", { class: `rear door ${rear}`, title: `rear door: ${rear}` }));
  return tile;
}

// The panel for the selected cabinet: what it has, its alarms in full, and only the
// actions and choices its hardware allows (selectors follow the cabinet).
let appliedFor = null;

function drawSelected(s) {
  const cab = s.cabinets.find((c) => c.key === selected);
  if (!cab) return;
  const hw = cab.hardware || {};
  const modes = hw.modes || [];
  const has = [cab.size || "no size", hw.rear ? "front and rear doors" : "front door only",
    modes.length ? `thermal: ${modes.join(", ")}` : "no thermal unit"];
  $("#selected-about").textContent = has.join(" · ");
  $("#selected-alarms").replaceChildren(...(cab.alarms || []).map((a) =>
    el("li", {}, a.side ? `${a.type} (${a.side})` : a.type)));
  const key = `${cab.key}|${modes.join()}|${hw.rear}`;
  if (appliedFor === key) return; // keep what the person is choosing
  appliedFor = key;
  fill("#mode", modes, cab.thermal ? cab.thermal.mode : null);
  fill("#size", SIZES, cab.size);
  fill("#side", hw.rear ? ["front", "rear"] : ["front"], "front", (v) => `${v} door`);
  for (const button of document.querySelectorAll("#actions button[data-who]")) {
    const why = whyNot(button.dataset.who, button.dataset.do, button.dataset.rear === "true", cab);
    button.hidden = Boolean(why);
    button.title = why || "";
  }
  for (const id of ["#mode", "#fault"]) {
    const node = $(id);
    if (node) node.hidden = !cab.thermal;
  }
}

function fill(sel, options, chosen, label = (v) => v) {
  const node = $(sel);
  if (!node) return;
  node.replaceChildren(...options.map((o) => el("option", { value: o, selected: o === chosen }, label(o))));
}

// Why the selected cabinet's hardware cannot take an action (null: it can).
function whyNot(who, verb, rear, cab) {
  const hw = cab.hardware || {};
  const modes = hw.modes || [];
  const gpioDoor = hw.front && hw.front.wired === "gpio";
  if (rear && !hw.rear) return "no rear door";
  if (verb === "set_thermal_mode" || verb.endsWith("_sensor") || verb.endsWith("_relay")) {
    return modes.length ? null : "no thermal unit";
  }
  if (verb.endsWith("_compressor")) return modes.includes("chill") ? null : "no cooling";
  if (verb.endsWith("_heater")) return modes.includes("heat") ? null : "no heater";
  if (GPIO_ONLY.has(verb) && !gpioDoor) return "not a motorised door";
  return null;
}

// DESIGN.md "Thermal": temperature_c (null: no reading) and thermal {mode, band_c,
// heating, cooling, sensor}; a cabinet object without them draws nothing thermal.
// The tag is coloured by what the cabinet holds (hot red, chilled light blue, frozen
// blue, ambient grey); a sensor not trusted turns it the alarm colour.
function drawThermal(cab) {
  const th = cab.thermal;
  const t = cab.temperature_c === null || cab.temperature_c === undefined ? "?" : cab.temperature_c.toFixed(1);
  const doing = th.heating ? " heating" : th.cooling ? " cooling" : "";
  const band = th.band_c ? `band ${th.band_c[0]}..${th.band_c[1]} °C` : "no band held";
  const text = `${th.mode} ${t}\u00a0°C${doing}${th.sensor && th.sensor !== "ok" ? ` sensor ${th.sensor}` : ""}`;
  return el("span", {
    class: `tag thermal ${th.mode}${th.sensor !== "ok" ? " fault" : ""}`,
    title: band, "data-temperature": t, "data-sensor": th.sensor,
    "data-heating": th.heating, "data-cooling": th.cooling,
  }, text);
}

function drawFeeds(cloud) {
  $("#received").textContent = `${cloud.received} accepted, ${cloud.rejected} rejected`;
  const items = cloud.feedback.map((rec) => {
    const body = rec.body;
    const event = body.event ? body.event.type : "update";
    const doors = body.cabinets.slice(0, 4).map((c) =>
      `${c.key}: ${[c.front_status && `front ${c.front_status}`, c.rear_status && `rear ${c.rear_status}`].filter(Boolean).join(", ")}`);
    const more = body.cabinets.length > 4 ? ` … (${body.cabinets.length} cabinets)` : "";
    return el("li", {}, el("time", {}, fmtTime(rec.received_at)), " ", el("b", {}, event), " ",
      el("span", { class: "doors" }, doors.join(" · ") + more),
      el("details", {}, el("summary", {}, "body"), el("pre", {}, JSON.stringify(body, null, 2))));
  });
  $("#feedback").replaceChildren(...items);
  const events = cloud.feedback.filter((r) => r.body.event && r.body.event.type !== "active").map((r) =>
    el("li", {}, el("time", {}, fmtTime(r.received_at)), " ", el("b", {}, r.body.event.type), " ",
      r.body.cabinets.length > 4 ? "" : r.body.cabinets.map((c) => `cabinet ${c.key}`).join(", ")));
  const answers = cloud.answers.map((a) =>
    el("li", { class: a.ok ? "" : "bad" }, "answer ", el("code", {}, JSON.stringify(a).slice(0, 200))));
  $("#events").replaceChildren(...events, ...answers);
}

function drawScenario(sc) {
  const lines = sc.log.map((l) =>
    el("li", { class: l.ok ? "ok" : "bad" }, `${l.t ?? "-"} s  ${l.ok ? "✓" : "✗"} ${l.step}${l.detail ? ` (${l.detail})` : ""}`));
  if (sc.name && !sc.running) lines.push(el("li", { class: sc.ok ? "ok" : "bad" }, `${sc.name}: ${sc.ok ? "passed" : "failed"}`));
  $("#scenario-log").replaceChildren(...lines);
}

// -- the action buttons, once -------------------------------------------------

function build(s) {
  built = true;
  appliedFor = null; // new buttons: hidden anew for the selected cabinet
  const groups = {
    cloud: $("#as-cloud .buttons"), person: $("#as-person .buttons"), fate: $("#as-fate .buttons"),
  };
  for (const sel of ["#as-cloud", "#as-person", "#as-fate", "#locker-fate", "#scenarios"]) {
    $(`${sel} .buttons`).replaceChildren();
  }
  for (const [who, verb, label, extra] of CABINET_ACTIONS) {
    if (!s.verbs[who].includes(verb) || (GPIO_ONLY.has(verb) && !s.gpio)) continue;
    if (THERMAL_ONLY.has(verb) && !s.thermal) continue;
    if (verb === "resize") groups[who].append(select("size", SIZES));
    if (verb === "fail_sensor") groups[who].append(select("fault", SENSOR_FAULTS));
    if (verb === "set_thermal_mode") groups[who].append(select("mode", MODES));
    groups[who].append(el("button", { "data-who": who, "data-do": verb, "data-rear": extra.rear === true,
      onclick: () => act(who, verb, extra, true) }, label));
  }
  const fate = $("#locker-fate .buttons");
  for (const [verb, label, extra] of CLOUD_FATE) {
    fate.append(el("button", { "data-do": verb, onclick: () => act("fate", verb, extra) }, label));
  }
  if (s.thermal) {
    for (const [label, temperature_c] of ROOM_FATE) {
      fate.append(el("button", { "data-do": "set_room", onclick: () => act("fate", "set_room", { temperature_c }) }, label));
    }
  }
  for (const [verb, label] of DISK_FATE) {
    fate.append(el("button", { "data-do": verb, disabled: !s.disk.small, title: s.disk.why_not,
      onclick: () => act("fate", verb, {}) }, label));
  }
  if (!s.disk.small) fate.append(el("span", { class: "why" }, `disk: ${s.disk.why_not}`));
  for (const bus of s.buses) {
    const line = el("div", { class: "bus" }, `bus ${bus.name}: `);
    for (const board of bus.boards) {
      line.append(el("span", { class: "board" }, `board ${board.board} `));
      for (const [verb, label] of BOARD_FATE) {
        line.append(el("button", { "data-do": verb, "data-board": board.board,
          onclick: () => act("fate", verb, { bus: bus.name, board: board.board }) }, label));
      }
    }
    line.append(el("button", { onclick: () => act("fate", "corrupt_line", { bus: bus.name, p: 0.3 }) }, "corrupt the line"));
    line.append(el("button", { onclick: () => act("fate", "clean_line", { bus: bus.name }) }, "clean line"));
    fate.append(line);
  }
  fetch("/_sim/scenarios").then((r) => r.json()).then((list) => {
    const box = $("#scenarios .buttons");
    for (const sc of list) {
      const elsewhere = sc.locker !== s.kind ? `plays the ${sc.locker} locker: simulate --locker ${sc.locker}`
        : sc.own && `plays its own thermal physics: simulate --scenario ${sc.name}`;
      box.append(el("button", { "data-scenario": sc.name, title: elsewhere || "",
        disabled: Boolean(elsewhere),
        onclick: () => post(`/_sim/scenarios/${sc.name}`, {}) }, sc.title));
      if (elsewhere) box.append(el("span", { class: "why", "data-why": sc.name }, `↳ ${elsewhere}`));
    }
  });
}

function select(id, options) {
  return el("select", { id }, ...options.map((o) => el("option", { value: o }, o)));
}

// A customer at the locker's virtual scanner (simulator/web/pickup.py).
$("#scan-form").addEventListener("submit", (e) => {
  e.preventDefault();
  post("/_sim/act", { who: "person", do: "scan", code: $("#scan-code").value });
});

connect();

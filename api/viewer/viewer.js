// The world viewer. Plain JavaScript, no library, nothing loaded from elsewhere.
// Credentials: the API key is exchanged once at POST /ai/auth/token; the token is kept in this
// tab's sessionStorage and sent as an Authorization header, never in a URL. The live stream is
// read with fetch() because EventSource cannot send that header. Everything the world says is put
// on the page as text (textContent), never as HTML.
"use strict";

const TOKEN = "aiworld.viewer.token";
const PANEL_REFRESH_MS = 10000;
const BUBBLE_MS = 9000;
const SPEECH_LOG_KEPT = 40;
const SERIES_KEPT = 90;
const RECONNECT_MS = [500, 1000, 2000, 5000, 10000];
const SVG = "http://www.w3.org/2000/svg";
const MOODS = ["calm", "happy", "cheerful", "content", "curious", "excited", "worried", "fret", "angry",
  "sad", "afraid", "grateful", "satisfied", "alert", "proud"];
const PALETTE = ["#6cb4ff", "#6fdc8c", "#ffd34d", "#ff9f5a", "#ff7b7b", "#c792ea", "#5fd7d7", "#f78fb3",
  "#b5e86c", "#a0a8ff", "#ffb3b3", "#d4c08a", "#8fd1a8", "#e0a0ff", "#9ec3ff"];

const state = {
  npcs: new Map(),          // npc_id -> {npc, circle, label, mapName}
  maps: new Map(),          // map name -> {svg, stage, scale, weather}
  colourBy: "mood",
  after: null,
  abort: null,
  series: [],               // LLM totals over time: {at, calls, tokens, spend, hits, rung}
  panelTimer: null,
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.setAttribute("class", value);
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function colourOf(value) {
  let hash = 0;
  for (const ch of String(value)) hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
  const known = MOODS.indexOf(value);
  return PALETTE[(known >= 0 ? known : hash) % PALETTE.length];
}

// --- credentials ---------------------------------------------------------------------------------

function token() { return sessionStorage.getItem(TOKEN); }

function showLogin(message) {
  sessionStorage.removeItem(TOKEN);
  if (state.abort) state.abort.abort();
  clearInterval(state.panelTimer);
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("api-key").focus();
}

class Unauthorized extends Error {}

async function api(path) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${token()}` }, cache: "no-store" });
  if (response.status === 401) throw new Unauthorized((await response.json().catch(() => ({}))).detail || "401");
  if (!response.ok) return null;
  return response.json();
}

async function login(event) {
  event.preventDefault();
  const key = $("api-key").value;
  $("login-error").textContent = "";
  const response = await fetch("/ai/auth/token", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ api_key: key }),
  });
  $("api-key").value = "";
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    $("login-error").textContent = response.status === 401 ? "That key is not accepted." : (body.detail || `error ${response.status}`);
    return;
  }
  sessionStorage.setItem(TOKEN, (await response.json()).access_token);
  start();
}

function guarded(run) {
  return (...args) => run(...args).catch((error) => {
    if (error instanceof Unauthorized) showLogin(`Signed out: ${error.message}`);
    else console.error(error);
  });
}

// --- maps ----------------------------------------------------------------------------------------

function drawWorld(world) {
  const maps = $("maps");
  maps.replaceChildren();
  state.maps.clear();
  state.npcs.clear();
  for (const map of world.maps) {
    const width = Math.max(map.x1 - map.x0, 20), height = Math.max(map.y1 - map.y0, 20);
    const scale = 560 / Math.max(width, height);
    const svg = el("svg:svg", { viewBox: `0 0 ${width * scale} ${height * scale}`, "data-map": map.name });
    const stage = el("div", { class: "stage" }, svg);
    const weather = el("span", { class: "weather", text: "" });
    const span = `cells ${map.x0}–${map.x1} × ${map.y0}–${map.y1}`;
    maps.append(el("article", { class: "map", "data-map": map.name },
      el("h2", {}, map.name, el("span", { text: `${map.npcs.length} NPCs · ${span}` }), weather), stage));
    const drawn = { svg, stage, scale, x0: map.x0, y1: map.y0 + height, weather };
    state.maps.set(map.name, drawn);
    for (const npc of map.npcs) drawNpc(drawn, npc);
  }
  recolour();
}

// rAthena's y grows northward; the page's grows downward.
function place(drawn, x, y) { return [(x - drawn.x0) * drawn.scale, (drawn.y1 - y) * drawn.scale]; }

function drawNpc(drawn, npc) {
  const [cx, cy] = place(drawn, npc.x, npc.y);
  const circle = el("svg:circle", { class: "npc", r: 6, cx, cy, "data-npc": npc.npc_id, onclick: () => openCard(npc.npc_id) });
  circle.append(el("svg:title", { text: `${npc.name} — ${npc.activity} (${npc.mood})` }));
  const label = el("svg:text", { class: "npc-label", x: cx + 8, y: cy + 3, text: npc.name });
  const players = el("svg:g", { class: "players" });
  drawn.svg.append(circle, label, players);
  const entry = { npc, circle, label, players, drawn };
  state.npcs.set(npc.npc_id, entry);
  drawPlayers(entry);
}

function drawPlayers(entry) {
  entry.players.replaceChildren();
  (entry.npc.players_near || []).forEach((player, index) => {
    const [px, py] = player.x != null && player.y != null
      ? place(entry.drawn, player.x, player.y)
      : [Number(entry.circle.getAttribute("cx")) - 10 + index * 7, Number(entry.circle.getAttribute("cy")) + 12];
    const mark = el("svg:rect", { class: "player", x: px - 3, y: py - 3, width: 6, height: 6, "data-player": player.char_id });
    mark.append(el("svg:title", { text: `${player.name} (player)` }));
    entry.players.append(mark);
  });
}

function recolour() {
  const seen = new Map();
  for (const { npc, circle } of state.npcs.values()) {
    const value = state.colourBy === "mood" ? npc.mood : npc.faction;
    circle.setAttribute("fill", colourOf(value));
    seen.set(value, colourOf(value));
  }
  $("legend").replaceChildren(...[...seen].sort().map(([value, colour]) => {
    const dot = el("i"); dot.style.background = colour;
    return el("span", {}, dot, value);
  }));
}

function moveNpc(entry, x, y) {
  const [cx, cy] = place(entry.drawn, x, y);
  entry.npc.x = x; entry.npc.y = y;
  entry.circle.setAttribute("cx", cx); entry.circle.setAttribute("cy", cy);
  entry.label.setAttribute("x", cx + 8); entry.label.setAttribute("y", cy + 3);
}

// --- the live feed -------------------------------------------------------------------------------

function applyEntry(entry) {
  const drawn = state.npcs.get(entry.npc_id);
  if (entry.type === "npc" && drawn) {
    Object.assign(drawn.npc, { mood: entry.mood || drawn.npc.mood, activity: entry.activity || drawn.npc.activity,
      reason: entry.reason || "", players_near: entry.players_near || [] });
    drawn.circle.querySelector("title").textContent = `${drawn.npc.name} — ${drawn.npc.activity} (${drawn.npc.mood})`;
    drawPlayers(drawn);
    recolour();
  }
  if (entry.type !== "action") return;
  if ((entry.kind === "walk_to" || entry.kind === "move") && drawn) moveNpc(drawn, entry.x, entry.y);
  if (entry.kind === "say" || entry.kind === "reply" || entry.kind === "announce") speak(entry, drawn);
}

function speak(entry, drawn) {
  const text = entry.text || "";
  const log = $("speech-log");
  const to = entry.kind === "reply" ? ` → player ${entry.char_id}` : "";
  log.prepend(el("li", { "data-action-id": entry.id, "data-kind": entry.kind },
    el("b", { text: entry.npc_name || entry.npc_id }), ` (${entry.map}${to}): `, text));
  while (log.children.length > SPEECH_LOG_KEPT) log.lastChild.remove();
  if (!drawn) return;
  const bubble = el("div", { class: `bubble ${entry.kind}`, "data-action-id": entry.id, "data-npc": entry.npc_id, text });
  const box = drawn.drawn.svg.viewBox.baseVal;
  const cx = Number(drawn.circle.getAttribute("cx")), cy = Number(drawn.circle.getAttribute("cy"));
  bubble.style.left = `${(100 * cx) / box.width}%`;
  bubble.style.top = `${(100 * (cy - 8)) / box.height}%`;
  drawn.drawn.stage.append(bubble);
  setTimeout(() => bubble.remove(), BUBBLE_MS);
}

function setLive(on, text) {
  $("live").textContent = text;
  $("live").classList.toggle("on", on);
}

// Server-sent events over fetch: reconnects by itself, from the last entry it saw.
async function follow() {
  let failures = 0;
  while (token()) {
    state.abort = new AbortController();
    try {
      const response = await fetch(`/ai/viewer/stream?after=${encodeURIComponent(state.after || "$")}`, {
        headers: { Authorization: `Bearer ${token()}`, Accept: "text/event-stream" }, signal: state.abort.signal,
      });
      if (response.status === 401) { showLogin("Your session ended; enter the key again."); return; }
      if (!response.ok || !response.body) throw new Error(`stream answered ${response.status}`);
      setLive(true, "live");
      failures = 0;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const message = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const data = message.split("\n").filter((line) => line.startsWith("data: ")).map((line) => line.slice(6)).join("\n");
          if (!data) continue;
          const entry = JSON.parse(data);
          state.after = entry.stream_id;
          applyEntry(entry);
        }
      }
    } catch (error) {
      if (state.abort.signal.aborted) return;
      console.warn("stream interrupted", error);
    }
    const wait = RECONNECT_MS[Math.min(failures++, RECONNECT_MS.length - 1)];
    setLive(false, `reconnecting in ${wait / 1000}s…`);
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

// --- world and LLM panels ------------------------------------------------------------------------

function noData(text = "no data yet") { return el("p", { class: "nodata", text }); }

function table(rows, head) {
  const body = rows.map((row) => el("tr", {}, ...row.map((cell) => el("td", { text: cell }))));
  return el("table", {}, ...(head ? [el("tr", {}, ...head.map((cell) => el("th", { text: cell })))] : []), ...body);
}

function chart(seriesByName, label) {
  const names = Object.keys(seriesByName).filter((name) => seriesByName[name].length > 0);
  if (!names.length) return noData();
  const all = names.flatMap((name) => seriesByName[name]);
  const [t0, t1] = [Math.min(...all.map((p) => p.at)), Math.max(...all.map((p) => p.at))];
  const [v0, v1] = [Math.min(...all.map((p) => p.value)), Math.max(...all.map((p) => p.value))];
  const svg = el("svg:svg", { class: "chart", viewBox: "0 0 300 110", preserveAspectRatio: "none", "data-chart": label });
  names.forEach((name, index) => {
    const points = seriesByName[name].map((p) =>
      `${(300 * (p.at - t0)) / (t1 - t0 || 1)},${105 - (100 * (p.value - v0)) / (v1 - v0 || 1)}`).join(" ");
    svg.append(el("svg:polyline", { points, stroke: PALETTE[index % PALETTE.length] }));
  });
  const legend = el("div", { class: "legend" }, ...names.map((name, index) => {
    const dot = el("i"); dot.style.background = PALETTE[index % PALETTE.length];
    return el("span", {}, dot, name);
  }));
  return el("div", {}, svg, legend, el("small", { class: "nodata", text: `${label}: ${v0.toFixed(1)} – ${v1.toFixed(1)}` }));
}

function drawEconomy(economy) {
  const box = $("economy");
  const prices = Object.entries(economy.prices);
  const series = {};
  for (const point of economy.history) (series[`item ${point.item_id}`] ||= []).push({ at: point.at, value: point.price });
  const parts = [];
  parts.push(economy.history.length ? chart(series, "price over time") : noData("no price history yet"));
  parts.push(prices.length ? table(prices.map(([item, price]) => [`item ${item}`, `${price} z`]), ["item", "price now"]) : noData("no prices yet"));
  const other = Object.entries(economy.other);
  if (other.length) parts.push(table(other));
  box.replaceChildren(...parts);
}

function drawPolitics(politics) {
  const box = $("politics");
  if (!politics.relations.length) {
    const other = Object.entries(politics.other);
    box.replaceChildren(noData("no faction relations yet"), ...(other.length ? [table(other)] : []));
    return;
  }
  const factions = [...new Set(politics.relations.flatMap((r) => [r.a, r.b]))].sort();
  const score = new Map(politics.relations.map((r) => [`${r.a}|${r.b}`, r.score]));
  const rows = factions.map((a) => [a, ...factions.map((b) => score.get(`${a}|${b}`) ?? score.get(`${b}|${a}`) ?? (a === b ? "—" : ""))]);
  const matrix = table(rows, ["", ...factions]);
  matrix.classList.add("matrix");
  box.replaceChildren(matrix);
}

function drawEnvironment(environment) {
  const rows = [];
  if (environment.season) rows.push(["season", environment.season]);
  if (environment.day_phase) rows.push(["time of day", environment.day_phase]);
  for (const [name, drawn] of state.maps) {
    const weather = environment.weather[name] || environment.default_weather;
    drawn.weather.textContent = weather ? ` · ${weather}` : "";
    if (weather) rows.push([`weather on ${name}`, weather]);
  }
  $("environment").replaceChildren(rows.length ? table(rows) : noData());
}

function drawQuests(quests) {
  $("quests").replaceChildren(quests.length
    ? table(quests.map((q) => [q.quest_id, q.title || q.text || q.description || "", q.giver || q.npc_id || ""]), ["quest", "what", "from"])
    : noData("no open quests yet"));
}

function drawLlm(llm, budget) {
  const t = llm.totals;
  // Each tier's rung of the budget governor's ladder (GET /ai/llm/budget), as one line per sample.
  const ladder = budget && budget.ladder ? Object.entries(budget.ladder) : null;
  const rung = ladder ? (ladder.filter(([, s]) => s.level > 0).map(([tier, s]) => `${tier} ${s.rung}`).join(", ") || "normal") : null;
  state.series.push({ at: Date.now(), calls: t.calls, tokens: t.tokens_in + t.tokens_out, spend: t.spend, hits: t.cache_hits, rung });
  if (state.series.length > SERIES_KEPT) state.series.shift();
  $("llm-totals").replaceChildren(t.calls || t.cache_hits
    ? table([["calls", t.calls], ["tokens in / out", `${t.tokens_in} / ${t.tokens_out}`], ["spend", t.spend.toFixed(4)],
      ["cache hits", t.cache_hits]].map(([a, b]) => [a, String(b)]))
    : noData("no LLM calls yet (the offline policy decides)"));
  const over = (field) => state.series.map((s) => ({ at: s.at / 1000, value: Number(s[field]) || 0 }));
  $("llm-chart").replaceChildren(state.series.length > 1
    ? chart({ calls: over("calls"), "cache hits": over("hits"), "tokens/100": over("tokens").map((p) => ({ ...p, value: p.value / 100 })) }, "since this page opened")
    : noData("the chart fills while this page is open"));
  const budgetBox = $("llm-budget");
  if (!budget) { budgetBox.replaceChildren(noData("no budget governor yet")); return; }
  const rungs = state.series.filter((s) => s.rung !== null).map((s) => `${new Date(s.at).toLocaleTimeString()} ${s.rung}`);
  budgetBox.replaceChildren(
    table(Object.entries(budget).filter(([, v]) => typeof v !== "object").map(([k, v]) => [k, String(v)])),
    table(ladder.map(([tier, s]) => [tier, s.rung, `${Math.round(s.pressure * 100)}%`, s.since || "", s.why || ""]),
      ["tier", "rung", "spend", "since", "why"]),
    el("small", { class: "nodata", "data-rungs": "", text: rungs.length ? `rung over time: ${rungs.slice(-6).join(" → ")}` : "" }),
  );
}

async function refreshPanels() {
  const panels = await api("/ai/viewer/panels");
  if (!panels) return;
  drawEconomy(panels.economy);
  drawPolitics(panels.politics);
  drawEnvironment(panels.environment);
  drawQuests(panels.quests);
  drawLlm(panels.llm, await api("/ai/llm/budget"));
}

// --- the NPC card --------------------------------------------------------------------------------

async function openCard(npcId) {
  const card = await api(`/ai/viewer/npc/${encodeURIComponent(npcId)}`);
  if (!card) return;
  // The tiered memory service's endpoints, where deployed; the card's own reading otherwise.
  const tiered = await api(`/ai/npc/${encodeURIComponent(npcId)}/memories`);
  const related = await api(`/ai/npc/${encodeURIComponent(npcId)}/relationships`);
  const body = $("card-body");
  const parts = [
    el("h2", { text: card.name }),
    el("p", {}, el("b", { text: card.activity || "idling" }), ` · mood ${card.mood || "calm"} · ${card.map} · faction ${card.faction}`),
    el("p", { class: "why", text: card.reason ? `why: ${card.reason}` : "why: (no decision saved yet)" }),
    el("p", {}, el("a", { href: card.workflow_url, target: "_blank", rel: "noopener", text: `${card.workflow_id} in the Temporal UI` })),
  ];
  if (card.players_near.length) parts.push(el("p", { text: `players near: ${card.players_near.map((p) => p.name).join(", ")}` }));
  parts.push(el("h3", { text: "Last decisions" }));
  parts.push(card.decisions.length
    ? table(card.decisions.slice(0, 8).map((d) => [
      `#${d.sequence} ${new Date(d.decided_at).toLocaleTimeString()}`,
      d.trigger,
      (d.decision.actions.map((a) => a.kind).join(", ") || "nothing") + (d.decision.reason ? ` — ${d.decision.reason}` : ""),
      `${d.usage.provider}${d.usage.cached ? " (cached)" : ""}`,
      d.event_ids.join(", ") || "—",
    ]), ["when", "trigger", "did / why", "decided by", "inputs"])
    : noData(card.decisions_missing ? `decisions unavailable: ${card.decisions_missing}` : "no decisions yet"));
  parts.push(el("h3", { text: "Top memories" }));
  // Scored memories (GET /ai/npc/{id}/memories) when the store answers, else the card's own recall.
  const memories = tiered && Array.isArray(tiered.memories)
    ? tiered.memories.map((scored) => ({ ...scored.memory, score: scored.score }))
    : card.memories;
  parts.push(memories.length
    ? el("ol", { class: "memories" }, ...memories.map((m) => el("li", { "data-memory": m.memory_id || "" },
      `${m.text}${m.words ? ` “${m.words}”` : ""} `, el("small", { class: "nodata", text: `${m.kind || ""} · importance ${m.importance} · ${m.emotion || ""}${m.score !== undefined ? ` · score ${m.score.toFixed(2)}` : ""}` }))))
    : noData("no memories yet"));
  parts.push(el("h3", { text: "Relationships" }));
  const relationships = related && Array.isArray(related.relationships) ? related.relationships : card.relationships;
  parts.push(relationships.length
    ? table(relationships.map((r) => [r.party, String(r.score), r.type || ""]), ["with", "score", "type"])
    : noData("no relationships yet"));
  body.replaceChildren(...parts);
  $("card").dataset.npc = npcId;
  $("card").hidden = false;
}

// --- start ---------------------------------------------------------------------------------------

async function start() {
  $("login").hidden = true;
  const world = await api("/ai/viewer/world");
  $("app").hidden = false;
  drawWorld(world);
  for (const entry of world.recent) applyEntry(entry);
  state.after = world.after;
  guarded(refreshPanels)();
  clearInterval(state.panelTimer);
  state.panelTimer = setInterval(guarded(refreshPanels), PANEL_REFRESH_MS);
  guarded(follow)();
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", guarded(login));
  $("logout").addEventListener("click", () => showLogin("Logged out."));
  $("card-close").addEventListener("click", () => { $("card").hidden = true; });
  $("colour-by").addEventListener("change", (event) => { state.colourBy = event.target.value; recolour(); });
  if (token()) guarded(start)();
  else showLogin();
});

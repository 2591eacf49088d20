// hearth console: plain ES module, no build step. It talks to the same APIs as any client, with the key the
// user gives (kept in this tab's sessionStorage, sent as a header, never put in a URL).

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k);
  return e;
};
const KEY = "hearth.key";
const fmt = (x, digits = 0) => (x === null || x === undefined || Number.isNaN(x) ? "-" : Number(x).toFixed(digits));

// --- talking to hearth ----------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message, code) { super(message); this.status = status; this.code = code; }
}

function headers(extra = {}) {
  const h = { ...extra };
  const key = sessionStorage.getItem(KEY);
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

async function errorOf(res) {
  let msg = `${res.status} ${res.statusText}`, code = null;
  try {
    const body = await res.json();
    const e = body.error;
    if (typeof e === "string") msg = e; else if (e) { msg = e.message || msg; code = e.code; }
  } catch { /* not JSON */ }
  return new ApiError(res.status, msg, code);
}

async function api(path, { method = "GET", body, raw = false, signal } = {}) {
  const init = { method, headers: headers(body !== undefined ? { "Content-Type": "application/json" } : {}), signal };
  if (body !== undefined) init.body = JSON.stringify(body);
  const res = await fetch(path, init);
  if (!res.ok) {
    const err = await errorOf(res);
    if (res.status === 401) askKey(err.message);
    throw err;
  }
  return raw ? res : res.json();
}

function banner(text, ok = false) {
  const b = $("#banner");
  b.textContent = text || "";
  b.className = ok ? "ok" : "";
  b.hidden = !text;
}

function showKeyState() {
  const key = sessionStorage.getItem(KEY);
  $("#key-button").textContent = key ? "API key: set" : "API key: none"; // no part of a secret on screen
}

function askKey(reason) {
  $("#key-reason").textContent = reason
    ? `This gateway needs an API key: ${reason}`
    : "The key this tab sends to hearth.";
  banner(`Not authorized: ${reason || "an API key is needed"}. Enter a key with "API key" at the top right.`);
  const d = $("#key-dialog");
  if (!d.open) d.showModal();
}

$("#key-button").addEventListener("click", () => askKey(""));
$("#key-dialog").addEventListener("close", () => {
  const d = $("#key-dialog"), input = $("#key-input");
  if (d.returnValue === "save" && input.value.trim()) sessionStorage.setItem(KEY, input.value.trim());
  if (d.returnValue === "forget") sessionStorage.removeItem(KEY);
  input.value = "";
  showKeyState();
  if (d.returnValue) { banner(""); route(); }
});

// --- pages --------------------------------------------------------------------------------------------

const pages = { playground: initPlayground, kbs: showKbs, dashboard: startDashboard, keys: showKeys };
let stopDashboard = null;

function route() {
  const name = (location.hash || "#playground").slice(1);
  const page = pages[name] ? name : "playground";
  for (const s of document.querySelectorAll(".page")) s.hidden = s.id !== `page-${page}`;
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("active", a.dataset.page === page);
  if (stopDashboard && page !== "dashboard") { stopDashboard(); stopDashboard = null; }
  pages[page]().catch((e) => { if (e.status !== 401) banner(e.message); }); // a 401 has its own message
}
window.addEventListener("hashchange", route);

// --- playground ---------------------------------------------------------------------------------------

const chat = { a: [], b: [], ready: false };
const remote = new Set(); // models served by a provider (their owner is the provider kind); the rest run in hearth
const SCHEMA = JSON.stringify({ type: "object", properties: { answer: { type: "string" }, confidence: { type: "number" } },
  required: ["answer", "confidence"] }, null, 2);
const TOOLS = JSON.stringify([{ type: "function", function: { name: "get_weather", description: "Weather in a city",
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } } }], null, 2);

async function initPlayground() {
  const { data } = await api("/v1/models");
  for (const m of data) if (m.owned_by !== "hearth") remote.add(m.id);
  let names = data.map((m) => m.id).filter((n) => !/minilm/i.test(n));
  try {
    const kbs = await api("/v1/rag");
    names = names.concat(kbs.data.map((k) => `rag:${k.name}`));
  } catch { /* no rag:read scope: no knowledge bases to offer */ }
  for (const sel of [$("#model-a"), $("#model-b")]) {
    const keep = sel.value;
    sel.replaceChildren(...names.map((n) => el("option", { value: n, text: n })));
    if (names.includes(keep)) sel.value = keep;
  }
  if (!chat.ready) {
    chat.ready = true;
    if (names.includes("local")) $("#model-a").value = "local";
    const other = names.find((n) => n !== $("#model-a").value);
    if (other) $("#model-b").value = other;
  }
  paneTitles();
  banner("");
}

function paneTitles() {
  const two = $("#compare").checked;
  $("#pane-b").hidden = !two;
  $("#panes").classList.toggle("two", two);
  for (const l of document.querySelectorAll(".compare-only")) l.hidden = !two;
  $("#pane-a .pane-title").textContent = $("#model-a").value;
  $("#pane-b .pane-title").textContent = $("#model-b").value;
}

$("#compare").addEventListener("change", paneTitles);
$("#model-a").addEventListener("change", paneTitles);
$("#model-b").addEventListener("change", paneTitles);
$("#mode").addEventListener("change", () => {
  const mode = $("#mode").value;
  $("#schema-box").hidden = mode === "text";
  $("#schema-label").textContent = mode === "tools" ? "Tools (OpenAI format)" : "JSON schema";
  $("#schema").value = mode === "tools" ? TOOLS : SCHEMA;
});
$("#clear-chat").addEventListener("click", () => {
  chat.a = []; chat.b = [];
  for (const t of document.querySelectorAll(".transcript")) t.replaceChildren();
});
$("#prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("#prompt-form").requestSubmit(); }
});
$("#prompt-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("#prompt").value.trim();
  if (!text) return;
  let extra;
  try { extra = modeFields(); } catch (err) { banner(err.message); return; }
  $("#prompt").value = "";
  $("#send").disabled = true;
  banner("");
  const runs = [send("a", $("#model-a").value, text, extra)];
  if ($("#compare").checked) runs.push(send("b", $("#model-b").value, text, extra));
  await Promise.allSettled(runs);
  $("#send").disabled = false;
});

function modeFields() {
  const mode = $("#mode").value;
  if (mode === "text") return {};
  let parsed;
  try { parsed = JSON.parse($("#schema").value); } catch (e) { throw new Error(`The ${mode === "tools" ? "tools" : "schema"} box is not valid JSON: ${e.message}`); }
  if (mode === "tools") return { tools: parsed };
  return { response_format: { type: "json_schema", json_schema: { name: "answer", schema: parsed, strict: true } } };
}

// Each API the playground speaks: its path, its request body, and how its stream events read. The same model
// answers through any of them; "Raw events" shows the server-sent events exactly as they arrived.
const DIALECTS = {
  chat: {
    path: "/v1/chat/completions",
    body: (model, system, turns, extra, opts) => ({ model, stream: true, stream_options: { include_usage: true },
      messages: system ? [{ role: "system", content: system }, ...turns] : turns, temperature: opts.temperature,
      max_tokens: opts.maxTokens, ...extra }),
    read(ev, out) {
      if (ev.error) throw new ApiError(0, ev.error.message || JSON.stringify(ev.error));
      if (ev.usage) out.usage = [ev.usage.prompt_tokens, ev.usage.completion_tokens];
      if (ev.sources) out.sources = ev.sources;
      const delta = ev.choices && ev.choices[0] && ev.choices[0].delta;
      if (!delta) return;
      if (delta.content) out.text(delta.content);
      for (const c of delta.tool_calls || []) out.call(c.index, c.function && c.function.name, c.function && c.function.arguments);
    },
  },
  responses: {
    path: "/v1/responses",
    body(model, system, turns, extra, opts) {
      const body = { model, stream: true, store: false, input: turns, instructions: system || undefined,
        temperature: opts.temperature, max_output_tokens: opts.maxTokens };
      if (extra.tools) body.tools = extra.tools.map((t) => ({ type: "function", ...t.function }));
      if (extra.response_format) body.text = { format: { type: "json_schema", ...extra.response_format.json_schema } };
      return body;
    },
    read(ev, out) {
      if (ev.type === "error") throw new ApiError(0, ev.message || "the response failed");
      if (ev.type === "response.output_text.delta") out.text(ev.delta);
      else if (ev.type === "response.output_item.added" && ev.item.type === "function_call") out.call(ev.output_index, ev.item.name, "");
      else if (ev.type === "response.function_call_arguments.delta") out.call(ev.output_index, null, ev.delta);
      else if (ev.type === "response.completed" || ev.type === "response.incomplete") {
        const u = ev.response.usage;
        if (u) out.usage = [u.input_tokens, u.output_tokens];
      }
    },
  },
  messages: {
    path: "/v1/messages",
    body(model, system, turns, extra, opts) {
      const body = { model, stream: true, system: system || undefined, messages: turns,
        temperature: opts.temperature, max_tokens: opts.maxTokens || 1024 };
      if (extra.tools) body.tools = extra.tools.map((t) => ({ name: t.function.name, description: t.function.description,
        input_schema: t.function.parameters }));
      if (extra.response_format) body.output_config = { format: { type: "json_schema", schema: extra.response_format.json_schema.schema } };
      return body;
    },
    read(ev, out) {
      if (ev.type === "error") throw new ApiError(0, (ev.error && ev.error.message) || "the message failed");
      if (ev.type === "message_start") out.input = ev.message.usage.input_tokens;
      else if (ev.type === "content_block_start" && ev.content_block.type === "tool_use") out.call(ev.index, ev.content_block.name, "");
      else if (ev.type === "content_block_delta" && ev.delta.type === "text_delta") out.text(ev.delta.text);
      else if (ev.type === "content_block_delta" && ev.delta.type === "input_json_delta") out.call(ev.index, null, ev.delta.partial_json);
      else if (ev.type === "message_delta" && ev.usage) out.usage = [ev.usage.input_tokens ?? out.input ?? 0, ev.usage.output_tokens];
    },
  },
};

async function send(side, model, text, extra) {
  const history = chat[side];
  const list = $(`#pane-${side} .transcript`);
  list.append(el("li", { class: "user", text }));
  const answer = el("div", { class: "text" });
  const meta = el("div", { class: "meta" });
  const item = el("li", { class: "assistant" }, answer, meta);
  list.append(item);
  const dialect = DIALECTS[$("#dialect").value];
  const opts = { temperature: Number($("#temperature").value), maxTokens: Number($("#max-tokens").value) || undefined };
  const body = dialect.body(model, $("#system").value.trim(), [...history, { role: "user", content: text }], extra, opts);
  const raw = $("#raw-events").checked ? [] : null;
  const t0 = performance.now();
  let ttft = null, content = "";
  const calls = [];
  const out = {
    usage: null, sources: null, input: null,
    text(t) { if (ttft === null) ttft = performance.now() - t0; content += t; answer.textContent = content; },
    call(i, name, args) {
      if (ttft === null) ttft = performance.now() - t0;
      calls[i] = calls[i] || { name: "", arguments: "" };
      if (name) calls[i].name += name;
      if (args) calls[i].arguments += args;
      answer.textContent = calls.filter(Boolean).map((x) => `${x.name}(${x.arguments})`).join("\n");
    },
  };
  try {
    const res = await api(dialect.path, { method: "POST", body, raw: true });
    const h = res.headers;
    const backend = h.get("x-hearth-backend") || model;
    const where = backend === "cache" ? "cache" : remote.has(backend) ? "remote" : "local";
    meta.append(badge(backend, where, `answered by ${backend} (${where})`));
    if (h.get("x-hearth-route")) meta.append(badge(`route: ${h.get("x-hearth-route")}`, null, h.get("x-hearth-route-reason") || ""));
    if (h.get("x-hearth-cache")) meta.append(badge(`cache: ${h.get("x-hearth-cache")}`, h.get("x-hearth-cache") === "miss" ? null : "cache"));
    for await (const ev of sse(res, raw)) {
      dialect.read(ev, out);
      item.parentElement.parentElement.scrollTop = 1e9;
    }
    const seconds = (performance.now() - t0 - (ttft || 0)) / 1000;
    meta.append(badge(`TTFT ${fmt(ttft)} ms`));
    if (out.usage) {
      meta.append(badge(`${out.usage[0]} + ${out.usage[1]} tokens`));
      if (out.usage[1] > 1 && seconds > 0) meta.append(badge(`${fmt(out.usage[1] / seconds, 1)} tok/s`));
    }
    if (out.sources && out.sources.length) {
      item.append(el("ol", { class: "sources" }, ...out.sources.map((s) =>
        el("li", { text: `${s.source || s.title || "?"}${s.line_start ? `:${s.line_start}-${s.line_end}` : ""}` }))));
    }
    history.push({ role: "user", content: text }, { role: "assistant", content: content || answer.textContent });
  } catch (err) {
    answer.append(el("div", { class: "error", text: err.message }));
    meta.append(badge(err.status ? `error ${err.status}` : "error", "bad"));
  } finally {
    if (raw) item.append(el("details", { class: "raw" }, el("summary", { text: `Raw events (${raw.length})` }),
      el("pre", { text: raw.join("\n\n") })));
  }
}

function badge(text, kind = null, title = "") {
  return el("span", { class: `badge${kind ? " " + kind : ""}`, text, title: title || null });
}

// Server-sent events as parsed objects; `raw`, when given, collects each event's text as it arrived.
async function* sse(res, raw = null) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const event = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (raw) raw.push(event);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        yield JSON.parse(data);
      }
    }
  }
}

// --- knowledge bases ----------------------------------------------------------------------------------

let currentKb = null;

async function showKbs() {
  const { data } = await api("/v1/rag");
  const rows = data.map((kb) => {
    const tr = el("tr", { class: kb.name === currentKb ? "selected" : "" },
      el("td", {}, el("a", { href: "#kbs", text: kb.name, onclick: (e) => { e.preventDefault(); selectKb(kb.name); } })),
      el("td", { class: "num", text: kb.documents ?? "-" }), el("td", { class: "num", text: kb.chunks ?? "-" }),
      el("td", {}, el("button", { type: "button", text: "Delete", onclick: () => dropKb(kb.name) })));
    return tr;
  });
  $("#kb-table tbody").replaceChildren(...rows);
  if (!currentKb && data.length) await selectKb(data[0].name);
  else if (currentKb) await selectKb(currentKb);
  banner("");
}

async function selectKb(name) {
  currentKb = name;
  $("#kb-name").value = name;
  $("#kb-title").textContent = `Search ${name}`;
  for (const tr of document.querySelectorAll("#kb-table tbody tr")) tr.classList.toggle("selected", tr.textContent.startsWith(name));
  const kb = await api(`/v1/rag/${encodeURIComponent(name)}`);
  $("#doc-table tbody").replaceChildren(...(kb.documents_list || []).map((d) => el("tr", {},
    el("td", { text: d.source }), el("td", { class: "num", text: d.chunks }), el("td", { class: "num", text: d.size }),
    el("td", {}, el("button", { type: "button", text: "Delete", onclick: () => dropDoc(name, d.source) })))));
}

async function dropKb(name) {
  if (!confirm(`Delete the knowledge base ${name} and all its documents?`)) return;
  await api(`/v1/rag/${encodeURIComponent(name)}`, { method: "DELETE" }).catch((e) => banner(e.message));
  if (currentKb === name) currentKb = null;
  $("#search-results").replaceChildren();
  await showKbs();
}

async function dropDoc(kb, source) {
  await api(`/v1/rag/${encodeURIComponent(kb)}/documents?source=${encodeURIComponent(source)}`, { method: "DELETE" })
    .catch((e) => banner(e.message));
  await showKbs();
}

function upload(files) {
  const kb = $("#kb-name").value.trim();
  if (!kb) { banner("Name the knowledge base the files go to."); return; }
  if (!files.length) return;
  const form = new FormData();
  for (const f of files) form.append("file", f, f.name);
  const xhr = new XMLHttpRequest();
  const bar = $("#upload-progress"), status = $("#upload-status");
  bar.hidden = false; bar.value = 0;
  status.textContent = `Uploading ${files.length} file(s)…`;
  xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = e.loaded / e.total; };
  xhr.upload.onload = () => { status.textContent = "Uploaded; reading, chunking and embedding…"; };
  xhr.onerror = () => { status.textContent = "The upload failed (network)."; };
  xhr.onload = async () => {
    bar.value = 1;
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
    if (xhr.status === 401) askKey(typeof body.error === "string" ? body.error : body.error?.message);
    if (xhr.status !== 200) { status.textContent = `Upload refused: ${body.error?.message || body.error || xhr.status}`; return; }
    const n = (x) => (Array.isArray(x) ? x.length : x || 0);
    const skipped = (body.skipped || []).map((u) => `\n${u.source}: ${u.reason}`).join("");
    status.textContent = `Added to ${kb}: ${n(body.added)} new, ${n(body.updated)} updated, ${n(body.unchanged)} unchanged, `
      + `${body.chunks ?? 0} chunks in ${fmt(body.seconds, 1)} s.${skipped ? "\nNot ingested:" + skipped : ""}`;
    currentKb = kb;
    await showKbs().catch((e) => banner(e.message));
  };
  xhr.open("POST", `/v1/rag/${encodeURIComponent(kb)}/files`);
  const key = sessionStorage.getItem(KEY);
  if (key) xhr.setRequestHeader("Authorization", `Bearer ${key}`);
  xhr.send(form);
}

const drop = $("#drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); upload([...e.dataTransfer.files]); });
$("#file-input").addEventListener("change", (e) => { upload([...e.target.files]); e.target.value = ""; });

$("#search-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!currentKb) { banner("Choose or create a knowledge base first."); return; }
  try {
    const r = await api(`/v1/rag/${encodeURIComponent(currentKb)}/search`, { method: "POST",
      body: { query: $("#search-query").value, mode: $("#search-mode").value, top_k: 8 } });
    $("#search-results").replaceChildren(...r.results.map((h) => el("li", {},
      el("div", { class: "where", text: `${h.source}${h.line_start ? `:${h.line_start}-${h.line_end}` : ""}  ·  score ${fmt(h.score, 3)}`
        + (h.vector_score !== null ? `  (vector ${fmt(h.vector_score, 3)}, keyword ${fmt(h.keyword_score, 3)})` : "") }),
      el("div", { class: "chunk", text: h.text }))));
    if (!r.results.length) $("#search-results").append(el("li", { class: "muted", text: "nothing found" }));
    banner("");
  } catch (err) { banner(err.message); }
});

// --- dashboard ----------------------------------------------------------------------------------------

const WINDOW = 60; // points kept, one per poll: two minutes

function quantile(le, counts, q) {
  const total = counts.reduce((a, b) => a + b, 0);
  if (!total) return null;
  let cum = 0;
  for (let i = 0; i < counts.length; i++) {
    const prev = cum;
    cum += counts[i];
    if (cum >= q * total) {
      const lo = i ? le[i - 1] : 0, hi = le[i] ?? le[le.length - 1];
      return lo + (hi - lo) * ((q * total - prev) / (counts[i] || 1));
    }
  }
  return le[le.length - 1];
}

function chart(target, series, floor, fixed = false) {
  // x: the last WINDOW polls, 2 s apart; y: from 0 to at least `floor` (exactly `floor` when fixed), so that an
  // idle chart reads as zero rather than as noise
  const width = Math.max(320, target.clientWidth || 480);
  const scales = { x: { time: true, range: (u, lo, hi) => [hi - WINDOW * 2, hi] },
    y: { range: (u, lo, hi) => [0, fixed ? floor : Math.max(hi || 0, floor) * 1.1] } };
  return new uPlot({ width, height: 180, series: [{}, ...series.map((s) => ({ width: 2, spanGaps: true, ...s }))],
    axes: [{}, { size: 50 }], legend: { live: false }, scales }, [[], ...series.map(() => [])], target);
}

async function startDashboard() {
  if (typeof uPlot === "undefined") { banner("The chart library did not load."); return; }
  const data = { t: [], rps: [], local: [], remote: [], cache: [], p50: [], p95: [], active: [], queued: [], err: [], hit: [] };
  for (const id of ["chart-rps", "chart-ttft", "chart-engine", "chart-rates"]) $(`#${id}`).replaceChildren();
  const charts = {
    rps: chart($("#chart-rps"), [{ label: "all", stroke: "#c2410c" }, { label: "local", stroke: "#15803d" },
      { label: "remote", stroke: "#1d4ed8" }, { label: "cache", stroke: "#7c3aed" }], 1),
    ttft: chart($("#chart-ttft"), [{ label: "p50", stroke: "#15803d" }, { label: "p95", stroke: "#c2410c" }], 0.1),
    engine: chart($("#chart-engine"), [{ label: "active", stroke: "#15803d" }, { label: "queued", stroke: "#b91c1c" }], 1),
    rates: chart($("#chart-rates"), [{ label: "errors", stroke: "#b91c1c" }, { label: "cache hits", stroke: "#7c3aed" }], 1, true),
  };
  let prev = null, stopped = false;
  async function poll() {
    if (stopped) return;
    try {
      const s = await api("/admin/stats");
      render(s, prev, data, charts);
      prev = s;
      banner("");
    } catch (err) {
      if (err.status !== 401) banner(err.status === 403 ? "The dashboard needs a key with the admin scope." : err.message);
    }
    if (!stopped) timer = setTimeout(poll, 2000);
  }
  let timer = null;
  stopDashboard = () => { stopped = true; clearTimeout(timer); for (const c of Object.values(charts)) c.destroy(); };
  await poll();
}

function render(s, prev, data, charts) {
  const cache = s.cache || {};
  const hits = (cache.hit || 0) + (cache.semantic || 0), lookups = hits + (cache.miss || 0);
  $("#stat-requests").textContent = fmt(s.requests);
  $("#stat-errors").textContent = `${fmt(s.errors)}${s.requests ? ` (${fmt(100 * s.errors / s.requests, 1)}%)` : ""}`;
  $("#stat-cache").textContent = lookups ? `${fmt(100 * hits / lookups, 1)}%` : "-";
  $("#stat-mix").textContent = `${fmt(s.served.local)} / ${fmt(s.served.remote)} / ${fmt(s.served.cache)}`;
  const circuits = Object.entries(s.circuits || {});
  if (circuits.length) {
    const names = ["closed", "half-open", "open"];
    $("#circuits").replaceChildren(...circuits.map(([b, v]) => el("li", {}, `${b}: `,
      el("strong", { class: `state-${names[v] || "open"}`, text: names[v] || String(v) }))));
  }
  let active = 0, queued = 0;
  for (const e of Object.values(s.engine || {})) { active += e.active_sequences || 0; queued += e.queue_depth || 0; }
  if (!prev) return;
  const dt = Math.max(0.001, s.time - prev.time);
  const d = (a, b) => Math.max(0, a - b) / dt;
  const dcounts = s.ttft.counts.map((c, i) => Math.max(0, c - (prev.ttft.counts[i] || 0)));
  const p50 = quantile(s.ttft.le, dcounts, 0.5), p95 = quantile(s.ttft.le, dcounts, 0.95);
  const dreq = s.requests - prev.requests;
  const pcache = prev.cache || {};
  const dh = hits - ((pcache.hit || 0) + (pcache.semantic || 0)), dl = lookups - ((pcache.hit || 0) + (pcache.semantic || 0) + (pcache.miss || 0));
  const rps = d(s.requests, prev.requests);
  $("#stat-rps").textContent = fmt(rps, 2);
  if (p50 !== null) $("#stat-ttft").textContent = `${fmt(p50 * 1000)} / ${fmt(p95 * 1000)} ms`;
  const row = { t: s.time, rps, local: d(s.served.local, prev.served.local), remote: d(s.served.remote, prev.served.remote),
    cache: d(s.served.cache, prev.served.cache), p50, p95, active, queued,
    err: dreq > 0 ? (s.errors - prev.errors) / dreq : null, hit: dl > 0 ? dh / dl : null };
  for (const [k, v] of Object.entries(row)) { data[k].push(v); if (data[k].length > WINDOW) data[k].shift(); }
  charts.rps.setData([data.t, data.rps, data.local, data.remote, data.cache]);
  charts.ttft.setData([data.t, data.p50, data.p95]);
  charts.engine.setData([data.t, data.active, data.queued]);
  charts.rates.setData([data.t, data.err, data.hit]);
}

// --- keys ---------------------------------------------------------------------------------------------

async function showKeys() {
  let keys, spend;
  try {
    [keys, spend] = await Promise.all([api("/admin/keys"), api("/admin/spend")]);
  } catch (err) {
    $("#keys-table tbody").replaceChildren();
    if (err.status !== 401) banner(err.status === 403 ? "Managing keys needs the admin key or a key with the admin scope." : err.message);
    return;
  }
  const spent = Object.fromEntries(spend.data.map((r) => [r.id, r]));
  $("#keys-table tbody").replaceChildren(...keys.data.map((k) => {
    const limits = [k.rpm && `${k.rpm} rpm`, k.tpm && `${k.tpm} tpm`, k.max_parallel && `${k.max_parallel} parallel`]
      .filter(Boolean).join(", ") || "none";
    const s = spent[k.id];
    const money = s ? `${fmt(s.spent, 4)}${k.budget !== null ? ` of ${k.budget}${k.budget_period ? ` / ${k.budget_period}` : ""}` : ""}` : "-";
    const state = k.revoked ? "revoked" : (k.expires && Date.parse(k.expires) < Date.now() ? "expired" : "active");
    return el("tr", {}, el("td", { text: k.name }), el("td", {}, el("code", { text: `${k.prefix}…` })),
      el("td", { text: k.models.join(", ") }), el("td", { text: limits }), el("td", { class: "num", text: money }),
      el("td", { text: state }),
      el("td", {}, k.revoked ? null : el("button", { type: "button", text: "Revoke", onclick: () => revoke(k) })));
  }));
  banner("");
}

async function revoke(k) {
  if (!confirm(`Revoke the key ${k.name} (${k.prefix}…)? Clients using it get 401 at once.`)) return;
  await api(`/admin/keys/${encodeURIComponent(k.id)}`, { method: "DELETE" }).catch((e) => banner(e.message));
  await showKeys();
}

$("#key-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = new FormData(e.target);
  const body = { name: f.get("name"), scopes: f.getAll("scope") };
  const models = String(f.get("models") || "").split(",").map((x) => x.trim()).filter(Boolean);
  if (models.length) body.models = models;
  for (const n of ["rpm", "tpm", "max_parallel"]) if (f.get(n)) body[n] = Number(f.get(n));
  if (f.get("budget")) body.budget = Number(f.get("budget"));
  for (const n of ["budget_period", "expires"]) if (f.get(n)) body[n] = String(f.get(n));
  try {
    const made = await api("/admin/keys", { method: "POST", body });
    const box = $("#new-key");
    box.replaceChildren(el("div", { text: `Key for ${made.name} (copy it now: it is not shown again):` }),
      el("code", { text: made.key }));
    box.hidden = false;
    e.target.reset();
    await showKeys();
  } catch (err) { banner(err.message); }
});

showKeyState();
route();

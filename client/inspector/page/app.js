// The Luminet inspector's page: the live list (Server-Sent Events from
// /inspector/events), one entry in detail, replay, replay with edits, copy as cURL.
// Everything shown comes from the tunnel, so it is written with textContent only.
"use strict";

const state = {
  entries: new Map(), // id -> row summary
  order: [], // ids, oldest first
  selected: null,
  detailVersion: 0,
  severalTunnels: false, // then each row names its tunnel
};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function statusClass(row) {
  if (row.failed) return "failed";
  if (row.kind === "ws") return row.status ? "s2" : "";
  return row.status ? "s" + String(row.status)[0] : "";
}

function formatTime(ms) {
  const d = new Date(ms);
  const pad = (n, w) => String(n).padStart(w || 2, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function formatMs(ms) {
  if (ms === null) return "…";
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}

// -- the list -----------------------------------------------------------------

function matches(row) {
  const text = document.getElementById("filter-text").value.trim().toLowerCase();
  const status = document.getElementById("filter-status").value;
  const method = document.getElementById("filter-method").value;
  if (method && row.method !== method) return false;
  if (status === "failed" && !row.failed) return false;
  if (status === "open" && !row.in_flight) return false;
  if (/^[1-5]$/.test(status) && !(row.status && String(row.status)[0] === status && !row.failed)) return false;
  if (text) {
    const haystack = `${row.tunnel} ${row.method} ${row.path} ${row.status_text}`.toLowerCase();
    if (!haystack.includes(text)) return false;
  }
  return true;
}

function renderList() {
  const body = document.querySelector("#entries tbody");
  const rows = [];
  for (let i = state.order.length - 1; i >= 0; i--) {
    const row = state.entries.get(state.order[i]);
    if (!row || !matches(row)) continue;
    const tr = el(
      "tr",
      { "data-id": row.id, class: [row.id === state.selected ? "selected" : "", row.in_flight ? "open" : ""].join(" ").trim() },
      el("td", { text: formatTime(row.time) }),
      el("td", { text: row.method }),
      el(
        "td",
        { class: "path", title: row.path },
        state.severalTunnels ? el("span", { class: "badge", text: row.tunnel }) : null,
        row.path,
      ),
      el("td", { class: statusClass(row) }, row.status_text, row.replay_of ? el("span", { class: "badge", text: "replay" }) : null,
        row.edge ? el("span", { class: "badge", title: `refused at the edge: ${row.edge}`, text: "edge" }) : null),
      el("td", { class: "num", text: formatMs(row.ms) }),
      el("td", { class: "num", text: row.kind === "ws" ? `${row.messages} msg` : formatSize(row.size) }),
    );
    tr.addEventListener("click", () => select(row.id));
    rows.push(tr);
  }
  body.replaceChildren(...rows);
  document.getElementById("empty").hidden = state.order.length > 0;
}

function applyUpdate(update) {
  const kept = new Set(update.ids);
  for (const id of state.entries.keys()) {
    if (!kept.has(id)) state.entries.delete(id);
  }
  for (const row of update.entries) state.entries.set(row.id, row);
  state.order = update.ids;
  const tunnels = update.tunnels;
  state.severalTunnels = tunnels.length > 1;
  document.getElementById("tunnel").textContent = tunnels.length
    ? tunnels
        .map((t) => `${state.severalTunnels ? `${t.name}: ` : ""}${t.url} → ${t.local}${t.up ? "" : " (reconnecting)"}`)
        .join("  ·  ")
    : "waiting for the tunnel…";
  renderList();
  if (state.selected && !kept.has(state.selected)) {
    state.selected = null;
    document.getElementById("detail").hidden = true;
  } else if (state.selected && update.entries.some((row) => row.id === state.selected)) {
    loadDetail(state.selected);
  }
}

function listen() {
  const live = document.getElementById("live");
  const source = new EventSource("/inspector/events");
  source.onopen = () => live.classList.remove("off");
  source.onerror = () => live.classList.add("off");
  source.onmessage = (event) => applyUpdate(JSON.parse(event.data));
}

// -- one entry ----------------------------------------------------------------

function select(id) {
  state.selected = id;
  renderList();
  loadDetail(id);
}

async function loadDetail(id) {
  const version = ++state.detailVersion;
  const response = await fetch(`/inspector/entries/${id}`);
  if (version !== state.detailVersion) return; // another entry was chosen meanwhile
  const pane = document.getElementById("detail");
  if (!response.ok) {
    pane.hidden = true;
    return;
  }
  const detail = await response.json();
  const editing = document.getElementById("edit-form");
  if (editing && !editing.hidden && editing.dataset.id === id) return; // keep the user's edits
  pane.replaceChildren(...(detail.kind === "ws" ? socketDetail(detail) : httpDetail(detail)));
  pane.hidden = false;
}

function headersTable(pairs) {
  return el("table", { class: "headers" }, el("tbody", {}, ...pairs.map(([name, value]) => el("tr", {}, el("td", { text: name }), el("td", { text: value })))));
}

function bodyView(body) {
  const parts = body.notes.map((note) => el("p", { class: "note", text: note }));
  if (body.kind === "empty") return [el("p", { class: "note", text: "No body" })];
  if (body.kind === "image") return [...parts, el("img", { class: "body", src: body.image, alt: body.content_type })];
  return [...parts, el("pre", { class: `body ${body.kind}`, text: body.text })];
}

function httpDetail(d) {
  const head = el(
    "div",
    { class: "detail-head" },
    el("strong", { text: d.method }),
    el("span", { class: "path", text: d.path }),
    el("span", { class: statusClass(d), id: "detail-status", text: d.response ? `${d.response.status} ${d.response.reason}` : d.status_text }),
    el("span", { text: formatMs(d.ms) }),
    d.replay_of ? el("span", { class: "badge", text: `replay of ${d.replay_of}` }) : null,
  );
  const note = el("span", { class: "note", id: "action-note" });
  const replay = el("button", { type: "button", id: "replay", text: "Replay", disabled: !d.replayable, title: d.why_not });
  replay.addEventListener("click", () => sendReplay(d.id, {}, note));
  const edit = el("button", { type: "button", id: "edit-replay", text: "Replay with edits" });
  const curl = el("pre", { id: "curl", text: d.curl, hidden: true });
  const copy = el("button", { type: "button", id: "copy-curl", text: "Copy as cURL" });
  copy.addEventListener("click", () => copyCurl(d, curl, note));
  const form = editForm(d, note);
  edit.addEventListener("click", () => {
    form.hidden = !form.hidden;
  });
  const parts = [
    head,
    el("div", { class: "actions" }, replay, edit, copy, note),
    form,
    curl,
  ];
  if (d.why_not) parts.push(el("p", { class: "note", text: `Replay as captured is off: ${d.why_not}.` }));
  if (d.reason) parts.push(el("p", { class: "note failed", text: d.reason }));
  parts.push(el("h2", { text: "Request" }), headersTable(d.request.headers), ...bodyView(d.request.body));
  parts.push(el("h2", { text: "Response" }));
  if (d.response) parts.push(headersTable(d.response.headers), ...bodyView(d.response.body));
  else parts.push(el("p", { class: "note", text: d.in_flight ? "Waiting for the local server…" : "No response" }));
  return parts;
}

function editForm(d, note) {
  const method = el("input", { name: "method", value: d.edit.method });
  const path = el("input", { name: "path", value: d.edit.path });
  const headers = el("textarea", { name: "headers", value: d.edit.headers, rows: 8 });
  const body = el("textarea", { name: "body", rows: 6 });
  if (d.edit.body === null) {
    body.disabled = true;
    body.placeholder = "The body is binary, compressed or incomplete: it is sent as captured, or replaced by what you type here once enabled.";
  } else {
    body.value = d.edit.body;
  }
  const send = el("button", { type: "submit", id: "edit-send", text: "Send" });
  const cancel = el("button", { type: "button", id: "edit-cancel", text: "Cancel" });
  const form = el(
    "form",
    { id: "edit-form", hidden: true, "data-id": d.id },
    el("label", { text: "Method" }), method,
    el("label", { text: "Path" }), path,
    el("label", { text: "Headers" }), headers,
    el("label", { text: "Body" }), body,
    el("div", { class: "buttons" }, send, cancel),
  );
  cancel.addEventListener("click", () => {
    form.hidden = true;
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const edits = { method: method.value, path: path.value, headers: parseHeaders(headers.value) };
    if (!body.disabled) edits.body = body.value;
    form.hidden = true;
    sendReplay(d.id, edits, note);
  });
  return form;
}

function parseHeaders(text) {
  const pairs = [];
  for (const line of text.split("\n")) {
    const colon = line.indexOf(":");
    if (!line.trim() || colon < 1) continue;
    pairs.push([line.slice(0, colon).trim(), line.slice(colon + 1).trim()]);
  }
  return pairs;
}

async function sendReplay(id, edits, note) {
  note.textContent = "Replaying…";
  const response = await fetch(`/inspector/entries/${id}/replay`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(edits),
  });
  const answer = await response.json();
  if (!response.ok) {
    note.textContent = `${answer.msg}: ${answer.details.err}`;
    return;
  }
  select(answer.id); // the new exchange, marked as a replay
}

async function copyCurl(d, pre, note) {
  pre.hidden = false;
  const warning = d.curl_complete ? "" : " (the body was cut by the cap: the command sends only what was kept)";
  try {
    await navigator.clipboard.writeText(d.curl);
    note.textContent = "Copied" + warning;
  } catch (error) {
    note.textContent = "Select the command below to copy it" + warning;
  }
}

function socketDetail(d) {
  const head = el(
    "div",
    { class: "detail-head" },
    el("strong", { text: "WebSocket" }),
    el("span", { class: "path", text: d.path }),
    el("span", { class: statusClass(d), text: d.status_text }),
    el("span", { text: formatMs(d.ms) }),
  );
  const parts = [head];
  if (d.subprotocol) parts.push(el("p", { class: "note", text: `Subprotocol: ${d.subprotocol}` }));
  if (d.reason) parts.push(el("p", { class: "note failed", text: d.reason }));
  parts.push(el("h2", { text: `Messages (${d.messages})` }));
  if (d.messages_dropped) parts.push(el("p", { class: "note", text: `${d.messages_dropped} earlier messages are no longer kept` }));
  const rows = d.message_list.map((m) =>
    el(
      "tr",
      {},
      el("td", { text: formatTime(m.time) }),
      el("td", { text: m.direction === "in" ? "→ local" : "← local", title: m.direction === "in" ? "from the public side to your server" : "from your server to the public side" }),
      el("td", { text: m.text ? "text" : "binary" }),
      el("td", { class: "num", text: formatSize(m.size) }),
      el("td", { class: "preview", text: m.preview + (m.cut ? " …" : "") }),
    ),
  );
  parts.push(el("table", { class: "messages" }, el("tbody", {}, ...rows)));
  parts.push(el("h2", { text: "Handshake" }), headersTable(d.request.headers));
  return parts;
}

// -- wiring -------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  for (const id of ["filter-text", "filter-status", "filter-method"]) {
    document.getElementById(id).addEventListener("input", renderList);
  }
  document.getElementById("clear").addEventListener("click", () => fetch("/inspector/entries", { method: "DELETE" }));
  listen();
});

// rowpipe console: plain JavaScript, no dependencies, no build step.
//
// The API key lives in this tab's sessionStorage only and travels as the
// X-API-Key header. It is never put in a URL (the views are hash routes
// without it), in localStorage or in a log.
"use strict";

const KEY = "rowpipe.apiKey";
const REFRESH_MS = 5000;
const PAGE_SIZES = [10, 25, 50, 100];
const DEFAULT_LIMIT = 25;
const $ = (id) => document.getElementById(id);
const fmt = new Intl.NumberFormat();

// ---- talking to the api -------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// api GETs a JSON endpoint with the key; any answer but 2xx is an ApiError
// carrying the api's own code and message.
async function api(path) {
  const key = sessionStorage.getItem(KEY);
  if (!key) throw new ApiError(401, "no_key", "Enter an API key.");
  let res;
  try {
    res = await fetch(path, {
      headers: { "X-API-Key": key, Accept: "application/json" },
      cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer",
    });
  } catch (e) {
    throw new ApiError(0, "unreachable", "The api cannot be reached (" + e.message + "); is it running?");
  }
  let body = null;
  try { body = await res.json(); } catch { /* not JSON: the status says enough */ }
  if (!res.ok) {
    const e = body && body.error;
    throw new ApiError(res.status, e ? e.code : "http_" + res.status,
      e ? e.message : `The api answered ${res.status} ${res.statusText}.`);
  }
  return body;
}

const enc = encodeURIComponent;

// ---- routes: #/, #/datasets/<name>, #/datasets/<name>/rejects -----------

function parseRoute() {
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query || "");
  const parts = (path || "").split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "datasets" && parts[1]) {
    return { view: parts[2] === "rejects" ? "rejects" : "records", name: parts[1], params };
  }
  return { view: "datasets", params };
}

function routeHref(name, view, params) {
  let h = "#/datasets/" + enc(name) + (view === "rejects" ? "/rejects" : "");
  const q = params ? new URLSearchParams(params).toString() : "";
  return q ? h + "?" + q : h;
}

function intParam(params, name, def, min, max) {
  const v = Number.parseInt(params.get(name) ?? "", 10);
  if (!Number.isFinite(v)) return def;
  return Math.min(Math.max(v, min), max);
}

// ---- rendering ----------------------------------------------------------

let seq = 0;           // the render in force; older ones drop their answers
let refreshTimer = 0;
let shown = { seq: -1, records: null, meta: null };

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  e.append(...children.filter((c) => c !== null && c !== undefined));
  return e;
}

// refocus names the pager button a page change came from: the new page
// gives it focus back, so the keyboard can go on paging.
let refocus = null;

function showView(id, focus) {
  for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== id;
  const label = refocus;
  refocus = null;
  if (!focus) return;
  const again = label && document.querySelector(`#${id} .pager button[aria-label="${label}"]`);
  const target = again && !again.disabled ? again : document.querySelector("#" + id + " h1");
  if (target) target.focus({ preventScroll: true });
}

function showAlert(msg) {
  const a = $("alert");
  a.textContent = msg;
  a.hidden = !msg;
}

function crumbs(items) {
  const nav = $("crumbs");
  nav.replaceChildren();
  items.forEach(([text, href], i) => {
    if (i > 0) nav.append(" › ");
    nav.append(href ? el("a", { href, text }) : el("span", { text, "aria-current": "page" }));
  });
}

async function render(focus = true) {
  clearTimeout(refreshTimer);
  const mine = ++seq;
  showAlert("");
  if (!sessionStorage.getItem(KEY)) {
    showKey("");
    return;
  }
  $("forget").hidden = false;
  const r = parseRoute();
  try {
    if (r.view === "datasets") await renderDatasets(mine, focus);
    else if (r.view === "records") await renderRecords(mine, r, focus);
    else await renderRejects(mine, r, focus);
  } catch (e) {
    if (mine === seq) fail(e);
  }
}

function fail(e) {
  if (e.status === 401) {
    sessionStorage.removeItem(KEY);
    showKey(e.message);
    return;
  }
  showAlert(e.message);
}

// ---- the key --------------------------------------------------------------

function showKey(message) {
  clearTimeout(refreshTimer);
  $("forget").hidden = true;
  crumbs([]);
  const err = $("key-error");
  err.textContent = message;
  err.hidden = !message;
  showView("view-key", false);
  $("key").focus();
}

async function submitKey(ev) {
  ev.preventDefault();
  const input = $("key");
  const key = input.value.trim();
  input.value = "";
  if (!key) return;
  sessionStorage.setItem(KEY, key);
  await render();
}

// ---- datasets -----------------------------------------------------------

function ago(date) {
  const s = Math.round((Date.now() - date.getTime()) / 1000);
  if (s < 60) return "just now";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}

function bytes(n) {
  if (!(n >= 0)) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

// syncing describes the sync in progress that the files show: rows
// written so far (the total is known only when the sync ends).
function syncing(b) {
  const rej = b.rejected > 0 ? `, ${fmt.format(b.rejected)} rejected` : "";
  return `syncing generation ${b.generation}: ${fmt.format(b.count)} rows so far${rej}`;
}

// baseName is the last element of a source's path or URL; the whole name
// is in the cell's title.
function baseName(name) {
  return (name || "").replace(/[?#].*$/, "").replace(/\/+$/, "").split("/").pop() || name;
}

function datasetRow(d) {
  const when = new Date(d.updated_at);
  const src = d.source || {};
  const rejected = d.rejected > 0
    ? el("a", { href: routeHref(d.dataset, "rejects"), text: fmt.format(d.rejected), "aria-label": `${fmt.format(d.rejected)} rejected rows of ${d.dataset}` })
    : "0";
  return el("tr", {},
    el("td", {}, el("a", { href: routeHref(d.dataset), text: d.dataset })),
    el("td", { class: "num", text: fmt.format(d.count) }),
    el("td", { class: "num", text: String(d.generation) }),
    el("td", {}, el("span", { class: d.state === "complete" ? "state-complete" : "state-other", text: d.state + (d.mode ? " · " + d.mode : "") }),
      d.building ? el("div", { class: "syncing", role: "status", text: syncing(d.building) }) : null),
    el("td", { title: when.toISOString() }, el("time", { datetime: d.updated_at, text: when.toLocaleString() }), " ", el("span", { class: "status", text: "(" + ago(when) + ")" })),
    el("td", { class: "opt", title: [src.name, src.sha256 && "sha256 " + src.sha256].filter(Boolean).join("\n") || null,
      text: [baseName(src.name), bytes(src.size)].filter(Boolean).join(" · ") }),
    el("td", { class: "num" }, rejected));
}

// allDatasets reads every page of GET /datasets (MAX_DATASETS keeps them
// few: one page of 1000 holds the default 256).
async function allDatasets() {
  const list = [];
  let offset = 0;
  do {
    const page = await api(`/datasets?limit=1000&offset=${offset}`);
    list.push(...(page.datasets || []));
    offset = page.next_offset;
  } while (offset !== null && offset !== undefined);
  return list;
}

async function renderDatasets(mine, focus) {
  const list = await allDatasets();
  if (mine !== seq) return;
  crumbs([["Datasets"]]);
  $("ds-table").tBodies[0].replaceChildren(...list.map(datasetRow));
  $("ds-empty").hidden = list.length > 0;
  $("ds-status").textContent = `${list.length} dataset${list.length === 1 ? "" : "s"} · refreshed ${new Date().toLocaleTimeString()}`;
  showView("view-datasets", focus);
  // Refreshed in place while this view is shown; a hidden tab asks nothing.
  refreshTimer = setTimeout(function tick() {
    if (mine !== seq) return;
    if (document.hidden) { refreshTimer = setTimeout(tick, REFRESH_MS); return; }
    renderDatasets(mine, false).catch((e) => {
      if (mine !== seq) return;
      fail(e);
      if (e.status !== 401) refreshTimer = setTimeout(tick, REFRESH_MS);
    });
  }, REFRESH_MS);
}

// ---- a page of records or rejects ---------------------------------------

// pager draws first/previous/next/last, the range shown and a jump to any
// offset. Every record is one request away: the api reads any offset in O(1).
function pager(box, r, page, what) {
  const { count, offset, limit, returned } = page;
  const go = (o, l = limit) => routeHref(r.name, r.view, { ...Object.fromEntries(r.params), offset: Math.max(0, o), limit: l });
  const last = count > 0 ? Math.floor((count - 1) / limit) * limit : 0;
  const button = (label, text, target, disabled) => {
    const b = el("button", { type: "button", class: "quiet", "aria-label": label, disabled, text });
    b.addEventListener("click", () => { refocus = label; location.hash = go(target); });
    return b;
  };
  const range = returned > 0
    ? `${what} ${fmt.format(offset + 1)}–${fmt.format(offset + returned)} of ${fmt.format(count)}`
    : `no ${what.toLowerCase()} at offset ${fmt.format(offset)} of ${fmt.format(count)}`;

  const jump = el("input", { type: "number", id: box.id + "-offset", min: 0, max: Math.max(0, count - 1), value: offset, inputmode: "numeric" });
  const size = el("select", { id: box.id + "-limit" },
    ...[...new Set([...PAGE_SIZES, limit])].sort((a, b) => a - b).map((n) => el("option", { value: n, selected: n === limit, text: String(n) })));
  const form = el("form", { "aria-label": "Go to an offset" },
    el("label", { for: jump.id, text: "Offset" }), jump,
    el("label", { for: size.id, text: "per page" }), size,
    el("button", { type: "submit", text: "Go" }));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const o = Number.parseInt(jump.value, 10);
    location.hash = go(Number.isFinite(o) ? o : 0, Number(size.value));
  });
  size.addEventListener("change", () => { location.hash = go(offset, Number(size.value)); });

  box.replaceChildren(
    button("First page", "« First", 0, offset === 0),
    button("Previous page", "‹ Previous", offset - limit, offset === 0),
    button("Next page", "Next ›", offset + limit, page.next_offset === null || page.next_offset === undefined),
    button("Last page", "Last »", last, offset >= last),
    el("span", { class: "range", role: "status", text: range }),
    form);
}

function tabs(prefix, name, meta, params) {
  const keep = params.get("limit") ? { limit: params.get("limit") } : {};
  $(prefix + "-tab-records").href = routeHref(name, "records", keep);
  const rej = $(prefix + "-tab-rejects");
  rej.href = routeHref(name, "rejects", keep);
  rej.textContent = `Rejects (${fmt.format(meta.rejected || 0)})`;
}

function metaLine(meta) {
  const when = new Date(meta.updated_at);
  return `generation ${meta.generation} · ${fmt.format(meta.count)} rows · ${meta.state} · synced ${when.toLocaleString()}` +
    (meta.source && meta.source.name ? ` from ${baseName(meta.source.name)}` : "");
}

// pageOf reads the metadata of the current generation, then a page of it
// pinned to that generation; a generation pruned in between is read again.
// params are query pairs, or a function of the metadata giving them.
async function pageOf(name, path, params) {
  for (let attempt = 0; ; attempt++) {
    const meta = await api("/datasets/" + enc(name));
    const q = [...(typeof params === "function" ? params(meta) : params), ["generation", meta.generation]].map(([k, v]) => enc(k) + "=" + enc(v)).join("&");
    try {
      return { meta, page: await api(`/datasets/${enc(name)}/${path}?${q}`) };
    } catch (e) {
      if (e.status !== 410 || attempt > 0) throw e;
    }
  }
}

// ---- records ------------------------------------------------------------

const hiddenKey = (name) => "rowpipe.hiddenColumns." + name;

function hiddenColumns(name) {
  try { return new Set(JSON.parse(sessionStorage.getItem(hiddenKey(name)) || "[]")); } catch { return new Set(); }
}

// setHiddenColumns keeps the choice for this tab and fetches the page
// again with only the chosen columns (fields=).
function setHiddenColumns(name, set) {
  sessionStorage.setItem(hiddenKey(name), JSON.stringify([...set]));
  render(false);
}

// csvRecord writes names as one CSV record, the syntax of fields=: a name
// holding a comma, a quote or a line end goes in double quotes.
function csvRecord(names) {
  return names.map((n) => /[",\r\n]/.test(n) || n !== n.trim() ? '"' + n.replaceAll('"', '""') + '"' : n).join(",");
}

// projection is the fields= of the chosen columns; none when all are
// chosen. With none chosen, the first field is fetched: rows still show.
function projection(name, fields) {
  const hidden = hiddenColumns(name);
  if (!fields.some((f) => hidden.has(f))) return [];
  const cols = fields.filter((f) => !hidden.has(f));
  return [["fields", csvRecord(cols.length ? cols : fields.slice(0, 1))]];
}

// filterParams are the equality filters of the route (eq.<field>=<value>,
// AND of all), and the scan's cursor when the route continues a scan: the
// api's own syntax, kept as they are in the route.
function filterParams(params) {
  const out = [...params].filter(([k]) => k.startsWith("eq."));
  if (out.length && params.get("cursor")) out.push(["cursor", params.get("cursor")]);
  return out;
}

// withFilters is the records route with filters fs (pairs of field and
// value), from the first match on.
function withFilters(r, fs) {
  const keep = [...r.params].filter(([k]) => k === "limit");
  return routeHref(r.name, "records", [...keep, ...fs.map(([f, v]) => ["eq." + f, v])]);
}

// drawFilters fills the filter form: the conditions in force, each with a
// remove button, and a field, a value and Add for one more.
function drawFilters(r, meta) {
  const form = $("filter-form");
  const indexed = new Set((meta.indexes || []).filter((i) => !i.stale).map((i) => i.field));
  const fs = [...r.params].filter(([k]) => k.startsWith("eq.")).map(([k, v]) => [k.slice(3), v]);
  const field = el("select", { id: "filter-field" },
    ...meta.fields.map((f) => el("option", { value: f, text: indexed.has(f) ? f + " (indexed)" : f })));
  const value = el("input", { id: "filter-value", type: "text", spellcheck: "false", autocapitalize: "off" });
  const list = el("ul", { class: "filters", "aria-label": "Filters in force" }, ...fs.map(([f, v], i) => {
    const b = el("button", { type: "button", class: "quiet", "aria-label": `Remove filter ${f} = ${v}`, text: "×" });
    b.addEventListener("click", () => { location.hash = withFilters(r, fs.filter((_, j) => j !== i)); });
    return el("li", {}, el("code", { text: f }), " = ", el("code", { text: v === "" ? "(empty)" : v }),
      indexed.has(f) ? el("span", { class: "status", text: " indexed" }) : null, " ", b);
  }));
  form.replaceChildren(
    el("h2", { class: "sr", text: "Filter records" }),
    el("div", { class: "row" },
      el("label", { for: field.id, text: "Field" }), field,
      el("label", { for: value.id, text: "equals" }), value,
      el("button", { type: "submit", text: "Add filter" }),
      fs.length ? el("button", { type: "button", class: "quiet", id: "filter-clear", text: "Clear" }) : null),
    fs.length ? list : el("p", { class: "hint", text: "Indexed fields are found in constant time; others are scanned." }));
  form.onsubmit = (ev) => {
    ev.preventDefault();
    location.hash = withFilters(r, [...fs, [field.value, value.value]]);
  };
  const clear = $("filter-clear");
  if (clear) clear.addEventListener("click", () => { location.hash = withFilters(r, []); });
  form.hidden = false;
}

// scanPager replaces the pager on a scanned answer: how far the scan read
// and a button to continue it from its cursor (scanned N of M).
function scanPager(box, r, page, meta) {
  const { scan } = page;
  const next = scan.next_cursor;
  // A cursor is <generation>.<position>: the candidates read so far.
  const done = next ? Number(next.split(".")[1]) : null;
  const of = scan.index ? `the records with that ${scan.index}` : `${fmt.format(meta.count)} records`;
  const read = next ? `scanned ${fmt.format(done)} of ${of}` : `scan complete (${of})`;
  const found = page.returned > 0 ? `${fmt.format(page.returned)} match${page.returned === 1 ? "" : "es"} on this page` : "no match on this page";
  const params = [...r.params].filter(([k]) => k !== "cursor" && k !== "offset");
  const button = (label, text, cursor, disabled) => {
    const b = el("button", { type: "button", class: "quiet", "aria-label": label, disabled, text });
    b.addEventListener("click", () => {
      refocus = label;
      location.hash = routeHref(r.name, "records", cursor ? [...params, ["cursor", cursor]] : params);
    });
    return b;
  };
  box.replaceChildren(
    button("Scan from the start", "« From the start", null, !r.params.get("cursor")),
    button("Continue scan", "Continue ›", next, !next),
    el("span", { class: "range", role: "status", text: `${found} · ${read}` + (page.count !== null && page.count !== undefined ? ` · ${fmt.format(page.count)} in all` : "") }));
}

async function renderRecords(mine, r, focus) {
  const limit = intParam(r.params, "limit", DEFAULT_LIMIT, 1, 1000);
  const offset = intParam(r.params, "offset", 0, 0, Number.MAX_SAFE_INTEGER);
  const q = (m) => [["limit", limit], ...(offset ? [["offset", offset]] : []), ...filterParams(r.params),
    ...projection(r.name, m.fields)];
  const { meta, page } = await pageOf(r.name, "records", q);
  if (mine !== seq) return;
  shown = { seq: mine, meta, records: page };
  crumbs([["Datasets", "#/"], [r.name, routeHref(r.name)], ["Records"]]);
  $("rec-title").textContent = r.name;
  $("rec-meta").textContent = metaLine(meta);
  tabs("rec", r.name, meta, r.params);
  const again = document.activeElement && document.activeElement.id;
  drawColumns(r.name, meta.fields);
  drawFilters(r, meta);
  if (page.scan) scanPager($("rec-pager"), r, page, meta);
  else pager($("rec-pager"), r, page, filterParams(r.params).length ? "Matches" : "Rows");
  drawRecords(r.name);
  showView("view-records", focus);
  // A column or filter change draws its controls anew: the keyboard's
  // place among them stays.
  if (!focus && again && $(again) && document.activeElement !== $(again)) $(again).focus({ preventScroll: true });
}

function drawColumns(name, fields) {
  const hidden = hiddenColumns(name);
  const list = $("columns-list");
  const legend = list.querySelector("legend");
  list.replaceChildren(legend, ...fields.map((f, i) => {
    const box = el("input", { type: "checkbox", id: "col-" + i, checked: !hidden.has(f) });
    box.addEventListener("change", () => {
      const h = hiddenColumns(name);
      if (box.checked) h.delete(f); else h.add(f);
      setHiddenColumns(name, h);
    });
    return el("label", { for: box.id, title: f }, box, " " + f);
  }));
  $("columns-all").onclick = () => { setHiddenColumns(name, new Set()); drawColumns(name, fields); };
  $("columns-none").onclick = () => { setHiddenColumns(name, new Set(fields)); drawColumns(name, fields); };
  $("columns-summary").textContent = `Columns (${fields.length - fields.filter((f) => hidden.has(f)).length} of ${fields.length})`;
}

function drawRecords(name) {
  const { meta, records } = shown;
  if (!meta || !records) return;
  const hidden = hiddenColumns(name);
  const cols = meta.fields.filter((f) => !hidden.has(f));
  $("columns-summary").textContent = `Columns (${cols.length} of ${meta.fields.length})`;
  const table = $("rec-table");
  table.tHead.replaceChildren(el("tr", {},
    el("th", { scope: "col", class: "num", text: "#" }),
    ...cols.map((f) => el("th", { scope: "col", text: f }))));
  table.tBodies[0].replaceChildren(...records.data.map((rec, i) => el("tr", {},
    el("td", { class: "num" }, recordButton(name, meta.fields.filter((f) => f in rec), rec,
      (records.scan ? 0 : records.offset || 0) + i, filterParams(parseRoute().params).length > 0, cols.length < meta.fields.length)),
    ...cols.map((f) => {
      const v = rec[f] ?? "";
      return el("td", { title: v.length > 40 ? v.slice(0, 500) : null, text: v });
    }))));
}

// recordButton opens one record with its fields in full.
// On a filtered page n counts matches; with some columns hidden only the
// chosen ones were fetched (fields=), and the dialog says so.
function recordButton(name, fields, rec, n, filtered, projected) {
  const what = filtered ? "Match" : "Record";
  const b = el("button", { type: "button", class: "link", "aria-label": `${what} ${n}: ${projected ? "the chosen fields" : "every field"}`, text: fmt.format(n) });
  b.addEventListener("click", () => {
    $("record-title").textContent = `${name} · ${what.toLowerCase()} ${fmt.format(n)}` + (projected ? " (chosen columns; choose All for every field)" : "");
    $("record-fields").replaceChildren(...fields.flatMap((f) => [el("dt", { text: f }), el("dd", { text: rec[f] ?? "" })]));
    $("record").showModal();
  });
  return b;
}

// ---- rejects ------------------------------------------------------------

async function renderRejects(mine, r, focus) {
  const limit = intParam(r.params, "limit", DEFAULT_LIMIT, 1, 1000);
  const offset = intParam(r.params, "offset", 0, 0, Number.MAX_SAFE_INTEGER);
  const { meta, page } = await pageOf(r.name, "rejects", [["limit", limit], ["offset", offset]]);
  if (mine !== seq) return;
  crumbs([["Datasets", "#/"], [r.name, routeHref(r.name)], ["Rejects"]]);
  $("rej-title").textContent = r.name;
  $("rej-meta").textContent = metaLine(meta) + ` · ${fmt.format(page.count)} rejected`;
  tabs("rej", r.name, meta, r.params);
  pager($("rej-pager"), r, page, "Rejects");
  $("rej-table").tBodies[0].replaceChildren(...page.data.map((j) => el("tr", {},
    el("td", { class: "num", text: j.line ? fmt.format(j.line) : "" }),
    el("td", { class: "num", text: j.column ? String(j.column) : "" }),
    el("td", { text: j.reason }),
    el("td", { class: "wrap", text: j.error }),
    el("td", { class: "wrap" }, el("code", { text: j.raw || "" })))));
  $("rej-empty").hidden = page.count > 0;
  showView("view-rejects", focus);
}

// ---- start ----------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("key-form").addEventListener("submit", submitKey);
  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    showKey("");
  });
  window.addEventListener("hashchange", () => render());
  render();
});

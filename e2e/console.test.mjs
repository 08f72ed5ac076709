// Browser tests of the web console: Playwright (playwright-core) drives
// Debian's chromium against a real stack (embedded NATS, writer, api) that
// has ingested samples/products.csv, plus a dataset ingested with bad rows
// through bin/ingester. Run by `make test` (target test-browser), which
// builds bin/ first. Screenshots of each view go to e2e/output/ (E2E_OUT);
// E2E_UPDATE_DOCS=1 (make console-screenshots) also copies the README's
// to docs/console/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, mkdir, writeFile, copyFile, rm } from "node:fs/promises";
import { createWriteStream, existsSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { chromium } from "playwright-core";

const ROOT = path.resolve(import.meta.dirname, "..");
const BIN = path.join(ROOT, "bin");
const OUT = process.env.E2E_OUT || path.join(import.meta.dirname, "output");
const DOCS = path.join(ROOT, "docs", "console");
const README_SHOTS = new Set(["datasets", "records", "rejects", "wrong-key", "phone-records", "syncing", "record", "records-filter-scan"]);
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
// The flags this machine's closed network needs (no background requests).
const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"];

// A CSV with two bad rows (lines 3 and 4) among three good ones.
const BAD_CSV = 'sku,title,price\nA-1,Mug,12\nA-2,Cup\nA-3,Plate,9,extra\nA-4,Bowl,7\nA-5,"Tea ""pot""",30\n';

const key = randomBytes(18).toString("base64url");
// Small, so that a filter on a field without an index takes several scans
// of the sample (300 records).
const SCAN_LIMIT = 100;
// NATS with authentication, as deployed: bin/ingester logs in as "ingester".
const natsPassword = randomBytes(18).toString("base64url");
let base, natsURL, stack, browser, work, datasets;

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

function ingesterEnv() {
  return { PATH: process.env.PATH, HOME: work, NATS_URL: natsURL, NATS_USER: "ingester", NATS_PASSWORD: natsPassword };
}

async function apiGet(p, k = key) {
  const res = await fetch(base + p, { headers: k ? { "X-API-Key": k } : {} });
  return { status: res.status, body: await res.json() };
}

async function until(what, fn, ms = 60000) {
  const end = Date.now() + ms;
  for (;;) {
    try { const v = await fn(); if (v) return v; } catch { /* not yet */ }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; see ${OUT}/stack.log`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

before(async () => {
  for (const b of ["stack", "ingester"]) {
    assert.ok(existsSync(path.join(BIN, b)), `bin/${b} is missing: run make build (make test-browser does)`);
  }
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium (.ci/run does), or set CHROMIUM`);
  await rm(OUT, { recursive: true, force: true });
  await mkdir(OUT, { recursive: true });
  work = await mkdtemp(path.join(tmpdir(), "rowpipe-e2e-"));
  const [apiPort, natsPort] = [await freePort(), await freePort()];
  base = `http://127.0.0.1:${apiPort}`;
  natsURL = `nats://127.0.0.1:${natsPort}`;

  const log = createWriteStream(path.join(OUT, "stack.log"));
  stack = spawn(path.join(BIN, "stack"), ["--ingest", path.join(ROOT, "samples", "products.csv"), "--index", "Handle,Variant SKU"], {
    cwd: work,
    env: { PATH: process.env.PATH, HOME: work, API_KEYS: key, DATA_DIR: path.join(work, "data"),
      API_ADDR: `127.0.0.1:${apiPort}`, SCAN_LIMIT: String(SCAN_LIMIT), NATS_LISTEN: `127.0.0.1:${natsPort}`, NATS_INGESTER_PASSWORD: natsPassword },
    stdio: ["ignore", "pipe", "pipe"],
  });
  stack.stdout.pipe(log);
  stack.stderr.pipe(log);
  await until("the sample to be served", async () => (await apiGet("/datasets/products")).status === 200);

  const csv = path.join(work, "bad.csv");
  await writeFile(csv, BAD_CSV);
  const { stdout } = await promisify(execFile)(path.join(BIN, "ingester"), ["--dataset", "badrows", "--wait", csv],
    { env: ingesterEnv() });
  await writeFile(path.join(OUT, "ingester.log"), stdout);
  datasets = Object.fromEntries((await apiGet("/datasets")).body.datasets.map((d) => [d.dataset, d]));
  assert.equal(datasets.badrows?.rejected, 2, "the bad CSV's two bad rows are counted");

  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
  if (stack && stack.exitCode === null) {
    const exited = new Promise((r) => stack.once("exit", r));
    stack.kill("SIGTERM");
    await exited;
  }
  if (work) await rm(work, { recursive: true, force: true });
});

// open starts a fresh tab (its own sessionStorage) that records every
// console message and page error; done() asserts there were none but those
// a test expects.
async function open(t, viewport = { width: 1200, height: 640 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const problems = [];
  page.on("console", (m) => { if (m.type() === "error" || m.type() === "warning") problems.push(`${m.type()}: ${m.text()}`); });
  page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
  page.on("requestfailed", (r) => problems.push(`requestfailed: ${r.url()} ${r.failure()?.errorText}`));
  // Every request the page makes: the key must never be in one's URL.
  page.on("request", (r) => { if (r.url().includes(key)) problems.push(`the key is in a URL: ${r.url()}`); });
  t.after(() => context.close());
  return {
    page,
    async done(expected = []) {
      const left = problems.filter((p) => !expected.some((re) => re.test(p)));
      assert.deepEqual(left, [], "console errors, page errors or failed requests");
    },
  };
}

async function signIn(page, k = key) {
  await page.goto(base + "/");
  await page.getByLabel("API key").fill(k);
  await page.getByLabel("API key").press("Enter");
}

async function shot(page, name) {
  const file = path.join(OUT, name + ".png");
  await page.screenshot({ path: file });
  if (process.env.E2E_UPDATE_DOCS === "1" && README_SHOTS.has(name)) {
    await mkdir(DOCS, { recursive: true });
    await copyFile(file, path.join(DOCS, name + ".png"));
  }
}

test("the page is served with a strict policy", async () => {
  const res = await fetch(base + "/");
  const csp = res.headers.get("content-security-policy") || "";
  assert.match(csp, /script-src 'self'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.equal(res.headers.get("x-content-type-options"), "nosniff");
  assert.equal(res.headers.get("referrer-policy"), "no-referrer");
  assert.equal(res.headers.get("x-frame-options"), "DENY");
});

test("enter a key, see the datasets, refreshed in place", async (t) => {
  const { page, done } = await open(t);
  await page.goto(base + "/");
  await page.getByRole("heading", { name: "Open the console" }).waitFor();
  await shot(page, "key");
  await signIn(page);

  const table = page.locator("#ds-table");
  const row = (name) => table.locator("tbody tr", { has: page.getByRole("link", { name, exact: true }) });
  await row("products").waitFor();
  for (const d of Object.values(datasets)) {
    const cells = await row(d.dataset).locator("td").allInnerTexts();
    assert.equal(cells[1], d.count.toLocaleString("en-US"), `${d.dataset}: rows`);
    assert.equal(cells[2], String(d.generation), `${d.dataset}: generation`);
    assert.match(cells[3], /complete/);
    assert.equal(cells[6], String(d.rejected), `${d.dataset}: rejected`);
  }
  assert.equal(await page.evaluate(() => sessionStorage.getItem("rowpipe.apiKey")), key);
  assert.equal(await page.evaluate(() => localStorage.length), 0, "nothing in localStorage");
  assert.ok(!page.url().includes(key));
  await shot(page, "datasets");

  // Refreshed without a reload: another GET /datasets with the key in its header.
  const navigations = [];
  page.on("framenavigated", (f) => navigations.push(f.url()));
  const req = await page.waitForRequest((r) => r.url().startsWith(base + "/datasets?"), { timeout: 15000 });
  assert.equal(req.headers()["x-api-key"], key);
  assert.deepEqual(navigations, [], "the page did not reload");
  await done();
});

test("records: page to the last page, jump to an offset, choose columns", async (t) => {
  const { page, done } = await open(t);
  const count = datasets.products.count;
  await signIn(page);
  await page.getByRole("link", { name: "products", exact: true }).click();
  const range = page.locator("#rec-pager .range");
  await assert.doesNotReject(range.filter({ hasText: `Rows 1–25 of ${count}` }).waitFor());
  assert.equal(await page.locator("#rec-table tbody tr").count(), 25);
  await shot(page, "records");

  // The keyboard alone pages: Tab reaches the pager's buttons, Enter presses them.
  await page.getByRole("button", { name: "Last page" }).focus();
  await page.keyboard.press("Shift+Tab");
  assert.equal(await page.evaluate(() => document.activeElement.getAttribute("aria-label")), "Next page");
  await page.keyboard.press("Enter");
  await range.filter({ hasText: `Rows 26–50 of ${count}` }).waitFor();
  await page.keyboard.press("Enter"); // the focus stayed on Next
  await range.filter({ hasText: `Rows 51–75 of ${count}` }).waitFor();

  await page.getByRole("button", { name: "Last page" }).click();
  const last = Math.floor((count - 1) / 25) * 25;
  await range.filter({ hasText: `Rows ${last + 1}–${count} of ${count}` }).waitFor();
  assert.equal(await page.locator("#rec-table tbody tr").count(), count - last);
  assert.ok(await page.getByRole("button", { name: "Next page" }).isDisabled());
  // The last record on screen is the last record of the api.
  const api = (await apiGet(`/datasets/products/records?offset=${count - 1}&limit=1`)).body.data[0];
  const lastRow = page.locator("#rec-table tbody tr").last();
  assert.equal(await lastRow.locator("td").nth(1).innerText(), api.Handle);
  await shot(page, "records-last");

  // A jump to any offset, with the keyboard.
  const jump = page.getByRole("spinbutton", { name: "Offset" });
  await jump.fill("100");
  await jump.press("Enter");
  await range.filter({ hasText: `Rows 101–125 of ${count}` }).waitFor();
  assert.equal(await page.locator("#rec-table tbody tr td").first().innerText(), "100");

  // One record in full: every field, long HTML included; Escape closes it.
  const rec = (await apiGet("/datasets/products/records?offset=100&limit=1")).body.data[0];
  assert.ok(rec["Body (HTML)"].length > 20, "record 100 of the sample has a body to show");
  await page.getByRole("button", { name: "Record 100: every field" }).click();
  const dialog = page.getByRole("dialog");
  await dialog.waitFor();
  const dd = dialog.locator("dd");
  assert.equal(await dd.count(), Object.keys(rec).length);
  assert.equal(await dialog.locator("dt", { hasText: /^Body \(HTML\)$/ }).locator("xpath=following-sibling::dd[1]").textContent(), rec["Body (HTML)"]);
  await shot(page, "record");
  await page.keyboard.press("Escape");
  await dialog.waitFor({ state: "hidden" });

  // The column chooser: none, then Title only, fetched alone (fields=).
  await page.getByText(/^Columns \(/).click();
  await page.getByRole("button", { name: "None" }).click();
  const fetched = page.waitForRequest((r) => r.url().includes("/records?") && r.url().includes("fields=Title"));
  await page.getByRole("checkbox", { name: "Title", exact: true }).check();
  assert.match((await fetched).url(), /[?&]fields=Title(&|$)/);
  await until("the Title column alone", async () =>
    JSON.stringify(await page.locator("#rec-table thead th").allInnerTexts()) === JSON.stringify(["#", "Title"]), 10000);
  assert.equal(await page.evaluate(() => document.activeElement.id), await page.getByRole("checkbox", { name: "Title", exact: true }).getAttribute("id"),
    "the focus stays on the checkbox");
  await shot(page, "records-columns");
  await page.getByRole("button", { name: "All" }).click();
  await done();
});

test("filters: by an indexed field, by one without an index (scanned, continued), an unknown field's error", async (t) => {
  const { page, done } = await open(t);
  // The answer to check against: every record of the sample, filtered here.
  const all = (await apiGet("/datasets/products/records?limit=1000")).body.data;
  assert.equal(all.length, datasets.products.count);
  const handle = all.find((r) => all.filter((x) => x.Handle === r.Handle).length > 1).Handle;
  const vendor = all[0].Vendor;
  const byHandle = all.filter((r) => r.Handle === handle);
  const byVendor = all.filter((r) => r.Vendor === vendor);
  assert.ok(byVendor.length > 1 && byVendor.length < all.length, `the sample has a few rows of vendor ${vendor}`);
  const cells = async (col) => {
    const i = (await page.locator("#rec-table thead th").allInnerTexts()).indexOf(col);
    return page.locator(`#rec-table tbody tr td:nth-child(${i + 1})`).allInnerTexts();
  };
  const range = page.locator("#rec-pager .range");

  await signIn(page);
  await page.getByRole("link", { name: "products", exact: true }).click();
  await range.filter({ hasText: "Rows 1–25" }).waitFor();
  const field = page.getByLabel("Field", { exact: true });
  assert.equal(await field.locator("option[value='Handle']").innerText(), "Handle (indexed)");
  assert.equal(await field.locator("option[value='Variant SKU']").innerText(), "Variant SKU (indexed)");
  assert.equal(await field.locator("option[value='Vendor']").innerText(), "Vendor");

  // An indexed field: the exact matches, counted. The keyboard alone adds it.
  await field.selectOption("Handle");
  await page.getByLabel("equals").fill(handle);
  await page.getByLabel("equals").press("Enter");
  await range.filter({ hasText: `Matches 1–${byHandle.length} of ${byHandle.length}` }).waitFor();
  assert.deepEqual(await cells("Handle"), byHandle.map((r) => r.Handle));
  assert.deepEqual(await cells("Variant SKU"), byHandle.map((r) => r["Variant SKU"]));
  await shot(page, "records-filter-indexed");

  // A name with a space, percent-encoded: eq.Variant%20SKU.
  const sku = byHandle[0]["Variant SKU"];
  const skuReq = page.waitForRequest((r) => r.url().includes("/records?") && r.url().includes("eq.Variant%20SKU="));
  await field.selectOption("Variant SKU");
  await page.getByLabel("equals").fill(sku);
  await page.getByRole("button", { name: "Add filter" }).click();
  assert.ok((await skuReq).url().includes(`eq.Variant%20SKU=${encodeURIComponent(sku)}`));
  // Two indexed fields: the api reads the smaller set of matches and tests
  // the other filter on each, a scan bounded by that set.
  await range.filter({ hasText: /^1 match on this page · scan complete/ }).waitFor();
  assert.deepEqual(await cells("Variant SKU"), [sku]);
  await page.getByRole("button", { name: `Remove filter Handle = ${handle}` }).click();
  await page.getByRole("button", { name: `Remove filter Variant SKU = ${sku}` }).click();
  await range.filter({ hasText: "Rows 1–25" }).waitFor();

  // A field without an index: scanned SCAN_LIMIT records at a time, each
  // page saying how far it read; Continue until the scan is complete.
  await field.selectOption("Vendor");
  await page.getByLabel("equals").fill(vendor);
  await page.getByLabel("equals").press("Enter");
  await range.filter({ hasText: new RegExp(`scanned \\d+ of ${datasets.products.count} records`) }).waitFor();
  await shot(page, "records-filter-scan");
  const seen = [];
  for (let n = 1; ; n++) {
    const text = await range.innerText();
    const rows = await page.locator("#rec-table tbody tr").count();
    seen.push(...(rows ? await cells("Handle") : []));
    const next = page.getByRole("button", { name: "Continue scan" });
    if (await next.isDisabled()) {
      assert.match(text, /scan complete/);
      break;
    }
    assert.ok(n < 20, "the scan ends");
    await next.click();
    await range.filter({ hasNotText: text }).waitFor();
  }
  assert.deepEqual(seen, byVendor.map((r) => r.Handle), "the scanned pages hold every match, in order");

  // An unknown field (a hand-written route): the api's own 400.
  await page.goto(base + "/#/datasets/products?eq.No%20such%20field=1");
  const alert = page.getByRole("alert").filter({ hasText: "No such field" });
  await alert.waitFor();
  const api = await apiGet("/datasets/products/records?eq.No%20such%20field=1");
  assert.equal(api.status, 400);
  assert.equal(await alert.innerText(), api.body.error.message);
  await done([/^error: Failed to load resource: the server responded with a status of 400/]);
});

test("the rejects of a dataset ingested with bad rows, with their lines", async (t) => {
  const { page, done } = await open(t);
  await signIn(page);
  await page.getByRole("link", { name: "2 rejected rows of badrows" }).click();
  const rows = page.locator("#rej-table tbody tr");
  await rows.first().waitFor();
  const want = (await apiGet("/datasets/badrows/rejects")).body.data;
  assert.equal(await rows.count(), want.length);
  for (const [i, r] of want.entries()) {
    const cells = await rows.nth(i).locator("td").allInnerTexts();
    assert.equal(cells[0], String(r.line));
    assert.equal(cells[2], r.reason);
    assert.equal(cells[3], r.error);
    assert.ok(cells[3].startsWith(`bad.csv:${r.line}: `), `named by its base name: ${cells[3]}`);
  }
  assert.deepEqual(want.map((r) => r.line), [3, 4]);
  await shot(page, "rejects");
  await done();
});

test("a wrong key shows the api's own message and is not kept", async (t) => {
  const { page, done } = await open(t);
  const apiSays = (await apiGet("/datasets", "not-the-key")).body.error.message;
  await signIn(page, "not-the-key");
  const err = page.locator("#key-error");
  await err.filter({ hasText: apiSays }).waitFor();
  assert.equal(await err.innerText(), apiSays);
  assert.equal(await page.evaluate(() => sessionStorage.getItem("rowpipe.apiKey")), null);
  await shot(page, "wrong-key");
  // The 401 itself is what the browser reports; nothing else may be.
  await done([/^error: Failed to load resource: the server responded with a status of 401/]);
});

test("readable on a phone", async (t) => {
  const { page, done } = await open(t, { width: 390, height: 760 });
  await signIn(page);
  await page.getByRole("link", { name: "products", exact: true }).waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow}px wider than the phone`);
  await shot(page, "phone-datasets");
  await page.getByRole("link", { name: "products", exact: true }).click();
  await page.locator("#rec-table tbody tr").first().waitFor();
  const overflow2 = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow2 <= 0, `the records page is ${overflow2}px wider than the phone (the table scrolls in its box)`);
  await shot(page, "phone-records");
  await done();
});

test("a sync in progress shows its progress; its commit shows without a reload", async (t) => {
  const ingester = path.join(BIN, "ingester");
  const env = ingesterEnv();
  const first = path.join(work, "live.csv");
  await writeFile(first, "id,name\n1,one\n");
  await promisify(execFile)(ingester, ["--dataset", "live", "--wait", first], { env });

  const { page, done } = await open(t);
  await signIn(page);
  const row = page.locator("#ds-table tbody tr", { has: page.getByRole("link", { name: "live", exact: true }) });
  await row.waitFor();
  const navigations = [];
  page.on("framenavigated", (f) => navigations.push(f.url()));

  // A second sync from a pipe that stays open: the writer has begun the
  // generation and written the first rows, and the end has not come.
  const sync = spawn(ingester, ["--dataset", "live", "--wait", "-"], { env, stdio: ["pipe", "pipe", "pipe"] });
  const exited = new Promise((resolve) => sync.once("exit", resolve));
  t.after(() => { if (sync.exitCode === null) sync.kill("SIGTERM"); });
  sync.stdin.write("id,name\n1,one\n2,two\n");
  const progress = row.locator(".syncing");
  await progress.filter({ hasText: /syncing generation \d+: 2 rows so far/ }).waitFor({ timeout: 30000 });
  await shot(page, "syncing");

  sync.stdin.end("3,three\n");
  assert.equal(await exited, 0, "the piped sync commits");
  await row.locator("td").nth(1).filter({ hasText: /^3$/ }).waitFor({ timeout: 15000 });
  assert.equal(await progress.count(), 0, "no sync in progress once it committed");
  assert.deepEqual(navigations, [], "refreshed in place, not reloaded");
  await done();
});

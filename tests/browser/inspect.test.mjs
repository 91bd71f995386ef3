// The inspector's page in headless Chromium (Debian's `chromium`), driven by playwright-core.
//
// Run by cli/tests/inspect_browser.rs, which starts a private bus with the demo pipeline
// (hub, monitor, storage, processor, an ingester that pauses a minute after its first file)
// and `interstate inspect`, and passes:
//   INSPECT_URL       the page's address
//   EXPECT_MACHINES   the machine ids the registry must list, comma-separated
//   KILL_ID, KILL_PID a machine and its process, which this test kills (SIGKILL)
//   ARTIFACT_DIR      where the screenshots go (under target/)
//   CHROMIUM          the browser (default /usr/bin/chromium)
// Checks: every machine is listed; processor's active state is lit and changes when an
// event is sent from the page's form; an xstate.* name is refused with a clear error; the
// event log shows the event and its payload; a killed process leaves the registry.
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run this through cli/tests/inspect_browser.rs)`);
  return v;
};
const url = env("INSPECT_URL");
const expected = env("EXPECT_MACHINES").split(",");
const killId = env("KILL_ID");
const killPid = Number(env("KILL_PID"));
const artifacts = env("ARTIFACT_DIR");
fs.mkdirSync(artifacts, { recursive: true });

const STEP = 20000; // ms: a step that takes milliseconds, on a loaded machine
const profile = fs.mkdtempSync(path.join(os.tmpdir(), "interstate-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1500, height: 900 },
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const problems = [];
let page;
try {
  page = await context.newPage();
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  // Failed requests are checked below, by response: the refused send is expected.
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(`console error: ${m.text()}`);
  });
  page.on("response", (r) => {
    if (r.status() >= 400 && !(r.url().includes("/api/send") && r.status() === 400)) problems.push(`HTTP ${r.status()}: ${r.url()}`);
  });
  // Nothing may come from anywhere but the inspector: every asset is embedded.
  const origin = new URL(url).origin;
  page.on("request", (r) => {
    if (!r.url().startsWith(origin) && !r.url().startsWith("data:")) problems.push(`request elsewhere: ${r.url()}`);
  });
  await page.goto(url);

  // Every machine is listed.
  for (const id of expected) {
    await page.locator(`#machines tr[data-machine="${id}"]`).waitFor({ timeout: STEP });
  }
  console.log(`listed: ${expected.join(", ")}`);

  // processor's active state is lit.
  const proc = page.locator('.card[data-machine="processor"]');
  await proc.locator('.state.active[data-key="ready"]').waitFor({ timeout: STEP });
  if (await proc.locator('.state.active[data-key="stopped"]').count() !== 0) throw new Error("stopped lit before STOP");
  // Wait for a few log lines (the ingester's first file) for a fuller picture.
  await page.locator("#log-list li").first().waitFor({ timeout: STEP });
  await page.screenshot({ path: path.join(artifacts, "inspector-overview.png"), fullPage: true });

  // A reserved name is refused with a clear error.
  await page.selectOption("#send-machine", "processor");
  await page.fill("#send-event", "xstate.machine.down");
  await page.click("#send-button");
  await page.locator("#send-result.error", { hasText: "reserved xstate. namespace" }).waitFor({ timeout: STEP });
  console.log("xstate.* refused");

  // STOP from the form: processor moves to its final state, lit.
  await page.fill("#send-event", "STOP");
  await page.fill("#send-data", '{"why": "browser test"}');
  await page.click("#send-button");
  await page.locator("#send-result.ok", { hasText: "Sent STOP to processor" }).waitFor({ timeout: STEP });
  await proc.locator('.state.active[data-key="stopped"]').waitFor({ timeout: STEP });
  if (await proc.locator('.state.active[data-key="ready"]').count() !== 0) throw new Error("ready still lit after STOP");
  console.log("processor: ready -> stopped, lit");

  // The event log has the STOP; a click shows its payload.
  const stop = page.locator('#log-list li[data-event="STOP"]', { hasText: "→ processor" }).first();
  await stop.waitFor({ timeout: STEP });
  await stop.click();
  await page.locator("#payload", { hasText: "browser test" }).waitFor({ timeout: STEP });
  // The machine filter hides the others.
  await page.fill("#filter-machine", "storage");
  await page.locator('#log-list li[data-event="STOP"]', { hasText: "→ processor" }).waitFor({ state: "detached", timeout: STEP });
  await page.fill("#filter-machine", "");
  console.log("log: STOP with its payload, filter works");

  // A killed process leaves the registry.
  process.kill(killPid, "SIGKILL");
  await page.locator(`#machines tr[data-machine="${killId}"]`).waitFor({ state: "detached", timeout: STEP });
  console.log(`${killId} killed: gone from the registry`);
  await page.screenshot({ path: path.join(artifacts, "inspector-final.png"), fullPage: true });

  if (problems.length) throw new Error(problems.join("\n"));
  console.log("browser test passed");
} catch (e) {
  if (page) await page.screenshot({ path: path.join(artifacts, "inspector-failure.png"), fullPage: true }).catch(() => {});
  console.error(problems.join("\n"));
  throw e;
} finally {
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
}

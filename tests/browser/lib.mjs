// Shared by the report tests and scripts: Debian's Chromium driven by playwright-core, a
// local server for one file, and the plan fixtures made by the repository's own binaries.
import { spawnSync } from "node:child_process";
import { createServer } from "node:http";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const bin = (name, variable) => process.env[variable] || join(root, "target/debug", name);
export const whittle = bin("whittle", "WHITTLE_BINARY");
export const planFixture = bin("plan-fixture", "PLAN_FIXTURE_BINARY");
// Generated once per build of plan-fixture: the 2,000-role plan takes a while to make.
const fixtures = join(root, "target/report-fixtures");

// Without the background-networking flags Chromium tries Google's hosts at start, which a
// closed network refuses; a fresh profile directory per launch keeps runs independent.
const FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

export async function launch() {
  const profile = mkdtempSync(join(tmpdir(), "whittle-report-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: FLAGS,
    viewport: { width: 1400, height: 900 },
  });
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

function run(command, args) {
  const result = spawnSync(command, args, { encoding: "utf8", maxBuffer: 1 << 30 });
  if (result.error) throw new Error(`${command}: ${result.error.message} (build first: cargo build --workspace --bins --tests)`);
  // `whittle plan render` exits 2 for a plan with changes.
  if (result.status !== 0 && result.status !== 2) {
    throw new Error(`${command} ${args.join(" ")} exited ${result.status}: ${result.stderr}`);
  }
  return result;
}

/// The HTML report of a fixture plan (`plan-fixture` with `args`), rendered by `whittle plan
/// render`; remade when the fixture binary is newer than it. With `direct`, plan-fixture
/// renders the report itself (`--html`, the same renderer): a 2,000-role plan's JSON is
/// 1.4 GB, which would take over a minute to write and read back.
export function report(name, args, { direct = false } = {}) {
  mkdirSync(fixtures, { recursive: true });
  const json = join(fixtures, `${name}.json`);
  const html = join(fixtures, `${name}.html`);
  const stale = (file, than) => !existsSync(file) || statSync(file).mtimeMs < statSync(than).mtimeMs;
  if (direct) {
    if (stale(html, planFixture)) run(planFixture, [...args, "--html", "--out", html]);
    return html;
  }
  if (stale(json, planFixture)) run(planFixture, [...args, "--out", json]);
  if (stale(html, json) || stale(html, whittle)) {
    run(whittle, ["plan", "render", json, "--format", "html", "--output-dir", fixtures]);
    rmSync(html, { force: true });
    // --output-dir writes plan.html; each fixture keeps its own name.
    spawnSync("mv", [join(fixtures, "plan.html"), html]);
  }
  return html;
}

/// Serves one file on loopback; every other path is a 404.
export async function serve(file) {
  const body = readFileSync(file);
  const server = createServer((request, response) => {
    if (request.url === "/report.html") {
      response.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      response.end(body);
    } else {
      response.writeHead(404);
      response.end();
    }
  });
  await new Promise((done) => server.listen(0, "127.0.0.1", done));
  return {
    url: `http://127.0.0.1:${server.address().port}/report.html`,
    // The page's keep-alive connection would hold close() until it times out.
    close: () => new Promise((done) => {
      server.close(done);
      server.closeAllConnections();
    }),
  };
}

/// Opens the report in a new page, recording console errors, page errors and every request
/// but the page's own (each aborted). Returns the page, what was recorded and how long the
/// page took from navigation to its first table row.
export async function open(context, url) {
  const page = await context.newPage();
  const seen = { errors: [], requests: [] };
  page.on("console", (message) => {
    if (message.type() === "error") seen.errors.push(`console: ${message.text()}`);
  });
  page.on("pageerror", (error) => seen.errors.push(`page: ${error.message}`));
  // Every request is seen (even one the route does not catch), and every one but the
  // page's own is refused.
  page.on("request", (request) => {
    if (request.url() !== url) seen.requests.push(request.url());
  });
  await page.route("**/*", (route) => (route.request().url() === url ? route.continue() : route.abort()));
  const started = performance.now();
  await page.goto(url, { waitUntil: "load" });
  await page.locator("#roles tbody tr.role").first().waitFor();
  const openMs = performance.now() - started;
  return { page, seen, openMs };
}

// The HTML plan report (`whittle plan --format html`) in Debian's headless Chromium: it
// renders without errors, sorts, filters, expands a role's evidence and diff, and asks the
// network for nothing. Run by tests/run.sh after the cargo build (it needs the whittle and
// plan-fixture binaries); `bash tests/browser/setup.sh` installs Chromium and playwright-core.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { launch, open, report, serve } from "./lib.mjs";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

// The summary rows in the page's order, as the cells show them.
async function rows(page) {
  return page.locator("#roles tbody tr.role").evaluateAll((trs) => trs.map((tr) => {
    const cells = [...tr.children].map((td) => td.textContent);
    return {
      name: cells[0], account: cells[1], status: cells[2], granted: Number(cells[3]),
      used: Number(cells[4]), kept: Number(cells[5]), removed: Number(cells[6]),
      risky: Number(cells[7]), flags: cells[9],
    };
  }));
}
const shown = (page) => page.locator("#shown").textContent();

describe("the demo-like plan's report", () => {
  let server;
  let page;
  let seen;
  before(async () => {
    server = await serve(report("demo", ["--demo"]));
    ({ page, seen } = await open(browser.context, server.url));
  });
  after(async () => {
    await server?.close();
  });

  test("renders every role with no console or page errors", async () => {
    const all = await rows(page);
    assert.deepEqual(all.map((r) => r.name).sort(),
      ["app-batch", "app-orders", "app-reports", "ci-deployer", "metrics-reader", "orders-service"]);
    assert.equal(await shown(page), "6 of 6 role(s)");
    const orders = all.find((r) => r.name === "app-orders");
    assert.equal(orders.used, 6);
    assert.equal(orders.granted, orders.kept + orders.removed);
    assert.deepEqual(seen.errors, []);
  });

  test("sorting by a column orders the rows, and a second click reverses them", async () => {
    const header = page.locator("#roles th", { hasText: /^removed$/ });
    await header.click();
    const down = (await rows(page)).map((r) => r.removed);
    assert.deepEqual(down, [...down].sort((a, b) => b - a));
    assert.equal(await header.getAttribute("aria-sort"), "descending");
    await header.click();
    const up = (await rows(page)).map((r) => r.removed);
    assert.deepEqual(up, [...down].reverse());
    await page.locator("#roles th", { hasText: /^role$/ }).click();
    const names = (await rows(page)).map((r) => r.name);
    assert.deepEqual(names, [...names].sort());
  });

  test("filters by account, risk and service narrow the rows", async () => {
    await page.selectOption("#account", "210987654321");
    let now = await rows(page);
    assert.deepEqual(now.map((r) => r.name).sort(), ["ci-deployer", "metrics-reader"]);
    await page.selectOption("#risk", "risky");
    now = await rows(page);
    assert.deepEqual(now.map((r) => r.name), ["ci-deployer"]);
    assert.ok(now.every((r) => r.risky > 0));
    await page.selectOption("#account", "");
    await page.selectOption("#risk", "");
    await page.selectOption("#service", { label: "cloudwatch" });
    assert.deepEqual((await rows(page)).map((r) => r.name), ["metrics-reader"]);
    await page.selectOption("#service", { label: "s3" });
    assert.deepEqual((await rows(page)).map((r) => r.name).sort(),
      ["app-batch", "app-orders", "app-reports", "orders-service"]);
    await page.selectOption("#service", "");
    await page.selectOption("#risk", "not-shrunk");
    assert.deepEqual((await rows(page)).map((r) => r.name), ["app-batch"]);
    await page.selectOption("#risk", "split");
    assert.deepEqual((await rows(page)).map((r) => r.name), ["orders-service"]);
    await page.selectOption("#risk", "");
    assert.equal(await shown(page), "6 of 6 role(s)");
  });

  test("expanding a role shows its evidence and policy diff", async () => {
    const row = page.locator("#roles tbody tr.role", { hasText: "app-orders" });
    await row.locator("button.expand").click();
    const detail = page.locator("#roles tbody tr.detail");
    await detail.waitFor();
    const kept = detail.locator("table.kept tbody tr", { hasText: "s3:GetObject" });
    assert.match(await kept.textContent(), /used.*2026-11-2\d.*5f0c0000-/);
    assert.match(await detail.locator("table.kept").textContent(), /orders-staging\/incoming\/1\.json/);
    assert.match(await detail.locator("table.removed").textContent(), /not seen in 90 days of trail/);
    assert.match(await detail.locator("ul.risks").textContent(), /replaces the wildcard `s3:\*`/);
    const deleted = await detail.locator("pre.diff .del").allTextContents();
    const inserted = await detail.locator("pre.diff .ins").allTextContents();
    assert.ok(deleted.some((l) => l.includes('"s3:*"')), deleted.join("\n"));
    assert.ok(inserted.some((l) => l.includes('"s3:GetObject"')), inserted.join("\n"));
    // A second click folds it away again.
    await row.locator("button.expand").click();
    assert.equal(await detail.isHidden(), true);
    assert.deepEqual(seen.errors, []);
  });

  test("a shared role shows each function's new role, what it keeps and loses, and the split's IaC", async () => {
    const row = page.locator("#roles tbody tr.role", { hasText: "orders-service" });
    assert.match(await row.locator(".split-badge").textContent(), /^split ×3$/);
    await row.locator("button.expand").click();
    const detail = page.locator("#roles tbody tr.detail", { has: page.locator("section.split") });
    await detail.waitFor();
    const section = detail.locator("section.split");
    assert.match(await section.locator("h3").textContent(), /One role per function \(3 functions share this role\)/);
    const functions = await section.locator("table.split-functions tbody tr").evaluateAll((trs) =>
      trs.map((tr) => [...tr.children].map((td) => td.textContent)));
    assert.deepEqual(functions.map((f) => [f[0], f[1]]), [
      ["orders-api", "orders-service-orders-api"],
      ["orders-report", "orders-service-orders-report"],
      ["orders-worker", "orders-service-orders-worker"],
    ]);
    for (const [, , keeps, loses] of functions) {
      // What the function used, with the reason, and what the shared role keeps that it
      // does not: the instance's sqs:ReceiveMessage at least.
      assert.match(keeps, /^(\w+:\w+ \(used\)(, )?)+$/);
      assert.match(loses, /^\d+: .*sqs:ReceiveMessage/);
    }
    assert.match(await section.locator("p.stays").textContent(), /sqs:ReceiveMessage/);
    assert.match(await section.locator("ul.split-notes").textContent(),
      /callers that are not functions \(1 EC2 instance session \(i-0123456789abcdef0\)\)/);
    // The IaC tabs: Terraform first, then each on a click.
    const tab = (label) => section.locator(".tabs button", { hasText: label });
    const iac = section.locator("pre.iac");
    assert.equal(await tab("Terraform").getAttribute("aria-selected"), "true");
    assert.match(await iac.textContent(), /resource "aws_iam_role" "orders_service_orders_api"/);
    await tab("CloudFormation").click();
    assert.equal(await tab("Terraform").getAttribute("aria-selected"), "false");
    assert.match(await iac.textContent(), /OrdersServiceOrdersWorkerRole:\n {4}Type: AWS::IAM::Role/);
    await tab("serverless.yml").click();
    assert.match(await iac.textContent(), /orders-report:\n {4}iamRoleStatementsName: orders-service-orders-report/);
    // The shared role's own evidence is still there.
    assert.ok((await detail.locator("table.kept tbody tr").count()) > 0);
    await row.locator("button.expand").click();
    assert.deepEqual(seen.errors, []);
  });

  test("makes no network request", () => {
    assert.deepEqual(seen.requests, []);
  });
});

describe("a role that 120 functions share", () => {
  let server;
  let page;
  let seen;
  before(async () => {
    server = await serve(report("shared-120", ["--shared-functions", "120"]));
    ({ page, seen } = await open(browser.context, server.url));
  });
  after(async () => {
    await server?.close();
  });

  test("lists every function with its own role, and no two roles alike", async () => {
    const row = page.locator("#roles tbody tr.role", { hasText: "orders-service" });
    assert.match(await row.locator(".split-badge").textContent(), /^split ×120$/);
    await row.locator("button.expand").click();
    const table = page.locator("section.split table.split-functions");
    await table.waitFor();
    const functions = await table.locator("tbody tr").evaluateAll((trs) =>
      trs.map((tr) => [tr.children[0].textContent, tr.children[1].textContent]));
    assert.equal(functions.length, 120);
    assert.deepEqual(functions[7], ["orders-handler-007", "orders-service-orders-handler-007"]);
    assert.equal(new Set(functions.map((f) => f[1])).size, 120);
    const serverless = page.locator("section.split .tabs button", { hasText: "serverless.yml" });
    await serverless.click();
    const iac = await page.locator("section.split pre.iac").textContent();
    assert.equal(iac.match(/iamRoleStatementsName:/g).length, 120);
    assert.deepEqual(seen.errors, []);
    assert.deepEqual(seen.requests, []);
  });
});

describe("a 2,000-role plan's report", () => {
  let server;
  let page;
  let seen;
  before(async () => {
    server = await serve(report("plan-2000", ["--roles", "2000"], { direct: true }));
    let openMs;
    ({ page, seen, openMs } = await open(browser.context, server.url));
    // Measured, not asserted: BENCHMARKS.md has the figures (tests/browser/open-time.mjs).
    console.log(`2,000-role report opened in ${Math.round(openMs)} ms`);
  });
  after(async () => {
    await server?.close();
  });

  test("renders with no errors, its rows a batch at a time as they scroll into view", async () => {
    assert.equal(await shown(page), "1998 of 1998 role(s)");
    const first = (await rows(page)).length;
    assert.ok(first < 1998, `${first} rows built up front`);
    await page.locator("#more").scrollIntoViewIfNeeded();
    await page.waitForFunction((n) => document.querySelectorAll("#roles tbody tr.role").length > n, first);
    assert.deepEqual(seen.errors, []);
  });

  test("sorts, filters by account and service, and expands a role", async () => {
    await page.locator("#roles th", { hasText: /^granted$/ }).click();
    const granted = (await rows(page)).map((r) => r.granted);
    assert.deepEqual(granted, [...granted].sort((a, b) => b - a));
    await page.selectOption("#account", "444455556666");
    const accounts = new Set((await rows(page)).map((r) => r.account));
    assert.deepEqual([...accounts], ["444455556666"]);
    assert.match(await shown(page), /^49\d of 1998 role\(s\)$/);
    await page.selectOption("#account", "");
    // EC2 is granted to the admin and read-only roles, not to those with service wildcards.
    await page.selectOption("#service", { label: "ec2" });
    assert.equal(await shown(page), "1332 of 1998 role(s)");
    assert.ok((await rows(page)).every((r) => !r.name.includes("service-wildcards")));
    await page.locator("#roles tbody tr.role button.expand").first().click();
    const detail = page.locator("#roles tbody tr.detail");
    await detail.waitFor();
    assert.ok((await detail.locator("table.removed tbody tr").count()) > 0);
    assert.ok((await detail.locator("pre.diff").count()) > 0);
    assert.deepEqual(seen.errors, []);
    assert.deepEqual(seen.requests, []);
  });
});

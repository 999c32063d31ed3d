// docs/plan-report.png: the demo-like plan's report with one role expanded.
//   node tests/browser/screenshot.mjs
import { join } from "node:path";
import { launch, open, report, root, serve } from "./lib.mjs";

const server = await serve(report("demo", ["--demo"]));
const browser = await launch();
try {
  const { page } = await open(browser.context, server.url);
  await page.setViewportSize({ width: 1280, height: 1000 });
  await page.locator("#roles th", { hasText: /^write \/ permissions removed$/ }).click();
  await page.locator("#roles tbody tr.role", { hasText: "app-orders" }).locator("button.expand").click();
  await page.screenshot({ path: join(root, "docs/plan-report.png") });
} finally {
  await browser.close();
  await server.close();
}

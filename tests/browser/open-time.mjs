// The open time of the 2,000-role report, for BENCHMARKS.md: from navigation to the first
// summary row, each run in a fresh page of one Chromium. Prints a Markdown table row.
//   node tests/browser/open-time.mjs [runs]
import { statSync } from "node:fs";
import { launch, open, report, serve } from "./lib.mjs";

const runs = Number(process.argv[2] || 5);
const file = report("plan-2000", ["--roles", "2000"], { direct: true });
const server = await serve(file);
const browser = await launch();
const times = [];
try {
  for (let i = 0; i < runs; i++) {
    const { page, seen, openMs } = await open(browser.context, server.url);
    if (seen.errors.length || seen.requests.length) throw new Error(JSON.stringify(seen));
    times.push(openMs);
    await page.close();
  }
} finally {
  await browser.close();
  await server.close();
}
times.sort((a, b) => a - b);
const ms = (t) => `${Math.round(t)} ms`;
console.log(`| report size | runs | fastest | median | slowest |\n|---:|---:|---:|---:|---:|`);
console.log(`| ${(statSync(file).size / 1e6).toFixed(1)} MB | ${runs} | ${ms(times[0])} | ${ms(times[Math.floor(runs / 2)])} | ${ms(times[runs - 1])} |`);

// Drives bench.html in headless Chromium (see scripts/bench-wasm) and
// prints the page's measurements as JSON.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import puppeteer from "puppeteer-core";
import { serve } from "../serve.mjs";
import { CHROMIUM_ARGS } from "../tests/chromium.mjs";

const { values } = parseArgs({
  options: {
    models: { type: "string" }, onnx: { type: "string" }, ort: { type: "string" },
    texts: { type: "string" }, reps: { type: "string" }, "batch-reps": { type: "string" },
    builds: { type: "string", default: "relaxed-simd,simd128" },
  },
});
const server = await serve({
  models: values.models,
  extra: { "/ort/": values.ort, "/onnx/": path.dirname(values.onnx) },
});
const profile = mkdtempSync(path.join(tmpdir(), "kiln-bench-chromium-"));
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [...CHROMIUM_ARGS, `--user-data-dir=${profile}`],
  headless: true,
  protocolTimeout: 1_800_000,
});
try {
  const page = await browser.newPage();
  page.on("console", (m) => console.error(`page: ${m.text()}`));
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  await page.goto(`${server.url}/bench/bench.html`);
  await page.waitForFunction(() => window.benchReady === true);
  const texts = JSON.parse(values.texts);
  const result = await page.evaluate((cfg) => window.runBench(cfg), {
    model: "/models/all-MiniLM-L6-v2-Q8_0.gguf",
    onnx: `/onnx/${path.basename(values.onnx)}`,
    texts,
    reps: Number(values.reps ?? 50),
    batchReps: Number(values["batch-reps"] ?? 2),
    builds: values.builds.split(","),
  });
  result.browser = await browser.version();
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
  await server.close();
  rmSync(profile, { recursive: true, force: true });
}

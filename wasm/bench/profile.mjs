// Where kiln's WebAssembly time goes: runs one build in headless Chromium
// under the DevTools CPU profiler and prints self time per function (the
// .wasm's name section names the Rust functions), largest first; with
// --ceiling, first the register-only int8 probes of ceiling.mjs in the
// same browser.
//   node wasm/bench/profile.mjs [--build relaxed-simd] [--workload batch|hello]
//        [--texts FILE] [--top 25] [--ceiling]
// `batch` embeds the texts of FILE (one per line; default: the 24 golden
// sentences) with embedBatch, `hello` embeds "Hello world" 200 times.
// Expects wasm/pkg/ built (scripts/test-wasm).
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import puppeteer from "puppeteer-core";
import { serve } from "../serve.mjs";
import { CHROMIUM_ARGS } from "../tests/chromium.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    build: { type: "string", default: "relaxed-simd" },
    workload: { type: "string", default: "batch" },
    texts: { type: "string", default: path.join(here, "../../tests/fixtures/goldens/sentences.txt") },
    top: { type: "string", default: "25" },
    ceiling: { type: "boolean", default: false },
  },
});
const texts = readFileSync(values.texts, "utf8").split("\n").filter((l) => l.trim());
const server = await serve({});
const profile = mkdtempSync(path.join(tmpdir(), "kiln-profile-chromium-"));
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [...CHROMIUM_ARGS, `--user-data-dir=${profile}`],
  headless: true,
  protocolTimeout: 600_000,
});
try {
  const page = await browser.newPage();
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  await page.goto(`${server.url}/bench/blank.html`);
  if (values.ceiling) {
    console.log(`${await browser.version()}: register-only int8 probes`);
    const probes = await page.evaluate(async () => (await import("/bench/ceiling.mjs")).runProbes());
    for (const r of probes) console.log(`${r.gops === null ? "  n/a" : r.gops.toFixed(1).padStart(6)} GOPS  ${r.name}`);
  }
  await page.evaluate(async (build) => {
    const { Embedder, init } = await import("/kiln.mjs");
    await init(build);
    const r = await fetch("/models/all-MiniLM-L6-v2-Q8_0.gguf");
    window.kilnEmbedder = await Embedder.load(new Uint8Array(await r.arrayBuffer()), { build });
    window.kilnEmbedder.embed("warm up");
  }, values.build);
  const cdp = await page.createCDPSession();
  await cdp.send("Profiler.enable");
  await cdp.send("Profiler.setSamplingInterval", { interval: 100 });
  await cdp.send("Profiler.start");
  const ms = await page.evaluate(
    ({ workload, texts }) => {
      const e = window.kilnEmbedder;
      const s = performance.now();
      if (workload === "hello") for (let i = 0; i < 200; i++) e.embed("Hello world");
      else for (let r = 0; r < 4; r++) e.embedBatch(texts);
      return performance.now() - s;
    },
    { workload: values.workload, texts },
  );
  const { profile: p } = await cdp.send("Profiler.stop");
  const self = new Map();
  const dt = new Map();
  for (let i = 0; i < p.samples.length; i++) dt.set(p.samples[i], (dt.get(p.samples[i]) ?? 0) + (p.timeDeltas[i] ?? 0));
  let total = 0;
  for (const n of p.nodes) {
    const t = dt.get(n.id) ?? 0;
    const name = n.callFrame.functionName || `(${n.callFrame.url.split("/").pop() || "program"})`;
    self.set(name, (self.get(name) ?? 0) + t);
    total += t;
  }
  console.log(`${values.build}, ${values.workload}: ${ms.toFixed(0)} ms run, ${(total / 1e3).toFixed(0)} ms sampled`);
  const rows = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top));
  for (const [name, t] of rows) {
    console.log(`${((100 * t) / total).toFixed(1).padStart(5)}%  ${name.slice(0, 110)}`);
  }
} finally {
  await browser.close();
  await server.close();
  rmSync(profile, { recursive: true, force: true });
}

// The search page in headless Chromium (Debian's `chromium`, driven by
// puppeteer-core): it loads the model from a server on 127.0.0.1, embeds the
// corpus, answers a typed query; the ranking and the vectors are checked
// against native kiln, and a screenshot is saved (target/wasm/search.png).
//
// Needs KILN (the native `kiln` binary) and CHROMIUM (default: /usr/bin/chromium).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import puppeteer from "puppeteer-core";
import { serve } from "../serve.mjs";
import { CHROMIUM_ARGS } from "./chromium.mjs";
import { CORPUS } from "../www/corpus.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const kiln = process.env.KILN ?? path.join(root, "target/release/kiln");
const model = path.join(root, "tests/fixtures/all-MiniLM-L6-v2-Q8_0.gguf");
const shot = path.join(root, "target/wasm/search.png");

/** Native kiln's vectors (scalar kernels), one per text. */
function native(texts) {
  const out = execFileSync(kiln, ["embed", "-m", model, "--truncate", "--format", "jsonl", ...texts], {
    env: { ...process.env, KILN_ISA: "scalar" },
    maxBuffer: 1 << 26,
  });
  return out.toString("utf8").split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l).embedding);
}

function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / Math.sqrt(na * nb);
}


test("the search page ranks like native kiln", async () => {
  const server = await serve({ models: path.join(root, "tests/fixtures") });
  const profile = mkdtempSync(path.join(tmpdir(), "kiln-chromium-"));
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [...CHROMIUM_ARGS, `--user-data-dir=${profile}`],
    headless: true,
  });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.setViewport({ width: 900, height: 820 });
    await page.goto(`${server.url}/www/`);
    const info = await page.evaluate(async () => {
      const k = await window.kiln;
      return { build: k.build, timings: k.timings, ua: navigator.userAgent };
    });
    assert.deepEqual(errors, []);
    // Chromium has relaxed SIMD: the page must have picked that build.
    assert.equal(info.build, "relaxed-simd");
    const query = "How do plants make their food?";
    await page.type("#query", query);
    await page.keyboard.press("Enter");
    await page.waitForSelector("#results li");
    const shown = await page.$$eval("#results li", (lis) => lis.map((li) => li.textContent));
    const timing = await page.$eval("#timing", (d) => d.textContent);
    const ranked = await page.evaluate((q) => window.kiln.then((k) => k.search(q)), query);

    // Native kiln's ranking of the same corpus for the same query.
    const vecs = native([query, ...CORPUS]);
    const want = CORPUS.map((text, i) => ({ text, score: cosine(vecs[0], vecs[i + 1]) }))
      .sort((a, b) => b.score - a.score);
    assert.equal(ranked[0].text, CORPUS[0], "photosynthesis first");
    assert.ok(shown[0].endsWith(CORPUS[0]), `first shown: ${shown[0]}`);
    // The same order where the scores are apart, the same scores everywhere.
    for (let i = 0; i < 3; i++) assert.equal(ranked[i].text, want[i].text, `rank ${i + 1}`);
    const nativeScore = new Map(want.map((r) => [r.text, r.score]));
    for (const r of ranked) {
      const n = nativeScore.get(r.text);
      assert.ok(Math.abs(r.score - n) < 2e-3, `score of ${JSON.stringify(r.text)}: ${r.score} vs native ${n}`);
    }
    // Vectors of a few golden inputs against native kiln.
    const goldens = readFileSync(path.join(root, "tests/fixtures/goldens/sentences.txt"), "utf8").split("\n").slice(0, 6);
    const nat = native(goldens);
    let worst = 1;
    for (const [i, t] of goldens.entries()) {
      const v = await page.evaluate((t) => window.kiln.then((k) => k.embed(t)), t);
      worst = Math.min(worst, cosine(v, nat[i]));
    }
    assert.ok(worst >= 0.999, `worst cosine to native ${worst}`);
    // The SIMD128 build (what browsers without relaxed SIMD run) on the
    // same inputs.
    const other = "simd128";
    const vs = await page.evaluate(
      async (build, texts) => {
        const { Embedder } = await import("/kiln.mjs");
        const r = await fetch("/models/all-MiniLM-L6-v2-Q8_0.gguf");
        const e = await Embedder.load(new Uint8Array(await r.arrayBuffer()), { build });
        const out = texts.map((t) => Array.from(e.embed(t)));
        e.free();
        return out;
      },
      other,
      goldens,
    );
    let worstOther = 1;
    for (const [i, v] of vs.entries()) worstOther = Math.min(worstOther, cosine(v, nat[i]));
    assert.ok(worstOther >= 0.999, `${other}: worst cosine to native ${worstOther}`);
    mkdirSync(path.dirname(shot), { recursive: true });
    await page.screenshot({ path: shot });
    console.log(
      `chromium (${info.ua.match(/Chrome\/[\d.]+/)?.[0]}), ${info.build}: load to first embedding ` +
        `${info.timings.load_to_first_embedding_ms.toFixed(0)} ms, corpus ${info.timings.corpus_ms.toFixed(0)} ms; ` +
        `${timing}; worst cosine to native scalar ${worst.toFixed(7)} (${other}: ${worstOther.toFixed(7)}); screenshot ${shot}`,
    );
  } finally {
    await browser.close();
    await server.close();
    rmSync(profile, { recursive: true, force: true });
  }
});

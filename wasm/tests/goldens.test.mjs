// The WebAssembly builds against native kiln and the float32 references on
// the 24 golden sentences: token ids identical to native kiln's; vectors as
// close to native kiln's scalar kernels (KILN_ISA=scalar) as native kiln's
// own SIMD kernels are: a sum in another order, or an `expf` that differs in
// the last bit, can round a Q8_0 activation the other way, and native AVX2
// and AVX-512 are up to 2.2e-4 and 5.4e-4 from native scalar in cosine on
// these inputs, so 1e-3 (how many are within 1e-6 is printed); and at least
// native kiln's bars against float32 sentence-transformers.
//
// Needs KILN (the native `kiln` binary). EmbeddingGemma comes from the model
// cache ($KILN_HOME, default ~/.cache/kiln); without it the test is skipped,
// or fails when KILN_REQUIRE_MODELS=1 (as in CI).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Embedder, detectBuild } from "../kiln.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const goldensDir = path.join(root, "tests/fixtures/goldens");
const kiln = process.env.KILN ?? path.join(root, "target/release/kiln");
const kilnHome = process.env.KILN_HOME ?? path.join(homedir(), ".cache/kiln");
const requireModels = process.env.KILN_REQUIRE_MODELS === "1";

function readJsonl(file) {
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l));
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

/** Native kiln's vectors on its `isa` kernels (default: scalar), one per text. */
function nativeScalar(model, texts, isa = "scalar") {
  const env = { ...process.env, KILN_ISA: isa ?? "" };
  const out = execFileSync(kiln, ["embed", "-m", model, "--truncate", "--format", "jsonl", ...texts], {
    env,
    maxBuffer: 1 << 28,
  });
  return readJsonl2(out.toString("utf8")).map((r) => r.embedding);
}

function readJsonl2(text) {
  return text.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
}

function nativeIds(model, text) {
  return JSON.parse(execFileSync(kiln, ["tokenize", "-m", model, "--", text]).toString("utf8"));
}

const MODELS = [
  {
    name: "all-MiniLM-L6-v2",
    path: path.join(root, "tests/fixtures/all-MiniLM-L6-v2-Q8_0.gguf"),
    golden: "all-MiniLM-L6-v2.st.jsonl",
    min: 0.9985,
    mean: 0.9995,
    builds: [detectBuild(), "scalar"],
    nativeIsa: "scalar",
  },
  {
    name: "embeddinggemma-300m",
    path: path.join(kilnHome, "models/embeddinggemma/embeddinggemma-300m-Q8_0.gguf"),
    golden: "embeddinggemma-300m.st.jsonl",
    min: 0.999,
    mean: 0.9995,
    builds: [detectBuild()],
    // Native scalar kernels take minutes on its 886-token input: the SIMD
    // build is compared with native kiln's own SIMD kernels instead.
    nativeIsa: null,
  },
];

for (const m of MODELS) {
  const present = existsSync(m.path);
  if (!present && requireModels) {
    test(`${m.name}: model present`, () => assert.fail(`${m.path} is missing; run scripts/fetch-models`));
    continue;
  }
  const golden = readJsonl(path.join(goldensDir, m.golden));
  const texts = golden.map((g) => g.text);
  let native;
  for (const build of m.builds) {
    test(`${m.name} (${build}): ids and vectors equal native kiln's`, { skip: !present && "model not in the cache" }, async () => {
      native ??= nativeScalar(m.path, texts, m.nativeIsa);
      const bytes = readFileSync(m.path);
      const t0 = performance.now();
      const e = await Embedder.load(bytes, { build });
      const first = e.embed(texts[0]);
      const loadToFirst = performance.now() - t0;
      assert.equal(e.build, build);
      assert.equal(e.dimension, native[0].length);
      assert.equal(first.length, e.dimension);
      const tolerance = 1e-3;
      let within1e6 = 0;
      const times = [];
      let worstNative = 1;
      const st = [];
      for (const [i, g] of golden.entries()) {
        const ids = Array.from(e.tokenize(g.text));
        assert.deepEqual(ids, nativeIds(m.path, g.text), `token ids of ${JSON.stringify(g.text)}`);
        assert.deepEqual(ids, g.token_ids, `token ids of ${JSON.stringify(g.text)} vs the reference`);
        const s = performance.now();
        const v = e.embed(g.text);
        times.push(performance.now() - s);
        const c = cosine(v, native[i]);
        worstNative = Math.min(worstNative, c);
        if (c >= 1 - 1e-6) within1e6++;
        assert.ok(c >= 1 - tolerance, `cosine to native ${c} on ${JSON.stringify(g.text)}`);
        st.push(cosine(v, g.embedding));
      }
      // embedBatch is embed, text by text.
      const batch = e.embedBatch(texts.slice(0, 4));
      for (let i = 0; i < 4; i++) {
        assert.ok(cosine(batch[i], e.embed(texts[i])) >= 1 - 1e-7, `batch row ${i}`);
      }
      const min = Math.min(...st);
      const mean = st.reduce((a, b) => a + b, 0) / st.length;
      const sorted = [...times].sort((a, b) => a - b);
      console.log(
        `${m.name} [${build}]: load to first embedding ${loadToFirst.toFixed(0)} ms; ` +
          `per text median ${sorted[sorted.length >> 1].toFixed(1)} ms, max ${sorted.at(-1).toFixed(1)} ms; ` +
          `cosine to native ${m.nativeIsa ?? "(best ISA)"} min ${worstNative.toFixed(9)} (${within1e6} of ${golden.length} within 1e-6); to float32 min ${min.toFixed(5)} mean ${mean.toFixed(5)}`,
      );
      assert.ok(min >= m.min, `min cosine to float32 ${min}`);
      assert.ok(mean >= m.mean, `mean cosine to float32 ${mean}`);
      e.free();
    });
  }
}

test("options: task prompt, Matryoshka width, normalization", async () => {
  const bytes = readFileSync(MODELS[0].path);
  const raw = await Embedder.load(bytes, { normalize: false });
  const v = raw.embed("Hello world");
  const norm = Math.hypot(...v);
  assert.ok(Math.abs(norm - 1) > 1e-3, `unnormalized vector has norm ${norm}`);
  const small = await Embedder.load(bytes, { dim: 128 });
  assert.equal(small.dimension, 128);
  const w = small.embed("Hello world");
  assert.equal(w.length, 128);
  assert.ok(Math.abs(Math.hypot(...w) - 1) < 1e-5);
  await assert.rejects(Embedder.load(bytes, { dim: 4096 }), /dim|width/i);
  await assert.rejects(Embedder.load(bytes, { task: "no-such-task" }), /task/i);
  await assert.rejects(Embedder.load(new Uint8Array([1, 2, 3, 4]), {}), /gguf|magic|short|file/i);
  const prompted = await Embedder.load(bytes, { prompt: "query: " });
  assert.ok(prompted.tokenize("Hello world").length > raw.tokenize("Hello world").length);
  assert.equal(Embedder.similarity(v, v).toFixed(6), "1.000000");
  assert.throws(() => Embedder.similarity(v, w), /widths/);
});

test("the CLI prints one JSON object per text", () => {
  const out = execFileSync(process.execPath, [
    path.join(root, "wasm/cli.mjs"), "-m", MODELS[0].path, "--", "Hello world", "Bonjour",
  ]).toString("utf8");
  const rows = readJsonl2(out);
  assert.equal(rows.length, 2);
  assert.equal(rows[0].text, "Hello world");
  assert.equal(rows[0].embedding.length, 384);
  const native = nativeScalar(MODELS[0].path, ["Hello world", "Bonjour"]);
  for (let i = 0; i < 2; i++) assert.ok(cosine(rows[i].embedding, native[i]) >= 1 - 1e-3);
});

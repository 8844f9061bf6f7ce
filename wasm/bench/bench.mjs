// In one page: kiln's WebAssembly builds and onnxruntime-web's WASM backend
// (SIMD, one thread) on all-MiniLM-L6-v2, fed the same token ids. Run by
// scripts/bench-wasm through `window.runBench`.
import { Embedder, init } from "../kiln.mjs";
import * as ort from "/ort/ort.wasm.min.mjs";

async function bytes(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

/** Median and minimum of `reps` timings of `f` in ms, after `warm` calls. */
function time(f, reps, warm = 3) {
  for (let i = 0; i < warm; i++) f();
  const t = [];
  for (let i = 0; i < reps; i++) {
    const s = performance.now();
    f();
    t.push(performance.now() - s);
  }
  t.sort((a, b) => a - b);
  return { median: t[t.length >> 1], min: t[0] };
}

async function timeAsync(f, reps, warm = 3) {
  for (let i = 0; i < warm; i++) await f();
  const t = [];
  for (let i = 0; i < reps; i++) {
    const s = performance.now();
    await f();
    t.push(performance.now() - s);
  }
  t.sort((a, b) => a - b);
  return { median: t[t.length >> 1], min: t[0] };
}

/** Mean pooling over the sequence, then L2 normalization. */
function meanPool(hidden, n, dim) {
  const v = new Float32Array(dim);
  for (let t = 0; t < n; t++) for (let d = 0; d < dim; d++) v[d] += hidden[t * dim + d];
  let s = 0;
  for (let d = 0; d < dim; d++) s += v[d] * v[d];
  s = Math.sqrt(s);
  for (let d = 0; d < dim; d++) v[d] /= s;
  return v;
}

window.runBench = async ({ model, onnx, texts, reps, batchReps, builds }) => {
  const gguf = await bytes(model);
  const out = { kiln: {}, ort: {} };
  // Token ids from kiln (truncated to 512 keeping the final [SEP]), fed to both.
  const ref = await Embedder.load(gguf, { build: "scalar" });
  const ids = texts.map((t) => {
    const a = Array.from(ref.tokenize(t));
    return a.length > 512 ? [...a.slice(0, 511), a[a.length - 1]] : a;
  });
  const hello = Array.from(ref.tokenize("Hello world"));
  ref.free();

  for (const build of builds) {
    await init(build);
    const s = performance.now();
    const e = await Embedder.load(gguf, { build });
    e.embed("Hello world");
    const loadToFirst = performance.now() - s;
    const lat = time(() => e.embed("Hello world"), reps);
    const batch = [];
    for (let r = 0; r < batchReps; r++) {
      const t0 = performance.now();
      e.embedBatch(texts);
      batch.push(performance.now() - t0);
    }
    const one = [];
    for (let r = 0; r < batchReps; r++) {
      const t0 = performance.now();
      for (const t of texts) e.embed(t);
      one.push(performance.now() - t0);
    }
    out.kiln[build] = {
      load_to_first_embedding_ms: loadToFirst,
      hello_ms: lat,
      batch_ms: Math.min(...batch),
      one_by_one_ms: Math.min(...one),
      vectors: texts.slice(0, 4).map((t) => Array.from(e.embed(t))),
    };
    e.free();
  }

  ort.env.wasm.numThreads = 1;
  ort.env.wasm.wasmPaths = "/ort/";
  const t0 = performance.now();
  const session = await ort.InferenceSession.create(await bytes(onnx), {
    executionProviders: ["wasm"],
    graphOptimizationLevel: "all",
  });
  out.ort.load_ms = performance.now() - t0;
  out.ort.inputs = session.inputNames;
  out.ort.outputs = session.outputNames;
  const feeds = (seq) => {
    const n = seq.length;
    const f = {
      input_ids: new ort.Tensor("int64", BigInt64Array.from(seq, BigInt), [1, n]),
      attention_mask: new ort.Tensor("int64", new BigInt64Array(n).fill(1n), [1, n]),
      token_type_ids: new ort.Tensor("int64", new BigInt64Array(n), [1, n]),
    };
    return Object.fromEntries(session.inputNames.map((k) => [k, f[k]]));
  };
  const run = async (seq) => {
    const r = await session.run(feeds(seq));
    const h = r[session.outputNames[0]];
    return meanPool(h.data, seq.length, h.dims[2]);
  };
  out.ort.hello_ms = await timeAsync(() => run(hello), reps);
  const ortBatch = [];
  for (let r = 0; r < batchReps; r++) {
    const s = performance.now();
    for (const seq of ids) await run(seq);
    ortBatch.push(performance.now() - s);
  }
  out.ort.one_by_one_ms = Math.min(...ortBatch);
  out.ort.vectors = [];
  for (const seq of ids.slice(0, 4)) out.ort.vectors.push(Array.from(await run(seq)));
  out.tokens = ids.reduce((a, s) => a + s.length, 0);
  return out;
};
window.benchReady = true;

// The search page: fetch the model with a progress bar, embed the corpus
// once, then rank it by cosine similarity for each query. `window.kiln`
// exposes the same steps to the browser test.
import { Embedder } from "../kiln.mjs";
import { CORPUS } from "./corpus.mjs";

const params = new URLSearchParams(location.search);
const MODEL_URL = params.get("model") ?? "../models/all-MiniLM-L6-v2-Q8_0.gguf";

const $ = (id) => document.getElementById(id);

/** Fetches `url` into one Uint8Array, reporting progress. */
async function fetchWithProgress(url, onProgress) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  const total = Number(res.headers.get("content-length")) || 0;
  const reader = res.body.getReader();
  const chunks = [];
  let got = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    got += value.length;
    onProgress(got, total);
  }
  const bytes = new Uint8Array(got);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.length;
  }
  return bytes;
}

async function start() {
  const status = $("status");
  const progress = $("progress");
  const t0 = performance.now();
  const bytes = await fetchWithProgress(MODEL_URL, (got, total) => {
    if (total) progress.value = got / total;
    status.textContent = `Downloading model: ${(got / 1e6).toFixed(1)}${total ? ` of ${(total / 1e6).toFixed(1)}` : ""} MB`;
  });
  const t1 = performance.now();
  status.textContent = "Loading model…";
  const embedder = await Embedder.load(bytes);
  const first = embedder.embed(CORPUS[0]);
  const t2 = performance.now();
  const docs = [first, ...CORPUS.slice(1).map((d) => embedder.embed(d))];
  const t3 = performance.now();
  progress.value = 1;
  const timings = {
    download_ms: t1 - t0,
    load_to_first_embedding_ms: t2 - t1,
    corpus_ms: t3 - t1,
  };
  status.textContent =
    `Ready: ${embedder.build} build, ${docs.length} documents embedded in ${(t3 - t1).toFixed(0)} ms ` +
    `(model ${(bytes.length / 1e6).toFixed(1)} MB, loaded to first vector in ${(t2 - t1).toFixed(0)} ms).`;

  function search(query) {
    const s = performance.now();
    const q = embedder.embed(query);
    const ranked = docs
      .map((d, i) => ({ text: CORPUS[i], score: Embedder.similarity(q, d) }))
      .sort((a, b) => b.score - a.score);
    return { ranked, ms: performance.now() - s };
  }

  function show(query) {
    const { ranked, ms } = search(query);
    $("timing").textContent = `${ms.toFixed(1)} ms for this query (embedding and ranking ${docs.length} documents)`;
    const list = $("results");
    list.replaceChildren(
      ...ranked.slice(0, 8).map((r) => {
        const li = document.createElement("li");
        const score = document.createElement("span");
        score.className = "score";
        score.textContent = r.score.toFixed(4);
        li.append(score, r.text);
        return li;
      }),
    );
    return ranked;
  }

  $("form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = $("query").value.trim();
    if (q) show(q);
  });
  $("query").disabled = false;
  $("go").disabled = false;
  $("query").focus();
  return {
    build: embedder.build,
    timings,
    corpus: CORPUS,
    search: (q) => search(q).ranked,
    embed: (t) => Array.from(embedder.embed(t)),
    tokenize: (t) => Array.from(embedder.tokenize(t)),
  };
}

window.kiln = start().catch((e) => {
  $("status").textContent = `Error: ${e.message ?? e}`;
  throw e;
});

#!/usr/bin/env node
// kiln's WebAssembly build from the command line, for scripts and tests:
//   node wasm/cli.mjs -m MODEL.gguf [--task NAME] [--dim N] [--no-normalize]
//        [--build relaxed-simd|simd128|scalar] [--tokens] -- TEXT...
// prints one JSON object per text, {"text": ..., "embedding": [...]} (the
// shape of `kiln embed`'s jsonl), or {"text": ..., "token_ids": [...]} with
// --tokens. Texts come from the arguments after `--`, else from stdin lines.
import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { Embedder } from "./kiln.mjs";

const usage = "usage: node cli.mjs -m MODEL.gguf [--task NAME] [--prompt TEXT] [--dim N] " +
  "[--no-normalize] [--build relaxed-simd|simd128|scalar] [--tokens] [--stats] -- TEXT...";

let parsed;
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: {
      model: { type: "string", short: "m" },
      task: { type: "string" },
      prompt: { type: "string" },
      dim: { type: "string" },
      "no-normalize": { type: "boolean" },
      build: { type: "string" },
      tokens: { type: "boolean" },
      stats: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
} catch (e) {
  console.error(`${e.message}\n${usage}`);
  process.exit(2);
}
const { values: opts, positionals } = parsed;
if (opts.help) {
  console.log(usage);
  process.exit(0);
}
if (!opts.model) {
  console.error(usage);
  process.exit(2);
}

let texts = positionals;
if (texts.length === 0) {
  const chunks = [];
  for await (const c of process.stdin) chunks.push(c);
  texts = Buffer.concat(chunks).toString("utf8").split("\n").filter((l) => l.length > 0);
}

const options = {};
if (opts.task) options.task = opts.task;
if (opts.prompt) options.prompt = opts.prompt;
if (opts.dim) options.dim = Number(opts.dim);
if (opts["no-normalize"]) options.normalize = false;
if (opts.build) options.build = opts.build;

try {
  const bytes = await readFile(opts.model);
  const t0 = performance.now();
  const e = await Embedder.load(bytes, options);
  const t1 = performance.now();
  const lines = [];
  const times = [];
  for (const text of texts) {
    if (opts.tokens) {
      lines.push(JSON.stringify({ text, token_ids: Array.from(e.tokenize(text)) }));
    } else {
      const s = performance.now();
      const v = e.embed(text);
      times.push(performance.now() - s);
      lines.push(JSON.stringify({ text, embedding: Array.from(v) }));
    }
  }
  process.stdout.write(lines.join("\n") + (lines.length ? "\n" : ""));
  if (opts.stats) {
    const first = times.length ? (t1 - t0 + times[0]).toFixed(1) : "-";
    console.error(
      `kiln wasm (${e.build}): load ${(t1 - t0).toFixed(1)} ms, load to first embedding ${first} ms, ` +
        `per text ${times.map((t) => t.toFixed(1)).join(" ")} ms`,
    );
  }
} catch (e) {
  console.error(`kiln: ${e.message ?? e}`);
  process.exit(1);
}

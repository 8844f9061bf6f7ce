// kiln for JavaScript: picks the best WebAssembly build this engine runs
// (relaxed SIMD, then SIMD128, then scalar) and loads embedding models from
// GGUF bytes. Works in browsers and in Node (ES modules, no bundler).
//
//   import { Embedder } from "./kiln.mjs";
//   const e = await Embedder.load(ggufBytes, { task: "query", dim: 256 });
//   const v = e.embed("Hello world");          // Float32Array
//
// A WebAssembly engine cannot be asked which instructions it has, and a
// module with one it lacks fails to load as a whole: so each feature level
// is its own .wasm, and tiny probe modules tell which one validates.

/** A module whose one function uses `i8x16.popcnt` (SIMD128). */
const SIMD128_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15,
  253, 98, 11,
]);

/** A module whose one function uses `i32x4.relaxed_dot_i8x16_i7x16_add_s`,
 * the instruction the relaxed-SIMD build's int8 dots are made of. */
const RELAXED_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 19, 1, 17, 0, 65, 1, 253,
  15, 65, 1, 253, 15, 65, 1, 253, 15, 253, 147, 2, 11,
]);

/** The builds, best first: directory under pkg/ and the probe it needs. */
const BUILDS = [
  { name: "relaxed-simd", probe: RELAXED_PROBE },
  { name: "simd128", probe: SIMD128_PROBE },
  { name: "scalar", probe: null },
];

/** The best build this engine validates (`relaxed-simd`, `simd128`, `scalar`). */
export function detectBuild() {
  for (const b of BUILDS) {
    if (!b.probe || WebAssembly.validate(b.probe)) return b.name;
  }
  return "scalar";
}

const loaded = new Map();

/** Instantiates build `name` (default: the best this engine runs) once;
 * returns its wasm-bindgen module. */
export async function init(name = detectBuild()) {
  if (!loaded.has(name)) {
    loaded.set(
      name,
      (async () => {
        const glue = await import(`./pkg/${name}/kiln_wasm.js`);
        const url = new URL(`./pkg/${name}/kiln_wasm_bg.wasm`, import.meta.url);
        let source;
        if (url.protocol === "file:") {
          const { readFile } = await import("node:fs/promises");
          source = await readFile(url);
        } else {
          source = fetch(url);
        }
        await glue.default({ module_or_path: source });
        return glue;
      })(),
    );
  }
  return loaded.get(name);
}

/** An embedding model. */
export class Embedder {
  #inner;
  /** The build it runs on (`relaxed-simd`, `simd128`, `scalar`). */
  build;

  constructor(inner, build) {
    this.#inner = inner;
    this.build = build;
  }

  /**
   * Loads a GGUF embedding model from its bytes (`Uint8Array` or
   * `ArrayBuffer`). Options: `task` (named task prompt, e.g. "query"),
   * `prompt` (custom prompt), `dim` (Matryoshka width), `normalize`
   * (default true), `truncate` (cut over-long inputs; default true),
   * `build` (force `relaxed-simd`, `simd128` or `scalar`).
   */
  static async load(gguf, options = {}) {
    const build = options.build ?? detectBuild();
    const glue = await init(build);
    const bytes = gguf instanceof Uint8Array ? gguf : new Uint8Array(gguf);
    const { build: _, ...rest } = options;
    return new Embedder(glue.Embedder.load(bytes, rest), build);
  }

  /** The vector of one text (`Float32Array`). */
  embed(text) {
    return this.#inner.embed(text);
  }

  /** The vectors of many texts, in order. */
  embedBatch(texts) {
    return this.#inner.embedBatch(texts);
  }

  /** Token ids (`Uint32Array`), prompt and special tokens included. */
  tokenize(text) {
    return this.#inner.tokenize(text);
  }

  /** Width of the vectors. */
  get dimension() {
    return this.#inner.dimension;
  }

  /** The model's maximum input length in tokens. */
  get maxTokens() {
    return this.#inner.maxTokens;
  }

  /** The GGUF architecture. */
  get arch() {
    return this.#inner.arch;
  }

  /** Cosine similarity of two vectors. */
  similarity(a, b) {
    return Embedder.similarity(a, b);
  }

  /** Cosine similarity of two vectors (0 if either is zero). */
  static similarity(a, b) {
    if (a.length !== b.length) {
      throw new Error(`vectors of different widths: ${a.length} and ${b.length}`);
    }
    let dot = 0, na = 0, nb = 0;
    for (let i = 0; i < a.length; i++) {
      dot += a[i] * b[i];
      na += a[i] * a[i];
      nb += b[i] * b[i];
    }
    return na === 0 || nb === 0 ? 0 : dot / Math.sqrt(na * nb);
  }

  /** Frees the model's memory inside the module. */
  free() {
    this.#inner.free();
  }
}

// Register-only int8 multiply-add probes of the WebAssembly engine that runs
// this module: what GOPS one core gets from each instruction sequence the
// kernels could be made of, with nothing loaded from memory. Each probe is a
// tiny module written here byte by byte (no assembler needed), so it runs
// in Node and in a browser alike:
//   node --experimental-wasm-relaxed-simd wasm/bench/ceiling.mjs
// or `import { runProbes } from "./ceiling.mjs"` in a page.
//
// Every probe's activation operand changes each round (one add shared by
// all chains, counted as overhead, not as work), so an engine that unrolls
// the loop cannot merge the rounds' products.

const SIMD = 0xfd;

/** Unsigned LEB128. */
function uleb(n) {
  const out = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

/** Signed LEB128 (32-bit). */
function sleb(n) {
  const out = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && !(b & 0x40)) || (n === -1 && b & 0x40)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

const op = {
  get: (i) => [0x20, ...uleb(i)],
  set: (i) => [0x21, ...uleb(i)],
  i32: (v) => [0x41, ...sleb(v)],
  simd: (code) => [SIMD, ...uleb(code)],
};
const I8X16_SPLAT = 15, I16X8_SPLAT = 16, I32X4_SPLAT = 17;
const I32X4_EXTRACT = 27, V128_XOR = 81, I8X16_ADD = 110, I8X16_SUB = 113;
const I32X4_EXTADD_PAIRWISE_I16X8_S = 126, I16X8_ADD = 142;
const I16X8_EXTMUL_LOW_I8X16_S = 156, I16X8_EXTMUL_HIGH_I8X16_S = 157;
const I32X4_ADD = 174, I32X4_DOT_I16X8_S = 186;
const RELAXED_DOT_ADD = 0x113;

/**
 * A module exporting `run(iters) -> i32`: `init` sets the v128 locals
 * (local 0 is `iters`), `round` is the loop body, `result` folds the
 * accumulators into one i32 (so nothing is dead).
 */
function module(locals, init, round, accs) {
  const result = [...op.i32(0)];
  for (const a of accs) {
    for (let l = 0; l < 4; l++) result.push(...op.get(a), ...op.simd(I32X4_EXTRACT), l, 0x6a);
  }
  const body = [
    1, ...uleb(locals), 0x7b, // `locals` v128 locals
    ...init,
    0x03, 0x40, // loop
    ...round,
    ...op.get(0), ...op.i32(1), 0x6b, 0x22, 0, // iters - 1, tee
    0x0d, 0, // br_if 0
    0x0b, // end loop
    ...result,
    0x0b,
  ];
  const code = [1, ...uleb(body.length), ...body];
  const bytes = [
    0, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
    1, 6, 1, 0x60, 1, 0x7f, 1, 0x7f, // type: (i32) -> i32
    3, 2, 1, 0, // one function
    7, 7, 1, 3, 0x72, 0x75, 0x6e, 0, 0, // export "run"
    10, ...uleb(code.length), ...code,
  ];
  return new Uint8Array(bytes);
}

/** Sets local `l` to `splat(v)` of lane type `splat`. */
const splat = (l, v, kind = I8X16_SPLAT) => [...op.i32(v), ...op.simd(kind), ...op.set(l)];

/**
 * The probes: name, multiply-adds per round, and the module. Locals from 1:
 * accumulators, then weights, then activations.
 */
function probes() {
  const list = [];
  {
    // relaxed dot on registers: 8 chains of `acc = dot(x, w_c, acc)`.
    const C = 8, A = 1, W = A + C, X = W + C, S = X + 1;
    const init = [];
    for (let c = 0; c < C; c++) init.push(...splat(A + c, 0, I32X4_SPLAT), ...splat(W + c, 3 + c));
    init.push(...splat(X, -5), ...splat(S, 1));
    const round = [...op.get(X), ...op.get(S), ...op.simd(I8X16_ADD), ...op.set(X)];
    for (let c = 0; c < C; c++) {
      round.push(...op.get(X), ...op.get(W + c), ...op.get(A + c), ...op.simd(RELAXED_DOT_ADD), ...op.set(A + c));
    }
    list.push({
      name: "i32x4.relaxed_dot_i8x16_i7x16_add_s",
      relaxed: true, macs: 16 * C,
      bytes: module(S, init, round, Array.from({ length: C }, (_, c) => A + c)),
    });
  }
  {
    // The relaxed kernel's sequence for one activation quad and 8 weight
    // rows (two registers), 4 tokens: the weights' signs moved to the
    // activations, `(x ^ m) - m`, then the dot.
    const T = 4, A = 1, W = A + 2 * T, M = W + 2, X = M + 2, S = X + T;
    const init = [];
    for (let c = 0; c < 2 * T; c++) init.push(...splat(A + c, 0, I32X4_SPLAT));
    init.push(...splat(W, 5), ...splat(W + 1, 9), ...splat(M, -1), ...splat(M + 1, 0));
    for (let t = 0; t < T; t++) init.push(...splat(X + t, t - 7));
    init.push(...splat(S, 1));
    const round = [];
    for (let t = 0; t < T; t++) {
      round.push(...op.get(X + t), ...op.get(S), ...op.simd(I8X16_ADD), ...op.set(X + t));
      for (let h = 0; h < 2; h++) {
        round.push(
          ...op.get(X + t), ...op.get(M + h), ...op.simd(V128_XOR), ...op.get(M + h), ...op.simd(I8X16_SUB),
          ...op.get(W + h), ...op.get(A + 2 * t + h), ...op.simd(RELAXED_DOT_ADD), ...op.set(A + 2 * t + h),
        );
      }
    }
    list.push({
      name: "relaxed dot with the sign moved (kiln's relaxed Q8_0 group step, 4 tokens x 8 rows)",
      relaxed: true, macs: 32 * T,
      bytes: module(S, init, round, Array.from({ length: 2 * T }, (_, c) => A + c)),
    });
  }
  {
    // i32x4.dot_i16x8_s on registers: 8 chains of `acc += dot(w_c, x)`.
    const C = 8, A = 1, W = A + C, X = W + C, S = X + 1;
    const init = [];
    for (let c = 0; c < C; c++) init.push(...splat(A + c, 0, I32X4_SPLAT), ...splat(W + c, 3 + c, I16X8_SPLAT));
    init.push(...splat(X, -5, I16X8_SPLAT), ...splat(S, 1, I16X8_SPLAT));
    const round = [...op.get(X), ...op.get(S), ...op.simd(I16X8_ADD), ...op.set(X)];
    for (let c = 0; c < C; c++) {
      round.push(
        ...op.get(A + c), ...op.get(W + c), ...op.get(X), ...op.simd(I32X4_DOT_I16X8_S),
        ...op.simd(I32X4_ADD), ...op.set(A + c),
      );
    }
    list.push({
      name: "i32x4.dot_i16x8_s + i32x4.add",
      relaxed: false, macs: 8 * C,
      bytes: module(S, init, round, Array.from({ length: C }, (_, c) => A + c)),
    });
  }
  {
    // The int16 form of one activation quad and 8 weight rows, 4 tokens:
    // weights widened to int16 once (4 registers: rows 0-3 and 4-7, columns
    // 0-1 and 2-3), each token's column pairs broadcast (2 registers),
    // 4 dots and 4 adds per token.
    const T = 4, A = 1, W = A + 2 * T, X = W + 4, S = X + 2 * T;
    const init = [];
    for (let c = 0; c < 2 * T; c++) init.push(...splat(A + c, 0, I32X4_SPLAT));
    for (let c = 0; c < 4; c++) init.push(...splat(W + c, 3 + 2 * c, I16X8_SPLAT));
    for (let c = 0; c < 2 * T; c++) init.push(...splat(X + c, c - 7, I16X8_SPLAT));
    init.push(...splat(S, 1, I16X8_SPLAT));
    const round = [];
    for (let t = 0; t < T; t++) {
      for (let p = 0; p < 2; p++) {
        round.push(...op.get(X + 2 * t + p), ...op.get(S), ...op.simd(I16X8_ADD), ...op.set(X + 2 * t + p));
      }
      for (let h = 0; h < 2; h++) {
        round.push(
          ...op.get(A + 2 * t + h),
          ...op.get(W + 2 * h), ...op.get(X + 2 * t), ...op.simd(I32X4_DOT_I16X8_S), ...op.simd(I32X4_ADD),
          ...op.get(W + 2 * h + 1), ...op.get(X + 2 * t + 1), ...op.simd(I32X4_DOT_I16X8_S), ...op.simd(I32X4_ADD),
          ...op.set(A + 2 * t + h),
        );
      }
    }
    list.push({
      name: "int16 dot of widened weights (kiln's SIMD128 Q8_0 group step, 4 tokens x 8 rows)",
      relaxed: false, macs: 32 * T,
      bytes: module(S, init, round, Array.from({ length: 2 * T }, (_, c) => A + c)),
    });
  }
  {
    // extmul + extadd_pairwise on registers: 8 chains, 16 multiply-adds each.
    const C = 8, A = 1, W = A + C, X = W + C, S = X + 1;
    const init = [];
    for (let c = 0; c < C; c++) init.push(...splat(A + c, 0, I32X4_SPLAT), ...splat(W + c, 3 + c));
    init.push(...splat(X, -5), ...splat(S, 1));
    const round = [...op.get(X), ...op.get(S), ...op.simd(I8X16_ADD), ...op.set(X)];
    for (let c = 0; c < C; c++) {
      round.push(
        ...op.get(A + c),
        ...op.get(W + c), ...op.get(X), ...op.simd(I16X8_EXTMUL_LOW_I8X16_S), ...op.simd(I32X4_EXTADD_PAIRWISE_I16X8_S),
        ...op.simd(I32X4_ADD),
        ...op.get(W + c), ...op.get(X), ...op.simd(I16X8_EXTMUL_HIGH_I8X16_S), ...op.simd(I32X4_EXTADD_PAIRWISE_I16X8_S),
        ...op.simd(I32X4_ADD), ...op.set(A + c),
      );
    }
    list.push({
      name: "i16x8.extmul_{low,high}_i8x16_s + i32x4.extadd_pairwise_i16x8_s",
      relaxed: false, macs: 16 * C,
      bytes: module(S, init, round, Array.from({ length: C }, (_, c) => A + c)),
    });
  }
  return list;
}

const now = () => performance.now();

/**
 * Runs every probe this engine validates (best of `tries`, about 2^28
 * multiply-adds a run); resolves to `[{ name, gops }]`, `gops` null where the
 * engine lacks the instructions.
 */
export async function runProbes({ tries = 5, macs = 1 << 28 } = {}) {
  const out = [];
  for (const p of probes()) {
    if (!WebAssembly.validate(p.bytes)) {
      out.push({ name: p.name, gops: null });
      continue;
    }
    const { instance } = await WebAssembly.instantiate(p.bytes);
    const run = instance.exports.run;
    const iters = Math.ceil(macs / p.macs);
    // Engines compile a baseline tier first and the optimized one in the
    // background: short calls until it is in (a running call never switches).
    for (let w = 0; w < 10; w++) {
      run(Math.ceil(iters / 256));
      await new Promise((r) => setTimeout(r, 10));
    }
    let best = Infinity;
    for (let t = 0; t < tries; t++) {
      const s = now();
      run(iters);
      best = Math.min(best, now() - s);
    }
    out.push({ name: p.name, gops: (2 * p.macs * iters) / (best / 1e3) / 1e9 });
  }
  return out;
}

if (typeof process !== "undefined" && import.meta.url === `file://${process.argv[1]}`) {
  for (const r of await runProbes()) {
    console.log(`${r.gops === null ? "  n/a" : r.gops.toFixed(1).padStart(6)} GOPS  ${r.name}`);
  }
}

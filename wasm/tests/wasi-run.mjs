// Runs a wasm32-wasip1 program (a `cargo test` binary) under Node's WASI:
// cargo's runner for that target (see scripts/test-wasm). Arguments after
// the module are the program's; the environment is passed through and the
// working directory is preopened as `.`, so the test harness behaves as it
// does natively.
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";
import { argv, env, exit } from "node:process";

const [module, ...args] = argv.slice(2);
if (!module) {
  console.error("usage: node wasi-run.mjs PROGRAM.wasm [ARGS...]");
  exit(2);
}
const wasi = new WASI({
  version: "preview1",
  args: [module, ...args],
  env,
  preopens: { ".": "." },
  returnOnExit: true,
});
const wasm = await WebAssembly.compile(await readFile(module));
const instance = await WebAssembly.instantiate(wasm, wasi.getImportObject());
exit(wasi.start(instance));

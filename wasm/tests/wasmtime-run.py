"""Runs a wasm32-wasip1 program (a `cargo test` binary) under Wasmtime with
relaxed SIMD: cargo's runner for the relaxed-SIMD kernel tests (see
scripts/test-wasm). Node 20's relaxed SIMD is behind a flag and its
`i32x4.relaxed_dot_i8x16_i7x16_add` doubles some results, so it cannot be
the reference here. Arguments after the module are the program's; the
environment is passed through and the working directory is preopened as `.`.
"""

import sys

import wasmtime


def main() -> int:
    if len(sys.argv) < 2:
        print("usage: wasmtime-run.py PROGRAM.wasm [ARGS...]", file=sys.stderr)
        return 2
    config = wasmtime.Config()
    config.wasm_simd = True
    config.wasm_relaxed_simd = True
    engine = wasmtime.Engine(config)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    module = wasmtime.Module.from_file(engine, sys.argv[1])
    wasi = wasmtime.WasiConfig()
    wasi.argv = sys.argv[1:]
    wasi.inherit_env()
    wasi.inherit_stdout()
    wasi.inherit_stderr()
    wasi.preopen_dir(".", ".")
    store = wasmtime.Store(engine)
    store.set_wasi(wasi)
    instance = linker.instantiate(store, module)
    try:
        instance.exports(store)["_start"](store)
    except wasmtime.ExitTrap as e:
        return e.code
    return 0


if __name__ == "__main__":
    sys.exit(main())

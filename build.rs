//! Generates kiln's kernels into `OUT_DIR` (see `kiln-kernels-gen`).
//!
//! The shape table below lists the sizes of the supported models (facts read
//! from the GGUF dumps in `../shared/fixtures/dumps`); each gets specialized
//! kernels, every other size uses the generic variants.

use std::path::PathBuf;
use std::time::Instant;
use std::{env, fs};

use kiln_kernels_gen::{ModelShapes, ShapeTable, generate, lower};

/// The shapes of the supported models.
fn shape_table() -> ShapeTable {
    let mut t = ShapeTable::new();
    // EmbeddingGemma-300M (gemma-embedding): hidden 768, 3 heads / 1 KV head
    // of 256, FFN 1152 (GeGLU), dense 768→3072→768, window 512.
    t.add_model(&ModelShapes {
        hidden: 768,
        head_dim: 256,
        ffn: 1152,
        matmuls: vec![
            (768, 768),  // attn_q
            (256, 768),  // attn_k, attn_v
            (768, 768),  // attn_output (3 heads × 256 = 768)
            (1152, 768), // ffn_gate, ffn_up
            (768, 1152), // ffn_down
            (3072, 768), // dense_2
            (768, 3072), // dense_3
        ],
        rms_norm: true,
        geglu: true,
        rope: true,
        head_norm: true,
    });
    // all-MiniLM-L6-v2 (bert): hidden 384, 12 heads of 32, FFN 1536 (GELU).
    t.add_model(&ModelShapes {
        hidden: 384,
        head_dim: 32,
        ffn: 1536,
        matmuls: vec![(384, 384), (1536, 384), (384, 1536)],
        rms_norm: false,
        geglu: false,
        rope: false,
        head_norm: false,
    });
    // gemma-3-270m (gemma3): hidden 640, 4 heads / 1 KV head of 256, FFN 2048.
    t.add_model(&ModelShapes {
        hidden: 640,
        head_dim: 256,
        ffn: 2048,
        matmuls: vec![
            (1024, 640), // attn_q
            (256, 640),  // attn_k, attn_v
            (640, 1024), // attn_output
            (2048, 640), // ffn_gate, ffn_up
            (640, 2048), // ffn_down
        ],
        rms_norm: true,
        geglu: true,
        rope: true,
        head_norm: true,
    });
    // gemma-3-270m as shipped (Q4_K_M): weights by type, from the dump's
    // tensor table (ggml shape [k, n] = n rows of k):
    // Q5_0 attn_q [640, 1024], attn_k/attn_v [640, 256], ffn_gate/up [640, 2048];
    // Q4_K attn_output [1024, 640] and half the ffn_down [2048, 640];
    // Q6_K the other ffn_down; Q8_0 some attn_v and token_embd [640, 262144]
    // (the tied output projection).
    for (n, k) in [(1024, 640), (256, 640), (2048, 640)] {
        t.add("matmul_q5_0", &[n, k]);
    }
    for (n, k) in [(640, 1024), (640, 2048)] {
        t.add("matmul_q4_k", &[n, k]);
        t.add("quantize_q8_k", &[k]);
    }
    t.add("matmul_q6_k", &[640, 2048]);
    t.add("matmul_q8_0", &[262_144, 640]);
    t
}

/// Writes `contents` unless the file already holds it (keeps mtimes stable).
fn write_if_changed(path: &PathBuf, contents: &str) {
    if fs::read_to_string(path).is_ok_and(|old| old == contents) {
        return;
    }
    fs::write(path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

fn main() {
    // The generator is a build dependency: cargo reruns this script when it
    // changes. Nothing else (no source file, no env var) affects the output.
    println!("cargo::rerun-if-changed=build.rs");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // Generate only the ISAs the target can compile (x86_64: scalar, AVX2,
    // AVX-512; aarch64: scalar, NEON, NEON+dotprod; others: scalar).
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets CARGO_CFG_TARGET_ARCH");
    let start = Instant::now();
    let generated = generate(&shape_table(), &lower::for_target_arch(&arch));
    write_if_changed(&out.join("kernels.rs"), &generated.kernels);
    write_if_changed(&out.join("kernel_sources.rs"), &generated.sources);
    write_if_changed(
        &out.join("generator_time.txt"),
        &format!("{} ms\n", start.elapsed().as_millis()),
    );
}

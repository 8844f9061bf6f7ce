//! Snapshots of generated source: a change to the DSL, a kernel or a lowering
//! shows up here for review (`cargo insta review`); CI runs with
//! `INSTA_UPDATE=no` so an unaccepted change fails.

use kiln_kernels_gen::{ShapeTable, source_of};

fn table() -> ShapeTable {
    let mut t = ShapeTable::new();
    t.add("matmul_q8_0x8", &[256, 768])
        .add("rms_norm", &[768])
        .add("attention", &[256])
        .add("attend_cache", &[256])
        .add("attend_cache_f16", &[256])
        .add("matmul_q4_kx8", &[640, 2048])
        .add("matmul_q6_kx8", &[640, 2048])
        .add("matmul_q4_1x8", &[576, 576])
        .add("swiglu_q8_0", &[1536]);
    t
}

fn snap(isa: &str, name: &str) {
    let src = source_of(&table(), isa, name)
        .unwrap_or_else(|| panic!("no generated function {name} for {isa}"));
    insta::assert_snapshot!(format!("{isa}__{name}"), src);
}

#[test]
fn q8_0_matmul() {
    for isa in ["scalar", "avx2"] {
        snap(isa, "matmul_q8_0_generic");
        snap(isa, "q8_dot");
        snap(isa, "q8_quant");
    }
}

#[test]
fn q8_0x8_matmul() {
    for isa in ["scalar", "avx2"] {
        snap(isa, "matmul_q8_0x8_n256_k768");
        snap(isa, "q8r_dot_acc");
        snap(isa, "r8_fma_block");
    }
    // VNNI offsets the weights to unsigned bytes: its own loads and the
    // per-block correction.
    for op in ["q8r_dot_acc", "q8r_load_w", "q8r_x_bias", "q8r_init"] {
        snap("avx512vnni", op);
    }
    // Its registers hold 16 rows: many tokens run 16-row tiles.
    for name in [
        "matmul_q8_0x8_n256_k768",
        "q8r16_load_w",
        "q8r16_dot_acc",
        "r16_fma_block",
        "r16_store_row",
    ] {
        snap("avx512vnni", name);
    }
    snap("neon_dotprod", "q8r_dot_acc");
}

#[test]
fn q4_k_matmul() {
    for isa in ["scalar", "avx2"] {
        snap(isa, "matmul_q4_k_generic");
        snap(isa, "ku_dot");
        snap(isa, "q4k_w");
        snap(isa, "q4k_scales");
        snap(isa, "q8k_quant");
    }
}

#[test]
fn k_quant_x8_matmuls() {
    for isa in ["scalar", "avx2"] {
        snap(isa, "matmul_q4_kx8_n640_k2048");
        snap(isa, "matmul_q6_kx8_n640_k2048");
        snap(isa, "q4x8_w");
        snap(isa, "q6x8_w");
        snap(isa, "ri_madd_pair_acc");
    }
    snap("avx2", "ru_dot_acc");
    snap("avx512vnni", "ru_dot_acc");
    snap("neon_dotprod", "q6x8_w");
}

#[test]
fn q4_1x8_matmul() {
    for isa in ["scalar", "avx2"] {
        snap(isa, "matmul_q4_1x8_n576_k576");
        snap(isa, "r8_fma_splat");
        snap(isa, "q8_sum");
    }
    // The nibbles go to `vpdpbusd` as they are: no offset, no sign fix-up.
    snap("avx512vnni", "matmul_q4_1x8_n576_k576");
    snap("neon", "q8_sum");
    snap("neon", "r8_fma_splat");
}

#[test]
fn swiglu() {
    for isa in ["scalar", "avx2"] {
        snap(isa, "swiglu_q8_0_1536");
        snap(isa, "silu");
        snap(isa, "silu_v");
    }
}

#[test]
fn rms_norm() {
    for isa in ["scalar", "avx2"] {
        snap(isa, "rms_norm_768");
        snap(isa, "rms_norm_generic");
    }
}

#[test]
fn attention() {
    for isa in ["scalar", "avx2", "avx512vnni"] {
        snap(isa, "attention_256");
        snap(isa, "attend_cache_256");
        snap(isa, "exp_sub_sum");
        // The f16 cache kernel: the f32 one's body over rows converted by
        // `f_load_f16` as they are read.
        snap(isa, "attend_cache_f16_256");
        snap(isa, "f_load_f16");
    }
    snap("neon", "f_load_f16");
}

#[test]
fn int8_probes() {
    // The register-only ceiling probes beside kiln's own dot-sequence probe:
    // the loop and each ISA's multiply-accumulate forms.
    for isa in ["avx2", "avx512vnni", "neon", "neon_dotprod"] {
        snap(isa, "int8_dot_probe");
        snap(isa, "int8_ceiling_probe");
        snap(isa, "ceil_mac");
    }
    for isa in ["avx2", "avx512vnni"] {
        snap(isa, "int8_ceiling_probe2");
        snap(isa, "ceil2_mac");
    }
    snap("avx512vnni", "ceil_opaque");
    snap("neon", "ceil_opaque");
    // Scalar has no int8 multiply-accumulate instruction: no ceiling probe.
    assert!(source_of(&table(), "scalar", "int8_ceiling_probe").is_none());
}

#[test]
fn wasm() {
    for isa in ["wasm_simd128", "wasm_relaxed_simd"] {
        snap(isa, "q8_load_w");
        snap(isa, "q8_dot");
        snap(isa, "q8r_dot_acc");
        snap(isa, "f_fma");
    }
    // Weights in 0..=63 need no sign moved; SIMD128 takes the default.
    snap("wasm_relaxed_simd", "ru_dot_acc");
    snap("wasm_simd128", "q8_quant");
    snap("wasm_simd128", "rms_norm_768");
}

#[test]
fn every_lowering_defines_every_primitive() {
    // Generating a module panics on a missing primitive body.
    for l in kiln_kernels_gen::lower::all() {
        let _ = kiln_kernels_gen::emit::isa_module(l.as_ref(), &table());
    }
}

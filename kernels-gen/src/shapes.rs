//! The shape table: which sizes get specialized variants.

use std::collections::BTreeMap;

/// For each `KernelSet` getter, the keys (its shape arguments, in order) that
/// get a specialized variant. Getters not listed get only the generic one.
#[derive(Clone, Debug, Default)]
pub struct ShapeTable {
    keys: BTreeMap<&'static str, Vec<Vec<usize>>>,
}

impl ShapeTable {
    /// An empty table: generic variants only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a specialized key for `getter` (duplicates are ignored).
    pub fn add(&mut self, getter: &'static str, key: &[usize]) -> &mut Self {
        let keys = self.keys.entry(getter).or_default();
        if !keys.iter().any(|k| k == key) {
            keys.push(key.to_vec());
        }
        self
    }

    /// The keys listed for `getter`.
    pub fn keys(&self, getter: &str) -> &[Vec<usize>] {
        self.keys.get(getter).map_or(&[], Vec::as_slice)
    }
}

/// The facts of one model that decide its kernel shapes.
#[derive(Clone, Debug)]
pub struct ModelShapes {
    /// Hidden size.
    pub hidden: usize,
    /// Dimension of one attention head.
    pub head_dim: usize,
    /// FFN inner size.
    pub ffn: usize,
    /// Q8_0 weight matrices as `(n, k)`: `n` rows of `k`.
    pub matmuls: Vec<(usize, usize)>,
    /// RMSNorm (true) or LayerNorm (false).
    pub rms_norm: bool,
    /// Gated FFN with GELU (GeGLU) rather than a plain GELU FFN.
    pub geglu: bool,
    /// Uses rotary position embeddings.
    pub rope: bool,
    /// Norms applied per head (Gemma's q/k norms over `head_dim`).
    pub head_norm: bool,
}

impl ShapeTable {
    /// Adds every specialization a model needs.
    pub fn add_model(&mut self, m: &ModelShapes) -> &mut Self {
        for &(n, k) in &m.matmuls {
            self.add("matmul_q8_0x8", &[n, k]);
            self.add("quantize_q8_0", &[k]);
        }
        if m.rms_norm {
            self.add("rms_norm", &[m.hidden]);
            if m.head_norm {
                self.add("rms_norm", &[m.head_dim]);
            }
        } else {
            self.add("layer_norm", &[m.hidden]);
        }
        if m.geglu {
            self.add("geglu_q8_0", &[m.ffn]);
        }
        if m.rope {
            self.add("rope", &[m.head_dim]);
        }
        self.add("attention", &[m.head_dim]);
        self.add("attend_cache", &[m.head_dim]);
        self.add("attend_cache_f16", &[m.head_dim]);
        self.add("gather_q8_0", &[m.hidden]);
        self.add("mean_pool", &[m.hidden]);
        self
    }
}

/// The shapes of the supported models (facts read from the GGUF dumps in
/// `tests/fixtures/*.dump.json`): the table the `kiln` build script
/// generates kernels for, and the one `#[kiln::model]` checks a model's
/// shapes against.
pub fn builtin() -> ShapeTable {
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
    // Q5_0 attn_q [640, 1024], attn_k/attn_v [640, 256], ffn_gate/up [640, 2048]
    // (re-encoded as Q8_0 at open, so they run on the Q8_0 groups above);
    // Q4_K attn_output [1024, 640] and half the ffn_down [2048, 640];
    // Q6_K the other ffn_down; Q8_0 some attn_v and token_embd [640, 262144]
    // (the tied output projection).
    for (n, k) in [(640, 1024), (640, 2048)] {
        t.add("matmul_q4_kx8", &[n, k]);
        t.add("quantize_q8_k", &[k]);
    }
    t.add("matmul_q6_kx8", &[640, 2048]);
    t.add("matmul_q8_0x8", &[262_144, 640]);
    // SmolLM2-135M-Instruct (llama, as shipped in Q4_1): hidden 576, 9 query
    // heads / 3 KV heads of 64, FFN 1536 (SwiGLU), vocab 49152. Every
    // projection is Q4_1 (ggml shape [k, n] = n rows of k): attn_q and
    // attn_output [576, 576], attn_k/attn_v [576, 192], ffn_gate/up
    // [576, 1536], ffn_down [1536, 576]; token_embd is Q8_0 [576, 49152],
    // tied as the output projection.
    t.add_model(&ModelShapes {
        hidden: 576,
        head_dim: 64,
        ffn: 1536,
        matmuls: vec![(49_152, 576)],
        rms_norm: true,
        geglu: false,
        rope: true,
        head_norm: false,
    });
    for (n, k) in [(576, 576), (192, 576), (1536, 576), (576, 1536)] {
        t.add("matmul_q4_1x8", &[n, k]);
        t.add("quantize_q8_0", &[k]);
    }
    t.add("swiglu_q8_0", &[1536]);
    t
}

impl ShapeTable {
    /// Checks that every getter names a family that gets specialized
    /// variants and every key has that family's arity: a typo or a
    /// reference-only family would otherwise leave a shape generic silently.
    pub fn check(&self) -> Result<(), String> {
        let mut errors = Vec::new();
        for (getter, keys) in &self.keys {
            match crate::kernels::family(getter) {
                None => errors.push(format!("`{getter}` names no kernel family")),
                Some(f) if f.reference_only => errors.push(format!(
                    "`{getter}` is reference-only: it gets its generic variant only"
                )),
                Some(f) => {
                    for key in keys.iter().filter(|k| k.len() != f.key.len()) {
                        errors.push(format!(
                            "`{getter}{key:?}`: the family's key is {:?}",
                            f.key
                        ));
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("shape table: {}", errors.join("; ")))
        }
    }

    /// The `getter(key)` entries of `needed` that this table lacks, e.g.
    /// `matmul_q8_0(384, 1536)`.
    pub fn missing(&self, needed: &ShapeTable) -> Vec<String> {
        let mut out = Vec::new();
        for (getter, keys) in &needed.keys {
            for key in keys {
                if !self.keys(getter).contains(key) {
                    let args: Vec<String> = key.iter().map(usize::to_string).collect();
                    out.push(format!("{getter}({})", args.join(", ")));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_covers_each_of_its_models_and_reports_gaps() {
        let table = builtin();
        let mut minilm = ShapeTable::new();
        minilm.add_model(&ModelShapes {
            hidden: 384,
            head_dim: 32,
            ffn: 1536,
            matmuls: vec![(384, 384), (1536, 384), (384, 1536)],
            rms_norm: false,
            geglu: false,
            rope: false,
            head_norm: false,
        });
        assert!(table.missing(&minilm).is_empty());
        minilm.add("matmul_q8_0x8", &[384, 999]);
        assert_eq!(table.missing(&minilm), ["matmul_q8_0x8(384, 999)"]);
    }

    #[test]
    fn builtin_is_valid_and_typos_are_errors() {
        builtin().check().expect("the builtin table is valid");
        let mut t = ShapeTable::new();
        t.add("rms_nrom", &[768]);
        assert!(
            t.check()
                .unwrap_err()
                .contains("`rms_nrom` names no kernel family")
        );
        let mut t = ShapeTable::new();
        t.add("matmul_q8_0", &[768, 768]);
        assert!(t.check().unwrap_err().contains("reference-only"));
        let mut t = ShapeTable::new();
        t.add("rms_norm", &[768, 768]);
        assert!(t.check().is_err());
    }
}

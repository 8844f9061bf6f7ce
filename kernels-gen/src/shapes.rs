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
            self.add("matmul_q8_0", &[n, k]);
            self.add("matmul_q8_0x8", &[n, k]);
            self.add("quantize_q8_0", &[k]);
        }
        if m.rms_norm {
            self.add("rms_norm", &[m.hidden]);
            self.add("rms_norm_q8_0", &[m.hidden]);
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
        self.add("gather_q8_0", &[m.hidden]);
        self.add("mean_pool", &[m.hidden]);
        self
    }
}

//! kiln for JavaScript: an embedding model loaded from GGUF bytes in memory,
//! run by the same library path as native kiln (tokenizer, plan, kernels,
//! pooling, Matryoshka width and normalization), on one thread.
//!
//! Which kernels run is fixed when the `.wasm` is built: a build with
//! `+simd128` runs the SIMD128 lowering, one with `+simd128,+relaxed-simd`
//! the relaxed-SIMD one, one with neither the scalar one. `kiln.mjs` picks
//! the best build the engine can validate.

use js_sys::{Array, Float32Array, Reflect, Uint32Array};
use wasm_bindgen::prelude::*;

/// A loaded embedding model.
#[wasm_bindgen]
pub struct Embedder {
    inner: kiln::Embedder,
}

/// Reads an optional property of the options object.
fn get(options: &JsValue, key: &str) -> Result<Option<JsValue>, JsError> {
    if options.is_undefined() || options.is_null() {
        return Ok(None);
    }
    if !options.is_object() {
        return Err(JsError::new("options must be an object"));
    }
    let v = Reflect::get(options, &JsValue::from_str(key))
        .map_err(|_| JsError::new(&format!("cannot read option `{key}`")))?;
    Ok((!v.is_undefined() && !v.is_null()).then_some(v))
}

fn get_str(options: &JsValue, key: &str) -> Result<Option<String>, JsError> {
    get(options, key)?
        .map(|v| {
            v.as_string()
                .ok_or_else(|| JsError::new(&format!("option `{key}` must be a string")))
        })
        .transpose()
}

fn get_bool(options: &JsValue, key: &str) -> Result<Option<bool>, JsError> {
    get(options, key)?
        .map(|v| {
            v.as_bool()
                .ok_or_else(|| JsError::new(&format!("option `{key}` must be a boolean")))
        })
        .transpose()
}

fn get_usize(options: &JsValue, key: &str) -> Result<Option<usize>, JsError> {
    get(options, key)?
        .map(|v| match v.as_f64() {
            Some(n) if n >= 1.0 && n.fract() == 0.0 && n <= u32::MAX as f64 => Ok(n as usize),
            _ => Err(JsError::new(&format!(
                "option `{key}` must be a positive integer"
            ))),
        })
        .transpose()
}

fn js_err(e: kiln::Error) -> JsError {
    JsError::new(&e.to_string())
}

#[wasm_bindgen]
impl Embedder {
    /// Loads a GGUF embedding model from its bytes. `options` (all
    /// optional): `task` (a named task prompt of the model, e.g. `query`),
    /// `prompt` (a custom prompt), `dim` (Matryoshka width), `normalize`
    /// (default true), `truncate` (cut over-long inputs instead of failing;
    /// default true).
    pub fn load(gguf: Vec<u8>, options: JsValue) -> Result<Embedder, JsError> {
        let mut b = kiln::Embedder::builder()
            .threads(1)
            .pack_cache(None)
            .truncate(get_bool(&options, "truncate")?.unwrap_or(true));
        if let Some(task) = get_str(&options, "task")? {
            b = b.task(task);
        }
        if let Some(prompt) = get_str(&options, "prompt")? {
            b = b.prompt(prompt);
        }
        if let Some(dim) = get_usize(&options, "dim")? {
            b = b.dim(dim);
        }
        if let Some(normalize) = get_bool(&options, "normalize")? {
            b = b.normalize(normalize);
        }
        let file = kiln::runtime::gguf::GgufFile::from_vec(gguf, "model.gguf")
            .map_err(|e| js_err(e.into()))?;
        let inner = b.open_file(std::sync::Arc::new(file)).map_err(js_err)?;
        Ok(Embedder { inner })
    }

    /// The vector of one text.
    pub fn embed(&self, text: &str) -> Result<Float32Array, JsError> {
        let v = self.inner.embed(text).map_err(js_err)?;
        Ok(Float32Array::from(v.as_slice()))
    }

    /// The vectors of many texts, in order (each equal to embedding its text
    /// alone).
    #[wasm_bindgen(js_name = embedBatch)]
    pub fn embed_batch(&self, texts: Vec<String>) -> Result<Array, JsError> {
        let rows = self.inner.embed_batch(&texts).map_err(js_err)?;
        Ok(rows
            .iter()
            .map(|v| JsValue::from(Float32Array::from(v.as_slice())))
            .collect())
    }

    /// Token ids of `text` as the model sees them (prompt and special tokens
    /// included, before truncation).
    pub fn tokenize(&self, text: &str) -> Result<Uint32Array, JsError> {
        let ids = self.inner.tokenize(text).map_err(js_err)?;
        Ok(Uint32Array::from(ids.as_slice()))
    }

    /// Width of the vectors `embed` returns.
    #[wasm_bindgen(getter)]
    pub fn dimension(&self) -> usize {
        self.inner.dim()
    }

    /// The model's maximum input length in tokens.
    #[wasm_bindgen(getter, js_name = maxTokens)]
    pub fn max_tokens(&self) -> usize {
        self.inner.max_tokens()
    }

    /// The GGUF architecture (`bert`, `gemma-embedding`).
    #[wasm_bindgen(getter)]
    pub fn arch(&self) -> String {
        self.inner.arch().to_owned()
    }

    /// Cosine similarity of two vectors (0 if either is zero).
    pub fn similarity(a: &[f32], b: &[f32]) -> Result<f32, JsError> {
        if a.len() != b.len() {
            return Err(JsError::new(&format!(
                "vectors of different widths: {} and {}",
                a.len(),
                b.len()
            )));
        }
        Ok(kiln::cosine(a, b))
    }
}

/// The kernel set this build runs (`scalar`, `wasm-simd128`,
/// `wasm-relaxed-simd`).
#[wasm_bindgen]
pub fn isa() -> String {
    kiln::kernels::best().isa().name().to_owned()
}

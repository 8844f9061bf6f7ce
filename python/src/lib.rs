//! `kiln._kiln`: the native half of the Python package.
//!
//! It stays small on purpose: one [`Model`] class over a `kiln::Embedder`
//! that turns a list of texts into a flat `bytearray` of native-endian
//! `f32` rows. The Python half (`kiln/__init__.py`) wraps it in the
//! sentence-transformers call shape, makes the numpy array and quantizes.
//!
//! Per-call options (prompt, Matryoshka width, normalization) are applied
//! here rather than baked into the embedder, so one mapped model serves
//! every `encode` call: the embedder is built with normalization off and no
//! prompt, the prompt is prepended to each text (exactly what the embedder
//! does with its own prompt), and rows are cut to the asked width and then
//! L2-normalized (what the embedder does with `dim`).

use std::borrow::Cow;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyDict, PyType};

/// `kiln.KilnError`, defined in Python (`kiln/_errors.py`) so that it can
/// derive from both `RuntimeError` and `ValueError`.
static KILN_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// Turns a kiln error into a `kiln.KilnError` carrying kiln's message.
fn kiln_err(py: Python<'_>, message: impl std::fmt::Display) -> PyErr {
    match KILN_ERROR.import(py, "kiln._errors", "KilnError") {
        Ok(ty) => PyErr::from_type(ty.clone(), message.to_string()),
        Err(e) => e,
    }
}

/// What a `Model` was opened with, for `repr` and introspection.
struct Opened {
    path: String,
    threads: usize,
}

/// A text-embedding model (`kiln.Embedder` wraps it). Safe to share between
/// Python threads: the GIL is released while kiln computes, and concurrent
/// calls each get their own scratch memory.
#[pyclass(frozen, module = "kiln._kiln")]
struct Model {
    inner: kiln::Embedder,
    opened: Opened,
}

#[pymethods]
impl Model {
    /// Opens `model`: a GGUF path, or a short name (`embeddinggemma`,
    /// `minilm`) resolved in kiln's cache (`$KILN_HOME`, default
    /// `~/.cache/kiln`) and pulled on first use, as the CLI does.
    #[new]
    #[pyo3(signature = (model, threads=None, truncate=true))]
    fn new(py: Python<'_>, model: &str, threads: Option<usize>, truncate: bool) -> PyResult<Self> {
        if threads == Some(0) {
            return Err(PyValueError::new_err("threads must be at least 1"));
        }
        let threads = threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        });
        let opened = py.detach(|| -> Result<(kiln::Embedder, String), String> {
            let path = kiln::hub::resolve_model(model).map_err(|e| e.to_string())?;
            let embedder = kiln::Embedder::builder()
                .threads(threads)
                .normalize(false)
                .truncate(truncate)
                .open(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok((embedder, path.display().to_string()))
        });
        let (inner, path) = opened.map_err(|m| kiln_err(py, m))?;
        Ok(Model {
            inner,
            opened: Opened { path, threads },
        })
    }

    /// Embeds `texts` (with `prompt` prepended to each) and returns
    /// `len(texts) * dim` native-endian float32 values, row after row.
    /// `dim` cuts each vector to its first `dim` values (Matryoshka);
    /// `normalize` then scales each row to unit length.
    #[pyo3(signature = (texts, prompt=None, dim=None, normalize=true))]
    fn embed<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
        prompt: Option<&str>,
        dim: Option<usize>,
        normalize: bool,
    ) -> PyResult<Bound<'py, PyByteArray>> {
        let full = self.inner.dim();
        let dim = dim.unwrap_or(full);
        if dim == 0 || dim > full {
            let e = kiln::Error::BadDim {
                dim,
                model_dim: full,
            };
            return Err(PyValueError::new_err(e.to_string()));
        }
        let flat = py
            .detach(|| self.embed_rows(&texts, prompt, dim, normalize))
            .map_err(|e| kiln_err(py, e))?;
        PyByteArray::new_with(py, flat.len() * 4, |buf| {
            for (bytes, x) in buf.chunks_exact_mut(4).zip(&flat) {
                bytes.copy_from_slice(&x.to_ne_bytes());
            }
            Ok(())
        })
    }

    /// Token ids of `prompt + text` exactly as `embed` feeds them to the
    /// model (special tokens included, before truncation).
    #[pyo3(signature = (text, prompt=None))]
    fn tokenize(&self, py: Python<'_>, text: &str, prompt: Option<&str>) -> PyResult<Vec<u32>> {
        let input = with_prompt(prompt, text);
        py.detach(|| self.inner.tokenize(&input))
            .map_err(|e| kiln_err(py, e))
    }

    /// The model's vector width.
    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    /// The model's context in tokens (longer inputs are cut, or rejected
    /// when the model was opened with `truncate=False`).
    #[getter]
    fn max_tokens(&self) -> usize {
        self.inner.max_tokens()
    }

    /// The GGUF architecture (`bert`, `gemma-embedding`).
    #[getter]
    fn arch(&self) -> &str {
        self.inner.arch()
    }

    /// The pooling in use (`mean`, `cls`, `last`).
    #[getter]
    fn pooling(&self) -> &'static str {
        match self.inner.pooling() {
            kiln::Pooling::Mean => "mean",
            kiln::Pooling::Cls => "cls",
            kiln::Pooling::Last => "last",
        }
    }

    /// Threads kiln uses for this model.
    #[getter]
    fn threads(&self) -> usize {
        self.opened.threads
    }

    /// Whether over-long inputs are cut to the context.
    #[getter]
    fn truncate(&self) -> bool {
        self.inner.options().truncate
    }

    /// The GGUF file in use.
    #[getter]
    fn path(&self) -> &str {
        &self.opened.path
    }

    /// The task prompts the model was trained with, name to prompt.
    fn prompts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        let arch = self.inner.arch();
        for name in kiln::prompts::names(arch) {
            if let Some(prompt) = kiln::prompts::lookup(arch, name) {
                dict.set_item(name, prompt)?;
            }
        }
        Ok(dict)
    }

    fn __repr__(&self) -> String {
        format!(
            "Model(path={:?}, arch={:?}, dim={}, threads={})",
            self.opened.path,
            self.inner.arch(),
            self.inner.dim(),
            self.opened.threads
        )
    }
}

impl Model {
    /// Embeds every text into one flat buffer of `dim`-wide rows. Runs
    /// without the GIL.
    fn embed_rows(
        &self,
        texts: &[String],
        prompt: Option<&str>,
        dim: usize,
        normalize: bool,
    ) -> Result<Vec<f32>, kiln::Error> {
        let mut flat = Vec::with_capacity(texts.len() * dim);
        let mut push = |row: &[f32]| {
            let start = flat.len();
            flat.extend_from_slice(&row[..dim]);
            if normalize {
                kiln::l2_normalize(&mut flat[start..]);
            }
        };
        if self.opened.threads > 1 && texts.len() > 1 {
            // Across texts on kiln's own pool.
            let inputs: Vec<Cow<'_, str>> = texts.iter().map(|t| with_prompt(prompt, t)).collect();
            for row in self.inner.embed_batch(&inputs)? {
                push(&row);
            }
        } else {
            // One text at a time; with one thread this runs on the calling
            // thread, so several Python threads run truly in parallel.
            let mut row = vec![0.0; self.inner.dim()];
            for text in texts {
                self.inner
                    .embed_into(&with_prompt(prompt, text), &mut row)?;
                push(&row);
            }
        }
        Ok(flat)
    }
}

/// `prompt + text`, borrowing when there is no prompt.
fn with_prompt<'a>(prompt: Option<&str>, text: &'a str) -> Cow<'a, str> {
    match prompt {
        Some(p) if !p.is_empty() => Cow::Owned(format!("{p}{text}")),
        _ => Cow::Borrowed(text),
    }
}

/// Lists the short model names kiln can pull.
#[pyfunction]
fn model_names() -> Vec<&'static str> {
    kiln::hub::catalog::names()
}

/// The GGUF of short name `name` if it is already in kiln's cache (never
/// downloads), else `None`.
#[pyfunction]
fn cached_model(name: &str) -> Option<String> {
    let cache = kiln::hub::Cache::from_env().ok()?;
    cache.cached(name).map(|p| p.display().to_string())
}

/// The native module.
#[pymodule]
fn _kiln(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(model_names, m)?)?;
    m.add_function(wrap_pyfunction!(cached_model, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

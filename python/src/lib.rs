//! `kiln._kiln`: the native half of the Python package.
//!
//! It stays small on purpose: one [`Model`] class over a `kiln::Embedder`
//! that turns a list of texts into a flat `bytearray` of native-endian
//! `f32` rows. The Python half (`kiln/__init__.py`) wraps it in the
//! sentence-transformers call shape, makes the numpy array and quantizes.
//!
//! Per-call options (prompt, Matryoshka width, normalization) go to the
//! embedder as a `kiln::CallOptions` with each call, so one mapped model
//! serves every `encode` call and the vectors are finished by the same
//! library code as the CLI's, the server's and `#[kiln::model]`'s.

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
        let call = kiln::CallOptions {
            prompt: prompt.map(str::to_owned),
            dim,
            normalize: Some(normalize),
            ..kiln::CallOptions::default()
        };
        let dim = self.checked_dim(py, &call)?;
        let flat = py
            .detach(|| self.embed_rows(&texts, &call, dim))
            .map_err(|e| kiln_err(py, e))?;
        PyByteArray::new_with(py, flat.len() * 4, |buf| {
            for (bytes, x) in buf.chunks_exact_mut(4).zip(&flat) {
                bytes.copy_from_slice(&x.to_ne_bytes());
            }
            Ok(())
        })
    }

    /// Embeds a long document as chunks (the library's `embed_chunks`):
    /// `mode` `"late"` pools each chunk from one pass over the document
    /// (window by window past the context), `"naive"` embeds each alone.
    /// Chunks hold at most `size` tokens, consecutive ones share `overlap`,
    /// and end at a `boundary` (`"word"`, `"sentence"`, `"line"`), unless
    /// `spans` gives them as `(start, end)` character ranges. Returns the
    /// vectors as one flat native-endian float32 `bytearray` and, per chunk,
    /// `(char start, char end, token start, token end)`.
    #[pyo3(signature = (text, size=256, overlap=32, boundary="word", spans=None, mode="late", prompt=None, dim=None, normalize=true))]
    #[allow(clippy::too_many_arguments)]
    fn embed_chunks<'py>(
        &self,
        py: Python<'py>,
        text: &str,
        size: usize,
        overlap: usize,
        boundary: &str,
        spans: Option<Vec<(usize, usize)>>,
        mode: &str,
        prompt: Option<&str>,
        dim: Option<usize>,
        normalize: bool,
    ) -> PyResult<(Bound<'py, PyByteArray>, Vec<(usize, usize, usize, usize)>)> {
        let mode = match mode {
            "late" => kiln::ChunkMode::Late,
            "naive" => kiln::ChunkMode::Naive,
            m => {
                return Err(PyValueError::new_err(format!(
                    "mode must be \"late\" or \"naive\", not {m:?}"
                )));
            }
        };
        let boundary = match boundary {
            "word" => kiln::Boundary::Word,
            "sentence" => kiln::Boundary::Sentence,
            "line" => kiln::Boundary::Line,
            b => {
                return Err(PyValueError::new_err(format!(
                    "boundary must be \"word\", \"sentence\" or \"line\", not {b:?}"
                )));
            }
        };
        let opts = kiln::ChunkOptions {
            size,
            overlap,
            boundary,
            spans: spans.map(|v| v.into_iter().map(|(a, b)| a..b).collect()),
            mode,
        };
        let call = kiln::CallOptions {
            prompt: prompt.map(str::to_owned),
            dim,
            normalize: Some(normalize),
            ..kiln::CallOptions::default()
        };
        let dim = self.checked_dim(py, &call)?;
        let chunks = py
            .detach(|| self.inner.embed_chunks(text, &opts, &call))
            .map_err(|e| kiln_err(py, e))?;
        let where_ = chunks
            .iter()
            .map(|c| (c.chars.start, c.chars.end, c.tokens.start, c.tokens.end))
            .collect();
        let flat = PyByteArray::new_with(py, chunks.len() * dim * 4, |buf| {
            let values = chunks.iter().flat_map(|c| &c.embedding);
            for (bytes, x) in buf.chunks_exact_mut(4).zip(values) {
                bytes.copy_from_slice(&x.to_ne_bytes());
            }
            Ok(())
        })?;
        Ok((flat, where_))
    }

    /// The width of vectors cut to `dim` (`None`: the model's), checked by
    /// the library: `ValueError` when the model cannot give it.
    #[pyo3(signature = (dim=None))]
    fn width(&self, py: Python<'_>, dim: Option<i64>) -> PyResult<usize> {
        let dim = match dim {
            None => None,
            Some(d) => Some(usize::try_from(d).map_err(|_| {
                PyValueError::new_err(format!(
                    "truncate_dim {d} is not between 1 and the model's {}",
                    self.inner.dim()
                ))
            })?),
        };
        let call = kiln::CallOptions {
            dim,
            ..kiln::CallOptions::default()
        };
        self.checked_dim(py, &call)
    }

    /// Token ids of `prompt + text` exactly as `embed` feeds them to the
    /// model (special tokens included, before truncation).
    #[pyo3(signature = (text, prompt=None))]
    fn tokenize(&self, py: Python<'_>, text: &str, prompt: Option<&str>) -> PyResult<Vec<u32>> {
        let call = kiln::CallOptions {
            prompt: prompt.map(str::to_owned),
            ..kiln::CallOptions::default()
        };
        py.detach(|| self.inner.tokenize_unlimited(text, &call))
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
    /// The width `call` gives; a width the model cannot give is a
    /// `ValueError` worded for `encode`'s `truncate_dim`.
    fn checked_dim(&self, py: Python<'_>, call: &kiln::CallOptions) -> PyResult<usize> {
        match self.inner.dim_with(call) {
            Ok(dim) => Ok(dim),
            Err(kiln::Error::BadDim { dim, model_dim }) => Err(PyValueError::new_err(format!(
                "truncate_dim {dim} is not between 1 and the model's {model_dim}"
            ))),
            Err(e) => Err(kiln_err(py, e)),
        }
    }

    /// Embeds every text with `call` into one flat buffer of `dim`-wide
    /// rows. Runs without the GIL.
    fn embed_rows(
        &self,
        texts: &[String],
        call: &kiln::CallOptions,
        dim: usize,
    ) -> Result<Vec<f32>, kiln::Error> {
        let mut flat = Vec::with_capacity(texts.len() * dim);
        if self.opened.threads > 1 && texts.len() > 1 {
            // Across texts on kiln's own pool.
            for row in self.inner.embed_batch_with(texts, call)? {
                flat.extend_from_slice(&row);
            }
        } else {
            // One text at a time; with one thread this runs on the calling
            // thread, so several Python threads run truly in parallel.
            let mut row = vec![0.0; dim];
            for text in texts {
                self.inner.embed_into_with(text, call, &mut row)?;
                flat.extend_from_slice(&row);
            }
        }
        Ok(flat)
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

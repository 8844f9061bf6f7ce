//! Opening a decoder: threads, context, KV cache type, pack cache.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kiln_runtime::gguf::GgufFile;
use kiln_runtime::model::{self, DecoderOptions, KvType};
use kiln_runtime::tokenizer::{TokenType, Tokenizer};

use super::generator::{DraftModel, Generator, Metrics};
use crate::Error;

/// Builds a [`Generator`].
#[derive(Clone, Debug)]
pub struct GeneratorBuilder {
    threads: usize,
    context: Option<usize>,
    kv_type: KvType,
    /// `None`: the default ([`config::default_pack_dir`](crate::config::default_pack_dir)).
    pack_dir: Option<Option<PathBuf>>,
    /// A second, smaller model drafting for speculative decoding.
    draft: Option<PathBuf>,
    /// A thread pool shared with other models (instead of one of its own).
    pool: Option<Arc<rayon::ThreadPool>>,
}

impl Default for GeneratorBuilder {
    fn default() -> Self {
        GeneratorBuilder {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            context: None,
            kv_type: KvType::F16,
            pack_dir: None,
            draft: None,
            pool: None,
        }
    }
}

impl GeneratorBuilder {
    /// Threads per generation (a batch runs one generation per thread).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Runs on `pool`, shared with other models, instead of a pool of its
    /// own: several models in one process then never run more threads than
    /// the pool has. Threads per generation become the pool's size.
    pub fn pool(mut self, pool: Arc<rayon::ThreadPool>) -> Self {
        self.threads = pool.current_num_threads().max(1);
        self.pool = Some(pool);
        self
    }

    /// Context in tokens (default 4096, at most the model's).
    pub fn context(mut self, context: usize) -> Self {
        self.context = Some(context);
        self
    }

    /// Where repacked weights are saved at a model's first open and mapped
    /// from by later opens (`None`: repack at every open). Default
    /// `$KILN_HOME/packed` (`KILN_PACK_CACHE=off` turns it off).
    pub fn pack_cache(mut self, dir: Option<PathBuf>) -> Self {
        self.pack_dir = Some(dir);
        self
    }

    /// KV cache element type (default f16, as llama.cpp: half the memory
    /// of f32, and faster decoding once the context is long).
    pub fn kv_type(mut self, kv: KvType) -> Self {
        self.kv_type = kv;
        self
    }

    /// A draft model for speculative decoding ([`Draft::Model`](super::Draft::Model)):
    /// it must have the target's vocabulary, token for token (checked at
    /// open), and is usually a smaller model of the same family.
    pub fn draft(mut self, path: impl AsRef<Path>) -> Self {
        self.draft = Some(path.as_ref().to_owned());
        self
    }

    /// Opens the GGUF at `path`.
    pub fn open(self, path: impl AsRef<Path>) -> Result<Generator, Error> {
        self.open_file(Arc::new(GgufFile::open(path.as_ref())?))
    }

    /// Builds the generator over an opened GGUF.
    pub fn open_file(self, file: Arc<GgufFile>) -> Result<Generator, Error> {
        let md = file.metadata();
        let arch = md.get_str("general.architecture")?.to_owned();
        let name = md.get_str("general.name").ok().map(str::to_owned);
        let quantization = md
            .get_u32("general.file_type")
            .map_or_else(|_| "unknown".to_owned(), kiln_runtime::gguf::file_type_name);
        let chat_template = md
            .get_str("tokenizer.chat_template")
            .ok()
            .map(str::to_owned);
        let kernels = crate::kernels::best();
        let pool = match &self.pool {
            Some(pool) => pool.clone(),
            None => Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(self.threads)
                    .thread_name(|i| format!("kiln-gen-{i}"))
                    .build()
                    .map_err(|e| Error::Threads(e.to_string()))?,
            ),
        };
        // The plan (layers in parallel) and the tokenizer side by side, on
        // the generator's own threads.
        let options = DecoderOptions {
            context: self.context,
            pack_dir: self
                .pack_dir
                .unwrap_or_else(crate::config::default_pack_dir),
        };
        let (model, tokenizer) = pool.install(|| {
            rayon::join(
                || model::open_decoder(file.clone(), kernels, &options),
                || Tokenizer::from_gguf(&file),
            )
        });
        let (model, tokenizer) = (model?, tokenizer?);
        model::check_vocab(tokenizer.vocab_size(), model.n_vocab())?;
        let draft = match &self.draft {
            None => None,
            Some(path) => Some(open_draft(
                path,
                &tokenizer,
                model.n_vocab(),
                kernels,
                &options,
                &pool,
            )?),
        };
        let eog = end_of_generation(&tokenizer);
        Ok(Generator {
            arch,
            name,
            quantization,
            chat_template,
            model,
            tokenizer,
            eog,
            threads: self.threads,
            kv_type: self.kv_type,
            pool,
            states: Mutex::new(Vec::new()),
            metrics: Mutex::new(Metrics::default()),
            isa: kernels.isa().name(),
            grammar_vocab: std::sync::OnceLock::new(),
            draft,
            _file: file,
        })
    }
}

/// Opens a draft model and checks that its vocabulary is the target's,
/// piece for piece: a draft token must mean the same text to both.
fn open_draft(
    path: &Path,
    target: &Tokenizer,
    n_vocab: usize,
    kernels: &'static dyn kiln_runtime::kernels::KernelSet,
    options: &DecoderOptions,
    pool: &rayon::ThreadPool,
) -> Result<DraftModel, Error> {
    let file = Arc::new(GgufFile::open(path)?);
    let tok = Tokenizer::from_gguf(&file)?;
    let mismatch = |why: String| Error::DraftVocabulary {
        path: path.to_owned(),
        why,
    };
    if tok.vocab_size() != target.vocab_size() {
        return Err(mismatch(format!(
            "{} tokens against the target's {}",
            tok.vocab_size(),
            target.vocab_size()
        )));
    }
    if let Some(id) =
        (0..target.vocab_size() as u32).find(|&id| tok.token_text(id) != target.token_text(id))
    {
        return Err(mismatch(format!(
            "token {id} is {:?} in the draft and {:?} in the target",
            tok.token_text(id).unwrap_or(""),
            target.token_text(id).unwrap_or("")
        )));
    }
    let model = pool.install(|| model::open_decoder(file.clone(), kernels, options))?;
    if model.n_vocab() != n_vocab {
        return Err(mismatch(format!(
            "{} logits against the target's {n_vocab}",
            model.n_vocab()
        )));
    }
    Ok(DraftModel { model, _file: file })
}

/// Pieces that end an assistant turn in the chat formats kiln knows
/// (Gemma, ChatML, Llama 3, Phi), as in llama.cpp's end-of-generation set.
const END_OF_TURN: &[&str] = &[
    "<end_of_turn>",
    "<|im_end|>",
    "<|eot_id|>",
    "<|endoftext|>",
    "<|end|>",
];

/// The tokens that stop generation: EOS, and the vocabulary's end-of-turn
/// tokens, taken only where they are special (a normal token that happens
/// to read `<|end|>` is text).
fn end_of_generation(tokenizer: &Tokenizer) -> Vec<u32> {
    let mut eog: Vec<u32> = tokenizer.eos().into_iter().collect();
    for piece in END_OF_TURN {
        if let Some(id) = tokenizer.token_id(piece)
            && tokenizer.token_type(id) != Some(TokenType::Normal)
            && !eog.contains(&id)
        {
            eog.push(id);
        }
    }
    eog
}

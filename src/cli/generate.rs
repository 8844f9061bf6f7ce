//! `kiln generate` and `kiln chat`: text generation with a decoder model.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::bail;
use clap::{Args, ValueEnum};
use kiln::{ChatMessage, GenerateOptions, Generation, Generator, KvType, SamplingOptions};

/// KV cache element types on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KvArg {
    /// 4 bytes per value.
    F32,
    /// 2 bytes per value.
    F16,
}

/// Options shared by `generate` and `chat`.
#[derive(Args, Debug, Clone)]
pub struct GenArgs {
    /// A GGUF decoder or a short model name (gemma3-270m, smollm2).
    #[arg(short, long, default_value = "gemma3-270m")]
    pub model: String,
    /// Threads (default: all cores).
    #[arg(short, long)]
    pub threads: Option<usize>,
    /// Context in tokens: prompt plus generated text.
    #[arg(long, default_value_t = kiln::runtime::model::DEFAULT_CONTEXT)]
    pub ctx: usize,
    /// KV cache element type.
    #[arg(long, value_enum, default_value_t = KvArg::F16)]
    pub kv: KvArg,
    /// Most tokens to generate.
    #[arg(short = 'n', long, default_value_t = 256)]
    pub max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    /// Keep the k most likely tokens (0: all).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Nucleus sampling threshold (1: off).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens less likely than this fraction of the best (0: off).
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalty on recently seen tokens (1: off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Random seed (same seed, same text).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop before this string (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Print speed (prefill and decode tokens/s, time to first token, peak
    /// memory) to stderr.
    #[arg(long)]
    pub stats: bool,
}

impl GenArgs {
    fn open(&self) -> anyhow::Result<Generator> {
        let path = super::resolve_model(&self.model)?;
        let mut b = Generator::builder()
            .context(self.ctx)
            .kv_type(match self.kv {
                KvArg::F32 => KvType::F32,
                KvArg::F16 => KvType::F16,
            });
        if let Some(t) = self.threads {
            b = b.threads(t);
        }
        Ok(b.open(path)?)
    }

    fn options(&self) -> GenerateOptions {
        GenerateOptions {
            max_tokens: self.max_tokens,
            sampling: SamplingOptions {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                min_p: self.min_p,
                repetition_penalty: self.repeat_penalty,
                seed: self.seed,
                ..SamplingOptions::default()
            },
            stop: self.stop.clone(),
            context: None,
        }
    }
}

/// `kiln generate`.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub args: GenArgs,
    /// The prompt (special tokens such as `<start_of_turn>` are parsed);
    /// read from stdin when absent.
    pub prompt: Option<String>,
}

/// Streams a generation to stdout; returns the text.
fn stream(g: Generation<'_>, stats: bool, owner: &Generator) -> anyhow::Result<String> {
    let mut out = std::io::stdout().lock();
    let mut text = String::new();
    for t in g {
        let t = t?;
        out.write_all(t.text.as_bytes())?;
        out.flush()?;
        text.push_str(&t.text);
    }
    if stats {
        let m = owner.metrics();
        eprintln!(
            "\n[prompt {} tokens, {:.1} tok/s | generated {} tokens, {:.1} tok/s | first token {:.0} ms | peak RSS {:.0} MiB]",
            m.prompt_tokens,
            m.prefill_tokens_per_second,
            m.generated_tokens,
            m.decode_tokens_per_second,
            m.time_to_first_token * 1e3,
            m.peak_rss_bytes as f64 / (1 << 20) as f64,
        );
    }
    Ok(text)
}

/// Runs `kiln generate`.
pub fn run(a: GenerateArgs) -> anyhow::Result<()> {
    let prompt = match a.prompt {
        Some(p) => p,
        None => std::io::read_to_string(std::io::stdin())?,
    };
    if prompt.is_empty() {
        bail!("empty prompt");
    }
    let g = a.args.open()?;
    stream(g.generate(&prompt, &a.args.options()), a.args.stats, &g)?;
    println!();
    Ok(())
}

/// `kiln chat`.
#[derive(Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    pub args: GenArgs,
    /// A system message.
    #[arg(long)]
    pub system: Option<String>,
}

/// Runs `kiln chat`: one user message per line of stdin (with a prompt on
/// a terminal), each answered with the whole conversation as context.
pub fn run_chat(a: ChatArgs) -> anyhow::Result<()> {
    let g = a.args.open()?;
    let opts = a.args.options();
    let tty = std::io::stdin().is_terminal();
    let mut messages = Vec::new();
    if let Some(s) = &a.system {
        messages.push(ChatMessage::new("system", s.clone()));
    }
    if tty {
        eprintln!("kiln chat with {} (Ctrl-D to end)", a.args.model);
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if tty {
            eprint!("> ");
            std::io::stderr().flush()?;
        }
        let Some(line) = lines.next() else { break };
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        messages.push(ChatMessage::new("user", line));
        let reply = stream(g.chat(&messages, &opts), a.args.stats, &g)?;
        println!();
        messages.push(ChatMessage::new("assistant", reply));
    }
    Ok(())
}

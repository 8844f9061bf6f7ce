//! `kiln generate` and `kiln chat`: text generation with a decoder model.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use kiln::{
    ChatMessage, Draft, FinishReason, GenerateOptions, Generation, Generator, Grammar, KvType,
    SamplingOptions,
};

/// Speculative decoding on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DraftArg {
    /// Prompt lookup: drafts the tokens that followed the last 3 tokens'
    /// latest earlier occurrence in the prompt or output.
    Ngram,
    /// The model given with --draft-model, 4 greedy tokens per pass.
    Model,
}

impl DraftArg {
    /// The drafter of `--draft` (if given), else the draft model's when
    /// `--draft-model` was given.
    pub fn choose(draft: Option<DraftArg>, has_model: bool) -> Option<Draft> {
        match draft {
            Some(d) => Some(d.draft()),
            None => has_model.then(Draft::model),
        }
    }

    /// The library's drafter.
    pub fn draft(self) -> Draft {
        match self {
            DraftArg::Ngram => Draft::ngram(),
            DraftArg::Model => Draft::model(),
        }
    }
}

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
    /// Speculative decoding (`ngram`: prompt lookup, no second model):
    /// several tokens per weight pass where the output repeats the input;
    /// greedy output is unchanged. Not used with a grammar.
    #[arg(long, value_enum)]
    pub draft: Option<DraftArg>,
    /// A draft model for speculative decoding (same vocabulary as the
    /// model; implies --draft model).
    #[arg(long, value_name = "MODEL")]
    pub draft_model: Option<String>,
    #[command(flatten)]
    pub constraint: ConstraintArgs,
    /// Print the GBNF grammar of --json-schema, --grammar or --json and
    /// exit, without loading the model.
    #[arg(long, requires = "constraint", help_heading = "Structured output")]
    pub print_grammar: bool,
}

/// Structured output: at most one constraint on the generated text.
#[derive(Args, Debug, Clone, Default)]
#[group(id = "constraint", multiple = false)]
pub struct ConstraintArgs {
    /// Constrain the output to JSON that validates against the JSON Schema
    /// in FILE. The output always parses unless --max-tokens cuts it short
    /// (a warning says so).
    #[arg(long, value_name = "FILE", help_heading = "Structured output")]
    pub json_schema: Option<PathBuf>,
    /// Constrain the output to the GBNF grammar in FILE (llama.cpp's format,
    /// started at its `root` rule).
    #[arg(long, value_name = "FILE", help_heading = "Structured output")]
    pub grammar: Option<PathBuf>,
    /// Constrain the output to a JSON object (any keys and values).
    #[arg(long, help_heading = "Structured output")]
    pub json: bool,
}

impl ConstraintArgs {
    /// Whether a constraint is given.
    pub fn is_set(&self) -> bool {
        self.json_schema.is_some() || self.grammar.is_some() || self.json
    }

    /// Reads and compiles the constraint, if any; errors name the file and
    /// what is wrong with it.
    pub fn grammar(&self) -> anyhow::Result<Option<Grammar>> {
        if let Some(path) = &self.json_schema {
            let text = read(path, "JSON Schema")?;
            let schema: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("the JSON Schema file {} is not JSON", path.display()))?;
            let g = Grammar::json_schema(&schema)
                .with_context(|| format!("cannot use the JSON Schema in {}", path.display()))?;
            return Ok(Some(g));
        }
        if let Some(path) = &self.grammar {
            let text = read(path, "grammar")?;
            let g = Grammar::gbnf(&text)
                .with_context(|| format!("cannot use the GBNF grammar in {}", path.display()))?;
            return Ok(Some(g));
        }
        if self.json {
            return Ok(Some(Grammar::json()));
        }
        Ok(None)
    }
}

/// A constraint file's text.
fn read(path: &Path, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} file {}", path.display()))
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
        if let Some(d) = &self.draft_model {
            b = b.draft(super::resolve_model(d)?);
        }
        Ok(b.open(path)?)
    }

    /// The generation options, with the constraint compiled (once).
    fn options(&self) -> anyhow::Result<GenerateOptions> {
        Ok(GenerateOptions {
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
            grammar: self.constraint.grammar()?,
            draft: DraftArg::choose(self.draft, self.draft_model.is_some()),
        })
    }

    /// With --print-grammar: prints the constraint's GBNF and returns true.
    fn print_grammar(&self) -> anyhow::Result<bool> {
        if !self.print_grammar {
            return Ok(false);
        }
        if let Some(g) = self.constraint.grammar()? {
            let gbnf = g.to_gbnf();
            let mut out = std::io::stdout().lock();
            out.write_all(gbnf.as_bytes())?;
            if !gbnf.ends_with('\n') {
                out.write_all(b"\n")?;
            }
        }
        Ok(true)
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

/// Streams a generation to stdout; returns the text. With a grammar,
/// warns when the token limit cut the output before the grammar completed.
fn stream(mut g: Generation<'_>, args: &GenArgs, owner: &Generator) -> anyhow::Result<String> {
    let mut out = std::io::stdout().lock();
    let mut text = String::new();
    for t in g.by_ref() {
        let t = t?;
        out.write_all(t.text.as_bytes())?;
        out.flush()?;
        text.push_str(&t.text);
    }
    if args.constraint.is_set() && g.finish_reason() == Some(FinishReason::Length) {
        eprintln!(
            "\nwarning: the output ran out of tokens (--max-tokens {}, or the context) before the grammar completed; it is unfinished",
            args.max_tokens
        );
    }
    if args.stats {
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
        if m.draft_tokens > 0 {
            eprintln!(
                "[draft: {} of {} drafted tokens accepted ({:.0}%), {:.2} tokens per decode pass]",
                m.accepted_draft_tokens,
                m.draft_tokens,
                100.0 * m.accepted_draft_tokens as f64 / m.draft_tokens as f64,
                m.generated_tokens.saturating_sub(1) as f64 / m.decode_passes.max(1) as f64
            );
        }
        if args.constraint.is_set() && m.generated_tokens > 0 {
            // The grammar's cost against the rest of a decode step (the
            // step measured here includes it): the bench harness reads it.
            let per_token = m.grammar_seconds / m.generated_tokens as f64;
            let step = 1.0 / m.decode_tokens_per_second.max(1e-9);
            eprintln!(
                "[grammar {:.3} ms/token, {:.1}% of an unconstrained decode step]",
                per_token * 1e3,
                100.0 * per_token / (step - per_token).max(1e-9)
            );
        }
    }
    Ok(text)
}

/// Runs `kiln generate`.
pub fn run(a: GenerateArgs) -> anyhow::Result<()> {
    if a.args.print_grammar()? {
        return Ok(());
    }
    let prompt = match a.prompt {
        Some(p) => p,
        None => std::io::read_to_string(std::io::stdin())?,
    };
    if prompt.is_empty() {
        bail!("empty prompt");
    }
    let t0 = std::time::Instant::now();
    let opts = a.args.options()?;
    if a.args.stats && a.args.constraint.is_set() {
        eprintln!(
            "[grammar compiled in {:.2} ms]",
            t0.elapsed().as_secs_f64() * 1e3
        );
    }
    let g = a.args.open()?;
    stream(g.generate(&prompt, &opts), &a.args, &g)?;
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
    if a.args.print_grammar()? {
        return Ok(());
    }
    let opts = a.args.options()?;
    let g = a.args.open()?;
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
        let reply = stream(g.chat(&messages, &opts), &a.args, &g)?;
        println!();
        messages.push(ChatMessage::new("assistant", reply));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: GenerateArgs,
    }

    fn parse(args: &[&str]) -> Result<GenerateArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("kiln").chain(args.iter().copied())).map(|c| c.a)
    }

    #[test]
    fn constraint_flags_parse() {
        let a = parse(&["--json-schema", "s.json", "hi"]).unwrap();
        assert_eq!(
            a.args.constraint.json_schema.as_deref(),
            Some(Path::new("s.json"))
        );
        assert!(a.args.constraint.is_set());
        let a = parse(&["--grammar", "g.gbnf", "--print-grammar"]).unwrap();
        assert_eq!(
            a.args.constraint.grammar.as_deref(),
            Some(Path::new("g.gbnf"))
        );
        assert!(a.args.print_grammar);
        assert!(parse(&["--json"]).unwrap().args.constraint.json);
        assert!(!parse(&["hi"]).unwrap().args.constraint.is_set());
    }

    #[test]
    fn constraint_flags_conflict() {
        for args in [
            &["--json", "--grammar", "g.gbnf"][..],
            &["--json-schema", "s.json", "--grammar", "g.gbnf"],
            &["--json-schema", "s.json", "--json"],
        ] {
            let e = parse(args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} parsed"));
            assert_eq!(
                e.kind(),
                clap::error::ErrorKind::ArgumentConflict,
                "{args:?}"
            );
        }
    }

    #[test]
    fn print_grammar_needs_a_constraint() {
        let e = parse(&["--print-grammar"]).expect_err("parsed");
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    /// The whole error chain, as `kiln` prints it.
    fn chain(e: &anyhow::Error) -> String {
        format!("{e:#}")
    }

    #[test]
    fn constraint_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        let c = ConstraintArgs {
            json_schema: Some(missing.clone()),
            ..ConstraintArgs::default()
        };
        let e = chain(&c.grammar().unwrap_err());
        assert!(e.contains("missing.json"), "{e}");

        let not_json = dir.path().join("schema.json");
        std::fs::write(&not_json, "{ not json").unwrap();
        let c = ConstraintArgs {
            json_schema: Some(not_json),
            ..ConstraintArgs::default()
        };
        let e = chain(&c.grammar().unwrap_err());
        assert!(e.contains("schema.json") && e.contains("not JSON"), "{e}");

        let unsupported = dir.path().join("pattern.json");
        std::fs::write(&unsupported, r#"{"type": "string", "pattern": "a+"}"#).unwrap();
        let c = ConstraintArgs {
            json_schema: Some(unsupported),
            ..ConstraintArgs::default()
        };
        let e = chain(&c.grammar().unwrap_err());
        assert!(
            e.contains("pattern.json") && e.contains("JSON Schema"),
            "{e}"
        );

        let bad_gbnf = dir.path().join("bad.gbnf");
        std::fs::write(&bad_gbnf, "root ::= (\"a\"\n").unwrap();
        let c = ConstraintArgs {
            grammar: Some(bad_gbnf),
            ..ConstraintArgs::default()
        };
        let e = chain(&c.grammar().unwrap_err());
        assert!(e.contains("bad.gbnf") && e.contains("grammar"), "{e}");
    }

    #[test]
    fn a_gbnf_file_compiles_once_into_the_options() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("yes-no.gbnf");
        let text = "root ::= \"yes\" | \"no\"\n";
        std::fs::write(&path, text).unwrap();
        let a = parse(&["--grammar", path.to_str().unwrap(), "hi"]).unwrap();
        let opts = a.args.options().unwrap();
        let g = opts.grammar.expect("a grammar");
        assert_eq!(g.to_gbnf(), text);
        assert!(g.compiled().matches(b"yes") && !g.compiled().matches(b"maybe"));
    }
}

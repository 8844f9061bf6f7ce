//! Structured output: generations that always parse.
//!
//! A [`Grammar`] constrains a generation so that its text is a sentence of
//! the grammar: JSON that validates against a JSON Schema
//! ([`Grammar::json_schema`]), any JSON object ([`Grammar::json`], OpenAI's
//! `json_object` mode), or a llama.cpp GBNF grammar ([`Grammar::gbnf`]).
//! Every sampled token is drawn from those that keep the output a valid
//! prefix, and the end-of-generation token only where the text is
//! complete. A generation cut short by `max_tokens` ends with
//! [`FinishReason::Length`](crate::FinishReason::Length) and its text is an
//! unfinished prefix of a valid sentence.

mod json_schema;

use std::sync::Arc;

pub use json_schema::json_schema_to_gbnf;
pub use kiln_runtime::grammar::GrammarError;

use crate::Error;

/// A compiled output constraint: cheap to clone.
#[derive(Clone, Debug)]
pub struct Grammar {
    compiled: kiln_runtime::grammar::Grammar,
    gbnf: Arc<str>,
}

impl Grammar {
    /// A llama.cpp GBNF grammar, started at its `root` rule.
    pub fn gbnf(text: &str) -> Result<Grammar, Error> {
        let compiled = kiln_runtime::grammar::Grammar::parse(text)?;
        Ok(Grammar {
            compiled,
            gbnf: text.into(),
        })
    }

    /// JSON that validates against `schema` (the supported subset is in
    /// [`json_schema_to_gbnf`]; any other keyword is an error naming it).
    pub fn json_schema(schema: &serde_json::Value) -> Result<Grammar, Error> {
        Grammar::gbnf(&json_schema_to_gbnf(schema)?)
    }

    /// Any JSON object: OpenAI's `response_format: {"type": "json_object"}`.
    pub fn json() -> Grammar {
        // Compiled once: a server asks for it on every json_object request.
        static JSON: std::sync::OnceLock<Grammar> = std::sync::OnceLock::new();
        JSON.get_or_init(|| {
            Grammar::json_schema(&serde_json::json!({ "type": "object" }))
                .expect("the any-object schema compiles")
        })
        .clone()
    }

    /// The grammar in GBNF (for a JSON Schema: the grammar made from it).
    pub fn to_gbnf(&self) -> &str {
        &self.gbnf
    }

    /// The compiled grammar.
    pub fn compiled(&self) -> &kiln_runtime::grammar::Grammar {
        &self.compiled
    }
}

//! Constrained decoding: grammars whose every output is a valid sentence.
//!
//! A grammar is written in llama.cpp's GBNF format ([`Grammar::parse`]);
//! the facade turns JSON Schemas into GBNF. Characters are Unicode scalar
//! values but matching runs on UTF-8 bytes, so a byte-level token that
//! splits a character is checked like any other: its bytes must continue
//! a valid encoding of something the grammar allows.
//!
//! The parts: `gbnf` (text to rules), `program` (rules to a flat,
//! byte-level program, with the checks that keep matching bounded:
//! undefined rules, left recursion, a grammar that accepts nothing),
//! `automaton` (sets of pushdown stacks, interned as states of a lazily
//! built DFA), `vocab` (the tokens as a byte trie) and `matcher` (one
//! generation's position: which tokens may come next, cached by state).

mod automaton;
mod gbnf;
mod matcher;
mod program;
mod vocab;

use std::sync::Arc;

pub use matcher::Matcher;
pub use vocab::GrammarVocab;

use program::Program;

/// A compiled grammar: cheap to clone, shared between generations.
#[derive(Clone, Debug)]
pub struct Grammar {
    program: Arc<Program>,
}

impl Grammar {
    /// Compiles a GBNF grammar whose start rule is `root`.
    pub fn parse(gbnf: &str) -> Result<Grammar, GrammarError> {
        let rules = gbnf::parse(gbnf)?;
        let program = Program::compile(&rules, "root")?;
        Ok(Grammar {
            program: Arc::new(program),
        })
    }

    /// Whether `text` is a whole sentence of the grammar.
    pub fn matches(&self, text: &[u8]) -> bool {
        self.walk(text)
            .is_some_and(|(a, s)| s != automaton::DEAD && a.is_accepting(s))
    }

    /// Whether `text` begins some sentence of the grammar.
    pub fn matches_prefix(&self, text: &[u8]) -> bool {
        self.walk(text).is_some_and(|(_, s)| s != automaton::DEAD)
    }

    fn walk(&self, text: &[u8]) -> Option<(automaton::Automaton, automaton::StateId)> {
        let mut a = automaton::Automaton::new(self.program.clone());
        let s = a.start().ok()?;
        let s = a.walk(s, text).ok()?;
        Some((a, s))
    }

    pub(crate) fn program(&self) -> &Arc<Program> {
        &self.program
    }
}

/// Why a grammar cannot be compiled or followed.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum GrammarError {
    /// The GBNF text does not parse.
    #[error("grammar syntax error at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// What was expected or found.
        message: String,
    },
    /// A rule is used but never defined.
    #[error("grammar rule `{name}` is used but not defined")]
    UndefinedRule {
        /// The rule's name.
        name: String,
    },
    /// A rule is defined twice.
    #[error("grammar rule `{name}` is defined twice")]
    DuplicateRule {
        /// The rule's name.
        name: String,
    },
    /// The start rule is missing.
    #[error("the grammar has no `{name}` rule to start from")]
    NoRoot {
        /// The start rule's name.
        name: String,
    },
    /// A rule can reach itself without consuming a character; matching
    /// it would never end.
    #[error(
        "grammar rule `{rule}` is left-recursive (it can reach itself without consuming input)"
    )]
    LeftRecursion {
        /// The rule's name.
        rule: String,
    },
    /// No text at all satisfies the grammar or schema.
    #[error("the grammar accepts no text at all (rule `{rule}` can never complete)")]
    AcceptsNothing {
        /// The rule that can never complete.
        rule: String,
    },
    /// The grammar is larger than kiln matches.
    #[error("the grammar is too large: {what} exceeds the limit of {limit}")]
    TooLarge {
        /// What grew past its limit.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// A JSON Schema uses a keyword kiln cannot enforce exactly.
    #[error("JSON Schema keyword `{keyword}` at {path} is not supported: {reason}")]
    Unsupported {
        /// The keyword.
        keyword: String,
        /// JSON pointer of the schema that uses it.
        path: String,
        /// Why, or what to use instead.
        reason: String,
    },
    /// A JSON Schema is malformed.
    #[error("invalid JSON Schema at {path}: {message}")]
    Schema {
        /// JSON pointer of the offending schema.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// No token of the vocabulary continues the output under the grammar.
    #[error(
        "no token of the vocabulary can continue the output under the grammar (after {generated} tokens)"
    )]
    DeadEnd {
        /// Tokens generated so far.
        generated: usize,
    },
    /// A token the grammar does not allow here was fed to the matcher.
    #[error("token {token} is not allowed by the grammar here")]
    Rejected {
        /// The token id.
        token: u32,
    },
}

#[cfg(test)]
mod tests;

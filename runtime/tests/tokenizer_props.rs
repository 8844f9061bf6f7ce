//! Properties on arbitrary text: encoding never fails or panics, ids are in
//! range, and Gemma's tokens decode back to exactly the input (byte fallback
//! covers everything; special-token strings stay text).

mod common;

use std::sync::OnceLock;

use common::tok::{gemma, minilm};
use kiln_runtime::tokenizer::{EncodeOptions, TokenType, Tokenizer};
use proptest::prelude::*;

fn gemma_tok() -> Option<&'static Tokenizer> {
    static TOK: OnceLock<Option<Tokenizer>> = OnceLock::new();
    TOK.get_or_init(gemma).as_ref()
}

fn minilm_tok() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| minilm().1)
}

/// Text biased towards what tokenizers find hard: spaces, tabs, newlines,
/// accents, CJK, Hangul, emoji, control characters and special-token strings.
fn tricky_text() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        any::<char>().prop_map(String::from),
        Just(" ".to_owned()),
        Just("  ".to_owned()),
        Just("\t".to_owned()),
        Just("\n".to_owned()),
        Just("<bos>".to_owned()),
        Just("<start_of_turn>".to_owned()),
        Just("<b>".to_owned()),
        Just("[CLS]".to_owned()),
        Just("[SEP]".to_owned()),
        Just("e\u{301}".to_owned()),
        Just("한국어".to_owned()),
        Just("中文".to_owned()),
        Just("🚀".to_owned()),
        "[a-zA-Z]{1,12}",
    ];
    prop::collection::vec(atom, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn gemma_decodes_to_the_input(text in tricky_text()) {
        let Some(tok) = gemma_tok() else { return Ok(()) };
        let ids = tok.encode(&text, &EncodeOptions::default()).unwrap();
        prop_assert_eq!(ids.first().copied(), Some(2));
        prop_assert_eq!(ids.last().copied(), Some(1));
        for &id in &ids[1..ids.len() - 1] {
            prop_assert_ne!(tok.token_type(id), Some(TokenType::Control));
        }
        prop_assert_eq!(tok.decode(&ids).unwrap(), text);
    }

    #[test]
    fn minilm_ids_are_in_range(text in tricky_text()) {
        let tok = minilm_tok();
        for opts in [EncodeOptions::default(), EncodeOptions { add_special: true, parse_special: true }] {
            let ids = tok.encode(&text, &opts).unwrap();
            prop_assert_eq!(ids.first().copied(), tok.cls());
            prop_assert_eq!(ids.last().copied(), tok.sep());
            prop_assert!(ids.iter().all(|&id| (id as usize) < tok.vocab_size()));
        }
    }
}

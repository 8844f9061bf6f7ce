//! SmolLM2's byte-level BPE against a reference built with Hugging Face's
//! `tokenizers` from the same GGUF vocabulary and merges, on random text;
//! and decode(encode(x)) == x for any text.
//!
//! The reference pipeline is llama.cpp's for `tokenizer.ggml.pre = "smollm"`
//! written as `tokenizers` pre-tokenizers: a `Split` on `\p{N}` (Isolated:
//! every number character alone), then a `Split` on GPT-2's pattern
//! (Isolated, so text no alternative matches stays a piece, as in
//! llama.cpp), then `ByteLevel` without its own regex and without a prefix
//! space; a `BPE` model with no unknown token, no byte fallback, merges
//! applied to every word (llama.cpp's `ignore_merges` is off for SmolLM).
//! Where the two could still differ, none of which the generated text
//! reaches:
//! - the regex engine (fancy-regex) against llama.cpp's hand-written
//!   splitter: the same language, but their Unicode tables may be of
//!   different versions (recently assigned characters);
//! - a merge whose result is no token: `tokenizers` refuses the vocabulary,
//!   llama.cpp (and kiln) keep it (SmolLM2 has none);
//! - control tokens: the reference knows none (no added tokens), so
//!   `<|im_start|>` in the text is text on both sides, as kiln treats it
//!   without `parse_special`.

mod common;

use std::sync::OnceLock;

use common::tok::smollm2_path;
use kiln_runtime::gguf::GgufFile;
use kiln_runtime::tokenizer::{EncodeOptions, Tokenizer, Vocab};
use proptest::prelude::*;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{SplitDelimiterBehavior, Tokenizer as HfTokenizer};

/// llama.cpp's GPT-2 pattern, with the `\s+` its splitter also applies.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

struct Pair {
    kiln: Tokenizer,
    hf: HfTokenizer,
}

fn pair() -> Option<&'static Pair> {
    static PAIR: OnceLock<Option<Pair>> = OnceLock::new();
    PAIR.get_or_init(|| {
        let file = GgufFile::open(smollm2_path()?).expect("SmolLM2 GGUF opens");
        let kiln = Tokenizer::from_gguf(&file).expect("SmolLM2 tokenizer");
        let v = Vocab::from_gguf_metadata(file.metadata()).expect("vocabulary");
        let vocab: tokenizers::models::bpe::Vocab = v
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| ((*t).to_owned(), i as u32))
            .collect();
        let merges: Vec<(String, String)> = v
            .merges
            .iter()
            .map(|m| {
                // As llama.cpp: the first space after the first byte.
                let at = 1 + m.as_bytes()[1..]
                    .iter()
                    .position(|&b| b == b' ')
                    .expect("merge has two parts");
                (m[..at].to_owned(), m[at + 1..].to_owned())
            })
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .expect("reference BPE");
        let split = |pattern: &str| -> PreTokenizerWrapper {
            Split::new(
                SplitPattern::Regex(pattern.to_owned()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .expect("pattern compiles")
            .into()
        };
        let mut hf = HfTokenizer::new(bpe);
        hf.with_pre_tokenizer(Some(Sequence::new(vec![
            split(r"\p{N}"),
            split(GPT2),
            ByteLevel::new(false, false, false).into(),
        ])));
        hf.with_decoder(Some(ByteLevelDecoder::default()));
        Some(Pair { kiln, hf })
    })
    .as_ref()
}

/// Text of the kinds the pre-tokenizer and merges treat differently.
fn mixed_text() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        4 => "[a-zA-Z]{1,10}",
        2 => "[0-9]{1,6}",
        2 => "[!-/:-@\\[-`{-~]{1,3}",
        3 => "[ ]{1,3}",
        2 => "[ \t\n\r]{1,4}",
        1 => "('s|'t|'re|'ve|'m|'ll|'d|'S|'LL|'Re)",
        2 => "[àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿßÀÉÖØÑŒœ]{1,3}",
        1 => Just("e\u{301}".to_owned()),
        2 => "[\u{4e00}-\u{9fa5}]{1,4}",
        2 => "[\u{ac00}-\u{d7a3}]{1,4}",
        1 => "[Приветмир]{1,6}",
        2 => "[\u{1f300}-\u{1f64f}]{1,2}",
        1 => Just("👍🏽".to_owned()),
        1 => Just("👨\u{200d}👩\u{200d}👧".to_owned()),
        1 => "[²³¹¼½¾Ⅻ٣]",
        1 => "[\u{a0}\u{3000}\u{2003}\u{85}\u{200b}]",
        1 => Just("<|im_start|>".to_owned()),
        1 => Just("<|endoftext|>".to_owned()),
        1 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(atom, 0..24).prop_map(|v| v.concat())
}

fn text_only() -> EncodeOptions {
    EncodeOptions {
        add_special: false,
        parse_special: false,
    }
}

/// Known inputs first: they show a mismatch more readably than a shrunk one.
#[test]
fn smollm2_matches_the_reference_on_tricky_inputs() {
    let Some(p) = pair() else { return };
    for text in [
        "  hello",
        "a\n\n b",
        "don't DON'T 'S",
        "x   \n\t y  ",
        "12345 1,000.5",
        "Café 東京 한국어 🚀👍🏽",
        "<|im_start|>user",
        "",
        " ",
        "\u{3000}a\u{a0} b",
    ] {
        let ours = p.kiln.encode(text, &text_only()).unwrap();
        let theirs = p.hf.encode(text, false).unwrap().get_ids().to_vec();
        assert_eq!(ours, theirs, "{text:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn smollm2_matches_the_reference(text in mixed_text()) {
        let Some(p) = pair() else { return Ok(()) };
        let ours = p.kiln.encode(&text, &text_only()).unwrap();
        let theirs = p.hf.encode(text.as_str(), false).unwrap().get_ids().to_vec();
        prop_assert_eq!(&ours, &theirs, "{:?}", text);
        prop_assert_eq!(p.kiln.decode(&ours).unwrap(), p.hf.decode(&theirs, false).unwrap());
    }

    /// SmolLM2's vocabulary has no token for 21 byte values (U+0004,
    /// U+0006, U+0013, U+0014, U+0016, U+001D, the lead bytes 0xF1 and 0xF2
    /// of planes 4 to 11, and bytes UTF-8 never uses): llama.cpp, and so
    /// kiln, leave those bytes out, the reference too. Every other byte
    /// comes back, in order, token by token.
    #[test]
    fn smollm2_decode_inverts_encode(text in prop_oneof![any::<String>(), mixed_text()]) {
        let Some(p) = pair() else { return Ok(()) };
        let ids = p.kiln.encode(&text, &text_only()).unwrap();
        let mut bytes = Vec::new();
        for &id in &ids {
            p.kiln.token_bytes(id, false, &mut bytes);
        }
        let kept: Vec<u8> = text.bytes().filter(|&b| !UNREPRESENTABLE.contains(&b)).collect();
        prop_assert_eq!(&bytes, &kept);
        if kept.len() == text.len() {
            prop_assert_eq!(p.kiln.decode(&ids).unwrap(), text);
        }
    }
}

/// The bytes whose GPT-2 character is not in SmolLM2's vocabulary.
const UNREPRESENTABLE: [u8; 21] = [
    0x04, 0x06, 0x13, 0x14, 0x16, 0x1D, 0xC0, 0xC1, 0xF1, 0xF2, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA,
    0xFB, 0xFC, 0xFD, 0xFE, 0xFF,
];

/// A byte without a token is left out, as llama.cpp and the reference do.
#[test]
fn smollm2_unrepresentable_bytes_are_dropped_like_llama_cpp() {
    let Some(p) = pair() else { return };
    let text = "a\u{4}b\u{40000}c";
    let ids = p.kiln.encode(text, &text_only()).unwrap();
    assert_eq!(ids, p.hf.encode(text, false).unwrap().get_ids());
    assert_eq!(p.kiln.decode(&ids).unwrap(), "ab\u{FFFD}\u{FFFD}\u{FFFD}c");
    // The list is the vocabulary's: GPT-2's character of each byte.
    let printable = |b: u32| matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut next = 256;
    for b in 0..=255u32 {
        let c = if printable(b) {
            b
        } else {
            next += 1;
            next - 1
        };
        let piece = char::from_u32(c).unwrap().to_string();
        assert_eq!(
            p.kiln.token_id(&piece).is_none(),
            UNREPRESENTABLE.contains(&(b as u8)),
            "byte {b:#04x}"
        );
    }
}

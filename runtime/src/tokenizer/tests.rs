//! Unit tests on small in-memory vocabularies.

use super::*;

const N: i32 = 1;
const C: i32 = 3;
const U: i32 = 4;
const B: i32 = 6;

/// A tiny SentencePiece vocabulary: specials, a few pieces with scores, and
/// byte-fallback tokens for every byte.
fn spm_vocab() -> (Vec<String>, Vec<f32>, Vec<i32>) {
    let mut toks: Vec<(String, f32, i32)> = vec![
        ("<pad>".into(), -1000.0, C),
        ("<eos>".into(), -1000.0, C),
        ("<bos>".into(), -1000.0, C),
        ("<unk>".into(), -1000.0, 2),
        ("<b>".into(), -1000.0, U),
        ("  ".into(), -1000.0, U),
        ("▁".into(), -1.0, N),
        ("a".into(), -2.0, N),
        ("b".into(), -3.0, N),
        ("c".into(), -4.0, N),
        ("ab".into(), -5.0, N),
        ("bc".into(), -0.5, N),
        ("▁a".into(), -6.0, N),
        ("xyz".into(), -7.0, N),
        ("bo".into(), -9.5, N),
        ("<".into(), -8.0, N),
        (">".into(), -9.0, N),
        ("bos".into(), -10.0, N),
        ("<bos".into(), -11.0, N),
    ];
    for b in 0..=255u8 {
        toks.push((format!("<0x{b:02X}>"), 0.0, B));
    }
    (
        toks.iter().map(|t| t.0.clone()).collect(),
        toks.iter().map(|t| t.1).collect(),
        toks.iter().map(|t| t.2).collect(),
    )
}

fn spm(add_space_prefix: bool) -> Tokenizer {
    let (t, s, ty) = spm_vocab();
    let mut v = Vocab::new(ModelKind::Spm, t.iter().map(String::as_str).collect());
    v.scores = s;
    v.types = ty;
    v.bos = Some(2);
    v.eos = Some(1);
    v.unk = Some(3);
    v.add_eos = true;
    v.add_space_prefix = add_space_prefix;
    Tokenizer::from_vocab(&v).unwrap()
}

fn ids(t: &Tokenizer, text: &str, add: bool, parse: bool) -> Vec<u32> {
    t.encode(
        text,
        &EncodeOptions {
            add_special: add,
            parse_special: parse,
        },
    )
    .unwrap()
}

fn id(t: &Tokenizer, piece: &str) -> u32 {
    t.token_id(piece).unwrap()
}

#[test]
fn spm_merges_by_score() {
    let t = spm(false);
    // "bc" (-0.5) beats "ab" (-5): a + bc.
    assert_eq!(
        ids(&t, "abc", false, false),
        vec![id(&t, "a"), id(&t, "bc")]
    );
    // Only "ab" applies.
    assert_eq!(ids(&t, "ab", false, false), vec![id(&t, "ab")]);
    // A space becomes ▁ and merges with what follows.
    assert_eq!(
        ids(&t, "b a", false, false),
        vec![id(&t, "b"), id(&t, "▁a")]
    );
}

#[test]
fn spm_bos_eos_and_empty_text() {
    let t = spm(false);
    assert_eq!(ids(&t, "", true, false), vec![2, 1]);
    assert_eq!(ids(&t, "", false, false), Vec::<u32>::new());
    assert_eq!(ids(&t, "a", true, false), vec![2, id(&t, "a"), 1]);
    let no_eos = spm(false).with_add_eos(false).unwrap();
    assert_eq!(ids(&no_eos, "a", true, false), vec![2, id(&t, "a")]);
}

#[test]
fn spm_byte_fallback() {
    let t = spm(false);
    // "é" is no piece: its two UTF-8 bytes.
    assert_eq!(
        ids(&t, "é", false, false),
        vec![id(&t, "<0xC3>"), id(&t, "<0xA9>")]
    );
    assert_eq!(t.decode(&ids(&t, "é a", true, false)).unwrap(), "é a");
}

#[test]
fn spm_space_prefix() {
    let t = spm(true);
    assert_eq!(ids(&t, "a", false, false), vec![id(&t, "▁a")]);
    assert_eq!(t.decode(&ids(&t, "a", true, false)).unwrap(), "a");
}

#[test]
fn spm_special_tokens_are_text_unless_parsed() {
    let t = spm(false);
    let as_text = ids(&t, "<bos>", false, false);
    assert!(!as_text.contains(&2), "{as_text:?}");
    // "<bos" + ">" would merge into the control piece in llama.cpp; never here.
    assert_eq!(as_text, vec![id(&t, "<bos"), id(&t, ">")]);
    assert_eq!(ids(&t, "a<bos>", false, true), vec![id(&t, "a"), 2]);
    // User-defined tokens are matched either way.
    assert_eq!(ids(&t, "<b>a", false, false), vec![4, id(&t, "a")]);
    assert_eq!(
        ids(&t, "a  b", false, false),
        vec![id(&t, "a"), 5, id(&t, "b")]
    );
}

fn wp() -> Tokenizer {
    let toks = [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "▁hello", "▁world", "▁un", "aff", "able",
        "▁,", "▁!", "▁[", "▁]", "▁cls", "▁a", "b", "▁cafe", "▁中", "▁文", "▁ᄒ", "ᅡ", "ᆫ",
    ];
    let mut v = Vocab::new(ModelKind::WordPiece, toks.to_vec());
    v.types = toks
        .iter()
        .map(|t| if t.starts_with('[') { C } else { N })
        .collect();
    v.bos = Some(2);
    v.eos = Some(3);
    v.sep = Some(3);
    v.unk = Some(1);
    v.pad = Some(0);
    v.mask = Some(4);
    Tokenizer::from_vocab(&v).unwrap()
}

#[test]
fn wordpiece_basic() {
    let t = wp();
    let hello = id(&t, "▁hello");
    let world = id(&t, "▁world");
    assert_eq!(
        ids(&t, "Hello, WORLD!", true, false),
        vec![2, hello, 10, world, 11, 3]
    );
    assert_eq!(
        ids(&t, " \t hello\u{3000}world\n", false, false),
        vec![hello, world]
    );
    assert_eq!(
        ids(&t, "unaffable", false, false),
        vec![id(&t, "▁un"), id(&t, "aff"), id(&t, "able")]
    );
    assert_eq!(ids(&t, "", true, false), vec![2, 3]);
}

#[test]
fn wordpiece_normalization() {
    let t = wp();
    // Accents stripped after NFD, then lower-cased.
    assert_eq!(ids(&t, "Café", false, false), vec![id(&t, "▁cafe")]);
    // Control characters dropped, CJK split.
    assert_eq!(
        ids(&t, "hel\u{200B}lo中文", false, false),
        vec![id(&t, "▁hello"), id(&t, "▁中"), id(&t, "▁文")]
    );
    // Hangul decomposes into conjoining jamo.
    assert_eq!(
        ids(&t, "한", false, false),
        vec![id(&t, "▁ᄒ"), id(&t, "ᅡ"), id(&t, "ᆫ")]
    );
}

#[test]
fn wordpiece_unknown_words() {
    let t = wp();
    // Not coverable: the whole word is [UNK].
    assert_eq!(
        ids(&t, "hellox world", false, false),
        vec![1, id(&t, "▁world")]
    );
    // Over 100 characters: [UNK] even though "ab" repeats are coverable.
    let long = "a".to_string() + &"b".repeat(100);
    assert_eq!(ids(&t, &long, false, false), vec![1]);
    let ok = "a".to_string() + &"b".repeat(99);
    assert_eq!(ids(&t, &ok, false, false).len(), 100);
}

#[test]
fn wordpiece_special_strings() {
    let t = wp();
    let text = ids(&t, "[CLS] hello", false, false);
    assert_eq!(
        text,
        vec![id(&t, "▁["), id(&t, "▁cls"), id(&t, "▁]"), id(&t, "▁hello")]
    );
    assert_eq!(
        ids(&t, "[CLS] hello", false, true),
        vec![2, id(&t, "▁hello")]
    );
}

#[test]
fn decode_and_pieces() {
    let t = wp();
    assert_eq!(
        t.decode(&ids(&t, "Hello unaffable", true, false)).unwrap(),
        "hello unaffable"
    );
    assert_eq!(t.token_to_piece(2).as_deref(), Some("[CLS]"));
    assert_eq!(t.token_to_piece(9999), None);
    assert!(t.decode(&[9999]).is_err());
    assert_eq!(t.cls(), Some(2));
    assert_eq!(t.vocab_size(), 23);
    assert_eq!(t.model_kind(), ModelKind::WordPiece);
}

#[test]
fn truncate_keeps_end_token() {
    let t = wp();
    let mut v = ids(&t, "hello world hello world", true, false);
    t.truncate(&mut v, 3);
    assert_eq!(v, vec![2, id(&t, "▁hello"), 3]);
    let mut short = vec![2, 5, 3];
    t.truncate(&mut short, 10);
    assert_eq!(short, vec![2, 5, 3]);
    let mut no_end = vec![2, 5, 6, 7];
    t.truncate(&mut no_end, 2);
    assert_eq!(no_end, vec![2, 5]);
}

#[test]
fn bad_vocabularies_are_typed_errors() {
    let toks = vec!["a", "b"];
    let mut v = Vocab::new(ModelKind::Spm, toks.clone());
    v.scores = vec![0.0];
    assert!(matches!(
        Tokenizer::from_vocab(&v),
        Err(TokenizerError::LengthMismatch {
            key: "tokenizer.ggml.scores",
            ..
        })
    ));
    v.scores = vec![0.0, 0.0];
    v.bos = Some(7);
    assert!(matches!(
        Tokenizer::from_vocab(&v),
        Err(TokenizerError::IdOutOfRange { id: 7, .. })
    ));
    v.bos = None;
    assert!(matches!(
        Tokenizer::from_vocab(&v),
        Err(TokenizerError::MissingSpecialToken("BOS", _))
    ));
    v.add_bos = false;
    v.types = vec![1, 9];
    assert!(matches!(
        Tokenizer::from_vocab(&v),
        Err(TokenizerError::BadTokenType { index: 1, value: 9 })
    ));
    v.types = vec![];
    v.add_space_prefix = false;
    let t = Tokenizer::from_vocab(&v).unwrap();
    // No byte-fallback token for "c".
    assert!(matches!(
        t.encode("c", &EncodeOptions::default()),
        Err(TokenizerError::NoByteToken(b'c'))
    ));
    let empty = Vocab::new(ModelKind::Spm, vec![]);
    assert!(matches!(
        Tokenizer::from_vocab(&empty),
        Err(TokenizerError::BadVocabSize(0))
    ));
    let w = Vocab::new(ModelKind::WordPiece, toks);
    assert!(matches!(
        Tokenizer::from_vocab(&w),
        Err(TokenizerError::MissingSpecialToken(..))
    ));
}

#[test]
fn tokenizer_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tokenizer>();
    assert_send_sync::<TokenizerScratch>();
}

#[test]
fn segments_keep_message_text_as_text() {
    let t = spm(false);
    // The template's control token is parsed, the message's is text.
    let got = t
        .encode_segments(&[("a<bos>", true), ("b<bos>", false)], false)
        .unwrap();
    let mut want = vec![id(&t, "a"), 2];
    want.extend(ids(&t, "b<bos>", false, false));
    assert_eq!(got, want);
    // Raw text across a boundary is one piece: "a" + "b" merges to "ab".
    let joined = t
        .encode_segments(&[("a", true), ("b", false)], false)
        .unwrap();
    assert_eq!(joined, vec![id(&t, "ab")]);
}

/// A tiny byte-level BPE vocabulary: two control tokens, the 256 byte
/// characters, a few merged pieces. Merges (rank order) are below.
fn bpe_tokens() -> (Vec<String>, Vec<i32>) {
    let mut toks: Vec<(String, i32)> = vec![("<|endoftext|>".into(), C), ("ab".into(), C)];
    for b in 0..=255u8 {
        toks.push((bpe::byte_char(b).to_string(), N));
    }
    for t in ["he", "Ġt", "Ġthe", "er", "qqq", "zz", "<b>"] {
        toks.push((t.into(), if t == "<b>" { U } else { N }));
    }
    (
        toks.iter().map(|t| t.0.clone()).collect(),
        toks.iter().map(|t| t.1).collect(),
    )
}

const BPE_MERGES: &[&str] = &["h e", "Ġ t", "Ġt he", "e r", "q q", "qq q", "a b", "Ġ Ġ"];

fn bpe_with(pre: &str, merges: &[&str]) -> Result<Tokenizer, TokenizerError> {
    let (t, ty) = bpe_tokens();
    let mut v = Vocab::new(ModelKind::Bpe, t.iter().map(String::as_str).collect());
    v.types = ty;
    v.bos = Some(0);
    v.eos = Some(0);
    v.merges = merges.to_vec();
    v.pre = Some(pre);
    let t = Tokenizer::from_vocab(&v)?;
    Ok(t)
}

fn bpe(pre: &str) -> Tokenizer {
    bpe_with(pre, BPE_MERGES).unwrap()
}

/// The pieces of `ids`, for readable assertions.
fn pieces_of(t: &Tokenizer, ids: &[u32]) -> Vec<String> {
    ids.iter()
        .map(|&i| t.token_text(i).unwrap().to_owned())
        .collect()
}

#[test]
fn bpe_merges_by_rank_within_words() {
    let t = bpe("gpt-2");
    assert_eq!(t.model_kind(), ModelKind::Bpe);
    // "h e" (rank 0) before "e r" (rank 3); "he r" is no merge.
    assert_eq!(pieces_of(&t, &ids(&t, "her", false, false)), ["he", "r"]);
    // The space joins the word: Ġ+t, then Ġt+he.
    assert_eq!(
        pieces_of(&t, &ids(&t, "the the", false, false)),
        ["t", "he", "Ġthe"]
    );
    // Leftmost first on equal ranks: qq+q, then "qq q".
    assert_eq!(pieces_of(&t, &ids(&t, "qqq", false, false)), ["qqq"]);
    // Merges never cross words: "r" and " t" stay apart.
    assert_eq!(
        pieces_of(&t, &ids(&t, "her the", false, false)),
        ["he", "r", "Ġthe"]
    );
    // No BOS by default for BPE; add_special adds nothing here.
    assert_eq!(ids(&t, "", true, false), Vec::<u32>::new());
}

#[test]
fn bpe_merge_results_outside_the_vocabulary_fall_back_like_llama_cpp() {
    let t = bpe("gpt-2");
    // "q q" makes "qq", which is no token: llama.cpp writes the tokens of
    // its one-byte characters.
    assert_eq!(pieces_of(&t, &ids(&t, "qq", false, false)), ["q", "q"]);
    // "Ġ Ġ" makes "ĠĠ" (no token); Ġ is not a one-byte character, so
    // llama.cpp drops it. Only a run of spaces before more text hits this.
    assert_eq!(
        pieces_of(&t, &ids(&t, "x   y", false, false)),
        ["x", "Ġ", "y"]
    );
}

#[test]
fn bpe_ignore_merges_only_for_llama3() {
    // "zz" is a token no merge reaches.
    assert_eq!(
        pieces_of(&bpe("gpt-2"), &ids(&bpe("gpt-2"), "zz", false, false)),
        ["z", "z"]
    );
    let l3 = bpe("llama3");
    assert_eq!(pieces_of(&l3, &ids(&l3, "zz", false, false)), ["zz"]);
    // Llama 3 adds BOS when the GGUF does not say otherwise; from_vocab
    // takes the vocabulary's flag as it is.
    assert_eq!(l3.start_token(), None);
}

#[test]
fn bpe_control_tokens_are_text_unless_parsed() {
    let t = bpe("smollm");
    // "a b" would make the control token "ab": never from text.
    assert_eq!(pieces_of(&t, &ids(&t, "ab", false, false)), ["a", "b"]);
    assert_eq!(ids(&t, "ab", false, true), [1]);
    let eot = ids(&t, "x<|endoftext|>", false, false);
    assert!(!eot.contains(&0), "{eot:?}");
    assert_eq!(ids(&t, "x<|endoftext|>", false, true)[1..], [0]);
    // User-defined tokens are cut out either way.
    let b = t.token_id("<b>").unwrap();
    assert_eq!(ids(&t, "x<b>", false, false)[1..], [b]);
    assert_eq!(t.decode(&ids(&t, "x<b>y", false, false)).unwrap(), "x<b>y");
}

#[test]
fn bpe_decodes_bytes() {
    let t = bpe("smollm");
    for text in ["héllo wörld 12 ", "東京\n\n\t🚀", "\u{0}\u{7f}\u{ad}", ""] {
        let ids = ids(&t, text, false, false);
        assert_eq!(t.decode(&ids).unwrap(), text);
        // Token by token, the bytes add up to the text even where a token
        // holds part of a character.
        let mut bytes = Vec::new();
        for &id in &ids {
            t.token_bytes(id, false, &mut bytes);
        }
        assert_eq!(bytes, text.as_bytes());
    }
    // One byte of "é" alone is not UTF-8: token_to_piece shows U+FFFD.
    let e = ids(&t, "é", false, false);
    assert_eq!(e.len(), 2);
    assert_eq!(t.token_to_piece(e[0]).as_deref(), Some("\u{FFFD}"));
    assert_eq!(t.token_to_piece(0).as_deref(), Some("<|endoftext|>"));
    assert_eq!(t.decode(&[0]).unwrap(), "");
}

#[test]
fn bpe_hostile_vocabularies_are_typed_errors() {
    // Merges that name strings which are no tokens load, as in llama.cpp.
    let odd = bpe_with("smollm", &["x y", "nope never", "xy z"]).unwrap();
    assert_eq!(
        pieces_of(&odd, &ids(&odd, "xyz", false, false)),
        ["x", "y", "z"]
    );
    for (k, bad) in ["hello", "", " x", "x "].into_iter().enumerate() {
        let mut merges = vec!["h e"; k];
        merges.push(bad);
        match bpe_with("smollm", &merges) {
            Err(TokenizerError::BadMerge { index, merge, .. }) => {
                assert_eq!((index, merge.as_str()), (k, bad));
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    match bpe_with("falcon", BPE_MERGES) {
        Err(e @ TokenizerError::UnknownPreTokenizer { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("\"falcon\"") && msg.contains("smollm"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
    let (t, _) = bpe_tokens();
    let mut v = Vocab::new(ModelKind::Bpe, t.iter().map(String::as_str).collect());
    v.merges = BPE_MERGES.to_vec();
    assert!(matches!(
        Tokenizer::from_vocab(&v),
        Err(TokenizerError::UnknownPreTokenizer { name, .. }) if name == "default"
    ));
    v.pre = Some("gpt-2");
    v.add_bos = true;
    assert!(matches!(
        Tokenizer::from_vocab(&v),
        Err(TokenizerError::MissingSpecialToken("BOS", "BPE"))
    ));
    v.add_bos = false;
    v.scores = vec![0.0];
    assert!(matches!(
        Tokenizer::from_vocab(&v),
        Err(TokenizerError::LengthMismatch { .. })
    ));
}

/// GGUF metadata of a BPE vocabulary, written and read back in memory.
fn bpe_gguf(
    edit: impl FnOnce(&mut Vec<(&'static str, crate::gguf::Value)>),
) -> crate::gguf::GgufFile {
    use crate::gguf::{GgufFile, GgufWriter, Value};
    let (t, ty) = bpe_tokens();
    let mut kv: Vec<(&'static str, Value)> = vec![
        ("general.architecture", Value::String("llama".into())),
        (keys::MODEL, Value::String("gpt2".into())),
        (keys::PRE, Value::String("smollm".into())),
        (keys::TOKENS, Value::string_array(&t)),
        (keys::TOKEN_TYPE, Value::i32_array(&ty)),
        (keys::MERGES, Value::string_array(BPE_MERGES)),
        (keys::BOS, Value::U32(0)),
        (keys::EOS, Value::U32(0)),
    ];
    edit(&mut kv);
    let mut w = GgufWriter::new();
    for (k, v) in kv {
        w.add_metadata(k, v).unwrap();
    }
    let bytes = w.begin(Vec::new()).unwrap().finish().unwrap();
    GgufFile::from_vec(bytes, "bpe.gguf").unwrap()
}

#[test]
fn bpe_from_gguf_metadata() {
    let ok = Tokenizer::from_gguf(&bpe_gguf(|_| {})).unwrap();
    assert_eq!(pieces_of(&ok, &ids(&ok, "her", false, false)), ["he", "r"]);
    assert_eq!(ok.start_token(), None);
    // Llama 3 adds BOS unless the GGUF says otherwise.
    let l3 = |add: Option<bool>| {
        Tokenizer::from_gguf(&bpe_gguf(|kv| {
            kv[2].1 = crate::gguf::Value::String("llama-bpe".into());
            if let Some(a) = add {
                kv.push((keys::ADD_BOS, crate::gguf::Value::Bool(a)));
            }
        }))
        .unwrap()
    };
    assert_eq!(l3(None).start_token(), Some(0));
    assert_eq!(l3(Some(false)).start_token(), None);
    let missing = Tokenizer::from_gguf(&bpe_gguf(|kv| kv.retain(|(k, _)| *k != keys::MERGES)));
    assert!(
        matches!(missing, Err(TokenizerError::MissingKey(keys::MERGES))),
        "{missing:?}"
    );
    let wrong = Tokenizer::from_gguf(&bpe_gguf(|kv| {
        kv[5].1 = crate::gguf::Value::i32_array(&[1, 2]);
    }));
    assert!(matches!(wrong, Err(TokenizerError::Gguf(_))), "{wrong:?}");
    let unknown = Tokenizer::from_gguf(&bpe_gguf(|kv| {
        kv[2].1 = crate::gguf::Value::String("deepseek-coder".into());
    }));
    assert!(
        matches!(&unknown, Err(TokenizerError::UnknownPreTokenizer { name, .. }) if name == "deepseek-coder"),
        "{unknown:?}"
    );
}

//! Token ids against the reference tokenizers on the 24 golden inputs:
//! all-MiniLM-L6-v2 against Hugging Face (sentence-transformers goldens),
//! Gemma against llama.cpp (which agrees with Hugging Face on all 24),
//! SmolLM2 (byte-level BPE) against llama.cpp.

mod common;

use std::time::Instant;

use common::tok::{embeddinggemma_like, gemma, gemma_path, goldens, minilm, smollm2, smollm2_path};
use kiln_runtime::gguf::GgufFile;
use kiln_runtime::tokenizer::{EncodeOptions, ModelKind, TokenType, Tokenizer, TokenizerScratch};

/// The context MiniLM's references truncate to.
const MINILM_CONTEXT: usize = 512;

fn check_all(tok: &Tokenizer, file: &str) -> usize {
    let golden = goldens(file);
    assert_eq!(golden.len(), 24, "{file}");
    let mut ok = 0;
    for g in &golden {
        let ids = tok.encode(&g.text, &EncodeOptions::default()).unwrap();
        if ids == g.token_ids {
            ok += 1;
        } else {
            println!(
                "{file}: mismatch on {:?}\n  kiln:   {ids:?}\n  golden: {:?}",
                g.text, g.token_ids
            );
        }
    }
    println!("{file}: {ok}/{} inputs match", golden.len());
    ok
}

#[test]
fn minilm_matches_hugging_face_on_every_input() {
    let (_f, tok) = minilm();
    assert_eq!(tok.model_kind(), ModelKind::WordPiece);
    assert_eq!(check_all(&tok, "all-MiniLM-L6-v2.st.jsonl"), 24);
}

#[test]
fn minilm_differs_from_llama_cpp_only_on_korean() {
    let (_f, tok) = minilm();
    for file in [
        "all-MiniLM-L6-v2.llamacpp.jsonl",
        "all-MiniLM-L6-v2.cli_tokens.jsonl",
    ] {
        let mut differ = Vec::new();
        for g in goldens(file) {
            if tok.encode(&g.text, &EncodeOptions::default()).unwrap() != g.token_ids {
                differ.push(g.text);
            }
        }
        // llama.cpp does not decompose Hangul syllables (17 ids, HF: 36).
        assert_eq!(differ.len(), 1, "{file}: {differ:?}");
        assert!(differ[0].starts_with("안녕하세요"), "{file}: {differ:?}");
    }
}

#[test]
fn minilm_truncation_keeps_sep_like_the_references() {
    let (_f, tok) = minilm();
    let mut truncated = 0;
    for g in goldens("all-MiniLM-L6-v2.st.jsonl") {
        let mut ids = tok.encode(&g.text, &EncodeOptions::default()).unwrap();
        tok.truncate(&mut ids, MINILM_CONTEXT);
        assert_eq!(Some(ids.len()), g.n_tokens_used, "{:?}", g.text);
        assert_eq!(ids.last().copied(), tok.sep());
        assert_eq!(ids[..ids.len() - 1], g.token_ids[..ids.len() - 1]);
        truncated += usize::from(g.token_ids.len() > MINILM_CONTEXT);
    }
    assert!(
        truncated >= 1,
        "the goldens include a text longer than the context"
    );
}

#[test]
fn gemma_matches_llama_cpp_on_every_input() {
    let Some(tok) = gemma() else { return };
    assert_eq!(tok.model_kind(), ModelKind::Spm);
    assert_eq!((tok.bos(), tok.eos()), (Some(2), Some(1)));
    for file in [
        "embeddinggemma-300m.llamacpp.jsonl",
        "embeddinggemma-300m.cli_tokens.jsonl",
        "embeddinggemma-300m.st.jsonl",
    ] {
        assert_eq!(check_all(&tok, file), 24, "{file}");
    }
}

/// SmolLM2's GGUF adds no BOS (`add_bos_token = false`), as the goldens,
/// which llama.cpp made with the model's own setting.
#[test]
fn smollm2_matches_llama_cpp_on_every_input() {
    let Some(tok) = smollm2() else { return };
    assert_eq!(tok.model_kind(), ModelKind::Bpe);
    assert_eq!(tok.vocab_size(), 49_152);
    assert_eq!(
        (tok.bos(), tok.eos(), tok.unk()),
        (Some(1), Some(2), Some(0))
    );
    assert_eq!((tok.start_token(), tok.end_token()), (None, None));
    assert_eq!(check_all(&tok, "smollm2-135m.cli_tokens.jsonl"), 24);
}

#[test]
fn smollm2_decodes_the_goldens_token_by_token() {
    let Some(tok) = smollm2() else { return };
    let mut split_chars = 0;
    for g in goldens("smollm2-135m.cli_tokens.jsonl") {
        assert_eq!(tok.decode(&g.token_ids).unwrap(), g.text);
        // Streaming: each token's bytes appended in turn give the text,
        // also where one token holds only part of a character.
        let mut bytes = Vec::new();
        for &id in &g.token_ids {
            let before = bytes.len();
            tok.token_bytes(id, false, &mut bytes);
            split_chars += usize::from(std::str::from_utf8(&bytes[before..]).is_err());
        }
        assert_eq!(bytes, g.text.as_bytes());
    }
    assert!(split_chars > 0, "the goldens split some character");
}

#[test]
fn smollm2_special_tokens_only_when_parsed() {
    let Some(tok) = smollm2() else { return };
    let plain = EncodeOptions::default();
    let parse = EncodeOptions {
        parse_special: true,
        ..EncodeOptions::default()
    };
    let start = tok.token_id("<|im_start|>").unwrap();
    let end = tok.token_id("<|im_end|>").unwrap();
    assert_eq!((start, end), (1, 2));
    let text = "<|im_start|>user\nHi there<|im_end|>\n<|endoftext|>";
    let off = tok.encode(text, &plain).unwrap();
    assert!(
        off.iter()
            .all(|&t| tok.token_type(t) != Some(TokenType::Control)),
        "{off:?}"
    );
    assert_eq!(tok.decode(&off).unwrap(), text);
    let on = tok.encode(text, &parse).unwrap();
    let user = tok.encode("user\nHi there", &plain).unwrap();
    let mut want = vec![start];
    want.extend(&user);
    want.push(end);
    want.extend(tok.encode("\n", &plain).unwrap());
    want.push(0);
    assert_eq!(on, want);
    // Control tokens are left out of decoded text, shown by token_to_piece.
    assert_eq!(tok.decode(&on).unwrap(), "user\nHi there\n");
    assert_eq!(tok.token_to_piece(start).as_deref(), Some("<|im_start|>"));
    // A chat prompt: template parts parsed, the message's text is text.
    let seg = tok
        .encode_segments(
            &[
                ("<|im_start|>user\n", true),
                ("<|im_end|>", false),
                ("<|im_end|>", true),
            ],
            false,
        )
        .unwrap();
    assert_eq!(seg[0], start);
    assert_eq!(seg.last(), Some(&end));
    assert!(!seg[1..seg.len() - 1].contains(&end), "{seg:?}");
}

/// Encoding speed on the golden sentences and on one long text (run with
/// `cargo test -p kiln-runtime --release --test tokenizer_goldens -- --ignored --nocapture`).
#[test]
#[ignore = "a measurement, not a check"]
fn smollm2_encode_speed() {
    let Some(tok) = smollm2() else { return };
    let texts: Vec<String> = goldens("smollm2-135m.cli_tokens.jsonl")
        .into_iter()
        .map(|g| g.text)
        .collect();
    let long: String = texts
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join("\n")
        .repeat(20);
    let opts = EncodeOptions::default();
    let mut out = Vec::new();
    let mut scratch = TokenizerScratch::new();
    let mut run = |name: &str, texts: &[&str], reps: usize| {
        let mut tokens = 0;
        let mut bytes = 0;
        for t in texts {
            tok.encode_into(t, &opts, &mut out, &mut scratch).unwrap();
        }
        let t0 = Instant::now();
        for _ in 0..reps {
            for t in texts {
                tok.encode_into(t, &opts, &mut out, &mut scratch).unwrap();
                tokens += out.len();
                bytes += t.len();
            }
        }
        let dt = t0.elapsed().as_secs_f64();
        println!(
            "{name}: {:.2} M tokens/s, {:.1} MB/s, {:.2} µs per text ({} texts x {reps})",
            tokens as f64 / dt / 1e6,
            bytes as f64 / dt / 1e6,
            dt * 1e6 / (reps * texts.len()) as f64,
            texts.len()
        );
    };
    let golden: Vec<&str> = texts.iter().map(String::as_str).collect();
    run("SmolLM2, 24 golden sentences", &golden, 200);
    let short: Vec<&str> = golden.iter().copied().filter(|t| t.len() < 200).collect();
    run("SmolLM2, the 22 short sentences", &short, 2000);
    run(
        &format!("SmolLM2, one text of {} KB", long.len() / 1000),
        &[&long],
        10,
    );
}

/// EmbeddingGemma's GGUF marks `<start_of_image>`/`<end_of_image>` as
/// control tokens (Gemma-3-270M: user-defined): they are text unless special
/// tokens are parsed, and the goldens are unaffected.
#[test]
fn embeddinggemma_token_types() {
    let Some(tok) = embeddinggemma_like() else {
        return;
    };
    assert_eq!(check_all(&tok, "embeddinggemma-300m.llamacpp.jsonl"), 24);
    let image = tok.token_id("<start_of_image>").unwrap();
    let off = tok
        .encode("<start_of_image>", &EncodeOptions::default())
        .unwrap();
    assert!(!off.contains(&image) && off.len() > 3, "{off:?}");
    let parse = EncodeOptions {
        parse_special: true,
        ..EncodeOptions::default()
    };
    assert_eq!(
        tok.encode("<start_of_image>", &parse).unwrap(),
        [2, image, 1]
    );
    // Gemma-3-270M's types: a user-defined token, matched either way.
    let Some(g270) = gemma() else { return };
    assert_eq!(
        g270.encode("<start_of_image>", &EncodeOptions::default())
            .unwrap(),
        [2, image, 1]
    );
}

#[test]
fn gemma_decode_round_trips_the_goldens() {
    let Some(tok) = gemma() else { return };
    for g in goldens("embeddinggemma-300m.llamacpp.jsonl") {
        assert_eq!(tok.decode(&g.token_ids).unwrap(), g.text);
    }
}

#[test]
fn special_token_strings_are_text_unless_parsing_is_on() {
    let parse = EncodeOptions {
        parse_special: true,
        ..EncodeOptions::default()
    };
    let plain = EncodeOptions::default();

    let (_f, bert) = minilm();
    let (cls, sep) = (bert.cls().unwrap(), bert.sep().unwrap());
    let text = "[CLS] hello [SEP] [MASK]";
    let off = bert.encode(text, &plain).unwrap();
    assert_eq!(
        off.iter().filter(|&&t| t == cls || t == sep).count(),
        2,
        "{off:?}"
    );
    assert!(!off.contains(&bert.mask().unwrap()));
    let on = bert.encode(text, &parse).unwrap();
    assert_eq!(on.len(), 6, "{on:?}");
    assert_eq!(on[..2], [cls, cls]);
    assert_eq!(on[3..], [sep, bert.mask().unwrap(), sep]);

    let Some(gemma) = gemma() else { return };
    let turn = gemma.token_id("<start_of_turn>").unwrap();
    for text in [
        "<start_of_turn>user\nhi<end_of_turn>",
        "<bos>x<eos>",
        "<pad><mask><unk>",
    ] {
        let off = gemma.encode(text, &plain).unwrap();
        let inner = &off[1..off.len() - 1];
        assert!(
            inner
                .iter()
                .all(|&t| gemma.token_type(t) != Some(kiln_runtime::tokenizer::TokenType::Control)),
            "{text:?} -> {off:?}"
        );
        assert_eq!(gemma.decode(&off).unwrap(), text);
    }
    let on = gemma.encode("<start_of_turn>user\nhi", &parse).unwrap();
    assert_eq!(on[..2], [2, turn]);
    assert_eq!(gemma.encode("<bos>", &parse).unwrap(), [2, 2, 1]);
    // User-defined tokens (here "<b>", a run of spaces) are cut out either way.
    let bold = gemma.token_id("<b>").unwrap();
    assert_eq!(gemma.encode("<b>", &plain).unwrap(), [2, bold, 1]);
}

#[test]
fn empty_text_is_just_the_special_tokens() {
    let none = EncodeOptions {
        add_special: false,
        ..EncodeOptions::default()
    };
    let (_f, bert) = minilm();
    assert_eq!(
        bert.encode("", &EncodeOptions::default()).unwrap(),
        [101, 102]
    );
    assert!(bert.encode("", &none).unwrap().is_empty());
    assert!(bert.encode(" \t\u{200B}", &none).unwrap().is_empty());
    let Some(gemma) = gemma() else { return };
    assert_eq!(gemma.encode("", &EncodeOptions::default()).unwrap(), [2, 1]);
    assert!(gemma.encode("", &none).unwrap().is_empty());
}

/// Build times (printed; the bars are a few ms for MiniLM and < 50 ms for
/// Gemma's 262,144 pieces, not asserted on a shared machine).
#[test]
fn build_time() {
    let file = GgufFile::open(common::tok::fixtures().join("all-MiniLM-L6-v2-Q8_0.gguf")).unwrap();
    let best = |f: &GgufFile| {
        (0..5)
            .map(|_| {
                let t = Instant::now();
                let tok = Tokenizer::from_gguf(f).unwrap();
                let dt = t.elapsed();
                drop(tok);
                dt
            })
            .min()
            .unwrap()
    };
    println!("MiniLM tokenizer built in {:?} (best of 5)", best(&file));
    if let Some(path) = smollm2_path() {
        let file = GgufFile::open(path).unwrap();
        println!("SmolLM2 tokenizer built in {:?} (best of 5)", best(&file));
    }
    let Some(path) = gemma_path() else { return };
    let file = GgufFile::open(path).unwrap();
    println!("Gemma tokenizer built in {:?} (best of 5)", best(&file));
}

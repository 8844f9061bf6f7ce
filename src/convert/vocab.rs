//! Tokenizer metadata (`tokenizer.ggml.*`) as llama.cpp's converter writes it.
//!
//! Two vocabularies: SentencePiece (`tokenizer.model`, Gemma) and WordPiece
//! (BERT, from `tokenizer.json` or `vocab.txt`), plus the special tokens
//! and `add_*_token` flags that gguf-py's `SpecialVocab` derives from
//! `tokenizer.json`'s post-processor and `tokenizer_config.json`.

use std::path::Path;

use serde_json::Value as Json;

use super::sentencepiece::{PieceType, parse_pieces};
use super::{ConvertError, read_json, read_json_opt};
use kiln_runtime::gguf::Value;

/// llama.cpp token types (`llama_token_type`, gguf-py `TokenType`).
pub mod token_type {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}

/// Most tokens a vocabulary may have (`vocab_size` or the largest id):
/// 8x the largest real vocabularies (~262K), so that a hostile id cannot
/// size the tables.
pub const MAX_VOCAB: usize = 1 << 21;

/// Score given to added tokens (as llama.cpp's converter does).
const ADDED_TOKEN_SCORE: f32 = -1000.0;
/// Score of padding entries beyond the tokenizer's own vocabulary.
const PAD_SCORE: f32 = -10000.0;
/// The SentencePiece word-start marker, U+2581.
const WORD_START: &str = "\u{2581}";

/// A vocabulary in id order.
pub struct Vocab {
    pub tokens: Vec<String>,
    pub scores: Option<Vec<f32>>,
    pub types: Vec<i32>,
}

/// Tokens that Gemma-family configs leave unmarked but llama.cpp treats as
/// control tokens (`does_token_look_special` in convert_hf_to_gguf.py).
fn looks_special(t: &str) -> bool {
    matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<\u{ff5c}") && t.ends_with("\u{ff5c}>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
}

/// The SentencePiece vocabulary, padded to `vocab_size` entries, with the
/// added tokens of `added_tokens.json` and `tokenizer_config.json` applied.
pub fn sentencepiece(dir: &Path, vocab_size: Option<usize>) -> Result<Vocab, ConvertError> {
    let path = dir.join("tokenizer.model");
    let bytes = std::fs::read(&path).map_err(|e| ConvertError::io(&path, e))?;
    let pieces = parse_pieces(&bytes).map_err(|source| ConvertError::SentencePiece {
        path: path.clone(),
        source,
    })?;
    let n = vocab_size.unwrap_or(pieces.len());
    let mut tokens: Vec<String> = (0..n).map(|i| format!("[PAD{i}]")).collect();
    let mut scores = vec![PAD_SCORE; n];
    let mut types = vec![token_type::UNUSED; n];
    for (i, p) in pieces.into_iter().enumerate().take(n) {
        types[i] = match p.kind {
            PieceType::Unknown => token_type::UNKNOWN,
            PieceType::Control => token_type::CONTROL,
            PieceType::Unused => token_type::UNUSED,
            PieceType::Byte => token_type::BYTE,
            PieceType::Normal | PieceType::UserDefined => token_type::NORMAL,
        };
        tokens[i] = p.piece;
        scores[i] = p.score;
    }
    if let Some(Json::Object(added)) = read_json_opt(&dir.join("added_tokens.json"))? {
        for (text, id) in added {
            let Some(id) = id.as_u64().map(|i| i as usize).filter(|&i| i < n) else {
                continue;
            };
            tokens[id] = text;
            scores[id] = ADDED_TOKEN_SCORE;
            types[id] = token_type::USER_DEFINED;
        }
    }
    if let Some(cfg) = read_json_opt(&dir.join("tokenizer_config.json"))?
        && let Some(Json::Object(decoder)) = cfg.get("added_tokens_decoder")
    {
        for (id, data) in decoder {
            let Some(id) = id.parse::<usize>().ok().filter(|&i| i < n) else {
                continue;
            };
            let Some(content) = data.get("content").and_then(Json::as_str) else {
                continue;
            };
            let special = data.get("special").and_then(Json::as_bool).unwrap_or(false);
            if special || looks_special(content) {
                types[id] = token_type::CONTROL;
                tokens[id] = content.to_owned();
            } else {
                types[id] = token_type::USER_DEFINED;
                tokens[id] = content.replace(WORD_START, " ");
            }
            scores[id] = ADDED_TOKEN_SCORE;
        }
    }
    Ok(Vocab {
        tokens,
        scores: Some(scores),
        types,
    })
}

/// The WordPiece vocabulary of a BERT checkpoint in llama.cpp's "phantom
/// space" form: word-start pieces get U+2581 in front, `##` continuations
/// lose their `##`, control tokens stay as they are.
pub fn wordpiece(dir: &Path, vocab_size: Option<usize>) -> Result<Vocab, ConvertError> {
    let tok_path = dir.join("tokenizer.json");
    let tok_json = read_json_opt(&tok_path)?;
    let mut by_id: Vec<Option<String>> = Vec::new();
    let mut put = |id: usize, t: String| {
        if by_id.len() <= id {
            by_id.resize(id + 1, None);
        }
        by_id[id] = Some(t);
    };
    match tok_json
        .as_ref()
        .and_then(|t| t.pointer("/model/vocab"))
        .and_then(Json::as_object)
    {
        Some(vocab) => {
            for (t, id) in vocab {
                if let Some(id) = id.as_u64() {
                    let id = usize::try_from(id)
                        .ok()
                        .filter(|&i| i < MAX_VOCAB)
                        .ok_or_else(|| ConvertError::Invalid {
                            path: tok_path.clone(),
                            key: format!("model.vocab[{t:?}]"),
                            value: id.to_string(),
                            why: format!("token ids must be below {MAX_VOCAB}"),
                        })?;
                    put(id, t.clone());
                }
            }
        }
        None => {
            let path = dir.join("vocab.txt");
            let text = std::fs::read_to_string(&path).map_err(|e| ConvertError::io(&path, e))?;
            if text.lines().count() > MAX_VOCAB {
                return Err(ConvertError::Invalid {
                    path,
                    key: "lines".into(),
                    value: text.lines().count().to_string(),
                    why: format!("at most {MAX_VOCAB} tokens"),
                });
            }
            for (id, line) in text.lines().enumerate() {
                put(id, line.to_owned());
            }
        }
    }
    let mut added: Vec<(usize, String, bool)> = Vec::new();
    if let Some(list) = tok_json
        .as_ref()
        .and_then(|t| t.get("added_tokens"))
        .and_then(Json::as_array)
    {
        for a in list {
            if let (Some(id), Some(content)) = (a["id"].as_u64(), a["content"].as_str()) {
                added.push((
                    id as usize,
                    content.to_owned(),
                    a["special"].as_bool().unwrap_or(false),
                ));
            }
        }
    }
    let n = vocab_size.unwrap_or(by_id.len());
    let mut tokens = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    for id in 0..n {
        let Some(tok) = by_id.get(id).cloned().flatten() else {
            tokens.push(format!("[PAD{id}]"));
            types.push(token_type::UNUSED);
            continue;
        };
        let (tok, ty) = match added.iter().find(|a| a.1 == tok) {
            Some(&(_, _, special)) if special || looks_special(&tok) => (tok, token_type::CONTROL),
            Some(_) => (tok.replace(WORD_START, " "), token_type::USER_DEFINED),
            None => (tok, token_type::NORMAL),
        };
        let phantom = if ty == token_type::CONTROL {
            tok
        } else if let Some(rest) = tok.strip_prefix("##") {
            rest.to_owned()
        } else {
            format!("{WORD_START}{tok}")
        };
        tokens.push(phantom);
        types.push(ty);
    }
    Ok(Vocab {
        tokens,
        scores: None,
        types,
    })
}

/// The parts of `tokenizer.json` that special tokens need (`added_tokens`,
/// `post_processor`, `normalizer`), without building the rest: Gemma's file
/// is 33 MB of vocabulary and merges that would cost ~150 MB as a JSON tree.
fn read_tokenizer_json_light(path: &Path) -> Result<Option<Json>, ConvertError> {
    #[derive(serde::Deserialize)]
    struct Light {
        #[serde(default)]
        added_tokens: Json,
        #[serde(default)]
        post_processor: Json,
        #[serde(default)]
        normalizer: Json,
    }
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ConvertError::io(path, e)),
    };
    let light: Light =
        serde_json::from_reader(std::io::BufReader::new(file)).map_err(|e| ConvertError::Json {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
    Ok(Some(serde_json::json!({
        "added_tokens": light.added_tokens,
        "post_processor": light.post_processor,
        "normalizer": light.normalizer,
    })))
}

/// The id of a special token named in `tokenizer_config.json` (a string or
/// an object with `content`), looked up among the added tokens, then the
/// vocabulary.
fn token_id(content: &Json, tok_json: Option<&Json>, vocab: &Vocab) -> Option<u32> {
    let text = content
        .as_str()
        .or_else(|| content.get("content")?.as_str())?;
    if let Some(list) = tok_json
        .and_then(|t| t.get("added_tokens"))
        .and_then(Json::as_array)
        && let Some(id) = list
            .iter()
            .find(|a| a["content"].as_str() == Some(text))
            .and_then(|a| a["id"].as_u64())
    {
        return u32::try_from(id).ok();
    }
    vocab
        .tokens
        .iter()
        .position(|t| t == text)
        .map(|i| i as u32)
}

/// Special token ids and `add_*` flags, in gguf-py's key order.
pub fn special_tokens(dir: &Path, vocab: &Vocab) -> Result<Vec<(String, Value)>, ConvertError> {
    let tok_json = read_tokenizer_json_light(&dir.join("tokenizer.json"))?;
    let cfg = read_json_opt(&dir.join("tokenizer_config.json"))?.unwrap_or(Json::Null);
    let model_cfg = read_json(&dir.join("config.json"))?;

    // The post-processor template says which specials wrap a sequence.
    let template = tok_json
        .as_ref()
        .and_then(|t| t.get("post_processor"))
        .filter(|p| p["type"] == "TemplateProcessing");
    let special_of = |item: &Json| {
        item.pointer("/SpecialToken/id")
            .and_then(Json::as_str)
            .map(str::to_owned)
    };
    let single = template
        .and_then(|t| t["single"].as_array())
        .cloned()
        .unwrap_or_default();
    let first = single.first().and_then(special_of);
    let last = if single.len() > 1 {
        single.last().and_then(special_of)
    } else {
        None
    };
    let template_id = |name: &Option<String>| -> Option<u32> {
        let name = name.as_ref()?;
        template?
            .pointer(&format!(
                "/special_tokens/{}/ids/0",
                name.replace('~', "~0").replace('/', "~1")
            ))?
            .as_u64()
            .and_then(|i| u32::try_from(i).ok())
    };

    let from_cfg = |key: &str| {
        cfg.get(format!("{key}_token"))
            .and_then(|c| token_id(c, tok_json.as_ref(), vocab))
    };
    let from_model = |key: &str| {
        model_cfg
            .get(format!("{key}_token_id"))
            .and_then(Json::as_u64)
            .and_then(|i| u32::try_from(i).ok())
    };

    let bos = template_id(&first)
        .or_else(|| from_cfg("bos"))
        .or_else(|| from_model("bos"));
    let eos = template_id(&last)
        .or_else(|| from_cfg("eos"))
        .or_else(|| from_model("eos"));
    let mut out = Vec::new();
    for (key, id) in [
        ("bos", bos),
        ("eos", eos),
        ("unknown", from_cfg("unk")),
        ("seperator", from_cfg("sep")),
        ("padding", from_cfg("pad").or_else(|| from_model("pad"))),
        ("mask", from_cfg("mask")),
    ] {
        if let Some(id) = id.filter(|&i| (i as usize) < vocab.tokens.len()) {
            out.push((format!("tokenizer.ggml.{key}_token_id"), Value::U32(id)));
        }
    }
    let add_bos = cfg
        .get("add_bos_token")
        .and_then(Json::as_bool)
        .unwrap_or(first.is_some());
    let add_eos = cfg
        .get("add_eos_token")
        .and_then(Json::as_bool)
        .unwrap_or(last.is_some());
    // A separator is "added" when the pair template puts a special token
    // between the two sequences other than the ones that end or start one.
    let pair = template
        .and_then(|t| t["pair"].as_array())
        .cloned()
        .unwrap_or_default();
    let seq_pos = |id: &str| {
        pair.iter()
            .position(|i| i.pointer("/Sequence/id").and_then(Json::as_str) == Some(id))
    };
    let add_sep = match (seq_pos("A"), seq_pos("B")) {
        (Some(a), Some(b)) if a < b => pair[a + 1..b]
            .iter()
            .filter_map(special_of)
            .any(|s| Some(&s) != first.as_ref() && Some(&s) != last.as_ref()),
        _ => false,
    };
    if template.is_some() || cfg.get("add_bos_token").is_some() {
        out.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(add_bos)));
        out.push(("tokenizer.ggml.add_eos_token".into(), Value::Bool(add_eos)));
        out.push(("tokenizer.ggml.add_sep_token".into(), Value::Bool(add_sep)));
    }
    // The chat template: tokenizer_config.json's, else chat_template.jinja.
    let chat_template = match cfg.get("chat_template").and_then(Json::as_str) {
        Some(t) => Some(t.to_owned()),
        None => match std::fs::read_to_string(dir.join("chat_template.jinja")) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(ConvertError::io(&dir.join("chat_template.jinja"), e)),
        },
    };
    if let Some(t) = chat_template {
        out.push(("tokenizer.chat_template".into(), Value::String(t)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_special_matches_llama_cpp_list() {
        assert!(looks_special("<unused12>"));
        assert!(looks_special("<|im_start|>"));
        assert!(looks_special("<mask>"));
        assert!(!looks_special("[multimodal]"));
    }
}

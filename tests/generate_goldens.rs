//! End-to-end: Gemma-3-270M greedy decoding against llama.cpp on the same
//! GGUF (tests/fixtures/goldens/gemma-3-270m.greedy.llamacpp.jsonl: prompt
//! ids, 32 greedy tokens, top-10 logits of the first step).

mod common;

use std::sync::Arc;

use common::{cached_model, fixtures};
use kiln::runtime::gguf::GgufFile;
use kiln::runtime::model::{DecoderOptions, KvType, open_decoder};
use kiln::runtime::tokenizer::{EncodeOptions, Tokenizer};

#[derive(serde::Deserialize)]
struct Golden {
    prompt: String,
    prompt_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
    top10_first: Vec<(u32, f32)>,
}

fn goldens() -> Vec<Golden> {
    let path = fixtures().join("goldens/gemma-3-270m.greedy.llamacpp.jsonl");
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in x.iter().enumerate() {
        if *v > x[best] {
            best = i;
        }
    }
    best as u32
}

#[test]
fn gemma3_greedy_matches_llamacpp() {
    let Some(path) = cached_model("gemma3-270m") else {
        return;
    };
    let file = Arc::new(GgufFile::open(&path).unwrap());
    let tok = Tokenizer::from_gguf(&file).unwrap();
    let model = open_decoder(
        file.clone(),
        kiln::kernels::best(),
        &DecoderOptions { context: Some(512) },
    )
    .unwrap();
    let opts = EncodeOptions {
        add_special: true,
        parse_special: true,
    };
    let mut logits = vec![0.0; model.n_vocab()];
    for g in goldens() {
        let ids = tok.encode(&g.prompt, &opts).unwrap();
        assert_eq!(ids, g.prompt_ids, "prompt ids of {:?}", g.prompt);
        let mut state = model.new_state(KvType::F32);
        model
            .forward(&ids, &mut state, Some(&mut logits), 2)
            .unwrap();
        let mut order: Vec<u32> = (0..logits.len() as u32).collect();
        order.select_nth_unstable_by(10, |a, b| {
            logits[*b as usize].total_cmp(&logits[*a as usize])
        });
        order.truncate(10);
        order.sort_by(|a, b| logits[*b as usize].total_cmp(&logits[*a as usize]));
        let mut max_diff = 0.0f32;
        for &(id, l) in &g.top10_first {
            max_diff = max_diff.max((logits[id as usize] - l).abs());
        }
        eprintln!(
            "{:?}: top10 ours {:?}",
            g.prompt,
            order
                .iter()
                .map(|&i| (i, logits[i as usize]))
                .collect::<Vec<_>>()
        );
        eprintln!("   max |diff| {max_diff}");
        let mut out = Vec::new();
        let mut next = argmax(&logits);
        for _ in 0..g.greedy_ids.len() {
            out.push(next);
            model
                .forward(&[next], &mut state, Some(&mut logits), 2)
                .unwrap();
            next = argmax(&logits);
        }
        eprintln!("   greedy equal: {}", out == g.greedy_ids);
        eprintln!("   ours {:?}\n   want {:?}", out, g.greedy_ids);
    }
}

//! End-to-end: a batched decode (every unfinished generation one token
//! per step, one forward pass for all) gives each prompt exactly what it
//! gives alone, greedy and sampled, with generations of mixed lengths
//! finishing and leaving the batch at different steps.

mod common;

use kiln::{GenerateOptions, SamplingOptions};

const PROMPTS: &[&str] = &[
    "The capital of France is",
    "<start_of_turn>user\nName three colors.<end_of_turn>\n<start_of_turn>model\n",
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
    "<start_of_turn>user\nSay only: yes<end_of_turn>\n<start_of_turn>model\n",
    "1, 2, 3, 4,",
    "The German word for house is",
    "Copy the list:\n- apples\n- pears\nCopy:\n",
];

#[test]
fn a_batch_gives_each_prompt_its_lone_output() {
    for name in ["gemma3-270m", "smollm2"] {
        let Some(g) = common::generator(name, 512) else {
            continue;
        };
        for (k, opts) in [
            GenerateOptions {
                stop: vec![".".into()],
                ..GenerateOptions::greedy(40)
            },
            GenerateOptions {
                max_tokens: 24,
                sampling: SamplingOptions {
                    seed: 9,
                    ..SamplingOptions::default()
                },
                ..Default::default()
            },
        ]
        .into_iter()
        .enumerate()
        {
            let batch = g.generate_batch(PROMPTS, &opts).unwrap();
            let m = g.metrics();
            let mut lengths = Vec::new();
            for (p, b) in PROMPTS.iter().zip(&batch) {
                let alone = g.generate_text(p, &opts).unwrap();
                assert_eq!(&alone, b, "{name}: {p}");
                lengths.push(g.metrics().generated_tokens);
            }
            // Mixed lengths (greedy, with a stop string and end of turn):
            // generations left the batch at different steps.
            if k == 0 {
                assert!(
                    lengths.iter().min() < lengths.iter().max(),
                    "{name}: {lengths:?}"
                );
            }
            // One pass per step for the whole batch, not one per token.
            assert!(m.decode_passes < m.generated_tokens / 2, "{name}: {m:?}");
        }
    }
}

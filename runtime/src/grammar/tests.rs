//! The engine against grammars in the style of llama.cpp's `grammars/`
//! folder (written anew here), and against hostile ones.

use std::sync::Arc;

use super::*;

const ARITHMETIC: &str = r#"
# Integer arithmetic with precedence, right-recursive.
root   ::= expr
expr   ::= term (ws [-+] ws term)*
term   ::= factor (ws [*/] ws factor)*
factor ::= number | "(" ws expr ws ")" | "-" factor
number ::= [0-9]+
ws     ::= " "?
"#;

const JSON: &str = r#"
root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws

object ::=
  "{" ws (
            string ":" ws value
    ("," ws string ":" ws value)*
  )? "}" ws

array  ::=
  "[" ws (
            value
    ("," ws value)*
  )? "]" ws

string ::=
  "\"" (
    [^"\\\x7F\x00-\x1F] |
    "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4}) # escapes
  )* "\"" ws

number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws

# Optional space: by convention, applied in this grammar after literal chars when allowed
ws ::= | " " | "\n" [ \t]{0,20}
"#;

const LIST: &str = r#"
root ::= item+
# Excludes various line break characters
item ::= "- " [^\r\n\x0b\x0c\x85\u2028\u2029]+ "\n"
"#;

fn g(text: &str) -> Grammar {
    Grammar::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn arithmetic_accepts_expressions_and_refuses_the_rest() {
    let a = g(ARITHMETIC);
    for ok in ["1", "1 + 2 * (3 - -4)", "(((7)))", "10/2-3"] {
        assert!(a.matches(ok.as_bytes()), "{ok}");
    }
    for bad in ["", "1 +", "(1", "1 ++ 2", "a", "1  + 2"] {
        assert!(!a.matches(bad.as_bytes()), "{bad}");
    }
    assert!(a.matches_prefix(b"1 + (2"));
    assert!(!a.matches_prefix(b"1 + )"));
}

#[test]
fn json_grammar_accepts_json_objects() {
    let j = g(JSON);
    for ok in [
        r#"{}"#,
        r#"{"a": [1, 2.5, -3e19, true, null, {"b": "c\n\u00e9"}]}"#,
        "{\"naïve\": \"日本語\"}",
    ] {
        assert!(j.matches(ok.as_bytes()), "{ok}");
    }
    for bad in [
        r#"[]"#,
        r#"{"a" 1}"#,
        r#"{"a": 01}"#,
        "{\"a\": \"\x01\"}",
        r#"{"a": "\q"}"#,
    ] {
        assert!(!j.matches(bad.as_bytes()), "{bad}");
    }
}

#[test]
fn list_grammar_and_utf8_split_across_tokens() {
    let l = g(LIST);
    assert!(l.matches("- milk\n- 卵\n".as_bytes()));
    assert!(!l.matches(b"- \n"));
    // A character's bytes are allowed one by one, but only as a valid
    // encoding: the first two bytes of `卵` (E5 8D B5) are a prefix, a lone
    // continuation byte is not.
    assert!(l.matches_prefix(b"- \xE5\x8D"));
    assert!(!l.matches_prefix(b"- \x8D"));
    // U+2028 is excluded, so its encoding is refused at its last byte.
    assert!(l.matches_prefix(b"- \xE2\x80"));
    assert!(!l.matches_prefix(b"- \xE2\x80\xA8"));
}

#[test]
fn repetition_bounds_are_exact() {
    let r = g(r#"root ::= "a"{2,4} "b"{3} ("c" "d"?){1,}"#);
    assert!(r.matches(b"aabbbc"));
    assert!(r.matches(b"aaaabbbcdcc"));
    assert!(!r.matches(b"abbbc"));
    assert!(!r.matches(b"aaaaabbbc"));
    assert!(!r.matches(b"aabbc"));
    assert!(!r.matches(b"aabbb"));
}

fn vocab(tokens: &[&str], end: u32) -> Arc<GrammarVocab> {
    let n = tokens.len() as u32 + 1;
    Arc::new(GrammarVocab::new(
        n as usize,
        tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (i as u32, t.as_bytes().to_vec())),
        &[end],
    ))
}

fn allowed(m: &mut Matcher, n: usize) -> Vec<u32> {
    let mask = m.allowed().unwrap().to_vec();
    (0..n as u32)
        .filter(|&t| mask[t as usize / 64] >> (t % 64) & 1 == 1)
        .collect()
}

#[test]
fn the_matcher_allows_tokens_spanning_symbols_and_ends_only_when_complete() {
    let toks = ["{", "}", "{\"", "\"a\":", " 1", "1}", "a", "\"", ":", "1"];
    let end = toks.len() as u32;
    let v = vocab(&toks, end);
    let gr = g(r#"root ::= "{" "\"a\":" " "? [0-9]+ "}""#);
    let mut m = Matcher::new(&gr, v).unwrap();
    assert_eq!(allowed(&mut m, toks.len() + 1), [0, 2]); // `{` and `{"`
    m.accept(2).unwrap();
    // `a` continues `{"`; `"a":` does not (there is one quote).
    assert_eq!(allowed(&mut m, toks.len() + 1), [6]);
    m.accept(6).unwrap();
    assert_eq!(m.accept(9), Err(GrammarError::Rejected { token: 9 }));
    m.accept(7).unwrap();
    m.accept(8).unwrap();
    assert_eq!(allowed(&mut m, toks.len() + 1), [4, 5, 9]);
    m.accept(4).unwrap();
    assert!(!m.is_accepting());
    assert_eq!(allowed(&mut m, toks.len() + 1), [1, 5, 9]); // `}`, `1}`, `1`
    m.accept(5).unwrap();
    assert!(m.is_accepting());
    // Complete: only the end token is left.
    assert_eq!(allowed(&mut m, toks.len() + 1), [end]);
    let mut logits = vec![1.0; toks.len() + 1];
    m.mask(&mut logits).unwrap();
    assert!(logits[..toks.len()].iter().all(|l| *l == f32::NEG_INFINITY));
    assert_eq!(logits[toks.len()], 1.0);
    m.accept(end).unwrap();
}

#[test]
fn admits_counts_the_allowed_prefix_of_a_draft_without_moving() {
    let toks = ["{", "}", "{\"", "\"a\":", " 1", "1}", "a", "\"", ":", "1"];
    let end = toks.len() as u32;
    let v = vocab(&toks, end);
    let gr = g(r#"root ::= "{" "\"a\":" " "? [0-9]+ "}""#);
    let mut m = Matcher::new(&gr, v).unwrap();
    // `{` `"a":` ` 1` `1}` end: all allowed, end only once complete.
    assert_eq!(m.admits(&[0, 3, 4, 5, end]).unwrap(), 5);
    // A second end, or anything after the end, is not.
    assert_eq!(m.admits(&[0, 3, 4, 5, end, end]).unwrap(), 5);
    // The end before the object closes is not.
    assert_eq!(m.admits(&[0, 3, 4, end]).unwrap(), 3);
    assert_eq!(m.admits(&[6]).unwrap(), 0);
    assert_eq!(m.admits(&[]).unwrap(), 0);
    // The matcher has not moved: its start still allows `{` and `{"`.
    assert_eq!(allowed(&mut m, toks.len() + 1), [0, 2]);
    m.accept(0).unwrap();
    assert_eq!(m.admits(&[3, 9, 1]).unwrap(), 3);
    assert_eq!(m.admits(&[0]).unwrap(), 0);
}

#[test]
fn a_grammar_the_vocabulary_cannot_write_is_a_dead_end() {
    let v = vocab(&["a", "b"], 2);
    let mut m = Matcher::new(&g(r#"root ::= "c""#), v).unwrap();
    assert_eq!(
        m.allowed().unwrap_err(),
        GrammarError::DeadEnd { generated: 0 }
    );
}

#[test]
fn hostile_grammars_fail_fast_with_bounded_memory() {
    // Exponential ambiguity: every `a` doubles the parses unless they merge.
    let amb = g(r#"root ::= ("a" | "a" | "a" "a")*"#);
    assert!(amb.matches(&[b'a'; 2000]));
    // Deep nesting: the stacks grow with the text, bounded by the frame limit.
    let nest = g(r#"root ::= "(" root ")" | "x""#);
    let mut t = vec![b'('; 5000];
    t.push(b'x');
    t.extend(vec![b')'; 5000]);
    assert!(nest.matches(&t));
    // A huge alternation compiles and matches.
    let words: Vec<String> = (0..20_000).map(|i| format!("\"w{i}\"")).collect();
    let big = g(&format!("root ::= {}", words.join(" | ")));
    assert!(big.matches(b"w19999"));
    assert!(!big.matches(b"w20000"));
    // Too large repetitions are refused, not expanded.
    // Nested repetition is a rule used n times, not n copies of its body.
    assert!(g(r#"root ::= ("a"{10000}){10000}"#).matches_prefix(&[b'a'; 30_000]));
    // Past the element limit, a grammar is refused rather than expanded.
    let huge = format!("root ::= {}", r#""a"{9999} "#.repeat(250));
    assert!(matches!(
        Grammar::parse(&huge),
        Err(GrammarError::TooLarge { .. })
    ));
}

/// The trie walk's mask equals checking every token on its own, along
/// random walks through the JSON grammar with a vocabulary of JSON-ish
/// pieces, multi-byte characters and their split bytes.
#[test]
fn masks_equal_brute_force_along_random_walks() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let pieces: Vec<Vec<u8>> = [
        "{", "}", "[", "]", "\"", ":", ",", " ", "\n", "  ", "{\"", "\":", "\": ", "\",", "\"}",
        "}]", "a", "ab", "name", "\"name\"", "1", "12", "0", "-", ".", "5e", "e", "+", "true",
        "tru", "e}", "null", "fals", "\\", "\\n", "\\u00", "é", "日本", "\t", "x\"", "\"\"", "[]",
        "{}",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .chain([
        vec![0xE6],
        vec![0x97, 0xA5],
        vec![0xE6, 0x97],
        vec![0xA5],
        vec![0xFF],
        vec![0x01],
    ])
    .collect();
    let n = pieces.len() as u32 + 1;
    let end = n - 1;
    let vocab = Arc::new(GrammarVocab::new(
        n as usize,
        pieces
            .iter()
            .enumerate()
            .map(|(i, p)| (i as u32, p.clone())),
        &[end],
    ));
    let grammar = g(JSON);
    let mut runner = TestRunner::new(Config {
        cases: 64,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(0u32..1000, 1..40), |choices| {
            let mut m = Matcher::new(&grammar, vocab.clone()).unwrap();
            let mut text = Vec::new();
            for c in choices {
                let mask = m.allowed().unwrap().to_vec();
                let mut want = Vec::new();
                for (i, p) in pieces.iter().enumerate() {
                    let mut t = text.clone();
                    t.extend_from_slice(p);
                    if grammar.matches_prefix(&t) {
                        want.push(i as u32);
                    }
                }
                if grammar.matches(&text) {
                    want.push(end);
                }
                let got: Vec<u32> = (0..n)
                    .filter(|&t| mask[t as usize / 64] >> (t % 64) & 1 == 1)
                    .collect();
                prop_assert_eq!(&got, &want, "after {:?}", String::from_utf8_lossy(&text));
                let pick = want[c as usize % want.len()];
                m.accept(pick).unwrap();
                if pick == end {
                    break;
                }
                text.extend_from_slice(&pieces[pick as usize]);
            }
            Ok(())
        })
        .unwrap();
}

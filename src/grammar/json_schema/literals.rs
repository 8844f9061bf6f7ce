//! GBNF literals and the trie that factors `enum`/`const` alternatives.

use std::fmt::Write as _;

/// Deepest nesting of trie groups; below it a subtree is written as flat
/// alternatives (still unambiguous, the values being distinct).
const MAX_TRIE_DEPTH: usize = 32;

/// `text` as a GBNF string literal.
pub(super) fn literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The alternatives `"v1" | "v2" | ...` of distinct non-empty `values`,
/// factored into a trie: alternatives that share a prefix share one
/// literal for it, so every choice point has distinct first characters
/// and 10,000 values stay about as long as their text.
pub(super) fn trie(values: &[String]) -> String {
    let mut sorted: Vec<&str> = values.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    debug_assert!(sorted.iter().all(|v| !v.is_empty()));
    let mut out = String::new();
    emit(&sorted, 0, 0, &mut out);
    out
}

/// Writes the alternatives for the suffixes `values[..][offset..]`: the
/// values are sorted, distinct, and all longer than `offset`.
fn emit(values: &[&str], offset: usize, depth: usize, out: &mut String) {
    if depth >= MAX_TRIE_DEPTH {
        let suffixes: Vec<String> = values.iter().map(|v| literal(&v[offset..])).collect();
        out.push_str(&suffixes.join(" | "));
        return;
    }
    let mut i = 0;
    while i < values.len() {
        let first = values[i][offset..]
            .chars()
            .next()
            .expect("longer than offset");
        let mut j = i + 1;
        while j < values.len() && values[j][offset..].starts_with(first) {
            j += 1;
        }
        if i > 0 {
            out.push_str(" | ");
        }
        let group = &values[i..j];
        if let [only] = group {
            out.push_str(&literal(&only[offset..]));
        } else {
            // Sorted: the group's common prefix is that of its ends.
            let end =
                offset + common_prefix(&group[0][offset..], &group[group.len() - 1][offset..]);
            out.push_str(&literal(&group[0][offset..end]));
            // Only the first (shortest) value can end at the prefix.
            let complete = group[0].len() == end;
            let rest = if complete { &group[1..] } else { group };
            out.push_str(" ( ");
            emit(rest, end, depth + 1, out);
            out.push_str(if complete { " )?" } else { " )" });
        }
        i = j;
    }
}

/// Length in bytes of the longest common prefix of `a` and `b` that ends
/// on a character boundary.
fn common_prefix(a: &str, b: &str) -> usize {
    let mut n = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    while !a.is_char_boundary(n) {
        n -= 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn literals_escape_quotes_backslashes_and_controls() {
        assert_eq!(literal(r#""a\b""#), r#""\"a\\b\"""#);
        assert_eq!(literal("x\ny\u{1}\u{7f}é"), r#""x\ny\x01\x7Fé""#);
    }

    #[test]
    fn trie_factors_common_prefixes() {
        let t = trie(&strings(&[
            r#""red""#,
            r#""green""#,
            r#""grey""#,
            r#""gre""#,
        ]));
        assert_eq!(t, r#""\"" ( "gre" ( "\"" | "en\"" | "y\"" ) | "red\"" )"#);
        let t = trie(&strings(&["1", "12", "13"]));
        assert_eq!(t, r#""1" ( "2" | "3" )?"#);
        assert_eq!(trie(&strings(&["true", "null"])), r#""null" | "true""#);
    }

    #[test]
    fn trie_splits_on_character_boundaries() {
        // "é" and "è" share their first UTF-8 byte.
        let t = trie(&strings(&["é", "è"]));
        assert_eq!(t, r#""è" | "é""#);
    }

    #[test]
    fn deep_tries_fall_back_to_flat_alternatives() {
        let values: Vec<String> = (1..=80).map(|n| "a".repeat(n)).collect();
        let t = trie(&values);
        assert_eq!(t.matches('(').count(), MAX_TRIE_DEPTH);
    }
}

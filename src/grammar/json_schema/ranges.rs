//! Integer ranges as digit patterns.
//!
//! `[lo, hi]` becomes alternatives such as `"0" | [1-9] [0-9]{0,2} |
//! "1" ( [0-4] [0-9]{2} | "5" ( [0-1] [0-9] | "2" [0-3] ) )`: numbers
//! without leading zeros, split by length, each length split at the
//! first digit where the bounds differ. The size is quadratic in the
//! number of digits, whatever the width of the range.

/// Largest magnitude generated: JSON integers have at most 16 digits
/// (below 2^53 they are exact in every JSON parser).
pub(super) const MAX_INTEGER: i64 = 9_999_999_999_999_999;

/// GBNF alternatives matching exactly the decimal integers in
/// `[lo, hi]`, which must lie within `±MAX_INTEGER` with `lo <= hi`.
/// Negative numbers carry `-`; `-0` is never produced.
pub(super) fn integer_range(lo: i64, hi: i64) -> String {
    assert!(-MAX_INTEGER <= lo && lo <= hi && hi <= MAX_INTEGER);
    let mut alts = Vec::new();
    if lo < 0 {
        let negative = non_negative(-hi.min(-1), -lo);
        alts.push(format!("\"-\" {}", group(&negative)));
    }
    if hi >= 0 {
        alts.extend(non_negative(lo.max(0), hi));
    }
    alts.join(" | ")
}

/// Alternatives for `[a, b]`, `0 <= a <= b`.
fn non_negative(mut a: i64, b: i64) -> Vec<String> {
    let mut alts = Vec::new();
    if a == 0 {
        alts.push("\"0\"".to_string());
        a = 1;
    }
    if a > b {
        return alts;
    }
    // Positive numbers, one length at a time; consecutive lengths that
    // are complete (all of 10^(d-1) ..= 10^d - 1) share one alternative.
    let (da, db) = (digits(a), digits(b));
    let mut full: Option<(u32, u32)> = None;
    let flush = |full: &mut Option<(u32, u32)>, alts: &mut Vec<String>| {
        if let Some((from, to)) = full.take() {
            alts.push(seq(&["[1-9]".to_string(), any_digits(from - 1, to - 1)]));
        }
    };
    for d in da..=db {
        let first = 10i64.pow(d - 1);
        let last = 10 * first - 1;
        let (lo, hi) = (a.max(first), b.min(last));
        if (lo, hi) == (first, last) {
            full = Some(full.map_or((d, d), |(from, _)| (from, d)));
        } else {
            flush(&mut full, &mut alts);
            alts.extend(same_length(
                lo.to_string().as_bytes(),
                hi.to_string().as_bytes(),
            ));
        }
    }
    flush(&mut full, &mut alts);
    alts
}

/// Alternatives for the digit strings of one length between `a` and `b`
/// (inclusive, `a <= b`); leading zeros are taken literally.
pub(super) fn same_length(a: &[u8], b: &[u8]) -> Vec<String> {
    debug_assert_eq!(a.len(), b.len());
    let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    if common == a.len() {
        return vec![quoted(a)];
    }
    if common > 0 {
        return vec![prefixed(
            &a[..common],
            same_length(&a[common..], &b[common..]),
        )];
    }
    let n = a.len() - 1;
    let (low_rest, high_rest) = (&a[1..], &b[1..]);
    let mut alts = Vec::new();
    // The lowest first digit, unless the range takes all its numbers.
    let mut mid_lo = a[0];
    if !low_rest.iter().all(|&d| d == b'0') {
        alts.push(prefixed(&a[..1], same_length(low_rest, &vec![b'9'; n])));
        mid_lo += 1;
    }
    // The highest first digit likewise.
    let mut mid_hi = b[0];
    let mut high = None;
    if !high_rest.iter().all(|&d| d == b'9') {
        high = Some(prefixed(&b[..1], same_length(&vec![b'0'; n], high_rest)));
        mid_hi -= 1;
    }
    if mid_lo <= mid_hi {
        alts.push(seq(&[
            digit_class(mid_lo, mid_hi),
            any_digits(n as u32, n as u32),
        ]));
    }
    alts.extend(high);
    alts
}

/// The literal digits `prefix` followed by the alternatives `rest`,
/// merged into one literal when `rest` starts with one.
fn prefixed(prefix: &[u8], rest: Vec<String>) -> String {
    if let [one] = &rest[..]
        && let Some(tail) = one.strip_prefix('"')
    {
        return format!("{}{tail}", &quoted(prefix)[..prefix.len() + 1]);
    }
    seq(&[quoted(prefix), group(&rest)])
}

fn digits(n: i64) -> u32 {
    n.checked_ilog10().unwrap_or(0) + 1
}

fn quoted(digits: &[u8]) -> String {
    format!("\"{}\"", std::str::from_utf8(digits).expect("ASCII digits"))
}

fn digit_class(lo: u8, hi: u8) -> String {
    if lo == hi {
        quoted(&[lo])
    } else {
        format!("[{}-{}]", lo as char, hi as char)
    }
}

/// `[0-9]` repeated `from..=to` times (empty for zero times).
fn any_digits(from: u32, to: u32) -> String {
    match (from, to) {
        (0, 0) => String::new(),
        (1, 1) => "[0-9]".to_string(),
        (m, n) if m == n => format!("[0-9]{{{m}}}"),
        (0, 1) => "[0-9]?".to_string(),
        (m, n) => format!("[0-9]{{{m},{n}}}"),
    }
}

fn seq(parts: &[String]) -> String {
    let parts: Vec<&str> = parts
        .iter()
        .map(String::as_str)
        .filter(|p| !p.is_empty())
        .collect();
    parts.join(" ")
}

fn group(alts: &[String]) -> String {
    match alts {
        [one] => one.clone(),
        _ => format!("( {} )", alts.join(" | ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_shapes() {
        assert_eq!(integer_range(0, 9), r#""0" | [1-9]"#);
        assert_eq!(integer_range(1, 100), r#"[1-9] [0-9]? | "100""#);
        assert_eq!(
            integer_range(-MAX_INTEGER, MAX_INTEGER),
            r#""-" [1-9] [0-9]{0,15} | "0" | [1-9] [0-9]{0,15}"#
        );
        assert_eq!(
            integer_range(0, 255),
            r#""0" | [1-9] [0-9]? | "1" [0-9]{2} | "2" ( [0-4] [0-9] | "5" [0-5] )"#
        );
        assert_eq!(integer_range(-5, -5), r#""-" "5""#);
        assert_eq!(integer_range(150, 150), r#""150""#);
        assert_eq!(
            integer_range(18, 120),
            r#""1" [8-9] | [2-9] [0-9] | "1" ( [0-1] [0-9] | "20" )"#
        );
    }
}

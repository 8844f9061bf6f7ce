//! Any value, strings, formats, integers and numbers.

use serde_json::json;

use super::*;

#[test]
fn any_value() {
    for schema in [
        json!(true),
        json!({}),
        json!({ "description": "anything", "title": "x" }),
    ] {
        check(
            schema,
            &[
                "1",
                "-2.5e10",
                "\"x\"",
                "true",
                "null",
                "[]",
                "[1, {\"a\": [null]}]",
                "{}",
                "{ \"k\": \"v\" }",
            ],
            &["", "nul", "[1,]", "{\"a\"}", "'x'", "01"],
        );
    }
}

#[test]
fn primitives() {
    check(
        json!({ "type": "boolean" }),
        &["true", "false"],
        &["1", "\"true\"", "True"],
    );
    check(json!({ "type": "null" }), &["null"], &["0", "\"null\""]);
    check(
        json!({ "type": "string" }),
        &["\"\"", "\"a b\"", "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\""],
        &["a", "\"a", "1"],
    );
    check(
        json!({ "type": "integer" }),
        &["0", "-7", "1234567890123456"],
        &["-0", "01", "1.0", "1e3", "+1"],
    );
    check(
        json!({ "type": "number" }),
        &["0", "-0.5", "1.25e-10", "3E+2", "-0"],
        &["1.", ".5", "01", "1e", "- 1", "NaN"],
    );
}

#[test]
fn layout_and_digits_are_bounded() {
    let object = json!({ "type": "object", "properties": { "a": { "type": "number" } } });
    check(
        object,
        &["{\"a\":1}", "{ \"a\": 1 }", "{}", "{ }"],
        &[
            "{\"a\":  1}",
            "{\n\"a\":1}",
            "{\"a\" :1}",
            "{\"a\":1} ",
            " {\"a\":1}",
            "{  }",
        ],
    );
    check(
        json!({ "type": "number" }),
        &["9999999999999999", "0.1234567890123456", "1e99", "1e-99"],
        &["99999999999999999", "0.12345678901234567", "1e100", "1e999"],
    );
    check(
        json!({ "type": "integer" }),
        &["-9999999999999999"],
        &["10000000000000000"],
    );
}

#[test]
fn non_negative_numbers() {
    check(
        json!({ "type": "number", "minimum": 0 }),
        &["0", "0.0", "3.5", "1e-5", "2E+10"],
        &["-1", "-0", "-0.5"],
    );
    check(
        json!({ "type": "number", "minimum": 0.0 }),
        &["1.5"],
        &["-1.5"],
    );
    assert_unsupported(json!({ "type": "number", "minimum": 1 }), "minimum", "#");
    assert_unsupported(json!({ "type": "number", "maximum": 1 }), "maximum", "#");
    assert_unsupported(
        json!({ "type": "number", "minimum": 0, "exclusiveMaximum": 1 }),
        "exclusiveMaximum",
        "#",
    );
    assert_unsupported(
        json!({ "type": "number", "multipleOf": 0.5 }),
        "multipleOf",
        "#",
    );
}

#[test]
fn string_escapes() {
    check(
        json!({ "type": "string" }),
        &[
            "\"\\u00e9\"",
            "\"\\ud83d\\ude00\"",
            "\"é日本😀\"",
            "\"\\uFFFF\"",
        ],
        // Lone surrogates, raw controls and DEL, unknown escapes.
        &[
            "\"\\ud83d\"",
            "\"\\ude00\\ud83d\"",
            "\"a\nb\"",
            "\"\u{7f}\"",
            "\"\\x41\"",
            "\"\\u12\"",
        ],
    );
}

#[test]
fn string_lengths_count_characters() {
    check(
        json!({ "type": "string", "minLength": 2, "maxLength": 3 }),
        &[
            "\"ab\"",
            "\"abc\"",
            "\"a\\n\"",
            "\"日本\"",
            "\"😀😀\"",
            "\"\\ud83d\\ude00\\u0041\"",
            "\"\\\"\\\\\"",
        ],
        &["\"a\"", "\"abcd\"", "\"\\ud83d\\ude00\"", "\"\"", "\"😀\""],
    );
    check(
        json!({ "type": "string", "maxLength": 0 }),
        &["\"\""],
        &["\"a\""],
    );
    check(
        json!({ "type": "string", "minLength": 1 }),
        &["\"a\"", "\"abcdefgh\""],
        &["\"\""],
    );
    assert_accepts_nothing(json!({ "type": "string", "minLength": 3, "maxLength": 2 }));
    assert!(matches!(
        error(json!({ "type": "string", "minLength": 5000 })),
        GrammarError::TooLarge {
            what: "minLength",
            ..
        }
    ));
    // A huge maxLength is lowered to the repetition limit.
    assert!(gbnf(&json!({ "type": "string", "maxLength": 1_000_000 })).contains("char{0,1000}"));
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        _ => 0,
    }
}

#[test]
fn dates_are_real_dates() {
    let g = compile(&json!({ "type": "string", "format": "date" }));
    for year in [
        0, 1, 4, 100, 400, 1900, 1996, 2000, 2023, 2024, 2100, 9996, 9999,
    ] {
        for month in 0..=13 {
            for day in 0..=32 {
                let text = format!("\"{year:04}-{month:02}-{day:02}\"");
                let valid = year > 0 && day >= 1 && day <= days_in_month(year, month);
                assert_eq!(g.matches(text.as_bytes()), valid, "{text}");
            }
        }
    }
    for bad in [
        "\"2024-1-01\"",
        "\"24-01-01\"",
        "\"2024-01-01T00:00:00Z\"",
        "\"2024/01/01\"",
    ] {
        assert!(!g.matches(bad.as_bytes()), "{bad}");
    }
}

#[test]
fn times_date_times_and_uuids() {
    check(
        json!({ "type": "string", "format": "time" }),
        &[
            "\"00:00:00Z\"",
            "\"23:59:59.123456789+05:30\"",
            "\"12:30:00-23:59\"",
        ],
        &[
            "\"24:00:00Z\"",
            "\"12:60:00Z\"",
            "\"12:00:60Z\"",
            "\"12:00:00\"",
            "\"12:00Z\"",
            "\"12:00:00.Z\"",
            "\"12:00:00+24:00\"",
        ],
    );
    check(
        json!({ "type": "string", "format": "date-time" }),
        &[
            "\"2024-02-29T12:00:00Z\"",
            "\"1999-12-31T23:59:59.5+01:00\"",
        ],
        &[
            "\"2023-02-29T12:00:00Z\"",
            "\"2024-01-01 12:00:00Z\"",
            "\"2024-01-01T12:00:00\"",
        ],
    );
    check(
        json!({ "type": "string", "format": "uuid" }),
        &[
            "\"123e4567-e89b-12d3-a456-426614174000\"",
            "\"ABCDEF01-2345-6789-ABCD-EF0123456789\"",
        ],
        &[
            "\"123e4567e89b12d3a456426614174000\"",
            "\"123e4567-e89b-12d3-a456-42661417400\"",
            "\"g23e4567-e89b-12d3-a456-426614174000\"",
        ],
    );
}

#[test]
fn formats_with_lengths() {
    check(
        json!({ "type": "string", "format": "date", "minLength": 10, "maxLength": 10 }),
        &["\"2024-01-31\""],
        &[],
    );
    assert_accepts_nothing(json!({ "type": "string", "format": "uuid", "maxLength": 20 }));
    assert_unsupported(
        json!({ "type": "string", "format": "time", "maxLength": 12 }),
        "maxLength",
        "#",
    );
    assert_unsupported(
        json!({ "type": "string", "format": "email" }),
        "format",
        "#",
    );
    assert_unsupported(
        json!({ "type": "string", "pattern": "^a+$" }),
        "pattern",
        "#",
    );
    // `format` constrains strings only.
    check(
        json!({ "type": "integer", "format": "int32" }),
        &["5"],
        &["\"5\""],
    );
}

/// A tiny xorshift generator: the tests stay reproducible without a
/// dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number of 1 to 16 random digits, of random sign.
    fn integer(&mut self) -> i64 {
        let digits = self.next() % 16 + 1;
        let n = (self.next() % 10u64.pow(digits as u32)) as i64;
        if self.next().is_multiple_of(2) { n } else { -n }
    }
}

fn integer_range_grammar(lo: i64, hi: i64) -> Grammar {
    compile(&json!({ "type": "integer", "minimum": lo, "maximum": hi }))
}

#[test]
fn integer_ranges_exhaustively() {
    for lo in -25..=25i64 {
        for hi in lo..=25 {
            let g = integer_range_grammar(lo, hi);
            for n in lo - 12..=hi + 12 {
                assert_eq!(
                    g.matches(n.to_string().as_bytes()),
                    (lo..=hi).contains(&n),
                    "{n} in [{lo}, {hi}]"
                );
            }
            for text in ["-0", "00", "01", "-01", "+1", ""] {
                assert!(!g.matches(text.as_bytes()), "{text} in [{lo}, {hi}]");
            }
        }
    }
    let edges = [
        -1001, -1000, -999, -101, -100, -99, -10, -9, -1, 0, 1, 9, 10, 99, 100, 101, 999, 1000,
        4095,
    ];
    for &lo in &edges {
        for &hi in edges.iter().filter(|&&hi| hi >= lo) {
            let g = integer_range_grammar(lo, hi);
            for n in (lo - 120..=hi + 120).step_by(if hi - lo > 3000 { 7 } else { 1 }) {
                assert_eq!(
                    g.matches(n.to_string().as_bytes()),
                    (lo..=hi).contains(&n),
                    "{n} in [{lo}, {hi}]"
                );
            }
        }
    }
}

#[test]
fn integer_ranges_at_random() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..150 {
        let (a, b) = (rng.integer(), rng.integer());
        let (lo, hi) = (a.min(b), a.max(b));
        let g = integer_range_grammar(lo, hi);
        let mut probes = vec![lo, hi, lo - 1, hi + 1, lo + 1, hi - 1, 0, -1, 1];
        for _ in 0..40 {
            probes.push(rng.integer());
            let width = (hi - lo) as u64 + 1;
            probes.push(lo + (rng.next() % width) as i64);
            probes.push(lo - (rng.next() % 1000) as i64);
            probes.push(hi + (rng.next() % 1000) as i64);
        }
        for n in probes {
            let inside = (lo..=hi).contains(&n) && n.abs() <= ranges::MAX_INTEGER;
            assert_eq!(
                g.matches(n.to_string().as_bytes()),
                inside,
                "{n} in [{lo}, {hi}]"
            );
        }
    }
}

#[test]
fn integer_bounds() {
    check(
        json!({ "type": "integer", "exclusiveMinimum": 1.5, "maximum": 4.9 }),
        &["2", "3", "4"],
        &["1", "5"],
    );
    check(
        json!({ "type": "integer", "exclusiveMinimum": 2, "exclusiveMaximum": 5 }),
        &["3", "4"],
        &["2", "5"],
    );
    check(
        json!({ "type": "integer", "minimum": -3 }),
        &["-3", "0", "9999999999999999"],
        &["-4"],
    );
    check(
        json!({ "type": "integer", "maximum": 1e300 }),
        &["9999999999999999"],
        &["-10000000000000000"],
    );
    check(
        json!({ "type": "integer", "multipleOf": 1 }),
        &["7"],
        &["7.5"],
    );
    assert_accepts_nothing(json!({ "type": "integer", "minimum": 5, "maximum": 4 }));
    assert_accepts_nothing(
        json!({ "type": "integer", "exclusiveMinimum": 4, "exclusiveMaximum": 5 }),
    );
    assert_unsupported(
        json!({ "type": "integer", "multipleOf": 5 }),
        "multipleOf",
        "#",
    );
}

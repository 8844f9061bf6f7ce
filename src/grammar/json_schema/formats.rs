//! String formats and the rules shared by every grammar.

/// A rule written once per grammar, only when some rule uses it.
pub(super) struct SharedRule {
    pub(super) name: &'static str,
    pub(super) body: &'static str,
    /// Shared rules the body refers to.
    pub(super) uses: &'static [&'static str],
}

/// Every shared rule, in output order.
///
/// Whitespace is at most one space between tokens, numbers have at most
/// 16 integer digits, 16 fraction digits and a 2-digit exponent, so that
/// a model can never loop on layout or digits and every number stays a
/// finite `f64` (`1e999` would overflow serde_json). A `\u` escape is one
/// character: surrogates only as a valid pair, which is one code point.
pub(super) const SHARED: &[SharedRule] = &[
    SharedRule {
        name: "space",
        body: r#"" "?"#,
        uses: &[],
    },
    SharedRule {
        name: "value",
        body: "object | array | string | number | boolean | null",
        uses: &["object", "array", "string", "number", "boolean", "null"],
    },
    SharedRule {
        name: "object",
        body: r#""{" space ( string ":" space value ( "," space string ":" space value )* space )? "}""#,
        uses: &["space", "string", "value"],
    },
    SharedRule {
        name: "array",
        body: r#""[" space ( value ( "," space value )* space )? "]""#,
        uses: &["space", "value"],
    },
    SharedRule {
        name: "string",
        body: r#""\"" char* "\"""#,
        uses: &["char"],
    },
    SharedRule {
        name: "char",
        body: r#"[^"\\\x7F\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" ( [0-9a-ce-fA-CE-F] [0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2} ) ) | "\\u" [dD] [89abAB] [0-9a-fA-F]{2} "\\u" [dD] [c-fC-F] [0-9a-fA-F]{2}"#,
        uses: &[],
    },
    SharedRule {
        name: "number",
        body: r#""-"? ( "0" | [1-9] [0-9]{0,15} ) ( "." [0-9]{1,16} )? ( [eE] ( "+" | "-" )? [0-9]{1,2} )?"#,
        uses: &[],
    },
    SharedRule {
        name: "non-negative-number",
        body: r#"( "0" | [1-9] [0-9]{0,15} ) ( "." [0-9]{1,16} )? ( [eE] ( "+" | "-" )? [0-9]{1,2} )?"#,
        uses: &[],
    },
    SharedRule {
        name: "integer",
        body: r#""0" | "-"? [1-9] [0-9]{0,15}"#,
        uses: &[],
    },
    SharedRule {
        name: "boolean",
        body: r#""true" | "false""#,
        uses: &[],
    },
    SharedRule {
        name: "null",
        body: r#""null""#,
        uses: &[],
    },
    SharedRule {
        name: "date",
        body: r#"date-year "-" ( ( "0" [13578] | "1" [02] ) "-" ( date-day | "3" [01] ) | ( "0" [469] | "11" ) "-" ( date-day | "30" ) | "02-" ( "0" [1-9] | "1" [0-9] | "2" [0-8] ) ) | date-leap-year "-02-29""#,
        uses: &["date-year", "date-day", "date-leap-year"],
    },
    SharedRule {
        name: "date-year",
        body: r#""000" [1-9] | "00" [1-9] [0-9] | "0" [1-9] [0-9]{2} | [1-9] [0-9]{3}"#,
        uses: &[],
    },
    // 01 to 29.
    SharedRule {
        name: "date-day",
        body: r#""0" [1-9] | [12] [0-9]"#,
        uses: &[],
    },
    // Divisible by 4, and by 400 when it ends in 00 (year 0000 is invalid).
    SharedRule {
        name: "date-leap-year",
        body: r#"[0-9]{2} date-leap-yy | date-leap-yy "00""#,
        uses: &["date-leap-yy"],
    },
    // Two digits, a non-zero multiple of 4.
    SharedRule {
        name: "date-leap-yy",
        body: r#"[02468] [48] | [13579] [26] | [2468] "0""#,
        uses: &[],
    },
    SharedRule {
        name: "time",
        body: r#"( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{1,9} )? ( "Z" | ( "+" | "-" ) ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] )"#,
        uses: &[],
    },
    SharedRule {
        name: "date-time",
        body: r#"date "T" time"#,
        uses: &["date", "time"],
    },
    SharedRule {
        name: "uuid",
        body: r#"[0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{12}"#,
        uses: &[],
    },
];

/// A supported `format`: its shared rule (the text between the quotes)
/// and the least and most characters it takes.
pub(super) struct Format {
    pub(super) rule: &'static str,
    pub(super) min_len: u64,
    pub(super) max_len: u64,
}

/// The supported string formats.
pub(super) fn format(name: &str) -> Option<Format> {
    let (rule, min_len, max_len) = match name {
        "date" => ("date", 10, 10),
        // HH:MM:SS, 0 or 2..=10 for the fraction, Z or +HH:MM.
        "time" => ("time", 9, 24),
        "date-time" => ("date-time", 20, 35),
        "uuid" => ("uuid", 36, 36),
        _ => return None,
    };
    Some(Format {
        rule,
        min_len,
        max_len,
    })
}

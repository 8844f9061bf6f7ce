//! Strings, integers and numbers.

use kiln_runtime::grammar::GrammarError;
use serde_json::{Map, Value};

use super::ranges::{MAX_INTEGER, integer_range};
use super::{Converter, MAX_REPETITION, formats, pointer, repeat, schema_error, seq, unsupported};

/// A quoted string whose content is rule `inner`.
fn quoted(inner: &str) -> String {
    seq(&[r#""\"""#, inner, r#""\"""#])
}

impl Converter<'_> {
    pub(super) fn string(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        name: &str,
    ) -> Result<String, GrammarError> {
        if map.contains_key("pattern") {
            return Err(unsupported(
                "pattern",
                path,
                "regular-expression patterns are not supported yet",
            ));
        }
        let min = count(map, "minLength", path)?.unwrap_or(0);
        let max = count(map, "maxLength", path)?;
        let nothing = || GrammarError::AcceptsNothing { rule: name.into() };
        if max.is_some_and(|max| max < min) {
            return Err(nothing());
        }
        if let Some(f) = map.get("format") {
            let f = f.as_str().ok_or_else(|| {
                schema_error(&pointer(path, "format"), "`format` must be a string")
            })?;
            let Some(format) = formats::format(f) else {
                return Err(unsupported(
                    "format",
                    path,
                    format!("format `{f}`: only date, time, date-time and uuid are supported"),
                ));
            };
            let max = max.unwrap_or(u64::MAX);
            if max < format.min_len || min > format.max_len {
                return Err(nothing());
            }
            if min > format.min_len || max < format.max_len {
                let keyword = if min > format.min_len {
                    "minLength"
                } else {
                    "maxLength"
                };
                return Err(unsupported(
                    keyword,
                    path,
                    format!(
                        "cannot be combined with format `{f}` (its length is {}..={})",
                        format.min_len, format.max_len
                    ),
                ));
            }
            return Ok(quoted(&self.shared(format.rule)));
        }
        if min == 0 && max.is_none() {
            return Ok(self.shared("string"));
        }
        if min > MAX_REPETITION {
            return Err(GrammarError::TooLarge {
                what: "minLength",
                limit: MAX_REPETITION as usize,
            });
        }
        let char = self.shared("char");
        let max = max.map(|m| m.min(MAX_REPETITION));
        Ok(quoted(&repeat(&char, min, max)))
    }

    pub(super) fn integer(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        name: &str,
    ) -> Result<String, GrammarError> {
        if let Some(m) = map.get("multipleOf")
            && m.as_f64() != Some(1.0)
        {
            return Err(unsupported(
                "multipleOf",
                path,
                "only `multipleOf: 1` is supported",
            ));
        }
        let (mut lo, mut hi) = (-MAX_INTEGER, MAX_INTEGER);
        let mut bounded = false;
        for keyword in ["minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"] {
            let Some(v) = map.get(keyword) else { continue };
            let Value::Number(n) = v else {
                return Err(schema_error(
                    &pointer(path, keyword),
                    format!("`{keyword}` must be a number"),
                ));
            };
            bounded = true;
            match keyword {
                "minimum" => lo = lo.max(lower_bound(n, false)),
                "exclusiveMinimum" => lo = lo.max(lower_bound(n, true)),
                "maximum" => hi = hi.min(upper_bound(n, false)),
                _ => hi = hi.min(upper_bound(n, true)),
            }
        }
        if !bounded {
            return Ok(self.shared("integer"));
        }
        if lo > hi {
            return Err(GrammarError::AcceptsNothing { rule: name.into() });
        }
        Ok(integer_range(lo, hi))
    }

    pub(super) fn number(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
    ) -> Result<String, GrammarError> {
        let mut non_negative = false;
        for keyword in [
            "minimum",
            "exclusiveMinimum",
            "maximum",
            "exclusiveMaximum",
            "multipleOf",
        ] {
            let Some(v) = map.get(keyword) else { continue };
            if keyword == "minimum" && v.as_f64() == Some(0.0) {
                non_negative = true;
            } else {
                return Err(unsupported(
                    keyword,
                    path,
                    "ranges on non-integer numbers are not supported (only `minimum: 0`); use type integer",
                ));
            }
        }
        Ok(self.shared(if non_negative {
            "non-negative-number"
        } else {
            "number"
        }))
    }
}

/// A non-negative integer keyword (`minLength`, `maxItems`, ...).
pub(super) fn count(
    map: &Map<String, Value>,
    keyword: &str,
    path: &str,
) -> Result<Option<u64>, GrammarError> {
    let Some(v) = map.get(keyword) else {
        return Ok(None);
    };
    let n = v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| *f >= 0.0 && f.fract() == 0.0)
            .map(|f| f.min(u64::MAX as f64) as u64)
    });
    n.map(Some).ok_or_else(|| {
        schema_error(
            &pointer(path, keyword),
            format!("`{keyword}` must be a non-negative integer"),
        )
    })
}

/// The least integer allowed by `minimum: n` (or `exclusiveMinimum`),
/// clamped to the generated range.
fn lower_bound(n: &serde_json::Number, exclusive: bool) -> i64 {
    let x = if let Some(i) = n.as_i64() {
        i.saturating_add(exclusive as i64)
    } else if n.is_u64() {
        i64::MAX
    } else {
        let f = n.as_f64().unwrap_or(0.0);
        let f = if exclusive { f.floor() + 1.0 } else { f.ceil() };
        f.clamp(-1e17, 1e17) as i64
    };
    x.clamp(-MAX_INTEGER - 1, MAX_INTEGER + 1)
}

/// The greatest integer allowed by `maximum: n` (or `exclusiveMaximum`).
fn upper_bound(n: &serde_json::Number, exclusive: bool) -> i64 {
    let x = if let Some(i) = n.as_i64() {
        i.saturating_sub(exclusive as i64)
    } else if n.is_u64() {
        i64::MAX
    } else {
        let f = n.as_f64().unwrap_or(0.0);
        let f = if exclusive { f.ceil() - 1.0 } else { f.floor() };
        f.clamp(-1e17, 1e17) as i64
    };
    x.clamp(-MAX_INTEGER - 1, MAX_INTEGER + 1)
}

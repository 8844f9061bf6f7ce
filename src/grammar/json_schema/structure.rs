//! Objects and arrays.

use kiln_runtime::grammar::GrammarError;
use serde_json::{Map, Value};

use super::literals::literal;
use super::scalars::count;
use super::{
    Converter, MAX_REPETITION, child_name, pointer, repeat, schema_error, seq, unsupported,
};

/// The schema of a required property that is not declared while
/// `additionalProperties` is absent.
static ANY: Value = Value::Bool(true);

/// Object keywords that cannot be enforced.
const UNSUPPORTED_OBJECT: &[(&str, &str)] = &[
    (
        "minProperties",
        "property counts are not supported; use required",
    ),
    (
        "maxProperties",
        "property counts are not supported; declare the properties",
    ),
    (
        "patternProperties",
        "regular-expression patterns are not supported yet",
    ),
    (
        "propertyNames",
        "constraints on property names are not supported",
    ),
    (
        "dependentRequired",
        "dependencies between properties are not supported",
    ),
    (
        "dependentSchemas",
        "dependencies between properties are not supported",
    ),
    (
        "dependencies",
        "dependencies between properties are not supported",
    ),
    (
        "unevaluatedProperties",
        "not supported; use additionalProperties",
    ),
];

/// Array keywords that cannot be enforced.
const UNSUPPORTED_ARRAY: &[(&str, &str)] = &[
    ("contains", "not supported; use prefixItems or items"),
    ("minContains", "not supported"),
    ("maxContains", "not supported"),
    ("unevaluatedItems", "not supported; use items"),
    (
        "additionalItems",
        "pre-2020-12 keyword; use prefixItems and items",
    ),
];

impl<'s> Converter<'s> {
    /// An object: declared properties in order, or a map.
    pub(super) fn object(
        &mut self,
        map: &'s Map<String, Value>,
        path: &str,
        name: &str,
        depth: usize,
    ) -> Result<String, GrammarError> {
        if let Some((keyword, reason)) = UNSUPPORTED_OBJECT
            .iter()
            .find(|(k, _)| map.contains_key(*k))
        {
            return Err(unsupported(keyword, path, *reason));
        }
        let properties = match map.get("properties") {
            None => None,
            Some(Value::Object(p)) => Some(p),
            Some(_) => {
                return Err(schema_error(
                    &pointer(path, "properties"),
                    "`properties` must be an object",
                ));
            }
        };
        let mut required: Vec<&str> = Vec::new();
        match map.get("required") {
            None => {}
            Some(Value::Array(names)) => {
                for n in names {
                    let n = n.as_str().ok_or_else(|| {
                        schema_error(
                            &pointer(path, "required"),
                            "`required` must be an array of strings",
                        )
                    })?;
                    if !required.contains(&n) {
                        required.push(n);
                    }
                }
            }
            Some(_) => {
                return Err(schema_error(
                    &pointer(path, "required"),
                    "`required` must be an array",
                ));
            }
        }
        let additional = map.get("additionalProperties");
        let space = self.shared("space");
        let empty = format!(r#""{{" {space} "}}""#);
        if properties.is_none_or(Map::is_empty) && required.is_empty() {
            return match additional {
                None | Some(Value::Bool(true)) => Ok(self.shared("object")),
                Some(Value::Bool(false)) => Ok(empty),
                Some(schema) => self.map_object(schema, path, name, depth),
            };
        }

        // (key, schema, its path, required), declared ones first.
        let declared = pointer(path, "properties");
        let mut fields: Vec<(&str, &'s Value, String, bool)> = Vec::new();
        for (key, schema) in properties.into_iter().flatten() {
            fields.push((
                key,
                schema,
                pointer(&declared, key),
                required.contains(&key.as_str()),
            ));
        }
        for &key in &required {
            if properties.is_some_and(|p| p.contains_key(key)) {
                continue;
            }
            let schema = match additional {
                Some(Value::Bool(false)) => {
                    return Err(GrammarError::AcceptsNothing { rule: name.into() });
                }
                Some(schema) => schema,
                None => &ANY,
            };
            fields.push((key, schema, pointer(path, "additionalProperties"), true));
        }

        // One `KEY-kv` rule per property that can appear.
        let mut kvs: Vec<(String, bool)> = Vec::new();
        for (key, schema, at, is_required) in fields {
            let hint = child_name(name, key);
            let snapshot = self.snapshot();
            let kv = self.reserve(&format!("{hint}-kv"));
            match self.visit(schema, &at, &hint, depth + 1) {
                Ok(value) => {
                    let key = literal(&serde_json::to_string(key).expect("a string serializes"));
                    self.define(&kv, format!(r#"{key} ":" {space} {value}"#));
                    kvs.push((kv, is_required));
                }
                Err(GrammarError::AcceptsNothing { .. }) if !is_required => self.rollback(snapshot),
                Err(e) => return Err(e),
            }
        }
        let n = kvs.len();
        if n == 0 {
            return Ok(empty);
        }

        // Commas: `rest[i]` is what may follow once some property before
        // `i` was written; alternative `j` starts with property `j`, all
        // before it left out (only optional ones can be). The rests that
        // two places use get a rule of their own, keeping the size linear.
        let first_required = kvs.iter().position(|(_, r)| *r).unwrap_or(n);
        let mut rest = vec![String::new(); n + 1];
        let shared_rests = 2..=(first_required + 1).min(n - 1);
        let rest_names: Vec<String> = shared_rests
            .clone()
            .map(|i| self.reserve(&format!("{name}-rest-{i}")))
            .collect();
        for i in (1..n).rev() {
            let (kv, is_required) = &kvs[i];
            let item = if *is_required {
                format!(r#""," {space} {kv}"#)
            } else {
                format!(r#"( "," {space} {kv} )?"#)
            };
            let body = seq(&[item.as_str(), rest[i + 1].as_str()]);
            rest[i] = if shared_rests.contains(&i) {
                let rule = &rest_names[i - 2];
                self.define(rule, body);
                rule.clone()
            } else {
                body
            };
        }
        let alts: Vec<String> = (0..=first_required.min(n - 1))
            .map(|j| seq(&[kvs[j].0.as_str(), rest[j + 1].as_str()]))
            .collect();
        let members = match &alts[..] {
            [one] => one.clone(),
            _ => format!("( {} )", alts.join(" | ")),
        };
        Ok(if first_required == n {
            format!(r#""{{" {space} ( {members} {space} )? "}}""#)
        } else {
            format!(r#""{{" {space} {members} {space} "}}""#)
        })
    }

    /// An object of any keys whose values follow `schema`.
    fn map_object(
        &mut self,
        schema: &'s Value,
        path: &str,
        name: &str,
        depth: usize,
    ) -> Result<String, GrammarError> {
        let space = self.shared("space");
        let at = pointer(path, "additionalProperties");
        let snapshot = self.snapshot();
        let entry = self.reserve(&format!("{name}-entry"));
        match self.visit(schema, &at, &format!("{name}-value"), depth + 1) {
            Ok(value) => {
                let string = self.shared("string");
                self.define(&entry, format!(r#"{string} ":" {space} {value}"#));
                Ok(format!(
                    r#""{{" {space} ( {entry} ( "," {space} {entry} )* {space} )? "}}""#
                ))
            }
            Err(GrammarError::AcceptsNothing { .. }) => {
                self.rollback(snapshot);
                Ok(format!(r#""{{" {space} "}}""#))
            }
            Err(e) => Err(e),
        }
    }

    /// An array: `prefixItems`, then `items`, `minItems..=maxItems` in all.
    pub(super) fn array(
        &mut self,
        map: &'s Map<String, Value>,
        path: &str,
        name: &str,
        depth: usize,
    ) -> Result<String, GrammarError> {
        if let Some((keyword, reason)) =
            UNSUPPORTED_ARRAY.iter().find(|(k, _)| map.contains_key(*k))
        {
            return Err(unsupported(keyword, path, *reason));
        }
        let min = count(map, "minItems", path)?.unwrap_or(0);
        let mut cap = count(map, "maxItems", path)?;
        match map.get("uniqueItems") {
            None | Some(Value::Bool(false)) => {}
            Some(Value::Bool(true)) if cap.is_some_and(|c| c <= 1) => {}
            Some(Value::Bool(true)) => {
                return Err(unsupported(
                    "uniqueItems",
                    path,
                    "`uniqueItems: true` is not supported",
                ));
            }
            Some(_) => {
                return Err(schema_error(
                    &pointer(path, "uniqueItems"),
                    "`uniqueItems` must be a boolean",
                ));
            }
        }
        if min > MAX_REPETITION {
            return Err(GrammarError::TooLarge {
                what: "minItems",
                limit: MAX_REPETITION as usize,
            });
        }
        let prefix: &'s [Value] = match map.get("prefixItems") {
            None => &[],
            Some(Value::Array(p)) => p,
            Some(_) => {
                return Err(schema_error(
                    &pointer(path, "prefixItems"),
                    "`prefixItems` must be an array",
                ));
            }
        };
        let items = match map.get("items") {
            Some(Value::Array(_)) => {
                return Err(unsupported(
                    "items",
                    path,
                    "the array form of `items` is pre-2020-12; use `prefixItems`",
                ));
            }
            items => items,
        };

        let mut elements = Vec::new();
        for (j, schema) in prefix.iter().enumerate() {
            if cap.is_some_and(|c| c <= j as u64) {
                break;
            }
            let at = pointer(&pointer(path, "prefixItems"), &j.to_string());
            match self.visit(
                schema,
                &at,
                &child_name(name, &format!("item-{j}")),
                depth + 1,
            ) {
                Ok(e) => elements.push(e),
                Err(GrammarError::AcceptsNothing { .. }) => {
                    cap = Some(j as u64);
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        let k = elements.len() as u64;
        let mut item = None;
        if cap.is_none_or(|c| c > k) {
            let visited = match items {
                None => Ok(self.shared("value")),
                Some(schema) => self.visit(
                    schema,
                    &pointer(path, "items"),
                    &child_name(name, "item"),
                    depth + 1,
                ),
            };
            match visited {
                Ok(e) => item = Some(e),
                Err(GrammarError::AcceptsNothing { .. }) => cap = Some(k),
                Err(e) => return Err(e),
            }
        }
        if cap.is_some_and(|c| min > c) {
            return Err(GrammarError::AcceptsNothing { rule: name.into() });
        }
        let space = self.shared("space");
        if cap == Some(0) {
            return Ok(format!(r#""[" {space} "]""#));
        }

        // Built from the end: the extra items, then each prefix item
        // (optional from `min` on) followed by what comes after it.
        let at_least = min.max(1);
        let comma_item = |e: &str| format!(r#"( "," {space} {e} )"#);
        let mut tail = match &item {
            None => String::new(),
            Some(item) => {
                let lo = at_least.saturating_sub(k);
                let hi = cap.map(|c| (c - k).min(MAX_REPETITION));
                if k > 0 {
                    repeat(&comma_item(item), lo, hi)
                } else {
                    seq(&[
                        item.clone(),
                        repeat(&comma_item(item), lo - 1, hi.map(|h| h - 1)),
                    ])
                }
            }
        };
        for (j, element) in elements.iter().enumerate().rev() {
            let sep = if j > 0 {
                format!(r#""," {space}"#)
            } else {
                String::new()
            };
            let s = seq(&[sep.as_str(), element, tail.as_str()]);
            tail = if (j as u64) < at_least {
                s
            } else {
                format!("( {s} )?")
            };
        }
        Ok(if min == 0 {
            format!(r#""[" {space} ( {tail} {space} )? "]""#)
        } else {
            format!(r#""[" {space} {tail} {space} "]""#)
        })
    }
}

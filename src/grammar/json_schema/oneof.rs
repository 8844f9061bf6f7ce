//! When the branches of a `oneOf` are provably disjoint.
//!
//! A `oneOf` is written like an `anyOf`, which is exact only when no
//! sentence of one branch's grammar validates against another branch.
//! Each branch is summed up by what it lets through ([`Gate`]): its
//! `type`, its `enum`/`const` values, its required properties with
//! `enum`/`const` values (a tag), and the types its grammar produces.

use serde_json::{Map, Value};

use super::{Converter, Keyword, inferred_kinds, json_equal, keyword, types};

/// A set of JSON types, integers counted as numbers.
type Kinds = u8;
const NULL: Kinds = 1;
const BOOLEAN: Kinds = 2;
const OBJECT: Kinds = 4;
const ARRAY: Kinds = 8;
const STRING: Kinds = 16;
const NUMBER: Kinds = 32;
const ALL: Kinds = 63;

/// Bare `$ref`s and one-element `allOf`s followed at most this often.
const MAX_HOPS: usize = 32;

fn kind_bits(kind: super::Kind) -> Kinds {
    use super::Kind::*;
    match kind {
        Null => NULL,
        Boolean => BOOLEAN,
        Object => OBJECT,
        Array => ARRAY,
        String => STRING,
        Integer | Number => NUMBER,
    }
}

fn value_bits(v: &Value) -> Kinds {
    match v {
        Value::Null => NULL,
        Value::Bool(_) => BOOLEAN,
        Value::Object(_) => OBJECT,
        Value::Array(_) => ARRAY,
        Value::String(_) => STRING,
        Value::Number(_) => NUMBER,
    }
}

/// What a branch lets through.
struct Gate<'s> {
    /// The branch accepts nothing.
    empty: bool,
    /// `type`: values of other types fail the branch.
    types: Option<Kinds>,
    /// `enum`/`const` (or a superset): other values fail the branch.
    values: Option<Vec<&'s Value>>,
    /// The types the branch's grammar produces (or a superset).
    produced: Kinds,
    /// Required properties whose schema is an `enum`/`const`.
    tags: Vec<(&'s str, Vec<&'s Value>)>,
}

impl Gate<'_> {
    fn any() -> Gate<'static> {
        Gate {
            empty: false,
            types: None,
            values: None,
            produced: ALL,
            tags: Vec::new(),
        }
    }
}

/// Two branches that may overlap, if any.
pub(super) fn overlapping<'s>(c: &Converter<'s>, branches: &'s [Value]) -> Option<(usize, usize)> {
    let gates: Vec<Gate<'s>> = branches.iter().map(|b| gate(c, b)).collect();
    for i in 0..gates.len() {
        for j in i + 1..gates.len() {
            if !(rejects(&gates[j], &gates[i]) && rejects(&gates[i], &gates[j])) {
                return Some((i, j));
            }
        }
    }
    None
}

/// Whether every sentence of `a`'s grammar fails `b`.
fn rejects(b: &Gate, a: &Gate) -> bool {
    if a.empty || b.empty {
        return true;
    }
    if b.types.is_some_and(|t| t & a.produced == 0) {
        return true;
    }
    if let Some(values) = &a.values {
        let fails = |v: &Value| {
            b.types.is_some_and(|t| t & value_bits(v) == 0)
                || b.values
                    .as_ref()
                    .is_some_and(|bv| !bv.iter().any(|w| json_equal(v, w)))
        };
        if values.iter().all(|v| fails(v)) {
            return true;
        }
    }
    // Objects whose tag takes values the other branch's tag refuses.
    a.produced == OBJECT
        && a.tags.iter().any(|(name, va)| {
            b.tags.iter().any(|(other, vb)| {
                other == name && va.iter().all(|v| !vb.iter().any(|w| json_equal(v, w)))
            })
        })
}

/// `schema` with bare `$ref`s and one-element `allOf`s followed.
fn follow<'s>(c: &Converter<'s>, mut schema: &'s Value) -> &'s Value {
    for _ in 0..MAX_HOPS {
        let Value::Object(map) = schema else {
            return schema;
        };
        let mut next = None;
        for (k, v) in map {
            match (keyword(k), k.as_str(), v) {
                (Keyword::Annotation, _, _) => {}
                (_, "$ref", Value::String(target)) if next.is_none() => {
                    next = if target == "#" {
                        Some(c.root)
                    } else {
                        c.resolve(target, "#").ok().map(|(s, _)| s)
                    };
                    if next.is_none() {
                        return schema;
                    }
                }
                (_, "allOf", Value::Array(one)) if next.is_none() && one.len() == 1 => {
                    next = Some(&one[0])
                }
                _ => return schema,
            }
        }
        match next {
            Some(n) => schema = n,
            None => return schema,
        }
    }
    schema
}

fn gate<'s>(c: &Converter<'s>, schema: &'s Value) -> Gate<'s> {
    let map = match follow(c, schema) {
        Value::Bool(false) => {
            return Gate {
                empty: true,
                ..Gate::any()
            };
        }
        Value::Object(map) => map,
        _ => return Gate::any(),
    };
    let types = map
        .get("type")
        .and_then(|t| types(t, "").ok())
        .map(|kinds| kinds.into_iter().fold(0, |acc, k| acc | kind_bits(k)));
    let values = enumerated(map);
    let combined = map.keys().any(|k| keyword(k) == Keyword::Combinator);
    let produced = if let Some(values) = &values {
        values.iter().fold(0, |acc, v| acc | value_bits(v)) & types.unwrap_or(ALL)
    } else if let Some(types) = types {
        types
    } else if combined {
        ALL
    } else {
        match inferred_kinds(map)
            .into_iter()
            .fold(0, |acc, k| acc | kind_bits(k))
        {
            0 => ALL,
            kinds => kinds,
        }
    };
    let mut tags = Vec::new();
    if let (Some(Value::Array(required)), Some(Value::Object(properties))) =
        (map.get("required"), map.get("properties"))
    {
        for name in required.iter().filter_map(Value::as_str) {
            if let Some(Value::Object(property)) = properties.get(name).map(|p| follow(c, p))
                && let Some(values) = enumerated(property)
            {
                tags.push((name, values));
            }
        }
    }
    Gate {
        empty: false,
        types,
        values,
        produced,
        tags,
    }
}

/// The values `const` or `enum` allows (a superset when both appear).
fn enumerated(map: &Map<String, Value>) -> Option<Vec<&Value>> {
    match (map.get("const"), map.get("enum")) {
        (Some(c), _) => Some(vec![c]),
        (None, Some(Value::Array(values))) => Some(values.iter().collect()),
        _ => None,
    }
}

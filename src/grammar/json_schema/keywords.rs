//! What each keyword constrains, JSON types, and JSON Schema equality.

use kiln_runtime::grammar::GrammarError;
use serde_json::{Map, Value};

use super::schema_error;

/// A JSON type, as `type` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Null,
    Boolean,
    Object,
    Array,
    String,
    Integer,
    Number,
}

impl Kind {
    pub(super) fn from_name(name: &str) -> Option<Kind> {
        Some(match name {
            "null" => Kind::Null,
            "boolean" => Kind::Boolean,
            "object" => Kind::Object,
            "array" => Kind::Array,
            "string" => Kind::String,
            "integer" => Kind::Integer,
            "number" => Kind::Number,
            _ => return None,
        })
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Boolean => "boolean",
            Kind::Object => "object",
            Kind::Array => "array",
            Kind::String => "string",
            Kind::Integer => "integer",
            Kind::Number => "number",
        }
    }

    /// The keyword group of this type (numbers share theirs).
    pub(super) fn group(self) -> Kind {
        if self == Kind::Integer {
            Kind::Number
        } else {
            self
        }
    }

    /// Whether `value` validates against `type: self`.
    pub(super) fn admits(self, value: &Value) -> bool {
        match (self, value) {
            (Kind::Null, Value::Null)
            | (Kind::Boolean, Value::Bool(_))
            | (Kind::Object, Value::Object(_))
            | (Kind::Array, Value::Array(_))
            | (Kind::String, Value::String(_))
            | (Kind::Number, Value::Number(_)) => true,
            // Draft 2020-12: an integer is a number without a fraction.
            (Kind::Integer, Value::Number(n)) => {
                n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
            }
            _ => false,
        }
    }
}

/// What a keyword is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Keyword {
    /// No effect on validation.
    Annotation,
    /// `type`, `enum`, `const`.
    Core,
    /// `$ref`, `anyOf`, `oneOf`, `allOf`.
    Combinator,
    /// Constrains only values of this type (`Number` for both numbers).
    Typed(Kind),
    /// Cannot be enforced.
    Unsupported(&'static str),
}

/// What keyword `name` is about.
pub(super) fn keyword(name: &str) -> Keyword {
    match name {
        "title" | "description" | "$schema" | "$id" | "$comment" | "default" | "examples"
        | "deprecated" | "readOnly" | "writeOnly" | "contentEncoding" | "contentMediaType"
        | "$defs" | "definitions" | "discriminator" => Keyword::Annotation,
        "type" | "enum" | "const" => Keyword::Core,
        "$ref" | "anyOf" | "oneOf" | "allOf" => Keyword::Combinator,
        "properties"
        | "required"
        | "additionalProperties"
        | "minProperties"
        | "maxProperties"
        | "patternProperties"
        | "propertyNames"
        | "dependentRequired"
        | "dependentSchemas"
        | "unevaluatedProperties"
        | "dependencies" => Keyword::Typed(Kind::Object),
        "items" | "prefixItems" | "minItems" | "maxItems" | "uniqueItems" | "contains"
        | "minContains" | "maxContains" | "unevaluatedItems" | "additionalItems" => {
            Keyword::Typed(Kind::Array)
        }
        "minLength" | "maxLength" | "format" | "pattern" => Keyword::Typed(Kind::String),
        "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" | "multipleOf" => {
            Keyword::Typed(Kind::Number)
        }
        "not" => Keyword::Unsupported("negation cannot be expressed in a grammar"),
        "if" | "then" | "else" => Keyword::Unsupported("conditional schemas are not supported"),
        "$dynamicRef" | "$recursiveRef" | "$anchor" | "$dynamicAnchor" | "$recursiveAnchor" => {
            Keyword::Unsupported(
                "only `$ref` to `#`, `#/$defs/NAME` or `#/definitions/NAME` is supported",
            )
        }
        _ => Keyword::Unsupported("unknown keyword"),
    }
}

/// The types `type` names, without repeats (`number` covers `integer`).
pub(super) fn types(value: &Value, path: &str) -> Result<Vec<Kind>, GrammarError> {
    let names: Vec<&Value> = match value {
        Value::Array(names) if !names.is_empty() => names.iter().collect(),
        Value::String(_) => vec![value],
        _ => {
            return Err(schema_error(
                path,
                "`type` must be a type name or a non-empty array of them",
            ));
        }
    };
    let mut kinds = Vec::new();
    for name in names {
        let kind = name
            .as_str()
            .and_then(Kind::from_name)
            .ok_or_else(|| schema_error(path, format!("unknown type {name}")))?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    if kinds.contains(&Kind::Number) {
        kinds.retain(|&k| k != Kind::Integer);
    }
    Ok(kinds)
}

/// The types a schema without `type` is generated as: those whose
/// keywords it uses (none: any value).
pub(super) fn inferred_kinds(map: &Map<String, Value>) -> Vec<Kind> {
    let mut kinds = Vec::new();
    for k in map.keys() {
        if let Keyword::Typed(kind) = keyword(k)
            && !kinds.contains(&kind)
        {
            kinds.push(kind);
        }
    }
    kinds
}

/// JSON Schema equality: numbers by value (`1 == 1.0`), not booleans.
pub(super) fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            },
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

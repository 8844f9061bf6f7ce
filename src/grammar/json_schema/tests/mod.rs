//! The converter's tests: the grammar text, the texts it accepts and
//! refuses (through the GBNF engine), and the errors.

use std::collections::HashSet;

use kiln_runtime::grammar::Grammar;
use serde_json::{Value, json};

use super::*;

mod combinators;
mod scalars;
mod structure;

fn gbnf(schema: &Value) -> String {
    json_schema_to_gbnf(schema).unwrap_or_else(|e| panic!("{schema}: {e}"))
}

fn compile(schema: &Value) -> Grammar {
    let g = gbnf(schema);
    Grammar::parse(&g).unwrap_or_else(|e| panic!("{schema}: {e}\n{g}"))
}

/// Asserts that `schema`'s grammar accepts every text of `good` (each
/// valid JSON) and none of `bad`.
fn check(schema: Value, good: &[&str], bad: &[&str]) {
    let g = compile(&schema);
    for text in good {
        assert!(
            serde_json::from_str::<Value>(text).is_ok(),
            "test text {text} is not JSON"
        );
        assert!(
            g.matches(text.as_bytes()),
            "{schema} should accept {text}\n{}",
            gbnf(&schema)
        );
    }
    for text in bad {
        assert!(
            !g.matches(text.as_bytes()),
            "{schema} should refuse {text}\n{}",
            gbnf(&schema)
        );
    }
}

fn error(schema: Value) -> GrammarError {
    match json_schema_to_gbnf(&schema) {
        Ok(g) => panic!("{schema} converted:\n{g}"),
        Err(e) => e,
    }
}

fn assert_unsupported(schema: Value, keyword: &str, path: &str) {
    match error(schema.clone()) {
        GrammarError::Unsupported {
            keyword: k,
            path: p,
            reason,
        } => {
            assert_eq!(
                (k.as_str(), p.as_str()),
                (keyword, path),
                "{schema}: {reason}"
            );
            assert!(!reason.is_empty());
        }
        e => panic!("{schema}: expected `{keyword}` unsupported, got {e}"),
    }
}

fn assert_accepts_nothing(schema: Value) {
    match error(schema.clone()) {
        GrammarError::AcceptsNothing { .. } => {}
        e => panic!("{schema}: expected accepts-nothing, got {e}"),
    }
}

/// The names a GBNF body refers to (outside literals, classes and bounds).
fn references(body: &str) -> Vec<&str> {
    let bytes = body.as_bytes();
    let mut names = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' | b'[' => {
                let close = if bytes[i] == b'"' { b'"' } else { b']' };
                i += 1;
                while bytes[i] != close {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'{' => i += body[i..].find('}').expect("closed bound") + 1,
            b if b.is_ascii_alphanumeric() || b == b'-' => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'-') {
                    i += 1;
                }
                names.push(&body[start..i]);
            }
            _ => i += 1,
        }
    }
    names
}

/// Checks the grammar text itself: `root` first, one rule per line,
/// every name defined once and used, names of `[a-zA-Z0-9-]`.
fn assert_well_formed(g: &str) {
    assert!(g.starts_with("root ::= "), "{g}");
    let mut defined = HashSet::new();
    let mut used = HashSet::from(["root"]);
    for line in g.lines() {
        let (name, body) = line.split_once(" ::= ").unwrap_or_else(|| panic!("{line}"));
        assert!(
            name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "{name}"
        );
        assert!(defined.insert(name), "{name} defined twice in\n{g}");
        used.extend(references(body));
    }
    for name in &used {
        assert!(
            defined.contains(name),
            "{name} used but not defined in\n{g}"
        );
    }
    for name in &defined {
        assert!(used.contains(name), "{name} defined but never used in\n{g}");
    }
}

fn suite() -> Vec<Value> {
    let suite: Value =
        serde_json::from_str(include_str!("../../../../tests/data/structured/suite.json"))
            .expect("suite.json is JSON");
    suite.as_array().expect("an array").clone()
}

#[test]
fn person_grammar_text() {
    let schema = json!({
        "type": "object",
        "properties": {
            "name": { "type": "string", "minLength": 1 },
            "age": { "type": "integer", "minimum": 0, "maximum": 150 },
            "email": { "type": "string" }
        },
        "required": ["name", "age"],
        "additionalProperties": false
    });
    let expected = r#"root ::= "{" space name-kv "," space age-kv ( "," space email-kv )? space "}"
name-kv ::= "\"name\"" ":" space name
name ::= "\"" char+ "\""
age-kv ::= "\"age\"" ":" space age
age ::= "0" | [1-9] [0-9]? | "1" ( [0-4] [0-9] | "50" )
email-kv ::= "\"email\"" ":" space string
space ::= " "?
string ::= "\"" char* "\""
"#;
    let g = gbnf(&schema);
    assert!(g.starts_with(expected), "{g}");
    assert!(
        g.ends_with(&format!("char ::= {}\n", formats::SHARED[5].body)),
        "{g}"
    );
}

#[test]
fn optional_properties_share_their_tails() {
    let schema = json!({
        "type": "object",
        "properties": { "a": {}, "b": {}, "c": {}, "d": {} }
    });
    let g = gbnf(&schema);
    let root = g.lines().next().unwrap();
    assert_eq!(
        root,
        r#"root ::= "{" space ( ( a-kv ( "," space b-kv )? root-rest-2 | b-kv root-rest-2 | c-kv root-rest-3 | d-kv ) space )? "}""#
    );
    assert!(
        g.contains("root-rest-2 ::= ( \",\" space c-kv )? root-rest-3\n"),
        "{g}"
    );
}

#[test]
fn every_grammar_is_well_formed() {
    let mut schemas = suite()
        .iter()
        .map(|case| case["schema"].clone())
        .collect::<Vec<_>>();
    schemas.extend([
        json!(true),
        json!({}),
        json!({ "type": "object" }),
        json!({ "type": ["string", "null", "integer"], "maxLength": 3, "minimum": -20 }),
        json!({ "type": "array", "prefixItems": [{ "type": "string" }, false], "items": { "type": "integer" } }),
        json!({ "type": "object", "properties": { "a": false, "b": { "type": "boolean" } } }),
        json!({ "type": "object", "additionalProperties": { "type": "number" } }),
        json!({ "anyOf": [{ "type": "string" }, { "enum": [] }, { "type": "null" }] }),
        json!({ "type": "string", "format": "date-time" }),
        json!({ "$ref": "#/definitions/a", "definitions": { "a": { "type": "array", "items": { "$ref": "#" } } } }),
    ]);
    for schema in &schemas {
        assert_well_formed(&gbnf(schema));
    }
}

#[test]
fn unsupported_keywords_are_named_with_their_path() {
    let cases = [
        (json!({ "not": { "type": "string" } }), "not", "#"),
        (json!({ "if": {}, "then": {} }), "if", "#"),
        (
            json!({ "type": "object", "properties": { "a": { "type": "string", "pattern": "x" } } }),
            "pattern",
            "#/properties/a",
        ),
        (
            json!({ "type": "object", "minProperties": 1 }),
            "minProperties",
            "#",
        ),
        (
            json!({ "type": "object", "patternProperties": { "x": {} } }),
            "patternProperties",
            "#",
        ),
        (
            json!({ "type": "object", "propertyNames": { "maxLength": 3 } }),
            "propertyNames",
            "#",
        ),
        (
            json!({ "type": "object", "dependentRequired": {} }),
            "dependentRequired",
            "#",
        ),
        (
            json!({ "items": { "type": "integer", "multipleOf": 3 } }),
            "multipleOf",
            "#/items",
        ),
        (
            json!({ "anyOf": [{ "type": "string" }, { "nullable": true }] }),
            "nullable",
            "#/anyOf/1",
        ),
        (
            json!({ "prefixItems": [{ "type": "string", "format": "email" }] }),
            "format",
            "#/prefixItems/0",
        ),
        (
            json!({ "type": "object", "properties": { "a/b": { "frobnicate": 1 } } }),
            "frobnicate",
            "#/properties/a~1b",
        ),
        (
            json!({ "$defs": { "x": { "type": "number", "maximum": 3 } }, "$ref": "#/$defs/x" }),
            "maximum",
            "#/$defs/x",
        ),
    ];
    for (schema, keyword, path) in cases {
        assert_unsupported(schema, keyword, path);
    }
}

#[test]
fn malformed_schemas() {
    for schema in [
        json!(3),
        json!({ "type": "text" }),
        json!({ "type": [] }),
        json!({ "properties": [] }),
        json!({ "required": "a" }),
        json!({ "enum": "a" }),
        json!({ "minLength": -1 }),
        json!({ "anyOf": [] }),
        json!({ "type": "integer", "minimum": "3" }),
    ] {
        assert!(
            matches!(error(schema.clone()), GrammarError::Schema { .. }),
            "{schema}"
        );
    }
}

#[test]
fn false_accepts_nothing() {
    assert_accepts_nothing(json!(false));
    assert_accepts_nothing(
        json!({ "type": "object", "properties": { "a": { "type": "array", "minItems": 1, "items": false } }, "required": ["a"] }),
    );
}

#[test]
fn nesting_is_limited() {
    let nest = |levels: usize| {
        let mut schema = json!({ "type": "integer" });
        for _ in 0..levels {
            schema = json!({ "type": "array", "items": schema });
        }
        schema
    };
    check(
        nest(MAX_DEPTH),
        &[&format!(
            "{}1{}",
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        )],
        &[],
    );
    assert!(matches!(
        error(nest(MAX_DEPTH + 1)),
        GrammarError::TooLarge {
            what: "schema nesting depth",
            ..
        }
    ));
}

#[test]
fn rule_names_are_readable_and_unique() {
    let schema = json!({
        "type": "object",
        "properties": {
            "first name": { "type": "string", "maxLength": 9 },
            "string": { "type": "string", "maxLength": 9 },
            "名前": { "type": "string", "maxLength": 9 },
            "住所": { "type": "string", "maxLength": 9 },
            "person": { "type": "object", "properties": { "age": { "type": "integer", "maximum": 9 } } }
        }
    });
    let g = gbnf(&schema);
    for name in [
        "first-name ::=",
        "string-2 ::=",
        "x ::=",
        "x-2 ::=",
        "person-age ::=",
        "person-age-kv ::=",
    ] {
        assert!(g.contains(name), "{name} in\n{g}");
    }
    assert_well_formed(&g);
}

#[test]
fn json_object_mode() {
    check(
        json!({ "type": "object" }),
        &["{}", "{\"a\": [1, {\"b\": null}]}"],
        &["[]", "1", "\"{}\""],
    );
}

#[test]
fn suite_schemas_convert_and_compile() {
    let cases = suite();
    assert!(cases.len() >= 32, "{} cases", cases.len());
    let mut names = HashSet::new();
    for case in &cases {
        let name = case["name"].as_str().expect("a name");
        assert!(names.insert(name), "duplicate case {name}");
        let prompts = case["prompts"].as_array().expect("prompts");
        assert!(
            prompts.len() >= 3 && prompts.iter().all(Value::is_string),
            "{name}"
        );
        compile(&case["schema"]);
    }
}

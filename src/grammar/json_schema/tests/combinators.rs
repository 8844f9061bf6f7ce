//! `enum`/`const`, type arrays, `anyOf`, `oneOf`, `allOf` and `$ref`.

use serde_json::json;

use super::*;

#[test]
fn enums_and_consts() {
    check(
        json!({ "enum": ["red", "green", "grey", 1, 2.5, null, true, [1, "a"], { "k": "v" }] }),
        &[
            "\"red\"",
            "\"green\"",
            "\"grey\"",
            "1",
            "2.5",
            "null",
            "true",
            "[1,\"a\"]",
            "{\"k\":\"v\"}",
        ],
        &["\"gre\"", "\"Red\"", "2", "false", "[1, \"a\"]", "\"1\""],
    );
    check(
        json!({ "type": "string", "enum": ["a", 1, "b"] }),
        &["\"a\"", "\"b\""],
        &["1"],
    );
    check(
        json!({ "type": "integer", "enum": [1, 1.0, 1.5, "1"] }),
        &["1", "1.0"],
        &["1.5", "\"1\""],
    );
    check(
        json!({ "const": "café \"x\"" }),
        &["\"café \\\"x\\\"\""],
        &["\"café\""],
    );
    check(
        json!({ "const": 3, "enum": [1, 3.0, 3] }),
        &["3.0", "3"],
        &["1"],
    );
    check(json!({ "const": "é\u{1}" }), &["\"é\\u0001\""], &[]);
    assert_accepts_nothing(json!({ "enum": [] }));
    assert_accepts_nothing(json!({ "type": "string", "enum": [1, null] }));
    assert_unsupported(
        json!({ "enum": ["a", "bb"], "maxLength": 1 }),
        "maxLength",
        "#",
    );
}

#[test]
fn big_enums_stay_compact() {
    let values: Vec<String> = (0..10_000).map(|i| format!("item-{i:05}")).collect();
    let schema = json!({ "enum": values });
    let g = gbnf(&schema);
    let text: usize = values.iter().map(|v| v.len() + 2).sum();
    assert!(
        g.len() < text,
        "{} bytes for {text} bytes of values",
        g.len()
    );
    let grammar = compile(&schema);
    for v in ["\"item-00000\"", "\"item-04567\"", "\"item-09999\""] {
        assert!(grammar.matches(v.as_bytes()), "{v}");
    }
    for v in ["\"item-10000\"", "\"item-0456\"", "\"item-045670\""] {
        assert!(!grammar.matches(v.as_bytes()), "{v}");
    }
    let too_many: Vec<u32> = (0..100_001).collect();
    assert!(matches!(
        error(json!({ "enum": too_many })),
        GrammarError::TooLarge {
            what: "enum values",
            ..
        }
    ));
}

#[test]
fn type_arrays() {
    check(
        json!({ "type": ["string", "null"], "maxLength": 2 }),
        &["\"ab\"", "null"],
        &["\"abc\"", "1"],
    );
    check(
        json!({ "type": ["integer", "number"] }),
        &["1", "1.5"],
        &["\"1\""],
    );
    check(
        json!({ "type": ["integer", "boolean"], "minimum": 0, "maximum": 3 }),
        &["0", "3", "true"],
        &["4", "-1", "null"],
    );
    check(
        json!({ "type": ["integer", "string"], "minimum": 5, "maximum": 1 }),
        &["\"x\""],
        &["3"],
    );
}

#[test]
fn inferred_types() {
    check(json!({ "minLength": 2 }), &["\"ab\""], &["\"a\"", "12"]);
    check(
        json!({ "properties": { "a": { "type": "integer" } } }),
        &["{\"a\": 1}"],
        &["1"],
    );
    check(
        json!({ "items": { "type": "integer" } }),
        &["[1]"],
        &["[\"a\"]"],
    );
    assert_unsupported(json!({ "maximum": 5 }), "maximum", "#");
}

#[test]
fn any_of() {
    check(
        json!({ "anyOf": [{ "type": "string", "maxLength": 1 }, { "type": "integer", "minimum": 10 }, false] }),
        &["\"a\"", "10", "123"],
        &["\"ab\"", "9", "null"],
    );
    assert_accepts_nothing(json!({ "anyOf": [false, { "enum": [] }] }));
    assert_unsupported(
        json!({ "type": "string", "anyOf": [{ "maxLength": 2 }] }),
        "anyOf",
        "#",
    );
}

#[test]
fn one_of_with_disjoint_branches() {
    // By type.
    check(
        json!({ "oneOf": [{ "type": "string" }, { "type": "integer" }, { "type": "null" }] }),
        &["\"x\"", "1", "null"],
        &["true"],
    );
    // By value.
    check(
        json!({ "oneOf": [{ "const": "a" }, { "enum": ["b", 1] }] }),
        &["\"a\"", "\"b\"", "1"],
        &["\"c\""],
    );
    // By a tag property, through $ref.
    let tagged = json!({
        "oneOf": [{ "$ref": "#/$defs/cat" }, { "$ref": "#/$defs/dog" }],
        "$defs": {
            "cat": { "type": "object", "properties": { "kind": { "const": "cat" }, "lives": { "type": "integer" } }, "required": ["kind", "lives"] },
            "dog": { "type": "object", "properties": { "kind": { "enum": ["dog", "puppy"] }, "good": { "type": "boolean" } }, "required": ["kind"] }
        }
    });
    check(
        tagged,
        &[
            "{\"kind\": \"cat\", \"lives\": 9}",
            "{\"kind\": \"puppy\"}",
            "{\"kind\": \"dog\", \"good\": true}",
        ],
        &["{\"kind\": \"cat\"}", "{\"kind\": \"dog\", \"lives\": 9}"],
    );
    // Overlapping branches.
    assert_unsupported(
        json!({ "oneOf": [{ "type": "integer" }, { "type": "number" }] }),
        "oneOf",
        "#",
    );
    assert_unsupported(
        json!({ "oneOf": [{ "type": "string" }, { "maxLength": 3 }] }),
        "oneOf",
        "#",
    );
    assert_unsupported(
        json!({ "oneOf": [{ "enum": [1, 2] }, { "enum": [2.0, 3] }] }),
        "oneOf",
        "#",
    );
    assert_unsupported(
        json!({ "oneOf": [
            { "type": "object", "properties": { "k": { "const": "a" } }, "required": ["k"] },
            { "type": "object", "properties": { "k": { "const": "a" } } }
        ] }),
        "oneOf",
        "#",
    );
}

#[test]
fn all_of_with_one_schema() {
    check(
        json!({ "allOf": [{ "type": "integer", "minimum": 1, "maximum": 2 }], "description": "one or two" }),
        &["1", "2"],
        &["3"],
    );
    assert_unsupported(
        json!({ "allOf": [{ "type": "integer" }, { "minimum": 1 }] }),
        "allOf",
        "#",
    );
}

#[test]
fn refs_and_recursion() {
    let tree = json!({
        "$defs": {
            "node": {
                "type": "object",
                "properties": { "name": { "type": "string" }, "children": { "type": "array", "items": { "$ref": "#/$defs/node" } } },
                "required": ["name"],
                "additionalProperties": false
            }
        },
        "$ref": "#/$defs/node"
    });
    let g = gbnf(&tree);
    assert_eq!(g.matches("node ::=").count(), 1, "{g}");
    check(
        tree,
        &[
            "{\"name\": \"a\"}",
            "{\"name\": \"a\", \"children\": [{\"name\": \"b\", \"children\": []}, {\"name\": \"c\"}]}",
        ],
        &[
            "{\"name\": \"a\", \"children\": [{}]}",
            "{\"children\": []}",
        ],
    );
    check(
        json!({ "type": "array", "items": { "anyOf": [{ "type": "integer" }, { "$ref": "#" }] } }),
        &["[]", "[1, [2, [[]]]]"],
        &["[\"a\"]"],
    );
    check(
        json!({ "definitions": { "Id": { "type": "integer", "minimum": 1 } }, "type": "object",
                "properties": { "a": { "$ref": "#/definitions/Id" }, "b": { "$ref": "#/definitions/Id" } } }),
        &["{\"a\": 1, \"b\": 2}"],
        &["{\"a\": 0}"],
    );
    assert_unsupported(json!({ "$ref": "https://example.com/schema" }), "$ref", "#");
    assert_unsupported(
        json!({ "$ref": "#/$defs/a/properties/b", "$defs": { "a": {} } }),
        "$ref",
        "#",
    );
    assert!(matches!(
        error(json!({ "$ref": "#/$defs/missing" })),
        GrammarError::Schema { .. }
    ));
    for cycle in [
        json!({ "$ref": "#" }),
        json!({ "$ref": "#/$defs/a", "$defs": { "a": { "$ref": "#/$defs/a" } } }),
        json!({ "$ref": "#/$defs/a", "$defs": { "a": { "allOf": [{ "$ref": "#/$defs/b" }] }, "b": { "$ref": "#/$defs/a" } } }),
    ] {
        assert!(
            matches!(error(cycle.clone()), GrammarError::Schema { .. }),
            "{cycle}"
        );
    }
    assert_unsupported(
        json!({ "$ref": "#/$defs/a", "$defs": { "a": { "type": "string" } }, "maxLength": 3 }),
        "$ref",
        "#",
    );
}

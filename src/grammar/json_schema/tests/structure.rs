//! Objects and arrays.

use serde_json::json;

use super::*;

/// Every subset of four properties, in order, for every choice of which
/// are required: an object is accepted exactly when it has them all.
#[test]
fn required_and_optional_properties_mix() {
    let keys = ["a", "b", "c", "d"];
    for required_mask in 0..16u32 {
        let required: Vec<&str> = (0..4)
            .filter(|i| required_mask >> i & 1 == 1)
            .map(|i| keys[i])
            .collect();
        let schema = json!({
            "type": "object",
            "properties": { "a": { "type": "integer" }, "b": { "type": "integer" }, "c": { "type": "integer" }, "d": { "type": "integer" } },
            "required": required,
        });
        let g = compile(&schema);
        for present_mask in 0..16u32 {
            let members: Vec<String> = (0..4)
                .filter(|i| present_mask >> i & 1 == 1)
                .map(|i| format!("\"{}\": {i}", keys[i]))
                .collect();
            let text = format!("{{{}}}", members.join(", "));
            let valid = present_mask & required_mask == required_mask;
            assert_eq!(
                g.matches(text.as_bytes()),
                valid,
                "{text} with required {required:?}"
            );
        }
        for bad in [
            "{\"b\": 1, \"a\": 0}",
            "{\"a\": 0, \"a\": 0}",
            "{, \"a\": 0}",
            "{\"a\": 0,}",
            "{\"e\": 0}",
        ] {
            assert!(
                !g.matches(bad.as_bytes()),
                "{bad} with required {required:?}"
            );
        }
    }
}

#[test]
fn additional_properties() {
    // No declared properties.
    check(
        json!({ "type": "object", "additionalProperties": false }),
        &["{}", "{ }"],
        &["{\"a\": 1}"],
    );
    check(
        json!({ "type": "object", "additionalProperties": { "type": "integer" } }),
        &["{}", "{\"a\": 1, \"b\": 2}", "{\"\": -3}"],
        &["{\"a\": \"x\"}", "{\"a\": 1,}"],
    );
    check(
        json!({ "type": "object", "additionalProperties": true }),
        &["{\"a\": [1]}"],
        &["[]"],
    );
    check(
        json!({ "type": "object", "additionalProperties": false }),
        &["{}"],
        &[],
    );
    // Declared properties: only those are generated, whatever it says.
    for additional in [json!(true), json!(false), json!({ "type": "string" })] {
        check(
            json!({ "type": "object", "properties": { "x": { "type": "null" } }, "additionalProperties": additional }),
            &["{}", "{\"x\": null}"],
            &["{\"y\": \"a\"}"],
        );
    }
    // Required but undeclared properties follow additionalProperties.
    check(
        json!({ "type": "object", "required": ["id"], "additionalProperties": { "type": "integer" } }),
        &["{\"id\": 3}"],
        &["{}", "{\"id\": \"3\"}"],
    );
    check(
        json!({ "required": ["id"] }),
        &["{\"id\": [true]}"],
        &["{}", "[]"],
    );
    assert_accepts_nothing(json!({
        "type": "object", "properties": { "a": {} }, "required": ["b"], "additionalProperties": false
    }));
}

#[test]
fn properties_that_accept_nothing() {
    check(
        json!({ "type": "object", "properties": { "a": false, "b": { "type": "boolean" }, "c": { "enum": [] } } }),
        &["{}", "{\"b\": true}"],
        &["{\"a\": 1}"],
    );
    assert_accepts_nothing(
        json!({ "type": "object", "properties": { "a": false }, "required": ["a"] }),
    );
    check(
        json!({ "type": "object", "properties": { "a": false } }),
        &["{}"],
        &["{\"a\": 0}"],
    );
}

#[test]
fn property_names_are_escaped() {
    check(
        json!({ "type": "object", "properties": { "say \"hi\"": { "type": "integer" }, "日本": { "type": "integer" } }, "required": ["say \"hi\"", "日本"] }),
        &["{\"say \\\"hi\\\"\": 1, \"日本\": 2}"],
        &["{\"say \"hi\"\": 1, \"日本\": 2}"],
    );
}

#[test]
fn array_lengths() {
    for (min, max) in [
        (0, None),
        (0, Some(0)),
        (0, Some(1)),
        (1, None),
        (2, Some(2)),
        (1, Some(4)),
        (3, None),
    ] {
        let mut schema =
            json!({ "type": "array", "items": { "type": "integer" }, "minItems": min });
        if let Some(max) = max {
            schema["maxItems"] = json!(max);
        }
        let g = compile(&schema);
        for len in 0..7u64 {
            let text = format!("[{}]", vec!["7"; len as usize].join(", "));
            let valid = len >= min && max.is_none_or(|m| len <= m);
            assert_eq!(g.matches(text.as_bytes()), valid, "{text} in {schema}");
        }
        assert!(!g.matches(b"[7,]"));
        assert!(!g.matches(b"[\"7\"]"));
    }
    assert_accepts_nothing(json!({ "type": "array", "minItems": 3, "maxItems": 2 }));
    assert_accepts_nothing(json!({ "type": "array", "items": false, "minItems": 1 }));
    check(
        json!({ "type": "array", "items": false }),
        &["[]", "[ ]"],
        &["[1]"],
    );
    check(
        json!({ "type": "array" }),
        &["[]", "[1, \"a\", null]"],
        &["[1 2]"],
    );
    check(
        json!({ "type": "array", "uniqueItems": false, "maxItems": 2 }),
        &["[1, 1]"],
        &["[1, 1, 1]"],
    );
    check(
        json!({ "type": "array", "uniqueItems": true, "maxItems": 1 }),
        &["[1]"],
        &["[1, 2]"],
    );
    assert_unsupported(
        json!({ "type": "array", "uniqueItems": true }),
        "uniqueItems",
        "#",
    );
    assert_unsupported(
        json!({ "type": "array", "contains": { "type": "integer" } }),
        "contains",
        "#",
    );
    assert_unsupported(
        json!({ "type": "array", "items": [{ "type": "integer" }] }),
        "items",
        "#",
    );
}

#[test]
fn prefix_items() {
    let tuple = json!({
        "type": "array",
        "prefixItems": [{ "type": "string" }, { "type": "integer" }],
        "items": { "type": "boolean" },
        "minItems": 1,
        "maxItems": 4
    });
    check(
        tuple,
        &[
            "[\"a\"]",
            "[\"a\", 1]",
            "[\"a\", 1, true]",
            "[\"a\", 1, true, false]",
        ],
        &[
            "[]",
            "[1]",
            "[\"a\", true]",
            "[\"a\", 1, 2]",
            "[\"a\", 1, true, false, true]",
        ],
    );
    check(
        json!({ "type": "array", "prefixItems": [{ "type": "null" }, { "type": "null" }], "items": false }),
        &["[]", "[null]", "[null, null]"],
        &["[null, null, null]"],
    );
    check(
        json!({ "type": "array", "prefixItems": [{ "type": "null" }, false] }),
        &["[]", "[null]"],
        &["[null, null]", "[null, 1]"],
    );
    check(
        json!({ "type": "array", "prefixItems": [{ "type": "null" }] }),
        &["[null, 1, \"x\"]"],
        &["[1]"],
    );
}

//! JSON Schema to GBNF.
//!
//! In the spirit of llama.cpp's `json-schema-to-grammar`: one pass over
//! the schema writes a rule per object, array, constrained string or
//! number, enum, combinator and `$ref` target, named after its path
//! (`root`, `person-name`, `person-name-kv`), and pulls in the shared
//! rules (`space`, `string`, `number`, `value`, ...) it uses. The grammar
//! may be stricter than the schema (only declared properties, bounded
//! whitespace and digits) but never weaker: a keyword that cannot be
//! enforced exactly is an error naming it.

mod combinators;
mod formats;
mod keywords;
mod literals;
mod oneof;
mod ranges;
mod scalars;
mod structure;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};

use kiln_runtime::grammar::GrammarError;
use serde_json::{Map, Value};

use formats::SHARED;
use keywords::{Keyword, Kind, inferred_kinds, json_equal, keyword, types};

/// Deepest schema nesting followed.
const MAX_DEPTH: usize = 64;
/// Most `enum` values.
const MAX_ENUM_VALUES: usize = 100_000;
/// Largest repetition bound written (`{m,n}`): the engine expands bounded
/// repetitions into chains of rules. `maxItems`/`maxLength` above it are
/// lowered to it (a stricter grammar); `minItems`/`minLength` above it are
/// too large.
const MAX_REPETITION: u64 = 1000;

/// Translates a JSON Schema into a GBNF grammar whose sentences are
/// compact JSON texts that validate against it (Draft 2020-12).
///
/// Supported:
/// - `true` (any JSON value), `{}`, `false` (accepts nothing: an error).
/// - `type`: a name or an array of names (alternatives); without `type`,
///   the types whose keywords appear, else any value.
/// - objects: `properties`, `required`, `additionalProperties`. Declared
///   properties are generated in order, each required one present,
///   optional ones may be left out, no others (whatever
///   `additionalProperties` says). With none declared,
///   `additionalProperties` absent or `true` gives any object, a schema an
///   object whose values follow it, `false` only `{}`.
/// - arrays: `items`, `prefixItems`, `minItems`, `maxItems`,
///   `uniqueItems: false`.
/// - strings: `minLength`, `maxLength` (in characters), `format` `date`,
///   `time`, `date-time` or `uuid`.
/// - integers: `minimum`, `maximum`, `exclusiveMinimum`,
///   `exclusiveMaximum` (exact ranges), `multipleOf: 1`.
/// - numbers: without bounds, or `minimum: 0` alone.
/// - `boolean`, `null`; `enum` and `const` of any JSON values, with at
///   most `type` beside them.
/// - `anyOf`; `oneOf` whose branches are provably disjoint (by type, by
///   value, or by a required property with distinct `const`/`enum`
///   values); `allOf` with one schema.
/// - `$ref` to `#`, `#/$defs/NAME` or `#/definitions/NAME`, recursion
///   included.
/// - ignored annotations: `title`, `description`, `$schema`, `$id`,
///   `$comment`, `default`, `examples`, `deprecated`, `readOnly`,
///   `writeOnly`, `contentEncoding`, `contentMediaType`, `discriminator`,
///   `$defs`, `definitions`.
///
/// Stricter than the schema: at most one space between tokens; numbers of
/// at most 16 integer digits, 16 fraction digits and a 2-digit exponent;
/// no lone surrogates in `\u` escapes; `maxItems`/`maxLength` above 1000
/// lowered to 1000.
///
/// Any other keyword is [`GrammarError::Unsupported`] (with its JSON
/// pointer and why); a schema that accepts nothing is
/// [`GrammarError::AcceptsNothing`]; nesting deeper than 64, an enum of
/// more than 100,000 values or `minItems`/`minLength` above 1000 is
/// [`GrammarError::TooLarge`].
pub fn json_schema_to_gbnf(schema: &Value) -> Result<String, GrammarError> {
    Converter::new(schema).convert()
}

/// `path` extended by one JSON pointer segment.
fn pointer(path: &str, segment: &str) -> String {
    format!("{path}/{}", segment.replace('~', "~0").replace('/', "~1"))
}

fn unsupported(keyword: &str, path: &str, reason: impl Into<String>) -> GrammarError {
    GrammarError::Unsupported {
        keyword: keyword.to_string(),
        path: path.to_string(),
        reason: reason.into(),
    }
}

fn schema_error(path: &str, message: impl Into<String>) -> GrammarError {
    GrammarError::Schema {
        path: path.to_string(),
        message: message.into(),
    }
}

/// A rule name made of `[a-zA-Z0-9-]` from a property or definition name.
fn sanitize(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() { "x".to_string() } else { out }
}

/// The rule name for child `key` of rule `parent` (the root's children
/// are named after themselves).
fn child_name(parent: &str, key: &str) -> String {
    if parent == "root" {
        sanitize(key)
    } else {
        format!("{parent}-{}", sanitize(key))
    }
}

/// `item` repeated `min..=max` times (`max` `None`: unbounded); `item`
/// must be a name or a group. Empty when `max` is 0.
fn repeat(item: &str, min: u64, max: Option<u64>) -> String {
    match (min, max) {
        (_, Some(0)) => String::new(),
        (1, Some(1)) => item.to_string(),
        (0, Some(1)) => format!("{item}?"),
        (0, None) => format!("{item}*"),
        (1, None) => format!("{item}+"),
        (m, None) => format!("{item}{{{m},}}"),
        (m, Some(n)) if m == n => format!("{item}{{{m}}}"),
        (m, Some(n)) => format!("{item}{{{m},{n}}}"),
    }
}

/// `parts` joined by spaces, empty parts left out.
fn seq<S: AsRef<str>>(parts: &[S]) -> String {
    let parts: Vec<&str> = parts
        .iter()
        .map(AsRef::as_ref)
        .filter(|p| !p.is_empty())
        .collect();
    parts.join(" ")
}

/// Where the converter can roll back to when a subschema accepts nothing.
struct Snapshot {
    rules: usize,
    refs: usize,
    shared: Vec<bool>,
}

/// One conversion.
struct Converter<'s> {
    root: &'s Value,
    /// Rules in the order their names were reserved (parents before
    /// children); the body is `None` while the rule is being built.
    rules: Vec<(String, Option<String>)>,
    /// Names in use, shared rules included.
    taken: HashSet<String>,
    /// `$ref` targets (canonical pointers) to their rules.
    refs: HashMap<String, String>,
    /// The keys of `refs`, in insertion order.
    ref_order: Vec<String>,
    /// Which of [`SHARED`] are used.
    shared: Vec<bool>,
}

impl<'s> Converter<'s> {
    fn new(root: &'s Value) -> Converter<'s> {
        Converter {
            root,
            rules: Vec::new(),
            taken: SHARED.iter().map(|r| r.name.to_string()).collect(),
            refs: HashMap::new(),
            ref_order: Vec::new(),
            shared: vec![false; SHARED.len()],
        }
    }

    fn convert(mut self) -> Result<String, GrammarError> {
        let root = self.reserve("root");
        self.refs.insert("#".into(), root.clone());
        self.ref_order.push("#".into());
        let body = self.rule_body(self.root, "#", &root, 0)?;
        self.check_cycle(&root, &body, "#")?;
        self.define(&root, body);
        Ok(self.output())
    }

    fn output(&self) -> String {
        // The shared rules used, and those they use.
        let mut used = self.shared.clone();
        loop {
            let mut changed = false;
            for (i, rule) in SHARED.iter().enumerate() {
                if used[i] {
                    for dep in rule.uses {
                        let j = shared_index(dep);
                        changed |= !used[j];
                        used[j] = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        let mut out = String::new();
        for (name, body) in &self.rules {
            let body = body.as_deref().expect("every reserved rule is defined");
            out.push_str(&format!("{name} ::= {body}\n"));
        }
        for (rule, _) in SHARED.iter().zip(&used).filter(|(_, u)| **u) {
            out.push_str(&format!("{} ::= {}\n", rule.name, rule.body));
        }
        out
    }

    /// The shared rule `name`, marked used.
    fn shared(&mut self, name: &str) -> String {
        self.shared[shared_index(name)] = true;
        name.to_string()
    }

    /// A fresh rule name based on `hint`.
    fn reserve(&mut self, hint: &str) -> String {
        let mut name = hint.to_string();
        let mut n = 2;
        while self.taken.contains(&name) {
            name = format!("{hint}-{n}");
            n += 1;
        }
        self.taken.insert(name.clone());
        self.rules.push((name.clone(), None));
        name
    }

    fn define(&mut self, name: &str, body: String) {
        let rule = self
            .rules
            .iter_mut()
            .rev()
            .find(|(n, _)| n == name)
            .expect("reserved");
        rule.1 = Some(body);
    }

    /// Defines rule `name` (reserved by the caller, referred to by nothing
    /// yet) and returns it, unless `body` is just another rule's name:
    /// then `name` is given up and that name returned.
    fn define_or_alias(&mut self, name: String, body: String) -> String {
        if body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            self.rules.retain(|(n, _)| *n != name);
            self.taken.remove(&name);
            body
        } else {
            self.define(&name, body);
            name
        }
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            rules: self.rules.len(),
            refs: self.ref_order.len(),
            shared: self.shared.clone(),
        }
    }

    fn rollback(&mut self, s: Snapshot) {
        for (name, _) in self.rules.drain(s.rules..) {
            self.taken.remove(&name);
        }
        for target in self.ref_order.drain(s.refs..) {
            self.refs.remove(&target);
        }
        self.shared = s.shared;
    }

    /// An expression (a rule name) for `schema`: a shared rule or a `$ref`
    /// rule when the schema is just that, else a new rule named after
    /// `hint`. On error nothing is left behind.
    fn visit(
        &mut self,
        schema: &'s Value,
        path: &str,
        hint: &str,
        depth: usize,
    ) -> Result<String, GrammarError> {
        check_depth(depth)?;
        let snapshot = self.snapshot();
        let result = match self.simple(schema, path, depth) {
            Ok(Some(name)) => Ok(name),
            Ok(None) => {
                let name = self.reserve(hint);
                self.rule_body(schema, path, &name, depth)
                    .map(|body| self.define_or_alias(name, body))
            }
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.rollback(snapshot);
        }
        result
    }

    /// The rule name for a schema that needs no rule of its own: any
    /// value, an unconstrained type, a bare `$ref`.
    fn simple(
        &mut self,
        schema: &'s Value,
        path: &str,
        depth: usize,
    ) -> Result<Option<String>, GrammarError> {
        let map = match schema {
            Value::Bool(true) => return Ok(Some(self.shared("value"))),
            Value::Object(map) => map,
            _ => return Ok(None),
        };
        let mut kind = None;
        let mut target = None;
        for (k, v) in map {
            match (k.as_str(), v) {
                (k, _) if keyword(k) == Keyword::Annotation => {}
                ("type", Value::String(t)) => match Kind::from_name(t) {
                    Some(t) => kind = Some(t),
                    None => return Ok(None),
                },
                ("$ref", Value::String(r)) => target = Some(r),
                _ => return Ok(None),
            }
        }
        Ok(match (kind, target) {
            (None, None) => Some(self.shared("value")),
            (Some(kind), None) => Some(self.shared(kind.name())),
            (None, Some(target)) => Some(self.reference(target, path, depth)?),
            (Some(_), Some(_)) => None,
        })
    }

    /// The body of rule `name` for `schema`.
    fn rule_body(
        &mut self,
        schema: &'s Value,
        path: &str,
        name: &str,
        depth: usize,
    ) -> Result<String, GrammarError> {
        check_depth(depth)?;
        if let Some(simple) = self.simple(schema, path, depth)? {
            return Ok(simple);
        }
        match schema {
            Value::Bool(true) => Ok(self.shared("value")),
            Value::Bool(false) => Err(GrammarError::AcceptsNothing { rule: name.into() }),
            Value::Object(map) => self.object_schema(map, path, name, depth),
            _ => Err(schema_error(
                path,
                "a schema must be an object or a boolean",
            )),
        }
    }

    fn object_schema(
        &mut self,
        map: &'s Map<String, Value>,
        path: &str,
        name: &str,
        depth: usize,
    ) -> Result<String, GrammarError> {
        let mut combinator = None;
        let mut core = Vec::new();
        let mut typed = Vec::new();
        for (k, v) in map {
            match keyword(k) {
                Keyword::Annotation => {}
                Keyword::Unsupported(reason) => return Err(unsupported(k, path, reason)),
                Keyword::Core => core.push(k.as_str()),
                Keyword::Typed(kind) => typed.push((k.as_str(), kind)),
                Keyword::Combinator => {
                    if let Some((other, _)) = combinator {
                        return Err(unsupported(
                            k,
                            path,
                            format!("cannot be combined with `{other}` in one schema"),
                        ));
                    }
                    combinator = Some((k.as_str(), v));
                }
            }
        }
        if let Some((k, v)) = combinator {
            if let Some(other) = core.first().or(typed.first().map(|(k, _)| k)) {
                return Err(unsupported(
                    k,
                    path,
                    format!(
                        "cannot be combined with sibling keyword `{other}`; move it into the branches"
                    ),
                ));
            }
            return self.combinator(k, v, path, name, depth);
        }
        let kinds = match map.get("type") {
            Some(t) => Some(types(t, &pointer(path, "type"))?),
            None => None,
        };
        if map.contains_key("enum") || map.contains_key("const") {
            if let Some((k, _)) = typed.first() {
                return Err(unsupported(
                    k,
                    path,
                    "not supported together with `enum` or `const`",
                ));
            }
            return self.values(map, kinds.as_deref(), path, name);
        }
        let kinds = kinds.unwrap_or_else(|| inferred_kinds(map));
        if kinds.is_empty() {
            return Ok(self.shared("value"));
        }
        if let [kind] = kinds[..] {
            return self.typed(kind, map, path, name, depth);
        }
        let mut alts = Vec::new();
        for kind in kinds {
            let has_keywords = typed.iter().any(|&(_, k)| k == kind.group());
            let alt = if has_keywords {
                let snapshot = self.snapshot();
                let branch = self.reserve(&format!("{name}-{}", kind.name()));
                match self.typed(kind, map, path, &branch, depth) {
                    Ok(body) => self.define_or_alias(branch, body),
                    Err(GrammarError::AcceptsNothing { .. }) => {
                        self.rollback(snapshot);
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            } else {
                self.shared(kind.name())
            };
            alts.push(alt);
        }
        if alts.is_empty() {
            return Err(GrammarError::AcceptsNothing { rule: name.into() });
        }
        Ok(alts.join(" | "))
    }

    /// The body for one type of a schema.
    fn typed(
        &mut self,
        kind: Kind,
        map: &'s Map<String, Value>,
        path: &str,
        name: &str,
        depth: usize,
    ) -> Result<String, GrammarError> {
        match kind {
            Kind::Null => Ok(self.shared("null")),
            Kind::Boolean => Ok(self.shared("boolean")),
            Kind::Object => self.object(map, path, name, depth),
            Kind::Array => self.array(map, path, name, depth),
            Kind::String => self.string(map, path, name),
            Kind::Integer => self.integer(map, path, name),
            Kind::Number => self.number(map, path),
        }
    }

    /// `enum` and `const`: the JSON text of every value, as a trie.
    fn values(
        &mut self,
        map: &'s Map<String, Value>,
        kinds: Option<&[Kind]>,
        path: &str,
        name: &str,
    ) -> Result<String, GrammarError> {
        let mut values: Vec<&Value> = match map.get("enum") {
            Some(Value::Array(values)) => values.iter().collect(),
            Some(_) => {
                return Err(schema_error(
                    &pointer(path, "enum"),
                    "`enum` must be an array",
                ));
            }
            None => Vec::new(),
        };
        if let Some(c) = map.get("const") {
            if map.contains_key("enum") {
                values.retain(|v| json_equal(v, c));
            } else {
                values.push(c);
            }
        }
        if values.len() > MAX_ENUM_VALUES {
            return Err(GrammarError::TooLarge {
                what: "enum values",
                limit: MAX_ENUM_VALUES,
            });
        }
        if let Some(kinds) = kinds {
            values.retain(|v| kinds.iter().any(|k| k.admits(v)));
        }
        if values.is_empty() {
            return Err(GrammarError::AcceptsNothing { rule: name.into() });
        }
        let texts: Vec<String> = values
            .iter()
            .map(|v| serde_json::to_string(v).expect("a JSON value serializes"))
            .collect();
        Ok(literals::trie(&texts))
    }
}

fn check_depth(depth: usize) -> Result<(), GrammarError> {
    if depth > MAX_DEPTH {
        return Err(GrammarError::TooLarge {
            what: "schema nesting depth",
            limit: MAX_DEPTH,
        });
    }
    Ok(())
}

fn name_branch(name: &str, i: usize) -> String {
    format!("{name}-{i}")
}

fn shared_index(name: &str) -> usize {
    SHARED
        .iter()
        .position(|r| r.name == name)
        .expect("a shared rule")
}

//! `anyOf`, `oneOf`, `allOf` and `$ref`.

use kiln_runtime::grammar::GrammarError;
use serde_json::Value;

use super::{Converter, name_branch, oneof, pointer, sanitize, schema_error, unsupported};

impl<'s> Converter<'s> {
    /// The body of rule `name` for a schema whose only constraint is the
    /// combinator `keyword` with `value`.
    pub(super) fn combinator(
        &mut self,
        keyword: &str,
        value: &'s Value,
        path: &str,
        name: &str,
        depth: usize,
    ) -> Result<String, GrammarError> {
        let here = pointer(path, keyword);
        if keyword == "$ref" {
            let Value::String(target) = value else {
                return Err(schema_error(&here, "`$ref` must be a string"));
            };
            return self.reference(target, path, depth);
        }
        let branches = match value {
            Value::Array(b) if !b.is_empty() => b,
            _ => {
                return Err(schema_error(
                    &here,
                    format!("`{keyword}` must be a non-empty array"),
                ));
            }
        };
        match keyword {
            "allOf" => {
                if let [only] = &branches[..] {
                    return self.rule_body(only, &pointer(&here, "0"), name, depth + 1);
                }
                Err(unsupported(
                    keyword,
                    path,
                    "only `allOf` with a single schema is supported",
                ))
            }
            "oneOf" => {
                if let Some((i, j)) = oneof::overlapping(self, branches) {
                    return Err(unsupported(
                        keyword,
                        path,
                        format!(
                            "oneOf needs branches that are provably disjoint (by type, by value, \
                             or by a required property with distinct const values); branches {i} \
                             and {j} may overlap, use anyOf if either match is fine"
                        ),
                    ));
                }
                self.alternatives(branches, &here, name, depth)
            }
            _ => self.alternatives(branches, &here, name, depth),
        }
    }

    /// `anyOf` (or a disjoint `oneOf`): one alternative per branch,
    /// leaving out branches that accept nothing.
    fn alternatives(
        &mut self,
        branches: &'s [Value],
        here: &str,
        name: &str,
        depth: usize,
    ) -> Result<String, GrammarError> {
        let mut alts = Vec::new();
        for (i, branch) in branches.iter().enumerate() {
            match self.visit(
                branch,
                &pointer(here, &i.to_string()),
                &name_branch(name, i),
                depth + 1,
            ) {
                Ok(alt) => alts.push(alt),
                Err(GrammarError::AcceptsNothing { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if alts.is_empty() {
            return Err(GrammarError::AcceptsNothing { rule: name.into() });
        }
        Ok(alts.join(" | "))
    }

    /// The rule for a `$ref` target, made on first use.
    pub(super) fn reference(
        &mut self,
        target: &str,
        path: &str,
        depth: usize,
    ) -> Result<String, GrammarError> {
        if let Some(name) = self.refs.get(target) {
            return Ok(name.clone());
        }
        let (schema, def) = self.resolve(target, path)?;
        let name = self.reserve(&sanitize(def));
        self.refs.insert(target.to_string(), name.clone());
        self.ref_order.push(target.to_string());
        let body = self.rule_body(schema, target, &name, depth + 1)?;
        self.check_cycle(&name, &body, target)?;
        self.define(&name, body);
        Ok(name)
    }

    /// Refuses `body` for `$ref` target rule `name` when it is a chain of
    /// bare `$ref`s back to `name`: it never reaches a schema.
    pub(super) fn check_cycle(
        &self,
        name: &str,
        body: &str,
        path: &str,
    ) -> Result<(), GrammarError> {
        let mut alias = body;
        while let Some((_, Some(next))) = self.rules.iter().find(|(n, _)| n == alias) {
            alias = next;
        }
        if alias == name {
            return Err(schema_error(
                path,
                "a cycle of `$ref`s that never reaches a schema",
            ));
        }
        Ok(())
    }

    /// The schema a `$ref` points at, and its definition's name.
    pub(super) fn resolve<'t>(
        &self,
        target: &'t str,
        path: &str,
    ) -> Result<(&'s Value, &'t str), GrammarError> {
        let Some((container, def)) = target
            .strip_prefix("#/$defs/")
            .map(|d| ("$defs", d))
            .or_else(|| {
                target
                    .strip_prefix("#/definitions/")
                    .map(|d| ("definitions", d))
            })
            .filter(|(_, d)| !d.contains('/'))
        else {
            return Err(unsupported(
                "$ref",
                path,
                format!(
                    "`{target}`: only `#`, `#/$defs/NAME` and `#/definitions/NAME` are supported"
                ),
            ));
        };
        let key = def.replace("~1", "/").replace("~0", "~");
        self.root
            .get(container)
            .and_then(|defs| defs.get(&key))
            .map(|s| (s, def))
            .ok_or_else(|| schema_error(path, format!("`$ref` target `{target}` does not exist")))
    }
}

//! Rules to a flat, byte-level program.
//!
//! Every character class becomes the UTF-8 byte sequences that encode
//! it, groups and repetitions become anonymous rules (a repetition is
//! right-recursive, which the automaton runs in constant stack depth),
//! and alternatives that can never complete are pruned, so that every
//! stack the matcher holds can still reach the end of the grammar.

use std::collections::HashMap;

use regex_syntax::utf8::Utf8Sequences;

use super::GrammarError;
use super::gbnf::{Expr, Rules};

/// Most elements a compiled grammar may hold.
const MAX_ELEMS: usize = 2_000_000;

/// A set of bytes.
pub(crate) type ByteSet = [u64; 4];

fn set_has(s: &ByteSet, b: u8) -> bool {
    s[(b >> 6) as usize] >> (b & 63) & 1 == 1
}

fn set_add_range(s: &mut ByteSet, lo: u8, hi: u8) {
    for b in lo..=hi {
        s[(b >> 6) as usize] |= 1 << (b & 63);
    }
}

/// One step of an alternative.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Elem {
    /// One byte from set `sets[i]`.
    Bytes(u32),
    /// Rule `r`.
    Call(u32),
    /// The end of an alternative: return to the caller.
    End,
}

/// A compiled grammar.
#[derive(Debug)]
pub(crate) struct Program {
    /// Every alternative's elements, each run closed by [`Elem::End`].
    pub(crate) elems: Vec<Elem>,
    /// Per rule, where its alternatives start in `elems`.
    pub(crate) rules: Vec<Vec<u32>>,
    /// The byte sets that `Elem::Bytes` points at.
    pub(crate) sets: Vec<ByteSet>,
    /// The start rule.
    pub(crate) root: u32,
    /// Bytes that every set treats alike share a class.
    pub(crate) class_of: [u8; 256],
    /// Number of byte classes.
    pub(crate) n_classes: usize,
}

impl Program {
    /// Whether `set` holds byte `b`.
    pub(crate) fn set_has(&self, set: u32, b: u8) -> bool {
        set_has(&self.sets[set as usize], b)
    }

    /// Compiles `rules`, starting at the rule named `root`.
    pub(crate) fn compile(rules: &Rules, root: &str) -> Result<Program, GrammarError> {
        let mut c = Compiler {
            ids: rules
                .names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), i as u32))
                .collect(),
            alts: vec![Vec::new(); rules.names.len()],
            origin: (0..rules.names.len()).collect(),
            names: &rules.names,
            sets: Vec::new(),
            set_ids: HashMap::new(),
            size: 0,
            current: 0,
        };
        let root_id = *c
            .ids
            .get(root)
            .ok_or_else(|| GrammarError::NoRoot { name: root.into() })?;
        for (i, body) in rules.bodies.iter().enumerate() {
            c.current = i;
            c.alts[i] = c.alternatives(body)?;
        }
        c.prune(root_id)?;
        c.check_left_recursion()?;
        Ok(c.finish(root_id))
    }
}

struct Compiler<'a> {
    ids: HashMap<String, u32>,
    /// Per rule, its alternatives.
    alts: Vec<Vec<Vec<Elem>>>,
    /// Per rule, the named rule it was made for (for error messages).
    origin: Vec<usize>,
    names: &'a [String],
    sets: Vec<ByteSet>,
    set_ids: HashMap<ByteSet, u32>,
    size: usize,
    current: usize,
}

impl Compiler<'_> {
    fn grow(&mut self, n: usize) -> Result<(), GrammarError> {
        self.size += n;
        if self.size > MAX_ELEMS {
            return Err(GrammarError::TooLarge {
                what: "the compiled grammar's element count",
                limit: MAX_ELEMS,
            });
        }
        Ok(())
    }

    fn set(&mut self, s: ByteSet) -> Elem {
        let n = self.sets.len() as u32;
        let id = *self.set_ids.entry(s).or_insert(n);
        if id == n {
            self.sets.push(s);
        }
        Elem::Bytes(id)
    }

    fn new_rule(&mut self, alts: Vec<Vec<Elem>>) -> Result<Elem, GrammarError> {
        self.grow(alts.iter().map(|a| a.len() + 1).sum())?;
        self.alts.push(alts);
        self.origin.push(self.current);
        Ok(Elem::Call(self.alts.len() as u32 - 1))
    }

    fn alternatives(&mut self, e: &Expr) -> Result<Vec<Vec<Elem>>, GrammarError> {
        let branches: &[Expr] = match e {
            Expr::Alt(a) => a,
            other => std::slice::from_ref(other),
        };
        let mut out = Vec::with_capacity(branches.len());
        for b in branches {
            let mut seq = Vec::new();
            self.sequence(b, &mut seq)?;
            self.grow(seq.len() + 1)?;
            out.push(seq);
        }
        Ok(out)
    }

    /// Appends the elements matching `e` to `out`.
    fn sequence(&mut self, e: &Expr, out: &mut Vec<Elem>) -> Result<(), GrammarError> {
        match e {
            Expr::Seq(items) => {
                for i in items {
                    self.sequence(i, out)?;
                }
            }
            Expr::Literal(s) => {
                for &b in s.as_bytes() {
                    let mut set = [0; 4];
                    set_add_range(&mut set, b, b);
                    out.push(self.set(set));
                }
            }
            Expr::Any => self.class(&[('\0', char::MAX)], false, out)?,
            Expr::Class { negated, ranges } => self.class(ranges, *negated, out)?,
            Expr::Ref(name, line, column) => {
                let id = *self.ids.get(name).ok_or_else(|| {
                    let _ = (line, column);
                    GrammarError::UndefinedRule { name: name.clone() }
                })?;
                out.push(Elem::Call(id));
            }
            Expr::Alt(_) => {
                let alts = self.alternatives(e)?;
                out.push(self.new_rule(alts)?);
            }
            Expr::Repeat { expr, min, max } => self.repeat(expr, *min, *max, out)?,
        }
        Ok(())
    }

    fn class(
        &mut self,
        ranges: &[(char, char)],
        negated: bool,
        out: &mut Vec<Elem>,
    ) -> Result<(), GrammarError> {
        let mut ranges: Vec<(u32, u32)> =
            ranges.iter().map(|&(a, b)| (a as u32, b as u32)).collect();
        ranges.sort_unstable();
        if negated {
            let mut inv = Vec::new();
            let mut next = 0u32;
            for &(lo, hi) in &ranges {
                if lo > next {
                    inv.push((next, lo - 1));
                }
                next = next.max(hi + 1);
            }
            if next <= char::MAX as u32 {
                inv.push((next, char::MAX as u32));
            }
            ranges = inv;
        }
        // One alternative per UTF-8 sequence shape; single bytes share one set.
        let mut ascii = [0u64; 4];
        let mut multi: Vec<Vec<Elem>> = Vec::new();
        for (lo, hi) in ranges {
            // Surrogates are not characters; regex-syntax skips them.
            let (Some(lo), Some(hi)) = (scalar_at_or_after(lo), scalar_at_or_before(hi)) else {
                continue;
            };
            if lo > hi {
                continue;
            }
            for seq in Utf8Sequences::new(lo, hi) {
                let rs = seq.as_slice();
                if rs.len() == 1 {
                    set_add_range(&mut ascii, rs[0].start, rs[0].end);
                } else {
                    let mut alt = Vec::with_capacity(rs.len());
                    for r in rs {
                        let mut set = [0; 4];
                        set_add_range(&mut set, r.start, r.end);
                        alt.push(self.set(set));
                    }
                    multi.push(alt);
                }
            }
        }
        let has_ascii = ascii != [0; 4];
        match (has_ascii, multi.len()) {
            (_, 0) => out.push(self.set(ascii)),
            (false, 1) => out.extend(multi.pop().unwrap_or_default()),
            _ => {
                if has_ascii {
                    let e = self.set(ascii);
                    multi.push(vec![e]);
                }
                out.push(self.new_rule(multi)?);
            }
        }
        Ok(())
    }

    fn repeat(
        &mut self,
        e: &Expr,
        min: u32,
        max: Option<u32>,
        out: &mut Vec<Elem>,
    ) -> Result<(), GrammarError> {
        // What one repetition is: a single element if `e` compiles to one.
        let mut one = Vec::new();
        self.sequence(e, &mut one)?;
        let item = if one.len() == 1 {
            one[0]
        } else {
            self.new_rule(vec![one])?
        };
        self.grow(min as usize)?;
        out.extend(std::iter::repeat_n(item, min as usize));
        match max {
            None => {
                // S ::= item S | (empty)
                let s = self.alts.len() as u32;
                self.new_rule(vec![vec![item, Elem::Call(s)], Vec::new()])?;
                out.push(Elem::Call(s));
            }
            Some(max) if max > min => {
                // O1 ::= item | (empty);  Ok ::= item O(k-1) | (empty)
                let mut prev = self.new_rule(vec![vec![item], Vec::new()])?;
                for _ in 1..max - min {
                    prev = self.new_rule(vec![vec![item, prev], Vec::new()])?;
                }
                out.push(prev);
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// Drops alternatives that can never complete; fails if the start rule
    /// is one of them.
    fn prune(&mut self, root: u32) -> Result<(), GrammarError> {
        let n = self.alts.len();
        let mut productive = vec![false; n];
        let elem_ok = |e: &Elem, productive: &[bool], sets: &[ByteSet]| match *e {
            Elem::Bytes(s) => sets[s as usize] != [0; 4],
            Elem::Call(r) => productive[r as usize],
            Elem::End => true,
        };
        loop {
            let mut changed = false;
            for r in 0..n {
                if !productive[r]
                    && self.alts[r]
                        .iter()
                        .any(|a| a.iter().all(|e| elem_ok(e, &productive, &self.sets)))
                {
                    productive[r] = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        if !productive[root as usize] {
            return Err(GrammarError::AcceptsNothing {
                rule: self.names[root as usize].clone(),
            });
        }
        for r in 0..n {
            let sets = &self.sets;
            self.alts[r].retain(|a| a.iter().all(|e| elem_ok(e, &productive, sets)));
        }
        Ok(())
    }

    fn check_left_recursion(&self) -> Result<(), GrammarError> {
        let n = self.alts.len();
        let mut nullable = vec![false; n];
        loop {
            let mut changed = false;
            for r in 0..n {
                if !nullable[r]
                    && self.alts[r].iter().any(|a| {
                        a.iter()
                            .all(|e| matches!(*e, Elem::Call(s) if nullable[s as usize]))
                    })
                {
                    nullable[r] = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        // Edges to the rules each rule can call before consuming a byte.
        let left: Vec<Vec<u32>> = (0..n)
            .map(|r| {
                let mut out = Vec::new();
                for a in &self.alts[r] {
                    for e in a {
                        match *e {
                            Elem::Call(s) => {
                                out.push(s);
                                if !nullable[s as usize] {
                                    break;
                                }
                            }
                            _ => break,
                        }
                    }
                }
                out
            })
            .collect();
        // Iterative depth-first search for a cycle: 0 new, 1 open, 2 done.
        let mut color = vec![0u8; n];
        for start in 0..n {
            if color[start] != 0 {
                continue;
            }
            let mut stack = vec![(start, 0usize)];
            color[start] = 1;
            while let Some(&mut (r, ref mut i)) = stack.last_mut() {
                if let Some(&s) = left[r].get(*i) {
                    *i += 1;
                    match color[s as usize] {
                        0 => {
                            color[s as usize] = 1;
                            stack.push((s as usize, 0));
                        }
                        1 => {
                            return Err(GrammarError::LeftRecursion {
                                rule: self.names[self.origin[s as usize]].clone(),
                            });
                        }
                        _ => {}
                    }
                } else {
                    color[r] = 2;
                    stack.pop();
                }
            }
        }
        Ok(())
    }

    fn finish(self, root: u32) -> Program {
        let mut elems = Vec::with_capacity(self.size);
        let mut rules = Vec::with_capacity(self.alts.len());
        for alts in self.alts {
            let mut starts = Vec::with_capacity(alts.len());
            for a in alts {
                starts.push(elems.len() as u32);
                elems.extend(a);
                elems.push(Elem::End);
            }
            rules.push(starts);
        }
        // Byte classes: bytes with the same membership in every set.
        let mut class_of = [0u8; 256];
        let mut seen: HashMap<Vec<bool>, u8> = HashMap::new();
        for b in 0..=255u8 {
            let sig: Vec<bool> = self.sets.iter().map(|s| set_has(s, b)).collect();
            let next = seen.len() as u8;
            class_of[b as usize] = *seen.entry(sig).or_insert(next);
        }
        Program {
            elems,
            rules,
            sets: self.sets,
            root,
            class_of,
            n_classes: seen.len(),
        }
    }
}

fn scalar_at_or_after(v: u32) -> Option<char> {
    (v..=char::MAX as u32).find_map(char::from_u32)
}

fn scalar_at_or_before(v: u32) -> Option<char> {
    (0..=v.min(char::MAX as u32)).rev().find_map(char::from_u32)
}

#[cfg(test)]
mod tests {
    use super::super::gbnf;
    use super::*;

    fn compile(text: &str) -> Result<Program, GrammarError> {
        Program::compile(&gbnf::parse(text)?, "root")
    }

    #[test]
    fn undefined_missing_root_left_recursive_and_empty_grammars_are_refused() {
        assert_eq!(
            compile("root ::= x").unwrap_err(),
            GrammarError::UndefinedRule { name: "x".into() }
        );
        assert_eq!(
            compile("start ::= \"a\"").unwrap_err(),
            GrammarError::NoRoot {
                name: "root".into()
            }
        );
        assert_eq!(
            compile("root ::= expr\nexpr ::= expr \"+\" term | term\nterm ::= [0-9]").unwrap_err(),
            GrammarError::LeftRecursion {
                rule: "expr".into()
            }
        );
        // Through a nullable prefix, and through a repetition of something empty.
        assert!(matches!(
            compile("root ::= a\na ::= \"x\"? a \"y\" | \"z\"").unwrap_err(),
            GrammarError::LeftRecursion { .. }
        ));
        assert!(matches!(
            compile("root ::= (\"a\"?)*").unwrap_err(),
            GrammarError::LeftRecursion { .. }
        ));
        assert_eq!(
            compile("root ::= \"a\" root").unwrap_err(),
            GrammarError::AcceptsNothing {
                rule: "root".into()
            }
        );
        assert!(matches!(
            compile("root ::= [^\\x00-\\U0010FFFF]").unwrap_err(),
            GrammarError::AcceptsNothing { .. }
        ));
    }

    #[test]
    fn alternatives_that_cannot_complete_are_pruned() {
        let p = compile("root ::= \"a\" loop | \"b\"\nloop ::= \"c\" loop").unwrap();
        assert_eq!(p.rules[p.root as usize].len(), 1);
    }

    #[test]
    fn classes_become_utf8_byte_sequences() {
        let p = compile("root ::= [a-c\\u00e9]").unwrap();
        // One rule with an ASCII alternative and a two-byte one.
        let Elem::Call(r) = p.elems[p.rules[p.root as usize][0] as usize] else {
            panic!("{:?}", p.elems)
        };
        assert_eq!(p.rules[r as usize].len(), 2);
        let p = compile("root ::= [a-c]").unwrap();
        let Elem::Bytes(s) = p.elems[0] else { panic!() };
        assert!(p.set_has(s, b'b') && !p.set_has(s, b'd'));
    }
}

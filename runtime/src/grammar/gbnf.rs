//! GBNF text to rules: llama.cpp's grammar format.
//!
//! `name ::= alternatives`, where an alternative is a sequence of string
//! literals (`"..."`), character classes (`[a-z]`, `[^"\\]`), `.` (any
//! character), rule names and parenthesised groups, each optionally
//! followed by `*`, `+`, `?`, `{m}`, `{m,}` or `{m,n}`. Escapes: `\\ \"
//! \n \r \t \xHH \uHHHH \UHHHHHHHH` (and `\] \- \[ \^` in classes). `#`
//! starts a comment. A rule ends where the next `name ::=` begins, so its
//! alternatives may span lines.

use super::GrammarError;

/// Deepest nesting of parentheses (the parser recurses on them).
const MAX_NESTING: usize = 128;
/// Largest repetition bound: `{m,n}` is expanded into `n` rule uses.
pub(crate) const MAX_REPEAT: u32 = 10_000;

/// A parsed grammar: rule names and bodies, in definition order.
#[derive(Debug, Default)]
pub(crate) struct Rules {
    pub(crate) names: Vec<String>,
    pub(crate) bodies: Vec<Expr>,
}

/// One rule body.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expr {
    /// One of these.
    Alt(Vec<Expr>),
    /// These in order (empty: the empty string).
    Seq(Vec<Expr>),
    /// These characters.
    Literal(String),
    /// One character in (or, negated, outside) these inclusive ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// Any one character.
    Any,
    /// Another rule, by name, with where it is used (line, column).
    Ref(String, usize, usize),
    /// `min` to `max` (unbounded: `None`) repetitions.
    Repeat {
        expr: Box<Expr>,
        min: u32,
        max: Option<u32>,
    },
}

/// Parses GBNF text.
pub(crate) fn parse(text: &str) -> Result<Rules, GrammarError> {
    let mut p = Parser {
        chars: text.chars().collect(),
        pos: 0,
        depth: 0,
    };
    let mut rules = Rules::default();
    loop {
        p.skip_space(true);
        if p.at_end() {
            break;
        }
        let name = p.name()?;
        p.skip_space(true);
        if !p.eat_str("::=") {
            return Err(p.error("expected `::=` after the rule name"));
        }
        let body = p.alternatives()?;
        if rules.names.contains(&name) {
            return Err(GrammarError::DuplicateRule { name });
        }
        rules.names.push(name);
        rules.bodies.push(body);
    }
    Ok(rules)
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    depth: usize,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

impl Parser {
    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_str(&mut self, s: &str) -> bool {
        let n = s.chars().count();
        if self.chars.len() >= self.pos + n
            && s.chars()
                .eq(self.chars[self.pos..self.pos + n].iter().copied())
        {
            self.pos += n;
            true
        } else {
            false
        }
    }

    fn line_col(&self, at: usize) -> (usize, usize) {
        let before = &self.chars[..at.min(self.chars.len())];
        let line = before.iter().filter(|&&c| c == '\n').count() + 1;
        let column = before.iter().rev().take_while(|&&c| c != '\n').count() + 1;
        (line, column)
    }

    fn error(&self, message: &str) -> GrammarError {
        let (line, column) = self.line_col(self.pos);
        let found = match self.peek() {
            None => "the end of the grammar".to_owned(),
            Some(c) => format!("{c:?}"),
        };
        GrammarError::Syntax {
            line,
            column,
            message: format!("{message} (found {found})"),
        }
    }

    /// Skips blanks and comments; newlines too when `newlines`.
    fn skip_space(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            if c == '#' {
                while self.peek().is_some_and(|c| c != '\n') {
                    self.pos += 1;
                }
            } else if c == ' ' || c == '\t' || c == '\r' || (newlines && c == '\n') {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn name(&mut self) -> Result<String, GrammarError> {
        let start = self.pos;
        while self.peek().is_some_and(is_name_char) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.error("expected a rule name"));
        }
        Ok(self.chars[start..self.pos].iter().collect())
    }

    /// Whether the next thing is `name ::=`: where a rule ends.
    fn at_rule_start(&self) -> bool {
        let mut i = self.pos;
        while self.chars.get(i).copied().is_some_and(is_name_char) {
            i += 1;
        }
        if i == self.pos {
            return false;
        }
        while matches!(self.chars.get(i), Some(' ' | '\t' | '\r' | '\n')) {
            i += 1;
        }
        self.chars.get(i..i + 3) == Some(&[':', ':', '='])
    }

    fn alternatives(&mut self) -> Result<Expr, GrammarError> {
        let mut alts = vec![self.sequence()?];
        while self.eat('|') {
            alts.push(self.sequence()?);
        }
        Ok(if alts.len() == 1 {
            alts.pop().unwrap_or(Expr::Seq(Vec::new()))
        } else {
            Expr::Alt(alts)
        })
    }

    fn sequence(&mut self) -> Result<Expr, GrammarError> {
        let mut items = Vec::new();
        loop {
            self.skip_space(true);
            if self.depth == 0 && self.at_rule_start() {
                break;
            }
            let item = match self.peek() {
                None | Some('|' | ')') => break,
                Some('"') => {
                    self.pos += 1;
                    self.literal()?
                }
                Some('[') => {
                    self.pos += 1;
                    self.class()?
                }
                Some('.') => {
                    self.pos += 1;
                    Expr::Any
                }
                Some('(') => {
                    self.pos += 1;
                    if self.depth >= MAX_NESTING {
                        return Err(GrammarError::TooLarge {
                            what: "nesting of parentheses",
                            limit: MAX_NESTING,
                        });
                    }
                    self.depth += 1;
                    let inner = self.alternatives()?;
                    self.depth -= 1;
                    self.skip_space(true);
                    if !self.eat(')') {
                        return Err(self.error("expected `)`"));
                    }
                    inner
                }
                Some(c) if is_name_char(c) => {
                    let (line, col) = self.line_col(self.pos);
                    Expr::Ref(self.name()?, line, col)
                }
                Some(_) => return Err(self.error("expected a literal, class, rule name or group")),
            };
            items.push(self.postfix(item)?);
        }
        Ok(if items.len() == 1 {
            items.pop().unwrap_or(Expr::Seq(Vec::new()))
        } else {
            Expr::Seq(items)
        })
    }

    fn postfix(&mut self, mut item: Expr) -> Result<Expr, GrammarError> {
        loop {
            let (min, max) = match self.peek() {
                Some('*') => (0, None),
                Some('+') => (1, None),
                Some('?') => (0, Some(1)),
                Some('{') => {
                    self.pos += 1;
                    self.bounds()?
                }
                _ => return Ok(item),
            };
            // The operator, or the brace closing the bounds.
            self.pos += 1;
            item = Expr::Repeat {
                expr: Box::new(item),
                min,
                max,
            };
        }
    }

    /// `m}`, `m,}` or `m,n}` after `{`; leaves the closing brace.
    fn bounds(&mut self) -> Result<(u32, Option<u32>), GrammarError> {
        self.skip_space(false);
        let min = self.number()?;
        self.skip_space(false);
        let max = if self.eat(',') {
            self.skip_space(false);
            if self.peek() == Some('}') {
                None
            } else {
                Some(self.number()?)
            }
        } else {
            Some(min)
        };
        self.skip_space(false);
        if self.peek() != Some('}') {
            return Err(self.error("expected `}` closing a repetition"));
        }
        if max.is_some_and(|m| m < min) {
            return Err(self.error("a repetition's maximum is below its minimum"));
        }
        Ok((min, max))
    }

    fn number(&mut self) -> Result<u32, GrammarError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.error("expected a number"));
        }
        let digits: String = self.chars[start..self.pos].iter().collect();
        match digits.parse::<u32>() {
            Ok(n) if n <= MAX_REPEAT => Ok(n),
            _ => Err(GrammarError::TooLarge {
                what: "a repetition bound",
                limit: MAX_REPEAT as usize,
            }),
        }
    }

    fn literal(&mut self) -> Result<Expr, GrammarError> {
        let mut s = String::new();
        loop {
            match self.peek() {
                None | Some('\n') => return Err(self.error("unterminated string literal")),
                Some('"') => {
                    self.pos += 1;
                    return Ok(Expr::Literal(s));
                }
                Some('\\') => {
                    self.pos += 1;
                    s.push(self.escape()?);
                }
                Some(c) => {
                    self.pos += 1;
                    s.push(c);
                }
            }
        }
    }

    fn class(&mut self) -> Result<Expr, GrammarError> {
        let negated = self.eat('^');
        let mut ranges = Vec::new();
        loop {
            let lo = match self.peek() {
                None | Some('\n') => return Err(self.error("unterminated character class")),
                Some(']') => {
                    self.pos += 1;
                    return Ok(Expr::Class { negated, ranges });
                }
                Some(_) => self.class_char()?,
            };
            let hi = if self.peek() == Some('-')
                && self.chars.get(self.pos + 1).is_some_and(|&c| c != ']')
            {
                self.pos += 1;
                self.class_char()?
            } else {
                lo
            };
            if hi < lo {
                return Err(self.error("a character range ends below its start"));
            }
            ranges.push((lo, hi));
        }
    }

    fn class_char(&mut self) -> Result<char, GrammarError> {
        match self.peek() {
            Some('\\') => {
                self.pos += 1;
                self.escape()
            }
            Some(c) => {
                self.pos += 1;
                Ok(c)
            }
            None => Err(self.error("unterminated character class")),
        }
    }

    /// The character after a backslash.
    fn escape(&mut self) -> Result<char, GrammarError> {
        let c = self
            .peek()
            .ok_or_else(|| self.error("unterminated escape"))?;
        self.pos += 1;
        let digits = match c {
            'n' => return Ok('\n'),
            'r' => return Ok('\r'),
            't' => return Ok('\t'),
            '\\' | '"' | '[' | ']' | '-' | '^' | '\'' => return Ok(c),
            'x' => 2,
            'u' => 4,
            'U' => 8,
            _ => {
                self.pos -= 1;
                return Err(self.error("unknown escape"));
            }
        };
        let mut v = 0u32;
        for _ in 0..digits {
            let d = self
                .peek()
                .and_then(|c| c.to_digit(16))
                .ok_or_else(|| self.error("expected a hexadecimal digit in an escape"))?;
            self.pos += 1;
            v = v * 16 + d;
        }
        char::from_u32(v).ok_or_else(|| self.error("the escape is not a Unicode scalar value"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Expr {
        let r = parse(text).unwrap();
        r.bodies[0].clone()
    }

    #[test]
    fn literals_classes_and_postfix_operators_parse() {
        assert_eq!(
            one(r#"root ::= "a\n\x41\u00e9" [^a-c\]] .* x{2,3}"#),
            Expr::Seq(vec![
                Expr::Literal("a\nAé".into()),
                Expr::Class {
                    negated: true,
                    ranges: vec![('a', 'c'), (']', ']')]
                },
                Expr::Repeat {
                    expr: Box::new(Expr::Any),
                    min: 0,
                    max: None
                },
                Expr::Repeat {
                    expr: Box::new(Expr::Ref("x".into(), 1, 38)),
                    min: 2,
                    max: Some(3)
                },
            ])
        );
    }

    #[test]
    fn a_rule_ends_where_the_next_begins_and_alternatives_span_lines() {
        let r = parse("root ::= a\n  | b # comment\nb ::= \"x\"\n\na ::= (\n \"y\"\n | \"z\" )+\n")
            .unwrap();
        assert_eq!(r.names, ["root", "b", "a"]);
        assert!(matches!(&r.bodies[0], Expr::Alt(a) if a.len() == 2));
    }

    #[test]
    fn errors_name_the_place() {
        let e = parse("root ::= \"abc").unwrap_err();
        assert!(matches!(e, GrammarError::Syntax { line: 1, .. }), "{e}");
        let e = parse("root ::= x\nroot ::= y").unwrap_err();
        assert_eq!(
            e,
            GrammarError::DuplicateRule {
                name: "root".into()
            }
        );
        let e = parse("root ::= [b-a]").unwrap_err();
        assert!(e.to_string().contains("below its start"), "{e}");
        let e = parse("root ::= x{3,2}").unwrap_err();
        assert!(e.to_string().contains("maximum"), "{e}");
        let e = parse("root ::= x{99999999}").unwrap_err();
        assert!(matches!(e, GrammarError::TooLarge { .. }), "{e}");
        let deep = format!("root ::= {}\"a\"{}", "(".repeat(1000), ")".repeat(1000));
        assert!(matches!(
            parse(&deep).unwrap_err(),
            GrammarError::TooLarge { .. }
        ));
        let e = parse("root ::= \"\\q\"").unwrap_err();
        assert!(e.to_string().contains("unknown escape"), "{e}");
    }
}

//! The grammar as a lazily built DFA over bytes.
//!
//! A position in a grammar is a set of pushdown stacks (the grammar may be
//! ambiguous, so several parses can be alive at once). Stacks are linked
//! frames, interned so that equal stacks are one id; a set of stacks is
//! interned as a state, and the transition from a state on a byte is
//! computed once and kept in a table, like a lazy DFA. Matching a token
//! is then one table lookup per byte, which is what lets the matcher test
//! a 262,144-token vocabulary at each step.
//!
//! Calls followed directly by the end of their alternative do not push a
//! frame (tail calls), so repetitions, which compile to right recursion,
//! run in constant stack depth.

use std::collections::HashMap;
use std::sync::Arc;

use super::GrammarError;
use super::program::{Elem, Program};

/// A state: an interned set of stacks.
pub(crate) type StateId = u32;

/// No stack survives.
pub(crate) const DEAD: StateId = u32::MAX;
/// Transition not computed yet.
const UNKNOWN: StateId = u32::MAX - 1;
/// The bottom of every stack.
const NO_FRAME: u32 = u32::MAX;

/// Most interned frames (each a position and a link to its caller).
const MAX_FRAMES: usize = 2_000_000;
/// Most states.
const MAX_STATES: usize = 200_000;
/// Most stacks alive at one position of the text.
const MAX_STACKS: usize = 100_000;

#[derive(Debug)]
struct State {
    /// Frames at a byte-consuming element, sorted.
    stacks: Box<[u32]>,
    /// Whether the text so far is a whole sentence.
    accept: bool,
}

/// The lazily built DFA of one grammar.
#[derive(Debug)]
pub(crate) struct Automaton {
    prog: Arc<Program>,
    /// Interned frames: (element position, caller frame).
    frames: Vec<(u32, u32)>,
    frame_ids: HashMap<(u32, u32), u32>,
    states: Vec<State>,
    state_ids: HashMap<(Box<[u32]>, bool), StateId>,
    /// `states × classes` transitions.
    trans: Vec<StateId>,
    n_classes: usize,
    // Scratch of `closure`.
    work: Vec<(u32, u32)>,
    seen: HashMap<(u32, u32), ()>,
    out: Vec<u32>,
}

impl Automaton {
    pub(crate) fn new(prog: Arc<Program>) -> Self {
        let n_classes = prog.n_classes;
        Automaton {
            prog,
            frames: Vec::new(),
            frame_ids: HashMap::new(),
            states: Vec::new(),
            state_ids: HashMap::new(),
            trans: Vec::new(),
            n_classes,
            work: Vec::new(),
            seen: HashMap::new(),
            out: Vec::new(),
        }
    }

    /// The state before any text.
    pub(crate) fn start(&mut self) -> Result<StateId, GrammarError> {
        let prog = self.prog.clone();
        self.work.clear();
        for &alt in &prog.rules[prog.root as usize] {
            self.work.push((alt, NO_FRAME));
        }
        self.closure()
    }

    /// Whether the text that led to `s` is a whole sentence.
    pub(crate) fn is_accepting(&self, s: StateId) -> bool {
        self.states[s as usize].accept
    }

    /// The state after byte `b` from `s` ([`DEAD`] if the grammar does
    /// not allow it).
    #[inline]
    pub(crate) fn step(&mut self, s: StateId, b: u8) -> Result<StateId, GrammarError> {
        let i = s as usize * self.n_classes + self.prog.class_of[b as usize] as usize;
        match self.trans[i] {
            UNKNOWN => {
                let t = self.compute(s, b)?;
                self.trans[i] = t;
                Ok(t)
            }
            t => Ok(t),
        }
    }

    /// Steps through `bytes`; [`DEAD`] as soon as one is refused.
    pub(crate) fn walk(&mut self, mut s: StateId, bytes: &[u8]) -> Result<StateId, GrammarError> {
        for &b in bytes {
            s = self.step(s, b)?;
            if s == DEAD {
                break;
            }
        }
        Ok(s)
    }

    fn compute(&mut self, s: StateId, b: u8) -> Result<StateId, GrammarError> {
        let prog = self.prog.clone();
        self.work.clear();
        for &f in self.states[s as usize].stacks.iter() {
            let (pos, parent) = self.frames[f as usize];
            if let Elem::Bytes(set) = prog.elems[pos as usize]
                && prog.set_has(set, b)
            {
                self.work.push((pos + 1, parent));
            }
        }
        if self.work.is_empty() {
            return Ok(DEAD);
        }
        self.closure()
    }

    fn frame(&mut self, pos: u32, parent: u32) -> Result<u32, GrammarError> {
        if let Some(&id) = self.frame_ids.get(&(pos, parent)) {
            return Ok(id);
        }
        if self.frames.len() >= MAX_FRAMES {
            return Err(GrammarError::TooLarge {
                what: "the grammar's parse stacks (frames)",
                limit: MAX_FRAMES,
            });
        }
        let id = self.frames.len() as u32;
        self.frames.push((pos, parent));
        self.frame_ids.insert((pos, parent), id);
        Ok(id)
    }

    /// Expands the (position, caller) pairs in `work` until every stack
    /// waits on a byte, and interns the resulting set as a state.
    fn closure(&mut self) -> Result<StateId, GrammarError> {
        let prog = self.prog.clone();
        self.seen.clear();
        self.out.clear();
        let mut accept = false;
        while let Some((pos, parent)) = self.work.pop() {
            if self.seen.insert((pos, parent), ()).is_some() {
                continue;
            }
            match prog.elems[pos as usize] {
                Elem::Bytes(_) => {
                    let f = self.frame(pos, parent)?;
                    self.out.push(f);
                    if self.out.len() > MAX_STACKS {
                        return Err(GrammarError::TooLarge {
                            what: "the parses alive at one position (the grammar is too ambiguous)",
                            limit: MAX_STACKS,
                        });
                    }
                }
                Elem::End => {
                    if parent == NO_FRAME {
                        accept = true;
                    } else {
                        let caller = self.frames[parent as usize];
                        self.work.push(caller);
                    }
                }
                Elem::Call(r) => {
                    let next = pos + 1;
                    let caller = if prog.elems[next as usize] == Elem::End {
                        parent
                    } else {
                        self.frame(next, parent)?
                    };
                    for &alt in &prog.rules[r as usize] {
                        self.work.push((alt, caller));
                    }
                }
            }
        }
        if self.out.is_empty() && !accept {
            return Ok(DEAD);
        }
        self.out.sort_unstable();
        self.out.dedup();
        let key: Box<[u32]> = self.out.as_slice().into();
        if let Some(&id) = self.state_ids.get(&(key.clone(), accept)) {
            return Ok(id);
        }
        if self.states.len() >= MAX_STATES {
            return Err(GrammarError::TooLarge {
                what: "the grammar automaton's states",
                limit: MAX_STATES,
            });
        }
        let id = self.states.len() as StateId;
        self.state_ids.insert((key.clone(), accept), id);
        self.states.push(State {
            stacks: key,
            accept,
        });
        self.trans
            .resize(self.trans.len() + self.n_classes, UNKNOWN);
        Ok(id)
    }
}

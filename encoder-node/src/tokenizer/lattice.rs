//! The Viterbi lattice: MeCab's `connect` with its exact tie-breaking, in a compact form.
//!
//! MeCab keeps, for every byte position, the list of nodes ending there, newest first, and gives
//! each new node the predecessor with the lowest `cost + matrix[l.rc, r.lc]`, scanning that list
//! in order with a strict `<`. Two nodes ending at the same position with the same right context
//! id meet every future right node with the same connection cost, so the one that loses now
//! (higher cost, or equal cost but later in the scan) can never be chosen later: we keep only the
//! winner, in the winner's place. That is exact, and it bounds each list by the number of
//! distinct right contexts, which keeps long texts fast and small.

use std::ops::Range;

use super::connector::Connector;

const NONE: u32 = u32::MAX;

/// A node proposed by the lexicon or the unknown-word rules, before it is connected.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate {
    /// Surface start (after any skipped spaces) and length, in bytes.
    pub begin: u32,
    pub len: u32,
    /// Bytes from the lookup position to the node's end, leading spaces included.
    pub rlength: u32,
    pub lc: u16,
    pub rc: u16,
    pub wcost: i16,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    cost: i64,
    prev: u32,
    /// Next node in the list of nodes ending at the same position.
    next_end: u32,
    begin: u32,
    len: u32,
    rc: u16,
}

/// Reusable buffers for one segmentation at a time (one per thread).
#[derive(Default)]
pub(crate) struct Lattice {
    nodes: Vec<Node>,
    /// Head of the list of nodes ending at each byte position.
    end_head: Vec<u32>,
    /// Best predecessor per left context id at the current position: (stamp, node, cost).
    memo: Vec<(u64, u32, i64)>,
    stamp: u64,
    /// The nodes ending at the current position as (cost, node, right context), scan order.
    left: Vec<(i64, u32, u16)>,
    pub(crate) candidates: Vec<Candidate>,
}

impl Lattice {
    /// Starts a text of `len` bytes with the BOS node ending at position 0; `left_contexts` is
    /// the number of left context ids (the matrix's `rsize`).
    pub fn reset(&mut self, len: usize, left_contexts: usize) {
        self.nodes.clear();
        self.end_head.clear();
        self.end_head.resize(len + 1, NONE);
        if self.memo.len() < left_contexts.max(1) {
            self.memo.resize(left_contexts.max(1), (0, NONE, 0));
        }
        self.nodes.push(Node { cost: 0, prev: NONE, next_end: NONE, begin: 0, len: 0, rc: 0 });
        self.end_head[0] = 0;
    }

    pub fn has_end_at(&self, pos: usize) -> bool {
        self.end_head.get(pos).is_some_and(|&h| h != NONE)
    }

    /// Starts the connections of the nodes that begin at `pos`: copies the nodes ending there,
    /// in MeCab's scan order, into flat arrays that every right node's scan then walks.
    pub fn begin_position(&mut self, pos: usize) {
        self.stamp += 1;
        self.left.clear();
        let mut at = self.end_head.get(pos).copied().unwrap_or(NONE);
        while at != NONE {
            let l = &self.nodes[at as usize];
            self.left.push((l.cost, at, l.rc));
            at = l.next_end;
        }
    }

    /// MeCab's inner loop: the best node ending at the current position to put before a node
    /// with left context `lc`, and the path cost through it (without the right node's word
    /// cost). Memoised per `lc`, since homographs share context ids.
    fn best_left(&mut self, lc: u16, matrix: &Connector) -> (u32, i64) {
        if let Some(&(stamp, node, cost)) = self.memo.get(lc as usize) {
            if stamp == self.stamp {
                return (node, cost);
            }
        }
        let row_start = matrix.lsize() * lc as usize;
        let row = matrix.costs().get(row_start..row_start + matrix.lsize()).unwrap_or(&[]);
        let (mut best, mut best_cost) = (NONE, i64::MAX);
        for &(cost, id, rc) in &self.left {
            let cost = cost + row.get(rc as usize).copied().unwrap_or(0) as i64;
            if cost < best_cost {
                best_cost = cost;
                best = id;
            }
        }
        if let Some(slot) = self.memo.get_mut(lc as usize) {
            *slot = (self.stamp, best, best_cost);
        }
        (best, best_cost)
    }

    /// Connects one candidate that starts at `pos` and files it under its end position.
    /// Candidates must be given in MeCab's list order (newest first).
    pub fn connect(&mut self, pos: usize, c: Candidate, matrix: &Connector) {
        let end = pos + c.rlength as usize;
        if end >= self.end_head.len() || c.rlength == 0 {
            // Ends past the text (a trailing-space artefact of MeCab's lookup): nothing can
            // follow it and EOS only looks at positions within the text.
            return;
        }
        let (prev, cost) = self.best_left(c.lc, matrix);
        if prev == NONE {
            return;
        }
        let cost = cost + c.wcost as i64;
        // Find a node with the same right context already ending there.
        let (mut before, mut at) = (NONE, self.end_head[end]);
        while at != NONE && self.nodes[at as usize].rc != c.rc {
            before = at;
            at = self.nodes[at as usize].next_end;
        }
        if at != NONE {
            if self.nodes[at as usize].cost < cost {
                return; // the existing node always wins against this one
            }
            // The new node is scanned first and is no worse: it replaces the old one.
            let after = self.nodes[at as usize].next_end;
            if before == NONE {
                self.end_head[end] = after;
            } else {
                self.nodes[before as usize].next_end = after;
            }
        }
        let id = self.nodes.len() as u32;
        self.nodes.push(Node { cost, prev, next_end: self.end_head[end], begin: c.begin, len: c.len, rc: c.rc });
        self.end_head[end] = id;
    }

    /// Connects EOS to the last position that has nodes (trailing spaces end nowhere) and
    /// returns the best path's surfaces, first to last, as byte ranges.
    pub fn best_path(&mut self, matrix: &Connector, out: &mut Vec<Range<usize>>) {
        out.clear();
        let Some(last) = (0..self.end_head.len()).rev().find(|&p| self.has_end_at(p)) else {
            return;
        };
        self.begin_position(last);
        let (mut at, _) = self.best_left(0, matrix);
        while at != NONE && at != 0 {
            let n = &self.nodes[at as usize];
            out.push(n.begin as usize..(n.begin + n.len) as usize);
            at = n.prev;
        }
        out.reverse();
    }
}

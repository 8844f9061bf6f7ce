//! The vocabulary's pieces in one byte blob, with an open-addressing hash
//! table from piece bytes to token id.
//!
//! One allocation for all piece text and one flat `u32` table keep building
//! the 262,144-piece Gemma vocabulary to a few milliseconds (a
//! `HashMap<String, u32>` costs one allocation per piece) and lookups free of
//! allocation.

/// An empty slot. Slots hold `fingerprint << 32 | id`.
const EMPTY: u64 = u64::MAX;

/// The upper 32 bits of the hash, kept in the slot so that probing compares
/// piece bytes (two cache misses away) only when the fingerprints agree.
fn fingerprint(h: u64) -> u64 {
    h >> 32
}

/// All pieces, their ids and a hash index over their bytes.
#[derive(Clone, Debug)]
pub(crate) struct Pieces {
    bytes: Vec<u8>,
    /// `offsets[i]..offsets[i + 1]` is piece `i` in `bytes`.
    offsets: Vec<u32>,
    /// Slots hold `fingerprint << 32 | id` or `EMPTY`; the length is a power of two.
    table: Vec<u64>,
}

/// FxHash-style multiplicative hash over 8-byte words; pieces are short.
fn hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    let mut tail = 0u64;
    for (i, &b) in chunks.remainder().iter().enumerate() {
        tail |= u64::from(b) << (8 * i);
    }
    h = (h.rotate_left(5) ^ tail).wrapping_mul(K);
    // Fold the high bits down: the table index takes the low bits.
    h ^ (h >> 29)
}

impl Pieces {
    /// Index `tokens`; for a piece that occurs twice the later id wins, as in
    /// llama.cpp's `token_to_id` map.
    pub(crate) fn new(tokens: &[&str]) -> Self {
        let total: usize = tokens.iter().map(|t| t.len()).sum();
        let mut bytes = Vec::with_capacity(total);
        let mut offsets = Vec::with_capacity(tokens.len() + 1);
        offsets.push(0u32);
        for t in tokens {
            bytes.extend_from_slice(t.as_bytes());
            // Callers check that the blob fits in u32 (see `Tokenizer::from_vocab`).
            offsets.push(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
        }
        let slots = (tokens.len() * 2).next_power_of_two().max(16);
        let mut this = Self {
            bytes,
            offsets,
            table: vec![EMPTY; slots],
        };
        // Insert in order of home slot (a counting sort on the slot's top
        // bits) so that writes sweep the table instead of missing the cache
        // at random: several times faster for Gemma's 262,144 pieces.
        let mask = slots - 1;
        let shift = slots.trailing_zeros().saturating_sub(12);
        let mut starts = vec![0u32; (slots >> shift) + 1];
        let hashes: Vec<u64> = (0..tokens.len() as u32)
            .map(|id| hash(this.piece_bytes(id)))
            .collect();
        for &h in &hashes {
            starts[((h as usize & mask) >> shift) + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        // Ids only (the hashes stay in `hashes`): fresh pages are costly.
        let mut order = vec![0u32; hashes.len()];
        for (id, &h) in hashes.iter().enumerate() {
            let bucket = &mut starts[(h as usize & mask) >> shift];
            order[*bucket as usize] = id as u32;
            *bucket += 1;
        }
        for id in order {
            this.insert(hashes[id as usize], id);
        }
        this
    }

    /// Insert `id` (whose piece hashes to `h`). For a piece that is already
    /// there, the higher id wins, whatever the insertion order.
    fn insert(&mut self, h: u64, id: u32) {
        let mask = self.table.len() - 1;
        let entry = fingerprint(h) << 32 | u64::from(id);
        let mut slot = h as usize & mask;
        loop {
            let cur = self.table[slot];
            if cur == EMPTY {
                self.table[slot] = entry;
                return;
            }
            if cur >> 32 == fingerprint(h) && self.piece_bytes(cur as u32) == self.piece_bytes(id) {
                if id > cur as u32 {
                    self.table[slot] = entry;
                }
                return;
            }
            slot = (slot + 1) & mask;
        }
    }

    /// Number of pieces.
    pub(crate) fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The bytes of piece `id` (valid UTF-8: they came from `&str`s).
    pub(crate) fn piece_bytes(&self, id: u32) -> &[u8] {
        let i = id as usize;
        &self.bytes[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// The text of piece `id`, if `id` is in range.
    pub(crate) fn piece(&self, id: u32) -> Option<&str> {
        if (id as usize) < self.len() {
            std::str::from_utf8(self.piece_bytes(id)).ok()
        } else {
            None
        }
    }

    /// The id of the piece whose bytes are exactly `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Option<u32> {
        let mask = self.table.len() - 1;
        let h = hash(key);
        let mut slot = h as usize & mask;
        loop {
            let cur = self.table[slot];
            if cur == EMPTY {
                return None;
            }
            if cur >> 32 == fingerprint(h) && self.piece_bytes(cur as u32) == key {
                return Some(cur as u32);
            }
            slot = (slot + 1) & mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_piece_and_nothing_else() {
        let toks: Vec<String> = (0..5000).map(|i| format!("p{i}")).collect();
        let refs: Vec<&str> = toks.iter().map(String::as_str).collect();
        let p = Pieces::new(&refs);
        for (i, t) in refs.iter().enumerate() {
            assert_eq!(p.get(t.as_bytes()), Some(i as u32));
            assert_eq!(p.piece(i as u32), Some(*t));
        }
        assert_eq!(p.get(b"p5000"), None);
        assert_eq!(p.get(b""), None);
        assert_eq!(p.piece(5000), None);
    }

    #[test]
    fn duplicate_piece_resolves_to_last_id() {
        let p = Pieces::new(&["a", "b", "a"]);
        assert_eq!(p.get(b"a"), Some(2));
        assert_eq!(p.get(b"b"), Some(1));
        let many: Vec<String> = (0..3000).map(|i| format!("d{}", i % 1000)).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let p = Pieces::new(&refs);
        for i in 0..1000 {
            assert_eq!(p.get(format!("d{i}").as_bytes()), Some(2000 + i));
        }
    }
}

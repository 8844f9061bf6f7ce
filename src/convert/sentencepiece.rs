//! Reads the pieces of a SentencePiece `tokenizer.model` (a `ModelProto`
//! protobuf) with a small wire-format reader: no protobuf dependency.
//!
//! Only `ModelProto.pieces` (field 1) is read; each `SentencePiece` has
//! `piece` (1, string), `score` (2, float) and `type` (3, enum, default
//! NORMAL). Other fields are skipped by wire type.

/// A SentencePiece piece type (values of `SentencePiece.Type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PieceType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

/// One vocabulary entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Piece {
    pub piece: String,
    pub score: f32,
    pub kind: PieceType,
}

/// What is wrong with a model file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed SentencePiece model at byte {offset}: {why}")]
pub struct SpError {
    pub offset: usize,
    pub why: &'static str,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Cursor<'a> {
    fn err(&self, why: &'static str) -> SpError {
        SpError {
            offset: self.base + self.pos,
            why,
        }
    }

    fn varint(&mut self) -> Result<u64, SpError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| self.err("truncated varint"))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], SpError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| self.err("length runs past the end"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// Reads a field key; `None` at the end.
    fn key(&mut self) -> Result<Option<(u64, u8)>, SpError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let k = self.varint()?;
        Ok(Some((k >> 3, (k & 7) as u8)))
    }

    fn skip(&mut self, wire: u8) -> Result<(), SpError> {
        match wire {
            0 => self.varint().map(drop),
            1 => self.take(8).map(drop),
            2 => {
                let n = self.varint()? as usize;
                self.take(n).map(drop)
            }
            5 => self.take(4).map(drop),
            _ => Err(self.err("unsupported wire type")),
        }
    }
}

/// Parses the pieces of a serialized `ModelProto`.
pub fn parse_pieces(model: &[u8]) -> Result<Vec<Piece>, SpError> {
    let mut c = Cursor {
        buf: model,
        pos: 0,
        base: 0,
    };
    let mut pieces = Vec::new();
    while let Some((field, wire)) = c.key()? {
        if field == 1 && wire == 2 {
            let n = c.varint()? as usize;
            let base = c.pos;
            let msg = c.take(n)?;
            pieces.push(parse_piece(msg, base)?);
        } else {
            c.skip(wire)?;
        }
    }
    Ok(pieces)
}

fn parse_piece(msg: &[u8], base: usize) -> Result<Piece, SpError> {
    let mut c = Cursor {
        buf: msg,
        pos: 0,
        base,
    };
    let mut piece = Piece {
        piece: String::new(),
        score: 0.0,
        kind: PieceType::Normal,
    };
    while let Some((field, wire)) = c.key()? {
        match (field, wire) {
            (1, 2) => {
                let n = c.varint()? as usize;
                let s = c.take(n)?;
                piece.piece =
                    String::from_utf8(s.to_vec()).map_err(|_| c.err("piece is not UTF-8"))?;
            }
            (2, 5) => {
                let b = c.take(4)?;
                piece.score = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
            (3, 0) => {
                piece.kind = match c.varint()? {
                    1 => PieceType::Normal,
                    2 => PieceType::Unknown,
                    3 => PieceType::Control,
                    4 => PieceType::UserDefined,
                    5 => PieceType::Unused,
                    6 => PieceType::Byte,
                    _ => return Err(c.err("unknown piece type")),
                }
            }
            _ => c.skip(wire)?,
        }
    }
    Ok(piece)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece_msg(s: &str, score: f32, ty: Option<u8>) -> Vec<u8> {
        let mut m = vec![0x0a, s.len() as u8];
        m.extend_from_slice(s.as_bytes());
        m.push(0x15);
        m.extend_from_slice(&score.to_le_bytes());
        if let Some(t) = ty {
            m.extend_from_slice(&[0x18, t]);
        }
        m
    }

    #[test]
    fn parses_pieces_and_skips_other_fields() {
        let mut model = Vec::new();
        for (s, score, ty) in [
            ("<unk>", 0.0, Some(2)),
            ("▁a", -1.5, None),
            ("<0x00>", 0.0, Some(6)),
        ] {
            let m = piece_msg(s, score, ty);
            model.push(0x0a);
            model.push(m.len() as u8);
            model.extend(m);
        }
        // field 2 (trainer_spec), length-delimited: skipped
        model.extend_from_slice(&[0x12, 2, 0x08, 0x01]);
        let p = parse_pieces(&model).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].kind, PieceType::Unknown);
        assert_eq!(
            p[1],
            Piece {
                piece: "▁a".into(),
                score: -1.5,
                kind: PieceType::Normal
            }
        );
        assert_eq!(p[2].kind, PieceType::Byte);
    }

    #[test]
    fn truncated_input_is_an_error() {
        let model = [0x0a, 10, 0x0a];
        assert!(parse_pieces(&model).is_err());
    }
}

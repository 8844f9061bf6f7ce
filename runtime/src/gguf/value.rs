//! Metadata values.
//!
//! Scalars and strings are decoded at open. Arrays of scalars and strings
//! stay in the file: an [`Array`] is a typed byte range (checked at open,
//! UTF-8 included) decoded on access, so a 262,144-token vocabulary costs no
//! allocation until a tokenizer asks for it. Only arrays of arrays are
//! decoded into a `Vec` at open (GGUF files in the wild do not use them).

use std::fmt;
use std::sync::Arc;

use super::backing::Backing;

/// A GGUF metadata value type (`gguf_type`), with its id in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// `uint8`.
    U8 = 0,
    /// `int8`.
    I8 = 1,
    /// `uint16`.
    U16 = 2,
    /// `int16`.
    I16 = 3,
    /// `uint32`.
    U32 = 4,
    /// `int32`.
    I32 = 5,
    /// `float32`.
    F32 = 6,
    /// `bool` (one byte, 0 or 1).
    Bool = 7,
    /// `string`: u64 length + UTF-8 bytes.
    String = 8,
    /// `array`: u32 element type + u64 count + elements.
    Array = 9,
    /// `uint64`.
    U64 = 10,
    /// `int64`.
    I64 = 11,
    /// `float64`.
    F64 = 12,
}

impl ValueType {
    /// The type with GGUF id `id`.
    pub fn from_id(id: u32) -> Option<Self> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// The GGUF id.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// gguf-py's lower-case name (`uint32`, `float32`, `string`, ...).
    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "uint8",
            I8 => "int8",
            U16 => "uint16",
            I16 => "int16",
            U32 => "uint32",
            I32 => "int32",
            F32 => "float32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "uint64",
            I64 => "int64",
            F64 => "float64",
        }
    }

    /// Bytes of one value of a fixed-size type; `None` for strings and arrays.
    pub fn fixed_size(self) -> Option<usize> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }

    /// The fewest bytes one value of this type takes in a file (used to
    /// bound counts before trusting them).
    pub(crate) fn min_size(self) -> u64 {
        match self {
            ValueType::String => 8,
            ValueType::Array => 12,
            t => t.fixed_size().map_or(1, |s| s as u64),
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `uint8`.
    U8(u8),
    /// `int8`.
    I8(i8),
    /// `uint16`.
    U16(u16),
    /// `int16`.
    I16(i16),
    /// `uint32`.
    U32(u32),
    /// `int32`.
    I32(i32),
    /// `uint64`.
    U64(u64),
    /// `int64`.
    I64(i64),
    /// `float32`.
    F32(f32),
    /// `float64`.
    F64(f64),
    /// `bool`.
    Bool(bool),
    /// `string`.
    String(String),
    /// `array`.
    Array(Array),
}

impl Value {
    /// The value's GGUF type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F32(_) => ValueType::F32,
            Value::F64(_) => ValueType::F64,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
        }
    }

    /// A borrowed view of the value.
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::U8(v) => ValueRef::U8(*v),
            Value::I8(v) => ValueRef::I8(*v),
            Value::U16(v) => ValueRef::U16(*v),
            Value::I16(v) => ValueRef::I16(*v),
            Value::U32(v) => ValueRef::U32(*v),
            Value::I32(v) => ValueRef::I32(*v),
            Value::U64(v) => ValueRef::U64(*v),
            Value::I64(v) => ValueRef::I64(*v),
            Value::F32(v) => ValueRef::F32(*v),
            Value::F64(v) => ValueRef::F64(*v),
            Value::Bool(v) => ValueRef::Bool(*v),
            Value::String(v) => ValueRef::Str(v),
            Value::Array(v) => ValueRef::Array(v),
        }
    }

    /// The value as an integer, if it is one of the integer types.
    pub fn as_i128(&self) -> Option<i128> {
        self.as_ref().as_i128()
    }

    /// The value as a string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an array, if it is one.
    pub fn as_array(&self) -> Option<&Array> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// An array value of strings (for writers).
    pub fn string_array<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Value {
        let mut bytes = Vec::new();
        let mut len = 0u64;
        for s in items {
            let s = s.as_ref().as_bytes();
            bytes.extend_from_slice(&(s.len() as u64).to_le_bytes());
            bytes.extend_from_slice(s);
            len += 1;
        }
        Value::Array(Array::from_encoded(ValueType::String, len, bytes))
    }

    /// An array value of `f32` (for writers).
    pub fn f32_array(items: &[f32]) -> Value {
        let bytes = items.iter().flat_map(|v| v.to_le_bytes()).collect();
        Value::Array(Array::from_encoded(
            ValueType::F32,
            items.len() as u64,
            bytes,
        ))
    }

    /// An array value of `i32` (for writers).
    pub fn i32_array(items: &[i32]) -> Value {
        let bytes = items.iter().flat_map(|v| v.to_le_bytes()).collect();
        Value::Array(Array::from_encoded(
            ValueType::I32,
            items.len() as u64,
            bytes,
        ))
    }

    /// An array value of arrays (for writers).
    pub fn array_of_arrays(items: Vec<Array>) -> Value {
        Value::Array(Array::nested(items))
    }

    /// Short description for error messages: type and, for scalars, value.
    pub(crate) fn describe(&self) -> String {
        match self {
            Value::String(s) if s.len() > 40 => "a string".to_string(),
            Value::String(s) => format!("string {s:?}"),
            Value::Array(a) => format!("array of {} ({} items)", a.elem_type(), a.len()),
            v => format!("{} {}", v.value_type(), v.as_ref()),
        }
    }
}

/// A borrowed metadata value, as array iteration yields them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ValueRef<'a> {
    /// `uint8`.
    U8(u8),
    /// `int8`.
    I8(i8),
    /// `uint16`.
    U16(u16),
    /// `int16`.
    I16(i16),
    /// `uint32`.
    U32(u32),
    /// `int32`.
    I32(i32),
    /// `uint64`.
    U64(u64),
    /// `int64`.
    I64(i64),
    /// `float32`.
    F32(f32),
    /// `float64`.
    F64(f64),
    /// `bool`.
    Bool(bool),
    /// `string`.
    Str(&'a str),
    /// `array`.
    Array(&'a Array),
}

impl ValueRef<'_> {
    /// The value as an integer, if it is one of the integer types.
    pub fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            ValueRef::U8(v) => v.into(),
            ValueRef::I8(v) => v.into(),
            ValueRef::U16(v) => v.into(),
            ValueRef::I16(v) => v.into(),
            ValueRef::U32(v) => v.into(),
            ValueRef::I32(v) => v.into(),
            ValueRef::U64(v) => v.into(),
            ValueRef::I64(v) => v.into(),
            _ => return None,
        })
    }
}

impl fmt::Display for ValueRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueRef::U8(v) => write!(f, "{v}"),
            ValueRef::I8(v) => write!(f, "{v}"),
            ValueRef::U16(v) => write!(f, "{v}"),
            ValueRef::I16(v) => write!(f, "{v}"),
            ValueRef::U32(v) => write!(f, "{v}"),
            ValueRef::I32(v) => write!(f, "{v}"),
            ValueRef::U64(v) => write!(f, "{v}"),
            ValueRef::I64(v) => write!(f, "{v}"),
            ValueRef::F32(v) => write!(f, "{v}"),
            ValueRef::F64(v) => write!(f, "{v}"),
            ValueRef::Bool(v) => write!(f, "{v}"),
            ValueRef::Str(v) => write!(f, "{v:?}"),
            ValueRef::Array(a) => write!(f, "[{} x {}]", a.len(), a.elem_type()),
        }
    }
}

/// A metadata array. Arrays of scalars and strings are a byte range of the
/// file, decoded on access; arrays of arrays hold their items.
#[derive(Clone)]
pub struct Array {
    elem: ValueType,
    len: u64,
    data: ArrayData,
}

#[derive(Clone)]
enum ArrayData {
    /// Elements in GGUF encoding: `bytes[start..end]`, already checked.
    Encoded {
        bytes: Arc<Backing>,
        start: usize,
        end: usize,
    },
    /// Arrays of arrays.
    Nested(Vec<Array>),
}

impl Array {
    /// An array over `bytes[start..end]`, which the parser has checked holds
    /// exactly `len` valid elements of `elem` (UTF-8 included).
    pub(crate) fn encoded(
        elem: ValueType,
        len: u64,
        bytes: Arc<Backing>,
        start: usize,
        end: usize,
    ) -> Self {
        Array {
            elem,
            len,
            data: ArrayData::Encoded { bytes, start, end },
        }
    }

    pub(crate) fn nested(items: Vec<Array>) -> Self {
        Array {
            elem: ValueType::Array,
            len: items.len() as u64,
            data: ArrayData::Nested(items),
        }
    }

    fn from_encoded(elem: ValueType, len: u64, bytes: Vec<u8>) -> Self {
        let end = bytes.len();
        Array::encoded(elem, len, Arc::new(Backing::Owned(bytes)), 0, end)
    }

    /// The element type.
    pub fn elem_type(&self) -> ValueType {
        self.elem
    }

    /// The number of elements.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The elements in GGUF encoding (no type or count header); `None` for
    /// arrays of arrays.
    pub fn encoded_bytes(&self) -> Option<&[u8]> {
        match &self.data {
            ArrayData::Encoded { bytes, start, end } => bytes.get(*start..*end),
            ArrayData::Nested(_) => None,
        }
    }

    /// The items of an array of arrays.
    pub fn nested_items(&self) -> Option<&[Array]> {
        match &self.data {
            ArrayData::Nested(items) => Some(items),
            ArrayData::Encoded { .. } => None,
        }
    }

    /// Iterates the elements.
    pub fn iter(&self) -> ArrayIter<'_> {
        ArrayIter {
            elem: self.elem,
            bytes: self.encoded_bytes().unwrap_or(&[]),
            nested: self.nested_items().unwrap_or(&[]).iter(),
            remaining: self.len,
        }
    }

    /// The strings of an array of strings, `None` for another element type.
    pub fn strs(&self) -> Option<StrIter<'_>> {
        (self.elem == ValueType::String).then(|| StrIter {
            bytes: self.encoded_bytes().unwrap_or(&[]),
            remaining: self.len,
            run: "",
        })
    }

    /// Decodes an array of fixed-size elements with `decode` (which gets
    /// exactly `N` bytes per element).
    pub(crate) fn decode_fixed<T, const N: usize>(&self, decode: fn([u8; N]) -> T) -> Vec<T> {
        let bytes = self.encoded_bytes().unwrap_or(&[]);
        bytes
            .chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                decode(a)
            })
            .collect()
    }
}

impl PartialEq for Array {
    fn eq(&self, other: &Self) -> bool {
        self.elem == other.elem
            && self.len == other.len
            && match (&self.data, &other.data) {
                (ArrayData::Nested(a), ArrayData::Nested(b)) => a == b,
                _ => self.encoded_bytes() == other.encoded_bytes(),
            }
    }
}

impl fmt::Debug for Array {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for v in self.iter().take(8) {
            list.entry(&v);
        }
        if self.len > 8 {
            list.entry(&format_args!("... {} items", self.len));
        }
        list.finish()
    }
}

impl<'a> IntoIterator for &'a Array {
    type Item = ValueRef<'a>;
    type IntoIter = ArrayIter<'a>;

    fn into_iter(self) -> ArrayIter<'a> {
        self.iter()
    }
}

/// Iterator over an [`Array`]'s elements.
#[derive(Clone, Debug)]
pub struct ArrayIter<'a> {
    elem: ValueType,
    bytes: &'a [u8],
    nested: std::slice::Iter<'a, Array>,
    remaining: u64,
}

/// Splits `n` bytes off the front of `bytes`.
pub(crate) fn take<const N: usize>(bytes: &mut &[u8]) -> Option<[u8; N]> {
    let (head, tail) = bytes.split_first_chunk::<N>()?;
    *bytes = tail;
    Some(*head)
}

/// Reads one length-prefixed string. The parser validated the array at
/// open, so failures here only happen if the mapped file changed under us;
/// then iteration stops (bytes) or yields U+FFFD (UTF-8) rather than panic.
fn take_str<'a>(bytes: &mut &'a [u8]) -> Option<&'a str> {
    let n = usize::try_from(u64::from_le_bytes(take::<8>(bytes)?)).ok()?;
    if n > bytes.len() {
        return None;
    }
    let (s, tail) = bytes.split_at(n);
    *bytes = tail;
    Some(std::str::from_utf8(s).unwrap_or("\u{FFFD}"))
}

impl<'a> Iterator for ArrayIter<'a> {
    type Item = ValueRef<'a>;

    fn next(&mut self) -> Option<ValueRef<'a>> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let b = &mut self.bytes;
        Some(match self.elem {
            ValueType::U8 => ValueRef::U8(u8::from_le_bytes(take(b)?)),
            ValueType::I8 => ValueRef::I8(i8::from_le_bytes(take(b)?)),
            ValueType::U16 => ValueRef::U16(u16::from_le_bytes(take(b)?)),
            ValueType::I16 => ValueRef::I16(i16::from_le_bytes(take(b)?)),
            ValueType::U32 => ValueRef::U32(u32::from_le_bytes(take(b)?)),
            ValueType::I32 => ValueRef::I32(i32::from_le_bytes(take(b)?)),
            ValueType::U64 => ValueRef::U64(u64::from_le_bytes(take(b)?)),
            ValueType::I64 => ValueRef::I64(i64::from_le_bytes(take(b)?)),
            ValueType::F32 => ValueRef::F32(f32::from_le_bytes(take(b)?)),
            ValueType::F64 => ValueRef::F64(f64::from_le_bytes(take(b)?)),
            ValueType::Bool => ValueRef::Bool(take::<1>(b)?[0] != 0),
            ValueType::String => ValueRef::Str(take_str(b)?),
            ValueType::Array => ValueRef::Array(self.nested.next()?),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(self.remaining).unwrap_or(usize::MAX);
        (0, Some(n))
    }
}

/// Iterator over the strings of an array of strings, borrowed from the file.
///
/// Short strings are validated as UTF-8 a run at a time (SIMD) and sliced
/// out of it: one check per 64 KiB instead of one per string (a quarter of
/// building Gemma's 262,144-piece tokenizer, much of it non-ASCII, went to
/// per-string checks).
#[derive(Clone, Debug)]
pub struct StrIter<'a> {
    /// The encoded strings not yet yielded (length prefix, then bytes).
    bytes: &'a [u8],
    remaining: u64,
    /// Validated text that starts at the first string of `bytes` and runs
    /// through the length prefixes and short strings after it (empty when
    /// spent).
    run: &'a str,
}

impl StrIter<'_> {
    /// Strings left.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }
}

/// Strings shorter than this have an all-ASCII length prefix, so a run of
/// them is valid UTF-8 exactly when each string is.
const SHORT_STR: u64 = 128;
/// Bytes of short strings validated at a time.
const STR_RUN: usize = 64 << 10;

impl<'a> StrIter<'a> {
    /// The text from the first string of `bytes` through the last whole
    /// short string within `STR_RUN` bytes, if it is valid UTF-8.
    fn next_run(&self) -> &'a str {
        let b = self.bytes;
        let (mut pos, mut end) = (8, 8);
        let mut left = self.remaining;
        while left > 0 && end - 8 < STR_RUN {
            let Some(len) = b.get(pos - 8..pos) else {
                break;
            };
            let n = u64::from_le_bytes(len.try_into().unwrap_or([0xff; 8]));
            if n >= SHORT_STR || n > (b.len() - pos) as u64 {
                break;
            }
            end = pos + n as usize;
            pos = end + 8;
            left -= 1;
        }
        let Some(t) = b.get(8..end) else {
            return "";
        };
        // Only a file changed since open can fail here: keep the valid part,
        // so the string at the bad byte is checked alone.
        simdutf8::compat::from_utf8(t)
            .or_else(|e| simdutf8::compat::from_utf8(&t[..e.valid_up_to()]))
            .unwrap_or("")
    }
}

impl<'a> Iterator for StrIter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.remaining == 0 {
            return None;
        }
        if self.run.is_empty() {
            self.run = self.next_run();
        }
        self.remaining -= 1;
        let n = usize::try_from(u64::from_le_bytes(*self.bytes.first_chunk::<8>()?)).ok()?;
        // The run starts at this string, and holds it unless it is long.
        if let Some(s) = self.run.get(..n) {
            self.bytes = &self.bytes[8 + n..];
            self.run = self.run.get(n + 8..).unwrap_or("");
            return Some(s);
        }
        self.run = "";
        take_str(&mut self.bytes)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(self.remaining).unwrap_or(usize::MAX);
        (0, Some(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length class the run validation treats differently: empty,
    /// short, the 127/128 boundary, long, multi-byte text, and more than
    /// one run's worth.
    #[test]
    fn string_arrays_iterate_exactly() {
        let mut items: Vec<String> = vec![
            String::new(),
            "a".into(),
            "x".repeat(127),
            "y".repeat(128),
            "é".repeat(200),
            "東京".into(),
            String::new(),
            "▁the".into(),
        ];
        for i in 0..20_000 {
            items.push(match i % 5 {
                0 => format!("p{i}"),
                1 => "ß".repeat(i % 70),
                2 => "z".repeat(i % 300),
                3 => String::new(),
                _ => format!("<0x{:02X}>", i % 256),
            });
        }
        let v = Value::string_array(&items);
        let a = v.as_array().unwrap();
        let got: Vec<&str> = a.strs().unwrap().collect();
        assert_eq!(got.len(), items.len());
        for (i, (g, w)) in got.iter().zip(&items).enumerate() {
            assert_eq!(g, w, "string {i}");
        }
        assert_eq!(a.strs().unwrap().remaining(), items.len() as u64);
    }
}

//! Values and the comparison rules of the dialect (spec 4.5): one place decides how a string meets a
//! number or a boolean, so `WHERE`, joins, `IN`, `BETWEEN` and sorting cannot disagree.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::sync::Arc;

use serde::Serialize;

/// A cell. Strings are shared (`Arc<str>`) so that a snapshot handed to many queries is never copied.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Arc<str>),
}

pub(crate) static NULL: Value = Value::Null;

impl Value {
    /// Convenience for integrators building tables.
    pub fn str(s: &str) -> Value {
        Value::Str(Arc::from(s))
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The `TYPEOF` name of the value.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Bool(_) => "BOOLEAN",
            Value::Int(_) => "INTEGER",
            Value::Float(_) => "FLOAT",
            Value::Str(_) => "STRING",
        }
    }

    /// Text form used by string functions, `LIKE`, `REGEXP` and text comparisons.
    pub(crate) fn text(&self) -> Cow<'_, str> {
        match self {
            Value::Null => Cow::Borrowed(""),
            Value::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Value::Int(i) => Cow::Owned(i.to_string()),
            Value::Float(f) => Cow::Owned(float_text(*f)),
            Value::Str(s) => Cow::Borrowed(s),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::str(s)
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(Arc::from(s))
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Float(f)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(o: Option<T>) -> Self {
        o.map_or(Value::Null, Into::into)
    }
}

impl Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_none(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            // JSON has no NaN or infinity.
            Value::Float(f) if !f.is_finite() => s.serialize_none(),
            Value::Float(f) => s.serialize_f64(*f),
            Value::Str(v) => s.serialize_str(v),
        }
    }
}

pub(crate) fn float_text(f: f64) -> String {
    if f.is_finite() {
        format!("{f:?}")
    } else {
        String::from("null")
    }
}

/// A number as arithmetic sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    pub(crate) fn f(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
    pub(crate) fn value(self) -> Value {
        match self {
            Num::Int(i) => Value::Int(i),
            Num::Float(f) => Value::Float(f),
        }
    }
}

/// Strict number syntax: Rust's float parser also takes `inf` and `NaN`, which are not numbers in SQL.
pub(crate) fn parse_num(s: &str) -> Option<Num> {
    let t = s.trim_matches(|c: char| c.is_ascii_whitespace());
    if t.is_empty() || !t.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    if !t
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
    {
        return None;
    }
    if let Ok(i) = t.parse::<i64>() {
        return Some(Num::Int(i));
    }
    t.parse::<f64>().ok().filter(|f| f.is_finite()).map(Num::Float)
}

fn num_cmp(a: Num, b: Num) -> Option<Ordering> {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => Some(x.cmp(&y)),
        _ => a.f().partial_cmp(&b.f()),
    }
}

fn as_num(v: &Value) -> Option<Num> {
    match v {
        Value::Int(i) => Some(Num::Int(*i)),
        Value::Float(f) => Some(Num::Float(*f)),
        Value::Bool(b) => Some(Num::Int(i64::from(*b))),
        _ => None,
    }
}

fn bool_word(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// SQL comparison: `None` when either side is NULL (or a NaN), which `WHERE` reads as false.
pub(crate) fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    use Value::*;
    match (a, b) {
        (Null, _) | (_, Null) => None,
        (Str(x), Str(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        (Bool(x), Bool(y)) => Some(x.cmp(y)),
        (Str(s), Bool(bv)) => Some(match bool_word(s) {
            Some(sb) => sb.cmp(bv),
            None => s.as_bytes().cmp(if *bv {
                b"true".as_slice()
            } else {
                b"false".as_slice()
            }),
        }),
        (Bool(_), Str(_)) => compare(b, a).map(Ordering::reverse),
        (Str(s), n) => {
            let n = as_num(n)?;
            match parse_num(s) {
                Some(sn) => num_cmp(sn, n),
                None => Some(s.as_bytes().cmp(n.value().text().as_bytes())),
            }
        }
        (_, Str(_)) => compare(b, a).map(Ordering::reverse),
        _ => num_cmp(as_num(a)?, as_num(b)?),
    }
}

/// `compare(a, b) == Some(Equal)`, cheaper for strings: shared strings are equal without reading
/// them, and strings of different lengths without comparing bytes.
#[inline]
pub(crate) fn equal(a: &Value, b: &Value) -> Option<bool> {
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => Some(Arc::ptr_eq(x, y) || x == y),
        (Value::Int(x), Value::Int(y)) => Some(x == y),
        _ => compare(a, b).map(Ordering::is_eq),
    }
}

fn class(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Int(_) | Value::Float(_) => 2,
        Value::Str(_) => 3,
    }
}

/// A total order for sorting and MIN/MAX: the SQL comparison is not transitive across types, and
/// the standard sort may panic on an inconsistent order. NULL sorts first.
pub(crate) fn total_cmp(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Str(x), Value::Str(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            let (x, y) = (as_num(a).map_or(0.0, Num::f), as_num(b).map_or(0.0, Num::f));
            x.total_cmp(&y)
        }
        _ => class(a).cmp(&class(b)),
    }
}

/// Grouping identity: values in one group are indistinguishable (NULLs group together).
pub(crate) fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Float(x), Value::Float(y)) => x == y || (x.is_nan() && y.is_nan()),
        (Value::Int(x), Value::Float(y)) | (Value::Float(y), Value::Int(x)) => (*x as f64) == *y,
        _ => a == b,
    }
}

/// A small, fast, non-cryptographic hasher (FxHash's mixing) for join and group keys: the keys
/// come from one tenant's own data, so hash flooding is the tenant hurting only itself, and the
/// statement deadline still bounds it.
#[derive(Default, Clone, Copy)]
pub(crate) struct Fx(u64);

const FX_K: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Fx {
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(FX_K);
    }
}

impl std::hash::Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Fixed-size chunks so the loads compile to plain 8-byte reads (no memcpy calls).
        let mut rest = bytes;
        while let Some((c, r)) = rest.split_first_chunk::<8>() {
            self.add(u64::from_le_bytes(*c));
            rest = r;
        }
        let mut w = [0u8; 8];
        for (d, s) in w.iter_mut().zip(rest) {
            *d = *s;
        }
        self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
}

pub(crate) type FxBuild = std::hash::BuildHasherDefault<Fx>;

/// Hash consistent with [`same`].
pub(crate) fn hash_value(v: &Value, h: &mut Fx) {
    use std::hash::Hasher;
    match v {
        Value::Null => h.write_u64(0x9e37),
        Value::Bool(b) => h.write_u64(2 + u64::from(*b)),
        Value::Int(i) => h.write_u64(*i as u64),
        Value::Float(f) => {
            if f.fract() == 0.0 && *f >= -9.2e18 && *f <= 9.2e18 {
                h.write_u64(*f as i64 as u64)
            } else if f.is_nan() {
                h.write_u64(0x7ff8)
            } else {
                h.write_u64(f.to_bits())
            }
        }
        Value::Str(s) => h.write(s.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_comparisons() {
        assert_eq!(
            compare(&Value::str("10"), &Value::Int(9)),
            Some(Ordering::Greater)
        );
        assert_eq!(
            compare(&Value::str("abc"), &Value::Int(9)),
            Some(Ordering::Greater)
        );
        assert_eq!(
            compare(&Value::str("TRUE"), &Value::Bool(true)),
            Some(Ordering::Equal)
        );
        assert_eq!(compare(&Value::Bool(true), &Value::Int(1)), Some(Ordering::Equal));
        assert_eq!(compare(&Value::Null, &Value::Int(1)), None);
        assert_eq!(parse_num("inf"), None);
        assert_eq!(parse_num(" 12 "), Some(Num::Int(12)));
        assert_eq!(parse_num("1.5e3"), Some(Num::Float(1500.0)));
    }
}

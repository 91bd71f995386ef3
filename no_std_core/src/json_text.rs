//! Just enough JSON for a machine's JSON context, on byte slices and without allocating:
//! checking that text is one JSON value, finding a top-level member of an object, numbers.
//!
//! The context of a JSON chart is kept as the JSON text of an object; `assign` and the context
//! guards read and rewrite its top-level members only, so values stay opaque text here (a
//! nested object is copied as written). Nesting is bounded by [`MAX_NESTING`], so no input
//! recurses deeply.

/// The deepest nesting of arrays and objects accepted.
pub(crate) const MAX_NESTING: usize = 32;

fn ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// The end of the JSON string literal starting at `i` (which must be `"`).
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'"' => return Some(j + 1),
            b'\\' => match b.get(j + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => j += 2,
                b'u' => {
                    let hex = b.get(j + 2..j + 6)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return None;
                    }
                    j += 6;
                }
                _ => return None,
            },
            c if c < 0x20 => return None,
            _ => j += 1,
        }
    }
    None
}

fn number_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    if b.get(j) == Some(&b'-') {
        j += 1;
    }
    let digits = |b: &[u8], mut j: usize| {
        let s = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        (j > s).then_some(j)
    };
    match b.get(j) {
        Some(b'0') => j += 1,
        Some(c) if c.is_ascii_digit() => j = digits(b, j)?,
        _ => return None,
    }
    if b.get(j) == Some(&b'.') {
        j = digits(b, j + 1)?;
    }
    if matches!(b.get(j), Some(b'e' | b'E')) {
        j += 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        j = digits(b, j)?;
    }
    Some(j)
}

/// The end of the JSON value starting at `i` (whitespace before it skipped), if it is one.
pub(crate) fn value_end(b: &[u8], i: usize, depth: usize) -> Option<usize> {
    let i = ws(b, i);
    match *b.get(i)? {
        b'"' => string_end(b, i),
        b't' => b[i..].starts_with(b"true").then_some(i + 4),
        b'f' => b[i..].starts_with(b"false").then_some(i + 5),
        b'n' => b[i..].starts_with(b"null").then_some(i + 4),
        b'[' | b'{' if depth >= MAX_NESTING => None,
        b'[' => {
            let mut j = ws(b, i + 1);
            if b.get(j) == Some(&b']') {
                return Some(j + 1);
            }
            loop {
                j = ws(b, value_end(b, j, depth + 1)?);
                match b.get(j)? {
                    b',' => j += 1,
                    b']' => return Some(j + 1),
                    _ => return None,
                }
            }
        }
        b'{' => {
            let mut j = ws(b, i + 1);
            if b.get(j) == Some(&b'}') {
                return Some(j + 1);
            }
            loop {
                j = ws(b, string_end(b, ws(b, j))?);
                if b.get(j) != Some(&b':') {
                    return None;
                }
                j = ws(b, value_end(b, j + 1, depth + 1)?);
                match b.get(j)? {
                    b',' => j += 1,
                    b'}' => return Some(j + 1),
                    _ => return None,
                }
            }
        }
        _ => number_end(b, i),
    }
}

/// Whether `b` is exactly one JSON value (whitespace around it allowed).
pub(crate) fn is_value(b: &[u8]) -> bool {
    value_end(b, 0, 0).is_some_and(|e| ws(b, e) == b.len())
}

/// Whether `b` is exactly one JSON object.
pub(crate) fn is_object(b: &[u8]) -> bool {
    b.get(ws(b, 0)) == Some(&b'{') && is_value(b)
}

/// Whether `b` is exactly one JSON string literal.
pub(crate) fn is_string(b: &[u8]) -> bool {
    b.first() == Some(&b'"') && string_end(b, 0) == Some(b.len())
}

/// Where a member sits in an object's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Member {
    /// The start of its key.
    pub(crate) key: usize,
    /// Its value's span.
    pub(crate) value: (usize, usize),
}

/// Finds the top-level member whose key is written exactly as `key` (a JSON string literal,
/// quotes included) in the object `obj`. `Err` when `obj` is not an object; keys are compared
/// as written, so `"a"` and `"\u0061"` are two keys here. The last one wins, as in JSON.parse.
pub(crate) fn find(obj: &[u8], key: &[u8]) -> Result<Option<Member>, ()> {
    let mut j = ws(obj, 0);
    if obj.get(j) != Some(&b'{') {
        return Err(());
    }
    j = ws(obj, j + 1);
    if obj.get(j) == Some(&b'}') {
        return Ok(None);
    }
    let mut found = None;
    loop {
        let k = ws(obj, j);
        let ke = string_end(obj, k).ok_or(())?;
        j = ws(obj, ke);
        if obj.get(j) != Some(&b':') {
            return Err(());
        }
        let vs = ws(obj, j + 1);
        let ve = value_end(obj, vs, 1).ok_or(())?;
        if &obj[k..ke] == key {
            found = Some(Member {
                key: k,
                value: (vs, ve),
            });
        }
        j = ws(obj, ve);
        match obj.get(j) {
            Some(b',') => j += 1,
            Some(b'}') => return Ok(found),
            _ => return Err(()),
        }
    }
}

/// A JSON number, as an integer when it is written as one and fits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    pub(crate) fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }
}

/// The number `b` is (whitespace around it allowed), if it is one.
pub(crate) fn number(b: &[u8]) -> Option<Number> {
    let s = ws(b, 0);
    let e = number_end(b, s)?;
    if ws(b, e) != b.len() {
        return None;
    }
    let text = core::str::from_utf8(&b[s..e]).ok()?;
    if !text.contains(['.', 'e', 'E']) {
        if let Ok(i) = text.parse::<i64>() {
            return Some(Number::Int(i));
        }
    }
    text.parse::<f64>().ok().map(Number::Float)
}

/// `a + b`: an integer while both are and the sum fits, else a float; `None` when the sum
/// is not finite (JSON has no infinity).
pub(crate) fn add(a: Number, b: Number) -> Option<Number> {
    if let (Number::Int(x), Number::Int(y)) = (a, b) {
        if let Some(s) = x.checked_add(y) {
            return Some(Number::Int(s));
        }
    }
    let s = a.as_f64() + b.as_f64();
    s.is_finite().then_some(Number::Float(s))
}

/// A number's JSON text, in `buf`. Floats as JavaScript prints them where Rust agrees: the
/// shortest text that reads back the same, in exponent form outside `1e-7 .. 1e21`.
pub(crate) fn write_number(n: Number, buf: &mut heapless::String<40>) -> core::fmt::Result {
    use core::fmt::Write;
    match n {
        Number::Int(i) => write!(buf, "{i}"),
        // -0 too, as JavaScript writes it.
        Number::Float(0.0) => write!(buf, "0"),
        Number::Float(f) if f.abs() >= 1e21 || f.abs() < 1e-7 => write!(buf, "{f:e}"),
        Number::Float(f) => write!(buf, "{f}"),
    }
}

/// Compares two JSON values' texts: numbers by value (`None` when either is not a number,
/// for ordering), anything else equal only when written the same.
pub(crate) fn compare(a: &[u8], b: &[u8]) -> (bool, Option<core::cmp::Ordering>) {
    match (number(a), number(b)) {
        (Some(x), Some(y)) => {
            let ord = match (x, y) {
                (Number::Int(x), Number::Int(y)) => Some(x.cmp(&y)),
                (x, y) => x.as_f64().partial_cmp(&y.as_f64()),
            };
            (ord == Some(core::cmp::Ordering::Equal), ord)
        }
        _ => (trim(a) == trim(b), None),
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let s = ws(b, 0);
    let mut e = b.len();
    while e > s && matches!(b[e - 1], b' ' | b'\t' | b'\n' | b'\r') {
        e -= 1;
    }
    &b[s..e]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        for ok in [
            "1",
            "-0.5e+3",
            "\"a\\u00e9\\n\"",
            "[]",
            "{}",
            "{\"a\":[1,{\"b\":null}],\"c\":true}",
            " false ",
        ] {
            assert!(is_value(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "", "01", "1.", "\"a", "[1,]", "{\"a\"}", "{a:1}", "tru", "1 2", "\"\\x\"",
        ] {
            assert!(!is_value(bad.as_bytes()), "{bad}");
        }
        let deep = [b'['; 40];
        assert!(!is_value(&deep));
    }

    #[test]
    fn members() {
        let o = br#"{ "a" : 1, "b":{"a":2}, "a":3 }"#;
        let m = find(o, b"\"a\"").unwrap().unwrap();
        assert_eq!(&o[m.value.0..m.value.1], b"3");
        assert_eq!(find(o, b"\"c\"").unwrap(), None);
        assert!(find(b"[1]", b"\"a\"").is_err());
    }

    #[test]
    fn numbers() {
        assert_eq!(number(b"12"), Some(Number::Int(12)));
        assert_eq!(
            add(Number::Int(i64::MAX), Number::Int(1)).map(|n| n.as_f64()),
            Some(9.223372036854776e18)
        );
        let mut s = heapless::String::<40>::new();
        write_number(add(Number::Float(0.1), Number::Float(0.2)).unwrap(), &mut s).unwrap();
        assert_eq!(s.as_str(), "0.30000000000000004");
        assert_eq!(
            compare(b"1.0", b"1"),
            (true, Some(core::cmp::Ordering::Equal))
        );
        assert_eq!(compare(b"\"x\"", b" \"x\""), (true, None));
    }
}

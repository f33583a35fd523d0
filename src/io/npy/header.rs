//! The `.npy` header, read by NumPy's own rules (`numpy/lib/format.py`): the magic string,
//! format version 1, 2 or 3, a header length capped like NumPy's `max_header_size`, and the
//! header itself, a Python dict literal `{'descr': '<f4', 'fortran_order': False, 'shape':
//! (3, 4)}` that NumPy reads with `ast.literal_eval`, so any spacing, newlines, quotes and
//! trailing commas Python accepts are accepted here. Every refusal is one line that says why.

use std::io::Read;

/// NumPy's default `max_header_size` (`numpy.lib.format._MAX_HEADER_SIZE`): longer headers are
/// refused before they are read, as NumPy refuses them unless told to trust the file.
pub const MAX_HEADER_LEN: usize = 10_000;

/// How deeply the header's literal may nest (NumPy's headers nest two deep for structured
/// dtypes; hostile files must not exhaust the stack).
const MAX_DEPTH: usize = 16;

/// Element types X may be stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// IEEE half (`'<f2'`, `'<e'`).
    F16,
    /// IEEE single (`'<f4'`, `'<f'`).
    F32,
    /// IEEE double (`'<f8'`, `'<d'`).
    F64,
}

impl Stored {
    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            Stored::F16 => 2,
            Stored::F32 => 4,
            Stored::F64 => 8,
        }
    }

    /// The short name reports use: "f16", "f32", "f64".
    pub fn name(self) -> &'static str {
        match self {
            Stored::F16 => "f16",
            Stored::F32 => "f32",
            Stored::F64 => "f64",
        }
    }
}

/// A checked `.npy` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The element type.
    pub stored: Stored,
    /// Whether the elements are big-endian.
    pub big_endian: bool,
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Bytes from the start of the file to the first element.
    pub data_start: u64,
}

impl Header {
    /// Reads and checks the header at the start of `r`, leaving `r` at the first element.
    /// The error is one line, without the file's name.
    pub fn read(r: &mut impl Read) -> Result<Self, String> {
        let mut pre = [0u8; 8];
        // A short file is judged by what it has: a 6-byte text file is "not a .npy file",
        // like a longer one; only a file that starts as .npy and stops is "ends inside".
        let got =
            read_up_to(r, &mut pre).map_err(|e| format!("cannot read the magic string: {e}"))?;
        let magic = b"\x93NUMPY";
        if pre[..got.min(6)] != magic[..got.min(6)] || got == 0 {
            return Err(if got == 0 {
                "not a .npy file (it is empty)".into()
            } else {
                "not a .npy file (it does not start with \\x93NUMPY)".into()
            });
        }
        if got < pre.len() {
            return Err("the file ends inside the magic string".into());
        }
        let (major, minor) = (pre[6], pre[7]);
        let len_bytes = match major {
            1 => 2,
            2 | 3 => 4,
            _ => {
                return Err(format!(
                    "unsupported .npy format version {major}.{minor} (NumPy writes 1.0, 2.0 \
                     and 3.0)"
                ))
            }
        };
        let mut len = [0u8; 4];
        read_all(r, &mut len[..len_bytes], "the header length")?;
        let header_len = u32::from_le_bytes(len) as usize;
        if header_len > MAX_HEADER_LEN {
            return Err(format!(
                "the header is {header_len} bytes long; NumPy refuses headers over \
                 {MAX_HEADER_LEN} bytes (max_header_size) as unsafe to load, and so does qkv"
            ));
        }
        let mut text = vec![0u8; header_len];
        read_all(r, &mut text, "the header")?;
        // Versions 1 and 2 are latin-1, version 3 UTF-8; every character a valid header
        // holds is ASCII, so anything else is refused by the parser below.
        let text: String = if major == 3 {
            String::from_utf8(text).map_err(|_| "the header is not valid UTF-8".to_string())?
        } else {
            text.iter().map(|&b| b as char).collect()
        };
        let mut header = parse(&text)?;
        header.data_start = (8 + len_bytes + header_len) as u64;
        Ok(header)
    }
}

/// Reads into `buf` until it is full or the file ends; the bytes read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn read_all(r: &mut impl Read, buf: &mut [u8], what: &str) -> Result<(), String> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => format!("the file ends inside {what}"),
        _ => format!("cannot read {what}: {e}"),
    })
}

/// A Python literal, as far as `.npy` headers use them.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(String),
    Bool(bool),
    Int(i128),
    None,
    /// A tuple or a list, and which.
    Seq(Vec<Value>, bool),
    Dict(Vec<(Value, Value)>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Bool(_) => "a bool",
            Value::Int(_) => "an integer",
            Value::None => "None",
            Value::Seq(_, true) => "a tuple",
            Value::Seq(_, false) => "a list",
            Value::Dict(_) => "a dict",
        }
    }
}

/// Parses the header text (without magic and length) and checks its three keys.
pub fn parse(text: &str) -> Result<Header, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        at: 0,
    };
    let value = p.value(0)?;
    p.skip_space();
    if p.at != p.s.len() {
        return Err(format!(
            "the header has text after its dict, at byte {}",
            p.at
        ));
    }
    let Value::Dict(entries) = value else {
        return Err(format!(
            "the header is {}, not a dict of descr, fortran_order and shape",
            value.kind()
        ));
    };
    let mut keys: Vec<&str> = Vec::new();
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    for (k, v) in &entries {
        let Value::Str(k) = k else {
            return Err(format!("the header has a key that is {}", k.kind()));
        };
        if keys.contains(&k.as_str()) {
            return Err(format!("the header names '{k}' twice"));
        }
        keys.push(k);
        match k.as_str() {
            "descr" => descr = Some(v),
            "fortran_order" => fortran = Some(v),
            "shape" => shape = Some(v),
            other => {
                return Err(format!(
                    "the header has an unknown key '{other}' (NumPy's has exactly descr, \
                     fortran_order and shape)"
                ))
            }
        }
    }
    let missing = |k: &str| format!("the header has no '{k}'");
    let fortran = match fortran.ok_or_else(|| missing("fortran_order"))? {
        Value::Bool(b) => *b,
        other => return Err(format!("fortran_order is {}, not a bool", other.kind())),
    };
    let shape = match shape.ok_or_else(|| missing("shape"))? {
        Value::Seq(dims, true) => dims
            .iter()
            .map(|d| match d {
                Value::Int(n) => usize::try_from(*n)
                    .map_err(|_| format!("the shape holds {n}, not a size of an axis")),
                other => Err(format!("the shape holds {}, not an integer", other.kind())),
            })
            .collect::<Result<Vec<usize>, String>>()?,
        other => return Err(format!("the shape is {}, not a tuple", other.kind())),
    };
    let (stored, big_endian) = match descr.ok_or_else(|| missing("descr"))? {
        Value::Str(s) => dtype(s)?,
        Value::Seq(..) => {
            return Err("structured arrays are not supported; use f32, f16 or f64".into())
        }
        other => return Err(format!("descr is {}, not a dtype string", other.kind())),
    };
    if fortran && shape.len() > 1 {
        return Err(
            "the array is in Fortran order; save it in C order (numpy.ascontiguousarray)".into(),
        );
    }
    Ok(Header {
        stored,
        big_endian,
        shape,
        data_start: 0,
    })
}

/// A dtype string as NumPy's `descr` holds it: an optional byte order (`<` little, `>` big,
/// `=` this machine's, `|` not applicable, read as this machine's) and a float type by
/// size (`f2`, `f4`, `f8`), by character code (`e`, `f`, `d`) or by name (`float32`).
fn dtype(s: &str) -> Result<(Stored, bool), String> {
    let native_big = cfg!(target_endian = "big");
    let (big, ty) = match s.as_bytes().first() {
        Some(b'<') => (false, &s[1..]),
        Some(b'>') => (true, &s[1..]),
        Some(b'=') | Some(b'|') => (native_big, &s[1..]),
        _ => (native_big, s),
    };
    let stored = match ty {
        "f2" | "e" | "float16" | "half" => Stored::F16,
        "f4" | "f" | "float32" | "single" => Stored::F32,
        "f8" | "d" | "float64" | "double" => Stored::F64,
        _ => {
            let shown: String = s.chars().take(40).collect();
            return Err(format!(
                "unsupported dtype '{}'; X must be float32, float16 or float64",
                shown.escape_default()
            ));
        }
    };
    Ok((stored, big))
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn skip_space(&mut self) {
        while let Some(c) = self.s.get(self.at) {
            match c {
                b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => self.at += 1,
                // A backslash-newline continues a line in Python.
                b'\\' if self.s.get(self.at + 1) == Some(&b'\n') => self.at += 2,
                b'#' => {
                    while self.s.get(self.at).is_some_and(|&c| c != b'\n') {
                        self.at += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.s.get(self.at).copied()
    }

    fn error(&self, what: &str) -> String {
        match self.s.get(self.at) {
            None => format!("the header ends where {what} should be"),
            Some(c) => format!(
                "the header has '{}' at byte {} where {what} should be",
                (*c as char).escape_default(),
                self.at
            ),
        }
    }

    fn expect(&mut self, c: u8, what: &str) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(format!("the header nests deeper than {MAX_DEPTH} levels"));
        }
        match self.peek() {
            Some(b'{') => {
                self.at += 1;
                let mut entries = Vec::new();
                loop {
                    if self.peek() == Some(b'}') {
                        self.at += 1;
                        return Ok(Value::Dict(entries));
                    }
                    let k = self.value(depth + 1)?;
                    self.expect(b':', "':'")?;
                    let v = self.value(depth + 1)?;
                    entries.push((k, v));
                    match self.peek() {
                        Some(b',') => self.at += 1,
                        Some(b'}') => {}
                        _ => return Err(self.error("',' or '}'")),
                    }
                }
            }
            Some(open @ (b'(' | b'[')) => {
                self.at += 1;
                let close = if open == b'(' { b')' } else { b']' };
                let mut items = Vec::new();
                let mut comma = false;
                loop {
                    if self.peek() == Some(close) {
                        self.at += 1;
                        // `(3)` is the integer 3 in Python, not a tuple; `(3,)` is a tuple.
                        if open == b'(' && items.len() == 1 && !comma {
                            return Ok(items.pop().expect("one item"));
                        }
                        return Ok(Value::Seq(items, open == b'('));
                    }
                    items.push(self.value(depth + 1)?);
                    match self.peek() {
                        Some(b',') => {
                            self.at += 1;
                            comma = true;
                        }
                        Some(c) if c == close => {}
                        _ => return Err(self.error(&format!("',' or '{}'", close as char))),
                    }
                }
            }
            Some(q @ (b'\'' | b'"')) => self.string(q),
            Some(c) if c.is_ascii_digit() || c == b'-' || c == b'+' => self.int(),
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.at;
                while self
                    .s
                    .get(self.at)
                    .is_some_and(|c| c.is_ascii_alphanumeric())
                {
                    self.at += 1;
                }
                match &self.s[start..self.at] {
                    b"True" => Ok(Value::Bool(true)),
                    b"False" => Ok(Value::Bool(false)),
                    b"None" => Ok(Value::None),
                    _ => {
                        self.at = start;
                        Err(self.error("a value"))
                    }
                }
            }
            _ => Err(self.error("a value")),
        }
    }

    fn string(&mut self, quote: u8) -> Result<Value, String> {
        self.at += 1;
        let mut out = String::new();
        loop {
            let Some(&c) = self.s.get(self.at) else {
                return Err("the header ends inside a string".into());
            };
            self.at += 1;
            match c {
                c if c == quote => return Ok(Value::Str(out)),
                b'\n' => return Err("the header has a line break inside a string".into()),
                b'\\' => {
                    let Some(&e) = self.s.get(self.at) else {
                        return Err("the header ends inside a string".into());
                    };
                    self.at += 1;
                    out.push(match e {
                        b'n' => '\n',
                        b't' => '\t',
                        b'\\' | b'\'' | b'"' => e as char,
                        _ => return Err("the header has an escape it does not need".into()),
                    });
                }
                // The text came from bytes one char each (latin-1) or UTF-8; keep it as is.
                _ => out.push(c as char),
            }
        }
    }

    fn int(&mut self) -> Result<Value, String> {
        let start = self.at;
        let negative = match self.s[self.at] {
            b'-' => {
                self.at += 1;
                true
            }
            b'+' => {
                self.at += 1;
                false
            }
            _ => false,
        };
        let digits = self.at;
        let mut n: i128 = 0;
        while let Some(&c) = self
            .s
            .get(self.at)
            .filter(|c| c.is_ascii_digit() || **c == b'_')
        {
            self.at += 1;
            if c == b'_' {
                continue;
            }
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add((c - b'0') as i128))
                .ok_or_else(|| "the header holds an integer too large for any array".to_string())?;
        }
        if self.at == digits {
            self.at = start;
            return Err(self.error("a value"));
        }
        // Python 2 wrote long integers as `3L`; NumPy still reads them.
        if matches!(self.s.get(self.at), Some(b'L') | Some(b'l')) {
            self.at += 1;
        }
        Ok(Value::Int(if negative { -n } else { n }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape_of(text: &str) -> Result<(Stored, bool, Vec<usize>), String> {
        parse(text).map(|h| (h.stored, h.big_endian, h.shape))
    }

    #[test]
    fn numpy_valid_headers_are_read() {
        let le = cfg!(target_endian = "big");
        let ok = [
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }",
                (Stored::F32, false, vec![3, 4]),
            ),
            // Half precision by its character code, and native/not-applicable byte orders.
            (
                "{'descr': '<e', 'fortran_order': False, 'shape': (2,)}",
                (Stored::F16, false, vec![2]),
            ),
            (
                "{'descr': '=f4', 'fortran_order': False, 'shape': (2, 2)}",
                (Stored::F32, le, vec![2, 2]),
            ),
            (
                "{'descr': '|f4', 'fortran_order': False, 'shape': (5,)}",
                (Stored::F32, le, vec![5]),
            ),
            // A newline inside the dict, double quotes, no trailing comma, key order changed.
            (
                "{\"shape\": (1,\n 7), 'descr': '>f8',\n 'fortran_order': False}\n",
                (Stored::F64, true, vec![1, 7]),
            ),
            // A 0-d array, an empty one, Python 2 longs, Fortran order of a vector.
            (
                "{'descr': '<f2', 'fortran_order': True, 'shape': ()}",
                (Stored::F16, false, vec![]),
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 768)}",
                (Stored::F32, false, vec![0, 768]),
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (3L, 2L)}",
                (Stored::F32, false, vec![3, 2]),
            ),
        ];
        for (text, want) in ok {
            assert_eq!(shape_of(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn bad_headers_are_one_line_refusals() {
        let bad = [
            ("{'descr': '<i4', 'fortran_order': False, 'shape': (3,)}", "unsupported dtype '<i4'"),
            ("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,)}", "structured"),
            ("{'descr': '<f4', 'fortran_order': True, 'shape': (3, 2)}", "Fortran order"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (-3,)}", "holds -3"),
            ("{'descr': '<f4', 'fortran_order': False}", "no 'shape'"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': [3]}", "not a tuple"),
            ("{'descr': '<f4', 'fortran_order': 0, 'shape': (3,)}", "not a bool"),
            ("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (3,)}", "twice"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'x': 1}", "unknown key"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (3,)} x", "after its dict"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (3,", "ends where"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999999999999999999999,)}", "too large"),
            ("{'descr': '<f4", "inside a string"),
            ("[1, 2]", "not a dict"),
            ("", "ends where a value"),
        ];
        for (text, want) in bad {
            let e = shape_of(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
        let deep = format!("{}{}", "(".repeat(1000), ")".repeat(1000));
        assert!(shape_of(&deep).unwrap_err().contains("nests deeper"));
    }

    fn file(version: u8, header: &[u8]) -> Vec<u8> {
        let mut f = b"\x93NUMPY".to_vec();
        f.extend([version, 0]);
        if version == 1 {
            f.extend((header.len() as u16).to_le_bytes());
        } else {
            f.extend((header.len() as u32).to_le_bytes());
        }
        f.extend(header);
        f
    }

    #[test]
    fn versions_and_the_header_length_cap() {
        let h = b"{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}\n";
        for v in [1, 2, 3] {
            let bytes = file(v, h);
            let got = Header::read(&mut bytes.as_slice()).unwrap();
            let pre = if v == 1 { 10 } else { 12 };
            assert_eq!(got.data_start, (pre + h.len()) as u64);
        }
        let e = Header::read(&mut file(4, h).as_slice()).unwrap_err();
        assert!(e.contains("version 4.0"), "{e}");
        // A 4 GiB length is refused before anything is read or allocated.
        let mut huge = b"\x93NUMPY\x02\x00".to_vec();
        huge.extend(u32::MAX.to_le_bytes());
        let e = Header::read(&mut huge.as_slice()).unwrap_err();
        assert!(e.contains("4294967295 bytes") && e.contains("10000"), "{e}");
        let e = Header::read(&mut &b"\x93NUMPY\x01\x00\xff"[..]).unwrap_err();
        assert!(e.contains("ends inside the header length"), "{e}");
        let e = Header::read(&mut &b"PK\x03\x04 zip"[..]).unwrap_err();
        assert!(e.contains("not a .npy file"), "{e}");
        // Issue #32: a 6-byte text file is not a .npy file either (it was "the file ends
        // inside the magic string"); a true .npy cut short still says where it ends.
        let e = Header::read(&mut &b"hello\n"[..]).unwrap_err();
        assert!(e.contains("not a .npy file"), "{e}");
        let e = Header::read(&mut &b""[..]).unwrap_err();
        assert!(e.contains("not a .npy file (it is empty)"), "{e}");
        let e = Header::read(&mut &b"\x93NUM"[..]).unwrap_err();
        assert!(e.contains("ends inside the magic string"), "{e}");
    }
}

//! A minimal, allocation-light JSON reader: just what a plugin needs to read
//! its configuration (records of unsigned integers, strings and lists), with
//! the same acceptance rules as `serde_json` + `#[derive(Deserialize)]` +
//! `#[serde(deny_unknown_fields)]`: strict JSON grammar, no trailing
//! characters, unknown or duplicate fields rejected, a record may also be
//! written as an array of its fields in order. Shared by the example
//! plugins as a path dependency.

use std::borrow::Cow;

/// What went wrong, and where (a byte offset in the input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error {
    pub msg: &'static str,
    pub pos: usize,
}

impl Error {
    /// `msg at line L column C`, like serde_json's messages.
    pub fn describe(&self, input: &str) -> String {
        let before = &input.as_bytes()[..self.pos.min(input.len())];
        let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        let column = before.len()
            - before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
        format!("{} at line {} column {}", self.msg, line, column + 1)
    }
}

pub type Result<T> = core::result::Result<T, Error>;

pub struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    pub fn new(src: &'a str) -> Self {
        Parser { src, pos: 0 }
    }

    fn bytes(&self) -> &'a [u8] {
        self.src.as_bytes()
    }

    fn err<T>(&self, msg: &'static str) -> Result<T> {
        Err(Error { msg, pos: self.pos })
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes().get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next byte after whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.bytes().get(self.pos).copied()
    }

    /// Only whitespace may follow the document.
    pub fn end(&mut self) -> Result<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => self.err("trailing characters"),
        }
    }

    /// An unsigned 32-bit integer, written as a JSON integer.
    pub fn u32(&mut self) -> Result<u32> {
        let start = match self.peek() {
            Some(b'0'..=b'9') => self.pos,
            Some(b'-') => return self.err("invalid type: negative number, expected u32"),
            None => return self.err("EOF while parsing a value"),
            Some(_) => return self.err("invalid type, expected u32"),
        };
        let b = self.bytes();
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        if b[start] == b'0' && end > start + 1 {
            self.pos = start + 1;
            return self.err("invalid number");
        }
        if let Some(b'.' | b'e' | b'E') = b.get(end) {
            return self.err("invalid type: floating point number, expected u32");
        }
        let mut value: u64 = 0;
        for &d in &b[start..end] {
            value = value * 10 + u64::from(d - b'0');
            if value > u64::from(u32::MAX) {
                return self.err("invalid value: integer out of range, expected u32");
            }
        }
        self.pos = end;
        Ok(value as u32)
    }

    /// A JSON string, borrowed from the input unless it has escapes.
    pub fn string(&mut self) -> Result<Cow<'a, str>> {
        match self.peek() {
            Some(b'"') => self.pos += 1,
            None => return self.err("EOF while parsing a value"),
            Some(_) => return self.err("invalid type, expected a string"),
        }
        let b = self.bytes();
        let start = self.pos;
        let mut owned: Option<String> = None;
        let mut run = start; // start of the not yet copied plain run
        loop {
            let Some(&c) = b.get(self.pos) else {
                return self.err("EOF while parsing a string");
            };
            match c {
                b'"' => {
                    let tail = &self.src[run..self.pos];
                    self.pos += 1;
                    return Ok(match owned {
                        None => Cow::Borrowed(tail),
                        Some(mut s) => {
                            s.push_str(tail);
                            Cow::Owned(s)
                        }
                    });
                }
                b'\\' => {
                    let s = owned.get_or_insert_with(String::new);
                    s.push_str(&self.src[run..self.pos]);
                    self.pos += 1;
                    let Some(&e) = b.get(self.pos) else {
                        return self.err("EOF while parsing a string");
                    };
                    self.pos += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = match hi {
                                0xD800..=0xDBFF => {
                                    if b.get(self.pos) != Some(&b'\\')
                                        || b.get(self.pos + 1) != Some(&b'u')
                                    {
                                        return self.err("lone leading surrogate in hex escape");
                                    }
                                    self.pos += 2;
                                    let lo = self.hex4()?;
                                    if !(0xDC00..=0xDFFF).contains(&lo) {
                                        return self.err("lone leading surrogate in hex escape");
                                    }
                                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                                }
                                0xDC00..=0xDFFF => {
                                    return self.err("lone trailing surrogate in hex escape");
                                }
                                _ => hi,
                            };
                            match char::from_u32(code) {
                                Some(ch) => ch,
                                None => return self.err("invalid unicode code point"),
                            }
                        }
                        _ => {
                            self.pos -= 1;
                            return self.err("invalid escape");
                        }
                    };
                    owned.as_mut().unwrap().push(ch);
                    run = self.pos;
                }
                0..=0x1F => {
                    return self
                        .err("control character (\\u0000-\\u001F) found while parsing a string");
                }
                _ => self.pos += 1,
            }
        }
    }

    fn hex4(&mut self) -> Result<u32> {
        let mut v = 0;
        for _ in 0..4 {
            let d = match self.bytes().get(self.pos) {
                Some(&c @ b'0'..=b'9') => c - b'0',
                Some(&c @ b'a'..=b'f') => c - b'a' + 10,
                Some(&c @ b'A'..=b'F') => c - b'A' + 10,
                None => return self.err("EOF while parsing a string"),
                Some(_) => return self.err("invalid escape"),
            };
            v = v * 16 + u32::from(d);
            self.pos += 1;
        }
        Ok(v)
    }

    /// A JSON array; `item` reads each element.
    pub fn list(&mut self, mut item: impl FnMut(&mut Self) -> Result<()>) -> Result<()> {
        match self.peek() {
            Some(b'[') => self.pos += 1,
            None => return self.err("EOF while parsing a value"),
            Some(_) => return self.err("invalid type, expected a sequence"),
        }
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            item(self)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                None => return self.err("EOF while parsing a list"),
                Some(_) => return self.err("expected `,` or `]`"),
            }
        }
    }

    /// A record with the given fields, as an object (unknown and duplicate
    /// keys rejected) or as an array of its fields in order (no more than
    /// there are fields). `field(parser, index)` reads one field's value.
    /// Returns the bit set of the fields present.
    pub fn record(
        &mut self,
        fields: &[&str],
        mut field: impl FnMut(&mut Self, usize) -> Result<()>,
    ) -> Result<u32> {
        let mut seen = 0u32;
        match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                    return Ok(seen);
                }
                loop {
                    self.ws();
                    let at = self.pos;
                    if self.peek() != Some(b'"') {
                        return self.err("key must be a string");
                    }
                    let key = self.string()?;
                    let Some(index) = fields.iter().position(|f| *f == key) else {
                        return Err(Error {
                            msg: "unknown field",
                            pos: at,
                        });
                    };
                    if seen & (1 << index) != 0 {
                        return Err(Error {
                            msg: "duplicate field",
                            pos: at,
                        });
                    }
                    seen |= 1 << index;
                    if self.peek() != Some(b':') {
                        return self.err("expected `:`");
                    }
                    self.pos += 1;
                    field(self, index)?;
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {
                            self.pos += 1;
                            return Ok(seen);
                        }
                        None => return self.err("EOF while parsing an object"),
                        Some(_) => return self.err("expected `,` or `}`"),
                    }
                }
            }
            Some(b'[') => {
                let mut index = 0;
                self.list(|p| {
                    if index >= fields.len() {
                        return p.err("trailing characters");
                    }
                    field(p, index)?;
                    seen |= 1 << index;
                    index += 1;
                    Ok(())
                })?;
                Ok(seen)
            }
            None => self.err("EOF while parsing a value"),
            Some(_) => self.err("invalid type, expected a struct"),
        }
    }

    /// Errs `missing field` unless every field in `required` was seen.
    #[allow(dead_code)] // not every plugin has required fields
    pub fn require(&self, seen: u32, required: u32) -> Result<()> {
        if seen & required == required {
            Ok(())
        } else {
            self.err("missing field")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings() {
        let mut p = Parser::new(r#" "a\"b\\\/\n\u00e9\ud83d\ude00c" "#);
        assert_eq!(p.string().unwrap(), "a\"b\\/\n\u{e9}\u{1F600}c");
        p.end().unwrap();
        assert!(matches!(
            Parser::new(r#""plain""#).string().unwrap(),
            Cow::Borrowed("plain")
        ));
        for bad in [
            r#""\ud83d""#,
            r#""\ude00""#,
            "\"a\tb\"",
            r#""\x""#,
            r#""abc"#,
            r#""\u12"#,
        ] {
            assert!(Parser::new(bad).string().is_err(), "{bad}");
        }
    }

    #[test]
    fn integers() {
        assert_eq!(Parser::new("0").u32(), Ok(0));
        assert_eq!(Parser::new(" 4294967295").u32(), Ok(u32::MAX));
        for bad in [
            "4294967296",
            "-1",
            "-0",
            "1.0",
            "1e2",
            "01",
            "\"1\"",
            "null",
            "",
            "99999999999999999999999",
        ] {
            assert!(Parser::new(bad).u32().is_err(), "{bad}");
        }
    }
}
